//! The MQTT client every service uses: connect, reconnect with backoff, typed publish and
//! subscribe, retained re-publish after every (re)connect, MQTT 5 request/response and the
//! service's health document with its Will.
//!
//! # Tasks and channels
//! [`UnsClient::start`] spawns one task, the *event loop*, which owns the rumqttc `EventLoop`
//! and is the only thing that reads from the socket. It forwards subscribed messages into the
//! [`Inbox`] (bounded: when the service falls behind, the event loop waits, so TCP pushes back
//! on the broker and nothing is dropped here), routes replies to pending requests, and after
//! every CONNACK spawns a short *resume* task that re-subscribes, re-publishes the retained
//! documents and the `running` health. The event loop ends when the client disconnects on
//! purpose ([`UnsClient::shutdown`]) or the shutdown token fires.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Filter, LastWill, Packet, Publish, PublishProperties, RetainForwardRule,
};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uns_model::payload::{CmdReply, Document, ErrorReport, HealthStatus, ServiceHealth, Timestamp};
use uns_model::topic::{Id, SegmentError, TopicFilter, UnsTopic};

use crate::broker_url::BrokerUrl;
use crate::metrics::{ClientMetrics, ErrorLabels, ServiceLabel};

/// The largest MQTT packet a client accepts (1 MiB of payload plus headers); larger ones are
/// refused by the client library rather than buffered.
pub const MAX_PACKET_SIZE: u32 = 1024 * 1024 + 64 * 1024;

/// How to connect one service to the broker.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The broker to connect to.
    pub broker: BrokerUrl,
    /// The service name: it names the health topic `uns/v1/_services/{service}`.
    pub service: Id,
    /// The MQTT client id; by default `uns-{service}`. A fixed id means a restarted service
    /// takes over its old session at once instead of waiting for the keepalive to expire.
    pub client_id: String,
    /// Username and password, if the broker requires them. Overrides credentials in the URL.
    pub credentials: Option<(String, String)>,
    /// MQTT keepalive.
    pub keep_alive: Duration,
    /// First wait after a failed connection attempt; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait between connection attempts.
    pub backoff_max: Duration,
    /// Capacity of the inbox between the event loop and the service.
    pub inbox_capacity: usize,
    /// Acknowledge a received QoS 1 message only when the service calls [`UnsClient::ack`] (after
    /// it has made the message durable), instead of on receipt. Replies to requests are still
    /// acknowledged at once.
    pub manual_acks: bool,
    /// Keep the MQTT session on the broker this long after a disconnect (MQTT 5 session expiry,
    /// `clean_start = false`), so subscribed messages published meanwhile wait for the client and
    /// unacknowledged ones are delivered again. `None`: a clean session on every connect.
    pub session_expiry: Option<Duration>,
}

