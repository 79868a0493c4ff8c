//! ISO 22400-2 arithmetic, free of I/O and of clocks: state spans and count deltas of one window become
//! time buckets and quantities ([`Raw`]), and [`Raw`] becomes the KPIs ([`Kpis`]).
//!
//! Bucket rule, for each millisecond of the window:
//! - outside every shift, or in state `not_scheduled`, or in mode `no_shift` → outside POT;
//! - in a break, or in state `planned_down` → PDT;
//! - `running` → APT; `setup` → ASUT; `unplanned_down` → ADET; `starved`/`blocked` → ADOT;
//!   `unknown` (and time a window's state spans leave uncovered) → ADOT, also counted in `unknown_ms`;
//! - a minor stop (`minor_stop`, or `unplanned_down` shorter than the threshold) → ADET under `iso22400`,
//!   APT under `tpm`; either way also counted in `minor_stop_ms`.

use std::collections::BTreeMap;

use uns_model::payload::{MinorStopPolicy, Mode, SixBigLosses, StateCategory, TimeBuckets};

use crate::calendar::Planned;

/// How an asset's raw state becomes a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StateMap {
    /// Take the category the publisher put in the `_state` document.
    Category,
    /// Map the PackML state *name* (never its number) when one is given.
    PackMl,
}

impl StateMap {
    /// `category` or `packml`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "category" => Some(Self::Category),
            "packml" => Some(Self::PackMl),
            _ => None,
        }
    }
}

/// The category of a PackML state by name (case, spaces, `-` and `_` ignored): Execute → running;
/// Held/Holding/Unholding, Stopped/Stopping, Aborted/Aborting, Clearing → unplanned_down;
/// Suspended/Suspending/Unsuspending → starved; Idle, Starting, Resetting, Completing, Complete → setup.
pub fn packml_category(name: &str) -> Option<StateCategory> {
    let key: String = name
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric())
        .map(|ch| ch.to_ascii_lowercase())
        .collect();
    Some(match key.as_str() {
        "execute" => StateCategory::Running,
        "held" | "holding" | "unholding" | "stopped" | "stopping" | "aborted" | "aborting"
        | "clearing" => StateCategory::UnplannedDown,
        "suspended" | "suspending" | "unsuspending" => StateCategory::Starved,
        "idle" | "starting" | "resetting" | "completing" | "complete" => StateCategory::Setup,
        _ => return None,
    })
}

/// The category that decides the bucket, from the published category, the raw name and the mode.
pub fn effective_category(
    map: StateMap,
    mode: Mode,
    category: StateCategory,
    name: Option<&str>,
) -> StateCategory {
    if mode == Mode::NoShift {
        return StateCategory::NotScheduled;
    }
    match (map, name.and_then(packml_category)) {
        (StateMap::PackMl, Some(mapped)) => mapped,
        _ => category,
    }
}

/// One stretch of one state, clipped to the window being computed.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSpan {
    /// Clipped start.
    pub start: i64,
    /// Clipped end.
    pub end: i64,
    /// The effective category.
    pub category: StateCategory,
    /// The loss reason: the state's reason, else its name, else the category.
    pub reason: String,
    /// The whole state's duration (unclipped; up to the time of calculation if it is still on).
    pub full_duration_ms: i64,
    /// The state's own start (unclipped), which identifies one occurrence.
    pub origin: i64,
}

/// A change of a quantity at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountDelta {
    /// Event time.
    pub at: i64,
    /// Which quantity.
    pub kind: Qty,
    /// Signed change.
    pub qty: f64,
    /// Whether it adds to PQ (counter deltas) or only moves quantity between kinds (reclassification).
    pub produced: bool,
}

/// The quantities OEE uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Qty {
    /// GQ.
    Good,
    /// Scrap.
    Scrap,
    /// Rework.
    Rework,
}

/// Accumulated times and counts of one window; sums of several [`Raw`] are a roll-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Raw {
    /// Length of the window (calendar time), ms.
    pub calendar_ms: i64,
    /// Buckets.
    pub times: TimeBuckets,
    /// Breakdowns: ADET that is not a minor stop.
    pub breakdowns_ms: u64,
    /// Good, scrap, rework.
    pub good: f64,
    /// Scrap.
    pub scrap: f64,
    /// Rework.
    pub rework: f64,
    /// Ideal time of scrap and rework outside the start-up window.
    pub defect_ideal_ms: f64,
    /// Ideal time of scrap and rework inside the start-up window.
    pub yield_ideal_ms: f64,
    /// Why ideal time is unknown (a produced quantity without an ideal rate).
    pub missing_ideal: Option<String>,
    /// Losses by (reason, category): duration and occurrences.
    pub losses: BTreeMap<(String, CategoryKey), (u64, u32)>,
    /// Time of the period before the first state of the asset whose time counts: not monitored, left
    /// out of every bucket and of the calendar time.
    pub unmonitored_ms: u64,
    /// The first instant that is monitored, when any is.
    pub monitored_from: Option<i64>,
}

