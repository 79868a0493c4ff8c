//! The lifecycle of a work order, without I/O: which verb moves which status where
//! ([`next_status`]), and how a changed production order revises a work order
//! ([`revise`]). Time is never read here; callers pass it in.
//!
//! ```text
//!   planned ──release──► released ──start──► running ──complete──► completed ──close──► closed
//!      │                    │                 ▲   │                    ▲
//!      │                    │           resume│   │hold                │
//!      │                    │                 │   ▼                    │
//!      └──cancel──► cancelled ◄──cancel───────  held ──complete────────┘
//! ```
//!
//! `cancel` is refused on a running order: hold it first, so the counts stop and the operator
//! decides knowingly. `close` follows the ERP's acceptance of the final confirmation
//! (`confirmation_posted`), or the verb.

use std::fmt;
use std::str::FromStr;

use uns_model::payload::{ProductionOrder, Quantity, WorkOrderStatus};

/// A lifecycle command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// `planned → released`.
    Release,
    /// `released → running`.
    Start,
    /// `running → held`.
    Hold,
    /// `held → running`.
    Resume,
    /// `running | held → completed` (the final confirmation is requested).
    Complete,
    /// `planned | released | held → cancelled`.
    Cancel,
    /// `completed → closed`.
    Close,
}

impl Verb {
    /// Every verb, in lifecycle order.
    pub const ALL: [Verb; 7] = [
        Verb::Release,
        Verb::Start,
        Verb::Hold,
        Verb::Resume,
        Verb::Complete,
        Verb::Cancel,
        Verb::Close,
    ];

    /// The verb as in `_cmd/wo/{verb}` and `POST /api/v1/work-orders/{id}/{verb}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Release => "release",
            Verb::Start => "start",
            Verb::Hold => "hold",
            Verb::Resume => "resume",
            Verb::Complete => "complete",
            Verb::Cancel => "cancel",
            Verb::Close => "close",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown verb.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verb {0:?} (expected release, start, hold, resume, complete, cancel or close)")]
pub struct UnknownVerb(pub String);

impl FromStr for Verb {
    type Err = UnknownVerb;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Verb::ALL
            .into_iter()
            .find(|verb| verb.as_str() == text)
            .ok_or_else(|| UnknownVerb(text.to_owned()))
    }
}

/// The snake_case name of a status, as on the wire.
pub fn status_name(status: WorkOrderStatus) -> &'static str {
    match status {
        WorkOrderStatus::Planned => "planned",
        WorkOrderStatus::Released => "released",
        WorkOrderStatus::Running => "running",
        WorkOrderStatus::Held => "held",
        WorkOrderStatus::Completed => "completed",
        WorkOrderStatus::Closed => "closed",
        WorkOrderStatus::Cancelled => "cancelled",
    }
}

/// Parses a status name (`?status=running`).
pub fn parse_status(text: &str) -> Option<WorkOrderStatus> {
    use WorkOrderStatus::*;
    [
        Planned, Released, Running, Held, Completed, Closed, Cancelled,
    ]
    .into_iter()
    .find(|status| status_name(*status) == text)
}

/// Why a verb does not apply to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {verb} an order that is {}{}", status_name(*.from), hint(*.verb, *.from))]
pub struct IllegalTransition {
    /// The verb asked for.
    pub verb: Verb,
    /// The status the order is in.
    pub from: WorkOrderStatus,
}

fn hint(verb: Verb, from: WorkOrderStatus) -> &'static str {
    use WorkOrderStatus::*;
    match (verb, from) {
        (Verb::Cancel, Running) => " (hold it first, then cancel)",
        (Verb::Start, Planned) => " (release it first)",
        (Verb::Start, Held) => " (resume it)",
        (Verb::Resume, Released) => " (start it)",
        _ => "",
    }
}

/// The status `verb` leads to from `from`, or why it does not apply.
pub fn next_status(
    from: WorkOrderStatus,
    verb: Verb,
) -> Result<WorkOrderStatus, IllegalTransition> {
    use WorkOrderStatus::*;
    let to = match (verb, from) {
        (Verb::Release, Planned) => Released,
        (Verb::Start, Released) => Running,
        (Verb::Hold, Running) => Held,
        (Verb::Resume, Held) => Running,
        (Verb::Complete, Running | Held) => Completed,
        (Verb::Cancel, Planned | Released | Held) => Cancelled,
        (Verb::Close, Completed) => Closed,
        _ => return Err(IllegalTransition { verb, from }),
    };
    Ok(to)
}

/// What a new version of a production order does to its work order.
#[derive(Debug, Clone, PartialEq)]
pub enum Revision {
    /// Nothing that matters changed (a re-delivery, or only `received_at`/`revision`).
    Unchanged,
    /// Accepted: the work order takes the new plan; these fields changed.
    Accepted {
        /// Names of the fields that changed, in wire spelling.
        changed: Vec<&'static str>,
    },
    /// Refused: the order is past the point where these fields may change.
    Refused {
        /// Why, in one sentence naming the fields.
        reason: String,
    },
}

