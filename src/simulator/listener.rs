//! The listener every simulated part serves on: `127.0.0.1:0`, plain HTTP or TLS with a
//! freshly generated self-signed certificate, stopped on `shutdown()` or when the last clone
//! is dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use futures_util::future::BoxFuture;

/// A running listener. The server stops when the last clone is dropped or on `shutdown()`.
#[derive(Clone)]
pub struct Listener {
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    guard: Arc<StopOnDrop>,
}

struct StopOnDrop(axum_server::Handle<SocketAddr>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl Listener {
    /// Binds `127.0.0.1:0` and serves `router` in a spawned task (TLS with a fresh
    /// self-signed certificate for `127.0.0.1` and `localhost` when `tls`).
    pub async fn start(router: Router, tls: bool) -> std::io::Result<Listener> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = std_listener.local_addr()?;
        let handle = axum_server::Handle::<SocketAddr>::new();
        let service = router.into_make_service();
        // One spawned future for both kinds of server, boxed because their types differ.
        let (serve, ca_pem): (BoxFuture<'static, std::io::Result<()>>, _) = if tls {
            let (config, pem) = self_signed_config()?;
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            let server = axum_server::from_tcp_rustls(std_listener, config)?;
            (
                Box::pin(server.handle(handle.clone()).serve(service)),
                Some(pem),
            )
        } else {
            let server = axum_server::from_tcp(std_listener)?;
            (Box::pin(server.handle(handle.clone()).serve(service)), None)
        };
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "simulator listener ended");
            }
        });
        Ok(Listener {
            addr,
            tls,
            ca_pem,
            guard: Arc::new(StopOnDrop(handle)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port` or `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The self-signed certificate (PEM) when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Stops accepting and closes connections now.
    pub fn shutdown(&self) {
        self.guard.0.shutdown();
    }
}

fn self_signed_config() -> std::io::Result<(rustls::ServerConfig, String)> {
    let io_err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| io_err(&e))?;
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| io_err(&e))?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .map_err(|e| io_err(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, pem))
}
