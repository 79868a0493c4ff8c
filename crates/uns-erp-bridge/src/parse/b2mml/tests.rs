//! B2MML parsing against the files in `tests/data/` (one per version) and hostile documents.

use super::*;

const V0401: &[u8] = include_bytes!("../../../tests/data/v0401-sync.xml");
const V0600: &[u8] = include_bytes!("../../../tests/data/v0600-process-latin1.xml");
const V7: &[u8] = include_bytes!("../../../tests/data/v7-schedule.xml");

fn one(body: &[u8]) -> RawOrder {
    let mut orders = parse(body, &Limits::default()).expect("parses");
    assert_eq!(orders.len(), 1);
    orders.remove(0)
}

#[test]
fn v0401_sync_with_nested_segments() {
    let order = one(V0401);
    assert_eq!(order.erp_ref.as_deref(), Some("PO 4711/2"));
    assert_eq!(order.description.as_deref(), Some("Water 0.5 l & caps"));
    assert_eq!(
        order.material.as_ref().map(|m| m.value.as_str()),
        Some("FG-WATER-05")
    );
    let quantity = order.quantity.as_ref().expect("quantity");
    assert_eq!(
        (quantity.qty.as_str(), quantity.uom.as_deref()),
        ("1000", Some("PCE"))
    );
    assert_eq!(
        order.equipment.as_ref().map(|e| e.value.as_str()),
        Some("WC-4711")
    );
    assert_eq!(
        order.equipment.as_ref().map(|e| e.path.as_str()),
        Some(
            "/SyncProductionSchedule/DataArea/ProductionSchedule[1]/ProductionRequest[1]/HierarchyScope/EquipmentID"
        )
    );
    assert_eq!(order.priority.as_ref().map(|p| p.value.as_str()), Some("3"));
    assert_eq!(
        order.earliest_start_time.as_ref().map(|t| t.value.as_str()),
        Some("2026-12-02T06:00:00Z")
    );
    // Nested segments flattened in document order, each naming its parent.
    let operations: Vec<(&str, Option<&str>)> = order
        .operations
        .iter()
        .map(|op| (op.operation_id.as_str(), op.parent_operation_id.as_deref()))
        .collect();
    assert_eq!(
        operations,
        [("0010", None), ("Weighing", Some("0010")), ("0020", None)]
    );
    assert_eq!(
        order.operations[2]
            .equipment
            .as_ref()
            .map(|e| e.value.as_str()),
        Some("WC-4711")
    );
    assert_eq!(order.parameters.len(), 1);
    assert_eq!(order.parameters[0].name, "fill-volume");
    assert_eq!(order.parameters[0].value, serde_json::json!(0.5));
    assert_eq!(order.parameters[0].uom.as_deref(), Some("LTR"));
    let components: Vec<(&str, Option<&str>, Option<&str>)> = order
        .components
        .iter()
        .map(|c| {
            (
                c.material.as_deref().unwrap_or_default(),
                c.operation_id.as_deref(),
                c.material_lot_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        components,
        [
            ("RM-PREFORM", Some("Weighing"), Some("L-2026-11-30-7")),
            ("RM-CAP", Some("0020"), None)
        ]
    );
    assert_eq!(
        order.components[0].material_sublot_id.as_deref(),
        Some("7-A")
    );
    assert_eq!(
        order.components[1]
            .quantity
            .as_ref()
            .map(|q| q.qty.as_str()),
        Some("12.5")
    );
}

#[test]
fn v0600_process_with_prefix_and_latin1() {
    let order = one(V0600);
    assert_eq!(order.erp_ref.as_deref(), Some("600001"));
    assert_eq!(order.description.as_deref(), Some("Süße Limonade"));
    assert_eq!(order.operations[0].description.as_deref(), Some("Abfüllen"));
    assert_eq!(
        order.equipment.as_ref().map(|e| e.value.as_str()),
        Some("WC-4712")
    );
    assert_eq!(
        order.material.as_ref().map(|m| m.value.as_str()),
        Some("FG-LEMONADE")
    );
    assert_eq!(order.parameters[0].value, serde_json::json!(true));
    assert_eq!(order.components.len(), 1);
    assert_eq!(
        order.components[0].material_use.as_deref(),
        Some("Consumed")
    );
}

#[test]
fn v7_schedule_with_two_requests() {
    let orders = parse(V7, &Limits::default()).expect("parses");
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].erp_ref.as_deref(), Some("700001"));
    assert_eq!(
        orders[0]
            .earliest_start_time
            .as_ref()
            .map(|t| t.value.as_str()),
        Some("2026-12-03T06:00:00+01:00")
    );
    assert_eq!(
        orders[0].operations[0]
            .equipment
            .as_ref()
            .map(|e| e.value.as_str()),
        Some("WC-4712")
    );
    assert_eq!(
        orders[0].material.as_ref().map(|m| m.value.as_str()),
        Some("FG-JUICE-1")
    );
    assert_eq!(
        orders[0].components[0].material_use.as_deref(),
        Some("consumed")
    );
    assert_eq!(orders[1].path, "/ProductionSchedule/ProductionRequest[2]");
    assert_eq!(
        orders[1].quantity.as_ref().map(|q| q.qty.as_str()),
        Some("120")
    );
}

