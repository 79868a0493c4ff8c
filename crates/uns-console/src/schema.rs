//! JSON payloads checked against the JSON Schema their `schema` field names (`uns/tag/v1`), from
//! the schemas compiled into `uns_model::schemas`.

use serde::Serialize;
use uns_model::schemas;

/// Every schema of the model, compiled once.
pub struct SchemaBook {
    validators: Vec<(String, jsonschema::Validator)>,
}

/// The outcome of checking one payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SchemaCheck {
    /// The `schema` field's value.
    pub schema: String,
    /// Whether the model has a schema of that id.
    pub known: bool,
    /// Whether the payload is valid against it (false when unknown).
    pub valid: bool,
    /// What is wrong, one line each with the JSON pointer of the place (at most 20).
    pub errors: Vec<String>,
}

impl SchemaBook {
    /// Compiles the model's schemas. A schema that does not compile (the model's own test rules
    /// that out) is left out, and payloads naming it show as unknown.
    pub fn new() -> Self {
        let validators = schemas::ALL
            .iter()
            .filter_map(|file| {
                let schema: serde_json::Value = serde_json::from_str(file.json).ok()?;
                let validator = jsonschema::validator_for(&schema).ok()?;
                Some((file.id(), validator))
            })
            .collect();
        Self { validators }
    }

    /// Checks `payload` if it is a JSON object with a string `schema` field; `None` otherwise.
    pub fn check(&self, payload: &serde_json::Value) -> Option<SchemaCheck> {
        let schema = payload.get("schema")?.as_str()?;
        let Some((_, validator)) = self.validators.iter().find(|(id, _)| id == schema) else {
            return Some(SchemaCheck {
                schema: schema.to_owned(),
                known: false,
                valid: false,
                errors: vec![format!("no schema {schema} in this UNS's model")],
            });
        };
        let errors: Vec<String> = validator
            .iter_errors(payload)
            .take(20)
            .map(|err| {
                let at = err.instance_path.to_string();
                if at.is_empty() {
                    err.to_string()
                } else {
                    format!("{at}: {err}")
                }
            })
            .collect();
        Some(SchemaCheck {
            schema: schema.to_owned(),
            known: true,
            valid: errors.is_empty(),
            errors,
        })
    }
}

impl Default for SchemaBook {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uns_model::payload::{Document, TagValue};

    #[test]
    fn payloads_are_checked_against_their_schema_field() {
        let book = SchemaBook::new();
        assert_eq!(
            book.validators.len(),
            schemas::ALL.len(),
            "every schema compiles"
        );
        let id = TagValue::schema_id();
        let good = serde_json::json!({
            "schema": id, "value": 1.5, "timestamp_ms": 1, "quality": "good"
        });
        let checked = book.check(&good).expect("has a schema field");
        assert!(checked.valid, "{checked:?}");
        let bad = serde_json::json!({ "schema": id, "value": 1.5, "quality": 7 });
        let checked = book.check(&bad).expect("has a schema field");
        assert!(!checked.valid && checked.known);
        assert!(!checked.errors.is_empty());
        let unknown = book
            .check(&serde_json::json!({ "schema": "acme/thing/v9" }))
            .expect("has a schema field");
        assert!(!unknown.known && !unknown.valid);
        assert_eq!(book.check(&serde_json::json!({ "value": 1 })), None);
        assert_eq!(book.check(&serde_json::json!(3)), None);
    }
}
