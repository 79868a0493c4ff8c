//! Prometheus metrics shared by the client runtime and the services built on it.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// A cheap, cloneable handle on one Prometheus registry.
///
/// Services register their metrics at start-up; the HTTP `/metrics` endpoint encodes the
/// registry on each scrape. The lock is held only for registration and encoding, never
/// across an `.await`.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// An empty registry whose metric names all start with `uns_`.
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix("uns"))),
        }
    }

    /// Registers one metric (a counter, gauge or family) under `name` with a help text.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock().register(name, help, metric);
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; encode only forwards fmt::Write errors.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.lock());
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock only means another thread panicked while registering; the
        // registry itself is still consistent, so keep serving it.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Labels for per-service counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// The service name, e.g. `oee`.
    pub service: String,
}

/// Labels for rejected input.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The service that rejected the input.
    pub service: String,
    /// A short, stable reason class, e.g. `bad_json`.
    pub kind: String,
}

/// The counters every client keeps, labelled by service.
#[derive(Clone, Default)]
pub struct ClientMetrics {
    /// Messages published.
    pub published: Family<ServiceLabel, Counter>,
    /// Messages received from subscriptions.
    pub received: Family<ServiceLabel, Counter>,
    /// Successful connections after the first one.
    pub reconnects: Family<ServiceLabel, Counter>,
    /// 1 while connected to the broker, else 0.
    pub connected: Family<ServiceLabel, Gauge>,
    /// Input rejected and reported on `_errors`.
    pub rejected: Family<ErrorLabels, Counter>,
}

impl ClientMetrics {
    /// Creates the counters and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let client = Self::default();
        metrics.register(
            "mqtt_published",
            "Messages published by a service",
            client.published.clone(),
        );
        metrics.register(
            "mqtt_received",
            "Messages received by a service",
            client.received.clone(),
        );
        metrics.register(
            "mqtt_reconnects",
            "Reconnections to the broker after the first connection",
            client.reconnects.clone(),
        );
        metrics.register(
            "mqtt_connected",
            "1 while the service is connected to the broker",
            client.connected.clone(),
        );
        metrics.register(
            "rejected_input",
            "Input rejected with a reason on _errors",
            client.rejected.clone(),
        );
        client
    }
}
