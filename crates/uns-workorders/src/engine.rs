//! The work-order core without I/O: every order's record, the counters' last-seen totals and
//! the learned counting cells, and what each input does to them. Each operation returns an
//! [`Outcome`]: the records it changed (the service writes them to the store first) and the
//! messages to publish afterwards. Time comes in as arguments; the only other source of
//! variety is `Uuid::now_v7()` for event ids.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uns_model::payload::{
    ActivityTimes, CountDoc, EventHeader, GenealogyEvent, GenealogyKind, GoodsMovement,
    LotQuantity, MaterialActual, MaterialUse, MovementKind, ProductionOrder, Quantity, SchemaTag,
    Timestamp, WorkOrder, WorkOrderEvent, WorkOrderEventKind, WorkOrderQuantities, WorkOrderStatus,
};
use uns_model::topic::{Class, CountKind, Id, Location, UnsTopic, slug};
use uuid::Uuid;

use crate::lifecycle::{IllegalTransition, Revision, Verb, next_status, revise, status_name};

/// The rules the engine runs by (the validated `[workorders]` section).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// More than one running order per line (counts then go to the one started last).
    pub parallel_orders_per_line: bool,
    /// Counting cell per line, configured; other lines learn theirs (see [`Engine::count`]).
    pub counting_cells: BTreeMap<Location, Location>,
    /// A partial confirmation after this many units (good + scrap + rework); 0 = never.
    pub confirm_every_units: f64,
    /// A partial confirmation after this long (Unix ms); 0 = never.
    pub confirm_every_ms: i64,
    /// Labor time = machine time × this.
    pub labor_factor: f64,
    /// Release orders as they arrive, start them in turn, complete them at their planned
    /// quantity (the demo).
    pub auto_run: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            parallel_orders_per_line: false,
            counting_cells: BTreeMap::new(),
            confirm_every_units: 0.0,
            confirm_every_ms: 0,
            labor_factor: 1.0,
            auto_run: false,
        }
    }
}

/// Everything the service keeps about one work order (stored as JSON in `orders_v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The document published on `…/{line}/_wo/{id}`.
    pub doc: WorkOrder,
    /// 1, then +1 for each accepted change of its production order.
    pub revision: u32,
    /// The production order version the work order follows.
    pub source: ProductionOrder,
    /// Arrival order, for "in turn" (auto-run) and stable listings.
    pub seq: u64,
    /// Start of the current running interval (Unix ms, event time), while running.
    pub running_since_ms: Option<i64>,
    /// Running time of the closed intervals, ms.
    pub run_ms: i64,
    /// Totals at the last confirmation.
    pub confirmed: Confirmed,
    /// When the last confirmation was requested (or the order first started), Unix ms.
    pub last_confirmation_ms: Option<i64>,
    /// `event_id` of the final `confirmation_requested`; its `confirmation_posted` closes the order.
    pub final_request: Option<Uuid>,
    /// The lot consumed for each component material (from the order or `_cmd/wo/consume`).
    pub component_lots: BTreeMap<String, Id>,
    /// The lot the order produces into.
    pub output_lot: Id,
}

/// Quantities and time already confirmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Confirmed {
    /// Confirmations requested so far.
    pub sequence: u32,
    /// Good confirmed.
    pub good: f64,
    /// Scrap confirmed.
    pub scrap: f64,
    /// Rework confirmed.
    pub rework: f64,
    /// Running time confirmed, ms.
    pub run_ms: i64,
}

/// The last total seen of one counter (`counters_v1`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterRecord {
    /// The total.
    pub total: f64,
    /// Its source time, Unix ms.
    pub timestamp_ms: i64,
}

/// A message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// Where.
    pub topic: UnsTopic,
    /// The JSON.
    pub payload: Bytes,
}

/// Input that was refused, for the `_errors` topic of `location`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Where to report it.
    pub location: Location,
    /// The metric label (`uns_rejected_input{kind=…}`).
    pub kind: &'static str,
    /// Why.
    pub reason: String,
}

