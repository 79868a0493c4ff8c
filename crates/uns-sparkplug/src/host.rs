//! The session logic of a Sparkplug B 3.0 *primary host application*, free of I/O.
//!
//! [`HostSession`] is a state machine: the caller owns the MQTT connection and feeds it every message
//! received on `spBv1.0/#` ([`HostSession::handle`]), calls [`HostSession::poll`] when
//! [`HostSession::next_deadline`] is reached, and sends what comes back. Time is passed in ([`Now`]): a
//! monotonic clock for timers and the UTC wall clock for timestamps, so tests drive it without sleeping.
//!
//! What it does (requirement ids of the Sparkplug 3.0 specification in brackets):
//! - **STATE**: [`HostSession::connect`] gives the Will and the birth for `spBv1.0/STATE/{host_id}`, JSON
//!   `{"online":bool,"timestamp":ms}`, QoS 1, retained, with the same timestamp in both
//!   [tck-id-host-topic-phid-birth-payload-timestamp]. Seeing its own `online:false` while connected, after
//!   its birth came back, it publishes the birth again, once until that one comes back (a takeover or
//!   a stale Will must not leave edge nodes thinking it is gone); a death that arrives before its birth
//!   came back is the retained one its subscriptions bring, which the birth replaces anyway.
//! - **Birth cache**: every NBIRTH/DBIRTH is kept per node and device: metric names, aliases, datatypes and
//!   engineering units, so DATA metrics carrying only an alias are resolved and typed.
//! - **Sequence numbers**: one counter per edge node across the node and its devices, 0..=255 with wrap
//!   [tck-id-payloads-sequence-num-incrementing]. An out-of-order message starts the reorder timer
//!   [tck-id-operational-behavior-host-reordering-start]; if the missing message arrives in time, normal
//!   operation continues [tck-id-operational-behavior-host-reordering-success]; if not, a
//!   `Node Control/Rebirth` NCMD goes out [tck-id-operational-behavior-host-reordering-rebirth].
//! - **Death**: an NDEATH is honoured only when its bdSeq matches the current NBIRTH's
//!   [tck-id-payloads-ndeath-bdseq]; then the node, its devices and all their metrics go stale
//!   [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-tags-stale]. A DDEATH makes
//!   the device's metrics stale, at the DDEATH's timestamp
//!   [tck-id-operational-behavior-edge-node-termination-host-action-ddeath-devices-tags-stale].
//! - **Unknown data**: data from a node or device without a birth, or with an alias or name the birth did
//!   not declare, is never guessed at: it is rejected and a rebirth is requested (at most once per
//!   [`HostConfig::rebirth_interval`] per node).
//!
//! The output of every call is a list of [`HostEvent`]s in the order they happened.
//!
//! # Leniency
//!
//! The encoder in this crate follows the specification; real peers do not always. Each deviation the host
//! tolerates is one named field of [`Leniency`], all on by default ([`Leniency::strict`] turns them off).
//! Values in births, and DATA values that carry their datatype, are typed by [`crate::decode`], which
//! always accepts an integer in either field (see [`Value::from_raw`]); the integer leniencies below apply
//! to DATA values that arrive untyped and are typed through the birth's datatype.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{DecodeError, ValueError};
use crate::payload::{Metric, Payload, decode, encode};
use crate::topic::{
    DeviceMessageKind, IdKind, NodeMessageKind, SparkplugTopic, TopicError, validate_id,
};
use crate::value::{DataType, RawValue, Value};

/// The name of the birth/death sequence metric [tck-id-payloads-nbirth-bdseq].
pub const BDSEQ_METRIC: &str = "bdSeq";

/// The metric a host writes `true` to in an NCMD to ask for a rebirth
/// [tck-id-operational-behavior-data-commands-rebirth-name].
pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";

/// The property that carries a metric's engineering unit, as Ignition and Tahu name it. The host also
/// looks for the names in [`UNIT_PROPERTIES`].
pub const UNIT_PROPERTY: &str = "engUnit";

/// Every property name read as the engineering unit, in order of preference.
pub const UNIT_PROPERTIES: [&str; 5] = ["engUnit", "EngUnit", "engineeringUnit", "unit", "Unit"];

/// The property that carries a value's quality code (0 bad, 192 good, 500 stale).
pub const QUALITY_PROPERTY: &str = "Quality";

/// Deviations from the specification that the host accepts because real peers produce them. Each is on
/// in [`Leniency::default`] and off in [`Leniency::strict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leniency {
    /// Accept an integer value in either protobuf field: UInt32 in `int_value` (the spec puts it in
    /// `long_value`; Tahu Java, C and older peers use `int_value`), or an Int8..Int32/UInt8/UInt16 in
    /// `long_value`.
    pub integer_in_either_field: bool,
    /// Accept a negative Int8/Int16 as its raw 8/16-bit pattern (-1 as 0xFF / 0xFFFF) besides the spec's
    /// sign extension to 32 bits (0xFFFF_FFFF). Strictly, 0xFF is 255: out of range for Int8.
    pub small_int_unsigned_pattern: bool,
    /// Honour an NDEATH that arrives at QoS 0. The spec asks for the Will at QoS 1
    /// [tck-id-payloads-ndeath-will-message-qos]; Tahu JS registers it at QoS 0.
    pub will_qos0: bool,
    /// Accept the bdSeq metric with any integer datatype (UInt64 from pysparkplug and Tahu JS, Int32,
    /// UInt32 ...). The spec says Int64.
    pub bdseq_any_integer_type: bool,
    /// Honour an NDEATH whose bdSeq is the NBIRTH's plus one (mod 256): pysparkplug registers the Will for
    /// the *next* session. The only other NDEATH with that value comes from a later session that died
    /// before its NBIRTH arrived, so the node is dead either way.
    pub ndeath_next_bdseq: bool,
    /// Honour an NDEATH without a bdSeq metric, and accept an NBIRTH without one (then any NDEATH of the
    /// node is honoured). Note that Tahu JS always sends bdSeq 0, which matches and needs no leniency, but
    /// loses the protection bdSeq gives against a late Will.
    pub missing_bdseq: bool,
    /// Accept births and data without a sequence number (mqtt-spb-wrapper 2.x sends none): such a
    /// message is applied as it arrives, without reordering or gap detection. A message whose `seq` is
    /// present but outside 0..=255 is still rejected.
    pub missing_seq: bool,
    /// Resolve a DATA metric named `{name}` to a birth metric named `DATA/{name}` when no birth metric
    /// has the plain name: mqtt-spb-wrapper 2.x prefixes data metrics with `DATA/` in births only.
    pub data_prefix_in_birth: bool,
}

impl Default for Leniency {
    fn default() -> Self {
        Self {
            integer_in_either_field: true,
            small_int_unsigned_pattern: true,
            will_qos0: true,
            bdseq_any_integer_type: true,
            ndeath_next_bdseq: true,
            missing_bdseq: true,
            missing_seq: true,
            data_prefix_in_birth: true,
        }
    }
}

