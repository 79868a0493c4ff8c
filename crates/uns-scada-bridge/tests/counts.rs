//! `_count` totals stay monotonic whatever the machine counter does: a reset (to 0, or an edge node
//! that restarts without retentive counters) adds the new raw value on top and is an event, a 16- or
//! 32-bit rollover adds the wrapped difference, and a bridge restart learns the totals back from the
//! retained documents. All through the real broker.

use serde_json::json;
use uns_scada_bridge::BridgeConfig;
use uns_sparkplug::{Metric, Payload, RawValue, Value};

use crate::support::{Edge, TestBridge, payload};

const FILLER: &str = "uns/v1/acme/berlin/packaging/line-1/filler";
const NBIRTH: &str = "spBv1.0/acme-berlin/NBIRTH/line-1";
const DBIRTH: &str = "spBv1.0/acme-berlin/DBIRTH/line-1/filler";
const DDATA: &str = "spBv1.0/acme-berlin/DDATA/line-1/filler";

fn nbirth(bd_seq: i64) -> Payload {
    payload(
        0,
        vec![
            Metric::new("bdSeq", Value::Int64(bd_seq)),
            Metric::new("Node Control/Rebirth", Value::Boolean(false)),
        ],
    )
}

fn dbirth(good: Value, reject: Value) -> Payload {
    payload(
        1,
        vec![
            Metric {
                alias: Some(1),
                ..Metric::new("Count/Good", good)
            },
            Metric {
                alias: Some(2),
                ..Metric::new("Count/Scrap", reject)
            },
        ],
    )
}

fn data(seq: u64, alias: u64, raw: RawValue) -> Payload {
    payload(
        seq,
        vec![Metric {
            alias: Some(alias),
            value: Some(Value::Untyped(raw)),
            ..Metric::default()
        }],
    )
}

/// A new edge session (as after a restart of the machine's controller): NBIRTH, DBIRTH.
async fn born(uns: &TestBridge, id: &str, bd_seq: i64, good: Value, reject: Value) -> Edge {
    let edge = Edge::connect(uns.addr, id, None)
        .await
        .expect("edge connects");
    edge.send(NBIRTH, &nbirth(bd_seq)).await.expect("NBIRTH");
    edge.send(DBIRTH, &dbirth(good, reject))
        .await
        .expect("DBIRTH");
    edge
}

async fn good_total(uns: &mut TestBridge, qty: f64) -> anyhow::Result<serde_json::Value> {
    uns.wait_json(&format!("{FILLER}/_count/good"), |doc| {
        doc["total"]["qty"] == json!(qty)
    })
    .await
}

#[tokio::test]
async fn a_reset_to_zero_keeps_the_total_and_is_an_event() -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    let edge = born(&uns, "line-1", 0, Value::UInt64(100), Value::UInt64(0)).await;
    good_total(&mut uns, 100.0).await?;
    edge.send(DDATA, &data(2, 1, RawValue::Long(120))).await?;
    good_total(&mut uns, 120.0).await?;
    // The counter is reset on the machine.
    edge.send(DDATA, &data(3, 1, RawValue::Long(0))).await?;
    edge.send(DDATA, &data(4, 1, RawValue::Long(5))).await?;
    let doc = good_total(&mut uns, 125.0).await?;
    assert_eq!(doc["raw"], json!(5.0));
    assert_eq!(doc["resets"], json!(1));
    assert!(doc["last_reset_ms"].is_i64(), "{doc}");
    let event = uns
        .wait_json(&format!("{FILLER}/_count/events"), |_| true)
        .await?;
    assert_eq!(event["schema"], "uns/count-event/v1");
    assert_eq!(event["type"], "reset");
    assert_eq!(event["kind"], "good");
    assert_eq!(event["raw_before"], json!(120.0));
    assert_eq!(event["raw_after"], json!(0.0));
    assert_eq!(event["total"], json!({"qty": 120.0, "uom": "EA"}));

    // The edge node restarts and its counter starts over at 2: another reset, the total carries on.
    drop(edge);
    let _edge = born(&uns, "line-1-again", 1, Value::UInt64(2), Value::UInt64(0)).await;
    let doc = good_total(&mut uns, 127.0).await?;
    assert_eq!(doc["resets"], json!(2));
    // No published total ever went down.
    let totals: Vec<f64> = uns
        .seen
        .iter()
        .filter(|(topic, _)| *topic == format!("{FILLER}/_count/good"))
        .filter_map(|(_, payload)| serde_json::from_slice::<serde_json::Value>(payload).ok())
        .filter_map(|doc| doc["total"]["qty"].as_f64())
        .collect();
    assert!(
        totals.windows(2).all(|pair| pair[0] <= pair[1]),
        "{totals:?}"
    );
    Ok(())
}

#[tokio::test]
async fn rollovers_of_16_and_32_bit_counters_add_the_wrapped_difference() -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    let edge = born(
        &uns,
        "line-1",
        0,
        Value::UInt16(65_530),
        Value::UInt32(4_294_967_290),
    )
    .await;
    good_total(&mut uns, 65_530.0).await?;
    edge.send(DDATA, &data(2, 1, RawValue::Int(4))).await?;
    let doc = good_total(&mut uns, 65_540.0).await?;
    assert_eq!(doc["rollovers"], json!(1));
    assert!(doc.get("resets").is_none(), "a rollover is no reset: {doc}");
    edge.send(DDATA, &data(3, 2, RawValue::Long(3))).await?;
    let scrap = uns
        .wait_json(&format!("{FILLER}/_count/scrap"), |doc| {
            doc["total"]["qty"] == json!(4_294_967_299.0_f64)
        })
        .await?;
    assert_eq!(scrap["rollovers"], json!(1));
    assert_eq!(scrap["raw"], json!(3.0));
    Ok(())
}

#[tokio::test]
async fn a_bridge_restart_learns_the_totals_from_the_retained_documents() -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    let edge = born(&uns, "line-1", 0, Value::UInt64(100), Value::UInt64(0)).await;
    good_total(&mut uns, 100.0).await?;
    // A reset, then 30 parts: total 130, raw 30.
    edge.send(DDATA, &data(2, 1, RawValue::Long(0))).await?;
    edge.send(DDATA, &data(3, 1, RawValue::Long(30))).await?;
    good_total(&mut uns, 130.0).await?;

    uns.restart().await?;
    // The new bridge asks for a rebirth of the node it never saw born; the node rebirths with 40.
    edge.send(DDATA, &data(4, 1, RawValue::Long(35))).await?;
    uns.wait_raw("spBv1.0/acme-berlin/NCMD/line-1").await?;
    edge.send(NBIRTH, &nbirth(0)).await?;
    edge.send(DBIRTH, &dbirth(Value::UInt64(40), Value::UInt64(0)))
        .await?;
    // 130 + (40 - 30), not the machine's 40.
    let doc = good_total(&mut uns, 140.0).await?;
    assert_eq!(doc["resets"], json!(1), "the reset count carried over too");
    Ok(())
}
