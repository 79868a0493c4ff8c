//! Sparkplug values in Rust terms: [`DataType`] (every Sparkplug 3.0 datatype with its numeric code),
//! [`Value`] (one typed value), the composite values ([`DataSet`], [`Template`], [`PropertySet`]) and the
//! JSON form the SCADA bridge publishes ([`Value::to_json`]).
//!
//! The rules that map a typed value to the protobuf fields and back live here too ([`Value::from_raw`]),
//! each with the specification requirement it follows.

use std::fmt;

use base64::Engine as _;
use serde_json::json;

use crate::error::{EncodeError, ValueError};
use crate::payload::Metric;

/// A Sparkplug datatype and its code on the wire (Sparkplug 3.0, "Data Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DataType {
    /// Placeholder; also what [`Value::Untyped`] reports.
    Unknown = 0,
    /// Signed 8-bit integer.
    Int8 = 1,
    /// Signed 16-bit integer.
    Int16 = 2,
    /// Signed 32-bit integer.
    Int32 = 3,
    /// Signed 64-bit integer.
    Int64 = 4,
    /// Unsigned 8-bit integer.
    UInt8 = 5,
    /// Unsigned 16-bit integer.
    UInt16 = 6,
    /// Unsigned 32-bit integer.
    UInt32 = 7,
    /// Unsigned 64-bit integer.
    UInt64 = 8,
    /// 32-bit IEEE 754 float.
    Float = 9,
    /// 64-bit IEEE 754 float.
    Double = 10,
    /// Boolean.
    Boolean = 11,
    /// UTF-8 string.
    String = 12,
    /// Milliseconds since the Unix epoch, UTC.
    DateTime = 13,
    /// UTF-8 text.
    Text = 14,
    /// A UUID as a UTF-8 string.
    Uuid = 15,
    /// A table, see [`DataSet`].
    DataSet = 16,
    /// Bytes.
    Bytes = 17,
    /// The bytes of a file (the file name travels in the metric's [`crate::MetaData`]).
    File = 18,
    /// A user-defined type, see [`Template`].
    Template = 19,
    /// A nested property set (property values only).
    PropertySet = 20,
    /// A list of property sets (property values only).
    PropertySetList = 21,
    /// Array of Int8.
    Int8Array = 22,
    /// Array of Int16.
    Int16Array = 23,
    /// Array of Int32.
    Int32Array = 24,
    /// Array of Int64.
    Int64Array = 25,
    /// Array of UInt8.
    UInt8Array = 26,
    /// Array of UInt16.
    UInt16Array = 27,
    /// Array of UInt32.
    UInt32Array = 28,
    /// Array of UInt64.
    UInt64Array = 29,
    /// Array of Float.
    FloatArray = 30,
    /// Array of Double.
    DoubleArray = 31,
    /// Array of Boolean.
    BooleanArray = 32,
    /// Array of String.
    StringArray = 33,
    /// Array of DateTime.
    DateTimeArray = 34,
}

/// Every datatype, in code order (index = code).
pub const ALL_DATATYPES: [DataType; 35] = [
    DataType::Unknown,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::UInt8,
    DataType::UInt16,
    DataType::UInt32,
    DataType::UInt64,
    DataType::Float,
    DataType::Double,
    DataType::Boolean,
    DataType::String,
    DataType::DateTime,
    DataType::Text,
    DataType::Uuid,
    DataType::DataSet,
    DataType::Bytes,
    DataType::File,
    DataType::Template,
    DataType::PropertySet,
    DataType::PropertySetList,
    DataType::Int8Array,
    DataType::Int16Array,
    DataType::Int32Array,
    DataType::Int64Array,
    DataType::UInt8Array,
    DataType::UInt16Array,
    DataType::UInt32Array,
    DataType::UInt64Array,
    DataType::FloatArray,
    DataType::DoubleArray,
    DataType::BooleanArray,
    DataType::StringArray,
    DataType::DateTimeArray,
];

impl DataType {
    /// The datatype with this wire code, or `None` for a code Sparkplug 3.0 does not define.
    pub fn from_code(code: u32) -> Option<DataType> {
        ALL_DATATYPES.get(usize::try_from(code).ok()?).copied()
    }

