//! The same cause gives the same `ErrorInfo.reason` on every upstream kind; the upstream's
//! own error kind travels apart in `upstreamReason`. Each row injects one kind's real error
//! body on its read route and reads the error a client gets.

mod common;

use common::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use vmware_grpc_gateway::{
    proto::{
        CreateRunspaceRequest, GetRunspaceRequest, GetTaskRequest, Runspace,
        runspace_service_client::RunspaceServiceClient,
    },
    simulator::{Fault, SimHandle, Simulator},
};

/// One upstream kind as the demo configures it: its name, its read route, and an id.
struct Kind {
    upstream: &'static str,
    route: &'static str,
    part: fn(&Simulator) -> &SimHandle,
}

const fn kind(
    upstream: &'static str,
    route: &'static str,
    part: fn(&Simulator) -> &SimHandle,
) -> Kind {
    Kind {
        upstream,
        route,
        part,
    }
}

const VC: Kind = kind("vc1", "GET /api/cis/tasks/{task}", |s| &s.vcenter);
const SNAP: Kind = kind("snap1", "GET /api/snapservice/tasks/{task}", |s| {
    &s.snapservice
});
const VCD: Kind = kind("vcd1", "GET /api/task/{task}", |s| &s.cloud_director);
const SRS: Kind = kind("srs1", "GET /api/runspaces/{id}", |s| &s.script_runtime);

fn vapi(kind: &str) -> String {
    format!(
        r#"{{"error_type":"{kind}","messages":[{{"id":"x","default_message":"injected","args":[]}}]}}"#
    )
}

