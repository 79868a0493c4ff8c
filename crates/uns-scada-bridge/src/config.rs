//! The bridge's configuration: [`BridgeConfig`] as written (serde, the `[scada_bridge]` section of the
//! config file; `Default` fits the demo plant) and [`Mapping`], the validated form built by
//! [`Mapping::try_from`] without any I/O.
//!
//! Where a Sparkplug metric lands:
//! 1. The node `{group, edge}` is looked up in [`BridgeConfig::nodes`]; its `location` holds the node's own
//!    metrics, and a device goes to `devices[device]` if listed, else to `{location}/{slug(device)}`.
//! 2. An unmapped node goes to `{enterprise}/{site}/{slug(group)}/{slug(edge)}[/{slug(device)}]`, so
//!    nothing is invisible; mapping it later moves it.
//! 3. The metric name is split at `/` and each part slugged: `Process/Temp 1` →
//!    `_tag/process/temp-1`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uns_model::payload::{Mode, StateCategory};
use uns_model::topic::{CountKind, Location, Segment, slug};
use uns_sparkplug::host::{HostConfig, Leniency};

/// The example configuration shipped in `deploy/scada-bridge.toml` (tested to parse).
pub const EXAMPLE_TOML: &str = include_str!("../../../deploy/scada-bridge.toml");

/// The `[scada_bridge]` section of the config file, as written. Every field is optional.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// The Sparkplug host id: the bridge publishes `spBv1.0/STATE/{host_id}`.
    pub host_id: String,
    /// MQTT client id of the Sparkplug connection.
    pub client_id: String,
    /// Enterprise segment of the default location of unmapped nodes.
    pub enterprise: String,
    /// Site segment of the default location of unmapped nodes.
    pub site: String,
    /// Reorder timeout for out-of-order sequence numbers, in ms.
    pub reorder_timeout_ms: u64,
    /// Shortest time between two rebirth requests to one edge node, in ms.
    pub rebirth_interval_ms: u64,
    /// Larger Sparkplug payloads are rejected (to `_errors`).
    pub max_payload_bytes: usize,
    /// Births with more metrics are rejected.
    pub max_birth_metrics: usize,
    /// An edge node's births in effect (NBIRTH and every DBIRTH) may declare this many metrics
    /// together; a birth beyond it is rejected. Bounds the bridge's memory per node.
    pub max_node_metrics: usize,
    /// An edge node's births in effect may hold this many bytes of metric names and units together.
    pub max_node_bytes: usize,
    /// Edge nodes the bridge keeps state for; beyond it an NBIRTH of a new node is rejected and
    /// data from unknown nodes gets no rebirth request (made-up node ids cannot grow it).
    pub max_nodes: usize,
    /// The `_errors` rate limit: per edge node, the first rejection of a window of this many ms is
    /// reported at once and the rest in one summary at its end (0: report every one).
    pub error_window_ms: u64,
    /// Refuse every deviation from the Sparkplug spec instead of the documented leniencies.
    pub strict: bool,
    /// MQTT keep-alive of the Sparkplug connection, in seconds.
    pub keep_alive_s: u64,
    /// Metrics not published as tags: exact names, or prefixes ending in `*`.
    pub skip_metrics: Vec<String>,
    /// Where edge nodes and devices live in the ISA-95 tree.
    pub nodes: Vec<NodeMapping>,
    /// Which metric is the machine state, and how its codes map to state categories.
    pub state: StateConfig,
    /// Which metrics are the `_count/{good,scrap,rework,produced}` counters (metric names).
    pub counts: HashMap<CountKind, String>,
    /// Extra state maps, by name: raw code or name → category (`running`, `minor_stop`, ...).
    pub state_maps: BTreeMap<String, BTreeMap<String, StateCategory>>,
}

/// One edge node's place in the tree.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeMapping {
    /// Sparkplug group id.
    pub group: String,
    /// Edge node id.
    pub edge: String,
    /// Location of the node's own metrics, e.g. `acme/berlin/packaging/line-1`.
    pub location: String,
    /// Device id → location; unlisted devices go to `{location}/{slug(device)}`.
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
}

