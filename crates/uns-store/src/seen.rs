//! [`Seen`]: remembers event ids, so a message delivered twice (at least once) is applied once.
//!
//! Apply an event and insert its id in the same write: if `insert` returns false the event
//! was applied before (the write can return early). Tables `seen.{name}.ids_v1` (id → first
//! seen) and `seen.{name}.by_time_v1` (first seen + id, for pruning).

use crate::bytes::Reader;
use crate::codec::{Bytes, Str};
use crate::error::StoreError;
use crate::store::{ReadableTx, WriteTx};
use crate::table::Table;

/// Rows removed per batch by [`Seen::prune`].
const PRUNE_BATCH: usize = 1024;

/// A named set of seen event ids inside a [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct Seen {
    ids: Table<Str, Bytes>,
    by_time: Table<Bytes, Bytes>,
}

fn time_key(seen_ms: u64, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + event_id.len());
    key.extend_from_slice(&seen_ms.to_be_bytes());
    key.extend_from_slice(event_id.as_bytes());
    key
}

impl Seen {
    /// The set `name` (tables `seen.{name}.*`).
    pub fn new(name: &str) -> Seen {
        Seen {
            ids: Table::named(format!("seen.{name}.ids_v1")),
            by_time: Table::named(format!("seen.{name}.by_time_v1")),
        }
    }

    /// Records `event_id` as seen at `now_ms`. True the first time; false for a duplicate
    /// (which should not be applied again).
    pub fn insert(
        &self,
        tx: &mut WriteTx<'_>,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        if tx.contains_key(&self.ids, event_id)? {
            return Ok(false);
        }
        tx.insert(&self.ids, event_id, &now_ms.to_be_bytes())?;
        tx.insert(&self.by_time, &time_key(now_ms, event_id), &[])?;
        Ok(true)
    }

    /// Whether `event_id` was seen (and not pruned).
    pub fn contains(&self, tx: &impl ReadableTx, event_id: &str) -> Result<bool, StoreError> {
        tx.contains_key(&self.ids, event_id)
    }

    /// When `event_id` was first seen.
    pub fn seen_ms(&self, tx: &impl ReadableTx, event_id: &str) -> Result<Option<u64>, StoreError> {
        tx.get(&self.ids, event_id)?
            .map(|value| {
                Reader(&value).u64().map_err(|message| StoreError::Decode {
                    table: self.ids.name().to_owned(),
                    what: "value",
                    message,
                })
            })
            .transpose()
    }

    /// Forgets ids first seen before `older_than_ms`; returns how many. An id forgotten is
    /// new again, so keep ids longer than any redelivery can take.
    pub fn prune(&self, tx: &mut WriteTx<'_>, older_than_ms: u64) -> Result<u64, StoreError> {
        let upper = older_than_ms.to_be_bytes();
        let mut n_pruned = 0;
        loop {
            let batch = tx.range_limit(&self.by_time, ..upper.as_slice(), PRUNE_BATCH)?;
            if batch.is_empty() {
                return Ok(n_pruned);
            }
            for (key, _) in batch {
                tx.remove(&self.by_time, &key)?;
                let event_id = String::from_utf8_lossy(&key[8.min(key.len())..]).into_owned();
                tx.remove(&self.ids, &event_id)?;
                n_pruned += 1;
            }
        }
    }

    /// Number of ids remembered.
    pub fn len(&self, tx: &impl ReadableTx) -> Result<u64, StoreError> {
        tx.len(&self.ids)
    }

    /// True when no id is remembered.
    pub fn is_empty(&self, tx: &impl ReadableTx) -> Result<bool, StoreError> {
        Ok(self.len(tx)? == 0)
    }
}
