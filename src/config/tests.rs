//! The configuration's tests: parsing, environment overrides, secrets, and errors that
//! name the key.

use super::*;

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

const VC: &str = r#"
[server]
listen = "127.0.0.1:6000"

[[upstreams]]
name = "vc1"
kind = "vsphere"
url = "https://vc.example.com"
username = "svc@vsphere.local"
password_env = "VC1_PASSWORD"
"#;

#[test]
fn password_comes_from_the_named_environment_variable() {
    let cfg = Config::from_toml(VC, &env(&[("VC1_PASSWORD", "s3cret")])).unwrap();
    assert_eq!(cfg.upstreams[0].password.expose(), "s3cret");
    assert!(!cfg.redacted_toml().contains("s3cret"));
    assert!(cfg.redacted_toml().contains("<redacted>"));
}

#[test]
fn environment_overrides_the_file() {
    let cfg = Config::from_toml(
        VC,
        &env(&[
            ("VC1_PASSWORD", "x"),
            ("VMWGW_LISTEN", "127.0.0.1:7000"),
            ("VMWGW_UPSTREAM_VC1_URL", "https://other.example.com"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.server.listen.port(), 7000);
    assert_eq!(cfg.upstreams[0].url, "https://other.example.com");
}

#[test]
fn errors_name_the_key() {
    let err = Config::from_toml(VC, &env(&[])).unwrap_err();
    assert_eq!(err.key, "upstreams[0].password_env");
    assert!(err.problem.contains("VC1_PASSWORD"));

    let bad_url = VC.replace("https://vc.example.com", "vc.example.com");
    let err = Config::from_toml(&bad_url, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert_eq!(err.key, "upstreams[0].url");

    let typo = VC.replace("username", "user_name");
    let err = Config::from_toml(&typo, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert_eq!(err.key, "upstreams[0].user_name");

    let no_kind = VC.replace("kind = \"vsphere\"\n", "");
    let err = Config::from_toml(&no_kind, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert!(err.problem.contains("kind"), "{err}");

    let bad_kind = VC.replace("\"vsphere\"", "\"vsfere\"");
    let err = Config::from_toml(&bad_kind, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert_eq!(err.key, "upstreams[0].kind");

    let unknown_table = format!("{VC}\n[metrics]\nlisten = \"x\"\n");
    let err = Config::from_toml(&unknown_table, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert_eq!(err.key, "metrics", "{err}");

    let bad_format = format!("{VC}\n[log]\nformat = \"xml\"\n");
    let err = Config::from_toml(&bad_format, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert_eq!(err.key, "log.format", "{err}");

    let admin = format!("{VC}\n[admin]\nlisten = \"0.0.0.0:9090\"\n");
    let cfg = Config::from_toml(&admin, &env(&[("VC1_PASSWORD", "x")])).unwrap();
    assert_eq!(cfg.admin.listen.map(|a| a.port()), Some(9090));

    let no_requests = VC.replace("[server]", "[limits]\nmax_upstream_requests = 0\n[server]");
    let err = Config::from_toml(&no_requests, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert_eq!(err.key, "limits.max_upstream_requests", "{err}");
}

#[test]
fn durations_need_a_unit() {
    let with = |v: &str| VC.replace("[server]", &format!("[server]\nshutdown_grace = \"{v}\""));
    let grace = |v: &str| {
        Config::from_toml(&with(v), &env(&[("VC1_PASSWORD", "x")])).map(|c| c.server.shutdown_grace)
    };
    assert_eq!(grace("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(grace("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(grace("1m 30s").unwrap(), Duration::from_secs(90));
    let err = grace("10").unwrap_err();
    assert_eq!(err.key, "server.shutdown_grace");
    assert!(grace("10 parsecs").is_err());
}

#[test]
fn a_setting_of_another_kind_is_refused_by_name() {
    let org = VC.replace("username =", "org = \"acme\"\nusername =");
    let err = Config::from_toml(&org, &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert_eq!(err.key, "upstreams[0].org");
    assert!(
        err.problem.contains("cloud_director only"),
        "{}",
        err.problem
    );
    let vcd = VC.replace("\"vsphere\"", "\"cloud_director\"").replace(
        "username =",
        "org = \"acme\"\napi_version = \"38.0\"\nusername =",
    );
    let cfg = Config::from_toml(&vcd, &env(&[("VC1_PASSWORD", "x")])).unwrap();
    let c = cfg.upstreams[0].cloud_director().unwrap();
    assert_eq!(c.org.as_deref(), Some("acme"));
    assert_eq!(c.api_version, "38.0");
    // The printed configuration keeps the kind's settings flat, as they were written.
    let printed = cfg.redacted_toml();
    assert!(printed.contains("kind = \"cloud_director\""), "{printed}");
    assert!(printed.contains("org = \"acme\""), "{printed}");
    assert!(!printed.contains("= \"x\""), "the password is redacted");
}

/// A directory of PEM files for `[server.tls]`, removed when dropped.
struct TlsDir(PathBuf);

impl TlsDir {
    /// A self-signed certificate and its key as `tls.crt`, `tls.key`, and `ca.crt` (the
    /// same certificate, as a client CA).
    fn new(name: &str) -> TlsDir {
        let dir = std::env::temp_dir().join(format!("vmwgw-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("tls.crt"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), made.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.crt"), made.cert.pem()).unwrap();
        TlsDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).unwrap();
    }

    /// VC with a `[server.tls]` section of `cert_file`, `key_file` and `extra` lines.
    fn config(&self, extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "{VC}\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
            self.path("tls.crt"),
            self.path("tls.key")
        );
        Config::from_toml(&text, &env(&[("VC1_PASSWORD", "x")]))
    }
}

impl Drop for TlsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn server_tls_is_read_checked_and_printed() {
    let dir = TlsDir::new("tls-printed");
    let cfg = dir.config("").unwrap();
    let tls = cfg.server.tls.as_ref().unwrap();
    assert_eq!(
        tls.client_auth(),
        None,
        "no client CA: no client certificates"
    );
    let printed = cfg.redacted_toml();
    assert!(printed.contains("[server.tls]"), "{printed}");
    assert!(printed.contains(&dir.path("tls.key")), "{printed}");
    assert!(!printed.contains("client_auth"), "{printed}");

    let ca = format!("client_ca_file = \"{}\"", dir.path("ca.crt"));
    let cfg = dir.config(&ca).unwrap();
    let tls = cfg.server.tls.as_ref().unwrap();
    assert_eq!(tls.client_auth(), Some(ClientAuth::Required), "the default");
    let printed = cfg.redacted_toml();
    assert!(printed.contains("client_auth = \"required\""), "{printed}");

    let optional = format!("{ca}\nclient_auth = \"optional\"");
    let cfg = dir.config(&optional).unwrap();
    let tls = cfg.server.tls.as_ref().unwrap();
    assert_eq!(tls.client_auth(), Some(ClientAuth::Optional));
}

#[test]
fn server_tls_errors_name_the_key() {
    let dir = TlsDir::new("tls-errors");
    let err = dir.config("client_auth = \"required\"").unwrap_err();
    assert_eq!(err.key, "server.tls.client_auth");
    assert!(err.problem.contains("client_ca_file"), "{err}");

    let ca = format!("client_ca_file = \"{}\"", dir.path("ca.crt"));
    let err = dir
        .config(&format!("{ca}\nclient_auth = \"sometimes\""))
        .unwrap_err();
    assert_eq!(err.key, "server.tls.client_auth", "{err}");

    let err = dir.config("ca_file = \"x\"").unwrap_err();
    assert_eq!(err.key, "server.tls.ca_file", "an unknown key: {err}");

    let missing = format!("client_ca_file = \"{}\"", dir.path("nothing.crt"));
    let err = dir.config(&missing).unwrap_err();
    assert_eq!(err.key, "server.tls.client_ca_file");
    assert!(err.problem.contains("cannot read"), "{err}");
    assert!(err.problem.contains("nothing.crt"), "{err}");

    dir.write("ca.crt", "not a certificate\n");
    let err = dir.config(&ca).unwrap_err();
    assert_eq!(err.key, "server.tls.client_ca_file", "{err}");

    let key = std::fs::read_to_string(dir.0.join("tls.key")).unwrap();
    dir.write("tls.crt", &key);
    let err = dir.config("").unwrap_err();
    assert_eq!(
        err.key, "server.tls.cert_file",
        "a key where the certificate should be"
    );
    assert!(err.problem.contains("no PEM certificate"), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
}

#[test]
fn a_bad_key_file_is_named_without_quoting_it() {
    let dir = TlsDir::new("tls-key");
    let key = std::fs::read_to_string(dir.0.join("tls.key")).unwrap();
    let body = key.lines().nth(1).unwrap().to_string();
    // As text, or as the list of bytes pki-types' messages print.
    let as_bytes = |s: &str| {
        let bytes: Vec<String> = s.bytes().take(12).map(|b| b.to_string()).collect();
        bytes.join(", ")
    };
    let quoted = |err: &ConfigError| {
        let shown = format!("{err} {err:?}");
        shown.contains(&body[..16]) || shown.contains(&as_bytes(&body))
    };
    // The key's newlines lost (as when pasted through an environment variable): pki-types'
    // own message would quote the whole line, key and all.
    dir.write("tls.key", &key.replace('\n', ""));
    let err = dir.config("").unwrap_err();
    assert_eq!(err.key, "server.tls.key_file");
    assert!(!quoted(&err), "{err}");

    // Cut short.
    dir.write("tls.key", &key[..key.len() / 2]);
    let err = dir.config("").unwrap_err();
    assert_eq!(err.key, "server.tls.key_file");
    assert!(!quoted(&err), "{err}");

    // A key of another certificate.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_key = other.signing_key.serialize_pem();
    dir.write("tls.key", &other_key);
    let err = dir.config("").unwrap_err();
    assert_eq!(err.key, "server.tls.key_file");
    assert!(err.problem.contains("does not belong"), "{err}");
    let other_body = other_key.lines().nth(1).unwrap();
    assert!(
        !format!("{err} {err:?}").contains(&other_body[..16]),
        "{err}"
    );
}

#[test]
fn auth_modes_parse_and_pass_through_needs_no_service_account() {
    let mode = |m: &str| {
        VC.replace(
            "kind = \"vsphere\"",
            &format!("kind = \"vsphere\"\nauth = \"{m}\""),
        )
    };
    let cfg = Config::from_toml(VC, &env(&[("VC1_PASSWORD", "x")])).unwrap();
    assert_eq!(cfg.upstreams[0].auth, AuthMode::ServiceAccount);
    let cfg = Config::from_toml(&mode("either"), &env(&[("VC1_PASSWORD", "x")])).unwrap();
    assert_eq!(cfg.upstreams[0].auth, AuthMode::Either);
    // Either still falls back to the service account: it needs its password.
    let err = Config::from_toml(&mode("either"), &env(&[])).unwrap_err();
    assert_eq!(err.key, "upstreams[0].password_env", "{err}");
    // Pass-through only ever acts as the caller.
    let pt = mode("pass_through")
        .replace("username = \"svc@vsphere.local\"\n", "")
        .replace("password_env = \"VC1_PASSWORD\"\n", "");
    let cfg = Config::from_toml(&pt, &env(&[])).unwrap();
    assert_eq!(cfg.upstreams[0].auth, AuthMode::PassThrough);
    let err = Config::from_toml(&mode("caller"), &env(&[("VC1_PASSWORD", "x")])).unwrap_err();
    assert!(err.to_string().contains("pass_through"), "{err}");

    let limits = |l: &str| VC.replace("[server]", &format!("[limits]\n{l}\n[server]"));
    let err = Config::from_toml(
        &limits("max_caller_sessions = 0"),
        &env(&[("VC1_PASSWORD", "x")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "limits.max_caller_sessions", "{err}");
    let err = Config::from_toml(
        &limits("caller_session_idle = \"0s\""),
        &env(&[("VC1_PASSWORD", "x")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "limits.caller_session_idle", "{err}");
    let cfg = Config::from_toml(
        &limits("caller_session_idle = \"2m\""),
        &env(&[("VC1_PASSWORD", "x")]),
    )
    .unwrap();
    assert_eq!(cfg.limits.caller_session_idle, Duration::from_secs(120));
}