    /// The wire code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The name the specification uses, e.g. `"Int8"`, `"UUID"`, `"BooleanArray"`.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Unknown => "Unknown",
            DataType::Int8 => "Int8",
            DataType::Int16 => "Int16",
            DataType::Int32 => "Int32",
            DataType::Int64 => "Int64",
            DataType::UInt8 => "UInt8",
            DataType::UInt16 => "UInt16",
            DataType::UInt32 => "UInt32",
            DataType::UInt64 => "UInt64",
            DataType::Float => "Float",
            DataType::Double => "Double",
            DataType::Boolean => "Boolean",
            DataType::String => "String",
            DataType::DateTime => "DateTime",
            DataType::Text => "Text",
            DataType::Uuid => "UUID",
            DataType::DataSet => "DataSet",
            DataType::Bytes => "Bytes",
            DataType::File => "File",
            DataType::Template => "Template",
            DataType::PropertySet => "PropertySet",
            DataType::PropertySetList => "PropertySetList",
            DataType::Int8Array => "Int8Array",
            DataType::Int16Array => "Int16Array",
            DataType::Int32Array => "Int32Array",
            DataType::Int64Array => "Int64Array",
            DataType::UInt8Array => "UInt8Array",
            DataType::UInt16Array => "UInt16Array",
            DataType::UInt32Array => "UInt32Array",
            DataType::UInt64Array => "UInt64Array",
            DataType::FloatArray => "FloatArray",
            DataType::DoubleArray => "DoubleArray",
            DataType::BooleanArray => "BooleanArray",
            DataType::StringArray => "StringArray",
            DataType::DateTimeArray => "DateTimeArray",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One typed Sparkplug value. Null is not a `Value`: metrics, properties, parameters and DataSet cells hold
/// an `Option<Value>` and `None` is Sparkplug's explicit null (`is_null`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Int8.
    Int8(i8),
    /// Int16.
    Int16(i16),
    /// Int32.
    Int32(i32),
    /// Int64.
    Int64(i64),
    /// UInt8.
    UInt8(u8),
    /// UInt16.
    UInt16(u16),
    /// UInt32.
    UInt32(u32),
    /// UInt64.
    UInt64(u64),
    /// Float (NaN and infinities travel bit-exact; see [`Value::to_json`] for their JSON form).
    Float(f32),
    /// Double.
    Double(f64),
    /// Boolean.
    Boolean(bool),
    /// String.
    String(String),
    /// DateTime: milliseconds since the Unix epoch, UTC.
    DateTime(u64),
    /// Text.
    Text(String),
    /// UUID, as the string on the wire (not parsed, so any peer's spelling survives).
    Uuid(String),
    /// DataSet.
    DataSet(DataSet),
    /// Bytes.
    Bytes(Vec<u8>),
    /// File contents.
    File(Vec<u8>),
    /// Template definition or instance. Supported structurally (version, members, parameters, reference);
    /// the codec does not check members against their definition, which needs the NBIRTH (host logic).
    Template(Template),
    /// PropertySet: only valid as a property value.
    PropertySet(PropertySet),
    /// PropertySetList: only valid as a property value.
    PropertySetList(Vec<PropertySet>),
    /// Int8Array.
    Int8Array(Vec<i8>),
    /// Int16Array.
    Int16Array(Vec<i16>),
    /// Int32Array.
    Int32Array(Vec<i32>),
    /// Int64Array.
    Int64Array(Vec<i64>),
    /// UInt8Array.
    UInt8Array(Vec<u8>),
    /// UInt16Array.
    UInt16Array(Vec<u16>),
    /// UInt32Array.
    UInt32Array(Vec<u32>),
    /// UInt64Array.
    UInt64Array(Vec<u64>),
    /// FloatArray.
    FloatArray(Vec<f32>),
    /// DoubleArray.
    DoubleArray(Vec<f64>),
    /// BooleanArray.
    BooleanArray(Vec<bool>),
    /// StringArray (elements must not contain NUL).
    StringArray(Vec<String>),
    /// DateTimeArray: milliseconds since the Unix epoch, UTC.
    DateTimeArray(Vec<u64>),
    /// A value whose datatype is not in the message: NDATA/DDATA/NCMD/DCMD metrics usually omit it
    /// [tck-id-payloads-metric-datatype-not-req]. The host types it with [`Value::from_raw`] once the alias
    /// is resolved against the birth certificate.
    Untyped(RawValue),
}

