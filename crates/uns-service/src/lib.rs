//! The one way a UNS service is written, and what runs it.
//!
//! A service is a type implementing [`Service`]: its `NAME`, the config-file section it reads
//! (deserialized with defaults, then validated by [`Service::configure`] *before anything binds a
//! port or connects*), and [`Service::run`], which gets a [`Context`] with everything a service
//! needs: its MQTT client and inbox, the metrics registry, its health, its data directory, a place
//! to mount HTTP routes, how to reach the broker, and the shutdown token.
//!
//! [`Runtime`] runs a set of configured services in one process (`uns up` runs all of them next to
//! the embedded broker; `uns <service>` runs one against an external broker): one MQTT connection
//! per service, one HTTP endpoint ([`HttpServer`]: `/healthz`, `/metrics`, mounted routes), and a
//! supervisor per service. A loop that returns an error or panics is published `failed` on
//! `uns/v1/_services/{name}`, makes `/healthz` answer 503 naming it, and is restarted with
//! exponential backoff ([`RestartPolicy::Restart`]); a standalone service exits instead
//! ([`RestartPolicy::Exit`]) so Docker restarts the container.
//!
//! The type-erased [`ServiceEntry`] (made by [`entry`]) is what the binary keeps in its one list of
//! services: name, section, help text, command-line flags, and a `configure` that turns the raw
//! TOML section into a [`Configured`] service, with errors naming section and key.
//!
//! # A service in 30 lines
//!
//! ```
//! use uns_model::payload::NodeMeta;
//! use uns_model::topic::{Class, TopicFilter};
//! use uns_service::{ConfigEnv, ConfigError, Context, Service};
//!
//! /// Counts `_meta` documents and says how many it saw in its health detail.
//! struct MetaCounter {
//!     limit: u32,
//! }
//!
//! #[derive(Default, serde::Deserialize, serde::Serialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct MetaCounterConfig {
//!     limit: u32,
//! }
//!
//! impl Service for MetaCounter {
//!     const NAME: &'static str = "meta-counter";
//!     const SECTION: &'static str = "meta_counter";
//!     type Config = MetaCounterConfig;
//!     type Error = uns_client::ClientError;
//!
//!     fn configure(config: MetaCounterConfig, _env: &ConfigEnv) -> Result<Self, ConfigError> {
//!         if config.limit == 0 {
//!             return Err(ConfigError::new("limit", "must be at least 1"));
//!         }
//!         Ok(Self { limit: config.limit })
//!     }
//!
//!     async fn run(&self, mut ctx: Context) -> Result<(), Self::Error> {
//!         for filter in TopicFilter::at_any_location(&Class::Meta) {
//!             ctx.client.subscribe(&filter).await?;
//!         }
//!         let mut seen = 0;
//!         loop {
//!             tokio::select! {
//!                 () = ctx.shutdown.cancelled() => return Ok(()),
//!                 message = ctx.inbox.recv() => {
//!                     let Some(message) = message else { return Ok(()) };
//!                     if uns_model::payload::decode::<NodeMeta>(&message.payload).is_ok() {
//!                         seen += 1;
//!                     }
//!                     if seen >= self.limit {
//!                         ctx.health.degraded(format!("saw {seen} _meta documents")).await?;
//!                     }
//!                 }
//!             }
//!         }
//!     }
//! }
//! # let _ = uns_service::entry::<MetaCounter>();
//! ```
#![deny(missing_docs)]

pub mod auth;
mod context;
mod entry;
mod http;
mod runtime;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use auth::{
    Caller, HttpAccount, HttpAuth, HttpAuthConfig, HttpAuthError, HttpRole, RequireAuth,
};
pub use context::{BrokerEndpoint, Context, HealthHandle, HttpMount, InboxGuard};
pub use entry::{Configured, ServiceEntry, entry};
pub use http::{ComponentHealth, Health, HttpServer, HttpStartError, MountError, Routes};
pub use runtime::{Failure, RestartPolicy, Runtime, RuntimeError, RuntimeOptions, error_chain};

/// A UNS service. See the crate docs for an example.
pub trait Service: Send + Sync + Sized + 'static {
    /// The service name: `uns/v1/_services/{NAME}`, MQTT client id `uns-{NAME}`, data directory
    /// `{data_dir}/{NAME}`, the `uns {NAME}` subcommand. A valid topic id (`[a-z0-9-_.]`).
    const NAME: &'static str;
    /// The config-file section it reads, e.g. `scada_bridge` for `[scada_bridge]`.
    const SECTION: &'static str;
    /// One line for `uns --help`.
    const ABOUT: &'static str = "";
    /// Command-line flags of `uns {NAME}` that set keys of its section.
    const FLAGS: &'static [Flag] = &[];
    /// The section as written: serde with `#[serde(default, deny_unknown_fields)]`; `Default` is
    /// the documented defaults (what `uns generate-config` prints).
    type Config: serde::de::DeserializeOwned + serde::Serialize + Default + Send;
    /// Why [`Service::run`] stopped.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Validates the section into the runnable service, before anything binds or connects.
    fn configure(config: Self::Config, env: &ConfigEnv) -> Result<Self, ConfigError>;

    /// Registers the service's metrics; called once, before the first run.
    fn register_metrics(&self, _metrics: &uns_client::Metrics) {}

    /// Runs until `ctx.shutdown` is cancelled. Called again after a failure (restart with
    /// backoff), so per-run state lives inside `run` and durable state in the service's store.
    /// Returning before shutdown counts as a failure.
    fn run(&self, ctx: Context) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What a service may know about the process while it validates its config.
#[derive(Clone, Debug)]
pub struct ConfigEnv {
    /// `uns up --demo`: the simulated plant runs and services may load demo data.
    pub demo: bool,
    /// The process's data directory (a service's own is `{data_dir}/{NAME}`).
    pub data_dir: PathBuf,
    /// Where the HTTP endpoint will listen (a service can refuse to serve an unauthenticated API on
    /// a non-loopback address).
    pub http_listen: SocketAddr,
}

/// A command-line flag of a service's subcommand that sets one key of its config section
/// (`uns sim --seed 7` sets `[sim] seed = 7`). The value is read as a TOML value when it parses
/// as one (`7`, `1.5`, `true`) and as a string otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    /// The flag without dashes, e.g. `seed`.
    pub long: &'static str,
    /// The dotted key inside the section, e.g. `scale.nodes`.
    pub key: &'static str,
    /// Help text.
    pub help: &'static str,
}

/// A config section that cannot be used, naming the key at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", section.as_ref().map(|s| format!("[{s}] ")).unwrap_or_default(), if key.is_empty() { "(section)" } else { key })]
pub struct ConfigError {
    /// The section, filled in by whoever knows it (the entry that parsed it).
    pub section: Option<String>,
    /// The dotted key inside the section (`nodes[0].location`), empty for the section as a whole.
    pub key: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` (dotted path inside the section).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            section: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error, placed in `section`.
    pub fn in_section(mut self, section: &str) -> Self {
        self.section = Some(section.to_owned());
        self
    }
}
