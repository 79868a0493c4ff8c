//! The Sparkplug B 3.0 *edge node* session as an I/O-free state machine: [`EdgeNode`].
//!
//! The caller owns the MQTT connection and the clock; [`EdgeNode`] owns the Sparkplug rules and hands back
//! [`Outgoing`] messages (topic, encoded payload, QoS, retain) to publish in the order given:
//!
//! 1. [`EdgeNode::connect`] before every MQTT CONNECT: the Will (NDEATH, QoS 1, not retained) with the next
//!    `bdSeq` (+1 per CONNECT, 255 wraps to 0) [tck-id-payloads-ndeath-will-message-qos],
//!    [tck-id-topics-nbirth-bdseq-increment].
//! 2. [`EdgeNode::birth`] after the CONNACK (and after the primary host is online, if the caller waits for
//!    one): NBIRTH with `seq` 0, the same `bdSeq` as the Will, `Node Control/Rebirth` = false and every node
//!    metric with name, alias, datatype and timestamp; then one DBIRTH per online device
//!    [tck-id-payloads-dbirth-order]. [`EdgeNode::on_connect`] does 1 and 2 at once.
//! 3. [`EdgeNode::data`] for new values: NDATA/DDATA with aliases only and only the metrics whose value
//!    changed (report by exception) [tck-id-payloads-alias-data-cmd-requirement],
//!    [tck-id-operational-behavior-data-publish-nbirth-change]. [`EdgeNode::historical`] for
//!    store-and-forward values (`is_historical`, original timestamps, current values untouched).
//! 4. [`EdgeNode::on_command`] for NCMD/DCMD: `Node Control/Rebirth` = true gives a new birth sequence with
//!    the same `bdSeq` [tck-id-operational-behavior-data-commands-rebirth-action-1..3]; bad input is a
//!    typed [`CommandError`] and leaves the session as it was.
//! 5. [`EdgeNode::device_death`] / [`EdgeNode::device_birth`] when a device goes away or comes back, and
//!    [`EdgeNode::disconnect`] for the NDEATH to publish before an intentional MQTT DISCONNECT
//!    [tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath].
//!
//! `seq` is one counter for the node and all its devices: 0 in every NBIRTH, +1 per message, 255 wraps to 0
//! [tck-id-payloads-sequence-num-incrementing]. NDEATH carries no `seq` [tck-id-payloads-ndeath-seq].
//!
//! Aliases: every node and device metric gets a unique alias (1, 2, ... in definition order, node metrics
//! first) [tck-id-payloads-alias-uniqueness]. `bdSeq` and `Node Control/Rebirth` have none: Rebirth must not
//! [tck-id-operational-behavior-data-commands-rebirth-name-aliases], and `bdSeq` never appears in DATA.
//!
//! ```
//! use uns_sparkplug::edge::{DeviceDef, EdgeNode, MetricDef};
//! use uns_sparkplug::{DataType, Value, decode};
//!
//! let devices = vec![DeviceDef::new("filler", vec![MetricDef::new("Speed", Value::Double(0.0))])];
//! let mut node = EdgeNode::new("acme-berlin", "line-1", Vec::new(), devices)?;
//! let (will, births) = node.on_connect(1_000)?; // set `will` in CONNECT, publish `births` after CONNACK
//! assert_eq!(births.len(), 2); // NBIRTH, DBIRTH
//! let ddata = node.data(Some("filler"), vec![("Speed".into(), Value::Double(600.0))], 2_000)?;
//! let payload = decode(&ddata.expect("Speed changed").payload)?;
//! assert_eq!(payload.seq, Some(2));
//! # let _ = (will, DataType::Double);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet};

use crate::error::{DecodeError, EncodeError};
use crate::payload::{Metric, Payload, decode, encode};
use crate::topic::{
    DeviceMessageKind, IdKind, NodeMessageKind, SparkplugTopic, TopicError, validate_id,
};
use crate::value::{DataType, PropertySet, Value};

