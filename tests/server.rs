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
    proto::{ListUpstreamsRequest, SessionState, UpstreamKind},
    simulator::Fault,
};

const SERVICES: [&str; 4] = [
    "grpc.health.v1.Health",
    "vmware.gateway.v1.RunspaceService",
    "vmware.gateway.v1.TaskService",
    "vmware.gateway.v1.UpstreamService",
];

/// Asks the reflection service of `$version` (v1 or v1alpha) to list the services, then for
/// the file of each symbol; asserts that every service is listed and evaluates to the encoded
/// first file descriptor of each symbol's answer.
macro_rules! reflect {
    ($version:ident, $env:expr $(, $symbol:expr)*) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let symbols: Vec<String> = vec![$($symbol.to_string()),*];
        let mut reqs = vec![ask(MessageRequest::ListServices(String::new()))];
        reqs.extend(symbols.iter().map(|s| ask(MessageRequest::FileContainingSymbol(s.clone()))));
        let mut client = ServerReflectionClient::new($env.channel.clone());
        let answers = client.server_reflection_info(tokio_stream::iter(reqs)).await;
        let mut answers = answers.unwrap().into_inner();
        let mut next = async || answers.next().await.unwrap().unwrap().message_response;
        let Some(MessageResponse::ListServicesResponse(list)) = next().await else {
            panic!("not a list response")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for s in SERVICES {
            assert!(names.contains(&s.to_string()), "{s} missing from {names:?}");
        }
        let mut files = Vec::new();
        for _ in &symbols {
            let Some(MessageResponse::FileDescriptorResponse(answer)) = next().await else {
                panic!("not a file response")
            };
            files.push(answer.file_descriptor_proto[0].clone());
        }
        files
    }};
}

#[tokio::test]
async fn reflection_v1_lists_every_service() {
    let env = Env::start().await;
    reflect!(v1, env);
}

#[tokio::test]
async fn reflection_v1alpha_lists_every_service_and_serves_commented_descriptors() {
    use prost::Message;
    let env = Env::start().await;
    let files = reflect!(v1alpha, env, "vmware.gateway.v1.TaskService");
    let file = prost_types::FileDescriptorProto::decode(files[0].as_slice()).unwrap();
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
    env.get_task(&name).await.unwrap();
    env.sim.vcenter.inject(
        "GET /api/cis/tasks/{task}",
        Fault::Delay(Duration::from_millis(700)),
    );
    let mut c = env.tasks();
    let in_flight = tokio::spawn(async move { c.get_task(get_req(&name)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.shutdown().await;
    let answer = in_flight.await.unwrap();
    assert!(answer.is_ok(), "in-flight call finished: {answer:?}");
    let logouts = env.sim.vcenter.requests("DELETE /api/session");
    assert_eq!(logouts, 1, "logged out on shutdown");
}

#[tokio::test]
async fn upstream_service_shows_kind_url_and_session_without_credentials() {
    let env = Env::start().await;
    let list = env.list_upstreams(ListUpstreamsRequest::default()).await;
    let list = list.unwrap();
    assert_eq!(list.upstreams.len(), 1);
    let vc1 = &list.upstreams[0];
    assert_eq!(vc1.name, "upstreams/vc1");
    assert_eq!(vc1.kind(), UpstreamKind::Vsphere);
    assert_eq!(vc1.base_url, env.sim.vcenter.url());
    assert_eq!(vc1.session_state(), SessionState::None);
    let name = env.add(running_for(10));
    env.get_task(&name).await.unwrap();
    let vc1 = env.get_upstream("upstreams/vc1").await.unwrap();
    assert_eq!(vc1.session_state(), SessionState::Active);
    assert!(vc1.reachable && vc1.last_error.is_empty());
    let text = format!("{vc1:?}");
    assert!(!text.contains(env.sim.vcenter.password()));
    let unknown = env.get_upstream("upstreams/nope").await;
    expect_error(unknown, Code::NotFound, "UNKNOWN_UPSTREAM");
    let bad_name = env.get_upstream("nope").await;
    expect_error(bad_name, Code::InvalidArgument, "INVALID_NAME");
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
    let page = |page_token: String| ListUpstreamsRequest {
        page_size: 3,
        page_token,
    };
    let first = env.list_upstreams(page(String::new())).await.unwrap();
    let names: Vec<_> = first.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["upstreams/vc1", "upstreams/vc2", "upstreams/vc3"]);
    let second = env.list_upstreams(page(first.next_page_token)).await;
    let second = second.unwrap();
    assert_eq!(second.upstreams.len(), 1);
    assert!(second.next_page_token.is_empty());
}
