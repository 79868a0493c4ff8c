//! A plant in a test: an [`Engine`] fed with typed documents, and the helpers that keep a scenario short.

use chrono::{NaiveDateTime, TimeZone};
use uns_model::payload::{
    CountChange, CountDoc, CountEvent, EventHeader, IdealRate, MachineState, Mode, NodeMeta,
    OeeResult, Quantity, SchemaTag, StateCategory, StateDoc, Timestamp, Uom, WorkOrder,
    WorkOrderQuantities, WorkOrderStatus,
};
use uns_model::topic::{Class, CountKind, Id, Isa95Level, Location, OeePeriodKind, UnsTopic};
use uns_oee::config::{OeeConfig, Settings};
use uns_oee::engine::{Applied, Engine, Input, Publication};
use uuid::Uuid;

/// The calendar most scenarios use: one shift 06:00-14:00 (UTC) with a break 10:00-10:30.
pub(crate) const ONE_SHIFT: &str = r#"
grace_s = 60
minor_stop_threshold_s = 120
default_calendar = "one"
default_time_zone = "UTC"
[calendars.one]
shifts = [{ name = "early", start = "06:00", end = "14:00", breaks = [{ start = "10:00", end = "10:30" }] }]
"#;

/// The filler of line 1.
pub(crate) const FILLER: &str = "acme/berlin/packaging/line-1/filler";

/// Unix ms of `YYYY-MM-DD HH:MM[:SS]` in `zone`.
pub(crate) fn at_in(zone: &str, text: &str) -> i64 {
    let format = if text.len() > 16 {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M"
    };
    let local = NaiveDateTime::parse_from_str(text, format).expect("test time");
    let tz: chrono_tz::Tz = zone.parse().expect("zone");
    tz.from_local_datetime(&local)
        .earliest()
        .expect("exists")
        .timestamp_millis()
}

/// Unix ms of `HH:MM[:SS]` on Monday 2026-03-02 UTC.
pub(crate) fn at(hhmm: &str) -> i64 {
    at_in("UTC", &format!("2026-03-02 {hhmm}"))
}

/// Minutes in ms.
pub(crate) fn min(minutes: f64) -> f64 {
    minutes * 60_000.0
}

/// Asserts `actual` equals `expected` to 4 decimals.
#[track_caller]
pub(crate) fn close4(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("a value, not null");
    assert!(
        (actual - expected).abs() < 0.5e-4,
        "got {actual:.6}, expected {expected:.6}"
    );
}

pub(crate) fn loc(text: &str) -> Location {
    text.parse().expect("location")
}

fn ea(qty: f64) -> Quantity {
    Quantity::new(qty, Uom::EA)
}

fn ts(at: i64) -> Timestamp {
    Timestamp::from_unix_ms(at).expect("time")
}

pub(crate) fn settings(toml_text: &str) -> Settings {
    // No demo sites or lines unless the scenario names its own.
    let mut config: OeeConfig = toml::from_str(toml_text).expect("config parses");
    if !toml_text.contains("[[sites]]") {
        config.sites.clear();
    }
    if !toml_text.contains("[[lines]]") {
        config.lines.clear();
    }
    Settings::try_from(&config).expect("config is valid")
}

pub(crate) fn state_doc(at: i64, category: StateCategory, name: &str) -> StateDoc {
    StateDoc::new(
        Mode::Production,
        MachineState::named(category, name),
        ts(at),
    )
}

pub(crate) fn count_doc(kind: CountKind, total: f64, at: i64) -> CountDoc {
    CountDoc::new(kind, ea(total), at)
}

pub(crate) fn reclass_event(
    at: i64,
    from: CountKind,
    to: CountKind,
    qty: f64,
    event_id: Uuid,
) -> CountEvent {
    CountEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(event_id, ts(at), ts(at)).with_reason("failed inspection"),
        wo_id: None,
        change: CountChange::Reclassify {
            from,
            to,
            quantity: ea(qty),
        },
    }
}

pub(crate) fn meta_doc(per_hour: f64) -> NodeMeta {
    NodeMeta {
        schema: SchemaTag::default(),
        level: Isa95Level::WorkCell,
        display_name: "asset".to_owned(),
        time_zone: None,
        ideal_rates: vec![IdealRate {
            material: None,
            per_hour: ea(per_hour),
        }],
        state_map: None,
        erp_id: None,
    }
}

pub(crate) fn work_order(id: &str, material: &str, location: &str, at: i64) -> WorkOrder {
    WorkOrder {
        schema: SchemaTag::default(),
        id: Id::new(id).expect("id"),
        erp_ref: None,
        production_order: None,
        material: material.to_owned(),
        status: WorkOrderStatus::Running,
        quantities: WorkOrderQuantities {
            planned: ea(1000.0),
            good: ea(0.0),
            scrap: ea(0.0),
            rework: ea(0.0),
        },
        hierarchy_scope: loc(location),
        operations: Vec::new(),
        components: Vec::new(),
        lots: Vec::new(),
        updated_at: ts(at),
    }
}

/// A plant: the engine, every message given to it (as it would travel) and every publication.
pub(crate) struct Plant {
    pub(crate) engine: Engine,
    pub(crate) published: Vec<Publication>,
    pub(crate) recorded: Vec<(String, Vec<u8>)>,
    ticks: i64,
}

impl Plant {
    pub(crate) fn new(config: &str) -> Self {
        Self {
            engine: Engine::new(settings(config)),
            published: Vec::new(),
            recorded: Vec::new(),
            ticks: 0,
        }
    }

