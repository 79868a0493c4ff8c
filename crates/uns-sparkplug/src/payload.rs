//! The Sparkplug B payload in Rust terms ([`Payload`], [`Metric`], [`MetaData`]) and the codec between
//! it and protobuf bytes: [`encode`] and [`decode`].
//!
//! Decoding never panics: any byte string gives a payload or a typed [`DecodeError`]. It is lenient where
//! real peers deviate (documented on [`Value::from_raw`] and below); encoding follows the specification.

use prost::Message as _;

use crate::error::{DecodeError, EncodeError, ValueError};
use crate::pb;
use crate::value::{
    DataSet, DataType, Encoded, Parameter, PropertySet, PropertyValue, RawValue, Template, Value,
};

/// A Sparkplug B payload: the body of every NBIRTH/NDATA/NDEATH/NCMD/DBIRTH/DDATA/DDEATH/DCMD message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payload {
    /// Publish time, ms since the Unix epoch, UTC [tck-id-payloads-timestamp-in-UTC].
    pub timestamp: Option<u64>,
    /// Sequence number 0..=255; present in every message except NDEATH
    /// [tck-id-payloads-sequence-num-always-included]. Not range-checked here: session logic owns it.
    pub seq: Option<u64>,
    /// The metrics, in message order.
    pub metrics: Vec<Metric>,
    /// Identifies the schema or encoding of `body`.
    pub uuid: Option<String>,
    /// Custom binary data outside the metric model.
    pub body: Option<Vec<u8>>,
}

/// One metric (a tag): name and/or alias, timestamp, datatype, flags, metadata, properties and value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metric {
    /// Name; required in births, omitted in DATA/CMD when aliases are used
    /// [tck-id-payloads-name-requirement], [tck-id-payloads-alias-data-cmd-requirement].
    pub name: Option<String>,
    /// Alias, unique per edge node, bound to the name in the birth [tck-id-payloads-alias-uniqueness].
    pub alias: Option<u64>,
    /// Acquisition time, ms since the Unix epoch, UTC [tck-id-payloads-name-birth-data-requirement].
    pub timestamp: Option<u64>,
    /// The datatype as written on the wire. `Some` in births [tck-id-payloads-metric-datatype-req];
    /// usually `None` in DATA/CMD [tck-id-payloads-metric-datatype-not-req], and then `value` is
    /// [`Value::Untyped`] (or a DataSet/Template, which identify themselves).
    pub datatype: Option<DataType>,
    /// Historical value: must not overwrite the current value.
    pub is_historical: bool,
    /// Transient value: not to be historized.
    pub is_transient: bool,
    /// Metadata (file name, content type, multi-part sequence, ...).
    pub metadata: Option<MetaData>,
    /// Custom properties, e.g. `Quality` (Int32 0 bad / 192 good / 500 stale).
    pub properties: Option<PropertySet>,
    /// The value. `None` is Sparkplug null: encoded as `is_null = true` with no value. Decoding gives
    /// `None` when `is_null` is true (even if a value is also present) and, leniently, when the message
    /// has neither `is_null` nor a value.
    pub value: Option<Value>,
}

/// Metric metadata (Sparkplug `MetaData`), mostly for Bytes and File values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetaData {
    /// Whether this metric is one part of a multi-part message.
    pub is_multi_part: Option<bool>,
    /// Content (media) type.
    pub content_type: Option<String>,
    /// Size of the value, e.g. the file size.
    pub size: Option<u64>,
    /// Sequence number of this part of a multi-part message.
    pub seq: Option<u64>,
    /// File name of a File value.
    pub file_name: Option<String>,
    /// File type of a File value (xml, json, ...).
    pub file_type: Option<String>,
    /// MD5 sum of the data.
    pub md5: Option<String>,
    /// Free-form description.
    pub description: Option<String>,
}

impl Metric {
    /// A birth-style metric: name, datatype from the value, and the value.
    pub fn new(name: impl Into<String>, value: Value) -> Metric {
        Metric {
            name: Some(name.into()),
            datatype: Some(value.datatype()),
            value: Some(value),
            ..Metric::default()
        }
    }

