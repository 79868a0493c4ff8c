//! The `[oee]` config section as written ([`OeeConfig`], serde defaults) and its validated form
//! ([`Settings`]), built by [`Settings::try_from`] before anything starts.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uns_model::payload::MinorStopPolicy;
use uns_model::topic::{Id, Location};

use crate::calendar::{Calendar, Shift, parse_hhmm};
use crate::iso22400::StateMap;

/// The `[oee]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OeeConfig {
    /// `_oee/current/...` is re-published at most this often per scope, in seconds.
    pub publish_interval_s: u64,
    /// A period closes when event time passes its end plus this grace, in seconds.
    pub grace_s: u64,
    /// `iso22400` (minor stops are availability loss) or `tpm` (performance loss).
    pub minor_stop_policy: MinorStopPolicy,
    /// An `unplanned_down` stretch shorter than this is a minor stop, in seconds (0: only `minor_stop`).
    pub minor_stop_threshold_s: u64,
    /// Scrap and rework within this time after a setup ends are reduced yield, not defects, in seconds.
    pub startup_window_s: u64,
    /// How long events and closed periods are kept for late corrections, in hours.
    pub retain_h: u64,
    /// After this many stored inputs the service writes a snapshot of the engine and deletes the
    /// inputs it covers (so a restart replays at most this many).
    pub snapshot_every_inputs: u64,
    /// The calendar of a site without an entry in `sites`.
    pub default_calendar: String,
    /// The time zone of a site without an entry in `sites`.
    pub default_time_zone: String,
    /// Shift calendars by name.
    pub calendars: BTreeMap<String, CalendarConfig>,
    /// Per site (`enterprise/site`): calendar and time zone.
    pub sites: Vec<SiteConfig>,
    /// Lines: where their quantities and their time come from.
    pub lines: Vec<LineConfig>,
    /// Assets whose raw state names are mapped by a named map (`packml`) instead of the published category.
    pub state_maps: Vec<AssetStateMap>,
}

/// A shift calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// The shifts of a working day.
    pub shifts: Vec<ShiftConfig>,
    /// Working weekdays: `mon`..`sun`; all seven when absent.
    #[serde(default = "all_days")]
    pub working_days: Vec<String>,
    /// Local dates without shifts, `YYYY-MM-DD`.
    #[serde(default)]
    pub non_working_dates: Vec<String>,
}

/// One shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftConfig {
    /// Name (period id part), e.g. `early`.
    pub name: String,
    /// Local start `HH:MM`.
    pub start: String,
    /// Local end `HH:MM`; at or before the start means the next day.
    pub end: String,
    /// Breaks (planned downtime).
    #[serde(default)]
    pub breaks: Vec<BreakConfig>,
}

/// A break inside a shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakConfig {
    /// Local start `HH:MM`.
    pub start: String,
    /// Local end `HH:MM`.
    pub end: String,
}

/// A site's calendar and zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// `enterprise/site`.
    pub path: String,
    /// IANA zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// A key of `calendars`.
    pub calendar: String,
}

/// A line and its counting and bottleneck cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// The line's location.
    pub path: String,
    /// The cell whose counts are the line's quantities (usually the last).
    pub counting_cell: String,
    /// The cell whose time buckets are the line's time (the bottleneck).
    pub bottleneck_cell: String,
}

/// A named state map for one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetStateMap {
    /// The asset's location.
    pub path: String,
    /// `packml` (by state name) or `category` (the published category, the default).
    pub state_map: String,
}

fn all_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .map(str::to_owned)
        .to_vec()
}

impl Default for OeeConfig {
    fn default() -> Self {
        let shift =
            |name: &str, start: &str, end: &str, break_start: &str, break_end: &str| ShiftConfig {
                name: name.to_owned(),
                start: start.to_owned(),
                end: end.to_owned(),
                breaks: vec![BreakConfig {
                    start: break_start.to_owned(),
                    end: break_end.to_owned(),
                }],
            };
        let demo = CalendarConfig {
            shifts: vec![
                shift("early", "06:00", "14:00", "10:00", "10:30"),
                shift("late", "14:00", "22:00", "18:00", "18:30"),
                shift("night", "22:00", "06:00", "02:00", "02:30"),
            ],
            working_days: all_days(),
            non_working_dates: Vec::new(),
        };
        Self {
            publish_interval_s: 5,
            grace_s: 60,
            minor_stop_policy: MinorStopPolicy::Iso,
            minor_stop_threshold_s: 120,
            startup_window_s: 0,
            retain_h: 48,
            snapshot_every_inputs: 100_000,
            default_calendar: "demo".to_owned(),
            default_time_zone: "UTC".to_owned(),
            calendars: [("demo".to_owned(), demo)].into(),
            // The demo plant: its site in Berlin time, its two lines.
            sites: vec![SiteConfig {
                path: "acme/berlin".to_owned(),
                time_zone: "Europe/Berlin".to_owned(),
                calendar: "demo".to_owned(),
            }],
            lines: vec![
                LineConfig {
                    path: "acme/berlin/packaging/line-1".to_owned(),
                    counting_cell: "labeler".to_owned(),
                    bottleneck_cell: "capper".to_owned(),
                },
                LineConfig {
                    path: "acme/berlin/packaging/line-2".to_owned(),
                    counting_cell: "case-packer".to_owned(),
                    bottleneck_cell: "case-packer".to_owned(),
                },
            ],
            state_maps: Vec::new(),
        }
    }
}

