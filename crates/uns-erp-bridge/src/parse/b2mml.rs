//! B2MML production schedules: `ProductionSchedule`, `SyncProductionSchedule` and
//! `ProcessProductionSchedule` (the last two with `ApplicationArea` / `DataArea`), each with one or
//! more `ProductionRequest`s, in the namespaces of B2MML V0401 (`http://www.wbf.org/xml/B2MML-V0401`,
//! also its `mesa.org` spelling), V0600 (`http://www.mesa.org/xml/B2MML-V0600`) and V7
//! (`http://www.mesa.org/xml/B2MML`), as a default namespace or with any prefix.
//!
//! Hostile input: the body size is limited before this runs (HTTP layer); here a DOCTYPE is refused
//! outright (so no entity is defined, let alone expanded: only the five predefined entities and
//! character references are read), and depth and element count are bounded ([`Limits`]). The XML
//! declaration's encoding (or a byte-order mark) is honoured.
//!
//! Mapping (B2MML → [`RawOrder`]):
//! - `ProductionRequest/ID` → the ERP id; `Description`; `Priority`; `StartTime` / `EndTime` (else the
//!   first `EarliestStartTime` and the last `LatestEndTime` of its segment requirements, in document
//!   order); `HierarchyScope/EquipmentID` (else `Location/EquipmentID`) → equipment.
//! - `SegmentRequirement` (nested ones flattened in document order, each naming its parent) →
//!   operations: `ID` (else `ProcessSegmentID`, `ProductSegmentID`, else `seg-N`), `Description`,
//!   equipment from `HierarchyScope`, `Location` or the first `EquipmentRequirement`.
//! - `ProductionParameter/Parameter`, `SegmentParameter` and `Parameter` of any segment → parameters
//!   (`ID`, `Value/ValueString` read as a number or boolean when its `DataType` says so,
//!   `Value/UnitOfMeasure`).
//! - `MaterialRequirement` (use from `MaterialUse`), `MaterialProducedRequirement`,
//!   `MaterialConsumedRequirement`: `MaterialDefinitionID`, `Description`, `MaterialLotID`,
//!   `MaterialSubLotID`, `Quantity/QuantityString` + `UnitOfMeasure`. The first produced one is the
//!   order's material and quantity; every other one is a component of the operation it sits in.

use std::borrow::Cow;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use super::{Field, ParseError, RawMaterial, RawOperation, RawOrder, RawParameter, RawQuantity};

/// The B2MML namespaces we read.
pub const NAMESPACES: &[&str] = &[
    "http://www.wbf.org/xml/B2MML-V0401",
    "http://www.mesa.org/xml/B2MML-V0401",
    "http://www.mesa.org/xml/B2MML-V0600",
    "http://www.mesa.org/xml/B2MML",
];

/// Bounds on a document's shape.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deepest element nesting.
    pub max_depth: usize,
    /// Most elements in one document.
    pub max_elements: usize,
}

impl Default for Limits {
    /// 64 levels, 500 000 elements.
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_elements: 500_000,
        }
    }
}

/// One element: local name, its text (trimmed), its children in document order.
#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |child| child.name == name)
    }

    /// The trimmed text of the child `name`, if present and not empty.
    fn text_of(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(|child| child.text.trim().to_owned())
            .filter(|text| !text.is_empty())
    }

    /// The text of the child at `names` (a path of child names).
    fn text_at(&self, names: &[&str]) -> Option<String> {
        let (last, parents) = names.split_last()?;
        let mut element = self;
        for name in parents {
            element = element.child(name)?;
        }
        element.text_of(last)
    }
}

/// Parses a B2MML body into its production requests.
pub fn parse(body: &[u8], limits: &Limits) -> Result<Vec<RawOrder>, ParseError> {
    let text = decode(body)?;
    let root = read_tree(&text, limits)?;
    let mut orders = Vec::new();
    let root_path = format!("/{}", root.name);
    match root.name.as_str() {
        "ProductionSchedule" => schedule(&root, &root_path, &mut orders),
        "SyncProductionSchedule" | "ProcessProductionSchedule" => {
            let data_area = root
                .child("DataArea")
                .ok_or_else(|| ParseError::NotB2mml(format!("{} without a DataArea", root.name)))?;
            for (idx, schedule_element) in data_area.children("ProductionSchedule").enumerate() {
                let path = format!("{root_path}/DataArea/ProductionSchedule[{}]", idx + 1);
                schedule(schedule_element, &path, &mut orders);
            }
        }
        other => {
            return Err(ParseError::NotB2mml(format!(
                "root element `{other}`; expected ProductionSchedule, SyncProductionSchedule or ProcessProductionSchedule"
            )));
        }
    }
    Ok(orders)
}