/// What an operation changed and what to publish once that is stored.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages, in order.
    pub publications: Vec<Publication>,
    /// Orders to write.
    pub dirty_orders: BTreeSet<Id>,
    /// Counters to write (keys of [`Engine::counters`]).
    pub dirty_counters: BTreeSet<String>,
    /// Learned counting cells to write (by line).
    pub dirty_cells: BTreeSet<Location>,
    /// Refused input.
    pub rejections: Vec<Rejection>,
}

impl Outcome {
    /// Whether nothing changed and nothing is to be said.
    pub fn is_empty(&self) -> bool {
        self.publications.is_empty()
            && self.dirty_orders.is_empty()
            && self.dirty_counters.is_empty()
            && self.dirty_cells.is_empty()
            && self.rejections.is_empty()
    }
}

/// Why a command was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No such work order.
    #[error("no work order {0}")]
    UnknownOrder(Id),
    /// The verb does not apply to the order's status.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// Another order runs on the line.
    #[error(
        "{running} is already running on {line}; hold or complete it first (one running order per line)"
    )]
    LineBusy {
        /// The line.
        line: Location,
        /// The order running there.
        running: Id,
    },
    /// The command was sent to a location the order does not run at.
    #[error("{order} runs on {runs_at}, not on {asked_at}")]
    WrongLocation {
        /// The order.
        order: Id,
        /// Its line.
        runs_at: Location,
        /// The command topic's location.
        asked_at: Location,
    },
    /// A consume for a material that is no component of the order.
    #[error("{material} is not a component of {order}")]
    NotAComponent {
        /// The order.
        order: Id,
        /// The material named.
        material: String,
    },
    /// A consume on an order that is no longer (or not yet) producing.
    #[error("{order} is {status}: lots are recorded on released, running or held orders")]
    NotProducing {
        /// The order.
        order: Id,
        /// Its status name.
        status: &'static str,
    },
}

/// The work orders of one service instance.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    orders: BTreeMap<Id, OrderRecord>,
    counters: BTreeMap<String, CounterRecord>,
    learned_cells: BTreeMap<Location, Location>,
}

impl Engine {
    /// An engine on the state loaded from the store.
    pub fn new(
        config: EngineConfig,
        orders: BTreeMap<Id, OrderRecord>,
        counters: BTreeMap<String, CounterRecord>,
        learned_cells: BTreeMap<Location, Location>,
    ) -> Self {
        Self {
            config,
            orders,
            counters,
            learned_cells,
        }
    }

    /// The order `id`.
    pub fn order(&self, id: &Id) -> Option<&OrderRecord> {
        self.orders.get(id)
    }

    /// Every order, in arrival order.
    pub fn orders(&self) -> Vec<&OrderRecord> {
        let mut orders: Vec<&OrderRecord> = self.orders.values().collect();
        orders.sort_by_key(|record| record.seq);
        orders
    }

    /// The last-seen total of the counter `key` (`{location}/{kind}`).
    pub fn counter(&self, key: &str) -> Option<&CounterRecord> {
        self.counters.get(key)
    }

    /// The counting cell of `line` (configured, else learned), if known.
    pub fn learned_cell(&self, line: &Location) -> Option<&Location> {
        self.learned_cells.get(line)
    }

    /// Where the counts of orders on `scope` come from: the configured cell, else the first
    /// cell below it seen publishing `_count`, else `scope` itself.
    pub fn counting_location(&self, scope: &Location) -> Location {
        self.config
            .counting_cells
            .get(scope)
            .or_else(|| self.learned_cells.get(scope))
            .cloned()
            .unwrap_or_else(|| scope.clone())
    }

    /// Every retained document, for a start: each order and each line's `_wo/_active`.
    pub fn republish(&self) -> Vec<Publication> {
        let mut publications = Vec::new();
        let mut lines = BTreeSet::new();
        for record in self.orders() {
            publications.push(order_doc(record));
            lines.insert(record.doc.hierarchy_scope.clone());
        }
        for line in lines {
            self.push_active(&line, &mut publications);
        }
        publications
    }

