//! Cloud Director unit tests over real HTTP: task shape and statuses, the clock, cancel,
//! visibility, `Accept` negotiation, logins, tokens, logouts and expiry, the query service and
//! FIQL filters.

use chrono::Utc;

use super::*;
use crate::simulator::SimClock;
use crate::simulator::clock::utc;
use crate::simulator::web::encode_query_value as percent_encode;

const ACCEPT: &str = "application/*+json;version=38.0";

struct T {
    sim: CloudDirectorSim,
    clock: SimClock,
    http: reqwest::Client,
    token: String,
}

impl T {
    async fn start() -> T {
        let clock = SimClock::manual();
        let opts = SimOptions {
            clock: clock.clone(),
            ..SimOptions::default()
        };
        let sim = CloudDirectorSim::start(&opts).await.unwrap();
        let http = reqwest::Client::new();
        let mut t = T {
            sim,
            clock,
            http,
            token: String::new(),
        };
        t.token = t.login("acme", false).await;
        t
    }

    async fn login(&self, org: &str, provider: bool) -> String {
        let r = self
            .login_request(org, provider, self.sim.password())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[TOKEN_TYPE_HEADER], "Bearer");
        r.headers()[ACCESS_TOKEN_HEADER]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// A Basic `user@org` login with a cloudapi `Accept` version, to the tenant or provider
    /// endpoint.
    fn login_request(&self, org: &str, provider: bool, password: &str) -> reqwest::RequestBuilder {
        self.login_as(self.sim.username(), org, provider, password)
    }

    /// [`T::login_request`] as `user`.
    fn login_as(
        &self,
        user: &str,
        org: &str,
        provider: bool,
        password: &str,
    ) -> reqwest::RequestBuilder {
        let path = if provider { "/provider" } else { "" };
        self.http
            .post(format!("{}/cloudapi/1.0.0/sessions{path}", self.sim.url()))
            .basic_auth(format!("{user}@{org}"), Some(password))
            .header("accept", "application/json;version=38.0")
    }

    /// A globex tenant session of `ops@globex`: its bearer token.
    async fn login_globex(&self) -> String {
        let r = self
            .login_as(VCD_GLOBEX_USER, VCD_GLOBEX_ORG, false, VCD_GLOBEX_PASSWORD)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let token = r.headers()[ACCESS_TOKEN_HEADER]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["org"]["name"].as_str(), body["user"]["name"].as_str()),
            (Some(VCD_GLOBEX_ORG), Some(VCD_GLOBEX_USER))
        );
        token
    }

    /// `method path` with `token` as bearer and the test `Accept`: the status and JSON body
    /// (`Null` when there is none).
    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.sim.url()))
            .bearer_auth(token)
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get_as(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, &self.token).await
    }

    async fn task(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/task/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn cancel(&self, id: &str) -> (u16, Value) {
        let path = format!("/api/task/{id}/action/cancel");
        self.call(reqwest::Method::POST, &path, &self.token).await
    }
}

/// The entries of the array `v[key]` (none when it is absent or not an array).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// The string `field` of every entry of `v[key]` that has one.
fn strings<'a>(v: &'a Value, key: &str, field: &str) -> Vec<&'a str> {
    items(v, key).filter_map(|e| e[field].as_str()).collect()
}

/// `dddd-dd-ddTdd:dd:dd.ddd+dddd` (offset without colon).
fn is_vcd_time(s: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:dd.ddd+dddd";
    s.len() == pattern.len()
        && s.bytes().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            b'+' => c == b'+' || c == b'-',
            other => c == *other,
        })
}

