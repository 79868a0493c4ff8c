//! From a received topic and payload to an engine [`Input`]: the one place the service parses messages.

use serde::{Deserialize, Serialize};
use uns_model::payload::{self, PayloadError, Timestamp};
use uns_model::topic::{Class, Id, OeePeriodKind, UnsTopic};

use crate::engine::Input;

/// Decodes a message on one of the topics the service subscribes to. `Ok(None)` for a topic it does not
/// use (e.g. `_count/produced` is decoded but `_tag/...` is not), and for a `_cmd/oee/close` without
/// `at` (the service resolves the time and records the request with it, see [`close_request`]).
pub fn decode(topic: &UnsTopic, bytes: &[u8]) -> Result<Option<Input>, PayloadError> {
    let (Some(location), Some(class)) = (topic.location(), topic.class()) else {
        return Ok(None);
    };
    let location = location.clone();
    Ok(Some(match class {
        Class::State => Input::State {
            location,
            doc: payload::decode(bytes)?,
        },
        Class::Count(_) => Input::Count {
            location,
            doc: payload::decode(bytes)?,
        },
        Class::CountEvents => Input::CountEvent {
            location,
            event: payload::decode(bytes)?,
        },
        Class::WorkOrderActive => Input::ActiveOrder {
            location,
            order: payload::decode_active_order(bytes)?,
        },
        Class::Meta => Input::Meta {
            location,
            meta: payload::decode(bytes)?,
        },
        class if is_close(class) => {
            let request = close_request(bytes).map_err(PayloadError::NotJson)?;
            let Some(at) = request.at else {
                return Ok(None);
            };
            Input::Close {
                location,
                kind: request.period,
                at: at.unix_ms(),
            }
        }
        _ => return Ok(None),
    }))
}

/// The body of `_cmd/oee/close`. Every field is optional: an empty body (or `{}`) closes every kind of
/// period that ended by now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// `hour`, `shift`, `day` or `wo`; absent: every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<OeePeriodKind>,
    /// The periods to close are those that ended by this time; absent: the newest event time or the
    /// wall clock, whichever is later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// Parses the body of `_cmd/oee/close` (empty means `{}`).
pub fn close_request(bytes: &[u8]) -> Result<CloseRequest, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CloseRequest::default());
    }
    serde_json::from_slice(bytes)
}

/// The class of `_cmd/oee/close`.
pub fn close_class() -> Class {
    // Both words are lowercase letters, which `Id::new` accepts.
    Class::Cmd(
        ["oee", "close"]
            .into_iter()
            .map(|word| Id::new(word).unwrap_or_else(|_| uns_model::topic::slug(word)))
            .collect(),
    )
}

/// Whether `class` is `_cmd/oee/close`.
pub fn is_close(class: &Class) -> bool {
    matches!(class, Class::Cmd(verb)
        if verb.iter().map(Id::as_str).eq(["oee", "close"]))
}
