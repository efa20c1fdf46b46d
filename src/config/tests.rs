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
