//! The listener every simulated part serves on: `127.0.0.1:0`, plain HTTP or TLS with a
//! freshly generated self-signed certificate, stopped on `shutdown()` or when the last clone
//! is dropped. Every connection passes the part's [`Gate`]: the standing faults
//! `refuse_connections` (closed at once, open ones at their next request) and `blackhole`
//! (held before anything is read, TLS handshake included) act here.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum_server::accept::Accept;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::faults::StandingFaults;

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
    /// self-signed certificate for `127.0.0.1` and `localhost` when `tls`), every connection
    /// through `gate`.
    pub async fn start(router: Router, tls: bool, gate: Gate) -> std::io::Result<Listener> {
        Self::start_on(0, router, tls, gate).await
    }

    /// As [`Listener::start`], on `127.0.0.1:port` (0: any free port).
    pub async fn start_on(
        port: u16,
        router: Router,
        tls: bool,
        gate: Gate,
    ) -> std::io::Result<Listener> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        let addr = std_listener.local_addr()?;
        let handle = axum_server::Handle::<SocketAddr>::new();
        let service = router.into_make_service();
        let server = axum_server::from_tcp(std_listener)?.handle(handle.clone());
        // One spawned future for both kinds of server, boxed because their types differ.
        let (serve, ca_pem): (BoxFuture<'static, std::io::Result<()>>, _) = if tls {
            let (config, pem) = self_signed_config()?;
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(gate);
            (
                Box::pin(server.acceptor(acceptor).serve(service)),
                Some(pem),
            )
        } else {
            (Box::pin(server.acceptor(gate).serve(service)), None)
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

/// What every connection of a listener passes: a part's standing faults, or nothing (the
/// control endpoint).
#[derive(Clone, Default)]
pub struct Gate(Option<StandingFaults>);

impl Gate {
    /// Connections pass, refused or held as `faults` say.
    pub fn faults(faults: StandingFaults) -> Gate {
        Gate(Some(faults))
    }

    /// Every connection passes.
    pub fn open() -> Gate {
        Gate(None)
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for Gate {
    type Stream = Gated;
    type Service = S;
    type Future = BoxFuture<'static, io::Result<(Gated, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let faults = self.0.clone();
        Box::pin(async move {
            if let Some(f) = &faults {
                // Refused: the stream is dropped, which closes it.
                f.admit_connection().await?;
            }
            Ok((
                Gated {
                    stream,
                    faults,
                    closed: false,
                },
                service,
            ))
        })
    }
}

/// A connection that fails its next read or write once its part refuses connections, so
/// connections opened before the switch end too (the server then closes them).
pub struct Gated {
    stream: TcpStream,
    faults: Option<StandingFaults>,
    closed: bool,
}

impl Gated {
    /// `Err` once the part refuses connections (counted once per connection).
    fn check(&mut self) -> io::Result<()> {
        let Some(f) = &self.faults else {
            return Ok(());
        };
        if self.closed || f.refusing() {
            if !self.closed {
                self.closed = true;
                f.count_refused();
            }
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        Ok(())
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
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
