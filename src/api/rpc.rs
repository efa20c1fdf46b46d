//! The pieces every RPC handler uses: the context the services share, running a unary call
//! in its call context, request-field checks, and lists over one or every upstream.

use std::{future::Future, sync::Arc, time::Duration};

use tonic::{Response, Status, metadata::MetadataMap};

use crate::{
    call,
    error::{GatewayError, Reason, Result},
    names::UpstreamRef,
    upstream::{Collection, Registry},
    watch::WatchEngine,
};

/// What the services share: the upstreams, the watch engine, and the shutdown signal.
#[derive(Clone)]
pub struct Shared {
    pub registry: Arc<Registry>,
    /// The shared pollers behind WatchTask, WaitTask and WatchRunspace.
    pub watch: Arc<WatchEngine>,
    /// Turns true when shutdown starts: open watches end with UNAVAILABLE SHUTTING_DOWN.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Runs one unary RPC: the caller's deadline bounds every upstream request, and the error
/// becomes a `Status` naming `resource`. The RPC log layer writes the call's log line.
pub async fn unary<T>(
    resource: &str,
    metadata: &MetadataMap,
    work: impl Future<Output = Result<T>>,
) -> std::result::Result<Response<T>, Status> {
    record_resource(resource);
    call::scope(call::Call::from_metadata(metadata), work)
        .await
        .map(Response::new)
        .map_err(|e| e.into_status(resource))
}

/// Everything a List's `parent` holds: its one upstream's list, or for `-` the lists of every
/// upstream serving `C` in one. In a merged list an upstream that fails or cannot apply the
/// filter fails the call, named: no silent partial lists.
pub async fn list_parent<'a, C: Collection, T, F>(
    registry: &'a Registry,
    parent: &UpstreamRef,
    list: impl Fn(&'a C::Source) -> F,
) -> Result<Vec<T>>
where
    C::Source: 'a,
    F: Future<Output = Result<Vec<T>>>,
{
    let sources = registry.listed::<C>(parent)?;
    let lists = futures_util::future::join_all(sources.iter().map(|(_, s)| list(s))).await;
    let mut all = Vec::new();
    for ((upstream, _), items) in sources.iter().zip(lists) {
        all.extend(items.map_err(|e| match parent {
            UpstreamRef::Any => in_merged_list(&upstream.name, e),
            UpstreamRef::Named(_) => e,
        })?);
    }
    Ok(all)
}

/// Names the upstream in a request error it raised for a merged list.
fn in_merged_list(upstream: &str, e: GatewayError) -> GatewayError {
    match e {
        GatewayError::InvalidArgument {
            reason,
            field,
            description,
        } => GatewayError::InvalidArgument {
            reason,
            field,
            description: format!("upstream '{upstream}': {description}"),
        },
        other => other,
    }
}

/// Names the resource of the call in its RPC span (the log layer cannot read the request).
pub fn record_resource(resource: &str) {
    tracing::Span::current().record("resource", crate::error::clip(resource).as_str());
}

/// An enum field: an unknown number is INVALID_ARGUMENT (reason INVALID_ENUM).
pub fn enum_field<E: TryFrom<i32>>(raw: i32, field: &str) -> Result<E> {
    E::try_from(raw).map_err(|_| {
        GatewayError::invalid(
            Reason::InvalidEnum,
            field,
            format!("{raw} is not a known value"),
        )
    })
}

/// An optional Duration field: negative or out of range is INVALID_ARGUMENT (INVALID_DURATION).
pub fn duration_field(d: Option<&prost_types::Duration>, field: &str) -> Result<Option<Duration>> {
    let Some(d) = d else { return Ok(None) };
    Duration::try_from(*d).map(Some).map_err(|_| {
        GatewayError::invalid(
            Reason::InvalidDuration,
            field,
            format!("{}s {}ns is negative or out of range", d.seconds, d.nanos),
        )
    })
}
