//! `uns-model`: the vocabulary of the Unified Namespace, shared by every service, the CLI and the tests.
//!
//! - [`topic`]: typed UNS topics ([`topic::UnsTopic`], [`topic::Location`], [`topic::Class`]) with exact
//!   `Display`/`FromStr` round trips, and validated MQTT subscription filters ([`topic::TopicFilter`]).
//! - [`payload`]: serde types for every JSON document and event, each tagged with its
//!   `"schema": "uns/<name>/v<N>"`, and [`payload::decode`] for bytes from the network.
//! - [`schemas`]: the hand-written JSON Schemas of those payloads, compiled in.
//!
//! **Architecture invariant:** this crate does no I/O and has no async code: pure types, parsing,
//! formatting and validation. It reads no clock and no randomness either; callers pass times and ids in.
#![deny(missing_docs)]

pub mod payload;
pub mod schemas;
pub mod topic;
