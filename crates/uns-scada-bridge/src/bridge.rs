//! The mapping core, free of I/O: [`Bridge::apply`] turns the host session's [`HostEvent`]s into UNS
//! publications (`_tag`, `_state`, `_state/events`, `_count`, `_errors`) and Sparkplug messages (rebirth
//! NCMDs, STATE).
//!
//! Decisions (see also the crate docs):
//! - Current values are retained on `…/_tag/{metric path}`. A **historical** value (Sparkplug
//!   `is_historical`, store-and-forward) and any value older than the current one is published on
//!   `…/_tag/{metric path}/_history` (not retained, `"historical": true`), in timestamp order: one whose
//!   source time is not after the last historical value's (sent twice, or late) is dropped and counted.
//!   The retained current value is never replaced by an older one. Historical values never change
//!   `_state` or `_count`.
//! - On NDEATH/DDEATH every `_tag` of that node/device is published again, retained, with its last value
//!   and `"quality": "stale"`; a `_state` of that device becomes category `unknown` (name `offline`), since
//!   nobody knows what the machine does. `_count` totals stay: they are still the last known totals.
//! - `_count/{kind}` totals are monotonic: the bridge keeps its own total per location and kind and
//!   moves it by the machine counter's steps. A counter that goes down is a **reset**: the new raw value
//!   is added on top, the document counts it (`resets`, `last_reset_ms`) and a `reset` event goes to
//!   `_count/events`. An 8/16/32-bit integer counter (by its Sparkplug datatype) that goes from the top
//!   quarter of its range to the bottom quarter **rolled over**: the wrapped difference is added. The
//!   totals of an earlier run are learned from the retained `_count` documents ([`Bridge::learn_count`])
//!   before the first Sparkplug message, so a bridge restart does not reset them either.
//! - A value that JSON would give as an object (DataSet, Template, PropertySet) is published as its JSON
//!   text in a string, since a tag's value is never an object.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use uns_model::payload::{
    CountChange, CountDoc, CountEvent, ErrorReport, EventHeader, MachineState, Mode, Quality,
    Quantity, SchemaTag, SparkplugSource, StateCategory, StateDoc, StateEvent, StateSnapshot,
    TagContext, TagValue, Timestamp, Uom,
};
use uns_model::topic::{Class, CountKind, Id, Location, TagPath, UnsTopic, slug};
use uns_sparkplug::host::{HostEvent, MetricUpdate, NodeId, Outgoing, Rejected};
use uns_sparkplug::{DataType, SparkplugTopic, Value};

use crate::config::{Mapping, mode_of};
use crate::errors::ErrorLimiter;
use crate::{context, paths};

/// Something the I/O loop must publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    /// A UNS document, retained or not per its class (DESIGN §2), through the service's UNS client.
    Uns {
        /// The topic (shared: a `_tag` topic is built once per metric, not per value).
        topic: Arc<UnsTopic>,
        /// The JSON bytes.
        payload: Bytes,
    },
    /// A historical tag value on its `_tag/…/_history` topic (not retained, by its class).
    Historical {
        /// The topic (shared, as for [`Publication::Uns`]).
        topic: Arc<UnsTopic>,
        /// The JSON bytes.
        payload: Bytes,
    },
    /// A Sparkplug message (rebirth NCMD, STATE birth).
    Sparkplug(Outgoing),
    /// Rejected input for `_errors` (through `UnsClient::report_error`, which counts it by `kind`).
    Error {
        /// The `_errors` topic of the location concerned.
        topic: Arc<UnsTopic>,
        /// A short class for the counter, e.g. `bad_payload`.
        kind: &'static str,
        /// The report (boxed: rare, and large next to the other variants, which are moved per metric).
        report: Box<ErrorReport>,
    },
}

/// The bridge's own Prometheus counters (registered by `run`).
#[derive(Clone, Debug, Default)]
pub struct BridgeCounters {
    /// Current values published to `_tag`.
    pub tags: Counter,
    /// Historical values published on `_tag/…/_history` (flagged historical, or older than the
    /// current value).
    pub historical: Counter,
    /// Historical values dropped: sent again, or older than the last historical value published.
    pub history_dropped: Counter,
    /// `_tag` documents re-published as stale.
    pub stale: Counter,
    /// Rebirth requests sent.
    pub rebirths: Counter,
    /// `_state` changes published.
    pub states: Counter,
    /// Every rejected input, by kind: reported on `_errors` or held back by the rate limit.
    pub rejected: Family<KindLabel, Counter>,
    /// Rejections held back by the `_errors` rate limit (counted in a summary report instead).
    pub error_reports_suppressed: Counter,
    /// Metrics the bridge holds state for (the births in effect of every node and device): what
    /// its memory grows with. A rebirth replaces, so this follows the births, never their number.
    pub tracked_metrics: Gauge,
}

/// The label of [`BridgeCounters::rejected`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// A short, stable class, e.g. `bad_payload`.
    pub kind: String,
}

type ScopeKey = (NodeId, Option<Arc<str>>);

