//! One typed configuration: a TOML file plus environment overrides, validated once at start.
//!
//! Secrets come from the environment or from files, never from the command line or the
//! TOML text itself, and are redacted wherever the configuration is printed.

use std::{collections::BTreeSet, fmt, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};
use serde::{Deserialize, Serialize, Serializer};

use crate::names::is_valid_upstream_name;

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "VMWGW_";

/// A configuration problem, naming the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A secret value: never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub watch: WatchConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Caller authentication; absent, every caller may do everything.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

/// Caller authentication (API.md "Caller security").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The tokens file: token hashes and mTLS client identities with their scopes; read
    /// again when it changes.
    pub tokens_file: PathBuf,
    /// Services callers reach without credentials (exact names).
    #[serde(default = "AuthConfig::default_exempt")]
    pub exempt: Vec<String>,
    /// How often the tokens file is checked for changes.
    #[serde(default = "AuthConfig::default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl AuthConfig {
    /// `tokens_file` with the default exempt services and reload interval.
    pub fn new(tokens_file: impl Into<PathBuf>) -> Self {
        AuthConfig {
            tokens_file: tokens_file.into(),
            exempt: Self::default_exempt(),
            reload_interval: Self::default_reload(),
        }
    }

    fn default_reload() -> Duration {
        Duration::from_secs(5)
    }

    fn default_exempt() -> Vec<String> {
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// The admin HTTP listener: `/metrics` (Prometheus), `/healthz` (alive), `/readyz` (ready to
/// serve: 503 from shutdown on). Off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
}

/// How log lines are written (stderr; the level comes from `RUST_LOG`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// Human-readable lines, or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The gRPC server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long the server keeps accepting calls after SIGTERM, health NOT_SERVING, so load
    /// balancers and kubelets see it and stop sending before the listener closes.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// How long in-flight unary calls may take to finish once the listener closed.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// `[server.tls]`: serve TLS (and mutual TLS with a client CA); absent: plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 1024,
            drain_delay: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// `[server.tls]`: the server's certificate and key, and for mutual TLS the CA that signs
/// client certificates. The files are read at start and again whenever their contents change
/// (`tls.rs`), so a rotated certificate needs no restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM certificates of the CAs that sign client certificates: turns on mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Whether a client must present a certificate (only with `client_ca_file`; default
    /// `required` when it is set). A certificate that is presented is always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// Whether a client certificate is required, with `client_ca_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A client without a certificate signed by the client CA cannot connect.
    Required,
    /// A client may connect without a certificate; one it presents must verify.
    Optional,
}

impl TlsConfig {
    /// A server certificate and key, without client certificates.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            client_auth: None,
        }
    }

    /// Whether client certificates are asked for, and must be presented: `None` without a
    /// client CA, else `client_auth` (default `required`).
    pub fn client_auth(&self) -> Option<ClientAuth> {
        self.client_ca_file
            .as_ref()
            .map(|_| self.client_auth.unwrap_or(ClientAuth::Required))
    }

    /// Reads the files as they are now (through their paths, so a swapped symlink is
    /// followed); errors name the key and the file, never what it holds.
    pub fn read(&self) -> Result<TlsFiles, ConfigError> {
        let read = |key: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    format!("server.tls.{key}"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        };
        Ok(TlsFiles {
            cert: read("cert_file", &self.cert_file)?,
            key: read("key_file", &self.key_file)?,
            client_ca: match &self.client_ca_file {
                Some(path) => Some(read("client_ca_file", path)?),
                None => None,
            },
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.client_auth.is_some() && self.client_ca_file.is_none() {
            return Err(ConfigError::new(
                "server.tls.client_auth",
                "needs server.tls.client_ca_file (the CA that signs client certificates)",
            ));
        }
        self.read()?.parse(self).map(drop)
    }

    /// Fills in the default `client_auth`, so the effective configuration shows it.
    fn fill_defaults(&mut self) {
        if self.client_ca_file.is_some() {
            self.client_auth = self.client_auth();
        }
    }
}

/// The contents of the `[server.tls]` files, as read at one moment. Never printed: the key
/// is in here.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsFiles(<redacted>)")
    }
}

