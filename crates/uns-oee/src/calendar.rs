//! The shift calendar: shifts, breaks (planned downtime) and non-working days in a site's IANA time zone,
//! turned into UTC instants. Daylight saving is the zone's: a night shift on the autumn change lasts an hour
//! longer, on the spring change an hour shorter; a local time that does not exist is moved past the gap.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// One shift of the calendar, in local minutes of the day it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    /// The shift's name, a valid period id part, e.g. `early`.
    pub name: String,
    /// Local start, minutes after midnight.
    pub start_min: u32,
    /// Local end in minutes after the start day's midnight (> `start_min`; beyond 1440 ends the next day).
    pub end_min: u32,
    /// Breaks as `(start, end)` in the same minutes as `end_min`, inside the shift.
    pub breaks: Vec<(u32, u32)>,
}

/// A validated shift calendar in one time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// The calendar's name, e.g. `demo`.
    pub name: String,
    /// The zone days and shifts are cut in.
    pub tz: Tz,
    /// The shifts of a working day, in start order.
    pub shifts: Vec<Shift>,
    /// Working weekdays, Monday = index 0.
    pub working_days: [bool; 7],
    /// Dates (local) without any shift.
    pub non_working_dates: BTreeSet<NaiveDate>,
}

/// One shift on one date, in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftInstance {
    /// `YYYY-MM-DD.{name}` with the local date the shift starts on.
    pub id: String,
    /// Start (inclusive).
    pub start: i64,
    /// End (exclusive).
    pub end: i64,
    /// Breaks, clipped to the shift, sorted.
    pub breaks: Vec<(i64, i64)>,
}

/// What the calendar plans for a stretch of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    /// Shift time: part of the planned operation time.
    Work,
    /// A break: planned downtime.
    Break,
}

/// A period cut by the calendar: id and `[start, end)` in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The period id as it appears in the topic.
    pub id: String,
    /// Start (inclusive).
    pub start: i64,
    /// End (exclusive).
    pub end: i64,
}

const MS_PER_MIN: i64 = 60_000;
const MS_PER_HOUR: i64 = 3_600_000;

