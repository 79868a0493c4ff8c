//! Forward and backward trace over the adjacency indexes, with depth, `as_of` and mass balance.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use uns_model::payload::{LotQuantity, Timestamp, Uom};
use uns_model::topic::Id;
use uns_store::{ReadableTx, StoreError};
use uuid::Uuid;

use crate::layout::StoredEdge;
use crate::ledger::{
    BACKWARD, EPS, Edge, FORWARD, LOTS, Ledger, LotRecord, TRANSFORMS, Tolerances, prefix_end,
    prefix_key,
};

/// Which way a trace walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// What went into the lot (its inputs, their inputs, ...).
    #[default]
    Backward,
    /// What the lot went into.
    Forward,
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "backward" => Ok(Self::Backward),
            "forward" => Ok(Self::Forward),
            other => Err(format!("direction {other:?}: expected backward or forward")),
        }
    }
}

/// A trace question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceQuery {
    /// The lot to start from.
    pub lot: Id,
    /// Which way.
    #[serde(default)]
    pub direction: Direction,
    /// At most this many edges away (`None`: all the way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// The graph as it stood at this time: events that occurred by then, corrections made by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<Timestamp>,
}

impl TraceQuery {
    /// A full backward trace of `lot`.
    pub fn backward(lot: Id) -> Self {
        Self {
            lot,
            direction: Direction::Backward,
            depth: None,
            as_of: None,
        }
    }

    /// A full forward trace of `lot`.
    pub fn forward(lot: Id) -> Self {
        Self {
            lot,
            direction: Direction::Forward,
            depth: None,
            as_of: None,
        }
    }
}

/// A lot reached by a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceLot {
    /// Edges from the start lot (0 for the start).
    pub depth: u32,
    /// The lot as it is now (`None` if it no longer exists, e.g. created by a voided event).
    #[serde(flatten)]
    pub record: Option<LotRecord>,
    /// Its id (also when the record is gone).
    pub lot_id: Id,
}

/// How a transform's inputs and outputs compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceStatus {
    /// Within tolerance.
    Ok,
    /// Outside tolerance: flagged.
    Off,
    /// Inputs and outputs are in different units.
    NotComparable,
}

/// The mass-balance check of one transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MassBalance {
    /// The event.
    pub event_id: Uuid,
    /// Its work order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wo_id: Option<Id>,
    /// When.
    pub occurred_at: Timestamp,
    /// What went in.
    pub consumed: Vec<LotQuantity>,
    /// What came out.
    pub produced: Vec<LotQuantity>,
    /// The common unit, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uom: Option<Uom>,
    /// (produced − consumed) / consumed, when comparable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviation: Option<f64>,
    /// The tolerance of the produced material(s).
    pub tolerance: f64,
    /// The verdict.
    pub status: BalanceStatus,
}

/// A trace answer: the lots, the edges with quantities, and each transform's mass balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The question.
    pub query: TraceQuery,
    /// Lots in the order they were reached (start first).
    pub lots: Vec<TraceLot>,
    /// Edges walked (from → to, as the material flowed).
    pub edges: Vec<Edge>,
    /// Transforms among the edges, with their balance.
    pub transforms: Vec<MassBalance>,
    /// True when the depth limit cut the walk short.
    pub truncated: bool,
}

impl Trace {
    /// The lot ids reached, start included.
    pub fn lot_ids(&self) -> BTreeSet<&str> {
        self.lots.iter().map(|lot| lot.lot_id.as_str()).collect()
    }

    /// Transforms flagged off balance.
    pub fn flagged(&self) -> impl Iterator<Item = &MassBalance> {
        self.transforms
            .iter()
            .filter(|t| t.status == BalanceStatus::Off)
    }
}

/// Whether an edge belongs to the graph as it stood at `as_of` (or now): its event occurred by
/// then, and no correction made by then voided it (the index row carries when one did).
fn live(stored: &StoredEdge, as_of: Option<Timestamp>) -> bool {
    if let Some(as_of) = as_of
        && stored.edge.occurred_at > as_of
    {
        return false;
    }
    match (stored.voided_at, as_of) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(voided_at), Some(as_of)) => voided_at > as_of,
    }
}

