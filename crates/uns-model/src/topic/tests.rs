//! Topic parsing tables: good topics round-trip, bad topics fail with the expected variant.

use proptest::prelude::*;

use super::*;

fn loc(text: &str) -> Location {
    text.parse().expect("test locations are valid")
}

fn id(text: &str) -> Id {
    Id::new(text).expect("test ids are valid")
}

#[test]
fn good_topics_round_trip() {
    fn check(topic: &str, expected: UnsTopic, retained: bool) {
        let parsed: UnsTopic = topic.parse().unwrap_or_else(|err| panic!("{topic}: {err}"));
        assert_eq!(parsed, expected, "{topic}");
        assert_eq!(parsed.to_string(), topic, "display round trip");
        assert_eq!(parsed.is_retained(), retained, "retained flag of {topic}");
    }
    let cell = loc("acme/berlin/packaging/line-1/filler");
    let at = |class| UnsTopic::located(cell.clone(), class);
    let base = "uns/v1/acme/berlin/packaging/line-1/filler";
    check(&format!("{base}/_meta"), at(Class::Meta), true);
    check(
        &format!("{base}/_tag/temperature/zone-1"),
        at(Class::Tag(
            TagPath::new(vec![id("temperature"), id("zone-1")]).expect("non-empty"),
        )),
        true,
    );
    check(&format!("{base}/_state"), at(Class::State), true);
    check(
        &format!("{base}/_state/events"),
        at(Class::StateEvents),
        false,
    );
    check(
        &format!("{base}/_count/good"),
        at(Class::Count(CountKind::Good)),
        true,
    );
    check(
        &format!("{base}/_count/scrap"),
        at(Class::Count(CountKind::Scrap)),
        true,
    );
    check(
        &format!("{base}/_count/rework"),
        at(Class::Count(CountKind::Rework)),
        true,
    );
    check(
        &format!("{base}/_count/produced"),
        at(Class::Count(CountKind::Produced)),
        true,
    );
    check(
        &format!("{base}/_count/events"),
        at(Class::CountEvents),
        false,
    );
    check(
        &format!("{base}/_tag/process/temperature/_history"),
        at(Class::TagHistory(
            TagPath::new(vec![id("process"), id("temperature")]).expect("non-empty"),
        )),
        false,
    );
    check(
        &format!("{base}/_erp/production-orders/po-4711-2"),
        at(Class::ErpProductionOrder(id("po-4711-2"))),
        true,
    );
    check(
        &format!("{base}/_wo/wo-17"),
        at(Class::WorkOrder(id("wo-17"))),
        true,
    );
    check(
        &format!("{base}/_wo/wo-17/events"),
        at(Class::WorkOrderEvents(id("wo-17"))),
        false,
    );
    check(
        &format!("{base}/_wo/_active"),
        at(Class::WorkOrderActive),
        true,
    );
    check(
        &format!("{base}/_lot/l-8891.2"),
        at(Class::Lot(id("l-8891.2"))),
        true,
    );
    check(
        &format!("{base}/_genealogy/events"),
        at(Class::GenealogyEvents),
        false,
    );
    check(
        &format!("{base}/_oee/current/hour"),
        at(Class::OeeCurrent(OeePeriodKind::Hour)),
        true,
    );
    check(
        &format!("{base}/_oee/current/shift"),
        at(Class::OeeCurrent(OeePeriodKind::Shift)),
        true,
    );
    check(
        &format!("{base}/_oee/current/wo"),
        at(Class::OeeCurrent(OeePeriodKind::Wo)),
        true,
    );
    check(
        &format!("{base}/_oee/hour/2025-03-04t05"),
        at(Class::Oee(OeePeriodKind::Hour, id("2025-03-04t05"))),
        true,
    );
    check(
        &format!("{base}/_oee/shift/2025-03-04.early"),
        at(Class::Oee(OeePeriodKind::Shift, id("2025-03-04.early"))),
        true,
    );
    check(
        &format!("{base}/_oee/day/2025-03-04"),
        at(Class::Oee(OeePeriodKind::Day, id("2025-03-04"))),
        true,
    );
    check(
        &format!("{base}/_oee/wo/wo-17"),
        at(Class::Oee(OeePeriodKind::Wo, id("wo-17"))),
        true,
    );
    check(
        &format!("{base}/_cmd/wo/release"),
        at(Class::Cmd(vec![id("wo"), id("release")])),
        false,
    );
    check(
        &format!("{base}/_cmd/trace"),
        at(Class::Cmd(vec![id("trace")])),
        false,
    );
    check(&format!("{base}/_errors"), at(Class::Errors), false);
    check(
        "uns/v1/acme/_meta",
        UnsTopic::located(loc("acme"), Class::Meta),
        true,
    );
    check(
        "uns/v1/a/b/c/d/e/f/_state",
        UnsTopic::located(loc("a/b/c/d/e/f"), Class::State),
        true,
    );
    check(
        "uns/v1/_schemas/work-order/v1",
        UnsTopic::schema("work-order", 1).expect("valid name"),
        true,
    );
    check(
        "uns/v1/_services/oee",
        UnsTopic::service("oee").expect("valid name"),
        true,
    );
    check(
        "uns/v1/_replies/uns-cli-4f2a",
        UnsTopic::reply("uns-cli-4f2a").expect("valid name"),
        false,
    );
}

