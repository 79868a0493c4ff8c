//! [`Runtime`]: runs configured services, each with its own MQTT connection and a supervisor.
//!
//! # Tasks
//! Per service: the client's event loop (owned by `uns-client`), a *connection watcher* that mirrors
//! the connection into `/healthz`, and the *supervisor*, which runs the service loop as a task of its
//! own (so a panic is caught as a `JoinError` and the supervisor survives it), reports a failure
//! (`failed` on `uns/v1/_services/{name}`, 503 on `/healthz`, `uns_service_failures_total`) and
//! restarts it after a backoff that doubles up to a maximum and resets once a run has lasted longer
//! than that maximum. Under [`RestartPolicy::Exit`] it sends the failure to [`Runtime::next_failure`]
//! instead, and the caller exits non-zero.
//!
//! Stop order is the reverse of the start order: each service's loop is cancelled and awaited, then
//! its client publishes `stopped` and disconnects cleanly (so no Will fires).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uns_client::{ClientMetrics, ClientOptions, Inbox, Metrics, ServiceLabel, UnsClient};
use uns_model::payload::HealthStatus;
use uns_model::topic::SegmentError;

use crate::context::{BrokerEndpoint, Context, HealthHandle, HttpMount, InboxGuard};
use crate::entry::{Configured, Runnable};
use crate::http::{ComponentHealth, Health, Routes};

/// What the supervisor does when a service loop fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart after `initial`, doubling up to `max` (`uns up`).
    Restart {
        /// First wait after a failure.
        initial: Duration,
        /// Longest wait; a run that lasted longer than this resets the wait to `initial`.
        max: Duration,
    },
    /// Report the failure through [`Runtime::next_failure`] and do not restart (a standalone
    /// `uns <service>`, which then exits non-zero so Docker restarts the container).
    Exit,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::Restart {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// How to run the services.
#[derive(Clone)]
pub struct RuntimeOptions {
    /// The broker every service connects to.
    pub broker: BrokerEndpoint,
    /// The process's data directory; each service gets `{data_dir}/{NAME}`.
    pub data_dir: PathBuf,
    /// What happens when a loop fails.
    pub restart: RestartPolicy,
    /// How long each service gets to stop.
    pub stop_grace: Duration,
    /// `/healthz` components (shared with whatever else the process reports, e.g. the broker).
    pub health: Health,
    /// The metrics registry `/metrics` serves.
    pub metrics: Metrics,
    /// The routes the HTTP endpoint serves; services mount theirs here.
    pub routes: Routes,
}

/// A service loop that failed under [`RestartPolicy::Exit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The service.
    pub service: &'static str,
    /// The error, with its causes.
    pub error: String,
}

/// Why services could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A service's data directory could not be created.
    #[error("creating the data directory {path} of service {service}: {source}")]
    DataDir {
        /// The service.
        service: &'static str,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A service name is not a valid topic id (a bug in the service).
    #[error("service name {service:?}: {source}")]
    Name {
        /// The name.
        service: &'static str,
        /// Why.
        source: SegmentError,
    },
}

/// Running services.
pub struct Runtime {
    services: Vec<RunningService>,
    failures: mpsc::Receiver<Failure>,
    /// Parent of every service's token; cancelled last, which ends the client event loops.
    root: CancellationToken,
    stop_grace: Duration,
}

struct RunningService {
    name: &'static str,
    client: UnsClient,
    event_loop: JoinHandle<()>,
    /// Stops this service's loop alone, so services stop one at a time in reverse start order
    /// while the others stay connected.
    stop: CancellationToken,
    supervisor: JoinHandle<()>,
}

/// Counters of the supervisors, labelled by service.
#[derive(Clone, Default)]
struct SupervisorMetrics {
    failures: Family<ServiceLabel, Counter>,
    restarts: Family<ServiceLabel, Counter>,
    up: Family<ServiceLabel, Gauge>,
}

