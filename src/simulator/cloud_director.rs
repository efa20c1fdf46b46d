//! The simulated VMware Cloud Director: `/cloudapi` login (Basic `user@org` or an API token
//! through `/oauth`), the legacy `/api/task/{uuid}` Task resource with cancel, and the query
//! service `/api/query?type=task|adminTask`, in the JSON wire format of `UPSTREAM_APIS.md`
//! section 5 (camelCase, `otherAttributes` / `vCloudExtension` noise, explicit nulls).
//!
//! Tasks live in the shared engine; this file maps them: Pending → `queued`, Blocked →
//! `preRunning` (VCD's "awaiting approval" is the closest to a task that waits), Running →
//! `running`, Succeeded → `success`, Failed → `error`, and a cancelled task (or a Failed
//! phase with error type `CANCELED`) → `aborted`. [`TaskSpec::extra`] keys read here:
//! `org` (org name, default [`SimOptions::vcd_org`]), `ownerName`, `details`, `vcTasks`
//! (array of VcTask objects without times), `majorErrorCode` (int, default 500) and
//! `noProgress` (bool: `progress` stays null).
//!
//! Decisions where the reference is silent or UNCONFIRMED:
//! - unknown (or other-org) task ids answer `403 ACCESS_TO_RESOURCE_IS_FORBIDDEN`, as VCD is
//!   commonly reported to; the `404 RESOURCE_NOT_FOUND` variant is reachable with
//!   [`resource_not_found_fault`] + `inject`;
//! - a cancel sets `cancelRequested` at once, removes the `task:cancel` link and aborts the
//!   task [`CANCEL_DELAY`] (1 s of sim clock) later; the end state is `aborted` (the
//!   reference leaves `aborted` vs `canceled` open); cancel of a finished, already cancelled
//!   or non-cancelable task answers `400 BAD_REQUEST`;
//! - logout is `DELETE /cloudapi/1.0.0/sessions/current` (the exact path is UNCONFIRMED);
//! - a wrong API token, grant type or org on `/oauth/.../token` answers `400` with an
//!   RFC 6749 error body (`{"error":"invalid_grant",...}`); the response's `refresh_token`
//!   is the API token itself, `expires_in` the session idle timeout; token exchanges count as
//!   logins;
//! - the tenant login user is `SimOptions::username` (split at the last `@`, so
//!   `administrator@vsphere.local@acme` works); `System` users must use `/sessions/provider`;
//! - `Accept` must name JSON (`application/json`, `application/*+json`, `application/*`, or
//!   `application/vnd.vmware.*+json`) with a `version` in [`SUPPORTED_VERSIONS`]; XML, a
//!   missing or an unsupported version answer `406`. `GET /api/versions` needs neither
//!   Accept version nor login;
//! - query: `pageSize` above [`QUERY_MAX_PAGE_SIZE`] is clamped to it (128 is documented
//!   only for cloudapi); a page past the last answers `200` with no records; default order
//!   is creation order; `type=task` is scoped to the session's org (so a provider sees only
//!   `System` tasks there) and `type=adminTask` (provider only) sees all orgs; record dates
//!   carry an offset *with* colon like the reference's query example, Task times without.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Offset as _, Utc};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Value, json};

use super::SimOptions;
use super::common::{
    Fault, Session, SimCore, SimHandle, basic_credentials, empty, header_str, parse_form,
    percent_decode, percent_encode, query_pairs, random_hex, raw_json,
};
use super::tasks::script::{at, failed, mins, running, secs, succeeded};
use super::tasks::{
    CANCELED_ERROR_TYPE, CancelRefusal, Phase, TaskSnapshot, TaskSpec, TaskStatus, TaskStore,
};

/// Route keys, as used by `requests` and `inject`.
pub const ROUTE_LOGIN: &str = "POST /cloudapi/1.0.0/sessions";
pub const ROUTE_PROVIDER_LOGIN: &str = "POST /cloudapi/1.0.0/sessions/provider";
pub const ROUTE_TENANT_TOKEN: &str = "POST /oauth/tenant/{org}/token";
pub const ROUTE_PROVIDER_TOKEN: &str = "POST /oauth/provider/token";
pub const ROUTE_SESSION_CURRENT: &str = "GET /cloudapi/1.0.0/sessions/current";
pub const ROUTE_LOGOUT: &str = "DELETE /cloudapi/1.0.0/sessions/current";
pub const ROUTE_TASK_GET: &str = "GET /api/task/{task}";
pub const ROUTE_TASK_CANCEL: &str = "POST /api/task/{task}/action/cancel";
pub const ROUTE_QUERY: &str = "GET /api/query";
pub const ROUTE_VERSIONS: &str = "GET /api/versions";
/// Requests that match no route above.
pub const ROUTE_OTHER: &str = "OTHER";

/// Login response header with the bearer token (also accepted on requests).
pub const ACCESS_TOKEN_HEADER: &str = "X-VMWARE-VCLOUD-ACCESS-TOKEN";
pub const TOKEN_TYPE_HEADER: &str = "X-VMWARE-VCLOUD-TOKEN-TYPE";
/// API versions this server speaks (VCD 10.3 – VCF Automation).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "36.0", "37.0", "37.1", "37.2", "37.3", "38.0", "38.1", "39.0", "39.1", "40.0",
];
/// The provider organization.
pub const PROVIDER_ORG: &str = "System";
/// Time between an accepted cancel and the task ending `aborted`.
pub const CANCEL_DELAY: Duration = Duration::from_secs(1);
pub const QUERY_DEFAULT_PAGE_SIZE: usize = 25;
pub const QUERY_MAX_PAGE_SIZE: usize = 128;

const TASK_TYPE: &str = "application/vnd.vmware.vcloud.task+json";
const RECORDS_TYPE: &str = "application/vnd.vmware.vcloud.query.records+json";
const ERROR_TYPE: &str = "application/vnd.vmware.vcloud.error+json";
const BODY_LIMIT: usize = 64 * 1024;
/// Tasks expire (disappear) 90 days after they start, as `expiryTime` says.
const TASK_EXPIRY_DAYS: i64 = 90;
/// Nested-subtask rendering stops this deep (a parent cycle must not recurse forever).
const MAX_NESTING: usize = 4;

/// `running`, 0 → 100 % over 45 minutes, not cancelable; then `success`.
pub const VCD_DEMO_RUNNING_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b60";
/// `running` and cancelable for six hours unless cancelled.
pub const VCD_DEMO_CANCELABLE_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b61";
/// `queued` for ten minutes, then runs and succeeds.
pub const VCD_DEMO_QUEUED_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b62";
/// `preRunning` (awaiting approval) indefinitely.
pub const VCD_DEMO_PRE_RUNNING_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b63";
/// `success` an hour ago, with two `vcTaskList` entries and a result.
pub const VCD_DEMO_SUCCEEDED_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b64";
/// `error` 40 minutes ago with a full Error (major 500, minor `INTERNAL_SERVER_ERROR`,
/// a stack trace from the cause).
pub const VCD_DEMO_ERROR_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b65";
/// `aborted` 30 minutes ago (cancelled by a user).
pub const VCD_DEMO_ABORTED_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b66";
/// `running`, with two nested subtasks (one `success`, one `running`) in `tasks.task[]`.
pub const VCD_DEMO_PARENT_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b67";
/// `success`, in org `globex`: invisible to tenant `acme`, listed by `adminTask`.
pub const VCD_DEMO_OTHER_ORG_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b70";

/// The `404 RESOURCE_NOT_FOUND` answer real VCD gives for some unknown ids (this simulator
/// answers 403 by default): `sim.cloud_director.inject(ROUTE_TASK_GET, resource_not_found_fault(id))`.
pub fn resource_not_found_fault(task_uuid: &str) -> Fault {
    Fault::Status {
        status: 404,
        body: legacy_error_body(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            &format!(
                "[ {} ] urn:vcloud:task:{task_uuid} not found.",
                random_uuid()
            ),
        )
        .to_string(),
    }
}

/// The running simulated Cloud Director. Cheap to clone; it stops when the last clone is
/// dropped. `url()` is the root (no `/api`); `logins` counts successful logins and token
/// exchanges.
#[derive(Clone)]
pub struct CloudDirectorSim {
    handle: SimHandle,
    shared: Arc<Shared>,
}

struct Shared {
    core: Arc<SimCore>,
    tasks: TaskStore,
    org: String,
    api_token: String,
    idle_timeout: Duration,
    /// The listener's URL, for `href`s (known only after binding).
    base: OnceLock<String>,
}

