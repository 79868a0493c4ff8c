//! [`Ledger`]: lots, the hash-chained event log and the adjacency indexes, in one redb file.
//!
//! Every accepted event is applied in one write transaction: its id goes into [`Seen`] (so a
//! redelivery is applied once), the event itself is appended to the [`Chain`] `genealogy`, the lots
//! it touches are rewritten, and one edge per input → output pair is written twice, keyed by the
//! input lot (forward index) and by the output lot (backward index), so a trace reads only the
//! edges of the lots it visits. A refused event writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use uns_model::payload::{
    GenealogyEvent, GenealogyKind, Lot, LotQuantity, LotStatus, Quantity, SchemaTag, Timestamp, Uom,
};
use uns_model::topic::{Id, Location};
use uns_store::{
    Bytes, Chain, Json, ReadableTx, Seen, Store, StoreError, Str, Table, U64, VerifyReport, WriteTx,
};
use uuid::Uuid;

use crate::layout::{EdgeBin, StoredEdge, TransformBin, TransformRow};

/// Quantities closer than this to zero count as zero (float sums of partial consumptions).
pub(crate) const EPS: f64 = 1e-9;

/// Current lots by id.
pub(crate) const LOTS: Table<Str, Json<LotRecord>> = Table::new("genealogy.lots_v1");
/// Forward index: `{from lot}\0{seq BE}{n BE}` → edge (binary, with the voided flag).
pub(crate) const FORWARD: Table<Bytes, EdgeBin> = Table::new("genealogy.forward_v2");
/// Backward index: `{to lot}\0{seq BE}{n BE}` → edge (binary, with the voided flag).
pub(crate) const BACKWARD: Table<Bytes, EdgeBin> = Table::new("genealogy.backward_v2");
/// Per transform, by chain record: what its mass balance needs (binary).
pub(crate) const TRANSFORMS: Table<U64, TransformBin> = Table::new("genealogy.transforms_v2");
/// Events applied, by event id.
pub(crate) const EVENTS: Table<Str, Json<AppliedEvent>> = Table::new("genealogy.events_v1");
/// Per lot, the chain records that touched it: `{lot}\0{seq BE}` → nothing.
pub(crate) const LOT_EVENTS: Table<Bytes, Bytes> = Table::new("genealogy.lot_events_v1");

/// The chain name (table `chain.genealogy.records_v1`).
pub const CHAIN: &str = "genealogy";
/// The seen-ids name (tables `seen.genealogy.*`).
const SEEN: &str = "genealogy";

/// A lot as the ledger keeps it: the published document plus what traces and exports need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotRecord {
    /// The `_lot/{id}` document.
    pub lot: Lot,
    /// The location the creating event was published at (where `_lot/{id}` is published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<Location>,
    /// When it was received or produced (the creating event's `occurred_at`).
    pub created_at: Timestamp,
    /// The event that created it.
    pub created_by: Uuid,
    /// How it was created: `receive`, `transform`, `split` or `merge`.
    pub origin: String,
    /// What left the site, one entry per ship event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shipments: Vec<Shipment>,
}

/// One shipment of (part of) a lot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    /// The ship event.
    pub event_id: Uuid,
    /// How much.
    pub quantity: Quantity,
    /// To whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Where to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Location>,
    /// When.
    pub at: Timestamp,
}

/// One input → output link of a transform, split or merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// The input lot.
    pub from: Id,
    /// The output lot.
    pub to: Id,
    /// How much of the input the event consumed.
    pub quantity: Quantity,
    /// The event.
    pub event_id: Uuid,
    /// Its chain record.
    pub seq: u64,
    /// `transform`, `split` or `merge`.
    pub kind: String,
    /// The work order of a transform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wo_id: Option<Id>,
    /// When it happened.
    pub occurred_at: Timestamp,
}

/// What the ledger remembers of an applied event, so a correction can undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppliedEvent {
    pub(crate) seq: u64,
    pub(crate) kind: String,
    pub(crate) occurred_at: Timestamp,
    pub(crate) effects: Vec<Effect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) voided: Option<Void>,
}

/// How an event changed one lot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Effect {
    pub(crate) lot: Id,
    #[serde(default)]
    pub(crate) qty_delta: f64,
    #[serde(default)]
    pub(crate) created: bool,
    /// For a move: the location before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) moved_from: Option<Option<Location>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) parents_added: Vec<Id>,
    #[serde(default)]
    pub(crate) shipped: bool,
}

/// A correction that voided an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Void {
    /// The correcting event.
    pub by: Uuid,
    /// When the correction happened (its `occurred_at`).
    pub occurred_at: Timestamp,
    /// Why.
    pub reason: String,
}

