//! The simulated upstreams' JSON, validated over real HTTP with reqwest against the vendor
//! OpenAPI documents in `shared/upstream/specs/`: vCenter against
//! `vsphere-cis-tasks-session.subset.openapi.json`, the snapshot service against
//! `snapservice-tasks-sessions.subset.openapi.json` (both also against the per-status field
//! rules of `UPSTREAM_APIS.md` 2.5), and the Script Runtime Service against
//! `srs-apigateway-openapi.json`. Cloud Director has no spec; its unit tests live in
//! `src/simulator/cloud_director/tests.rs`.
//!
//! Without the spec folder the spec-driven tests skip, but only outside CI: with `CI` set
//! they fail (see `openapi::load_spec`).

#[path = "support/openapi.rs"]
mod openapi;

use std::time::Duration;

use serde_json::{Value, json};
use vmware_grpc_gateway::simulator::script_runtime::{
    API_KEY_HEADER as SRS_API_KEY_HEADER, ROUTE_RUNSPACE_CREATE as SRS_ROUTE_RUNSPACE_CREATE,
};
use vmware_grpc_gateway::simulator::snapservice::{
    ROUTE_OTHER as SNAP_ROUTE_OTHER, ROUTE_TASK_GET as SNAP_ROUTE_TASK_GET,
    SESSION_HEADER as SNAP_SESSION_HEADER, SNAP_DEMO_BLOCKED_TASK, SNAP_DEMO_FAILED_TASK,
    SNAP_DEMO_PENDING_TASK, SNAP_DEMO_SUCCEEDED_TASK,
};
use vmware_grpc_gateway::simulator::vcenter::{
    DEMO_BLOCKED_TASK, DEMO_FAILED_TASK, DEMO_PENDING_TASK, DEMO_SUCCEEDED_TASK,
    ROUTE_SESSION_CREATE, ROUTE_TASK_GET, ROUTE_TASK_LIST, SESSION_HEADER,
};
use vmware_grpc_gateway::simulator::{
    DEMO_CANCELABLE_TASK, DEMO_RUNNING_TASK, DEMO_SERVICES, Fault, Phase, SNAP_DEMO_RUNNING_TASK,
    SNAP_DEMO_SERVICES, SRS_DEMO_ERROR_RUNSPACE, SRS_DEMO_READY_RUNSPACE, SimClock, SimHandle,
    SimOptions, Simulator, Step, TaskSpec, TaskStore,
};

const SPEC_FILE: &str = "vsphere-cis-tasks-session.subset.openapi.json";
const SNAP_SPEC_FILE: &str = "snapservice-tasks-sessions.subset.openapi.json";
const SRS_SPEC_FILE: &str = "srs-apigateway-openapi.json";

/// The vSphere spec, or `None` (test skipped, outside CI only) when the spec folder is absent.
fn load_spec() -> Option<Value> {
    openapi::load_spec(SPEC_FILE)
}

/// `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$` without a regex crate.
fn is_vapi_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddZ";
    b.len() == pattern.len()
        && b.iter().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// The field rules of the "which fields each status carries" table, plus datetime format.
fn status_rule_violations(info: &Value, exclude_result: bool) -> Vec<String> {
    let mut out = Vec::new();
    let status = info["status"].as_str().unwrap_or("<missing>");
    let has = |k: &str| info.get(k).is_some();
    let (must, must_not): (&[&str], &[&str]) = match status {
        "PENDING" => (
            &[],
            &["progress", "result", "error", "start_time", "end_time"],
        ),
        "RUNNING" | "BLOCKED" => (&["progress", "start_time"], &["end_time", "error"]),
        "SUCCEEDED" => (&["progress", "start_time", "end_time"], &["error"]),
        "FAILED" => (&["progress", "start_time", "end_time", "error"], &[]),
        other => {
            out.push(format!("unknown status {other}"));
            (&[], &[])
        }
    };
    for k in must {
        if !has(k) {
            out.push(format!("{status}: missing {k}"));
        }
    }
    for k in must_not {
        if has(k) {
            out.push(format!("{status}: has {k}"));
        }
    }
    if exclude_result && has("result") {
        out.push("result present although exclude_result".into());
    }
    for k in ["start_time", "end_time"] {
        if let Some(t) = info.get(k)
            && !t.as_str().is_some_and(is_vapi_datetime)
        {
            out.push(format!("{k} {t} is not in vAPI datetime format"));
        }
    }
    if let Some(p) = info.get("progress") {
        let (total, done) = (p["total"].as_i64(), p["completed"].as_i64());
        if total != Some(100) || !done.is_some_and(|d| (0..=100).contains(&d)) {
            out.push(format!("odd progress {p}"));
        }
    }
    if let Some(d) = info.get("description") {
        let expected = format!(
            "{}.{}",
            info["service"].as_str().unwrap_or(""),
            info["operation"].as_str().unwrap_or("")
        );
        if d["id"] != json!(expected) {
            out.push(format!("description.id {} != {expected}", d["id"]));
        }
    }
    out
}