impl Leniency {
    /// Every deviation refused: the host accepts only what the specification allows.
    pub fn strict() -> Self {
        Self {
            integer_in_either_field: false,
            small_int_unsigned_pattern: false,
            will_qos0: false,
            bdseq_any_integer_type: false,
            ndeath_next_bdseq: false,
            missing_bdseq: false,
            missing_seq: false,
            data_prefix_in_birth: false,
        }
    }
}

/// The settings of a [`HostSession`].
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// The Sparkplug host id: the last level of `spBv1.0/STATE/{host_id}`.
    pub host_id: String,
    /// How long an out-of-order message waits for the missing ones before a rebirth is requested
    /// [tck-id-operational-behavior-host-reordering-param].
    pub reorder_timeout: Duration,
    /// The shortest time between two rebirth requests to one edge node, so a node that keeps sending data
    /// the host cannot use is not flooded with NCMDs.
    pub rebirth_interval: Duration,
    /// Messages larger than this are rejected before decoding.
    pub max_payload_bytes: usize,
    /// Births with more metrics than this are rejected (the birth cache is memory the peer controls).
    pub max_birth_metrics: usize,
    /// An edge node's births in effect (its NBIRTH plus every device's DBIRTH) may declare this many
    /// metrics together; a birth that would go beyond is rejected.
    pub max_node_metrics: usize,
    /// An edge node's births in effect may hold this many bytes of metric names and units together
    /// (what the birth cache keeps of them); a birth that would go beyond is rejected.
    pub max_node_bytes: usize,
    /// Edge nodes the host keeps state for (born ones, and unborn ones it asked for a rebirth). A
    /// message naming a new node beyond it first makes room by forgetting unborn nodes whose rebirth
    /// wait is over; if none, an NBIRTH is rejected and data gets no rebirth request, so a flood of
    /// made-up node ids cannot grow the host without bound.
    pub max_nodes: usize,
    /// Out-of-order messages held per node while waiting; when full, the wait ends at once.
    pub max_reorder_messages: usize,
    /// Which deviations from the spec to accept.
    pub leniency: Leniency,
}

impl HostConfig {
    /// Defaults for `host_id`: reorder timeout 2 s, at most one rebirth request per node every 5 s,
    /// payloads up to 1 MiB, births up to 100 000 metrics, nodes up to 100 000 metrics and 8 MiB of
    /// names and units, 10 000 nodes, 64 held messages, lenient.
    pub fn new(host_id: impl Into<String>) -> Self {
        Self {
            host_id: host_id.into(),
            reorder_timeout: Duration::from_secs(2),
            rebirth_interval: Duration::from_secs(5),
            max_payload_bytes: 1024 * 1024,
            max_birth_metrics: 100_000,
            max_node_metrics: 100_000,
            max_node_bytes: 8 * 1024 * 1024,
            max_nodes: 10_000,
            max_reorder_messages: 64,
            leniency: Leniency::default(),
        }
    }
}

/// The time at a call: `monotonic` for timers (any origin, never goes back, e.g. the elapsed time since
/// the service started) and `utc_ms` for timestamps (ms since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub monotonic: Duration,
    /// Wall-clock time, ms since the Unix epoch, UTC.
    pub utc_ms: u64,
}

/// MQTT QoS of an incoming or outgoing message (Sparkplug never uses QoS 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// QoS 0.
    AtMostOnce,
    /// QoS 1.
    AtLeastOnce,
}

/// One message the host must publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The MQTT topic.
    pub topic: String,
    /// The payload bytes (JSON for STATE, protobuf for NCMD).
    pub payload: Vec<u8>,
    /// The QoS to publish at.
    pub qos: Qos,
    /// The retain flag.
    pub retain: bool,
}

/// One message received on `spBv1.0/#`.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The MQTT topic.
    pub topic: &'a str,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The QoS it was delivered at (the lower of the publisher's and the host's subscription).
    pub qos: Qos,
}

/// What to do right after each MQTT connect: register `will` in the CONNECT packet, subscribe to
/// `subscriptions`, then publish `birth` [tck-id-host-topic-phid-birth-required].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectMessages {
    /// The STATE death certificate for the CONNECT packet's Will.
    pub will: Outgoing,
    /// The STATE birth, with the Will's timestamp.
    pub birth: Outgoing,
    /// The host's own STATE topic and `spBv1.0/#` [tck-id-host-topic-phid-birth-sub-required].
    pub subscriptions: Vec<String>,
}

/// An edge node: group id and edge node id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// The Sparkplug group id.
    pub group: Arc<str>,
    /// The edge node id.
    pub edge: Arc<str>,
}

impl NodeId {
    /// A node id from its two parts.
    pub fn new(group: &str, edge: &str) -> Self {
        Self {
            group: Arc::from(group),
            edge: Arc::from(edge),
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.edge)
    }
}

/// A metric value received in a birth or a DATA message, resolved to its name and datatype.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricUpdate {
    /// The edge node.
    pub node: NodeId,
    /// The device, or `None` for a metric of the edge node itself.
    pub device: Option<Arc<str>>,
    /// The metric name from the birth.
    pub name: Arc<str>,
    /// The datatype from the birth.
    pub datatype: DataType,
    /// The value, typed by the birth's datatype; `None` is Sparkplug null.
    pub value: Option<Value>,
    /// Source time: the metric's timestamp, else the payload's, else the host's clock; ms since the epoch.
    pub timestamp: u64,
    /// A historical value (store-and-forward): it must not overwrite the current value.
    pub is_historical: bool,
    /// A transient value: not to be historized.
    pub is_transient: bool,
    /// Whether it came from a birth (a full snapshot) rather than a DATA message.
    pub from_birth: bool,
    /// The engineering unit from the metric's properties (see [`UNIT_PROPERTIES`]), in the DATA message or
    /// else in the birth.
    pub unit: Option<Arc<str>>,
    /// The `Quality` property's code when the message carried one (0 bad, 192 good, 500 stale).
    pub quality: Option<i64>,
}

/// Something the host observed or must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    /// A node (device `None`) or a device was born: its metrics follow as [`HostEvent::Metric`].
    Online {
        /// The edge node.
        node: NodeId,
        /// The device, for a DBIRTH.
        device: Option<Arc<str>>,
    },
    /// A metric value.
    Metric(MetricUpdate),
    /// Every metric of the node (device `None`) or of one device is stale from `timestamp` on: the node
    /// or device is offline. An NDEATH gives one event for the node and one per online device.
    Stale {
        /// The edge node.
        node: NodeId,
        /// The device, or `None` for the node's own metrics.
        device: Option<Arc<str>>,
        /// When it went stale, ms since the epoch.
        timestamp: u64,
    },
    /// Publish this `Node Control/Rebirth` NCMD.
    Rebirth {
        /// The node asked to rebirth.
        node: NodeId,
        /// The NCMD.
        message: Outgoing,
    },
    /// Publish this message (the STATE birth again, after the host saw its own death).
    Publish(Outgoing),
    /// A message, or part of one, could not be used.
    Rejected(Rejected),
}

