//! Validation of a [`RawOrder`] against the material master, the plant model (equipment through
//! `erp_id`) and the unit table, into the published [`ProductionOrder`]. Every problem of an order is
//! collected (a bad order is rejected whole, with all its problems at once). No I/O, no clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uns_model::payload::{
    MaterialRequirement, MaterialUse, NodeMeta, Operation, Parameter, ProductionOrder, Quantity,
    SchemaTag, Timestamp, Uom,
};
use uns_model::topic::{Isa95Level, Location, slug};

use crate::parse::{RawOrder, RawQuantity};

/// One problem of an order: where (a JSON path or an XPath into the body) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field at fault.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// One material of the master (`POST /api/v1/master-data/materials`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    /// The ERP's material number.
    pub id: String,
    /// Text.
    #[serde(default)]
    pub description: String,
    /// Base unit of measure (any spelling the unit table knows).
    pub uom: String,
}

/// UNECE Recommendation 20 codes the bridge knows (the ones manufacturing orders use), with their
/// meaning. Anything else must be one of [`UNIT_ALIASES`].
pub const UNITS: &[(&str, &str)] = &[
    ("EA", "each"),
    ("C62", "one (unit)"),
    ("H87", "piece"),
    ("SET", "set"),
    ("PR", "pair"),
    ("DZN", "dozen"),
    ("KGM", "kilogram"),
    ("GRM", "gram"),
    ("MGM", "milligram"),
    ("TNE", "tonne"),
    ("LTR", "litre"),
    ("MLT", "millilitre"),
    ("HLT", "hectolitre"),
    ("MTQ", "cubic metre"),
    ("MTR", "metre"),
    ("CMT", "centimetre"),
    ("MMT", "millimetre"),
    ("KMT", "kilometre"),
    ("MTK", "square metre"),
    ("SEC", "second"),
    ("MIN", "minute"),
    ("HUR", "hour"),
    ("DAY", "day"),
    ("KWH", "kilowatt hour"),
    ("CEL", "degree Celsius"),
    ("P1", "percent"),
    ("XBX", "box"),
    ("XPK", "pack"),
    ("XPX", "pallet"),
    ("XCT", "carton"),
    ("XBO", "bottle"),
];

/// Common non-Rec-20 spellings (SAP, German ERPs, people) and the code they mean.
pub const UNIT_ALIASES: &[(&str, &str)] = &[
    ("KG", "KGM"),
    ("G", "GRM"),
    ("MG", "MGM"),
    ("T", "TNE"),
    ("TO", "TNE"),
    ("L", "LTR"),
    ("ML", "MLT"),
    ("HL", "HLT"),
    ("M3", "MTQ"),
    ("M", "MTR"),
    ("CM", "CMT"),
    ("MM", "MMT"),
    ("KM", "KMT"),
    ("M2", "MTK"),
    ("S", "SEC"),
    ("H", "HUR"),
    ("PCE", "EA"),
    ("PC", "EA"),
    ("PCS", "EA"),
    ("ST", "EA"),
    ("STK", "EA"),
    ("EACH", "EA"),
    ("BOX", "XBX"),
    ("PAL", "XPX"),
    ("CAR", "XCT"),
    ("%", "P1"),
];

/// The Rec 20 unit for `text` (case-insensitive; aliases mapped), `None` if unknown.
pub fn unit(text: &str) -> Option<Uom> {
    let upper = text.trim().to_ascii_uppercase();
    let code = UNIT_ALIASES
        .iter()
        .find(|(alias, _)| *alias == upper)
        .map_or(upper.as_str(), |(_, code)| code);
    UNITS
        .iter()
        .find(|(known, _)| *known == code)
        .and_then(|(known, _)| Uom::new(known).ok())
}

/// The plant as the `_meta` documents describe it: every node, and the ERP ids.
#[derive(Clone, Debug, Default)]
pub struct Plant {
    nodes: BTreeMap<Location, NodeMeta>,
    by_erp_id: BTreeMap<String, Location>,
}

impl Plant {
    /// Adds or replaces the node at `location`.
    pub fn insert(&mut self, location: Location, meta: NodeMeta) {
        self.by_erp_id.retain(|_, at| *at != location);
        if let Some(erp_id) = &meta.erp_id {
            self.by_erp_id.insert(erp_id.clone(), location.clone());
        }
        self.nodes.insert(location, meta);
    }