/// What the `[server.tls]` files hold, parsed and checked: the certificate chain with its
/// key (which matches the certificate), and the client CAs.
#[derive(Clone)]
pub struct TlsMaterial {
    pub certified: Arc<CertifiedKey>,
    pub client_roots: Option<Arc<RootCertStore>>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsMaterial(<redacted>)")
    }
}

impl TlsFiles {
    /// Parses the PEM of each file; errors name the key and the file of `cfg`, and never
    /// quote what the files hold.
    pub fn parse(&self, cfg: &TlsConfig) -> Result<TlsMaterial, ConfigError> {
        let err = |key: &str, path: &PathBuf, problem: String| {
            ConfigError::new(
                format!("server.tls.{key}"),
                format!("{}: {problem}", path.display()),
            )
        };
        let certs = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("cert_file", &cfg.cert_file, pem_problem(&e, "certificate")))?;
        if certs.is_empty() {
            return Err(err(
                "cert_file",
                &cfg.cert_file,
                "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| err("key_file", &cfg.key_file, pem_problem(&e, "private key")))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(certs, key, &provider).map_err(|e| {
            let problem = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "this key does not belong to the certificate in {}",
                    cfg.cert_file.display()
                ),
                // rustls's words name the key's kind or the certificate's fault, never the key.
                other => format!("cannot be used with its certificate: {other}"),
            };
            err("key_file", &cfg.key_file, problem)
        })?;
        let client_roots = match (&self.client_ca, &cfg.client_ca_file) {
            (Some(pem), Some(path)) => {
                let mut roots = RootCertStore::empty();
                add_pem_roots(&mut roots, pem).map_err(|p| err("client_ca_file", path, p))?;
                Some(Arc::new(roots))
            }
            _ => None,
        };
        Ok(TlsMaterial {
            certified: Arc::new(certified),
            client_roots,
        })
    }
}

/// Adds every certificate of the PEM bundle `pem` to `roots` as a trusted CA (the server's
/// `client_ca_file`, an upstream's `ca_file`); `Err` is what is wrong, in words that never
/// quote the file, for the caller to prefix with the key and the path.
pub fn add_pem_roots(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), String> {
    let mut added = 0;
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| pem_problem(&e, "certificate"))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} is not usable as a CA: {e}", i + 1))?;
        added += 1;
    }
    if added == 0 {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(())
}

/// What is wrong with a PEM file, in words that never quote it (pki-types' own messages
/// can quote a line).
fn pem_problem(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::NoItemsFound => format!("no PEM {what} in it"),
        Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        Error::Base64Decode(_) => "a PEM section is not valid base64".into(),
        Error::SectionTooLarge => "a PEM section is too large".into(),
        _ => format!("not a PEM {what}"),
    }
}

/// Bounds on what callers can make the gateway hold; each refusal is RESOURCE_EXHAUSTED
/// (LIMIT_REACHED) naming the limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open WatchTask and WatchRunspace streams, in all.
    pub max_watch_streams: usize,
    /// Open watch streams of one caller connection (below `server.max_concurrent_streams`,
    /// so a caller meets this named limit before HTTP/2's anonymous REFUSED_STREAM).
    pub max_watch_streams_per_connection: usize,
    /// Resources polled at once per upstream (one poller serves every watcher of a resource).
    pub max_pollers_per_upstream: usize,
    /// `task_ids` in one ListTasks filter.
    pub max_task_ids: usize,
    /// CreateRunspace `request_id`s remembered at once (each for at least 10 minutes).
    pub max_request_ids: usize,
    /// Largest upstream answer body read, in bytes.
    pub max_upstream_body_bytes: usize,
    /// HTTP requests in flight to one upstream (and so its most connections); more wait
    /// their turn within the caller's deadline (or the request timeout), then are refused.
    pub max_upstream_requests: usize,
    /// Sessions of callers' own identities (pass-through logins) kept per upstream; the
    /// least recently used one is logged out to make room.
    pub max_caller_sessions: usize,
    /// How long a caller's session is kept unused before it is logged out.
    #[serde(with = "humantime_serde")]
    pub caller_session_idle: Duration,
}