impl CloudDirectorSim {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start(opts: &SimOptions) -> std::io::Result<CloudDirectorSim> {
        let tasks = TaskStore::new(opts.clock.clone());
        if opts.seed_demo_tasks {
            seed_demo_tasks(&tasks);
        }
        let core = Arc::new(SimCore::new(opts));
        let shared = Arc::new(Shared {
            core: Arc::clone(&core),
            tasks,
            org: opts.vcd_org.clone(),
            api_token: opts.vcd_api_token.clone(),
            idle_timeout: opts.session_idle_timeout,
            base: OnceLock::new(),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let handle = SimHandle::start(core, router, opts.tls, "Cloud Director").await?;
        let _ = shared.base.set(handle.url());
        Ok(CloudDirectorSim { handle, shared })
    }

    pub fn tasks(&self) -> &TaskStore {
        &self.shared.tasks
    }

    /// The tenant organization (`SimOptions::vcd_org`).
    pub fn org(&self) -> &str {
        &self.shared.org
    }

    /// The API token the `/oauth` endpoints accept.
    pub fn api_token(&self) -> &str {
        &self.shared.api_token
    }
}

impl Deref for CloudDirectorSim {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for CloudDirectorSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudDirectorSim")
            .field("url", &self.url())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Routing

#[derive(Debug)]
enum Route {
    Login { provider: bool },
    Token { org: Option<String> },
    SessionCurrent,
    Logout,
    TaskGet(String),
    TaskCancel(String),
    Query,
    Versions,
    Unknown,
}

impl Route {
    fn key(&self) -> &'static str {
        match self {
            Route::Login { provider: false } => ROUTE_LOGIN,
            Route::Login { provider: true } => ROUTE_PROVIDER_LOGIN,
            Route::Token { org: Some(_) } => ROUTE_TENANT_TOKEN,
            Route::Token { org: None } => ROUTE_PROVIDER_TOKEN,
            Route::SessionCurrent => ROUTE_SESSION_CURRENT,
            Route::Logout => ROUTE_LOGOUT,
            Route::TaskGet(_) => ROUTE_TASK_GET,
            Route::TaskCancel(_) => ROUTE_TASK_CANCEL,
            Route::Query => ROUTE_QUERY,
            Route::Versions => ROUTE_VERSIONS,
            Route::Unknown => ROUTE_OTHER,
        }
    }

    /// Errors of `/cloudapi` and `/oauth` use the cloudapi body; `/api` the legacy Error.
    fn cloudapi(&self) -> bool {
        matches!(
            self,
            Route::Login { .. } | Route::Token { .. } | Route::SessionCurrent | Route::Logout
        )
    }
}

fn resolve(method: &Method, path: &str) -> Route {
    let path = path.strip_suffix('/').unwrap_or(path);
    match (method, path) {
        (&Method::POST, "/cloudapi/1.0.0/sessions") => return Route::Login { provider: false },
        (&Method::POST, "/cloudapi/1.0.0/sessions/provider") => {
            return Route::Login { provider: true };
        }
        (&Method::GET, "/cloudapi/1.0.0/sessions/current") => return Route::SessionCurrent,
        (&Method::DELETE, "/cloudapi/1.0.0/sessions/current") => return Route::Logout,
        (&Method::POST, "/oauth/provider/token") => return Route::Token { org: None },
        (&Method::GET, "/api/query") => return Route::Query,
        (&Method::GET, "/api/versions") => return Route::Versions,
        _ => {}
    }
    let segment = |s: &str| (!s.is_empty() && !s.contains('/')).then(|| percent_decode(s))?;
    if let Some(rest) = path.strip_prefix("/oauth/tenant/") {
        if let (&Method::POST, Some(org)) = (method, rest.strip_suffix("/token")) {
            if let Some(org) = segment(org) {
                return Route::Token { org: Some(org) };
            }
        }
        return Route::Unknown;
    }
    if let Some(rest) = path.strip_prefix("/api/task/") {
        if let (&Method::POST, Some(id)) = (method, rest.strip_suffix("/action/cancel")) {
            return segment(id).map_or(Route::Unknown, Route::TaskCancel);
        }
        if *method == Method::GET {
            return segment(rest).map_or(Route::Unknown, Route::TaskGet);
        }
    }
    Route::Unknown
}

async fn handle(State(st): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let route = resolve(req.method(), req.uri().path());
    let key = route.key();
    tracing::debug!(route = key, "cloud director sim request");
    if let Some(resp) = st.core.enter(key).await {
        return resp;
    }
    let cloudapi = route.cloudapi();
    let version = match route {
        Route::Versions => return versions(&st),
        Route::Unknown => {
            return if req.uri().path().starts_with("/api/") {
                legacy_error(
                    StatusCode::NOT_FOUND,
                    "RESOURCE_NOT_FOUND",
                    &format!("The requested resource {} was not found.", req.uri().path()),
                    None,
                )
            } else {
                cloudapi_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found.", None)
            };
        }
        _ => match negotiate(req.headers()) {
            Ok(v) => v,
            Err(msg) => {
                let msg = format!("The request has invalid accept header: {msg}");
                return if cloudapi {
                    cloudapi_error(StatusCode::NOT_ACCEPTABLE, "NOT_ACCEPTABLE", &msg, None)
                } else {
                    legacy_error(StatusCode::NOT_ACCEPTABLE, "NOT_ACCEPTABLE", &msg, None)
                };
            }
        },
    };
    let v = Some(version.as_str());
    match route {
        Route::Login { provider } => login(&st, req.headers(), provider, &version),
        Route::Token { org } => {
            let body = match axum::body::to_bytes(req.into_body(), BODY_LIMIT).await {
                Ok(b) => b,
                Err(_) => return oauth_error("invalid_request", "The body could not be read."),
            };
            token(&st, org.as_deref(), &body)
        }
        route => {
            let Some((token, who)) = authenticate(&st, req.headers()) else {
                let msg = "This operation is denied: the session is missing, invalid or expired.";
                return if cloudapi {
                    cloudapi_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg, v)
                } else {
                    legacy_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg, v)
                };
            };
            match route {
                Route::SessionCurrent => vcd_json(
                    StatusCode::OK,
                    &session_json(&st, &token, &who),
                    &format!("application/json;version={version}"),
                ),
                Route::Logout => {
                    st.core.sessions.remove(&token);
                    empty(StatusCode::NO_CONTENT)
                }
                Route::TaskGet(id) => task_get(&st, &who, &id, &version),
                Route::TaskCancel(id) => task_cancel(&st, &who, &id, &version),
                Route::Query => query(&st, &who, &query_pairs(req.uri()), &version),
                _ => legacy_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_SERVER_ERROR",
                    "Internal simulator routing error.",
                    v,
                ),
            }
        }
    }
}

/// The API version of a JSON media range in `Accept`, or why there is none.
fn negotiate(headers: &HeaderMap) -> Result<String, String> {
    let Some(accept) = header_str(headers, header::ACCEPT.as_str()) else {
        return Err("Missing Accept header with an API version.".to_string());
    };
    let mut problem = "Missing API version in the Accept header.".to_string();
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let version = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("version"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string());
        let json_like = media == "application/json"
            || media == "application/*+json"
            || media == "application/*"
            || (media.starts_with("application/vnd.vmware.") && media.ends_with("+json"));
        match version {
            Some(_) if !json_like => {
                problem = format!("Media type {media} is not served (this server answers JSON).");
            }
            Some(v) if SUPPORTED_VERSIONS.contains(&v.as_str()) => return Ok(v),
            Some(v) => problem = format!("Invalid API version requested: {v} is not supported."),
            None => {}
        }
    }
    Err(problem)
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// Who a session belongs to (`Session::user` is stored as `name@org`).
#[derive(Debug, Clone)]
struct Who {
    user: String,
    org: String,
}

impl Who {
    fn from_session(s: &Session) -> Who {
        let (user, org) = s.user.rsplit_once('@').unwrap_or((s.user.as_str(), ""));
        Who {
            user: user.to_string(),
            org: org.to_string(),
        }
    }

    fn provider(&self) -> bool {
        self.org == PROVIDER_ORG
    }

    fn sees(&self, org: &str) -> bool {
        self.provider() || self.org.eq_ignore_ascii_case(org)
    }
}

fn authenticate(st: &Shared, headers: &HeaderMap) -> Option<(String, Who)> {
    let bearer = header_str(headers, header::AUTHORIZATION.as_str()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    let token = bearer.or_else(|| header_str(headers, ACCESS_TOKEN_HEADER).map(str::to_string))?;
    let session = st.core.sessions.touch(&token)?;
    Some((token, Who::from_session(&session)))
}

fn login(st: &Shared, headers: &HeaderMap, provider: bool, version: &str) -> Response {
    let denied = |msg: &str| cloudapi_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg, None);
    let Some((login, password)) = basic_credentials(headers) else {
        return denied("Basic credentials user@org:password are required.");
    };
    let Some((user, org)) = login.rsplit_once('@') else {
        return denied("The user name must be given as user@org.");
    };
    if !st.core.credentials_match(user, &password) {
        return denied("Invalid credentials.");
    }
    let org = if org.eq_ignore_ascii_case(PROVIDER_ORG) {
        if !provider {
            return denied("Provider users must log in through /cloudapi/1.0.0/sessions/provider.");
        }
        PROVIDER_ORG.to_string()
    } else if provider || !org.eq_ignore_ascii_case(&st.org) {
        return denied("Invalid credentials.");
    } else {
        st.org.clone()
    };
    let who = Who {
        user: user.to_string(),
        org,
    };
    let token = jwt(st, &who);
    st.core
        .login_with_id(token.clone(), &format!("{}@{}", who.user, who.org));
    let mut resp = vcd_json(
        StatusCode::OK,
        &session_json(st, &token, &who),
        &format!("application/json;version={version}"),
    );
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert(ACCESS_TOKEN_HEADER, v);
    }
    resp.headers_mut()
        .insert(TOKEN_TYPE_HEADER, HeaderValue::from_static("Bearer"));
    resp
}

