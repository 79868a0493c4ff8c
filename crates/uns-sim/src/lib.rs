//! `uns sim`: a simulated packaging plant as real Sparkplug B edge nodes over MQTT.
//!
//! Each line of the plant is one edge node (its own MQTT connection, Will, bdSeq and seq, via
//! [`uns_sparkplug::edge::EdgeNode`]); each cell is a device with a machine model
//! ([`plant::DeviceModel`]): a state machine (running, minor stops, jams, changeovers, planned breaks)
//! with realistic durations, good/reject counters at the cycle time, and process values. Metrics per
//! device (all in DBIRTH with name, alias, datatype; DDATA by alias, report by exception):
//!
//! | metric | datatype | notes |
//! |---|---|---|
//! | `State/Code` | Int32 | PackML state code: 6 Execute, 5 Suspended, 11 Held, 2 Stopped, 4 Idle (table in [`plant`]) |
//! | `State/Name` | String | the PackML state name |
//! | `Count/Good`, `Count/Scrap` | UInt64 | parts, `engUnit` = `"EA"`; monotonic; retentive across restarts, like a PLC's (see below) |
//! | `Process/Temperature` | Float | °C, DBIRTH property `engUnit` = `"CEL"` (String) |
//! | `Process/Pressure` | Double | bar, DBIRTH property `engUnit` = `"BAR"` |
//! | `Speed` | Double | parts per minute, `engUnit` = `"C94"` (UNECE Rec 20: per minute), 0 when not running |
//! | `Sim/Signal/{k}` | Double | only with `extra_metrics`/`scale`: a random walk that changes at every sample |
//!
//! **Store and forward.** While the broker is unreachable (or the configured primary host is offline),
//! each node buffers its samples in `data_dir/sim.redb` (a `uns-store` file; one write transaction per period) and, after
//! the reconnect and rebirth, publishes them oldest first as historical DATA (`is_historical = true`,
//! original timestamps), then deletes them. Publishes that were queued for a connection that died are
//! taken back and buffered too. Details in `node.rs` and `store.rs`.
//!
//! **Retentive counters.** As a PLC keeps its counters in retentive memory, each device's `Count/Good`
//! and `Count/Scrap` survive a restart in `sim.redb` (table `counters_v1`): a stopped simulator saves
//! them exactly, and while running each node reserves ahead, saving (before any value beyond it is
//! published) the counts plus at most about one second of production at the ideal rate. A restart after
//! a clean stop continues from the last value; after a crash (SIGKILL) it continues from the reserve,
//! so a counter may jump forward by that margin but never goes back.
//!
//! **Time.** Sampling runs on tokio time (`rate_hz` samples per second and device; paused-time tests
//! work); each sample advances its model by `speed / rate_hz` simulated seconds. Each device samples at
//! its own phase of the period (spread over the plant's devices, derived from the seed and the device's
//! index), so the load is even rather than one burst per period. A sample is stamped with the instant it
//! was due on the device's regular grid, counted from the wall-clock start time; it is taken at that
//! instant or later, so a timestamp is never ahead of the wall clock. The same [`SimConfig::seed`] gives
//! the same sequence of values and the same phases.
//!
//! ```no_run
//! # async fn demo() -> Result<(), uns_sim::SimError> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let connect = uns_sim::SimConnect::new("127.0.0.1", 1883);
//! uns_sim::run(uns_sim::SimConfig::default(), connect, "data".into(), shutdown).await
//! # }
//! ```

#![deny(missing_docs)]

mod config;
mod node;
pub mod plant;
mod rng;
mod schedule;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use uns_sparkplug::edge::EdgeError;

pub use config::{CellConfig, CellKind, LineConfig, ScaleConfig, SimConfig};

/// The service name, as in `uns/v1/_services/sim`.
pub const SERVICE: &str = "sim";

/// The simulator as a service (`uns_service::Service`): `[sim]` validated before anything starts, then
/// [`run`] against the process's broker with its buffer in the service's data directory. Not a UNS
/// service (it speaks Sparkplug), but run and health-reported like one.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
}

