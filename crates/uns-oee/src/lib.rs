//! The OEE service: ISO 22400-2 KPIs per cell, line, site, shift, hour, day and work order, computed from
//! event time (the timestamps the payloads carry), never from arrival time.
//!
//! # Layout
//! - [`calendar`]: shifts, breaks and non-working days in a site's time zone.
//! - [`config`]: the `[oee]` section and its validation.
//! - [`iso22400`]: the arithmetic (buckets, KPIs, six big losses), free of I/O and clocks.
//! - [`engine`]: the event-time model: per-asset logs, scopes (cell, line, work order, site), periods,
//!   closing after a grace, corrections (`version` n+1) of closed periods, merging of count samples and
//!   snapshots of the whole state.
//! - [`input`]: a received topic and payload to an engine input.
//! - [`Oee`]: the service (subscribe → decode → apply → store → publish; `GET /api/v1/oee`).
#![deny(missing_docs)]

pub mod calendar;
pub mod config;
pub mod engine;
pub mod input;
pub mod iso22400;
mod service;

pub use service::{Oee, OeeError, filters};
