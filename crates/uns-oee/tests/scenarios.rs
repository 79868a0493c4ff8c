//! The scenarios of issue 12, each with its arithmetic.

use proptest::prelude::*;
use uns_model::payload::{MinorStopPolicy, StateCategory::*};
use uns_model::topic::{CountKind::*, OeePeriodKind::*, UnsTopic};
use uns_oee::engine::Engine;
use uns_oee::input;
use uuid::Uuid;

use crate::support::*;

const SHIFT: &str = "2026-03-02.early";

/// Eight hours of shift with a 30-minute break, running throughout at 60/h ideal, 400 good parts.
#[test]
fn full_shift_with_a_break() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.count(FILLER, Good, 150.0, at("09:00"));
    plant.count(FILLER, Good, 400.0, at("13:59"));
    plant.tick(at("14:00:59"));
    assert!(
        plant.versions(FILLER, Shift, SHIFT).is_empty(),
        "closed before the grace passed"
    );
    plant.tick(at("14:01"));

    let shift = plant.closed(FILLER, Shift, SHIFT);
    let (pot, pdt) = (min(480.0), min(30.0));
    let pbt = pot - pdt;
    let apt = pbt;
    let ideal = 400.0 * min(1.0);
    assert_eq!(shift.times.pot_ms as f64, pot);
    assert_eq!(shift.times.pdt_ms as f64, pdt);
    assert_eq!(shift.times.apt_ms as f64, apt);
    close4(shift.availability, apt / pbt);
    close4(shift.performance, ideal / apt); // 0.8889
    close4(shift.quality, 400.0 / 400.0);
    close4(shift.oee, (apt / pbt) * (ideal / apt) * 1.0);
    close4(shift.utilisation, pbt / min(480.0)); // the shift window is 8 h of calendar time
    assert!(shift.is_final);
    assert_eq!(shift.version, 1);
    assert_eq!(shift.minor_stop_policy, MinorStopPolicy::Iso);
    assert_eq!(shift.calendar.as_deref(), Some("one@UTC"));
    check_invariants(&shift);
    // Hours: 10:00-11:00 holds the break.
    let hour = plant.closed(FILLER, Hour, "2026-03-02t10");
    assert_eq!(hour.times.pdt_ms as f64, min(30.0));
    close4(hour.availability, 1.0);
    assert_eq!(
        plant.versions(FILLER, Shift, SHIFT).len(),
        1,
        "published once"
    );
}

/// A changeover, a jam, a starved stretch, scrap and rework.
#[test]
fn changeover_jam_scrap_and_rework() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Setup, "changeover A to B");
    plant.state(FILLER, at("06:45"), Running, "Execute");
    plant.state(FILLER, at("09:00"), UnplannedDown, "Jam at infeed");
    plant.state(FILLER, at("09:20"), Running, "Execute");
    plant.state(FILLER, at("11:00"), Starved, "No bottles");
    plant.state(FILLER, at("11:10"), Running, "Execute");
    plant.count(FILLER, Scrap, 10.0, at("12:00"));
    plant.count(FILLER, Rework, 5.0, at("12:30"));
    plant.count(FILLER, Good, 300.0, at("13:00"));
    plant.count(FILLER, Good, 350.0, at("13:59"));
    plant.tick(at("14:01"));

    let r = plant.closed(FILLER, Shift, SHIFT);
    let pbt = min(480.0 - 30.0);
    let (asut, adet, adot) = (min(45.0), min(20.0), min(10.0));
    // Running: 06:45-09:00 (135) + 09:20-11:00 minus the break (70) + 11:10-14:00 (170) = 375 min.
    let apt = min(135.0 + 70.0 + 170.0);
    assert_eq!(apt, pbt - asut - adet - adot);
    let (gq, pq) = (350.0, 350.0 + 10.0 + 5.0);
    let ideal = pq * min(1.0);
    assert_eq!(r.times.asut_ms as f64, asut);
    assert_eq!(r.times.adet_ms as f64, adet);
    assert_eq!(r.times.adot_ms as f64, adot);
    assert_eq!(r.times.apt_ms as f64, apt);
    close4(r.availability, apt / pbt); // 0.8333
    close4(r.performance, ideal / apt); // 0.9733
    close4(r.quality, gq / pq); // 0.9589
    close4(r.oee, (apt / pbt) * (ideal / apt) * (gq / pq)); // = 350 min / 450 min = 0.7778
    close4(r.scrap_ratio, 10.0 / pq);
    close4(r.rework_ratio, 5.0 / pq);
    close4(r.setup_ratio, asut / pbt);
    close4(r.technical_efficiency, apt / (apt + adet));
    close4(r.nee, apt / (pbt - asut) * (ideal / apt) * (gq / pq));
    assert_eq!(r.counts.produced.qty, pq);
    let big = r.six_big_losses;
    assert_eq!(big.setup_ms as f64, asut);
    assert_eq!(big.breakdowns_ms as f64, adet);
    assert_eq!(big.speed_ms, apt - ideal);
    assert_eq!(big.defects_ms, 15.0 * min(1.0));
    // Losses by reason, largest first.
    let reasons: Vec<(&str, u64, u32)> = r
        .losses
        .iter()
        .map(|l| (l.reason.as_str(), l.duration_ms, l.occurrences))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("changeover A to B", min(45.0) as u64, 1),
            ("Jam at infeed", min(20.0) as u64, 1),
            ("No bottles", min(10.0) as u64, 1),
        ]
    );
    check_invariants(&r);
}

