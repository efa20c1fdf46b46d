//! The admin HTTP listener, on its own port beside gRPC: `/metrics` (Prometheus text format),
//! `/healthz` (the process is alive: always 200) and `/readyz` (ready to serve: 200 until
//! shutdown starts, then 503, as health turns NOT_SERVING). Kubelet's gRPC probes speak
//! plaintext only; with server TLS on, probes use `/readyz` here.

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::telemetry;

/// Serves the admin routes on `listener` until the returned task is aborted. `stopping` turns
/// true when shutdown starts.
pub fn spawn(listener: TcpListener, stopping: watch::Receiver<bool>) -> JoinHandle<()> {
    // Install the recorder before any call is made, so every metric is counted.
    telemetry::prometheus();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(stopping);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    })
}

async fn metrics() -> impl IntoResponse {
    match telemetry::prometheus() {
        Some(handle) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            handle.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/plain; charset=utf-8")],
            "another metrics recorder is installed in this process\n".to_string(),
        ),
    }
}

async fn ready(State(stopping): State<watch::Receiver<bool>>) -> impl IntoResponse {
    if *stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
