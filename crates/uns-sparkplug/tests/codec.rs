//! Codec tables: lenient typing of wire values, the spec's array examples, round trips of every datatype,
//! decode errors on corrupt input, encode errors on invalid payloads, and the JSON form.

use serde_json::json;
use sparkplug_rs::payload::metric::Value as SpbValue;
use sparkplug_rs::protobuf::Message as _;
use uns_sparkplug::value::ALL_DATATYPES;
use uns_sparkplug::{
    DataSet, DataType, DecodeError, EncodeError, MetaData, Metric, Parameter, Payload, PropertySet,
    PropertyValue, RawValue, Template, Value, ValueError, decode, encode,
};

/// Encodes a one-metric payload, decodes it, and returns the decoded payload.
fn round_trip(payload: &Payload) -> Payload {
    let bytes = encode(payload).unwrap_or_else(|error| panic!("encode {payload:?}: {error}"));
    decode(&bytes).unwrap_or_else(|error| panic!("decode {payload:?}: {error}"))
}

fn one_metric(metric: Metric) -> Payload {
    Payload {
        timestamp: Some(1_741_068_000_123),
        seq: Some(7),
        metrics: vec![metric],
        ..Payload::default()
    }
}

/// The bytes of a payload with one metric built with sparkplug-rs (an independent protobuf stack), so the
/// tests can put any value in any field.
fn foreign_payload(datatype: Option<u32>, value: Option<SpbValue>) -> Vec<u8> {
    let mut metric = sparkplug_rs::payload::Metric::new();
    metric.name = Some("m".to_owned());
    metric.datatype = datatype;
    metric.value = value;
    let mut payload = sparkplug_rs::Payload::new();
    payload.seq = Some(0);
    payload.metrics.push(metric);
    payload.write_to_bytes().unwrap_or_default()
}

fn metric_error(bytes: &[u8]) -> ValueError {
    match decode(bytes) {
        Err(DecodeError::Metric {
            index: 0, source, ..
        }) => source,
        other => panic!("expected a metric error, got {other:?}"),
    }
}

#[test]
fn datatype_codes_match_the_spec() {
    for (code, datatype) in ALL_DATATYPES.iter().enumerate() {
        assert_eq!(datatype.code() as usize, code);
        assert_eq!(DataType::from_code(datatype.code()), Some(*datatype));
    }
    assert_eq!(DataType::Int8Array.code(), 22);
    assert_eq!(DataType::DateTimeArray.code(), 34);
    assert_eq!(DataType::Uuid.name(), "UUID");
    assert_eq!(DataType::from_code(35), None);
    assert_eq!(DataType::from_code(u32::MAX), None);
}

