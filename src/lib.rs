//! vmware-grpc-gateway: a gRPC face for VMware's task and runspace REST APIs.
//!
//! The crate is laid out as the flow of a call: `api` (gRPC in) → `upstream` (REST out),
//! with `error` as the one mapping between the two, `server` assembling the tonic server
//! and `simulator` as the embedded upstreams that `demo` and the tests run against.

pub mod api;
pub mod config;
pub mod demo;
pub mod error;
pub mod proto;
pub mod server;
pub mod simulator;
pub mod upstream;
pub mod watch;
