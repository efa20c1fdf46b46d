//! The other upstream kinds end to end: snapshot-service tasks and Script Runtime Service
//! runspaces, each through its own login flow and error format, against the simulator.

mod common;

use std::{collections::HashSet, time::Duration};

use common::*;
use tonic::{Code, Status};
use vmware_grpc_gateway::{
    config::{CloudDirectorConfig, Secret, UpstreamConfig},
    proto::{
        CreateRunspaceRequest, DeleteRunspaceRequest, ListRunspacesRequest, ListRunspacesResponse,
        ListTasksRequest, ListUpstreamsRequest, Runspace, RunspaceState, TaskFilter, TaskState,
        UpstreamKind,
    },
    simulator::{
        Fault, Phase, SimHandle, Simulator, Step, TaskSpec, cloud_director, script_runtime,
    },
};

const PG: &str = "com.vmware.snapservice.clusters.protection_groups";

/// A Cloud Director task id no task has.
const UNKNOWN_VCD_TASK: &str = "00000000-0000-4000-8000-000000000000";

/// Every simulated upstream (vc1, snap1, srs1), as the demo wires them, on a manual clock.
async fn all_upstreams() -> Env {
    Env::start_all().await
}

/// Only `vcd1` of the demo upstreams, changed by `tweak`.
async fn cloud_director_only(tweak: impl FnOnce(&mut UpstreamConfig, &Simulator)) -> Env {
    Env::start_full(sim_options(), |cfg, sim| {
        let mut up = vmware_grpc_gateway::demo::upstreams(sim, None);
        up.retain(|u| u.name == "vcd1");
        tweak(&mut up[0], sim);
        cfg.upstreams = up;
    })
    .await
}

fn vcd(up: &mut UpstreamConfig) -> &mut CloudDirectorConfig {
    up.cloud_director_mut().expect("vcd1 is Cloud Director")
}

/// Adds a protection-group task to the simulated snapshot service; returns its gateway name.
fn add_snap_task(env: &Env, operation: &str, steps: Vec<Step>) -> String {
    let spec = TaskSpec::new(PG, operation, "Protection group task", steps);
    snap_task(env, spec)
}

fn snap_task(env: &Env, spec: TaskSpec) -> String {
    let id = env.sim.snapservice.tasks().add(spec);
    format!("upstreams/snap1/tasks/{id}")
}

fn pending() -> Vec<Step> {
    vec![Step::new(Duration::ZERO, Phase::Pending)]
}

/// Reads `name` through a session expiry at `part`: the first read logs in, the second meets
/// the expired session and costs exactly one fresh login.
async fn read_across_session_expiry(env: &Env, part: &SimHandle, name: &str) {
    env.get_task(name).await.unwrap();
    assert_eq!(part.logins(), 1, "the first read logs in");
    part.expire_sessions();
    env.get_task(name).await.unwrap();
    assert_eq!(part.logins(), 2, "one fresh login");
}

/// Lets the simulated Script Runtime Service finish creating its runspaces.
fn runspaces_settle(env: &Env) {
    let srs = &env.sim.script_runtime;
    srs.clock().advance(Duration::from_secs(10));
}

async fn list_runspaces(env: &Env, parent: &str) -> Result<ListRunspacesResponse, Status> {
    let req = ListRunspacesRequest {
        parent: parent.into(),
        ..Default::default()
    };
    answer(env.runspaces().list_runspaces(req)).await
}

async fn delete_runspace(env: &Env, name: &str) -> Result<(), Status> {
    let req = DeleteRunspaceRequest { name: name.into() };
    answer(env.runspaces().delete_runspace(req)).await
}

/// A 200 answer whose body breaks the documented shape.
fn ok_with_body(body: &str) -> Fault {
    Fault::Status {
        status: 200,
        body: body.into(),
    }
}

