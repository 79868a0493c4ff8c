//! Cross-checks with `sparkplug-rs` (rust-protobuf types generated from the Tahu .proto): what we encode
//! it reads with the field and value the spec and Tahu use, and what it encodes we read back.

use sparkplug_rs::payload::metric::Value as SpbValue;
use sparkplug_rs::protobuf::Message as _;
use uns_sparkplug::{DataType, Metric, Payload, Value, decode, encode};

/// Encodes with our codec and parses the bytes with sparkplug-rs.
fn ours_to_foreign(payload: &Payload) -> sparkplug_rs::Payload {
    let bytes = encode(payload).unwrap_or_else(|error| panic!("encode: {error}"));
    sparkplug_rs::Payload::parse_from_bytes(&bytes)
        .unwrap_or_else(|error| panic!("sparkplug-rs cannot parse our bytes: {error}"))
}

/// Every scalar datatype plus arrays: the datatype code and the `oneof` field and value sparkplug-rs sees.
fn wire_table() -> Vec<(Value, SpbValue)> {
    vec![
        // Int8/16/32 sign-extended into int_value (uint32).
        (Value::Int8(-1), SpbValue::IntValue(0xFFFF_FFFF)),
        (Value::Int8(i8::MIN), SpbValue::IntValue(0xFFFF_FF80)),
        (Value::Int8(i8::MAX), SpbValue::IntValue(127)),
        (Value::Int16(-2), SpbValue::IntValue(0xFFFF_FFFE)),
        (Value::Int16(i16::MIN), SpbValue::IntValue(0xFFFF_8000)),
        (Value::Int32(i32::MIN), SpbValue::IntValue(0x8000_0000)),
        (Value::Int32(i32::MAX), SpbValue::IntValue(0x7FFF_FFFF)),
        // Int64 as two's complement in long_value.
        (Value::Int64(-1), SpbValue::LongValue(u64::MAX)),
        (Value::Int64(i64::MIN), SpbValue::LongValue(1 << 63)),
        (Value::UInt8(u8::MAX), SpbValue::IntValue(255)),
        (Value::UInt16(u16::MAX), SpbValue::IntValue(65_535)),
        // UInt32 in long_value (Tahu), UInt64 and DateTime in long_value.
        (Value::UInt32(u32::MAX), SpbValue::LongValue(4_294_967_295)),
        (Value::UInt64(u64::MAX), SpbValue::LongValue(u64::MAX)),
        (
            Value::DateTime(1_741_068_000_123),
            SpbValue::LongValue(1_741_068_000_123),
        ),
        (Value::Float(71.4), SpbValue::FloatValue(71.4)),
        (Value::Double(-1e300), SpbValue::DoubleValue(-1e300)),
        (Value::Boolean(true), SpbValue::BooleanValue(true)),
        (
            Value::String("s".to_owned()),
            SpbValue::StringValue("s".to_owned()),
        ),
        (
            Value::Text("t".to_owned()),
            SpbValue::StringValue("t".to_owned()),
        ),
        (
            Value::Uuid("u".to_owned()),
            SpbValue::StringValue("u".to_owned()),
        ),
        (Value::Bytes(vec![1, 2]), SpbValue::BytesValue(vec![1, 2])),
        (Value::File(vec![3]), SpbValue::BytesValue(vec![3])),
        (
            Value::Int16Array(vec![-2, 3]),
            SpbValue::BytesValue(vec![0xFE, 0xFF, 3, 0]),
        ),
        (
            Value::UInt32Array(vec![1, u32::MAX]),
            SpbValue::BytesValue(vec![1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]),
        ),
        (
            Value::BooleanArray(vec![
                true, false, false, false, false, false, false, false, true,
            ]),
            SpbValue::BytesValue(vec![9, 0, 0, 0, 0x80, 0x80]),
        ),
        (
            Value::StringArray(vec!["ab".to_owned(), "c".to_owned()]),
            SpbValue::BytesValue(vec![b'a', b'b', 0, b'c', 0]),
        ),
    ]
}

