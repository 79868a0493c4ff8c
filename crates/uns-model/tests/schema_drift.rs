//! The drift guard between the Rust payload types and the hand-written JSON Schemas in `schemas/`.
//!
//! For every payload type: a realistic sample serialized by Rust must validate against its schema and decode
//! back to the same value; each wrong variant of it (missing required field, wrong enum value, wrong schema
//! id, broken invariant) must fail both schema validation and Rust decoding. Every schema file must be listed
//! in `uns_model::schemas::ALL`, and every listed schema must be covered here.

use std::collections::BTreeSet;
use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uns_model::payload::*;
use uns_model::schemas;
use uns_model::topic::{CountKind, Id, Isa95Level, Location, OeePeriodKind};
use uuid::Uuid;

/// A change that turns a valid sample into an invalid one, with a name for failure messages.
struct Wrong {
    name: &'static str,
    apply: Box<dyn Fn(&mut Value)>,
}

/// Follows `path` (object keys, or indices into arrays) to a node; missing object keys are created.
fn walk<'v>(value: &'v mut Value, path: &[&str]) -> &'v mut Value {
    path.iter().fold(value, |node, key| match node {
        Value::Array(items) => &mut items[key.parse::<usize>().expect("array index")],
        _ => &mut node[*key],
    })
}