impl ClientOptions {
    /// Defaults for `service` connecting to `broker`. Fails if `service` is not a valid id
    /// (`[a-z0-9-_.]`), since it becomes a topic segment.
    pub fn new(broker: BrokerUrl, service: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            broker,
            service: Id::new(service)?,
            client_id: format!("uns-{service}"),
            credentials: None,
            keep_alive: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            inbox_capacity: 10_000,
            manual_acks: false,
            session_expiry: None,
        })
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request queue to the event loop is closed: the client was shut down.
    #[error("the MQTT client is shut down")]
    Closed,
    /// A payload could not be serialized (a bug in the caller's type).
    #[error("cannot serialize the payload: {0}")]
    Serialize(#[from] serde_json::Error),
    /// No reply arrived in time for a request.
    #[error("no reply on {topic} within {timeout:?}")]
    Timeout {
        /// The request topic.
        topic: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The client did not connect within the given deadline.
    #[error("not connected to {broker} within {timeout:?}")]
    NotConnected {
        /// The broker we tried.
        broker: String,
        /// How long we waited.
        timeout: Duration,
    },
}

impl From<rumqttc::v5::ClientError> for ClientError {
    fn from(_: rumqttc::v5::ClientError) -> Self {
        ClientError::Closed
    }
}

/// One message received from a subscription.
#[derive(Clone, Debug)]
pub struct Message {
    /// The topic it was published on.
    pub topic: String,
    /// The raw payload.
    pub payload: Bytes,
    /// Whether it came from the broker's retained store.
    pub retain: bool,
    /// MQTT 5 Response Topic, set on requests.
    pub response_topic: Option<String>,
    /// MQTT 5 Correlation Data, set on requests.
    pub correlation_data: Option<Bytes>,
    /// The QoS it was delivered at (0, 1 or 2): the publisher's, capped at the subscription's.
    pub qos: u8,
    /// MQTT 5 User Properties, in the order sent.
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 Content Type.
    pub content_type: Option<String>,
    /// MQTT 5 Payload Format Indicator (1: UTF-8 text).
    pub payload_format_indicator: Option<u8>,
    /// MQTT 5 Message Expiry Interval, in seconds (what is left of it on delivery).
    pub message_expiry_interval: Option<u32>,
}

/// How [`UnsClient::subscribe_with`] subscribes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// The highest QoS (0, 1 or 2; higher values mean 2) the broker may deliver at.
    pub max_qos: u8,
    /// MQTT 5 Retain As Published: live messages keep the retain flag their publisher set, instead
    /// of the flag meaning only "from the retained store at subscribe time".
    pub retain_as_published: bool,
}

impl Default for SubscribeOptions {
    /// What [`UnsClient::subscribe`] uses: QoS 1, retain flag as MQTT's default.
    fn default() -> Self {
        Self {
            max_qos: 1,
            retain_as_published: false,
        }
    }
}

impl SubscribeOptions {
    fn filter(self, path: String) -> Filter {
        let qos = match self.max_qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let mut filter = Filter::new(path, qos);
        filter.preserve_retain = self.retain_as_published;
        filter.retain_forward_rule = RetainForwardRule::OnEverySubscribe;
        filter
    }
}

impl Message {
    /// Parses the topic as a UNS topic.
    pub fn uns_topic(&self) -> Result<UnsTopic, uns_model::topic::TopicError> {
        self.topic.parse()
    }
}

/// The receiving end for subscribed messages. Dropping it makes the event loop discard
/// further messages (the service has stopped listening).
pub struct Inbox {
    receiver: mpsc::Receiver<Message>,
}

impl Inbox {
    /// The next message, or `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }
}

/// A handle on a service's MQTT connection. Cheap to clone.
#[derive(Clone)]
pub struct UnsClient {
    inner: Arc<Inner>,
}

struct Inner {
    mqtt: AsyncClient,
    service: String,
    broker: BrokerUrl,
    /// Retained documents this service owns, by topic: re-published after every connect so a
    /// broker that lost its store (or a new broker) shows them again.
    retained: Mutex<BTreeMap<String, Bytes>>,
    /// Filters to re-subscribe after every connect (sessions are clean).
    subscriptions: Mutex<BTreeMap<String, SubscribeOptions>>,
    /// Received QoS 1 messages not yet acknowledged (manual acks only), oldest first; cleared on
    /// reconnect, since the broker delivers unacknowledged messages again on the new connection.
    unacked: Mutex<VecDeque<Publish>>,
    /// Requests waiting for a reply, by correlation data.
    pending: Mutex<HashMap<Bytes, oneshot::Sender<Message>>>,
    reply_topic: String,
    health_topic: UnsTopic,
    health: Mutex<ServiceHealth>,
    connected: watch::Sender<bool>,
    /// QoS 1 publishes handed to the event loop, and PUBACKs received: shutdown waits until
    /// the second catches up with the first, so the final `stopped` is on the broker before
    /// the DISCONNECT.
    n_queued: std::sync::atomic::AtomicU64,
    n_acked: watch::Sender<u64>,
    metrics: ClientMetrics,
    label: ServiceLabel,
}

