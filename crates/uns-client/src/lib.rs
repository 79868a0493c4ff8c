//! The client runtime every UNS service is built on.
//!
//! - [`UnsClient`]: one MQTT connection per service to the embedded or an external broker
//!   (`--broker mqtt://host:port`), reconnect with backoff, typed publish/subscribe with the
//!   model's topics, re-publish of the service's retained documents after every (re)connect,
//!   an MQTT 5 request/response helper, and health on `uns/v1/_services/{service}` (retained,
//!   Will → `stopped`).
//! - [`Metrics`]: the Prometheus registry services register into (served by `uns-service`'s HTTP
//!   endpoint).
//!
//! Architecture invariant: services talk to each other only through the broker; this crate
//! has no knowledge of any particular service.
#![deny(missing_docs)]

mod broker_url;
mod client;
mod metrics;

pub use broker_url::{BrokerUrl, BrokerUrlError, DEFAULT_MQTT_PORT};
pub use client::{
    ClientError, ClientOptions, Inbox, MAX_PACKET_SIZE, Message, SubscribeOptions, UnsClient,
};
pub use metrics::{ClientMetrics, ErrorLabels, Metrics, ServiceLabel};
