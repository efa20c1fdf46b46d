//! Server TLS and mutual TLS (`[server.tls]`): who gets in, a rotated certificate or client CA
//! served without a restart (files rewritten in place, or a Kubernetes Secret swapped by
//! symlink), a silent client that holds up no one, and what a request learns of its
//! connection. Certificates are made here with rcgen.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use vmware_grpc_gateway::{
    config::{ClientAuth, TlsConfig},
    proto::{WatchTaskRequest, task_service_client::TaskServiceClient},
    tls::{self, RELOAD_INTERVAL, ServerTls},
};

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate with its key, as PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Issued {
    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert.as_bytes()).unwrap()
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    fn server(&self) -> Issued {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        self.issue(CertificateParams::new(names).unwrap())
    }

    /// A client certificate naming a SPIFFE ID and a common name.
    fn client(&self, spiffe: &str, cn: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(spiffe.try_into().unwrap())];
        params.distinguished_name.push(DnType::CommonName, cn);
        self.issue(params)
    }
}

/// A directory for the TLS files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "vmwgw-tls-test-{name}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Writes the server's certificate and key (and the client CA) where `tls()` points.
    fn write(&self, server: &Issued, client_ca: Option<&Ca>) {
        write_files(&self.0, server, client_ca);
    }

    /// `[server.tls]` of `tls.crt`, `tls.key` and, with `client_auth`, `ca.crt`.
    fn tls(&self, client_auth: Option<ClientAuth>) -> TlsConfig {
        let mut tls = TlsConfig::new(self.path("tls.crt"), self.path("tls.key"));
        if client_auth.is_some() {
            tls.client_ca_file = Some(self.path("ca.crt"));
            tls.client_auth = client_auth;
        }
        tls
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_files(dir: &Path, server: &Issued, client_ca: Option<&Ca>) {
    std::fs::write(dir.join("tls.crt"), &server.cert).unwrap();
    std::fs::write(dir.join("tls.key"), &server.key).unwrap();
    if let Some(ca) = client_ca {
        std::fs::write(dir.join("ca.crt"), &ca.pem).unwrap();
    }
}

/// The gateway serving `tls`, and the name of a vCenter task to read.
async fn start(tls: TlsConfig) -> (Env, String) {
    let env = Env::start_with(sim_options(), |cfg| cfg.server.tls = Some(tls)).await;
    let name = env.add(finished(60));
    (env, name)
}

fn addr(env: &Env) -> SocketAddr {
    env.gateway.as_ref().unwrap().addr
}

/// A new connection to the gateway that trusts `trust` and presents `me`.
async fn connect(env: &Env, trust: &Ca, me: Option<&Issued>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&trust.pem))
        .domain_name("localhost");
    if let Some(me) = me {
        tls = tls.identity(me.identity());
    }
    Channel::from_shared(format!("https://{}", addr(env)))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .tls_config(tls)
        .map_err(|e| format!("{e:?}"))?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// GetTask of `name` on `channel`.
async fn get_on(channel: Channel, name: &str) -> Result<(), String> {
    TaskServiceClient::new(channel)
        .get_task(get_req(name))
        .await
        .map(drop)
        .map_err(|s| format!("{s:?}"))
}

/// GetTask of `name` over a new connection that trusts `trust` and presents `me`.
async fn get(env: &Env, name: &str, trust: &Ca, me: Option<&Issued>) -> Result<(), String> {
    get_on(connect(env, trust, me).await?, name).await
}

