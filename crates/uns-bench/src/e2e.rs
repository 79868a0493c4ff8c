//! End to end: `uns sim` → broker → `uns scada-bridge` → UNS, each a child process on 127.0.0.1:
//! [`run_e2e`].
//!
//! Per rate step (a fresh set of processes and data directories each time):
//!
//! 1. `uns broker` on a spare port (HTTP on port 0, no websockets), or the baseline broker
//!    ([`E2eOptions::baseline`]: Debian's mosquitto with persistence on, as a deployment runs
//!    it) — with a baseline every step runs on both, ours first, so each figure has a ratio
//!    measured minutes apart on the same machine;
//! 2. `uns scada-bridge --broker mqtt://127.0.0.1:{port}`; ready when its
//!    `spBv1.0/STATE/scada-bridge` says online;
//! 3. `uns sim` in scale mode (`--nodes --devices-per-node --metrics-per-device --rate`); the run
//!    waits until every DBIRTH was seen, then for [`E2eOptions::warmup`] (the births' burst of
//!    retained `_tag` documents settles), then measures for [`E2eOptions::measure`].
//!
//! Two observer connections (the bench's own MQTT 3.1.1 client, QoS 0) watch the traffic:
//! `spBv1.0/#` (every DDATA: its metrics are the *offered* load, its arrival time one end of the
//! hop latency) and `uns/v1/#` (every `_tag`: the *delivered* load). Two latencies per `_tag`:
//!
//! - **source latency**: wall clock at delivery minus the DDATA metric's timestamp (ms resolution
//!   on the sim's side; includes the sim's own publish delay, broker → bridge → broker);
//! - **bridge hop**: the `_tag` arrival minus the arrival of the DDATA it came from, both at the
//!   observer on one monotonic clock (µs): broker → bridge → broker alone.
//!
//! CPU (utime + stime from `/proc/{pid}/stat`, USER_HZ 100) and RSS of the broker, the bridge and
//! the sim are sampled at the start and end of the window. A step *sustains* its rate when the
//! delivered rate is at least [`E2eOptions::min_delivered_ratio`] of the offered one and the hop
//! p99 is under [`E2eOptions::p99_limit`] or one sample period, whichever is longer (each period
//! starts with a burst from every device; what drains within the period does not pile up); stepping stops at the first step that does not. (The
//! hop decides, not the source latency: `uns sim` stamps each sample with a grid time that can be
//! ahead of the wall clock, see the report.)

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uns_model::payload::{Quality, TagValue, decode};
use uns_model::topic::{Class, TopicFilter, UnsTopic};
use uns_sparkplug::host::parse_state;
use uns_sparkplug::topic::{ALL_FILTER, DeviceMessageKind, NodeMessageKind, SparkplugTopic};

use crate::mqtt::{self, MqttClient, PUBLISH};
use crate::process::{RunningBroker, parse_vm_rss};
use crate::report::{MachineInfo, percentile};
use crate::{BenchError, BrokerUnderTest, ClientError};

/// How long the bridge may take to publish its STATE birth.
const BRIDGE_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the sim's births may take to arrive.
const BIRTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for each observer handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// DDATA arrival times older than this (by metric timestamp) are dropped from the match table.
const MATCH_HORIZON_MS: i64 = 30_000;
/// The Linux `/proc` clock tick (USER_HZ), fixed at 100 on every architecture's ABI.
const USER_HZ: f64 = 100.0;
/// At most this many rate steps, whatever the options say.
const MAX_STEPS: usize = 12;
/// Bridge host id of the default config (`spBv1.0/STATE/{id}`).
const HOST_ID: &str = "scada-bridge";

/// Knobs of [`run_e2e`].
#[derive(Debug, Clone, PartialEq)]
pub struct E2eOptions {
    /// The `uns` binary that runs the broker, the bridge and the sim.
    pub program: PathBuf,
    /// Simulated edge nodes.
    pub nodes: usize,
    /// Devices per edge node.
    pub devices_per_node: usize,
    /// Metrics per device.
    pub metrics_per_device: usize,
    /// Samples per second per device, one step each, in order (ascending: stepping stops at the
    /// first step that does not sustain its rate).
    pub rates_hz: Vec<f64>,
    /// Settling time after the last DBIRTH, before measuring.
    pub warmup: Duration,
    /// Measuring window per step.
    pub measure: Duration,
    /// A step whose bridge-hop p99 reaches this, or one sample period if that is longer, did not
    /// sustain its rate: the sim samples every device at once, so each period begins with a burst,
    /// and a p99 beyond the period means the backlog carries over into the next one.
    pub p99_limit: Duration,
    /// A step that delivers less than this share of the offered metrics did not sustain its rate.
    pub min_delivered_ratio: f64,
    /// The broker's per-client inflight window (`[broker] max_inflight`); `None` keeps the
    /// default (128). The bridge publishes every `_tag` at QoS 1, so this window bounds its rate.
    pub broker_max_inflight: Option<usize>,
    /// The baseline broker's executable (mosquitto): every step also runs on it, after ours.
    pub baseline: Option<PathBuf>,
}

