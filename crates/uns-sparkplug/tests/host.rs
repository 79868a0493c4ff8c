//! The primary host application's session logic ([`uns_sparkplug::host`]), test by test after the
//! Sparkplug 3.0 requirement ids it covers (the Eclipse TCK's host assertions, ported: the TCK itself
//! needs a live HiveMQ and a web console, so it cannot run here).

use std::time::Duration;

use proptest::prelude::*;
use uns_sparkplug::host::{
    HostConfig, HostEvent, HostSession, Incoming, Leniency, MetricUpdate, NodeId, Now, Outgoing,
    Qos, Rejection, parse_state,
};
use uns_sparkplug::{
    DataType, Metric, Payload, PropertySet, PropertyValue, RawValue, Value, decode, encode,
};

const HOST: &str = "scada-bridge";

fn at(seconds: u64) -> Now {
    Now {
        monotonic: Duration::from_secs(seconds),
        utc_ms: 1_741_068_000_000 + seconds * 1000,
    }
}

fn session() -> HostSession {
    session_with(HostConfig::new(HOST))
}

fn session_with(config: HostConfig) -> HostSession {
    let mut host = HostSession::new(config).expect("valid host config");
    host.connect(at(0).utc_ms);
    host
}

fn node() -> NodeId {
    NodeId::new("acme-berlin", "line-1")
}

fn bytes(payload: &Payload) -> Vec<u8> {
    encode(payload).expect("test payloads encode")
}

fn send(host: &mut HostSession, topic: &str, payload: &Payload, now: Now) -> Vec<HostEvent> {
    send_qos(host, topic, &bytes(payload), Qos::AtLeastOnce, now)
}

fn send_qos(
    host: &mut HostSession,
    topic: &str,
    payload: &[u8],
    qos: Qos,
    now: Now,
) -> Vec<HostEvent> {
    host.handle(
        Incoming {
            topic,
            payload,
            qos,
        },
        now,
    )
}

fn birth_metric(name: &str, alias: u64, value: Value) -> Metric {
    Metric {
        alias: Some(alias),
        timestamp: Some(at(0).utc_ms),
        ..Metric::new(name, value)
    }
}

fn bd_seq(value: Value) -> Metric {
    Metric::new("bdSeq", value)
}

fn nbirth(seq: u64, bd: u64) -> Payload {
    Payload {
        timestamp: Some(at(0).utc_ms),
        seq: Some(seq),
        metrics: vec![
            bd_seq(Value::Int64(bd as i64)),
            Metric::new("Node Control/Rebirth", Value::Boolean(false)),
            birth_metric("Uptime", 1, Value::Int64(5)),
        ],
        ..Payload::default()
    }
}

fn dbirth(seq: u64) -> Payload {
    let unit = PropertySet {
        properties: vec![(
            "engUnit".to_owned(),
            PropertyValue {
                datatype: Some(DataType::String),
                value: Some(Value::String("CEL".to_owned())),
            },
        )],
    };
    Payload {
        timestamp: Some(at(0).utc_ms),
        seq: Some(seq),
        metrics: vec![
            Metric {
                properties: Some(unit),
                ..birth_metric("Temp/Zone 1", 10, Value::Float(20.5))
            },
            birth_metric("Level", 11, Value::Int8(-3)),
            birth_metric("Count", 12, Value::UInt32(7)),
            birth_metric("Big", 13, Value::Int64(-9_000_000_000)),
            birth_metric("Pressure", 14, Value::Double(1.25)),
            birth_metric("Running", 15, Value::Boolean(true)),
            birth_metric("Recipe", 16, Value::String("A".to_owned())),
            birth_metric("Offset", 17, Value::Int16(-300)),
        ],
        ..Payload::default()
    }
}

fn data(seq: u64, metrics: Vec<Metric>) -> Payload {
    Payload {
        timestamp: Some(at(1).utc_ms),
        seq: Some(seq),
        metrics,
        ..Payload::default()
    }
}

/// A DATA metric by alias only, untyped as on the wire.
fn by_alias(alias: u64, raw: RawValue) -> Metric {
    Metric {
        alias: Some(alias),
        value: Some(Value::Untyped(raw)),
        ..Metric::default()
    }
}

const NBIRTH: &str = "spBv1.0/acme-berlin/NBIRTH/line-1";
const NDATA: &str = "spBv1.0/acme-berlin/NDATA/line-1";
const NDEATH: &str = "spBv1.0/acme-berlin/NDEATH/line-1";
const DBIRTH: &str = "spBv1.0/acme-berlin/DBIRTH/line-1/filler";
const DDATA: &str = "spBv1.0/acme-berlin/DDATA/line-1/filler";
const DDEATH: &str = "spBv1.0/acme-berlin/DDEATH/line-1/filler";

/// A host with `line-1` born (bdSeq 3, seq 0) and its `filler` device born (seq 1).
fn born() -> HostSession {
    let mut host = session();
    send(&mut host, NBIRTH, &nbirth(0, 3), at(0));
    send(&mut host, DBIRTH, &dbirth(1), at(0));
    host
}

fn metrics(events: &[HostEvent]) -> Vec<&MetricUpdate> {
    events
        .iter()
        .filter_map(|event| match event {
            HostEvent::Metric(update) => Some(update),
            _ => None,
        })
        .collect()
}

fn rejections(events: &[HostEvent]) -> Vec<&Rejection> {
    events
        .iter()
        .filter_map(|event| match event {
            HostEvent::Rejected(rejected) => Some(&rejected.reason),
            _ => None,
        })
        .collect()
}

