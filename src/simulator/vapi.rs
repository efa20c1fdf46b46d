//! The vAPI `/api` wire format shared by the simulated vCenter and snapshot service
//! (sections 2–4 of `UPSTREAM_APIS.md`): the one vAPI [`Kind`], [`Endpoint`], whose
//! [`Dialect`] is all that differs between the two (name, session paths, seed mix, task
//! routes); the guard [`Rules`] of both (session header, `401 UNAUTHENTICATED`, `404
//! OPERATION_NOT_FOUND`, `503 SERVICE_UNAVAILABLE`), the Basic → session-id login and the other session handlers, error
//! bodies, `Cis.Task.Info`-shaped task rendering and task-list filtering.
//!
//! Two users log in: the configured administrator ([`SimOptions::username`]) and the viewer
//! ([`VAPI_VIEWER_USER`]). A session remembers its user; [`TaskAccess`] says what it may do:
//! the administrator sees and cancels every task, the viewer sees only the tasks whose `user`
//! is [`VAPI_VIEWER_PRINCIPAL`] (any other answers `404 NOT_FOUND` exactly as an unknown id,
//! and lists leave it out) and cancels none (`403 UNAUTHORIZED`).

use std::marker::PhantomData;

use axum::Extension;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use super::SimOptions;
use super::common::Session;
use super::part::{Authenticated, Kind, Routes, Rules, Shared, admit_all};
use super::tasks::{TaskSnapshot, TaskStatus, TaskStore};
use super::web::{basic_credentials, empty, header_str, json as json_resp};

/// The session header of the vAPI `/api` endpoints.
pub const SESSION_HEADER: &str = "vmware-api-session-id";
/// At most this many tasks in one list answer (vAPI task lists have no paging).
pub const LIST_LIMIT: usize = 1000;
const UNAUTHENTICATED_CHALLENGE: &str = "Basic realm=\"VAPI endpoint\"";

/// The second user of vCenter and the snapshot service: it logs in like the administrator,
/// sees only its own tasks and cancels none (see [`TaskAccess`]).
pub const VAPI_VIEWER_USER: &str = "viewer@vsphere.local";
/// The password of [`VAPI_VIEWER_USER`].
pub const VAPI_VIEWER_PASSWORD: &str = "Viewer1!";
/// The viewer as a task names its user (`Cis.Task.Info.user`, `DOMAIN\name` as vCenter
/// writes it): the viewer sees exactly the tasks with this `user`.
pub const VAPI_VIEWER_PRINCIPAL: &str = "VSPHERE.LOCAL\\viewer";

/// What one vAPI endpoint adds to the shared [`Endpoint`] kind.
pub trait Dialect: Sized + Send + Sync + 'static {
    /// For logs, e.g. `"vCenter"`.
    const NAME: &'static str;
    /// The route keys of session create (Basic, public), get and delete.
    const SESSION_ROUTES: [&'static str; 3];
    /// Adds the demo task mix (when the options ask for it).
    const SEED: fn(&TaskStore);
    /// The task routes, added after the session routes.
    fn task_routes(routes: Routes<Endpoint<Self>>) -> Routes<Endpoint<Self>>;
}

/// The kind of a vAPI endpoint: its task store, served with the vAPI rules and session routes
/// plus the dialect's task routes.
pub struct Endpoint<D> {
    pub(super) tasks: TaskStore,
    // `fn() -> D`: the endpoint holds no `D`, so it is `Send + Sync` whatever `D` is.
    dialect: PhantomData<fn() -> D>,
}

impl<D: Dialect> Kind for Endpoint<D> {
    const RULES: Rules = rules(D::NAME);

    fn new(opts: &SimOptions) -> Self {
        Endpoint {
            tasks: TaskStore::seeded(&opts.clock, opts.seed_demo_tasks, D::SEED),
            dialect: PhantomData,
        }
    }

    fn routes() -> Routes<Self> {
        D::task_routes(session_routes(Routes::new(), D::SESSION_ROUTES))
    }
}

impl<D> AsRef<TaskStore> for Endpoint<D> {
    fn as_ref(&self) -> &TaskStore {
        &self.tasks
    }
}

/// The guard rules of a vAPI endpoint named `name`.
pub const fn rules(name: &'static str) -> Rules {
    Rules {
        name,
        credential: |headers| header_str(headers, SESSION_HEADER).map(str::to_string),
        unauthenticated: |_: &Request| unauthenticated(),
        not_found: operation_not_found,
        unavailable: |_: &Request| service_unavailable(),
        admit: admit_all,
    }
}

