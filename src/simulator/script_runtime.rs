//! The simulated Script Runtime Service for vSphere (SRS): API-key login and the runspaces API
//! (`/api/auth/*`, `/api/runspaces`), speaking the wire format of `UPSTREAM_APIS.md` section 6
//! and `srs-apigateway-openapi.json`.
//!
//! Runspace state is computed from the [`SimClock`](super::SimClock) instead of being stored:
//! `creating` for [`READY_AFTER`] (or [`READY_AFTER_WITH_SCRIPT`] with
//! `run_vc_connection_script`), then `ready` (with a `vc_connection_script_id` when the script
//! ran) or `error`. Decisions where the reference is silent or unconfirmed:
//! - a runspace whose name starts with `fail` ends in `error` (the test trigger for the
//!   container-creation failure the real server reports as ErrorDetails code 500);
//! - `401` answers carry an empty body and `WWW-Authenticate: Basic realm="SRS endpoint"`
//!   on every route (the reference says "likely empty", UNCONFIRMED);
//! - logout deletes the runspaces created with that API key (the real server deletes the
//!   caller's idle runspaces; runspaces here are never busy); seeded ones have no key;
//! - a create body that is not a JSON object, or a `name` / `run_vc_connection_script` of
//!   the wrong type, answers `400` ErrorDetails code 400 (ASP.NET model binding refuses it;
//!   the spec declares no 400); an empty body counts as `{}`;
//! - unknown paths answer `404` with an empty body, counted under [`ROUTE_OTHER`].

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, FixedOffset, Offset as _, Utc};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Map, Value, json};

use super::SimOptions;
use super::common::{
    Session, SimCore, SimHandle, basic_credentials, empty, header_str, json as json_resp, lock,
    percent_decode, random_hex,
};
use super::tasks::random_task_id;

/// Route keys, as used by `requests` and `inject`.
pub const ROUTE_LOGIN: &str = "POST /api/auth/login";
pub const ROUTE_LOGOUT: &str = "POST /api/auth/logout";
pub const ROUTE_RUNSPACE_CREATE: &str = "POST /api/runspaces";
pub const ROUTE_RUNSPACE_LIST: &str = "GET /api/runspaces";
pub const ROUTE_RUNSPACE_GET: &str = "GET /api/runspaces/{id}";
pub const ROUTE_RUNSPACE_DELETE: &str = "DELETE /api/runspaces/{id}";
/// Requests that match no route above.
pub const ROUTE_OTHER: &str = "OTHER";

/// The API-key header: set on login responses, expected on every other call.
pub const API_KEY_HEADER: &str = "X-SRS-API-KEY";
/// `WWW-Authenticate` of 401 answers.
pub const CHALLENGE: &str = "Basic realm=\"SRS endpoint\"";

/// A runspace is `creating` this long after create ...
pub const READY_AFTER: Duration = Duration::from_secs(3);
/// ... or this long with `run_vc_connection_script: true`.
pub const READY_AFTER_WITH_SCRIPT: Duration = Duration::from_secs(8);
/// At most this many runspaces per user; one more answers `500` code 2020.
pub const MAX_RUNSPACES_PER_USER: usize = 20;
/// Runspaces whose name starts with this end in `error`.
pub const FAIL_NAME_PREFIX: &str = "fail";

/// Seeded: `ready` since an hour, name `demo-ready`, created with the connection script.
pub const SRS_DEMO_READY_RUNSPACE: &str = "5eed00a0b001";
/// Seeded: `error` (container creation failed), no name.
pub const SRS_DEMO_ERROR_RUNSPACE: &str = "5eed00e0e001";

/// ErrorDetails codes (`DataTypes/ApiErrorCodes.cs`).
const CODE_MAX_RUNSPACES: i64 = 2020;
const CODE_NOT_FOUND: i64 = 2030;
const CODE_DELETE_FAILED: i64 = 2040;
const BODY_LIMIT: usize = 1 << 20;

/// The server writes local time; a fixed +03:00 keeps the offset visible and the output stable.
fn local_offset() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).unwrap_or_else(|| Utc.fix())
}

