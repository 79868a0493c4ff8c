//! Tag context from a location's retained `_wo/_active` document: which work order, operation, lot and
//! shift a value belongs to.
//!
//! The document is read leniently as JSON, since the work-order service that owns it may add fields:
//! `id` → `wo_id`; `operation_id` (or `active_operation`, or the only entry of `operations`) →
//! `operation_id`; `lot` (or the last `lots` entry with `material_use` `produced`) → `lot`; `shift` →
//! `shift`. Absent fields are omitted; `null`, an empty payload or a document without any of them clears
//! the context.

use uns_model::payload::TagContext;
use uns_model::topic::Id;

/// The context in a `_wo/_active` payload, or `None` when it has none.
pub fn from_active_order(payload: &[u8]) -> Option<TagContext> {
    let json: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let object = json.as_object()?;
    let text = |key: &str| object.get(key).and_then(serde_json::Value::as_str);
    let wo_id = text("id")
        .or_else(|| text("wo_id"))
        .and_then(|id| Id::new(id).ok());
    let operation_id = text("operation_id")
        .or_else(|| text("active_operation"))
        .map(str::to_owned)
        .or_else(|| match object.get("operations")?.as_array()?.as_slice() {
            [only] => only
                .get("operation_id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            _ => None,
        });
    let lot = text("lot").and_then(|lot| Id::new(lot).ok()).or_else(|| {
        object
            .get("lots")?
            .as_array()?
            .iter()
            .rev()
            .find(|actual| {
                actual
                    .get("material_use")
                    .and_then(serde_json::Value::as_str)
                    == Some("produced")
            })
            .and_then(|actual| actual.get("lot")?.as_str())
            .and_then(|lot| Id::new(lot).ok())
    });
    let shift = text("shift").map(str::to_owned);
    let context = TagContext {
        wo_id,
        operation_id,
        lot,
        shift,
    };
    (context != TagContext::default()).then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wo_id, operation_id, lot, shift.
    type Expected<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn check(payload: &str, expected: Option<Expected<'_>>) {
        let got = from_active_order(payload.as_bytes());
        let got = got.as_ref().map(|context| {
            (
                context.wo_id.as_ref().map(Id::as_str).unwrap_or_default(),
                context.operation_id.as_deref(),
                context.lot.as_ref().map(Id::as_str),
                context.shift.as_deref(),
            )
        });
        assert_eq!(got, expected, "{payload}");
    }

    #[test]
    fn active_order_documents() {
        check("null", None);
        check("", None);
        check("{}", None);
        check(
            r#"{"id": "wo-10234", "operation_id": "0010", "lot": "l-8891", "shift": "early"}"#,
            Some(("wo-10234", Some("0010"), Some("l-8891"), Some("early"))),
        );
        check(r#"{"id": "wo-1"}"#, Some(("wo-1", None, None, None)));
        check(
            r#"{"id": "wo-2", "operations": [{"operation_id": "0020"}],
                "lots": [{"lot": "l-1", "material_use": "consumed"}, {"lot": "l-2", "material_use": "produced"}]}"#,
            Some(("wo-2", Some("0020"), Some("l-2"), None)),
        );
        // An id that is not a valid topic id is left out rather than guessed at.
        check(
            r#"{"id": "WO#17", "shift": "late"}"#,
            Some(("", None, None, Some("late"))),
        );
    }
}
