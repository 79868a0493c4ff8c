//! The service through the real embedded broker and the real HTTP endpoint: transform events in,
//! `_lot` documents out, refusals on `_errors`, a trace over MQTT 5 request/response and over HTTP,
//! quality commands.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use common::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Inbox, Metrics, UnsClient};
use uns_genealogy::{Genealogy, GenealogyConfig, TraceQuery};
use uns_model::payload::{CmdReply, ErrorReport, Lot, LotStatus, decode};
use uns_model::topic::{Class, TopicFilter, UnsTopic};
use uns_service::{
    BrokerEndpoint, ConfigEnv, Configured, Health, HttpServer, RestartPolicy, Routes, Runtime,
    RuntimeOptions, Service,
};

const DEADLINE: Duration = Duration::from_secs(10);

fn topic(class: Class) -> UnsTopic {
    UnsTopic::located(site().expect("site"), class)
}

/// The next message on `inbox` whose topic is `want` and that `accept` takes, within [`DEADLINE`].
async fn next<T>(
    inbox: &mut Inbox,
    want: &UnsTopic,
    accept: impl Fn(&[u8]) -> Option<T>,
) -> anyhow::Result<T> {
    let want = want.to_string();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.context("inbox closed")?;
            if message.topic == want
                && let Some(value) = accept(&message.payload)
            {
                return Ok(value);
            }
        }
    })
    .await
    .with_context(|| format!("nothing matching on {want} within {DEADLINE:?}"))?
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}

async fn http_post(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    let url = format!("http://{addr}{path}");
    let body = body.to_owned();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.as_str())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    })
    .await?
}

