//! Service-account sessions: login on first use, one shared session per upstream, exactly
//! one fresh login when any number of concurrent calls see 401, and logout on shutdown.
//!
//! Logins are guarded against storms: one runs at a time per upstream, on its own task and
//! deadline (a caller that gives up does not abort it), and its outcome, success or
//! failure, answers every call that waited for it. After a login the upstream refused
//! (401/403: the operator's credentials are wrong), calls fail at once with LOGIN_BACKOFF for
//! a window that doubles from 5 s up to 5 min, unless the secret file changed meanwhile.
//!
//! The four upstream kinds differ only in data (where to log in, where the token comes back,
//! which header carries it), so one `Session` serves them all, driven by a `LoginFlow`.
//!
//! A session may also be a caller's own (pass-through, see [`super::sessions`]): logged in
//! with the caller's user and password, or made from a token the caller sent. A caller's
//! session shares its upstream's client and retry budget, but not its bookkeeping: its
//! failures are the caller's (a 401 is UPSTREAM_UNAUTHENTICATED, a refused login starts no
//! backoff) and do not show as the upstream's session state or last error. A logged-in
//! caller's session is logged out when the last holder drops it; a caller's token is never
//! logged out (the caller owns it).

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use http::Method;
use tokio::time::Instant;

use super::http::{Endpoint, HttpClient, Reply, Request};
use crate::{
    call,
    config::{Secret, UpstreamConfig},
    error::{Reason, UpstreamError, UpstreamFailure, UpstreamMessage},
    proto::SessionState,
    telemetry,
};

/// The first backoff window after a refused login, and the longest one.
pub const LOGIN_BACKOFF: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(300));

/// A secret as configured: read again from its file (when it came from one) before each
/// login, so a rotated secret is used without a restart.
#[derive(Clone, Debug, Default)]
pub struct Credential {
    value: Secret,
    file: Option<PathBuf>,
}

impl Credential {
    pub fn new(value: Secret, file: Option<PathBuf>) -> Self {
        Credential { value, file }
    }

    /// The secret now: the file's content when it is readable and not empty, else the value
    /// read at start.
    fn current(&self) -> Secret {
        let Some(path) = &self.file else {
            return self.value.clone();
        };
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim_end_matches(['\r', '\n']).is_empty() => {
                Secret::new(text.trim_end_matches(['\r', '\n']))
            }
            _ => self.value.clone(),
        }
    }
}

/// Turns a non-2xx answer into the upstream kind's error (vAPI, Cloud Director, SRS).
pub type ErrorParser = fn(&str, &Reply) -> UpstreamError;