#[test]
fn integers_decode_leniently_from_either_field() {
    fn check(datatype: DataType, raw: RawValue, expected: Result<Value, ValueError>) {
        assert_eq!(
            Value::from_raw(datatype, raw.clone()),
            expected,
            "{datatype} from {raw:?}"
        );
    }
    let out_of_range = |datatype, value| Err(ValueError::OutOfRange { datatype, value });
    let wrong = |datatype, found| Err(ValueError::WrongValueField { datatype, found });
    use DataType as D;
    use RawValue::{Int, Long};
    // Int8: spec form (sign-extended to 32 bits), raw 8-bit pattern, 64-bit sign extension.
    check(D::Int8, Int(0xFFFF_FFFF), Ok(Value::Int8(-1)));
    check(D::Int8, Int(0xFF), Ok(Value::Int8(-1)));
    check(D::Int8, Long(u64::MAX), Ok(Value::Int8(-1)));
    check(D::Int8, Long(0xFFFF_FFFF), Ok(Value::Int8(-1)));
    check(D::Int8, Int(0xFFFF_FF80), Ok(Value::Int8(i8::MIN)));
    check(D::Int8, Int(0x80), Ok(Value::Int8(i8::MIN)));
    check(D::Int8, Int(0x7F), Ok(Value::Int8(i8::MAX)));
    check(D::Int8, Long(5), Ok(Value::Int8(5)));
    check(D::Int8, Int(0x100), out_of_range(D::Int8, 0x100));
    check(
        D::Int8,
        Int(0xFFFF_FF7F),
        out_of_range(D::Int8, 0xFFFF_FF7F),
    );
    check(D::Int8, Long(1 << 40), out_of_range(D::Int8, 1 << 40));
    check(D::Int8, RawValue::Float(1.0), wrong(D::Int8, "float_value"));
    // Int16.
    check(D::Int16, Int(0xFFFF), Ok(Value::Int16(-1)));
    check(D::Int16, Int(0xFFFF_8000), Ok(Value::Int16(i16::MIN)));
    check(D::Int16, Int(0x8000), Ok(Value::Int16(i16::MIN)));
    check(D::Int16, Int(0x7FFF), Ok(Value::Int16(i16::MAX)));
    check(D::Int16, Int(0x1_0000), out_of_range(D::Int16, 0x1_0000));
    // Int32.
    check(D::Int32, Int(0x8000_0000), Ok(Value::Int32(i32::MIN)));
    check(D::Int32, Long(u64::MAX), Ok(Value::Int32(-1)));
    check(D::Int32, Long(0xFFFF_FFFF), Ok(Value::Int32(-1)));
    check(D::Int32, Long(1 << 32), out_of_range(D::Int32, 1 << 32));
    // Int64: long_value is two's complement; int_value is read sign-extended from 32 bits.
    check(D::Int64, Long(1 << 63), Ok(Value::Int64(i64::MIN)));
    check(D::Int64, Long(u64::MAX), Ok(Value::Int64(-1)));
    check(D::Int64, Int(0xFFFF_FFFF), Ok(Value::Int64(-1)));
    check(D::Int64, Int(7), Ok(Value::Int64(7)));
    check(
        D::Int64,
        RawValue::Boolean(true),
        wrong(D::Int64, "boolean_value"),
    );
    // Unsigned.
    check(D::UInt8, Int(255), Ok(Value::UInt8(255)));
    check(D::UInt8, Long(255), Ok(Value::UInt8(255)));
    check(D::UInt8, Int(256), out_of_range(D::UInt8, 256));
    check(D::UInt16, Int(65_535), Ok(Value::UInt16(u16::MAX)));
    check(
        D::UInt16,
        Int(0xFFFF_FFFF),
        out_of_range(D::UInt16, 0xFFFF_FFFF),
    );
    check(D::UInt32, Int(u32::MAX), Ok(Value::UInt32(u32::MAX)));
    check(
        D::UInt32,
        Long(u64::from(u32::MAX)),
        Ok(Value::UInt32(u32::MAX)),
    );
    check(D::UInt32, Long(1 << 32), out_of_range(D::UInt32, 1 << 32));
    check(D::UInt64, Int(5), Ok(Value::UInt64(5)));
    check(D::UInt64, Long(u64::MAX), Ok(Value::UInt64(u64::MAX)));
    check(
        D::DateTime,
        Long(1_741_068_000_123),
        Ok(Value::DateTime(1_741_068_000_123)),
    );
    check(D::DateTime, Int(5), Ok(Value::DateTime(5)));
    // Everything else must sit in its own field.
    check(
        D::Float,
        RawValue::Double(1.0),
        wrong(D::Float, "double_value"),
    );
    check(
        D::Double,
        RawValue::Float(1.0),
        wrong(D::Double, "float_value"),
    );
    check(D::Boolean, Int(1), wrong(D::Boolean, "int_value"));
    check(
        D::String,
        RawValue::Bytes(vec![65]),
        wrong(D::String, "bytes_value"),
    );
    check(
        D::Text,
        RawValue::String("t".to_owned()),
        Ok(Value::Text("t".to_owned())),
    );
    check(
        D::Uuid,
        RawValue::String("u".to_owned()),
        Ok(Value::Uuid("u".to_owned())),
    );
    check(
        D::Bytes,
        RawValue::String("x".to_owned()),
        wrong(D::Bytes, "string_value"),
    );
    check(D::Int32Array, Int(1), wrong(D::Int32Array, "int_value"));
    check(D::DataSet, Int(1), wrong(D::DataSet, "int_value"));
    check(
        D::Template,
        RawValue::Bytes(vec![]),
        wrong(D::Template, "bytes_value"),
    );
    check(D::PropertySet, Int(1), wrong(D::PropertySet, "int_value"));
    check(D::Unknown, Int(5), Ok(Value::Untyped(Int(5))));
}

