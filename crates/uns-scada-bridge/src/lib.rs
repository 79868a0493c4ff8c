//! The SCADA bridge (`scada-bridge`): a Sparkplug B 3.0 *primary host application* that turns edge
//! node protobuf into readable, contextualized JSON on the ISA-95 tree (DESIGN §2, §4).
//!
//! # Data path
//!
//! ```text
//! spBv1.0/# ──(own MQTT connection, Will = STATE death)──► HostSession (uns_sparkplug::host)
//!     ──HostEvent──► Bridge (mapping, context, stale, state, counts) ──Publication──►
//!         UnsClient: uns/v1/{location}/_tag/…, _state, _state/events, _count/…, _errors
//!         …/_tag/…/_history (historical values, not retained)
//!         Sparkplug connection: rebirth NCMDs, STATE birth
//! uns/v1/…/_wo/_active ──(UnsClient inbox)──► Bridge context
//! ```
//!
//! [`run`] owns one loop over a closed set of triggers: a Sparkplug message, a UNS message, the host's
//! reorder deadline, shutdown. The Sparkplug connection is a task of its own ([`connection`]) that only
//! moves packets, so the MQTT event loop is never cancelled mid-read.
//!
//! # Where things land
//!
//! See [`config`] for the location mapping (unmapped nodes go to `{enterprise}/{site}/{group}/{edge}`
//! slugged) and [`bridge`] for tags, historical values, stale marking, `_state` and `_count`.
//!
//! Bad input (corrupt protobuf, wrong topic shape, garbage `seq`, oversize births, unknown aliases) goes
//! to the `_errors` topic of the location concerned with the reason and is counted
//! (`uns_scada_bridge_rejected{kind=…}`, every one); the loop keeps running. Reports are rate
//! limited per edge node ([`errors`]: the first of a window at once, the rest as one summary), so
//! a broken node cannot flood `_errors`; `uns_rejected_input{service="scada-bridge",kind=…}` counts
//! the reports published.
#![deny(missing_docs)]

pub mod bridge;
pub mod config;
mod connection;
pub mod context;
pub mod errors;
mod paths;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::info;
use uns_client::{Inbox, Metrics, UnsClient};
use uns_model::payload::{ErrorReport, SchemaTag, Timestamp};
use uns_model::topic::{Class, Id, TopicFilter, UnsTopic};
use uns_service::{ConfigEnv, ConfigError as ServiceConfigError, Context, Service};
use uns_sparkplug::host::{HostSession, Incoming, Now};

pub use bridge::{Bridge, BridgeCounters, KindLabel, Publication};
pub use config::{BridgeConfig, ConfigError, EXAMPLE_TOML, Mapping, NodeMapping, StateConfig};

/// The service name, as in `uns/v1/_services/scada-bridge`.
pub const SERVICE: &str = "scada-bridge";

/// How long the caller should give the clients to flush on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Where the bridge's own Sparkplug MQTT connection goes (usually the same broker as the UNS client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparkplugConnect {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Username and password, if the broker needs them.
    pub credentials: Option<(String, String)>,
}

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The configuration is invalid; nothing was started.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The UNS client is shut down (subscribing or publishing failed for good).
    #[error("UNS client: {0}")]
    Client(#[from] uns_client::ClientError),
}

/// The SCADA bridge as a service (`uns_service::Service`): the `[scada_bridge]` section validated
/// into a [`Mapping`] before anything starts, then [`run`]'s loop on the service's own client, with a
/// Sparkplug connection of its own to the same broker.
pub struct ScadaBridge {
    mapping: Mapping,
    counters: BridgeCounters,
}

impl ScadaBridge {
    /// The bridge for a validated mapping.
    pub fn new(mapping: Mapping) -> Self {
        Self {
            mapping,
            counters: BridgeCounters::default(),
        }
    }
}

