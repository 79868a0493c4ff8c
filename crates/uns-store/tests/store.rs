//! uns-store against real redb files in temp dirs: tables, outbox, chain, seen, errors, health.

use std::time::Duration;

use proptest::prelude::*;
use uns_store::{
    Bytes, Chain, EntryState, FailOutcome, Json, KeyCodec, Outbox, ReadableTx, RetryPolicy, Seen,
    Store, StoreError, Str, Table, U64, ValueCodec,
};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct WorkOrder {
    id: String,
    quantity: u32,
}

const ORDERS: Table<Str, Json<WorkOrder>> = Table::new("orders_v1");
const COUNTERS: Table<U64, Bytes> = Table::new("counters_v1");

fn temp_store() -> anyhow::Result<(tempfile::TempDir, Store)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("svc").join("svc.redb"))?;
    Ok((dir, store))
}

fn order(id: &str, quantity: u32) -> WorkOrder {
    WorkOrder {
        id: id.to_owned(),
        quantity,
    }
}

#[tokio::test]
async fn typed_tables_write_read_range_and_survive_reopen() -> anyhow::Result<()> {
    let (dir, store) = temp_store()?;
    store
        .write(|tx| {
            tx.insert(&ORDERS, "wo-2", &order("wo-2", 20))?;
            tx.insert(&ORDERS, "wo-1", &order("wo-1", 10))?;
            tx.insert(&ORDERS, "wo-3", &order("wo-3", 30))?;
            for n in [300u64, 2, 10] {
                tx.insert(&COUNTERS, &n, &n.to_le_bytes())?;
            }
            // The transaction sees its own writes.
            assert_eq!(tx.get(&ORDERS, "wo-1")?, Some(order("wo-1", 10)));
            Ok(())
        })
        .await?;
    let (range, numeric, first, last, n_orders) = store
        .read(|tx| {
            Ok((
                tx.range(&ORDERS, "wo-1".."wo-3")?,
                tx.iter(&COUNTERS)?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
                tx.first(&ORDERS)?,
                tx.last(&COUNTERS)?,
                tx.len(&ORDERS)?,
            ))
        })
        .await?;
    assert_eq!(
        range,
        vec![
            ("wo-1".to_owned(), order("wo-1", 10)),
            ("wo-2".to_owned(), order("wo-2", 20))
        ]
    );
    assert_eq!(numeric, vec![2, 10, 300], "U64 keys sort numerically");
    assert_eq!(first.map(|(k, _)| k).as_deref(), Some("wo-1"));
    assert_eq!(last, Some((300, 300u64.to_le_bytes().to_vec())));
    assert_eq!(n_orders, 3);

    // A failing closure commits nothing.
    let failed = store
        .write(|tx| {
            tx.insert(&ORDERS, "wo-4", &order("wo-4", 40))?;
            Err::<(), _>(StoreError::Closed)
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Closed)));
    // A panicking closure is rolled back and the writer keeps working.
    let panicked = store
        .write(|tx| {
            tx.insert(&ORDERS, "wo-5", &order("wo-5", 50))?;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok(())
        })
        .await;
    assert!(
        matches!(panicked, Err(StoreError::Panicked(ref m)) if m == "boom"),
        "{panicked:?}"
    );
    let removed = store
        .write(|tx| {
            let taken = tx.take(&ORDERS, "wo-3")?;
            let n = tx.remove_range(&COUNTERS, &0..&100)?;
            Ok((taken, n))
        })
        .await?;
    assert_eq!(removed, (Some(order("wo-3", 30)), 2));

    store.close();
    assert!(matches!(
        store.read(|tx| tx.len(&ORDERS)).await,
        Err(StoreError::Closed)
    ));
    let store = Store::open(&dir.path().join("svc").join("svc.redb"))?;
    let keys = store
        .read(|tx| {
            Ok(tx
                .iter(&ORDERS)?
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>())
        })
        .await?;
    assert_eq!(keys, vec!["wo-1".to_owned(), "wo-2".to_owned()]);
    assert_eq!(store.read(|tx| tx.len(&COUNTERS)).await?, 1);
    Ok(())
}

#[test]
fn a_second_open_of_the_same_file_is_one_clear_sentence() -> anyhow::Result<()> {
    let (dir, store) = temp_store()?;
    let path = dir.path().join("svc").join("svc.redb");
    let error = Store::open(&path).expect_err("second open");
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(!message.contains("Cannot acquire lock"), "{message}");
    store.close();
    Store::open(&path)?.close();
    Ok(())
}