/// The state metric.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The metric whose value is the raw state code or name (matched by name or by slug).
    pub metric: String,
    /// A metric with the state's display name, attached to `_state` (optional).
    pub name_metric: Option<String>,
    /// A metric with the mode (PackML unit mode number or name); without one, the mode is `production`.
    pub mode_metric: Option<String>,
    /// The state map: `packml` (built in) or a key of [`BridgeConfig::state_maps`].
    pub map: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            metric: "State/Code".to_owned(),
            name_metric: Some("State/Name".to_owned()),
            mode_metric: None,
            map: "packml".to_owned(),
        }
    }
}

impl Default for BridgeConfig {
    /// The demo plant: group `acme-berlin`, edge nodes `line-1` and `line-2` on the two packaging lines,
    /// devices named like the cells; PackML state codes; `Count/Good` and `Count/Scrap`.
    fn default() -> Self {
        let line = |edge: &str| NodeMapping {
            group: "acme-berlin".to_owned(),
            edge: edge.to_owned(),
            location: format!("acme/berlin/packaging/{edge}"),
            devices: BTreeMap::new(),
        };
        Self {
            host_id: "scada-bridge".to_owned(),
            client_id: "uns-scada-bridge-sparkplug".to_owned(),
            enterprise: "acme".to_owned(),
            site: "berlin".to_owned(),
            reorder_timeout_ms: 2000,
            rebirth_interval_ms: 5000,
            max_payload_bytes: 1024 * 1024,
            max_birth_metrics: 100_000,
            max_node_metrics: 100_000,
            max_node_bytes: 8 * 1024 * 1024,
            max_nodes: 10_000,
            error_window_ms: 10_000,
            strict: false,
            keep_alive_s: 30,
            skip_metrics: vec!["bdSeq".to_owned(), "Node Control/*".to_owned()],
            nodes: vec![line("line-1"), line("line-2")],
            state: StateConfig::default(),
            counts: HashMap::from([
                (CountKind::Good, "Count/Good".to_owned()),
                (CountKind::Scrap, "Count/Scrap".to_owned()),
            ]),
            state_maps: BTreeMap::new(),
        }
    }
}

/// Why a [`BridgeConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text does not parse as a bridge config.
    #[error("scada-bridge config: {0}")]
    Toml(String),
    /// A location is not a valid UNS location.
    #[error("{what} location `{location}`: {reason}")]
    Location {
        /// Which node or device.
        what: String,
        /// The location as written.
        location: String,
        /// Why it does not parse.
        reason: String,
    },
    /// `enterprise` or `site` is not a valid location segment.
    #[error("default location segment `{0}` is not valid ([a-z0-9-_])")]
    Segment(String),
    /// A node is mapped twice.
    #[error("edge node {group}/{edge} is mapped twice")]
    Duplicate {
        /// Group id.
        group: String,
        /// Edge node id.
        edge: String,
    },
    /// The state map named in `[state] map` does not exist.
    #[error("unknown state map `{0}` (built in: packml)")]
    UnknownStateMap(String),
    /// The host id is not a valid Sparkplug id.
    #[error("host_id: {0}")]
    HostId(String),
}

/// Checks every location of `config` and names the first bad one by its key
/// (`nodes[1].location`, `nodes[0].devices.filler`), so an operator finds it in the file.
pub(crate) fn check_locations(config: &BridgeConfig) -> Result<(), uns_service::ConfigError> {
    for (idx, node) in config.nodes.iter().enumerate() {
        if let Err(err) = node.location.parse::<Location>() {
            return Err(uns_service::ConfigError::new(
                format!("nodes[{idx}].location"),
                format!("`{}` is not a valid location: {err}", node.location),
            ));
        }
        for (device, location) in &node.devices {
            if let Err(err) = location.parse::<Location>() {
                return Err(uns_service::ConfigError::new(
                    format!("nodes[{idx}].devices.{device}"),
                    format!("`{location}` is not a valid location: {err}"),
                ));
            }
        }
    }
    Ok(())
}