impl SupervisorMetrics {
    fn register(metrics: &Metrics) -> Self {
        let supervisor = Self::default();
        metrics.register(
            "service_failures",
            "Service loops that ended with an error, a panic, or before they were asked to stop",
            supervisor.failures.clone(),
        );
        metrics.register(
            "service_restarts",
            "Service loops restarted by the supervisor",
            supervisor.restarts.clone(),
        );
        metrics.register(
            "service_up",
            "1 while the service loop runs, else 0",
            supervisor.up.clone(),
        );
        supervisor
    }
}

impl Runtime {
    /// Starts `services` in order: for each its client (which connects on its own), its data
    /// directory, its metrics, and its supervised loop. Returns at once.
    pub async fn start(
        options: RuntimeOptions,
        services: Vec<Configured>,
    ) -> Result<Runtime, RuntimeError> {
        Self::start_with_accounts(options, services, &HashMap::new()).await
    }

    /// Like [`Runtime::start`], but a service named in `accounts` connects with its own
    /// username and password (its client and [`crate::Context::broker`], so its further
    /// connections too) instead of `options.broker.credentials`: `uns up` gives each in-process
    /// service its own least-privilege broker account this way.
    pub async fn start_with_accounts(
        options: RuntimeOptions,
        services: Vec<Configured>,
        accounts: &HashMap<&'static str, (String, String)>,
    ) -> Result<Runtime, RuntimeError> {
        let root = CancellationToken::new();
        let client_metrics = ClientMetrics::register(&options.metrics);
        let supervisor_metrics = SupervisorMetrics::register(&options.metrics);
        // Room for every service to report once; a supervisor that reported stops.
        let (failures_tx, failures) = mpsc::channel(services.len().max(1));
        let mut running = Vec::with_capacity(services.len());
        for configured in services {
            let service = configured.service;
            let name = service.name();
            let data_dir = options.data_dir.join(name);
            std::fs::create_dir_all(&data_dir).map_err(|source| RuntimeError::DataDir {
                service: name,
                path: data_dir.clone(),
                source,
            })?;
            let mut client_options =
                ClientOptions::new(options.broker.url.clone(), name).map_err(|source| {
                    RuntimeError::Name {
                        service: name,
                        source,
                    }
                })?;
            let broker = BrokerEndpoint {
                url: options.broker.url.clone(),
                credentials: accounts
                    .get(name)
                    .cloned()
                    .or_else(|| options.broker.credentials.clone()),
            };
            client_options.credentials = broker.credentials.clone();
            let (client, inbox, event_loop) =
                UnsClient::start(client_options, client_metrics.clone(), root.clone());
            let label = ServiceLabel {
                service: name.to_owned(),
            };
            // Every series exists from the first scrape, at 0.
            supervisor_metrics.failures.get_or_create(&label).inc_by(0);
            supervisor_metrics.restarts.get_or_create(&label).inc_by(0);
            supervisor_metrics.up.get_or_create(&label).set(0);
            service.register_metrics(&options.metrics);
            let status = Arc::new(Status::new(name, options.health.clone()));
            spawn_connection_watcher(&client, status.clone());
            let stop = root.child_token();
            let parts = Parts {
                name,
                client: client.clone(),
                inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
                metrics: options.metrics.clone(),
                status,
                data_dir,
                routes: options.routes.clone(),
                broker,
                stop: stop.clone(),
                supervisor_metrics: supervisor_metrics.clone(),
                label,
            };
            let supervisor = tokio::spawn(supervise(
                service,
                parts,
                options.restart,
                failures_tx.clone(),
            ));
            info!(service = name, "service started");
            running.push(RunningService {
                name,
                client,
                event_loop,
                stop,
                supervisor,
            });
        }
        Ok(Runtime {
            services: running,
            failures,
            root,
            stop_grace: options.stop_grace,
        })
    }

