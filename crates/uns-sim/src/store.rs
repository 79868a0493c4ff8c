//! Store-and-forward buffer: DATA an edge node could not publish, in `data_dir/sim.redb`.
//!
//! Layout (version 1), one table `sf_buffer_v1`:
//! - key `(edge node id, timestamp ms, insertion counter)`: per node, oldest sample first; the counter
//!   keeps samples with the same timestamp in insertion order and is unique per file.
//! - value: `u16` little-endian device-id length (0 = the node itself), the device id in UTF-8, then a
//!   Sparkplug B payload (our codec) whose metrics carry name, datatype, timestamp and value. Names, not
//!   aliases, so a buffer written by an older configuration still forwards what still exists.
//!
//! Each call is one write transaction (one per sample batch); call it from `spawn_blocking`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use uns_sparkplug::{Metric, Payload, Value, decode, encode};

use crate::SimError;

const BUFFER: TableDefinition<'static, (&str, u64, u64), &[u8]> =
    TableDefinition::new("sf_buffer_v1");

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

/// The position of a record in the buffer, to remove it once forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordKey {
    timestamp_ms: u64,
    counter: u64,
}

/// A handle to the buffer file, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Buffer {
    db: Arc<redb::Database>,
    next_counter: Arc<AtomicU64>,
}

fn store_error<E: Into<redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> SimError {
    move |source| SimError::Store {
        operation,
        source: Box::new(source.into()),
    }
}

impl Buffer {
    /// Opens or creates the buffer file.
    pub(crate) fn open(path: &Path) -> Result<Buffer, SimError> {
        let db = redb::Database::create(path).map_err(|source| SimError::StoreOpen {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let txn = db.begin_write().map_err(store_error("begin write"))?;
        let mut next_counter = 0;
        {
            let table = txn.open_table(BUFFER).map_err(store_error("open table"))?;
            for entry in table.iter().map_err(store_error("scan"))? {
                let (key, _) = entry.map_err(store_error("scan"))?;
                next_counter = next_counter.max(key.value().2 + 1);
            }
        }
        txn.commit().map_err(store_error("commit"))?;
        Ok(Buffer {
            db: Arc::new(db),
            next_counter: Arc::new(AtomicU64::new(next_counter)),
        })
    }

    /// Appends records in one write transaction. A record's key time is its oldest value's timestamp.
    pub(crate) fn append(&self, edge: &str, records: &[Record]) -> Result<(), SimError> {
        if records.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(store_error("begin write"))?;
        {
            let mut table = txn.open_table(BUFFER).map_err(store_error("open table"))?;
            for record in records {
                let timestamp_ms = record
                    .values
                    .iter()
                    .map(|(_, _, timestamp)| *timestamp)
                    .min()
                    .unwrap_or(0);
                let counter = self.next_counter.fetch_add(1, Ordering::Relaxed);
                let bytes = encode_record(record)?;
                table
                    .insert((edge, timestamp_ms, counter), bytes.as_slice())
                    .map_err(store_error("insert"))?;
            }
        }
        txn.commit().map_err(store_error("commit"))
    }

    /// Up to `max` of the oldest records of `edge`. A record that no longer decodes is skipped with a
    /// warning (and removed with the batch), so one bad row cannot block the buffer.
    pub(crate) fn oldest(
        &self,
        edge: &str,
        max: usize,
    ) -> Result<Vec<(RecordKey, Option<Record>)>, SimError> {
        let txn = self.db.begin_read().map_err(store_error("begin read"))?;
        let table = match txn.open_table(BUFFER) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store_error("open table")(e)),
        };
        let range = table
            .range((edge, 0, 0)..=(edge, u64::MAX, u64::MAX))
            .map_err(store_error("range"))?;
        let mut records = Vec::new();
        for entry in range.take(max) {
            let (key, value) = entry.map_err(store_error("range"))?;
            let (_, timestamp_ms, counter) = key.value();
            let record = match decode_record(value.value()) {
                Ok(record) => Some(record),
                Err(reason) => {
                    tracing::warn!(edge, timestamp_ms, %reason, "dropping an unreadable buffered record");
                    None
                }
            };
            records.push((
                RecordKey {
                    timestamp_ms,
                    counter,
                },
                record,
            ));
        }
        Ok(records)
    }

    /// Removes forwarded records in one write transaction.
    pub(crate) fn remove(&self, edge: &str, keys: &[RecordKey]) -> Result<(), SimError> {
        let txn = self.db.begin_write().map_err(store_error("begin write"))?;
        {
            let mut table = txn.open_table(BUFFER).map_err(store_error("open table"))?;
            for key in keys {
                table
                    .remove((edge, key.timestamp_ms, key.counter))
                    .map_err(store_error("remove"))?;
            }
        }
        txn.commit().map_err(store_error("commit"))
    }
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
