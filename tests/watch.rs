//! WatchTask, WaitTask and WatchRunspace end to end against the simulator: the WatchTask
//! contract, shared and batched polls counted at the simulator, retries, deadlines, client
//! disconnects and shutdown.

mod common;

use std::{collections::HashSet, time::Duration};

use common::*;
use tonic::{Code, IntoRequest, Request, Status, Streaming};
use tonic_types::StatusExt;
use vmware_grpc_gateway::{
    config::{Config, WatchConfig},
    proto::{
        EventType, RunspaceEvent, RunspaceState, Task, TaskEvent, TaskState, TaskView,
        WaitTaskRequest, WatchRunspaceRequest, WatchTaskRequest,
    },
    simulator::{
        Fault, SimClock, SimOptions, TaskSpec,
        vcenter::{ROUTE_TASK_GET, ROUTE_TASK_LIST},
    },
};

/// Fast, deterministic polling: 20 ms floor, 200 ms ceiling, no jitter, 3 retries.
fn fast(cfg: &mut Config) {
    cfg.watch = WatchConfig {
        min_poll_interval: Duration::from_millis(20),
        max_poll_interval: Duration::from_millis(200),
        growth: 1.5,
        jitter: 0.0,
        max_wait: Duration::from_secs(5),
        retry_budget: 3,
        max_polls_per_second: 1000,
        heartbeat_default: Duration::from_secs(15),
    };
}

async fn start() -> Env {
    Env::start_with(sim_options(), fast).await
}

/// Every simulated upstream, as the demo wires them, with fast polling.
async fn start_all() -> Env {
    Env::start_full(sim_options(), |cfg, sim| {
        fast(cfg);
        cfg.upstreams = vmware_grpc_gateway::demo::upstreams(sim, None);
    })
    .await
}

/// A Cloud Director task that runs for 100 s.
fn vcd_deploy() -> TaskSpec {
    TaskSpec::new(
        "com.vmware.vcloud",
        "vappDeploy",
        "Deploy",
        run_then_succeed(100),
    )
}

fn watch_req(name: &str) -> WatchTaskRequest {
    WatchTaskRequest {
        name: name.into(),
        ..Default::default()
    }
}

fn dur(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

async fn open(env: &Env, req: WatchTaskRequest) -> Streaming<TaskEvent> {
    env.tasks()
        .watch_task(req)
        .await
        .expect("the watch opens")
        .into_inner()
}

/// The next message, failing the test on an error or the end of the stream.
async fn event(s: &mut Streaming<TaskEvent>) -> TaskEvent {
    match s.message().await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the stream ended"),
        Err(st) => panic!("the stream failed: {st:?}"),
    }
}

/// A watch of `name` with the shortest heartbeat the contract allows, one a second.
async fn open_beating_every_second(env: &Env, name: &str) -> Streaming<TaskEvent> {
    let req = WatchTaskRequest {
        heartbeat_interval: Some(dur(1000)),
        ..watch_req(name)
    };
    open(env, req).await
}

