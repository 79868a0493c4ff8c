//! Integration tests of `uns-sparkplug`, one binary: topic tables, codec tables, cross-checks with the
//! independent `sparkplug-rs` crate (rust-protobuf), and property tests.

mod codec;
mod edge;
mod host;
mod interop;
mod props;
mod topic;
