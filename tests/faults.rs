//! The gateway under the simulator's standing faults, switched as users switch them
//! (`set_faults` and the control endpoint of `simulate`): watches survive 503s, expiring
//! sessions and malformed answers; refused and blackholed connections fail calls with the
//! right reason, and the gateway recovers when the fault ends.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tonic::{Code, Status, Streaming};
use vmware_grpc_gateway::{
    config::{Config, UpstreamConfig, WatchConfig},
    proto::{EventType, TaskEvent, TaskState, WatchTaskRequest},
    simulator::{Control, FaultSettings, Simulator},
};

/// Times of production's defaults are divided by this.
const SCALE: u32 = 25;

/// Production's `[watch]` and upstream defaults, times divided by [`SCALE`] (polls between
/// 20 ms and 400 ms, the circuit open for 400 ms), with the same watch retry budget (5
/// failures in a row), read retries (2) and circuit breaker (5 failures). One upstream
/// setting is raised, because with production's a steady 20 % of 503s can end a watch:
/// `read_retry_ratio` 0.5, not 0.2: at 20 % 503s a read needs 0.24 retries on average, so
/// production's budget runs dry after a few hundred reads and polls then fail one in five.
/// (The breaker opens about once in 3,000 requests here; a poll that meets the open circuit
/// waits for its probe without spending the watch's retry budget.)
fn production_scaled(cfg: &mut Config) {
    let prod = WatchConfig::default();
    cfg.watch = WatchConfig {
        min_poll_interval: prod.min_poll_interval / SCALE,
        max_poll_interval: prod.max_poll_interval / SCALE,
        max_wait: prod.max_wait / SCALE,
        // Heartbeats never reach the upstream; off, they cost the test nothing.
        heartbeat_default: Duration::ZERO,
        max_polls_per_second: prod.max_polls_per_second * SCALE,
        ..prod
    };
    for up in &mut cfg.upstreams {
        let prod = UpstreamConfig::new(&up.name, up.kind(), &up.url, "", "");
        up.read_retries = prod.read_retries;
        up.read_retry_ratio = 0.5;
        up.breaker_failures = prod.breaker_failures;
        up.breaker_open_for = prod.breaker_open_for / SCALE;
    }
}

async fn open(env: &Env, name: &str) -> Streaming<TaskEvent> {
    let req = WatchTaskRequest {
        name: name.into(),
        ..Default::default()
    };
    env.tasks()
        .watch_task(req)
        .await
        .expect("the watch opens")
        .into_inner()
}

/// A watch of each task, opened together (so their first reads share a poll).
async fn open_all(env: &Env, tasks: &[(String, String)]) -> Vec<Streaming<TaskEvent>> {
    futures_util::future::join_all(tasks.iter().map(|(_, name)| open(env, name))).await
}

/// The next message that is not a heartbeat; `Ok(None)` at the end of the stream.
async fn next(s: &mut Streaming<TaskEvent>) -> Result<Option<TaskEvent>, Status> {
    loop {
        match s.message().await? {
            Some(e) if e.r#type() == EventType::Heartbeat => continue,
            other => return Ok(other),
        }
    }
}

/// The next event of watch `i`, failing the test on an error or the end.
async fn event(i: usize, s: &mut Streaming<TaskEvent>) -> TaskEvent {
    match next(s).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("watch {i} ended early"),
        Err(st) => panic!("watch {i} failed: {st:?}"),
    }
}

fn percent(e: &TaskEvent) -> i32 {
    e.task
        .as_ref()
        .and_then(|t| t.progress.as_ref())
        .map_or(-1, |p| p.percent)
}

/// Whether `e` carries its task's final state, SUCCEEDED.
fn succeeded(e: &TaskEvent) -> bool {
    e.task
        .as_ref()
        .is_some_and(|t| t.done && t.state() == TaskState::Succeeded)
}

/// `n` tasks on the simulated vCenter that run for `secs`, by id and gateway name.
fn tasks(env: &Env, n: usize, secs: u64) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let id = env.sim.vcenter.tasks().add(running_for(secs));
            let name = task_name(&id);
            (id, name)
        })
        .collect()
}

