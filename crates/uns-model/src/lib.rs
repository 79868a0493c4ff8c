//! `uns-model`: the vocabulary of the Unified Namespace, shared by every service, the CLI and the tests.
//!
//! - [`topic`]: typed UNS topics ([`topic::UnsTopic`], [`topic::Location`], [`topic::Class`]) with exact
//!   `Display`/`FromStr` round trips, and validated MQTT subscription filters ([`topic::TopicFilter`]).
//! - [`payload`]: serde types for every JSON document and event, each tagged with its
//!   `"schema": "uns/<name>/v<N>"`, and [`payload::decode`] for bytes from the network.
//! - [`owner`]: the owner column of DESIGN §2 (who may publish each topic), from which the broker's
//!   roles are derived.
//! - [`schemas`]: the hand-written JSON Schemas of those payloads, compiled in.
//!
//! **Architecture invariant:** this crate does no I/O and has no async code: pure types, parsing,
//! formatting and validation. It reads no clock and no randomness either; callers pass times and ids in.
//!
//! ```
//! use uns_model::payload::{StateDoc, decode};
//! use uns_model::topic::{Class, UnsTopic};
//!
//! let topic: UnsTopic = "uns/v1/acme/berlin/packaging/line-1/filler/_state".parse()?;
//! assert_eq!(topic.class(), Some(&Class::State));
//! assert!(topic.is_retained());
//! assert_eq!(topic.location().map(|location| location.depth()), Some(5));
//!
//! let state: StateDoc = decode(br#"{"schema": "uns/state/v1", "mode": "production",
//!     "state": {"category": "running"}, "since": "2025-03-04T05:20:00Z"}"#)?;
//! assert_eq!(serde_json::to_value(&state)?["since"], "2025-03-04T05:20:00.000Z");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod owner;
pub mod payload;
pub mod schemas;
pub mod topic;
