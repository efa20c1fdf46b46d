//! The engine against in-memory fake sources, on paused tokio time: sharing, batching,
//! adaptive intervals, retries, the end of a poller, and the generic runspace path.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::{sync::watch, time::Instant};

use super::*;
use crate::{
    error::{UpstreamError, UpstreamFailure},
    upstream::Batch,
};

/// An upstream in memory: tasks (or runspaces) by id, request counters, queued failures.
struct Fake<R> {
    items: Mutex<HashMap<String, R>>,
    gets: AtomicU64,
    batches: AtomicU64,
    limit: usize,
    failures: Mutex<u32>,
    /// Requests refused next as by an open circuit breaker (nothing sent).
    circuit_open: Mutex<u32>,
    /// Items whose own entry is garbled (a batch answers the others).
    bad: Mutex<HashSet<String>>,
    /// Items a batched answer leaves out although a single read finds them.
    omitted: Mutex<HashSet<String>>,
    /// Batches over this many ids are refused as a whole (vAPI's RESOURCE_INACCESSIBLE).
    refuse_over: Mutex<Option<usize>>,
}

impl<R: Resource> Fake<R> {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Fake {
            items: Mutex::new(HashMap::new()),
            gets: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            limit,
            failures: Mutex::new(0),
            circuit_open: Mutex::new(0),
            bad: Mutex::new(HashSet::new()),
            omitted: Mutex::new(HashSet::new()),
            refuse_over: Mutex::new(None),
        })
    }

    fn put(&self, r: R) {
        self.items.lock().unwrap().insert(r.id().to_string(), r);
    }

    fn fail_next(&self, n: u32) {
        *self.failures.lock().unwrap() = n;
    }

    fn open_circuit_next(&self, n: u32) {
        *self.circuit_open.lock().unwrap() = n;
    }

    fn unavailable(&self) -> Option<GatewayError> {
        let mut open = self.circuit_open.lock().unwrap();
        if *open > 0 {
            *open -= 1;
            let mut e = UpstreamError::new("fake", None, UpstreamFailure::CircuitOpen);
            e.retry_after = Some(Duration::from_millis(700));
            return Some(e.into());
        }
        let mut f = self.failures.lock().unwrap();
        if *f == 0 {
            return None;
        }
        *f -= 1;
        Some(fake_error(503, "SERVICE_UNAVAILABLE"))
    }

    fn requests(&self) -> u64 {
        self.gets.load(Ordering::SeqCst) + self.batches.load(Ordering::SeqCst)
    }
}

impl<R: Resource> Fetch<R> for Fake<R> {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<R>> {
        Box::pin(async move {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if let Some(e) = self.unavailable() {
                return Err(e);
            }
            if self.bad.lock().unwrap().contains(id) {
                return Err(garbled(id));
            }
            let found = self.items.lock().unwrap().get(id).cloned();
            found.ok_or_else(|| fake_error(404, "NOT_FOUND"))
        })
    }

    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Batch<R>>> {
        Box::pin(async move {
            self.batches.fetch_add(1, Ordering::SeqCst);
            assert!(ids.len() <= self.limit, "{} ids over the limit", ids.len());
            if let Some(e) = self.unavailable() {
                return Err(e);
            }
            if self
                .refuse_over
                .lock()
                .unwrap()
                .is_some_and(|n| ids.len() > n)
            {
                return Err(fake_error(500, "RESOURCE_INACCESSIBLE"));
            }
            let (items, bad) = (self.items.lock().unwrap(), self.bad.lock().unwrap());
            let omitted = self.omitted.lock().unwrap();
            let mut batch = Batch::default();
            for id in ids.iter().filter(|id| !omitted.contains(*id)) {
                match (bad.contains(id), items.get(id)) {
                    (true, _) => batch.failed.push((id.clone(), garbled(id))),
                    (false, Some(r)) => batch.found.push(r.clone()),
                    (false, None) => {}
                }
            }
            Ok(batch)
        })
    }

    fn batch_limit(&self) -> usize {
        self.limit
    }
}

/// A vAPI-style error of the fake upstream.
fn fake_error(status: u16, reason: &str) -> GatewayError {
    let failure = UpstreamFailure::Api {
        reason: Some(reason.into()),
        messages: vec![],
        excerpt: None,
    };
    UpstreamError::new("fake", Some(status), failure).into()
}

