//! Store layouts of `genealogy.redb`, and the migration of an older file to the current one.
//!
//! - Layout 1: JSON edges in `genealogy.forward_v1` / `backward_v1` (a trace read each edge's
//!   applied event to see whether a correction voided it, and each transform's chain record for
//!   its mass balance); lot statuses `available|quarantine|blocked|consumed|scrapped|shipped`.
//!   Files of layout 1 have no `genealogy.meta_v1` row.
//! - Layout 2 ([`LAYOUT`]): binary edges with the voided flag in `genealogy.forward_v2` /
//!   `backward_v2`, the transforms' balance rows in `genealogy.transforms_v2`, issue 13's lot
//!   statuses (`available` → `released`, `blocked` → `rejected`, `scrapped` → `destroyed`).
//!
//! [`to_current`] (run by [`crate::Ledger::open`]) migrates a layout-1 file in place, in
//! commits of [`CHUNK`] rows, each step safe to run again after a crash (the layout row is
//! written last). The chain is not touched: it stays verifiable, and its old status names are
//! read as the new ones. A read-only open ([`crate::LedgerFile`]) does not migrate; its export
//! and replay check refuse a layout-1 file with [`StoreError::TableLayout`], saying to start the
//! service on it once.

use std::collections::HashMap;

use serde_json::Value;
use uns_model::payload::{GenealogyKind, Timestamp};
use uns_store::{Bytes, Chain, Json, ReadableTx, Store, StoreError, Str, Table};
use uuid::Uuid;

use crate::layout::{StoredEdge, TransformRow, legacy_status};
use crate::ledger::{
    BACKWARD, CHAIN, EVENTS, Edge, FORWARD, LOTS, LogEntry, LotRecord, TRANSFORMS, decode_entry,
    edge_key,
};

/// The layout this build writes.
pub(crate) const LAYOUT: u32 = 2;
/// `layout` → the file's layout (u32, little-endian).
pub(crate) const META: Table<Str, Bytes> = Table::new("genealogy.meta_v1");
const LAYOUT_KEY: &str = "layout";
/// Rows per migration commit.
const CHUNK: usize = 20_000;

const OLD_FORWARD: Table<Bytes, Json<Edge>> = Table::new("genealogy.forward_v1");
const OLD_BACKWARD: Table<Bytes, Bytes> = Table::new("genealogy.backward_v1");
const RAW_LOTS: Table<Str, Bytes> = Table::new("genealogy.lots_v1");

/// The file's layout: the meta row, else 1 for a file with chain records, else (an empty or new
/// file) the current one.
pub(crate) fn layout(tx: &impl ReadableTx) -> Result<u32, StoreError> {
    if let Some(bytes) = tx.get(&META, LAYOUT_KEY)? {
        let bytes: [u8; 4] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Decode {
                table: META.name().to_owned(),
                what: "value",
                message: format!("layout is {} bytes, not 4", bytes.len()),
            })?;
        return Ok(u32::from_le_bytes(bytes));
    }
    if Chain::new(CHAIN).is_empty(tx)? {
        Ok(LAYOUT)
    } else {
        Ok(1)
    }
}

/// Refuses a file of another layout than this build's, for the read-only tools.
pub(crate) fn require_current(tx: &impl ReadableTx) -> Result<(), StoreError> {
    match layout(tx)? {
        LAYOUT => Ok(()),
        found if found < LAYOUT => Err(StoreError::TableLayout {
            table: META.name().to_owned(),
            message: format!(
                "the file is in genealogy store layout {found} (written by an older uns), this build reads layout {LAYOUT}: start the genealogy service on it once (`uns genealogy` or `uns up`; it migrates the file in place and keeps the chain as it is), stop it, then run this again"
            ),
        }),
        found => Err(StoreError::TableLayout {
            table: META.name().to_owned(),
            message: format!(
                "the file is in genealogy store layout {found}, this build knows up to {LAYOUT}: use a newer uns"
            ),
        }),
    }
}

/// Brings the file to [`LAYOUT`]. Blocking.
pub(crate) fn to_current(store: &Store) -> Result<(), StoreError> {
    let found = store.read_blocking(layout)?;
    if found > LAYOUT {
        return store.read_blocking(require_current);
    }
    if found < LAYOUT {
        let started = tokio::time::Instant::now();
        tracing::warn!(
            path = %store.path().display(),
            "genealogy store is in layout {found}: migrating it to layout {LAYOUT} (binary trace indexes with the voided flag, transform rows, issue 13's lot statuses); the chain is kept as it is"
        );
        let lots = migrate_lots(store)?;
        let transforms = migrate_transforms(store)?;
        let edges = migrate_edges(store)?;
        tracing::warn!(
            path = %store.path().display(),
            lots,
            transforms,
            edges,
            secs = started.elapsed().as_secs_f64(),
            "genealogy store migrated to layout {LAYOUT}"
        );
    }
    let present = store.read_blocking(|tx| tx.get(&META, LAYOUT_KEY))?;
    if present.is_none() {
        store.write_blocking(|tx| tx.insert(&META, LAYOUT_KEY, &LAYOUT.to_le_bytes()))?;
    }
    Ok(())
}

