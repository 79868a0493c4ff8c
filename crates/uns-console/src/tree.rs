//! [`TopicTree`]: every topic the console has seen, as a tree of topic levels, with the latest
//! message of each topic and a bounded history. Free of I/O and of clocks: the arrival time is
//! passed in, so every rule is a plain unit test.
//!
//! Each node counts the topics at and below it, kept up to date on insert, so listing the children
//! of one level ([`TopicTree::children`]) costs the depth of the path plus the number of children,
//! whatever the size of the namespace. A filter ([`Filter`]) makes the listing walk the subtree
//! instead (every topic under the path is checked once).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use uns_model::topic::TopicFilter;

/// How much history each topic keeps: at most `max_values` points, none older than `window_ms`,
/// and all topics together at most `max_bytes` of payload, the oldest points anywhere going first
/// (the latest message is always kept as [`TopicEntry::latest`], however old).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Points kept per topic.
    pub max_values: usize,
    /// Age limit of a point, in milliseconds of arrival time.
    pub window_ms: u64,
    /// Payload bytes of all history points together, plus [`POINT_OVERHEAD_BYTES`] per point.
    pub max_bytes: usize,
}

/// What a history point costs beyond its payload (the point, its queue slots), for the total
/// budget.
pub const POINT_OVERHEAD_BYTES: usize = 64;

/// The MQTT 5 properties of a message that a person wants to see.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Properties {
    /// User Properties, in the order sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
    /// Content Type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Response Topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Correlation Data, as hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    /// Payload Format Indicator (1: UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u8>,
    /// Message Expiry Interval left on delivery, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_expiry_interval: Option<u32>,
}

/// One message as the console keeps it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The raw payload (shared with the history point of the same message).
    pub payload: Bytes,
    /// Retained: from the retained store, or published retained (Retain As Published).
    pub retain: bool,
    /// The QoS it was delivered at.
    pub qos: u8,
    /// Its MQTT 5 properties.
    pub properties: Properties,
    /// When the console received it, ms since the Unix epoch.
    pub arrival_ms: u64,
    /// The payload decoded by the topic's namespace (Sparkplug B), when it has one.
    pub decoded: Option<Arc<serde_json::Value>>,
}

/// One point of a topic's history.
#[derive(Clone, Debug)]
pub struct Point {
    /// Arrival order over the whole tree (for the total budget).
    pub seq: u64,
    /// Arrival time, ms since the Unix epoch.
    pub arrival_ms: u64,
    /// The numeric value read from the payload ([`numeric_value`]), if any.
    pub value: Option<f64>,
    /// The payload.
    pub payload: Bytes,
}

/// A topic with its latest message and history.
#[derive(Clone, Debug)]
pub struct TopicEntry {
    /// The full topic name.
    pub name: Arc<str>,
    /// The latest message.
    pub latest: Sample,
    /// Older and latest points, oldest first, within the [`HistoryLimits`].
    pub history: VecDeque<Point>,
    /// Messages received on this topic.
    pub n_messages: u64,
}

/// What to list: every topic, or those whose name contains a text (case-insensitive), or those
/// an MQTT filter matches.
#[derive(Clone, Debug)]
pub enum Filter {
    /// No filter.
    All,
    /// Name contains this text (lower-cased).
    Text(String),
    /// Name matches this MQTT filter.
    Wildcard(TopicFilter),
}

impl Filter {
    /// A text filter (`text` is matched case-insensitively); empty text means [`Filter::All`].
    pub fn text(text: &str) -> Self {
        if text.is_empty() {
            Self::All
        } else {
            Self::Text(text.to_lowercase())
        }
    }

    /// Whether `topic` passes.
    pub fn accepts(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Text(text) => topic.to_lowercase().contains(text.as_str()),
            Self::Wildcard(filter) => filter.matches(topic),
        }
    }
}

