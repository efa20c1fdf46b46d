//! The simulated vCenter: `/api/session` and the CIS tasks API (`/api/cis/tasks`), speaking
//! the vAPI `/api` wire format of `UPSTREAM_APIS.md` sections 1–3.
//!
//! JSON is built by hand with `serde_json::json!` on purpose: sharing structs with the
//! gateway's adapters would let one misspelled field name hide on both sides.
//!
//! Routing is done by hand in one handler because vAPI selects operations by the `action`
//! query parameter, which axum's router cannot match on. Decisions where the docs are silent:
//! - an unknown or missing `action` on a task path answers `400 INVALID_ARGUMENT` (the action
//!   is a parameter value the server does not accept); an unknown path or method answers
//!   `404 OPERATION_NOT_FOUND`, counted under [`ROUTE_OTHER`];
//! - `return_all=true` adds `localized` to the description message and nothing else: the
//!   subset spec's `Cis.Task.Info` is closed, so operation-specific extras would not be valid.

use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{Method, Request, StatusCode};
use serde_json::{Map, Value, json};

use super::SimOptions;
use super::common::vapi::{self, GetSpec, TaskFilter};
use super::common::{SimCore, SimHandle, empty, json as json_resp, percent_decode, query_pairs};
use super::tasks::script::{at, failed, mins, running, secs, succeeded};
use super::tasks::{Phase, TaskSpec, TaskStore};

pub use super::common::Fault;
/// The session header of the vSphere `/api` endpoint.
pub use super::common::vapi::SESSION_HEADER;

/// Route keys, as used by [`VcenterSim::requests`] and [`VcenterSim::inject`].
pub const ROUTE_SESSION_CREATE: &str = "POST /api/session";
pub const ROUTE_SESSION_GET: &str = "GET /api/session";
pub const ROUTE_SESSION_DELETE: &str = "DELETE /api/session";
pub const ROUTE_TASK_GET: &str = "GET /api/cis/tasks/{task}";
pub const ROUTE_TASK_LIST: &str = "POST /api/cis/tasks?action=list";
pub const ROUTE_TASK_CANCEL: &str = "POST /api/cis/tasks/{task}?action=cancel";
/// Requests that match no route above (including unknown `action` values).
pub const ROUTE_OTHER: &str = "OTHER";

/// RUNNING for 50 minutes, 1 % per 30 s, not cancelable; then SUCCEEDED.
pub const DEMO_RUNNING_TASK: &str = "52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d11";
/// RUNNING and cancelable for six hours unless cancelled.
pub const DEMO_CANCELABLE_TASK: &str = "52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d12";
/// SUCCEEDED an hour ago, with a result (`"vm-2002"`).
pub const DEMO_SUCCEEDED_TASK: &str = "5eed0000-0000-4000-8000-000000000002";
/// FAILED 40 minutes ago with a two-message error stack.
pub const DEMO_FAILED_TASK: &str = "5eed0000-0000-4000-8000-000000000010";
/// BLOCKED indefinitely (at 30 %).
pub const DEMO_BLOCKED_TASK: &str = "5eed0000-0000-4000-8000-000000000020";
/// PENDING for the first five minutes, then runs and succeeds.
pub const DEMO_PENDING_TASK: &str = "5eed0000-0000-4000-8000-000000000030";

const SVC_VM: &str = "com.vmware.vcenter.VM";
const SVC_HARDWARE: &str = "com.vmware.vcenter.vm.hardware";
const SVC_LIBRARY_ITEM: &str = "com.vmware.content.library.item";

/// Every service id used by the seeded tasks (listing on vSphere needs a services filter).
pub const DEMO_SERVICES: &[&str] = &[SVC_VM, SVC_HARDWARE, SVC_LIBRARY_ITEM];

/// Request bodies larger than this are refused.
const BODY_LIMIT: usize = 1 << 20;
/// Message-id prefix of this service's errors.
const MSG_PREFIX: &str = "com.vmware.api.cis.tasks";