impl LimitsConfig {
    /// Every limit must let at least one through.
    fn validate(&self) -> Result<(), ConfigError> {
        let limits = [
            ("max_watch_streams", self.max_watch_streams),
            (
                "max_watch_streams_per_connection",
                self.max_watch_streams_per_connection,
            ),
            ("max_pollers_per_upstream", self.max_pollers_per_upstream),
            ("max_task_ids", self.max_task_ids),
            ("max_request_ids", self.max_request_ids),
            ("max_upstream_body_bytes", self.max_upstream_body_bytes),
            ("max_upstream_requests", self.max_upstream_requests),
            ("max_caller_sessions", self.max_caller_sessions),
        ];
        if self.caller_session_idle.is_zero() {
            return Err(ConfigError::new(
                "limits.caller_session_idle",
                "must be longer than zero",
            ));
        }
        match limits.iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(ConfigError::new(
                format!("limits.{key}"),
                "must be at least 1",
            )),
            None => Ok(()),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_watch_streams: 20_000,
            max_watch_streams_per_connection: 1_000,
            max_pollers_per_upstream: 20_000,
            max_task_ids: 1_000,
            max_request_ids: 10_000,
            max_upstream_body_bytes: 16 * 1024 * 1024,
            max_upstream_requests: 64,
            max_caller_sessions: 1_000,
            caller_session_idle: Duration::from_secs(600),
        }
    }
}

/// The polling engine behind WatchTask, WaitTask and WatchRunspace.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Fastest a poller polls (and where it restarts after a change).
    #[serde(with = "humantime_serde")]
    pub min_poll_interval: Duration,
    /// Slowest a poller polls while nothing changes.
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// Factor the interval grows by after each poll that saw no change.
    pub growth: f64,
    /// Random spread of every interval, as a fraction (0.1 = plus or minus 10 %).
    pub jitter: f64,
    /// Longest a WaitTask call waits.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Consecutive transient upstream failures a poller retries before its watchers end.
    pub retry_budget: u32,
    /// Most poll requests per second to one upstream; pollers slow down beyond it.
    pub max_polls_per_second: u32,
    /// HEARTBEAT interval of a watch that does not set one ("0s" turns it off).
    #[serde(with = "humantime_serde")]
    pub heartbeat_default: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            min_poll_interval: Duration::from_millis(500),
            max_poll_interval: Duration::from_secs(10),
            growth: 1.5,
            jitter: 0.1,
            max_wait: Duration::from_secs(60),
            retry_budget: 5,
            max_polls_per_second: 50,
            heartbeat_default: Duration::from_secs(15),
        }
    }
}