/// One child in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Child {
    /// The level's text.
    pub name: String,
    /// The full path of this node (a topic name if `is_topic`).
    pub path: String,
    /// Topics at and below this node (that pass the filter).
    pub n_topics: usize,
    /// Whether the node has children (that pass the filter).
    pub has_children: bool,
    /// Whether the node is itself a topic with a message.
    pub is_topic: bool,
    /// The start of its latest payload, when it is a topic and the payload is text (at most
    /// [`PREVIEW_CHARS`] characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// Characters of a payload shown next to a topic in the tree.
pub const PREVIEW_CHARS: usize = 60;

/// The children of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// Topics at and below the node (that pass the filter).
    pub n_topics: usize,
    /// The children, sorted by name, at most the limit asked for.
    pub children: Vec<Child>,
    /// Children left out by the limit.
    pub n_left_out: usize,
}

/// Every topic seen, as a tree of levels.
#[derive(Debug)]
pub struct TopicTree {
    root: Node,
    limits: HistoryLimits,
    n_messages: u64,
    n_points: usize,
    n_point_bytes: usize,
    /// Every point's `(seq, topic)` in arrival order, for dropping the oldest anywhere when the
    /// total budget is exceeded; entries of points already dropped are skipped (and compacted
    /// away when they are the majority).
    order: VecDeque<(u64, Arc<str>)>,
    next_seq: u64,
}

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<Box<str>, Node>,
    topic: Option<Box<TopicEntry>>,
    /// Topics at and below this node.
    n_topics: usize,
}

/// What an insert changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The first message on this topic.
    NewTopic,
    /// A topic seen before.
    Update,
}

/// Sizes of what the tree holds, for `/api/v1/console/stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TreeStats {
    /// Topics.
    pub n_topics: usize,
    /// Messages received.
    pub n_messages: u64,
    /// History points held, over all topics.
    pub n_history_points: usize,
    /// Payload bytes of the history points (latest payloads included: they are shared).
    pub history_payload_bytes: usize,
}

impl TopicTree {
    /// An empty tree keeping `limits` of history per topic.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            root: Node::default(),
            limits,
            n_messages: 0,
            n_points: 0,
            n_point_bytes: 0,
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// What the total budget counts.
    fn held_bytes(&self) -> usize {
        self.n_point_bytes + self.n_points * POINT_OVERHEAD_BYTES
    }

    /// Drops the oldest points of any topic until the history fits `max_bytes`.
    fn trim_total(&mut self) {
        while self.held_bytes() > self.limits.max_bytes {
            let Some((seq, topic)) = self.order.pop_front() else {
                break;
            };
            let Some(entry) = self.lookup_mut(&topic) else {
                continue;
            };
            // Only if it is still there: the topic's own limits may have dropped it already.
            if entry.history.front().is_some_and(|point| point.seq == seq)
                && let Some(dropped) = entry.history.pop_front()
            {
                self.n_points -= 1;
                self.n_point_bytes -= dropped.payload.len();
            }
        }
        if self.order.len() > 2 * self.n_points + 1024 {
            let mut live: Vec<(u64, Arc<str>)> = Vec::with_capacity(self.n_points);
            collect_points(&self.root, &mut live);
            live.sort_unstable_by_key(|(seq, _)| *seq);
            self.order = live.into();
        }
    }

