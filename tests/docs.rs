//! The documentation a client author reads lists what the code does.

use vmware_grpc_gateway::error::Reason;

/// tonic's Debug spelling (NotFound) → the gRPC name (NOT_FOUND).
fn grpc_name(code: tonic::Code) -> String {
    let mut grpc = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            grpc.push('_');
        }
        grpc.push(c.to_ascii_uppercase());
    }
    grpc
}

#[test]
fn the_readme_lists_every_error_reason_with_its_code() {
    let readme = include_str!("../README.md");
    for r in Reason::ALL {
        let grpc = grpc_name(r.code());
        let retry = if r.retry() { "RetryInfo" } else { "" };
        let row = format!("| `{}` | {grpc} | {retry} |", r.as_str());
        assert!(readme.contains(&row), "README lacks the row {row}");
    }
}

#[test]
fn the_contract_lists_every_error_reason_with_its_code_in_a_proto_comment() {
    let proto = include_str!("../proto/vmware/gateway/v1/common.proto");
    for r in Reason::ALL {
        let line = format!("//   {} ({}", r.as_str(), grpc_name(r.code()));
        assert!(proto.contains(&line), "common.proto lacks {line}");
    }
}
