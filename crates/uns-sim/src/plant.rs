//! The machine model of one simulated cell (a Sparkplug device): a state machine with realistic
//! durations, good/reject counters at the cycle time, and process values that follow the state.
//!
//! Pure and deterministic: [`DeviceModel::step`] advances simulated time by `dt` seconds and draws every
//! random number from the device's own [`Rng`], so the same seed gives the same values whatever the wall
//! clock, the broker or the other devices do.
//!
//! | state | `State/Code` (PackML) | `State/Name` | duration (simulated) | category for OEE |
//! |---|---|---|---|---|
//! | running | 6 | `Execute` | exponential, mean 10 min | running |
//! | minor stop | 5 | `Suspended` | 10-90 s | minor_stop |
//! | jam | 11 | `Held` | 2-15 min | unplanned_down |
//! | changeover | 2 | `Stopped` | 15-40 min | setup |
//! | planned break | 4 | `Idle` | 15-30 min | planned_down |
//!
//! After a run ends the next state is a minor stop (75 %), a jam (15 %), a changeover (5 %) or a planned
//! break (5 %); every stop returns to running.

use uns_sparkplug::edge::MetricDef;
use uns_sparkplug::{DataType, PropertySet, PropertyValue, Value};

use crate::config::CellKind;
use crate::rng::Rng;

/// The metric names every simulated device reports, in birth order (the `Sim/Signal/{k}` extras follow).
pub const STANDARD_METRICS: [&str; 7] = [
    "State/Code",
    "State/Name",
    "Count/Good",
    "Count/Scrap",
    "Process/Temperature",
    "Process/Pressure",
    "Speed",
];

/// The property key that carries a metric's engineering unit (UNECE Rec 20 code, e.g. `CEL`, `BAR`) in
/// DBIRTH. Ignition and Tahu use the same key.
pub const UNIT_PROPERTY: &str = "engUnit";

/// A machine state of the simulated cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Producing at close to the ideal rate.
    Running,
    /// A short stop (starved, blocked, a fallen bottle).
    MinorStop,
    /// An unplanned breakdown that needs an operator.
    Jam,
    /// A planned format or product change.
    Changeover,
    /// A planned break (shift break, cleaning).
    Break,
}

impl MachineState {
    /// The PackML-like state code published as `State/Code`.
    pub fn code(self) -> i32 {
        match self {
            MachineState::Running => 6,
            MachineState::MinorStop => 5,
            MachineState::Jam => 11,
            MachineState::Changeover => 2,
            MachineState::Break => 4,
        }
    }

    /// The PackML state name published as `State/Name`.
    pub fn name(self) -> &'static str {
        match self {
            MachineState::Running => "Execute",
            MachineState::MinorStop => "Suspended",
            MachineState::Jam => "Held",
            MachineState::Changeover => "Stopped",
            MachineState::Break => "Idle",
        }
    }
}

/// Process setpoints of a cell kind.
struct Profile {
    /// Running temperature (°C); at rest it relaxes towards [`AMBIENT_CEL`].
    temperature: f64,
    /// Running pressure (bar).
    pressure: f64,
    /// Share of parts rejected.
    reject_rate: f64,
}

const AMBIENT_CEL: f64 = 20.0;

fn profile(kind: CellKind) -> Profile {
    match kind {
        // Product temperature at the filler valves, CO2 counter-pressure.
        CellKind::Filler => Profile {
            temperature: 8.5,
            pressure: 2.5,
            reject_rate: 0.006,
        },
        // Cap chuck motor temperature, plant air.
        CellKind::Capper => Profile {
            temperature: 38.0,
            pressure: 6.0,
            reject_rate: 0.004,
        },
        // Hot-melt glue for labels and case flaps.
        CellKind::Labeler => Profile {
            temperature: 140.0,
            pressure: 6.0,
            reject_rate: 0.003,
        },
        CellKind::CasePacker => Profile {
            temperature: 165.0,
            pressure: 6.0,
            reject_rate: 0.002,
        },
        CellKind::Generic => Profile {
            temperature: 45.0,
            pressure: 4.0,
            reject_rate: 0.005,
        },
    }
}