#[test]
fn arrays_decode_from_the_spec_examples() {
    fn check(datatype: DataType, bytes: &[u8], expected: Value) {
        assert_eq!(
            Value::from_raw(datatype, RawValue::Bytes(bytes.to_vec())),
            Ok(expected.clone()),
            "{datatype}"
        );
        // And the encoder writes exactly these bytes.
        let payload = one_metric(Metric::new("a", expected));
        let foreign =
            sparkplug_rs::Payload::parse_from_bytes(&encode(&payload).unwrap_or_default())
                .unwrap_or_default();
        let written = foreign
            .metrics
            .first()
            .map(|metric| metric.bytes_value().to_vec());
        assert_eq!(written.as_deref(), Some(bytes), "{datatype} encoding");
    }
    // The spec prints [-23, 123] -> [0xEF, 0x7B]; -23 is 0xE9 (0xEF is -17), a typo in the example.
    check(
        DataType::Int8Array,
        &[0xE9, 0x7B],
        Value::Int8Array(vec![-23, 123]),
    );
    check(
        DataType::Int16Array,
        &[0xD0, 0x8A, 0x30, 0x75],
        Value::Int16Array(vec![-30000, 30000]),
    );
    check(
        DataType::Int32Array,
        &[0xFF, 0xFF, 0xFF, 0xFF, 0xFA, 0xAF, 0xCB, 0x12],
        Value::Int32Array(vec![-1, 315_338_746]),
    );
    check(
        DataType::Int64Array,
        &[
            0xCE, 0x06, 0x72, 0xAC, 0x18, 0x9C, 0xBA, 0xC4, 0xC4, 0xBA, 0x9C, 0x18, 0xAC, 0x72,
            0x06, 0xCE,
        ],
        Value::Int64Array(vec![-4_270_929_666_821_191_986, -3_601_064_768_563_266_876]),
    );
    check(
        DataType::UInt8Array,
        &[0x17, 0xFA],
        Value::UInt8Array(vec![23, 250]),
    );
    check(
        DataType::UInt16Array,
        &[0x1E, 0x00, 0x88, 0xCC],
        Value::UInt16Array(vec![30, 52360]),
    );
    check(
        DataType::UInt32Array,
        &[0x34, 0x00, 0x00, 0x00, 0x49, 0xFB, 0x55, 0xC4],
        Value::UInt32Array(vec![52, 3_293_969_225]),
    );
    check(
        DataType::UInt64Array,
        &[
            0x34, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xD9, 0x9E, 0x02, 0xD1, 0xB2, 0x76,
            0x37, 0xE4,
        ],
        Value::UInt64Array(vec![52, 16_444_743_074_749_521_625]),
    );
    // The spec's FloatArray/DoubleArray examples print big-endian bytes (0x3F9D70A4 is 1.23f32); the
    // normative text says little-endian, as does Tahu.
    check(
        DataType::FloatArray,
        &[0xA4, 0x70, 0x9D, 0x3F, 0x98, 0xAE, 0xB2, 0x42],
        Value::FloatArray(vec![1.23, 89.341]),
    );
    check(
        DataType::DoubleArray,
        &[
            0xD7, 0xA2, 0x05, 0x68, 0x5B, 0xB5, 0x28, 0x40, 0x8E, 0x17, 0x1C, 0x6F, 0x4C, 0xF7,
            0x8F, 0x40,
        ],
        Value::DoubleArray(vec![12.354213, 1022.9123213]),
    );
    // BooleanArray: 4-byte LE count, then MSB-first bits; the spec's 0xDX has X = padding (we write 0).
    check(
        DataType::BooleanArray,
        &[0x0C, 0x00, 0x00, 0x00, 0x34, 0xD0],
        Value::BooleanArray(vec![
            false, false, true, true, false, true, false, false, true, true, false, true,
        ]),
    );
    check(
        DataType::StringArray,
        &[0x41, 0x42, 0x43, 0x00, 0x68, 0x65, 0x6C, 0x6C, 0x6F, 0x00],
        Value::StringArray(vec!["ABC".to_owned(), "hello".to_owned()]),
    );
    // The spec's DateTimeArray example drops the two zero high bytes of each 8-byte value.
    check(
        DataType::DateTimeArray,
        &[
            0xC7, 0xD0, 0x90, 0x75, 0x24, 0x01, 0x00, 0x00, 0xB8, 0xBA, 0xB8, 0x97, 0x81, 0x01,
            0x00, 0x00,
        ],
        Value::DateTimeArray(vec![1_256_102_875_335, 1_656_107_875_000]),
    );
}

#[test]
fn array_decoding_leniency_and_padding() {
    // Padding bits are "do not care": set padding still decodes.
    assert_eq!(
        Value::from_raw(
            DataType::BooleanArray,
            RawValue::Bytes(vec![3, 0, 0, 0, 0b1011_1111])
        ),
        Ok(Value::BooleanArray(vec![true, false, true]))
    );
    // A last string without its NUL terminator is accepted.
    assert_eq!(
        Value::from_raw(DataType::StringArray, RawValue::Bytes(b"a\0bc".to_vec())),
        Ok(Value::StringArray(vec!["a".to_owned(), "bc".to_owned()]))
    );
    // Empty strings survive: [""] is a lone NUL, [] is no bytes.
    assert_eq!(
        Value::from_raw(DataType::StringArray, RawValue::Bytes(vec![0])),
        Ok(Value::StringArray(vec![String::new()]))
    );
    assert_eq!(
        Value::from_raw(DataType::StringArray, RawValue::Bytes(vec![])),
        Ok(Value::StringArray(vec![]))
    );
}