fn lot_ids(trace: &Value) -> Vec<String> {
    let mut ids: Vec<String> = trace["lots"]
        .as_array()
        .map(|lots| {
            lots.iter()
                .filter_map(|l| l["lot_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn events_in_lots_out_trace_over_mqtt_and_http() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = uns_broker::start(uns_broker::BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        data_dir: dir.path().join("broker"),
        ..Default::default()
    })
    .await?;
    let url = BrokerUrl::new("127.0.0.1", broker.mqtt_addr().port());
    let stop = CancellationToken::new();
    let (health, metrics, routes) = (Health::default(), Metrics::new(), Routes::default());
    let http = HttpServer::start(
        "127.0.0.1:0".parse()?,
        health.clone(),
        metrics.clone(),
        routes.clone(),
        stop.clone(),
    )
    .await?;
    let env = ConfigEnv {
        demo: false,
        data_dir: dir.path().join("data"),
        http_listen: http.local_addr(),
    };
    let service = Genealogy::configure(GenealogyConfig::default(), &env)?;
    let (observer, mut inbox, _) = UnsClient::start(
        ClientOptions::new(url.clone(), "observer")?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    observer.wait_connected(DEADLINE).await?;
    observer
        .subscribe(&TopicFilter::new("uns/v1/acme/bakery/_lot/+")?)
        .await?;
    observer
        .subscribe(&TopicFilter::new("uns/v1/acme/bakery/_errors")?)
        .await?;
    observer
        .subscribe(&TopicFilter::new("uns/v1/_services/genealogy")?)
        .await?;
    let runtime = Runtime::start(
        RuntimeOptions {
            broker: BrokerEndpoint {
                url,
                credentials: None,
            },
            data_dir: env.data_dir.clone(),
            restart: RestartPolicy::Exit,
            stop_grace: Duration::from_secs(2),
            health,
            metrics,
            routes,
        },
        vec![Configured::new(service)],
    )
    .await?;
    let service_topic = UnsTopic::service("genealogy")?;
    next(&mut inbox, &service_topic, |payload| {
        let health: uns_model::payload::ServiceHealth = decode(payload).ok()?;
        (health.status == uns_model::payload::HealthStatus::Running).then_some(())
    })
    .await?;

    let events = topic(Class::GenealogyEvents);
    observer
        .publish(&events, &receive(1, "flour-1", "flour", 100.0, "M-1"))
        .await?;
    observer
        .publish(&events, &receive(2, "sugar-1", "sugar", 50.0, "S-1"))
        .await?;
    let wo1 = transform(
        10,
        "wo-1",
        vec![kg("flour-1", 60.0), kg("sugar-1", 20.0)],
        vec![new_kg("dough-1", "dough", 80.0)],
    );
    observer.publish(&events, &wo1).await?;
    // Delivered twice (at least once): applied once.
    observer.publish(&events, &wo1).await?;
    let dough: Lot = next(&mut inbox, &topic(Class::Lot(id("dough-1"))), |p| {
        decode(p).ok()
    })
    .await?;
    assert_eq!(dough.quantity.qty, 80.0);
    assert_eq!(dough.produced_by.as_ref().map(|w| w.as_str()), Some("wo-1"));

    // Malformed, and an unknown input lot: both on _errors, nothing invented.
    let errors = topic(Class::Errors);
    observer
        .publish_bytes(
            &events,
            bytes::Bytes::from_static(b"{\"type\":\"transform\"}"),
        )
        .await?;
    let report: ErrorReport = next(&mut inbox, &errors, |p| decode(p).ok()).await?;
    assert!(
        report.reason.contains("not a genealogy event"),
        "{}",
        report.reason
    );
    observer
        .publish(
            &events,
            &transform(
                11,
                "wo-2",
                vec![kg("salt-404", 1.0)],
                vec![new_kg("dough-2", "dough", 1.0)],
            ),
        )
        .await?;
    let report: ErrorReport = next(&mut inbox, &errors, |p| decode(p).ok()).await?;
    assert!(report.reason.contains("salt-404"), "{}", report.reason);

    // Trace over MQTT 5 request/response.
    let reply = observer
        .request(
            &topic(Class::Cmd(vec![id("trace")])),
            &TraceQuery::backward(id("dough-1")),
            DEADLINE,
        )
        .await?;
    let reply: CmdReply = serde_json::from_slice(&reply.payload)?;
    assert!(reply.ok, "{reply:?}");
    let trace = reply.result.expect("a trace");
    assert_eq!(lot_ids(&trace), ["dough-1", "flour-1", "sugar-1"]);
    let unknown = observer
        .request(
            &topic(Class::Cmd(vec![id("trace")])),
            &TraceQuery::forward(id("nope")),
            DEADLINE,
        )
        .await?;
    let unknown: CmdReply = serde_json::from_slice(&unknown.payload)?;
    assert!(!unknown.ok);

    // And over HTTP.
    let addr = http.local_addr();
    let (status, body) = http_get(addr, "/api/v1/trace/flour-1?direction=forward&depth=5").await?;
    assert_eq!(status, 200, "{body}");
    let trace: Value = serde_json::from_str(&body)?;
    assert_eq!(lot_ids(&trace), ["dough-1", "flour-1"]);
    let (status, _) = http_get(addr, "/api/v1/trace/flour-1?direction=sideways").await?;
    assert_eq!(status, 400);
    let (status, _) = http_get(addr, "/api/v1/trace/nope").await?;
    assert_eq!(status, 404);
    let (status, body) = http_get(addr, "/api/v1/trace/dough-1?format=fsma").await?;
    assert_eq!(status, 200);
    assert_eq!(
        body.lines().count(),
        1 + 2 + 2,
        "header, 2 receipts, 2 transform inputs"
    );
    let (status, body) = http_get(addr, "/api/v1/lots").await?;
    assert_eq!(status, 200);
    let lots: Value = serde_json::from_str(&body)?;
    assert_eq!(lots.as_array().map(Vec::len), Some(3));
    let (status, body) = http_get(addr, "/api/v1/genealogy/verify").await?;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"intact": true, "records_checked": 3, "first_bad": null})
    );
    let (status, body) = http_get(addr, "/api/v1/epcis/events?lot=dough-1").await?;
    assert_eq!(status, 200);
    let epcis: Value = serde_json::from_str(&body)?;
    assert_eq!(
        epcis["epcisBody"]["eventList"].as_array().map(Vec::len),
        Some(1)
    );

    // Quarantine by command; the lot cannot be consumed then.
    let reply = observer
        .request(
            &topic(Class::Cmd(vec![id("lot"), id("quarantine")])),
            &json!({"lot": "flour-1", "reason": "mould found", "by": "qa"}),
            DEADLINE,
        )
        .await?;
    let reply: CmdReply = serde_json::from_slice(&reply.payload)?;
    assert!(reply.ok, "{reply:?}");
    let flour: Lot = next(&mut inbox, &topic(Class::Lot(id("flour-1"))), |p| {
        decode::<Lot>(p)
            .ok()
            .filter(|l| l.status == LotStatus::Quarantine)
    })
    .await?;
    assert_eq!(flour.quantity.qty, 40.0);
    observer
        .publish(
            &events,
            &transform(
                12,
                "wo-3",
                vec![kg("flour-1", 1.0)],
                vec![new_kg("dough-3", "dough", 1.0)],
            ),
        )
        .await?;
    let report: ErrorReport = next(&mut inbox, &errors, |p| decode(p).ok()).await?;
    assert!(report.reason.contains("Quarantine"), "{}", report.reason);
    let reply = observer
        .request(
            &topic(Class::Cmd(vec![id("lot"), id("reject")])),
            &json!({"lot": "flour-1"}),
            DEADLINE,
        )
        .await?;
    let reply: CmdReply = serde_json::from_slice(&reply.payload)?;
    assert!(!reply.ok, "a reject needs a reason");

    // The duplicate was applied once: 3 events + 1 decision in the chain.
    let (_, body) = http_get(addr, "/api/v1/genealogy/verify").await?;
    assert_eq!(serde_json::from_str::<Value>(&body)?["records_checked"], 4);

    // The lot commands over HTTP: the same bodies and rules as `_cmd/lot/*`.
    let salt = json!({"lot": "salt-1", "material": "salt", "quantity": {"qty": 10, "uom": "KGM"}})
        .to_string();
    let (status, reply) = http_post(addr, "/api/v1/lots", &salt).await?;
    assert_eq!(status, 400, "a receive needs its site: {reply}");
    let (status, reply) = http_post(addr, "/api/v1/lots?site=acme/bakery", &salt).await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["result"]["id"], "salt-1");
    next(&mut inbox, &topic(Class::Lot(id("salt-1"))), |p| {
        decode::<Lot>(p).ok().filter(|l| l.quantity.qty == 10.0)
    })
    .await?;
    let (status, reply) = http_post(
        addr,
        "/api/v1/lots/salt-1/quarantine",
        &json!({"reason": "lab sample pending", "by": "qa"}).to_string(),
    )
    .await?;
    assert_eq!(status, 200, "{reply}");
    let ship = json!({"quantity": {"qty": 1, "uom": "KGM"}, "customer": "Kunde Sued"}).to_string();
    let (status, reply) = http_post(addr, "/api/v1/lots/salt-1/ship", &ship).await?;
    assert_eq!(status, 409, "a quarantined lot is not shipped: {reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("Quarantine")),
        "{reply}"
    );
    let (status, reply) = http_post(addr, "/api/v1/lots/salt-1/release", "").await?;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = http_post(addr, "/api/v1/lots/salt-1/ship", &ship).await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["result"]["quantity"]["qty"], 9.0);
    let (status, body) = http_get(addr, "/api/v1/lots/salt-1").await?;
    assert_eq!(status, 200);
    let record: Value = serde_json::from_str(&body)?;
    assert_eq!(record["shipments"][0]["customer"], "Kunde Sued");
    let (status, _) = http_post(addr, "/api/v1/lots/salt-1/destroy", "").await?;
    assert_eq!(status, 404);
    let (status, _) = http_post(addr, "/api/v1/lots/salt-404/release", "").await?;
    assert_eq!(status, 404);
    let (status, _) = http_post(addr, "/api/v1/lots/salt-1/ship", "not json").await?;
    assert_eq!(status, 400);
    let (status, reply) = http_post(addr, "/api/v1/lots/salt-1/ship", "{\"quantity\": 1}").await?;
    assert_eq!(status, 400, "{reply}");
    // Receive, quarantine, release and ship logged; the refused ones not.
    let (_, body) = http_get(addr, "/api/v1/genealogy/verify").await?;
    assert_eq!(serde_json::from_str::<Value>(&body)?["records_checked"], 8);

    stop.cancel();
    runtime.stop().await;
    Ok(())
}
