//! The bridge end to end with an edge node written here: births and data become `_tag`, `_state`,
//! `_state/events` and `_count` documents with units, context and origin; historical values do not
//! replace the retained current value (they go to `_tag/…/_history`, once each, in order); deaths turn
//! tags stale; bad input lands on `_errors`; data from
//! an unknown node brings a rebirth request.

use std::time::Duration;

use serde_json::json;
use uns_scada_bridge::BridgeConfig;
use uns_sparkplug::{DataType, Metric, Payload, PropertySet, PropertyValue, Value};

use crate::support::{Edge, TestBridge, payload};

const FILLER: &str = "uns/v1/acme/berlin/packaging/line-1/filler";

fn nbirth() -> Payload {
    payload(
        0,
        vec![
            Metric::new("bdSeq", Value::Int64(0)),
            Metric::new("Node Control/Rebirth", Value::Boolean(false)),
        ],
    )
}

fn with_alias(name: &str, alias: u64, value: Value) -> Metric {
    Metric {
        alias: Some(alias),
        ..Metric::new(name, value)
    }
}

fn dbirth() -> Payload {
    let cel = PropertySet {
        properties: vec![(
            "engUnit".to_owned(),
            PropertyValue {
                datatype: Some(DataType::String),
                value: Some(Value::String("CEL".to_owned())),
            },
        )],
    };
    payload(
        1,
        vec![
            Metric {
                properties: Some(cel),
                ..with_alias("Process/Temperature", 1, Value::Float(71.4))
            },
            with_alias("State/Code", 2, Value::Int32(6)),
            with_alias("State/Name", 3, Value::String("Execute".to_owned())),
            with_alias("Count/Good", 4, Value::UInt64(10)),
            with_alias("Level", 5, Value::Int8(-5)),
            with_alias("Big", 6, Value::UInt32(4_000_000_000)),
        ],
    )
}

fn by_alias(alias: u64, value: Value) -> Metric {
    Metric {
        alias: Some(alias),
        value: Some(value),
        ..Metric::default()
    }
}

#[tokio::test]
async fn births_and_data_become_readable_uns_documents() -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    let will = (
        "spBv1.0/acme-berlin/NDEATH/line-1".to_owned(),
        payload(0, vec![Metric::new("bdSeq", Value::Int64(0))]),
    );
    let edge = Edge::connect(uns.addr, "line-1", Some(will)).await?;
    edge.send("spBv1.0/acme-berlin/NBIRTH/line-1", &nbirth())
        .await?;
    edge.send("spBv1.0/acme-berlin/DBIRTH/line-1/filler", &dbirth())
        .await?;

    let tag = uns
        .wait_json(&format!("{FILLER}/_tag/process/temperature"), |_| true)
        .await?;
    assert_eq!(tag["schema"], "uns/tag/v1");
    assert_eq!(tag["value"], json!(71.4));
    assert_eq!(tag["unit"], "CEL");
    assert_eq!(tag["quality"], "good");
    assert_eq!(tag["timestamp_ms"], json!(1_741_068_000_000_u64));
    assert_eq!(
        tag["src"],
        json!({"group": "acme-berlin", "edge": "line-1", "device": "filler", "metric": "Process/Temperature"})
    );
    assert_eq!(
        uns.wait_json(&format!("{FILLER}/_tag/level"), |_| true)
            .await?["value"],
        json!(-5)
    );
    assert_eq!(
        uns.wait_json(&format!("{FILLER}/_tag/big"), |_| true)
            .await?["value"],
        json!(4_000_000_000_u64)
    );
    let state = uns.wait_json(&format!("{FILLER}/_state"), |_| true).await?;
    assert_eq!(
        state["state"],
        json!({"category": "running", "code": "6", "name": "Execute"})
    );
    assert_eq!(state["mode"], "production");
    let count = uns
        .wait_json(&format!("{FILLER}/_count/good"), |_| true)
        .await?;
    assert_eq!(count["total"], json!({"qty": 10.0, "uom": "EA"}));

    // Context: the cell's active work order (published here, as the work-order service will).
    uns.publish_raw(
        &format!("{FILLER}/_wo/_active"),
        serde_json::to_vec(&running_order())?,
        true,
    )
    .await?;
    // The bridge sees it asynchronously: keep sending until a tag carries it.
    let mut seq = 2;
    let tag = loop {
        edge.send(
            "spBv1.0/acme-berlin/DDATA/line-1/filler",
            &payload(
                seq,
                vec![by_alias(
                    1,
                    Value::Untyped(uns_sparkplug::RawValue::Float(72.0)),
                )],
            ),
        )
        .await?;
        seq += 1;
        let with_context = uns
            .wait_json_within(
                &format!("{FILLER}/_tag/process/temperature"),
                Duration::from_millis(500),
                |tag| tag["value"] == json!(72.0) && !tag["context"].is_null(),
            )
            .await;
        if let Ok(tag) = with_context {
            break tag;
        }
        anyhow::ensure!(seq < 100, "context never arrived");
    };
    assert_eq!(
        tag["context"],
        json!({"wo_id": "wo-10234", "operation_id": "0010", "lot": "l-8891"})
    );

    // A state change: `_state` and a `_state/events` transition with the duration of the old state.
    let mut jam = payload(
        seq,
        vec![
            by_alias(2, Value::Untyped(uns_sparkplug::RawValue::Int(11))),
            by_alias(
                3,
                Value::Untyped(uns_sparkplug::RawValue::String("Held".to_owned())),
            ),
        ],
    );
    jam.metrics[0].timestamp = Some(1_741_068_060_000);
    seq += 1;
    edge.send("spBv1.0/acme-berlin/DDATA/line-1/filler", &jam)
        .await?;
    let event = uns
        .wait_json(&format!("{FILLER}/_state/events"), |_| true)
        .await?;
    assert_eq!(event["from"]["state"]["category"], "running");
    assert_eq!(
        event["to"]["state"],
        json!({"category": "unplanned_down", "code": "11", "name": "Held"})
    );
    assert_eq!(event["duration_ms"], json!(60_000));

    // A historical value: delivered, but the retained value stays the current one.
    let old = Metric {
        timestamp: Some(1_000),
        is_historical: true,
        ..by_alias(1, Value::Untyped(uns_sparkplug::RawValue::Float(10.0)))
    };
    edge.send(
        "spBv1.0/acme-berlin/DDATA/line-1/filler",
        &payload(seq, vec![old]),
    )
    .await?;
    seq += 1;
    uns.wait_json(
        &format!("{FILLER}/_tag/process/temperature/_history"),
        |tag| tag["value"] == json!(10.0) && tag["historical"] == true,
    )
    .await?;
    let mut late =
        uns_e2e::Subscriber::connect(uns.addr, &[&format!("{FILLER}/_tag/process/temperature")])
            .await?;
    let (_, retained, is_retained) =
        tokio::time::timeout(crate::support::TIMEOUT, late.messages.recv())
            .await?
            .expect("retained tag");
    assert!(is_retained);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&retained)?["value"],
        json!(72.0)
    );

    // DDEATH: every tag of the device is re-published stale (never deleted), the state is unknown.
    edge.send(
        "spBv1.0/acme-berlin/DDEATH/line-1/filler",
        &payload(seq, vec![]),
    )
    .await?;
    let stale = uns
        .wait_json(&format!("{FILLER}/_tag/level"), |tag| {
            tag["quality"] == "stale"
        })
        .await?;
    assert_eq!(stale["value"], json!(-5));
    let state = uns
        .wait_json(&format!("{FILLER}/_state"), |state| {
            state["state"]["category"] == "unknown"
        })
        .await?;
    assert_eq!(state["state"]["name"], "offline");
    Ok(())
}

