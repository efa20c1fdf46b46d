//! Serving watches over gRPC: a [`Watch`] of the engine as a tonic server stream, the
//! messages of each event, and the time a WaitTask call may wait.
//!
//! The first read happens before the stream starts, so a resource that does not exist fails
//! the call itself (as GetTask would); after that, errors end the stream. Errors become a
//! `Status` only through `GatewayError::into_status`, naming the resource.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::Stream;
use tokio::time::Instant;
use tonic::{Response, Status, metadata::MetadataMap};

use super::rpc::{Shared, limit_reached};
use crate::{
    call,
    error::{GatewayError, Result},
    proto, telemetry,
    watch::{Event, EventKind, Resource, Watch, WatchOptions},
};

/// A server stream of watch messages.
pub type EventStream<M> = Pin<Box<dyn Stream<Item = std::result::Result<M, Status>> + Send>>;

impl From<EventKind> for proto::EventType {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Snapshot => proto::EventType::Snapshot,
            EventKind::Changed => proto::EventType::Changed,
            EventKind::Heartbeat => proto::EventType::Heartbeat,
        }
    }
}

/// A `TaskEvent` for one event.
pub fn task_event(e: Event<proto::Task>) -> proto::TaskEvent {
    proto::TaskEvent {
        task: Some(e.value),
        r#type: proto::EventType::from(e.kind) as i32,
        observe_time: Some(e.observed.into()),
    }
}

/// A `RunspaceEvent` for one event.
pub fn runspace_event(e: Event<proto::Runspace>) -> proto::RunspaceEvent {
    proto::RunspaceEvent {
        runspace: Some(e.value),
        r#type: proto::EventType::from(e.kind) as i32,
        observe_time: Some(e.observed.into()),
    }
}

struct Served<R: Resource, M> {
    watch: Watch<R>,
    first: Option<M>,
    to_msg: fn(Event<R>) -> M,
    resource: String,
    done: bool,
    _slot: StreamSlot,
}

/// The watch streams open now, in all and per caller connection (by the peer's address).
#[derive(Debug, Default)]
pub struct OpenStreams {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_connection: HashMap<SocketAddr, usize>,
}

/// One of the open streams `limits.max_watch_streams` and
/// `limits.max_watch_streams_per_connection` bound, given back when dropped.
struct StreamSlot {
    open: Arc<OpenStreams>,
    peer: Option<SocketAddr>,
}

