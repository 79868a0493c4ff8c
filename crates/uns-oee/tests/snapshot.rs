//! Engine snapshots and the compaction of count samples, checked against runs without them: the same
//! recorded messages (a line of three cells for 30 hours, with late, out-of-order and repeated inputs)
//! must give the same publications and the same current figures whether the engine is restored from a
//! snapshot along the way, merges count samples or keeps every one.

use uns_model::payload::StateCategory::*;
use uns_model::topic::{CountKind::*, OeePeriodKind, UnsTopic};
use uns_oee::engine::{Engine, Input, Publication};
use uns_oee::input;
use uuid::Uuid;

use crate::support::*;

const LINE: &str = "acme/berlin/packaging/line-1";
const CAPPER: &str = "acme/berlin/packaging/line-1/capper";
const LABELER: &str = "acme/berlin/packaging/line-1/labeler";
const CELLS: [&str; 3] = [FILLER, CAPPER, LABELER];

/// Three shifts with breaks in Berlin time, the line of three cells, the default retention (48 h).
fn config() -> String {
    format!(
        r#"
grace_s = 60
minor_stop_threshold_s = 120
default_calendar = "three"
default_time_zone = "Europe/Berlin"
[calendars.three]
shifts = [
  {{ name = "early", start = "06:00", end = "14:00", breaks = [{{ start = "10:00", end = "10:30" }}] }},
  {{ name = "late", start = "14:00", end = "22:00", breaks = [{{ start = "18:00", end = "18:30" }}] }},
  {{ name = "night", start = "22:00", end = "06:00", breaks = [{{ start = "02:00", end = "02:30" }}] }},
]
[[lines]]
path = "{LINE}"
counting_cell = "labeler"
bottleneck_cell = "capper"
"#
    )
}

const HOUR: i64 = 3_600_000;

/// 30 hours of the line from Monday 00:00 UTC, applied to `plant` (which records every message):
/// each cell counts every 10 s (scrap every 10 min), jams for 45 s (a minor stop) every 7 minutes
/// and stops for 5 minutes every 53; a new work order every 7 hours at the counting cell. Late and
/// repeated inputs: the filler's samples of 10:00-11:30 arrive at 13:00 (store and forward), a capper
/// jam of 12:10-12:20 arrives at 15:00, a reclassification of 09:00 at 16:00, the labeler's samples of
/// 18:00-18:10 are sent again at 20:00, and a close request at 25:00:30 closes the hour that ended at
/// 25:00 before its grace.
fn thirty_hours(plant: &mut Plant) {
    let t0 = at("00:00");
    for cell in CELLS {
        plant.rate(cell, 360.0);
        plant.zero_counts(cell, t0);
        plant.state(cell, t0, Running, "Execute");
    }
    plant.rate(LINE, 360.0);
    let mut good = [0.0_f64; 3];
    let mut scrap = [0.0_f64; 3];
    let mut held_back = Vec::new();
    let mut sent_labeler = Vec::new();
    let mut order = 0;
    let step = 10_000;
    for tick in 1..=(30 * HOUR / step) {
        let t = t0 + tick * step;
        if t % (7 * HOUR) == 0 {
            order += 1;
            let id = format!("wo-{order}");
            plant.order(LABELER, Some(work_order(&id, "m-1", LABELER, t)));
        }
        for (idx, cell) in CELLS.iter().enumerate() {
            let phase = (t / step + idx as i64 * 7) % 42; // every 7 minutes
            let long = (t / step + idx as i64 * 11) % 318; // every 53 minutes
            if long == 0 {
                plant.state(cell, t, UnplannedDown, "Motor trip");
            } else if long == 30 {
                plant.state(cell, t, Running, "Execute");
            } else if phase == 0 {
                plant.state(cell, t, UnplannedDown, "Jam");
            } else if phase == 4 && long > 30 {
                plant.state(cell, t - 5_000, Running, "Execute");
            }
            good[idx] += 1.0 + ((tick + idx as i64) % 3) as f64;
            let late = idx == 0 && (at("10:00")..at("11:30")).contains(&t);
            if late {
                held_back.push((t, good[idx]));
            } else {
                plant.count(cell, Good, good[idx], t);
            }
            if *cell == LABELER && (at("18:00")..at("18:10")).contains(&t) {
                sent_labeler.push((t, good[idx]));
            }
            if t % 600_000 == 0 {
                scrap[idx] += 1.0;
                plant.count(cell, Scrap, scrap[idx], t);
            }
        }
        if t == at("13:00") {
            for &(at, total) in &held_back {
                plant.count(FILLER, Good, total, at);
            }
        }
        if t == at("15:00") {
            plant.state(CAPPER, at("12:10"), UnplannedDown, "Late jam");
            plant.state(CAPPER, at("12:20"), Running, "Execute");
        }
        if t == at("16:00") {
            plant.reclass(LABELER, at("09:00"), Good, Scrap, 3.0, Uuid::now_v7());
        }
        if t == at("20:00") {
            for &(at, total) in &sent_labeler {
                plant.count(LABELER, Good, total, at);
            }
        }
        if t == t0 + 25 * HOUR + 30_000 {
            plant.close(LINE, Some(OeePeriodKind::Hour), t0 + 25 * HOUR);
        }
    }
}