#[tokio::test]
async fn list_upstreams_shows_each_kind() {
    let env = all_upstreams().await;
    let list = env.list_upstreams(ListUpstreamsRequest::default()).await;
    let kinds: Vec<(String, UpstreamKind)> = list
        .unwrap()
        .upstreams
        .iter()
        .map(|u| (u.name.clone(), u.kind()))
        .collect();
    for expected in [
        ("upstreams/snap1", UpstreamKind::Snapservice),
        ("upstreams/srs1", UpstreamKind::ScriptRuntime),
        ("upstreams/vc1", UpstreamKind::Vsphere),
    ] {
        let expected = (expected.0.to_string(), expected.1);
        assert!(kinds.contains(&expected), "{kinds:?}");
    }
}

#[tokio::test]
async fn snapservice_tasks_get_and_list_with_their_vcenter_task() {
    let env = all_upstreams().await;
    let create = TaskSpec::new(
        PG,
        "create",
        "Create protection group",
        run_then_succeed(60),
    );
    let name = snap_task(&env, create.with_vc_task("task-88231"));
    for _ in 0..4 {
        add_snap_task(&env, "update", pending());
    }
    let task = env.get_task(&name).await.unwrap();
    assert_eq!(task.kind(), UpstreamKind::Snapservice);
    assert_eq!(task.state(), TaskState::Running);
    assert_eq!(task.vcenter_tasks[0].id, "task-88231");
    let filter = TaskFilter {
        services: vec![PG.into()],
        ..Default::default()
    };
    let all = ListTasksRequest {
        parent: "upstreams/snap1".into(),
        filter: Some(filter),
        page_size: 2,
        ..Default::default()
    };
    let pages = env.list_pages(all).await;
    assert_eq!(pages.iter().map(|p| p.tasks.len()).sum::<usize>(), 5);
    let unfiltered = ListTasksRequest {
        parent: "upstreams/snap1".into(),
        ..Default::default()
    };
    let unfiltered = env.list_tasks(unfiltered).await;
    expect_error(unfiltered, Code::InvalidArgument, "INVALID_FILTER");
}

#[tokio::test]
async fn snapservice_cancel_is_unimplemented_naming_the_kind_whatever_the_state() {
    let env = all_upstreams().await;
    let done = vec![Step::new(Duration::ZERO, Phase::Succeeded { result: None })];
    let name = add_snap_task(&env, "create", done);
    let cancelled = env.cancel_task(&name).await;
    let (err, _) = expect_error(cancelled, Code::Unimplemented, "NOT_SUPPORTED_BY_UPSTREAM");
    assert!(
        err.message().contains("UPSTREAM_KIND_SNAPSERVICE"),
        "{}",
        err.message()
    );
    let snap = &env.sim.snapservice;
    let reads = snap.requests("GET /api/snapservice/tasks/{task}");
    assert_eq!(reads, 0, "refused before reading");
}

#[tokio::test]
async fn snapservice_session_expiry_costs_one_fresh_login() {
    let env = all_upstreams().await;
    let name = add_snap_task(&env, "create", pending());
    read_across_session_expiry(&env, &env.sim.snapservice, &name).await;
}

#[tokio::test]
async fn a_runspace_is_created_becomes_ready_is_listed_and_deleted() {
    let env = all_upstreams().await;
    let made = env.create_runspace("upstreams/srs1", "nightly", "").await;
    let made = made.unwrap();
    assert_eq!(made.state(), RunspaceState::Creating);
    assert_eq!(made.display_name, "nightly");
    assert!(made.name.starts_with("upstreams/srs1/runspaces/"));
    assert!(made.create_time.is_some());
    runspaces_settle(&env);
    let ready = env.get_runspace(&made.name).await.unwrap();
    assert_eq!(ready.state(), RunspaceState::Ready);
    let list = list_runspaces(&env, "upstreams/srs1").await.unwrap();
    assert!(list.runspaces.iter().any(|x| x.name == made.name));
    delete_runspace(&env, &made.name).await.unwrap();
    let gone = env.get_runspace(&made.name).await;
    let (_, info) = expect_error(gone, Code::NotFound, "NOT_FOUND");
    assert_eq!(info.metadata["httpStatus"], "404");
    assert_eq!(info.metadata["upstreamReason"], "SRS_2030");
    // SRS answers 500/2040 for an unknown id; the gateway tells it apart from a real failure.
    let deleted_again = delete_runspace(&env, &made.name).await;
    let (_, info) = expect_error(deleted_again, Code::NotFound, "NOT_FOUND");
    let reason = &info.metadata["upstreamReason"];
    assert_eq!(reason, "SRS_2030", "the confirming read");
}

