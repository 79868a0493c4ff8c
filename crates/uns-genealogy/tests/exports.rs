//! Exports of the recall scenario: EPCIS 2.0 against GS1's JSON Schema, the FSMA 204 sheet and the
//! recall sheet, row by row.

mod common;

use common::*;
use serde_json::Value;
use uns_genealogy::{ExportFilter, FSMA_COLUMNS, Ledger, RECALL_COLUMNS, TraceQuery, recall_csv};

const EPCIS_SCHEMA: &str = include_str!("vendor/gs1-epcis/EPCIS-JSON-Schema.json");

fn rows(csv: &str) -> Vec<Vec<String>> {
    csv.split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn epcis_document_of_the_scenario_validates_against_the_gs1_schema() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(&dir.path().join("g.redb"), tolerances())?;
    let scenario = build(&ledger).await;
    let doc = ledger.epcis(ExportFilter::default(), now(120)).await?;

    let schema: Value = serde_json::from_str(EPCIS_SCHEMA)?;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)?;
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");

    let events = doc["epcisBody"]["eventList"]
        .as_array()
        .expect("event list");
    // 12 logged events, plus the error declaration of the corrected scan.
    assert_eq!(events.len(), 13);
    let of_type = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(of_type("ObjectEvent"), 5, "4 receipts, 1 shipment");
    assert_eq!(of_type("TransformationEvent"), 8);
    let wrong_id = format!("urn:uuid:{}", scenario.wrong_t3.header.event_id);
    let declared: Vec<&Value> = events
        .iter()
        .filter(|e| e["eventID"] == wrong_id.as_str() && e.get("errorDeclaration").is_some())
        .collect();
    assert_eq!(declared.len(), 1);
    assert_eq!(
        declared[0]["errorDeclaration"]["correctiveEventIDs"][0],
        format!("urn:uuid:{}", scenario.corrected_t3.header.event_id)
    );
    let ship = events
        .iter()
        .find(|e| e["bizStep"] == "shipping")
        .expect("shipment");
    assert_eq!(ship["quantityList"][0]["quantity"], 76.0);
    assert_eq!(ship["quantityList"][0]["uom"], "KGM");
    assert_eq!(
        ship["quantityList"][0]["epcClass"],
        "urn:uns:lot:bread:pallet-1"
    );

    // The schema is really applied: an event without its time zone offset fails.
    let mut broken = doc.clone();
    broken["epcisBody"]["eventList"][0]
        .as_object_mut()
        .expect("object")
        .remove("eventTimeZoneOffset");
    assert!(!validator.is_valid(&broken));

    // A lot filter keeps only the events naming the lot.
    let flour2 = ledger
        .epcis(
            ExportFilter {
                lots: Some([id("flour-2")].into()),
                ..ExportFilter::default()
            },
            now(120),
        )
        .await?;
    let list = flour2["epcisBody"]["eventList"].as_array().expect("list");
    // Its receipt, the wrong scan, and the wrong scan's error declaration.
    assert_eq!(list.len(), 3, "{flour2:#}");
    assert!(validator.is_valid(&flour2));
    Ok(())
}

#[tokio::test]
async fn fsma_sheet_has_one_row_per_kde_set_of_the_trace() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(&dir.path().join("g.redb"), tolerances())?;
    let scenario = build(&ledger).await;
    let trace = ledger
        .trace(TraceQuery::backward(id("pallet-1")))
        .await?
        .expect("known");
    let sheet = rows(&ledger.fsma_csv(trace).await?);
    assert_eq!(sheet[0], FSMA_COLUMNS.map(str::to_owned));
    let data = &sheet[1..];
    let count = |cte: &str| data.iter().filter(|r| r[1] == cte).count();
    // flour-1, flour-3, sugar-1 received (flour-2 is not in the pallet after the correction).
    assert_eq!(count("Receiving"), 3);
    // wo-1 (2 inputs), wo-2 (1), corrected wo-3 (2), rework wo-4 (1).
    assert_eq!(count("Transformation"), 6);
    assert_eq!(count("Shipping"), 1);
    assert_eq!(data.len(), 10);
    let corrected = scenario.corrected_t3.header.event_id.to_string();
    let wo3: Vec<&Vec<String>> = data.iter().filter(|r| r[0] == corrected).collect();
    assert_eq!(wo3.len(), 2, "one row per input, shared event id");
    let mut inputs: Vec<&str> = wo3.iter().map(|r| r[9].as_str()).collect();
    inputs.sort_unstable();
    assert_eq!(inputs, ["dough-1.b", "flour-3"]);
    assert!(wo3.iter().all(|r| r[3] == "bread-2" && r[5] == "46"));
    assert!(
        !data
            .iter()
            .any(|r| r[0] == scenario.wrong_t3.header.event_id.to_string()),
        "the corrected scan is not a tracking event"
    );
    let ship = data.iter().find(|r| r[1] == "Shipping").expect("row");
    assert_eq!(ship[0], scenario.ship.header.event_id.to_string());
    assert_eq!(ship[14], "Kunde Nord / acme/kunde-nord");
    let receipt = data
        .iter()
        .find(|r| r[1] == "Receiving" && r[3] == "flour-1")
        .expect("row");
    assert_eq!(receipt[13], "supplier lot MUEHLE-77");
    Ok(())
}

