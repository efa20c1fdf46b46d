//! Assembles the tonic server: the three services, reflection v1 and v1alpha, health,
//! message and stream limits, the middleware stack (one span and log line per RPC), the
//! incoming connections (plaintext, or TLS through `tls.rs`), and graceful shutdown.
//!
//! Shutdown order: health turns NOT_SERVING, open streams end with UNAVAILABLE
//! "shutting down", the server keeps accepting for `drain_delay` (so probes see
//! NOT_SERVING), then no new connections are accepted, in-flight unary calls get
//! `shutdown_grace` to finish; the calls still running then get UNAVAILABLE SHUTTING_DOWN
//! (the [`EdgeLayer`]), and every upstream session is logged out.

use std::{future::Future, net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::ServingStatus;

use crate::{
    api::{
        edge::{Authenticator, EdgeLayer},
        rpc_log::RpcLogLayer,
        runspaces::RunspaceApi,
        tasks::TaskApi,
        upstreams::UpstreamApi,
    },
    auth::CallerStore,
    config::{Config, ConfigError},
    proto::{
        self, runspace_service_server::RunspaceServiceServer,
        task_service_server::TaskServiceServer, upstream_service_server::UpstreamServiceServer,
    },
    tls::{self, ServerTls},
    upstream::Registry,
    watch::WatchEngine,
};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How long the answers of calls cut at the end of the grace may take to be written.
const CUT_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// The names health reports on, besides the overall "" service.
pub const SERVICES: [&str; 3] = [
    <TaskServiceServer<TaskApi> as NamedService>::NAME,
    <RunspaceServiceServer<RunspaceApi> as NamedService>::NAME,
    <UpstreamServiceServer<UpstreamApi> as NamedService>::NAME,
];

/// Binds `cfg.server.listen` (port 0 picks a free one) and serves until `signal` completes.
pub async fn serve(
    cfg: Config,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = bind(cfg.server.listen).await?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(cfg.server.listen), "gRPC server listening");
    let admin = bind_admin(&cfg).await?;
    if let Some(a) = &admin {
        tracing::info!(addr = %a.local_addr().map_err(|source| ServeError::Bind { addr: cfg.server.listen, source })?, "admin listener: /metrics /healthz /readyz");
    }
    serve_on(cfg, listener, admin, signal).await
}

/// The admin listener, when `[admin] listen` is set.
async fn bind_admin(cfg: &Config) -> Result<Option<TcpListener>, ServeError> {
    match cfg.admin.listen {
        Some(addr) => bind(addr).await.map(Some),
        None => Ok(None),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves on an already bound listener until `signal` completes, then shuts down gracefully.
pub async fn serve_on(
    cfg: Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let registry = Arc::new(Registry::new(&cfg)?);
    let tls = match &cfg.server.tls {
        Some(t) => Some(Arc::new(ServerTls::load(t)?)),
        None => None,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    for s in SERVICES {
        health.set_service_status(s, ServingStatus::Serving).await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(proto::RPC_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let max = cfg.server.max_message_bytes;
    // Created before the services so open watches can end when shutdown starts.
    let (stopping_tx, mut stopping) = watch::channel(false);
    let admin = admin.map(|l| crate::admin::spawn(l, stopping.clone()));
    let shared = crate::api::Shared {
        registry: registry.clone(),
        watch: Arc::new(WatchEngine::new(&cfg.watch, &cfg.limits)),
        stopping: stopping.clone(),
        limits: cfg.limits.clone(),
        streams: Default::default(),
    };
    let tasks = TaskServiceServer::new(TaskApi::new(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let runspaces = RunspaceServiceServer::new(RunspaceApi::new(shared))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let upstreams = UpstreamServiceServer::new(UpstreamApi::new(registry.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let health_on_stop = health.clone();
    let drain_delay = cfg.server.drain_delay;
    let shutdown = async move {
        signal.await;
        tracing::info!("shutdown started: health NOT_SERVING, streams ending, draining calls");
        health_on_stop
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for s in SERVICES {
            health_on_stop
                .set_service_status(s, ServingStatus::NotServing)
                .await;
        }
        let _ = stopping_tx.send(true);
        // Keep accepting while the load balancers notice NOT_SERVING.
        tokio::time::sleep(drain_delay).await;
        tracing::info!("drain delay over: no new connections");
    };
    // Fires at the end of the grace: the calls still running answer SHUTTING_DOWN.
    let cut = CancellationToken::new();
    // The tokens file is looked at again for as long as the gateway serves.
    let (auth, _tokens_watch) = match &cfg.auth {
        Some(a) => {
            let store = CallerStore::load(&a.tokens_file)
                .map_err(|e| ConfigError::new("auth.tokens_file", e))?;
            let watch = store.watch(a.reload_interval);
            (Some(Arc::new(Authenticator::new(store, a))), Some(watch))
        }
        None => (None, None),
    };
    let stack = tower::ServiceBuilder::new()
        .layer(RpcLogLayer)
        .layer(EdgeLayer::new(cut.clone(), max, auth));
    let server = tonic::transport::Server::builder()
        .layer(stack)
        .max_concurrent_streams(cfg.server.max_concurrent_streams)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tasks)
        .add_service(runspaces)
        .add_service(upstreams)
        .serve_with_incoming_shutdown(tls::incoming(listener, tls), shutdown);
    let grace = cfg.server.shutdown_grace;
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.map_err(ServeError::from),
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(drain_delay + grace).await;
        } => {
            tracing::warn!(?grace, "grace period over: the calls still running get SHUTTING_DOWN");
            cut.cancel();
            // Their answers are written at once; then whatever is left is closed.
            match tokio::time::timeout(CUT_FLUSH, &mut server).await {
                Ok(r) => r.map_err(ServeError::from),
                Err(_) => Ok(()),
            }
        }
    };
    registry.logout_all().await;
    if let Some(admin) = admin {
        admin.abort();
    }
    tracing::info!("shutdown complete");
    result
}

/// A gateway running in this process (tests, `demo`).
pub struct Running {
    pub addr: SocketAddr,
    /// The admin listener's address, when `[admin] listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// Whether it serves TLS (`[server.tls]`).
    pub tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Binds and starts serving in a background task.
    pub async fn start(cfg: Config) -> Result<Running, ServeError> {
        let listener = bind(cfg.server.listen).await?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: cfg.server.listen,
            source,
        })?;
        let admin = bind_admin(&cfg).await?;
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let tls = cfg.server.tls.is_some();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve_on(cfg, listener, admin, async {
            let _ = rx.await;
        }));
        Ok(Running {
            addr,
            admin_addr,
            tls,
            stop: Some(tx),
            task,
        })
    }

    /// `http://ADDR`, or `https://ADDR` with TLS, for clients.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Starts the graceful shutdown and waits for it to finish.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "server task failed");
                Ok(())
            }
        }
    }
}
