//! The derived-state check: replays the chain into a scratch ledger and compares what the file
//! holds beside the chain (lots, events, the adjacency indexes) with what the chain says.
//!
//! The chain check ([`uns_store::Chain::verify`]) proves no log record was changed; the lots and
//! indexes a trace reads are written in the same transactions but are not hashed. A lot whose
//! quantity or status was edited in the file, or an edge added or removed, would go unnoticed by
//! the chain check; replaying every record (with the service time it was appended at, so the
//! replay writes the same bytes) and comparing row by row names the first table and key that
//! differ.

use std::path::{Path, PathBuf};

use uns_store::{Bytes, Chain, ReadableTx, Store, StoreError, Table, ValueCodec};

use crate::layout::{EdgeBin, TransformBin};
use crate::ledger::{
    BACKWARD, CHAIN, Decision, EVENTS, FORWARD, LOT_EVENTS, LOTS, LogEntry, StatusChangeRequest,
    TRANSFORMS, apply_in, decide_in, decode_entry,
};

/// Records replayed per scratch commit.
const REPLAY_BATCH: usize = 1024;
/// Rows compared per read.
const COMPARE_BATCH: usize = 4096;

/// The first derived row that is not what the chain says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedMismatch {
    /// The table (`genealogy.lots_v1`, ...).
    pub table: String,
    /// The row's key, readable (lot id, event id, or `lot @ record seq` for the indexes).
    pub key: String,
    /// What is wrong, as a sentence.
    pub reason: String,
}

impl std::fmt::Display for DerivedMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {}, row {}: {}", self.table, self.key, self.reason)
    }
}

/// A scratch file removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn raw(name: &str) -> Table<Bytes, Bytes> {
    Table::named(name.to_owned())
}

/// A row key, readable: `record {seq}` in the transform table (keyed by record), else text up to
/// a NUL, then the big-endian record seq after it.
fn readable_key(table: &str, key: &[u8]) -> String {
    if table == TRANSFORMS.name()
        && let Ok(seq) = <[u8; 8]>::try_from(key)
    {
        return format!("record {}", u64::from_be_bytes(seq));
    }
    match key.iter().position(|b| *b == 0) {
        Some(nul) => {
            let lot = String::from_utf8_lossy(&key[..nul]);
            let rest = &key[nul + 1..];
            match rest.get(..8).and_then(|seq| <[u8; 8]>::try_from(seq).ok()) {
                Some(seq) => format!("{lot} @ record {}", u64::from_be_bytes(seq)),
                None => lot.into_owned(),
            }
        }
        None => String::from_utf8_lossy(key).into_owned(),
    }
}

/// A row value, readable: the JSON rows as they are, the binary ones (edges, transforms)
/// decoded.
fn excerpt(table: &str, value: &[u8]) -> String {
    let decoded = if table == FORWARD.name() || table == BACKWARD.name() {
        Some(EdgeBin::decode(value).map(|row| format!("{row:?}")))
    } else if table == TRANSFORMS.name() {
        Some(TransformBin::decode(value).map(|row| format!("{row:?}")))
    } else {
        None
    };
    let text = match decoded {
        Some(Ok(text)) => text.into(),
        Some(Err(err)) => format!("an undecodable row ({err})").into(),
        None => String::from_utf8_lossy(value),
    };
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.into_owned()
    }
}

