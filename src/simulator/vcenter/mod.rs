//! The simulated vCenter: `/api/session` and the CIS tasks API (`/api/cis/tasks`), speaking
//! the vAPI `/api` wire format of `UPSTREAM_APIS.md` sections 1–3.
//!
//! JSON is built by hand with `serde_json::json!` on purpose: sharing structs with the
//! gateway's adapters would let one misspelled field name hide on both sides.
//!
//! vAPI selects operations by the `action` query parameter, which axum's router does not match
//! on: each `POST` task path has one small dispatcher on the [`RouteKey`] the guard resolved
//! from the action. Decisions where the docs are silent:
//! - an unknown or missing `action` on a task path answers `400 INVALID_ARGUMENT` after
//!   authentication (the action is a parameter value the server does not accept), counted
//!   under [`ROUTE_OTHER`]; an unknown path or method answers `404 OPERATION_NOT_FOUND`,
//!   counted there too;
//! - `return_all=true` adds `localized` to the description message and nothing else: the
//!   subset spec's `Cis.Task.Info` is closed, so operation-specific extras would not be valid;
//! - the viewer ([`VAPI_VIEWER_USER`]) sees only its own tasks: get, list and cancel treat
//!   any other task as unknown (`404 NOT_FOUND`); its cancel of a task it sees answers
//!   `403 UNAUTHORIZED` before any state check.
//!
//! The seeded task mix lives in [`seed`].

mod seed;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};
use serde_json::{Map, Value};

use super::part::{Part, RouteKey, Routes, Shared};
use super::tasks::{CancelRefusal, TaskStore};
use super::vapi::{self, Dialect, GetSpec, TaskAccess, TaskFilter};
use super::web::{empty, json as json_resp, query_last, query_pairs, read_body};

pub use super::common::Fault;
pub use super::part::ROUTE_OTHER;
/// The session header of the vSphere `/api` endpoint.
pub use super::vapi::SESSION_HEADER;
pub use super::vapi::{VAPI_VIEWER_PASSWORD, VAPI_VIEWER_PRINCIPAL, VAPI_VIEWER_USER};
pub use seed::seed_task_id;

/// Route keys, as used by [`VcenterSim::requests`](super::SimHandle::requests) and
/// [`VcenterSim::inject`](super::SimHandle::inject); each is also the route it names.
pub const ROUTE_SESSION_CREATE: &str = "POST /api/session";
pub const ROUTE_SESSION_GET: &str = "GET /api/session";
pub const ROUTE_SESSION_DELETE: &str = "DELETE /api/session";
pub const ROUTE_TASK_GET: &str = "GET /api/cis/tasks/{task}";
pub const ROUTE_TASK_LIST: &str = "POST /api/cis/tasks?action=list";
pub const ROUTE_TASK_CANCEL: &str = "POST /api/cis/tasks/{task}?action=cancel";

/// RUNNING for 50 minutes, 1 % per 30 s, not cancelable; then SUCCEEDED.
pub const DEMO_RUNNING_TASK: &str = "52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d11";
/// RUNNING and cancelable for six hours unless cancelled.
pub const DEMO_CANCELABLE_TASK: &str = "52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d12";
/// RUNNING from 0 to 100 % over the first 15 s after the start, then SUCCEEDED: a task a
/// client can watch to its end (examples/python/client.py).
pub const DEMO_QUICK_TASK: &str = "52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d13";
/// SUCCEEDED an hour ago, with a result (`"vm-2002"`).
pub const DEMO_SUCCEEDED_TASK: &str = "5eed0000-0000-4000-8000-000000000002";
/// FAILED 40 minutes ago with a two-message error stack.
pub const DEMO_FAILED_TASK: &str = "5eed0000-0000-4000-8000-000000000010";
/// BLOCKED indefinitely (at 30 %).
pub const DEMO_BLOCKED_TASK: &str = "5eed0000-0000-4000-8000-000000000020";
/// PENDING for the first five minutes, then runs and succeeds.
pub const DEMO_PENDING_TASK: &str = "5eed0000-0000-4000-8000-000000000030";
/// The viewer's task ([`VAPI_VIEWER_PRINCIPAL`]): RUNNING and cancelable for six hours
/// unless cancelled (by the administrator: the viewer may not).
pub const DEMO_VIEWER_TASK: &str = "52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d14";

