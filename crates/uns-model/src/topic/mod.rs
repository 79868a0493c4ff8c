//! Typed UNS topics (DESIGN §2): `uns/v1/{location}/_{class}/...`, `uns/v1/_schemas/...`, `uns/v1/_services/...`.
//!
//! A topic string is parsed once, at the edge, into [`UnsTopic`]; its [`Display`](std::fmt::Display) gives the
//! exact same string back. The first segment that starts with `_` ends the [`Location`], so batch sites
//! (`area/process-cell/unit`) and discrete sites (`area/line/work-cell`) parse without ambiguity.

mod explain;
mod filter;
mod location;
mod segment;

use std::fmt;
use std::str::FromStr;

pub use explain::{ClassArg, LocationLevel, TopicExplanation};
pub use filter::{AnyId, FilterError, TopicFilter};
pub use location::{Isa95Level, Location, MAX_DEPTH, default_level_for_depth};
pub use segment::{Id, MAX_SEGMENT_LEN, Segment, SegmentError, slug};

/// The first two segments of every UNS topic.
pub const PREFIX: &str = "uns/v1";

/// Longest accepted topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 1024;

/// Why a string is not a valid UNS topic. Each variant says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic is {len} bytes long, the limit is {MAX_TOPIC_LEN}")]
    TooLong {
        /// Length of the topic in bytes.
        len: usize,
    },
    /// The topic contains an MQTT wildcard (`+` or `#`), which only subscription filters may use.
    #[error(
        "topic contains the wildcard {ch:?} at byte {offset}; wildcards belong in filters, not topics"
    )]
    Wildcard {
        /// The wildcard character.
        ch: char,
        /// Byte offset in the topic.
        offset: usize,
    },
    /// The first segment is not `uns`.
    #[error("topic must start with `uns/`, found {found:?}")]
    WrongPrefix {
        /// The first segment as found.
        found: String,
    },
    /// The second segment is not `v1`.
    #[error("unsupported namespace version {found:?} (expected `v1`)")]
    WrongVersion {
        /// The second segment as found.
        found: String,
    },
    /// A segment breaks the character or length rules.
    #[error("invalid segment {segment:?} at index {index}: {reason}")]
    Segment {
        /// Zero-based index of the segment in the parsed text (in a topic, `uns` is 0).
        index: usize,
        /// The segment as found.
        segment: String,
        /// What is wrong with it. (Not named `source`: the message already contains it, and
        /// an error chain printer would repeat it.)
        reason: SegmentError,
    },
    /// A class segment (`_...`) comes right after `uns/v1/` where a location (or `_schemas`, `_services`,
    /// `_replies`) is required.
    #[error("no location before class {class:?}: an enterprise segment must follow `uns/v1/`")]
    NoLocation {
        /// The class segment found at index 2.
        class: String,
    },
    /// The location has more than [`MAX_DEPTH`] segments.
    #[error("location has {depth} segments, the deepest ISA-95 level is {MAX_DEPTH}")]
    LocationTooDeep {
        /// Number of location segments found.
        depth: usize,
    },
    /// No segment starting with `_` ends the location.
    #[error("no class: the location is not followed by a `_class` segment")]
    NoClass,
    /// The class segment is not one of the known classes.
    #[error("unknown class {class:?} at index {index}")]
    UnknownClass {
        /// The class segment as found.
        class: String,
        /// Zero-based index of the segment in the topic.
        index: usize,
    },
    /// A class needs a further segment (an id, a kind or a verb) that is missing.
    #[error("`{class}` needs {what} after it")]
    Missing {
        /// The class path so far, e.g. `_wo`.
        class: String,
        /// What is missing, e.g. `a work order id`.
        what: &'static str,
    },
    /// A kind segment (count kind, OEE period kind, events suffix) is not one of the allowed values.
    #[error("unknown {what} {found:?} after `{class}` (allowed: {allowed})")]
    UnknownKind {
        /// The class path so far.
        class: String,
        /// What the segment names, e.g. `count kind`.
        what: &'static str,
        /// The segment as found.
        found: String,
        /// The allowed values.
        allowed: &'static str,
    },
    /// Segments follow a class that has a fixed length.
    #[error("unexpected segments {extra:?} after `{class}`")]
    Extra {
        /// The complete class path, e.g. `_state`.
        class: String,
        /// The rest of the topic after it.
        extra: String,
    },
}