impl uns_service::Service for Sim {
    const NAME: &'static str = SERVICE;
    const SECTION: &'static str = "sim";
    const ABOUT: &'static str = "Run the simulated packaging plant: real Sparkplug B edge nodes (one \
        per line, one device per cell) with machine states, counters and process values, \
        store-and-forward while the broker is unreachable";
    const FLAGS: &'static [uns_service::Flag] = &[
        flag("seed", "seed", "Random seed (same seed, same values)"),
        flag("speed", "speed", "Simulated seconds per real second"),
        flag("rate", "rate_hz", "Samples per second of every device"),
        flag(
            "nodes",
            "scale.nodes",
            "Benchmark plant: edge nodes (with the next two flags)",
        ),
        flag(
            "devices-per-node",
            "scale.devices_per_node",
            "Benchmark plant: devices per node",
        ),
        flag(
            "metrics-per-device",
            "scale.metrics_per_device",
            "Benchmark plant: extra metrics per device",
        ),
        flag(
            "primary-host",
            "primary_host",
            "Wait for this Sparkplug primary host's STATE before births",
        ),
    ];
    type Config = SimConfig;
    type Error = SimError;

    fn configure(
        config: SimConfig,
        _env: &uns_service::ConfigEnv,
    ) -> Result<Self, uns_service::ConfigError> {
        config
            .validate()
            .map_err(|err| uns_service::ConfigError::new("", err.to_string()))?;
        Ok(Self { config })
    }

    async fn run(&self, ctx: uns_service::Context) -> Result<(), SimError> {
        let mut connect = SimConnect::new(ctx.broker.url.host(), ctx.broker.url.port());
        if let Some((user, password)) = ctx.broker.credentials.clone() {
            connect.username = Some(user);
            connect.password = Some(password);
        }
        run(
            self.config.clone(),
            connect,
            ctx.data_dir.clone(),
            ctx.shutdown.clone(),
        )
        .await
    }
}

const fn flag(long: &'static str, key: &'static str, help: &'static str) -> uns_service::Flag {
    uns_service::Flag { long, key, help }
}

/// Where and how the simulated edge nodes connect.
#[derive(Clone, PartialEq, Eq)]
pub struct SimConnect {
    /// Broker host name or address.
    pub host: String,
    /// Broker MQTT port.
    pub port: u16,
    /// MQTT username, if the broker wants one.
    pub username: Option<String>,
    /// MQTT password (sent only with a username).
    pub password: Option<String>,
}

impl SimConnect {
    /// Anonymous access to `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> SimConnect {
        SimConnect {
            host: host.into(),
            port,
            username: None,
            password: None,
        }
    }
}

impl std::fmt::Debug for SimConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConnect")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why the simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting is out of range or the plant is empty.
    #[error("invalid sim config: {0}")]
    InvalidConfig(String),
    /// An edge node could not be built (invalid or duplicate ids).
    #[error("invalid plant: {0}")]
    Edge(#[from] EdgeError),
    /// The data directory could not be created.
    #[error("creating data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The simulator's file (`sim.redb`: buffer and counters) could not be opened, read or written
    /// (in use by another `uns sim`, damaged, full disk); the message says which and what to do.
    #[error(transparent)]
    Store(#[from] uns_store::StoreError),
    /// A buffer file from before uns-store could not be moved to its layout.
    #[error("moving the store-and-forward buffer {path} to the uns-store layout: {message}")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// What redb said.
        message: String,
    },
    /// A sample could not be encoded for the buffer (a bug).
    #[error("encoding a buffered sample: {0}")]
    Encode(String),
}

/// Counters of a running simulation, shared with the caller (a cheap `Clone` handle).
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    inner: Arc<StatsInner>,
}

#[derive(Debug, Default)]
struct StatsInner {
    connects: AtomicU64,
    published: AtomicU64,
    buffered: AtomicU64,
    forwarded: AtomicU64,
    command_errors: AtomicU64,
}

impl SimStats {
    /// MQTT CONNECT attempts (each with a new bdSeq), all nodes.
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// Sparkplug messages handed to the MQTT client (births, live and historical DATA).
    pub fn published(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }

    /// Records (one node's or device's changed values at one time) written to the buffer.
    pub fn buffered(&self) -> u64 {
        self.inner.buffered.load(Ordering::Relaxed)
    }

    /// Buffered records published as historical DATA.
    pub fn forwarded(&self) -> u64 {
        self.inner.forwarded.load(Ordering::Relaxed)
    }

