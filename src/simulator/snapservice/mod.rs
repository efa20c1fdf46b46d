//! The simulated snapshot service (vSAN Data Protection, "Snapshot Appliance API"):
//! `/api/snapservice/sessions` and the read-only tasks API `/api/snapservice/tasks`, speaking
//! the vAPI wire format of `UPSTREAM_APIS.md` sections 3–4 and
//! `snapservice-tasks-sessions.subset.openapi.json`.
//!
//! The session flow, task rendering and list filtering are the vCenter ones ([`super::vapi`]);
//! this module adds the routes, `vc_task` and the GET-with-query list; the seeded task mix
//! lives in [`seed`]. Decisions where the reference is silent:
//! - there is no cancel: any path or method not listed here, including
//!   `POST /api/snapservice/tasks/{task}` (with or without `?action=cancel`), answers
//!   `404 OPERATION_NOT_FOUND`, counted under [`ROUTE_OTHER`]; seeded tasks are never
//!   `cancelable`;
//! - list query parameters other than `tasks`, `services`, `operations`, `status`, `users`
//!   are ignored; an unknown `status` value answers `400 INVALID_ARGUMENT`;
//! - the viewer ([`VAPI_VIEWER_USER`]) sees only its own tasks: get answers any other task
//!   `404 NOT_FOUND` as an unknown id, lists leave it out.

mod seed;

use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};
use serde_json::{Value, json};

use super::part::{Part, Routes, Shared};
use super::tasks::{TaskSnapshot, TaskStore};
use super::vapi::{self, Dialect, GetSpec, TaskAccess, TaskFilter};
use super::web::{json as json_resp, query_pairs};

pub use super::part::ROUTE_OTHER;
pub use super::vapi::SESSION_HEADER;
pub use super::vapi::{VAPI_VIEWER_PASSWORD, VAPI_VIEWER_PRINCIPAL, VAPI_VIEWER_USER};

/// Route keys, as used by `requests` and `inject`; each is also the route it names.
pub const ROUTE_SESSION_CREATE: &str = "POST /api/snapservice/sessions";
pub const ROUTE_SESSION_GET: &str = "GET /api/snapservice/sessions";
pub const ROUTE_SESSION_DELETE: &str = "DELETE /api/snapservice/sessions";
pub const ROUTE_TASK_GET: &str = "GET /api/snapservice/tasks/{task}";
pub const ROUTE_TASK_LIST: &str = "GET /api/snapservice/tasks";

const SVC_PG: &str = "com.vmware.snapservice.clusters.protection_groups";
const SVC_PG_SNAPSHOTS: &str = "com.vmware.snapservice.clusters.protection_groups.snapshots";
const SVC_VM_SNAPSHOTS: &str = "com.vmware.snapservice.clusters.vms.snapshots";

/// Every service id used by the seeded tasks (listing needs a services or tasks filter).
pub const SNAP_DEMO_SERVICES: &[&str] = &[SVC_PG, SVC_PG_SNAPSHOTS, SVC_VM_SNAPSHOTS];

/// RUNNING for 40 minutes (1 % per 24 s), with `vc_task`; then SUCCEEDED.
pub const SNAP_DEMO_RUNNING_TASK: &str = "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d01";
/// SUCCEEDED an hour ago, `vc_task` `task-88231`, result = the protection group id.
pub const SNAP_DEMO_SUCCEEDED_TASK: &str = "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d20";
/// FAILED 20 minutes ago with a two-message error stack.
pub const SNAP_DEMO_FAILED_TASK: &str = "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d30";
/// BLOCKED indefinitely at 40 %.
pub const SNAP_DEMO_BLOCKED_TASK: &str = "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d40";
/// PENDING for the first three minutes, then runs and succeeds.
pub const SNAP_DEMO_PENDING_TASK: &str = "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d50";
/// The viewer's task ([`VAPI_VIEWER_PRINCIPAL`]): RUNNING for two hours (1 % per 72 s),
/// with `vc_task`; then SUCCEEDED.
pub const SNAP_DEMO_VIEWER_TASK: &str = "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d02";

/// Message-id prefix of this service's errors.
const MSG_PREFIX: &str = "com.vmware.snapservice.tasks";

/// The running simulated snapshot service (see [`Part`]); `logins` counts successful
/// `POST /api/snapservice/sessions` calls.
pub type SnapserviceSim = Part<Endpoint>;

/// The snapshot-service dialect of the vAPI kind: a read-only tasks API listed by GET.
pub struct Snapservice;

/// The snapshot-service kind: a vAPI endpoint and its task store.
type Endpoint = vapi::Endpoint<Snapservice>;

impl Dialect for Snapservice {
    const NAME: &'static str = "snapshot service";
    const SESSION_ROUTES: [&'static str; 3] = [
        ROUTE_SESSION_CREATE,
        ROUTE_SESSION_GET,
        ROUTE_SESSION_DELETE,
    ];

    const SEED: fn(&TaskStore) = seed::seed_demo_tasks;

