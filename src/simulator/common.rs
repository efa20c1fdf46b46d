//! Pieces every simulated upstream reuses: the listener (plain HTTP or TLS with a generated
//! self-signed certificate), per-route request counters, the fault-injection queue, a session
//! store with idle expiry, Basic-auth parsing and small HTTP helpers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};

use super::clock::SimClock;

/// A poisoned lock only means a panic elsewhere mid-update of plain data; keep serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Listener

/// A running listener. The server stops when the last clone is dropped or on `shutdown()`.
#[derive(Clone)]
pub struct Listener {
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    guard: Arc<StopOnDrop>,
}

struct StopOnDrop(axum_server::Handle<SocketAddr>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl Listener {
    /// Binds `127.0.0.1:0` and serves `router` in a spawned task (TLS with a fresh
    /// self-signed certificate for `127.0.0.1` and `localhost` when `tls`).
    pub async fn start(router: Router, tls: bool) -> std::io::Result<Listener> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = std_listener.local_addr()?;
        let handle = axum_server::Handle::<SocketAddr>::new();
        let service = router.into_make_service();
        let ca_pem = if tls {
            let (config, pem) = self_signed_config()?;
            let server = axum_server::from_tcp_rustls(
                std_listener,
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
            )?
            .handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::warn!(error = %e, "simulator listener ended");
                }
            });
            Some(pem)
        } else {
            let server = axum_server::from_tcp(std_listener)?.handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::warn!(error = %e, "simulator listener ended");
                }
            });
            None
        };
        Ok(Listener {
            addr,
            tls,
            ca_pem,
            guard: Arc::new(StopOnDrop(handle)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port` or `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The self-signed certificate (PEM) when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Stops accepting and closes connections now.
    pub fn shutdown(&self) {
        self.guard.0.shutdown();
    }
}

fn self_signed_config() -> std::io::Result<(rustls::ServerConfig, String)> {
    let io_err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| io_err(&e))?;
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| io_err(&e))?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .map_err(|e| io_err(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, pem))
}

// ---------------------------------------------------------------------------------------------
// Request counters

/// Requests seen, per route key and in total.
#[derive(Default)]
pub struct RequestCounters {
    per_route: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
}

impl RequestCounters {
    pub fn hit(&self, route: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.per_route).entry(route.to_string()).or_insert(0) += 1;
    }

    pub fn get(&self, route: &str) -> u64 {
        lock(&self.per_route).get(route).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Fault injection

/// A fault for one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with this raw body (Content-Type application/json), e.g. a vAPI
    /// error or a deliberately broken body such as `<html>oops`.
    Status { status: u16, body: String },
    /// Wait this long (tokio::time::sleep), then answer normally.
    Delay(Duration),
}

/// Route key that matches any route in [`FaultQueue::push`].
pub const ANY_ROUTE: &str = "*";

/// Queued faults, each used once by the first matching request (in queue order).
#[derive(Default)]
pub struct FaultQueue {
    queue: Mutex<VecDeque<(String, Fault)>>,
}

impl FaultQueue {
    pub fn push(&self, route: &str, fault: Fault) {
        lock(&self.queue).push_back((route.to_string(), fault));
    }

    /// Takes the first fault queued for `route` or for any route.
    pub fn take(&self, route: &str) -> Option<Fault> {
        let mut q = lock(&self.queue);
        let pos = q.iter().position(|(r, _)| r == route || r == ANY_ROUTE)?;
        q.remove(pos).map(|(_, f)| f)
    }

    /// Applies a fault: `Some(response)` ends the request; a delay sleeps and returns `None`.
    pub async fn apply(&self, route: &str) -> Option<Response> {
        match self.take(route)? {
            Fault::Status { status, body } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Some(raw_json(status, body))
            }
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// One login session; times are on the [`SimClock`].
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub created: Duration,
    pub last_accessed: Duration,
}

/// Session ids to sessions, with idle expiry measured on the `SimClock`.
pub struct SessionStore {
    sessions: Mutex<HashMap<String, Session>>,
    idle_timeout: Duration,
    clock: SimClock,
}

impl SessionStore {
    pub fn new(clock: SimClock, idle_timeout: Duration) -> Self {
        SessionStore {
            sessions: Mutex::new(HashMap::new()),
            idle_timeout,
            clock,
        }
    }

    /// Creates a session and returns its id (32 random hex digits).
    pub fn create(&self, user: &str) -> String {
        let id = random_hex(32);
        let now = self.clock.now();
        lock(&self.sessions).insert(
            id.clone(),
            Session {
                user: user.to_string(),
                created: now,
                last_accessed: now,
            },
        );
        id
    }

    /// Looks a session up and marks it used now; `None` when unknown or idle too long.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = self.clock.now();
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(id)?;
        if now.saturating_sub(session.last_accessed) > self.idle_timeout {
            sessions.remove(id);
            return None;
        }
        session.last_accessed = now;
        Some(session.clone())
    }

    pub fn remove(&self, id: &str) -> bool {
        lock(&self.sessions).remove(id).is_some()
    }

    /// Every session becomes invalid.
    pub fn expire_all(&self) {
        lock(&self.sessions).clear();
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `n` random lowercase hex digits.
pub fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

/// Parses `Authorization: Basic base64(user:password)`; `None` for anything else.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Decodes `%XX` escapes of a path segment; `None` on bad escapes or non-UTF-8 results.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// vAPI datetime: UTC, three fraction digits, `Z` (e.g. `2024-05-02T09:14:03.512Z`).
pub fn vapi_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A response with a JSON body.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    raw_json(status, body.to_string())
}

/// A response with a raw body labelled as JSON (faults may send broken bodies on purpose).
pub fn raw_json(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_parses_and_rejects() {
        // "user:pa:ss"
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:pa:ss")
        );
        assert_eq!(
            parse_basic(&v),
            Some(("user".to_string(), "pa:ss".to_string()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%2f").as_deref(), Some("a:b/"));
        assert_eq!(percent_decode("bad%2"), None);
    }

    #[test]
    fn sessions_expire_when_idle_and_on_expire_all() {
        let clock = SimClock::manual();
        let store = SessionStore::new(clock.clone(), Duration::from_secs(60));
        let a = store.create("u");
        clock.advance(Duration::from_secs(50));
        assert!(store.touch(&a).is_some());
        clock.advance(Duration::from_secs(50));
        assert!(store.touch(&a).is_some(), "touch refreshes last_accessed");
        clock.advance(Duration::from_secs(61));
        assert!(store.touch(&a).is_none());
        let b = store.create("u");
        store.expire_all();
        assert!(store.touch(&b).is_none());
    }

    #[test]
    fn faults_are_used_once_in_order() {
        let q = FaultQueue::default();
        q.push("A", Fault::Delay(Duration::from_millis(1)));
        q.push(ANY_ROUTE, Fault::Delay(Duration::from_millis(2)));
        assert!(matches!(q.take("B"), Some(Fault::Delay(d)) if d == Duration::from_millis(2)));
        assert!(q.take("B").is_none());
        assert!(q.take("A").is_some());
        assert!(q.take("A").is_none());
    }
}