    /// Removes the node at `location` (its `_meta` was cleared).
    pub fn remove(&mut self, location: &Location) {
        self.by_erp_id.retain(|_, at| at != location);
        self.nodes.remove(location);
    }

    /// The node with this ERP id.
    pub fn by_erp_id(&self, erp_id: &str) -> Option<&Location> {
        self.by_erp_id.get(erp_id)
    }

    /// Whether the plant has a node at `location`.
    pub fn contains(&self, location: &Location) -> bool {
        self.nodes.contains_key(location)
    }

    /// Every node's location, parents first.
    pub fn locations(&self) -> impl Iterator<Item = &Location> {
        self.nodes.keys()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no `_meta` was seen yet.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn runs_orders(&self, location: &Location) -> bool {
        self.nodes.get(location).is_some_and(|meta| {
            matches!(
                meta.level,
                Isa95Level::ProductionLine
                    | Isa95Level::ProcessCell
                    | Isa95Level::WorkCell
                    | Isa95Level::Unit
            )
        })
    }
}

/// What an order is checked against.
pub struct Checks<'a> {
    /// The material master, by id.
    pub materials: &'a BTreeMap<String, Material>,
    /// The plant model.
    pub plant: &'a Plant,
    /// `[erp_bridge] default_line`.
    pub default_line: Option<&'a Location>,
}

/// The enterprise/site part of `location` (the `{site}` of `…/{site}/_erp/production-orders/{id}`).
pub fn site_of(location: &Location) -> Location {
    let depth = location.depth().min(2);
    Location::new(location.segments()[..depth].to_vec()).unwrap_or_else(|| location.clone())
}