/// Ten 1-minute jams (below the 2-minute threshold) and one 5-minute breakdown, under both policies:
/// the minor stops move between availability and performance, OEE stays the same.
#[test]
fn minor_stops_under_both_policies() {
    let run = |policy: &str| {
        let mut plant = Plant::new(&format!("minor_stop_policy = \"{policy}\"\n{ONE_SHIFT}"));
        plant.rate(FILLER, 60.0);
        plant.zero_counts(FILLER, at("06:00"));
        plant.state(FILLER, at("06:00"), Running, "Execute");
        for n in 0..10 {
            let hour = 7 + n / 5;
            let minute = (n % 5) * 10;
            plant.state(
                FILLER,
                at(&format!("{hour:02}:{minute:02}")),
                UnplannedDown,
                "micro-jam",
            );
            plant.state(
                FILLER,
                at(&format!("{hour:02}:{:02}", minute + 1)),
                Running,
                "Execute",
            );
        }
        plant.state(FILLER, at("12:00"), UnplannedDown, "Motor trip");
        plant.state(FILLER, at("12:05"), Running, "Execute");
        plant.count(FILLER, Good, 420.0, at("13:59"));
        plant.tick(at("14:01"));
        plant.closed(FILLER, Shift, SHIFT)
    };
    let pbt = min(450.0);
    let ideal = 420.0 * min(1.0);
    let (minor, breakdown) = (min(10.0), min(5.0));

    let iso = run("iso22400");
    let apt_iso = pbt - minor - breakdown;
    assert_eq!(iso.minor_stop_policy, MinorStopPolicy::Iso);
    assert_eq!(iso.times.minor_stop_ms as f64, minor);
    assert_eq!(iso.times.adet_ms as f64, minor + breakdown);
    close4(iso.availability, apt_iso / pbt); // 0.9667
    close4(iso.performance, ideal / apt_iso); // 0.9655

    let tpm = run("tpm");
    let apt_tpm = pbt - breakdown;
    assert_eq!(tpm.minor_stop_policy, MinorStopPolicy::Tpm);
    assert_eq!(tpm.times.adet_ms as f64, breakdown);
    close4(tpm.availability, apt_tpm / pbt); // 0.9889
    close4(tpm.performance, ideal / apt_tpm); // 0.9438

    close4(iso.oee, ideal / pbt);
    close4(tpm.oee, ideal / pbt);
    for r in [&iso, &tpm] {
        assert_eq!(r.six_big_losses.minor_stops_ms as f64, minor);
        assert_eq!(r.six_big_losses.breakdowns_ms as f64, breakdown);
        let micro = r
            .losses
            .iter()
            .find(|l| l.reason == "micro-jam")
            .expect("listed");
        assert_eq!((micro.occurrences, micro.category), (10, MinorStop));
        check_invariants(r);
    }
}

/// A stop still running when its period closes: the shift closes at 14:01 with the jam of 13:59:30 as
/// its last state, taken up to the shift's end (30 s, shorter than the 120 s threshold: a minor stop).
/// The jam ends at 14:05 (5.5 minutes: a breakdown), so the shift is published again as version 2 with
/// those 30 s moved from minor stops to breakdowns and the reason naming the state that ended it;
/// availability is unchanged under `iso22400` (both are ADET).
#[test]
fn a_stop_running_at_the_close_is_reclassified_when_it_ends() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.count(FILLER, Good, 400.0, at("13:59"));
    plant.state(FILLER, at("13:59:30"), UnplannedDown, "Jam");
    plant.tick(at("14:01"));
    let first = plant.closed(FILLER, Shift, SHIFT);
    let jam = 30_000.0;
    assert_eq!(first.version, 1);
    assert_eq!(first.times.minor_stop_ms as f64, jam);
    assert_eq!(first.six_big_losses.breakdowns_ms, 0);
    plant.state(FILLER, at("14:05"), Running, "Execute");
    let versions = plant.versions(FILLER, Shift, SHIFT);
    assert_eq!(versions.len(), 2);
    let second = &versions[1];
    assert_eq!((second.version, second.corrects), (2, Some(1)));
    assert!(
        second
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("ended the stop `Jam`")),
        "{:?}",
        second.reason
    );
    assert_eq!(second.times.minor_stop_ms, 0);
    assert_eq!(second.six_big_losses.breakdowns_ms as f64, jam);
    assert_eq!(second.times.adet_ms as f64, jam);
    let pbt = min(450.0);
    close4(second.availability, (pbt - jam) / pbt); // 0.9989
    close4(second.availability, first.availability.expect("A"));
    check_invariants(second);
}

/// A counter that drops is a reset: it counts again from zero, nothing is lost or subtracted.
#[test]
fn counter_reset() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.count(FILLER, Good, 200.0, at("09:00"));
    plant.count(FILLER, Good, 50.0, at("10:40")); // reset: 50 since the restart
    plant.count(FILLER, Good, 150.0, at("13:00"));
    // The same sample again (at-least-once delivery) applies once.
    assert!(plant.count(FILLER, Good, 150.0, at("13:00")).duplicate);
    plant.tick(at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    assert_eq!(r.counts.good.qty, 200.0 + 50.0 + (150.0 - 50.0));
    close4(r.performance, 350.0 * min(1.0) / min(450.0));
    check_invariants(&r);
}

