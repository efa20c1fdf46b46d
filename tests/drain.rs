//! After SIGTERM the gateway keeps accepting for `drain_delay`, answering health NOT_SERVING,
//! so a load balancer or kubelet that probes sees it before the listener closes; calls still
//! running at the end of `shutdown_grace` are told SHUTTING_DOWN, not cut off.

mod common;

use std::time::Duration;

use common::*;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;
use vmware_grpc_gateway::simulator::Fault;

/// A health check over a new connection, as a prober makes it.
async fn probe(url: &str) -> Result<ServingStatus, String> {
    let channel = Channel::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.into_inner().status())
}

#[tokio::test]
async fn a_new_probe_sees_not_serving_during_the_drain_delay_then_the_listener_closes() {
    let mut env = Env::start_with(sim_options(), |cfg| {
        cfg.server.drain_delay = Duration::from_millis(800);
    })
    .await;
    let url = env.gateway.as_ref().expect("running").url();
    assert_eq!(probe(&url).await, Ok(ServingStatus::Serving));
    let stopped = tokio::spawn(async move { env.shutdown().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        probe(&url).await,
        Ok(ServingStatus::NotServing),
        "a new connection during the drain delay is accepted and told NOT_SERVING"
    );
    stopped.await.unwrap();
    assert!(probe(&url).await.is_err(), "after the drain, no connection");
}

#[tokio::test]
async fn calls_still_running_at_the_end_of_the_grace_get_shutting_down_with_retry_info() {
    let mut env = Env::start_with(sim_options(), |cfg| {
        cfg.server.drain_delay = Duration::ZERO;
        cfg.server.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let name = env.add(running_for(100));
    env.get_task(&name).await.unwrap();
    env.sim.vcenter.inject(
        "GET /api/cis/tasks/{task}",
        Fault::Delay(Duration::from_secs(30)),
    );
    let mut c = env.tasks();
    let in_flight = tokio::spawn(async move { c.get_task(get_req(&name)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    env.shutdown().await;
    let err = in_flight.await.unwrap().unwrap_err();
    assert_error(&err, tonic::Code::Unavailable, "SHUTTING_DOWN");
    assert!(err.get_details_retry_info().is_some(), "{err:?}");
}