/// A message (or one metric of it) the host could not use, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The topic it arrived on.
    pub topic: String,
    /// What was wrong.
    pub reason: Rejection,
}

/// Why the host could not use a message or a metric.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The payload is larger than [`HostConfig::max_payload_bytes`].
    #[error("payload of {len} bytes exceeds the limit of {limit}")]
    Oversize {
        /// Payload length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The topic is not a Sparkplug B topic.
    #[error("bad topic: {0}")]
    Topic(#[from] TopicError),
    /// The payload is not a Sparkplug B protobuf payload.
    #[error("bad payload: {0}")]
    Payload(#[from] DecodeError),
    /// A message that must carry a sequence number 0..=255 carries none or another value
    /// [tck-id-payloads-sequence-num-always-included].
    #[error("sequence number {seq:?} is missing or outside 0..=255")]
    BadSeq {
        /// The `seq` field as received.
        seq: Option<u64>,
    },
    /// Messages were lost: the reorder timeout passed without the expected sequence number.
    #[error("sequence gap: expected seq {expected}, the next one received was {received}")]
    SeqGap {
        /// The sequence number that never came.
        expected: u8,
        /// The sequence number processed instead.
        received: u8,
    },
    /// A birth declares more metrics than [`HostConfig::max_birth_metrics`].
    #[error("birth with {n_metrics} metrics exceeds the limit of {limit}")]
    BirthTooLarge {
        /// Metrics in the birth.
        n_metrics: usize,
        /// The limit.
        limit: usize,
    },
    /// A birth would take its edge node's births in effect beyond [`HostConfig::max_node_metrics`]
    /// or [`HostConfig::max_node_bytes`].
    #[error(
        "birth would give the edge node {n_metrics} metrics and {n_bytes} bytes of names and units; \
         the limits are {limit_metrics} and {limit_bytes} (max_node_metrics, max_node_bytes)"
    )]
    NodeTooLarge {
        /// Metrics of the node's births with this one.
        n_metrics: usize,
        /// Bytes of names and units of the node's births with this one.
        n_bytes: usize,
        /// [`HostConfig::max_node_metrics`].
        limit_metrics: usize,
        /// [`HostConfig::max_node_bytes`].
        limit_bytes: usize,
    },
    /// An NBIRTH of a new edge node while the host keeps [`HostConfig::max_nodes`] nodes.
    #[error("the host keeps {limit} edge nodes already (max_nodes); this one is not taken on")]
    TooManyNodes {
        /// [`HostConfig::max_nodes`].
        limit: usize,
    },
    /// A birth metric has no name [tck-id-payloads-name-requirement].
    #[error("birth metric {index} has no name")]
    UnnamedBirthMetric {
        /// Position in the birth, from 0.
        index: usize,
    },
    /// Two birth metrics share an alias [tck-id-payloads-alias-uniqueness].
    #[error("alias {alias} is used by both {first:?} and {second:?}")]
    DuplicateAlias {
        /// The alias.
        alias: u64,
        /// The first metric with it.
        first: String,
        /// The second metric with it.
        second: String,
    },
    /// An NBIRTH or NDEATH has no bdSeq metric [tck-id-payloads-nbirth-bdseq] and
    /// [`Leniency::missing_bdseq`] is off.
    #[error("no bdSeq metric")]
    MissingBdSeq,
    /// The bdSeq metric is not an Int64 (with [`Leniency::bdseq_any_integer_type`] off: or not an
    /// integer at all), or is null.
    #[error("bdSeq metric: {0}")]
    BadBdSeq(String),
    /// Data or a DBIRTH from an edge node that is not online (no NBIRTH seen, or dead since).
    #[error("no NBIRTH from this edge node is in effect")]
    UnknownNode,
    /// Data or a DDEATH for a device that is not online.
    #[error("no DBIRTH for device {device:?} is in effect")]
    UnknownDevice {
        /// The device id.
        device: String,
    },
    /// A DATA metric whose alias or name the birth did not declare.
    #[error("metric {label:?} was not declared in the birth")]
    UnknownMetric {
        /// `alias N` or the name.
        label: String,
    },
    /// A DATA metric typed differently from its birth.
    #[error("metric {name:?} was born {birth} but arrived as {data}")]
    TypeMismatch {
        /// The metric name.
        name: String,
        /// The birth's datatype.
        birth: DataType,
        /// The datatype in the DATA message.
        data: DataType,
    },
    /// A DATA value that does not fit the datatype of its birth.
    #[error("metric {name:?}: {source}")]
    BadValue {
        /// The metric name.
        name: String,
        /// What is wrong.
        #[source]
        source: ValueError,
    },
    /// An integer in a field or encoding the spec does not allow, with the matching [`Leniency`] off.
    #[error("metric {name:?}: {datatype} in {field} is not allowed in strict mode")]
    Strict {
        /// The metric name.
        name: String,
        /// Its datatype.
        datatype: DataType,
        /// What was found, e.g. `int_value` or `an 8-bit pattern`.
        field: &'static str,
    },
    /// An NDEATH whose bdSeq does not match the NBIRTH in effect: a late Will of an earlier session,
    /// ignored as the spec requires.
    #[error("NDEATH bdSeq {death} does not match the NBIRTH bdSeq {birth:?}; ignored")]
    StaleDeath {
        /// The NBIRTH's bdSeq.
        birth: Option<u64>,
        /// The NDEATH's bdSeq.
        death: u64,
    },
    /// An NDEATH at QoS 0 with [`Leniency::will_qos0`] off.
    #[error("NDEATH at QoS 0; the Will must be QoS 1")]
    DeathQos0,
    /// The host's own STATE topic carries something other than `{"online":bool,"timestamp":ms}`.
    #[error("bad STATE payload: {0}")]
    BadState(String),
}

impl Rejection {
    /// A short, stable class for counters, e.g. `bad_payload`.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Oversize { .. }
            | Rejection::BirthTooLarge { .. }
            | Rejection::NodeTooLarge { .. }
            | Rejection::TooManyNodes { .. } => "oversize",
            Rejection::Topic(_) => "bad_topic",
            Rejection::Payload(_) => "bad_payload",
            Rejection::BadSeq { .. } => "bad_seq",
            Rejection::SeqGap { .. } => "seq_gap",
            Rejection::UnnamedBirthMetric { .. }
            | Rejection::DuplicateAlias { .. }
            | Rejection::MissingBdSeq
            | Rejection::BadBdSeq(_) => "bad_birth",
            Rejection::UnknownNode | Rejection::UnknownDevice { .. } => "unknown_node",
            Rejection::UnknownMetric { .. } => "unknown_metric",
            Rejection::TypeMismatch { .. }
            | Rejection::BadValue { .. }
            | Rejection::Strict { .. } => "bad_value",
            Rejection::StaleDeath { .. } | Rejection::DeathQos0 => "ignored_death",
            Rejection::BadState(_) => "bad_state",
        }
    }
}

