//! The machine model and the config: determinism per seed, realistic behaviour, the demo plant.

use uns_sim::plant::{DeviceModel, MachineState, STANDARD_METRICS};
use uns_sim::{CellKind, SimConfig};
use uns_sparkplug::Value;

/// Every value a model reports over `n_steps` samples of `dt_s` seconds.
fn run(seed: u64, stream: &str, n_steps: usize, dt_s: f64) -> Vec<Vec<(String, Value)>> {
    let mut model = DeviceModel::new(seed, stream, CellKind::Filler, 12_000.0, 2);
    (0..n_steps).map(|_| model.step(dt_s)).collect()
}

#[test]
fn same_seed_gives_the_same_sequence_of_values() {
    let first = run(7, "line-1/filler", 2_000, 1.0);
    let second = run(7, "line-1/filler", 2_000, 1.0);
    assert_eq!(first, second);
    assert!(first.iter().map(Vec::len).sum::<usize>() > 2_000);
}

#[test]
fn another_seed_or_device_gives_other_values() {
    let base = run(7, "line-1/filler", 200, 1.0);
    assert_ne!(base, run(8, "line-1/filler", 200, 1.0));
    assert_ne!(base, run(7, "line-2/filler", 200, 1.0));
}

#[test]
fn a_shift_visits_every_state_with_monotonic_counters() {
    let mut model = DeviceModel::new(3, "line-1/filler", CellKind::Filler, 12_000.0, 0);
    let mut states = Vec::new();
    let (mut good, mut reject) = (0u64, 0u64);
    // Three 8-hour shifts at one sample per 10 simulated seconds.
    for _ in 0..(3 * 8 * 360) {
        for (name, value) in model.step(10.0) {
            match (name.as_str(), value) {
                ("Count/Good", Value::UInt64(count)) => {
                    assert!(count > good, "Count/Good went from {good} to {count}");
                    good = count;
                }
                ("Count/Scrap", Value::UInt64(count)) => {
                    assert!(count > reject);
                    reject = count;
                }
                ("State/Code", Value::Int32(code)) => states.push(code),
                ("Speed", Value::Double(speed)) => assert!((0.0..=200.0).contains(&speed)),
                _ => {}
            }
        }
    }
    for state in [
        MachineState::Running,
        MachineState::MinorStop,
        MachineState::Jam,
        MachineState::Changeover,
        MachineState::Break,
    ] {
        assert!(states.contains(&state.code()), "{state:?} never happened");
    }
    // 12 000/h ideal over 24 h with stops and 85-100 % performance.
    assert!((150_000..288_000).contains(&good), "good {good}");
    let reject_share = reject as f64 / (good + reject) as f64;
    assert!(
        (0.003..0.01).contains(&reject_share),
        "reject share {reject_share}"
    );
}

#[test]
fn birth_definitions_carry_types_and_units() {
    let model = DeviceModel::new(1, "line-1/filler", CellKind::Filler, 12_000.0, 1);
    let defs = model.metric_defs();
    let names: Vec<&str> = defs.iter().map(|def| def.name.as_str()).collect();
    let mut expected: Vec<&str> = STANDARD_METRICS.to_vec();
    expected.push("Sim/Signal/1");
    assert_eq!(names, expected);
    let unit = |name: &str| {
        defs.iter()
            .find(|def| def.name == name)
            .and_then(|def| def.properties.as_ref())
            .and_then(|properties| properties.get("engUnit"))
            .and_then(|unit| unit.value.clone())
    };
    assert_eq!(
        unit("Process/Temperature"),
        Some(Value::String("CEL".to_owned()))
    );
    assert_eq!(
        unit("Process/Pressure"),
        Some(Value::String("BAR".to_owned()))
    );
    // Counts in parts ("each"), speed in parts per minute: every metric with a physical
    // meaning has a unit (issue 10 item 3).
    for counter in ["Count/Good", "Count/Scrap"] {
        assert_eq!(
            unit(counter),
            Some(Value::String("EA".to_owned())),
            "{counter}"
        );
    }
    assert_eq!(unit("Speed"), Some(Value::String("C94".to_owned())));
    assert_eq!(model.state(), MachineState::Running);
}

#[test]
fn the_default_is_the_demo_plant() {
    let config = SimConfig::default();
    assert_eq!(config.group, "acme-berlin");
    let plant: Vec<(String, Vec<String>)> = config
        .lines
        .iter()
        .map(|line| {
            let cells = line.cells.iter().map(|cell| cell.device.clone()).collect();
            (line.edge.clone(), cells)
        })
        .collect();
    let expected = [
        ("line-1", vec!["filler", "capper", "labeler"]),
        ("line-2", vec!["filler", "case-packer"]),
    ];
    let expected: Vec<(String, Vec<String>)> = expected
        .iter()
        .map(|(edge, cells)| {
            let cells = cells.iter().map(|cell| (*cell).to_owned()).collect();
            ((*edge).to_owned(), cells)
        })
        .collect();
    assert_eq!(plant, expected);
    assert!(config.validate().is_ok());
}

#[test]
fn config_from_toml_with_defaults_and_validation() {
    let check = |text: &str, valid: bool| {
        let config: SimConfig = toml::from_str(text).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(config.validate().is_ok(), valid, "{text}");
        config
    };
    let config = check("seed = 42\nspeed = 60.0", true);
    assert_eq!(
        (config.seed, config.speed, config.lines.len()),
        (42, 60.0, 2)
    );
    let config = check(
        "[scale]\nnodes = 3\ndevices_per_node = 2\nmetrics_per_device = 50",
        true,
    );
    assert!(config.scale.is_some());
    check("speed = 0.0", false);
    check("rate_hz = -1.0", false);
    check("keep_alive_s = 0", false);
    check("lines = []", false);
    check(
        "[[lines]]\nedge = \"a\"\ncells = []\n[[lines]]\nedge = \"a\"\ncells = [{ device = \"d\", kind = \"filler\", ideal_per_hour = 1.0 }]",
        false,
    );
    assert!(
        toml::from_str::<SimConfig>("speeed = 2.0").is_err(),
        "unknown keys are refused"
    );
}
