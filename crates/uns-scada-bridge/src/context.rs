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
    use serde_json::json;
    use uns_model::topic::Id;

    use super::*;

    fn order(extra: serde_json::Value) -> Vec<u8> {
        let mut doc = json!({
            "schema": "uns/work-order/v1",
            "id": "wo-10234",
            "material": "FG-1",
            "status": "running",
            "quantities": {
                "planned": {"qty": 10, "uom": "EA"},
                "good": {"qty": 0, "uom": "EA"},
                "scrap": {"qty": 0, "uom": "EA"},
                "rework": {"qty": 0, "uom": "EA"}
            },
            "hierarchy_scope": "acme/berlin/packaging/line-1",
            "updated_at": "2025-03-04T05:00:00.000Z"
        });
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        serde_json::to_vec(&doc).expect("JSON values serialize")
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
        check(&order(json!({})), Some(("wo-10234", None, None)));
        check(
            &order(json!({
                "operations": [{"operation_id": "0020"}],
                "lots": [
                    {"lot": "l-1", "material": "RM", "quantity": {"qty": 1, "uom": "KGM"}, "material_use": "consumed"},
                    {"lot": "l-2", "material": "FG-1", "quantity": {"qty": 5, "uom": "EA"}, "material_use": "produced"},
                    {"lot": "l-3", "material": "RM", "quantity": {"qty": 1, "uom": "KGM"}, "material_use": "consumed"}
                ]
            })),
            Some(("wo-10234", Some("0020"), Some("l-2"))),
        );
        check(
            &order(json!({"operations": [{"operation_id": "0010"}, {"operation_id": "0020"}]})),
            Some(("wo-10234", None, None)),
        );
    }

    #[test]
    fn payloads_that_are_not_work_orders_are_errors() {
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