/// Why a [`HostConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostConfigError {
    /// The host id is not a valid Sparkplug id.
    #[error("host id: {0}")]
    HostId(#[from] TopicError),
    /// The reorder buffer must hold at least one message.
    #[error("max_reorder_messages must be at least 1")]
    ReorderBuffer,
}

/// A primary host application's view of every edge node. See the [module docs](self).
#[derive(Debug)]
pub struct HostSession {
    config: HostConfig,
    state_topic: String,
    /// The timestamp of the current connection's Will and birth; `None` while disconnected.
    session_timestamp: Option<u64>,
    /// Whether the broker has delivered this connection's STATE birth (or its latest
    /// re-assertion) back to the host since it was sent: until then a death on the host's own
    /// topic is older than the birth on its way (the retained one the subscription brings).
    birth_seen: bool,
    nodes: HashMap<NodeId, NodeState>,
}

/// What the host knows of one edge node.
#[derive(Debug, Default)]
struct NodeState {
    /// Whether an NBIRTH is in effect (no NDEATH since).
    online: bool,
    /// The NBIRTH's bdSeq.
    bd_seq: Option<u64>,
    /// The last sequence number processed.
    last_seq: u8,
    /// The node's own metrics from the NBIRTH.
    metrics: Scope,
    /// Devices with a DBIRTH in effect.
    devices: HashMap<Arc<str>, Scope>,
    /// Out-of-order messages, by sequence number, waiting for the missing ones.
    pending: BTreeMap<u8, Sequenced>,
    /// When the reorder wait ends, if one is running.
    reorder_deadline: Option<Duration>,
    /// When the last rebirth request went out.
    last_rebirth: Option<Duration>,
}

/// The metrics declared by one birth.
#[derive(Debug, Default)]
struct Scope {
    defs: Vec<MetricDef>,
    by_alias: HashMap<u64, usize>,
    by_name: HashMap<Arc<str>, usize>,
    /// Bytes of names and units held (for [`HostConfig::max_node_bytes`]).
    n_bytes: usize,
}

impl NodeState {
    /// Metrics and bytes of the node's births in effect, leaving out `device`'s (`None`: the
    /// node's own).
    fn totals_without(&self, device: Option<&str>) -> (usize, usize) {
        let own = if device.is_none() {
            (0, 0)
        } else {
            (self.metrics.defs.len(), self.metrics.n_bytes)
        };
        self.devices
            .iter()
            .filter(|(id, _)| device.is_some_and(|device| &***id != device))
            .fold(own, |(n_metrics, n_bytes), (_, scope)| {
                (n_metrics + scope.defs.len(), n_bytes + scope.n_bytes)
            })
    }
}

#[derive(Debug)]
struct MetricDef {
    name: Arc<str>,
    datatype: DataType,
    unit: Option<Arc<str>>,
}

/// A decoded message that counts in the node's sequence.
#[derive(Debug)]
struct Sequenced {
    topic: String,
    kind: SequencedKind,
    payload: Payload,
}

#[derive(Debug)]
enum SequencedKind {
    NData,
    DBirth(Arc<str>),
    DData(Arc<str>),
    DDeath(Arc<str>),
}

impl HostSession {
    /// A session for `config`; fails when the host id is not a valid Sparkplug id.
    pub fn new(config: HostConfig) -> Result<Self, HostConfigError> {
        validate_id(IdKind::HostId, &config.host_id)?;
        if config.max_reorder_messages == 0 {
            return Err(HostConfigError::ReorderBuffer);
        }
        Ok(Self {
            state_topic: format!("{}/STATE/{}", crate::topic::NAMESPACE, config.host_id),
            config,
            session_timestamp: None,
            birth_seen: false,
            nodes: HashMap::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The host's STATE topic, `spBv1.0/STATE/{host_id}`.
    pub fn state_topic(&self) -> &str {
        &self.state_topic
    }

    /// Starts a connection at `utc_ms`: the Will for the CONNECT packet and the birth to publish after
    /// subscribing, both with this timestamp [tck-id-host-topic-phid-death-payload-timestamp-connect],
    /// [tck-id-host-topic-phid-birth-payload-timestamp].
    pub fn connect(&mut self, utc_ms: u64) -> ConnectMessages {
        self.session_timestamp = Some(utc_ms);
        self.birth_seen = false;
        ConnectMessages {
            will: self.state_message(false, utc_ms),
            birth: self.state_message(true, utc_ms),
            subscriptions: vec![
                self.state_topic.clone(),
                crate::topic::ALL_FILTER.to_owned(),
            ],
        }
    }

    /// The STATE death to publish before an intentional disconnect, timestamped now
    /// [tck-id-host-topic-phid-death-payload-timestamp-disconnect-clean].
    pub fn disconnect(&mut self, utc_ms: u64) -> Outgoing {
        self.session_timestamp = None;
        self.state_message(false, utc_ms)
    }

    /// The connection to the MQTT server is gone: the host can no longer see deaths, so every online
    /// node and device goes stale and must rebirth before its data is used again.
    pub fn connection_lost(&mut self, now: Now) -> Vec<HostEvent> {
        self.session_timestamp = None;
        let mut events = Vec::new();
        let mut nodes: Vec<(&NodeId, &mut NodeState)> = self.nodes.iter_mut().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        for (node_id, node) in nodes {
            if node.online {
                node.go_offline(node_id, now.utc_ms, &mut events);
            }
        }
        events
    }

    /// Handles one message received on `spBv1.0/#`.
    pub fn handle(&mut self, message: Incoming<'_>, now: Now) -> Vec<HostEvent> {
        let mut events = Vec::new();
        self.handle_into(message, now, &mut events);
        events
    }

    /// [`HostSession::handle`], appending to `events` (saves an allocation per message).
    pub fn handle_into(&mut self, message: Incoming<'_>, now: Now, events: &mut Vec<HostEvent>) {
        let reject = |events: &mut Vec<HostEvent>, reason: Rejection| {
            events.push(HostEvent::Rejected(Rejected {
                topic: message.topic.to_owned(),
                reason,
            }));
        };
        if message.payload.len() > self.config.max_payload_bytes {
            reject(
                events,
                Rejection::Oversize {
                    len: message.payload.len(),
                    limit: self.config.max_payload_bytes,
                },
            );
            return;
        }
        let topic: SparkplugTopic = match message.topic.parse() {
            Ok(topic) => topic,
            Err(err) => return reject(events, Rejection::Topic(err)),
        };
        let (group, edge, device, kind) = match topic {
            SparkplugTopic::State { host_id } => {
                if host_id == self.config.host_id {
                    self.handle_own_state(message, events);
                }
                return;
            }
            SparkplugTopic::Node { group, kind, edge } => (group, edge, None, Kind::Node(kind)),
            SparkplugTopic::Device {
                group,
                kind,
                edge,
                device,
            } => (group, edge, Some(device), Kind::Device(kind)),
        };
        // Commands are what hosts send; this host ignores its own and other hosts' commands.
        if matches!(
            kind,
            Kind::Node(NodeMessageKind::NCmd) | Kind::Device(DeviceMessageKind::DCmd)
        ) {
            return;
        }
        let payload = match decode(message.payload) {
            Ok(payload) => payload,
            Err(err) => return reject(events, Rejection::Payload(err)),
        };
        let node_id = NodeId::new(&group, &edge);
        match kind {
            Kind::Node(NodeMessageKind::NBirth) => {
                self.handle_nbirth(node_id, message.topic, payload, now, events);
            }
            Kind::Node(NodeMessageKind::NDeath) => {
                self.handle_ndeath(node_id, message, payload, now, events);
            }
            Kind::Node(NodeMessageKind::NData) => {
                self.handle_sequenced(
                    node_id,
                    message.topic,
                    SequencedKind::NData,
                    payload,
                    now,
                    events,
                );
            }
            Kind::Device(device_kind) => {
                // A device topic always has a device id.
                let device: Arc<str> = Arc::from(device.unwrap_or_default());
                let kind = match device_kind {
                    DeviceMessageKind::DBirth => SequencedKind::DBirth(device),
                    DeviceMessageKind::DData => SequencedKind::DData(device),
                    DeviceMessageKind::DDeath => SequencedKind::DDeath(device),
                    DeviceMessageKind::DCmd => return,
                };
                self.handle_sequenced(node_id, message.topic, kind, payload, now, events);
            }
            Kind::Node(NodeMessageKind::NCmd) => {}
        }
    }

    /// Ends every reorder wait whose time is up: the messages held are processed in order, the gap is
    /// reported and a rebirth is requested [tck-id-operational-behavior-host-reordering-rebirth].
    pub fn poll(&mut self, now: Now) -> Vec<HostEvent> {
        let mut events = Vec::new();
        let mut due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.reorder_deadline.is_some_and(|at| at <= now.monotonic))
            .map(|(node_id, _)| node_id.clone())
            .collect();
        due.sort();
        for node_id in due {
            self.end_reorder_wait(&node_id, now, &mut events);
        }
        events
    }

    /// When [`HostSession::poll`] must be called next (monotonic), if a reorder wait is running.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.nodes
            .values()
            .filter_map(|node| node.reorder_deadline)
            .min()
    }

    /// Whether an NBIRTH of the node is in effect.
    pub fn is_online(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|node| node.online)
    }

