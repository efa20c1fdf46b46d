//! `demo`: the gateway wired to the embedded simulator, and the banner that tells a newcomer
//! what to type next.

use std::{
    fmt::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::{
    config::{Config, ServerConfig, TlsConfig, UpstreamConfig, UpstreamKind},
    simulator::{self, FaultSettings, SimHandle, Simulator},
};

/// The gateway configuration that serves every simulated upstream, on `listen`.
/// `ca_file` is where the simulator's certificates were written when it serves TLS.
pub fn config(sim: &Simulator, listen: SocketAddr, ca_file: Option<&Path>) -> Config {
    Config {
        server: ServerConfig {
            listen,
            // Nothing balances load in front of a demo: stop at once on Ctrl-C.
            drain_delay: std::time::Duration::ZERO,
            ..ServerConfig::default()
        },
        upstreams: upstreams(sim, ca_file),
        ..Config::default()
    }
}

/// One upstream per simulated part: `vc1` (vCenter), `snap1` (snapshot service), `vcd1`
/// (Cloud Director, org of the simulator) and `srs1` (Script Runtime Service), with the
/// simulator's demo credentials.
pub fn upstreams(sim: &Simulator, ca_file: Option<&Path>) -> Vec<UpstreamConfig> {
    parts(sim)
        .into_iter()
        .map(|(name, kind, part)| {
            let mut u =
                UpstreamConfig::new(name, kind, &part.url(), part.username(), part.password());
            u.ca_file = ca_file.map(Path::to_path_buf);
            if let Some(vcd) = u.cloud_director_mut() {
                vcd.org = Some(sim.cloud_director.org().to_string());
            }
            u
        })
        .collect()
}

/// Each part under the simulator's name for it (which the control endpoint takes too).
fn parts(sim: &Simulator) -> [(&'static str, UpstreamKind, &SimHandle); 4] {
    let [vc, snap, vcd, srs] = sim.parts();
    [
        (vc.0, UpstreamKind::Vsphere, vc.1),
        (snap.0, UpstreamKind::Snapservice, snap.1),
        (vcd.0, UpstreamKind::CloudDirector, vcd.1),
        (srs.0, UpstreamKind::ScriptRuntime, srs.1),
    ]
}

/// Every simulated upstream's certificate in one PEM bundle, when they serve TLS.
pub fn ca_bundle(sim: &Simulator) -> Option<String> {
    let pems: Vec<String> = parts(sim)
        .iter()
        .filter_map(|(_, _, p)| p.ca_pem())
        .collect();
    (!pems.is_empty()).then(|| pems.concat())
}

/// How a tool logs in to one simulated upstream as the demo's service account.
#[derive(Debug, Clone)]
pub struct Login {
    /// The upstream's name in the demo configuration.
    pub name: &'static str,
    pub kind: UpstreamKind,
    pub url: String,
    /// The Basic user the API expects (Cloud Director: `user@org`).
    pub user: String,
    pub password: String,
    /// `POST` here with Basic credentials.
    pub path: &'static str,
    /// The `Accept` header the API needs, if any (Cloud Director's versioned JSON).
    pub accept: Option<&'static str>,
}

/// The login of every simulated upstream.
pub fn logins(sim: &Simulator) -> Vec<Login> {
    parts(sim)
        .into_iter()
        .map(|(name, kind, part)| {
            let mut user = part.username().to_string();
            let (path, accept) = match kind {
                UpstreamKind::Vsphere => ("/api/session", None),
                UpstreamKind::Snapservice => ("/api/snapservice/sessions", None),
                UpstreamKind::CloudDirector => {
                    user = format!("{user}@{}", sim.cloud_director.org());
                    (
                        "/cloudapi/1.0.0/sessions",
                        Some("application/json;version=38.0"),
                    )
                }
                UpstreamKind::ScriptRuntime => ("/api/auth/login", None),
            };
            Login {
                name,
                kind,
                url: part.url(),
                user,
                password: part.password().to_string(),
                path,
                accept,
            }
        })
        .collect()
}

/// What `simulate` prints: each upstream's URL, its login, and a curl command that uses it.
pub fn simulator_listing(sim: &Simulator) -> String {
    let mut b = String::new();
    for l in logins(sim) {
        let accept = l
            .accept
            .map(|a| format!(" -H 'Accept: {a}'"))
            .unwrap_or_default();
        let insecure = if l.url.starts_with("https") {
            " -k"
        } else {
            ""
        };
        let _ = writeln!(
            b,
            "{:<6} {:<15} {}  user {}  password {}\n       log in: curl{insecure} -i -X POST -u '{}:{}'{accept} {}{}",
            l.name, l.kind, l.url, l.user, l.password, l.user, l.password, l.url, l.path
        );
    }
    b
}

/// What `simulate` prints about its control endpoint at `url`: the routes, a curl command
/// that switches faults on, and the faults on now.
pub fn control_listing(sim: &Simulator, url: &str, faults: &FaultSettings) -> String {
    let names: Vec<&str> = sim.parts().iter().map(|(name, _)| *name).collect();
    let on = if faults.any() {
        serde_json::to_string(faults).unwrap_or_default()
    } else {
        "none".to_string()
    };
    format!(
        "control: {url}  GET/PUT /faults (every part), /faults/{{{}}} (one)\n       \
         e.g. curl -X PUT -d '{{\"error_rate\":0.2,\"session_expiry\":\"10s\"}}' {url}/faults\n\
         faults: {on}",
        names.join("|")
    )
}

/// The files of `demo --grpc-tls`: a CA made for this run, and a certificate for `localhost`
/// and `127.0.0.1` it signed, with its key. They live in a directory of their own, removed
/// when this is dropped.
#[derive(Debug)]
pub struct DemoTls {
    dir: PathBuf,
}

impl DemoTls {
    /// Generates the CA and the server certificate into a new directory under `parent`.
    pub fn generate(parent: &Path) -> std::io::Result<DemoTls> {
        let dir = parent.join(format!(
            "vmwgw-demo-grpc-tls-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        private_dir(&dir)?;
        let tls = DemoTls { dir };
        let (ca, cert, key) = demo_certificates().map_err(std::io::Error::other)?;
        std::fs::write(tls.ca_file(), ca)?;
        std::fs::write(tls.cert_file(), cert)?;
        std::fs::write(tls.key_file(), key)?;
        Ok(tls)
    }

    /// The CA certificate clients trust (`grpcurl -cacert`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// `[server.tls]` serving these files (no client certificates).
    pub fn config(&self) -> TlsConfig {
        TlsConfig::new(self.cert_file(), self.key_file())
    }
}

impl Drop for DemoTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A directory only its owner can read (the key goes in it).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// PEM of a new CA, and of a server certificate it signed for `localhost` and `127.0.0.1`
/// with the certificate's key.
fn demo_certificates() -> Result<(String, String, String), rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "vmware-grpc-gateway demo CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut server =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = server.signed_by(&key, &issuer)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// Copy-paste grpcurl commands that work against a running demo at `addr`; with `grpc_ca`
/// (the demo serves gRPC over TLS) they trust that CA file instead of `-plaintext`.
pub fn banner(addr: SocketAddr, cfg: &Config, grpc_ca: Option<&Path>) -> String {
    let services = simulator::DEMO_SERVICES
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",");
    let snap_services = simulator::SNAP_DEMO_SERVICES
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",");
    let (transport, how) = match grpc_ca {
        Some(ca) => (
            format!("TLS, certificate signed by {}", ca.display()),
            format!("-cacert {}", ca.display()),
        ),
        None => ("plaintext".to_string(), "-plaintext".to_string()),
    };
    let mut b = String::new();
    let _ = writeln!(
        b,
        "vmware-grpc-gateway demo: gRPC on {addr} ({transport}), upstreams simulated in-process"
    );
    for u in &cfg.upstreams {
        let _ = writeln!(b, "  upstreams/{:<6} {:<15} at {}", u.name, u.kind(), u.url);
    }
    let _ = writeln!(b, "\nTry (grpcurl 1.8+):");
    let cmds = [
        format!("grpcurl {how} {addr} list"),
        format!("grpcurl {how} {addr} describe vmware.gateway.v1.Task"),
        format!("grpcurl {how} {addr} vmware.gateway.v1.UpstreamService/ListUpstreams"),
        format!(
            "grpcurl {how} -d '{{\"parent\":\"upstreams/vc1\",\"filter\":{{\"services\":[{services}]}},\"page_size\":10}}' {addr} vmware.gateway.v1.TaskService/ListTasks"
        ),
        format!(
            "grpcurl {how} -d '{{\"name\":\"upstreams/vc1/tasks/{}\"}}' {addr} vmware.gateway.v1.TaskService/GetTask",
            simulator::DEMO_RUNNING_TASK
        ),
        format!(
            "grpcurl {how} -d '{{\"name\":\"upstreams/vc1/tasks/{}\"}}' {addr} vmware.gateway.v1.TaskService/CancelTask",
            simulator::DEMO_CANCELABLE_TASK
        ),
        format!(
            "grpcurl {how} -d '{{\"parent\":\"upstreams/snap1\",\"filter\":{{\"services\":[{snap_services}]}}}}' {addr} vmware.gateway.v1.TaskService/ListTasks"
        ),
        format!(
            "grpcurl {how} -d '{{\"name\":\"upstreams/snap1/tasks/{}\"}}' {addr} vmware.gateway.v1.TaskService/GetTask",
            simulator::SNAP_DEMO_RUNNING_TASK
        ),
        format!(
            "grpcurl {how} -d '{{\"parent\":\"upstreams/vcd1\",\"page_size\":5}}' {addr} vmware.gateway.v1.TaskService/ListTasks"
        ),
        format!(
            "grpcurl {how} -d '{{\"name\":\"upstreams/vcd1/tasks/{}\"}}' {addr} vmware.gateway.v1.TaskService/CancelTask",
            simulator::VCD_DEMO_CANCELABLE_TASK
        ),
        format!(
            "grpcurl {how} -d '{{\"parent\":\"upstreams/srs1\",\"runspace\":{{\"display_name\":\"demo\"}},\"request_id\":\"demo-1\"}}' {addr} vmware.gateway.v1.RunspaceService/CreateRunspace"
        ),
        format!(
            "grpcurl {how} -d '{{\"parent\":\"upstreams/srs1\"}}' {addr} vmware.gateway.v1.RunspaceService/ListRunspaces"
        ),
    ];
    for c in cmds {
        let _ = writeln!(b, "  {c}");
    }
    let _ = writeln!(
        b,
        "\nThis one fails on purpose, to show an error (NOT_FOUND with ErrorInfo, LocalizedMessage, ResourceInfo):"
    );
    let _ = writeln!(
        b,
        "  grpcurl {how} -d '{{\"name\":\"upstreams/vc1/tasks/no-such-task\"}}' {addr} vmware.gateway.v1.TaskService/GetTask"
    );
    let _ = writeln!(b, "\nCtrl-C stops the gateway and the simulator.");
    b
}