    fn task_routes(routes: Routes<Endpoint>) -> Routes<Endpoint> {
        routes.session(ROUTE_TASK_GET, task_get).session(
            ROUTE_TASK_LIST,
            |State(st): State<Shared<Endpoint>>, access: TaskAccess, uri: Uri| async move {
                task_list(&st, access, &query_pairs(&uri))
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// A task the session does not see (the viewer's view) is unknown.
async fn task_get(
    State(st): State<Shared<Endpoint>>,
    access: TaskAccess,
    Path(id): Path<String>,
) -> Response {
    match st.tasks.snapshot(&id).filter(|s| access.sees(s)) {
        Some(snap) => json_resp(StatusCode::OK, &task_info(&snap)),
        None => vapi::not_found(&id, &format!("{MSG_PREFIX}.not_found")),
    }
}

/// `Snapservice.Tasks.Info` = `Cis.Task.Info` + `vc_task` when there is one.
pub(crate) fn task_info(s: &TaskSnapshot) -> Value {
    let mut info = vapi::task_info(s, GetSpec::default());
    if let (Some(vc_task), Some(obj)) = (&s.vc_task, info.as_object_mut()) {
        obj.insert("vc_task".into(), json!(vc_task));
    }
    info
}

fn task_list(st: &Endpoint, access: TaskAccess, query: &[(String, String)]) -> Response {
    let filter = match parse_filter(query) {
        Ok(f) => f,
        Err(msg) => return vapi::invalid_argument(&msg),
    };
    let matched = match vapi::select(
        &st.tasks,
        access,
        &filter,
        MSG_PREFIX,
        "At least one of tasks or services must be specified.",
    ) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let items: Vec<Value> = matched
        .iter()
        .map(|s| json!({"task": s.id, "info": task_info(s)}))
        .collect();
    json_resp(StatusCode::OK, &json!({ "items": items }))
}

/// `Snapservice.Tasks.FilterSpec` from repeated query keys (`style=form, explode=true`).
fn parse_filter(query: &[(String, String)]) -> Result<TaskFilter, String> {
    let values = |name: &str| -> Option<Vec<String>> {
        let v: Vec<String> = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        (!v.is_empty()).then_some(v)
    };
    Ok(TaskFilter {
        tasks: values("tasks"),
        services: values("services"),
        operations: values("operations"),
        status: match values("status") {
            None => None,
            Some(list) => Some(vapi::parse_statuses(&list, "status")?),
        },
        targets: None,
        users: values("users"),
    })
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::simulator::part::probe::Probe;
    use crate::simulator::tasks::TaskStatus;

    #[test]
    fn list_filter_reads_repeated_keys_and_rejects_bad_status() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let f = parse_filter(&q(&[
            ("services", SVC_PG),
            ("services", SVC_VM_SNAPSHOTS),
            ("status", "RUNNING"),
            ("status", "PENDING"),
            ("targets", "ignored"),
        ]))
        .unwrap_or_default();
        assert_eq!(f.services.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            f.status,
            Some(vec![TaskStatus::Running, TaskStatus::Pending])
        );
        assert!(f.tasks.is_none() && f.targets.is_none());
        assert!(parse_filter(&q(&[("status", "running")])).is_err());
    }

    #[tokio::test]
    async fn the_viewer_sees_only_its_own_tasks() {
        let p = Probe::<Endpoint>::new();
        let admin = p.login();
        let viewer = p.ctx.core.login(VAPI_VIEWER_USER);
        let a = Some((SESSION_HEADER, admin.as_str()));
        let v = Some((SESSION_HEADER, viewer.as_str()));
        let get = |id: &str| format!("/api/snapservice/tasks/{id}");

        let (_, status, own) = p
            .call_json(Method::GET, &get(SNAP_DEMO_VIEWER_TASK), v)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(own["user"], VAPI_VIEWER_PRINCIPAL);
        assert_eq!(own["vc_task"], "task-88250");
        let (key, status, hidden) = p
            .call_json(Method::GET, &get(SNAP_DEMO_RUNNING_TASK), v)
            .await;
        assert_eq!((key, status), (ROUTE_TASK_GET, StatusCode::NOT_FOUND));
        assert_eq!(
            hidden["messages"][0]["id"],
            "com.vmware.snapservice.tasks.not_found"
        );
        assert_eq!(
            p.call(Method::GET, &get(SNAP_DEMO_RUNNING_TASK), a).await.1,
            StatusCode::OK
        );
        assert!(p.ctx.kind.tasks.remove(SNAP_DEMO_RUNNING_TASK));
        let (_, status, unknown) = p
            .call_json(Method::GET, &get(SNAP_DEMO_RUNNING_TASK), a)
            .await;
        assert_eq!(
            (status, unknown),
            (StatusCode::NOT_FOUND, hidden),
            "as an unknown id"
        );

        let p = &p;
        let list = |sid| {
            let query: Vec<String> = SNAP_DEMO_SERVICES
                .iter()
                .map(|s| format!("services={s}"))
                .collect();
            let uri = format!("/api/snapservice/tasks?{}", query.join("&"));
            async move {
                let (_, status, body) = p.call_json(Method::GET, &uri, sid).await;
                assert_eq!(status, StatusCode::OK);
                let items = body["items"].as_array().cloned().unwrap_or_default();
                items
                    .iter()
                    .filter_map(|i| i["task"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list(v).await, [SNAP_DEMO_VIEWER_TASK]);
        let all = list(a).await;
        assert!(
            all.len() > 5 && all.contains(&SNAP_DEMO_VIEWER_TASK.to_string()),
            "{all:?}"
        );
    }

    #[tokio::test]
    async fn cancel_is_not_a_route() {
        let p = Probe::<Endpoint>::new();
        let cancels = [
            (Method::POST, "/api/snapservice/tasks/x"),
            (Method::POST, "/api/snapservice/tasks/x?action=cancel"),
        ];
        p.assert_table(SESSION_HEADER, &Snapservice::SESSION_ROUTES, &cancels)
            .await;
        p.assert_routes(SESSION_HEADER, &[ROUTE_TASK_GET, ROUTE_TASK_LIST])
            .await;
        let sid = p.login();
        let s = Some((SESSION_HEADER, sid.as_str()));
        let list = p.key(Method::GET, "/api/snapservice/tasks/", s).await;
        assert_eq!(list, ROUTE_TASK_LIST);
    }
}
