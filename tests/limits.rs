//! Every resource a caller can make the gateway hold is bounded: each refusal is
//! RESOURCE_EXHAUSTED with reason LIMIT_REACHED and a message naming the limit.

mod common;

use std::time::Duration;

use common::*;
use tonic::{Code, IntoRequest, Status};
use tonic_types::StatusExt;
use vmware_grpc_gateway::simulator::Fault;
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

#[tokio::test]
async fn a_request_over_the_message_limit_is_resource_exhausted() {
    let env = Env::start_with(sim_options(), |cfg| cfg.server.max_message_bytes = 4096).await;
    let err = env
        .get_task(&task_name(&"x".repeat(8000)))
        .await
        .unwrap_err();
    assert_error(&err, Code::ResourceExhausted, "LIMIT_REACHED");
    assert!(
        err.message().contains("server.max_message_bytes"),
        "{err:?}"
    );
}

#[tokio::test]
async fn watch_streams_are_bounded_per_caller_connection() {
    let env = with_limits(|l| l.max_watch_streams_per_connection = 1).await;
    let name = env.add(running_for(3600));
    let _first = env.tasks().watch_task(watch_req_of(&name)).await.unwrap();
    let err = env
        .tasks()
        .watch_task(watch_req_of(&name))
        .await
        .unwrap_err();
    limited(&err, "max_watch_streams_per_connection");
    // Another connection has its own allowance.
    let other = tonic::transport::Channel::from_shared(env.gateway.as_ref().unwrap().url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut theirs = vmware_grpc_gateway::proto::task_service_client::TaskServiceClient::new(other);
    assert!(theirs.watch_task(watch_req_of(&name)).await.is_ok());
}

#[tokio::test]
async fn upstream_requests_in_flight_are_bounded_and_the_others_queue_within_their_deadline() {
    let env = with_limits(|l| l.max_upstream_requests = 2).await;
    let name = env.add(running_for(3600));
    env.get_task(&name).await.unwrap(); // logged in
    const ROUTE: &str = "GET /api/cis/tasks/{task}";
    let sent = || env.sim.vcenter.requests(ROUTE);
    let before = sent();
    // Two slow requests take both turns.
    for _ in 0..2 {
        env.sim
            .vcenter
            .inject(ROUTE, Fault::Delay(Duration::from_millis(1500)));
    }
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut c = env.tasks();
            let req = get_req(&name);
            tokio::spawn(async move { c.get_task(req).await })
        })
        .collect();
    while sent() < before + 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A third caller queues for its 300 ms, then is refused without anything sent.
    let mut req = get_req(&name).into_request();
    req.set_timeout(Duration::from_millis(300));
    let err = env.tasks().get_task(req).await.unwrap_err();
    limited(&err, "max_upstream_requests");
    assert!(err.get_details_retry_info().is_some(), "{err:?}");
    assert_eq!(sent(), before + 2, "the refused call sent nothing");
    // Callers with time to wait get their turn: 20 at once, all answered.
    let queued: Vec<_> = (0..20)
        .map(|_| {
            let mut c = env.tasks();
            let req = get_req(&name);
            tokio::spawn(async move { c.get_task(req).await })
        })
        .collect();
    for call in slow.into_iter().chain(queued) {
        call.await.unwrap().unwrap();
    }
    assert_eq!(sent(), before + 22);
}

fn watch_req_of(name: &str) -> vmware_grpc_gateway::proto::WatchTaskRequest {
    vmware_grpc_gateway::proto::WatchTaskRequest {
        name: name.into(),
        ..Default::default()
    }
}