/// The fields of a production order whose change is *safe* on a running (or held) order:
/// they change the plan, not what is being made, where, or from what.
pub const SAFE_WHILE_RUNNING: &[&str] = &[
    "quantity",
    "earliest_start_time",
    "latest_end_time",
    "priority",
    "description",
    "parameters",
    "equipment",
    "erp_ref",
];

/// Decides whether `new` may replace `old` on a work order in `status` that has produced
/// `good` so far (see [`SAFE_WHILE_RUNNING`]):
///
/// - planned or released: every change is accepted;
/// - running or held: only safe fields; a quantity must keep its unit and not fall below the
///   good quantity already produced; material, hierarchy scope, operations and components
///   (what is made, where, by which routing, from what) are refused;
/// - completed, closed or cancelled: nothing changes any more.
pub fn revise(
    status: WorkOrderStatus,
    good: f64,
    old: &ProductionOrder,
    new: &ProductionOrder,
) -> Revision {
    let changed = changed_fields(old, new);
    if changed.is_empty() {
        return Revision::Unchanged;
    }
    use WorkOrderStatus::*;
    match status {
        Planned | Released => Revision::Accepted { changed },
        Running | Held => {
            let unsafe_fields: Vec<&str> = changed
                .iter()
                .copied()
                .filter(|field| !SAFE_WHILE_RUNNING.contains(field))
                .collect();
            if !unsafe_fields.is_empty() {
                return Revision::Refused {
                    reason: format!(
                        "the order is {}: {} may not change any more (only {} may)",
                        status_name(status),
                        unsafe_fields.join(", "),
                        SAFE_WHILE_RUNNING.join(", ")
                    ),
                };
            }
            if changed.contains(&"quantity")
                && let Some(reason) = unsafe_quantity(&old.quantity, &new.quantity, good)
            {
                return Revision::Refused { reason };
            }
            Revision::Accepted { changed }
        }
        Completed | Closed | Cancelled => Revision::Refused {
            reason: format!(
                "the order is {}: it accepts no changes ({} changed)",
                status_name(status),
                changed.join(", ")
            ),
        },
    }
}

fn unsafe_quantity(old: &Quantity, new: &Quantity, good: f64) -> Option<String> {
    if new.uom != old.uom {
        return Some(format!(
            "the order is running: its quantity unit may not change ({} to {})",
            old.uom, new.uom
        ));
    }
    if new.qty < good {
        return Some(format!(
            "the new quantity {} {} is below the {} {} already produced",
            new.qty, new.uom, good, new.uom
        ));
    }
    None
}

