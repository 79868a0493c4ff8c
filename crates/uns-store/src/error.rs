//! [`StoreError`]: one variant per cause a caller can act on; redb's own error types stay inside.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory that should hold the file could not be created.
    #[error("creating store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process (or another `Store` in this process) has the file open.
    #[error(
        "{path} is already open by another process (is another `uns` running with the same data directory?): stop it, or give this one its own data directory"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer build with a layout this build does not know.
    #[error(
        "{path} has store format {found}, this build reads up to {supported}: run the newer `uns` binary, or restore a backup made by this version"
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The format found in the file.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The file could not be opened (corrupt, not a redb file, permissions).
    #[error("opening store {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What redb or the OS said.
        message: String,
    },
    /// The disk (or the OS) refused a read or a write: full disk, I/O error. The transaction
    /// did not commit; the store retries by reopening the file on the next write.
    #[error("store {operation} failed: {source}")]
    Io {
        /// What we were doing.
        operation: &'static str,
        /// The I/O error (its `kind()` tells a full disk apart).
        source: std::io::Error,
    },
    /// The file is damaged or redb refused the operation for another reason.
    #[error("store {operation} failed: {message}")]
    Storage {
        /// What we were doing.
        operation: &'static str,
        /// What redb said.
        message: String,
    },
    /// A stored key or value could not be decoded with the table's codec.
    #[error("decoding {what} in table {table}: {message}")]
    Decode {
        /// The table.
        table: String,
        /// Key or value.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A value could not be encoded with the table's codec (e.g. a map with non-string keys as JSON).
    #[error("encoding a value for table {table}: {message}")]
    Encode {
        /// The table.
        table: String,
        /// Why.
        message: String,
    },
    /// The table holds keys or values of another type than the definition says (the name is
    /// reused for another layout, or the file comes from another program).
    #[error("table {table} has another layout than this build expects: {message}")]
    TableLayout {
        /// The table.
        table: String,
        /// What redb said.
        message: String,
    },
    /// An outbox operation named an entry that is not there (already acked, or never existed).
    #[error("outbox {outbox} has no entry {id} in that state")]
    UnknownEntry {
        /// The outbox.
        outbox: String,
        /// The entry id.
        id: u64,
    },
    /// The write closure panicked; its transaction was rolled back and the store keeps working.
    #[error("a store write panicked and was rolled back: {0}")]
    Panicked(String),
    /// The store was closed (or its writer thread is gone); nothing more can be written.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// True for a failure of the disk (full, I/O error) rather than of the caller's data:
    /// retrying the same write later can succeed.
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }

    /// Maps a redb storage error for `operation`.
    pub(crate) fn storage(operation: &'static str, source: redb::StorageError) -> Self {
        match source {
            redb::StorageError::Io(source) => StoreError::Io { operation, source },
            redb::StorageError::PreviousIo => StoreError::Io {
                operation,
                source: std::io::Error::other(
                    "an earlier write failed; the file is reopened before the next write",
                ),
            },
            other => StoreError::Storage {
                operation,
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn table(operation: &'static str, table: &str, source: redb::TableError) -> Self {
        match source {
            redb::TableError::Storage(source) => StoreError::storage(operation, source),
            redb::TableError::TableTypeMismatch { .. }
            | redb::TableError::TypeDefinitionChanged { .. }
            | redb::TableError::TableIsMultimap(_)
            | redb::TableError::TableIsNotMultimap(_) => StoreError::TableLayout {
                table: table.to_owned(),
                message: source.to_string(),
            },
            other => StoreError::Storage {
                operation,
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn transaction(operation: &'static str, source: redb::TransactionError) -> Self {
        match source {
            redb::TransactionError::Storage(source) => StoreError::storage(operation, source),
            other => StoreError::Storage {
                operation,
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn commit(source: redb::CommitError) -> Self {
        match source {
            redb::CommitError::Storage(source) => StoreError::storage("commit", source),
            other => StoreError::Storage {
                operation: "commit",
                message: other.to_string(),
            },
        }
    }
}