/// A config value that cannot be used, with the key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The offending key, e.g. `calendars.demo.shifts[0].start`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError {
        key: key.into(),
        message: message.into(),
    }
}

/// A line, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The line's location.
    pub path: Location,
    /// Quantities come from here.
    pub counting_cell: Location,
    /// Time comes from here.
    pub bottleneck_cell: Location,
}

/// The validated settings the engine runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// See [`OeeConfig::publish_interval_s`], in milliseconds.
    pub publish_interval_ms: i64,
    /// See [`OeeConfig::grace_s`], in milliseconds.
    pub grace_ms: i64,
    /// Minor-stop policy.
    pub policy: MinorStopPolicy,
    /// In milliseconds.
    pub minor_stop_threshold_ms: i64,
    /// In milliseconds.
    pub startup_window_ms: i64,
    /// In milliseconds.
    pub retain_ms: i64,
    /// See [`OeeConfig::snapshot_every_inputs`].
    pub snapshot_every_inputs: u64,
    /// Whether count samples of closed hours are merged (see `Engine` compaction; always on from a
    /// config, off only to check that merging changes no result).
    pub compact_counts: bool,
    /// The calendar of sites without their own.
    pub default_calendar: Calendar,
    /// Per site.
    pub sites: BTreeMap<Location, Calendar>,
    /// Lines.
    pub lines: Vec<Line>,
    /// Per-asset state maps.
    pub state_maps: BTreeMap<Location, StateMap>,
}

fn location(key: &str, text: &str) -> Result<Location, SettingsError> {
    Location::from_str(text).map_err(|err| bad(key, format!("`{text}` is not a location: {err}")))
}

fn zone(key: &str, text: &str) -> Result<Tz, SettingsError> {
    Tz::from_str(text).map_err(|_| bad(key, format!("`{text}` is not an IANA time zone")))
}

fn calendar(name: &str, config: &CalendarConfig, tz: Tz) -> Result<Calendar, SettingsError> {
    let key = format!("calendars.{name}");
    let mut shifts = Vec::new();
    for (idx, shift) in config.shifts.iter().enumerate() {
        let key = format!("{key}.shifts[{idx}]");
        Id::new(&shift.name).map_err(|err| bad(format!("{key}.name"), err.to_string()))?;
        let hhmm = |field: &str, text: &str| {
            parse_hhmm(text)
                .ok_or_else(|| bad(format!("{key}.{field}"), format!("`{text}` is not HH:MM")))
        };
        let start_min = hhmm("start", &shift.start)?;
        if start_min >= 1440 {
            return Err(bad(format!("{key}.start"), "a shift starts before 24:00"));
        }
        let mut end_min = hhmm("end", &shift.end)?;
        if end_min <= start_min {
            end_min += 1440;
        }
        let mut breaks = Vec::new();
        for (break_idx, brk) in shift.breaks.iter().enumerate() {
            let key = format!("{key}.breaks[{break_idx}]");
            let mut a = hhmm("start", &brk.start).map_err(|err| bad(&key, err.message))?;
            let mut b = hhmm("end", &brk.end).map_err(|err| bad(&key, err.message))?;
            if a < start_min {
                a += 1440;
            }
            while b <= a {
                b += 1440;
            }
            if a < start_min || b > end_min {
                return Err(bad(key, "the break is not inside its shift"));
            }
            breaks.push((a, b));
        }
        breaks.sort_unstable();
        shifts.push(Shift {
            name: shift.name.clone(),
            start_min,
            end_min,
            breaks,
        });
    }
    shifts.sort_by_key(|shift| shift.start_min);
    let mut working_days = [false; 7];
    for day in &config.working_days {
        let idx = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .position(|name| name == day)
            .ok_or_else(|| {
                bad(
                    format!("{key}.working_days"),
                    format!("`{day}` is not mon..sun"),
                )
            })?;
        working_days[idx] = true;
    }
    let mut non_working_dates = BTreeSet::new();
    for date in &config.non_working_dates {
        let parsed = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
            bad(
                format!("{key}.non_working_dates"),
                format!("`{date}` is not YYYY-MM-DD"),
            )
        })?;
        non_working_dates.insert(parsed);
    }
    Ok(Calendar {
        name: name.to_owned(),
        tz,
        shifts,
        working_days,
        non_working_dates,
    })
}

