//! [`Outbox`]: a durable queue of messages to deliver at least once, with retries and dead letters.
//!
//! Typical loop: a handler `enqueue`s in the same write as the state change that caused the
//! message (so both commit or neither); a sender `lease`s due entries, delivers them, and
//! `ack`s or `fail`s each. A leased entry that is neither acked nor failed before its lease
//! ends (the sender crashed) is due again. Every lease counts one attempt; an entry that
//! fails with `attempts >= max_attempts` becomes a dead letter until `replay`ed.
//!
//! Tables (prefix `outbox.{name}.`, layouts in `docs/STORAGE.md`): `entries_v1` (live entries
//! by id), `dead_v1` (dead letters by id), `due_v1` (index: due time + id), `keys_v1`
//! (idempotency key → id, and when it was acked), `meta_v1` (the next id).

use std::time::Duration;

use crate::bytes::{Reader, Writer};
use crate::codec::{Bytes, Str, U64};
use crate::error::StoreError;
use crate::store::{ReadableTx, WriteTx};
use crate::table::Table;

/// Layout version of `entries_v1`/`dead_v1` values.
const ENTRY_VERSION: u8 = 1;
const STATE_READY: u8 = 0;
const STATE_LEASED: u8 = 1;
const STATE_DEAD: u8 = 2;

/// Identifies an entry inside its outbox; ids grow with every enqueue and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub u64);

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting for its next attempt (`due_ms`).
    Ready,
    /// Handed out by `lease` until `due_ms`.
    Leased,
    /// Gave up after `max_attempts`; waits for `replay`.
    Dead,
}

/// One queued message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its id.
    pub id: EntryId,
    /// The idempotency key it was enqueued with.
    pub key: String,
    /// The message.
    pub payload: Vec<u8>,
    /// How many times it was leased (delivery attempts), including the current one.
    pub attempts: u32,
    /// When it was enqueued (Unix ms).
    pub enqueued_ms: u64,
    /// Ready: the next attempt time; leased: when the lease ends; dead: when it died.
    pub due_ms: u64,
    /// Where it stands.
    pub state: EntryState,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

/// What `enqueue` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The entry's id (the existing one for a duplicate key).
    pub id: EntryId,
    /// False when the key was already queued or delivered: nothing was added.
    pub new: bool,
}

/// What `fail` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// The entry is due again at `next_attempt_ms`.
    Retry {
        /// Unix ms of the next attempt.
        next_attempt_ms: u64,
    },
    /// The entry used its `max_attempts` and is now a dead letter.
    DeadLettered,
}

/// Queue figures for health and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Live entries (ready or leased).
    pub depth: u64,
    /// Dead letters.
    pub dead: u64,
    /// Enqueue time of the oldest live entry.
    pub oldest_enqueued_ms: Option<u64>,
}

/// Exponential backoff with jitter and a cap on attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Factor from one delay to the next (>= 1).
    pub multiplier: f64,
    /// Fraction 0..=1 of each delay taken off at random, so failed entries spread out.
    pub jitter: f64,
    /// Attempts (leases) after which a failure makes the entry a dead letter (>= 1).
    pub max_attempts: u32,
    /// Seed of the jitter; the same seed, entry and attempt give the same delay.
    pub seed: u64,
}

impl Default for RetryPolicy {
    /// 1 s, doubling, capped at 5 min, 20 % jitter, 10 attempts.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: 10,
            seed: 0,
        }
    }
}

/// SplitMix64: a tiny, well-mixed hash to draw the jitter from (seed, entry, attempt).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1 = the first) of the entry `salt`,
    /// in ms: `initial * multiplier^(attempt-1)`, capped at `max`, minus up to `jitter` of it.
    pub fn delay_ms(&self, attempt: u32, salt: u64) -> u64 {
        let initial = self.initial.as_millis() as f64;
        let max = self.max.as_millis() as f64;
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let base = (initial * self.multiplier.max(1.0).powi(exponent)).min(max);
        let draw = splitmix64(self.seed ^ splitmix64(salt ^ (u64::from(attempt) << 48)));
        // The top 53 bits as a fraction in [0, 1).
        let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
        let delay = base * (1.0 - self.jitter.clamp(0.0, 1.0) * unit);
        delay.max(0.0) as u64
    }
}