impl E2eOptions {
    /// Issue 4's plant, 100 nodes × 10 devices × 50 metrics, stepped from 0.2 Hz (10 000
    /// metrics/s) through 1 Hz (the issue's 50 000 metrics/s) to 4 Hz; 10 s warm-up, 20 s
    /// windows, hop p99 limit 1 s, 98 % delivered.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            nodes: 100,
            devices_per_node: 10,
            metrics_per_device: 50,
            rates_hz: vec![0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0],
            warmup: Duration::from_secs(10),
            measure: Duration::from_secs(20),
            p99_limit: Duration::from_secs(1),
            baseline: None,
            min_delivered_ratio: 0.98,
            broker_max_inflight: None,
        }
    }

    /// Metrics per second the sim would send if every metric changed at every sample.
    pub fn nominal_rate(&self, rate_hz: f64) -> f64 {
        (self.nodes * self.devices_per_node * self.metrics_per_device) as f64 * rate_hz
    }
}

/// CPU and memory of one process over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcUsage {
    /// CPU time over wall time, in percent of one core (200 % = both cores of this machine).
    pub cpu_percent: f64,
    /// Resident memory at the end of the window, KiB.
    pub rss_kib: u64,
}

/// One rate step, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct E2eStep {
    /// The broker of the step ([`BrokerUnderTest::name`]: `uns` or `mosquitto`).
    pub broker_name: String,
    /// Samples per second per device.
    pub rate_hz: f64,
    /// Metrics per second the plant would send if every metric changed every sample.
    pub nominal: f64,
    /// DDATA metrics per second seen on `spBv1.0/#`.
    pub offered: f64,
    /// `_tag` documents per second seen on `uns/v1/#`.
    pub delivered: f64,
    /// Source latency p50, p99, max (ms): delivery wall clock minus metric timestamp. Negative
    /// when the sim stamps samples ahead of the wall clock, as `uns sim` does today (see the
    /// report's note), so it does not decide [`E2eStep::sustained`].
    pub source_ms: [f64; 3],
    /// Bridge hop p50, p99, max (ms): `_tag` arrival minus DDATA arrival at the observer.
    pub hop_ms: [f64; 3],
    /// `_tag` documents whose DDATA was not seen (so they have no hop sample).
    pub unmatched: u64,
    /// NBIRTH/DBIRTH and NCMD (rebirth requests) seen in the window: a healthy run has none.
    pub rebirths: u64,
    /// The process running the bridge.
    pub bridge: ProcUsage,
    /// The broker process.
    pub broker: ProcUsage,
    /// The sim process.
    pub sim: ProcUsage,
    /// Whether the step met both limits.
    pub sustained: bool,
}

/// What [`run_e2e`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct E2eReport {
    /// When the run finished, UTC.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The options of the run.
    pub options: E2eOptions,
    /// The three command lines (with placeholders).
    pub commands: Vec<String>,
    /// The steps run, in order.
    pub steps: Vec<E2eStep>,
}

impl E2eReport {
    /// The step of `broker` with the highest delivered rate among those that sustained their
    /// load.
    pub fn max_sustained(&self, broker: &str) -> Option<&E2eStep> {
        self.steps
            .iter()
            .filter(|step| step.sustained && step.broker_name == broker)
            .max_by(|a, b| a.delivered.total_cmp(&b.delivered))
    }