/// A sortable stand-in for [`StateCategory`] in map keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CategoryKey(pub u8);

impl CategoryKey {
    /// The key of a category.
    pub fn of(category: StateCategory) -> Self {
        Self(
            ALL_CATEGORIES
                .iter()
                .position(|c| *c == category)
                .unwrap_or(0) as u8,
        )
    }

    /// The category back.
    pub fn category(self) -> StateCategory {
        ALL_CATEGORIES[usize::from(self.0)]
    }
}

const ALL_CATEGORIES: [StateCategory; 9] = [
    StateCategory::Running,
    StateCategory::MinorStop,
    StateCategory::UnplannedDown,
    StateCategory::Setup,
    StateCategory::PlannedDown,
    StateCategory::Starved,
    StateCategory::Blocked,
    StateCategory::NotScheduled,
    StateCategory::Unknown,
];

/// The rules a window is computed with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Minor-stop policy.
    pub policy: MinorStopPolicy,
    /// `unplanned_down` shorter than this is a minor stop.
    pub minor_stop_threshold_ms: i64,
    /// Scrap/rework this soon after a setup is reduced yield.
    pub startup_window_ms: i64,
}

fn to_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

/// Accumulates one window `[start, end)`: `planned` is the calendar inside it, `spans` cover it (clipped,
/// in order; time not covered counts as `unknown`), `deltas` are the count changes inside it, `ideal_ms`
/// gives the ideal cycle time at an instant, and `setup_ends` are the ends of setups (for reduced yield).
pub fn accumulate(
    window: (i64, i64),
    planned: &[(i64, i64, Planned)],
    spans: &[StateSpan],
    deltas: &[CountDelta],
    ideal_ms: &dyn Fn(i64) -> Result<f64, String>,
    setup_ends: &[i64],
    rules: Rules,
) -> Raw {
    let mut raw = Raw {
        calendar_ms: (window.1 - window.0).max(0),
        ..Raw::default()
    };
    let unknown_reason = "no state received";
    // Walk the planned stretches against the state spans (both sorted, not overlapping).
    let mut span_idx = 0;
    let mut last_origin: BTreeMap<(String, CategoryKey), i64> = BTreeMap::new();
    for &(plan_start, plan_end, plan) in planned {
        let mut cursor = plan_start;
        while cursor < plan_end {
            while span_idx < spans.len() && spans[span_idx].end <= cursor {
                span_idx += 1;
            }
            let (piece_end, span) = match spans.get(span_idx) {
                Some(span) if span.start <= cursor => (span.end.min(plan_end), Some(span)),
                Some(span) => (span.start.min(plan_end), None),
                None => (plan_end, None),
            };
            let ms = piece_end - cursor;
            let piece = match span {
                Some(span) => Piece {
                    category: span.category,
                    reason: span.reason.as_str(),
                    full_duration_ms: span.full_duration_ms,
                    origin: span.origin,
                },
                None => Piece {
                    category: StateCategory::Unknown,
                    reason: unknown_reason,
                    full_duration_ms: i64::MAX,
                    origin: i64::MIN,
                },
            };
            add(&mut raw, &mut last_origin, plan, piece, ms, rules);
            cursor = piece_end;
        }
    }
    raw.times.pbt_ms = raw.times.pot_ms - raw.times.pdt_ms;
    let mut ideal_total = 0.0;
    for delta in deltas {
        let ideal = match ideal_ms(delta.at) {
            Ok(ideal) => ideal,
            Err(why) => {
                if delta.produced && delta.qty != 0.0 && raw.missing_ideal.is_none() {
                    raw.missing_ideal = Some(why);
                }
                0.0
            }
        };
        match delta.kind {
            Qty::Good => raw.good += delta.qty,
            Qty::Scrap => raw.scrap += delta.qty,
            Qty::Rework => raw.rework += delta.qty,
        }
        if delta.produced {
            ideal_total += ideal * delta.qty;
        }
        if delta.kind != Qty::Good {
            let after_setup = setup_ends
                .iter()
                .rev()
                .find(|&&end| end <= delta.at)
                .is_some_and(|&end| delta.at - end < rules.startup_window_ms);
            if after_setup {
                raw.yield_ideal_ms += ideal * delta.qty;
            } else {
                raw.defect_ideal_ms += ideal * delta.qty;
            }
        }
        // A reclassification onto or off good is accounted on its other side: the scrap or rework delta
        // (negative when quantity leaves scrap) moves the defect time.
    }
    raw.times.ideal_ms = ideal_total;
    raw
}