/// A monotonic counter kind under `_count/{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountKind {
    /// Good parts (ISO 22400 GQ).
    Good,
    /// Scrapped parts (SQ).
    Scrap,
    /// Parts sent to rework (RQ).
    Rework,
    /// All parts produced (PQ).
    Produced,
}

/// The period an OEE result covers (`_oee/{kind}/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OeePeriodKind {
    /// A clock hour.
    Hour,
    /// A shift from the shift calendar.
    Shift,
    /// A calendar day in the location's time zone (closed periods only).
    Day,
    /// A work order's run.
    Wo,
}

/// The id of a closed OEE period, e.g. `2025-03-04t05` (hour), `2025-03-04.early` (shift), `2025-03-04` (day)
/// or a work order id. The oee service chooses the format; the model only checks [`Id`] rules.
pub type PeriodId = Id;

/// A metric path under `_tag/`: one or more [`Id`] segments, e.g. `temperature/zone-1`.
///
/// Sparkplug metric names such as `Inputs/Temp 1` must be slugged by the caller ([`slug`] per part).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagPath(Vec<Id>);

impl TagPath {
    /// Builds a path from at least one segment; `None` if `parts` is empty.
    pub fn new(parts: Vec<Id>) -> Option<Self> {
        if parts.is_empty() {
            None
        } else {
            Some(Self(parts))
        }
    }

    /// The path segments (never empty).
    pub fn parts(&self) -> &[Id] {
        &self.0
    }
}

impl fmt::Display for TagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_joined(f, &self.0)
    }
}

/// What a located topic carries: every row of the DESIGN §2 table after the location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Class {
    /// `_meta`: the node's ISA-95 level, display name, time zone.
    Meta,
    /// `_tag/{metric path}`: one metric.
    Tag(TagPath),
    /// `_tag/{metric path}/_history`: older values of that metric (store-and-forward, Sparkplug
    /// historical), not retained, marked `"historical": true`, in timestamp order, so a live view of
    /// `_tag/{metric path}` never takes them for the present. Not in the DESIGN §2 table: the place
    /// DESIGN §7 ("historical values never look current") asks for.
    TagHistory(TagPath),
    /// `_state`: current mode and state.
    State,
    /// `_state/events`: state transitions.
    StateEvents,
    /// `_count/{good,scrap,rework,produced}`: a monotonic counter.
    Count(CountKind),
    /// `_count/events`: count deltas and reclassifications.
    CountEvents,
    /// `_erp/production-orders/{id}`: an order as received from ERP.
    ErpProductionOrder(Id),
    /// `_wo/{id}`: a work order document.
    WorkOrder(Id),
    /// `_wo/{id}/events`: lifecycle events of one work order.
    WorkOrderEvents(Id),
    /// `_wo/_active`: the order running here, or null.
    WorkOrderActive,
    /// `_lot/{id}`: a lot document.
    Lot(Id),
    /// `_genealogy/events`: receive/transform/split/merge/move/scrap/correct.
    GenealogyEvents,
    /// `_oee/current/{hour,shift,wo}`: rolling KPIs of the open period ([`OeePeriodKind::Day`] is not allowed).
    OeeCurrent(OeePeriodKind),
    /// `_oee/{hour,shift,day,wo}/{period}`: a closed period.
    Oee(OeePeriodKind, PeriodId),
    /// `_cmd/{verb...}`: an MQTT 5 request, e.g. `_cmd/wo/release`. Never empty.
    Cmd(Vec<Id>),
    /// `_errors`: rejected input.
    Errors,
}

/// A parsed UNS topic. `Display` and `FromStr` round-trip exactly.
///
/// Besides the located topics, three fixed trees live directly under `uns/v1/`: `_schemas`, `_services` and
/// `_replies`; any other `_name` there is [`TopicError::NoLocation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnsTopic {
    /// `uns/v1/{location}/_{class}/...`
    Located {
        /// Where in the plant.
        location: Location,
        /// What the topic carries.
        class: Class,
    },
    /// `uns/v1/_schemas/{name}/v{version}`: a JSON Schema, retained.
    Schema {
        /// Schema name, e.g. `work-order`.
        name: Id,
        /// Schema version, e.g. 1 (shown as `v1`).
        version: u32,
    },
    /// `uns/v1/_services/{name}`: a service's health, retained.
    Service {
        /// Service name, e.g. `oee`.
        name: Id,
    },
    /// `uns/v1/_replies/{client}`: where a client receives replies to its `_cmd` requests (the MQTT 5
    /// Response Topic it sets), not retained. Not in the DESIGN §2 table: it gives replies a fixed,
    /// ACL-friendly place and keeps them out of the location tree.
    Reply {
        /// The requesting client, as a slug of its MQTT client id.
        client: Id,
    },
}