/// A rustls client that trusts `trust` and presents `me`.
fn client_config(trust: &[&Ca], me: Option<&Issued>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in trust {
        roots.add(ca.der()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match me {
        Some(me) => {
            let key = PrivateKeyDer::from_pem_slice(me.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![me.der()], key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

/// The certificate the gateway presents to a new connection that trusts any of `trust`.
async fn served(addr: SocketAddr, trust: &[&Ca]) -> Result<CertificateDer<'static>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(client_config(trust, None)))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    certs.first().cloned().ok_or("no certificate".into())
}

/// Asks until `done` holds, for at most a few reload intervals.
async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let until = tokio::time::Instant::now() + RELOAD_INTERVAL * 6;
    while !done().await {
        assert!(tokio::time::Instant::now() < until, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_tls_call_works_with_the_servers_ca_and_fails_without_it() {
    let (ca, other) = (Ca::new("server CA"), Ca::new("another CA"));
    let dir = Dir::new("server-ca");
    dir.write(&ca.server(), None);
    let (env, name) = start(dir.tls(None)).await;
    get(&env, &name, &ca, None).await.unwrap();
    let err = get(&env, &name, &other, None).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    let plaintext = Channel::from_shared(format!("http://{}", addr(&env)))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        assert!(
            get_on(channel, &name).await.is_err(),
            "plaintext is refused"
        );
    }
}

#[tokio::test]
async fn mutual_tls_required_lets_in_only_clients_with_a_certificate_of_the_client_ca() {
    let (ca, clients, strangers) = (Ca::new("server CA"), Ca::new("clients"), Ca::new("other"));
    let dir = Dir::new("mtls-required");
    dir.write(&ca.server(), Some(&clients));
    let (env, name) = start(dir.tls(Some(ClientAuth::Required))).await;
    let good = clients.client("spiffe://cluster.local/ns/ops/sa/runner", "runner");
    let stranger = strangers.client("spiffe://cluster.local/ns/ops/sa/runner", "runner");
    get(&env, &name, &ca, Some(&good)).await.unwrap();
    assert!(get(&env, &name, &ca, None).await.is_err(), "no certificate");
    assert!(
        get(&env, &name, &ca, Some(&stranger)).await.is_err(),
        "a certificate of another CA, naming the same identity"
    );
}

#[tokio::test]
async fn mutual_tls_optional_lets_in_clients_without_a_certificate_but_verifies_one_presented() {
    let (ca, clients, strangers) = (Ca::new("server CA"), Ca::new("clients"), Ca::new("other"));
    let dir = Dir::new("mtls-optional");
    dir.write(&ca.server(), Some(&clients));
    let (env, name) = start(dir.tls(Some(ClientAuth::Optional))).await;
    let good = clients.client("spiffe://cluster.local/ns/ops/sa/runner", "runner");
    let stranger = strangers.client("spiffe://cluster.local/ns/ops/sa/runner", "runner");
    get(&env, &name, &ca, Some(&good)).await.unwrap();
    get(&env, &name, &ca, None).await.unwrap();
    assert!(
        get(&env, &name, &ca, Some(&stranger)).await.is_err(),
        "optional is no licence for an unverified certificate"
    );
}

#[tokio::test]
async fn a_certificate_rewritten_in_place_is_served_to_new_connections_without_a_restart() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let dir = Dir::new("rotate");
    let (old, new) = (old_ca.server(), new_ca.server());
    dir.write(&old, None);
    let (env, name) = start(dir.tls(None)).await;
    let open = connect(&env, &old_ca, None).await.unwrap();
    get_on(open.clone(), &name).await.unwrap();
    assert_eq!(served(addr(&env), &[&old_ca]).await.unwrap(), old.der());

    dir.write(&new, None);
    eventually("the new certificate is served", || async {
        served(addr(&env), &[&old_ca, &new_ca]).await.ok() == Some(new.der())
    })
    .await;
    get(&env, &name, &new_ca, None).await.unwrap();
    assert!(
        get(&env, &name, &old_ca, None).await.is_err(),
        "a new connection no longer gets the old certificate"
    );
    get_on(open, &name)
        .await
        .expect("a connection made before keeps its certificate");
}

#[tokio::test]
async fn a_secret_swapped_by_symlink_brings_its_certificate_and_client_ca_without_a_restart() {
    // The layout kubelet gives a mounted Secret: each file a symlink through `..data`, itself
    // a symlink to a timestamped directory. An update writes a new directory, renames a new
    // `..data` link over the old one, then removes the old directory.
    let (server_ca, clients_a, clients_b) = (Ca::new("server"), Ca::new("a"), Ca::new("b"));
    let dir = Dir::new("secret");
    let version = |n: &str, server: &Issued, clients: &Ca| {
        let v = dir.path(&format!("..2026_01_01_00_00_0{n}"));
        std::fs::create_dir(&v).unwrap();
        write_files(&v, server, Some(clients));
        v
    };
    let first = version("1", &server_ca.server(), &clients_a);
    std::os::unix::fs::symlink(first.file_name().unwrap(), dir.path("..data")).unwrap();
    for f in ["tls.crt", "tls.key", "ca.crt"] {
        std::os::unix::fs::symlink(Path::new("..data").join(f), dir.path(f)).unwrap();
    }
    let (env, name) = start(dir.tls(Some(ClientAuth::Required))).await;
    let a = clients_a.client("spiffe://cluster.local/ns/ops/sa/a", "a");
    let b = clients_b.client("spiffe://cluster.local/ns/ops/sa/b", "b");
    get(&env, &name, &server_ca, Some(&a)).await.unwrap();
    assert!(get(&env, &name, &server_ca, Some(&b)).await.is_err());

    let second = version("2", &server_ca.server(), &clients_b);
    std::os::unix::fs::symlink(second.file_name().unwrap(), dir.path("..data_tmp")).unwrap();
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();

    eventually("clients of the new client CA get in", || async {
        get(&env, &name, &server_ca, Some(&b)).await.is_ok()
    })
    .await;
    assert!(
        get(&env, &name, &server_ca, Some(&a)).await.is_err(),
        "the old client CA no longer lets its clients in"
    );
}

#[tokio::test]
async fn a_silent_client_holds_up_no_other_connection() {
    let ca = Ca::new("server CA");
    let dir = Dir::new("silent");
    dir.write(&ca.server(), None);
    let (env, name) = start(dir.tls(None)).await;
    // Connected, and never a byte of handshake.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(addr(&env)).await.unwrap());
    }
    let call = get(&env, &name, &ca, None);
    tokio::time::timeout(tls::HANDSHAKE_TIMEOUT * 4, call)
        .await
        .expect("the call ends")
        .expect("served beside the silent clients");
    for s in &silent {
        let pending = matches!(
            s.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        assert!(
            pending,
            "served while the silent clients' handshakes were still waiting"
        );
    }
}

#[tokio::test]
async fn a_connection_brings_its_peer_and_its_client_certificates_identities() {
    let (ca, clients) = (Ca::new("server CA"), Ca::new("clients"));
    let dir = Dir::new("identities");
    dir.write(&ca.server(), Some(&clients));
    let server = Arc::new(ServerTls::load(&dir.tls(Some(ClientAuth::Optional))).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mut incoming = tls::incoming(listener, Some(server));

    let me = clients.client("spiffe://cluster.local/ns/ops/sa/runner", "runner");
    let tcp = TcpStream::connect(at).await.unwrap();
    let mine = tcp.local_addr().unwrap();
    let client = tokio::spawn(
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&[&ca], Some(&me))))
            .connect("localhost".try_into().unwrap(), tcp),
    );
    let conn = incoming.next().await.unwrap().unwrap();
    let _client = client.await.unwrap().unwrap();
    let info = conn.info();
    assert_eq!(info.remote, Some(mine));
    let cert = info.client.as_ref().expect("a verified client certificate");
    assert_eq!(
        cert.identities,
        ["spiffe://cluster.local/ns/ops/sa/runner", "runner"]
    );

    // Without a certificate (optional): the peer alone.
    let tcp = TcpStream::connect(at).await.unwrap();
    let mine = tcp.local_addr().unwrap();
    let client = tokio::spawn(
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&[&ca], None)))
            .connect("localhost".try_into().unwrap(), tcp),
    );
    let conn = incoming.next().await.unwrap().unwrap();
    let _client = client.await.unwrap().unwrap();
    assert_eq!(conn.info().remote, Some(mine));
    assert!(conn.info().client.is_none());

    // Plaintext: the peer alone.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mut plain = tls::incoming(listener, None);
    let tcp = TcpStream::connect(at).await.unwrap();
    let conn = plain.next().await.unwrap().unwrap();
    assert_eq!(conn.info().remote, Some(tcp.local_addr().unwrap()));
    assert!(conn.info().client.is_none());
}

