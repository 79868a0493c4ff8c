//! The simulator's durable state in `data_dir/sim.redb`, a `uns-store` file (`docs/STORAGE.md`):
//! the store-and-forward buffer ([`Buffer`]) and the devices' retentive counters ([`Buffer::counters`]).
//!
//! Tables (layout 1 of each):
//! - `sf_buffer_v2`: DATA an edge node could not publish. Key (`Bytes`): `u16` big-endian length of the
//!   edge node id, the id in UTF-8, the record's timestamp (ms, `u64` big-endian), an insertion counter
//!   (`u64` big-endian, unique per file): per node, oldest sample first, samples with the same timestamp
//!   in insertion order. Value (`Bytes`): `u16` little-endian device-id length (0 = the node itself), the
//!   device id in UTF-8, then a Sparkplug B payload (our codec) whose metrics carry name, datatype,
//!   timestamp and value. Names, not aliases, so a buffer written by an older configuration still
//!   forwards what still exists.
//! - `counters_v1`: key (`Str`) `{edge node id}/{device id}`, value (`Json`) [`Counters`]: what a device's
//!   `Count/Good` and `Count/Scrap` start from after a restart.
//!
//! A file written before the move to uns-store has the buffer in `sf_buffer_v1` (redb key type
//! `(&str, u64, u64)`, same values); [`Buffer::open`] moves its rows to `sf_buffer_v2` in one
//! transaction and deletes it.
//!
//! Every operation is one durable write (one per sample batch) on the store's writer thread.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use uns_sparkplug::{Metric, Payload, Value, decode, encode};
use uns_store::{Bytes, Json, ReadableTx as _, Store, Str, Table};

use crate::SimError;

/// The store-and-forward buffer.
const BUFFER: Table<Bytes, Bytes> = Table::new(BUFFER_NAME);
const BUFFER_NAME: &str = "sf_buffer_v2";

/// The retentive counters, per `{edge}/{device}`.
const COUNTERS: Table<Str, Json<Counters>> = Table::new("counters_v1");

/// The buffer table of files written before uns-store (see the module docs).
const OLD_BUFFER: redb::TableDefinition<'static, (&str, u64, u64), &[u8]> =
    redb::TableDefinition::new("sf_buffer_v1");

/// `(metric name, value, timestamp ms)` of one node or device.
pub(crate) type Values = Vec<(String, Option<Value>, u64)>;

/// The values of one node or device sampled at one time, waiting to be forwarded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// `None` for node metrics.
    pub(crate) device: Option<String>,
    /// `(metric name, value, timestamp ms)`.
    pub(crate) values: Values,
}

/// A device's retentive counters as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Counters {
    /// `Count/Good`.
    pub(crate) good: u64,
    /// `Count/Scrap`.
    pub(crate) reject: u64,
}

/// The position of a record in the buffer, to remove it once forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordKey(Vec<u8>);

/// A handle to the file, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Buffer {
    store: Store,
    next_counter: Arc<AtomicU64>,
}

impl Buffer {
    /// Opens or creates the file (moving a pre-uns-store buffer over). Blocking: call it from
    /// `spawn_blocking`.
    pub(crate) fn open(path: &Path) -> Result<Buffer, SimError> {
        let n_moved = migrate_old_buffer(path)?;
        if n_moved > 0 {
            tracing::info!(path = %path.display(), n_moved, "moved the buffered samples to the uns-store layout");
        }
        let store = Store::open(path)?;
        let last = store.read_blocking(|tx| tx.last(&BUFFER))?;
        let next_counter = match last {
            // The counter is unique per file, so the largest is in some node's range; scan them all.
            Some(_) => store.read_blocking(|tx| {
                Ok(tx
                    .iter(&BUFFER)?
                    .iter()
                    .filter_map(|(key, _)| split_key(key).map(|(_, _, counter)| counter + 1))
                    .max()
                    .unwrap_or(0))
            })?,
            None => 0,
        };
        Ok(Buffer {
            store,
            next_counter: Arc::new(AtomicU64::new(next_counter)),
        })
    }

