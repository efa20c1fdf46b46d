//! The admin listener: Prometheus metrics that move as calls and watches are made, with no
//! label a caller chooses; `/healthz`; `/readyz` turning 503 when shutdown starts.

mod common;

use std::time::Duration;

use common::*;
use vmware_grpc_gateway::proto::WatchTaskRequest;

async fn start() -> Env {
    Env::start_with(sim_options(), |cfg| {
        cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        cfg.server.drain_delay = Duration::from_millis(500);
    })
    .await
}

fn admin_url(env: &Env, path: &str) -> String {
    let addr = env
        .gateway
        .as_ref()
        .unwrap()
        .admin_addr
        .expect("admin listener");
    format!("http://{addr}{path}")
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("admin answers");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the sample whose line starts with `series` (name and labels, in order).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_calls_upstream_requests_and_watches() {
    let env = start().await;
    let metrics = admin_url(&env, "/metrics");
    let name = env.add(running_for(3600));
    let calls = r#"grpc_server_handled_total{grpc_service="vmware.gateway.v1.TaskService",grpc_method="GetTask",grpc_code="OK"}"#;
    let reads = r#"vmwgw_upstream_requests_total{upstream="vc1",kind="vsphere",endpoint="/api/cis/tasks/{task}",status="200"}"#;
    let (_, before) = get(&metrics).await;
    for _ in 0..3 {
        env.get_task(&name).await.unwrap();
    }
    env.get_task(&task_name("no-such-task")).await.unwrap_err();
    let (status, after) = get(&metrics).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&after, calls) - sample(&before, calls),
        3.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, reads) - sample(&before, reads),
        3.0,
        "{after}"
    );
    assert!(after.contains(r#"grpc_code="NOT_FOUND""#), "{after}");
    assert!(
        after.contains("grpc_server_handling_seconds_bucket"),
        "{after}"
    );
    assert!(after.contains(r#"vmwgw_upstream_logins_total{upstream="vc1",outcome="ok"}"#));
    assert!(!after.contains("no-such-task"), "no id in any label");

    // Five watchers of one task share one poller.
    let mut streams = Vec::new();
    for _ in 0..5 {
        let req = WatchTaskRequest {
            name: name.clone(),
            ..Default::default()
        };
        streams.push(env.tasks().watch_task(req).await.unwrap().into_inner());
    }
    // The first poll came with the first watcher; the next ones serve all five.
    let polls = r#"vmwgw_watch_polls_total{upstream="vc1"}"#;
    let mut watching = String::new();
    for _ in 0..100 {
        watching = get(&metrics).await.1;
        if sample(&watching, polls) >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sample(&watching, "vmwgw_watch_streams_open") >= 5.0,
        "{watching}"
    );
    assert!(sample(&watching, r#"vmwgw_watch_pollers{upstream="vc1"}"#) >= 1.0);
    assert!(sample(&watching, polls) >= 2.0, "{watching}");
    let saved = r#"vmwgw_watch_requests_saved_total{upstream="vc1"}"#;
    assert!(sample(&watching, saved) >= 4.0, "{watching}");
    drop(streams);
}

#[tokio::test]
async fn readyz_turns_503_when_shutdown_starts_while_healthz_stays_ok() {
    let mut env = start().await;
    let (ready, health) = (admin_url(&env, "/readyz"), admin_url(&env, "/healthz"));
    assert_eq!(get(&ready).await.0, 200);
    assert_eq!(get(&health).await.0, 200);
    let stopped = tokio::spawn(async move { env.shutdown().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&ready).await.0, 503, "not ready during the drain");
    assert_eq!(get(&health).await.0, 200, "alive during the drain");
    stopped.await.unwrap();
}
