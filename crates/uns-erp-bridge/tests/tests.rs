//! The ERP bridge against a real broker, real HTTP and a real redb file: orders in (JSON and B2MML of
//! each version) published retained, the bad-input table, tokens, and confirmations out through the
//! outbox against a stand-in ERP that fails, hangs and comes back.

#[allow(
    unreachable_pub,
    dead_code,
    reason = "a module of the test binary: pub for the tests, not for a library"
)]
mod support;

use std::time::Duration;

use support::{DEADLINE, ErpMode, TestErp, start};
use uns_erp_bridge::ErpBridgeConfig;
use uns_model::payload::{
    ActivityTimes, EventHeader, ProductionOrder, Quantity, SchemaTag, Timestamp, Uom,
    WorkOrderEvent, WorkOrderEventKind, decode,
};
use uns_model::topic::{Class, Id, UnsTopic};

const ORDERS_FILTER: &str = "uns/v1/+/+/_erp/production-orders/+";
const MATERIALS: &[&str] = &[
    "FG-1",
    "RM-1",
    "FG-WATER-05",
    "RM-PREFORM",
    "RM-CAP",
    "FG-JUICE-1",
    "RM-JUICE",
    "FG-LEMONADE",
    "RM-SUGAR",
];

fn is_order(message: &uns_client::Message) -> bool {
    message.topic.contains("/_erp/production-orders/")
}

