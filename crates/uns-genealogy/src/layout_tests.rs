//! Layout 2 against layout 1 on a generated graph: the trace of the binary indexes (voided flag
//! in the edge, transform rows) answers exactly what the layout-1 trace (JSON edges, the applied
//! event per edge, the chain record per transform) answered, and a file turned back into
//! layout 1 is migrated to exactly what layout 2 writes.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use uns_model::payload::{
    EventHeader, GenealogyEvent, GenealogyKind, LotQuantity, Quantity, SchemaTag, Timestamp, Uom,
};
use uns_model::topic::{Id, Location};
use uns_store::{Bytes, Chain, Json, ReadableTx, Store, StoreError, Str, Table};
use uuid::Uuid;

use crate::ledger::{
    BACKWARD, CHAIN, EVENTS, Edge, FORWARD, LOTS, LogEntry, TRANSFORMS, Tolerances, decode_entry,
    edge_key, prefix_end, prefix_key,
};
use crate::migrate::{LAYOUT, META};
use crate::trace::{Direction, Trace, TraceLot, TraceQuery, balance, trace_in};
use crate::{Decision, Ledger, Outcome, StatusChangeRequest};

const OLD_FORWARD: Table<Bytes, Json<Edge>> = Table::new("genealogy.forward_v1");
const OLD_BACKWARD: Table<Bytes, Json<Edge>> = Table::new("genealogy.backward_v1");
const RAW_LOTS: Table<Str, Bytes> = Table::new("genealogy.lots_v1");
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn id(text: &str) -> Id {
    Id::new(text).expect("a valid id")
}

fn at(n: u64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + i64::try_from(n).expect("small") * 1_000).expect("valid")
}

fn lq(lot: &Id, material: Option<&str>, qty: f64) -> LotQuantity {
    LotQuantity {
        lot: lot.clone(),
        material: material.map(str::to_owned),
        quantity: Quantity::new(qty, Uom::EA),
    }
}

/// The layout-1 trace, as it was before the binary layout: JSON edges, the applied event of
/// each edge for the voided flag, the chain record of each transform for the balance.
fn trace_v1(
    tx: &impl ReadableTx,
    query: &TraceQuery,
    tolerances: &Tolerances,
) -> Result<Option<Trace>, StoreError> {
    let Some(start) = tx.get(&LOTS, query.lot.as_str())? else {
        return Ok(None);
    };
    let index = match query.direction {
        Direction::Backward => &OLD_BACKWARD,
        Direction::Forward => &OLD_FORWARD,
    };
    let mut voids: HashMap<Uuid, Option<Timestamp>> = HashMap::new();
    let mut reached: BTreeMap<Id, u32> = BTreeMap::from([(query.lot.clone(), 0)]);
    let mut lots = vec![TraceLot {
        depth: 0,
        lot_id: query.lot.clone(),
        record: Some(start),
    }];
    let mut edges = Vec::new();
    let mut seqs = BTreeSet::new();
    let mut truncated = false;
    let mut queue = VecDeque::from([(query.lot.clone(), 0u32)]);
    while let Some((lot, depth)) = queue.pop_front() {
        let lower = prefix_key(lot.as_str());
        let upper = prefix_end(lot.as_str());
        for (_, edge) in tx.range(index, lower.as_slice()..upper.as_slice())? {
            if let Some(as_of) = query.as_of
                && edge.occurred_at > as_of
            {
                continue;
            }
            let voided_at = match voids.get(&edge.event_id) {
                Some(known) => *known,
                None => {
                    let found = tx
                        .get(&EVENTS, &edge.event_id.to_string())?
                        .and_then(|applied| applied.voided)
                        .map(|void| void.occurred_at);
                    voids.insert(edge.event_id, found);
                    found
                }
            };
            let live = match (voided_at, query.as_of) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(voided_at), Some(as_of)) => voided_at > as_of,
            };
            if !live {
                continue;
            }
            if query.depth.is_some_and(|max| depth >= max) {
                truncated = true;
                break;
            }
            let next = match query.direction {
                Direction::Backward => edge.from.clone(),
                Direction::Forward => edge.to.clone(),
            };
            if edge.kind == "transform" {
                seqs.insert(edge.seq);
            }
            edges.push(edge);
            if !reached.contains_key(&next) {
                reached.insert(next.clone(), depth + 1);
                lots.push(TraceLot {
                    depth: depth + 1,
                    record: tx.get(&LOTS, next.as_str())?,
                    lot_id: next.clone(),
                });
                queue.push_back((next, depth + 1));
            }
        }
    }
    let materials: BTreeMap<Id, String> = lots
        .iter()
        .filter_map(|l| Some((l.lot_id.clone(), l.record.as_ref()?.lot.material.clone())))
        .collect();
    let chain = Chain::new(CHAIN);
    let mut transforms = Vec::new();
    for seq in seqs {
        let Some(record) = chain.get(tx, seq)? else {
            continue;
        };
        let record = decode_entry(record.seq, record.time_ms, &record.payload)?;
        if let LogEntry::Event { event, .. } = record.entry
            && let GenealogyKind::Transform {
                consumed,
                produced,
                wo_id,
            } = &event.kind
        {
            transforms.push(balance(
                event.header.event_id,
                wo_id.clone(),
                event.header.occurred_at,
                consumed,
                produced,
                &materials,
                tolerances,
            ));
        }
    }
    Ok(Some(Trace {
        query: query.clone(),
        lots,
        edges,
        transforms,
        truncated,
    }))
}

