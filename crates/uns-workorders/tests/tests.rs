//! The workorders service against the real embedded broker over real sockets, a real redb file
//! and real HTTP: lifecycle through MQTT commands and HTTP, refusals that publish nothing,
//! counts from `_count` documents, a restart on the same data directory without double
//! counting, revisions, confirmations, and bad commands that leave the service healthy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Message, Metrics, UnsClient};
use uns_model::payload::{
    CmdReply, CountDoc, ErrorReport, HealthStatus, MaterialRequirement, MaterialUse,
    ProductionOrder, Quantity, SchemaTag, ServiceHealth, Timestamp, Uom, WorkOrder, WorkOrderEvent,
    WorkOrderEventKind, WorkOrderStatus, decode, decode_active_order,
};
use uns_model::topic::{Class, CountKind, Id, Location, TopicFilter, UnsTopic};
use uns_service::{
    BrokerEndpoint, Configured, Health, HttpServer, RestartPolicy, Routes, Runtime, RuntimeOptions,
};
use uns_workorders::WorkOrders;
use uns_workorders::engine::EngineConfig;

const DEADLINE: Duration = Duration::from_secs(15);

fn line() -> Location {
    "acme/berlin/packaging/line-1".parse().expect("valid line")
}

fn filler() -> Location {
    "acme/berlin/packaging/line-1/filler"
        .parse()
        .expect("valid cell")
}

fn site() -> Location {
    "acme/berlin".parse().expect("valid site")
}

fn id(text: &str) -> Id {
    Id::new(text).expect("valid id")
}

fn now() -> Timestamp {
    Timestamp::from(chrono::Utc::now())
}

fn production_order(name: &str, qty: f64, revision: u32) -> ProductionOrder {
    ProductionOrder {
        schema: SchemaTag::default(),
        id: id(name),
        erp_ref: name.to_uppercase(),
        revision,
        material: "BOTTLE-1L".to_owned(),
        description: None,
        quantity: Quantity::new(qty, Uom::EA),
        earliest_start_time: None,
        latest_end_time: None,
        hierarchy_scope: line(),
        equipment: Some("WC-4711".to_owned()),
        priority: None,
        parameters: Vec::new(),
        operations: Vec::new(),
        components: vec![MaterialRequirement {
            material: "PREFORM".to_owned(),
            description: None,
            quantity: Quantity::new(qty, Uom::EA),
            material_use: MaterialUse::Consumed,
            operation_id: None,
            material_lot_id: Some("L-7".to_owned()),
            material_sublot_id: None,
        }],
        received_at: now(),
    }
}

/// Every message the observer received, in order.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Message>>>);