#[test]
fn what_we_encode_sparkplug_rs_reads_as_the_spec_says() {
    for (value, expected) in wire_table() {
        let datatype = value.datatype();
        let payload = Payload {
            timestamp: Some(1),
            seq: Some(0),
            metrics: vec![Metric {
                alias: Some(11),
                timestamp: Some(2),
                ..Metric::new("m", value.clone())
            }],
            ..Payload::default()
        };
        let foreign = ours_to_foreign(&payload);
        assert_eq!(foreign.timestamp, Some(1));
        assert_eq!(foreign.seq, Some(0));
        let [metric] = foreign.metrics.as_slice() else {
            panic!("expected one metric, got {:?}", foreign.metrics);
        };
        assert_eq!(metric.name.as_deref(), Some("m"));
        assert_eq!(metric.alias, Some(11));
        assert_eq!(metric.timestamp, Some(2));
        assert_eq!(
            metric.datatype,
            Some(foreign_datatype(datatype) as u32),
            "{value:?}"
        );
        assert_eq!(metric.value.as_ref(), Some(&expected), "{value:?}");
        assert_eq!(metric.is_null, None);
    }
}

#[test]
fn what_sparkplug_rs_encodes_we_decode() {
    for (expected, wire) in wire_table() {
        let mut metric = sparkplug_rs::payload::Metric::new();
        metric.name = Some("m".to_owned());
        metric.alias = Some(3);
        metric.timestamp = Some(4);
        metric.datatype = Some(foreign_datatype(expected.datatype()) as u32);
        metric.is_historical = Some(true);
        metric.value = Some(wire);
        let mut payload = sparkplug_rs::Payload::new();
        payload.timestamp = Some(5);
        payload.seq = Some(6);
        payload.metrics.push(metric);
        let bytes = payload.write_to_bytes().unwrap_or_default();
        let decoded = decode(&bytes).unwrap_or_else(|error| panic!("{expected:?}: {error}"));
        assert_eq!(decoded.timestamp, Some(5));
        assert_eq!(decoded.seq, Some(6));
        let ours = &decoded.metrics[0];
        assert_eq!(ours.name.as_deref(), Some("m"));
        assert_eq!(
            (ours.alias, ours.timestamp, ours.is_historical),
            (Some(3), Some(4), true)
        );
        assert_eq!(ours.datatype, Some(expected.datatype()));
        assert_eq!(ours.value.as_ref(), Some(&expected));
    }
}

#[test]
fn tahu_style_nulls_and_data_messages_decode() {
    // A DDATA metric as many edge nodes send it: alias only, no datatype; and an explicit null.
    let mut data = sparkplug_rs::payload::Metric::new();
    data.alias = Some(7);
    data.set_long_value(42);
    let mut null = sparkplug_rs::payload::Metric::new();
    null.alias = Some(8);
    null.set_is_null(true);
    let mut payload = sparkplug_rs::Payload::new();
    payload.seq = Some(1);
    payload.metrics = vec![data, null];
    let decoded = decode(&payload.write_to_bytes().unwrap_or_default())
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(decoded.metrics[0].datatype, None);
    assert_eq!(
        decoded.metrics[0].value,
        Some(Value::Untyped(uns_sparkplug::RawValue::Long(42)))
    );
    assert!(decoded.metrics[1].is_null());
    // Our encoding of a null metric is what Tahu writes: is_null = true, no value.
    let ours = ours_to_foreign(&Payload {
        metrics: vec![Metric {
            name: Some("n".to_owned()),
            datatype: Some(DataType::Int32),
            ..Metric::default()
        }],
        ..Payload::default()
    });
    assert_eq!(ours.metrics[0].is_null, Some(true));
    assert_eq!(ours.metrics[0].value, None);
}

/// sparkplug-rs's own DataType codes agree with ours (its enum comes from the Tahu .proto).
#[test]
fn datatype_codes_agree_with_sparkplug_rs() {
    for datatype in uns_sparkplug::value::ALL_DATATYPES {
        assert_eq!(
            foreign_datatype(datatype) as u32,
            datatype.code(),
            "{datatype}"
        );
    }
}

/// Maps our `DataType` to sparkplug-rs's by variant name, so comparing codes is not circular.
fn foreign_datatype(datatype: DataType) -> sparkplug_rs::DataType {
    use sparkplug_rs::protobuf::Enum as _;
    sparkplug_rs::DataType::VALUES
        .iter()
        .copied()
        .find(|foreign| format!("{foreign:?}") == datatype.name())
        .unwrap_or_else(|| panic!("sparkplug-rs has no datatype named {datatype}"))
}
