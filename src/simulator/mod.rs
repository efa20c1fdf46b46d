//! The embedded upstreams: simulated VMware REST servers for tests and the `demo` command.
//!
//! Four parts — [`vcenter`], [`snapservice`], [`cloud_director`], [`script_runtime`] — each
//! bind their own listener on `127.0.0.1:0`, speak their upstream's real wire format, and
//! stop when the [`Simulator`] (or the last clone of the part) is dropped. All parts share
//! one [`SimClock`]; tasks progress over time through the shared engine in [`tasks`].
//!
//! Each part is a [`part::Kind`]: an axum router of its real routes behind the one shared
//! middleware in [`part`] (request counting, fault injection, authentication), served as a
//! [`part::Part`] that dereferences to a [`SimHandle`], the one implementation of `url`,
//! `requests`, `inject`, `set_faults`, `logins`, `expire_sessions` and the rest ([`common`]).
//! Shared pieces: [`vapi`] (the wire format of vCenter and the snapshot service), [`web`]
//! (HTTP helpers), [`ids`] (made-up ids), [`listener`] (plain or TLS listener), [`faults`]
//! (the standing fault settings) and [`control`] (the endpoint `simulate` switches them on).
//!
//! Every part knows a second user besides the configured one ([`SimOptions::username`] /
//! `password`), so that a client acting as its caller's own user meets two users who see
//! different things: on vCenter and the snapshot service [`VAPI_VIEWER_USER`] /
//! [`VAPI_VIEWER_PASSWORD`], who sees only its own tasks ([`DEMO_VIEWER_TASK`],
//! [`SNAP_DEMO_VIEWER_TASK`]) and cancels none; on Cloud Director [`VCD_GLOBEX_USER`] of org
//! [`VCD_GLOBEX_ORG`] (`ops@globex` / [`VCD_GLOBEX_PASSWORD`]), who sees only globex's tasks
//! ([`VCD_GLOBEX_TASK`]); on SRS [`SRS_USER2`] / [`SRS_USER2_PASSWORD`], whose API keys see
//! only its own runspaces. [`SimHandle::live_sessions`] and [`SimHandle::sessions_of`] count
//! the sessions a client left open.

pub mod clock;
pub mod cloud_director;
pub mod common;
pub mod control;
pub mod faults;
pub mod ids;
pub mod listener;
pub mod part;
pub mod script_runtime;
mod seed;
pub mod snapservice;
pub mod tasks;
pub mod vapi;
pub mod vcenter;
pub mod web;

use std::time::Duration;

pub use clock::SimClock;
pub use cloud_director::{
    CloudDirectorSim, VCD_DEMO_CANCELABLE_TASK, VCD_DEMO_RUNNING_TASK, VCD_GLOBEX_ORG,
    VCD_GLOBEX_PASSWORD, VCD_GLOBEX_TASK, VCD_GLOBEX_USER,
};
pub use common::{Fault, SimHandle};
pub use control::Control;
pub use faults::{FaultCounts, FaultSettings, InvalidFaults};
pub use script_runtime::{
    SRS_DEMO_ERROR_RUNSPACE, SRS_DEMO_READY_RUNSPACE, SRS_USER2, SRS_USER2_PASSWORD,
    ScriptRuntimeSim,
};
pub use snapservice::{
    SNAP_DEMO_RUNNING_TASK, SNAP_DEMO_SERVICES, SNAP_DEMO_VIEWER_TASK, SnapserviceSim,
};
pub use tasks::{
    CancelRefusal, Phase, Step, TaskError, TaskSnapshot, TaskSpec, TaskStatus, TaskStore,
};
pub use vapi::{VAPI_VIEWER_PASSWORD, VAPI_VIEWER_PRINCIPAL, VAPI_VIEWER_USER};
pub use vcenter::{
    DEMO_CANCELABLE_TASK, DEMO_QUICK_TASK, DEMO_RUNNING_TASK, DEMO_SERVICES, DEMO_VIEWER_TASK,
    VcenterSim,
};

/// Default [`SimOptions::vcd_api_token`].
pub const DEFAULT_VCD_API_TOKEN: &str = "sim-vcd-api-token-3f9c1e7a5b2d4c6e8f0a1b3c5d7e9f10";

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Serve HTTPS with a freshly generated self-signed certificate.
    pub tls: bool,
    pub clock: SimClock,
    /// Add the fixed demo task mix.
    pub seed_demo_tasks: bool,
    pub username: String,
    pub password: String,
    pub session_idle_timeout: Duration,
    /// Cloud Director tenant organization of `username` (provider logins use `System`).
    pub vcd_org: String,
    /// The Cloud Director API token (OAuth refresh token) accepted by the token endpoints.
    pub vcd_api_token: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tls: false,
            clock: SimClock::real(),
            seed_demo_tasks: true,
            username: "administrator@vsphere.local".to_string(),
            password: "VMware1!".to_string(),
            session_idle_timeout: Duration::from_secs(30 * 60),
            vcd_org: "acme".to_string(),
            vcd_api_token: DEFAULT_VCD_API_TOKEN.to_string(),
        }
    }
}

/// All simulated upstreams, running.
#[derive(Debug)]
pub struct Simulator {
    pub vcenter: VcenterSim,
    pub snapservice: SnapserviceSim,
    pub cloud_director: CloudDirectorSim,
    pub script_runtime: ScriptRuntimeSim,
}

impl Simulator {
    /// Starts every part; must run inside a tokio runtime.
    pub async fn start(opts: SimOptions) -> std::io::Result<Simulator> {
        let vcenter = VcenterSim::start(&opts).await?;
        let snapservice = SnapserviceSim::start(&opts).await?;
        let cloud_director = CloudDirectorSim::start(&opts).await?;
        let script_runtime = ScriptRuntimeSim::start(&opts).await?;
        Ok(Simulator {
            vcenter,
            snapservice,
            cloud_director,
            script_runtime,
        })
    }

    /// Every part with its name, as `simulate` lists them and the control endpoint takes them.
    pub fn parts(&self) -> [(&'static str, &SimHandle); 4] {
        [
            ("vc1", &self.vcenter),
            ("snap1", &self.snapservice),
            ("vcd1", &self.cloud_director),
            ("srs1", &self.script_runtime),
        ]
    }

    /// Sets the same standing faults on every part.
    pub fn set_faults(&self, settings: FaultSettings) -> Result<(), InvalidFaults> {
        settings.validate()?;
        for (_, part) in self.parts() {
            part.set_faults(settings.clone())?;
        }
        Ok(())
    }

    /// Starts the control endpoint on `127.0.0.1:port` (0: any free port).
    pub async fn start_control(&self, port: u16) -> std::io::Result<Control> {
        Control::start(self, port).await
    }

    /// Stops every part now.
    pub fn shutdown(&self) {
        self.vcenter.shutdown();
        self.snapservice.shutdown();
        self.cloud_director.shutdown();
        self.script_runtime.shutdown();
    }
}