/// The running simulated SRS. Cheap to clone; it stops when the last clone is dropped.
/// `logins` counts successful `POST /api/auth/login` calls.
#[derive(Clone)]
pub struct ScriptRuntimeSim {
    handle: SimHandle,
    shared: Arc<Shared>,
}

struct Shared {
    core: Arc<SimCore>,
    runspaces: Mutex<Vec<Runspace>>,
    created: AtomicU64,
}

#[derive(Debug, Clone)]
struct Runspace {
    id: String,
    owner: String,
    /// The API key it was created with (`None` for seeded ones); logout deletes by it.
    api_key: Option<String>,
    name: Option<String>,
    run_vc_connection_script: bool,
    /// Ends in `error` instead of `ready`.
    fails: bool,
    /// Clock time at which it leaves `creating`.
    settles_at: Duration,
    /// Wall time of create (kept apart so seeded runspaces can lie before the clock's epoch).
    creation_wall: DateTime<Utc>,
    script_id: String,
}

impl Runspace {
    /// The wire JSON at clock time `now`; absent values are omitted, never `null`.
    fn render(&self, now: Duration) -> Value {
        let mut out = Map::new();
        if let Some(name) = &self.name {
            out.insert("name".into(), json!(name));
        }
        out.insert("id".into(), json!(self.id));
        let state = match (now >= self.settles_at, self.fails) {
            (false, _) => "creating",
            (true, false) => "ready",
            (true, true) => "error",
        };
        out.insert("state".into(), json!(state));
        if state == "error" {
            out.insert(
                "error_details".into(),
                json!({
                    "code": 500,
                    "error_message": "Failed to start runspace container",
                    "details": format!(
                        "System.Exception: Container for runspace '{}' exited during start-up.\n   at VMware.ScriptRuntimeService.Runspace.Impl.MultiTenantRunspaceProvider.StartCreate()",
                        self.id
                    ),
                }),
            );
        }
        out.insert(
            "run_vc_connection_script".into(),
            json!(self.run_vc_connection_script),
        );
        if state == "ready" && self.run_vc_connection_script {
            out.insert("vc_connection_script_id".into(), json!(self.script_id));
        }
        out.insert(
            "creation_time".into(),
            json!(srs_datetime(self.creation_wall)),
        );
        Value::Object(out)
    }
}

/// .NET round-trip format in the server's local zone: 7 fraction digits and an offset,
/// e.g. `2024-05-02T11:20:31.5123456+03:00`.
pub fn srs_datetime(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&local_offset());
    format!(
        "{}.{:07}{}",
        local.format("%Y-%m-%dT%H:%M:%S"),
        local.timestamp_subsec_nanos() / 100,
        local.format("%:z")
    )
}

impl ScriptRuntimeSim {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start(opts: &SimOptions) -> std::io::Result<ScriptRuntimeSim> {
        let core = Arc::new(SimCore::new(opts));
        let shared = Arc::new(Shared {
            core: Arc::clone(&core),
            runspaces: Mutex::new(Vec::new()),
            created: AtomicU64::new(0),
        });
        if opts.seed_demo_tasks {
            seed(&shared);
        }
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let handle = SimHandle::start(core, router, opts.tls, "Script Runtime Service").await?;
        Ok(ScriptRuntimeSim { handle, shared })
    }

    /// Successful `POST /api/runspaces` calls (refused creates do not count).
    pub fn runspaces_created(&self) -> u64 {
        self.shared.created.load(Ordering::Relaxed)
    }

    /// Runspaces that exist now, of every user.
    pub fn runspace_count(&self) -> usize {
        lock(&self.shared.runspaces).len()
    }
}

impl Deref for ScriptRuntimeSim {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for ScriptRuntimeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptRuntimeSim")
            .field("url", &self.url())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Routing

enum Route {
    Login,
    Logout,
    Create,
    List,
    Get(String),
    Delete(String),
    Unknown,
}

impl Route {
    fn key(&self) -> &'static str {
        match self {
            Route::Login => ROUTE_LOGIN,
            Route::Logout => ROUTE_LOGOUT,
            Route::Create => ROUTE_RUNSPACE_CREATE,
            Route::List => ROUTE_RUNSPACE_LIST,
            Route::Get(_) => ROUTE_RUNSPACE_GET,
            Route::Delete(_) => ROUTE_RUNSPACE_DELETE,
            Route::Unknown => ROUTE_OTHER,
        }
    }
}

