//! Pieces every simulated upstream reuses: the listener (plain HTTP or TLS with a generated
//! self-signed certificate), per-route request counters, the fault-injection queue, a session
//! store with idle expiry, [`SimCore`] / [`SimHandle`] (the operational surface every part
//! shares: counters, faults, sessions, clock, credentials), Basic-auth and query parsing, small
//! HTTP helpers, and in [`vapi`] the vAPI wire format shared by vCenter and the snapshot service.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::response::Response;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

use super::SimOptions;
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
        self.create_with_id(random_hex(32), user)
    }

    /// Creates a session under a caller-chosen id (e.g. a JWT-shaped token) and returns it.
    pub fn create_with_id(&self, id: String, user: &str) -> String {
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
// The shared operational surface

/// What every simulated upstream has: clock, sessions, request counters, fault queue, the
/// configured credentials and a login counter. Each part's handler state holds one.
pub struct SimCore {
    pub clock: SimClock,
    pub sessions: SessionStore,
    pub counters: RequestCounters,
    pub faults: FaultQueue,
    logins: AtomicU64,
    pub username: String,
    pub password: String,
}

impl SimCore {
    pub fn new(opts: &SimOptions) -> Self {
        SimCore {
            clock: opts.clock.clone(),
            sessions: SessionStore::new(opts.clock.clone(), opts.session_idle_timeout),
            counters: RequestCounters::default(),
            faults: FaultQueue::default(),
            logins: AtomicU64::new(0),
            username: opts.username.clone(),
            password: opts.password.clone(),
        }
    }

    /// Counts a request under `route` and applies a queued fault (`Some` ends the request).
    /// Called first in every handler, so refused calls are counted and faults beat auth.
    pub async fn enter(&self, route: &str) -> Option<Response> {
        self.counters.hit(route);
        self.faults.apply(route).await
    }

    /// The configured user and password, exactly.
    pub fn credentials_match(&self, user: &str, password: &str) -> bool {
        user == self.username && password == self.password
    }

    /// Creates a session after a successful login and counts the login.
    pub fn login(&self, user: &str) -> String {
        self.login_with_id(random_hex(32), user)
    }

    /// As [`SimCore::login`], under a caller-chosen session id.
    pub fn login_with_id(&self, id: String, user: &str) -> String {
        self.logins.fetch_add(1, Ordering::Relaxed);
        self.sessions.create_with_id(id, user)
    }

    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }
}

/// A running part: its core and its listener. Every part dereferences to one, so `url`,
/// `requests`, `inject`, `expire_sessions`, `logins` and the rest exist once, here.
#[derive(Clone)]
pub struct SimHandle {
    core: Arc<SimCore>,
    listener: Listener,
}

impl SimHandle {
    /// Serves `router` on a fresh `127.0.0.1:0` listener.
    pub async fn start(
        core: Arc<SimCore>,
        router: Router,
        tls: bool,
        name: &str,
    ) -> std::io::Result<SimHandle> {
        let listener = Listener::start(router, tls).await?;
        tracing::info!(url = %listener.url(), "simulated {name} listening");
        Ok(SimHandle { core, listener })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (each part documents what lives below it).
    pub fn url(&self) -> String {
        self.listener.url()
    }

    /// The self-signed certificate (PEM) when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.listener.ca_pem()
    }

    pub fn clock(&self) -> &SimClock {
        &self.core.clock
    }

    /// Requests seen for one route key (see each part's `ROUTE_*` constants).
    pub fn requests(&self, route: &str) -> u64 {
        self.core.counters.get(route)
    }

    pub fn total_requests(&self) -> u64 {
        self.core.counters.total()
    }

    /// Successful logins (each part documents which calls count).
    pub fn logins(&self) -> u64 {
        self.core.logins()
    }

    /// Every session (token, API key) becomes invalid; the next call with one gets 401.
    pub fn expire_sessions(&self) {
        self.core.sessions.expire_all();
    }

    /// The next request to `route` (or to any route for `"*"`) gets `fault`, once.
    pub fn inject(&self, route: &str, fault: Fault) {
        self.core.faults.push(route, fault);
    }

    pub fn username(&self) -> &str {
        &self.core.username
    }

    pub fn password(&self) -> &str {
        &self.core.password
    }

