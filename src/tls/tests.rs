//! The TLS module's own tests: identities of a client certificate, and what a reload does
//! with changed, broken and restored files (handshakes in memory; `tests/tls.rs` runs them
//! over sockets through the whole server).

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, pem::PemObject};

use super::*;

/// A CA of its own name.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
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

    /// A certificate for `localhost` it signed: (certificate PEM, key PEM, certificate DER).
    fn server(&self) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }
}

/// A directory of `[server.tls]` files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("vmwgw-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).unwrap();
    }

    fn config(&self) -> TlsConfig {
        TlsConfig::new(self.0.join("tls.crt"), self.0.join("tls.key"))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The certificate a client trusting `ca` is served by `server`, after a handshake in memory.
fn served(server: Arc<rustls::ServerConfig>, ca: &Ca) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut c =
        rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let mut s = rustls::ServerConnection::new(server).unwrap();
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets()
            .expect("the client trusts the certificate");
    }
    c.peer_certificates().unwrap()[0].clone()
}

#[test]
fn a_client_certificate_names_its_dns_and_uri_alternative_names_then_its_common_name() {
    let ca = Ca::new("clients");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["runner.ops.svc".to_string()]).unwrap();
    params.subject_alt_names.extend([
        SanType::URI(
            "spiffe://cluster.local/ns/ops/sa/runner"
                .try_into()
                .unwrap(),
        ),
        SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
        SanType::IpAddress("10.1.2.3".parse().unwrap()),
        SanType::DnsName("runner.ops.svc".try_into().unwrap()),
    ]);
    params.distinguished_name.push(DnType::CommonName, "runner");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ops");
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let client = ClientCert::from_der(cert.der());
    assert_eq!(
        client.identities,
        [
            "runner.ops.svc",
            "spiffe://cluster.local/ns/ops/sa/runner",
            "runner"
        ],
        "e-mail and IP names are not identities; each name once"
    );
    assert!(client.has_identity("spiffe://cluster.local/ns/ops/sa/runner"));
    assert!(!client.has_identity("spiffe://cluster.local/ns/ops/sa"));
}

#[test]
fn a_certificate_that_cannot_be_parsed_has_no_identities() {
    assert!(ClientCert::from_der(b"not DER").identities.is_empty());
    assert!(ClientCert::from_der(&[]).identities.is_empty());
}

#[test]
fn the_peer_is_read_from_the_connection_info() {
    let mut ext = http::Extensions::new();
    assert_eq!(peer(&ext), None);
    let addr: SocketAddr = "10.0.0.7:4242".parse().unwrap();
    ext.insert(ConnInfo {
        remote: Some(addr),
        client: None,
    });
    assert_eq!(peer(&ext), Some(addr));
    assert!(conn_info(&ext).unwrap().client.is_none());
}

#[test]
fn a_reload_swaps_the_configuration_only_for_usable_changed_files() {
    let dir = Dir::new("reload");
    let (old_ca, new_ca) = (Ca::new("old"), Ca::new("new"));
    let (cert, key, old_der) = old_ca.server();
    dir.write("tls.crt", &cert);
    dir.write("tls.key", &key);
    let tls = ServerTls::load(&dir.config()).unwrap();
    let first = tls.current();
    assert_eq!(served(first.clone(), &old_ca), old_der);

    assert!(matches!(tls.reload(), Reload::Unchanged));
    assert!(Arc::ptr_eq(&tls.current(), &first));

    // Broken: the old configuration stays, and the warning names the file, once.
    dir.write("tls.crt", "garbage\n");
    match tls.reload() {
        Reload::Kept(e) => {
            assert_eq!(e.key, "server.tls.cert_file", "{e}");
            assert!(e.problem.contains("tls.crt"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(tls.reload(), Reload::Unchanged), "warned once");
    assert_eq!(served(tls.current(), &old_ca), old_der);

    // A new certificate with the old key: not usable, the key is named.
    let (new_cert, new_key, new_der) = new_ca.server();
    dir.write("tls.crt", &new_cert);
    match tls.reload() {
        Reload::Kept(e) => {
            assert_eq!(e.key, "server.tls.key_file", "{e}");
            let body = key.lines().nth(1).unwrap();
            assert!(!format!("{e} {e:?}").contains(&body[..16]), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(served(tls.current(), &old_ca), old_der);

    // Then its key too: new connections get the new certificate.
    dir.write("tls.key", &new_key);
    assert!(matches!(tls.reload(), Reload::Reloaded));
    assert_eq!(served(tls.current(), &new_ca), new_der);

    // A file gone for a moment, then back as it was: nothing to swap back to but itself.
    std::fs::remove_file(dir.0.join("tls.key")).unwrap();
    assert!(matches!(tls.reload(), Reload::Kept(e) if e.key == "server.tls.key_file"));
    assert_eq!(served(tls.current(), &new_ca), new_der);
    dir.write("tls.key", &new_key);
    assert!(matches!(tls.reload(), Reload::Reloaded));
    assert_eq!(served(tls.current(), &new_ca), new_der);
}

#[test]
fn the_configuration_offers_http2_only() {
    let dir = Dir::new("alpn");
    let (cert, key, _) = Ca::new("alpn").server();
    dir.write("tls.crt", &cert);
    dir.write("tls.key", &key);
    let tls = ServerTls::load(&dir.config()).unwrap();
    assert_eq!(tls.current().alpn_protocols, [b"h2".to_vec()]);
}
