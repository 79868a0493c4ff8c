//! [`Engine::snapshot`] and [`Engine::restore`]: the whole engine state as bytes, so the service can
//! delete the inputs a snapshot covers and a restart replays only the ones after it.
//!
//! The format is JSON (`{"format": 1, ...}`), maps written as lists of pairs in key order, so the same
//! engine always gives the same bytes. Every `f64` of the per-asset logs is stored as its bit pattern;
//! the published results inside are parsed back exactly (serde_json's `float_roundtrip`), so a restored
//! engine compares a later correction against the very document it published.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uns_model::payload::{OeeResult, StateCategory, Uom};
use uns_model::topic::Location;
use uuid::Uuid;

use super::{AssetLog, Engine, Final, Kind, Rates, Scope, StateRec};
use crate::config::Settings;
use crate::iso22400::{Qty, StateMap};

/// The one format this build reads and writes.
const FORMAT: u32 = 1;

/// A snapshot that cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot this build reads.
    #[error("the OEE snapshot does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    /// Written by a build with another format.
    #[error("the OEE snapshot has format {found}; this build reads format {FORMAT}")]
    Format {
        /// The format found.
        found: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct SnapshotDoc {
    format: u32,
    watermark: Option<i64>,
    logs: Vec<(Location, LogDoc)>,
    closed_until: Vec<(Scope, Kind, i64)>,
    finals: Vec<FinalDoc>,
    dirty: Vec<(Scope, Kind, String, Vec<String>)>,
    last_prune_hour: i64,
    next_due: i64,
    new_scopes: Vec<Scope>,
    requested_until: i64,
}

/// A closed period: scope, kind, id, windows, the last published version.
type FinalDoc = (Scope, Kind, String, Vec<(i64, i64)>, OeeResult);

/// Rates: (since, default cycle ms bits, [(material, cycle ms bits)]).
type RatesDoc = (i64, Option<u64>, Vec<(String, u64)>);

#[derive(Serialize, Deserialize)]
struct LogDoc {
    states: Vec<(i64, StateCategory, String)>,
    /// Good, scrap, rework: (timestamp, total bits).
    totals: [Vec<(i64, u64)>; 3],
    /// (occurred_at, event_id, from, to, qty bits).
    reclass: Vec<(i64, Uuid, Qty, Qty, u64)>,
    orders: Vec<(i64, Option<(String, String)>)>,
    rates: Vec<RatesDoc>,
    meta_state_map: Option<StateMap>,
    uom: Option<Uom>,
    first_at: Option<i64>,
    first_state_at: Option<i64>,
    compacted_until: i64,
}

impl LogDoc {
    fn of(log: &AssetLog) -> Self {
        Self {
            states: log
                .states
                .iter()
                .map(|(since, rec)| (*since, rec.category, rec.reason.clone()))
                .collect(),
            totals: log
                .totals
                .each_ref()
                .map(|totals| totals.keys().copied().collect()),
            reclass: log
                .reclass
                .iter()
                .map(|(&(at, id), &(from, to, qty))| (at, id, from, to, qty.to_bits()))
                .collect(),
            orders: log
                .orders
                .iter()
                .map(|(at, order)| (*at, order.clone()))
                .collect(),
            rates: log
                .rates
                .iter()
                .map(|(at, rates)| {
                    (
                        *at,
                        rates.default.map(f64::to_bits),
                        rates
                            .by_material
                            .iter()
                            .map(|(material, ms)| (material.clone(), ms.to_bits()))
                            .collect(),
                    )
                })
                .collect(),
            meta_state_map: log.meta_state_map,
            uom: log.uom,
            first_at: log.first_at,
            first_state_at: log.first_state_at,
            compacted_until: log.compacted_until,
        }
    }

    fn into_log(self) -> AssetLog {
        AssetLog {
            states: self
                .states
                .into_iter()
                .map(|(since, category, reason)| (since, StateRec { category, reason }))
                .collect(),
            totals: self.totals.map(|totals| {
                totals
                    .into_iter()
                    .map(|(at, bits)| ((at, bits), f64::from_bits(bits)))
                    .collect()
            }),
            reclass: self
                .reclass
                .into_iter()
                .map(|(at, id, from, to, qty)| ((at, id), (from, to, f64::from_bits(qty))))
                .collect(),
            orders: self.orders.into_iter().collect(),
            rates: self
                .rates
                .into_iter()
                .map(|(at, default, by_material)| {
                    let rates = Rates {
                        default: default.map(f64::from_bits),
                        by_material: by_material
                            .into_iter()
                            .map(|(material, bits)| (material, f64::from_bits(bits)))
                            .collect(),
                    };
                    (at, rates)
                })
                .collect(),
            meta_state_map: self.meta_state_map,
            uom: self.uom,
            first_at: self.first_at,
            first_state_at: self.first_state_at,
            compacted_until: self.compacted_until,
        }
    }
}

impl Engine {
    /// The whole state as bytes: [`Engine::restore`] with the same settings gives an engine that
    /// answers every later input exactly as this one would.
    pub fn snapshot(&self) -> Vec<u8> {
        let doc = SnapshotDoc {
            format: FORMAT,
            watermark: self.watermark,
            logs: self
                .logs
                .iter()
                .map(|(location, log)| (location.clone(), LogDoc::of(log)))
                .collect(),
            closed_until: self
                .closed_until
                .iter()
                .map(|((scope, kind), until)| (scope.clone(), *kind, *until))
                .collect(),
            finals: self
                .finals
                .iter()
                .map(|((scope, kind, id), fin)| {
                    (
                        scope.clone(),
                        *kind,
                        id.clone(),
                        fin.windows.clone(),
                        fin.result.clone(),
                    )
                })
                .collect(),
            dirty: self
                .dirty
                .iter()
                .map(|((scope, kind, id), reasons)| {
                    (scope.clone(), *kind, id.clone(), reasons.clone())
                })
                .collect(),
            last_prune_hour: self.last_prune_hour,
            next_due: self.next_due,
            new_scopes: self.new_scopes.iter().cloned().collect(),
            requested_until: self.requested_until,
        };
        // Every type in the document serialises (no maps with non-string keys, no non-finite floats
        // outside bit patterns), so this does not fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// An engine from [`Engine::snapshot`] bytes. The settings are today's: a changed `[oee]` section
    /// applies from the snapshot on (periods closed before it stay as they were published).
    pub fn restore(settings: Settings, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let doc: SnapshotDoc = serde_json::from_slice(bytes)?;
        if doc.format != FORMAT {
            return Err(SnapshotError::Format { found: doc.format });
        }
        let mut engine = Engine::new(settings);
        engine.watermark = doc.watermark;
        engine.logs = doc
            .logs
            .into_iter()
            .map(|(location, log)| (location, log.into_log()))
            .collect();
        engine.closed_until = doc
            .closed_until
            .into_iter()
            .map(|(scope, kind, until)| ((scope, kind), until))
            .collect();
        engine.finals = doc
            .finals
            .into_iter()
            .map(|(scope, kind, id, windows, result)| {
                ((scope, kind, id), Final { windows, result })
            })
            .collect();
        engine.dirty = doc
            .dirty
            .into_iter()
            .map(|(scope, kind, id, reasons)| ((scope, kind, id), reasons))
            .collect::<BTreeMap<_, _>>();
        engine.last_prune_hour = doc.last_prune_hour;
        engine.next_due = doc.next_due;
        engine.new_scopes = doc.new_scopes.into_iter().collect::<BTreeSet<_>>();
        engine.requested_until = doc.requested_until;
        Ok(engine)
    }
}