/// Checks `raw` and builds the order (revision 1, received at `received_at`), or every problem.
pub fn validate(
    raw: &RawOrder,
    checks: &Checks<'_>,
    received_at: Timestamp,
) -> Result<ProductionOrder, Vec<FieldError>> {
    let mut errors = Vec::new();
    let path = &raw.path;
    let erp_ref = match raw.erp_ref.as_deref().map(str::trim) {
        Some(erp_ref) if !erp_ref.is_empty() => erp_ref.to_owned(),
        _ => {
            errors.push(FieldError::new(id_path(path), "the order has no id"));
            String::new()
        }
    };
    // Any ERP id makes a topic id (an id without letters or digits becomes `x-{hash}`); the id as
    // sent stays in `erp_ref`.
    let id = slug(&erp_ref);
    let material = match &raw.material {
        Some(material) => {
            check_material(&material.value, &material.path, checks, &mut errors);
            material.value.clone()
        }
        None => {
            errors.push(FieldError::new(
                path.clone(),
                "the order names no material to produce (a produced material requirement)",
            ));
            String::new()
        }
    };
    let quantity = match &raw.quantity {
        Some(quantity) => check_quantity(quantity, false, &mut errors),
        None => {
            errors.push(FieldError::new(path.clone(), "the order has no quantity"));
            None
        }
    };
    let earliest_start_time = raw
        .earliest_start_time
        .as_ref()
        .and_then(|field| check_time(&field.value, &field.path, &mut errors));
    let latest_end_time = raw
        .latest_end_time
        .as_ref()
        .and_then(|field| check_time(&field.value, &field.path, &mut errors));
    if let (Some(start), Some(end), Some(end_field)) =
        (earliest_start_time, latest_end_time, &raw.latest_end_time)
        && end < start
    {
        errors.push(FieldError::new(
            end_field.path.clone(),
            format!("latest end {end} is before earliest start {start}"),
        ));
    }
    let priority = raw.priority.as_ref().and_then(|field| {
        field
            .value
            .trim()
            .parse::<i64>()
            .map_err(|_| {
                errors.push(FieldError::new(
                    field.path.clone(),
                    format!("priority `{}` is not an integer", field.value),
                ));
            })
            .ok()
    });

    // Equipment at every level must resolve; the order's own (else the first operation's) names the line.
    let mut resolved_scope: Option<(Location, String)> = None;
    let resolve = |erp_id: &str, at: &str, errors: &mut Vec<FieldError>| -> Option<Location> {
        match checks.plant.by_erp_id(erp_id.trim()) {
            Some(location) => Some(location.clone()),
            None => {
                errors.push(FieldError::new(
                    at,
                    format!(
                        "equipment `{erp_id}` is no node of the plant model (no `erp_id` matches)"
                    ),
                ));
                None
            }
        }
    };
    if let Some(equipment) = &raw.equipment
        && let Some(location) = resolve(&equipment.value, &equipment.path, &mut errors)
    {
        resolved_scope = Some((location, equipment.path.clone()));
    }
    let mut operations = Vec::with_capacity(raw.operations.len());
    for operation in &raw.operations {
        let scope = operation.equipment.as_ref().and_then(|equipment| {
            resolve(&equipment.value, &equipment.path, &mut errors).inspect(|location| {
                if resolved_scope.is_none() {
                    resolved_scope = Some((location.clone(), equipment.path.clone()));
                }
            })
        });
        let quantity = operation
            .quantity
            .as_ref()
            .and_then(|quantity| check_quantity(quantity, false, &mut errors));
        operations.push(Operation {
            operation_id: operation.operation_id.clone(),
            description: operation.description.clone(),
            parent_operation_id: operation.parent_operation_id.clone(),
            hierarchy_scope: scope,
            equipment: operation.equipment.as_ref().map(|e| e.value.clone()),
            quantity,
        });
    }
    let direct_scope =
        raw.hierarchy_scope
            .as_ref()
            .and_then(|field| match field.value.parse::<Location>() {
                Ok(location) if checks.plant.contains(&location) => {
                    Some((location, field.path.clone()))
                }
                Ok(location) => {
                    errors.push(FieldError::new(
                        field.path.clone(),
                        format!("`{location}` is no node of the plant model"),
                    ));
                    None
                }
                Err(err) => {
                    errors.push(FieldError::new(
                        field.path.clone(),
                        format!("not a plant path: {err}"),
                    ));
                    None
                }
            });
    // Equipment that did not resolve is reported already; the missing line follows from it.
    let named_equipment = raw.equipment.is_some()
        || raw.hierarchy_scope.is_some()
        || raw.operations.iter().any(|op| op.equipment.is_some());
    let scope = direct_scope.or(resolved_scope);
    let hierarchy_scope = if scope.is_none() && named_equipment && !errors.is_empty() {
        None
    } else {
        line_for(scope, path, checks, &mut errors)
    };

    let mut components = Vec::with_capacity(raw.components.len());
    for component in &raw.components {
        let at = &component.path;
        let material = match &component.material {
            Some(material) => {
                check_material(
                    material,
                    &sub(at, "material", "MaterialDefinitionID"),
                    checks,
                    &mut errors,
                );
                material.clone()
            }
            None => {
                errors.push(FieldError::new(
                    at.clone(),
                    "the material requirement names no material",
                ));
                String::new()
            }
        };
        let material_use = match component
            .material_use
            .as_deref()
            .map(str::to_ascii_lowercase)
        {
            Some(text) if text == "consumed" => Some(MaterialUse::Consumed),
            Some(text)
                if text == "produced"
                    || text.starts_with("byproduct")
                    || text.starts_with("by-product")
                    || text == "coproduct"
                    || text == "co-product" =>
            {
                Some(MaterialUse::Produced)
            }
            Some(other) => {
                errors.push(FieldError::new(
                    sub(at, "material_use", "MaterialUse"),
                    format!("material use `{other}` is neither consumed nor produced"),
                ));
                None
            }
            None => {
                errors.push(FieldError::new(
                    sub(at, "material_use", "MaterialUse"),
                    "the material use is missing",
                ));
                None
            }
        };
        let quantity = match &component.quantity {
            Some(quantity) => check_quantity(quantity, true, &mut errors),
            None => {
                errors.push(FieldError::new(
                    at.clone(),
                    "the material requirement has no quantity",
                ));
                None
            }
        };
        if let (Some(quantity), Some(material_use)) = (quantity, material_use) {
            components.push(MaterialRequirement {
                material,
                description: component.description.clone(),
                quantity,
                material_use,
                operation_id: component.operation_id.clone(),
                material_lot_id: component.material_lot_id.clone(),
                material_sublot_id: component.material_sublot_id.clone(),
            });
        }
    }
    let mut parameters = Vec::with_capacity(raw.parameters.len());
    for parameter in &raw.parameters {
        let uom = match parameter.uom.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(text) => match unit(text) {
                Some(uom) => Some(uom),
                None => {
                    errors.push(FieldError::new(
                        parameter.path.clone(),
                        format!("unknown unit `{text}` (UNECE Rec 20 code or a documented alias)"),
                    ));
                    None
                }
            },
            None => None,
        };
        parameters.push(Parameter {
            name: parameter.name.clone(),
            value: parameter.value.clone(),
            uom,
        });
    }
    match (errors.is_empty(), quantity, hierarchy_scope) {
        (true, Some(quantity), Some(hierarchy_scope)) => Ok(ProductionOrder {
            schema: SchemaTag::default(),
            id,
            erp_ref,
            revision: 1,
            material,
            description: raw.description.clone(),
            quantity,
            earliest_start_time,
            latest_end_time,
            hierarchy_scope,
            equipment: raw.equipment.as_ref().map(|e| e.value.clone()),
            priority,
            parameters,
            operations,
            components,
            received_at,
        }),
        _ => Err(errors),
    }
}