/// The body as text: a BOM, else the declaration's `encoding`, else UTF-8.
fn decode(body: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let (encoding, skip) = match encoding_rs::Encoding::for_bom(body) {
        Some((encoding, bom_len)) => (encoding, bom_len),
        None => (declared_encoding(body)?, 0),
    };
    encoding
        .decode_without_bom_handling_and_without_replacement(&body[skip..])
        .ok_or_else(|| ParseError::Xml(format!("the body is not valid {}", encoding.name())))
}

fn declared_encoding(body: &[u8]) -> Result<&'static encoding_rs::Encoding, ParseError> {
    let head = &body[..body.len().min(256)];
    let head = String::from_utf8_lossy(head);
    let declaration = head
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split("?>").next());
    let Some(declaration) = declaration else {
        return Ok(encoding_rs::UTF_8);
    };
    let Some(after) = declaration.split("encoding").nth(1) else {
        return Ok(encoding_rs::UTF_8);
    };
    let after = after.trim_start().trim_start_matches('=').trim_start();
    let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Err(ParseError::Xml(
            "malformed encoding in the XML declaration".to_owned(),
        ));
    };
    let label = after[1..].split(quote).next().unwrap_or_default();
    encoding_rs::Encoding::for_label(label.as_bytes())
        .ok_or_else(|| ParseError::Encoding(label.to_owned()))
}

fn xml_error(err: impl std::fmt::Display) -> ParseError {
    ParseError::Xml(err.to_string())
}

fn read_tree(text: &str, limits: &Limits) -> Result<Element, ParseError> {
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut n_elements = 0usize;
    loop {
        let position = reader.buffer_position();
        let (namespace, event) = reader
            .read_resolved_event()
            .map_err(|err| ParseError::Xml(format!("at byte {position}: {err}")))?;
        let is_start = matches!(event, Event::Start(_) | Event::Empty(_));
        let is_empty = matches!(event, Event::Empty(_));
        if is_start && stack.is_empty() {
            if root.is_some() {
                return Err(ParseError::Xml("more than one root element".to_owned()));
            }
            let namespace = match namespace {
                ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
                _ => String::new(),
            };
            if !NAMESPACES.contains(&namespace.as_str()) {
                return Err(ParseError::NotB2mml(format!(
                    "namespace `{namespace}`; expected one of {}",
                    NAMESPACES.join(", ")
                )));
            }
        }
        match event {
            Event::Start(start) | Event::Empty(start) => {
                n_elements += 1;
                if n_elements > limits.max_elements {
                    return Err(ParseError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(ParseError::TooDeep(limits.max_depth));
                }
                stack.push(Element {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                });
                // A self-closing element is complete at once; a start tag waits for its end.
                if is_empty {
                    close(&mut stack, &mut root);
                }
            }
            Event::End(_) => close(&mut stack, &mut root),
            Event::Text(chunk) => {
                let chunk = chunk.decode().map_err(xml_error)?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&chunk);
                } else if !chunk.trim().is_empty() {
                    return Err(ParseError::Xml("text outside the root element".to_owned()));
                }
            }
            Event::CData(chunk) => {
                let chunk = chunk.decode().map_err(xml_error)?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&chunk);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(xml_error)? {
                    Some(ch) => ch,
                    None => {
                        let name = reference.decode().map_err(xml_error)?;
                        match name.as_ref() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            other => {
                                return Err(ParseError::Xml(format!(
                                    "entity `&{other};` is not defined (only the predefined entities are read)"
                                )));
                            }
                        }
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push(resolved);
                }
            }
            Event::DocType(_) => return Err(ParseError::Doctype),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Xml(
            "the document ends inside an element".to_owned(),
        ));
    }
    root.ok_or_else(|| ParseError::Xml("no root element".to_owned()))
}

fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) {
    if let Some(element) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => *root = Some(element),
        }
    }
}

fn schedule(schedule: &Element, path: &str, orders: &mut Vec<RawOrder>) {
    for (idx, request) in schedule.children("ProductionRequest").enumerate() {
        orders.push(production_request(
            request,
            format!("{path}/ProductionRequest[{}]", idx + 1),
        ));
    }
}

/// What walking the segments collects.
#[derive(Default)]
struct Collected {
    operations: Vec<RawOperation>,
    materials: Vec<(Option<String>, RawMaterial)>,
    parameters: Vec<RawParameter>,
    earliest: Option<Field<String>>,
    latest: Option<Field<String>>,
    n_segments: usize,
}

fn production_request(request: &Element, path: String) -> RawOrder {
    let mut collected = Collected::default();
    parameters(request, &path, &mut collected.parameters);
    materials(request, &path, None, &mut collected.materials);
    for (idx, segment_element) in request.children("SegmentRequirement").enumerate() {
        segment(
            segment_element,
            format!("{path}/SegmentRequirement[{}]", idx + 1),
            None,
            &mut collected,
        );
    }
    let equipment = equipment_of(request, &path);
    let at = |name: &str| {
        request
            .text_of(name)
            .map(|value| Field::new(format!("{path}/{name}"), value))
    };
    let earliest_start_time = at("StartTime").or(collected.earliest);
    let latest_end_time = at("EndTime").or(collected.latest);
    let priority = at("Priority");
    // The first produced material is the order's product.
    let product_idx = collected
        .materials
        .iter()
        .position(|(_, material)| is_produced(material.material_use.as_deref()));
    let product = product_idx.map(|idx| collected.materials.remove(idx).1);
    RawOrder {
        erp_ref: request.text_of("ID"),
        description: request.text_of("Description"),
        material: product.as_ref().and_then(|material| {
            material
                .material
                .clone()
                .map(|id| Field::new(format!("{}/MaterialDefinitionID", material.path), id))
        }),
        quantity: product.and_then(|material| material.quantity),
        earliest_start_time,
        latest_end_time,
        equipment,
        hierarchy_scope: None,
        priority,
        parameters: collected.parameters,
        operations: collected.operations,
        components: collected
            .materials
            .into_iter()
            .map(|(operation_id, mut material)| {
                material.operation_id = operation_id;
                material
            })
            .collect(),
        path,
    }
}

fn is_produced(material_use: Option<&str>) -> bool {
    material_use.is_some_and(|u| u.eq_ignore_ascii_case("produced"))
}

fn equipment_of(element: &Element, path: &str) -> Option<Field<String>> {
    for (container, child_path) in [
        ("HierarchyScope", "HierarchyScope/EquipmentID"),
        ("Location", "Location/EquipmentID"),
    ] {
        if let Some(id) = element.text_at(&[container, "EquipmentID"]) {
            return Some(Field::new(format!("{path}/{child_path}"), id));
        }
    }
    None
}

fn segment(element: &Element, path: String, parent: Option<&str>, collected: &mut Collected) {
    collected.n_segments += 1;
    let operation_id = element
        .text_of("ID")
        .or_else(|| element.text_of("ProcessSegmentID"))
        .or_else(|| element.text_of("ProductSegmentID"))
        .unwrap_or_else(|| format!("seg-{}", collected.n_segments));
    let equipment = equipment_of(element, &path).or_else(|| {
        element
            .children("EquipmentRequirement")
            .enumerate()
            .find_map(|(idx, requirement)| {
                requirement.text_of("EquipmentID").map(|id| {
                    Field::new(
                        format!("{path}/EquipmentRequirement[{}]/EquipmentID", idx + 1),
                        id,
                    )
                })
            })
    });
    if collected.earliest.is_none()
        && let Some(value) = element.text_of("EarliestStartTime")
    {
        collected.earliest = Some(Field::new(format!("{path}/EarliestStartTime"), value));
    }
    if let Some(value) = element.text_of("LatestEndTime") {
        collected.latest = Some(Field::new(format!("{path}/LatestEndTime"), value));
    }
    parameters(element, &path, &mut collected.parameters);
    materials(
        element,
        &path,
        Some(&operation_id),
        &mut collected.materials,
    );
    collected.operations.push(RawOperation {
        path: path.clone(),
        operation_id: operation_id.clone(),
        description: element.text_of("Description"),
        parent_operation_id: parent.map(str::to_owned),
        equipment,
        quantity: None,
    });
    for (idx, child) in element.children("SegmentRequirement").enumerate() {
        segment(
            child,
            format!("{path}/SegmentRequirement[{}]", idx + 1),
            Some(&operation_id),
            collected,
        );
    }
}

