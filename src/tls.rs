//! The server's side of the connection: plaintext or TLS (mutual TLS with a client CA), the
//! certificate reloaded when its files change, and what a request knows of its connection.
//!
//! tonic's own `ServerTlsConfig` is fixed at start; here a rustls acceptor sits in front of
//! tonic instead: [`incoming`] accepts TCP connections (TCP_NODELAY set), runs each TLS
//! handshake on its own task within [`HANDSHAKE_TIMEOUT`] (a slow or silent client never
//! holds up the others), and hands the finished connections to tonic. Each handshake takes
//! the rustls configuration current at that moment ([`ServerTls`]); a watch (`reload.rs`)
//! compares the files' contents every [`RELOAD_INTERVAL`] and swaps in a new configuration when they
//! change, so connections made after a rotation see the new certificate, and open ones keep
//! theirs.
//!
//! Every request carries a [`ConnInfo`] in its extensions, plaintext or TLS alike: read it
//! with [`conn_info`] or [`peer`], never through tonic's `remote_addr()` (which knows only
//! tonic's own connection types).

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, TryStreamExt};
use rustls::{server::WebPkiClientVerifier, sign::SingleCertAndKey};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpIncoming};

use crate::config::{ClientAuth, ConfigError, TlsConfig, TlsFiles, TlsMaterial};

/// How often the reloader reads the `[server.tls]` files to see whether they changed. It
/// compares their contents, read through their paths, so it sees a file rewritten in place
/// as well as a Kubernetes Secret swapped under a mounted directory by a symlink (which
/// inotify on the file would miss). A rotation is served within this long.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Longest a client may take to complete its TLS handshake; then the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections past their handshake that wait for tonic to take them.
const READY_BACKLOG: usize = 64;

/// Pause after an accept error that is not one connection's (such as too many open files),
/// so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the gateway knows of the connection a request came on. tonic puts one in every
/// request's extensions (plaintext and TLS alike); read it with [`conn_info`].
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The client's address, when the socket knows it.
    pub remote: Option<SocketAddr>,
    /// The client certificate, verified against `server.tls.client_ca_file` during the
    /// handshake. `None` on plaintext, without a client CA, and when a client under
    /// `client_auth = "optional"` presented none.
    pub client: Option<Arc<ClientCert>>,
}

/// A verified client certificate, as callers are matched on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The names the certificate vouches for: its subject alternative names of the DNS and
    /// URI kinds (a SPIFFE ID is a URI) in the certificate's order, then its subject's common
    /// name; each once. Empty when the leaf certificate cannot be parsed (it was verified
    /// all the same, so this is not expected).
    pub identities: Vec<String>,
}

impl ClientCert {
    /// The identities of a DER leaf certificate.
    pub fn from_der(der: &[u8]) -> ClientCert {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            tracing::warn!("a verified client certificate cannot be parsed: no identities");
            return ClientCert { identities: vec![] };
        };
        let mut identities: Vec<String> = Vec::new();
        let mut add = |s: &str| {
            if !s.is_empty() && !identities.iter().any(|i| i == s) {
                identities.push(s.to_string());
            }
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(s) | GeneralName::URI(s) => add(s),
                    _ => {}
                }
            }
        }
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                add(s);
            }
        }
        ClientCert { identities }
    }

    /// Whether the certificate vouches for `identity` (exactly, as written).
    pub fn has_identity(&self, identity: &str) -> bool {
        self.identities.iter().any(|i| i == identity)
    }
}

/// The connection facts of a request (from its extensions: `http::Request::extensions()`
/// or `tonic::Request::extensions()`).
pub fn conn_info(extensions: &http::Extensions) -> Option<&ConnInfo> {
    extensions.get::<ConnInfo>()
}

/// The client's address of a request, plaintext or TLS.
pub fn peer(extensions: &http::Extensions) -> Option<SocketAddr> {
    conn_info(extensions).and_then(|c| c.remote)
}

/// One accepted connection, plaintext or TLS: what tonic serves.
pub struct Conn {
    io: Io,
    info: ConnInfo,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// A plaintext connection.
    pub fn plain(stream: TcpStream) -> Conn {
        let remote = stream.peer_addr().ok();
        Conn {
            io: Io::Plain(stream),
            info: ConnInfo {
                remote,
                client: None,
            },
        }
    }

    /// A connection past its TLS handshake, with the client certificate it verified.
    pub fn tls(stream: TlsStream<TcpStream>, remote: Option<SocketAddr>) -> Conn {
        let client = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::new(ClientCert::from_der(leaf)));
        Conn {
            io: Io::Tls(Box::new(stream)),
            info: ConnInfo { remote, client },
        }
    }

    /// What requests on this connection will find in their extensions.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The server's TLS: the rustls configuration handshakes use now, and what it was built from.
pub struct ServerTls {
    cfg: TlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// What the last look at the files saw (their contents, or the error reading them), so a
    /// change is acted on, and warned about, once.
    seen: Mutex<u64>,
}

/// What one look at the files did.
#[derive(Debug)]
pub enum Reload {
    /// Nothing changed since the last look.
    Unchanged,
    /// The files changed and new connections now get the new configuration.
    Reloaded,
    /// The files changed but cannot be used: the previous configuration stays.
    Kept(ConfigError),
}

