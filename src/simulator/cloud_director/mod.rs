//! The simulated VMware Cloud Director: `/cloudapi` login (Basic `user@org` or an API token
//! through `/oauth`), the legacy `/api/task/{uuid}` Task resource with cancel, and the query
//! service `/api/query?type=task|adminTask`, in the JSON wire format of `UPSTREAM_APIS.md`
//! section 5 (camelCase, `otherAttributes` / `vCloudExtension` noise, explicit nulls).
//!
//! The module is split by concern: [`auth`] (sessions, tokens, logouts, versions), [`tasks`]
//! (the Task resource and its JSON), [`query`] and [`fiql`] (the query service), [`seed`]
//! (the demo tasks) and the unit tests in `tests.rs`.
//!
//! Tasks live in the shared engine; [`tasks`] maps them: Pending → `queued`, Blocked →
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
//! - logout is `DELETE /cloudapi/1.0.0/sessions/current` (the exact path is UNCONFIRMED) and
//!   the legacy `DELETE /api/session` pyvcloud uses; both answer `204` and end the session,
//!   `401` without a valid one (the legacy route with the legacy Error body);
//! - a wrong API token, grant type or org on `/oauth/.../token` answers `400` with an
//!   RFC 6749 error body (`{"error":"invalid_grant",...}`); the response's `refresh_token`
//!   is the API token itself, `expires_in` the session idle timeout; token exchanges count as
//!   logins;
//! - two organizations have a tenant user: [`SimOptions::vcd_org`] (default `acme`) the
//!   configured `SimOptions::username`, and [`VCD_GLOBEX_ORG`] its own user
//!   [`VCD_GLOBEX_USER`] (Basic `ops@globex`, password [`VCD_GLOBEX_PASSWORD`]); the Basic
//!   user is split at the last `@`, so `administrator@vsphere.local@acme` works, and a user
//!   logs in only to its own org. Only the configured user is a provider (`System`, through
//!   `/sessions/provider`, which tenants cannot use); a tenant session sees its own org's tasks
//!   only (another org's task answers `403 ACCESS_TO_RESOURCE_IS_FORBIDDEN` like an unknown
//!   one, on get and cancel), a provider session every org's;
//! - `Accept` must name JSON (`application/json`, `application/*+json`, `application/*`, or
//!   `application/vnd.vmware.*+json`) with a `version` in [`SUPPORTED_VERSIONS`]; XML, a
//!   missing or an unsupported version answer `406`. `GET /api/versions` needs neither
//!   Accept version nor login;
//! - query: `pageSize` above [`QUERY_MAX_PAGE_SIZE`] is clamped to it (128 is documented
//!   only for cloudapi); a page past the last answers `200` with no records; default order
//!   is creation order; `type=task` is scoped to the session's org (so a provider sees only
//!   `System` tasks there) and `type=adminTask` (provider only) sees all orgs; record dates
//!   carry an offset *with* colon like the reference's query example, Task times without.

mod auth;
mod fiql;
mod query;
mod seed;
mod tasks;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::SimOptions;
use super::common::{Fault, SimCore};
use super::ids;
pub use super::part::ROUTE_OTHER;
use super::part::{Kind, Part, Routes, Rules};
use super::tasks::TaskStore;
use super::web::{header_str, raw_json};
pub use tasks::{vcd_datetime, vcd_record_datetime, vcd_status};

/// Route keys, as used by `requests` and `inject`; each is also the route it names.
pub const ROUTE_LOGIN: &str = "POST /cloudapi/1.0.0/sessions";
pub const ROUTE_PROVIDER_LOGIN: &str = "POST /cloudapi/1.0.0/sessions/provider";
pub const ROUTE_TENANT_TOKEN: &str = "POST /oauth/tenant/{org}/token";
pub const ROUTE_PROVIDER_TOKEN: &str = "POST /oauth/provider/token";
pub const ROUTE_SESSION_CURRENT: &str = "GET /cloudapi/1.0.0/sessions/current";
pub const ROUTE_LOGOUT: &str = "DELETE /cloudapi/1.0.0/sessions/current";
/// The legacy logout pyvcloud sends (`UPSTREAM_APIS.md` 5.2).
pub const ROUTE_LEGACY_LOGOUT: &str = "DELETE /api/session";
pub const ROUTE_TASK_GET: &str = "GET /api/task/{task}";
pub const ROUTE_TASK_CANCEL: &str = "POST /api/task/{task}/action/cancel";
pub const ROUTE_QUERY: &str = "GET /api/query";
pub const ROUTE_VERSIONS: &str = "GET /api/versions";

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

/// The second organization, with its own tenant user and tasks.
pub const VCD_GLOBEX_ORG: &str = "globex";
/// The tenant user of [`VCD_GLOBEX_ORG`] (Basic user `ops@globex`).
pub const VCD_GLOBEX_USER: &str = "ops";
/// The password of [`VCD_GLOBEX_USER`].
pub const VCD_GLOBEX_PASSWORD: &str = "Globex1!";
/// `running` and cancelable for six hours unless cancelled, in org `globex` (started by
/// `ops`): the globex user's own task, invisible to tenant `acme`.
pub const VCD_GLOBEX_TASK: &str = "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b71";

/// The `404 RESOURCE_NOT_FOUND` answer real VCD gives for some unknown ids (this simulator
/// answers 403 by default): `sim.cloud_director.inject(ROUTE_TASK_GET, resource_not_found_fault(id))`.
pub fn resource_not_found_fault(task_uuid: &str) -> Fault {
    Fault::Status {
        status: 404,
        body: legacy_error_body(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            &format!("[ {} ] urn:vcloud:task:{task_uuid} not found.", ids::uuid()),
        )
        .to_string(),
    }
}