/// Rewrites every lot with issue 13's status names; returns how many lots.
fn migrate_lots(store: &Store) -> Result<u64, StoreError> {
    let mut after: Option<String> = None;
    let mut n = 0u64;
    loop {
        let done = store.write_blocking(|tx| {
            let rows = match &after {
                Some(after) => {
                    let mut start = after.clone();
                    start.push('\0');
                    tx.range_limit(&RAW_LOTS, start.as_str().., CHUNK)?
                }
                None => tx.range_limit(&RAW_LOTS, .., CHUNK)?,
            };
            for (id, bytes) in &rows {
                let decode = |message: String| StoreError::Decode {
                    table: LOTS.name().to_owned(),
                    what: "value",
                    message: format!("lot {id}: {message}"),
                };
                let mut value: Value =
                    serde_json::from_slice(bytes).map_err(|err| decode(err.to_string()))?;
                if let Some(status) = value.pointer_mut("/lot/status")
                    && let Some(new) = status.as_str().and_then(legacy_status)
                {
                    *status = Value::from(new);
                }
                let record: LotRecord =
                    serde_json::from_value(value).map_err(|err| decode(err.to_string()))?;
                tx.insert(&LOTS, id.as_str(), &record)?;
            }
            Ok(rows.last().map(|(id, _)| (id.clone(), rows.len())))
        })?;
        match done {
            Some((last, len)) => {
                n += len as u64;
                after = Some(last);
                if len < CHUNK {
                    return Ok(n);
                }
            }
            None => return Ok(n),
        }
    }
}

/// Writes the balance row of every transform in the chain; returns how many.
fn migrate_transforms(store: &Store) -> Result<u64, StoreError> {
    let chain = Chain::new(CHAIN);
    let mut next = 1u64;
    let mut n = 0u64;
    loop {
        let (last, written) = store.write_blocking(|tx| {
            let records = chain.iter(tx, next, CHUNK)?;
            let mut written = 0u64;
            for record in &records {
                let decoded = decode_entry(record.seq, record.time_ms, &record.payload)?;
                if let LogEntry::Event { event, .. } = decoded.entry
                    && let GenealogyKind::Transform {
                        consumed,
                        produced,
                        wo_id,
                    } = event.kind
                {
                    tx.insert(
                        &TRANSFORMS,
                        &record.seq,
                        &TransformRow {
                            event_id: event.header.event_id,
                            wo_id,
                            occurred_at: event.header.occurred_at,
                            consumed,
                            produced,
                        },
                    )?;
                    written += 1;
                }
            }
            Ok((records.last().map(|r| r.seq), written))
        })?;
        n += written;
        match last {
            Some(last) => next = last + 1,
            None => return Ok(n),
        }
    }
}

/// Moves the edges of the layout-1 indexes into the binary ones, each with its voided flag
/// (from the applied event), deleting the old rows as it goes; returns how many edges.
fn migrate_edges(store: &Store) -> Result<u64, StoreError> {
    let mut n = 0u64;
    loop {
        let moved = store.write_blocking(|tx| {
            let rows = tx.range_limit(&OLD_FORWARD, .., CHUNK)?;
            let mut voids: HashMap<Uuid, Option<Timestamp>> = HashMap::new();
            for (key, edge) in &rows {
                let voided_at = match voids.get(&edge.event_id) {
                    Some(known) => *known,
                    None => {
                        let at = tx
                            .get(&EVENTS, &edge.event_id.to_string())?
                            .and_then(|applied| applied.voided)
                            .map(|void| void.occurred_at);
                        voids.insert(edge.event_id, at);
                        at
                    }
                };
                let n = key
                    .get(key.len().saturating_sub(4)..)
                    .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
                    .map_or(0, u32::from_be_bytes);
                let stored = StoredEdge {
                    edge: edge.clone(),
                    voided_at,
                };
                tx.insert(&FORWARD, key, &stored)?;
                tx.insert(
                    &BACKWARD,
                    &edge_key(stored.edge.to.as_str(), stored.edge.seq, n),
                    &stored,
                )?;
            }
            if let (Some((first, _)), Some((last, _))) = (rows.first(), rows.last()) {
                tx.remove_range(&OLD_FORWARD, first.as_slice()..=last.as_slice())?;
            }
            Ok(rows.len())
        })?;
        n += moved as u64;
        if moved < CHUNK {
            break;
        }
    }
    // The backward rows are the same edges: drop them.
    loop {
        let removed = store.write_blocking(|tx| {
            let rows = tx.range_limit(&OLD_BACKWARD, .., CHUNK)?;
            if let (Some((first, _)), Some((last, _))) = (rows.first(), rows.last()) {
                tx.remove_range(&OLD_BACKWARD, first.as_slice()..=last.as_slice())?;
            }
            Ok(rows.len())
        })?;
        if removed < CHUNK {
            return Ok(n);
        }
    }
}
