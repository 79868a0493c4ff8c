//! The engine's rules as plain unit tests: lifecycle with its side effects, counts, revisions,
//! confirmations, genealogy and auto-run.

use super::*;
use uns_model::payload::{MaterialRequirement, Uom, decode};

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(1_780_000_000_000 + ms).unwrap()
}

fn line() -> Location {
    "acme/berlin/packaging/line-1".parse().unwrap()
}

fn filler() -> Location {
    "acme/berlin/packaging/line-1/filler".parse().unwrap()
}

fn id(text: &str) -> Id {
    Id::new(text).unwrap()
}

fn order(name: &str, qty: f64) -> ProductionOrder {
    ProductionOrder {
        schema: SchemaTag::default(),
        id: id(name),
        erp_ref: name.to_uppercase(),
        revision: 1,
        material: "BOTTLE-1L".to_owned(),
        description: None,
        quantity: Quantity::new(qty, Uom::EA),
        earliest_start_time: None,
        latest_end_time: None,
        hierarchy_scope: line(),
        equipment: None,
        priority: None,
        parameters: Vec::new(),
        operations: Vec::new(),
        components: vec![
            MaterialRequirement {
                material: "PREFORM".to_owned(),
                description: None,
                quantity: Quantity::new(qty, Uom::EA),
                material_use: MaterialUse::Consumed,
                operation_id: None,
                material_lot_id: Some("L 1".to_owned()),
                material_sublot_id: None,
            },
            MaterialRequirement {
                material: "CAP".to_owned(),
                description: None,
                quantity: Quantity::new(qty * 2.0, Uom::EA),
                material_use: MaterialUse::Consumed,
                operation_id: None,
                material_lot_id: None,
                material_sublot_id: None,
            },
        ],
        received_at: ts(0),
    }
}

fn engine(config: EngineConfig) -> Engine {
    Engine::new(config, BTreeMap::new(), BTreeMap::new(), BTreeMap::new())
}

fn count_doc(kind: CountKind, total: f64, at_ms: i64) -> CountDoc {
    CountDoc::new(kind, Quantity::new(total, Uom::EA), ts(at_ms).unix_ms())
}

fn events(outcome: &Outcome) -> Vec<WorkOrderEvent> {
    outcome
        .publications
        .iter()
        .filter(|p| matches!(p.topic.class(), Some(Class::WorkOrderEvents(_))))
        .map(|p| decode(&p.payload).unwrap())
        .collect()
}

fn confirmations(outcome: &Outcome) -> Vec<WorkOrderEventKind> {
    events(outcome)
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| matches!(k, WorkOrderEventKind::ConfirmationRequested { .. }))
        .collect()
}

fn active(outcome: &Outcome, location: &Location) -> Option<Option<Id>> {
    outcome
        .publications
        .iter()
        .rev()
        .find(|p| p.topic == UnsTopic::located(location.clone(), Class::WorkOrderActive))
        .map(|p| {
            uns_model::payload::decode_active_order(&p.payload)
                .unwrap()
                .map(|wo| wo.id)
        })
}

/// An engine with `po-1` running since `ts(1000)` and the filler's counters at baseline 0.
fn running() -> Engine {
    let mut engine = engine(EngineConfig::default());
    engine.production_order(order("po-1", 100.0), ts(0));
    for kind in [CountKind::Good, CountKind::Scrap, CountKind::Rework] {
        engine.count(&filler(), kind, &count_doc(kind, 0.0, 500), ts(500));
    }
    engine
        .command(&id("po-1"), Verb::Release, None, ts(900))
        .unwrap();
    engine
        .command(&id("po-1"), Verb::Start, None, ts(1000))
        .unwrap();
    engine
}