    pub(crate) fn apply(&mut self, topic: UnsTopic, bytes: Vec<u8>, input: Input) -> Applied {
        self.recorded.push((topic.to_string(), bytes));
        let applied = self.engine.apply(input).expect("input accepted");
        self.published.extend(applied.publications.clone());
        applied
    }

    pub(crate) fn state(
        &mut self,
        location: &str,
        at: i64,
        category: StateCategory,
        name: &str,
    ) -> Applied {
        let doc = state_doc(at, category, name);
        let topic = UnsTopic::located(loc(location), Class::State);
        let bytes = serde_json::to_vec(&doc).expect("json");
        self.apply(
            topic,
            bytes,
            Input::State {
                location: loc(location),
                doc,
            },
        )
    }

    pub(crate) fn count(
        &mut self,
        location: &str,
        kind: CountKind,
        total: f64,
        at: i64,
    ) -> Applied {
        let doc = count_doc(kind, total, at);
        let topic = UnsTopic::located(loc(location), Class::Count(kind));
        let bytes = serde_json::to_vec(&doc).expect("json");
        self.apply(
            topic,
            bytes,
            Input::Count {
                location: loc(location),
                doc,
            },
        )
    }

    /// Baselines of 0 for good, scrap and rework at `at`.
    pub(crate) fn zero_counts(&mut self, location: &str, at: i64) {
        for kind in [CountKind::Good, CountKind::Scrap, CountKind::Rework] {
            self.count(location, kind, 0.0, at);
        }
    }

    pub(crate) fn reclass(
        &mut self,
        location: &str,
        at: i64,
        from: CountKind,
        to: CountKind,
        qty: f64,
        id: Uuid,
    ) -> Applied {
        let event = reclass_event(at, from, to, qty, id);
        let topic = UnsTopic::located(loc(location), Class::CountEvents);
        let bytes = serde_json::to_vec(&event).expect("json");
        self.apply(
            topic,
            bytes,
            Input::CountEvent {
                location: loc(location),
                event,
            },
        )
    }

    pub(crate) fn rate(&mut self, location: &str, per_hour: f64) {
        let meta = meta_doc(per_hour);
        let topic = UnsTopic::located(loc(location), Class::Meta);
        let bytes = serde_json::to_vec(&meta).expect("json");
        self.apply(
            topic,
            bytes,
            Input::Meta {
                location: loc(location),
                meta,
            },
        );
    }

    pub(crate) fn order(&mut self, location: &str, order: Option<WorkOrder>) {
        let topic = UnsTopic::located(loc(location), Class::WorkOrderActive);
        let bytes = serde_json::to_vec(&order).expect("json");
        self.apply(
            topic,
            bytes,
            Input::ActiveOrder {
                location: loc(location),
                order,
            },
        );
    }

    /// `_cmd/oee/close` at `location` for periods that ended by `at`.
    pub(crate) fn close(
        &mut self,
        location: &str,
        kind: Option<OeePeriodKind>,
        at: i64,
    ) -> Applied {
        let topic = UnsTopic::located(loc(location), uns_oee::input::close_class());
        let body = uns_oee::input::CloseRequest {
            period: kind,
            at: Some(ts(at)),
        };
        let bytes = serde_json::to_vec(&body).expect("json");
        self.apply(
            topic,
            bytes,
            Input::Close {
                location: loc(location),
                kind,
                at,
            },
        )
    }

    /// Moves event time to `at` with a clock asset on another site (a counter that never changes).
    pub(crate) fn tick(&mut self, at: i64) {
        self.ticks += 1;
        self.count("acme/clock/ticks/tick", CountKind::Good, 0.0, at);
    }

    pub(crate) fn closed(&self, location: &str, kind: OeePeriodKind, id: &str) -> OeeResult {
        self.engine
            .closed(&loc(location), kind, id)
            .cloned()
            .unwrap_or_else(|| panic!("no closed {kind:?} {id} at {location}"))
    }

    /// Every publication of one closed period, in order.
    pub(crate) fn versions(&self, location: &str, kind: OeePeriodKind, id: &str) -> Vec<OeeResult> {
        let location = loc(location);
        let class = Class::Oee(kind, Id::new(id).expect("id"));
        self.published
            .iter()
            .filter(|p| p.location == location && p.class == class)
            .map(|p| p.result.clone())
            .collect()
    }
}

/// Checks the invariants every result keeps: Σ buckets = POT, PBT = POT − PDT, A × E × Q = OEE to 1e-9,
/// and PBT = ideal × GQ + the six big losses + ADOT.
#[track_caller]
pub(crate) fn check_invariants(result: &OeeResult) {
    let t = &result.times;
    assert_eq!(
        t.pdt_ms + t.apt_ms + t.asut_ms + t.adet_ms + t.adot_ms,
        t.pot_ms,
        "Σ buckets = POT"
    );
    assert_eq!(t.pbt_ms, t.pot_ms - t.pdt_ms, "PBT = POT − PDT");
    if let (Some(a), Some(e), Some(q)) = (result.availability, result.performance, result.quality) {
        let oee = result.oee.expect("OEE with all factors");
        assert!((a * e * q - oee).abs() < 1e-9, "A × E × Q = OEE");
        let losses = &result.six_big_losses;
        let ideal_good = t.ideal_ms * result.counts.good.qty / result.counts.produced.qty;
        let sum = ideal_good
            + losses.breakdowns_ms as f64
            + losses.setup_ms as f64
            + losses.minor_stops_ms as f64
            + losses.speed_ms
            + losses.defects_ms
            + losses.reduced_yield_ms
            + t.adot_ms as f64;
        assert!(
            (sum - t.pbt_ms as f64).abs() < 1e-3,
            "six big losses add up: {sum} vs {}",
            t.pbt_ms
        );
    }
}