pub(crate) fn balance(
    event_id: Uuid,
    wo_id: Option<Id>,
    occurred_at: Timestamp,
    consumed: &[LotQuantity],
    produced: &[LotQuantity],
    materials: &BTreeMap<Id, String>,
    tolerances: &Tolerances,
) -> MassBalance {
    let tolerance = produced
        .iter()
        .filter_map(|p| p.material.as_ref().or_else(|| materials.get(&p.lot)))
        .map(|m| tolerances.of(m))
        .fold(None, |acc: Option<f64>, t| {
            Some(acc.map_or(t, |a| a.max(t)))
        })
        .unwrap_or(tolerances.default);
    let uoms: BTreeSet<Uom> = consumed
        .iter()
        .chain(produced)
        .map(|q| q.quantity.uom)
        .collect();
    let (uom, deviation, status) = if uoms.len() == 1 {
        let inputs: f64 = consumed.iter().map(|q| q.quantity.qty).sum();
        let outputs: f64 = produced.iter().map(|q| q.quantity.qty).sum();
        let deviation = if inputs > EPS {
            (outputs - inputs) / inputs
        } else {
            f64::INFINITY
        };
        let status = if deviation.abs() <= tolerance + EPS {
            BalanceStatus::Ok
        } else {
            BalanceStatus::Off
        };
        (uoms.into_iter().next(), Some(deviation), status)
    } else {
        (None, None, BalanceStatus::NotComparable)
    };
    MassBalance {
        event_id,
        wo_id,
        occurred_at,
        consumed: consumed.to_vec(),
        produced: produced.to_vec(),
        uom,
        deviation,
        tolerance,
        status,
    }
}

/// Runs `query` in one read snapshot.
pub(crate) fn trace_in(
    tx: &impl ReadableTx,
    query: &TraceQuery,
    tolerances: &Tolerances,
) -> Result<Option<Trace>, StoreError> {
    let Some(start) = tx.get(&LOTS, query.lot.as_str())? else {
        return Ok(None);
    };
    let index = match query.direction {
        Direction::Backward => &BACKWARD,
        Direction::Forward => &FORWARD,
    };
    let mut reached: HashMap<Id, u32> = HashMap::new();
    reached.insert(query.lot.clone(), 0);
    let mut lots = vec![TraceLot {
        depth: 0,
        lot_id: query.lot.clone(),
        record: Some(start),
    }];
    let mut edges = Vec::new();
    let mut seqs = BTreeSet::new();
    let mut truncated = false;
    let mut queue = VecDeque::from([(query.lot.clone(), 0u32)]);
    while let Some((lot, depth)) = queue.pop_front() {
        let lower = prefix_key(lot.as_str());
        let upper = prefix_end(lot.as_str());
        for (_, stored) in tx.range(index, lower.as_slice()..upper.as_slice())? {
            if !live(&stored, query.as_of) {
                continue;
            }
            let edge = stored.edge;
            if query.depth.is_some_and(|max| depth >= max) {
                truncated = true;
                break;
            }
            let next = match query.direction {
                Direction::Backward => edge.from.clone(),
                Direction::Forward => edge.to.clone(),
            };
            if edge.kind == "transform" {
                seqs.insert(edge.seq);
            }
            edges.push(edge);
            if !reached.contains_key(&next) {
                reached.insert(next.clone(), depth + 1);
                lots.push(TraceLot {
                    depth: depth + 1,
                    record: tx.get(&LOTS, next.as_str())?,
                    lot_id: next.clone(),
                });
                queue.push_back((next, depth + 1));
            }
        }
    }
    let materials: BTreeMap<Id, String> = lots
        .iter()
        .filter_map(|l| Some((l.lot_id.clone(), l.record.as_ref()?.lot.material.clone())))
        .collect();
    let mut transforms = Vec::new();
    for seq in seqs {
        let Some(row) = tx.get(&TRANSFORMS, &seq)? else {
            continue;
        };
        transforms.push(balance(
            row.event_id,
            row.wo_id,
            row.occurred_at,
            &row.consumed,
            &row.produced,
            &materials,
            tolerances,
        ));
    }
    Ok(Some(Trace {
        query: query.clone(),
        lots,
        edges,
        transforms,
        truncated,
    }))
}

impl Ledger {
    /// Traces `query`; `None` when the start lot is unknown.
    pub async fn trace(&self, query: TraceQuery) -> Result<Option<Trace>, StoreError> {
        let tolerances = self.tolerances.clone();
        self.store
            .read(move |tx| trace_in(tx, &query, &tolerances))
            .await
    }
}
