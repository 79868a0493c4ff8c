//! `_count/{kind}` and `_count/events`: [`CountDoc`] (monotonic totals) and [`CountEvent`] (deltas and
//! reclassifications).

use serde::{Deserialize, Serialize};

use super::{EventHeader, Quantity, SchemaTag, document};
use crate::topic::{CountKind, Id};

/// A monotonic counter, retained. The total never decreases: when the machine's own counter goes
/// down (a reset), the publisher adds the new raw value on top, counts the reset here and publishes a
/// [`CountChange::Reset`] event; a 16- or 32-bit rollover adds the wrapped difference. The optional
/// fields are absent in documents of older publishers (whose total was the raw value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountDoc {
    /// Always `uns/count/v1`.
    pub schema: SchemaTag<CountDoc>,
    /// Which counter (same as the topic's).
    pub kind: CountKind,
    /// The running total, monotonic.
    pub total: Quantity,
    /// Source time, Unix milliseconds.
    pub timestamp_ms: i64,
    /// The machine counter's own value behind `total` (as an unsigned number of its width).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<f64>,
    /// How often the machine counter was reset (went down) so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resets: u64,
    /// How often it rolled over (wrapped at its 16- or 32-bit maximum) so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rollovers: u64,
    /// Source time of the last reset, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset_ms: Option<i64>,
}
document!(CountDoc, "count", 1);

impl CountDoc {
    /// A total as a publisher without a machine counter behind it states it (no raw value, no
    /// resets or rollovers so far).
    #[must_use]
    pub fn new(kind: CountKind, total: Quantity, timestamp_ms: i64) -> Self {
        Self {
            schema: SchemaTag::default(),
            kind,
            total,
            timestamp_ms,
            raw: None,
            resets: 0,
            rollovers: 0,
            last_reset_ms: None,
        }
    }
}

/// A count change at a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountEvent {
    /// Always `uns/count-event/v1`.
    pub schema: SchemaTag<CountEvent>,
    /// Event id, times, correction, reason.
    #[serde(flatten)]
    pub header: EventHeader,
    /// The work order the counts belong to, if one was active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wo_id: Option<Id>,
    /// What changed (tagged by `type`).
    #[serde(flatten)]
    pub change: CountChange,
}
document!(CountEvent, "count-event", 1);

/// What a [`CountEvent`] changes, internally tagged on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CountChange {
    /// `kind` grew by `quantity`.
    Delta {
        /// The counter.
        kind: CountKind,
        /// The increment.
        quantity: Quantity,
    },
    /// The machine counter of `kind` went down from `raw_before` to `raw_after` (reset, not a
    /// rollover); the UNS total carried on and is now `total`.
    Reset {
        /// The counter.
        kind: CountKind,
        /// The machine's raw value before the reset.
        raw_before: f64,
        /// The machine's raw value after it.
        raw_after: f64,
        /// The UNS total after the reset (what `_count/{kind}` now says).
        total: Quantity,
    },
    /// `quantity` already counted as `from` is re-booked as `to` (e.g. good → scrap after inspection).
    Reclassify {
        /// The counter it was booked on.
        from: CountKind,
        /// The counter it moves to.
        to: CountKind,
        /// How much moves.
        quantity: Quantity,
    },
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &u64) -> bool {
    *value == 0
}