#[test]
fn bad_topics_fail_with_the_expected_error() {
    fn check(topic: &str, expected: TopicError) {
        let err = topic.parse::<UnsTopic>().expect_err(topic);
        assert_eq!(err, expected, "{topic}");
        assert!(!err.to_string().is_empty());
    }
    fn segment(index: usize, segment: &str, source: SegmentError) -> TopicError {
        TopicError::Segment {
            index,
            segment: segment.to_owned(),
            reason: source,
        }
    }
    fn missing(class: &str, what: &'static str) -> TopicError {
        TopicError::Missing {
            class: class.to_owned(),
            what,
        }
    }
    fn extra(class: &str, extra: &str) -> TopicError {
        TopicError::Extra {
            class: class.to_owned(),
            extra: extra.to_owned(),
        }
    }
    check(
        "spBv1.0/g/NDATA/e",
        TopicError::WrongPrefix {
            found: "spBv1.0".to_owned(),
        },
    );
    check(
        "",
        TopicError::WrongPrefix {
            found: String::new(),
        },
    );
    check(
        "/uns/v1/a/_meta",
        TopicError::WrongPrefix {
            found: String::new(),
        },
    );
    check(
        "uns/v2/a/_meta",
        TopicError::WrongVersion {
            found: "v2".to_owned(),
        },
    );
    check(
        "uns",
        TopicError::WrongVersion {
            found: String::new(),
        },
    );
    check(
        "uns/v1",
        missing(
            "uns/v1",
            "a location, `_schemas`, `_services` or `_replies`",
        ),
    );
    check("uns/v1/acme//_meta", segment(3, "", SegmentError::Empty));
    check("uns/v1/", segment(2, "", SegmentError::Empty));
    check(
        "uns/v1/acme/Berlin/_meta",
        segment(
            3,
            "Berlin",
            SegmentError::InvalidChar {
                ch: 'B',
                offset: 0,
                allowed: "[a-z0-9-_]",
            },
        ),
    );
    check(
        "uns/v1/acme/a.b/_meta",
        segment(
            3,
            "a.b",
            SegmentError::InvalidChar {
                ch: '.',
                offset: 1,
                allowed: "[a-z0-9-_]",
            },
        ),
    );
    check(
        &format!("uns/v1/{}/_meta", "a".repeat(65)),
        segment(2, &"a".repeat(65), SegmentError::TooLong { len: 65 }),
    );
    check(
        "uns/v1/a/b/c/d/e/f/g/_meta",
        TopicError::LocationTooDeep { depth: 7 },
    );
    check("uns/v1/acme/berlin", TopicError::NoClass);
    check(
        "uns/v1/_state",
        TopicError::NoLocation {
            class: "_state".to_owned(),
        },
    );
    check(
        "uns/v1/acme/_foo",
        TopicError::UnknownClass {
            class: "_foo".to_owned(),
            index: 3,
        },
    );
    check(
        "uns/v1/acme/_wo",
        missing("_wo", "a work order id or `_active`"),
    );
    check("uns/v1/acme/_lot", missing("_lot", "a lot id"));
    check("uns/v1/acme/_lot/", segment(4, "", SegmentError::Empty));
    check("uns/v1/acme/_tag", missing("_tag", "a metric path"));
    check("uns/v1/acme/_cmd", missing("_cmd", "a command verb"));
    check("uns/v1/acme/_count", missing("_count", "a count kind"));
    check(
        "uns/v1/acme/_erp/production-orders",
        missing("_erp/production-orders", "a production order id"),
    );
    check("uns/v1/acme/_oee/hour", missing("_oee/hour", "a period id"));
    check(
        "uns/v1/_schemas/tag",
        missing("_schemas/{name}", "a version such as `v1`"),
    );
    check("uns/v1/_services", missing("_services", "a service name"));
    check(
        "uns/v1/acme/_count/bad",
        TopicError::UnknownKind {
            class: "_count".to_owned(),
            what: "count kind",
            found: "bad".to_owned(),
            allowed: COUNT_KINDS,
        },
    );
    check(
        "uns/v1/acme/_oee/current/day",
        TopicError::UnknownKind {
            class: "_oee/current".to_owned(),
            what: "period kind",
            found: "day".to_owned(),
            allowed: OEE_CURRENT_KINDS,
        },
    );
    check(
        "uns/v1/acme/_oee/week/w1",
        TopicError::UnknownKind {
            class: "_oee".to_owned(),
            what: "period kind",
            found: "week".to_owned(),
            allowed: OEE_KINDS,
        },
    );
    check(
        "uns/v1/acme/_wo/wo-1/status",
        TopicError::UnknownKind {
            class: "_wo/wo-1".to_owned(),
            what: "work order sub-topic",
            found: "status".to_owned(),
            allowed: "events",
        },
    );
    check(
        "uns/v1/_schemas/tag/1",
        TopicError::UnknownKind {
            class: "_schemas/tag".to_owned(),
            what: "schema version",
            found: "1".to_owned(),
            allowed: "v1, v2, ... (no leading zeros)",
        },
    );
    check(
        "uns/v1/_schemas/tag/v01",
        TopicError::UnknownKind {
            class: "_schemas/tag".to_owned(),
            what: "schema version",
            found: "v01".to_owned(),
            allowed: "v1, v2, ... (no leading zeros)",
        },
    );
    check("uns/v1/acme/_meta/x", extra("_meta", "x"));
    check("uns/v1/acme/_state/x", extra("_state", "x"));
    check("uns/v1/acme/_state/events/x", extra("_state/events", "x"));
    check("uns/v1/acme/_count/good/x/y", extra("_count/good", "x/y"));
    check("uns/v1/acme/_wo/_active/x", extra("_wo/_active", "x"));
    check("uns/v1/acme/_wo/w/events/x", extra("_wo/w/events", "x"));
    check("uns/v1/acme/_errors/", extra("_errors", ""));
    check("uns/v1/_services/oee/x", extra("_services/oee", "x"));
    check("uns/v1/_replies", missing("_replies", "a client id"));
    check("uns/v1/_replies/c/x", extra("_replies/c", "x"));
    check(
        "uns/v1/acme/_wo/WO#17",
        TopicError::Wildcard {
            ch: '#',
            offset: 18,
        },
    );
    check(
        "uns/v1/+/_meta",
        TopicError::Wildcard { ch: '+', offset: 7 },
    );
    check(
        "uns/v1/acme/_wo/Wo-1",
        segment(
            4,
            "Wo-1",
            SegmentError::InvalidChar {
                ch: 'W',
                offset: 0,
                allowed: "[a-z0-9-_.]",
            },
        ),
    );
    check(
        "uns/v1/acme/_tag/_x",
        segment(
            4,
            "_x",
            SegmentError::BadStart {
                ch: '_',
                why: "an id starts with [a-z0-9]",
            },
        ),
    );
    let long = format!("uns/v1/acme/_tag/{}", vec!["a"; 600].join("/"));
    check(&long, TopicError::TooLong { len: long.len() });
}

