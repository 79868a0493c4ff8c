//! The retained-message store: a redb file written through uns-store.
//!
//! The broker keeps every retained message in memory (the engine matches filters against its
//! own tree) and persists each change through [`RetainedStore`], which speaks our own
//! [`RetainedMessage`], never an engine type. Writes are batched: [`RetainedStore::put`] and
//! [`RetainedStore::remove`] only enqueue; the store's batching thread (`uns-broker-retained`)
//! folds everything queued into one `uns_store` write (one durable commit). A batch that fails
//! for a disk reason (full disk) is kept, merged with later changes, and retried every
//! [`RETRY_INTERVAL`] until it commits: the store is `degraded` meanwhile
//! ([`RetainedStore::degraded`]), the in-memory state the engine serves stays complete, and
//! the store recovers by itself when space returns. [`RetainedStore::close`] commits what is
//! left and closes the file, so it can be opened again in the same process.
//!
//! # On-disk layout (file `dir/retained.redb`, table `retained_v1`, key = topic as UTF-8 bytes)
//!
//! The file is a uns-store file (`docs/STORAGE.md`): the key's redb type is `&[u8]`. A file
//! written before the move to uns-store (same table, redb key type `&str`, same values) is
//! converted in place, in one transaction, the first time it is opened.
//!
//! Value, little-endian, version 1:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version = 1 |
//! | 1 | QoS 0..=2 |
//! | 8 | `created_ms`: i64, Unix ms when the broker received the publish |
//! | 4 | `expiry_secs`: u32 MQTT 5 message expiry set by the publisher, 0 = never |
//! | 1 | flags: bit 0 = has MQTT 5 properties, bit 1 = payload is UTF-8 (format indicator) |
//! | str | publisher client id |
//! | if flags bit 0 | opt str content type, opt str response topic, opt bytes correlation data, u32 count + (str, str) user properties |
//! | bytes | payload |
//!
//! `str`/`bytes` are a u32 length then the bytes; `opt` is a 0/1 byte then the value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use uns_store::{ReadableTx, Store, Str, Table};

/// The table holding retained messages.
const RETAINED: Table<Str, uns_store::Bytes> = Table::new("retained_v1");

/// Value format version written by this build.
const FORMAT_VERSION: u8 = 1;

/// How long a batch that failed for a disk reason waits before it is tried again.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// One retained message as the broker persists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetainedMessage {
    /// QoS the publisher used (0..=2).
    pub(crate) qos: u8,
    /// Unix ms when the broker received it; message expiry counts from here.
    pub(crate) created_ms: i64,
    /// MQTT 5 message expiry interval the publisher set; `None` = never expires.
    pub(crate) expiry_secs: Option<u32>,
    /// Client id of the publisher (informational).
    pub(crate) publisher: String,
    /// MQTT 5 properties to hand to v5 subscribers; `None` for a 3.1.1 publisher.
    pub(crate) properties: Option<RetainedProperties>,
    /// The payload (never empty: an empty retained payload deletes the topic).
    pub(crate) payload: Bytes,
}

/// The MQTT 5 publish properties worth keeping with a retained message. Topic alias and
/// subscription identifiers are per connection and are deliberately not stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RetainedProperties {
    /// Payload format indicator = 1.
    pub(crate) payload_is_utf8: bool,
    /// Content type.
    pub(crate) content_type: Option<String>,
    /// Response topic (request/response).
    pub(crate) response_topic: Option<String>,
    /// Correlation data (request/response).
    pub(crate) correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub(crate) user_properties: Vec<(String, String)>,
}

/// Why the retained store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened, read or written (locked by another broker, full disk,
    /// damaged); the message says which and what to do.
    #[error(transparent)]
    Store(#[from] uns_store::StoreError),
    /// A file from before uns-store could not be converted to its layout.
    #[error("converting retained store {path} to the uns-store layout: {message}")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// What redb said.
        message: String,
    },
    /// The batch holding a flushed change failed to commit (the message says why).
    #[error("retained store flush: {0}")]
    Flush(String),
    /// The batching thread is gone (it panicked); changes can no longer be persisted.
    #[error("retained-store writer thread stopped")]
    WriterGone,
}

