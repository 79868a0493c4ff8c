//! The ERP bridge (`erp-bridge`): production orders in, confirmations out (docs/ERP.md).
//!
//! Inbound: `POST /api/v1/production-orders` takes our JSON or B2MML ([`parse`]), checks every
//! order against the material master, the plant model (`_meta` documents' `erp_id`) and the unit
//! table ([`validate`]), stores it idempotently on its ERP id ([`db`]) and publishes it retained on
//! `…/{site}/_erp/production-orders/{id}`. A bad request is rejected whole (422 listing every
//! problem, reported on `_errors`, nothing published).
//!
//! Outbound: every `confirmation_requested` on `_wo/+/events` is written to the store's outbox,
//! then posted to the ERP through an [`outbound::ErpAdapter`] with retries (exponential backoff,
//! jitter); success publishes `confirmation_posted`, the last failed attempt makes a dead letter
//! (`confirmation_failed` + `_errors`), replayable over HTTP ([`api`]).
//!
//! # Tasks
//! `run` owns the inbox loop (plant model updates, confirmation requests into the outbox) and
//! spawns the *sender* task, which leases due entries and posts them; the loop wakes it through
//! [`Shared::wake`] after each enqueue. Both end with the run's shutdown token.
#![deny(missing_docs)]

pub mod api;
pub mod db;
pub mod demo;
pub mod outbound;
pub mod parse;
pub mod validate;

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uns_client::{ClientError, ClientMetrics, ClientOptions, Message, UnsClient};
use uns_model::payload::{
    ErrorReport, EventHeader, NodeMeta, SchemaTag, Timestamp, WorkOrderEvent, WorkOrderEventKind,
};
use uns_model::topic::{AnyId, Class, Id, Location, TopicFilter, UnsTopic};
use uns_service::{ConfigEnv, ConfigError, Context, Flag, Service};
use uns_store::{FailOutcome, RetryPolicy, Store, StoreError};

use crate::outbound::{DemoErp, ErpAdapter, Format, HttpErp};
use crate::validate::Plant;

/// The `[erp_bridge]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErpBridgeConfig {
    /// Largest request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Plant path of the line an order runs on when its equipment names none (empty: no default).
    pub default_line: String,
    /// API bearer tokens; with none, only loopback clients are served.
    pub tokens: Vec<ApiToken>,
    /// Where confirmations are posted (`http://...`); empty: they wait in the outbox.
    pub erp_url: String,
    /// Body of the postings: `json` (the event as published) or `b2mml` (ProductionPerformance).
    pub format: Format,
    /// Timeout of one posting, in ms.
    pub timeout_ms: u64,
    /// Attempts before a confirmation becomes a dead letter.
    pub max_attempts: u32,
    /// Wait after the first failed attempt, in ms; doubles per attempt (minus up to 20 % jitter).
    pub retry_initial_ms: u64,
    /// Longest wait between attempts, in ms.
    pub retry_max_ms: u64,
    /// Confirmations posted at once.
    pub concurrency: usize,
}

impl Default for ErpBridgeConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            default_line: String::new(),
            tokens: Vec::new(),
            erp_url: String::new(),
            format: Format::Json,
            timeout_ms: 10_000,
            max_attempts: 10,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            concurrency: 8,
        }
    }
}

/// One API client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who uses it (for people; not checked).
    pub name: String,
    /// The bearer token.
    pub token: String,
}

/// The bridge, configured.
pub struct ErpBridge {
    config: ErpBridgeConfig,
    default_line: Option<Location>,
    demo: bool,
    tokens: Vec<[u8; 32]>,
    adapter: Option<Arc<dyn ErpAdapter>>,
    policy: RetryPolicy,
    counters: Counters,
    /// Opened by the first run and kept across restarts (redb allows one handle per file).
    store: OnceCell<Store>,
}