impl Recorded {
    fn snapshot(&self) -> Vec<Message> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or_default()
    }

    /// The first message from index `from` on `topic` that `accept` takes, within [`DEADLINE`].
    async fn wait<T>(
        &self,
        from: usize,
        topic: &UnsTopic,
        accept: impl Fn(&Message) -> Option<T>,
    ) -> anyhow::Result<T> {
        let topic = topic.to_string();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let found = self
                .snapshot()
                .into_iter()
                .skip(from)
                .filter(|m| m.topic == topic)
                .find_map(|m| accept(&m));
            if let Some(found) = found {
                return Ok(found);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("nothing matching on {topic} within {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn order(
        &self,
        from: usize,
        name: &str,
        accept: impl Fn(&WorkOrder) -> bool,
    ) -> anyhow::Result<WorkOrder> {
        let topic = UnsTopic::located(line(), Class::WorkOrder(id(name)));
        self.wait(from, &topic, |m| {
            decode::<WorkOrder>(&m.payload).ok().filter(|wo| accept(wo))
        })
        .await
    }

    async fn event(
        &self,
        from: usize,
        name: &str,
        accept: impl Fn(&WorkOrderEventKind) -> bool,
    ) -> anyhow::Result<WorkOrderEvent> {
        let topic = UnsTopic::located(line(), Class::WorkOrderEvents(id(name)));
        self.wait(from, &topic, |m| {
            decode::<WorkOrderEvent>(&m.payload)
                .ok()
                .filter(|event| accept(&event.kind))
        })
        .await
    }
}

/// A broker, an observer recording everything under `uns/v1/`, and (when started) the
/// workorders service in a runtime with its HTTP endpoint.
struct Harness {
    dir: tempfile::TempDir,
    broker: uns_broker::BrokerHandle,
    observer: UnsClient,
    recorded: Recorded,
    stop: CancellationToken,
    service: Option<(Runtime, SocketAddr, CancellationToken)>,
}

impl Harness {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let broker = uns_broker::start(uns_broker::BrokerConfig {
            listen: "127.0.0.1:0".parse()?,
            ws_listen: None,
            data_dir: dir.path().join("broker"),
            ..Default::default()
        })
        .await?;
        let stop = CancellationToken::new();
        let (observer, mut inbox, _) = UnsClient::start(
            ClientOptions::new(
                BrokerUrl::new("127.0.0.1", broker.mqtt_addr().port()),
                "observer",
            )?,
            ClientMetrics::register(&Metrics::new()),
            stop.clone(),
        );
        observer.wait_connected(DEADLINE).await?;
        observer.subscribe(&TopicFilter::all_uns()).await?;
        let recorded = Recorded::default();
        let sink = recorded.clone();
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                if let Ok(mut messages) = sink.0.lock() {
                    messages.push(message);
                }
            }
        });
        Ok(Self {
            dir,
            broker,
            observer,
            recorded,
            stop,
            service: None,
        })
    }

    /// Starts the service on the harness's data directory and waits until it serves HTTP.
    async fn start_service(&mut self, config: EngineConfig) -> anyhow::Result<()> {
        let from = self.recorded.len();
        let stop = CancellationToken::new();
        let health = Health::default();
        let metrics = Metrics::new();
        let routes = Routes::default();
        let http = HttpServer::start(
            "127.0.0.1:0".parse()?,
            health.clone(),
            metrics.clone(),
            routes.clone(),
            stop.clone(),
        )
        .await?;
        let runtime = Runtime::start(
            RuntimeOptions {
                broker: BrokerEndpoint {
                    url: BrokerUrl::new("127.0.0.1", self.broker.mqtt_addr().port()),
                    credentials: None,
                },
                data_dir: data_dir(self.dir.path()),
                restart: RestartPolicy::Exit,
                stop_grace: Duration::from_secs(2),
                health,
                metrics,
                routes,
            },
            vec![Configured::new(WorkOrders::new(config))],
        )
        .await?;
        let addr = http.local_addr();
        self.service = Some((runtime, addr, stop));
        self.recorded
            .wait(from, &UnsTopic::service("workorders")?, |m| {
                decode::<ServiceHealth>(&m.payload)
                    .ok()
                    .filter(|h| h.status == HealthStatus::Running)
            })
            .await?;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while http_call(addr, "GET", "/api/v1/work-orders", "").await?.0 != 200 {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "API not mounted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn stop_service(&mut self) {
        if let Some((runtime, _, stop)) = self.service.take() {
            runtime.stop().await;
            stop.cancel();
        }
    }

    fn http(&self) -> SocketAddr {
        self.service
            .as_ref()
            .map(|(_, addr, _)| *addr)
            .unwrap_or(([127, 0, 0, 1], 9).into())
    }

    async fn publish_order(&self, order: &ProductionOrder) -> anyhow::Result<()> {
        let topic = UnsTopic::located(site(), Class::ErpProductionOrder(order.id.clone()));
        Ok(self.observer.publish(&topic, order).await?)
    }

    async fn publish_count(&self, kind: CountKind, total: f64) -> anyhow::Result<()> {
        let doc = CountDoc::new(kind, Quantity::new(total, Uom::EA), now().unix_ms());
        let topic = UnsTopic::located(filler(), Class::Count(kind));
        Ok(self.observer.publish(&topic, &doc).await?)
    }

    /// An MQTT 5 request on `…/line-1/_cmd/wo/{verb}`; the reply.
    async fn command(&self, verb: &str, body: &[u8]) -> anyhow::Result<CmdReply> {
        let topic = UnsTopic::located(line(), Class::Cmd(vec![id("wo"), id(verb)]));
        let body: serde_json::Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(_) => serde_json::Value::String(String::from_utf8_lossy(body).into_owned()),
        };
        let reply = self.observer.request(&topic, &body, DEADLINE).await?;
        Ok(decode(&reply.payload)?)
    }

    async fn post(&self, name: &str, verb: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let (status, body) = http_call(
            self.http(),
            "POST",
            &format!("/api/v1/work-orders/{name}/{verb}"),
            "",
        )
        .await?;
        Ok((status, serde_json::from_str(&body).context(body)?))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let (status, body) = http_call(self.http(), "GET", path, "").await?;
        Ok((status, serde_json::from_str(&body).context(body)?))
    }

    async fn finish(mut self) {
        self.stop_service().await;
        self.stop.cancel();
    }
}

fn data_dir(base: &Path) -> std::path::PathBuf {
    base.join("data")
}

