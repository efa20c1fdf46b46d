//! Pass-through: the gateway acting as the caller's own VMware user (`auth = "pass_through"`
//! or `"either"` per upstream), with the simulator's second users, who see other tasks:
//! vCenter's read-only viewer, Cloud Director's `globex` org and SRS's second user.

mod common;

use std::time::Duration;

use common::*;
use tonic::{Code, Request, Status, Streaming};
use vmware_grpc_gateway::{
    config::{AuthMode, Config, UpstreamConfig},
    proto::{
        EventType, ListRunspacesRequest, ListTasksRequest, TaskEvent, TaskFilter, WatchTaskRequest,
    },
    simulator::{
        Fault, SRS_USER2, SRS_USER2_PASSWORD, SimOptions, Simulator, TaskSpec,
        VAPI_VIEWER_PASSWORD, VAPI_VIEWER_PRINCIPAL, VAPI_VIEWER_USER, VCD_GLOBEX_ORG,
        VCD_GLOBEX_PASSWORD, VCD_GLOBEX_TASK, VCD_GLOBEX_USER, vcenter::ROUTE_TASK_GET,
    },
};

/// `msg` sent as `user`.
fn as_user<T>(user: &str, password: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "x-upstream-authorization",
        basic(user, password).parse().unwrap(),
    );
    r
}

/// `msg` sent with an upstream session or token of the caller's own.
fn with_session<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-upstream-session", token.parse().unwrap());
    r
}

/// Every simulated upstream, all in `mode`.
async fn start(mode: AuthMode, tweak: impl FnOnce(&mut Config)) -> Env {
    Env::start_full(sim_options(), |cfg, sim| {
        cfg.upstreams = vmware_grpc_gateway::demo::upstreams(sim, None)
            .into_iter()
            .map(|u| UpstreamConfig {
                auth: mode,
                ..without_read_retries(u)
            })
            .collect();
        tweak(cfg);
    })
    .await
}

/// A running vCenter task owned by `user`.
fn owned_by(user: &str) -> TaskSpec {
    TaskSpec {
        user: Some(user.into()),
        ..running_for(600)
    }
}

fn admin(sim: &Simulator) -> (String, String) {
    (
        sim.vcenter.username().to_string(),
        sim.vcenter.password().to_string(),
    )
}

async fn get_as(env: &Env, user: &str, password: &str, name: &str) -> Result<String, Status> {
    env.tasks()
        .get_task(as_user(user, password, get_req(name)))
        .await
        .map(|r| r.into_inner().name)
}

/// The sorted names a ListTasks answers.
async fn list_names(env: &Env, req: Request<ListTasksRequest>) -> Vec<String> {
    let mut names: Vec<String> = env
        .tasks()
        .list_tasks(req)
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    names
}