impl WatchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.min_poll_interval.is_zero() {
            return Err(ConfigError::new(
                "watch.min_poll_interval",
                "must be more than 0",
            ));
        }
        if self.max_poll_interval < self.min_poll_interval {
            return Err(ConfigError::new(
                "watch.max_poll_interval",
                "must be at least watch.min_poll_interval",
            ));
        }
        if !(self.growth.is_finite() && (1.0..=10.0).contains(&self.growth)) {
            return Err(ConfigError::new(
                "watch.growth",
                format!("{} must be between 1.0 and 10.0", self.growth),
            ));
        }
        if !(self.jitter.is_finite() && (0.0..=0.5).contains(&self.jitter)) {
            return Err(ConfigError::new(
                "watch.jitter",
                format!("{} must be a fraction between 0.0 and 0.5", self.jitter),
            ));
        }
        if self.max_wait.is_zero() {
            return Err(ConfigError::new("watch.max_wait", "must be more than 0"));
        }
        if self.max_polls_per_second == 0 {
            return Err(ConfigError::new(
                "watch.max_polls_per_second",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// One upstream: what every kind has, and the settings of its kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UpstreamConfig {
    /// Short name used in resource names (`upstreams/{name}`).
    pub name: String,
    /// Base URL, e.g. `https://vcenter.example.com` (without `/api`).
    pub url: String,
    /// Service-account user (for Cloud Director without `@org`; see `org`).
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File that holds the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The resolved password (from `password_env`, `password_file` or `VMWGW_UPSTREAM_<NAME>_PASSWORD`).
    #[serde(skip_deserializing)]
    pub password: Secret,
    /// PEM file of CA certificates to trust in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (testing only; logged as a warning at start).
    #[serde(default)]
    pub insecure: bool,
    /// Timeout of one upstream HTTP request.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Times a read (GET, a list) is tried again after a transient failure (5xx, 429, no
    /// answer); never a cancel or a create.
    #[serde(default = "default_read_retries")]
    pub read_retries: u32,
    /// The retry budget: retries may add at most this fraction to the upstream's reads
    /// (plus a small reserve), so retries never multiply an outage's load.
    #[serde(default = "default_read_retry_ratio")]
    pub read_retry_ratio: f64,
    /// Consecutive failures (no answer, request timeout, 502/503/504) that open the circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one probe may try again.
    #[serde(default = "default_breaker_open_for", with = "humantime_serde")]
    pub breaker_open_for: Duration,
    /// Whose identity calls to this upstream use: the service account's (the default), the
    /// caller's own (`pass_through`), or the caller's when it sends one (`either`).
    #[serde(default)]
    pub auth: AuthMode,
    /// `kind = "..."` and the settings only that kind has. Unknown keys land here, so a key
    /// of another kind (or a typo) is refused by name.
    #[serde(flatten)]
    pub kind: KindConfig,
}

/// Whose VMware identity the gateway uses towards an upstream (see API.md, "Caller security").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// The configured service account, for every caller.
    #[default]
    ServiceAccount,
    /// The caller's own identity (`x-upstream-authorization` or `x-upstream-session`),
    /// required on every call.
    PassThrough,
    /// The caller's own identity when it sends one, else the service account.
    Either,
}

/// The REST API an upstream speaks, with the settings only it has.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum KindConfig {
    Vsphere {},
    Snapservice {},
    CloudDirector(CloudDirectorConfig),
    ScriptRuntime {},
}

/// The REST API an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    Vsphere,
    Snapservice,
    CloudDirector,
    ScriptRuntime,
}

impl UpstreamKind {
    /// The spelling of `kind` in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Vsphere => "vsphere",
            UpstreamKind::Snapservice => "snapservice",
            UpstreamKind::CloudDirector => "cloud_director",
            UpstreamKind::ScriptRuntime => "script_runtime",
        }
    }
}

impl std::fmt::Display for UpstreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl KindConfig {
    /// The kind with its default settings.
    pub fn new(kind: UpstreamKind) -> Self {
        match kind {
            UpstreamKind::Vsphere => KindConfig::Vsphere {},
            UpstreamKind::Snapservice => KindConfig::Snapservice {},
            UpstreamKind::CloudDirector => {
                KindConfig::CloudDirector(CloudDirectorConfig::default())
            }
            UpstreamKind::ScriptRuntime => KindConfig::ScriptRuntime {},
        }
    }

    pub fn kind(&self) -> UpstreamKind {
        match self {
            KindConfig::Vsphere {} => UpstreamKind::Vsphere,
            KindConfig::Snapservice {} => UpstreamKind::Snapservice,
            KindConfig::CloudDirector(_) => UpstreamKind::CloudDirector,
            KindConfig::ScriptRuntime {} => UpstreamKind::ScriptRuntime,
        }
    }
}

/// Settings of a Cloud Director upstream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudDirectorConfig {
    /// Organization of the service account (`System` for providers).
    #[serde(default)]
    pub org: Option<String>,
    /// Log in as provider (system administrator).
    #[serde(default)]
    pub provider: bool,
    /// API version sent in `Accept`.
    #[serde(default = "default_vcd_api_version")]
    pub api_version: String,
    /// Environment variable holding an API (refresh) token, used instead of a password.
    #[serde(default)]
    pub api_token_env: Option<String>,
    /// File holding an API (refresh) token.
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// The resolved API token (from `api_token_env`, `api_token_file` or `VMWGW_UPSTREAM_<NAME>_API_TOKEN`).
    #[serde(skip_deserializing)]
    pub api_token: Secret,
}

