//! From a received topic and payload to an engine [`Input`]: the one place the service parses messages.

use uns_model::payload::{self, PayloadError};
use uns_model::topic::{Class, UnsTopic};

use crate::engine::Input;

/// Decodes a message on one of the topics the service subscribes to. `Ok(None)` for a topic it does not
/// use (e.g. `_count/produced` is decoded but `_tag/...` is not).
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
        _ => return Ok(None),
    }))
}
