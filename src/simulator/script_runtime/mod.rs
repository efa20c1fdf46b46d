//! The simulated Script Runtime Service for vSphere (SRS): API-key login and the runspaces API
//! (`/api/auth/*`, `/api/runspaces`), speaking the wire format of `UPSTREAM_APIS.md` section 6
//! and `srs-apigateway-openapi.json`. The runspace model and its JSON live in [`runspace`].
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
//! - unknown paths answer `404` with an empty body, counted under [`ROUTE_OTHER`];
//! - two users log in: the configured `SimOptions::username` and [`SRS_USER2`]; each API key
//!   is bound to its user, who sees only the runspaces it created (the seeded ones are the
//!   configured user's): another user's runspace answers exactly as an unknown id, `404`
//!   code 2030 on get and `500` code 2040 on delete (the real server has no 404 there), and
//!   lists leave it out.

mod runspace;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::SimOptions;
use super::common::lock;
use super::ids;
use super::part::{Authenticated, Kind, Part, Routes, Rules, Shared, admit_all};
use super::web::{basic_credentials, empty, header_str, json as json_resp, read_body};
use runspace::Runspace;
pub use runspace::srs_datetime;

pub use super::part::ROUTE_OTHER;

/// Route keys, as used by `requests` and `inject`; each is also the route it names.
pub const ROUTE_LOGIN: &str = "POST /api/auth/login";
pub const ROUTE_LOGOUT: &str = "POST /api/auth/logout";
pub const ROUTE_RUNSPACE_CREATE: &str = "POST /api/runspaces";
pub const ROUTE_RUNSPACE_LIST: &str = "GET /api/runspaces";
pub const ROUTE_RUNSPACE_GET: &str = "GET /api/runspaces/{id}";
pub const ROUTE_RUNSPACE_DELETE: &str = "DELETE /api/runspaces/{id}";

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

/// The second SRS user (a vCenter SSO user, as every SRS login is): its API keys see only
/// its own runspaces.
pub const SRS_USER2: &str = "runner@vsphere.local";
/// The password of [`SRS_USER2`].
pub const SRS_USER2_PASSWORD: &str = "Runner1!";

/// Seeded: `ready` since an hour, name `demo-ready`, created with the connection script.
pub const SRS_DEMO_READY_RUNSPACE: &str = "5eed00a0b001";
/// Seeded: `error` (container creation failed), no name.
pub const SRS_DEMO_ERROR_RUNSPACE: &str = "5eed00e0e001";

/// ErrorDetails codes (`DataTypes/ApiErrorCodes.cs`).
const CODE_MAX_RUNSPACES: i64 = 2020;
const CODE_NOT_FOUND: i64 = 2030;
const CODE_DELETE_FAILED: i64 = 2040;
const BODY_LIMIT: usize = 1 << 20;

/// The running simulated SRS (see [`Part`]); `logins` counts successful
/// `POST /api/auth/login` calls.
pub type ScriptRuntimeSim = Part<ScriptRuntime>;

/// The SRS kind: every user's runspaces and the count of successful creates.
pub struct ScriptRuntime {
    runspaces: Mutex<Vec<Runspace>>,
    created: AtomicU64,
}

impl Kind for ScriptRuntime {
    const RULES: Rules = Rules {
        name: "Script Runtime Service",
        credential: |headers| header_str(headers, API_KEY_HEADER).map(str::to_string),
        unauthenticated: |_: &Request| unauthorized(),
        not_found: |_, _| empty(StatusCode::NOT_FOUND),
        unavailable: |_: &Request| {
            let msg = "The service is temporarily unavailable.";
            error_details(StatusCode::SERVICE_UNAVAILABLE, 503, msg)
        },
        admit: admit_all,
    };

    fn new(opts: &SimOptions) -> Self {
        let runspaces = if opts.seed_demo_tasks {
            runspace::seeded(&opts.clock, &opts.username)
        } else {
            Vec::new()
        };
        ScriptRuntime {
            runspaces: Mutex::new(runspaces),
            created: AtomicU64::new(0),
        }
    }

    fn routes() -> Routes<Self> {
        Routes::new()
            .public(ROUTE_LOGIN, login)
            .session(ROUTE_LOGOUT, logout)
            .session(ROUTE_RUNSPACE_CREATE, create)
            .session(ROUTE_RUNSPACE_LIST, list)
            .session(ROUTE_RUNSPACE_GET, get)
            .session(ROUTE_RUNSPACE_DELETE, delete)
    }
}

impl ScriptRuntimeSim {
    /// Successful `POST /api/runspaces` calls (refused creates do not count).
    pub fn runspaces_created(&self) -> u64 {
        self.kind().created.load(Ordering::Relaxed)
    }

