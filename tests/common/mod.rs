//! Test fixture shared by the end-to-end tests: the simulator and the gateway in-process on
//! ephemeral ports, and real tonic clients talking to it.
#![allow(dead_code)]

use std::{fmt::Debug, time::Duration};

use tonic::{Code, Response, Status, transport::Channel};
use tonic_types::{ErrorInfo, StatusExt};
use vmware_grpc_gateway::{
    config::{Config, ServerConfig, UpstreamConfig, UpstreamKind},
    proto::{
        CancelTaskRequest, CreateRunspaceRequest, GetRunspaceRequest, GetTaskRequest,
        GetUpstreamRequest, ListTasksRequest, ListTasksResponse, ListUpstreamsRequest,
        ListUpstreamsResponse, Runspace, Task, Upstream,
        runspace_service_client::RunspaceServiceClient, task_service_client::TaskServiceClient,
        upstream_service_client::UpstreamServiceClient,
    },
    server::Running,
    simulator::{Phase, SimClock, SimHandle, SimOptions, Simulator, Step, TaskSpec},
};

pub const VM: &str = "com.vmware.vcenter.VM";

pub struct Env {
    pub sim: Simulator,
    pub gateway: Option<Running>,
    pub channel: Channel,
}

/// Simulator options for tests: a manual clock and no demo seed, so tests choose every task.
pub fn sim_options() -> SimOptions {
    SimOptions {
        clock: SimClock::manual(),
        seed_demo_tasks: false,
        ..SimOptions::default()
    }
}

/// The gateway configuration that serves `sim`'s vCenter as `vc1`.
pub fn config_for(sim: &Simulator) -> Config {
    Config {
        server: ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::default()
        },
        upstreams: vec![without_read_retries(UpstreamConfig::new(
            "vc1",
            UpstreamKind::Vsphere,
            &sim.vcenter.url(),
            sim.vcenter.username(),
            sim.vcenter.password(),
        ))],
        ..Config::default()
    }
}

/// Tests inject one failure and read the error it makes: reads are not tried again here
/// (`tests/retries.rs` turns them on).
pub fn without_read_retries(mut up: UpstreamConfig) -> UpstreamConfig {
    up.read_retries = 0;
    up
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(sim_options(), |_| {}).await
    }

    pub async fn start_with(opts: SimOptions, tweak: impl FnOnce(&mut Config)) -> Env {
        Env::start_full(opts, |cfg, _| tweak(cfg)).await
    }

    /// Every simulated upstream configured, as `demo` wires them (vc1, snap1, srs1...).
    pub async fn start_all() -> Env {
        Env::start_full(sim_options(), |cfg, sim| {
            cfg.upstreams = vmware_grpc_gateway::demo::upstreams(sim, None)
                .into_iter()
                .map(without_read_retries)
                .collect()
        })
        .await
    }

    pub async fn start_full(opts: SimOptions, tweak: impl FnOnce(&mut Config, &Simulator)) -> Env {
        let sim = Simulator::start(opts).await.expect("simulator starts");
        let mut cfg = config_for(&sim);
        tweak(&mut cfg, &sim);
        let gateway = Running::start(cfg).await.expect("gateway starts");
        let endpoint = Channel::from_shared(gateway.url()).unwrap();
        let channel = if gateway.tls {
            // Tests of a TLS gateway make their own channels (tests/tls.rs).
            endpoint.connect_lazy()
        } else {
            endpoint
                .connect()
                .await
                .expect("gateway accepts connections")
        };
        Env {
            sim,
            gateway: Some(gateway),
            channel,
        }
    }

    pub fn tasks(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(self.channel.clone())
    }

    pub fn upstreams(&self) -> UpstreamServiceClient<Channel> {
        UpstreamServiceClient::new(self.channel.clone())
    }

    pub fn runspaces(&self) -> RunspaceServiceClient<Channel> {
        RunspaceServiceClient::new(self.channel.clone())
    }

    /// GetTask of `name` in the default view.
    pub async fn get_task(&self, name: &str) -> Result<Task, Status> {
        answer(self.tasks().get_task(get_req(name))).await
    }

    pub async fn list_tasks(&self, req: ListTasksRequest) -> Result<ListTasksResponse, Status> {
        answer(self.tasks().list_tasks(req)).await
    }

    /// Every page of a listing, following the page tokens from `req`'s.
    pub async fn list_pages(&self, mut req: ListTasksRequest) -> Vec<ListTasksResponse> {
        let mut pages = Vec::new();
        loop {
            let page = self.list_tasks(req.clone()).await.expect("a page");
            req.page_token = page.next_page_token.clone();
            pages.push(page);
            if req.page_token.is_empty() {
                return pages;
            }
        }
    }

    pub async fn cancel_task(&self, name: &str) -> Result<Task, Status> {
        let req = CancelTaskRequest { name: name.into() };
        answer(self.tasks().cancel_task(req)).await
    }

    /// GetUpstream of `name` (`upstreams/<id>`).
    pub async fn get_upstream(&self, name: &str) -> Result<Upstream, Status> {
        let req = GetUpstreamRequest { name: name.into() };
        answer(self.upstreams().get_upstream(req)).await
    }

    pub async fn list_upstreams(&self, req: ListUpstreamsRequest) -> UpstreamsPage {
        answer(self.upstreams().list_upstreams(req)).await
    }

    /// CreateRunspace under `parent` (`upstreams/<srs>`), named `display_name`.
    pub async fn create_runspace(
        &self,
        parent: &str,
        display_name: &str,
        request_id: &str,
    ) -> Result<Runspace, Status> {
        let runspace = Runspace {
            display_name: display_name.into(),
            ..Default::default()
        };
        let req = CreateRunspaceRequest {
            parent: parent.into(),
            runspace: Some(runspace),
            request_id: request_id.into(),
        };
        answer(self.runspaces().create_runspace(req)).await
    }

    pub async fn get_runspace(&self, name: &str) -> Result<Runspace, Status> {
        let req = GetRunspaceRequest { name: name.into() };
        answer(self.runspaces().get_runspace(req)).await
    }

    pub fn clock(&self) -> &SimClock {
        self.sim.vcenter.clock()
    }

    /// Adds a task to the simulated vCenter and returns its gateway name.
    pub fn add(&self, spec: TaskSpec) -> String {
        task_name(&self.sim.vcenter.tasks().add(spec))
    }

    pub async fn shutdown(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await.expect("clean shutdown");
        }
    }
}

