//! Type erasure: a [`ServiceEntry`] per service type (the binary's one list), and [`Configured`],
//! a validated service ready for a [`crate::Runtime`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use uns_client::Metrics;

use crate::{ConfigEnv, ConfigError, Context, Flag, Service};

/// A boxed error from a service loop.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future of one run, erased.
pub(crate) type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// A service type, erased: what the binary lists. Made by [`entry`].
#[derive(Clone, Copy)]
pub struct ServiceEntry {
    /// [`Service::NAME`].
    pub name: &'static str,
    /// [`Service::SECTION`].
    pub section: &'static str,
    /// [`Service::ABOUT`].
    pub about: &'static str,
    /// [`Service::FLAGS`].
    pub flags: &'static [Flag],
    configure: fn(Option<toml::Value>, &ConfigEnv) -> Result<Configured, ConfigError>,
    default_config: fn() -> Result<toml::Value, String>,
}

impl std::fmt::Debug for ServiceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceEntry")
            .field("name", &self.name)
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

/// The entry of service type `S`.
pub const fn entry<S: Service>() -> ServiceEntry {
    ServiceEntry {
        name: S::NAME,
        section: S::SECTION,
        about: S::ABOUT,
        flags: S::FLAGS,
        configure: configure_erased::<S>,
        default_config: default_config::<S>,
    }
}

impl ServiceEntry {
    /// Deserializes `section` (absent = every default) and validates it. Errors name the section
    /// and the key (`[scada_bridge] nodes[0].location: ...`).
    pub fn configure(
        &self,
        section: Option<toml::Value>,
        env: &ConfigEnv,
    ) -> Result<Configured, ConfigError> {
        (self.configure)(section, env).map_err(|err| err.in_section(self.section))
    }

    /// The section's defaults as TOML, for `uns generate-config` and its test.
    pub fn default_config(&self) -> Result<toml::Value, String> {
        (self.default_config)()
    }
}

fn configure_erased<S: Service>(
    section: Option<toml::Value>,
    env: &ConfigEnv,
) -> Result<Configured, ConfigError> {
    let config: S::Config = match section {
        None => S::Config::default(),
        Some(value) => serde_path_to_error::deserialize(value).map_err(|err| {
            let key = err.path().to_string();
            let key = if key == "." { String::new() } else { key };
            ConfigError::new(key, err.into_inner().to_string())
        })?,
    };
    S::configure(config, env).map(Configured::new)
}

fn default_config<S: Service>() -> Result<toml::Value, String> {
    toml::Value::try_from(S::Config::default()).map_err(|err| err.to_string())
}

/// A validated service, ready to run. Cheap to clone.
#[derive(Clone)]
pub struct Configured {
    pub(crate) service: Arc<dyn Runnable>,
}

impl Configured {
    /// Wraps a service built in code (tests, internal services) rather than from config.
    pub fn new<S: Service>(service: S) -> Self {
        Self {
            service: Arc::new(service),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.service.name()
    }
}

impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Configured").field(&self.name()).finish()
    }
}

/// [`Service`] made object-safe.
pub(crate) trait Runnable: Send + Sync {
    fn name(&self) -> &'static str;
    fn register_metrics(&self, metrics: &Metrics);
    fn run(&self, ctx: Context) -> RunFuture<'_>;
}

impl<S: Service> Runnable for S {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn register_metrics(&self, metrics: &Metrics) {
        Service::register_metrics(self, metrics);
    }

    fn run(&self, ctx: Context) -> RunFuture<'_> {
        Box::pin(async move {
            Service::run(self, ctx)
                .await
                .map_err(|err| Box::new(err) as BoxError)
        })
    }
}
