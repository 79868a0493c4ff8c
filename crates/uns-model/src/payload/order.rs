//! Orders: [`ProductionOrder`] (`_erp/production-orders/{id}`), [`WorkOrder`] (`_wo/{id}`, `_wo/_active`)
//! and [`WorkOrderEvent`] (`_wo/{id}/events`). Names follow B2MML: production request → work order,
//! segment requirement → [`Operation`], material requirement/actual with `material_use`, hierarchy scope.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EventHeader, Quantity, SchemaTag, Timestamp, Uom, document};
use crate::topic::{Id, Location};

/// A production order as received from ERP, retained. It comes from outside the UNS, so unknown fields
/// are rejected (here and in the types it contains).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductionOrder {
    /// Always `uns/production-order/v1`.
    pub schema: SchemaTag<ProductionOrder>,
    /// Topic id: [`crate::topic::slug`] of `erp_ref`.
    pub id: Id,
    /// The ERP's own key, unchanged (e.g. `PO 4711/2`).
    pub erp_ref: String,
    /// Starts at 1; the erp-bridge adds 1 each time the ERP sends a changed version of the same order.
    #[serde(default = "first_revision")]
    pub revision: u32,
    /// Material number to produce.
    pub material: String,
    /// Material or order text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Quantity to produce.
    pub quantity: Quantity,
    /// Earliest start (B2MML `EarliestStartTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_start_time: Option<Timestamp>,
    /// Due date (B2MML `LatestEndTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_end_time: Option<Timestamp>,
    /// Where it is to run (line or cell).
    pub hierarchy_scope: Location,
    /// The ERP's equipment (work centre) id as sent, resolved to `hierarchy_scope` through the plant
    /// model's `erp_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equipment: Option<String>,
    /// Scheduling priority as sent by the ERP (B2MML `Priority`); larger is more urgent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Order parameters (B2MML `SegmentParameter` / `Parameter` of the request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Routing steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    /// Bill of materials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<MaterialRequirement>,
    /// When the erp-bridge accepted it.
    pub received_at: Timestamp,
}
document!(ProductionOrder, "production-order", 1);

fn first_revision() -> u32 {
    1
}

/// A named order or operation parameter (B2MML parameter: ID, value, optional unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// Parameter id, e.g. `fill-volume`.
    pub name: String,
    /// Its value: a number, string or boolean.
    pub value: serde_json::Value,
    /// Unit of a numeric value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uom: Option<Uom>,
}

/// A routing step (B2MML segment requirement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// The ERP's operation number, e.g. `0010`.
    pub operation_id: String,
    /// Operation text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The enclosing operation of a nested segment requirement (nested ones are flattened in document
    /// order, each naming its parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_operation_id: Option<String>,
    /// Where the step runs, if not the order's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hierarchy_scope: Option<Location>,
    /// The ERP's equipment id for this step, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equipment: Option<String>,
    /// Quantity for this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
}

/// A planned material (B2MML material requirement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialRequirement {
    /// Material number.
    pub material: String,
    /// Material text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Planned quantity.
    pub quantity: Quantity,
    /// Consumed (component) or produced (by-product).
    pub material_use: MaterialUse,
    /// The operation that uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// The lot to use, when the ERP names one (B2MML `MaterialLotID`), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_lot_id: Option<String>,
    /// The sublot to use (B2MML `MaterialSubLotID`), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_sublot_id: Option<String>,
}

/// Whether a material goes in or comes out (B2MML `MaterialUse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialUse {
    /// Goes into the product.
    Consumed,
    /// Comes out of the process.
    Produced,
}

/// A work order document, retained; owned by the workorders service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrder {
    /// Always `uns/work-order/v1`.
    pub schema: SchemaTag<WorkOrder>,
    /// Topic id.
    pub id: Id,
    /// The ERP's key, unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_ref: Option<String>,
    /// The production order it was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_order: Option<Id>,
    /// Material number to produce.
    pub material: String,
    /// Lifecycle status.
    pub status: WorkOrderStatus,
    /// Planned and actual quantities.
    pub quantities: WorkOrderQuantities,
    /// Where it runs.
    pub hierarchy_scope: Location,
    /// Routing steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    /// Bill of materials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<MaterialRequirement>,
    /// Lots consumed and produced so far (B2MML material actuals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<MaterialActual>,
    /// When the document last changed.
    pub updated_at: Timestamp,
}
document!(WorkOrder, "work-order", 1);

