//! ERP benchmark: orders in and confirmations out through `uns broker` and `uns erp-bridge`
//! child processes of the `uns` binary, with a stand-in ERP in this process, [`run`].
//!
//! 1. Orders accepted per second: [`ErpBenchOptions::orders`] production orders posted one
//!    after the other to `POST /api/v1/production-orders`, each with
//!    [`ErpBenchOptions::requirements`] consumed materials (all in the material master), once as
//!    our JSON and once as B2MML V0600 `ProcessProductionSchedule`. Each accepted order is
//!    checked, master data resolved and the order published retained before the 201.
//! 2. Confirmations per second through the outbox: [`ErpBenchOptions::confirmations`]
//!    `confirmation_requested` events published as the work-order service publishes them, the
//!    ERP accepting: from the first publish to the last accepted posting.
//! 3. Drain of a backlog: [`ErpBenchOptions::backlog`] confirmations wait in the outbox while
//!    the ERP refuses (503); then it accepts: time until every one is accepted and the outbox
//!    is empty.
//!
//! Shared machines are noisy, so each rate has a baseline measured in the same run against the
//! same stand-in with the same HTTP client: the bare cost of the HTTP round trip plus a JSON
//! parse of the same body (for orders), and of the same postings sent straight from this process
//! at the bridge's concurrency (for confirmations). The ratio is what our path costs on top.
//! Every posting is checked afterwards: each idempotency key accepted exactly once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Metrics, UnsClient};
use uns_model::payload::{
    ActivityTimes, EventHeader, Quantity, SchemaTag, Timestamp, Uom, WorkOrderEvent,
    WorkOrderEventKind,
};
use uns_model::topic::{Class, Id, Location, UnsTopic};

use crate::report::MachineInfo;

/// The line the bench's orders run on: the demo plant's line 1 (ERP work centre `WC-4711`).
const LINE: &str = "acme/berlin/packaging/line-1";
/// How long any one step may take before the bench gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// The bridge posts this many confirmations at once (its default `concurrency`); the baseline
/// posts at the same concurrency.
const CONCURRENCY: usize = 8;

/// Knobs of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpBenchOptions {
    /// The `uns` binary (started as `uns broker` and `uns erp-bridge`).
    pub program: PathBuf,
    /// Orders posted per format.
    pub orders: usize,
    /// Consumed materials per order.
    pub requirements: usize,
    /// Confirmations for the throughput figure.
    pub confirmations: usize,
    /// Confirmations in the backlog that is drained.
    pub backlog: usize,
}

impl ErpBenchOptions {
    /// 200 orders of 100 requirements per format, 2 000 confirmations, a backlog of 10 000.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            orders: 200,
            requirements: 100,
            confirmations: 2_000,
            backlog: 10_000,
        }
    }
}

/// What went wrong in [`run`].
#[derive(Debug, thiserror::Error)]
pub enum ErpBenchError {
    /// A file or directory of the run could not be written.
    #[error("bench files: {0}")]
    Io(#[from] std::io::Error),
    /// A child process did not start or did not become ready.
    #[error("{what}: {message}")]
    Process {
        /// Which process.
        what: &'static str,
        /// What happened, with its log's tail.
        message: String,
    },
    /// An HTTP request failed or was answered unexpectedly.
    #[error("HTTP: {0}")]
    Http(String),
    /// The MQTT side failed.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// A step did not finish in time or a figure came out wrong (lost or duplicated postings).
    #[error("ERP benchmark check failed: {0}")]
    Check(String),
}

/// One rate: ours and the baseline's, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Through our path.
    pub ours: f64,
    /// The baseline of the same work without our path.
    pub baseline: f64,
}

