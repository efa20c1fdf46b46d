//! The polling engine behind WatchTask, WaitTask and WatchRunspace.
//!
//! VMware's REST APIs cannot push, so the gateway polls, once per watched resource: every
//! watcher of one resource (and every WaitTask on it) shares one poller, keyed by upstream
//! and id, which stops as soon as its last watcher leaves. Pollers of one upstream live in
//! its [`lane`](lane::Lane), whose driver polls them in rounds, merges them into batched
//! `get_many` calls where the upstream can (vCenter lists up to 1000 ids in one request),
//! and caps the requests per second. Intervals adapt: the floor after a change, growing
//! while nothing changes (see [`schedule`]).
//!
//! On a pass-through upstream pollers are shared per caller identity (each identity has
//! its own lane, polling as that identity); on an `either` upstream a caller with its own
//! identity joins the service account's poller after a [`CallerCheck`]: it reads the
//! resource itself first, and again whenever its session changes, so nobody watches what
//! they may not read.
//!
//! The engine is generic over the resource ([`Resource`]: tasks and runspaces) and the
//! source ([`Fetch`]); [`Watch`] turns one watcher's view of a poller into the events of the
//! WatchTask contract (SNAPSHOT, CHANGED, HEARTBEAT, the end after a final state, the errors);
//! the gRPC face serves it as a tonic stream (`streams` in the api module).

mod lane;
mod resource;
pub mod schedule;

pub use resource::{Fetch, Resource, Runspaces, Tasks};

use resource::Observed;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::{sync::watch, time::Instant};

use self::{
    lane::{Lane, LaneKey, Lanes, Membership},
    schedule::Settings,
};
use crate::{
    call::{self, Call},
    config::{LimitsConfig, WatchConfig},
    error::{GatewayError, Result, UpstreamError, UpstreamFailure},
    identity::{CallerIdentity, IdentityKey},
    proto,
    trace::TraceContext,
    upstream::sessions::{SessionVersion, Sessions},
};

/// Why an event is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Snapshot,
    Changed,
    Heartbeat,
}

/// One message of a watch.
#[derive(Debug, Clone)]
pub struct Event<R> {
    pub kind: EventKind,
    pub value: R,
    /// When the gateway read this state from the upstream.
    pub observed: SystemTime,
    /// The trace of the read that found it: the shared poller's own (a poll serves many
    /// callers), or a caller's whose GetTask or cancel read it.
    pub trace: Option<TraceContext>,
}

/// The resource to watch: the upstream's name, the id and where to read it.
pub struct Target<R> {
    pub upstream: String,
    pub id: String,
    pub source: Arc<dyn Fetch<R>>,
    /// Whose pollers the watcher shares: a caller identity's on a pass-through upstream,
    /// the service account's (`None`) otherwise.
    pub poller: Option<Arc<CallerIdentity>>,
    /// On an `either` upstream, the caller's own read that must succeed first.
    pub check: Option<CallerCheck>,
}

impl<R: Resource> Target<R> {
    /// The target `id` of `upstream`, read from `source`, as the call being served may
    /// watch it (see [`Target::poller`] and [`Target::check`]).
    pub fn of_call(
        upstream: &crate::upstream::Upstream,
        id: String,
        source: Arc<dyn Fetch<R>>,
    ) -> Result<Self> {
        Ok(Target {
            upstream: upstream.name.clone(),
            id,
            source,
            poller: upstream.sessions.poller_identity()?,
            check: CallerCheck::of_call(&upstream.sessions),
        })
    }
}

/// A caller's right to watch a resource on the service account's poller, proven by reading
/// it with the caller's own identity: before the first event, and again whenever the session
/// that identity uses changes (a new login, or a new session after the old one was evicted).
pub struct CallerCheck {
    /// The watch call's context (its identity and trace), for the check's reads.
    call: Call,
    identity: Arc<CallerIdentity>,
    sessions: Arc<Sessions>,
    /// The session version the last check succeeded with.
    passed: Option<Option<SessionVersion>>,
}

impl CallerCheck {
    /// The check of the call being served on `sessions`' upstream, if it needs one.
    pub fn of_call(sessions: &Arc<Sessions>) -> Option<CallerCheck> {
        let identity = sessions.checked_identity()?;
        Some(CallerCheck {
            call: call::current(),
            identity,
            sessions: sessions.clone(),
            passed: None,
        })
    }

    /// Reads the resource as the caller unless the last check still holds.
    async fn ensure<R: Resource>(&mut self, source: &dyn Fetch<R>, id: &str) -> Result<()> {
        let version = self.sessions.version(&self.identity);
        if self.passed == Some(version) && version.is_some() {
            return Ok(());
        }
        call::scope(self.call.clone(), source.get(id)).await?;
        self.passed = Some(self.sessions.version(&self.identity));
        Ok(())
    }
}

