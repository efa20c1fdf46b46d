//! Every resource a caller can make the gateway hold is bounded: each refusal is
//! RESOURCE_EXHAUSTED with reason LIMIT_REACHED and a message naming the limit.

mod common;

use common::*;
use tonic::{Code, Status};
use vmware_grpc_gateway::{
    config::LimitsConfig,
    proto::{
        CreateRunspaceRequest, ListTasksRequest, Runspace, TaskFilter,
        runspace_service_client::RunspaceServiceClient,
    },
};

fn limited(err: &Status, key: &str) {
    assert_error(err, Code::ResourceExhausted, "LIMIT_REACHED");
    assert!(err.message().contains(key), "{err:?}");
}

/// Every simulated upstream, with the default limits but what `set` changes.
async fn with_limits(set: impl FnOnce(&mut LimitsConfig)) -> Env {
    Env::start_full(sim_options(), move |cfg, sim| {
        cfg.upstreams = vmware_grpc_gateway::demo::upstreams(sim, None);
        set(&mut cfg.limits);
    })
    .await
}

#[tokio::test]
async fn watch_streams_are_bounded_and_a_closed_one_frees_its_slot() {
    let env = with_limits(|l| l.max_watch_streams = 1).await;
    let name = env.add(running_for(3600));
    let first = env.tasks().watch_task(watch_req_of(&name)).await.unwrap();
    let err = env
        .tasks()
        .watch_task(watch_req_of(&name))
        .await
        .unwrap_err();
    limited(&err, "max_watch_streams");
    drop(first);
    // The slot comes back once the server sees the stream go.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = env.tasks().watch_task(watch_req_of(&name)).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the closed stream's slot was given back");
}

#[tokio::test]
async fn task_id_filters_are_bounded() {
    let env = with_limits(|l| l.max_task_ids = 3).await;
    let filter = TaskFilter {
        task_ids: (0..4).map(|i| format!("t{i}")).collect(),
        ..Default::default()
    };
    let err = env
        .tasks()
        .list_tasks(ListTasksRequest {
            parent: "upstreams/vc1".into(),
            filter: Some(filter),
            ..Default::default()
        })
        .await
        .unwrap_err();
    limited(&err, "max_task_ids");
}

#[tokio::test]
async fn remembered_request_ids_are_bounded_without_evicting_one_early() {
    let env = with_limits(|l| l.max_request_ids = 1).await;
    let mut c = RunspaceServiceClient::new(env.channel.clone());
    let create = |id: &str| CreateRunspaceRequest {
        parent: "upstreams/srs1".into(),
        runspace: Some(Runspace::default()),
        request_id: id.into(),
    };
    let made = c.create_runspace(create("r1")).await.unwrap().into_inner();
    let err = c.create_runspace(create("r2")).await.unwrap_err();
    limited(&err, "max_request_ids");
    let retried = c.create_runspace(create("r1")).await.unwrap().into_inner();
    assert_eq!(retried.id, made.id, "a remembered id still answers");
    assert_eq!(env.sim.script_runtime.runspaces_created(), 1);
}

#[tokio::test]
async fn upstream_answers_are_read_up_to_a_bound() {
    let env = with_limits(|l| l.max_upstream_body_bytes = 100).await;
    let name = env.add(running_for(3600));
    let err = env.get_task(&name).await.unwrap_err();
    assert_error(&err, Code::Internal, "UPSTREAM_BAD_RESPONSE");
    assert!(err.message().contains("max_upstream_body_bytes"), "{err:?}");
}

fn watch_req_of(name: &str) -> vmware_grpc_gateway::proto::WatchTaskRequest {
    vmware_grpc_gateway::proto::WatchTaskRequest {
        name: name.into(),
        ..Default::default()
    }
}