    /// A version of a production order arrived: creates its work order, or revises it
    /// (see [`revise`]); a refused revision is reported and changes nothing.
    pub fn production_order(&mut self, order: ProductionOrder, now: Timestamp) -> Outcome {
        let mut outcome = Outcome::default();
        let id = order.id.clone();
        let now_ms = now.unix_ms();
        match self.orders.get_mut(&id) {
            None => {
                let seq = self.orders.values().map(|r| r.seq + 1).max().unwrap_or(1);
                let record = new_record(order, seq, now);
                let line = record.doc.hierarchy_scope.clone();
                outcome.publications.push(event(
                    &record,
                    now,
                    now,
                    WorkOrderEventKind::Created {
                        production_order: Some(id.clone()),
                    },
                ));
                outcome.publications.push(order_doc(&record));
                self.orders.insert(id.clone(), record);
                outcome.dirty_orders.insert(id.clone());
                self.push_active(&line, &mut outcome.publications);
            }
            Some(record) => {
                let good = record.doc.quantities.good.qty;
                match revise(record.doc.status, good, &record.source, &order) {
                    Revision::Unchanged => return outcome,
                    Revision::Refused { reason } => {
                        outcome.rejections.push(Rejection {
                            location: record.doc.hierarchy_scope.clone(),
                            kind: "unsafe_revision",
                            reason: format!(
                                "production order {id} revision {}: {reason}",
                                order.revision
                            ),
                        });
                        return outcome;
                    }
                    Revision::Accepted { .. } => {
                        apply_revision(record, order, now);
                        outcome.publications.push(order_doc(record));
                        outcome.dirty_orders.insert(id.clone());
                        let line = record.doc.hierarchy_scope.clone();
                        self.push_active(&line, &mut outcome.publications);
                    }
                }
            }
        }
        if self.config.auto_run {
            if self
                .orders
                .get(&id)
                .is_some_and(|r| r.doc.status == WorkOrderStatus::Planned)
            {
                // Planned → released cannot fail.
                let _ = self.transition(&id, Verb::Release, now_ms, now, &mut outcome);
            }
            if let Some(line) = self.orders.get(&id).map(|r| r.doc.hierarchy_scope.clone()) {
                self.start_next(&line, now_ms, now, &mut outcome);
            }
        }
        outcome
    }

    /// A lifecycle command for order `id`, sent at `at` (the command topic's location; any
    /// location at or above the order's line is accepted; `None` over HTTP).
    pub fn command(
        &mut self,
        id: &Id,
        verb: Verb,
        at: Option<&Location>,
        now: Timestamp,
    ) -> Result<Outcome, CommandError> {
        self.check_location(id, at)?;
        let mut outcome = Outcome::default();
        self.transition(id, verb, now.unix_ms(), now, &mut outcome)?;
        if self.config.auto_run
            && matches!(verb, Verb::Complete | Verb::Hold | Verb::Cancel)
            && let Some(line) = self.orders.get(id).map(|r| r.doc.hierarchy_scope.clone())
        {
            self.start_next(&line, now.unix_ms(), now, &mut outcome);
        }
        Ok(outcome)
    }