/// A mapping error with the key it is about.
pub(crate) fn keyed(err: &ConfigError, enterprise: &str) -> uns_service::ConfigError {
    let key = match err {
        ConfigError::Toml(_) => "",
        ConfigError::Location { .. } | ConfigError::Duplicate { .. } => "nodes",
        ConfigError::Segment(segment) if segment == enterprise => "enterprise",
        ConfigError::Segment(_) => "site",
        ConfigError::UnknownStateMap(_) => "state.map",
        ConfigError::HostId(_) => "host_id",
    };
    uns_service::ConfigError::new(key, err.to_string())
}

impl BridgeConfig {
    /// Parses the `[scada_bridge]` section's body.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError::Toml(err.to_string()))
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub(crate) host: HostConfig,
    pub(crate) client_id: String,
    pub(crate) keep_alive: Duration,
    pub(crate) default_root: Location,
    pub(crate) nodes: HashMap<(String, String), NodeTarget>,
    pub(crate) skip_exact: Vec<String>,
    pub(crate) skip_prefixes: Vec<String>,
    pub(crate) state_metric: String,
    pub(crate) state_name_metric: Option<String>,
    pub(crate) mode_metric: Option<String>,
    pub(crate) state_map: HashMap<String, StateCategory>,
    pub(crate) counts: Vec<(String, CountKind)>,
    pub(crate) error_window_ms: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct NodeTarget {
    pub(crate) location: Location,
    pub(crate) devices: HashMap<String, Location>,
}

impl TryFrom<BridgeConfig> for Mapping {
    type Error = ConfigError;

    fn try_from(config: BridgeConfig) -> Result<Self, ConfigError> {
        let parse = |what: String, location: &str| -> Result<Location, ConfigError> {
            location
                .parse()
                .map_err(|err: uns_model::topic::TopicError| ConfigError::Location {
                    what,
                    location: location.to_owned(),
                    reason: err.to_string(),
                })
        };
        let enterprise = Segment::new(&config.enterprise)
            .map_err(|_| ConfigError::Segment(config.enterprise.clone()))?;
        let site =
            Segment::new(&config.site).map_err(|_| ConfigError::Segment(config.site.clone()))?;
        let default_root = Location::enterprise_root(enterprise)
            .child(site)
            .map_err(|err| ConfigError::Location {
                what: "default".to_owned(),
                location: format!("{}/{}", config.enterprise, config.site),
                reason: err.to_string(),
            })?;
        let mut nodes = HashMap::new();
        for node in &config.nodes {
            let name = format!("node {}/{}", node.group, node.edge);
            let location = parse(name.clone(), &node.location)?;
            let mut devices = HashMap::new();
            for (device, device_location) in &node.devices {
                devices.insert(
                    device.clone(),
                    parse(format!("{name} device {device}"), device_location)?,
                );
            }
            let key = (node.group.clone(), node.edge.clone());
            if nodes
                .insert(key, NodeTarget { location, devices })
                .is_some()
            {
                return Err(ConfigError::Duplicate {
                    group: node.group.clone(),
                    edge: node.edge.clone(),
                });
            }
        }
        let state_map = match config.state_maps.get(&config.state.map) {
            Some(map) => map
                .iter()
                .map(|(code, category)| (normalize(code), *category))
                .collect(),
            None if config.state.map == "packml" => packml_map(),
            None => return Err(ConfigError::UnknownStateMap(config.state.map.clone())),
        };
        let (skip_prefixes, skip_exact): (Vec<String>, Vec<String>) = config
            .skip_metrics
            .iter()
            .cloned()
            .partition(|pattern| pattern.ends_with('*'));
        let host = HostConfig {
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
        };
        uns_sparkplug::topic::validate_id(uns_sparkplug::topic::IdKind::HostId, &host.host_id)
            .map_err(|err| ConfigError::HostId(err.to_string()))?;
        Ok(Self {
            host,
            client_id: config.client_id,
            keep_alive: Duration::from_secs(config.keep_alive_s.max(1)),
            default_root,
            nodes,
            skip_exact,
            skip_prefixes: skip_prefixes
                .into_iter()
                .map(|pattern| pattern.trim_end_matches('*').to_owned())
                .collect(),
            state_metric: config.state.metric,
            state_name_metric: config.state.name_metric,
            mode_metric: config.state.mode_metric,
            state_map,
            counts: config
                .counts
                .into_iter()
                .map(|(kind, metric)| (metric, kind))
                .collect(),
            error_window_ms: config.error_window_ms,
        })
    }
}

impl Mapping {
    /// The location of a node's (device `None`) or a device's metrics.
    pub fn location(&self, group: &str, edge: &str, device: Option<&str>) -> Location {
        if let Some(node) = self.nodes.get(&(group.to_owned(), edge.to_owned())) {
            return match device {
                None => node.location.clone(),
                Some(device) => match node.devices.get(device) {
                    Some(location) => location.clone(),
                    None => child_or_self(&node.location, device),
                },
            };
        }
        let node = child_or_self(&child_or_self(&self.default_root, group), edge);
        match device {
            None => node,
            Some(device) => child_or_self(&node, device),
        }
    }