/// The bridge's metrics.
#[derive(Clone, Default)]
pub struct Counters {
    /// Orders published (new or revised).
    pub accepted: Counter,
    /// Requests rejected (400/422).
    pub rejected: Counter,
    /// Confirmations posted.
    pub posted: Counter,
    /// Failed posting attempts.
    pub failed_attempts: Counter,
    /// Confirmations that became dead letters.
    pub dead_lettered: Counter,
    /// Live outbox entries.
    pub outbox_depth: Gauge,
    /// Age of the oldest live entry, in seconds.
    pub outbox_oldest_age_s: Gauge,
    /// Dead letters waiting.
    pub dead_letters: Gauge,
}

/// Why a run of the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The MQTT client is gone.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store failed.
    #[error("erp-bridge store: {0}")]
    Store(#[from] StoreError),
    /// The routes could not be mounted.
    #[error(transparent)]
    Mount(#[from] uns_service::MountError),
}

/// What the HTTP handlers and the tasks of one run share.
pub struct Shared {
    pub(crate) store: Store,
    pub(crate) client: UnsClient,
    pub(crate) plant: RwLock<Plant>,
    pub(crate) default_line: Option<Location>,
    pub(crate) max_body_bytes: usize,
    pub(crate) tokens: Vec<[u8; 32]>,
    pub(crate) counters: Counters,
    pub(crate) service_id: Id,
    /// Notified after an enqueue or replay: the sender looks for due entries at once.
    pub(crate) wake: Notify,
}

impl Shared {
    pub(crate) fn plant(&self) -> RwLockReadGuard<'_, Plant> {
        // The plant map is replaced entry by entry; a panicking writer leaves it consistent.
        self.plant
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `_errors` of the default line's site, else of the plant's first site, else of its root.
    pub(crate) fn errors_topic(&self) -> UnsTopic {
        let location = self
            .default_line
            .as_ref()
            .map(validate::site_of)
            .or_else(|| {
                let plant = self.plant();
                let first_site = plant.locations().find(|location| location.depth() == 2);
                first_site.or_else(|| plant.locations().next()).cloned()
            })
            .unwrap_or_else(|| Location::enterprise_root(fallback_segment()));
        UnsTopic::Located {
            location,
            class: Class::Errors,
        }
    }
}

fn fallback_segment() -> uns_model::topic::Segment {
    // `uns` is a valid segment (lowercase letters), so this cannot fail.
    uns_model::topic::Segment::new("uns").unwrap_or_else(|_| unreachable!("`uns` is a segment"))
}

/// Unix ms now.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

fn hash_token(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Service for ErpBridge {
    const NAME: &'static str = "erp-bridge";
    const SECTION: &'static str = "erp_bridge";
    const ABOUT: &'static str =
        "ERP bridge: production orders in (JSON, B2MML), confirmations out through an outbox";
    const FLAGS: &'static [Flag] = &[Flag {
        long: "erp-url",
        key: "erp_url",
        help: "Where confirmations are posted (http://...)",
    }];
    type Config = ErpBridgeConfig;
    type Error = BridgeError;

    fn configure(config: ErpBridgeConfig, env: &ConfigEnv) -> Result<Self, ConfigError> {
        if config.max_body_bytes < 1024 {
            return Err(ConfigError::new("max_body_bytes", "must be at least 1024"));
        }
        let default_line = match config.default_line.trim() {
            "" => None,
            text => Some(text.parse::<Location>().map_err(|err| {
                ConfigError::new("default_line", format!("not a plant path: {err}"))
            })?),
        };
        let mut tokens = Vec::with_capacity(config.tokens.len());
        for (idx, token) in config.tokens.iter().enumerate() {
            if token.token.len() < 16 {
                return Err(ConfigError::new(
                    format!("tokens[{idx}].token"),
                    "must be at least 16 characters",
                ));
            }
            tokens.push(hash_token(&token.token));
        }
        if config.max_attempts == 0 {
            return Err(ConfigError::new("max_attempts", "must be at least 1"));
        }
        if config.timeout_ms == 0 {
            return Err(ConfigError::new("timeout_ms", "must be at least 1"));
        }
        if config.concurrency == 0 {
            return Err(ConfigError::new("concurrency", "must be at least 1"));
        }
        if config.retry_initial_ms == 0 || config.retry_max_ms < config.retry_initial_ms {
            return Err(ConfigError::new(
                "retry_max_ms",
                "retry_initial_ms must be at least 1 and retry_max_ms at least retry_initial_ms",
            ));
        }
        let adapter: Option<Arc<dyn ErpAdapter>> = match config.erp_url.trim() {
            "" if env.demo => Some(Arc::new(DemoErp::default())),
            "" => None,
            url => Some(Arc::new(
                HttpErp::new(url, config.format, Duration::from_millis(config.timeout_ms))
                    .map_err(|err| ConfigError::new("erp_url", err.to_string()))?,
            )),
        };
        let policy = RetryPolicy {
            initial: Duration::from_millis(config.retry_initial_ms),
            max: Duration::from_millis(config.retry_max_ms),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: config.max_attempts,
            seed: now_ms(),
        };
        Ok(Self {
            default_line,
            demo: env.demo,
            tokens,
            adapter,
            policy,
            counters: Counters::default(),
            store: OnceCell::new(),
            config,
        })
    }

    fn register_metrics(&self, metrics: &uns_client::Metrics) {
        let c = &self.counters;
        metrics.register(
            "erp_orders_accepted",
            "Production orders published (new or revised)",
            c.accepted.clone(),
        );
        metrics.register(
            "erp_orders_rejected",
            "Order requests rejected (400/422)",
            c.rejected.clone(),
        );
        metrics.register(
            "erp_confirmations_posted",
            "Confirmations the ERP accepted",
            c.posted.clone(),
        );
        metrics.register(
            "erp_confirmation_failed_attempts",
            "Failed posting attempts",
            c.failed_attempts.clone(),
        );
        metrics.register(
            "erp_confirmations_dead_lettered",
            "Confirmations moved to the dead-letter queue",
            c.dead_lettered.clone(),
        );
        metrics.register(
            "erp_outbox_depth",
            "Confirmations waiting in the outbox",
            c.outbox_depth.clone(),
        );
        metrics.register(
            "erp_outbox_oldest_age_seconds",
            "Age of the oldest confirmation waiting",
            c.outbox_oldest_age_s.clone(),
        );
        metrics.register(
            "erp_dead_letters",
            "Dead letters waiting for replay",
            c.dead_letters.clone(),
        );
    }

    async fn run(&self, mut ctx: Context) -> Result<(), BridgeError> {
        let path = ctx.data_dir.join("erp-bridge.redb");
        let store = self
            .store
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Store::open(&path))
                    .await
                    .map_err(|err| StoreError::Panicked(err.to_string()))?
            })
            .await?
            .clone();
        let shared = Arc::new(Shared {
            store,
            client: ctx.client.clone(),
            plant: RwLock::new(Plant::default()),
            default_line: self.default_line.clone(),
            max_body_bytes: self.config.max_body_bytes,
            tokens: self.tokens.clone(),
            counters: self.counters.clone(),
            service_id: Id::new(Self::NAME).unwrap_or_else(|_| unreachable!("a valid id")),
            wake: Notify::new(),
        });
        // Leases still held were taken by an earlier process of this service that died (kill -9,
        // power loss) while posting: those confirmations are due now, not when the lease runs out.
        let outbox = db::confirmations();
        let now = now_ms();
        let released = shared
            .store
            .write(move |tx| outbox.release_leases(tx, now))
            .await?;
        if released > 0 {
            info!(
                released,
                "confirmations an earlier process had leased are due again"
            );
        }
        for filter in TopicFilter::at_any_location(&Class::Meta) {
            ctx.client.subscribe(&filter).await?;
        }
        // Confirmation requests come over a connection of their own with manual acks and a
        // persistent session: a message is acknowledged only after its outbox entry committed, and
        // requests published while the bridge is down wait on the broker.
        let confirmations_stop = CancellationToken::new();
        let (confirmations, mut confirmations_inbox, _confirmations_loop) =
            confirmations_client(&ctx, confirmations_stop.clone())?;
        for filter in TopicFilter::any_id_at_any_location(AnyId::WorkOrderEvents) {
            confirmations.subscribe(&filter).await?;
        }
        ctx.http.mount(api::router(shared.clone()))?;
        let health_detail = match &self.adapter {
            Some(adapter) => format!("posting confirmations to {}", adapter.describe()),
            None => "no erp_url configured: confirmations wait in the outbox".to_owned(),
        };
        let sender = tokio::spawn(sender(
            shared.clone(),
            self.adapter.clone(),
            self.policy.clone(),
            self.config.concurrency,
            ctx.shutdown.clone(),
        ));
        let health = ctx.health.clone();
        let watcher = tokio::spawn(watch_outbox(
            shared.clone(),
            health,
            health_detail,
            ctx.shutdown.clone(),
        ));
        let mut demo_pending = self.demo;
        let result = loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => break Ok(()),
                message = confirmations_inbox.recv() => {
                    let Some(message) = message else { break Ok(()) };
                    // Unacknowledged on error: the broker delivers it again after the restart.
                    if let Err(err) = enqueue(&shared, &message).await {
                        break Err(err);
                    }
                    confirmations.ack(&message).await?;
                }
                message = ctx.inbox.recv() => {
                    let Some(message) = message else { break Ok(()) };
                    handle_meta(&shared, &message);
                    if demo_pending && demo::plant_ready(&shared.plant()) {
                        demo_pending = false;
                        if let Err(err) = demo::load(&shared).await {
                            warn!(cause = %err, "loading the demo orders");
                        }
                    }
                }
            }
        };
        sender.abort();
        watcher.abort();
        confirmations.shutdown(Duration::from_secs(2)).await;
        confirmations_stop.cancel();
        result
    }
}

