//! Demo data for `uns up --demo`: a small material master and three orders on the demo lines
//! (WC-4711 = line-1, WC-4712 = line-2), posted through the same path as the API once the plant
//! model has both lines. Posting again after a restart is a no-op (same content).

use uns_model::payload::Timestamp;
use uns_model::topic::{Class, UnsTopic};

use crate::db::{self, LoadMode};
use crate::parse::{BodyKind, parse};
use crate::validate::{self, Checks, Material, Plant};
use crate::{BridgeError, Shared};

/// The demo orders (our JSON).
pub const DEMO_ORDERS: &str = r#"[
  {"id": "4711000101", "material": "FG-WATER-05", "description": "Still water 0.5 l",
   "quantity": {"qty": 1200, "uom": "EA"}, "equipment": "WC-4711", "priority": 2,
   "operations": [{"operation_id": "0010", "description": "Fill and cap"},
                  {"operation_id": "0020", "description": "Label"}],
   "components": [{"material": "RM-PREFORM", "quantity": {"qty": 1212, "uom": "EA"}, "material_use": "consumed", "operation_id": "0010", "material_lot_id": "pet-2026-001"},
                  {"material": "RM-CAP", "quantity": {"qty": 1212, "uom": "EA"}, "material_use": "consumed", "operation_id": "0010", "material_lot_id": "cap-2026-001"}]},
  {"id": "4711000102", "material": "FG-WATER-15", "description": "Sparkling water 1.5 l",
   "quantity": {"qty": 800, "uom": "EA"}, "equipment": "WC-4711", "priority": 1,
   "components": [{"material": "RM-PREFORM", "quantity": {"qty": 808, "uom": "EA"}, "material_use": "consumed", "material_lot_id": "pet-2026-001"}]},
  {"id": "4712000201", "material": "FG-JUICE-1", "description": "Apple juice 1 l, cases of 6",
   "quantity": {"qty": 300, "uom": "EA"}, "equipment": "WC-4712", "priority": 2,
   "components": [{"material": "RM-JUICE", "quantity": {"qty": 1800, "uom": "LTR"}, "material_use": "consumed", "material_lot_id": "juice-2026-001"}]}
]"#;

/// The demo material master.
pub fn materials() -> Vec<Material> {
    [
        ("FG-WATER-05", "Still water 0.5 l", "EA"),
        ("FG-WATER-15", "Sparkling water 1.5 l", "EA"),
        ("FG-JUICE-1", "Apple juice 1 l", "EA"),
        ("RM-PREFORM", "PET preform", "EA"),
        ("RM-CAP", "Screw cap", "EA"),
        ("RM-JUICE", "Apple juice concentrate, diluted", "LTR"),
    ]
    .into_iter()
    .map(|(id, description, uom)| Material {
        id: id.to_owned(),
        description: description.to_owned(),
        uom: uom.to_owned(),
    })
    .collect()
}

/// Whether the plant model names both demo lines yet.
pub fn plant_ready(plant: &Plant) -> bool {
    plant.by_erp_id("WC-4711").is_some() && plant.by_erp_id("WC-4712").is_some()
}

/// Merges the demo master and posts the demo orders.
pub async fn load(shared: &Shared) -> Result<(), BridgeError> {
    db::load_materials(&shared.store, materials(), LoadMode::Merge).await?;
    let master = db::materials(&shared.store).await?;
    let raw = parse(BodyKind::Json, DEMO_ORDERS.as_bytes())
        .unwrap_or_else(|err| unreachable!("the demo orders parse (tested): {err}"));
    let received_at = Timestamp::from(chrono::Utc::now());
    let orders: Vec<_> = {
        let plant = shared.plant();
        let checks = Checks {
            materials: &master,
            plant: &plant,
            default_line: shared.default_line.as_ref(),
        };
        raw.iter()
            .filter_map(|order| validate::validate(order, &checks, received_at).ok())
            .collect()
    };
    for (outcome, order) in db::accept(&shared.store, orders).await? {
        if outcome != db::Outcome::Unchanged {
            let topic = UnsTopic::Located {
                location: validate::site_of(&order.hierarchy_scope),
                class: Class::ErpProductionOrder(order.id.clone()),
            };
            shared.client.publish(&topic, &order).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_orders_are_valid_on_the_demo_plant() {
        let mut plant = Plant::default();
        for (location, meta) in uns_meta::PlantModel::demo().nodes() {
            plant.insert(location.clone(), meta.clone());
        }
        assert!(plant_ready(&plant));
        let master = materials().into_iter().map(|m| (m.id.clone(), m)).collect();
        let checks = Checks {
            materials: &master,
            plant: &plant,
            default_line: None,
        };
        let raw = parse(BodyKind::Json, DEMO_ORDERS.as_bytes()).expect("parses");
        assert_eq!(raw.len(), 3);
        let now = Timestamp::from_unix_ms(0).expect("valid");
        let lines: Vec<String> = raw
            .iter()
            .map(|order| {
                validate::validate(order, &checks, now)
                    .expect("valid")
                    .hierarchy_scope
                    .to_string()
            })
            .collect();
        assert_eq!(
            lines,
            [
                "acme/berlin/packaging/line-1",
                "acme/berlin/packaging/line-1",
                "acme/berlin/packaging/line-2"
            ]
        );
    }
}
