//! Load tool for the watch engine (docs/BENCHMARKS.md): many concurrent WatchTask streams
//! over a few simulated vCenter tasks that change on a schedule, against the same number of
//! naive per-watcher pollers (each GETting its task on a fixed interval, as SDK loops do).
//!
//! It prints figures and asserts nothing. The simulator and the clients run in this process;
//! the gateway runs as a child process (this binary with `serve`), so its peak RSS is its own.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use tokio::time::Instant;
use tonic::transport::Channel;
use vmware_grpc_gateway::{
    config::{Config, ServerConfig, UpstreamConfig, UpstreamKind},
    proto::{EventType, WatchTaskRequest, task_service_client::TaskServiceClient},
    simulator::{Phase, SimClock, SimOptions, Simulator, Step, TaskSpec},
    upstream::{Registry, TaskSource},
};

#[derive(Parser)]
#[command(about = "WatchTask load benchmark against the simulator")]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Concurrent watchers (streams, and naive pollers in the second mode).
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// Simulated tasks, each watched by watchers/tasks clients.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Measured seconds per mode (after a warm-up).
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Each task changes (progress +1 %) every this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    change_every_ms: u64,
    /// Interval of the naive per-watcher poll loop.
    #[arg(long, default_value_t = 500)]
    naive_interval_ms: u64,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 10)]
    channels: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the gateway in front of `url` (password from VMWGW_UPSTREAM_VC1_PASSWORD) and
    /// prints `LISTEN <addr>`; stops when stdin closes.
    Serve { url: String, username: String },
}

const WARMUP: Duration = Duration::from_secs(3);

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match &args.command {
        Some(Cmd::Serve { url, username }) => rt.block_on(serve(url, username)),
        None => rt.block_on(bench(&args)),
    }
}

fn gateway_config(url: &str, username: &str, password: &str) -> Config {
    Config {
        server: ServerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            // 10,000 streams over 10 connections: 1,000 each, plus room.
            max_concurrent_streams: 4096,
            drain_delay: Duration::ZERO,
            ..ServerConfig::default()
        },
        upstreams: vec![UpstreamConfig::new(
            "vc1",
            UpstreamKind::Vsphere,
            url,
            username,
            password,
        )],
        ..Config::default()
    }
}

async fn serve(url: &str, username: &str) -> Result<()> {
    let password = std::env::var("VMWGW_UPSTREAM_VC1_PASSWORD").context("password variable")?;
    let cfg = gateway_config(url, username, &password);
    let running = vmware_grpc_gateway::server::Running::start(cfg).await?;
    println!("LISTEN {}", running.addr);
    std::io::stdout().flush()?;
    // Stop when the parent closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await?;
    running.shutdown().await?;
    Ok(())
}

/// When each task's progress moves, on the simulator clock: task `i` reaches `k` % at
/// `added + offset(i) + k * every`.
struct Schedule {
    added: Vec<Duration>,
    every: Duration,
    tasks: usize,
}

impl Schedule {
    fn offset(&self, i: usize) -> Duration {
        self.every.mul_f64(i as f64 / self.tasks as f64)
    }
    fn change_time(&self, i: usize, percent: i32) -> Duration {
        self.added[i] + self.offset(i) + self.every * percent.max(0) as u32
    }
}

fn spec(offset: Duration, every: Duration) -> TaskSpec {
    let steps = (0..=100u32)
        .map(|k| Step::new(offset + every * k, Phase::Running { from: k, to: k }))
        .collect();
    TaskSpec::new("com.vmware.vcenter.VM", "clone", "bench task", steps)
}

#[derive(Default)]
struct Delays {
    measuring: bool,
    samples: Vec<Duration>,
}

