//! The plant model service (`meta`): the ISA-95 tree of the plant, from configuration, published
//! as one retained `_meta` document per node, plus every payload's JSON Schema under
//! `uns/v1/_schemas/{name}/v{version}`, so MQTT Explorer shows the tree and the contracts the
//! moment the UNS starts.
//!
//! Two stages (STYLE habit 17): [`PlantConfig`] is the raw serde form of the config file's
//! `[plant]` section; [`PlantModel::try_from`] validates it (paths parse, every parent exists,
//! no duplicates) without any I/O. [`Meta`] is the service (`uns_service::Service`): it publishes
//! the model and the schemas, then waits for shutdown.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::info;
use uns_client::{ClientError, UnsClient};
use uns_model::payload::{IdealRate, NodeMeta, SchemaTag};
use uns_model::topic::{Class, Id, Isa95Level, Location, UnsTopic, default_level_for_depth};
use uns_service::{ConfigEnv, ConfigError, Context, Service};

/// The service name, as in `uns/v1/_services/meta`.
pub const SERVICE: &str = "meta";

/// The demo plant shipped with the binary (ACME Foods, Berlin, packaging).
pub const DEMO_PLANT_TOML: &str = include_str!("demo-plant.toml");

/// The `[plant]` section of the config file, as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlantConfig {
    /// Every node of the tree, parents before or after children (order does not matter).
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
}

/// One node of the plant tree, as written in the config file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The location path, e.g. `acme/berlin/packaging/line-1`.
    pub path: String,
    /// The ISA-95 level; when absent, the usual level for the path's depth.
    #[serde(default)]
    pub level: Option<Isa95Level>,
    /// Name for people.
    pub display_name: String,
    /// IANA time zone; inherited from the parent when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Ideal production rates.
    #[serde(default)]
    pub ideal_rates: Vec<IdealRate>,
    /// Which state map turns raw machine states into categories.
    #[serde(default)]
    pub state_map: Option<String>,
    /// The ERP's id for this node (work centre, plant code), e.g. `WC-4711`; the erp-bridge resolves
    /// the equipment an order names through it. Unique across the model.
    #[serde(default)]
    pub erp_id: Option<String>,
}

/// Why a plant model was refused. Each names the node at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlantError {
    /// The config text is not valid TOML for a plant.
    #[error("plant config: {0}")]
    Toml(String),
    /// A path is not a valid location.
    #[error("node `{path}`: {reason}")]
    BadPath {
        /// The path as written.
        path: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Two nodes with the same path.
    #[error("node `{0}` is defined twice")]
    Duplicate(String),
    /// A node whose parent is not in the model.
    #[error("node `{path}` has no parent node `{parent}`; add it so the tree has no holes")]
    MissingParent {
        /// The orphan.
        path: String,
        /// The missing parent path.
        parent: String,
    },
    /// A state map name that is not a valid id.
    #[error("node `{path}`: state_map `{state_map}` is not a valid id ([a-z0-9-_.])")]
    BadStateMap {
        /// The node.
        path: String,
        /// The state map as written.
        state_map: String,
    },
    /// Two nodes claim the same ERP id.
    #[error("erp_id `{erp_id}` is given to both `{first}` and `{second}`; ERP ids must be unique")]
    DuplicateErpId {
        /// The id.
        erp_id: String,
        /// The first node with it.
        first: String,
        /// The second node with it.
        second: String,
    },
    /// A time zone is not an IANA zone name.
    #[error(
        "node `{path}`: time_zone `{time_zone}` is not an IANA time zone (e.g. `Europe/Berlin`, `UTC`)"
    )]
    BadTimeZone {
        /// The node.
        path: String,
        /// The zone as written.
        time_zone: String,
    },
    /// More than one enterprise, or none.
    #[error("the plant model needs exactly one enterprise (a node of depth 1); found {0}")]
    Enterprises(usize),
}

