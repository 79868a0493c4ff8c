//! [`TopicExplanation`]: what `uns topic parse TOPIC` prints about a topic.

use serde::Serialize;

use super::{Class, Isa95Level, UnsTopic, default_level_for_depth};

/// A human- and machine-readable description of a parsed topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicExplanation {
    /// The topic as text.
    pub topic: String,
    /// `located`, `schema`, `service` or `reply`.
    pub kind: &'static str,
    /// The location segments with their default ISA-95 level (empty for non-located topics). The true
    /// level is in the node's `_meta` document.
    pub location: Vec<LocationLevel>,
    /// The class name, e.g. `state_events`, `schema`, `service` or `reply`.
    pub class: &'static str,
    /// The variable parts of the class path, e.g. `id = wo-17`.
    pub class_args: Vec<ClassArg>,
    /// Whether messages on the topic are retained.
    pub retained: bool,
    /// The service(s) that publish on it (DESIGN §2 owner column, [`crate::owner`]).
    pub owner: String,
    /// The payload's schema id, when the class has a single one.
    pub payload_schema: Option<String>,
}

/// One location segment with its default level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocationLevel {
    /// The segment text.
    pub segment: String,
    /// 1 for the enterprise.
    pub depth: usize,
    /// [`default_level_for_depth`] of `depth`.
    pub default_level: Option<Isa95Level>,
}

/// A named variable part of a class path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassArg {
    /// What the part is, e.g. `metric_path`, `count_kind`, `id`, `period_kind`, `period`, `verb`.
    pub name: &'static str,
    /// Its value.
    pub value: String,
}

fn arg(name: &'static str, value: impl ToString) -> ClassArg {
    ClassArg {
        name,
        value: value.to_string(),
    }
}

impl UnsTopic {
    /// Describes the topic: location levels, class, arguments, retained flag, owner and payload schema.
    pub fn explain(&self) -> TopicExplanation {
        let topic = self.to_string();
        match self {
            UnsTopic::Located { location, class } => TopicExplanation {
                topic,
                kind: "located",
                location: location
                    .segments()
                    .iter()
                    .enumerate()
                    .map(|(idx, segment)| LocationLevel {
                        segment: segment.to_string(),
                        depth: idx + 1,
                        default_level: default_level_for_depth(idx + 1),
                    })
                    .collect(),
                class: class.name(),
                class_args: class_args(class),
                retained: class.is_retained(),
                owner: class.owner(),
                payload_schema: class.payload_schema(),
            },
            UnsTopic::Schema { name, version } => TopicExplanation {
                topic,
                kind: "schema",
                location: Vec::new(),
                class: "schema",
                class_args: vec![arg("name", name), arg("version", version)],
                retained: true,
                owner: crate::owner::join(self.owners()),
                payload_schema: None,
            },
            UnsTopic::Service { name } => TopicExplanation {
                topic,
                kind: "service",
                location: Vec::new(),
                class: "service",
                class_args: vec![arg("name", name)],
                retained: true,
                owner: crate::owner::join(self.owners()),
                payload_schema: Some(
                    <crate::payload::ServiceHealth as crate::payload::Document>::schema_id(),
                ),
            },
            UnsTopic::Reply { client } => TopicExplanation {
                topic,
                kind: "reply",
                location: Vec::new(),
                class: "reply",
                class_args: vec![arg("client", client)],
                retained: false,
                owner: crate::owner::join(self.owners()),
                payload_schema: Some(
                    <crate::payload::CmdReply as crate::payload::Document>::schema_id(),
                ),
            },
        }
    }
}

fn class_args(class: &Class) -> Vec<ClassArg> {
    match class {
        Class::Meta
        | Class::State
        | Class::StateEvents
        | Class::CountEvents
        | Class::WorkOrderActive
        | Class::GenealogyEvents
        | Class::Errors => Vec::new(),
        Class::Tag(path) | Class::TagHistory(path) => vec![arg("metric_path", path)],
        Class::Count(kind) => vec![arg("count_kind", kind.as_str())],
        Class::ErpProductionOrder(id)
        | Class::WorkOrder(id)
        | Class::WorkOrderEvents(id)
        | Class::Lot(id) => {
            vec![arg("id", id)]
        }
        Class::OeeCurrent(kind) => vec![arg("period_kind", kind.as_str())],
        Class::Oee(kind, period) => vec![arg("period_kind", kind.as_str()), arg("period", period)],
        Class::Cmd(verb) => vec![arg(
            "verb",
            verb.iter()
                .map(|part| part.as_str())
                .collect::<Vec<_>>()
                .join("/"),
        )],
    }
}
