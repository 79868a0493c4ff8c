//! Who may publish what: the owner column of DESIGN §2, typed and held once.
//!
//! [`Class::owners`] is the column for located topics, [`UnsTopic::owners`] extends it to the
//! fixed trees (`_schemas`, `_services`, `_replies`) and [`SparkplugRoute::owners`] to the
//! Sparkplug B topics the plant floor and the SCADA bridge exchange. `uns topic parse` prints the
//! column from here ([`Class::owner`]) and the broker derives its `service`, `edge` and
//! `operator` roles from it ([`may_publish`]), so what the documentation says a service owns is
//! exactly what its broker account may write.

use std::fmt;
use std::str::FromStr;

use crate::topic::{Class, UnsTopic};

/// A service of the UNS: the name of its `uns` subcommand, of its health topic
/// `uns/v1/_services/{name}` and, by default, of its broker account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    /// The embedded broker's own health (`uns up`, `uns broker`).
    Broker,
    /// `uns meta`: the plant model's `_meta` tree and the JSON Schemas.
    Meta,
    /// `uns scada-bridge`: the Sparkplug host and the machine data on the UNS.
    ScadaBridge,
    /// `uns genealogy`: lots and their history.
    Genealogy,
    /// `uns oee`: ISO 22400 KPIs.
    Oee,
    /// `uns workorders`: the work order lifecycle.
    Workorders,
    /// `uns erp-bridge`: production orders in, confirmations out.
    ErpBridge,
    /// `uns console`: the browser console (reads only).
    Console,
    /// `uns sim`: simulated Sparkplug edge nodes.
    Sim,
}

/// Why a name is not a [`ServiceName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown service {0:?} (known: broker, meta, scada-bridge, genealogy, oee, workorders, erp-bridge, console, sim)"
)]
pub struct UnknownService(pub String);

impl ServiceName {
    /// Every service.
    pub const ALL: [ServiceName; 9] = [
        Self::Broker,
        Self::Meta,
        Self::ScadaBridge,
        Self::Genealogy,
        Self::Oee,
        Self::Workorders,
        Self::ErpBridge,
        Self::Console,
        Self::Sim,
    ];

    /// The name, e.g. `scada-bridge`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Meta => "meta",
            Self::ScadaBridge => "scada-bridge",
            Self::Genealogy => "genealogy",
            Self::Oee => "oee",
            Self::Workorders => "workorders",
            Self::ErpBridge => "erp-bridge",
            Self::Console => "console",
            Self::Sim => "sim",
        }
    }

    /// Whether `client_id` is one of this service's MQTT client ids: `uns-{name}` (the default
    /// of `uns_client::ClientOptions`) or `uns-{name}-…` (its further connections: the SCADA
    /// bridge's Sparkplug session `uns-scada-bridge-sparkplug`, the simulator's edge nodes
    /// `uns-sim-{edge}`). The broker reserves them for the service's account.
    pub fn owns_client_id(self, client_id: &str) -> bool {
        let Some(rest) = client_id.strip_prefix("uns-") else {
            return false;
        };
        let Some(tail) = rest.strip_prefix(self.as_str()) else {
            return false;
        };
        tail.is_empty() || tail.starts_with('-')
    }

    /// The service whose client id `client_id` is, if any ([`ServiceName::owns_client_id`]).
    pub fn owning_client_id(client_id: &str) -> Option<ServiceName> {
        Self::ALL
            .into_iter()
            .find(|service| service.owns_client_id(client_id))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceName {
    type Err = UnknownService;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|service| service.as_str() == name)
            .ok_or_else(|| UnknownService(name.to_owned()))
    }
}

/// One entry of the owner column: who publishes on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Publisher {
    /// That service.
    Service(ServiceName),
    /// Any service (`_errors`, `_replies`, `_cmd` requests between services).
    EveryService,
    /// The service the topic names (`uns/v1/_services/{name}`, or `{name}.{part}` for a further
    /// client of that service).
    NamedService,
    /// People and their tools, through the broker's `operator` role (`_cmd`, corrections).
    Operators,
    /// Sparkplug edge nodes of the topic's group (the broker's `edge` role).
    EdgeNodes,
}