/// vAPI datetime: UTC, three fraction digits, `Z` (e.g. `2024-05-02T09:14:03.512Z`).
pub fn vapi_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

// --- sessions

/// The session routes of a vAPI endpoint: create (Basic, public), get and delete.
pub fn session_routes<K: Kind>(
    routes: Routes<K>,
    [create, get, delete]: [&'static str; 3],
) -> Routes<K> {
    routes
        .public(create, login::<K>)
        .session(get, session_info::<K>)
        .session(delete, logout::<K>)
}

/// `POST .../session(s)` with Basic (the administrator or the viewer): `201` and the session
/// id as a JSON string; the session remembers the user.
async fn login<K: Kind>(State(st): State<Shared<K>>, headers: HeaderMap) -> Response {
    let known = |user: &str, password: &str| {
        st.core.credentials_match(user, password)
            || (user == VAPI_VIEWER_USER && password == VAPI_VIEWER_PASSWORD)
    };
    match basic_credentials(&headers) {
        Some((user, password)) if known(&user, &password) => {
            json_resp(StatusCode::CREATED, &Value::String(st.core.login(&user)))
        }
        _ => unauthenticated(),
    }
}

/// `GET .../session(s)`: `{user, created_time, last_accessed_time}`.
async fn session_info<K: Kind>(
    State(st): State<Shared<K>>,
    Extension(auth): Extension<Authenticated>,
) -> Response {
    let wall = |t| vapi_datetime(st.core.clock.wall(t));
    json_resp(
        StatusCode::OK,
        &json!({
            "user": auth.session.user,
            "created_time": wall(auth.session.created),
            "last_accessed_time": wall(auth.session.last_accessed),
        }),
    )
}

/// `DELETE .../session(s)`: `204`.
async fn logout<K: Kind>(
    State(st): State<Shared<K>>,
    Extension(auth): Extension<Authenticated>,
) -> Response {
    st.core.sessions.remove(&auth.id);
    empty(StatusCode::NO_CONTENT)
}

// --- tasks

/// What a session may do with tasks: the administrator (every user but the viewer) sees and
/// cancels every task; the viewer sees only the tasks whose `user` is
/// [`VAPI_VIEWER_PRINCIPAL`] and cancels none. Handlers extract it from the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAccess {
    /// The administrator: every task, cancels allowed.
    All,
    /// The viewer: its own tasks, read-only.
    ViewerOwn,
}

impl TaskAccess {
    /// The access of a session's user.
    pub fn of(session: &Session) -> Self {
        if session.user == VAPI_VIEWER_USER {
            TaskAccess::ViewerOwn
        } else {
            TaskAccess::All
        }
    }

    /// Whether the session sees task `s` (one it does not see is answered as unknown).
    pub fn sees(self, s: &TaskSnapshot) -> bool {
        match self {
            TaskAccess::All => true,
            TaskAccess::ViewerOwn => s
                .user
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(VAPI_VIEWER_PRINCIPAL)),
        }
    }

    /// Whether the session may cancel the tasks it sees.
    pub fn may_cancel(self) -> bool {
        self == TaskAccess::All
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TaskAccess {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Authenticated>() {
            Some(auth) => Ok(TaskAccess::of(&auth.session)),
            // Only a route registered as public could get here: a simulator bug, not a 401.
            None => Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERROR",
                "com.vmware.vapi.std.errors.error",
                "Internal simulator routing error.",
                &[],
            )),
        }
    }
}

/// `Cis.Tasks.GetSpec` / `result_spec` flags.
#[derive(Default, Clone, Copy)]
pub struct GetSpec {
    pub return_all: bool,
    pub exclude_result: bool,
}

/// A task-list filter (`Cis.Tasks.FilterSpec` / snapservice query): `None` = field absent
/// (matches everything); AND across fields, OR within one.
#[derive(Default)]
pub struct TaskFilter {
    pub tasks: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
    pub operations: Option<Vec<String>>,
    pub status: Option<Vec<TaskStatus>>,
    pub targets: Option<Vec<(String, String)>>,
    pub users: Option<Vec<String>>,
}

