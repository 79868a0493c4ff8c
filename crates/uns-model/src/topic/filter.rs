//! [`TopicFilter`]: a validated MQTT subscription filter with MQTT matching semantics.

use std::fmt;
use std::str::FromStr;

use super::{Class, Location, MAX_DEPTH, PREFIX};

/// Longest filter MQTT allows, in bytes.
const MAX_FILTER_LEN: usize = 65_535;

/// Why a string is not a valid MQTT subscription filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The filter is the empty string.
    #[error("filter is empty")]
    Empty,
    /// The filter is longer than 65535 bytes.
    #[error("filter is {len} bytes long, MQTT allows 65535")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// A NUL character, which MQTT forbids in topics and filters.
    #[error("filter contains a NUL character at byte {offset}")]
    Nul {
        /// Byte offset.
        offset: usize,
    },
    /// `#` is not alone in the last level.
    #[error("`#` must be the whole last level (level {level} is {found:?})")]
    MultiLevelWildcard {
        /// Zero-based level index.
        level: usize,
        /// The level as found.
        found: String,
    },
    /// `+` shares its level with other characters.
    #[error("`+` must be a whole level (level {level} is {found:?})")]
    SingleLevelWildcard {
        /// Zero-based level index.
        level: usize,
        /// The level as found.
        found: String,
    },
}

/// A validated MQTT subscription filter (`+` matches one level, a final `#` matches any number of levels,
/// including none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter(String);

impl TopicFilter {
    /// Validates `filter` against the MQTT rules.
    pub fn new(filter: &str) -> Result<Self, FilterError> {
        if filter.is_empty() {
            return Err(FilterError::Empty);
        }
        if filter.len() > MAX_FILTER_LEN {
            return Err(FilterError::TooLong { len: filter.len() });
        }
        if let Some(offset) = filter.find('\0') {
            return Err(FilterError::Nul { offset });
        }
        let levels: Vec<&str> = filter.split('/').collect();
        for (level, text) in levels.iter().enumerate() {
            if text.contains('#') && (*text != "#" || level + 1 != levels.len()) {
                return Err(FilterError::MultiLevelWildcard {
                    level,
                    found: (*text).to_owned(),
                });
            }
            if text.contains('+') && *text != "+" {
                return Err(FilterError::SingleLevelWildcard {
                    level,
                    found: (*text).to_owned(),
                });
            }
        }
        Ok(Self(filter.to_owned()))
    }

    /// `uns/v1/#`: everything in the namespace.
    pub fn all_uns() -> Self {
        Self(format!("{PREFIX}/#"))
    }

    /// `uns/v1/{location}/#`: everything at `location` and below it.
    pub fn under(location: &Location) -> Self {
        // Location segments contain no wildcard or NUL, so the filter is valid.
        Self(format!("{PREFIX}/{location}/#"))
    }

    /// The filters that together match `class` at every location, one per depth
    /// (`uns/v1/+/_meta`, `uns/v1/+/+/_meta`, … up to [`MAX_DEPTH`]): MQTT has no "any number of
    /// levels, then" wildcard, and `uns/v1/#` would deliver the whole namespace.
    pub fn at_any_location(class: &Class) -> Vec<Self> {
        Self::per_depth(&class.to_string())
    }

    /// Like [`TopicFilter::at_any_location`] for every instance of a class with an id
    /// (`_wo/+/events` for every work order's events).
    pub fn any_id_at_any_location(class: AnyId) -> Vec<Self> {
        Self::per_depth(class.pattern())
    }

    fn per_depth(class: &str) -> Vec<Self> {
        (1..=MAX_DEPTH)
            .map(|depth| {
                let levels = vec!["+"; depth].join("/");
                // `+` levels, then a class rendered by the model (no wildcard characters in ids),
                // so the filter is valid.
                Self(format!("{PREFIX}/{levels}/{class}"))
            })
            .collect()
    }

    /// The filter text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `topic` matches this filter under MQTT rules. Topics starting with `$` (e.g. `$SYS/...`) are
    /// not matched by a filter whose first level is a wildcard.
    pub fn matches(&self, topic: &str) -> bool {
        let mut filter_levels = self.0.split('/');
        let mut topic_levels = topic.split('/');
        let mut first = true;
        loop {
            match (filter_levels.next(), topic_levels.next()) {
                (Some("#"), topic_level) => {
                    return !(first && topic_level.is_some_and(|level| level.starts_with('$')));
                }
                (Some("+"), Some(level)) => {
                    if first && level.starts_with('$') {
                        return false;
                    }
                }
                (Some(filter_level), Some(level)) => {
                    if filter_level != level {
                        return false;
                    }
                }
                (None, None) => return true,
                _ => return false,
            }
            first = false;
        }
    }
}