/// A value as the protobuf carries it, before its datatype is known: which `oneof` field held it.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// `int_value` (uint32).
    Int(u32),
    /// `long_value` (uint64).
    Long(u64),
    /// `float_value`.
    Float(f32),
    /// `double_value`.
    Double(f64),
    /// `boolean_value`.
    Boolean(bool),
    /// `string_value`.
    String(String),
    /// `bytes_value` (metric values only).
    Bytes(Vec<u8>),
}

impl RawValue {
    /// The name of the protobuf field, for error messages.
    pub fn field_name(&self) -> &'static str {
        match self {
            RawValue::Int(_) => "int_value",
            RawValue::Long(_) => "long_value",
            RawValue::Float(_) => "float_value",
            RawValue::Double(_) => "double_value",
            RawValue::Boolean(_) => "boolean_value",
            RawValue::String(_) => "string_value",
            RawValue::Bytes(_) => "bytes_value",
        }
    }

    /// The JSON form: numbers, booleans and strings as themselves, bytes as standard base64.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            RawValue::Int(value) => json!(value),
            RawValue::Long(value) => json!(value),
            RawValue::Float(value) => float_json(*value),
            RawValue::Double(value) => double_json(*value),
            RawValue::Boolean(value) => json!(value),
            RawValue::String(value) => json!(value),
            RawValue::Bytes(value) => json!(base64_string(value)),
        }
    }
}

/// A table: named, typed columns and rows of cells (Sparkplug `DataSet`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataSet {
    /// Column names, one per column.
    pub columns: Vec<String>,
    /// Column datatypes, one per column; basic types only [tck-id-payloads-dataset-types-value].
    pub types: Vec<DataType>,
    /// Rows, each with one cell per column; `None` is a null cell.
    pub rows: Vec<Vec<Option<Value>>>,
}

/// A Sparkplug Template (user-defined type): a definition (`is_definition`, no `template_ref`) or an
/// instance (`template_ref` names the definition).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    /// Optional version string [tck-id-payloads-template-version].
    pub version: Option<String>,
    /// Member metrics.
    pub metrics: Vec<Metric>,
    /// Parameters (a definition's defaults or an instance's values).
    pub parameters: Vec<Parameter>,
    /// For an instance: the name of the definition metric. `None` for a definition.
    pub template_ref: Option<String>,
    /// `true` for a definition, `false` for an instance (absent on the wire decodes as `false`).
    pub is_definition: bool,
}

/// A Template parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parameter {
    /// The parameter name [tck-id-payloads-template-parameter-name-required].
    pub name: Option<String>,
    /// The parameter datatype (a basic type).
    pub datatype: Option<DataType>,
    /// The value (a scalar); `None` when absent.
    pub value: Option<Value>,
}

/// Custom key/value metadata of a metric (Sparkplug `PropertySet`), in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PropertySet {
    /// The properties as `(key, value)` pairs; keys and values stay paired by construction.
    pub properties: Vec<(String, PropertyValue)>,
}

/// One property value: its datatype and a scalar, a PropertySet or a PropertySetList.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PropertyValue {
    /// The datatype; required in births [tck-id-payloads-metric-propertyvalue-type-req].
    pub datatype: Option<DataType>,
    /// The value; `None` is null.
    pub value: Option<Value>,
}

