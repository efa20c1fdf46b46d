//! Logins under failure: a wrong service-account password never becomes a login storm (an
//! SSO account locks after a handful of failures), a rotated secret file is picked up, and a
//! caller that gives up does not abort the login everyone else waits for.

mod common;

use std::time::Duration;

use common::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use vmware_grpc_gateway::{config::Secret, simulator::Fault};

const LOGIN: &str = "POST /api/session";

async fn env_with_password(password: &str, file: Option<std::path::PathBuf>) -> Env {
    let password = password.to_string();
    Env::start_with(sim_options(), move |cfg| {
        cfg.upstreams[0].password = Secret::new(password);
        cfg.upstreams[0].password_file = file;
    })
    .await
}

fn reason(err: &Status) -> String {
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.get_details_retry_info().is_some(), "{err:?}");
    error_info(err).reason
}

#[tokio::test]
async fn a_wrong_password_under_load_costs_one_login_attempt_per_backoff_window() {
    let env = env_with_password("wrong", None).await;
    let name = env.add(running_for(100));
    let calls = (0..50).map(|_| {
        let mut c = env.tasks();
        let name = name.clone();
        async move { c.get_task(get_req(&name)).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut reasons: Vec<String> = results
        .iter()
        .map(|r| reason(r.as_ref().expect_err("the login is refused")))
        .collect();
    reasons.sort();
    reasons.dedup();
    for r in &reasons {
        assert!(
            r == "UPSTREAM_LOGIN_FAILED" || r == "LOGIN_BACKOFF",
            "{reasons:?}"
        );
    }
    assert_eq!(
        env.sim.vcenter.requests(LOGIN),
        1,
        "50 concurrent calls, one login attempt"
    );
    // Within the backoff window nothing is sent: calls fail at once, saying when to retry.
    for _ in 0..10 {
        let err = env.tasks().get_task(get_req(&name)).await.unwrap_err();
        assert_eq!(reason(&err), "LOGIN_BACKOFF");
        let delay = err
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .expect("a retry delay");
        assert!(delay <= Duration::from_secs(5), "{delay:?}");
    }
    assert_eq!(env.sim.vcenter.requests(LOGIN), 1);
    let up = env.get_upstream("upstreams/vc1").await.unwrap();
    assert_eq!(
        up.session_state(),
        vmware_grpc_gateway::proto::SessionState::Failed
    );
    assert!(up.last_error.contains("backing off"), "{}", up.last_error);
}

#[tokio::test]
async fn a_rotated_password_file_ends_the_backoff() {
    let dir = std::env::temp_dir().join(format!("vmwgw-login-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "wrong\n").unwrap();
    let env = env_with_password("wrong", Some(file.clone())).await;
    let name = env.add(running_for(100));
    let err = env.tasks().get_task(get_req(&name)).await.unwrap_err();
    assert_eq!(reason(&err), "UPSTREAM_LOGIN_FAILED");
    let err = env.tasks().get_task(get_req(&name)).await.unwrap_err();
    assert_eq!(reason(&err), "LOGIN_BACKOFF");
    // The operator fixes the secret: the next call logs in without waiting out the window.
    std::fs::write(&file, format!("{}\n", env.sim.vcenter.password())).unwrap();
    env.tasks()
        .get_task(get_req(&name))
        .await
        .expect("the rotated secret logs in");
    assert_eq!(env.sim.vcenter.requests(LOGIN), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_abort_the_login_others_wait_for() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    env.sim
        .vcenter
        .inject(LOGIN, Fault::Delay(Duration::from_millis(400)));
    let mut hasty = tonic::Request::new(get_req(&name));
    hasty.set_timeout(Duration::from_millis(100));
    let err = env.tasks().get_task(hasty).await.unwrap_err();
    // The gateway answers at the caller's deadline while the login goes on (on a loaded
    // machine the client's own timer may fire first, without the gateway's details).
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    if let Some(info) = err.get_details_error_info() {
        assert_eq!(info.reason, "UPSTREAM_TIMEOUT");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.tasks()
        .get_task(get_req(&name))
        .await
        .expect("the login that went on serves the next call");
    assert_eq!(env.sim.vcenter.requests(LOGIN), 1, "one login, not aborted");
    assert_eq!(env.sim.vcenter.logins(), 1);
}
