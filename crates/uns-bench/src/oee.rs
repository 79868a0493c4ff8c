//! OEE benchmark, [`run`]: the OEE engine on one core, and the OEE service through a real broker.
//!
//! 1. Engine, one thread: [`OeeBenchOptions::assets`] cells (ten per line, on the demo site so the
//!    demo calendar and time zone apply) each send a `_count/good` total every 10 s of event time and
//!    a `_state` change every 5 minutes (running / a 30-second jam / running ...), for
//!    [`OeeBenchOptions::hours`] of event time, in time order across assets. Each input goes the way
//!    the service takes it: topic parse, payload decode, `Engine::apply` (which also closes the hours
//!    as event time passes them). The figure is inputs per second of the thread's CPU time in those
//!    calls (the generator's is left out; wall time on a shared machine holds others' turns too).
//! 2. Memory per tracked asset: the growth of the process's resident set over that run, divided by the
//!    assets, and the entries (states, count samples, ...) the engine holds per asset: `retain_h`
//!    hours of states, and count samples merged to about one per hour once their hour closed
//!    ([`OeeBenchOptions::compact`] off: every sample of `retain_h` hours, as before merging).
//! 3. Restart: [`Engine::snapshot`] of the engine after the run (CPU time, size) and
//!    [`Engine::restore`] of it (CPU time), against replaying every input of the run (what a restart
//!    did before snapshots: the engine CPU time of figure 1). With snapshots a restart restores and
//!    then replays at most `snapshot_every_inputs` inputs (the default 100 000, at figure 1's rate).
//! 4. One `Engine::current` over every scope (what the service computes each `publish_interval_s`).
//! 5. Service latency: the real service (`uns_oee::Oee` under the service runtime, its store on disk)
//!    and an in-process broker on 127.0.0.1 port 0, `publish_interval_s = 1` (the smallest): the time
//!    from publishing a `_state` change to receiving the cell's `_oee/current/hour` that contains it.
//!    The service publishes current figures on a timer, so this is mostly the wait for the next tick.
//! 6. Service throughput: [`OeeBenchOptions::service_inputs`] `_count/good` totals published at QoS 1
//!    as fast as the client can, until the service's current figures show the last one; every input
//!    is written to the store (a durable commit) before anything it caused is published.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use uns_model::payload::{
    CountDoc, IdealRate, MachineState, Mode, NodeMeta, OeeResult, Quantity, SchemaTag,
    StateCategory, StateDoc, Timestamp, Uom,
};
use uns_model::topic::{Class, CountKind, Isa95Level, Location, OeePeriodKind, UnsTopic};
use uns_oee::config::{OeeConfig, Settings};
use uns_oee::engine::Engine;

use crate::report::MachineInfo;

/// Knobs of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub struct OeeBenchOptions {
    /// Cells for the engine figures.
    pub assets: usize,
    /// Hours of event time the engine is fed.
    pub hours: f64,
    /// `_state` changes timed for the service latency.
    pub latency_samples: usize,
    /// `_count/good` totals for the service throughput.
    pub service_inputs: usize,
    /// Where the service's store and the broker's data go (a temporary directory inside).
    pub dir: PathBuf,
    /// Merge the count samples of closed hours (the engine's default; off to measure without).
    pub compact: bool,
}

impl Default for OeeBenchOptions {
    /// 1000 assets, 2 hours, 20 latency samples, 10 000 service inputs, the system temp dir.
    fn default() -> Self {
        Self {
            assets: 1000,
            hours: 2.0,
            latency_samples: 20,
            service_inputs: 10_000,
            dir: std::env::temp_dir(),
            compact: true,
        }
    }
}

