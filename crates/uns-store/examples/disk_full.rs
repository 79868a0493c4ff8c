//! Manual check of the full-disk path against a real small filesystem (not run in CI: it
//! needs a tmpfs, which needs root). As root:
//!
//! ```text
//! mkdir -p /tmp/uns-full && mount -t tmpfs -o size=2m tmpfs /tmp/uns-full
//! cargo run -p uns-store --example disk_full -- /tmp/uns-full
//! umount /tmp/uns-full
//! ```
//!
//! It commits rows until the disk is full, checks that the failed write is an I/O error, that
//! the store says `degraded` and that every earlier commit is intact, frees the space, and
//! checks that the next write succeeds without reopening anything by hand.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use uns_store::{Bytes, ReadableTx, Store, Table, U64};

const ROWS: Table<U64, Bytes> = Table::new("rows_v1");

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: disk_full DIR (a small tmpfs)")?,
    );
    let path = dir.join("svc").join("svc.redb");
    let filler_path = dir.join("filler");
    let store = Store::open(&path)?;
    let value = vec![0xA5u8; 16 * 1024];
    let mut n_committed = 0u64;
    // Leave the filesystem nearly full with a filler file so the store hits the limit soon.
    let mut filler = std::fs::File::create(&filler_path)?;
    while filler.write_all(&[0u8; 4096]).is_ok() {}
    drop(filler);
    // Free 256 KiB for the store to grow into.
    let len = std::fs::metadata(&filler_path)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler_path)?
        .set_len(len.saturating_sub(256 * 1024))?;
    let error = loop {
        let key = n_committed;
        let row = value.clone();
        match store.write_blocking(|tx| tx.insert(&ROWS, &key, &row)) {
            Ok(()) => n_committed += 1,
            Err(error) => break error,
        }
        if n_committed > 10_000 {
            bail!("the disk never filled up");
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "after {n_committed} commits: {error}")?;
    ensure!(error.is_io(), "expected an I/O error, got {error:?}");
    let health = store.health();
    ensure!(health.degraded.is_some(), "{health:?}");
    writeln!(out, "health: {health:?}")?;
    // Still full: writes keep failing, nothing breaks for good.
    let again = store.write_blocking(|tx| tx.insert(&ROWS, &u64::MAX, &value));
    writeln!(
        out,
        "while still full: {:?}",
        again.as_ref().map_err(ToString::to_string)
    )?;

    std::fs::remove_file(&filler_path)?;
    let key = n_committed;
    store.write_blocking(|tx| tx.insert(&ROWS, &key, &value))?;
    let n_rows = store.read_blocking(|tx| tx.len(&ROWS))?;
    let health = store.health();
    writeln!(
        out,
        "space freed: the next write committed; {n_rows} rows; health {health:?}"
    )?;
    ensure!(health.degraded.is_none(), "{health:?}");
    let expected = n_committed + 1 + u64::from(again.is_ok());
    ensure!(n_rows == expected, "{n_rows} rows, expected {expected}");
    store.close();
    let store = Store::open(&path)?;
    let n_rows = store.read_blocking(|tx| tx.len(&ROWS))?;
    ensure!(
        n_rows == expected,
        "after reopen {n_rows} rows, expected {expected}"
    );
    writeln!(out, "reopened: {n_rows} rows, all there")?;
    Ok(())
}