/// A reclassification good → scrap that occurred in a closed shift and arrives late gives version 2.
#[test]
fn late_reclassification_publishes_version_2() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.count(FILLER, Good, 400.0, at("13:59"));
    plant.tick(at("14:30"));
    let v1 = plant.closed(FILLER, Shift, SHIFT);
    close4(v1.quality, 400.0 / 400.0);

    let event_id = Uuid::now_v7();
    let applied = plant.reclass(FILLER, at("13:30"), Good, Scrap, 20.0, event_id);
    let v2 = applied
        .publications
        .iter()
        .find(|p| p.result.period.id.as_str() == SHIFT && p.location == loc(FILLER))
        .expect("shift corrected")
        .result
        .clone();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.corrects, Some(1));
    let reason = v2.reason.as_deref().expect("reason");
    assert!(reason.contains(&event_id.to_string()), "{reason}");
    close4(v2.quality, (400.0 - 20.0) / 400.0);
    assert_eq!(v2.counts.scrap.qty, 20.0);
    assert_eq!(v2.counts.produced.qty, 400.0);
    close4(v2.performance, v1.performance.expect("v1"));
    check_invariants(&v2);
    // The same event again changes nothing.
    assert!(
        plant
            .reclass(FILLER, at("13:30"), Good, Scrap, 20.0, event_id)
            .duplicate
    );
    assert_eq!(
        plant
            .versions(FILLER, Shift, SHIFT)
            .iter()
            .map(|r| r.version)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    // A late event that changes nothing in a closed period publishes nothing.
    plant.state("acme/clock/ticks/tick", at("12:00"), Running, "Execute");
    assert_eq!(plant.versions(FILLER, Shift, SHIFT).len(), 2);
}

