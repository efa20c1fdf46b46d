//! Caller authentication: bearer tokens checked against the tokens file's hashes (reloaded
//! when it changes), scopes per method, and grants that keep a caller to its upstreams.

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use tonic::{Code, Request, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vmware_grpc_gateway::{
    auth::hash_line,
    config::AuthConfig,
    proto::{
        CancelTaskRequest, CreateRunspaceRequest, DeleteRunspaceRequest, GetUpstreamRequest,
        ListTasksRequest, ListUpstreamsRequest, Runspace, TaskFilter, WaitTaskRequest,
        WatchTaskRequest,
    },
    simulator::{DEMO_CANCELABLE_TASK, DEMO_RUNNING_TASK, DEMO_SERVICES},
};

const READER: &str = "reader-token-7c1f";
const CANCELLER: &str = "canceller-token-2b9e";
const WRITER: &str = "writer-token-5d3a";
const VC1_ONLY: &str = "vc1-only-token-8e4c";

fn entry(name: &str, token: &str, scopes: &str, upstreams: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\n{}\nscopes = {scopes}\nupstreams = {upstreams}\n\n",
        hash_line(token)
    )
}

fn tokens_file(text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "vmwgw-tokens-{}-{}.toml",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn standard_tokens() -> String {
    [
        entry("reader", READER, r#"["read"]"#, r#"["*"]"#),
        entry("canceller", CANCELLER, r#"["cancel"]"#, r#"["*"]"#),
        entry("writer", WRITER, r#"["runspaces.write"]"#, r#"["*"]"#),
        entry(
            "vc1-reader",
            VC1_ONLY,
            r#"["read", "cancel"]"#,
            r#"["vc1"]"#,
        ),
    ]
    .concat()
}

async fn start(tokens: &str) -> (Env, PathBuf) {
    let path = tokens_file(tokens);
    let file = path.clone();
    let env = Env::start_full(seeded(), move |cfg, sim| {
        cfg.upstreams = vmware_grpc_gateway::demo::upstreams(sim, None);
        let mut auth = AuthConfig::new(file);
        auth.reload_interval = Duration::from_millis(50);
        cfg.auth = Some(auth);
    })
    .await;
    (env, path)
}

fn with<T>(token: Option<&str>, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn vc1_task(id: &str) -> String {
    format!("upstreams/vc1/tasks/{id}")
}

/// The simulator with the demo's tasks (the tests name them).
fn seeded() -> vmware_grpc_gateway::simulator::SimOptions {
    vmware_grpc_gateway::simulator::SimOptions {
        seed_demo_tasks: true,
        ..sim_options()
    }
}

fn scope_missing(err: &Status, scope: &str) {
    let info = assert_error(err, Code::PermissionDenied, "SCOPE_MISSING");
    assert_eq!(info.metadata["scope"], scope, "{err:?}");
}

#[tokio::test]
async fn calls_need_a_known_token_and_a_wrong_one_says_no_more_than_a_missing_one() {
    let (env, _) = start(&standard_tokens()).await;
    let name = vc1_task(DEMO_RUNNING_TASK);
    let missing = env
        .tasks()
        .get_task(with(None, get_req(&name)))
        .await
        .unwrap_err();
    assert_error(&missing, Code::Unauthenticated, "UNAUTHENTICATED");
    for wrong in [
        "reader-token-7c1",
        "reader-token-7c1fx",
        "READER-TOKEN-7C1F",
        "x",
    ] {
        let err = env
            .tasks()
            .get_task(with(Some(wrong), get_req(&name)))
            .await
            .unwrap_err();
        assert_error(&err, Code::Unauthenticated, "UNAUTHENTICATED");
        assert_eq!(err.message(), missing.message(), "no hint what was wrong");
    }
    let ok = env
        .tasks()
        .get_task(with(Some(READER), get_req(&name)))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    // Health and reflection stay open to probes.
    let health = HealthClient::new(env.channel.clone())
        .check(HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "{health:?}");
}

#[tokio::test]
async fn each_method_needs_its_scope() {
    let (env, _) = start(&standard_tokens()).await;
    let running = vc1_task(DEMO_RUNNING_TASK);

    // read: Get, List, Watch, Wait, UpstreamService.
    for token in [CANCELLER, WRITER] {
        let t = Some(token);
        let mut tasks = env.tasks();
        let mut ups =
            vmware_grpc_gateway::proto::upstream_service_client::UpstreamServiceClient::new(
                env.channel.clone(),
            );
        let errs = [
            tasks
                .get_task(with(t, get_req(&running)))
                .await
                .unwrap_err(),
            tasks
                .list_tasks(with(t, ListTasksRequest::default()))
                .await
                .unwrap_err(),
            tasks
                .watch_task(with(t, WatchTaskRequest::default()))
                .await
                .unwrap_err(),
            tasks
                .wait_task(with(t, WaitTaskRequest::default()))
                .await
                .unwrap_err(),
            ups.list_upstreams(with(t, ListUpstreamsRequest::default()))
                .await
                .unwrap_err(),
            ups.get_upstream(with(t, GetUpstreamRequest::default()))
                .await
                .unwrap_err(),
        ];
        for err in &errs {
            scope_missing(err, "read");
        }
    }
    assert!(
        env.tasks()
            .wait_task(with(
                Some(READER),
                WaitTaskRequest {
                    name: running.clone(),
                    timeout: Some(prost_types::Duration::default()),
                    ..Default::default()
                }
            ))
            .await
            .is_ok()
    );

    // cancel: CancelTask.
    let cancel = |t| {
        with(
            Some(t),
            CancelTaskRequest {
                name: vc1_task(DEMO_CANCELABLE_TASK),
            },
        )
    };
    for token in [READER, WRITER] {
        let err = env.tasks().cancel_task(cancel(token)).await.unwrap_err();
        scope_missing(&err, "cancel");
    }
    assert!(env.tasks().cancel_task(cancel(CANCELLER)).await.is_ok());

    // runspaces.write: CreateRunspace, DeleteRunspace.
    let create = |t| {
        with(
            Some(t),
            CreateRunspaceRequest {
                parent: "upstreams/srs1".into(),
                runspace: Some(Runspace::default()),
                request_id: String::new(),
            },
        )
    };
    for token in [READER, CANCELLER] {
        let err = env
            .runspaces()
            .create_runspace(create(token))
            .await
            .unwrap_err();
        scope_missing(&err, "runspaces.write");
        let del = with(Some(token), DeleteRunspaceRequest::default());
        let err = env.runspaces().delete_runspace(del).await.unwrap_err();
        scope_missing(&err, "runspaces.write");
    }
    let made = env
        .runspaces()
        .create_runspace(create(WRITER))
        .await
        .unwrap()
        .into_inner();
    let del = with(Some(WRITER), DeleteRunspaceRequest { name: made.name });
    assert!(env.runspaces().delete_runspace(del).await.is_ok());
}

#[tokio::test]
async fn a_grant_keeps_the_caller_to_its_upstreams_and_reveals_no_others() {
    let (env, _) = start(&standard_tokens()).await;
    let t = Some(VC1_ONLY);
    assert!(
        env.tasks()
            .get_task(with(t, get_req(&vc1_task(DEMO_RUNNING_TASK))))
            .await
            .is_ok()
    );
    // Another upstream, configured or not, is refused the same way.
    for other in ["upstreams/vcd1/tasks/x", "upstreams/vc9/tasks/x"] {
        let err = env
            .tasks()
            .get_task(with(t, get_req(other)))
            .await
            .unwrap_err();
        let upstream = other.rsplitn(3, '/').nth(2).unwrap();
        scope_missing(&err, upstream);
    }
    let listed = vmware_grpc_gateway::proto::upstream_service_client::UpstreamServiceClient::new(
        env.channel.clone(),
    )
    .list_upstreams(with(t, ListUpstreamsRequest::default()))
    .await
    .unwrap()
    .into_inner();
    let names: Vec<_> = listed.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["upstreams/vc1"]);
    // A merged list covers the caller's upstreams only.
    let merged = env
        .tasks()
        .list_tasks(with(
            t,
            ListTasksRequest {
                parent: "upstreams/-".into(),
                filter: Some(TaskFilter {
                    services: DEMO_SERVICES.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!merged.tasks.is_empty());
    assert!(merged.tasks.iter().all(|t| t.upstream == "upstreams/vc1"));
}

#[tokio::test]
async fn a_changed_tokens_file_takes_effect_without_a_restart() {
    let (env, path) = start(&entry("reader", READER, r#"["read"]"#, r#"["*"]"#)).await;
    let name = vc1_task(DEMO_RUNNING_TASK);
    let get = |token: &'static str| {
        let mut c = env.tasks();
        let req = with(Some(token), get_req(&name));
        async move { c.get_task(req).await }
    };
    assert!(get(READER).await.is_ok());
    assert_eq!(get(WRITER).await.unwrap_err().code(), Code::Unauthenticated);
    // Rotate: the writer's token in, the reader's out.
    std::fs::write(&path, entry("rotated", WRITER, r#"["read"]"#, r#"["*"]"#)).unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        if get(WRITER).await.is_ok() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated, "the new token is accepted without a restart");
    assert_eq!(get(READER).await.unwrap_err().code(), Code::Unauthenticated);
    // A file that no longer parses keeps the last good callers.
    std::fs::write(&path, "[[tokens]]\nname = 1\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get(WRITER).await.is_ok());
    let _ = std::fs::remove_file(path);
}
