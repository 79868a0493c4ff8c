//! [`Location`]: the ISA-95 path of a node (enterprise → site → area → line/process cell → cell/unit), and
//! [`Isa95Level`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Segment, TopicError};

/// Deepest location: enterprise/site/area/line/cell/unit.
pub const MAX_DEPTH: usize = 6;

/// ISA-95 equipment hierarchy levels, as carried in `_meta` (serialized as written here, e.g.
/// `"ProductionLine"`, the B2MML spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Isa95Level {
    /// The company.
    Enterprise,
    /// A plant.
    Site,
    /// A department or hall.
    Area,
    /// A discrete production line.
    ProductionLine,
    /// A machine or station on a line.
    WorkCell,
    /// A batch process cell.
    ProcessCell,
    /// A batch unit (reactor, tank).
    Unit,
    /// A warehouse zone.
    StorageZone,
}

/// The level a location of `depth` segments usually has in a discrete plant: 1 Enterprise, 2 Site, 3 Area,
/// 4 ProductionLine, 5 WorkCell, 6 Unit; `None` for 0 or more than [`MAX_DEPTH`].
///
/// This is only a default for display: a batch site puts a ProcessCell at depth 4 and a Unit at depth 5, and
/// a storage zone can sit at any depth. The true level of a node is the `level` field of its retained `_meta`
/// document ([`crate::payload::NodeMeta`]).
pub fn default_level_for_depth(depth: usize) -> Option<Isa95Level> {
    match depth {
        1 => Some(Isa95Level::Enterprise),
        2 => Some(Isa95Level::Site),
        3 => Some(Isa95Level::Area),
        4 => Some(Isa95Level::ProductionLine),
        5 => Some(Isa95Level::WorkCell),
        6 => Some(Isa95Level::Unit),
        _ => None,
    }
}

/// A location in the plant: 1..=[`MAX_DEPTH`] [`Segment`]s, enterprise first. Displays as `a/b/c` and
/// serializes as that string (e.g. a payload's `hierarchy_scope`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location(Vec<Segment>);

impl Location {
    /// Builds a location; `None` if `segments` is empty or deeper than [`MAX_DEPTH`].
    pub fn new(segments: Vec<Segment>) -> Option<Self> {
        if segments.is_empty() || segments.len() > MAX_DEPTH {
            None
        } else {
            Some(Self(segments))
        }
    }

    /// The enterprise-level location.
    pub fn enterprise_root(enterprise: Segment) -> Self {
        Self(vec![enterprise])
    }

    /// Number of segments (1 = enterprise, 2 = site, ...).
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// The segments, enterprise first (never empty).
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The first segment.
    pub fn enterprise(&self) -> &Segment {
        // Invariant: a location has at least one segment.
        &self.0[0]
    }

    /// The last segment (the node's own name).
    pub fn leaf(&self) -> &Segment {
        &self.0[self.0.len() - 1]
    }

    /// The location one level up; `None` for an enterprise.
    pub fn parent(&self) -> Option<Location> {
        if self.0.len() > 1 {
            Some(Self(self.0[..self.0.len() - 1].to_vec()))
        } else {
            None
        }
    }

    /// The location one level down; fails with [`TopicError::LocationTooDeep`] below depth [`MAX_DEPTH`].
    pub fn child(&self, segment: Segment) -> Result<Location, TopicError> {
        if self.0.len() >= MAX_DEPTH {
            return Err(TopicError::LocationTooDeep {
                depth: self.0.len() + 1,
            });
        }
        let mut segments = self.0.clone();
        segments.push(segment);
        Ok(Self(segments))
    }

    /// This location and each of its ancestors, from itself up to the enterprise (like
    /// [`std::path::Path::ancestors`]).
    pub fn ancestors(&self) -> impl Iterator<Item = Location> + '_ {
        (1..=self.0.len())
            .rev()
            .map(|depth| Self(self.0[..depth].to_vec()))
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn contains(&self, other: &Location) -> bool {
        other.0.starts_with(&self.0)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::write_joined(f, &self.0)
    }
}

impl FromStr for Location {
    type Err = TopicError;

    /// Parses `a/b/c` (no `uns/v1/` prefix, no class).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut segments = Vec::new();
        for (index, part) in text.split('/').enumerate() {
            let segment = Segment::new(part).map_err(|source| TopicError::Segment {
                index,
                segment: part.to_owned(),
                reason: source,
            })?;
            segments.push(segment);
        }
        if segments.len() > MAX_DEPTH {
            return Err(TopicError::LocationTooDeep {
                depth: segments.len(),
            });
        }
        // `split` yields at least one part, so `segments` is not empty here.
        Location::new(segments).ok_or(TopicError::NoClass)
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|err| {
            serde::de::Error::custom(format_args!("invalid location {text:?}: {err}"))
        })
    }
}