impl Service for ScadaBridge {
    const NAME: &'static str = SERVICE;
    const SECTION: &'static str = "scada_bridge";
    const ABOUT: &'static str = "Run the SCADA bridge alone: a Sparkplug B 3.0 primary host that \
        turns edge-node metrics into readable JSON on the ISA-95 tree (`_tag`, `_state`, `_count`), \
        marks them stale when a node dies, and asks for rebirths when it loses track";
    type Config = BridgeConfig;
    type Error = BridgeError;

    fn configure(config: BridgeConfig, _env: &ConfigEnv) -> Result<Self, ServiceConfigError> {
        config::check_locations(&config)?;
        let enterprise = config.enterprise.clone();
        Mapping::try_from(config)
            .map(Self::new)
            .map_err(|err| config::keyed(&err, &enterprise))
    }

    fn register_metrics(&self, metrics: &Metrics) {
        register_counters(metrics, &self.counters);
    }

    async fn run(&self, mut ctx: Context) -> Result<(), BridgeError> {
        let sparkplug = SparkplugConnect {
            host: ctx.broker.url.host().to_owned(),
            port: ctx.broker.url.port(),
            credentials: ctx.broker.credentials.clone(),
        };
        run_mapped(
            ctx.client.clone(),
            &mut ctx.inbox,
            sparkplug,
            self.mapping.clone(),
            self.counters.clone(),
            ctx.shutdown.clone(),
        )
        .await
    }
}

/// Runs the bridge until `shutdown`: connects to Sparkplug as the primary host, maps every message, and
/// publishes the UNS documents through `client`. On shutdown it publishes its STATE death and
/// disconnects the Sparkplug connection (the caller shuts `client` down).
pub async fn run(
    client: UnsClient,
    mut inbox: Inbox,
    sparkplug: SparkplugConnect,
    config: BridgeConfig,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> Result<(), BridgeError> {
    let mapping = Mapping::try_from(config)?;
    let counters = BridgeCounters::default();
    register_counters(metrics, &counters);
    run_mapped(client, &mut inbox, sparkplug, mapping, counters, shutdown).await
}

async fn run_mapped(
    client: UnsClient,
    inbox: &mut Inbox,
    sparkplug: SparkplugConnect,
    mapping: Mapping,
    counters: BridgeCounters,
    shutdown: CancellationToken,
) -> Result<(), BridgeError> {
    let service = Id::new(client.service()).unwrap_or_else(|_| uns_model::topic::slug(SERVICE));
    let mut bridge = Bridge::new(mapping.clone(), service.clone(), counters);
    learn_counts(&client, inbox, &mut bridge, &service).await?;
    // `_wo/_active` at every depth a work order can run at.
    for filter in TopicFilter::at_any_location(&Class::WorkOrderActive) {
        client.subscribe(&filter).await?;
    }
    let clock = Clock::new();
    // The session's host config was validated by `Mapping::try_from`.
    let mut host = match HostSession::new(mapping.host.clone()) {
        Ok(host) => host,
        Err(err) => return Err(ConfigError::HostId(err.to_string()).into()),
    };
    let (mut sparkplug_rx, connection) = connection::start(
        &sparkplug,
        &mapping,
        &mut host,
        clock.now().utc_ms,
        shutdown.clone(),
    );
    info!(host_id = %mapping.host.host_id, broker = %format!("{}:{}", sparkplug.host, sparkplug.port), "scada-bridge started");
    loop {
        let deadline = host.next_deadline();
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            message = inbox.recv() => match message {
                Some(message) => Trigger::Uns(message),
                None => break,
            },
            event = sparkplug_rx.recv() => match event {
                Some(event) => Trigger::Sparkplug(event),
                None => break,
            },
            () = sleep_until(clock.start, deadline) => Trigger::Deadline,
            () = sleep_until_utc(bridge.next_errors_deadline_ms()) => Trigger::ErrorsWindow,
        };
        let now = clock.now();
        let publications = match event {
            Trigger::Uns(message) => {
                if let Ok(topic) = message.uns_topic()
                    && let (Some(location), Some(Class::WorkOrderActive)) =
                        (topic.location(), topic.class())
                    && let Err(err) = bridge.set_active_order(location.clone(), &message.payload)
                {
                    let report = ErrorReport {
                        schema: SchemaTag::default(),
                        service: service.clone(),
                        topic: Some(message.topic.clone()),
                        reason: format!("not a work order document: {err}"),
                        payload_excerpt: Some(bridge::excerpt(&message.payload)),
                        payload_sha256: None,
                        occurred_at: Timestamp::from(chrono::Utc::now()),
                    };
                    let errors = UnsTopic::located(location.clone(), Class::Errors);
                    client
                        .report_error(&errors, "bad_active_order", &report)
                        .await?;
                }
                continue;
            }
            Trigger::Deadline => bridge.apply(host.poll(now), None, now.utc_ms),
            Trigger::ErrorsWindow => bridge.flush_errors(now.utc_ms),
            Trigger::Sparkplug(connection::Event::Message {
                topic,
                payload,
                qos,
            }) => {
                let events = host.handle(
                    Incoming {
                        topic: &topic,
                        payload: &payload,
                        qos,
                    },
                    now,
                );
                bridge.apply(events, Some((&topic, &payload)), now.utc_ms)
            }
            Trigger::Sparkplug(connection::Event::Connected(connect)) => {
                // The connection task already sent the birth; from now on own-death re-assertions use
                // this connection's timestamp.
                host.connect(connect);
                continue;
            }
            Trigger::Sparkplug(connection::Event::Lost) => {
                bridge.apply(host.connection_lost(now), None, now.utc_ms)
            }
        };
        execute(&client, &connection, publications).await?;
    }
    // Summaries still held back go out before the bridge stops, if the client still runs (it may
    // be shutting down with the same token): a clean stop is not an error.
    if let Err(err) = execute(&client, &connection, bridge.flush_errors(u64::MAX)).await {
        tracing::debug!(%err, "error summaries not published at shutdown");
    }
    let death = host.disconnect(clock.now().utc_ms);
    connection.stop(death, SHUTDOWN_GRACE).await;
    info!("scada-bridge stopped");
    Ok(())
}