/// The service id, MQTT client id and session expiry of the confirmation connection.
pub const CONFIRMATIONS_CLIENT: (&str, &str, Duration) = (
    "erp-bridge.confirmations",
    "uns-erp-bridge-confirmations",
    Duration::from_secs(7 * 24 * 3600),
);

fn confirmations_client(
    ctx: &Context,
    stop: CancellationToken,
) -> Result<(UnsClient, uns_client::Inbox, tokio::task::JoinHandle<()>), BridgeError> {
    let (service, client_id, expiry) = CONFIRMATIONS_CLIENT;
    let mut options = ClientOptions::new(ctx.broker.url.clone(), service)
        .unwrap_or_else(|_| unreachable!("a valid id"));
    options.client_id = client_id.to_owned();
    options.credentials = ctx.broker.credentials.clone();
    options.manual_acks = true;
    options.session_expiry = Some(expiry);
    // Its connection metrics go to a registry of their own: the process registry already has
    // the client families, registered once by the runtime.
    let metrics = ClientMetrics::register(&uns_client::Metrics::new());
    Ok(UnsClient::start(options, metrics, stop))
}

/// A `_meta` document: the plant model changed.
fn handle_meta(shared: &Shared, message: &Message) {
    let Ok(UnsTopic::Located {
        location,
        class: Class::Meta,
    }) = message.uns_topic()
    else {
        return;
    };
    let mut plant = shared
        .plant
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if message.payload.is_empty() {
        plant.remove(&location);
    } else if let Ok(meta) = uns_model::payload::decode::<NodeMeta>(&message.payload) {
        plant.insert(location, meta);
    }
}

