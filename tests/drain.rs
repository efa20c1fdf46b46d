//! After SIGTERM the gateway keeps accepting for `drain_delay`, answering health NOT_SERVING,
//! so a load balancer or kubelet that probes sees it before the listener closes.

mod common;

use std::time::Duration;

use common::*;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

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