impl Rate {
    /// Ours divided by the baseline (1.0 is as fast as the bare round trip).
    pub fn ratio(&self) -> f64 {
        self.ours / self.baseline
    }
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct ErpBenchReport {
    /// When it ran.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The options of the run.
    pub options: ErpBenchOptions,
    /// JSON orders accepted per second; baseline: the stand-in parsing the same bodies.
    pub json_orders: Rate,
    /// B2MML orders accepted per second; baseline: the same round trip and a JSON parse of the
    /// equivalent JSON body.
    pub b2mml_orders: Rate,
    /// Confirmations accepted by the ERP per second; baseline: the same postings sent straight
    /// to the stand-in.
    pub confirmations: Rate,
    /// Time from the ERP coming back to an empty outbox, seconds.
    pub backlog_drain_s: f64,
}

impl ErpBenchReport {
    /// The report as a short Markdown section.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(md, "## ERP bridge (orders in, confirmations out)\n");
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(md, "- Machine: {}", self.machine.describe());
        let o = &self.options;
        let _ = writeln!(
            md,
            "- `uns broker` + `uns meta` + `uns erp-bridge` as child processes, a stand-in ERP in \
             the bench; \
             {} orders per format with {} requirements each, {} confirmations, a backlog of {}\n",
            o.orders, o.requirements, o.confirmations, o.backlog
        );
        let _ = writeln!(md, "| figure | ours | baseline | ratio |");
        let _ = writeln!(md, "|---|---|---|---|");
        for (name, rate) in [
            (
                "JSON orders accepted /s (baseline: HTTP + JSON parse only)",
                self.json_orders,
            ),
            (
                "B2MML V0600 orders accepted /s (baseline: HTTP + JSON parse only)",
                self.b2mml_orders,
            ),
            (
                "confirmations posted through the outbox /s (baseline: posted directly)",
                self.confirmations,
            ),
        ] {
            let _ = writeln!(
                md,
                "| {name} | {:.0} | {:.0} | {:.2} |",
                rate.ours,
                rate.baseline,
                rate.ratio()
            );
        }
        let _ = writeln!(
            md,
            "| drain of a {}-confirmation backlog after the ERP returns | {:.1} s ({:.0} /s) | | |",
            o.backlog,
            self.backlog_drain_s,
            o.backlog as f64 / self.backlog_drain_s
        );
        md
    }
}