    /// Records that order `id` consumes `lot` for its component `material` from now on.
    pub fn consume(
        &mut self,
        id: &Id,
        lot: Id,
        material: &str,
        at: Option<&Location>,
        now: Timestamp,
    ) -> Result<Outcome, CommandError> {
        self.check_location(id, at)?;
        let record = self
            .orders
            .get_mut(id)
            .ok_or_else(|| CommandError::UnknownOrder(id.clone()))?;
        use WorkOrderStatus::*;
        if !matches!(record.doc.status, Released | Running | Held) {
            return Err(CommandError::NotProducing {
                order: id.clone(),
                status: status_name(record.doc.status),
            });
        }
        let component = record
            .doc
            .components
            .iter()
            .find(|c| c.material == material && c.material_use == MaterialUse::Consumed)
            .ok_or_else(|| CommandError::NotAComponent {
                order: id.clone(),
                material: material.to_owned(),
            })?;
        let uom = component.quantity.uom;
        record
            .component_lots
            .insert(material.to_owned(), lot.clone());
        if !record.doc.lots.iter().any(|actual| actual.lot == lot) {
            record.doc.lots.push(MaterialActual {
                lot,
                material: material.to_owned(),
                quantity: Quantity::new(0.0, uom),
                material_use: MaterialUse::Consumed,
            });
        }
        record.doc.updated_at = now;
        let mut outcome = Outcome::default();
        outcome.publications.push(order_doc(record));
        outcome.dirty_orders.insert(id.clone());
        let line = record.doc.hierarchy_scope.clone();
        self.push_active(&line, &mut outcome.publications);
        Ok(outcome)
    }

    /// A `_count/{kind}` document from `location`: the difference to the last total seen is
    /// added to the order running where `location` counts (a smaller total is a counter reset:
    /// the new total is the increment). The first total ever seen of a counter is its
    /// baseline. A document older than the last one seen is ignored (a re-delivery). The first
    /// cell below a line seen publishing `_count` becomes that line's counting cell unless
    /// one is configured.
    pub fn count(
        &mut self,
        location: &Location,
        kind: CountKind,
        doc: &CountDoc,
        now: Timestamp,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        if kind == CountKind::Produced {
            return outcome;
        }
        let key = format!("{location}/{}", kind.as_str());
        let total = doc.total.qty;
        let previous = self.counters.get(&key).copied();
        if previous.is_some_and(|p| doc.timestamp_ms < p.timestamp_ms) {
            return outcome;
        }
        let delta = match previous {
            None => 0.0,
            Some(p) if total >= p.total => total - p.total,
            Some(_) => total.max(0.0),
        };
        let record = CounterRecord {
            total,
            timestamp_ms: doc.timestamp_ms,
        };
        if previous != Some(record) {
            self.counters.insert(key.clone(), record);
            outcome.dirty_counters.insert(key);
        }
        if let Some(parent) = location.parent()
            && !self.config.counting_cells.contains_key(&parent)
            && !self.learned_cells.contains_key(&parent)
        {
            self.learned_cells.insert(parent.clone(), location.clone());
            outcome.dirty_cells.insert(parent.clone());
            // The cell's `_wo/_active` appears with the running order, if any.
            if self
                .orders
                .values()
                .any(|r| r.doc.hierarchy_scope == parent)
            {
                self.push_active(&parent, &mut outcome.publications);
            }
        }
        if delta <= 0.0 {
            return outcome;
        }
        let occurred = Timestamp::from_unix_ms(doc.timestamp_ms).unwrap_or(now);
        let lines: BTreeSet<Location> = self
            .orders
            .values()
            .filter(|r| r.doc.status == WorkOrderStatus::Running)
            .map(|r| r.doc.hierarchy_scope.clone())
            .filter(|line| self.counting_location(line) == *location)
            .collect();
        for line in lines {
            let Some(id) = self.active_on(&line).map(|r| r.doc.id.clone()) else {
                continue;
            };
            let Some(record) = self.orders.get_mut(&id) else {
                continue;
            };
            if record
                .running_since_ms
                .is_some_and(|since| doc.timestamp_ms < since)
            {
                // Counted before this order started running.
                continue;
            }
            let quantity = match kind {
                CountKind::Good => &mut record.doc.quantities.good,
                CountKind::Scrap => &mut record.doc.quantities.scrap,
                CountKind::Rework => &mut record.doc.quantities.rework,
                CountKind::Produced => continue,
            };
            quantity.qty += delta;
            record.doc.updated_at = occurred;
            outcome.dirty_orders.insert(id.clone());
            let due = self.config.confirm_every_units > 0.0
                && unconfirmed_units(record) >= self.config.confirm_every_units;
            if due {
                confirm(
                    record,
                    false,
                    doc.timestamp_ms,
                    occurred,
                    now,
                    self.config.labor_factor,
                    &mut outcome,
                );
            }
            let reached = record.doc.quantities.good.qty >= record.doc.quantities.planned.qty;
            if self.config.auto_run && reached {
                // Running → completed cannot fail.
                let _ = self.transition(&id, Verb::Complete, doc.timestamp_ms, now, &mut outcome);
                self.start_next(&line, doc.timestamp_ms, now, &mut outcome);
            } else if let Some(record) = self.orders.get(&id) {
                outcome.publications.push(order_doc(record));
                self.push_active(&line, &mut outcome.publications);
            }
        }
        outcome
    }