#[test]
fn a_read_only_open_reads_a_closed_file_and_is_refused_beside_a_writer() -> anyhow::Result<()> {
    let (dir, store) = temp_store()?;
    let path = dir.path().join("svc").join("svc.redb");
    store.write_blocking(|tx| tx.insert(&ORDERS, "wo-1", &order("wo-1", 5)))?;
    // The service holds the file: one clear sentence naming it.
    let error = uns_store::ReadOnlyStore::open(&path).expect_err("beside a writer");
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()));
    store.close();
    let before = std::fs::read(&path)?;
    let read_only = uns_store::ReadOnlyStore::open(&path)?;
    let found = read_only.read_blocking(|tx| tx.get(&ORDERS, "wo-1"))?;
    assert_eq!(found, Some(order("wo-1", 5)));
    // Two read-only handles share the file; neither writes to it.
    let second = uns_store::ReadOnlyStore::open(&path)?;
    assert_eq!(second.read_blocking(|tx| tx.len(&ORDERS))?, 1);
    drop((read_only, second));
    assert_eq!(
        std::fs::read(&path)?,
        before,
        "a read-only open changed the file"
    );
    // A missing file is an error, and is not created.
    let missing = dir.path().join("nope.redb");
    let error = uns_store::ReadOnlyStore::open(&missing).expect_err("missing");
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    assert!(!missing.exists());
    Ok(())
}

#[test]
fn a_file_from_a_newer_format_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("svc.redb");
    {
        let db = redb::Database::create(&path)?;
        let txn = db.begin_write()?;
        {
            let mut meta =
                txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new("uns_store_meta"))?;
            meta.insert(b"format".as_slice(), 99u32.to_le_bytes().as_slice())?;
        }
        txn.commit()?;
    }
    let error = Store::open(&path).expect_err("newer format");
    assert!(
        matches!(
            error,
            StoreError::NewerFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("newer `uns` binary"), "{error}");
    Ok(())
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(1_000),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts,
        seed: 7,
    }
}

