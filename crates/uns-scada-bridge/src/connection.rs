//! The bridge's own Sparkplug MQTT connection (MQTT 3.1.1, clean session), separate from the UNS client
//! because its Will is the host's STATE death, not the service health.
//!
//! A task owns the rumqttc event loop and only moves packets: every PUBLISH received goes to the service
//! loop as an [`Event::Message`] over a bounded channel (when the service falls behind, the task waits,
//! and TCP pushes back on the broker). Before every connection attempt it registers a STATE Will with a
//! fresh timestamp; after every CONNACK it subscribes (own STATE topic, `spBv1.0/#`), publishes the
//! STATE birth with the Will's timestamp and reports [`Event::Connected`]. A lost connection is reported
//! as [`Event::Lost`] so the host marks everything stale.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, Event as MqttEvent, EventLoop, LastWill, MqttOptions, Outgoing as MqttOutgoing,
    Packet, QoS,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uns_sparkplug::host::{ConnectMessages, HostSession, Outgoing, Qos};

use crate::SparkplugConnect;
use crate::config::Mapping;

/// What the connection task reports.
#[derive(Debug)]
pub(crate) enum Event {
    /// A message received on a subscription.
    Message {
        /// The topic.
        topic: String,
        /// The payload.
        payload: Bytes,
        /// The QoS it was delivered at.
        qos: Qos,
    },
    /// Connected, with this STATE timestamp in the Will and the birth.
    Connected(u64),
    /// The connection is gone; the task reconnects on its own.
    Lost,
}

/// The service loop's handle on the connection. Dropping it stops the task.
pub(crate) struct Handle {
    client: AsyncClient,
    task: Option<JoinHandle<()>>,
    stopping: CancellationToken,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the connection task. `host` gives the first Will and birth (and so the first timestamp).
pub(crate) fn start(
    sparkplug: &SparkplugConnect,
    mapping: &Mapping,
    host: &mut HostSession,
    utc_ms: u64,
    shutdown: CancellationToken,
) -> (mpsc::Receiver<Event>, Handle) {
    let first = host.connect(utc_ms);
    let mut options = MqttOptions::new(
        mapping.client_id.clone(),
        sparkplug.host.clone(),
        sparkplug.port,
    );
    options.set_keep_alive(mapping.keep_alive);
    options.set_clean_session(true);
    // Room for births up to 4x the accepted size, so an oversize birth is rejected with a reason on
    // `_errors` instead of breaking the connection.
    let max_packet = mapping
        .host
        .max_payload_bytes
        .saturating_mul(4)
        .saturating_add(64 * 1024);
    options.set_max_packet_size(max_packet, max_packet);
    if let Some((user, password)) = &sparkplug.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    options.set_last_will(last_will(&first.will));
    let (client, event_loop) = AsyncClient::new(options, 4096);
    let (tx, rx) = mpsc::channel(4096);
    let stopping = CancellationToken::new();
    // A session of its own, only to make the STATE Will and birth of each reconnect (with the same
    // host id); the service loop's session learns each timestamp from `Event::Connected`.
    let state_maker = HostSession::new(mapping.host.clone()).ok();
    let task = tokio::spawn(run(
        client.clone(),
        event_loop,
        tx,
        first,
        state_maker,
        stopping.clone(),
        shutdown,
    ));
    (
        rx,
        Handle {
            client,
            task: Some(task),
            stopping,
        },
    )
}

impl Handle {
    /// Publishes a Sparkplug message (NCMD, STATE).
    pub(crate) async fn publish(&self, message: Outgoing) {
        let qos = match message.qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
        };
        if self
            .client
            .publish(message.topic.clone(), qos, message.retain, message.payload)
            .await
            .is_err()
        {
            debug!(topic = %message.topic, "Sparkplug connection closed; message dropped");
        }
    }

    /// Publishes the STATE death, disconnects, and waits at most `grace` for the task to end.
    pub(crate) async fn stop(mut self, death: Outgoing, grace: Duration) {
        self.stopping.cancel();
        self.publish(death).await;
        let _ = self.client.disconnect().await;
        if let Some(task) = self.task.take()
            && tokio::time::timeout(grace, task).await.is_err()
        {
            warn!(?grace, "Sparkplug connection did not close in time");
        }
    }
}

async fn run(
    client: AsyncClient,
    mut event_loop: EventLoop,
    tx: mpsc::Sender<Event>,
    mut current: ConnectMessages,
    mut state_maker: Option<HostSession>,
    stopping: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut connected = false;
    loop {
        match event_loop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                connected = true;
                info!(topic = %current.birth.topic, "Sparkplug host connected");
                for filter in &current.subscriptions {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                // After the SUBSCRIBE requests, in order on the wire [tck-id-host-topic-phid-birth-required].
                let _ = client.try_publish(
                    current.birth.topic.clone(),
                    QoS::AtLeastOnce,
                    true,
                    current.birth.payload.clone(),
                );
                let timestamp = uns_sparkplug::host::parse_state(&current.birth.payload)
                    .map(|(_, timestamp)| timestamp)
                    .unwrap_or_default();
                if tx.send(Event::Connected(timestamp)).await.is_err() {
                    return;
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                let qos = match publish.qos {
                    QoS::AtMostOnce => Qos::AtMostOnce,
                    QoS::AtLeastOnce | QoS::ExactlyOnce => Qos::AtLeastOnce,
                };
                let event = Event::Message {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos,
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            Ok(MqttEvent::Outgoing(MqttOutgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(err) => {
                if stopping.is_cancelled() || shutdown.is_cancelled() {
                    return;
                }
                if connected {
                    warn!(cause = %err, "Sparkplug connection lost; reconnecting");
                    connected = false;
                    if tx.send(Event::Lost).await.is_err() {
                        return;
                    }
                } else {
                    debug!(cause = %err, ?backoff, "Sparkplug connect failed; retrying");
                }
                // A fresh timestamp for the next connection's Will and birth.
                if let Some(maker) = state_maker.as_mut() {
                    current = maker.connect(super::utc_ms());
                    event_loop
                        .mqtt_options
                        .set_last_will(last_will(&current.will));
                }
                tokio::select! {
                    () = stopping.cancelled() => return,
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn last_will(will: &Outgoing) -> LastWill {
    LastWill::new(
        will.topic.clone(),
        will.payload.clone(),
        QoS::AtLeastOnce,
        will.retain,
    )
}
