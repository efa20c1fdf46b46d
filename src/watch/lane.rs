//! One upstream's pollers: the shared state of every watched resource of that upstream and
//! the driver task that polls them in rounds.
//!
//! Every watched resource is one entry (its poller), shared by all its watchers through a
//! `tokio::sync::watch` channel that holds only the latest state, so a slow reader never
//! queues. The driver runs while the lane has entries: each round it takes the entries that
//! are due, merges them into `get_many` calls when the source batches (a single id is a
//! plain `get`), paces the requests to the upstream's cap, and sleeps until the next entry
//! is due or something changes.
//!
//! A lane polls as the service account, or (on a pass-through upstream) as one caller's
//! identity: its polls run with that identity in scope, so pollers are shared only among
//! watchers of one identity. A caller's lane leaves the engine when its last poller stops.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use futures_util::future::BoxFuture;
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use super::{
    resource::{Fetch, Observed, Resource},
    schedule::{Pacer, Settings},
};
use crate::{
    call,
    error::{GatewayError, Reason, UpstreamError, UpstreamFailure},
    identity::{CallerIdentity, IdentityKey},
    telemetry,
};

/// A lane's key in its engine: its upstream, and whose identity it polls as (`None`: the
/// service account's).
pub(crate) type LaneKey = (String, Option<IdentityKey>);

/// The lanes of one engine by key.
pub(crate) type Lanes<R> = Mutex<HashMap<LaneKey, Arc<Lane<R>>>>;

/// The pollers of one upstream (and one identity).
pub(crate) struct Lane<R: Resource> {
    upstream: String,
    /// The caller whose identity the polls use, and the engine's lanes to leave when idle.
    caller: Option<(Arc<CallerIdentity>, std::sync::Weak<Lanes<R>>)>,
    source: Arc<dyn Fetch<R>>,
    settings: Arc<Settings>,
    state: Mutex<State<R>>,
    /// Wakes the driver: a new watcher, a finished poll, the last watcher gone.
    wake: Notify,
    /// Poll requests sent to the upstream (each `get` or `get_many` counts one).
    requests: AtomicU64,
    metrics: LaneMetrics,
}

/// The lane's metrics, registered once with its upstream's label.
struct LaneMetrics {
    pollers: metrics::Gauge,
    polls: metrics::Counter,
    resources: metrics::Histogram,
    saved: metrics::Counter,
}

impl LaneMetrics {
    fn new(upstream: &str) -> Self {
        let label = || ("upstream", upstream.to_string());
        LaneMetrics {
            pollers: metrics::gauge!(telemetry::WATCH_POLLERS, &[label()]),
            polls: metrics::counter!(telemetry::WATCH_POLLS, &[label()]),
            resources: metrics::histogram!(telemetry::WATCH_POLL_RESOURCES, &[label()]),
            saved: metrics::counter!(telemetry::WATCH_SAVED, &[label()]),
        }
    }
}

struct State<R> {
    entries: HashMap<String, Entry<R>>,
    driving: bool,
    next_epoch: u64,
}

/// One watched resource: its latest state and its schedule.
struct Entry<R> {
    /// Tells this entry from an earlier one of the same id (a poll answer for a removed entry
    /// must not land on its successor).
    epoch: u64,
    tx: watch::Sender<Observed<R>>,
    /// The floor of every current watcher (a multiset: equal floors repeat).
    floors: Vec<Duration>,
    interval: Duration,
    next_due: Instant,
    last_poll: Option<Instant>,
    in_flight: bool,
    /// Final state or error published: no more polls.
    finished: bool,
    failures: u32,
    /// When the gateway last read the resource outside this poller (a GetTask, a cancel's
    /// read-back): a poll that started earlier is older news and is dropped.
    read_elsewhere: Option<Instant>,
}

impl<R> Entry<R> {
    fn schedulable(&self) -> bool {
        !self.in_flight && !self.finished
    }