/// The part of one state inside one planned stretch.
struct Piece<'a> {
    category: StateCategory,
    reason: &'a str,
    full_duration_ms: i64,
    origin: i64,
}

fn add(
    raw: &mut Raw,
    last_origin: &mut BTreeMap<(String, CategoryKey), i64>,
    plan: Planned,
    piece: Piece<'_>,
    ms: i64,
    rules: Rules,
) {
    let ums = to_u64(ms);
    let category = piece.category;
    let times = &mut raw.times;
    if matches!(category, StateCategory::NotScheduled) {
        return;
    }
    times.pot_ms += ums;
    if plan == Planned::Break || category == StateCategory::PlannedDown {
        times.pdt_ms += ums;
        return;
    }
    let minor = category == StateCategory::MinorStop
        || (category == StateCategory::UnplannedDown
            && piece.full_duration_ms < rules.minor_stop_threshold_ms);
    let loss_category = if minor {
        StateCategory::MinorStop
    } else {
        category
    };
    match category {
        _ if minor => {
            times.minor_stop_ms += ums;
            match rules.policy {
                MinorStopPolicy::Iso => times.adet_ms += ums,
                MinorStopPolicy::Tpm => times.apt_ms += ums,
            }
        }
        StateCategory::Running => times.apt_ms += ums,
        StateCategory::Setup => times.asut_ms += ums,
        StateCategory::UnplannedDown => {
            times.adet_ms += ums;
            raw.breakdowns_ms += ums;
        }
        StateCategory::Starved | StateCategory::Blocked => times.adot_ms += ums,
        _ => {
            times.adot_ms += ums;
            times.unknown_ms += ums;
        }
    }
    if category != StateCategory::Running {
        // One occurrence per state: a state split by a break or by the window still counts once.
        let key = (piece.reason.to_owned(), CategoryKey::of(loss_category));
        let new_occurrence = last_origin.insert(key.clone(), piece.origin) != Some(piece.origin);
        let entry = raw.losses.entry(key).or_insert((0, 0));
        entry.0 += ums;
        if new_occurrence {
            entry.1 += 1;
        }
    }
}

impl Raw {
    /// Adds `other` into `self` (a roll-up; time-weighted by construction).
    pub fn add(&mut self, other: &Raw) {
        self.calendar_ms += other.calendar_ms;
        let (a, b) = (&mut self.times, &other.times);
        a.pot_ms += b.pot_ms;
        a.pbt_ms += b.pbt_ms;
        a.apt_ms += b.apt_ms;
        a.asut_ms += b.asut_ms;
        a.adet_ms += b.adet_ms;
        a.adot_ms += b.adot_ms;
        a.pdt_ms += b.pdt_ms;
        a.minor_stop_ms += b.minor_stop_ms;
        a.unknown_ms += b.unknown_ms;
        a.ideal_ms += b.ideal_ms;
        self.breakdowns_ms += other.breakdowns_ms;
        self.good += other.good;
        self.scrap += other.scrap;
        self.rework += other.rework;
        self.defect_ideal_ms += other.defect_ideal_ms;
        self.yield_ideal_ms += other.yield_ideal_ms;
        if self.missing_ideal.is_none() {
            self.missing_ideal.clone_from(&other.missing_ideal);
        }
        self.unmonitored_ms += other.unmonitored_ms;
        self.monitored_from = match (self.monitored_from, other.monitored_from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (key, (ms, n)) in &other.losses {
            let entry = self.losses.entry(key.clone()).or_insert((0, 0));
            entry.0 += ms;
            entry.1 += n;
        }
    }

    /// PQ = good + scrap + rework.
    pub fn produced(&self) -> f64 {
        self.good + self.scrap + self.rework
    }
}

/// The KPIs of a [`Raw`], unrounded, with the reason for every `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kpis {
    /// APT / PBT.
    pub availability: Option<f64>,
    /// ideal × PQ / APT.
    pub performance: Option<f64>,
    /// GQ / PQ.
    pub quality: Option<f64>,
    /// A × E × Q.
    pub oee: Option<f64>,
    /// APT / (PBT − ASUT) × E × Q.
    pub nee: Option<f64>,
    /// OEE × utilisation.
    pub teep: Option<f64>,
    /// PBT / calendar time.
    pub utilisation: Option<f64>,
    /// APT / (APT + ADET).
    pub technical_efficiency: Option<f64>,
    /// ASUT / PBT.
    pub setup_ratio: Option<f64>,
    /// Scrap / PQ.
    pub scrap_ratio: Option<f64>,
    /// Rework / PQ.
    pub rework_ratio: Option<f64>,
    /// Field name → why it is `None`.
    pub null_reasons: BTreeMap<String, String>,
    /// The six big losses.
    pub six_big_losses: SixBigLosses,
}