fn vcd(status: u16, minor: &str) -> String {
    format!(r#"{{"majorErrorCode":{status},"minorErrorCode":"{minor}","message":"injected"}}"#)
}

fn srs(code: u16) -> String {
    format!(r#"{{"code":{code},"error_message":"injected"}}"#)
}

/// Reads one resource of `kind` through the gateway after injecting `faults` on its route.
async fn read_with(env: &Env, kind: &Kind, faults: &[(u16, String)]) -> Status {
    for (status, body) in faults {
        (kind.part)(&env.sim).inject(
            kind.route,
            Fault::Status {
                status: *status,
                body: body.clone(),
            },
        );
    }
    let id = "00000000-0000-4000-8000-000000000000";
    let result = if kind.upstream == "srs1" {
        RunspaceServiceClient::new(env.channel.clone())
            .get_runspace(GetRunspaceRequest {
                name: format!("upstreams/srs1/runspaces/{id}"),
            })
            .await
            .map(|_| ())
    } else {
        env.tasks()
            .get_task(GetTaskRequest {
                name: format!("upstreams/{}/tasks/{id}", kind.upstream),
                view: 0,
            })
            .await
            .map(|_| ())
    };
    result.expect_err("the injected failure reaches the client")
}

/// Asserts the reason, the code, the upstream's own kind and RetryInfo where the table says.
fn expect(err: &Status, kind: &Kind, code: Code, reason: &str, upstream_reason: Option<&str>) {
    let info = assert_error(err, code, reason);
    assert_eq!(info.metadata["upstream"], kind.upstream, "{err:?}");
    assert_eq!(
        info.metadata.get("upstreamReason").map(String::as_str),
        upstream_reason,
        "{} {reason}",
        kind.upstream
    );
    let retry = matches!(code, Code::Unavailable) || reason == "UPSTREAM_RATE_LIMITED";
    assert_eq!(
        err.get_details_retry_info().is_some(),
        retry,
        "{} {reason}",
        kind.upstream
    );
}

#[tokio::test]
async fn not_found_is_one_reason_on_every_kind() {
    let env = Env::start_all().await;
    let rows = [
        (VC, (404, vapi("NOT_FOUND")), "NOT_FOUND"),
        (SNAP, (404, vapi("NOT_FOUND")), "NOT_FOUND"),
        (
            VCD,
            (404, vcd(404, "RESOURCE_NOT_FOUND")),
            "RESOURCE_NOT_FOUND",
        ),
        (SRS, (404, srs(2030)), "SRS_2030"),
    ];
    for (kind, fault, own) in rows {
        let err = read_with(&env, &kind, &[fault]).await;
        expect(&err, &kind, Code::NotFound, "NOT_FOUND", Some(own));
    }
}

#[tokio::test]
async fn server_errors_are_upstream_unavailable_on_every_kind() {
    let env = Env::start_all().await;
    let rows = [
        (
            VC,
            (503, vapi("SERVICE_UNAVAILABLE")),
            Some("SERVICE_UNAVAILABLE"),
        ),
        (SNAP, (500, vapi("ERROR")), Some("ERROR")),
        (
            VCD,
            (500, vcd(500, "INTERNAL_SERVER_ERROR")),
            Some("INTERNAL_SERVER_ERROR"),
        ),
        (SRS, (500, srs(500)), Some("SRS_500")),
        (SRS, (502, "<html>bad gateway</html>".into()), None),
    ];
    for (kind, fault, own) in rows {
        let err = read_with(&env, &kind, &[fault]).await;
        expect(&err, &kind, Code::Unavailable, "UPSTREAM_UNAVAILABLE", own);
    }
}

#[tokio::test]
async fn refusals_rate_limits_and_redirects_map_alike_on_every_kind() {
    let env = Env::start_all().await;
    let forbidden = (Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED");
    let limited = (Code::ResourceExhausted, "UPSTREAM_RATE_LIMITED");
    let redirect = (Code::Internal, "UPSTREAM_BAD_RESPONSE");
    let conflict = (Code::FailedPrecondition, "UPSTREAM_STATE_CONFLICT");
    let vcd_forbidden = "ACCESS_TO_RESOURCE_IS_FORBIDDEN";
    let rows = [
        (
            VC,
            403,
            vapi("UNAUTHORIZED"),
            forbidden,
            Some("UNAUTHORIZED"),
        ),
        (
            VCD,
            403,
            vcd(403, vcd_forbidden),
            forbidden,
            Some(vcd_forbidden),
        ),
        (SRS, 403, String::new(), forbidden, None),
        (SNAP, 429, String::new(), limited, None),
        (SRS, 429, String::new(), limited, None),
        (VCD, 302, String::new(), redirect, None),
        (SRS, 307, String::new(), redirect, None),
        (SRS, 400, srs(2031), conflict, Some("SRS_2031")),
    ];
    for (kind, status, body, (code, reason), own) in rows {
        let err = read_with(&env, &kind, &[(status, body)]).await;
        expect(&err, &kind, code, reason, own);
    }
}

#[tokio::test]
async fn a_401_after_a_fresh_login_is_the_service_accounts_failed_login_on_every_kind() {
    let env = Env::start_all().await;
    let unauth = [
        (VC, vapi("UNAUTHENTICATED"), Some("UNAUTHENTICATED")),
        (SNAP, vapi("UNAUTHENTICATED"), Some("UNAUTHENTICATED")),
        (VCD, vcd(401, "UNAUTHORIZED"), Some("UNAUTHORIZED")),
        (SRS, String::new(), None),
    ];
    for (kind, body, own) in unauth {
        let logins = (kind.part)(&env.sim).logins();
        let twice = [(401, body.clone()), (401, body)];
        let err = read_with(&env, &kind, &twice).await;
        expect(&err, &kind, Code::Unavailable, "UPSTREAM_LOGIN_FAILED", own);
        assert!(
            (kind.part)(&env.sim).logins() <= logins + 2,
            "{}: at most the first login and one fresh one",
            kind.upstream
        );
    }
}

#[tokio::test]
async fn the_srs_runspace_limit_is_upstream_resource_exhausted() {
    let env = Env::start_all().await;
    env.sim.script_runtime.inject(
        "POST /api/runspaces",
        Fault::Status {
            status: 500,
            body: srs(2020),
        },
    );
    let err = RunspaceServiceClient::new(env.channel.clone())
        .create_runspace(CreateRunspaceRequest {
            parent: "upstreams/srs1".into(),
            runspace: Some(Runspace::default()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    expect(
        &err,
        &SRS,
        Code::ResourceExhausted,
        "UPSTREAM_RESOURCE_EXHAUSTED",
        Some("SRS_2020"),
    );
}

#[tokio::test]
async fn a_name_of_the_wrong_kind_names_the_request_field_it_came_in() {
    let env = Env::start_all().await;
    let field_of = |err: &Status| {
        let info = assert_error(err, Code::InvalidArgument, "WRONG_UPSTREAM_KIND");
        assert_eq!(info.reason, "WRONG_UPSTREAM_KIND");
        let bad = err.get_details_bad_request().expect("a BadRequest");
        bad.field_violations[0].field.clone()
    };
    let list = env
        .tasks()
        .list_tasks(vmware_grpc_gateway::proto::ListTasksRequest {
            parent: "upstreams/srs1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&list), "parent");
    let create = RunspaceServiceClient::new(env.channel.clone())
        .create_runspace(CreateRunspaceRequest {
            parent: "upstreams/vc1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&create), "parent");
    let get = env
        .tasks()
        .get_task(GetTaskRequest {
            name: "upstreams/srs1/tasks/x".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&get), "name");
}