/// One simulated cell.
#[derive(Debug, Clone)]
pub struct DeviceModel {
    ideal_per_s: f64,
    profile_temperature: f64,
    profile_pressure: f64,
    reject_rate: f64,
    rng: Rng,
    state: MachineState,
    /// Simulated seconds left in `state`.
    remaining_s: f64,
    /// Running performance factor (0.85..1.0), redrawn each run.
    performance: f64,
    /// Fraction of a part produced but not yet counted.
    partial_part: f64,
    good: u64,
    reject: u64,
    temperature: f64,
    pressure: f64,
    signals: Vec<f64>,
    /// The values last returned by `step` (or the initial ones), for report by exception.
    last: Vec<Value>,
}

impl DeviceModel {
    /// A cell of `kind` with an ideal rate in parts per hour and `n_signals` extra `Sim/Signal/{k}`
    /// metrics; `stream` names its random stream (e.g. `line-1/filler`).
    pub fn new(
        seed: u64,
        stream: &str,
        kind: CellKind,
        ideal_per_hour: f64,
        n_signals: usize,
    ) -> DeviceModel {
        let profile = profile(kind);
        let mut rng = Rng::for_stream(seed, stream);
        let remaining_s = rng.exponential(600.0);
        let performance = rng.uniform(0.85, 1.0);
        let signals = (0..n_signals).map(|_| rng.uniform(0.0, 100.0)).collect();
        let mut model = DeviceModel {
            ideal_per_s: ideal_per_hour / 3600.0,
            profile_temperature: profile.temperature,
            profile_pressure: profile.pressure,
            reject_rate: profile.reject_rate,
            rng,
            state: MachineState::Running,
            remaining_s,
            performance,
            partial_part: 0.0,
            good: 0,
            reject: 0,
            temperature: profile.temperature,
            pressure: profile.pressure,
            signals,
            last: Vec::new(),
        };
        model.last = model.values();
        model
    }

    /// The current machine state.
    pub fn state(&self) -> MachineState {
        self.state
    }

    /// `(Count/Good, Count/Scrap)` now.
    pub fn counters(&self) -> (u64, u64) {
        (self.good, self.reject)
    }

    /// Sets the counters (retentive counters after a restart, as a PLC keeps them) without
    /// reporting them as a change: the next birth carries them.
    pub fn restore_counters(&mut self, good: u64, reject: u64) {
        self.good = good;
        self.reject = reject;
        self.last = self.values();
    }

    /// The most parts either counter can grow by in `dt_s` simulated seconds (at the ideal rate,
    /// plus the part in progress).
    pub fn max_parts(&self, dt_s: f64) -> u64 {
        // A small non-negative number (rate × time), so the cast is exact enough.
        (self.ideal_per_s * dt_s.max(0.0)).ceil() as u64 + 1
    }

    /// The birth definitions: every metric with its datatype, current value and unit property.
    pub fn metric_defs(&self) -> Vec<MetricDef> {
        self.names()
            .into_iter()
            .zip(self.values())
            .map(|(name, value)| {
                let unit = match name.as_str() {
                    "Process/Temperature" => Some("CEL"),
                    "Process/Pressure" => Some("BAR"),
                    // Parts: "each", as the work orders count them; speed: parts per minute,
                    // UNECE Rec 20 "C94" (reciprocal minute).
                    "Count/Good" | "Count/Scrap" => Some("EA"),
                    "Speed" => Some("C94"),
                    _ => None,
                };
                let def = MetricDef::new(name, value);
                match unit {
                    Some(unit) => def.with_properties(unit_property(unit)),
                    None => def,
                }
            })
            .collect()
    }

    /// Advances simulated time by `dt_s` seconds and returns the metrics whose value changed, in birth
    /// order.
    pub fn step(&mut self, dt_s: f64) -> Vec<(String, Value)> {
        let mut left_s = dt_s.max(0.0);
        while left_s > 0.0 {
            let slice_s = left_s.min(self.remaining_s);
            self.run_for(slice_s);
            left_s -= slice_s;
            self.remaining_s -= slice_s;
            if self.remaining_s <= 0.0 {
                self.transition();
            }
        }
        self.drift(dt_s.max(0.0));
        let values = self.values();
        let changed = self
            .names()
            .into_iter()
            .zip(values.iter().cloned())
            .zip(&self.last)
            .filter(|((_, value), last)| value != *last)
            .map(|(named, _)| named)
            .collect();
        self.last = values;
        changed
    }

