//! Every row of the error table that vCenter can produce, through a real client, with the
//! upstream's answer injected at the simulator.

mod common;

use std::time::Duration;

use common::*;
use tonic::Code;
use tonic_types::StatusExt;
use vmware_grpc_gateway::{
    config::{Secret, UpstreamConfig, UpstreamKind},
    simulator::Fault,
};

const GET_ROUTE: &str = "GET /api/cis/tasks/{task}";

fn vapi(error_type: &str, text: &str) -> String {
    serde_json::json!({
        "error_type": error_type,
        "messages": [{"id": "com.vmware.test", "default_message": text, "args": []}]
    })
    .to_string()
}

/// The next task read is answered with `status` and `body`.
fn answer_next_read(env: &Env, status: u16, body: String) {
    env.sim
        .vcenter
        .inject(GET_ROUTE, Fault::Status { status, body });
}

/// A running task, read once (so the session exists); the next read waits `delay`.
async fn task_with_a_slow_next_read(env: &Env, delay: Duration) -> String {
    let name = env.add(running_for(100));
    env.get_task(&name).await.unwrap();
    env.sim.vcenter.inject(GET_ROUTE, Fault::Delay(delay));
    name
}

/// An expected code and reason, with the (HTTP status, vAPI error kind) answers that map to it.
type Outcome = (Code, &'static str, &'static [(u16, &'static str)]);

#[tokio::test]
async fn upstream_error_kinds_map_to_the_documented_codes() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    let rows: &[Outcome] = &[
        (
            Code::InvalidArgument,
            "UPSTREAM_INVALID_ARGUMENT",
            &[
                (400, "INVALID_ARGUMENT"),
                (400, "INVALID_REQUEST"),
                (500, "UNEXPECTED_INPUT"),
            ],
        ),
        (
            Code::Unimplemented,
            "UPSTREAM_UNSUPPORTED",
            &[(400, "UNSUPPORTED")],
        ),
        (
            Code::FailedPrecondition,
            "UPSTREAM_STATE_CONFLICT",
            &[
                (400, "NOT_ALLOWED_IN_CURRENT_STATE"),
                (400, "ALREADY_IN_DESIRED_STATE"),
            ],
        ),
        (
            Code::AlreadyExists,
            "ALREADY_EXISTS",
            &[(400, "ALREADY_EXISTS")],
        ),
        (
            Code::PermissionDenied,
            "UPSTREAM_PERMISSION_DENIED",
            &[(403, "UNAUTHORIZED")],
        ),
        (Code::NotFound, "NOT_FOUND", &[(404, "NOT_FOUND")]),
        (
            Code::Aborted,
            "UPSTREAM_BUSY",
            &[(409, "CONCURRENT_CHANGE"), (400, "RESOURCE_BUSY")],
        ),
        (
            Code::Unavailable,
            "UPSTREAM_UNAVAILABLE",
            &[
                (500, "RESOURCE_INACCESSIBLE"),
                (500, "ERROR"),
                (503, "SERVICE_UNAVAILABLE"),
            ],
        ),
        (
            Code::DeadlineExceeded,
            "UPSTREAM_TIMEOUT",
            &[(504, "TIMED_OUT")],
        ),
    ];
    let answers = rows
        .iter()
        .flat_map(|(code, reason, answers)| answers.iter().map(move |a| (a, code, reason)));
    for ((status, kind), code, reason) in answers {
        answer_next_read(&env, *status, vapi(kind, "injected failure"));
        let (err, info) = expect_error(env.get_task(&name).await, *code, reason);
        assert_eq!(info.metadata["upstreamReason"], *kind);
        assert_eq!(info.metadata["httpStatus"], status.to_string(), "{kind}");
        assert_eq!(info.metadata["upstream"], "vc1");
        assert_eq!(info.metadata["resource"], name);
        let msg = err
            .get_details_localized_message()
            .expect("upstream message travels");
        assert_eq!(msg.message, "injected failure");
        let retry = err.get_details_retry_info();
        assert_eq!(
            retry.is_some(),
            *code == Code::Unavailable,
            "RetryInfo only for UNAVAILABLE here ({kind})"
        );
    }
}

#[tokio::test]
async fn http_status_decides_where_the_body_names_no_error_kind() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    let rows: &[(u16, Code, &str)] = &[
        (429, Code::ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
        (502, Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
        (504, Code::DeadlineExceeded, "UPSTREAM_TIMEOUT"),
        (403, Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED"),
        // Redirects are never followed (they would carry the session elsewhere).
        (302, Code::Internal, "UPSTREAM_BAD_RESPONSE"),
    ];
    for (status, code, reason) in rows {
        answer_next_read(&env, *status, "<html>proxy error</html>".into());
        let (err, info) = expect_error(env.get_task(&name).await, *code, reason);
        assert!(info.metadata["excerpt"].contains("proxy error"));
        assert!(!info.metadata.contains_key("upstreamReason"), "{reason}");
        if *code == Code::ResourceExhausted {
            assert!(
                err.get_details_retry_info().is_some(),
                "429 carries RetryInfo"
            );
        }
    }
}

#[tokio::test]
async fn a_huge_upstream_message_still_reaches_the_client_as_a_clear_error() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    let huge = "x".repeat(20_000);
    let body = serde_json::json!({
        "error_type": "NOT_FOUND",
        "messages": (0..20)
            .map(|_| serde_json::json!({"id": "m", "default_message": huge, "args": []}))
            .collect::<Vec<_>>()
    })
    .to_string();
    answer_next_read(&env, 404, body);
    let err = env.get_task(&name).await.unwrap_err();
    assert_error(&err, Code::NotFound, "NOT_FOUND");
    assert!(err.message().len() <= 1100, "{}", err.message().len());
    let messages = err.get_details_localized_message();
    assert!(messages.is_some_and(|m| m.message.len() <= 520));
}

#[tokio::test]
async fn a_success_body_that_is_not_the_documented_json_is_internal() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    for body in [
        "<html>oops</html>",
        r#"{"status": "RUNNING"}"#,
        "[1,2]",
        r#"{"service":"s","operation":"o","status":"RUNNING","cancelable":true,"start_time":"yesterday"}"#,
    ] {
        answer_next_read(&env, 200, body.into());
        let got = env.get_task(&name).await;
        let (_, info) = expect_error(got, Code::Internal, "UPSTREAM_BAD_RESPONSE");
        assert_eq!(info.metadata["httpStatus"], "200");
        assert!(!info.metadata["excerpt"].is_empty(), "excerpt of {body}");
    }
    // The gateway is fine afterwards.
    env.get_task(&name).await.expect("next call succeeds");
}

#[tokio::test]
async fn a_session_refused_twice_is_a_failed_service_login_after_one_fresh_login() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    env.get_task(&name).await.unwrap();
    for _ in 0..2 {
        answer_next_read(&env, 401, vapi("UNAUTHENTICATED", "session expired"));
    }
    let got = env.get_task(&name).await;
    // The operator's credentials, not the caller's: UNAVAILABLE, retry later.
    let (err, info) = expect_error(got, Code::Unavailable, "UPSTREAM_LOGIN_FAILED");
    assert_eq!(info.metadata["upstreamReason"], "UNAUTHENTICATED");
    assert!(err.get_details_retry_info().is_some());
    let logins = env.sim.vcenter.logins();
    assert_eq!(logins, 2, "exactly one fresh login, no loop");
}

#[tokio::test]
async fn a_slow_upstream_is_deadline_exceeded_at_the_request_timeout() {
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.upstreams[0].request_timeout = Duration::from_millis(300);
    })
    .await;
    let name = task_with_a_slow_next_read(&env, Duration::from_secs(3)).await;
    let got = env.get_task(&name).await;
    expect_error(got, Code::DeadlineExceeded, "UPSTREAM_TIMEOUT");
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_upstream_request() {
    let env = Env::start().await;
    let name = task_with_a_slow_next_read(&env, Duration::from_secs(5)).await;
    let mut req = tonic::Request::new(get_req(&name));
    req.set_timeout(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let got = env.tasks().get_task(req).await;
    expect_error(got, Code::DeadlineExceeded, "UPSTREAM_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up at the deadline, not after the upstream"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_unavailable_with_retry_info() {
    let env = Env::start_with(sim_options(), |cfg| {
        // A port nothing listens on: bind one, then drop it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        cfg.upstreams.push(UpstreamConfig::new(
            "vc2",
            UpstreamKind::Vsphere,
            &format!("http://127.0.0.1:{port}"),
            "u",
            "p",
        ));
    })
    .await;
    let got = env.get_task("upstreams/vc2/tasks/t-1").await;
    let (err, info) = expect_error(got, Code::Unavailable, "UPSTREAM_UNREACHABLE");
    assert_eq!(info.metadata["upstream"], "vc2");
    assert!(err.get_details_retry_info().is_some());
    let up = env.get_upstream("upstreams/vc2").await.unwrap();
    assert!(!up.reachable);
    assert!(up.last_error.contains("unreachable"), "{}", up.last_error);
}

#[tokio::test]
async fn tls_upstreams_need_a_trusted_certificate_or_the_insecure_switch() {
    let opts = vmware_grpc_gateway::simulator::SimOptions {
        tls: true,
        ..sim_options()
    };
    let dir = std::env::temp_dir().join(format!("vmwgw-test-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let env = Env::start_with(opts, |cfg| {
        let trusted = cfg.upstreams[0].clone();
        let mut untrusted = trusted.clone();
        untrusted.name = "vc-untrusted".into();
        let mut insecure = trusted.clone();
        insecure.name = "vc-insecure".into();
        insecure.insecure = true;
        cfg.upstreams = vec![untrusted, insecure];
        cfg.upstreams[0].password = Secret::new(trusted.password.expose());
    })
    .await;
    assert!(env.sim.vcenter.url().starts_with("https://"));
    std::fs::write(&ca, env.sim.vcenter.ca_pem().unwrap()).unwrap();
    let name_for = |u: &str, id: &str| format!("upstreams/{u}/tasks/{id}");
    let id = env.sim.vcenter.tasks().add(running_for(100));
    let untrusted = env.get_task(&name_for("vc-untrusted", &id)).await;
    expect_error(untrusted, Code::Unavailable, "UPSTREAM_UNREACHABLE");
    env.get_task(&name_for("vc-insecure", &id))
        .await
        .expect("insecure accepts the self-signed cert");

    // And with ca_file, a second gateway trusts it properly.
    let mut cfg = config_for(&env.sim);
    cfg.upstreams[0].ca_file = Some(ca.clone());
    let gw = vmware_grpc_gateway::server::Running::start(cfg)
        .await
        .unwrap();
    let mut c2 =
        vmware_grpc_gateway::proto::task_service_client::TaskServiceClient::connect(gw.url())
            .await
            .unwrap();
    c2.get_task(get_req(&task_name(&id)))
        .await
        .expect("ca_file makes the certificate trusted");
    gw.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
