//! Trace propagation: a call's W3C `traceparent` reaches every upstream request it causes,
//! with the caller's trace id and a span of the gateway's own.

mod common;

use common::*;
use tonic::Request;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn upstream_requests_carry_the_callers_trace_id_in_a_span_of_their_own() {
    let env = Env::start().await;
    let name = env.add(running_for(3600));
    let mut req = Request::new(get_req(&name));
    let caller = format!("00-{TRACE}-00f067aa0ba902b7-01");
    req.metadata_mut()
        .insert("traceparent", caller.parse().unwrap());
    req.metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    env.tasks().get_task(req).await.unwrap();
    let seen = env.sim.vcenter.traceparents();
    // The login and the read, both on the caller's trace.
    assert!(seen.len() >= 2, "{seen:?}");
    for tp in &seen {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[1], TRACE, "{tp}");
        assert_ne!(
            parts[2], "00f067aa0ba902b7",
            "a span of the gateway's: {tp}"
        );
    }

    // Without one the call starts its own trace, still one id for all its requests.
    env.sim.vcenter.expire_sessions();
    env.get_task(&name).await.unwrap();
    let own: Vec<String> = env.sim.vcenter.traceparents()[seen.len()..]
        .iter()
        .map(|tp| tp.split('-').nth(1).unwrap_or_default().to_string())
        .collect();
    assert!(own.len() >= 2, "{own:?}");
    assert!(own.iter().all(|t| t == &own[0] && t != TRACE), "{own:?}");
}
