//! `_state` and `_state/events`: [`StateDoc`], [`StateEvent`] and the two state axes, [`Mode`] ×
//! [`StateCategory`].

use serde::{Deserialize, Serialize};

use super::{EventHeader, SchemaTag, Timestamp, document};

/// The current machine mode and state, retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    /// Always `uns/state/v1`.
    pub schema: SchemaTag<StateDoc>,
    /// What was planned.
    pub mode: Mode,
    /// What the machine does.
    pub state: MachineState,
    /// When this mode and state began.
    pub since: Timestamp,
}
document!(StateDoc, "state", 1);

impl StateDoc {
    /// The document for `mode` and `state`, begun at `since`.
    #[must_use]
    pub fn new(mode: Mode, state: MachineState, since: Timestamp) -> Self {
        Self {
            schema: SchemaTag::default(),
            mode,
            state,
            since,
        }
    }
}

/// A state transition. The header's `reason` is the reason of the transition (e.g. a stop reason an
/// operator entered); a correction (`corrects`) re-states an earlier transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEvent {
    /// Always `uns/state-event/v1`.
    pub schema: SchemaTag<StateEvent>,
    /// Event id, times, correction.
    #[serde(flatten)]
    pub header: EventHeader,
    /// Mode and state that ended.
    pub from: StateSnapshot,
    /// Mode and state that began at `occurred_at`.
    pub to: StateSnapshot,
    /// How long `from` lasted, in milliseconds.
    pub duration_ms: u64,
}
document!(StateEvent, "state-event", 1);

/// A mode and a state at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// What was planned.
    pub mode: Mode,
    /// What the machine did.
    pub state: MachineState,
}

/// The machine state: an OEE category plus the raw code and names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    /// The category that decides the OEE time bucket.
    pub category: StateCategory,
    /// The raw state code from the PLC, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The state's name, e.g. `Jam at infeed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The reason assigned to it (by the PLC or an operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl MachineState {
    /// A state of `category` with its name and no raw code or reason.
    #[must_use]
    pub fn named(category: StateCategory, name: &str) -> Self {
        Self {
            category,
            code: None,
            name: Some(name.to_owned()),
            reason: None,
        }
    }
}

/// What was planned for the machine (first state axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Planned production.
    Production,
    /// Changing over between products.
    Changeover,
    /// Planned maintenance.
    Maintenance,
    /// Cleaning.
    Cleaning,
    /// Idle by plan.
    Idle,
    /// No order is scheduled.
    NoOrder,
    /// Outside any shift.
    NoShift,
}

/// What the machine does (second state axis); the oee service maps it to a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateCategory {
    /// Producing (APT).
    Running,
    /// A short stop; availability or performance loss per [`super::MinorStopPolicy`].
    MinorStop,
    /// Breakdown (ADET).
    UnplannedDown,
    /// Setup (ASUT).
    Setup,
    /// Planned downtime (PDT).
    PlannedDown,
    /// Waiting for material (ADOT).
    Starved,
    /// Downstream is full (ADOT).
    Blocked,
    /// Outside planned operating time.
    NotScheduled,
    /// No mapping for the raw state.
    Unknown,
}
