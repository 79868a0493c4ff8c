//! Store benchmark: uns-store commit latency and outbox throughput on a real file, [`run`].
//!
//! Everything goes through the public `uns_store` API, as a service would use it, on a fresh
//! redb file in a temporary directory under [`StoreBenchOptions::dir`] (put it on the disk the
//! data directory lives on: the figures are mostly the disk's fsync time).
//!
//! 1. Commit latency: [`StoreBenchOptions::commits`] sequential `Store::write` calls, each one
//!    64-byte insert in its own durable commit; p50/p99/max of the time each call takes.
//! 2. Outbox, one per commit: [`StoreBenchOptions::outbox_entries`] entries, each enqueued in
//!    one write and then leased and acked in a second: enqueue+ack pairs per second.
//! 3. Outbox, batched: the same entries, 100 enqueues per write, then 100 leases+acks per
//!    write: what batching buys when a service can group its messages.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tokio::time::Instant;
use uns_store::{Bytes, Outbox, ReadableTx, Store, StoreError, Table, U64};

use crate::report::MachineInfo;

const ROWS: Table<U64, Bytes> = Table::new("bench_rows_v1");
/// Entries per write in the batched outbox figure.
const BATCH: usize = 100;

/// Knobs of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBenchOptions {
    /// Directory to create the temporary store in (its filesystem is what is measured).
    pub dir: PathBuf,
    /// Commits timed for the latency figure.
    pub commits: usize,
    /// Entries for the outbox figures.
    pub outbox_entries: usize,
}

impl Default for StoreBenchOptions {
    /// The system temp dir, 2 000 commits, 2 000 outbox entries (a few seconds on an SSD).
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir(),
            commits: 2_000,
            outbox_entries: 2_000,
        }
    }
}