/// What went wrong in [`run`].
#[derive(Debug, thiserror::Error)]
pub enum OeeBenchError {
    /// Setting up (config, temp dir, broker, service) failed.
    #[error("setting up the OEE benchmark: {0}")]
    Setup(String),
    /// An input was refused or did not decode: the generator is wrong.
    #[error("OEE benchmark input refused: {0}")]
    Input(String),
    /// The service did not answer in time.
    #[error("OEE benchmark: {0}")]
    Timeout(String),
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct OeeBenchReport {
    /// When it ran.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The options of the run.
    pub options: OeeBenchOptions,
    /// Inputs the engine was fed.
    pub engine_inputs: u64,
    /// Inputs per second on one core (parse + decode + apply).
    pub engine_inputs_per_s: f64,
    /// Resident-set growth per asset over the engine run, bytes.
    pub memory_per_asset_bytes: f64,
    /// States, count samples, reclassifications, order and rate changes held per asset after the run.
    pub entries_per_asset: f64,
    /// The size of the engine's snapshot after the run, bytes.
    pub snapshot_bytes: usize,
    /// CPU time of taking the snapshot, ms.
    pub snapshot_ms: f64,
    /// CPU time of restoring the engine from it, ms.
    pub restore_ms: f64,
    /// A restart that replays at most this many inputs after the snapshot (`snapshot_every_inputs`).
    pub snapshot_every_inputs: u64,
    /// Scopes (cells, lines, sites) `current` computed.
    pub scopes: usize,
    /// One `Engine::current` over every scope, ms.
    pub current_all_ms: f64,
    /// `_state` → `_oee/current/hour`, fastest (the processing and delivery, without waiting for a
    /// tick), ms.
    pub latency_min_ms: f64,
    /// `_state` → `_oee/current/hour`, median, ms.
    pub latency_p50_ms: f64,
    /// The same, 90th percentile (the slowest but one or two of the samples), ms.
    pub latency_p90_ms: f64,
    /// The same, slowest, ms.
    pub latency_max_ms: f64,
    /// Service inputs per second through the broker, each stored durably.
    pub service_inputs_per_s: f64,
}

impl OeeBenchReport {
    /// The report as a short Markdown section.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(md, "## OEE (uns-oee)\n");
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(
            md,
            "- Machine: {}; {} build",
            self.machine.describe(),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        let per_asset = self.engine_inputs as f64 / self.options.assets.max(1) as f64;
        let _ = writeln!(
            md,
            "- Engine: {} assets, {} h of event time, {} inputs ({per_asset:.0} per asset: a count every \
             10 s, a state change every 5 min)\n",
            self.options.assets, self.options.hours, self.engine_inputs
        );
        let _ = writeln!(md, "| figure | value |");
        let _ = writeln!(md, "|---|---|");
        let _ = writeln!(
            md,
            "| engine inputs per second of CPU, one core (parse + decode + apply) | {:.0} /s |",
            self.engine_inputs_per_s
        );
        let merged = if self.options.compact {
            "count samples of closed hours merged"
        } else {
            "every sample kept (merging off)"
        };
        let _ = writeln!(
            md,
            "| memory per tracked asset after {} h ({per_asset:.0} inputs each, {merged}) | {:.1} KiB |",
            self.options.hours,
            self.memory_per_asset_bytes / 1024.0
        );
        let _ = writeln!(
            md,
            "| entries held per asset (states, count samples, ...) | {:.0} |",
            self.entries_per_asset
        );
        let replay_all_s = self.engine_inputs as f64 / self.engine_inputs_per_s.max(1e-9);
        let replay_after_s = self.restore_ms / 1000.0
            + self.snapshot_every_inputs.min(self.engine_inputs) as f64
                / self.engine_inputs_per_s.max(1e-9);
        let _ = writeln!(
            md,
            "| snapshot of the engine: size / CPU to take / CPU to restore | {:.1} MiB / {:.0} ms / {:.0} ms |",
            self.snapshot_bytes as f64 / (1024.0 * 1024.0),
            self.snapshot_ms,
            self.restore_ms
        );
        let _ = writeln!(
            md,
            "| restart without a snapshot: replay of all {} inputs, CPU | {replay_all_s:.1} s |",
            self.engine_inputs
        );
        let _ = writeln!(
            md,
            "| restart from a snapshot: restore + at most {} inputs, CPU | {replay_after_s:.1} s |",
            self.snapshot_every_inputs.min(self.engine_inputs)
        );
        let _ = writeln!(
            md,
            "| one `current` over every scope ({} scopes), CPU | {:.1} ms |",
            self.scopes, self.current_all_ms
        );
        let _ = writeln!(
            md,
            "| service: `_state` → `_oee/current/hour`, publish_interval_s = 1, min / p50 / p90 / max ({} samples) | \
             {:.0} / {:.0} / {:.0} / {:.0} ms |",
            self.options.latency_samples,
            self.latency_min_ms,
            self.latency_p50_ms,
            self.latency_p90_ms,
            self.latency_max_ms
        );
        let _ = writeln!(
            md,
            "| service inputs per second through the broker, each stored durably ({} inputs) | {:.0} /s |",
            self.options.service_inputs, self.service_inputs_per_s
        );
        md
    }
}

fn ea(qty: f64) -> Quantity {
    Quantity::new(qty, Uom::EA)
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn ts(at: i64) -> Timestamp {
    Timestamp::from_unix_ms(at).unwrap_or_else(|| Timestamp::from(chrono::Utc::now()))
}

fn state_doc(at: i64, category: StateCategory, name: &str) -> StateDoc {
    StateDoc::new(
        Mode::Production,
        MachineState::named(category, name),
        ts(at),
    )
}

fn meta_doc(per_hour: f64) -> NodeMeta {
    NodeMeta {
        schema: SchemaTag::default(),
        level: Isa95Level::WorkCell,
        display_name: "bench cell".to_owned(),
        time_zone: None,
        ideal_rates: vec![IdealRate {
            material: None,
            per_hour: ea(per_hour),
        }],
        state_map: None,
        erp_id: None,
    }
}

fn location(text: &str) -> Result<Location, OeeBenchError> {
    text.parse()
        .map_err(|err| OeeBenchError::Setup(format!("location {text}: {err}")))
}

/// Runs every figure.
pub async fn run(options: &OeeBenchOptions) -> Result<OeeBenchReport, OeeBenchError> {
    let engine_options = options.clone();
    let engine = tokio::task::spawn_blocking(move || engine_figures(&engine_options))
        .await
        .map_err(|err| OeeBenchError::Setup(format!("engine thread: {err}")))??;
    let service = service_figures(options).await?;
    Ok(OeeBenchReport {
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        machine: MachineInfo::current(),
        options: options.clone(),
        engine_inputs: engine.inputs,
        engine_inputs_per_s: engine.inputs_per_s,
        memory_per_asset_bytes: engine.memory_per_asset_bytes,
        entries_per_asset: engine.entries_per_asset,
        snapshot_bytes: engine.snapshot_bytes,
        snapshot_ms: engine.snapshot_ms,
        restore_ms: engine.restore_ms,
        snapshot_every_inputs: engine.snapshot_every_inputs,
        scopes: engine.scopes,
        current_all_ms: engine.current_all_ms,
        latency_min_ms: service.latency_ms.0,
        latency_p50_ms: service.latency_ms.1,
        latency_p90_ms: service.latency_ms.2,
        latency_max_ms: service.latency_ms.3,
        service_inputs_per_s: service.inputs_per_s,
    })
}

struct EngineFigures {
    inputs: u64,
    inputs_per_s: f64,
    memory_per_asset_bytes: f64,
    entries_per_asset: f64,
    snapshot_bytes: usize,
    snapshot_ms: f64,
    restore_ms: f64,
    snapshot_every_inputs: u64,
    scopes: usize,
    current_all_ms: f64,
}

/// Resident set size of this process, bytes (0 when unknown).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// CPU time of the calling thread, ns (`/proc/thread-self/schedstat`), when the kernel reports it.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The thread's CPU time since `cpu_before`, or the wall time since `wall_before` without schedstat
/// (a shared machine's wall time also holds other processes' turns).
fn cpu_since(cpu_before: Option<u64>, wall_before: Instant) -> u64 {
    match (cpu_before, thread_cpu_ns()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => u64::try_from(wall_before.elapsed().as_nanos()).unwrap_or(u64::MAX),
    }
}

fn engine_figures(options: &OeeBenchOptions) -> Result<EngineFigures, OeeBenchError> {
    let config = OeeConfig::default();
    let mut settings = Settings::try_from(&config)
        .map_err(|err| OeeBenchError::Setup(format!("{}: {}", err.key, err.message)))?;
    settings.compact_counts = options.compact;
    let snapshot_every_inputs = settings.snapshot_every_inputs;
    let cells: Vec<Location> = (0..options.assets)
        .map(|idx| {
            location(&format!(
                "acme/berlin/bench/line-{}/cell-{}",
                idx / 10,
                idx % 10
            ))
        })
        .collect::<Result<_, _>>()?;
    let topics: Vec<[String; 3]> = cells
        .iter()
        .map(|cell| {
            [
                UnsTopic::located(cell.clone(), Class::State).to_string(),
                UnsTopic::located(cell.clone(), Class::Count(CountKind::Good)).to_string(),
                UnsTopic::located(cell.clone(), Class::Meta).to_string(),
            ]
        })
        .collect();
    let rss_before = rss_bytes();
    let mut engine = Engine::new(settings);
    let mut inputs = 0_u64;
    let mut cpu_ns = 0_u64;
    // Applies one tick's inputs and adds the thread's CPU time for them (the generator's is left out).
    let mut apply_all = |engine: &mut Engine, batch: Vec<(&str, Vec<u8>)>| {
        let (cpu_before, wall_before) = (thread_cpu_ns(), Instant::now());
        for (topic, bytes) in &batch {
            let topic: UnsTopic = topic
                .parse()
                .map_err(|err| OeeBenchError::Input(format!("{topic}: {err}")))?;
            let input = uns_oee::input::decode(&topic, bytes)
                .map_err(|err| OeeBenchError::Input(format!("{topic}: {err}")))?
                .ok_or_else(|| OeeBenchError::Input(format!("{topic}: not an OEE input")))?;
            engine
                .apply(input)
                .map_err(|err| OeeBenchError::Input(format!("{topic}: {err}")))?;
        }
        cpu_ns += cpu_since(cpu_before, wall_before);
        inputs += batch.len() as u64;
        Ok::<(), OeeBenchError>(())
    };
    // A fixed Monday 00:00 UTC, so every run sees the same calendar.
    let t0 = 1_772_409_600_000_i64; // 2026-03-02T00:00:00Z
    let mut batch = Vec::new();
    for (idx, topic) in topics.iter().enumerate() {
        batch.push((topic[2].as_str(), json(&meta_doc(3600.0))));
        // Spread the assets' state changes over the 5 minutes.
        let since = t0 - (idx as i64 % 30) * 10_000;
        let doc = state_doc(since, StateCategory::Running, "Execute");
        batch.push((topic[0].as_str(), json(&doc)));
    }
    apply_all(&mut engine, batch)?;
    let ticks = (options.hours * 360.0).round() as i64;
    let mut totals = vec![0.0_f64; cells.len()];
    for tick in 1..=ticks {
        let at = t0 + tick * 10_000;
        let mut batch = Vec::with_capacity(2 * topics.len());
        for (idx, topic) in topics.iter().enumerate() {
            // Every 5 minutes (per asset, staggered) a 30-second jam.
            let phase = (tick + idx as i64 % 30) % 30;
            if phase == 0 {
                let doc = state_doc(at, StateCategory::UnplannedDown, "Jam");
                batch.push((topic[0].as_str(), json(&doc)));
            } else if phase == 3 {
                let doc = state_doc(at, StateCategory::Running, "Execute");
                batch.push((topic[0].as_str(), json(&doc)));
            } else {
                totals[idx] += 9.0;
            }
            let doc = CountDoc::new(CountKind::Good, ea(totals[idx]), at);
            batch.push((topic[1].as_str(), json(&doc)));
        }
        apply_all(&mut engine, batch)?;
    }
    let rss_after = rss_bytes();
    let entries_per_asset = engine.n_entries() as f64 / options.assets.max(1) as f64;
    let (cpu_before, wall_before) = (thread_cpu_ns(), Instant::now());
    let snapshot = engine.snapshot();
    let snapshot_ms = cpu_since(cpu_before, wall_before) as f64 / 1e6;
    let (cpu_before, wall_before) = (thread_cpu_ns(), Instant::now());
    let restored = Engine::restore(engine.settings().clone(), &snapshot)
        .map_err(|err| OeeBenchError::Input(format!("restoring the snapshot: {err}")))?;
    let restore_ms = cpu_since(cpu_before, wall_before) as f64 / 1e6;
    if restored.watermark() != engine.watermark() || restored.n_entries() != engine.n_entries() {
        return Err(OeeBenchError::Input(
            "the restored engine differs from the one snapshotted".to_owned(),
        ));
    }
    drop(restored);
    let snapshot_bytes = snapshot.len();
    drop(snapshot);
    let as_of = engine.watermark().unwrap_or(t0);
    // The kernel's CPU clock moves in scheduler ticks: repeat until it has moved 200 ms (or 100 times).
    let (cpu_before, wall_before) = (thread_cpu_ns(), Instant::now());
    let mut current = Vec::new();
    let mut n_runs = 0_u32;
    while n_runs < 100 && (n_runs == 0 || cpu_since(cpu_before, wall_before) < 200_000_000) {
        current = engine.current(Some(as_of));
        n_runs += 1;
    }
    let current_all_ms = cpu_since(cpu_before, wall_before) as f64 / 1e6 / f64::from(n_runs);
    let scopes = engine.scopes().len();
    if current.is_empty() {
        return Err(OeeBenchError::Input("no current figures".to_owned()));
    }
    Ok(EngineFigures {
        inputs,
        inputs_per_s: inputs as f64 / (cpu_ns as f64 / 1e9).max(1e-9),
        memory_per_asset_bytes: rss_after.saturating_sub(rss_before) as f64
            / options.assets.max(1) as f64,
        entries_per_asset,
        snapshot_bytes,
        snapshot_ms,
        restore_ms,
        snapshot_every_inputs,
        scopes,
        current_all_ms,
    })
}

struct ServiceFigures {
    latency_ms: (f64, f64, f64, f64),
    inputs_per_s: f64,
}

async fn service_figures(options: &OeeBenchOptions) -> Result<ServiceFigures, OeeBenchError> {
    use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Metrics, UnsClient};
    use uns_service::{
        BrokerEndpoint, ConfigEnv, Configured, Health, RestartPolicy, Routes, Runtime,
        RuntimeOptions, Service,
    };

    let setup =
        |what: &str, err: &dyn std::fmt::Display| OeeBenchError::Setup(format!("{what}: {err}"));
    let dir = tempfile::Builder::new()
        .prefix("uns-bench-oee")
        .tempdir_in(&options.dir)
        .map_err(|err| setup("temporary directory", &err))?;
    let broker = uns_broker::start(uns_broker::BrokerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ws_listen: None,
        data_dir: dir.path().join("broker"),
        ..Default::default()
    })
    .await
    .map_err(|err| setup("broker", &err))?;
    let url = BrokerUrl::new("127.0.0.1", broker.mqtt_addr().port());
    let config: OeeConfig = toml::from_str(
        "publish_interval_s = 1\nsites = []\nlines = []\ndefault_calendar = \"day\"\n\
         [calendars.day]\nshifts = [{ name = \"day\", start = \"00:00\", end = \"00:00\" }]\n",
    )
    .map_err(|err| setup("config", &err))?;
    let env = ConfigEnv {
        demo: false,
        data_dir: dir.path().join("oee"),
        http_listen: ([127, 0, 0, 1], 0).into(),
    };
    let oee = uns_oee::Oee::configure(config, &env).map_err(|err| setup("configure", &err))?;
    let runtime = Runtime::start(
        RuntimeOptions {
            broker: BrokerEndpoint {
                url: url.clone(),
                credentials: None,
            },
            data_dir: dir.path().join("oee"),
            restart: RestartPolicy::Exit,
            stop_grace: Duration::from_secs(2),
            health: Health::default(),
            metrics: Metrics::new(),
            routes: Routes::default(),
        },
        vec![Configured::new(oee)],
    )
    .await
    .map_err(|err| setup("service", &err))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (plc, mut inbox, _) = UnsClient::start(
        ClientOptions::new(url, "bench-plc").map_err(|err| setup("client", &err))?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    let deadline = Duration::from_secs(60);
    plc.wait_connected(deadline)
        .await
        .map_err(|err| setup("client connect", &err))?;
    let cell = location("acme/bench/oee/line-1/cell-1")?;
    let at = |class: Class| UnsTopic::located(cell.clone(), class);
    let current = at(Class::OeeCurrent(OeePeriodKind::Hour));
    plc.subscribe(&uns_model::topic::TopicFilter::under(&cell))
        .await
        .map_err(|err| setup("subscribe", &err))?;
    let publish_err =
        |err: uns_client::ClientError| OeeBenchError::Setup(format!("publish: {err}"));
    let now = || chrono::Utc::now().timestamp_millis();
    plc.publish(&at(Class::Meta), &meta_doc(3600.0))
        .await
        .map_err(publish_err)?;
    plc.publish(
        &at(Class::State),
        &state_doc(now(), StateCategory::Running, "Execute"),
    )
    .await
    .map_err(publish_err)?;
    let current_text = current.to_string();
    // The next current document that satisfies `accept`.
    async fn wait_for(
        inbox: &mut uns_client::Inbox,
        topic: &str,
        accept: impl Fn(&OeeResult) -> bool,
        deadline: Duration,
    ) -> Result<(), OeeBenchError> {
        tokio::time::timeout(deadline, async {
            while let Some(message) = inbox.recv().await {
                if message.topic != topic {
                    continue;
                }
                if let Ok(result) = uns_model::payload::decode::<OeeResult>(&message.payload)
                    && accept(&result)
                {
                    return Ok(());
                }
            }
            Err(OeeBenchError::Timeout(
                "the client's inbox closed".to_owned(),
            ))
        })
        .await
        .map_err(|_| OeeBenchError::Timeout(format!("no matching document on {topic}")))?
    }
    wait_for(&mut inbox, &current_text, |_| true, deadline).await?;

    let mut latencies = Vec::with_capacity(options.latency_samples);
    for sample in 0..options.latency_samples {
        // Right after a current document the next tick is a whole interval away: start each sample
        // at a different offset into the interval (0, 0.38, 0.76, 0.14 ... s) so the figures show
        // the spread a state change at a random time sees.
        tokio::time::sleep(Duration::from_millis((sample as u64 * 379) % 1000)).await;
        let reason = format!("bench-stop-{sample}");
        let started = Instant::now();
        plc.publish(
            &at(Class::State),
            &state_doc(now() - 1, StateCategory::UnplannedDown, &reason),
        )
        .await
        .map_err(publish_err)?;
        wait_for(
            &mut inbox,
            &current_text,
            |result| result.losses.iter().any(|loss| loss.reason == reason),
            deadline,
        )
        .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        plc.publish(
            &at(Class::State),
            &state_doc(now(), StateCategory::Running, "Execute"),
        )
        .await
        .map_err(publish_err)?;
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |quantile: f64| {
        let idx = ((latencies.len() as f64 - 1.0) * quantile).round() as usize;
        latencies.get(idx).copied().unwrap_or(0.0)
    };
    let latency_ms = (pick(0.0), pick(0.5), pick(0.9), pick(1.0));

    // Throughput: a counter's baseline, then `service_inputs` totals 1 ms apart in event time.
    let base = now();
    let count = at(Class::Count(CountKind::Good));
    plc.publish(&count, &CountDoc::new(CountKind::Good, ea(0.0), base))
        .await
        .map_err(publish_err)?;
    wait_for(&mut inbox, &current_text, |_| true, deadline).await?;
    let started = Instant::now();
    for idx in 1..=options.service_inputs {
        let doc = CountDoc::new(CountKind::Good, ea(idx as f64), base + idx as i64);
        plc.publish(&count, &doc).await.map_err(publish_err)?;
    }
    let last = options.service_inputs as f64;
    wait_for(
        &mut inbox,
        &current_text,
        |result| result.counts.good.qty >= last,
        Duration::from_secs(600),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    runtime.stop().await;
    stop.cancel();
    Ok(ServiceFigures {
        latency_ms,
        inputs_per_s: options.service_inputs as f64 / elapsed.max(1e-9),
    })
}
