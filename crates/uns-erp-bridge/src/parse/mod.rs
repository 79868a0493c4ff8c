//! Parsing an order request body (our JSON or B2MML XML) into [`RawOrder`]s: the order as sent, with
//! units, quantities and equipment still as text, so that validation can report every problem of an
//! order at once with the path of the field at fault. No I/O, no clock.

pub mod b2mml;
pub mod json;

/// Why a body could not be read at all (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not well-formed JSON, or JSON of the wrong shape.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Not well-formed XML.
    #[error("invalid XML: {0}")]
    Xml(String),
    /// Well-formed XML that is not a B2MML production schedule we read.
    #[error("not a B2MML production schedule: {0}")]
    NotB2mml(String),
    /// A document type declaration: refused, so no entity is ever expanded.
    #[error("XML with a DOCTYPE is refused (no DTDs, no entities)")]
    Doctype,
    /// Nested deeper than the limit.
    #[error("XML nested deeper than {0} elements")]
    TooDeep(usize),
    /// More elements than the limit.
    #[error("XML with more than {0} elements")]
    TooManyElements(usize),
    /// An encoding named in the XML declaration that we do not know.
    #[error("unknown XML encoding `{0}`")]
    Encoding(String),
    /// The body holds no order at all.
    #[error("no production order in the body")]
    Empty,
}

/// An order as sent, before validation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawOrder {
    /// Where in the body it is, the prefix of every error path (`ProductionRequest[0]`, `$[1]`, `$`).
    pub path: String,
    /// The ERP's order id (B2MML `ID`).
    pub erp_ref: Option<String>,
    /// Order text.
    pub description: Option<String>,
    /// Material to produce.
    pub material: Option<Field<String>>,
    /// Quantity to produce.
    pub quantity: Option<RawQuantity>,
    /// Earliest start, as sent.
    pub earliest_start_time: Option<Field<String>>,
    /// Latest end, as sent.
    pub latest_end_time: Option<Field<String>>,
    /// The order's equipment / hierarchy scope (the ERP's id).
    pub equipment: Option<Field<String>>,
    /// A plant path given directly (our JSON only).
    pub hierarchy_scope: Option<Field<String>>,
    /// Priority, as sent.
    pub priority: Option<Field<String>>,
    /// Parameters.
    pub parameters: Vec<RawParameter>,
    /// Operations, nested ones flattened in document order.
    pub operations: Vec<RawOperation>,
    /// Materials other than the order's product.
    pub components: Vec<RawMaterial>,
}

/// A value with the path it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Field<T> {
    /// Path of the value in the body.
    pub path: String,
    /// The value.
    pub value: T,
}

impl<T> Field<T> {
    /// `value` found at `path`.
    pub fn new(path: impl Into<String>, value: T) -> Self {
        Self {
            path: path.into(),
            value,
        }
    }
}

/// A quantity as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RawQuantity {
    /// Path of the quantity.
    pub path: String,
    /// The amount as text (B2MML `QuantityString`) or a JSON number printed.
    pub qty: String,
    /// The unit as sent.
    pub uom: Option<String>,
}

/// A parameter as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RawParameter {
    /// Path of the parameter.
    pub path: String,
    /// Its id.
    pub name: String,
    /// Its value.
    pub value: serde_json::Value,
    /// Its unit, when given (and not empty).
    pub uom: Option<String>,
}

/// A routing step as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RawOperation {
    /// Path of the step.
    pub path: String,
    /// Its id.
    pub operation_id: String,
    /// Text.
    pub description: Option<String>,
    /// The enclosing step.
    pub parent_operation_id: Option<String>,
    /// The ERP's equipment id for the step.
    pub equipment: Option<Field<String>>,
    /// Quantity of the step.
    pub quantity: Option<RawQuantity>,
}

/// A material requirement as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RawMaterial {
    /// Path of the requirement.
    pub path: String,
    /// Material number.
    pub material: Option<String>,
    /// Text.
    pub description: Option<String>,
    /// `consumed` / `produced` (B2MML `Consumed`, `Produced`, ...), as sent.
    pub material_use: Option<String>,
    /// Planned quantity.
    pub quantity: Option<RawQuantity>,
    /// The step that uses it.
    pub operation_id: Option<String>,
    /// Lot.
    pub material_lot_id: Option<String>,
    /// Sublot.
    pub material_sublot_id: Option<String>,
}

/// What kind of body a `Content-Type` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (and `+json`).
    Json,
    /// `application/xml`, `text/xml` (and `+xml`).
    Xml,
}

impl BodyKind {
    /// The kind of a `Content-Type` header value, `None` for any other type (HTTP 415).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Self::Json),
            "application/xml" | "text/xml" => Some(Self::Xml),
            other if other.ends_with("+json") => Some(Self::Json),
            other if other.ends_with("+xml") => Some(Self::Xml),
            _ => None,
        }
    }
}

/// Parses a body of `kind` into its orders (at least one).
pub fn parse(kind: BodyKind, body: &[u8]) -> Result<Vec<RawOrder>, ParseError> {
    let orders = match kind {
        BodyKind::Json => json::parse(body)?,
        BodyKind::Xml => b2mml::parse(body, &b2mml::Limits::default())?,
    };
    if orders.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for (text, kind) in [
            ("application/json", Some(BodyKind::Json)),
            ("application/json; charset=utf-8", Some(BodyKind::Json)),
            ("Application/JSON", Some(BodyKind::Json)),
            ("application/vnd.uns+json", Some(BodyKind::Json)),
            ("application/xml", Some(BodyKind::Xml)),
            ("text/xml; charset=iso-8859-1", Some(BodyKind::Xml)),
            ("text/plain", None),
            ("multipart/form-data", None),
            ("", None),
        ] {
            assert_eq!(BodyKind::from_content_type(text), kind, "{text}");
        }
    }
}