    /// Whether a DBIRTH of the device is in effect.
    pub fn is_device_online(&self, node: &NodeId, device: &str) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|node| node.online && node.devices.contains_key(device))
    }

    /// The bdSeq of the node's NBIRTH in effect.
    pub fn bd_seq(&self, node: &NodeId) -> Option<u64> {
        self.nodes
            .get(node)
            .filter(|node| node.online)
            .and_then(|node| node.bd_seq)
    }

    fn state_message(&self, online: bool, timestamp: u64) -> Outgoing {
        Outgoing {
            topic: self.state_topic.clone(),
            payload: format!("{{\"online\":{online},\"timestamp\":{timestamp}}}").into_bytes(),
            qos: Qos::AtLeastOnce,
            retain: true,
        }
    }

    fn handle_own_state(&mut self, message: Incoming<'_>, events: &mut Vec<HostEvent>) {
        let (online, timestamp) = match parse_state(message.payload) {
            Ok(state) => state,
            Err(reason) => {
                events.push(HostEvent::Rejected(Rejected {
                    topic: message.topic.to_owned(),
                    reason: Rejection::BadState(reason),
                }));
                return;
            }
        };
        let Some(session_timestamp) = self.session_timestamp else {
            return;
        };
        if online {
            if timestamp == session_timestamp {
                self.birth_seen = true;
            }
            return;
        }
        // A death before our birth came back is the retained STATE the subscription delivered
        // (an earlier connection's death or Will): the birth, sent after the SUBSCRIBE, replaces it.
        // Publishing the birth again for it made 2-3 births per connect (one per subscription
        // that matches the STATE topic).
        if !self.birth_seen {
            return;
        }
        // Our own death after our birth: a Will from an earlier connection (or a takeover) is now
        // the retained STATE, so edge nodes think we are gone. Assert the birth again, with this
        // connection's timestamp so it still matches the Will registered for it, once until it
        // comes back.
        self.birth_seen = false;
        events.push(HostEvent::Publish(
            self.state_message(true, session_timestamp),
        ));
    }

    fn handle_nbirth(
        &mut self,
        node_id: NodeId,
        topic: &str,
        payload: Payload,
        now: Now,
        events: &mut Vec<HostEvent>,
    ) {
        let reject = |events: &mut Vec<HostEvent>, reason: Rejection| {
            events.push(HostEvent::Rejected(Rejected {
                topic: topic.to_owned(),
                reason,
            }));
        };
        // [tck-id-payloads-nbirth-seq]: 0..=255. (Edge nodes send 0 [tck-id-payloads-sequence-num-zero-nbirth];
        // the host counts from whatever the birth says.)
        let seq = match valid_seq(payload.seq) {
            Some(seq) => seq,
            None if payload.seq.is_none() && self.config.leniency.missing_seq => 0,
            None => return reject(events, Rejection::BadSeq { seq: payload.seq }),
        };
        let bd_seq = match bd_seq_of(&payload, &self.config.leniency) {
            Ok(bd_seq) => bd_seq,
            Err(reason) => return reject(events, reason),
        };
        let scope = match self.build_scope(&payload) {
            Ok(scope) => scope,
            Err(reason) => return reject(events, reason),
        };
        // An NBIRTH replaces the devices too: it alone counts.
        if let Err(reason) = self.check_node_size((0, 0), &scope) {
            return reject(events, reason);
        }
        if !self.make_room_for(&node_id, now) {
            return reject(
                events,
                Rejection::TooManyNodes {
                    limit: self.config.max_nodes,
                },
            );
        }
        let node = self.nodes.entry(node_id.clone()).or_default();
        // A new NBIRTH replaces the node's session: earlier DBIRTHs no longer hold, held messages of the
        // old session are dropped, and the DBIRTHs that follow rebuild the devices.
        node.online = true;
        node.bd_seq = bd_seq;
        node.last_seq = seq;
        node.devices.clear();
        node.pending.clear();
        node.reorder_deadline = None;
        node.metrics = scope;
        events.push(HostEvent::Online {
            node: node_id.clone(),
            device: None,
        });
        emit_birth_metrics(&node_id, None, &node.metrics, &payload, now, events);
    }

    fn handle_ndeath(
        &mut self,
        node_id: NodeId,
        message: Incoming<'_>,
        payload: Payload,
        now: Now,
        events: &mut Vec<HostEvent>,
    ) {
        let leniency = self.config.leniency;
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return; // Never born here: nothing to mark.
        };
        if !node.online {
            return;
        }
        let reject = |events: &mut Vec<HostEvent>, reason: Rejection| {
            events.push(HostEvent::Rejected(Rejected {
                topic: message.topic.to_owned(),
                reason,
            }));
        };
        if message.qos == Qos::AtMostOnce && !leniency.will_qos0 {
            return reject(events, Rejection::DeathQos0);
        }
        let death = match bd_seq_of(&payload, &leniency) {
            Ok(death) => death,
            Err(reason) => return reject(events, reason),
        };
        let honoured = match (node.bd_seq, death) {
            (None, _) | (_, None) => true,
            (Some(birth), Some(death)) => {
                birth == death || (leniency.ndeath_next_bdseq && (birth + 1) % 256 == death % 256)
            }
        };
        if !honoured {
            return reject(
                events,
                Rejection::StaleDeath {
                    birth: node.bd_seq,
                    death: death.unwrap_or_default(),
                },
            );
        }
        // [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline]: marked
        // with the host's clock, since a Will's timestamp is from CONNECT time.
        node.go_offline(&node_id, now.utc_ms, events);
    }

    fn handle_sequenced(
        &mut self,
        node_id: NodeId,
        topic: &str,
        kind: SequencedKind,
        payload: Payload,
        now: Now,
        events: &mut Vec<HostEvent>,
    ) {
        let online = self.nodes.get(&node_id).is_some_and(|node| node.online);
        if !online {
            events.push(HostEvent::Rejected(Rejected {
                topic: topic.to_owned(),
                reason: Rejection::UnknownNode,
            }));
            self.request_rebirth(&node_id, now, events);
            return;
        }
        if payload.seq.is_none() && self.config.leniency.missing_seq {
            let message = Sequenced {
                topic: topic.to_owned(),
                kind,
                payload,
            };
            self.apply(&node_id, message, now, events);
            return;
        }
        let Some(seq) = valid_seq(payload.seq) else {
            events.push(HostEvent::Rejected(Rejected {
                topic: topic.to_owned(),
                reason: Rejection::BadSeq { seq: payload.seq },
            }));
            return;
        };
        let message = Sequenced {
            topic: topic.to_owned(),
            kind,
            payload,
        };
        let max_pending = self.config.max_reorder_messages;
        let reorder_timeout = self.config.reorder_timeout;
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        if seq == node.last_seq.wrapping_add(1) {
            node.last_seq = seq;
            self.apply(&node_id, message, now, events);
            self.drain_pending(&node_id, now, events);
            return;
        }
        // Out of order: hold it and start the wait, unless one is running
        // [tck-id-operational-behavior-host-reordering-start].
        node.pending.insert(seq, message);
        if node.reorder_deadline.is_none() {
            node.reorder_deadline = Some(now.monotonic + reorder_timeout);
        }
        if node.pending.len() > max_pending {
            self.end_reorder_wait(&node_id, now, events);
        }
    }

    /// Processes held messages while the next expected one is among them; stops the wait when none is
    /// held any more [tck-id-operational-behavior-host-reordering-success].
    fn drain_pending(&mut self, node_id: &NodeId, now: Now, events: &mut Vec<HostEvent>) {
        loop {
            let Some(node) = self.nodes.get_mut(node_id) else {
                return;
            };
            if node.pending.is_empty() {
                node.reorder_deadline = None;
                return;
            }
            let next = node.last_seq.wrapping_add(1);
            let Some(message) = node.pending.remove(&next) else {
                return;
            };
            node.last_seq = next;
            self.apply(node_id, message, now, events);
        }
    }

    fn end_reorder_wait(&mut self, node_id: &NodeId, now: Now, events: &mut Vec<HostEvent>) {
        let Some(node) = self.nodes.get_mut(node_id) else {
            return;
        };
        node.reorder_deadline = None;
        let expected = node.last_seq.wrapping_add(1);
        // Held messages in sequence order, counting from the one expected (so 254, 255, 0, 1 after a wrap).
        let mut held: Vec<(u8, Sequenced)> =
            std::mem::take(&mut node.pending).into_iter().collect();
        held.sort_by_key(|(seq, _)| seq.wrapping_sub(expected));
        if let Some((first, message)) = held.first() {
            events.push(HostEvent::Rejected(Rejected {
                topic: message.topic.clone(),
                reason: Rejection::SeqGap {
                    expected,
                    received: *first,
                },
            }));
        }
        for (seq, message) in held {
            if let Some(node) = self.nodes.get_mut(node_id) {
                node.last_seq = seq;
            }
            self.apply(node_id, message, now, events);
        }
        self.request_rebirth(node_id, now, events);
    }

    /// Applies one in-sequence message to the node's state.
    fn apply(
        &mut self,
        node_id: &NodeId,
        message: Sequenced,
        now: Now,
        events: &mut Vec<HostEvent>,
    ) {
        let Sequenced {
            topic,
            kind,
            payload,
        } = message;
        match kind {
            SequencedKind::DBirth(device) => {
                let scope = match self.build_scope(&payload) {
                    Ok(scope) => scope,
                    Err(reason) => {
                        events.push(HostEvent::Rejected(Rejected { topic, reason }));
                        return;
                    }
                };
                let Some(node) = self.nodes.get(node_id) else {
                    return;
                };
                let others = node.totals_without(Some(&device));
                if let Err(reason) = self.check_node_size(others, &scope) {
                    // The device's earlier birth no longer holds either.
                    if let Some(node) = self.nodes.get_mut(node_id) {
                        node.devices.remove(&device);
                    }
                    events.push(HostEvent::Rejected(Rejected { topic, reason }));
                    return;
                }
                let Some(node) = self.nodes.get_mut(node_id) else {
                    return;
                };
                events.push(HostEvent::Online {
                    node: node_id.clone(),
                    device: Some(device.clone()),
                });
                emit_birth_metrics(node_id, Some(&device), &scope, &payload, now, events);
                node.devices.insert(device, scope);
            }
            SequencedKind::DDeath(device) => {
                let Some(node) = self.nodes.get_mut(node_id) else {
                    return;
                };
                if node.devices.remove(&device).is_some() {
                    events.push(HostEvent::Stale {
                        node: node_id.clone(),
                        device: Some(device),
                        timestamp: payload.timestamp.unwrap_or(now.utc_ms),
                    });
                } else {
                    events.push(HostEvent::Rejected(Rejected {
                        topic,
                        reason: Rejection::UnknownDevice {
                            device: device.to_string(),
                        },
                    }));
                }
            }
            SequencedKind::NData | SequencedKind::DData(_) => {
                let leniency = self.config.leniency;
                let Some(node) = self.nodes.get(node_id) else {
                    return;
                };
                let (device, scope) = match &kind {
                    SequencedKind::DData(device) => match node.devices.get(device) {
                        Some(scope) => (Some(device), scope),
                        None => {
                            events.push(HostEvent::Rejected(Rejected {
                                topic,
                                reason: Rejection::UnknownDevice {
                                    device: device.to_string(),
                                },
                            }));
                            self.request_rebirth(node_id, now, events);
                            return;
                        }
                    },
                    _ => (None, &node.metrics),
                };
                let mut unknown = false;
                for metric in payload.metrics {
                    match resolve(scope, metric, payload.timestamp, now, &leniency) {
                        Ok(resolved) => events.push(HostEvent::Metric(MetricUpdate {
                            node: node_id.clone(),
                            device: device.cloned(),
                            name: resolved.name,
                            datatype: resolved.datatype,
                            value: resolved.value,
                            timestamp: resolved.timestamp,
                            is_historical: resolved.is_historical,
                            is_transient: resolved.is_transient,
                            from_birth: false,
                            unit: resolved.unit,
                            quality: resolved.quality,
                        })),
                        Err(reason) => {
                            unknown |= matches!(reason, Rejection::UnknownMetric { .. });
                            events.push(HostEvent::Rejected(Rejected {
                                topic: topic.clone(),
                                reason,
                            }));
                        }
                    }
                }
                if unknown {
                    self.request_rebirth(node_id, now, events);
                }
            }
        }
    }

    /// Whether a birth `scope` fits its node next to the births in effect that stay (`others`:
    /// their metrics and bytes).
    fn check_node_size(&self, others: (usize, usize), scope: &Scope) -> Result<(), Rejection> {
        let n_metrics = others.0 + scope.defs.len();
        let n_bytes = others.1 + scope.n_bytes;
        if n_metrics > self.config.max_node_metrics || n_bytes > self.config.max_node_bytes {
            return Err(Rejection::NodeTooLarge {
                n_metrics,
                n_bytes,
                limit_metrics: self.config.max_node_metrics,
                limit_bytes: self.config.max_node_bytes,
            });
        }
        Ok(())
    }

    /// Builds the alias and name tables of one birth.
    fn build_scope(&self, payload: &Payload) -> Result<Scope, Rejection> {
        if payload.metrics.len() > self.config.max_birth_metrics {
            return Err(Rejection::BirthTooLarge {
                n_metrics: payload.metrics.len(),
                limit: self.config.max_birth_metrics,
            });
        }
        let mut scope = Scope::default();
        for (index, metric) in payload.metrics.iter().enumerate() {
            let Some(name) = &metric.name else {
                return Err(Rejection::UnnamedBirthMetric { index });
            };
            let name: Arc<str> = Arc::from(name.as_str());
            // Births carry the datatype [tck-id-payloads-metric-datatype-req]; one that does not is typed
            // by its value, if the value says.
            let datatype = metric
                .datatype
                .or_else(|| metric.value.as_ref().map(Value::datatype))
                .unwrap_or(DataType::Unknown);
            let def_idx = scope.defs.len();
            if let Some(alias) = metric.alias
                && let Some(&first) = scope.by_alias.get(&alias)
            {
                return Err(Rejection::DuplicateAlias {
                    alias,
                    first: scope.defs[first].name.to_string(),
                    second: name.to_string(),
                });
            }
            if let Some(alias) = metric.alias {
                scope.by_alias.insert(alias, def_idx);
            }
            scope.by_name.insert(name.clone(), def_idx);
            let unit = unit_of(metric);
            scope.n_bytes += name.len() + unit.as_ref().map_or(0, |unit| unit.len());
            scope.defs.push(MetricDef {
                name,
                datatype,
                unit,
            });
        }
        Ok(scope)
    }

    /// Whether `node_id` is kept or there is room for it, after forgetting the unborn nodes whose
    /// rebirth wait is over (they hold nothing else).
    fn make_room_for(&mut self, node_id: &NodeId, now: Now) -> bool {
        if self.nodes.len() < self.config.max_nodes || self.nodes.contains_key(node_id) {
            return true;
        }
        let interval = self.config.rebirth_interval;
        self.nodes.retain(|_, node| {
            node.online
                || node
                    .last_rebirth
                    .is_some_and(|at| now.monotonic.saturating_sub(at) < interval)
        });
        self.nodes.len() < self.config.max_nodes
    }

    fn request_rebirth(&mut self, node_id: &NodeId, now: Now, events: &mut Vec<HostEvent>) {
        let interval = self.config.rebirth_interval;
        if !self.make_room_for(node_id, now) {
            return;
        }
        let node = self.nodes.entry(node_id.clone()).or_default();
        if node
            .last_rebirth
            .is_some_and(|at| now.monotonic.saturating_sub(at) < interval)
        {
            return;
        }
        node.last_rebirth = Some(now.monotonic);
        events.push(HostEvent::Rebirth {
            node: node_id.clone(),
            message: rebirth_request(node_id, now.utc_ms),
        });
    }
}

