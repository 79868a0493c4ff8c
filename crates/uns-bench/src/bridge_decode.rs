//! Bridge decode + map throughput on one core: [`run_bridge_decode`].
//!
//! The corpus is what a plant of [`DecodeOptions::nodes`] edge nodes × `devices_per_node` devices ×
//! `metrics_per_device` metrics sends once it is born: DDATA by alias, report by exception, encoded by
//! our own edge node session ([`uns_sparkplug::edge::EdgeNode`]) with the metric mix of `uns sim`
//! (`State/Code` Int32, `State/Name` String, two UInt64 counters, a Float with a unit, Doubles). The
//! messages are fed on the calling thread, in arrival order (node by node, round robin), through the
//! same code the bridge's service loop runs for each Sparkplug message:
//!
//! 1. `decode`: [`uns_sparkplug::decode`] alone, the protobuf codec (the floor of the path);
//! 2. `decode + host`: [`HostSession::handle`] (decode, seq check, alias → name/datatype/unit);
//! 3. `decode + host + map`: then [`Bridge::apply`] (ISA-95 location, `_tag` topic, `TagValue` JSON
//!    bytes, `_state`/`_count` documents): the figure the goal (≥ 1M metrics/s) is about.
//!
//! Only MQTT I/O is left out. Each stage gets a fresh session that has seen the births (not timed).
//! Every node's corpus is a multiple of 256 messages so its `seq` runs on without a gap when the corpus
//! is replayed; a replay repeats timestamps, which neither the host nor the bridge checks.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;
use uns_scada_bridge::{Bridge, BridgeConfig, BridgeCounters, Mapping, Publication};
use uns_sparkplug::edge::{DeviceDef, EdgeNode, MetricDef};
use uns_sparkplug::host::{HostConfig, HostEvent, HostSession, Incoming, Leniency, Now, Qos};
use uns_sparkplug::{PropertySet, PropertyValue, Value};

use crate::report::MachineInfo;

/// Messages per edge node in the corpus: a multiple of 256, so `seq` (mod 256) continues across replays.
const MESSAGES_PER_NODE: usize = 256;
/// Metrics of the `uns sim` mix before the `Sim/Signal/{k}` Doubles.
const STANDARD_METRICS: usize = 7;
/// A DDATA carries a new `State/Code` (and `State/Name`) once in this many messages per device.
const STATE_CHANGE_EVERY: usize = 50;
/// The wall-clock time of the first sample (2026-01-01T00:00:00Z), so runs are reproducible.
const START_MS: u64 = 1_767_225_600_000;

/// Knobs of [`run_bridge_decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Edge nodes in the corpus.
    pub nodes: usize,
    /// Devices per edge node.
    pub devices_per_node: usize,
    /// Metrics per device (at least the 7 of the `uns sim` mix).
    pub metrics_per_device: usize,
    /// How long each stage replays the corpus.
    pub duration: Duration,
}

impl Default for DecodeOptions {
    /// The e2e scale of issue 4: 100 nodes × 10 devices × 50 metrics, 5 s per stage.
    fn default() -> Self {
        Self {
            nodes: 100,
            devices_per_node: 10,
            metrics_per_device: 50,
            duration: Duration::from_secs(5),
        }
    }
}

/// One stage of the path, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeStage {
    /// What the stage runs, e.g. `decode + host + map`.
    pub name: &'static str,
    /// DDATA messages processed.
    pub messages: u64,
    /// Metrics in those messages.
    pub metrics: u64,
    /// UNS publications produced (0 for the stages without the bridge).
    pub publications: u64,
    /// JSON bytes produced.
    pub json_bytes: u64,
    /// Time spent.
    pub elapsed: Duration,
}

impl DecodeStage {
    /// Metrics per second.
    pub fn metrics_per_second(&self) -> f64 {
        self.metrics as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// What [`run_bridge_decode`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeReport {
    /// When the run finished, UTC.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The options of the run.
    pub options: DecodeOptions,
    /// DDATA messages in the corpus.
    pub corpus_messages: usize,
    /// Metrics in the corpus.
    pub corpus_metrics: usize,
    /// Mean DDATA payload size in bytes.
    pub mean_payload_bytes: f64,
    /// The stages, cheapest first.
    pub stages: Vec<DecodeStage>,
}

/// The goal for the full path, metrics per second on one core.
pub const DECODE_GOAL: f64 = 1_000_000.0;

impl DecodeReport {
    /// The full path's figure (the last stage), metrics per second.
    pub fn full_path_rate(&self) -> f64 {
        self.stages
            .last()
            .map_or(0.0, DecodeStage::metrics_per_second)
    }

