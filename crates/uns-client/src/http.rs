//! The HTTP side every service exposes: `/healthz` (JSON, 200 or 503) and `/metrics` (Prometheus).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Health of the components in this process (broker, each service's connection), as shown
/// by `/healthz`. Cheap to clone; each component updates its own entry.
#[derive(Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
}

/// One component's health.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ComponentHealth {
    /// Whether the component works as it should.
    pub ok: bool,
    /// A short human-readable state, e.g. `connected` or `reconnecting: connection refused`.
    pub detail: String,
}

#[derive(Serialize)]
struct HealthReport {
    status: &'static str,
    components: BTreeMap<String, ComponentHealth>,
}

impl Health {
    /// Sets the health of `component`.
    pub fn set(&self, component: &str, ok: bool, detail: impl Into<String>) {
        let health = ComponentHealth {
            ok,
            detail: detail.into(),
        };
        self.lock().insert(component.to_owned(), health);
    }

    /// Whether every component is healthy (and there is at least one).
    pub fn is_healthy(&self) -> bool {
        let components = self.lock();
        !components.is_empty() && components.values().all(|c| c.ok)
    }

    /// A snapshot of every component.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ComponentHealth>> {
        // See `Metrics::lock`: a poisoned map is still a valid map.
        self.components
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Metrics,
}

/// A running HTTP endpoint.
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 allowed) and serves `/healthz` and `/metrics` until `shutdown`.
    pub async fn start(
        addr: SocketAddr,
        health: Health,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .with_state(AppState { health, metrics });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        });
        Ok(Self { local_addr, task })
    }

    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after the shutdown token fired).
    pub async fn join(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => Err(std::io::Error::other(join_error)),
        }
    }
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let healthy = state.health.is_healthy();
    let report = HealthReport {
        status: if healthy { "ok" } else { "unhealthy" },
        components: state.health.snapshot(),
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(report))
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
