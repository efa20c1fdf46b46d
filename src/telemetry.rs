//! The gateway's Prometheus metrics, in one place: their names, units and help texts, the
//! recorder, and the few functions the layers record through.
//!
//! The recorder is installed once per process, only when an admin listener serves
//! `/metrics`; without one, recording is a no-op. No label takes a value a caller chooses
//! freely: methods are the served ones (else `other`), upstreams the configured ones,
//! endpoints their route templates, never an id.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{OnceLock, RwLock},
    time::Duration,
};

use metrics::{Counter, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prost::Message;

pub const GRPC_HANDLED: &str = "grpc_server_handled_total";
pub const GRPC_SECONDS: &str = "grpc_server_handling_seconds";
pub const UPSTREAM_REQUESTS: &str = "vmwgw_upstream_requests_total";
pub const UPSTREAM_SECONDS: &str = "vmwgw_upstream_request_duration_seconds";
pub const UPSTREAM_LOGINS: &str = "vmwgw_upstream_logins_total";
pub const UPSTREAM_SESSION: &str = "vmwgw_upstream_session_state";
pub const CALLER_SESSIONS: &str = "vmwgw_upstream_caller_sessions";
pub const WATCH_STREAMS: &str = "vmwgw_watch_streams_open";
pub const WATCH_POLLERS: &str = "vmwgw_watch_pollers";
pub const WATCH_POLLS: &str = "vmwgw_watch_polls_total";
pub const WATCH_POLL_RESOURCES: &str = "vmwgw_watch_poll_resources";
pub const WATCH_SAVED: &str = "vmwgw_watch_requests_saved_total";

/// Latency buckets, in seconds: from a cached answer to the longest WaitTask.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Resources carried by one poll request (a batch is at most 1000).
const RESOURCE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Whether the gateway's recorder is installed: a handle registered before that belongs to
/// the no-op recorder and must not be kept.
fn recording() -> bool {
    matches!(RECORDER.get(), Some(Some(_)))
}

/// Uses the handle in `cell`, registering it first if it has none. `metrics::counter!` with
/// labels builds, hashes and looks up its key on every use (~3,000 instructions a call, the
/// labels cloned); a kept handle only adds. It is kept once the recorder records.
fn with_handle<H>(cell: &OnceLock<H>, register: impl FnOnce() -> H, use_it: impl FnOnce(&H)) {
    if let Some(h) = cell.get() {
        return use_it(h);
    }
    let keep = recording();
    let h = register();
    use_it(&h);
    if keep {
        let _ = cell.set(h);
    }
}

/// Handles keyed by the label values that vary (see [`with_handle`]); the key space must be
/// small and bounded (route templates, status codes), never caller-chosen.
pub struct Handles<K, H>(RwLock<HashMap<K, H>>);

impl<K, H> Default for Handles<K, H> {
    fn default() -> Self {
        Handles(RwLock::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, H> Handles<K, H> {
    /// Uses the handle of `key`, registering it first if there is none.
    pub fn with(&self, key: K, register: impl FnOnce(&K) -> H, use_it: impl FnOnce(&H)) {
        if let Some(h) = self.0.read().ok().as_ref().and_then(|m| m.get(&key)) {
            return use_it(h);
        }
        let keep = recording();
        let h = register(&key);
        use_it(&h);
        if keep && let Ok(mut m) = self.0.write() {
            m.entry(key).or_insert(h);
        }
    }
}

/// The process's Prometheus recorder, installed on first use; `None` if another recorder was
/// installed first (then `/metrics` says so).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WATCH_POLL_RESOURCES.into()),
                        RESOURCE_BUCKETS,
                    )
                })
                .and_then(|b| b.install_recorder());
            match handle {
                Ok(h) => {
                    describe();
                    // Histograms collect between scrapes: drain them even when nobody scrapes.
                    let upkeep = h.clone();
                    std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(Duration::from_secs(5));
                                upkeep.run_upkeep();
                            }
                        })
                        .ok();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    describe_counter!(
        GRPC_HANDLED,
        "RPCs finished, by service, method and status code"
    );
    describe_histogram!(
        GRPC_SECONDS,
        Unit::Seconds,
        "RPC duration until its status (streams: their whole life)"
    );
    describe_counter!(
        UPSTREAM_REQUESTS,
        "HTTP requests to upstreams, by upstream, kind, endpoint template and status (or the failure without one)"
    );
    describe_histogram!(
        UPSTREAM_SECONDS,
        Unit::Seconds,
        "HTTP request duration to upstreams"
    );
    describe_counter!(
        UPSTREAM_LOGINS,
        "service-account logins, by upstream and outcome (ok, refused, failed)"
    );
    describe_gauge!(
        UPSTREAM_SESSION,
        "1 for the session state each upstream is in (none, active, expired, failed)"
    );
    describe_gauge!(
        CALLER_SESSIONS,
        "callers' own sessions (pass-through logins) the gateway keeps, by upstream"
    );
    describe_gauge!(WATCH_STREAMS, "open WatchTask and WatchRunspace streams");
    describe_gauge!(WATCH_POLLERS, "resources polled now, by upstream");
    describe_counter!(
        WATCH_POLLS,
        "poll requests sent by the watch engine, by upstream"
    );
    describe_histogram!(
        WATCH_POLL_RESOURCES,
        "resources carried by one poll request (batching)"
    );
    describe_counter!(
        WATCH_SAVED,
        "upstream reads saved by sharing and batching: the reads one poller per watcher would have made, less the requests sent"
    );
}