fn resolve(method: &Method, path: &str) -> Route {
    let path = path.strip_suffix('/').unwrap_or(path);
    match (method, path) {
        (&Method::POST, "/api/auth/login") => return Route::Login,
        (&Method::POST, "/api/auth/logout") => return Route::Logout,
        (&Method::POST, "/api/runspaces") => return Route::Create,
        (&Method::GET, "/api/runspaces") => return Route::List,
        _ => {}
    }
    let Some(segment) = path.strip_prefix("/api/runspaces/") else {
        return Route::Unknown;
    };
    if segment.is_empty() || segment.contains('/') {
        return Route::Unknown;
    }
    let Some(id) = percent_decode(segment) else {
        return Route::Unknown;
    };
    match *method {
        Method::GET => Route::Get(id),
        Method::DELETE => Route::Delete(id),
        _ => Route::Unknown,
    }
}

async fn handle(State(st): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let route = resolve(req.method(), req.uri().path());
    let key = route.key();
    tracing::debug!(route = key, "srs sim request");
    if let Some(resp) = st.core.enter(key).await {
        return resp;
    }
    match route {
        Route::Login => login(&st, req.headers()),
        Route::Unknown => empty(StatusCode::NOT_FOUND),
        route => {
            let Some((api_key, session)) = authenticate(&st, req.headers()) else {
                return unauthorized();
            };
            match route {
                Route::Logout => logout(&st, &api_key),
                Route::Create => {
                    let body = match axum::body::to_bytes(req.into_body(), BODY_LIMIT).await {
                        Ok(b) => b,
                        Err(_) => return bad_request("The request body could not be read."),
                    };
                    create(&st, &session, &api_key, &body)
                }
                Route::List => list(&st, &session),
                Route::Get(id) => get(&st, &session, &id),
                Route::Delete(id) => delete(&st, &session, &id),
                Route::Login | Route::Unknown => error_details(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    500,
                    "Internal routing error.",
                ),
            }
        }
    }
}

fn authenticate(st: &Shared, headers: &HeaderMap) -> Option<(String, Session)> {
    let key = header_str(headers, API_KEY_HEADER)?;
    st.core.sessions.touch(key).map(|s| (key.to_string(), s))
}

// ---------------------------------------------------------------------------------------------
// Handlers

fn login(st: &Shared, headers: &HeaderMap) -> Response {
    match basic_credentials(headers) {
        Some((user, password)) if st.core.credentials_match(&user, &password) => {
            let key = st.core.login(&user);
            let mut resp = empty(StatusCode::OK);
            if let Ok(v) = HeaderValue::from_str(&key) {
                resp.headers_mut().insert(API_KEY_HEADER, v);
            }
            resp
        }
        _ => unauthorized(),
    }
}

fn logout(st: &Shared, api_key: &str) -> Response {
    st.core.sessions.remove(api_key);
    lock(&st.runspaces).retain(|r| r.api_key.as_deref() != Some(api_key));
    empty(StatusCode::OK)
}

fn create(st: &Shared, session: &Session, api_key: &str, body: &[u8]) -> Response {
    let (name, run_script) = match parse_create(body) {
        Ok(v) => v,
        Err(msg) => return bad_request(&msg),
    };
    let now = st.core.clock.now();
    let mut runspaces = lock(&st.runspaces);
    let owned = runspaces.iter().filter(|r| r.owner == session.user).count();
    if owned >= MAX_RUNSPACES_PER_USER {
        return error_details(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_MAX_RUNSPACES,
            &format!("Maximum number of runspaces ({MAX_RUNSPACES_PER_USER}) reached."),
        );
    }
    let delay = if run_script {
        READY_AFTER_WITH_SCRIPT
    } else {
        READY_AFTER
    };
    let runspace = Runspace {
        id: new_runspace_id(&runspaces),
        owner: session.user.clone(),
        api_key: Some(api_key.to_string()),
        fails: name
            .as_deref()
            .is_some_and(|n| n.starts_with(FAIL_NAME_PREFIX)),
        name,
        run_vc_connection_script: run_script,
        settles_at: now.saturating_add(delay),
        creation_wall: st.core.clock.wall(now),
        script_id: random_task_id(),
    };
    let body = runspace.render(now);
    runspaces.push(runspace);
    st.created.fetch_add(1, Ordering::Relaxed);
    // No Location header: the controller does not set one although the docs promise it.
    json_resp(StatusCode::ACCEPTED, &body)
}