/// How long the bridge waits at start for the retained `_count` documents before it goes on without
/// the rest (a broker that never answers its own subscription).
const LEARN_TIMEOUT: Duration = Duration::from_secs(10);

/// Before the Sparkplug connection: reads the retained `_count/{kind}` documents of an earlier run
/// into `bridge`, so totals carry on across a bridge restart. The end of the retained messages is
/// marked by a message of our own on `{default root}/_cmd/{service}/sync`, subscribed and published
/// after the `_count` subscriptions on the same connection, which the broker delivers after the
/// retained messages those subscriptions brought.
async fn learn_counts(
    client: &UnsClient,
    inbox: &mut Inbox,
    bridge: &mut Bridge,
    service: &Id,
) -> Result<(), BridgeError> {
    use uns_model::topic::CountKind;
    for kind in [
        CountKind::Good,
        CountKind::Scrap,
        CountKind::Rework,
        CountKind::Produced,
    ] {
        for filter in TopicFilter::at_any_location(&Class::Count(kind)) {
            client.subscribe(&filter).await?;
        }
    }
    let sync = UnsTopic::located(
        bridge.mapping().default_root.clone(),
        Class::Cmd(vec![
            service.clone(),
            Id::new("sync").unwrap_or_else(|_| unreachable!("a valid id")),
        ]),
    );
    let sync_filter = TopicFilter::new(&sync.to_string())
        .unwrap_or_else(|_| unreachable!("a topic without wildcards is a filter"));
    client.subscribe(&sync_filter).await?;
    let nonce = uuid::Uuid::now_v7().to_string();
    client
        .publish_bytes(&sync, bytes::Bytes::from(nonce.clone().into_bytes()))
        .await?;
    let mut n_learned = 0_usize;
    let learned = tokio::time::timeout(LEARN_TIMEOUT, async {
        while let Some(message) = inbox.recv().await {
            if message.topic == sync.to_string() && message.payload == nonce.as_bytes() {
                return true;
            }
            let Ok(topic) = message.uns_topic() else {
                continue;
            };
            if let (Some(location), Some(Class::Count(_))) = (topic.location(), topic.class()) {
                match uns_model::payload::decode::<uns_model::payload::CountDoc>(&message.payload) {
                    Ok(doc) => {
                        bridge.learn_count(location.clone(), &doc);
                        n_learned += 1;
                    }
                    Err(err) => {
                        tracing::warn!(topic = %message.topic, %err, "ignoring a retained _count document that does not decode");
                    }
                }
            }
        }
        false
    })
    .await;
    match learned {
        Ok(true) => info!(
            n_learned,
            "count totals learned from the retained _count documents"
        ),
        _ => tracing::warn!(
            n_learned,
            ?LEARN_TIMEOUT,
            "the retained _count documents did not all arrive; totals not learned start from the machine counters"
        ),
    }
    Ok(())
}

