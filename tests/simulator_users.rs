//! The simulator's second user on each upstream, over real HTTP with reqwest: the vAPI viewer
//! on vCenter and the snapshot service (its own tasks only, read-only), Cloud Director's
//! `ops@globex` (globex's tasks only, its bearer token alone enough), SRS's second user (API
//! keys that see only their user's runspaces), and the `live_sessions` / `sessions_of`
//! counters tests use to check that a client logged its sessions out.

mod common;

use std::time::Duration;

use common::{srs_login, vapi_login, vcd_login};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use vmware_grpc_gateway::simulator::cloud_director::VCD_DEMO_OTHER_ORG_TASK;
use vmware_grpc_gateway::simulator::script_runtime::API_KEY_HEADER;
use vmware_grpc_gateway::simulator::vcenter::SESSION_HEADER;
use vmware_grpc_gateway::simulator::{
    DEMO_CANCELABLE_TASK, DEMO_RUNNING_TASK, DEMO_SERVICES, DEMO_VIEWER_TASK,
    SNAP_DEMO_RUNNING_TASK, SNAP_DEMO_VIEWER_TASK, SRS_DEMO_READY_RUNSPACE, SRS_USER2,
    SRS_USER2_PASSWORD, SimClock, SimOptions, Simulator, VAPI_VIEWER_PASSWORD,
    VAPI_VIEWER_PRINCIPAL, VAPI_VIEWER_USER, VCD_DEMO_RUNNING_TASK, VCD_GLOBEX_ORG,
    VCD_GLOBEX_PASSWORD, VCD_GLOBEX_TASK, VCD_GLOBEX_USER,
};

const VCD_ACCEPT: &str = "application/*+json;version=38.0";

async fn start() -> Simulator {
    let opts = SimOptions {
        clock: SimClock::manual(),
        ..SimOptions::default()
    };
    Simulator::start(opts).await.expect("the simulator starts")
}