fn edge_values() -> Vec<Value> {
    let data_set = DataSet {
        columns: vec![
            "id".to_owned(),
            "weight".to_owned(),
            "ok".to_owned(),
            "at".to_owned(),
        ],
        types: vec![
            DataType::Int8,
            DataType::Double,
            DataType::Boolean,
            DataType::DateTime,
        ],
        rows: vec![
            vec![
                Some(Value::Int8(-1)),
                Some(Value::Double(2.5)),
                Some(Value::Boolean(true)),
                Some(Value::DateTime(1)),
            ],
            vec![
                Some(Value::Int8(i8::MIN)),
                None,
                Some(Value::Boolean(false)),
                None,
            ],
        ],
    };
    let template = Template {
        version: Some("v1".to_owned()),
        metrics: vec![
            Metric::new("speed", Value::UInt32(u32::MAX)),
            Metric {
                name: Some("empty".to_owned()),
                datatype: Some(DataType::String),
                ..Metric::default()
            },
        ],
        parameters: vec![Parameter {
            name: Some("max".to_owned()),
            datatype: Some(DataType::Int16),
            value: Some(Value::Int16(-300)),
        }],
        template_ref: Some("Motor".to_owned()),
        is_definition: false,
    };
    vec![
        Value::Int8(i8::MIN),
        Value::Int8(i8::MAX),
        Value::Int8(-1),
        Value::Int8(0),
        Value::Int16(i16::MIN),
        Value::Int16(i16::MAX),
        Value::Int32(i32::MIN),
        Value::Int32(i32::MAX),
        Value::Int64(i64::MIN),
        Value::Int64(i64::MAX),
        Value::UInt8(0),
        Value::UInt8(u8::MAX),
        Value::UInt16(u16::MAX),
        Value::UInt32(0),
        Value::UInt32(u32::MAX),
        Value::UInt64(u64::MAX),
        Value::Float(f32::MIN),
        Value::Float(f32::MAX),
        Value::Float(f32::MIN_POSITIVE),
        Value::Float(-0.0),
        Value::Float(f32::INFINITY),
        Value::Double(f64::MIN),
        Value::Double(f64::MAX),
        Value::Double(f64::NEG_INFINITY),
        Value::Boolean(true),
        Value::Boolean(false),
        Value::String(String::new()),
        Value::String("Größe 🌡".to_owned()),
        Value::DateTime(0),
        Value::DateTime(u64::MAX),
        Value::Text("line 1\nline 2".to_owned()),
        Value::Uuid("0195f3a0-0000-7000-8000-000000000000".to_owned()),
        Value::DataSet(data_set),
        Value::DataSet(DataSet::default()),
        Value::Bytes(vec![]),
        Value::Bytes(vec![0, 255, 1]),
        Value::File(b"<xml/>".to_vec()),
        Value::Template(template),
        Value::Int8Array(vec![]),
        Value::Int8Array(vec![i8::MIN, -1, 0, i8::MAX]),
        Value::Int16Array(vec![i16::MIN, i16::MAX]),
        Value::Int32Array(vec![i32::MIN, i32::MAX]),
        Value::Int64Array(vec![i64::MIN, i64::MAX]),
        Value::UInt8Array(vec![0, u8::MAX]),
        Value::UInt16Array(vec![0, u16::MAX]),
        Value::UInt32Array(vec![0, u32::MAX]),
        Value::UInt64Array(vec![0, u64::MAX]),
        Value::FloatArray(vec![f32::MIN, f32::MAX, f32::NEG_INFINITY]),
        Value::DoubleArray(vec![]),
        Value::DoubleArray(vec![f64::MIN, f64::MAX, f64::INFINITY]),
        Value::BooleanArray(vec![]),
        Value::BooleanArray(vec![true]),
        Value::BooleanArray(vec![true; 8]),
        Value::BooleanArray(vec![
            false, true, true, false, true, false, false, true, true,
        ]),
        Value::BooleanArray((0..13).map(|idx| idx % 3 == 0).collect()),
        Value::StringArray(vec![]),
        Value::StringArray(vec![String::new()]),
        Value::StringArray(vec!["a".to_owned(), String::new(), "ü".to_owned()]),
        Value::DateTimeArray(vec![0, u64::MAX]),
    ]
}

#[test]
fn every_datatype_round_trips_with_edge_values() {
    let values = edge_values();
    let mut seen: Vec<DataType> = values.iter().map(Value::datatype).collect();
    seen.sort_by_key(|datatype| datatype.code());
    seen.dedup();
    // Every metric datatype is covered (Unknown, PropertySet and PropertySetList are not metric values:
    // they are covered by the untyped and properties tests).
    let metric_types: Vec<DataType> = ALL_DATATYPES
        .into_iter()
        .filter(|datatype| {
            !matches!(
                datatype,
                DataType::Unknown | DataType::PropertySet | DataType::PropertySetList
            )
        })
        .collect();
    assert_eq!(seen, metric_types);
    for value in values {
        let payload = one_metric(Metric::new("m", value));
        assert_eq!(round_trip(&payload), payload);
    }
}