impl ServerTls {
    /// Reads the files and builds the first configuration; errors name the key.
    pub fn load(cfg: &TlsConfig) -> Result<ServerTls, ConfigError> {
        let files = cfg.read()?;
        let material = files.parse(cfg)?;
        let config = build(&material, cfg.client_auth())?;
        let client_certificates = match cfg.client_auth() {
            None => "not asked for",
            Some(ClientAuth::Required) => "required",
            Some(ClientAuth::Optional) => "optional",
        };
        tracing::info!(certificate = %describe(&material), client_certificates, "TLS on");
        Ok(ServerTls {
            cfg: cfg.clone(),
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(fingerprint(Ok(&files))),
        })
    }

    /// The configuration a handshake starting now uses.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again and, if they changed, builds and swaps in a new configuration;
    /// a change that cannot be used is logged as a warning naming the file (never its
    /// contents) and the previous configuration stays.
    pub fn reload(&self) -> Reload {
        let files = self.cfg.read();
        let print = fingerprint(files.as_ref());
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == print {
                return Reload::Unchanged;
            }
            *seen = print;
        }
        let built = files
            .and_then(|f| f.parse(&self.cfg))
            .and_then(|m| build(&m, self.cfg.client_auth()).map(|c| (c, m)));
        match built {
            Ok((config, material)) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                let leaf = describe(&material);
                tracing::info!(certificate = %leaf, "TLS files changed: new connections use them");
                Reload::Reloaded
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but cannot be used: keeping the previous certificate");
                Reload::Kept(e)
            }
        }
    }

    /// Looks at the files every [`RELOAD_INTERVAL`] until the returned watch is dropped.
    fn watch(self: &Arc<Self>) -> crate::reload::Watch {
        crate::reload::every(self, RELOAD_INTERVAL, |tls: &ServerTls| {
            tls.reload();
        })
    }
}

/// A digest of what reading the files gave, to tell a change (not a secret hash: whoever
/// can write the files decides the certificate anyway).
fn fingerprint(files: Result<&TlsFiles, &ConfigError>) -> u64 {
    let mut h = DefaultHasher::new();
    match files {
        Ok(f) => {
            0u8.hash(&mut h);
            f.cert.hash(&mut h);
            f.key.hash(&mut h);
            f.client_ca.hash(&mut h);
        }
        Err(e) => {
            1u8.hash(&mut h);
            e.to_string().hash(&mut h);
        }
    }
    h.finish()
}

/// The rustls configuration of `material`: HTTP/2 only (ALPN `h2`), TLS 1.2 and 1.3 with
/// the `ring` provider, and with client CAs a verifier that requires a client certificate
/// or, for `optional`, lets a client without one in (a certificate presented is verified
/// either way).
pub fn build(
    material: &TlsMaterial,
    client_auth: Option<ClientAuth>,
) -> Result<rustls::ServerConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("server.tls", e.to_string()))?;
    let builder = match (&material.client_roots, client_auth) {
        (Some(roots), Some(mode)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
            let verifier = match mode {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier
                .build()
                .map_err(|e| ConfigError::new("server.tls.client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(material.certified.clone())));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Subject, serial and expiry of the served certificate (public facts only).
fn describe(material: &TlsMaterial) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Some(leaf) = material.certified.cert.first() else {
        return "no certificate".into();
    };
    match X509Certificate::from_der(leaf) {
        Ok((_, cert)) => {
            let expired = if cert.validity().is_valid() {
                ""
            } else {
                " (NOT VALID NOW)"
            };
            format!(
                "subject \"{}\" serial {} valid until {}{expired}",
                cert.subject(),
                cert.raw_serial_as_string(),
                cert.validity().not_after,
            )
        }
        Err(_) => "a certificate x509-parser cannot read".into(),
    }
}

/// The connections tonic serves.
pub type Incoming = Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>>;

/// The accepted connections of `listener`, with TCP_NODELAY (without it a small response
/// waits for the client's delayed ACK, about 40 ms per call): plaintext as they come, or
/// past their TLS handshake. With TLS the files are watched for as long as the stream
/// accepts; dropping it closes the listener and stops the watch.
pub fn incoming(listener: TcpListener, tls: Option<Arc<ServerTls>>) -> Incoming {
    match tls {
        None => Box::pin(
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map_ok(Conn::plain),
        ),
        Some(tls) => {
            let (ready, rx) = mpsc::channel(READY_BACKLOG);
            tokio::spawn(accept_tls(listener, tls, ready));
            Box::pin(ReceiverStream::new(rx))
        }
    }
}

/// Accepts until the receiving side is gone, each handshake on its own task.
async fn accept_tls(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    ready: mpsc::Sender<io::Result<Conn>>,
) {
    let _watch = tls.watch();
    loop {
        let accepted = tokio::select! {
            _ = ready.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) if is_one_connections(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept connections");
                tokio::select! {
                    _ = ready.closed() => return,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let stream = tokio::select! {
                _ = ready.closed() => return,
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %remote, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                        return;
                    }
                },
            };
            let _ = ready.send(Ok(Conn::tls(stream, Some(remote)))).await;
        });
    }
}

/// An accept error that concerns only the connection being accepted.
fn is_one_connections(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests;