    /// Counts the parts made in `slice_s` seconds of the current state.
    fn run_for(&mut self, slice_s: f64) {
        if self.state != MachineState::Running {
            return;
        }
        self.partial_part += slice_s * self.ideal_per_s * self.performance;
        let whole = self.partial_part.floor();
        self.partial_part -= whole;
        // `whole` is a small non-negative count (rate × slice), so the cast is exact.
        for _ in 0..whole as u64 {
            if self.rng.chance(self.reject_rate) {
                self.reject += 1;
            } else {
                self.good += 1;
            }
        }
    }

    fn transition(&mut self) {
        let (state, duration_s) = match self.state {
            MachineState::Running => {
                let draw = self.rng.unit();
                if draw < 0.75 {
                    (MachineState::MinorStop, self.rng.uniform(10.0, 90.0))
                } else if draw < 0.90 {
                    (MachineState::Jam, self.rng.uniform(120.0, 900.0))
                } else if draw < 0.95 {
                    (MachineState::Changeover, self.rng.uniform(900.0, 2400.0))
                } else {
                    (MachineState::Break, self.rng.uniform(900.0, 1800.0))
                }
            }
            _ => {
                self.performance = self.rng.uniform(0.85, 1.0);
                (MachineState::Running, self.rng.exponential(600.0))
            }
        };
        self.state = state;
        // At least a second, so a state is visible even at coarse sampling.
        self.remaining_s = duration_s.max(1.0);
    }

    /// Process values: first-order response towards the state's target plus noise.
    fn drift(&mut self, dt_s: f64) {
        let running = self.state == MachineState::Running;
        let temperature_target = if running || self.state == MachineState::MinorStop {
            self.profile_temperature
        } else {
            // Heaters stay on during short stops; they go to standby otherwise.
            AMBIENT_CEL + (self.profile_temperature - AMBIENT_CEL) * 0.6
        };
        let pull = (dt_s / 120.0).min(1.0);
        self.temperature += (temperature_target - self.temperature) * pull
            + self.rng.normal(0.05) * dt_s.sqrt().min(3.0);
        let pressure_target = if running {
            self.profile_pressure
        } else {
            self.profile_pressure * 1.03
        };
        self.pressure += (pressure_target - self.pressure) * (dt_s / 10.0).min(1.0)
            + self.rng.normal(0.01) * dt_s.sqrt().min(3.0);
        for signal in &mut self.signals {
            let mut delta = self.rng.normal(1.0);
            if delta.abs() < 0.001 {
                // A signal changes at every step: benchmarks and store-and-forward tests count on it.
                delta = 0.001;
            }
            *signal = round_to(*signal + delta, 3);
        }
    }

    fn names(&self) -> Vec<String> {
        STANDARD_METRICS
            .iter()
            .map(|name| (*name).to_owned())
            .chain((1..=self.signals.len()).map(|k| format!("Sim/Signal/{k}")))
            .collect()
    }

    fn values(&self) -> Vec<Value> {
        let speed = if self.state == MachineState::Running {
            round_to(self.ideal_per_s * 60.0 * self.performance, 1)
        } else {
            0.0
        };
        let mut values = vec![
            Value::Int32(self.state.code()),
            Value::String(self.state.name().to_owned()),
            Value::UInt64(self.good),
            Value::UInt64(self.reject),
            // Published to 0.1 °C, so report by exception suppresses sensor noise below that.
            Value::Float(round_to(self.temperature, 1) as f32),
            Value::Double(round_to(self.pressure, 2)),
            Value::Double(speed),
        ];
        values.extend(self.signals.iter().map(|&signal| Value::Double(signal)));
        values
    }
}

fn unit_property(unit: &str) -> PropertySet {
    PropertySet {
        properties: vec![(
            UNIT_PROPERTY.to_owned(),
            PropertyValue {
                datatype: Some(DataType::String),
                value: Some(Value::String(unit.to_owned())),
            },
        )],
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