/// `{"name"?: string, "run_vc_connection_script"?: bool}`; other fields are ignored like the
/// server's model binder ignores read-only ones.
fn parse_create(body: &[u8]) -> Result<(Option<String>, bool), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, false));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("Malformed JSON request body: {e}."))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "The request body must be a JSON object.".to_string())?;
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("'name' must be a string.".to_string()),
    };
    let run = match obj.get("run_vc_connection_script") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("'run_vc_connection_script' must be a boolean.".to_string()),
    };
    Ok((name, run))
}

fn new_runspace_id(existing: &[Runspace]) -> String {
    loop {
        let id = random_hex(12);
        if !existing.iter().any(|r| r.id == id) {
            return id;
        }
    }
}

fn list(st: &Shared, session: &Session) -> Response {
    let now = st.core.clock.now();
    let items: Vec<Value> = lock(&st.runspaces)
        .iter()
        .filter(|r| r.owner == session.user)
        .map(|r| r.render(now))
        .collect();
    json_resp(StatusCode::OK, &Value::Array(items))
}

fn get(st: &Shared, session: &Session, id: &str) -> Response {
    let now = st.core.clock.now();
    let runspaces = lock(&st.runspaces);
    // Another user's runspace is "not found" too, as on the real server.
    match runspaces
        .iter()
        .find(|r| r.id == id && r.owner == session.user)
    {
        Some(r) => json_resp(StatusCode::OK, &r.render(now)),
        None => error_details(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            &format!("Runspace with id '{id}' not found"),
        ),
    }
}

fn delete(st: &Shared, session: &Session, id: &str) -> Response {
    let mut runspaces = lock(&st.runspaces);
    let before = runspaces.len();
    runspaces.retain(|r| !(r.id == id && r.owner == session.user));
    if runspaces.len() == before {
        // The real server has no 404 here: any failure, unknown ids included, is 2040.
        return error_details(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_DELETE_FAILED,
            &format!("Failed to delete runspace with id '{id}': runspace not found"),
        );
    }
    empty(StatusCode::OK)
}

// ---------------------------------------------------------------------------------------------
// Responses

/// An ErrorDetails body without `details` (Newtonsoft omits nulls).
fn error_details(status: StatusCode, code: i64, message: &str) -> Response {
    json_resp(status, &json!({"code": code, "error_message": message}))
}

fn bad_request(message: &str) -> Response {
    error_details(StatusCode::BAD_REQUEST, 400, message)
}

fn unauthorized() -> Response {
    let mut resp = empty(StatusCode::UNAUTHORIZED);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    resp
}

// ---------------------------------------------------------------------------------------------
// Seed data