/// What a metric becomes, resolved once per (node, device, metric name).
#[derive(Debug)]
struct Target {
    location: Location,
    /// `None` for skipped metrics (e.g. `bdSeq`).
    tag: Option<Arc<UnsTopic>>,
    role: Role,
    /// The end of its `TagValue` JSON: `,"src":{…}}` (the source never changes per metric).
    src_suffix: Box<[u8]>,
    /// The last unit seen and its JSON fragment `,"unit":"CEL"` (empty when not a valid UoM).
    unit: Option<(Arc<str>, Box<[u8]>)>,
    /// The last current value published on its `_tag`, for stale marking.
    published: Option<PublishedTag>,
    /// Its `_tag/…/_history` topic, built on the first historical value.
    history: Option<Arc<UnsTopic>>,
    /// Source time of the current value published last.
    current_ms: Option<i64>,
    /// Source time of the historical value published last: history goes out in timestamp order,
    /// each source time once.
    history_ms: Option<i64>,
}

/// The last current value published on a `_tag`, kept for stale marking.
#[derive(Debug)]
struct PublishedTag {
    topic: Arc<UnsTopic>,
    /// The `TagValue` JSON as published.
    payload: Bytes,
    /// Where the `quality` value (a JSON string) lies in `payload`.
    quality: std::ops::Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Plain,
    State,
    StateName,
    Mode,
    Count(CountKind),
}

#[derive(Debug, Default)]
struct LocationState {
    /// The state published last and when it began (ms).
    current: Option<(StateSnapshot, i64)>,
    /// A state code received in the batch being applied, with its time.
    pending: Option<(String, i64)>,
    name: Option<String>,
    mode: Option<Mode>,
}

/// The mapping state. See the [module docs](self).
#[derive(Debug)]
pub struct Bridge {
    mapping: Mapping,
    service: Id,
    counters: BridgeCounters,
    /// Per node/device, per metric name: what the metric becomes and what its `_tag` got last.
    /// Replaced by each birth of the node/device.
    targets: HashMap<ScopeKey, HashMap<Arc<str>, Target>>,
    /// Per node/device: the tag paths of the last birth's metrics that a collision moved off their
    /// plain path ([`crate::paths`]).
    overrides: HashMap<ScopeKey, HashMap<Arc<str>, TagPath>>,
    /// `{"schema":"uns/tag/v1","value":`, the constant start of every `TagValue` document.
    tag_prefix: Box<[u8]>,
    /// Reused buffer the `TagValue` JSON is written into.
    buf: Vec<u8>,
    states: HashMap<Location, LocationState>,
    contexts: HashMap<Location, TagContext>,
    /// The UNS total behind each `_count/{kind}` and the machine counter's last raw value.
    counts: HashMap<(Location, CountKind), CountTotal>,
    /// Rate limit of `_errors` reports per source.
    errors: ErrorLimiter,
}

/// One `_count/{kind}` of a location: the monotonic UNS total and what the machine said last.
#[derive(Debug, Clone, PartialEq)]
struct CountTotal {
    total: f64,
    /// The machine counter's last raw value (`None` until one is seen or learned).
    raw: Option<f64>,
    resets: u64,
    rollovers: u64,
    last_reset_ms: Option<i64>,
}

/// How a machine counter moved from one raw value to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CountStep {
    /// Up (or unchanged) by this much.
    Up(f64),
    /// Wrapped at its width's maximum: up by the wrapped difference.
    Rollover(f64),
    /// Went down: a reset; the new raw value is what was counted since.
    Reset,
}

/// The counter width of a Sparkplug integer datatype, in bits (`None`: 64-bit or not an integer, where
/// a decrease is always a reset).
fn counter_width(datatype: DataType) -> Option<u32> {
    match datatype {
        DataType::Int8 | DataType::UInt8 => Some(8),
        DataType::Int16 | DataType::UInt16 => Some(16),
        DataType::Int32 | DataType::UInt32 => Some(32),
        _ => None,
    }
}

/// The raw counter value as an unsigned number of its width (a signed 16-bit counter that passed
/// 32767 reads as 32768.., as the bits say).
fn raw_count(value: &Value, width: Option<u32>) -> Option<f64> {
    let signed = match value {
        Value::Int8(v) => i64::from(*v),
        Value::Int16(v) => i64::from(*v),
        Value::Int32(v) => i64::from(*v),
        Value::Int64(v) => *v,
        Value::UInt8(v) => i64::from(*v),
        Value::UInt16(v) => i64::from(*v),
        Value::UInt32(v) => i64::from(*v),
        // Counts above i64::MAX stay exact enough as f64.
        Value::UInt64(v) => return Some(*v as f64),
        Value::Float(v) => return Some(f64::from(*v)),
        Value::Double(v) => return Some(*v),
        _ => return None,
    };
    Some(match width {
        Some(bits) => signed.rem_euclid(1_i64 << bits) as f64,
        None => signed as f64,
    })
}

/// Up, rollover (from the top quarter of the range to the bottom quarter of a 8/16/32-bit counter)
/// or reset.
fn count_step(before: f64, after: f64, width: Option<u32>) -> CountStep {
    if after >= before {
        return CountStep::Up(after - before);
    }
    if let Some(bits) = width {
        let range = (1_u64 << bits) as f64;
        if before >= range * 0.75 && after < range * 0.25 {
            return CountStep::Rollover(range - before + after);
        }
    }
    CountStep::Reset
}

impl Bridge {
    /// A bridge with nothing published yet.
    pub fn new(mapping: Mapping, service: Id, counters: BridgeCounters) -> Self {
        Self {
            errors: ErrorLimiter::new(mapping.error_window_ms, counters.clone()),
            mapping,
            service,
            counters,
            targets: HashMap::new(),
            overrides: HashMap::new(),
            states: HashMap::new(),
            contexts: HashMap::new(),
            counts: HashMap::new(),
            tag_prefix: tag_prefix(),
            buf: Vec::with_capacity(512),
        }
    }

