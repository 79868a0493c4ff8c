//! The UNS's storage: one redb file per service, written by one thread, read concurrently.
//!
//! ```no_run
//! use uns_store::{Json, ReadableTx, Store, Str, Table};
//!
//! const SETTINGS: Table<Str, Json<u32>> = Table::new("settings_v1");
//!
//! # async fn demo() -> Result<(), uns_store::StoreError> {
//! let store = Store::open(std::path::Path::new("/var/lib/uns/erp/erp.redb"))?;
//! store.write(|tx| tx.insert(&SETTINGS, "batch", &50)).await?; // durable when it returns
//! let batch = store.read(|tx| tx.get(&SETTINGS, "batch")).await?;
//! assert_eq!(batch, Some(50));
//! # Ok(()) }
//! ```
//!
//! - [`Store`]: the file and its writer thread; `write` commits durably before returning,
//!   `read` runs on a snapshot. The API speaks [`Table`]s and codecs, never redb types.
//! - [`Table`] with key codecs [`Str`], [`U64`], [`Bytes`] and value codecs [`Json`], [`Bytes`].
//! - [`Outbox`]: durable queue with leases, retries ([`RetryPolicy`]), dead letters and replay.
//! - [`Chain`]: append-only hash-chained log with [`Chain::verify`].
//! - [`Seen`]: event ids already applied (idempotency).
//! - [`ReadOnlyStore`]: a file opened without writing to it, for offline tools.
//!
//! No clock inside: every operation that needs the time takes `now_ms` (Unix ms), so tests
//! are deterministic. The byte layouts and the format version are in `docs/STORAGE.md`.

#![deny(missing_docs)]

mod bytes;
mod chain;
mod codec;
mod error;
mod outbox;
mod seen;
mod store;
mod table;

pub use chain::{BadRecord, Chain, ChainRecord, Hash, VerifyReport, hex, record_hash};
pub use codec::{Bytes, Json, KeyCodec, Str, U64, ValueCodec};
pub use error::StoreError;
pub use outbox::{
    Enqueued, EntryId, EntryState, FailOutcome, Outbox, OutboxEntry, OutboxStats, RetryPolicy,
};
pub use seen::Seen;
pub use store::{
    FORMAT_VERSION, ReadOnlyStore, ReadTx, ReadableTx, Row, Store, StoreHealth, WriteTx,
};
pub use table::Table;
