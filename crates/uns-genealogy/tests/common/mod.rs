//! The hand-built recall scenario the tests share: raw lots → dough → bread → a pallet, with a split,
//! a merge, a rework loop, a shipment and a correction of a wrongly scanned input.
#![allow(dead_code, unreachable_pub)]

use uns_genealogy::{Ledger, Outcome, Tolerances};
use uns_model::payload::{
    EventHeader, GenealogyEvent, GenealogyKind, LotQuantity, Quantity, SchemaTag, Timestamp, Uom,
};
use uns_model::topic::{Id, Location};
use uuid::Uuid;

pub fn id(text: &str) -> Id {
    Id::new(text).expect("valid id")
}

pub fn loc(text: &str) -> Location {
    text.parse().expect("valid location")
}

/// Minute `m` of the scenario day.
pub fn at(m: u32) -> Timestamp {
    format!("2026-03-04T{:02}:{:02}:00.000Z", 6 + m / 60, m % 60)
        .parse()
        .expect("valid time")
}

pub fn kg(lot: &str, qty: f64) -> LotQuantity {
    LotQuantity {
        lot: id(lot),
        material: None,
        quantity: Quantity::new(qty, Uom::KGM),
    }
}

pub fn new_kg(lot: &str, material: &str, qty: f64) -> LotQuantity {
    LotQuantity {
        material: Some(material.to_owned()),
        ..kg(lot, qty)
    }
}

pub fn event(minute: u32, kind: GenealogyKind) -> GenealogyEvent {
    GenealogyEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(Uuid::now_v7(), at(minute), at(minute)),
        kind,
    }
}

pub fn receive(
    minute: u32,
    lot: &str,
    material: &str,
    qty: f64,
    supplier_lot: &str,
) -> GenealogyEvent {
    event(
        minute,
        GenealogyKind::Receive {
            lot: new_kg(lot, material, qty),
            location: Some(loc("acme/bakery/goods-in")),
            supplier_lot: Some(supplier_lot.to_owned()),
        },
    )
}

pub fn transform(
    minute: u32,
    wo: &str,
    consumed: Vec<LotQuantity>,
    produced: Vec<LotQuantity>,
) -> GenealogyEvent {
    event(
        minute,
        GenealogyKind::Transform {
            consumed,
            produced,
            wo_id: Some(id(wo)),
        },
    )
}

pub fn site() -> Option<Location> {
    Some(loc("acme/bakery"))
}

/// Service time of minute `m` (ms): the scenario applies events as they occur.
pub fn now(minute: u32) -> u64 {
    u64::try_from(at(minute).unix_ms()).expect("after 1970")
}

pub fn tolerances() -> Tolerances {
    let mut tolerances = Tolerances::default();
    // Baking loses water: bread may weigh up to 15 % less than its dough.
    tolerances.materials.insert("bread".to_owned(), 0.15);
    tolerances
}

/// Event ids of the scenario that tests refer to.
pub struct Scenario {
    pub wrong_t3: GenealogyEvent,
    pub corrected_t3: GenealogyEvent,
    pub ship: GenealogyEvent,
}

/// Applies the scenario, asserting every event is accepted.
///
/// | min | event |
/// |-----|-------|
/// | 1-4 | receive flour-1, flour-2, flour-3 (100 KGM each), sugar-1 (50 KGM) |
/// | 10  | wo-1: flour-1 60 + sugar-1 20 → dough-1 80 (balance ok) |
/// | 20  | split dough-1 → dough-1.a 40, dough-1.b 40 |
/// | 30  | wo-2: dough-1.a 40 → bread-1 30 (−25 %, beyond bread's 15 %: flagged) |
/// | 40  | wo-3: dough-1.b 40 + flour-2 10 → bread-2 46 (wrong: flour-3 was used) |
/// | 50  | correction of minute 40: dough-1.b 40 + flour-3 10 → bread-2 46 |
/// | 60  | merge bread-1 30 + bread-2 46 → pallet-1 76 |
/// | 70  | wo-4 rework: pallet-1 6 → pallet-1 6 |
/// | 80  | ship pallet-1 76 to "Kunde Nord" |
pub async fn build(ledger: &Ledger) -> Scenario {
    let apply = |minute: u32, event: GenealogyEvent| async move {
        let outcome = ledger
            .apply(site(), event.clone(), now(minute))
            .await
            .unwrap_or_else(|err| panic!("minute {minute}: {err}"));
        assert!(
            matches!(outcome, Outcome::Applied { .. }),
            "minute {minute}"
        );
    };
    apply(1, receive(1, "flour-1", "flour", 100.0, "MUEHLE-77")).await;
    apply(2, receive(2, "flour-2", "flour", 100.0, "MUEHLE-78")).await;
    apply(3, receive(3, "flour-3", "flour", 100.0, "MUEHLE-79")).await;
    apply(4, receive(4, "sugar-1", "sugar", 50.0, "SUED-1")).await;
    apply(
        10,
        transform(
            10,
            "wo-1",
            vec![kg("flour-1", 60.0), kg("sugar-1", 20.0)],
            vec![new_kg("dough-1", "dough", 80.0)],
        ),
    )
    .await;
    apply(
        20,
        event(
            20,
            GenealogyKind::Split {
                source: id("dough-1"),
                into: vec![kg("dough-1.a", 40.0), kg("dough-1.b", 40.0)],
            },
        ),
    )
    .await;
    apply(
        30,
        transform(
            30,
            "wo-2",
            vec![kg("dough-1.a", 40.0)],
            vec![new_kg("bread-1", "bread", 30.0)],
        ),
    )
    .await;
    let wrong_t3 = transform(
        40,
        "wo-3",
        vec![kg("dough-1.b", 40.0), kg("flour-2", 10.0)],
        vec![new_kg("bread-2", "bread", 46.0)],
    );
    apply(40, wrong_t3.clone()).await;
    let mut corrected_t3 = transform(
        50,
        "wo-3",
        vec![kg("dough-1.b", 40.0), kg("flour-3", 10.0)],
        vec![new_kg("bread-2", "bread", 46.0)],
    );
    corrected_t3.header = corrected_t3
        .header
        .correcting(wrong_t3.header.event_id, "wrong flour lot scanned at wo-3");
    apply(50, corrected_t3.clone()).await;
    apply(
        60,
        event(
            60,
            GenealogyKind::Merge {
                sources: vec![kg("bread-1", 30.0), kg("bread-2", 46.0)],
                into: new_kg("pallet-1", "bread", 76.0),
            },
        ),
    )
    .await;
    apply(
        70,
        transform(
            70,
            "wo-4",
            vec![kg("pallet-1", 6.0)],
            vec![kg("pallet-1", 6.0)],
        ),
    )
    .await;
    let ship = event(
        80,
        GenealogyKind::Ship {
            lot: kg("pallet-1", 76.0),
            customer: Some("Kunde Nord".to_owned()),
            to: Some(loc("acme/kunde-nord")),
        },
    );
    apply(80, ship.clone()).await;
    Scenario {
        wrong_t3,
        corrected_t3,
        ship,
    }
}
