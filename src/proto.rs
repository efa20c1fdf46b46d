//! The generated v1 contract (`proto/vmware/gateway/v1`) and its descriptor set.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("vmware.gateway.v1");

/// Encoded `FileDescriptorSet` of the v1 contract (with imports and comments), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));

/// Encoded `FileDescriptorSet` of the `google.rpc` error details this gateway sends (from
/// tonic-types), so that reflection clients (grpcurl) can decode error details.
pub const RPC_DESCRIPTOR_SET: &[u8] = tonic_types::pb::FILE_DESCRIPTOR_SET;