fn parameters(element: &Element, path: &str, out: &mut Vec<RawParameter>) {
    let mut push = |parameter: &Element, parameter_path: String| {
        let Some(name) = parameter.text_of("ID") else {
            return;
        };
        let value_element = parameter.child("Value");
        let text = value_element
            .and_then(|value| value.text_of("ValueString"))
            .unwrap_or_default();
        let data_type = value_element
            .and_then(|value| value.text_of("DataType"))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let value = typed_value(&text, &data_type);
        out.push(RawParameter {
            path: parameter_path,
            name,
            value,
            uom: value_element.and_then(|value| value.text_of("UnitOfMeasure")),
        });
    };
    for (idx, group) in element.children("ProductionParameter").enumerate() {
        let group_path = format!("{path}/ProductionParameter[{}]", idx + 1);
        for (p_idx, parameter) in group.children("Parameter").enumerate() {
            push(parameter, format!("{group_path}/Parameter[{}]", p_idx + 1));
        }
    }
    for name in ["SegmentParameter", "Parameter"] {
        for (idx, parameter) in element.children(name).enumerate() {
            push(parameter, format!("{path}/{name}[{}]", idx + 1));
        }
    }
}

fn typed_value(text: &str, data_type: &str) -> serde_json::Value {
    let numeric = matches!(
        data_type,
        "decimal" | "double" | "float" | "integer" | "int" | "long" | "short" | "number"
    );
    if numeric && let Ok(number) = text.parse::<f64>() {
        if let Ok(integer) = text.parse::<i64>() {
            return serde_json::Value::from(integer);
        }
        if let Some(number) = serde_json::Number::from_f64(number) {
            return serde_json::Value::Number(number);
        }
    }
    if data_type == "boolean" || data_type == "bool" {
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" => return serde_json::Value::Bool(true),
            "false" | "0" => return serde_json::Value::Bool(false),
            _ => {}
        }
    }
    serde_json::Value::String(text.to_owned())
}

fn materials(
    element: &Element,
    path: &str,
    operation_id: Option<&str>,
    out: &mut Vec<(Option<String>, RawMaterial)>,
) {
    // Document order across the three element names.
    let mut counters = [0usize; 3];
    for child in &element.children {
        let (slot, implied_use) = match child.name.as_str() {
            "MaterialRequirement" => (0, None),
            "MaterialProducedRequirement" => (1, Some("produced")),
            "MaterialConsumedRequirement" => (2, Some("consumed")),
            _ => continue,
        };
        counters[slot] += 1;
        let material_path = format!("{path}/{}[{}]", child.name, counters[slot]);
        let quantity = child.child("Quantity").map(|quantity| RawQuantity {
            path: format!("{material_path}/Quantity"),
            qty: quantity.text_of("QuantityString").unwrap_or_default(),
            uom: quantity.text_of("UnitOfMeasure"),
        });
        let material = RawMaterial {
            material: child
                .text_of("MaterialDefinitionID")
                .or_else(|| child.text_of("MaterialClassID")),
            description: child.text_of("Description"),
            material_use: implied_use
                .map(str::to_owned)
                .or_else(|| child.text_of("MaterialUse")),
            quantity,
            operation_id: None,
            material_lot_id: child.text_of("MaterialLotID"),
            material_sublot_id: child.text_of("MaterialSubLotID"),
            path: material_path,
        };
        out.push((operation_id.map(str::to_owned), material));
    }
}

#[cfg(test)]
mod tests;
