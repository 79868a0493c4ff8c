//! The web console (`console`): a topic browser for the whole broker, served at `/` on the
//! process's HTTP port (`uns up`), or on its own port (`uns console --broker ...`).
//!
//! # Data path
//!
//! ```text
//! broker ──#, $SYS/# (QoS 2, Retain As Published)──► UnsClient inbox ──► run loop
//!     ──► Shared: TopicTree (latest + bounded history per topic), BirthCache (Sparkplug)
//!     ──► broadcast of changed topic names ──► SSE /api/v1/console/events ──► the page
//! browser ──GET /api/v1/console/{tree,topic,search,stats}──► Shared (one short lock)
//! ```
//!
//! The browser has no MQTT connection of its own: the server subscribes once, keeps the latest
//! message of every topic with its retained flag, QoS, MQTT 5 properties and arrival time, and a
//! history bounded by `[console] history_values` and `history_window_s` ([`tree`]). Sparkplug
//! payloads are decoded because their topic is in the `spBv1.0` namespace, with aliases resolved
//! through the births ([`sparkplug`]); JSON payloads with a `schema` field are checked against the
//! model's schema of that id when shown ([`schema`]).
//!
//! The page ([`api`]) is hand-written HTML, ES modules and CSS compiled into the binary: no build
//! step, no third-party code. It is built as a set of views: the topic browser, the plant (ISA-95
//! tree with states, counts, services' health, `$SYS`), the OEE board, work orders (with the ERP
//! bridge's dead letters) and trace; their data comes from the retained topics ([`views`]) or,
//! for actions, traces and dead letters, from the owning service's API on the same HTTP port.
//!
//! # Access
//!
//! The HTTP layer (uns-service `auth`) checks accounts and roles: a caller logged in with a
//! broker account (Basic, a bearer token or the `/login` cookie) is served from anywhere, with
//! what its role allows (POSTs under `/api/v1/console/` need an operator). Anonymous callers are
//! served on loopback only, whatever address the HTTP port listens on: secure by default, as the
//! broker is without users. Others get 403 with the reason.
#![deny(missing_docs)]

pub mod api;
pub mod schema;
pub mod sparkplug;
pub mod tree;
pub mod views;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{info, warn};
use uns_client::{ClientError, Message, Metrics, SubscribeOptions};
use uns_model::topic::TopicFilter;
use uns_service::{ConfigEnv, ConfigError, Context, MountError, Service};

use crate::schema::SchemaBook;
use crate::sparkplug::BirthCache;
use crate::tree::{HistoryLimits, Inserted, Properties, Sample, TopicTree};

/// The service name, as in `uns/v1/_services/console`.
pub const SERVICE: &str = "console";

/// Most values `history_values` may ask for per topic.
pub const MAX_HISTORY_VALUES: usize = 100_000;

/// The `[console]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Values kept per topic for its history and chart; the oldest go first.
    pub history_values: usize,
    /// Values older than this many seconds leave the history too.
    pub history_window_s: u64,
    /// All topics' history together, in MiB (payloads plus a fixed cost per value); beyond it the
    /// oldest values of any topic go first. The latest value of every topic is always kept.
    pub history_max_mib: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            history_values: 1000,
            history_window_s: 3600,
            history_max_mib: 256,
        }
    }
}

/// The console as a service.
pub struct Console {
    limits: HistoryLimits,
    schemas: Arc<SchemaBook>,
    counters: Counters,
}

/// The console's metrics.
#[derive(Clone, Default)]
struct Counters {
    messages: Counter,
    topics: Gauge,
}

/// Why the console stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The MQTT client is shut down.
    #[error("MQTT client: {0}")]
    Client(#[from] ClientError),
    /// The routes could not be mounted.
    #[error(transparent)]
    Mount(#[from] MountError),
}

impl Console {
    /// The console with these history limits.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            schemas: Arc::new(SchemaBook::new()),
            counters: Counters::default(),
        }
    }
}

impl Service for Console {
    const NAME: &'static str = SERVICE;
    const SECTION: &'static str = "console";
    const ABOUT: &'static str = "Run the web console alone: a topic browser of the whole broker \
        (lazy tree, latest values with MQTT 5 properties, Sparkplug decoded through births, schema \
        checks, history charts) and the plant, OEE, work-order and trace views, served at / on the \
        HTTP port";
    type Config = ConsoleConfig;
    type Error = ConsoleError;

