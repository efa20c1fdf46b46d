//! The pieces every RPC handler uses: the context the services share, running a unary call
//! in its call context, request-field checks, and lists over one or every upstream.

use std::{future::Future, sync::Arc, time::Duration};

use tonic::{Response, Status};

use crate::{
    call,
    config::LimitsConfig,
    error::{GatewayError, Reason, Result},
    names::UpstreamRef,
    upstream::{Collection, Registry},
    watch::WatchEngine,
};

/// What the services share: the upstreams, the watch engine, the shutdown signal, and the
/// limits on what callers can make the gateway hold.
#[derive(Clone)]
pub struct Shared {
    pub registry: Arc<Registry>,
    /// The shared pollers behind WatchTask, WaitTask and WatchRunspace.
    pub watch: Arc<WatchEngine>,
    /// Turns true when shutdown starts: open watches end with UNAVAILABLE SHUTTING_DOWN.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub limits: LimitsConfig,
    /// Watch streams open now.
    pub streams: Arc<super::streams::OpenStreams>,
}

/// RESOURCE_EXHAUSTED (LIMIT_REACHED) naming the limit `key` of `[limits]`.
pub fn limit_reached(key: &str, max: usize, what: &str) -> GatewayError {
    GatewayError::limit_reached(key, max, what, None)
}

/// Runs one unary RPC: the caller's deadline bounds every upstream request, and the error
/// becomes a `Status` naming `resource`. The RPC log layer writes the call's log line.
pub async fn unary<T>(
    resource: &str,
    call: call::Call,
    work: impl Future<Output = Result<T>>,
) -> std::result::Result<Response<T>, Status> {
    record_resource(resource);
    call::scope(call, work)
        .await
        .map(Response::new)
        .map_err(|e| e.into_status(resource))
}

/// A Duration as its JSON form spells it (`-1s`, `1.500s`), to echo what the client wrote.
fn duration_text(d: &prost_types::Duration) -> String {
    if d.nanos == 0 {
        return format!("{}s", d.seconds);
    }
    let sign = if d.seconds < 0 || d.nanos < 0 {
        "-"
    } else {
        ""
    };
    let fraction = format!("{:09}", d.nanos.unsigned_abs());
    format!(
        "{sign}{}.{}s",
        d.seconds.unsigned_abs(),
        fraction.trim_end_matches('0')
    )
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

/// The largest `seconds` a `google.protobuf.Duration` may hold (10,000 years).
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

/// An optional Duration field: one a `google.protobuf.Duration` may not hold (seconds beyond
/// ±10,000 years, nanos beyond ±999,999,999, mixed signs) or a negative one is
/// INVALID_ARGUMENT (INVALID_DURATION). The raw fields are checked, before any
/// normalization could turn an invalid value into a valid one.
pub fn duration_field(d: Option<&prost_types::Duration>, field: &str) -> Result<Option<Duration>> {
    let Some(d) = d else { return Ok(None) };
    let invalid = |why: &str| {
        GatewayError::invalid(
            Reason::InvalidDuration,
            field,
            format!("{} {why}", duration_text(d)),
        )
    };
    if d.seconds.unsigned_abs() > MAX_DURATION_SECONDS as u64
        || d.nanos.unsigned_abs() > 999_999_999
    {
        return Err(invalid(
            "is beyond what a google.protobuf.Duration may hold",
        ));
    }
    if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
        return Err(invalid("mixes signs in seconds and nanos"));
    }
    if d.seconds < 0 || d.nanos < 0 {
        return Err(invalid("is negative"));
    }
    Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn durations_a_protobuf_duration_may_not_hold_are_refused_before_normalizing() {
        for bad in [
            d(1_000_000_000_000, 0),
            d(3, -5),
            d(-3, 5),
            d(0, 2_000_000_000),
            d(0, -1),
            d(i64::MIN, 0),
        ] {
            let err = duration_field(Some(&bad), "timeout").unwrap_err();
            assert_eq!(err.reason(), Reason::InvalidDuration, "{bad:?}");
        }
        assert_eq!(
            duration_field(Some(&d(MAX_DURATION_SECONDS, 999_999_999)), "t")
                .unwrap()
                .map(|x| x.as_secs()),
            Some(MAX_DURATION_SECONDS as u64)
        );
    }

    #[test]
    fn a_bad_duration_is_echoed_as_the_client_wrote_it() {
        let err = duration_field(Some(&d(-1, 0)), "timeout").unwrap_err();
        assert_eq!(err.to_string(), "timeout: -1s is negative");
        assert_eq!(duration_text(&d(-1, -500_000_000)), "-1.5s");
        assert_eq!(duration_text(&d(0, -1_000)), "-0.000001s");
        assert_eq!(duration_text(&d(2, 250_000_000)), "2.25s");
        assert_eq!(
            duration_field(Some(&d(1, 500_000_000)), "t").unwrap(),
            Some(Duration::from_millis(1500))
        );
    }
}