impl fmt::Display for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(service) => service.fmt(f),
            Self::EveryService => f.write_str("every service"),
            Self::NamedService => f.write_str("the named service"),
            Self::Operators => f.write_str("operators"),
            Self::EdgeNodes => f.write_str("edge nodes"),
        }
    }
}

/// Who asks to publish: an account as the broker knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    /// A service's own account.
    Service(ServiceName),
    /// An operator.
    Operator,
    /// A Sparkplug edge account of these groups.
    Edge {
        /// The Sparkplug groups it may publish for.
        groups: &'a [String],
    },
}

/// The Sparkplug B message types (`spBv1.0/{group}/{type}/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SparkplugKind {
    /// Node birth.
    NBirth,
    /// Node data.
    NData,
    /// Node death (the edge node's Will).
    NDeath,
    /// Device birth.
    DBirth,
    /// Device data.
    DData,
    /// Device death.
    DDeath,
    /// Command to a node (the host's rebirth request).
    NCmd,
    /// Command to a device.
    DCmd,
}

impl SparkplugKind {
    /// Every type.
    pub const ALL: [SparkplugKind; 8] = [
        Self::NBirth,
        Self::NData,
        Self::NDeath,
        Self::DBirth,
        Self::DData,
        Self::DDeath,
        Self::NCmd,
        Self::DCmd,
    ];

    /// The topic segment, e.g. `NDEATH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NBirth => "NBIRTH",
            Self::NData => "NDATA",
            Self::NDeath => "NDEATH",
            Self::DBirth => "DBIRTH",
            Self::DData => "DDATA",
            Self::DDeath => "DDEATH",
            Self::NCmd => "NCMD",
            Self::DCmd => "DCMD",
        }
    }

    /// Whether the message goes to the edge (a command) rather than from it.
    pub fn is_command(self) -> bool {
        matches!(self, Self::NCmd | Self::DCmd)
    }
}

/// The first level of every Sparkplug B topic.
pub const SPARKPLUG_NAMESPACE: &str = "spBv1.0";

/// A Sparkplug B topic, parsed only as far as ownership needs (the full parser is
/// `uns_sparkplug::SparkplugTopic`; this crate does not depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparkplugRoute<'a> {
    /// `spBv1.0/STATE/{host_id}`: a primary host's state.
    State {
        /// The host application id.
        host_id: &'a str,
    },
    /// `spBv1.0/{group}/{type}/{edge}[/{device}]`.
    Node {
        /// The Sparkplug group.
        group: &'a str,
        /// The message type.
        kind: SparkplugKind,
    },
}

impl<'a> SparkplugRoute<'a> {
    /// Parses `topic`; `None` if it is not a Sparkplug B topic of a known shape.
    pub fn parse(topic: &'a str) -> Option<Self> {
        let rest = topic.strip_prefix(SPARKPLUG_NAMESPACE)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        let valid = |level: &str| !level.is_empty() && !level.contains(['+', '#']);
        match levels.as_slice() {
            ["STATE", host_id] if valid(host_id) => Some(Self::State { host_id }),
            [group, kind, edge, device @ ..]
                if valid(group)
                    && valid(edge)
                    && device.len() <= 1
                    && device.iter().all(|d| valid(d)) =>
            {
                let kind = SparkplugKind::ALL
                    .into_iter()
                    .find(|candidate| candidate.as_str() == *kind)?;
                let is_device = matches!(
                    kind,
                    SparkplugKind::DBirth
                        | SparkplugKind::DData
                        | SparkplugKind::DDeath
                        | SparkplugKind::DCmd
                );
                (device.len() == usize::from(is_device)).then_some(Self::Node { group, kind })
            }
            _ => None,
        }
    }

    /// Who publishes on it: the primary host (the SCADA bridge) writes STATE and commands,
    /// edge nodes (and the simulator, which is a set of edge nodes) the rest.
    pub fn owners(&self) -> &'static [Publisher] {
        match self {
            Self::State { .. } => &[Publisher::Service(ServiceName::ScadaBridge)],
            Self::Node { kind, .. } if kind.is_command() => {
                &[Publisher::Service(ServiceName::ScadaBridge)]
            }
            Self::Node { .. } => &[Publisher::EdgeNodes, Publisher::Service(ServiceName::Sim)],
        }
    }
}