    /// Time passed: partial confirmations that are due by time.
    pub fn tick(&mut self, now: Timestamp) -> Outcome {
        let mut outcome = Outcome::default();
        if self.config.confirm_every_ms <= 0 {
            return outcome;
        }
        let now_ms = now.unix_ms();
        let due: Vec<Id> = self
            .orders
            .values()
            .filter(|r| r.doc.status == WorkOrderStatus::Running)
            .filter(|r| {
                r.last_confirmation_ms
                    .is_some_and(|last| now_ms - last >= self.config.confirm_every_ms)
                    && unconfirmed_units(r) > 0.0
            })
            .map(|r| r.doc.id.clone())
            .collect();
        for id in due {
            if let Some(record) = self.orders.get_mut(&id) {
                confirm(
                    record,
                    false,
                    now_ms,
                    now,
                    now,
                    self.config.labor_factor,
                    &mut outcome,
                );
                outcome.dirty_orders.insert(id.clone());
                outcome.publications.push(order_doc(record));
                let line = record.doc.hierarchy_scope.clone();
                self.push_active(&line, &mut outcome.publications);
            }
        }
        outcome
    }

    /// The ERP accepted the confirmation `request`: the final one closes its order.
    pub fn confirmation_posted(&mut self, id: &Id, request: Uuid, now: Timestamp) -> Outcome {
        let mut outcome = Outcome::default();
        let is_final = self
            .orders
            .get(id)
            .is_some_and(|r| r.final_request == Some(request));
        if is_final {
            // Completed → closed; an order already closed refuses, which changes nothing.
            let _ = self.transition(id, Verb::Close, now.unix_ms(), now, &mut outcome);
        }
        outcome
    }

    fn check_location(&self, id: &Id, at: Option<&Location>) -> Result<(), CommandError> {
        let record = self
            .orders
            .get(id)
            .ok_or_else(|| CommandError::UnknownOrder(id.clone()))?;
        if let Some(at) = at {
            let line = &record.doc.hierarchy_scope;
            if !line.ancestors().any(|ancestor| ancestor == *at) {
                return Err(CommandError::WrongLocation {
                    order: id.clone(),
                    runs_at: line.clone(),
                    asked_at: at.clone(),
                });
            }
        }
        Ok(())
    }

    /// Applies `verb` to order `id` at event time `at_ms`, or refuses it with nothing changed.
    fn transition(
        &mut self,
        id: &Id,
        verb: Verb,
        at_ms: i64,
        now: Timestamp,
        outcome: &mut Outcome,
    ) -> Result<(), CommandError> {
        let record = self
            .orders
            .get(id)
            .ok_or_else(|| CommandError::UnknownOrder(id.clone()))?;
        let from = record.doc.status;
        let to = next_status(from, verb)?;
        let line = record.doc.hierarchy_scope.clone();
        if to == WorkOrderStatus::Running
            && !self.config.parallel_orders_per_line
            && let Some(running) = self.active_on(&line)
        {
            return Err(CommandError::LineBusy {
                line,
                running: running.doc.id.clone(),
            });
        }
        let labor_factor = self.config.labor_factor;
        let Some(record) = self.orders.get_mut(id) else {
            return Err(CommandError::UnknownOrder(id.clone()));
        };
        let occurred = Timestamp::from_unix_ms(at_ms).unwrap_or(now);
        if from == WorkOrderStatus::Running {
            close_interval(record, at_ms);
        }
        if to == WorkOrderStatus::Running {
            record.running_since_ms = Some(at_ms);
            if record.last_confirmation_ms.is_none() {
                record.last_confirmation_ms = Some(at_ms);
            }
        }
        if verb == Verb::Start {
            start_lots(record);
        }
        record.doc.status = to;
        record.doc.updated_at = occurred;
        outcome.publications.push(event(
            record,
            occurred,
            now,
            WorkOrderEventKind::StatusChanged { from, to },
        ));
        if verb == Verb::Complete {
            confirm(record, true, at_ms, occurred, now, labor_factor, outcome);
        }
        outcome.publications.push(order_doc(record));
        outcome.dirty_orders.insert(id.clone());
        self.push_active(&line, &mut outcome.publications);
        Ok(())
    }