#[tokio::test]
async fn lease_expiry_redelivers_failures_back_off_then_dead_letter_and_replay()
-> anyhow::Result<()> {
    let (_dir, store) = temp_store()?;
    let outbox = Outbox::new("erp");
    let ob = outbox.clone();
    let enqueued = store
        .write(move |tx| ob.enqueue(tx, "wo-1/start", b"{}", 1_000))
        .await?;
    assert!(enqueued.new);
    let ob = outbox.clone();
    assert_eq!(store.read(move |tx| ob.next_due_ms(tx)).await?, Some(1_000));

    // Lease, then let the lease run out: redelivered, second attempt.
    let ob = outbox.clone();
    let first = store.write(move |tx| ob.lease(tx, 1_000, 10, 500)).await?;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].attempts, first[0].state), (1, EntryState::Leased));
    let ob = outbox.clone();
    assert!(
        store
            .write(move |tx| ob.lease(tx, 1_499, 10, 500))
            .await?
            .is_empty()
    );
    let ob = outbox.clone();
    let second = store.write(move |tx| ob.lease(tx, 1_500, 10, 500)).await?;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempts, 2);
    let id = second[0].id;

    // Attempt 2 fails: backoff 100 ms * 2^(2-1) = 200 ms.
    let ob = outbox.clone();
    let outcome = store
        .write(move |tx| ob.fail(tx, id, "ERP said 503", 1_600, &policy(3)))
        .await?;
    assert_eq!(
        outcome,
        FailOutcome::Retry {
            next_attempt_ms: 1_800
        }
    );
    let ob = outbox.clone();
    assert!(
        store
            .write(move |tx| ob.lease(tx, 1_799, 10, 500))
            .await?
            .is_empty()
    );
    let ob = outbox.clone();
    let third = store.write(move |tx| ob.lease(tx, 1_800, 10, 500)).await?;
    assert_eq!(third[0].attempts, 3);
    assert_eq!(third[0].last_error.as_deref(), Some("ERP said 503"));

    // Attempt 3 of 3 fails: dead letter, nothing due any more.
    let ob = outbox.clone();
    let outcome = store
        .write(move |tx| ob.fail(tx, id, "ERP said 400", 1_900, &policy(3)))
        .await?;
    assert_eq!(outcome, FailOutcome::DeadLettered);
    let ob = outbox.clone();
    let (stats, dead, next_due) = store
        .read(move |tx| Ok((ob.stats(tx)?, ob.dead_letters(tx)?, ob.next_due_ms(tx)?)))
        .await?;
    assert_eq!(
        (stats.depth, stats.dead, stats.oldest_enqueued_ms),
        (0, 1, None)
    );
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].state), (id, EntryState::Dead));
    assert_eq!(dead[0].last_error.as_deref(), Some("ERP said 400"));
    assert_eq!(next_due, None);
    let ob = outbox.clone();
    assert!(
        store
            .write(move |tx| ob.lease(tx, 100_000, 10, 500))
            .await?
            .is_empty()
    );

    // The key is still known: enqueueing it again adds nothing.
    let ob = outbox.clone();
    let duplicate = store
        .write(move |tx| ob.enqueue(tx, "wo-1/start", b"{}", 2_000))
        .await?;
    assert_eq!((duplicate.id, duplicate.new), (id, false));

    // Replay: a fresh entry with the same id, due now, and it can be acked.
    let ob = outbox.clone();
    store.write(move |tx| ob.replay(tx, id, 5_000)).await?;
    let ob = outbox.clone();
    let replayed = store.write(move |tx| ob.lease(tx, 5_000, 10, 500)).await?;
    assert_eq!(replayed.len(), 1);
    assert_eq!((replayed[0].id, replayed[0].attempts), (id, 1));
    let ob = outbox.clone();
    assert!(store.write(move |tx| ob.ack(tx, id, 5_100)).await?);
    let ob = outbox.clone();
    assert!(
        !store.write(move |tx| ob.ack(tx, id, 5_200)).await?,
        "a second ack finds nothing"
    );
    let ob = outbox.clone();
    let stats = store.read(move |tx| ob.stats(tx)).await?;
    assert_eq!((stats.depth, stats.dead), (0, 0));
    // Failing or replaying an entry that is not there is a typed error.
    let ob = outbox.clone();
    let error = store
        .write(move |tx| ob.replay(tx, id, 6_000))
        .await
        .expect_err("replay twice");
    assert!(
        matches!(error, StoreError::UnknownEntry { id: unknown, .. } if unknown == id.0),
        "{error:?}"
    );

    // A key acked long ago can be forgotten and enqueued again.
    let ob = outbox.clone();
    assert_eq!(store.write(move |tx| ob.prune_keys(tx, 5_101)).await?, 1);
    let ob = outbox.clone();
    let fresh = store
        .write(move |tx| ob.enqueue(tx, "wo-1/start", b"{}", 7_000))
        .await?;
    assert!(fresh.new && fresh.id != id, "{fresh:?}");
    Ok(())
}

#[tokio::test]
async fn lease_hands_out_oldest_due_first_and_at_most_max() -> anyhow::Result<()> {
    let (_dir, store) = temp_store()?;
    let outbox = Outbox::new("erp");
    let other = Outbox::new("mes");
    let (ob, ot) = (outbox.clone(), other.clone());
    store
        .write(move |tx| {
            for n in 0..5u64 {
                ob.enqueue(tx, &format!("k{n}"), &[n as u8], 100 - n * 10)?;
            }
            ot.enqueue(tx, "k0", b"other outbox", 0)?;
            Ok(())
        })
        .await?;
    let ob = outbox.clone();
    let leased = store.write(move |tx| ob.lease(tx, 100, 3, 1_000)).await?;
    let keys: Vec<_> = leased.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["k4", "k3", "k2"]);
    let (ob, ot) = (outbox.clone(), other.clone());
    let (stats, other_stats) = store
        .read(move |tx| Ok((ob.stats(tx)?, ot.stats(tx)?)))
        .await?;
    assert_eq!((stats.depth, stats.oldest_enqueued_ms), (5, Some(100)));
    assert_eq!(
        (other_stats.depth, other_stats.oldest_enqueued_ms),
        (1, Some(0))
    );
    Ok(())
}