/// A served gRPC method's metric labels, and its handles once registered.
pub struct ServedMethod {
    pub service: &'static str,
    pub method: &'static str,
    /// `grpc_server_handled_total`, by code.
    handled: [OnceLock<Counter>; CODES],
    seconds: OnceLock<Histogram>,
}

/// gRPC status codes: 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

impl ServedMethod {
    fn new(service: &'static str, method: &'static str) -> Self {
        ServedMethod {
            service,
            method,
            handled: Default::default(),
            seconds: OnceLock::new(),
        }
    }

    /// Paths nobody serves are counted as `other`, so callers cannot mint labels.
    pub fn other() -> &'static ServedMethod {
        static OTHER: OnceLock<ServedMethod> = OnceLock::new();
        OTHER.get_or_init(|| ServedMethod::new("other", "other"))
    }

    /// Records one finished RPC of this method.
    pub fn handled(&self, code: tonic::Code, elapsed: Duration) {
        let (service, method) = (self.service, self.method);
        let cell = &self.handled[(code as usize).min(CODES - 1)];
        with_handle(
            cell,
            || metrics::counter!(GRPC_HANDLED, "grpc_service" => service, "grpc_method" => method, "grpc_code" => code_name(code)),
            |c| c.increment(1),
        );
        with_handle(
            &self.seconds,
            || metrics::histogram!(GRPC_SECONDS, "grpc_service" => service, "grpc_method" => method),
            |h| h.record(elapsed.as_secs_f64()),
        );
    }
}

/// The served method of a gRPC method path (`/pkg.Service/Method`), or `None` for a path
/// nobody serves (count it as [`ServedMethod::other`]).
pub fn served_method(path: &str) -> Option<&'static ServedMethod> {
    static SERVED: OnceLock<HashMap<String, ServedMethod>> = OnceLock::new();
    let served = SERVED.get_or_init(|| {
        let mut set = HashMap::new();
        let mut insert = |service: &'static str, method: &'static str| {
            set.insert(
                format!("{service}/{method}"),
                ServedMethod::new(service, method),
            );
        };
        for encoded in [
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(files) = prost_types::FileDescriptorSet::decode(encoded) else {
                continue;
            };
            for file in files.file {
                let package = file.package().to_string();
                for service in &file.service {
                    let full: &'static str =
                        Box::leak(format!("{package}.{}", service.name()).into_boxed_str());
                    for m in &service.method {
                        let name: &'static str = Box::leak(m.name().to_string().into_boxed_str());
                        insert(full, name);
                    }
                }
            }
        }
        for service in [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            insert(service, "ServerReflectionInfo");
        }
        set
    });
    served.get(path.trim_start_matches('/'))
}

/// The gRPC code as Prometheus users know it (`OK`, `NOT_FOUND`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        let labels = |path| served_method(path).map(|m| (m.service, m.method));
        assert_eq!(
            labels("/vmware.gateway.v1.TaskService/GetTask"),
            Some(("vmware.gateway.v1.TaskService", "GetTask"))
        );
        assert_eq!(
            labels("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        assert_eq!(labels("/vmware.gateway.v1.TaskService/Nope"), None);
        assert_eq!(labels("/x"), None);
    }
}