impl UnsClient {
    /// Starts the client: spawns the event loop, which connects (and reconnects) on its own.
    /// Returns at once; use [`UnsClient::wait_connected`] to wait for the first connection.
    pub fn start(
        options: ClientOptions,
        metrics: ClientMetrics,
        shutdown: CancellationToken,
    ) -> (UnsClient, Inbox, JoinHandle<()>) {
        let health = ServiceHealth::new(
            options.service.clone(),
            HealthStatus::Starting,
            env!("CARGO_PKG_VERSION"),
            Timestamp::from(chrono::Utc::now()),
        );
        let health_topic = UnsTopic::Service {
            name: options.service.clone(),
        };
        let mut will_doc = health.clone();
        will_doc.status = HealthStatus::Stopped;
        will_doc.last_error = Some("connection lost (MQTT Will)".to_owned());

        let mut mqtt_options = MqttOptions::new(
            options.client_id.clone(),
            options.broker.host(),
            options.broker.port(),
        );
        mqtt_options.set_keep_alive(options.keep_alive);
        mqtt_options.set_max_packet_size(Some(MAX_PACKET_SIZE));
        mqtt_options.set_manual_acks(options.manual_acks);
        match options.session_expiry {
            Some(expiry) => {
                mqtt_options.set_clean_start(false);
                mqtt_options.set_session_expiry_interval(Some(
                    u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX),
                ));
            }
            None => {
                mqtt_options.set_clean_start(true);
            }
        }
        let credentials = options.credentials.clone().or_else(|| {
            let user = options.broker.username()?;
            Some((
                user.to_owned(),
                options.broker.password().unwrap_or_default().to_owned(),
            ))
        });
        if let Some((user, password)) = credentials {
            mqtt_options.set_credentials(user, password);
        }
        mqtt_options.set_last_will(LastWill::new(
            health_topic.to_string(),
            to_json(&will_doc),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        let (mqtt, event_loop) = AsyncClient::new(mqtt_options, 1024);
        let label = ServiceLabel {
            service: options.service.to_string(),
        };
        // Every series exists from the first scrape, at 0, so dashboards and alerts work before
        // the first reconnect or rejected message.
        metrics.published.get_or_create(&label).inc_by(0);
        metrics.received.get_or_create(&label).inc_by(0);
        metrics.reconnects.get_or_create(&label).inc_by(0);
        metrics.connected.get_or_create(&label).set(0);
        let (inbox_tx, inbox_rx) = mpsc::channel(options.inbox_capacity);
        let (connected, _) = watch::channel(false);
        let (n_acked, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            mqtt,
            label,
            service: options.service.to_string(),
            health_topic,
            broker: options.broker.clone(),
            retained: Mutex::default(),
            subscriptions: Mutex::default(),
            unacked: Mutex::default(),
            pending: Mutex::default(),
            reply_topic: reply_topic(&options.client_id).to_string(),
            health: Mutex::new(health),
            connected,
            n_queued: std::sync::atomic::AtomicU64::new(0),
            n_acked,
            metrics,
        });
        let task = tokio::spawn(run_event_loop(
            inner.clone(),
            event_loop,
            inbox_tx,
            options,
            shutdown,
        ));
        (UnsClient { inner }, Inbox { receiver: inbox_rx }, task)
    }

    /// The service name this client reports health for.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// A receiver that sees every connect and disconnect.
    pub fn connection_state(&self) -> watch::Receiver<bool> {
        self.inner.connected.subscribe()
    }

