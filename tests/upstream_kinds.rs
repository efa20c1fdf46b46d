//! The other upstream kinds end to end: snapshot-service tasks and Script Runtime Service
//! runspaces, each through its own login flow and error format, against the simulator.

mod common;

use std::time::Duration;

use common::*;
use tonic::{Code, transport::Channel};
use vmware_grpc_gateway::{
    proto::{
        CancelTaskRequest, CreateRunspaceRequest, DeleteRunspaceRequest, GetRunspaceRequest,
        GetTaskRequest, ListRunspacesRequest, ListTasksRequest, ListUpstreamsRequest, Runspace,
        RunspaceState, TaskFilter, TaskState, UpstreamKind,
        runspace_service_client::RunspaceServiceClient,
    },
    simulator::{Phase, Step, TaskSpec},
};

const PG: &str = "com.vmware.snapservice.clusters.protection_groups";

/// Every simulated upstream (vc1, snap1, srs1), as the demo wires them, on a manual clock.
async fn all_upstreams() -> Env {
    Env::start_all().await
}

fn runspaces(env: &Env) -> RunspaceServiceClient<Channel> {
    RunspaceServiceClient::new(env.channel.clone())
}

fn create(parent: &str, display_name: &str, request_id: &str) -> CreateRunspaceRequest {
    CreateRunspaceRequest {
        parent: parent.into(),
        runspace: Some(Runspace {
            display_name: display_name.into(),
            ..Default::default()
        }),
        request_id: request_id.into(),
    }
}

