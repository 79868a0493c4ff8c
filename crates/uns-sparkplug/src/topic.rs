//! Sparkplug B topic names: `spBv1.0/{group}/{kind}/{edge}[/{device}]` and `spBv1.0/STATE/{host_id}`.
//!
//! A topic string from the broker is parsed once into a [`SparkplugTopic`] and printed back with
//! `Display`; the two round-trip exactly. Ids are validated as the specification asks (non-empty UTF-8
//! without the MQTT reserved characters `/`, `+`, `#`).

use std::fmt;
use std::str::FromStr;

/// The namespace element of every Sparkplug B topic [tck-id-topic-structure-namespace-a].
pub const NAMESPACE: &str = "spBv1.0";

/// The MQTT filter that matches every Sparkplug B message (what a primary host subscribes to).
pub const ALL_FILTER: &str = "spBv1.0/#";

/// The MQTT filter for every message of one Sparkplug group, e.g. `spBv1.0/line-1/#`.
///
/// Fails when `group` is not a valid id.
pub fn group_filter(group: &str) -> Result<String, TopicError> {
    validate_id(IdKind::Group, group)?;
    Ok(format!("{NAMESPACE}/{group}/#"))
}

/// The MQTT topic of a host application's STATE messages, e.g. `spBv1.0/STATE/scada-bridge`.
///
/// Fails when `host_id` is not a valid id.
pub fn state_topic(host_id: &str) -> Result<String, TopicError> {
    validate_id(IdKind::HostId, host_id)?;
    Ok(format!("{NAMESPACE}/STATE/{host_id}"))
}

/// A parsed Sparkplug B topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SparkplugTopic {
    /// A message about an edge node itself: `spBv1.0/{group}/{kind}/{edge}`.
    Node {
        /// The Sparkplug group id.
        group: String,
        /// NBIRTH, NDATA, NDEATH or NCMD.
        kind: NodeMessageKind,
        /// The edge node id.
        edge: String,
    },
    /// A message about a device behind an edge node: `spBv1.0/{group}/{kind}/{edge}/{device}`.
    Device {
        /// The Sparkplug group id.
        group: String,
        /// DBIRTH, DDATA, DDEATH or DCMD.
        kind: DeviceMessageKind,
        /// The edge node id.
        edge: String,
        /// The device id.
        device: String,
    },
    /// A host application's online state (Sparkplug 3.0 form): `spBv1.0/STATE/{host_id}`.
    State {
        /// The Sparkplug host id.
        host_id: String,
    },
}

/// The message types that concern an edge node (the topic has no device id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeMessageKind {
    /// Edge node birth certificate.
    NBirth,
    /// Edge node data.
    NData,
    /// Edge node death certificate (the MQTT Will).
    NDeath,
    /// Command to an edge node.
    NCmd,
}

/// The message types that concern a device (the topic ends with a device id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceMessageKind {
    /// Device birth certificate.
    DBirth,
    /// Device data.
    DData,
    /// Device death certificate.
    DDeath,
    /// Command to a device.
    DCmd,
}

/// Which id of a topic was invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// The group id.
    Group,
    /// The edge node id.
    Edge,
    /// The device id.
    Device,
    /// The host id of a STATE topic.
    HostId,
}

/// Why a string is not a Sparkplug B topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The first level is not `spBv1.0` (e.g. the deprecated Sparkplug A `spAv1.0`, or a UNS topic).
    #[error("not a Sparkplug B topic: first level {found:?} is not \"spBv1.0\"")]
    WrongNamespace {
        /// The first topic level.
        found: String,
    },
    /// The message type level is not one of the nine Sparkplug message types.
    #[error("unknown Sparkplug message type {found:?}")]
    UnknownMessageType {
        /// The message type level as found.
        found: String,
    },
    /// The topic has too few or too many levels for its message type.
    #[error("a {message_type} topic has {expected} levels, found {found}")]
    WrongLevelCount {
        /// The message type (or `STATE`).
        message_type: &'static str,
        /// How many levels this message type has.
        expected: usize,
        /// How many levels the topic has.
        found: usize,
    },
    /// An id is empty.
    #[error("the {kind:?} id is empty")]
    EmptyId {
        /// Which id.
        kind: IdKind,
    },
    /// An id contains one of the characters the specification reserves (`/`, `+`, `#`).
    #[error("the {kind:?} id {id:?} contains the reserved character {character:?}")]
    ReservedCharacter {
        /// Which id.
        kind: IdKind,
        /// The id as given.
        id: String,
        /// The offending character.
        character: char,
    },
}

impl NodeMessageKind {
    /// The message type as it appears in the topic, e.g. `"NBIRTH"`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeMessageKind::NBirth => "NBIRTH",
            NodeMessageKind::NData => "NDATA",
            NodeMessageKind::NDeath => "NDEATH",
            NodeMessageKind::NCmd => "NCMD",
        }
    }
}

impl DeviceMessageKind {
    /// The message type as it appears in the topic, e.g. `"DBIRTH"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceMessageKind::DBirth => "DBIRTH",
            DeviceMessageKind::DData => "DDATA",
            DeviceMessageKind::DDeath => "DDEATH",
            DeviceMessageKind::DCmd => "DCMD",
        }
    }
}

impl fmt::Display for NodeMessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DeviceMessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SparkplugTopic {
    /// The group id, or `None` for a STATE topic.
    pub fn group(&self) -> Option<&str> {
        match self {
            SparkplugTopic::Node { group, .. } | SparkplugTopic::Device { group, .. } => {
                Some(group)
            }
            SparkplugTopic::State { .. } => None,
        }
    }