#[tokio::test]
async fn seeded_tasks_use_vcd_status_strings_and_task_shape() {
    let t = T::start().await;
    for (id, status) in [
        (VCD_DEMO_RUNNING_TASK, "running"),
        (VCD_DEMO_CANCELABLE_TASK, "running"),
        (VCD_DEMO_QUEUED_TASK, "queued"),
        (VCD_DEMO_PRE_RUNNING_TASK, "preRunning"),
        (VCD_DEMO_SUCCEEDED_TASK, "success"),
        (VCD_DEMO_ERROR_TASK, "error"),
        (VCD_DEMO_ABORTED_TASK, "aborted"),
    ] {
        let task = t.task(id).await;
        assert_eq!(task["status"], status, "{id}");
        assert_eq!(task["id"], format!("urn:vcloud:task:{id}"));
        assert_eq!(task["href"], format!("{}/api/task/{id}", t.sim.url()));
        assert_eq!(task["type"], TASK_TYPE);
        assert_eq!(task["name"], "task");
        assert_eq!(task["organization"]["name"], "acme");
        assert_eq!(task["organization"]["otherAttributes"], json!({}));
        assert_eq!(task["organization"]["vCloudExtension"], json!([]));
        for key in [
            "operationKey",
            "description",
            "params",
            "endTime",
            "error",
            "tasks",
        ] {
            assert!(
                task.get(key).is_some(),
                "{id}: {key} must be present (maybe null)"
            );
        }
        assert!(
            is_vcd_time(task["startTime"].as_str().unwrap_or("")),
            "{task}"
        );
        assert!(is_vcd_time(task["expiryTime"].as_str().unwrap_or("")));
        assert!(task["startTime"].as_str().unwrap_or("").ends_with("+0200"));
        let terminal = matches!(status, "success" | "error" | "aborted");
        assert_eq!(task["endTime"].is_string(), terminal, "{id}: {task}");
        if terminal {
            assert!(is_vcd_time(task["endTime"].as_str().unwrap_or("")));
        }
    }
    let err = t.task(VCD_DEMO_ERROR_TASK).await["error"].clone();
    assert_eq!(err["majorErrorCode"], 500);
    assert_eq!(err["minorErrorCode"], "INTERNAL_SERVER_ERROR");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("storage policy")
    );
    assert!(err["stackTrace"].is_string());
    let ok = t.task(VCD_DEMO_SUCCEEDED_TASK).await;
    assert_eq!(ok["vcTaskList"]["vcTask"][0]["name"], "task-88231");
    assert_eq!(ok["progress"], 100);
    assert_eq!(ok["owner"]["name"], "web-01");
    assert!(ok["error"].is_null());
    assert!(t.task(VCD_DEMO_PRE_RUNNING_TASK).await["progress"].is_null());
    assert_eq!(t.task(VCD_DEMO_ABORTED_TASK).await["cancelRequested"], true);
    let parent = t.task(VCD_DEMO_PARENT_TASK).await;
    assert_eq!(items(&parent["tasks"], "task").count(), 2);
    let sub_status = strings(&parent["tasks"], "task", "status");
    assert_eq!(sub_status, ["success", "running"]);
}

#[tokio::test]
async fn progress_and_status_move_with_the_clock() {
    let t = T::start().await;
    let p0 = t.task(VCD_DEMO_RUNNING_TASK).await["progress"].as_u64();
    t.clock.advance(Duration::from_secs(11 * 60));
    let p1 = t.task(VCD_DEMO_RUNNING_TASK).await["progress"].as_u64();
    assert!(p1 > p0, "{p0:?} -> {p1:?}");
    assert_eq!(t.task(VCD_DEMO_QUEUED_TASK).await["status"], "running");
    // Two steps, each within the 30-minute idle timeout of the session.
    t.clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(t.task(VCD_DEMO_QUEUED_TASK).await["status"], "success");
    t.clock.advance(Duration::from_secs(20 * 60));
    let done = t.task(VCD_DEMO_RUNNING_TASK).await;
    assert_eq!(
        (done["status"].as_str(), done["progress"].as_u64()),
        (Some("success"), Some(100))
    );
}

