//! The edge node session (`uns_sparkplug::edge`), one test per Sparkplug 3.0 requirement it implements,
//! named after the requirement id (`tck-id-` dropped). Every test looks at what a host would see: the
//! encoded bytes decoded back through `uns_sparkplug::decode`.

use sparkplug_rs::protobuf::Message as _;
use uns_sparkplug::edge::{
    BD_SEQ, CommandError, DeviceDef, EdgeError, EdgeNode, MetricDef, Outgoing, Qos, REBIRTH,
};
use uns_sparkplug::{
    DataType, Metric, Payload, PropertySet, PropertyValue, SparkplugTopic, Value, decode, encode,
};

const T0: u64 = 1_741_068_000_000;

/// A node with one node metric and two devices: the shape of a packaging line.
fn line() -> EdgeNode {
    let unit = PropertySet {
        properties: vec![(
            "engUnit".to_owned(),
            PropertyValue {
                datatype: Some(DataType::String),
                value: Some(Value::String("CEL".to_owned())),
            },
        )],
    };
    let filler = DeviceDef::new(
        "filler",
        vec![
            MetricDef::new("Speed", Value::Double(0.0)),
            MetricDef::new("Count/Good", Value::UInt64(0)),
            MetricDef::new("Process/Temperature", Value::Float(20.0)).with_properties(unit),
        ],
    );
    let capper = DeviceDef::new(
        "capper",
        vec![MetricDef::new("State/Code", Value::Int32(2))],
    );
    EdgeNode::new(
        "acme-berlin",
        "line-1",
        vec![MetricDef::new("Uptime", Value::UInt64(0))],
        vec![filler, capper],
    )
    .unwrap_or_else(|error| panic!("valid node: {error}"))
}

/// A node that has connected and published its births.
fn born_line() -> EdgeNode {
    let mut node = line();
    node.on_connect(T0)
        .unwrap_or_else(|error| panic!("on_connect: {error}"));
    node
}

fn payload(outgoing: &Outgoing) -> Payload {
    decode(&outgoing.payload).unwrap_or_else(|error| panic!("decode {}: {error}", outgoing.topic))
}

fn metric<'a>(payload: &'a Payload, name: &str) -> &'a Metric {
    payload
        .metrics
        .iter()
        .find(|metric| metric.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no metric {name} in {payload:?}"))
}

fn bd_seq_of(payload: &Payload) -> Option<Value> {
    metric(payload, BD_SEQ).value.clone()
}

fn ddata(node: &mut EdgeNode, device: &str, name: &str, value: Value, now: u64) -> Outgoing {
    node.data(Some(device), vec![(name.to_owned(), value)], now)
        .unwrap_or_else(|error| panic!("data: {error}"))
        .unwrap_or_else(|| panic!("{name} changed, so DDATA is due"))
}

fn ncmd(node: &EdgeNode, metrics: Vec<Metric>) -> (SparkplugTopic, Vec<u8>) {
    let command = Payload {
        timestamp: Some(T0),
        metrics,
        ..Payload::default()
    };
    let bytes = encode(&command).unwrap_or_else(|error| panic!("encode NCMD: {error}"));
    (node.ncmd_topic(), bytes)
}

fn rebirth_request(node: &EdgeNode, value: bool) -> (SparkplugTopic, Vec<u8>) {
    ncmd(node, vec![Metric::new(REBIRTH, Value::Boolean(value))])
}

fn kinds(messages: &[Outgoing]) -> Vec<String> {
    messages
        .iter()
        .map(|message| message.topic.to_string())
        .collect()
}

// ---- topics and MQTT flags -----------------------------------------------------------------------------

