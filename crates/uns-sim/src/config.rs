//! What to simulate: [`SimConfig`] (serde, `Default` = the demo plant) and its expansion into edge nodes
//! and devices.
//!
//! The demo plant matches `crates/uns-meta/src/demo-plant.toml`: Sparkplug group `acme-berlin`, one edge
//! node per line (`line-1`: filler, capper, labeler at 12 000 bottles/h; `line-2`: filler at 18 000 cans/h
//! and a case packer at 750 cases/h). With [`SimConfig::scale`] set, the lines are replaced by generated
//! nodes `node-0001..` with devices `device-001..` for benchmarks.

use serde::{Deserialize, Serialize};

use crate::SimError;

/// The simulation settings. In a config file every field is optional; missing ones take the demo values.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The Sparkplug group id of every edge node.
    pub group: String,
    /// The random seed: the same seed gives the same sequence of values (`--seed`).
    pub seed: u64,
    /// Time compression (`--speed`): simulated seconds per real second. 60 makes a 15-minute changeover
    /// last 15 real seconds. Message timestamps stay real time.
    pub speed: f64,
    /// Samples per second of every device (real time); each sample advances the model by
    /// `speed / rate_hz` simulated seconds and publishes what changed.
    pub rate_hz: f64,
    /// The lines (edge nodes) of the plant, ignored when `scale` is set.
    pub lines: Vec<LineConfig>,
    /// Generated plant size for benchmarks; replaces `lines`.
    pub scale: Option<ScaleConfig>,
    /// Wait for this Sparkplug primary host application (`spBv1.0/STATE/{id}` online) before births and
    /// data; while it is offline, data is stored and forwarded later. `None`: publish right after CONNACK.
    pub primary_host: Option<String>,
    /// Pause between reconnect attempts, in milliseconds.
    pub reconnect_delay_ms: u64,
    /// MQTT keep-alive, in seconds (at least 1).
    pub keep_alive_s: u64,
    /// MQTT client ids are `{client_id_prefix}-{edge node id}`.
    pub client_id_prefix: String,
}

/// One production line, simulated as one Sparkplug edge node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// The edge node id (e.g. `line-1`).
    pub edge: String,
    /// The cells of the line, each a Sparkplug device.
    pub cells: Vec<CellConfig>,
}

/// One work cell, simulated as one Sparkplug device.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CellConfig {
    /// The device id (e.g. `filler`).
    pub device: String,
    /// What kind of machine it is (sets temperatures, pressures and reject rates).
    pub kind: CellKind,
    /// Ideal rate in parts per hour.
    pub ideal_per_hour: f64,
    /// Extra `Sim/Signal/{k}` metrics (Double, change at every sample).
    #[serde(default)]
    pub extra_metrics: usize,
}

/// The machine kinds the simulator knows.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    /// Bottle or can filler.
    Filler,
    /// Capper.
    Capper,
    /// Labeler (hot-melt glue).
    Labeler,
    /// Case packer (hot-melt glue).
    CasePacker,
    /// Anything else.
    Generic,
}

/// A generated plant for benchmarks: `nodes` × `devices_per_node` devices with `metrics_per_device`
/// metrics each (the 7 standard ones, then `Sim/Signal/{k}` up to the count).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// Number of edge nodes.
    pub nodes: usize,
    /// Devices per edge node.
    pub devices_per_node: usize,
    /// Metrics per device (at least the 7 standard ones are always there).
    pub metrics_per_device: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        let cell = |device: &str, kind, ideal_per_hour| CellConfig {
            device: device.to_owned(),
            kind,
            ideal_per_hour,
            extra_metrics: 0,
        };
        SimConfig {
            group: "acme-berlin".to_owned(),
            seed: 1,
            speed: 1.0,
            rate_hz: 1.0,
            lines: vec![
                LineConfig {
                    edge: "line-1".to_owned(),
                    cells: vec![
                        cell("filler", CellKind::Filler, 12_000.0),
                        cell("capper", CellKind::Capper, 12_000.0),
                        cell("labeler", CellKind::Labeler, 12_000.0),
                    ],
                },
                LineConfig {
                    edge: "line-2".to_owned(),
                    cells: vec![
                        cell("filler", CellKind::Filler, 18_000.0),
                        cell("case-packer", CellKind::CasePacker, 750.0),
                    ],
                },
            ],
            scale: None,
            primary_host: None,
            reconnect_delay_ms: 1_000,
            keep_alive_s: 10,
            client_id_prefix: "uns-sim".to_owned(),
        }
    }
}

/// One edge node to run, expanded from the config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeSpec {
    pub(crate) edge: String,
    pub(crate) cells: Vec<CellConfig>,
}

impl SimConfig {
    /// Checks the numbers; ids are checked when the edge nodes are built.
    pub fn validate(&self) -> Result<(), SimError> {
        let invalid = |reason: String| Err(SimError::InvalidConfig(reason));
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return invalid(format!("speed must be > 0, got {}", self.speed));
        }
        if !(self.rate_hz.is_finite() && self.rate_hz > 0.0 && self.rate_hz <= 1_000.0) {
            return invalid(format!(
                "rate_hz must be in (0, 1000], got {}",
                self.rate_hz
            ));
        }
        if self.keep_alive_s == 0 {
            return invalid("keep_alive_s must be at least 1".to_owned());
        }
        let nodes = self.nodes();
        if nodes.is_empty() || nodes.iter().all(|node| node.cells.is_empty()) {
            return invalid("the plant has no devices".to_owned());
        }
        for cell in nodes.iter().flat_map(|node| &node.cells) {
            if !(cell.ideal_per_hour.is_finite() && cell.ideal_per_hour >= 0.0) {
                return invalid(format!(
                    "{}: ideal_per_hour must be >= 0, got {}",
                    cell.device, cell.ideal_per_hour
                ));
            }
        }
        let mut edges: Vec<&str> = nodes.iter().map(|node| node.edge.as_str()).collect();
        edges.sort_unstable();
        if let Some(pair) = edges.windows(2).find(|pair| pair[0] == pair[1]) {
            return invalid(format!("edge node {:?} appears twice", pair[0]));
        }
        Ok(())
    }

    /// The time between two samples of a device (`rate_hz` is validated to be in (0, 1000]).
    pub(crate) fn period(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(1.0 / self.rate_hz)
            .unwrap_or(std::time::Duration::from_secs(1))
    }

    /// The edge nodes to run: the lines, or the generated plant when `scale` is set.
    pub(crate) fn nodes(&self) -> Vec<NodeSpec> {
        let Some(scale) = &self.scale else {
            return self
                .lines
                .iter()
                .map(|line| NodeSpec {
                    edge: line.edge.clone(),
                    cells: line.cells.clone(),
                })
                .collect();
        };
        const KINDS: [(CellKind, f64); 4] = [
            (CellKind::Filler, 12_000.0),
            (CellKind::Capper, 12_000.0),
            (CellKind::Labeler, 12_000.0),
            (CellKind::CasePacker, 750.0),
        ];
        let extra_metrics = scale
            .metrics_per_device
            .saturating_sub(crate::plant::STANDARD_METRICS.len());
        (1..=scale.nodes)
            .map(|node_idx| NodeSpec {
                edge: format!("node-{node_idx:04}"),
                cells: (1..=scale.devices_per_node)
                    .map(|device_idx| {
                        let (kind, ideal_per_hour) = KINDS[(device_idx - 1) % KINDS.len()];
                        CellConfig {
                            device: format!("device-{device_idx:03}"),
                            kind,
                            ideal_per_hour,
                            extra_metrics,
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}