/// One change for the batching thread.
enum Op {
    /// Store the encoded value under the topic.
    Put(String, Vec<u8>),
    /// Delete the topic.
    Remove(String),
    /// Commit everything before this and reply; used by [`RetainedStore::flush`] and the
    /// `_durable` forms.
    Flush(Reply),
}

/// Where the batching thread answers a flush.
enum Reply {
    /// A blocked thread ([`RetainedStore::flush`]).
    Blocking(mpsc::SyncSender<Result<(), String>>),
    /// A task ([`RetainedStore::put_durable`], [`RetainedStore::remove_durable`]).
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Reply {
    fn send(self, result: Result<(), String>) {
        // The asker may have stopped waiting; the change is committed or kept either way.
        match self {
            Reply::Blocking(reply) => {
                let _ = reply.send(result);
            }
            Reply::Async(reply) => {
                let _ = reply.send(result);
            }
        }
    }
}

/// Handle to the retained store. Cheap to share behind an `Arc`; all writes go through the
/// batching thread and then uns-store's writer.
pub(crate) struct RetainedStore {
    /// Sender to the batching thread. `None` once closed: later changes stay in memory only.
    ops: parking_mutex::Mutex<Option<mpsc::Sender<Op>>>,
    /// The batching thread, joined by [`RetainedStore::close`].
    writer: parking_mutex::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The file; closed by [`RetainedStore::close`] after the last batch.
    store: Store,
    /// Changes enqueued and changes committed (or dropped for a non-disk error) so far; the
    /// difference is what a crash right now would lose.
    progress: Arc<Progress>,
}

/// Counts of retained changes, shared with the batching thread.
#[derive(Default)]
struct Progress {
    enqueued: std::sync::atomic::AtomicU64,
    settled: std::sync::atomic::AtomicU64,
}

/// `std::sync::Mutex` that shrugs off poisoning: the guarded values stay valid whatever a
/// panicking holder did (an `Option` swap).
mod parking_mutex {
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

impl RetainedStore {
    /// Opens (or creates) `dir/retained.redb`, returns the store and every message in it.
    /// Blocking: call from `spawn_blocking`.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Vec<(String, RetainedMessage)>), StoreError> {
        let path = dir.join("retained.redb");
        let n_migrated = migrate_str_keys(&path)?;
        if n_migrated > 0 {
            tracing::info!(path = %path.display(), n_migrated, "converted the retained store to the uns-store layout");
        }
        let store = Store::open(&path)?;
        let messages = load_all(&store)?;
        let (ops_tx, ops_rx) = mpsc::channel();
        let batch_store = store.clone();
        let progress = Arc::new(Progress::default());
        let batch_progress = Arc::clone(&progress);
        let writer = std::thread::Builder::new()
            .name("uns-broker-retained".to_owned())
            .spawn(move || write_loop(&batch_store, &ops_rx, &batch_progress))
            .map_err(|e| StoreError::Flush(format!("starting the retained-store thread: {e}")))?;
        let store = RetainedStore {
            ops: parking_mutex::Mutex::new(Some(ops_tx)),
            writer: parking_mutex::Mutex::new(Some(writer)),
            store,
            progress,
        };
        Ok((store, messages))
    }

    /// Enqueues storing `message` under `topic`.
    pub(crate) fn put(&self, topic: &str, message: &RetainedMessage) {
        self.send(Op::Put(topic.to_owned(), encode(message)));
    }

    /// Enqueues deleting `topic`.
    pub(crate) fn remove(&self, topic: &str) {
        self.send(Op::Remove(topic.to_owned()));
    }

