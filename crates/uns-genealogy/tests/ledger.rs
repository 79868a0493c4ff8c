//! The ledger on a real redb file: rules, idempotency across a restart, tamper detection, trace.

mod common;

use std::collections::BTreeSet;

use common::*;
use uns_genealogy::{
    BalanceStatus, Decision, Ledger, LedgerError, Outcome, Refusal, StatusChangeRequest, TraceQuery,
};
use uns_model::payload::{GenealogyKind, LotStatus};
use uuid::Uuid;

fn open(dir: &tempfile::TempDir) -> Ledger {
    Ledger::open(&dir.path().join("genealogy.redb"), tolerances()).expect("opens")
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn lots_of(trace: &uns_genealogy::Trace) -> BTreeSet<String> {
    trace.lot_ids().into_iter().map(str::to_owned).collect()
}

async fn qty(ledger: &Ledger, lot: &str) -> f64 {
    ledger
        .lot(&id(lot))
        .await
        .expect("reads")
        .unwrap_or_else(|| panic!("lot {lot} exists"))
        .lot
        .quantity
        .qty
}

fn refusal(result: Result<Outcome, LedgerError>) -> Refusal {
    match result {
        Err(LedgerError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn trace_answers_the_recall_scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = open(&dir);
    build(&ledger).await;

    // Forward from a raw lot: every lot made from flour-1.
    let forward = ledger
        .trace(TraceQuery::forward(id("flour-1")))
        .await?
        .expect("known lot");
    assert_eq!(
        lots_of(&forward),
        set(&[
            "flour-1",
            "dough-1",
            "dough-1.a",
            "dough-1.b",
            "bread-1",
            "bread-2",
            "pallet-1"
        ])
    );
    assert!(!forward.truncated);
    // Backward from the finished lot: the corrected flour-3, never flour-2.
    let backward = ledger
        .trace(TraceQuery::backward(id("pallet-1")))
        .await?
        .expect("known lot");
    assert_eq!(
        lots_of(&backward),
        set(&[
            "pallet-1",
            "bread-1",
            "bread-2",
            "dough-1.a",
            "dough-1.b",
            "dough-1",
            "flour-1",
            "sugar-1",
            "flour-3"
        ])
    );
    // The rework loop is one self edge, walked once.
    let self_edges = backward
        .edges
        .iter()
        .filter(|e| e.from == e.to && e.from.as_str() == "pallet-1")
        .count();
    assert_eq!(self_edges, 1);
    // Mass balance: wo-2 loses 25 % against bread's 15 %: flagged; the others are within.
    let flagged: Vec<_> = backward
        .flagged()
        .map(|t| t.wo_id.as_ref().map(|w| w.as_str().to_owned()))
        .collect();
    assert_eq!(flagged, vec![Some("wo-2".to_owned())]);
    let wo1 = backward
        .transforms
        .iter()
        .find(|t| t.wo_id.as_ref().is_some_and(|w| w.as_str() == "wo-1"))
        .expect("wo-1 in the trace");
    assert_eq!(wo1.status, BalanceStatus::Ok);
    assert!(
        (wo1.tolerance - 0.02).abs() < 1e-12,
        "dough uses the default"
    );
    // Depth 1 backward: the pallet's direct inputs only.
    let shallow = ledger
        .trace(TraceQuery {
            depth: Some(1),
            ..TraceQuery::backward(id("pallet-1"))
        })
        .await?
        .expect("known lot");
    assert_eq!(lots_of(&shallow), set(&["pallet-1", "bread-1", "bread-2"]));
    assert!(shallow.truncated);
    let depth2 = ledger
        .trace(TraceQuery {
            depth: Some(2),
            ..TraceQuery::backward(id("pallet-1"))
        })
        .await?
        .expect("known lot");
    assert_eq!(
        lots_of(&depth2),
        set(&[
            "pallet-1",
            "bread-1",
            "bread-2",
            "dough-1.a",
            "dough-1.b",
            "flour-3"
        ])
    );
    // Quantities, statuses, shipment.
    assert_eq!(
        qty(&ledger, "flour-2").await,
        100.0,
        "the wrong scan was undone"
    );
    assert_eq!(qty(&ledger, "flour-3").await, 90.0);
    let pallet = ledger.lot(&id("pallet-1")).await?.expect("exists");
    assert_eq!(pallet.lot.status, LotStatus::Shipped);
    assert_eq!(pallet.lot.quantity.qty, 0.0);
    assert_eq!(pallet.shipments[0].customer.as_deref(), Some("Kunde Nord"));
    let dough = ledger.lot(&id("dough-1")).await?.expect("exists");
    assert_eq!(dough.lot.status, LotStatus::Consumed);
    let raw = ledger.lot(&id("flour-1")).await?.expect("exists");
    assert_eq!(raw.lot.erp_ref.as_deref(), Some("MUEHLE-77"));
    Ok(())
}

#[tokio::test]
async fn as_of_shows_the_graph_before_the_correction() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = open(&dir);
    build(&ledger).await;
    let forward_flour2 = |as_of| TraceQuery {
        as_of,
        ..TraceQuery::forward(id("flour-2"))
    };
    // Now: flour-2 went nowhere (the wo-3 scan was corrected).
    let now = ledger.trace(forward_flour2(None)).await?.expect("known");
    assert_eq!(lots_of(&now), set(&["flour-2"]));
    // At minute 45, before the correction at 50: flour-2 was in bread-2, the merge had not happened.
    let before = ledger
        .trace(forward_flour2(Some(at(45))))
        .await?
        .expect("known");
    assert_eq!(lots_of(&before), set(&["flour-2", "bread-2"]));
    // After the correction (minute 55): as now.
    let after = ledger
        .trace(forward_flour2(Some(at(55))))
        .await?
        .expect("known");
    assert_eq!(lots_of(&after), set(&["flour-2"]));
    // flour-3 the other way round.
    let flour3_before = ledger
        .trace(TraceQuery {
            as_of: Some(at(45)),
            ..TraceQuery::forward(id("flour-3"))
        })
        .await?
        .expect("known");
    assert_eq!(lots_of(&flour3_before), set(&["flour-3"]));
    let flour3_now = ledger
        .trace(TraceQuery::forward(id("flour-3")))
        .await?
        .expect("known");
    assert_eq!(
        lots_of(&flour3_now),
        set(&["flour-3", "bread-2", "pallet-1"])
    );
    // The original stays in the log, and so does its correction.
    let log = ledger.log(1, 100).await?;
    assert_eq!(log.len(), 12);
    Ok(())
}

#[tokio::test]
async fn each_rule_is_refused_with_a_reason_and_changes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = open(&dir);
    let scenario = build(&ledger).await;
    ledger
        .apply(
            site(),
            receive(90, "yeast-1", "yeast", 5.0, "HEFE-1"),
            now(90),
        )
        .await?;
    ledger
        .decide(
            StatusChangeRequest {
                event_id: Uuid::now_v7(),
                lot: id("yeast-1"),
                decision: Decision::Quarantine,
                reason: Some("supplier CoA missing".to_owned()),
                by: Some("qa-anna".to_owned()),
            },
            now(91),
        )
        .await?;
    let records_before = ledger.n_records().await?;
    let lots_before = ledger.lots(None, 1000).await?;

    let mut refusals = Vec::new();
    // A quarantined lot cannot be consumed ...
    refusals.push(refusal(
        ledger
            .apply(
                site(),
                transform(
                    92,
                    "wo-9",
                    vec![kg("yeast-1", 1.0)],
                    vec![new_kg("dough-9", "dough", 1.0)],
                ),
                now(92),
            )
            .await,
    ));
    // ... nor shipped.
    refusals.push(refusal(
        ledger
            .apply(
                site(),
                event(
                    93,
                    GenealogyKind::Ship {
                        lot: kg("yeast-1", 1.0),
                        customer: None,
                        to: None,
                    },
                ),
                now(93),
            )
            .await,
    ));
    // Quantities never go negative.
    refusals.push(refusal(
        ledger
            .apply(
                site(),
                transform(
                    94,
                    "wo-9",
                    vec![kg("flour-1", 41.0)],
                    vec![new_kg("dough-9", "dough", 41.0)],
                ),
                now(94),
            )
            .await,
    ));
    // Unknown input lots are refused, not invented.
    refusals.push(refusal(
        ledger
            .apply(
                site(),
                transform(
                    95,
                    "wo-9",
                    vec![kg("flour-1", 1.0), kg("salt-404", 1.0)],
                    vec![new_kg("dough-9", "dough", 2.0)],
                ),
                now(95),
            )
            .await,
    ));
    // A new output lot needs its material.
    refusals.push(refusal(
        ledger
            .apply(
                site(),
                transform(
                    96,
                    "wo-9",
                    vec![kg("flour-1", 1.0)],
                    vec![kg("dough-9", 1.0)],
                ),
                now(96),
            )
            .await,
    ));
    // A correction of an unknown event, and a second correction of the same one.
    let mut unknown = receive(97, "flour-9", "flour", 1.0, "X");
    unknown.header = unknown
        .header
        .correcting(Uuid::now_v7(), "typo in the quantity");
    refusals.push(refusal(ledger.apply(site(), unknown, now(97)).await));
    let mut again = scenario.corrected_t3.clone();
    again.header.event_id = Uuid::now_v7();
    refusals.push(refusal(ledger.apply(site(), again, now(98)).await));
    // Undoing the shipment's source event would take back bread that left: refused.
    let mut undo_merge = event(99, GenealogyKind::Correct);
    let merge_id = ledger
        .log(1, 100)
        .await?
        .into_iter()
        .find_map(|r| match r.entry {
            uns_genealogy::LogEntry::Event { event, .. }
                if matches!(event.kind, GenealogyKind::Merge { .. }) =>
            {
                Some(event.header.event_id)
            }
            _ => None,
        })
        .expect("the merge is logged");
    undo_merge.header = undo_merge.header.correcting(merge_id, "wrong pallet");
    refusals.push(refusal(ledger.apply(site(), undo_merge, now(99)).await));
    // A receive of an existing lot.
    refusals.push(refusal(
        ledger
            .apply(site(), receive(100, "flour-1", "flour", 1.0, "X"), now(100))
            .await,
    ));
    // Release of a lot that is not in quarantine; reject without reason.
    let decision = |lot: &str, decision, reason: Option<&str>| StatusChangeRequest {
        event_id: Uuid::now_v7(),
        lot: id(lot),
        decision,
        reason: reason.map(str::to_owned),
        by: None,
    };
    for request in [
        decision("flour-1", Decision::Release, None),
        decision("flour-1", Decision::Reject, None),
    ] {
        match ledger.decide(request, now(101)).await {
            Err(LedgerError::Refused(r)) => refusals.push(r),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    let kinds: Vec<String> = refusals
        .iter()
        .map(|r| {
            format!("{r:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "NotUsable",
            "NotUsable",
            "Negative",
            "UnknownLot",
            "MissingMaterial",
            "UnknownEvent",
            "AlreadyVoided",
            "CannotUndo",
            "LotExists",
            "BadDecision",
            "ReasonRequired"
        ]
    );
    let text = refusals[3].to_string();
    assert!(text.contains("salt-404"), "{text}");
    assert!(
        refusals[0].to_string().contains("Quarantine"),
        "{}",
        refusals[0]
    );
    assert!(refusals[2].to_string().contains("40"), "{}", refusals[2]);

    assert_eq!(ledger.n_records().await?, records_before, "nothing logged");
    assert_eq!(
        ledger.lots(None, 1000).await?,
        lots_before,
        "no lot changed"
    );
    assert!(
        ledger.lot(&id("dough-9")).await?.is_none(),
        "no lot invented"
    );
    // Released, the yeast can be used.
    ledger
        .decide(decision("yeast-1", Decision::Release, None), now(102))
        .await?;
    ledger
        .apply(
            site(),
            transform(
                103,
                "wo-9",
                vec![kg("yeast-1", 1.0)],
                vec![new_kg("dough-9", "dough", 1.0)],
            ),
            now(103),
        )
        .await?;
    assert_eq!(qty(&ledger, "yeast-1").await, 4.0);
    Ok(())
}

#[tokio::test]
async fn a_duplicate_event_id_is_applied_once_across_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let event = transform(
        10,
        "wo-1",
        vec![kg("flour-1", 10.0)],
        vec![new_kg("dough-1", "dough", 10.0)],
    );
    {
        let ledger = open(&dir);
        ledger
            .apply(site(), receive(1, "flour-1", "flour", 100.0, "M"), now(1))
            .await?;
        let first = ledger.apply(site(), event.clone(), now(10)).await?;
        assert!(
            matches!(first, Outcome::Applied { seq: 2, .. }),
            "{first:?}"
        );
        let again = ledger.apply(site(), event.clone(), now(11)).await?;
        assert_eq!(again, Outcome::Duplicate);
        ledger.close();
    }
    let ledger = open(&dir);
    let after_restart = ledger.apply(site(), event.clone(), now(12)).await?;
    assert_eq!(after_restart, Outcome::Duplicate);
    assert_eq!(qty(&ledger, "flour-1").await, 90.0);
    assert_eq!(qty(&ledger, "dough-1").await, 10.0);
    assert_eq!(ledger.n_records().await?, 2);
    // Same trace after the restart as before it.
    let trace = ledger
        .trace(TraceQuery::backward(id("dough-1")))
        .await?
        .expect("known");
    assert_eq!(lots_of(&trace), set(&["dough-1", "flour-1"]));
    Ok(())
}

/// Flips one byte of chain record `seq`'s stored value in the redb file, behind the ledger's back.
fn tamper(path: &std::path::Path, seq: u64, byte_idx: usize) -> anyhow::Result<()> {
    use redb::ReadableTable;
    let db = redb::Database::create(path)?;
    let txn = db.begin_write()?;
    {
        let name = format!("chain.{}.records_v1", uns_genealogy::CHAIN);
        let mut table = txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(&name))?;
        let key = seq.to_be_bytes();
        let mut value = table
            .get(key.as_slice())?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| anyhow::anyhow!("no record {seq}"))?;
        let idx = byte_idx.min(value.len() - 1);
        value[idx] ^= 0x01;
        table.insert(key.as_slice(), value.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

#[tokio::test]
async fn verify_names_exactly_the_altered_record() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("genealogy.redb");
    let ledger = open(&dir);
    build(&ledger).await;
    let report = ledger.verify().await?;
    assert_eq!(report.n_records, 12);
    assert_eq!(report.first_bad, None);
    ledger.close();
    drop(ledger);

    // Byte 100 is inside record 7's JSON payload (after version, time and two hashes: 73 bytes).
    tamper(&path, 7, 100)?;
    let ledger = open(&dir);
    let report = ledger.verify().await?;
    let bad = report.first_bad.expect("tampering detected");
    assert_eq!(bad.seq, 7, "{bad:?}");
    assert_eq!(report.n_records, 6);
    assert!(bad.reason.contains("hashes to"), "{}", bad.reason);
    Ok(())
}

/// Everything the ledger answers about the scenario, as JSON text: every lot traced backward
/// and forward, now and as of minute 45 (before the correction) and at depth 1, the recall and
/// FSMA sheets of the pallet's trace, the EPCIS document, the log and the chain check.
async fn answers(ledger: &Ledger) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for record in ledger.lots(None, 1000).await? {
        out.push(serde_json::to_string(&record)?);
        for query in [
            TraceQuery::backward(record.lot.id.clone()),
            TraceQuery::forward(record.lot.id.clone()),
        ] {
            for (as_of, depth) in [(None, None), (Some(at(45)), None), (None, Some(1))] {
                let query = TraceQuery {
                    as_of,
                    depth,
                    ..query.clone()
                };
                let trace = ledger.trace(query).await?.expect("a listed lot");
                out.push(serde_json::to_string(&trace)?);
            }
        }
    }
    let pallet = ledger
        .trace(TraceQuery::backward(id("pallet-1")))
        .await?
        .expect("known");
    out.push(uns_genealogy::recall_csv(&pallet));
    out.push(ledger.fsma_csv(pallet).await?);
    out.push(
        ledger
            .epcis(uns_genealogy::ExportFilter::default(), 0)
            .await?
            .to_string(),
    );
    out.push(serde_json::to_string(&ledger.log(1, 1000).await?)?);
    out.push(format!("{:?}", ledger.verify().await?));
    Ok(out)
}

#[tokio::test]
async fn refusals_change_no_answer_and_a_reopened_ledger_gives_the_same_answers()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = open(&dir);
    let scenario = build(&ledger).await;
    ledger
        .decide(
            StatusChangeRequest {
                event_id: Uuid::now_v7(),
                lot: id("flour-2"),
                decision: Decision::Quarantine,
                reason: Some("mould found in the retained sample".to_owned()),
                by: Some("qa-anna".to_owned()),
            },
            now(85),
        )
        .await?;
    let before = answers(&ledger).await?;
    // More than 60 answers: 10 lots × 6 traces plus sheets, document, log and check.
    assert!(before.len() > 60, "{}", before.len());

    // Refused: the quarantined lot consumed, more than a lot holds, an unknown input, a
    // correction of an unknown event; a duplicate of the shipment applied once.
    let refused = [
        transform(
            90,
            "wo-9",
            vec![kg("flour-2", 1.0)],
            vec![new_kg("dough-9", "dough", 1.0)],
        ),
        transform(
            91,
            "wo-9",
            vec![kg("flour-1", 41.0)],
            vec![new_kg("dough-9", "dough", 41.0)],
        ),
        transform(
            92,
            "wo-9",
            vec![kg("salt-404", 1.0)],
            vec![new_kg("dough-9", "dough", 1.0)],
        ),
        {
            let mut correction = event(93, GenealogyKind::Correct);
            correction.header = correction
                .header
                .correcting(Uuid::now_v7(), "an event nobody sent");
            correction
        },
    ];
    for (n, event) in refused.into_iter().enumerate() {
        let result = ledger.apply(site(), event, now(90 + n as u32)).await;
        assert!(
            matches!(result, Err(LedgerError::Refused(_))),
            "event {n}: {result:?}"
        );
    }
    assert_eq!(
        ledger.apply(site(), scenario.ship.clone(), now(95)).await?,
        Outcome::Duplicate
    );
    assert_eq!(
        answers(&ledger).await?,
        before,
        "a refusal changed an answer"
    );

    // Restart: the same answers, and the duplicate is still known.
    ledger.close();
    drop(ledger);
    let ledger = open(&dir);
    let after = answers(&ledger).await?;
    for (n, (a, b)) in before.iter().zip(&after).enumerate() {
        assert_eq!(a, b, "answer {n} differs after the reopen");
    }
    assert_eq!(after.len(), before.len());
    assert_eq!(
        ledger.apply(site(), scenario.ship, now(96)).await?,
        Outcome::Duplicate
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_applies_each_event_as_apply_would_in_one_commit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = open(&dir);
    let received = receive(1, "flour-1", "flour", 100.0, "M");
    let results = ledger
        .apply_batch(vec![
            (site(), received.clone(), now(1)),
            (
                site(),
                transform(
                    2,
                    "wo-1",
                    vec![kg("salt-404", 1.0)],
                    vec![new_kg("dough-9", "dough", 1.0)],
                ),
                now(2),
            ),
            (
                site(),
                transform(
                    3,
                    "wo-2",
                    vec![kg("flour-1", 30.0)],
                    vec![new_kg("dough-1", "dough", 30.0)],
                ),
                now(3),
            ),
            (site(), received, now(4)),
        ])
        .await?;
    assert!(matches!(results[0], Ok(Outcome::Applied { seq: 1, .. })));
    assert_eq!(results[1], Err(Refusal::UnknownLot(id("salt-404"))));
    assert!(matches!(results[2], Ok(Outcome::Applied { seq: 2, .. })));
    assert_eq!(results[3], Ok(Outcome::Duplicate));
    assert_eq!(qty(&ledger, "flour-1").await, 70.0);
    assert!(ledger.lot(&id("dough-9")).await?.is_none());
    assert_eq!(ledger.n_records().await?, 2);
    let trace = ledger
        .trace(TraceQuery::backward(id("dough-1")))
        .await?
        .expect("known");
    assert_eq!(lots_of(&trace), set(&["dough-1", "flour-1"]));
    assert_eq!(ledger.verify().await?.first_bad, None);
    Ok(())
}

#[tokio::test]
async fn the_replay_check_names_a_lot_or_an_edge_changed_beside_an_intact_chain()
-> anyhow::Result<()> {
    use uns_store::{Bytes, ReadableTx, Store, Str, Table};
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("genealogy.redb");
    let ledger = open(&dir);
    build(&ledger).await;
    ledger.close();
    drop(ledger);
    let scratch = tempfile::tempdir()?;
    let check = || -> anyhow::Result<Option<uns_genealogy::DerivedMismatch>> {
        let file = uns_genealogy::LedgerFile::open(&path)?;
        anyhow::ensure!(file.verify()?.first_bad.is_none(), "the chain stays intact");
        Ok(file.check_derived(scratch.path())?)
    };
    assert_eq!(check()?, None, "an untouched file is what its chain says");

    // bread-2 made ten times bigger in the lot table, behind the ledger's back.
    let lots: Table<Str, Bytes> = Table::named("genealogy.lots_v1".to_owned());
    let store = Store::open(&path)?;
    let original = store
        .read_blocking(|tx| tx.get(&lots, "bread-2"))?
        .expect("bread-2 stored");
    let mut edited: serde_json::Value = serde_json::from_slice(&original)?;
    edited["lot"]["quantity"]["qty"] = serde_json::json!(460.0);
    let edited = serde_json::to_vec(&edited)?;
    store.write_blocking(|tx| tx.insert(&lots, "bread-2", &edited))?;
    store.close();
    let mismatch = check()?.expect("the edited lot is found");
    assert_eq!(mismatch.table, "genealogy.lots_v1");
    assert_eq!(mismatch.key, "bread-2");
    assert!(mismatch.reason.contains("460"), "{mismatch}");

    // Put it back, and drop one edge of the forward index instead.
    let forward: Table<Bytes, Bytes> = Table::named("genealogy.forward_v2".to_owned());
    let store = Store::open(&path)?;
    store.write_blocking(|tx| tx.insert(&lots, "bread-2", &original))?;
    let removed = store.write_blocking(|tx| {
        let (key, _) = tx
            .range_limit(&forward, b"flour-3".as_slice().., 1)?
            .pop()
            .expect("flour-3 has a forward edge");
        tx.remove(&forward, &key)?;
        Ok(key)
    })?;
    store.close();
    let mismatch = check()?.expect("the missing edge is found");
    assert_eq!(mismatch.table, "genealogy.forward_v2");
    // The corrected wo-3 (record 9) is what put flour-3 into bread-2.
    assert_eq!(mismatch.key, "flour-3 @ record 9", "{mismatch}");
    assert!(
        mismatch.reason.contains("the chain has this row"),
        "{mismatch}"
    );
    assert!(removed.starts_with(b"flour-3\0"));
    assert_eq!(
        std::fs::read_dir(scratch.path())?.count(),
        0,
        "the replay's scratch file is removed"
    );
    Ok(())
}

#[tokio::test]
async fn lot_statuses_follow_the_issues_set_and_a_rejected_lot_is_neither_consumed_nor_shipped()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = open(&dir);
    let status = |lot: &'static str| {
        let ledger = ledger.clone();
        async move {
            ledger
                .lot(&id(lot))
                .await
                .expect("reads")
                .expect("the lot exists")
                .lot
                .status
        }
    };
    let decide = |lot: &str, decision, reason: Option<&str>| StatusChangeRequest {
        event_id: Uuid::now_v7(),
        lot: id(lot),
        decision,
        reason: reason.map(str::to_owned),
        by: Some("qa-anna".to_owned()),
    };
    for (minute, lot) in [(1, "salt-1"), (2, "salt-2"), (3, "salt-3")] {
        ledger
            .apply(site(), receive(minute, lot, "salt", 10.0, "S"), now(minute))
            .await?;
    }
    assert_eq!(
        status("salt-1").await,
        LotStatus::Released,
        "received: released"
    );

    // Quarantine, then release: usable again.
    ledger
        .decide(decide("salt-1", Decision::Quarantine, Some("CoA")), now(4))
        .await?;
    assert_eq!(status("salt-1").await, LotStatus::Quarantine);
    ledger
        .decide(decide("salt-1", Decision::Release, None), now(5))
        .await?;
    assert_eq!(status("salt-1").await, LotStatus::Released);

    // Reject: neither consumed, merged nor shipped, and not released again.
    ledger
        .decide(
            decide("salt-2", Decision::Reject, Some("lab: lead")),
            now(6),
        )
        .await?;
    assert_eq!(status("salt-2").await, LotStatus::Rejected);
    let records = ledger.n_records().await?;
    let consume = refusal(
        ledger
            .apply(
                site(),
                transform(
                    7,
                    "wo-1",
                    vec![kg("salt-2", 1.0)],
                    vec![new_kg("brine-1", "brine", 1.0)],
                ),
                now(7),
            )
            .await,
    );
    assert_eq!(
        consume,
        Refusal::NotUsable {
            lot: id("salt-2"),
            status: LotStatus::Rejected,
            action: "consumed"
        }
    );
    assert!(consume.to_string().contains("Rejected"), "{consume}");
    let ship = refusal(
        ledger
            .apply(
                site(),
                event(
                    8,
                    GenealogyKind::Ship {
                        lot: kg("salt-2", 1.0),
                        customer: Some("c".to_owned()),
                        to: None,
                    },
                ),
                now(8),
            )
            .await,
    );
    assert!(
        matches!(
            ship,
            Refusal::NotUsable {
                action: "shipped",
                ..
            }
        ),
        "{ship}"
    );
    match ledger
        .decide(decide("salt-2", Decision::Release, None), now(9))
        .await
    {
        Err(LedgerError::Refused(Refusal::BadDecision { status, .. })) => {
            assert_eq!(status, LotStatus::Rejected);
        }
        other => panic!("a rejected lot is not released: {other:?}"),
    }
    assert_eq!(ledger.n_records().await?, records, "nothing logged");

    // Scrapping empties it whatever its status: destroyed. Shipping all: shipped.
    ledger
        .apply(
            site(),
            event(
                10,
                GenealogyKind::Scrap {
                    lot: kg("salt-2", 10.0),
                },
            ),
            now(10),
        )
        .await?;
    assert_eq!(status("salt-2").await, LotStatus::Destroyed);
    ledger
        .apply(
            site(),
            event(
                11,
                GenealogyKind::Ship {
                    lot: kg("salt-3", 10.0),
                    customer: Some("c".to_owned()),
                    to: None,
                },
            ),
            now(11),
        )
        .await?;
    assert_eq!(status("salt-3").await, LotStatus::Shipped);

    // The published document names the status as issue 13 does.
    let doc = serde_json::to_value(ledger.lot(&id("salt-2")).await?.expect("kept").lot)?;
    assert_eq!(doc["status"], "destroyed");

    // The replay of the chain (quality decisions included) gives the same lots.
    ledger.close();
    let file = uns_genealogy::LedgerFile::open(&dir.path().join("genealogy.redb"))?;
    assert_eq!(file.check_derived(dir.path())?, None);
    Ok(())
}
