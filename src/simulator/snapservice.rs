//! The simulated snapshot service (vSAN Data Protection, "Snapshot Appliance API"):
//! `/api/snapservice/sessions` and the read-only tasks API `/api/snapservice/tasks`, speaking
//! the vAPI wire format of `UPSTREAM_APIS.md` sections 3–4 and
//! `snapservice-tasks-sessions.subset.openapi.json`.
//!
//! The session flow, task rendering and list filtering are the vCenter ones
//! ([`super::common::vapi`]); this file adds the routes, `vc_task` and the GET-with-query list.
//! Decisions where the reference is silent:
//! - there is no cancel: any path or method not listed here, including
//!   `POST /api/snapservice/tasks/{task}` (with or without `?action=cancel`), answers
//!   `404 OPERATION_NOT_FOUND`, counted under [`ROUTE_OTHER`]; seeded tasks are never
//!   `cancelable`;
//! - list query parameters other than `tasks`, `services`, `operations`, `status`, `users`
//!   are ignored; an unknown `status` value answers `400 INVALID_ARGUMENT`.

use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::SimOptions;
use super::common::vapi::{self, GetSpec, TaskFilter};
use super::common::{SimCore, SimHandle, json as json_resp, percent_decode, query_pairs};
use super::tasks::script::{at, failed, mins, running, secs, succeeded};
use super::tasks::{Phase, TaskSnapshot, TaskSpec, TaskStore};

/// Route keys, as used by `requests` and `inject`.
pub const ROUTE_SESSION_CREATE: &str = "POST /api/snapservice/sessions";
pub const ROUTE_SESSION_GET: &str = "GET /api/snapservice/sessions";
pub const ROUTE_SESSION_DELETE: &str = "DELETE /api/snapservice/sessions";
pub const ROUTE_TASK_GET: &str = "GET /api/snapservice/tasks/{task}";
pub const ROUTE_TASK_LIST: &str = "GET /api/snapservice/tasks";
/// Requests that match no route above (including any cancel attempt).
pub const ROUTE_OTHER: &str = "OTHER";

pub use super::common::vapi::SESSION_HEADER;

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

/// Message-id prefix of this service's errors.
const MSG_PREFIX: &str = "com.vmware.snapservice.tasks";

/// The running simulated snapshot service. Cheap to clone; it stops when the last clone is
/// dropped. `logins` counts successful `POST /api/snapservice/sessions` calls.
#[derive(Clone)]
pub struct SnapserviceSim {
    handle: SimHandle,
    shared: Arc<Shared>,
}

struct Shared {
    core: Arc<SimCore>,
    tasks: TaskStore,
}