    /// Auto-run: starts the next released order on `line` when none runs there (highest
    /// priority first, then arrival order).
    fn start_next(&mut self, line: &Location, at_ms: i64, now: Timestamp, outcome: &mut Outcome) {
        if self.active_on(line).is_some() {
            return;
        }
        let next = self
            .orders
            .values()
            .filter(|r| r.doc.hierarchy_scope == *line && r.doc.status == WorkOrderStatus::Released)
            .min_by_key(|r| (std::cmp::Reverse(r.source.priority.unwrap_or(0)), r.seq))
            .map(|r| r.doc.id.clone());
        if let Some(id) = next {
            // Released → running on a free line cannot fail.
            let _ = self.transition(&id, Verb::Start, at_ms, now, outcome);
        }
    }

    /// The running order of `line` that was started last.
    fn active_on(&self, line: &Location) -> Option<&OrderRecord> {
        self.orders
            .values()
            .filter(|r| r.doc.hierarchy_scope == *line && r.doc.status == WorkOrderStatus::Running)
            .max_by_key(|r| (r.running_since_ms, r.seq))
    }

    /// `_wo/_active` of `line` (and of its counting cell, when that is another location).
    fn push_active(&self, line: &Location, publications: &mut Vec<Publication>) {
        let payload = match self.active_on(line) {
            Some(record) => to_bytes(&record.doc),
            None => Bytes::from_static(b"null"),
        };
        let mut locations = vec![line.clone()];
        let cell = self.counting_location(line);
        if cell != *line {
            locations.push(cell);
        }
        for location in locations {
            publications.push(Publication {
                topic: UnsTopic::located(location, Class::WorkOrderActive),
                payload: payload.clone(),
            });
        }
    }
}

fn new_record(order: ProductionOrder, seq: u64, now: Timestamp) -> OrderRecord {
    let uom = order.quantity.uom;
    let output_lot = slug(&format!("{}-out", order.id));
    let doc = WorkOrder {
        schema: SchemaTag::default(),
        id: order.id.clone(),
        erp_ref: Some(order.erp_ref.clone()),
        production_order: Some(order.id.clone()),
        material: order.material.clone(),
        status: WorkOrderStatus::Planned,
        quantities: WorkOrderQuantities {
            planned: order.quantity,
            good: Quantity::new(0.0, uom),
            scrap: Quantity::new(0.0, uom),
            rework: Quantity::new(0.0, uom),
        },
        hierarchy_scope: order.hierarchy_scope.clone(),
        operations: order.operations.clone(),
        components: order.components.clone(),
        lots: Vec::new(),
        updated_at: now,
    };
    OrderRecord {
        doc,
        revision: 1,
        source: order,
        seq,
        running_since_ms: None,
        run_ms: 0,
        confirmed: Confirmed::default(),
        last_confirmation_ms: None,
        final_request: None,
        component_lots: BTreeMap::new(),
        output_lot,
    }
}