/// Applies recorded messages to `engine`; every `every` messages (when given) the engine is replaced by
/// one restored from its snapshot, as a restart of the service would. Returns the publications and the
/// current figures at each 2 000th message.
fn run(
    mut engine: Engine,
    recorded: &[(String, Vec<u8>)],
    snapshot_every: Option<usize>,
) -> (Vec<Publication>, Vec<Vec<Publication>>, Engine) {
    let mut published = Vec::new();
    let mut currents = Vec::new();
    for (idx, (topic, bytes)) in recorded.iter().enumerate() {
        let topic: UnsTopic = topic.parse().expect("recorded topic");
        let decoded = input::decode(&topic, bytes)
            .expect("decodes")
            .expect("used");
        published.extend(engine.apply(decoded).expect("accepted").publications);
        if idx % 2000 == 0 {
            currents.push(engine.current(None));
        }
        if snapshot_every.is_some_and(|every| idx % every == every - 1) {
            let bytes = engine.snapshot();
            let restored =
                Engine::restore(engine.settings().clone(), &bytes).expect("snapshot restores");
            assert_eq!(
                restored.snapshot(),
                bytes,
                "a restored engine snapshots the same"
            );
            engine = restored;
        }
    }
    currents.push(engine.current(None));
    (published, currents, engine)
}

/// A restart from a snapshot (taken every 5 000 messages, six times in the run) gives the results
/// of a run without one: the same closed periods, versions and corrections, in the same order, and the
/// same current figures all along. After the last restore, every message sent again is applied once:
/// nothing changes, nothing is published.
#[test]
fn a_restart_from_a_snapshot_gives_the_results_of_a_run_without_one() {
    let mut plant = Plant::new(&config());
    thirty_hours(&mut plant);
    let settings = settings(&config());
    let (through, through_current, engine) =
        run(Engine::new(settings.clone()), &plant.recorded, None);
    assert_eq!(through, plant.published);
    let (restarted, restarted_current, mut restored) =
        run(Engine::new(settings.clone()), &plant.recorded, Some(5_000));
    assert!(plant.recorded.len() > 34_000, "{}", plant.recorded.len());
    assert_eq!(restarted, through);
    assert_eq!(restarted_current, through_current);
    assert_eq!(restored.snapshot(), engine.snapshot());

    // The run has what a restart must carry: corrections of closed periods and work orders.
    let corrections = through.iter().filter(|p| p.result.version > 1).count();
    assert!(corrections >= 3, "{corrections} corrections");
    assert!(
        through
            .iter()
            .any(|p| p.result.period.kind == OeePeriodKind::Wo),
        "a closed work order"
    );

    // Duplicates after the snapshot: every message again, each recognised as a duplicate (a count
    // sample that was merged away by the one it was merged into): nothing changes, nothing is
    // published.
    let now = engine.watermark().expect("event time");
    let (current_before, closed_before) = (restored.current(Some(now)), restored.all_closed());
    for (topic, bytes) in &plant.recorded {
        let topic: UnsTopic = topic.parse().expect("recorded topic");
        let decoded = input::decode(&topic, bytes)
            .expect("decodes")
            .expect("used");
        let applied = restored.apply(decoded).expect("accepted");
        assert!(applied.duplicate, "applied twice: {topic}");
        assert!(applied.publications.is_empty(), "{topic} published again");
    }
    assert_eq!(restored.current(Some(now)), current_before);
    assert_eq!(restored.all_closed(), closed_before);
}