    /// The validated configuration.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Takes a `_wo/_active` document of `location` (JSON work order, or `null`/empty to clear).
    ///
    /// A payload that is not a work order document leaves the location's context as it was and is
    /// returned as an error for the caller to report on `_errors`.
    pub fn set_active_order(
        &mut self,
        location: Location,
        payload: &[u8],
    ) -> Result<(), uns_model::payload::PayloadError> {
        match context::from_active_order(payload)? {
            Some(context) => {
                self.contexts.insert(location, context);
            }
            None => {
                self.contexts.remove(&location);
            }
        }
        Ok(())
    }

    /// Learns a `_count` document published before (retained, from an earlier run), so the total
    /// carries on from it. Call before the first Sparkplug message. A document from before the reset
    /// fields has `total` = the machine's raw value.
    pub fn learn_count(&mut self, location: Location, doc: &CountDoc) {
        self.counts.insert(
            (location, doc.kind),
            CountTotal {
                total: doc.total.qty,
                raw: Some(doc.raw.unwrap_or(doc.total.qty)),
                resets: doc.resets,
                rollovers: doc.rollovers,
                last_reset_ms: doc.last_reset_ms,
            },
        );
    }

    /// Maps the events of one host call. `input` is the message that caused them (topic and payload),
    /// quoted in `_errors` reports; `now_ms` is the wall clock.
    pub fn apply(
        &mut self,
        events: Vec<HostEvent>,
        input: Option<(&str, &[u8])>,
        now_ms: u64,
    ) -> Vec<Publication> {
        let mut out = Vec::with_capacity(events.len());
        let mut touched_states: Vec<Location> = Vec::new();
        let mut born = false;
        // By reference: a HostEvent is large, and moving each out of the vector costs a copy per metric.
        for (event_idx, event) in events.iter().enumerate() {
            match event {
                HostEvent::Online { node, device } => {
                    born = true;
                    let birth = &events[event_idx + 1..];
                    self.birth(node, device.as_ref(), birth, input, now_ms, &mut out);
                }
                HostEvent::Metric(update) => {
                    self.metric(update, &mut out, &mut touched_states);
                }
                HostEvent::Stale {
                    node,
                    device,
                    timestamp,
                } => self.stale(node.clone(), device.clone(), *timestamp, &mut out),
                HostEvent::Rebirth { message, .. } => {
                    self.counters.rebirths.inc();
                    out.push(Publication::Sparkplug(message.clone()));
                }
                HostEvent::Publish(message) => out.push(Publication::Sparkplug(message.clone())),
                HostEvent::Rejected(rejected) => {
                    out.push(self.error(rejected, input, now_ms));
                }
            }
        }
        for location in touched_states {
            self.flush_state(location, now_ms, &mut out);
        }
        if born {
            let n_tracked: usize = self.targets.values().map(HashMap::len).sum();
            self.counters
                .tracked_metrics
                .set(i64::try_from(n_tracked).unwrap_or(i64::MAX));
        }
        if out
            .iter()
            .any(|publication| matches!(publication, Publication::Error { .. }))
        {
            out = out
                .into_iter()
                .filter_map(|publication| self.errors.admit(publication, now_ms))
                .collect();
        }
        out
    }

    /// When [`Bridge::flush_errors`] must be called next (ms since the epoch, wall clock), if an
    /// `_errors` window holds reports back.
    pub fn next_errors_deadline_ms(&self) -> Option<u64> {
        self.errors.next_deadline_ms()
    }

    /// The summary reports of the `_errors` windows that ended by `now_ms` (`u64::MAX`: of all of
    /// them, e.g. at shutdown). See [`crate::errors`].
    pub fn flush_errors(&mut self, now_ms: u64) -> Vec<Publication> {
        self.errors.flush(now_ms)
    }

    /// A birth of `node` (device `None`) or of a device, whose metrics are the `Metric` events at the
    /// start of `following`: the scope's targets are replaced by the birth's (a rebirth never adds
    /// to what the last one left), tag paths are made distinct ([`crate::paths`]) and every
    /// collision is reported on `_errors`.
    fn birth(
        &mut self,
        node: &NodeId,
        device: Option<&Arc<str>>,
        following: &[HostEvent],
        input: Option<(&str, &[u8])>,
        now_ms: u64,
        out: &mut Vec<Publication>,
    ) {
        let names: Vec<Arc<str>> = following
            .iter()
            .map_while(|event| match event {
                HostEvent::Metric(update)
                    if update.from_birth
                        && update.node == *node
                        && update.device.as_ref() == device =>
                {
                    Some(&update.name)
                }
                _ => None,
            })
            .filter(|name| !self.mapping.skips(name))
            .cloned()
            .collect();
        let (overrides, collisions) = paths::assign(&names);
        let key = (node.clone(), device.cloned());
        let previous = self.overrides.remove(&key).unwrap_or_default();
        if let Some(targets) = self.targets.get_mut(&key) {
            let born: HashSet<&str> = names.iter().map(|name| &**name).collect();
            // A target whose path changed is resolved again on its first value.
            targets.retain(|name, _| {
                born.contains(&**name) && overrides.get(name) == previous.get(name)
            });
            targets.shrink_to_fit();
        }
        if !overrides.is_empty() {
            self.overrides.insert(key, overrides);
        }
        if collisions.is_empty() {
            return;
        }
        let location =
            self.mapping
                .location(&node.group, &node.edge, device.map(|device| &**device));
        let (topic, payload) = input.unwrap_or_default();
        for collision in collisions {
            out.push(self.report(
                &location,
                "tag_collision",
                Some(topic.to_owned()).filter(|topic| !topic.is_empty()),
                collision.reason(),
                payload,
                now_ms,
            ));
        }
    }