#[test]
fn utf16_with_bom() {
    let text = String::from_utf8(V7.to_vec())
        .expect("utf-8")
        .replace("UTF-8", "UTF-16");
    let mut body = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        body.extend_from_slice(&unit.to_le_bytes());
    }
    assert_eq!(parse(&body, &Limits::default()).expect("parses").len(), 2);
}

#[test]
fn hostile_and_wrong_documents_are_refused() {
    let billion_laughs = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML"><ProductionRequest><ID>&lol2;</ID></ProductionRequest></ProductionSchedule>"#;
    assert_eq!(
        parse(billion_laughs, &Limits::default()).unwrap_err(),
        ParseError::Doctype
    );
    let undefined_entity = br#"<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML"><ProductionRequest><ID>&ext;</ID></ProductionRequest></ProductionSchedule>"#;
    assert!(matches!(
        parse(undefined_entity, &Limits::default()),
        Err(ParseError::Xml(message)) if message.contains("&ext;")
    ));
    let mut deep = String::from(r#"<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML">"#);
    for _ in 0..100 {
        deep.push_str("<SegmentRequirement>");
    }
    assert_eq!(
        parse(deep.as_bytes(), &Limits::default()).unwrap_err(),
        ParseError::TooDeep(64)
    );
    let many = format!(
        r#"<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML">{}</ProductionSchedule>"#,
        "<X/>".repeat(20)
    );
    let limits = Limits {
        max_depth: 64,
        max_elements: 10,
    };
    assert_eq!(
        parse(many.as_bytes(), &limits).unwrap_err(),
        ParseError::TooManyElements(10)
    );
    for (body, what) in [
        (&b"<ProductionSchedule xmlns=\"http://www.mesa.org/xml/B2MML\"><ProductionRequest>"[..], "unclosed"),
        (b"<ProductionSchedule xmlns=\"http://www.mesa.org/xml/B2MML\"><A></B></ProductionSchedule>", "mismatched"),
        (b"just text", "text"),
        (b"", "empty"),
    ] {
        assert!(
            matches!(parse(body, &Limits::default()), Err(ParseError::Xml(_))),
            "{what}: {:?}",
            parse(body, &Limits::default())
        );
    }
    assert!(matches!(
        parse(b"<ProductionSchedule><ProductionRequest/></ProductionSchedule>", &Limits::default()),
        Err(ParseError::NotB2mml(message)) if message.contains("namespace")
    ));
    assert!(matches!(
        parse(b"<Invoice xmlns=\"http://www.mesa.org/xml/B2MML\"/>", &Limits::default()),
        Err(ParseError::NotB2mml(message)) if message.contains("Invoice")
    ));
    assert!(matches!(
        parse(b"<?xml version=\"1.0\" encoding=\"klingon\"?><a/>", &Limits::default()),
        Err(ParseError::Encoding(label)) if label == "klingon"
    ));
}
