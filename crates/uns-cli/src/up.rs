//! Running things: the embedded broker (`uns up`, `uns broker`), the services (all of them in
//! `uns up`, one in `uns <service>`), and the HTTP endpoint, with a clean shutdown.
//!
//! Start order: broker → HTTP → services (through `uns_service::Runtime`, each with its own MQTT
//! connection over loopback, so the embedded setup exercises the same path as `docker compose`).
//! Stop order is the reverse: services publish `stopped` and disconnect, HTTP stops, the broker
//! flushes its store last.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uns_broker::{BrokerHandle, Role, Secret, User};
use uns_client::{BrokerUrl, Metrics};
use uns_model::owner::ServiceName;
use uns_service::{
    BrokerEndpoint, ConfigEnv, ConfigError, Configured, Context, Failure, Health, HttpServer,
    HttpStartError, Routes, Runtime, RuntimeOptions, Service,
};

use crate::config::{Backbone, Settings};

/// How long each component gets to stop before we move on.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running UNS.
pub(crate) struct App {
    /// The embedded broker, if this process runs it. Shared with the stats task until
    /// shutdown, which needs it back by value.
    broker: Option<Arc<BrokerHandle>>,
    http: HttpServer,
    runtime: Runtime,
    /// Cancels the HTTP server and the stats task (after the services stopped).
    stop: CancellationToken,
    stats_task: Option<JoinHandle<()>>,
}

/// The bound addresses, written to `--ready-file` as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct Addresses {
    /// The embedded broker's MQTT listener (absent for a standalone service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mqtt: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ws: Option<SocketAddr>,
    /// The embedded broker's MQTT-over-TLS listener, if configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<SocketAddr>,
    pub(crate) http: SocketAddr,
}

/// The embedded broker's own health on `uns/v1/_services/broker`, like every service's: `running`
/// while up, `stopped` on a clean stop. Its loop only waits.
/// The embedded broker's health document (`_services/broker`, `/healthz`): `degraded` while its
/// retained store cannot write (full disk, I/O error; retained changes are then kept in memory
/// and retried), `running` again once it can. Degraded is not failed: the broker still serves
/// live traffic, so `/healthz` stays 200 with the reason, as for every service's `degraded`.
struct BrokerHealth {
    broker: Option<Arc<BrokerHandle>>,
}

impl Service for BrokerHealth {
    const NAME: &'static str = "broker";
    const SECTION: &'static str = "broker";
    type Config = ();
    type Error = std::convert::Infallible;

    fn configure((): (), _env: &ConfigEnv) -> Result<Self, ConfigError> {
        Ok(Self { broker: None })
    }

    async fn run(&self, ctx: Context) -> Result<(), Self::Error> {
        let Some(broker) = &self.broker else {
            ctx.shutdown.cancelled().await;
            return Ok(());
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut reported_degraded = false;
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let stats = broker.stats();
            if stats.retained_store_degraded == reported_degraded {
                continue;
            }
            let published = if stats.retained_store_degraded {
                warn!(
                    failed_writes = stats.retained_store_failed_writes,
                    "broker retained store cannot write: degraded"
                );
                ctx.health
                    .degraded(format!(
                        "retained store cannot write ({} failed writes): retained changes are kept in memory and retried",
                        stats.retained_store_failed_writes
                    ))
                    .await
            } else {
                info!("broker retained store writes again: running");
                ctx.health.running().await
            };
            match published {
                Ok(()) => reported_degraded = stats.retained_store_degraded,
                // Retried on the next tick.
                Err(e) => warn!(cause = %e, "publishing the broker's health"),
            }
        }
    }
}

