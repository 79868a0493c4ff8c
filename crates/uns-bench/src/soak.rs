//! Soak: `uns up` under mixed churn for a while, its RSS and open file descriptors sampled at an
//! interval, and a flat-line check of both, [`run`].
//!
//! The churn, all at once, for [`SoakOptions::duration`]:
//! - clean sessions: connect, subscribe `uns/v1/#` (every retained document arrives), disconnect;
//! - persistent sessions: a pool of [`PERSISTENT_POOL`] client ids, each connect resuming its
//!   session (QoS 1 subscription on a topic of its own), a QoS 1 message queued for one of the
//!   offline sessions per cycle, disconnect;
//! - Sparkplug births: an edge node with [`BIRTH_METRICS`] device metrics publishing data every
//!   100 ms, a rebirth every 5 s and a new connection (new `bdSeq`) every 30 s;
//! - bad input: corrupt protobuf on the device's DDATA topic, malformed JSON on a `_cmd` topic,
//!   and a client sending a topic of 100 levels (the broker disconnects it).
//!
//! After [`SoakOptions::warmup`], RSS and descriptors must stay flat: the least-squares slope of
//! RSS is under [`FLAT_KIB_PER_MIN`] (or 0.5 % of the mean RSS) per minute, and the descriptor count
//! varies by at most [`FLAT_FDS`].
//!
//! A soak looks for what grows without bound, so bounded caches must reach their bound within the
//! warm-up, or their filling reads as growth. The one cache of `uns up` that does not is the
//! console's history (up to `history_values` per topic, 1 000 by default, within
//! `history_max_mib`, 256 MiB by default, for all topics together; its bound has its own test):
//! every rebirth adds 500 values to it, so at the defaults it fills for an hour. The soak therefore
//! runs `uns up` with `[console] history_values =` [`SoakOptions::console_history_values`]
//! ([`CONSOLE_HISTORY_VALUES`] by default) and samples the history's size from `/api/v1/console/stats`, so the report shows what
//! the cache holds next to RSS.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uns_model::topic::{Class, Id, Location, TopicFilter, UnsTopic};
use uns_sparkplug::edge::{DeviceDef, EdgeNode, MetricDef, Outgoing, Qos};
use uns_sparkplug::topic::{DeviceMessageKind, SparkplugTopic};
use uns_sparkplug::value::Value;

use crate::erp::Process;
use crate::report::MachineInfo;

/// Client ids of the persistent sessions (reused, so the number of sessions is bounded).
pub const PERSISTENT_POOL: usize = 100;
/// Metrics of the soak edge node's device (every birth carries them all).
pub const BIRTH_METRICS: usize = 500;
/// The largest RSS slope after the warm-up that still counts as flat, KiB per minute.
pub const FLAT_KIB_PER_MIN: f64 = 512.0;
/// The largest spread of the descriptor count after the warm-up that still counts as flat.
pub const FLAT_FDS: u64 = 20;

/// The console's `history_values` in a soak of `uns up` (see the module docs).
pub const CONSOLE_HISTORY_VALUES: usize = 10;

/// Knobs of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoakOptions {
    /// The `uns` binary.
    pub program: PathBuf,
    /// What it runs: `up` (the broker and every service) or `broker` (the broker alone, to tell
    /// the broker's share from the services').
    pub subcommand: String,
    /// How long the churn runs.
    pub duration: Duration,
    /// Time between two samples.
    pub interval: Duration,
    /// Samples before this are shown but left out of the flat-line check.
    pub warmup: Duration,
    /// `[console] history_values` of the soaked `uns up` (`None`: its own default, 1 000).
    pub console_history_values: Option<usize>,
}

impl SoakOptions {
    /// Five minutes, a sample every 10 s, one minute of warm-up, a console history of 10 values
    /// per topic.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            subcommand: "up".to_owned(),
            duration: Duration::from_secs(300),
            interval: Duration::from_secs(10),
            warmup: Duration::from_secs(60),
            console_history_values: Some(CONSOLE_HISTORY_VALUES),
        }
    }
}