/// One record of the chain, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEntry {
    /// A genealogy event, with the location it was published at.
    Event {
        /// The location in the topic it came on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<Location>,
        /// The event as received.
        event: GenealogyEvent,
    },
    /// A quality decision on a lot (release, quarantine, reject).
    Status(StatusChange),
}

/// A lot's status set by a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Id of the change (idempotency).
    pub event_id: Uuid,
    /// The lot.
    pub lot: Id,
    /// Before (records written before issue 13's status set say `available`, `blocked`: read as
    /// `released`, `rejected`).
    #[serde(deserialize_with = "crate::layout::status_or_legacy")]
    pub from: LotStatus,
    /// After.
    #[serde(deserialize_with = "crate::layout::status_or_legacy")]
    pub to: LotStatus,
    /// Why (mandatory for quarantine and reject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked, as the command said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A quality decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// quarantine → released.
    Release,
    /// released → quarantine.
    Quarantine,
    /// released or quarantine → rejected.
    Reject,
}

/// Why an event or command was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// An input lot the ledger does not know (it is never invented).
    #[error("lot {0} is unknown: receive or produce it first")]
    UnknownLot(Id),
    /// A lot that is not released (in quarantine, rejected, consumed, ...) was to be consumed or
    /// shipped.
    #[error("lot {lot} is {status:?}, it cannot be {action}")]
    NotUsable {
        /// The lot.
        lot: Id,
        /// Its status.
        status: LotStatus,
        /// What was attempted.
        action: &'static str,
    },
    /// More was taken than the lot holds.
    #[error("lot {lot} holds {have} {uom}, the event takes {take}: quantities never go negative")]
    Negative {
        /// The lot.
        lot: Id,
        /// What it holds.
        have: f64,
        /// What was asked.
        take: f64,
        /// The unit.
        uom: Uom,
    },
    /// A quantity in another unit than the lot's.
    #[error("lot {lot} is counted in {lot_uom}, the event says {event_uom}")]
    UomMismatch {
        /// The lot.
        lot: Id,
        /// The lot's unit.
        lot_uom: Uom,
        /// The event's unit.
        event_uom: Uom,
    },
    /// A quantity that is zero, negative or not a number.
    #[error("lot {lot}: quantity {qty} must be a positive number")]
    BadQuantity {
        /// The lot.
        lot: Id,
        /// The quantity.
        qty: f64,
    },
    /// A lot the event creates without a material.
    #[error("lot {0} is new: its material is required")]
    MissingMaterial(Id),
    /// An existing lot produced again with another material.
    #[error("lot {lot} is material {has}, the event says {says}")]
    MaterialMismatch {
        /// The lot.
        lot: Id,
        /// Its material.
        has: String,
        /// The event's.
        says: String,
    },
    /// A receive of a lot that exists.
    #[error("lot {0} exists already")]
    LotExists(Id),
    /// An event without inputs or outputs where they are required.
    #[error("{0}")]
    Empty(&'static str),
    /// A correction of an event the ledger does not have.
    #[error("event {0} is unknown: nothing to correct")]
    UnknownEvent(Uuid),
    /// A correction of an event already voided.
    #[error("event {0} was already corrected by {1}")]
    AlreadyVoided(Uuid, Uuid),
    /// A correction of a correction.
    #[error("event {0} is a correction: corrections are not corrected, send a new event")]
    CorrectsCorrection(Uuid),
    /// Undoing the corrected event would break a later one.
    #[error("cannot undo event {event}: {why}")]
    CannotUndo {
        /// The corrected event.
        event: Uuid,
        /// Why.
        why: String,
    },
    /// A quality decision that does not apply to the lot's status.
    #[error("lot {lot} is {status:?}: {decision:?} does not apply")]
    BadDecision {
        /// The lot.
        lot: Id,
        /// Its status.
        status: LotStatus,
        /// The decision.
        decision: Decision,
    },
    /// Quarantine and reject need a reason.
    #[error("{0:?} needs a reason")]
    ReasonRequired(Decision),
}

/// Why an operation failed: refused (nothing written), or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The event or command breaks a rule.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied as chain record `seq`; `changed` lots to republish, `removed` lots to clear.
    Applied {
        /// The chain record.
        seq: u64,
        /// Lots as they are now.
        changed: Vec<LotRecord>,
        /// Lots that no longer exist (created by a voided event).
        removed: Vec<Id>,
    },
    /// The event id was applied before; nothing changed.
    Duplicate,
}

/// Mass-balance tolerances: the relative deviation allowed between a transform's inputs and
/// outputs, per produced material, with a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tolerances {
    /// For materials not listed (0.02 = 2 %).
    pub default: f64,
    /// Per produced material number.
    pub materials: BTreeMap<String, f64>,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            default: 0.02,
            materials: BTreeMap::new(),
        }
    }
}