    /// The smallest floor among the current watchers: one slow watcher never slows another.
    fn floor(&self, settings: &Settings) -> Duration {
        self.floors.iter().min().copied().unwrap_or(settings.min)
    }
}

/// One watcher's hold on an entry; dropping it leaves, and the last to leave stops the poller.
pub(crate) struct Membership<R: Resource> {
    lane: Arc<Lane<R>>,
    id: String,
    epoch: u64,
    floor: Duration,
    rx: Option<watch::Receiver<Observed<R>>>,
}

impl<R: Resource> Membership<R> {
    /// The latest state, marked as seen.
    pub(crate) fn current(&mut self) -> Observed<R> {
        match &mut self.rx {
            Some(rx) => rx.borrow_and_update().clone(),
            None => Observed::Pending,
        }
    }

    /// Waits for a state newer than the last `current()`; false once the poller is gone.
    pub(crate) async fn changed(&mut self) -> bool {
        match &mut self.rx {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        }
    }
}

impl<R: Resource> Drop for Membership<R> {
    fn drop(&mut self) {
        // The receiver goes first, so the count below no longer includes it.
        drop(self.rx.take());
        self.lane.leave(&self.id, self.epoch, self.floor);
    }
}

/// What one poll said about one id.
enum Outcome<R> {
    Found(R),
    Failed(GatewayError),
}

