//! Load tool for the unary path (docs/BENCHMARKS.md): `GetTask` (BASIC view) through the
//! gateway against `GET /api/cis/tasks/{task}` straight at the simulated vCenter, with the
//! same concurrency in the same run, then both again one call at a time. A third mode,
//! `floor`, sends `GetUpstream` (answered from the gateway's configuration, no upstream
//! request) at the same concurrency: what the gRPC serving stack costs a call on its own.
//!
//! It prints figures and asserts nothing. The simulator and the load generator run in this
//! process; the gateway runs as a child process (the crate's binary, `serve --config`, with
//! the admin listener on so that its metrics recorder runs as deployed), so the CPU time read
//! from its `/proc/<pid>/stat` is the gateway's alone.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tokio::time::Instant;
use tonic::transport::Channel;
use vmware_grpc_gateway::{
    proto::{
        GetTaskRequest, GetUpstreamRequest, TaskView, task_service_client::TaskServiceClient,
        upstream_service_client::UpstreamServiceClient,
    },
    simulator::{Phase, SimClock, SimOptions, Simulator, Step, TaskSpec},
};

#[derive(Parser)]
#[command(about = "GetTask load benchmark: through the gateway against the REST call direct")]
struct Args {
    /// Measured seconds per mode (after a warm-up).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// HTTP/2 connections to the gateway.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight per connection (the direct path gets connections × this in flight too).
    #[arg(long, default_value_t = 16)]
    per_connection: usize,
    /// Simulated tasks the calls go round.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// The gateway binary (default: `vmware-grpc-gateway` next to this example's directory).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// `RUST_LOG` of the gateway (its per-call log line is at info).
    #[arg(long, default_value = "warn")]
    gateway_log: String,
    /// Only these modes (comma-separated: gateway, direct, gateway-seq, direct-seq, floor).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const WARMUP: Duration = Duration::from_secs(2);

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(&args))
}

/// The gateway binary: `target/<profile>/vmware-grpc-gateway` beside `examples/`.
fn gateway_binary(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.gateway {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or_else(|| anyhow!("no directory above {}", exe.display()))?;
    let bin = dir.join("vmware-grpc-gateway");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bin vmware-grpc-gateway --example unary_bench) or pass --gateway",
            bin.display()
        );
    }
    Ok(bin)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Gateway {
    child: Child,
    addr: SocketAddr,
    config: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn spawn_gateway(args: &Args, sim: &Simulator) -> Result<Gateway> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let config = std::env::temp_dir().join(format!("unary-bench-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\ndrain_delay = \"0s\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[upstreams]]\nname = \"vc1\"\nkind = \"vsphere\"\nurl = \"{}\"\nusername = \"{}\"\n",
            sim.vcenter.url(),
            sim.vcenter.username()
        ),
    )?;
    let child = Command::new(gateway_binary(args)?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("VMWGW_UPSTREAM_VC1_PASSWORD", sim.vcenter.password())
        .env("RUST_LOG", &args.gateway_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting the gateway")?;
    let gw = Gateway {
        child,
        addr,
        config,
    };
    let started = std::time::Instant::now();
    while TcpStream::connect(addr).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the gateway did not listen on {addr} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(gw)
}

/// utime + stime of `pid`, in seconds (`/proc/<pid>/stat` counts in USER_HZ = 100).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// With `UNARY_BENCH_CALLGRIND=1` (the gateway run under `valgrind --tool=callgrind` through
/// `--gateway`), zeroes the gateway's counts when measuring starts and dumps them when it ends,
/// so a dump's instructions divided by the calls printed are the instructions per call.
fn callgrind_control(pid: Option<u32>, what: &str) {
    if let Some(pid) = pid
        && std::env::var_os("UNARY_BENCH_CALLGRIND").is_some()
    {
        let _ = Command::new("callgrind_control")
            .args([what, &pid.to_string()])
            .stdout(Stdio::null())
            .status();
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Figures {
    calls: usize,
    errors: usize,
    per_sec: f64,
    min: Duration,
    p50: Duration,
    p99: Duration,
    /// Gateway CPU per call, when the gateway served the calls.
    cpu_per_call: Option<Duration>,
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

impl Figures {
    fn print(&self, mode: &str, in_flight: usize) {
        println!(
            "  {mode:<12} {in_flight:>4} in flight: {:>9.0} calls/s  min {} ms  p50 {} ms  p99 {} ms  gateway CPU/call {}  ({} calls, {} errors)",
            self.per_sec,
            ms(self.min),
            ms(self.p50),
            ms(self.p99),
            self.cpu_per_call.map_or("—".to_string(), |c| format!(
                "{:.1} µs",
                c.as_secs_f64() * 1e6
            )),
            self.calls,
            self.errors
        );
    }
}

/// Runs `workers` loops of `call` for the warm-up, then `secs` measured.
async fn drive<F, Fut>(workers: usize, secs: u64, gateway_pid: Option<u32>, call: F) -> Figures
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..workers {
        let (call, measuring, stop) = (call.clone(), measuring.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(1 << 16);
            let mut errors = 0;
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = call(w, n).await;
                let d = t.elapsed();
                n += workers;
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        samples.push(d);
                    } else {
                        errors += 1;
                    }
                }
            }
            (samples, errors)
        }));
    }
    tokio::time::sleep(WARMUP).await;
    let cpu_before = gateway_pid.and_then(cpu_seconds);
    callgrind_control(gateway_pid, "--zero");
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = gateway_pid.and_then(cpu_seconds);
    callgrind_control(gateway_pid, "--dump");
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut errors = 0;
    for h in handles {
        if let Ok((s, e)) = h.await {
            samples.extend(s);
            errors += e;
        }
    }
    samples.sort_unstable();
    let calls = samples.len();
    let cpu_per_call = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if calls > 0 => Some(Duration::from_secs_f64((a - b) / calls as f64)),
        _ => None,
    };
    Figures {
        calls,
        errors,
        per_sec: calls as f64 / elapsed,
        min: samples.first().copied().unwrap_or_default(),
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        cpu_per_call,
    }
}