#[test]
fn a_production_order_creates_one_planned_work_order() {
    let mut engine = engine(EngineConfig::default());
    let outcome = engine.production_order(order("po-1", 100.0), ts(0));
    let record = engine.order(&id("po-1")).unwrap();
    assert_eq!(record.doc.status, WorkOrderStatus::Planned);
    assert_eq!(record.doc.quantities.planned.qty, 100.0);
    assert_eq!(record.doc.erp_ref.as_deref(), Some("PO-1"));
    assert_eq!(
        events(&outcome).first().map(|e| e.kind.clone()),
        Some(WorkOrderEventKind::Created {
            production_order: Some(id("po-1"))
        })
    );
    assert_eq!(active(&outcome, &line()), Some(None), "_active is null");
    // The same version again changes nothing.
    let again = engine.production_order(order("po-1", 100.0), ts(10));
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(engine.orders().len(), 1);
}

#[test]
fn illegal_transitions_change_nothing() {
    let mut engine = engine(EngineConfig::default());
    engine.production_order(order("po-1", 100.0), ts(0));
    let before = engine.order(&id("po-1")).cloned();
    let err = engine
        .command(&id("po-1"), Verb::Start, None, ts(5))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot start an order that is planned (release it first)"
    );
    assert_eq!(engine.order(&id("po-1")).cloned(), before);
    assert!(matches!(
        engine.command(&id("nope"), Verb::Start, None, ts(5)),
        Err(CommandError::UnknownOrder(_))
    ));
    let elsewhere: Location = "acme/berlin/packaging/line-2".parse().unwrap();
    assert!(matches!(
        engine.command(&id("po-1"), Verb::Release, Some(&elsewhere), ts(5)),
        Err(CommandError::WrongLocation { .. })
    ));
    let site: Location = "acme/berlin".parse().unwrap();
    engine
        .command(&id("po-1"), Verb::Release, Some(&site), ts(5))
        .expect("a location above the line may command it");
}

#[test]
fn one_running_order_per_line_unless_configured() {
    let mut engine = running();
    engine.production_order(order("po-2", 50.0), ts(1100));
    engine
        .command(&id("po-2"), Verb::Release, None, ts(1200))
        .unwrap();
    let err = engine
        .command(&id("po-2"), Verb::Start, None, ts(1300))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("po-1 is already running on acme/berlin/packaging/line-1"),
        "{err}"
    );
    // Held, the line is free.
    engine
        .command(&id("po-1"), Verb::Hold, None, ts(1400))
        .unwrap();
    let outcome = engine
        .command(&id("po-2"), Verb::Start, None, ts(1500))
        .unwrap();
    assert_eq!(active(&outcome, &line()), Some(Some(id("po-2"))));
    assert!(matches!(
        engine.command(&id("po-1"), Verb::Resume, None, ts(1600)),
        Err(CommandError::LineBusy { .. })
    ));

    let mut parallel = engine_parallel();
    parallel.production_order(order("po-1", 10.0), ts(0));
    parallel.production_order(order("po-2", 10.0), ts(0));
    for name in ["po-1", "po-2"] {
        parallel
            .command(&id(name), Verb::Release, None, ts(1))
            .unwrap();
        parallel
            .command(&id(name), Verb::Start, None, ts(2))
            .unwrap();
    }
}

fn engine_parallel() -> Engine {
    engine(EngineConfig {
        parallel_orders_per_line: true,
        ..EngineConfig::default()
    })
}