/// The message of a unary call's answer.
pub async fn answer<T>(
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Status> {
    call.await.map(Response::into_inner)
}

pub type UpstreamsPage = Result<ListUpstreamsResponse, Status>;

/// A GetTaskRequest of `name` in the default view.
pub fn get_req(name: &str) -> GetTaskRequest {
    GetTaskRequest {
        name: name.into(),
        view: 0,
    }
}

pub fn task_name(id: &str) -> String {
    format!("upstreams/vc1/tasks/{id}")
}

/// A task that runs from 0 to 100 % over `secs` seconds, then succeeds.
pub fn running_for(secs: u64) -> TaskSpec {
    TaskSpec::new(VM, "clone", "Clone virtual machine", run_then_succeed(secs))
}

/// Steps from 0 to 100 % over `secs` seconds, then success.
pub fn run_then_succeed(secs: u64) -> Vec<Step> {
    vec![
        Step::new(Duration::ZERO, Phase::Running { from: 0, to: 100 }),
        Step::new(Duration::from_secs(secs), Phase::Succeeded { result: None }),
    ]
}

/// A task that has been finished (SUCCEEDED) for a while.
pub fn finished(age_secs: u64) -> TaskSpec {
    TaskSpec::new(
        VM,
        "power_on",
        "Power on virtual machine",
        vec![
            Step::new(Duration::ZERO, Phase::Running { from: 0, to: 100 }),
            Step::new(
                Duration::from_secs(1),
                Phase::Succeeded {
                    result: Some(serde_json::json!({"ok": true})),
                },
            ),
        ],
    )
    .aged(Duration::from_secs(age_secs))
}

/// The ErrorInfo of a status, asserting the gateway's domain.
pub fn error_info(status: &Status) -> ErrorInfo {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "vmware-grpc-gateway");
    info
}

/// Asserts code and ErrorInfo reason, returning the info.
pub fn assert_error(status: &Status, code: Code, reason: &str) -> ErrorInfo {
    assert_eq!(status.code(), code, "{status:?}");
    let info = error_info(status);
    assert_eq!(info.reason, reason, "{status:?}");
    info
}

/// Asserts that a call failed with `code` and ErrorInfo `reason`; returns the status and info.
pub fn expect_error<T: Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> (Status, ErrorInfo) {
    let status = result.expect_err("the call fails");
    let info = assert_error(&status, code, reason);
    (status, info)
}

// ---------------------------------------------------------------------------------------------
// Logging in to a simulated upstream as a client of it does (a caller's own session).

/// `Basic base64(user:password)`, as a caller sends its credentials.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A Basic login at `path` of `part`: the status, and the answer when it succeeded.
async fn basic_login(
    part: &SimHandle,
    path: &str,
    user: &str,
    password: &str,
    accept: Option<&str>,
) -> Result<reqwest::Response, reqwest::StatusCode> {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", part.url()))
        .basic_auth(user, Some(password));
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let r = req.send().await.expect("request reaches the simulator");
    if r.status().is_success() {
        Ok(r)
    } else {
        Err(r.status())
    }
}

/// A vAPI session id of `user` (vCenter at `/api/session`, the snapshot service at
/// `/api/snapservice/sessions`), or the refusal's status.
pub async fn vapi_login(
    part: &SimHandle,
    path: &str,
    user: &str,
    password: &str,
) -> Result<String, reqwest::StatusCode> {
    let r = basic_login(part, path, user, password, None).await?;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    Ok(r.json::<String>().await.expect("a JSON string"))
}

/// A Cloud Director tenant's bearer token of `user_at_org`, or the refusal's status.
pub async fn vcd_login(
    part: &SimHandle,
    user_at_org: &str,
    password: &str,
) -> Result<String, reqwest::StatusCode> {
    let accept = Some("application/json;version=38.0");
    let r = basic_login(
        part,
        "/cloudapi/1.0.0/sessions",
        user_at_org,
        password,
        accept,
    )
    .await?;
    Ok(header(
        &r,
        vmware_grpc_gateway::simulator::cloud_director::ACCESS_TOKEN_HEADER,
    ))
}

/// An SRS API key of `user`, or the refusal's status.
pub async fn srs_login(
    part: &SimHandle,
    user: &str,
    password: &str,
) -> Result<String, reqwest::StatusCode> {
    let r = basic_login(part, "/api/auth/login", user, password, None).await?;
    Ok(header(
        &r,
        vmware_grpc_gateway::simulator::script_runtime::API_KEY_HEADER,
    ))
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()[name].to_str().expect("ASCII").to_string()
}