/// The running simulated Cloud Director (see [`Part`]). `url()` is the root (no `/api`);
/// `logins` counts successful logins and token exchanges.
pub type CloudDirectorSim = Part<CloudDirector>;

/// The Cloud Director kind: its tasks, the tenant org, the API token and the URL `href`s
/// point at.
pub struct CloudDirector {
    tasks: TaskStore,
    org: String,
    api_token: String,
    idle_timeout: Duration,
    /// The listener's URL, for `href`s (known only after binding).
    base: OnceLock<String>,
}

/// The API version the `Accept` header negotiated (a request extension set by the guard).
#[derive(Debug, Clone)]
struct ApiVersion(String);

impl Kind for CloudDirector {
    const RULES: Rules = Rules {
        name: "Cloud Director",
        credential: auth::credential,
        unauthenticated,
        not_found,
        unavailable,
        admit,
    };

    fn new(opts: &SimOptions) -> Self {
        let tasks = TaskStore::seeded(&opts.clock, opts.seed_demo_tasks, seed::seed_demo_tasks);
        CloudDirector {
            tasks,
            org: opts.vcd_org.clone(),
            api_token: opts.vcd_api_token.clone(),
            idle_timeout: opts.session_idle_timeout,
            base: OnceLock::new(),
        }
    }

    fn routes() -> Routes<Self> {
        Routes::new()
            .public(ROUTE_VERSIONS, auth::versions)
            .public(ROUTE_LOGIN, auth::login)
            .public(ROUTE_PROVIDER_LOGIN, auth::login)
            .public(ROUTE_TENANT_TOKEN, auth::token)
            .public(ROUTE_PROVIDER_TOKEN, auth::token)
            .session(ROUTE_SESSION_CURRENT, auth::session_current)
            .session(ROUTE_LOGOUT, auth::logout)
            .session(ROUTE_LEGACY_LOGOUT, auth::logout)
            .session(ROUTE_TASK_GET, tasks::task_get)
            .session(ROUTE_TASK_CANCEL, tasks::task_cancel)
            .session(ROUTE_QUERY, query::query)
    }

    fn started(&self, url: &str) {
        let _ = self.base.set(url.to_string());
    }
}

impl CloudDirector {
    /// The listener's URL, the start of every `href` (empty until the listener is bound).
    pub(super) fn base(&self) -> &str {
        self.base.get().map_or("", String::as_str)
    }

    /// The org, spelled as configured, of the tenant `user` of `org` with `password`; `None`
    /// unless they are the configured user of the configured org or globex's own user.
    pub(super) fn tenant(
        &self,
        core: &SimCore,
        org: &str,
        user: &str,
        password: &str,
    ) -> Option<&str> {
        if org.eq_ignore_ascii_case(&self.org) && core.credentials_match(user, password) {
            Some(self.org.as_str())
        } else if org.eq_ignore_ascii_case(VCD_GLOBEX_ORG)
            && user == VCD_GLOBEX_USER
            && password == VCD_GLOBEX_PASSWORD
        {
            Some(VCD_GLOBEX_ORG)
        } else {
            None
        }
    }
}

impl AsRef<TaskStore> for CloudDirector {
    fn as_ref(&self) -> &TaskStore {
        &self.tasks
    }
}

impl CloudDirectorSim {
    /// The tenant organization (`SimOptions::vcd_org`).
    pub fn org(&self) -> &str {
        &self.kind().org
    }

    /// The API token the `/oauth` endpoints accept.
    pub fn api_token(&self) -> &str {
        &self.kind().api_token
    }
}

// ---------------------------------------------------------------------------------------------
// Guard rules

/// Every matched route but `GET /api/versions` needs a supported JSON version in `Accept`
/// (checked before authentication, as the real server does); handlers get it as
/// [`ApiVersion`].
fn admit(route: &'static str, req: &mut Request) -> Option<Response> {
    if route == ROUTE_VERSIONS {
        return None;
    }
    match negotiate(req.headers()) {
        Ok(version) => {
            req.extensions_mut().insert(ApiVersion(version));
            None
        }
        Err(msg) => Some(error_for(
            req.uri().path(),
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            &format!("The request has invalid accept header: {msg}"),
            None,
        )),
    }
}

fn unauthenticated(req: &Request) -> Response {
    let version = req.extensions().get::<ApiVersion>().map(|v| v.0.as_str());
    error_for(
        req.uri().path(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "This operation is denied: the session is missing, invalid or expired.",
        version,
    )
}

/// `503`: the legacy Error under `/api`, the cloudapi body elsewhere.
fn unavailable(req: &Request) -> Response {
    error_for(
        req.uri().path(),
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "The service is temporarily unavailable. Try again later.",
        None,
    )
}

fn not_found(_method: &http::Method, path: &str) -> Response {
    if path.starts_with("/api/") {
        legacy_error(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            &format!("The requested resource {path} was not found."),
            None,
        )
    } else {
        cloudapi_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found.", None)
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
// Responses

/// Errors of `/cloudapi` and `/oauth` use the cloudapi body; `/api` the legacy Error.
fn error_for(
    path: &str,
    status: StatusCode,
    minor: &str,
    message: &str,
    version: Option<&str>,
) -> Response {
    if path.starts_with("/api/") {
        legacy_error(status, minor, message, version)
    } else {
        cloudapi_error(status, minor, message, version)
    }
}

fn vcd_json(status: StatusCode, body: &Value, content_type: &str) -> Response {
    let mut resp = raw_json(status, body.to_string());
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn legacy_error_body(status: StatusCode, minor: &str, message: &str) -> Value {
    tasks::error_object(status.as_u16(), minor, message, None)
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