/// Runs the benchmark.
///
/// # Errors
/// A process that does not start, an HTTP or MQTT failure, a step over its time limit, or a
/// posting lost or accepted twice.
pub async fn run(options: &ErpBenchOptions) -> Result<ErpBenchReport, ErpBenchError> {
    let dir = tempfile::tempdir()?;
    let erp = StandIn::start().await?;
    let broker = Process::start(
        "uns broker",
        &options.program,
        &["broker", "--listen", "127.0.0.1:0", "--ws-listen", "none"],
        &dir.path().join("broker"),
    )
    .await?;
    let mqtt = broker.mqtt.ok_or_else(|| ErpBenchError::Process {
        what: "uns broker",
        message: "its ready file names no MQTT address".to_owned(),
    })?;
    // The plant model (the demo plant's `_meta`), through which the bridge resolves `WC-4711`.
    let broker_url = format!("mqtt://{mqtt}");
    let meta = Process::start(
        "uns meta",
        &options.program,
        &["meta", "--broker", &broker_url],
        &dir.path().join("meta"),
    )
    .await?;
    let config = dir.path().join("erp-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[erp_bridge]\nerp_url = \"http://{}/confirmations\"\ntimeout_ms = 5000\n\
             retry_initial_ms = 50\nretry_max_ms = 500\nmax_attempts = 1000000\n\
             concurrency = {CONCURRENCY}\nmax_body_bytes = 67108864\n",
            erp.addr
        ),
    )?;
    let config_arg = config.to_string_lossy().into_owned();
    let bridge = Process::start(
        "uns erp-bridge",
        &options.program,
        &[
            "erp-bridge",
            "--broker",
            &broker_url,
            "--config",
            &config_arg,
        ],
        &dir.path().join("erp-bridge"),
    )
    .await?;
    let http = HttpClient::new();
    // The service mounts its API a moment after the process reports ready.
    wait_for("the ERP bridge's API", || async {
        http.get(bridge.http, "/api/v1/master-data/materials")
            .await
            .is_ok()
    })
    .await?;

    // Master data: every material the orders name.
    let materials: Vec<String> = (0..options.requirements)
        .map(|k| format!("RM-{k:04}"))
        .chain(std::iter::once("FG-BENCH".to_owned()))
        .collect();
    let master: Vec<serde_json::Value> = materials
        .iter()
        .map(|id| serde_json::json!({"id": id, "description": id, "uom": "EA"}))
        .collect();
    let body = serde_json::to_vec(&master).map_err(|err| ErpBenchError::Http(err.to_string()))?;
    http.post_expect(
        bridge.http,
        "/api/v1/master-data/materials",
        "application/json",
        body,
        &[200],
    )
    .await?;

    // A warm-up order, repeated until the bridge has learned the plant model from `_meta`.
    let warm_up = json_order("BW-0", options.requirements).into_bytes();
    wait_for("the bridge to know the plant model", || {
        let warm_up = warm_up.clone();
        let http = &http;
        async move {
            http.post_expect(
                bridge.http,
                "/api/v1/production-orders",
                "application/json",
                warm_up,
                &[200, 201],
            )
            .await
            .is_ok()
        }
    })
    .await?;

    let json_bodies: Vec<Vec<u8>> = (0..options.orders)
        .map(|n| json_order(&format!("BJ-{n}"), options.requirements).into_bytes())
        .collect();
    let b2mml_bodies: Vec<Vec<u8>> = (0..options.orders)
        .map(|n| b2mml_order(&format!("BX-{n}"), options.requirements).into_bytes())
        .collect();
    let json_orders = Rate {
        ours: post_all(&http, bridge.http, "application/json", &json_bodies, &[201]).await?,
        baseline: post_all(&http, erp.addr, "application/json", &json_bodies, &[200]).await?,
    };
    let b2mml_orders = Rate {
        ours: post_all(&http, bridge.http, "application/xml", &b2mml_bodies, &[201]).await?,
        baseline: post_all(&http, erp.addr, "application/json", &json_bodies, &[200]).await?,
    };

    // Confirmations: the work-order service's events, the ERP accepting.
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (client, _inbox, _) = UnsClient::start(
        ClientOptions::new(BrokerUrl::new("127.0.0.1", mqtt.port()), "bench-workorders")
            .map_err(|err| ErpBenchError::Mqtt(err.to_string()))?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .map_err(|err| ErpBenchError::Mqtt(err.to_string()))?;
    // The bridge's persistent session exists from its first subscription on: one request is
    // repeated until the ERP has it (repeats carry the same event id and are posted once).
    let (topic, probe) = confirmation("probe")?;
    wait_for("the bridge to take confirmation requests", || {
        let (client, topic, probe, erp) = (client.clone(), topic.clone(), probe.clone(), &erp);
        async move {
            let _ = client.publish(&topic, &probe).await;
            erp.accepted_keys() >= 1
        }
    })
    .await?;
    let events: Vec<(UnsTopic, WorkOrderEvent)> = (0..options.confirmations)
        .map(|n| confirmation(&format!("c-{n}")))
        .collect::<Result<_, _>>()?;
    let before = erp.accepted_keys();
    let start = Instant::now();
    for (topic, event) in &events {
        client
            .publish(topic, event)
            .await
            .map_err(|err| ErpBenchError::Mqtt(err.to_string()))?;
    }
    let want = before + events.len();
    wait_for("every confirmation accepted", || async {
        erp.accepted_keys() >= want
    })
    .await?;
    let ours = events.len() as f64 / start.elapsed().as_secs_f64();
    let postings: Vec<Vec<u8>> = events
        .iter()
        .map(|(_, event)| serde_json::to_vec(event).unwrap_or_default())
        .collect();
    let baseline = post_direct(&http, erp.addr, &postings).await?;
    let confirmations = Rate { ours, baseline };

    // The backlog: the ERP refuses until every request waits in the outbox.
    erp.accepting.store(false, Ordering::SeqCst);
    let backlog: Vec<(UnsTopic, WorkOrderEvent)> = (0..options.backlog)
        .map(|n| confirmation(&format!("b-{n}")))
        .collect::<Result<_, _>>()?;
    for (topic, event) in &backlog {
        client
            .publish(topic, event)
            .await
            .map_err(|err| ErpBenchError::Mqtt(err.to_string()))?;
    }
    wait_for("the backlog in the outbox", || async {
        outbox_depth(&http, bridge.http).await == Some(backlog.len() as f64)
    })
    .await?;
    let want = erp.accepted_keys() + backlog.len();
    erp.accepting.store(true, Ordering::SeqCst);
    let start = Instant::now();
    wait_for("the backlog drained", || async {
        erp.accepted_keys() >= want && outbox_depth(&http, bridge.http).await == Some(0.0)
    })
    .await?;
    let backlog_drain_s = start.elapsed().as_secs_f64();

    // Exactly once: every key of ours accepted once (the baseline's postings are keyed apart).
    let accepted = erp.accepted.lock().map(|a| a.clone()).unwrap_or_default();
    for (_, event) in events.iter().chain(&backlog) {
        let key = event.header.event_id.to_string();
        let n = accepted.get(&key).copied().unwrap_or(0);
        if n != 1 {
            return Err(ErpBenchError::Check(format!(
                "confirmation {key} ({}) accepted {n} times",
                event.wo_id
            )));
        }
    }
    // The bench's own client first, so it does not see the broker go.
    stop.cancel();
    drop(bridge);
    drop(meta);
    drop(broker);
    Ok(ErpBenchReport {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: MachineInfo::current(),
        options: options.clone(),
        json_orders,
        b2mml_orders,
        confirmations,
        backlog_drain_s,
    })
}

