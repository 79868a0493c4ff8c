//! The event-time model: what arrived, per asset, and the periods computed from it.
//!
//! [`Engine::apply`] takes one decoded input and returns the closed periods it made due (first versions and
//! corrections). Everything depends only on the sequence of inputs and the timestamps they carry, never on
//! when they arrive, so replaying recorded messages gives the same results at any speed.
//!
//! - The *watermark* is the newest event time seen. A period closes once the watermark passes its end plus
//!   the grace; the open period's `current` figures run up to the watermark (or a later clock the caller
//!   passes to [`Engine::current`]).
//! - An input older than the watermark lands where its timestamp says. If that is inside a closed period,
//!   the period is recomputed and, when the result changed, published again with `version` + 1, `corrects`
//!   and the reason.
//! - Duplicates apply once: a state is keyed by its `since`, a counter sample by its timestamp and total, a
//!   reclassification by its `event_id`, a work-order change by its `updated_at`.
//! - Time before the first state of the asset whose time counts is not monitored: a window is cut to start
//!   there (times and counts), and the result's `start` says so (docs/OEE.md, "Time model").
//! - Counter totals are monotonic; a smaller total is a reset and counts from zero. The first sample of a
//!   counter is its baseline. `_count/events` deltas are not applied (the totals already carry them); only
//!   reclassifications are.
//! - Count samples of closed hours are merged where no result can tell (`Engine::compact`), so memory
//!   per asset is bounded by `retain_h` of states; [`Engine::snapshot`] / [`Engine::restore`] carry the
//!   whole state across a restart (module `snapshot`).

use std::collections::{BTreeMap, BTreeSet};

use uns_model::payload::{
    CountChange, CountDoc, CountEvent, Loss, MinorStopPolicy, NodeMeta, OeeCounts, OeePeriod,
    OeeResult, Quantity, SchemaTag, StateCategory, StateDoc, Timestamp, Uom, WorkOrder,
};
use uns_model::topic::{Class, CountKind, Id, Location, OeePeriodKind, Segment};
use uuid::Uuid;

mod snapshot;
pub use snapshot::SnapshotError;

use crate::calendar::{Calendar, Window};
use crate::config::Settings;
use crate::iso22400::{
    self, CategoryKey, CountDelta, Qty, Raw, Rules, StateMap, StateSpan, effective_category,
};

/// One decoded message the engine consumes.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `_state`.
    State {
        /// Where.
        location: Location,
        /// The document.
        doc: StateDoc,
    },
    /// `_count/{good,scrap,rework}` (`produced` is ignored: PQ = good + scrap + rework).
    Count {
        /// Where.
        location: Location,
        /// The document.
        doc: CountDoc,
    },
    /// `_count/events`.
    CountEvent {
        /// Where.
        location: Location,
        /// The event.
        event: CountEvent,
    },
    /// `_wo/_active`: the order now running here, or `None`.
    ActiveOrder {
        /// Where.
        location: Location,
        /// The order (its `updated_at` is the event time); `None` ends the running one at the watermark.
        order: Option<WorkOrder>,
    },
    /// `_meta`: ideal rates and the state map id; applies from the watermark on.
    Meta {
        /// Where.
        location: Location,
        /// The document.
        meta: NodeMeta,
    },
    /// `_cmd/oee/close`: close, without waiting for the grace, the periods of every scope at or below
    /// `location` that ended by `at` (all kinds, or only `kind`). Does not move the watermark.
    Close {
        /// The scope asked for (a cell, a line or a site); scopes below it are closed too.
        location: Location,
        /// Only this kind of period, or every kind.
        kind: Option<OeePeriodKind>,
        /// The time the periods must have ended by (resolved by the caller, so a replay closes the
        /// same periods).
        at: i64,
    },
}

impl Input {
    /// Where it happened.
    pub fn location(&self) -> &Location {
        match self {
            Self::State { location, .. }
            | Self::Count { location, .. }
            | Self::CountEvent { location, .. }
            | Self::ActiveOrder { location, .. }
            | Self::Meta { location, .. }
            | Self::Close { location, .. } => location,
        }
    }
}

/// A period that a close request found still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPeriod {
    /// Where its results are published.
    pub location: Location,
    /// Its kind.
    pub kind: OeePeriodKind,
    /// Its id.
    pub id: String,
    /// When it ends (for a work order still running: the time asked for).
    pub end: i64,
}

/// What [`Engine::apply`] did with an input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    /// Whether the input was already known (nothing changed).
    pub duplicate: bool,
    /// Closed periods to publish: new finals and corrections.
    pub publications: Vec<Publication>,
}

/// An input the engine will not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Older than the retention: the periods it belongs to are gone.
    #[error(
        "event time {at} is older than the retention ({retain_h} h before the newest event {watermark})"
    )]
    TooLate {
        /// The event time.
        at: Timestamp,
        /// The newest event time.
        watermark: Timestamp,
        /// The retention in hours.
        retain_h: i64,
    },
    /// A timestamp outside the representable range.
    #[error("the event time is out of range")]
    BadTime,
}

/// A result to publish retained at `location` under `class` (`_oee/current/{kind}` or `_oee/{kind}/{id}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// Where.
    pub location: Location,
    /// `Class::OeeCurrent` or `Class::Oee`.
    pub class: Class,
    /// The document.
    pub result: OeeResult,
}

/// What a result is computed for.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Scope {
    /// One asset from its own state and counts.
    Cell(Location),
    /// A configured line: counts of its counting cell, time of its bottleneck cell.
    Line(Location),
    /// A site: the sum of its lines and of its cells outside any line (time-weighted).
    Site(Location),
}

impl Scope {
    /// Where its results are published.
    pub fn location(&self) -> &Location {
        match self {
            Self::Cell(location) | Self::Line(location) | Self::Site(location) => location,
        }
    }
}

/// Sortable period kind for map keys.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
enum Kind {
    Hour,
    Shift,
    Day,
    Wo,
}

impl Kind {
    fn model(self) -> OeePeriodKind {
        match self {
            Self::Hour => OeePeriodKind::Hour,
            Self::Shift => OeePeriodKind::Shift,
            Self::Day => OeePeriodKind::Day,
            Self::Wo => OeePeriodKind::Wo,
        }
    }

    fn of(kind: OeePeriodKind) -> Self {
        match kind {
            OeePeriodKind::Hour => Self::Hour,
            OeePeriodKind::Shift => Self::Shift,
            OeePeriodKind::Day => Self::Day,
            OeePeriodKind::Wo => Self::Wo,
        }
    }
}

type FinalKey = (Scope, Kind, String);