/// Applies a random plant of `steps` events (receives, multi-input and multi-output
/// transforms, rework into an input, splits, merges, scraps, shipments, corrections and
/// replacements, quality decisions); refused ones are skipped. Returns the lots and the last
/// event's step.
async fn generate(ledger: &Ledger, seed: u64, steps: u64) -> (Vec<Id>, u64) {
    let site: Location = "acme/plant".parse().expect("a location");
    let mut rng = Rng(seed);
    let mut lots: Vec<Id> = Vec::new();
    let mut applied: Vec<Uuid> = Vec::new();
    let mut n_applied = 0;
    for step in 1..=steps {
        let event_id = Uuid::from_u64_pair(0x0195_0000_0000_7000, step);
        let header = EventHeader::new(event_id, at(step), at(step));
        let new_lot = |n: u64| id(&format!("lot-{n}"));
        let pick = |rng: &mut Rng, lots: &[Id]| lots[rng.below(lots.len())].clone();
        let mut header_used = header.clone();
        let kind = if lots.len() < 6 || rng.below(10) == 0 {
            let lot = new_lot(step);
            GenealogyKind::Receive {
                lot: lq(&lot, Some(["flour", "salt", "yeast"][rng.below(3)]), 1e6),
                location: None,
                supplier_lot: Some(format!("SUP-{step}")),
            }
        } else {
            match rng.below(12) {
                0..=4 => {
                    let inputs: BTreeSet<Id> = (0..1 + rng.below(3))
                        .map(|_| pick(&mut rng, &lots))
                        .collect();
                    let consumed: Vec<LotQuantity> = inputs
                        .iter()
                        .map(|lot| lq(lot, None, 1.0 + rng.below(3) as f64))
                        .collect();
                    let mut produced = vec![lq(&new_lot(step), Some("dough"), 2.0)];
                    if rng.below(4) == 0 {
                        produced.push(lq(&id(&format!("lot-{step}.b")), Some("crumbs"), 1.0));
                    }
                    if rng.below(6) == 0 {
                        // Rework: back into one of its inputs.
                        produced.push(lq(&consumed[0].lot, None, 0.5));
                    }
                    GenealogyKind::Transform {
                        consumed,
                        produced,
                        wo_id: (rng.below(3) > 0).then(|| id(&format!("wo-{step}"))),
                    }
                }
                5 => GenealogyKind::Split {
                    source: pick(&mut rng, &lots),
                    into: vec![
                        lq(&id(&format!("lot-{step}.x")), None, 1.0),
                        lq(&id(&format!("lot-{step}.y")), None, 1.0),
                    ],
                },
                6 => {
                    let sources: BTreeSet<Id> = (0..2 + rng.below(3))
                        .map(|_| pick(&mut rng, &lots))
                        .collect();
                    GenealogyKind::Merge {
                        sources: sources.iter().map(|lot| lq(lot, None, 1.0)).collect(),
                        into: lq(&new_lot(step), Some("pallet"), 1.0),
                    }
                }
                7 => GenealogyKind::Ship {
                    lot: lq(&pick(&mut rng, &lots), None, 1.0),
                    customer: Some(format!("customer-{}", rng.below(4))),
                    to: None,
                },
                8 => GenealogyKind::Scrap {
                    lot: lq(&pick(&mut rng, &lots), None, 0.5),
                },
                9 if !applied.is_empty() => {
                    let original = applied[rng.below(applied.len())];
                    header_used = header.clone().correcting(original, "wrong scan");
                    GenealogyKind::Correct
                }
                10 if !applied.is_empty() => {
                    let original = applied[rng.below(applied.len())];
                    header_used = header.clone().correcting(original, "wrong input");
                    GenealogyKind::Transform {
                        consumed: vec![lq(&pick(&mut rng, &lots), None, 1.0)],
                        produced: vec![lq(&new_lot(step), Some("dough"), 1.0)],
                        wo_id: None,
                    }
                }
                _ => {
                    let decision =
                        [Decision::Quarantine, Decision::Release, Decision::Reject][rng.below(3)];
                    let request = StatusChangeRequest {
                        event_id,
                        lot: pick(&mut rng, &lots),
                        decision,
                        reason: Some("lab".to_owned()),
                        by: None,
                    };
                    if ledger
                        .decide(request, at(step).unix_ms() as u64)
                        .await
                        .is_ok()
                    {
                        n_applied += 1;
                    }
                    continue;
                }
            }
        };
        let event = GenealogyEvent {
            schema: SchemaTag::default(),
            header: header_used,
            kind,
        };
        let created: Vec<Id> = match &event.kind {
            GenealogyKind::Receive { lot, .. } => vec![lot.lot.clone()],
            GenealogyKind::Transform { produced, .. } => {
                produced.iter().map(|p| p.lot.clone()).collect()
            }
            GenealogyKind::Split { into, .. } => into.iter().map(|p| p.lot.clone()).collect(),
            GenealogyKind::Merge { into, .. } => vec![into.lot.clone()],
            _ => Vec::new(),
        };
        let is_correct = event.kind == GenealogyKind::Correct;
        match ledger
            .apply(Some(site.clone()), event, at(step).unix_ms() as u64)
            .await
        {
            Ok(Outcome::Applied { .. }) => {
                n_applied += 1;
                if !is_correct {
                    applied.push(event_id);
                }
                for lot in created {
                    if !lots.contains(&lot) {
                        lots.push(lot);
                    }
                }
            }
            Ok(Outcome::Duplicate) => unreachable!("every event id is new"),
            Err(crate::LedgerError::Refused(_)) => {}
            Err(err) => panic!("store failed: {err}"),
        }
    }
    assert!(
        n_applied > steps / 3,
        "enough events apply: {n_applied} of {steps}"
    );
    (lots, steps)
}