#[test]
fn location_navigation() {
    let cell = loc("acme/berlin/packaging/line-1/filler");
    assert_eq!(cell.depth(), 5);
    assert_eq!(cell.enterprise().as_str(), "acme");
    assert_eq!(cell.leaf().as_str(), "filler");
    assert_eq!(cell.parent(), Some(loc("acme/berlin/packaging/line-1")));
    assert_eq!(loc("acme").parent(), None);
    let ancestors: Vec<String> = cell
        .ancestors()
        .map(|ancestor| ancestor.to_string())
        .collect();
    assert_eq!(
        ancestors,
        [
            "acme/berlin/packaging/line-1/filler",
            "acme/berlin/packaging/line-1",
            "acme/berlin/packaging",
            "acme/berlin",
            "acme"
        ]
    );
    let unit = cell
        .child(Segment::new("nozzle").expect("valid"))
        .expect("depth 6 is allowed");
    assert_eq!(
        unit.to_string(),
        "acme/berlin/packaging/line-1/filler/nozzle"
    );
    assert_eq!(
        unit.child(Segment::new("x").expect("valid")),
        Err(TopicError::LocationTooDeep { depth: 7 })
    );
    assert!(loc("acme/berlin").contains(&cell));
    assert!(!cell.contains(&loc("acme/berlin")));
    assert!(matches!(
        "acme/_x".parse::<Location>(),
        Err(TopicError::Segment { index: 1, .. })
    ));
    assert_eq!(Location::new(Vec::new()), None);
}

