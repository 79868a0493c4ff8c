//! `_tag/{metric path}` and `_tag/{metric path}/_history`: [`TagValue`], one metric value with quality, unit, context and Sparkplug origin.

use serde::{Deserialize, Deserializer, Serialize};

use super::{SchemaTag, Uom, document};
use crate::topic::Id;

/// One metric: `{"value": 71.4, "timestamp_ms": 1741068000123, "quality": "good", "unit": "CEL"}` plus
/// optional context and origin (UMH Core's shape, so UMH-style consumers read it unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagValue {
    /// Always `uns/tag/v1`.
    pub schema: SchemaTag<TagValue>,
    /// A JSON number, bool, string, array or null; never an object (rejected on deserialization).
    #[serde(deserialize_with = "not_an_object")]
    pub value: serde_json::Value,
    /// Source time, Unix milliseconds.
    pub timestamp_ms: i64,
    /// How far the value can be trusted.
    pub quality: Quality,
    /// Engineering unit (UNECE Rec 20 code, e.g. `CEL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Uom>,
    /// Production context at the time of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<TagContext>,
    /// An older value (store-and-forward, Sparkplug historical), published on
    /// `_tag/{metric path}/_history`, never as the current value. Absent (false) on current values.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub historical: bool,
    /// The Sparkplug metric it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<SparkplugSource>,
}
document!(TagValue, "tag", 1);

/// Value quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Fresh and valid.
    Good,
    /// Known to be wrong (sensor fault, bad conversion).
    Bad,
    /// Possibly wrong.
    Uncertain,
    /// The source went offline (Sparkplug NDEATH/DDEATH); the value is the last one known.
    Stale,
}

/// What was running when the value was taken; absent fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagContext {
    /// The active work order (topic id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wo_id: Option<Id>,
    /// The operation of the work order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// The lot being produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Id>,
    /// The shift name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<String>,
}

/// Sparkplug origin of a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparkplugSource {
    /// Sparkplug group id.
    pub group: String,
    /// Edge node id.
    pub edge: String,
    /// Device id, when the metric belongs to a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The metric name as published (before slugging).
    pub metric: String,
}

fn not_an_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<serde_json::Value, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    if value.is_object() {
        return Err(serde::de::Error::custom(
            "value: must be a number, bool, string, array or null, not an object",
        ));
    }
    Ok(value)
}