#[tokio::test]
async fn leases_of_a_dead_process_are_released_at_start() -> anyhow::Result<()> {
    let (dir, store) = temp_store()?;
    let outbox = Outbox::new("erp");
    let ob = outbox.clone();
    store
        .write(move |tx| {
            for n in 0..4u64 {
                ob.enqueue(tx, &format!("k{n}"), &[n as u8], 100)?;
            }
            Ok(())
        })
        .await?;
    // Three leased for a minute, then the process "dies": the store is reopened.
    let ob = outbox.clone();
    let leased = store.write(move |tx| ob.lease(tx, 100, 3, 60_000)).await?;
    assert_eq!(leased.len(), 3);
    drop(store);
    let store = Store::open(&dir.path().join("svc").join("svc.redb"))?;
    let ob = outbox.clone();
    // Before the release only the one never leased is due; after it, all four, attempts kept.
    let due_before = store.write(move |tx| ob.lease(tx, 200, 10, 0)).await?;
    assert_eq!(due_before.len(), 1, "{due_before:?}");
    let ob = outbox.clone();
    let released = store.write(move |tx| ob.release_leases(tx, 300)).await?;
    assert_eq!(released, 4, "three from the dead process, one just leased");
    let ob = outbox.clone();
    let due_after = store.write(move |tx| ob.lease(tx, 300, 10, 60_000)).await?;
    let mut keys: Vec<_> = due_after
        .iter()
        .map(|e| (e.key.as_str(), e.attempts))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, [("k0", 2), ("k1", 2), ("k2", 2), ("k3", 2)]);
    Ok(())
}

#[test]
fn retry_policy_backs_off_caps_and_jitters_deterministically() {
    let mut p = policy(10);
    assert_eq!(
        (1..=6)
            .map(|attempt| p.delay_ms(attempt, 1))
            .collect::<Vec<_>>(),
        [100, 200, 400, 800, 1_000, 1_000]
    );
    p.jitter = 0.5;
    for attempt in 1..=6 {
        let base = policy(10).delay_ms(attempt, 1);
        let jittered = p.delay_ms(attempt, 1);
        assert_eq!(jittered, p.delay_ms(attempt, 1), "same seed, same delay");
        assert!(
            jittered <= base && jittered >= base / 2,
            "{attempt}: {jittered} vs {base}"
        );
    }
    let spread: std::collections::BTreeSet<_> = (0..50).map(|id| p.delay_ms(3, id)).collect();
    assert!(spread.len() > 10, "entries spread out: {spread:?}");
    let reseeded = RetryPolicy {
        seed: 8,
        ..p.clone()
    };
    assert!((0..50).any(|id| reseeded.delay_ms(3, id) != p.delay_ms(3, id)));
}