fn by_ids(names: &[&String]) -> ListTasksRequest {
    ListTasksRequest {
        parent: "upstreams/vc1".into(),
        filter: Some(TaskFilter {
            task_ids: names
                .iter()
                .map(|n| n.rsplit('/').next().unwrap().to_string())
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_pass_through_upstream_refuses_a_call_without_the_callers_identity() {
    let env = start(AuthMode::PassThrough, |_| {}).await;
    let name = env.add(running_for(60));
    let err = env.get_task(&name).await.unwrap_err();
    let info = assert_error(&err, Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED");
    assert_eq!(info.metadata["upstream"], "vc1");
    assert!(
        err.message().contains("x-upstream-authorization"),
        "{err:?}"
    );
    // A watch is refused the same way, before it joins a poller.
    let err = watch_as(&env, None, watch_req(&name)).await.unwrap_err();
    assert_error(&err, Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED");
    // Nothing was sent: not even a login.
    assert_eq!(env.sim.vcenter.logins(), 0);

    // Malformed credentials say so, without echoing them.
    let mut req = Request::new(get_req(&name));
    req.metadata_mut().insert(
        "x-upstream-authorization",
        "Bearer SECRET-not-basic".parse().unwrap(),
    );
    let err = env.tasks().get_task(req).await.unwrap_err();
    assert_error(&err, Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED");
    assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
}

#[tokio::test]
async fn two_vcenter_users_see_different_tasks() {
    let env = start(AuthMode::PassThrough, |_| {}).await;
    let (user, password) = admin(&env.sim);
    let admins = env.add(owned_by(&user));
    let viewers = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));

    // The administrator reads both; the viewer only its own: the other is NOT_FOUND, as
    // the upstream answers it.
    assert_eq!(
        get_as(&env, &user, &password, &admins).await.unwrap(),
        admins
    );
    assert_eq!(
        get_as(&env, &user, &password, &viewers).await.unwrap(),
        viewers
    );
    let v = (VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD);
    assert_eq!(get_as(&env, v.0, v.1, &viewers).await.unwrap(), viewers);
    let err = get_as(&env, v.0, v.1, &admins).await.unwrap_err();
    let info = assert_error(&err, Code::NotFound, "NOT_FOUND");
    assert_eq!(info.metadata["httpStatus"], "404");

    // Lists too.
    let ids = by_ids(&[&admins, &viewers]);
    let list = |u: &str, p: &str| list_names(&env, as_user(u, p, ids.clone()));
    let mut both = vec![admins.clone(), viewers.clone()];
    both.sort();
    assert_eq!(list(&user, &password).await, both);
    assert_eq!(list(v.0, v.1).await, vec![viewers.clone()]);

    // The viewer may not cancel: the upstream's 403 comes back as it is.
    let cancel = vmware_grpc_gateway::proto::CancelTaskRequest {
        name: viewers.clone(),
    };
    let err = env
        .tasks()
        .cancel_task(as_user(v.0, v.1, cancel))
        .await
        .unwrap_err();
    assert_error(&err, Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED");
}

#[tokio::test]
async fn a_callers_session_is_logged_in_once_and_reused() {
    let env = start(AuthMode::PassThrough, |_| {}).await;
    let name = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));
    for _ in 0..3 {
        get_as(&env, VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD, &name)
            .await
            .unwrap();
    }
    assert_eq!(env.sim.vcenter.logins(), 1);
    assert_eq!(env.sim.vcenter.sessions_of(VAPI_VIEWER_USER), 1);

    // An expired session is logged in again once, as the service account's is.
    env.sim.vcenter.expire_sessions();
    get_as(&env, VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD, &name)
        .await
        .unwrap();
    assert_eq!(env.sim.vcenter.logins(), 2);
}

#[tokio::test]
async fn a_wrong_password_is_the_callers_to_fix_and_starts_no_backoff() {
    let env = start(AuthMode::PassThrough, |_| {}).await;
    let name = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));
    let err = get_as(&env, VAPI_VIEWER_USER, "wrong", &name)
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED");
    // The right password works at once: no LOGIN_BACKOFF for a caller's mistake, and the
    // upstream's own state does not show it.
    get_as(&env, VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD, &name)
        .await
        .unwrap();
    let up = env.get_upstream("upstreams/vc1").await.unwrap();
    assert_eq!(up.last_error, "", "{up:?}");
}

#[tokio::test]
async fn a_callers_own_session_is_used_as_is_and_never_logged_out() {
    let mut env = start(AuthMode::PassThrough, |_| {}).await;
    let name = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));
    let viewer = vapi_login(
        &env.sim.vcenter,
        "/api/session",
        VAPI_VIEWER_USER,
        VAPI_VIEWER_PASSWORD,
    )
    .await
    .unwrap();
    let logins = env.sim.vcenter.logins();
    let task = env
        .tasks()
        .get_task(with_session(&viewer, get_req(&name)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.name, name);
    assert_eq!(
        env.sim.vcenter.logins(),
        logins,
        "no login of the gateway's"
    );

    // A session the upstream does not know is the caller's to renew: no login is tried.
    let err = env
        .tasks()
        .get_task(with_session("not-a-session", get_req(&name)))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED");
    assert_eq!(env.sim.vcenter.logins(), logins);

    // Shutting down logs out what the gateway made, never what the caller brought.
    env.shutdown().await;
    assert_eq!(env.sim.vcenter.sessions_of(VAPI_VIEWER_USER), 1);
}

#[tokio::test]
async fn callers_sessions_are_bounded_and_logged_out_when_evicted() {
    let env = start(AuthMode::PassThrough, |cfg| {
        cfg.limits.max_caller_sessions = 1;
    })
    .await;
    let (user, password) = admin(&env.sim);
    let name = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));
    get_as(&env, VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD, &name)
        .await
        .unwrap();
    assert_eq!(env.sim.vcenter.sessions_of(VAPI_VIEWER_USER), 1);
    // A second identity takes the only place: the viewer's session is logged out.
    get_as(&env, &user, &password, &name).await.unwrap();
    eventually(|| env.sim.vcenter.sessions_of(VAPI_VIEWER_USER) == 0).await;
    assert_eq!(env.sim.vcenter.sessions_of(&user), 1);
}

