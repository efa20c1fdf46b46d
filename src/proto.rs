//! The generated v1 contract (`proto/vmware/gateway/v1`) and its descriptor set.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("vmware.gateway.v1");

/// Encoded `FileDescriptorSet` of the v1 contract (with imports and comments), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));