impl TaskFilter {
    pub fn matches(&self, s: &TaskSnapshot) -> bool {
        fn any<T: PartialEq>(set: &Option<Vec<T>>, v: &T) -> bool {
            set.as_ref()
                .is_none_or(|set| set.is_empty() || set.contains(v))
        }
        let opt_any = |set: &Option<Vec<String>>, v: &Option<String>| match set {
            Some(set) if !set.is_empty() => v.as_ref().is_some_and(|v| set.contains(v)),
            _ => true,
        };
        let targets_ok = match &self.targets {
            Some(set) if !set.is_empty() => s.target.as_ref().is_some_and(|t| set.contains(t)),
            _ => true,
        };
        any(&self.tasks, &s.id)
            && any(&self.services, &s.service)
            && any(&self.operations, &s.operation)
            && any(&self.status, &s.status)
            && targets_ok
            && opt_any(&self.users, &s.user)
    }
}

/// Parses status names (exact vAPI spelling); `field` names the parameter in the message.
pub fn parse_statuses(values: &[String], field: &str) -> Result<Vec<TaskStatus>, String> {
    values
        .iter()
        .map(|s| TaskStatus::from_vapi(s).ok_or_else(|| format!("Invalid value '{s}' in {field}.")))
        .collect()
}

/// The tasks a list call answers (of those `access` sees), or its error response (boxed: it
/// is large): `400 INVALID_ARGUMENT` without a tasks or services filter,
/// `500 RESOURCE_INACCESSIBLE` over [`LIST_LIMIT`] matches.
/// `id_prefix` is the service's message-id prefix (e.g. `com.vmware.api.cis.tasks`).
pub fn select(
    store: &TaskStore,
    access: TaskAccess,
    filter: &TaskFilter,
    id_prefix: &str,
    missing_filter_text: &str,
) -> Result<Vec<TaskSnapshot>, Box<Response>> {
    let non_empty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if !non_empty(&filter.tasks) && !non_empty(&filter.services) {
        return Err(Box::new(invalid_argument(missing_filter_text)));
    }
    let matched: Vec<TaskSnapshot> = store
        .snapshots()
        .into_iter()
        .filter(|s| access.sees(s) && filter.matches(s))
        .collect();
    if matched.len() > LIST_LIMIT {
        return Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "RESOURCE_INACCESSIBLE",
            &format!("{id_prefix}.list.too_many"),
            &format!(
                "More than {LIST_LIMIT} tasks match the filter ({}).",
                matched.len()
            ),
            &[&matched.len().to_string()],
        )));
    }
    Ok(matched)
}

/// A `LocalizableMessage`.
pub fn message(id: &str, text: &str, args: &[&str]) -> Value {
    json!({"id": id, "default_message": text, "args": args})
}

/// Renders a snapshot as `Cis.Task.Info` (the snapshot service adds `vc_task`), with
/// exactly the fields of the status table in `UPSTREAM_APIS.md` 2.5.
pub fn task_info(s: &TaskSnapshot, spec: GetSpec) -> Value {
    let op_id = format!("{}.{}", s.service, s.operation);
    let mut description = message(&op_id, &s.description, &[]);
    if spec.return_all {
        description["localized"] = Value::String(s.description.clone());
    }
    let mut info = Map::new();
    info.insert("description".into(), description);
    info.insert("service".into(), json!(s.service));
    info.insert("operation".into(), json!(s.operation));
    if let Some(parent) = &s.parent {
        info.insert("parent".into(), json!(parent));
    }
    if let Some((ty, id)) = &s.target {
        info.insert("target".into(), json!({"type": ty, "id": id}));
    }
    info.insert("status".into(), json!(s.status.as_vapi()));
    info.insert("cancelable".into(), json!(s.cancelable));
    if let Some(user) = &s.user {
        info.insert("user".into(), json!(user));
    }
    if s.status != TaskStatus::Pending {
        let pct = s.progress.to_string();
        let progress_message = match s.status {
            TaskStatus::Running => message(
                &format!("{op_id}.progress"),
                &format!("{}: {pct}% complete", s.description),
                &[&pct],
            ),
            TaskStatus::Blocked => message(
                &format!("{op_id}.blocked"),
                "Waiting for resources to become available",
                &[],
            ),
            TaskStatus::Succeeded => message(&format!("{op_id}.done"), "Completed", &[]),
            _ if s.canceled => message(&format!("{op_id}.canceled"), "Canceled", &[]),
            _ => message(&format!("{op_id}.failed"), "Failed", &[]),
        };
        info.insert(
            "progress".into(),
            json!({"total": 100, "completed": s.progress, "message": progress_message}),
        );
        if let Some(start) = s.start_time {
            info.insert("start_time".into(), json!(vapi_datetime(start)));
        }
    }
    if s.status.is_terminal()
        && let Some(end) = s.end_time
    {
        info.insert("end_time".into(), json!(vapi_datetime(end)));
    }
    if s.status == TaskStatus::Failed
        && let Some(err) = &s.error
    {
        let messages: Vec<Value> = err
            .messages
            .iter()
            .map(|(id, text)| message(id, text, &[]))
            .collect();
        info.insert(
            "error".into(),
            json!({"error_type": err.error_type, "messages": messages}),
        );
    }
    // A result only once SUCCEEDED (the engine has none before), unless the caller said no.
    if s.status == TaskStatus::Succeeded
        && !spec.exclude_result
        && let Some(result) = &s.result
    {
        info.insert("result".into(), result.clone());
    }
    Value::Object(info)
}