    fn send(&self, op: Op) {
        if !matches!(op, Op::Flush(_)) {
            self.progress
                .enqueued
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if let Some(ops) = self.ops.lock().as_ref()
            && ops.send(op).is_err()
        {
            tracing::error!("retained-store writer stopped; retained change not persisted");
        }
    }

    /// Waits until everything enqueued so far is committed. Blocking. While the disk refuses
    /// writes this returns the error at once (the changes stay queued and are retried).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        {
            let ops = self.ops.lock();
            let ops = ops.as_ref().ok_or(StoreError::WriterGone)?;
            ops.send(Op::Flush(Reply::Blocking(reply_tx)))
                .map_err(|_| StoreError::WriterGone)?;
        }
        match reply_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Flush(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Stores `message` under `topic` and resolves once that change is durable (committed
    /// with everything queued before it, in one batch shared with concurrent callers). While
    /// the disk refuses writes it resolves at once with the error; the change stays queued and
    /// is retried, so a caller may refuse the publish (MQTT 5 reason code) without losing the
    /// store's state. For the engine's publish path, so a retained PUBLISH is acknowledged
    /// only once durable.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) async fn put_durable(
        &self,
        topic: &str,
        message: &RetainedMessage,
    ) -> Result<(), StoreError> {
        self.put(topic, message);
        self.flush_async().await
    }

    /// [`RetainedStore::remove`], resolving once the deletion is durable (see `put_durable`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) async fn remove_durable(&self, topic: &str) -> Result<(), StoreError> {
        self.remove(topic);
        self.flush_async().await
    }

    async fn flush_async(&self) -> Result<(), StoreError> {
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        {
            let ops = self.ops.lock();
            let ops = ops.as_ref().ok_or(StoreError::WriterGone)?;
            ops.send(Op::Flush(Reply::Async(reply_tx)))
                .map_err(|_| StoreError::WriterGone)?;
        }
        match reply_rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Flush(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Retained changes acknowledged to their publishers but not yet committed: what a crash
    /// (SIGKILL, power loss) right now would lose. Normally 0 within one commit time.
    pub(crate) fn n_uncommitted(&self) -> u64 {
        // `settled` first: it never passes `enqueued`, so the difference cannot underflow.
        let settled = self
            .progress
            .settled
            .load(std::sync::atomic::Ordering::SeqCst);
        let enqueued = self
            .progress
            .enqueued
            .load(std::sync::atomic::Ordering::SeqCst);
        enqueued.saturating_sub(settled)
    }

    /// Writes that failed for a disk reason since the store was opened.
    pub(crate) fn n_failed_writes(&self) -> u64 {
        self.store.health().n_failed_writes
    }

    /// Why the store cannot write right now (`None` when it can): a full disk or an I/O
    /// error, until a retried batch commits. For the broker's health and metrics.
    pub(crate) fn degraded(&self) -> Option<String> {
        self.store.health().degraded
    }

    /// The underlying uns-store handle (health watch, test seams).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Commits what is queued, stops the writer and closes the file. Later `put`/`remove`
    /// calls are ignored. Blocking; idempotent.
    pub(crate) fn close(&self) -> Result<(), StoreError> {
        // Dropping the only sender ends the batching loop after it drained the queue.
        drop(self.ops.lock().take());
        let writer = self.writer.lock().take();
        let joined = match writer {
            Some(writer) => writer.join().map_err(|_| StoreError::WriterGone),
            None => Ok(()),
        };
        self.store.close();
        joined
    }
}

impl Drop for RetainedStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(cause = %e, "closing retained store");
        }
    }
}

/// Converts a `retained_v1` table with redb key type `&str` (the layout before uns-store) to
/// byte keys, in one transaction. Returns how many rows it converted (0: nothing to do).
fn migrate_str_keys(path: &Path) -> Result<usize, StoreError> {
    use redb::{ReadableDatabase, ReadableTable};
    const OLD: redb::TableDefinition<'static, &str, &[u8]> =
        redb::TableDefinition::new("retained_v1");
    const NEW: redb::TableDefinition<'static, &[u8], &[u8]> =
        redb::TableDefinition::new("retained_v1");
    if !path.exists() {
        return Ok(0);
    }
    let failed = |e: &dyn std::fmt::Display| StoreError::Migrate {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let db = redb::Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            StoreError::Store(uns_store::StoreError::Locked {
                path: path.to_owned(),
            })
        }
        other => StoreError::Store(uns_store::StoreError::Open {
            path: path.to_owned(),
            message: other.to_string(),
        }),
    })?;
    {
        let txn = db.begin_read().map_err(|e| failed(&e))?;
        match txn.open_table(OLD) {
            Ok(_) => {}
            // Fresh file, or already converted (byte keys).
            Err(
                redb::TableError::TableDoesNotExist(_) | redb::TableError::TableTypeMismatch { .. },
            ) => {
                return Ok(0);
            }
            Err(e) => return Err(failed(&e)),
        }
    }
    let txn = db.begin_write().map_err(|e| failed(&e))?;
    let mut rows = Vec::new();
    {
        let old = txn.open_table(OLD).map_err(|e| failed(&e))?;
        for row in old.iter().map_err(|e| failed(&e))? {
            let (key, value) = row.map_err(|e| failed(&e))?;
            rows.push((key.value().to_owned(), value.value().to_vec()));
        }
    }
    txn.delete_table(OLD).map_err(|e| failed(&e))?;
    {
        let mut new = txn.open_table(NEW).map_err(|e| failed(&e))?;
        for (topic, value) in &rows {
            new.insert(topic.as_bytes(), value.as_slice())
                .map_err(|e| failed(&e))?;
        }
    }
    txn.commit().map_err(|e| failed(&e))?;
    Ok(rows.len())
}

