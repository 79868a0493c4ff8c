//! Genealogy: lots, material movements and forward/backward trace for recalls, on a tamper-evident
//! history (see `docs/GENEALOGY.md`).
//!
//! - [`Ledger`]: the redb file: lots, the hash-chained event log (`verify` names the first altered
//!   record), event-id idempotency, and the forward/backward adjacency indexes.
//! - [`Ledger::apply`] enforces the rules (unknown input lots refused, quantities never negative,
//!   quarantined or rejected lots neither consumed nor shipped, corrections undo the event they
//!   name and keep it in the log) and returns a [`Refusal`] with the reason otherwise.
//! - [`Ledger::trace`]: backward or forward, with depth and `as_of`, and a mass balance per
//!   transform within a per-material tolerance.
//! - [`LedgerFile`]: the same file opened read-only, for `uns genealogy verify` and `export`
//!   without the service; [`LedgerFile::check_derived`] replays the chain and names the first
//!   lot, event or index row that is not what the chain says.

#![deny(missing_docs)]

mod export;
mod layout;
#[cfg(test)]
mod layout_tests;
mod ledger;
mod migrate;
mod offline;
mod replay;
mod service;
mod trace;

pub use export::{EPCIS_CONTEXT, ExportFilter, FSMA_COLUMNS, RECALL_COLUMNS, lot_uri, recall_csv};
pub use ledger::{
    CHAIN, Decision, Edge, Ledger, LedgerError, LogEntry, LogRecord, LotRecord, Outcome, Refusal,
    Shipment, StatusChange, StatusChangeRequest, Tolerances, Void,
};
pub use offline::LedgerFile;
pub use replay::DerivedMismatch;
pub use service::{
    DEMO_LOTS, DEMO_SITE, FILE, Genealogy, GenealogyConfig, GenealogyError, REQUEST_TIMEOUT,
    verify_json,
};
pub use trace::{BalanceStatus, Direction, MassBalance, Trace, TraceLot, TraceQuery};
