//! Running things: the embedded broker (`uns up`, `uns broker`), the services (all of them in
//! `uns up`, one in `uns <service>`), and the HTTP endpoint, with a clean shutdown.
//!
//! Start order: broker → HTTP → services (each with its own MQTT connection over loopback, so
//! the embedded setup exercises the same path as `docker compose`). Stop order is the reverse:
//! services publish `stopped` and disconnect, HTTP stops, the broker flushes its store last.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uns_broker::{BrokerHandle, Secret, User};
use uns_client::{
    BrokerUrl, ClientMetrics, ClientOptions, Health, HttpServer, Inbox, Metrics, UnsClient,
};
use uns_model::payload::HealthStatus;

use crate::config::{Backbone, Settings};

/// How long each component gets to stop before we move on.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The services this binary can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// The plant model and schemas (`uns-meta`).
    Meta,
    /// The Sparkplug B primary host → UNS (`uns-scada-bridge`).
    ScadaBridge,
    /// The simulated plant (`uns-sim`): Sparkplug edge nodes, not a UNS service, but run and
    /// health-reported like one.
    Sim,
}

impl ServiceKind {
    /// Every service, as `uns up` runs them (the simulator only with `--demo`).
    pub(crate) const ALL: &'static [ServiceKind] = &[
        ServiceKind::Meta,
        ServiceKind::ScadaBridge,
        ServiceKind::Sim,
    ];
}

/// The service name of the simulator, as in `uns/v1/_services/sim`.
const SIM_SERVICE: &str = "sim";

/// A running UNS.
pub(crate) struct App {
    /// The embedded broker, if this process runs it. Shared with the stats task until
    /// shutdown, which needs it back by value.
    broker: Option<Arc<BrokerHandle>>,
    http: HttpServer,
    services: Vec<RunningService>,
    /// Cancels the HTTP server and the service loops.
    stop: CancellationToken,
    stats_task: Option<JoinHandle<()>>,
}

struct RunningService {
    name: &'static str,
    client: UnsClient,
    event_loop: JoinHandle<()>,
    /// Stops this service's loop alone (a child of the app's token), so services stop one at a
    /// time in reverse start order while their MQTT clients stay connected.
    task_stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The bound addresses, written to `--ready-file` as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct Addresses {
    /// The embedded broker's MQTT listener (absent for a standalone service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mqtt: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ws: Option<SocketAddr>,
    pub(crate) http: SocketAddr,
}

impl App {
    pub(crate) async fn start(settings: Settings, kinds: &[ServiceKind]) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let metrics = Metrics::new();
        let health = Health::default();
        let (broker, broker_url, credentials) = match settings.backbone {
            Backbone::Embedded(mut config) => {
                // With accounts configured, in-process services need one too: a random one
                // per run, never written anywhere.
                let credentials = if config.users.is_empty() {
                    None
                } else {
                    let user = format!("uns-internal-{}", uuid::Uuid::new_v4().simple());
                    let password = uuid::Uuid::new_v4().simple().to_string();
                    config.users.push(User {
                        username: user.clone(),
                        secret: Secret::Password(password.clone()),
                    });
                    Some((user, password))
                };
                let data_dir = config.data_dir.clone();
                let broker = uns_broker::start(config)
                    .await
                    .context("starting the embedded broker")?;
                info!(mqtt = %broker.mqtt_addr(), ws = ?broker.ws_addr(), data_dir = %data_dir.display(), "broker listening");
                health.set(
                    "broker",
                    true,
                    format!("listening on {}", broker.mqtt_addr()),
                );
                let url = local_url(broker.mqtt_addr());
                (Some(Arc::new(broker)), url, credentials)
            }
            Backbone::External { url, credentials } => (None, url, credentials),
        };
        let stats_task = broker
            .as_ref()
            .map(|broker| spawn_broker_stats(broker, &metrics, stop.clone()));
        let http = HttpServer::start(
            settings.http_listen,
            health.clone(),
            metrics.clone(),
            stop.clone(),
        )
        .await
        .with_context(|| format!("binding the HTTP endpoint {}", settings.http_listen))?;
        info!(http = %http.local_addr(), "serving /healthz and /metrics");