/// The `Node Control/Rebirth` NCMD for a node: Boolean `true`, QoS 0, not retained
/// [tck-id-operational-behavior-data-commands-ncmd-rebirth-verb],
/// [tck-id-operational-behavior-data-commands-ncmd-rebirth-name],
/// [tck-id-operational-behavior-data-commands-ncmd-rebirth-value].
pub fn rebirth_request(node: &NodeId, utc_ms: u64) -> Outgoing {
    let payload = Payload {
        timestamp: Some(utc_ms),
        metrics: vec![Metric {
            timestamp: Some(utc_ms),
            ..Metric::new(REBIRTH_METRIC, Value::Boolean(true))
        }],
        ..Payload::default()
    };
    Outgoing {
        topic: SparkplugTopic::Node {
            group: node.group.to_string(),
            kind: NodeMessageKind::NCmd,
            edge: node.edge.to_string(),
        }
        .to_string(),
        // A Boolean metric with its own datatype always has an encoding.
        payload: encode(&payload).unwrap_or_default(),
        qos: Qos::AtMostOnce,
        retain: false,
    }
}

/// Parses a STATE payload `{"online":bool,"timestamp":ms}` into its two values.
pub fn parse_state(payload: &[u8]) -> Result<(bool, u64), String> {
    let json: serde_json::Value =
        serde_json::from_slice(payload).map_err(|err| format!("not JSON: {err}"))?;
    let online = json
        .get("online")
        .and_then(serde_json::Value::as_bool)
        .ok_or("no boolean \"online\"")?;
    let timestamp = json
        .get("timestamp")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no integer \"timestamp\"")?;
    Ok((online, timestamp))
}

