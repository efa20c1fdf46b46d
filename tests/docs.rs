//! The documentation a client author reads lists what the code does.

use vmware_grpc_gateway::error::Reason;

#[test]
fn the_readme_lists_every_error_reason_with_its_code() {
    let readme = include_str!("../README.md");
    for r in Reason::ALL {
        let code = format!("{:?}", r.code());
        // tonic's Debug spelling (NotFound) → the gRPC name (NOT_FOUND).
        let mut grpc = String::new();
        for (i, c) in code.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                grpc.push('_');
            }
            grpc.push(c.to_ascii_uppercase());
        }
        let retry = if r.retry() { "RetryInfo" } else { "" };
        let row = format!("| `{}` | {grpc} | {retry} |", r.as_str());
        assert!(readme.contains(&row), "README lacks the row {row}");
    }
}