impl PropertySet {
    /// The value of the first property named `key`.
    pub fn get(&self, key: &str) -> Option<&PropertyValue> {
        self.properties
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// The JSON form: an object of key → value JSON (null for a null value).
    pub fn to_json(&self) -> serde_json::Value {
        let object = self
            .properties
            .iter()
            .map(|(key, property)| (key.clone(), option_json(property.value.as_ref())))
            .collect::<serde_json::Map<_, _>>();
        serde_json::Value::Object(object)
    }
}

impl Value {
    /// The datatype of this value ([`DataType::Unknown`] for [`Value::Untyped`]).
    pub fn datatype(&self) -> DataType {
        match self {
            Value::Int8(_) => DataType::Int8,
            Value::Int16(_) => DataType::Int16,
            Value::Int32(_) => DataType::Int32,
            Value::Int64(_) => DataType::Int64,
            Value::UInt8(_) => DataType::UInt8,
            Value::UInt16(_) => DataType::UInt16,
            Value::UInt32(_) => DataType::UInt32,
            Value::UInt64(_) => DataType::UInt64,
            Value::Float(_) => DataType::Float,
            Value::Double(_) => DataType::Double,
            Value::Boolean(_) => DataType::Boolean,
            Value::String(_) => DataType::String,
            Value::DateTime(_) => DataType::DateTime,
            Value::Text(_) => DataType::Text,
            Value::Uuid(_) => DataType::Uuid,
            Value::DataSet(_) => DataType::DataSet,
            Value::Bytes(_) => DataType::Bytes,
            Value::File(_) => DataType::File,
            Value::Template(_) => DataType::Template,
            Value::PropertySet(_) => DataType::PropertySet,
            Value::PropertySetList(_) => DataType::PropertySetList,
            Value::Int8Array(_) => DataType::Int8Array,
            Value::Int16Array(_) => DataType::Int16Array,
            Value::Int32Array(_) => DataType::Int32Array,
            Value::Int64Array(_) => DataType::Int64Array,
            Value::UInt8Array(_) => DataType::UInt8Array,
            Value::UInt16Array(_) => DataType::UInt16Array,
            Value::UInt32Array(_) => DataType::UInt32Array,
            Value::UInt64Array(_) => DataType::UInt64Array,
            Value::FloatArray(_) => DataType::FloatArray,
            Value::DoubleArray(_) => DataType::DoubleArray,
            Value::BooleanArray(_) => DataType::BooleanArray,
            Value::StringArray(_) => DataType::StringArray,
            Value::DateTimeArray(_) => DataType::DateTimeArray,
            Value::Untyped(_) => DataType::Unknown,
        }
    }

    /// Reads a wire value as a value of `datatype`. This is how the decoder types every value, and how a
    /// host types a DATA metric's [`Value::Untyped`] once the alias tells it the datatype.
    ///
    /// Leniencies, each because real peers do it:
    /// - Any integer datatype accepts its value in either `int_value` or `long_value`.
    /// - A negative Int8/Int16 is accepted sign-extended to 32 bits (the spec form, e.g. -1 = 0xFFFFFFFF),
    ///   as the raw 8/16-bit pattern (-1 = 0xFF / 0xFFFF), or sign-extended to 64 bits in `long_value`.
    ///   Int32 likewise from 32 or 64 bits. So 0x80..=0xFF for Int8 always reads as negative.
    /// - An Int64 in `int_value` is read sign-extended from 32 bits; UInt64 and DateTime in `int_value` are
    ///   read zero-extended.
    ///
    /// Floats, booleans, strings and bytes must be in their own field. `DataType::Unknown` keeps the value
    /// [`Value::Untyped`]. DataSet, Template, PropertySet and PropertySetList never come as a raw value.
    pub fn from_raw(datatype: DataType, raw: RawValue) -> Result<Value, ValueError> {
        let wrong_field = |raw: &RawValue| ValueError::WrongValueField {
            datatype,
            found: raw.field_name(),
        };
        Ok(match datatype {
            DataType::Unknown => Value::Untyped(raw),
            DataType::Int8 => Value::Int8(signed(datatype, &raw, 8)? as i8),
            DataType::Int16 => Value::Int16(signed(datatype, &raw, 16)? as i16),
            DataType::Int32 => Value::Int32(signed(datatype, &raw, 32)? as i32),
            DataType::Int64 => Value::Int64(match raw {
                RawValue::Long(value) => value as i64,
                RawValue::Int(value) => i64::from(value as i32),
                other => return Err(wrong_field(&other)),
            }),
            DataType::UInt8 => Value::UInt8(unsigned(datatype, &raw, u64::from(u8::MAX))? as u8),
            DataType::UInt16 => {
                Value::UInt16(unsigned(datatype, &raw, u64::from(u16::MAX))? as u16)
            }
            DataType::UInt32 => {
                Value::UInt32(unsigned(datatype, &raw, u64::from(u32::MAX))? as u32)
            }
            DataType::UInt64 => Value::UInt64(unsigned(datatype, &raw, u64::MAX)?),
            DataType::DateTime => Value::DateTime(unsigned(datatype, &raw, u64::MAX)?),
            DataType::Float => match raw {
                RawValue::Float(value) => Value::Float(value),
                other => return Err(wrong_field(&other)),
            },
            DataType::Double => match raw {
                RawValue::Double(value) => Value::Double(value),
                other => return Err(wrong_field(&other)),
            },
            DataType::Boolean => match raw {
                RawValue::Boolean(value) => Value::Boolean(value),
                other => return Err(wrong_field(&other)),
            },
            DataType::String | DataType::Text | DataType::Uuid => match raw {
                RawValue::String(value) if datatype == DataType::String => Value::String(value),
                RawValue::String(value) if datatype == DataType::Text => Value::Text(value),
                RawValue::String(value) => Value::Uuid(value),
                other => return Err(wrong_field(&other)),
            },
            DataType::DataSet
            | DataType::Template
            | DataType::PropertySet
            | DataType::PropertySetList => return Err(wrong_field(&raw)),
            DataType::Bytes
            | DataType::File
            | DataType::Int8Array
            | DataType::Int16Array
            | DataType::Int32Array
            | DataType::Int64Array
            | DataType::UInt8Array
            | DataType::UInt16Array
            | DataType::UInt32Array
            | DataType::UInt64Array
            | DataType::FloatArray
            | DataType::DoubleArray
            | DataType::BooleanArray
            | DataType::StringArray
            | DataType::DateTimeArray => match raw {
                RawValue::Bytes(bytes) => unpack_bytes(datatype, bytes)?,
                other => return Err(wrong_field(&other)),
            },
        })
    }