/// Work order lifecycle: `planned → released → running ⇄ held → completed → closed` (+ `cancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkOrderStatus {
    /// Created, not yet released to the floor.
    Planned,
    /// Released, waiting to start.
    Released,
    /// Producing.
    Running,
    /// Interrupted.
    Held,
    /// Production finished.
    Completed,
    /// Confirmed to ERP and closed.
    Closed,
    /// Abandoned.
    Cancelled,
}

/// Planned and actual quantities of a work order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrderQuantities {
    /// To produce.
    pub planned: Quantity,
    /// Good so far.
    pub good: Quantity,
    /// Scrapped so far.
    pub scrap: Quantity,
    /// Sent to rework so far.
    pub rework: Quantity,
}

/// A lot actually consumed or produced (B2MML material actual).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaterialActual {
    /// The lot.
    pub lot: Id,
    /// Its material number.
    pub material: String,
    /// How much.
    pub quantity: Quantity,
    /// In or out.
    pub material_use: MaterialUse,
}

/// A work order lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrderEvent {
    /// Always `uns/work-order-event/v1`.
    pub schema: SchemaTag<WorkOrderEvent>,
    /// Event id, times, correction, reason.
    #[serde(flatten)]
    pub header: EventHeader,
    /// The work order.
    pub wo_id: Id,
    /// What happened (tagged by `type`).
    #[serde(flatten)]
    pub kind: WorkOrderEventKind,
}
document!(WorkOrderEvent, "work-order-event", 1);

/// What happened to a work order, internally tagged on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkOrderEventKind {
    /// The work order was created.
    Created {
        /// The production order it came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        production_order: Option<Id>,
    },
    /// The status changed.
    StatusChanged {
        /// Old status.
        from: WorkOrderStatus,
        /// New status.
        to: WorkOrderStatus,
    },
    /// A (partial or final) confirmation is due to the ERP; the erp-bridge picks it up and posts it with
    /// the event's `event_id` as idempotency key.
    ConfirmationRequested {
        /// Whether this is the final confirmation.
        #[serde(rename = "final")]
        is_final: bool,
        /// 1 for the order's first confirmation, then counting up.
        #[serde(default = "first_revision")]
        sequence: u32,
        /// The ERP's key of the order, unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        erp_ref: Option<String>,
        /// The production order the work order came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        production_order: Option<Id>,
        /// Good quantity since the previous confirmation.
        good: Quantity,
        /// Scrap since the previous confirmation.
        scrap: Quantity,
        /// Rework since the previous confirmation.
        rework: Quantity,
        /// The operation confirmed, if per operation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation_id: Option<String>,
        /// Activity times since the previous confirmation.
        #[serde(default)]
        activity: ActivityTimes,
        /// Goods movements since the previous confirmation: component consumption and the production
        /// receipt.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        goods_movements: Vec<GoodsMovement>,
    },
    /// The ERP accepted a confirmation.
    ConfirmationPosted {
        /// `event_id` of the `confirmation_requested` event.
        request_event_id: Uuid,
        /// The ERP's confirmation document number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        erp_document: Option<String>,
    },
    /// A confirmation attempt failed.
    ConfirmationFailed {
        /// `event_id` of the `confirmation_requested` event.
        request_event_id: Uuid,
        /// What went wrong.
        error: String,
        /// Attempts so far.
        attempts: u32,
        /// Whether it was moved to the dead-letter queue (no more retries).
        dead_lettered: bool,
    },
}

/// Activity times reported with a confirmation, in seconds (SAP: setup, machine, labor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityTimes {
    /// Setup time.
    pub setup_s: f64,
    /// Machine (run) time.
    pub machine_s: f64,
    /// Labor time.
    pub labor_s: f64,
}

/// One goods movement of a confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodsMovement {
    /// Consumption of a component or receipt of the product.
    pub movement: MovementKind,
    /// Material number.
    pub material: String,
    /// How much.
    pub quantity: Quantity,
    /// The lot moved, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Id>,
}

/// The kind of a [`GoodsMovement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// A component was consumed (SAP movement type 261).
    Consumption,
    /// The product was received into stock (SAP movement type 101).
    ProductionReceipt,
}