    fn lookup_mut(&mut self, topic: &str) -> Option<&mut TopicEntry> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        node.topic.as_deref_mut()
    }

    /// Records a message on `topic`.
    pub fn insert(&mut self, topic: &str, sample: Sample) -> Inserted {
        self.n_messages += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let point = Point {
            seq,
            arrival_ms: sample.arrival_ms,
            value: numeric_value(&sample.payload),
            payload: sample.payload.clone(),
        };
        let is_new = self.lookup(topic).is_none();
        let mut node = &mut self.root;
        if is_new {
            node.n_topics += 1;
        }
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
            if is_new {
                node.n_topics += 1;
            }
        }
        let entry = node.topic.get_or_insert_with(|| {
            Box::new(TopicEntry {
                name: topic.into(),
                latest: sample.clone(),
                history: VecDeque::new(),
                n_messages: 0,
            })
        });
        entry.latest = sample;
        entry.n_messages += 1;
        self.n_points += 1;
        self.n_point_bytes += point.payload.len();
        entry.history.push_back(point);
        let oldest_kept = entry
            .latest
            .arrival_ms
            .saturating_sub(self.limits.window_ms);
        while entry.history.len() > self.limits.max_values
            || entry
                .history
                .front()
                .is_some_and(|point| point.arrival_ms < oldest_kept)
        {
            if let Some(dropped) = entry.history.pop_front() {
                self.n_points -= 1;
                self.n_point_bytes -= dropped.payload.len();
            }
        }
        self.order.push_back((seq, entry.name.clone()));
        self.trim_total();
        if is_new {
            Inserted::NewTopic
        } else {
            Inserted::Update
        }
    }

    /// The topic named `topic`, if a message arrived on it.
    pub fn lookup(&self, topic: &str) -> Option<&TopicEntry> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.topic.as_deref()
    }

    /// The children of the node at `path` (`None`: the root; `Some("")` is the empty first level of
    /// a topic such as `/a`), at most `limit` of them, with counts of topics that pass `filter`.
    /// Children with no such topic are left out. `None` when no topic has that path as a prefix.
    pub fn children(&self, path: Option<&str>, filter: &Filter, limit: usize) -> Option<Listing> {
        let mut node = &self.root;
        if let Some(path) = path {
            for level in path.split('/') {
                node = node.children.get(level)?;
            }
        }
        let prefix = path.map(|path| format!("{path}/")).unwrap_or_default();
        let mut children = Vec::new();
        let mut n_topics = 0;
        let mut n_left_out = 0;
        for (name, child) in &node.children {
            let child_path = format!("{prefix}{name}");
            let (n_child_topics, is_topic) = match filter {
                Filter::All => (child.n_topics, child.topic.is_some()),
                _ => {
                    let is_topic = child.topic.is_some() && filter.accepts(&child_path);
                    (child.count_matching(filter), is_topic)
                }
            };
            if n_child_topics == 0 {
                continue;
            }
            n_topics += n_child_topics;
            if children.len() >= limit {
                n_left_out += 1;
                continue;
            }
            children.push(Child {
                name: name.to_string(),
                path: child_path,
                n_topics: n_child_topics,
                has_children: n_child_topics > usize::from(is_topic),
                is_topic,
                preview: child
                    .topic
                    .as_ref()
                    .filter(|_| is_topic)
                    .and_then(|entry| preview(&entry.latest)),
            });
        }
        if matches!(filter, Filter::All) {
            n_topics = node.n_topics - usize::from(node.topic.is_some());
        }
        Some(Listing {
            n_topics,
            children,
            n_left_out,
        })
    }

    /// Topic names that pass `filter`, sorted, at most `limit`; and how many passed in all.
    pub fn search(&self, filter: &Filter, limit: usize) -> (Vec<Arc<str>>, usize) {
        let mut found = Vec::new();
        let mut n_found = 0;
        self.root.visit(&mut |entry| {
            if filter.accepts(&entry.name) {
                n_found += 1;
                if found.len() < limit {
                    found.push(entry.name.clone());
                }
            }
        });
        (found, n_found)
    }

    /// Sizes of what the tree holds.
    pub fn stats(&self) -> TreeStats {
        TreeStats {
            n_topics: self.root.n_topics,
            n_messages: self.n_messages,
            n_history_points: self.n_points,
            history_payload_bytes: self.n_point_bytes,
        }
    }
}

impl Node {
    fn count_matching(&self, filter: &Filter) -> usize {
        let mut n_matching = 0;
        self.visit(&mut |entry| {
            if filter.accepts(&entry.name) {
                n_matching += 1;
            }
        });
        n_matching
    }

    /// Every topic at and below this node, in name order (depth first, iteratively: topic depth is
    /// unbounded and must not overflow the stack).
    fn visit(&self, each: &mut impl FnMut(&TopicEntry)) {
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            if let Some(entry) = &node.topic {
                each(entry);
            }
            stack.extend(node.children.values().rev());
        }
    }
}

