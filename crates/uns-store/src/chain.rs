//! [`Chain`]: an append-only log where every record carries the hash of the one before.
//!
//! Record `seq` (1, 2, ...) stores `prev_hash` (the previous record's hash, 32 zero bytes for
//! record 1) and `hash = SHA-256(seq as 8 bytes BE || prev_hash || time_ms as 8 bytes BE ||
//! payload)`. Changing any stored byte of a record (its payload, time, or either hash) breaks
//! its own hash or its link, and [`Chain::verify`] names the first record where that happens.
//! Table `chain.{name}.records_v1` (layout in `docs/STORAGE.md`).

use sha2::{Digest, Sha256};

use crate::bytes::{Reader, Writer};
use crate::codec::{Bytes, U64};
use crate::error::StoreError;
use crate::store::{ReadableTx, WriteTx};
use crate::table::Table;

/// Layout version of a record value.
const RECORD_VERSION: u8 = 1;

/// Records read per batch by [`Chain::verify`].
const VERIFY_BATCH: usize = 1024;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// One record of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainRecord {
    /// Position, from 1.
    pub seq: u64,
    /// When it was appended (Unix ms, as the caller said).
    pub time_ms: u64,
    /// Hash of record `seq - 1` (zeros for the first).
    pub prev_hash: Hash,
    /// Hash of this record.
    pub hash: Hash,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// The first record that does not check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// Its seq.
    pub seq: u64,
    /// What is wrong, as a sentence.
    pub reason: String,
}

/// What [`Chain::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that checked out before the first bad one (all of them when `first_bad` is `None`).
    pub n_records: u64,
    /// The first bad record, if any.
    pub first_bad: Option<BadRecord>,
}

/// The hash of a record's fields.
pub fn record_hash(seq: u64, prev_hash: &Hash, time_ms: u64, payload: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(seq.to_be_bytes());
    hasher.update(prev_hash);
    hasher.update(time_ms.to_be_bytes());
    hasher.update(payload);
    hasher.finalize().into()
}

fn encode_record(record: &ChainRecord) -> Vec<u8> {
    let mut writer = Writer::default();
    writer
        .u8(RECORD_VERSION)
        .u64(record.time_ms)
        .raw(&record.prev_hash)
        .raw(&record.hash)
        .raw(&record.payload);
    writer.0
}

fn decode_record(seq: u64, value: &[u8]) -> Result<ChainRecord, String> {
    let mut reader = Reader(value);
    let version = reader.u8()?;
    if version != RECORD_VERSION {
        return Err(format!(
            "record layout version {version}, this build reads {RECORD_VERSION}"
        ));
    }
    let time_ms = reader.u64()?;
    let prev_hash = reader.array32()?;
    let hash = reader.array32()?;
    Ok(ChainRecord {
        seq,
        time_ms,
        prev_hash,
        hash,
        payload: reader.0.to_vec(),
    })
}

/// A named hash-chained log inside a [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct Chain {
    records: Table<U64, Bytes>,
}

impl Chain {
    /// The chain `name` (table `chain.{name}.records_v1`).
    pub fn new(name: &str) -> Chain {
        Chain {
            records: Table::named(format!("chain.{name}.records_v1")),
        }
    }

    fn decode(&self, seq: u64, value: &[u8]) -> Result<ChainRecord, StoreError> {
        decode_record(seq, value).map_err(|message| StoreError::Decode {
            table: self.records.name().to_owned(),
            what: "value",
            message,
        })
    }

    /// Appends `payload` at `now_ms` after the last record.
    pub fn append(
        &self,
        tx: &mut WriteTx<'_>,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<ChainRecord, StoreError> {
        let (seq, prev_hash) = match self.last(tx)? {
            Some(last) => (last.seq + 1, last.hash),
            None => (1, [0u8; 32]),
        };
        let record = ChainRecord {
            seq,
            time_ms: now_ms,
            prev_hash,
            hash: record_hash(seq, &prev_hash, now_ms, payload),
            payload: payload.to_vec(),
        };
        tx.insert(&self.records, &seq, &encode_record(&record))?;
        Ok(record)
    }

    /// Record `seq`, as stored (not verified).
    pub fn get(&self, tx: &impl ReadableTx, seq: u64) -> Result<Option<ChainRecord>, StoreError> {
        tx.get(&self.records, &seq)?
            .map(|value| self.decode(seq, &value))
            .transpose()
    }

    /// The last record.
    pub fn last(&self, tx: &impl ReadableTx) -> Result<Option<ChainRecord>, StoreError> {
        tx.last(&self.records)?
            .map(|(seq, value)| self.decode(seq, &value))
            .transpose()
    }

    /// Up to `limit` records from `from_seq` on, in order.
    pub fn iter(
        &self,
        tx: &impl ReadableTx,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChainRecord>, StoreError> {
        tx.range_limit(&self.records, &from_seq.., limit)?
            .into_iter()
            .map(|(seq, value)| self.decode(seq, &value))
            .collect()
    }

    /// Number of records.
    pub fn len(&self, tx: &impl ReadableTx) -> Result<u64, StoreError> {
        tx.len(&self.records)
    }

    /// True when nothing was appended yet.
    pub fn is_empty(&self, tx: &impl ReadableTx) -> Result<bool, StoreError> {
        Ok(self.len(tx)? == 0)
    }

    /// Walks the whole chain and reports the first record whose layout, position, link or
    /// hash does not match. Errors only when the file cannot be read.
    pub fn verify(&self, tx: &impl ReadableTx) -> Result<VerifyReport, StoreError> {
        let mut expected_seq = 1u64;
        let mut prev_hash = [0u8; 32];
        loop {
            let batch = tx.range_limit(&self.records, &expected_seq.., VERIFY_BATCH)?;
            if batch.is_empty() {
                return Ok(VerifyReport {
                    n_records: expected_seq - 1,
                    first_bad: None,
                });
            }
            for (seq, value) in batch {
                let bad = |reason: String| {
                    Ok(VerifyReport {
                        n_records: expected_seq - 1,
                        first_bad: Some(BadRecord { seq, reason }),
                    })
                };
                if seq != expected_seq {
                    return bad(format!("records {expected_seq}..{seq} are missing"));
                }
                let record = match decode_record(seq, &value) {
                    Ok(record) => record,
                    Err(why) => return bad(format!("the stored record cannot be read: {why}")),
                };
                if record.prev_hash != prev_hash {
                    return bad(format!(
                        "its prev_hash {} is not the hash of record {} ({})",
                        hex(&record.prev_hash),
                        seq - 1,
                        hex(&prev_hash)
                    ));
                }
                let computed = record_hash(seq, &record.prev_hash, record.time_ms, &record.payload);
                if computed != record.hash {
                    return bad(format!(
                        "its content hashes to {}, but the stored hash is {}",
                        hex(&computed),
                        hex(&record.hash)
                    ));
                }
                prev_hash = record.hash;
                expected_seq += 1;
            }
        }
    }
}

/// Lower-case hex of a hash, for reports.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