/// The topic filters an edge account of `group` subscribes to: its own commands (NCMD, DCMD)
/// and every primary host's STATE.
pub fn edge_subscriptions(group: &str) -> Vec<String> {
    let mut filters: Vec<String> = SparkplugKind::ALL
        .into_iter()
        .filter(|kind| kind.is_command())
        .map(|kind| format!("{SPARKPLUG_NAMESPACE}/{group}/{}/#", kind.as_str()))
        .collect();
    filters.push(format!("{SPARKPLUG_NAMESPACE}/STATE/#"));
    filters
}

impl Class {
    /// Who publishes this class (DESIGN §2 "owner" column).
    pub fn owners(&self) -> &'static [Publisher] {
        use Publisher::{EveryService, Operators, Service};
        use ServiceName::{ErpBridge, Genealogy, Meta, Oee, ScadaBridge, Workorders};
        match self {
            Self::Meta => &[Service(Meta)],
            Self::Tag(_)
            | Self::TagHistory(_)
            | Self::State
            | Self::StateEvents
            | Self::Count(_) => &[Service(ScadaBridge)],
            Self::CountEvents => &[Service(ScadaBridge), Operators],
            Self::ErpProductionOrder(_) => &[Service(ErpBridge)],
            Self::WorkOrder(_) | Self::WorkOrderActive => &[Service(Workorders)],
            Self::WorkOrderEvents(_) => &[Service(Workorders), Service(ErpBridge)],
            Self::Lot(_) => &[Service(Genealogy)],
            Self::GenealogyEvents => &[Service(Workorders), Operators],
            Self::OeeCurrent(_) | Self::Oee(..) => &[Service(Oee)],
            Self::Cmd(_) => &[Operators, EveryService],
            Self::Errors => &[EveryService],
        }
    }

    /// [`Class::owners`] as text, e.g. `workorders / erp-bridge` (what `uns topic parse` prints).
    pub fn owner(&self) -> String {
        join(self.owners())
    }
}

impl UnsTopic {
    /// Who publishes on this topic: [`Class::owners`] for located topics; the meta service for
    /// `_schemas`, the named service for its `_services` health, any service answering a
    /// `_cmd` for `_replies`.
    pub fn owners(&self) -> &'static [Publisher] {
        match self {
            Self::Located { class, .. } => class.owners(),
            Self::Schema { .. } => &[Publisher::Service(ServiceName::Meta)],
            Self::Service { .. } => &[Publisher::NamedService],
            Self::Reply { .. } => &[Publisher::EveryService],
        }
    }
}