/// A JSON production order with `n` consumed components.
fn json_order(id: &str, n: usize) -> String {
    let components: Vec<serde_json::Value> = (0..n)
        .map(|k| {
            serde_json::json!({
                "material": format!("RM-{k:04}"),
                "quantity": {"qty": 1 + k % 7, "uom": "EA"},
                "material_use": "consumed",
            })
        })
        .collect();
    serde_json::json!({
        "id": id,
        "material": "FG-BENCH",
        "quantity": {"qty": 1000, "uom": "EA"},
        "equipment": "WC-4711",
        "components": components,
    })
    .to_string()
}

/// The same order as B2MML V0600 `ProcessProductionSchedule`.
fn b2mml_order(id: &str, n: usize) -> String {
    let mut xml = String::new();
    let _ = write!(
        xml,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ProcessProductionSchedule xmlns="http://www.mesa.org/xml/B2MML-V0600" releaseID="6.0">
<DataArea><Process/><ProductionSchedule><ProductionRequest><ID>{id}</ID>
<Location><EquipmentID>WC-4711</EquipmentID></Location>
<SegmentRequirement><ID>0010</ID>
<MaterialRequirement><MaterialDefinitionID>FG-BENCH</MaterialDefinitionID><MaterialUse>Produced</MaterialUse><Quantity><QuantityString>1000</QuantityString><UnitOfMeasure>EA</UnitOfMeasure></Quantity></MaterialRequirement>
"#
    );
    for k in 0..n {
        let _ = writeln!(
            xml,
            "<MaterialRequirement><MaterialDefinitionID>RM-{k:04}</MaterialDefinitionID>\
             <MaterialUse>Consumed</MaterialUse><Quantity><QuantityString>{}</QuantityString>\
             <UnitOfMeasure>EA</UnitOfMeasure></Quantity></MaterialRequirement>",
            1 + k % 7
        );
    }
    xml.push_str(
        "</SegmentRequirement></ProductionRequest></ProductionSchedule></DataArea>\
         </ProcessProductionSchedule>\n",
    );
    xml
}

/// A final `confirmation_requested` of work order `wo` on the bench line, and its topic.
fn confirmation(wo: &str) -> Result<(UnsTopic, WorkOrderEvent), ErpBenchError> {
    let check = |err: &dyn std::fmt::Display| ErpBenchError::Check(err.to_string());
    let wo_id = Id::new(&format!("wo-{wo}")).map_err(|err| check(&err))?;
    let line: Location = LINE.parse().map_err(|err| check(&err))?;
    let now = Timestamp::from(chrono::Utc::now());
    let event = WorkOrderEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(uuid::Uuid::now_v7(), now, now),
        wo_id: wo_id.clone(),
        kind: WorkOrderEventKind::ConfirmationRequested {
            is_final: true,
            sequence: 1,
            erp_ref: Some(wo.to_uppercase()),
            production_order: None,
            good: Quantity::new(1000.0, Uom::EA),
            scrap: Quantity::new(3.0, Uom::EA),
            rework: Quantity::new(0.0, Uom::EA),
            operation_id: None,
            activity: ActivityTimes::default(),
            goods_movements: Vec::new(),
        },
    };
    Ok((
        UnsTopic::located(line, Class::WorkOrderEvents(wo_id)),
        event,
    ))
}