fn load_all(store: &Store) -> Result<Vec<(String, RetainedMessage)>, StoreError> {
    let rows = store.read_blocking(|tx| tx.iter(&RETAINED))?;
    let mut messages = Vec::with_capacity(rows.len());
    for (topic, value) in rows {
        match decode(&value) {
            Some(message) => messages.push((topic, message)),
            None => tracing::warn!(%topic, "skipping unreadable retained message in store"),
        }
    }
    Ok(messages)
}

/// The batching thread: folds queued changes into one write per batch; keeps a batch that
/// failed for a disk reason and retries it every [`RETRY_INTERVAL`], merged with later changes.
fn write_loop(store: &Store, ops: &mpsc::Receiver<Op>, progress: &Progress) {
    // Changes not yet durable, latest per topic (`None` = delete). Bounded by the number of
    // retained topics, which the engine holds in memory anyway.
    let mut pending: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    // Changes folded into `pending` since it was last cleared.
    let mut n_folded: u64 = 0;
    let mut open = true;
    while open {
        let first = if pending.is_empty() {
            match ops.recv() {
                Ok(op) => Some(op),
                Err(_) => break,
            }
        } else {
            match ops.recv_timeout(RETRY_INTERVAL) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Closing: one last try below, then stop.
                    open = false;
                    None
                }
            }
        };
        let mut waiters = Vec::new();
        for op in first.into_iter().chain(ops.try_iter()) {
            match op {
                Op::Put(topic, value) => {
                    pending.insert(topic, Some(value));
                    n_folded += 1;
                }
                Op::Remove(topic) => {
                    pending.insert(topic, None);
                    n_folded += 1;
                }
                Op::Flush(reply) => waiters.push(reply),
            }
        }
        let result = if pending.is_empty() {
            Ok(())
        } else {
            write_batch(store, &pending)
        };
        match &result {
            Ok(()) => {
                pending.clear();
                progress.settled.fetch_add(
                    std::mem::take(&mut n_folded),
                    std::sync::atomic::Ordering::SeqCst,
                );
            }
            Err(e) if e.is_io() => {
                // uns-store logs the transition to degraded once; the batch waits for space.
                tracing::debug!(cause = %e, n_pending = pending.len(), "retained batch kept for retry");
            }
            Err(e) => {
                tracing::error!(cause = %e, n_dropped = pending.len(), "retained store write failed; batch dropped");
                pending.clear();
                progress.settled.fetch_add(
                    std::mem::take(&mut n_folded),
                    std::sync::atomic::Ordering::SeqCst,
                );
            }
        }
        for reply in waiters {
            reply.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        }
    }
    if !pending.is_empty() {
        tracing::error!(
            n_lost = pending.len(),
            "retained store closed while the disk refused writes; these changes were not persisted"
        );
    }
}