    /// The names of the running services, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.services.iter().map(|service| service.name).collect()
    }

    /// The client of service `name` (tests, and the binary's own health publisher).
    pub fn client(&self, name: &str) -> Option<&UnsClient> {
        self.services
            .iter()
            .find(|service| service.name == name)
            .map(|service| &service.client)
    }

    /// The next failure under [`RestartPolicy::Exit`]; pending forever under `Restart`.
    pub async fn next_failure(&mut self) -> Failure {
        match self.failures.recv().await {
            Some(failure) => failure,
            // Every supervisor is gone without reporting: nothing can fail any more.
            None => std::future::pending().await,
        }
    }

    /// Stops the services in reverse start order: each loop, then its client (`stopped`, clean
    /// DISCONNECT); then the client event loops end.
    pub async fn stop(self) {
        let mut event_loops = Vec::with_capacity(self.services.len());
        for service in self.services.into_iter().rev() {
            service.stop.cancel();
            if tokio::time::timeout(self.stop_grace, service.supervisor)
                .await
                .is_err()
            {
                warn!(service = service.name, "service did not stop in time");
            }
            service.client.shutdown(self.stop_grace).await;
            event_loops.push(service.event_loop);
        }
        self.root.cancel();
        for event_loop in event_loops {
            let _ = event_loop.await;
        }
    }
}

/// What a supervisor hands each run of its service.
struct Parts {
    name: &'static str,
    client: UnsClient,
    /// Locked by one run at a time; a run that ends (or panics) releases it for the next.
    inbox: Arc<tokio::sync::Mutex<Inbox>>,
    metrics: Metrics,
    status: Arc<Status>,
    data_dir: PathBuf,
    routes: Routes,
    broker: BrokerEndpoint,
    stop: CancellationToken,
    supervisor_metrics: SupervisorMetrics,
    label: ServiceLabel,
}

async fn supervise(
    service: Arc<dyn Runnable>,
    parts: Parts,
    policy: RestartPolicy,
    failures: mpsc::Sender<Failure>,
) {
    let name = parts.name;
    let mut restarts: u32 = 0;
    let mut backoff = match policy {
        RestartPolicy::Restart { initial, .. } => initial,
        RestartPolicy::Exit => Duration::ZERO,
    };
    loop {
        let inbox = InboxGuard(parts.inbox.clone().lock_owned().await);
        parts.status.set_loop(LoopState::Running);
        parts
            .supervisor_metrics
            .up
            .get_or_create(&parts.label)
            .set(1);
        if restarts > 0 {
            parts.client.set_restarts(restarts);
            let _ = parts.client.set_health(HealthStatus::Running, None).await;
        }
        let ctx = Context {
            client: parts.client.clone(),
            inbox,
            metrics: parts.metrics.clone(),
            health: HealthHandle {
                client: parts.client.clone(),
                status: parts.status.clone(),
            },
            data_dir: parts.data_dir.clone(),
            http: HttpMount {
                owner: name,
                routes: parts.routes.clone(),
            },
            broker: parts.broker.clone(),
            shutdown: parts.stop.child_token(),
        };
        let started = tokio::time::Instant::now();
        let run = {
            let service = service.clone();
            tokio::spawn(async move { service.run(ctx).await })
        };
        let outcome = run.await;
        parts.routes.unmount(name);
        parts
            .supervisor_metrics
            .up
            .get_or_create(&parts.label)
            .set(0);
        let stopping = parts.stop.is_cancelled();
        let error = match outcome {
            Ok(Ok(())) if stopping => {
                parts.status.set_loop(LoopState::Stopped);
                return;
            }
            Ok(Ok(())) => "the service loop ended without being asked to stop".to_owned(),
            Ok(Err(err)) => error_chain(err.as_ref()),
            Err(join_error) if join_error.is_panic() => {
                format!("panicked: {}", panic_message(join_error.into_panic()))
            }
            Err(_) => "the service task was cancelled".to_owned(),
        };
        if stopping {
            warn!(service = name, %error, "service loop failed while stopping");
            parts.status.set_loop(LoopState::Stopped);
            return;
        }
        error!(service = name, %error, "service loop failed");
        parts
            .supervisor_metrics
            .failures
            .get_or_create(&parts.label)
            .inc();
        let (initial, max) = match policy {
            RestartPolicy::Exit => {
                parts.status.set_loop(LoopState::Failed {
                    error: error.clone(),
                    retry_in: None,
                });
                let _ = parts
                    .client
                    .set_health(HealthStatus::Failed, Some(error.clone()))
                    .await;
                let _ = failures
                    .send(Failure {
                        service: name,
                        error,
                    })
                    .await;
                return;
            }
            RestartPolicy::Restart { initial, max } => (initial, max),
        };
        if started.elapsed() >= max {
            backoff = initial;
        }
        parts.status.set_loop(LoopState::Failed {
            error: error.clone(),
            retry_in: Some(backoff),
        });
        let _ = parts
            .client
            .set_health(HealthStatus::Failed, Some(error))
            .await;
        tokio::select! {
            () = parts.stop.cancelled() => {
                parts.status.set_loop(LoopState::Stopped);
                return;
            }
            () = tokio::time::sleep(backoff) => {}
        }
        restarts = restarts.saturating_add(1);
        parts.status.set_restarts(restarts);
        parts
            .supervisor_metrics
            .restarts
            .get_or_create(&parts.label)
            .inc();
        info!(service = name, restarts, "restarting service loop");
        backoff = (backoff * 2).min(max);
    }
}

