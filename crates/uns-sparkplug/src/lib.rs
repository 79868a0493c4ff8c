//! Sparkplug B 3.0 for the UNS: topic names and the protobuf payload codec.
//!
//! **Architecture invariant: only `uns-sparkplug` knows protobuf.** The protobuf types generated from
//! `schemas/sparkplug_b.proto` stay private (`mod pb`); every other crate sees Sparkplug messages as the
//! domain types here ([`Payload`], [`Metric`], [`Value`]) and their JSON form ([`Value::to_json`]).
//!
//! - [`topic`]: [`SparkplugTopic`] parses and prints `spBv1.0/{group}/{kind}/{edge}[/{device}]` and
//!   `spBv1.0/STATE/{host_id}`, with validated ids and a [`TopicError`] per malformed shape.
//! - [`payload`]: [`encode`] and [`decode`] between bytes and [`Payload`]. Decoding never panics and is
//!   lenient where real peers deviate; encoding follows the specification (each rule cites its
//!   requirement id, e.g. `[tck-id-payloads-...]`, where the spec has one).
//! - [`value`]: [`DataType`] (all Sparkplug 3.0 codes, arrays 22..=34), [`Value`], DataSet, Template,
//!   PropertySet, and the packed array formats.
//!
//! Session logic (bdSeq/seq state machines, alias tables, rebirth) is not here: it belongs to the host and
//! edge services, which use [`Value::from_raw`] to type DATA values once an alias is resolved.
//!
//! ```
//! use uns_sparkplug::{decode, encode, Metric, Payload, SparkplugTopic, Value};
//!
//! let topic: SparkplugTopic = "spBv1.0/line-1/DDATA/filler-edge/plc-1".parse()?;
//! assert_eq!(topic.to_string(), "spBv1.0/line-1/DDATA/filler-edge/plc-1");
//!
//! let payload = Payload {
//!     timestamp: Some(1_741_068_000_123),
//!     seq: Some(1),
//!     metrics: vec![Metric::new("temperature", Value::Float(71.4))],
//!     ..Payload::default()
//! };
//! let decoded = decode(&encode(&payload)?)?;
//! assert_eq!(decoded, payload);
//! assert_eq!(decoded.metrics[0].value.as_ref().map(Value::to_json), Some(serde_json::json!(71.4)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod edge;
pub mod error;
pub mod host;
pub mod payload;
mod pb;
pub mod topic;
pub mod value;

pub use error::{DecodeError, EncodeError, ValueError};
pub use payload::{MetaData, Metric, Payload, decode, encode};
pub use topic::{DeviceMessageKind, NodeMessageKind, SparkplugTopic, TopicError};
pub use value::{
    DataSet, DataType, Parameter, PropertySet, PropertyValue, RawValue, Template, Value,
};