/// A watch of `name` whose first message, a snapshot, has been read.
async fn watch_past_snapshot(env: &Env, name: &str) -> Streaming<TaskEvent> {
    let mut s = open(env, watch_req(name)).await;
    assert_eq!(event(&mut s).await.r#type(), EventType::Snapshot);
    s
}

/// Watches of each name, and the snapshot each started with.
async fn watch_each(env: &Env, names: &[String]) -> (Vec<Streaming<TaskEvent>>, Vec<TaskEvent>) {
    let (mut streams, mut snapshots) = (Vec::new(), Vec::new());
    for name in names {
        let mut s = open(env, watch_req(name)).await;
        let first = event(&mut s).await;
        assert_eq!(first.r#type(), EventType::Snapshot);
        streams.push(s);
        snapshots.push(first);
    }
    (streams, snapshots)
}

/// Asserts that the next message of every stream is a change to `percent`; returns the
/// distinct read times they carry.
async fn each_changes_to(
    streams: &mut [Streaming<TaskEvent>],
    percent_now: i32,
) -> HashSet<Option<prost_types::Timestamp>> {
    let mut reads = HashSet::new();
    for s in streams {
        let e = event(s).await;
        assert_eq!(e.r#type(), EventType::Changed);
        assert_eq!(percent(&e), percent_now, "{e:?}");
        reads.insert(e.observe_time);
    }
    reads
}

/// Every message until the end, and how the stream ended (`None` = OK).
async fn drain(s: &mut Streaming<TaskEvent>) -> (Vec<TaskEvent>, Option<Status>) {
    let mut events = Vec::new();
    loop {
        match s.message().await {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return (events, None),
            Err(st) => return (events, Some(st)),
        }
    }
}

/// The error the stream ends with, after any messages.
async fn end_error(s: &mut Streaming<TaskEvent>) -> Status {
    let (_, end) = drain(s).await;
    end.expect("the stream ends with an error")
}

fn wait_req(name: &str, timeout: Option<prost_types::Duration>) -> WaitTaskRequest {
    WaitTaskRequest {
        name: name.into(),
        timeout,
        view: 0,
    }
}

async fn wait(env: &Env, req: impl IntoRequest<WaitTaskRequest>) -> Result<Task, Status> {
    answer(env.tasks().wait_task(req)).await
}

/// The error a watch ends with, whether the call itself fails or its stream does.
async fn watch_error(env: &Env, req: WatchTaskRequest) -> Status {
    match env.tasks().watch_task(req).await {
        Err(st) => st,
        Ok(r) => end_error(&mut r.into_inner()).await,
    }
}

fn task(e: &TaskEvent) -> &Task {
    e.task.as_ref().expect("every event carries the task")
}

fn percent(e: &TaskEvent) -> i32 {
    task(e).progress.as_ref().map_or(-1, |p| p.percent)
}

/// A vAPI 503 as vCenter sends it when a service is down.
fn unavailable() -> Fault {
    Fault::Status {
        status: 503,
        body: r#"{"error_type":"SERVICE_UNAVAILABLE","messages":[{"id":"x","default_message":"down for a moment","args":[]}]}"#.into(),
    }
}

#[tokio::test]
async fn watch_sends_a_snapshot_then_each_change_and_ends_after_done() {
    let env = start().await;
    let name = env.add(running_for(100));
    let mut s = open(&env, watch_req(&name)).await;
    let first = event(&mut s).await;
    assert_eq!(first.r#type(), EventType::Snapshot);
    assert_eq!(task(&first).name, name);
    assert_eq!(percent(&first), 0);
    assert!(first.observe_time.is_some());
    env.clock().advance(Duration::from_secs(30));
    let changed = event(&mut s).await;
    assert_eq!(changed.r#type(), EventType::Changed);
    assert_eq!(percent(&changed), 30);
    env.clock().advance(Duration::from_secs(100));
    let (rest, end) = drain(&mut s).await;
    assert!(end.is_none(), "ends with OK: {end:?}");
    let last = rest.last().expect("a message with done");
    assert_eq!(last.r#type(), EventType::Changed);
    assert!(task(last).done);
    assert_eq!(task(last).state(), TaskState::Succeeded);
    // Never two equal tasks in a row.
    let all: Vec<&TaskEvent> = [&first, &changed].into_iter().chain(&rest).collect();
    for pair in all.windows(2) {
        assert_ne!(pair[0].task, pair[1].task);
    }
}

#[tokio::test]
async fn watching_a_finished_task_sends_its_snapshot_and_ends() {
    let env = start().await;
    let name = env.add(finished(60));
    let (events, end) = drain(&mut open(&env, watch_req(&name)).await).await;
    assert!(end.is_none(), "{end:?}");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].r#type(), EventType::Snapshot);
    assert!(task(&events[0]).done);
}

#[tokio::test]
async fn hundred_watchers_of_one_task_cost_one_get_per_round() {
    // A real clock: the task moves 1 % every 10 ms, so every 20 ms round sees a change.
    let opts = SimOptions {
        clock: SimClock::real(),
        ..sim_options()
    };
    let env = Env::start_with(opts, fast).await;
    let name = env.add(running_for(2));
    let started = std::time::Instant::now();
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(open(&env, watch_req(&name)).await);
    }
    let mut runs = Vec::new();
    for s in &mut streams {
        let (events, end) = drain(s).await;
        assert!(end.is_none(), "{end:?}");
        runs.push(events);
    }
    let gets = env.sim.vcenter.requests(ROUTE_TASK_GET);
    // Rounds cannot come faster than the 20 ms floor: one shared poller makes at most one
    // request per round, where a poller per watcher would make 100.
    let rounds = started.elapsed().as_millis() as u64 / 20 + 1;
    // After the first snapshot, every watcher saw the same reads of the one poller.
    let tail = |r: &Vec<TaskEvent>| -> Vec<(i32, Option<prost_types::Timestamp>)> {
        r.iter()
            .skip(1)
            .filter(|e| e.r#type() == EventType::Changed)
            .map(|e| (percent(e), e.observe_time))
            .collect()
    };
    let reads: HashSet<_> = runs.iter().flat_map(tail).map(|(_, t)| t).collect();
    let longest = runs.iter().map(Vec::len).max().unwrap_or(0) as u64;
    assert!(longest > 3, "the task was seen moving");
    assert!(
        gets <= rounds + 5,
        "{gets} GETs in {rounds} rounds ({} distinct reads seen)",
        reads.len()
    );
    // Watchers share the reads: far fewer distinct observations than watchers × events.
    assert!((reads.len() as u64) <= gets);
    assert_eq!(env.sim.vcenter.requests(ROUTE_TASK_LIST), 0);
}

#[tokio::test]
async fn five_hundred_watched_tasks_cost_one_list_request_per_round() {
    let env = start().await;
    let names: Vec<String> = (0..500).map(|_| env.add(running_for(100))).collect();
    let (mut streams, _) = watch_each(&env, &names).await;
    // Let the pollers fall into step (a few rounds at the 200 ms ceiling).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (gets, lists) = (
        env.sim.vcenter.requests(ROUTE_TASK_GET),
        env.sim.vcenter.requests(ROUTE_TASK_LIST),
    );
    env.clock().advance(Duration::from_secs(10));
    let reads = each_changes_to(&mut streams, 10).await;
    // One list answer carries all 500 changes, or two when a round fired while another's
    // request was still in flight (ids in flight cannot join it; they fall into step after).
    assert!(reads.len() <= 2, "{} distinct reads", reads.len());
    assert_eq!(env.sim.vcenter.requests(ROUTE_TASK_GET), gets);
    let more = env.sim.vcenter.requests(ROUTE_TASK_LIST) - lists;
    // A few 20 ms rounds pass while the 500 events are read, far from one request per task.
    assert!((1..50).contains(&more), "{more} list requests");
}

#[tokio::test]
async fn heartbeat_repeats_the_task_when_nothing_changes() {
    let env = start().await;
    let name = env.add(running_for(100));
    let mut s = open_beating_every_second(&env, &name).await;
    let first = event(&mut s).await;
    let beat = event(&mut s).await;
    assert_eq!(beat.r#type(), EventType::Heartbeat);
    assert_eq!(beat.task, first.task);
    let beat2 = event(&mut s).await;
    assert_eq!(beat2.r#type(), EventType::Heartbeat);
}

#[tokio::test]
async fn bad_requests_fail_the_call_before_the_stream_starts() {
    let env = start().await;
    let name = env.add(running_for(100));
    let negative = prost_types::Duration {
        seconds: -1,
        nanos: 0,
    };
    let cases = [
        (
            WatchTaskRequest {
                heartbeat_interval: Some(negative),
                ..watch_req(&name)
            },
            "INVALID_DURATION",
        ),
        (
            WatchTaskRequest {
                min_poll_interval: Some(negative),
                ..watch_req(&name)
            },
            "INVALID_DURATION",
        ),
        (
            WatchTaskRequest {
                view: 99,
                ..watch_req(&name)
            },
            "INVALID_ENUM",
        ),
        (watch_req("tasks/nope"), "INVALID_NAME"),
    ];
    for (req, reason) in cases {
        let st = env
            .tasks()
            .watch_task(req)
            .await
            .expect_err("the call fails");
        assert_error(&st, Code::InvalidArgument, reason);
    }
}

#[tokio::test]
async fn a_task_that_disappears_ends_the_watch_with_not_found() {
    let env = start().await;
    let id = env.sim.vcenter.tasks().add(running_for(100));
    let name = task_name(&id);
    let mut s = watch_past_snapshot(&env, &name).await;
    env.sim.vcenter.tasks().remove(&id);
    let st = end_error(&mut s).await;
    let info = error_info(&st);
    assert_eq!(st.code(), Code::NotFound, "{st:?}");
    assert_eq!(info.metadata["resource"], name);

    let st = watch_error(&env, watch_req(&task_name("no-such-task"))).await;
    assert_eq!(st.code(), Code::NotFound);
}

#[tokio::test]
async fn transient_failures_are_retried_and_the_spent_budget_ends_with_unavailable() {
    let env = start().await;
    let name = env.add(running_for(100));
    let mut s = watch_past_snapshot(&env, &name).await;
    // Three failures fit the budget of three retries: the watch carries on.
    for _ in 0..3 {
        env.sim.vcenter.inject(ROUTE_TASK_GET, unavailable());
    }
    env.clock().advance(Duration::from_secs(20));
    let e = event(&mut s).await;
    assert_eq!(e.r#type(), EventType::Changed);
    assert_eq!(percent(&e), 20);
    // Four in a row spend it.
    for _ in 0..4 {
        env.sim.vcenter.inject(ROUTE_TASK_GET, unavailable());
    }
    let st = end_error(&mut s).await;
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(st.get_details_retry_info().is_some(), "RetryInfo: {st:?}");
}

#[tokio::test]
async fn a_watch_hears_the_gateways_own_cancel_before_any_older_heartbeat() {
    // Slow polling, so only the cancel's own read-back can tell the watch in time.
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.watch.min_poll_interval = Duration::from_secs(5);
        cfg.watch.max_poll_interval = Duration::from_secs(10);
    })
    .await;
    let name = env.add(running_for(3600).cancelable());
    let mut s = open_beating_every_second(&env, &name).await;
    assert_eq!(event(&mut s).await.r#type(), EventType::Snapshot);
    let cancelled = env.cancel_task(&name).await.expect("cancel");
    assert_eq!(cancelled.state(), TaskState::Cancelled);
    let next = event(&mut s).await;
    assert_eq!(next.r#type(), EventType::Changed, "{next:?}");
    assert_eq!(task(&next).state(), TaskState::Cancelled);
    assert!(s.message().await.unwrap().is_none(), "ends after done");
}

#[tokio::test]
async fn a_basic_get_task_tells_the_watchers_what_it_read_with_the_payload_they_see() {
    // Slow polling, so only the GetTask's read can tell the watch in time.
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.watch.min_poll_interval = Duration::from_secs(5);
        cfg.watch.max_poll_interval = Duration::from_secs(10);
    })
    .await;
    let name = env.add(running_for(100));
    let full = WatchTaskRequest {
        view: TaskView::Full as i32,
        ..watch_req(&name)
    };
    let mut s = open(&env, full).await;
    assert_eq!(event(&mut s).await.r#type(), EventType::Snapshot);
    env.clock().advance(Duration::from_secs(50));
    let read = env.get_task(&name).await.expect("GetTask");
    assert!(read.upstream_payload.is_none(), "BASIC view");
    let next = tokio::time::timeout(Duration::from_secs(3), event(&mut s))
        .await
        .expect("the watch hears the read before its next poll");
    assert_eq!(next.r#type(), EventType::Changed, "{next:?}");
    assert_eq!(task(&next).progress, read.progress);
    assert!(task(&next).upstream_payload.is_some(), "FULL view");
}

#[tokio::test]
async fn a_garbled_answer_is_retried_and_the_watch_reaches_its_end() {
    let env = start().await;
    let name = env.add(running_for(100));
    let mut s = watch_past_snapshot(&env, &name).await;
    // Two garbled reads (not JSON, then the wrong shape) fit the retry budget.
    for body in ["<html>oops</html>", r#"{"status": 7}"#] {
        let fault = vmware_grpc_gateway::simulator::Fault::Status {
            status: 200,
            body: body.into(),
        };
        env.sim.vcenter.inject(ROUTE_TASK_GET, fault);
    }
    env.clock().advance(Duration::from_secs(200));
    let (events, end) = drain(&mut s).await;
    assert!(end.is_none(), "the watch ends OK: {end:?}");
    let last = events.last().and_then(|e| e.task.as_ref()).expect("events");
    assert!(last.done, "the terminal event arrived");
}

#[tokio::test]
async fn the_watch_ends_with_deadline_exceeded_at_the_callers_deadline() {
    let env = start().await;
    let name = env.add(running_for(100));
    let mut req = Request::new(watch_req(&name));
    req.set_timeout(Duration::from_millis(400));
    let mut s = env.tasks().watch_task(req).await.unwrap().into_inner();
    assert_eq!(event(&mut s).await.r#type(), EventType::Snapshot);
    let st = end_error(&mut s).await;
    assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
    error_info(&st);
}

#[tokio::test]
async fn wait_task_returns_when_the_task_is_done() {
    let env = start().await;
    let name = env.add(running_for(100));
    let clock = env.clock().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        clock.advance(Duration::from_secs(200));
    });
    let t = wait(&env, wait_req(&name, Some(dur(4000)))).await.unwrap();
    assert!(t.done);
    assert_eq!(t.state(), TaskState::Succeeded);
}

#[tokio::test]
async fn wait_task_returns_the_latest_snapshot_at_its_timeout_or_before_the_deadline() {
    let env = start().await;
    let name = env.add(running_for(100));
    env.clock().advance(Duration::from_secs(40));
    let t = wait(&env, wait_req(&name, Some(dur(300)))).await.unwrap();
    assert!(!t.done);
    assert_eq!(t.progress.unwrap().percent, 40);
    // No timeout, but a 600 ms call: the answer comes before the deadline, not DEADLINE_EXCEEDED.
    let mut req = Request::new(wait_req(&name, None));
    req.set_timeout(Duration::from_millis(600));
    let t = wait(&env, req).await.unwrap();
    assert!(!t.done);

    let negative = prost_types::Duration {
        seconds: -5,
        nanos: 0,
    };
    let refused = wait(&env, wait_req(&name, Some(negative))).await;
    // A negative timeout is refused.
    expect_error(refused, Code::InvalidArgument, "INVALID_DURATION");
}

#[tokio::test]
async fn wait_task_with_a_zero_timeout_reads_the_current_state_every_time() {
    let env = start().await;
    let name = env.add(running_for(100));
    env.clock().advance(Duration::from_secs(40));
    // Zero means "the current state now": a read, never an upstream timeout (API.md).
    for _ in 0..30 {
        let t = wait(&env, wait_req(&name, Some(dur(0)))).await.unwrap();
        assert!(!t.done);
        assert_eq!(t.progress.unwrap().percent, 40);
    }
}

#[tokio::test]
async fn a_client_that_disconnects_stops_the_polling() {
    let env = start().await;
    let name = env.add(running_for(100));
    let s = watch_past_snapshot(&env, &name).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        env.sim.vcenter.requests(ROUTE_TASK_GET) > 1,
        "it was polling"
    );
    drop(s);
    // Within a round (at most the 200 ms ceiling) no poll is sent any more.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = env.sim.vcenter.requests(ROUTE_TASK_GET);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(env.sim.vcenter.requests(ROUTE_TASK_GET), after);
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_unavailable_shutting_down() {
    let mut env = start().await;
    let name = env.add(running_for(100));
    let mut s = watch_past_snapshot(&env, &name).await;
    let gateway = env.gateway.take().expect("running");
    let stopped = tokio::spawn(gateway.shutdown());
    let st = end_error(&mut s).await;
    assert_error(&st, Code::Unavailable, "SHUTTING_DOWN");
    assert!(stopped.await.unwrap().is_ok());
    env.shutdown().await;
}

#[tokio::test]
async fn watch_runspace_follows_it_until_ready() {
    let env = start_all().await;
    let made = env.create_runspace("upstreams/srs1", "", "").await.unwrap();
    let mut s = env
        .runspaces()
        .watch_runspace(WatchRunspaceRequest {
            name: made.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first: RunspaceEvent = s.message().await.unwrap().unwrap();
    assert_eq!(first.r#type(), EventType::Snapshot);
    assert_eq!(first.runspace.unwrap().state(), RunspaceState::Creating);
    env.sim
        .script_runtime
        .clock()
        .advance(Duration::from_secs(10));
    let ready = s.message().await.unwrap().unwrap();
    assert_eq!(ready.r#type(), EventType::Changed);
    assert_eq!(ready.runspace.unwrap().state(), RunspaceState::Ready);
    assert!(s.message().await.unwrap().is_none(), "ends after READY");
}

#[tokio::test]
async fn cloud_director_tasks_are_polled_through_one_query_and_read_again_only_when_changed() {
    let env = start_all().await;
    let vcd = &env.sim.cloud_director;
    let names: Vec<String> = (0..20)
        .map(|_| format!("upstreams/vcd1/tasks/{}", vcd.tasks().add(vcd_deploy())))
        .collect();
    let (mut streams, _) = watch_each(&env, &names).await;
    // Let the pollers fall into step, then count a quiet second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (gets, queries) = (
        vcd.requests("GET /api/task/{task}"),
        vcd.requests("GET /api/query"),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let quiet_gets = vcd.requests("GET /api/task/{task}") - gets;
    let quiet_queries = vcd.requests("GET /api/query") - queries;
    assert_eq!(quiet_gets, 0, "nothing changed: no task is read again");
    assert!(quiet_queries >= 1, "the tasks are still polled");
    assert!(
        quiet_queries < 20,
        "about one query per round for 20 tasks, not one each: {quiet_queries}"
    );
    // A change shows in the records; each changed task is read once and its watchers told.
    vcd.clock().advance(Duration::from_secs(10));
    each_changes_to(&mut streams, 10).await;
    let reread = vcd.requests("GET /api/task/{task}") - gets;
    assert!(
        (20..=40).contains(&reread),
        "each changed task read again once or so: {reread}"
    );
}

#[tokio::test]
async fn cloud_director_watches_fall_back_to_gets_where_the_query_refuses_an_id_filter() {
    let env = start_all().await;
    let vcd = &env.sim.cloud_director;
    vcd.inject(
        "GET /api/query",
        Fault::Status {
            status: 400,
            body: r#"{"majorErrorCode":400,"minorErrorCode":"BAD_REQUEST","message":"Bad filter: id"}"#.into(),
        },
    );
    // Several watched tasks, so the lane batches them into a query (one task alone is a GET).
    let ids: Vec<String> = (0..3).map(|_| vcd.tasks().add(vcd_deploy())).collect();
    let urns: Vec<String> = ids
        .iter()
        .map(|id| format!("upstreams/vcd1/tasks/urn:vcloud:task:{id}"))
        .collect();
    let (mut streams, snapshots) = watch_each(&env, &urns).await;
    for (first, id) in snapshots.iter().zip(&ids) {
        let msg = "the URN spelling is one task, named by its uuid";
        assert_eq!(&task(first).id, id, "{msg}");
    }
    // Rounds pass: the batched query meets the refusal once, then polls are GETs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        vcd.requests("GET /api/query"),
        1,
        "the batched poll reached the query service once and was refused"
    );
    vcd.clock().advance(Duration::from_secs(10));
    // The change came through the GETs.
    each_changes_to(&mut streams, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        vcd.requests("GET /api/query"),
        1,
        "no more queries after the refusal"
    );
}
