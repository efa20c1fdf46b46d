//! The `vmware-grpc-gateway` command line: parse, then hand off to the library.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use vmware_grpc_gateway::{
    config::{Config, LogFormat},
    demo, server,
    simulator::{FaultSettings, SimOptions, Simulator},
};

/// mimalloc instead of glibc's malloc: under concurrent calls glibc's arenas contend (a quarter
/// of the gateway's CPU went to malloc/free and their futex waits); see docs/BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "A gRPC gateway for VMware task and runspace REST APIs"
)]
struct Cli {
    /// Log line format on stderr (default: `[log] format` of the configuration, else text).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured upstreams.
    Serve {
        /// TOML configuration file (environment overrides: VMWGW_*).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the gateway on the embedded simulator of every upstream kind.
    Demo {
        /// Address of the gRPC server.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Let the simulator speak HTTPS with a self-signed certificate the gateway trusts.
        #[arg(long)]
        tls: bool,
        /// Serve gRPC over TLS, with a certificate for localhost and 127.0.0.1 signed by a CA
        /// generated for this run (the banner shows grpcurl with -cacert).
        #[arg(long)]
        grpc_tls: bool,
        /// Address of the admin listener (/metrics, /healthz, /readyz).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
    },
    /// Run only the simulator, to point other tools at it.
    Simulate {
        /// Serve HTTPS with a self-signed certificate.
        #[arg(long)]
        tls: bool,
        /// Port of the control endpoint on 127.0.0.1 (GET/PUT /faults; 0: any free port).
        #[arg(long, default_value_t = 0)]
        control_port: u16,
        #[command(flatten)]
        faults: FaultFlags,
    },
    /// Validate a configuration and print it with secrets redacted.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a caller token on standard input and print its line for the tokens file.
    HashToken,
}

/// Logs to stderr at `RUST_LOG`'s level (default `info`), as text or one JSON object a line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The standing faults of every simulated part, from the start (the control endpoint
/// changes them later).
#[derive(Args)]
#[command(next_help_heading = "Faults (every part; the control endpoint changes them later)")]
struct FaultFlags {
    /// Answer this fraction of requests (0-1) with 503 and the upstream's own error body.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = rate)]
    error_rate: f64,
    /// Delay every answer by this long, e.g. 100ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Expire every session this long after its login, however much it is used, e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    session_expiry: Option<Duration>,
    /// Break this fraction (0-1) of successful JSON answers to authenticated calls: truncated,
    /// not JSON, or JSON of the wrong shape, in turn.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = rate)]
    malformed_rate: f64,
    /// Close every connection at once.
    #[arg(long)]
    refuse_connections: bool,
    /// Accept connections and never answer.
    #[arg(long, conflicts_with = "refuse_connections")]
    blackhole: bool,
    /// Handle each request in full, then wait this long before answering.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    delay_after_handling: Option<Duration>,
}

/// A fraction between 0 and 1.
fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("a fraction between 0 and 1 is needed, e.g. 0.2".to_string()),
    }
}

impl FaultFlags {
    fn settings(&self) -> FaultSettings {
        FaultSettings {
            error_rate: self.error_rate,
            latency: self.latency.unwrap_or_default(),
            session_expiry: self.session_expiry.unwrap_or_default(),
            malformed_rate: self.malformed_rate,
            refuse_connections: self.refuse_connections,
            blackhole: self.blackhole,
            delay_after_handling: self.delay_after_handling.unwrap_or_default(),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let cfg = match &cli.command {
        Command::Serve { config } | Command::CheckConfig { config } => Some(Config::load(config)?),
        _ => None,
    };
    let configured = cfg.as_ref().map(|c| c.log.format);
    init_logging(cli.log_format.or(configured).unwrap_or_default());
    match cli.command {
        Command::Serve { .. } => {
            let cfg = cfg.context("configuration loaded")?;
            server::serve(cfg, stop_signal()).await?;
        }
        Command::HashToken => {
            let mut token = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut token)
                .context("reading the token on standard input")?;
            let token = token.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!token.is_empty(), "no token on standard input");
            println!("{}", vmware_grpc_gateway::auth::hash_line(token));
        }
        Command::CheckConfig { config } => {
            let cfg = cfg.context("configuration loaded")?;
            println!("# {}: valid\n{}", config.display(), cfg.redacted_toml());
        }
        Command::Demo {
            listen,
            tls,
            grpc_tls,
            admin_listen,
        } => {
            let sim = Simulator::start(SimOptions {
                tls,
                ..SimOptions::default()
            })
            .await
            .context("starting the simulator")?;
            let ca = match demo::ca_bundle(&sim) {
                Some(pem) => {
                    let path = std::env::temp_dir()
                        .join(format!("vmwgw-demo-ca-{}.pem", std::process::id()));
                    std::fs::write(&path, pem).context("writing the simulator's certificates")?;
                    Some(path)
                }
                None => None,
            };
            // Removes its directory when dropped, at the end of this block.
            let grpc_tls = if grpc_tls {
                let files = demo::DemoTls::generate(&std::env::temp_dir())
                    .context("writing the gRPC certificate")?;
                Some(files)
            } else {
                None
            };
            let mut cfg = demo::config(&sim, listen, ca.as_deref());
            // The demo must start wherever it runs: a busy admin port moves, it does not stop it.
            let admin_listen = match std::net::TcpListener::bind(admin_listen) {
                Ok(probe) => {
                    drop(probe);
                    admin_listen
                }
                Err(e) => {
                    tracing::warn!(addr = %admin_listen, error = %e, "admin port busy: using a free one");
                    SocketAddr::new(admin_listen.ip(), 0)
                }
            };
            cfg.admin.listen = Some(admin_listen);
            cfg.server.tls = grpc_tls.as_ref().map(demo::DemoTls::config);
            let running = server::Running::start(cfg.clone()).await?;
            let grpc_ca = grpc_tls.as_ref().map(demo::DemoTls::ca_file);
            println!("{}", demo::banner(running.addr, &cfg, grpc_ca.as_deref()));
            if let Some(admin) = running.admin_addr {
                println!("Metrics: curl http://{admin}/metrics   (also /healthz, /readyz)\n");
            }
            stop_signal().await;
            running.shutdown().await?;
            sim.shutdown();
            if let Some(path) = ca {
                let _ = std::fs::remove_file(path);
            }
        }
        Command::Simulate {
            tls,
            control_port,
            faults,
        } => {
            let faults = faults.settings();
            faults.validate()?;
            let sim = Simulator::start(SimOptions {
                tls,
                ..SimOptions::default()
            })
            .await
            .context("starting the simulator")?;
            sim.set_faults(faults.clone())?;
            let control = sim
                .start_control(control_port)
                .await
                .context("starting the control endpoint")?;
            print!("{}", demo::simulator_listing(&sim));
            if let Some(pem) = demo::ca_bundle(&sim) {
                println!("\nself-signed certificates (trust them with ca_file):\n{pem}");
            }
            println!("{}", demo::control_listing(&sim, &control.url(), &faults));
            println!("Ctrl-C stops the simulator.");
            stop_signal().await;
            control.shutdown();
            sim.shutdown();
        }
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
