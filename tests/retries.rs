//! Reads are tried again after a transient failure, within a budget; cancels never are.

mod common;

use std::time::Duration;

use common::*;
use tonic::Code;
use vmware_grpc_gateway::simulator::Fault;

const GET: &str = "GET /api/cis/tasks/{task}";
const CANCEL: &str = "POST /api/cis/tasks/{task}?action=cancel";

fn unavailable() -> Fault {
    Fault::Status {
        status: 503,
        body: r#"{"error_type":"SERVICE_UNAVAILABLE","messages":[]}"#.into(),
    }
}

async fn with_retries(retries: u32) -> Env {
    Env::start_with(sim_options(), move |cfg| {
        cfg.upstreams[0].read_retries = retries;
    })
    .await
}

#[tokio::test]
async fn a_read_is_tried_again_after_a_transient_failure() {
    let env = with_retries(2).await;
    let name = env.add(running_for(100));
    env.get_task(&name).await.unwrap();
    let before = env.sim.vcenter.requests(GET);
    env.sim.vcenter.inject(GET, unavailable());
    env.sim.vcenter.inject(GET, unavailable());
    env.get_task(&name).await.expect("the third try answers");
    assert_eq!(env.sim.vcenter.requests(GET) - before, 3);
    // Three failures in a row are one more than two retries: the error comes through.
    for _ in 0..3 {
        env.sim.vcenter.inject(GET, unavailable());
    }
    let err = env.get_task(&name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn a_cancel_is_never_tried_again() {
    let env = with_retries(2).await;
    let name = env.add(running_for(3600).cancelable());
    env.sim.vcenter.inject(CANCEL, unavailable());
    let err = env.cancel_task(&name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(env.sim.vcenter.requests(CANCEL), 1);
}

#[tokio::test]
async fn the_retry_budget_keeps_retries_a_fraction_of_reads() {
    let env = Env::start_with(sim_options(), |cfg| {
        cfg.upstreams[0].read_retries = 1;
        cfg.upstreams[0].read_retry_ratio = 0.0;
    })
    .await;
    let name = env.add(running_for(100));
    env.get_task(&name).await.unwrap();
    // The reserve lets ten retries through; then, earning nothing, none.
    let mut retried = 0;
    for _ in 0..15 {
        let before = env.sim.vcenter.requests(GET);
        env.sim.vcenter.inject(GET, unavailable());
        let _ = env.get_task(&name).await;
        if env.sim.vcenter.requests(GET) - before == 2 {
            retried += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(retried, 10, "the reserve, then nothing");
}