/// A simulator on a manual clock (with the demo tasks).
async fn start() -> (SimClock, Simulator) {
    let clock = SimClock::manual();
    let sim = Simulator::start(SimOptions {
        clock: clock.clone(),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    (clock, sim)
}

/// The spec `file` and a simulator on a manual clock, or `None` where the spec folder is
/// absent (outside CI only, see `openapi::load_spec`).
async fn spec_and_sim(file: &str) -> Option<(Value, SimClock, Simulator)> {
    let spec = openapi::load_spec(file)?;
    let (clock, sim) = start().await;
    Some((spec, clock, sim))
}

/// Adds 1001 pending tasks of `service`: one more than a vAPI list may answer.
fn add_bulk(tasks: &TaskStore, service: &str) {
    for n in 0..1001 {
        let steps = vec![Step::new(secs(0), Phase::Pending)];
        tasks.add(TaskSpec::new(service, "op", "bulk", steps).with_id(&format!("bulk-{n}")));
    }
}

struct Ctx {
    spec: Value,
    client: reqwest::Client,
    api: String,
    sid: String,
    /// vAPI sessions: their URL, their path in the spec and the session header.
    sessions: String,
    session_path: &'static str,
    header: &'static str,
    /// Every body validated, for the summary (and to prove we validated something).
    checked: usize,
}

impl Ctx {
    /// `api` is the base the spec's paths hang off; `session_path` the spec path of the vAPI
    /// sessions (empty for SRS) and `header` the session header.
    fn new(spec: Value, api: String, session_path: &'static str, header: &'static str) -> Ctx {
        Ctx {
            spec,
            client: reqwest::Client::new(),
            sessions: format!("{api}{session_path}"),
            api,
            sid: String::new(),
            session_path,
            header,
            checked: 0,
        }
    }

    /// `req` with the context's session.
    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header(self.header, &self.sid)
    }

    /// A vAPI login as the part's user: `201` and the session id, now the context's.
    async fn relogin(&mut self, part: &SimHandle) -> String {
        let req = self.client.post(&self.sessions);
        let req = req.basic_auth(part.username(), Some(part.password()));
        let sid = self.call(req, self.session_path, "post", 201).await;
        self.sid = sid
            .as_str()
            .expect("session id is a JSON string")
            .to_string();
        self.sid.clone()
    }

    /// `GET` or `DELETE` of the vAPI session `sid`.
    async fn session_as(&mut self, method: &str, sid: &str, expected: u16) -> Value {
        let method_ = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .expect("an HTTP method");
        let req = self.client.request(method_, &self.sessions);
        let req = req.header(self.header, sid);
        self.call(req, self.session_path, method, expected).await
    }

    /// vAPI: a wrong password is `401 UNAUTHENTICATED`; the first login counts and its
    /// session describes the user with vAPI datetimes. Returns the session id.
    async fn open_session(&mut self, part: &SimHandle) -> String {
        let req = self.client.post(&self.sessions);
        let req = req.basic_auth(part.username(), Some("wrong"));
        let body = self.call(req, self.session_path, "post", 401).await;
        assert_eq!(body["error_type"], "UNAUTHENTICATED");
        let sid = self.relogin(part).await;
        assert_eq!(part.logins(), 1);
        let info = self.session_as("get", &sid, 200).await;
        assert_eq!(info["user"], part.username());
        for k in ["created_time", "last_accessed_time"] {
            let t = info[k].as_str().unwrap_or("");
            assert!(is_vapi_datetime(t), "{k}: {info}");
        }
        sid
    }

    /// vAPI: a task read without a session is `401 UNAUTHENTICATED`, and with the context's
    /// session after `expire_sessions` too; refused calls are counted under `route`.
    async fn refused_without_session(
        &mut self,
        part: &SimHandle,
        url: &str,
        path: &str,
        route: &str,
    ) {
        let unauth = self.call(self.client.get(url), path, "get", 401).await;
        assert_eq!(unauth["error_type"], "UNAUTHENTICATED");
        let gets = part.requests(route);
        part.expire_sessions();
        let req = self.authed(self.client.get(url));
        self.call(req, path, "get", 401).await;
        assert_eq!(part.requests(route), gets + 1, "refused calls are counted");
    }

    /// vAPI: session `idle` is refused after 31 idle minutes; a new one is deleted (`204`)
    /// and then refused (`401`).
    async fn idle_expiry_and_logout(&mut self, part: &SimHandle, clock: &SimClock, idle: &str) {
        clock.advance(secs(31 * 60));
        self.session_as("get", idle, 401).await;
        let sid = self.relogin(part).await;
        assert_eq!(self.session_as("delete", &sid, 204).await, Value::Null);
        self.session_as("delete", &sid, 401).await;
    }

    /// Sends a request and validates the body against the schema the spec declares for
    /// `spec_path` / method / status. Returns status and body (Null when empty).
    async fn call(
        &mut self,
        req: reqwest::RequestBuilder,
        spec_path: &str,
        method: &str,
        expected: u16,
    ) -> Value {
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body readable");
        assert_eq!(status, expected, "{method} {spec_path}: body {text}");
        assert!(
            openapi::declares_status(&self.spec, spec_path, method, status),
            "spec does not declare {status} for {method} {spec_path}"
        );
        let schema = openapi::response_schema(&self.spec, spec_path, method, status);
        match schema {
            None => {
                assert!(text.is_empty(), "{status} should have no body, got {text}");
                Value::Null
            }
            Some(schema) => {
                let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                    panic!("{method} {spec_path} {status}: not JSON ({e}): {text}")
                });
                let errors = openapi::validate(&self.spec, schema, &body);
                assert!(
                    errors.is_empty(),
                    "{method} {spec_path} {status} violates the spec:\n  {}\nbody: {body:#}",
                    errors.join("\n  ")
                );
                self.checked += 1;
                body
            }
        }
    }

    /// Asserts that `value` is valid against the spec's component schema `name`.
    fn assert_component(&self, value: &Value, name: &str) {
        let schema = json!({"$ref": format!("#/components/schemas/{name}")});
        let errors = openapi::validate(&self.spec, &schema, value);
        assert!(errors.is_empty(), "not a valid {name}: {errors:?}\n{value}");
    }

    /// Sends a request answered with a `status` the spec does not declare for the operation;
    /// its body must still be a valid component `name`.
    async fn call_undeclared(
        &self,
        req: reqwest::RequestBuilder,
        status: u16,
        name: &str,
    ) -> Value {
        let resp = req.send().await.expect("request reaches the simulator");
        assert_eq!(resp.status(), status);
        let body: Value = resp.json().await.expect("a JSON body");
        self.assert_component(&body, name);
        body
    }

    /// An authenticated `GET` of `path` (below `api`), validated as `spec_path`.
    async fn get(&mut self, path: &str, spec_path: &str, expected: u16) -> Value {
        let req = self.authed(self.client.get(format!("{}{path}", self.api)));
        self.call(req, spec_path, "get", expected).await
    }

    async fn get_task(&mut self, id: &str, query: &str) -> Value {
        let url = format!("{}/cis/tasks/{id}{query}", self.api);
        let req = self.client.get(url).header(SESSION_HEADER, &self.sid);
        let info = self.call(req, "/cis/tasks/{task}", "get", 200).await;
        let violations = status_rule_violations(&info, query.contains("exclude_result=true"));
        assert!(
            violations.is_empty(),
            "{id}{query}: {violations:?}\n{info:#}"
        );
        info
    }

    async fn list(&mut self, body: Value, expected: u16) -> Value {
        let req = self
            .client
            .post(format!("{}/cis/tasks?action=list", self.api))
            .header(SESSION_HEADER, &self.sid)
            .json(&body);
        self.call(req, "/cis/tasks?action=list", "post", expected)
            .await
    }

    async fn cancel(&mut self, id: &str, expected: u16) -> Value {
        let req = self
            .client
            .post(format!("{}/cis/tasks/{id}?action=cancel", self.api))
            .header(SESSION_HEADER, &self.sid);
        self.call(req, "/cis/tasks/{task}?action=cancel", "post", expected)
            .await
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A client that trusts the simulator's self-signed certificate `pem`.
fn trusting(pem: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(cert);
    client.build().unwrap()
}

/// A `POST` of `url` with basic credentials, sent (any status).
async fn basic_login(part: &SimHandle, url: &str, password: &str) -> reqwest::Response {
    let req = reqwest::Client::new().post(url);
    let req = req.basic_auth(part.username(), Some(password));
    req.send().await.expect("request reaches the simulator")
}

fn add_test_tasks(sim: &Simulator) {
    let tasks = sim.vcenter.tasks();
    let vm = "com.vmware.vcenter.VM";
    tasks.add(
        TaskSpec::new(
            vm,
            "clone",
            "Clone virtual machine",
            vec![
                Step::new(secs(0), Phase::Pending),
                Step::new(secs(100), Phase::Running { from: 0, to: 100 }),
                Step::new(
                    secs(200),
                    Phase::Succeeded {
                        result: Some(json!({"vm": "vm-77"})),
                    },
                ),
            ],
        )
        .with_id("t-pending")
        .with_target("VirtualMachine", "vm-77")
        .with_user("VSPHERE.LOCAL\\tester"),
    );
    let relocate = || {
        let steps = vec![
            Step::new(secs(0), Phase::Running { from: 0, to: 100 }),
            Step::new(secs(1000), Phase::Succeeded { result: None }),
        ];
        TaskSpec::new(vm, "relocate", "Relocate virtual machine", steps)
    };
    tasks.add(relocate().with_id("t-cancel").cancelable().aged(secs(100)));
    tasks.add(relocate().with_id("t-notcancel"));
    tasks.add(
        TaskSpec::new(
            vm,
            "create",
            "Create virtual machine",
            vec![
                Step::new(secs(0), Phase::Running { from: 0, to: 100 }),
                Step::new(
                    secs(5),
                    Phase::Failed {
                        error_type: "NOT_FOUND".into(),
                        message: "The folder was not found.".into(),
                    },
                ),
            ],
        )
        .with_id("t/failed with space")
        .with_error_cause("x.folder", "Folder group-v9 does not exist.")
        .aged(secs(30)),
    );
}

#[tokio::test]
async fn vcenter_json_matches_the_vendor_schema() {
    let Some((spec, clock, sim)) = spec_and_sim(SPEC_FILE).await else {
        return;
    };
    add_test_tasks(&sim);
    let vc = &sim.vcenter;
    let api = format!("{}/api", vc.url());
    let mut ctx = Ctx::new(spec, api.clone(), "/session", SESSION_HEADER);
    let client = ctx.client.clone();

    // --- session
    let wrong = basic_login(vc, &format!("{api}/session"), "wrong").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let no_auth = client.post(format!("{api}/session"));
    let body = ctx.call(no_auth, "/session", "post", 401).await;
    assert_eq!(body["error_type"], "UNAUTHENTICATED");
    let sid = ctx.open_session(vc).await;
    assert_eq!(sid.len(), 32);
    assert!(sid.chars().all(|c| c.is_ascii_hexdigit()));

    // --- one task per status, with and without the GetSpec flags
    let queries = [
        "",
        "?exclude_result=true",
        "?return_all=true",
        "?return_all=true&exclude_result=false",
    ];
    let cases = [
        ("t-pending", "PENDING"),
        (DEMO_PENDING_TASK, "PENDING"),
        (DEMO_RUNNING_TASK, "RUNNING"),
        (DEMO_CANCELABLE_TASK, "RUNNING"),
        (DEMO_BLOCKED_TASK, "BLOCKED"),
        (DEMO_SUCCEEDED_TASK, "SUCCEEDED"),
        (DEMO_FAILED_TASK, "FAILED"),
        ("t%2Ffailed%20with%20space", "FAILED"),
    ];
    for (id, status) in cases {
        for q in queries {
            let info = ctx.get_task(id, q).await;
            assert_eq!(info["status"], status, "{id}{q}");
        }
    }
    let succeeded = ctx.get_task(DEMO_SUCCEEDED_TASK, "").await;
    assert_eq!(succeeded["result"], "vm-2002");
    assert!(
        ctx.get_task(DEMO_SUCCEEDED_TASK, "?exclude_result=true")
            .await
            .get("result")
            .is_none()
    );
    let failed = ctx.get_task(DEMO_FAILED_TASK, "").await;
    assert_eq!(
        failed["error"]["messages"].as_array().map(Vec::len),
        Some(2)
    );
    ctx.assert_component(&failed["error"], "Vapi.Std.Errors.Error");
    let all = ctx.get_task(DEMO_RUNNING_TASK, "?return_all=true").await;
    assert!(all["description"].get("localized").is_some());
    let running = ctx.get_task(DEMO_RUNNING_TASK, "").await;
    assert_eq!(
        running["target"],
        json!({"type": "VirtualMachine", "id": "vm-1021"})
    );
    assert_eq!(running["cancelable"], false);

    // --- time moves: PENDING -> RUNNING with rising progress -> SUCCEEDED
    clock.advance(secs(150));
    let mid = ctx.get_task("t-pending", "").await;
    assert_eq!(
        (
            mid["status"].as_str(),
            mid["progress"]["completed"].as_i64()
        ),
        (Some("RUNNING"), Some(50))
    );
    clock.advance(secs(60));
    let done = ctx.get_task("t-pending", "").await;
    assert_eq!(done["status"], "SUCCEEDED");
    assert_eq!(done["result"], json!({"vm": "vm-77"}));
    assert_eq!(done["progress"]["completed"], 100);

    // --- cancel: success, then refusals
    assert_eq!(ctx.cancel("t-cancel", 204).await, Value::Null);
    let cancelled = ctx.get_task("t-cancel", "").await;
    assert_eq!(cancelled["status"], "FAILED");
    assert_eq!(cancelled["cancelable"], false);
    assert_eq!(cancelled["error"]["error_type"], "CANCELED");
    assert_eq!(
        cancelled["error"]["messages"][0]["default_message"],
        "The operation was canceled by the user."
    );
    let again = ctx.cancel("t-cancel", 400).await;
    assert_eq!(again["error_type"], "NOT_ALLOWED_IN_CURRENT_STATE");
    let refused = ctx.cancel("t-notcancel", 400).await;
    assert_eq!(refused["error_type"], "UNSUPPORTED");
    let missing = ctx.cancel("no-such-task", 404).await;
    assert_eq!(missing["error_type"], "NOT_FOUND");

    // --- errors of get
    let req = client
        .get(format!("{api}/cis/tasks/no-such-task"))
        .header(SESSION_HEADER, &sid);
    let nf = ctx.call(req, "/cis/tasks/{task}", "get", 404).await;
    assert_eq!(nf["error_type"], "NOT_FOUND");
    assert_eq!(
        nf["messages"][0]["id"],
        "com.vmware.api.cis.tasks.not_found"
    );
    assert_eq!(nf["messages"][0]["args"], json!(["no-such-task"]));
    assert!(nf["messages"][0]["localized"].is_string());
    // The spec declares no 400 for get; the body must still be a vAPI InvalidArgument.
    let req = client.get(format!("{api}/cis/tasks/t-pending?exclude_result=maybe"));
    let req = req.header(SESSION_HEADER, &sid);
    let bad = ctx
        .call_undeclared(req, 400, "Vapi.Std.Errors.InvalidArgument")
        .await;
    assert_eq!(bad["error_type"], "INVALID_ARGUMENT");

    // --- list
    let services: Vec<&str> = DEMO_SERVICES.to_vec();
    let listed = ctx
        .list(json!({"filter_spec": {"services": services}}), 200)
        .await;
    let map = listed.as_object().expect("list answers an object");
    assert!(map.len() >= 25, "{} tasks listed", map.len());
    for (id, info) in map {
        let v = status_rule_violations(info, false);
        assert!(v.is_empty(), "{id}: {v:?}");
    }
    let running = ctx
        .list(
            json!({"filter_spec": {"services": ["com.vmware.vcenter.VM"], "status": ["RUNNING", "BLOCKED"]},
                   "result_spec": {"exclude_result": true}}),
            200,
        )
        .await;
    let running = running.as_object().unwrap();
    assert!(running.contains_key(DEMO_RUNNING_TASK));
    assert!(
        !running.contains_key(DEMO_BLOCKED_TASK),
        "blocked one is vm.hardware"
    );
    for info in running.values() {
        assert_eq!(info["service"], "com.vmware.vcenter.VM");
        assert!(matches!(
            info["status"].as_str(),
            Some("RUNNING" | "BLOCKED")
        ));
        assert!(status_rule_violations(info, true).is_empty());
    }
    let by_id = ctx
        .list(
            json!({"filter_spec": {"tasks": [DEMO_SUCCEEDED_TASK, "t-cancel", "unknown"],
                                   "targets": [{"type": "VirtualMachine", "id": "vm-1001"}]}}),
            200,
        )
        .await;
    assert_eq!(
        by_id
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec![DEMO_SUCCEEDED_TASK.to_string()])
    );
    let no_filter = ctx
        .list(json!({"filter_spec": {"status": ["RUNNING"]}}), 400)
        .await;
    assert_eq!(no_filter["error_type"], "INVALID_ARGUMENT");
    let req = client
        .post(format!("{api}/cis/tasks?action=list"))
        .header(SESSION_HEADER, &sid)
        .header("content-type", "application/json")
        .body("{not json");
    let malformed = ctx.call(req, "/cis/tasks?action=list", "post", 400).await;
    assert_eq!(malformed["error_type"], "INVALID_ARGUMENT");
    let polls_before = vc.requests(ROUTE_TASK_LIST);
    add_bulk(vc.tasks(), "com.vmware.test.Bulk");
    let too_many = ctx
        .list(
            json!({"filter_spec": {"services": ["com.vmware.test.Bulk"]}}),
            500,
        )
        .await;
    assert_eq!(too_many["error_type"], "RESOURCE_INACCESSIBLE");
    assert_eq!(vc.requests(ROUTE_TASK_LIST), polls_before + 1);

    // --- faults come before auth, once
    vc.inject(
        ROUTE_TASK_GET,
        Fault::Status {
            status: 503,
            body: "<html>oops".into(),
        },
    );
    let r = client
        .get(format!("{api}/cis/tasks/t-pending"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "<html>oops");

    // --- 401 without / with an expired session
    let task = format!("{api}/cis/tasks/t-pending");
    ctx.refused_without_session(vc, &task, "/cis/tasks/{task}", ROUTE_TASK_GET)
        .await;

    // --- idle expiry on the sim clock, and logout
    let sid2 = ctx.relogin(vc).await;
    ctx.get_task(DEMO_RUNNING_TASK, "").await;
    ctx.idle_expiry_and_logout(vc, &clock, &sid2).await;
    assert_eq!(vc.logins(), 3);
    assert!(vc.requests(ROUTE_SESSION_CREATE) >= 5);
    assert!(vc.total_requests() > 50);
    assert!(ctx.checked > 50, "validated {} bodies", ctx.checked);
    println!(
        "validated {} response bodies against {SPEC_FILE}",
        ctx.checked
    );
}

#[tokio::test]
async fn tls_listener_serves_with_its_own_certificate() {
    let sim = Simulator::start(SimOptions {
        tls: true,
        clock: SimClock::manual(),
        seed_demo_tasks: false,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    let vc = &sim.vcenter;
    assert!(vc.url().starts_with("https://127.0.0.1:"));
    let client = trusting(&vc.ca_pem().expect("tls has a certificate"));
    let r = client
        .post(format!("{}/api/session", vc.url()))
        .basic_auth(vc.username(), Some(vc.password()))
        .send()
        .await
        .expect("TLS handshake with the self-signed certificate");
    assert_eq!(r.status(), 201);
    assert!(vc.tasks().is_empty());
}

#[test]
fn validator_catches_misspelled_fields_and_wrong_types() {
    let Some(spec) = load_spec() else { return };
    let schema = json!({"$ref": "#/components/schemas/Cis.Task.Info"});
    let good = json!({
        "description": {"id": "a.b", "default_message": "x", "args": []},
        "service": "a", "operation": "b", "status": "RUNNING", "cancelable": true,
        "start_time": "2024-05-02T09:14:03.512Z",
        "progress": {"total": 100, "completed": 3, "message": {"id": "m", "default_message": "m", "args": []}}
    });
    assert_eq!(
        openapi::validate(&spec, &schema, &good),
        Vec::<String>::new()
    );

    let mut bad = good.clone();
    bad["cancelable"] = json!("yes");
    bad["start_tme"] = json!("2024-05-02T09:14:03.512Z");
    bad["status"] = json!("running");
    bad["progress"]["completed"] = json!(2.5);
    bad["end_time"] = json!("yesterday");
    let errors = openapi::validate(&spec, &schema, &bad);
    let has = |needle: &str| errors.iter().any(|e| e.starts_with(needle));
    assert!(has("$.cancelable: expected boolean"), "{errors:?}");
    assert!(has("$.start_tme: unknown property"), "{errors:?}");
    assert!(has("$.status:"), "{errors:?}");
    assert!(has("$.progress.completed: expected integer"), "{errors:?}");
    assert!(has("$.end_time:"), "{errors:?}");
    assert_eq!(errors.len(), 5, "{errors:?}");

    // Composed error schemas: `challenge` allowed via the sibling, typos still caught.
    let unauth = json!({"$ref": "#/components/schemas/Vapi.Std.Errors.Unauthenticated"});
    let body = json!({"error_type": "UNAUTHENTICATED", "messages": [], "challenge": "Basic"});
    assert!(openapi::validate(&spec, &unauth, &body).is_empty());
    let typo = json!({"error_type": "UNAUTHENTICATED", "mesages": []});
    let errors = openapi::validate(&spec, &unauth, &typo);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("missing required property \"messages\"")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("$.mesages: unknown property")),
        "{errors:?}"
    );
}

#[test]
fn datetime_pattern_is_strict() {
    assert!(is_vapi_datetime("2024-05-02T09:14:03.512Z"));
    assert!(!is_vapi_datetime("2024-05-02T09:14:03Z"));
    assert!(!is_vapi_datetime("2024-05-02T09:14:03.512+00:00"));
    assert!(!is_vapi_datetime("2024-05-02T09:14:03.5123Z"));
}

// ---------------------------------------------------------------------------------------------
// Snapshot service

/// A snapshot-service task read with the context's session.
async fn snap_task(ctx: &mut Ctx, id: &str, expected: u16) -> Value {
    let path = format!("/snapservice/tasks/{id}");
    ctx.get(&path, "/snapservice/tasks/{task}", expected).await
}

/// A snapshot-service listing (`query` starts with `?`) with the context's session.
async fn snap_list(ctx: &mut Ctx, query: &str, expected: u16) -> Value {
    let path = format!("/snapservice/tasks{query}");
    ctx.get(&path, "/snapservice/tasks", expected).await
}

#[tokio::test]
async fn snapservice_json_matches_the_vendor_schema() {
    let Some((spec, clock, sim)) = spec_and_sim(SNAP_SPEC_FILE).await else {
        return;
    };
    let snap = &sim.snapservice;
    let api = format!("{}/api", snap.url());
    let mut ctx = Ctx::new(
        spec,
        api.clone(),
        "/snapservice/sessions",
        SNAP_SESSION_HEADER,
    );
    let client = ctx.client.clone();

    // --- sessions
    let sid = ctx.open_session(snap).await;

    // --- get, one task per status
    for (id, status) in [
        (SNAP_DEMO_PENDING_TASK, "PENDING"),
        (SNAP_DEMO_RUNNING_TASK, "RUNNING"),
        (SNAP_DEMO_BLOCKED_TASK, "BLOCKED"),
        (SNAP_DEMO_SUCCEEDED_TASK, "SUCCEEDED"),
        (SNAP_DEMO_FAILED_TASK, "FAILED"),
    ] {
        let info = snap_task(&mut ctx, id, 200).await;
        assert_eq!(info["status"], status, "{id}");
        assert_eq!(info["cancelable"], false, "snapservice has no cancel");
        let v = status_rule_violations(&info, false);
        assert!(v.is_empty(), "{id}: {v:?}\n{info:#}");
    }
    let ok = snap_task(&mut ctx, SNAP_DEMO_SUCCEEDED_TASK, 200).await;
    assert_eq!(ok["vc_task"], "task-88231");
    assert_eq!(
        ok["service"],
        "com.vmware.snapservice.clusters.protection_groups"
    );
    let failed = snap_task(&mut ctx, SNAP_DEMO_FAILED_TASK, 200).await;
    ctx.assert_component(&failed["error"], "Vapi.Std.Errors.Error");
    let nf = snap_task(&mut ctx, "no-such-task", 404).await;
    assert_eq!(nf["error_type"], "NOT_FOUND");
    assert_eq!(nf["messages"][0]["args"], json!(["no-such-task"]));

    // --- time moves the pending one through RUNNING to SUCCEEDED
    clock.advance(secs(4 * 60));
    let mid = snap_task(&mut ctx, SNAP_DEMO_PENDING_TASK, 200).await;
    assert_eq!(mid["status"], "RUNNING");
    assert_eq!(mid["progress"]["completed"], 50);
    clock.advance(secs(2 * 60));
    let done = snap_task(&mut ctx, SNAP_DEMO_PENDING_TASK, 200).await;
    assert!(status_rule_violations(&done, false).is_empty());
    assert_eq!(done["status"], "SUCCEEDED");

    // --- list with repeated keys
    let all_services: String = SNAP_DEMO_SERVICES
        .iter()
        .map(|s| format!("services={s}&"))
        .collect();
    let all = snap_list(&mut ctx, &format!("?{all_services}"), 200).await;
    let items = all["items"].as_array().cloned().unwrap_or_default();
    assert!(items.len() >= 8, "{} items", items.len());
    for item in &items {
        let v = status_rule_violations(&item["info"], false);
        assert!(v.is_empty(), "{}: {v:?}", item["task"]);
    }
    assert!(items.iter().any(|i| i["info"].get("vc_task").is_some()));
    let running = snap_list(
        &mut ctx,
        &format!("?{all_services}status=RUNNING&status=BLOCKED"),
        200,
    )
    .await;
    let running = running["items"].as_array().cloned().unwrap_or_default();
    assert!(running.iter().any(|i| i["task"] == SNAP_DEMO_RUNNING_TASK));
    assert!(running.iter().any(|i| i["task"] == SNAP_DEMO_BLOCKED_TASK));
    assert!(
        running
            .iter()
            .all(|i| matches!(i["info"]["status"].as_str(), Some("RUNNING" | "BLOCKED")))
    );
    let by_id = snap_list(
        &mut ctx,
        &format!("?tasks={SNAP_DEMO_SUCCEEDED_TASK}&tasks=unknown&operations=create"),
        200,
    )
    .await;
    assert_eq!(
        by_id,
        json!({"items": [{"task": SNAP_DEMO_SUCCEEDED_TASK, "info": ok}]})
    );
    let no_filter = snap_list(&mut ctx, "?status=RUNNING", 400).await;
    assert_eq!(no_filter["error_type"], "INVALID_ARGUMENT");
    let bad_status = snap_list(&mut ctx, &format!("?{all_services}status=running"), 400).await;
    assert_eq!(bad_status["error_type"], "INVALID_ARGUMENT");
    add_bulk(snap.tasks(), "com.vmware.snapservice.test.Bulk");
    let too_many = snap_list(&mut ctx, "?services=com.vmware.snapservice.test.Bulk", 500).await;
    assert_eq!(too_many["error_type"], "RESOURCE_INACCESSIBLE");

    // --- no cancel operation
    let cancel = format!("{api}/snapservice/tasks/{SNAP_DEMO_RUNNING_TASK}?action=cancel");
    let req = client.post(cancel).header(SNAP_SESSION_HEADER, &sid);
    let body = ctx
        .call_undeclared(req, 404, "Vapi.Std.Errors.OperationNotFound")
        .await;
    assert_eq!(body["error_type"], "OPERATION_NOT_FOUND");
    assert_eq!(snap.requests(SNAP_ROUTE_OTHER), 1);

    // --- faults, 401, expiry and logout
    snap.inject(
        SNAP_ROUTE_TASK_GET,
        Fault::Status {
            status: 503,
            body: "{\"error_type\":\"SERVICE_UNAVAILABLE\",\"messages\":[]}".into(),
        },
    );
    let unavailable = snap_task(&mut ctx, SNAP_DEMO_RUNNING_TASK, 503).await;
    assert_eq!(unavailable["error_type"], "SERVICE_UNAVAILABLE");
    let task = format!("{api}/snapservice/tasks/{SNAP_DEMO_RUNNING_TASK}");
    let path = "/snapservice/tasks/{task}";
    ctx.refused_without_session(snap, &task, path, SNAP_ROUTE_TASK_GET)
        .await;
    let sid2 = ctx.relogin(snap).await;
    ctx.idle_expiry_and_logout(snap, &clock, &sid2).await;
    assert_eq!(snap.logins(), 3);
    assert_eq!(
        sim.vcenter.total_requests(),
        0,
        "each part has its own listener"
    );
    assert!(ctx.checked > 25, "validated {} bodies", ctx.checked);
    println!(
        "validated {} snapservice response bodies against {SNAP_SPEC_FILE}",
        ctx.checked
    );
}

// ---------------------------------------------------------------------------------------------
// Script Runtime Service

/// `dddd-dd-ddTdd:dd:dd.ddddddd+03:00` (.NET round-trip format, local offset).
fn is_srs_datetime(s: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:dd.ddddddd+03:00";
    s.len() == pattern.len()
        && s.bytes().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            other => c == *other,
        })
}