fn apply_revision(record: &mut OrderRecord, order: ProductionOrder, now: Timestamp) {
    record.revision += 1;
    record.doc.erp_ref = Some(order.erp_ref.clone());
    record.doc.material = order.material.clone();
    record.doc.quantities.planned = order.quantity;
    let uom = order.quantity.uom;
    for actual in [
        &mut record.doc.quantities.good,
        &mut record.doc.quantities.scrap,
        &mut record.doc.quantities.rework,
    ] {
        actual.uom = uom;
    }
    record.doc.hierarchy_scope = order.hierarchy_scope.clone();
    record.doc.operations = order.operations.clone();
    record.doc.components = order.components.clone();
    record.doc.updated_at = now;
    record.source = order;
}

/// On start: the lots the order names for its components, and its output lot.
fn start_lots(record: &mut OrderRecord) {
    for component in &record.doc.components {
        if component.material_use != MaterialUse::Consumed {
            continue;
        }
        let named = component
            .material_sublot_id
            .as_deref()
            .or(component.material_lot_id.as_deref());
        if let Some(lot) = named {
            record
                .component_lots
                .entry(component.material.clone())
                .or_insert_with(|| slug(lot));
        }
    }
    let mut actuals = Vec::new();
    for (material, lot) in &record.component_lots {
        let uom = record
            .doc
            .components
            .iter()
            .find(|c| &c.material == material)
            .map_or(record.doc.quantities.planned.uom, |c| c.quantity.uom);
        actuals.push(MaterialActual {
            lot: lot.clone(),
            material: material.clone(),
            quantity: Quantity::new(0.0, uom),
            material_use: MaterialUse::Consumed,
        });
    }
    actuals.push(MaterialActual {
        lot: record.output_lot.clone(),
        material: record.doc.material.clone(),
        quantity: Quantity::new(0.0, record.doc.quantities.planned.uom),
        material_use: MaterialUse::Produced,
    });
    for actual in actuals {
        if !record.doc.lots.iter().any(|a| a.lot == actual.lot) {
            record.doc.lots.push(actual);
        }
    }
}

fn close_interval(record: &mut OrderRecord, at_ms: i64) {
    if let Some(since) = record.running_since_ms.take() {
        record.run_ms += (at_ms - since).max(0);
    }
}

fn unconfirmed_units(record: &OrderRecord) -> f64 {
    let q = &record.doc.quantities;
    (q.good.qty - record.confirmed.good)
        + (q.scrap.qty - record.confirmed.scrap)
        + (q.rework.qty - record.confirmed.rework)
}