const COUNT_KINDS: &str = "good, scrap, rework, produced, events";
const OEE_KINDS: &str = "current, hour, shift, day, wo";
const OEE_CURRENT_KINDS: &str = "hour, shift, wo";

impl UnsTopic {
    /// A located topic.
    pub fn located(location: Location, class: Class) -> Self {
        Self::Located { location, class }
    }

    /// `uns/v1/_services/{name}`. Fails if `name` is not a valid [`Id`].
    pub fn service(name: &str) -> Result<Self, SegmentError> {
        Ok(Self::Service {
            name: Id::new(name)?,
        })
    }

    /// `uns/v1/_schemas/{name}/v{version}`. Fails if `name` is not a valid [`Id`].
    pub fn schema(name: &str, version: u32) -> Result<Self, SegmentError> {
        Ok(Self::Schema {
            name: Id::new(name)?,
            version,
        })
    }

    /// `uns/v1/_replies/{client}`. Fails if `client` is not a valid [`Id`] (use [`slug`] on a client id).
    pub fn reply(client: &str) -> Result<Self, SegmentError> {
        Ok(Self::Reply {
            client: Id::new(client)?,
        })
    }

    /// The location, for located topics.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Located { location, .. } => Some(location),
            Self::Schema { .. } | Self::Service { .. } | Self::Reply { .. } => None,
        }
    }

    /// The class, for located topics.
    pub fn class(&self) -> Option<&Class> {
        match self {
            Self::Located { class, .. } => Some(class),
            Self::Schema { .. } | Self::Service { .. } | Self::Reply { .. } => None,
        }
    }

    /// Whether messages on this topic are published retained (DESIGN §2 "retained" column).
    pub fn is_retained(&self) -> bool {
        match self {
            Self::Located { class, .. } => class.is_retained(),
            Self::Schema { .. } | Self::Service { .. } => true,
            Self::Reply { .. } => false,
        }
    }
}

impl Class {
    /// Whether messages of this class are published retained (DESIGN §2 "retained" column).
    pub fn is_retained(&self) -> bool {
        match self {
            Self::Meta
            | Self::Tag(_)
            | Self::State
            | Self::Count(_)
            | Self::ErpProductionOrder(_)
            | Self::WorkOrder(_)
            | Self::WorkOrderActive
            | Self::Lot(_)
            | Self::OeeCurrent(_)
            | Self::Oee(..) => true,
            Self::TagHistory(_)
            | Self::StateEvents
            | Self::CountEvents
            | Self::WorkOrderEvents(_)
            | Self::GenealogyEvents
            | Self::Cmd(_)
            | Self::Errors => false,
        }
    }

    /// A stable snake_case name of the class, e.g. `state_events` (used by `uns topic parse`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Tag(_) => "tag",
            Self::TagHistory(_) => "tag_history",
            Self::State => "state",
            Self::StateEvents => "state_events",
            Self::Count(_) => "count",
            Self::CountEvents => "count_events",
            Self::ErpProductionOrder(_) => "erp_production_order",
            Self::WorkOrder(_) => "work_order",
            Self::WorkOrderEvents(_) => "work_order_events",
            Self::WorkOrderActive => "work_order_active",
            Self::Lot(_) => "lot",
            Self::GenealogyEvents => "genealogy_events",
            Self::OeeCurrent(_) => "oee_current",
            Self::Oee(..) => "oee",
            Self::Cmd(_) => "cmd",
            Self::Errors => "errors",
        }
    }

    /// The schema id (`uns/<name>/v<N>`) of the payload published on this class, if it has a single one.
    /// `_cmd` requests vary by verb (their reply is `uns/cmd-reply/v1`); `_wo/_active` may also be `null`.
    pub fn payload_schema(&self) -> Option<String> {
        use crate::payload::{self, Document};
        let id = match self {
            Self::Meta => payload::NodeMeta::schema_id(),
            Self::Tag(_) | Self::TagHistory(_) => payload::TagValue::schema_id(),
            Self::State => payload::StateDoc::schema_id(),
            Self::StateEvents => payload::StateEvent::schema_id(),
            Self::Count(_) => payload::CountDoc::schema_id(),
            Self::CountEvents => payload::CountEvent::schema_id(),
            Self::ErpProductionOrder(_) => payload::ProductionOrder::schema_id(),
            Self::WorkOrder(_) | Self::WorkOrderActive => payload::WorkOrder::schema_id(),
            Self::WorkOrderEvents(_) => payload::WorkOrderEvent::schema_id(),
            Self::Lot(_) => payload::Lot::schema_id(),
            Self::GenealogyEvents => payload::GenealogyEvent::schema_id(),
            Self::OeeCurrent(_) | Self::Oee(..) => payload::OeeResult::schema_id(),
            Self::Errors => payload::ErrorReport::schema_id(),
            Self::Cmd(_) => return None,
        };
        Some(id)
    }
}