#[derive(Clone, Copy)]
enum Kind {
    Node(NodeMessageKind),
    Device(DeviceMessageKind),
}

impl NodeState {
    /// NDEATH or a lost connection: the node and every device go stale and offline.
    fn go_offline(&mut self, node_id: &NodeId, utc_ms: u64, events: &mut Vec<HostEvent>) {
        self.online = false;
        self.pending.clear();
        self.reorder_deadline = None;
        events.push(HostEvent::Stale {
            node: node_id.clone(),
            device: None,
            timestamp: utc_ms,
        });
        let mut devices: Vec<Arc<str>> = self.devices.drain().map(|(device, _)| device).collect();
        devices.sort();
        for device in devices {
            events.push(HostEvent::Stale {
                node: node_id.clone(),
                device: Some(device),
                timestamp: utc_ms,
            });
        }
    }
}

fn valid_seq(seq: Option<u64>) -> Option<u8> {
    seq.and_then(|seq| u8::try_from(seq).ok())
}

/// The bdSeq metric of an NBIRTH or NDEATH; `Ok(None)` when absent and that is allowed.
fn bd_seq_of(payload: &Payload, leniency: &Leniency) -> Result<Option<u64>, Rejection> {
    let Some(metric) = payload
        .metrics
        .iter()
        .find(|metric| metric.name.as_deref() == Some(BDSEQ_METRIC))
    else {
        return if leniency.missing_bdseq {
            Ok(None)
        } else {
            Err(Rejection::MissingBdSeq)
        };
    };
    let value = match (&metric.value, leniency.bdseq_any_integer_type) {
        (Some(Value::Int64(value)), _) => *value as u64,
        (Some(Value::Untyped(RawValue::Long(value))), true) => *value,
        (Some(Value::Untyped(RawValue::Int(value))), true) => u64::from(*value),
        (Some(Value::UInt64(value)), true) => *value,
        (Some(Value::UInt32(value)), true) => u64::from(*value),
        (Some(Value::Int32(value)), true) => *value as u64,
        (Some(Value::UInt16(value)), true) => u64::from(*value),
        (Some(Value::UInt8(value)), true) => u64::from(*value),
        (Some(Value::Int16(value)), true) => *value as u64,
        (Some(Value::Int8(value)), true) => *value as u64,
        (None, _) => return Err(Rejection::BadBdSeq("null".to_owned())),
        (Some(other), _) => {
            return Err(Rejection::BadBdSeq(format!(
                "{} where Int64 is required",
                other.datatype()
            )));
        }
    };
    Ok(Some(value))
}

