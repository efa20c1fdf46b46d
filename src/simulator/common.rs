//! The operational surface every simulated part shares: per-route request counters, the
//! fault-injection queue, the session store with idle expiry, [`SimCore`] (all of that plus the
//! clock, the standing faults and the configured credentials) and [`SimHandle`] (the core plus
//! the listener: `url`, `requests`, `inject`, `set_faults`, `logins`, `expire_sessions` and
//! the rest, implemented once).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use http::StatusCode;

use super::SimOptions;
use super::clock::SimClock;
use super::faults::{FaultCounts, FaultSettings, InvalidFaults, StandingFaults};
use super::ids;
use super::listener::{Gate, Listener};
use super::web::raw_json;

/// A poisoned lock only means a panic elsewhere mid-update of plain data; keep serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Handle the request in full (its side effects done, e.g. the runspace created), then
    /// wait this long before answering: a caller that gives up meanwhile misses the answer.
    DelayAfter(Duration),
}

/// What a queued fault leaves of a request.
#[derive(Debug)]
pub enum Entered {
    /// The fault answers it.
    Answer(Response),
    /// Handle it, then wait `delay_after` before answering.
    Handle { delay_after: Duration },
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

    /// Applies the fault queued for `route`, if any: a status answers the request, a delay
    /// sleeps first, a delay-after is left to the caller.
    pub async fn apply(&self, route: &str) -> Entered {
        let mut delay_after = Duration::ZERO;
        match self.take(route) {
            None => {}
            Some(Fault::Status { status, body }) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Entered::Answer(raw_json(status, body));
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::DelayAfter(d)) => delay_after = d,
        }
        Entered::Handle { delay_after }
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
        self.create_with_id(ids::hex(32), user)
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

    /// The ids of the live sessions (tests look for them where they must not be).
    pub fn ids(&self) -> Vec<String> {
        lock(&self.sessions).keys().cloned().collect()
    }