impl Tolerances {
    /// The tolerance for `material`.
    pub fn of(&self, material: &str) -> f64 {
        self.materials
            .get(material)
            .copied()
            .unwrap_or(self.default)
    }
}

/// The lots, events, chain and indexes of one site's genealogy.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(crate) store: Store,
    pub(crate) tolerances: Tolerances,
}

pub(crate) fn prefix_key(lot: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(lot.len() + 1);
    key.extend_from_slice(lot.as_bytes());
    key.push(0);
    key
}

pub(crate) fn prefix_end(lot: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(lot.len() + 1);
    key.extend_from_slice(lot.as_bytes());
    key.push(1);
    key
}

pub(crate) fn edge_key(lot: &str, seq: u64, n: u32) -> Vec<u8> {
    let mut key = prefix_key(lot);
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(&n.to_be_bytes());
    key
}

pub(crate) fn lot_event_key(lot: &str, seq: u64) -> Vec<u8> {
    let mut key = prefix_key(lot);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn timestamp(now_ms: u64) -> Timestamp {
    Timestamp::from_unix_ms(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .or_else(|| Timestamp::from_unix_ms(0))
        .expect("the Unix epoch is a valid time")
}

fn is_zero(qty: f64) -> bool {
    qty.abs() <= EPS
}

/// The lots an event reads and writes, loaded on first use; written back only when the whole
/// event is accepted.
struct Overlay<'t, 'a> {
    tx: &'t WriteTx<'a>,
    lots: BTreeMap<Id, Option<LotRecord>>,
    lot_events: Vec<Id>,
}

impl<'t, 'a> Overlay<'t, 'a> {
    fn get(&mut self, id: &Id) -> Result<Option<&mut LotRecord>, StoreError> {
        if !self.lots.contains_key(id) {
            let record = self.tx.get(&LOTS, id.as_str())?;
            self.lots.insert(id.clone(), record);
        }
        self.touch(id);
        Ok(self.lots.get_mut(id).and_then(Option::as_mut))
    }

    fn touch(&mut self, id: &Id) {
        if !self.lot_events.contains(id) {
            self.lot_events.push(id.clone());
        }
    }

    /// The lot, which must exist.
    fn existing(&mut self, id: &Id) -> Result<Result<&mut LotRecord, Refusal>, StoreError> {
        Ok(self.get(id)?.ok_or_else(|| Refusal::UnknownLot(id.clone())))
    }
}

fn check_qty(item: &LotQuantity) -> Result<(), Refusal> {
    if !item.quantity.qty.is_finite() || item.quantity.qty <= 0.0 {
        return Err(Refusal::BadQuantity {
            lot: item.lot.clone(),
            qty: item.quantity.qty,
        });
    }
    Ok(())
}

/// Takes `item` out of its lot: the lot must exist, be usable (unless `any_status`), be in the
/// same unit and hold enough.
fn take(
    overlay: &mut Overlay<'_, '_>,
    item: &LotQuantity,
    action: &'static str,
    any_status: bool,
    now: Timestamp,
) -> Result<Result<Effect, Refusal>, StoreError> {
    if let Err(refusal) = check_qty(item) {
        return Ok(Err(refusal));
    }
    let record = match overlay.existing(&item.lot)? {
        Ok(record) => record,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let lot = &mut record.lot;
    if !any_status && lot.status != LotStatus::Released {
        return Ok(Err(Refusal::NotUsable {
            lot: item.lot.clone(),
            status: lot.status,
            action,
        }));
    }
    if lot.quantity.uom != item.quantity.uom {
        return Ok(Err(Refusal::UomMismatch {
            lot: item.lot.clone(),
            lot_uom: lot.quantity.uom,
            event_uom: item.quantity.uom,
        }));
    }
    let left = lot.quantity.qty - item.quantity.qty;
    if left < -EPS {
        return Ok(Err(Refusal::Negative {
            lot: item.lot.clone(),
            have: lot.quantity.qty,
            take: item.quantity.qty,
            uom: lot.quantity.uom,
        }));
    }
    lot.quantity.qty = if is_zero(left) { 0.0 } else { left };
    lot.updated_at = now;
    Ok(Ok(Effect {
        lot: item.lot.clone(),
        qty_delta: -item.quantity.qty,
        created: false,
        moved_from: None,
        parents_added: Vec::new(),
        shipped: false,
    }))
}

/// Adds `item` to its lot, creating it when new.
#[allow(clippy::too_many_arguments)]
fn put(
    overlay: &mut Overlay<'_, '_>,
    item: &LotQuantity,
    parents: &[Id],
    produced_by: Option<&Id>,
    origin: &str,
    site: Option<&Location>,
    event_id: Uuid,
    occurred_at: Timestamp,
    now: Timestamp,
    status: LotStatus,
) -> Result<Result<Effect, Refusal>, StoreError> {
    if let Err(refusal) = check_qty(item) {
        return Ok(Err(refusal));
    }
    let mut effect = Effect {
        lot: item.lot.clone(),
        qty_delta: item.quantity.qty,
        created: false,
        moved_from: None,
        parents_added: Vec::new(),
        shipped: false,
    };
    match overlay.get(&item.lot)? {
        Some(record) => {
            let lot = &mut record.lot;
            if let Some(material) = &item.material
                && *material != lot.material
            {
                return Ok(Err(Refusal::MaterialMismatch {
                    lot: item.lot.clone(),
                    has: lot.material.clone(),
                    says: material.clone(),
                }));
            }
            if lot.quantity.uom != item.quantity.uom {
                return Ok(Err(Refusal::UomMismatch {
                    lot: item.lot.clone(),
                    lot_uom: lot.quantity.uom,
                    event_uom: item.quantity.uom,
                }));
            }
            lot.quantity.qty += item.quantity.qty;
            if matches!(
                lot.status,
                LotStatus::Consumed | LotStatus::Destroyed | LotStatus::Shipped
            ) {
                lot.status = LotStatus::Released;
            }
            for parent in parents {
                if !lot.parents.contains(parent) && *parent != item.lot {
                    lot.parents.push(parent.clone());
                    effect.parents_added.push(parent.clone());
                }
            }
            if lot.produced_by.is_none() {
                lot.produced_by = produced_by.cloned();
            }
            lot.updated_at = now;
        }
        None => {
            let Some(material) = item.material.clone() else {
                return Ok(Err(Refusal::MissingMaterial(item.lot.clone())));
            };
            let mut own_parents: Vec<Id> = Vec::new();
            for parent in parents {
                if !own_parents.contains(parent) && *parent != item.lot {
                    own_parents.push(parent.clone());
                }
            }
            effect.created = true;
            overlay.lots.insert(
                item.lot.clone(),
                Some(LotRecord {
                    lot: Lot {
                        schema: SchemaTag::default(),
                        id: item.lot.clone(),
                        material,
                        quantity: item.quantity,
                        status,
                        parents: own_parents,
                        produced_by: produced_by.cloned(),
                        location: None,
                        erp_ref: None,
                        updated_at: now,
                    },
                    site: site.cloned(),
                    created_at: occurred_at,
                    created_by: event_id,
                    origin: origin.to_owned(),
                    shipments: Vec::new(),
                }),
            );
        }
    }
    Ok(Ok(effect))
}

/// Undoes `effects` of event `event_id` on the overlay.
fn undo(
    overlay: &mut Overlay<'_, '_>,
    event_id: Uuid,
    effects: &[Effect],
    now: Timestamp,
) -> Result<Result<(), Refusal>, StoreError> {
    for effect in effects.iter().rev() {
        let cannot = |why: String| Refusal::CannotUndo {
            event: event_id,
            why,
        };
        let Some(record) = overlay.get(&effect.lot)? else {
            return Ok(Err(cannot(format!("lot {} no longer exists", effect.lot))));
        };
        let lot = &mut record.lot;
        let left = lot.quantity.qty - effect.qty_delta;
        if left < -EPS {
            return Ok(Err(cannot(format!(
                "lot {} holds {} {}, giving back the event's {} would make it negative (it was used since: correct those events first)",
                effect.lot, lot.quantity.qty, lot.quantity.uom, effect.qty_delta
            ))));
        }
        lot.quantity.qty = if is_zero(left) { 0.0 } else { left };
        if let Some(from) = &effect.moved_from {
            lot.location = from.clone();
        }
        lot.parents
            .retain(|parent| !effect.parents_added.contains(parent));
        if effect.shipped {
            record.shipments.retain(|s| s.event_id != event_id);
        }
        let lot = &mut record.lot;
        if lot.quantity.qty > EPS
            && matches!(
                lot.status,
                LotStatus::Consumed | LotStatus::Destroyed | LotStatus::Shipped
            )
        {
            lot.status = LotStatus::Released;
        } else if is_zero(lot.quantity.qty) && lot.status == LotStatus::Released {
            lot.status = LotStatus::Consumed;
        }
        lot.updated_at = now;
        if effect.created && is_zero(lot.quantity.qty) {
            overlay.lots.insert(effect.lot.clone(), None);
        }
    }
    Ok(Ok(()))
}

/// Sets the status of lots emptied by `action`.
fn mark_empty(overlay: &mut Overlay<'_, '_>, effects: &[Effect], status: LotStatus) {
    for effect in effects {
        if let Some(Some(record)) = overlay.lots.get_mut(&effect.lot)
            && effect.qty_delta < 0.0
            && is_zero(record.lot.quantity.qty)
        {
            record.lot.status = status;
        }
    }
}

/// Effects and edges of one event, or the refusal.
struct Applied {
    effects: Vec<Effect>,
    /// (from, to, quantity of the input).
    links: Vec<(Id, Id, Quantity)>,
}

macro_rules! tri {
    ($e:expr) => {
        match $e? {
            Ok(value) => value,
            Err(refusal) => return Ok(Err(refusal)),
        }
    };
}

fn apply_kind(
    overlay: &mut Overlay<'_, '_>,
    event: &GenealogyEvent,
    site: Option<&Location>,
    now: Timestamp,
) -> Result<Result<Applied, Refusal>, StoreError> {
    let event_id = event.header.event_id;
    let at = event.header.occurred_at;
    let mut effects = Vec::new();
    let mut links = Vec::new();
    match &event.kind {
        GenealogyKind::Receive {
            lot,
            location,
            supplier_lot,
        } => {
            if overlay.get(&lot.lot)?.is_some() {
                return Ok(Err(Refusal::LotExists(lot.lot.clone())));
            }
            effects.push(tri!(put(
                overlay,
                lot,
                &[],
                None,
                "receive",
                site,
                event_id,
                at,
                now,
                LotStatus::Released
            )));
            if let Some(Some(record)) = overlay.lots.get_mut(&lot.lot) {
                record.lot.location = location.clone();
                record.lot.erp_ref = supplier_lot.clone();
            }
        }
        GenealogyKind::Transform {
            consumed,
            produced,
            wo_id,
        } => {
            if consumed.is_empty() || produced.is_empty() {
                return Ok(Err(Refusal::Empty(
                    "a transform needs at least one consumed and one produced lot",
                )));
            }
            for input in consumed {
                effects.push(tri!(take(overlay, input, "consumed", false, now)));
            }
            let parents: Vec<Id> = consumed.iter().map(|c| c.lot.clone()).collect();
            for output in produced {
                effects.push(tri!(put(
                    overlay,
                    output,
                    &parents,
                    wo_id.as_ref(),
                    "transform",
                    site,
                    event_id,
                    at,
                    now,
                    LotStatus::Released
                )));
            }
            mark_empty(overlay, &effects, LotStatus::Consumed);
            for input in consumed {
                for output in produced {
                    links.push((input.lot.clone(), output.lot.clone(), input.quantity));
                }
            }
        }
        GenealogyKind::Split { source, into } => {
            if into.is_empty() {
                return Ok(Err(Refusal::Empty("a split needs at least one sublot")));
            }
            let status = tri!(overlay.existing(source).map(|r| r.map(|r| r.lot.status)));
            for sublot in into {
                let item = LotQuantity {
                    lot: source.clone(),
                    material: None,
                    quantity: sublot.quantity,
                };
                effects.push(tri!(take(overlay, &item, "split", true, now)));
            }
            let material = tri!(
                overlay
                    .existing(source)
                    .map(|r| r.map(|r| r.lot.material.clone()))
            );
            for sublot in into {
                let mut sublot = sublot.clone();
                sublot.material.get_or_insert_with(|| material.clone());
                effects.push(tri!(put(
                    overlay,
                    &sublot,
                    std::slice::from_ref(source),
                    None,
                    "split",
                    site,
                    event_id,
                    at,
                    now,
                    status
                )));
                links.push((source.clone(), sublot.lot.clone(), sublot.quantity));
            }
            mark_empty(overlay, &effects, LotStatus::Consumed);
        }
        GenealogyKind::Merge { sources, into } => {
            if sources.is_empty() {
                return Ok(Err(Refusal::Empty("a merge needs at least one source lot")));
            }
            for source in sources {
                effects.push(tri!(take(overlay, source, "merged", false, now)));
            }
            let parents: Vec<Id> = sources.iter().map(|s| s.lot.clone()).collect();
            effects.push(tri!(put(
                overlay,
                into,
                &parents,
                None,
                "merge",
                site,
                event_id,
                at,
                now,
                LotStatus::Released
            )));
            mark_empty(overlay, &effects, LotStatus::Consumed);
            for source in sources {
                links.push((source.lot.clone(), into.lot.clone(), source.quantity));
            }
        }
        GenealogyKind::Move { lot, from: _, to } => {
            let record = tri!(overlay.existing(lot));
            let before = record.lot.location.clone();
            record.lot.location = Some(to.clone());
            record.lot.updated_at = now;
            effects.push(Effect {
                lot: lot.clone(),
                qty_delta: 0.0,
                created: false,
                moved_from: Some(before),
                parents_added: Vec::new(),
                shipped: false,
            });
        }
        GenealogyKind::Scrap { lot } => {
            effects.push(tri!(take(overlay, lot, "scrapped", true, now)));
            mark_empty(overlay, &effects, LotStatus::Destroyed);
        }
        GenealogyKind::Ship { lot, customer, to } => {
            let mut effect = tri!(take(overlay, lot, "shipped", false, now));
            effect.shipped = true;
            effects.push(effect);
            mark_empty(overlay, &effects, LotStatus::Shipped);
            if let Some(Some(record)) = overlay.lots.get_mut(&lot.lot) {
                record.shipments.push(Shipment {
                    event_id,
                    quantity: lot.quantity,
                    customer: customer.clone(),
                    to: to.clone(),
                    at,
                });
            }
        }
        GenealogyKind::Correct => {}
    }
    Ok(Ok(Applied { effects, links }))
}

fn kind_name(kind: &GenealogyKind) -> &'static str {
    match kind {
        GenealogyKind::Receive { .. } => "receive",
        GenealogyKind::Transform { .. } => "transform",
        GenealogyKind::Split { .. } => "split",
        GenealogyKind::Merge { .. } => "merge",
        GenealogyKind::Move { .. } => "move",
        GenealogyKind::Scrap { .. } => "scrap",
        GenealogyKind::Ship { .. } => "ship",
        GenealogyKind::Correct => "correct",
    }
}

/// The whole write of one event: `Ok(Err)` refuses it with nothing written.
pub(crate) fn apply_in(
    tx: &mut WriteTx<'_>,
    site: Option<&Location>,
    event: &GenealogyEvent,
    now_ms: u64,
) -> Result<Result<Outcome, Refusal>, StoreError> {
    let event_id = event.header.event_id;
    let id_text = event_id.to_string();
    let seen = Seen::new(SEEN);
    if seen.contains(tx, &id_text)? {
        return Ok(Ok(Outcome::Duplicate));
    }
    let now = timestamp(now_ms);
    let mut overlay = Overlay {
        tx,
        lots: BTreeMap::new(),
        lot_events: Vec::new(),
    };
    let mut voided = None;
    if let Some(original_id) = event.header.corrects {
        let Some(original) = overlay.tx.get(&EVENTS, &original_id.to_string())? else {
            return Ok(Err(Refusal::UnknownEvent(original_id)));
        };
        if let Some(void) = &original.voided {
            return Ok(Err(Refusal::AlreadyVoided(original_id, void.by)));
        }
        if original.kind == "correct" {
            return Ok(Err(Refusal::CorrectsCorrection(original_id)));
        }
        tri!(undo(&mut overlay, original_id, &original.effects, now));
        voided = Some((original_id, original));
    }
    let applied = tri!(apply_kind(&mut overlay, event, site, now));
    let Overlay {
        lots, lot_events, ..
    } = overlay;

    // Accepted: write it all.
    seen.insert(tx, &id_text, now_ms)?;
    let entry = LogEntry::Event {
        site: site.cloned(),
        event: event.clone(),
    };
    let payload = serde_json::to_vec(&entry).map_err(|err| StoreError::Encode {
        table: format!("chain.{CHAIN}.records_v1"),
        message: err.to_string(),
    })?;
    let seq = Chain::new(CHAIN).append(tx, &payload, now_ms)?.seq;
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    for (id, record) in lots {
        match record {
            Some(record) => {
                tx.insert(&LOTS, id.as_str(), &record)?;
                changed.push(record);
            }
            None => {
                if tx.remove(&LOTS, id.as_str())? {
                    removed.push(id);
                }
            }
        }
    }
    for lot in &lot_events {
        tx.insert(&LOT_EVENTS, &lot_event_key(lot.as_str(), seq), &[])?;
    }
    let wo_id = match &event.kind {
        GenealogyKind::Transform { wo_id, .. } => wo_id.clone(),
        _ => None,
    };
    for (n, (from, to, quantity)) in applied.links.into_iter().enumerate() {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let edge = Edge {
            from,
            to,
            quantity,
            event_id,
            seq,
            kind: kind_name(&event.kind).to_owned(),
            wo_id: wo_id.clone(),
            occurred_at: event.header.occurred_at,
        };
        let stored = StoredEdge {
            edge,
            voided_at: None,
        };
        tx.insert(
            &FORWARD,
            &edge_key(stored.edge.from.as_str(), seq, n),
            &stored,
        )?;
        tx.insert(
            &BACKWARD,
            &edge_key(stored.edge.to.as_str(), seq, n),
            &stored,
        )?;
    }
    if let GenealogyKind::Transform {
        consumed, produced, ..
    } = &event.kind
    {
        tx.insert(
            &TRANSFORMS,
            &seq,
            &TransformRow {
                event_id,
                wo_id: wo_id.clone(),
                occurred_at: event.header.occurred_at,
                consumed: consumed.clone(),
                produced: produced.clone(),
            },
        )?;
    }
    if let Some((original_id, mut original)) = voided {
        void_edges(
            tx,
            original.seq,
            original.effects.iter().map(|e| &e.lot),
            event.header.occurred_at,
        )?;
        original.voided = Some(Void {
            by: event_id,
            occurred_at: event.header.occurred_at,
            reason: event.header.reason.clone().unwrap_or_default(),
        });
        tx.insert(&EVENTS, &original_id.to_string(), &original)?;
    }
    tx.insert(
        &EVENTS,
        &id_text,
        &AppliedEvent {
            seq,
            kind: kind_name(&event.kind).to_owned(),
            occurred_at: event.header.occurred_at,
            effects: applied.effects,
            voided: None,
        },
    )?;
    Ok(Ok(Outcome::Applied {
        seq,
        changed,
        removed,
    }))
}

/// Marks the edges of the event at chain record `seq` voided at `at`, in both indexes. Every
/// edge starts at a lot the event took from, so `lots` (the lots of its effects) find them all.
fn void_edges<'l>(
    tx: &mut WriteTx<'_>,
    seq: u64,
    lots: impl Iterator<Item = &'l Id>,
    at: Timestamp,
) -> Result<(), StoreError> {
    let lots: BTreeSet<&Id> = lots.collect();
    for lot in lots {
        let lower = lot_event_key(lot.as_str(), seq);
        let upper = lot_event_key(lot.as_str(), seq.saturating_add(1));
        for (key, mut stored) in tx.range(&FORWARD, lower.as_slice()..upper.as_slice())? {
            stored.voided_at = Some(at);
            let n = key
                .get(key.len().saturating_sub(4)..)
                .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
                .map_or(0, u32::from_be_bytes);
            tx.insert(&FORWARD, &key, &stored)?;
            tx.insert(
                &BACKWARD,
                &edge_key(stored.edge.to.as_str(), seq, n),
                &stored,
            )?;
        }
    }
    Ok(())
}

pub(crate) fn decide_in(
    tx: &mut WriteTx<'_>,
    change: StatusChangeRequest,
    now_ms: u64,
) -> Result<Result<(Outcome, Option<StatusChange>), Refusal>, StoreError> {
    let seen = Seen::new(SEEN);
    let id_text = change.event_id.to_string();
    if seen.contains(tx, &id_text)? {
        return Ok(Ok((Outcome::Duplicate, None)));
    }
    let reason = change.reason.filter(|r| !r.trim().is_empty());
    if change.decision != Decision::Release && reason.is_none() {
        return Ok(Err(Refusal::ReasonRequired(change.decision)));
    }
    let Some(mut record) = tx.get(&LOTS, change.lot.as_str())? else {
        return Ok(Err(Refusal::UnknownLot(change.lot)));
    };
    let from = record.lot.status;
    let to = match (change.decision, from) {
        (Decision::Release, LotStatus::Quarantine) => LotStatus::Released,
        (Decision::Quarantine, LotStatus::Released) => LotStatus::Quarantine,
        (Decision::Reject, LotStatus::Released | LotStatus::Quarantine) => LotStatus::Rejected,
        (decision, status) => {
            return Ok(Err(Refusal::BadDecision {
                lot: change.lot,
                status,
                decision,
            }));
        }
    };
    let now = timestamp(now_ms);
    let status = StatusChange {
        event_id: change.event_id,
        lot: change.lot.clone(),
        from,
        to,
        reason,
        by: change.by,
        at: now,
    };
    seen.insert(tx, &id_text, now_ms)?;
    let payload = serde_json::to_vec(&LogEntry::Status(status.clone())).map_err(|err| {
        StoreError::Encode {
            table: format!("chain.{CHAIN}.records_v1"),
            message: err.to_string(),
        }
    })?;
    let seq = Chain::new(CHAIN).append(tx, &payload, now_ms)?.seq;
    record.lot.status = to;
    record.lot.updated_at = now;
    tx.insert(&LOTS, change.lot.as_str(), &record)?;
    tx.insert(&LOT_EVENTS, &lot_event_key(change.lot.as_str(), seq), &[])?;
    Ok(Ok((
        Outcome::Applied {
            seq,
            changed: vec![record],
            removed: Vec::new(),
        },
        Some(status),
    )))
}

/// A quality decision to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChangeRequest {
    /// Id of the request; a repeat with the same id is applied once.
    pub event_id: Uuid,
    /// The lot.
    pub lot: Id,
    /// What to do.
    pub decision: Decision,
    /// Why (required for quarantine and reject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Ledger {
    /// Opens (or creates) the ledger file. Blocking. A file of an older store layout is
    /// migrated first (see `docs/GENEALOGY.md`; it logs what it does), which takes a while on a
    /// large file.
    pub fn open(path: &Path, tolerances: Tolerances) -> Result<Self, StoreError> {
        Self::with_store(Store::open(path)?, tolerances)
    }

    /// A ledger on an open store (migrated first as by [`Ledger::open`]). Blocking.
    pub fn with_store(store: Store, tolerances: Tolerances) -> Result<Self, StoreError> {
        crate::migrate::to_current(&store)?;
        Ok(Self { store, tolerances })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The mass-balance tolerances.
    pub fn tolerances(&self) -> &Tolerances {
        &self.tolerances
    }

    /// Applies an event that came on `site`'s `_genealogy/events` at service time `now_ms`.
    pub async fn apply(
        &self,
        site: Option<Location>,
        event: GenealogyEvent,
        now_ms: u64,
    ) -> Result<Outcome, LedgerError> {
        let result = self
            .store
            .write(move |tx| apply_in(tx, site.as_ref(), &event, now_ms))
            .await?;
        Ok(result?)
    }

    /// Applies `events` (each with its location and service time) in order in one write
    /// transaction, committed once: bulk imports and the benchmark's generated plant. Each event
    /// is accepted or refused on its own exactly as by [`Ledger::apply`] (a refused one writes
    /// nothing, later ones still apply); only a store failure loses the whole batch.
    pub async fn apply_batch(
        &self,
        events: Vec<(Option<Location>, GenealogyEvent, u64)>,
    ) -> Result<Vec<Result<Outcome, Refusal>>, StoreError> {
        self.store
            .write(move |tx| {
                events
                    .iter()
                    .map(|(site, event, now_ms)| apply_in(tx, site.as_ref(), event, *now_ms))
                    .collect()
            })
            .await
    }

    /// Applies a quality decision; returns the outcome and the change recorded.
    pub async fn decide(
        &self,
        request: StatusChangeRequest,
        now_ms: u64,
    ) -> Result<(Outcome, Option<StatusChange>), LedgerError> {
        let result = self
            .store
            .write(move |tx| decide_in(tx, request, now_ms))
            .await?;
        Ok(result?)
    }

    /// The lot `id`.
    pub async fn lot(&self, id: &Id) -> Result<Option<LotRecord>, StoreError> {
        let id = id.clone();
        self.store.read(move |tx| tx.get(&LOTS, id.as_str())).await
    }

    /// Up to `limit` lots with ids after `after`, in id order.
    pub async fn lots(
        &self,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<LotRecord>, StoreError> {
        self.store
            .read(move |tx| {
                let rows = match &after {
                    Some(after) => {
                        let mut start = after.as_str().to_owned();
                        start.push('\0');
                        tx.range_limit(&LOTS, start.as_str().., limit)?
                    }
                    None => tx.range_limit(&LOTS, .., limit)?,
                };
                Ok(rows.into_iter().map(|(_, lot)| lot).collect())
            })
            .await
    }

    /// Walks the chain: intact, or the first altered record.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.store.read(|tx| Chain::new(CHAIN).verify(tx)).await
    }

    /// Number of chain records.
    pub async fn n_records(&self) -> Result<u64, StoreError> {
        self.store.read(|tx| Chain::new(CHAIN).len(tx)).await
    }

    /// Chain records `from_seq..` (at most `limit`), decoded.
    pub async fn log(&self, from_seq: u64, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        self.store
            .read(move |tx| {
                Chain::new(CHAIN)
                    .iter(tx, from_seq, limit)?
                    .into_iter()
                    .map(|record| decode_entry(record.seq, record.time_ms, &record.payload))
                    .collect()
            })
            .await
    }

    /// Closes the file (see [`Store::close`]).
    pub fn close(&self) {
        self.store.close();
    }
}

/// A decoded chain record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Position in the chain.
    pub seq: u64,
    /// Service time it was appended (Unix ms).
    pub time_ms: u64,
    /// What it says.
    pub entry: LogEntry,
}

pub(crate) fn decode_entry(
    seq: u64,
    time_ms: u64,
    payload: &[u8],
) -> Result<LogRecord, StoreError> {
    let entry = serde_json::from_slice(payload).map_err(|err| StoreError::Decode {
        table: format!("chain.{CHAIN}.records_v1"),
        what: "value",
        message: format!("record {seq}: {err}"),
    })?;
    Ok(LogRecord {
        seq,
        time_ms,
        entry,
    })
}