/// What went wrong in [`run`].
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// Starting `uns up` or reading its files failed.
    #[error(transparent)]
    Process(#[from] crate::erp::ErpBenchError),
    /// `/proc` of the process could not be read (it died?).
    #[error("reading /proc/{pid}: {source}")]
    Proc {
        /// The process.
        pid: u32,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Sparkplug edge node could not build its messages.
    #[error("edge node: {0}")]
    Edge(String),
}

/// One sample of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoakSample {
    /// Seconds since the churn started.
    pub at_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Connections made by the churn so far (all kinds).
    pub connections: u64,
    /// The console's history: points held and their payload bytes, when the process runs the
    /// console (`/api/v1/console/stats`).
    pub console_history: Option<(u64, u64)>,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakReport {
    /// When it ran.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The options of the run.
    pub options: SoakOptions,
    /// Every sample, the first before the churn.
    pub samples: Vec<SoakSample>,
    /// Clean-session cycles, persistent-session cycles, births, bad messages, deep-topic clients.
    pub counts: [u64; 5],
    /// Least-squares RSS slope after the warm-up, KiB per minute.
    pub rss_slope_kib_per_min: f64,
    /// Largest minus smallest descriptor count after the warm-up.
    pub fd_spread: u64,
    /// Whether both stayed flat.
    pub flat: bool,
}

impl SoakReport {
    /// The report as a short Markdown section.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(
            md,
            "## Soak (`uns {}` under mixed churn)\n",
            self.options.subcommand
        );
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(md, "- Machine: {}", self.machine.describe());
        let [clean, persistent, births, bad, deep] = self.counts;
        let _ = writeln!(
            md,
            "- {} s of churn: {clean} clean-session cycles, {persistent} persistent-session cycles \
             ({PERSISTENT_POOL} ids), {births} Sparkplug births of {BIRTH_METRICS} metrics, {bad} bad \
             messages, {deep} clients sending a 100-level topic\n",
            self.options.duration.as_secs()
        );
        let _ = match self.options.console_history_values {
            Some(values) if self.options.subcommand == "up" => writeln!(
                md,
                "Console history: at most {values} values per topic (`[console] history_values`, \
                 set by the soak so the cache reaches its bound within the warm-up).\n"
            ),
            _ => Ok(()),
        };
        let _ = writeln!(
            md,
            "| t (s) | RSS (MiB) | open fds | connections | console history (points / KiB) |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for sample in &self.samples {
            let history = match sample.console_history {
                Some((points, bytes)) => format!("{points} / {}", bytes / 1024),
                None => "-".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {:.0} | {:.1} | {} | {} | {history} |",
                sample.at_s,
                sample.rss_kib as f64 / 1024.0,
                sample.fds,
                sample.connections
            );
        }
        let _ = writeln!(
            md,
            "\nAfter the {} s warm-up: RSS slope {:.0} KiB/min, descriptor spread {}: **{}**",
            self.options.warmup.as_secs(),
            self.rss_slope_kib_per_min,
            self.fd_spread,
            if self.flat { "flat" } else { "NOT flat" }
        );
        md
    }
}