/// A shift in planned downtime throughout, and one not scheduled: every ratio null, with a reason.
#[test]
fn no_production_gives_nulls_with_reasons() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), PlannedDown, "planned maintenance");
    plant.tick(at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    assert_eq!(r.times.pot_ms as f64, min(480.0));
    assert_eq!(r.times.pdt_ms as f64, min(480.0));
    assert_eq!(r.times.pbt_ms, 0);
    for field in [
        "availability",
        "performance",
        "quality",
        "oee",
        "scrap_ratio",
        "setup_ratio",
    ] {
        assert!(
            r.null_reasons.contains_key(field),
            "{field}: {:?}",
            r.null_reasons
        );
    }
    assert_eq!(
        (r.availability, r.performance, r.quality, r.oee),
        (None, None, None, None)
    );
    assert!(r.null_reasons["availability"].contains("PBT is 0"));
    assert!(r.null_reasons["quality"].contains("PQ is 0"));
    let json = serde_json::to_value(&r).expect("json");
    assert!(json["availability"].is_null() && json["oee"].is_null());

    let mut plant = Plant::new(ONE_SHIFT);
    plant.state(FILLER, at("05:00"), NotScheduled, "no orders");
    plant.tick(at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    assert_eq!(r.times.pot_ms, 0);
    assert!(r.null_reasons["availability"].contains("PBT is 0"));
    check_invariants(&r);
}

/// Produced without an ideal rate: performance (and OEE) null, naming the missing rate.
#[test]
fn missing_ideal_rate_is_null_with_reason() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.count(FILLER, Good, 10.0, at("07:00"));
    plant.tick(at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    assert!(r.performance.is_none() && r.oee.is_none());
    assert!(
        r.null_reasons["performance"].contains("no ideal rate"),
        "{:?}",
        r.null_reasons
    );
    close4(r.availability, 1.0);
}

const LINE: &str = "acme/berlin/packaging/line-1";
const CAPPER: &str = "acme/berlin/packaging/line-1/capper";
const LABELER: &str = "acme/berlin/packaging/line-1/labeler";

/// A line of three cells: the line's times come from the bottleneck (capper), its counts from the
/// counting cell (labeler); its OEE is not the mean of the cells' OEE.
#[test]
fn three_cell_line_is_not_the_mean_of_its_cells() {
    let config = format!(
        "{ONE_SHIFT}\n[[lines]]\npath = \"{LINE}\"\ncounting_cell = \"labeler\"\nbottleneck_cell = \"capper\"\n"
    );
    let mut plant = Plant::new(&config);
    for cell in [FILLER, CAPPER, LABELER] {
        plant.rate(cell, 75.0); // ideal cycle 48 s
        plant.zero_counts(cell, at("06:00"));
        plant.state(cell, at("06:00"), Running, "Execute");
    }
    plant.rate(LINE, 75.0);
    plant.state(CAPPER, at("08:00"), UnplannedDown, "Capper jam");
    plant.state(CAPPER, at("09:00"), Running, "Execute");
    plant.state(LABELER, at("11:00"), Starved, "Waiting for caps");
    plant.state(LABELER, at("11:30"), Running, "Execute");
    plant.count(FILLER, Good, 500.0, at("13:50"));
    plant.count(CAPPER, Good, 420.0, at("13:50"));
    plant.count(LABELER, Good, 400.0, at("13:50"));
    plant.count(LABELER, Scrap, 10.0, at("13:50"));
    plant.tick(at("14:01"));

    let cycle = 48_000.0;
    let pbt = min(450.0);
    let filler_oee = 1.0 * (500.0 * cycle / pbt) * 1.0;
    let capper_apt = pbt - min(60.0);
    let capper_oee = (capper_apt / pbt) * (420.0 * cycle / capper_apt) * 1.0;
    let labeler_apt = pbt - min(30.0);
    let labeler_oee = (labeler_apt / pbt) * (410.0 * cycle / labeler_apt) * (400.0 / 410.0);
    close4(plant.closed(FILLER, Shift, SHIFT).oee, filler_oee); // 0.8889
    close4(plant.closed(CAPPER, Shift, SHIFT).oee, capper_oee); // 0.7467
    close4(plant.closed(LABELER, Shift, SHIFT).oee, labeler_oee); // 0.7111

    let line = plant.closed(LINE, Shift, SHIFT);
    let line_a = capper_apt / pbt; // bottleneck time
    let line_e = 410.0 * cycle / capper_apt; // counting cell's quantity on the bottleneck's APT
    let line_q = 400.0 / 410.0;
    close4(line.availability, line_a); // 0.8667
    close4(line.performance, line_e); // 0.8410
    close4(line.quality, line_q); // 0.9756
    close4(line.oee, line_a * line_e * line_q); // 0.7111
    let mean = (filler_oee + capper_oee + labeler_oee) / 3.0; // 0.7822
    assert!((line.oee.expect("line") - mean).abs() > 0.05);
    check_invariants(&line);
    // The site rolls up its line (cells inside a line are not counted twice).
    let site = plant.closed("acme/berlin", Shift, SHIFT);
    close4(site.oee, line_a * line_e * line_q);
}

/// An asset first seen during a shift (a fresh `uns up --demo` at 09:00 in a 06:00-14:00 shift): the
/// time before its first state is not monitored, so it is left out of POT rather than counted as
/// unknown downtime; the result's `start` says from when the figures run. Counts before it are left
/// out too (the first sample is the baseline anyway). A state that arrives late from before the first
/// one extends the coverage (version 2). An asset that sends counts but never a state has no time
/// figures at all: availability is null with the reason.
#[test]
fn time_before_the_first_state_is_not_monitored() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("09:00"));
    plant.state(FILLER, at("09:00"), Running, "Execute");
    plant.count(FILLER, Good, 50.0, at("10:00"));

    // Open shift at 10:15: monitored 09:00-10:15 = 75 min, of which the break 10:00-10:15.
    let current = plant.engine.current(Some(at("10:15")));
    let shift = &current
        .iter()
        .find(|p| p.location == loc(FILLER) && p.result.period.id.as_str() == SHIFT)
        .expect("current shift")
        .result;
    assert_eq!(shift.start.unix_ms(), at("09:00"));
    assert_eq!(shift.times.pot_ms as f64, min(75.0));
    assert_eq!(shift.times.pdt_ms as f64, min(15.0));
    assert_eq!(shift.times.unknown_ms, 0);
    close4(shift.availability, min(60.0) / min(60.0)); // was 60/(75-15+180) = 0.25 with 06:00-09:00 unknown
    close4(shift.performance, 50.0 * min(1.0) / min(60.0)); // 0.8333

    plant.count(FILLER, Good, 200.0, at("13:00"));
    plant.tick(at("14:01"));
    let v1 = plant.closed(FILLER, Shift, SHIFT);
    // Monitored 09:00-14:00: POT = 300 min, PDT = 30, PBT = 270 = APT.
    let (pot, pbt) = (min(300.0), min(270.0));
    assert_eq!(v1.start.unix_ms(), at("09:00"));
    assert_eq!(v1.end.unix_ms(), at("14:00"));
    assert_eq!(v1.times.pot_ms as f64, pot);
    assert_eq!(v1.times.pbt_ms as f64, pbt);
    close4(v1.availability, pbt / pbt); // 1
    close4(v1.performance, 200.0 * min(1.0) / pbt); // 0.7407
    close4(v1.oee, 200.0 * min(1.0) / pbt);
    close4(v1.utilisation, pbt / pot); // 0.9: PBT over the monitored calendar time
    check_invariants(&v1);

    // A late state from 08:00 (the bridge's store-and-forward): monitored from 08:00 now.
    plant.state(FILLER, at("08:00"), UnplannedDown, "Jam");
    let v2 = plant.closed(FILLER, Shift, SHIFT);
    assert_eq!((v2.version, v2.corrects), (2, Some(1)));
    assert_eq!(v2.start.unix_ms(), at("08:00"));
    let pbt = min(360.0 - 30.0);
    close4(v2.availability, (pbt - min(60.0)) / pbt); // 270/330 = 0.8182
    check_invariants(&v2);

    // Counts without any state: nothing is monitored.
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.count(FILLER, Good, 100.0, at("12:00"));
    plant.tick(at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    assert_eq!((r.times.pot_ms, r.counts.good.qty), (0, 0.0));
    assert_eq!(r.availability, None);
    assert!(
        r.null_reasons["availability"].contains("no state received"),
        "{:?}",
        r.null_reasons
    );
    assert!(r.null_reasons["utilisation"].contains("no state received"));
}

/// A night shift 22:00-06:00 crossing midnight, with a break at 02:00.
#[test]
fn night_shift_crossing_midnight() {
    let config = r#"
grace_s = 60
default_calendar = "night"
[calendars.night]
shifts = [{ name = "night", start = "22:00", end = "06:00", breaks = [{ start = "02:00", end = "02:30" }] }]
"#;
    let mut plant = Plant::new(config);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("21:00"));
    plant.state(FILLER, at("21:00"), Running, "Execute");
    plant.count(FILLER, Good, 100.0, at("23:59"));
    plant.count(FILLER, Good, 420.0, at_in("UTC", "2026-03-03 05:59"));
    plant.tick(at_in("UTC", "2026-03-03 06:01"));
    let r = plant.closed(FILLER, Shift, "2026-03-02.night");
    assert_eq!(r.start.unix_ms(), at("22:00"));
    assert_eq!(r.end.unix_ms(), at_in("UTC", "2026-03-03 06:00"));
    assert_eq!(r.times.pot_ms as f64, min(480.0));
    assert_eq!(r.times.pdt_ms as f64, min(30.0));
    close4(r.performance, 420.0 * min(1.0) / min(450.0));
    // The day 2026-03-02 is monitored from the first state (21:00): it holds 22:00-24:00 of the
    // night shift; 00:00-21:00 (with 00:00-06:00 of the night shift before) is not monitored and not
    // in the figures. Utilisation = PBT / monitored calendar time = 120 min / 180 min.
    let day = plant.closed(FILLER, Day, "2026-03-02");
    assert_eq!(day.start.unix_ms(), at("21:00"));
    assert_eq!(day.times.pot_ms as f64, min(120.0));
    assert_eq!(day.times.unknown_ms, 0);
    assert_eq!(day.times.apt_ms as f64, min(120.0));
    assert_eq!(day.counts.good.qty, 100.0);
    close4(day.utilisation, 120.0 / 180.0);
    check_invariants(&day);
}

