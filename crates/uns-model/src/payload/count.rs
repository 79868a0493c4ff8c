//! `_count/{kind}` and `_count/events`: [`CountDoc`] (monotonic totals) and [`CountEvent`] (deltas and
//! reclassifications).

use serde::{Deserialize, Serialize};

use super::{EventHeader, Quantity, SchemaTag, document};
use crate::topic::{CountKind, Id};

/// A monotonic counter, retained. The total never decreases except when the source resets it; consumers
/// treat a smaller total as a reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountDoc {
    /// Always `uns/count/v1`.
    pub schema: SchemaTag<CountDoc>,
    /// Which counter (same as the topic's).
    pub kind: CountKind,
    /// The running total.
    pub total: Quantity,
    /// Source time, Unix milliseconds.
    pub timestamp_ms: i64,
}
document!(CountDoc, "count", 1);

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
