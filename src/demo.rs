//! `demo`: the gateway wired to the embedded simulator, and the banner that tells a newcomer
//! what to type next.

use std::{fmt::Write, net::SocketAddr, path::Path};

use crate::{
    config::{Config, ServerConfig, UpstreamConfig, UpstreamKind},
    simulator::{self, Simulator},
};

/// The gateway configuration that serves the simulator's upstreams.
/// `ca_file` is where the simulator's certificate was written when it serves TLS.
pub fn config(sim: &Simulator, listen: SocketAddr, ca_file: Option<&Path>) -> Config {
    let mut vc1 = UpstreamConfig::new(
        "vc1",
        UpstreamKind::Vsphere,
        &sim.vcenter.url(),
        sim.vcenter.username(),
        sim.vcenter.password(),
    );
    vc1.ca_file = ca_file.map(Path::to_path_buf);
    Config {
        server: ServerConfig {
            listen,
            ..ServerConfig::default()
        },
        upstreams: vec![vc1],
    }
}

/// Copy-paste grpcurl commands that work against a running demo at `addr`.
pub fn banner(addr: SocketAddr, cfg: &Config) -> String {
    let services = simulator::DEMO_SERVICES
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",");
    let mut b = String::new();
    let _ = writeln!(
        b,
        "vmware-grpc-gateway demo: gRPC on {addr} (plaintext), upstreams simulated in-process"
    );
    for u in &cfg.upstreams {
        let _ = writeln!(b, "  upstreams/{:<6} {:?} at {}", u.name, u.kind, u.url);
    }
    let _ = writeln!(b, "\nTry (grpcurl 1.8+):");
    let cmds = [
        format!("grpcurl -plaintext {addr} list"),
        format!("grpcurl -plaintext {addr} describe vmware.gateway.v1.Task"),
        format!("grpcurl -plaintext {addr} vmware.gateway.v1.UpstreamService/ListUpstreams"),
        format!(
            "grpcurl -plaintext -d '{{\"parent\":\"upstreams/vc1\",\"filter\":{{\"services\":[{services}]}},\"page_size\":10}}' {addr} vmware.gateway.v1.TaskService/ListTasks"
        ),
        format!(
            "grpcurl -plaintext -d '{{\"name\":\"upstreams/vc1/tasks/{}\"}}' {addr} vmware.gateway.v1.TaskService/GetTask",
            simulator::DEMO_RUNNING_TASK
        ),
        format!(
            "grpcurl -plaintext -d '{{\"name\":\"upstreams/vc1/tasks/{}\"}}' {addr} vmware.gateway.v1.TaskService/CancelTask",
            simulator::DEMO_CANCELABLE_TASK
        ),
        format!(
            "grpcurl -plaintext -d '{{\"name\":\"upstreams/vc1/tasks/no-such-task\"}}' {addr} vmware.gateway.v1.TaskService/GetTask"
        ),
    ];
    for c in cmds {
        let _ = writeln!(b, "  {c}");
    }
    let _ = writeln!(b, "\nCtrl-C stops the gateway and the simulator.");
    b
}
