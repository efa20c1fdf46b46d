//! Which session a call uses towards one upstream, by its `auth` mode: the service
//! account's, or the caller's own identity (pass-through, see API.md "Caller security").
//!
//! Callers' logged-in sessions are cached by the keyed hash of their credentials, so a
//! caller's next call reuses its session instead of logging in again. The cache is bounded in
//! number (`limits.max_caller_sessions`, least recently used out first) and in time
//! (`limits.caller_session_idle` unused): an evicted session is logged out as soon as no call
//! holds it any more. A caller's own token is used for its call only and never cached.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use super::session::{LoginFlow, Session};
use crate::{
    call,
    config::{AuthMode, LimitsConfig, Secret},
    error::{UpstreamError, UpstreamFailure},
    identity::{CallerIdentity, Credentials, IdentityKey},
    telemetry,
};

/// What a call to a pass-through upstream without an identity is told.
const MISSING: &str = "send the caller's credentials in x-upstream-authorization (Basic) or a session in x-upstream-session";

/// How a caller's `user` logs in to this upstream kind: the flow to use and the user name to
/// present (Cloud Director: `user@org`, whose org decides between tenant and provider login).
pub type CallerLogin = Box<dyn Fn(&str) -> (Arc<LoginFlow>, String) + Send + Sync>;

/// What changes when an identity's session changes: a different session (a new login after
/// an eviction) or a new login of the same one. An `either` watcher redoes its check then.
pub type SessionVersion = (u64, u64);

struct Cached {
    session: Arc<Session>,
    /// Tells this session from an earlier one of the same identity.
    serial: u64,
    used: Instant,
}

/// The serial of the next cached session.
static SERIAL: AtomicU64 = AtomicU64::new(1);

/// The sessions of one upstream.
pub struct Sessions {
    mode: AuthMode,
    service: Arc<Session>,
    caller_login: CallerLogin,
    cache: Mutex<HashMap<IdentityKey, Cached>>,
    max: usize,
    idle: Duration,
    gauge: metrics::Gauge,
}