/// A closed period: its windows and the last published version.
#[derive(Debug, Clone, PartialEq)]
struct Final {
    windows: Vec<(i64, i64)>,
    result: OeeResult,
}

/// A state as stored: the effective category and the loss reason.
#[derive(Debug, Clone, PartialEq)]
struct StateRec {
    category: uns_model::payload::StateCategory,
    reason: String,
}

/// Ideal cycle times from `_meta`, in ms per unit.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rates {
    default: Option<f64>,
    by_material: BTreeMap<String, f64>,
}

/// Everything known about one location.
#[derive(Debug, Clone, Default, PartialEq)]
struct AssetLog {
    /// `since` → state.
    states: BTreeMap<i64, StateRec>,
    /// Good, scrap, rework: (timestamp, total bits) → total.
    totals: [BTreeMap<(i64, u64), f64>; 3],
    /// (occurred_at, event_id) → (from, to, qty).
    reclass: BTreeMap<(i64, Uuid), (Qty, Qty, f64)>,
    /// `updated_at` → the order running from then (id, material), or none.
    orders: BTreeMap<i64, Option<(String, String)>>,
    /// Watermark at arrival → rates.
    rates: BTreeMap<i64, Rates>,
    /// The state map named in `_meta`.
    meta_state_map: Option<StateMap>,
    /// The unit of the counters.
    uom: Option<Uom>,
    /// The earliest event time of a state or count.
    first_at: Option<i64>,
    /// The earliest `since` of a state: the asset's time is monitored from then on (never pruned).
    first_state_at: Option<i64>,
    /// Count samples before this time have been compacted (see [`Engine::compact`]).
    compacted_until: i64,
}

fn qty_index(kind: Qty) -> usize {
    match kind {
        Qty::Good => 0,
        Qty::Scrap => 1,
        Qty::Rework => 2,
    }
}

fn qty_of(kind: CountKind) -> Option<Qty> {
    match kind {
        CountKind::Good => Some(Qty::Good),
        CountKind::Scrap => Some(Qty::Scrap),
        CountKind::Rework => Some(Qty::Rework),
        CountKind::Produced => None,
    }
}

const QTYS: [Qty; 3] = [Qty::Good, Qty::Scrap, Qty::Rework];

impl AssetLog {
    fn touch(&mut self, at: i64) {
        self.first_at = Some(self.first_at.map_or(at, |first| first.min(at)));
    }

    fn has_data(&self) -> bool {
        !self.states.is_empty() || self.totals.iter().any(|totals| !totals.is_empty())
    }

    /// The state spans covering `[from, to)`; the last state runs until `as_of`.
    fn spans(&self, from: i64, to: i64, as_of: i64) -> Vec<StateSpan> {
        let mut out = Vec::new();
        let start = self
            .states
            .range(..=from)
            .next_back()
            .map(|(since, _)| *since);
        let mut iter = match start {
            Some(since) => self.states.range(since..),
            None => self.states.range(from..),
        }
        .peekable();
        while let Some((&since, rec)) = iter.next() {
            if since >= to {
                break;
            }
            let next = iter.peek().map(|(next, _)| **next);
            let until = next.unwrap_or(as_of);
            let (a, b) = (since.max(from), until.min(to));
            if a < b {
                out.push(StateSpan {
                    start: a,
                    end: b,
                    category: rec.category,
                    reason: rec.reason.clone(),
                    full_duration_ms: until - since,
                    origin: since,
                });
            }
        }
        out
    }

    /// Ends of setups that end in `[from, to)`.
    fn setup_ends(&self, from: i64, to: i64) -> Vec<i64> {
        let mut ends = Vec::new();
        let mut prev_setup = false;
        for (&since, rec) in self.states.range(..to) {
            if prev_setup && since >= from {
                ends.push(since);
            }
            prev_setup = rec.category == uns_model::payload::StateCategory::Setup;
        }
        ends
    }

    /// Count changes in `[from, to)`.
    fn deltas(&self, from: i64, to: i64) -> Vec<CountDelta> {
        let mut out = Vec::new();
        for kind in QTYS {
            let totals = &self.totals[qty_index(kind)];
            let mut prev = totals
                .range(..(from, 0))
                .next_back()
                .map(|(_, total)| *total);
            for (&(at, _), &total) in totals.range((from, 0)..(to, 0)) {
                if let Some(prev) = prev {
                    let qty = if total >= prev { total - prev } else { total };
                    if qty != 0.0 {
                        out.push(CountDelta {
                            at,
                            kind,
                            qty,
                            produced: true,
                        });
                    }
                }
                prev = Some(total);
            }
        }
        for (&(at, _), &(from_kind, to_kind, qty)) in
            self.reclass.range((from, Uuid::nil())..(to, Uuid::nil()))
        {
            for (kind, qty) in [(from_kind, -qty), (to_kind, qty)] {
                out.push(CountDelta {
                    at,
                    kind,
                    qty,
                    produced: false,
                });
            }
        }
        out
    }

    /// The ideal cycle time at `at`, from the running order's material and the rates in force.
    fn ideal_ms(&self, at: i64, location: &Location) -> Result<f64, String> {
        let rates = self
            .rates
            .range(..=at)
            .next_back()
            .or_else(|| self.rates.iter().next())
            .map(|(_, rates)| rates);
        let material = self
            .orders
            .range(..=at)
            .next_back()
            .and_then(|(_, order)| order.as_ref().map(|(_, material)| material.as_str()));
        let found = rates.and_then(|rates| {
            material
                .and_then(|material| rates.by_material.get(material).copied())
                .or(rates.default)
        });
        found.ok_or_else(|| match material {
            Some(material) => {
                format!("no ideal rate for material `{material}` in the _meta of {location}")
            }
            None => format!("no ideal rate in the _meta of {location}"),
        })
    }

    /// The windows in which order `id` ran, and whether it still runs (its last window then ends at
    /// `i64::MAX`).
    fn order_windows(&self, id: &str) -> (Vec<(i64, i64)>, bool) {
        let mut windows = Vec::new();
        let mut open = false;
        let mut iter = self.orders.iter().peekable();
        while let Some((&at, order)) = iter.next() {
            if order.as_ref().is_some_and(|(order_id, _)| order_id == id) {
                match iter.peek() {
                    Some((next, _)) => windows.push((at, **next)),
                    None => {
                        // Still running: open-ended (computations clip it to their time).
                        windows.push((at, i64::MAX));
                        open = true;
                    }
                }
            }
        }
        (windows, open)
    }

