//! Rate limiting of `_errors` reports per source, free of I/O (time is passed in).
//!
//! A broken edge node can send thousands of bad messages a second; one report each would flood the
//! error topic and every subscriber of it. So reports are aggregated per **source**: the Sparkplug edge
//! node a rejected message came from (its devices included), or one source for everything whose topic
//! names no edge node. Per source and window ([`BridgeConfig::error_window_ms`]):
//!
//! - the first rejection opens the window and is published in full at once (the first example);
//! - further rejections within the window are only counted;
//! - when the window ends, if any were held back, one summary report is published: how many, of
//!   which kinds, and the last one (its reason, topic and payload excerpt) as the last example.
//!
//! So a source gives at most two reports per window. Every rejection, published or not, counts in
//! `uns_scada_bridge_rejected_total{kind}`; the ones folded into a summary also in
//! `uns_scada_bridge_error_reports_suppressed_total`. A window of 0 publishes every report.
//!
//! [`BridgeConfig::error_window_ms`]: crate::BridgeConfig::error_window_ms

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uns_model::payload::{ErrorReport, SchemaTag};
use uns_model::topic::UnsTopic;
use uns_sparkplug::SparkplugTopic;
use uns_sparkplug::host::NodeId;

use crate::bridge::{BridgeCounters, KindLabel, Publication};

/// The `kind` a summary report is counted under in `uns_rejected_input_total`.
pub(crate) const AGGREGATED_KIND: &str = "aggregated";

/// Sources with a window of their own at most; rejections from further sources share the
/// [`Source::Other`] window, so made-up node ids in topics cannot escape the limit (nor grow it).
const MAX_SOURCES: usize = 1_024;

/// Where rejected input came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    /// A Sparkplug edge node (and its devices).
    Node(NodeId),
    /// A topic that names no edge node.
    Other,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Node(node) => write!(f, "edge node {node}"),
            Source::Other => f.write_str("topics that name no edge node"),
        }
    }
}

/// One source's open window.
#[derive(Debug)]
struct Window {
    /// When it ends (ms since the epoch).
    until_ms: u64,
    /// Rejections held back so far, by kind.
    held: BTreeMap<&'static str, u64>,
    /// The last one held back: its `_errors` topic and report.
    last: Option<(Arc<UnsTopic>, Box<ErrorReport>)>,
}

/// The per-source windows. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct ErrorLimiter {
    window_ms: u64,
    windows: HashMap<Source, Window>,
    counters: BridgeCounters,
}

impl ErrorLimiter {
    /// Windows of `window_ms` (0: no limit), counting into `counters`.
    pub(crate) fn new(window_ms: u64, counters: BridgeCounters) -> Self {
        Self {
            window_ms,
            windows: HashMap::new(),
            counters,
        }
    }

    /// Counts `publication` if it is an error report and returns it if it must go out now.
    pub(crate) fn admit(&mut self, publication: Publication, now_ms: u64) -> Option<Publication> {
        let Publication::Error {
            topic,
            kind,
            report,
        } = publication
        else {
            return Some(publication);
        };
        self.counters
            .rejected
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
        if self.window_ms == 0 {
            return Some(Publication::Error {
                topic,
                kind,
                report,
            });
        }
        let mut source = source_of(report.topic.as_deref());
        if !self.windows.contains_key(&source) && self.windows.len() >= MAX_SOURCES {
            // Ended windows that hold nothing back are done with.
            self.windows
                .retain(|_, window| now_ms < window.until_ms || window.last.is_some());
            if self.windows.len() >= MAX_SOURCES {
                source = Source::Other;
            }
        }
        match self.windows.get_mut(&source) {
            Some(window) if now_ms < window.until_ms => {
                *window.held.entry(kind).or_default() += 1;
                window.last = Some((topic, report));
                self.counters.error_reports_suppressed.inc();
                None
            }
            _ => {
                // No window, or one that ended unflushed: its summary is due before this one.
                self.windows.insert(
                    source,
                    Window {
                        until_ms: now_ms.saturating_add(self.window_ms),
                        held: BTreeMap::new(),
                        last: None,
                    },
                );
                Some(Publication::Error {
                    topic,
                    kind,
                    report,
                })
            }
        }
    }

    /// When [`ErrorLimiter::flush`] must run next (ms since the epoch), if a window holds reports.
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.windows
            .values()
            .filter(|window| window.last.is_some())
            .map(|window| window.until_ms)
            .min()
    }

    /// Ends the windows that are over at `now_ms` and returns their summaries (`u64::MAX`: all).
    pub(crate) fn flush(&mut self, now_ms: u64) -> Vec<Publication> {
        let mut due: Vec<Source> = self
            .windows
            .iter()
            .filter(|(_, window)| window.until_ms <= now_ms)
            .map(|(source, _)| source.clone())
            .collect();
        due.sort_by_key(ToString::to_string);
        let mut out = Vec::new();
        for source in due {
            let Some(window) = self.windows.remove(&source) else {
                continue;
            };
            let Some((topic, last)) = window.last else {
                continue;
            };
            let n_held: u64 = window.held.values().sum();
            let kinds: Vec<String> = window
                .held
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            let report = ErrorReport {
                schema: SchemaTag::default(),
                service: last.service.clone(),
                topic: last.topic.clone(),
                reason: format!(
                    "{n_held} more rejected from {source} within {window_s} s of the one reported \
                     before ({kinds}), held back so as not to flood _errors (setting \
                     error_window_ms); the last: {reason}",
                    window_s = self.window_ms as f64 / 1000.0,
                    kinds = kinds.join(", "),
                    reason = last.reason,
                ),
                payload_excerpt: last.payload_excerpt.clone(),
                payload_sha256: last.payload_sha256.clone(),
                occurred_at: last.occurred_at,
            };
            out.push(Publication::Error {
                topic,
                kind: AGGREGATED_KIND,
                report: Box::new(report),
            });
        }
        out
    }
}