impl Sessions {
    pub fn new(
        service: Arc<Session>,
        mode: AuthMode,
        limits: &LimitsConfig,
        caller_login: CallerLogin,
    ) -> Arc<Self> {
        let upstream = service.http().upstream().to_string();
        let sessions = Arc::new(Sessions {
            mode,
            service,
            caller_login,
            cache: Mutex::new(HashMap::new()),
            max: limits.max_caller_sessions,
            idle: limits.caller_session_idle,
            gauge: metrics::gauge!(telemetry::CALLER_SESSIONS, "upstream" => upstream),
        });
        if mode != AuthMode::ServiceAccount && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep_idle(Arc::downgrade(&sessions)));
        }
        sessions
    }

    /// The service account's session (its state is the upstream's session state).
    pub fn service(&self) -> &Arc<Session> {
        &self.service
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    fn upstream(&self) -> &str {
        self.service.http().upstream()
    }

    /// The session the call being served uses.
    pub fn current(&self) -> Result<Arc<Session>, UpstreamError> {
        if self.mode == AuthMode::ServiceAccount {
            return Ok(self.service.clone());
        }
        match call::current_identity() {
            Some(identity) => self.of(&identity),
            None if self.mode == AuthMode::Either => Ok(self.service.clone()),
            None => Err(self.no_identity(MISSING)),
        }
    }

    /// Whose poller a watcher of the call being served joins: its own identity's on a
    /// `pass_through` upstream (pollers are shared only per identity), else the service
    /// account's (`None`).
    pub fn poller_identity(&self) -> Result<Option<Arc<CallerIdentity>>, UpstreamError> {
        if self.mode != AuthMode::PassThrough {
            return Ok(None);
        }
        match call::current_identity() {
            None => Err(self.no_identity(MISSING)),
            Some(identity) => match identity.credentials() {
                Credentials::Unusable(why) => Err(self.no_identity(why)),
                _ => Ok(Some(identity)),
            },
        }
    }

    /// The key of the lane whose pollers share what the call being served reads (see
    /// [`Self::poller_identity`]).
    pub fn poller_key(&self) -> Option<IdentityKey> {
        (self.mode == AuthMode::PassThrough)
            .then(call::current_identity)
            .flatten()
            .map(|c| c.key())
    }

    /// On an `either` upstream, the identity of a caller that sent one: it must read a
    /// resource itself before it joins the service account's poller of it.
    pub fn checked_identity(&self) -> Option<Arc<CallerIdentity>> {
        (self.mode == AuthMode::Either)
            .then(call::current_identity)
            .flatten()
    }

    /// The version of the session `identity` uses now; `None` while it has none.
    pub fn version(&self, identity: &CallerIdentity) -> Option<SessionVersion> {
        match identity.credentials() {
            Credentials::Basic { .. } => self
                .lock()
                .get(&identity.key())
                .map(|c| (c.serial, c.session.generation())),
            // A token is the same session for the whole call.
            Credentials::Token(_) | Credentials::Unusable(_) => Some((0, 0)),
        }
    }

    fn of(&self, identity: &CallerIdentity) -> Result<Arc<Session>, UpstreamError> {
        match identity.credentials() {
            Credentials::Unusable(why) => Err(self.no_identity(why)),
            Credentials::Token(token) => Ok(self.service.caller_token(token.clone())),
            Credentials::Basic { user, password } => {
                Ok(self.cached(identity.key(), user, password))
            }
        }
    }

    /// The cached session of `key`, or a new one (not logged in yet: its first call does).
    fn cached(&self, key: IdentityKey, user: &str, password: &Secret) -> Arc<Session> {
        let now = Instant::now();
        let mut cache = self.lock();
        if let Some(c) = cache.get_mut(&key) {
            c.used = now;
            return c.session.clone();
        }
        cache.retain(|_, c| now.duration_since(c.used) < self.idle);
        if cache.len() >= self.max
            && let Some(oldest) = cache.iter().min_by_key(|(_, c)| c.used).map(|(k, _)| *k)
        {
            cache.remove(&oldest);
        }
        let (flow, login_user) = (self.caller_login)(user);
        let session = self.service.caller(flow, login_user, password.clone());
        cache.insert(
            key,
            Cached {
                session: session.clone(),
                serial: SERIAL.fetch_add(1, Ordering::Relaxed),
                used: now,
            },
        );
        self.gauge.set(cache.len() as f64);
        session
    }

    /// Drops the sessions unused for `limits.caller_session_idle` (logged out once no call
    /// holds them).
    fn sweep(&self) {
        let now = Instant::now();
        let mut cache = self.lock();
        cache.retain(|_, c| now.duration_since(c.used) < self.idle);
        self.gauge.set(cache.len() as f64);
    }

    /// Logs every session out: the service account's and the cached callers' (shutdown).
    pub async fn logout_all(&self) {
        let callers: Vec<Arc<Session>> = {
            let mut cache = self.lock();
            self.gauge.set(0.0);
            cache.drain().map(|(_, c)| c.session).collect()
        };
        let service = std::iter::once(&self.service);
        futures_util::future::join_all(service.chain(&callers).map(|s| s.logout())).await;
    }

    /// Callers' sessions cached now.
    pub fn cached_sessions(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IdentityKey, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn no_identity(&self, why: &str) -> UpstreamError {
        let mut e = UpstreamError::new(
            self.upstream(),
            None,
            UpstreamFailure::NoCallerIdentity(why.to_string()),
        );
        e.as_caller = true;
        e
    }
}

/// Sweeps idle sessions out every half idle time while the upstream's sessions exist.
async fn sweep_idle(sessions: Weak<Sessions>) {
    loop {
        let Some(every) = sessions.upgrade().map(|s| s.idle / 2) else {
            return;
        };
        tokio::time::sleep(every.max(Duration::from_millis(10))).await;
        match sessions.upgrade() {
            Some(s) => s.sweep(),
            None => return,
        }
    }
}