/// `grant_type=refresh_token&refresh_token=<API token>` → a bearer access token.
fn token(st: &Shared, org: Option<&str>, body: &[u8]) -> Response {
    let Some(form) = std::str::from_utf8(body).ok().and_then(parse_form) else {
        return oauth_error("invalid_request", "The body is not a valid form.");
    };
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("refresh_token") {
        return oauth_error("unsupported_grant_type", "Only refresh_token is supported.");
    }
    if field("refresh_token") != Some(st.api_token.as_str()) {
        return oauth_error("invalid_grant", "The refresh token is invalid or revoked.");
    }
    let org = match org {
        None => PROVIDER_ORG.to_string(),
        Some(o) if o.eq_ignore_ascii_case(&st.org) => st.org.clone(),
        Some(_) => {
            return oauth_error(
                "invalid_grant",
                "The refresh token is not valid for this org.",
            );
        }
    };
    let who = Who {
        user: st.core.username.clone(),
        org,
    };
    let access = jwt(st, &who);
    st.core
        .login_with_id(access.clone(), &format!("{}@{}", who.user, who.org));
    let mut resp = raw_json(
        StatusCode::OK,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": st.idle_timeout.as_secs(),
            "refresh_token": st.api_token,
        })
        .to_string(),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A JWT-shaped bearer token (header.payload.signature, base64url); never verified as one.
fn jwt(st: &Shared, who: &Who) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = st.core.clock.wall(st.core.clock.now());
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let payload = json!({
        "iss": format!("{}@{}", stable_uuid("site", "vcd01"), stable_uuid("site", "vcd01")),
        "sub": who.user,
        "org": who.org,
        "iat": now.timestamp(),
        "exp": now.timestamp() + i64::try_from(st.idle_timeout.as_secs()).unwrap_or(1800),
        "jti": random_uuid(),
    });
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_hex(64));
    format!("{}.{}.{sig}", b64(&header), b64(&payload))
}

/// CurrentSessionInfo of section 5.2.
fn session_json(st: &Shared, token: &str, who: &Who) -> Value {
    let role = if who.provider() {
        "System Administrator"
    } else {
        "Organization Administrator"
    };
    json!({
        "id": stable_uuid("session", token),
        "site": {"name": "vcd01", "id": format!("urn:vcloud:site:{}", stable_uuid("site", "vcd01"))},
        "user": {"name": who.user, "id": format!("urn:vcloud:user:{}", stable_uuid("user", &who.user))},
        "org": {"name": who.org, "id": format!("urn:vcloud:org:{}", stable_uuid("org", &who.org))},
        "location": "vcd01",
        "roles": [role],
        "roleRefs": [{"name": role, "id": format!("urn:vcloud:role:{}", stable_uuid("role", role))}],
        "sessionIdleTimeoutMinutes": st.idle_timeout.as_secs() / 60,
    })
}

fn versions(st: &Shared) -> Response {
    let login = format!("{}/api/sessions", base(st));
    let infos: Vec<Value> = SUPPORTED_VERSIONS
        .iter()
        .map(|v| {
            json!({"otherAttributes": {}, "version": v, "loginUrl": login, "mediaTypeMapping": [],
                   "deprecated": false, "vCloudExtension": []})
        })
        .collect();
    vcd_json(
        StatusCode::OK,
        &json!({"otherAttributes": {}, "versionInfo": infos, "link": [], "vCloudExtension": []}),
        "application/vnd.vmware.vcloud.versions+json",
    )
}

// ---------------------------------------------------------------------------------------------
// Tasks

fn task_org(st: &Shared, s: &TaskSnapshot) -> String {
    s.extra
        .get("org")
        .and_then(Value::as_str)
        .map_or_else(|| st.org.clone(), str::to_string)
}

fn not_visible(id: &str, version: &str) -> Response {
    legacy_error(
        StatusCode::FORBIDDEN,
        "ACCESS_TO_RESOURCE_IS_FORBIDDEN",
        &format!(
            "[ {} ] Either you need some or all of the following rights [Task: View] to perform operations [TASK_VIEW] for urn:vcloud:task:{id} or the target entity is invalid.",
            random_uuid()
        ),
        Some(version),
    )
}

fn task_get(st: &Shared, who: &Who, id: &str, version: &str) -> Response {
    let all = st.tasks.snapshots();
    match all
        .iter()
        .find(|s| s.id == id && who.sees(&task_org(st, s)))
    {
        Some(s) => vcd_json(
            StatusCode::OK,
            &task_json(st, s, &all, 0),
            &format!("{TASK_TYPE};version={version}"),
        ),
        None => not_visible(id, version),
    }
}

fn task_cancel(st: &Shared, who: &Who, id: &str, version: &str) -> Response {
    let visible = st
        .tasks
        .snapshot(id)
        .is_some_and(|s| who.sees(&task_org(st, &s)));
    if !visible {
        return not_visible(id, version);
    }
    let refuse = |msg: String| {
        legacy_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("[ {} ] {msg}", random_uuid()),
            Some(version),
        )
    };
    match st.tasks.cancel_after(id, CANCEL_DELAY) {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(CancelRefusal::NotFound) => not_visible(id, version),
        Err(CancelRefusal::Finished) => refuse(format!(
            "Task urn:vcloud:task:{id} has already finished and cannot be canceled."
        )),
        Err(CancelRefusal::NotCancelable) => {
            refuse(format!("Task urn:vcloud:task:{id} cannot be canceled."))
        }
    }
}

fn is_aborted(s: &TaskSnapshot) -> bool {
    s.canceled
        || (s.status == TaskStatus::Failed
            && s.error
                .as_ref()
                .is_some_and(|e| e.error_type == CANCELED_ERROR_TYPE))
}

/// The VCD task status string of a snapshot.
pub fn vcd_status(s: &TaskSnapshot) -> &'static str {
    if is_aborted(s) {
        return "aborted";
    }
    match s.status {
        TaskStatus::Pending => "queued",
        TaskStatus::Blocked => "preRunning",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "success",
        TaskStatus::Failed => "error",
    }
}

/// Fixed +02:00 zone of the simulated server.
fn zone() -> FixedOffset {
    FixedOffset::east_opt(2 * 3600).unwrap_or_else(|| Utc.fix())
}