    /// Waits until the client is connected, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut state = self.inner.connected.subscribe();
        tokio::time::timeout(timeout, state.wait_for(|connected| *connected))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|_| ())
            .ok_or_else(|| ClientError::NotConnected {
                broker: self.inner.broker.to_string(),
                timeout,
            })
    }

    /// Subscribes to `filter` at QoS 1, now and after every reconnect.
    pub async fn subscribe(&self, filter: &TopicFilter) -> Result<(), ClientError> {
        self.subscribe_with(filter, SubscribeOptions::default())
            .await
    }

    /// Subscribes to any filter (also outside the UNS tree: `#`, `$SYS/#`, `spBv1.0/#`) with the
    /// given options, now and after every reconnect.
    pub async fn subscribe_with(
        &self,
        filter: &TopicFilter,
        options: SubscribeOptions,
    ) -> Result<(), ClientError> {
        let filter = filter.to_string();
        lock(&self.inner.subscriptions).insert(filter.clone(), options);
        self.inner
            .mqtt
            .subscribe_many([options.filter(filter)])
            .await?;
        Ok(())
    }

    /// Publishes a typed document on a typed topic, retained when the topic's class is
    /// retained (DESIGN §2), at QoS 1. Retained documents are remembered and re-published after
    /// every reconnect.
    pub async fn publish<T: Document + Serialize>(
        &self,
        topic: &UnsTopic,
        document: &T,
    ) -> Result<(), ClientError> {
        let payload = Bytes::from(serde_json::to_vec(document)?);
        self.publish_bytes(topic, payload).await
    }

    /// Publishes raw bytes on a typed topic (retained per the topic's class).
    pub async fn publish_bytes(&self, topic: &UnsTopic, payload: Bytes) -> Result<(), ClientError> {
        let retain = topic.is_retained();
        let topic = topic.to_string();
        if retain {
            lock(&self.inner.retained).insert(topic.clone(), payload.clone());
        }
        self.inner.count_queued();
        self.inner
            .mqtt
            .publish_bytes(topic, QoS::AtLeastOnce, retain, payload)
            .await?;
        self.inner
            .metrics
            .published
            .get_or_create(&self.inner.label)
            .inc();
        Ok(())
    }

    /// Acknowledges `message` to the broker (with [`ClientOptions::manual_acks`]; a no-op
    /// otherwise, for QoS 0, and for a message received before the last reconnect, which the
    /// broker delivers again).
    pub async fn ack(&self, message: &Message) -> Result<(), ClientError> {
        let publish = {
            let mut unacked = lock(&self.inner.unacked);
            let position = unacked.iter().position(|publish| {
                publish.topic.as_ref() == message.topic.as_bytes()
                    && publish.payload == message.payload
            });
            position.and_then(|idx| unacked.remove(idx))
        };
        if let Some(publish) = publish {
            self.inner.mqtt.ack(&publish).await?;
        }
        Ok(())
    }

    /// Sends an MQTT 5 request to `topic` (usually a `_cmd/...` topic) and waits for the
    /// reply on this client's reply topic, at most `timeout`.
    pub async fn request<T: Serialize>(
        &self,
        topic: &UnsTopic,
        body: &T,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let correlation = Bytes::copy_from_slice(uuid::Uuid::now_v7().as_bytes());
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.inner.pending).insert(correlation.clone(), reply_tx);
        let properties = PublishProperties {
            response_topic: Some(self.inner.reply_topic.clone()),
            correlation_data: Some(correlation.clone()),
            ..PublishProperties::default()
        };
        let payload = serde_json::to_vec(body)?;
        let topic_text = topic.to_string();
        self.inner.count_queued();
        let sent = self
            .inner
            .mqtt
            .publish_with_properties(
                topic_text.clone(),
                QoS::AtLeastOnce,
                false,
                payload,
                properties,
            )
            .await;
        if let Err(err) = sent {
            lock(&self.inner.pending).remove(&correlation);
            return Err(err.into());
        }
        match tokio::time::timeout(timeout, reply_rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                lock(&self.inner.pending).remove(&correlation);
                Err(ClientError::Timeout {
                    topic: topic_text,
                    timeout,
                })
            }
        }
    }

    /// Answers a request received in `request` (MQTT 5 Response Topic + Correlation Data).
    /// A request without a response topic is answered nowhere; returns `false` then.
    pub async fn reply(&self, request: &Message, reply: &CmdReply) -> Result<bool, ClientError> {
        let Some(response_topic) = request.response_topic.clone() else {
            return Ok(false);
        };
        let properties = PublishProperties {
            correlation_data: request.correlation_data.clone(),
            ..PublishProperties::default()
        };
        self.inner.count_queued();
        self.inner
            .mqtt
            .publish_with_properties(
                response_topic,
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(reply)?,
                properties,
            )
            .await?;
        Ok(true)
    }

    /// Reports rejected input on the `_errors` topic given, and counts it under `kind`.
    pub async fn report_error(
        &self,
        errors_topic: &UnsTopic,
        kind: &str,
        report: &ErrorReport,
    ) -> Result<(), ClientError> {
        warn!(service = %self.inner.service, kind, reason = %report.reason, "rejected input");
        self.inner
            .metrics
            .rejected
            .get_or_create(&ErrorLabels {
                service: self.inner.service.clone(),
                kind: kind.to_owned(),
            })
            .inc();
        self.publish(errors_topic, report).await
    }

    /// Sets and publishes the service's health document (retained).
    pub async fn set_health(
        &self,
        status: HealthStatus,
        last_error: Option<String>,
    ) -> Result<(), ClientError> {
        let health = {
            let mut health = lock(&self.inner.health);
            health.status = status;
            if last_error.is_some() {
                health.last_error = last_error;
            }
            health.clone()
        };
        self.publish(&self.inner.health_topic, &health).await
    }

    /// Sets the restart count of the health document (published with the next health change).
    pub fn set_restarts(&self, restarts: u32) {
        lock(&self.inner.health).restarts = restarts;
    }

    /// Publishes `stopped` and disconnects cleanly (so the broker discards the Will), waiting at
    /// most `grace` for the disconnect to go out. The event loop ends after it; a client that
    /// is not connected has nothing to flush and its event loop ends with the shutdown token.
    pub async fn shutdown(&self, grace: Duration) {
        if !self.is_connected() {
            return;
        }
        let stopping = async {
            if let Err(err) = self.set_health(HealthStatus::Stopped, None).await {
                debug!(cause = %err, "publishing stopped health");
            }
            // Everything published so far, `stopped` last, is acknowledged by the broker
            // before we say goodbye.
            let target = self
                .inner
                .n_queued
                .load(std::sync::atomic::Ordering::SeqCst);
            let mut acked = self.inner.n_acked.subscribe();
            let _ = acked.wait_for(|n_acked| *n_acked >= target).await;
            let _ = self.inner.mqtt.disconnect().await;
            let mut state = self.inner.connected.subscribe();
            let _ = state.wait_for(|connected| !*connected).await;
        };
        if tokio::time::timeout(grace, stopping).await.is_err() {
            warn!(service = %self.inner.service, ?grace, "MQTT client did not stop in time");
        }
    }
}