/// Keys only some kinds have, for the message that refuses them elsewhere.
const KIND_KEYS: &[(&str, UpstreamKind)] = &[
    ("org", UpstreamKind::CloudDirector),
    ("provider", UpstreamKind::CloudDirector),
    ("api_version", UpstreamKind::CloudDirector),
    ("api_token_env", UpstreamKind::CloudDirector),
    ("api_token_file", UpstreamKind::CloudDirector),
];

impl Default for CloudDirectorConfig {
    fn default() -> Self {
        Self {
            org: None,
            provider: false,
            api_version: default_vcd_api_version(),
            api_token_env: None,
            api_token_file: None,
            api_token: Secret::default(),
        }
    }
}

fn default_vcd_api_version() -> String {
    "37.0".into()
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_read_retries() -> u32 {
    2
}

fn default_read_retry_ratio() -> f64 {
    0.2
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_breaker_open_for() -> Duration {
    Duration::from_secs(10)
}

impl UpstreamConfig {
    /// A minimal upstream with a password, as `demo` and tests build them.
    pub fn new(name: &str, kind: UpstreamKind, url: &str, username: &str, password: &str) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            username: Some(username.into()),
            password_env: None,
            password_file: None,
            password: Secret::new(password),
            ca_file: None,
            insecure: false,
            request_timeout: default_request_timeout(),
            read_retries: default_read_retries(),
            read_retry_ratio: default_read_retry_ratio(),
            breaker_failures: default_breaker_failures(),
            breaker_open_for: default_breaker_open_for(),
            auth: AuthMode::default(),
            kind: KindConfig::new(kind),
        }
    }

    /// The kind of REST API it speaks.
    pub fn kind(&self) -> UpstreamKind {
        self.kind.kind()
    }

    /// The Cloud Director settings, for a Cloud Director upstream.
    pub fn cloud_director(&self) -> Option<&CloudDirectorConfig> {
        match &self.kind {
            KindConfig::CloudDirector(c) => Some(c),
            _ => None,
        }
    }

    /// The Cloud Director settings to change, for a Cloud Director upstream.
    pub fn cloud_director_mut(&mut self) -> Option<&mut CloudDirectorConfig> {
        match &mut self.kind {
            KindConfig::CloudDirector(c) => Some(c),
            _ => None,
        }
    }
}

impl CloudDirectorConfig {
    fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.org.as_deref().unwrap_or("").is_empty() && !self.provider {
            return Err(ConfigError::new(
                key("org"),
                "is required for cloud_director (or set provider = true)",
            ));
        }
        if self.api_version.parse::<f32>().is_err() {
            return Err(ConfigError::new(
                key("api_version"),
                format!("'{}' is not a version like 37.0", self.api_version),
            ));
        }
        Ok(())
    }
}