impl Calendar {
    /// The calendar's label in results, `name@zone`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.tz.name())
    }

    /// The UTC instant of `minutes` after local midnight of `date` (may exceed a day). A local time in a DST
    /// gap is moved forward by the gap; an ambiguous one takes the earlier instant.
    pub fn instant(&self, date: NaiveDate, minutes: u32) -> i64 {
        let local =
            NaiveDateTime::new(date, NaiveTime::MIN) + Duration::minutes(i64::from(minutes));
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(at) => at.timestamp_millis(),
            LocalResult::Ambiguous(earliest, _) => earliest.timestamp_millis(),
            LocalResult::None => {
                // In a gap: read the local time with the offset in force before the gap, so 02:30 on a
                // spring-forward night becomes 03:30 and a 30-minute break stays 30 minutes.
                use chrono::Offset;
                let before = local.and_utc() - Duration::hours(6);
                let offset = self.tz.offset_from_utc_datetime(&before.naive_utc()).fix();
                (local.and_utc() - Duration::seconds(i64::from(offset.local_minus_utc())))
                    .timestamp_millis()
            }
        }
    }

    fn local_date(&self, at: i64) -> NaiveDate {
        self.tz.from_utc_datetime(&utc(at).naive_utc()).date_naive()
    }

    fn is_working(&self, date: NaiveDate) -> bool {
        let weekday = date.weekday().num_days_from_monday() as usize;
        self.working_days[weekday] && !self.non_working_dates.contains(&date)
    }

    /// Every shift instance overlapping `[from, to)`, in time order.
    pub fn shifts_between(&self, from: i64, to: i64) -> Vec<ShiftInstance> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        let first = self.local_date(from) - Duration::days(2);
        let last = self.local_date(to);
        let mut date = first;
        while date <= last {
            if self.is_working(date) {
                for shift in &self.shifts {
                    let start = self.instant(date, shift.start_min);
                    let end = self.instant(date, shift.end_min);
                    if end > from && start < to && end > start {
                        let breaks = shift
                            .breaks
                            .iter()
                            .map(|&(a, b)| {
                                (
                                    self.instant(date, a).max(start),
                                    self.instant(date, b).min(end),
                                )
                            })
                            .filter(|(a, b)| a < b)
                            .collect();
                        out.push(ShiftInstance {
                            id: format!("{}.{}", date.format("%Y-%m-%d"), shift.name),
                            start,
                            end,
                            breaks,
                        });
                    }
                }
            }
            date += Duration::days(1);
        }
        out.sort_by_key(|shift| shift.start);
        out
    }

    /// The shift running at `at`, if any.
    pub fn shift_at(&self, at: i64) -> Option<ShiftInstance> {
        self.shifts_between(at, at + 1).into_iter().next()
    }

    /// The first shift that ends after `at` (the running one or the next), looking up to 14 days ahead.
    pub fn shift_after(&self, at: i64) -> Option<ShiftInstance> {
        self.shifts_between(at, at + 14 * 24 * MS_PER_HOUR)
            .into_iter()
            .find(|shift| shift.end > at)
    }

    /// The planned stretches inside `[from, to)`: shift time and breaks, sorted, not overlapping. Time
    /// outside them is outside the planned operation time.
    pub fn planned(&self, from: i64, to: i64) -> Vec<(i64, i64, Planned)> {
        let mut out = Vec::new();
        for shift in self.shifts_between(from, to) {
            let mut cursor = shift.start.max(from);
            let end = shift.end.min(to);
            for &(a, b) in &shift.breaks {
                let (a, b) = (a.max(cursor), b.min(end));
                if a >= b {
                    continue;
                }
                if cursor < a {
                    out.push((cursor, a, Planned::Work));
                }
                out.push((a, b, Planned::Break));
                cursor = b;
            }
            if cursor < end {
                out.push((cursor, end, Planned::Work));
            }
        }
        // Overlapping shifts (a calendar mistake) are clipped so no time counts twice.
        let mut clipped: Vec<(i64, i64, Planned)> = Vec::with_capacity(out.len());
        for (a, b, kind) in out {
            let a = clipped
                .last()
                .map_or(a, |&(_, last_end, _)| a.max(last_end));
            if a < b {
                clipped.push((a, b, kind));
            }
        }
        clipped
    }

    /// The local calendar day containing `at` (23 or 25 hours long on DST changes).
    pub fn day(&self, at: i64) -> Window {
        let date = self.local_date(at);
        Window {
            id: date.format("%Y-%m-%d").to_string(),
            start: self.instant(date, 0),
            end: self.instant(date + Duration::days(1), 0),
        }
    }

    /// The local clock hour containing `at`. The hour repeated when clocks go back gets the id suffix `.2`.
    pub fn hour(&self, at: i64) -> Window {
        let offset_ms = self.offset_ms(at);
        let local_ms = at + offset_ms;
        let start = at - local_ms.rem_euclid(MS_PER_HOUR);
        let local = utc(start + offset_ms).naive_utc();
        let first_instant = match self.tz.from_local_datetime(&local) {
            LocalResult::Ambiguous(earliest, _) => earliest.timestamp_millis(),
            _ => start,
        };
        let suffix = if first_instant != start { ".2" } else { "" };
        Window {
            id: format!("{}{suffix}", local.format("%Y-%m-%dt%H")),
            start,
            end: start + MS_PER_HOUR,
        }
    }

    fn offset_ms(&self, at: i64) -> i64 {
        use chrono::Offset;
        let local = self.tz.from_utc_datetime(&utc(at).naive_utc());
        i64::from(local.offset().fix().local_minus_utc()) * 1000
    }
}

fn utc(at: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(at).single().unwrap_or_default()
}

/// Parses `HH:MM` into minutes after midnight (`24:00` allowed).
pub fn parse_hhmm(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (minutes < 60 && (hours < 24 || (hours == 24 && minutes == 0))).then_some(hours * 60 + minutes)
}

/// Milliseconds in `minutes`.
pub fn minutes_ms(minutes: i64) -> i64 {
    minutes * MS_PER_MIN
}
