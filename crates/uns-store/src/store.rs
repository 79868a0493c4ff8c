//! [`Store`]: one redb file, one writer thread, durable commits, concurrent reads.
//!
//! # Threads and locks
//! - Every [`Store::write`] is a job sent over a channel to the store's writer thread
//!   (`uns-store-writer`), which runs it in one redb write transaction and commits it with
//!   redb's default (immediate, fsynced) durability before the caller's future resolves. The
//!   channel is the only queue; the thread ends when the last `Store` clone is dropped or
//!   [`Store::close`] is called, after finishing what was queued.
//! - [`Store::write_blocking`] runs on the calling thread; redb itself lets one write
//!   transaction exist at a time, so it waits for (and is waited on by) the writer thread.
//! - Reads run on tokio's blocking pool ([`Store::read`]) or the calling thread
//!   ([`Store::read_blocking`]), each in a read transaction: a consistent snapshot that
//!   never waits for a writer.
//! - The `redb::Database` sits behind a `RwLock`: every transaction holds the read side; the
//!   write side is taken only to close the file or to reopen it after an I/O error (redb
//!   refuses all work after one until reopened), which is how a store recovers from a full disk.

use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, mpsc};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::codec::{KeyCodec, ValueCodec};
use crate::error::StoreError;
use crate::table::Table;

/// Store format written by this build (the layout of the `uns_store_meta` table and of the
/// tables the crate itself defines). A file with a larger number is refused with
/// [`StoreError::NewerFormat`].
pub const FORMAT_VERSION: u32 = 1;

/// The crate's own bookkeeping table: `format` → u32 little-endian.
const META_TABLE: &str = "uns_store_meta";
const META_FORMAT_KEY: &[u8] = b"format";

type RawDef<'a> = redb::TableDefinition<'a, &'static [u8], &'static [u8]>;

/// One typed row: the key and the value as reads return them.
pub type Row<K, V> = (<K as KeyCodec>::Owned, <V as ValueCodec>::Owned);

/// Rows as stored: key bytes and value bytes.
pub(crate) type RawRows = Vec<(Vec<u8>, Vec<u8>)>;

type RawRow<'a> = (
    redb::AccessGuard<'a, &'static [u8]>,
    redb::AccessGuard<'a, &'static [u8]>,
);

fn raw_def(name: &str) -> RawDef<'_> {
    redb::TableDefinition::new(name)
}

/// Whether the store can write. Watch it with [`Store::watch_health`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// `Some(reason)` since the last write that failed for a disk reason (full disk, I/O
    /// error); `None` again after the next successful commit.
    pub degraded: Option<String>,
    /// Writes that failed for a disk reason since the store was opened.
    pub n_failed_writes: u64,
}

/// A handle to one redb file. Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

/// Owns the writer thread; dropping the last `Store` clone drops this and closes the file.
struct Handle {
    shared: Arc<Shared>,
    /// Sender to the writer thread. `None` once closed.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Joined by [`Store::close`].
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the writer thread and the readers share.
struct Shared {
    path: PathBuf,
    /// `None` once closed.
    db: RwLock<Option<redb::Database>>,
    /// Set after an I/O error: the next transaction reopens the file first.
    needs_reopen: AtomicBool,
    health: tokio::sync::watch::Sender<StoreHealth>,
    /// Test seam: the next N commits fail as a full disk would (see [`Store::inject_disk_full`]).
    injected_failures: AtomicU32,
}

type Job = Box<dyn FnOnce(&Shared) + Send>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values (an `Option` swapped whole) stay valid whatever a panicking holder did.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_database(path: &Path) -> Result<redb::Database, StoreError> {
    redb::Database::create(path).map_err(|source| match source {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_owned(),
        },
        other => StoreError::Open {
            path: path.to_owned(),
            message: other.to_string(),
        },
    })
}