#[tokio::test]
async fn an_idle_callers_session_is_logged_out() {
    let env = start(AuthMode::PassThrough, |cfg| {
        cfg.limits.caller_session_idle = Duration::from_millis(200);
    })
    .await;
    let name = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));
    get_as(&env, VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD, &name)
        .await
        .unwrap();
    assert_eq!(env.sim.vcenter.sessions_of(VAPI_VIEWER_USER), 1);
    eventually(|| env.sim.vcenter.sessions_of(VAPI_VIEWER_USER) == 0).await;
}

#[tokio::test]
async fn two_cloud_director_orgs_see_their_own_tasks() {
    let env = Env::start_full(
        SimOptions {
            seed_demo_tasks: true,
            ..sim_options()
        },
        |cfg, sim| {
            cfg.upstreams = vmware_grpc_gateway::demo::upstreams(sim, None)
                .into_iter()
                .map(|u| UpstreamConfig {
                    auth: AuthMode::PassThrough,
                    ..u
                })
                .collect();
        },
    )
    .await;
    let acme = (
        format!(
            "{}@{}",
            env.sim.cloud_director.username(),
            env.sim.cloud_director.org()
        ),
        env.sim.cloud_director.password().to_string(),
    );
    let globex_task = format!("upstreams/vcd1/tasks/{VCD_GLOBEX_TASK}");
    let acme_task = format!(
        "upstreams/vcd1/tasks/{}",
        vmware_grpc_gateway::simulator::VCD_DEMO_RUNNING_TASK
    );
    let globex_user = format!("{VCD_GLOBEX_USER}@{VCD_GLOBEX_ORG}");
    let globex = (globex_user.as_str(), VCD_GLOBEX_PASSWORD);
    assert_eq!(
        get_as(&env, globex.0, globex.1, &globex_task)
            .await
            .unwrap(),
        globex_task
    );
    assert_eq!(
        get_as(&env, &acme.0, &acme.1, &acme_task).await.unwrap(),
        acme_task
    );
    // Another org's task is the upstream's 403.
    let err = get_as(&env, globex.0, globex.1, &acme_task)
        .await
        .unwrap_err();
    let info = assert_error(&err, Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED");
    assert_eq!(
        info.metadata["upstreamReason"],
        "ACCESS_TO_RESOURCE_IS_FORBIDDEN"
    );
    let err = get_as(&env, &acme.0, &acme.1, &globex_task)
        .await
        .unwrap_err();
    assert_error(&err, Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED");

    // Each org's list holds only its tasks; the merged list goes as the same caller.
    for (user, password, mine, theirs) in [
        (globex.0, globex.1, &globex_task, &acme_task),
        (acme.0.as_str(), acme.1.as_str(), &acme_task, &globex_task),
    ] {
        let req = ListTasksRequest {
            parent: "upstreams/vcd1".into(),
            page_size: 1000,
            ..Default::default()
        };
        let names: Vec<String> = env
            .tasks()
            .list_tasks(as_user(user, password, req))
            .await
            .unwrap()
            .into_inner()
            .tasks
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(names.contains(mine), "{user}: {names:?}");
        assert!(!names.contains(theirs), "{user}: {names:?}");
    }

    // A Cloud Director bearer token of the caller's own works as is.
    let jwt = vcd_login(&env.sim.cloud_director, globex.0, globex.1)
        .await
        .unwrap();
    let task = env
        .tasks()
        .get_task(with_session(&jwt, get_req(&globex_task)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.name, globex_task);
}

#[tokio::test]
async fn script_runtime_keys_are_per_user() {
    let env = start(AuthMode::PassThrough, |_| {}).await;
    let runner = (SRS_USER2, SRS_USER2_PASSWORD);
    let (user, password) = (
        env.sim.script_runtime.username().to_string(),
        env.sim.script_runtime.password().to_string(),
    );
    let create = vmware_grpc_gateway::proto::CreateRunspaceRequest {
        parent: "upstreams/srs1".into(),
        runspace: Some(vmware_grpc_gateway::proto::Runspace {
            display_name: "runner's".into(),
            ..Default::default()
        }),
        request_id: "one".into(),
    };
    let made = env
        .runspaces()
        .create_runspace(as_user(runner.0, runner.1, create.clone()))
        .await
        .unwrap()
        .into_inner();
    // The same request_id from another identity is another create, not the runner's runspace.
    let admins = env
        .runspaces()
        .create_runspace(as_user(&user, &password, create))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(made.name, admins.name);
    let get = |n: &str| vmware_grpc_gateway::proto::GetRunspaceRequest { name: n.into() };
    env.runspaces()
        .get_runspace(as_user(runner.0, runner.1, get(&made.name)))
        .await
        .unwrap();
    let err = env
        .runspaces()
        .get_runspace(as_user(&user, &password, get(&made.name)))
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "NOT_FOUND");
    let list = ListRunspacesRequest {
        parent: "upstreams/srs1".into(),
        ..Default::default()
    };
    let listed = env
        .runspaces()
        .list_runspaces(as_user(runner.0, runner.1, list))
        .await
        .unwrap()
        .into_inner()
        .runspaces;
    assert_eq!(
        listed.iter().map(|r| &r.name).collect::<Vec<_>>(),
        vec![&made.name]
    );
}

async fn watch_as(
    env: &Env,
    identity: Option<(&str, &str)>,
    req: WatchTaskRequest,
) -> Result<Streaming<TaskEvent>, Status> {
    let req = match identity {
        Some((u, p)) => as_user(u, p, req),
        None => Request::new(req),
    };
    env.tasks().watch_task(req).await.map(|r| r.into_inner())
}

fn watch_req(name: &str) -> WatchTaskRequest {
    WatchTaskRequest {
        name: name.into(),
        // Slow polling: every read in these tests is a first read (or a check).
        min_poll_interval: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn snapshot(s: &mut Streaming<TaskEvent>) -> TaskEvent {
    let e = s.message().await.unwrap().expect("an event");
    assert_eq!(e.r#type(), EventType::Snapshot);
    e
}

#[tokio::test]
async fn pass_through_watchers_share_a_poller_only_with_their_own_identity() {
    let env = start(AuthMode::PassThrough, |_| {}).await;
    let (user, password) = admin(&env.sim);
    let name = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));
    let a = Some((user.as_str(), password.as_str()));
    let v = Some((VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD));
    let mut first = watch_as(&env, a, watch_req(&name)).await.unwrap();
    let mut second = watch_as(&env, a, watch_req(&name)).await.unwrap();
    let mut viewer = watch_as(&env, v, watch_req(&name)).await.unwrap();
    let (first, second, viewer) = (
        snapshot(&mut first).await,
        snapshot(&mut second).await,
        snapshot(&mut viewer).await,
    );
    // One read served both administrators; the viewer's poller read on its own.
    assert_eq!(first.observe_time, second.observe_time);
    assert_ne!(first.observe_time, viewer.observe_time);
    assert_eq!(env.sim.vcenter.requests(ROUTE_TASK_GET), 2);
}

#[tokio::test]
async fn a_pass_through_watcher_is_refused_a_task_its_user_cannot_read() {
    let env = start(AuthMode::PassThrough, |_| {}).await;
    let (user, _) = admin(&env.sim);
    let name = env.add(owned_by(&user));
    let v = Some((VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD));
    let err = watch_as(&env, v, watch_req(&name)).await.unwrap_err();
    assert_error(&err, Code::NotFound, "NOT_FOUND");
    // A wait is refused the same way.
    let wait = vmware_grpc_gateway::proto::WaitTaskRequest {
        name: name.clone(),
        ..Default::default()
    };
    let err = env
        .tasks()
        .wait_task(as_user(VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD, wait))
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "NOT_FOUND");
}

#[tokio::test]
async fn either_checks_the_callers_own_read_then_shares_the_service_accounts_poller() {
    let env = start(AuthMode::Either, |_| {}).await;
    let (user, _) = admin(&env.sim);
    let admins = env.add(owned_by(&user));
    let viewers = env.add(owned_by(VAPI_VIEWER_PRINCIPAL));
    let v = Some((VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD));

    // Nobody watches what they may not read.
    let err = watch_as(&env, v, watch_req(&admins)).await.unwrap_err();
    assert_error(&err, Code::NotFound, "NOT_FOUND");

    // A caller without an identity is the service account; the viewer reads its task
    // itself (the check), then joins the same poller.
    let mut service = watch_as(&env, None, watch_req(&viewers)).await.unwrap();
    let service = snapshot(&mut service).await;
    let gets = env.sim.vcenter.requests(ROUTE_TASK_GET);
    let req = WatchTaskRequest {
        heartbeat_interval: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..watch_req(&viewers)
    };
    let mut viewer = watch_as(&env, v, req).await.unwrap();
    let seen = snapshot(&mut viewer).await;
    assert_eq!(seen.observe_time, service.observe_time);
    assert_eq!(
        env.sim.vcenter.requests(ROUTE_TASK_GET),
        gets + 1,
        "the check"
    );

    // The viewer's session changes (it expired, and the viewer's next call logged in
    // again): the check is redone, and now the upstream refuses it.
    env.sim.vcenter.expire_sessions();
    get_as(&env, VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD, &viewers)
        .await
        .unwrap();
    let forbidden = r#"{"error_type":"UNAUTHORIZED","messages":[{"id":"x","default_message":"not allowed","args":[]}]}"#;
    env.sim.vcenter.inject(
        ROUTE_TASK_GET,
        Fault::Status {
            status: 403,
            body: forbidden.into(),
        },
    );
    let end = loop {
        match viewer.message().await {
            Ok(Some(e)) => assert_eq!(e.r#type(), EventType::Heartbeat),
            Ok(None) => panic!("the watch ended without the refusal"),
            Err(st) => break st,
        }
    };
    assert_error(&end, Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED");
}

#[tokio::test]
async fn either_without_an_identity_is_the_service_account() {
    let env = start(AuthMode::Either, |_| {}).await;
    let (user, _) = admin(&env.sim);
    let name = env.add(owned_by(&user));
    env.get_task(&name).await.unwrap();
    let v = (VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD);
    let err = get_as(&env, v.0, v.1, &name).await.unwrap_err();
    assert_error(&err, Code::NotFound, "NOT_FOUND");
}

/// Waits up to 5 s for `done`.
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached within 5 s");
}
