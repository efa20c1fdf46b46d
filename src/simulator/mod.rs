//! The embedded upstreams: simulated VMware REST servers for tests and the `demo` command.
//!
//! Each part binds its own listener on `127.0.0.1:0`, speaks its upstream's real wire format,
//! and stops when the [`Simulator`] (or the last clone of the part) is dropped. All parts share
//! one [`SimClock`], and tasks progress over time through the shared engine in [`tasks`].

pub mod clock;
pub mod common;
pub mod tasks;
pub mod vcenter;

use std::time::Duration;

pub use clock::SimClock;
pub use common::Fault;
pub use tasks::{
    CancelRefusal, Phase, Step, TaskError, TaskSnapshot, TaskSpec, TaskStatus, TaskStore,
};
pub use vcenter::{DEMO_CANCELABLE_TASK, DEMO_RUNNING_TASK, DEMO_SERVICES, VcenterSim};

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
        }
    }
}

/// All simulated upstreams, running.
#[derive(Debug)]
pub struct Simulator {
    pub vcenter: VcenterSim,
}

impl Simulator {
    /// Starts every part; must run inside a tokio runtime.
    pub async fn start(opts: SimOptions) -> std::io::Result<Simulator> {
        let vcenter = VcenterSim::start(&opts).await?;
        Ok(Simulator { vcenter })
    }

    /// Stops every part now.
    pub fn shutdown(&self) {
        self.vcenter.shutdown();
    }
}