    /// The target of `update`, resolved and cached on first sight.
    fn target<'a>(
        targets: &'a mut HashMap<ScopeKey, HashMap<Arc<str>, Target>>,
        overrides: &HashMap<ScopeKey, HashMap<Arc<str>, TagPath>>,
        mapping: &Mapping,
        update: &MetricUpdate,
    ) -> &'a mut Target {
        let key = (update.node.clone(), update.device.clone());
        let tags = targets.entry(key).or_default();
        if !tags.contains_key(&*update.name) {
            let path = overrides
                .get(&(update.node.clone(), update.device.clone()))
                .and_then(|paths| paths.get(&*update.name))
                .cloned();
            tags.insert(update.name.clone(), Self::resolve(mapping, update, path));
        }
        // Inserted just above when it was missing.
        tags.get_mut(&*update.name)
            .unwrap_or_else(|| unreachable!())
    }

    /// What `update`'s metric becomes. `path` is its tag path when a collision moved it off the
    /// plain one; such a metric takes a role (state, count) only by its exact name.
    fn resolve(mapping: &Mapping, update: &MetricUpdate, path: Option<TagPath>) -> Target {
        let location = mapping.location(
            &update.node.group,
            &update.node.edge,
            update.device.as_deref(),
        );
        let name: &str = &update.name;
        let moved = path.is_some();
        let matches =
            |configured: &str| configured == name || (!moved && slug(configured) == slug(name));
        let role = if matches(&mapping.state_metric) {
            Role::State
        } else if mapping.state_name_metric.as_deref().is_some_and(matches) {
            Role::StateName
        } else if mapping.mode_metric.as_deref().is_some_and(matches) {
            Role::Mode
        } else if let Some((_, kind)) = mapping.counts.iter().find(|(metric, _)| matches(metric)) {
            Role::Count(*kind)
        } else {
            Role::Plain
        };
        let tag = (!mapping.skips(name)).then(|| {
            Arc::new(UnsTopic::located(
                location.clone(),
                Class::Tag(path.unwrap_or_else(|| tag_path(name))),
            ))
        });
        let src = SparkplugSource {
            group: update.node.group.to_string(),
            edge: update.node.edge.to_string(),
            device: update.device.as_deref().map(str::to_owned),
            metric: update.name.to_string(),
        };
        let mut src_suffix = b",\"src\":".to_vec();
        // A struct of strings serializes infallibly.
        let _ = serde_json::to_writer(&mut src_suffix, &src);
        src_suffix.push(b'}');
        Target {
            location,
            tag,
            role,
            src_suffix: src_suffix.into_boxed_slice(),
            unit: None,
            published: None,
            history: None,
            current_ms: None,
            history_ms: None,
        }
    }

    fn metric(
        &mut self,
        update: &MetricUpdate,
        out: &mut Vec<Publication>,
        touched: &mut Vec<Location>,
    ) {
        let target = Self::target(&mut self.targets, &self.overrides, &self.mapping, update);
        let timestamp_ms = i64::try_from(update.timestamp).unwrap_or(i64::MAX);
        let json = update
            .value
            .as_ref()
            .map_or(serde_json::Value::Null, |value| match value.to_json() {
                object @ serde_json::Value::Object(_) => {
                    serde_json::Value::String(object.to_string())
                }
                other => other,
            });
        // Flagged historical, or older than the current value: never published as the current value.
        let historical = update.is_historical
            || target
                .current_ms
                .is_some_and(|current_ms| timestamp_ms < current_ms);
        if let Some(topic) = &target.tag {
            if historical
                && target
                    .history_ms
                    .is_some_and(|history_ms| timestamp_ms <= history_ms)
            {
                // A duplicate (sent again) or out of order: history stays in timestamp order.
                self.counters.history_dropped.inc();
                return;
            }
            let unit: &[u8] = match &update.unit {
                None => &[],
                Some(unit) => {
                    if target.unit.as_ref().is_none_or(|(seen, _)| seen != unit) {
                        let fragment = Uom::new(unit)
                            .ok()
                            .map(|uom| {
                                let mut fragment = b",\"unit\":".to_vec();
                                let _ = serde_json::to_writer(&mut fragment, &uom);
                                fragment
                            })
                            .unwrap_or_default();
                        target.unit = Some((unit.clone(), fragment.into_boxed_slice()));
                    }
                    target.unit.as_ref().map_or(&[], |(_, fragment)| fragment)
                }
            };
            let context = context_of(&self.contexts, &target.location);
            let quality = write_tag(
                &mut self.buf,
                &self.tag_prefix,
                &json,
                timestamp_ms,
                quality(update.quality),
                unit,
                context,
                historical,
                &target.src_suffix,
            );
            let payload = Bytes::copy_from_slice(&self.buf);
            if historical {
                self.counters.historical.inc();
                let history = target
                    .history
                    .get_or_insert_with(|| {
                        let path = match topic.class() {
                            Some(Class::Tag(path)) => path.clone(),
                            _ => tag_path(&update.name),
                        };
                        Arc::new(UnsTopic::located(
                            target.location.clone(),
                            Class::TagHistory(path),
                        ))
                    })
                    .clone();
                target.history_ms = Some(timestamp_ms);
                out.push(Publication::Historical {
                    topic: history,
                    payload,
                });
                return;
            }
            target.current_ms = Some(timestamp_ms);
            self.counters.tags.inc();
            out.push(Publication::Uns {
                topic: topic.clone(),
                payload: payload.clone(),
            });
            target.published = Some(PublishedTag {
                topic: topic.clone(),
                payload,
                quality,
            });
        } else if historical {
            return;
        }
        let role = target.role;
        if role == Role::Plain {
            return;
        }
        let location = target.location.clone();
        let text = || match &json {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        match role {
            Role::Plain => {}
            Role::State => {
                let state = self.states.entry(location.clone()).or_default();
                if json.is_null() {
                    return;
                }
                state.pending = Some((text(), timestamp_ms));
                if !touched.contains(&location) {
                    touched.push(location);
                }
            }
            Role::StateName => {
                let state = self.states.entry(location).or_default();
                state.name = (!json.is_null()).then(text);
            }
            Role::Mode => {
                let state = self.states.entry(location).or_default();
                state.mode = mode_of(&text());
            }
            Role::Count(kind) => {
                let width = counter_width(update.datatype);
                let Some(raw) = update.value.as_ref().and_then(|v| raw_count(v, width)) else {
                    return;
                };
                self.count(location, kind, raw, width, timestamp_ms, out);
            }
        }
    }

    /// A new raw value of a machine counter: the UNS total moves by the step (a reset adds the new
    /// raw value on top and publishes a reset event), then `_count/{kind}` is published.
    fn count(
        &mut self,
        location: Location,
        kind: CountKind,
        raw: f64,
        width: Option<u32>,
        timestamp_ms: i64,
        out: &mut Vec<Publication>,
    ) {
        let counter = self
            .counts
            .entry((location.clone(), kind))
            .or_insert(CountTotal {
                total: 0.0,
                raw: None,
                resets: 0,
                rollovers: 0,
                last_reset_ms: None,
            });
        let mut reset_from = None;
        match counter.raw {
            // First sight, nothing learned: the machine's count so far is the total.
            None => counter.total = raw,
            Some(before) => match count_step(before, raw, width) {
                CountStep::Up(delta) => counter.total += delta,
                CountStep::Rollover(delta) => {
                    counter.total += delta;
                    counter.rollovers += 1;
                }
                CountStep::Reset => {
                    counter.total += raw;
                    counter.resets += 1;
                    counter.last_reset_ms = Some(timestamp_ms);
                    reset_from = Some(before);
                }
            },
        }
        counter.raw = Some(raw);
        let total = Quantity::new(counter.total, Uom::EA);
        let count = CountDoc {
            schema: SchemaTag::default(),
            kind,
            total,
            timestamp_ms,
            raw: Some(raw),
            resets: counter.resets,
            rollovers: counter.rollovers,
            last_reset_ms: counter.last_reset_ms,
        };
        out.push(Publication::Uns {
            topic: Arc::new(UnsTopic::located(location.clone(), Class::Count(kind))),
            payload: to_bytes(&count),
        });
        if let Some(raw_before) = reset_from {
            let wo_id = context_of(&self.contexts, &location).and_then(|c| c.wo_id.clone());
            let event = CountEvent {
                schema: SchemaTag::default(),
                header: EventHeader::new(
                    uuid::Uuid::now_v7(),
                    timestamp(timestamp_ms),
                    timestamp(chrono::Utc::now().timestamp_millis()),
                ),
                wo_id,
                change: CountChange::Reset {
                    kind,
                    raw_before,
                    raw_after: raw,
                    total,
                },
            };
            out.push(Publication::Uns {
                topic: Arc::new(UnsTopic::located(location, Class::CountEvents)),
                payload: to_bytes(&event),
            });
        }
    }

    /// Publishes `_state` (and `_state/events`) when the batch changed the state of `location`.
    fn flush_state(&mut self, location: Location, now_ms: u64, out: &mut Vec<Publication>) {
        let Some(state) = self.states.get_mut(&location) else {
            return;
        };
        let Some((code, since_ms)) = state.pending.take() else {
            return;
        };
        let category = self.mapping.state_category(&code);
        let snapshot = StateSnapshot {
            mode: state.mode.unwrap_or(Mode::Production),
            state: MachineState {
                category,
                code: Some(code),
                name: state.name.clone(),
                reason: None,
            },
        };
        self.transition(location, snapshot, since_ms, now_ms, out);
    }

    fn transition(
        &mut self,
        location: Location,
        snapshot: StateSnapshot,
        since_ms: i64,
        now_ms: u64,
        out: &mut Vec<Publication>,
    ) {
        let state = self.states.entry(location.clone()).or_default();
        if state
            .current
            .as_ref()
            .is_some_and(|(current, _)| *current == snapshot)
        {
            return;
        }
        let since = timestamp(since_ms);
        let doc = StateDoc {
            schema: SchemaTag::default(),
            mode: snapshot.mode,
            state: snapshot.state.clone(),
            since,
        };
        out.push(Publication::Uns {
            topic: Arc::new(UnsTopic::located(location.clone(), Class::State)),
            payload: to_bytes(&doc),
        });
        if let Some((from, from_since)) = state.current.take() {
            let event = StateEvent {
                schema: SchemaTag::default(),
                header: EventHeader::new(
                    uuid::Uuid::now_v7(),
                    since,
                    timestamp(i64::try_from(now_ms).unwrap_or(i64::MAX)),
                ),
                from,
                to: snapshot.clone(),
                duration_ms: u64::try_from(since_ms.saturating_sub(from_since)).unwrap_or(0),
            };
            out.push(Publication::Uns {
                topic: Arc::new(UnsTopic::located(location, Class::StateEvents)),
                payload: to_bytes(&event),
            });
        }
        self.counters.states.inc();
        state.current = Some((snapshot, since_ms));
    }

    fn stale(
        &mut self,
        node: NodeId,
        device: Option<Arc<str>>,
        timestamp: u64,
        out: &mut Vec<Publication>,
    ) {
        let key = (node, device);
        if let Some(tags) = self.targets.get_mut(&key) {
            let mut names: Vec<&Arc<str>> = tags
                .iter()
                .filter(|(_, target)| target.published.is_some())
                .map(|(name, _)| name)
                .collect();
            names.sort();
            let names: Vec<Arc<str>> = names.into_iter().cloned().collect();
            for name in names {
                if let Some(tag) = tags
                    .get_mut(&name)
                    .and_then(|target| target.published.as_mut())
                {
                    // Only the quality changes: splice `"stale"` into the document as published.
                    let stale = json_string(quality_name(Quality::Stale));
                    let old = &tag.payload;
                    let mut payload = Vec::with_capacity(old.len() + stale.len());
                    payload.extend_from_slice(&old[..tag.quality.start]);
                    payload.extend_from_slice(&stale);
                    payload.extend_from_slice(&old[tag.quality.end..]);
                    tag.quality = tag.quality.start..tag.quality.start + stale.len();
                    tag.payload = Bytes::from(payload);
                    self.counters.stale.inc();
                    out.push(Publication::Uns {
                        topic: tag.topic.clone(),
                        payload: tag.payload.clone(),
                    });
                }
            }
        }
        let location = self
            .mapping
            .location(&key.0.group, &key.0.edge, key.1.as_deref());
        let current = self
            .states
            .get(&location)
            .and_then(|state| state.current.as_ref())
            .map(|(snapshot, _)| snapshot.mode);
        if let Some(mode) = current {
            let snapshot = StateSnapshot {
                mode,
                state: MachineState {
                    category: StateCategory::Unknown,
                    code: None,
                    name: Some("offline".to_owned()),
                    reason: Some("Sparkplug death certificate".to_owned()),
                },
            };
            let since_ms = i64::try_from(timestamp).unwrap_or(i64::MAX);
            self.transition(location, snapshot, since_ms, timestamp, out);
        }
    }

    fn error(&self, rejected: &Rejected, input: Option<(&str, &[u8])>, now_ms: u64) -> Publication {
        let location = match rejected.topic.parse::<SparkplugTopic>() {
            Ok(SparkplugTopic::Node { group, edge, .. }) => {
                self.mapping.location(&group, &edge, None)
            }
            Ok(SparkplugTopic::Device {
                group,
                edge,
                device,
                ..
            }) => self.mapping.location(&group, &edge, Some(&device)),
            _ => self.mapping.default_root.clone(),
        };
        let payload = input
            .filter(|(topic, _)| *topic == rejected.topic)
            .map(|(_, payload)| payload)
            .unwrap_or_default();
        self.report(
            &location,
            rejected.reason.kind(),
            Some(rejected.topic.clone()),
            rejected.reason.to_string(),
            payload,
            now_ms,
        )
    }

    /// An `_errors` report of `location`.
    fn report(
        &self,
        location: &Location,
        kind: &'static str,
        topic: Option<String>,
        reason: String,
        payload: &[u8],
        now_ms: u64,
    ) -> Publication {
        Publication::Error {
            topic: Arc::new(UnsTopic::located(location.clone(), Class::Errors)),
            kind,
            report: Box::new(ErrorReport {
                schema: SchemaTag::default(),
                service: self.service.clone(),
                topic,
                reason,
                payload_excerpt: Some(excerpt(payload)),
                payload_sha256: None,
                occurred_at: timestamp(i64::try_from(now_ms).unwrap_or(i64::MAX)),
            }),
        }
    }
}