/// [`UnsTopic::owners`] as text.
pub(crate) fn join(owners: &[Publisher]) -> String {
    owners
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Whether `principal` may publish on `topic` (a topic name) according to the owner column.
/// A topic that is neither a valid UNS topic nor a Sparkplug B topic belongs to no one (only an
/// administrator may write it).
pub fn may_publish(principal: &Principal<'_>, topic: &str) -> bool {
    if let Some(route) = SparkplugRoute::parse(topic) {
        let group = match route {
            SparkplugRoute::Node { group, .. } => Some(group),
            SparkplugRoute::State { .. } => None,
        };
        return route
            .owners()
            .iter()
            .any(|publisher| admits(*publisher, principal, None, group));
    }
    let Ok(topic) = topic.parse::<UnsTopic>() else {
        return false;
    };
    let named = match &topic {
        UnsTopic::Service { name } => Some(name.as_str()),
        _ => None,
    };
    topic
        .owners()
        .iter()
        .any(|publisher| admits(*publisher, principal, named, None))
}

/// Whether `_services/{named}` is the health of `service`: its own name, or `{name}.{part}` for
/// a further client of the service (the ERP bridge's `erp-bridge.confirmations`).
fn is_health_name_of(named: &str, service: ServiceName) -> bool {
    named
        .strip_prefix(service.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Whether `publisher` (an owner column entry) is `principal`. `named` is the service a
/// `_services` topic names, `group` the Sparkplug group of a node topic.
fn admits(
    publisher: Publisher,
    principal: &Principal<'_>,
    named: Option<&str>,
    group: Option<&str>,
) -> bool {
    match (publisher, principal) {
        (Publisher::Service(owner), Principal::Service(service)) => owner == *service,
        (Publisher::EveryService, Principal::Service(_)) => true,
        (Publisher::NamedService, Principal::Service(service)) => {
            named.is_some_and(|named| is_health_name_of(named, *service))
        }
        (Publisher::Operators, Principal::Operator) => true,
        (Publisher::EdgeNodes, Principal::Edge { groups }) => {
            group.is_some_and(|group| groups.iter().any(|own| own == group))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(principal: Principal<'_>, topic: &str, expected: bool) {
        assert_eq!(
            may_publish(&principal, topic),
            expected,
            "{principal:?} publishing {topic}"
        );
    }

    const CELL: &str = "uns/v1/acme/berlin/packaging/line-1/filler";

    #[test]
    fn each_service_publishes_exactly_its_rows() {
        use ServiceName::*;
        let bridge = Principal::Service(ScadaBridge);
        check(bridge, &format!("{CELL}/_tag/process/temperature"), true);
        check(bridge, &format!("{CELL}/_state"), true);
        check(bridge, &format!("{CELL}/_count/good"), true);
        check(bridge, &format!("{CELL}/_errors"), true);
        check(bridge, &format!("{CELL}/_cmd/scada-bridge/sync"), true);
        check(bridge, "uns/v1/_services/scada-bridge", true);
        check(bridge, "uns/v1/_services/oee", false);
        check(bridge, "uns/v1/_services/scada-bridge.sparkplug", true);
        check(bridge, "uns/v1/_services/scada-bridge-x", false);
        check(
            Principal::Service(ErpBridge),
            "uns/v1/_services/erp-bridge.confirmations",
            true,
        );
        check(bridge, &format!("{CELL}/_meta"), false);
        check(bridge, &format!("{CELL}/_wo/wo-1"), false);
        check(bridge, "uns/v1/_schemas/tag/v1", false);
        check(bridge, "spBv1.0/STATE/scada-bridge", true);
        check(bridge, "spBv1.0/acme-berlin/NCMD/line-1", true);
        check(bridge, "spBv1.0/acme-berlin/NDEATH/line-1", false);
        check(Principal::Service(Meta), &format!("{CELL}/_meta"), true);
        check(Principal::Service(Meta), "uns/v1/_schemas/tag/v1", true);
        check(Principal::Service(Meta), &format!("{CELL}/_state"), false);
        check(
            Principal::Service(Workorders),
            &format!("{CELL}/_wo/wo-1"),
            true,
        );
        check(
            Principal::Service(Workorders),
            &format!("{CELL}/_genealogy/events"),
            true,
        );
        check(
            Principal::Service(ErpBridge),
            &format!("{CELL}/_wo/wo-1/events"),
            true,
        );
        check(
            Principal::Service(ErpBridge),
            &format!("{CELL}/_wo/wo-1"),
            false,
        );
        check(
            Principal::Service(Genealogy),
            &format!("{CELL}/_lot/l-1"),
            true,
        );
        check(
            Principal::Service(Oee),
            &format!("{CELL}/_oee/current/hour"),
            true,
        );
        check(Principal::Service(Oee), &format!("{CELL}/_lot/l-1"), false);
        check(Principal::Service(Sim), "spBv1.0/any/NDATA/line-1", true);
        check(Principal::Service(Sim), "spBv1.0/STATE/scada-bridge", false);
        check(
            Principal::Service(Console),
            &format!("{CELL}/_wo/wo-1"),
            false,
        );
        check(Principal::Service(Broker), "uns/v1/_services/broker", true);
        check(Principal::Service(Broker), "uns/v1/_services/meta", false);
        // Not a UNS or Sparkplug topic (or a malformed one): nobody's.
        check(Principal::Service(Meta), "uns/v1/test/full-disk", false);
        check(Principal::Service(Meta), "$SYS/broker/uptime", false);
        check(Principal::Service(Meta), "other/topic", false);
    }

    #[test]
    fn edge_accounts_publish_their_groups_only() {
        let groups = vec!["acme-berlin".to_owned()];
        let edge = Principal::Edge { groups: &groups };
        for kind in ["NBIRTH", "NDATA", "NDEATH"] {
            check(edge, &format!("spBv1.0/acme-berlin/{kind}/line-1"), true);
            check(edge, &format!("spBv1.0/other/{kind}/line-1"), false);
            check(
                edge,
                &format!("spBv1.0/acme-berlin/{kind}/line-1/filler"),
                false,
            );
        }
        for kind in ["DBIRTH", "DDATA", "DDEATH"] {
            check(
                edge,
                &format!("spBv1.0/acme-berlin/{kind}/line-1/filler"),
                true,
            );
            check(edge, &format!("spBv1.0/acme-berlin/{kind}/line-1"), false);
        }
        check(edge, "spBv1.0/acme-berlin/NCMD/line-1", false);
        check(edge, "spBv1.0/STATE/scada-bridge", false);
        check(edge, &format!("{CELL}/_meta"), false);
        check(edge, "uns/v1/_services/scada-bridge", false);
        assert_eq!(
            edge_subscriptions("g"),
            vec!["spBv1.0/g/NCMD/#", "spBv1.0/g/DCMD/#", "spBv1.0/STATE/#"]
        );
    }

    #[test]
    fn operators_send_commands_and_corrections() {
        check(
            Principal::Operator,
            &format!("{CELL}/_cmd/wo/release"),
            true,
        );
        check(Principal::Operator, &format!("{CELL}/_count/events"), true);
        check(
            Principal::Operator,
            &format!("{CELL}/_genealogy/events"),
            true,
        );
        check(Principal::Operator, &format!("{CELL}/_state"), false);
        check(Principal::Operator, &format!("{CELL}/_meta"), false);
        check(Principal::Operator, "uns/v1/_services/oee", false);
        check(Principal::Operator, "spBv1.0/STATE/scada-bridge", false);
    }

    #[test]
    fn client_ids_are_reserved_per_service() {
        assert_eq!(
            ServiceName::owning_client_id("uns-scada-bridge"),
            Some(ServiceName::ScadaBridge)
        );
        assert_eq!(
            ServiceName::owning_client_id("uns-scada-bridge-sparkplug"),
            Some(ServiceName::ScadaBridge)
        );
        assert_eq!(
            ServiceName::owning_client_id("uns-sim-line-1"),
            Some(ServiceName::Sim)
        );
        assert_eq!(ServiceName::owning_client_id("uns-simulator"), None);
        assert_eq!(ServiceName::owning_client_id("mqtt-explorer"), None);
        assert_eq!(ServiceName::owning_client_id("uns-"), None);
        for service in ServiceName::ALL {
            assert_eq!(service.as_str().parse(), Ok(service));
            assert!(service.owns_client_id(&format!("uns-{service}")));
        }
        assert!("scada".parse::<ServiceName>().is_err());
    }

    #[test]
    fn the_owner_text_is_derived_from_the_column() {
        let class = Class::WorkOrderEvents(crate::topic::Id::new("wo-1").expect("id"));
        assert_eq!(class.owner(), "workorders / erp-bridge");
        assert_eq!(Class::Errors.owner(), "every service");
        assert_eq!(Class::Cmd(Vec::new()).owner(), "operators / every service");
    }

    #[test]
    fn sparkplug_routes_parse() {
        assert_eq!(
            SparkplugRoute::parse("spBv1.0/STATE/h"),
            Some(SparkplugRoute::State { host_id: "h" })
        );
        assert_eq!(
            SparkplugRoute::parse("spBv1.0/g/DDATA/e/d"),
            Some(SparkplugRoute::Node {
                group: "g",
                kind: SparkplugKind::DData
            })
        );
        for bad in [
            "spBv1.0/g/NDATA",
            "spBv1.0/g/XDATA/e",
            "spBv1.0/g/NDATA/e/d",
            "spBv1.0/g/DDATA/e/d/x",
            "spBv1.0/+/NDATA/e",
            "spBv1.0/STATE",
            "spBv1.0x/g/NDATA/e",
        ] {
            assert_eq!(SparkplugRoute::parse(bad), None, "{bad}");
        }
    }
}
