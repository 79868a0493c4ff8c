//! The one HTTP endpoint of a process: `/healthz` (JSON, 200 or 503), Prometheus `/metrics`, and
//! the routes services mount at run time ([`Routes`]: the ERP bridge's `/api/v1/...`, the console's
//! `/`), so `uns up` serves every API on one port and a standalone service serves its own.
//!
//! Every request but `/healthz` and the login passes [`crate::auth`] first (accounts, roles, the
//! `/login` page, `POST /api/v1/login` and `/api/v1/logout`), which puts the [`crate::Caller`] in
//! the request's extensions.
//!
//! Routes change while the server runs (a service mounts them when its loop starts and they are
//! removed when it ends), so the server looks the current router up per request: a cheap clone of
//! an `Arc`-backed [`axum::Router`] under a lock held only for that clone.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use uns_client::Metrics;

use crate::auth::{self, HttpAuth, HttpAuthError};

/// Health of the components in this process (the broker, each service), as `/healthz` shows it.
/// Cheap to clone; each component updates its own entry.
#[derive(Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
}

/// One component's health.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ComponentHealth {
    /// Whether the component works as it should.
    pub ok: bool,
    /// A short human-readable state, e.g. `connected` or `failed: …; restart 2 in 4s`.
    pub detail: String,
    /// How often the supervisor restarted the component's loop (absent when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub restarts: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

#[derive(Serialize)]
struct HealthReport {
    status: &'static str,
    /// The components that are not ok, by name, so a 503 says who is at fault at a glance.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<String>,
    components: BTreeMap<String, ComponentHealth>,
}

impl Health {
    /// Sets the health of `component`, keeping its restart count.
    pub fn set(&self, component: &str, ok: bool, detail: impl Into<String>) {
        let mut components = self.lock();
        let restarts = components.get(component).map_or(0, |c| c.restarts);
        components.insert(
            component.to_owned(),
            ComponentHealth {
                ok,
                detail: detail.into(),
                restarts,
            },
        );
    }

    /// Sets the whole entry of `component`.
    pub fn set_component(&self, component: &str, health: ComponentHealth) {
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
        // A poisoned map is still a valid map: each update is one insert.
        self.components
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why routes could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Another service already serves one of the paths.
    #[error("the routes of {owner} overlap routes another service already mounted")]
    Conflict {
        /// The service whose routes were refused.
        owner: String,
    },
}

/// The routes services mounted, by owner. Cheap to clone.
#[derive(Clone, Default)]
pub struct Routes {
    inner: Arc<RwLock<RoutesInner>>,
}

#[derive(Default)]
struct RoutesInner {
    by_owner: BTreeMap<String, Router>,
    /// Every owner's routes merged, rebuilt on each change (changes are rare: a service start).
    combined: Router,
}

impl Routes {
    /// Mounts `router` (absolute paths, state applied) for `owner`, replacing what `owner` had.
    pub fn mount(&self, owner: &str, router: Router) -> Result<(), MountError> {
        let mut inner = self.write();
        let mut by_owner = inner.by_owner.clone();
        by_owner.insert(owner.to_owned(), router);
        // `Router::merge` panics on overlapping paths; that is a mistake in a service, reported as an
        // error to it rather than taking the process down.
        let combined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| merge(&by_owner)))
            .map_err(|_| MountError::Conflict {
                owner: owner.to_owned(),
            })?;
        inner.by_owner = by_owner;
        inner.combined = combined;
        Ok(())
    }

    /// Removes the routes of `owner` (its loop ended); their paths answer 503 meanwhile.
    pub fn unmount(&self, owner: &str) {
        let mut inner = self.write();
        if inner.by_owner.remove(owner).is_some() {
            inner.combined = merge(&inner.by_owner);
        }
    }

    fn current(&self) -> Router {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .combined
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RoutesInner> {
        // Each update replaces whole values, so a poisoned lock still guards consistent data.
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn merge(by_owner: &BTreeMap<String, Router>) -> Router {
    by_owner
        .values()
        .cloned()
        .fold(Router::new(), Router::merge)
        .fallback(not_found)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": "no such endpoint (or the service that serves it is not running)"
        })),
    )
        .into_response()
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Metrics,
}

/// Why the HTTP endpoint did not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpStartError {
    /// The accounts and settings do not allow this bind address (nothing was bound).
    #[error(transparent)]
    Auth(#[from] HttpAuthError),
    /// The address could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// A running HTTP endpoint.
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 allowed) and serves `/healthz`, `/metrics` and whatever is mounted in
    /// `routes`, until `shutdown`, without accounts: loopback addresses only (anyone there may
    /// do everything). Every request carries the peer's address as an
    /// `axum::extract::ConnectInfo<SocketAddr>` extension.
    pub async fn start(
        addr: SocketAddr,
        health: Health,
        metrics: Metrics,
        routes: Routes,
        shutdown: CancellationToken,
    ) -> Result<Self, HttpStartError> {
        Self::start_with_auth(addr, health, metrics, routes, HttpAuth::default(), shutdown).await
    }

    /// [`HttpServer::start`] with accounts: `auth` decides who may do what (see [`crate::auth`]),
    /// and refuses a bind address it does not allow before anything is bound.
    pub async fn start_with_auth(
        addr: SocketAddr,
        health: Health,
        metrics: Metrics,
        routes: Routes,
        auth: HttpAuth,
        shutdown: CancellationToken,
    ) -> Result<Self, HttpStartError> {
        auth.check_listen(addr)?;
        let bind_error = |source| HttpStartError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        auth.bind(local_addr);
        auth.register_metrics(&metrics);
        let dynamic = tower::service_fn(move |request: Request<Body>| {
            let router = routes.current();
            async move { Ok::<_, Infallible>(router.oneshot(request).await.into_response()) }
        });
        let login = Router::new()
            .route("/login", get(auth::login_form))
            .route("/api/v1/login", post(auth::login))
            .route("/api/v1/logout", post(auth::logout))
            .with_state(auth.clone());
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .with_state(AppState { health, metrics })
            .merge(login)
            .fallback_service(dynamic)
            .layer(axum::middleware::from_fn_with_state(
                auth,
                auth::authenticate,
            ));
        let task = tokio::spawn(async move {
            // With the peer address in each request's extensions (`ConnectInfo<SocketAddr>`), so a
            // mounted API can serve loopback clients only when it has no credentials configured.
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
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
    let components = state.health.snapshot();
    let healthy = state.health.is_healthy();
    let failing = components
        .iter()
        .filter(|(_, component)| !component.ok)
        .map(|(name, _)| name.clone())
        .collect();
    let report = HealthReport {
        status: if healthy { "ok" } else { "unhealthy" },
        failing,
        components,
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