/// The context of `location`: its own `_wo/_active`, else the nearest ancestor's.
fn context_of<'a>(
    contexts: &'a HashMap<Location, TagContext>,
    location: &Location,
) -> Option<&'a TagContext> {
    if contexts.is_empty() {
        return None;
    }
    if let Some(context) = contexts.get(location) {
        return Some(context);
    }
    location
        .ancestors()
        .find_map(|ancestor| contexts.get(&ancestor))
}

/// `{"schema":"uns/tag/v1","value":`: what every `TagValue` document starts with.
fn tag_prefix() -> Box<[u8]> {
    let mut prefix = b"{\"schema\":".to_vec();
    // A string serializes infallibly.
    let _ = serde_json::to_writer(&mut prefix, &SchemaTag::<TagValue>::default());
    prefix.extend_from_slice(b",\"value\":");
    prefix.into_boxed_slice()
}

/// The serde name of `quality`, as `TagValue` serializes it.
fn quality_name(quality: Quality) -> &'static str {
    match quality {
        Quality::Good => "good",
        Quality::Bad => "bad",
        Quality::Uncertain => "uncertain",
        Quality::Stale => "stale",
    }
}

fn json_string(text: &str) -> Vec<u8> {
    // A string serializes infallibly.
    serde_json::to_vec(text).unwrap_or_default()
}