#[test]
fn topics_nbirth_topic_and_dbirth_topics() {
    let mut node = line();
    let (will, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(will.topic.to_string(), "spBv1.0/acme-berlin/NDEATH/line-1");
    assert_eq!(
        kinds(&births),
        [
            "spBv1.0/acme-berlin/NBIRTH/line-1",
            "spBv1.0/acme-berlin/DBIRTH/line-1/filler",
            "spBv1.0/acme-berlin/DBIRTH/line-1/capper",
        ]
    );
    assert_eq!(
        node.ncmd_topic().to_string(),
        "spBv1.0/acme-berlin/NCMD/line-1"
    );
    assert_eq!(node.dcmd_filter(), "spBv1.0/acme-berlin/DCMD/line-1/+");
}

#[test]
fn payloads_nbirth_qos_and_retain_dbirth_ndata_ddata_ddeath_too() {
    let mut node = line();
    let (_, mut messages) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    messages.push(ddata(&mut node, "filler", "Speed", Value::Double(1.0), T0));
    messages.extend(
        node.data(None, vec![("Uptime".to_owned(), Value::UInt64(5))], T0)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    messages.push(
        node.device_death("capper", T0)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(messages.len(), 6);
    for message in &messages {
        assert_eq!(message.qos, Qos::AtMostOnce, "{}", message.topic);
        assert!(!message.retain, "{}", message.topic);
    }
}

// ---- bdSeq ---------------------------------------------------------------------------------------------

#[test]
fn payloads_ndeath_will_message_qos_and_retain() {
    let mut node = line();
    let will = node.connect(T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(will.qos, Qos::AtLeastOnce);
    assert!(!will.retain);
}

#[test]
fn payloads_ndeath_seq_and_topics_ndeath_payload() {
    let mut node = line();
    let will = payload(&node.connect(T0).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(will.seq, None, "NDEATH carries no seq");
    assert_eq!(will.metrics.len(), 1, "only bdSeq: {will:?}");
    assert_eq!(will.metrics[0].name.as_deref(), Some(BD_SEQ));
    assert_eq!(will.timestamp, Some(T0));
}

#[test]
fn message_flow_edge_node_birth_publish_will_message_payload_bdseq_is_int64_in_long_value() {
    let mut node = line().with_bd_seq(200);
    let will = node.connect(T0).unwrap_or_else(|e| panic!("{e}"));
    let ours = payload(&will);
    assert_eq!(ours.metrics[0].datatype, Some(DataType::Int64));
    assert_eq!(ours.metrics[0].value, Some(Value::Int64(200)));
    // The wire field, read by an independent protobuf stack: long_value, datatype code 4.
    let foreign = sparkplug_rs::Payload::parse_from_bytes(&will.payload)
        .unwrap_or_else(|error| panic!("sparkplug-rs: {error}"));
    assert_eq!(foreign.metrics[0].datatype, Some(4));
    assert_eq!(
        foreign.metrics[0].value,
        Some(sparkplug_rs::payload::metric::Value::LongValue(200))
    );
}

#[test]
fn topics_nbirth_bdseq_increment_per_connect_and_wraps() {
    // (bdSeq the node starts from, connects, bdSeq of each connect's Will and NBIRTH)
    let check = |start: u8, n_connects: usize, expected: &[i64]| {
        let mut node = line().with_bd_seq(start);
        let mut seen = Vec::new();
        for _ in 0..n_connects {
            let (will, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
            let will_bd_seq = bd_seq_of(&payload(&will));
            assert_eq!(will_bd_seq, bd_seq_of(&payload(&births[0])));
            match will_bd_seq {
                Some(Value::Int64(bd_seq)) => seen.push(bd_seq),
                other => panic!("bdSeq {other:?}"),
            }
        }
        assert_eq!(seen, expected, "start {start}");
    };
    check(0, 3, &[0, 1, 2]);
    check(254, 4, &[254, 255, 0, 1]);
    check(255, 1, &[255]);
}

#[test]
fn payloads_nbirth_bdseq_and_bdseq_repeat() {
    let mut node = line();
    for _ in 0..3 {
        let will = payload(&node.connect(T0).unwrap_or_else(|e| panic!("{e}")));
        let births = node.birth(T0 + 1).unwrap_or_else(|e| panic!("{e}"));
        let nbirth = payload(&births[0]);
        assert_eq!(metric(&nbirth, BD_SEQ).datatype, Some(DataType::Int64));
        assert_eq!(bd_seq_of(&nbirth), bd_seq_of(&will));
    }
}

#[test]
fn birth_without_connect_still_carries_a_bdseq() {
    let mut node = line();
    let births = node.birth(T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bd_seq_of(&payload(&births[0])), Some(Value::Int64(0)));
    assert_eq!(node.bd_seq(), Some(0));
    assert_eq!(node.next_bd_seq(), 1);
}

// ---- NBIRTH / DBIRTH content ---------------------------------------------------------------------------

#[test]
fn payloads_nbirth_seq_is_zero_in_every_nbirth() {
    let mut node = line();
    let (_, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payload(&births[0]).seq, Some(0));
    for value in 1..10 {
        ddata(
            &mut node,
            "filler",
            "Speed",
            Value::Double(value.into()),
            T0,
        );
    }
    let (topic, bytes) = rebirth_request(&node, true);
    let rebirth = node
        .on_command(&topic, &bytes, T0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payload(&rebirth[0]).seq, Some(0));
    let (_, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payload(&births[0]).seq, Some(0));
}

#[test]
fn payloads_nbirth_rebirth_req_boolean_false_without_alias() {
    let node_births = born_line().birth(T0).unwrap_or_else(|e| panic!("{e}"));
    let nbirth = payload(&node_births[0]);
    let rebirth = metric(&nbirth, REBIRTH);
    assert_eq!(rebirth.datatype, Some(DataType::Boolean));
    assert_eq!(rebirth.value, Some(Value::Boolean(false)));
    // [tck-id-operational-behavior-data-commands-rebirth-name-aliases]
    assert_eq!(rebirth.alias, None);
}

#[test]
fn payloads_alias_birth_requirement_name_alias_datatype_timestamp() {
    let mut node = line();
    let (_, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    for birth in &births {
        let decoded = payload(birth);
        assert_eq!(decoded.timestamp, Some(T0), "{}", birth.topic);
        for metric in &decoded.metrics {
            let label = metric.label();
            assert!(metric.name.is_some(), "{label}");
            assert!(metric.datatype.is_some(), "{label}");
            assert!(metric.timestamp.is_some(), "{label}");
            assert!(metric.value.is_some(), "{label} has its current value");
            let session_metric = matches!(metric.name.as_deref(), Some(BD_SEQ | REBIRTH));
            assert_eq!(metric.alias.is_some(), !session_metric, "{label}");
        }
    }
    let temperature = metric(&payload(&births[1]), "Process/Temperature").clone();
    assert_eq!(
        temperature
            .properties
            .as_ref()
            .and_then(|properties| properties.get("engUnit"))
            .and_then(|unit| unit.value.clone()),
        Some(Value::String("CEL".to_owned()))
    );
}

#[test]
fn payloads_alias_uniqueness_across_the_edge_node() {
    let mut node = line();
    let (_, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    let mut aliases: Vec<u64> = births
        .iter()
        .flat_map(|birth| payload(birth).metrics)
        .filter_map(|metric| metric.alias)
        .collect();
    let n_aliases = aliases.len();
    aliases.sort_unstable();
    aliases.dedup();
    assert_eq!(aliases.len(), n_aliases, "aliases repeat: {aliases:?}");
    assert_eq!(n_aliases, 5, "Uptime + 3 filler + 1 capper metrics");
}

#[test]
fn payloads_dbirth_order_right_after_nbirth_with_consecutive_seq() {
    let mut node = line();
    let (_, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    let seqs: Vec<Option<u64>> = births.iter().map(|birth| payload(birth).seq).collect();
    assert_eq!(seqs, [Some(0), Some(1), Some(2)]);
    let first_data = ddata(&mut node, "capper", "State/Code", Value::Int32(6), T0);
    assert_eq!(payload(&first_data).seq, Some(3));
}

#[test]
fn operational_behavior_data_publish_nbirth_reports_current_values() {
    let mut node = born_line();
    ddata(&mut node, "filler", "Count/Good", Value::UInt64(42), T0 + 5);
    let births = node.birth(T0 + 10).unwrap_or_else(|e| panic!("{e}"));
    let count = metric(&payload(&births[1]), "Count/Good").clone();
    assert_eq!(count.value, Some(Value::UInt64(42)));
    assert_eq!(count.timestamp, Some(T0 + 5), "the value's own timestamp");
}

// ---- DATA ----------------------------------------------------------------------------------------------

#[test]
fn payloads_sequence_num_incrementing_across_node_and_devices_wraps_255_to_0() {
    let mut node = born_line();
    let mut seqs = Vec::new();
    for step in 0..300u64 {
        let message = if step % 2 == 0 {
            ddata(
                &mut node,
                "filler",
                "Count/Good",
                Value::UInt64(step + 1),
                T0,
            )
        } else {
            node.data(
                None,
                vec![("Uptime".to_owned(), Value::UInt64(step + 1))],
                T0,
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("changed"))
        };
        seqs.push(payload(&message).seq.unwrap_or_else(|| panic!("no seq")));
    }
    // The births took 0, 1, 2.
    let expected: Vec<u64> = (3..303).map(|seq| seq % 256).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn payloads_alias_data_cmd_requirement_alias_only_no_datatype() {
    let mut node = born_line();
    let alias = node.alias(Some("filler"), "Speed");
    let message = ddata(&mut node, "filler", "Speed", Value::Double(612.5), T0 + 7);
    assert_eq!(
        message.topic.to_string(),
        "spBv1.0/acme-berlin/DDATA/line-1/filler"
    );
    let decoded = payload(&message);
    assert_eq!(decoded.timestamp, Some(T0 + 7));
    assert_eq!(decoded.metrics.len(), 1);
    let speed = &decoded.metrics[0];
    assert_eq!(speed.name, None);
    assert_eq!(speed.alias, alias);
    assert!(alias.is_some());
    assert_eq!(speed.datatype, None);
    assert_eq!(speed.timestamp, Some(T0 + 7));
    assert!(!speed.is_historical);
    // A host types the value from the DBIRTH datatype.
    let typed = match &speed.value {
        Some(Value::Untyped(raw)) => Value::from_raw(DataType::Double, raw.clone()),
        other => panic!("untyped value expected, got {other:?}"),
    };
    assert_eq!(typed, Ok(Value::Double(612.5)));
}

#[test]
fn operational_behavior_data_publish_nbirth_change_report_by_exception() {
    let mut node = born_line();
    let values = |speed: f64, count: u64| {
        vec![
            ("Speed".to_owned(), Value::Double(speed)),
            ("Count/Good".to_owned(), Value::UInt64(count)),
        ]
    };
    // (speed, count) → number of metrics in the DDATA (None = no message)
    let steps = [
        ((0.0, 0), None), // as born
        ((600.0, 0), Some(1)),
        ((600.0, 10), Some(1)),
        ((600.0, 10), None),
        ((590.0, 20), Some(2)),
    ];
    for ((speed, count), expected) in steps {
        let message = node
            .data(Some("filler"), values(speed, count), T0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            message.map(|message| payload(&message).metrics.len()),
            expected,
            "speed {speed} count {count}"
        );
    }
}

#[test]
fn payloads_ndata_order_no_data_before_birth() {
    let mut node = line();
    let speed = || vec![("Speed".to_owned(), Value::Double(1.0))];
    assert_eq!(
        node.data(Some("filler"), speed(), T0),
        Err(EdgeError::NotBorn("line-1".to_owned()))
    );
    node.connect(T0).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        node.data(Some("filler"), speed(), T0),
        Err(EdgeError::NotBorn(_))
    ));
    node.birth(T0).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        node.data(Some("filler"), speed(), T0),
        Ok(Some(_))
    ));
}

#[test]
fn data_errors_leave_seq_untouched() {
    let mut node = born_line();
    let seq = node.seq();
    let check = |node: &mut EdgeNode, device: Option<&str>, name: &str, value: Value| {
        let result = node.data(device, vec![(name.to_owned(), value)], T0);
        assert!(result.is_err(), "{device:?} {name}: {result:?}");
    };
    check(&mut node, Some("press"), "Speed", Value::Double(1.0));
    check(&mut node, Some("filler"), "Nope", Value::Double(1.0));
    check(&mut node, Some("filler"), "Speed", Value::Float(1.0));
    check(&mut node, None, "Speed", Value::Double(1.0));
    assert_eq!(node.seq(), seq);
}

#[test]
fn historical_values_keep_timestamps_and_do_not_touch_current_values() {
    let mut node = born_line();
    let values = vec![
        ("Count/Good".to_owned(), Some(Value::UInt64(7)), T0 - 2_000),
        ("Count/Good".to_owned(), Some(Value::UInt64(8)), T0 - 1_000),
    ];
    let message = node
        .historical(Some("filler"), values, T0)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("two values"));
    let decoded = payload(&message);
    let seen: Vec<(bool, Option<u64>)> = decoded
        .metrics
        .iter()
        .map(|metric| (metric.is_historical, metric.timestamp))
        .collect();
    assert_eq!(seen, [(true, Some(T0 - 2_000)), (true, Some(T0 - 1_000))]);
    assert!(decoded.metrics.iter().all(|metric| metric.name.is_none()));
    // The current value is still the birth value: 0 → 8 is a change, reported live.
    let live = ddata(&mut node, "filler", "Count/Good", Value::UInt64(8), T0);
    assert!(!payload(&live).metrics[0].is_historical);
}

// ---- DDEATH --------------------------------------------------------------------------------------------

#[test]
fn operational_behavior_device_ddeath_with_seq_and_device_rebirth() {
    let mut node = born_line();
    let ddeath = node
        .device_death("capper", T0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ddeath.topic.to_string(),
        "spBv1.0/acme-berlin/DDEATH/line-1/capper"
    );
    // [tck-id-payloads-ddeath-seq-inc], [tck-id-payloads-ddeath-timestamp]
    let decoded = payload(&ddeath);
    assert_eq!(decoded.seq, Some(3));
    assert_eq!(decoded.timestamp, Some(T0));
    assert!(matches!(
        node.data(
            Some("capper"),
            vec![("State/Code".to_owned(), Value::Int32(6))],
            T0
        ),
        Err(EdgeError::NotBorn(_))
    ));
    let births = node.birth(T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        births.len(),
        2,
        "NBIRTH + filler only: {:?}",
        kinds(&births)
    );
    let dbirth = node
        .device_birth("capper", T0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payload(&dbirth).seq, Some(2));
    ddata(&mut node, "capper", "State/Code", Value::Int32(6), T0);
}

// ---- commands and rebirth ------------------------------------------------------------------------------

#[test]
fn operational_behavior_data_commands_rebirth_action_1_births_come_next() {
    let mut node = born_line();
    ddata(&mut node, "filler", "Speed", Value::Double(1.0), T0);
    let (topic, bytes) = rebirth_request(&node, true);
    let answer = node
        .on_command(&topic, &bytes, T0 + 1)
        .unwrap_or_else(|e| panic!("{e}"));
    // The very next messages are the birth sequence, before any DATA.
    assert_eq!(
        kinds(&answer),
        [
            "spBv1.0/acme-berlin/NBIRTH/line-1",
            "spBv1.0/acme-berlin/DBIRTH/line-1/filler",
            "spBv1.0/acme-berlin/DBIRTH/line-1/capper",
        ]
    );
}

#[test]
fn operational_behavior_data_commands_rebirth_action_2_complete_birth_sequence() {
    let mut node = born_line();
    ddata(&mut node, "filler", "Speed", Value::Double(3.5), T0);
    let (topic, bytes) = rebirth_request(&node, true);
    let answer = node
        .on_command(&topic, &bytes, T0 + 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let seqs: Vec<Option<u64>> = answer.iter().map(|message| payload(message).seq).collect();
    assert_eq!(seqs, [Some(0), Some(1), Some(2)]);
    let speed = metric(&payload(&answer[1]), "Speed").value.clone();
    assert_eq!(speed, Some(Value::Double(3.5)));
    let next = ddata(&mut node, "filler", "Speed", Value::Double(4.0), T0 + 2);
    assert_eq!(payload(&next).seq, Some(3));
}

#[test]
fn operational_behavior_data_commands_rebirth_action_3_same_bdseq() {
    let mut node = line().with_bd_seq(41);
    let (will, _) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    let (topic, bytes) = rebirth_request(&node, true);
    let answer = node
        .on_command(&topic, &bytes, T0 + 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bd_seq_of(&payload(&answer[0])), Some(Value::Int64(41)));
    assert_eq!(bd_seq_of(&payload(&will)), Some(Value::Int64(41)));
    assert_eq!(node.next_bd_seq(), 42, "a rebirth is not a new CONNECT");
}

#[test]
fn rebirth_false_is_a_no_op() {
    let mut node = born_line();
    let seq = node.seq();
    let (topic, bytes) = rebirth_request(&node, false);
    assert_eq!(node.on_command(&topic, &bytes, T0), Ok(Vec::new()));
    assert_eq!(node.seq(), seq);
}

#[test]
fn bad_commands_are_typed_errors_and_change_nothing() {
    let mut node = born_line();
    let seq = node.seq();
    let uptime_alias = node.alias(None, "Uptime");
    let check = |node: &mut EdgeNode,
                 topic: SparkplugTopic,
                 bytes: Vec<u8>,
                 expected: fn(&CommandError) -> bool| {
        let result = node.on_command(&topic, &bytes, T0);
        match &result {
            Err(error) if expected(error) => {}
            other => panic!("{topic}: unexpected {other:?}"),
        }
    };
    let ncmd_topic = node.ncmd_topic();
    check(&mut node, ncmd_topic.clone(), vec![0xFF, 0x01, 0x02], |e| {
        matches!(e, CommandError::Decode(_))
    });
    let (topic, bytes) = ncmd(&node, vec![Metric::new("Valve/Open", Value::Boolean(true))]);
    check(
        &mut node,
        topic,
        bytes,
        |e| matches!(e, CommandError::UnknownMetric(name) if name == "Valve/Open"),
    );
    let (topic, bytes) = ncmd(&node, vec![Metric::new("Uptime", Value::UInt64(0))]);
    check(&mut node, topic, bytes, |e| {
        matches!(e, CommandError::NotWritable(_))
    });
    let by_alias = Metric {
        alias: uptime_alias,
        value: Some(Value::UInt64(0)),
        ..Metric::default()
    };
    let (topic, bytes) = ncmd(&node, vec![by_alias]);
    check(&mut node, topic, bytes, |e| {
        matches!(e, CommandError::NotWritable(_))
    });
    let (topic, bytes) = ncmd(&node, vec![Metric::new(REBIRTH, Value::Int32(1))]);
    check(&mut node, topic, bytes, |e| {
        matches!(e, CommandError::RebirthNotBoolean(_))
    });
    let (_, bytes) = rebirth_request(&node, true);
    let other_node: SparkplugTopic = "spBv1.0/acme-berlin/NCMD/line-2"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    check(&mut node, other_node, bytes.clone(), |e| {
        matches!(e, CommandError::WrongTopic { .. })
    });
    let ndata: SparkplugTopic = "spBv1.0/acme-berlin/NDATA/line-1"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    check(&mut node, ndata, bytes, |e| {
        matches!(e, CommandError::WrongTopic { .. })
    });
    assert_eq!(node.seq(), seq, "no message was produced");
    assert!(node.is_born());
}

#[test]
fn rebirth_before_any_connect_is_refused() {
    let mut node = line();
    let (topic, bytes) = rebirth_request(&node, true);
    assert_eq!(
        node.on_command(&topic, &bytes, T0),
        Err(CommandError::NotBorn)
    );
}

// ---- intentional disconnect ----------------------------------------------------------------------------

#[test]
fn operational_behavior_edge_node_intentional_disconnect_ndeath() {
    let mut node = line().with_bd_seq(9);
    let (will, _) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    let ndeath = node.disconnect(T0 + 50).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ndeath.topic, will.topic);
    assert_eq!(ndeath.qos, Qos::AtLeastOnce);
    assert!(!ndeath.retain);
    let decoded = payload(&ndeath);
    assert_eq!(decoded.seq, None);
    assert_eq!(bd_seq_of(&decoded), Some(Value::Int64(9)));
    assert!(!node.is_born());
    assert!(matches!(
        node.data(None, vec![("Uptime".to_owned(), Value::UInt64(1))], T0),
        Err(EdgeError::NotBorn(_))
    ));
}

#[test]
fn connection_lost_stops_data_until_the_next_birth() {
    let mut node = born_line();
    node.connection_lost();
    assert!(matches!(
        node.data(None, vec![("Uptime".to_owned(), Value::UInt64(1))], T0),
        Err(EdgeError::NotBorn(_))
    ));
    let (will, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bd_seq_of(&payload(&will)), Some(Value::Int64(1)));
    assert_eq!(payload(&births[0]).seq, Some(0));
}

// ---- construction --------------------------------------------------------------------------------------

#[test]
fn invalid_definitions_are_refused() {
    let speed = || MetricDef::new("Speed", Value::Double(0.0));
    let check = |edge: &str, node_metrics: Vec<MetricDef>, devices: Vec<DeviceDef>| {
        EdgeNode::new("acme-berlin", edge, node_metrics, devices).err()
    };
    assert!(matches!(
        check("line/1", vec![], vec![]),
        Some(EdgeError::InvalidId(_))
    ));
    assert!(matches!(
        check("line-1", vec![], vec![DeviceDef::new("a+b", vec![])]),
        Some(EdgeError::InvalidId(_))
    ));
    assert_eq!(
        check("line-1", vec![speed(), speed()], vec![]),
        Some(EdgeError::Duplicate {
            what: "metric",
            name: "Speed".to_owned()
        })
    );
    assert_eq!(
        check(
            "line-1",
            vec![],
            vec![DeviceDef::new("f", vec![]), DeviceDef::new("f", vec![])]
        ),
        Some(EdgeError::Duplicate {
            what: "device",
            name: "f".to_owned()
        })
    );
    assert_eq!(
        check(
            "line-1",
            vec![MetricDef::new(BD_SEQ, Value::Int64(0))],
            vec![]
        ),
        Some(EdgeError::ReservedName(BD_SEQ.to_owned()))
    );
    let mismatched = MetricDef {
        datatype: DataType::Float,
        ..speed()
    };
    assert!(matches!(
        check("line-1", vec![mismatched], vec![]),
        Some(EdgeError::DataTypeMismatch { .. })
    ));
    // A device may reuse a node metric name: names are per node/device, aliases per edge node.
    assert!(
        check(
            "line-1",
            vec![speed()],
            vec![DeviceDef::new("f", vec![speed()])]
        )
        .is_none()
    );
}

#[test]
fn births_decode_with_sparkplug_rs() {
    let mut node = line();
    let (will, births) = node.on_connect(T0).unwrap_or_else(|e| panic!("{e}"));
    for message in std::iter::once(&will).chain(&births) {
        let foreign = sparkplug_rs::Payload::parse_from_bytes(&message.payload)
            .unwrap_or_else(|error| panic!("{}: {error}", message.topic));
        assert_eq!(
            foreign.metrics.len(),
            payload(message).metrics.len(),
            "{}",
            message.topic
        );
    }
}

#[test]
fn recorded_values_go_into_the_next_birth_without_a_message() {
    let mut node = born_line();
    node.connection_lost();
    let seq = node.seq();
    let recorded = vec![("Count/Good".to_owned(), Some(Value::UInt64(99)), T0 + 3)];
    node.record(Some("filler"), recorded)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.seq(), seq);
    let bad = vec![("Count/Good".to_owned(), Some(Value::Int32(1)), T0)];
    assert!(matches!(
        node.record(Some("filler"), bad),
        Err(EdgeError::DataTypeMismatch { .. })
    ));
    let (_, births) = node.on_connect(T0 + 10).unwrap_or_else(|e| panic!("{e}"));
    let count = metric(&payload(&births[1]), "Count/Good").clone();
    assert_eq!(count.value, Some(Value::UInt64(99)));
    assert_eq!(count.timestamp, Some(T0 + 3));
    // Report by exception compares against the recorded value.
    let unchanged = vec![("Count/Good".to_owned(), Value::UInt64(99))];
    assert_eq!(node.data(Some("filler"), unchanged, T0 + 11), Ok(None));
}