    /// The JSON form the SCADA bridge publishes as a tag's `value`:
    /// - integers as JSON integers (u64 and i64 exact, no float rounding); DateTime as its ms integer;
    /// - Float/Double as JSON numbers; a Float is printed at its shortest round-trip decimal (71.4, not
    ///   71.4000015258789); NaN and ±infinity, which JSON cannot express, become `null`;
    /// - Boolean, String, Text and UUID as themselves; Bytes and File as standard base64 (RFC 4648, padded);
    /// - arrays as JSON arrays of the element form;
    /// - DataSet as `{"columns": [..], "types": [..], "rows": [[..]]}`;
    /// - Template as `{"template_ref", "version", "is_definition", "parameters": {name: value},
    ///   "metrics": {name: value}}` (a member without name is keyed `alias:N`);
    /// - PropertySet as an object of key → value, PropertySetList as an array of those;
    /// - an untyped value by its wire field (see [`RawValue::to_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int8(value) => json!(value),
            Value::Int16(value) => json!(value),
            Value::Int32(value) => json!(value),
            Value::Int64(value) => json!(value),
            Value::UInt8(value) => json!(value),
            Value::UInt16(value) => json!(value),
            Value::UInt32(value) => json!(value),
            Value::UInt64(value) | Value::DateTime(value) => json!(value),
            Value::Float(value) => float_json(*value),
            Value::Double(value) => double_json(*value),
            Value::Boolean(value) => json!(value),
            Value::String(value) | Value::Text(value) | Value::Uuid(value) => json!(value),
            Value::Bytes(bytes) | Value::File(bytes) => json!(base64_string(bytes)),
            Value::DataSet(data_set) => json!({
                "columns": data_set.columns,
                "types": data_set.types.iter().map(|datatype| datatype.name()).collect::<Vec<_>>(),
                "rows": data_set
                    .rows
                    .iter()
                    .map(|row| row.iter().map(|cell| option_json(cell.as_ref())).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
            }),
            Value::Template(template) => {
                let parameters = template
                    .parameters
                    .iter()
                    .map(|parameter| {
                        let name = parameter.name.clone().unwrap_or_default();
                        (name, option_json(parameter.value.as_ref()))
                    })
                    .collect::<serde_json::Map<_, _>>();
                let metrics = template
                    .metrics
                    .iter()
                    .map(|metric| {
                        let key = match (&metric.name, metric.alias) {
                            (Some(name), _) => name.clone(),
                            (None, Some(alias)) => format!("alias:{alias}"),
                            (None, None) => String::new(),
                        };
                        (key, option_json(metric.value.as_ref()))
                    })
                    .collect::<serde_json::Map<_, _>>();
                json!({
                    "template_ref": template.template_ref,
                    "version": template.version,
                    "is_definition": template.is_definition,
                    "parameters": parameters,
                    "metrics": metrics,
                })
            }
            Value::PropertySet(property_set) => property_set.to_json(),
            Value::PropertySetList(property_sets) => {
                serde_json::Value::Array(property_sets.iter().map(PropertySet::to_json).collect())
            }
            Value::Int8Array(values) => json!(values),
            Value::Int16Array(values) => json!(values),
            Value::Int32Array(values) => json!(values),
            Value::Int64Array(values) => json!(values),
            Value::UInt8Array(values) => json!(values),
            Value::UInt16Array(values) => json!(values),
            Value::UInt32Array(values) => json!(values),
            Value::UInt64Array(values) | Value::DateTimeArray(values) => json!(values),
            Value::FloatArray(values) => values.iter().map(|value| float_json(*value)).collect(),
            Value::DoubleArray(values) => values.iter().map(|value| double_json(*value)).collect(),
            Value::BooleanArray(values) => json!(values),
            Value::StringArray(values) => json!(values),
            Value::Untyped(raw) => raw.to_json(),
        }
    }
}