const SVC_VM: &str = "com.vmware.vcenter.VM";
const SVC_HARDWARE: &str = "com.vmware.vcenter.vm.hardware";
const SVC_LIBRARY_ITEM: &str = "com.vmware.content.library.item";

/// Every service id used by the seeded tasks (listing on vSphere needs a services filter).
pub const DEMO_SERVICES: &[&str] = &[SVC_VM, SVC_HARDWARE, SVC_LIBRARY_ITEM];

/// Request bodies larger than this are refused.
const BODY_LIMIT: usize = 1 << 20;
/// Message-id prefix of this service's errors.
const MSG_PREFIX: &str = "com.vmware.api.cis.tasks";

/// The running simulated vCenter (see [`Part`]); `logins` counts successful
/// `POST /api/session` calls.
pub type VcenterSim = Part<Endpoint>;

/// The vCenter dialect of the vAPI kind: the CIS tasks API with its `action` routes.
pub struct Vcenter;

/// The vCenter kind: a vAPI endpoint and its task store.
type Endpoint = vapi::Endpoint<Vcenter>;

impl Dialect for Vcenter {
    const NAME: &'static str = "vCenter";
    const SESSION_ROUTES: [&'static str; 3] = [
        ROUTE_SESSION_CREATE,
        ROUTE_SESSION_GET,
        ROUTE_SESSION_DELETE,
    ];

    const SEED: fn(&TaskStore) = seed::seed_demo_tasks;

    fn task_routes(routes: Routes<Endpoint>) -> Routes<Endpoint> {
        routes
            .session(ROUTE_TASK_GET, task_get)
            .actions(&[ROUTE_TASK_LIST], tasks_action)
            .actions(&[ROUTE_TASK_CANCEL], task_action)
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// `400 INVALID_ARGUMENT` for an `action` this path does not offer.
fn bad_action(uri: &Uri) -> Response {
    let pairs = query_pairs(uri);
    let action = query_last(&pairs, "action").unwrap_or("");
    vapi::invalid_argument(&format!(
        "Unsupported value '{action}' for the 'action' query parameter."
    ))
}

/// `POST /api/cis/tasks?action=...`.
async fn tasks_action(
    State(st): State<Shared<Endpoint>>,
    Extension(RouteKey(route)): Extension<RouteKey>,
    access: TaskAccess,
    uri: Uri,
    body: Body,
) -> Response {
    if route != ROUTE_TASK_LIST {
        return bad_action(&uri);
    }
    match read_body(body, BODY_LIMIT).await {
        Some(bytes) => task_list(&st, access, &bytes),
        None => vapi::invalid_argument("The request body could not be read."),
    }
}

/// `POST /api/cis/tasks/{task}?action=...`: a task the session does not see is unknown, the
/// viewer may not cancel one it sees.
async fn task_action(
    State(st): State<Shared<Endpoint>>,
    Extension(RouteKey(route)): Extension<RouteKey>,
    access: TaskAccess,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    if route != ROUTE_TASK_CANCEL {
        return bad_action(&uri);
    }
    if !st.tasks.snapshot(&id).is_some_and(|s| access.sees(&s)) {
        return not_found(&id);
    }
    if !access.may_cancel() {
        return vapi::unauthorized();
    }
    match st.tasks.cancel(&id) {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(CancelRefusal::NotFound) => not_found(&id),
        Err(CancelRefusal::Finished) => vapi::error(
            StatusCode::BAD_REQUEST,
            "NOT_ALLOWED_IN_CURRENT_STATE",
            "com.vmware.api.cis.tasks.cancel.not_allowed_in_current_state",
            &format!("Task {id} has already completed or been canceled."),
            &[&id],
        ),
        Err(CancelRefusal::NotCancelable) => vapi::error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "com.vmware.api.cis.tasks.cancel.unsupported",
            &format!("Task {id} cannot be canceled."),
            &[&id],
        ),
    }
}

fn not_found(id: &str) -> Response {
    vapi::not_found(id, &format!("{MSG_PREFIX}.not_found"))
}

/// `GET /api/cis/tasks/{task}` with the `GetSpec` flags as query parameters; a task the
/// session does not see is unknown.
async fn task_get(
    State(st): State<Shared<Endpoint>>,
    access: TaskAccess,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let mut spec = GetSpec::default();
    for (k, v) in query_pairs(&uri) {
        let slot = match k.as_str() {
            "return_all" => &mut spec.return_all,
            "exclude_result" => &mut spec.exclude_result,
            _ => continue,
        };
        *slot = match v.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return vapi::invalid_argument(&format!(
                    "Invalid boolean value '{v}' for query parameter '{k}'."
                ));
            }
        };
    }
    match st.tasks.snapshot(&id).filter(|s| access.sees(s)) {
        Some(snap) => json_resp(StatusCode::OK, &vapi::task_info(&snap, spec)),
        None => not_found(&id),
    }
}