/// Writes into `buf` exactly what `serde_json::to_vec(&TagValue { .. })` gives (same field order, same
/// omissions), from the parts cached per metric: `prefix` (see [`tag_prefix`]), `unit` (`,"unit":…`
/// or empty) and `src_suffix` (`,"src":{…}}`). Returns where the quality string lies in `buf`.
#[allow(clippy::too_many_arguments)]
fn write_tag(
    buf: &mut Vec<u8>,
    prefix: &[u8],
    value: &serde_json::Value,
    timestamp_ms: i64,
    quality: Quality,
    unit: &[u8],
    context: Option<&TagContext>,
    historical: bool,
    src_suffix: &[u8],
) -> std::ops::Range<usize> {
    use std::io::Write as _;
    buf.clear();
    buf.extend_from_slice(prefix);
    // Writing a JSON value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, value);
    let _ = write!(buf, ",\"timestamp_ms\":{timestamp_ms},\"quality\":");
    let start = buf.len();
    buf.push(b'"');
    buf.extend_from_slice(quality_name(quality).as_bytes());
    buf.push(b'"');
    let quality_at = start..buf.len();
    buf.extend_from_slice(unit);
    if let Some(context) = context {
        buf.extend_from_slice(b",\"context\":");
        let _ = serde_json::to_writer(&mut *buf, context);
    }
    if historical {
        buf.extend_from_slice(b",\"historical\":true");
    }
    buf.extend_from_slice(src_suffix);
    quality_at
}