/// Posts `bodies` one after the other to the production-order endpoint of `addr`; per second.
async fn post_all(
    http: &HttpClient,
    addr: SocketAddr,
    content_type: &str,
    bodies: &[Vec<u8>],
    ok: &[u16],
) -> Result<f64, ErpBenchError> {
    let start = Instant::now();
    for body in bodies {
        http.post_expect(
            addr,
            "/api/v1/production-orders",
            content_type,
            body.clone(),
            ok,
        )
        .await?;
    }
    Ok(bodies.len() as f64 / start.elapsed().as_secs_f64())
}

/// Posts `postings` to the stand-in's confirmation endpoint straight from here, [`CONCURRENCY`]
/// at a time, each with an idempotency key of its own; per second.
async fn post_direct(
    http: &HttpClient,
    addr: SocketAddr,
    postings: &[Vec<u8>],
) -> Result<f64, ErpBenchError> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let postings = Arc::new(postings.to_vec());
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, postings, agent) = (next.clone(), postings.clone(), http.agent.clone());
        workers.push(tokio::task::spawn_blocking(move || {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(body) = postings.get(n) else {
                    return Ok(());
                };
                let status = agent
                    .post(&format!("http://{addr}/confirmations"))
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", &format!("baseline-{n}"))
                    .send(&body[..])
                    .map_err(|err| ErpBenchError::Http(err.to_string()))?
                    .status()
                    .as_u16();
                if status != 201 {
                    return Err(ErpBenchError::Http(format!("baseline posting: {status}")));
                }
            }
        }));
    }
    for worker in workers {
        worker
            .await
            .map_err(|err| ErpBenchError::Http(err.to_string()))??;
    }
    Ok(postings.len() as f64 / start.elapsed().as_secs_f64())
}

/// `uns_erp_outbox_depth` from the bridge's `/metrics`.
async fn outbox_depth(http: &HttpClient, addr: SocketAddr) -> Option<f64> {
    let metrics = http.get(addr, "/metrics").await.ok()?;
    metrics.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == "uns_erp_outbox_depth")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Polls `check` every 10 ms until it holds, at most [`STEP_TIMEOUT`].
