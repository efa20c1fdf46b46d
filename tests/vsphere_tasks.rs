//! TaskService end to end against the simulated vCenter: get, list with paging, cancel,
//! views, sessions.

mod common;

use std::{collections::HashSet, time::Duration};

use common::*;
use tonic::Code;
use vmware_grpc_gateway::{
    proto::{GetTaskRequest, ListTasksRequest, TaskFilter, TaskState, TaskView},
    simulator::{Phase, Step, TaskSpec},
};

fn list(filter: TaskFilter, page_size: i32, page_token: &str) -> ListTasksRequest {
    ListTasksRequest {
        parent: "upstreams/vc1".into(),
        filter: Some(filter),
        page_size,
        page_token: page_token.into(),
        view: 0,
    }
}

fn services(s: &[&str]) -> TaskFilter {
    TaskFilter {
        services: s.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn get_task_shows_progress_rising_between_calls() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    let first = env.get_task(&name).await.unwrap();
    assert_eq!(first.state(), TaskState::Running);
    assert_eq!(first.name, name);
    assert!(first.start_time.is_some() && first.end_time.is_none());
    env.clock().advance(Duration::from_secs(30));
    let second = env.get_task(&name).await.unwrap();
    let (p1, p2) = (
        first.progress.unwrap().percent,
        second.progress.unwrap().percent,
    );
    assert!(p2 > p1, "progress {p1} -> {p2}");
    assert_eq!(p2, 30);
    env.clock().advance(Duration::from_secs(100));
    let done = env.get_task(&name).await.unwrap();
    assert_eq!(done.state(), TaskState::Succeeded);
    assert!(done.done && done.end_time.is_some());
}

#[tokio::test]
async fn basic_view_leaves_out_the_payload_and_full_view_keeps_all_of_it() {
    let env = Env::start().await;
    let name = env.add(
        finished(60)
            .with_user("VSPHERE.LOCAL\\alice")
            .with_target("VirtualMachine", "vm-7"),
    );
    let basic = env.get_task(&name).await.unwrap();
    assert!(basic.upstream_payload.is_none());
    assert_eq!(basic.user, "VSPHERE.LOCAL\\alice");
    assert_eq!(basic.target.unwrap().id, "vm-7");
    assert!(basic.result.is_some(), "result JSON travels in BASIC view");
    let full = env
        .tasks()
        .get_task(GetTaskRequest {
            name: name.clone(),
            view: TaskView::Full as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let payload = full
        .upstream_payload
        .expect("FULL carries the upstream JSON");
    for key in [
        "status",
        "service",
        "operation",
        "description",
        "progress",
        "start_time",
        "end_time",
        "result",
        "user",
        "target",
    ] {
        assert!(payload.fields.contains_key(key), "payload lacks {key}");
    }
}

#[tokio::test]
async fn list_tasks_pages_through_every_task_once_newest_first() {
    let env = Env::start().await;
    let mut expected = HashSet::new();
    for i in 0..23 {
        expected.insert(env.add(finished(1000 - i * 10)));
    }
    // Not yet started: listed first.
    let pending = env.add(TaskSpec::new(
        VM,
        "create",
        "Create",
        vec![Step::new(Duration::ZERO, Phase::Pending)],
    ));
    expected.insert(pending.clone());
    // Another service, filtered out.
    env.sim.vcenter.tasks().add(TaskSpec::new(
        "com.other",
        "x",
        "X",
        vec![Step::new(Duration::ZERO, Phase::Pending)],
    ));

    let pages = env.list_pages(list(services(&[VM]), 5, "")).await;
    assert!(pages.iter().all(|page| page.tasks.len() <= 5));
    assert_eq!(pages.len(), 5);
    let seen: Vec<_> = pages.into_iter().flat_map(|page| page.tasks).collect();
    assert_eq!(seen.len(), 24);
    assert_eq!(
        seen.iter().map(|t| t.name.clone()).collect::<HashSet<_>>(),
        expected
    );
    assert_eq!(seen[0].name, pending);
    let starts: Vec<i64> = seen[1..]
        .iter()
        .map(|t| t.start_time.unwrap().seconds)
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "start_time descending: {starts:?}"
    );
}

#[tokio::test]
async fn a_task_finishing_mid_listing_is_neither_repeated_nor_skipped() {
    let env = Env::start().await;
    for i in 0..6 {
        env.add(finished(600 - i * 60));
    }
    let first = env.list_tasks(list(services(&[VM]), 3, "")).await.unwrap();
    // A new task starts meanwhile (it sorts before the cursor: not repeated, not shown).
    env.add(running_for(1000));
    let second = list(services(&[VM]), 10, &first.next_page_token);
    let second = env.list_tasks(second).await.unwrap();
    let all: Vec<String> = first
        .tasks
        .iter()
        .chain(&second.tasks)
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(all.len(), 6);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 6);
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn list_filters_by_ids_states_and_users() {
    let env = Env::start().await;
    let a = env.add(running_for(100).with_user("alice"));
    let b = env.add(finished(10).with_user("bob"));
    let _c = env.add(finished(20).with_user("alice"));
    let id = |n: &str| n.rsplit('/').next().unwrap().to_string();
    let listed = |filter: TaskFilter| async {
        let page = env.list_tasks(list(filter, 0, "")).await.unwrap();
        page.tasks.into_iter().map(|t| t.name).collect::<Vec<_>>()
    };
    let by_ids = TaskFilter {
        task_ids: vec![id(&a), id(&b)],
        ..Default::default()
    };
    assert_eq!(listed(by_ids).await.len(), 2);
    let running = TaskFilter {
        states: vec![TaskState::Running as i32],
        ..services(&[VM])
    };
    assert_eq!(listed(running).await, vec![a.clone()]);
    let alice = TaskFilter {
        users: vec!["alice".into()],
        ..services(&[VM])
    };
    assert_eq!(listed(alice).await.len(), 2);
}

#[tokio::test]
async fn list_without_ids_or_services_says_what_vsphere_needs() {
    let env = Env::start().await;
    let listed = env.list_tasks(list(TaskFilter::default(), 0, "")).await;
    let (err, _) = expect_error(listed, Code::InvalidArgument, "INVALID_FILTER");
    assert!(
        err.message().contains("task_ids") && err.message().contains("services"),
        "{}",
        err.message()
    );
    let lists = env.sim.vcenter.requests("POST /api/cis/tasks?action=list");
    assert_eq!(lists, 0, "refused before the upstream");
}

#[tokio::test]
async fn more_than_1000_matches_is_too_many_matches() {
    let env = Env::start().await;
    for _ in 0..1001 {
        env.sim.vcenter.tasks().add(finished(5));
    }
    let listed = env.list_tasks(list(services(&[VM]), 0, "")).await;
    let (_, info) = expect_error(listed, Code::FailedPrecondition, "TOO_MANY_MATCHES");
    assert_eq!(info.metadata["upstream"], "vc1");
}

#[tokio::test]
async fn bad_page_tokens_and_sizes_are_invalid_argument() {
    let env = Env::start().await;
    for _ in 0..3 {
        env.add(finished(5));
    }
    let page = env.list_tasks(list(services(&[VM]), 1, "")).await.unwrap();
    let token = page.next_page_token.as_str();
    assert!(!token.is_empty());
    for (req, reason) in [
        (
            list(services(&[VM, "com.other"]), 1, token),
            "INVALID_PAGE_TOKEN",
        ),
        (
            list(services(&[VM]), 1, "not-a-token"),
            "INVALID_PAGE_TOKEN",
        ),
        (list(services(&[VM]), -1, ""), "INVALID_PAGE_SIZE"),
    ] {
        expect_error(env.list_tasks(req).await, Code::InvalidArgument, reason);
    }
    // page_size may change between pages.
    let rest = env.list_tasks(list(services(&[VM]), 50, token)).await;
    assert_eq!(rest.unwrap().tasks.len(), 2);
}

#[tokio::test]
async fn cancel_ends_a_cancelable_running_task_cancelled() {
    let env = Env::start().await;
    let name = env.add(running_for(3600).cancelable());
    let task = env.cancel_task(&name).await.unwrap();
    assert_eq!(task.state(), TaskState::Cancelled);
    assert!(task.done);
    assert_eq!(task.error.unwrap().r#type, "CANCELED");
    assert_eq!(cancels_sent(&env), 1);
}

#[tokio::test]
async fn a_cancel_the_upstream_accepted_is_never_reported_as_failed() {
    use vmware_grpc_gateway::simulator::Fault;
    let env = Env::start().await;
    let unavailable = || Fault::Status {
        status: 503,
        body: r#"{"error_type":"SERVICE_UNAVAILABLE","messages":[]}"#.into(),
    };
    let get = "GET /api/cis/tasks/{task}";
    // The read before the cancel passes; the read-back meets one 503 and is read again.
    let name = env.add(running_for(3600).cancelable());
    env.sim.vcenter.inject(get, Fault::Delay(Duration::ZERO));
    env.sim.vcenter.inject(get, unavailable());
    let task = env.cancel_task(&name).await.expect("the cancel worked");
    assert_eq!(task.state(), TaskState::Cancelled);
    // Every read-back fails: the answer is the task as read before, cancel requested.
    let name = env.add(running_for(3600).cancelable());
    env.sim.vcenter.inject(get, Fault::Delay(Duration::ZERO));
    for _ in 0..3 {
        env.sim.vcenter.inject(get, unavailable());
    }
    let task = env.cancel_task(&name).await.expect("the cancel worked");
    assert!(task.cancel_requested);
    assert_eq!(
        cancels_sent(&env),
        2,
        "each cancel sent once, never retried"
    );
}

/// The cancel requests that reached the simulated vCenter.
fn cancels_sent(env: &Env) -> u64 {
    env.sim
        .vcenter
        .requests("POST /api/cis/tasks/{task}?action=cancel")
}

#[tokio::test]
async fn cancel_of_a_done_task_is_refused_without_asking_the_upstream() {
    let env = Env::start().await;
    let name = env.add(finished(5));
    let cancelled = env.cancel_task(&name).await;
    expect_error(cancelled, Code::FailedPrecondition, "TASK_DONE");
    assert_eq!(cancels_sent(&env), 0);
}

#[tokio::test]
async fn cancel_of_a_task_that_is_not_cancelable_is_unimplemented() {
    let env = Env::start().await;
    let name = env.add(running_for(3600));
    let cancelled = env.cancel_task(&name).await;
    let (_, info) = expect_error(cancelled, Code::Unimplemented, "UPSTREAM_UNSUPPORTED");
    assert_eq!(info.metadata["httpStatus"], "400");
    assert_eq!(info.metadata["upstreamReason"], "UNSUPPORTED");
}

#[tokio::test]
async fn names_are_checked_before_any_upstream_call() {
    let env = Env::start().await;
    for bad in [
        "",
        "tasks/x",
        "upstreams/vc1/tasks/",
        "upstreams/VC1/tasks/x",
        "upstreams/vc1/tasks/%zz",
    ] {
        let (err, _) = expect_error(
            env.get_task(bad).await,
            Code::InvalidArgument,
            "INVALID_NAME",
        );
        let violations = tonic_types::StatusExt::get_details_bad_request(&err).expect("BadRequest");
        assert_eq!(violations.field_violations[0].field, "name");
    }
    let unknown = env.get_task("upstreams/vc9/tasks/x").await;
    expect_error(unknown, Code::NotFound, "UNKNOWN_UPSTREAM");
    let bad_view = GetTaskRequest {
        view: 7,
        ..get_req(&task_name("x"))
    };
    let bad_view = env.tasks().get_task(bad_view).await;
    expect_error(bad_view, Code::InvalidArgument, "INVALID_ENUM");
    assert_eq!(env.sim.vcenter.total_requests(), 0);
}

#[tokio::test]
async fn unknown_task_is_not_found_with_the_upstream_message() {
    let env = Env::start().await;
    let got = env.get_task(&task_name("no-such-task")).await;
    let (err, info) = expect_error(got, Code::NotFound, "NOT_FOUND");
    assert_eq!(info.metadata["resource"], task_name("no-such-task"));
    assert_eq!(info.metadata["upstream"], "vc1");
    assert_eq!(info.metadata["httpStatus"], "404");
    let msg =
        tonic_types::StatusExt::get_details_localized_message(&err).expect("LocalizedMessage");
    assert_eq!(msg.locale, "en-US");
    assert!(msg.message.contains("no-such-task"));
}

#[tokio::test]
async fn dash_resolves_to_the_only_task_upstream() {
    let env = Env::start().await;
    let name = env.add(finished(5));
    let id = name.rsplit('/').next().unwrap();
    let task = env.get_task(&format!("upstreams/-/tasks/{id}")).await;
    assert_eq!(task.unwrap().name, name, "the real name comes back");
    let merged = ListTasksRequest {
        parent: "upstreams/-".into(),
        ..list(services(&[VM]), 0, "")
    };
    assert_eq!(env.list_tasks(merged).await.unwrap().tasks.len(), 1);
}

#[tokio::test]
async fn ids_with_slashes_and_percents_round_trip() {
    let env = Env::start().await;
    let id = "odd/id%1";
    env.sim.vcenter.tasks().add(finished(5).with_id(id));
    let name = "upstreams/vc1/tasks/odd%2Fid%251";
    let task = env.get_task(name).await.unwrap();
    assert_eq!(task.id, id);
    assert_eq!(task.name, name);
}

#[tokio::test]
async fn an_expired_session_costs_exactly_one_fresh_login_for_many_concurrent_calls() {
    let env = Env::start().await;
    let name = env.add(running_for(100));
    env.get_task(&name).await.unwrap();
    assert_eq!(env.sim.vcenter.logins(), 1);
    env.sim.vcenter.expire_sessions();
    let calls = (0..20).map(|_| env.get_task(&name));
    for r in futures_util::future::join_all(calls).await {
        r.expect("call succeeds after re-login");
    }
    assert_eq!(
        env.sim.vcenter.logins(),
        2,
        "one fresh login for 20 calls that saw 401"
    );
}

#[tokio::test]
async fn wrong_service_account_credentials_are_a_failed_login() {
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.upstreams[0].password = vmware_grpc_gateway::config::Secret::new("wrong")
    })
    .await;
    let got = env.get_task(&task_name("x")).await;
    let (err, _) = expect_error(got, Code::Unavailable, "UPSTREAM_LOGIN_FAILED");
    assert!(tonic_types::StatusExt::get_details_retry_info(&err).is_some());
    let up = env.get_upstream("upstreams/vc1").await.unwrap();
    assert_eq!(
        up.session_state(),
        vmware_grpc_gateway::proto::SessionState::Failed
    );
    assert!(!up.last_error.is_empty());
}