/// At most this many parts in a tag path: a metric name of many `/` levels must not give a topic
/// beyond the broker's level limit (64 by default), which would make the broker close the bridge's
/// connection at every publish of it.
pub const MAX_TAG_PARTS: usize = 16;

/// At most this many bytes in a tag path (before the part that crosses it), so that location,
/// path and `/_history` stay within the broker's topic length limit (1024 bytes by default).
pub const MAX_TAG_PATH_BYTES: usize = 512;

/// `Process/Temp 1` → `process/temp-1`: each `/` part slugged, empty parts dropped. Beyond
/// [`MAX_TAG_PARTS`] parts or [`MAX_TAG_PATH_BYTES`] bytes, the rest of the name is folded into one
/// last part (its slug: `-` for `/`, cut at 64 characters with a hash of the rest).
pub fn tag_path(metric: &str) -> TagPath {
    let raw: Vec<&str> = metric
        .split('/')
        .filter(|part| !part.trim().is_empty())
        .collect();
    let mut parts: Vec<Id> = Vec::with_capacity(raw.len().min(MAX_TAG_PARTS));
    let mut n_bytes = 0;
    for (part_idx, part) in raw.iter().enumerate() {
        let id = slug(part);
        let last_allowed = parts.len() + 1 == MAX_TAG_PARTS;
        let too_long = n_bytes + id.as_str().len() + 1 > MAX_TAG_PATH_BYTES;
        if (last_allowed || too_long) && part_idx + 1 < raw.len() {
            parts.push(slug(&raw[part_idx..].join("/")));
            break;
        }
        n_bytes += id.as_str().len() + 1;
        parts.push(id);
    }
    // An empty or all-slash name still needs a path: the slug of the whole name.
    TagPath::new(parts)
        .unwrap_or_else(|| TagPath::new(vec![slug(metric)]).unwrap_or_else(|| unreachable!()))
}

/// Sparkplug's `Quality` codes: 192 good, 0 bad, 500 stale, anything else uncertain; none means good.
fn quality(code: Option<i64>) -> Quality {
    match code {
        None | Some(192) => Quality::Good,
        Some(0) => Quality::Bad,
        Some(500) => Quality::Stale,
        Some(_) => Quality::Uncertain,
    }
}

fn timestamp(unix_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(unix_ms)
        .or_else(|| Timestamp::from_unix_ms(0))
        .unwrap_or_else(|| Timestamp::from(chrono::Utc::now()))
}

/// The payload as text when it is UTF-8, else `hex:` and its first 64 bytes; at most 256 characters.
pub(crate) fn excerpt(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => text.chars().take(256).collect(),
        Err(_) => {
            let head = &payload[..payload.len().min(64)];
            let hex: String = head.iter().map(|byte| format!("{byte:02x}")).collect();
            format!("hex:{hex}")
        }
    }
}