    /// The edge node id, or `None` for a STATE topic.
    pub fn edge(&self) -> Option<&str> {
        match self {
            SparkplugTopic::Node { edge, .. } | SparkplugTopic::Device { edge, .. } => Some(edge),
            SparkplugTopic::State { .. } => None,
        }
    }

    /// Checks every id of an already built topic (parsing checks them too).
    pub fn validate(&self) -> Result<(), TopicError> {
        match self {
            SparkplugTopic::Node { group, edge, .. } => {
                validate_id(IdKind::Group, group)?;
                validate_id(IdKind::Edge, edge)
            }
            SparkplugTopic::Device {
                group,
                edge,
                device,
                ..
            } => {
                validate_id(IdKind::Group, group)?;
                validate_id(IdKind::Edge, edge)?;
                validate_id(IdKind::Device, device)
            }
            SparkplugTopic::State { host_id } => validate_id(IdKind::HostId, host_id),
        }
    }
}

impl fmt::Display for SparkplugTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SparkplugTopic::Node { group, kind, edge } => {
                write!(f, "{NAMESPACE}/{group}/{kind}/{edge}")
            }
            SparkplugTopic::Device {
                group,
                kind,
                edge,
                device,
            } => write!(f, "{NAMESPACE}/{group}/{kind}/{edge}/{device}"),
            SparkplugTopic::State { host_id } => write!(f, "{NAMESPACE}/STATE/{host_id}"),
        }
    }
}

impl FromStr for SparkplugTopic {
    type Err = TopicError;

    fn from_str(topic: &str) -> Result<Self, Self::Err> {
        let levels: Vec<&str> = topic.split('/').collect();
        // `split` yields at least one item (the whole string when there is no `/`), so `levels[0]` exists.
        if levels[0] != NAMESPACE {
            return Err(TopicError::WrongNamespace {
                found: levels[0].to_owned(),
            });
        }
        let Some(&second) = levels.get(1) else {
            return Err(TopicError::WrongLevelCount {
                message_type: "Sparkplug",
                expected: 4,
                found: levels.len(),
            });
        };
        // The 3.0 STATE topic has the message type second: spBv1.0/STATE/{host_id}
        // [tck-id-host-topic-phid-birth-topic]. A group may not be named STATE in 3.0.
        if second == "STATE" {
            expect_levels(&levels, "STATE", 3)?;
            validate_id(IdKind::HostId, levels[2])?;
            return Ok(SparkplugTopic::State {
                host_id: levels[2].to_owned(),
            });
        }
        let Some(&message_type) = levels.get(2) else {
            return Err(TopicError::WrongLevelCount {
                message_type: "Sparkplug",
                expected: 4,
                found: levels.len(),
            });
        };
        if let Some(kind) = node_kind(message_type) {
            // device_id MUST NOT be included with NBIRTH, NDEATH, NDATA, NCMD
            // [tck-id-topic-structure-namespace-device-id-non-associated-message-types].
            expect_levels(&levels, kind.as_str(), 4)?;
            validate_id(IdKind::Group, levels[1])?;
            validate_id(IdKind::Edge, levels[3])?;
            return Ok(SparkplugTopic::Node {
                group: levels[1].to_owned(),
                kind,
                edge: levels[3].to_owned(),
            });
        }
        if let Some(kind) = device_kind(message_type) {
            // device_id MUST be included with DBIRTH, DDEATH, DDATA, DCMD
            // [tck-id-topic-structure-namespace-device-id-associated-message-types].
            expect_levels(&levels, kind.as_str(), 5)?;
            validate_id(IdKind::Group, levels[1])?;
            validate_id(IdKind::Edge, levels[3])?;
            validate_id(IdKind::Device, levels[4])?;
            return Ok(SparkplugTopic::Device {
                group: levels[1].to_owned(),
                kind,
                edge: levels[3].to_owned(),
                device: levels[4].to_owned(),
            });
        }
        Err(TopicError::UnknownMessageType {
            found: message_type.to_owned(),
        })
    }
}

/// Checks one id: non-empty UTF-8 (guaranteed by `&str`) without `/`, `+` or `#`
/// [tck-id-topic-structure-namespace-valid-group-id], [tck-id-topic-structure-namespace-valid-edge-node-id],
/// [tck-id-topic-structure-namespace-valid-device-id]. The host id follows the same rule.
pub fn validate_id(kind: IdKind, id: &str) -> Result<(), TopicError> {
    if id.is_empty() {
        return Err(TopicError::EmptyId { kind });
    }
    if let Some(character) = id.chars().find(|c| matches!(c, '/' | '+' | '#')) {
        return Err(TopicError::ReservedCharacter {
            kind,
            id: id.to_owned(),
            character,
        });
    }
    Ok(())
}

fn expect_levels(
    levels: &[&str],
    message_type: &'static str,
    expected: usize,
) -> Result<(), TopicError> {
    if levels.len() == expected {
        Ok(())
    } else {
        Err(TopicError::WrongLevelCount {
            message_type,
            expected,
            found: levels.len(),
        })
    }
}

fn node_kind(message_type: &str) -> Option<NodeMessageKind> {
    Some(match message_type {
        "NBIRTH" => NodeMessageKind::NBirth,
        "NDATA" => NodeMessageKind::NData,
        "NDEATH" => NodeMessageKind::NDeath,
        "NCMD" => NodeMessageKind::NCmd,
        _ => return None,
    })
}

fn device_kind(message_type: &str) -> Option<DeviceMessageKind> {
    Some(match message_type {
        "DBIRTH" => DeviceMessageKind::DBirth,
        "DDATA" => DeviceMessageKind::DData,
        "DDEATH" => DeviceMessageKind::DDeath,
        "DCMD" => DeviceMessageKind::DCmd,
        _ => return None,
    })
}
