//! Property tests: the decoder never panics on any bytes, and every valid payload round-trips.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use uns_sparkplug::value::ALL_DATATYPES;
use uns_sparkplug::{
    DataSet, DataType, MetaData, Metric, Payload, PropertySet, PropertyValue, RawValue, Value,
    decode, encode,
};

fn float() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN != NaN; NaN has its own test", |value| !value.is_nan())
}

fn double() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN != NaN; NaN has its own test", |value| !value.is_nan())
}

/// Strings without NUL (a StringArray element cannot hold one).
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

/// Scalars: what DataSet cells, parameters and properties can hold.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i8>().prop_map(Value::Int8),
        any::<i16>().prop_map(Value::Int16),
        any::<i32>().prop_map(Value::Int32),
        any::<i64>().prop_map(Value::Int64),
        any::<u8>().prop_map(Value::UInt8),
        any::<u16>().prop_map(Value::UInt16),
        any::<u32>().prop_map(Value::UInt32),
        any::<u64>().prop_map(Value::UInt64),
        float().prop_map(Value::Float),
        double().prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        any::<String>().prop_map(Value::String),
        any::<u64>().prop_map(Value::DateTime),
        any::<String>().prop_map(Value::Text),
        any::<String>().prop_map(Value::Uuid),
    ]
}

fn array() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<Vec<u8>>().prop_map(Value::Bytes),
        any::<Vec<u8>>().prop_map(Value::File),
        any::<Vec<i8>>().prop_map(Value::Int8Array),
        any::<Vec<i16>>().prop_map(Value::Int16Array),
        any::<Vec<i32>>().prop_map(Value::Int32Array),
        any::<Vec<i64>>().prop_map(Value::Int64Array),
        any::<Vec<u8>>().prop_map(Value::UInt8Array),
        any::<Vec<u16>>().prop_map(Value::UInt16Array),
        any::<Vec<u32>>().prop_map(Value::UInt32Array),
        any::<Vec<u64>>().prop_map(Value::UInt64Array),
        vec(float(), 0..8).prop_map(Value::FloatArray),
        vec(double(), 0..8).prop_map(Value::DoubleArray),
        any::<Vec<bool>>().prop_map(Value::BooleanArray),
        vec(text(), 0..5).prop_map(Value::StringArray),
        any::<Vec<u64>>().prop_map(Value::DateTimeArray),
    ]
}

/// A DataSet whose cells match their column types, some null.
fn data_set() -> impl Strategy<Value = Value> {
    vec((text(), scalar()), 0..4).prop_flat_map(|columns| {
        let types: Vec<DataType> = columns.iter().map(|(_, value)| value.datatype()).collect();
        let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
        let samples: Vec<Value> = columns.into_iter().map(|(_, value)| value).collect();
        let row = samples
            .into_iter()
            .map(|value| option::of(Just(value)))
            .collect::<Vec<_>>();
        vec(row, 0..3).prop_map(move |rows| {
            Value::DataSet(DataSet {
                columns: names.clone(),
                types: types.clone(),
                rows,
            })
        })
    })
}

fn properties() -> impl Strategy<Value = PropertySet> {
    vec((text(), option::of(scalar()), any::<bool>()), 0..3).prop_map(|entries| PropertySet {
        properties: entries
            .into_iter()
            .map(|(key, value, null_with_type)| {
                let datatype = match &value {
                    Some(value) => Some(value.datatype()),
                    None => null_with_type.then_some(DataType::String),
                };
                (key, PropertyValue { datatype, value })
            })
            .collect(),
    })
}

fn raw() -> impl Strategy<Value = RawValue> {
    prop_oneof![
        any::<u32>().prop_map(RawValue::Int),
        any::<u64>().prop_map(RawValue::Long),
        float().prop_map(RawValue::Float),
        double().prop_map(RawValue::Double),
        any::<bool>().prop_map(RawValue::Boolean),
        any::<String>().prop_map(RawValue::String),
        any::<Vec<u8>>().prop_map(RawValue::Bytes),
    ]
}

fn metric() -> impl Strategy<Value = Metric> {
    let typed = prop_oneof![scalar(), array(), data_set()]
        .prop_map(|value| (Some(value.datatype()), Some(value)));
    let untyped = raw().prop_map(|raw| (None, Some(Value::Untyped(raw))));
    let null = prop::sample::select(&ALL_DATATYPES[..]).prop_map(|datatype| (Some(datatype), None));
    (
        option::of(any::<String>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        any::<(bool, bool)>(),
        option::of(option::of(text()).prop_map(|file_name| MetaData {
            file_name,
            ..MetaData::default()
        })),
        option::of(properties()),
        prop_oneof![4 => typed, 2 => untyped, 1 => null],
    )
        .prop_map(
            |(
                name,
                alias,
                timestamp,
                (is_historical, is_transient),
                metadata,
                properties,
                (datatype, value),
            )| {
                Metric {
                    name,
                    alias,
                    timestamp,
                    datatype,
                    is_historical,
                    is_transient,
                    metadata,
                    properties,
                    value,
                }
            },
        )
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        option::of(any::<u64>()),
        option::of(0u64..=255),
        vec(metric(), 0..6),
        option::of(any::<String>()),
        option::of(any::<Vec<u8>>()),
    )
        .prop_map(|(timestamp, seq, metrics, uuid, body)| Payload {
            timestamp,
            seq,
            metrics,
            uuid,
            body,
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in any::<Vec<u8>>()) {
        let _ = decode(&bytes);
    }

    #[test]
    fn random_bytes_never_panic_value_typing(bytes in any::<Vec<u8>>(), code in 0u32..35) {
        let datatype = DataType::from_code(code).unwrap_or(DataType::Unknown);
        let _ = Value::from_raw(datatype, RawValue::Bytes(bytes));
    }

    #[test]
    fn mutated_valid_payloads_never_panic_the_decoder(
        payload in payload(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&payload).map_err(|error| TestCaseError::fail(error.to_string()))?;
        if !bytes.is_empty() {
            for (index, byte) in flips {
                let position = index.index(bytes.len());
                bytes[position] ^= byte;
            }
        }
        let _ = decode(&bytes);
    }

    #[test]
    fn valid_payloads_round_trip(payload in payload()) {
        let bytes = encode(&payload).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let decoded = decode(&bytes).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&decoded, &payload);
        // And encoding is deterministic: the decoded payload encodes to the same bytes.
        prop_assert_eq!(encode(&decoded).ok(), Some(bytes));
    }
}