    /// Appends records in one write transaction. A record's key time is its oldest value's timestamp.
    pub(crate) async fn append(&self, edge: &str, records: Vec<Record>) -> Result<(), SimError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(records.len());
        for record in &records {
            let timestamp_ms = record
                .values
                .iter()
                .map(|(_, _, timestamp)| *timestamp)
                .min()
                .unwrap_or(0);
            let counter = self.next_counter.fetch_add(1, Ordering::Relaxed);
            rows.push((key(edge, timestamp_ms, counter)?, encode_record(record)?));
        }
        self.store
            .write(move |tx| {
                for (key, value) in &rows {
                    tx.insert(&BUFFER, key, value)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Up to `max` of the oldest records of `edge`. A record that no longer decodes is skipped with a
    /// warning (and removed with the batch), so one bad row cannot block the buffer.
    pub(crate) async fn oldest(
        &self,
        edge: &str,
        max: usize,
    ) -> Result<Vec<(RecordKey, Option<Record>)>, SimError> {
        let lower = key(edge, 0, 0)?;
        let upper = key(edge, u64::MAX, u64::MAX)?;
        let rows = self
            .store
            .read(move |tx| {
                tx.range_limit(
                    &BUFFER,
                    (Bound::Included(&lower[..]), Bound::Included(&upper[..])),
                    max,
                )
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, value)| {
                let record = match decode_record(&value) {
                    Ok(record) => Some(record),
                    Err(reason) => {
                        let timestamp_ms = split_key(&key).map(|(_, timestamp, _)| timestamp);
                        tracing::warn!(edge, ?timestamp_ms, %reason, "dropping an unreadable buffered record");
                        None
                    }
                };
                (RecordKey(key), record)
            })
            .collect())
    }

    /// Removes forwarded records in one write transaction.
    pub(crate) async fn remove(&self, keys: Vec<RecordKey>) -> Result<(), SimError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.store
            .write(move |tx| {
                for RecordKey(key) in &keys {
                    tx.remove(&BUFFER, key)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The stored counters of every device of `edge`, by device id. Blocking.
    pub(crate) fn counters(
        &self,
        edge: &str,
    ) -> Result<std::collections::HashMap<String, Counters>, SimError> {
        let lower = format!("{edge}/");
        // `0` is the byte after `/`: every key of the form `{edge}/...` sorts below it.
        let upper = format!("{edge}0");
        let rows = self.store.read_blocking(|tx| {
            tx.range(
                &COUNTERS,
                (
                    Bound::Included(lower.as_str()),
                    Bound::Excluded(upper.as_str()),
                ),
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, counters)| {
                key.strip_prefix(&lower)
                    .map(|device| (device.to_owned(), counters))
            })
            .collect())
    }

    /// Stores `(edge, device, counters)` rows in one durable write.
    pub(crate) async fn save_counters(
        &self,
        rows: Vec<(String, String, Counters)>,
    ) -> Result<(), SimError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.store
            .write(move |tx| insert_counters(tx, &rows))
            .await?;
        Ok(())
    }

    /// [`Buffer::save_counters`] on the calling thread. Blocking.
    pub(crate) fn save_counters_blocking(
        &self,
        rows: &[(String, String, Counters)],
    ) -> Result<(), SimError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.store.write_blocking(|tx| insert_counters(tx, rows))?;
        Ok(())
    }

    /// Finishes the queued writes and closes the file, so another run can open it. Blocking.
    pub(crate) fn close(&self) {
        self.store.close();
    }
}

fn insert_counters(
    tx: &mut uns_store::WriteTx<'_>,
    rows: &[(String, String, Counters)],
) -> Result<(), uns_store::StoreError> {
    for (edge, device, counters) in rows {
        tx.insert(&COUNTERS, &format!("{edge}/{device}"), counters)?;
    }
    Ok(())
}

/// The key of a buffered record (layout in the module docs).
fn key(edge: &str, timestamp_ms: u64, counter: u64) -> Result<Vec<u8>, SimError> {
    let edge_len = u16::try_from(edge.len())
        .map_err(|_| SimError::InvalidConfig(format!("edge node id {edge:?} is too long")))?;
    let mut key = Vec::with_capacity(2 + edge.len() + 16);
    key.extend_from_slice(&edge_len.to_be_bytes());
    key.extend_from_slice(edge.as_bytes());
    key.extend_from_slice(&timestamp_ms.to_be_bytes());
    key.extend_from_slice(&counter.to_be_bytes());
    Ok(key)
}

/// `(edge, timestamp ms, counter)` of a key; `None` if it is not one of ours.
fn split_key(key: &[u8]) -> Option<(&str, u64, u64)> {
    let (len, rest) = key.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() != len + 16 {
        return None;
    }
    let (edge, numbers) = rest.split_at(len);
    let (timestamp, counter) = numbers.split_at(8);
    Some((
        std::str::from_utf8(edge).ok()?,
        u64::from_be_bytes(timestamp.try_into().ok()?),
        u64::from_be_bytes(counter.try_into().ok()?),
    ))
}

/// Moves the rows of a pre-uns-store `sf_buffer_v1` into `sf_buffer_v2` (same values) in one
/// transaction and deletes the old table; returns how many rows moved.
fn migrate_old_buffer(path: &Path) -> Result<usize, SimError> {
    use redb::{ReadableDatabase as _, ReadableTable as _};
    if !path.exists() {
        return Ok(0);
    }
    let failed = |error: &dyn std::fmt::Display| SimError::Migrate {
        path: path.to_owned(),
        message: error.to_string(),
    };
    let db = redb::Database::create(path).map_err(|error| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            SimError::Store(uns_store::StoreError::Locked {
                path: path.to_owned(),
            })
        }
        other => SimError::Store(uns_store::StoreError::Open {
            path: path.to_owned(),
            message: other.to_string(),
        }),
    })?;
    {
        let txn = db.begin_read().map_err(|error| failed(&error))?;
        match txn.open_table(OLD_BUFFER) {
            Ok(_) => {}
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(error) => return Err(failed(&error)),
        }
    }
    let new: redb::TableDefinition<'static, &[u8], &[u8]> = redb::TableDefinition::new(BUFFER_NAME);
    let txn = db.begin_write().map_err(|error| failed(&error))?;
    let mut n_moved = 0;
    {
        let old = txn.open_table(OLD_BUFFER).map_err(|error| failed(&error))?;
        let mut table = txn.open_table(new).map_err(|error| failed(&error))?;
        for row in old.iter().map_err(|error| failed(&error))? {
            let (old_key, value) = row.map_err(|error| failed(&error))?;
            let (edge, timestamp_ms, counter) = old_key.value();
            table
                .insert(key(edge, timestamp_ms, counter)?.as_slice(), value.value())
                .map_err(|error| failed(&error))?;
            n_moved += 1;
        }
    }
    txn.delete_table(OLD_BUFFER)
        .map_err(|error| failed(&error))?;
    txn.commit().map_err(|error| failed(&error))?;
    Ok(n_moved)
}

fn encode_record(record: &Record) -> Result<Vec<u8>, SimError> {
    let device = record.device.as_deref().unwrap_or("");
    let device_len = u16::try_from(device.len())
        .map_err(|_| SimError::InvalidConfig(format!("device id {device:?} is too long")))?;
    let payload = Payload {
        metrics: record
            .values
            .iter()
            .map(|(name, value, timestamp)| Metric {
                name: Some(name.clone()),
                timestamp: Some(*timestamp),
                datatype: value.as_ref().map(Value::datatype),
                value: value.clone(),
                ..Metric::default()
            })
            .collect(),
        ..Payload::default()
    };
    let payload = encode(&payload).map_err(|source| SimError::Encode(source.to_string()))?;
    let mut bytes = Vec::with_capacity(2 + device.len() + payload.len());
    bytes.extend_from_slice(&device_len.to_le_bytes());
    bytes.extend_from_slice(device.as_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

fn decode_record(bytes: &[u8]) -> Result<Record, String> {
    let (len_bytes, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| "shorter than its length prefix".to_owned())?;
    let device_len = usize::from(u16::from_le_bytes(*len_bytes));
    if rest.len() < device_len {
        return Err("device id runs past the end".to_owned());
    }
    let (device, payload) = rest.split_at(device_len);
    let device = std::str::from_utf8(device).map_err(|error| error.to_string())?;
    let payload = decode(payload).map_err(|error| error.to_string())?;
    let values = payload
        .metrics
        .into_iter()
        .map(|metric| {
            let name = metric
                .name
                .ok_or_else(|| "metric without name".to_owned())?;
            Ok((name, metric.value, metric.timestamp.unwrap_or(0)))
        })
        .collect::<Result<_, String>>()?;
    Ok(Record {
        device: (!device.is_empty()).then(|| device.to_owned()),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(device: Option<&str>, timestamp_ms: u64, value: f64) -> Record {
        Record {
            device: device.map(str::to_owned),
            values: vec![(
                "Sim/Signal/1".to_owned(),
                Some(Value::Double(value)),
                timestamp_ms,
            )],
        }
    }

    /// Per node, oldest first; a node's records never show up under another node whose id it prefixes.
    #[tokio::test]
    async fn records_come_back_per_node_oldest_first_and_go_once_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.redb");
        let buffer = tokio::task::spawn_blocking({
            let path = path.clone();
            move || Buffer::open(&path)
        })
        .await
        .unwrap()
        .unwrap();
        buffer
            .append(
                "line-1",
                vec![record(Some("filler"), 20, 2.0), record(None, 10, 1.0)],
            )
            .await
            .unwrap();
        buffer
            .append("line-10", vec![record(Some("capper"), 5, 9.0)])
            .await
            .unwrap();
        let oldest = buffer.oldest("line-1", 10).await.unwrap();
        let records: Vec<Record> = oldest.iter().filter_map(|(_, r)| r.clone()).collect();
        assert_eq!(
            records,
            vec![record(None, 10, 1.0), record(Some("filler"), 20, 2.0)]
        );
        buffer.remove(vec![oldest[0].0.clone()]).await.unwrap();
        let left = buffer.oldest("line-1", 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, Some(record(Some("filler"), 20, 2.0)));
        assert_eq!(buffer.oldest("line-10", 10).await.unwrap().len(), 1);

        // Counters of one node, not of a node whose id it prefixes.
        let counters = |good| Counters { good, reject: 1 };
        buffer
            .save_counters(vec![(
                "line-1".to_owned(),
                "filler".to_owned(),
                counters(7),
            )])
            .await
            .unwrap();
        buffer
            .save_counters(vec![(
                "line-10".to_owned(),
                "filler".to_owned(),
                counters(8),
            )])
            .await
            .unwrap();
        let line_1 = buffer.counters("line-1").unwrap();
        assert_eq!(line_1.len(), 1);
        assert_eq!(line_1["filler"], counters(7));

        // Reopened: the insertion counter carries on, the data is there.
        buffer.close();
        let buffer = Buffer::open(&path).unwrap();
        assert!(buffer.next_counter.load(Ordering::Relaxed) >= 3);
        assert_eq!(buffer.oldest("line-1", 10).await.unwrap().len(), 1);
        assert_eq!(buffer.counters("line-10").unwrap()["filler"], counters(8));
    }

    /// A buffer written by the build before uns-store is moved over on open, in order.
    #[tokio::test]
    async fn a_buffer_from_before_uns_store_is_moved_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(OLD_BUFFER).unwrap();
                for (timestamp, counter, value) in [(30, 0, 3.0), (10, 1, 1.0)] {
                    let bytes = encode_record(&record(Some("filler"), timestamp, value)).unwrap();
                    table
                        .insert(("line-1", timestamp, counter), bytes.as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let buffer = Buffer::open(&path).unwrap();
        let records: Vec<Record> = buffer
            .oldest("line-1", 10)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(_, record)| record)
            .collect();
        assert_eq!(
            records,
            vec![
                record(Some("filler"), 10, 1.0),
                record(Some("filler"), 30, 3.0)
            ]
        );
        assert_eq!(buffer.next_counter.load(Ordering::Relaxed), 2);
    }
}
