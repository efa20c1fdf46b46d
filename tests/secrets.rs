//! Secrets stay secret: the service accounts' passwords, the Cloud Director API token, the
//! callers' bearer tokens and every session id or API key the upstreams issued never appear
//! in anything the gateway writes or returns: log lines at every level, error messages and
//! details, `/metrics`, `check-config`'s output and `Debug` output. Every path is driven
//! with recognisable secrets, then everything is searched.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use tonic::{Request, Status};
use vmware_grpc_gateway::{
    auth::hash_line,
    config::{AuthConfig, AuthMode, CloudDirectorConfig, Secret},
    proto::{
        CancelTaskRequest, CreateRunspaceRequest, ListTasksRequest, ListUpstreamsRequest, Runspace,
        WaitTaskRequest, WatchTaskRequest, upstream_service_client::UpstreamServiceClient,
    },
    simulator::{
        DEMO_CANCELABLE_TASK, DEMO_RUNNING_TASK, Fault, SimHandle, SimOptions,
        VCD_DEMO_RUNNING_TASK, vcenter,
    },
};

const PASSWORD: &str = "Pa55-SECRET-upstream-9d41";
const VCD_TOKEN: &str = "VCDTOKEN-SECRET-77aa0b1c2d3e4f5061728394a5b6c7d8";
const CALLER: &str = "CALLER-SECRET-token-5e2f";
const WRONG_CALLER: &str = "WRONG-CALLER-SECRET-0c3a";
const WRONG_PASSWORD: &str = "WRONG-SECRET-password-31b7";
const IN_A_LOGIN_ANSWER: &str = "LEAKED-SECRET-session-4a9c";
const PT_WRONG_PASSWORD: &str = "PT-WRONG-SECRET-pw-8e1f";
const BOGUS_SESSION: &str = "PT-SECRET-bogus-session-7c1d";
const GARBLED_BASIC: &str = "PT-SECRET-garbled-basic-2b6e";

/// Everything the gateway logs, at every level of its own code.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn with_caller<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn said(out: &mut String, what: &str, r: Result<impl std::fmt::Debug, Status>) {
    out.push_str(&format!("{what}: {r:?}\n"));
}