/// A validated plant model: every node with its `_meta` document, parents before children.
#[derive(Clone, Debug, PartialEq)]
pub struct PlantModel {
    nodes: BTreeMap<Location, NodeMeta>,
}

impl PlantModel {
    /// The demo plant.
    pub fn demo() -> Self {
        // The demo plant is part of the binary and covered by a test, so it always parses.
        Self::from_toml(DEMO_PLANT_TOML).unwrap_or_else(|err| unreachable!("demo plant: {err}"))
    }

    /// Parses and validates a plant model from TOML (the `[plant]` section's body).
    pub fn from_toml(text: &str) -> Result<Self, PlantError> {
        let config: PlantConfig =
            toml::from_str(text).map_err(|err| PlantError::Toml(err.to_string()))?;
        Self::try_from(config)
    }

    /// Every node, parents before children.
    pub fn nodes(&self) -> impl Iterator<Item = (&Location, &NodeMeta)> {
        self.nodes.iter()
    }

    /// The enterprise (root) location.
    pub fn enterprise(&self) -> Option<&Location> {
        self.nodes.keys().next()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the model has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl TryFrom<PlantConfig> for PlantModel {
    type Error = PlantError;

    fn try_from(config: PlantConfig) -> Result<Self, PlantError> {
        let mut nodes = BTreeMap::new();
        for node in config.nodes {
            let location: Location =
                node.path
                    .parse()
                    .map_err(|err: uns_model::topic::TopicError| PlantError::BadPath {
                        path: node.path.clone(),
                        reason: err.to_string(),
                    })?;
            let state_map = match &node.state_map {
                Some(name) => Some(Id::new(name).map_err(|_| PlantError::BadStateMap {
                    path: node.path.clone(),
                    state_map: name.clone(),
                })?),
                None => None,
            };
            let level = node
                .level
                .or_else(|| default_level_for_depth(location.depth()))
                .unwrap_or(Isa95Level::Unit);
            if let Some(zone) = &node.time_zone
                && zone.parse::<chrono_tz::Tz>().is_err()
            {
                return Err(PlantError::BadTimeZone {
                    path: node.path.clone(),
                    time_zone: zone.clone(),
                });
            }
            let meta = NodeMeta {
                schema: SchemaTag::default(),
                level,
                display_name: node.display_name,
                time_zone: node.time_zone,
                ideal_rates: node.ideal_rates,
                state_map,
                erp_id: node.erp_id,
            };
            if nodes.insert(location, meta).is_some() {
                return Err(PlantError::Duplicate(node.path));
            }
        }
        for location in nodes.keys() {
            if let Some(parent) = location.parent()
                && !nodes.contains_key(&parent)
            {
                return Err(PlantError::MissingParent {
                    path: location.to_string(),
                    parent: parent.to_string(),
                });
            }
        }
        // Every node publishes its effective time zone: its own, or the nearest ancestor's (OEE
        // cuts shifts and days in it, and a subscriber of one node should not need the tree).
        let own_zones: BTreeMap<Location, Option<String>> = nodes
            .iter()
            .map(|(location, meta)| (location.clone(), meta.time_zone.clone()))
            .collect();
        for (location, meta) in &mut nodes {
            let mut at = Some(location.clone());
            while meta.time_zone.is_none()
                && let Some(node) = at
            {
                meta.time_zone = own_zones.get(&node).cloned().flatten();
                at = node.parent();
            }
        }
        let mut erp_ids = BTreeMap::new();
        for (location, meta) in &nodes {
            if let Some(erp_id) = &meta.erp_id
                && let Some(first) = erp_ids.insert(erp_id.clone(), location)
            {
                return Err(PlantError::DuplicateErpId {
                    erp_id: erp_id.clone(),
                    first: first.to_string(),
                    second: location.to_string(),
                });
            }
        }
        let n_enterprises = nodes.keys().filter(|l| l.depth() == 1).count();
        if n_enterprises != 1 {
            return Err(PlantError::Enterprises(n_enterprises));
        }
        Ok(Self { nodes })
    }
}

/// The plant model service. Its section is `[plant]`; without nodes it serves the built-in demo
/// plant (which `--demo` requires: a `[plant]` of your own and the demo's simulator do not match).
#[derive(Debug)]
pub struct Meta {
    plant: PlantModel,
}

impl Meta {
    /// The service for `plant`.
    pub fn new(plant: PlantModel) -> Self {
        Self { plant }
    }

    /// The model it publishes.
    pub fn plant(&self) -> &PlantModel {
        &self.plant
    }
}

impl Service for Meta {
    const NAME: &'static str = SERVICE;
    const SECTION: &'static str = "plant";
    const ABOUT: &'static str = "Run the plant model service alone: publishes the ISA-95 tree \
        (`_meta`, from the config file's [plant] section) and every payload's JSON Schema, retained";
    type Config = PlantConfig;
    type Error = ClientError;

    fn configure(config: PlantConfig, env: &ConfigEnv) -> Result<Self, ConfigError> {
        if config.nodes.is_empty() {
            return Ok(Self::new(PlantModel::demo()));
        }
        if env.demo {
            return Err(ConfigError::new(
                "nodes",
                "--demo uses the demo plant; remove [plant] from the config or drop --demo",
            ));
        }
        PlantModel::try_from(config)
            .map(Self::new)
            .map_err(|err| ConfigError::new("nodes", err.to_string()))
    }

    async fn run(&self, ctx: Context) -> Result<(), ClientError> {
        run(&ctx.client, &self.plant, ctx.shutdown).await
    }
}

/// Publishes every node's `_meta` and every JSON Schema (all retained; the client re-publishes
/// them after each reconnect), then stays connected until `shutdown`.
pub async fn run(
    client: &UnsClient,
    plant: &PlantModel,
    shutdown: CancellationToken,
) -> Result<(), ClientError> {
    for (location, meta) in plant.nodes() {
        let topic = UnsTopic::located(location.clone(), Class::Meta);
        client.publish(&topic, meta).await?;
    }
    for schema in uns_model::schemas::ALL {
        // Schema names in `ALL` are valid ids; a test in uns-model checks every one.
        let Ok(topic) = UnsTopic::schema(schema.name, schema.version) else {
            continue;
        };
        client
            .publish_bytes(&topic, bytes::Bytes::from_static(schema.json.as_bytes()))
            .await?;
    }
    info!(
        nodes = plant.len(),
        schemas = uns_model::schemas::ALL.len(),
        "plant model and schemas published"
    );
    shutdown.cancelled().await;
    Ok(())
}

/// How long [`run`]'s caller should give the client to flush on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_plant_is_valid() {
        let plant = PlantModel::demo();
        assert_eq!(
            plant.enterprise().map(ToString::to_string).as_deref(),
            Some("acme")
        );
        assert!(plant.len() >= 10, "{}", plant.len());
        let filler: Location = "acme/berlin/packaging/line-1/filler".parse().unwrap();
        let meta = plant.nodes.get(&filler).expect("filler in demo plant");
        assert_eq!(meta.level, Isa95Level::WorkCell);
    }

    fn check(toml_text: &str, expected: &str) {
        match PlantModel::from_toml(toml_text) {
            Ok(plant) => panic!("accepted {plant:?}, wanted error containing {expected:?}"),
            Err(err) => assert!(err.to_string().contains(expected), "{err}"),
        }
    }

    #[test]
    fn bad_plant_models_are_refused_with_the_node_named() {
        check("nodes = 3", "plant config");
        check(
            "[[nodes]]\npath = \"acme\"\ndisplay_name = \"A\"\ncolour = \"red\"",
            "unknown field",
        );
        check(
            "[[nodes]]\npath = \"ACME\"\ndisplay_name = \"A\"",
            "node `ACME`",
        );
        check(
            "[[nodes]]\npath = \"acme\"\ndisplay_name = \"A\"\n[[nodes]]\npath = \"acme\"\ndisplay_name = \"B\"",
            "defined twice",
        );
        check(
            "[[nodes]]\npath = \"acme\"\ndisplay_name = \"A\"\n[[nodes]]\npath = \"acme/berlin/x\"\ndisplay_name = \"X\"",
            "no parent node `acme/berlin`",
        );
        check(
            "[[nodes]]\npath = \"a\"\ndisplay_name = \"A\"\n[[nodes]]\npath = \"b\"\ndisplay_name = \"B\"",
            "exactly one enterprise",
        );
        check("", "exactly one enterprise");
        check(
            "[[nodes]]\npath = \"acme\"\ndisplay_name = \"A\"\nerp_id = \"WC-1\"\n[[nodes]]\npath = \"acme/berlin\"\ndisplay_name = \"B\"\nerp_id = \"WC-1\"",
            "erp_id `WC-1` is given to both `acme` and `acme/berlin`",
        );
    }

    #[test]
    fn the_demo_lines_carry_their_erp_work_centres() {
        let plant = PlantModel::demo();
        let line_1 = plant
            .nodes()
            .find(|(_, meta)| meta.erp_id.as_deref() == Some("WC-4711"))
            .map(|(location, _)| location.to_string());
        assert_eq!(line_1.as_deref(), Some("acme/berlin/packaging/line-1"));
    }

    #[test]
    fn every_node_carries_its_effective_time_zone() {
        let plant = PlantModel::from_toml(
            "[[nodes]]\npath = \"acme\"\ndisplay_name = \"A\"\ntime_zone = \"Europe/Berlin\"\n\
             [[nodes]]\npath = \"acme/berlin\"\ndisplay_name = \"B\"\n\
             [[nodes]]\npath = \"acme/berlin/packaging\"\ndisplay_name = \"P\"\n\
             [[nodes]]\npath = \"acme/detroit\"\ndisplay_name = \"D\"\ntime_zone = \"America/Detroit\"\n\
             [[nodes]]\npath = \"acme/detroit/body\"\ndisplay_name = \"Body\"",
        )
        .unwrap();
        let zones: Vec<(String, Option<String>)> = plant
            .nodes()
            .map(|(location, meta)| (location.to_string(), meta.time_zone.clone()))
            .collect();
        let zone = |path: &str| {
            zones
                .iter()
                .find(|(p, _)| p == path)
                .and_then(|(_, zone)| zone.clone())
        };
        assert_eq!(zone("acme").as_deref(), Some("Europe/Berlin"));
        assert_eq!(zone("acme/berlin").as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            zone("acme/berlin/packaging").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(zone("acme/detroit").as_deref(), Some("America/Detroit"));
        assert_eq!(
            zone("acme/detroit/body").as_deref(),
            Some("America/Detroit")
        );
        // The demo plant names its zone once, on the enterprise: every cell has it.
        let demo = PlantModel::demo();
        assert!(
            demo.nodes()
                .all(|(_, meta)| meta.time_zone.as_deref() == Some("Europe/Berlin")),
            "{demo:?}"
        );
        check(
            "[[nodes]]\npath = \"acme\"\ndisplay_name = \"A\"\ntime_zone = \"Berlin\"",
            "node `acme`: time_zone `Berlin` is not an IANA time zone",
        );
    }

    #[test]
    fn level_defaults_from_depth() {
        let plant = PlantModel::from_toml(
            "[[nodes]]\npath = \"acme\"\ndisplay_name = \"A\"\n[[nodes]]\npath = \"acme/berlin\"\ndisplay_name = \"B\"",
        )
        .unwrap();
        let levels: Vec<_> = plant.nodes().map(|(_, meta)| meta.level).collect();
        assert_eq!(levels, vec![Isa95Level::Enterprise, Isa95Level::Site]);
    }
}