impl<R: Resource> Lane<R> {
    pub(crate) fn new(
        upstream: &str,
        caller: Option<(Arc<CallerIdentity>, std::sync::Weak<Lanes<R>>)>,
        source: Arc<dyn Fetch<R>>,
        settings: Arc<Settings>,
    ) -> Self {
        Lane {
            upstream: upstream.to_string(),
            caller,
            source,
            settings,
            state: Mutex::new(State {
                entries: HashMap::new(),
                driving: false,
                next_epoch: 0,
            }),
            wake: Notify::new(),
            requests: AtomicU64::new(0),
            metrics: LaneMetrics::new(upstream),
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Resources polled right now.
    pub(crate) fn pollers(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        // A poisoned lock only means a panic elsewhere mid-update of plain values; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the poller of `id` (starting it if there is none) with this watcher's floor;
    /// `None` when a new poller would pass `settings.max_pollers`.
    pub(crate) fn join(self: &Arc<Self>, id: &str, floor: Duration) -> Option<Membership<R>> {
        let now = Instant::now();
        let mut st = self.lock();
        if st.entries.len() >= self.settings.max_pollers && !st.entries.contains_key(id) {
            return None;
        }
        let epoch = st.next_epoch;
        st.next_epoch += 1;
        if !st.entries.contains_key(id) {
            self.metrics.pollers.increment(1.0);
        }
        let entry = st.entries.entry(id.to_string()).or_insert_with(|| Entry {
            epoch,
            tx: watch::channel(Observed::Pending).0,
            floors: Vec::new(),
            interval: floor,
            next_due: now,
            last_poll: None,
            in_flight: false,
            finished: false,
            failures: 0,
            read_elsewhere: None,
        });
        entry.floors.push(floor);
        // A faster newcomer restarts the backoff so it sees changes at its own pace.
        if floor < entry.interval && !entry.finished {
            entry.interval = entry.floor(&self.settings);
            if let Some(last) = entry.last_poll {
                entry.next_due = entry.next_due.min(last + entry.interval);
            }
        }
        let membership = Membership {
            lane: self.clone(),
            id: id.to_string(),
            epoch: entry.epoch,
            floor,
            rx: Some(entry.tx.subscribe()),
        };
        let start = !st.driving;
        st.driving = true;
        drop(st);
        if start {
            tokio::spawn(drive(self.clone()));
        } else {
            self.wake.notify_one();
        }
        Some(membership)
    }

    fn leave(&self, id: &str, epoch: u64, floor: Duration) {
        let mut st = self.lock();
        let Some(entry) = st.entries.get_mut(id).filter(|e| e.epoch == epoch) else {
            return;
        };
        if let Some(pos) = entry.floors.iter().position(|f| *f == floor) {
            entry.floors.swap_remove(pos);
        }
        if entry.tx.receiver_count() == 0 {
            st.entries.remove(id);
            self.metrics.pollers.decrement(1.0);
            if st.entries.is_empty() {
                drop(st);
                self.wake.notify_one();
            }
        }
    }

    /// The requests of this round (each a list of `(id, epoch)`), marked in flight, and when
    /// the next entry falls due; `None` when no entry is left (the driver stops).
    #[allow(clippy::type_complexity)]
    fn plan(&self, now: Instant) -> Option<(Vec<Vec<(String, u64)>>, Option<Instant>)> {
        let mut st = self.lock();
        if st.entries.is_empty() {
            st.driving = false;
            return None;
        }
        let limit = self.source.batch_limit().max(1);
        let any_due = st
            .entries
            .values()
            .any(|e| e.schedulable() && e.next_due <= now);
        let mut picked = Vec::new();
        if any_due {
            for (id, e) in st.entries.iter_mut().filter(|(_, e)| e.schedulable()) {
                // Where one request carries many ids, entries due within half their interval
                // ride along: the pollers of an upstream fall into step and share requests.
                let window = if limit > 1 {
                    e.interval / 2
                } else {
                    Duration::ZERO
                };
                if e.next_due <= now + window {
                    e.in_flight = true;
                    picked.push((id.clone(), e.epoch));
                }
            }
        }
        let next = st
            .entries
            .values()
            .filter(|e| e.schedulable())
            .map(|e| e.next_due)
            .min();
        let rounds = picked.chunks(limit).map(<[_]>::to_vec).collect();
        Some((rounds, next))
    }

    /// The ids of `ids` whose entries still exist (watchers may have left while pacing),
    /// and how many watchers they have in all.
    fn still_watched(&self, ids: Vec<(String, u64)>) -> (Vec<(String, u64)>, usize) {
        let st = self.lock();
        let mut watchers = 0;
        let ids = ids
            .into_iter()
            .filter(|(id, epoch)| {
                let entry = st.entries.get(id).filter(|e| e.epoch == *epoch);
                watchers += entry.map_or(0, |e| e.tx.receiver_count());
                entry.is_some()
            })
            .collect();
        (ids, watchers)
    }

    /// A caller's lane whose driver stopped leaves its engine, unless a watcher joined
    /// meanwhile (joins hold the engine's lanes while they join, so none is lost).
    fn retire(self: &Arc<Self>) {
        let Some(lanes) = self.caller.as_ref().and_then(|(_, l)| l.upgrade()) else {
            return;
        };
        let mut lanes = lanes.lock().unwrap_or_else(|e| e.into_inner());
        let idle = {
            let st = self.lock();
            st.entries.is_empty() && !st.driving
        };
        let key = (
            self.upstream.clone(),
            self.caller.as_ref().map(|(c, _)| c.key()),
        );
        if idle && lanes.get(&key).is_some_and(|l| Arc::ptr_eq(l, self)) {
            lanes.remove(&key);
        }
    }

    /// Whether `id` has watchers (see [`observe`](Self::observe)).
    pub(crate) fn is_watched(&self, id: &str) -> bool {
        self.lock().entries.get(id).is_some_and(|e| !e.finished)
    }

    /// A state the gateway read outside the poller (a GetTask, a cancel's read-back) reaches
    /// the watchers of `id` at once, so no watcher hears older news than a caller already got.
    /// Cloned only when the resource is being watched: a read nobody watches costs nothing.
    pub(crate) fn observe(&self, id: &str, value: &R) {
        let (at, now) = (SystemTime::now(), Instant::now());
        let mut st = self.lock();
        let Some(entry) = st.entries.get_mut(id).filter(|e| !e.finished) else {
            return;
        };
        entry.read_elsewhere = Some(now);
        self.found(entry, value.clone(), at, now);
        drop(st);
        self.wake.notify_one();
    }

    async fn poll(&self, ids: Vec<(String, u64)>) {
        let started = Instant::now();
        let outcomes: Vec<Outcome<R>> = match ids.as_slice() {
            [(id, _)] => vec![match self.source.get(id).await {
                Ok(r) => Outcome::Found(r),
                Err(e) => Outcome::Failed(e),
            }],
            many => {
                let names: Vec<String> = many.iter().map(|(id, _)| id.clone()).collect();
                self.read_many(&names).await
            }
        };
        let (at, now) = (SystemTime::now(), Instant::now());
        let mut st = self.lock();
        for ((id, epoch), outcome) in ids.iter().zip(outcomes) {
            let Some(entry) = st.entries.get_mut(id).filter(|e| e.epoch == *epoch) else {
                continue;
            };
            entry.in_flight = false;
            entry.last_poll = Some(now);
            if entry.finished || entry.read_elsewhere.is_some_and(|t| t > started) {
                // Older than what watchers were told meanwhile: poll again, keep the news.
                continue;
            }
            match outcome {
                Outcome::Found(r) => self.found(entry, r, at, now),
                Outcome::Failed(e) => self.failed(entry, e, now),
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// One outcome per name from batched reads: an item the answer could not give fails
    /// only its own watchers; an id the answer left out is confirmed by its own read before
    /// it counts as gone; a batch the upstream refused as a whole (not an outage) is split.
    fn read_many<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Vec<Outcome<R>>> {
        Box::pin(async move {
            match self.source.get_many(names).await {
                Ok(batch) => {
                    let mut found: HashMap<String, R> = batch
                        .found
                        .into_iter()
                        .map(|r| (r.id().to_string(), r))
                        .collect();
                    let mut failed: HashMap<String, GatewayError> =
                        batch.failed.into_iter().collect();
                    let mut outcomes = Vec::with_capacity(names.len());
                    for id in names {
                        outcomes.push(match (found.remove(id), failed.remove(id)) {
                            (Some(r), _) => Outcome::Found(r),
                            (None, Some(e)) => Outcome::Failed(e),
                            (None, None) => match self.source.get(id).await {
                                Ok(r) => Outcome::Found(r),
                                Err(e) => Outcome::Failed(e),
                            },
                        });
                    }
                    outcomes
                }
                Err(e) if names.len() > 1 && refused_as_a_whole(&e) => {
                    let (first, second) = names.split_at(names.len() / 2);
                    let mut outcomes = self.read_many(first).await;
                    outcomes.extend(self.read_many(second).await);
                    outcomes
                }
                Err(e) => names.iter().map(|_| Outcome::Failed(e.clone())).collect(),
            }
        })
    }

    fn found(&self, entry: &mut Entry<R>, value: R, at: SystemTime, now: Instant) {
        entry.failures = 0;
        let is_final = value.is_final();
        let changed = match &*entry.tx.borrow() {
            Observed::Seen { value: old, .. } => **old != value,
            _ => true,
        };
        if changed {
            entry.tx.send_replace(Observed::Seen {
                value: Arc::new(value),
                at,
                trace: call::current().trace,
            });
        } else {
            // Same state, newer observation: kept for later readers without waking anyone.
            entry.tx.send_if_modified(|o| {
                if let Observed::Seen { at: seen_at, .. } = o {
                    *seen_at = at;
                }
                false
            });
        }
        let floor = entry.floor(&self.settings);
        entry.interval = self.settings.next_interval(entry.interval, floor, changed);
        if is_final {
            entry.finished = true;
        } else {
            entry.next_due = now + self.settings.jittered(entry.interval, fastrand::f64());
        }
    }

    fn failed(&self, entry: &mut Entry<R>, e: GatewayError, now: Instant) {
        // A garbled answer is one bad read among many polls: retried like a 5xx, within the
        // budget, rather than ending every watcher of the task.
        let retry_after = match &e {
            GatewayError::Upstream(u)
                if u.is_transient() || u.reason() == Reason::UpstreamBadResponse =>
            {
                Some(u.retry_after)
            }
            _ => None,
        };
        let Some(retry_after) = retry_after else {
            entry.tx.send_replace(Observed::Failed(e));
            entry.finished = true;
            return;
        };
        let floor = entry.floor(&self.settings);
        if e.reason() == Reason::UpstreamCircuitOpen {
            // Nothing was sent, so nothing new was learned of the upstream: the poll waits
            // for the circuit's probe instead of spending the watch's retry budget on
            // refusals (the probe's own failure, if it fails, counts).
            let wait = retry_after.unwrap_or(floor).clamp(floor, self.settings.max);
            entry.next_due = now + self.settings.jittered(wait, fastrand::f64());
            tracing::debug!(upstream = %self.upstream, ?wait, "circuit open; poll waits for the probe");
            return;
        }
        entry.failures += 1;
        if entry.failures > self.settings.retry_budget {
            entry
                .tx
                .send_replace(Observed::Failed(budget_spent(e, entry.failures)));
            entry.finished = true;
            return;
        }
        let wait = self.settings.backoff(floor, entry.failures, retry_after);
        entry.next_due = now + self.settings.jittered(wait, fastrand::f64());
        tracing::debug!(upstream = %self.upstream, failures = entry.failures, ?wait, error = %e, "poll failed; retrying");
    }
}

/// The driver of one lane: rounds of due polls until the lane has no entries left.
async fn drive<R: Resource>(lane: Arc<Lane<R>>) {
    let mut pacer = Pacer::new(lane.settings.max_polls_per_second);
    loop {
        let Some((rounds, next)) = lane.plan(Instant::now()) else {
            lane.retire();
            return;
        };
        for ids in rounds {
            // Beyond the upstream's cap the driver waits here, which slows every poller of the
            // upstream down instead of piling requests onto it.
            pacer.acquire().await;
            let (ids, watchers) = lane.still_watched(ids);
            if ids.is_empty() {
                continue;
            }
            lane.requests.fetch_add(1, Ordering::Relaxed);
            // Each watcher polling alone would have sent a read of its own.
            lane.metrics.polls.increment(1);
            lane.metrics.resources.record(ids.len() as f64);
            lane.metrics
                .saved
                .increment(watchers.saturating_sub(1) as u64);
            let lane = lane.clone();
            // A poll serves no one caller: it starts a trace of its own (and acts as the
            // lane's identity).
            let call = call::Call {
                identity: lane.caller.as_ref().map(|(c, _)| c.clone()),
                ..call::Call::traced()
            };
            tokio::spawn(call::scope(call, async move { lane.poll(ids).await }));
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = lane.wake.notified() => {}
                }
            }
            None => lane.wake.notified().await,
        }
    }
}

/// A batch-level failure that is about the batch, not an outage: vAPI's list answers
/// RESOURCE_INACCESSIBLE (too many matches) or a 4xx; halves of it may well pass.
fn refused_as_a_whole(e: &GatewayError) -> bool {
    match e {
        GatewayError::Upstream(u) => {
            let outage = u.is_transient()
                || matches!(
                    u.reason(),
                    Reason::UpstreamLoginFailed | Reason::LoginBackoff
                );
            u.upstream_reason() == Some("RESOURCE_INACCESSIBLE") || !outage
        }
        _ => true,
    }
}

/// The error watchers get once the retry budget is spent: always UNAVAILABLE (with RetryInfo).
fn budget_spent(e: GatewayError, failures: u32) -> GatewayError {
    match e {
        GatewayError::Upstream(u) if u.code() != tonic::Code::Unavailable => {
            let mut wrapped = UpstreamError::new(
                &u.upstream,
                u.http_status,
                UpstreamFailure::Unreachable(format!(
                    "{failures} polls in a row failed, the last with: {}",
                    u.to_short_text()
                )),
            );
            wrapped.retry_after = u.retry_after;
            wrapped.into()
        }
        other => other,
    }
}