/// The tree's one-line view of a message: a tag's `value` (the `_tag` shape), else the start of
/// the text; Sparkplug and binary payloads show their size.
fn preview(sample: &Sample) -> Option<String> {
    if let Some(decoded) = &sample.decoded {
        let kind = decoded.get("kind").and_then(serde_json::Value::as_str);
        return Some(format!("Sparkplug {}", kind.unwrap_or("?")));
    }
    let Ok(text) = std::str::from_utf8(&sample.payload) else {
        return Some(format!("({} bytes)", sample.payload.len()));
    };
    let text = text.trim();
    if text.starts_with('{')
        && let Ok(serde_json::Value::Object(object)) = serde_json::from_str(text)
        && let Some(value) = object.get("value")
    {
        return Some(cut(&value.to_string()));
    }
    Some(cut(text))
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The number a payload stands for, for charts: a JSON number, a JSON boolean (1 or 0), the
/// `value` field of a JSON object holding one of those (the `_tag` shape), or plain text that
/// parses as a number. Anything else (Sparkplug protobuf included) has none.
pub fn numeric_value(payload: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    let first = text.bytes().next()?;
    if first == b'{' {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        return json_number(value.get("value")?);
    }
    if let Ok(number) = text.parse::<f64>() {
        return number.is_finite().then_some(number);
    }
    match text {
        "true" => Some(1.0),
        "false" => Some(0.0),
        _ => None,
    }
}

fn json_number(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(number) => number.as_f64(),
        serde_json::Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        _ => None,
    }
}