/// One trigger of the service loop.
enum Trigger {
    Uns(uns_client::Message),
    Sparkplug(connection::Event),
    /// The host's reorder deadline.
    Deadline,
    /// An `_errors` window with reports held back ended.
    ErrorsWindow,
}

async fn execute(
    client: &UnsClient,
    connection: &connection::Handle,
    publications: Vec<Publication>,
) -> Result<(), BridgeError> {
    for publication in publications {
        match publication {
            Publication::Uns { topic, payload } => client.publish_bytes(&topic, payload).await?,
            Publication::Historical { topic, payload } => {
                client.publish_bytes(&topic, payload).await?;
            }
            Publication::Sparkplug(message) => connection.publish(message).await,
            Publication::Error {
                topic,
                kind,
                report,
            } => client.report_error(&topic, kind, &report).await?,
        }
    }
    Ok(())
}

async fn sleep_until(start: tokio::time::Instant, deadline: Option<Duration>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(start + deadline).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the wall-clock `deadline_ms` (ms since the epoch); forever when `None`.
async fn sleep_until_utc(deadline_ms: Option<u64>) {
    match deadline_ms {
        Some(deadline_ms) => {
            let wait = deadline_ms.saturating_sub(utc_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}

/// Monotonic time from the bridge's start, plus the wall clock.
#[derive(Clone, Copy)]
struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Now {
        Now {
            monotonic: self.start.elapsed(),
            utc_ms: utc_ms(),
        }
    }
}

fn utc_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn register_counters(metrics: &Metrics, counters: &BridgeCounters) {
    metrics.register(
        "scada_bridge_tags",
        "Current Sparkplug values published to _tag",
        counters.tags.clone(),
    );
    metrics.register(
        "scada_bridge_historical",
        "Historical Sparkplug values published on _tag/.../_history (not retained)",
        counters.historical.clone(),
    );
    metrics.register(
        "scada_bridge_history_dropped",
        "Historical values dropped: sent again, or older than the last one published",
        counters.history_dropped.clone(),
    );
    metrics.register(
        "scada_bridge_stale",
        "_tag documents re-published as stale after NDEATH/DDEATH",
        counters.stale.clone(),
    );
    metrics.register(
        "scada_bridge_rebirths",
        "Node Control/Rebirth requests sent",
        counters.rebirths.clone(),
    );
    metrics.register(
        "scada_bridge_states",
        "_state changes published",
        counters.states.clone(),
    );
    metrics.register(
        "scada_bridge_tracked_metrics",
        "Metrics the bridge holds state for: the births in effect of every node and device",
        counters.tracked_metrics.clone(),
    );
    metrics.register(
        "scada_bridge_rejected",
        "Every rejected input, by kind, whether reported on _errors at once or in a summary",
        counters.rejected.clone(),
    );
    metrics.register(
        "scada_bridge_error_reports_suppressed",
        "Rejections held back by the _errors rate limit (error_window_ms) and counted in a summary",
        counters.error_reports_suppressed.clone(),
    );
}