    fn prune(&mut self, cutoff: i64) {
        fn keep_last_before<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, cutoff: K) {
            let last = map
                .range(..cutoff.clone())
                .next_back()
                .map(|(key, _)| key.clone());
            if let Some(last) = last {
                let rest = map.split_off(&last);
                *map = rest;
            }
        }
        keep_last_before(&mut self.states, cutoff);
        for totals in &mut self.totals {
            keep_last_before(totals, (cutoff, 0));
        }
        self.reclass = self.reclass.split_off(&(cutoff, Uuid::nil()));
        keep_last_before(&mut self.orders, cutoff);
        keep_last_before(&mut self.rates, cutoff);
    }
}

/// The next instant after `a` at which a count sample may belong to another period or rate: an hour,
/// day or shift boundary of the calendar, or one of `cuts`. The last answer is kept: for any `a` in
/// `[from, end)` it is `end` (no boundary lies in between).
struct Boundaries<'a> {
    calendar: &'a Calendar,
    cuts: &'a BTreeSet<i64>,
    from: i64,
    end: i64,
}

impl Boundaries<'_> {
    fn next_after(&mut self, a: i64) -> i64 {
        if a >= self.from && a < self.end {
            return self.end;
        }
        let mut end = self.calendar.hour(a).end.min(self.calendar.day(a).end);
        for shift in self.calendar.shifts_between(a, end) {
            for edge in [shift.start, shift.end] {
                if edge > a {
                    end = end.min(edge);
                }
            }
        }
        if let Some(&cut) = self.cuts.range(a.saturating_add(1)..).next() {
            end = end.min(cut);
        }
        self.from = a;
        self.end = end;
        end
    }
}

/// Drops the samples in `[from, horizon)` that [`Engine::compact`] may merge into the next one.
fn compact_samples(
    totals: &mut BTreeMap<(i64, u64), f64>,
    from: i64,
    horizon: i64,
    bounds: &mut Boundaries<'_>,
) {
    let mut prev = totals
        .range(..(from, 0))
        .next_back()
        .map(|(_, total)| *total);
    let samples: Vec<((i64, u64), f64)> = totals
        .range((from, 0)..(horizon, 0))
        .map(|(key, total)| (*key, *total))
        .collect();
    let mut drop = Vec::new();
    for pair in samples.windows(2) {
        let ((a_key, a), (b_key, b)) = (pair[0], pair[1]);
        let merge = prev.is_some_and(|p| p <= a) && a <= b && b_key.0 < bounds.next_after(a_key.0);
        if merge {
            drop.push(a_key);
        } else {
            prev = Some(a);
        }
    }
    for key in drop {
        totals.remove(&key);
    }
}

/// The OEE engine: all state of the service, I/O-free.
#[derive(Debug, Clone)]
pub struct Engine {
    settings: Settings,
    logs: BTreeMap<Location, AssetLog>,
    watermark: Option<i64>,
    closed_until: BTreeMap<(Scope, Kind), i64>,
    finals: BTreeMap<FinalKey, Final>,
    /// Closed periods a late input may have changed, with the reasons.
    dirty: BTreeMap<FinalKey, Vec<String>>,
    last_prune_hour: i64,
    /// The watermark at which the next period of the known scopes becomes due; before it `close_due`
    /// looks only at `new_scopes`.
    next_due: i64,
    /// Scopes that may have periods `next_due` does not cover yet: those of a location that just got its
    /// first state or count, or a work-order change. `close_due` looks at them (only them, so a plant of
    /// n assets coming up costs n, not n², scope passes) and folds their next due time into `next_due`.
    new_scopes: BTreeSet<Scope>,
    /// The latest time a `_cmd/oee/close` closed periods up to: an input older than it may change one.
    requested_until: i64,
}

fn to_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

fn ts(at: i64) -> Timestamp {
    // Every event time was checked to be representable on input; the epoch only stands in for the
    // saturated ends of open ranges.
    Timestamp::from_unix_ms(at)
        .unwrap_or_else(|| chrono::DateTime::<chrono::Utc>::UNIX_EPOCH.into())
}

fn period_id(text: &str) -> Id {
    Id::new(text).unwrap_or_else(|_| uns_model::topic::slug(text))
}

fn ea() -> Uom {
    Uom::EA
}