/// A work-order event: a `confirmation_requested` goes into the outbox (committed when this
/// returns); every other event is not the bridge's business.
async fn enqueue(shared: &Shared, message: &Message) -> Result<(), BridgeError> {
    let event = match uns_model::payload::decode::<WorkOrderEvent>(&message.payload) {
        Ok(event) => event,
        Err(err) => {
            // The workorders service owns the topic, but a confirmation request we cannot read
            // must not vanish silently.
            if String::from_utf8_lossy(&message.payload).contains("confirmation_requested") {
                report(
                    shared,
                    &message.topic,
                    &format!("unreadable confirmation_requested: {err}"),
                    &message.payload,
                )
                .await;
            }
            return Ok(());
        }
    };
    if !matches!(event.kind, WorkOrderEventKind::ConfirmationRequested { .. }) {
        return Ok(());
    }
    let pending = db::Pending {
        topic: message.topic.clone(),
        event,
    };
    let key = pending.event.header.event_id.to_string();
    let payload = serde_json::to_vec(&pending).map_err(|err| StoreError::Encode {
        table: "outbox.confirmations".to_owned(),
        message: err.to_string(),
    })?;
    let now = now_ms();
    let outbox = db::confirmations();
    let enqueued = shared
        .store
        .write(move |tx| outbox.enqueue(tx, &key, &payload, now))
        .await?;
    if enqueued.new {
        shared.wake.notify_one();
    }
    Ok(())
}