    /// Stops serving now (also happens when the last clone is dropped).
    pub fn shutdown(&self) {
        self.listener.shutdown();
    }
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("url", &self.url())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

/// Query pairs in order, repeated keys kept (`?a=1&a=2` gives two pairs), form-decoded.
/// A malformed query string counts as empty.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    match Query::<Vec<(String, String)>>::try_from_uri(uri) {
        Ok(Query(q)) => q,
        Err(_) => Vec::new(),
    }
}

/// The first value of header `name` as text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Authorization: Basic` credentials of a request.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    header_str(headers, header::AUTHORIZATION.as_str()).and_then(parse_basic)
}

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

/// Percent-encodes everything but RFC 3986 unreserved characters (for query values in links).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses an `application/x-www-form-urlencoded` body into pairs (`+` is a space);
/// `None` on bad escapes or non-UTF-8.
pub fn parse_form(body: &str) -> Option<Vec<(String, String)>> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| percent_decode(&s.replace('+', " "));
            Some((dec(k)?, dec(v)?))
        })
        .collect()
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

// ---------------------------------------------------------------------------------------------
// vAPI

/// The vAPI `/api` wire format shared by the simulated vCenter and snapshot service: error
/// bodies, the Basic → session-id login, `Cis.Task.Info`-shaped task rendering and task-list
/// filtering (sections 2–4 of `UPSTREAM_APIS.md`).
pub mod vapi {
    use axum::response::Response;
    use http::{HeaderMap, HeaderValue, StatusCode, header};
    use serde_json::{Map, Value, json};

    use super::{Session, SimCore, basic_credentials, empty, header_str, json as json_resp};
    use crate::simulator::tasks::{TaskSnapshot, TaskStatus, TaskStore};

    /// The session header of the vAPI `/api` endpoints.
    pub const SESSION_HEADER: &str = "vmware-api-session-id";
    /// At most this many tasks in one list answer (vAPI task lists have no paging).
    pub const LIST_LIMIT: usize = 1000;
    const UNAUTHENTICATED_CHALLENGE: &str = "Basic realm=\"VAPI endpoint\"";

    // --- sessions

    /// `POST .../session(s)` with Basic: `201` and the session id as a JSON string.
    pub fn login(core: &SimCore, headers: &HeaderMap) -> Response {
        match basic_credentials(headers) {
            Some((user, password)) if core.credentials_match(&user, &password) => {
                json_resp(StatusCode::CREATED, &Value::String(core.login(&user)))
            }
            _ => unauthenticated(),
        }
    }

    /// The live session named by the session header (refreshing its idle timer).
    pub fn authenticate(core: &SimCore, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = header_str(headers, SESSION_HEADER)?;
        core.sessions.touch(id).map(|s| (id.to_string(), s))
    }

    /// `GET .../session(s)`: `{user, created_time, last_accessed_time}`.
    pub fn session_info(core: &SimCore, session: &Session) -> Response {
        json_resp(
            StatusCode::OK,
            &json!({
                "user": session.user,
                "created_time": super::vapi_datetime(core.clock.wall(session.created)),
                "last_accessed_time": super::vapi_datetime(core.clock.wall(session.last_accessed)),
            }),
        )
    }

    /// `DELETE .../session(s)`: `204`.
    pub fn logout(core: &SimCore, session_id: &str) -> Response {
        core.sessions.remove(session_id);
        empty(StatusCode::NO_CONTENT)
    }

    // --- tasks

    /// `Cis.Tasks.GetSpec` / `result_spec` flags.
    #[derive(Default, Clone, Copy)]
    pub struct GetSpec {
        pub return_all: bool,
        pub exclude_result: bool,
    }

    /// A task-list filter (`Cis.Tasks.FilterSpec` / snapservice query): `None` = field absent
    /// (matches everything); AND across fields, OR within one.
    #[derive(Default)]
    pub struct TaskFilter {
        pub tasks: Option<Vec<String>>,
        pub services: Option<Vec<String>>,
        pub operations: Option<Vec<String>>,
        pub status: Option<Vec<TaskStatus>>,
        pub targets: Option<Vec<(String, String)>>,
        pub users: Option<Vec<String>>,
    }