#[test]
fn counts_accumulate_on_the_running_order_as_deltas_of_the_total() {
    let mut engine = running();
    assert_eq!(
        engine.learned_cell(&line()),
        Some(&filler()),
        "first cell counting"
    );
    let outcome = engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 30.0, 2000),
        ts(2001),
    );
    assert_eq!(outcome.dirty_orders.len(), 1);
    assert_eq!(
        active(&outcome, &filler()),
        Some(Some(id("po-1"))),
        "the cell's _active too"
    );
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 45.0, 3000),
        ts(3001),
    );
    engine.count(
        &filler(),
        CountKind::Scrap,
        &count_doc(CountKind::Scrap, 2.0, 3000),
        ts(3001),
    );
    // A re-delivery of an older document, and of the same one, add nothing.
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 30.0, 2000),
        ts(3002),
    );
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 45.0, 3000),
        ts(3002),
    );
    // Another cell of the line is not the counting cell.
    let capper: Location = "acme/berlin/packaging/line-1/capper".parse().unwrap();
    engine.count(
        &capper,
        CountKind::Good,
        &count_doc(CountKind::Good, 0.0, 3000),
        ts(3002),
    );
    engine.count(
        &capper,
        CountKind::Good,
        &count_doc(CountKind::Good, 999.0, 3100),
        ts(3102),
    );
    let record = engine.order(&id("po-1")).unwrap();
    assert_eq!(record.doc.quantities.good.qty, 45.0);
    assert_eq!(record.doc.quantities.scrap.qty, 2.0);
    assert_eq!(
        record.doc.updated_at,
        ts(3000),
        "counts keep their event time"
    );
    // A reset: the total starts again from 0; its new total is the increment.
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 5.0, 4000),
        ts(4001),
    );
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.quantities.good.qty,
        50.0
    );
    // While held nothing is counted; the total still moves on.
    engine
        .command(&id("po-1"), Verb::Hold, None, ts(4500))
        .unwrap();
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 15.0, 5000),
        ts(5001),
    );
    engine
        .command(&id("po-1"), Verb::Resume, None, ts(5500))
        .unwrap();
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 17.0, 6000),
        ts(6001),
    );
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.quantities.good.qty,
        52.0
    );
}

#[test]
fn the_first_total_is_a_baseline_only_without_a_last_seen_one() {
    let mut engine = engine(EngineConfig::default());
    engine.production_order(order("po-1", 100.0), ts(0));
    engine
        .command(&id("po-1"), Verb::Release, None, ts(1))
        .unwrap();
    engine
        .command(&id("po-1"), Verb::Start, None, ts(2))
        .unwrap();
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 1000.0, 10),
        ts(10),
    );
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.quantities.good.qty,
        0.0
    );
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 1010.0, 20),
        ts(20),
    );
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.quantities.good.qty,
        10.0
    );
}

#[test]
fn a_configured_counting_cell_wins() {
    let labeler: Location = "acme/berlin/packaging/line-1/labeler".parse().unwrap();
    let mut engine = engine(EngineConfig {
        counting_cells: [(line(), labeler.clone())].into(),
        ..EngineConfig::default()
    });
    engine.production_order(order("po-1", 100.0), ts(0));
    engine
        .command(&id("po-1"), Verb::Release, None, ts(1))
        .unwrap();
    engine
        .command(&id("po-1"), Verb::Start, None, ts(2))
        .unwrap();
    for (cell, total) in [
        (&filler(), 0.0),
        (&labeler, 0.0),
        (&filler(), 50.0),
        (&labeler, 7.0),
    ] {
        engine.count(
            cell,
            CountKind::Good,
            &count_doc(CountKind::Good, total, 100),
            ts(100),
        );
    }
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.quantities.good.qty,
        7.0
    );
    assert_eq!(engine.counting_location(&line()), labeler);
}

