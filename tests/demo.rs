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
    let banner = demo::banner(addr, &demo::config(&sim, addr, None));
    let (tries, on_purpose) = banner
        .split_once("fails on purpose")
        .expect("a section for the failing command");
    assert!(!tries.contains("no-such-task"), "{banner}");
    assert!(on_purpose.contains("no-such-task"), "{banner}");
    assert!(banner.contains("cloud_director"), "{banner}");
    assert!(!banner.contains("CloudDirector"), "{banner}");
}