const GOOD_JSON: &str = r#"{"id":"PO 4711/2","material":"FG-1","quantity":{"qty":100,"uom":"PCE"},"equipment":"WC-4711",
  "components":[{"material":"RM-1","quantity":{"qty":5,"uom":"KG"},"material_use":"consumed"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_b2mml_of_each_version_are_published_retained_and_idempotent() -> anyhow::Result<()>
{
    let mut uns = start(ErpBridgeConfig::default()).await?;
    uns.load_master(MATERIALS).await?;
    uns.subscribe(ORDERS_FILTER).await?;

    let (status, body) = uns
        .post(
            "/api/v1/production-orders",
            "application/json",
            GOOD_JSON.as_bytes(),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let message = uns.next(is_order).await?;
    assert_eq!(
        message.topic,
        "uns/v1/acme/berlin/_erp/production-orders/po-4711-2"
    );
    assert!(message.retain || !message.payload.is_empty());
    let order: ProductionOrder = decode(&message.payload)?;
    assert_eq!(order.erp_ref, "PO 4711/2");
    assert_eq!(order.revision, 1);
    assert_eq!(
        order.hierarchy_scope.to_string(),
        "acme/berlin/packaging/line-1"
    );
    assert_eq!(order.components[0].quantity.uom, Uom::KGM);

    // The same order again: a no-op. A changed quantity: revision 2, same topic.
    let (status, body) = uns
        .post(
            "/api/v1/production-orders",
            "application/json",
            GOOD_JSON.as_bytes(),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("unchanged"), "{body}");
    let changed = GOOD_JSON.replace("\"qty\":100", "\"qty\":120");
    let (status, body) = uns
        .post(
            "/api/v1/production-orders",
            "application/json",
            changed.as_bytes(),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    // The observer may hold revision 1 twice: `subscribe` does not wait for the SUBACK, so
    // the first post can race it and arrive both live and as the retained copy the
    // subscription delivers (MQTT allows both). Wait for the revision, not for "the next".
    let message = uns
        .next(|m| {
            is_order(m) && decode::<ProductionOrder>(&m.payload).is_ok_and(|o| o.revision == 2)
        })
        .await?;
    let order: ProductionOrder = decode(&message.payload)?;
    assert_eq!((order.revision, order.quantity.qty), (2, 120.0));

    for (file, content_type, topics) in [
        (
            &include_bytes!("data/v0401-sync.xml")[..],
            "application/xml",
            &["uns/v1/acme/berlin/_erp/production-orders/po-4711-2"][..],
        ),
        (
            include_bytes!("data/v0600-process-latin1.xml"),
            "text/xml; charset=iso-8859-1",
            &["uns/v1/acme/berlin/_erp/production-orders/600001"],
        ),
        (
            include_bytes!("data/v7-schedule.xml"),
            "application/xml",
            &[
                "uns/v1/acme/berlin/_erp/production-orders/700001",
                "uns/v1/acme/berlin/_erp/production-orders/700002",
            ],
        ),
    ] {
        let (status, body) = uns
            .post("/api/v1/production-orders", content_type, file)
            .await?;
        assert!(status == 201 || status == 200, "{status} {body}");
        for topic in topics {
            let message = uns.next(|m| is_order(m) && m.topic == *topic).await?;
            let order: ProductionOrder = decode(&message.payload)?;
            assert!(!order.material.is_empty());
        }
    }
    // The V0401 file is order "PO 4711/2" again with other content: a revision, not a duplicate.
    let (_, listed) = uns.get("/api/v1/production-orders", None).await?;
    let listed: Vec<ProductionOrder> = serde_json::from_str(&listed)?;
    assert_eq!(listed.len(), 4);
    let po = listed
        .iter()
        .find(|o| o.erp_ref == "PO 4711/2")
        .expect("listed");
    assert_eq!(po.revision, 3);
    assert_eq!(po.operations.len(), 3);
    assert_eq!(
        po.operations[1].parent_operation_id.as_deref(),
        Some("0010")
    );

    // A new subscriber sees the orders retained.
    uns.subscribe("uns/v1/acme/berlin/_erp/production-orders/600001")
        .await?;
    let again = uns.next(|m| m.topic.ends_with("/600001")).await?;
    assert!(again.retain);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_is_published() -> anyhow::Result<()> {
    let mut uns = start(ErpBridgeConfig::default()).await?;
    uns.load_master(&["FG-1", "RM-1"]).await?;
    uns.subscribe(ORDERS_FILTER).await?;
    uns.subscribe("uns/v1/+/+/_errors").await?;
    let json = "application/json";
    let xml = "application/xml";
    let big = format!(
        r#"{{"id":"A","material":"FG-1","quantity":{{"qty":1,"uom":"EA"}},"description":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", json, b"{\"id\": ".to_vec(), 400, "invalid JSON"),
        ("malformed XML", xml, b"<ProductionSchedule xmlns=\"http://www.mesa.org/xml/B2MML\"><ProductionRequest>".to_vec(), 400, "invalid XML"),
        ("unknown material", json, GOOD_JSON.replace("\"FG-1\"", "\"FG-404\"").into_bytes(), 422, "FG-404"),
        ("unknown equipment", json, GOOD_JSON.replace("WC-4711", "WC-0000").into_bytes(), 422, "WC-0000"),
        ("zero quantity", json, GOOD_JSON.replace("\"qty\":100", "\"qty\":0").into_bytes(), 422, "greater than zero"),
        ("negative quantity", json, GOOD_JSON.replace("\"qty\":100", "\"qty\":-3").into_bytes(), 422, "greater than zero"),
        ("unknown unit", json, GOOD_JSON.replace("PCE", "BANANA").into_bytes(), 422, "BANANA"),
        ("wrong content type", "text/plain", GOOD_JSON.as_bytes().to_vec(), 415, "content type"),
        ("DOCTYPE", xml, b"<!DOCTYPE x [<!ENTITY a \"b\">]><ProductionSchedule xmlns=\"http://www.mesa.org/xml/B2MML\"/>".to_vec(), 400, "DOCTYPE"),
    ];
    for (what, content_type, body, expected, needle) in &cases {
        let (status, answer) = uns
            .post("/api/v1/production-orders", content_type, body)
            .await?;
        assert_eq!(status, *expected, "{what}: {answer}");
        assert!(answer.contains(needle), "{what}: {answer}");
        if *expected == 422 {
            let parsed: serde_json::Value = serde_json::from_str(&answer)?;
            let errors = parsed["errors"].as_array().expect("errors list");
            assert!(
                errors
                    .iter()
                    .all(|e| e["path"].is_string() && e["message"].is_string()),
                "{what}: {answer}"
            );
        }
    }
    // 10 MB: refused from its Content-Length, before the body is read (so the client may not even
    // get to send it all).
    let (status, answer) =
        support::post_early_answer(uns.http, "/api/v1/production-orders", json, big.as_bytes())
            .await?;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("max_body_bytes"), "{answer}");
    // Every problem at once: one order with three faults gives three errors.
    let (status, answer) = uns
        .post(
            "/api/v1/production-orders",
            json,
            GOOD_JSON
                .replace("FG-1", "FG-404")
                .replace("PCE", "XX")
                .replace("WC-4711", "WC-0")
                .as_bytes(),
        )
        .await?;
    assert_eq!(status, 422);
    let parsed: serde_json::Value = serde_json::from_str(&answer)?;
    assert_eq!(
        parsed["errors"].as_array().map(Vec::len),
        Some(3),
        "{answer}"
    );
    // A request with one good and one bad order publishes neither.
    let pair = format!(
        "[{GOOD_JSON},{}]",
        GOOD_JSON
            .replace("PO 4711/2", "PO 2")
            .replace("FG-1", "NOPE")
    );
    let (status, _) = uns
        .post("/api/v1/production-orders", json, pair.as_bytes())
        .await?;
    assert_eq!(status, 422);
    // A rejection is reported on _errors.
    let report = uns.next(|m| m.topic.ends_with("/_errors")).await?;
    assert!(String::from_utf8_lossy(&report.payload).contains("erp-bridge"));
    // The service is healthy and the first order published is the good one posted now, whose id
    // is no valid topic id: kept in erp_ref, slugged in the topic.
    let odd = GOOD_JSON.replace("PO 4711/2", "Auftrag #7 / Änderung");
    let (status, body) = uns
        .post("/api/v1/production-orders", json, odd.as_bytes())
        .await?;
    assert_eq!(status, 201, "{body}");
    let first = uns.next(is_order).await?;
    assert_eq!(
        first.topic,
        "uns/v1/acme/berlin/_erp/production-orders/auftrag-7-nderung"
    );
    let order: ProductionOrder = decode(&first.payload)?;
    assert_eq!(
        (order.erp_ref.as_str(), order.revision),
        ("Auftrag #7 / Änderung", 1)
    );
    let (status, health) = uns.get("/healthz", None).await?;
    assert_eq!(status, 200, "{health}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_a_bearer_token_is_required() -> anyhow::Result<()> {
    let token = "s3cret-token-for-tests";
    let uns = start(ErpBridgeConfig {
        tokens: vec![uns_erp_bridge::ApiToken {
            name: "sap".to_owned(),
            token: token.to_owned(),
        }],
        ..ErpBridgeConfig::default()
    })
    .await?;
    let path = "/api/v1/master-data/materials";
    let (status, body) = uns.get(path, None).await?;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    let (status, _) = uns.get(path, Some("wrong-token-wrong-token")).await?;
    assert_eq!(status, 401);
    let (status, _) = uns.get(path, Some(token)).await?;
    assert_eq!(status, 200);
    let (status, _) = support::http(
        uns.http,
        "POST",
        "/api/v1/production-orders",
        Some("application/json"),
        GOOD_JSON.as_bytes(),
        None,
    )
    .await?;
    assert_eq!(status, 401);
    let (status, body) = support::http(
        uns.http,
        "POST",
        "/api/v1/production-orders",
        Some("application/json"),
        GOOD_JSON.as_bytes(),
        Some(token),
    )
    .await?;
    assert_eq!(status, 422, "authorized, then validated: {body}");
    // The OpenAPI description is public.
    let (status, body) = uns.get("/api/v1/openapi.json", None).await?;
    assert_eq!(status, 200);
    let openapi: serde_json::Value = serde_json::from_str(&body)?;
    for path in [
        "/api/v1/production-orders",
        "/api/v1/dead-letters/{id}/replay",
        "/api/v1/work-orders/{id}/release",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path}");
    }
    Ok(())
}

fn confirmation(wo: &str, good: f64) -> WorkOrderEvent {
    let now = Timestamp::from(chrono::Utc::now());
    WorkOrderEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(uuid::Uuid::now_v7(), now, now),
        wo_id: Id::new(wo).expect("id"),
        kind: WorkOrderEventKind::ConfirmationRequested {
            is_final: true,
            sequence: 1,
            erp_ref: Some(wo.to_uppercase()),
            production_order: None,
            good: Quantity::new(good, Uom::EA),
            scrap: Quantity::new(1.0, Uom::EA),
            rework: Quantity::new(0.0, Uom::EA),
            operation_id: None,
            activity: ActivityTimes::default(),
            goods_movements: Vec::new(),
        },
    }
}

fn events_topic(wo: &str) -> UnsTopic {
    UnsTopic::Located {
        location: "acme/berlin/packaging/line-1".parse().expect("location"),
        class: Class::WorkOrderEvents(Id::new(wo).expect("id")),
    }
}

async fn wait_until(what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + DEADLINE * 2;
    while !check() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn fast_retries(url: String) -> ErpBridgeConfig {
    ErpBridgeConfig {
        erp_url: url,
        timeout_ms: 300,
        retry_initial_ms: 20,
        retry_max_ms: 200,
        max_attempts: 1000,
        ..ErpBridgeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_down_then_back_every_confirmation_arrives_once() -> anyhow::Result<()> {
    // Connection refused first: a port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut uns = start(fast_retries(format!("http://{port}/confirmations"))).await?;
    uns.subscribe("uns/v1/+/+/+/+/_wo/+/events").await?;
    let events: Vec<WorkOrderEvent> = (0..20)
        .map(|n| confirmation(&format!("wo-{n}"), 10.0 + f64::from(n)))
        .collect();
    for event in &events[..10] {
        uns.observer
            .publish(&events_topic(event.wo_id.as_str()), event)
            .await?;
    }
    // Let the bridge fail against the closed port for a while: wait until its retries show in metrics.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, metrics) = uns.get("/metrics", None).await?;
        let failing = metrics.lines().any(|line| {
            line.starts_with("uns_erp_confirmation_failed_attempts_total") && !line.ends_with(" 0")
        });
        let waiting = metrics
            .lines()
            .any(|line| line.starts_with("uns_erp_outbox_depth ") && !line.ends_with(" 0"));
        if failing && waiting {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no failed attempts on /metrics: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then an ERP that answers 500, then one that hangs past the timeout, then one that accepts.
    let erp = TestErp::start_on(port, ErpMode::Fail).await?;
    for event in &events[10..] {
        uns.observer
            .publish(&events_topic(event.wo_id.as_str()), event)
            .await?;
    }
    wait_until("500s", || erp.n_requests() >= 20).await?;
    erp.set_mode(ErpMode::Hang);
    let seen = erp.n_requests();
    wait_until("timeouts", || erp.n_requests() >= seen + 5).await?;
    erp.set_mode(ErpMode::Accept);
    wait_until("every confirmation accepted", || {
        erp.accepted().len() == events.len()
    })
    .await?;
    let mut n_posted = 0;
    while n_posted < events.len() {
        let message = uns.next(|m| m.topic.ends_with("/events")).await?;
        if let Ok(event) = decode::<WorkOrderEvent>(&message.payload)
            && let WorkOrderEventKind::ConfirmationPosted { erp_document, .. } = event.kind
        {
            assert!(erp_document.is_some_and(|d| d.starts_with("CONF-")));
            n_posted += 1;
        }
    }
    // Once each: the keys are the event ids, each accepted exactly once.
    let accepted = erp.accepted();
    for event in &events {
        assert_eq!(
            accepted.get(&event.header.event_id.to_string()),
            Some(&1),
            "{}",
            event.wo_id
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_announced_listed_and_replayed() -> anyhow::Result<()> {
    let erp = TestErp::start(ErpMode::Fail).await?;
    let mut uns = start(ErpBridgeConfig {
        max_attempts: 3,
        ..fast_retries(erp.url())
    })
    .await?;
    uns.subscribe("uns/v1/+/+/+/+/_wo/+/events").await?;
    uns.subscribe("uns/v1/+/+/_errors").await?;
    let event = confirmation("wo-dead", 5.0);
    uns.observer
        .publish(&events_topic("wo-dead"), &event)
        .await?;
    // The dead letter is announced twice: on _errors and as confirmation_failed, in either order.
    let (mut failed, mut report) = (None, None);
    while failed.is_none() || report.is_none() {
        let message = uns
            .next(|m| m.topic.ends_with("/_errors") || m.topic.ends_with("/events"))
            .await?;
        if message.topic.ends_with("/_errors") {
            report = Some(message);
        } else if String::from_utf8_lossy(&message.payload).contains("confirmation_failed") {
            failed = Some(message);
        }
    }
    let report = report.expect("seen");
    assert!(String::from_utf8_lossy(&report.payload).contains("dead-lettered"));
    let failed: WorkOrderEvent = decode(&failed.expect("seen").payload)?;
    let WorkOrderEventKind::ConfirmationFailed {
        request_event_id,
        error,
        attempts,
        dead_lettered,
    } = failed.kind
    else {
        anyhow::bail!("not confirmation_failed");
    };
    assert_eq!(
        (request_event_id, attempts, dead_lettered),
        (event.header.event_id, 3, true)
    );
    assert!(error.contains("500"), "{error}");
    let (status, listed) = uns.get("/api/v1/dead-letters", None).await?;
    assert_eq!(status, 200);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed)?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["key"], event.header.event_id.to_string());
    let id = listed[0]["id"].as_u64().expect("id");

    erp.set_mode(ErpMode::Accept);
    let (status, body) = uns
        .post(
            &format!("/api/v1/dead-letters/{id}/replay"),
            "application/json",
            b"",
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, _) = uns
        .post("/api/v1/dead-letters/999/replay", "application/json", b"")
        .await?;
    assert_eq!(status, 404);
    uns.next(|m| String::from_utf8_lossy(&m.payload).contains("confirmation_posted"))
        .await?;
    assert_eq!(
        erp.accepted().get(&event.header.event_id.to_string()),
        Some(&1)
    );
    let (_, listed) = uns.get("/api/v1/dead-letters", None).await?;
    assert_eq!(listed.trim(), "[]");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2mml_format_posts_production_performance() -> anyhow::Result<()> {
    let erp = TestErp::start(ErpMode::Accept).await?;
    let uns = start(ErpBridgeConfig {
        format: uns_erp_bridge::outbound::Format::B2mml,
        ..fast_retries(erp.url())
    })
    .await?;
    let event = confirmation("wo-xml", 42.0);
    uns.observer
        .publish(&events_topic("wo-xml"), &event)
        .await?;
    wait_until("the posting", || !erp.accepted().is_empty()).await?;
    let state = erp.state.lock().expect("lock");
    assert_eq!(state.last_content_type, "application/xml");
    assert!(
        state
            .last_body
            .contains("<ProductionPerformance xmlns=\"http://www.mesa.org/xml/B2MML-V0600\">")
    );
    assert!(state.last_body.contains("<ID>WO-XML</ID>"));
    assert!(
        state
            .last_body
            .contains("<QuantityString>42</QuantityString>")
    );
    Ok(())
}
