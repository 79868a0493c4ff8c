//! Typed JSON payloads (DESIGN §2-§3), one submodule per document family.
//!
//! Every document and event carries `"schema": "uns/<name>/v<N>"` through a [`SchemaTag`] field, and
//! deserialization rejects any other value. [`decode`] is the one entry point for bytes from the network.
//!
//! # Unknown fields
//!
//! Inputs that come from outside the UNS and are imported as-is ([`ProductionOrder`] and the types it
//! contains: [`Operation`], [`MaterialRequirement`], and [`Quantity`]) reject unknown fields, so a typo in an
//! ERP mapping fails loudly instead of silently dropping data. Every other document tolerates unknown fields
//! (a v1 reader keeps working when a later v1 writer adds an optional field); their JSON Schemas match that
//! (`additionalProperties: false` only where Rust rejects).
//!
//! # Time
//!
//! Time-series documents ([`TagValue`], [`CountDoc`]) use `timestamp_ms` (Unix milliseconds, as UMH Core
//! does). Every other time is a [`Timestamp`]: RFC 3339 UTC with exactly three fractional digits.

mod common;
mod count;
mod genealogy;
mod meta;
mod oee;
mod order;
mod service;
mod state;
mod tag;

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use common::{EventHeader, Quantity, Timestamp, Uom, UomError};
pub use count::{CountChange, CountDoc, CountEvent};
pub use genealogy::{GenealogyEvent, GenealogyKind, Lot, LotQuantity, LotStatus};
pub use meta::{IdealRate, NodeMeta};
pub use oee::{Loss, MinorStopPolicy, OeeCounts, OeePeriod, OeeResult, SixBigLosses, TimeBuckets};
pub use order::{
    ActivityTimes, GoodsMovement, MaterialActual, MaterialRequirement, MaterialUse, MovementKind,
    Operation, Parameter, ProductionOrder, WorkOrder, WorkOrderEvent, WorkOrderEventKind,
    WorkOrderQuantities, WorkOrderStatus,
};
pub use service::{CmdReply, ErrorReport, HealthStatus, ServiceHealth};
pub use state::{MachineState, Mode, StateCategory, StateDoc, StateEvent, StateSnapshot};
pub use tag::{Quality, SparkplugSource, TagContext, TagValue};

/// Largest payload [`decode`] accepts, in bytes (1 MiB).
pub const MAX_PAYLOAD_LEN: usize = 1024 * 1024;

/// A JSON document or event with a versioned schema id.
pub trait Document {
    /// The schema name, e.g. `work-order`; also the file name stem in `schemas/`.
    const SCHEMA_NAME: &'static str;
    /// The schema version, e.g. 1.
    const SCHEMA_VERSION: u32;

    /// The value of the `schema` field: `uns/<name>/v<N>`.
    fn schema_id() -> String {
        format!("uns/{}/v{}", Self::SCHEMA_NAME, Self::SCHEMA_VERSION)
    }
}

/// The `schema` field of document `T`: serializes as `T::schema_id()` and fails to deserialize from any
/// other value. It carries no data; build it with `SchemaTag::default()`.
pub struct SchemaTag<T>(PhantomData<fn() -> T>);

impl<T> Default for SchemaTag<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T> Clone for SchemaTag<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SchemaTag<T> {}

impl<T> PartialEq for SchemaTag<T> {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl<T> Eq for SchemaTag<T> {}

impl<T: Document> fmt::Debug for SchemaTag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&T::schema_id())
    }
}

impl<T: Document> Serialize for SchemaTag<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&T::schema_id())
    }
}

impl<'de, T: Document> Deserialize<'de> for SchemaTag<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = String::deserialize(deserializer)?;
        let expected = T::schema_id();
        if found == expected {
            Ok(Self::default())
        } else {
            Err(serde::de::Error::custom(format_args!(
                "wrong schema {found:?}, expected {expected:?}"
            )))
        }
    }
}

/// Why bytes could not be decoded into a document.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload is {len} bytes, the limit is {MAX_PAYLOAD_LEN}")]
    TooLarge {
        /// Payload length in bytes.
        len: usize,
    },
    /// The payload is not UTF-8.
    #[error("payload is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// The payload is not JSON (or not a JSON object).
    #[error("payload is not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The JSON object has no string `schema` field.
    #[error("payload has no \"schema\" field, expected {expected:?}")]
    MissingSchema {
        /// The schema id the caller expected.
        expected: String,
    },
    /// The `schema` field names another document.
    #[error("payload has schema {found:?}, expected {expected:?}")]
    WrongSchema {
        /// The schema id the caller expected.
        expected: String,
        /// The schema id in the payload.
        found: String,
    },
    /// The JSON does not match the document type: serde's message names the field and the line/column.
    #[error("invalid {schema} payload: {source}")]
    Invalid {
        /// The schema id being decoded.
        schema: String,
        /// The serde error (field name, what was expected, line and column).
        source: serde_json::Error,
    },
}

/// Decodes bytes from the network into document `T`, checking size, UTF-8, JSON, the schema id and every
/// field rule, in that order, so the error says the first thing that is wrong.
pub fn decode<T: Document + DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    /// Only the schema field; every other field is skipped.
    #[derive(Deserialize)]
    struct Probe {
        schema: Option<serde_json::Value>,
    }

    if bytes.len() > MAX_PAYLOAD_LEN {
        return Err(PayloadError::TooLarge { len: bytes.len() });
    }
    let text = std::str::from_utf8(bytes)?;
    let expected = T::schema_id();
    let probe: Probe = serde_json::from_str(text).map_err(PayloadError::NotJson)?;
    match probe.schema {
        Some(serde_json::Value::String(found)) if found == expected => {}
        Some(serde_json::Value::String(found)) => {
            return Err(PayloadError::WrongSchema { expected, found });
        }
        Some(_) | None => return Err(PayloadError::MissingSchema { expected }),
    }
    serde_json::from_str(text).map_err(|source| PayloadError::Invalid {
        schema: expected,
        source,
    })
}

/// Decodes a `_wo/_active` payload: the running [`WorkOrder`], or `None` when nothing runs (an
/// empty payload, `null` or `{}`; the workorders service publishes `null`).
pub fn decode_active_order(bytes: &[u8]) -> Result<Option<WorkOrder>, PayloadError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" || trimmed == b"{}" {
        return Ok(None);
    }
    decode::<WorkOrder>(bytes).map(Some)
}

/// Implements [`Document`] for a type.
macro_rules! document {
    ($ty:ty, $name:literal, $version:literal) => {
        impl $crate::payload::Document for $ty {
            const SCHEMA_NAME: &'static str = $name;
            const SCHEMA_VERSION: u32 = $version;
        }
    };
}
use document;

#[cfg(test)]
mod tests;