#[tokio::test]
async fn no_secret_appears_in_logs_errors_metrics_or_printed_configuration() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace,h2=info,hyper=info,hyper_util=info,tower=info,reqwest=info,rustls=info,tonic=info")
        .with_writer(move || writer.clone())
        .init();

    let tokens = std::env::temp_dir().join(format!("vmwgw-secrets-{}.toml", std::process::id()));
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"tester\"\n{}\nscopes = [\"*\"]\nupstreams = [\"*\"]\n",
            hash_line(CALLER)
        ),
    )
    .unwrap();
    let opts = SimOptions {
        password: PASSWORD.into(),
        vcd_api_token: VCD_TOKEN.into(),
        seed_demo_tasks: true,
        ..sim_options()
    };
    let tokens_path = tokens.clone();
    let mut printed = String::new();
    let env = Env::start_full(opts, |cfg, sim| {
        let mut ups: Vec<_> = vmware_grpc_gateway::demo::upstreams(sim, None)
            .into_iter()
            .map(without_read_retries)
            .collect();
        // Cloud Director through its API token rather than the password.
        for u in &mut ups {
            if let Some(vcd) = u.cloud_director_mut() {
                *vcd = CloudDirectorConfig {
                    api_token: Secret::new(VCD_TOKEN),
                    ..vcd.clone()
                };
                u.password = Secret::default();
            }
        }
        // An upstream whose service account has the wrong password.
        let mut wrong = ups[0].clone();
        wrong.name = "vc-wrong".into();
        wrong.password = Secret::new(WRONG_PASSWORD);
        ups.push(wrong);
        // Upstreams that act as the caller: vCenter, and SRS.
        for (from, name) in [(0, "vc-pt"), (3, "srs-pt")] {
            let mut pt = ups[from].clone();
            pt.name = name.into();
            pt.auth = AuthMode::PassThrough;
            pt.password = Secret::default();
            ups.push(pt);
        }
        cfg.upstreams = ups;
        cfg.auth = Some(AuthConfig::new(tokens_path));
        cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        printed = format!("{}\n{:?}\n", cfg.redacted_toml(), cfg);
    })
    .await;

    // Every kind of call, successful and failing.
    let mut answers = String::new();
    let mut tasks = env.tasks();
    let mut ups = UpstreamServiceClient::new(env.channel.clone());
    let mut runspaces = env.runspaces();
    said(
        &mut answers,
        "list upstreams",
        ups.list_upstreams(with_caller(CALLER, ListUpstreamsRequest::default()))
            .await,
    );
    for name in [
        format!("upstreams/vc1/tasks/{DEMO_RUNNING_TASK}"),
        format!("upstreams/vcd1/tasks/{VCD_DEMO_RUNNING_TASK}"),
        "upstreams/vc1/tasks/no-such-task".into(),
        "upstreams/srs1/tasks/x".into(),
        "upstreams/snap1/tasks/no-such-task".into(),
        "upstreams/vc-wrong/tasks/x".into(),
        format!("upstreams/vc1/tasks/{DEMO_RUNNING_TASK}"),
    ] {
        said(
            &mut answers,
            &name,
            tasks.get_task(with_caller(CALLER, get_req(&name))).await,
        );
        said(
            &mut answers,
            "wrong caller",
            tasks
                .get_task(with_caller(WRONG_CALLER, get_req(&name)))
                .await,
        );
    }
    said(
        &mut answers,
        "list",
        tasks
            .list_tasks(with_caller(
                CALLER,
                ListTasksRequest {
                    parent: "upstreams/vcd1".into(),
                    ..Default::default()
                },
            ))
            .await,
    );
    said(
        &mut answers,
        "cancel",
        tasks
            .cancel_task(with_caller(
                CALLER,
                CancelTaskRequest {
                    name: format!("upstreams/vc1/tasks/{DEMO_CANCELABLE_TASK}"),
                },
            ))
            .await,
    );
    // Session ids issued so far; then a re-login, and a login whose answer carries a secret.
    let mut issued: Vec<String> = Vec::new();
    let parts: [&SimHandle; 4] = [
        &env.sim.vcenter,
        &env.sim.snapservice,
        &env.sim.cloud_director,
        &env.sim.script_runtime,
    ];
    for part in parts {
        issued.extend(part.session_ids());
        part.expire_sessions();
    }
    said(
        &mut answers,
        "after expiry",
        tasks
            .get_task(with_caller(
                CALLER,
                get_req(&format!("upstreams/vc1/tasks/{DEMO_RUNNING_TASK}")),
            ))
            .await,
    );
    for part in parts {
        issued.extend(part.session_ids());
    }
    env.sim.vcenter.expire_sessions();
    env.sim.vcenter.inject(vcenter::ROUTE_SESSION_CREATE, Fault::Status {
        status: 500,
        body: format!("{{\"value\": \"{IN_A_LOGIN_ANSWER}\", \"note\": \"vmware-api-session-id: {IN_A_LOGIN_ANSWER}\"}}"),
    });
    said(
        &mut answers,
        "login answer",
        tasks
            .get_task(with_caller(
                CALLER,
                get_req(&format!("upstreams/vc1/tasks/{DEMO_RUNNING_TASK}")),
            ))
            .await,
    );
    // An ordinary error answer that echoes a session id.
    env.sim.vcenter.inject(
        vcenter::ROUTE_TASK_GET,
        Fault::Status {
            status: 500,
            body: format!("<html>session={}; token: {}</html>", issued[0], issued[0]),
        },
    );
    said(
        &mut answers,
        "echoed",
        tasks
            .get_task(with_caller(
                CALLER,
                get_req(&format!("upstreams/vc1/tasks/{DEMO_RUNNING_TASK}")),
            ))
            .await,
    );

    said(
        &mut answers,
        "wait",
        tasks
            .wait_task(with_caller(
                CALLER,
                WaitTaskRequest {
                    name: format!("upstreams/vc1/tasks/{DEMO_RUNNING_TASK}"),
                    timeout: Some(prost_types::Duration::default()),
                    ..Default::default()
                },
            ))
            .await,
    );
    let create = CreateRunspaceRequest {
        parent: "upstreams/srs1".into(),
        runspace: Some(Runspace::default()),
        request_id: "r1".into(),
    };
    said(
        &mut answers,
        "create",
        runspaces.create_runspace(with_caller(CALLER, create)).await,
    );
    let watch = WatchTaskRequest {
        name: format!("upstreams/vc1/tasks/{DEMO_RUNNING_TASK}"),
        ..Default::default()
    };
    if let Ok(s) = tasks.watch_task(with_caller(CALLER, watch)).await {
        let mut s = s.into_inner();
        said(
            &mut answers,
            "watch",
            tokio::time::timeout(Duration::from_secs(2), s.message())
                .await
                .unwrap_or(Ok(None)),
        );
    }
    // Pass-through: the caller's password (right and wrong), its own session (good and
    // bogus), garbled credentials, a watch and a create as the caller.
    let user = env.sim.vcenter.username().to_string();
    let basic = |password: &str| basic(&user, password);
    let own_session = vapi_login(&env.sim.vcenter, "/api/session", &user, PASSWORD)
        .await
        .unwrap();
    let pt_task = format!("upstreams/vc-pt/tasks/{DEMO_RUNNING_TASK}");
    for (what, key, value) in [
        ("pt right", "x-upstream-authorization", basic(PASSWORD)),
        (
            "pt wrong",
            "x-upstream-authorization",
            basic(PT_WRONG_PASSWORD),
        ),
        ("pt session", "x-upstream-session", own_session.clone()),
        ("pt bogus", "x-upstream-session", BOGUS_SESSION.to_string()),
        (
            "pt garbled",
            "x-upstream-authorization",
            format!("Basic {GARBLED_BASIC}"),
        ),
    ] {
        let mut req = with_caller(CALLER, get_req(&pt_task));
        req.metadata_mut().insert(key, value.parse().unwrap());
        said(&mut answers, what, tasks.get_task(req).await);
    }
    let mut req = with_caller(
        CALLER,
        WatchTaskRequest {
            name: pt_task.clone(),
            ..Default::default()
        },
    );
    req.metadata_mut()
        .insert("x-upstream-authorization", basic(PASSWORD).parse().unwrap());
    if let Ok(s) = tasks.watch_task(req).await {
        let mut s = s.into_inner();
        said(
            &mut answers,
            "pt watch",
            tokio::time::timeout(Duration::from_secs(2), s.message())
                .await
                .unwrap_or(Ok(None)),
        );
    }
    let srs_user = env.sim.script_runtime.username().to_string();
    let mut req = with_caller(
        CALLER,
        CreateRunspaceRequest {
            parent: "upstreams/srs-pt".into(),
            runspace: Some(Runspace::default()),
            request_id: "r2".into(),
        },
    );
    req.metadata_mut().insert(
        "x-upstream-authorization",
        common::basic(&srs_user, PT_WRONG_PASSWORD).parse().unwrap(),
    );
    said(
        &mut answers,
        "pt create",
        runspaces.create_runspace(req).await,
    );
    for part in parts {
        issued.extend(part.session_ids());
    }
    issued.push(own_session);
    issued.push(basic(PASSWORD));
    issued.push(basic(PT_WRONG_PASSWORD));

    let admin = env.gateway.as_ref().unwrap().admin_addr.unwrap();
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut env = env;
    env.shutdown().await;
    let _ = std::fs::remove_file(tokens);

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(logs.contains("logged in"), "the logs were captured");
    assert!(
        answers.contains("NOT_FOUND")
            && answers.contains("UNAUTHENTICATED")
            && answers.contains("UPSTREAM_UNAUTHENTICATED")
            && answers.contains("pt right: Ok(")
            && answers.contains("pt session: Ok(")
            && answers.contains("pt watch: Ok(Some("),
        "{answers}"
    );
    assert!(
        issued.len() >= 4,
        "sessions of every kind were issued: {}",
        issued.len()
    );
    let mut secrets: Vec<String> = [
        PASSWORD,
        VCD_TOKEN,
        CALLER,
        WRONG_CALLER,
        WRONG_PASSWORD,
        IN_A_LOGIN_ANSWER,
        PT_WRONG_PASSWORD,
        BOGUS_SESSION,
        GARBLED_BASIC,
    ]
    .map(String::from)
    .to_vec();
    secrets.extend(issued);
    for (what, text) in [
        ("logs", &logs),
        ("answers", &answers),
        ("metrics", &metrics),
        ("printed configuration", &printed),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} hold the secret {secret}"
            );
        }
    }
    println!(
        "searched {} bytes of logs, {} of answers, {} of metrics for {} secrets",
        logs.len(),
        answers.len(),
        metrics.len(),
        secrets.len()
    );
}