/// Task time: milliseconds and a numeric offset without colon, `2024-03-06T14:11:57.473+0200`.
pub fn vcd_datetime(t: DateTime<Utc>) -> String {
    t.with_timezone(&zone())
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// Query-record time: as [`vcd_datetime`] but the offset with colon (`+02:00`).
pub fn vcd_record_datetime(t: DateTime<Utc>) -> String {
    t.with_timezone(&zone())
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

fn base(st: &Shared) -> &str {
    st.base.get().map_or("", String::as_str)
}

fn reference(href: String, id: String, ty: &str, name: &str) -> Value {
    json!({"otherAttributes": {}, "href": href, "id": id, "type": ty, "name": name,
           "vCloudExtension": []})
}

/// href, urn, media type, name and kind of a task's owner (`target` of the spec).
struct Owner {
    href: String,
    urn: String,
    media: String,
    name: String,
    kind: String,
}

fn owner(st: &Shared, s: &TaskSnapshot) -> Option<Owner> {
    let (kind, id) = s.target.as_ref()?;
    let lower = kind.to_ascii_lowercase();
    let bare = id.strip_prefix(&format!("{lower}-")).unwrap_or(id.as_str());
    let path = match kind.as_str() {
        "vApp" | "vm" => format!("vApp/{id}"),
        "vAppTemplate" => format!("vAppTemplate/{id}"),
        other => format!("{other}/{id}"),
    };
    let name = s
        .extra
        .get("ownerName")
        .and_then(Value::as_str)
        .unwrap_or(id.as_str());
    Some(Owner {
        href: format!("{}/api/{path}", base(st)),
        urn: format!("urn:vcloud:{lower}:{bare}"),
        media: format!("application/vnd.vmware.vcloud.{kind}+xml"),
        name: name.to_string(),
        kind: kind.clone(),
    })
}

fn org_href(st: &Shared, org: &str) -> String {
    format!("{}/api/org/{}", base(st), stable_uuid("org", org))
}

/// The legacy Error object (also used inside `task.error`).
fn error_object(major: u16, minor: &str, message: &str, stack: Option<String>) -> Value {
    json!({
        "otherAttributes": {},
        "majorErrorCode": major,
        "minorErrorCode": minor,
        "message": message,
        "vendorSpecificErrorCode": null,
        "stackTrace": stack,
        "tenantError": null,
        "vCloudExtension": [],
    })
}

/// Renders a snapshot as TaskType JSON (section 5.3); `all` supplies nested subtasks.
fn task_json(st: &Shared, s: &TaskSnapshot, all: &[TaskSnapshot], depth: usize) -> Value {
    let href = format!("{}/api/task/{}", base(st), s.id);
    let status = vcd_status(s);
    let org = task_org(st, s);
    let link = if s.cancelable {
        json!([{"otherAttributes": {}, "href": format!("{href}/action/cancel"), "id": null,
                "type": null, "name": "task", "rel": "task:cancel", "model": null,
                "vCloudExtension": []}])
    } else {
        json!([])
    };
    let owner = owner(st, s).map_or(Value::Null, |o| reference(o.href, o.urn, &o.media, &o.name));
    let user = s.user.as_ref().map_or(Value::Null, |u| {
        reference(
            format!("{}/api/admin/user/{}", base(st), stable_uuid("user", u)),
            format!("urn:vcloud:user:{}", stable_uuid("user", u)),
            "application/vnd.vmware.admin.user+xml",
            u,
        )
    });
    let organization = reference(
        org_href(st, &org),
        format!("urn:vcloud:org:{}", stable_uuid("org", &org)),
        "application/vnd.vmware.vcloud.org+xml",
        &org,
    );
    let no_progress = s.extra.get("noProgress") == Some(&Value::Bool(true));
    let progress = if no_progress {
        Value::Null
    } else {
        json!(s.progress)
    };
    let error = match (&s.error, status) {
        (Some(e), "error") => {
            let major = s
                .extra
                .get("majorErrorCode")
                .and_then(Value::as_u64)
                .and_then(|m| u16::try_from(m).ok())
                .unwrap_or(500);
            let message = e.messages.first().map_or("", |(_, m)| m.as_str());
            let stack: Vec<String> = e
                .messages
                .iter()
                .skip(1)
                .map(|(id, m)| format!("Caused by: {id}: {m}"))
                .collect();
            let stack = (!stack.is_empty()).then(|| stack.join("\n"));
            error_object(major, &e.error_type, message, stack)
        }
        _ => Value::Null,
    };
    let result = match (&s.result, status) {
        (Some(r), "success") => {
            let content = r.as_str().map_or_else(|| r.to_string(), str::to_string);
            json!({"otherAttributes": {}, "resultContent": content, "resultReference": null,
                   "vCloudExtension": []})
        }
        _ => Value::Null,
    };
    let vc_tasks: Vec<Value> = s
        .extra
        .get("vcTasks")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|t| {
                    let mut t = t.as_object().cloned().unwrap_or_default();
                    t.insert("otherAttributes".into(), json!({}));
                    t.entry("status").or_insert_with(|| json!(status));
                    t.insert(
                        "startTime".into(),
                        s.start_time.map_or(Value::Null, |t| json!(vcd_datetime(t))),
                    );
                    t.insert(
                        "endTime".into(),
                        s.end_time.map_or(Value::Null, |t| json!(vcd_datetime(t))),
                    );
                    t.insert("vCloudExtension".into(), json!([]));
                    Value::Object(t)
                })
                .collect()
        })
        .unwrap_or_default();
    let children: Vec<Value> = if depth < MAX_NESTING {
        all.iter()
            .filter(|c| c.parent.as_deref() == Some(s.id.as_str()))
            .map(|c| task_json(st, c, all, depth + 1))
            .collect()
    } else {
        Vec::new()
    };
    let tasks = if children.is_empty() {
        Value::Null
    } else {
        json!({"otherAttributes": {}, "task": children, "vCloudExtension": []})
    };
    let end = if matches!(status, "success" | "error" | "aborted") {
        s.end_time.map_or(Value::Null, |t| json!(vcd_datetime(t)))
    } else {
        Value::Null
    };
    json!({
        "otherAttributes": {},
        "link": link,
        "href": href,
        "type": TASK_TYPE,
        "id": format!("urn:vcloud:task:{}", s.id),
        "operationKey": null,
        "description": null,
        "tasks": tasks,
        "name": "task",
        "owner": owner,
        "error": error,
        "user": user,
        "organization": organization,
        "progress": progress,
        "params": null,
        "details": s.extra.get("details").and_then(Value::as_str).unwrap_or(""),
        "vcTaskList": {"otherAttributes": {}, "vcTask": vc_tasks, "vCloudExtension": []},
        "result": result,
        "status": status,
        "operation": s.description,
        "operationName": s.operation,
        "serviceNamespace": s.service,
        "startTime": vcd_datetime(s.queued_time),
        "endTime": end,
        "expiryTime": vcd_datetime(s.queued_time + chrono::Duration::days(TASK_EXPIRY_DAYS)),
        "cancelRequested": s.cancel_requested || is_aborted(s),
        "vCloudExtension": [],
    })
}

// ---------------------------------------------------------------------------------------------
// Query service

/// A `QueryResultTaskRecordType` (or admin) record.
fn task_record(st: &Shared, s: &TaskSnapshot, admin: bool) -> Value {
    let org = task_org(st, s);
    let owner = owner(st, s);
    let status = vcd_status(s);
    let message = match (&s.error, status) {
        (Some(e), "error") => e.messages.first().map_or("", |(_, m)| m.as_str()),
        _ => "",
    };
    json!({
        "_type": if admin { "QueryResultAdminTaskRecordType" } else { "QueryResultTaskRecordType" },
        "link": [],
        "metadata": null,
        "otherAttributes": {},
        "href": format!("{}/api/task/{}", base(st), s.id),
        "id": null,
        "type": null,
        "org": org_href(st, &org),
        "orgName": org,
        "name": s.operation,
        "operationFull": s.description,
        "message": message,
        "startDate": vcd_record_datetime(s.queued_time),
        "endDate": if matches!(status, "success" | "error" | "aborted") {
            s.end_time.map_or(Value::Null, |t| json!(vcd_record_datetime(t)))
        } else {
            Value::Null
        },
        "status": status,
        "progress": if s.extra.get("noProgress") == Some(&Value::Bool(true)) {
            Value::Null
        } else {
            json!(s.progress)
        },
        "ownerName": owner.as_ref().map_or(Value::Null, |o| json!(o.name)),
        "object": owner.as_ref().map_or(Value::Null, |o| json!(o.href)),
        "objectType": owner.as_ref().map_or(Value::Null, |o| json!(o.kind)),
        "objectName": owner.as_ref().map_or(Value::Null, |o| json!(o.name)),
        "serviceNamespace": s.service,
    })
}

fn query(st: &Shared, who: &Who, q: &[(String, String)], version: &str) -> Response {
    let bad = |msg: &str| legacy_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", msg, Some(version));
    let param = |k: &str| {
        q.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let admin = match param("type") {
        Some("task") => false,
        Some("adminTask") => true,
        Some(other) => return bad(&format!("Unsupported query type: {other}.")),
        None => return bad("The query type must be given (type=task or type=adminTask)."),
    };
    if admin && !who.provider() {
        return legacy_error(
            StatusCode::FORBIDDEN,
            "ACCESS_TO_RESOURCE_IS_FORBIDDEN",
            "This operation is denied: type adminTask needs a provider (System) session.",
            Some(version),
        );
    }
    match param("format") {
        None | Some("records") => {}
        Some(other) => return bad(&format!("Unsupported query format: {other}.")),
    }
    let number = |k: &str, default: usize| -> Result<usize, String> {
        match param(k) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("Invalid value '{v}' for {k}.")),
            },
        }
    };
    let page = match number("page", 1) {
        Ok(n) => n,
        Err(msg) => return bad(&msg),
    };
    let page_size = match number("pageSize", QUERY_DEFAULT_PAGE_SIZE) {
        Ok(n) => n.min(QUERY_MAX_PAGE_SIZE),
        Err(msg) => return bad(&msg),
    };
    let filter = match param("filter").filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(f) => match fiql::parse(f) {
            Ok(e) => Some(e),
            Err(msg) => return bad(&format!("Bad filter '{f}': {msg}")),
        },
    };
    let sort = match (param("sortAsc"), param("sortDesc")) {
        (Some(_), Some(_)) => return bad("Give only one of sortAsc and sortDesc."),
        (Some(f), None) => Some((f, false)),
        (None, Some(f)) => Some((f, true)),
        (None, None) => None,
    };
    if let Some((field, _)) = sort {
        if !fiql::FIELDS.contains(&field) {
            return bad(&format!("Cannot sort by unknown field '{field}'."));
        }
    }

    let mut records: Vec<Value> = st
        .tasks
        .snapshots()
        .iter()
        .filter(|s| {
            let org = task_org(st, s);
            if admin {
                true
            } else {
                org.eq_ignore_ascii_case(&who.org)
            }
        })
        .map(|s| task_record(st, s, admin))
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    if let Some((field, desc)) = sort {
        records.sort_by(|a, b| {
            let ord = fiql::compare_field(a, b, field);
            if desc { ord.reverse() } else { ord }
        });
    }
    let total = records.len();
    let last_page = total.div_ceil(page_size).max(1);
    let page_records: Vec<Value> = records
        .into_iter()
        .skip((page - 1).saturating_mul(page_size))
        .take(page_size)
        .collect();

    let name = if admin { "adminTask" } else { "task" };
    let mut extra = String::new();
    for key in ["filter", "sortAsc", "sortDesc"] {
        if let Some(v) = param(key) {
            extra.push_str(&format!("&{key}={}", percent_encode(v)));
        }
    }
    let page_href = |p: usize| {
        format!(
            "{}/api/query?type={name}&page={p}&pageSize={page_size}&format=records{extra}",
            base(st)
        )
    };
    let link = |rel: &str, p: usize| {
        json!({"otherAttributes": {}, "href": page_href(p), "id": null, "type": RECORDS_TYPE,
               "name": name, "rel": rel, "model": null, "vCloudExtension": []})
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link("firstPage", 1));
        links.push(link("previousPage", (page - 1).min(last_page)));
    }
    if page < last_page {
        links.push(link("nextPage", page + 1));
        links.push(link("lastPage", last_page));
    }
    vcd_json(
        StatusCode::OK,
        &json!({
            "otherAttributes": {},
            "link": links,
            "href": page_href(page),
            "type": RECORDS_TYPE,
            "name": name,
            "page": page,
            "pageSize": page_size,
            "total": total,
            "record": page_records,
            "vCloudExtension": [],
        }),
        &format!("{RECORDS_TYPE};version={version}"),
    )
}

