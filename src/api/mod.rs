//! The gRPC face: one file per service. Each RPC validates its request, resolves the name,
//! calls the upstream through the registry and converts; no HTTP here.

pub mod names;
pub mod paging;
pub mod runspaces;
pub mod tasks;
pub mod upstreams;

use std::{future::Future, time::Duration};

use tokio::time::Instant;
use tonic::{Response, Status, metadata::MetadataMap};

use crate::{
    error::{GatewayError, Result},
    upstream::http::DEADLINE,
};

/// Runs one unary RPC: the caller's deadline bounds every upstream request, the error
/// becomes a `Status` naming `resource`, and one log line records the outcome.
pub async fn unary<T>(
    rpc: &'static str,
    resource: &str,
    metadata: &MetadataMap,
    call: impl Future<Output = Result<T>>,
) -> std::result::Result<Response<T>, Status> {
    let started = Instant::now();
    let result = DEADLINE.scope(deadline(metadata), call).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(v) => {
            tracing::info!(rpc, resource, code = "OK", elapsed_ms, "rpc");
            Ok(Response::new(v))
        }
        Err(e) => {
            let status = e.into_status(resource);
            tracing::info!(rpc, resource, code = ?status.code(), elapsed_ms, message = status.message(), "rpc");
            Err(status)
        }
    }
}

/// The call's deadline from its `grpc-timeout` header, less a small margin so the gateway
/// answers DEADLINE_EXCEEDED itself (with ErrorInfo) before the transport cancels the call.
pub fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    let d = call_timeout(metadata)?;
    let margin = (d / 10).min(Duration::from_millis(50));
    Instant::now().checked_add(d - margin)
}

/// The call's whole time from its `grpc-timeout` header.
pub fn call_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// An enum field: an unknown number is INVALID_ARGUMENT (reason INVALID_ENUM).
pub fn enum_field<E: TryFrom<i32>>(raw: i32, field: &str) -> Result<E> {
    E::try_from(raw).map_err(|_| {
        GatewayError::invalid("INVALID_ENUM", field, format!("{raw} is not a known value"))
    })
}

/// An optional Duration field: negative or out of range is INVALID_ARGUMENT (INVALID_DURATION).
pub fn duration_field(d: Option<&prost_types::Duration>, field: &str) -> Result<Option<Duration>> {
    let Some(d) = d else { return Ok(None) };
    Duration::try_from(*d).map(Some).map_err(|_| {
        GatewayError::invalid(
            "INVALID_DURATION",
            field,
            format!("{}s {}ns is negative or out of range", d.seconds, d.nanos),
        )
    })
}

/// The answer of an RPC that a later version of this gateway serves.
pub fn not_implemented(rpc: &str) -> GatewayError {
    GatewayError::Unimplemented {
        reason: "NOT_IMPLEMENTED",
        message: format!("{rpc} is not implemented by this gateway version yet"),
        upstream: None,
    }
}
