//! An upstream that accepts connections and never answers (a blackhole): once the circuit
//! breaker has seen enough timeouts, calls fail at once without reaching it.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use tonic::Code;
use tonic_types::StatusExt;
use vmware_grpc_gateway::config::UpstreamConfig;

/// A listener that accepts every connection and never answers; counts the connections.
async fn blackhole() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn a_blackholed_upstream_opens_the_circuit_and_calls_then_fail_at_once() {
    let (url, accepted) = blackhole().await;
    let env = Env::start_with(sim_options(), move |cfg| {
        let mut up = UpstreamConfig::new(
            "vc1",
            vmware_grpc_gateway::config::UpstreamKind::Vsphere,
            &url,
            "u",
            "p",
        );
        up.request_timeout = Duration::from_millis(200);
        up.breaker_failures = 3;
        up.breaker_open_for = Duration::from_secs(30);
        // One request a call, so the count of calls is the count of failures.
        cfg.upstreams = vec![without_read_retries(up)];
    })
    .await;
    let name = task_name("t-1");
    for _ in 0..3 {
        let err = env.get_task(&name).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    }
    let reached = accepted.load(Ordering::SeqCst);
    assert!(reached >= 1);
    let started = Instant::now();
    let err = env.get_task(&name).await.unwrap_err();
    let took = started.elapsed();
    println!("with the circuit open a call failed in {took:?} (request timeout 200 ms)");
    assert_error(&err, Code::Unavailable, "UPSTREAM_CIRCUIT_OPEN");
    let retry = err.get_details_retry_info().and_then(|r| r.retry_delay);
    assert!(
        retry.is_some_and(|d| d <= Duration::from_secs(30)),
        "{retry:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        reached,
        "nothing reached the upstream"
    );
    let up = env.get_upstream("upstreams/vc1").await.unwrap();
    assert!(!up.reachable);
    assert!(up.last_error.contains("circuit open"), "{}", up.last_error);
}