impl App {
    /// Starts the broker (if embedded), the HTTP endpoint, then every service, in that order.
    pub(crate) async fn start(settings: Settings) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let metrics = Metrics::new();
        let health = Health::default();
        let routes = Routes::default();
        let mut accounts = HashMap::new();
        let (broker, broker_url, credentials) = match settings.backbone {
            Backbone::Embedded(mut config) => {
                // Each in-process service connects under its own `service` account (a random
                // name and password per run, never written or printed), so a buggy or
                // compromised service cannot write another's topics. Internal accounts do not
                // change what anonymous clients may do.
                let names = std::iter::once(<BrokerHealth as Service>::NAME)
                    .chain(settings.services.iter().map(Configured::name));
                for name in names {
                    let (user, password) = service_account(name, &mut config)?;
                    accounts.insert(name, (user, password));
                }
                let data_dir = config.data_dir.clone();
                let broker = uns_broker::start(config)
                    .await
                    .context("starting the embedded broker")?;
                info!(mqtt = %broker.mqtt_addr(), ws = ?broker.ws_addr(), data_dir = %data_dir.display(), "broker listening");
                let url = local_url(broker.mqtt_addr());
                (Some(Arc::new(broker)), url, None)
            }
            Backbone::External { url, credentials } => (None, url, credentials),
        };
        let stats_task = broker
            .as_ref()
            .map(|broker| spawn_broker_stats(broker, &metrics, stop.clone()));
        let http = HttpServer::start_with_auth(
            settings.http_listen,
            health.clone(),
            metrics.clone(),
            routes.clone(),
            settings.http_auth.clone(),
            stop.clone(),
        )
        .await
        .map_err(|err| match err {
            HttpStartError::Bind { addr, source } => anyhow::anyhow!(
                "cannot listen for HTTP on {addr}: {}; stop the other program or choose another address with --http-listen (or [http] listen)",
                crate::errors::io_reason(&source)
            ),
            HttpStartError::Auth(err) => anyhow::anyhow!("{err}"),
        })?;
        info!(
            http = %http.local_addr(),
            accounts_required = settings.http_auth.required_on(http.local_addr()),
            "serving /healthz and /metrics"
        );

        let mut services = Vec::with_capacity(settings.services.len() + 1);
        if broker.is_some() {
            services.push(Configured::new(BrokerHealth {
                broker: broker.clone(),
            }));
        }
        services.extend(settings.services);
        let runtime = Runtime::start_with_accounts(
            RuntimeOptions {
                broker: BrokerEndpoint {
                    url: broker_url,
                    credentials,
                },
                data_dir: settings.data_dir.clone(),
                restart: settings.restart,
                stop_grace: STOP_GRACE,
                health,
                metrics,
                routes,
            },
            services,
            &accounts,
        )
        .await
        .context("starting the services")?;

        let app = Self {
            broker,
            http,
            runtime,
            stop,
            stats_task,
        };
        if let Some(path) = &settings.ready_file {
            app.write_ready_file(path)?;
        }
        Ok(app)
    }

    pub(crate) fn addresses(&self) -> Addresses {
        Addresses {
            mqtt: self.broker.as_ref().map(|broker| broker.mqtt_addr()),
            ws: self.broker.as_ref().and_then(|broker| broker.ws_addr()),
            tls: self.broker.as_ref().and_then(|broker| broker.tls_addr()),
            http: self.http.local_addr(),
        }
    }

    /// The services running, in start order.
    pub(crate) fn service_names(&self) -> Vec<&'static str> {
        self.runtime.names()
    }

    /// A service loop that failed for good (standalone services do not restart).
    pub(crate) async fn next_failure(&mut self) -> Failure {
        self.runtime.next_failure().await
    }

    fn write_ready_file(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&self.addresses())?;
        // Write then rename, so a reader never sees half a file.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, json)
            .and_then(|()| std::fs::rename(&partial, path))
            .with_context(|| format!("writing ready file {}", path.display()))
    }

    /// Stops services in reverse start order (the simulator before the bridge, so the bridge
    /// still sees the nodes' NDEATH and marks their tags stale), each one's loop first and then
    /// its client (`stopped`, clean DISCONNECT); then HTTP, then the broker (which flushes its
    /// store).
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.runtime.stop().await;
        if let Some(broker) = &self.broker {
            drain_deliveries(broker).await;
        }
        self.stop.cancel();
        if let Some(stats_task) = self.stats_task {
            let _ = stats_task.await;
        }
        if let Err(err) = self.http.join().await {
            warn!(cause = %err, "HTTP endpoint");
        }
        if let Some(broker) = self.broker {
            let broker = Arc::try_unwrap(broker)
                .map_err(|_| anyhow::anyhow!("broker handle still shared at shutdown"))?;
            broker.shutdown().await.context("stopping the broker")?;
        }
        info!("stopped");
        Ok(())
    }
}