/// Merging the count samples of closed hours changes no result: the same messages with every sample
/// kept give the same publications (late samples inside merged stretches, repeated samples and late
/// states included) and the same current figures, while the engine holds a fraction of the entries.
#[test]
fn merging_count_samples_changes_no_result() {
    let mut plant = Plant::new(&config());
    thirty_hours(&mut plant);
    let mut every_sample = settings(&config());
    every_sample.compact_counts = false;
    let (kept, kept_current, full) = run(Engine::new(every_sample), &plant.recorded, None);
    assert_eq!(kept, plant.published);
    let (merged, merged_current, compact) =
        run(Engine::new(settings(&config())), &plant.recorded, None);
    assert_eq!(merged, kept);
    assert_eq!(merged_current, kept_current);
    // 30 h of a sample every 10 s per cell is 32 400 good samples; states and scrap come on top.
    assert!(full.n_entries() > 34_000, "{}", full.n_entries());
    assert!(
        compact.n_entries() * 5 < full.n_entries(),
        "{} entries merged vs {} kept",
        compact.n_entries(),
        full.n_entries()
    );
}

/// Memory per asset is bounded: over 100 hours of event time (twice the retention), one cell counting
/// every 10 s and changing state every 7 minutes holds as many entries at 100 h as at 60 h, and far
/// fewer than the 17 280 samples of 48 hours the engine kept before: 48 h of states, the samples of
/// the last two hours (the hour not closed yet and the one before, merged at the next hour) and about
/// one sample per hour before them.
#[test]
fn entries_per_asset_stay_bounded_over_a_long_run() {
    let mut engine = Engine::new(settings(&config()));
    let t0 = at("00:00");
    let apply = |engine: &mut Engine, input| {
        engine.apply(input).expect("accepted");
    };
    let filler = loc(FILLER);
    apply(
        &mut engine,
        Input::Meta {
            location: filler.clone(),
            meta: meta_doc(360.0),
        },
    );
    let mut at_60 = 0;
    let mut total = 0.0;
    for tick in 0..(100 * 360) {
        let t = t0 + tick * 10_000;
        if tick % 42 == 0 || tick % 42 == 4 {
            let (category, name) = if tick % 42 == 0 {
                (UnplannedDown, "Jam")
            } else {
                (Running, "Execute")
            };
            apply(
                &mut engine,
                Input::State {
                    location: filler.clone(),
                    doc: state_doc(t, category, name),
                },
            );
        }
        total += 2.0;
        apply(
            &mut engine,
            Input::Count {
                location: filler.clone(),
                doc: count_doc(Good, total, t),
            },
        );
        if tick == 60 * 360 - 1 {
            at_60 = engine.n_entries();
        }
    }
    let at_100 = engine.n_entries();
    // 48 h of states (two every 7 minutes: 823), 2 h of samples (720) and one sample per hour (48).
    let expected = 823 + 720 + 48;
    assert!(
        at_100 <= expected + 30,
        "{at_100} entries, expected about {expected}"
    );
    assert!(at_100 <= at_60 + 20, "{at_60} at 60 h, {at_100} at 100 h");
}
