//! Decoding rules shared by every document: size, UTF-8, JSON, schema id, field errors, time format.

use serde_json::json;

use super::*;

fn tag_json() -> serde_json::Value {
    json!({
        "schema": "uns/tag/v1",
        "value": 71.4,
        "timestamp_ms": 1_741_068_000_123_i64,
        "quality": "good",
        "unit": "CEL",
        "a_future_field": true
    })
}

#[test]
fn decode_reports_the_first_problem() {
    fn check(bytes: &[u8], expected: &str) {
        let err = decode::<TagValue>(bytes).expect_err("invalid input");
        let variant = match &err {
            PayloadError::TooLarge { .. } => "TooLarge",
            PayloadError::NotUtf8(_) => "NotUtf8",
            PayloadError::NotJson(_) => "NotJson",
            PayloadError::MissingSchema { .. } => "MissingSchema",
            PayloadError::WrongSchema { .. } => "WrongSchema",
            PayloadError::Invalid { .. } => "Invalid",
        };
        assert_eq!(variant, expected, "{err}");
    }
    check(&vec![b' '; MAX_PAYLOAD_LEN + 1], "TooLarge");
    check(b"\xff\xfe", "NotUtf8");
    check(b"{\"schema\": ", "NotJson");
    check(b"[1, 2]", "NotJson");
    check(b"{\"value\": 1}", "MissingSchema");
    check(b"{\"schema\": 7}", "MissingSchema");
    check(b"{\"schema\": \"uns/state/v1\"}", "WrongSchema");
    check(b"{\"schema\": \"uns/tag/v1\", \"value\": 1}", "Invalid");
    let mut bad_quality = tag_json();
    bad_quality["quality"] = json!("great");
    check(&serde_json::to_vec(&bad_quality).expect("json"), "Invalid");
}

#[test]
fn invalid_errors_name_the_field() {
    let mut missing = tag_json();
    missing.as_object_mut().expect("object").remove("quality");
    let err = decode::<TagValue>(&serde_json::to_vec(&missing).expect("json"))
        .expect_err("missing field");
    assert!(err.to_string().contains("quality"), "{err}");
    let err = decode::<TagValue>(br#"{"schema": "uns/state/v1"}"#).expect_err("wrong schema");
    assert_eq!(
        err.to_string(),
        r#"payload has schema "uns/state/v1", expected "uns/tag/v1""#
    );
}

#[test]
fn unknown_fields_are_tolerated_except_for_erp_input() {
    let tag: TagValue =
        decode(&serde_json::to_vec(&tag_json()).expect("json")).expect("tolerant reader");
    assert_eq!(tag.unit, Some(Uom::CEL));
    assert_eq!(tag.value, json!(71.4));
    let order = json!({
        "schema": "uns/production-order/v1",
        "id": "po-1",
        "erp_ref": "PO 1",
        "material": "m",
        "quantity": {"qty": 1, "uom": "EA"},
        "hierarchy_scope": "acme/berlin",
        "received_at": "2025-03-04T05:20:00.123Z",
    });
    assert!(decode::<ProductionOrder>(&serde_json::to_vec(&order).expect("json")).is_ok());
    let mut extra = order.clone();
    extra["prio"] = json!(1);
    let err =
        decode::<ProductionOrder>(&serde_json::to_vec(&extra).expect("json")).expect_err("strict");
    assert!(err.to_string().contains("prio"), "{err}");
}

#[test]
fn timestamps_serialize_as_utc_with_milliseconds() {
    fn check(input: &str, expected: &str) {
        let timestamp: Timestamp = input.parse().expect("valid RFC 3339");
        assert_eq!(timestamp.to_string(), expected, "{input}");
        assert_eq!(
            serde_json::to_value(timestamp).expect("json"),
            json!(expected)
        );
        let back: Timestamp = serde_json::from_value(json!(expected)).expect("round trip");
        assert_eq!(back, timestamp);
    }
    check("2025-03-04T05:20:00Z", "2025-03-04T05:20:00.000Z");
    check("2025-03-04T05:20:00.123456789Z", "2025-03-04T05:20:00.123Z");
    check("2025-03-04T06:20:00.5+01:00", "2025-03-04T05:20:00.500Z");
    // The schemas' timestamp pattern accepts what chrono's RFC 3339 parser accepts.
    check("2025-03-04t05:20:00z", "2025-03-04T05:20:00.000Z");
    check("2025-03-04 05:20:00-00:30", "2025-03-04T05:50:00.000Z");
    assert!("2025-03-04 05:20".parse::<Timestamp>().is_err());
    let from_ms = Timestamp::from_unix_ms(1_741_068_000_123).expect("in range");
    assert_eq!(from_ms.to_string(), "2025-03-04T06:00:00.123Z");
    assert_eq!(from_ms.unix_ms(), 1_741_068_000_123);
}

#[test]
fn uom_codes() {
    fn check(code: &str, ok: bool) {
        assert_eq!(Uom::new(code).is_ok(), ok, "{code:?}");
        if ok {
            assert_eq!(
                Uom::new(code).map(|uom| uom.to_string()),
                Ok(code.to_owned())
            );
        }
    }
    check("EA", true);
    check("C62", true);
    check("KGM", true);
    check("H", true);
    check("", false);
    check("kgm", false);
    check("KGMS", false);
    check("K-M", false);
    assert_eq!(Uom::EA.as_str(), "EA");
    assert_eq!(Uom::new("EA"), Ok(Uom::EA));
}

#[test]
fn schema_ids() {
    assert_eq!(TagValue::schema_id(), "uns/tag/v1");
    assert_eq!(WorkOrder::schema_id(), "uns/work-order/v1");
    assert_eq!(format!("{:?}", SchemaTag::<Lot>::default()), "uns/lot/v1");
}