/// Flips one byte of the stored value of `seq` in the redb file, behind the store's back.
fn tamper(path: &std::path::Path, chain: &str, seq: u64, byte_idx: usize) -> anyhow::Result<()> {
    use redb::ReadableTable;
    let db = redb::Database::create(path)?;
    let txn = db.begin_write()?;
    {
        let name = format!("chain.{chain}.records_v1");
        let mut table = txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(&name))?;
        let key = seq.to_be_bytes();
        let mut value = table
            .get(key.as_slice())?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| anyhow::anyhow!("no record {seq}"))?;
        value[byte_idx] ^= 0x01;
        table.insert(key.as_slice(), value.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

#[tokio::test]
async fn chain_verify_names_exactly_the_altered_record() -> anyhow::Result<()> {
    // Byte offsets in a record value: 0 version, 1..9 time, 9..41 prev_hash, 41..73 hash, 73.. payload.
    for (byte_idx, why) in [
        (80, "hashes to"),
        (3, "hashes to"),
        (20, "prev_hash"),
        (50, "hashes to"),
        (0, "cannot be read"),
    ] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("genealogy.redb");
        let store = Store::open(&path)?;
        let chain = Chain::new("genealogy");
        let c = chain.clone();
        let records = store
            .write(move |tx| {
                (1..=5u64)
                    .map(|n| {
                        c.append(
                            tx,
                            format!("lot-{n} consumed into batch-{n}").as_bytes(),
                            1_000 * n,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(records[0].prev_hash, [0u8; 32]);
        assert!(records.windows(2).all(|w| w[1].prev_hash == w[0].hash));
        let c = chain.clone();
        let report = store.read(move |tx| c.verify(tx)).await?;
        assert_eq!((report.n_records, report.first_bad), (5, None));
        store.close();

        tamper(&path, "genealogy", 3, byte_idx)?;

        let store = Store::open(&path)?;
        let c = chain.clone();
        let report = store.read(move |tx| c.verify(tx)).await?;
        let bad = report.first_bad.expect("tampering is detected");
        assert_eq!(
            (bad.seq, report.n_records),
            (3, 2),
            "byte {byte_idx}: {bad:?}"
        );
        assert!(bad.reason.contains(why), "byte {byte_idx}: {}", bad.reason);
        store.close();
    }
    Ok(())
}

#[tokio::test]
async fn chain_continues_after_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("g.redb");
    let chain = Chain::new("g");
    let store = Store::open(&path)?;
    let c = chain.clone();
    let first = store.write(move |tx| c.append(tx, b"a", 1)).await?;
    store.close();
    let store = Store::open(&path)?;
    let c = chain.clone();
    let second = store.write(move |tx| c.append(tx, b"b", 2)).await?;
    assert_eq!((second.seq, second.prev_hash), (2, first.hash));
    let c = chain.clone();
    let (report, listed) = store
        .read(move |tx| Ok((c.verify(tx)?, c.iter(tx, 2, 10)?)))
        .await?;
    assert_eq!((report.n_records, report.first_bad), (2, None));
    assert_eq!(listed, vec![second]);
    Ok(())
}

#[tokio::test]
async fn duplicate_event_id_is_applied_once_across_a_reopen() -> anyhow::Result<()> {
    const TOTALS: Table<Str, Json<u64>> = Table::new("totals_v1");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("oee.redb");
    let seen = Seen::new("oee");
    // Applies a count event once: the total and the seen id commit together.
    let apply = |store: Store, seen: Seen, event_id: &'static str, count: u64, now_ms: u64| async move {
        store
            .write(move |tx| {
                if !seen.insert(tx, event_id, now_ms)? {
                    return Ok(false);
                }
                let total = tx.get(&TOTALS, "line-1")?.unwrap_or(0);
                tx.insert(&TOTALS, "line-1", &(total + count))?;
                Ok(true)
            })
            .await
    };
    let store = Store::open(&path)?;
    assert!(apply(store.clone(), seen.clone(), "0190-a", 5, 1_000).await?);
    assert!(!apply(store.clone(), seen.clone(), "0190-a", 5, 1_001).await?);
    assert!(apply(store.clone(), seen.clone(), "0190-b", 7, 2_000).await?);
    store.close();

    let store = Store::open(&path)?;
    assert!(
        !apply(store.clone(), seen.clone(), "0190-a", 5, 3_000).await?,
        "seen survives a reopen"
    );
    assert_eq!(store.read(|tx| tx.get(&TOTALS, "line-1")).await?, Some(12));
    let s = seen.clone();
    assert_eq!(
        store.read(move |tx| s.seen_ms(tx, "0190-a")).await?,
        Some(1_000)
    );

    // Pruning by age forgets only the old ids.
    let s = seen.clone();
    assert_eq!(store.write(move |tx| s.prune(tx, 1_500)).await?, 1);
    let s = seen.clone();
    let (a, b, n) = store
        .read(move |tx| {
            Ok((
                s.contains(tx, "0190-a")?,
                s.contains(tx, "0190-b")?,
                s.len(tx)?,
            ))
        })
        .await?;
    assert_eq!((a, b, n), (false, true, 1));
    Ok(())
}

#[tokio::test]
async fn a_failed_commit_degrades_then_recovers_by_itself() -> anyhow::Result<()> {
    let (_dir, store) = temp_store()?;
    let mut health = store.watch_health();
    store
        .write(|tx| tx.insert(&ORDERS, "wo-1", &order("wo-1", 1)))
        .await?;
    store.inject_disk_full(2);
    for _ in 0..2 {
        let error = store
            .write(|tx| tx.insert(&ORDERS, "wo-2", &order("wo-2", 2)))
            .await
            .expect_err("disk full");
        assert!(error.is_io(), "{error:?}");
    }
    assert!(health.has_changed()?);
    let degraded = health.borrow_and_update().clone();
    assert!(
        degraded
            .degraded
            .as_deref()
            .is_some_and(|r| r.contains("commit")),
        "{degraded:?}"
    );
    assert_eq!(degraded.n_failed_writes, 2);
    // Nothing of the failed writes is visible; the earlier commit is.
    assert_eq!(store.read(|tx| tx.len(&ORDERS)).await?, 1);
    // Space is back: the next write reopens the file and succeeds; health clears.
    store
        .write(|tx| tx.insert(&ORDERS, "wo-2", &order("wo-2", 2)))
        .await?;
    assert_eq!(store.health().degraded, None);
    assert_eq!(store.read(|tx| tx.len(&ORDERS)).await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_backup_taken_while_writing_is_a_consistent_store() -> anyhow::Result<()> {
    let (dir, store) = temp_store()?;
    let outbox = Outbox::new("erp");
    let ob = outbox.clone();
    store
        .write(move |tx| {
            tx.insert(&ORDERS, "wo-1", &order("wo-1", 1))?;
            ob.enqueue(tx, "k1", b"m1", 1)?;
            Ok(())
        })
        .await?;
    let dest = dir.path().join("backup").join("svc.redb");
    std::fs::create_dir_all(dest.parent().unwrap_or(dir.path()))?;
    // Writers keep going while the backup runs; the backup is one snapshot.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..50u32 {
                let id = format!("live-{n}");
                store
                    .write(move |tx| tx.insert(&ORDERS, &id.clone(), &order(&id, n)))
                    .await?;
            }
            Ok::<_, StoreError>(())
        })
    };
    let n_rows = store.backup(&dest).await?;
    writer.await??;
    assert!(n_rows >= 6, "{n_rows}");
    assert!(
        store.backup(&dest).await.is_err(),
        "an existing backup is not overwritten"
    );
    let restored = Store::open(&dest)?;
    let ob = outbox.clone();
    let (first, stats, n_orders) = restored
        .read(move |tx| Ok((tx.get(&ORDERS, "wo-1")?, ob.stats(tx)?, tx.len(&ORDERS)?)))
        .await?;
    assert_eq!(first, Some(order("wo-1", 1)));
    assert_eq!(stats.depth, 1);
    assert!((1..=51).contains(&n_orders), "{n_orders}");
    Ok(())
}

#[test]
fn decode_errors_name_the_table() -> anyhow::Result<()> {
    let (_dir, store) = temp_store()?;
    const RAW: Table<Str, Bytes> = Table::new("orders_v1");
    store.write_blocking(|tx| tx.insert(&RAW, "wo-1", b"not json"))?;
    let error = store
        .read_blocking(|tx| tx.get(&ORDERS, "wo-1"))
        .expect_err("bad json");
    assert!(
        matches!(error, StoreError::Decode { ref table, what: "value", .. } if table == "orders_v1"),
        "{error:?}"
    );
    Ok(())
}

/// Table test: each key codec's bytes and order.
#[test]
fn key_codecs_encode_as_documented() {
    assert_eq!(&*Str::encode("wo-1"), b"wo-1");
    assert_eq!(&*U64::encode(&0x0102), &[0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(&*<Bytes as KeyCodec>::encode(&[9, 8]), &[9, 8]);
    assert!(U64::decode(&[1, 2, 3]).is_err());
    assert!(Str::decode(&[0xff]).is_err());
    assert_eq!(
        &*Json::<WorkOrder>::encode(&order("a", 1)).unwrap_or_default(),
        br#"{"id":"a","quantity":1}"#
    );
}

proptest! {
    #[test]
    fn u64_keys_roundtrip_and_keep_order(a: u64, b: u64) {
        prop_assert_eq!(U64::decode(&U64::encode(&a)).ok(), Some(a));
        prop_assert_eq!(a.cmp(&b), U64::encode(&a).cmp(&U64::encode(&b)));
    }

    #[test]
    fn str_keys_roundtrip_and_keep_order(a in ".*", b in ".*") {
        prop_assert_eq!(Str::decode(&Str::encode(&a)).ok(), Some(a.clone()));
        prop_assert_eq!(a.as_bytes().cmp(b.as_bytes()), Str::encode(&a).cmp(&Str::encode(&b)));
    }

    #[test]
    fn bytes_and_json_values_roundtrip(raw in proptest::collection::vec(any::<u8>(), 0..64), id in ".*", quantity: u32) {
        prop_assert_eq!(<Bytes as ValueCodec>::decode(&<Bytes as ValueCodec>::encode(&raw).unwrap_or_default()).ok(), Some(raw.clone()));
        let value = WorkOrder { id, quantity };
        let encoded = Json::<WorkOrder>::encode(&value).map(|c| c.into_owned()).unwrap_or_default();
        prop_assert_eq!(Json::<WorkOrder>::decode(&encoded).ok(), Some(value));
    }
}