/// What a typed value becomes on the wire.
pub(crate) enum Encoded<'a> {
    /// One of the scalar `oneof` fields (arrays, bytes and files are `bytes_value`).
    Raw(RawValue),
    /// `dataset_value`.
    DataSet(&'a DataSet),
    /// `template_value`.
    Template(&'a Template),
    /// `propertyset_value`.
    PropertySet(&'a PropertySet),
    /// `propertysets_value`.
    PropertySetList(&'a [PropertySet]),
}

impl Value {
    /// The wire form of this value. Integer rules, from the datatype table of the spec and the Eclipse
    /// Tahu reference encoder (which the TCK uses):
    /// - Int8/Int16/Int32 go in `int_value` (uint32) sign-extended to 32 bits, so Int8 -1 is 0xFFFFFFFF
    ///   (Tahu `setIntValue(byte)` widens with sign).
    /// - UInt8/UInt16 go in `int_value`.
    /// - UInt32, Int64 (two's complement), UInt64 and DateTime go in `long_value`. For UInt32 the spec's
    ///   datatype table names uint32, but Tahu and the UNS design put it in `long_value`; decoders accept
    ///   both (see [`Value::from_raw`]).
    pub(crate) fn encode(&self) -> Result<Encoded<'_>, EncodeError> {
        let raw = match self {
            Value::Int8(value) => RawValue::Int(i32::from(*value) as u32),
            Value::Int16(value) => RawValue::Int(i32::from(*value) as u32),
            Value::Int32(value) => RawValue::Int(*value as u32),
            Value::Int64(value) => RawValue::Long(*value as u64),
            Value::UInt8(value) => RawValue::Int(u32::from(*value)),
            Value::UInt16(value) => RawValue::Int(u32::from(*value)),
            Value::UInt32(value) => RawValue::Long(u64::from(*value)),
            Value::UInt64(value) | Value::DateTime(value) => RawValue::Long(*value),
            Value::Float(value) => RawValue::Float(*value),
            Value::Double(value) => RawValue::Double(*value),
            Value::Boolean(value) => RawValue::Boolean(*value),
            Value::String(value) | Value::Text(value) | Value::Uuid(value) => {
                RawValue::String(value.clone())
            }
            Value::Bytes(bytes) | Value::File(bytes) => RawValue::Bytes(bytes.clone()),
            Value::DataSet(data_set) => return Ok(Encoded::DataSet(data_set)),
            Value::Template(template) => return Ok(Encoded::Template(template)),
            Value::PropertySet(property_set) => return Ok(Encoded::PropertySet(property_set)),
            Value::PropertySetList(property_sets) => {
                return Ok(Encoded::PropertySetList(property_sets));
            }
            Value::Int8Array(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::Int16Array(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::Int32Array(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::Int64Array(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::UInt8Array(values) => RawValue::Bytes(values.clone()),
            Value::UInt16Array(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::UInt32Array(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::UInt64Array(values) | Value::DateTimeArray(values) => {
                RawValue::Bytes(pack(values, |v| v.to_le_bytes()))
            }
            Value::FloatArray(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::DoubleArray(values) => RawValue::Bytes(pack(values, |v| v.to_le_bytes())),
            Value::BooleanArray(values) => RawValue::Bytes(pack_booleans(values)?),
            Value::StringArray(values) => RawValue::Bytes(pack_strings(values)?),
            Value::Untyped(raw) => raw.clone(),
        };
        Ok(Encoded::Raw(raw))
    }
}

/// A signed integer of `bits` bits from either integer field, accepting the sign-extended (32 or 64 bit)
/// and the raw `bits`-wide two's complement forms.
fn signed(datatype: DataType, raw: &RawValue, bits: u32) -> Result<i64, ValueError> {
    let value = match raw {
        RawValue::Int(value) => u64::from(*value),
        RawValue::Long(value) => *value,
        other => {
            return Err(ValueError::WrongValueField {
                datatype,
                found: other.field_name(),
            });
        }
    };
    let min = -(1i64 << (bits - 1));
    let max = (1i64 << (bits - 1)) - 1;
    // The raw two's complement pattern of the declared width (for Int32 in int_value this is also the
    // sign-extended form).
    if bits < 64 && value < (1u64 << bits) {
        let shift = 64 - bits;
        return Ok(((value << shift) as i64) >> shift);
    }
    // Sign-extended to 32 bits (the spec form, in either field) or to 64 bits (in long_value).
    let extended = if value <= u64::from(u32::MAX) {
        i64::from(value as u32 as i32)
    } else {
        value as i64
    };
    if (min..=max).contains(&extended) {
        Ok(extended)
    } else {
        Err(ValueError::OutOfRange { datatype, value })
    }
}

/// An unsigned integer up to `max` from either integer field.
fn unsigned(datatype: DataType, raw: &RawValue, max: u64) -> Result<u64, ValueError> {
    let value = match raw {
        RawValue::Int(value) => u64::from(*value),
        RawValue::Long(value) => *value,
        other => {
            return Err(ValueError::WrongValueField {
                datatype,
                found: other.field_name(),
            });
        }
    };
    if value <= max {
        Ok(value)
    } else {
        Err(ValueError::OutOfRange { datatype, value })
    }
}

/// Arrays are "little-endian packed byte arrays" in `bytes_value` (spec "Datatype Details", Array Types).
/// Note: the spec's FloatArray and DoubleArray examples print the bytes big-endian; the normative text and
/// the Tahu reference encoder (`ByteOrder.LITTLE_ENDIAN`) are little-endian, which we follow.
fn pack<T, const N: usize>(values: &[T], to_bytes: impl Fn(&T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(to_bytes).collect()
}

fn unpack<T, const N: usize>(
    datatype: DataType,
    bytes: &[u8],
    from_bytes: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, ValueError> {
    if !bytes.len().is_multiple_of(N) {
        return Err(ValueError::ArrayLength {
            datatype,
            n_bytes: bytes.len(),
            element_size: N,
        });
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut array = [0u8; N];
            array.copy_from_slice(chunk);
            from_bytes(array)
        })
        .collect())
}

/// BooleanArray: a 4-byte little-endian count of booleans, then the booleans bit-packed, most significant
/// bit first within each byte, the last byte padded (spec "Datatype Details", BooleanArray: the example
/// [false, false, true, true, false, true, false, false, ...] packs to 0x34, i.e. element 0 is bit 7; the
/// Tahu encoder sets `128 >> bit`). Padding bits are written as 0.
fn pack_booleans(values: &[bool]) -> Result<Vec<u8>, EncodeError> {
    let count = u32::try_from(values.len())
        .map_err(|_| EncodeError::BooleanArrayTooLong { len: values.len() })?;
    let mut bytes = count.to_le_bytes().to_vec();
    for chunk in values.chunks(8) {
        let byte = chunk
            .iter()
            .enumerate()
            .fold(0u8, |byte, (bit_idx, &value)| {
                if value {
                    byte | (0x80 >> bit_idx)
                } else {
                    byte
                }
            });
        bytes.push(byte);
    }
    Ok(bytes)
}

/// The inverse of [`pack_booleans`]; the byte length must be exactly 4 + ceil(count / 8), so an oversize
/// count is an error before anything is allocated.
fn unpack_booleans(bytes: &[u8]) -> Result<Vec<bool>, ValueError> {
    let Some((count_bytes, packed)) = bytes.split_first_chunk::<4>() else {
        return Err(ValueError::BooleanArrayLength {
            count: None,
            n_bytes: bytes.len(),
        });
    };
    let count = u32::from_le_bytes(*count_bytes);
    if packed.len() as u64 != u64::from(count).div_ceil(8) {
        return Err(ValueError::BooleanArrayLength {
            count: Some(count),
            n_bytes: bytes.len(),
        });
    }
    // `count` fits in `packed`, which is in memory, so it fits in usize.
    let n_values = count as usize;
    Ok((0..n_values)
        .map(|value_idx| packed[value_idx / 8] & (0x80 >> (value_idx % 8)) != 0)
        .collect())
}

/// StringArray: each element's UTF-8 bytes followed by a NUL (spec "Datatype Details", StringArray).
fn pack_strings(values: &[String]) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = Vec::with_capacity(values.iter().map(|value| value.len() + 1).sum());
    for (index, value) in values.iter().enumerate() {
        if value.contains('\0') {
            return Err(EncodeError::StringArrayNul { index });
        }
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    Ok(bytes)
}

/// The inverse of [`pack_strings`]. Leniency: a last element without its NUL terminator is accepted.
fn unpack_strings(bytes: &[u8]) -> Result<Vec<String>, ValueError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    body.split(|&byte| byte == 0)
        .enumerate()
        .map(|(index, element)| {
            String::from_utf8(element.to_vec()).map_err(|_| ValueError::InvalidUtf8 { index })
        })
        .collect()
}

fn unpack_bytes(datatype: DataType, bytes: Vec<u8>) -> Result<Value, ValueError> {
    Ok(match datatype {
        DataType::Bytes => Value::Bytes(bytes),
        DataType::File => Value::File(bytes),
        DataType::Int8Array => Value::Int8Array(unpack(datatype, &bytes, i8::from_le_bytes)?),
        DataType::Int16Array => Value::Int16Array(unpack(datatype, &bytes, i16::from_le_bytes)?),
        DataType::Int32Array => Value::Int32Array(unpack(datatype, &bytes, i32::from_le_bytes)?),
        DataType::Int64Array => Value::Int64Array(unpack(datatype, &bytes, i64::from_le_bytes)?),
        DataType::UInt8Array => Value::UInt8Array(bytes),
        DataType::UInt16Array => Value::UInt16Array(unpack(datatype, &bytes, u16::from_le_bytes)?),
        DataType::UInt32Array => Value::UInt32Array(unpack(datatype, &bytes, u32::from_le_bytes)?),
        DataType::UInt64Array => Value::UInt64Array(unpack(datatype, &bytes, u64::from_le_bytes)?),
        DataType::FloatArray => Value::FloatArray(unpack(datatype, &bytes, f32::from_le_bytes)?),
        DataType::DoubleArray => Value::DoubleArray(unpack(datatype, &bytes, f64::from_le_bytes)?),
        DataType::BooleanArray => Value::BooleanArray(unpack_booleans(&bytes)?),
        DataType::StringArray => Value::StringArray(unpack_strings(&bytes)?),
        // DateTime values are "8-byte value[s] representing the number of milliseconds since epoch".
        DataType::DateTimeArray => {
            Value::DateTimeArray(unpack(datatype, &bytes, u64::from_le_bytes)?)
        }
        _ => {
            return Err(ValueError::WrongValueField {
                datatype,
                found: "bytes_value",
            });
        }
    })
}

fn option_json(value: Option<&Value>) -> serde_json::Value {
    value.map_or(serde_json::Value::Null, Value::to_json)
}

/// A Float at its shortest decimal form: `f32` `Display` prints the shortest string that reads back as
/// the same f32, and that string read as f64 is what a reader of the JSON expects.
fn float_json(value: f32) -> serde_json::Value {
    let shortest: f64 = value.to_string().parse().unwrap_or(f64::from(value));
    double_json(shortest)
}

fn double_json(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn base64_string(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
