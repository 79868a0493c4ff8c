//! The work-order service (`workorders`): one work order per ERP production order, its
//! lifecycle on the line, its counts, genealogy and ERP confirmations (DESIGN §4).
//!
//! # Data path
//!
//! ```text
//! …/_erp/production-orders/+ (retained) ─┐
//! …/_count/{good,scrap,rework} (retained) ┤
//! …/_wo/+/events (confirmation_posted) ──┼─► inbox ─┐
//! …/_cmd/wo/{verb} (MQTT 5 request) ─────┘          ├─► Engine (engine.rs, no I/O)
//! HTTP /api/v1/work-orders… ──► ApiRequest ─────────┘      │ Outcome
//!                         store (workorders.redb) ◄──────────┤ first
//!  …/{line}/_wo/{id}, _wo/_active, _wo/{id}/events,  ◄──────┘ then
//!  …/{site}/_genealogy/events, _errors, command replies
//! ```
//!
//! One loop ([`WorkOrders::run`]) handles a closed set of triggers (an MQTT message, an HTTP
//! request, a one-second tick, shutdown). Each turns into an [`engine::Outcome`] that is
//! written to the store before anything is published or answered, so a restart (from the
//! same data directory) carries on where the last one stopped: no count twice, no count lost.
//! Bad input (a payload that does not decode, an unknown verb) is answered with an error,
//! reported on the location's `_errors` and counted; the loop keeps running.
#![deny(missing_docs)]

pub mod engine;
pub mod http;
pub mod lifecycle;
pub mod store;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::info;
use uns_client::{ClientError, Message, UnsClient};
use uns_model::payload::{
    CmdReply, CountDoc, ErrorReport, ProductionOrder, SchemaTag, Timestamp, WorkOrder,
    WorkOrderEvent, WorkOrderEventKind, decode,
};
use uns_model::topic::{
    AnyId, Class, Id, Location, MAX_DEPTH, PREFIX, TopicFilter, UnsTopic, slug,
};
use uns_service::{ConfigEnv, ConfigError, Context, MountError, Service};
use uns_store::StoreError;

use crate::engine::{CommandError, Engine, EngineConfig, OrderRecord, Outcome};
use crate::http::{ApiRequest, ApiResult};
use crate::lifecycle::Verb;
use crate::store::OrderStore;

/// The service name, as in `uns/v1/_services/workorders`.
pub const SERVICE: &str = "workorders";

/// The store file inside the service's data directory.
pub const STORE_FILE: &str = "workorders.redb";

/// The verb of `_cmd/wo/consume`.
const CONSUME: &str = "consume";

/// The `[workorders]` section, as written.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkOrdersConfig {
    /// Allow more than one running order per line (counts go to the one started last).
    pub parallel_orders_per_line: bool,
    /// The counting cell of a line, `"line path" = "cell path"`; a line not listed counts
    /// on the first cell below it seen publishing `_count` (remembered in the store).
    pub counting_cells: BTreeMap<String, String>,
    /// A partial confirmation after this many units (good + scrap + rework); 0 = none.
    pub confirm_every_units: u64,
    /// A partial confirmation after this many minutes of a running order; 0 = none.
    pub confirm_every_minutes: f64,
    /// Labor time reported = machine time × this.
    pub labor_factor: f64,
    /// Release orders as they arrive, start them in turn, complete them at their planned
    /// quantity (`uns up --demo` turns it on).
    pub auto_run: bool,
}

