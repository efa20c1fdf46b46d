//! The one HTTP client per upstream: TLS options, timeouts bounded by the caller's deadline,
//! a bound on the requests in flight (callers queue for a turn), the circuit breaker,
//! transport errors turned into `UpstreamError`, and the upstream's reachability recorded.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Uri,
    header::{ACCEPT, CONTENT_TYPE, USER_AGENT},
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::{legacy::Client, proxy::matcher::Matcher},
    rt::{TokioExecutor, TokioTimer},
};
use tokio::{
    sync::{Semaphore, SemaphorePermit},
    time::Instant,
};

use super::{
    breaker::{Breaker, BreakerSettings},
    transport::Transport,
};
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
            .get(http::header::RETRY_AFTER)?
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

/// An upstream request being built: what `HttpClient::request` starts, the adapters add
/// query, body and headers to, and `HttpClient::send` sends.
#[derive(Debug)]
pub struct Request {
    method: Method,
    /// Path and query, the upstream's base path included.
    path: String,
    headers: HeaderMap,
    body: Bytes,
    /// Why the request cannot be sent (a header value that is not one); `send` refuses it.
    invalid: Option<String>,
}

impl Request {
    fn new(method: Method, path: String) -> Self {
        Request {
            method,
            path,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            invalid: None,
        }
    }

    /// Adds the pairs to the query, form-encoded.
    pub fn query(mut self, pairs: &[(&str, &str)]) -> Self {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        if !query.is_empty() {
            self.path
                .push(if self.path.contains('?') { '&' } else { '?' });
            self.path.push_str(&query);
        }
        self
    }

    /// `body` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = bytes.into();
                self.set_default(CONTENT_TYPE, "application/json");
            }
            Err(e) => self.invalid = Some(format!("the body is not JSON: {e}")),
        }
        self
    }

    /// The pairs as a form-encoded body.
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        self.body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into();
        self.set_default(CONTENT_TYPE, "application/x-www-form-urlencoded");
        self
    }

    /// Adds a header (another value of the same name does not replace it).
    pub fn header(self, name: &str, value: &str) -> Self {
        self.add_header(name, value, false)
    }

    /// Adds a header that holds a secret: HTTP/2 keeps it out of its compression tables.
    pub fn secret_header(self, name: &str, value: &str) -> Self {
        self.add_header(name, value, true)
    }

    /// Basic authentication (RFC 7617).
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.secret_header("authorization", &["Basic ", &token].concat())
    }

    fn add_header(mut self, name: &str, value: &str, secret: bool) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(secret);
                self.headers.append(name, value);
            }
            // Never quote the value: it may be a secret.
            _ => self.invalid = Some(format!("the value of the {name} header is not valid")),
        }
        self
    }

    fn set_default(&mut self, name: HeaderName, value: &'static str) {
        self.headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
}

/// Where an upstream's requests go: scheme, host and port, and the path of its base URL
/// without the trailing `/`.
#[derive(Debug, Clone)]
struct Base {
    scheme: Scheme,
    authority: Authority,
    path: String,
}

impl Base {
    fn parse(url: &str) -> Option<Base> {
        let uri: Uri = url.parse().ok()?;
        let parts = uri.into_parts();
        let pq = parts.path_and_query;
        if pq.as_ref().is_some_and(|pq| pq.query().is_some()) {
            return None;
        }
        Some(Base {
            scheme: parts.scheme?,
            authority: parts.authority?,
            path: pq
                .map(|pq| pq.path().trim_end_matches('/').to_string())
                .unwrap_or_default(),
        })
    }

    fn uri(&self, path: &str) -> Result<Uri, String> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes()))
                .map_err(|e| format!("the request path is not valid: {e}"))?,
        );
        Uri::from_parts(parts).map_err(|e| format!("the request URL is not valid: {e}"))
    }
}

type Connector = hyper_rustls::HttpsConnector<Transport>;

const USER_AGENT_VALUE: &str = concat!("vmware-grpc-gateway/", env!("CARGO_PKG_VERSION"));