fn write_batch(
    store: &Store,
    pending: &BTreeMap<String, Option<Vec<u8>>>,
) -> Result<(), uns_store::StoreError> {
    store.write_blocking(|tx| {
        for (topic, value) in pending {
            match value {
                Some(value) => tx.insert(&RETAINED, topic, value)?,
                None => {
                    tx.remove(&RETAINED, topic)?;
                }
            }
        }
        Ok(())
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Topics, properties and payloads are bounded by the MQTT packet size (< 256 MiB), so the
    // length always fits in a u32.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
    }
}

/// Encodes a message in the version-1 layout described in the module docs.
pub(crate) fn encode(message: &RetainedMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + message.payload.len());
    out.push(FORMAT_VERSION);
    out.push(message.qos);
    out.extend_from_slice(&message.created_ms.to_le_bytes());
    out.extend_from_slice(&message.expiry_secs.unwrap_or(0).to_le_bytes());
    let mut flags = 0u8;
    if let Some(properties) = &message.properties {
        flags |= 1;
        if properties.payload_is_utf8 {
            flags |= 2;
        }
    }
    out.push(flags);
    put_bytes(&mut out, message.publisher.as_bytes());
    if let Some(properties) = &message.properties {
        put_opt(
            &mut out,
            properties.content_type.as_deref().map(str::as_bytes),
        );
        put_opt(
            &mut out,
            properties.response_topic.as_deref().map(str::as_bytes),
        );
        put_opt(&mut out, properties.correlation_data.as_deref());
        out.extend_from_slice(&(properties.user_properties.len() as u32).to_le_bytes());
        for (key, value) in &properties.user_properties {
            put_bytes(&mut out, key.as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
    }
    put_bytes(&mut out, &message.payload);
    out
}

/// A cursor over an encoded value; every read returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take(8)?.try_into().ok().map(i64::from_le_bytes)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }
}

/// Decodes a stored value; `None` for an unknown version or a damaged value.
pub(crate) fn decode(value: &[u8]) -> Option<RetainedMessage> {
    let mut reader = Reader(value);
    if reader.u8()? != FORMAT_VERSION {
        return None;
    }
    let qos = reader.u8().filter(|qos| *qos <= 2)?;
    let created_ms = reader.i64()?;
    let expiry_secs = Some(reader.u32()?).filter(|secs| *secs != 0);
    let flags = reader.u8()?;
    let publisher = reader.string()?;
    let properties = if flags & 1 != 0 {
        let content_type = reader.opt(Reader::string)?;
        let response_topic = reader.opt(Reader::string)?;
        let correlation_data = reader.opt(|r| r.bytes().map(Bytes::copy_from_slice))?;
        let count = reader.u32()?;
        let mut user_properties = Vec::new();
        for _ in 0..count {
            user_properties.push((reader.string()?, reader.string()?));
        }
        Some(RetainedProperties {
            payload_is_utf8: flags & 2 != 0,
            content_type,
            response_topic,
            correlation_data,
            user_properties,
        })
    } else {
        None
    };
    let payload = Bytes::copy_from_slice(reader.bytes()?);
    if !reader.0.is_empty() {
        return None;
    }
    Some(RetainedMessage {
        qos,
        created_ms,
        expiry_secs,
        publisher,
        properties,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(
        properties: Option<RetainedProperties>,
        expiry_secs: Option<u32>,
    ) -> RetainedMessage {
        RetainedMessage {
            qos: 1,
            created_ms: 1_741_068_000_123,
            expiry_secs,
            publisher: "scada-bridge".into(),
            properties,
            payload: Bytes::from_static(br#"{"value":71.4}"#),
        }
    }

    fn check_roundtrip(message: RetainedMessage) {
        let encoded = encode(&message);
        assert_eq!(decode(&encoded), Some(message.clone()), "{message:?}");
        // Every truncation is detected rather than misread.
        for len in 0..encoded.len() {
            assert_eq!(decode(&encoded[..len]), None, "truncated to {len}");
        }
    }

    #[test]
    fn values_roundtrip() {
        check_roundtrip(message(None, None));
        check_roundtrip(message(None, Some(60)));
        check_roundtrip(message(Some(RetainedProperties::default()), None));
        check_roundtrip(message(
            Some(RetainedProperties {
                payload_is_utf8: true,
                content_type: Some("application/json".into()),
                response_topic: Some("uns/v1/reply".into()),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            }),
            Some(1),
        ));
    }

    #[test]
    fn unknown_version_and_trailing_bytes_are_rejected() {
        let mut encoded = encode(&message(None, None));
        encoded[0] = 2;
        assert_eq!(decode(&encoded), None);
        let mut encoded = encode(&message(None, None));
        encoded.push(0);
        assert_eq!(decode(&encoded), None);
    }

    #[test]
    fn store_persists_across_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, loaded) = RetainedStore::open(dir.path()).expect("open");
        assert!(loaded.is_empty());
        store.put("a/b", &message(None, None));
        store.put("a/c", &message(None, Some(5)));
        store.remove("a/c");
        store.flush().expect("flush");
        store.close().expect("close");
        store.put("ignored/after/close", &message(None, None));
        drop(store);
        let (store, loaded) = RetainedStore::open(dir.path()).expect("reopen");
        assert_eq!(loaded, vec![("a/b".to_owned(), message(None, None))]);
        store.close().expect("close");
    }

    #[test]
    fn a_file_from_before_uns_store_is_converted_on_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("retained.redb");
        {
            // Exactly what the broker wrote before the move: `&str` keys.
            let old: redb::TableDefinition<'_, &str, &[u8]> =
                redb::TableDefinition::new("retained_v1");
            let db = redb::Database::create(&path).expect("create");
            let txn = db.begin_write().expect("begin");
            {
                let mut table = txn.open_table(old).expect("table");
                table
                    .insert("a/b", encode(&message(None, None)).as_slice())
                    .expect("insert");
                table
                    .insert("a/c", encode(&message(None, Some(5))).as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        let (store, loaded) = RetainedStore::open(dir.path()).expect("open converts");
        assert_eq!(
            loaded,
            vec![
                ("a/b".to_owned(), message(None, None)),
                ("a/c".to_owned(), message(None, Some(5)))
            ]
        );
        store.remove("a/c");
        store.flush().expect("flush");
        store.close().expect("close");
        // Opened again: already converted, nothing lost, nothing converted twice.
        let (store, loaded) = RetainedStore::open(dir.path()).expect("reopen");
        assert_eq!(loaded, vec![("a/b".to_owned(), message(None, None))]);
        store.close().expect("close");
    }

    #[test]
    fn a_refused_commit_is_kept_retried_and_reported_until_space_returns() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = RetainedStore::open(dir.path()).expect("open");
        store.put("a/b", &message(None, None));
        store.flush().expect("flush");
        assert_eq!(store.degraded(), None);

        // The disk refuses the next three commits (first try and two retries).
        store.store().inject_disk_full(3);
        store.put("a/c", &message(None, Some(5)));
        store.remove("a/b");
        let error = store.flush().expect_err("refused while full");
        assert!(error.to_string().contains("commit"), "{error}");
        assert!(store.degraded().is_some());

        // Recovery needs no new change: the kept batch is retried by itself.
        let mut health = store.store().watch_health();
        let recovered = health.wait_for(|health| health.degraded.is_none());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), recovered).await })
            .expect("recovered within 10 s")
            .expect("health watch open");
        assert_eq!(store.store().health().n_failed_writes, 3);
        store.close().expect("close");
        let (store, loaded) = RetainedStore::open(dir.path()).expect("reopen");
        assert_eq!(loaded, vec![("a/c".to_owned(), message(None, Some(5)))]);
        store.close().expect("close");
    }

    #[test]
    fn durable_puts_resolve_after_the_commit_and_fail_while_the_disk_is_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = RetainedStore::open(dir.path()).expect("open");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            store
                .put_durable("a/b", &message(None, None))
                .await
                .expect("durable");
            // Full until cleared: every commit fails, whichever batches the writer makes of the
            // put and the flush (a one-shot failure could be spent on the put's own commit and
            // the flush's retry then succeed, which is durable and so rightly Ok).
            store.store().inject_disk_full(u32::MAX);
            let error = store
                .put_durable("a/c", &message(None, Some(5)))
                .await
                .expect_err("refused while full");
            assert!(error.to_string().contains("no storage space"), "{error}");
            assert!(store.degraded().is_some());
            store.store().inject_disk_full(0);
            // The next change commits the kept one with it.
            store.remove_durable("a/b").await.expect("space is back");
            assert_eq!(store.degraded(), None);
            assert!(store.n_failed_writes() >= 1);
        });
        store.close().expect("close");
        let (store, loaded) = RetainedStore::open(dir.path()).expect("reopen");
        assert_eq!(loaded, vec![("a/c".to_owned(), message(None, Some(5)))]);
        store.close().expect("close");
    }
}