impl Default for WorkOrdersConfig {
    fn default() -> Self {
        Self {
            parallel_orders_per_line: false,
            counting_cells: BTreeMap::new(),
            confirm_every_units: 1000,
            confirm_every_minutes: 15.0,
            labor_factor: 1.0,
            auto_run: false,
        }
    }
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkOrdersError {
    /// The store failed (the supervisor restarts the loop from what is stored).
    #[error("work-order store: {0}")]
    Store(#[from] StoreError),
    /// The MQTT client is shut down.
    #[error("MQTT client: {0}")]
    Client(#[from] ClientError),
    /// The HTTP routes could not be mounted.
    #[error("HTTP: {0}")]
    Mount(#[from] MountError),
}

/// The service.
pub struct WorkOrders {
    config: EngineConfig,
    refused: Counter,
    counted: Counter,
}

impl WorkOrders {
    /// The service with these rules.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            refused: Counter::default(),
            counted: Counter::default(),
        }
    }
}

impl Service for WorkOrders {
    const NAME: &'static str = SERVICE;
    const SECTION: &'static str = "workorders";
    const ABOUT: &'static str = "Run the work-order service alone: a work order per ERP \
        production order (`_wo`), its lifecycle through `_cmd/wo/...` and /api/v1/work-orders, \
        counts from the line's counting cell, genealogy transforms and ERP confirmation requests";
    type Config = WorkOrdersConfig;
    type Error = WorkOrdersError;

    fn configure(config: WorkOrdersConfig, env: &ConfigEnv) -> Result<Self, ConfigError> {
        let mut counting_cells = BTreeMap::new();
        for (line_text, cell_text) in &config.counting_cells {
            let key = format!("counting_cells.\"{line_text}\"");
            let line: Location = line_text
                .parse()
                .map_err(|err| ConfigError::new(&key, format!("line: {err}")))?;
            let cell: Location = cell_text
                .parse()
                .map_err(|err| ConfigError::new(&key, format!("cell: {err}")))?;
            if !cell.ancestors().any(|ancestor| ancestor == line) {
                return Err(ConfigError::new(
                    key,
                    format!("{cell} is not at or below {line}"),
                ));
            }
            counting_cells.insert(line, cell);
        }
        let minutes = config.confirm_every_minutes;
        if !minutes.is_finite() || minutes < 0.0 {
            return Err(ConfigError::new(
                "confirm_every_minutes",
                "must be 0 (none) or a positive number of minutes",
            ));
        }
        if !config.labor_factor.is_finite() || config.labor_factor < 0.0 {
            return Err(ConfigError::new(
                "labor_factor",
                "must be a non-negative number",
            ));
        }
        Ok(Self::new(EngineConfig {
            parallel_orders_per_line: config.parallel_orders_per_line,
            counting_cells,
            confirm_every_units: config.confirm_every_units as f64,
            confirm_every_ms: (minutes * 60_000.0) as i64,
            labor_factor: config.labor_factor,
            auto_run: config.auto_run || env.demo,
        }))
    }

    fn register_metrics(&self, metrics: &uns_client::Metrics) {
        metrics.register(
            "workorders_commands_refused",
            "Work-order commands refused (illegal transition, busy line, unknown order, bad payload)",
            self.refused.clone(),
        );
        metrics.register(
            "workorders_count_updates",
            "_count documents that added to a running work order",
            self.counted.clone(),
        );
    }

    async fn run(&self, mut ctx: Context) -> Result<(), WorkOrdersError> {
        let store = OrderStore::open(&ctx.data_dir.join(STORE_FILE)).await?;
        let result = self.serve(&mut ctx, &store).await;
        store.close().await;
        result
    }
}

/// One trigger of the loop.
enum Trigger {
    Mqtt(Message),
    Api(ApiRequest),
    Tick,
}

impl WorkOrders {
    async fn serve(&self, ctx: &mut Context, store: &OrderStore) -> Result<(), WorkOrdersError> {
        let (orders, counters, cells) = store.load().await?;
        let n_orders = orders.len();
        let mut engine = Engine::new(self.config.clone(), orders, counters, cells);
        let client = ctx.client.clone();
        for publication in engine.republish() {
            client
                .publish_bytes(&publication.topic, publication.payload)
                .await?;
        }
        for filter in subscriptions() {
            client.subscribe(&filter).await?;
        }
        let (api_tx, mut api_rx) = mpsc::channel(64);
        ctx.http.mount(http::router(api_tx))?;
        info!(orders = n_orders, "workorders started");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                message = ctx.inbox.recv() => match message {
                    Some(message) => Trigger::Mqtt(message),
                    None => break,
                },
                request = api_rx.recv() => match request {
                    Some(request) => Trigger::Api(request),
                    None => break,
                },
                _ = tick.tick() => Trigger::Tick,
            };
            match trigger {
                Trigger::Mqtt(message) => {
                    self.on_message(&mut engine, store, &client, message)
                        .await?;
                }
                Trigger::Api(request) => self.on_api(&mut engine, store, &client, request).await?,
                Trigger::Tick => {
                    let outcome = engine.tick(now());
                    commit(&engine, store, &client, outcome, None).await?;
                }
            }
        }
        info!("workorders stopped");
        Ok(())
    }