/// Reads the environment through a function, so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads `path`, applies environment overrides, resolves secrets and validates.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Config::from_toml(&text, &|k| std::env::var(k).ok())
    }

    /// Parses TOML text, then applies overrides from `env`, resolves secrets and validates.
    pub fn from_toml(text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let unknown = e
                .message()
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next());
            // An upstream's unknown key reaches serde through its flattened kind settings,
            // which loses the span: find the key's own line instead.
            let variant = e
                .message()
                .strip_prefix("unknown variant `")
                .and_then(|r| r.split('`').next());
            // An unknown table names itself in its header.
            let table = unknown.and_then(|field| table_named(text, field));
            let at = unknown
                .and_then(|field| line_of(text, |k, _| k == field))
                .or_else(|| {
                    variant.and_then(|v| line_of(text, |_, value| value.trim_matches('"') == v))
                })
                .or_else(|| e.span().map(|s| s.start));
            let mut key = match table {
                Some(table) => table,
                None => at.map(|at| key_at(text, at)).unwrap_or_default(),
            };
            if let Some(field) = unknown
                && !key.ends_with(field)
            {
                key = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
            }
            let mut problem = e.message().to_string();
            if let Some((field, kind)) = KIND_KEYS
                .iter()
                .find(|(k, _)| key.ends_with(&format!(".{k}")))
            {
                problem = format!("`{field}` is a setting of kind {kind} only ({problem})");
            }
            ConfigError::new(if key.is_empty() { "config".into() } else { key }, problem)
        })?;
        cfg.apply_env(env)?;
        cfg.resolve_secrets(env)?;
        if let Some(tls) = &mut cfg.server.tls {
            tls.fill_defaults();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: EnvLookup<'_>) -> Result<(), ConfigError> {
        let var = |k: &str| env(&format!("{ENV_PREFIX}{k}"));
        if let Some(v) = var("LISTEN") {
            self.server.listen = v.parse().map_err(|e| {
                ConfigError::new(format!("{ENV_PREFIX}LISTEN"), format!("'{v}': {e}"))
            })?;
        }
        if let Some(v) = var("ADMIN_LISTEN") {
            self.admin.listen = Some(v.parse().map_err(|e| {
                ConfigError::new(format!("{ENV_PREFIX}ADMIN_LISTEN"), format!("'{v}': {e}"))
            })?);
        }
        for u in &mut self.upstreams {
            let prefix = format!("UPSTREAM_{}_", env_name(&u.name));
            if let Some(v) = var(&format!("{prefix}URL")) {
                u.url = v;
            }
            if let Some(v) = var(&format!("{prefix}USERNAME")) {
                u.username = Some(v);
            }
            if let Some(v) = var(&format!("{prefix}PASSWORD")) {
                u.password = Secret::new(v);
            }
            if let Some(v) = var(&format!("{prefix}API_TOKEN")) {
                match u.cloud_director_mut() {
                    Some(c) => c.api_token = Secret::new(v),
                    None => {
                        return Err(ConfigError::new(
                            format!("{ENV_PREFIX}{prefix}API_TOKEN"),
                            format!(
                                "upstream '{}' is of kind {}, which takes no API token",
                                u.name,
                                u.kind()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn resolve_secrets(&mut self, env: EnvLookup<'_>) -> Result<(), ConfigError> {
        for (i, u) in self.upstreams.iter_mut().enumerate() {
            let key = |field: &str| format!("upstreams[{i}].{field}");
            if u.password.is_empty() {
                u.password = read_secret(
                    env,
                    u.password_env.as_deref(),
                    u.password_file.as_ref(),
                    &key("password_env"),
                    &key("password_file"),
                )?;
            }
            if let Some(c) = u.cloud_director_mut()
                && c.api_token.is_empty()
            {
                c.api_token = read_secret(
                    env,
                    c.api_token_env.as_deref(),
                    c.api_token_file.as_ref(),
                    &key("api_token_env"),
                    &key("api_token_file"),
                )?;
            }
        }
        Ok(())
    }

    /// Checks everything that can be checked without talking to an upstream.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_message_bytes < 1024 {
            return Err(ConfigError::new(
                "server.max_message_bytes",
                "must be at least 1024",
            ));
        }
        if self.server.max_concurrent_streams == 0 {
            return Err(ConfigError::new(
                "server.max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if let Some(tls) = &self.server.tls {
            tls.validate()?;
        }
        self.watch.validate()?;
        self.limits.validate()?;
        if let Some(auth) = &self.auth {
            if auth.reload_interval < Duration::from_millis(10) {
                return Err(ConfigError::new(
                    "auth.reload_interval",
                    "must be at least 10ms",
                ));
            }
            crate::auth::CallerStore::load(&auth.tokens_file)
                .map_err(|e| ConfigError::new("auth.tokens_file", e))?;
        }
        let mut names = BTreeSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = |field: &str| format!("upstreams[{i}].{field}");
            if !is_valid_upstream_name(&u.name) {
                return Err(ConfigError::new(
                    key("name"),
                    format!(
                        "'{}' is not a valid name: use lowercase letters, digits and '-', starting with a letter, at most 63 characters",
                        u.name
                    ),
                ));
            }
            if !names.insert(u.name.as_str()) {
                return Err(ConfigError::new(
                    key("name"),
                    format!("'{}' is used by two upstreams", u.name),
                ));
            }
            let url = reqwest::Url::parse(&u.url).map_err(|e| {
                ConfigError::new(key("url"), format!("'{}' is not a URL: {e}", u.url))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::new(
                    key("url"),
                    format!("'{}' must be http:// or https://", u.url),
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(ConfigError::new(
                    key("url"),
                    "must not carry credentials; use username and password_env/password_file",
                ));
            }
            let has_token = u.cloud_director().is_some_and(|c| !c.api_token.is_empty());
            // A pass-through upstream is only ever called as the caller: no service account.
            if !has_token && u.auth != AuthMode::PassThrough {
                if u.username.as_deref().unwrap_or("").is_empty() {
                    return Err(ConfigError::new(key("username"), "is required"));
                }
                if u.password.is_empty() {
                    return Err(ConfigError::new(
                        key("password_env"),
                        format!(
                            "no password: set password_env or password_file, or {ENV_PREFIX}UPSTREAM_{}_PASSWORD",
                            env_name(&u.name)
                        ),
                    ));
                }
            }
            if let Some(c) = u.cloud_director() {
                c.validate(&key)?;
            }
            if let Some(ca) = &u.ca_file
                && !ca.is_file()
            {
                return Err(ConfigError::new(
                    key("ca_file"),
                    format!("{} is not a readable file", ca.display()),
                ));
            }
            if !(u.read_retry_ratio.is_finite() && (0.0..=1.0).contains(&u.read_retry_ratio)) {
                return Err(ConfigError::new(
                    key("read_retry_ratio"),
                    format!(
                        "{} must be a fraction between 0.0 and 1.0",
                        u.read_retry_ratio
                    ),
                ));
            }
            if u.request_timeout.is_zero() {
                return Err(ConfigError::new(
                    key("request_timeout"),
                    "must be more than 0",
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

fn read_secret(
    env: EnvLookup<'_>,
    var: Option<&str>,
    file: Option<&PathBuf>,
    var_key: &str,
    file_key: &str,
) -> Result<Secret, ConfigError> {
    if let Some(var) = var {
        return env(var)
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                ConfigError::new(var_key, format!("environment variable {var} is not set"))
            });
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(file_key, format!("cannot read {}: {e}", path.display()))
        })?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(ConfigError::new(
                file_key,
                format!("{} is empty", path.display()),
            ));
        }
        return Ok(Secret::new(value));
    }
    Ok(Secret::default())
}

/// `vc-1` → `VC_1`, as used in `VMWGW_UPSTREAM_<NAME>_...`.
pub fn env_name(upstream: &str) -> String {
    upstream.to_ascii_uppercase().replace('-', "_")
}

/// The offset just past the key of the first `key = value` line that `matches(key, value)`.
fn line_of(text: &str, matches: impl Fn(&str, &str) -> bool) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some((k, v)) = trimmed.split_once('=')
            && matches(k.trim(), v.trim())
        {
            // Just past the key, so `key_at` reads the key off the line.
            return Some(offset + line.len() - trimmed.len() + k.len());
        }
        offset += line.len();
    }
    None
}

/// The dotted key of the TOML table/array entry around byte `offset`, for error messages.
/// The name of a `[table]` or `[[table]]` header whose last part is `field`.
fn table_named(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let l = line.trim();
        let name = l
            .strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?
            .trim();
        (name == field || name.ends_with(&format!(".{field}"))).then(|| name.to_string())
    })
}

fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for line in before.lines() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = index.entry(name.to_string()).or_insert(usize::MAX);
            *n = n.wrapping_add(1);
            table = format!("{name}[{n}]");
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.to_string();
        }
    }
    let line = before.rsplit('\n').next().unwrap_or("");
    let field = line.split('=').next().unwrap_or("").trim();
    match (table.is_empty(), field.is_empty() || field.starts_with('[')) {
        (true, true) => String::new(),
        (true, false) => field.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{field}"),
    }
}

#[cfg(test)]
mod tests;
