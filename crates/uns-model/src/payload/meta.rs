//! `_meta`: [`NodeMeta`], what a location node is.

use serde::{Deserialize, Serialize};

use super::{Quantity, SchemaTag, document};
use crate::topic::{Id, Isa95Level};

/// The retained description of a location node: its true ISA-95 level, name and time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Always `uns/meta/v1`.
    pub schema: SchemaTag<NodeMeta>,
    /// The node's ISA-95 level (authoritative; the depth only gives a default).
    pub level: Isa95Level,
    /// Name for people, e.g. `Filler 1`.
    pub display_name: String,
    /// IANA time zone, e.g. `Europe/Berlin`; day and shift periods are cut in it. Inherited from the parent
    /// node when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Ideal production rates (ISO 22400 ideal cycle), per material or as a default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ideal_rates: Vec<IdealRate>,
    /// Which state map turns this node's raw states into categories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_map: Option<Id>,
    /// The ERP's id for this node (work centre, plant code), as the ERP writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_id: Option<String>,
}
document!(NodeMeta, "meta", 1);

/// An ideal rate: how much the node makes per hour at best. Ideal cycle time = 1 h / `per_hour.qty`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdealRate {
    /// The material it applies to; `None` is the default for any material.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
    /// Quantity per hour.
    pub per_hour: Quantity,
}
