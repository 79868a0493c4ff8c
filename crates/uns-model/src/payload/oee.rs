//! `_oee/...`: [`OeeResult`], ISO 22400-2 KPIs of one period with their time and count breakdown.

use serde::{Deserialize, Serialize};

use super::{Quantity, SchemaTag, Timestamp, document};
use crate::topic::{Id, OeePeriodKind};

/// OEE of one period at one location, retained. The open period is re-published under `_oee/current/...`;
/// a closed one has `final: true`, and a correction re-publishes it with a higher `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OeeResult {
    /// Always `uns/oee-result/v1`.
    pub schema: SchemaTag<OeeResult>,
    /// Which period.
    pub period: OeePeriod,
    /// Period start (inclusive).
    pub start: Timestamp,
    /// Period end (exclusive); for an open period, the time of calculation.
    pub end: Timestamp,
    /// APT / PBT, 0..=1.
    pub availability: f64,
    /// Effectiveness: ideal cycle × PQ / APT (may exceed 1 with a wrong ideal rate).
    pub performance: f64,
    /// GQ / PQ, 0..=1.
    pub quality: f64,
    /// availability × performance × quality.
    pub oee: f64,
    /// Net equipment effectiveness, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nee: Option<f64>,
    /// Time buckets.
    pub times: TimeBuckets,
    /// Quantities.
    pub counts: OeeCounts,
    /// Time lost, by reason, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<Loss>,
    /// How minor stops were counted.
    pub minor_stop_policy: MinorStopPolicy,
    /// 1 for the first result of the period, +1 per correction.
    pub version: u32,
    /// Whether the period is closed.
    #[serde(rename = "final")]
    pub is_final: bool,
}
document!(OeeResult, "oee-result", 1);

/// A period kind and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OeePeriod {
    /// hour, shift, day or wo.
    pub kind: OeePeriodKind,
    /// The period id as in the topic.
    pub id: Id,
}

/// ISO 22400-2 time buckets, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBuckets {
    /// Planned busy time.
    pub pbt_ms: u64,
    /// Actual production time.
    pub apt_ms: u64,
    /// Actual unit setup time.
    pub asut_ms: u64,
    /// Actual unit delay time (breakdowns).
    pub adet_ms: u64,
    /// Actual unit down time (starved/blocked).
    pub adot_ms: u64,
    /// Planned down time.
    pub pdt_ms: u64,
}

/// Quantities of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OeeCounts {
    /// Produced quantity (PQ).
    pub produced: Quantity,
    /// Good quantity (GQ).
    pub good: Quantity,
    /// Scrap quantity.
    pub scrap: Quantity,
    /// Rework quantity.
    pub rework: Quantity,
}

/// Time lost for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// The reason (state name or operator reason).
    pub reason: String,
    /// The state category it fell in.
    pub category: super::StateCategory,
    /// Time lost.
    pub duration_ms: u64,
    /// How many times it occurred.
    pub occurrences: u32,
}

/// Whether minor stops count against availability (ISO 22400) or performance (TPM practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinorStopPolicy {
    /// Minor stops reduce APT (availability loss).
    Iso,
    /// Minor stops count as running (performance loss).
    Tpm,
}