impl StreamSlot {
    /// A slot for a stream of `peer`'s connection, or LIMIT_REACHED naming the limit reached.
    fn take(ctx: &Shared, peer: Option<SocketAddr>) -> Result<StreamSlot> {
        let limits = &ctx.limits;
        let mut c = ctx.streams.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= limits.max_watch_streams {
            return Err(limit_reached(
                "max_watch_streams",
                limits.max_watch_streams,
                "open watch streams",
            ));
        }
        if let Some(peer) = peer {
            let mine = c.by_connection.entry(peer).or_default();
            if *mine >= limits.max_watch_streams_per_connection {
                return Err(limit_reached(
                    "max_watch_streams_per_connection",
                    limits.max_watch_streams_per_connection,
                    "open watch streams of this connection",
                ));
            }
            *mine += 1;
        }
        c.total += 1;
        metrics::gauge!(telemetry::WATCH_STREAMS).set(c.total as f64);
        Ok(StreamSlot {
            open: ctx.streams.clone(),
            peer,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut c = self.open.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        metrics::gauge!(telemetry::WATCH_STREAMS).set(c.total as f64);
        if let Some(peer) = self.peer
            && let Some(n) = c.by_connection.get_mut(&peer)
        {
            *n -= 1;
            if *n == 0 {
                c.by_connection.remove(&peer);
            }
        }
    }
}

/// Opens the stream of a watch RPC: `setup` is the validated watch (or why the request is
/// wrong); the call fails unless the first read succeeds. The RPC log layer writes the line
/// that records the outcome when the stream ends.
pub async fn open<R: Resource, M: Send + 'static>(
    ctx: &Shared,
    peer: Option<SocketAddr>,
    resource: &str,
    setup: Result<Watch<R>>,
    to_msg: fn(Event<R>) -> M,
) -> std::result::Result<Response<EventStream<M>>, Status> {
    super::rpc::record_resource(resource);
    let fail = |e: GatewayError| e.into_status(resource);
    let slot = StreamSlot::take(ctx, peer).map_err(fail)?;
    let mut watch = setup.map_err(fail)?;
    let first = match watch.next().await {
        Some(Ok(event)) => {
            sent(&event);
            to_msg(event)
        }
        Some(Err(e)) => return Err(fail(e)),
        None => return Err(fail(GatewayError::ShuttingDown)),
    };
    let served = Served {
        watch,
        first: Some(first),
        to_msg,
        resource: resource.to_string(),
        done: false,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(served, |mut s| async move {
        if let Some(first) = s.first.take() {
            return Some((Ok(first), s));
        }
        if s.done {
            return None;
        }
        match s.watch.next().await {
            Some(Ok(event)) => {
                sent(&event);
                let msg = (s.to_msg)(event);
                Some((Ok(msg), s))
            }
            Some(Err(e)) => {
                s.done = true;
                let status = e.into_status(&s.resource);
                Some((Err(status), s))
            }
            None => None,
        }
    });
    Ok(Response::new(Box::pin(stream)))
}

/// Logs an event in the stream's RPC span, naming the trace of the read that found it: a
/// shared poll's own trace (one poll serves many callers), so a stream's line leads to the
/// upstream request behind its news.
fn sent<R>(event: &Event<R>) {
    let Some(trace) = event.trace else { return };
    let id = trace.trace_id_hex();
    tracing::Span::current().record("poller_trace_id", id.as_str());
    tracing::debug!(kind = ?event.kind, poller_trace_id = %id, "watch event");
}

/// A watcher's options from its request fields and the call's metadata.
pub fn watch_options(
    min_poll_interval: Option<&prost_types::Duration>,
    heartbeat_interval: Option<&prost_types::Duration>,
    metadata: &MetadataMap,
) -> Result<WatchOptions> {
    Ok(WatchOptions {
        min_poll_interval: super::rpc::duration_field(min_poll_interval, "min_poll_interval")?,
        heartbeat_interval: super::rpc::duration_field(heartbeat_interval, "heartbeat_interval")?,
        deadline: call::deadline(metadata),
    })
}

/// When a WaitTask call answers at the latest: the earliest of its `timeout` (unset = the
/// maximum wait), the configured maximum wait, and the call's own time less a margin, so the
/// client gets the snapshot rather than DEADLINE_EXCEEDED: by 90 % of the call's time and at
/// least 100 ms before its deadline.
pub fn wait_until(
    call: Option<Duration>,
    timeout: Option<Duration>,
    max_wait: Duration,
) -> Instant {
    let mut wait = timeout.unwrap_or(max_wait).min(max_wait);
    if let Some(call) = call {
        let margin = (call / 10).max(Duration::from_millis(100));
        wait = wait.min(call.saturating_sub(margin));
    }
    Instant::now() + wait
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECS_10: Option<Duration> = Some(Duration::from_secs(10));

    #[tokio::test(start_paused = true)]
    async fn wait_answers_by_ninety_percent_and_100ms_before_the_deadline() {
        let max = Duration::from_secs(60);
        let now = Instant::now();
        // 10 s call: 90 % is 9 s.
        assert_eq!(wait_until(SECS_10, None, max) - now, Duration::from_secs(9));
        // 500 ms call: 100 ms before the deadline is earlier than 90 %.
        assert_eq!(
            wait_until(Some(Duration::from_millis(500)), None, max) - now,
            Duration::from_millis(400)
        );
        // The timeout and the maximum wait bound it too.
        assert_eq!(
            wait_until(SECS_10, Some(Duration::from_secs(2)), max) - now,
            Duration::from_secs(2)
        );
        assert_eq!(wait_until(None, None, max) - now, max);
        assert_eq!(
            wait_until(None, Some(Duration::from_secs(600)), max) - now,
            max
        );
    }
}