/// The path of a field below `path`: `{path}.{json}` in our JSON, `{path}/{xml}` in B2MML.
fn sub(path: &str, json: &str, xml: &str) -> String {
    if path.starts_with('$') {
        format!("{path}.{json}")
    } else {
        format!("{path}/{xml}")
    }
}

fn id_path(path: &str) -> String {
    sub(path, "id", "ID")
}

fn check_material(id: &str, at: &str, checks: &Checks<'_>, errors: &mut Vec<FieldError>) {
    if !checks.materials.contains_key(id) {
        errors.push(FieldError::new(
            at,
            format!("material `{id}` is not in the material master"),
        ));
    }
}

/// A quantity must be a finite number above zero (zero allowed for components) in a known unit.
fn check_quantity(
    raw: &RawQuantity,
    zero_ok: bool,
    errors: &mut Vec<FieldError>,
) -> Option<Quantity> {
    let n_before = errors.len();
    let qty = match raw.qty.trim().parse::<f64>() {
        Ok(qty) if qty.is_finite() && (qty > 0.0 || (zero_ok && qty == 0.0)) => Some(qty),
        Ok(qty) if qty.is_finite() => {
            errors.push(FieldError::new(
                raw.path.clone(),
                format!("quantity {qty} must be greater than zero"),
            ));
            None
        }
        _ => {
            errors.push(FieldError::new(
                raw.path.clone(),
                format!("quantity `{}` is not a number", raw.qty),
            ));
            None
        }
    };
    let uom = match raw.uom.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(text) => unit(text).or_else(|| {
            errors.push(FieldError::new(
                raw.path.clone(),
                format!("unknown unit `{text}` (UNECE Rec 20 code or a documented alias)"),
            ));
            None
        }),
        None => {
            errors.push(FieldError::new(
                raw.path.clone(),
                "the quantity has no unit",
            ));
            None
        }
    };
    match (qty, uom) {
        (Some(qty), Some(uom)) if errors.len() == n_before => Some(Quantity::new(qty, uom)),
        _ => None,
    }
}

fn check_time(text: &str, at: &str, errors: &mut Vec<FieldError>) -> Option<Timestamp> {
    text.trim()
        .parse::<Timestamp>()
        .map_err(|err| {
            errors.push(FieldError::new(
                at,
                format!("`{text}` is not an RFC 3339 date-time with offset: {err}"),
            ));
        })
        .ok()
}

/// The line (or cell) the order runs on: the resolved node if it runs orders, else the default line
/// when it lies inside the resolved node (or nothing resolved).
fn line_for(
    resolved: Option<(Location, String)>,
    order_path: &str,
    checks: &Checks<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<Location> {
    match resolved {
        Some((location, _)) if checks.plant.runs_orders(&location) => Some(location),
        Some((location, at)) => match checks.default_line {
            Some(line) if location.contains(line) => Some(line.clone()),
            _ => {
                errors.push(FieldError::new(
                    at,
                    format!(
                        "`{location}` is not a line or cell, and no [erp_bridge] default_line lies inside it"
                    ),
                ));
                None
            }
        },
        None => match checks.default_line {
            Some(line) => Some(line.clone()),
            None => {
                errors.push(FieldError::new(
                    order_path,
                    "the order names no equipment and [erp_bridge] default_line is not set",
                ));
                None
            }
        },
    }
}

#[cfg(test)]
mod tests;