/// The engineering unit among a metric's properties.
fn unit_of(metric: &Metric) -> Option<Arc<str>> {
    let properties = metric.properties.as_ref()?;
    UNIT_PROPERTIES.iter().find_map(|key| {
        match properties
            .get(key)
            .and_then(|property| property.value.as_ref())
        {
            Some(Value::String(unit) | Value::Text(unit)) if !unit.is_empty() => {
                Some(Arc::from(unit.as_str()))
            }
            _ => None,
        }
    })
}

fn quality_of(metric: &Metric) -> Option<i64> {
    let property = metric.properties.as_ref()?.get(QUALITY_PROPERTY)?;
    match property.value.as_ref()? {
        Value::Int32(code) => Some(i64::from(*code)),
        Value::Int64(code) => Some(*code),
        Value::UInt32(code) => Some(i64::from(*code)),
        Value::Int16(code) => Some(i64::from(*code)),
        Value::UInt16(code) => Some(i64::from(*code)),
        Value::Untyped(RawValue::Int(code)) => Some(i64::from(*code as i32)),
        Value::Untyped(RawValue::Long(code)) => Some(*code as i64),
        _ => None,
    }
}

fn emit_birth_metrics(
    node_id: &NodeId,
    device: Option<&Arc<str>>,
    scope: &Scope,
    payload: &Payload,
    now: Now,
    events: &mut Vec<HostEvent>,
) {
    for (def, metric) in scope.defs.iter().zip(&payload.metrics) {
        events.push(HostEvent::Metric(MetricUpdate {
            node: node_id.clone(),
            device: device.cloned(),
            name: def.name.clone(),
            datatype: def.datatype,
            value: metric.value.clone(),
            timestamp: metric.timestamp.or(payload.timestamp).unwrap_or(now.utc_ms),
            is_historical: metric.is_historical,
            is_transient: metric.is_transient,
            from_birth: true,
            unit: def.unit.clone(),
            quality: quality_of(metric),
        }));
    }
}

struct Resolved {
    name: Arc<str>,
    datatype: DataType,
    value: Option<Value>,
    timestamp: u64,
    is_historical: bool,
    is_transient: bool,
    unit: Option<Arc<str>>,
    quality: Option<i64>,
}

/// Resolves a DATA metric through its birth: alias (or name) → name, datatype, unit; types the value.
fn resolve(
    scope: &Scope,
    metric: Metric,
    payload_timestamp: Option<u64>,
    now: Now,
    leniency: &Leniency,
) -> Result<Resolved, Rejection> {
    let def_idx = match (metric.alias, &metric.name) {
        (Some(alias), _) => scope.by_alias.get(&alias),
        (None, Some(name)) => scope.by_name.get(name.as_str()).or_else(|| {
            if leniency.data_prefix_in_birth {
                scope.by_name.get(format!("DATA/{name}").as_str())
            } else {
                None
            }
        }),
        (None, None) => None,
    };
    let Some(def) = def_idx.map(|&idx| &scope.defs[idx]) else {
        return Err(Rejection::UnknownMetric {
            label: metric.label(),
        });
    };
    let quality = quality_of(&metric);
    let unit = unit_of(&metric).or_else(|| def.unit.clone());
    let value = match metric.value {
        None => None,
        Some(Value::Untyped(raw)) => {
            check_strict(def, &raw, leniency)?;
            Some(
                Value::from_raw(def.datatype, raw).map_err(|source| Rejection::BadValue {
                    name: def.name.to_string(),
                    source,
                })?,
            )
        }
        Some(value) => {
            let data = value.datatype();
            if def.datatype != DataType::Unknown && data != def.datatype {
                return Err(Rejection::TypeMismatch {
                    name: def.name.to_string(),
                    birth: def.datatype,
                    data,
                });
            }
            Some(value)
        }
    };
    Ok(Resolved {
        name: def.name.clone(),
        datatype: def.datatype,
        value,
        timestamp: metric.timestamp.or(payload_timestamp).unwrap_or(now.utc_ms),
        is_historical: metric.is_historical,
        is_transient: metric.is_transient,
        unit,
        quality,
    })
}

/// With a leniency off, refuses the integer encodings the spec does not allow.
fn check_strict(def: &MetricDef, raw: &RawValue, leniency: &Leniency) -> Result<(), Rejection> {
    let strict = |field| {
        Err(Rejection::Strict {
            name: def.name.to_string(),
            datatype: def.datatype,
            field,
        })
    };
    let spec_field_is_int = match def.datatype {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            true
        }
        DataType::UInt32 | DataType::Int64 | DataType::UInt64 | DataType::DateTime => false,
        _ => return Ok(()),
    };
    if !leniency.integer_in_either_field {
        match raw {
            RawValue::Long(_) if spec_field_is_int => return strict("long_value"),
            RawValue::Int(_) if !spec_field_is_int => return strict("int_value"),
            _ => {}
        }
    }
    if !leniency.small_int_unsigned_pattern
        && let RawValue::Int(bits) = raw
    {
        let unsigned_pattern = match def.datatype {
            DataType::Int8 => (0x80..=0xFF).contains(bits),
            DataType::Int16 => (0x8000..=0xFFFF).contains(bits),
            _ => false,
        };
        if unsigned_pattern {
            return strict("an unsigned bit pattern");
        }
    }
    Ok(())
}