    /// The report as markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let opts = &self.options;
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(md, "## Bridge decode + map, one core\n");
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(md, "- Machine: {}; one thread", self.machine.describe());
        let _ = writeln!(
            md,
            "- Corpus: {} nodes × {} devices × {} metrics, {} DDATA ({} metrics, mean payload {:.0} bytes), \
             replayed for {} s per stage",
            opts.nodes,
            opts.devices_per_node,
            opts.metrics_per_device,
            self.corpus_messages,
            self.corpus_metrics,
            self.mean_payload_bytes,
            opts.duration.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "- Baseline: the issue's goal of {:.0} metrics/s for the full path; the `decode` stage \
             is the protobuf codec alone, the floor any bridge on this codec pays\n",
            DECODE_GOAL
        );
        let _ = writeln!(
            md,
            "| stage | metrics/s | ns/metric | DDATA/s | publications | ratio to goal |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for stage in &self.stages {
            let rate = stage.metrics_per_second();
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.0} | {} | {:.2} |",
                stage.name,
                rate,
                1e9 / rate.max(f64::EPSILON),
                stage.messages as f64 / stage.elapsed.as_secs_f64().max(f64::EPSILON),
                stage.publications,
                rate / DECODE_GOAL
            );
        }
        md
    }
}

/// Why [`run_bridge_decode`] failed: the benchmark's own setup, so each is a bug in it or in the
/// crates it drives, not a measurement.
#[derive(Debug, thiserror::Error)]
pub enum DecodeBenchError {
    /// An option is out of range.
    #[error("invalid benchmark option: {0}")]
    InvalidOptions(&'static str),
    /// The edge node session refused to build the corpus.
    #[error("building the corpus: {0}")]
    Corpus(#[from] uns_sparkplug::edge::EdgeError),
    /// The default bridge configuration did not validate.
    #[error("bridge configuration: {0}")]
    Config(#[from] uns_scada_bridge::ConfigError),
    /// The host or the bridge rejected a message of the corpus, so the figure would not be the
    /// normal path.
    #[error("the {stage} stage rejected corpus input: {detail}")]
    Rejected {
        /// The stage.
        stage: &'static str,
        /// The first rejection.
        detail: String,
    },
}

/// One encoded DDATA of the corpus.
struct Message {
    topic: String,
    payload: Vec<u8>,
    n_metrics: usize,
}

/// Births (fed untimed) and data (timed), in arrival order.
struct Corpus {
    births: Vec<Message>,
    data: Vec<Message>,
}

/// Builds the corpus and runs the three stages on the calling thread. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn run_bridge_decode(opts: &DecodeOptions) -> Result<DecodeReport, DecodeBenchError> {
    if opts.nodes == 0 || opts.devices_per_node == 0 || opts.duration.is_zero() {
        return Err(DecodeBenchError::InvalidOptions(
            "nodes, devices_per_node and duration must be positive",
        ));
    }
    if opts.metrics_per_device < STANDARD_METRICS {
        return Err(DecodeBenchError::InvalidOptions(
            "metrics_per_device must be at least 7 (the uns sim mix)",
        ));
    }
    let corpus = build_corpus(opts)?;
    let corpus_metrics: usize = corpus.data.iter().map(|message| message.n_metrics).sum();
    let payload_bytes: usize = corpus
        .data
        .iter()
        .map(|message| message.payload.len())
        .sum();
    let stages = vec![
        stage_decode(&corpus, opts.duration)?,
        stage_path(&corpus, opts.duration, false)?,
        stage_path(&corpus, opts.duration, true)?,
    ];
    Ok(DecodeReport {
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        machine: MachineInfo::current(),
        options: opts.clone(),
        corpus_messages: corpus.data.len(),
        corpus_metrics,
        mean_payload_bytes: payload_bytes as f64 / corpus.data.len().max(1) as f64,
        stages,
    })
}

fn metric_defs(metrics_per_device: usize) -> Vec<MetricDef> {
    let unit = |unit: &str| PropertySet {
        properties: vec![(
            "engUnit".to_owned(),
            PropertyValue {
                datatype: Some(uns_sparkplug::DataType::String),
                value: Some(Value::String(unit.to_owned())),
            },
        )],
    };
    let mut defs = vec![
        MetricDef::new("State/Code", Value::Int32(6)),
        MetricDef::new("State/Name", Value::String("Execute".to_owned())),
        MetricDef::new("Count/Good", Value::UInt64(0)),
        MetricDef::new("Count/Scrap", Value::UInt64(0)),
        MetricDef::new("Process/Temperature", Value::Float(20.0)).with_properties(unit("CEL")),
        MetricDef::new("Process/Pressure", Value::Double(1.0)).with_properties(unit("BAR")),
        MetricDef::new("Speed", Value::Double(0.0)),
    ];
    for signal_idx in 1..=metrics_per_device - STANDARD_METRICS {
        defs.push(MetricDef::new(
            format!("Sim/Signal/{signal_idx}"),
            Value::Double(0.0),
        ));
    }
    defs
}

/// The values of device sample `round` (deterministic; everything but the state changes every time).
fn sample(round: usize, device_idx: usize, metrics_per_device: usize) -> Vec<(String, Value)> {
    let x = (round * 31 + device_idx * 7) as f64;
    let state_change = round / STATE_CHANGE_EVERY;
    let (code, name) = if state_change.is_multiple_of(2) {
        (6, "Execute")
    } else {
        (5, "Suspended")
    };
    let mut values = vec![
        ("State/Code".to_owned(), Value::Int32(code)),
        ("State/Name".to_owned(), Value::String(name.to_owned())),
        ("Count/Good".to_owned(), Value::UInt64(round as u64 * 3 + 1)),
        ("Count/Scrap".to_owned(), Value::UInt64(round as u64 + 1)),
        (
            "Process/Temperature".to_owned(),
            Value::Float(20.0 + (x * 0.01).sin() as f32),
        ),
        (
            "Process/Pressure".to_owned(),
            Value::Double(1.0 + (x * 0.02).cos()),
        ),
        ("Speed".to_owned(), Value::Double(600.0 + x * 0.001)),
    ];
    for signal_idx in 1..=metrics_per_device - STANDARD_METRICS {
        values.push((
            format!("Sim/Signal/{signal_idx}"),
            Value::Double(x * 0.5 + signal_idx as f64 * 0.25 + 0.125),
        ));
    }
    values
}

fn build_corpus(opts: &DecodeOptions) -> Result<Corpus, DecodeBenchError> {
    let mut nodes = Vec::with_capacity(opts.nodes);
    let mut births = Vec::new();
    for node_idx in 1..=opts.nodes {
        let devices = (1..=opts.devices_per_node)
            .map(|device_idx| {
                DeviceDef::new(
                    format!("device-{device_idx:03}"),
                    metric_defs(opts.metrics_per_device),
                )
            })
            .collect();
        let mut node = EdgeNode::new("bench", format!("node-{node_idx:04}"), Vec::new(), devices)?;
        for birth in node.birth(START_MS)? {
            births.push(Message {
                topic: birth.topic.to_string(),
                payload: birth.payload,
                n_metrics: 0,
            });
        }
        nodes.push(node);
    }
    let mut data = Vec::with_capacity(opts.nodes * MESSAGES_PER_NODE);
    for message_idx in 0..MESSAGES_PER_NODE {
        let device_idx = message_idx % opts.devices_per_node;
        let round = message_idx / opts.devices_per_node + 1;
        let device = format!("device-{:03}", device_idx + 1);
        let now_ms = START_MS + round as u64 * 1_000;
        for node in &mut nodes {
            let values = sample(round, device_idx, opts.metrics_per_device);
            let n_values = values.len();
            let Some(ddata) = node.data(Some(&device), values, now_ms)? else {
                continue;
            };
            let n_metrics = uns_sparkplug::decode(&ddata.payload)
                .map_or(n_values, |payload| payload.metrics.len());
            data.push(Message {
                topic: ddata.topic.to_string(),
                payload: ddata.payload,
                n_metrics,
            });
        }
    }
    Ok(Corpus { births, data })
}

/// Stage 1: the protobuf codec alone.
fn stage_decode(corpus: &Corpus, duration: Duration) -> Result<DecodeStage, DecodeBenchError> {
    const NAME: &str = "decode";
    let mut stage = new_stage(NAME);
    let start = Instant::now();
    let deadline = start + duration;
    while Instant::now() < deadline {
        for message in &corpus.data {
            match uns_sparkplug::decode(&message.payload) {
                Ok(payload) => stage.metrics += payload.metrics.len() as u64,
                Err(error) => {
                    return Err(DecodeBenchError::Rejected {
                        stage: NAME,
                        detail: error.to_string(),
                    });
                }
            }
            stage.messages += 1;
        }
    }
    stage.elapsed = start.elapsed();
    Ok(stage)
}

/// Stages 2 and 3: the host session, and with `map` the bridge too.
fn stage_path(
    corpus: &Corpus,
    duration: Duration,
    map: bool,
) -> Result<DecodeStage, DecodeBenchError> {
    let name = if map {
        "decode + host + map"
    } else {
        "decode + host"
    };
    let config = BridgeConfig::default();
    let host_config = host_config(&config);
    let mapping = Mapping::try_from(config)?;
    let mut host = match HostSession::new(host_config) {
        Ok(host) => host,
        Err(error) => {
            return Err(DecodeBenchError::Rejected {
                stage: name,
                detail: error.to_string(),
            });
        }
    };
    let service = uns_model::topic::slug(uns_scada_bridge::SERVICE);
    let mut bridge = Bridge::new(mapping, service, BridgeCounters::default());
    let clock = Instant::now();
    let now = || Now {
        monotonic: clock.elapsed(),
        utc_ms: START_MS,
    };
    host.connect(START_MS);
    for birth in &corpus.births {
        let events = host.handle(incoming(birth), now());
        check_events(name, &events)?;
        bridge.apply(events, None, START_MS);
    }
    let mut stage = new_stage(name);
    let start = Instant::now();
    let deadline = start + duration;
    while Instant::now() < deadline {
        for message in &corpus.data {
            let events = host.handle(incoming(message), now());
            stage.messages += 1;
            if !map {
                for event in &events {
                    match event {
                        HostEvent::Metric(_) => stage.metrics += 1,
                        HostEvent::Rejected(rejected) => return Err(rejection(name, rejected)),
                        _ => {}
                    }
                }
                continue;
            }
            let n_metrics = events
                .iter()
                .filter(|event| matches!(event, HostEvent::Metric(_)))
                .count();
            stage.metrics += n_metrics as u64;
            for publication in
                bridge.apply(events, Some((&message.topic, &message.payload)), START_MS)
            {
                match publication {
                    Publication::Uns { payload, .. } | Publication::Historical { payload, .. } => {
                        stage.publications += 1;
                        stage.json_bytes += payload.len() as u64;
                    }
                    Publication::Error { report, .. } => {
                        return Err(DecodeBenchError::Rejected {
                            stage: name,
                            detail: report.reason,
                        });
                    }
                    Publication::Sparkplug(outgoing) => {
                        return Err(DecodeBenchError::Rejected {
                            stage: name,
                            detail: format!("unexpected Sparkplug message on {}", outgoing.topic),
                        });
                    }
                }
            }
        }
    }
    stage.elapsed = start.elapsed();
    Ok(stage)
}

/// The host settings `Mapping::try_from` derives from `config` (the bridge keeps its copy
/// crate-private), field for field, so the session runs with what `uns scada-bridge` runs.
fn host_config(config: &BridgeConfig) -> HostConfig {
    HostConfig {
        reorder_timeout: Duration::from_millis(config.reorder_timeout_ms),
        rebirth_interval: Duration::from_millis(config.rebirth_interval_ms),
        max_payload_bytes: config.max_payload_bytes,
        max_birth_metrics: config.max_birth_metrics,
        max_node_metrics: config.max_node_metrics,
        max_node_bytes: config.max_node_bytes,
        max_nodes: config.max_nodes,
        leniency: if config.strict {
            Leniency::strict()
        } else {
            Leniency::default()
        },
        ..HostConfig::new(config.host_id.clone())
    }
}

fn incoming(message: &Message) -> Incoming<'_> {
    Incoming {
        topic: &message.topic,
        payload: &message.payload,
        qos: Qos::AtMostOnce,
    }
}

fn check_events(stage: &'static str, events: &[HostEvent]) -> Result<(), DecodeBenchError> {
    for event in events {
        if let HostEvent::Rejected(rejected) = event {
            return Err(rejection(stage, rejected));
        }
    }
    Ok(())
}

fn rejection(stage: &'static str, rejected: &uns_sparkplug::host::Rejected) -> DecodeBenchError {
    DecodeBenchError::Rejected {
        stage,
        detail: format!("{}: {}", rejected.topic, rejected.reason),
    }
}

fn new_stage(name: &'static str) -> DecodeStage {
    DecodeStage {
        name,
        messages: 0,
        metrics: 0,
        publications: 0,
        json_bytes: 0,
        elapsed: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> DecodeOptions {
        DecodeOptions {
            nodes: 2,
            devices_per_node: 3,
            metrics_per_device: 10,
            duration: Duration::from_millis(20),
        }
    }

    #[test]
    fn corpus_keeps_seq_continuous_and_carries_every_changed_metric() {
        let corpus = build_corpus(&small()).unwrap();
        // 2 NBIRTH + 6 DBIRTH, and 256 DDATA per node (every sample changes something).
        assert_eq!(corpus.births.len(), 2 + 6);
        assert_eq!(corpus.data.len(), 2 * MESSAGES_PER_NODE);
        for message in &corpus.data {
            assert!(
                message.topic.starts_with("spBv1.0/bench/DDATA/node-000"),
                "{}",
                message.topic
            );
            // Everything but the state (8 of 10) changes each round; a state change adds 2.
            assert!(
                message.n_metrics == 8 || message.n_metrics == 10,
                "{} metrics",
                message.n_metrics
            );
        }
        let seqs: Vec<u64> = corpus
            .data
            .iter()
            .filter(|message| message.topic.contains("node-0001"))
            .map(|message| {
                uns_sparkplug::decode(&message.payload)
                    .unwrap()
                    .seq
                    .unwrap()
            })
            .collect();
        // Births took seq 0..=3 (NBIRTH + 3 DBIRTH), so data starts at 4 and wraps at 255.
        let expected: Vec<u64> = (0..MESSAGES_PER_NODE as u64)
            .map(|idx| (idx + 4) % 256)
            .collect();
        assert_eq!(seqs, expected);
    }

    #[test]
    fn every_stage_sees_every_metric_and_the_full_path_publishes_each() {
        let report = run_bridge_decode(&small()).unwrap();
        let names: Vec<&str> = report.stages.iter().map(|stage| stage.name).collect();
        assert_eq!(names, ["decode", "decode + host", "decode + host + map"]);
        for stage in &report.stages {
            assert!(stage.messages > 0, "{stage:?}");
            // Whole passes only: the metric count is a multiple of the corpus's.
            assert_eq!(
                stage.messages % report.corpus_messages as u64,
                0,
                "{stage:?}"
            );
            let passes = stage.messages / report.corpus_messages as u64;
            assert_eq!(stage.metrics, passes * report.corpus_metrics as u64);
        }
        let full = &report.stages[2];
        // One `_tag` per metric, plus `_state`, `_state/events` and `_count` documents.
        assert!(full.publications > full.metrics, "{full:?}");
        assert!(full.json_bytes > full.publications * 50, "{full:?}");
        let markdown = report.to_markdown();
        assert_eq!(
            markdown
                .lines()
                .filter(|line| line.starts_with("| "))
                .count(),
            4,
            "{markdown}"
        );
    }

    #[test]
    fn too_few_metrics_is_refused() {
        let opts = DecodeOptions {
            metrics_per_device: 6,
            ..small()
        };
        assert!(matches!(
            run_bridge_decode(&opts),
            Err(DecodeBenchError::InvalidOptions(_))
        ));
    }
}
