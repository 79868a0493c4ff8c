//! The `uns` binary.
fn main() {}
