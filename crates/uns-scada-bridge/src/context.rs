//! Tag context from a location's retained `_wo/_active` document: which work order, operation and
//! lot a value belongs to.
//!
//! The document is decoded through the model's type (`uns_model::payload::decode_active_order`, a
//! [`WorkOrder`] or nothing), so the contract lives in one place: `id` → `wo_id`; the order's only
//! operation → `operation_id` (an order with several operations names none, rather than guess); the
//! last lot it produced → `lot`. Shifts belong to the OEE calendar, not to the order, so `shift` is
//! left out. `null`, an empty payload or `{}` clears the context; a payload that does not decode is an
//! error for the caller to report.

use uns_model::payload::{MaterialUse, PayloadError, TagContext, WorkOrder, decode_active_order};

/// The context in a `_wo/_active` payload: `Ok(None)` when no order runs, an error when the payload
/// is not a work order document.
pub fn from_active_order(payload: &[u8]) -> Result<Option<TagContext>, PayloadError> {
    Ok(decode_active_order(payload)?.map(|order| context_of(&order)))
}

/// The context a running order gives its tags.
pub fn context_of(order: &WorkOrder) -> TagContext {
    let operation_id = match order.operations.as_slice() {
        [only] => Some(only.operation_id.clone()),
        _ => None,
    };
    let lot = order
        .lots
        .iter()
        .rev()
        .find(|actual| actual.material_use == MaterialUse::Produced)
        .map(|actual| actual.lot.clone());
    TagContext {
        wo_id: Some(order.id.clone()),
        operation_id,
        lot,
        shift: None,
    }
}

#[cfg(test)]
mod tests {
    use uns_model::payload::{
        MaterialActual, Operation, Quantity, SchemaTag, Timestamp, Uom, WorkOrderQuantities,
        WorkOrderStatus,
    };
    use uns_model::topic::Id;

    use super::*;

    fn id(text: &str) -> Id {
        Id::new(text).expect("test ids are valid")
    }

    fn operation(operation_id: &str) -> Operation {
        Operation {
            operation_id: operation_id.to_owned(),
            description: None,
            parent_operation_id: None,
            hierarchy_scope: None,
            equipment: None,
            quantity: None,
        }
    }

    fn lot(lot: &str, material_use: MaterialUse) -> MaterialActual {
        MaterialActual {
            lot: id(lot),
            material: "RM".to_owned(),
            quantity: Quantity::new(1.0, Uom::EA),
            material_use,
        }
    }

    /// The payload of a running order with these operations and lots, as workorders publishes it.
    fn order(operations: Vec<Operation>, lots: Vec<MaterialActual>) -> Vec<u8> {
        let zero = Quantity::new(0.0, Uom::EA);
        let order = WorkOrder {
            schema: SchemaTag::default(),
            id: id("wo-10234"),
            erp_ref: None,
            production_order: None,
            material: "FG-1".to_owned(),
            status: WorkOrderStatus::Running,
            quantities: WorkOrderQuantities {
                planned: Quantity::new(10.0, Uom::EA),
                good: zero,
                scrap: zero,
                rework: zero,
            },
            hierarchy_scope: "acme/berlin/packaging/line-1"
                .parse()
                .expect("valid location"),
            operations,
            components: Vec::new(),
            lots,
            updated_at: Timestamp::from_unix_ms(1_741_068_000_000).expect("valid time"),
        };
        serde_json::to_vec(&order).expect("work orders serialize")
    }

    /// wo_id, operation_id, lot.
    type Expected<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

    fn check(payload: &[u8], expected: Option<Expected<'_>>) {
        let got = from_active_order(payload).expect("decodes");
        let got = got.as_ref().map(|context| {
            (
                context.wo_id.as_ref().map(Id::as_str).unwrap_or_default(),
                context.operation_id.as_deref(),
                context.lot.as_ref().map(Id::as_str),
            )
        });
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(payload));
    }

    #[test]
    fn active_order_documents() {
        check(b"null", None);
        check(b"", None);
        check(b"{}", None);
        check(
            &order(Vec::new(), Vec::new()),
            Some(("wo-10234", None, None)),
        );
        check(
            &order(
                vec![operation("0020")],
                vec![
                    lot("l-1", MaterialUse::Consumed),
                    lot("l-2", MaterialUse::Produced),
                    lot("l-3", MaterialUse::Consumed),
                ],
            ),
            Some(("wo-10234", Some("0020"), Some("l-2"))),
        );
        check(
            &order(vec![operation("0010"), operation("0020")], Vec::new()),
            Some(("wo-10234", None, None)),
        );
    }

    #[test]
    fn payloads_that_are_not_work_orders_are_errors() {
        // Hostile or foreign bytes, spelled out on purpose: none of them is a work order.
        for bad in [
            &br#"{"id": "wo-1"}"#[..],
            b"not json",
            br#"{"schema": "uns/lot/v1", "id": "l-1"}"#,
            br#"{"schema": "uns/work-order/v1", "id": "WO#17"}"#,
        ] {
            assert!(
                from_active_order(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
