//! Session-lifecycle corrections on top of rmqtt (filled in once measured).

use rmqtt::context::ServerContext;
use rmqtt::hook::Register;

/// Registers the session-lifecycle handlers.
pub(crate) async fn register(_register: &dyn Register, _scx: &ServerContext) {}
