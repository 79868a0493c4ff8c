//! The typed errors of the payload codec: [`DecodeError`] for bytes from the network, [`ValueError`] for one
//! metric value that does not match its datatype, [`EncodeError`] for a domain payload that has no valid
//! Sparkplug encoding.

use crate::value::DataType;

/// Why a byte buffer is not a valid Sparkplug B payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a protobuf `Payload` message (truncated, garbage, wrong wire types, bad UTF-8 in a
    /// string field, nesting deeper than the protobuf recursion limit).
    #[error("not a Sparkplug B protobuf payload: {reason}")]
    Protobuf {
        /// What the protobuf decoder reported.
        reason: String,
    },
    /// The protobuf is well formed but a metric's value does not fit its datatype.
    #[error("metric {index} ({label}): {source}")]
    Metric {
        /// The position of the metric in the payload, from 0.
        index: usize,
        /// The metric's name, or `alias N` when it has no name.
        label: String,
        /// What is wrong with it.
        #[source]
        source: ValueError,
    },
}

/// Why a wire value cannot be read as a value of its datatype.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The datatype code is not one of the Sparkplug 3.0 codes (0..=34).
    #[error("unknown Sparkplug datatype code {code}")]
    UnknownDataType {
        /// The code as found.
        code: u32,
    },
    /// The value is carried in a field that this datatype never uses (e.g. a Float in `string_value`).
    #[error("a {datatype} value cannot be carried in {found}")]
    WrongValueField {
        /// The declared datatype.
        datatype: DataType,
        /// The protobuf field that carried the value.
        found: &'static str,
    },
    /// An integer does not fit the declared integer type.
    #[error("{value} (0x{value:x}) is out of range for {datatype}")]
    OutOfRange {
        /// The declared datatype.
        datatype: DataType,
        /// The wire value.
        value: u64,
    },
    /// A packed array's byte length is not a multiple of its element size.
    #[error(
        "{datatype} of {n_bytes} bytes is not a multiple of the {element_size}-byte element size"
    )]
    ArrayLength {
        /// The array datatype.
        datatype: DataType,
        /// Length of `bytes_value`.
        n_bytes: usize,
        /// Size of one element.
        element_size: usize,
    },
    /// A BooleanArray is shorter than its 4-byte count, or its count does not match the packed bytes
    /// that follow (a count larger than the bits present, or extra bytes).
    #[error(
        "BooleanArray of {n_bytes} bytes does not hold a 4-byte count plus {count:?} packed bits"
    )]
    BooleanArrayLength {
        /// The declared number of booleans, if the 4-byte count was present.
        count: Option<u32>,
        /// Length of `bytes_value`.
        n_bytes: usize,
    },
    /// A StringArray element is not valid UTF-8.
    #[error("StringArray element {index} is not valid UTF-8")]
    InvalidUtf8 {
        /// Position of the element, from 0.
        index: usize,
    },
    /// A PropertySet has a different number of keys and values
    /// [tck-id-payloads-propertyset-keys-array-size].
    #[error("PropertySet has {n_keys} keys but {n_values} values")]
    PropertySetLength {
        /// Number of keys.
        n_keys: usize,
        /// Number of values.
        n_values: usize,
    },
    /// A DataSet's `num_of_columns`, `columns` and `types` disagree
    /// [tck-id-payloads-dataset-column-num-headers], [tck-id-payloads-dataset-types-num].
    #[error(
        "DataSet declares {num_of_columns:?} columns with {n_columns} names and {n_types} types"
    )]
    DataSetShape {
        /// The `num_of_columns` field.
        num_of_columns: Option<u64>,
        /// Number of column names.
        n_columns: usize,
        /// Number of column types.
        n_types: usize,
    },
    /// A DataSet row does not have one element per column.
    #[error("DataSet row {row} has {n_elements} elements for {n_columns} columns")]
    DataSetRow {
        /// Row position, from 0.
        row: usize,
        /// Elements in the row.
        n_elements: usize,
        /// Columns of the DataSet.
        n_columns: usize,
    },
    /// A value nested inside a DataSet, Template or PropertySet is invalid.
    #[error("{path}: {source}")]
    Nested {
        /// Where, e.g. `properties["Quality"]`, `rows[2][0]`, `template metrics[1]`.
        path: String,
        /// What is wrong there.
        #[source]
        source: Box<ValueError>,
    },
}

/// Why a domain payload cannot be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The declared datatype differs from the datatype of the value.
    #[error("declared datatype {declared} but the value is a {value}")]
    DataTypeMismatch {
        /// The `datatype` field.
        declared: DataType,
        /// The datatype of the value.
        value: DataType,
    },
    /// This kind of value has no protobuf field in this position (e.g. Bytes as a property value,
    /// a PropertySet as a metric value, a DataSet as a DataSet cell).
    #[error("a {datatype} value is not allowed as a {context}")]
    NotAllowed {
        /// The value's datatype.
        datatype: DataType,
        /// The position, e.g. `metric value`, `property value`, `DataSet cell`, `template parameter`.
        context: &'static str,
    },
    /// A StringArray element contains NUL, which terminates elements on the wire.
    #[error("StringArray element {index} contains a NUL character")]
    StringArrayNul {
        /// Position of the element, from 0.
        index: usize,
    },
    /// A BooleanArray has more than `u32::MAX` elements, which its 4-byte count cannot express.
    #[error("BooleanArray of {len} elements exceeds the 4-byte count")]
    BooleanArrayTooLong {
        /// Number of elements.
        len: usize,
    },
    /// A DataSet has a different number of column names and types.
    #[error("DataSet has {n_columns} column names but {n_types} types")]
    DataSetShape {
        /// Number of column names.
        n_columns: usize,
        /// Number of column types.
        n_types: usize,
    },
    /// A DataSet row does not have one element per column.
    #[error("DataSet row {row} has {n_elements} elements for {n_columns} columns")]
    DataSetRow {
        /// Row position, from 0.
        row: usize,
        /// Elements in the row.
        n_elements: usize,
        /// Columns of the DataSet.
        n_columns: usize,
    },
}