/// The API key a successful SRS login answers with.
fn api_key(login: &reqwest::Response) -> String {
    let key = login.headers()[SRS_API_KEY_HEADER].to_str();
    key.expect("an ASCII API key").to_string()
}

/// A runspace read with the context's API key.
async fn runspace(ctx: &mut Ctx, id: &str, expected: u16) -> Value {
    let path = format!("/api/runspaces/{id}");
    ctx.get(&path, "/api/runspaces/{id}", expected).await
}

async fn create_runspace(ctx: &mut Ctx, body: Value, expected: u16) -> Value {
    let url = format!("{}/api/runspaces", ctx.api);
    let req = ctx.authed(ctx.client.post(url).json(&body));
    ctx.call(req, "/api/runspaces", "post", expected).await
}

async fn delete_runspace(ctx: &mut Ctx, id: &str, expected: u16) -> Value {
    let url = format!("{}/api/runspaces/{id}", ctx.api);
    let req = ctx.authed(ctx.client.delete(url));
    ctx.call(req, "/api/runspaces/{id}", "delete", expected)
        .await
}

#[tokio::test]
async fn script_runtime_json_matches_the_vendor_schema() {
    let Some((spec, clock, sim)) = spec_and_sim(SRS_SPEC_FILE).await else {
        return;
    };
    let srs = &sim.script_runtime;
    let base = srs.url();
    let mut ctx = Ctx::new(spec, base.clone(), "", SRS_API_KEY_HEADER);
    let client = ctx.client.clone();

    // --- login: 401 is empty with a challenge (the spec declares an ErrorDetails body; the
    // reference says the real server's ASP.NET challenge is most likely empty).
    let login = format!("{base}/api/auth/login");
    let r = basic_login(srs, &login, "wrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"SRS endpoint\""
    );
    assert_eq!(r.text().await.unwrap(), "");
    let r = basic_login(srs, &login, srs.password()).await;
    assert_eq!(r.status(), 200);
    let declared = openapi::declares_status(&ctx.spec, "/api/auth/login", "post", 200);
    assert!(declared);
    let key = api_key(&r);
    assert_eq!(r.text().await.unwrap(), "", "login answers an empty body");
    assert_eq!(srs.logins(), 1);
    ctx.sid = key.clone();
    let runspaces = format!("{base}/api/runspaces");

    // --- seeded: one ready, one in error
    let list = ctx.get("/api/runspaces", "/api/runspaces", 200).await;
    let list = list.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2);
    let get = |id: &str| {
        client
            .get(format!("{runspaces}/{id}"))
            .header(SRS_API_KEY_HEADER, &key)
    };
    let ready = runspace(&mut ctx, SRS_DEMO_READY_RUNSPACE, 200).await;
    assert_eq!(ready["state"], "ready");
    assert!(ready["vc_connection_script_id"].is_string());
    let error = runspace(&mut ctx, SRS_DEMO_ERROR_RUNSPACE, 200).await;
    assert_eq!(error["state"], "error");
    assert_eq!(error["error_details"]["code"], 500);
    assert!(error.get("name").is_none(), "nulls are omitted: {error}");

    // --- create: 202 creating, then ready (3 s; 8 s with the connection script)
    let create = |body: Value| {
        client
            .post(&runspaces)
            .header(SRS_API_KEY_HEADER, &key)
            .json(&body)
    };
    let plain = create_runspace(&mut ctx, json!({}), 202).await;
    assert_eq!(plain["state"], "creating");
    assert!(plain.get("name").is_none(), "{plain}");
    assert_eq!(plain["run_vc_connection_script"], false);
    assert!(
        is_srs_datetime(plain["creation_time"].as_str().unwrap_or("")),
        "{plain}"
    );
    let plain_id = plain["id"].as_str().unwrap_or_default().to_string();
    let req = create(json!({"name": "nightly-report", "run_vc_connection_script": true}));
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert!(
        resp.headers().get("location").is_none(),
        "no Location header"
    );
    let scripted: Value = resp.json().await.unwrap();
    let scripted_id = scripted["id"].as_str().unwrap_or_default().to_string();
    let failing = create_runspace(&mut ctx, json!({"name": "fail-on-purpose"}), 202).await;
    let failing_id = failing["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(srs.runspaces_created(), 3);

    clock.advance(secs(3));
    let p = runspace(&mut ctx, &plain_id, 200).await;
    assert_eq!(p["state"], "ready");
    assert!(p.get("vc_connection_script_id").is_none());
    let sc = runspace(&mut ctx, &scripted_id, 200).await;
    assert_eq!(sc["state"], "creating");
    assert!(sc.get("vc_connection_script_id").is_none());
    let f = runspace(&mut ctx, &failing_id, 200).await;
    assert_eq!(f["state"], "error");
    assert_eq!(f["error_details"]["code"], 500);
    clock.advance(secs(5));
    let sc = runspace(&mut ctx, &scripted_id, 200).await;
    assert_eq!(sc["state"], "ready");
    assert_eq!(sc["name"], "nightly-report");
    assert!(sc["vc_connection_script_id"].is_string());
    assert_eq!(sc["creation_time"], scripted["creation_time"]);

    let list = ctx.get("/api/runspaces", "/api/runspaces", 200).await;
    assert_eq!(list.as_array().map(Vec::len), Some(5));

    // --- errors: 404 code 2030 on get, 500 code 2040 on delete of an unknown id
    let nf = runspace(&mut ctx, "deadbeef", 404).await;
    assert_eq!(
        nf,
        json!({"code": 2030, "error_message": "Runspace with id 'deadbeef' not found"})
    );
    assert_eq!(delete_runspace(&mut ctx, &plain_id, 200).await, Value::Null);
    runspace(&mut ctx, &plain_id, 404).await;
    let gone = delete_runspace(&mut ctx, &plain_id, 500).await;
    assert_eq!(gone["code"], 2040);

    // --- max runspaces per user: 500 code 2020, not counted as created
    let mut made = srs.runspaces_created();
    loop {
        let resp = create(json!({"name": "filler"})).send().await.unwrap();
        if resp.status() != 202 {
            assert_eq!(resp.status(), 500);
            let body: Value = resp.json().await.unwrap();
            let schema = openapi::response_schema(&ctx.spec, "/api/runspaces", "post", 500)
                .cloned()
                .unwrap_or(Value::Null);
            assert!(
                openapi::validate(&ctx.spec, &schema, &body).is_empty(),
                "{body}"
            );
            assert_eq!(body["code"], 2020);
            break;
        }
        made += 1;
        assert!(made < 100, "no runspace limit");
    }
    assert_eq!(srs.runspaces_created(), made);

    // --- 401 on a missing or expired key, then logout revokes the key
    let r = client.get(&runspaces).send().await.unwrap();
    assert_eq!(r.status(), 401);
    clock.advance(secs(31 * 60));
    assert_eq!(
        get(SRS_DEMO_READY_RUNSPACE).send().await.unwrap().status(),
        401
    );
    let key2 = api_key(&basic_login(srs, &login, srs.password()).await);
    let logout = client.post(format!("{base}/api/auth/logout"));
    let logout = logout.header(SRS_API_KEY_HEADER, &key2);
    assert_eq!(logout.send().await.unwrap().status(), 200);
    let revoked = client.get(&runspaces).header(SRS_API_KEY_HEADER, &key2);
    assert_eq!(revoked.send().await.unwrap().status(), 401);
    assert_eq!(
        srs.requests(SRS_ROUTE_RUNSPACE_CREATE),
        made + 1,
        "refused creates are counted as requests"
    );
    assert!(ctx.checked > 10, "validated {} bodies", ctx.checked);
    println!(
        "validated {} SRS response bodies against {SRS_SPEC_FILE}",
        ctx.checked
    );
}

#[tokio::test]
async fn every_part_has_its_own_listener_and_shares_the_tls_choice() {
    let sim = Simulator::start(SimOptions {
        tls: true,
        clock: SimClock::manual(),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    let urls = [
        sim.vcenter.url(),
        sim.snapservice.url(),
        sim.cloud_director.url(),
        sim.script_runtime.url(),
    ];
    for (i, u) in urls.iter().enumerate() {
        assert!(u.starts_with("https://127.0.0.1:"), "{u}");
        assert!(!urls[..i].contains(u), "{u} reused");
    }
    let pem = sim.script_runtime.ca_pem();
    let client = trusting(&pem.expect("tls has a certificate"));
    let r = client
        .post(format!("{}/api/auth/login", sim.script_runtime.url()))
        .basic_auth(
            sim.script_runtime.username(),
            Some(sim.script_runtime.password()),
        )
        .send()
        .await
        .expect("TLS handshake with the self-signed certificate");
    assert_eq!(r.status(), 200);
    sim.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        client
            .post(format!("{}/api/auth/login", sim.script_runtime.url()))
            .send()
            .await
            .is_err(),
        "shutdown stops every part"
    );
}