        let mut services = Vec::new();
        let client_metrics = ClientMetrics::register(&metrics);
        if broker.is_some() {
            // The embedded broker's own health on `uns/v1/_services/broker`, like every
            // service's: `running` while up, `stopped` on a clean stop.
            services.push(start_service(
                "broker",
                &broker_url,
                credentials.clone(),
                &client_metrics,
                &health,
                &stop,
                |_client, _inbox, shutdown| async move { shutdown.cancelled().await },
            )?);
        }
        for kind in kinds {
            let service = match kind {
                ServiceKind::Meta => {
                    let plant = settings.plant.clone();
                    start_service(
                        uns_meta::SERVICE,
                        &broker_url,
                        credentials.clone(),
                        &client_metrics,
                        &health,
                        &stop,
                        move |client, _inbox, shutdown| async move {
                            if let Err(err) = uns_meta::run(&client, &plant, shutdown).await {
                                warn!(service = uns_meta::SERVICE, cause = %err, "service stopped");
                            }
                        },
                    )?
                }
                ServiceKind::ScadaBridge => {
                    let config = settings.scada_bridge.clone();
                    let sparkplug = uns_scada_bridge::SparkplugConnect {
                        host: broker_url.host().to_owned(),
                        port: broker_url.port(),
                        credentials: credentials.clone(),
                    };
                    let metrics = metrics.clone();
                    start_service(
                        uns_scada_bridge::SERVICE,
                        &broker_url,
                        credentials.clone(),
                        &client_metrics,
                        &health,
                        &stop,
                        move |client, inbox, shutdown| async move {
                            let result = uns_scada_bridge::run(
                                client.clone(),
                                inbox,
                                sparkplug,
                                config,
                                &metrics,
                                shutdown,
                            )
                            .await;
                            if let Err(err) = result {
                                warn!(service = uns_scada_bridge::SERVICE, cause = %err, "service stopped");
                                let _ = client
                                    .set_health(HealthStatus::Degraded, Some(format!("{err:#}")))
                                    .await;
                            }
                        },
                    )?
                }
                ServiceKind::Sim => {
                    // `uns up` runs the simulator only with --demo; `uns sim` always does.
                    if broker.is_some() && !settings.demo {
                        continue;
                    }
                    let mut sim = settings.sim.clone();
                    // Next to the bridge (uns up --demo), the nodes wait for its STATE before
                    // their births and buffer meanwhile, as in the compose deployment, so
                    // nothing the plant reports before the bridge listens is lost.
                    if kinds.contains(&ServiceKind::ScadaBridge) && sim.primary_host.is_none() {
                        sim.primary_host = Some(settings.scada_bridge.host_id.clone());
                    }
                    let mut connect =
                        uns_sim::SimConnect::new(broker_url.host(), broker_url.port());
                    if let Some((user, password)) = credentials.clone() {
                        connect.username = Some(user);
                        connect.password = Some(password);
                    }
                    let data_dir = settings.data_dir.join(SIM_SERVICE);
                    std::fs::create_dir_all(&data_dir)
                        .with_context(|| format!("creating {}", data_dir.display()))?;
                    start_service(
                        SIM_SERVICE,
                        &broker_url,
                        credentials.clone(),
                        &client_metrics,
                        &health,
                        &stop,
                        move |client, _inbox, shutdown| async move {
                            if let Err(err) = uns_sim::run(sim, connect, data_dir, shutdown).await {
                                warn!(service = SIM_SERVICE, cause = %err, "simulator stopped");
                                let _ = client
                                    .set_health(HealthStatus::Degraded, Some(format!("{err:#}")))
                                    .await;
                            }
                        },
                    )?
                }
            };
            services.push(service);
        }

        let app = Self {
            broker,
            http,
            services,
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
            http: self.http.local_addr(),
        }
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
        let mut event_loops = Vec::new();
        for service in self.services.into_iter().rev() {
            service.task_stop.cancel();
            if tokio::time::timeout(STOP_GRACE, service.task)
                .await
                .is_err()
            {
                warn!(service = service.name, "service did not stop in time");
            }
            service.client.shutdown(STOP_GRACE).await;
            event_loops.push(service.event_loop);
        }
        if let Some(broker) = &self.broker {
            drain_deliveries(broker).await;
        }
        self.stop.cancel();
        for event_loop in event_loops {
            let _ = event_loop.await;
        }
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

/// Starts one service: its own MQTT client, its health on /healthz, its loop.
fn start_service<F, Fut>(
    name: &'static str,
    broker_url: &BrokerUrl,
    credentials: Option<(String, String)>,
    client_metrics: &ClientMetrics,
    health: &Health,
    stop: &CancellationToken,
    body: F,
) -> anyhow::Result<RunningService>
where
    F: FnOnce(UnsClient, Inbox, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut options = ClientOptions::new(broker_url.clone(), name)
        .with_context(|| format!("service name {name}"))?;
    options.credentials = credentials;
    let (client, inbox, event_loop) =
        UnsClient::start(options, client_metrics.clone(), stop.clone());
    // Mirror the connection state into /healthz.
    let mut state = client.connection_state();
    let health = health.clone();
    health.set(name, false, "connecting");
    tokio::spawn(async move {
        loop {
            let connected = *state.borrow_and_update();
            health.set(
                name,
                connected,
                if connected {
                    "connected"
                } else {
                    "reconnecting"
                },
            );
            if state.changed().await.is_err() {
                break;
            }
        }
    });
    let task_stop = stop.child_token();
    let task = tokio::spawn(body(client.clone(), inbox, task_stop.clone()));
    Ok(RunningService {
        name,
        client,
        event_loop,
        task_stop,
        task,
    })
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
            let now = broker.stats();
            clients.set(saturating_i64(now.clients_connected as u64));
            received.set(saturating_i64(now.messages_received));
            sent.set(saturating_i64(now.messages_sent));
            dropped.set(saturating_i64(now.messages_dropped));
            retained.set(saturating_i64(now.retained_messages as u64));
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