#[tokio::test]
async fn the_per_connection_watch_limit_tells_tls_connections_apart() {
    let ca = Ca::new("server CA");
    let dir = Dir::new("watch-limit");
    dir.write(&ca.server(), None);
    let tls = dir.tls(None);
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.server.tls = Some(tls);
        cfg.limits.max_watch_streams_per_connection = 1;
    })
    .await;
    let name = env.add(running_for(3600));
    let watch = || WatchTaskRequest {
        name: name.clone(),
        ..Default::default()
    };
    let mut mine = TaskServiceClient::new(connect(&env, &ca, None).await.unwrap());
    let _first = mine.watch_task(watch()).await.unwrap();
    let err = mine.watch_task(watch()).await.unwrap_err();
    assert_error(&err, Code::ResourceExhausted, "LIMIT_REACHED");
    assert!(
        err.message().contains("max_watch_streams_per_connection"),
        "{err:?}"
    );
    let mut theirs = TaskServiceClient::new(connect(&env, &ca, None).await.unwrap());
    assert!(
        theirs.watch_task(watch()).await.is_ok(),
        "another connection"
    );
}

#[tokio::test]
async fn shutdown_closes_the_tls_listener() {
    let ca = Ca::new("server CA");
    let dir = Dir::new("shutdown");
    dir.write(&ca.server(), None);
    let (mut env, name) = start(dir.tls(None)).await;
    get(&env, &name, &ca, None).await.unwrap();
    let at = addr(&env);
    env.shutdown().await;
    assert!(
        TcpStream::connect(at).await.is_err(),
        "no connection after the shutdown"
    );
}