/// Where the session token comes back after login.
#[derive(Debug, Clone, Copy)]
pub enum TokenSource {
    /// The body is a JSON string (vCenter, snapshot service).
    JsonStringBody,
    /// A response header (Cloud Director, SRS).
    Header(&'static str),
    /// An OAuth token response `{"access_token": ...}` (Cloud Director API tokens).
    OAuthAccessToken,
}

/// How one upstream kind logs in, presents its session and logs out.
#[derive(Debug, Clone)]
pub struct LoginFlow {
    pub login_path: String,
    pub token_source: TokenSource,
    /// Header that carries the token on later calls, and the text before the token.
    pub auth_header: &'static str,
    pub auth_prefix: &'static str,
    /// Extra headers on the login request only (Cloud Director's cloudapi `Accept`).
    pub login_headers: Vec<(&'static str, String)>,
    /// Extra headers on every other request (Cloud Director's versioned `Accept`).
    pub extra_headers: Vec<(&'static str, String)>,
    /// Logout request; `None` when the upstream has none.
    pub logout: Option<(Method, String)>,
    /// A refresh token to exchange (form-encoded `grant_type=refresh_token`) instead of Basic auth.
    pub refresh_token: Option<Credential>,
    pub parse_error: ErrorParser,
}

impl LoginFlow {
    /// A Basic-auth login at `login_path` whose token comes back from `token_source` and
    /// travels in `auth_header` as is; no logout until one is set.
    pub fn new(
        login_path: impl Into<String>,
        token_source: TokenSource,
        auth_header: &'static str,
        parse_error: ErrorParser,
    ) -> Self {
        LoginFlow {
            login_path: login_path.into(),
            token_source,
            auth_header,
            auth_prefix: "",
            login_headers: vec![],
            extra_headers: vec![],
            logout: None,
            refresh_token: None,
            parse_error,
        }
    }
}

#[derive(Clone)]
struct Token {
    generation: u64,
    value: Secret,
}

/// The last login that failed, and the backoff it started when the upstream refused it.
#[derive(Clone)]
struct Failed {
    /// The login attempt it was (see `Session::attempts`).
    attempt: u64,
    error: UpstreamError,
    /// Until when calls fail with LOGIN_BACKOFF, and the window that was; `None` for failures
    /// that are not a refusal (5xx, unreachable: the upstream's trouble, not the credentials).
    backoff: Option<(Instant, Duration)>,
    /// The secret that was refused: a different one ends the backoff.
    refused: Secret,
}

/// The first pause before a read is tried again (doubling, with jitter).
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The longest a read waits before trying again; an upstream asking for more (Retry-After)
/// gets its answer passed on, with RetryInfo, instead of a caller or poller held that long.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);
/// Retries the budget allows before any traffic earned them.
const RETRY_RESERVE: f64 = 10.0;

/// How often reads are tried again, and the budget that keeps retries a fraction of reads.
struct Retries {
    attempts: u32,
    ratio: f64,
    balance: Mutex<f64>,
}

impl Retries {
    fn new(cfg: &UpstreamConfig) -> Self {
        Retries {
            attempts: cfg.read_retries,
            ratio: cfg.read_retry_ratio,
            balance: Mutex::new(RETRY_RESERVE),
        }
    }

    /// A first attempt earns a fraction of a retry.
    fn deposit(&self) {
        if let Ok(mut b) = self.balance.lock() {
            *b = (*b + self.ratio).min(RETRY_RESERVE);
        }
    }

    /// Spends one retry, if the budget has one.
    fn withdraw(&self) -> bool {
        self.balance.lock().is_ok_and(|mut b| {
            let ok = *b >= 1.0;
            if ok {
                *b -= 1.0;
            }
            ok
        })
    }
}

/// Whose session it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Account {
    /// The upstream's service account, shared by every call that does not act as a caller.
    Service,
    /// A caller's user and password: the gateway logs in, again on 401, and out on drop.
    Caller,
    /// A caller's ready-made session or token: no login, no logout, a 401 is final.
    CallerToken,
}

/// One upstream session: the service account's, or a caller's.
pub struct Session {
    http: Arc<HttpClient>,
    flow: Arc<LoginFlow>,
    account: Account,
    user: String,
    password: Credential,
    current: Mutex<Option<Token>>,
    /// Held by the one login in flight (moved into its task).
    login_lock: Arc<tokio::sync::Mutex<()>>,
    /// Login attempts started so far; a waiter compares it to tell a login that ran meanwhile.
    attempts: AtomicU64,
    failed: Mutex<Option<Failed>>,
    generation: AtomicU64,
    state: AtomicU8,
    logins: AtomicU64,
    /// Itself, to run a login on its own task.
    me: Weak<Session>,
    /// Shared by the service account's session and its upstream's caller sessions.
    retries: Arc<Retries>,
}

impl Session {
    /// The service account's session.
    pub fn new(
        http: Arc<HttpClient>,
        flow: LoginFlow,
        cfg: &UpstreamConfig,
        user: String,
        password: Credential,
    ) -> Arc<Self> {
        let retries = Arc::new(Retries::new(cfg));
        Self::build(
            http,
            Arc::new(flow),
            Account::Service,
            user,
            password,
            None,
            retries,
        )
    }

    /// A session of a caller's own user and password (`flow` says where that user logs in),
    /// sharing this session's client and retry budget.
    pub fn caller(&self, flow: Arc<LoginFlow>, user: String, password: Secret) -> Arc<Self> {
        let password = Credential::new(password, None);
        Self::build(
            self.http.clone(),
            flow,
            Account::Caller,
            user,
            password,
            None,
            self.retries.clone(),
        )
    }

    /// A session made of a caller's own token, used as is.
    pub fn caller_token(&self, token: Secret) -> Arc<Self> {
        let token = Token {
            generation: 1,
            value: token,
        };
        Self::build(
            self.http.clone(),
            self.flow.clone(),
            Account::CallerToken,
            String::new(),
            Credential::default(),
            Some(token),
            self.retries.clone(),
        )
    }