/// Every history point's `(seq, topic)` at and below `node`.
fn collect_points(node: &Node, out: &mut Vec<(u64, Arc<str>)>) {
    if let Some(entry) = &node.topic {
        out.extend(entry.history.iter().map(|p| (p.seq, entry.name.clone())));
    }
    for child in node.children.values() {
        collect_points(child, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &str, arrival_ms: u64) -> Sample {
        Sample {
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            retain: true,
            qos: 1,
            properties: Properties::default(),
            arrival_ms,
            decoded: None,
        }
    }

    fn tree(topics: &[&str]) -> TopicTree {
        let mut tree = TopicTree::new(HistoryLimits {
            max_values: 3,
            window_ms: 10_000,
            max_bytes: usize::MAX,
        });
        for topic in topics {
            tree.insert(topic, sample("1", 0));
        }
        tree
    }

    fn names(listing: &Listing) -> Vec<(&str, usize, bool, bool)> {
        listing
            .children
            .iter()
            .map(|c| (c.name.as_str(), c.n_topics, c.has_children, c.is_topic))
            .collect()
    }

    #[test]
    fn children_count_topics_per_branch() {
        let tree = tree(&["a/b/c", "a/b/d", "a/b", "a/x", "z", "/lead", "a/b/c"]);
        let root = tree.children(None, &Filter::All, 100).expect("root");
        assert_eq!(root.n_topics, 6);
        assert_eq!(
            names(&root),
            vec![
                ("", 1, true, false),
                ("a", 4, true, false),
                ("z", 1, false, true)
            ]
        );
        let a = tree.children(Some("a"), &Filter::All, 100).expect("a");
        assert_eq!(names(&a), vec![("b", 3, true, true), ("x", 1, false, true)]);
        assert_eq!(a.children[0].path, "a/b");
        let b = tree.children(Some("a/b"), &Filter::All, 100).expect("a/b");
        assert_eq!(b.n_topics, 2, "a/b itself is not its own child");
        let lead = tree
            .children(Some(""), &Filter::All, 100)
            .expect("empty level");
        assert_eq!(lead.children[0].path, "/lead");
        assert!(tree.children(Some("nope"), &Filter::All, 100).is_none());
        let limited = tree.children(None, &Filter::All, 1).expect("root");
        assert_eq!((limited.children.len(), limited.n_left_out), (1, 2));
    }

    #[test]
    fn filters_count_only_matching_topics() {
        let tree = tree(&["a/b/c", "a/b/d", "a/x/c", "$SYS/broker/c"]);
        let wildcard = Filter::Wildcard(TopicFilter::new("+/+/c").expect("valid"));
        let root = tree.children(None, &wildcard, 100).expect("root");
        assert_eq!(names(&root), vec![("a", 2, true, false)]);
        let sys = Filter::Wildcard(TopicFilter::new("$SYS/#").expect("valid"));
        assert_eq!(tree.search(&sys, 10).1, 1);
        let text = Filter::text("B/D");
        assert_eq!(
            tree.search(&text, 10).0,
            vec![Arc::<str>::from("a/b/d")],
            "text matches case-insensitively"
        );
        let (found, n_found) = tree.search(&Filter::text("c"), 1);
        assert_eq!((found.len(), n_found), (1, 3));
    }

    #[test]
    fn history_is_bounded_by_count_and_window() {
        let mut tree = tree(&[]);
        for idx in 0..10 {
            tree.insert("t", sample(&idx.to_string(), 1_000 * idx));
        }
        let entry = tree.lookup("t").expect("topic");
        let values: Vec<_> = entry.history.iter().filter_map(|p| p.value).collect();
        assert_eq!(values, vec![7.0, 8.0, 9.0], "last 3 values");
        assert_eq!(entry.n_messages, 10);
        tree.insert("t", sample("99", 100_000));
        let entry = tree.lookup("t").expect("topic");
        assert_eq!(entry.history.len(), 1, "older than the window: dropped");
        assert_eq!(tree.stats().n_history_points, 1);
        assert_eq!(tree.stats().history_payload_bytes, 2);
    }

    #[test]
    fn all_topics_together_stay_within_the_byte_budget_oldest_first() {
        // Room for four points of 2-byte payloads: the fifth pushes out the oldest anywhere.
        let budget = 4 * (2 + POINT_OVERHEAD_BYTES);
        let mut tree = TopicTree::new(HistoryLimits {
            max_values: 100,
            window_ms: 1_000_000,
            max_bytes: budget,
        });
        tree.insert("a", sample("10", 1));
        tree.insert("a", sample("11", 2));
        tree.insert("b", sample("20", 3));
        tree.insert("b", sample("21", 4));
        assert_eq!(tree.stats().n_history_points, 4);
        tree.insert("b", sample("22", 5));
        tree.insert("b", sample("23", 6));
        let values = |tree: &TopicTree, topic: &str| -> Vec<f64> {
            let entry = tree.lookup(topic).expect("topic");
            entry.history.iter().filter_map(|p| p.value).collect()
        };
        assert_eq!(
            values(&tree, "a"),
            Vec::<f64>::new(),
            "a's points were the oldest"
        );
        assert_eq!(values(&tree, "b"), vec![20.0, 21.0, 22.0, 23.0]);
        // The latest message stays, whatever the budget took.
        assert_eq!(&tree.lookup("a").expect("a").latest.payload[..], b"11");
        assert!(tree.stats().history_payload_bytes + 4 * POINT_OVERHEAD_BYTES <= budget);
        // Many points dropped by a topic's own limits do not pile up in the arrival order.
        let mut small = TopicTree::new(HistoryLimits {
            max_values: 1,
            window_ms: 1_000_000,
            max_bytes: usize::MAX,
        });
        for idx in 0..10_000 {
            small.insert("t", sample("1", idx));
        }
        assert!(
            small.order.len() <= 2 * small.n_points + 1024,
            "{}",
            small.order.len()
        );
    }

    #[test]
    fn numbers_in_payloads() {
        let check = |payload: &str, expected: Option<f64>| {
            assert_eq!(numeric_value(payload.as_bytes()), expected, "{payload:?}");
        };
        check("42", Some(42.0));
        check(" -1.5 ", Some(-1.5));
        check("true", Some(1.0));
        check(r#"{"value": 71.4, "quality": "good"}"#, Some(71.4));
        check(r#"{"value": false}"#, Some(0.0));
        check(r#"{"value": "running"}"#, None);
        check(r#"{"other": 1}"#, None);
        check("NaN", None);
        check("hello", None);
        check("", None);
    }
}