impl Engine {
    /// An empty engine.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            logs: BTreeMap::new(),
            watermark: None,
            closed_until: BTreeMap::new(),
            finals: BTreeMap::new(),
            dirty: BTreeMap::new(),
            last_prune_hour: i64::MIN,
            next_due: i64::MIN,
            new_scopes: BTreeSet::new(),
            requested_until: i64::MIN,
        }
    }

    /// The settings it runs on.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The newest event time seen, Unix ms.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// How many locations are tracked.
    pub fn n_assets(&self) -> usize {
        self.logs.len()
    }

    /// Applies one input and returns the closed periods that became due.
    pub fn apply(&mut self, input: Input) -> Result<Applied, Rejected> {
        let at = match &input {
            Input::State { doc, .. } => Some(doc.since.unix_ms()),
            Input::Count { doc, .. } => Some(doc.timestamp_ms),
            Input::CountEvent { event, .. } => Some(event.header.occurred_at.unix_ms()),
            Input::ActiveOrder { order, .. } => {
                order.as_ref().map(|order| order.updated_at.unix_ms())
            }
            Input::Meta { .. } => None,
            Input::Close { at, .. } => Some(*at),
        };
        if let Some(at) = at {
            Timestamp::from_unix_ms(at).ok_or(Rejected::BadTime)?;
            if let Some(watermark) = self.watermark
                && at < watermark - self.settings.retain_ms
            {
                return Err(Rejected::TooLate {
                    at: ts(at),
                    watermark: ts(watermark),
                    retain_h: self.settings.retain_ms / 3_600_000,
                });
            }
        }
        if let Input::Close { location, kind, at } = input {
            let publications = self.close_requested(&location, kind.map(Kind::of), at);
            return Ok(Applied {
                duplicate: publications.is_empty(),
                publications,
            });
        }
        let watermark = self.watermark;
        let now = at.or(watermark).unwrap_or(0);
        let order_change = matches!(input, Input::ActiveOrder { .. });
        let had_data = |engine: &Self, location: &Location| {
            engine.logs.get(location).is_some_and(AssetLog::has_data)
        };
        let input_location = input.location().clone();
        let had = had_data(self, &input_location);
        let (location, changed, what) = self.record(input, now);
        if order_change || (!had && had_data(self, &location)) {
            let affected = self.affected(&location);
            self.new_scopes.extend(affected);
        }
        if !changed {
            return Ok(Applied {
                duplicate: true,
                publications: Vec::new(),
            });
        }
        // Older than the watermark, or than a close request (which closes periods event time has not
        // passed yet): it may land in a closed period.
        if let Some(at) = at
            && (watermark.is_some_and(|watermark| at < watermark) || at < self.requested_until)
        {
            self.mark_dirty(&location, at, what);
        }
        if let Some(at) = at {
            self.watermark = Some(self.watermark.map_or(at, |w| w.max(at)));
        }
        let publications = self.close_due();
        self.maybe_prune();
        Ok(Applied {
            duplicate: false,
            publications,
        })
    }

    /// Stores an input; returns its location, whether anything changed, and a description for corrections.
    fn record(&mut self, input: Input, now: i64) -> (Location, bool, String) {
        match input {
            Input::State { location, doc } => {
                let map = self.state_map(&location);
                let log = self.logs.entry(location.clone()).or_default();
                let state = &doc.state;
                let category =
                    effective_category(map, doc.mode, state.category, state.name.as_deref());
                let reason = state
                    .reason
                    .clone()
                    .or_else(|| state.name.clone())
                    .unwrap_or_else(|| format!("{category:?}").to_lowercase());
                let since = doc.since.unix_ms();
                let rec = StateRec { category, reason };
                let what = format!("late state `{}` since {}", rec.reason, doc.since);
                log.touch(since);
                log.first_state_at =
                    Some(log.first_state_at.map_or(since, |first| first.min(since)));
                // An unplanned stop is a minor stop or a breakdown by its whole duration, which this
                // state ends (or, arriving late, ends sooner). A period closed while the stop was still
                // running took it up to the period's end; now that its length is known, that period
                // is looked at again (and corrected if the classification changed).
                let prev_stop = log
                    .states
                    .range(..since)
                    .next_back()
                    .filter(|(_, prev)| prev.category == StateCategory::UnplannedDown)
                    .map(|(at, prev)| (*at, prev.reason.clone()));
                let ended = prev_stop.as_ref().map(|(stop_at, stop_reason)| {
                    format!(
                        "state `{}` since {} ended the stop `{stop_reason}` of {}",
                        rec.reason,
                        doc.since,
                        ts(*stop_at)
                    )
                });
                let changed = log.states.insert(since, rec.clone()) != Some(rec);
                let threshold = self.settings.minor_stop_threshold_ms;
                let late = self.watermark.is_some_and(|watermark| since < watermark);
                if changed
                    && threshold > 0
                    && let (Some((stop_at, _)), Some(ended)) = (prev_stop, ended)
                    && (late || since - stop_at >= threshold)
                {
                    self.mark_dirty(&location, stop_at, ended);
                }
                (location, changed, what)
            }
            Input::Count { location, doc } => {
                let Some(kind) = qty_of(doc.kind) else {
                    self.logs.entry(location.clone()).or_default();
                    return (location, false, String::new());
                };
                let total = doc.total.qty.max(0.0);
                if self.merged_away(&location, kind, doc.timestamp_ms, total) {
                    return (location, false, String::new());
                }
                let log = self.logs.entry(location.clone()).or_default();
                log.uom.get_or_insert(doc.total.uom);
                log.touch(doc.timestamp_ms);
                let key = (doc.timestamp_ms, doc.total.qty.max(0.0).to_bits());
                let changed = log.totals[qty_index(kind)]
                    .insert(key, doc.total.qty.max(0.0))
                    .is_none();
                let what = format!(
                    "late {} total {} at {}",
                    doc.kind.as_str(),
                    doc.total.qty,
                    ts(doc.timestamp_ms)
                );
                (location, changed, what)
            }
            Input::CountEvent { location, event } => {
                let CountChange::Reclassify { from, to, quantity } = event.change else {
                    return (location, false, String::new());
                };
                let (Some(from_qty), Some(to_qty)) = (qty_of(from), qty_of(to)) else {
                    return (location, false, String::new());
                };
                let log = self.logs.entry(location.clone()).or_default();
                let at = event.header.occurred_at.unix_ms();
                let key = (at, event.header.event_id);
                let changed = log
                    .reclass
                    .insert(key, (from_qty, to_qty, quantity.qty))
                    .is_none();
                let what = format!(
                    "late reclassification {}: {} {} → {} at {}{}",
                    event.header.event_id,
                    quantity.qty,
                    from.as_str(),
                    to.as_str(),
                    event.header.occurred_at,
                    event
                        .header
                        .reason
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                );
                (location, changed, what)
            }
            Input::ActiveOrder { location, order } => {
                let log = self.logs.entry(location.clone()).or_default();
                let (at, value) = match order {
                    Some(order) => (
                        order.updated_at.unix_ms(),
                        Some((order.id.as_str().to_owned(), order.material)),
                    ),
                    None => (now, None),
                };
                // The same order re-published (e.g. quantities changed) does not start a new run, and
                // "none" before any order is nothing new.
                let current = log
                    .orders
                    .range(..=at)
                    .next_back()
                    .and_then(|(_, value)| value.clone());
                if current == value {
                    return (location, false, String::new());
                }
                let what = format!("late work-order change at {}", ts(at));
                let changed = log.orders.insert(at, value.clone()) != Some(value);
                (location, changed, what)
            }
            // Handled in `apply` before anything is recorded.
            Input::Close { location, .. } => (location, false, String::new()),
            Input::Meta { location, meta } => {
                let log = self.logs.entry(location.clone()).or_default();
                let mut rates = Rates::default();
                for rate in &meta.ideal_rates {
                    if rate.per_hour.qty > 0.0 {
                        let cycle_ms = 3_600_000.0 / rate.per_hour.qty;
                        match &rate.material {
                            Some(material) => {
                                rates.by_material.insert(material.clone(), cycle_ms);
                            }
                            None => rates.default = Some(cycle_ms),
                        }
                    }
                }
                log.meta_state_map = meta
                    .state_map
                    .as_ref()
                    .and_then(|id| StateMap::from_name(id.as_str()));
                let current = log.rates.iter().next_back().map(|(_, rates)| rates.clone());
                if current.as_ref() == Some(&rates) {
                    return (location, false, String::new());
                }
                log.rates.insert(now, rates);
                (location, true, String::new())
            }
        }
    }

    fn state_map(&self, location: &Location) -> StateMap {
        self.settings
            .state_maps
            .get(location)
            .copied()
            .or_else(|| self.logs.get(location).and_then(|log| log.meta_state_map))
            .unwrap_or(StateMap::Category)
    }

    fn line_of(&self, location: &Location) -> Option<&crate::config::Line> {
        self.settings
            .lines
            .iter()
            .find(|line| &line.path == location)
    }

    /// The scope results at `location` belong to.
    pub fn scope_of(&self, location: &Location) -> Scope {
        if self.line_of(location).is_some() {
            Scope::Line(location.clone())
        } else if location.depth() == 2 {
            Scope::Site(location.clone())
        } else {
            Scope::Cell(location.clone())
        }
    }

    fn site_of(location: &Location) -> Option<Location> {
        (location.depth() >= 2)
            .then(|| location.ancestors().find(|a| a.depth() == 2))
            .flatten()
    }

    /// Every scope with data, in a stable order.
    pub fn scopes(&self) -> Vec<Scope> {
        let mut out = BTreeSet::new();
        for (location, log) in &self.logs {
            if !log.has_data() || self.line_of(location).is_some() {
                continue;
            }
            if location.depth() > 2 {
                out.insert(Scope::Cell(location.clone()));
            }
            if let Some(site) = Self::site_of(location) {
                out.insert(Scope::Site(site));
            }
        }
        for line in &self.settings.lines {
            let has = |cell: &Location| self.logs.get(cell).is_some_and(AssetLog::has_data);
            if has(&line.counting_cell) || has(&line.bottleneck_cell) {
                out.insert(Scope::Line(line.path.clone()));
            }
        }
        out.into_iter().collect()
    }

    /// The scopes whose results an input at `location` changes.
    fn affected(&self, location: &Location) -> Vec<Scope> {
        let mut out = vec![Scope::Cell(location.clone())];
        for line in &self.settings.lines {
            if &line.path == location
                || &line.counting_cell == location
                || &line.bottleneck_cell == location
            {
                out.push(Scope::Line(line.path.clone()));
            }
        }
        if let Some(site) = Self::site_of(location) {
            out.push(Scope::Site(site));
        }
        out
    }

    fn mark_dirty(&mut self, location: &Location, at: i64, what: String) {
        let affected = self.affected(location);
        let keys: Vec<FinalKey> = self
            .finals
            .iter()
            .filter(|((scope, _, _), fin)| {
                affected.contains(scope) && fin.windows.last().is_some_and(|(_, end)| *end > at)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            let reasons = self.dirty.entry(key).or_default();
            if !reasons.contains(&what) && !what.is_empty() {
                reasons.push(what.clone());
            }
        }
    }

    fn calendar(&self, scope: &Scope) -> &Calendar {
        self.settings.calendar_for(scope.location())
    }

    fn rules(&self) -> Rules {
        Rules {
            policy: self.settings.policy,
            minor_stop_threshold_ms: self.settings.minor_stop_threshold_ms,
            startup_window_ms: self.settings.startup_window_ms,
        }
    }

    fn empty_log() -> &'static AssetLog {
        static EMPTY: std::sync::OnceLock<AssetLog> = std::sync::OnceLock::new();
        EMPTY.get_or_init(AssetLog::default)
    }

    fn log(&self, location: &Location) -> &AssetLog {
        self.logs.get(location).unwrap_or_else(|| Self::empty_log())
    }

    /// The raw sums of `scope` over `windows`, with the last state running until `as_of`.
    fn raw(&self, scope: &Scope, windows: &[(i64, i64)], as_of: i64) -> Raw {
        match scope {
            Scope::Cell(location) => {
                let log = self.log(location);
                self.raw_of(scope, log, log, (log, location), windows, as_of)
            }
            Scope::Line(location) => {
                let Some(line) = self.line_of(location) else {
                    return Raw::default();
                };
                let time_log = self.log(&line.bottleneck_cell);
                let count_log = self.log(&line.counting_cell);
                let line_log = self.log(location);
                let ideal = if line_log.rates.is_empty() {
                    (count_log, &line.counting_cell)
                } else {
                    (line_log, location)
                };
                self.raw_of(scope, time_log, count_log, ideal, windows, as_of)
            }
            Scope::Site(site) => {
                let mut total = Raw::default();
                for member in self.scopes() {
                    let inside_line = |location: &Location| {
                        self.settings
                            .lines
                            .iter()
                            .any(|line| line.path.contains(location))
                    };
                    let counts = match &member {
                        Scope::Line(location) => site.contains(location),
                        Scope::Cell(location) => site.contains(location) && !inside_line(location),
                        Scope::Site(_) => false,
                    };
                    if counts {
                        total.add(&self.raw(&member, windows, as_of));
                    }
                }
                total
            }
        }
    }

    fn raw_of(
        &self,
        scope: &Scope,
        time_log: &AssetLog,
        count_log: &AssetLog,
        ideal: (&AssetLog, &Location),
        windows: &[(i64, i64)],
        as_of: i64,
    ) -> Raw {
        let calendar = self.calendar(scope);
        let rules = self.rules();
        let mut total = Raw::default();
        for &(from, window_end) in windows {
            let to = window_end.min(as_of.max(from));
            // A window that runs past the time of calculation is open: a sample stamped exactly at that
            // time belongs to it. A closed one ends where the next begins, which owns such a sample.
            let count_to = if window_end > as_of && to == as_of {
                to + 1
            } else {
                to
            };
            // Time before the first state of the asset whose time counts is not monitored: it is left
            // out of the window (times and counts alike) and reported as `unmonitored_ms`.
            let from_monitored = time_log
                .first_state_at
                .map_or(to, |first| first.clamp(from, to));
            total.unmonitored_ms += to_u64(from_monitored - from);
            if from_monitored >= to {
                continue;
            }
            let from = from_monitored;
            total.monitored_from = Some(total.monitored_from.map_or(from, |m| m.min(from)));
            let planned = calendar.planned(from, to);
            let spans = time_log.spans(from, to, as_of);
            let deltas = count_log.deltas(from, count_to);
            let setup_ends = time_log.setup_ends(from - rules.startup_window_ms, to);
            let ideal_ms = |at: i64| ideal.0.ideal_ms(at, ideal.1);
            let raw = iso22400::accumulate(
                (from, to),
                &planned,
                &spans,
                &deltas,
                &ideal_ms,
                &setup_ends,
                rules,
            );
            total.add(&raw);
        }
        total
    }

    fn uom(&self, scope: &Scope) -> Uom {
        let location = match scope {
            Scope::Line(location) => self.line_of(location).map(|line| &line.counting_cell),
            Scope::Cell(location) => Some(location),
            Scope::Site(_) => None,
        };
        location
            .and_then(|location| self.log(location).uom)
            .unwrap_or_else(ea)
    }

    /// The document of `scope` over `windows`.
    fn result(
        &self,
        scope: &Scope,
        kind: Kind,
        id: &str,
        windows: &[(i64, i64)],
        as_of: i64,
        is_final: bool,
    ) -> OeeResult {
        let raw = self.raw(scope, windows, as_of);
        let policy = self.settings.policy;
        let kpis = iso22400::kpis(&raw, policy);
        let uom = self.uom(scope);
        let quantity = |qty: f64| Quantity::new(qty, uom);
        let mut losses: Vec<Loss> = raw
            .losses
            .iter()
            .map(|((reason, category), (ms, n))| Loss {
                reason: reason.clone(),
                category: CategoryKey::category(*category),
                duration_ms: *ms,
                occurrences: *n,
            })
            .collect();
        losses.sort_by(|a, b| {
            b.duration_ms
                .cmp(&a.duration_ms)
                .then_with(|| a.reason.cmp(&b.reason))
        });
        // The first instant monitored (later than the period's start for an asset first seen during it).
        let start = raw
            .monitored_from
            .or_else(|| windows.first().map(|(start, _)| *start))
            .unwrap_or(as_of);
        let end = windows.last().map_or(as_of, |(_, end)| *end);
        let end = if is_final {
            end
        } else {
            end.min(as_of.max(start))
        };
        OeeResult {
            schema: SchemaTag::default(),
            period: OeePeriod {
                kind: kind.model(),
                id: period_id(id),
            },
            start: ts(start),
            end: ts(end),
            availability: kpis.availability,
            performance: kpis.performance,
            quality: kpis.quality,
            oee: kpis.oee,
            nee: kpis.nee,
            teep: kpis.teep,
            utilisation: kpis.utilisation,
            technical_efficiency: kpis.technical_efficiency,
            setup_ratio: kpis.setup_ratio,
            scrap_ratio: kpis.scrap_ratio,
            rework_ratio: kpis.rework_ratio,
            null_reasons: kpis.null_reasons,
            times: raw.times,
            counts: OeeCounts {
                produced: quantity(raw.produced()),
                good: quantity(raw.good),
                scrap: quantity(raw.scrap),
                rework: quantity(raw.rework),
            },
            six_big_losses: kpis.six_big_losses,
            losses,
            minor_stop_policy: policy,
            calendar: Some(self.calendar(scope).label()),
            version: 1,
            is_final,
            corrects: None,
            reason: None,
        }
    }

    fn first_at(&self, scope: &Scope) -> Option<i64> {
        let of = |location: &Location| self.logs.get(location).and_then(|log| log.first_at);
        match scope {
            Scope::Cell(location) => of(location),
            Scope::Line(location) => {
                let line = self.line_of(location)?;
                [of(&line.counting_cell), of(&line.bottleneck_cell)]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Scope::Site(site) => self
                .logs
                .iter()
                .filter(|(location, _)| site.contains(location))
                .filter_map(|(_, log)| log.first_at)
                .min(),
        }
    }

    /// The order timeline that drives work-order periods of `scope`.
    fn order_log(&self, scope: &Scope) -> Option<&AssetLog> {
        match scope {
            Scope::Cell(location) => self.logs.get(location),
            Scope::Line(location) => {
                let own = self.logs.get(location).filter(|log| !log.orders.is_empty());
                own.or_else(|| self.logs.get(&self.line_of(location)?.counting_cell))
            }
            Scope::Site(_) => None,
        }
    }

    fn next_window(calendar: &Calendar, kind: Kind, cursor: i64) -> Option<Window> {
        match kind {
            Kind::Hour => Some(calendar.hour(cursor)),
            Kind::Day => Some(calendar.day(cursor)),
            Kind::Shift => calendar.shift_after(cursor).map(|shift| Window {
                id: shift.id,
                start: shift.start,
                end: shift.end,
            }),
            Kind::Wo => None,
        }
    }

    /// Closes every period whose end plus grace the watermark has passed, and re-publishes changed
    /// corrections.
    fn close_due(&mut self) -> Vec<Publication> {
        let Some(watermark) = self.watermark else {
            return Vec::new();
        };
        let all_due = watermark >= self.next_due;
        if !all_due && self.new_scopes.is_empty() && self.dirty.is_empty() {
            return Vec::new();
        }
        let grace = self.settings.grace_ms;
        let due = |end: i64| end.saturating_add(grace) <= watermark;
        let mut next_due = i64::MAX;
        let mut out = Vec::new();
        let new_scopes = std::mem::take(&mut self.new_scopes);
        let scopes = if all_due {
            self.scopes()
        } else {
            new_scopes
                .into_iter()
                .filter(|scope| self.has_scope(scope))
                .collect()
        };
        for scope in scopes {
            for kind in [Kind::Hour, Kind::Shift, Kind::Day, Kind::Wo] {
                let (closed, pending) = self.close_periods(&scope, kind, watermark, &due);
                out.extend(closed);
                if let Some(end) = pending {
                    next_due = next_due.min(end.saturating_add(grace));
                }
            }
        }
        self.next_due = if all_due {
            next_due
        } else {
            self.next_due.min(next_due)
        };
        out.extend(self.correct_dirty());
        out
    }

    /// Whether `scope` is one of [`Engine::scopes`] (has data), without listing them all.
    fn has_scope(&self, scope: &Scope) -> bool {
        let has = |location: &Location| self.logs.get(location).is_some_and(AssetLog::has_data);
        match scope {
            Scope::Cell(location) => {
                location.depth() > 2 && self.line_of(location).is_none() && has(location)
            }
            Scope::Line(location) => self
                .line_of(location)
                .is_some_and(|line| has(&line.counting_cell) || has(&line.bottleneck_cell)),
            // Locations below a site sort right after it.
            Scope::Site(site) => self
                .logs
                .range(site.clone()..)
                .take_while(|(location, _)| site.contains(location))
                .any(|(location, log)| log.has_data() && self.line_of(location).is_none()),
        }
    }

    /// `_cmd/oee/close`: closes the periods of every scope at or below `location` that ended by `at`,
    /// without waiting for the grace.
    fn close_requested(
        &mut self,
        location: &Location,
        kind: Option<Kind>,
        at: i64,
    ) -> Vec<Publication> {
        let kinds = kind.map_or_else(
            || vec![Kind::Hour, Kind::Shift, Kind::Day, Kind::Wo],
            |kind| vec![kind],
        );
        let as_of = self.watermark.map_or(at, |watermark| watermark.max(at));
        let due = |end: i64| end <= at;
        self.requested_until = self.requested_until.max(at);
        let mut out = Vec::new();
        for scope in self.scopes_under(location) {
            for &kind in &kinds {
                out.extend(self.close_periods(&scope, kind, as_of, &due).0);
            }
        }
        out
    }

    /// The scopes with data at or below `location`.
    pub fn scopes_under(&self, location: &Location) -> Vec<Scope> {
        self.scopes()
            .into_iter()
            .filter(|scope| location.contains(scope.location()))
            .collect()
    }

    /// Closes the periods of `scope` and `kind` that `due` accepts (by their end), oldest first; returns
    /// the finals and the end of the first period not yet due. Work orders close once another order (or
    /// none) replaced them; `as_of` is the time the order timeline is read up to.
    fn close_periods(
        &mut self,
        scope: &Scope,
        kind: Kind,
        as_of: i64,
        due: &dyn Fn(i64) -> bool,
    ) -> (Vec<Publication>, Option<i64>) {
        let mut out = Vec::new();
        if kind == Kind::Wo {
            let Some(log) = self.order_log(scope) else {
                return (out, None);
            };
            let ids: BTreeSet<String> = log
                .orders
                .values()
                .flatten()
                .map(|(id, _)| id.clone())
                .collect();
            let mut ready = Vec::new();
            let mut pending: Option<i64> = None;
            for id in ids {
                let (windows, open) = log.order_windows(&id);
                let end = windows.last().map_or(i64::MAX, |(_, end)| *end);
                let key = (scope.clone(), Kind::Wo, id.clone());
                if open || self.finals.contains_key(&key) {
                    continue;
                }
                if due(end) {
                    ready.push((key, windows));
                } else {
                    pending = Some(pending.map_or(end, |pending| pending.min(end)));
                }
            }
            for (key, windows) in ready {
                let result = self.result(scope, Kind::Wo, &key.2, &windows, as_of, true);
                out.push(self.publish_final(key, windows, result));
            }
            return (out, pending);
        }
        let Some(first_at) = self.first_at(scope) else {
            return (out, None);
        };
        let calendar = self.calendar(scope).clone();
        let key = (scope.clone(), kind);
        let mut cursor = self.closed_until.get(&key).copied().unwrap_or(first_at);
        while let Some(window) = Self::next_window(&calendar, kind, cursor) {
            if window.end <= cursor {
                break;
            }
            if !due(window.end) {
                return (out, Some(window.end));
            }
            let windows = [(window.start, window.end)];
            let result = self.result(scope, kind, &window.id, &windows, window.end, true);
            let empty = result.times.pot_ms == 0 && result.counts.produced.qty == 0.0;
            if kind == Kind::Shift || !empty {
                out.push(self.publish_final(
                    (scope.clone(), kind, window.id),
                    windows.to_vec(),
                    result,
                ));
            }
            cursor = window.end;
            self.closed_until.insert(key.clone(), cursor);
        }
        (out, None)
    }

    /// The periods of the scopes at or below `location` that are still running at `at` (of `kind`, or of
    /// every kind): what a close request leaves open.
    pub fn still_open(
        &self,
        location: &Location,
        kind: Option<OeePeriodKind>,
        at: i64,
    ) -> Vec<OpenPeriod> {
        let mut out = Vec::new();
        for scope in self.scopes_under(location) {
            let calendar = self.calendar(&scope);
            let mut windows = vec![
                (OeePeriodKind::Hour, Some(calendar.hour(at))),
                (
                    OeePeriodKind::Shift,
                    calendar.shift_at(at).map(|shift| Window {
                        id: shift.id,
                        start: shift.start,
                        end: shift.end,
                    }),
                ),
                (OeePeriodKind::Day, Some(calendar.day(at))),
            ];
            if let Some(log) = self.order_log(&scope)
                && let Some((_, Some((id, _)))) = log.orders.range(..=at).next_back()
            {
                windows.push((
                    OeePeriodKind::Wo,
                    Some(Window {
                        id: id.clone(),
                        start: at,
                        end: at,
                    }),
                ));
            }
            for (period_kind, window) in windows {
                if kind.is_some_and(|kind| kind != period_kind) {
                    continue;
                }
                if let Some(window) = window {
                    out.push(OpenPeriod {
                        location: scope.location().clone(),
                        kind: period_kind,
                        id: window.id,
                        end: window.end,
                    });
                }
            }
        }
        out
    }

    fn publish_final(
        &mut self,
        key: FinalKey,
        windows: Vec<(i64, i64)>,
        result: OeeResult,
    ) -> Publication {
        let publication = Publication {
            location: key.0.location().clone(),
            class: Class::Oee(key.1.model(), result.period.id.clone()),
            result: result.clone(),
        };
        self.dirty.remove(&key);
        self.finals.insert(key, Final { windows, result });
        publication
    }

    fn correct_dirty(&mut self) -> Vec<Publication> {
        let mut out = Vec::new();
        for (key, reasons) in std::mem::take(&mut self.dirty) {
            let Some(fin) = self.finals.get(&key) else {
                continue;
            };
            let windows = fin.windows.clone();
            let end = windows.last().map_or(0, |(_, end)| *end);
            let mut result = self.result(&key.0, key.1, &key.2, &windows, end, true);
            let previous = &fin.result;
            let same = OeeResult {
                version: previous.version,
                corrects: previous.corrects,
                reason: previous.reason.clone(),
                ..result.clone()
            } == *previous;
            if same {
                continue;
            }
            result.version = previous.version + 1;
            result.corrects = Some(previous.version);
            result.reason = Some(reasons.join("; "));
            out.push(self.publish_final(key, windows, result));
        }
        out
    }

    fn maybe_prune(&mut self) {
        let Some(watermark) = self.watermark else {
            return;
        };
        let hour = watermark.div_euclid(3_600_000);
        if hour == self.last_prune_hour {
            return;
        }
        self.last_prune_hour = hour;
        let cutoff = watermark - self.settings.retain_ms;
        for log in self.logs.values_mut() {
            log.prune(cutoff);
        }
        self.finals
            .retain(|_, fin| fin.windows.last().is_some_and(|(_, end)| *end >= cutoff));
        if self.settings.compact_counts {
            self.compact(watermark);
        }
    }

    /// Merges the count samples of hours that have closed (their end plus the grace is behind the
    /// watermark), so an asset holds about one sample per counter and hour instead of every sample for
    /// `retain_h` hours.
    ///
    /// A sample `a` between its neighbours `p` and `b` is dropped when `p ≤ a ≤ b` (no reset at `a` or
    /// `b`) and nothing that decides where a count belongs separates `a` from `b`: no hour, day or shift
    /// boundary of the asset's calendar, no work-order or ideal-rate change of the asset or of a line it
    /// counts for, and `a` is after the first state of every asset whose time the counts go with. Every
    /// window then holds the same sum (`b − p` = `(a − p) + (b − a)`) and the ideal time is the same
    /// (one rate for both), so every result, closed or current, is unchanged. Late inputs keep it so: a
    /// late state changes no count's window, a late sample between `p` and `b` splits the merged delta
    /// again, a duplicate of a dropped sample is inserted back between its neighbours. Two kinds of late
    /// input can tell: a counter reset or a work-order change stamped inside a merged stretch (then the
    /// merged delta is counted at `b`, where the next sample kept is). Scrap and rework are not merged
    /// when `startup_window_s` is set (reduced yield depends on each sample's time after a setup).
    fn compact(&mut self, watermark: i64) {
        let base = watermark.saturating_sub(self.settings.grace_ms);
        let locations: Vec<Location> = self
            .logs
            .iter()
            .filter(|(_, log)| log.totals.iter().any(|totals| totals.len() > 2))
            .map(|(location, _)| location.clone())
            .collect();
        let kinds: &[Qty] = if self.settings.startup_window_ms > 0 {
            &[Qty::Good]
        } else {
            &QTYS
        };
        for location in locations {
            let Some((cuts, monitored)) = self.merge_context(&location) else {
                continue;
            };
            let calendar = self.settings.calendar_for(&location);
            let horizon = calendar.hour(base).start;
            let mut bounds = Boundaries {
                calendar,
                cuts: &cuts,
                from: i64::MAX,
                end: i64::MIN,
            };
            let Some(log) = self.logs.get_mut(&location) else {
                continue;
            };
            let from = log.compacted_until.max(monitored);
            if from >= horizon {
                continue;
            }
            for &kind in kinds {
                compact_samples(&mut log.totals[qty_index(kind)], from, horizon, &mut bounds);
            }
            log.compacted_until = horizon;
        }
    }

    /// What decides whether two count samples of `location` may be merged: the work-order and rate
    /// changes of the asset and of the lines it counts for, and the time from which every asset its
    /// counts go with is monitored (`None`: one of them has no state yet, nothing is merged).
    fn merge_context(&self, location: &Location) -> Option<(BTreeSet<i64>, i64)> {
        let mut cuts = BTreeSet::new();
        let add_cuts = |log: &AssetLog, cuts: &mut BTreeSet<i64>| {
            cuts.extend(log.orders.keys().copied());
            cuts.extend(log.rates.keys().copied());
        };
        add_cuts(self.log(location), &mut cuts);
        let mut monitored = self.log(location).first_state_at;
        for line in &self.settings.lines {
            if &line.counting_cell == location {
                add_cuts(self.log(&line.path), &mut cuts);
                let bottleneck = self.log(&line.bottleneck_cell).first_state_at;
                monitored = monitored.zip(bottleneck).map(|(a, b)| a.max(b));
            }
        }
        Some((cuts, monitored?))
    }

    /// Whether a count sample that arrives for an already merged stretch is one [`Engine::compact`]
    /// would drop (between neighbours `p ≤ total ≤ b`, nothing separating it from `b`): adding it
    /// changes no result, so it is a duplicate (a sample sent again, or a late one inside the stretch).
    fn merged_away(&self, location: &Location, kind: Qty, at: i64, total: f64) -> bool {
        if !self.settings.compact_counts
            || (kind != Qty::Good && self.settings.startup_window_ms > 0)
        {
            return false;
        }
        let Some(log) = self.logs.get(location) else {
            return false;
        };
        if at >= log.compacted_until {
            return false;
        }
        let Some((cuts, monitored)) = self.merge_context(location) else {
            return false;
        };
        let totals = &log.totals[qty_index(kind)];
        let key = (at, total.to_bits());
        let prev = totals.range(..key).next_back();
        let next = totals
            .range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))
            .next();
        let (Some((_, &p)), Some((&(b_at, _), &b))) = (prev, next) else {
            return false;
        };
        let mut bounds = Boundaries {
            calendar: self.settings.calendar_for(location),
            cuts: &cuts,
            from: i64::MAX,
            end: i64::MIN,
        };
        at >= monitored && p <= total && total <= b && b_at < bounds.next_after(at)
    }

    /// How many states, count samples, reclassifications, order changes and rate changes the engine
    /// holds (what its memory grows with).
    pub fn n_entries(&self) -> usize {
        self.logs
            .values()
            .map(|log| {
                log.states.len()
                    + log.totals.iter().map(BTreeMap::len).sum::<usize>()
                    + log.reclass.len()
                    + log.orders.len()
                    + log.rates.len()
            })
            .sum()
    }

    /// The open periods of every scope (`_oee/current/{hour,shift,wo}`), computed up to the watermark or
    /// `now`, whichever is later.
    pub fn current(&self, now: Option<i64>) -> Vec<Publication> {
        let Some(as_of) = self.watermark.max(now) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for scope in self.scopes() {
            out.extend(self.current_of(&scope, as_of));
        }
        out
    }

    /// The open periods of one scope.
    pub fn current_of(&self, scope: &Scope, as_of: i64) -> Vec<Publication> {
        let mut out = Vec::new();
        let calendar = self.calendar(scope);
        let mut push = |kind: Kind, id: &str, windows: &[(i64, i64)]| {
            out.push(Publication {
                location: scope.location().clone(),
                class: Class::OeeCurrent(kind.model()),
                result: self.result(scope, kind, id, windows, as_of, false),
            });
        };
        let hour = calendar.hour(as_of);
        push(Kind::Hour, &hour.id, &[(hour.start, hour.end)]);
        if let Some(shift) = calendar.shift_at(as_of) {
            push(Kind::Shift, &shift.id, &[(shift.start, shift.end)]);
        }
        if let Some(log) = self.order_log(scope)
            && let Some((_, Some((id, _)))) = log.orders.range(..=as_of).next_back()
        {
            let (windows, _) = log.order_windows(id);
            push(Kind::Wo, id, &windows);
        }
        out
    }

    /// A closed period's latest version, by location, kind and id.
    pub fn closed(&self, location: &Location, kind: OeePeriodKind, id: &str) -> Option<&OeeResult> {
        let key = (self.scope_of(location), Kind::of(kind), id.to_owned());
        self.finals.get(&key).map(|fin| &fin.result)
    }

    /// Every closed period's latest version (for re-publishing after a reconnect).
    pub fn all_closed(&self) -> Vec<Publication> {
        self.finals
            .iter()
            .map(|((scope, kind, _), fin)| Publication {
                location: scope.location().clone(),
                class: Class::Oee(kind.model(), fin.result.period.id.clone()),
                result: fin.result.clone(),
            })
            .collect()
    }

    /// The minor-stop policy in force.
    pub fn policy(&self) -> MinorStopPolicy {
        self.settings.policy
    }
}

/// Parses a location from text, for callers holding strings (CLI, HTTP).
pub fn parse_location(text: &str) -> Option<Location> {
    let segments: Option<Vec<Segment>> = text
        .split('/')
        .map(|part| Segment::new(part).ok())
        .collect();
    Location::new(segments?)
}