/// The HTTP side of one upstream.
pub struct HttpClient {
    /// hyper's pooled client: HTTP/1.1 connections kept warm (and HTTP/2 when the upstream's
    /// TLS offers it), over rustls. It follows no redirect (one would carry the session
    /// header elsewhere): a 3xx reaches the adapter, which calls it a bad response.
    client: Client<Connector, Full<Bytes>>,
    base: String,
    /// `base` parsed once: a request's URL is this with its path set.
    base_url: Base,
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
        Self::with_proxies(cfg, limits, &Matcher::from_env())
    }

    /// [`HttpClient::new`] with the proxy rules given instead of read from the environment.
    pub fn with_proxies(
        cfg: &UpstreamConfig,
        limits: &LimitsConfig,
        proxies: &Matcher,
    ) -> Result<Arc<Self>, ConfigError> {
        let max_requests = limits.max_upstream_requests;
        let base_url = Base::parse(&cfg.url).ok_or_else(|| {
            ConfigError::new(
                format!("upstreams.{}.url", cfg.name),
                "must be an absolute http or https URL without a query",
            )
        })?;
        if cfg.insecure {
            tracing::warn!(upstream = %cfg.name, "TLS certificate verification is OFF for this upstream (insecure = true)");
        }
        let tcp = Transport::to(&base_url.uri("/").unwrap_or_default(), proxies, &cfg.name)
            .map_err(|problem| ConfigError::new(format!("upstreams.{}", cfg.name), problem))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::trust::client_config(cfg)?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // Keep as many connections warm as requests may be in flight.
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(max_requests)
            .build(connector);
        Ok(Arc::new(Self {
            client,
            base: cfg.url.trim_end_matches('/').to_string(),
            base_url,
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
    pub fn request(&self, method: Method, path: &str) -> Request {
        let mut rb = Request::new(method, [self.base_url.path.as_str(), path].concat());
        let call = call::current();
        if let Some(trace) = call.trace {
            rb = rb.header("traceparent", &trace.child().traceparent());
            if let Some(state) = call.tracestate {
                rb = rb.header("tracestate", &state);
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
    pub async fn send(&self, endpoint: &'static str, rb: Request) -> Result<Reply, UpstreamError> {
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

    async fn send_in_turn(&self, rb: Request) -> Result<Reply, UpstreamError> {
        // A request that cannot be written says nothing of the upstream: it takes no turn
        // and no breaker ticket, and leaves the upstream's health alone.
        let request = self.http_request(rb).map_err(|problem| {
            UpstreamError::new(&self.upstream, None, UpstreamFailure::Unreachable(problem))
        })?;
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
        let result = self.send_admitted(request).await;
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

    /// The request as hyper takes it: the absolute URL, the gateway's `User-Agent`, and
    /// `Accept: */*` unless the adapter asked for something else.
    fn http_request(&self, rb: Request) -> Result<http::Request<Full<Bytes>>, String> {
        if let Some(problem) = rb.invalid {
            return Err(problem);
        }
        let mut request = http::Request::new(Full::new(rb.body));
        *request.method_mut() = rb.method;
        *request.uri_mut() = self.base_url.uri(&rb.path)?;
        let mut headers = rb.headers;
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        *request.headers_mut() = headers;
        Ok(request)
    }

    async fn send_admitted(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<Reply, UpstreamError> {
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
            let (head, mut incoming) = self.client.request(request).await?.into_parts();
            let status = head.status.as_u16();
            let mut body = bytes::BytesMut::new();
            while let Some(frame) = incoming.frame().await {
                let Ok(chunk) = frame?.into_data() else {
                    continue;
                };
                if body.len() + chunk.len() > self.max_body {
                    return Ok(Err(status));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Ok(Reply {
                status,
                headers: head.headers,
                body: body.freeze(),
            }))
        })
        .await;
        let outcome = match result {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) if is_timeout(&*e) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => Err(UpstreamFailure::Unreachable(transport_text(&*e))),
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
fn transport_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Whether a transport error is a timeout (connecting, most often).
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, UpstreamKind};

    fn client(url: &str) -> Arc<HttpClient> {
        let cfg = UpstreamConfig::new("vc1", UpstreamKind::Vsphere, url, "u", "p");
        HttpClient::new(&cfg, &Config::default().limits).unwrap()
    }

    #[test]
    fn a_request_is_the_base_path_the_path_and_the_query_form_encoded() {
        let http = client("https://vc.example.com:8443/base/");
        let rb = http
            .request(Method::GET, "/api/x?a=1")
            .query(&[("filter", "name==a b;c"), ("page", "2")]);
        let request = http.http_request(rb).unwrap();
        assert_eq!(
            request.uri().to_string(),
            "https://vc.example.com:8443/base/api/x?a=1&filter=name%3D%3Da+b%3Bc&page=2"
        );
        assert_eq!(request.headers()[ACCEPT], "*/*");
        assert_eq!(request.headers()[USER_AGENT], USER_AGENT_VALUE);
    }

    #[test]
    fn bodies_and_credentials_set_their_headers_and_secrets_stay_out_of_errors() {
        let http = client("http://127.0.0.1:1");
        let rb = http
            .request(Method::POST, "/login")
            .basic_auth("user", "pa:ss")
            .json(&serde_json::json!({"a": 1}));
        let request = http.http_request(rb).unwrap();
        let auth = &request.headers()[http::header::AUTHORIZATION];
        assert_eq!(auth, "Basic dXNlcjpwYTpzcw==");
        assert!(auth.is_sensitive());
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");

        let rb = http
            .request(Method::GET, "/api")
            .secret_header("vmware-api-session-id", "SECRET\nVALUE");
        let problem = http.http_request(rb).unwrap_err();
        assert!(problem.contains("vmware-api-session-id"), "{problem}");
        assert!(!problem.contains("SECRET"), "{problem}");
    }

    /// An HTTP CONNECT proxy on loopback; what it was asked, each request head.
    async fn connect_proxy() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        head.push(client.read_u8().await?);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head.split(' ').nth(1).unwrap_or_default().to_string();
                    log.lock().unwrap().push(head);
                    let mut upstream = tokio::net::TcpStream::connect(target).await?;
                    client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await?;
                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        (addr, asked)
    }

    #[tokio::test]
    async fn an_https_upstream_goes_through_the_proxy_the_rules_name_and_no_proxy_is_direct() {
        let opts = crate::simulator::SimOptions {
            tls: true,
            ..Default::default()
        };
        let sim = crate::simulator::VcenterSim::start(&opts).await.unwrap();
        let (proxy, asked) = connect_proxy().await;
        let mut cfg = UpstreamConfig::new("vc1", UpstreamKind::Vsphere, &sim.url(), "u", "p");
        cfg.insecure = true;
        let login = |http: &HttpClient| {
            http.request(Method::POST, "/api/session")
                .basic_auth(sim.username(), sim.password())
        };
        let limits = Config::default().limits;

        let proxies = Matcher::builder()
            .https(format!("http://gw:s3cret@{proxy}"))
            .build();
        let http = HttpClient::with_proxies(&cfg, &limits, &proxies).unwrap();
        let reply = http.send("login", login(&http)).await.unwrap();
        assert_eq!(reply.status, 201, "logged in through the tunnel");
        let heads = asked.lock().unwrap().clone();
        assert_eq!(heads.len(), 1, "{heads:?}");
        let host = sim.url().trim_start_matches("https://").to_string();
        assert!(
            heads[0].starts_with(&format!("CONNECT {host} HTTP/1.1\r\n")),
            "{}",
            heads[0]
        );
        // base64("gw:s3cret")
        assert!(
            heads[0]
                .to_ascii_lowercase()
                .contains("proxy-authorization: basic z3c6cznjcmv0"),
            "{}",
            heads[0]
        );

        let direct = Matcher::builder()
            .https(format!("http://{proxy}"))
            .no("127.0.0.1")
            .build();
        let http = HttpClient::with_proxies(&cfg, &limits, &direct).unwrap();
        assert_eq!(http.send("login", login(&http)).await.unwrap().status, 201);
        assert_eq!(
            asked.lock().unwrap().len(),
            1,
            "NO_PROXY: straight to the upstream"
        );

        let socks = Matcher::builder()
            .https(format!("socks5://{proxy}"))
            .build();
        let e = HttpClient::with_proxies(&cfg, &limits, &socks)
            .err()
            .unwrap();
        assert!(e.to_string().contains("only http:// proxies"), "{e}");
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_written_leaves_the_breaker_and_health_alone() {
        let sim = crate::simulator::VcenterSim::start(&Default::default())
            .await
            .unwrap();
        let mut cfg = UpstreamConfig::new("vc1", UpstreamKind::Vsphere, &sim.url(), "u", "p");
        cfg.breaker_failures = 1;
        let http = HttpClient::new(&cfg, &Config::default().limits).unwrap();
        let login = || {
            http.request(Method::POST, "/api/session")
                .basic_auth(sim.username(), sim.password())
        };
        assert_eq!(http.send("login", login()).await.unwrap().status, 201);
        for _ in 0..3 {
            let bad = login().header("x-bad", "line\nbreak");
            let e = http.send("login", bad).await.unwrap_err();
            assert!(
                matches!(e.failure, UpstreamFailure::Unreachable(_)),
                "{e:?}"
            );
        }
        assert!(http.health().reachable, "{:?}", http.health());
        let again = http.send("login", login()).await;
        assert_eq!(again.unwrap().status, 201, "the circuit stayed closed");
    }

    #[test]
    fn a_base_url_with_a_query_or_without_a_host_is_refused() {
        for url in ["http://vc/api?x=1", "/relative", "vc.example.com"] {
            let cfg = UpstreamConfig::new("vc1", UpstreamKind::Vsphere, url, "u", "p");
            let e = HttpClient::new(&cfg, &Config::default().limits).err();
            assert!(e.is_some(), "{url}");
        }
    }
}