/// The name of the birth/death sequence metric in NBIRTH and NDEATH.
pub const BD_SEQ: &str = "bdSeq";

/// The name of the rebirth request metric (in NBIRTH as `false`, in an NCMD as `true`).
pub const REBIRTH: &str = "Node Control/Rebirth";

/// The MQTT QoS of an [`Outgoing`] message (Sparkplug uses only these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qos {
    /// QoS 0: births, data and device deaths.
    AtMostOnce,
    /// QoS 1: the NDEATH (Will and explicit).
    AtLeastOnce,
}

/// One MQTT message to publish, already encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Where to publish (`to_string()` gives the MQTT topic).
    pub topic: SparkplugTopic,
    /// The Sparkplug protobuf bytes.
    pub payload: Vec<u8>,
    /// The MQTT QoS.
    pub qos: Qos,
    /// The MQTT retain flag (always `false` for edge node messages).
    pub retain: bool,
}

/// The definition of one metric an edge node or device reports: its name, datatype, initial value and
/// optional properties (e.g. an engineering unit), all sent in the birth certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    /// The metric name, unique within its node or device.
    pub name: String,
    /// The datatype every value of this metric has.
    pub datatype: DataType,
    /// The value reported in the first birth; `None` is Sparkplug null.
    pub initial: Option<Value>,
    /// Properties sent in births only (e.g. `engUnit`).
    pub properties: Option<PropertySet>,
}

impl MetricDef {
    /// A metric whose datatype is that of its initial value.
    pub fn new(name: impl Into<String>, initial: Value) -> MetricDef {
        MetricDef {
            name: name.into(),
            datatype: initial.datatype(),
            initial: Some(initial),
            properties: None,
        }
    }

    /// The same metric with birth properties.
    pub fn with_properties(mut self, properties: PropertySet) -> MetricDef {
        self.properties = Some(properties);
        self
    }
}

/// A device behind the edge node: its id and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDef {
    /// The Sparkplug device id.
    pub id: String,
    /// Its metrics.
    pub metrics: Vec<MetricDef>,
}

impl DeviceDef {
    /// A device with these metrics.
    pub fn new(id: impl Into<String>, metrics: Vec<MetricDef>) -> DeviceDef {
        DeviceDef {
            id: id.into(),
            metrics,
        }
    }
}