/// `method url` with `header: value` (and a JSON body when given): the status and the JSON
/// body (`Null` when there is none).
async fn call(
    method: Method,
    url: &str,
    header: (&str, &str),
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Client::new()
        .request(method, url)
        .header(header.0, header.1)
        .header("accept", VCD_ACCEPT);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request reaches the simulator");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The ids a vCenter list answers to `session` for `filter_spec`, sorted.
async fn vcenter_list(sim: &Simulator, session: &str, filter_spec: Value) -> Vec<String> {
    let url = format!("{}/api/cis/tasks?action=list", sim.vcenter.url());
    let body = json!({"filter_spec": filter_spec});
    let (status, listed) = call(Method::POST, &url, (SESSION_HEADER, session), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let mut ids: Vec<String> = listed
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_vapi_viewer_logs_in_and_sees_only_its_own_tasks_read_only() {
    let sim = start().await;
    let vc = &sim.vcenter;
    let refused = vapi_login(vc, "/api/session", VAPI_VIEWER_USER, "VMware1!").await;
    assert_eq!(refused, Err(StatusCode::UNAUTHORIZED));
    let viewer = vapi_login(vc, "/api/session", VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD).await;
    let viewer = viewer.expect("the viewer logs in");
    let admin = vapi_login(vc, "/api/session", vc.username(), vc.password()).await;
    let admin = admin.expect("the administrator logs in");
    assert_eq!(
        (vc.sessions_of(VAPI_VIEWER_USER), vc.live_sessions()),
        (1, 2)
    );
    let v = (SESSION_HEADER, viewer.as_str());
    let a = (SESSION_HEADER, admin.as_str());

    let base = vc.url();
    let (status, who) = call(Method::GET, &format!("{base}/api/session"), v, None).await;
    assert_eq!(
        (status, who["user"].as_str()),
        (StatusCode::OK, Some(VAPI_VIEWER_USER))
    );

    let task = |id: &str| format!("{base}/api/cis/tasks/{id}");
    let (status, own) = call(Method::GET, &task(DEMO_VIEWER_TASK), v, None).await;
    assert_eq!(
        (status, own["status"].as_str()),
        (StatusCode::OK, Some("RUNNING"))
    );
    assert_eq!(own["user"], VAPI_VIEWER_PRINCIPAL);
    let (status, hidden) = call(Method::GET, &task(DEMO_RUNNING_TASK), v, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, unknown) = call(Method::GET, &task("no-such-task"), v, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let text = |body: &Value, id: &str| body.to_string().replace(id, "ID");
    assert_eq!(
        text(&hidden, DEMO_RUNNING_TASK),
        text(&unknown, "no-such-task"),
        "another's task answers as an unknown one"
    );
    assert_eq!(
        call(Method::GET, &task(DEMO_RUNNING_TASK), a, None).await.0,
        StatusCode::OK
    );

    let services = json!({"services": DEMO_SERVICES});
    assert_eq!(
        vcenter_list(&sim, &viewer, services.clone()).await,
        [DEMO_VIEWER_TASK]
    );
    let everything = vcenter_list(&sim, &admin, services).await;
    assert!(everything.len() > 20, "{everything:?}");
    assert!(everything.contains(&DEMO_VIEWER_TASK.to_string()));

    let cancel = |id: &str| format!("{base}/api/cis/tasks/{id}?action=cancel");
    let (status, refused) = call(Method::POST, &cancel(DEMO_VIEWER_TASK), v, None).await;
    assert_eq!(
        (status, refused["error_type"].as_str()),
        (StatusCode::FORBIDDEN, Some("UNAUTHORIZED"))
    );
    let (status, other) = call(Method::POST, &cancel(DEMO_CANCELABLE_TASK), v, None).await;
    assert_eq!(
        (status, other["error_type"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, _) = call(Method::POST, &cancel(DEMO_VIEWER_TASK), a, None).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "the administrator cancels any task"
    );

    let (status, _) = call(Method::DELETE, &format!("{base}/api/session"), v, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        (vc.sessions_of(VAPI_VIEWER_USER), vc.live_sessions()),
        (0, 1)
    );
}

#[tokio::test]
async fn the_vapi_viewer_sees_only_its_own_snapshot_service_tasks() {
    let sim = start().await;
    let snap = &sim.snapservice;
    let sessions = "/api/snapservice/sessions";
    let viewer = vapi_login(snap, sessions, VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD).await;
    let viewer = viewer.expect("the viewer logs in");
    let v = (SESSION_HEADER, viewer.as_str());
    let base = format!("{}/api/snapservice/tasks", snap.url());
    let (status, own) = call(
        Method::GET,
        &format!("{base}/{SNAP_DEMO_VIEWER_TASK}"),
        v,
        None,
    )
    .await;
    assert_eq!(
        (status, own["status"].as_str()),
        (StatusCode::OK, Some("RUNNING"))
    );
    let (status, hidden) = call(
        Method::GET,
        &format!("{base}/{SNAP_DEMO_RUNNING_TASK}"),
        v,
        None,
    )
    .await;
    assert_eq!(
        (status, hidden["error_type"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let list = format!("{base}?tasks={SNAP_DEMO_RUNNING_TASK}&tasks={SNAP_DEMO_VIEWER_TASK}");
    let (status, listed) = call(Method::GET, &list, v, None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["task"].as_str())
        .collect();
    assert_eq!(ids, [SNAP_DEMO_VIEWER_TASK]);
    assert_eq!(snap.sessions_of(VAPI_VIEWER_USER), 1);
    assert_eq!(
        sim.vcenter.sessions_of(VAPI_VIEWER_USER),
        0,
        "sessions are per part"
    );
}

#[tokio::test]
async fn cloud_director_globex_sees_only_its_org_with_the_bearer_token_alone() {
    let sim = start().await;
    let vcd = &sim.cloud_director;
    let jwt = vcd_login(
        vcd,
        &format!("{VCD_GLOBEX_USER}@{VCD_GLOBEX_ORG}"),
        VCD_GLOBEX_PASSWORD,
    )
    .await
    .expect("ops@globex logs in");
    assert_eq!(vcd.sessions_of("ops@globex"), 1);
    let bearer = format!("Bearer {jwt}");
    let b = ("authorization", bearer.as_str());
    let task = |id: &str| format!("{}/api/task/{id}", vcd.url());
    let (status, own) = call(Method::GET, &task(VCD_GLOBEX_TASK), b, None).await;
    assert_eq!(
        (status, own["status"].as_str()),
        (StatusCode::OK, Some("running"))
    );
    assert_eq!(
        call(Method::GET, &task(VCD_DEMO_OTHER_ORG_TASK), b, None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = call(Method::GET, &task(VCD_DEMO_RUNNING_TASK), b, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["minorErrorCode"], "ACCESS_TO_RESOURCE_IS_FORBIDDEN");
    let cancel = format!("{}/action/cancel", task(VCD_DEMO_RUNNING_TASK));
    let (status, body) = call(Method::POST, &cancel, b, None).await;
    assert_eq!(
        (status, body["minorErrorCode"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN")
        )
    );
    let query = format!("{}/api/query?type=task", vcd.url());
    let (status, listed) = call(Method::GET, &query, b, None).await;
    assert_eq!(status, StatusCode::OK);
    let orgs: Vec<&str> = listed["record"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["orgName"].as_str())
        .collect();
    assert_eq!(orgs, ["globex", "globex"]);

    let logout = format!("{}/cloudapi/1.0.0/sessions/current", vcd.url());
    assert_eq!(
        call(Method::DELETE, &logout, b, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!((vcd.sessions_of("ops@globex"), vcd.live_sessions()), (0, 0));
}

#[tokio::test]
async fn srs_api_keys_see_only_their_users_runspaces() {
    let sim = start().await;
    let srs = &sim.script_runtime;
    assert_eq!(
        srs_login(srs, SRS_USER2, "VMware1!").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let runner = srs_login(srs, SRS_USER2, SRS_USER2_PASSWORD)
        .await
        .expect("runner logs in");
    let admin = srs_login(srs, srs.username(), srs.password())
        .await
        .expect("admin logs in");
    assert_eq!(
        (srs.sessions_of(SRS_USER2), srs.sessions_of(srs.username())),
        (1, 1)
    );
    let r = (API_KEY_HEADER, runner.as_str());
    let a = (API_KEY_HEADER, admin.as_str());
    let runspaces = format!("{}/api/runspaces", srs.url());
    let one = |id: &str| format!("{runspaces}/{id}");

    let (status, created) = call(Method::POST, &runspaces, r, Some(json!({"name": "mine"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = created["id"].as_str().expect("an id").to_string();
    let ids = |list: Value| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        ids(call(Method::GET, &runspaces, r, None).await.1),
        [id.as_str()]
    );
    let admins = ids(call(Method::GET, &runspaces, a, None).await.1);
    assert!(
        admins.contains(&SRS_DEMO_READY_RUNSPACE.to_string()) && !admins.contains(&id),
        "{admins:?}"
    );

    // Another user's runspace answers as an unknown id: 404 code 2030 on get, 500 code 2040
    // on delete (SRS has no 404 there), both ways round.
    for (key, theirs) in [(a, id.as_str()), (r, SRS_DEMO_READY_RUNSPACE)] {
        let (status, body) = call(Method::GET, &one(theirs), key, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"code": 2030, "error_message": format!("Runspace with id '{theirs}' not found")})
        );
        let (status, body) = call(Method::DELETE, &one(theirs), key, None).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some(2040))
        );
        let (_, unknown) = call(Method::DELETE, &one("000000000000"), key, None).await;
        assert_eq!(
            body.to_string().replace(theirs, "ID"),
            unknown.to_string().replace("000000000000", "ID")
        );
    }
    assert_eq!(
        call(Method::GET, &one(&id), r, None).await.0,
        StatusCode::OK,
        "still there"
    );
    assert_eq!(
        call(Method::GET, &one(SRS_DEMO_READY_RUNSPACE), a, None)
            .await
            .0,
        StatusCode::OK
    );

    // Logout ends the key and its runspaces; the other user's stay.
    let logout = format!("{}/api/auth/logout", srs.url());
    assert_eq!(call(Method::POST, &logout, r, None).await.0, StatusCode::OK);
    assert_eq!((srs.sessions_of(SRS_USER2), srs.live_sessions()), (0, 1));
    assert_eq!(srs.runspace_count(), 2, "the seeded two");
    assert_eq!(
        call(Method::GET, &runspaces, r, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn live_sessions_drop_on_idle_timeout_and_expiry() {
    let sim = start().await;
    let vc = &sim.vcenter;
    for _ in 0..2 {
        vapi_login(vc, "/api/session", VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD)
            .await
            .expect("login");
    }
    vapi_login(vc, "/api/session", vc.username(), vc.password())
        .await
        .expect("login");
    assert_eq!(
        (vc.live_sessions(), vc.sessions_of(VAPI_VIEWER_USER)),
        (3, 2)
    );
    assert_eq!(vc.sessions_of(vc.username()), 1);
    assert_eq!(vc.sessions_of("nobody"), 0);
    vc.clock().advance(Duration::from_secs(31 * 60));
    assert_eq!(
        vc.live_sessions(),
        0,
        "idle for longer than the 30-minute timeout"
    );
    vapi_login(vc, "/api/session", VAPI_VIEWER_USER, VAPI_VIEWER_PASSWORD)
        .await
        .expect("login");
    assert_eq!(vc.live_sessions(), 1);
    vc.expire_sessions();
    assert_eq!(vc.live_sessions(), 0);
}