/// Computes the KPIs of `raw`.
pub fn kpis(raw: &Raw, policy: MinorStopPolicy) -> Kpis {
    let t = &raw.times;
    let mut reasons = BTreeMap::new();
    fn ratio_into(
        reasons: &mut BTreeMap<String, String>,
        field: &str,
        num: f64,
        den: f64,
        why: &str,
    ) -> Option<f64> {
        if den > 0.0 {
            Some(num / den)
        } else {
            reasons.insert(field.to_owned(), why.to_owned());
            None
        }
    }
    let ratio =
        |reasons: &mut BTreeMap<String, String>, field: &str, num: f64, den: f64, why: &str| {
            ratio_into(reasons, field, num, den, why)
        };
    let pq = raw.produced();
    let (apt, pbt, asut, adet) = (
        t.apt_ms as f64,
        t.pbt_ms as f64,
        t.asut_ms as f64,
        t.adet_ms as f64,
    );
    let no_pbt = if raw.unmonitored_ms > 0 && raw.monitored_from.is_none() {
        "PBT is 0: no state received for the period (time before an asset's first state is not monitored)"
    } else {
        "PBT is 0: no planned busy time in the period"
    };
    let availability = ratio(&mut reasons, "availability", apt, pbt, no_pbt);
    let performance = match &raw.missing_ideal {
        Some(why) => {
            reasons.insert("performance".to_owned(), why.clone());
            None
        }
        None => ratio(
            &mut reasons,
            "performance",
            t.ideal_ms,
            apt,
            "APT is 0: no production time in the period",
        ),
    };
    let quality = ratio(
        &mut reasons,
        "quality",
        raw.good,
        pq,
        "PQ is 0: nothing produced in the period",
    );
    let scrap_ratio = ratio(
        &mut reasons,
        "scrap_ratio",
        raw.scrap,
        pq,
        "PQ is 0: nothing produced in the period",
    );
    let rework_ratio = ratio(
        &mut reasons,
        "rework_ratio",
        raw.rework,
        pq,
        "PQ is 0: nothing produced in the period",
    );
    let no_calendar = if raw.monitored_from.is_none() && raw.unmonitored_ms > 0 {
        no_pbt
    } else {
        "the period has no calendar time"
    };
    let utilisation = ratio(
        &mut reasons,
        "utilisation",
        pbt,
        raw.calendar_ms as f64,
        no_calendar,
    );
    let technical_efficiency = ratio(
        &mut reasons,
        "technical_efficiency",
        apt,
        apt + adet,
        "APT + ADET is 0: no production or breakdown time",
    );
    let setup_ratio = ratio(&mut reasons, "setup_ratio", asut, pbt, no_pbt);
    let net_availability = ratio(
        &mut reasons,
        "nee",
        apt,
        pbt - asut,
        "PBT − ASUT is 0: no planned busy time besides setup",
    );
    let product =
        |factors: &[Option<f64>]| factors.iter().try_fold(1.0, |acc, f| f.map(|f| acc * f));
    let oee = product(&[availability, performance, quality]);
    let nee = product(&[net_availability, performance, quality]);
    let teep = oee.zip(utilisation).map(|(oee, u)| oee * u);
    for (field, value) in [("oee", oee), ("nee", nee), ("teep", teep)] {
        if value.is_none() && !reasons.contains_key(field) {
            reasons.insert(field.to_owned(), "a factor is null".to_owned());
        }
    }
    let minor_in_apt = match policy {
        MinorStopPolicy::Tpm => t.minor_stop_ms as f64,
        MinorStopPolicy::Iso => 0.0,
    };
    Kpis {
        availability,
        performance,
        quality,
        oee,
        nee,
        teep,
        utilisation,
        technical_efficiency,
        setup_ratio,
        scrap_ratio,
        rework_ratio,
        null_reasons: reasons,
        six_big_losses: SixBigLosses {
            breakdowns_ms: raw.breakdowns_ms,
            setup_ms: t.asut_ms,
            minor_stops_ms: t.minor_stop_ms,
            speed_ms: apt - minor_in_apt - t.ideal_ms,
            defects_ms: raw.defect_ideal_ms,
            reduced_yield_ms: raw.yield_ideal_ms,
        },
    }
}