/// Replays the chain of `source` into a fresh store under `scratch_dir` (removed afterwards)
/// and compares the derived tables; `None` when they match. Blocking.
pub(crate) fn check_derived(
    source: &impl ReadableTx,
    scratch_dir: &Path,
) -> Result<Option<DerivedMismatch>, StoreError> {
    let dir = scratch_dir.join(format!(
        "uns-genealogy-replay-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let scratch = Scratch(dir);
    let store = Store::open(&scratch.0.join("replay.redb"))?;
    let result = replay_and_compare(source, &store);
    store.close();
    result
}

fn replay_and_compare(
    source: &impl ReadableTx,
    store: &Store,
) -> Result<Option<DerivedMismatch>, StoreError> {
    let chain = Chain::new(CHAIN);
    let mut next = 1u64;
    loop {
        let records = chain.iter(source, next, REPLAY_BATCH)?;
        let Some(last) = records.last() else { break };
        next = last.seq + 1;
        let mismatch = store.write_blocking(|tx| {
            for record in &records {
                let decoded = decode_entry(record.seq, record.time_ms, &record.payload)?;
                let refused = match decoded.entry {
                    LogEntry::Event { site, event } => {
                        apply_in(tx, site.as_ref(), &event, record.time_ms)?.err()
                    }
                    LogEntry::Status(change) => {
                        let decision = match change.to {
                            uns_model::payload::LotStatus::Quarantine => Decision::Quarantine,
                            uns_model::payload::LotStatus::Rejected => Decision::Reject,
                            _ => Decision::Release,
                        };
                        let request = StatusChangeRequest {
                            event_id: change.event_id,
                            lot: change.lot,
                            decision,
                            reason: change.reason,
                            by: change.by,
                        };
                        decide_in(tx, request, record.time_ms)?.err()
                    }
                };
                if let Some(refusal) = refused {
                    return Ok(Some(DerivedMismatch {
                        table: format!("chain.{CHAIN}.records_v1"),
                        key: format!("record {}", record.seq),
                        reason: format!("the record is refused when replayed: {refusal}"),
                    }));
                }
            }
            Ok(None)
        })?;
        if mismatch.is_some() {
            return Ok(mismatch);
        }
    }
    for name in [
        LOTS.name(),
        EVENTS.name(),
        FORWARD.name(),
        BACKWARD.name(),
        TRANSFORMS.name(),
        LOT_EVENTS.name(),
    ] {
        let mismatch = store.read_blocking(|replayed| compare(name, source, replayed))?;
        if mismatch.is_some() {
            return Ok(mismatch);
        }
    }
    Ok(None)
}

/// Walks table `name` in both in key order; the first key or value that differs.
fn compare(
    name: &str,
    stored: &impl ReadableTx,
    replayed: &impl ReadableTx,
) -> Result<Option<DerivedMismatch>, StoreError> {
    let table = raw(name);
    let mut from: Vec<u8> = Vec::new();
    loop {
        let ours = stored.range_limit(&table, from.as_slice().., COMPARE_BATCH)?;
        let theirs = replayed.range_limit(&table, from.as_slice().., COMPARE_BATCH)?;
        for idx in 0..ours.len().max(theirs.len()) {
            let mismatch = |key: &[u8], reason: String| {
                Ok(Some(DerivedMismatch {
                    table: name.to_owned(),
                    key: readable_key(name, key),
                    reason,
                }))
            };
            match (ours.get(idx), theirs.get(idx)) {
                (Some((key, value)), Some((their_key, their_value))) => {
                    if key < their_key {
                        return mismatch(
                            key,
                            "the file has this row, the chain does not".to_owned(),
                        );
                    }
                    if key > their_key {
                        return mismatch(
                            their_key,
                            "the chain has this row, the file does not".to_owned(),
                        );
                    }
                    if value != their_value {
                        return mismatch(
                            key,
                            format!(
                                "the file holds {}, the chain says {}",
                                excerpt(name, value),
                                excerpt(name, their_value)
                            ),
                        );
                    }
                }
                (Some((key, _)), None) => {
                    return mismatch(key, "the file has this row, the chain does not".to_owned());
                }
                (None, Some((key, _))) => {
                    return mismatch(key, "the chain has this row, the file does not".to_owned());
                }
                (None, None) => {}
            }
        }
        match ours.last() {
            Some((key, _)) if ours.len() == COMPARE_BATCH => {
                from = key.clone();
                from.push(0);
            }
            _ => return Ok(None),
        }
    }
}