/// The fields (wire names) in which two versions of an order differ, ignoring `revision`
/// and `received_at`, which change with every delivery.
pub fn changed_fields(old: &ProductionOrder, new: &ProductionOrder) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("erp_ref", old.erp_ref != new.erp_ref);
    check("material", old.material != new.material);
    check("description", old.description != new.description);
    check("quantity", old.quantity != new.quantity);
    check(
        "earliest_start_time",
        old.earliest_start_time != new.earliest_start_time,
    );
    check(
        "latest_end_time",
        old.latest_end_time != new.latest_end_time,
    );
    check(
        "hierarchy_scope",
        old.hierarchy_scope != new.hierarchy_scope,
    );
    check("equipment", old.equipment != new.equipment);
    check("priority", old.priority != new.priority);
    check("parameters", old.parameters != new.parameters);
    check("operations", old.operations != new.operations);
    check("components", old.components != new.components);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkOrderStatus::*;
    use uns_model::payload::{MaterialRequirement, MaterialUse, SchemaTag, Uom};

    const ALL_STATUSES: [WorkOrderStatus; 7] = [
        Planned, Released, Running, Held, Completed, Closed, Cancelled,
    ];

    #[test]
    fn the_transition_table_is_exactly_the_lifecycle() {
        let allowed = [
            (Planned, Verb::Release, Released),
            (Released, Verb::Start, Running),
            (Running, Verb::Hold, Held),
            (Held, Verb::Resume, Running),
            (Running, Verb::Complete, Completed),
            (Held, Verb::Complete, Completed),
            (Planned, Verb::Cancel, Cancelled),
            (Released, Verb::Cancel, Cancelled),
            (Held, Verb::Cancel, Cancelled),
            (Completed, Verb::Close, Closed),
        ];
        for from in ALL_STATUSES {
            for verb in Verb::ALL {
                let expected = allowed
                    .iter()
                    .find(|(f, v, _)| *f == from && *v == verb)
                    .map(|(_, _, to)| *to);
                match (next_status(from, verb), expected) {
                    (Ok(to), Some(expected)) => assert_eq!(to, expected, "{verb} from {from:?}"),
                    (Err(err), None) => {
                        assert_eq!(err, IllegalTransition { verb, from });
                        assert!(err.to_string().starts_with(&format!("cannot {verb}")));
                    }
                    (got, expected) => panic!("{verb} from {from:?}: {got:?}, wanted {expected:?}"),
                }
            }
        }
    }

    #[test]
    fn refusals_say_what_to_do_instead() {
        let err = next_status(Running, Verb::Cancel).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot cancel an order that is running (hold it first, then cancel)"
        );
        let err = next_status(Planned, Verb::Start).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot start an order that is planned (release it first)"
        );
    }

    #[test]
    fn verbs_and_statuses_round_trip() {
        for verb in Verb::ALL {
            assert_eq!(verb.as_str().parse::<Verb>(), Ok(verb));
        }
        assert!("pause".parse::<Verb>().is_err());
        for status in ALL_STATUSES {
            let wire = serde_json::to_value(status).unwrap();
            assert_eq!(wire, status_name(status));
            assert_eq!(parse_status(status_name(status)), Some(status));
        }
        assert_eq!(parse_status("paused"), None);
    }

    pub(crate) fn order(qty: f64) -> ProductionOrder {
        ProductionOrder {
            schema: SchemaTag::default(),
            id: uns_model::topic::Id::new("po-1").unwrap(),
            erp_ref: "PO 1".to_owned(),
            revision: 1,
            material: "BOTTLE-1L".to_owned(),
            description: None,
            quantity: Quantity::new(qty, Uom::EA),
            earliest_start_time: None,
            latest_end_time: None,
            hierarchy_scope: "acme/berlin/packaging/line-1".parse().unwrap(),
            equipment: Some("WC-4711".to_owned()),
            priority: None,
            parameters: Vec::new(),
            operations: Vec::new(),
            components: vec![MaterialRequirement {
                material: "PREFORM".to_owned(),
                description: None,
                quantity: Quantity::new(qty, Uom::EA),
                material_use: MaterialUse::Consumed,
                operation_id: None,
                material_lot_id: Some("L-1".to_owned()),
                material_sublot_id: None,
            }],
            received_at: "2026-12-02T08:00:00.000Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_redelivery_is_no_revision() {
        let old = order(100.0);
        let mut new = old.clone();
        new.revision = 2;
        new.received_at = "2026-12-02T09:00:00.000Z".parse().unwrap();
        for status in ALL_STATUSES {
            assert_eq!(revise(status, 0.0, &old, &new), Revision::Unchanged);
        }
    }

    #[test]
    fn before_the_start_everything_may_change() {
        let old = order(100.0);
        let mut new = order(120.0);
        new.material = "CAN-033".to_owned();
        for status in [Planned, Released] {
            assert_eq!(
                revise(status, 0.0, &old, &new),
                Revision::Accepted {
                    changed: vec!["material", "quantity", "components"]
                }
            );
        }
    }

    #[test]
    fn a_running_order_accepts_only_safe_changes() {
        let old = order(100.0);
        let mut later = old.clone();
        later.quantity.qty = 150.0;
        later.latest_end_time = Some("2026-12-03T08:00:00.000Z".parse().unwrap());
        later.priority = Some(5);
        for status in [Running, Held] {
            assert_eq!(
                revise(status, 40.0, &old, &later),
                Revision::Accepted {
                    changed: vec!["quantity", "latest_end_time", "priority"]
                }
            );
        }
        // Below what was produced already.
        let mut less = old.clone();
        less.quantity.qty = 30.0;
        let Revision::Refused { reason } = revise(Running, 40.0, &old, &less) else {
            panic!("accepted a quantity below the good count");
        };
        assert!(
            reason.contains("below the 40 EA already produced"),
            "{reason}"
        );
        // Another unit.
        let mut kilos = old.clone();
        kilos.quantity.uom = Uom::KGM;
        assert!(matches!(
            revise(Running, 0.0, &old, &kilos),
            Revision::Refused { .. }
        ));
        // What is made and where.
        let mut moved = old.clone();
        moved.hierarchy_scope = "acme/berlin/packaging/line-2".parse().unwrap();
        moved.material = "CAN-033".to_owned();
        let Revision::Refused { reason } = revise(Held, 0.0, &old, &moved) else {
            panic!("accepted a move of a held order");
        };
        assert!(
            reason.starts_with("the order is held: material, hierarchy_scope may not change"),
            "{reason}"
        );
    }

    #[test]
    fn a_finished_order_accepts_nothing() {
        let old = order(100.0);
        let new = order(200.0);
        for status in [Completed, Closed, Cancelled] {
            assert!(matches!(
                revise(status, 0.0, &old, &new),
                Revision::Refused { .. }
            ));
        }
    }
}
