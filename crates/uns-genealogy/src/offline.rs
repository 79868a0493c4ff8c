//! [`LedgerFile`]: the genealogy file opened read-only, for the offline tools
//! (`uns genealogy verify`, `uns genealogy export`): they read the file the service wrote without
//! the service, and never change it.

use std::path::Path;

use serde_json::Value;
use uns_store::{Chain, ReadOnlyStore, StoreError, VerifyReport};

use crate::export::{ExportFilter, epcis_in};
use crate::ledger::CHAIN;
use crate::migrate::require_current;
use crate::replay::{DerivedMismatch, check_derived};

/// `genealogy.redb`, opened without writing to it. Blocking calls (the tools run them on a
/// blocking thread). While the service runs, [`LedgerFile::open`] fails with
/// [`StoreError::Locked`]: redb lets one process write a file, and no reader beside it. A file of
/// an older store layout is not migrated here (that writes): export and the replay check refuse
/// it with [`StoreError::TableLayout`] saying to start the service on it once; `verify` (the
/// chain only) works on any layout.
#[derive(Debug)]
pub struct LedgerFile {
    store: ReadOnlyStore,
}

impl LedgerFile {
    /// Opens the existing file at `path` read-only.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            store: ReadOnlyStore::open(path)?,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Walks the chain: intact, or the first altered record (as [`crate::Ledger::verify`]).
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.store.read_blocking(|tx| Chain::new(CHAIN).verify(tx))
    }

    /// Replays the chain into a scratch file under `scratch_dir` (removed afterwards) and
    /// compares the lots, events and adjacency indexes with the file's: `None` when they are
    /// what the chain says, else the first row that is not. Takes about as long as ingesting
    /// the whole log again; run it after [`LedgerFile::verify`] found the chain intact.
    pub fn check_derived(&self, scratch_dir: &Path) -> Result<Option<DerivedMismatch>, StoreError> {
        self.store.read_blocking(|tx| {
            require_current(tx)?;
            check_derived(tx, scratch_dir)
        })
    }

    /// The EPCIS 2.0 document of the events `filter` keeps (as [`crate::Ledger::epcis`]).
    pub fn epcis(&self, filter: &ExportFilter, now_ms: u64) -> Result<Value, StoreError> {
        self.store.read_blocking(|tx| {
            require_current(tx)?;
            epcis_in(tx, filter, now_ms)
        })
    }
}