#[tokio::test]
async fn bad_input_goes_to_errors_and_unknown_nodes_get_a_rebirth_request() -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    // Corrupt protobuf from a mapped node.
    uns.publish_raw(
        "spBv1.0/acme-berlin/NBIRTH/line-2",
        vec![0xFF, 0xFF, 0xFF],
        false,
    )
    .await?;
    let report = uns
        .wait_json("uns/v1/acme/berlin/packaging/line-2/_errors", |_| true)
        .await?;
    assert_eq!(report["schema"], "uns/error-report/v1");
    assert_eq!(report["service"], "scada-bridge");
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("bad payload"),
        "{report}"
    );
    assert_eq!(report["payload_excerpt"], "hex:ffffff");
    // A wrong topic shape, reported at the default location.
    uns.publish_raw("spBv1.0/acme-berlin/NDATA", vec![], false)
        .await?;
    let report = uns
        .wait_json("uns/v1/acme/berlin/_errors", |_| true)
        .await?;
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("bad topic"),
        "{report}"
    );
    // Data from a node the bridge never saw born (unmapped: default location) → NCMD rebirth.
    let data = payload(5, vec![by_alias(1, Value::Int64(1))]);
    uns.publish_raw(
        "spBv1.0/other-group/NDATA/press-7",
        uns_sparkplug::encode(&data)?,
        false,
    )
    .await?;
    let ncmd = uns.wait_raw("spBv1.0/other-group/NCMD/press-7").await?;
    let ncmd = uns_sparkplug::decode(&ncmd)?;
    assert_eq!(
        ncmd.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );
    assert_eq!(ncmd.metrics[0].value, Some(Value::Boolean(true)));
    uns.wait_json("uns/v1/acme/berlin/other-group/press-7/_errors", |report| {
        report["reason"] == "no NBIRTH from this edge node is in effect"
    })
    .await?;
    // The loop kept running and counted every rejection.
    let text = uns.metrics.encode();
    assert!(text.contains("kind=\"bad_payload\""), "{text}");
    assert!(text.contains("kind=\"bad_topic\""), "{text}");
    Ok(())
}