/// Every lot both ways, now, as of three earlier times, and at depth 1 and 3.
fn queries(lots: &[Id], last_step: u64) -> Vec<TraceQuery> {
    let mut out = Vec::new();
    for lot in lots {
        for direction in [Direction::Backward, Direction::Forward] {
            for as_of in [
                None,
                Some(last_step / 4),
                Some(last_step / 2),
                Some(last_step * 3 / 4),
            ] {
                for depth in [None, Some(1), Some(3)] {
                    out.push(TraceQuery {
                        lot: lot.clone(),
                        direction,
                        depth,
                        as_of: as_of.map(at),
                    });
                }
            }
        }
    }
    out
}

/// Turns the file back into layout 1: JSON edges without the voided flag, no transform rows,
/// the old status names, no layout row.
fn downgrade(store: &Store) -> Result<(), StoreError> {
    store.write_blocking(|tx| {
        for (key, stored) in tx.range(&FORWARD, ..)? {
            let n = u32::from_be_bytes(key[key.len() - 4..].try_into().expect("4 bytes"));
            tx.insert(&OLD_FORWARD, &key, &stored.edge)?;
            tx.insert(
                &OLD_BACKWARD,
                &edge_key(stored.edge.to.as_str(), stored.edge.seq, n),
                &stored.edge,
            )?;
        }
        tx.remove_range(&FORWARD, ..)?;
        tx.remove_range(&BACKWARD, ..)?;
        tx.remove_range(&TRANSFORMS, ..)?;
        tx.remove_range(&META, ..)?;
        Ok(())
    })
}