/// A class with an id level, for [`TopicFilter::any_id_at_any_location`]. Subscribers still parse
/// each topic through [`super::UnsTopic`]: `_wo/+` also matches `_wo/_active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnyId {
    /// `_wo/+`: every work order document.
    WorkOrder,
    /// `_wo/+/events`: every work order's events.
    WorkOrderEvents,
    /// `_erp/production-orders/+`.
    ProductionOrder,
    /// `_lot/+`.
    Lot,
    /// `_count/+`: every counter.
    Count,
}

impl AnyId {
    fn pattern(self) -> &'static str {
        match self {
            AnyId::WorkOrder => "_wo/+",
            AnyId::WorkOrderEvents => "_wo/+/events",
            AnyId::ProductionOrder => "_erp/production-orders/+",
            AnyId::Lot => "_lot/+",
            AnyId::Count => "_count/+",
        }
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TopicFilter {
    type Err = FilterError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_validation() {
        fn check(filter: &str, expected: Result<(), FilterError>) {
            assert_eq!(TopicFilter::new(filter).map(|_| ()), expected, "{filter:?}");
        }
        check("#", Ok(()));
        check("+", Ok(()));
        check("uns/v1/+/+/_state", Ok(()));
        check("a//b", Ok(()));
        check("", Err(FilterError::Empty));
        check(
            "a/#/b",
            Err(FilterError::MultiLevelWildcard {
                level: 1,
                found: "#".to_owned(),
            }),
        );
        check(
            "a/b#",
            Err(FilterError::MultiLevelWildcard {
                level: 1,
                found: "b#".to_owned(),
            }),
        );
        check(
            "a/+b",
            Err(FilterError::SingleLevelWildcard {
                level: 1,
                found: "+b".to_owned(),
            }),
        );
        check("a\0", Err(FilterError::Nul { offset: 1 }));
    }

    #[test]
    fn filter_matching() {
        fn check(filter: &str, topic: &str, expected: bool) {
            let parsed = TopicFilter::new(filter).expect("test filters are valid");
            assert_eq!(parsed.matches(topic), expected, "{filter:?} vs {topic:?}");
        }
        check("uns/v1/#", "uns/v1/acme/_meta", true);
        check("uns/v1/#", "uns/v1", true);
        check("uns/v1/#", "uns/v2/acme/_meta", false);
        check("uns/+/acme/_meta", "uns/v1/acme/_meta", true);
        check("uns/+/acme/_meta", "uns/v1/acme/x/_meta", false);
        check("uns/+", "uns/", true);
        check("uns/+", "uns", false);
        check("#", "uns/v1/a", true);
        check("#", "$SYS/broker/uptime", false);
        check("+/broker/uptime", "$SYS/broker/uptime", false);
        check("$SYS/#", "$SYS/broker/uptime", true);
        check("a/b", "a/b", true);
        check("a/b", "a/b/c", false);
        check("a/b/c", "a/b", false);
        let under = TopicFilter::under(&"acme/berlin".parse().expect("valid location"));
        assert_eq!(under.as_str(), "uns/v1/acme/berlin/#");
        assert!(under.matches("uns/v1/acme/berlin/packaging/_meta"));
        assert!(!under.matches("uns/v1/acme/berlin-2/_meta"));
        assert_eq!(TopicFilter::all_uns().as_str(), "uns/v1/#");
    }

    #[test]
    fn class_at_any_location() {
        let filters = TopicFilter::at_any_location(&Class::WorkOrderActive);
        assert_eq!(filters.len(), MAX_DEPTH);
        assert_eq!(filters[0].as_str(), "uns/v1/+/_wo/_active");
        assert_eq!(filters[2].as_str(), "uns/v1/+/+/+/_wo/_active");
        let topic = "uns/v1/acme/berlin/packaging/line-1/_wo/_active";
        assert_eq!(filters.iter().filter(|f| f.matches(topic)).count(), 1);
        assert!(!filters.iter().any(|f| f.matches("uns/v1/acme/_meta")));
        for filter in &filters {
            assert!(TopicFilter::new(filter.as_str()).is_ok(), "{filter}");
        }
        let events = TopicFilter::any_id_at_any_location(AnyId::WorkOrderEvents);
        assert!(
            events
                .iter()
                .any(|f| f.matches("uns/v1/acme/berlin/packaging/line-1/_wo/wo-1/events"))
        );
        assert!(!events.iter().any(|f| f.matches("uns/v1/acme/_wo/wo-1")));
    }
}
