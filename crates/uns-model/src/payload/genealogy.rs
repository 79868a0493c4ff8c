//! Lots and genealogy: [`Lot`] (`_lot/{id}`) and [`GenealogyEvent`] (`_genealogy/events`), EPCIS-like.

use serde::{Deserialize, Serialize};

use super::{EventHeader, Quantity, SchemaTag, Timestamp, document};
use crate::topic::{Id, Location};

/// A lot document, retained; owned by the genealogy service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lot {
    /// Always `uns/lot/v1`.
    pub schema: SchemaTag<Lot>,
    /// Topic id of the lot.
    pub id: Id,
    /// Material number.
    pub material: String,
    /// Quantity currently in the lot.
    pub quantity: Quantity,
    /// Usability.
    pub status: LotStatus,
    /// Lots it was made or split from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Id>,
    /// The work order that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_by: Option<Id>,
    /// Where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The supplier's or ERP's lot key, unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_ref: Option<String>,
    /// When the document last changed.
    pub updated_at: Timestamp,
}
document!(Lot, "lot", 1);

/// Where a lot is in its life, and whether it may be used (issue 13's set).
///
/// Only a `released` lot is consumed, merged or shipped; `quarantine` and `rejected` lots never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LotStatus {
    /// Announced before production; holds nothing yet.
    Planned,
    /// Being produced: its producing order runs.
    InProduction,
    /// Waiting for a quality decision.
    Quarantine,
    /// Released for use: received, or produced and not held by quality.
    Released,
    /// Rejected by quality: must not be used.
    Rejected,
    /// Fully consumed.
    Consumed,
    /// Fully shipped to a customer or another site.
    Shipped,
    /// Scrapped or destroyed.
    Destroyed,
}

/// A genealogy event. Type `correct` voids the event named in `corrects` (which is then mandatory); a
/// corrected replacement is a new event of the proper type with `corrects` set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGenealogyEvent")]
pub struct GenealogyEvent {
    /// Always `uns/genealogy-event/v1`.
    pub schema: SchemaTag<GenealogyEvent>,
    /// Event id, times, correction, reason.
    #[serde(flatten)]
    pub header: EventHeader,
    /// What happened (tagged by `type`).
    #[serde(flatten)]
    pub kind: GenealogyKind,
}
document!(GenealogyEvent, "genealogy-event", 1);

/// What happened to lots, internally tagged on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GenealogyKind {
    /// A lot arrived from a supplier or another site.
    Receive {
        /// The new lot, its material and quantity.
        lot: LotQuantity,
        /// Where it was received.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<Location>,
        /// The supplier's lot number, unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supplier_lot: Option<String>,
    },
    /// Lots were consumed to produce other lots (a production step).
    Transform {
        /// Inputs.
        consumed: Vec<LotQuantity>,
        /// Outputs.
        produced: Vec<LotQuantity>,
        /// The work order that ran the step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wo_id: Option<Id>,
    },
    /// One lot was divided into sublots.
    Split {
        /// The lot divided.
        source: Id,
        /// The sublots.
        into: Vec<LotQuantity>,
    },
    /// Lots were combined into one.
    Merge {
        /// The lots combined.
        sources: Vec<LotQuantity>,
        /// The resulting lot.
        into: LotQuantity,
    },
    /// A lot changed place.
    Move {
        /// The lot.
        lot: Id,
        /// Where it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Location>,
        /// Where it is now.
        to: Location,
    },
    /// (Part of) a lot was scrapped.
    Scrap {
        /// The lot and the quantity scrapped.
        lot: LotQuantity,
    },
    /// (Part of) a lot left the site: to a customer or another location.
    Ship {
        /// The lot and the quantity shipped.
        lot: LotQuantity,
        /// The customer it went to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<String>,
        /// Where it went.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Location>,
    },
    /// Voids the event in `corrects`.
    Correct,
}

/// A lot with a quantity (and, for new lots, its material).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotQuantity {
    /// The lot.
    pub lot: Id,
    /// Its material number (required for lots the event creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
    /// How much.
    pub quantity: Quantity,
}

/// Wire form of [`GenealogyEvent`] before its invariants are checked.
#[derive(Deserialize)]
struct RawGenealogyEvent {
    schema: SchemaTag<GenealogyEvent>,
    #[serde(flatten)]
    header: EventHeader,
    #[serde(flatten)]
    kind: GenealogyKind,
}

impl TryFrom<RawGenealogyEvent> for GenealogyEvent {
    type Error = &'static str;

    fn try_from(raw: RawGenealogyEvent) -> Result<Self, Self::Error> {
        if raw.kind == GenealogyKind::Correct && raw.header.corrects.is_none() {
            return Err("corrects: required for an event of type correct");
        }
        Ok(Self {
            schema: raw.schema,
            header: raw.header,
            kind: raw.kind,
        })
    }
}