async fn wait_for<F, Fut>(what: &str, mut check: F) -> Result<(), ErpBenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !check().await {
        if Instant::now() > deadline {
            return Err(ErpBenchError::Check(format!(
                "{what}: not within {STEP_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A blocking HTTP client (ureq) used from the blocking pool; keeps connections alive.
#[derive(Clone)]
struct HttpClient {
    agent: ureq::Agent,
}

impl HttpClient {
    fn new() -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Self { agent }
    }

    async fn post_expect(
        &self,
        addr: SocketAddr,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        ok: &[u16],
    ) -> Result<(), ErpBenchError> {
        let (agent, url, content_type) = (
            self.agent.clone(),
            format!("http://{addr}{path}"),
            content_type.to_owned(),
        );
        let (status, text) = tokio::task::spawn_blocking(move || {
            let mut response = agent
                .post(&url)
                .header("Content-Type", &content_type)
                .send(&body[..])
                .map_err(|err| ErpBenchError::Http(format!("{url}: {err}")))?;
            let text = response.body_mut().read_to_string().unwrap_or_default();
            Ok::<_, ErpBenchError>((response.status().as_u16(), text))
        })
        .await
        .map_err(|err| ErpBenchError::Http(err.to_string()))??;
        if ok.contains(&status) {
            Ok(())
        } else {
            Err(ErpBenchError::Http(format!(
                "POST {path}: {status} {}",
                text.chars().take(500).collect::<String>()
            )))
        }
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Result<String, ErpBenchError> {
        let (agent, url) = (self.agent.clone(), format!("http://{addr}{path}"));
        tokio::task::spawn_blocking(move || {
            let mut response = agent
                .get(&url)
                .call()
                .map_err(|err| ErpBenchError::Http(format!("{url}: {err}")))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(ErpBenchError::Http(format!("{url}: {status}")));
            }
            response
                .body_mut()
                .with_config()
                .limit(16 * 1024 * 1024)
                .read_to_string()
                .map_err(|err| ErpBenchError::Http(format!("{url}: {err}")))
        })
        .await
        .map_err(|err| ErpBenchError::Http(err.to_string()))?
    }
}

/// The stand-in ERP: `POST /confirmations` answers 201 (or 503 while not accepting) and counts
/// accepted postings per `Idempotency-Key`; `POST /api/v1/production-orders` parses the body as
/// JSON and answers 200 (the orders baseline).
struct StandIn {
    addr: SocketAddr,
    accepting: Arc<AtomicBool>,
    accepted: Arc<Mutex<BTreeMap<String, u32>>>,
    _server: AbortOnDrop,
}

impl StandIn {
    async fn start() -> Result<Self, ErpBenchError> {
        use axum::http::{HeaderMap, StatusCode};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepting = Arc::new(AtomicBool::new(true));
        let accepted: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let (accepting_c, accepted_c) = (accepting.clone(), accepted.clone());
        let app = axum::Router::new()
            .route(
                "/confirmations",
                axum::routing::post(move |headers: HeaderMap| {
                    let (accepting, accepted) = (accepting_c.clone(), accepted_c.clone());
                    async move {
                        if !accepting.load(Ordering::SeqCst) {
                            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                        }
                        let key = headers
                            .get("idempotency-key")
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        if let Ok(mut accepted) = accepted.lock() {
                            *accepted.entry(key.clone()).or_default() += 1;
                        }
                        (
                            StatusCode::CREATED,
                            format!(r#"{{"document":"CONF-{key}"}}"#),
                        )
                    }
                }),
            )
            .route(
                "/api/v1/production-orders",
                axum::routing::post(|body: axum::body::Bytes| async move {
                    match serde_json::from_slice::<serde_json::Value>(&body) {
                        Ok(_) => StatusCode::OK,
                        Err(_) => StatusCode::BAD_REQUEST,
                    }
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            accepting,
            accepted,
            _server: AbortOnDrop(server),
        })
    }

    /// Keys accepted at least once.
    fn accepted_keys(&self) -> usize {
        self.accepted.lock().map_or(0, |accepted| accepted.len())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A `uns` child process on port 0 with its ready file read; killed on drop.
pub(crate) struct Process {
    /// Its MQTT listener, when it runs a broker.
    pub(crate) mqtt: Option<SocketAddr>,
    /// Its HTTP endpoint.
    pub(crate) http: SocketAddr,
    child: Child,
}

impl Process {
    /// Its process id (0 once reaped).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Starts `program` with `args` plus `--http-listen 127.0.0.1:0 --data-dir DIR
    /// --ready-file DIR/ready.json` and waits (30 s at most) for the ready file.
    pub(crate) async fn start(
        what: &'static str,
        program: &Path,
        args: &[&str],
        data_dir: &Path,
    ) -> Result<Self, ErpBenchError> {
        std::fs::create_dir_all(data_dir)?;
        let ready = data_dir.join("ready.json");
        let log_path = data_dir.join("log.txt");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(program)
            .args(args)
            .args(["--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| ErpBenchError::Process {
                what,
                message: format!("spawning {}: {err}", program.display()),
            })?;
        let failed = |message: String| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail = &log[log.len().saturating_sub(2_000)..];
            ErpBenchError::Process {
                what,
                message: format!("{message}; log:\n{tail}"),
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(addrs) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(http) = addrs["http"].as_str().and_then(|a| a.parse().ok())
            {
                let mqtt = addrs["mqtt"].as_str().and_then(|a| a.parse().ok());
                return Ok(Self { mqtt, http, child });
            }
            if let Some(status) = child.try_wait()? {
                return Err(failed(format!("exited with {status} before it was ready")));
            }
            if Instant::now() > deadline {
                return Err(failed("not ready within 30 s".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