fn legacy_statuses(store: &Store) -> Result<usize, StoreError> {
    store.write_blocking(|tx| {
        let mut renamed = 0;
        for (key, bytes) in tx.range(&RAW_LOTS, ..)? {
            let text = String::from_utf8(bytes).expect("JSON");
            let old = text
                .replace("\"status\":\"released\"", "\"status\":\"available\"")
                .replace("\"status\":\"rejected\"", "\"status\":\"blocked\"")
                .replace("\"status\":\"destroyed\"", "\"status\":\"scrapped\"");
            if old != text {
                renamed += 1;
            }
            tx.insert(&RAW_LOTS, key.as_str(), old.as_bytes())?;
        }
        Ok(renamed)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_layout_answers_what_layout_1_answered_and_a_layout_1_file_migrates_to_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("genealogy.redb");
    let tolerances = Tolerances::default();
    let ledger = Ledger::open(&path, tolerances.clone()).expect("opens");
    let (lots, last_step) = generate(&ledger, 0x9e37_79b9_7f4a_7c15, 1_500).await;
    let queries = queries(&lots, last_step);
    let store = ledger.store().clone();
    let new: Vec<Option<Trace>> = store
        .read_blocking(|tx| {
            queries
                .iter()
                .map(|q| trace_in(tx, q, &tolerances))
                .collect()
        })
        .expect("traces");
    let (n_edges, n_voided) = store
        .read_blocking(|tx| {
            let rows = tx.range(&FORWARD, ..)?;
            Ok((
                rows.len(),
                rows.iter().filter(|(_, e)| e.voided_at.is_some()).count(),
            ))
        })
        .expect("edges");
    assert!(n_edges > 300, "a real graph: {n_edges} edges");
    assert!(n_voided > 5, "corrections voided {n_voided} edges");
    // Corrections happened and the as-of answers differ from today's for some lots.
    let differs = queries
        .iter()
        .zip(&new)
        .filter(|(q, _)| q.as_of.is_some() && q.depth.is_none())
        .any(|(q, t)| {
            let now = TraceQuery {
                as_of: None,
                ..(*q).clone()
            };
            let idx = queries
                .iter()
                .position(|other| *other == now)
                .expect("listed");
            new[idx].as_ref().map(Trace::lot_ids) != t.as_ref().map(Trace::lot_ids)
        });
    assert!(
        differs,
        "the generated history has corrections that as_of sees"
    );

    downgrade(&store).expect("downgrade");
    let old: Vec<Option<Trace>> = store
        .read_blocking(|tx| {
            queries
                .iter()
                .map(|q| trace_v1(tx, q, &tolerances))
                .collect()
        })
        .expect("traces");
    for ((query, new), old) in queries.iter().zip(&new).zip(&old) {
        assert_eq!(new, old, "{query:?}");
    }

    // Old status names too, and no layout row: a file as layout 1 wrote it.
    let renamed = legacy_statuses(&store).expect("rename");
    assert!(renamed > 10, "{renamed} lots renamed");
    ledger.close();
    drop(ledger);
    let file = crate::LedgerFile::open(&path).expect("read-only open");
    let refused = file
        .check_derived(dir.path())
        .expect_err("the read-only replay check refuses layout 1");
    assert!(
        refused
            .to_string()
            .contains("start the genealogy service on it once"),
        "{refused}"
    );
    assert!(file.verify().expect("verify").first_bad.is_none());
    drop(file);

    let ledger = Ledger::open(&path, tolerances.clone()).expect("migrates");
    let store = ledger.store().clone();
    let migrated: Vec<Option<Trace>> = store
        .read_blocking(|tx| {
            queries
                .iter()
                .map(|q| trace_in(tx, q, &tolerances))
                .collect()
        })
        .expect("traces");
    for ((query, new), migrated) in queries.iter().zip(&new).zip(&migrated) {
        assert_eq!(new, migrated, "{query:?}");
    }
    assert_eq!(
        store
            .read_blocking(|tx| Ok((tx.len(&OLD_FORWARD)?, tx.len(&OLD_BACKWARD)?)))
            .expect("len"),
        (0, 0),
        "the layout-1 rows are gone"
    );
    assert_eq!(
        store.read_blocking(crate::migrate::layout).expect("layout"),
        LAYOUT
    );
    ledger.close();
    drop(ledger);
    let file = crate::LedgerFile::open(&path).expect("read-only open");
    assert_eq!(
        file.check_derived(dir.path()).expect("replay"),
        None,
        "the migrated file holds exactly what replaying its chain in layout 2 writes"
    );
}