// --- errors

/// A vAPI error response (`Vapi.Std.Errors.Error`) with one message.
pub fn error(
    status: StatusCode,
    error_type: &str,
    id: &str,
    text: &str,
    args: &[&str],
) -> Response {
    json_resp(status, &error_body(error_type, id, text, args))
}

pub fn error_body(error_type: &str, id: &str, text: &str, args: &[&str]) -> Value {
    json!({
        "error_type": error_type,
        "messages": [{"id": id, "default_message": text, "args": args, "localized": text}],
    })
}

/// `404 NOT_FOUND` for task `id`; `message_id` e.g. `com.vmware.api.cis.tasks.not_found`.
pub fn not_found(id: &str, message_id: &str) -> Response {
    let text = format!("Task {id} does not exist.");
    let mut body = error_body("NOT_FOUND", message_id, &text, &[id]);
    body["messages"][0]["params"] = json!({"task": {"s": id}});
    json_resp(StatusCode::NOT_FOUND, &body)
}

/// `403 UNAUTHORIZED`: the session's user lacks the privilege (the viewer's cancel), in the
/// body vCenter answers such calls with.
pub fn unauthorized() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "UNAUTHORIZED",
        "vapi.security.authorization.invalid",
        "Unable to authorize user",
        &[],
    )
}

pub fn invalid_argument(text: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "com.vmware.vapi.std.errors.invalid_argument",
        text,
        &[],
    )
}

/// `404 OPERATION_NOT_FOUND` for a path or method the service does not have.
pub fn operation_not_found(method: &Method, path: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "OPERATION_NOT_FOUND",
        "vapi.method.input.invalid.operation",
        &format!("Operation {method} {path} not found."),
        &[],
    )
}

/// `503 SERVICE_UNAVAILABLE`, as a vAPI endpoint answers while a service behind it is down.
pub fn service_unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "com.vmware.vapi.std.errors.service_unavailable",
        "The service is temporarily unavailable.",
        &[],
    )
}

/// `401 UNAUTHENTICATED` with the challenge in the body and in `WWW-Authenticate`.
pub fn unauthenticated() -> Response {
    let mut body = error_body(
        "UNAUTHENTICATED",
        "vapi.method.authentication.required",
        "Authentication required.",
        &[],
    );
    body["challenge"] = json!(UNAUTHENTICATED_CHALLENGE);
    let mut resp = json_resp(StatusCode::UNAUTHORIZED, &body);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(UNAUTHENTICATED_CHALLENGE),
    );
    resp
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::simulator::part::probe::Probe;
    use crate::simulator::{snapservice, vcenter};

    /// `GET <tasks>/a%2Fb` of dialect `D` reaches its task route with the id decoded, and the
    /// `404 NOT_FOUND` names the decoded id.
    async fn task_path_ids_are_decoded<D: Dialect>(task_get: &str, uri: &str) {
        let p = Probe::<Endpoint<D>>::new();
        let sid = p.login();
        let (key, status, body) = p
            .call_json(Method::GET, uri, Some((SESSION_HEADER, sid.as_str())))
            .await;
        assert_eq!((key, status), (task_get, StatusCode::NOT_FOUND), "{uri}");
        assert_eq!(body["messages"][0]["args"], json!(["a/b"]), "{uri}");
    }

    #[tokio::test]
    async fn task_path_ids_are_decoded_in_every_dialect() {
        task_path_ids_are_decoded::<vcenter::Vcenter>(
            vcenter::ROUTE_TASK_GET,
            "/api/cis/tasks/a%2Fb",
        )
        .await;
        task_path_ids_are_decoded::<snapservice::Snapservice>(
            snapservice::ROUTE_TASK_GET,
            "/api/snapservice/tasks/a%2Fb",
        )
        .await;
    }
}