    /// Incoming messages rejected: corrupt NCMD/DCMD protobuf, unknown or read-only metrics, malformed
    /// STATE, unexpected topics. Each is logged and ignored.
    pub fn command_errors(&self) -> u64 {
        self.inner.command_errors.load(Ordering::Relaxed)
    }

    fn add_connect(&self) {
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
    }

    fn add_published(&self, n: u64) {
        self.inner.published.fetch_add(n, Ordering::Relaxed);
    }

    fn add_buffered(&self, n: u64) {
        self.inner.buffered.fetch_add(n, Ordering::Relaxed);
    }

    fn add_forwarded(&self, n: u64) {
        self.inner.forwarded.fetch_add(n, Ordering::Relaxed);
    }

    fn add_command_error(&self) {
        self.inner.command_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the simulated plant until `shutdown` is cancelled; then every edge node publishes its NDEATH
/// and disconnects. Fails only at start (invalid config or plant, unusable `data_dir`); a broker that is
/// down is not an error: the nodes retry and buffer.
pub async fn run(
    config: SimConfig,
    connect: SimConnect,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    run_with_stats(config, connect, data_dir, shutdown, SimStats::default()).await
}

/// [`run`], reporting into `stats` (for tests, health and benchmarks).
pub async fn run_with_stats(
    config: SimConfig,
    connect: SimConnect,
    data_dir: PathBuf,
    shutdown: CancellationToken,
    stats: SimStats,
) -> Result<(), SimError> {
    config.validate()?;
    std::fs::create_dir_all(&data_dir).map_err(|source| SimError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let path = data_dir.join("sim.redb");
    let specs = config.nodes();
    let (buffer, saved) = tokio::task::spawn_blocking({
        let edges: Vec<String> = specs.iter().map(|spec| spec.edge.clone()).collect();
        move || {
            let buffer = store::Buffer::open(&path)?;
            let saved = edges
                .iter()
                .map(|edge| buffer.counters(edge))
                .collect::<Result<Vec<_>, SimError>>()?;
            Ok::<_, SimError>((buffer, saved))
        }
    })
    .await
    .map_err(|error| SimError::InvalidConfig(format!("opening the buffer: {error}")))??;
    let n_devices = specs.iter().map(|spec| spec.cells.len()).sum();
    let mut first_device_idx = 0;
    let mut nodes = Vec::with_capacity(specs.len());
    for (spec, saved) in specs.iter().zip(saved) {
        nodes.push(node::SimNode::new(
            &config,
            spec,
            first_device_idx,
            n_devices,
            &saved,
        )?);
        first_device_idx += spec.cells.len();
    }
    // Before any node connects or samples: the first round's counts are covered by what is saved.
    let dt_s = config.speed / config.rate_hz;
    let reservations: Vec<_> = nodes
        .iter()
        .map(|node| node.reservation(dt_s, config.speed))
        .collect();
    let rows: Vec<(String, String, store::Counters)> = nodes
        .iter()
        .zip(&reservations)
        .flat_map(|(node, (updates, _))| {
            updates
                .iter()
                .map(|(device, counters)| (node.edge_id().to_owned(), device.clone(), *counters))
        })
        .collect();
    let saving = buffer.clone();
    tokio::task::spawn_blocking(move || saving.save_counters_blocking(&rows))
        .await
        .map_err(|error| SimError::InvalidConfig(format!("saving the counters: {error}")))??;
    for (node, (_, saved)) in nodes.iter_mut().zip(reservations) {
        node.set_saved(saved);
    }
    let shared = node::Shared {
        config: Arc::new(config),
        connect,
        buffer,
        stats,
        origin: schedule::Origin::now(),
    };
    tracing::info!(
        n_nodes = nodes.len(),
        host = %shared.connect.host,
        port = shared.connect.port,
        "simulated plant starting"
    );
    let tasks = tokio_util::task::TaskTracker::new();
    for sim_node in nodes {
        tasks.spawn(sim_node.run(shared.clone(), shutdown.clone()));
    }
    tasks.close();
    tasks.wait().await;
    // Commit what is queued and release the file, so a new run in this process can open it.
    let buffer = shared.buffer.clone();
    drop(shared);
    if let Err(error) = tokio::task::spawn_blocking(move || buffer.close()).await {
        tracing::error!(%error, "closing the store failed");
    }
    tracing::info!("simulated plant stopped");
    Ok(())
}