impl SnapserviceSim {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start(opts: &SimOptions) -> std::io::Result<SnapserviceSim> {
        let tasks = TaskStore::new(opts.clock.clone());
        if opts.seed_demo_tasks {
            seed_demo_tasks(&tasks);
        }
        let core = Arc::new(SimCore::new(opts));
        let shared = Arc::new(Shared {
            core: Arc::clone(&core),
            tasks,
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let handle = SimHandle::start(core, router, opts.tls, "snapshot service").await?;
        Ok(SnapserviceSim { handle, shared })
    }

    pub fn tasks(&self) -> &TaskStore {
        &self.shared.tasks
    }
}

impl Deref for SnapserviceSim {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for SnapserviceSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapserviceSim")
            .field("url", &self.url())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Routing

enum Route {
    SessionCreate,
    SessionGet,
    SessionDelete,
    TaskGet(String),
    TaskList,
    Unknown,
}

impl Route {
    fn key(&self) -> &'static str {
        match self {
            Route::SessionCreate => ROUTE_SESSION_CREATE,
            Route::SessionGet => ROUTE_SESSION_GET,
            Route::SessionDelete => ROUTE_SESSION_DELETE,
            Route::TaskGet(_) => ROUTE_TASK_GET,
            Route::TaskList => ROUTE_TASK_LIST,
            Route::Unknown => ROUTE_OTHER,
        }
    }
}

fn resolve(method: &Method, path: &str) -> Route {
    let path = path.strip_suffix('/').unwrap_or(path);
    match (method, path) {
        (&Method::POST, "/api/snapservice/sessions") => return Route::SessionCreate,
        (&Method::GET, "/api/snapservice/sessions") => return Route::SessionGet,
        (&Method::DELETE, "/api/snapservice/sessions") => return Route::SessionDelete,
        (&Method::GET, "/api/snapservice/tasks") => return Route::TaskList,
        _ => {}
    }
    match (method, path.strip_prefix("/api/snapservice/tasks/")) {
        (&Method::GET, Some(segment)) if !segment.is_empty() && !segment.contains('/') => {
            percent_decode(segment).map_or(Route::Unknown, Route::TaskGet)
        }
        _ => Route::Unknown,
    }
}

async fn handle(State(st): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let method = req.method().clone();
    let route = resolve(&method, req.uri().path());
    let key = route.key();
    tracing::debug!(route = key, "snapservice sim request");
    if let Some(resp) = st.core.enter(key).await {
        return resp;
    }
    match route {
        Route::SessionCreate => vapi::login(&st.core, req.headers()),
        Route::Unknown => vapi::operation_not_found(&method, req.uri().path()),
        route => {
            let Some((sid, session)) = vapi::authenticate(&st.core, req.headers()) else {
                return vapi::unauthenticated();
            };
            match route {
                Route::SessionGet => vapi::session_info(&st.core, &session),
                Route::SessionDelete => vapi::logout(&st.core, &sid),
                Route::TaskGet(id) => match st.tasks.snapshot(&id) {
                    Some(snap) => json_resp(StatusCode::OK, &task_info(&snap)),
                    None => vapi::not_found(&id, &format!("{MSG_PREFIX}.not_found")),
                },
                Route::TaskList => task_list(&st, &query_pairs(req.uri())),
                Route::SessionCreate | Route::Unknown => vapi::internal_routing_error(),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// `Snapservice.Tasks.Info` = `Cis.Task.Info` + `vc_task` when there is one.
fn task_info(s: &TaskSnapshot) -> Value {
    let mut info = vapi::task_info(s, GetSpec::default());
    if let (Some(vc_task), Some(obj)) = (&s.vc_task, info.as_object_mut()) {
        obj.insert("vc_task".into(), json!(vc_task));
    }
    info
}

fn task_list(st: &Shared, query: &[(String, String)]) -> Response {
    let filter = match parse_filter(query) {
        Ok(f) => f,
        Err(msg) => return vapi::invalid_argument(&msg),
    };
    let matched = match vapi::select(
        &st.tasks,
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

// ---------------------------------------------------------------------------------------------
// Seed data

const ADMIN: &str = "VSPHERE.LOCAL\\Administrator";
const BACKUP: &str = "VSPHERE.LOCAL\\svc-backup";
const PG_TYPE: &str = "com.vmware.snapservice.protection_group";
const VM_TYPE: &str = "VirtualMachine";

/// Id of seeded task number `n` (`8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9dnn`).
fn seed_id(n: u32) -> String {
    format!("8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d{n:02}")
}

/// Seeds the demo mix: ids are fixed so docs and the demo can name them.
fn seed_demo_tasks(store: &TaskStore) {
    let pg = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_PG, op, desc, steps)
            .with_id(id)
            .with_user(ADMIN)
    };
    let pg_snap = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_PG_SNAPSHOTS, op, desc, steps)
            .with_id(id)
            .with_user(BACKUP)
    };
    let vm_snap = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_VM_SNAPSHOTS, op, desc, steps)
            .with_id(id)
            .with_user(ADMIN)
    };
    let specs = vec![
        pg_snap(
            SNAP_DEMO_RUNNING_TASK,
            "create",
            "Create protection group snapshot",
            vec![at(secs(0), running(0, 100)), at(mins(40), succeeded(None))],
        )
        .with_target(PG_TYPE, "pg-7b1c2d3e")
        .with_vc_task("task-88240"),
        pg(
            SNAP_DEMO_SUCCEEDED_TASK,
            "create",
            "Create protection group",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(8), succeeded(Some(json!("pg-7b1c2d3e")))),
            ],
        )
        .with_target(PG_TYPE, "pg-7b1c2d3e")
        .with_vc_task("task-88231")
        .aged(mins(60)),
        pg(
            &seed_id(21),
            "update",
            "Update protection group",
            vec![at(secs(0), running(0, 100)), at(secs(3), succeeded(None))],
        )
        .with_target(PG_TYPE, "pg-7b1c2d3e")
        .aged(mins(45)),
        vm_snap(
            &seed_id(22),
            "delete",
            "Delete virtual machine snapshot",
            vec![at(secs(0), running(0, 100)), at(secs(20), succeeded(None))],
        )
        .with_target(VM_TYPE, "vm-1021")
        .with_vc_task("task-88235")
        .aged(mins(30)),
        pg_snap(
            SNAP_DEMO_FAILED_TASK,
            "create",
            "Create protection group snapshot",
            vec![
                at(secs(0), running(0, 60)),
                at(
                    secs(90),
                    failed(
                        "RESOURCE_INACCESSIBLE",
                        "The protection group snapshot could not be created.",
                    ),
                ),
            ],
        )
        .with_target(PG_TYPE, "pg-8c2d3e4f")
        .with_error_cause(
            "com.vmware.snapservice.vsan.datastore.inaccessible",
            "The vSAN datastore of cluster domain-c9 is not accessible.",
        )
        .with_vc_task("task-88237")
        .aged(mins(20)),
        vm_snap(
            &seed_id(31),
            "revert",
            "Revert virtual machine to snapshot",
            vec![
                at(secs(0), running(0, 10)),
                at(
                    secs(2),
                    failed(
                        "NOT_ALLOWED_IN_CURRENT_STATE",
                        "The virtual machine could not be reverted.",
                    ),
                ),
            ],
        )
        .with_target(VM_TYPE, "vm-1022")
        .with_error_cause("com.vmware.vcenter.vm.powered_on", "The VM is powered on.")
        .aged(mins(10)),
        pg(
            SNAP_DEMO_BLOCKED_TASK,
            "delete",
            "Delete protection group",
            vec![at(secs(0), running(0, 40)), at(secs(30), Phase::Blocked)],
        )
        .with_target(PG_TYPE, "pg-9d3e4f50")
        .aged(mins(5)),
        pg_snap(
            SNAP_DEMO_PENDING_TASK,
            "create",
            "Create protection group snapshot",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(3), running(0, 100)),
                at(mins(5), succeeded(None)),
            ],
        )
        .with_target(PG_TYPE, "pg-9d3e4f50"),
        // A short lifecycle that plays out within the first minute.
        vm_snap(
            &seed_id(51),
            "create",
            "Create virtual machine snapshot",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(5), running(0, 100)),
                at(secs(35), succeeded(Some(json!("snapshot-412")))),
            ],
        )
        .with_target(VM_TYPE, "vm-1023")
        .with_vc_task("task-88241"),
        // System-started (no user), child of the running snapshot.
        TaskSpec::new(
            SVC_VM_SNAPSHOTS,
            "create",
            "Create virtual machine snapshot",
            vec![at(secs(0), running(0, 100)), at(mins(20), succeeded(None))],
        )
        .with_id(&seed_id(52))
        .with_target(VM_TYPE, "vm-1024")
        .with_parent(SNAP_DEMO_RUNNING_TASK),
    ];
    for spec in specs {
        store.add(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimClock;
    use crate::simulator::tasks::TaskStatus;

    #[test]
    fn seeded_tasks_cover_every_status_over_the_clock() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        seed_demo_tasks(&store);
        let status = |id: &str| store.snapshot(id).map(|s| s.status);
        assert_eq!(status(SNAP_DEMO_RUNNING_TASK), Some(TaskStatus::Running));
        assert_eq!(
            status(SNAP_DEMO_SUCCEEDED_TASK),
            Some(TaskStatus::Succeeded)
        );
        assert_eq!(status(SNAP_DEMO_FAILED_TASK), Some(TaskStatus::Failed));
        assert_eq!(status(SNAP_DEMO_BLOCKED_TASK), Some(TaskStatus::Blocked));
        assert_eq!(status(SNAP_DEMO_PENDING_TASK), Some(TaskStatus::Pending));
        assert!(
            store
                .snapshots()
                .iter()
                .all(|s| SNAP_DEMO_SERVICES.contains(&s.service.as_str()) && !s.cancelable)
        );
        let before = store.snapshot(SNAP_DEMO_RUNNING_TASK).map(|s| s.progress);
        clock.advance(mins(4));
        assert_eq!(status(SNAP_DEMO_PENDING_TASK), Some(TaskStatus::Running));
        assert!(store.snapshot(SNAP_DEMO_RUNNING_TASK).map(|s| s.progress) > before);
        clock.advance(mins(40));
        assert_eq!(status(SNAP_DEMO_RUNNING_TASK), Some(TaskStatus::Succeeded));
        assert_eq!(status(SNAP_DEMO_PENDING_TASK), Some(TaskStatus::Succeeded));
    }

    #[test]
    fn info_carries_vc_task_only_when_there_is_one() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock);
        seed_demo_tasks(&store);
        let info = |id: &str| store.snapshot(id).map(|s| task_info(&s));
        let ok = info(SNAP_DEMO_SUCCEEDED_TASK).unwrap_or_default();
        assert_eq!(ok["vc_task"], "task-88231");
        assert_eq!(ok["result"], "pg-7b1c2d3e");
        assert!(ok.get("end_time").is_some());
        let blocked = info(SNAP_DEMO_BLOCKED_TASK).unwrap_or_default();
        assert!(blocked.get("vc_task").is_none());
        assert!(blocked.get("end_time").is_none());
    }

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

    #[test]
    fn cancel_is_not_a_route() {
        assert_eq!(
            resolve(&Method::POST, "/api/snapservice/tasks/x").key(),
            ROUTE_OTHER
        );
        assert_eq!(
            resolve(&Method::GET, "/api/snapservice/tasks/").key(),
            ROUTE_TASK_LIST
        );
        assert!(matches!(
            resolve(&Method::GET, "/api/snapservice/tasks/a%2Fb"),
            Route::TaskGet(id) if id == "a/b"
        ));
    }
}
