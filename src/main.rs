//! The `vmware-grpc-gateway` command line: parse, then hand off to the library.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};

/// mimalloc instead of glibc's malloc: under concurrent calls glibc's arenas contend (a quarter
/// of the gateway's CPU went to malloc/free and their futex waits); see docs/BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use vmware_grpc_gateway::{
    config::{Config, LogFormat},
    demo, server,
    simulator::{SimOptions, Simulator},
};

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
        /// Address of the admin listener (/metrics, /healthz, /readyz).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
    },
    /// Run only the simulator, to point other tools at it.
    Simulate {
        /// Serve HTTPS with a self-signed certificate.
        #[arg(long)]
        tls: bool,
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
            let mut cfg = demo::config(&sim, listen, ca.as_deref());
            cfg.admin.listen = Some(admin_listen);
            let running = server::Running::start(cfg.clone()).await?;
            println!("{}", demo::banner(running.addr, &cfg));
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
        Command::Simulate { tls } => {
            let sim = Simulator::start(SimOptions {
                tls,
                ..SimOptions::default()
            })
            .await
            .context("starting the simulator")?;
            print!("{}", demo::simulator_listing(&sim));
            if let Some(pem) = demo::ca_bundle(&sim) {
                println!("\nself-signed certificates (trust them with ca_file):\n{pem}");
            }
            println!("Ctrl-C stops the simulator.");
            stop_signal().await;
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