#[test]
fn explanation_names_levels_class_and_owner() {
    let topic: UnsTopic = "uns/v1/acme/berlin/packaging/line-1/filler/_wo/wo-17/events"
        .parse()
        .expect("valid");
    let explanation = topic.explain();
    assert_eq!(explanation.kind, "located");
    assert_eq!(explanation.class, "work_order_events");
    assert!(!explanation.retained);
    assert_eq!(explanation.owner, "workorders / erp-bridge");
    assert_eq!(
        explanation.payload_schema.as_deref(),
        Some("uns/work-order-event/v1")
    );
    assert_eq!(
        explanation.class_args,
        vec![ClassArg {
            name: "id",
            value: "wo-17".to_owned()
        }]
    );
    let levels: Vec<_> = explanation
        .location
        .iter()
        .map(|part| part.default_level)
        .collect();
    assert_eq!(
        levels,
        [
            Some(Isa95Level::Enterprise),
            Some(Isa95Level::Site),
            Some(Isa95Level::Area),
            Some(Isa95Level::ProductionLine),
            Some(Isa95Level::WorkCell)
        ]
    );
    let json = serde_json::to_value(&explanation).expect("serializable");
    assert_eq!(json["location"][3]["default_level"], "ProductionLine");
    let service = UnsTopic::service("oee").expect("valid").explain();
    assert!(service.retained);
    assert_eq!(
        service.payload_schema.as_deref(),
        Some("uns/service-health/v1")
    );
    let reply = UnsTopic::reply("uns-cli-1").expect("valid").explain();
    assert!(!reply.retained);
    assert_eq!(reply.payload_schema.as_deref(), Some("uns/cmd-reply/v1"));
}

fn segment_strategy() -> impl Strategy<Value = Segment> {
    "[a-z0-9-][a-z0-9_-]{0,12}"
        .prop_map(|text| Segment::new(&text).expect("regex matches the rules"))
}

fn id_strategy() -> impl Strategy<Value = Id> {
    "[a-z0-9][a-z0-9_.-]{0,12}".prop_map(|text| Id::new(&text).expect("regex matches the rules"))
}

fn class_strategy() -> impl Strategy<Value = Class> {
    let count_kind = prop_oneof![
        Just(CountKind::Good),
        Just(CountKind::Scrap),
        Just(CountKind::Rework),
        Just(CountKind::Produced)
    ];
    let current_kind = prop_oneof![
        Just(OeePeriodKind::Hour),
        Just(OeePeriodKind::Shift),
        Just(OeePeriodKind::Wo)
    ];
    let period_kind = prop_oneof![
        Just(OeePeriodKind::Hour),
        Just(OeePeriodKind::Shift),
        Just(OeePeriodKind::Day),
        Just(OeePeriodKind::Wo)
    ];
    prop_oneof![
        Just(Class::Meta),
        proptest::collection::vec(id_strategy(), 1..5)
            .prop_map(|parts| Class::Tag(TagPath::new(parts).expect("non-empty"))),
        proptest::collection::vec(id_strategy(), 1..5)
            .prop_map(|parts| Class::TagHistory(TagPath::new(parts).expect("non-empty"))),
        Just(Class::State),
        Just(Class::StateEvents),
        count_kind.prop_map(Class::Count),
        Just(Class::CountEvents),
        id_strategy().prop_map(Class::ErpProductionOrder),
        id_strategy().prop_map(Class::WorkOrder),
        id_strategy().prop_map(Class::WorkOrderEvents),
        Just(Class::WorkOrderActive),
        id_strategy().prop_map(Class::Lot),
        Just(Class::GenealogyEvents),
        current_kind.prop_map(Class::OeeCurrent),
        (period_kind, id_strategy()).prop_map(|(kind, period)| Class::Oee(kind, period)),
        proptest::collection::vec(id_strategy(), 1..4).prop_map(Class::Cmd),
        Just(Class::Errors),
    ]
}

fn topic_strategy() -> impl Strategy<Value = UnsTopic> {
    let located = (
        proptest::collection::vec(segment_strategy(), 1..=MAX_DEPTH),
        class_strategy(),
    )
        .prop_map(|(segments, class)| {
            UnsTopic::located(Location::new(segments).expect("1..=6"), class)
        });
    prop_oneof![
        4 => located,
        1 => (id_strategy(), any::<u32>()).prop_map(|(name, version)| UnsTopic::Schema { name, version }),
        1 => id_strategy().prop_map(|name| UnsTopic::Service { name }),
        1 => id_strategy().prop_map(|client| UnsTopic::Reply { client }),
    ]
}

proptest! {
    #[test]
    fn generated_topics_round_trip(topic in topic_strategy()) {
        let text = topic.to_string();
        let parsed: UnsTopic = text.parse().map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert_eq!(&parsed, &topic);
        prop_assert_eq!(parsed.to_string(), text.clone());
        prop_assert!(TopicFilter::all_uns().matches(&text));
        if let Some(location) = topic.location() {
            prop_assert!(TopicFilter::under(location).matches(&text));
        }
    }

    #[test]
    fn slug_always_gives_a_valid_id(text in any::<String>()) {
        let id = slug(&text);
        prop_assert!(Id::new(id.as_str()).is_ok());
        prop_assert_eq!(slug(&text), id);
    }
}
