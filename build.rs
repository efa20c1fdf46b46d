//! Compiles the v1 contract in `proto/` with protox (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and writes the file descriptor set reflection serves. The
//! published contract is `proto/vmware/**` alone; the google.rpc error details come with
//! tonic-types (code and descriptors).

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "vmware/gateway/v1/common.proto",
    "vmware/gateway/v1/upstreams.proto",
    "vmware/gateway/v1/tasks.proto",
    "vmware/gateway/v1/runspaces.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::Compiler::new(["proto"])?
        .include_source_info(true) // keeps the comments that grpcurl `describe` shows
        .include_imports(true) // reflection clients resolve google/protobuf/* from the same set
        .open_files(PROTOS)?
        .file_descriptor_set();
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("gateway_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A smaller encode buffer per call: see `proto::LeanCodec`.
        .codec_path("crate::proto::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