/// Night shifts on the two DST changes in Europe/Berlin: 9 hours in October, 7 in March; the break stays
/// 30 minutes.
#[test]
fn night_shift_across_dst_changes() {
    let config = r#"
grace_s = 60
default_calendar = "night"
default_time_zone = "Europe/Berlin"
[calendars.night]
shifts = [{ name = "night", start = "22:00", end = "06:00", breaks = [{ start = "02:00", end = "02:30" }] }]
"#;
    for (day, next, hours) in [
        ("2026-10-24", "2026-10-25", 9.0),
        ("2026-03-28", "2026-03-29", 7.0),
    ] {
        let berlin = |text: &str| at_in("Europe/Berlin", text);
        let mut plant = Plant::new(config);
        plant.rate(FILLER, 60.0);
        plant.zero_counts(FILLER, berlin(&format!("{day} 21:00")));
        plant.state(FILLER, berlin(&format!("{day} 21:00")), Running, "Execute");
        plant.count(FILLER, Good, 300.0, berlin(&format!("{next} 05:00")));
        plant.tick(berlin(&format!("{next} 06:01")));
        let r = plant.closed(FILLER, Shift, &format!("{day}.night"));
        let pot = min(hours * 60.0);
        assert_eq!(r.times.pot_ms as f64, pot, "{day}");
        assert_eq!(r.times.pdt_ms as f64, min(30.0), "{day}");
        close4(r.availability, 1.0);
        close4(r.performance, 300.0 * min(1.0) / (pot - min(30.0)));
        assert_eq!(r.calendar.as_deref(), Some("night@Europe/Berlin"));
    }
    // The repeated hour of the autumn change has its own id.
    let mut plant = Plant::new(config);
    plant.state(FILLER, at_in("UTC", "2026-10-24 23:00"), Running, "Execute");
    plant.tick(at_in("UTC", "2026-10-25 04:00"));
    let first = plant.closed(FILLER, Hour, "2026-10-25t02");
    let second = plant.closed(FILLER, Hour, "2026-10-25t02.2");
    assert_eq!(second.start.unix_ms() - first.start.unix_ms(), 3_600_000);
}

/// A work order's period runs from the order's start until another order replaces it.
#[test]
fn work_order_period() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.order(FILLER, Some(work_order("wo-1", "m-1", FILLER, at("06:00"))));
    plant.count(FILLER, Good, 100.0, at("08:00"));
    plant.order(FILLER, Some(work_order("wo-2", "m-2", FILLER, at("09:00"))));
    plant.count(FILLER, Good, 150.0, at("10:00"));
    plant.tick(at("09:02"));
    let wo = plant.closed(FILLER, Wo, "wo-1");
    assert_eq!(
        (wo.start.unix_ms(), wo.end.unix_ms()),
        (at("06:00"), at("09:00"))
    );
    assert_eq!(wo.counts.good.qty, 100.0);
    close4(wo.performance, 100.0 * min(1.0) / min(180.0));
    let current = plant.engine.current(None);
    let wo2 = current
        .iter()
        .find(|p| p.location == loc(FILLER) && p.result.period.id.as_str() == "wo-2")
        .expect("current wo-2");
    assert!(!wo2.result.is_final);
    assert_eq!(wo2.result.counts.good.qty, 50.0);
}