/// Runs the soak.
///
/// # Errors
/// `uns up` does not start or dies, or the edge node cannot build its messages.
pub async fn run(options: &SoakOptions) -> Result<SoakReport, SoakError> {
    let dir = tempfile::tempdir().map_err(crate::erp::ErpBenchError::Io)?;
    let mut args = vec![
        options.subcommand.clone(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--ws-listen".to_owned(),
        "none".to_owned(),
    ];
    if let (Some(values), "up") = (options.console_history_values, options.subcommand.as_str()) {
        let config = dir.path().join("soak.toml");
        std::fs::write(&config, format!("[console]\nhistory_values = {values}\n"))
            .map_err(crate::erp::ErpBenchError::Io)?;
        args.extend(["--config".to_owned(), config.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let uns = Process::start("uns up", &options.program, &args, &dir.path().join("uns")).await?;
    let console = (options.subcommand == "up").then(|| ConsoleStats::new(uns.http));
    let pid = uns.pid();
    let mqtt = uns.mqtt.ok_or_else(|| {
        SoakError::Process(crate::erp::ErpBenchError::Check(
            "the soaked process's ready file names no MQTT address".to_owned(),
        ))
    })?;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let counters: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let connections = Arc::new(AtomicU64::new(0));
    let churn = Churn {
        mqtt,
        stop: stop.clone(),
        counters: counters.clone(),
        connections: connections.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(churn.clone().clean_sessions());
    tasks.spawn(churn.clone().persistent_sessions());
    tasks.spawn(churn.clone().births());
    tasks.spawn(churn.clone().bad_input());

    let start = Instant::now();
    let mut samples = vec![sample(pid, 0.0, 0, console.as_ref()).await?];
    while start.elapsed() < options.duration {
        tokio::time::sleep(options.interval).await;
        samples.push(
            sample(
                pid,
                start.elapsed().as_secs_f64(),
                connections.load(Ordering::Relaxed),
                console.as_ref(),
            )
            .await?,
        );
    }
    stop.cancel();
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(err)) = result {
            return Err(err);
        }
    }
    let steady: Vec<&SoakSample> = samples
        .iter()
        .filter(|s| s.at_s >= options.warmup.as_secs_f64())
        .collect();
    let rss_slope_kib_per_min = slope_per_min(&steady);
    let fd_spread = steady.iter().map(|s| s.fds).max().unwrap_or(0)
        - steady.iter().map(|s| s.fds).min().unwrap_or(0);
    let mean_rss =
        steady.iter().map(|s| s.rss_kib as f64).sum::<f64>() / steady.len().max(1) as f64;
    let flat = rss_slope_kib_per_min.abs() <= FLAT_KIB_PER_MIN.max(mean_rss * 0.005)
        && fd_spread <= FLAT_FDS;
    drop(uns);
    Ok(SoakReport {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: MachineInfo::current(),
        options: options.clone(),
        samples,
        counts: std::array::from_fn(|k| counters[k].load(Ordering::Relaxed)),
        rss_slope_kib_per_min,
        fd_spread,
        flat,
    })
}

/// The least-squares slope of RSS over time, KiB per minute (0 with fewer than two samples).
fn slope_per_min(samples: &[&SoakSample]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.at_s).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        num += (s.at_s - mean_t) * (s.rss_kib as f64 - mean_r);
        den += (s.at_s - mean_t).powi(2);
    }
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

async fn sample(
    pid: u32,
    at_s: f64,
    connections: u64,
    console: Option<&ConsoleStats>,
) -> Result<SoakSample, SoakError> {
    let proc_error = |source| SoakError::Proc { pid, source };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(proc_error)?;
    let rss_kib = crate::process::parse_vm_rss(&status).unwrap_or(0) / 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(proc_error)?
        .count() as u64;
    let console_history = match console {
        Some(console) => console.history().await,
        None => None,
    };
    Ok(SoakSample {
        at_s,
        rss_kib,
        fds,
        connections,
        console_history,
    })
}

/// Reads the console's history size from `/api/v1/console/stats` (blocking HTTP on the blocking
/// pool).
struct ConsoleStats {
    agent: ureq::Agent,
    url: String,
}

impl ConsoleStats {
    fn new(http: SocketAddr) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Self {
            agent,
            url: format!("http://{http}/api/v1/console/stats"),
        }
    }

    /// Points and payload bytes, or `None` when the console does not answer (the sample keeps
    /// its RSS and descriptors; the table shows `-`).
    async fn history(&self) -> Option<(u64, u64)> {
        let (agent, url) = (self.agent.clone(), self.url.clone());
        let stats: serde_json::Value = tokio::task::spawn_blocking(move || {
            let text = agent
                .get(&url)
                .call()
                .ok()?
                .body_mut()
                .read_to_string()
                .ok()?;
            serde_json::from_str(&text).ok()
        })
        .await
        .ok()??;
        Some((
            stats["n_history_points"].as_u64()?,
            stats["history_payload_bytes"].as_u64()?,
        ))
    }
}

/// What the churn tasks share.
#[derive(Clone)]
struct Churn {
    mqtt: SocketAddr,
    stop: CancellationToken,
    counters: Arc<[AtomicU64; 5]>,
    connections: Arc<AtomicU64>,
}

const CLEAN: usize = 0;
const PERSISTENT: usize = 1;
const BIRTHS: usize = 2;
const BAD: usize = 3;
const DEEP: usize = 4;

impl Churn {
    fn options(&self, id: &str, clean: bool) -> MqttOptions {
        let mut options = MqttOptions::new(id, self.mqtt.ip().to_string(), self.mqtt.port());
        options.set_clean_session(clean);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        options
    }

    fn count(&self, what: usize) {
        self.counters[what].fetch_add(1, Ordering::Relaxed);
    }

    /// Connects and polls until `until` says the event it waits for arrived (or 10 s passed, or
    /// the connection failed); returns the client and event loop for more.
    async fn connect(&self, options: MqttOptions) -> Option<(AsyncClient, EventLoop)> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let (client, mut events) = AsyncClient::new(options, 64);
        let connected = poll_until(&mut events, |event| {
            matches!(event, Event::Incoming(Packet::ConnAck(_)))
        })
        .await;
        connected.then_some((client, events))
    }

    async fn clean_sessions(self) -> Result<(), SoakError> {
        let mut n = 0u64;
        while !self.stop.is_cancelled() {
            n += 1;
            if let Some((client, mut events)) = self
                .connect(self.options(&format!("soak-clean-{n}"), true))
                .await
            {
                let _ = client
                    .subscribe(TopicFilter::all_uns().as_str(), QoS::AtMostOnce)
                    .await;
                poll_until(&mut events, |e| {
                    matches!(e, Event::Incoming(Packet::SubAck(_)))
                })
                .await;
                disconnect(client, events).await;
                self.count(CLEAN);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn persistent_sessions(self) -> Result<(), SoakError> {
        let mut n = 0usize;
        while !self.stop.is_cancelled() {
            let id = n % PERSISTENT_POOL;
            n += 1;
            if let Some((client, mut events)) = self
                .connect(self.options(&format!("soak-persistent-{id}"), false))
                .await
            {
                let _ = client
                    .subscribe(format!("soak/persistent/{id}"), QoS::AtLeastOnce)
                    .await;
                poll_until(&mut events, |e| {
                    matches!(e, Event::Incoming(Packet::SubAck(_)))
                })
                .await;
                // One message for a session that is offline now (it gets it when it comes back).
                let other = (id + PERSISTENT_POOL / 2) % PERSISTENT_POOL;
                let _ = client
                    .publish(
                        format!("soak/persistent/{other}"),
                        QoS::AtLeastOnce,
                        false,
                        vec![0u8; 256],
                    )
                    .await;
                poll_until(&mut events, |e| {
                    matches!(e, Event::Incoming(Packet::PubAck(_)))
                })
                .await;
                disconnect(client, events).await;
                self.count(PERSISTENT);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn births(self) -> Result<(), SoakError> {
        let edge_error = |err: uns_sparkplug::edge::EdgeError| SoakError::Edge(err.to_string());
        let metrics: Vec<MetricDef> = (0..BIRTH_METRICS)
            .map(|k| MetricDef::new(format!("Soak/Metric/{k}"), Value::Double(0.0)))
            .collect();
        let mut node = EdgeNode::new(
            "acme-berlin",
            "line-1",
            Vec::new(),
            vec![DeviceDef::new("filler", metrics)],
        )
        .map_err(edge_error)?;
        let mut value = 0.0;
        while !self.stop.is_cancelled() {
            let will = node.connect(now_ms()).map_err(edge_error)?;
            let mut options = self.options("soak-edge-line-1", true);
            options.set_last_will(LastWill::new(
                will.topic.to_string(),
                will.payload,
                QoS::AtLeastOnce,
                false,
            ));
            let Some((client, mut events)) = self.connect(options).await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
            let session_end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < session_end && !self.stop.is_cancelled() {
                for outgoing in node.birth(now_ms()).map_err(edge_error)? {
                    send(&client, outgoing).await;
                }
                self.count(BIRTHS);
                let rebirth_at = Instant::now() + Duration::from_secs(5);
                while Instant::now() < rebirth_at && !self.stop.is_cancelled() {
                    value += 1.0;
                    let changed = vec![(
                        format!("Soak/Metric/{}", value as usize % BIRTH_METRICS),
                        Value::Double(value),
                    )];
                    if let Some(data) = node
                        .data(Some("filler"), changed, now_ms())
                        .map_err(edge_error)?
                    {
                        send(&client, data).await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let _ = client.disconnect().await;
            pump.abort();
        }
        Ok(())
    }

    async fn bad_input(self) -> Result<(), SoakError> {
        let Some((client, events)) = self.connect(self.options("soak-bad-input", true)).await
        else {
            return Ok(());
        };
        let mut events = events;
        let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
        let ddata = SparkplugTopic::Device {
            group: "acme-berlin".to_owned(),
            kind: DeviceMessageKind::DData,
            edge: "line-1".to_owned(),
            device: "filler".to_owned(),
        }
        .to_string();
        let release = ["wo", "release"]
            .iter()
            .map(|verb| Id::new(verb))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| SoakError::Edge(err.to_string()))?;
        let site: Location = "acme/berlin"
            .parse()
            .map_err(|err: uns_model::topic::TopicError| SoakError::Edge(err.to_string()))?;
        let command = UnsTopic::located(site, Class::Cmd(release)).to_string();
        let mut n = 0u64;
        while !self.stop.is_cancelled() {
            n += 1;
            let _ = client
                .publish(
                    ddata.as_str(),
                    QoS::AtMostOnce,
                    false,
                    vec![0xff, 0x01, 0x02, 0x03, 0xff],
                )
                .await;
            let _ = client
                .publish(
                    command.as_str(),
                    QoS::AtMostOnce,
                    false,
                    b"{not json".to_vec(),
                )
                .await;
            self.count(BAD);
            self.count(BAD);
            if n.is_multiple_of(25) {
                // A hostile client: a topic of 100 levels; the broker disconnects it.
                if let Some((deep, mut deep_events)) = self
                    .connect(self.options(&format!("soak-deep-{n}"), true))
                    .await
                {
                    let topic = vec!["x"; 100].join("/");
                    let _ = deep.publish(topic, QoS::AtMostOnce, false, vec![1]).await;
                    let _ = deep
                        .publish("soak/after", QoS::AtMostOnce, false, vec![1])
                        .await;
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < deadline {
                        match tokio::time::timeout(Duration::from_secs(1), deep_events.poll()).await
                        {
                            Ok(Ok(_)) | Err(_) => {}
                            Ok(Err(_)) => break,
                        }
                    }
                    self.count(DEEP);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pump.abort();
        Ok(())
    }
}

/// Polls `events` until `done` holds for an event (true), the connection fails or 10 s pass
/// (false).
async fn poll_until(events: &mut EventLoop, done: impl Fn(&Event) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.poll()).await {
            Ok(Ok(event)) if done(&event) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

async fn disconnect(client: AsyncClient, mut events: EventLoop) {
    let _ = client.disconnect().await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), events.poll()).await {
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
}

async fn send(client: &AsyncClient, outgoing: Outgoing) {
    let qos = match outgoing.qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    };
    let _ = client
        .publish(
            outgoing.topic.to_string(),
            qos,
            outgoing.retain,
            outgoing.payload,
        )
        .await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