/// The error of an entry that is not the documented JSON.
fn garbled(id: &str) -> GatewayError {
    UpstreamError::bad_response("fake", 200, format!("task '{id}': start_time"), b"{}").into()
}

fn task(id: &str, percent: i32, done: bool) -> proto::Task {
    proto::Task {
        id: id.into(),
        name: format!("upstreams/fake/tasks/{id}"),
        done,
        progress: Some(proto::TaskProgress {
            percent,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn settings() -> Settings {
    Settings {
        min: Duration::from_millis(100),
        max: Duration::from_millis(1000),
        growth: 2.0,
        jitter: 0.0,
        max_wait: Duration::from_secs(5),
        retry_budget: 2,
        max_polls_per_second: 1000,
        heartbeat_default: None,
        max_pollers: 1000,
    }
}

fn target<R: Resource>(fake: &Arc<Fake<R>>, id: &str) -> Target<R> {
    Target {
        upstream: "fake".into(),
        id: id.into(),
        source: fake.clone(),
        poller: None,
        check: None,
    }
}

fn opts(min: Option<u64>, heartbeat: Option<u64>) -> WatchOptions {
    WatchOptions {
        min_poll_interval: min.map(Duration::from_millis),
        heartbeat_interval: heartbeat.map(Duration::from_millis),
        deadline: None,
    }
}

/// A fake upstream, an engine polling it and the switch that stops the engine's watches.
struct Rig<R: Resource> {
    fake: Arc<Fake<R>>,
    engine: Arc<Engine<R>>,
    stop: watch::Sender<bool>,
}

impl<R: Resource> Rig<R> {
    /// `limit` ids a batch, polling as `settings` say.
    fn new(limit: usize, settings: Settings) -> Self {
        Rig {
            fake: Fake::new(limit),
            engine: Arc::new(Engine::new(Arc::new(settings))),
            stop: watch::channel(false).0,
        }
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// A watch with default options that sees each resource as it is.
    fn watch(&self, id: &str) -> Watch<R> {
        self.watch_with(id, opts(None, None))
    }

    fn watch_with(&self, id: &str, options: WatchOptions) -> Watch<R> {
        let (target, stopping) = (target(&self.fake, id), self.stopping());
        self.engine
            .watch(target, options, stopping, Clone::clone)
            .expect("under the poller limit")
    }

    /// Waits for `id` until `after` from now.
    async fn wait(&self, id: &str, after: Duration) -> Result<R> {
        let until = Instant::now() + after;
        self.engine
            .wait(target(&self.fake, id), until, self.stopping())
            .await
            .map(|latest| latest.expect("a state was read before the wait ended"))
    }
}

/// A rig whose fake upstream holds `count` tasks `t0`, `t1`... at 0 %, one id a request
/// unless `limit` says more.
fn tasks_rig(limit: usize, count: usize, settings: Settings) -> Rig<proto::Task> {
    let rig = Rig::new(limit, settings);
    for i in 0..count {
        rig.fake.put(task(&format!("t{i}"), 0, false));
    }
    rig
}

/// The usual rig: task `t1` at 0 %, one id a request, the default settings.
fn one_task() -> Rig<proto::Task> {
    one_task_with(settings())
}

fn one_task_with(settings: Settings) -> Rig<proto::Task> {
    let rig = Rig::new(1, settings);
    rig.fake.put(task("t1", 0, false));
    rig
}

async fn next<R: Resource>(w: &mut Watch<R>) -> Event<R> {
    match w.next().await {
        Some(Ok(e)) => e,
        Some(Err(e)) => panic!("watch failed: {e}"),
        None => panic!("watch ended"),
    }
}

/// The error the watch ends with next.
async fn failure<R: Resource>(w: &mut Watch<R>) -> GatewayError {
    match w.next().await {
        Some(Err(e)) => e,
        other => panic!(
            "expected an error, got {:?}",
            other.map(|r| r.map(|e| e.kind))
        ),
    }
}

#[tokio::test(start_paused = true)]
async fn watchers_of_one_task_share_one_poll_per_round() {
    let rig = one_task();
    let mut watches: Vec<_> = (0..50).map(|_| rig.watch("t1")).collect();
    for w in &mut watches {
        assert_eq!(next(w).await.kind, EventKind::Snapshot);
    }
    assert_eq!(rig.engine.pollers(), 1);
    for step in 1..=5 {
        rig.fake.put(task("t1", step * 10, false));
        for w in &mut watches {
            let e = next(w).await;
            assert_eq!(e.kind, EventKind::Changed);
            assert_eq!(e.value.progress.unwrap().percent, step * 10);
        }
    }
    // Each change was seen at the first poll after it: 1 + 5 reads, not 50 times that.
    assert_eq!(rig.fake.requests(), 6);
}

#[tokio::test(start_paused = true)]
async fn interval_grows_while_nothing_changes_and_returns_to_the_floor_on_a_change() {
    let rig = one_task();
    let mut w = rig.watch("t1");
    next(&mut w).await;
    let start = Instant::now();
    // 100 ms floor doubling to the 1 s maximum: polls at 100, 300, 700, 1500, 2500, 3500...
    tokio::time::sleep(Duration::from_millis(3600)).await;
    assert_eq!(rig.fake.requests(), 1 + 6, "after {:?}", start.elapsed());
    rig.fake.put(task("t1", 5, false));
    assert_eq!(next(&mut w).await.kind, EventKind::Changed);
    let polls = rig.fake.requests();
    // Back at the floor: the next polls come 100 ms, then 200 ms later.
    tokio::time::sleep(Duration::from_millis(310)).await;
    assert_eq!(rig.fake.requests(), polls + 2);
}

#[tokio::test(start_paused = true)]
async fn the_fastest_watcher_sets_the_pace_and_a_slow_one_does_not_slow_it() {
    let steady = Settings {
        growth: 1.0,
        ..settings()
    };
    let rig = one_task_with(steady);
    let polls = || rig.fake.requests();
    let mut slow = rig.watch_with("t1", opts(Some(800), None));
    next(&mut slow).await;
    tokio::time::sleep(Duration::from_millis(1650)).await;
    assert_eq!(polls(), 1 + 2, "the slow watcher alone polls every 800 ms");
    let mut fast = rig.watch_with("t1", opts(Some(100), None));
    next(&mut fast).await;
    let before = polls();
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert!(polls() - before >= 9, "{} polls", polls() - before);
    drop(fast);
    let before = polls();
    tokio::time::sleep(Duration::from_millis(1650)).await;
    assert!(polls() - before <= 3, "back to the slow pace");
}

#[tokio::test(start_paused = true)]
async fn batched_pollers_of_one_upstream_share_each_request() {
    let rig = tasks_rig(100, 250, settings());
    let fake = &rig.fake;
    let mut watches = Vec::new();
    for i in 0..250 {
        let mut w = rig.watch(&format!("t{i}"));
        next(&mut w).await;
        watches.push(w);
        // Watchers arrive over time, not all at once.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Let the pollers fall into step, then count one change of every task.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..250 {
        fake.put(task(&format!("t{i}"), 50, false));
    }
    let before = fake.batches.load(Ordering::SeqCst);
    let gets_before = fake.gets.load(Ordering::SeqCst);
    let mut observed = std::collections::HashSet::new();
    for w in &mut watches {
        let e = next(w).await;
        assert_eq!(e.kind, EventKind::Changed);
        observed.insert(e.observed);
    }
    let gets = fake.gets.load(Ordering::SeqCst);
    assert_eq!(
        gets, gets_before,
        "no single gets once the pollers are in step"
    );
    // 250 ids at 100 per request: one round of three requests saw every change.
    assert_eq!(fake.batches.load(Ordering::SeqCst) - before, 3);
    assert!(observed.len() <= 3, "{} distinct reads", observed.len());
}

#[tokio::test(start_paused = true)]
async fn the_last_watcher_leaving_stops_the_poller() {
    let rig = one_task();
    let (mut a, mut b) = (rig.watch("t1"), rig.watch("t1"));
    next(&mut a).await;
    next(&mut b).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rig.fake.requests() > 1, "one watcher left, polling goes on");
    drop(b);
    assert_eq!(rig.engine.pollers(), 0);
    let after = rig.fake.requests();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(rig.fake.requests(), after);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_until_the_budget_is_spent() {
    let rig = one_task();
    let mut w = rig.watch("t1");
    next(&mut w).await;
    rig.fake.fail_next(2);
    rig.fake.put(task("t1", 10, false));
    assert_eq!(next(&mut w).await.value.progress.unwrap().percent, 10);
    rig.fake.fail_next(3);
    rig.fake.put(task("t1", 20, false));
    assert_eq!(failure(&mut w).await.code(), tonic::Code::Unavailable);
    assert!(w.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_pauses_polls_without_spending_the_retry_budget() {
    let rig = one_task();
    let mut w = rig.watch("t1");
    next(&mut w).await;
    // More refusals than the budget of 2: each says only that the circuit is open, so the
    // poller waits for the circuit's probe (700 ms each here) instead of giving up.
    rig.fake.open_circuit_next(5);
    rig.fake.put(task("t1", 10, false));
    let started = tokio::time::Instant::now();
    assert_eq!(next(&mut w).await.value.progress.unwrap().percent, 10);
    assert!(
        started.elapsed() >= Duration::from_millis(5 * 700),
        "{:?}",
        started.elapsed()
    );
    // Real failures still count against the budget.
    rig.fake.fail_next(3);
    rig.fake.put(task("t1", 20, false));
    assert_eq!(failure(&mut w).await.code(), tonic::Code::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_disappears_from_a_batched_answer_ends_with_not_found() {
    let rig = Rig::new(10, settings());
    rig.fake.put(task("t1", 0, false));
    rig.fake.put(task("t2", 0, false));
    let (mut w1, mut w2) = (rig.watch("t1"), rig.watch("t2"));
    next(&mut w1).await;
    next(&mut w2).await;
    rig.fake.items.lock().unwrap().remove("t1");
    assert_eq!(failure(&mut w1).await.code(), tonic::Code::NotFound);
    rig.fake.put(task("t2", 100, true));
    let last = next(&mut w2).await;
    assert!(last.value.done);
    assert!(w2.next().await.is_none(), "the watch ends after done");
}

/// Three watched tasks batched together, each past its snapshot.
async fn three_batched(rig: &Rig<proto::Task>) -> Vec<Watch<proto::Task>> {
    let mut watches = Vec::new();
    for id in ["t0", "t1", "t2"] {
        let mut w = rig.watch(id);
        next(&mut w).await;
        watches.push(w);
    }
    // Let the pollers fall into step so later rounds are batched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    watches
}

#[tokio::test(start_paused = true)]
async fn one_garbled_item_fails_only_its_own_watchers_and_only_for_a_while() {
    let rig = tasks_rig(10, 3, settings());
    let mut watches = three_batched(&rig).await;
    rig.fake.bad.lock().unwrap().insert("t1".into());
    for i in 0..3 {
        rig.fake.put(task(&format!("t{i}"), 30, false));
    }
    // The healthy ones see the change; the garbled one is retried, not ended.
    assert_eq!(
        next(&mut watches[0]).await.value.progress.unwrap().percent,
        30
    );
    assert_eq!(
        next(&mut watches[2]).await.value.progress.unwrap().percent,
        30
    );
    rig.fake.bad.lock().unwrap().clear();
    assert_eq!(
        next(&mut watches[1]).await.value.progress.unwrap().percent,
        30
    );
}

#[tokio::test(start_paused = true)]
async fn an_id_left_out_of_a_batch_is_read_on_its_own_before_it_counts_as_gone() {
    let rig = tasks_rig(10, 3, settings());
    let mut watches = three_batched(&rig).await;
    rig.fake.omitted.lock().unwrap().insert("t1".into());
    rig.fake.put(task("t1", 40, false));
    let e = next(&mut watches[1]).await;
    assert_eq!(e.value.progress.unwrap().percent, 40, "not NOT_FOUND");
    assert!(
        rig.fake.gets.load(Ordering::SeqCst) > 3,
        "a confirming read"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_refused_as_a_whole_is_split() {
    let rig = tasks_rig(10, 3, settings());
    let mut watches = three_batched(&rig).await;
    *rig.fake.refuse_over.lock().unwrap() = Some(1);
    for i in 0..3 {
        rig.fake.put(task(&format!("t{i}"), 60, false));
    }
    for w in &mut watches {
        assert_eq!(next(w).await.value.progress.unwrap().percent, 60);
    }
}

#[tokio::test(start_paused = true)]
async fn pollers_are_bounded_per_upstream_and_more_watchers_of_one_resource_are_free() {
    let rig = tasks_rig(
        10,
        3,
        Settings {
            max_pollers: 2,
            ..settings()
        },
    );
    let (_a, _b) = (rig.watch("t0"), rig.watch("t1"));
    let _again = rig.watch("t0");
    let target = target(&rig.fake, "t2");
    let refused = rig
        .engine
        .watch(target, opts(None, None), rig.stopping(), Clone::clone);
    let e = refused.err().expect("a third poller is refused");
    assert_eq!(e.reason(), crate::error::Reason::LimitReached);
    assert!(e.to_string().contains("max_pollers_per_upstream"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn heartbeat_repeats_the_current_state_after_quiet_time() {
    let rig = one_task();
    let mut w = rig.watch_with("t1", opts(None, Some(2000)));
    let snap = next(&mut w).await;
    let hb = next(&mut w).await;
    assert_eq!(hb.kind, EventKind::Heartbeat);
    assert_eq!(hb.value, snap.value);
    let later = hb.observed > snap.observed;
    assert!(later, "a heartbeat carries the latest read time");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_asked_faster_than_a_second_comes_once_a_second() {
    let rig = one_task();
    let mut w = rig.watch_with("t1", opts(None, Some(100)));
    next(&mut w).await;
    let start = Instant::now();
    let hb = next(&mut w).await;
    assert_eq!(hb.kind, EventKind::Heartbeat);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let s = Settings::default();
    assert_eq!(
        s.heartbeat(Some(Duration::from_secs(7200))),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(s.heartbeat(Some(Duration::ZERO)), None);
    assert_eq!(s.heartbeat(None), s.heartbeat_default);
}

#[tokio::test(start_paused = true)]
async fn stopping_ends_watches_with_shutting_down_and_wait_with_the_latest_state() {
    let rig = Arc::new(one_task());
    let mut w = rig.watch("t1");
    next(&mut w).await;
    let waiting = {
        let rig = rig.clone();
        tokio::spawn(async move { rig.wait("t1", Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.stop.send_replace(true);
    let ended = failure(&mut w).await;
    assert!(matches!(ended, GatewayError::ShuttingDown), "{ended}");
    let latest = waiting.await.unwrap().unwrap();
    assert!(!latest.done);
}

#[tokio::test(start_paused = true)]
async fn wait_returns_at_done_or_at_its_time_with_the_latest_state() {
    let rig = one_task();
    let until = Instant::now() + Duration::from_secs(2);
    let t = rig.wait("t1", Duration::from_secs(2)).await.unwrap();
    assert!(!t.done);
    assert!(Instant::now() >= until);
    let fake = rig.fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        fake.put(task("t1", 100, true));
    });
    let t = rig.wait("t1", Duration::from_secs(60)).await.unwrap();
    assert!(t.done);
}

#[tokio::test(start_paused = true)]
async fn the_upstream_cap_slows_pollers_down() {
    let capped = Settings {
        growth: 1.0,
        max_polls_per_second: 10,
        ..settings()
    };
    let rig = tasks_rig(1, 20, capped);
    let _watches: Vec<_> = (0..20).map(|i| rig.watch(&format!("t{i}"))).collect();
    // 20 unbatched pollers at 100 ms would make 200 requests a second; the cap allows 10.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = rig.fake.requests();
    assert!((25..=35).contains(&n), "{n} requests in 3 s");
}

#[tokio::test(start_paused = true)]
async fn runspace_watch_ends_after_ready() {
    let rig: Rig<proto::Runspace> = Rig::new(1, settings());
    let rs = |state: proto::RunspaceState| proto::Runspace {
        id: "rs1".into(),
        state: state as i32,
        ..Default::default()
    };
    rig.fake.put(rs(proto::RunspaceState::Creating));
    let mut w = rig.watch("rs1");
    assert_eq!(next(&mut w).await.kind, EventKind::Snapshot);
    rig.fake.put(rs(proto::RunspaceState::Ready));
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventKind::Changed);
    assert_eq!(e.value.state(), proto::RunspaceState::Ready);
    assert!(w.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn equal_states_after_the_view_are_not_sent_twice() {
    let rig = one_task();
    // The watcher sees only `done`: progress changes are invisible to it.
    let only_done = |t: &proto::Task| proto::Task {
        id: t.id.clone(),
        done: t.done,
        ..Default::default()
    };
    let (t1, stopping) = (target(&rig.fake, "t1"), rig.stopping());
    let mut w = rig
        .engine
        .watch(t1, opts(None, None), stopping, only_done)
        .expect("under the poller limit");
    next(&mut w).await;
    rig.fake.put(task("t1", 50, false));
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.fake.put(task("t1", 100, true));
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventKind::Changed);
    assert!(e.value.done);
}
