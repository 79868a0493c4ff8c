//! `_oee/...`: [`OeeResult`], ISO 22400-2 KPIs of one period with their time and count breakdown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Quantity, SchemaTag, Timestamp, document};
use crate::topic::{Id, OeePeriodKind};

/// OEE of one period at one location, retained. The open period is re-published under `_oee/current/...`;
/// a closed one has `final: true`, and a correction re-publishes it with a higher `version`.
///
/// Every ratio is `null` when its denominator is zero (no planned busy time, no production time, nothing
/// produced, no ideal rate); `null_reasons` then says why, keyed by the field name. Ratios are unrounded.
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
    pub availability: Option<f64>,
    /// Effectiveness: ideal cycle × PQ / APT (may exceed 1 with a wrong ideal rate).
    pub performance: Option<f64>,
    /// GQ / PQ, 0..=1.
    pub quality: Option<f64>,
    /// availability × performance × quality.
    pub oee: Option<f64>,
    /// Net equipment effectiveness: APT / (PBT − ASUT) × performance × quality (setup excluded).
    #[serde(default)]
    pub nee: Option<f64>,
    /// Total effective equipment performance: OEE × utilisation.
    #[serde(default)]
    pub teep: Option<f64>,
    /// PBT / calendar time of the period.
    #[serde(default)]
    pub utilisation: Option<f64>,
    /// APT / (APT + ADET).
    #[serde(default)]
    pub technical_efficiency: Option<f64>,
    /// ASUT / PBT.
    #[serde(default)]
    pub setup_ratio: Option<f64>,
    /// Scrap / PQ.
    #[serde(default)]
    pub scrap_ratio: Option<f64>,
    /// Rework / PQ.
    #[serde(default)]
    pub rework_ratio: Option<f64>,
    /// Why a ratio is `null`, keyed by its field name (e.g. `availability`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub null_reasons: BTreeMap<String, String>,
    /// Time buckets.
    pub times: TimeBuckets,
    /// Quantities.
    pub counts: OeeCounts,
    /// The six big losses, in time.
    #[serde(default)]
    pub six_big_losses: SixBigLosses,
    /// Time lost, by reason, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<Loss>,
    /// How minor stops were counted.
    pub minor_stop_policy: MinorStopPolicy,
    /// The shift calendar and time zone the period was cut with, e.g. `two-shift@Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// 1 for the first result of the period, +1 per correction.
    pub version: u32,
    /// Whether the period is closed.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The version this one replaces (set from version 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<u32>,
    /// Why the period was corrected (the late events that changed it); set with `corrects`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The six big losses of TPM, in milliseconds. With net productive time = ideal cycle × GQ:
/// PBT = net productive time + all six + ADOT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SixBigLosses {
    /// Breakdowns: unplanned downtime that is not a minor stop.
    pub breakdowns_ms: u64,
    /// Setup and adjustments (ASUT).
    pub setup_ms: u64,
    /// Minor stops (idling), under either policy.
    pub minor_stops_ms: u64,
    /// Reduced speed: production time beyond the ideal time of what was produced (negative with a wrong
    /// ideal rate).
    pub speed_ms: f64,
    /// Process defects: ideal time of scrap and rework outside the start-up window.
    pub defects_ms: f64,
    /// Reduced yield: ideal time of scrap and rework within the start-up window after a setup.
    pub reduced_yield_ms: f64,
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

/// ISO 22400-2 time buckets, in milliseconds. POT = PDT + APT + ASUT + ADET + ADOT and PBT = POT − PDT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeBuckets {
    /// Planned operation time (shift time, minus time not scheduled).
    #[serde(default)]
    pub pot_ms: u64,
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
    /// Minor stops: inside ADET under `iso22400`, inside APT under `tpm`.
    #[serde(default)]
    pub minor_stop_ms: u64,
    /// Time in state `unknown`, inside ADOT and flagged (time before an asset's first state is not
    /// monitored and in no bucket; `start` is then the first monitored instant).
    #[serde(default)]
    pub unknown_ms: u64,
    /// Ideal cycle time × PQ (not a bucket): what the production time would be at the ideal rate.
    #[serde(default)]
    pub ideal_ms: f64,
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
    /// Minor stops reduce APT (availability loss); written `iso22400`.
    #[serde(rename = "iso22400", alias = "iso")]
    Iso,
    /// Minor stops count as running (performance loss).
    Tpm,
}