/// PackML states map by name, never by number.
#[test]
fn packml_by_name() {
    let config =
        format!("{ONE_SHIFT}\n[[state_maps]]\npath = \"{FILLER}\"\nstate_map = \"packml\"\n");
    let mut plant = Plant::new(&config);
    plant.rate(FILLER, 60.0);
    // Published categories are wrong on purpose: the names decide.
    plant.state(FILLER, at("06:00"), Unknown, "Execute");
    plant.state(FILLER, at("07:00"), Unknown, "Held");
    plant.state(FILLER, at("07:30"), Unknown, "SUSPENDED");
    plant.state(FILLER, at("08:00"), Unknown, "Execute");
    plant.tick(at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    assert_eq!(r.times.adet_ms as f64, min(30.0));
    assert_eq!(r.times.adot_ms as f64, min(30.0));
    assert_eq!(r.times.unknown_ms, 0);
}

/// The recorded messages of a shift, replayed from their bytes at 1000× (clock calls 1000× sparser and
/// with a compressed clock), give the same closed periods and the same current figures.
#[test]
fn replay_at_1000x_gives_identical_results() {
    let mut live = Plant::new(ONE_SHIFT);
    live.rate(FILLER, 60.0);
    live.zero_counts(FILLER, at("06:00"));
    let mut total = 0.0;
    for minute in 0..(8 * 60 + 5) {
        let t = at("06:00") + minute * 60_000;
        match minute % 37 {
            0 => live.state(FILLER, t, UnplannedDown, "Jam"),
            3 => live.state(FILLER, t, Running, "Execute"),
            _ => {
                total += 1.0;
                live.count(FILLER, Good, total, t)
            }
        };
        if minute % 97 == 0 {
            live.reclass(FILLER, t, Good, Scrap, 1.0, Uuid::now_v7());
        }
    }
    let live_current = live.engine.current(Some(at("14:05") + 500));

    let mut replay = Engine::new(settings(ONE_SHIFT));
    let mut replay_finals = Vec::new();
    let start = at("06:00");
    for (idx, (topic, bytes)) in live.recorded.iter().enumerate() {
        let topic: UnsTopic = topic.parse().expect("recorded topic");
        let input = input::decode(&topic, bytes)
            .expect("decodes")
            .expect("used");
        let applied = replay.apply(input).expect("accepted");
        replay_finals.extend(applied.publications);
        if idx % 1000 == 0 {
            let compressed_clock = start + (idx as i64) * 60;
            let _ = replay.current(Some(compressed_clock));
        }
    }
    assert_eq!(replay_finals, live.published);
    assert!(!replay_finals.is_empty());
    assert_eq!(
        replay.current(Some(start)),
        live.engine.current(Some(start))
    );
    assert_eq!(replay.current(Some(at("14:05") + 500)), live_current);
}

/// `_cmd/oee/close`: the filler goes quiet at 12:00 (last count; still running), so event time stays at
/// 12:00 and the shift would never close by itself. A request at 13:00 closes nothing (the shift runs
/// until 14:00) and names it as still open; one at 14:00:30 closes it at once, with the running state
/// lasting up to the shift's end. A state that arrives late (a jam at 13:00) then corrects it to
/// version 2. The recorded messages, close requests included, replay to the same publications.
#[test]
fn close_request_closes_a_quiet_shift_and_late_events_correct_it() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.count(FILLER, Good, 300.0, at("12:00"));

    let early = plant.close(FILLER, Some(Shift), at("13:00"));
    assert!(early.publications.is_empty() && early.duplicate);
    let open = plant
        .engine
        .still_open(&loc(FILLER), Some(Shift), at("13:00"));
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].id.as_str(), open[0].end), (SHIFT, at("14:00")));

    let closed = plant.close(FILLER, Some(Shift), at("14:00:30"));
    assert_eq!(closed.publications.len(), 1, "only the shift was asked for");
    let v1 = plant.closed(FILLER, Shift, SHIFT);
    assert!(v1.is_final);
    let pbt = min(480.0 - 30.0);
    let apt = pbt; // running 06:00-14:00 minus the break
    assert_eq!(v1.times.apt_ms as f64, apt);
    close4(v1.availability, apt / pbt); // 1
    close4(v1.performance, 300.0 * min(1.0) / apt); // 0.6667
    close4(v1.oee, 300.0 * min(1.0) / pbt);
    check_invariants(&v1);
    // Hours were not asked for: 12:00-13:00 is still open until event time or a request closes it.
    assert!(
        plant
            .engine
            .closed(&loc(FILLER), Hour, "2026-03-02t12")
            .is_none()
    );
    // Asking again closes nothing new.
    assert!(plant.close(FILLER, Some(Shift), at("14:00:30")).duplicate);

    // The jam at 13:00-13:30 arrives late.
    plant.state(FILLER, at("13:00"), UnplannedDown, "Jam");
    let applied = plant.state(FILLER, at("13:30"), Running, "Execute");
    let versions = plant.versions(FILLER, Shift, SHIFT);
    assert_eq!(
        versions.iter().map(|r| r.version).collect::<Vec<_>>(),
        [1, 2, 3],
        "one correction per late state: {applied:?}"
    );
    let v3 = plant.closed(FILLER, Shift, SHIFT);
    assert_eq!(v3.corrects, Some(2));
    let apt = pbt - min(30.0);
    assert_eq!(v3.times.adet_ms as f64, min(30.0));
    close4(v3.availability, apt / pbt); // 0.9333
    close4(v3.performance, 300.0 * min(1.0) / apt); // 0.7143
    check_invariants(&v3);

    // A request at the site closes the periods of the cells below it: the hours up to 14:00.
    let site = plant.close("acme/berlin", Some(Hour), at("14:00:30"));
    assert!(
        site.publications
            .iter()
            .any(|p| p.location == loc(FILLER) && p.result.period.id.as_str() == "2026-03-02t13")
    );

    let mut replay = Engine::new(settings(ONE_SHIFT));
    let mut replayed = Vec::new();
    for (topic, bytes) in &plant.recorded {
        let topic: UnsTopic = topic.parse().expect("recorded topic");
        let input = input::decode(&topic, bytes)
            .expect("decodes")
            .expect("used");
        replayed.extend(replay.apply(input).expect("accepted").publications);
    }
    assert_eq!(replayed, plant.published);
}

