//! The one HTTP client per upstream: TLS options, timeouts bounded by the caller's deadline,
//! a bound on the requests in flight (callers queue for a turn), the circuit breaker,
//! transport errors turned into `UpstreamError`, and the upstream's reachability recorded.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, header::HeaderMap};
use tokio::{
    sync::{Semaphore, SemaphorePermit},
    time::Instant,
};

use super::breaker::{Breaker, BreakerSettings};
use crate::{
    call,
    config::{ConfigError, LimitsConfig, UpstreamConfig},
    error::{UpstreamError, UpstreamFailure},
    names::path_segment,
    telemetry,
};

/// Where a request goes: its path, and the route template the path was made from, which
/// labels the request's metrics (never an id).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub template: &'static str,
    pub path: Cow<'static, str>,
}

impl Endpoint {
    /// A path without ids; it is its own template.
    pub const fn fixed(path: &'static str) -> Self {
        Endpoint {
            template: path,
            path: Cow::Borrowed(path),
        }
    }

    /// `template` with its one `{…}` placeholder replaced by `id` as one percent-encoded path
    /// segment: `with_id("/api/task/{task}", "a/b")` is `/api/task/a%2Fb`.
    pub fn with_id(template: &'static str, id: &str) -> Self {
        let path = match (template.find('{'), template.find('}')) {
            (Some(open), Some(close)) if open < close => {
                [&template[..open], &path_segment(id), &template[close + 1..]].concat()
            }
            _ => template.to_string(),
        };
        Endpoint {
            template,
            path: Cow::Owned(path),
        }
    }
}

/// What the last request to an upstream told us, for `Upstream.reachable` / `last_error`.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub reachable: bool,
    pub last_error: String,
}

/// An HTTP answer, body read whole (task and runspace bodies are small).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `Retry-After` header in seconds, when present.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(reqwest::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
            .map(Duration::from_secs)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// The HTTP side of one upstream.
pub struct HttpClient {
    client: reqwest::Client,
    base: String,
    /// `base` parsed once, and its path without the trailing `/`: a request's URL is this
    /// with its path set, instead of the whole URL parsed again on every request.
    base_url: Option<(reqwest::Url, String)>,
    upstream: String,
    timeout: Duration,
    /// Largest answer body read; a longer one is a bad response, never held whole.
    max_body: usize,
    breaker: Breaker,
    /// Metric labels: the upstream's name and kind.
    label: metrics::SharedString,
    kind: &'static str,
    /// Metric handles: requests by endpoint template and status (or failure), durations by
    /// endpoint template.
    requests: telemetry::Handles<(&'static str, Result<u16, &'static str>), metrics::Counter>,
    durations: telemetry::Handles<&'static str, metrics::Histogram>,
    /// One permit per request in flight (`limits.max_upstream_requests`).
    turns: Semaphore,
    max_requests: usize,
    health: Mutex<Health>,
}