#[tokio::test]
async fn list_upstreams_shows_each_kind() {
    let env = all_upstreams().await;
    let list = env
        .upstreams()
        .list_upstreams(ListUpstreamsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<(String, UpstreamKind)> = list
        .upstreams
        .iter()
        .map(|u| (u.name.clone(), u.kind()))
        .collect();
    assert!(
        kinds.contains(&("upstreams/snap1".into(), UpstreamKind::Snapservice)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("upstreams/srs1".into(), UpstreamKind::ScriptRuntime)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("upstreams/vc1".into(), UpstreamKind::Vsphere)),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn snapservice_tasks_get_and_list_with_their_vcenter_task() {
    let env = all_upstreams().await;
    let id = env.sim.snapservice.tasks().add(
        TaskSpec::new(
            PG,
            "create",
            "Create protection group",
            vec![
                Step::new(Duration::ZERO, Phase::Running { from: 0, to: 100 }),
                Step::new(Duration::from_secs(60), Phase::Succeeded { result: None }),
            ],
        )
        .with_vc_task("task-88231"),
    );
    for _ in 0..4 {
        env.sim.snapservice.tasks().add(TaskSpec::new(
            PG,
            "update",
            "Update",
            vec![Step::new(Duration::ZERO, Phase::Pending)],
        ));
    }
    let mut c = env.tasks();
    let name = format!("upstreams/snap1/tasks/{id}");
    let task = c
        .get_task(GetTaskRequest {
            name: name.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.kind(), UpstreamKind::Snapservice);
    assert_eq!(task.state(), TaskState::Running);
    assert_eq!(task.vcenter_tasks[0].id, "task-88231");
    let filter = TaskFilter {
        services: vec![PG.into()],
        ..Default::default()
    };
    let (mut token, mut seen) = (String::new(), 0);
    loop {
        let page = c
            .list_tasks(ListTasksRequest {
                parent: "upstreams/snap1".into(),
                filter: Some(filter.clone()),
                page_size: 2,
                page_token: token,
                view: 0,
            })
            .await
            .unwrap()
            .into_inner();
        seen += page.tasks.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, 5);
    let err = c
        .list_tasks(ListTasksRequest {
            parent: "upstreams/snap1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_FILTER");
}

#[tokio::test]
async fn snapservice_cancel_is_unimplemented_naming_the_kind_whatever_the_state() {
    let env = all_upstreams().await;
    let id = env.sim.snapservice.tasks().add(TaskSpec::new(
        PG,
        "create",
        "Create",
        vec![Step::new(Duration::ZERO, Phase::Succeeded { result: None })],
    ));
    let err = env
        .tasks()
        .cancel_task(CancelTaskRequest {
            name: format!("upstreams/snap1/tasks/{id}"),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::Unimplemented, "NOT_SUPPORTED_BY_UPSTREAM");
    assert!(
        err.message().contains("UPSTREAM_KIND_SNAPSERVICE"),
        "{}",
        err.message()
    );
    assert_eq!(
        env.sim
            .snapservice
            .requests("GET /api/snapservice/tasks/{task}"),
        0,
        "refused before reading"
    );
}

#[tokio::test]
async fn snapservice_session_expiry_costs_one_fresh_login() {
    let env = all_upstreams().await;
    let id = env.sim.snapservice.tasks().add(TaskSpec::new(
        PG,
        "create",
        "Create",
        vec![Step::new(Duration::ZERO, Phase::Pending)],
    ));
    let name = format!("upstreams/snap1/tasks/{id}");
    let mut c = env.tasks();
    c.get_task(GetTaskRequest {
        name: name.clone(),
        view: 0,
    })
    .await
    .unwrap();
    env.sim.snapservice.expire_sessions();
    c.get_task(GetTaskRequest { name, view: 0 }).await.unwrap();
    assert_eq!(env.sim.snapservice.logins(), 2);
}

#[tokio::test]
async fn a_runspace_is_created_becomes_ready_is_listed_and_deleted() {
    let env = all_upstreams().await;
    let mut r = runspaces(&env);
    let made = r
        .create_runspace(create("upstreams/srs1", "nightly", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.state(), RunspaceState::Creating);
    assert_eq!(made.display_name, "nightly");
    assert!(made.name.starts_with("upstreams/srs1/runspaces/"));
    assert!(made.create_time.is_some());
    env.sim
        .script_runtime
        .clock()
        .advance(Duration::from_secs(10));
    let ready = r
        .get_runspace(GetRunspaceRequest {
            name: made.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ready.state(), RunspaceState::Ready);
    let list = r
        .list_runspaces(ListRunspacesRequest {
            parent: "upstreams/srs1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(list.runspaces.iter().any(|x| x.name == made.name));
    r.delete_runspace(DeleteRunspaceRequest {
        name: made.name.clone(),
    })
    .await
    .unwrap();
    let err = r
        .get_runspace(GetRunspaceRequest {
            name: made.name.clone(),
        })
        .await
        .unwrap_err();
    let info = assert_error(&err, Code::NotFound, "NOT_FOUND");
    assert_eq!(info.metadata["httpStatus"], "404");
    assert_eq!(info.metadata["upstreamReason"], "SRS_2030");
    // SRS answers 500/2040 for an unknown id; the gateway tells it apart from a real failure.
    let err = r
        .delete_runspace(DeleteRunspaceRequest { name: made.name })
        .await
        .unwrap_err();
    let info = assert_error(&err, Code::NotFound, "NOT_FOUND");
    assert_eq!(
        info.metadata["upstreamReason"], "SRS_2030",
        "the confirming read"
    );
}

#[tokio::test]
async fn a_retried_create_with_the_same_request_id_makes_one_runspace() {
    let env = all_upstreams().await;
    let mut r = runspaces(&env);
    let first = r
        .create_runspace(create("upstreams/srs1", "once", "req-1"))
        .await
        .unwrap()
        .into_inner();
    let again = r
        .create_runspace(create("upstreams/srs1", "once", "req-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id);
    assert_eq!(env.sim.script_runtime.runspaces_created(), 1);
    let err = r
        .create_runspace(create("upstreams/srs1", "other", "req-1"))
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED");
    // Concurrent retries also create once.
    let calls = (0..5).map(|_| {
        let mut r = runspaces(&env);
        async move {
            r.create_runspace(create("upstreams/srs1", "burst", "req-2"))
                .await
        }
    });
    let ids: std::collections::HashSet<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|x| x.unwrap().into_inner().id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(env.sim.script_runtime.runspaces_created(), 2);
}

#[tokio::test]
async fn a_runspace_that_fails_shows_its_error_details() {
    let env = all_upstreams().await;
    let mut r = runspaces(&env);
    let made = r
        .create_runspace(create("upstreams/-", "fail-on-purpose", ""))
        .await
        .unwrap()
        .into_inner();
    env.sim
        .script_runtime
        .clock()
        .advance(Duration::from_secs(10));
    let failed = r
        .get_runspace(GetRunspaceRequest { name: made.name })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.state(), RunspaceState::Error);
    let e = failed.error.expect("error details");
    assert!(e.code != 0 && !e.message.is_empty());
}

#[tokio::test]
async fn srs_session_expiry_costs_one_fresh_login_and_bad_names_are_refused() {
    let env = all_upstreams().await;
    let mut r = runspaces(&env);
    r.list_runspaces(ListRunspacesRequest {
        parent: "upstreams/srs1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    env.sim.script_runtime.expire_sessions();
    r.list_runspaces(ListRunspacesRequest {
        parent: "upstreams/srs1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(env.sim.script_runtime.logins(), 2);
    let err = r
        .get_runspace(GetRunspaceRequest {
            name: "upstreams/srs1/tasks/x".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_NAME");
    let err = r
        .get_runspace(GetRunspaceRequest {
            name: "upstreams/vc1/runspaces/x".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "WRONG_UPSTREAM_KIND");
}

fn vcd_running(secs: u64) -> TaskSpec {
    TaskSpec::new(
        "com.vmware.vcloud",
        "vappDeploy",
        "Starting Virtual Application web-01",
        vec![
            Step::new(Duration::ZERO, Phase::Running { from: 0, to: 100 }),
            Step::new(Duration::from_secs(secs), Phase::Succeeded { result: None }),
        ],
    )
}

#[tokio::test]
async fn cloud_director_tasks_get_by_uuid_or_urn_and_list_paged() {
    let env = all_upstreams().await;
    let id = env.sim.cloud_director.tasks().add(vcd_running(600));
    for _ in 0..6 {
        env.sim.cloud_director.tasks().add(vcd_running(600));
    }
    let mut c = env.tasks();
    let bare = c
        .get_task(GetTaskRequest {
            name: format!("upstreams/vcd1/tasks/{id}"),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bare.kind(), UpstreamKind::CloudDirector);
    assert_eq!(bare.state(), TaskState::Running);
    assert_eq!(bare.id, id);
    assert!(bare.start_time.is_some(), "the +0200 offset parses");
    let urn = c
        .get_task(GetTaskRequest {
            name: format!("upstreams/vcd1/tasks/urn:vcloud:task:{id}"),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        urn.name,
        format!("upstreams/vcd1/tasks/{id}"),
        "URN input is normalized"
    );
    let (mut token, mut seen) = (String::new(), std::collections::HashSet::new());
    loop {
        let page = c
            .list_tasks(ListTasksRequest {
                parent: "upstreams/vcd1".into(),
                page_size: 3,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.tasks.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 7);
    assert!(env.sim.cloud_director.requests("GET /api/query") >= 1);
    let err = c
        .list_tasks(ListTasksRequest {
            parent: "upstreams/vcd1".into(),
            filter: Some(TaskFilter {
                users: vec!["bob".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_FILTER");
}

#[tokio::test]
async fn cloud_director_cancel_shows_cancel_requested_then_ends_cancelled() {
    let env = all_upstreams().await;
    let id = env
        .sim
        .cloud_director
        .tasks()
        .add(vcd_running(3600).cancelable());
    let name = format!("upstreams/vcd1/tasks/{id}");
    let mut c = env.tasks();
    let after = c
        .cancel_task(CancelTaskRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        after.cancel_requested || after.state() == TaskState::Cancelled,
        "{after:?}"
    );
    env.sim
        .cloud_director
        .clock()
        .advance(Duration::from_secs(5));
    let done = c
        .get_task(GetTaskRequest {
            name: name.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state(), TaskState::Cancelled);
    assert!(done.done);
    let err = c.cancel_task(CancelTaskRequest { name }).await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "TASK_DONE");
}

#[tokio::test]
async fn cloud_director_logs_in_with_an_api_token_and_re_logs_in_once_on_expiry() {
    let env = Env::start_full(sim_options(), |cfg, sim| {
        let mut up = vmware_grpc_gateway::demo::upstreams(sim, None);
        up.retain(|u| u.name == "vcd1");
        up[0].password = vmware_grpc_gateway::config::Secret::default();
        let vcd = up[0].cloud_director_mut().expect("vcd1 is Cloud Director");
        vcd.api_token = vmware_grpc_gateway::config::Secret::new(sim.cloud_director.api_token());
        cfg.upstreams = up;
    })
    .await;
    let id = env.sim.cloud_director.tasks().add(vcd_running(600));
    let name = format!("upstreams/vcd1/tasks/{id}");
    let mut c = env.tasks();
    c.get_task(GetTaskRequest {
        name: name.clone(),
        view: 0,
    })
    .await
    .unwrap();
    assert_eq!(
        env.sim
            .cloud_director
            .requests("POST /oauth/tenant/{org}/token"),
        1
    );
    assert_eq!(
        env.sim
            .cloud_director
            .requests("POST /cloudapi/1.0.0/sessions"),
        0
    );
    env.sim.cloud_director.expire_sessions();
    c.get_task(GetTaskRequest { name, view: 0 }).await.unwrap();
    assert_eq!(env.sim.cloud_director.logins(), 2);
}

#[tokio::test]
async fn cloud_director_errors_use_the_minor_error_code() {
    let env = all_upstreams().await;
    let err = env
        .tasks()
        .get_task(GetTaskRequest {
            name: "upstreams/vcd1/tasks/00000000-0000-4000-8000-000000000000".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    // The simulator answers 403 ACCESS_TO_RESOURCE_IS_FORBIDDEN for unknown tasks, as real
    // Cloud Director commonly does; the table maps it to PERMISSION_DENIED.
    let info = assert_error(&err, Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED");
    assert_eq!(
        info.metadata["upstreamReason"],
        "ACCESS_TO_RESOURCE_IS_FORBIDDEN"
    );
    env.sim.cloud_director.inject(
        "GET /api/task/{task}",
        vmware_grpc_gateway::simulator::cloud_director::resource_not_found_fault(
            "00000000-0000-4000-8000-000000000000",
        ),
    );
    let err = env
        .tasks()
        .get_task(GetTaskRequest {
            name: "upstreams/vcd1/tasks/00000000-0000-4000-8000-000000000000".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    let info = assert_error(&err, Code::NotFound, "NOT_FOUND");
    assert_eq!(info.metadata["upstreamReason"], "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn cloud_director_provider_login_lists_admin_tasks_and_re_logs_in_once() {
    let env = Env::start_full(sim_options(), |cfg, sim| {
        let mut up = vmware_grpc_gateway::demo::upstreams(sim, None);
        up.retain(|u| u.name == "vcd1");
        let vcd = up[0].cloud_director_mut().expect("vcd1 is Cloud Director");
        vcd.org = None;
        vcd.provider = true;
        cfg.upstreams = up;
    })
    .await;
    env.sim.cloud_director.tasks().add(vcd_running(600));
    let mut c = env.tasks();
    let list = c
        .list_tasks(ListTasksRequest {
            parent: "upstreams/vcd1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!list.tasks.is_empty());
    assert_eq!(
        env.sim
            .cloud_director
            .requests("POST /cloudapi/1.0.0/sessions/provider"),
        1
    );
    env.sim.cloud_director.expire_sessions();
    c.list_tasks(ListTasksRequest {
        parent: "upstreams/vcd1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        env.sim
            .cloud_director
            .requests("POST /cloudapi/1.0.0/sessions/provider"),
        2,
        "one fresh login"
    );
}

#[tokio::test]
async fn upstream_bodies_that_break_the_documented_shape_are_internal() {
    let env = all_upstreams().await;
    env.sim.script_runtime.inject(
        "GET /api/runspaces",
        vmware_grpc_gateway::simulator::Fault::Status {
            status: 200,
            body: r#"{"not": "an array"}"#.into(),
        },
    );
    let err = runspaces(&env)
        .list_runspaces(ListRunspacesRequest {
            parent: "upstreams/srs1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let info = assert_error(&err, Code::Internal, "UPSTREAM_BAD_RESPONSE");
    assert_eq!(info.metadata["upstream"], "srs1");
    env.sim.cloud_director.inject(
        "GET /api/task/{task}",
        vmware_grpc_gateway::simulator::Fault::Status {
            status: 200,
            body: r#"{"id": "urn:vcloud:task:x", "status": "running", "startTime": "not a time"}"#
                .into(),
        },
    );
    let err = env
        .tasks()
        .get_task(GetTaskRequest {
            name: "upstreams/vcd1/tasks/x".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::Internal, "UPSTREAM_BAD_RESPONSE");
}