    fn configure(config: ConsoleConfig, env: &ConfigEnv) -> Result<Self, ConfigError> {
        if config.history_values == 0 || config.history_values > MAX_HISTORY_VALUES {
            return Err(ConfigError::new(
                "history_values",
                format!("must be 1..={MAX_HISTORY_VALUES}"),
            ));
        }
        if config.history_window_s == 0 {
            return Err(ConfigError::new("history_window_s", "must be at least 1"));
        }
        if config.history_max_mib == 0 || config.history_max_mib > 1024 * 1024 {
            return Err(ConfigError::new(
                "history_max_mib",
                "must be 1..=1048576 (MiB)",
            ));
        }
        if !env.http_listen.ip().is_loopback() {
            warn!(listen = %env.http_listen, "the console answers anonymous callers on loopback only; others log in with a broker account at /login");
        }
        Ok(Self::new(HistoryLimits {
            max_values: config.history_values,
            window_ms: config.history_window_s.saturating_mul(1000),
            max_bytes: config.history_max_mib.saturating_mul(1024 * 1024),
        }))
    }

    fn register_metrics(&self, metrics: &Metrics) {
        metrics.register(
            "console_messages",
            "Messages the console received",
            self.counters.messages.clone(),
        );
        metrics.register(
            "console_topics",
            "Topics in the console's tree",
            self.counters.topics.clone(),
        );
    }

    async fn run(&self, mut ctx: Context) -> Result<(), ConsoleError> {
        let shared = Arc::new(Shared::new(self.limits, self.schemas.clone()));
        ctx.http.mount(api::router(shared.clone()))?;
        // Everything, with the publisher's QoS and retain flag; `#` does not match `$SYS`.
        let options = SubscribeOptions {
            max_qos: 2,
            retain_as_published: true,
        };
        for filter in ["#", "$SYS/#"] {
            // Both are valid MQTT filters.
            if let Ok(filter) = TopicFilter::new(filter) {
                ctx.client.subscribe_with(&filter, options).await?;
            }
        }
        info!(
            history_values = self.limits.max_values,
            history_window_ms = self.limits.window_ms,
            "console serving / and /api/v1/console"
        );
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return Ok(()),
                message = ctx.inbox.recv() => {
                    let Some(message) = message else { return Ok(()) };
                    let inserted = shared.ingest(message, now_ms());
                    self.counters.messages.inc();
                    if inserted == Inserted::NewTopic {
                        self.counters.topics.inc();
                    }
                }
            }
        }
    }
}

/// What the run loop writes and the HTTP handlers read. Shared as an `Arc`.
pub struct Shared {
    inner: Mutex<Inner>,
    schemas: Arc<SchemaBook>,
    /// The name of every topic that received a message; SSE streams pick the ones they watch.
    /// Receivers that fall behind skip ahead (and tell their page to re-read).
    updates: broadcast::Sender<Arc<str>>,
    /// Bumped on every message: SSE streams send a tree refresh when it moved.
    version: AtomicU64,
}

struct Inner {
    tree: TopicTree,
    births: BirthCache,
    /// The UNS topics the plant views read, found by parsing each new topic name once.
    index: views::Index,
}

impl Shared {
    /// An empty state.
    pub fn new(limits: HistoryLimits, schemas: Arc<SchemaBook>) -> Self {
        let (updates, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner {
                tree: TopicTree::new(limits),
                births: BirthCache::default(),
                index: views::Index::default(),
            }),
            schemas,
            updates,
            version: AtomicU64::new(0),
        }
    }

    /// Records one received message that arrived at `arrival_ms`.
    pub fn ingest(&self, message: Message, arrival_ms: u64) -> Inserted {
        let properties = Properties {
            user_properties: message.user_properties,
            content_type: message.content_type,
            response_topic: message.response_topic,
            correlation_data: message.correlation_data.as_deref().map(hex),
            payload_format_indicator: message.payload_format_indicator,
            message_expiry_interval: message.message_expiry_interval,
        };
        let inserted = {
            let mut inner = self.lock();
            let decoded = inner
                .births
                .decode(&message.topic, &message.payload)
                .map(Arc::new);
            let inserted = inner.tree.insert(
                &message.topic,
                Sample {
                    payload: message.payload,
                    retain: message.retain,
                    qos: message.qos,
                    properties,
                    arrival_ms,
                    decoded,
                },
            );
            if inserted == Inserted::NewTopic {
                inner.index.add(&message.topic);
            }
            inserted
        };
        self.version.fetch_add(1, Ordering::Relaxed);
        // No receiver (no page open) is fine.
        let _ = self.updates.send(Arc::from(message.topic.as_str()));
        inserted
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each update leaves the tree consistent (a panic mid-insert at worst loses that
        // message's counts), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// Wall-clock milliseconds since the Unix epoch (arrival times are shown to people).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