impl Store {
    /// Opens (or creates) the redb file at `path`, creating its directory. Blocking (it may
    /// repair a file after a crash): call it from `spawn_blocking` or before the runtime.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let db = open_database(path)?;
        check_format(&db, path)?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            db: RwLock::new(Some(db)),
            needs_reopen: AtomicBool::new(false),
            health: tokio::sync::watch::Sender::new(StoreHealth::default()),
            injected_failures: AtomicU32::new(0),
        });
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("uns-store-writer".to_owned())
            .spawn(move || {
                while let Ok(job) = jobs_rx.recv() {
                    job(&writer_shared);
                }
            })
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: format!("starting the writer thread: {e}"),
            })?;
        Ok(Store {
            handle: Arc::new(Handle {
                shared,
                jobs: Mutex::new(Some(jobs_tx)),
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.handle.shared.path
    }

    /// Runs `f` on the writer thread in one write transaction and commits it durably before
    /// returning. If `f` returns `Err` (or panics) nothing it did is kept. A domain error that
    /// should still commit belongs in `R` (e.g. `Result<Result<T, MyError>, StoreError>`).
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move |shared| {
            // The caller may have stopped waiting; the write still committed or not as usual.
            let _ = reply_tx.send(run_write(shared, f));
        }))?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write`] for synchronous code: runs `f` on the calling thread (waiting for any
    /// write transaction in progress) and commits durably. Blocks: never call it on an async
    /// worker thread, nor from inside another write of the same store (it would wait forever).
    pub fn write_blocking<R>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        run_write(&self.handle.shared, f)
    }

    /// Runs `f` in a read transaction (a consistent snapshot) on tokio's blocking pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&ReadTx) -> Result<R, StoreError> + Send + 'static,
    {
        let shared = self.handle.shared.clone();
        tokio::task::spawn_blocking(move || run_read(&shared, f))
            .await
            .map_err(|e| StoreError::Panicked(e.to_string()))?
    }

    /// [`Store::read`] on the calling thread. Blocks (briefly): not on an async worker thread.
    pub fn read_blocking<R>(
        &self,
        f: impl FnOnce(&ReadTx) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        run_read(&self.handle.shared, f)
    }

    /// Writes a consistent copy of the whole file (one read snapshot) to a new redb file at
    /// `dest`, while the store keeps serving; returns the number of rows copied. `dest` must
    /// not exist. The copy is an ordinary store file: [`Store::open`] it to restore.
    pub async fn backup(&self, dest: &Path) -> Result<u64, StoreError> {
        let shared = self.handle.shared.clone();
        let dest = dest.to_owned();
        tokio::task::spawn_blocking(move || backup(&shared, &dest))
            .await
            .map_err(|e| StoreError::Panicked(e.to_string()))?
    }

    /// The current health (degraded after a write failed for a disk reason).
    pub fn health(&self) -> StoreHealth {
        self.handle.shared.health.borrow().clone()
    }

    /// A receiver that sees every change of [`Store::health`].
    pub fn watch_health(&self) -> tokio::sync::watch::Receiver<StoreHealth> {
        self.handle.shared.health.subscribe()
    }

    /// Test seam: the next `n` commits fail with a "no space left on device" I/O error, as a
    /// full disk makes them fail, and then the file is reopened as after a real one. For tests
    /// of callers' recovery paths where a real full disk cannot be arranged.
    #[doc(hidden)]
    pub fn inject_disk_full(&self, n: u32) {
        self.handle
            .shared
            .injected_failures
            .store(n, Ordering::SeqCst);
    }

    /// Finishes the queued writes, stops the writer thread and closes the file, so it can be
    /// opened again (in this process or another). Later calls on any clone return
    /// [`StoreError::Closed`]. Blocking; idempotent.
    pub fn close(&self) {
        self.handle.close();
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        let jobs = lock(&self.handle.jobs);
        let jobs = jobs.as_ref().ok_or(StoreError::Closed)?;
        jobs.send(job).map_err(|_| StoreError::Closed)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.handle.shared.path)
            .finish_non_exhaustive()
    }
}

impl Handle {
    fn close(&self) {
        // Dropping the only sender ends the writer's loop once the queue is drained.
        drop(lock(&self.jobs).take());
        if let Some(writer) = lock(&self.writer).take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.shared.path.display(), "store writer thread panicked");
        }
        let db = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(db);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

fn check_format(db: &redb::Database, path: &Path) -> Result<(), StoreError> {
    let txn = db
        .begin_write()
        .map_err(|e| StoreError::transaction("begin write", e))?;
    {
        let mut meta = txn
            .open_table(raw_def(META_TABLE))
            .map_err(|e| StoreError::table("open table", META_TABLE, e))?;
        let found = meta
            .get(META_FORMAT_KEY)
            .map_err(|e| StoreError::storage("read", e))?
            .map(|v| {
                v.value()
                    .try_into()
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Decode {
                        table: META_TABLE.to_owned(),
                        what: "value",
                        message: "format is not 4 bytes".to_owned(),
                    })
            })
            .transpose()?;
        match found {
            Some(found) if found > FORMAT_VERSION => {
                return Err(StoreError::NewerFormat {
                    path: path.to_owned(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Some(_) => {}
            None => {
                meta.insert(META_FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
                    .map_err(|e| StoreError::storage("write", e))?;
            }
        }
    }
    txn.commit().map_err(StoreError::commit)
}

impl Shared {
    /// The database, reopened first if an I/O error poisoned it.
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<redb::Database>>, StoreError> {
        if self.needs_reopen.load(Ordering::SeqCst) {
            let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if db.is_some() && self.needs_reopen.load(Ordering::SeqCst) {
                // redb keeps refusing work after an I/O error; the only way back is a new handle.
                drop(db.take());
                match open_database(&self.path) {
                    Ok(reopened) => {
                        *db = Some(reopened);
                        self.needs_reopen.store(false, Ordering::SeqCst);
                    }
                    Err(e) => {
                        // Stays closed-for-reopen; the next transaction tries again.
                        return Err(StoreError::Io {
                            operation: "reopen after an I/O error",
                            source: std::io::Error::other(e.to_string()),
                        });
                    }
                }
            }
        }
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if db.is_none() {
            return Err(if self.needs_reopen.load(Ordering::SeqCst) {
                StoreError::Io {
                    operation: "reopen after an I/O error",
                    source: std::io::Error::other("the file could not be reopened yet"),
                }
            } else {
                StoreError::Closed
            });
        }
        Ok(db)
    }

    fn record_result<R>(&self, result: &Result<R, StoreError>) {
        match result {
            Err(e) if e.is_io() => {
                self.needs_reopen.store(true, Ordering::SeqCst);
                let reason = e.to_string();
                self.health.send_modify(|health| {
                    if health.degraded.is_none() {
                        tracing::error!(path = %self.path.display(), cause = %reason, "store cannot write; degraded until a write succeeds");
                    }
                    health.degraded = Some(reason);
                    health.n_failed_writes += 1;
                });
            }
            Ok(_) => {
                self.health.send_if_modified(|health| {
                    if health.degraded.take().is_some() {
                        tracing::info!(path = %self.path.display(), "store writes again");
                        true
                    } else {
                        false
                    }
                });
            }
            Err(_) => {}
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a non-string panic".to_owned()
    }
}

fn run_write<R>(
    shared: &Shared,
    f: impl FnOnce(&mut WriteTx<'_>) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let result = (|| {
        let db = shared.db()?;
        // `db()` returned `Ok` only with a database inside.
        let db = db.as_ref().ok_or(StoreError::Closed)?;
        let txn = db
            .begin_write()
            .map_err(|e| StoreError::transaction("begin write", e))?;
        let mut tx = WriteTx {
            txn,
            path: &shared.path,
        };
        let value = match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut tx))) {
            Ok(Ok(value)) => value,
            // Dropping `tx` aborts the transaction.
            Ok(Err(e)) => return Err(e),
            Err(panic) => return Err(StoreError::Panicked(panic_message(panic.as_ref()))),
        };
        if shared
            .injected_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Io {
                operation: "commit",
                source: std::io::Error::from(std::io::ErrorKind::StorageFull),
            });
        }
        tx.txn.commit().map_err(StoreError::commit)?;
        Ok(value)
    })();
    shared.record_result(&result);
    result
}

fn backup(shared: &Shared, dest: &Path) -> Result<u64, StoreError> {
    use redb::TableHandle;
    if dest.exists() {
        return Err(StoreError::Open {
            path: dest.to_owned(),
            message: "the backup file already exists; choose a new name".to_owned(),
        });
    }
    let db = shared.db()?;
    let db = db.as_ref().ok_or(StoreError::Closed)?;
    let snapshot = db
        .begin_read()
        .map_err(|e| StoreError::transaction("begin read", e))?;
    let copy = open_database(dest)?;
    let txn = copy
        .begin_write()
        .map_err(|e| StoreError::transaction("begin write", e))?;
    let mut n_rows = 0u64;
    let tables = snapshot
        .list_tables()
        .map_err(|e| StoreError::storage("list tables", e))?;
    for handle in tables {
        let name = handle.name().to_owned();
        let from = snapshot
            .open_table(raw_def(&name))
            .map_err(|e| StoreError::table("open table", &name, e))?;
        let mut to = txn
            .open_table(raw_def(&name))
            .map_err(|e| StoreError::table("open table", &name, e))?;
        for row in from.iter().map_err(|e| StoreError::storage("range", e))? {
            let (key, value) = row.map_err(|e| StoreError::storage("range", e))?;
            to.insert(key.value(), value.value())
                .map_err(|e| StoreError::storage("insert", e))?;
            n_rows += 1;
        }
    }
    txn.commit().map_err(StoreError::commit)?;
    Ok(n_rows)
}

fn run_read<R>(
    shared: &Shared,
    f: impl FnOnce(&ReadTx) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let db = shared.db()?;
    let db = db.as_ref().ok_or(StoreError::Closed)?;
    let txn = db
        .begin_read()
        .map_err(|e| StoreError::transaction("begin read", e))?;
    f(&ReadTx { txn })
}

/// One write transaction, handed to the closure of [`Store::write`]. Reads see the
/// transaction's own changes. Read methods come from [`ReadableTx`].
pub struct WriteTx<'a> {
    txn: redb::WriteTransaction,
    path: &'a Path,
}

/// One read transaction: a snapshot of the last commit. Methods come from [`ReadableTx`].
pub struct ReadTx {
    txn: redb::ReadTransaction,
}

mod sealed {
    use std::ops::Bound;

    use super::RawRows;
    use crate::error::StoreError;

    /// Byte-level reads, implemented by the two transaction types only.
    pub trait RawRead {
        fn raw_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
        fn raw_range(
            &self,
            table: &str,
            lower: Bound<&[u8]>,
            upper: Bound<&[u8]>,
            limit: usize,
            reverse: bool,
        ) -> Result<RawRows, StoreError>;
        fn raw_len(&self, table: &str) -> Result<u64, StoreError>;
    }
}

pub(crate) use sealed::RawRead;

fn rows<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
    limit: usize,
    reverse: bool,
) -> Result<RawRows, StoreError> {
    let range = table
        .range::<&[u8]>((lower, upper))
        .map_err(|e| StoreError::storage("range", e))?;
    let mut out = Vec::new();
    let mut push = |row: Result<RawRow<'_>, redb::StorageError>| {
        let (key, value) = row.map_err(|e| StoreError::storage("range", e))?;
        out.push((key.value().to_vec(), value.value().to_vec()));
        Ok::<_, StoreError>(())
    };
    if reverse {
        for row in range.rev().take(limit) {
            push(row)?;
        }
    } else {
        for row in range.take(limit) {
            push(row)?;
        }
    }
    Ok(out)
}

impl RawRead for ReadTx {
    fn raw_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let opened = match self.txn.open_table(raw_def(table)) {
            Ok(opened) => opened,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::table("open table", table, e)),
        };
        let value = opened.get(key).map_err(|e| StoreError::storage("get", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn raw_range(
        &self,
        table: &str,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<RawRows, StoreError> {
        match self.txn.open_table(raw_def(table)) {
            Ok(opened) => rows(&opened, lower, upper, limit, reverse),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(StoreError::table("open table", table, e)),
        }
    }

    fn raw_len(&self, table: &str) -> Result<u64, StoreError> {
        match self.txn.open_table(raw_def(table)) {
            Ok(opened) => opened.len().map_err(|e| StoreError::storage("len", e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(StoreError::table("open table", table, e)),
        }
    }
}

impl WriteTx<'_> {
    fn open(
        &self,
        table: &str,
    ) -> Result<redb::Table<'_, &'static [u8], &'static [u8]>, StoreError> {
        self.txn
            .open_table(raw_def(table))
            .map_err(|e| StoreError::table("open table", table, e))
    }

    /// The file this transaction writes (for error messages).
    pub fn path(&self) -> &Path {
        self.path
    }

    pub(crate) fn raw_insert(
        &mut self,
        table: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.open(table)?
            .insert(key, value)
            .map_err(|e| StoreError::storage("insert", e))?;
        Ok(())
    }

    pub(crate) fn raw_remove(
        &mut self,
        table: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut opened = self.open(table)?;
        let old = opened
            .remove(key)
            .map_err(|e| StoreError::storage("remove", e))?
            .map(|v| v.value().to_vec());
        Ok(old)
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn insert<K: KeyCodec, V: ValueCodec>(
        &mut self,
        table: &Table<K, V>,
        key: &K::Ref,
        value: &V::Ref,
    ) -> Result<(), StoreError> {
        let value = V::encode(value).map_err(|message| StoreError::Encode {
            table: table.name().to_owned(),
            message,
        })?;
        self.raw_insert(table.name(), &K::encode(key), &value)
    }

    /// Deletes `key`; true if it was there.
    pub fn remove<K: KeyCodec, V: ValueCodec>(
        &mut self,
        table: &Table<K, V>,
        key: &K::Ref,
    ) -> Result<bool, StoreError> {
        Ok(self.raw_remove(table.name(), &K::encode(key))?.is_some())
    }

    /// Deletes `key` and returns the value it had.
    pub fn take<K: KeyCodec, V: ValueCodec>(
        &mut self,
        table: &Table<K, V>,
        key: &K::Ref,
    ) -> Result<Option<V::Owned>, StoreError> {
        self.raw_remove(table.name(), &K::encode(key))?
            .map(|bytes| decode_value::<V>(table.name(), &bytes))
            .transpose()
    }

    /// Deletes every key in `bounds`; returns how many.
    pub fn remove_range<'k, K: KeyCodec, V: ValueCodec>(
        &mut self,
        table: &Table<K, V>,
        bounds: impl std::ops::RangeBounds<&'k K::Ref>,
    ) -> Result<u64, StoreError>
    where
        K::Ref: 'k,
    {
        let (lower, upper) = encode_bounds::<K>(&bounds);
        let mut opened = self.open(table.name())?;
        let mut n_removed = 0u64;
        opened
            .retain_in::<&[u8], _>((as_ref_bound(&lower), as_ref_bound(&upper)), |_, _| {
                n_removed += 1;
                false
            })
            .map_err(|e| StoreError::storage("remove range", e))?;
        Ok(n_removed)
    }
}

impl RawRead for WriteTx<'_> {
    fn raw_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let opened = self.open(table)?;
        let value = opened.get(key).map_err(|e| StoreError::storage("get", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn raw_range(
        &self,
        table: &str,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<RawRows, StoreError> {
        rows(&self.open(table)?, lower, upper, limit, reverse)
    }

    fn raw_len(&self, table: &str) -> Result<u64, StoreError> {
        self.open(table)?
            .len()
            .map_err(|e| StoreError::storage("len", e))
    }
}

fn decode_value<V: ValueCodec>(table: &str, bytes: &[u8]) -> Result<V::Owned, StoreError> {
    V::decode(bytes).map_err(|message| StoreError::Decode {
        table: table.to_owned(),
        what: "value",
        message,
    })
}

fn decode_key<K: KeyCodec>(table: &str, bytes: &[u8]) -> Result<K::Owned, StoreError> {
    K::decode(bytes).map_err(|message| StoreError::Decode {
        table: table.to_owned(),
        what: "key",
        message,
    })
}

fn encode_bound<K: KeyCodec>(bound: Bound<&&K::Ref>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(key) => Bound::Included(K::encode(key).into_owned()),
        Bound::Excluded(key) => Bound::Excluded(K::encode(key).into_owned()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn encode_bounds<'k, K: KeyCodec>(
    bounds: &impl std::ops::RangeBounds<&'k K::Ref>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>)
where
    K::Ref: 'k,
{
    (
        encode_bound::<K>(bounds.start_bound()),
        encode_bound::<K>(bounds.end_bound()),
    )
}

fn as_ref_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Typed reads, the same on a [`WriteTx`] (seeing its own changes) and a [`ReadTx`].
/// Range reads return owned rows in key order; bound them with the `_limit` forms.
pub trait ReadableTx: sealed::RawRead {
    /// The value under `key`.
    fn get<K: KeyCodec, V: ValueCodec>(
        &self,
        table: &Table<K, V>,
        key: &K::Ref,
    ) -> Result<Option<V::Owned>, StoreError> {
        self.raw_get(table.name(), &K::encode(key))?
            .map(|bytes| decode_value::<V>(table.name(), &bytes))
            .transpose()
    }

    /// Whether `key` is present.
    fn contains_key<K: KeyCodec, V: ValueCodec>(
        &self,
        table: &Table<K, V>,
        key: &K::Ref,
    ) -> Result<bool, StoreError> {
        Ok(self.raw_get(table.name(), &K::encode(key))?.is_some())
    }

    /// Every row with a key in `bounds` (`..`, `&a..&b`, `"a"..="b"`), in key order.
    fn range<'k, K: KeyCodec, V: ValueCodec>(
        &self,
        table: &Table<K, V>,
        bounds: impl std::ops::RangeBounds<&'k K::Ref>,
    ) -> Result<Vec<Row<K, V>>, StoreError>
    where
        K::Ref: 'k,
    {
        self.range_limit(table, bounds, usize::MAX)
    }

    /// At most `limit` rows with a key in `bounds`, in key order.
    fn range_limit<'k, K: KeyCodec, V: ValueCodec>(
        &self,
        table: &Table<K, V>,
        bounds: impl std::ops::RangeBounds<&'k K::Ref>,
        limit: usize,
    ) -> Result<Vec<Row<K, V>>, StoreError>
    where
        K::Ref: 'k,
    {
        let (lower, upper) = encode_bounds::<K>(&bounds);
        decode_rows::<K, V>(
            table.name(),
            self.raw_range(
                table.name(),
                as_ref_bound(&lower),
                as_ref_bound(&upper),
                limit,
                false,
            )?,
        )
    }

    /// Every row, in key order.
    fn iter<K: KeyCodec, V: ValueCodec>(
        &self,
        table: &Table<K, V>,
    ) -> Result<Vec<Row<K, V>>, StoreError> {
        decode_rows::<K, V>(
            table.name(),
            self.raw_range(
                table.name(),
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                false,
            )?,
        )
    }

    /// The row with the smallest key.
    fn first<K: KeyCodec, V: ValueCodec>(
        &self,
        table: &Table<K, V>,
    ) -> Result<Option<Row<K, V>>, StoreError> {
        let rows = self.raw_range(table.name(), Bound::Unbounded, Bound::Unbounded, 1, false)?;
        Ok(decode_rows::<K, V>(table.name(), rows)?.pop())
    }

    /// The row with the largest key.
    fn last<K: KeyCodec, V: ValueCodec>(
        &self,
        table: &Table<K, V>,
    ) -> Result<Option<Row<K, V>>, StoreError> {
        let rows = self.raw_range(table.name(), Bound::Unbounded, Bound::Unbounded, 1, true)?;
        Ok(decode_rows::<K, V>(table.name(), rows)?.pop())
    }

    /// Number of rows.
    fn len<K: KeyCodec, V: ValueCodec>(&self, table: &Table<K, V>) -> Result<u64, StoreError> {
        self.raw_len(table.name())
    }
}

fn decode_rows<K: KeyCodec, V: ValueCodec>(
    table: &str,
    rows: RawRows,
) -> Result<Vec<Row<K, V>>, StoreError> {
    rows.into_iter()
        .map(|(key, value)| {
            Ok((
                decode_key::<K>(table, &key)?,
                decode_value::<V>(table, &value)?,
            ))
        })
        .collect()
}

impl ReadableTx for ReadTx {}
impl ReadableTx for WriteTx<'_> {}

/// A store file opened read-only, for offline tools (`uns genealogy verify`, exports) that must
/// not change the file in any way, not even repair it. redb lets several read-only handles share
/// a file but none beside a [`Store`]: while a service holds the file, [`ReadOnlyStore::open`]
/// fails with [`StoreError::Locked`] (ask the running service instead), and a file that was not
/// closed cleanly is refused rather than repaired (open it once with [`Store::open`]).
pub struct ReadOnlyStore {
    db: redb::ReadOnlyDatabase,
    path: PathBuf,
}

impl ReadOnlyStore {
    /// Opens the existing file at `path` without writing to it. Blocking.
    pub fn open(path: &Path) -> Result<ReadOnlyStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Open {
                path: path.to_owned(),
                message: "no such file".to_owned(),
            });
        }
        let db = redb::ReadOnlyDatabase::open(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.to_owned(),
            },
            redb::DatabaseError::RepairAborted => StoreError::Open {
                path: path.to_owned(),
                message: "the file was not closed cleanly and needs a repair, which a read-only \
                          open does not do: start the service that owns it once (it repairs the \
                          file on open), stop it, and try again"
                    .to_owned(),
            },
            other => StoreError::Open {
                path: path.to_owned(),
                message: other.to_string(),
            },
        })?;
        let store = ReadOnlyStore {
            db,
            path: path.to_owned(),
        };
        let found = store.read_blocking(|tx| {
            tx.raw_get(META_TABLE, META_FORMAT_KEY)?
                .map(|value| {
                    <[u8; 4]>::try_from(value.as_slice())
                        .map(u32::from_le_bytes)
                        .map_err(|_| StoreError::Decode {
                            table: META_TABLE.to_owned(),
                            what: "value",
                            message: "format is not 4 bytes".to_owned(),
                        })
                })
                .transpose()
        })?;
        if let Some(found) = found.filter(|found| *found > FORMAT_VERSION) {
            return Err(StoreError::NewerFormat {
                path: path.to_owned(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction (a snapshot) on the calling thread. Blocking.
    pub fn read_blocking<R>(
        &self,
        f: impl FnOnce(&ReadTx) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::transaction("begin read", e))?;
        f(&ReadTx { txn })
    }
}

impl std::fmt::Debug for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