/// The running simulated vCenter. Cheap to clone; it stops when the last clone is dropped.
/// The operational surface (`url`, `requests`, `inject`, `logins` = successful
/// `POST /api/session` calls, ...) comes from [`SimHandle`].
#[derive(Clone)]
pub struct VcenterSim {
    handle: SimHandle,
    shared: Arc<Shared>,
}

struct Shared {
    core: Arc<SimCore>,
    tasks: TaskStore,
}

impl VcenterSim {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start(opts: &SimOptions) -> std::io::Result<VcenterSim> {
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
        let handle = SimHandle::start(core, router, opts.tls, "vCenter").await?;
        Ok(VcenterSim { handle, shared })
    }

    pub fn tasks(&self) -> &TaskStore {
        &self.shared.tasks
    }
}

impl Deref for VcenterSim {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for VcenterSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcenterSim")
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
    TaskCancel(String),
    /// A task path with an action this server does not offer.
    BadAction(String),
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
            Route::TaskCancel(_) => ROUTE_TASK_CANCEL,
            Route::BadAction(_) | Route::Unknown => ROUTE_OTHER,
        }
    }
}

fn resolve(method: &Method, path: &str, query: &[(String, String)]) -> Route {
    let action = query
        .iter()
        .rev()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str());
    let path = path.strip_suffix('/').unwrap_or(path);
    if path == "/api/session" {
        return match *method {
            Method::POST => Route::SessionCreate,
            Method::GET => Route::SessionGet,
            Method::DELETE => Route::SessionDelete,
            _ => Route::Unknown,
        };
    }
    if path == "/api/cis/tasks" {
        return match (method, action) {
            (&Method::POST, Some("list")) => Route::TaskList,
            (&Method::POST, other) => Route::BadAction(other.unwrap_or("").to_string()),
            _ => Route::Unknown,
        };
    }
    if let Some(segment) = path.strip_prefix("/api/cis/tasks/") {
        if segment.is_empty() || segment.contains('/') {
            return Route::Unknown;
        }
        let Some(id) = percent_decode(segment) else {
            return Route::Unknown;
        };
        return match (method, action) {
            (&Method::GET, _) => Route::TaskGet(id),
            (&Method::POST, Some("cancel")) => Route::TaskCancel(id),
            (&Method::POST, other) => Route::BadAction(other.unwrap_or("").to_string()),
            _ => Route::Unknown,
        };
    }
    Route::Unknown
}