fn remove(name: &'static str, path: &'static [&'static str]) -> Wrong {
    Wrong {
        name,
        apply: Box::new(move |value| {
            let (last, parents) = path.split_last().expect("non-empty path");
            walk(value, parents)
                .as_object_mut()
                .expect("path leads to an object")
                .remove(*last)
                .expect("field exists in the sample");
        }),
    }
}

fn set(name: &'static str, path: &'static [&'static str], new_value: Value) -> Wrong {
    Wrong {
        name,
        apply: Box::new(move |value| {
            *walk(value, path) = new_value.clone();
        }),
    }
}

/// Checks one payload type against its schema; returns the schema name it covered.
fn check<T>(sample: T, wrongs: Vec<Wrong>) -> &'static str
where
    T: Document + Serialize + DeserializeOwned + PartialEq + Debug,
{
    let file = schemas::find(T::SCHEMA_NAME, T::SCHEMA_VERSION)
        .unwrap_or_else(|| panic!("no schema file listed for {}", T::schema_id()));
    assert_eq!(file.id(), T::schema_id());
    let schema: Value = serde_json::from_str(file.json).expect("schema file is JSON");
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|err| panic!("{} does not compile: {err}", file.file_name()));

    let json = serde_json::to_value(&sample).expect("sample serializes");
    assert_eq!(json["schema"], T::schema_id());
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|err| format!("{err} at {}", err.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{} sample fails its schema: {errors:?}\n{json:#}",
        T::schema_id()
    );
    let bytes = serde_json::to_vec(&json).expect("serializable");
    let decoded: T = decode(&bytes)
        .unwrap_or_else(|err| panic!("{} sample does not decode: {err}", T::schema_id()));
    assert_eq!(decoded, sample, "{} round trip", T::schema_id());

    let mut all_wrongs = wrongs;
    all_wrongs.push(set("wrong schema id", &["schema"], json!("uns/other/v1")));
    all_wrongs.push(set(
        "schema of the next version",
        &["schema"],
        json!(format!("uns/{}/v2", T::SCHEMA_NAME)),
    ));
    all_wrongs.push(remove("no schema field", &["schema"]));
    for wrong in &all_wrongs {
        let mut bad = json.clone();
        (wrong.apply)(&mut bad);
        assert!(
            !validator.is_valid(&bad),
            "{}: schema accepts the wrong sample `{}`:\n{bad:#}",
            T::schema_id(),
            wrong.name
        );
        let bytes = serde_json::to_vec(&bad).expect("serializable");
        let result = decode::<T>(&bytes);
        assert!(
            result.is_err(),
            "{}: Rust accepts the wrong sample `{}`: {result:?}",
            T::schema_id(),
            wrong.name
        );
    }
    T::SCHEMA_NAME
}

fn id(text: &str) -> Id {
    Id::new(text).expect("sample ids are valid")
}

fn loc(text: &str) -> Location {
    text.parse().expect("sample locations are valid")
}

fn ts(text: &str) -> Timestamp {
    text.parse().expect("sample times are valid")
}

fn ea(qty: f64) -> Quantity {
    Quantity::new(qty, Uom::EA)
}

fn header(seconds: u32) -> EventHeader {
    // A fixed UUIDv7 (version nibble 7, variant bits 10) so the samples are deterministic.
    let event_id = Uuid::parse_str(&format!("01956a3c-{seconds:04x}-7abc-8def-0123456789ab"))
        .expect("valid uuid");
    EventHeader::new(
        event_id,
        ts("2025-03-04T05:20:00.123Z"),
        ts("2025-03-04T05:20:00.456Z"),
    )
}

fn header_wrongs() -> Vec<Wrong> {
    vec![
        remove("no event_id", &["event_id"]),
        remove("no occurred_at", &["occurred_at"]),
        set(
            "event_id is a UUIDv4",
            &["event_id"],
            json!("9f1c2b3a-4d5e-4f60-8a7b-0c1d2e3f4a5b"),
        ),
        Wrong {
            name: "corrects without reason",
            apply: Box::new(|value| {
                let object = value.as_object_mut().expect("object");
                object.insert(
                    "corrects".to_owned(),
                    json!("01956a3c-0000-7abc-8def-0123456789ab"),
                );
                object.remove("reason");
            }),
        },
        set("blank reason", &["reason"], json!("  ")),
    ]
}

fn with(mut wrongs: Vec<Wrong>, more: Vec<Wrong>) -> Vec<Wrong> {
    wrongs.extend(more);
    wrongs
}

#[test]
fn every_payload_type_matches_its_schema() {
    let mut covered = BTreeSet::new();

    covered.insert(check(
        TagValue {
            schema: SchemaTag::default(),
            value: json!(71.4),
            timestamp_ms: 1_741_068_000_123,
            quality: Quality::Good,
            unit: Some(Uom::CEL),
            context: Some(TagContext {
                wo_id: Some(id("wo-10234")),
                lot: Some(id("l-8891")),
                shift: Some("early".to_owned()),
                ..TagContext::default()
            }),
            historical: true,
            src: Some(SparkplugSource {
                group: "plant1".to_owned(),
                edge: "filler-edge".to_owned(),
                device: Some("plc1".to_owned()),
                metric: "Inputs/Temp 1".to_owned(),
            }),
        },
        vec![
            remove("no value", &["value"]),
            remove("no quality", &["quality"]),
            set("historical as text", &["historical"], json!("yes")),
            set("object value", &["value"], json!({"a": 1})),
            set("unknown quality", &["quality"], json!("excellent")),
            set("lowercase unit", &["unit"], json!("cel")),
            set(
                "timestamp_ms as text",
                &["timestamp_ms"],
                json!("1741068000123"),
            ),
            set(
                "lot id with uppercase",
                &["context", "lot"],
                json!("L-8891"),
            ),
        ],
    ));

    covered.insert(check(
        NodeMeta {
            schema: SchemaTag::default(),
            level: Isa95Level::WorkCell,
            display_name: "Filler 1".to_owned(),
            time_zone: Some("Europe/Berlin".to_owned()),
            ideal_rates: vec![IdealRate {
                material: Some("4711-bottle-05l".to_owned()),
                per_hour: ea(12_000.0),
            }],
            state_map: Some(id("krones-filler")),
            erp_id: Some("WC-4711-F".to_owned()),
        },
        vec![
            remove("no level", &["level"]),
            set("unknown level", &["level"], json!("Line")),
            set("snake_case level", &["level"], json!("work_cell")),
            remove("rate without per_hour", &["ideal_rates", "0", "per_hour"]),
        ],
    ));

    let running = MachineState {
        category: StateCategory::Running,
        code: Some("3".to_owned()),
        name: Some("Producing".to_owned()),
        reason: None,
    };
    let jam = MachineState {
        category: StateCategory::UnplannedDown,
        code: Some("117".to_owned()),
        name: Some("Jam at infeed".to_owned()),
        reason: Some("bottle fallen".to_owned()),
    };
    covered.insert(check(
        StateDoc {
            schema: SchemaTag::default(),
            mode: Mode::Production,
            state: jam.clone(),
            since: ts("2025-03-04T05:20:00.123Z"),
        },
        vec![
            remove("no since", &["since"]),
            set("unknown mode", &["mode"], json!("running")),
            set("unknown category", &["state", "category"], json!("down")),
            set("since is not a time", &["since"], json!("yesterday")),
        ],
    ));

    covered.insert(check(
        StateEvent {
            schema: SchemaTag::default(),
            header: header(1).with_reason("bottle fallen"),
            from: StateSnapshot {
                mode: Mode::Production,
                state: running,
            },
            to: StateSnapshot {
                mode: Mode::Production,
                state: jam,
            },
            duration_ms: 3_600_000,
        },
        with(
            header_wrongs(),
            vec![
                remove("no duration", &["duration_ms"]),
                set("negative duration", &["duration_ms"], json!(-5)),
                remove("to without mode", &["to", "mode"]),
            ],
        ),
    ));

    covered.insert(check(
        CountDoc {
            schema: SchemaTag::default(),
            kind: CountKind::Good,
            total: ea(15_230.0),
            timestamp_ms: 1_741_068_000_123,
            raw: Some(230.0),
            resets: 1,
            rollovers: 2,
            last_reset_ms: Some(1_741_067_000_000),
        },
        vec![
            set("unknown kind", &["kind"], json!("events")),
            remove("total without uom", &["total", "uom"]),
            set("extra field in quantity", &["total", "unit"], json!("EA")),
            set("negative resets", &["resets"], json!(-1)),
            set("raw as text", &["raw"], json!("230")),
        ],
    ));
    // A document of a publisher from before the reset fields still reads.
    check(
        CountDoc {
            schema: SchemaTag::default(),
            kind: CountKind::Scrap,
            total: ea(12.0),
            timestamp_ms: 1_741_068_000_123,
            raw: None,
            resets: 0,
            rollovers: 0,
            last_reset_ms: None,
        },
        vec![],
    );

    covered.insert(check(
        CountEvent {
            schema: SchemaTag::default(),
            header: header(2).correcting(
                Uuid::parse_str("01956a3c-0001-7abc-8def-0123456789ab").expect("valid"),
                "inspection found 12 leaking bottles",
            ),
            wo_id: Some(id("wo-10234")),
            change: CountChange::Reclassify {
                from: CountKind::Good,
                to: CountKind::Scrap,
                quantity: ea(12.0),
            },
        },
        with(
            header_wrongs()
                .into_iter()
                .filter(|wrong| wrong.name != "corrects without reason")
                .collect(),
            vec![
                remove("no type", &["type"]),
                set("unknown type", &["type"], json!("adjust")),
                remove("reclassify without to", &["to"]),
            ],
        ),
    ));
    let delta = CountEvent {
        schema: SchemaTag::default(),
        header: header(3),
        wo_id: None,
        change: CountChange::Delta {
            kind: CountKind::Produced,
            quantity: ea(10.0),
        },
    };
    check(delta, vec![remove("delta without kind", &["kind"])]);
    let reset = CountEvent {
        schema: SchemaTag::default(),
        header: header(4),
        wo_id: None,
        change: CountChange::Reset {
            kind: CountKind::Good,
            raw_before: 1_678.0,
            raw_after: 0.0,
            total: ea(1_678.0),
        },
    };
    check(
        reset,
        vec![
            remove("reset without raw_after", &["raw_after"]),
            remove("reset without total", &["total"]),
        ],
    );

    let operation = Operation {
        operation_id: "0010".to_owned(),
        description: Some("Fill and cap".to_owned()),
        parent_operation_id: Some("0001".to_owned()),
        hierarchy_scope: Some(loc("acme/berlin/packaging/line-1/filler")),
        equipment: Some("WC-4711-F".to_owned()),
        quantity: Some(ea(2500.0)),
    };
    let component = MaterialRequirement {
        material: "cap-28mm".to_owned(),
        description: None,
        quantity: ea(2500.0),
        material_use: MaterialUse::Consumed,
        operation_id: Some("0010".to_owned()),
        material_lot_id: Some("CAP-2025-117".to_owned()),
        material_sublot_id: Some("box-3".to_owned()),
    };
    covered.insert(check(
        ProductionOrder {
            schema: SchemaTag::default(),
            id: id("po-4711-2"),
            erp_ref: "PO 4711/2".to_owned(),
            revision: 2,
            material: "4711-bottle-05l".to_owned(),
            description: Some("Water 0.5 l".to_owned()),
            quantity: ea(2500.0),
            earliest_start_time: Some(ts("2025-03-04T06:00:00.000Z")),
            latest_end_time: Some(ts("2025-03-04T14:00:00.000Z")),
            hierarchy_scope: loc("acme/berlin/packaging/line-1"),
            equipment: Some("WC-4711".to_owned()),
            priority: Some(5),
            parameters: vec![Parameter {
                name: "fill-volume".to_owned(),
                value: json!(0.5),
                uom: Some(Uom::new("LTR").expect("valid")),
            }],
            operations: vec![operation.clone()],
            components: vec![component.clone()],
            received_at: ts("2025-03-03T18:00:00.000Z"),
        },
        vec![
            remove("no hierarchy_scope", &["hierarchy_scope"]),
            set("unknown top-level field", &["work_center"], json!(1)),
            set("revision not a number", &["revision"], json!("2")),
            set(
                "unknown field in a parameter",
                &["parameters", "0", "unit"],
                json!("LTR"),
            ),
            set(
                "unknown field in an operation",
                &["operations", "0", "work_center"],
                json!("wc1"),
            ),
            set("id that is not a slug", &["id"], json!("PO 4711/2")),
            set(
                "location too deep",
                &["hierarchy_scope"],
                json!("a/b/c/d/e/f/g"),
            ),
            set(
                "location with a class",
                &["hierarchy_scope"],
                json!("acme/_state"),
            ),
            set(
                "unknown material_use",
                &["components", "0", "material_use"],
                json!("used"),
            ),
            set("unit too long", &["quantity", "uom"], json!("PIECE")),
        ],
    ));

    covered.insert(check(
        WorkOrder {
            schema: SchemaTag::default(),
            id: id("po-4711-2"),
            erp_ref: Some("PO 4711/2".to_owned()),
            production_order: Some(id("po-4711-2")),
            material: "4711-bottle-05l".to_owned(),
            status: WorkOrderStatus::Running,
            quantities: WorkOrderQuantities {
                planned: ea(2500.0),
                good: ea(1200.0),
                scrap: ea(12.0),
                rework: ea(0.0),
            },
            hierarchy_scope: loc("acme/berlin/packaging/line-1"),
            operations: vec![operation],
            components: vec![component],
            lots: vec![MaterialActual {
                lot: id("l-8891"),
                material: "4711-bottle-05l".to_owned(),
                quantity: ea(1200.0),
                material_use: MaterialUse::Produced,
            }],
            updated_at: ts("2025-03-04T07:00:00.000Z"),
        },
        vec![
            set("unknown status", &["status"], json!("paused")),
            remove("quantities without rework", &["quantities", "rework"]),
            remove("no updated_at", &["updated_at"]),
        ],
    ));

    covered.insert(check(
        WorkOrderEvent {
            schema: SchemaTag::default(),
            header: header(4),
            wo_id: id("po-4711-2"),
            kind: WorkOrderEventKind::ConfirmationRequested {
                is_final: false,
                good: ea(1200.0),
                scrap: ea(12.0),
                rework: ea(0.0),
                operation_id: Some("0010".to_owned()),
                sequence: 1,
                erp_ref: Some("PO 4711/2".to_owned()),
                production_order: Some(id("po-4711-2")),
                activity: ActivityTimes {
                    setup_s: 900.0,
                    machine_s: 6_000.0,
                    labor_s: 6_900.0,
                },
                goods_movements: vec![
                    GoodsMovement {
                        movement: MovementKind::Consumption,
                        material: "cap-28mm".to_owned(),
                        quantity: ea(1212.0),
                        lot: Some(id("cap-2025-117")),
                    },
                    GoodsMovement {
                        movement: MovementKind::ProductionReceipt,
                        material: "4711-bottle-05l".to_owned(),
                        quantity: ea(1200.0),
                        lot: None,
                    },
                ],
            },
        },
        with(
            header_wrongs(),
            vec![
                remove("no wo_id", &["wo_id"]),
                remove("no final flag", &["final"]),
                set("unknown type", &["type"], json!("confirmed")),
                set(
                    "unknown movement",
                    &["goods_movements", "0", "movement"],
                    json!("transfer"),
                ),
                remove("activity without labor", &["activity", "labor_s"]),
            ],
        ),
    ));
    check(
        WorkOrderEvent {
            schema: SchemaTag::default(),
            header: header(5),
            wo_id: id("po-4711-2"),
            kind: WorkOrderEventKind::ConfirmationFailed {
                request_event_id: Uuid::parse_str("01956a3c-0004-7abc-8def-0123456789ab")
                    .expect("valid"),
                error: "ERP answered 503".to_owned(),
                attempts: 3,
                dead_lettered: false,
            },
        },
        vec![remove("failure without error", &["error"])],
    );
    check(
        WorkOrderEvent {
            schema: SchemaTag::default(),
            header: header(6),
            wo_id: id("po-4711-2"),
            kind: WorkOrderEventKind::StatusChanged {
                from: WorkOrderStatus::Released,
                to: WorkOrderStatus::Running,
            },
        },
        vec![set("unknown status", &["to"], json!("go"))],
    );

    covered.insert(check(
        Lot {
            schema: SchemaTag::default(),
            id: id("l-8891"),
            material: "4711-bottle-05l".to_owned(),
            quantity: ea(1200.0),
            status: LotStatus::Released,
            parents: vec![id("l-cap-77"), id("l-pet-12.3")],
            produced_by: Some(id("po-4711-2")),
            location: Some(loc("acme/berlin/warehouse")),
            erp_ref: Some("CH-8891".to_owned()),
            updated_at: ts("2025-03-04T07:00:00.000Z"),
        },
        vec![
            set("unknown status", &["status"], json!("available")),
            remove("no material", &["material"]),
        ],
    ));

    let output = LotQuantity {
        lot: id("l-8891"),
        material: Some("4711-bottle-05l".to_owned()),
        quantity: ea(1200.0),
    };
    covered.insert(check(
        GenealogyEvent {
            schema: SchemaTag::default(),
            header: header(7),
            kind: GenealogyKind::Transform {
                consumed: vec![LotQuantity {
                    lot: id("l-pet-12.3"),
                    material: None,
                    quantity: Quantity::new(18.5, Uom::KGM),
                }],
                produced: vec![output.clone()],
                wo_id: Some(id("po-4711-2")),
            },
        },
        with(
            header_wrongs(),
            vec![
                remove("transform without produced", &["produced"]),
                set("unknown type", &["type"], json!("blend")),
                remove(
                    "consumed lot without quantity",
                    &["consumed", "0", "quantity"],
                ),
            ],
        ),
    ));
    check(
        GenealogyEvent {
            schema: SchemaTag::default(),
            header: header(8).correcting(
                Uuid::parse_str("01956a3c-0007-7abc-8def-0123456789ab").expect("valid"),
                "wrong input lot scanned",
            ),
            kind: GenealogyKind::Correct,
        },
        vec![remove("correct without corrects", &["corrects"])],
    );
    check(
        GenealogyEvent {
            schema: SchemaTag::default(),
            header: header(9),
            kind: GenealogyKind::Move {
                lot: id("l-8891"),
                from: None,
                to: loc("acme/berlin/warehouse"),
            },
        },
        vec![remove("move without destination", &["to"])],
    );
    check(
        GenealogyEvent {
            schema: SchemaTag::default(),
            header: header(10),
            kind: GenealogyKind::Ship {
                lot: output.clone(),
                customer: Some("Getränke Müller GmbH".to_owned()),
                to: Some(loc("acme/berlin/dock-2")),
            },
        },
        vec![
            remove("ship without lot", &["lot"]),
            remove("shipped lot without quantity", &["lot", "quantity"]),
        ],
    );

    covered.insert(check(
        OeeResult {
            schema: SchemaTag::default(),
            period: OeePeriod {
                kind: OeePeriodKind::Shift,
                id: id("2025-03-04.early"),
            },
            start: ts("2025-03-04T06:00:00.000Z"),
            end: ts("2025-03-04T14:00:00.000Z"),
            availability: Some(0.9),
            performance: Some(0.95),
            quality: Some(0.99),
            oee: Some(0.9 * 0.95 * 0.99),
            nee: None,
            teep: Some(0.5),
            utilisation: Some(0.6),
            technical_efficiency: None,
            setup_ratio: Some(0.03),
            scrap_ratio: Some(0.005),
            rework_ratio: Some(0.0),
            null_reasons: [("technical_efficiency".to_owned(), "no data".to_owned())].into(),
            times: TimeBuckets {
                pot_ms: 30_600_000,
                pbt_ms: 28_800_000,
                apt_ms: 25_920_000,
                asut_ms: 900_000,
                adet_ms: 1_500_000,
                adot_ms: 480_000,
                pdt_ms: 1_800_000,
                minor_stop_ms: 60_000,
                unknown_ms: 0,
                ideal_ms: 24_624_000.0,
            },
            counts: OeeCounts {
                produced: ea(2512.0),
                good: ea(2500.0),
                scrap: ea(12.0),
                rework: ea(0.0),
            },
            losses: vec![Loss {
                reason: "Jam at infeed".to_owned(),
                category: StateCategory::UnplannedDown,
                duration_ms: 1_500_000,
                occurrences: 4,
            }],
            six_big_losses: SixBigLosses {
                breakdowns_ms: 1_440_000,
                setup_ms: 900_000,
                minor_stops_ms: 60_000,
                speed_ms: 1_296_000.0,
                defects_ms: 117_000.0,
                reduced_yield_ms: 0.0,
            },
            minor_stop_policy: MinorStopPolicy::Iso,
            calendar: Some("two-shift@Europe/Berlin".to_owned()),
            version: 2,
            is_final: true,
            corrects: Some(1),
            reason: Some("late reclassification".to_owned()),
        },
        vec![
            set("unknown policy", &["minor_stop_policy"], json!("both")),
            remove("no final flag", &["final"]),
            remove("times without apt", &["times", "apt_ms"]),
            set("period kind current", &["period", "kind"], json!("current")),
            set("availability as text", &["availability"], json!("n/a")),
        ],
    ));

    covered.insert(check(
        ServiceHealth {
            schema: SchemaTag::default(),
            service: id("oee"),
            status: HealthStatus::Degraded,
            version: "0.1.0".to_owned(),
            started_at: ts("2025-03-04T05:00:00.000Z"),
            last_error: Some("broker connection lost".to_owned()),
            restarts: 2,
        },
        vec![
            set("unknown status", &["status"], json!("up")),
            set("negative restarts", &["restarts"], json!(-1)),
            remove("no version", &["version"]),
        ],
    ));

    covered.insert(check(
        ErrorReport {
            schema: SchemaTag::default(),
            service: id("scada-bridge"),
            topic: Some("spBv1.0/plant1/NDATA/filler-edge".to_owned()),
            reason: "protobuf decode failed: invalid wire type".to_owned(),
            payload_excerpt: Some("\u{fffd}\u{fffd}\u{1}".to_owned()),
            payload_sha256: Some("a".repeat(64)),
            occurred_at: ts("2025-03-04T05:20:00.123Z"),
        },
        vec![
            Wrong {
                name: "neither excerpt nor hash",
                apply: Box::new(|value| {
                    let object = value.as_object_mut().expect("object");
                    object.remove("payload_excerpt");
                    object.remove("payload_sha256");
                }),
            },
            set("hash too short", &["payload_sha256"], json!("abc")),
            remove("no reason", &["reason"]),
        ],
    ));

    covered.insert(check(
        CmdReply::error("work order po-4711-2 is not released"),
        vec![
            remove("failure without error", &["error"]),
            set("ok as text", &["ok"], json!("no")),
        ],
    ));
    check(CmdReply::ok(Some(json!({"status": "released"}))), vec![]);

    let listed: BTreeSet<&str> = schemas::ALL.iter().map(|file| file.name).collect();
    assert_eq!(covered, listed, "every listed schema has a sample here");
}

#[test]
fn every_schema_file_is_listed_and_is_a_valid_schema() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("schemas/ exists") {
        let name = entry
            .expect("readable entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".schema.json") {
            on_disk.insert(name);
        }
    }
    let listed: BTreeSet<String> = schemas::ALL.iter().map(|file| file.file_name()).collect();
    assert_eq!(
        on_disk, listed,
        "schemas/*.schema.json and schemas::ALL differ"
    );
    for file in schemas::ALL {
        let schema: Value = serde_json::from_str(file.json).expect("schema is JSON");
        assert_eq!(schema["title"], file.id(), "{}", file.file_name());
        assert_eq!(
            schema["properties"]["schema"]["const"],
            file.id(),
            "{}",
            file.file_name()
        );
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        jsonschema::meta::validate(&schema)
            .unwrap_or_else(|err| panic!("{}: {err}", file.file_name()));
        let on_disk = std::fs::read_to_string(dir.join(file.file_name())).expect("readable");
        assert_eq!(
            on_disk,
            file.json,
            "compiled-in copy of {} is current",
            file.file_name()
        );
    }
}