    async fn on_message(
        &self,
        engine: &mut Engine,
        store: &OrderStore,
        client: &UnsClient,
        message: Message,
    ) -> Result<(), WorkOrdersError> {
        let Ok(topic) = message.uns_topic() else {
            return Ok(());
        };
        let (Some(location), Some(class)) = (topic.location().cloned(), topic.class().cloned())
        else {
            return Ok(());
        };
        match class {
            Class::ErpProductionOrder(id) => {
                if message.payload.is_empty() {
                    return Ok(());
                }
                let order = match decode::<ProductionOrder>(&message.payload) {
                    Ok(order) if order.id == id => order,
                    Ok(order) => {
                        let reason = format!(
                            "production order {} published on the topic of {id}",
                            order.id
                        );
                        return report(client, &location, &message, "bad_production_order", reason)
                            .await;
                    }
                    Err(err) => {
                        return report(
                            client,
                            &location,
                            &message,
                            "bad_production_order",
                            err.to_string(),
                        )
                        .await;
                    }
                };
                let seen_key = format!("{}@{}", order.id, order.revision);
                if store.seen(&seen_key).await? {
                    return Ok(());
                }
                let outcome = engine.production_order(order, now());
                commit(engine, store, client, outcome, Some(seen_key)).await
            }
            Class::Count(kind) => {
                let doc = match decode::<CountDoc>(&message.payload) {
                    Ok(doc) => doc,
                    Err(err) => {
                        return report(client, &location, &message, "bad_count", err.to_string())
                            .await;
                    }
                };
                let outcome = engine.count(&location, kind, &doc, now());
                if !outcome.dirty_orders.is_empty() {
                    self.counted.inc();
                }
                commit(engine, store, client, outcome, None).await
            }
            Class::WorkOrderEvents(id) => {
                let event = match decode::<WorkOrderEvent>(&message.payload) {
                    Ok(event) => event,
                    Err(err) => {
                        return report(
                            client,
                            &location,
                            &message,
                            "bad_work_order_event",
                            err.to_string(),
                        )
                        .await;
                    }
                };
                if let WorkOrderEventKind::ConfirmationPosted {
                    request_event_id, ..
                } = event.kind
                {
                    let outcome = engine.confirmation_posted(&id, request_event_id, now());
                    commit(engine, store, client, outcome, None).await?;
                }
                Ok(())
            }
            Class::Cmd(verb) if verb.first().is_some_and(|first| first.as_str() == "wo") => {
                self.on_command(engine, store, client, &location, &verb, message)
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn on_command(
        &self,
        engine: &mut Engine,
        store: &OrderStore,
        client: &UnsClient,
        location: &Location,
        verb: &[Id],
        message: Message,
    ) -> Result<(), WorkOrdersError> {
        let verb_text = verb
            .iter()
            .skip(1)
            .map(Id::as_str)
            .collect::<Vec<_>>()
            .join("/");
        let result = match parse_command(&verb_text, &message.payload) {
            Ok(command) => {
                self.execute(engine, store, client, command, Some(location))
                    .await?
            }
            Err(reason) => {
                self.refused.inc();
                client
                    .reply(&message, &CmdReply::error(reason.clone()))
                    .await?;
                return report(client, location, &message, "bad_command", reason).await;
            }
        };
        let reply = match result {
            Ok(view) => CmdReply::ok(Some(view)),
            Err((_, reason)) => CmdReply::error(reason),
        };
        client.reply(&message, &reply).await?;
        Ok(())
    }

    async fn on_api(
        &self,
        engine: &mut Engine,
        store: &OrderStore,
        client: &UnsClient,
        request: ApiRequest,
    ) -> Result<(), WorkOrdersError> {
        match request {
            ApiRequest::List { status, reply } => {
                let views: Vec<serde_json::Value> = engine
                    .orders()
                    .into_iter()
                    .filter(|record| status.is_none_or(|status| record.doc.status == status))
                    .map(|record| view(engine, record))
                    .collect();
                let _ = reply.send(Ok(serde_json::Value::Array(views)));
            }
            ApiRequest::Get { id, reply } => {
                let found = Id::new(&id)
                    .ok()
                    .and_then(|id| engine.order(&id))
                    .map(|record| view(engine, record));
                let _ = reply.send(
                    found.ok_or_else(|| (StatusCode::NOT_FOUND, format!("no work order {id}"))),
                );
            }
            ApiRequest::Command {
                id,
                verb,
                body,
                reply,
            } => {
                let answer = match parse_http_command(&id, &verb, &body) {
                    Ok(command) => self.execute(engine, store, client, command, None).await?,
                    Err(err) => {
                        self.refused.inc();
                        Err(err)
                    }
                };
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    /// Carries out a command; the outer error is the loop's, the inner one the caller's.
    async fn execute(
        &self,
        engine: &mut Engine,
        store: &OrderStore,
        client: &UnsClient,
        command: Command,
        at: Option<&Location>,
    ) -> Result<ApiResult, WorkOrdersError> {
        let now = now();
        let (id, result) = match command {
            Command::Verb { id, verb } => {
                let result = engine.command(&id, verb, at, now);
                (id, result)
            }
            Command::Consume { id, lot, material } => {
                let result = engine.consume(&id, lot, &material, at, now);
                (id, result)
            }
        };
        match result {
            Ok(outcome) => {
                commit(engine, store, client, outcome, None).await?;
                let view = engine
                    .order(&id)
                    .map(|record| view(engine, record))
                    .unwrap_or_default();
                Ok(Ok(view))
            }
            Err(err) => {
                self.refused.inc();
                let status = match err {
                    CommandError::UnknownOrder(_) => StatusCode::NOT_FOUND,
                    CommandError::WrongLocation { .. } => StatusCode::BAD_REQUEST,
                    _ => StatusCode::CONFLICT,
                };
                Ok(Err((status, err.to_string())))
            }
        }
    }
}

/// A parsed command.
enum Command {
    Verb { id: Id, verb: Verb },
    Consume { id: Id, lot: Id, material: String },
}

/// The body of `_cmd/wo/{verb}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerbBody {
    wo_id: String,
}

/// The body of `_cmd/wo/consume` (and of `POST …/{id}/consume`, without `wo_id`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumeBody {
    #[serde(default)]
    wo_id: Option<String>,
    lot: String,
    material: String,
}

fn parse_command(verb: &str, payload: &[u8]) -> Result<Command, String> {
    if verb == CONSUME {
        let body: ConsumeBody = serde_json::from_slice(payload).map_err(|err| {
            format!("bad consume payload (expected {{\"wo_id\", \"lot\", \"material\"}}): {err}")
        })?;
        let wo_id = body.wo_id.ok_or("bad consume payload: wo_id is missing")?;
        return Ok(Command::Consume {
            id: parse_id(&wo_id)?,
            lot: slug(&body.lot),
            material: body.material,
        });
    }
    let verb: Verb = verb.parse().map_err(|err| format!("{err}"))?;
    let body: VerbBody = serde_json::from_slice(payload)
        .map_err(|err| format!("bad {verb} payload (expected {{\"wo_id\": ...}}): {err}"))?;
    Ok(Command::Verb {
        id: parse_id(&body.wo_id)?,
        verb,
    })
}

fn parse_http_command(id: &str, verb: &str, body: &[u8]) -> Result<Command, (StatusCode, String)> {
    let bad = |reason: String| (StatusCode::BAD_REQUEST, reason);
    let id = Id::new(id).map_err(|_| (StatusCode::NOT_FOUND, format!("no work order {id}")))?;
    if verb == CONSUME {
        let body: ConsumeBody = serde_json::from_slice(body).map_err(|err| {
            bad(format!(
                "bad consume body (expected {{\"lot\", \"material\"}}): {err}"
            ))
        })?;
        return Ok(Command::Consume {
            id,
            lot: slug(&body.lot),
            material: body.material,
        });
    }
    let verb: Verb = verb
        .parse()
        .map_err(|err| (StatusCode::NOT_FOUND, format!("{err}")))?;
    Ok(Command::Verb { id, verb })
}

fn parse_id(text: &str) -> Result<Id, String> {
    Id::new(text).map_err(|err| format!("wo_id {text:?}: {err}"))
}

/// What the API and command replies show of an order: the document plus the service's own
/// bookkeeping.
#[derive(Serialize)]
struct OrderView<'a> {
    #[serde(flatten)]
    doc: &'a WorkOrder,
    revision: u32,
    counting_location: Location,
    confirmations: u32,
}

fn view(engine: &Engine, record: &OrderRecord) -> serde_json::Value {
    serde_json::to_value(OrderView {
        doc: &record.doc,
        revision: record.revision,
        counting_location: engine.counting_location(&record.doc.hierarchy_scope),
        confirmations: record.confirmed.sequence,
    })
    .unwrap_or_default()
}

/// Stores what `outcome` changed, then publishes its messages and reports its rejections.
async fn commit(
    engine: &Engine,
    store: &OrderStore,
    client: &UnsClient,
    outcome: Outcome,
    seen_key: Option<String>,
) -> Result<(), WorkOrdersError> {
    let now_ms = u64::try_from(now().unix_ms()).unwrap_or(0);
    store.save(engine, &outcome, seen_key, now_ms).await?;
    for publication in outcome.publications {
        client
            .publish_bytes(&publication.topic, publication.payload)
            .await?;
    }
    for rejection in outcome.rejections {
        let report = error_report(client, None, rejection.reason, None);
        let topic = UnsTopic::located(rejection.location, Class::Errors);
        client.report_error(&topic, rejection.kind, &report).await?;
    }
    Ok(())
}

async fn report(
    client: &UnsClient,
    location: &Location,
    message: &Message,
    kind: &str,
    reason: String,
) -> Result<(), WorkOrdersError> {
    let report = error_report(
        client,
        Some(message.topic.clone()),
        reason,
        Some(&message.payload),
    );
    let topic = UnsTopic::located(location.clone(), Class::Errors);
    client.report_error(&topic, kind, &report).await?;
    Ok(())
}

fn error_report(
    client: &UnsClient,
    topic: Option<String>,
    reason: String,
    payload: Option<&[u8]>,
) -> ErrorReport {
    ErrorReport {
        schema: SchemaTag::default(),
        service: Id::new(client.service()).unwrap_or_else(|_| slug(SERVICE)),
        topic,
        reason,
        payload_excerpt: payload.map(excerpt),
        payload_sha256: None,
        occurred_at: now(),
    }
}

fn excerpt(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let cut: String = text.chars().take(256).collect();
    if cut.is_empty() {
        "(empty)".to_owned()
    } else {
        cut
    }
}

/// The subscriptions: production orders, counts and work-order events at any location, and
/// `_cmd/wo/+` at any depth.
fn subscriptions() -> Vec<TopicFilter> {
    let mut filters = TopicFilter::any_id_at_any_location(AnyId::ProductionOrder);
    filters.extend(TopicFilter::any_id_at_any_location(AnyId::Count));
    filters.extend(TopicFilter::any_id_at_any_location(AnyId::WorkOrderEvents));
    for depth in 1..=MAX_DEPTH {
        let levels = vec!["+"; depth].join("/");
        // `+` levels and fixed words: always a valid filter.
        if let Ok(filter) = TopicFilter::new(&format!("{PREFIX}/{levels}/_cmd/wo/+")) {
            filters.push(filter);
        }
    }
    filters
}

fn now() -> Timestamp {
    Timestamp::from(chrono::Utc::now())
}
