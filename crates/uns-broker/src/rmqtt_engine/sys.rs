//! The `$SYS/broker/...` topics, published by our own task with mosquitto's topic names
//! (what MQTT Explorer and most dashboards expect).
//!
//! rmqtt's `rmqtt-sys-topic` plugin publishes two JSON blobs under `$SYS/brokers/{node}/`, not
//! retained, and its timer task never ends (it would outlive a stopped broker). Ours publishes
//! retained, once at start and then every `sys_interval`, and is aborted on shutdown. `$SYS`
//! retained messages are kept in memory only (see `retain.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, CodecPublish, From, Id, Publish, QoS, TopicName};
use rmqtt::utils::timestamp_millis;

use super::hooks::Counters;
use super::retain::RetainAdapter;

/// `$SYS/broker/version` payload.
pub(crate) fn version() -> String {
    format!("uns-broker {} (rmqtt 0.24)", env!("CARGO_PKG_VERSION"))
}

/// What the `$SYS` task reads each round.
pub(crate) struct SysSources {
    pub(crate) scx: ServerContext,
    pub(crate) counters: Arc<Counters>,
    pub(crate) retained: Arc<RetainAdapter>,
    pub(crate) started: tokio::time::Instant,
}

/// Publishes every `$SYS` topic now and then every `interval`, forever (the caller aborts it).
pub(crate) async fn run(sources: SysSources, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        publish_all(&sources).await;
    }
}

async fn publish_all(sources: &SysSources) {
    let counters = &sources.counters;
    let topics = [
        ("$SYS/broker/version", version()),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", sources.started.elapsed().as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            sources.scx.connections.count().to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            counters.received.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            counters.sent.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            counters.dropped.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            sources.retained.len().to_string(),
        ),
    ];
    for (topic, payload) in topics {
        publish(&sources.scx, topic, payload).await;
    }
}

async fn publish(scx: &ServerContext, topic: &str, payload: String) {
    let from = From::from_system(Id::new(
        scx.node.id(),
        0,
        None,
        None,
        ClientId::from_static("$SYS"),
        None,
    ));
    let publish = CodecPublish {
        dup: false,
        retain: true,
        qos: QoS::AtMostOnce,
        topic: TopicName::from(topic),
        packet_id: None,
        payload: Bytes::from(payload),
        properties: None,
    };
    let publish = Publish::new(Box::new(publish), None, None, Some(timestamp_millis()));
    if let Err(e) = SessionState::forwards(scx, from, publish, false, None).await {
        tracing::warn!(%topic, cause = %e, "publishing $SYS topic");
    }
}