async fn http_call(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    body: &'static str,
) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = if method == "POST" {
            agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body)?
        } else {
            agent.get(&url).call()?
        };
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}

fn wo_body(name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "wo_id": name })).unwrap_or_default()
}

fn status_changed(to: WorkOrderStatus) -> impl Fn(&WorkOrderEventKind) -> bool {
    move |kind| matches!(kind, WorkOrderEventKind::StatusChanged { to: got, .. } if *got == to)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lifecycle_runs_through_mqtt_commands_and_http() -> anyhow::Result<()> {
    let mut harness = Harness::start().await?;
    harness.start_service(EngineConfig::default()).await?;
    harness
        .publish_order(&production_order("po-1", 100.0, 1))
        .await?;
    let planned = harness
        .recorded
        .order(0, "po-1", |wo| wo.status == WorkOrderStatus::Planned)
        .await?;
    assert_eq!(planned.quantities.planned.qty, 100.0);
    harness
        .recorded
        .event(0, "po-1", |kind| {
            matches!(kind, WorkOrderEventKind::Created { .. })
        })
        .await?;

    // release over MQTT, start over HTTP.
    let reply = harness.command("release", &wo_body("po-1")).await?;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(
        reply.result.as_ref().map(|r| r["status"].clone()),
        Some("released".into())
    );
    let (status, body) = harness.post("po-1", "start").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "running");
    let event = harness
        .recorded
        .event(0, "po-1", status_changed(WorkOrderStatus::Running))
        .await?;
    assert_eq!(event.header.event_id.get_version_num(), 7);
    assert!(event.header.recorded_at >= event.header.occurred_at);
    let active = UnsTopic::located(line(), Class::WorkOrderActive);
    harness
        .recorded
        .wait(0, &active, |m| {
            decode_active_order(&m.payload)
                .ok()
                .flatten()
                .filter(|wo| wo.id.as_str() == "po-1")
        })
        .await?;

    // hold over MQTT; then an illegal transition over HTTP and MQTT: refused, nothing published.
    assert!(harness.command("hold", &wo_body("po-1")).await?.ok);
    harness
        .recorded
        .event(0, "po-1", status_changed(WorkOrderStatus::Held))
        .await?;
    // The document follows its event: once it is here, the hold is fully published.
    harness
        .recorded
        .order(0, "po-1", |wo| wo.status == WorkOrderStatus::Held)
        .await?;
    let before = harness.recorded.len();
    let (status, body) = harness.post("po-1", "release").await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "cannot release an order that is held");
    let reply = harness.command("start", &wo_body("po-1")).await?;
    assert!(!reply.ok);
    assert_eq!(
        reply.error.as_deref(),
        Some("cannot start an order that is held (resume it)")
    );
    // A legal command after them: the first thing published on the order's topics is its result.
    assert!(harness.command("resume", &wo_body("po-1")).await?.ok);
    harness
        .recorded
        .event(before, "po-1", status_changed(WorkOrderStatus::Running))
        .await?;
    let order_topics = [
        UnsTopic::located(line(), Class::WorkOrder(id("po-1"))).to_string(),
        UnsTopic::located(line(), Class::WorkOrderEvents(id("po-1"))).to_string(),
    ];
    let after: Vec<Message> = harness
        .recorded
        .snapshot()
        .into_iter()
        .skip(before)
        .filter(|m| order_topics.contains(&m.topic))
        .collect();
    let first: WorkOrderEvent = decode(&after[0].payload)?;
    assert_eq!(
        first.kind,
        WorkOrderEventKind::StatusChanged {
            from: WorkOrderStatus::Held,
            to: WorkOrderStatus::Running
        }
    );

    // Listing, filtering, unknown ids and verbs.
    let (status, running) = harness.get("/api/v1/work-orders?status=running").await?;
    assert_eq!(status, 200);
    assert_eq!(running.as_array().map(Vec::len), Some(1), "{running}");
    let (_, planned) = harness.get("/api/v1/work-orders?status=planned").await?;
    assert_eq!(planned.as_array().map(Vec::len), Some(0), "{planned}");
    let (status, shown) = harness.get("/api/v1/work-orders/po-1").await?;
    assert_eq!((status, shown["revision"].clone()), (200, 1.into()));
    assert_eq!(shown["counting_location"], "acme/berlin/packaging/line-1");
    assert_eq!(harness.get("/api/v1/work-orders/po-9").await?.0, 404);
    assert_eq!(harness.post("po-9", "start").await?.0, 404);
    assert_eq!(harness.post("po-1", "pause").await?.0, 404);
    assert_eq!(
        harness.get("/api/v1/work-orders?status=paused").await?.0,
        400
    );

    // complete over HTTP: a final confirmation, and _active null.
    let from = harness.recorded.len();
    assert_eq!(harness.post("po-1", "complete").await?.0, 200);
    harness
        .recorded
        .event(from, "po-1", |kind| {
            matches!(
                kind,
                WorkOrderEventKind::ConfirmationRequested { is_final: true, .. }
            )
        })
        .await?;
    harness
        .recorded
        .wait(from, &active, |m| {
            decode_active_order(&m.payload).ok().filter(Option::is_none)
        })
        .await?;
    harness.finish().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_accumulate_and_a_restart_counts_nothing_twice() -> anyhow::Result<()> {
    let mut harness = Harness::start().await?;
    harness.publish_count(CountKind::Good, 1000.0).await?;
    harness.publish_count(CountKind::Scrap, 10.0).await?;
    harness.start_service(EngineConfig::default()).await?;
    harness
        .publish_order(&production_order("po-2", 500.0, 1))
        .await?;
    harness.recorded.order(0, "po-2", |_| true).await?;
    assert_eq!(harness.post("po-2", "release").await?.0, 200);
    assert_eq!(harness.post("po-2", "start").await?.0, 200);
    // The filler is the line's counting cell (the first cell seen publishing `_count`).
    let cell_active = UnsTopic::located(filler(), Class::WorkOrderActive);
    harness
        .recorded
        .wait(0, &cell_active, |m| {
            decode_active_order(&m.payload).ok().flatten()
        })
        .await?;
    harness.publish_count(CountKind::Good, 1030.0).await?;
    harness.publish_count(CountKind::Scrap, 12.0).await?;
    let counted = harness
        .recorded
        .order(0, "po-2", |wo| {
            wo.quantities.good.qty == 30.0 && wo.quantities.scrap.qty == 2.0
        })
        .await?;
    assert_eq!(counted.quantities.rework.qty, 0.0);

    // Down for a while; the counter moves on meanwhile (retained), then the service restarts.
    harness.stop_service().await;
    harness.publish_count(CountKind::Good, 1050.0).await?;
    let from = harness.recorded.len();
    harness.start_service(EngineConfig::default()).await?;
    harness
        .recorded
        .order(from, "po-2", |wo| wo.quantities.good.qty == 50.0)
        .await?;
    harness.publish_count(CountKind::Good, 1051.0).await?;
    harness
        .recorded
        .order(from, "po-2", |wo| wo.quantities.good.qty == 51.0)
        .await?;
    let (_, shown) = harness.get("/api/v1/work-orders/po-2").await?;
    assert_eq!(shown["quantities"]["good"]["qty"], 51.0, "{shown}");
    assert_eq!(shown["quantities"]["scrap"]["qty"], 2.0, "{shown}");
    assert_eq!(
        shown["revision"], 1,
        "the re-delivered order is no revision"
    );
    assert_eq!(shown["status"], "running");
    harness.finish().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_updates_the_one_work_order_and_confirmations_carry_deltas() -> anyhow::Result<()>
{
    let mut harness = Harness::start().await?;
    harness.publish_count(CountKind::Good, 0.0).await?;
    harness
        .start_service(EngineConfig {
            confirm_every_units: 20.0,
            ..EngineConfig::default()
        })
        .await?;
    harness
        .publish_order(&production_order("po-3", 100.0, 1))
        .await?;
    harness.recorded.order(0, "po-3", |_| true).await?;
    let mut revised = production_order("po-3", 100.0, 2);
    revised.quantity.qty = 120.0;
    harness.publish_order(&revised).await?;
    harness
        .recorded
        .order(0, "po-3", |wo| wo.quantities.planned.qty == 120.0)
        .await?;
    let (_, all) = harness.get("/api/v1/work-orders").await?;
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["revision"], 2);

    assert_eq!(harness.post("po-3", "release").await?.0, 200);
    assert_eq!(harness.post("po-3", "start").await?.0, 200);
    harness
        .recorded
        .wait(
            0,
            &UnsTopic::located(filler(), Class::WorkOrderActive),
            |m| decode_active_order(&m.payload).ok().flatten(),
        )
        .await?;
    harness.publish_count(CountKind::Good, 25.0).await?;
    let partial = harness
        .recorded
        .event(0, "po-3", |kind| {
            matches!(
                kind,
                WorkOrderEventKind::ConfirmationRequested {
                    is_final: false,
                    ..
                }
            )
        })
        .await?;
    let WorkOrderEventKind::ConfirmationRequested {
        sequence,
        good,
        goods_movements,
        ..
    } = partial.kind
    else {
        unreachable!("matched above");
    };
    assert_eq!((sequence, good.qty), (1, 25.0));
    assert_eq!(goods_movements.len(), 2, "{goods_movements:?}");
    // The component's planned 100 for 120 to make (the revision changed only the quantity).
    assert_eq!(goods_movements[0].quantity.qty, 25.0 * 100.0 / 120.0);
    assert_eq!(goods_movements[0].lot.as_ref().map(Id::as_str), Some("l-7"));
    harness
        .recorded
        .wait(0, &UnsTopic::located(site(), Class::GenealogyEvents), |m| {
            Some(m.payload.clone())
        })
        .await?;

    harness.publish_count(CountKind::Good, 32.0).await?;
    harness
        .recorded
        .order(0, "po-3", |wo| wo.quantities.good.qty == 32.0)
        .await?;
    assert_eq!(harness.post("po-3", "complete").await?.0, 200);
    let last = harness
        .recorded
        .event(0, "po-3", |kind| {
            matches!(
                kind,
                WorkOrderEventKind::ConfirmationRequested { is_final: true, .. }
            )
        })
        .await?;
    let WorkOrderEventKind::ConfirmationRequested { sequence, good, .. } = last.kind else {
        unreachable!("matched above");
    };
    assert_eq!((sequence, good.qty), (2, 7.0));

    // The ERP bridge's `confirmation_posted` for the final one closes the order.
    let posted = WorkOrderEvent {
        schema: SchemaTag::default(),
        header: uns_model::payload::EventHeader::new(uuid::Uuid::now_v7(), now(), now()),
        wo_id: id("po-3"),
        kind: WorkOrderEventKind::ConfirmationPosted {
            request_event_id: last.header.event_id,
            erp_document: Some("CONF-1".to_owned()),
        },
    };
    harness
        .observer
        .publish(
            &UnsTopic::located(line(), Class::WorkOrderEvents(id("po-3"))),
            &posted,
        )
        .await?;
    harness
        .recorded
        .order(0, "po-3", |wo| wo.status == WorkOrderStatus::Closed)
        .await?;
    harness.finish().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_commands_get_an_error_reply_and_an_error_report() -> anyhow::Result<()> {
    let mut harness = Harness::start().await?;
    harness.start_service(EngineConfig::default()).await?;
    let errors = UnsTopic::located(line(), Class::Errors);
    for (verb, body, expected) in [
        ("start", &b"not json"[..], "bad start payload"),
        ("start", &br#"{"id": "po-1"}"#[..], "unknown field `id`"),
        ("start", &br#"{"wo_id": "PO 1"}"#[..], "wo_id \"PO 1\""),
        (
            "explode",
            &br#"{"wo_id": "po-1"}"#[..],
            "unknown verb \"explode\"",
        ),
        (
            "consume",
            &br#"{"wo_id": "po-1"}"#[..],
            "missing field `lot`",
        ),
    ] {
        let from = harness.recorded.len();
        let reply = harness.command(verb, body).await?;
        assert!(!reply.ok);
        let reason = reply.error.unwrap_or_default();
        assert!(reason.contains(expected), "{verb}: {reason}");
        let report = harness
            .recorded
            .wait(from, &errors, |m| decode::<ErrorReport>(&m.payload).ok())
            .await?;
        assert!(report.reason.contains(expected), "{report:?}");
        assert!(report.payload_excerpt.is_some());
    }
    // Unknown order: an error reply (not bad input, no report needed).
    let reply = harness.command("start", &wo_body("po-404")).await?;
    assert_eq!(reply.error.as_deref(), Some("no work order po-404"));
    // A production order that does not decode is reported; the service carries on.
    let from = harness.recorded.len();
    let topic = UnsTopic::located(site(), Class::ErpProductionOrder(id("po-x")));
    harness
        .observer
        .publish_bytes(
            &topic,
            Bytes::from_static(b"{\"schema\":\"uns/production-order/v1\"}"),
        )
        .await?;
    harness
        .recorded
        .wait(from, &UnsTopic::located(site(), Class::Errors), |m| {
            decode::<ErrorReport>(&m.payload).ok()
        })
        .await?;
    harness
        .publish_order(&production_order("po-5", 10.0, 1))
        .await?;
    harness.recorded.order(0, "po-5", |_| true).await?;
    assert!(harness.command("release", &wo_body("po-5")).await?.ok);
    let (status, health) = http_call(harness.http(), "GET", "/healthz", "").await?;
    assert_eq!(status, 200, "{health}");
    harness.finish().await;
    Ok(())
}