#[tokio::test]
async fn a_client_certificate_identity_is_a_caller_with_the_scopes_of_its_clients_entry() {
    let (ca, clients) = (Ca::new("server CA"), Ca::new("clients"));
    let dir = Dir::new("mtls-auth");
    dir.write(&ca.server(), Some(&clients));
    let tokens = dir.path("tokens.toml");
    std::fs::write(
        &tokens,
        "[[clients]]\nmatch = \"spiffe://cluster.local/ns/ops/sa/runner\"\nscopes = [\"read\"]\nupstreams = [\"vc1\"]\n",
    )
    .unwrap();
    let tls = dir.tls(Some(ClientAuth::Optional));
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.server.tls = Some(tls);
        cfg.auth = Some(vmware_grpc_gateway::config::AuthConfig::new(tokens));
    })
    .await;
    let name = env.add(finished(60));
    let runner = clients.client("spiffe://cluster.local/ns/ops/sa/runner", "runner");
    let other = clients.client("spiffe://cluster.local/ns/ops/sa/other", "other");
    get(&env, &name, &ca, Some(&runner)).await.unwrap();
    for (who, me) in [
        ("an identity the file does not list", Some(&other)),
        ("no certificate", None),
    ] {
        let err = get(&env, &name, &ca, me).await.unwrap_err();
        assert!(err.contains("Unauthenticated"), "{who}: {err}");
    }
    // Its entry grants read only.
    let channel = connect(&env, &ca, Some(&runner)).await.unwrap();
    let cancel = TaskServiceClient::new(channel)
        .cancel_task(vmware_grpc_gateway::proto::CancelTaskRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::PermissionDenied, "{cancel:?}");
}