/// FIQL filters over query records: `;` = and (binds tighter), `,` = or, parentheses,
/// `==` / `!=` (with `*` wildcards) on text fields, `=lt=` `=le=` `=gt=` `=ge=` on dates.
mod fiql {
    use std::cmp::Ordering;

    use chrono::{DateTime, FixedOffset};
    use serde_json::Value;

    /// Filterable and sortable record fields (`id` matches the uuid, urn or href).
    pub const FIELDS: &[&str] = &[
        "id",
        "href",
        "status",
        "name",
        "operationFull",
        "serviceNamespace",
        "ownerName",
        "objectName",
        "objectType",
        "object",
        "orgName",
        "startDate",
        "endDate",
    ];
    const DATE_FIELDS: &[&str] = &["startDate", "endDate"];

    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Op {
        Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge,
    }

    #[derive(Debug)]
    pub enum Expr {
        Or(Vec<Expr>),
        And(Vec<Expr>),
        Cmp {
            field: String,
            op: Op,
            value: String,
        },
    }

    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        let e = p.or()?;
        if p.i != p.s.len() {
            return Err(format!("unexpected '{}' at {}", &text[p.i..], p.i));
        }
        Ok(e)
    }

    struct Parser<'a> {
        s: &'a [u8],
        text: &'a str,
        i: usize,
    }

    impl Parser<'_> {
        fn or(&mut self) -> Result<Expr, String> {
            let mut parts = vec![self.and()?];
            while self.s.get(self.i) == Some(&b',') {
                self.i += 1;
                parts.push(self.and()?);
            }
            Ok(if parts.len() == 1 {
                parts.remove(0)
            } else {
                Expr::Or(parts)
            })
        }

        fn and(&mut self) -> Result<Expr, String> {
            let mut parts = vec![self.primary()?];
            while self.s.get(self.i) == Some(&b';') {
                self.i += 1;
                parts.push(self.primary()?);
            }
            Ok(if parts.len() == 1 {
                parts.remove(0)
            } else {
                Expr::And(parts)
            })
        }

        fn primary(&mut self) -> Result<Expr, String> {
            if self.s.get(self.i) == Some(&b'(') {
                self.i += 1;
                let e = self.or()?;
                if self.s.get(self.i) != Some(&b')') {
                    return Err("missing ')'".to_string());
                }
                self.i += 1;
                return Ok(e);
            }
            let start = self.i;
            while self
                .s
                .get(self.i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
            {
                self.i += 1;
            }
            let field = &self.text[start..self.i];
            if field.is_empty() {
                return Err(format!("expected a field name at {start}"));
            }
            if !FIELDS.contains(&field) {
                return Err(format!("unsupported field '{field}'"));
            }
            let rest = &self.text[self.i..];
            let (op, len) = [
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("=lt=", Op::Lt),
                ("=le=", Op::Le),
                ("=gt=", Op::Gt),
                ("=ge=", Op::Ge),
            ]
            .iter()
            .find(|(tok, _)| rest.starts_with(tok))
            .map(|(tok, op)| (*op, tok.len()))
            .ok_or_else(|| format!("expected an operator after '{field}'"))?;
            self.i += len;
            let vstart = self.i;
            while self
                .s
                .get(self.i)
                .is_some_and(|c| !matches!(c, b';' | b',' | b'(' | b')'))
            {
                self.i += 1;
            }
            let value = &self.text[vstart..self.i];
            if value.is_empty() {
                return Err(format!("missing value for '{field}'"));
            }
            let is_date = DATE_FIELDS.contains(&field);
            if !matches!(op, Op::Eq | Op::Ne) && !is_date {
                return Err(format!("'{field}' supports only == and !="));
            }
            if is_date && parse_date(value).is_none() {
                return Err(format!("'{value}' is not a date-time"));
            }
            Ok(Expr::Cmp {
                field: field.to_string(),
                op,
                value: value.to_string(),
            })
        }
    }

    /// RFC 3339, or VCD's offset without colon; a `+` that form-decoding turned into a space
    /// is taken back.
    pub fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
        let s = s.trim().replace(' ', "+");
        DateTime::parse_from_rfc3339(&s)
            .or_else(|_| DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .ok()
    }

    fn glob(pattern: &str, text: &str) -> bool {
        let parts: Vec<&str> = pattern.split('*').collect();
        if parts.len() == 1 {
            return pattern == text;
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !text.starts_with(first)
            || !text.ends_with(last)
            || text.len() < first.len() + last.len()
        {
            return false;
        }
        let mut rest = &text[first.len()..text.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid) {
                Some(pos) => rest = &rest[pos + mid.len()..],
                None => return false,
            }
        }
        true
    }

    fn text_of<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
        record.get(field).and_then(Value::as_str)
    }

    impl Expr {
        pub fn matches(&self, record: &Value) -> bool {
            match self {
                Expr::Or(parts) => parts.iter().any(|p| p.matches(record)),
                Expr::And(parts) => parts.iter().all(|p| p.matches(record)),
                Expr::Cmp { field, op, value } => {
                    if DATE_FIELDS.contains(&field.as_str()) {
                        let (Some(have), Some(want)) = (
                            text_of(record, field).and_then(parse_date),
                            parse_date(value),
                        ) else {
                            return *op == Op::Ne;
                        };
                        return match op {
                            Op::Eq => have == want,
                            Op::Ne => have != want,
                            Op::Lt => have < want,
                            Op::Le => have <= want,
                            Op::Gt => have > want,
                            Op::Ge => have >= want,
                        };
                    }
                    let hit = if field == "id" {
                        let href = text_of(record, "href").unwrap_or("");
                        let uuid = href.rsplit('/').next().unwrap_or("");
                        value == uuid
                            || value == href
                            || *value == format!("urn:vcloud:task:{uuid}")
                    } else {
                        text_of(record, field).is_some_and(|t| glob(value, t))
                    };
                    if *op == Op::Ne { !hit } else { hit }
                }
            }
        }
    }

    /// Orders two records by one field (dates chronologically, nulls first).
    pub fn compare_field(a: &Value, b: &Value, field: &str) -> Ordering {
        let (x, y) = (text_of(a, field), text_of(b, field));
        if DATE_FIELDS.contains(&field) {
            return x.and_then(parse_date).cmp(&y.and_then(parse_date));
        }
        x.cmp(&y)
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

fn vcd_json(status: StatusCode, body: &Value, content_type: &str) -> Response {
    let mut resp = raw_json(status, body.to_string());
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn legacy_error_body(status: StatusCode, minor: &str, message: &str) -> Value {
    error_object(status.as_u16(), minor, message, None)
}

/// A legacy `/api` Error response.
fn legacy_error(status: StatusCode, minor: &str, message: &str, version: Option<&str>) -> Response {
    let ct = match version {
        Some(v) => format!("{ERROR_TYPE};version={v}"),
        None => ERROR_TYPE.to_string(),
    };
    vcd_json(status, &legacy_error_body(status, minor, message), &ct)
}

/// A `/cloudapi` error response.
fn cloudapi_error(
    status: StatusCode,
    minor: &str,
    message: &str,
    version: Option<&str>,
) -> Response {
    let ct = match version {
        Some(v) => format!("application/json;version={v}"),
        None => "application/json".to_string(),
    };
    vcd_json(
        status,
        &json!({"minorErrorCode": minor, "message": message, "stackTrace": null}),
        &ct,
    )
}

/// An RFC 6749 token-endpoint error (`400`).
fn oauth_error(code: &str, description: &str) -> Response {
    raw_json(
        StatusCode::BAD_REQUEST,
        json!({"error": code, "error_description": description}).to_string(),
    )
}

/// A deterministic UUID-shaped id for `(kind, name)`, so orgs and users keep their ids.
fn stable_uuid(kind: &str, name: &str) -> String {
    let fnv = |seed: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in kind.bytes().chain([0u8]).chain(name.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let hex = format!("{:016x}{:016x}", fnv(1), fnv(2));
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn random_uuid() -> String {
    super::tasks::random_task_id()
}

// ---------------------------------------------------------------------------------------------
// Seed data

const NS: &str = "com.vmware.vcloud";

fn vapp(uuid: &str) -> String {
    format!("vapp-{uuid}")
}

/// Seeds the demo mix for org `acme` (plus one `globex` task); ids are fixed so docs and the
/// demo can name them.
fn seed_demo_tasks(store: &TaskStore) {
    let task = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(NS, op, desc, steps)
            .with_id(id)
            .with_user("svc-gateway")
    };
    let web = vapp("77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70");
    let db = vapp("77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c71");
    let app = vapp("77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c72");
    let specs = vec![
        task(
            VCD_DEMO_RUNNING_TASK,
            "vappDeploy",
            "Starting Virtual Application web-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70)",
            vec![at(secs(0), running(0, 100)), at(mins(45), succeeded(None))],
        )
        .with_target("vApp", &web)
        .with_extra("ownerName", json!("web-01")),
        task(
            VCD_DEMO_CANCELABLE_TASK,
            "vdcCopyTemplate",
            "Copying Virtual Application Template ubuntu-22.04",
            vec![at(secs(0), running(2, 98)), at(mins(360), succeeded(None))],
        )
        .with_target("vAppTemplate", "vappTemplate-5c1d2e3f-0a1b-4c2d-8e3f-4a5b6c7d8e90")
        .with_extra("ownerName", json!("ubuntu-22.04"))
        .cancelable(),
        task(
            VCD_DEMO_QUEUED_TASK,
            "vappUndeployPowerOff",
            "Stopping Virtual Application db-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c71)",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(10), running(0, 100)),
                at(mins(12), succeeded(None)),
            ],
        )
        .with_target("vApp", &db)
        .with_extra("ownerName", json!("db-01"))
        .cancelable(),
        task(
            VCD_DEMO_PRE_RUNNING_TASK,
            "vdcComposeVapp",
            "Composing Virtual Application app-01 (awaiting approval)",
            vec![at(secs(0), Phase::Blocked)],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .with_extra("noProgress", json!(true))
        .aged(mins(15)),
        task(
            VCD_DEMO_SUCCEEDED_TASK,
            "vappPowerOn",
            "Powering on Virtual Application web-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70)",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(42), succeeded(Some(json!("powered on")))),
            ],
        )
        .with_target("vApp", &web)
        .with_extra("ownerName", json!("web-01"))
        .with_extra(
            "vcTasks",
            json!([
                {"name": "task-88231", "description": "Power On virtual machine", "status": "success",
                 "objectType": "VirtualMachine", "objectName": "web-01-vm1", "objectMoref": "vm-1021"},
                {"name": "task-88232", "description": "Power On virtual machine", "status": "success",
                 "objectType": "VirtualMachine", "objectName": "web-01-vm2", "objectMoref": "vm-1022"},
            ]),
        )
        .aged(mins(60)),
        task(
            VCD_DEMO_ERROR_TASK,
            "vdcUpdateVdc",
            "Updating Virtual Data Center acme-vdc-01",
            vec![
                at(secs(0), running(0, 70)),
                at(
                    secs(35),
                    failed(
                        "INTERNAL_SERVER_ERROR",
                        "[ 7d4c0b1a-2e3f-4a5b-8c6d-9e0f1a2b3c4d ] Unable to update the VDC: the storage policy gold is not available in provider VDC pvdc-01.",
                    ),
                ),
            ],
        )
        .with_target("vdc", "5d6e7f80-1a2b-4c3d-9e4f-5a6b7c8d9e01")
        .with_extra("ownerName", json!("acme-vdc-01"))
        .with_extra("details", json!("Storage policy gold is not available."))
        .with_error_cause(
            "com.vmware.ssdc.library.exceptions.MultipleValidationException",
            "Storage policy gold is not available in provider VDC pvdc-01.",
        )
        .aged(mins(40)),
        task(
            VCD_DEMO_ABORTED_TASK,
            "vappDeploy",
            "Starting Virtual Application db-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c71)",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(25), failed(CANCELED_ERROR_TYPE, "The task was canceled by the user.")),
            ],
        )
        .with_target("vApp", &db)
        .with_extra("ownerName", json!("db-01"))
        .aged(mins(30)),
        task(
            VCD_DEMO_PARENT_TASK,
            "vdcInstantiateVapp",
            "Creating Virtual Application app-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c72)",
            vec![at(secs(0), running(0, 100)), at(mins(30), succeeded(None))],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .aged(mins(2)),
        task(
            "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b68",
            "vappUploadOvf",
            "Uploading OVF for Virtual Application app-01",
            vec![at(secs(0), running(0, 100)), at(secs(60), succeeded(None))],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .with_parent(VCD_DEMO_PARENT_TASK)
        .aged(mins(2)),
        task(
            "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b69",
            "vappDeploy",
            "Starting Virtual Application app-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c72)",
            vec![at(secs(0), running(0, 100)), at(mins(20), succeeded(None))],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .with_parent(VCD_DEMO_PARENT_TASK)
        .aged(mins(1)),
        // A defined-entity behavior (RDE) run, as in the extensibility examples.
        task(
            "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b6a",
            "executeBehavior",
            "Executing behavior urn:vcloud:behavior-interface:backup:acme:backup:1.0.0",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(5), succeeded(Some(json!("{\"backupId\":\"b-17\"}")))),
            ],
        )
        .with_extra("noProgress", json!(true))
        .aged(mins(10)),
        task(
            VCD_DEMO_OTHER_ORG_TASK,
            "vappPowerOn",
            "Powering on Virtual Application shop-01",
            vec![at(secs(0), running(0, 100)), at(secs(30), succeeded(None))],
        )
        .with_target("vApp", &vapp("88b2d1ef-6c2f-4a7b-8d4e-3f2a1b0c9d80"))
        .with_extra("ownerName", json!("shop-01"))
        .with_extra("org", json!("globex"))
        .with_user("globex-admin")
        .aged(mins(50)),
    ];
    for spec in specs {
        store.add(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimClock;

    const ACCEPT: &str = "application/*+json;version=38.0";

    struct T {
        sim: CloudDirectorSim,
        clock: SimClock,
        http: reqwest::Client,
        token: String,
    }

    impl T {
        async fn start() -> T {
            let clock = SimClock::manual();
            let opts = SimOptions {
                clock: clock.clone(),
                ..SimOptions::default()
            };
            let sim = CloudDirectorSim::start(&opts).await.unwrap();
            let http = reqwest::Client::new();
            let mut t = T {
                sim,
                clock,
                http,
                token: String::new(),
            };
            t.token = t.login("acme", false).await;
            t
        }

        async fn login(&self, org: &str, provider: bool) -> String {
            let path = if provider { "/provider" } else { "" };
            let r = self
                .http
                .post(format!("{}/cloudapi/1.0.0/sessions{path}", self.sim.url()))
                .basic_auth(
                    format!("{}@{org}", self.sim.username()),
                    Some(self.sim.password()),
                )
                .header("accept", "application/json;version=38.0")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()[TOKEN_TYPE_HEADER], "Bearer");
            r.headers()[ACCESS_TOKEN_HEADER]
                .to_str()
                .unwrap()
                .to_string()
        }

        async fn get_as(&self, path: &str, token: &str) -> (u16, Value) {
            let r = self
                .http
                .get(format!("{}{path}", self.sim.url()))
                .bearer_auth(token)
                .header("accept", ACCEPT)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            self.get_as(path, &self.token).await
        }

        async fn task(&self, id: &str) -> Value {
            let (status, body) = self.get(&format!("/api/task/{id}")).await;
            assert_eq!(status, 200, "{body}");
            body
        }

        async fn cancel(&self, id: &str) -> (u16, Value) {
            let r = self
                .http
                .post(format!("{}/api/task/{id}/action/cancel", self.sim.url()))
                .bearer_auth(&self.token)
                .header("accept", ACCEPT)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
    }

    /// `dddd-dd-ddTdd:dd:dd.ddd+dddd` (offset without colon).
    fn is_vcd_time(s: &str) -> bool {
        let pattern = b"dddd-dd-ddTdd:dd:dd.ddd+dddd";
        s.len() == pattern.len()
            && s.bytes().zip(pattern.iter()).all(|(c, p)| match p {
                b'd' => c.is_ascii_digit(),
                b'+' => c == b'+' || c == b'-',
                other => c == *other,
            })
    }

    #[tokio::test]
    async fn seeded_tasks_use_vcd_status_strings_and_task_shape() {
        let t = T::start().await;
        for (id, status) in [
            (VCD_DEMO_RUNNING_TASK, "running"),
            (VCD_DEMO_CANCELABLE_TASK, "running"),
            (VCD_DEMO_QUEUED_TASK, "queued"),
            (VCD_DEMO_PRE_RUNNING_TASK, "preRunning"),
            (VCD_DEMO_SUCCEEDED_TASK, "success"),
            (VCD_DEMO_ERROR_TASK, "error"),
            (VCD_DEMO_ABORTED_TASK, "aborted"),
        ] {
            let task = t.task(id).await;
            assert_eq!(task["status"], status, "{id}");
            assert_eq!(task["id"], format!("urn:vcloud:task:{id}"));
            assert_eq!(task["href"], format!("{}/api/task/{id}", t.sim.url()));
            assert_eq!(task["type"], TASK_TYPE);
            assert_eq!(task["name"], "task");
            assert_eq!(task["organization"]["name"], "acme");
            assert_eq!(task["organization"]["otherAttributes"], json!({}));
            assert_eq!(task["organization"]["vCloudExtension"], json!([]));
            for key in [
                "operationKey",
                "description",
                "params",
                "endTime",
                "error",
                "tasks",
            ] {
                assert!(
                    task.get(key).is_some(),
                    "{id}: {key} must be present (maybe null)"
                );
            }
            assert!(
                is_vcd_time(task["startTime"].as_str().unwrap_or("")),
                "{task}"
            );
            assert!(is_vcd_time(task["expiryTime"].as_str().unwrap_or("")));
            assert!(task["startTime"].as_str().unwrap_or("").ends_with("+0200"));
            let terminal = matches!(status, "success" | "error" | "aborted");
            assert_eq!(task["endTime"].is_string(), terminal, "{id}: {task}");
            if terminal {
                assert!(is_vcd_time(task["endTime"].as_str().unwrap_or("")));
            }
        }
        let err = t.task(VCD_DEMO_ERROR_TASK).await["error"].clone();
        assert_eq!(err["majorErrorCode"], 500);
        assert_eq!(err["minorErrorCode"], "INTERNAL_SERVER_ERROR");
        assert!(
            err["message"]
                .as_str()
                .unwrap_or("")
                .contains("storage policy")
        );
        assert!(err["stackTrace"].is_string());
        let ok = t.task(VCD_DEMO_SUCCEEDED_TASK).await;
        assert_eq!(ok["vcTaskList"]["vcTask"][0]["name"], "task-88231");
        assert_eq!(ok["progress"], 100);
        assert_eq!(ok["owner"]["name"], "web-01");
        assert!(ok["error"].is_null());
        assert!(t.task(VCD_DEMO_PRE_RUNNING_TASK).await["progress"].is_null());
        assert_eq!(t.task(VCD_DEMO_ABORTED_TASK).await["cancelRequested"], true);
        let parent = t.task(VCD_DEMO_PARENT_TASK).await;
        let subtasks = parent["tasks"]["task"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(subtasks.len(), 2);
        let sub_status: Vec<&str> = subtasks
            .iter()
            .filter_map(|s| s["status"].as_str())
            .collect();
        assert_eq!(sub_status, ["success", "running"]);
    }

    #[tokio::test]
    async fn progress_and_status_move_with_the_clock() {
        let t = T::start().await;
        let p0 = t.task(VCD_DEMO_RUNNING_TASK).await["progress"].as_u64();
        t.clock.advance(Duration::from_secs(11 * 60));
        let p1 = t.task(VCD_DEMO_RUNNING_TASK).await["progress"].as_u64();
        assert!(p1 > p0, "{p0:?} -> {p1:?}");
        assert_eq!(t.task(VCD_DEMO_QUEUED_TASK).await["status"], "running");
        // Two steps, each within the 30-minute idle timeout of the session.
        t.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(t.task(VCD_DEMO_QUEUED_TASK).await["status"], "success");
        t.clock.advance(Duration::from_secs(20 * 60));
        let done = t.task(VCD_DEMO_RUNNING_TASK).await;
        assert_eq!(
            (done["status"].as_str(), done["progress"].as_u64()),
            (Some("success"), Some(100))
        );
    }

    #[tokio::test]
    async fn cancel_link_only_while_cancellable_and_cancel_aborts_after_a_second() {
        let t = T::start().await;
        let task = t.task(VCD_DEMO_CANCELABLE_TASK).await;
        let href = format!(
            "{}/api/task/{VCD_DEMO_CANCELABLE_TASK}/action/cancel",
            t.sim.url()
        );
        assert_eq!(
            task["link"],
            json!([{"otherAttributes": {}, "href": href, "id": null, "type": null, "name": "task",
                    "rel": "task:cancel", "model": null, "vCloudExtension": []}])
        );
        assert_eq!(task["cancelRequested"], false);
        assert_eq!(t.task(VCD_DEMO_RUNNING_TASK).await["link"], json!([]));
        assert_eq!(t.task(VCD_DEMO_SUCCEEDED_TASK).await["link"], json!([]));

        assert_eq!(t.cancel(VCD_DEMO_CANCELABLE_TASK).await.0, 204);
        let after = t.task(VCD_DEMO_CANCELABLE_TASK).await;
        assert_eq!(after["cancelRequested"], true);
        assert_eq!(after["status"], "running");
        assert_eq!(after["link"], json!([]));
        let (status, again) = t.cancel(VCD_DEMO_CANCELABLE_TASK).await;
        assert_eq!(
            (status, again["minorErrorCode"].as_str()),
            (400, Some("BAD_REQUEST"))
        );
        t.clock.advance(CANCEL_DELAY);
        let aborted = t.task(VCD_DEMO_CANCELABLE_TASK).await;
        assert_eq!(aborted["status"], "aborted");
        assert!(aborted["endTime"].is_string());

        let (status, done) = t.cancel(VCD_DEMO_SUCCEEDED_TASK).await;
        assert_eq!(
            (status, done["minorErrorCode"].as_str()),
            (400, Some("BAD_REQUEST"))
        );
        assert_eq!(done["majorErrorCode"], 400);
        assert_eq!(
            t.cancel(VCD_DEMO_RUNNING_TASK).await.0,
            400,
            "not cancelable"
        );
        let (status, unknown) = t.cancel("00000000-0000-4000-8000-000000000000").await;
        assert_eq!(
            (status, unknown["minorErrorCode"].as_str()),
            (403, Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN"))
        );
    }

    #[tokio::test]
    async fn unknown_and_other_org_tasks_are_forbidden_and_404_is_injectable() {
        let t = T::start().await;
        let (s, body) = t.get(&format!("/api/task/{VCD_DEMO_OTHER_ORG_TASK}")).await;
        assert_eq!(
            (s, body["minorErrorCode"].as_str()),
            (403, Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN"))
        );
        assert_eq!(body["majorErrorCode"], 403);
        let provider = t.login(PROVIDER_ORG, true).await;
        let (s, body) = t
            .get_as(&format!("/api/task/{VCD_DEMO_OTHER_ORG_TASK}"), &provider)
            .await;
        assert_eq!(
            (s, body["organization"]["name"].as_str()),
            (200, Some("globex"))
        );
        t.sim
            .inject(ROUTE_TASK_GET, resource_not_found_fault("abc"));
        let (s, body) = t.get("/api/task/abc").await;
        assert_eq!(
            (s, body["minorErrorCode"].as_str()),
            (404, Some("RESOURCE_NOT_FOUND"))
        );
        assert_eq!(t.sim.requests(ROUTE_TASK_GET), 3);
    }

    #[tokio::test]
    async fn accept_header_needs_a_supported_json_version() {
        let t = T::start().await;
        let url = format!("{}/api/task/{VCD_DEMO_RUNNING_TASK}", t.sim.url());
        for accept in [
            None,
            Some("application/json"),
            Some("application/*+json"),
            Some("application/*+json;version=20.0"),
            Some("application/*+xml;version=38.0"),
        ] {
            let mut req = t.http.get(&url).bearer_auth(&t.token);
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 406, "{accept:?}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["minorErrorCode"], "NOT_ACCEPTABLE", "{accept:?}");
            assert_eq!(body["majorErrorCode"], 406);
        }
        for accept in [
            "application/json;version=40.0",
            "application/vnd.vmware.vcloud.task+json;version=37.0",
            "text/html, application/*+json;version=36.0",
        ] {
            let r = t
                .http
                .get(&url)
                .bearer_auth(&t.token)
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{accept}");
        }
        // Login without a version is refused with the cloudapi error body.
        let r = t
            .http
            .post(format!("{}/cloudapi/1.0.0/sessions", t.sim.url()))
            .basic_auth(format!("{}@acme", t.sim.username()), Some(t.sim.password()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 406);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["minorErrorCode"], "NOT_ACCEPTABLE");
        assert!(body.get("majorErrorCode").is_none());
    }

    #[tokio::test]
    async fn logins_tokens_logout_and_expiry() {
        let t = T::start().await;
        let cloudapi = |path: &str| format!("{}{path}", t.sim.url());
        let bad = t
            .http
            .post(cloudapi("/cloudapi/1.0.0/sessions"))
            .basic_auth(format!("{}@acme", t.sim.username()), Some("wrong"))
            .header("accept", "application/json;version=38.0")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401);
        let body: Value = bad.json().await.unwrap();
        assert_eq!(
            body,
            json!({"minorErrorCode": "UNAUTHORIZED", "message": "Invalid credentials.", "stackTrace": null})
        );
        // System users need the provider endpoint; tenants cannot use it.
        for (org, path) in [("System", ""), ("acme", "/provider")] {
            let r = t
                .http
                .post(cloudapi(&format!("/cloudapi/1.0.0/sessions{path}")))
                .basic_auth(
                    format!("{}@{org}", t.sim.username()),
                    Some(t.sim.password()),
                )
                .header("accept", "application/json;version=38.0")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{org}{path}");
        }
        let (s, session) = t.get("/cloudapi/1.0.0/sessions/current").await;
        assert_eq!(s, 200);
        assert_eq!(session["org"]["name"], "acme");
        assert_eq!(session["user"]["name"], t.sim.username());
        assert_eq!(t.token.split('.').count(), 3, "JWT-shaped");

        // API token → access token, for tenant and provider.
        let exchange = |path: String, refresh: String| {
            t.http
                .post(cloudapi(&path))
                .header("accept", "application/json;version=38.0")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=refresh_token&refresh_token={}",
                    percent_encode(&refresh)
                ))
                .send()
        };
        let r = exchange("/oauth/tenant/acme/token".into(), t.sim.api_token().into())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tok: Value = r.json().await.unwrap();
        assert_eq!(tok["token_type"], "Bearer");
        assert_eq!(tok["expires_in"], 1800);
        let access = tok["access_token"].as_str().unwrap_or("").to_string();
        assert_eq!(
            t.get_as(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}"), &access)
                .await
                .0,
            200
        );
        let r = exchange("/oauth/tenant/acme/token".into(), "nope".into())
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        let r = exchange(
            "/oauth/tenant/globex/token".into(),
            t.sim.api_token().into(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        let r = exchange("/oauth/provider/token".into(), t.sim.api_token().into())
            .await
            .unwrap();
        let provider = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let (s, _) = t.get_as("/api/query?type=adminTask", &provider).await;
        assert_eq!(s, 200);
        assert_eq!(t.sim.logins(), 3);

        // The legacy header works as well; logout and expiry end a token.
        let r = t
            .http
            .get(cloudapi(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}")))
            .header(ACCESS_TOKEN_HEADER, &access)
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = t
            .http
            .delete(cloudapi("/cloudapi/1.0.0/sessions/current"))
            .bearer_auth(&access)
            .header("accept", "application/json;version=38.0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let (s, body) = t
            .get_as(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}"), &access)
            .await;
        assert_eq!((s, body["majorErrorCode"].as_u64()), (401, Some(401)));
        t.clock.advance(Duration::from_secs(31 * 60));
        assert_eq!(
            t.get(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}")).await.0,
            401
        );
        let fresh = t.login("acme", false).await;
        t.sim.expire_sessions();
        assert_eq!(t.get_as("/api/query?type=task", &fresh).await.0, 401);
    }

    #[tokio::test]
    async fn query_pages_with_links_and_clamps_page_size() {
        let t = T::start().await;
        let (s, all) = t.get("/api/query?type=task&format=records").await;
        assert_eq!(s, 200);
        let total = all["total"].as_u64().unwrap_or(0);
        assert_eq!(total, 11, "acme's tasks only");
        assert_eq!(all["pageSize"], 25);
        assert_eq!(all["link"], json!([]));
        let rec = &all["record"][0];
        assert_eq!(rec["_type"], "QueryResultTaskRecordType");
        assert_eq!(rec["name"], "vappDeploy");
        assert_eq!(
            rec["operationFull"]
                .as_str()
                .map(|s| s.starts_with("Starting")),
            Some(true)
        );
        assert!(rec["startDate"].as_str().unwrap_or("").ends_with("+02:00"));
        assert!(rec["endDate"].is_null());
        assert_eq!(rec["objectName"], "web-01");

        let (_, p1) = t
            .get("/api/query?type=task&page=1&pageSize=4&sortDesc=startDate")
            .await;
        assert_eq!(p1["record"].as_array().map(Vec::len), Some(4));
        let rels: Vec<&str> = p1["link"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["rel"].as_str())
            .collect();
        assert_eq!(rels, ["nextPage", "lastPage"]);
        let next = p1["link"][0]["href"].as_str().unwrap_or("");
        assert!(
            next.contains("page=2") && next.contains("sortDesc=startDate"),
            "{next}"
        );
        let last = p1["link"][1]["href"].as_str().unwrap_or("");
        assert!(last.contains("page=3"), "{last}");
        let dates: Vec<&str> = p1["record"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["startDate"].as_str())
            .collect();
        let mut sorted = dates.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(dates, sorted, "newest first");
        let (_, p3) = t.get("/api/query?type=task&page=3&pageSize=4").await;
        assert_eq!(p3["record"].as_array().map(Vec::len), Some(3));
        let rels: Vec<&str> = p3["link"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["rel"].as_str())
            .collect();
        assert_eq!(rels, ["firstPage", "previousPage"]);
        let (s, beyond) = t.get("/api/query?type=task&page=9&pageSize=4").await;
        assert_eq!(
            (s, beyond["record"].as_array().map(Vec::len)),
            (200, Some(0))
        );
        let (_, big) = t.get("/api/query?type=task&pageSize=1000").await;
        assert_eq!(big["pageSize"], QUERY_MAX_PAGE_SIZE);
        assert_eq!(t.get("/api/query?type=task&page=0").await.0, 400);
        assert_eq!(t.get("/api/query?type=vm").await.0, 400);
        let (s, body) = t.get("/api/query?type=adminTask").await;
        assert_eq!(
            (s, body["minorErrorCode"].as_str()),
            (403, Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN"))
        );
        let provider = t.login(PROVIDER_ORG, true).await;
        let (_, admin) = t.get_as("/api/query?type=adminTask", &provider).await;
        assert_eq!(admin["total"], 12);
        assert_eq!(
            admin["record"][0]["_type"],
            "QueryResultAdminTaskRecordType"
        );
    }

    #[tokio::test]
    async fn fiql_filters_select_records_and_bad_filters_are_400() {
        let t = T::start().await;
        let names = |v: &Value| -> Vec<String> {
            v["record"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    r["href"]
                        .as_str()
                        .and_then(|h| h.rsplit('/').next())
                        .map(str::to_string)
                })
                .collect()
        };
        let q = |f: &str| format!("/api/query?type=task&filter={}", percent_encode(f));
        let (_, running) = t.get(&q("status==running")).await;
        assert!(
            running["record"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|r| r["status"] == "running")
        );
        assert_eq!(running["total"], 4);
        let (_, mix) = t
            .get(&q("(status==success,status==error);name==vdcUpdateVdc"))
            .await;
        assert_eq!(names(&mix), [VCD_DEMO_ERROR_TASK]);
        let (_, or_and) = t
            .get(&q("status==aborted,status==queued;objectName==db-01"))
            .await;
        assert_eq!(
            names(&or_and),
            [VCD_DEMO_QUEUED_TASK, VCD_DEMO_ABORTED_TASK]
        );
        let (_, by_id) = t
            .get(&q(&format!(
                "id==urn:vcloud:task:{VCD_DEMO_SUCCEEDED_TASK}"
            )))
            .await;
        assert_eq!(names(&by_id), [VCD_DEMO_SUCCEEDED_TASK]);
        let (_, glob) = t.get(&q("ownerName==app-*;status!=running")).await;
        assert_eq!(
            names(&glob),
            [
                VCD_DEMO_PRE_RUNNING_TASK,
                "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b68"
            ]
        );
        let cutoff =
            vcd_record_datetime(t.clock.wall(Duration::ZERO) - chrono::Duration::minutes(35));
        let (s, recent) = t
            .get(&q(&format!(
                "startDate=gt={cutoff};serviceNamespace==com.vmware.vcloud"
            )))
            .await;
        assert_eq!(s, 200);
        assert!(!names(&recent).contains(&VCD_DEMO_SUCCEEDED_TASK.to_string()));
        assert!(names(&recent).contains(&VCD_DEMO_ABORTED_TASK.to_string()));
        for bad in [
            "colour==red",
            "status=running",
            "(status==running",
            "status==",
            "name=gt=x",
            "startDate=lt=yesterday",
        ] {
            let (s, body) = t.get(&q(bad)).await;
            assert_eq!(
                (s, body["minorErrorCode"].as_str()),
                (400, Some("BAD_REQUEST")),
                "{bad}"
            );
        }
    }

    #[test]
    fn datetimes_have_the_vcd_offsets() {
        let t = DateTime::parse_from_rfc3339("2024-03-06T12:11:57.473Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        assert_eq!(vcd_datetime(t), "2024-03-06T14:11:57.473+0200");
        assert_eq!(vcd_record_datetime(t), "2024-03-06T14:11:57.473+02:00");
        assert_eq!(
            fiql::parse_date("2024-03-06T14:11:57.473+0200").map(|d| d.with_timezone(&Utc)),
            Some(t)
        );
        assert_eq!(
            fiql::parse_date("2024-03-06T14:11:57.473 02:00").map(|d| d.with_timezone(&Utc)),
            Some(t)
        );
    }
}