/// One watcher's wishes, as validated from its request.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchOptions {
    /// The fastest polling this watcher needs (unset = the server's minimum).
    pub min_poll_interval: Option<Duration>,
    /// As asked: unset = the server's default, zero = off.
    pub heartbeat_interval: Option<Duration>,
    /// The call's deadline: the watch ends with DEADLINE_EXCEEDED there.
    pub deadline: Option<Instant>,
}

/// The engine for all resource kinds, shared by the services.
pub struct WatchEngine {
    settings: Arc<Settings>,
    pub tasks: Engine<proto::Task>,
    pub runspaces: Engine<proto::Runspace>,
}

impl WatchEngine {
    pub fn new(cfg: &WatchConfig, limits: &LimitsConfig) -> Self {
        let settings = Arc::new(Settings {
            max_pollers: limits.max_pollers_per_upstream,
            ..Settings::from(cfg)
        });
        WatchEngine {
            tasks: Engine::new(settings.clone()),
            runspaces: Engine::new(settings.clone()),
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// The pollers of one resource kind, one lane per upstream (and per caller identity on
/// pass-through upstreams).
pub struct Engine<R: Resource> {
    settings: Arc<Settings>,
    lanes: Arc<Lanes<R>>,
}

impl<R: Resource> Engine<R> {
    pub fn new(settings: Arc<Settings>) -> Self {
        Engine {
            settings,
            lanes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<LaneKey, Arc<Lane<R>>>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(
        &self,
        target: &Target<R>,
        min_poll_interval: Option<Duration>,
    ) -> Result<Membership<R>> {
        let floor = self.settings.floor(min_poll_interval);
        // The lanes stay locked while joining, so a caller's lane that just went idle is
        // not retired under a new watcher.
        let mut lanes = self.lanes();
        let key = (
            target.upstream.clone(),
            target.poller.as_ref().map(|c| c.key()),
        );
        let lane = lanes.entry(key).or_insert_with(|| {
            let caller = target
                .poller
                .clone()
                .map(|c| (c, Arc::downgrade(&self.lanes)));
            Arc::new(Lane::new(
                &target.upstream,
                caller,
                target.source.clone(),
                self.settings.clone(),
            ))
        });
        lane.join(&target.id, floor).ok_or_else(|| {
            let what = format!("pollers of upstream '{}'", target.upstream);
            let max = self.settings.max_pollers;
            GatewayError::limit_reached(
                "max_pollers_per_upstream",
                max,
                &what,
                Some(&target.upstream),
            )
        })
    }

    /// A state read outside the engine (a GetTask, a cancel's read-back) for the pollers of
    /// `id` on `upstream` that poll as `poller` (see [`Target::poller`]), if it is watched.
    pub fn observe(&self, upstream: &str, poller: Option<IdentityKey>, id: &str, value: &R) {
        let lane = self.lanes().get(&(upstream.to_string(), poller)).cloned();
        if let Some(lane) = lane {
            lane.observe(id, value);
        }
    }

    /// Whether `id` on `upstream` is watched now by pollers that poll as `poller` (an
    /// [`observe`](Self::observe) would reach its watchers).
    pub fn is_watched(&self, upstream: &str, poller: Option<IdentityKey>, id: &str) -> bool {
        let lane = self.lanes().get(&(upstream.to_string(), poller)).cloned();
        lane.is_some_and(|lane| lane.is_watched(id))
    }

    /// Poll requests sent to `upstream` so far by its lanes still there (a batched request
    /// counts once).
    pub fn requests(&self, upstream: &str) -> u64 {
        self.lanes()
            .iter()
            .filter(|((u, _), _)| u == upstream)
            .map(|(_, l)| l.requests())
            .sum()
    }

    /// Resources being polled right now, over all upstreams and identities.
    pub fn pollers(&self) -> usize {
        self.lanes().values().map(|l| l.pollers()).sum()
    }

    /// Lanes in the engine (one per upstream polled as the service account, one per caller
    /// identity polled on pass-through upstreams).
    pub fn lane_count(&self) -> usize {
        self.lanes().len()
    }

    /// Starts watching; `project` shapes what this watcher sees (e.g. the task view), and
    /// equality is judged on what it sees. The watch ends when `stopping` turns true.
    pub fn watch(
        &self,
        mut target: Target<R>,
        opts: WatchOptions,
        stopping: watch::Receiver<bool>,
        project: impl Fn(&R) -> R + Send + Sync + 'static,
    ) -> Result<Watch<R>> {
        let heartbeat = self.settings.heartbeat(opts.heartbeat_interval);
        let check = target
            .check
            .take()
            .map(|c| (c, target.source.clone(), target.id.clone()));
        Ok(Watch {
            membership: self.join(&target, opts.min_poll_interval)?,
            check,
            project: Box::new(project),
            heartbeat,
            deadline: opts.deadline,
            stopping,
            upstream: target.upstream,
            last: None,
            last_sent: Instant::now(),
            ended: false,
        })
    }

    /// Waits until the resource reaches a final state or `until`, sharing its poller, and
    /// returns the latest state either way (also when shutdown starts); `None` when nothing
    /// was read by `until` (the caller reads it itself, under its own deadline).
    pub async fn wait(
        &self,
        mut target: Target<R>,
        until: Instant,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<Option<R>> {
        if let Some(mut check) = target.check.take() {
            check.ensure(target.source.as_ref(), &target.id).await?;
        }
        let mut membership = self.join(&target, None)?;
        loop {
            match membership.current() {
                Observed::Seen { value, .. } if value.is_final() => {
                    return Ok(Some((*value).clone()));
                }
                Observed::Failed(e) => return Err(e),
                _ => {}
            }
            if *stopping.borrow_and_update() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = stopping.changed() => {}
                alive = membership.changed() => if !alive { break },
            }
        }
        match membership.current() {
            Observed::Seen { value, .. } => Ok(Some((*value).clone())),
            Observed::Failed(e) => Err(e),
            Observed::Pending if *stopping.borrow() => Err(GatewayError::ShuttingDown),
            Observed::Pending => Ok(None),
        }
    }
}

/// One watcher: turns the shared poller's states into this watcher's events.
pub struct Watch<R: Resource> {
    membership: Membership<R>,
    /// On an `either` upstream: the caller's own read, redone when its session changes.
    check: Option<(CallerCheck, Arc<dyn Fetch<R>>, String)>,
    project: Box<dyn Fn(&R) -> R + Send + Sync>,
    heartbeat: Option<Duration>,
    deadline: Option<Instant>,
    stopping: watch::Receiver<bool>,
    upstream: String,
    /// What this watcher was last sent (SNAPSHOT or CHANGED), as it saw it.
    last: Option<R>,
    last_sent: Instant,
    ended: bool,
}

impl<R: Resource> Watch<R> {
    /// The next event, an error that ends the watch, or `None` after a final state.
    pub async fn next(&mut self) -> Option<Result<Event<R>>> {
        if self.ended {
            return None;
        }
        loop {
            if *self.stopping.borrow_and_update() {
                return self.end(GatewayError::ShuttingDown);
            }
            if let Some((check, source, id)) = &mut self.check
                && let Err(e) = check.ensure(source.as_ref(), id).await
            {
                return self.end(e);
            }
            match self.membership.current() {
                Observed::Pending => {}
                Observed::Failed(e) => return self.end(e),
                Observed::Seen { value, at, trace } => {
                    let shown = (self.project)(&value);
                    let kind = match &self.last {
                        None => Some(EventKind::Snapshot),
                        Some(last) if *last != shown => Some(EventKind::Changed),
                        Some(_) => None,
                    };
                    if let Some(kind) = kind {
                        self.ended = value.is_final();
                        return Some(Ok(self.sent(kind, shown, at, trace)));
                    }
                    if value.is_final() {
                        self.ended = true;
                        return None;
                    }
                }
            }
            let heartbeat_at = self
                .heartbeat
                .filter(|_| self.last.is_some())
                .map(|h| self.last_sent + h);
            tokio::select! {
                changed = self.stopping.changed() => {
                    if changed.is_err() {
                        // The server is gone without saying so: end like a shutdown.
                        return self.end(GatewayError::ShuttingDown);
                    }
                }
                _ = sleep_until(self.deadline) => {
                    return self.end(deadline_exceeded(&self.upstream));
                }
                alive = self.membership.changed() => {
                    if !alive {
                        return self.end(GatewayError::ShuttingDown);
                    }
                }
                _ = sleep_until(heartbeat_at) => {
                    if let Observed::Seen { value, at, trace } = self.membership.current() {
                        let shown = (self.project)(&value);
                        if self.last.as_ref() == Some(&shown) {
                            return Some(Ok(self.sent(EventKind::Heartbeat, shown, at, trace)));
                        }
                    }
                    // A change arrived together with the heartbeat: the loop sends it instead.
                }
            }
        }
    }

    fn sent(
        &mut self,
        kind: EventKind,
        shown: R,
        at: SystemTime,
        trace: Option<TraceContext>,
    ) -> Event<R> {
        self.last_sent = Instant::now();
        if kind != EventKind::Heartbeat {
            self.last = Some(shown.clone());
        }
        Event {
            kind,
            value: shown,
            observed: at,
            trace,
        }
    }

    fn end(&mut self, e: GatewayError) -> Option<Result<Event<R>>> {
        self.ended = true;
        Some(Err(e))
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// DEADLINE_EXCEEDED at the end of the caller's time (the same error a unary call gets when
/// its deadline cuts an upstream request short).
fn deadline_exceeded(upstream: &str) -> GatewayError {
    UpstreamError::new(upstream, None, UpstreamFailure::Timeout).into()
}

#[cfg(test)]
mod tests;