/// `Cis.Tasks.list`: the tasks the session sees matching the body's `filter_spec`, keyed by
/// id.
fn task_list(st: &Endpoint, access: TaskAccess, body: &[u8]) -> Response {
    let (filter, spec) = match parse_list_body(body) {
        Ok(v) => v,
        Err(msg) => return vapi::invalid_argument(&msg),
    };
    let matched = match vapi::select(
        &st.tasks,
        access,
        &filter,
        MSG_PREFIX,
        "At least one of filter_spec.tasks or filter_spec.services must be specified.",
    ) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let mut out = Map::new();
    for s in &matched {
        out.insert(s.id.clone(), vapi::task_info(s, spec));
    }
    json_resp(StatusCode::OK, &Value::Object(out))
}

fn parse_list_body(body: &[u8]) -> Result<(TaskFilter, GetSpec), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((TaskFilter::default(), GetSpec::default()));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("Malformed JSON request body: {e}."))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "The request body must be a JSON object.".to_string())?;
    let mut filter = TaskFilter::default();
    if let Some(fs) = obj.get("filter_spec").filter(|v| !v.is_null()) {
        let fs = fs
            .as_object()
            .ok_or_else(|| "filter_spec must be an object.".to_string())?;
        filter.tasks = string_list(fs, "tasks")?;
        filter.services = string_list(fs, "services")?;
        filter.operations = string_list(fs, "operations")?;
        filter.users = string_list(fs, "users")?;
        filter.status = match string_list(fs, "status")? {
            None => None,
            Some(list) => Some(vapi::parse_statuses(&list, "filter_spec.status")?),
        };
        filter.targets = match fs.get("targets").filter(|v| !v.is_null()) {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|t| {
                        let field = |name: &str| t.get(name).and_then(Value::as_str);
                        match (field("type"), field("id")) {
                            (Some(ty), Some(id)) => Ok((ty.to_string(), id.to_string())),
                            _ => Err("filter_spec.targets entries need string 'type' and 'id'."
                                .to_string()),
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err("filter_spec.targets must be an array.".to_string()),
        };
    }
    let mut spec = GetSpec::default();
    if let Some(rs) = obj.get("result_spec").filter(|v| !v.is_null()) {
        let rs = rs
            .as_object()
            .ok_or_else(|| "result_spec must be an object.".to_string())?;
        for (name, slot) in [
            ("return_all", &mut spec.return_all),
            ("exclude_result", &mut spec.exclude_result),
        ] {
            match rs.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => *slot = *b,
                Some(_) => return Err(format!("result_spec.{name} must be a boolean.")),
            }
        }
    }
    Ok((filter, spec))
}