    fn build(
        http: Arc<HttpClient>,
        flow: Arc<LoginFlow>,
        account: Account,
        user: String,
        password: Credential,
        token: Option<Token>,
        retries: Arc<Retries>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            http,
            flow,
            account,
            user,
            password,
            current: Mutex::new(token),
            login_lock: Arc::new(tokio::sync::Mutex::new(())),
            attempts: AtomicU64::new(0),
            failed: Mutex::new(None),
            generation: AtomicU64::new(0),
            state: AtomicU8::new(SessionState::None as u8),
            logins: AtomicU64::new(0),
            me: me.clone(),
            retries,
        })
    }

    /// The session of the configured service account (`username`, password).
    pub fn service_account(
        http: Arc<HttpClient>,
        flow: LoginFlow,
        cfg: &UpstreamConfig,
    ) -> Arc<Self> {
        let user = cfg.username.clone().unwrap_or_default();
        Self::new(http, flow, cfg, user, password_of(cfg))
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// How this upstream kind logs in and presents a session.
    pub fn flow(&self) -> &Arc<LoginFlow> {
        &self.flow
    }

    /// True for a caller's own session (pass-through), false for the service account's.
    pub fn is_caller(&self) -> bool {
        self.account != Account::Service
    }

    /// The user it logs in as (empty for a caller's token).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Changes with every new login (a caller's token never changes).
    pub fn generation(&self) -> u64 {
        self.current().map_or(0, |t| t.generation)
    }

    /// Records an upstream failure as the upstream's last error: only the service account's
    /// (a caller's 403 or wrong password says nothing about the upstream).
    pub fn record_error(&self, e: &UpstreamError) {
        if !self.is_caller() {
            self.http.record_error(e);
        }
    }

    pub fn state(&self) -> SessionState {
        SessionState::try_from(i32::from(self.state.load(Ordering::Relaxed)))
            .unwrap_or(SessionState::Unspecified)
    }

    fn set_state(&self, s: SessionState) {
        if self.is_caller() {
            return;
        }
        let old = self.state.swap(s as u8, Ordering::Relaxed);
        if old != s as u8 {
            let name = |raw: u8| {
                SessionState::try_from(i32::from(raw))
                    .unwrap_or(SessionState::Unspecified)
                    .as_str_name()
                    .trim_start_matches("SESSION_STATE_")
                    .to_ascii_lowercase()
            };
            let upstream = self.http.upstream().to_string();
            metrics::gauge!(telemetry::UPSTREAM_SESSION, "upstream" => upstream.clone(), "state" => name(old))
                .set(0.0);
            metrics::gauge!(telemetry::UPSTREAM_SESSION, "upstream" => upstream, "state" => name(s as u8))
                .set(1.0);
        }
    }

    fn count_login(&self, outcome: &'static str) {
        if self.is_caller() {
            return;
        }
        metrics::counter!(telemetry::UPSTREAM_LOGINS, "upstream" => self.http.upstream().to_string(), "outcome" => outcome)
            .increment(1);
    }

    /// Successful logins so far (for tests and diagnostics).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<Token> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Sends `method path` with the session, logging in first if needed and once more on 401.
    /// `customize` adds query, body and headers; it may run twice (after a re-login).
    pub async fn send(
        &self,
        method: Method,
        at: &Endpoint,
        customize: impl Fn(Request) -> Request,
    ) -> Result<Reply, UpstreamError> {
        let token = match self.current() {
            Some(t) => t,
            None => self.login_replacing(None).await?,
        };
        let reply = self
            .send_with(&token, method.clone(), at, &customize)
            .await?;
        // A caller's token is the caller's to renew: its 401 is the answer.
        if reply.status != 401 || self.account == Account::CallerToken {
            self.set_state(SessionState::Active);
            return Ok(reply);
        }
        self.set_state(SessionState::Expired);
        let token = self.login_replacing(Some(token.generation)).await?;
        let reply = self.send_with(&token, method, at, &customize).await?;
        if reply.status == 401 {
            // A fresh session was refused at once: report it, do not loop.
            self.set_state(SessionState::Expired);
        } else {
            self.set_state(SessionState::Active);
        }
        Ok(reply)
    }

    /// Like `send`, but only a 2xx answer is `Ok`; any other becomes the kind's error (vAPI,
    /// Cloud Director, SRS), recorded as the upstream's last error.
    pub async fn call(
        &self,
        method: Method,
        at: &Endpoint,
        customize: impl Fn(Request) -> Request,
    ) -> Result<Reply, UpstreamError> {
        let reply = self.send(method, at, customize).await?;
        if reply.is_success() {
            return Ok(reply);
        }
        let mut e = (self.flow.parse_error)(self.http.upstream(), &reply);
        e.as_caller = self.is_caller();
        self.record_error(&e);
        Err(e)
    }

    /// Like `call`, for a read the upstream can safely repeat (a GET, a list): after a
    /// transient failure (5xx, 429, no answer, the request timeout) it is tried again, at
    /// most `read_retries` times, backing off with jitter, within the caller's deadline and
    /// while the upstream's retry budget allows.
    pub async fn read(
        &self,
        method: Method,
        at: &Endpoint,
        customize: impl Fn(Request) -> Request,
    ) -> Result<Reply, UpstreamError> {
        self.retries.deposit();
        let mut pause = RETRY_PAUSE;
        let mut attempt = 0;
        loop {
            let result = self.call(method.clone(), at, &customize).await;
            let Err(e) = &result else { return result };
            let retryable = matches!(
                e.reason(),
                Reason::UpstreamUnavailable
                    | Reason::UpstreamUnreachable
                    | Reason::UpstreamTimeout
                    | Reason::UpstreamRateLimited
            );
            let wait = e
                .retry_after
                .unwrap_or(pause)
                .max(pause)
                .mul_f64(0.5 + fastrand::f64());
            let in_time = wait <= MAX_RETRY_WAIT
                && call::current_deadline().is_none_or(|d| Instant::now() + wait < d);
            if !(retryable && attempt < self.retries.attempts && in_time && self.retries.withdraw())
            {
                return result;
            }
            tracing::debug!(upstream = %self.http.upstream(), path = %at.path, error = %e.to_short_text(), "read retried");
            tokio::time::sleep(wait).await;
            pause *= 2;
            attempt += 1;
        }
    }

    /// The body of an answer as JSON; `what` names it in the error when it is not JSON.
    pub fn json(&self, reply: &Reply, what: &str) -> Result<serde_json::Value, UpstreamError> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            let e = UpstreamError::bad_response(
                self.http.upstream(),
                reply.status,
                format!("{what}: not JSON ({e})"),
                &reply.body,
            );
            self.record_error(&e);
            e
        })
    }

    async fn send_with(
        &self,
        token: &Token,
        method: Method,
        at: &Endpoint,
        customize: &impl Fn(Request) -> Request,
    ) -> Result<Reply, UpstreamError> {
        send_as(&self.http, &self.flow, &token.value, method, at, customize).await
    }

    /// Logs in unless another caller already replaced the `stale` session (or, with `None`,
    /// already made one): many concurrent 401s cause exactly one login. A login that failed
    /// while this call waited is its answer too, and a refused login's backoff answers at once.
    async fn login_replacing(&self, stale: Option<u64>) -> Result<Token, UpstreamError> {
        let seen = self.attempts.load(Ordering::Acquire);
        let one_at_a_time = self
            .within_deadline(self.login_lock.clone().lock_owned())
            .await?;
        if let Some(t) = self.current()
            && Some(t.generation) != stale
        {
            return Ok(t);
        }
        if let Some(failed) = self.last_failure() {
            if failed.attempt > seen {
                return Err(failed.error);
            }
            if let Some(e) = self.backing_off(&failed) {
                return Err(e);
            }
        }
        if self.account == Account::CallerToken {
            // Unreachable in practice: a token session starts with its token and keeps it.
            return Err(UpstreamError::new(
                self.http.upstream(),
                None,
                UpstreamFailure::NoCallerIdentity("the caller's session was ended".into()),
            ));
        }
        let me = self.me.upgrade().ok_or_else(|| {
            UpstreamError::new(
                self.http.upstream(),
                None,
                UpstreamFailure::Unreachable("the upstream is shutting down".into()),
            )
        })?;
        // Its own task and deadline: a caller that goes away or runs out of time does not
        // abort the login everyone else waits for.
        // It carries on the trace of the call that caused it, though.
        let caller = call::current();
        let own = call::Call {
            trace: caller.trace,
            tracestate: caller.tracestate,
            ..call::Call::default()
        };
        let login = tokio::spawn(call::scope(own, async move {
            let _held = one_at_a_time;
            me.login_now().await
        }));
        self.within_deadline(login).await?.unwrap_or_else(|e| {
            Err(UpstreamError::new(
                self.http.upstream(),
                None,
                UpstreamFailure::Unreachable(format!("the login task failed: {e}")),
            ))
        })
    }

    /// Waits for `work` no longer than the call's deadline (the work itself goes on).
    async fn within_deadline<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, UpstreamError> {
        let Some(deadline) = call::current_deadline() else {
            return Ok(work.await);
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| UpstreamError::new(self.http.upstream(), None, UpstreamFailure::Timeout))
    }

    fn last_failure(&self) -> Option<Failed> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// LOGIN_BACKOFF while a refused login's window lasts and the secret is the refused one.
    fn backing_off(&self, failed: &Failed) -> Option<UpstreamError> {
        let (until, _) = failed.backoff?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || self.secret() != failed.refused {
            return None;
        }
        let mut e = UpstreamError::new(
            self.http.upstream(),
            failed.error.http_status,
            UpstreamFailure::LoginBackoff {
                refused: failed.error.to_short_text(),
            },
        );
        e.retry_after = Some(left);
        // UpstreamService shows it: session FAILED, last_error "login refused (…), backing off".
        self.http.record_error(&e);
        Some(e)
    }

    /// The secret the next login presents (password or API token), read again from its file.
    fn secret(&self) -> Secret {
        match &self.flow.refresh_token {
            Some(t) => t.current(),
            None => self.password.current(),
        }
    }

    /// One login attempt (the caller holds the login lock), its outcome recorded for all.
    async fn login_now(&self) -> Result<Token, UpstreamError> {
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        let secret = self.secret();
        match self.login(&secret).await {
            Ok(value) => {
                let token = Token {
                    generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
                    value,
                };
                if let Ok(mut c) = self.current.lock() {
                    *c = Some(token.clone());
                }
                if let Ok(mut f) = self.failed.lock() {
                    *f = None;
                }
                self.logins.fetch_add(1, Ordering::Relaxed);
                self.count_login("ok");
                self.set_state(SessionState::Active);
                if self.is_caller() {
                    tracing::debug!(upstream = %self.http.upstream(), "logged in as a caller");
                } else {
                    tracing::info!(upstream = %self.http.upstream(), "logged in");
                }
                Ok(token)
            }
            Err(mut e) => {
                e.as_caller = self.is_caller();
                if self.is_caller() {
                    // The caller's password, the caller's answer: no backoff, no upstream state.
                    tracing::debug!(upstream = %self.http.upstream(), error = %e.to_short_text(), "caller's login failed");
                    return Err(e);
                }
                let refused = matches!(e.http_status, Some(401 | 403));
                self.count_login(if refused { "refused" } else { "failed" });
                let backoff = refused.then(|| {
                    let previous = self.last_failure().and_then(|f| f.backoff).map(|(_, w)| w);
                    let window = previous.map_or(LOGIN_BACKOFF.0, |w| (w * 2).min(LOGIN_BACKOFF.1));
                    (Instant::now() + window, window)
                });
                if let Ok(mut f) = self.failed.lock() {
                    *f = Some(Failed {
                        attempt,
                        error: e.clone(),
                        backoff,
                        refused: secret,
                    });
                }
                self.set_state(SessionState::Failed);
                self.http.record_error(&e);
                match backoff {
                    Some((_, window)) => {
                        tracing::warn!(upstream = %self.http.upstream(), error = %e.to_short_text(), backoff_s = window.as_secs(), "login refused: backing off")
                    }
                    None => {
                        tracing::warn!(upstream = %self.http.upstream(), error = %e.to_short_text(), "login failed")
                    }
                }
                Err(e)
            }
        }
    }

    async fn login(&self, secret: &Secret) -> Result<Secret, UpstreamError> {
        let mut rb = self.http.request(Method::POST, &self.flow.login_path);
        for (k, v) in &self.flow.login_headers {
            rb = rb.header(k, v);
        }
        rb = match &self.flow.refresh_token {
            Some(_) => rb.form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", secret.expose()),
            ]),
            None => rb.basic_auth(&self.user, secret.expose()),
        };
        let reply = self.http.send("login", rb).await?;
        let upstream = self.http.upstream();
        // A login answer carries the session or token: none of its body goes into an error.
        if !reply.is_success() {
            return Err((self.flow.parse_error)(upstream, &reply).without_excerpt());
        }
        let bad = |problem: &str| {
            UpstreamError::bad_response(upstream, reply.status, format!("login: {problem}"), b"")
        };
        let token = match self.flow.token_source {
            TokenSource::JsonStringBody => serde_json::from_slice::<String>(&reply.body)
                .map_err(|_| bad("the body is not a JSON string session id"))?,
            TokenSource::Header(name) => reply
                .header(name)
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no {name} header in the answer")))?,
            TokenSource::OAuthAccessToken => {
                serde_json::from_slice::<serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("access_token")?.as_str().map(str::to_string))
                    .ok_or_else(|| bad("no access_token in the token response"))?
            }
        };
        if token.is_empty() {
            return Err(bad("empty session token"));
        }
        if http::HeaderValue::from_str(&[self.flow.auth_prefix, &token].concat()).is_err() {
            return Err(bad("the session token cannot travel in an HTTP header"));
        }
        Ok(Secret::new(token))
    }

    /// Ends the session at the upstream, if there is one (best effort: shutdown goes on).
    /// A caller's token is left alone: it is the caller's.
    pub async fn logout(&self) {
        if self.account == Account::CallerToken {
            return;
        }
        let Some(token) = self.current.lock().ok().and_then(|mut c| c.take()) else {
            return;
        };
        end_session(&self.http, &self.flow, token.value).await;
        self.set_state(SessionState::None);
    }
}

