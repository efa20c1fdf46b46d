//! The REST side: one adapter per upstream kind behind small traits ([`source`]), and the
//! registry of configured upstreams by name ([`registry`]).

pub mod breaker;
pub mod cloud_director;
pub mod http;
pub mod json;
pub mod registry;
pub mod script_runtime;
pub mod session;
pub mod sessions;
pub mod snapservice;
pub mod source;
mod transport;
mod trust;
pub mod vapi;
pub mod vsphere;

pub use registry::{Collection, Registry, Runspaces, Tasks, Upstream};
pub use source::{Batch, RunspaceSource, TaskSource, get_each};