fn rebirths(events: &[HostEvent]) -> Vec<&Outgoing> {
    events
        .iter()
        .filter_map(|event| match event {
            HostEvent::Rebirth { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

fn stale(events: &[HostEvent]) -> Vec<(Option<String>, u64)> {
    events
        .iter()
        .filter_map(|event| match event {
            HostEvent::Stale {
                device, timestamp, ..
            } => Some((device.as_deref().map(str::to_owned), *timestamp)),
            _ => None,
        })
        .collect()
}

fn values(events: &[HostEvent]) -> Vec<(String, Option<Value>)> {
    metrics(events)
        .into_iter()
        .map(|update| (update.name.to_string(), update.value.clone()))
        .collect()
}

// ---- STATE -----------------------------------------------------------------------------------------

#[test]
fn host_topic_phid_birth_payload_timestamp_same_in_will_and_birth() {
    let mut host = HostSession::new(HostConfig::new(HOST)).unwrap();
    let connect = host.connect(1_741_068_000_123);
    // [tck-id-operational-behavior-host-application-connect-will-topic], [...-birth-topic]
    assert_eq!(connect.will.topic, "spBv1.0/STATE/scada-bridge");
    assert_eq!(connect.birth.topic, "spBv1.0/STATE/scada-bridge");
    // [tck-id-operational-behavior-host-application-connect-will-payload], [...-birth-payload]
    assert_eq!(
        parse_state(&connect.will.payload),
        Ok((false, 1_741_068_000_123))
    );
    assert_eq!(
        parse_state(&connect.birth.payload),
        Ok((true, 1_741_068_000_123))
    );
    // [tck-id-operational-behavior-host-application-connect-will-qos] / -retained, birth likewise.
    for message in [&connect.will, &connect.birth] {
        assert_eq!(message.qos, Qos::AtLeastOnce);
        assert!(message.retain);
    }
    // Exactly the spec's JSON keys.
    let json: serde_json::Value = serde_json::from_slice(&connect.birth.payload).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"online": true, "timestamp": 1_741_068_000_123_u64})
    );
}

#[test]
fn host_topic_phid_birth_sub_required() {
    let mut host = HostSession::new(HostConfig::new(HOST)).unwrap();
    let connect = host.connect(1);
    assert_eq!(
        connect.subscriptions,
        vec![
            "spBv1.0/STATE/scada-bridge".to_owned(),
            "spBv1.0/#".to_owned()
        ]
    );
}

#[test]
fn host_topic_phid_death_payload_disconnect_clean() {
    let mut host = session();
    let death = host.disconnect(at(9).utc_ms);
    assert_eq!(parse_state(&death.payload), Ok((false, at(9).utc_ms)));
    assert_eq!((death.qos, death.retain), (Qos::AtLeastOnce, true));
}

#[test]
fn host_reasserts_its_birth_when_it_sees_its_own_death() {
    let mut host = session();
    let state = "spBv1.0/STATE/scada-bridge";
    let own_state = |host: &mut HostSession, payload: &[u8]| {
        send_qos(host, state, payload, Qos::AtLeastOnce, at(1))
    };
    let birth_echo = format!(r#"{{"online":true,"timestamp":{}}}"#, at(0).utc_ms);
    // The retained death the subscriptions bring before the birth comes back (once per matching
    // subscription): the birth on its way replaces it, nothing is published again.
    for _ in 0..2 {
        assert!(own_state(&mut host, br#"{"online":false,"timestamp":5}"#).is_empty());
    }
    assert!(own_state(&mut host, birth_echo.as_bytes()).is_empty());
    // A death after the birth (a late Will, a takeover): the birth once more, then nothing until
    // that one came back.
    let events = own_state(&mut host, br#"{"online":false,"timestamp":5}"#);
    assert!(own_state(&mut host, br#"{"online":false,"timestamp":5}"#).is_empty());
    assert!(own_state(&mut host, birth_echo.as_bytes()).is_empty());
    assert_eq!(
        own_state(&mut host, br#"{"online":false,"timestamp":6}"#).len(),
        1
    );
    let [HostEvent::Publish(birth)] = events.as_slice() else {
        panic!("expected one re-published birth, got {events:?}");
    };
    // Same timestamp as this connection's Will.
    assert_eq!(parse_state(&birth.payload), Ok((true, at(0).utc_ms)));
    assert!(birth.retain);
    // Its own birth, other hosts' STATE: nothing to do.
    assert!(
        send_qos(
            &mut host,
            state,
            br#"{"online":true,"timestamp":5}"#,
            Qos::AtLeastOnce,
            at(1)
        )
        .is_empty()
    );
    assert!(
        send_qos(
            &mut host,
            "spBv1.0/STATE/other",
            b"{\"online\":false,\"timestamp\":1}",
            Qos::AtLeastOnce,
            at(1)
        )
        .is_empty()
    );
    // Garbage on its own topic is reported.
    let events = send_qos(&mut host, state, b"ONLINE", Qos::AtLeastOnce, at(1));
    assert!(
        matches!(rejections(&events)[..], [Rejection::BadState(_)]),
        "{events:?}"
    );
    // Disconnected: nothing to re-assert.
    host.disconnect(at(2).utc_ms);
    assert!(
        send_qos(
            &mut host,
            state,
            br#"{"online":false,"timestamp":5}"#,
            Qos::AtLeastOnce,
            at(3)
        )
        .is_empty()
    );
}

// ---- births and alias resolution ------------------------------------------------------------------

#[test]
fn payloads_nbirth_seq() {
    for (seq, accepted) in [
        (Some(0), true),
        (Some(255), true),
        (Some(256), false),
        (None, false),
    ] {
        // Strict: lenient hosts accept a missing seq (see `missing_seq_leniency`).
        let mut host = session_with(HostConfig {
            leniency: Leniency::strict(),
            ..HostConfig::new(HOST)
        });
        let payload = Payload {
            seq,
            ..nbirth(0, 1)
        };
        let events = send(&mut host, NBIRTH, &payload, at(0));
        assert_eq!(host.is_online(&node()), accepted, "seq {seq:?}: {events:?}");
        if !accepted {
            assert_eq!(rejections(&events), vec![&Rejection::BadSeq { seq }]);
        }
    }
}

#[test]
fn nbirth_and_dbirth_publish_every_metric_with_name_type_and_unit() {
    let mut host = session();
    let events = send(&mut host, NBIRTH, &nbirth(0, 3), at(0));
    assert_eq!(
        events[0],
        HostEvent::Online {
            node: node(),
            device: None
        }
    );
    assert_eq!(
        values(&events),
        vec![
            ("bdSeq".to_owned(), Some(Value::Int64(3))),
            (
                "Node Control/Rebirth".to_owned(),
                Some(Value::Boolean(false))
            ),
            ("Uptime".to_owned(), Some(Value::Int64(5))),
        ]
    );
    assert_eq!(host.bd_seq(&node()), Some(3));
    let events = send(&mut host, DBIRTH, &dbirth(1), at(0));
    let updates = metrics(&events);
    assert_eq!(updates.len(), 8);
    assert!(
        updates
            .iter()
            .all(|update| update.from_birth && update.device.as_deref() == Some("filler"))
    );
    assert_eq!(updates[0].unit.as_deref(), Some("CEL"));
    assert_eq!(updates[0].datatype, DataType::Float);
    assert_eq!(updates[0].timestamp, at(0).utc_ms);
    assert!(host.is_device_online(&node(), "filler"));
}

/// DATA metrics carry only an alias and an untyped wire value; the birth gives name and datatype
/// [tck-id-payloads-alias-data-cmd-requirement]. Each row: alias, wire value, expected typed value.
#[test]
fn data_metrics_are_resolved_by_alias_and_typed_by_the_birth() {
    fn check(alias: u64, raw: RawValue, expected: (&str, Value)) {
        let mut host = born();
        let events = send(
            &mut host,
            DDATA,
            &data(2, vec![by_alias(alias, raw.clone())]),
            at(1),
        );
        assert_eq!(
            values(&events),
            vec![(expected.0.to_owned(), Some(expected.1.clone()))],
            "alias {alias}, wire {raw:?}: {events:?}"
        );
    }
    check(
        10,
        RawValue::Float(71.4),
        ("Temp/Zone 1", Value::Float(71.4)),
    );
    // Int8 -1: spec form (sign-extended to 32 bits), 8-bit pattern (Leniency), 64-bit in long_value.
    check(11, RawValue::Int(0xFFFF_FFFF), ("Level", Value::Int8(-1)));
    check(11, RawValue::Int(0xFF), ("Level", Value::Int8(-1)));
    check(11, RawValue::Long(u64::MAX), ("Level", Value::Int8(-1)));
    check(11, RawValue::Int(0x80), ("Level", Value::Int8(-128)));
    check(
        17,
        RawValue::Int(0xFFFF_FED4),
        ("Offset", Value::Int16(-300)),
    );
    check(17, RawValue::Int(0xFED4), ("Offset", Value::Int16(-300)));
    // UInt32 in long_value (spec) and int_value (Tahu Java and others).
    check(
        12,
        RawValue::Long(4_000_000_000),
        ("Count", Value::UInt32(4_000_000_000)),
    );
    check(
        12,
        RawValue::Int(4_000_000_000),
        ("Count", Value::UInt32(4_000_000_000)),
    );
    check(
        13,
        RawValue::Long(-9_000_000_001_i64 as u64),
        ("Big", Value::Int64(-9_000_000_001)),
    );
    check(
        14,
        RawValue::Double(-0.5),
        ("Pressure", Value::Double(-0.5)),
    );
    check(
        15,
        RawValue::Boolean(false),
        ("Running", Value::Boolean(false)),
    );
    check(
        16,
        RawValue::String("B".to_owned()),
        ("Recipe", Value::String("B".to_owned())),
    );
}

#[test]
fn strict_leniency_refuses_what_the_spec_does_not_allow() {
    fn check(alias: u64, raw: RawValue) {
        let config = HostConfig {
            leniency: Leniency::strict(),
            ..HostConfig::new(HOST)
        };
        let mut host = session_with(config);
        send(&mut host, NBIRTH, &nbirth(0, 3), at(0));
        send(&mut host, DBIRTH, &dbirth(1), at(0));
        let events = send(
            &mut host,
            DDATA,
            &data(2, vec![by_alias(alias, raw.clone())]),
            at(1),
        );
        assert!(
            matches!(rejections(&events)[..], [Rejection::Strict { .. }]),
            "alias {alias}, wire {raw:?}: {events:?}"
        );
        assert!(metrics(&events).is_empty());
    }
    check(11, RawValue::Int(0xFF)); // Int8 -1 as an 8-bit pattern
    check(17, RawValue::Int(0xFED4)); // Int16 -300 as a 16-bit pattern
    check(12, RawValue::Int(7)); // UInt32 in int_value
    check(11, RawValue::Long(1)); // Int8 in long_value
}

#[test]
fn data_metrics_keep_historical_flag_unit_quality_and_timestamps() {
    let mut host = born();
    let quality = PropertySet {
        properties: vec![(
            "Quality".to_owned(),
            PropertyValue {
                datatype: Some(DataType::Int32),
                value: Some(Value::Int32(500)),
            },
        )],
    };
    let historical = Metric {
        timestamp: Some(42),
        is_historical: true,
        properties: Some(quality),
        ..by_alias(10, RawValue::Float(1.0))
    };
    let events = send(
        &mut host,
        DDATA,
        &data(2, vec![historical, by_alias(14, RawValue::Double(2.0))]),
        at(1),
    );
    let updates = metrics(&events);
    assert_eq!(updates.len(), 2);
    assert!(updates[0].is_historical);
    assert_eq!(updates[0].timestamp, 42);
    assert_eq!(updates[0].quality, Some(500));
    assert_eq!(updates[0].unit.as_deref(), Some("CEL"));
    assert!(!updates[1].is_historical);
    assert_eq!(updates[1].timestamp, at(1).utc_ms); // the payload's timestamp
    assert!(!updates[1].from_birth);
}

#[test]
fn payloads_alias_uniqueness_duplicate_alias_rejects_the_birth() {
    let mut host = session();
    let mut payload = nbirth(0, 1);
    payload
        .metrics
        .push(birth_metric("Other", 1, Value::Int64(1)));
    let events = send(&mut host, NBIRTH, &payload, at(0));
    assert!(
        matches!(
            rejections(&events)[..],
            [Rejection::DuplicateAlias { alias: 1, .. }]
        ),
        "{events:?}"
    );
    assert!(!host.is_online(&node()));
}

#[test]
fn payloads_name_requirement_unnamed_birth_metric_rejects_the_birth() {
    let mut host = session();
    let mut payload = nbirth(0, 1);
    payload.metrics.push(by_alias(9, RawValue::Int(1)));
    let events = send(&mut host, NBIRTH, &payload, at(0));
    assert_eq!(
        rejections(&events),
        vec![&Rejection::UnnamedBirthMetric { index: 3 }]
    );
}

// ---- unknown data → rebirth ----------------------------------------------------------------------

#[test]
fn operational_behavior_data_commands_rebirth_action_unknown_node_requests_rebirth() {
    let mut host = session();
    let events = send(
        &mut host,
        NDATA,
        &data(1, vec![by_alias(1, RawValue::Long(1))]),
        at(1),
    );
    assert_eq!(rejections(&events), vec![&Rejection::UnknownNode]);
    assert!(metrics(&events).is_empty(), "no guessing: {events:?}");
    let [rebirth] = rebirths(&events)[..] else {
        panic!("expected one rebirth request: {events:?}");
    };
    check_rebirth_request(rebirth, at(1).utc_ms);
    // Rate limited per node: not again within the interval, again after it.
    let events = send(&mut host, DBIRTH, &dbirth(2), at(2));
    assert!(rebirths(&events).is_empty(), "{events:?}");
    let events = send(&mut host, NDATA, &data(3, vec![]), at(7));
    assert_eq!(rebirths(&events).len(), 1, "{events:?}");
}

/// [tck-id-operational-behavior-data-commands-ncmd-rebirth-verb], [...-rebirth-name], [...-rebirth-value]
fn check_rebirth_request(message: &Outgoing, utc_ms: u64) {
    assert_eq!(message.topic, "spBv1.0/acme-berlin/NCMD/line-1");
    assert_eq!((message.qos, message.retain), (Qos::AtMostOnce, false));
    let payload = decode(&message.payload).expect("our NCMD decodes");
    assert_eq!(payload.timestamp, Some(utc_ms));
    let [metric] = payload.metrics.as_slice() else {
        panic!("one metric: {payload:?}");
    };
    assert_eq!(metric.name.as_deref(), Some("Node Control/Rebirth"));
    assert_eq!(metric.datatype, Some(DataType::Boolean));
    assert_eq!(metric.value, Some(Value::Boolean(true)));
}

#[test]
fn unknown_alias_is_rejected_and_requests_rebirth_known_metrics_still_count() {
    let mut host = born();
    let events = send(
        &mut host,
        DDATA,
        &data(
            2,
            vec![
                by_alias(99, RawValue::Int(1)),
                by_alias(14, RawValue::Double(3.0)),
            ],
        ),
        at(1),
    );
    assert_eq!(
        rejections(&events),
        vec![&Rejection::UnknownMetric {
            label: "alias 99".to_owned()
        }]
    );
    assert_eq!(
        values(&events),
        vec![("Pressure".to_owned(), Some(Value::Double(3.0)))]
    );
    assert_eq!(rebirths(&events).len(), 1);
}

#[test]
fn data_for_an_unborn_device_requests_rebirth() {
    let mut host = born();
    let events = send(
        &mut host,
        "spBv1.0/acme-berlin/DDATA/line-1/capper",
        &data(2, vec![by_alias(10, RawValue::Float(1.0))]),
        at(1),
    );
    assert_eq!(
        rejections(&events),
        vec![&Rejection::UnknownDevice {
            device: "capper".to_owned()
        }]
    );
    assert!(metrics(&events).is_empty());
    assert_eq!(rebirths(&events).len(), 1);
}

#[test]
fn data_typed_differently_from_its_birth_is_rejected() {
    let mut host = born();
    let typed = Metric {
        alias: Some(14),
        datatype: Some(DataType::Float),
        value: Some(Value::Float(1.0)),
        ..Metric::default()
    };
    let events = send(&mut host, DDATA, &data(2, vec![typed]), at(1));
    assert!(
        matches!(
            rejections(&events)[..],
            [Rejection::TypeMismatch {
                birth: DataType::Double,
                data: DataType::Float,
                ..
            }]
        ),
        "{events:?}"
    );
}

// ---- sequence numbers and reordering -------------------------------------------------------------

#[test]
fn payloads_sequence_num_incrementing_wraps_255_to_0() {
    let mut host = session();
    send(&mut host, NBIRTH, &nbirth(254, 3), at(0));
    for seq in [255, 0, 1] {
        let events = send(
            &mut host,
            NDATA,
            &data(seq, vec![by_alias(1, RawValue::Long(seq))]),
            at(1),
        );
        assert_eq!(
            values(&events),
            vec![("Uptime".to_owned(), Some(Value::Int64(seq as i64)))],
            "seq {seq}"
        );
    }
    assert_eq!(host.next_deadline(), None);
}

#[test]
fn operational_behavior_host_reordering_start_and_success() {
    let mut host = born();
    // seq 3 before 2: held, the reorder timer starts.
    let events = send(
        &mut host,
        DDATA,
        &data(3, vec![by_alias(14, RawValue::Double(3.0))]),
        at(1),
    );
    assert!(events.is_empty(), "held, not processed: {events:?}");
    assert_eq!(
        host.next_deadline(),
        Some(at(1).monotonic + Duration::from_secs(2))
    );
    // seq 2 arrives in time: both processed in sequence order, timer stopped, no rebirth.
    let events = send(
        &mut host,
        DDATA,
        &data(2, vec![by_alias(14, RawValue::Double(2.0))]),
        at(2),
    );
    assert_eq!(
        values(&events),
        vec![
            ("Pressure".to_owned(), Some(Value::Double(2.0))),
            ("Pressure".to_owned(), Some(Value::Double(3.0))),
        ]
    );
    assert_eq!(host.next_deadline(), None);
    assert!(host.poll(at(10)).is_empty());
    // Normal operation continues.
    let events = send(
        &mut host,
        DDATA,
        &data(4, vec![by_alias(14, RawValue::Double(4.0))]),
        at(3),
    );
    assert_eq!(values(&events).len(), 1);
}

#[test]
fn operational_behavior_host_reordering_rebirth() {
    let mut host = born();
    send(
        &mut host,
        DDATA,
        &data(4, vec![by_alias(14, RawValue::Double(4.0))]),
        at(1),
    );
    send(
        &mut host,
        NDATA,
        &data(3, vec![by_alias(1, RawValue::Long(3))]),
        at(1),
    );
    // Not yet: the timeout (2 s) has not elapsed.
    assert!(
        host.poll(Now {
            monotonic: Duration::from_millis(2999),
            ..at(2)
        })
        .is_empty()
    );
    let events = host.poll(at(3));
    assert_eq!(
        rejections(&events),
        vec![&Rejection::SeqGap {
            expected: 2,
            received: 3
        }]
    );
    // What was held is processed in order; then the rebirth request.
    assert_eq!(
        values(&events),
        vec![
            ("Uptime".to_owned(), Some(Value::Int64(3))),
            ("Pressure".to_owned(), Some(Value::Double(4.0))),
        ]
    );
    let [rebirth] = rebirths(&events)[..] else {
        panic!("expected a rebirth request: {events:?}");
    };
    check_rebirth_request(rebirth, at(3).utc_ms);
    assert!(matches!(events.last(), Some(HostEvent::Rebirth { .. })));
    assert_eq!(host.next_deadline(), None);
    // The sequence continues from the last processed message.
    let events = send(
        &mut host,
        DDATA,
        &data(5, vec![by_alias(14, RawValue::Double(5.0))]),
        at(4),
    );
    assert_eq!(values(&events).len(), 1, "{events:?}");
}

#[test]
fn a_full_reorder_buffer_ends_the_wait_at_once() {
    let config = HostConfig {
        max_reorder_messages: 2,
        ..HostConfig::new(HOST)
    };
    let mut host = session_with(config);
    send(&mut host, NBIRTH, &nbirth(0, 3), at(0));
    send(&mut host, NDATA, &data(5, vec![]), at(1));
    send(&mut host, NDATA, &data(6, vec![]), at(1));
    let events = send(&mut host, NDATA, &data(7, vec![]), at(1));
    assert_eq!(
        rejections(&events),
        vec![&Rejection::SeqGap {
            expected: 1,
            received: 5
        }]
    );
    assert_eq!(rebirths(&events).len(), 1);
}

#[test]
fn payloads_sequence_num_always_included_garbage_seq_is_rejected() {
    for seq in [Some(256), Some(u64::MAX)] {
        let mut host = born();
        let events = send(
            &mut host,
            NDATA,
            &Payload {
                seq,
                ..data(2, vec![])
            },
            at(1),
        );
        assert_eq!(rejections(&events), vec![&Rejection::BadSeq { seq }]);
    }
}

// ---- deaths ---------------------------------------------------------------------------------------

fn ndeath(bd: Value) -> Payload {
    Payload {
        metrics: vec![bd_seq(bd)],
        ..Payload::default()
    }
}

#[test]
fn operational_behavior_edge_node_termination_host_action_ndeath_node_and_devices_stale() {
    let mut host = born();
    let events = send(&mut host, NDEATH, &ndeath(Value::Int64(3)), at(5));
    // [..-ndeath-node-offline], [..-ndeath-node-tags-stale], [..-ndeath-devices-offline],
    // [..-ndeath-devices-tags-stale]: at the host's clock.
    assert_eq!(
        stale(&events),
        vec![
            (None, at(5).utc_ms),
            (Some("filler".to_owned()), at(5).utc_ms)
        ]
    );
    assert!(!host.is_online(&node()));
    assert!(!host.is_device_online(&node(), "filler"));
    // Data after the death: unknown node, rebirth.
    let events = send(&mut host, NDATA, &data(2, vec![]), at(6));
    assert_eq!(rejections(&events), vec![&Rejection::UnknownNode]);
}

#[test]
fn payloads_ndeath_bdseq_a_late_will_of_an_earlier_session_is_ignored() {
    let mut host = born();
    let events = send(&mut host, NDEATH, &ndeath(Value::Int64(2)), at(5));
    assert_eq!(
        rejections(&events),
        vec![&Rejection::StaleDeath {
            birth: Some(3),
            death: 2
        }]
    );
    assert!(stale(&events).is_empty());
    assert!(host.is_online(&node()));
}

/// Each row: leniency, the NDEATH's bdSeq value and QoS, whether the node dies (born with bdSeq 3).
#[test]
fn ndeath_leniency_table() {
    fn check(leniency: Leniency, death: Option<Value>, qos: Qos, dies: bool) {
        let mut host = session_with(HostConfig {
            leniency,
            ..HostConfig::new(HOST)
        });
        send(&mut host, NBIRTH, &nbirth(0, 3), at(0));
        let payload = match death.clone() {
            Some(value) => ndeath(value),
            None => Payload::default(),
        };
        let events = send_qos(&mut host, NDEATH, &bytes(&payload), qos, at(1));
        assert_eq!(
            !host.is_online(&node()),
            dies,
            "{leniency:?} {death:?} {qos:?}: {events:?}"
        );
    }
    let lenient = Leniency::default();
    let strict = Leniency::strict();
    let q1 = Qos::AtLeastOnce;
    check(strict, Some(Value::Int64(3)), q1, true);
    // pysparkplug: the Will carries the next bdSeq.
    check(lenient, Some(Value::Int64(4)), q1, true);
    check(strict, Some(Value::Int64(4)), q1, false);
    check(lenient, Some(Value::Int64(5)), q1, false);
    // bdSeq typed UInt64 (pysparkplug, Tahu JS).
    check(lenient, Some(Value::UInt64(3)), q1, true);
    check(strict, Some(Value::UInt64(3)), q1, false);
    // Will at QoS 0 (Tahu JS).
    check(lenient, Some(Value::Int64(3)), Qos::AtMostOnce, true);
    check(strict, Some(Value::Int64(3)), Qos::AtMostOnce, false);
    // No bdSeq at all.
    check(lenient, None, q1, true);
    check(strict, None, q1, false);
    // A bdSeq that is not an integer never matches.
    check(lenient, Some(Value::String("3".to_owned())), q1, false);
}

#[test]
fn nbirth_bdseq_leniency_uint64_and_missing() {
    let mut payload = nbirth(0, 0);
    payload.metrics[0] = bd_seq(Value::UInt64(7));
    let mut host = session();
    send(&mut host, NBIRTH, &payload, at(0));
    assert_eq!(host.bd_seq(&node()), Some(7));
    let mut host = session_with(HostConfig {
        leniency: Leniency::strict(),
        ..HostConfig::new(HOST)
    });
    let events = send(&mut host, NBIRTH, &payload, at(0));
    assert!(
        matches!(rejections(&events)[..], [Rejection::BadBdSeq(_)]),
        "{events:?}"
    );
    payload.metrics.remove(0);
    let events = send(&mut host, NBIRTH, &payload, at(0));
    assert_eq!(rejections(&events), vec![&Rejection::MissingBdSeq]);
}

#[test]
fn operational_behavior_edge_node_termination_host_action_ddeath_devices_tags_stale() {
    let mut host = born();
    let death = Payload {
        timestamp: Some(77),
        seq: Some(2),
        ..Payload::default()
    };
    let events = send(&mut host, DDEATH, &death, at(3));
    // At the DDEATH's timestamp; the node stays online.
    assert_eq!(stale(&events), vec![(Some("filler".to_owned()), 77)]);
    assert!(host.is_online(&node()));
    assert!(!host.is_device_online(&node(), "filler"));
    // A second DDEATH for a device that is not online.
    let events = send(
        &mut host,
        DDEATH,
        &Payload {
            seq: Some(3),
            ..death
        },
        at(3),
    );
    assert_eq!(
        rejections(&events),
        vec![&Rejection::UnknownDevice {
            device: "filler".to_owned()
        }]
    );
}

#[test]
fn a_new_nbirth_replaces_the_session_and_forgets_old_devices() {
    let mut host = born();
    send(&mut host, NBIRTH, &nbirth(0, 4), at(1));
    assert_eq!(host.bd_seq(&node()), Some(4));
    assert!(!host.is_device_online(&node(), "filler"));
    // The old session's Will arrives late: ignored.
    let events = send(&mut host, NDEATH, &ndeath(Value::Int64(3)), at(2));
    assert!(stale(&events).is_empty(), "{events:?}");
}

#[test]
fn losing_the_broker_connection_makes_everything_stale() {
    let mut host = born();
    let events = host.connection_lost(at(4));
    assert_eq!(
        stale(&events),
        vec![
            (None, at(4).utc_ms),
            (Some("filler".to_owned()), at(4).utc_ms)
        ]
    );
    assert!(!host.is_online(&node()));
}

// ---- bad input -----------------------------------------------------------------------------------

#[test]
fn bad_topics_payloads_and_sizes_are_rejected_with_a_kind() {
    let config = HostConfig {
        max_payload_bytes: 64,
        max_birth_metrics: 2,
        ..HostConfig::new(HOST)
    };
    let mut host = session_with(config);
    let check = |host: &mut HostSession, topic: &str, payload: &[u8], kind: &str| {
        let events = send_qos(host, topic, payload, Qos::AtMostOnce, at(1));
        let reasons = rejections(&events);
        assert_eq!(reasons.len(), 1, "{topic}: {events:?}");
        assert_eq!(reasons[0].kind(), kind, "{topic}: {:?}", reasons[0]);
    };
    check(&mut host, "spBv1.0/acme/NDATA", b"", "bad_topic");
    check(&mut host, "spBv1.0/acme/XDATA/line-1", b"", "bad_topic");
    check(&mut host, NDATA, &[0xFF, 0xFF, 0xFF], "bad_payload");
    check(&mut host, NDATA, &[0_u8; 65], "oversize");
    // Four metrics where two are allowed (encoded small enough to pass the byte limit).
    let birth = Payload {
        seq: Some(0),
        metrics: (0..4)
            .map(|i| Metric::new(format!("m{i}"), Value::Boolean(true)))
            .collect(),
        ..Payload::default()
    };
    check(&mut host, NBIRTH, &bytes(&birth), "oversize");
    // Commands are ignored, not rejected.
    assert!(
        send_qos(
            &mut host,
            "spBv1.0/acme-berlin/NCMD/line-1",
            &[0xFF],
            Qos::AtMostOnce,
            at(1)
        )
        .is_empty()
    );
}

/// A node's births together are bounded in metrics and in bytes of names and units; a rebirth of
/// a device replaces its old birth (does not add to it), and an NBIRTH starts the count again.
#[test]
fn node_limits_count_the_births_in_effect_and_a_rebirth_replaces() {
    const CAPPER: &str = "spBv1.0/acme-berlin/DBIRTH/line-1/capper";
    let check = |config: HostConfig| {
        let mut host = session_with(config);
        let node = node();
        assert!(rejections(&send(&mut host, NBIRTH, &nbirth(0, 3), at(0))).is_empty());
        assert!(rejections(&send(&mut host, DBIRTH, &dbirth(1), at(0))).is_empty());
        // The same device again: replaces, still fits.
        assert!(rejections(&send(&mut host, DBIRTH, &dbirth(2), at(0))).is_empty());
        // A second device would go beyond the node's limit.
        let events = send(&mut host, CAPPER, &dbirth(3), at(0));
        let reasons = rejections(&events);
        assert!(
            matches!(reasons.as_slice(), [Rejection::NodeTooLarge { .. }]),
            "{events:?}"
        );
        assert_eq!(reasons[0].kind(), "oversize");
        assert!(!host.is_device_online(&node, "capper"));
        assert!(host.is_device_online(&node, "filler"));
        // A new NBIRTH drops the devices' births: now the capper fits.
        assert!(rejections(&send(&mut host, NBIRTH, &nbirth(0, 4), at(1))).is_empty());
        assert!(rejections(&send(&mut host, CAPPER, &dbirth(1), at(1))).is_empty());
        assert!(host.is_device_online(&node, "capper"));
    };
    // NBIRTH 3 metrics, each DBIRTH 8.
    check(HostConfig {
        max_node_metrics: 14,
        ..HostConfig::new(HOST)
    });
    // NBIRTH 31 bytes of names, each DBIRTH 51 of names and 3 of its unit.
    check(HostConfig {
        max_node_bytes: 100,
        ..HostConfig::new(HOST)
    });
}

/// Made-up node ids cannot grow the host: beyond `max_nodes`, data from a new node gets no rebirth
/// request and an NBIRTH of one is refused, until unborn nodes' rebirth waits are over.
#[test]
fn a_flood_of_made_up_nodes_is_bounded_by_max_nodes() {
    let mut host = session_with(HostConfig {
        max_nodes: 3,
        ..HostConfig::new(HOST)
    });
    let data_from = |host: &mut HostSession, edge: &str, now: Now| {
        let topic = format!("spBv1.0/acme-berlin/NDATA/{edge}");
        send(host, &topic, &data(1, vec![]), now)
    };
    assert!(rejections(&send(&mut host, NBIRTH, &nbirth(0, 3), at(0))).is_empty());
    for edge in ["x-1", "x-2"] {
        assert_eq!(
            rebirths(&data_from(&mut host, edge, at(0))).len(),
            1,
            "{edge}"
        );
    }
    // Full: no rebirth request for a fourth, and an NBIRTH of a new node is refused.
    assert!(rebirths(&data_from(&mut host, "x-3", at(0))).is_empty());
    let events = send(
        &mut host,
        "spBv1.0/acme-berlin/NBIRTH/line-2",
        &nbirth(0, 1),
        at(0),
    );
    assert!(
        matches!(
            rejections(&events)[..],
            [Rejection::TooManyNodes { limit: 3 }]
        ),
        "{events:?}"
    );
    // The unborn nodes' waits (5 s) are over: they are forgotten, the born one stays.
    assert_eq!(rebirths(&data_from(&mut host, "x-3", at(6))).len(), 1);
    assert!(host.is_online(&node()));
}

#[test]
fn host_config_is_validated() {
    assert!(HostSession::new(HostConfig::new("a/b")).is_err());
    assert!(HostSession::new(HostConfig::new("")).is_err());
    assert!(
        HostSession::new(HostConfig {
            max_reorder_messages: 0,
            ..HostConfig::new("ok")
        })
        .is_err()
    );
}

fn arbitrary_message() -> impl Strategy<Value = (String, Vec<u8>)> {
    let topics = prop_oneof![
        Just(NBIRTH.to_owned()),
        Just(NDATA.to_owned()),
        Just(NDEATH.to_owned()),
        Just(DBIRTH.to_owned()),
        Just(DDATA.to_owned()),
        Just(DDEATH.to_owned()),
        Just("spBv1.0/STATE/scada-bridge".to_owned()),
        "spBv1.0/[a-z/+#]{0,20}",
    ];
    let payloads = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (0_u64..300, 0_u64..5)
            .prop_map(|(seq, alias)| bytes(&data(seq, vec![by_alias(alias, RawValue::Long(seq))]))),
        (0_u64..300, 0_u64..5).prop_map(|(seq, bd)| bytes(&nbirth(seq, bd))),
        (0_u64..300).prop_map(|seq| bytes(&dbirth(seq))),
    ];
    (topics, payloads)
}

proptest! {
    /// Any sequence of messages and timer polls: the host never panics, and every Stale event is for a
    /// node or device that was online before it.
    #[test]
    fn host_never_panics_on_any_message_sequence(
        messages in proptest::collection::vec((arbitrary_message(), 0_u64..4), 1..40)
    ) {
        let mut host = session();
        let mut seconds = 0;
        for ((topic, payload), advance) in messages {
            seconds += advance;
            let was_online = host.is_online(&node());
            let events = send_qos(&mut host, &topic, &payload, Qos::AtLeastOnce, at(seconds));
            for event in events.iter().chain(host.poll(at(seconds)).iter()) {
                if let HostEvent::Stale { device: None, .. } = event {
                    prop_assert!(was_online);
                }
                if let HostEvent::Metric(update) = event {
                    // Resolved values are typed, unless the birth itself declared no datatype.
                    prop_assert!(
                        !matches!(update.value, Some(Value::Untyped(_)))
                            || update.datatype == DataType::Unknown
                    );
                }
            }
        }
    }
}

/// mqtt-spb-wrapper 2.x sends no `seq` at all: with `Leniency::missing_seq` its messages are applied as
/// they arrive; strictly they are rejected.
#[test]
fn missing_seq_leniency() {
    let unsequenced = |payload: Payload| Payload {
        seq: None,
        ..payload
    };
    let mut host = session();
    send(&mut host, NBIRTH, &unsequenced(nbirth(0, 3)), at(0));
    send(&mut host, DBIRTH, &unsequenced(dbirth(1)), at(0));
    let ddata = unsequenced(data(9, vec![by_alias(14, RawValue::Double(2.0))]));
    let events = send(&mut host, DDATA, &ddata, at(1));
    assert_eq!(
        values(&events),
        vec![("Pressure".to_owned(), Some(Value::Double(2.0)))]
    );
    let events = send(&mut host, DDEATH, &Payload::default(), at(2));
    assert_eq!(stale(&events).len(), 1, "{events:?}");

    let mut strict_host = session_with(HostConfig {
        leniency: Leniency::strict(),
        ..HostConfig::new(HOST)
    });
    send(&mut strict_host, NBIRTH, &nbirth(0, 3), at(0));
    let events = send(
        &mut strict_host,
        NDATA,
        &unsequenced(data(1, vec![])),
        at(1),
    );
    assert_eq!(rejections(&events), vec![&Rejection::BadSeq { seq: None }]);
}

/// mqtt-spb-wrapper 2.x births name a data metric `DATA/Level` and its DATA messages `Level`.
#[test]
fn data_prefix_in_birth_leniency() {
    for (leniency, resolved) in [(Leniency::default(), true), (Leniency::strict(), false)] {
        let mut host = session_with(HostConfig {
            leniency: Leniency {
                missing_bdseq: true,
                ..leniency
            },
            ..HostConfig::new(HOST)
        });
        let birth = Payload {
            seq: Some(0),
            metrics: vec![Metric::new("DATA/Level", Value::Int8(-5))],
            ..Payload::default()
        };
        send(&mut host, NBIRTH, &birth, at(0));
        let by_name = Metric {
            name: Some("Level".to_owned()),
            datatype: Some(DataType::Int8),
            value: Some(Value::Int8(-7)),
            ..Metric::default()
        };
        let events = send(&mut host, NDATA, &data(1, vec![by_name]), at(1));
        let expected = if resolved {
            vec![("DATA/Level".to_owned(), Some(Value::Int8(-7)))]
        } else {
            vec![]
        };
        assert_eq!(values(&events), expected, "{leniency:?}");
    }
}
