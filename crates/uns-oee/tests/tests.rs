//! The OEE core against hand-computed scenarios. Each expected figure is written as the formula it comes
//! from (ISO 22400-2: A = APT/PBT, E = ideal cycle × PQ / APT, Q = GQ/PQ, OEE = A × E × Q) and checked
//! to 4 decimals.

mod scenarios;
mod service;
mod snapshot;
mod support;
