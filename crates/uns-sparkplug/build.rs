//! Generates the Sparkplug B protobuf types from `schemas/sparkplug_b.proto`.
//!
//! The .proto is parsed with `protox` (pure Rust), so a fresh machine needs no system `protoc`; prost-build
//! then writes the Rust types to `OUT_DIR`, where `src/pb.rs` includes them.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let schemas_dir = manifest_dir.join("../../schemas");
    let proto = schemas_dir.join("sparkplug_b.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let file_descriptors = protox::compile([&proto], [&schemas_dir])?;
    prost_build::Config::new().compile_fds(file_descriptors)?;
    Ok(())
}