/// Requests a confirmation of everything since the previous one (and publishes the genealogy
/// transform of the good quantity in it).
fn confirm(
    record: &mut OrderRecord,
    is_final: bool,
    at_ms: i64,
    occurred: Timestamp,
    now: Timestamp,
    labor_factor: f64,
    outcome: &mut Outcome,
) {
    let quantities = record.doc.quantities.clone();
    let uom = quantities.planned.uom;
    let run_ms = record.run_ms
        + record
            .running_since_ms
            .map_or(0, |since| (at_ms - since).max(0));
    let good = quantities.good.qty - record.confirmed.good;
    let scrap = quantities.scrap.qty - record.confirmed.scrap;
    let rework = quantities.rework.qty - record.confirmed.rework;
    let machine_s = (run_ms - record.confirmed.run_ms).max(0) as f64 / 1000.0;
    let planned = quantities.planned.qty;
    let mut goods_movements = Vec::new();
    let mut consumed = Vec::new();
    for component in &record.doc.components {
        if component.material_use != MaterialUse::Consumed {
            continue;
        }
        // Scaled by yield: the component's planned quantity per unit planned, times the good.
        let qty = if planned > 0.0 {
            component.quantity.qty * good / planned
        } else {
            0.0
        };
        let quantity = Quantity::new(qty, component.quantity.uom);
        if quantity.qty <= 0.0 {
            continue;
        }
        let lot = record.component_lots.get(&component.material).cloned();
        if let Some(lot) = &lot {
            consumed.push(LotQuantity {
                lot: lot.clone(),
                material: Some(component.material.clone()),
                quantity,
            });
            if let Some(actual) = record.doc.lots.iter_mut().find(|a| &a.lot == lot) {
                actual.quantity.qty += quantity.qty;
            }
        }
        goods_movements.push(GoodsMovement {
            movement: MovementKind::Consumption,
            material: component.material.clone(),
            quantity,
            lot,
        });
    }
    if good > 0.0 {
        goods_movements.push(GoodsMovement {
            movement: MovementKind::ProductionReceipt,
            material: record.doc.material.clone(),
            quantity: Quantity::new(good, uom),
            lot: Some(record.output_lot.clone()),
        });
        if let Some(actual) = record
            .doc
            .lots
            .iter_mut()
            .find(|a| a.lot == record.output_lot)
        {
            actual.quantity.qty += good;
        }
        let site = site_of(&record.doc.hierarchy_scope);
        let genealogy = GenealogyEvent {
            schema: SchemaTag::default(),
            header: EventHeader::new(Uuid::now_v7(), occurred, now),
            kind: GenealogyKind::Transform {
                consumed,
                produced: vec![LotQuantity {
                    lot: record.output_lot.clone(),
                    material: Some(record.doc.material.clone()),
                    quantity: Quantity::new(good, uom),
                }],
                wo_id: Some(record.doc.id.clone()),
            },
        };
        outcome.publications.push(Publication {
            topic: UnsTopic::located(site, Class::GenealogyEvents),
            payload: to_bytes(&genealogy),
        });
    }
    let sequence = record.confirmed.sequence + 1;
    let kind = WorkOrderEventKind::ConfirmationRequested {
        is_final,
        sequence,
        erp_ref: record.doc.erp_ref.clone(),
        production_order: record.doc.production_order.clone(),
        good: Quantity::new(good, uom),
        scrap: Quantity::new(scrap, uom),
        rework: Quantity::new(rework, uom),
        operation_id: None,
        activity: ActivityTimes {
            setup_s: 0.0,
            machine_s,
            labor_s: machine_s * labor_factor,
        },
        goods_movements,
    };
    let publication = event(record, occurred, now, kind);
    if is_final {
        record.final_request = event_id_of(&publication);
    }
    outcome.publications.push(publication);
    record.confirmed = Confirmed {
        sequence,
        good: quantities.good.qty,
        scrap: quantities.scrap.qty,
        rework: quantities.rework.qty,
        run_ms,
    };
    record.last_confirmation_ms = Some(at_ms);
}

fn event_id_of(publication: &Publication) -> Option<Uuid> {
    #[derive(Deserialize)]
    struct Probe {
        event_id: Uuid,
    }
    serde_json::from_slice::<Probe>(&publication.payload)
        .ok()
        .map(|probe| probe.event_id)
}

/// The site (`enterprise/site`) of a location; the location itself above that depth.
pub fn site_of(location: &Location) -> Location {
    let segments = location.segments();
    Location::new(segments[..segments.len().min(2)].to_vec()).unwrap_or_else(|| location.clone())
}

fn event(
    record: &OrderRecord,
    occurred: Timestamp,
    now: Timestamp,
    kind: WorkOrderEventKind,
) -> Publication {
    let event = WorkOrderEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(Uuid::now_v7(), occurred, now),
        wo_id: record.doc.id.clone(),
        kind,
    };
    Publication {
        topic: UnsTopic::located(
            record.doc.hierarchy_scope.clone(),
            Class::WorkOrderEvents(record.doc.id.clone()),
        ),
        payload: to_bytes(&event),
    }
}

fn order_doc(record: &OrderRecord) -> Publication {
    Publication {
        topic: UnsTopic::located(
            record.doc.hierarchy_scope.clone(),
            Class::WorkOrder(record.doc.id.clone()),
        ),
        payload: to_bytes(&record.doc),
    }
}

fn to_bytes<T: Serialize>(document: &T) -> Bytes {
    // Our documents serialize infallibly (string keys only, no fallible Serialize impls).
    Bytes::from(serde_json::to_vec(document).unwrap_or_default())
}

#[cfg(test)]
mod tests;