/// An error and its causes on one line, as `{:#}` prints an anyhow chain, leaving out a cause
/// whose text the line already says (errors that embed their source's text would say it twice).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Errors that embed their source's text would say it twice.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

fn spawn_connection_watcher(client: &UnsClient, status: Arc<Status>) {
    let mut state = client.connection_state();
    tokio::spawn(async move {
        loop {
            let connected = *state.borrow_and_update();
            status.set_connected(connected);
            if state.changed().await.is_err() {
                break;
            }
        }
    });
}

/// Where a service loop is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LoopState {
    /// Not started yet.
    Starting,
    /// Running.
    Running,
    /// Ended with an error; restarted after `retry_in`, or not at all.
    Failed {
        error: String,
        retry_in: Option<Duration>,
    },
    /// Stopped on purpose.
    Stopped,
}

/// One service's `/healthz` entry, derived from its connection and its loop.
pub(crate) struct Status {
    name: &'static str,
    health: Health,
    inner: Mutex<StatusInner>,
}

struct StatusInner {
    connected: bool,
    ever_connected: bool,
    state: LoopState,
    degraded: Option<String>,
    restarts: u32,
}

impl Status {
    fn new(name: &'static str, health: Health) -> Self {
        let status = Self {
            name,
            health,
            inner: Mutex::new(StatusInner {
                connected: false,
                ever_connected: false,
                state: LoopState::Starting,
                degraded: None,
                restarts: 0,
            }),
        };
        status.update(|_| {});
        status
    }

    fn set_connected(&self, connected: bool) {
        self.update(|inner| {
            inner.connected = connected;
            inner.ever_connected |= connected;
        });
    }

    fn set_loop(&self, state: LoopState) {
        self.update(|inner| inner.state = state);
    }

    fn set_restarts(&self, restarts: u32) {
        self.update(|inner| inner.restarts = restarts);
    }

    pub(crate) fn set_degraded(&self, reason: Option<String>) {
        self.update(|inner| inner.degraded = reason);
    }

    fn update(&self, change: impl FnOnce(&mut StatusInner)) {
        // The critical section is a field update and a map insert: no await, no panic.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut inner);
        let (ok, detail) = match (&inner.state, inner.connected) {
            (LoopState::Failed { error, retry_in }, _) => (
                false,
                match retry_in {
                    Some(wait) => format!(
                        "failed: {error}; restart {} in {wait:?}",
                        inner.restarts + 1
                    ),
                    None => format!("failed: {error}"),
                },
            ),
            (LoopState::Stopped, _) => (false, "stopped".to_owned()),
            (_, false) if inner.ever_connected => (false, "reconnecting".to_owned()),
            (_, false) => (false, "connecting".to_owned()),
            (_, true) => match &inner.degraded {
                Some(reason) => (true, format!("degraded: {reason}")),
                None => (true, "running".to_owned()),
            },
        };
        self.health.set_component(
            self.name,
            ComponentHealth {
                ok,
                detail,
                restarts: inner.restarts,
            },
        );
    }
}