    /// The brokers of the run, in the order they ran.
    fn broker_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for step in &self.steps {
            if !names.contains(&step.broker_name.as_str()) {
                names.push(&step.broker_name);
            }
        }
        names
    }

    /// The report as markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let opts = &self.options;
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(md, "## End to end: uns sim → broker → scada-bridge → UNS\n");
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(
            md,
            "- Machine: {}; sim, broker, bridge and the observer share them",
            self.machine.describe()
        );
        let _ = writeln!(
            md,
            "- Plant: {} nodes × {} devices × {} metrics; per step a fresh set of processes, \
             {} s warm-up after the last DBIRTH, {} s measured",
            opts.nodes,
            opts.devices_per_node,
            opts.metrics_per_device,
            opts.warmup.as_secs_f64(),
            opts.measure.as_secs_f64()
        );
        for command in &self.commands {
            let _ = writeln!(md, "- `{command}`");
        }
        let _ = writeln!(
            md,
            "- Sustained = delivered ≥ {:.0} % of offered and bridge-hop p99 < max({} ms, one sample period). Offered = DDATA \
             metrics seen (report by exception: unchanged metrics are not sent, so offered < nominal). \
             Bridge hop = `_tag` arrival minus arrival of its DDATA, both at the observer (broker → \
             bridge → broker → observer); source = wall clock at delivery minus the metric timestamp \
             the sim wrote (negative: the sim stamps samples ahead of the wall clock)\n",
            opts.min_delivered_ratio * 100.0,
            opts.p99_limit.as_millis()
        );
        let _ = writeln!(
            md,
            "| broker | rate | nominal metrics/s | offered/s | delivered/s | delivered/offered | source p50 / p99 / max (ms) | bridge hop p50 / p99 / max (ms) | bridge CPU % | bridge RSS (MiB) | broker CPU % | broker RSS (MiB) | sim CPU % | sustained |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        let mib = |kib: u64| kib as f64 / 1024.0;
        for step in &self.steps {
            let _ = writeln!(
                md,
                "| {} | {} Hz | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} / {:.1} / {:.0} | {:.2} / {:.2} / {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
                step.broker_name,
                step.rate_hz,
                step.nominal,
                step.offered,
                step.delivered,
                step.delivered / step.offered.max(f64::EPSILON),
                step.source_ms[0],
                step.source_ms[1],
                step.source_ms[2],
                step.hop_ms[0],
                step.hop_ms[1],
                step.hop_ms[2],
                step.bridge.cpu_percent,
                mib(step.bridge.rss_kib),
                step.broker.cpu_percent,
                mib(step.broker.rss_kib),
                step.sim.cpu_percent,
                if step.sustained { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(md);
        self.write_ratios(&mut md);
        for broker in self.broker_names() {
            match self.max_sustained(broker) {
                Some(step) => {
                    let _ = writeln!(
                        md,
                        "- Max sustained on {broker}: {:.0} metrics/s delivered ({} Hz)",
                        step.delivered, step.rate_hz
                    );
                }
                None => {
                    let _ = writeln!(md, "- No step sustained its rate on {broker}");
                }
            }
        }
        for step in &self.steps {
            if step.rebirths > 0 || step.unmatched > 0 {
                let _ = writeln!(
                    md,
                    "- {} at {} Hz: {} births/rebirth requests in the window, {} `_tag`s without a matching DDATA",
                    step.broker_name, step.rate_hz, step.rebirths, step.unmatched
                );
            }
        }
        md
    }

    /// With a baseline: per rate both ran, ours over the baseline's figures.
    fn write_ratios(&self, md: &mut String) {
        let names = self.broker_names();
        let [ours, baseline] = names[..] else {
            return;
        };
        let _ = writeln!(
            md,
            "Ratios {ours} / {baseline} per rate (delivered: higher is better; latency, CPU, RSS: \
             lower is better):\n"
        );
        let _ = writeln!(
            md,
            "| rate | delivered/s | hop p50 | hop p99 | broker CPU | broker RSS | bridge CPU |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "-".to_owned()
            }
        };
        for step in self.steps.iter().filter(|step| step.broker_name == ours) {
            let Some(base) = self
                .steps
                .iter()
                .find(|other| other.broker_name == baseline && other.rate_hz == step.rate_hz)
            else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {} Hz | {} | {} | {} | {} | {} | {} |",
                step.rate_hz,
                ratio(step.delivered, base.delivered),
                ratio(step.hop_ms[0], base.hop_ms[0]),
                ratio(step.hop_ms[1], base.hop_ms[1]),
                ratio(step.broker.cpu_percent, base.broker.cpu_percent),
                ratio(step.broker.rss_kib as f64, base.broker.rss_kib as f64),
                ratio(step.bridge.cpu_percent, base.bridge.cpu_percent),
            );
        }
        let _ = writeln!(md);
    }
}