/// The worked example of oee.com ("Calculate OEE", a standard shift): an 8-hour shift (480 min) with
/// two 15-minute breaks and a 30-minute meal (planned stop time 60 min), 47 minutes of downtime, an
/// ideal cycle time of 1.0 s (3600/h), 19,271 parts of which 423 rejected. Their figures:
/// planned production time 420 min, run time 373 min, availability 373/420 = 88.81 %, performance
/// (1.0 s × 19,271) / (373 × 60 s) = 86.11 %, quality 18,848/19,271 = 97.80 %, OEE = 74.79 %
/// (https://www.oee.com/calculating-oee/).
#[test]
fn worked_example_of_oee_com() {
    let config = r#"
grace_s = 60
default_calendar = "example"
[calendars.example]
shifts = [{ name = "early", start = "06:00", end = "14:00", breaks = [
    { start = "08:00", end = "08:15" }, { start = "10:00", end = "10:30" }, { start = "12:00", end = "12:15" },
] }]
"#;
    let mut plant = Plant::new(config);
    plant.rate(FILLER, 3600.0);
    plant.zero_counts(FILLER, at("06:00"));
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.state(FILLER, at("11:00"), UnplannedDown, "Motor fault");
    plant.state(FILLER, at("11:47"), Running, "Execute");
    plant.count(FILLER, Good, 18_848.0, at("13:59:59"));
    plant.count(FILLER, Scrap, 423.0, at("13:59:59"));
    plant.tick(at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    let (planned, run) = (min(420.0), min(373.0));
    assert_eq!(r.times.pbt_ms as f64, planned);
    assert_eq!(r.times.apt_ms as f64, run);
    close4(r.availability, 0.8881); // 373 / 420
    close4(r.performance, 19_271.0 * 1000.0 / run); // 0.8611
    close4(r.quality, 18_848.0 / 19_271.0); // 0.9780
    close4(r.oee, 18_848.0 * 1000.0 / planned); // 0.7479: good parts × ideal cycle / planned time
    assert!((r.oee.expect("oee") - 0.7479).abs() < 0.5e-4);
    check_invariants(&r);
}

/// A day of the simulated filler (`uns sim`'s machine model, seed 42, stepped every second; state
/// changes published as the SCADA bridge maps them, counters every 10 s) on the demo calendar in UTC.
/// Every closed period keeps Σ buckets = POT and A × E × Q = OEE to 1e-9; the day's buckets equal an
/// independent second-by-second tally of the same run; the hours add up to the day (a counter sample
/// stamped exactly at an hour's end counts in the next hour only, never in both); the day's
/// quantities are the counters' increase; performance lies in the model's 0.85..1.0 running speed.
#[test]
fn a_day_of_the_simulated_filler_stays_consistent() {
    use uns_sim::CellKind;
    use uns_sim::plant::{DeviceModel, MachineState as Sim};

    let mut plant = Plant::new("grace_s = 60\n");
    let mut model = DeviceModel::new(42, "line-1/filler", CellKind::Filler, 12_000.0, 0);
    plant.rate(FILLER, 12_000.0);
    let t0 = at("00:00");
    let category = |state: Sim| match state {
        Sim::Running => (Running, "Execute"),
        Sim::MinorStop => (MinorStop, "Suspended"),
        Sim::Jam => (UnplannedDown, "Held"),
        Sim::Changeover => (Setup, "Stopped"),
        Sim::Break => (PlannedDown, "Idle"),
    };
    // The demo calendar's breaks (UTC here): planned downtime whatever the machine does.
    let in_break = |t: i64| {
        ["02:00", "10:00", "18:00"]
            .iter()
            .any(|start| t >= at(start) && t < at(start) + 30 * 60_000)
    };
    let (mut pdt, mut apt, mut asut, mut adet) = (0_i64, 0_i64, 0_i64, 0_i64);
    let mut state = model.state();
    let (name_cat, name) = category(state);
    plant.state(FILLER, t0, name_cat, name);
    plant.count(FILLER, Good, 0.0, t0);
    plant.count(FILLER, Scrap, 0.0, t0);
    let mut last_counts = model.counters();
    let (mut day_good, mut day_scrap) = (0_u64, 0_u64);
    for second in 0..86_400_i64 {
        let t = t0 + second * 1000;
        // The state published at t holds over [t, t + 1 s).
        match state {
            _ if in_break(t) => pdt += 1000,
            Sim::Break => pdt += 1000,
            Sim::Running => apt += 1000,
            Sim::Changeover => asut += 1000,
            Sim::MinorStop | Sim::Jam => adet += 1000,
        }
        model.step(1.0);
        let next = t + 1000;
        if model.state() != state {
            state = model.state();
            let (cat, name) = category(state);
            plant.state(FILLER, next, cat, name);
        }
        if (second + 1) % 10 == 0 && next < t0 + 86_400_000 {
            let (good, scrap) = model.counters();
            if good != last_counts.0 {
                plant.count(FILLER, Good, good as f64, next);
            }
            if scrap != last_counts.1 {
                plant.count(FILLER, Scrap, scrap as f64, next);
            }
            day_good += good - last_counts.0;
            day_scrap += scrap - last_counts.1;
            last_counts = (good, scrap);
        }
    }
    plant.tick(t0 + 86_400_000 + 120_000);
    assert!(plant.published.len() > 24);
    for publication in &plant.published {
        check_invariants(&publication.result);
    }
    let day = plant.closed(FILLER, Day, "2026-03-02");
    let t = &day.times;
    assert_eq!(t.pot_ms, 86_400_000);
    assert_eq!(t.pdt_ms as i64, pdt);
    assert_eq!(t.apt_ms as i64, apt);
    assert_eq!(t.asut_ms as i64, asut);
    assert_eq!(t.adet_ms as i64, adet);
    assert_eq!((t.adot_ms, t.unknown_ms), (0, 0));
    assert_eq!(day.counts.good.qty, day_good as f64);
    assert_eq!(day.counts.scrap.qty, day_scrap as f64);
    assert!(day_good > 100_000, "the filler produced: {day_good}");
    close4(day.availability, apt as f64 / (86_400_000 - pdt) as f64);
    let performance = day.performance.expect("performance");
    assert!(
        (0.85..=1.0).contains(&performance),
        "performance {performance}"
    );
    let hours: Vec<_> = (0..24)
        .map(|hour| plant.closed(FILLER, Hour, &format!("2026-03-02t{hour:02}")))
        .collect();
    let sum = |f: &dyn Fn(&uns_model::payload::OeeResult) -> f64| hours.iter().map(f).sum::<f64>();
    assert_eq!(sum(&|h| h.times.apt_ms as f64), t.apt_ms as f64);
    assert_eq!(sum(&|h| h.times.adet_ms as f64), t.adet_ms as f64);
    assert_eq!(sum(&|h| h.counts.good.qty), day.counts.good.qty);
    assert!((sum(&|h| h.times.ideal_ms) - t.ideal_ms).abs() < 1e-3);
}

/// A restart of the service mid-shift: at 10:05 the engine is rebuilt from the recorded inputs (as the
/// service does from its store) and fed the rest of the shift; its shift, hours and current figures
/// are exactly those of an engine that ran through. Changeover 06:00-06:30, jam 08:00-08:20, 300 good
/// and 6 scrap at 60/h: A = (450 - 30 - 20)/450 = 0.8889, E = 306/400 = 0.7650, Q = 300/306.
#[test]
fn restart_mid_shift_loses_nothing() {
    fn first_half(plant: &mut Plant) {
        plant.rate(FILLER, 60.0);
        plant.zero_counts(FILLER, at("06:00"));
        plant.state(FILLER, at("06:00"), Setup, "changeover");
        plant.state(FILLER, at("06:30"), Running, "Execute");
        plant.state(FILLER, at("08:00"), UnplannedDown, "Jam");
        plant.state(FILLER, at("08:20"), Running, "Execute");
        plant.count(FILLER, Good, 120.0, at("10:05"));
    }
    fn second_half(plant: &mut Plant) {
        plant.count(FILLER, Scrap, 6.0, at("12:00"));
        plant.count(FILLER, Good, 300.0, at("13:59"));
        plant.tick(at("14:01"));
    }
    let mut through = Plant::new(ONE_SHIFT);
    first_half(&mut through);
    second_half(&mut through);

    let mut before = Plant::new(ONE_SHIFT);
    first_half(&mut before);
    let mut restarted = Plant::new(ONE_SHIFT);
    for (topic, bytes) in &before.recorded {
        let topic: UnsTopic = topic.parse().expect("recorded topic");
        let input = input::decode(&topic, bytes)
            .expect("decodes")
            .expect("used");
        restarted
            .published
            .extend(restarted.engine.apply(input).expect("ok").publications);
    }
    assert_eq!(
        restarted.published, before.published,
        "the replay republishes nothing new"
    );
    assert_eq!(
        restarted.engine.current(Some(at("10:06"))),
        before.engine.current(Some(at("10:06")))
    );
    second_half(&mut restarted);
    assert_eq!(restarted.published, through.published);
    let r = restarted.closed(FILLER, Shift, SHIFT);
    let pbt = min(450.0);
    let apt = pbt - min(30.0) - min(20.0);
    close4(r.availability, apt / pbt); // 0.8889
    close4(r.performance, 306.0 * min(1.0) / apt); // 0.7650
    close4(r.quality, 300.0 / 306.0); // 0.9804
    close4(r.oee, 300.0 * min(1.0) / pbt); // 0.6667
    check_invariants(&r);
}

/// One asset alone, its `_meta` first (as the demo publishes it), then its state and counts: its
/// periods close by its own event time (no other asset needed to move anything).
#[test]
fn a_lone_asset_whose_meta_came_first_closes_its_periods() {
    let mut plant = Plant::new(ONE_SHIFT);
    plant.rate(FILLER, 60.0);
    plant.state(FILLER, at("06:00"), Running, "Execute");
    plant.count(FILLER, Good, 0.0, at("06:00"));
    plant.count(FILLER, Good, 300.0, at("13:00"));
    plant.count(FILLER, Good, 330.0, at("14:01"));
    let r = plant.closed(FILLER, Shift, SHIFT);
    close4(r.performance, 300.0 * min(1.0) / min(450.0)); // 0.6667
    assert!(
        plant
            .engine
            .closed(&loc(FILLER), Hour, "2026-03-02t12")
            .is_some()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random states and counts over a day of the demo calendar: every closed period keeps
    /// Σ buckets = POT, PBT = POT − PDT, A × E × Q = OEE to 1e-9 and the six big losses add up.
    #[test]
    fn buckets_and_factors_stay_consistent(
        steps in proptest::collection::vec((1_i64..5_400, 0_usize..9, 0_u32..40, 0_u32..3), 1..120),
        tpm in any::<bool>(),
    ) {
        let policy = if tpm { "tpm" } else { "iso22400" };
        let mut plant = Plant::new(&format!("minor_stop_policy = \"{policy}\"\nstartup_window_s = 900\n"));
        plant.rate(FILLER, 120.0);
        let categories = [Running, MinorStop, UnplannedDown, Setup, PlannedDown, Starved, Blocked, NotScheduled, Unknown];
        let mut t = at("00:00");
        plant.zero_counts(FILLER, t);
        let mut totals = [0.0_f64; 3];
        for (gap_s, category, parts, kind) in steps {
            t += gap_s * 1000;
            plant.state(FILLER, t, categories[category], "random");
            let kind_idx = kind as usize;
            totals[kind_idx] += f64::from(parts);
            let count_kind = [Good, Scrap, Rework][kind_idx];
            plant.count(FILLER, count_kind, totals[kind_idx], t + 500);
        }
        plant.tick(t + 3 * 86_400_000);
        prop_assert!(!plant.published.is_empty());
        for publication in &plant.published {
            check_invariants(&publication.result);
        }
    }
}