impl CountKind {
    /// The topic segment, e.g. `good`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Scrap => "scrap",
            Self::Rework => "rework",
            Self::Produced => "produced",
        }
    }
}

impl OeePeriodKind {
    /// The topic segment, e.g. `hour`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Shift => "shift",
            Self::Day => "day",
            Self::Wo => "wo",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Meta => f.write_str("_meta"),
            Self::Tag(path) => write!(f, "_tag/{path}"),
            Self::TagHistory(path) => write!(f, "_tag/{path}/_history"),
            Self::State => f.write_str("_state"),
            Self::StateEvents => f.write_str("_state/events"),
            Self::Count(kind) => write!(f, "_count/{}", kind.as_str()),
            Self::CountEvents => f.write_str("_count/events"),
            Self::ErpProductionOrder(id) => write!(f, "_erp/production-orders/{id}"),
            Self::WorkOrder(id) => write!(f, "_wo/{id}"),
            Self::WorkOrderEvents(id) => write!(f, "_wo/{id}/events"),
            Self::WorkOrderActive => f.write_str("_wo/_active"),
            Self::Lot(id) => write!(f, "_lot/{id}"),
            Self::GenealogyEvents => f.write_str("_genealogy/events"),
            Self::OeeCurrent(kind) => write!(f, "_oee/current/{}", kind.as_str()),
            Self::Oee(kind, period) => write!(f, "_oee/{}/{period}", kind.as_str()),
            Self::Cmd(verb) => {
                f.write_str("_cmd/")?;
                write_joined(f, verb)
            }
            Self::Errors => f.write_str("_errors"),
        }
    }
}

impl fmt::Display for UnsTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Located { location, class } => write!(f, "{PREFIX}/{location}/{class}"),
            Self::Schema { name, version } => write!(f, "{PREFIX}/_schemas/{name}/v{version}"),
            Self::Service { name } => write!(f, "{PREFIX}/_services/{name}"),
            Self::Reply { client } => write!(f, "{PREFIX}/_replies/{client}"),
        }
    }
}

fn write_joined<T: fmt::Display>(f: &mut fmt::Formatter<'_>, parts: &[T]) -> fmt::Result {
    for (idx, part) in parts.iter().enumerate() {
        if idx > 0 {
            f.write_str("/")?;
        }
        write!(f, "{part}")?;
    }
    Ok(())
}

impl FromStr for UnsTopic {
    type Err = TopicError;

    fn from_str(topic: &str) -> Result<Self, Self::Err> {
        if topic.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len: topic.len() });
        }
        if let Some((offset, ch)) = topic.char_indices().find(|(_, ch)| matches!(ch, '+' | '#')) {
            return Err(TopicError::Wildcard { ch, offset });
        }
        let segments: Vec<&str> = topic.split('/').collect();
        if segments[0] != "uns" {
            return Err(TopicError::WrongPrefix {
                found: segments[0].to_owned(),
            });
        }
        match segments.get(1) {
            Some(&"v1") => {}
            Some(other) => {
                return Err(TopicError::WrongVersion {
                    found: (*other).to_owned(),
                });
            }
            None => {
                return Err(TopicError::WrongVersion {
                    found: String::new(),
                });
            }
        }
        let parser = Parser {
            segments: &segments,
        };
        parser.parse()
    }
}

/// Parses the segments after `uns/v1`; holds the whole topic so errors can name indices.
struct Parser<'a> {
    segments: &'a [&'a str],
}

