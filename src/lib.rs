//! vmware-grpc-gateway: a gRPC face for VMware's task and runspace REST APIs.
//!
//! The crate is laid out as the flow of a call, imports pointing down only: `server` assembles
//! the tonic server over `api` (gRPC in), which uses `watch` (the polling engine) and
//! `upstream` (REST out); below them all sit `names`, `call` (with `trace` and the caller's
//! `auth` grant), `error`, `telemetry` (metrics) and `config`. `tls` holds the connections
//! `server` serves (plaintext or TLS, the certificate reloaded) and the `ConnInfo` that `api`
//! reads of each request's connection: it sits below `api`, over `config`.
//! `simulator` holds the embedded upstreams that `demo` and the tests run against; it shares
//! no code with the gateway so that a wire-format mistake cannot hide on both sides.
//! `docs/ARCHITECTURE.md` draws the layers.

pub mod admin;
pub mod api;
pub mod auth;
pub mod call;
pub mod config;
pub mod demo;
pub mod error;
pub mod identity;
pub mod names;
pub mod proto;
pub mod reload;
pub mod server;
pub mod simulator;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod watch;
