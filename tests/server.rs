//! The server around the services: reflection, health, graceful shutdown, limits, the
//! UpstreamService, and the RPCs later versions serve.

mod common;

use std::time::Duration;

use common::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use vmware_grpc_gateway::{
    proto::{GetTaskRequest, GetUpstreamRequest, ListUpstreamsRequest, SessionState, UpstreamKind},
    simulator::Fault,
};

const SERVICES: [&str; 4] = [
    "grpc.health.v1.Health",
    "vmware.gateway.v1.RunspaceService",
    "vmware.gateway.v1.TaskService",
    "vmware.gateway.v1.UpstreamService",
];

#[tokio::test]
async fn reflection_v1_lists_every_service() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let env = Env::start().await;
    let mut client = ServerReflectionClient::new(env.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(req))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a list response")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in SERVICES {
        assert!(names.contains(&s.to_string()), "{s} missing from {names:?}");
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_every_service_and_serves_commented_descriptors() {
    use prost::Message;
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let env = Env::start().await;
    let mut client = ServerReflectionClient::new(env.channel.clone());
    let reqs = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "vmware.gateway.v1.TaskService".into(),
            )),
        },
    ];
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a list response")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in SERVICES {
        assert!(names.contains(&s.to_string()), "{s} missing from {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a file response")
    };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
        .unwrap();
    let comments: Vec<String> = file
        .source_code_info
        .expect("descriptors keep source info, so describe shows comments")
        .location
        .into_iter()
        .map(|l| l.leading_comments().to_string())
        .collect();
    assert!(
        comments.iter().any(|c| c.contains("Returns one task")),
        "comments travel"
    );
}

#[tokio::test]
async fn health_is_serving_per_service_then_not_serving_once_shutdown_starts() {
    let mut env = Env::start().await;
    let mut health = HealthClient::new(env.channel.clone());
    for s in [
        "",
        "vmware.gateway.v1.TaskService",
        "vmware.gateway.v1.RunspaceService",
        "vmware.gateway.v1.UpstreamService",
    ] {
        let r = health
            .check(HealthCheckRequest { service: s.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{s}");
    }
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "vmware.gateway.v1.TaskService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let shutdown = tokio::spawn(async move { env.shutdown().await });
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("health changes at once");
    assert_eq!(next.unwrap().unwrap().status(), ServingStatus::NotServing);
    drop(watch);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish_and_logs_out() {
    let mut env = Env::start().await;
    let name = env.add(running_for(100));
    let mut c = env.tasks();
    c.get_task(GetTaskRequest {
        name: name.clone(),
        view: 0,
    })
    .await
    .unwrap();
    env.sim.vcenter.inject(
        "GET /api/cis/tasks/{task}",
        Fault::Delay(Duration::from_millis(700)),
    );
    let in_flight = tokio::spawn(async move { c.get_task(GetTaskRequest { name, view: 0 }).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.shutdown().await;
    let answer = in_flight.await.unwrap();
    assert!(answer.is_ok(), "in-flight call finished: {answer:?}");
    assert_eq!(
        env.sim.vcenter.requests("DELETE /api/session"),
        1,
        "logged out on shutdown"
    );
}

#[tokio::test]
async fn upstream_service_shows_kind_url_and_session_without_credentials() {
    let env = Env::start().await;
    let mut u = env.upstreams();
    let list = u
        .list_upstreams(ListUpstreamsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.upstreams.len(), 1);
    let vc1 = &list.upstreams[0];
    assert_eq!(vc1.name, "upstreams/vc1");
    assert_eq!(vc1.kind(), UpstreamKind::Vsphere);
    assert_eq!(vc1.base_url, env.sim.vcenter.url());
    assert_eq!(vc1.session_state(), SessionState::None);
    let name = env.add(running_for(10));
    env.tasks()
        .get_task(GetTaskRequest { name, view: 0 })
        .await
        .unwrap();
    let vc1 = u
        .get_upstream(GetUpstreamRequest {
            name: "upstreams/vc1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vc1.session_state(), SessionState::Active);
    assert!(vc1.reachable && vc1.last_error.is_empty());
    let text = format!("{vc1:?}");
    assert!(!text.contains(env.sim.vcenter.password()));
    let err = u
        .get_upstream(GetUpstreamRequest {
            name: "upstreams/nope".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "UNKNOWN_UPSTREAM");
    let err = u
        .get_upstream(GetUpstreamRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_NAME");
}

#[tokio::test]
async fn list_upstreams_pages_by_name() {
    let env = Env::start_with(sim_options(), |cfg| {
        let base = cfg.upstreams[0].clone();
        for n in ["vc3", "vc2", "vc4"] {
            let mut u = base.clone();
            u.name = n.into();
            cfg.upstreams.push(u);
        }
    })
    .await;
    let mut u = env.upstreams();
    let first = u
        .list_upstreams(ListUpstreamsRequest {
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = first.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["upstreams/vc1", "upstreams/vc2", "upstreams/vc3"]);
    let second = u
        .list_upstreams(ListUpstreamsRequest {
            page_size: 3,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.upstreams.len(), 1);
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn messages_over_the_configured_limit_are_refused() {
    let env = Env::start_with(sim_options(), |cfg| cfg.server.max_message_bytes = 4096).await;
    let err = env
        .tasks()
        .get_task(GetTaskRequest {
            name: format!("upstreams/vc1/tasks/{}", "x".repeat(8000)),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
}