impl Parser<'_> {
    fn parse(&self) -> Result<UnsTopic, TopicError> {
        match self.segments.get(2).copied() {
            None => Err(TopicError::Missing {
                class: PREFIX.to_owned(),
                what: "a location, `_schemas`, `_services` or `_replies`",
            }),
            Some("_schemas") => {
                let name = self.id(3, "_schemas", "a schema name")?;
                let version_text = self.required(4, "_schemas/{name}", "a version such as `v1`")?;
                let version = version_text
                    .strip_prefix('v')
                    .filter(|digits| {
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|digits| digits.parse::<u32>().ok())
                    .filter(|version| version.to_string() == version_text[1..])
                    .ok_or_else(|| TopicError::UnknownKind {
                        class: format!("_schemas/{name}"),
                        what: "schema version",
                        found: version_text.to_owned(),
                        allowed: "v1, v2, ... (no leading zeros)",
                    })?;
                self.end(5, || format!("_schemas/{name}/{version_text}"))?;
                Ok(UnsTopic::Schema { name, version })
            }
            Some("_services") => {
                let name = self.id(3, "_services", "a service name")?;
                self.end(4, || format!("_services/{name}"))?;
                Ok(UnsTopic::Service { name })
            }
            Some("_replies") => {
                let client = self.id(3, "_replies", "a client id")?;
                self.end(4, || format!("_replies/{client}"))?;
                Ok(UnsTopic::Reply { client })
            }
            Some(class) if class.starts_with('_') => Err(TopicError::NoLocation {
                class: class.to_owned(),
            }),
            Some(_) => self.located(),
        }
    }

    fn located(&self) -> Result<UnsTopic, TopicError> {
        let mut location = Vec::new();
        let mut idx = 2;
        loop {
            let Some(segment) = self.segments.get(idx) else {
                return Err(TopicError::NoClass);
            };
            if segment.starts_with('_') {
                break;
            }
            location.push(Segment::new(segment).map_err(|source| self.bad(idx, source))?);
            idx += 1;
        }
        if location.len() > MAX_DEPTH {
            return Err(TopicError::LocationTooDeep {
                depth: location.len(),
            });
        }
        let location = Location::new(location).ok_or(TopicError::NoClass)?;
        let class = self.class(idx)?;
        Ok(UnsTopic::Located { location, class })
    }

    /// Parses the class starting at `idx` (a segment starting with `_`).
    fn class(&self, idx: usize) -> Result<Class, TopicError> {
        let name = self.segments[idx];
        let class = match name {
            "_meta" => Class::Meta,
            "_state" => match self.segments.get(idx + 1).copied() {
                None => Class::State,
                Some("events") => {
                    self.end(idx + 2, || "_state/events".to_owned())?;
                    return Ok(Class::StateEvents);
                }
                Some(_) => Class::State,
            },
            "_errors" => Class::Errors,
            "_tag" => {
                let mut end = self.segments.len();
                let history = end > idx + 2 && self.segments[end - 1] == "_history";
                if history {
                    end -= 1;
                }
                let mut parts = Vec::new();
                for part_idx in idx + 1..end {
                    parts.push(self.id(part_idx, "_tag", "a metric path")?);
                }
                let path = TagPath::new(parts).ok_or(TopicError::Missing {
                    class: "_tag".to_owned(),
                    what: "a metric path",
                })?;
                return Ok(if history {
                    Class::TagHistory(path)
                } else {
                    Class::Tag(path)
                });
            }
            "_count" => {
                let kind = self.required(idx + 1, "_count", "a count kind")?;
                let class = match kind {
                    "good" => Class::Count(CountKind::Good),
                    "scrap" => Class::Count(CountKind::Scrap),
                    "rework" => Class::Count(CountKind::Rework),
                    "produced" => Class::Count(CountKind::Produced),
                    "events" => Class::CountEvents,
                    other => {
                        return Err(self.unknown_kind("_count", "count kind", other, COUNT_KINDS));
                    }
                };
                self.end(idx + 2, || format!("_count/{kind}"))?;
                return Ok(class);
            }
            "_erp" => {
                let kind = self.required(idx + 1, "_erp", "`production-orders`")?;
                if kind != "production-orders" {
                    return Err(self.unknown_kind(
                        "_erp",
                        "ERP document kind",
                        kind,
                        "production-orders",
                    ));
                }
                let id = self.id(idx + 2, "_erp/production-orders", "a production order id")?;
                self.end(idx + 3, || format!("_erp/production-orders/{id}"))?;
                return Ok(Class::ErpProductionOrder(id));
            }
            "_wo" => {
                if self.segments.get(idx + 1) == Some(&"_active") {
                    self.end(idx + 2, || "_wo/_active".to_owned())?;
                    return Ok(Class::WorkOrderActive);
                }
                let id = self.id(idx + 1, "_wo", "a work order id or `_active`")?;
                return match self.segments.get(idx + 2).copied() {
                    None => Ok(Class::WorkOrder(id)),
                    Some("events") => {
                        self.end(idx + 3, || format!("_wo/{id}/events"))?;
                        Ok(Class::WorkOrderEvents(id))
                    }
                    Some(other) => Err(self.unknown_kind(
                        &format!("_wo/{id}"),
                        "work order sub-topic",
                        other,
                        "events",
                    )),
                };
            }
            "_lot" => {
                let id = self.id(idx + 1, "_lot", "a lot id")?;
                self.end(idx + 2, || format!("_lot/{id}"))?;
                return Ok(Class::Lot(id));
            }
            "_genealogy" => {
                let kind = self.required(idx + 1, "_genealogy", "`events`")?;
                if kind != "events" {
                    return Err(self.unknown_kind(
                        "_genealogy",
                        "genealogy sub-topic",
                        kind,
                        "events",
                    ));
                }
                self.end(idx + 2, || "_genealogy/events".to_owned())?;
                return Ok(Class::GenealogyEvents);
            }
            "_oee" => return self.oee(idx),
            "_cmd" => {
                let mut verb = Vec::new();
                for part_idx in idx + 1..self.segments.len() {
                    verb.push(self.id(part_idx, "_cmd", "a command verb")?);
                }
                if verb.is_empty() {
                    return Err(TopicError::Missing {
                        class: "_cmd".to_owned(),
                        what: "a command verb",
                    });
                }
                return Ok(Class::Cmd(verb));
            }
            other => {
                return Err(TopicError::UnknownClass {
                    class: other.to_owned(),
                    index: idx,
                });
            }
        };
        // Fixed single-segment classes: nothing may follow.
        self.end(idx + 1, || name.to_owned())?;
        Ok(class)
    }

    fn oee(&self, idx: usize) -> Result<Class, TopicError> {
        let kind_text = self.required(idx + 1, "_oee", "a period kind")?;
        if kind_text == "current" {
            let current = self.required(idx + 2, "_oee/current", "a period kind")?;
            let kind = match current {
                "hour" => OeePeriodKind::Hour,
                "shift" => OeePeriodKind::Shift,
                "wo" => OeePeriodKind::Wo,
                other => {
                    return Err(self.unknown_kind(
                        "_oee/current",
                        "period kind",
                        other,
                        OEE_CURRENT_KINDS,
                    ));
                }
            };
            self.end(idx + 3, || format!("_oee/current/{current}"))?;
            return Ok(Class::OeeCurrent(kind));
        }
        let kind = match kind_text {
            "hour" => OeePeriodKind::Hour,
            "shift" => OeePeriodKind::Shift,
            "day" => OeePeriodKind::Day,
            "wo" => OeePeriodKind::Wo,
            other => return Err(self.unknown_kind("_oee", "period kind", other, OEE_KINDS)),
        };
        let class_path = format!("_oee/{kind_text}");
        let period = self.id(idx + 2, &class_path, "a period id")?;
        self.end(idx + 3, || format!("{class_path}/{period}"))?;
        Ok(Class::Oee(kind, period))
    }

    fn bad(&self, index: usize, source: SegmentError) -> TopicError {
        TopicError::Segment {
            index,
            segment: self.segments[index].to_owned(),
            reason: source,
        }
    }

    fn unknown_kind(
        &self,
        class: &str,
        what: &'static str,
        found: &str,
        allowed: &'static str,
    ) -> TopicError {
        TopicError::UnknownKind {
            class: class.to_owned(),
            what,
            found: found.to_owned(),
            allowed,
        }
    }

    /// The segment at `idx`; [`TopicError::Missing`] past the end, [`SegmentError::Empty`] if empty.
    fn required(&self, idx: usize, class: &str, what: &'static str) -> Result<&str, TopicError> {
        match self.segments.get(idx).copied() {
            Some("") => Err(self.bad(idx, SegmentError::Empty)),
            Some(segment) => Ok(segment),
            None => Err(TopicError::Missing {
                class: class.to_owned(),
                what,
            }),
        }
    }

    fn id(&self, idx: usize, class: &str, what: &'static str) -> Result<Id, TopicError> {
        let text = self.required(idx, class, what)?;
        Id::new(text).map_err(|source| self.bad(idx, source))
    }

    /// Fails with [`TopicError::Extra`] if any segment exists at or after `idx`.
    fn end(&self, idx: usize, class: impl FnOnce() -> String) -> Result<(), TopicError> {
        if idx < self.segments.len() {
            return Err(TopicError::Extra {
                class: class(),
                extra: self.segments[idx..].join("/"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