#[test]
fn confirmations_carry_the_deltas_since_the_previous_one() {
    let mut engine = engine(EngineConfig {
        confirm_every_units: 40.0,
        labor_factor: 2.0,
        ..EngineConfig::default()
    });
    engine.production_order(order("po-1", 100.0), ts(0));
    for kind in [CountKind::Good, CountKind::Scrap] {
        engine.count(&filler(), kind, &count_doc(kind, 0.0, 0), ts(0));
    }
    engine
        .command(&id("po-1"), Verb::Release, None, ts(0))
        .unwrap();
    engine
        .command(&id("po-1"), Verb::Start, None, ts(0))
        .unwrap();
    let none = engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 30.0, 10_000),
        ts(10_000),
    );
    assert!(confirmations(&none).is_empty());
    engine.count(
        &filler(),
        CountKind::Scrap,
        &count_doc(CountKind::Scrap, 5.0, 15_000),
        ts(15_000),
    );
    let partial = engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 40.0, 20_000),
        ts(20_001),
    );
    let found = confirmations(&partial);
    let [
        WorkOrderEventKind::ConfirmationRequested {
            is_final,
            sequence,
            good,
            scrap,
            rework,
            activity,
            goods_movements,
            erp_ref,
            ..
        },
    ] = found.as_slice()
    else {
        panic!("one partial confirmation wanted: {partial:?}");
    };
    assert!(!is_final);
    assert_eq!(*sequence, 1);
    assert_eq!((good.qty, scrap.qty, rework.qty), (40.0, 5.0, 0.0));
    assert_eq!(erp_ref.as_deref(), Some("PO-1"));
    assert_eq!(activity.machine_s, 20.0);
    assert_eq!(activity.labor_s, 40.0);
    assert_eq!(activity.setup_s, 0.0);
    let movements: Vec<(MovementKind, &str, f64, Option<&str>)> = goods_movements
        .iter()
        .map(|m| {
            (
                m.movement,
                m.material.as_str(),
                m.quantity.qty,
                m.lot.as_ref().map(Id::as_str),
            )
        })
        .collect();
    assert_eq!(
        movements,
        vec![
            (MovementKind::Consumption, "PREFORM", 40.0, Some("l-1")),
            (MovementKind::Consumption, "CAP", 80.0, None),
            (
                MovementKind::ProductionReceipt,
                "BOTTLE-1L",
                40.0,
                Some("po-1-out")
            ),
        ]
    );
    // The genealogy transform of the same 40.
    let transform: GenealogyEvent = partial
        .publications
        .iter()
        .find(|p| {
            p.topic == UnsTopic::located("acme/berlin".parse().unwrap(), Class::GenealogyEvents)
        })
        .map(|p| decode(&p.payload).unwrap())
        .expect("a transform on the site's _genealogy/events");
    let GenealogyKind::Transform {
        consumed,
        produced,
        wo_id,
    } = transform.kind
    else {
        panic!("not a transform");
    };
    assert_eq!(wo_id, Some(id("po-1")));
    assert_eq!(
        consumed
            .iter()
            .map(|l| (l.lot.as_str(), l.quantity.qty))
            .collect::<Vec<_>>(),
        vec![("l-1", 40.0)]
    );
    assert_eq!(
        produced
            .iter()
            .map(|l| (l.lot.as_str(), l.quantity.qty))
            .collect::<Vec<_>>(),
        vec![("po-1-out", 40.0)]
    );

    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 52.0, 30_000),
        ts(30_001),
    );
    let last = engine
        .command(&id("po-1"), Verb::Complete, None, ts(32_000))
        .unwrap();
    let found = confirmations(&last);
    let [
        WorkOrderEventKind::ConfirmationRequested {
            is_final,
            sequence,
            good,
            scrap,
            activity,
            ..
        },
    ] = found.as_slice()
    else {
        panic!("one final confirmation wanted: {last:?}");
    };
    assert!(*is_final);
    assert_eq!(*sequence, 2);
    assert_eq!((good.qty, scrap.qty), (12.0, 0.0));
    assert_eq!(activity.machine_s, 12.0);
    let record = engine.order(&id("po-1")).unwrap();
    let lots: Vec<(&str, f64)> = record
        .doc
        .lots
        .iter()
        .map(|l| (l.lot.as_str(), l.quantity.qty))
        .collect();
    assert_eq!(lots, vec![("l-1", 52.0), ("po-1-out", 52.0)]);
    // The ERP's acceptance of the final one closes the order.
    let final_request = record.final_request.expect("final request id");
    engine.confirmation_posted(&id("po-1"), Uuid::now_v7(), ts(33_000));
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.status,
        WorkOrderStatus::Completed
    );
    engine.confirmation_posted(&id("po-1"), final_request, ts(33_000));
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.status,
        WorkOrderStatus::Closed
    );
}

#[test]
fn partial_confirmations_by_time_count_only_running_time() {
    let mut engine = engine(EngineConfig {
        confirm_every_ms: 60_000,
        ..EngineConfig::default()
    });
    engine.production_order(order("po-1", 100.0), ts(0));
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 0.0, 0),
        ts(0),
    );
    engine
        .command(&id("po-1"), Verb::Release, None, ts(0))
        .unwrap();
    engine
        .command(&id("po-1"), Verb::Start, None, ts(0))
        .unwrap();
    assert!(confirmations(&engine.tick(ts(59_000))).is_empty());
    assert!(
        confirmations(&engine.tick(ts(61_000))).is_empty(),
        "nothing produced, nothing to confirm"
    );
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 3.0, 62_000),
        ts(62_000),
    );
    let outcome = engine.tick(ts(70_000));
    let found = confirmations(&outcome);
    let [WorkOrderEventKind::ConfirmationRequested { good, activity, .. }] = found.as_slice()
    else {
        panic!("one partial by time: {outcome:?}");
    };
    assert_eq!(good.qty, 3.0);
    assert_eq!(activity.machine_s, 70.0);
    assert!(
        confirmations(&engine.tick(ts(80_000))).is_empty(),
        "the clock restarted"
    );
}

