//! [`Context`]: what a service's `run` gets, and the small handles inside it.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientError, Inbox, Metrics, UnsClient};
use uns_model::payload::HealthStatus;

use crate::http::{MountError, Routes};

/// Everything one run of a service needs. Built by the supervisor for each (re)start.
pub struct Context {
    /// The service's own MQTT connection; the same one across restarts of the loop, so its
    /// subscriptions and retained documents carry over.
    pub client: UnsClient,
    /// Messages of the service's subscriptions. Borrowed for this run: when the run ends (even by a
    /// panic) the inbox goes back to the supervisor and the next run gets it.
    pub inbox: InboxGuard,
    /// The process's metrics registry.
    pub metrics: Metrics,
    /// The service's health (`uns/v1/_services/{NAME}` and `/healthz`).
    pub health: HealthHandle,
    /// `{data_dir}/{NAME}`, created before the run: the service's store lives here.
    pub data_dir: PathBuf,
    /// Where the service mounts its HTTP routes.
    pub http: HttpMount,
    /// How to reach the broker, for services that need connections of their own (the SCADA
    /// bridge's Sparkplug connection, the simulator's edge nodes).
    pub broker: BrokerEndpoint,
    /// Cancelled when the service is to stop; `run` then returns `Ok(())`.
    pub shutdown: CancellationToken,
}

/// The broker the services of this process use.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// Its address.
    pub url: BrokerUrl,
    /// Username and password, when the broker wants them.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for BrokerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerEndpoint")
            .field("url", &self.url.to_string())
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .finish()
    }
}

/// The service's inbox for one run (a guard that gives it back when dropped).
pub struct InboxGuard(pub(crate) OwnedMutexGuard<Inbox>);

impl Deref for InboxGuard {
    type Target = Inbox;
    fn deref(&self) -> &Inbox {
        &self.0
    }
}

impl DerefMut for InboxGuard {
    fn deref_mut(&mut self) -> &mut Inbox {
        &mut self.0
    }
}

/// Sets the service's health document. `failed` is the supervisor's to say; a service says
/// `degraded` (working, but something is wrong: the ERP is unreachable) and `running` again.
#[derive(Clone)]
pub struct HealthHandle {
    pub(crate) client: UnsClient,
    pub(crate) status: Arc<crate::runtime::Status>,
}

impl HealthHandle {
    /// Publishes `degraded` with the reason (also shown on `/healthz`, which stays 200).
    pub async fn degraded(&self, reason: impl Into<String>) -> Result<(), ClientError> {
        let reason = reason.into();
        self.status.set_degraded(Some(reason.clone()));
        self.client
            .set_health(HealthStatus::Degraded, Some(reason))
            .await
    }

    /// Publishes `running` (after `degraded`).
    pub async fn running(&self) -> Result<(), ClientError> {
        self.status.set_degraded(None);
        self.client.set_health(HealthStatus::Running, None).await
    }
}

/// Mounts the service's HTTP routes on the process's one HTTP endpoint.
#[derive(Clone)]
pub struct HttpMount {
    pub(crate) owner: &'static str,
    pub(crate) routes: Routes,
}

impl HttpMount {
    /// Mounts `router` (absolute paths such as `/api/v1/work-orders`, state applied), replacing what
    /// this service mounted before. The routes are removed when the run ends.
    pub fn mount(&self, router: axum::Router) -> Result<(), MountError> {
        self.routes.mount(self.owner, router)
    }
}