    /// Whether the value is Sparkplug null.
    pub fn is_null(&self) -> bool {
        self.value.is_none()
    }

    /// The name, or `alias N`, or `?`: how errors and logs name this metric.
    pub fn label(&self) -> String {
        match (&self.name, self.alias) {
            (Some(name), _) => name.clone(),
            (None, Some(alias)) => format!("alias {alias}"),
            (None, None) => "?".to_owned(),
        }
    }
}

/// Encodes a payload to Sparkplug B protobuf bytes.
///
/// Fails when the payload has no valid Sparkplug encoding: a declared datatype that differs from the value's,
/// a value kind that has no field in its position (a PropertySet as a metric value, Bytes as a property),
/// a StringArray element with NUL, or a DataSet whose rows do not match its columns.
pub fn encode(payload: &Payload) -> Result<Vec<u8>, EncodeError> {
    let message = pb::Payload {
        timestamp: payload.timestamp,
        metrics: payload
            .metrics
            .iter()
            .map(metric_to_pb)
            .collect::<Result<_, _>>()?,
        seq: payload.seq,
        uuid: payload.uuid.clone(),
        body: payload.body.clone(),
    };
    Ok(message.encode_to_vec())
}

/// Decodes Sparkplug B protobuf bytes. Never panics; see [`DecodeError`] for what can be wrong.
pub fn decode(bytes: &[u8]) -> Result<Payload, DecodeError> {
    let message = pb::Payload::decode(bytes).map_err(|error| DecodeError::Protobuf {
        reason: error.to_string(),
    })?;
    let metrics = message
        .metrics
        .into_iter()
        .enumerate()
        .map(|(index, metric)| {
            let label = match (&metric.name, metric.alias) {
                (Some(name), _) => name.clone(),
                (None, Some(alias)) => format!("alias {alias}"),
                (None, None) => "?".to_owned(),
            };
            metric_from_pb(metric).map_err(|source| DecodeError::Metric {
                index,
                label,
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Payload {
        timestamp: message.timestamp,
        seq: message.seq,
        metrics,
        uuid: message.uuid,
        body: message.body,
    })
}

// ---- decoding -------------------------------------------------------------------------------------------

/// Generates the `RawValue` ↔ oneof conversions for one protobuf `oneof value` (the four copies in the
/// schema share field names but are distinct Rust types).
macro_rules! scalar_oneof {
    ($to_raw:ident, $from_raw:ident, $oneof:path) => {
        /// The scalar variants as a `RawValue`; any other variant (an extension) comes back as `Err`.
        fn $to_raw(value: $oneof) -> Result<RawValue, $oneof> {
            use $oneof as V;
            Ok(match value {
                V::IntValue(value) => RawValue::Int(value),
                V::LongValue(value) => RawValue::Long(value),
                V::FloatValue(value) => RawValue::Float(value),
                V::DoubleValue(value) => RawValue::Double(value),
                V::BooleanValue(value) => RawValue::Boolean(value),
                V::StringValue(value) => RawValue::String(value),
                other => return Err(other),
            })
        }

        /// A `RawValue` as the oneof; `None` for bytes, which this oneof cannot carry.
        fn $from_raw(raw: RawValue) -> Option<$oneof> {
            use $oneof as V;
            Some(match raw {
                RawValue::Int(value) => V::IntValue(value),
                RawValue::Long(value) => V::LongValue(value),
                RawValue::Float(value) => V::FloatValue(value),
                RawValue::Double(value) => V::DoubleValue(value),
                RawValue::Boolean(value) => V::BooleanValue(value),
                RawValue::String(value) => V::StringValue(value),
                RawValue::Bytes(_) => return None,
            })
        }
    };
}

scalar_oneof!(
    raw_from_parameter,
    parameter_from_raw,
    pb::payload::template::parameter::Value
);
scalar_oneof!(
    raw_from_cell,
    cell_from_raw,
    pb::payload::data_set::data_set_value::Value
);
scalar_oneof!(
    raw_from_property,
    property_from_raw,
    pb::payload::property_value::Value
);

fn datatype_from_code(code: Option<u32>) -> Result<Option<DataType>, ValueError> {
    code.map(|code| DataType::from_code(code).ok_or(ValueError::UnknownDataType { code }))
        .transpose()
}

/// Types a raw value when the datatype is known; keeps it untyped otherwise.
fn typed(datatype: Option<DataType>, raw: RawValue) -> Result<Value, ValueError> {
    match datatype {
        Some(datatype) => Value::from_raw(datatype, raw),
        None => Ok(Value::Untyped(raw)),
    }
}

/// Checks that a self-describing composite value (DataSet, Template, PropertySet, PropertySetList) agrees
/// with the declared datatype, if any.
fn expect_composite(
    declared: Option<DataType>,
    actual: DataType,
    field: &'static str,
) -> Result<(), ValueError> {
    match declared {
        None | Some(DataType::Unknown) => Ok(()),
        Some(datatype) if datatype == actual => Ok(()),
        Some(datatype) => Err(ValueError::WrongValueField {
            datatype,
            found: field,
        }),
    }
}

fn nested(path: String) -> impl FnOnce(ValueError) -> ValueError {
    move |source| ValueError::Nested {
        path,
        source: Box::new(source),
    }
}

fn metric_from_pb(metric: pb::payload::Metric) -> Result<Metric, ValueError> {
    use pb::payload::metric::Value as V;
    let datatype = datatype_from_code(metric.datatype)?;
    let properties = metric
        .properties
        .map(|properties| property_set_from_pb(properties).map_err(nested("properties".to_owned())))
        .transpose()?;
    let value = match metric.value {
        // is_null wins over a value that is present anyway.
        _ if metric.is_null == Some(true) => None,
        None => None,
        Some(V::DatasetValue(data_set)) => {
            expect_composite(datatype, DataType::DataSet, "dataset_value")?;
            Some(Value::DataSet(data_set_from_pb(data_set)?))
        }
        Some(V::TemplateValue(template)) => {
            expect_composite(datatype, DataType::Template, "template_value")?;
            Some(Value::Template(template_from_pb(template)?))
        }
        Some(V::ExtensionValue(_)) => {
            return Err(ValueError::WrongValueField {
                datatype: datatype.unwrap_or(DataType::Unknown),
                found: "extension_value",
            });
        }
        Some(V::BytesValue(bytes)) => Some(typed(datatype, RawValue::Bytes(bytes))?),
        Some(V::IntValue(value)) => Some(typed(datatype, RawValue::Int(value))?),
        Some(V::LongValue(value)) => Some(typed(datatype, RawValue::Long(value))?),
        Some(V::FloatValue(value)) => Some(typed(datatype, RawValue::Float(value))?),
        Some(V::DoubleValue(value)) => Some(typed(datatype, RawValue::Double(value))?),
        Some(V::BooleanValue(value)) => Some(typed(datatype, RawValue::Boolean(value))?),
        Some(V::StringValue(value)) => Some(typed(datatype, RawValue::String(value))?),
    };
    Ok(Metric {
        name: metric.name,
        alias: metric.alias,
        timestamp: metric.timestamp,
        datatype,
        is_historical: metric.is_historical.unwrap_or(false),
        is_transient: metric.is_transient.unwrap_or(false),
        metadata: metric.metadata.map(meta_data_from_pb),
        properties,
        value,
    })
}

fn meta_data_from_pb(meta_data: pb::payload::MetaData) -> MetaData {
    MetaData {
        is_multi_part: meta_data.is_multi_part,
        content_type: meta_data.content_type,
        size: meta_data.size,
        seq: meta_data.seq,
        file_name: meta_data.file_name,
        file_type: meta_data.file_type,
        md5: meta_data.md5,
        description: meta_data.description,
    }
}

fn property_set_from_pb(property_set: pb::payload::PropertySet) -> Result<PropertySet, ValueError> {
    // [tck-id-payloads-propertyset-keys-array-size] [tck-id-payloads-propertyset-values-array-size]
    if property_set.keys.len() != property_set.values.len() {
        return Err(ValueError::PropertySetLength {
            n_keys: property_set.keys.len(),
            n_values: property_set.values.len(),
        });
    }
    let properties = property_set
        .keys
        .into_iter()
        .zip(property_set.values)
        .map(|(key, value)| {
            let property = property_value_from_pb(value).map_err(nested(format!("[{key:?}]")))?;
            Ok((key, property))
        })
        .collect::<Result<_, ValueError>>()?;
    Ok(PropertySet { properties })
}

fn property_value_from_pb(
    property: pb::payload::PropertyValue,
) -> Result<PropertyValue, ValueError> {
    use pb::payload::property_value::Value as V;
    let datatype = datatype_from_code(property.r#type)?;
    let value = match property.value {
        _ if property.is_null == Some(true) => None,
        None => None,
        Some(V::PropertysetValue(property_set)) => {
            expect_composite(datatype, DataType::PropertySet, "propertyset_value")?;
            Some(Value::PropertySet(property_set_from_pb(property_set)?))
        }
        Some(V::PropertysetsValue(list)) => {
            expect_composite(datatype, DataType::PropertySetList, "propertysets_value")?;
            let property_sets = list
                .propertyset
                .into_iter()
                .enumerate()
                .map(|(set_idx, set)| {
                    property_set_from_pb(set).map_err(nested(format!("[{set_idx}]")))
                })
                .collect::<Result<_, _>>()?;
            Some(Value::PropertySetList(property_sets))
        }
        Some(scalar) => match raw_from_property(scalar) {
            Ok(raw) => Some(typed(datatype, raw)?),
            Err(_) => {
                return Err(ValueError::WrongValueField {
                    datatype: datatype.unwrap_or(DataType::Unknown),
                    found: "extension_value",
                });
            }
        },
    };
    Ok(PropertyValue { datatype, value })
}

fn data_set_from_pb(data_set: pb::payload::DataSet) -> Result<DataSet, ValueError> {
    let types = data_set
        .types
        .iter()
        .map(|&code| DataType::from_code(code).ok_or(ValueError::UnknownDataType { code }))
        .collect::<Result<Vec<_>, _>>()?;
    let n_columns = types.len();
    // [tck-id-payloads-dataset-column-size] [tck-id-payloads-dataset-column-num-headers]
    // [tck-id-payloads-dataset-types-num]
    let num_matches = data_set
        .num_of_columns
        .is_none_or(|num| u64::try_from(n_columns).is_ok_and(|n| n == num));
    if !num_matches || data_set.columns.len() != n_columns {
        return Err(ValueError::DataSetShape {
            num_of_columns: data_set.num_of_columns,
            n_columns: data_set.columns.len(),
            n_types: n_columns,
        });
    }
    let rows = data_set
        .rows
        .into_iter()
        .enumerate()
        .map(|(row_idx, row)| {
            if row.elements.len() != n_columns {
                return Err(ValueError::DataSetRow {
                    row: row_idx,
                    n_elements: row.elements.len(),
                    n_columns,
                });
            }
            row.elements
                .into_iter()
                .zip(&types)
                .enumerate()
                .map(|(column_idx, (element, &datatype))| {
                    let path = || format!("rows[{row_idx}][{column_idx}]");
                    match element.value {
                        None => Ok(None),
                        Some(value) => match raw_from_cell(value) {
                            Ok(raw) => Value::from_raw(datatype, raw)
                                .map(Some)
                                .map_err(nested(path())),
                            Err(_) => Err(nested(path())(ValueError::WrongValueField {
                                datatype,
                                found: "extension_value",
                            })),
                        },
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    Ok(DataSet {
        columns: data_set.columns,
        types,
        rows,
    })
}

fn template_from_pb(template: pb::payload::Template) -> Result<Template, ValueError> {
    let metrics = template
        .metrics
        .into_iter()
        .enumerate()
        .map(|(metric_idx, metric)| {
            metric_from_pb(metric).map_err(nested(format!("template metrics[{metric_idx}]")))
        })
        .collect::<Result<_, _>>()?;
    let parameters = template
        .parameters
        .into_iter()
        .enumerate()
        .map(|(parameter_idx, parameter)| {
            let path = || format!("template parameters[{parameter_idx}]");
            let datatype = datatype_from_code(parameter.r#type).map_err(nested(path()))?;
            let value = match parameter.value {
                None => None,
                Some(value) => match raw_from_parameter(value) {
                    Ok(raw) => Some(typed(datatype, raw).map_err(nested(path()))?),
                    Err(_) => {
                        return Err(nested(path())(ValueError::WrongValueField {
                            datatype: datatype.unwrap_or(DataType::Unknown),
                            found: "extension_value",
                        }));
                    }
                },
            };
            Ok(Parameter {
                name: parameter.name,
                datatype,
                value,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Template {
        version: template.version,
        metrics,
        parameters,
        template_ref: template.template_ref,
        is_definition: template.is_definition.unwrap_or(false),
    })
}

// ---- encoding -------------------------------------------------------------------------------------------

/// Checks a declared datatype against the value's own (an untyped value passes: it is written as is).
fn check_declared(declared: Option<DataType>, value: &Value) -> Result<(), EncodeError> {
    let actual = value.datatype();
    match declared {
        Some(declared) if actual != DataType::Unknown && declared != actual => {
            Err(EncodeError::DataTypeMismatch {
                declared,
                value: actual,
            })
        }
        _ => Ok(()),
    }
}

fn not_allowed(value: &Value, context: &'static str) -> EncodeError {
    EncodeError::NotAllowed {
        datatype: value.datatype(),
        context,
    }
}

fn metric_to_pb(metric: &Metric) -> Result<pb::payload::Metric, EncodeError> {
    use pb::payload::metric::Value as V;
    let value = match &metric.value {
        None => None,
        Some(value) => {
            check_declared(metric.datatype, value)?;
            Some(match value.encode()? {
                Encoded::Raw(RawValue::Bytes(bytes)) => V::BytesValue(bytes),
                Encoded::Raw(RawValue::Int(value)) => V::IntValue(value),
                Encoded::Raw(RawValue::Long(value)) => V::LongValue(value),
                Encoded::Raw(RawValue::Float(value)) => V::FloatValue(value),
                Encoded::Raw(RawValue::Double(value)) => V::DoubleValue(value),
                Encoded::Raw(RawValue::Boolean(value)) => V::BooleanValue(value),
                Encoded::Raw(RawValue::String(value)) => V::StringValue(value),
                Encoded::DataSet(data_set) => V::DatasetValue(data_set_to_pb(data_set)?),
                Encoded::Template(template) => V::TemplateValue(template_to_pb(template)?),
                Encoded::PropertySet(_) | Encoded::PropertySetList(_) => {
                    return Err(not_allowed(value, "metric value"));
                }
            })
        }
    };
    Ok(pb::payload::Metric {
        name: metric.name.clone(),
        alias: metric.alias,
        timestamp: metric.timestamp,
        datatype: metric.datatype.map(DataType::code),
        is_historical: metric.is_historical.then_some(true),
        is_transient: metric.is_transient.then_some(true),
        // A null metric says so explicitly rather than with a sentinel value.
        is_null: metric.value.is_none().then_some(true),
        metadata: metric.metadata.as_ref().map(meta_data_to_pb),
        properties: metric
            .properties
            .as_ref()
            .map(property_set_to_pb)
            .transpose()?,
        value,
    })
}

fn meta_data_to_pb(meta_data: &MetaData) -> pb::payload::MetaData {
    pb::payload::MetaData {
        is_multi_part: meta_data.is_multi_part,
        content_type: meta_data.content_type.clone(),
        size: meta_data.size,
        seq: meta_data.seq,
        file_name: meta_data.file_name.clone(),
        file_type: meta_data.file_type.clone(),
        md5: meta_data.md5.clone(),
        description: meta_data.description.clone(),
    }
}

fn property_set_to_pb(property_set: &PropertySet) -> Result<pb::payload::PropertySet, EncodeError> {
    let mut message = pb::payload::PropertySet::default();
    for (key, property) in &property_set.properties {
        message.keys.push(key.clone());
        message.values.push(property_value_to_pb(property)?);
    }
    Ok(message)
}

fn property_value_to_pb(
    property: &PropertyValue,
) -> Result<pb::payload::PropertyValue, EncodeError> {
    use pb::payload::property_value::Value as V;
    let value = match &property.value {
        None => None,
        Some(value) => {
            check_declared(property.datatype, value)?;
            Some(match value.encode()? {
                Encoded::Raw(raw) => {
                    property_from_raw(raw).ok_or_else(|| not_allowed(value, "property value"))?
                }
                Encoded::PropertySet(property_set) => {
                    V::PropertysetValue(property_set_to_pb(property_set)?)
                }
                Encoded::PropertySetList(property_sets) => {
                    V::PropertysetsValue(pb::payload::PropertySetList {
                        propertyset: property_sets
                            .iter()
                            .map(property_set_to_pb)
                            .collect::<Result<_, _>>()?,
                    })
                }
                Encoded::DataSet(_) | Encoded::Template(_) => {
                    return Err(not_allowed(value, "property value"));
                }
            })
        }
    };
    Ok(pb::payload::PropertyValue {
        r#type: property.datatype.map(DataType::code),
        is_null: property.value.is_none().then_some(true),
        value,
    })
}

fn data_set_to_pb(data_set: &DataSet) -> Result<pb::payload::DataSet, EncodeError> {
    let n_columns = data_set.types.len();
    if data_set.columns.len() != n_columns {
        return Err(EncodeError::DataSetShape {
            n_columns: data_set.columns.len(),
            n_types: n_columns,
        });
    }
    let rows = data_set
        .rows
        .iter()
        .enumerate()
        .map(|(row_idx, row)| {
            if row.len() != n_columns {
                return Err(EncodeError::DataSetRow {
                    row: row_idx,
                    n_elements: row.len(),
                    n_columns,
                });
            }
            let elements = row
                .iter()
                .zip(&data_set.types)
                .map(|(cell, &datatype)| {
                    let value = match cell {
                        None => None,
                        Some(value) => {
                            check_declared(Some(datatype), value)?;
                            match value.encode()? {
                                Encoded::Raw(raw) => Some(
                                    cell_from_raw(raw)
                                        .ok_or_else(|| not_allowed(value, "DataSet cell"))?,
                                ),
                                _ => return Err(not_allowed(value, "DataSet cell")),
                            }
                        }
                    };
                    Ok(pb::payload::data_set::DataSetValue { value })
                })
                .collect::<Result<_, _>>()?;
            Ok(pb::payload::data_set::Row { elements })
        })
        .collect::<Result<_, _>>()?;
    Ok(pb::payload::DataSet {
        num_of_columns: Some(n_columns as u64),
        columns: data_set.columns.clone(),
        types: data_set
            .types
            .iter()
            .map(|datatype| datatype.code())
            .collect(),
        rows,
    })
}

fn template_to_pb(template: &Template) -> Result<pb::payload::Template, EncodeError> {
    let parameters = template
        .parameters
        .iter()
        .map(|parameter| {
            let value = match &parameter.value {
                None => None,
                Some(value) => {
                    check_declared(parameter.datatype, value)?;
                    match value.encode()? {
                        Encoded::Raw(raw) => Some(
                            parameter_from_raw(raw)
                                .ok_or_else(|| not_allowed(value, "template parameter"))?,
                        ),
                        _ => return Err(not_allowed(value, "template parameter")),
                    }
                }
            };
            Ok(pb::payload::template::Parameter {
                name: parameter.name.clone(),
                r#type: parameter.datatype.map(DataType::code),
                value,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(pb::payload::Template {
        version: template.version.clone(),
        metrics: template
            .metrics
            .iter()
            .map(metric_to_pb)
            .collect::<Result<_, _>>()?,
        parameters,
        template_ref: template.template_ref.clone(),
        // Always present: [tck-id-payloads-template-is-definition].
        is_definition: Some(template.is_definition),
    })
}
