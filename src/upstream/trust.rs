//! Which certificates an upstream's TLS trusts: the system's roots, plus the PEM bundle of
//! `ca_file` when set; or none checked at all with `insecure = true`.

use std::sync::{Arc, OnceLock};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{WebPkiSupportedAlgorithms, ring},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use crate::config::{ConfigError, UpstreamConfig, add_pem_roots};

/// The rustls client configuration of one upstream (the connector sets its ALPN).
pub fn client_config(cfg: &UpstreamConfig) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("upstreams.{}", cfg.name), e.to_string()))?;
    let config = if cfg.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(cfg)?)
            .with_no_client_auth()
    };
    Ok(config)
}

/// The system's roots, read once per process (those it cannot parse are skipped, as
/// browsers do): every upstream starts from them.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

/// The system's roots and `ca_file`'s.
fn roots(cfg: &UpstreamConfig) -> Result<RootCertStore, ConfigError> {
    let mut roots = system_roots().clone();
    if let Some(path) = &cfg.ca_file {
        let key = format!("upstreams.{}.ca_file", cfg.name);
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError::new(&key, format!("cannot read {}: {e}", path.display())))?;
        add_pem_roots(&mut roots, &pem)
            .map_err(|problem| ConfigError::new(&key, format!("{}: {problem}", path.display())))?;
    }
    Ok(roots)
}

/// `insecure = true`: any certificate and name are accepted; the handshake's signatures are
/// still checked, so the session is at least with the holder of the certificate's key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamKind;

    #[test]
    fn a_ca_file_adds_its_certificates_and_a_bad_one_is_refused_naming_the_key() {
        let dir = std::env::temp_dir().join(format!("vmwgw-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["vc.example.com".to_string()]).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert.pem()).unwrap();
        std::fs::write(dir.join("none.crt"), "no certificate here\n").unwrap();
        let with = |file: &str| {
            let mut cfg = UpstreamConfig::new("vc1", UpstreamKind::Vsphere, "https://vc", "u", "p");
            cfg.ca_file = Some(dir.join(file));
            roots(&cfg)
        };

        let trusted = with("ca.crt").unwrap();
        assert_eq!(trusted.len(), system_roots().len() + 1);
        for (file, problem) in [
            ("none.crt", "no PEM certificate"),
            ("missing.crt", "cannot read"),
        ] {
            let e = with(file).unwrap_err();
            assert_eq!(e.key, "upstreams.vc1.ca_file", "{e}");
            assert!(e.problem.contains(problem), "{file}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
