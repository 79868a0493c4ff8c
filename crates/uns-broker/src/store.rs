//! The retained-message store: a redb file written by one dedicated thread.
//!
//! The broker keeps every retained message in memory (the engine matches filters against its
//! own tree) and persists each change through [`RetainedStore`], which speaks our own
//! [`RetainedMessage`], never an engine type. Writes are batched: [`RetainedStore::put`] and
//! [`RetainedStore::remove`] only enqueue; the writer thread drains everything queued into one
//! write transaction and commits it (durable on return). [`RetainedStore::close`] commits what
//! is left and drops the database, so the file can be opened again in the same process.
//!
//! # On-disk layout (table `retained_v1`, key = topic as UTF-8)
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

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;

/// The redb table holding retained messages.
const RETAINED: redb::TableDefinition<'static, &str, &[u8]> =
    redb::TableDefinition::new("retained_v1");

/// Value format version written by this build.
const FORMAT_VERSION: u8 = 1;

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
    /// The directory for the store could not be created.
    #[error("creating retained-store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// redb could not open the file (corrupt, permissions, or already open by another broker).
    #[error("opening retained store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The redb error.
        source: Box<redb::DatabaseError>,
    },
    /// A redb read or write failed.
    #[error("retained store {operation}: {source}")]
    Redb {
        /// What we were doing.
        operation: &'static str,
        /// The redb error, boxed (redb has one type per operation).
        source: Box<redb::Error>,
    },
    /// The batch holding a flushed change failed to commit (the message says why).
    #[error("retained store flush: {0}")]
    Flush(String),
    /// The writer thread is gone (it panicked); changes can no longer be persisted.
    #[error("retained-store writer thread stopped")]
    WriterGone,
}

fn redb_error(operation: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
    move |source| StoreError::Redb {
        operation,
        source: Box::new(source),
    }
}

/// One change for the writer thread.
enum Op {
    Put(String, Vec<u8>),
    Remove(String),
    /// Commit everything before this and reply; used by [`RetainedStore::flush`].
    Flush(std::sync::mpsc::SyncSender<Result<(), String>>),
}

/// Handle to the redb file. Cheap to share behind an `Arc`; all writes go through one thread.
pub(crate) struct RetainedStore {
    /// Sender to the writer thread. `None` once closed: later changes stay in memory only.
    ops: parking_mutex::Mutex<Option<mpsc::Sender<Op>>>,
    /// The writer thread, joined by [`RetainedStore::close`].
    writer: parking_mutex::Mutex<Option<std::thread::JoinHandle<Result<(), StoreError>>>>,
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
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("retained.redb");
        let db = redb::Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let messages = load_all(&db)?;
        let (ops_tx, ops_rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("uns-broker-retained".to_owned())
            .spawn(move || write_loop(db, ops_rx))
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        let store = RetainedStore {
            ops: parking_mutex::Mutex::new(Some(ops_tx)),
            writer: parking_mutex::Mutex::new(Some(writer)),
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
        if let Some(ops) = self.ops.lock().as_ref()
            && ops.send(op).is_err()
        {
            tracing::error!("retained-store writer stopped; retained change not persisted");
        }
    }

    /// Waits until everything enqueued so far is committed. Blocking.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        {
            let ops = self.ops.lock();
            let ops = ops.as_ref().ok_or(StoreError::WriterGone)?;
            ops.send(Op::Flush(reply_tx))
                .map_err(|_| StoreError::WriterGone)?;
        }
        match reply_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Flush(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Commits what is queued, stops the writer and closes the file. Later `put`/`remove`
    /// calls are ignored. Blocking; idempotent.
    pub(crate) fn close(&self) -> Result<(), StoreError> {
        // Dropping the only sender ends the writer's receive loop after it drained the queue.
        drop(self.ops.lock().take());
        let writer = self.writer.lock().take();
        match writer {
            Some(writer) => writer.join().map_err(|_| StoreError::WriterGone)?,
            None => Ok(()),
        }
    }
}

impl Drop for RetainedStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(cause = %e, "closing retained store");
        }
    }
}

fn load_all(db: &redb::Database) -> Result<Vec<(String, RetainedMessage)>, StoreError> {
    use redb::{ReadableDatabase, ReadableTable};
    let txn = db
        .begin_read()
        .map_err(|e| redb_error("begin read")(e.into()))?;
    let table = match txn.open_table(RETAINED) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_error("open table")(e.into())),
    };
    let mut messages = Vec::new();
    for row in table.iter().map_err(|e| redb_error("iterate")(e.into()))? {
        let (key, value) = row.map_err(|e| redb_error("read row")(e.into()))?;
        let topic = key.value().to_owned();
        match decode(value.value()) {
            Some(message) => messages.push((topic, message)),
            None => tracing::warn!(%topic, "skipping unreadable retained message in store"),
        }
    }
    Ok(messages)
}

/// The writer thread: one transaction per batch of queued changes.
fn write_loop(db: redb::Database, ops: mpsc::Receiver<Op>) -> Result<(), StoreError> {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        batch.extend(ops.try_iter());
        let result = write_batch(&db, &mut batch);
        if let Err(e) = &result {
            tracing::error!(cause = %e, "retained store write failed");
        }
        for op in batch {
            if let Op::Flush(reply) = op {
                let _ = reply.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
            }
        }
    }
    Ok(())
}

fn write_batch(db: &redb::Database, batch: &mut [Op]) -> Result<(), StoreError> {
    let txn = db
        .begin_write()
        .map_err(|e| redb_error("begin write")(e.into()))?;
    {
        let mut table = txn
            .open_table(RETAINED)
            .map_err(|e| redb_error("open table")(e.into()))?;
        for op in batch.iter() {
            match op {
                Op::Put(topic, value) => {
                    table
                        .insert(topic.as_str(), value.as_slice())
                        .map_err(|e| redb_error("insert")(e.into()))?;
                }
                Op::Remove(topic) => {
                    table
                        .remove(topic.as_str())
                        .map_err(|e| redb_error("remove")(e.into()))?;
                }
                Op::Flush(_) => {}
            }
        }
    }
    txn.commit().map_err(|e| redb_error("commit")(e.into()))
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
}
