//! Shared payload parts: [`Timestamp`], [`Uom`], [`Quantity`] and the business [`EventHeader`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A point in time with millisecond precision, serialized as RFC 3339 UTC with exactly three fractional
/// digits (`2025-03-04T05:20:00.123Z`).
///
/// Any RFC 3339 offset is accepted on input and converted to UTC; sub-millisecond digits are truncated on
/// input and on construction, so a value always survives a serialize/deserialize round trip unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// From Unix milliseconds; `None` outside chrono's range.
    pub fn from_unix_ms(unix_ms: i64) -> Option<Self> {
        Utc.timestamp_millis_opt(unix_ms).single().map(Self)
    }

    /// Unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The underlying chrono value.
    pub fn to_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    /// Truncates to whole milliseconds.
    fn from(datetime: DateTime<Utc>) -> Self {
        let unix_ms = datetime.timestamp_millis();
        // `unix_ms` came from a valid DateTime, so it maps back to one; keep the input if it somehow does not.
        Self(
            Utc.timestamp_millis_opt(unix_ms)
                .single()
                .unwrap_or(datetime),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl FromStr for Timestamp {
    type Err = chrono::ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(DateTime::parse_from_rfc3339(text)?
            .with_timezone(&Utc)
            .into())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|err| {
            serde::de::Error::custom(format_args!("invalid RFC 3339 time {text:?}: {err}"))
        })
    }
}

/// Why a string is not a unit of measure code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid unit of measure {0:?}: expected a UNECE Rec 20 code of 1-3 uppercase letters or digits"
)]
pub struct UomError(pub String);

/// A unit of measure: a UNECE Recommendation 20 common code such as `EA`, `C62`, `KGM`, `MTR`, `LTR`, `CEL`.
///
/// Any 1-3 character code of `[A-Z0-9]` is accepted; the model does not carry the full Rec 20 list, so a
/// valid-looking but unassigned code passes. Master-data checks (erp-bridge) catch units a site does not use.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uom {
    code: [u8; 3],
    len: u8,
}

impl Uom {
    /// Each (one piece).
    pub const EA: Uom = Uom::from_ascii(*b"EA ", 2);
    /// One (unit), the Rec 20 code many ERPs use for pieces.
    pub const C62: Uom = Uom::from_ascii(*b"C62", 3);
    /// Kilogram.
    pub const KGM: Uom = Uom::from_ascii(*b"KGM", 3);
    /// Metre.
    pub const MTR: Uom = Uom::from_ascii(*b"MTR", 3);
    /// Litre.
    pub const LTR: Uom = Uom::from_ascii(*b"LTR", 3);
    /// Degree Celsius.
    pub const CEL: Uom = Uom::from_ascii(*b"CEL", 3);

    const fn from_ascii(code: [u8; 3], len: u8) -> Self {
        Self { code, len }
    }

    /// Validates a code.
    pub fn new(code: &str) -> Result<Self, UomError> {
        let bytes = code.as_bytes();
        if bytes.is_empty()
            || bytes.len() > 3
            || !bytes
                .iter()
                .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
        {
            return Err(UomError(code.to_owned()));
        }
        let mut buffer = [b' '; 3];
        buffer[..bytes.len()].copy_from_slice(bytes);
        // The length is 1..=3, so it fits in a u8.
        Ok(Self::from_ascii(buffer, bytes.len() as u8))
    }

    /// The code text.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII by construction, so this never falls back.
        std::str::from_utf8(&self.code[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for Uom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uom({})", self.as_str())
    }
}

impl fmt::Display for Uom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Uom {
    type Err = UomError;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::new(code)
    }
}

impl Serialize for Uom {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Uom {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::new(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount with its unit: `{"qty": 2500, "uom": "EA"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    /// The amount.
    pub qty: f64,
    /// The unit.
    pub uom: Uom,
}

impl Quantity {
    /// A quantity.
    pub fn new(qty: f64, uom: Uom) -> Self {
        Self { qty, uom }
    }
}

/// The fields every business event starts with (flattened into the event object).
///
/// Invariants, checked on deserialization: `event_id` is a UUIDv7; `reason` is not blank; when `corrects`
/// is set, `reason` is set. Serialization trusts the caller: build headers with [`EventHeader::new`] and
/// [`EventHeader::correcting`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEventHeader")]
pub struct EventHeader {
    /// Unique id (UUIDv7, so ids sort by time); consumers drop duplicates of at-least-once delivery by it.
    pub event_id: Uuid,
    /// When it happened at the source.
    pub occurred_at: Timestamp,
    /// When the publishing service recorded it.
    pub recorded_at: Timestamp,
    /// The event this one corrects; history is never edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<Uuid>,
    /// Why the event happened; mandatory for a correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl EventHeader {
    /// A header for a new event. Create `event_id` with `Uuid::now_v7()`.
    pub fn new(event_id: Uuid, occurred_at: Timestamp, recorded_at: Timestamp) -> Self {
        Self {
            event_id,
            occurred_at,
            recorded_at,
            corrects: None,
            reason: None,
        }
    }

    /// Marks the event as a correction of `corrects`, with its reason.
    pub fn correcting(mut self, corrects: Uuid, reason: impl Into<String>) -> Self {
        self.corrects = Some(corrects);
        self.reason = Some(reason.into());
        self
    }

    /// Sets the reason (e.g. a stop reason) without making the event a correction.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Wire form of [`EventHeader`] before its invariants are checked.
#[derive(Deserialize)]
struct RawEventHeader {
    event_id: Uuid,
    occurred_at: Timestamp,
    recorded_at: Timestamp,
    #[serde(default)]
    corrects: Option<Uuid>,
    #[serde(default)]
    reason: Option<String>,
}

impl TryFrom<RawEventHeader> for EventHeader {
    type Error = String;

    fn try_from(raw: RawEventHeader) -> Result<Self, Self::Error> {
        if raw.event_id.get_version_num() != 7 {
            return Err(format!("event_id: {} is not a UUIDv7", raw.event_id));
        }
        match raw.reason.as_deref() {
            Some(reason) if reason.trim().is_empty() => {
                return Err("reason: must not be blank".to_owned());
            }
            None if raw.corrects.is_some() => {
                return Err("reason: required when corrects is set".to_owned());
            }
            _ => {}
        }
        Ok(Self {
            event_id: raw.event_id,
            occurred_at: raw.occurred_at,
            recorded_at: raw.recorded_at,
            corrects: raw.corrects,
            reason: raw.reason,
        })
    }
}