/// A named durable queue inside a [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct Outbox {
    name: String,
    entries: Table<U64, Bytes>,
    dead: Table<U64, Bytes>,
    due: Table<Bytes, Bytes>,
    keys: Table<Str, Bytes>,
    meta: Table<Str, Bytes>,
}

fn due_key(due_ms: u64, id: EntryId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&due_ms.to_be_bytes());
    key[8..].copy_from_slice(&id.0.to_be_bytes());
    key
}

fn encode_entry(entry: &OutboxEntry) -> Vec<u8> {
    let state = match entry.state {
        EntryState::Ready => STATE_READY,
        EntryState::Leased => STATE_LEASED,
        EntryState::Dead => STATE_DEAD,
    };
    let mut writer = Writer::default();
    writer
        .u8(ENTRY_VERSION)
        .u8(state)
        .u32(entry.attempts)
        .u64(entry.enqueued_ms)
        .u64(entry.due_ms)
        .bytes(entry.key.as_bytes())
        .opt_bytes(entry.last_error.as_deref().map(str::as_bytes))
        .bytes(&entry.payload);
    writer.0
}

fn decode_entry(id: EntryId, value: &[u8]) -> Result<OutboxEntry, String> {
    let mut reader = Reader(value);
    let version = reader.u8()?;
    if version != ENTRY_VERSION {
        return Err(format!(
            "entry layout version {version}, this build reads {ENTRY_VERSION}"
        ));
    }
    let state = match reader.u8()? {
        STATE_READY => EntryState::Ready,
        STATE_LEASED => EntryState::Leased,
        STATE_DEAD => EntryState::Dead,
        other => return Err(format!("unknown entry state {other}")),
    };
    let attempts = reader.u32()?;
    let enqueued_ms = reader.u64()?;
    let due_ms = reader.u64()?;
    let key = reader.string()?;
    let last_error = reader.opt_string()?;
    let payload = reader.bytes()?.to_vec();
    reader.finish()?;
    Ok(OutboxEntry {
        id,
        key,
        payload,
        attempts,
        enqueued_ms,
        due_ms,
        state,
        last_error,
    })
}

impl Outbox {
    /// The outbox `name` (tables `outbox.{name}.*`). Several outboxes can share a store.
    pub fn new(name: &str) -> Outbox {
        let table = |suffix: &str| format!("outbox.{name}.{suffix}");
        Outbox {
            name: name.to_owned(),
            entries: Table::named(table("entries_v1")),
            dead: Table::named(table("dead_v1")),
            due: Table::named(table("due_v1")),
            keys: Table::named(table("keys_v1")),
            meta: Table::named(table("meta_v1")),
        }
    }