/// The running order of the filler, as the workorders service publishes it on `_wo/_active`.
fn running_order() -> uns_model::payload::WorkOrder {
    use uns_model::payload::{
        MaterialActual, MaterialUse, Operation, Quantity, SchemaTag, Timestamp, Uom, WorkOrder,
        WorkOrderQuantities, WorkOrderStatus,
    };
    use uns_model::topic::Id;
    let id = |text: &str| Id::new(text).expect("test ids are valid");
    let zero = Quantity::new(0.0, Uom::EA);
    WorkOrder {
        schema: SchemaTag::default(),
        id: id("wo-10234"),
        erp_ref: None,
        production_order: None,
        material: "FG-1".to_owned(),
        status: WorkOrderStatus::Running,
        quantities: WorkOrderQuantities {
            planned: Quantity::new(100.0, Uom::EA),
            good: zero,
            scrap: zero,
            rework: zero,
        },
        hierarchy_scope: "acme/berlin/packaging/line-1"
            .parse()
            .expect("valid location"),
        operations: vec![Operation {
            operation_id: "0010".to_owned(),
            description: None,
            parent_operation_id: None,
            hierarchy_scope: None,
            equipment: None,
            quantity: None,
        }],
        components: Vec::new(),
        lots: vec![MaterialActual {
            lot: id("l-8891"),
            material: "FG-1".to_owned(),
            quantity: zero,
            material_use: MaterialUse::Produced,
        }],
        updated_at: Timestamp::from_unix_ms(1_741_068_000_000).expect("valid time"),
    }
}

/// Live value newer, then historical older ones: the retained current value stays, `_history` gets
/// each older value once, in timestamp order (one sent twice is published once), marked historical.
#[tokio::test]
async fn older_values_go_to_history_once_and_never_become_current() -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    let edge = Edge::connect(uns.addr, "line-1", None).await?;
    edge.send("spBv1.0/acme-berlin/NBIRTH/line-1", &nbirth())
        .await?;
    // The birth's value is the current one, at 1_741_068_000_000.
    edge.send("spBv1.0/acme-berlin/DBIRTH/line-1/filler", &dbirth())
        .await?;
    let current = format!("{FILLER}/_tag/process/temperature");
    let history = format!("{current}/_history");
    uns.wait_json(&current, |tag| tag["value"] == json!(71.4))
        .await?;
    let value_at = |seq: u64, timestamp: u64, value: f32, is_historical: bool| {
        let mut data = payload(
            seq,
            vec![Metric {
                timestamp: Some(timestamp),
                is_historical,
                ..by_alias(1, Value::Untyped(uns_sparkplug::RawValue::Float(value)))
            }],
        );
        data.timestamp = Some(timestamp);
        data
    };
    let ddata = "spBv1.0/acme-berlin/DDATA/line-1/filler";
    // Store and forward: an older value flagged historical, sent twice (as a retried forward does).
    edge.send(ddata, &value_at(2, 1_741_067_000_000, 8.5, true))
        .await?;
    edge.send(ddata, &value_at(3, 1_741_067_000_000, 8.5, true))
        .await?;
    // An older value not flagged: late, so it is history too.
    edge.send(ddata, &value_at(4, 1_741_067_500_000, 8.75, false))
        .await?;
    let late = uns
        .wait_json(&history, |tag| tag["value"] == json!(8.75))
        .await?;
    assert_eq!(late["historical"], true);
    let history_values: Vec<(serde_json::Value, serde_json::Value)> = uns
        .seen
        .iter()
        .filter(|(topic, _)| *topic == history)
        .filter_map(|(_, payload)| serde_json::from_slice::<serde_json::Value>(payload).ok())
        .map(|tag| (tag["timestamp_ms"].clone(), tag["value"].clone()))
        .collect();
    assert_eq!(
        history_values,
        vec![
            (json!(1_741_067_000_000_u64), json!(8.5)),
            (json!(1_741_067_500_000_u64), json!(8.75)),
        ],
        "each older value once, in order"
    );
    // The live topic never carried an older value, and its retained value is the current one.
    for (topic, payload) in &uns.seen {
        if *topic == current {
            let tag: serde_json::Value = serde_json::from_slice(payload)?;
            assert_eq!(tag["value"], json!(71.4), "{tag}");
            assert!(tag.get("historical").is_none(), "{tag}");
        }
    }
    let mut late_subscriber = uns_e2e::Subscriber::connect(uns.addr, &[&current]).await?;
    let (_, retained, is_retained) =
        tokio::time::timeout(crate::support::TIMEOUT, late_subscriber.messages.recv())
            .await?
            .expect("retained tag");
    assert!(is_retained);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&retained)?["value"],
        json!(71.4)
    );
    // A newer value is current again.
    edge.send(ddata, &value_at(5, 1_741_068_100_000, 72.5, false))
        .await?;
    uns.wait_json(&current, |tag| tag["value"] == json!(72.5))
        .await?;
    Ok(())
}