fn source_of(topic: Option<&str>) -> Source {
    match topic.map(str::parse::<SparkplugTopic>) {
        Some(Ok(SparkplugTopic::Node { group, edge, .. }))
        | Some(Ok(SparkplugTopic::Device { group, edge, .. })) => {
            Source::Node(NodeId::new(&group, &edge))
        }
        _ => Source::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uns_model::payload::Timestamp;
    use uns_model::topic::{Class, Id, Location};

    fn error(topic: &str, kind: &'static str, reason: &str) -> Publication {
        let location: Location = "acme/berlin".parse().expect("valid location");
        Publication::Error {
            topic: Arc::new(UnsTopic::located(location, Class::Errors)),
            kind,
            report: Box::new(ErrorReport {
                schema: SchemaTag::default(),
                service: Id::new("scada-bridge").expect("valid id"),
                topic: Some(topic.to_owned()),
                reason: reason.to_owned(),
                payload_excerpt: Some(reason.to_owned()),
                payload_sha256: None,
                occurred_at: Timestamp::from_unix_ms(0).expect("valid time"),
            }),
        }
    }

    fn reason(publication: &Publication) -> &str {
        match publication {
            Publication::Error { report, .. } => &report.reason,
            _ => "",
        }
    }

    #[test]
    fn the_first_goes_out_the_rest_become_one_summary_per_window_and_source() {
        let counters = BridgeCounters::default();
        let mut limiter = ErrorLimiter::new(1_000, counters.clone());
        let a = "spBv1.0/g/NDATA/a";
        assert!(limiter.admit(error(a, "bad_payload", "first"), 0).is_some());
        for idx in 0..1_999 {
            let kind = if idx % 2 == 0 {
                "bad_payload"
            } else {
                "bad_seq"
            };
            assert!(
                limiter
                    .admit(error(a, kind, &format!("no {idx}")), 10)
                    .is_none()
            );
        }
        // Another node has a window of its own.
        assert!(
            limiter
                .admit(error("spBv1.0/g/DDATA/b/dev", "bad_payload", "b"), 20)
                .is_some()
        );
        assert_eq!(limiter.next_deadline_ms(), Some(1_000));
        assert!(limiter.flush(999).is_empty());
        let summaries = limiter.flush(1_000);
        assert_eq!(summaries.len(), 1);
        let text = reason(&summaries[0]);
        assert!(
            text.starts_with("1999 more rejected from edge node g/a"),
            "{text}"
        );
        assert!(text.contains("bad_payload 1000, bad_seq 999"), "{text}");
        assert!(text.ends_with("the last: no 1998"), "{text}");
        // A new window after the flush: the next one goes out at once.
        assert!(
            limiter
                .admit(error(a, "bad_payload", "again"), 1_001)
                .is_some()
        );
        assert_eq!(counters.error_reports_suppressed.get(), 1_999);
        let n_bad_payload = counters
            .rejected
            .get_or_create(&KindLabel {
                kind: "bad_payload".to_owned(),
            })
            .get();
        assert_eq!(n_bad_payload, 1 + 1_000 + 1 + 1);
    }

    #[test]
    fn made_up_sources_beyond_the_cap_share_one_window() {
        let mut limiter = ErrorLimiter::new(1_000, BridgeCounters::default());
        let n_published = (0..MAX_SOURCES + 500)
            .filter(|idx| {
                let topic = format!("spBv1.0/g/NDATA/node-{idx}");
                limiter
                    .admit(error(&topic, "bad_payload", "x"), 0)
                    .is_some()
            })
            .count();
        // One each for the first sources (the `Other` window among them), none for the rest.
        assert_eq!(n_published, MAX_SOURCES + 1);
        assert_eq!(limiter.windows.len(), MAX_SOURCES + 1);
        // Once their windows ended, room again.
        assert!(
            limiter
                .admit(error("spBv1.0/g/NDATA/late", "bad_payload", "x"), 1_000)
                .is_some()
        );
        assert!(limiter.windows.len() <= MAX_SOURCES + 1);
    }

    #[test]
    fn a_window_of_zero_publishes_everything() {
        let mut limiter = ErrorLimiter::new(0, BridgeCounters::default());
        for _ in 0..10 {
            assert!(limiter.admit(error("x", "bad_topic", "x"), 5).is_some());
        }
        assert!(limiter.flush(u64::MAX).is_empty());
    }
}