impl HttpClient {
    pub fn new(cfg: &UpstreamConfig, limits: &LimitsConfig) -> Result<Arc<Self>, ConfigError> {
        let max_requests = limits.max_upstream_requests;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            // Keep as many connections warm as requests may be in flight.
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(max_requests)
            // A redirect would carry the session header elsewhere: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vmware-grpc-gateway/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let key = format!("upstreams.{}.ca_file", cfg.name);
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::new(&key, format!("cannot read {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ConfigError::new(&key, format!("{} is not PEM: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(ConfigError::new(
                    key,
                    format!("{} holds no certificate", path.display()),
                ));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if cfg.insecure {
            tracing::warn!(upstream = %cfg.name, "TLS certificate verification is OFF for this upstream (insecure = true)");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| {
            ConfigError::new(
                format!("upstreams.{}", cfg.name),
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
        Ok(Arc::new(Self {
            client,
            base: cfg.url.trim_end_matches('/').to_string(),
            base_url: reqwest::Url::parse(&cfg.url)
                .ok()
                .filter(|u| u.query().is_none() && u.fragment().is_none())
                .map(|u| {
                    let path = u.path().trim_end_matches('/').to_string();
                    (u, path)
                }),
            upstream: cfg.name.clone(),
            timeout: cfg.request_timeout,
            max_body: limits.max_upstream_body_bytes,
            breaker: Breaker::new(breaker_settings(cfg)?),
            turns: Semaphore::new(max_requests),
            label: metrics::SharedString::from(Arc::<str>::from(cfg.name.as_str())),
            kind: cfg.kind().as_str(),
            requests: Default::default(),
            durations: Default::default(),
            max_requests,
            health: Mutex::new(Health::default()),
        }))
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`) on this upstream, carrying the trace of the
    /// call it serves on as a child span (W3C `traceparent`, and the caller's `tracestate`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = match &self.base_url {
            // A path with a query or fragment takes the slow way, parsed whole.
            Some((base, base_path)) if !path.contains(['?', '#']) => {
                let mut url = base.clone();
                url.set_path(&format!("{base_path}{path}"));
                self.client.request(method, url)
            }
            _ => self.client.request(method, format!("{}{path}", self.base)),
        };
        let call = call::current();
        if let Some(trace) = call.trace {
            rb = rb.header("traceparent", trace.child().traceparent());
            if let Some(state) = call.tracestate {
                rb = rb.header("tracestate", &*state);
            }
        }
        rb
    }

    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn record(&self, reachable: bool, error: String) {
        if let Ok(mut h) = self.health.lock() {
            h.reachable = reachable;
            h.last_error = error;
        }
    }

    /// Records a failure the caller found in an answer (e.g. a bad body).
    pub fn record_error(&self, e: &UpstreamError) {
        self.record(
            e.http_status.is_some(),
            crate::error::clip(&e.to_short_text()),
        );
    }

    /// Sends the request within the request timeout and the caller's deadline, once it has a
    /// turn and unless the upstream's circuit breaker is open.
    /// `endpoint` is the request's route template (its metrics label).
    pub async fn send(
        &self,
        endpoint: &'static str,
        rb: RequestBuilder,
    ) -> Result<Reply, UpstreamError> {
        let started = Instant::now();
        let result = self.send_in_turn(rb).await;
        let status = match &result {
            Ok(reply) => Ok(reply.status),
            Err(e) => Err(match e.failure {
                UpstreamFailure::Timeout => "timeout",
                UpstreamFailure::CircuitOpen => "circuit_open",
                UpstreamFailure::Saturated { .. } => "queue_full",
                UpstreamFailure::BadResponse { .. } => "bad_response",
                _ => "unreachable",
            }),
        };
        let (upstream, kind) = (&self.label, self.kind);
        self.requests.with(
            (endpoint, status),
            |(_, status)| {
                let status: Cow<'static, str> = match status {
                    Ok(code) => Cow::Owned(code.to_string()),
                    Err(failure) => Cow::Borrowed(failure),
                };
                metrics::counter!(telemetry::UPSTREAM_REQUESTS, "upstream" => upstream.clone(), "kind" => kind, "endpoint" => endpoint, "status" => status)
            },
            |c| c.increment(1),
        );
        self.durations.with(
            endpoint,
            |_| metrics::histogram!(telemetry::UPSTREAM_SECONDS, "upstream" => upstream.clone(), "kind" => kind, "endpoint" => endpoint),
            |h| h.record(started.elapsed().as_secs_f64()),
        );
        result
    }

    async fn send_in_turn(&self, rb: RequestBuilder) -> Result<Reply, UpstreamError> {
        let _turn = self.turn().await?;
        let ticket = match self.breaker.admit() {
            Ok(ticket) => ticket,
            Err(wait) => {
                let mut e = UpstreamError::new(&self.upstream, None, UpstreamFailure::CircuitOpen);
                e.retry_after = Some(wait);
                self.record(false, e.to_short_text());
                return Err(e);
            }
        };
        // A timeout the caller's own deadline set says nothing of the upstream.
        let caller_bound = call::current_deadline()
            .is_some_and(|d| d.saturating_duration_since(Instant::now()) < self.timeout);
        let result = self.send_admitted(rb).await;
        let caller_cut = caller_bound
            && matches!(&result, Err(e) if matches!(e.failure, UpstreamFailure::Timeout));
        if !caller_cut {
            let healthy = match &result {
                Ok(reply) => !matches!(reply.status, 502..=504),
                Err(e) => !matches!(
                    e.failure,
                    UpstreamFailure::Unreachable(_) | UpstreamFailure::Timeout
                ),
            };
            ticket.record(healthy);
        }
        result
    }

    /// A turn to send: at most `limits.max_upstream_requests` requests are in flight to
    /// this upstream, so a burst of calls never opens a socket each. The others queue, for
    /// no longer than the caller's deadline or the request timeout; then the call is refused
    /// (LIMIT_REACHED) without sending anything.
    async fn turn(&self) -> Result<SemaphorePermit<'_>, UpstreamError> {
        if let Ok(turn) = self.turns.try_acquire() {
            return Ok(turn);
        }
        let mut until = Instant::now() + self.timeout;
        if let Some(deadline) = call::current_deadline() {
            until = until.min(deadline);
        }
        match tokio::time::timeout_at(until, self.turns.acquire()).await {
            Ok(Ok(turn)) => Ok(turn),
            _ => {
                let mut e = UpstreamError::new(
                    &self.upstream,
                    None,
                    UpstreamFailure::Saturated {
                        max: self.max_requests,
                    },
                );
                e.retry_after = Some(Duration::from_secs(1));
                Err(e)
            }
        }
    }

    async fn send_admitted(&self, rb: RequestBuilder) -> Result<Reply, UpstreamError> {
        let mut timeout = self.timeout;
        if let Some(deadline) = call::current_deadline() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UpstreamError::new(
                    &self.upstream,
                    None,
                    UpstreamFailure::Timeout,
                ));
            }
            timeout = timeout.min(left);
        }
        let result = tokio::time::timeout(timeout, async {
            let mut resp = rb.send().await?;
            let status = resp.status().as_u16();
            let headers = std::mem::take(resp.headers_mut());
            let mut body = bytes::BytesMut::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > self.max_body {
                    return Ok(Err(status));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok(Reply {
                status,
                headers,
                body: body.freeze(),
            }))
        })
        .await;
        let outcome = match result {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => Err(UpstreamFailure::Unreachable(transport_text(&e))),
            Ok(Ok(Err(status))) => {
                let e = UpstreamError::bad_response(
                    &self.upstream,
                    status,
                    format!(
                        "the answer is longer than limits.max_upstream_body_bytes = {}",
                        self.max_body
                    ),
                    b"",
                );
                self.record_error(&e);
                return Err(e);
            }
            Ok(Ok(Ok(reply))) => Ok(reply),
        };
        match outcome {
            Ok(reply) => {
                let error = if reply.is_success() {
                    String::new()
                } else {
                    format!("HTTP {}", reply.status)
                };
                self.record(true, error);
                Ok(reply)
            }
            Err(failure) => {
                let e = UpstreamError::new(&self.upstream, None, failure);
                self.record(false, e.to_short_text());
                Err(e)
            }
        }
    }
}

/// The breaker settings of one upstream, or the key that is wrong.
fn breaker_settings(cfg: &UpstreamConfig) -> Result<BreakerSettings, ConfigError> {
    BreakerSettings::new(cfg.breaker_failures, cfg.breaker_open_for).ok_or_else(|| {
        ConfigError::new(
            format!("upstreams.{}.breaker_failures", cfg.name),
            "must be at least 1, with breaker_open_for more than 0",
        )
    })
}

/// The innermost cause of a transport error: the part a human can act on.
fn transport_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}