    /// Whether a metric is left out of `_tag` (e.g. `bdSeq`, `Node Control/*`).
    pub fn skips(&self, metric: &str) -> bool {
        self.skip_exact.iter().any(|name| name == metric)
            || self
                .skip_prefixes
                .iter()
                .any(|prefix| metric.starts_with(prefix.as_str()))
    }

    /// The state category of a raw state code or name.
    pub fn state_category(&self, code: &str) -> StateCategory {
        self.state_map
            .get(&normalize(code))
            .copied()
            .unwrap_or(StateCategory::Unknown)
    }
}

/// `location/{segment slug of text}`, or `location` itself when it is already at the deepest level.
fn child_or_self(location: &Location, text: &str) -> Location {
    location
        .child(segment_slug(text))
        .unwrap_or_else(|_| location.clone())
}

/// A valid location segment for any text: [`slug`] without dots.
pub(crate) fn segment_slug(text: &str) -> Segment {
    let id = slug(text);
    let text = id.as_str().replace('.', "-");
    let text = text.trim_matches('-');
    // `slug` gives [a-z0-9-_.] starting with [a-z0-9]; without dots and dashes at the ends that is a
    // valid segment unless it became empty, which the fallback covers.
    Segment::new(text).unwrap_or_else(|_| Segment::new("x").unwrap_or_else(|_| unreachable!()))
}

/// Codes and names compare case-insensitively, with spaces and dashes as underscores.
pub(crate) fn normalize(code: &str) -> String {
    code.trim()
        .chars()
        .map(|ch| match ch {
            ' ' | '-' => '_',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// The built-in `packml` state map: ISA-TR88.00.02 state numbers and names, plus the category names
/// themselves. The categories follow what the simulated plant means by each state (a Suspended
/// machine is a minor stop, Held is a jam, Stopped a changeover, Idle a planned break).
///
/// | code | name | category |
/// |---|---|---|
/// | 0 | Undefined | unknown |
/// | 1 | Clearing | unplanned_down |
/// | 2 | Stopped | setup |
/// | 3 | Starting | setup |
/// | 4 | Idle | planned_down |
/// | 5 | Suspended | minor_stop |
/// | 6 | Execute | running |
/// | 7 | Stopping | setup |
/// | 8 | Aborting | unplanned_down |
/// | 9 | Aborted | unplanned_down |
/// | 10 | Holding | unplanned_down |
/// | 11 | Held | unplanned_down |
/// | 12 | Unholding | unplanned_down |
/// | 13 | Suspending | minor_stop |
/// | 14 | Unsuspending | minor_stop |
/// | 15 | Resetting | setup |
/// | 16 | Completing | planned_down |
/// | 17 | Complete | planned_down |
pub fn packml_map() -> HashMap<String, StateCategory> {
    use StateCategory as C;
    let table = [
        (0, "Undefined", C::Unknown),
        (1, "Clearing", C::UnplannedDown),
        (2, "Stopped", C::Setup),
        (3, "Starting", C::Setup),
        (4, "Idle", C::PlannedDown),
        (5, "Suspended", C::MinorStop),
        (6, "Execute", C::Running),
        (7, "Stopping", C::Setup),
        (8, "Aborting", C::UnplannedDown),
        (9, "Aborted", C::UnplannedDown),
        (10, "Holding", C::UnplannedDown),
        (11, "Held", C::UnplannedDown),
        (12, "Unholding", C::UnplannedDown),
        (13, "Suspending", C::MinorStop),
        (14, "Unsuspending", C::MinorStop),
        (15, "Resetting", C::Setup),
        (16, "Completing", C::PlannedDown),
        (17, "Complete", C::PlannedDown),
    ];
    let mut map = HashMap::new();
    for (code, name, category) in table {
        map.insert(code.to_string(), category);
        map.insert(normalize(name), category);
    }
    for category in [
        C::Running,
        C::MinorStop,
        C::UnplannedDown,
        C::Setup,
        C::PlannedDown,
        C::Starved,
        C::Blocked,
        C::NotScheduled,
    ] {
        if let Ok(serde_json::Value::String(name)) = serde_json::to_value(category) {
            map.insert(name, category);
        }
    }
    map
}

/// The mode from a PackML unit mode number or a mode name; `None` when unknown.
pub(crate) fn mode_of(code: &str) -> Option<Mode> {
    Some(match normalize(code).as_str() {
        "1" | "production" | "producing" => Mode::Production,
        "2" | "maintenance" => Mode::Maintenance,
        "3" | "manual" => Mode::Maintenance,
        "changeover" => Mode::Changeover,
        "cleaning" | "clean" => Mode::Cleaning,
        "idle" => Mode::Idle,
        "no_order" => Mode::NoOrder,
        "no_shift" => Mode::NoShift,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_the_default_plus_an_example_map() {
        let example =
            BridgeConfig::from_toml(EXAMPLE_TOML).expect("deploy/scada-bridge.toml parses");
        let expected = BridgeConfig {
            state_maps: example.state_maps.clone(),
            ..BridgeConfig::default()
        };
        assert_eq!(example, expected);
        assert!(Mapping::try_from(example).is_ok());
    }

    #[test]
    fn locations_of_mapped_and_unmapped_nodes() {
        let mut config = BridgeConfig::default();
        config.nodes[1].devices.insert(
            "CP 2".to_owned(),
            "acme/berlin/packaging/line-2/case-packer".to_owned(),
        );
        let mapping = Mapping::try_from(config).unwrap();
        let check = |group: &str, edge: &str, device: Option<&str>, expected: &str| {
            assert_eq!(mapping.location(group, edge, device).to_string(), expected);
        };
        check(
            "acme-berlin",
            "line-1",
            Some("filler"),
            "acme/berlin/packaging/line-1/filler",
        );
        check(
            "acme-berlin",
            "line-1",
            None,
            "acme/berlin/packaging/line-1",
        );
        check(
            "acme-berlin",
            "line-2",
            Some("CP 2"),
            "acme/berlin/packaging/line-2/case-packer",
        );
        check(
            "Other Group",
            "Press.7",
            Some("PLC_1"),
            "acme/berlin/other-group/press-7/plc_1",
        );
        assert!(
            mapping.skips("bdSeq")
                && mapping.skips("Node Control/Rebirth")
                && !mapping.skips("Speed")
        );
        assert_eq!(mapping.state_category("Execute"), StateCategory::Running);
        assert_eq!(mapping.state_category("11"), StateCategory::UnplannedDown);
        assert_eq!(
            mapping.state_category("minor-stop"),
            StateCategory::MinorStop
        );
        assert_eq!(mapping.state_category("banana"), StateCategory::Unknown);
    }

    #[test]
    fn bad_configs_are_refused() {
        let check = |text: &str, expected: &str| match BridgeConfig::from_toml(text)
            .and_then(Mapping::try_from)
        {
            Ok(_) => panic!("accepted {text}"),
            Err(err) => assert!(err.to_string().contains(expected), "{err}"),
        };
        check("colour = 1", "unknown field");
        check("enterprise = \"ACME\"", "default location segment");
        check(
            "[[nodes]]\ngroup = \"g\"\nedge = \"e\"\nlocation = \"Bad Path\"",
            "node g/e location",
        );
        check("[state]\nmap = \"nope\"", "unknown state map");
        check("host_id = \"a/b\"", "host_id");
        check(
            "[[nodes]]\ngroup = \"g\"\nedge = \"e\"\nlocation = \"a\"\n\
             [[nodes]]\ngroup = \"g\"\nedge = \"e\"\nlocation = \"b\"",
            "mapped twice",
        );
    }
}
