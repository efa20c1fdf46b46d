//! The context of the gRPC call being served, readable by every layer below the gRPC face:
//! its time and deadline (so each upstream request it causes gives up in time), its trace
//! (so each upstream request carries it on), and the parser of the `grpc-timeout` header
//! (tonic exposes none).

use std::{future::Future, sync::Arc, time::Duration};

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use crate::{auth::Grant, identity::CallerIdentity, trace::TraceContext};

/// What a call's metadata says about its time and trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    /// The call's whole time (`grpc-timeout`), if the client set one.
    pub timeout: Option<Duration>,
    /// When the gateway gives up on it (see [`deadline`]).
    pub deadline: Option<Instant>,
    /// The gateway's span of the call's trace (which the RPC log layer started).
    pub trace: Option<TraceContext>,
    /// The caller's `tracestate`, passed on as it came.
    pub tracestate: Option<Arc<str>>,
    /// What the authenticated caller may do; `None` when caller authentication is off.
    pub grant: Option<Arc<Grant>>,
    /// The caller's own VMware identity, when it sent one (pass-through upstreams use it).
    pub identity: Option<Arc<CallerIdentity>>,
}

impl Call {
    /// The call of a request: its metadata, and what the layers above the handlers put in its
    /// extensions: the grant the edge layer authenticated, and the gateway's span of the
    /// call's trace that the RPC log layer started (without that layer, the request's own
    /// `traceparent`).
    pub fn from_request(metadata: &MetadataMap, extensions: &http::Extensions) -> Call {
        let trace = extensions.get::<TraceContext>().copied();
        Call {
            grant: extensions.get::<Arc<Grant>>().cloned(),
            trace: trace.or_else(|| traceparent(metadata)),
            ..Call::with_trace(metadata, None)
        }
    }

    /// The call of bare metadata, its `traceparent` taken as the call's span.
    pub fn from_metadata(metadata: &MetadataMap) -> Call {
        Call::with_trace(metadata, traceparent(metadata))
    }

    fn with_trace(metadata: &MetadataMap, trace: Option<TraceContext>) -> Call {
        let timeout = call_timeout(metadata);
        let header = |name| metadata.get(name).and_then(|v| v.to_str().ok());
        Call {
            timeout,
            deadline: timeout.and_then(deadline_after),
            trace,
            tracestate: header("tracestate")
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(Arc::from),
            grant: None,
            identity: CallerIdentity::from_metadata(metadata),
        }
    }

    /// Work of the gateway's own that no call caused (a poll): a trace of its own.
    pub fn traced() -> Call {
        Call {
            trace: Some(TraceContext::new_root()),
            ..Call::default()
        }
    }
}

tokio::task_local! {
    /// The gRPC call being served (set by the gRPC face, read by the layers under it).
    static CURRENT: Call;
}

/// Runs `work` with `call` in scope.
pub async fn scope<F: Future>(call: Call, work: F) -> F::Output {
    CURRENT.scope(call, work).await
}

/// Runs the synchronous `work` with `call` in scope.
pub fn sync_scope<R>(call: Call, work: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(call, work)
}

/// The grant of the caller being served, when caller authentication is on.
pub fn current_grant() -> Option<Arc<Grant>> {
    CURRENT.try_with(|c| c.grant.clone()).ok().flatten()
}

/// The caller's own VMware identity, when the call being served carries one.
pub fn current_identity() -> Option<Arc<CallerIdentity>> {
    CURRENT.try_with(|c| c.identity.clone()).ok().flatten()
}

/// The call being served, or an unbounded one outside a call.
pub fn current() -> Call {
    CURRENT.try_with(Call::clone).unwrap_or_default()
}

/// The deadline of the call being served, if it has one and this task serves a call.
pub fn current_deadline() -> Option<Instant> {
    CURRENT.try_with(|c| c.deadline).ok().flatten()
}

/// The call's deadline from its `grpc-timeout` header, less a small margin so the gateway
/// answers DEADLINE_EXCEEDED itself (with ErrorInfo) before the transport cancels the call.
pub fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    call_timeout(metadata).and_then(deadline_after)
}

/// The deadline of a call of `timeout` starting now, less the margin.
fn deadline_after(timeout: Duration) -> Option<Instant> {
    let margin = (timeout / 10).min(Duration::from_millis(50));
    Instant::now().checked_add(timeout - margin)
}

fn traceparent(metadata: &MetadataMap) -> Option<TraceContext> {
    let value = metadata.get("traceparent")?.to_str().ok()?;
    TraceContext::parse(value)
}

/// The call's whole time from its `grpc-timeout` header (`<digits><unit>`, unit one of
/// `H M S m u n`).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        m
    }

    #[test]
    fn grpc_timeout_units_parse_and_garbage_is_no_timeout() {
        assert_eq!(
            call_timeout(&with_timeout("2S")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            call_timeout(&with_timeout("150m")),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            call_timeout(&with_timeout("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(call_timeout(&with_timeout("5x")), None);
        assert_eq!(call_timeout(&with_timeout("S")), None);
        assert_eq!(call_timeout(&MetadataMap::new()), None);
    }

    #[tokio::test]
    async fn the_call_is_seen_only_inside_its_scope() {
        assert_eq!(current_deadline(), None);
        let call = Call::from_metadata(&with_timeout("1S"));
        assert_eq!(call.timeout, Some(Duration::from_secs(1)));
        assert_eq!(scope(call.clone(), async { current() }).await, call);
        assert_eq!(current(), Call::default());
    }
}
