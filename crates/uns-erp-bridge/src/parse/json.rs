//! Our JSON order request (`schemas/api/production-order-request.v1.schema.json`): one order object
//! or an array of them. It is the published `ProductionOrder` without what the bridge fills in (`id`,
//! `schema`, `revision`, `hierarchy_scope` resolution, `received_at`), with the ERP's id as `id`,
//! and units as plain strings so an unknown unit is a field-level 422, not a 400.

use serde::Deserialize;

use super::{Field, ParseError, RawMaterial, RawOperation, RawOrder, RawParameter, RawQuantity};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    id: String,
    material: String,
    #[serde(default)]
    description: Option<String>,
    quantity: Quantity,
    #[serde(default)]
    earliest_start_time: Option<String>,
    #[serde(default)]
    latest_end_time: Option<String>,
    #[serde(default)]
    equipment: Option<String>,
    #[serde(default)]
    hierarchy_scope: Option<String>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    parameters: Vec<Parameter>,
    #[serde(default)]
    operations: Vec<Operation>,
    #[serde(default)]
    components: Vec<Material>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Quantity {
    qty: serde_json::Number,
    uom: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameter {
    name: String,
    value: serde_json::Value,
    #[serde(default)]
    uom: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Operation {
    operation_id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parent_operation_id: Option<String>,
    #[serde(default)]
    equipment: Option<String>,
    #[serde(default)]
    quantity: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Material {
    material: String,
    #[serde(default)]
    description: Option<String>,
    quantity: Quantity,
    material_use: String,
    #[serde(default)]
    operation_id: Option<String>,
    #[serde(default)]
    material_lot_id: Option<String>,
    #[serde(default)]
    material_sublot_id: Option<String>,
}

/// Parses a JSON body.
pub fn parse(body: &[u8]) -> Result<Vec<RawOrder>, ParseError> {
    let invalid = |err: serde_json::Error| ParseError::Json(err.to_string());
    // An array is several orders; anything else must be one order object (so serde's message names
    // the field at fault instead of "matched no variant").
    let is_array = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'[');
    if is_array {
        let requests: Vec<Request> = serde_json::from_slice(body).map_err(invalid)?;
        Ok(requests
            .into_iter()
            .enumerate()
            .map(|(idx, request)| convert(format!("$[{idx}]"), request))
            .collect())
    } else {
        let request: Request = serde_json::from_slice(body).map_err(invalid)?;
        Ok(vec![convert("$".to_owned(), request)])
    }
}

fn quantity(path: String, quantity: Quantity) -> RawQuantity {
    RawQuantity {
        path,
        qty: quantity.qty.to_string(),
        uom: Some(quantity.uom),
    }
}

fn convert(path: String, request: Request) -> RawOrder {
    let at = |field: &str| format!("{path}.{field}");
    RawOrder {
        erp_ref: Some(request.id),
        description: request.description,
        material: Some(Field::new(at("material"), request.material)),
        quantity: Some(quantity(at("quantity"), request.quantity)),
        earliest_start_time: request
            .earliest_start_time
            .map(|value| Field::new(at("earliest_start_time"), value)),
        latest_end_time: request
            .latest_end_time
            .map(|value| Field::new(at("latest_end_time"), value)),
        equipment: request
            .equipment
            .map(|value| Field::new(at("equipment"), value)),
        hierarchy_scope: request
            .hierarchy_scope
            .map(|value| Field::new(at("hierarchy_scope"), value)),
        priority: request
            .priority
            .map(|value| Field::new(at("priority"), value.to_string())),
        parameters: request
            .parameters
            .into_iter()
            .enumerate()
            .map(|(idx, parameter)| RawParameter {
                path: at(&format!("parameters[{idx}]")),
                name: parameter.name,
                value: parameter.value,
                uom: parameter.uom,
            })
            .collect(),
        operations: request
            .operations
            .into_iter()
            .enumerate()
            .map(|(idx, operation)| {
                let op_path = at(&format!("operations[{idx}]"));
                RawOperation {
                    operation_id: operation.operation_id,
                    description: operation.description,
                    parent_operation_id: operation.parent_operation_id,
                    equipment: operation
                        .equipment
                        .map(|value| Field::new(format!("{op_path}.equipment"), value)),
                    quantity: operation
                        .quantity
                        .map(|q| quantity(format!("{op_path}.quantity"), q)),
                    path: op_path,
                }
            })
            .collect(),
        components: request
            .components
            .into_iter()
            .enumerate()
            .map(|(idx, material)| {
                let mat_path = at(&format!("components[{idx}]"));
                RawMaterial {
                    material: Some(material.material),
                    description: material.description,
                    material_use: Some(material.material_use),
                    quantity: Some(quantity(format!("{mat_path}.quantity"), material.quantity)),
                    operation_id: material.operation_id,
                    material_lot_id: material.material_lot_id,
                    material_sublot_id: material.material_sublot_id,
                    path: mat_path,
                }
            })
            .collect(),
        path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_order_with_everything() {
        let body = br#"{
            "id": "PO 4711/2", "material": "FG-100", "description": "Bottles",
            "quantity": {"qty": 1000, "uom": "PCE"},
            "earliest_start_time": "2026-12-02T06:00:00Z", "latest_end_time": "2026-12-02T14:00:00Z",
            "equipment": "WC-4711", "priority": 3,
            "parameters": [{"name": "fill-volume", "value": 0.5, "uom": "LTR"}],
            "operations": [{"operation_id": "0010", "description": "Fill"},
                           {"operation_id": "0011", "parent_operation_id": "0010", "equipment": "WC-4711"}],
            "components": [{"material": "RM-1", "quantity": {"qty": 2.5, "uom": "KG"},
                            "material_use": "consumed", "operation_id": "0010", "material_lot_id": "L1"}]
        }"#;
        let orders = parse(body).expect("parses");
        assert_eq!(orders.len(), 1);
        let order = &orders[0];
        assert_eq!(order.path, "$");
        assert_eq!(order.erp_ref.as_deref(), Some("PO 4711/2"));
        assert_eq!(
            order.quantity.as_ref().map(|q| q.qty.as_str()),
            Some("1000")
        );
        assert_eq!(
            order.equipment.as_ref().map(|e| e.path.as_str()),
            Some("$.equipment")
        );
        assert_eq!(order.priority.as_ref().map(|p| p.value.as_str()), Some("3"));
        assert_eq!(
            order.operations[1].parent_operation_id.as_deref(),
            Some("0010")
        );
        assert_eq!(order.components[0].path, "$.components[0]");
        assert_eq!(order.components[0].material_lot_id.as_deref(), Some("L1"));
    }

    #[test]
    fn an_array_is_several_orders() {
        let body = br#"[{"id":"A","material":"M","quantity":{"qty":1,"uom":"EA"}},
                        {"id":"B","material":"M","quantity":{"qty":-2,"uom":"XX"}}]"#;
        let orders = parse(body).expect("parses");
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[1].path, "$[1]");
        assert_eq!(
            orders[1].quantity.as_ref().map(|q| q.qty.as_str()),
            Some("-2")
        );
    }

    #[test]
    fn malformed_and_misshapen_json_is_a_parse_error() {
        for body in [
            &b"{"[..],
            b"not json",
            br#"{"id":"A","material":"M","quantity":{"qty":1,"uom":"EA"},"colour":"red"}"#,
            br#"{"material":"M","quantity":{"qty":1,"uom":"EA"}}"#,
            br#"{"id":"A","material":"M","quantity":{"qty":"one","uom":"EA"}}"#,
        ] {
            assert!(
                matches!(parse(body), Err(ParseError::Json(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