impl TryFrom<&OeeConfig> for Settings {
    type Error = SettingsError;

    fn try_from(config: &OeeConfig) -> Result<Self, SettingsError> {
        if config.publish_interval_s == 0 {
            return Err(bad("publish_interval_s", "must be at least 1"));
        }
        if config.retain_h < 25 {
            return Err(bad(
                "retain_h",
                "must be at least 25 (a whole day and its grace)",
            ));
        }
        if config.snapshot_every_inputs == 0 {
            return Err(bad("snapshot_every_inputs", "must be at least 1"));
        }
        let find = |key: &str, name: &str| {
            config
                .calendars
                .get(name)
                .ok_or_else(|| bad(key, format!("no calendar `{name}` in calendars")))
        };
        let default_tz = zone("default_time_zone", &config.default_time_zone)?;
        let default_calendar = calendar(
            &config.default_calendar,
            find("default_calendar", &config.default_calendar)?,
            default_tz,
        )?;
        let mut sites = BTreeMap::new();
        for (idx, site) in config.sites.iter().enumerate() {
            let key = format!("sites[{idx}]");
            let path = location(&format!("{key}.path"), &site.path)?;
            if path.depth() != 2 {
                return Err(bad(format!("{key}.path"), "a site is `enterprise/site`"));
            }
            let tz = zone(&format!("{key}.time_zone"), &site.time_zone)?;
            let found = find(&format!("{key}.calendar"), &site.calendar)?;
            sites.insert(path, calendar(&site.calendar, found, tz)?);
        }
        let mut lines = Vec::new();
        for (idx, line) in config.lines.iter().enumerate() {
            let key = format!("lines[{idx}]");
            let path = location(&format!("{key}.path"), &line.path)?;
            let cell = |field: &str, text: &str| -> Result<Location, SettingsError> {
                let key = format!("{key}.{field}");
                // A bare name is a cell of the line; a path is taken as it is.
                let cell = if text.contains('/') {
                    location(&key, text)?
                } else {
                    location(&key, &format!("{path}/{text}"))?
                };
                if !path.contains(&cell) || cell == path {
                    return Err(bad(
                        key,
                        format!("`{cell}` is not a cell of the line `{path}`"),
                    ));
                }
                Ok(cell)
            };
            let counting_cell = cell("counting_cell", &line.counting_cell)?;
            let bottleneck_cell = cell("bottleneck_cell", &line.bottleneck_cell)?;
            lines.push(Line {
                path,
                counting_cell,
                bottleneck_cell,
            });
        }
        let mut state_maps = BTreeMap::new();
        for (idx, map) in config.state_maps.iter().enumerate() {
            let key = format!("state_maps[{idx}]");
            let path = location(&format!("{key}.path"), &map.path)?;
            let state_map = StateMap::from_name(&map.state_map).ok_or_else(|| {
                bad(
                    format!("{key}.state_map"),
                    format!("`{}` is not `category` or `packml`", map.state_map),
                )
            })?;
            state_maps.insert(path, state_map);
        }
        let secs = |value: u64| i64::try_from(value.saturating_mul(1000)).unwrap_or(i64::MAX);
        Ok(Self {
            publish_interval_ms: secs(config.publish_interval_s),
            grace_ms: secs(config.grace_s),
            policy: config.minor_stop_policy,
            minor_stop_threshold_ms: secs(config.minor_stop_threshold_s),
            startup_window_ms: secs(config.startup_window_s),
            retain_ms: secs(config.retain_h.saturating_mul(3600)),
            snapshot_every_inputs: config.snapshot_every_inputs,
            compact_counts: true,
            default_calendar,
            sites,
            lines,
            state_maps,
        })
    }
}

impl Settings {
    /// The calendar of the site `location` belongs to.
    pub fn calendar_for(&self, location: &Location) -> &Calendar {
        location
            .ancestors()
            .find_map(|ancestor| self.sites.get(&ancestor))
            .unwrap_or(&self.default_calendar)
    }
}
