//! The seam between our broker API and the MQTT engine behind it.
//!
//! [`crate::BrokerHandle`] holds a `Box<dyn Engine>`; today the only implementation is
//! `rmqtt_engine::RmqttEngine`. A replacement engine implements this trait and a `start`
//! function, and nothing outside this crate changes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::{BrokerError, BrokerStats};

/// A running broker engine.
pub(crate) trait Engine: Send + Sync {
    /// The bound MQTT (TCP) address.
    fn mqtt_addr(&self) -> SocketAddr;
    /// The bound websocket address, if that listener is enabled.
    fn ws_addr(&self) -> Option<SocketAddr>;
    /// A snapshot of the counters.
    fn stats(&self) -> BrokerStats;
    /// Test seam: the retained store's next `n` commits fail as on a full disk.
    fn inject_retained_disk_full(&self, n: u32);
    /// Stops accepting, disconnects every client, flushes the retained store and returns.
    /// After it returns, the ports are free and the data directory can be opened again.
    fn shutdown(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>;
}
