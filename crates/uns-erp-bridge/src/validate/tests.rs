//! Validation rules, each a plain unit test on the demo plant.

use super::*;
use crate::parse::{BodyKind, parse};

fn demo_plant() -> Plant {
    let mut plant = Plant::default();
    for (location, meta) in uns_meta::PlantModel::demo().nodes() {
        plant.insert(location.clone(), meta.clone());
    }
    plant
}

fn master(ids: &[&str]) -> BTreeMap<String, Material> {
    ids.iter()
        .map(|id| {
            (
                (*id).to_owned(),
                Material {
                    id: (*id).to_owned(),
                    description: String::new(),
                    uom: "EA".to_owned(),
                },
            )
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::from_unix_ms(1_800_000_000_000).expect("valid")
}

fn check(body: &str, default_line: Option<&str>) -> Result<ProductionOrder, Vec<FieldError>> {
    let plant = demo_plant();
    let materials = master(&["FG-1", "RM-1"]);
    let default_line = default_line.map(|line| line.parse::<Location>().expect("path"));
    let checks = Checks {
        materials: &materials,
        plant: &plant,
        default_line: default_line.as_ref(),
    };
    let orders = parse(BodyKind::Json, body.as_bytes()).expect("parses");
    validate(&orders[0], &checks, now())
}

#[test]
fn units_and_aliases() {
    for (text, code) in [
        ("KG", Some("KGM")),
        ("kgm", Some("KGM")),
        ("PCE", Some("EA")),
        ("PC", Some("EA")),
        ("ST", Some("EA")),
        ("EA", Some("EA")),
        ("L", Some("LTR")),
        ("C62", Some("C62")),
        ("XX", None),
        ("", None),
    ] {
        assert_eq!(unit(text).as_ref().map(Uom::as_str), code, "{text}");
    }
    for (alias, code) in UNIT_ALIASES {
        assert!(unit(code).is_some(), "alias {alias} maps to unknown {code}");
    }
}

#[test]
fn a_good_order_resolves_its_line_and_slugs_its_id() {
    let order = check(
        r#"{"id":"PO 4711/2","material":"FG-1","quantity":{"qty":10,"uom":"PCE"},"equipment":"WC-4711",
            "earliest_start_time":"2026-12-02T06:00:00+01:00",
            "components":[{"material":"RM-1","quantity":{"qty":2,"uom":"KG"},"material_use":"consumed"}]}"#,
        None,
    )
    .expect("valid");
    assert_eq!(order.id.as_str(), "po-4711-2");
    assert_eq!(order.erp_ref, "PO 4711/2");
    assert_eq!(
        order.hierarchy_scope.to_string(),
        "acme/berlin/packaging/line-1"
    );
    assert_eq!(order.quantity.uom, Uom::EA);
    assert_eq!(order.components[0].quantity.uom, Uom::KGM);
    assert_eq!(
        order.earliest_start_time.map(|t| t.to_string()),
        Some("2026-12-02T05:00:00.000Z".to_owned())
    );
    assert_eq!(site_of(&order.hierarchy_scope).to_string(), "acme/berlin");
}

#[test]
fn site_equipment_or_none_falls_back_to_the_default_line() {
    let line = "acme/berlin/packaging/line-2";
    let site = r#"{"id":"A","material":"FG-1","quantity":{"qty":1,"uom":"EA"},"equipment":"1000"}"#;
    assert_eq!(
        check(site, Some(line))
            .expect("valid")
            .hierarchy_scope
            .to_string(),
        line
    );
    let errors = check(site, None).unwrap_err();
    assert!(errors[0].message.contains("not a line"), "{errors:?}");
    let none = r#"{"id":"A","material":"FG-1","quantity":{"qty":1,"uom":"EA"}}"#;
    assert_eq!(
        check(none, Some(line))
            .expect("valid")
            .hierarchy_scope
            .to_string(),
        line
    );
    assert!(
        check(none, None).unwrap_err()[0]
            .message
            .contains("default_line")
    );
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let errors = check(
        r#"{"id":"A","material":"NOPE","quantity":{"qty":0,"uom":"XX"},"equipment":"WC-9",
            "latest_end_time":"tomorrow","priority":1,
            "operations":[{"operation_id":"10","equipment":"WC-8"}],
            "components":[{"material":"RM-2","quantity":{"qty":-1,"uom":"KG"},"material_use":"eaten"}]}"#,
        None,
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.material",
            "$.quantity",
            "$.quantity",
            "$.latest_end_time",
            "$.equipment",
            "$.operations[0].equipment",
            "$.components[0].material",
            "$.components[0].material_use",
            "$.components[0].quantity",
        ],
        "{errors:#?}"
    );
    assert!(errors[0].message.contains("NOPE"));
    assert!(errors[1].message.contains("greater than zero"));
    assert!(errors[2].message.contains("XX"));
}

#[test]
fn a_negative_quantity_is_refused_and_any_id_gets_a_topic_id() {
    let line = Some("acme/berlin/packaging/line-1");
    let errors = check(
        r#"{"id":"A","material":"FG-1","quantity":{"qty":-5,"uom":"EA"}}"#,
        line,
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "$.quantity");
    let order = check(
        r#"{"id":"///","material":"FG-1","quantity":{"qty":5,"uom":"EA"}}"#,
        line,
    )
    .expect("valid");
    assert_eq!(order.erp_ref, "///");
    assert!(order.id.as_str().starts_with("x-"), "{}", order.id);
    let errors = check(
        r#"{"id":"  ","material":"FG-1","quantity":{"qty":5,"uom":"EA"}}"#,
        line,
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "$.id");
}