/// One client of a service per connection, for the workers to share round the connections.
fn clients<C>(channels: &[Channel], client: fn(Channel) -> C) -> Arc<Vec<C>> {
    Arc::new(channels.iter().cloned().map(client).collect())
}

async fn through_gateway(
    channels: &[Channel],
    names: &Arc<Vec<String>>,
    in_flight: usize,
    secs: u64,
    pid: u32,
) -> Figures {
    let clients = clients(channels, TaskServiceClient::new);
    let names = names.clone();
    drive(in_flight, secs, Some(pid), move |w, n| {
        let mut client = clients[w % clients.len()].clone();
        let name = names[n % names.len()].clone();
        async move {
            let req = GetTaskRequest {
                name,
                view: TaskView::Basic as i32,
            };
            client.get_task(req).await.is_ok()
        }
    })
    .await
}

/// `GetUpstream` through the gateway: the gRPC stack, the layers and a handler, no upstream.
async fn floor(channels: &[Channel], in_flight: usize, secs: u64, pid: u32) -> Figures {
    let clients = clients(channels, UpstreamServiceClient::new);
    drive(in_flight, secs, Some(pid), move |w, _| {
        let mut client = clients[w % clients.len()].clone();
        async move {
            let req = GetUpstreamRequest {
                name: "upstreams/vc1".to_string(),
            };
            client.get_upstream(req).await.is_ok()
        }
    })
    .await
}

async fn direct(
    client: &reqwest::Client,
    urls: &Arc<Vec<String>>,
    session: &str,
    in_flight: usize,
    secs: u64,
) -> Figures {
    let (client, urls, session) = (client.clone(), urls.clone(), session.to_string());
    drive(in_flight, secs, None, move |_, n| {
        let req = client
            .get(&urls[n % urls.len()])
            .header("vmware-api-session-id", &session);
        async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            }
        }
    })
    .await
}