#[tokio::test]
async fn two_hundred_watches_get_their_final_state_under_503s_and_sessions_expiring_every_10s() {
    let env = Env::start_with(sim_options(), production_scaled).await;
    let vc = &env.sim.vcenter;
    let faults = FaultSettings {
        error_rate: 0.2,
        session_expiry: Duration::from_secs(10),
        ..FaultSettings::default()
    };
    vc.set_faults(faults).unwrap();
    let tasks = tasks(&env, 200, 300);
    let mut streams = open_all(&env, &tasks).await;
    for (i, s) in streams.iter_mut().enumerate() {
        let e = event(i, s).await;
        assert_eq!((e.r#type(), percent(&e)), (EventType::Snapshot, 0));
    }
    // 15 s of the simulator's clock a step, 20 steps to the end: every watch tells each step
    // (the task moves 5 % a step), and each step's polls find the session expired.
    for step in 1..=20 {
        env.clock().advance(Duration::from_secs(15));
        let now = vc.tasks().snapshot(&tasks[0].0).expect("the task").progress;
        for (i, s) in streams.iter_mut().enumerate() {
            let e = event(i, s).await;
            assert_eq!(e.r#type(), EventType::Changed, "watch {i} step {step}");
            assert_eq!(percent(&e) as u32, now, "watch {i} step {step}");
            assert_eq!(succeeded(&e), step == 20, "watch {i} step {step}");
        }
    }
    let mut terminal = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        match next(s).await {
            Ok(None) => terminal += 1,
            other => panic!("watch {i} after its final state: {other:?}"),
        }
    }
    let counts = vc.fault_counts();
    println!(
        "streams {}, terminal events {terminal}, logins {}, requests {}, 503s sent {}, sessions expired {}",
        streams.len(),
        vc.logins(),
        vc.total_requests(),
        counts.errors,
        counts.sessions_expired,
    );
    assert_eq!(terminal, 200);
    assert!(counts.errors > 0, "503s were sent");
    // 21 clock readings 15 s apart. A session serves the reading it was made at, and the
    // next one only when a poll checked it just before the clock moved on.
    assert!(vc.logins() >= 11, "{} logins", vc.logins());
    assert!(counts.sessions_expired >= 10, "{counts:?}");
}

#[tokio::test]
async fn twenty_watches_get_their_final_state_when_a_tenth_of_the_answers_are_malformed() {
    // Polls at a steady 20 ms, so enough answers pass in a second or two.
    let env = Env::start_with(sim_options(), |cfg| {
        production_scaled(cfg);
        cfg.watch.max_poll_interval = cfg.watch.min_poll_interval;
    })
    .await;
    let vc = &env.sim.vcenter;
    let faults = FaultSettings {
        malformed_rate: 0.1,
        ..FaultSettings::default()
    };
    vc.set_faults(faults).unwrap();
    let tasks = tasks(&env, 20, 600);
    let mut streams = open_all(&env, &tasks).await;
    // The task moves while the answers break, until each kind of broken body (truncated,
    // not JSON, wrong shape: they take turns) has come three times.
    for _ in 0..500 {
        if vc.fault_counts().malformed >= 9 {
            break;
        }
        env.clock().advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let malformed = vc.fault_counts().malformed;
    assert!(malformed >= 9, "{malformed} malformed answers");
    env.clock().advance(Duration::from_secs(600));
    let mut terminal = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        let mut last = event(i, s).await;
        assert_eq!(last.r#type(), EventType::Snapshot);
        loop {
            match next(s).await {
                Ok(Some(e)) => {
                    // A broken answer never shows as a state: progress only rises.
                    assert!(percent(&e) >= percent(&last), "watch {i}: {e:?}");
                    last = e;
                }
                Ok(None) => break,
                Err(st) => panic!("watch {i} failed: {st:?}"),
            }
        }
        assert!(succeeded(&last), "watch {i} ended on {last:?}");
        terminal += 1;
    }
    println!(
        "streams {}, terminal events {terminal}, requests {}, malformed answers sent {}",
        streams.len(),
        vc.total_requests(),
        vc.fault_counts().malformed,
    );
    assert_eq!(terminal, 20);
}

/// `PUT path` on the control endpoint with `body`: the status and the JSON answer.
async fn put(control: &Control, path: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .put(format!("{}{path}", control.url()))
        .body(body.to_string())
        .send()
        .await
        .expect("the control endpoint answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(control: &Control, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{}{path}", control.url()))
        .await
        .expect("the control endpoint answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn off() -> Value {
    serde_json::to_value(FaultSettings::default()).unwrap()
}

#[tokio::test]
async fn the_control_endpoint_reads_back_what_it_was_sent_and_refuses_bad_bodies() {
    let sim = Simulator::start(sim_options()).await.unwrap();
    let control = sim.start_control(0).await.unwrap();
    // The parts are named as `simulate` lists them.
    let listed: Vec<&str> = vmware_grpc_gateway::demo::logins(&sim)
        .iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(listed, ["vc1", "snap1", "vcd1", "srs1"]);
    let (status, all) = get(&control, "/faults").await;
    assert_eq!(status, 200);
    let everywhere = |v: &Value| json!({"vc1": v, "snap1": v, "vcd1": v, "srs1": v});
    assert_eq!(all, everywhere(&off()));

    let (status, answer) = put(
        &control,
        "/faults",
        r#"{"error_rate":0.2,"latency":"100ms"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let mut slow = off();
    slow["error_rate"] = json!(0.2);
    slow["latency"] = json!("100ms");
    assert_eq!(answer, everywhere(&slow));
    assert_eq!(get(&control, "/faults").await.1, everywhere(&slow));

    let one = r#"{"session_expiry":"10s","malformed_rate":0.1,"delay_after_handling":"2s"}"#;
    let (status, answer) = put(&control, "/faults/vcd1", one).await;
    assert_eq!(status, 200);
    assert_eq!(get(&control, "/faults/vcd1").await, (200, answer.clone()));
    let mut expected = everywhere(&slow);
    expected["vcd1"] = answer;
    assert_eq!(get(&control, "/faults").await.1, expected);
    // The endpoint sets the struct tests set.
    let vcd = FaultSettings {
        session_expiry: Duration::from_secs(10),
        malformed_rate: 0.1,
        delay_after_handling: Duration::from_secs(2),
        ..FaultSettings::default()
    };
    assert_eq!(sim.cloud_director.faults(), vcd);

    for (body, says) in [
        ("not json", "the body is not fault settings"),
        (
            r#"{"error_rate":1.5}"#,
            "error_rate must be between 0 and 1",
        ),
        (r#"{"latency":"fast"}"#, "the body is not fault settings"),
        (r#"{"latency":100}"#, "the body is not fault settings"),
        (r#"{"errors":0.1}"#, "unknown field `errors`"),
        (
            r#"{"refuse_connections":true,"blackhole":true}"#,
            "exclude each other",
        ),
    ] {
        for path in ["/faults", "/faults/vc1"] {
            let (status, answer) = put(&control, path, body).await;
            assert_eq!(status, 400, "{path} {body}");
            let message = answer["error"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{path} {body}: {answer}");
        }
    }
    assert_eq!(
        get(&control, "/faults").await.1,
        expected,
        "nothing changed"
    );
    let (status, answer) = put(&control, "/faults/vc9", "{}").await;
    assert_eq!(status, 404);
    assert_eq!(
        answer["error"],
        "no part named 'vc9'; parts: vc1, snap1, vcd1, srs1"
    );
    assert_eq!(get(&control, "/nothing").await.0, 404);
}

#[tokio::test]
async fn refused_connections_fail_get_task_as_unreachable_until_turned_off() {
    let env = Env::start().await;
    let control = env.sim.start_control(0).await.unwrap();
    let name = env.add(running_for(100));
    env.get_task(&name)
        .await
        .expect("a session and an open connection");
    let (status, _) = put(&control, "/faults/vc1", r#"{"refuse_connections":true}"#).await;
    assert_eq!(status, 200);
    // The open connection is closed at its next request, then new ones at once.
    for _ in 0..2 {
        expect_error(
            env.get_task(&name).await,
            Code::Unavailable,
            "UPSTREAM_UNREACHABLE",
        );
    }
    assert!(env.sim.vcenter.fault_counts().connections_refused >= 2);
    let (status, _) = put(&control, "/faults/vc1", "{}").await;
    assert_eq!(status, 200);
    let task = env.get_task(&name).await.expect("recovered");
    assert_eq!(task.name, name);
}

#[tokio::test]
async fn a_blackhole_times_get_task_out_until_turned_off() {
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.upstreams[0].request_timeout = Duration::from_millis(300);
    })
    .await;
    let name = env.add(running_for(100));
    env.get_task(&name)
        .await
        .expect("a session and an open connection");
    let hole = FaultSettings {
        blackhole: true,
        ..FaultSettings::default()
    };
    env.sim.vcenter.set_faults(hole).unwrap();
    expect_error(
        env.get_task(&name).await,
        Code::DeadlineExceeded,
        "UPSTREAM_TIMEOUT",
    );
    assert_eq!(env.sim.vcenter.fault_counts().blackholed, 1);
    env.sim
        .vcenter
        .set_faults(FaultSettings::default())
        .unwrap();
    let task = env.get_task(&name).await.expect("recovered");
    assert_eq!(task.name, name);
}
