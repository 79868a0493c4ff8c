//! The work-order service (`workorders`).
#![deny(missing_docs)]

pub mod engine;
pub mod lifecycle;