async fn bench(args: &Args) -> Result<()> {
    let sim = Simulator::start(SimOptions {
        clock: SimClock::real(),
        seed_demo_tasks: false,
        ..SimOptions::default()
    })
    .await?;
    let mut ids = Vec::new();
    for _ in 0..args.tasks.max(1) {
        // Running for an hour: every read finds a task in progress.
        let steps = vec![Step::new(
            Duration::from_secs(3600),
            Phase::Running { from: 0, to: 100 },
        )];
        ids.push(sim.vcenter.tasks().add(TaskSpec::new(
            "com.vmware.vcenter.VM",
            "clone",
            "bench task",
            steps,
        )));
    }
    let names: Arc<Vec<String>> = Arc::new(
        ids.iter()
            .map(|id| format!("upstreams/vc1/tasks/{id}"))
            .collect(),
    );
    let base = sim.vcenter.url();
    let urls: Arc<Vec<String>> = Arc::new(
        ids.iter()
            .map(|id| format!("{base}/api/cis/tasks/{id}"))
            .collect(),
    );
    let in_flight = args.connections.max(1) * args.per_connection.max(1);
    let gw = spawn_gateway(args, &sim)?;
    let pid = gw.child.id();

    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{}", gw.addr))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    // The direct client: an HTTP/1.1 pool as large as the calls in flight, one session.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .tcp_nodelay(true)
        .build()?;
    let session: String = http
        .post(format!("{base}/api/session"))
        .basic_auth(sim.vcenter.username(), Some(sim.vcenter.password()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;

    println!(
        "unary_bench: GetTask (BASIC) over {} simulated vCenter tasks; {} s measured per mode after {} s warm-up; gateway RUST_LOG={}; {} cores",
        ids.len(),
        args.secs,
        WARMUP.as_secs(),
        args.gateway_log,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  concurrent: {} gRPC connections × {} calls each; direct: {} calls over an HTTP/1.1 pool",
        channels.len(),
        args.per_connection,
        in_flight
    );
    let run = |mode: &str| args.only.is_empty() || args.only.iter().any(|m| m == mode);
    let mut results = Vec::new();
    if run("gateway") {
        let f = through_gateway(&channels, &names, in_flight, args.secs, pid).await;
        f.print("gateway", in_flight);
        results.push(("gateway", f));
    }
    if run("direct") {
        let f = direct(&http, &urls, &session, in_flight, args.secs).await;
        f.print("direct", in_flight);
        results.push(("direct", f));
    }
    if run("gateway-seq") {
        let f = through_gateway(&channels[..1], &names, 1, args.secs, pid).await;
        f.print("gateway-seq", 1);
        results.push(("gateway-seq", f));
    }
    if run("direct-seq") {
        let f = direct(&http, &urls, &session, 1, args.secs).await;
        f.print("direct-seq", 1);
        results.push(("direct-seq", f));
    }
    if run("floor") {
        let f = floor(&channels, in_flight, args.secs, pid).await;
        f.print("floor", in_flight);
        results.push(("floor", f));
    }
    let get = |m: &str| results.iter().find(|(k, _)| *k == m).map(|(_, f)| f);
    if let (Some(g), Some(d)) = (get("gateway"), get("direct")) {
        println!(
            "  throughput through the gateway: {:.0} % of direct",
            100.0 * g.per_sec / d.per_sec.max(1e-9)
        );
    }
    if let (Some(g), Some(d)) = (get("gateway-seq"), get("direct-seq")) {
        println!(
            "  one at a time, the gateway adds {} ms at p50",
            ms(g.p50.saturating_sub(d.p50))
        );
    }
    if let (Some(g), Some(f)) = (get("gateway"), get("floor")) {
        let share = |x: &Figures| x.cpu_per_call.map_or(0.0, |c| c.as_secs_f64() * 1e6);
        println!(
            "  the gRPC stack alone (floor, GetUpstream) is {:.0} % of a GetTask's gateway CPU",
            100.0 * share(f) / share(g).max(1e-9)
        );
    }
    println!(
        "  gateway peak RSS {} MiB",
        peak_rss_kib(pid).map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
    let _ = std::io::stdout().flush();
    drop(gw);
    sim.shutdown();
    Ok(())
}