    /// The sessions not idle too long, as they are (nothing is touched or removed).
    pub fn unexpired(&self) -> Vec<Session> {
        let now = self.clock.now();
        lock(&self.sessions)
            .values()
            .filter(|s| now.saturating_sub(s.last_accessed) <= self.idle_timeout)
            .cloned()
            .collect()
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

// ---------------------------------------------------------------------------------------------
// The shared operational surface

/// What every simulated upstream has: clock, sessions, request counters, fault queue,
/// standing faults, the configured credentials and a login counter. Each part's handler
/// state holds one.
pub struct SimCore {
    pub clock: SimClock,
    pub sessions: SessionStore,
    pub counters: RequestCounters,
    pub faults: FaultQueue,
    pub standing: StandingFaults,
    /// The `traceparent` headers of the latest requests (tests check trace propagation).
    pub traceparents: Mutex<VecDeque<String>>,
    logins: AtomicU64,
    pub username: String,
    pub password: String,
}

impl SimCore {
    /// Remembers a request's `traceparent`, keeping the latest 64.
    pub fn saw_traceparent(&self, value: &str) {
        let mut seen = lock(&self.traceparents);
        if seen.len() == 64 {
            seen.pop_front();
        }
        seen.push_back(value.to_string());
    }

    pub fn new(opts: &SimOptions) -> Self {
        SimCore {
            clock: opts.clock.clone(),
            sessions: SessionStore::new(opts.clock.clone(), opts.session_idle_timeout),
            counters: RequestCounters::default(),
            faults: FaultQueue::default(),
            standing: StandingFaults::default(),
            traceparents: Mutex::default(),
            logins: AtomicU64::new(0),
            username: opts.username.clone(),
            password: opts.password.clone(),
        }
    }

    /// Counts a request under `route` and applies a queued fault. The shared guard middleware
    /// calls it first, so refused calls are counted and faults beat auth.
    pub async fn enter(&self, route: &str) -> Entered {
        self.counters.hit(route);
        self.faults.apply(route).await
    }

    /// The live session `id`, marked used now: `None` when unknown, idle too long, or older
    /// than the standing `session_expiry` (then it is gone for good).
    pub fn authenticate(&self, id: &str) -> Option<Session> {
        let session = self.sessions.touch(id)?;
        let expiry = self.standing.get().session_expiry;
        if !expiry.is_zero() && self.clock.now().saturating_sub(session.created) >= expiry {
            self.sessions.remove(id);
            self.standing.count_expired();
            return None;
        }
        Some(session)
    }

    /// The configured user and password, exactly.
    pub fn credentials_match(&self, user: &str, password: &str) -> bool {
        user == self.username && password == self.password
    }

    /// Creates a session after a successful login and counts the login.
    pub fn login(&self, user: &str) -> String {
        self.login_with_id(ids::hex(32), user)
    }

    /// As [`SimCore::login`], under a caller-chosen session id.
    pub fn login_with_id(&self, id: String, user: &str) -> String {
        self.logins.fetch_add(1, Ordering::Relaxed);
        self.sessions.create_with_id(id, user)
    }

    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The sessions a request could still use now: neither idle too long nor older than the
    /// standing `session_expiry` (nothing is touched or removed).
    pub fn live_sessions(&self) -> Vec<Session> {
        let expiry = self.standing.get().session_expiry;
        let now = self.clock.now();
        self.sessions
            .unexpired()
            .into_iter()
            .filter(|s| expiry.is_zero() || now.saturating_sub(s.created) < expiry)
            .collect()
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
        let gate = Gate::faults(core.standing.clone());
        let listener = Listener::start(router, tls, gate).await?;
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

    /// The `traceparent` headers of the latest requests, oldest first (at most 64).
    pub fn traceparents(&self) -> Vec<String> {
        lock(&self.core.traceparents).iter().cloned().collect()
    }

    /// The ids (tokens, API keys) of the live sessions.
    pub fn session_ids(&self) -> Vec<String> {
        self.core.sessions.ids()
    }

    /// How many sessions (tokens, API keys) are live now: not logged out, not idle too long,
    /// not past the standing `session_expiry`. Tests check with it that a client logged out.
    pub fn live_sessions(&self) -> usize {
        self.core.live_sessions().len()
    }

    /// How many live sessions (as [`SimHandle::live_sessions`]) belong to `user`, the login
    /// name as the part stores it: the Basic user on vCenter, the snapshot service and SRS,
    /// `user@org` on Cloud Director (`administrator@vsphere.local@System` for a provider).
    pub fn sessions_of(&self, user: &str) -> usize {
        self.core
            .live_sessions()
            .iter()
            .filter(|s| s.user == user)
            .count()
    }

    /// Every session (token, API key) becomes invalid; the next call with one gets 401.
    pub fn expire_sessions(&self) {
        self.core.sessions.expire_all();
    }

    /// The next request to `route` (or to any route for `"*"`) gets `fault`, once.
    pub fn inject(&self, route: &str, fault: Fault) {
        self.core.faults.push(route, fault);
    }

    /// Replaces the standing faults (the settings `simulate` takes as flags and on its
    /// control endpoint); invalid settings change nothing.
    pub fn set_faults(&self, settings: FaultSettings) -> Result<(), InvalidFaults> {
        self.core.standing.set(settings)
    }

    /// The standing faults now.
    pub fn faults(&self) -> FaultSettings {
        self.core.standing.get()
    }

    /// What the standing faults did so far (503s sent, bodies broken, ...).
    pub fn fault_counts(&self) -> FaultCounts {
        self.core.standing.counts()
    }

    /// The standing faults themselves, shared (for the control endpoint).
    pub(super) fn standing(&self) -> StandingFaults {
        self.core.standing.clone()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn live_sessions_leave_out_logged_out_idle_and_expired_ones() {
        let opts = SimOptions {
            clock: SimClock::manual(),
            session_idle_timeout: Duration::from_secs(60),
            ..SimOptions::default()
        };
        let core = SimCore::new(&opts);
        let of = |user: &str| {
            core.live_sessions()
                .iter()
                .filter(|s| s.user == user)
                .count()
        };
        let a1 = core.login("a");
        let _a2 = core.login("a");
        let b = core.login("b");
        assert_eq!((core.live_sessions().len(), of("a"), of("b")), (3, 2, 1));
        assert!(core.sessions.remove(&a1));
        assert_eq!((core.live_sessions().len(), of("a")), (2, 1));
        opts.clock.advance(Duration::from_secs(40));
        assert!(core.authenticate(&b).is_some());
        opts.clock.advance(Duration::from_secs(30));
        assert_eq!(
            (of("a"), of("b")),
            (0, 1),
            "a's idle for 70 s, b's for 30 s"
        );
        assert_eq!(core.sessions.len(), 2, "counting removes nothing");
        core.standing
            .set(FaultSettings {
                session_expiry: Duration::from_secs(70),
                ..FaultSettings::default()
            })
            .unwrap();
        assert_eq!(core.live_sessions().len(), 0, "b is 70 s old");
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

    #[test]
    fn sessions_older_than_the_standing_expiry_are_refused_however_used() {
        let opts = SimOptions {
            clock: SimClock::manual(),
            ..SimOptions::default()
        };
        let core = SimCore::new(&opts);
        let a = core.login("u");
        core.standing
            .set(FaultSettings {
                session_expiry: Duration::from_secs(10),
                ..FaultSettings::default()
            })
            .unwrap();
        for _ in 0..3 {
            opts.clock.advance(Duration::from_secs(3));
            assert!(core.authenticate(&a).is_some(), "in use, not yet 10 s old");
        }
        opts.clock.advance(Duration::from_secs(1));
        assert!(core.authenticate(&a).is_none(), "10 s old");
        assert!(core.authenticate(&a).is_none(), "gone for good");
        assert_eq!(core.standing.counts().sessions_expired, 1);
        let b = core.login("u");
        opts.clock.advance(Duration::from_secs(9));
        assert!(core.authenticate(&b).is_some());
        core.standing.set(FaultSettings::default()).unwrap();
        opts.clock.advance(Duration::from_secs(60));
        assert!(
            core.authenticate(&b).is_some(),
            "off: only the idle timeout"
        );
    }
}