#[test]
fn consume_records_a_lot_for_a_component() {
    let mut engine = running();
    let outcome = engine
        .consume(&id("po-1"), id("cap-lot-9"), "CAP", None, ts(1100))
        .unwrap();
    assert_eq!(outcome.dirty_orders.len(), 1);
    assert!(matches!(
        engine.consume(&id("po-1"), id("x"), "GLUE", None, ts(1100)),
        Err(CommandError::NotAComponent { .. })
    ));
    let record = engine.order(&id("po-1")).unwrap();
    assert_eq!(record.component_lots.get("CAP"), Some(&id("cap-lot-9")));
    assert!(
        record
            .doc
            .lots
            .iter()
            .any(|l| l.lot.as_str() == "cap-lot-9")
    );
}

#[test]
fn revisions_update_the_one_work_order() {
    let mut engine = running();
    let mut more = order("po-1", 100.0);
    more.quantity.qty = 150.0;
    more.revision = 2;
    let outcome = engine.production_order(more, ts(2000));
    assert_eq!(outcome.dirty_orders.len(), 1);
    let record = engine.order(&id("po-1")).unwrap();
    assert_eq!(record.revision, 2);
    assert_eq!(record.doc.quantities.planned.qty, 150.0);
    assert_eq!(record.doc.status, WorkOrderStatus::Running);
    // Running: another material is refused, and reported.
    let mut other = order("po-1", 100.0);
    other.quantity.qty = 150.0;
    other.material = "CAN".to_owned();
    other.revision = 3;
    let outcome = engine.production_order(other, ts(3000));
    assert!(outcome.dirty_orders.is_empty());
    assert_eq!(outcome.rejections.len(), 1);
    assert!(
        outcome.rejections[0]
            .reason
            .contains("material may not change"),
        "{:?}",
        outcome.rejections
    );
    assert_eq!(engine.order(&id("po-1")).unwrap().doc.material, "BOTTLE-1L");
    assert_eq!(engine.orders().len(), 1);
}

#[test]
fn auto_run_releases_starts_in_turn_and_completes_at_the_planned_quantity() {
    let mut engine = engine(EngineConfig {
        auto_run: true,
        ..EngineConfig::default()
    });
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 0.0, 0),
        ts(0),
    );
    let first = engine.production_order(order("po-1", 10.0), ts(1));
    assert_eq!(active(&first, &line()), Some(Some(id("po-1"))));
    engine.production_order(order("po-2", 5.0), ts(2));
    assert_eq!(
        engine.order(&id("po-2")).unwrap().doc.status,
        WorkOrderStatus::Released
    );
    let done = engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 10.0, 100),
        ts(100),
    );
    assert_eq!(
        engine.order(&id("po-1")).unwrap().doc.status,
        WorkOrderStatus::Completed
    );
    assert_eq!(
        engine.order(&id("po-2")).unwrap().doc.status,
        WorkOrderStatus::Running
    );
    assert_eq!(active(&done, &line()), Some(Some(id("po-2"))));
    assert!(confirmations(&done).iter().any(|k| matches!(
        k,
        WorkOrderEventKind::ConfirmationRequested { is_final: true, .. }
    )));
    engine.count(
        &filler(),
        CountKind::Good,
        &count_doc(CountKind::Good, 15.0, 200),
        ts(200),
    );
    let last = engine.republish();
    assert_eq!(
        active(
            &Outcome {
                publications: last,
                ..Outcome::default()
            },
            &line()
        ),
        Some(None)
    );
}