fn string_list(obj: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("filter_spec.{name} must contain only strings."))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("filter_spec.{name} must be an array of strings.")),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::simulator::part::probe::Probe;
    use crate::simulator::tasks::TaskStatus;

    /// `POST /api/cis/tasks?action=list` with `filter_spec` as `session`: the ids listed.
    async fn listed(p: &Probe<Endpoint>, sid: &str, filter_spec: Value) -> Vec<String> {
        let req = http::Request::post("/api/cis/tasks?action=list")
            .header(SESSION_HEADER, sid)
            .header("content-type", "application/json")
            .body(Body::from(json!({"filter_spec": filter_spec}).to_string()))
            .unwrap_or_default();
        let (key, status, body) = p.send(req).await;
        assert_eq!((key, status), (ROUTE_TASK_LIST, StatusCode::OK));
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut ids: Vec<String> = body
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn the_viewer_sees_only_its_own_tasks_and_cancels_none() {
        let p = Probe::<Endpoint>::new();
        let admin = p.login();
        let viewer = p.ctx.core.login(VAPI_VIEWER_USER);
        let a = Some((SESSION_HEADER, admin.as_str()));
        let v = Some((SESSION_HEADER, viewer.as_str()));
        let get = |id: &str| format!("/api/cis/tasks/{id}");
        let cancel = |id: &str| format!("/api/cis/tasks/{id}?action=cancel");

        let (_, status, own) = p.call_json(Method::GET, &get(DEMO_VIEWER_TASK), v).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (own["status"].as_str(), own["user"].as_str()),
            (Some("RUNNING"), Some(VAPI_VIEWER_PRINCIPAL))
        );
        assert_eq!(own["cancelable"], true);

        // Another user's task answers exactly as an unknown one: what the admin gets once it
        // is gone.
        let (key, status, hidden) = p.call_json(Method::GET, &get(DEMO_RUNNING_TASK), v).await;
        assert_eq!((key, status), (ROUTE_TASK_GET, StatusCode::NOT_FOUND));
        assert_eq!(hidden["error_type"], "NOT_FOUND");
        let (_, status, seen) = p.call_json(Method::GET, &get(DEMO_RUNNING_TASK), a).await;
        assert_eq!(
            (status, seen["user"].as_str()),
            (StatusCode::OK, Some("VSPHERE.LOCAL\\Administrator"))
        );
        assert!(p.ctx.kind.tasks.remove(DEMO_RUNNING_TASK));
        let (_, status, unknown) = p.call_json(Method::GET, &get(DEMO_RUNNING_TASK), a).await;
        assert_eq!((status, &unknown), (StatusCode::NOT_FOUND, &hidden));

        // Lists leave the others out, whatever the filter names.
        let services = json!({"services": DEMO_SERVICES});
        assert_eq!(
            listed(&p, &viewer, services.clone()).await,
            [DEMO_VIEWER_TASK]
        );
        let by_id = json!({"tasks": [DEMO_CANCELABLE_TASK, DEMO_VIEWER_TASK]});
        assert_eq!(listed(&p, &viewer, by_id.clone()).await, [DEMO_VIEWER_TASK]);
        assert_eq!(
            listed(&p, &admin, by_id).await,
            [DEMO_CANCELABLE_TASK, DEMO_VIEWER_TASK]
        );
        let all = listed(&p, &admin, services).await;
        assert!(
            all.len() > 20 && all.contains(&DEMO_VIEWER_TASK.to_string()),
            "{all:?}"
        );

        // Read-only: its own task 403 UNAUTHORIZED, another's 404 as unknown.
        let (key, status, refused) = p
            .call_json(Method::POST, &cancel(DEMO_VIEWER_TASK), v)
            .await;
        assert_eq!((key, status), (ROUTE_TASK_CANCEL, StatusCode::FORBIDDEN));
        assert_eq!(
            refused,
            json!({"error_type": "UNAUTHORIZED", "messages": [{
                "id": "vapi.security.authorization.invalid", "default_message": "Unable to authorize user",
                "args": [], "localized": "Unable to authorize user"}]})
        );
        let (_, status, other) = p
            .call_json(Method::POST, &cancel(DEMO_CANCELABLE_TASK), v)
            .await;
        assert_eq!(
            (status, other["error_type"].as_str()),
            (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
        );
        assert_eq!(
            other["messages"][0]["id"],
            "com.vmware.api.cis.tasks.not_found"
        );
        let running = |id| p.ctx.kind.tasks.snapshot(id).map(|s| s.status);
        assert_eq!(running(DEMO_VIEWER_TASK), Some(TaskStatus::Running));
        assert_eq!(running(DEMO_CANCELABLE_TASK), Some(TaskStatus::Running));

        // The administrator cancels the viewer's task as any other.
        let (_, status, _) = p.call(Method::POST, &cancel(DEMO_VIEWER_TASK), a).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(running(DEMO_VIEWER_TASK), Some(TaskStatus::Failed));
    }

    #[tokio::test]
    async fn routes_resolve_by_method_path_and_action() {
        let p = Probe::<Endpoint>::new();
        let unmatched = [
            (Method::GET, "/api/cis/tasks"),
            (Method::PUT, "/api/session"),
            (Method::GET, "/api/cis/tasks/x/y"),
        ];
        p.assert_table(SESSION_HEADER, &Vcenter::SESSION_ROUTES, &unmatched)
            .await;
        let tasks = [ROUTE_TASK_GET, ROUTE_TASK_LIST, ROUTE_TASK_CANCEL];
        p.assert_routes(SESSION_HEADER, &tasks).await;
        let sid = p.login();
        let s = Some((SESSION_HEADER, sid.as_str()));
        let key = |m: Method, uri: &'static str| p.key(m, uri, s);
        assert_eq!(key(Method::GET, "/api/session/").await, ROUTE_SESSION_GET);
        let get = key(Method::GET, "/api/cis/tasks/x?action=cancel").await;
        assert_eq!(get, ROUTE_TASK_GET, "GET ignores the action");
        let last = key(Method::POST, "/api/cis/tasks/x?action=frob&action=cancel").await;
        assert_eq!(last, ROUTE_TASK_CANCEL, "the last action wins");
    }

    #[tokio::test]
    async fn bad_actions_are_400_after_auth() {
        let p = Probe::<Endpoint>::new();
        let sid = p.login();
        let s = Some((SESSION_HEADER, sid.as_str()));
        let frob = "/api/cis/tasks/x?action=frob";
        let (key, status, _) = p.call(Method::POST, frob, None).await;
        assert_eq!((key, status), (ROUTE_OTHER, StatusCode::UNAUTHORIZED));
        let (key, status, body) = p.call_json(Method::POST, frob, s).await;
        assert_eq!((key, status), (ROUTE_OTHER, StatusCode::BAD_REQUEST));
        assert_eq!(body["error_type"], "INVALID_ARGUMENT");
        let (_, status, body) = p.call(Method::POST, "/api/cis/tasks", s).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("Unsupported value ''"));

        let (key, status, body) = p.call_json(Method::GET, "/api/cis/tasks/", None).await;
        assert_eq!((key, status), (ROUTE_OTHER, StatusCode::NOT_FOUND));
        assert_eq!(body["error_type"], "OPERATION_NOT_FOUND");
        assert_eq!(
            body["messages"][0]["default_message"], "Operation GET /api/cis/tasks/ not found.",
            "the path as sent"
        );
    }
}
