//! What `demo` and `simulate` print for a newcomer works as printed.

use vmware_grpc_gateway::{
    demo,
    simulator::{SimOptions, Simulator},
};

#[tokio::test]
async fn the_logins_simulate_prints_log_in_to_every_simulated_upstream() {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let listing = demo::simulator_listing(&sim);
    let http = reqwest::Client::new();
    let logins = demo::logins(&sim);
    assert_eq!(logins.len(), 4);
    for l in logins {
        assert!(
            listing.contains(&format!("-u '{}:{}'", l.user, l.password)),
            "{listing}"
        );
        assert!(
            listing.contains(&format!("{}{}", l.url, l.path)),
            "{listing}"
        );
        assert!(
            listing.contains(&format!(" {} ", l.kind)),
            "kinds as the configuration spells them: {listing}"
        );
        let mut req = http
            .post(format!("{}{}", l.url, l.path))
            .basic_auth(&l.user, Some(&l.password));
        if let Some(accept) = l.accept {
            req = req.header("accept", accept);
        }
        let resp = req.send().await.unwrap();
        assert!(
            resp.status().is_success(),
            "{} login as {} answered {}",
            l.name,
            l.user,
            resp.status()
        );
    }
}

#[tokio::test]
async fn the_demo_banner_says_which_command_fails_on_purpose() {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let addr = "127.0.0.1:50051".parse().unwrap();
    let banner = demo::banner(addr, &demo::config(&sim, addr, None), None);
    let (tries, on_purpose) = banner
        .split_once("fails on purpose")
        .expect("a section for the failing command");
    assert!(!tries.contains("no-such-task"), "{banner}");
    assert!(on_purpose.contains("no-such-task"), "{banner}");
    assert!(banner.contains("cloud_director"), "{banner}");
    assert!(!banner.contains("CloudDirector"), "{banner}");
}

#[tokio::test]
async fn demo_grpc_tls_serves_what_its_banner_tells_grpcurl_to_trust() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    use vmware_grpc_gateway::{proto, server::Running};

    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let files = demo::DemoTls::generate(&std::env::temp_dir()).unwrap();
    let mut cfg = demo::config(&sim, "127.0.0.1:0".parse().unwrap(), None);
    cfg.server.tls = Some(files.config());
    let gateway = Running::start(cfg.clone()).await.unwrap();
    let ca = files.ca_file();
    let banner = demo::banner(gateway.addr, &cfg, Some(&ca));
    let trust = format!("grpcurl -cacert {} {}", ca.display(), gateway.addr);
    assert!(banner.contains(&trust), "{banner}");
    assert!(!banner.contains("-plaintext"), "{banner}");
    assert!(banner.lines().next().unwrap().contains("TLS"), "{banner}");

    // What grpcurl -cacert does: trust the CA, check the address the banner prints.
    let pem = std::fs::read_to_string(&ca).unwrap();
    let channel = Channel::from_shared(gateway.url())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
        .unwrap()
        .connect()
        .await
        .expect("the demo's CA verifies its certificate for 127.0.0.1");
    let upstreams = proto::upstream_service_client::UpstreamServiceClient::new(channel)
        .list_upstreams(proto::ListUpstreamsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(upstreams.upstreams.len(), 4);
    gateway.shutdown().await.unwrap();

    let dir = ca.parent().unwrap().to_path_buf();
    drop(files);
    assert!(!dir.exists(), "the demo's certificates are removed with it");
}