#[tokio::test]
async fn cancel_link_only_while_cancellable_and_cancel_aborts_after_a_second() {
    let t = T::start().await;
    let task = t.task(VCD_DEMO_CANCELABLE_TASK).await;
    let href = format!(
        "{}/api/task/{VCD_DEMO_CANCELABLE_TASK}/action/cancel",
        t.sim.url()
    );
    assert_eq!(
        task["link"],
        json!([{"otherAttributes": {}, "href": href, "id": null, "type": null, "name": "task",
                "rel": "task:cancel", "model": null, "vCloudExtension": []}])
    );
    assert_eq!(task["cancelRequested"], false);
    assert_eq!(t.task(VCD_DEMO_RUNNING_TASK).await["link"], json!([]));
    assert_eq!(t.task(VCD_DEMO_SUCCEEDED_TASK).await["link"], json!([]));

    assert_eq!(t.cancel(VCD_DEMO_CANCELABLE_TASK).await.0, 204);
    let after = t.task(VCD_DEMO_CANCELABLE_TASK).await;
    assert_eq!(after["cancelRequested"], true);
    assert_eq!(after["status"], "running");
    assert_eq!(after["link"], json!([]));
    let (status, again) = t.cancel(VCD_DEMO_CANCELABLE_TASK).await;
    assert_eq!(
        (status, again["minorErrorCode"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    t.clock.advance(CANCEL_DELAY);
    let aborted = t.task(VCD_DEMO_CANCELABLE_TASK).await;
    assert_eq!(aborted["status"], "aborted");
    assert!(aborted["endTime"].is_string());

    let (status, done) = t.cancel(VCD_DEMO_SUCCEEDED_TASK).await;
    assert_eq!(
        (status, done["minorErrorCode"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    assert_eq!(done["majorErrorCode"], 400);
    assert_eq!(
        t.cancel(VCD_DEMO_RUNNING_TASK).await.0,
        400,
        "not cancelable"
    );
    let (status, unknown) = t.cancel("00000000-0000-4000-8000-000000000000").await;
    assert_eq!(
        (status, unknown["minorErrorCode"].as_str()),
        (403, Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN"))
    );
}

#[tokio::test]
async fn unknown_and_other_org_tasks_are_forbidden_and_404_is_injectable() {
    let t = T::start().await;
    let (s, body) = t.get(&format!("/api/task/{VCD_DEMO_OTHER_ORG_TASK}")).await;
    assert_eq!(
        (s, body["minorErrorCode"].as_str()),
        (403, Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN"))
    );
    assert_eq!(body["majorErrorCode"], 403);
    let provider = t.login(PROVIDER_ORG, true).await;
    let (s, body) = t
        .get_as(&format!("/api/task/{VCD_DEMO_OTHER_ORG_TASK}"), &provider)
        .await;
    assert_eq!(
        (s, body["organization"]["name"].as_str()),
        (200, Some("globex"))
    );
    t.sim
        .inject(ROUTE_TASK_GET, resource_not_found_fault("abc"));
    let (s, body) = t.get("/api/task/abc").await;
    assert_eq!(
        (s, body["minorErrorCode"].as_str()),
        (404, Some("RESOURCE_NOT_FOUND"))
    );
    assert_eq!(t.sim.requests(ROUTE_TASK_GET), 3);
}

#[tokio::test]
async fn each_org_sees_only_its_own_tasks_and_the_provider_all() {
    let t = T::start().await;
    let ops = t.login_globex().await;
    assert_eq!(ops.split('.').count(), 3, "JWT-shaped");
    let (s, session) = t.get_as("/cloudapi/1.0.0/sessions/current", &ops).await;
    assert_eq!((s, session["org"]["name"].as_str()), (200, Some("globex")));
    assert_eq!(session["roles"], json!(["Organization Administrator"]));
    assert_eq!(t.sim.sessions_of("ops@globex"), 1);
    assert_eq!(t.sim.live_sessions(), 2, "acme's and globex's");

    // globex: its own tasks only, the bearer token alone is enough.
    let task = |id: &str| format!("/api/task/{id}");
    let (s, own) = t.get_as(&task(VCD_GLOBEX_TASK), &ops).await;
    assert_eq!((s, own["status"].as_str()), (200, Some("running")));
    assert_eq!(own["organization"]["name"], "globex");
    assert_eq!(own["user"]["name"], "ops");
    assert_eq!(t.get_as(&task(VCD_DEMO_OTHER_ORG_TASK), &ops).await.0, 200);
    let forbidden = |(s, body): (u16, Value)| {
        assert_eq!(
            (
                s,
                body["minorErrorCode"].as_str(),
                body["majorErrorCode"].as_u64()
            ),
            (403, Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN"), Some(403)),
            "{body}"
        );
        body["message"].as_str().unwrap_or("").to_string()
    };
    let msg = forbidden(t.get_as(&task(VCD_DEMO_RUNNING_TASK), &ops).await);
    assert!(msg.contains(VCD_DEMO_RUNNING_TASK), "{msg}");
    let unknown = "00000000-0000-4000-8000-000000000000";
    let msg = forbidden(t.get_as(&task(unknown), &ops).await);
    assert!(
        msg.contains(unknown),
        "the same answer as an unknown id: {msg}"
    );
    let cancel = |id: &str| format!("/api/task/{id}/action/cancel");
    forbidden(
        t.call(
            reqwest::Method::POST,
            &cancel(VCD_DEMO_CANCELABLE_TASK),
            &ops,
        )
        .await,
    );
    assert_eq!(
        t.task(VCD_DEMO_CANCELABLE_TASK).await["cancelRequested"],
        false
    );
    let (s, listed) = t.get_as("/api/query?type=task", &ops).await;
    assert_eq!((s, listed["total"].as_u64()), (200, Some(2)));
    assert!(items(&listed, "record").all(|r| r["orgName"] == "globex"));
    forbidden(t.get_as("/api/query?type=adminTask", &ops).await);

    // acme: globex's tasks are forbidden, get and cancel, and not listed.
    forbidden(t.get(&task(VCD_GLOBEX_TASK)).await);
    forbidden(t.cancel(VCD_GLOBEX_TASK).await);
    let (_, acme) = t.get("/api/query?type=task&pageSize=128").await;
    assert_eq!(acme["total"], 11);
    assert!(items(&acme, "record").all(|r| r["orgName"] == "acme"));

    // globex cancels its own task; the provider sees both orgs.
    let (s, _) = t
        .call(reqwest::Method::POST, &cancel(VCD_GLOBEX_TASK), &ops)
        .await;
    assert_eq!(s, 204);
    let provider = t.login(PROVIDER_ORG, true).await;
    let (s, seen) = t.get_as(&task(VCD_GLOBEX_TASK), &provider).await;
    assert_eq!((s, seen["cancelRequested"].as_bool()), (200, Some(true)));
    assert_eq!(
        t.get_as(&task(VCD_DEMO_RUNNING_TASK), &provider).await.0,
        200
    );
    let (_, all) = t
        .get_as("/api/query?type=adminTask&pageSize=128", &provider)
        .await;
    let orgs: std::collections::BTreeSet<&str> = items(&all, "record")
        .filter_map(|r| r["orgName"].as_str())
        .collect();
    assert_eq!(orgs.into_iter().collect::<Vec<_>>(), ["acme", "globex"]);
}

#[tokio::test]
async fn globex_logins_need_its_own_user_org_and_password() {
    let t = T::start().await;
    let admin = t.sim.username().to_string();
    for (user, org, provider, password) in [
        (VCD_GLOBEX_USER, VCD_GLOBEX_ORG, false, "wrong"),
        (VCD_GLOBEX_USER, "acme", false, VCD_GLOBEX_PASSWORD),
        (VCD_GLOBEX_USER, VCD_GLOBEX_ORG, true, VCD_GLOBEX_PASSWORD),
        (VCD_GLOBEX_USER, PROVIDER_ORG, true, VCD_GLOBEX_PASSWORD),
        (admin.as_str(), VCD_GLOBEX_ORG, false, t.sim.password()),
        ("Ops", VCD_GLOBEX_ORG, false, VCD_GLOBEX_PASSWORD),
    ] {
        let r = t
            .login_as(user, org, provider, password)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{user}@{org} provider={provider}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["minorErrorCode"], "UNAUTHORIZED");
    }
    assert_eq!(t.sim.sessions_of("ops@globex"), 0);
    // The org is matched without regard to case, as the configured one is.
    let r = t
        .login_as(VCD_GLOBEX_USER, "GLOBEX", false, VCD_GLOBEX_PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(t.sim.sessions_of("ops@globex"), 1);
    assert_eq!(t.sim.logins(), 2, "acme's and this one");
}

#[tokio::test]
async fn accept_header_needs_a_supported_json_version() {
    let t = T::start().await;
    let url = format!("{}/api/task/{VCD_DEMO_RUNNING_TASK}", t.sim.url());
    for accept in [
        None,
        Some("application/json"),
        Some("application/*+json"),
        Some("application/*+json;version=20.0"),
        Some("application/*+xml;version=38.0"),
    ] {
        let mut req = t.http.get(&url).bearer_auth(&t.token);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 406, "{accept:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["minorErrorCode"], "NOT_ACCEPTABLE", "{accept:?}");
        assert_eq!(body["majorErrorCode"], 406);
    }
    for accept in [
        "application/json;version=40.0",
        "application/vnd.vmware.vcloud.task+json;version=37.0",
        "text/html, application/*+json;version=36.0",
    ] {
        let r = t
            .http
            .get(&url)
            .bearer_auth(&t.token)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{accept}");
    }
    // Login without a version is refused with the cloudapi error body.
    let r = t
        .http
        .post(format!("{}/cloudapi/1.0.0/sessions", t.sim.url()))
        .basic_auth(format!("{}@acme", t.sim.username()), Some(t.sim.password()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["minorErrorCode"], "NOT_ACCEPTABLE");
    assert!(body.get("majorErrorCode").is_none());
}

#[tokio::test]
async fn logins_tokens_logout_and_expiry() {
    let t = T::start().await;
    let cloudapi = |path: &str| format!("{}{path}", t.sim.url());
    let bad = t
        .login_request("acme", false, "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(
        body,
        json!({"minorErrorCode": "UNAUTHORIZED", "message": "Invalid credentials.", "stackTrace": null})
    );
    // System users need the provider endpoint; tenants cannot use it.
    for (org, provider) in [("System", false), ("acme", true)] {
        let r = t.login_request(org, provider, t.sim.password());
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{org} provider={provider}");
    }
    let (s, session) = t.get("/cloudapi/1.0.0/sessions/current").await;
    assert_eq!(s, 200);
    assert_eq!(session["org"]["name"], "acme");
    assert_eq!(session["user"]["name"], t.sim.username());
    assert_eq!(t.token.split('.').count(), 3, "JWT-shaped");

    // API token → access token, for tenant and provider.
    let exchange = |path: String, refresh: String| {
        t.http
            .post(cloudapi(&path))
            .header("accept", "application/json;version=38.0")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&refresh_token={}",
                percent_encode(&refresh)
            ))
            .send()
    };
    let r = exchange("/oauth/tenant/acme/token".into(), t.sim.api_token().into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: Value = r.json().await.unwrap();
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 1800);
    let access = tok["access_token"].as_str().unwrap_or("").to_string();
    assert_eq!(
        t.get_as(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}"), &access)
            .await
            .0,
        200
    );
    let r = exchange("/oauth/tenant/acme/token".into(), "nope".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = exchange(
        "/oauth/tenant/globex/token".into(),
        t.sim.api_token().into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = exchange("/oauth/provider/token".into(), t.sim.api_token().into())
        .await
        .unwrap();
    let provider = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (s, _) = t.get_as("/api/query?type=adminTask", &provider).await;
    assert_eq!(s, 200);
    assert_eq!(t.sim.logins(), 3);

    // The legacy header works as well; logout and expiry end a token.
    let r = t
        .http
        .get(cloudapi(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}")))
        .header(ACCESS_TOKEN_HEADER, &access)
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = t
        .http
        .delete(cloudapi("/cloudapi/1.0.0/sessions/current"))
        .bearer_auth(&access)
        .header("accept", "application/json;version=38.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, body) = t
        .get_as(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}"), &access)
        .await;
    assert_eq!((s, body["majorErrorCode"].as_u64()), (401, Some(401)));
    t.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(
        t.get(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}")).await.0,
        401
    );
    let fresh = t.login("acme", false).await;
    t.sim.expire_sessions();
    assert_eq!(t.get_as("/api/query?type=task", &fresh).await.0, 401);
}

#[tokio::test]
async fn query_pages_with_links_and_clamps_page_size() {
    let t = T::start().await;
    let (s, all) = t.get("/api/query?type=task&format=records").await;
    assert_eq!(s, 200);
    let total = all["total"].as_u64().unwrap_or(0);
    assert_eq!(total, 11, "acme's tasks only");
    assert_eq!(all["pageSize"], 25);
    assert_eq!(all["link"], json!([]));
    let rec = &all["record"][0];
    assert_eq!(rec["_type"], "QueryResultTaskRecordType");
    assert_eq!(rec["name"], "vappDeploy");
    assert_eq!(
        rec["operationFull"]
            .as_str()
            .map(|s| s.starts_with("Starting")),
        Some(true)
    );
    assert!(rec["startDate"].as_str().unwrap_or("").ends_with("+02:00"));
    assert!(rec["endDate"].is_null());
    assert_eq!(rec["objectName"], "web-01");

    let (_, p1) = t
        .get("/api/query?type=task&page=1&pageSize=4&sortDesc=startDate")
        .await;
    assert_eq!(p1["record"].as_array().map(Vec::len), Some(4));
    assert_eq!(strings(&p1, "link", "rel"), ["nextPage", "lastPage"]);
    let next = p1["link"][0]["href"].as_str().unwrap_or("");
    assert!(
        next.contains("page=2") && next.contains("sortDesc=startDate"),
        "{next}"
    );
    let last = p1["link"][1]["href"].as_str().unwrap_or("");
    assert!(last.contains("page=3"), "{last}");
    let dates = strings(&p1, "record", "startDate");
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted, "newest first");
    let (_, p3) = t.get("/api/query?type=task&page=3&pageSize=4").await;
    assert_eq!(p3["record"].as_array().map(Vec::len), Some(3));
    assert_eq!(strings(&p3, "link", "rel"), ["firstPage", "previousPage"]);
    let (s, beyond) = t.get("/api/query?type=task&page=9&pageSize=4").await;
    assert_eq!(
        (s, beyond["record"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (_, big) = t.get("/api/query?type=task&pageSize=1000").await;
    assert_eq!(big["pageSize"], QUERY_MAX_PAGE_SIZE);
    assert_eq!(t.get("/api/query?type=task&page=0").await.0, 400);
    assert_eq!(t.get("/api/query?type=vm").await.0, 400);
    let (s, body) = t.get("/api/query?type=adminTask").await;
    assert_eq!(
        (s, body["minorErrorCode"].as_str()),
        (403, Some("ACCESS_TO_RESOURCE_IS_FORBIDDEN"))
    );
    let provider = t.login(PROVIDER_ORG, true).await;
    let (_, admin) = t.get_as("/api/query?type=adminTask", &provider).await;
    assert_eq!(admin["total"], 13, "acme's 11 and globex's 2");
    assert_eq!(
        admin["record"][0]["_type"],
        "QueryResultAdminTaskRecordType"
    );
}

#[tokio::test]
async fn fiql_filters_select_records_and_bad_filters_are_400() {
    let t = T::start().await;
    let names = |v: &Value| -> Vec<String> {
        items(v, "record")
            .filter_map(|r| {
                r["href"]
                    .as_str()
                    .and_then(|h| h.rsplit('/').next())
                    .map(str::to_string)
            })
            .collect()
    };
    let q = |f: &str| format!("/api/query?type=task&filter={}", percent_encode(f));
    let (_, running) = t.get(&q("status==running")).await;
    assert!(items(&running, "record").all(|r| r["status"] == "running"));
    assert_eq!(running["total"], 4);
    let (_, mix) = t
        .get(&q("(status==success,status==error);name==vdcUpdateVdc"))
        .await;
    assert_eq!(names(&mix), [VCD_DEMO_ERROR_TASK]);
    let (_, or_and) = t
        .get(&q("status==aborted,status==queued;objectName==db-01"))
        .await;
    assert_eq!(
        names(&or_and),
        [VCD_DEMO_QUEUED_TASK, VCD_DEMO_ABORTED_TASK]
    );
    let (_, by_id) = t
        .get(&q(&format!(
            "id==urn:vcloud:task:{VCD_DEMO_SUCCEEDED_TASK}"
        )))
        .await;
    assert_eq!(names(&by_id), [VCD_DEMO_SUCCEEDED_TASK]);
    let (_, glob) = t.get(&q("ownerName==app-*;status!=running")).await;
    assert_eq!(
        names(&glob),
        [
            VCD_DEMO_PRE_RUNNING_TASK,
            "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b68"
        ]
    );
    let cutoff = vcd_record_datetime(t.clock.wall(Duration::ZERO) - chrono::Duration::minutes(35));
    let (s, recent) = t
        .get(&q(&format!(
            "startDate=gt={cutoff};serviceNamespace==com.vmware.vcloud"
        )))
        .await;
    assert_eq!(s, 200);
    assert!(!names(&recent).contains(&VCD_DEMO_SUCCEEDED_TASK.to_string()));
    assert!(names(&recent).contains(&VCD_DEMO_ABORTED_TASK.to_string()));
    for bad in [
        "colour==red",
        "status=running",
        "(status==running",
        "status==",
        "name=gt=x",
        "startDate=lt=yesterday",
    ] {
        let (s, body) = t.get(&q(bad)).await;
        assert_eq!(
            (s, body["minorErrorCode"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{bad}"
        );
    }
}

#[test]
fn datetimes_have_the_vcd_offsets() {
    let t = utc("2024-03-06T12:11:57.473Z");
    assert_eq!(vcd_datetime(t), "2024-03-06T14:11:57.473+0200");
    assert_eq!(vcd_record_datetime(t), "2024-03-06T14:11:57.473+02:00");
    assert_eq!(
        fiql::parse_date("2024-03-06T14:11:57.473+0200").map(|d| d.with_timezone(&Utc)),
        Some(t)
    );
    assert_eq!(
        fiql::parse_date("2024-03-06T14:11:57.473 02:00").map(|d| d.with_timezone(&Utc)),
        Some(t)
    );
}

#[tokio::test]
async fn legacy_logout_ends_the_session_and_needs_one() {
    let t = T::start().await;
    let url = format!("{}/api/session", t.sim.url());
    let delete = |token: Option<&str>| {
        let mut req = t.http.delete(&url).header("accept", ACCEPT);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let r = delete(Some(&t.token)).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.text().await.unwrap(), "");
    let (s, body) = t.get(&format!("/api/task/{VCD_DEMO_RUNNING_TASK}")).await;
    assert_eq!((s, body["majorErrorCode"].as_u64()), (401, Some(401)));
    // Again with the ended token, and with none: 401 with the legacy Error body.
    for token in [Some(t.token.as_str()), None] {
        let r = delete(token).await.unwrap();
        assert_eq!(r.status(), 401, "{token:?}");
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.vmware.vcloud.error+json;version=38.0"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (
                body["minorErrorCode"].as_str(),
                body["majorErrorCode"].as_u64()
            ),
            (Some("UNAUTHORIZED"), Some(401))
        );
    }
    assert_eq!(t.sim.requests(ROUTE_LEGACY_LOGOUT), 3);
    // Another session is untouched.
    let other = t.login("acme", false).await;
    assert_eq!(t.get_as("/api/query?type=task", &other).await.0, 200);
}

#[tokio::test]
async fn every_route_key_names_its_route() {
    use http::Method;

    use crate::simulator::part::probe::Probe;

    let p = Probe::<CloudDirector>::new();
    let keys = [
        ROUTE_LOGIN,
        ROUTE_PROVIDER_LOGIN,
        ROUTE_TENANT_TOKEN,
        ROUTE_PROVIDER_TOKEN,
        ROUTE_SESSION_CURRENT,
        ROUTE_LOGOUT,
        ROUTE_LEGACY_LOGOUT,
        ROUTE_TASK_GET,
        ROUTE_TASK_CANCEL,
        ROUTE_QUERY,
        ROUTE_VERSIONS,
    ];
    let unmatched = [
        (Method::GET, "/api/session"),
        (Method::POST, "/oauth/tenant/token"),
        (Method::GET, "/api/task/x/action/cancel"),
    ];
    p.assert_table(ACCESS_TOKEN_HEADER, &keys, &unmatched).await;
    let provider = p.key(Method::POST, "/cloudapi/1.0.0/sessions/provider/", None);
    assert_eq!(provider.await, ROUTE_PROVIDER_LOGIN);
}