    impl TaskFilter {
        pub fn matches(&self, s: &TaskSnapshot) -> bool {
            fn any<T: PartialEq>(set: &Option<Vec<T>>, v: &T) -> bool {
                set.as_ref()
                    .is_none_or(|set| set.is_empty() || set.contains(v))
            }
            let opt_any = |set: &Option<Vec<String>>, v: &Option<String>| match set {
                Some(set) if !set.is_empty() => v.as_ref().is_some_and(|v| set.contains(v)),
                _ => true,
            };
            let targets_ok = match &self.targets {
                Some(set) if !set.is_empty() => s.target.as_ref().is_some_and(|t| set.contains(t)),
                _ => true,
            };
            any(&self.tasks, &s.id)
                && any(&self.services, &s.service)
                && any(&self.operations, &s.operation)
                && any(&self.status, &s.status)
                && targets_ok
                && opt_any(&self.users, &s.user)
        }
    }

    /// Parses status names (exact vAPI spelling); `field` names the parameter in the message.
    pub fn parse_statuses(values: &[String], field: &str) -> Result<Vec<TaskStatus>, String> {
        values
            .iter()
            .map(|s| {
                TaskStatus::from_vapi(s).ok_or_else(|| format!("Invalid value '{s}' in {field}."))
            })
            .collect()
    }

