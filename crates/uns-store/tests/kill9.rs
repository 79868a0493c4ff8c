//! `kill -9` between enqueue and ack leaves the outbox entry, exactly once.
//!
//! One binary plays both parts: run normally it is the parent, which re-executes itself with
//! `UNS_STORE_KILL9_CHILD=<file>` set on the child's `Command`. The child enqueues and leases
//! an entry, says so on stdout, and blocks reading stdin until the parent SIGKILLs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};
use uns_store::{Outbox, Store, StoreError};

const CHILD_ENV: &str = "UNS_STORE_KILL9_CHILD";
const ENQUEUED_MS: u64 = 1_000;
const LEASE_MS: u64 = 30_000;

fn main() -> anyhow::Result<()> {
    match std::env::var_os(CHILD_ENV) {
        Some(path) => child(Path::new(&path)),
        None => parent(),
    }
}

fn child(path: &Path) -> anyhow::Result<()> {
    let store = Store::open(path)?;
    let outbox = Outbox::new("erp");
    let enqueued = store.write_blocking(|tx| {
        let enqueued = outbox.enqueue(tx, "order-1", b"payload-1", ENQUEUED_MS)?;
        Ok(enqueued)
    })?;
    // Leased but never acked: the crash happens in the middle of a delivery.
    let leased = store.write_blocking(|tx| outbox.lease(tx, ENQUEUED_MS, 10, LEASE_MS))?;
    ensure!(leased.len() == 1, "child leased {} entries", leased.len());
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "enqueued {}", enqueued.id)?;
    stdout.flush()?;
    // Block until killed (the parent never writes or closes stdin before SIGKILL).
    let mut buf = [0u8; 1];
    let _ = std::io::stdin().read(&mut buf);
    bail!("child was not killed")
}

fn parent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("erp").join("erp.redb");
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning the child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    // Blocks until the child reports (or dies: then the line is empty and the test fails).
    BufReader::new(stdout).read_line(&mut line)?;
    ensure!(line.starts_with("enqueued "), "child said {line:?}");

    // While the child holds the file, opening it fails with one clear sentence.
    match Store::open(&path) {
        Err(error @ StoreError::Locked { .. }) => {
            let message = error.to_string();
            ensure!(message.contains(&path.display().to_string()), "{message}");
            ensure!(message.contains("data directory"), "{message}");
            ensure!(!message.contains("Cannot acquire lock"), "{message}");
        }
        Err(other) => bail!("expected Locked, got {other:#}"),
        Ok(_) => bail!("opened a file another process holds"),
    }

    child.kill()?; // SIGKILL on Unix
    let status = child.wait()?;
    ensure!(status.signal() == Some(9), "child ended with {status:?}");

    let store = Store::open(&path)?;
    let outbox = Outbox::new("erp");
    let (stats, listed) =
        store.read_blocking(|tx| Ok((outbox.stats(tx)?, outbox.list(tx, 100)?)))?;
    ensure!(stats.depth == 1 && stats.dead == 0, "{stats:?}");
    ensure!(stats.oldest_enqueued_ms == Some(ENQUEUED_MS), "{stats:?}");
    ensure!(listed.len() == 1, "{listed:?}");
    ensure!(
        listed[0].key == "order-1" && listed[0].payload == b"payload-1",
        "{listed:?}"
    );

    // Enqueuing the same key again after the crash adds nothing.
    let again = store.write_blocking(|tx| outbox.enqueue(tx, "order-1", b"payload-1", 2_000))?;
    ensure!(!again.new && again.id == listed[0].id, "{again:?}");

    // The child's lease is still running; it is redelivered when it ends, once.
    let early =
        store.write_blocking(|tx| outbox.lease(tx, ENQUEUED_MS + LEASE_MS - 1, 10, LEASE_MS))?;
    ensure!(
        early.is_empty(),
        "redelivered before the lease ended: {early:?}"
    );
    let redelivered =
        store.write_blocking(|tx| outbox.lease(tx, ENQUEUED_MS + LEASE_MS, 10, LEASE_MS))?;
    ensure!(
        redelivered.len() == 1 && redelivered[0].attempts == 2,
        "{redelivered:?}"
    );
    let acked = store.write_blocking(|tx| outbox.ack(tx, redelivered[0].id, 40_000))?;
    ensure!(acked, "ack found no entry");
    let stats = store.read_blocking(|tx| outbox.stats(tx))?;
    ensure!(stats.depth == 0, "{stats:?}");
    std::io::stdout()
        .lock()
        .write_all(b"kill9: entry survived SIGKILL and was delivered once\n")?;
    Ok(())
}