fn record(delays: &Mutex<Delays>, d: Duration) {
    if let Ok(mut g) = delays.lock()
        && g.measuring
    {
        g.samples.push(d);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Figures {
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
    samples: usize,
}

/// Runs the measurement window: warm-up, then `secs` with delays recorded.
async fn measure(sim: &Simulator, delays: &Mutex<Delays>, secs: u64) -> Figures {
    tokio::time::sleep(WARMUP).await;
    let before = sim.vcenter.total_requests();
    let start = Instant::now();
    if let Ok(mut g) = delays.lock() {
        g.measuring = true;
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let mut samples = match delays.lock() {
        Ok(mut g) => {
            g.measuring = false;
            std::mem::take(&mut g.samples)
        }
        Err(_) => Vec::new(),
    };
    let requests = sim.vcenter.total_requests() - before;
    let elapsed = start.elapsed().as_secs_f64();
    samples.sort();
    Figures {
        requests_per_sec: requests as f64 / elapsed,
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        samples: samples.len(),
    }
}

fn spawn_gateway(sim: &Simulator) -> Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", &sim.vcenter.url(), sim.vcenter.username()])
        .env("VMWGW_UPSTREAM_VC1_PASSWORD", sim.vcenter.password())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("LISTEN ")
        .ok_or_else(|| anyhow!("gateway said {line:?}"))?
        .to_string();
    Ok((child, addr))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn bench(args: &Args) -> Result<()> {
    let sim = Simulator::start(SimOptions {
        clock: SimClock::real(),
        seed_demo_tasks: false,
        ..SimOptions::default()
    })
    .await?;
    let every = Duration::from_millis(args.change_every_ms);
    let clock = sim.vcenter.clock().clone();
    let mut ids = Vec::new();
    let mut added = Vec::new();
    for i in 0..args.tasks {
        let offset = every.mul_f64(i as f64 / args.tasks as f64);
        added.push(clock.now());
        ids.push(sim.vcenter.tasks().add(spec(offset, every)));
    }
    let schedule = Arc::new(Schedule {
        added,
        every,
        tasks: args.tasks,
    });
    println!(
        "watch_bench: {} watchers over {} tasks (each +1 % every {} ms), {} s measured per mode after {} s warm-up, {} cores",
        args.watchers,
        args.tasks,
        args.change_every_ms,
        args.secs,
        WARMUP.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Mode 1: the gateway's shared pollers.
    let (mut child, addr) = spawn_gateway(&sim)?;
    let mut channels = Vec::new();
    for _ in 0..args.channels.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let delays = Arc::new(Mutex::new(Delays::default()));
    let opened = Instant::now();
    let mut streams = Vec::new();
    for w in 0..args.watchers {
        let i = w % args.tasks;
        let mut client = TaskServiceClient::new(channels[w % channels.len()].clone());
        let name = format!("upstreams/vc1/tasks/{}", ids[i]);
        let (delays, schedule, clock) = (delays.clone(), schedule.clone(), clock.clone());
        streams.push(tokio::spawn(async move {
            let req = WatchTaskRequest {
                name,
                ..Default::default()
            };
            let Ok(resp) = client.watch_task(req).await else {
                return false;
            };
            let mut s = resp.into_inner();
            while let Ok(Some(e)) = s.message().await {
                if e.r#type() == EventType::Changed {
                    let percent = e.task.and_then(|t| t.progress).map_or(0, |p| p.percent);
                    let d = clock.now().saturating_sub(schedule.change_time(i, percent));
                    record(&delays, d);
                }
            }
            true
        }));
    }
    println!(
        "  gateway: {} stream tasks spawned in {:.1} s",
        args.watchers,
        opened.elapsed().as_secs_f64()
    );
    let gw = measure(&sim, &delays, args.secs).await;
    let failed = streams.iter().filter(|s| s.is_finished()).count();
    for s in &streams {
        s.abort();
    }
    let rss = peak_rss_kib(child.id());
    drop(child.stdin.take());
    let _ = child.wait();
    println!(
        "  gateway (shared pollers, default [watch]): {:.1} upstream requests/s, change-to-event delay p50 {} ms p99 {} ms ({} events), gateway peak RSS {} MiB, {} streams ended early",
        gw.requests_per_sec,
        gw.p50.as_millis(),
        gw.p99.as_millis(),
        gw.samples,
        rss.map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0)),
        failed
    );

    // Mode 2: one naive poller per watcher, straight at the upstream.
    let cfg = gateway_config(
        &sim.vcenter.url(),
        sim.vcenter.username(),
        sim.vcenter.password(),
    );
    let registry = Arc::new(Registry::new(&cfg)?);
    let source: Arc<dyn TaskSource> = registry
        .serving::<vmware_grpc_gateway::upstream::Tasks>()
        .first()
        .map(|(_, s)| Arc::clone(s))
        .ok_or_else(|| anyhow!("no task source"))?;
    let interval = Duration::from_millis(args.naive_interval_ms);
    let mut loops = Vec::new();
    for w in 0..args.watchers {
        let i = w % args.tasks;
        let (source, id) = (source.clone(), ids[i].clone());
        let (delays, schedule, clock) = (delays.clone(), schedule.clone(), clock.clone());
        loops.push(tokio::spawn(async move {
            // Started at random points of the interval, as independent clients would be.
            tokio::time::sleep(interval.mul_f64(fastrand::f64())).await;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<i32> = None;
            loop {
                ticker.tick().await;
                let Ok(t) = source.get(&id).await else {
                    continue;
                };
                let percent = t.progress.map_or(0, |p| p.percent);
                if last.is_some_and(|l| l != percent) {
                    let d = clock.now().saturating_sub(schedule.change_time(i, percent));
                    record(&delays, d);
                }
                last = Some(percent);
            }
        }));
    }
    let naive = measure(&sim, &delays, args.secs).await;
    for l in &loops {
        l.abort();
    }
    println!(
        "  naive (one GET loop per watcher every {} ms): {:.1} upstream requests/s, change-to-event delay p50 {} ms p99 {} ms ({} changes seen)",
        args.naive_interval_ms,
        naive.requests_per_sec,
        naive.p50.as_millis(),
        naive.p99.as_millis(),
        naive.samples
    );
    println!(
        "  bench process (simulator + clients) peak RSS {} MiB",
        peak_rss_kib(std::process::id())
            .map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
    sim.shutdown();
    Ok(())
}