/// Why [`run_e2e`] failed.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// An option is out of range.
    #[error("invalid benchmark option: {0}")]
    InvalidOptions(&'static str),
    /// The broker did not start.
    #[error(transparent)]
    Broker(#[from] BenchError),
    /// A data directory or log file could not be created.
    #[error("cannot prepare a data directory")]
    DataDir(#[source] std::io::Error),
    /// The bridge or the sim could not be started.
    #[error("cannot start {what} ({})", program.display())]
    Spawn {
        /// `scada-bridge` or `sim`.
        what: &'static str,
        /// The executable.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bridge or the sim did not get ready in time.
    #[error("{what} not ready within {waited:?}; its log ends with:\n{log}")]
    NotReady {
        /// What was awaited.
        what: &'static str,
        /// How long.
        waited: Duration,
        /// The end of the process log.
        log: String,
    },
    /// An observer connection failed.
    #[error("observer: {0}")]
    Observer(#[from] ClientError),
}

/// Runs every step of `opts.rates_hz` (at most 12) until one does not sustain its rate.
pub async fn run_e2e(opts: &E2eOptions) -> Result<E2eReport, E2eError> {
    if opts.nodes == 0
        || opts.devices_per_node == 0
        || opts.metrics_per_device == 0
        || opts.rates_hz.is_empty()
        || opts.measure.is_zero()
    {
        return Err(E2eError::InvalidOptions(
            "nodes, devices, metrics, rates and the measuring window must be positive",
        ));
    }
    if opts
        .rates_hz
        .iter()
        .any(|rate| !(rate.is_finite() && *rate > 0.0 && *rate <= 1_000.0))
    {
        return Err(E2eError::InvalidOptions("rates must be in (0, 1000] Hz"));
    }
    let mut brokers = vec![broker_under_test(opts)];
    if let Some(program) = &opts.baseline {
        brokers.push(mosquitto_for_e2e(program, opts)?);
    }
    let mut steps = Vec::new();
    for &rate_hz in opts.rates_hz.iter().take(MAX_STEPS) {
        // A broker that did not sustain a rate is not tried at higher ones.
        let mut still = Vec::new();
        for broker in brokers {
            let step = run_step(opts, &broker, rate_hz).await?;
            if step.sustained {
                still.push(broker);
            }
            steps.push(step);
        }
        brokers = still;
        if brokers.is_empty() {
            break;
        }
    }
    Ok(E2eReport {
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        machine: MachineInfo::current(),
        options: opts.clone(),
        commands: command_lines(opts),
        steps,
    })
}

/// `uns broker`, with a config file when the inflight window is set.
fn broker_under_test(opts: &E2eOptions) -> BrokerUnderTest {
    let mut broker = BrokerUnderTest::uns(&opts.program);
    if let Some(max_inflight) = opts.broker_max_inflight {
        broker.files.push((
            "uns.toml".to_owned(),
            format!("[broker]\nmax_inflight = {max_inflight}\n"),
        ));
        broker
            .args
            .extend(["--config".to_owned(), "{data_dir}/uns.toml".to_owned()]);
    }
    broker
}

/// The baseline: mosquitto at `program` as [`crate::mosquitto_at`] configures it for the broker
/// bench, but with persistence on (in-memory store saved to `{data_dir}` on mosquitto's own
/// schedule, as a deployment runs it) and the same inflight window as ours, so the bridge's QoS 1
/// `_tag` publishes meet the same receive maximum.
fn mosquitto_for_e2e(program: &Path, opts: &E2eOptions) -> Result<BrokerUnderTest, E2eError> {
    let mut broker = crate::mosquitto_at(program)?;
    let max_inflight = opts
        .broker_max_inflight
        .unwrap_or(uns_broker::DEFAULT_MAX_INFLIGHT);
    for (_, contents) in &mut broker.files {
        *contents = contents.replace(
            "persistence false\n",
            &format!(
                "persistence true\npersistence_location {{data_dir}}/\nmax_inflight_messages {max_inflight}\n"
            ),
        );
    }
    Ok(broker)
}

fn command_lines(opts: &E2eOptions) -> Vec<String> {
    let program = opts.program.display();
    let mut brokers = vec![broker_under_test(opts)];
    if let Some(baseline) = &opts.baseline
        && let Ok(broker) = mosquitto_for_e2e(baseline, opts)
    {
        brokers.push(broker);
    }
    let mut lines: Vec<String> = brokers
        .iter()
        .map(|broker| {
            let mut line = broker.command_line();
            for (name, contents) in &broker.files {
                let _ = write!(
                    line,
                    "` with `{name}`: `{}",
                    contents
                        .lines()
                        .filter(|line| !line.starts_with('#'))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            line
        })
        .collect();
    lines.extend([
        format!(
            "{program} {}",
            bridge_args("{port}", "{data_dir}").join(" ")
        ),
        format!(
            "{program} {}",
            sim_args(opts, "{rate}", "{port}", "{data_dir}").join(" ")
        ),
    ]);
    lines
}

fn bridge_args(port: &str, data_dir: &str) -> Vec<String> {
    [
        "scada-bridge",
        "--broker",
        &format!("mqtt://127.0.0.1:{port}"),
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        &format!("{data_dir}/bridge"),
        "--log",
        "warn",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn sim_args(opts: &E2eOptions, rate: &str, port: &str, data_dir: &str) -> Vec<String> {
    [
        "sim",
        "--broker",
        &format!("mqtt://127.0.0.1:{port}"),
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        &format!("{data_dir}/sim"),
        "--nodes",
        &opts.nodes.to_string(),
        "--devices-per-node",
        &opts.devices_per_node.to_string(),
        "--metrics-per-device",
        &opts.metrics_per_device.to_string(),
        "--rate",
        rate,
        "--log",
        "warn",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A child process with its log file; killed on drop.
struct Service {
    pid: u32,
    log: PathBuf,
    _child: Child,
}

impl Service {
    fn spawn(
        what: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Self, E2eError> {
        let file = std::fs::File::create(&log).map_err(E2eError::DataDir)?;
        let file_err = file.try_clone().map_err(E2eError::DataDir)?;
        let spawn_error = |source| E2eError::Spawn {
            what,
            program: program.to_path_buf(),
            source,
        };
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let pid = child
            .id()
            .ok_or_else(|| spawn_error(std::io::Error::other("exited at once")))?;
        Ok(Self {
            pid,
            log,
            _child: child,
        })
    }

    fn not_ready(&self, what: &'static str, waited: Duration, observed: &Observed) -> E2eError {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let tail = &text[text.len().saturating_sub(2_000)..];
        let mut log = String::from_utf8_lossy(tail).trim().to_owned();
        if let Some(error) = &lock(observed).observer_error {
            log.push_str("\n(observer connection failed: ");
            log.push_str(error);
            log.push(')');
        }
        E2eError::NotReady { what, waited, log }
    }
}

/// Phases of the observer's counting.
const WARMUP: u8 = 0;
const MEASURING: u8 = 1;
const DONE: u8 = 2;

/// What the two observer tasks share.
#[derive(Default)]
struct Observed {
    /// [`WARMUP`], [`MEASURING`] or [`DONE`].
    phase: AtomicU8,
    inner: Mutex<ObservedInner>,
}

#[derive(Default)]
struct ObservedInner {
    bridge_online: bool,
    dbirths: u64,
    /// (edge, device, metric timestamp ms) → DDATA arrival, ns since the run's epoch.
    arrivals: HashMap<(String, String, i64), u64>,
    offered: u64,
    delivered: u64,
    rebirths: u64,
    unmatched: u64,
    /// Source latencies, µs (negative when the source stamps ahead of the wall clock).
    source_us: Vec<i64>,
    /// Hop latencies, µs.
    hop_us: Vec<u64>,
    /// Why an observer connection ended, if one did.
    observer_error: Option<String>,
}

async fn run_step(
    opts: &E2eOptions,
    under_test: &BrokerUnderTest,
    rate_hz: f64,
) -> Result<E2eStep, E2eError> {
    let broker = RunningBroker::start(under_test).await?;
    let dir = tempfile::Builder::new()
        .prefix("uns-bench-e2e-")
        .tempdir()
        .map_err(E2eError::DataDir)?;
    let dir_text = dir.path().to_string_lossy().into_owned();
    let port = broker.addr.port().to_string();
    let epoch = Instant::now();
    let observed = Arc::new(Observed::default());
    observed.phase.store(WARMUP, Ordering::Release);
    let sparkplug_observer =
        observe(broker.addr, "e2e-obs-spb", ALL_FILTER, &observed, epoch).await?;
    let uns_filter = TopicFilter::all_uns().to_string();
    let uns_observer = observe(broker.addr, "e2e-obs-uns", &uns_filter, &observed, epoch).await?;
    let _observers = (AbortOnDrop(sparkplug_observer), AbortOnDrop(uns_observer));

    let bridge = Service::spawn(
        "scada-bridge",
        &opts.program,
        &bridge_args(&port, &dir_text),
        dir.path().join("bridge.log"),
    )?;
    let ready = wait_until(&observed, BRIDGE_READY_TIMEOUT, |inner| inner.bridge_online).await;
    if !ready {
        return Err(bridge.not_ready("scada-bridge STATE online", BRIDGE_READY_TIMEOUT, &observed));
    }
    let sim = Service::spawn(
        "sim",
        &opts.program,
        &sim_args(opts, &rate_hz.to_string(), &port, &dir_text),
        dir.path().join("sim.log"),
    )?;
    let n_devices = (opts.nodes * opts.devices_per_node) as u64;
    if !wait_until(&observed, BIRTH_TIMEOUT, |inner| inner.dbirths >= n_devices).await {
        return Err(sim.not_ready("every DBIRTH", BIRTH_TIMEOUT, &observed));
    }
    tokio::time::sleep(opts.warmup).await;

    let pids = [bridge.pid, broker.pid, sim.pid];
    let before = pids.map(cpu_ticks);
    let start = Instant::now();
    observed.phase.store(MEASURING, Ordering::Release);
    tokio::time::sleep(opts.measure).await;
    observed.phase.store(DONE, Ordering::Release);
    let elapsed = start.elapsed().as_secs_f64();
    let after = pids.map(cpu_ticks);
    let usage: Vec<ProcUsage> = (0..3)
        .map(|idx| ProcUsage {
            cpu_percent: after[idx].saturating_sub(before[idx]) as f64 / USER_HZ / elapsed * 100.0,
            rss_kib: rss_kib(pids[idx]),
        })
        .collect();

    let mut inner = lock(&observed);
    inner.source_us.sort_unstable();
    inner.hop_us.sort_unstable();
    let quantiles = |sorted: &[u64]| {
        [0.50, 0.99, 1.0].map(|quantile| percentile(sorted, quantile) as f64 / 1_000.0)
    };
    let offered = inner.offered as f64 / elapsed;
    let delivered = inner.delivered as f64 / elapsed;
    let hop_ms = quantiles(&inner.hop_us);
    let source_ms = [0.50, 0.99, 1.0]
        .map(|quantile| signed_percentile(&inner.source_us, quantile) as f64 / 1_000.0);
    // Every device samples at the same instant, so each period starts with a burst; a p99 under
    // one period means that burst drained before the next one: the backlog does not grow.
    let p99_limit_ms = opts.p99_limit.as_secs_f64().max(1.0 / rate_hz) * 1_000.0;
    let sustained = inner.offered > 0
        && delivered >= opts.min_delivered_ratio * offered
        && hop_ms[1] < p99_limit_ms;
    Ok(E2eStep {
        broker_name: under_test.name.clone(),
        rate_hz,
        nominal: opts.nominal_rate(rate_hz),
        offered,
        delivered,
        source_ms,
        hop_ms,
        unmatched: inner.unmatched,
        rebirths: inner.rebirths,
        bridge: usage[0],
        broker: usage[1],
        sim: usage[2],
        sustained,
    })
}

/// Nearest-rank percentile of sorted signed samples (as [`percentile`]); empty gives 0.
fn signed_percentile(sorted: &[i64], quantile: f64) -> i64 {
    let Some(last_idx) = sorted.len().checked_sub(1) else {
        return 0;
    };
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(last_idx)]
}

fn lock(observed: &Observed) -> std::sync::MutexGuard<'_, ObservedInner> {
    // A panicking observer task leaves plain counters behind; they are still readable.
    observed
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `done` every 50 ms until it holds or `limit` passes (a poll interval, not a wait for
/// something: the observers update the state from other tasks).
async fn wait_until(
    observed: &Observed,
    limit: Duration,
    done: impl Fn(&ObservedInner) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done(&lock(observed)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Aborts an observer task when the step ends, on every way out.
struct AbortOnDrop(JoinHandle<Result<(), ClientError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects an observer subscribed to `filter` and spawns its read loop.
async fn observe(
    addr: SocketAddr,
    client_id: &str,
    filter: &str,
    observed: &Arc<Observed>,
    epoch: Instant,
) -> Result<JoinHandle<Result<(), ClientError>>, ClientError> {
    debug_assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
    let mut client = MqttClient::connect(addr, client_id, HANDSHAKE_TIMEOUT).await?;
    client.subscribe(filter, 0, HANDSHAKE_TIMEOUT).await?;
    let observed = Arc::clone(observed);
    Ok(tokio::spawn(async move {
        let result = read_loop(&mut client, &observed, epoch).await;
        if let Err(error) = &result {
            lock(&observed).observer_error = Some(error.to_string());
        }
        result
    }))
}

async fn read_loop(
    client: &mut MqttClient,
    observed: &Observed,
    epoch: Instant,
) -> Result<(), ClientError> {
    {
        loop {
            {
                let arrival_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let wall_us = wall_clock_us();
                let mut inner = lock(observed);
                let measuring = observed.phase.load(Ordering::Acquire) == MEASURING;
                while let Some(frame) = client.reader.try_frame()? {
                    if frame.kind != PUBLISH {
                        continue;
                    }
                    let publish = mqtt::parse_publish(&frame)?;
                    let Ok(topic) = std::str::from_utf8(publish.topic) else {
                        continue;
                    };
                    if let Ok(topic) = topic.parse::<SparkplugTopic>() {
                        on_sparkplug(&mut inner, &topic, publish.payload, arrival_ns, measuring);
                    } else if measuring && is_tag(topic) {
                        on_tag(&mut inner, publish.payload, arrival_ns, wall_us);
                    }
                }
            }
            client.reader.fill().await?;
        }
    }
}

fn wall_clock_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

/// Whether `topic` is a UNS `_tag/...` topic.
fn is_tag(topic: &str) -> bool {
    matches!(
        topic.parse::<UnsTopic>(),
        Ok(UnsTopic::Located {
            class: Class::Tag(_),
            ..
        })
    )
}

fn on_sparkplug(
    inner: &mut ObservedInner,
    topic: &SparkplugTopic,
    payload: &[u8],
    arrival_ns: u64,
    measuring: bool,
) {
    match topic {
        SparkplugTopic::State { host_id } if host_id == HOST_ID => {
            inner.bridge_online = parse_state(payload).is_ok_and(|(online, _)| online);
        }
        SparkplugTopic::Device {
            kind: DeviceMessageKind::DBirth,
            ..
        } => {
            inner.dbirths += 1;
            if measuring {
                inner.rebirths += 1;
            }
        }
        SparkplugTopic::Node {
            kind: NodeMessageKind::NBirth | NodeMessageKind::NCmd,
            ..
        } if measuring => inner.rebirths += 1,
        SparkplugTopic::Device {
            kind: DeviceMessageKind::DData,
            edge,
            device,
            ..
        } => {
            let Ok(decoded) = uns_sparkplug::decode(payload) else {
                return;
            };
            if measuring {
                inner.offered += decoded.metrics.len() as u64;
            }
            let mut last_ts = None;
            for metric in &decoded.metrics {
                let ts = metric.timestamp.or(decoded.timestamp);
                if ts == last_ts {
                    continue;
                }
                last_ts = ts;
                if let Some(ts) = ts.and_then(|ts| i64::try_from(ts).ok()) {
                    inner
                        .arrivals
                        .insert((edge.clone(), device.clone(), ts), arrival_ns);
                }
            }
            // Keep the match table bounded: forget arrivals far older than this sample.
            if inner.arrivals.len() > 200_000
                && let Some(newest) = last_ts.and_then(|ts| i64::try_from(ts).ok())
            {
                inner
                    .arrivals
                    .retain(|(_, _, ts), _| newest - *ts < MATCH_HORIZON_MS);
            }
        }
        _ => {}
    }
}

fn on_tag(inner: &mut ObservedInner, payload: &[u8], arrival_ns: u64, wall_us: i64) {
    let Ok(tag) = decode::<TagValue>(payload) else {
        return;
    };
    if tag.quality == Quality::Stale {
        return;
    }
    inner.delivered += 1;
    inner
        .source_us
        .push(wall_us - tag.timestamp_ms.saturating_mul(1_000));
    let matched = tag.src.and_then(|src| {
        let key = (src.edge, src.device.unwrap_or_default(), tag.timestamp_ms);
        inner.arrivals.get(&key).copied()
    });
    match matched {
        Some(ddata_ns) => inner
            .hop_us
            .push(arrival_ns.saturating_sub(ddata_ns) / 1_000),
        None => inner.unmatched += 1,
    }
}

/// utime + stime of `pid` in clock ticks; 0 when unreadable (the process is gone).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_cpu_ticks(&stat))
        .unwrap_or(0)
}

/// Fields 14 and 15 of `/proc/{pid}/stat`, counted after the `)` that ends the command name (which
/// may itself contain spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| parse_vm_rss(&status))
        .map_or(0, |bytes| bytes / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(broker: &str, rate_hz: f64, delivered: f64, hop_p99: f64, sustained: bool) -> E2eStep {
        E2eStep {
            broker_name: broker.to_owned(),
            rate_hz,
            nominal: 10_000.0,
            offered: 9_000.0,
            delivered,
            source_ms: [0.0; 3],
            hop_ms: [10.0, hop_p99, hop_p99],
            unmatched: 0,
            rebirths: 0,
            bridge: ProcUsage::default(),
            broker: ProcUsage {
                cpu_percent: 20.0,
                rss_kib: 1024,
            },
            sim: ProcUsage::default(),
            sustained,
        }
    }

    #[test]
    fn the_baseline_runs_with_persistence_and_our_inflight_window() {
        let mosquitto = Path::new("/usr/sbin/mosquitto");
        if !mosquitto.is_file() {
            // BaselineMissing is the error then; the config is what this test checks.
            return;
        }
        let opts = E2eOptions {
            broker_max_inflight: Some(64),
            ..E2eOptions::new("uns")
        };
        let broker = mosquitto_for_e2e(mosquitto, &opts).expect("mosquitto is installed");
        let config = &broker.files[0].1;
        assert!(config.contains("persistence true\n"), "{config}");
        assert!(config.contains("persistence_location {data_dir}/\n"));
        assert!(config.contains("max_inflight_messages 64\n"));
        assert!(!config.contains("persistence false"));
    }

    #[test]
    fn with_a_baseline_the_report_has_a_ratio_per_rate_both_ran() {
        let report = E2eReport {
            date: String::new(),
            machine: MachineInfo::current(),
            options: E2eOptions::new("uns"),
            commands: Vec::new(),
            steps: vec![
                step("uns", 0.2, 9_000.0, 40.0, true),
                step("mosquitto", 0.2, 9_000.0, 20.0, true),
                step("uns", 0.4, 8_000.0, 4_000.0, false),
                step("mosquitto", 0.4, 16_000.0, 30.0, true),
                step("mosquitto", 0.6, 17_000.0, 3_000.0, false),
            ],
        };
        let md = report.to_markdown();
        assert!(md.contains("Ratios uns / mosquitto"), "{md}");
        // delivered, hop p50, hop p99, broker CPU, broker RSS, bridge CPU (0 over 0: "-").
        assert!(
            md.contains("| 0.2 Hz | 1.00 | 1.00 | 2.00 | 1.00 | 1.00 | - |"),
            "{md}"
        );
        assert!(
            md.contains("| 0.4 Hz | 0.50 | 1.00 | 133.33 | 1.00 | 1.00 | - |"),
            "{md}"
        );
        // No ratio row where only the baseline ran.
        assert!(!md.contains("\n| 0.6 Hz | "), "{md}");
        assert_eq!(report.max_sustained("uns").map(|s| s.rate_hz), Some(0.2));
        assert_eq!(
            report.max_sustained("mosquitto").map(|s| s.rate_hz),
            Some(0.4)
        );
        assert!(md.contains("- Max sustained on mosquitto: 16000 metrics/s delivered (0.4 Hz)"));
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        let check = |stat: &str, expected: Option<u64>| {
            assert_eq!(parse_cpu_ticks(stat), expected, "{stat}");
        };
        // Field 2 may contain spaces and parentheses; fields 14 and 15 are 7 and 3.
        check(
            "42 (uns (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 100 1000 200",
            Some(10),
        );
        check("42 (uns) S 1 2 3", None);
        check("garbage", None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        // Burn a little CPU so the counter is not zero on a fresh process.
        let mut x = 0u64;
        for idx in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(idx);
        }
        assert!(x != 1);
        assert!(cpu_ticks(std::process::id()) > 0);
        assert!(rss_kib(std::process::id()) > 0);
    }

    fn spb(topic: &str) -> SparkplugTopic {
        topic.parse().expect("valid Sparkplug topic")
    }

    #[test]
    fn only_tag_topics_count_as_tags() {
        assert!(is_tag("uns/v1/acme/berlin/line-1/_tag/process/temperature"));
        assert!(!is_tag("uns/v1/acme/berlin/line-1/_state"));
        assert!(!is_tag("uns/v1/_services/scada-bridge"));
        assert!(!is_tag("not/a/uns/_tag/x"));
    }

    #[test]
    fn observer_matches_tags_to_their_ddata() {
        let mut inner = ObservedInner::default();
        let ddata = uns_sparkplug::Payload {
            timestamp: Some(5_000),
            metrics: vec![
                uns_sparkplug::Metric {
                    timestamp: Some(5_000),
                    ..uns_sparkplug::Metric::new("a", uns_sparkplug::Value::Double(1.0))
                },
                uns_sparkplug::Metric {
                    timestamp: Some(5_000),
                    ..uns_sparkplug::Metric::new("b", uns_sparkplug::Value::Double(2.0))
                },
            ],
            seq: Some(1),
            ..uns_sparkplug::Payload::default()
        };
        let bytes = uns_sparkplug::encode(&ddata).unwrap();
        on_sparkplug(
            &mut inner,
            &spb("spBv1.0/g/DDATA/n1/d1"),
            &bytes,
            1_000_000,
            true,
        );
        assert_eq!(inner.offered, 2);
        let tag = |edge: &str, quality: &str| {
            format!(
                r#"{{"schema":"uns/tag/v1","value":1.0,"timestamp_ms":5000,"quality":"{quality}","src":{{"group":"g","edge":"{edge}","device":"d1","metric":"a"}}}}"#
            )
        };
        on_tag(
            &mut inner,
            tag("n1", "good").as_bytes(),
            3_500_000,
            5_000_700,
        );
        on_tag(
            &mut inner,
            tag("n2", "good").as_bytes(),
            4_000_000,
            5_001_000,
        );
        on_tag(
            &mut inner,
            tag("n1", "stale").as_bytes(),
            4_000_000,
            5_001_000,
        );
        assert_eq!(inner.delivered, 2);
        assert_eq!(inner.hop_us, [2_500]);
        assert_eq!(inner.unmatched, 1);
        assert_eq!(inner.source_us, [700, 1_000]);
        let check = |sorted: &[i64], quantile: f64, expected: i64| {
            assert_eq!(
                signed_percentile(sorted, quantile),
                expected,
                "{sorted:?} q{quantile}"
            );
        };
        check(&[-5, -1, 3], 0.5, -1);
        check(&[-5, -1, 3], 1.0, 3);
        check(&[], 0.99, 0);

        on_sparkplug(
            &mut inner,
            &spb("spBv1.0/STATE/scada-bridge"),
            br#"{"online":true,"timestamp":1}"#,
            0,
            false,
        );
        assert!(inner.bridge_online);
        on_sparkplug(&mut inner, &spb("spBv1.0/g/NCMD/n1"), b"", 0, true);
        assert_eq!(inner.rebirths, 1);
    }
}