#[tokio::test]
async fn recall_sheet_lists_every_affected_lot_with_its_customer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(&dir.path().join("g.redb"), tolerances())?;
    build(&ledger).await;
    let trace = ledger
        .trace(TraceQuery::forward(id("flour-1")))
        .await?
        .expect("known");
    let sheet = rows(&recall_csv(&trace));
    assert_eq!(sheet[0], RECALL_COLUMNS.map(str::to_owned));
    let mut lots: Vec<&str> = sheet[1..].iter().map(|r| r[0].as_str()).collect();
    lots.sort_unstable();
    assert_eq!(
        lots,
        [
            "bread-1",
            "bread-2",
            "dough-1",
            "dough-1.a",
            "dough-1.b",
            "flour-1",
            "pallet-1"
        ]
    );
    let pallet = sheet.iter().find(|r| r[0] == "pallet-1").expect("row");
    assert_eq!(pallet[4], "shipped");
    assert_eq!(pallet[8], "76");
    assert_eq!(pallet[9], "Kunde Nord");
    let flour = sheet.iter().find(|r| r[0] == "flour-1").expect("row");
    assert_eq!((flour[2].as_str(), flour[4].as_str()), ("40", "released"));
    assert_eq!(flour[10], "0");
    let bread1 = sheet.iter().find(|r| r[0] == "bread-1").expect("row");
    assert_eq!(bread1[7], "wo-2");
    Ok(())
}

#[tokio::test]
async fn quality_decisions_are_epcis_inspections_with_the_status_disposition() -> anyhow::Result<()>
{
    use uns_genealogy::{Decision, StatusChangeRequest};
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(&dir.path().join("g.redb"), tolerances())?;
    ledger
        .apply(site(), receive(1, "salt-1", "salt", 5.0, "S-1"), now(1))
        .await?;
    ledger
        .apply(site(), receive(2, "salt-2", "salt", 5.0, "S-2"), now(2))
        .await?;
    for (minute, lot, decision) in [
        (3, "salt-1", Decision::Quarantine),
        (4, "salt-1", Decision::Release),
        (5, "salt-2", Decision::Reject),
    ] {
        ledger
            .decide(
                StatusChangeRequest {
                    event_id: uuid::Uuid::now_v7(),
                    lot: id(lot),
                    decision,
                    reason: Some("lab".to_owned()),
                    by: None,
                },
                now(minute),
            )
            .await?;
    }
    let doc = ledger.epcis(ExportFilter::default(), now(10)).await?;
    let schema: Value = serde_json::from_str(EPCIS_SCHEMA)?;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)?;
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    let events = doc["epcisBody"]["eventList"].as_array().expect("list");
    let steps: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["bizStep"].as_str().unwrap_or(""),
                e["disposition"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("receiving", "active"),
            ("receiving", "active"),
            ("inspecting", "unavailable"),
            ("inspecting", "available"),
            ("inspecting", "non_conformant"),
        ],
        "in log order"
    );
    assert_eq!(
        events[4]["quantityList"][0]["epcClass"],
        "urn:uns:lot:salt:salt-2"
    );
    let salt2 = ledger
        .epcis(
            ExportFilter {
                lots: Some([id("salt-2")].into()),
                ..ExportFilter::default()
            },
            now(10),
        )
        .await?;
    assert_eq!(
        salt2["epcisBody"]["eventList"].as_array().map(Vec::len),
        Some(2),
        "its receipt and its rejection: {salt2:#}"
    );
    Ok(())
}