/// Why an edge node cannot be built or cannot send what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EdgeError {
    /// The group, edge node or a device id is not a valid Sparkplug id.
    #[error(transparent)]
    InvalidId(#[from] TopicError),
    /// Two metrics of one node or device share a name, or two devices share an id.
    #[error("duplicate {what} {name:?}")]
    Duplicate {
        /// `metric` or `device`.
        what: &'static str,
        /// The duplicated name or id.
        name: String,
    },
    /// A node metric uses a name the session itself sends (`bdSeq`, `Node Control/Rebirth`).
    #[error("metric name {0:?} is reserved for the Sparkplug session")]
    ReservedName(String),
    /// A metric's initial value does not have its declared datatype.
    #[error("metric {name:?} is declared {declared} but its value is a {value}")]
    DataTypeMismatch {
        /// The metric name.
        name: String,
        /// The declared datatype.
        declared: DataType,
        /// The datatype of the value given.
        value: DataType,
    },
    /// The device id is not one of this edge node's devices.
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    /// The metric name is not in the node's or device's birth certificate.
    #[error("unknown metric {name:?} on {owner}")]
    UnknownMetric {
        /// The edge node or device id.
        owner: String,
        /// The metric name.
        name: String,
    },
    /// DATA before the birth of the session (or of the device): a host could not resolve its aliases
    /// [tck-id-payloads-ndata-order], [tck-id-payloads-ddata-order].
    #[error("{0} has not been born in this session")]
    NotBorn(String),
    /// The payload could not be encoded (a bug in the metric definitions).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why an NCMD/DCMD was not acted on. The session state is unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The topic is not an NCMD/DCMD for this edge node.
    #[error("{topic} is not a command for this edge node")]
    WrongTopic {
        /// The topic as given.
        topic: String,
    },
    /// The payload is not a Sparkplug B protobuf payload.
    #[error("corrupt command payload: {0}")]
    Decode(#[from] DecodeError),
    /// A metric of the command is not in the birth certificate.
    #[error("command for unknown metric {0}")]
    UnknownMetric(String),
    /// A metric of the command is known but not writable (only `Node Control/Rebirth` is).
    #[error("metric {0} is not writable")]
    NotWritable(String),
    /// The rebirth metric does not carry a Boolean.
    #[error("{REBIRTH} must be a Boolean, got {0:?}")]
    RebirthNotBoolean(Option<Value>),
    /// A rebirth was requested before the session's first birth (nothing to re-send yet).
    #[error("rebirth requested before the first birth")]
    NotBorn,
    /// The births could not be encoded.
    #[error(transparent)]
    Edge(#[from] EdgeError),
}

/// The Sparkplug session of one edge node and its devices (see the module docs for the call order).
#[derive(Debug, Clone)]
pub struct EdgeNode {
    group: String,
    edge: String,
    node: Owner,
    devices: Vec<Owner>,
    /// Device id → index in `devices`.
    device_index: HashMap<String, usize>,
    /// The bdSeq the next [`EdgeNode::connect`] uses.
    next_bd_seq: u8,
    /// The bdSeq of the current connection (set by `connect`).
    bd_seq: Option<u8>,
    /// The seq of the next message.
    seq: u8,
    /// Whether the NBIRTH of the current connection has been produced.
    born: bool,
}

/// A node or a device: its metrics and whether it is online in this session.
#[derive(Debug, Clone)]
struct Owner {
    id: String,
    metrics: Vec<Slot>,
    by_name: HashMap<String, usize>,
    by_alias: HashMap<u64, usize>,
    /// Devices only: `false` after a DDEATH until the next [`EdgeNode::device_birth`].
    online: bool,
}

/// One metric's definition and its current value (what the next birth reports, and what report by
/// exception compares against).
#[derive(Debug, Clone)]
struct Slot {
    def: MetricDef,
    alias: u64,
    value: Option<Value>,
    timestamp: Option<u64>,
}

impl EdgeNode {
    /// Builds the session for `edge` in `group` with its node metrics and devices. Checks ids, unique names,
    /// reserved names and that every initial value has its declared datatype. `bdSeq` starts at 0
    /// [tck-id-topics-nbirth-bdseq-increment]; see [`EdgeNode::with_bd_seq`] to continue a persisted one.
    pub fn new(
        group: impl Into<String>,
        edge: impl Into<String>,
        node_metrics: Vec<MetricDef>,
        devices: Vec<DeviceDef>,
    ) -> Result<EdgeNode, EdgeError> {
        let group = group.into();
        let edge = edge.into();
        validate_id(IdKind::Group, &group)?;
        validate_id(IdKind::Edge, &edge)?;
        if let Some(reserved) = node_metrics
            .iter()
            .find(|metric| metric.name == BD_SEQ || metric.name == REBIRTH)
        {
            return Err(EdgeError::ReservedName(reserved.name.clone()));
        }
        let mut next_alias = 1u64;
        let node = Owner::new(edge.clone(), node_metrics, &mut next_alias)?;
        let mut device_index = HashMap::new();
        let mut owners = Vec::with_capacity(devices.len());
        for device in devices {
            validate_id(IdKind::Device, &device.id)?;
            if device_index
                .insert(device.id.clone(), owners.len())
                .is_some()
            {
                return Err(EdgeError::Duplicate {
                    what: "device",
                    name: device.id,
                });
            }
            owners.push(Owner::new(device.id, device.metrics, &mut next_alias)?);
        }
        Ok(EdgeNode {
            group,
            edge,
            node,
            devices: owners,
            device_index,
            next_bd_seq: 0,
            bd_seq: None,
            seq: 0,
            born: false,
        })
    }

    /// Continues from a persisted `bdSeq`: the next [`EdgeNode::connect`] uses `next`.
    pub fn with_bd_seq(mut self, next: u8) -> EdgeNode {
        self.next_bd_seq = next;
        self
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The edge node id.
    pub fn edge(&self) -> &str {
        &self.edge
    }

    /// The bdSeq of the current connection (`None` before the first [`EdgeNode::connect`]).
    pub fn bd_seq(&self) -> Option<u8> {
        self.bd_seq
    }

    /// The bdSeq the next [`EdgeNode::connect`] will use (what to persist).
    pub fn next_bd_seq(&self) -> u8 {
        self.next_bd_seq
    }

    /// The seq the next message will carry.
    pub fn seq(&self) -> u8 {
        self.seq
    }

    /// Whether the NBIRTH of the current connection has been produced (DATA may flow).
    pub fn is_born(&self) -> bool {
        self.born
    }

    /// The device ids, in definition order.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|device| device.id.as_str())
    }

    /// The topic to subscribe to for node commands [tck-id-message-flow-edge-node-ncmd-subscribe].
    pub fn ncmd_topic(&self) -> SparkplugTopic {
        self.node_topic(NodeMessageKind::NCmd)
    }

    /// The MQTT filter for this node's device commands (`spBv1.0/{group}/DCMD/{edge}/+`).
    pub fn dcmd_filter(&self) -> String {
        format!(
            "{}/{}/{}/{}/+",
            crate::topic::NAMESPACE,
            self.group,
            DeviceMessageKind::DCmd,
            self.edge
        )
    }

    /// The alias of a metric (`device` `None` for a node metric).
    pub fn alias(&self, device: Option<&str>, name: &str) -> Option<u64> {
        let owner = self.owner(device).ok()?;
        owner.by_name.get(name).map(|&idx| owner.metrics[idx].alias)
    }

    /// The metric with this alias: the device it belongs to (`None` for the node) and its definition.
    pub fn metric_by_alias(&self, alias: u64) -> Option<(Option<&str>, &MetricDef)> {
        if let Some(&idx) = self.node.by_alias.get(&alias) {
            return Some((None, &self.node.metrics[idx].def));
        }
        self.devices.iter().find_map(|device| {
            device
                .by_alias
                .get(&alias)
                .map(|&idx| (Some(device.id.as_str()), &device.metrics[idx].def))
        })
    }

    /// Starts a new MQTT connection: takes the next bdSeq (then +1, 255 wraps to 0) and returns the Will to
    /// put in the CONNECT packet: NDEATH with `bdSeq` (Int64), QoS 1, not retained, no `seq`
    /// [tck-id-payloads-ndeath-will-message], [tck-id-payloads-ndeath-will-message-qos],
    /// [tck-id-payloads-ndeath-will-message-retain], [tck-id-payloads-ndeath-seq].
    pub fn connect(&mut self, now_ms: u64) -> Result<Outgoing, EdgeError> {
        let bd_seq = self.next_bd_seq;
        self.next_bd_seq = bd_seq.wrapping_add(1);
        self.bd_seq = Some(bd_seq);
        self.born = false;
        self.ndeath(bd_seq, now_ms)
    }

    /// [`EdgeNode::connect`] then [`EdgeNode::birth`]: the Will for the CONNECT packet and the births to
    /// publish once the CONNACK arrived.
    pub fn on_connect(&mut self, now_ms: u64) -> Result<(Outgoing, Vec<Outgoing>), EdgeError> {
        let will = self.connect(now_ms)?;
        let births = self.birth(now_ms)?;
        Ok((will, births))
    }

    /// The birth sequence of the current connection: NBIRTH (seq 0) then a DBIRTH per online device.
    /// Call it after the CONNACK; calling it again is a rebirth with the same bdSeq
    /// [tck-id-operational-behavior-data-commands-rebirth-action-3]. Before any [`EdgeNode::connect`] it
    /// behaves as if `connect` had been called (so a caller that sets no Will still gets a valid bdSeq).
    pub fn birth(&mut self, now_ms: u64) -> Result<Vec<Outgoing>, EdgeError> {
        let bd_seq = match self.bd_seq {
            Some(bd_seq) => bd_seq,
            None => {
                self.connect(now_ms)?;
                self.bd_seq.unwrap_or(0)
            }
        };
        self.seq = 0;
        let mut metrics = vec![
            Metric {
                timestamp: Some(now_ms),
                ..Metric::new(BD_SEQ, Value::Int64(i64::from(bd_seq)))
            },
            Metric {
                timestamp: Some(now_ms),
                ..Metric::new(REBIRTH, Value::Boolean(false))
            },
        ];
        metrics.extend(self.node.birth_metrics(now_ms));
        let nbirth = self.message(self.node_topic(NodeMessageKind::NBirth), metrics, now_ms)?;
        self.born = true;
        let mut births = vec![nbirth];
        for device_idx in 0..self.devices.len() {
            if self.devices[device_idx].online {
                births.push(self.dbirth(device_idx, now_ms)?);
            }
        }
        Ok(births)
    }

    /// NDATA (`device` `None`) or DDATA with the values that differ from the last reported ones, by alias
    /// only, each with `now_ms` as its timestamp; `Ok(None)` when nothing changed. The new values become
    /// the ones the next birth reports.
    pub fn data(
        &mut self,
        device: Option<&str>,
        values: Vec<(String, Value)>,
        now_ms: u64,
    ) -> Result<Option<Outgoing>, EdgeError> {
        let values = values
            .into_iter()
            .map(|(name, value)| (name, Some(value), now_ms))
            .collect();
        self.data_at(device, values, now_ms)
    }

    /// Like [`EdgeNode::data`], with a timestamp per value (when it was sampled) and null values allowed.
    pub fn data_at(
        &mut self,
        device: Option<&str>,
        values: Vec<(String, Option<Value>, u64)>,
        now_ms: u64,
    ) -> Result<Option<Outgoing>, EdgeError> {
        self.check_born(device)?;
        let owner_idx = self.owner_idx(device)?;
        let owner = self.owner_mut(owner_idx);
        let mut metrics = Vec::new();
        for (name, value, timestamp) in values {
            let slot = owner.slot_mut(&name)?;
            check_value(&slot.def, value.as_ref())?;
            if slot.value == value {
                continue;
            }
            slot.value.clone_from(&value);
            slot.timestamp = Some(timestamp);
            metrics.push(data_metric(slot.alias, value, timestamp, false));
        }
        if metrics.is_empty() {
            return Ok(None);
        }
        let topic = self.data_topic(device);
        self.message(topic, metrics, now_ms).map(Some)
    }

    /// Updates current values without producing a message: what an edge node does while it cannot
    /// publish (the values go to its store-and-forward buffer), so the next birth reports them and report
    /// by exception compares against them. Works whether or not the session is born.
    pub fn record(
        &mut self,
        device: Option<&str>,
        values: Vec<(String, Option<Value>, u64)>,
    ) -> Result<(), EdgeError> {
        let owner_idx = self.owner_idx(device)?;
        let owner = self.owner_mut(owner_idx);
        for (name, value, _) in &values {
            check_value(&owner.slot(name)?.def, value.as_ref())?;
        }
        for (name, value, timestamp) in values {
            let slot = owner.slot_mut(&name)?;
            slot.value = value;
            slot.timestamp = Some(timestamp);
        }
        Ok(())
    }

    /// NDATA/DDATA of stored values (store and forward): every value is sent, by alias, with its original
    /// timestamp and `is_historical = true`, in the order given; the current values are not touched, so
    /// report by exception and the next birth are unaffected. `Ok(None)` when `values` is empty.
    pub fn historical(
        &mut self,
        device: Option<&str>,
        values: Vec<(String, Option<Value>, u64)>,
        now_ms: u64,
    ) -> Result<Option<Outgoing>, EdgeError> {
        self.check_born(device)?;
        let owner = self.owner(device)?;
        let mut metrics = Vec::with_capacity(values.len());
        for (name, value, timestamp) in values {
            let slot = owner.slot(&name)?;
            check_value(&slot.def, value.as_ref())?;
            metrics.push(data_metric(slot.alias, value, timestamp, true));
        }
        if metrics.is_empty() {
            return Ok(None);
        }
        let topic = self.data_topic(device);
        self.message(topic, metrics, now_ms).map(Some)
    }

    /// DDEATH for a device the edge node lost contact with [tck-id-operational-behavior-device-ddeath]; the
    /// device is left out of births until [`EdgeNode::device_birth`].
    pub fn device_death(&mut self, device: &str, now_ms: u64) -> Result<Outgoing, EdgeError> {
        self.check_born(None)?;
        let device_idx = self.device_idx(device)?;
        self.devices[device_idx].online = false;
        let topic = self.device_topic(DeviceMessageKind::DDeath, device);
        self.message(topic, Vec::new(), now_ms)
    }

    /// DBIRTH for a device that is back after [`EdgeNode::device_death`].
    pub fn device_birth(&mut self, device: &str, now_ms: u64) -> Result<Outgoing, EdgeError> {
        self.check_born(None)?;
        let device_idx = self.device_idx(device)?;
        self.devices[device_idx].online = true;
        self.dbirth(device_idx, now_ms)
    }

    /// Handles an NCMD/DCMD for this node. `Node Control/Rebirth` = true gives the full birth sequence
    /// (stop DATA, NBIRTH + DBIRTHs with the same bdSeq) [tck-id-operational-behavior-data-commands-rebirth-
    /// action-1], [..-action-2], [..-action-3]; `false` is a no-op. Metrics are matched by name or alias.
    /// Anything else (corrupt payload, unknown or read-only metric, another node's topic) is an error and
    /// changes nothing; the caller logs and counts it.
    pub fn on_command(
        &mut self,
        topic: &SparkplugTopic,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Vec<Outgoing>, CommandError> {
        let device = match topic {
            SparkplugTopic::Node {
                group,
                kind: NodeMessageKind::NCmd,
                edge,
            } if *group == self.group && *edge == self.edge => None,
            SparkplugTopic::Device {
                group,
                kind: DeviceMessageKind::DCmd,
                edge,
                device,
            } if *group == self.group && *edge == self.edge => Some(device.as_str()),
            _ => {
                return Err(CommandError::WrongTopic {
                    topic: topic.to_string(),
                });
            }
        };
        let command = decode(payload)?;
        let owner = self
            .owner(device)
            .map_err(|_| CommandError::UnknownMetric(format!("device {device:?}")))?;
        let mut rebirth = false;
        for metric in &command.metrics {
            let is_rebirth = device.is_none() && metric.name.as_deref() == Some(REBIRTH);
            if is_rebirth {
                match &metric.value {
                    Some(Value::Boolean(value)) => rebirth |= value,
                    other => return Err(CommandError::RebirthNotBoolean(other.clone())),
                }
                continue;
            }
            let known = match (&metric.name, metric.alias) {
                (Some(name), _) => owner.by_name.contains_key(name),
                (None, Some(alias)) => owner.by_alias.contains_key(&alias),
                (None, None) => false,
            };
            return Err(if known {
                CommandError::NotWritable(metric.label())
            } else {
                CommandError::UnknownMetric(metric.label())
            });
        }
        if !rebirth {
            return Ok(Vec::new());
        }
        if self.bd_seq.is_none() {
            return Err(CommandError::NotBorn);
        }
        Ok(self.birth(now_ms)?)
    }

    /// The NDEATH to publish before an intentional MQTT DISCONNECT (same bdSeq as the Will, QoS 1, not
    /// retained) [tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath]. The session is
    /// over: DATA is refused until the next connect and birth.
    pub fn disconnect(&mut self, now_ms: u64) -> Result<Outgoing, EdgeError> {
        let bd_seq = self
            .bd_seq
            .ok_or_else(|| EdgeError::NotBorn(self.edge.clone()))?;
        self.born = false;
        self.ndeath(bd_seq, now_ms)
    }

    /// Marks the session as lost (the connection dropped without an NDEATH of ours): DATA is refused until
    /// the next connect and birth.
    pub fn connection_lost(&mut self) {
        self.born = false;
    }

    fn ndeath(&self, bd_seq: u8, now_ms: u64) -> Result<Outgoing, EdgeError> {
        let payload = Payload {
            timestamp: Some(now_ms),
            seq: None,
            metrics: vec![Metric {
                timestamp: Some(now_ms),
                ..Metric::new(BD_SEQ, Value::Int64(i64::from(bd_seq)))
            }],
            ..Payload::default()
        };
        Ok(Outgoing {
            topic: self.node_topic(NodeMessageKind::NDeath),
            payload: encode(&payload)?,
            qos: Qos::AtLeastOnce,
            retain: false,
        })
    }

    fn dbirth(&mut self, device_idx: usize, now_ms: u64) -> Result<Outgoing, EdgeError> {
        let device = &self.devices[device_idx];
        let metrics = device.birth_metrics(now_ms);
        let topic = self.device_topic(DeviceMessageKind::DBirth, &device.id);
        self.message(topic, metrics, now_ms)
    }

    /// A QoS 0, not retained message with the next seq.
    fn message(
        &mut self,
        topic: SparkplugTopic,
        metrics: Vec<Metric>,
        now_ms: u64,
    ) -> Result<Outgoing, EdgeError> {
        let payload = Payload {
            timestamp: Some(now_ms),
            seq: Some(u64::from(self.seq)),
            metrics,
            ..Payload::default()
        };
        let payload = encode(&payload)?;
        self.seq = self.seq.wrapping_add(1);
        Ok(Outgoing {
            topic,
            payload,
            qos: Qos::AtMostOnce,
            retain: false,
        })
    }

    fn check_born(&self, device: Option<&str>) -> Result<(), EdgeError> {
        if !self.born {
            return Err(EdgeError::NotBorn(self.edge.clone()));
        }
        if let Some(device) = device {
            let device_idx = self.device_idx(device)?;
            if !self.devices[device_idx].online {
                return Err(EdgeError::NotBorn(device.to_owned()));
            }
        }
        Ok(())
    }

    fn device_idx(&self, device: &str) -> Result<usize, EdgeError> {
        self.device_index
            .get(device)
            .copied()
            .ok_or_else(|| EdgeError::UnknownDevice(device.to_owned()))
    }

    /// `None` is the node itself, `Some(idx)` a device.
    fn owner_idx(&self, device: Option<&str>) -> Result<Option<usize>, EdgeError> {
        device.map(|device| self.device_idx(device)).transpose()
    }

    fn owner(&self, device: Option<&str>) -> Result<&Owner, EdgeError> {
        Ok(match self.owner_idx(device)? {
            None => &self.node,
            Some(device_idx) => &self.devices[device_idx],
        })
    }

    fn owner_mut(&mut self, owner_idx: Option<usize>) -> &mut Owner {
        match owner_idx {
            None => &mut self.node,
            Some(device_idx) => &mut self.devices[device_idx],
        }
    }

    fn node_topic(&self, kind: NodeMessageKind) -> SparkplugTopic {
        SparkplugTopic::Node {
            group: self.group.clone(),
            kind,
            edge: self.edge.clone(),
        }
    }

    fn device_topic(&self, kind: DeviceMessageKind, device: &str) -> SparkplugTopic {
        SparkplugTopic::Device {
            group: self.group.clone(),
            kind,
            edge: self.edge.clone(),
            device: device.to_owned(),
        }
    }

    fn data_topic(&self, device: Option<&str>) -> SparkplugTopic {
        match device {
            None => self.node_topic(NodeMessageKind::NData),
            Some(device) => self.device_topic(DeviceMessageKind::DData, device),
        }
    }
}

impl Owner {
    fn new(id: String, defs: Vec<MetricDef>, next_alias: &mut u64) -> Result<Owner, EdgeError> {
        let mut names = HashSet::new();
        let mut metrics = Vec::with_capacity(defs.len());
        for def in defs {
            if !names.insert(def.name.clone()) {
                return Err(EdgeError::Duplicate {
                    what: "metric",
                    name: def.name,
                });
            }
            check_value(&def, def.initial.as_ref())?;
            metrics.push(Slot {
                alias: *next_alias,
                value: def.initial.clone(),
                timestamp: None,
                def,
            });
            *next_alias += 1;
        }
        let by_name = metrics
            .iter()
            .enumerate()
            .map(|(idx, slot)| (slot.def.name.clone(), idx))
            .collect();
        let by_alias = metrics
            .iter()
            .enumerate()
            .map(|(idx, slot)| (slot.alias, idx))
            .collect();
        Ok(Owner {
            id,
            metrics,
            by_name,
            by_alias,
            online: true,
        })
    }

    fn slot(&self, name: &str) -> Result<&Slot, EdgeError> {
        match self.by_name.get(name) {
            Some(&idx) => Ok(&self.metrics[idx]),
            None => Err(self.unknown(name)),
        }
    }

    fn slot_mut(&mut self, name: &str) -> Result<&mut Slot, EdgeError> {
        match self.by_name.get(name) {
            Some(&idx) => Ok(&mut self.metrics[idx]),
            None => Err(self.unknown(name)),
        }
    }

    fn unknown(&self, name: &str) -> EdgeError {
        EdgeError::UnknownMetric {
            owner: self.id.clone(),
            name: name.to_owned(),
        }
    }

    /// Birth metrics: name, alias, datatype, timestamp, properties and the current value
    /// [tck-id-payloads-alias-birth-requirement], [tck-id-payloads-metric-datatype-req],
    /// [tck-id-payloads-name-birth-data-requirement].
    fn birth_metrics(&self, now_ms: u64) -> Vec<Metric> {
        self.metrics
            .iter()
            .map(|slot| Metric {
                name: Some(slot.def.name.clone()),
                alias: Some(slot.alias),
                timestamp: Some(slot.timestamp.unwrap_or(now_ms)),
                datatype: Some(slot.def.datatype),
                properties: slot.def.properties.clone(),
                value: slot.value.clone(),
                ..Metric::default()
            })
            .collect()
    }
}

/// A DATA metric: alias only, no name and no datatype [tck-id-payloads-alias-data-cmd-requirement],
/// [tck-id-payloads-metric-datatype-not-req], with its timestamp.
fn data_metric(alias: u64, value: Option<Value>, timestamp: u64, is_historical: bool) -> Metric {
    Metric {
        alias: Some(alias),
        timestamp: Some(timestamp),
        is_historical,
        value,
        ..Metric::default()
    }
}

fn check_value(def: &MetricDef, value: Option<&Value>) -> Result<(), EdgeError> {
    match value {
        Some(value) if value.datatype() != def.datatype => Err(EdgeError::DataTypeMismatch {
            name: def.name.clone(),
            declared: def.datatype,
            value: value.datatype(),
        }),
        _ => Ok(()),
    }
}