fn to_bytes<T: serde::Serialize>(document: &T) -> Bytes {
    // Our documents serialize infallibly (string keys only, no fallible Serialize impls).
    Bytes::from(serde_json::to_vec(document).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::normalize;

    #[test]
    fn tag_paths_are_slugged_per_part() {
        fn check(metric: &str, expected: &str) {
            assert_eq!(tag_path(metric).to_string(), expected, "{metric}");
        }
        check("Process/Temperature", "process/temperature");
        check("Inputs/Temp 1", "inputs/temp-1");
        check("a//b/", "a/b");
        check("/", slug("/").as_str());
        check("Count/Good", "count/good");
        check("State", "state");
        // Many levels: folded into the 16th part.
        let deep = vec!["a"; 100].join("/");
        let path = tag_path(&deep);
        assert_eq!(path.parts().len(), MAX_TAG_PARTS);
        assert!(
            path.parts()[MAX_TAG_PARTS - 1]
                .as_str()
                .starts_with("a-a-a")
        );
        // Long parts: the path stays within its byte budget plus one folded part.
        let long = vec!["b".repeat(60); 40].join("/");
        let path = tag_path(&long);
        assert!(path.to_string().len() <= MAX_TAG_PATH_BYTES + 64, "{path}");
        // A deep name that fits keeps its levels.
        assert_eq!(tag_path(&vec!["c"; 16].join("/")).parts().len(), 16);
    }

    /// The hand-written `TagValue` JSON (and its stale splice) is byte for byte what serde gives.
    #[test]
    fn tag_json_is_byte_identical_to_serde() {
        fn check(value: serde_json::Value, unit: Option<&str>, context: Option<TagContext>) {
            for (device, historical) in [(None, false), (Some("press \"7\""), true)] {
                for quality in [
                    Quality::Good,
                    Quality::Bad,
                    Quality::Uncertain,
                    Quality::Stale,
                ] {
                    let src = SparkplugSource {
                        group: "plant".to_owned(),
                        edge: "edge/1".to_owned(),
                        device: device.map(str::to_owned),
                        metric: "Process/Temp \u{e9}".to_owned(),
                    };
                    let uom = unit.and_then(|unit| Uom::new(unit).ok());
                    let mut expected = TagValue {
                        schema: SchemaTag::default(),
                        value: value.clone(),
                        timestamp_ms: -17,
                        quality,
                        unit: uom,
                        context: context.clone(),
                        historical,
                        src: Some(src.clone()),
                    };
                    let mut src_suffix = b",\"src\":".to_vec();
                    serde_json::to_writer(&mut src_suffix, &src).unwrap();
                    src_suffix.push(b'}');
                    let unit_fragment = uom.map_or_else(Vec::new, |uom| {
                        format!(",\"unit\":{}", serde_json::to_string(&uom).unwrap()).into_bytes()
                    });
                    let mut buf = b"left over".to_vec();
                    let at = write_tag(
                        &mut buf,
                        &tag_prefix(),
                        &value,
                        -17,
                        quality,
                        &unit_fragment,
                        context.as_ref(),
                        historical,
                        &src_suffix,
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&buf),
                        serde_json::to_string(&expected).unwrap()
                    );
                    assert_eq!(
                        &buf[at.clone()],
                        json_string(quality_name(quality)).as_slice()
                    );
                    let mut stale = buf[..at.start].to_vec();
                    stale.extend_from_slice(&json_string(quality_name(Quality::Stale)));
                    stale.extend_from_slice(&buf[at.end..]);
                    expected.quality = Quality::Stale;
                    assert_eq!(
                        String::from_utf8_lossy(&stale),
                        serde_json::to_string(&expected).unwrap()
                    );
                }
            }
        }
        let context = TagContext {
            wo_id: Id::new("wo-1").ok(),
            operation_id: Some("0010".to_owned()),
            lot: None,
            shift: Some("early".to_owned()),
        };
        check(serde_json::json!(71.4), Some("CEL"), None);
        check(serde_json::json!(1.0e-7), None, None);
        check(
            serde_json::json!(u64::MAX),
            Some("EA"),
            Some(context.clone()),
        );
        check(serde_json::json!(-5), Some("not a unit!"), None);
        check(serde_json::json!("Execute \"\n\u{1}"), None, Some(context));
        check(serde_json::json!(true), None, None);
        check(serde_json::json!(null), None, None);
        check(serde_json::json!([1, "a", null]), None, None);
    }

    #[test]
    fn counter_steps_tell_resets_from_rollovers_by_width() {
        assert_eq!(count_step(10.0, 15.0, None), CountStep::Up(5.0));
        assert_eq!(count_step(1_678.0, 0.0, None), CountStep::Reset);
        assert_eq!(
            count_step(65_530.0, 4.0, Some(16)),
            CountStep::Rollover(10.0)
        );
        // Down by half the range is no wrap: a reset.
        assert_eq!(count_step(40_000.0, 20_000.0, Some(16)), CountStep::Reset);
        assert_eq!(
            count_step(4_294_967_290.0, 3.0, Some(32)),
            CountStep::Rollover(9.0)
        );
        // A 64-bit counter never wraps in practice.
        assert_eq!(count_step(u64::MAX as f64, 3.0, None), CountStep::Reset);
        // A signed 16-bit counter past 32767 reads on as its bits say.
        assert_eq!(raw_count(&Value::Int16(-32_768), Some(16)), Some(32_768.0));
        assert_eq!(raw_count(&Value::Int16(-1), Some(16)), Some(65_535.0));
    }

    #[test]
    fn quality_codes() {
        for (code, expected) in [
            (None, Quality::Good),
            (Some(192), Quality::Good),
            (Some(0), Quality::Bad),
            (Some(500), Quality::Stale),
            (Some(64), Quality::Uncertain),
        ] {
            assert_eq!(quality(code), expected, "{code:?}");
        }
    }

    #[test]
    fn excerpts_quote_text_and_hex_binary() {
        assert_eq!(excerpt(b"{\"a\":1}"), "{\"a\":1}");
        assert_eq!(excerpt(&[0xff, 0x00]), "hex:ff00");
    }

    #[test]
    fn normalize_codes() {
        assert_eq!(normalize(" Minor-Stop "), "minor_stop");
    }
}
