//! Hostile or careless edge nodes (issue 9 items 7-9, issue 10 item 13): names that collide once
//! slugged stay apart and are reported, a flood of bad messages gives a bounded number of `_errors`
//! reports while every one is counted, repeated large births replace each other, and a restart
//! publishes the STATE birth once.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use uns_scada_bridge::BridgeConfig;
use uns_sparkplug::{Metric, Value};

use crate::support::{Edge, TestBridge, payload};

const FILLER: &str = "uns/v1/acme/berlin/packaging/line-1/filler";

fn nbirth() -> uns_sparkplug::Payload {
    payload(0, vec![Metric::new("bdSeq", Value::Int64(0))])
}

/// `Speed`, `speed` and `SPEED` in one DBIRTH: three `_tag` topics, each with its own value, and
/// the collision on `_errors` (counted as `tag_collision`).
#[tokio::test]
async fn names_that_differ_only_by_case_stay_apart_and_are_reported() -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    let edge = Edge::connect(uns.addr, "line-1", None).await?;
    edge.send("spBv1.0/acme-berlin/NBIRTH/line-1", &nbirth())
        .await?;
    let names = [("Speed", 1.0), ("speed", 2.0), ("SPEED", 3.0)];
    let metrics = names
        .iter()
        .map(|(name, value)| Metric::new(*name, Value::Double(*value)))
        .chain(std::iter::once(Metric::new("Level", Value::Double(9.0))))
        .collect();
    edge.send(
        "spBv1.0/acme-berlin/DBIRTH/line-1/filler",
        &payload(1, metrics),
    )
    .await?;
    let report = uns
        .wait_json(&format!("{FILLER}/_errors"), |report| {
            report["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("SPEED"))
        })
        .await?;
    assert_eq!(report["topic"], "spBv1.0/acme-berlin/DBIRTH/line-1/filler");
    // The last birth metric published means all are.
    uns.wait_json(&format!("{FILLER}/_tag/level"), |_| true)
        .await?;
    let mut topic_of: HashMap<String, String> = HashMap::new();
    for (topic, body) in &uns.seen {
        if let Some(path) = topic.strip_prefix(&format!("{FILLER}/_tag/"))
            && let Ok(tag) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(metric) = tag["src"]["metric"].as_str()
        {
            let expected = names.iter().find(|(name, _)| *name == metric);
            if let Some((_, value)) = expected {
                assert_eq!(tag["value"], json!(value), "{topic}");
                let before = topic_of.insert(metric.to_owned(), path.to_owned());
                assert!(
                    before.is_none_or(|before| before == path),
                    "{metric} on two topics"
                );
            }
        }
    }
    assert_eq!(topic_of.len(), 3, "{topic_of:?}");
    let distinct: HashSet<&String> = topic_of.values().collect();
    assert_eq!(distinct.len(), 3, "merged: {topic_of:?}");
    // The documented rule: the lowercase name keeps the plain path, the others get a hash suffix.
    assert_eq!(topic_of["speed"], "speed");
    assert_eq!(topic_of["Speed"], "speed-0a6b8020");
    assert_eq!(topic_of["SPEED"], "speed-5e35d5e0");
    let text = uns.metrics.encode();
    assert!(text.contains("kind=\"tag_collision\""), "{text}");
    Ok(())
}

/// 2 000 corrupt messages from one edge node: the first is reported at once, the other 1 999 in
/// one summary at the end of the window; `/metrics` counts all 2 000.
#[tokio::test]
async fn a_flood_of_bad_messages_gives_one_report_and_one_summary_per_window() -> anyhow::Result<()>
{
    let config = BridgeConfig {
        error_window_ms: 1_500,
        ..BridgeConfig::default()
    };
    let mut uns = TestBridge::start(config).await?;
    let edge = Edge::connect(uns.addr, "broken-line-2", None).await?;
    let n_bad = 2_000_u64;
    for idx in 0..n_bad {
        let payload = vec![0xFF, 0xFF, u8::try_from(idx % 200).unwrap_or(0)];
        edge.client
            .publish(
                "spBv1.0/acme-berlin/NDATA/line-2",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await?;
    }
    edge.wait_acks(n_bad).await?;
    let errors = "uns/v1/acme/berlin/packaging/line-2/_errors";
    let summary = uns
        .wait_json(errors, |report| {
            report["reason"]
                .as_str()
                .is_some_and(|reason| reason.starts_with("1999 more rejected"))
        })
        .await?;
    assert!(
        summary["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("bad_payload 1999")),
        "{summary}"
    );
    // The last example: the 2 000th message's payload.
    assert_eq!(summary["payload_excerpt"], "hex:ffffc7");
    let n_reports = uns.seen.iter().filter(|(topic, _)| topic == errors).count();
    assert_eq!(n_reports, 2, "{}", uns.seen_summary());
    let text = uns.metrics.encode();
    assert!(
        text.contains("uns_scada_bridge_rejected_total{kind=\"bad_payload\"} 2000"),
        "{text}"
    );
    assert!(
        text.contains("uns_scada_bridge_error_reports_suppressed_total 1999"),
        "{text}"
    );
    Ok(())
}