    /// Runspaces that exist now, of every user.
    pub fn runspace_count(&self) -> usize {
        lock(&self.kind().runspaces).len()
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// `POST /api/auth/login` with Basic (the configured user or [`SRS_USER2`]): `200` and an
/// API key bound to that user.
async fn login(State(st): State<Shared<ScriptRuntime>>, headers: HeaderMap) -> Response {
    let known = |user: &str, password: &str| {
        st.core.credentials_match(user, password)
            || (user == SRS_USER2 && password == SRS_USER2_PASSWORD)
    };
    match basic_credentials(&headers) {
        Some((user, password)) if known(&user, &password) => {
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

async fn logout(
    State(st): State<Shared<ScriptRuntime>>,
    Extension(auth): Extension<Authenticated>,
) -> Response {
    st.core.sessions.remove(&auth.id);
    lock(&st.runspaces).retain(|r| r.api_key.as_deref() != Some(auth.id.as_str()));
    empty(StatusCode::OK)
}

async fn create(
    State(st): State<Shared<ScriptRuntime>>,
    Extension(auth): Extension<Authenticated>,
    body: Body,
) -> Response {
    let Some(body) = read_body(body, BODY_LIMIT).await else {
        return bad_request("The request body could not be read.");
    };
    let session = &auth.session;
    let (name, run_script) = match parse_create(&body) {
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
        api_key: Some(auth.id.clone()),
        fails: name
            .as_deref()
            .is_some_and(|n| n.starts_with(FAIL_NAME_PREFIX)),
        name,
        run_vc_connection_script: run_script,
        settles_at: now.saturating_add(delay),
        creation_wall: st.core.clock.wall(now),
        script_id: ids::uuid(),
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
        let id = ids::hex(12);
        if !existing.iter().any(|r| r.id == id) {
            return id;
        }
    }
}

async fn list(
    State(st): State<Shared<ScriptRuntime>>,
    Extension(auth): Extension<Authenticated>,
) -> Response {
    let session = &auth.session;
    let now = st.core.clock.now();
    let items: Vec<Value> = lock(&st.runspaces)
        .iter()
        .filter(|r| r.owner == session.user)
        .map(|r| r.render(now))
        .collect();
    json_resp(StatusCode::OK, &Value::Array(items))
}

/// A call on one runspace by id: the id and the caller. Get and delete see only the caller's
/// own runspaces; another user's runspace is "not found" too, as on the real server.
struct RunspaceCall {
    id: String,
    user: String,
}

impl RunspaceCall {
    /// Whether `r` is the runspace this call names.
    fn names(&self, r: &Runspace) -> bool {
        r.id == self.id && r.owner == self.user
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RunspaceCall {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match parts.extensions.get::<Authenticated>() {
            Some(auth) => Ok(RunspaceCall {
                id,
                user: auth.session.user.clone(),
            }),
            // Only a route registered as public could get here: a simulator bug, not a 401.
            None => Err(empty(StatusCode::INTERNAL_SERVER_ERROR)),
        }
    }
}

async fn get(State(st): State<Shared<ScriptRuntime>>, call: RunspaceCall) -> Response {
    let now = st.core.clock.now();
    match lock(&st.runspaces).iter().find(|r| call.names(r)) {
        Some(r) => json_resp(StatusCode::OK, &r.render(now)),
        None => error_details(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            &format!("Runspace with id '{}' not found", call.id),
        ),
    }
}

async fn delete(State(st): State<Shared<ScriptRuntime>>, call: RunspaceCall) -> Response {
    let mut runspaces = lock(&st.runspaces);
    let before = runspaces.len();
    runspaces.retain(|r| !call.names(r));
    if runspaces.len() == before {
        // The real server has no 404 here: any failure, unknown ids included, is 2040.
        return error_details(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_DELETE_FAILED,
            &format!(
                "Failed to delete runspace with id '{}': runspace not found",
                call.id
            ),
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

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::simulator::SimClock;
    use crate::simulator::part::probe::Probe;

    #[tokio::test]
    async fn routes_resolve() {
        let p = Probe::<ScriptRuntime>::new();
        let keys = [
            ROUTE_RUNSPACE_CREATE,
            ROUTE_RUNSPACE_LIST,
            ROUTE_RUNSPACE_GET,
            ROUTE_RUNSPACE_DELETE,
            ROUTE_LOGIN,
            ROUTE_LOGOUT,
        ];
        let unmatched = [
            (Method::PUT, "/api/runspaces/x"),
            (Method::GET, "/api/auth/login"),
        ];
        p.assert_table(API_KEY_HEADER, &keys, &unmatched).await;
        let key = p.login();
        let s = Some((API_KEY_HEADER, key.as_str()));
        let list = p.key(Method::GET, "/api/runspaces/", s).await;
        assert_eq!(list, ROUTE_RUNSPACE_LIST);
        // The id is percent-decoded: the delete refusal names it.
        let (route, status, body) = p.call(Method::DELETE, "/api/runspaces/ab%20c", s).await;
        assert_eq!(
            (route, status),
            (ROUTE_RUNSPACE_DELETE, StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert!(String::from_utf8_lossy(&body).contains("id 'ab c'"));
        let (route, status, body) = p.call(Method::GET, "/nope", None).await;
        assert_eq!((route, status), (ROUTE_OTHER, StatusCode::NOT_FOUND));
        assert!(body.is_empty(), "unknown paths answer an empty 404");
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_delayed_after_handling_exists_before_its_answer() {
        let p = Probe::<ScriptRuntime>::new();
        let key = p.login();
        let s = Some((API_KEY_HEADER, key.as_str()));
        let delay = Duration::from_secs(30);
        p.ctx.core.faults.push(
            ROUTE_RUNSPACE_CREATE,
            crate::simulator::Fault::DelayAfter(delay),
        );
        let seeded = lock(&p.ctx.kind.runspaces).len();
        let started = tokio::time::Instant::now();
        let create = p.call(Method::POST, "/api/runspaces", s);
        tokio::pin!(create);
        let created = |p: &Probe<ScriptRuntime>| p.ctx.kind.created.load(Ordering::Relaxed);
        let handled = async {
            for _ in 0..10_000 {
                if created(&p) > 0 {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            _ = &mut create => panic!("answered before the delay"),
            _ = handled => {}
        }
        assert_eq!(created(&p), 1, "handled before the answer");
        let now = lock(&p.ctx.kind.runspaces).len();
        assert_eq!(now, seeded + 1, "created, not yet answered");
        let (_, status, _) = create.await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(started.elapsed(), delay, "paused time");
        // Used once.
        let (_, status, _) = p.call(Method::POST, "/api/runspaces", s).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(started.elapsed(), delay);
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
        let runspaces = lock(&sim.kind().runspaces).clone();
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