fn seed(st: &Shared) {
    let now = st.core.clock.now();
    let ago = |mins: i64| st.core.clock.wall(now) - chrono::Duration::minutes(mins);
    let mut runspaces = lock(&st.runspaces);
    runspaces.push(Runspace {
        id: SRS_DEMO_READY_RUNSPACE.to_string(),
        owner: st.core.username.clone(),
        api_key: None,
        name: Some("demo-ready".to_string()),
        run_vc_connection_script: true,
        fails: false,
        settles_at: now,
        creation_wall: ago(60),
        script_id: "7f3e0c2a-91d4-4c0e-bb6f-2e8f1a9d3c55".to_string(),
    });
    runspaces.push(Runspace {
        id: SRS_DEMO_ERROR_RUNSPACE.to_string(),
        owner: st.core.username.clone(),
        api_key: None,
        name: None,
        run_vc_connection_script: false,
        fails: true,
        settles_at: now,
        creation_wall: ago(30),
        script_id: random_task_id(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimClock;

    fn runspace(name: Option<&str>, run_script: bool, at: Duration) -> Runspace {
        Runspace {
            id: "a1b2c3d4e5f6".to_string(),
            owner: "u".to_string(),
            api_key: None,
            name: name.map(str::to_string),
            run_vc_connection_script: run_script,
            fails: name.is_some_and(|n| n.starts_with(FAIL_NAME_PREFIX)),
            settles_at: at
                + if run_script {
                    READY_AFTER_WITH_SCRIPT
                } else {
                    READY_AFTER
                },
            creation_wall: Utc::now(),
            script_id: "7f3e0c2a-91d4-4c0e-bb6f-2e8f1a9d3c55".to_string(),
        }
    }

    #[test]
    fn state_moves_from_creating_to_ready_or_error_over_the_clock() {
        let plain = runspace(None, false, Duration::ZERO);
        assert_eq!(
            plain.render(Duration::from_millis(2999))["state"],
            "creating"
        );
        assert_eq!(plain.render(READY_AFTER)["state"], "ready");
        let scripted = runspace(Some("nightly"), true, Duration::ZERO);
        let creating = scripted.render(Duration::from_secs(7));
        assert_eq!(creating["state"], "creating");
        assert!(creating.get("vc_connection_script_id").is_none());
        let ready = scripted.render(READY_AFTER_WITH_SCRIPT);
        assert_eq!(ready["state"], "ready");
        assert_eq!(
            ready["vc_connection_script_id"],
            "7f3e0c2a-91d4-4c0e-bb6f-2e8f1a9d3c55"
        );
        let failing = runspace(Some("fail-x"), false, Duration::ZERO);
        assert!(
            failing
                .render(Duration::ZERO)
                .get("error_details")
                .is_none()
        );
        let err = failing.render(READY_AFTER);
        assert_eq!(err["state"], "error");
        assert_eq!(err["error_details"]["code"], 500);
    }

    #[test]
    fn absent_fields_are_omitted_not_null() {
        let v = runspace(None, false, Duration::ZERO).render(Duration::ZERO);
        let keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["creation_time", "id", "run_vc_connection_script", "state"]
        );
    }

    #[test]
    fn creation_time_has_seven_fraction_digits_and_a_local_offset() {
        let t = DateTime::parse_from_rfc3339("2024-05-02T08:20:31.512345678Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(srs_datetime(t), "2024-05-02T11:20:31.5123456+03:00");
    }

    #[test]
    fn routes_resolve() {
        assert_eq!(
            resolve(&Method::GET, "/api/runspaces/").key(),
            ROUTE_RUNSPACE_LIST
        );
        assert!(matches!(
            resolve(&Method::DELETE, "/api/runspaces/ab%20c"),
            Route::Delete(id) if id == "ab c"
        ));
        assert_eq!(resolve(&Method::PUT, "/api/runspaces/x").key(), ROUTE_OTHER);
        assert_eq!(resolve(&Method::GET, "/api/auth/login").key(), ROUTE_OTHER);
    }

    #[tokio::test]
    async fn seeded_runspaces_are_settled_at_start() {
        let opts = SimOptions {
            clock: SimClock::manual(),
            ..SimOptions::default()
        };
        let sim = ScriptRuntimeSim::start(&opts).await.unwrap();
        assert_eq!(sim.runspace_count(), 2);
        assert_eq!(sim.runspaces_created(), 0);
        let now = sim.clock().now();
        let runspaces = lock(&sim.shared.runspaces).clone();
        let state = |id: &str| {
            runspaces
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.render(now)["state"].clone())
        };
        assert_eq!(state(SRS_DEMO_READY_RUNSPACE), Some(json!("ready")));
        assert_eq!(state(SRS_DEMO_ERROR_RUNSPACE), Some(json!("error")));
    }
}