async fn report(shared: &Shared, topic: &str, reason: &str, payload: &[u8]) {
    let report = ErrorReport {
        schema: SchemaTag::default(),
        service: shared.service_id.clone(),
        topic: Some(topic.to_owned()),
        reason: reason.to_owned(),
        payload_excerpt: Some(
            String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned(),
        ),
        payload_sha256: None,
        occurred_at: Timestamp::from(chrono::Utc::now()),
    };
    let errors = match topic.parse::<UnsTopic>() {
        Ok(UnsTopic::Located { location, .. }) => UnsTopic::Located {
            location: validate::site_of(&location),
            class: Class::Errors,
        },
        _ => shared.errors_topic(),
    };
    if let Err(err) = shared
        .client
        .report_error(&errors, "confirmation", &report)
        .await
    {
        warn!(cause = %err, "reporting on _errors");
    }
}

/// The sender task: leases due confirmations, posts them (up to `concurrency` at once), and acks
/// or fails each in the store; sleeps until the next due entry or a wake-up.
async fn sender(
    shared: Arc<Shared>,
    adapter: Option<Arc<dyn ErpAdapter>>,
    policy: RetryPolicy,
    concurrency: usize,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(adapter) = adapter else {
        // No ERP: entries wait (leasing would count attempts for nothing).
        shutdown.cancelled().await;
        return;
    };
    let lease_ms = 60_000u64;
    loop {
        let outbox = db::confirmations();
        let now = now_ms();
        let leased = shared
            .store
            .write(move |tx| outbox.lease(tx, now, concurrency * 4, lease_ms))
            .await;
        let entries = match leased {
            Ok(entries) => entries,
            Err(err) => {
                warn!(cause = %err, "leasing confirmations");
                Vec::new()
            }
        };
        if entries.is_empty() {
            let outbox = db::confirmations();
            let next = shared
                .store
                .read(move |tx| outbox.next_due_ms(tx))
                .await
                .ok()
                .flatten();
            let wait = next.map_or(Duration::from_secs(3600), |due| {
                Duration::from_millis(due.saturating_sub(now_ms()).max(1))
            });
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        use futures::StreamExt as _;
        futures::stream::iter(entries)
            .for_each_concurrent(concurrency, |entry| {
                let shared = shared.clone();
                let adapter = adapter.clone();
                let policy = policy.clone();
                async move { deliver(&shared, adapter.as_ref(), &policy, entry).await }
            })
            .await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

async fn deliver(
    shared: &Shared,
    adapter: &dyn ErpAdapter,
    policy: &RetryPolicy,
    entry: uns_store::OutboxEntry,
) {
    let pending: db::Pending = match serde_json::from_slice(&entry.payload) {
        Ok(pending) => pending,
        Err(err) => {
            warn!(entry = entry.id.0, cause = %err, "unreadable outbox entry; dead-lettering");
            let outbox = db::confirmations();
            let policy = RetryPolicy {
                max_attempts: 1,
                ..policy.clone()
            };
            let message = format!("unreadable entry: {err}");
            let _ = shared
                .store
                .write(move |tx| outbox.fail(tx, entry.id, &message, now_ms(), &policy))
                .await;
            return;
        }
    };
    let result = adapter.post(&pending.event).await;
    let outbox = db::confirmations();
    let id = entry.id;
    match result {
        Ok(posted) => {
            let acked = shared
                .store
                .write(move |tx| outbox.ack(tx, id, now_ms()))
                .await;
            match acked {
                Ok(true) => {
                    shared.counters.posted.inc();
                    let kind = WorkOrderEventKind::ConfirmationPosted {
                        request_event_id: pending.event.header.event_id,
                        erp_document: posted.erp_document,
                    };
                    publish_outcome(shared, &pending, kind).await;
                }
                Ok(false) => {}
                Err(err) => warn!(entry = id.0, cause = %err, "acking a posted confirmation"),
            }
        }
        Err(err) => {
            shared.counters.failed_attempts.inc();
            let message = err.to_string();
            let policy = policy.clone();
            let failed = shared
                .store
                .write({
                    let message = message.clone();
                    move |tx| outbox.fail(tx, id, &message, now_ms(), &policy)
                })
                .await;
            match failed {
                Ok(FailOutcome::DeadLettered) => {
                    shared.counters.dead_lettered.inc();
                    warn!(entry = id.0, wo = %pending.event.wo_id, cause = %message, "confirmation dead-lettered");
                    report(
                        shared,
                        &pending.topic,
                        &format!(
                            "confirmation {} of work order {} dead-lettered after {} attempts: {message}",
                            pending.event.header.event_id, pending.event.wo_id, entry.attempts
                        ),
                        &entry.payload,
                    )
                    .await;
                    let kind = WorkOrderEventKind::ConfirmationFailed {
                        request_event_id: pending.event.header.event_id,
                        error: message,
                        attempts: entry.attempts,
                        dead_lettered: true,
                    };
                    publish_outcome(shared, &pending, kind).await;
                }
                Ok(FailOutcome::Retry { .. }) => {}
                Err(err) => warn!(entry = id.0, cause = %err, "recording a failed posting"),
            }
        }
    }
}

async fn publish_outcome(shared: &Shared, pending: &db::Pending, kind: WorkOrderEventKind) {
    let Ok(topic) = pending.topic.parse::<UnsTopic>() else {
        return;
    };
    let now = Timestamp::from(chrono::Utc::now());
    let event = WorkOrderEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(uuid::Uuid::now_v7(), now, now),
        wo_id: pending.event.wo_id.clone(),
        kind,
    };
    if let Err(err) = shared.client.publish(&topic, &event).await {
        warn!(cause = %err, "publishing a confirmation outcome");
    }
}

/// Keeps the outbox gauges and the health detail current (every second).
async fn watch_outbox(
    shared: Arc<Shared>,
    health: uns_service::HealthHandle,
    detail: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last: Option<String> = None;
    loop {
        let outbox = db::confirmations();
        if let Ok(stats) = shared.store.read(move |tx| outbox.stats(tx)).await {
            let age_s = stats
                .oldest_enqueued_ms
                .map_or(0, |oldest| now_ms().saturating_sub(oldest) / 1000);
            shared
                .counters
                .outbox_depth
                .set(i64::try_from(stats.depth).unwrap_or(i64::MAX));
            shared
                .counters
                .outbox_oldest_age_s
                .set(i64::try_from(age_s).unwrap_or(i64::MAX));
            shared
                .counters
                .dead_letters
                .set(i64::try_from(stats.dead).unwrap_or(i64::MAX));
            let text = format!(
                "{detail}; outbox depth {}, oldest {age_s}s, {} dead letters",
                stats.depth, stats.dead
            );
            // Degraded while confirmations cannot go out: dead letters, or no ERP with a backlog.
            let degraded = stats.dead > 0 || (detail.starts_with("no erp_url") && stats.depth > 0);
            let key = format!("{degraded}{}{}", stats.depth > 0, stats.dead);
            if last.as_deref() != Some(key.as_str()) {
                let result = if degraded {
                    health.degraded(text).await
                } else {
                    health.running().await
                };
                if result.is_ok() {
                    last = Some(key);
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