async fn handle(State(st): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let method = req.method().clone();
    let query = query_pairs(req.uri());
    let route = resolve(&method, req.uri().path(), &query);
    let key = route.key();
    tracing::debug!(route = key, "vcenter sim request");
    // Counted before anything can fail, so tests can count polls even of refused calls.
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
                Route::TaskGet(id) => task_get(&st, &id, &query),
                Route::TaskCancel(id) => task_cancel(&st, &id),
                Route::TaskList => {
                    let bytes = match axum::body::to_bytes(req.into_body(), BODY_LIMIT).await {
                        Ok(b) => b,
                        Err(_) => {
                            return vapi::invalid_argument("The request body could not be read.");
                        }
                    };
                    task_list(&st, &bytes)
                }
                Route::BadAction(action) => vapi::invalid_argument(&format!(
                    "Unsupported value '{action}' for the 'action' query parameter."
                )),
                Route::SessionCreate | Route::Unknown => vapi::internal_routing_error(),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

fn task_get(st: &Shared, id: &str, query: &[(String, String)]) -> Response {
    let mut spec = GetSpec::default();
    for (k, v) in query {
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
    match st.tasks.snapshot(id) {
        Some(snap) => json_resp(StatusCode::OK, &vapi::task_info(&snap, spec)),
        None => vapi::not_found(id, &format!("{MSG_PREFIX}.not_found")),
    }
}

fn task_cancel(st: &Shared, id: &str) -> Response {
    use super::tasks::CancelRefusal;
    match st.tasks.cancel(id) {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(CancelRefusal::NotFound) => vapi::not_found(id, &format!("{MSG_PREFIX}.not_found")),
        Err(CancelRefusal::Finished) => vapi::error(
            StatusCode::BAD_REQUEST,
            "NOT_ALLOWED_IN_CURRENT_STATE",
            "com.vmware.api.cis.tasks.cancel.not_allowed_in_current_state",
            &format!("Task {id} has already completed or been canceled."),
            &[id],
        ),
        Err(CancelRefusal::NotCancelable) => vapi::error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "com.vmware.api.cis.tasks.cancel.unsupported",
            &format!("Task {id} cannot be canceled."),
            &[id],
        ),
    }
}

/// A parsed `Cis.Tasks.FilterSpec`: `None` = field absent (matches everything).
fn task_list(st: &Shared, body: &[u8]) -> Response {
    let (filter, spec) = match parse_list_body(body) {
        Ok(v) => v,
        Err(msg) => return vapi::invalid_argument(&msg),
    };
    let matched = match vapi::select(
        &st.tasks,
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

// ---------------------------------------------------------------------------------------------
// Seed data

/// Id of seeded task number `n` (`5eed0000-0000-4000-8000-0000000000nn`).
pub fn seed_task_id(n: u32) -> String {
    format!("5eed0000-0000-4000-8000-{n:012}")
}

const ADMIN: &str = "VSPHERE.LOCAL\\Administrator";
const BACKUP: &str = "VSPHERE.LOCAL\\svc-backup";

/// Seeds the demo mix: ids are fixed so docs and the demo can name them.
fn seed_demo_tasks(store: &TaskStore) {
    let vm = |n: u32, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_VM, op, desc, steps)
            .with_id(&seed_task_id(n))
            .with_user(ADMIN)
    };
    let hw = |n: u32, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_HARDWARE, op, desc, steps)
            .with_id(&seed_task_id(n))
            .with_user(ADMIN)
    };
    let lib = |n: u32, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_LIBRARY_ITEM, op, desc, steps)
            .with_id(&seed_task_id(n))
            .with_user(BACKUP)
    };
    let specs = vec![
        // The two demo tasks.
        TaskSpec::new(
            SVC_VM,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(mins(50), succeeded(Some(json!("vm-2050")))),
            ],
        )
        .with_id(DEMO_RUNNING_TASK)
        .with_target("VirtualMachine", "vm-1021")
        .with_user(ADMIN),
        TaskSpec::new(
            SVC_VM,
            "relocate",
            "Relocate virtual machine",
            vec![at(secs(0), running(2, 98)), at(mins(360), succeeded(None))],
        )
        .with_id(DEMO_CANCELABLE_TASK)
        .with_target("VirtualMachine", "vm-1022")
        .with_user(ADMIN)
        .cancelable(),
        // Finished SUCCEEDED, some with a result.
        vm(
            1,
            "create",
            "Create virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(95), succeeded(Some(json!("vm-2001")))),
            ],
        )
        .with_target("Folder", "group-v4")
        .aged(mins(120)),
        vm(
            2,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(3), running(0, 100)),
                at(secs(240), succeeded(Some(json!("vm-2002")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1001")
        .aged(mins(60)),
        hw(
            3,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), running(0, 100)), at(secs(20), succeeded(None))],
        )
        .with_target("VirtualMachine", "vm-1002")
        .aged(mins(45)),
        lib(
            4,
            "copy",
            "Copy library item",
            vec![
                at(secs(0), running(0, 100)),
                at(
                    secs(300),
                    succeeded(Some(json!("b1d7c1e0-4a8d-4c6e-9a43-1f0b1c2d3e4f"))),
                ),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-17")
        .aged(mins(30)),
        lib(
            5,
            "publish",
            "Publish library item",
            vec![at(secs(0), running(0, 100)), at(secs(12), succeeded(None))],
        )
        .with_target("com.vmware.content.library.Item", "item-18")
        .aged(mins(10)),
        // System-started, no user and no target.
        TaskSpec::new(
            SVC_LIBRARY_ITEM,
            "sync",
            "Synchronize subscribed library item",
            vec![
                at(secs(0), running(0, 100)),
                at(
                    secs(40),
                    succeeded(Some(json!({"synced": true, "files": 3}))),
                ),
            ],
        )
        .with_id(&seed_task_id(6))
        .aged(mins(5)),
        // Finished FAILED, each with a two-message stack.
        vm(
            10,
            "relocate",
            "Relocate virtual machine",
            vec![
                at(secs(0), running(0, 60)),
                at(
                    secs(80),
                    failed(
                        "RESOURCE_INACCESSIBLE",
                        "The virtual machine could not be relocated.",
                    ),
                ),
            ],
        )
        .with_target("VirtualMachine", "vm-1003")
        .with_error_cause(
            "com.vmware.vcenter.datastore.inaccessible",
            "Datastore datastore-12 is not accessible from host host-31.",
        )
        .aged(mins(40)),
        hw(
            11,
            "upgrade",
            "Upgrade virtual hardware",
            vec![
                at(secs(0), running(0, 10)),
                at(
                    secs(2),
                    failed(
                        "NOT_ALLOWED_IN_CURRENT_STATE",
                        "The virtual hardware could not be upgraded.",
                    ),
                ),
            ],
        )
        .with_target("VirtualMachine", "vm-1004")
        .with_error_cause("com.vmware.vcenter.vm.powered_on", "The VM is powered on.")
        .aged(mins(25)),
        lib(
            12,
            "copy",
            "Copy library item",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(5), running(0, 80)),
                at(
                    secs(65),
                    failed(
                        "UNABLE_TO_ALLOCATE_RESOURCE",
                        "The library item could not be copied.",
                    ),
                ),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-19")
        .with_error_cause(
            "com.vmware.content.storage.full",
            "Not enough free space on the library's storage backing.",
        )
        .aged(mins(15)),
        // Already cancelled earlier (FAILED / CANCELED).
        vm(
            13,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(30), failed("CANCELED", super::tasks::CANCELED_MESSAGE)),
            ],
        )
        .with_target("VirtualMachine", "vm-1005")
        .with_error_cause(
            "com.vmware.vcenter.VM.clone.rollback",
            "The partially created clone was removed.",
        )
        .aged(mins(20)),
        // Lifecycles that play out within a minute after start.
        vm(
            14,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(5), running(0, 100)),
                at(secs(35), succeeded(Some(json!("vm-2014")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1006"),
        hw(
            15,
            "upgrade",
            "Upgrade virtual hardware",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(10), running(0, 60)),
                at(
                    secs(40),
                    failed(
                        "INVALID_ARGUMENT",
                        "The requested hardware version is not supported.",
                    ),
                ),
            ],
        )
        .with_target("VirtualMachine", "vm-1007")
        .with_error_cause(
            "com.vmware.vcenter.vm.hardware.version.unsupported",
            "Host host-31 does not support hardware version vmx-99.",
        ),
        lib(
            16,
            "update",
            "Update library item",
            vec![at(secs(0), running(0, 100)), at(secs(20), succeeded(None))],
        )
        .with_target("com.vmware.content.library.Item", "item-20")
        .cancelable(),
        vm(
            17,
            "create",
            "Create virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(15), running(0, 50)),
                at(secs(30), Phase::Blocked),
                at(secs(45), running(50, 100)),
                at(secs(60), succeeded(Some(json!("vm-2017")))),
            ],
        )
        .with_target("Folder", "group-v4")
        .cancelable(),
        // BLOCKED indefinitely.
        hw(
            20,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), running(0, 30)), at(secs(60), Phase::Blocked)],
        )
        .with_target("VirtualMachine", "vm-1008")
        .aged(mins(10)),
        // Not yet started: PENDING for minutes, then run.
        vm(
            30,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(5), running(0, 100)),
                at(mins(7), succeeded(Some(json!("vm-2030")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1009")
        .cancelable(),
        lib(
            31,
            "publish",
            "Publish library item",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(2), running(0, 100)),
                at(mins(3), succeeded(None)),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-21"),
        hw(
            32,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), Phase::Pending), at(mins(20), running(0, 100))],
        )
        .with_target("VirtualMachine", "vm-1010")
        .cancelable()
        .aged(mins(1)),
        // Cancelable long runners, at different points of their run.
        vm(
            40,
            "relocate",
            "Relocate virtual machine",
            vec![at(secs(0), running(0, 100)), at(mins(120), succeeded(None))],
        )
        .with_target("VirtualMachine", "vm-1011")
        .cancelable()
        .aged(mins(30)),
        lib(
            41,
            "copy",
            "Copy library item",
            vec![
                at(secs(0), running(0, 100)),
                at(
                    mins(90),
                    succeeded(Some(json!("c2e8d2f1-5b9e-4d7f-8b54-2a1c2d3e4f50"))),
                ),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-22")
        .cancelable()
        .aged(mins(60)),
        vm(
            42,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(mins(30), succeeded(Some(json!("vm-2042")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1012")
        .cancelable()
        .aged(mins(3)),
        // Not cancelable, running, and a child of the demo running task.
        hw(
            43,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), running(0, 100)), at(mins(40), succeeded(None))],
        )
        .with_target("VirtualMachine", "vm-1021")
        .with_parent(DEMO_RUNNING_TASK),
        // Another system task, still running.
        TaskSpec::new(
            SVC_LIBRARY_ITEM,
            "sync",
            "Synchronize subscribed library item",
            vec![at(secs(0), running(0, 100)), at(mins(15), succeeded(None))],
        )
        .with_id(&seed_task_id(44))
        .with_target("com.vmware.content.library.Item", "item-23")
        .aged(mins(2)),
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
    fn seeded_tasks_cover_every_status_and_only_declared_services() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock);
        seed_demo_tasks(&store);
        let snaps = store.snapshots();
        assert!((25..=40).contains(&snaps.len()), "{} tasks", snaps.len());
        for status in [
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Blocked,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
        ] {
            assert!(snaps.iter().any(|s| s.status == status), "{status:?}");
        }
        assert!(
            snaps
                .iter()
                .all(|s| DEMO_SERVICES.contains(&s.service.as_str()))
        );
        let status = |id: &str| store.snapshot(id).map(|s| s.status);
        assert_eq!(status(DEMO_RUNNING_TASK), Some(TaskStatus::Running));
        assert_eq!(status(DEMO_CANCELABLE_TASK), Some(TaskStatus::Running));
        assert_eq!(status(DEMO_SUCCEEDED_TASK), Some(TaskStatus::Succeeded));
        assert_eq!(status(DEMO_FAILED_TASK), Some(TaskStatus::Failed));
        assert_eq!(status(DEMO_BLOCKED_TASK), Some(TaskStatus::Blocked));
        assert_eq!(status(DEMO_PENDING_TASK), Some(TaskStatus::Pending));
    }

    #[test]
    fn routes_resolve_by_method_path_and_action() {
        let q = |a: &str| vec![("action".to_string(), a.to_string())];
        assert_eq!(
            resolve(&Method::POST, "/api/cis/tasks", &q("list")).key(),
            ROUTE_TASK_LIST
        );
        assert!(matches!(
            resolve(&Method::GET, "/api/cis/tasks/a%2Fb", &[]),
            Route::TaskGet(id) if id == "a/b"
        ));
        assert_eq!(
            resolve(&Method::POST, "/api/cis/tasks/x", &q("cancel")).key(),
            ROUTE_TASK_CANCEL
        );
        assert!(matches!(
            resolve(&Method::POST, "/api/cis/tasks/x", &q("frobnicate")),
            Route::BadAction(_)
        ));
        assert_eq!(
            resolve(&Method::GET, "/api/cis/tasks", &[]).key(),
            ROUTE_OTHER
        );
    }
}