#[tokio::test]
async fn a_retried_create_with_the_same_request_id_makes_one_runspace() {
    let env = all_upstreams().await;
    let first = env.create_runspace("upstreams/srs1", "once", "req-1").await;
    let again = env.create_runspace("upstreams/srs1", "once", "req-1").await;
    assert_eq!(first.unwrap().id, again.unwrap().id);
    assert_eq!(env.sim.script_runtime.runspaces_created(), 1);
    let other = env
        .create_runspace("upstreams/srs1", "other", "req-1")
        .await;
    expect_error(other, Code::InvalidArgument, "REQUEST_ID_REUSED");
    // Concurrent retries also create once.
    let calls = (0..5).map(|_| env.create_runspace("upstreams/srs1", "burst", "req-2"));
    let ids: HashSet<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|x| x.unwrap().id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(env.sim.script_runtime.runspaces_created(), 2);
}

#[tokio::test]
async fn a_create_whose_caller_gives_up_still_finishes_and_its_retry_finds_it() {
    let env = all_upstreams().await;
    env.create_runspace("upstreams/srs1", "warm-up", "")
        .await
        .unwrap(); // logged in
    let created = env.sim.script_runtime.runspaces_created();
    env.sim.script_runtime.inject(
        script_runtime::ROUTE_RUNSPACE_CREATE,
        Fault::DelayAfter(Duration::from_millis(800)),
    );
    let mut req = tonic::IntoRequest::into_request(CreateRunspaceRequest {
        parent: "upstreams/srs1".into(),
        runspace: Some(Runspace {
            display_name: "slow".into(),
            ..Default::default()
        }),
        request_id: "req-slow".into(),
    });
    req.set_timeout(Duration::from_millis(300));
    let err = env.runspaces().create_runspace(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // The retry joins the create that went on without its caller.
    let again = env
        .create_runspace("upstreams/srs1", "slow", "req-slow")
        .await;
    assert_eq!(again.unwrap().display_name, "slow");
    assert_eq!(env.sim.script_runtime.runspaces_created(), created + 1);
}

#[tokio::test]
async fn a_runspace_that_fails_shows_its_error_details() {
    let env = all_upstreams().await;
    let made = env
        .create_runspace("upstreams/-", "fail-on-purpose", "")
        .await;
    runspaces_settle(&env);
    let failed = env.get_runspace(&made.unwrap().name).await.unwrap();
    assert_eq!(failed.state(), RunspaceState::Error);
    let e = failed.error.expect("error details");
    assert!(e.code != 0 && !e.message.is_empty());
}

#[tokio::test]
async fn srs_session_expiry_costs_one_fresh_login_and_bad_names_are_refused() {
    let env = all_upstreams().await;
    list_runspaces(&env, "upstreams/srs1").await.unwrap();
    env.sim.script_runtime.expire_sessions();
    list_runspaces(&env, "upstreams/srs1").await.unwrap();
    assert_eq!(env.sim.script_runtime.logins(), 2);
    for (name, reason) in [
        ("upstreams/srs1/tasks/x", "INVALID_NAME"),
        ("upstreams/vc1/runspaces/x", "WRONG_UPSTREAM_KIND"),
    ] {
        let got = env.get_runspace(name).await;
        expect_error(got, Code::InvalidArgument, reason);
    }
}

fn vcd_running(secs: u64) -> TaskSpec {
    let description = "Starting Virtual Application web-01";
    TaskSpec::new(
        "com.vmware.vcloud",
        "vappDeploy",
        description,
        run_then_succeed(secs),
    )
}

/// Adds a task to the simulated Cloud Director; returns its id.
fn add_vcd_task(env: &Env, spec: TaskSpec) -> String {
    env.sim.cloud_director.tasks().add(spec)
}

fn vcd_list(filter: Option<TaskFilter>, page_size: i32) -> ListTasksRequest {
    ListTasksRequest {
        parent: "upstreams/vcd1".into(),
        filter,
        page_size,
        ..Default::default()
    }
}

#[tokio::test]
async fn cloud_director_tasks_get_by_uuid_or_urn_and_list_paged() {
    let env = all_upstreams().await;
    let id = add_vcd_task(&env, vcd_running(600));
    for _ in 0..6 {
        add_vcd_task(&env, vcd_running(600));
    }
    let bare = env.get_task(&format!("upstreams/vcd1/tasks/{id}")).await;
    let bare = bare.unwrap();
    assert_eq!(bare.kind(), UpstreamKind::CloudDirector);
    assert_eq!(bare.state(), TaskState::Running);
    assert_eq!(bare.id, id);
    assert!(bare.start_time.is_some(), "the +0200 offset parses");
    let urn = format!("upstreams/vcd1/tasks/urn:vcloud:task:{id}");
    let urn = env.get_task(&urn).await.unwrap();
    let normalized = format!("upstreams/vcd1/tasks/{id}");
    assert_eq!(urn.name, normalized, "URN input is normalized");
    let pages = env.list_pages(vcd_list(None, 3)).await;
    let seen: HashSet<String> = pages
        .into_iter()
        .flat_map(|p| p.tasks.into_iter().map(|t| t.name))
        .collect();
    assert_eq!(seen.len(), 7);
    assert!(env.sim.cloud_director.requests("GET /api/query") >= 1);
    let by_user = TaskFilter {
        users: vec!["bob".into()],
        ..Default::default()
    };
    let by_user = env.list_tasks(vcd_list(Some(by_user), 0)).await;
    expect_error(by_user, Code::InvalidArgument, "INVALID_FILTER");
}

#[tokio::test]
async fn a_cloud_director_target_is_the_same_urn_in_lists_and_gets() {
    let env = all_upstreams().await;
    let vapp = "vapp-77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70";
    let id = add_vcd_task(&env, vcd_running(600).with_target("vApp", vapp));
    let got = env.get_task(&format!("upstreams/vcd1/tasks/{id}")).await;
    let got = got.unwrap().target.expect("GetTask names the owner");
    assert_eq!(
        got.id,
        "urn:vcloud:vapp:77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70"
    );
    let listed = env.list_tasks(vcd_list(None, 0)).await.unwrap();
    let listed = listed
        .tasks
        .into_iter()
        .find(|t| t.id == id)
        .expect("listed");
    let listed = listed.target.expect("the record names the object");
    assert_eq!(listed.id, got.id, "one shape for one task in every RPC");
    assert_eq!(listed.r#type, got.r#type);
    assert_eq!(listed.name, got.name);
}

#[tokio::test]
async fn cloud_director_cancel_shows_cancel_requested_then_ends_cancelled() {
    let env = all_upstreams().await;
    let id = add_vcd_task(&env, vcd_running(3600).cancelable());
    let name = format!("upstreams/vcd1/tasks/{id}");
    let after = env.cancel_task(&name).await.unwrap();
    assert!(
        after.cancel_requested || after.state() == TaskState::Cancelled,
        "{after:?}"
    );
    let vcd_clock = env.sim.cloud_director.clock();
    vcd_clock.advance(Duration::from_secs(5));
    let done = env.get_task(&name).await.unwrap();
    assert_eq!(done.state(), TaskState::Cancelled);
    assert!(done.done);
    let again = env.cancel_task(&name).await;
    expect_error(again, Code::FailedPrecondition, "TASK_DONE");
}

#[tokio::test]
async fn cloud_director_logs_in_with_an_api_token_and_re_logs_in_once_on_expiry() {
    let env = cloud_director_only(|up, sim| {
        up.password = Secret::default();
        vcd(up).api_token = Secret::new(sim.cloud_director.api_token());
    })
    .await;
    let id = add_vcd_task(&env, vcd_running(600));
    let name = format!("upstreams/vcd1/tasks/{id}");
    let vcd = &env.sim.cloud_director;
    env.get_task(&name).await.unwrap();
    assert_eq!(vcd.requests("POST /oauth/tenant/{org}/token"), 1);
    assert_eq!(vcd.requests("POST /cloudapi/1.0.0/sessions"), 0);
    vcd.expire_sessions();
    env.get_task(&name).await.unwrap();
    assert_eq!(vcd.logins(), 2);
}

#[tokio::test]
async fn cloud_director_errors_use_the_minor_error_code() {
    let env = all_upstreams().await;
    let name = format!("upstreams/vcd1/tasks/{UNKNOWN_VCD_TASK}");
    let got = env.get_task(&name).await;
    // The simulator answers 403 ACCESS_TO_RESOURCE_IS_FORBIDDEN for unknown tasks, as real
    // Cloud Director commonly does; the table maps it to PERMISSION_DENIED.
    let (_, info) = expect_error(got, Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED");
    let reason = &info.metadata["upstreamReason"];
    assert_eq!(reason, "ACCESS_TO_RESOURCE_IS_FORBIDDEN");
    let not_found = cloud_director::resource_not_found_fault(UNKNOWN_VCD_TASK);
    env.sim
        .cloud_director
        .inject("GET /api/task/{task}", not_found);
    let got = env.get_task(&name).await;
    let (_, info) = expect_error(got, Code::NotFound, "NOT_FOUND");
    assert_eq!(info.metadata["upstreamReason"], "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn cloud_director_provider_login_lists_admin_tasks_and_re_logs_in_once() {
    let env = cloud_director_only(|up, _| {
        vcd(up).org = None;
        vcd(up).provider = true;
    })
    .await;
    add_vcd_task(&env, vcd_running(600));
    let provider_logins = || {
        let vcd = &env.sim.cloud_director;
        vcd.requests("POST /cloudapi/1.0.0/sessions/provider")
    };
    let list = env.list_tasks(vcd_list(None, 0)).await.unwrap();
    assert!(!list.tasks.is_empty());
    assert_eq!(provider_logins(), 1);
    env.sim.cloud_director.expire_sessions();
    env.list_tasks(vcd_list(None, 0)).await.unwrap();
    assert_eq!(provider_logins(), 2, "one fresh login");
}

#[tokio::test]
async fn upstream_bodies_that_break_the_documented_shape_are_internal() {
    let env = all_upstreams().await;
    let not_an_array = ok_with_body(r#"{"not": "an array"}"#);
    env.sim
        .script_runtime
        .inject("GET /api/runspaces", not_an_array);
    let listed = list_runspaces(&env, "upstreams/srs1").await;
    let (_, info) = expect_error(listed, Code::Internal, "UPSTREAM_BAD_RESPONSE");
    assert_eq!(info.metadata["upstream"], "srs1");
    let bad_time = ok_with_body(
        r#"{"id": "urn:vcloud:task:x", "status": "running", "startTime": "not a time"}"#,
    );
    env.sim
        .cloud_director
        .inject("GET /api/task/{task}", bad_time);
    let got = env.get_task("upstreams/vcd1/tasks/x").await;
    expect_error(got, Code::Internal, "UPSTREAM_BAD_RESPONSE");
}