    /// The outbox's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn decode(
        &self,
        table: &Table<U64, Bytes>,
        id: u64,
        value: &[u8],
    ) -> Result<OutboxEntry, StoreError> {
        decode_entry(EntryId(id), value).map_err(|message| StoreError::Decode {
            table: table.name().to_owned(),
            what: "value",
            message,
        })
    }

    fn load(
        &self,
        tx: &impl ReadableTx,
        table: &Table<U64, Bytes>,
        id: EntryId,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        tx.get(table, &id.0)?
            .map(|value| self.decode(table, id.0, &value))
            .transpose()
    }

    fn unknown(&self, id: EntryId) -> StoreError {
        StoreError::UnknownEntry {
            outbox: self.name.clone(),
            id: id.0,
        }
    }

    /// Queues `payload` under `idempotency_key`, due now. A key already queued, dead or
    /// delivered (until [`Outbox::prune_keys`] forgets it) is not queued again.
    pub fn enqueue(
        &self,
        tx: &mut WriteTx<'_>,
        idempotency_key: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Enqueued, StoreError> {
        if let Some(known) = tx.get(&self.keys, idempotency_key)? {
            let id = Reader(&known).u64().map_err(|message| StoreError::Decode {
                table: self.keys.name().to_owned(),
                what: "value",
                message,
            })?;
            return Ok(Enqueued {
                id: EntryId(id),
                new: false,
            });
        }
        let next = match tx.get(&self.meta, "next_id")? {
            Some(bytes) => Reader(&bytes).u64().map_err(|message| StoreError::Decode {
                table: self.meta.name().to_owned(),
                what: "value",
                message,
            })?,
            None => 1,
        };
        let id = EntryId(next);
        tx.insert(&self.meta, "next_id", &(next + 1).to_be_bytes())?;
        let entry = OutboxEntry {
            id,
            key: idempotency_key.to_owned(),
            payload: payload.to_vec(),
            attempts: 0,
            enqueued_ms: now_ms,
            due_ms: now_ms,
            state: EntryState::Ready,
            last_error: None,
        };
        tx.insert(&self.entries, &id.0, &encode_entry(&entry))?;
        tx.insert(&self.due, &due_key(now_ms, id), &[])?;
        let mut key_value = Writer::default();
        key_value.u64(id.0).u64(0);
        tx.insert(&self.keys, idempotency_key, &key_value.0)?;
        Ok(Enqueued { id, new: true })
    }

    /// Hands out up to `max` entries due at `now_ms` (ready ones and leases that ran out),
    /// oldest due first, each leased for `lease_ms` and counted as one attempt.
    pub fn lease(
        &self,
        tx: &mut WriteTx<'_>,
        now_ms: u64,
        max: usize,
        lease_ms: u64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let upper = due_key(now_ms, EntryId(u64::MAX));
        let due = tx.range_limit(&self.due, ..=upper.as_slice(), max)?;
        let mut leased = Vec::with_capacity(due.len());
        for (due_key_bytes, _) in due {
            let id = EntryId(u64::from_be_bytes(
                due_key_bytes[8..16]
                    .try_into()
                    .map_err(|_| StoreError::Decode {
                        table: self.due.name().to_owned(),
                        what: "key",
                        message: "not 16 bytes".to_owned(),
                    })?,
            ));
            tx.remove(&self.due, &due_key_bytes)?;
            let Some(mut entry) = self.load(tx, &self.entries, id)? else {
                // An index row without an entry (cannot happen through this API); drop it.
                continue;
            };
            entry.state = EntryState::Leased;
            entry.attempts = entry.attempts.saturating_add(1);
            entry.due_ms = now_ms.saturating_add(lease_ms);
            tx.insert(&self.entries, &id.0, &encode_entry(&entry))?;
            tx.insert(&self.due, &due_key(entry.due_ms, id), &[])?;
            leased.push(entry);
        }
        Ok(leased)
    }

    /// Makes every leased entry due at `now_ms` again, keeping its attempt count, and returns how
    /// many there were. For a service starting on its store: a store has one writer (redb's file
    /// lock), so leases still held were taken by an earlier process of the same service that
    /// died without acking or failing them; without this they would wait for the lease to run
    /// out. Delivery stays at least once: an entry whose posting succeeded just before the crash
    /// is posted again, under the same idempotency key.
    pub fn release_leases(&self, tx: &mut WriteTx<'_>, now_ms: u64) -> Result<u64, StoreError> {
        let mut released = 0;
        for (id, value) in tx.iter(&self.entries)? {
            let mut entry = self.decode(&self.entries, id, &value)?;
            if entry.state != EntryState::Leased {
                continue;
            }
            let id = EntryId(id);
            tx.remove(&self.due, &due_key(entry.due_ms, id))?;
            entry.state = EntryState::Ready;
            entry.due_ms = now_ms;
            tx.insert(&self.entries, &id.0, &encode_entry(&entry))?;
            tx.insert(&self.due, &due_key(now_ms, id), &[])?;
            released += 1;
        }
        Ok(released)
    }

    /// Removes a delivered entry and remembers its key as done at `now_ms`. False if the
    /// entry is not live (already acked, or a dead letter).
    pub fn ack(&self, tx: &mut WriteTx<'_>, id: EntryId, now_ms: u64) -> Result<bool, StoreError> {
        let Some(entry) = self.load(tx, &self.entries, id)? else {
            return Ok(false);
        };
        tx.remove(&self.entries, &id.0)?;
        tx.remove(&self.due, &due_key(entry.due_ms, id))?;
        let mut key_value = Writer::default();
        key_value.u64(id.0).u64(now_ms.max(1));
        tx.insert(&self.keys, &entry.key, &key_value.0)?;
        Ok(true)
    }

    /// Records a failed attempt: the entry is due again after the policy's delay, or becomes a
    /// dead letter once it has used `max_attempts` attempts.
    pub fn fail(
        &self,
        tx: &mut WriteTx<'_>,
        id: EntryId,
        error: &str,
        now_ms: u64,
        policy: &RetryPolicy,
    ) -> Result<FailOutcome, StoreError> {
        let mut entry = self
            .load(tx, &self.entries, id)?
            .ok_or_else(|| self.unknown(id))?;
        tx.remove(&self.due, &due_key(entry.due_ms, id))?;
        entry.last_error = Some(error.to_owned());
        if entry.attempts >= policy.max_attempts.max(1) {
            entry.state = EntryState::Dead;
            entry.due_ms = now_ms;
            tx.remove(&self.entries, &id.0)?;
            tx.insert(&self.dead, &id.0, &encode_entry(&entry))?;
            return Ok(FailOutcome::DeadLettered);
        }
        entry.state = EntryState::Ready;
        entry.due_ms = now_ms.saturating_add(policy.delay_ms(entry.attempts, id.0));
        tx.insert(&self.entries, &id.0, &encode_entry(&entry))?;
        tx.insert(&self.due, &due_key(entry.due_ms, id), &[])?;
        Ok(FailOutcome::Retry {
            next_attempt_ms: entry.due_ms,
        })
    }

    /// Brings a dead letter back as a fresh entry (attempts 0, due at `now_ms`, same id and key).
    pub fn replay(&self, tx: &mut WriteTx<'_>, id: EntryId, now_ms: u64) -> Result<(), StoreError> {
        let mut entry = self
            .load(tx, &self.dead, id)?
            .ok_or_else(|| self.unknown(id))?;
        tx.remove(&self.dead, &id.0)?;
        entry.state = EntryState::Ready;
        entry.attempts = 0;
        entry.due_ms = now_ms;
        tx.insert(&self.entries, &id.0, &encode_entry(&entry))?;
        tx.insert(&self.due, &due_key(now_ms, id), &[])?;
        Ok(())
    }

    /// Deletes a dead letter for good (its key stays known, so it is not enqueued again).
    pub fn discard(&self, tx: &mut WriteTx<'_>, id: EntryId) -> Result<(), StoreError> {
        if tx.remove(&self.dead, &id.0)? {
            Ok(())
        } else {
            Err(self.unknown(id))
        }
    }

    /// Forgets the keys of entries acked before `older_than_ms` (so the keys table stays
    /// bounded); a forgotten key can be enqueued again. Returns how many were forgotten.
    pub fn prune_keys(&self, tx: &mut WriteTx<'_>, older_than_ms: u64) -> Result<u64, StoreError> {
        let mut n_pruned = 0;
        for (key, value) in tx.iter(&self.keys)? {
            let mut reader = Reader(&value);
            let done_ms = reader.u64().and_then(|_| reader.u64()).unwrap_or(0);
            if done_ms != 0 && done_ms < older_than_ms {
                tx.remove(&self.keys, &key)?;
                n_pruned += 1;
            }
        }
        Ok(n_pruned)
    }

    /// Up to `limit` live entries (ready or leased), oldest first.
    pub fn list(&self, tx: &impl ReadableTx, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        tx.range_limit(&self.entries, .., limit)?
            .into_iter()
            .map(|(id, value)| self.decode(&self.entries, id, &value))
            .collect()
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self, tx: &impl ReadableTx) -> Result<Vec<OutboxEntry>, StoreError> {
        tx.iter(&self.dead)?
            .into_iter()
            .map(|(id, value)| self.decode(&self.dead, id, &value))
            .collect()
    }

    /// One entry, live or dead.
    pub fn get(
        &self,
        tx: &impl ReadableTx,
        id: EntryId,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        match self.load(tx, &self.entries, id)? {
            Some(entry) => Ok(Some(entry)),
            None => self.load(tx, &self.dead, id),
        }
    }

    /// Depth, dead letters and the oldest live entry's age.
    pub fn stats(&self, tx: &impl ReadableTx) -> Result<OutboxStats, StoreError> {
        let oldest = match tx.first(&self.entries)? {
            Some((id, value)) => Some(self.decode(&self.entries, id, &value)?.enqueued_ms),
            None => None,
        };
        Ok(OutboxStats {
            depth: tx.len(&self.entries)?,
            dead: tx.len(&self.dead)?,
            oldest_enqueued_ms: oldest,
        })
    }

    /// When the next entry is due (a ready entry's attempt time or a lease's end): the time a
    /// sender should wake up. `None` when nothing is live.
    pub fn next_due_ms(&self, tx: &impl ReadableTx) -> Result<Option<u64>, StoreError> {
        Ok(tx.first(&self.due)?.and_then(|(key, _)| {
            key.get(..8)
                .and_then(|ms| ms.try_into().ok())
                .map(u64::from_be_bytes)
        }))
    }
}