    /// The tasks a list call answers, or its error response (boxed: it is large):
    /// `400 INVALID_ARGUMENT` without a tasks or services filter, `500 RESOURCE_INACCESSIBLE`
    /// over [`LIST_LIMIT`] matches.
    /// `id_prefix` is the service's message-id prefix (e.g. `com.vmware.api.cis.tasks`).
    pub fn select(
        store: &TaskStore,
        filter: &TaskFilter,
        id_prefix: &str,
        missing_filter_text: &str,
    ) -> Result<Vec<TaskSnapshot>, Box<Response>> {
        let non_empty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
        if !non_empty(&filter.tasks) && !non_empty(&filter.services) {
            return Err(Box::new(invalid_argument(missing_filter_text)));
        }
        let matched: Vec<TaskSnapshot> = store
            .snapshots()
            .into_iter()
            .filter(|s| filter.matches(s))
            .collect();
        if matched.len() > LIST_LIMIT {
            return Err(Box::new(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "RESOURCE_INACCESSIBLE",
                &format!("{id_prefix}.list.too_many"),
                &format!(
                    "More than {LIST_LIMIT} tasks match the filter ({}).",
                    matched.len()
                ),
                &[&matched.len().to_string()],
            )));
        }
        Ok(matched)
    }

    /// A `LocalizableMessage`.
    pub fn message(id: &str, text: &str, args: &[&str]) -> Value {
        json!({"id": id, "default_message": text, "args": args})
    }

    /// Renders a snapshot as `Cis.Task.Info` (the snapshot service adds `vc_task`), with
    /// exactly the fields of the status table in `UPSTREAM_APIS.md` 2.5.
    pub fn task_info(s: &TaskSnapshot, spec: GetSpec) -> Value {
        let op_id = format!("{}.{}", s.service, s.operation);
        let mut description = message(&op_id, &s.description, &[]);
        if spec.return_all {
            description["localized"] = Value::String(s.description.clone());
        }
        let mut info = Map::new();
        info.insert("description".into(), description);
        info.insert("service".into(), json!(s.service));
        info.insert("operation".into(), json!(s.operation));
        if let Some(parent) = &s.parent {
            info.insert("parent".into(), json!(parent));
        }
        if let Some((ty, id)) = &s.target {
            info.insert("target".into(), json!({"type": ty, "id": id}));
        }
        info.insert("status".into(), json!(s.status.as_vapi()));
        info.insert("cancelable".into(), json!(s.cancelable));
        if let Some(user) = &s.user {
            info.insert("user".into(), json!(user));
        }
        if s.status != TaskStatus::Pending {
            let pct = s.progress.to_string();
            let progress_message = match s.status {
                TaskStatus::Running => message(
                    &format!("{op_id}.progress"),
                    &format!("{}: {pct}% complete", s.description),
                    &[&pct],
                ),
                TaskStatus::Blocked => message(
                    &format!("{op_id}.blocked"),
                    "Waiting for resources to become available",
                    &[],
                ),
                TaskStatus::Succeeded => message(&format!("{op_id}.done"), "Completed", &[]),
                _ if s.canceled => message(&format!("{op_id}.canceled"), "Canceled", &[]),
                _ => message(&format!("{op_id}.failed"), "Failed", &[]),
            };
            info.insert(
                "progress".into(),
                json!({"total": 100, "completed": s.progress, "message": progress_message}),
            );
            if let Some(start) = s.start_time {
                info.insert("start_time".into(), json!(super::vapi_datetime(start)));
            }
        }
        if s.status.is_terminal() {
            if let Some(end) = s.end_time {
                info.insert("end_time".into(), json!(super::vapi_datetime(end)));
            }
        }
        if s.status == TaskStatus::Failed {
            if let Some(err) = &s.error {
                let messages: Vec<Value> = err
                    .messages
                    .iter()
                    .map(|(id, text)| message(id, text, &[]))
                    .collect();
                info.insert(
                    "error".into(),
                    json!({"error_type": err.error_type, "messages": messages}),
                );
            }
        }
        // A result only once SUCCEEDED (the engine has none before), unless the caller said no.
        if s.status == TaskStatus::Succeeded && !spec.exclude_result {
            if let Some(result) = &s.result {
                info.insert("result".into(), result.clone());
            }
        }
        Value::Object(info)
    }

    // --- errors

    /// A vAPI error response (`Vapi.Std.Errors.Error`) with one message.
    pub fn error(
        status: StatusCode,
        error_type: &str,
        id: &str,
        text: &str,
        args: &[&str],
    ) -> Response {
        json_resp(status, &error_body(error_type, id, text, args))
    }

    pub fn error_body(error_type: &str, id: &str, text: &str, args: &[&str]) -> Value {
        json!({
            "error_type": error_type,
            "messages": [{"id": id, "default_message": text, "args": args, "localized": text}],
        })
    }

    /// `404 NOT_FOUND` for task `id`; `message_id` e.g. `com.vmware.api.cis.tasks.not_found`.
    pub fn not_found(id: &str, message_id: &str) -> Response {
        let text = format!("Task {id} does not exist.");
        let mut body = error_body("NOT_FOUND", message_id, &text, &[id]);
        body["messages"][0]["params"] = json!({"task": {"s": id}});
        json_resp(StatusCode::NOT_FOUND, &body)
    }

    pub fn invalid_argument(text: &str) -> Response {
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "com.vmware.vapi.std.errors.invalid_argument",
            text,
            &[],
        )
    }

    /// `404 OPERATION_NOT_FOUND` for a path or method the service does not have.
    pub fn operation_not_found(method: &http::Method, path: &str) -> Response {
        error(
            StatusCode::NOT_FOUND,
            "OPERATION_NOT_FOUND",
            "vapi.method.input.invalid.operation",
            &format!("Operation {method} {path} not found."),
            &[],
        )
    }

    /// A routing branch that cannot be reached; a safe answer instead of a panic.
    pub fn internal_routing_error() -> Response {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERROR",
            "com.vmware.vapi.simulator.internal",
            "Internal simulator routing error.",
            &[],
        )
    }

    /// `401 UNAUTHENTICATED` with the challenge in the body and in `WWW-Authenticate`.
    pub fn unauthenticated() -> Response {
        let mut body = error_body(
            "UNAUTHENTICATED",
            "vapi.method.authentication.required",
            "Authentication required.",
            &[],
        );
        body["challenge"] = json!(UNAUTHENTICATED_CHALLENGE);
        let mut resp = json_resp(StatusCode::UNAUTHORIZED, &body);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(UNAUTHENTICATED_CHALLENGE),
        );
        resp
    }
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
    fn percent_encoding_round_trips_and_forms_parse() {
        let raw = "(status==running;name==a b),x+y";
        assert_eq!(percent_decode(&percent_encode(raw)).as_deref(), Some(raw));
        assert_eq!(
            parse_form("grant_type=refresh_token&refresh_token=a%2Bb+c"),
            Some(vec![
                ("grant_type".to_string(), "refresh_token".to_string()),
                ("refresh_token".to_string(), "a+b c".to_string()),
            ])
        );
        assert_eq!(parse_form("a=%zz"), None);
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