/// Adds an internal `service` account for the in-process service `name` to `config` and
/// returns its credentials.
fn service_account(
    name: &'static str,
    config: &mut uns_broker::BrokerConfig,
) -> anyhow::Result<(String, String)> {
    let service: ServiceName = name
        .parse()
        .with_context(|| format!("service {name} has no row in the owner table"))?;
    let username = format!("uns-internal-{name}-{}", uuid::Uuid::new_v4().simple());
    let password = uuid::Uuid::new_v4().simple().to_string();
    config.internal_users.push(User {
        role: Some(Role::Service),
        service: Some(service.as_str().to_owned()),
        ..User::new(username.clone(), Secret::Password(password.clone()))
    });
    Ok((username, password))
}

/// Waits until the broker has delivered what the services said last (their `stopped` health),
/// judged by its sent-messages counter standing still for 100 ms, at most one second.
async fn drain_deliveries(broker: &BrokerHandle) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut last = broker.stats().messages_sent;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = broker.stats().messages_sent;
        if now == last {
            return;
        }
        last = now;
    }
}

/// Broker counters as Prometheus gauges, refreshed every second.
fn spawn_broker_stats(
    broker: &Arc<BrokerHandle>,
    metrics: &Metrics,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let clients = Gauge::<i64>::default();
    let received = Gauge::<i64>::default();
    let sent = Gauge::<i64>::default();
    let dropped = Gauge::<i64>::default();
    let retained = Gauge::<i64>::default();
    let acl_refused = Gauge::<i64>::default();
    let store_degraded = Gauge::<i64>::default();
    let store_failed_writes = Gauge::<i64>::default();
    let store_uncommitted = Gauge::<i64>::default();
    let sampled_at = Gauge::<i64>::default();
    metrics.register(
        "broker_retained_store_uncommitted",
        "Retained changes acknowledged but not yet committed (a crash now would lose them); normally 0",
        store_uncommitted.clone(),
    );
    metrics.register(
        "broker_stats_sampled_at_ms",
        "When the broker_* gauges were last sampled (Unix ms; they are sampled every second)",
        sampled_at.clone(),
    );
    metrics.register(
        "broker_retained_store_degraded",
        "1 while the retained store cannot write (full disk, I/O error), else 0",
        store_degraded.clone(),
    );
    metrics.register(
        "broker_retained_store_failed_writes",
        "Retained-store commits that failed for a disk reason since start",
        store_failed_writes.clone(),
    );
    metrics.register(
        "broker_clients_connected",
        "MQTT clients connected",
        clients.clone(),
    );
    metrics.register(
        "broker_messages_received",
        "PUBLISH packets received since start",
        received.clone(),
    );
    metrics.register(
        "broker_messages_sent",
        "PUBLISH packets sent since start",
        sent.clone(),
    );
    metrics.register(
        "broker_messages_dropped",
        "Messages dropped for a subscriber (queue full, expired) since start",
        dropped.clone(),
    );
    metrics.register(
        "broker_acl_refused",
        "PUBLISH packets, SUBSCRIBE filters and CONNECTs (reserved client id, Will) refused by an account's role or rules since start",
        acl_refused.clone(),
    );
    metrics.register(
        "broker_retained_messages",
        "Retained messages held",
        retained.clone(),
    );
    let broker = Arc::clone(broker);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let sampled_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    saturating_i64(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
                });
            let now = broker.stats();
            clients.set(saturating_i64(now.clients_connected as u64));
            received.set(saturating_i64(now.messages_received));
            sent.set(saturating_i64(now.messages_sent));
            dropped.set(saturating_i64(now.messages_dropped));
            retained.set(saturating_i64(now.retained_messages as u64));
            acl_refused.set(saturating_i64(now.acl_refused));
            store_degraded.set(i64::from(now.retained_store_degraded));
            store_failed_writes.set(saturating_i64(now.retained_store_failed_writes));
            store_uncommitted.set(saturating_i64(now.retained_store_uncommitted));
            sampled_at.set(sampled_ms);
        }
    })
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The URL in-process services use to reach the broker: its own address, or loopback when it
/// listens on every interface.
fn local_url(addr: SocketAddr) -> BrokerUrl {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    BrokerUrl::new(ip.to_string(), addr.port())
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use uns_broker::BrokerConfig;
    use uns_service::RestartPolicy;

    use super::*;

    /// `GET url` → (status, body), off the async threads.
    async fn get(url: String) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(3)))
                .build()
                .into();
            let mut response = agent.get(&url).call().expect("GET");
            let status = response.status().as_u16();
            (status, response.body_mut().read_to_string().expect("body"))
        })
        .await
        .expect("GET task")
    }

    /// The broker's entry in `/healthz` (status 200 asserted while degraded) and the value of `metric` in
    /// `/metrics`, polled until `done` holds for them or the deadline passes.
    async fn await_broker(
        http: SocketAddr,
        metric: &str,
        what: &str,
        done: impl Fn(&serde_json::Value, f64) -> bool,
    ) -> (serde_json::Value, f64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = get(format!("http://{http}/healthz")).await;
            let report: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
            let broker = report["components"]["broker"].clone();
            if detail(&broker).contains("degraded") {
                assert_eq!(
                    status, 200,
                    "/healthz stays 200 (degraded is not failed): {body}"
                );
            }
            let (_, metrics) = get(format!("http://{http}/metrics")).await;
            let value = metrics
                .lines()
                .find_map(|line| line.strip_prefix(metric)?.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            if done(&broker, value) {
                return (broker, value);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: broker health {broker}, {metric} {value}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn detail(broker: &serde_json::Value) -> &str {
        broker["detail"].as_str().unwrap_or_default()
    }

    /// A stand-in for the OEE service whose loop, once connected, writes one topic of its own
    /// and one of the SCADA bridge's, and hands the broker credentials it was given to the test.
    struct RogueOee {
        credentials: tokio::sync::mpsc::UnboundedSender<Option<(String, String)>>,
    }

    impl Service for RogueOee {
        const NAME: &'static str = "oee";
        const SECTION: &'static str = "oee";
        type Config = ();
        type Error = uns_client::ClientError;

        fn configure((): (), _env: &ConfigEnv) -> Result<Self, ConfigError> {
            unreachable!("built in code")
        }

        async fn run(&self, ctx: Context) -> Result<(), Self::Error> {
            use uns_model::topic::{Class, Location, OeePeriodKind, UnsTopic};
            let _ = self.credentials.send(ctx.broker.credentials.clone());
            let cell: Location = "acme/berlin/packaging/line-1/filler"
                .parse()
                .unwrap_or_else(|_| unreachable!("a valid location"));
            let foreign = UnsTopic::located(cell.clone(), Class::State);
            let own = UnsTopic::located(cell, Class::OeeCurrent(OeePeriodKind::Hour));
            ctx.client
                .publish_bytes(&foreign, bytes::Bytes::from_static(b"fake"))
                .await?;
            ctx.client
                .publish_bytes(&own, bytes::Bytes::from_static(b"{}"))
                .await?;
            ctx.shutdown.cancelled().await;
            Ok(())
        }
    }

    /// Issue 14: `uns up` runs each in-process service under its own `service` account, so a
    /// service that publishes another's topic (here the OEE service writing the bridge's
    /// `_state`) is refused by the broker, while its own topics go through. The generated
    /// account is the service's only (a random name) and anonymous loopback clients keep their
    /// rights.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_embedded_service_writes_only_its_own_topics() {
        let dir = tempfile::tempdir().expect("temp dir");
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let config = BrokerConfig {
            listen: loopback,
            ws_listen: None,
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let (credentials_tx, mut credentials_rx) = tokio::sync::mpsc::unbounded_channel();
        let app = App::start(Settings {
            backbone: Backbone::Embedded(config),
            data_dir: dir.path().to_path_buf(),
            http_listen: loopback,
            http_auth: uns_service::HttpAuth::default(),
            ready_file: None,
            restart: RestartPolicy::Exit,
            services: vec![Configured::new(RogueOee {
                credentials: credentials_tx,
            })],
        })
        .await
        .expect("uns up starts");
        let mqtt = app.addresses().mqtt.expect("embedded broker");
        let (username, _) = credentials_rx
            .recv()
            .await
            .expect("the rogue ran")
            .expect("it got credentials of its own");
        assert!(username.starts_with("uns-internal-oee-"), "{username}");

        // Both topics are retained: a late subscriber sees what the broker accepted.
        let mut options = rumqttc::MqttOptions::new("observer", mqtt.ip().to_string(), mqtt.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
        client
            .subscribe("uns/v1/acme/#", rumqttc::QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|topic: &String| topic.ends_with("_oee/current/hour"))
        {
            assert!(
                Instant::now() < deadline,
                "own topic never arrived: {seen:?}"
            );
            let event = tokio::time::timeout_at(deadline, eventloop.poll())
                .await
                .expect("within the deadline")
                .expect("observer connection");
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) = event {
                seen.push(publish.topic);
            }
        }
        // A retained `_state` would come with this subscription, before the marker.
        client
            .subscribe(
                "uns/v1/acme/berlin/packaging/line-1/filler/_state",
                rumqttc::QoS::AtLeastOnce,
            )
            .await
            .expect("subscribe");
        client
            .subscribe("test/marker", rumqttc::QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        client
            .publish("test/marker", rumqttc::QoS::AtLeastOnce, false, "m")
            .await
            .expect("publish");
        while !seen.iter().any(|topic| topic == "test/marker") {
            let event = tokio::time::timeout_at(deadline, eventloop.poll())
                .await
                .expect("marker within the deadline")
                .expect("observer connection");
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) = event {
                seen.push(publish.topic);
            }
        }
        assert!(
            !seen.iter().any(|topic| topic.ends_with("/_state")),
            "the bridge's _state written by the OEE service's account: {seen:?}"
        );
        let stats = app.broker.as_ref().expect("embedded").stats();
        assert!(stats.acl_refused >= 1, "{stats:?}");
        let http = app.addresses().http;
        let (_, refused) = await_broker(
            http,
            "uns_broker_acl_refused",
            "refusals on /metrics",
            |_, v| v >= 1.0,
        )
        .await;
        assert!(refused >= 1.0);
        app.stop().await.expect("clean stop");
    }

    /// Issue 9 item 6: while the retained store cannot write, `uns broker`'s health says
    /// `degraded` (`/healthz` still 200) and `/metrics` shows it; once writes succeed again,
    /// `running` and 0, by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_makes_the_broker_degraded_until_space_returns() {
        let dir = tempfile::tempdir().expect("temp dir");
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let config = BrokerConfig {
            listen: loopback,
            ws_listen: None,
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let app = App::start(Settings {
            backbone: Backbone::Embedded(config),
            data_dir: dir.path().to_path_buf(),
            http_listen: loopback,
            http_auth: uns_service::HttpAuth::default(),
            ready_file: None,
            restart: RestartPolicy::Exit,
            services: Vec::new(),
        })
        .await
        .expect("uns broker starts");
        let addresses = app.addresses();
        let http = addresses.http;
        let mqtt = addresses.mqtt.expect("embedded broker");
        let store_metric = "uns_broker_retained_store_degraded";

        let (broker, _) = await_broker(http, store_metric, "running at start", |b, v| {
            b["ok"] == true && !detail(b).contains("degraded") && v == 0.0
        })
        .await;
        assert!(!detail(&broker).is_empty(), "{broker}");

        let mut options =
            rumqttc::MqttOptions::new("full-disk-test", mqtt.ip().to_string(), mqtt.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
        let events = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

        app.broker
            .as_ref()
            .expect("embedded broker")
            .inject_retained_disk_full(u32::MAX);
        client
            .publish(
                "uns/v1/test/full-disk",
                rumqttc::QoS::AtLeastOnce,
                true,
                "v1",
            )
            .await
            .expect("queue the publish");
        let (broker, _) = await_broker(http, store_metric, "degraded while full", |b, v| {
            detail(b).contains("degraded") && v == 1.0
        })
        .await;
        assert!(
            detail(&broker).contains("retained store cannot write"),
            "the reason is given: {broker}"
        );
        let (_, failed) = await_broker(
            http,
            "uns_broker_retained_store_failed_writes",
            "failed writes counted",
            |_, v| v >= 1.0,
        )
        .await;
        assert!(failed >= 1.0);

        // Space returns: the kept change commits on a retry, with no new publish.
        app.broker
            .as_ref()
            .expect("embedded broker")
            .inject_retained_disk_full(0);
        await_broker(
            http,
            store_metric,
            "running again after space returned",
            |b, v| b["ok"] == true && !detail(b).contains("degraded") && v == 0.0,
        )
        .await;

        events.abort();
        app.stop().await.expect("clean stop");
    }
}