#[test]
fn nan_round_trips_bit_exact() {
    let quiet = f32::from_bits(0x7FC0_0001);
    let payload = Payload {
        metrics: vec![
            Metric::new("f", Value::Float(quiet)),
            Metric::new("d", Value::Double(f64::from_bits(0xFFF8_0000_0000_0042))),
            Metric::new("fa", Value::FloatArray(vec![f32::NAN, 1.0])),
        ],
        ..Payload::default()
    };
    let decoded = round_trip(&payload);
    let values: Vec<Option<Value>> = decoded
        .metrics
        .into_iter()
        .map(|metric| metric.value)
        .collect();
    match values.as_slice() {
        [
            Some(Value::Float(f)),
            Some(Value::Double(d)),
            Some(Value::FloatArray(fa)),
        ] => {
            assert_eq!(f.to_bits(), 0x7FC0_0001);
            assert_eq!(d.to_bits(), 0xFFF8_0000_0000_0042);
            assert!(fa[0].is_nan() && fa[1] == 1.0);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn metric_fields_nulls_properties_and_untyped_values_round_trip() {
    let properties = PropertySet {
        properties: vec![
            (
                "Quality".to_owned(),
                PropertyValue {
                    datatype: Some(DataType::Int32),
                    value: Some(Value::Int32(192)),
                },
            ),
            (
                "engUnit".to_owned(),
                PropertyValue {
                    datatype: Some(DataType::String),
                    value: None,
                },
            ),
            (
                "nested".to_owned(),
                PropertyValue {
                    datatype: Some(DataType::PropertySet),
                    value: Some(Value::PropertySet(PropertySet {
                        properties: vec![(
                            "low".to_owned(),
                            PropertyValue {
                                datatype: Some(DataType::Float),
                                value: Some(Value::Float(-1.5)),
                            },
                        )],
                    })),
                },
            ),
            (
                "list".to_owned(),
                PropertyValue {
                    datatype: Some(DataType::PropertySetList),
                    value: Some(Value::PropertySetList(vec![PropertySet::default()])),
                },
            ),
        ],
    };
    let payload = Payload {
        timestamp: Some(u64::MAX),
        seq: Some(255),
        uuid: Some("schema-1".to_owned()),
        body: Some(vec![1, 2, 3]),
        metrics: vec![
            Metric {
                name: Some("Folder/temperature".to_owned()),
                alias: Some(u64::MAX),
                timestamp: Some(1),
                datatype: Some(DataType::Double),
                is_historical: true,
                is_transient: true,
                metadata: Some(MetaData {
                    description: Some("°C".to_owned()),
                    ..MetaData::default()
                }),
                properties: Some(properties),
                value: Some(Value::Double(182.0)),
            },
            // A null birth metric keeps its datatype.
            Metric {
                name: Some("null".to_owned()),
                alias: Some(2),
                datatype: Some(DataType::Int64),
                ..Metric::default()
            },
            // DATA style: alias only, no datatype; the value stays untyped.
            Metric {
                alias: Some(3),
                timestamp: Some(2),
                value: Some(Value::Untyped(RawValue::Int(0xFFFF_FFFF))),
                ..Metric::default()
            },
            Metric {
                alias: Some(4),
                value: Some(Value::Untyped(RawValue::Bytes(vec![9]))),
                ..Metric::default()
            },
            Metric {
                name: Some("file".to_owned()),
                datatype: Some(DataType::File),
                metadata: Some(MetaData {
                    is_multi_part: Some(false),
                    content_type: Some("text/plain".to_owned()),
                    size: Some(2),
                    seq: Some(0),
                    file_name: Some("a.txt".to_owned()),
                    file_type: Some("txt".to_owned()),
                    md5: Some("x".to_owned()),
                    description: None,
                }),
                value: Some(Value::File(b"hi".to_vec())),
                ..Metric::default()
            },
        ],
    };
    let decoded = round_trip(&payload);
    assert_eq!(decoded, payload);
    assert!(decoded.metrics[1].is_null());
    // The host types a DATA value once the alias tells it the datatype.
    let untyped = decoded.metrics[2].value.clone();
    let Some(Value::Untyped(raw)) = untyped else {
        panic!("expected an untyped value, got {untyped:?}");
    };
    assert_eq!(Value::from_raw(DataType::Int16, raw), Ok(Value::Int16(-1)));
}

#[test]
fn corrupt_bytes_give_typed_errors() {
    let good = encode(&one_metric(Metric::new(
        "m",
        Value::String("hello".to_owned()),
    )))
    .unwrap_or_default();
    // Every strict prefix that cuts a field is rejected or decodes to fewer fields; none panics.
    for len in 0..good.len() {
        let _ = decode(&good[..len]);
    }
    assert!(matches!(
        decode(&good[..good.len() - 1]),
        Err(DecodeError::Protobuf { .. })
    ));
    assert!(matches!(
        decode(&[0xFF; 16]),
        Err(DecodeError::Protobuf { .. })
    ));
    // Field 2 (metrics) with a length that runs past the end.
    assert!(matches!(
        decode(&[0x12, 0x7F, 0x00]),
        Err(DecodeError::Protobuf { .. })
    ));
    // An empty buffer is a valid, empty payload.
    assert_eq!(decode(&[]), Ok(Payload::default()));
}

#[test]
fn values_that_do_not_fit_their_datatype_give_typed_errors() {
    fn check(datatype: Option<u32>, value: Option<SpbValue>, expected: ValueError) {
        assert_eq!(
            metric_error(&foreign_payload(datatype, value.clone())),
            expected,
            "{value:?}"
        );
    }
    let code = |datatype: DataType| Some(datatype.code());
    check(
        code(DataType::Float),
        Some(SpbValue::StringValue("1.0".to_owned())),
        ValueError::WrongValueField {
            datatype: DataType::Float,
            found: "string_value",
        },
    );
    check(
        code(DataType::Int32),
        Some(SpbValue::BytesValue(vec![1])),
        ValueError::WrongValueField {
            datatype: DataType::Int32,
            found: "bytes_value",
        },
    );
    check(
        code(DataType::UInt8),
        Some(SpbValue::IntValue(300)),
        ValueError::OutOfRange {
            datatype: DataType::UInt8,
            value: 300,
        },
    );
    check(
        Some(99),
        Some(SpbValue::IntValue(1)),
        ValueError::UnknownDataType { code: 99 },
    );
    check(
        code(DataType::Int32Array),
        Some(SpbValue::BytesValue(vec![1, 2, 3, 4, 5])),
        ValueError::ArrayLength {
            datatype: DataType::Int32Array,
            n_bytes: 5,
            element_size: 4,
        },
    );
    check(
        code(DataType::DoubleArray),
        Some(SpbValue::BytesValue(vec![0; 12])),
        ValueError::ArrayLength {
            datatype: DataType::DoubleArray,
            n_bytes: 12,
            element_size: 8,
        },
    );
    // Oversize count: 4 billion booleans announced, 1 byte present.
    check(
        code(DataType::BooleanArray),
        Some(SpbValue::BytesValue(vec![0xFF, 0xFF, 0xFF, 0xFF, 0x00])),
        ValueError::BooleanArrayLength {
            count: Some(u32::MAX),
            n_bytes: 5,
        },
    );
    check(
        code(DataType::BooleanArray),
        Some(SpbValue::BytesValue(vec![9, 0, 0, 0, 0xFF])),
        ValueError::BooleanArrayLength {
            count: Some(9),
            n_bytes: 5,
        },
    );
    check(
        code(DataType::BooleanArray),
        Some(SpbValue::BytesValue(vec![1, 0, 0])),
        ValueError::BooleanArrayLength {
            count: None,
            n_bytes: 3,
        },
    );
    check(
        code(DataType::StringArray),
        Some(SpbValue::BytesValue(vec![b'a', 0, 0xC3, 0x28, 0])),
        ValueError::InvalidUtf8 { index: 1 },
    );
    check(
        code(DataType::Int8),
        Some(SpbValue::DatasetValue(sparkplug_rs::payload::DataSet::new())),
        ValueError::WrongValueField {
            datatype: DataType::Int8,
            found: "dataset_value",
        },
    );
}

#[test]
fn composite_shape_errors_are_typed() {
    // PropertySet with more keys than values.
    let mut metric = sparkplug_rs::payload::Metric::new();
    metric.alias = Some(5);
    let mut properties = sparkplug_rs::payload::PropertySet::new();
    properties.keys = vec!["a".to_owned(), "b".to_owned()];
    properties
        .values
        .push(sparkplug_rs::payload::PropertyValue::new());
    metric.properties = Some(properties).into();
    metric.value = Some(SpbValue::IntValue(1));
    let mut payload = sparkplug_rs::Payload::new();
    payload.metrics.push(metric);
    let bytes = payload.write_to_bytes().unwrap_or_default();
    match decode(&bytes) {
        Err(DecodeError::Metric {
            index: 0,
            label,
            source,
        }) => {
            assert_eq!(label, "alias 5");
            assert_eq!(
                source,
                ValueError::Nested {
                    path: "properties".to_owned(),
                    source: Box::new(ValueError::PropertySetLength {
                        n_keys: 2,
                        n_values: 1
                    }),
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // DataSet rows must have one element per column, and cells must fit their column type.
    let data_set = |rows: Vec<Vec<SpbValueCell>>| {
        let mut data_set = sparkplug_rs::payload::DataSet::new();
        data_set.num_of_columns = Some(2);
        data_set.columns = vec!["a".to_owned(), "b".to_owned()];
        data_set.types = vec![DataType::Int8.code(), DataType::String.code()];
        for row in rows {
            let mut message = sparkplug_rs::payload::data_set::Row::new();
            for cell in row {
                let mut element = sparkplug_rs::payload::data_set::DataSetValue::new();
                element.value = cell;
                message.elements.push(element);
            }
            data_set.rows.push(message);
        }
        foreign_payload(
            Some(DataType::DataSet.code()),
            Some(SpbValue::DatasetValue(data_set)),
        )
    };
    use sparkplug_rs::payload::data_set::data_set_value::Value as Cell;
    assert_eq!(
        metric_error(&data_set(vec![vec![Some(Cell::IntValue(1))]])),
        ValueError::DataSetRow {
            row: 0,
            n_elements: 1,
            n_columns: 2
        }
    );
    assert_eq!(
        metric_error(&data_set(vec![
            vec![Some(Cell::IntValue(1)), None],
            vec![Some(Cell::StringValue("x".to_owned())), None],
        ])),
        ValueError::Nested {
            path: "rows[1][0]".to_owned(),
            source: Box::new(ValueError::WrongValueField {
                datatype: DataType::Int8,
                found: "string_value"
            }),
        }
    );
    let decoded = decode(&data_set(vec![vec![Some(Cell::IntValue(0xFF)), None]]));
    let cell = decoded.map(|payload| payload.metrics[0].value.clone());
    assert_eq!(
        cell,
        Ok(Some(Value::DataSet(DataSet {
            columns: vec!["a".to_owned(), "b".to_owned()],
            types: vec![DataType::Int8, DataType::String],
            rows: vec![vec![Some(Value::Int8(-1)), None]],
        })))
    );
}

type SpbValueCell = Option<sparkplug_rs::payload::data_set::data_set_value::Value>;

#[test]
fn is_null_wins_and_a_missing_value_is_null() {
    let mut with_value = sparkplug_rs::payload::Metric::new();
    with_value.datatype = Some(DataType::Int32.code());
    with_value.is_null = Some(true);
    with_value.value = Some(SpbValue::IntValue(5));
    let mut without_value = sparkplug_rs::payload::Metric::new();
    without_value.datatype = Some(DataType::Int32.code());
    let mut payload = sparkplug_rs::Payload::new();
    payload.metrics = vec![with_value, without_value];
    let decoded = decode(&payload.write_to_bytes().unwrap_or_default());
    let nulls = decoded.map(|payload| {
        payload
            .metrics
            .iter()
            .map(Metric::is_null)
            .collect::<Vec<_>>()
    });
    assert_eq!(nulls, Ok(vec![true, true]));
}

#[test]
fn invalid_payloads_do_not_encode() {
    fn check(metric: Metric, expected: EncodeError) {
        assert_eq!(
            encode(&one_metric(metric.clone())),
            Err(expected),
            "{metric:?}"
        );
    }
    check(
        Metric {
            datatype: Some(DataType::Int16),
            value: Some(Value::Int8(1)),
            ..Metric::default()
        },
        EncodeError::DataTypeMismatch {
            declared: DataType::Int16,
            value: DataType::Int8,
        },
    );
    check(
        Metric::new("p", Value::PropertySet(PropertySet::default())),
        EncodeError::NotAllowed {
            datatype: DataType::PropertySet,
            context: "metric value",
        },
    );
    check(
        Metric::new(
            "s",
            Value::StringArray(vec!["ok".to_owned(), "a\0b".to_owned()]),
        ),
        EncodeError::StringArrayNul { index: 1 },
    );
    let property = |value: Value| {
        let mut metric = Metric::new("m", Value::Boolean(true));
        metric.properties = Some(PropertySet {
            properties: vec![(
                "k".to_owned(),
                PropertyValue {
                    datatype: Some(value.datatype()),
                    value: Some(value),
                },
            )],
        });
        metric
    };
    check(
        property(Value::Bytes(vec![1])),
        EncodeError::NotAllowed {
            datatype: DataType::Bytes,
            context: "property value",
        },
    );
    check(
        property(Value::DataSet(DataSet::default())),
        EncodeError::NotAllowed {
            datatype: DataType::DataSet,
            context: "property value",
        },
    );
    let data_set = |data_set: DataSet| Metric::new("d", Value::DataSet(data_set));
    check(
        data_set(DataSet {
            columns: vec!["a".to_owned()],
            types: vec![],
            rows: vec![],
        }),
        EncodeError::DataSetShape {
            n_columns: 1,
            n_types: 0,
        },
    );
    check(
        data_set(DataSet {
            columns: vec!["a".to_owned()],
            types: vec![DataType::Int32],
            rows: vec![vec![]],
        }),
        EncodeError::DataSetRow {
            row: 0,
            n_elements: 0,
            n_columns: 1,
        },
    );
    check(
        data_set(DataSet {
            columns: vec!["a".to_owned()],
            types: vec![DataType::Int32],
            rows: vec![vec![Some(Value::Int64(1))]],
        }),
        EncodeError::DataTypeMismatch {
            declared: DataType::Int32,
            value: DataType::Int64,
        },
    );
    check(
        data_set(DataSet {
            columns: vec!["a".to_owned()],
            types: vec![DataType::Int32Array],
            rows: vec![vec![Some(Value::Int32Array(vec![1]))]],
        }),
        EncodeError::NotAllowed {
            datatype: DataType::Int32Array,
            context: "DataSet cell",
        },
    );
}

#[test]
fn json_form() {
    fn check(value: Value, expected: serde_json::Value) {
        assert_eq!(value.to_json(), expected, "{value:?}");
    }
    check(Value::Int8(-128), json!(-128));
    check(Value::Int32(i32::MIN), json!(-2_147_483_648_i64));
    check(Value::Int64(i64::MIN), json!(i64::MIN));
    check(Value::UInt64(u64::MAX), json!(u64::MAX));
    check(Value::UInt32(u32::MAX), json!(4_294_967_295_u64));
    check(Value::Float(71.4), json!(71.4));
    check(Value::Float(0.1), json!(0.1));
    check(Value::Double(-0.25), json!(-0.25));
    check(Value::Float(f32::NAN), json!(null));
    check(Value::Double(f64::INFINITY), json!(null));
    check(Value::Boolean(true), json!(true));
    check(Value::String("a\"b".to_owned()), json!("a\"b"));
    check(Value::Text("t".to_owned()), json!("t"));
    check(Value::Uuid("u".to_owned()), json!("u"));
    check(
        Value::DateTime(1_741_068_000_123),
        json!(1_741_068_000_123_u64),
    );
    check(Value::Bytes(vec![0xFF, 0x00, 0x10]), json!("/wAQ"));
    check(Value::File(b"hi".to_vec()), json!("aGk="));
    check(Value::Int16Array(vec![-1, 2]), json!([-1, 2]));
    check(Value::UInt64Array(vec![u64::MAX]), json!([u64::MAX]));
    check(Value::FloatArray(vec![1.1, f32::NAN]), json!([1.1, null]));
    check(Value::BooleanArray(vec![true, false]), json!([true, false]));
    check(Value::StringArray(vec!["a".to_owned()]), json!(["a"]));
    check(Value::DateTimeArray(vec![5]), json!([5]));
    check(Value::Int8Array(vec![]), json!([]));
    check(Value::Untyped(RawValue::Long(u64::MAX)), json!(u64::MAX));
    check(Value::Untyped(RawValue::Bytes(vec![1])), json!("AQ=="));
    check(
        Value::DataSet(DataSet {
            columns: vec!["a".to_owned(), "b".to_owned()],
            types: vec![DataType::Int8, DataType::String],
            rows: vec![vec![Some(Value::Int8(1)), None]],
        }),
        json!({"columns": ["a", "b"], "types": ["Int8", "String"], "rows": [[1, null]]}),
    );
    check(
        Value::PropertySet(PropertySet {
            properties: vec![(
                "Quality".to_owned(),
                PropertyValue {
                    datatype: Some(DataType::Int32),
                    value: Some(Value::Int32(192)),
                },
            )],
        }),
        json!({"Quality": 192}),
    );
    check(
        Value::Template(Template {
            version: None,
            metrics: vec![
                Metric::new("rpm", Value::UInt16(1500)),
                Metric {
                    alias: Some(9),
                    value: Some(Value::Boolean(true)),
                    ..Metric::default()
                },
            ],
            parameters: vec![Parameter {
                name: Some("p".to_owned()),
                datatype: Some(DataType::String),
                value: Some(Value::String("x".to_owned())),
            }],
            template_ref: Some("Motor".to_owned()),
            is_definition: false,
        }),
        json!({
            "template_ref": "Motor",
            "version": null,
            "is_definition": false,
            "parameters": {"p": "x"},
            "metrics": {"rpm": 1500, "alias:9": true},
        }),
    );
}