/// The topic on which a client receives replies to its requests.
fn reply_topic(client_id: &str) -> UnsTopic {
    UnsTopic::Reply {
        client: uns_model::topic::slug(client_id),
    }
}

async fn run_event_loop(
    inner: Arc<Inner>,
    mut event_loop: EventLoop,
    inbox: mpsc::Sender<Message>,
    options: ClientOptions,
    shutdown: CancellationToken,
) {
    let mut backoff = options.backoff_min;
    let mut n_connects: u64 = 0;
    loop {
        let event = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            event = event_loop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = options.backoff_min;
                n_connects += 1;
                if n_connects > 1 {
                    inner.metrics.reconnects.get_or_create(&inner.label).inc();
                }
                inner.metrics.connected.get_or_create(&inner.label).set(1);
                lock(&inner.unacked).clear();
                inner.connected.send_replace(true);
                info!(service = %inner.service, broker = %options.broker, "connected");
                tokio::spawn(resume(inner.clone()));
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                inner.metrics.received.get_or_create(&inner.label).inc();
                let manual = options.manual_acks && publish.qos != QoS::AtMostOnce;
                let message = to_message(publish.clone());
                if message.topic == inner.reply_topic {
                    if manual {
                        // Not the service's to acknowledge; `try_ack` since awaiting the request
                        // queue from inside the event loop could wait for ourselves.
                        let _ = inner.mqtt.try_ack(&publish);
                    }
                    route_reply(&inner, message);
                } else {
                    if manual {
                        lock(&inner.unacked).push_back(publish);
                    }
                    if inbox.send(message).await.is_err() {
                        debug!(service = %inner.service, "inbox dropped; message discarded");
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                inner.n_acked.send_modify(|n_acked| *n_acked += 1);
            }
            Ok(Event::Incoming(Packet::Disconnect(disconnect))) => {
                warn!(service = %inner.service, reason = ?disconnect.reason_code, "broker disconnected us");
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(err) => {
                inner.metrics.connected.get_or_create(&inner.label).set(0);
                if inner.connected.send_replace(false) {
                    warn!(service = %inner.service, broker = %options.broker, cause = %err, "connection lost; reconnecting");
                } else {
                    debug!(service = %inner.service, broker = %options.broker, cause = %err, ?backoff, "connect failed; retrying");
                }
                // Backoff between attempts, cut short by shutdown.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(options.backoff_max);
            }
        }
    }
    inner.connected.send_replace(false);
    inner.metrics.connected.get_or_create(&inner.label).set(0);
}

/// After a (re)connect: subscriptions, retained documents, `running` health.
async fn resume(inner: Arc<Inner>) {
    let mut filters: Vec<Filter> = lock(&inner.subscriptions)
        .iter()
        .map(|(filter, options)| options.filter(filter.clone()))
        .collect();
    filters.push(SubscribeOptions::default().filter(inner.reply_topic.clone()));
    for filter in filters {
        if inner.mqtt.subscribe_many([filter]).await.is_err() {
            return;
        }
    }
    let retained: Vec<(String, Bytes)> = lock(&inner.retained)
        .iter()
        .map(|(topic, payload)| (topic.clone(), payload.clone()))
        .collect();
    for (topic, payload) in retained {
        inner.count_queued();
        if inner
            .mqtt
            .publish_bytes(topic, QoS::AtLeastOnce, true, payload)
            .await
            .is_err()
        {
            return;
        }
    }
    let health = {
        let mut health = lock(&inner.health);
        // The first connection makes a starting service `running`; after a reconnect the status
        // stays what the service (or its supervisor) last said: degraded or failed stay visible.
        if health.status == HealthStatus::Starting {
            health.status = HealthStatus::Running;
        }
        health.clone()
    };
    let topic = inner.health_topic.to_string();
    let payload = to_json(&health);
    lock(&inner.retained).insert(topic.clone(), Bytes::from(payload.clone()));
    inner.count_queued();
    let _ = inner
        .mqtt
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await;
}

impl Inner {
    fn count_queued(&self) {
        self.n_queued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn route_reply(inner: &Inner, message: Message) {
    let Some(correlation) = message.correlation_data.clone() else {
        debug!(service = %inner.service, "reply without correlation data; dropped");
        return;
    };
    match lock(&inner.pending).remove(&correlation) {
        Some(waiter) => {
            let _ = waiter.send(message);
        }
        None => debug!(service = %inner.service, "reply for an unknown or timed-out request"),
    }
}

fn to_message(publish: rumqttc::v5::mqttbytes::v5::Publish) -> Message {
    let properties = publish.properties.unwrap_or_default();
    Message {
        topic: String::from_utf8_lossy(&publish.topic).into_owned(),
        payload: publish.payload,
        retain: publish.retain,
        response_topic: properties.response_topic,
        correlation_data: properties.correlation_data,
        qos: match publish.qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        },
        user_properties: properties.user_properties,
        content_type: properties.content_type,
        payload_format_indicator: properties.payload_format_indicator,
        message_expiry_interval: properties.message_expiry_interval,
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own payload types serialize infallibly (no maps with non-string keys, no
    // fallible Serialize impls), so an error here is a bug worth an empty payload and a log.
    serde_json::to_vec(value).unwrap_or_else(|err| {
        warn!(cause = %err, "serializing an internal document failed");
        Vec::new()
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected maps stay consistent even if a holder panicked mid-way (each update is a
    // single insert or remove), so a poisoned lock is safe to keep using.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
