//! Topic limits checked on input before the engine sees a topic.
//!
//! The engine keeps topics in trees (subscriptions, retained messages) whose insert, remove
//! and drop recurse once per topic level; a topic of ~10 000 levels overflows a tokio worker's
//! stack and aborts the process. Every topic a client sends is checked here first, in linear
//! time and without parsing, and refused beyond the configured limits.

/// Why a topic is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TopicRefusal {
    /// More bytes than `max_topic_length`.
    TooLong {
        /// The topic's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More levels than `max_topic_levels`.
    TooManyLevels {
        /// The limit (the topic's own count is not computed past it).
        max: usize,
    },
}

impl std::fmt::Display for TopicRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicRefusal::TooLong { len, max } => {
                write!(f, "topic is {len} bytes, more than max_topic_length {max}")
            }
            TopicRefusal::TooManyLevels { max } => {
                write!(f, "topic has more than max_topic_levels {max} levels")
            }
        }
    }
}

/// The `[broker]` topic limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopicLimits {
    pub(crate) max_levels: usize,
    pub(crate) max_length: usize,
}

impl TopicLimits {
    /// Checks a topic filter (SUBSCRIBE), after any `$share/group/` prefix was removed.
    pub(crate) fn check_filter(&self, filter: &str) -> Result<(), TopicRefusal> {
        if filter.len() > self.max_length {
            return Err(TopicRefusal::TooLong {
                len: filter.len(),
                max: self.max_length,
            });
        }
        // Levels are separated by `/`; counting stops at the limit.
        if filter
            .bytes()
            .filter(|&b| b == b'/')
            .nth(self.max_levels - 1)
            .is_some()
        {
            return Err(TopicRefusal::TooManyLevels {
                max: self.max_levels,
            });
        }
        Ok(())
    }

    /// Checks a topic name (PUBLISH, Will).
    pub(crate) fn check_name(&self, name: &str) -> Result<(), TopicRefusal> {
        self.check_filter(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TopicLimits = TopicLimits {
        max_levels: 3,
        max_length: 12,
    };

    #[test]
    fn filters_within_limits_pass_and_beyond_are_refused() {
        assert_eq!(LIMITS.check_filter("a/b/c"), Ok(()));
        assert_eq!(LIMITS.check_filter("a/+/#"), Ok(()));
        assert_eq!(LIMITS.check_filter(""), Ok(()));
        assert_eq!(LIMITS.check_filter("//"), Ok(()), "three empty levels");
        assert_eq!(
            LIMITS.check_filter("a/b/c/d"),
            Err(TopicRefusal::TooManyLevels { max: 3 })
        );
        assert_eq!(
            LIMITS.check_filter("///"),
            Err(TopicRefusal::TooManyLevels { max: 3 })
        );
        assert_eq!(LIMITS.check_filter("abcdefghijkl"), Ok(()));
        assert_eq!(
            LIMITS.check_filter("abcdefghijklm"),
            Err(TopicRefusal::TooLong { len: 13, max: 12 })
        );
    }

    #[test]
    fn a_deep_topic_is_refused_in_linear_time() {
        let deep = "a/".repeat(100_000);
        let limits = TopicLimits {
            max_levels: 64,
            max_length: usize::MAX,
        };
        assert_eq!(
            limits.check_filter(&deep),
            Err(TopicRefusal::TooManyLevels { max: 64 })
        );
    }
}