/// What went wrong in [`run`].
#[derive(Debug, thiserror::Error)]
pub enum StoreBenchError {
    /// The temporary directory could not be created.
    #[error("creating a temporary directory in {path}: {source}")]
    TempDir {
        /// The parent asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A figure came out wrong (the outbox lost or duplicated entries).
    #[error("store benchmark check failed: {0}")]
    Check(String),
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreBenchReport {
    /// When it ran.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The options of the run.
    pub options: StoreBenchOptions,
    /// Filesystem type of `dir` (from `/proc/mounts`), or `unknown`.
    pub filesystem: String,
    /// Median commit latency, µs.
    pub commit_p50_us: f64,
    /// 99th percentile commit latency, µs.
    pub commit_p99_us: f64,
    /// Slowest commit, µs.
    pub commit_max_us: f64,
    /// Sequential commits per second.
    pub commits_per_s: f64,
    /// Outbox enqueue+ack pairs per second, each step its own commit.
    pub outbox_pairs_per_s: f64,
    /// Outbox enqueue+ack pairs per second, 100 per commit.
    pub outbox_batched_pairs_per_s: f64,
}

impl StoreBenchReport {
    /// The report as a short Markdown section.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(md, "## Store (uns-store on redb)\n");
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(md, "- Machine: {}", self.machine.describe());
        let _ = writeln!(
            md,
            "- File in {} (filesystem `{}`); {} commits, {} outbox entries\n",
            self.options.dir.display(),
            self.filesystem,
            self.options.commits,
            self.options.outbox_entries
        );
        let _ = writeln!(md, "| figure | value |");
        let _ = writeln!(md, "|---|---|");
        let _ = writeln!(
            md,
            "| commit latency p50 (one 64 B insert, durable) | {:.0} µs |",
            self.commit_p50_us
        );
        let _ = writeln!(md, "| commit latency p99 | {:.0} µs |", self.commit_p99_us);
        let _ = writeln!(md, "| commit latency max | {:.0} µs |", self.commit_max_us);
        let _ = writeln!(md, "| sequential commits | {:.0} /s |", self.commits_per_s);
        let _ = writeln!(
            md,
            "| outbox enqueue+ack, one commit each | {:.0} pairs/s |",
            self.outbox_pairs_per_s
        );
        let _ = writeln!(
            md,
            "| outbox enqueue+ack, {BATCH} per commit | {:.0} pairs/s |",
            self.outbox_batched_pairs_per_s
        );
        md
    }
}

/// The filesystem type of the mount holding `dir`, from `/proc/mounts`.
fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    std::fs::read_to_string("/proc/mounts")
        .ok()
        .and_then(|mounts| {
            mounts
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split_whitespace();
                    let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
                    dir.starts_with(point)
                        .then(|| (point.len(), kind.to_owned()))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, kind)| kind)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn percentile_us(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs the three figures on a fresh store and returns them.
pub async fn run(options: &StoreBenchOptions) -> Result<StoreBenchReport, StoreBenchError> {
    let temp = tempfile::tempdir_in(&options.dir).map_err(|source| StoreBenchError::TempDir {
        path: options.dir.clone(),
        source,
    })?;
    let path = temp.path().join("bench").join("bench.redb");
    let store = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .map_err(|e| StoreBenchError::Check(format!("opening the store panicked: {e}")))??
    };

    // 1. Commit latency.
    let value = [0x5Au8; 64];
    let mut latencies_us = Vec::with_capacity(options.commits);
    let started = Instant::now();
    for idx in 0..options.commits as u64 {
        let begun = Instant::now();
        store
            .write(move |tx| tx.insert(&ROWS, &idx, &value))
            .await?;
        latencies_us.push(begun.elapsed().as_secs_f64() * 1e6);
    }
    let commits_secs = started.elapsed().as_secs_f64();
    latencies_us.sort_by(f64::total_cmp);

    // 2. Outbox, one commit per step.
    let outbox = Outbox::new("bench");
    let n_entries = options.outbox_entries;
    let started = Instant::now();
    for idx in 0..n_entries as u64 {
        let ob = outbox.clone();
        store
            .write(move |tx| ob.enqueue(tx, &format!("single-{idx}"), &value, idx))
            .await?;
        let ob = outbox.clone();
        let n_acked = store
            .write(move |tx| {
                let leased = ob.lease(tx, idx, 1, 30_000)?;
                let mut n_acked = 0;
                for entry in leased {
                    n_acked += usize::from(ob.ack(tx, entry.id, idx)?);
                }
                Ok(n_acked)
            })
            .await?;
        if n_acked != 1 {
            return Err(StoreBenchError::Check(format!(
                "entry {idx}: {n_acked} acked"
            )));
        }
    }
    let single_secs = started.elapsed().as_secs_f64();

    // 3. Outbox, batched.
    let started = Instant::now();
    let mut n_done = 0usize;
    while n_done < n_entries {
        let n_batch = BATCH.min(n_entries - n_done);
        let first = n_done;
        let ob = outbox.clone();
        store
            .write(move |tx| {
                for idx in first..first + n_batch {
                    ob.enqueue(tx, &format!("batched-{idx}"), &value, 1_000_000)?;
                }
                Ok(())
            })
            .await?;
        let ob = outbox.clone();
        let n_acked = store
            .write(move |tx| {
                let leased = ob.lease(tx, 1_000_000, n_batch, 30_000)?;
                let mut n_acked = 0;
                for entry in leased {
                    n_acked += usize::from(ob.ack(tx, entry.id, 1_000_000)?);
                }
                Ok(n_acked)
            })
            .await?;
        if n_acked != n_batch {
            return Err(StoreBenchError::Check(format!(
                "batch at {first}: {n_acked} of {n_batch} acked"
            )));
        }
        n_done += n_batch;
    }
    let batched_secs = started.elapsed().as_secs_f64();
    let ob = outbox.clone();
    let (stats, n_rows) = store
        .read(move |tx| Ok((ob.stats(tx)?, tx.len(&ROWS)?)))
        .await?;
    if stats.depth != 0 || n_rows != options.commits as u64 {
        return Err(StoreBenchError::Check(format!(
            "left {stats:?}, {n_rows} rows"
        )));
    }
    tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| StoreBenchError::Check(format!("closing the store panicked: {e}")))?;

    Ok(StoreBenchReport {
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        machine: MachineInfo::current(),
        options: options.clone(),
        filesystem: filesystem_of(&options.dir),
        commit_p50_us: percentile_us(&latencies_us, 0.50),
        commit_p99_us: percentile_us(&latencies_us, 0.99),
        commit_max_us: latencies_us.last().copied().unwrap_or(0.0),
        commits_per_s: options.commits as f64 / commits_secs.max(f64::EPSILON),
        outbox_pairs_per_s: n_entries as f64 / single_secs.max(f64::EPSILON),
        outbox_batched_pairs_per_s: n_entries as f64 / batched_secs.max(f64::EPSILON),
    })
}
