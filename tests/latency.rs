//! A regression guard, not a speed claim: sequential calls must not hit the ~40 ms floor of
//! Nagle's algorithm meeting delayed ACKs (accepted sockets without TCP_NODELAY).

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn sequential_calls_stay_far_below_the_delayed_ack_floor() {
    let env = Env::start().await;
    let name = env.add(running_for(3600));
    let mut c = env.tasks();
    let get = || vmware_grpc_gateway::proto::GetTaskRequest {
        name: name.clone(),
        view: 0,
    };
    c.get_task(get()).await.expect("warm-up call (login)");
    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        c.get_task(get()).await.expect("call succeeds");
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median of 20 sequential GetTask calls is {median:?}: the 40 ms delayed-ACK floor is back"
    );
}