impl Drop for Session {
    /// A caller's logged-in session ends at the upstream when its last holder lets go (it
    /// was evicted from the cache, and no call still uses it).
    fn drop(&mut self) {
        if self.account != Account::Caller {
            return;
        }
        let token = self.current.get_mut().ok().and_then(Option::take);
        let (Some(token), Ok(runtime)) = (token, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (http, flow) = (self.http.clone(), self.flow.clone());
        runtime.spawn(async move { end_session(&http, &flow, token.value).await });
    }
}

/// Sends `method at` presenting `token` the way `flow` says.
async fn send_as(
    http: &HttpClient,
    flow: &LoginFlow,
    token: &Secret,
    method: Method,
    at: &Endpoint,
    customize: &impl Fn(Request) -> Request,
) -> Result<Reply, UpstreamError> {
    let mut rb = http.request(method, &at.path);
    for (k, v) in &flow.extra_headers {
        rb = rb.header(k, v);
    }
    rb = customize(rb).secret_header(
        flow.auth_header,
        &[flow.auth_prefix, token.expose()].concat(),
    );
    http.send(at.template, rb).await
}

/// Logs `token` out, if the upstream kind has a logout (best effort).
async fn end_session(http: &HttpClient, flow: &LoginFlow, token: Secret) {
    let Some((method, path)) = flow.logout.clone() else {
        return;
    };
    let at = Endpoint {
        template: "logout",
        path: path.into(),
    };
    match send_as(http, flow, &token, method, &at, &|rb| rb).await {
        Ok(r) if r.is_success() => {
            tracing::info!(upstream = %http.upstream(), "logged out")
        }
        Ok(r) => {
            tracing::warn!(upstream = %http.upstream(), status = r.status, "logout refused")
        }
        Err(e) => {
            tracing::warn!(upstream = %http.upstream(), error = %e.to_short_text(), "logout failed")
        }
    }
}

/// The service account's password as configured, with its file for rotation.
pub fn password_of(cfg: &UpstreamConfig) -> Credential {
    Credential::new(cfg.password.clone(), cfg.password_file.clone())
}

/// A non-2xx answer as an `UpstreamError`: `named` is the upstream's own error kind and
/// messages when the body is the kind's error JSON; otherwise an excerpt of the body goes
/// along. Every kind's error parser ends here.
pub fn api_error(
    upstream: &str,
    reply: &Reply,
    named: Option<(String, Vec<UpstreamMessage>)>,
) -> UpstreamError {
    let (reason, messages, excerpt) = match named {
        Some((kind, messages)) => (Some(kind), messages, None),
        None => (
            None,
            vec![],
            (!reply.body.is_empty()).then(|| crate::error::excerpt(&reply.body)),
        ),
    };
    let mut e = UpstreamError::new(
        upstream,
        Some(reply.status),
        UpstreamFailure::Api {
            reason,
            messages,
            excerpt,
        },
    );
    e.retry_after = reply.retry_after();
    e
}
