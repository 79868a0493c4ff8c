//! Compatibility suite: real MQTT clients (rumqttc, 3.1.1 and 5) against the embedded broker
//! over real sockets on 127.0.0.1:0.
//!
//! Tests run in parallel threads of this one binary, each with its own broker: rmqtt keeps no
//! process-global state that couples two brokers (see `rmqtt_engine/mod.rs`). Every wait is
//! bounded by a deadline; the only "waits" are in tests whose subject is "nothing happens for N
//! seconds" (MQTT Explorer staying connected), where the wait is the behaviour under test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as Qos5;
use rumqttc::v5::mqttbytes::v5 as mqtt5;
use rumqttc::{Event, Packet, QoS, SubscribeFilter};
use tokio::time::timeout;
use uns_broker::{BrokerConfig, BrokerHandle, BrokerStats, Secret, User};

type Result<T = ()> = anyhow::Result<T>;

/// Generous upper bound for anything that should happen "promptly" on a loaded CI box.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers.

struct TestBroker {
    handle: BrokerHandle,
    dir: tempfile::TempDir,
}

fn test_config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("valid"),
        ws_listen: Some("127.0.0.1:0".parse().expect("valid")),
        data_dir: dir.to_owned(),
        sys_interval: Duration::from_secs(1),
        ..BrokerConfig::default()
    }
}

async fn start_broker() -> Result<TestBroker> {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> Result<TestBroker> {
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let handle = uns_broker::start(config).await?;
    Ok(TestBroker { handle, dir })
}

impl TestBroker {
    fn port(&self) -> u16 {
        self.handle.mqtt_addr().port()
    }

    async fn wait_stats(
        &self,
        what: &str,
        done: impl Fn(&BrokerStats) -> bool,
    ) -> Result<BrokerStats> {
        let wait = async {
            let mut poll = tokio::time::interval(Duration::from_millis(10));
            loop {
                poll.tick().await;
                let stats = self.handle.stats();
                if done(&stats) {
                    return stats;
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .with_context(|| format!("waiting for {what}; stats {:?}", self.handle.stats()))
    }
}

/// An MQTT 3.1.1 client whose event loop runs in a task, forwarding what it receives.
struct V4 {
    client: rumqttc::AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<std::result::Result<Packet, String>>,
    /// PUBLISHes that arrived while a helper waited for another packet (SUBACK, PUBACK).
    pending: std::collections::VecDeque<rumqttc::Publish>,
    task: tokio::task::JoinHandle<()>,
}

fn v4_options(id: &str, port: u16) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options
}

/// Connects and waits for the CONNACK; fails if the broker refuses.
async fn v4_connect(options: rumqttc::MqttOptions) -> Result<V4> {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10_000);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if tx.send(Ok(packet)).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    match timeout(DEADLINE, events.recv())
        .await
        .context("waiting for CONNACK")?
    {
        Some(Ok(Packet::ConnAck(ack))) if ack.code == rumqttc::ConnectReturnCode::Success => {
            Ok(V4 {
                client,
                events,
                pending: Default::default(),
                task,
            })
        }
        other => bail!("connect failed: {other:?}"),
    }
}

async fn v4(id: &str, port: u16) -> Result<V4> {
    v4_connect(v4_options(id, port)).await
}

impl V4 {
    /// The next PUBLISH; errors on disconnect or after the deadline.
    async fn next_publish(&mut self) -> Result<rumqttc::Publish> {
        if let Some(publish) = self.pending.pop_front() {
            return Ok(publish);
        }
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Packet::Publish(publish))) => return Ok(publish),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("connection error: {e}"),
                    None => bail!("event loop ended"),
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .context("waiting for a PUBLISH")?
    }

    /// Waits for the SUBACK of the last subscribe.
    async fn suback(&mut self) -> Result<rumqttc::SubAck> {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Packet::SubAck(ack))) => return Ok(ack),
                    Some(Ok(Packet::Publish(publish))) => self.pending.push_back(publish),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("connection error: {e}"),
                    None => bail!("event loop ended"),
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .context("waiting for SUBACK")?
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result {
        self.client.subscribe(filter, qos).await?;
        self.suback().await?;
        Ok(())
    }

    /// Publishes `count` QoS 1 messages and waits for every PUBACK.
    async fn publish_acked(&mut self, messages: Vec<(String, Bytes, bool)>) -> Result {
        let n_messages = messages.len();
        let client = self.client.clone();
        let sender = tokio::spawn(async move {
            for (topic, payload, retain) in messages {
                client
                    .publish_bytes(topic, QoS::AtLeastOnce, retain, payload)
                    .await?;
            }
            anyhow::Ok(())
        });
        let mut n_acked = 0;
        let wait = async {
            while n_acked < n_messages {
                match self.events.recv().await {
                    Some(Ok(Packet::PubAck(_))) => n_acked += 1,
                    Some(Ok(Packet::Publish(publish))) => self.pending.push_back(publish),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("connection error: {e}"),
                    None => bail!("event loop ended"),
                }
            }
            Ok(())
        };
        timeout(DEADLINE * 3, wait)
            .await
            .context("waiting for PUBACKs")??;
        sender.await??;
        Ok(())
    }

    /// Ends the TCP connection without DISCONNECT (the event loop owns the socket).
    async fn drop_connection(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Sends DISCONNECT and waits until the broker closed the connection.
    async fn disconnect(mut self) -> Result {
        self.client.disconnect().await?;
        let wait = async {
            while let Some(event) = self.events.recv().await {
                if event.is_err() {
                    break;
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .context("waiting for disconnect")?;
        Ok(())
    }
}

/// An MQTT 5 client, same shape as [`V4`].
struct V5 {
    client: rumqttc::v5::AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<std::result::Result<mqtt5::Packet, String>>,
    connack: mqtt5::ConnAck,
    /// PUBLISHes that arrived while a helper waited for a SUBACK.
    pending: std::collections::VecDeque<mqtt5::Publish>,
    task: tokio::task::JoinHandle<()>,
}

fn v5_options(id: &str, port: u16) -> rumqttc::v5::MqttOptions {
    let mut options = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(Some(1 << 20));
    options
}

async fn v5_connect(options: rumqttc::v5::MqttOptions) -> Result<V5> {
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10_000);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(packet)) => {
                    if tx.send(Ok(packet)).is_err() {
                        return;
                    }
                }
                Ok(rumqttc::v5::Event::Outgoing(_)) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    match timeout(DEADLINE, events.recv())
        .await
        .context("waiting for CONNACK")?
    {
        Some(Ok(mqtt5::Packet::ConnAck(ack))) if ack.code == mqtt5::ConnectReturnCode::Success => {
            Ok(V5 {
                client,
                events,
                connack: ack,
                pending: Default::default(),
                task,
            })
        }
        other => bail!("connect failed: {other:?}"),
    }
}

async fn v5(id: &str, port: u16) -> Result<V5> {
    v5_connect(v5_options(id, port)).await
}

impl V5 {
    async fn next_publish(&mut self) -> Result<mqtt5::Publish> {
        if let Some(publish) = self.pending.pop_front() {
            return Ok(publish);
        }
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(Ok(mqtt5::Packet::Publish(publish))) => return Ok(publish),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("connection error: {e}"),
                    None => bail!("event loop ended"),
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .context("waiting for a PUBLISH")?
    }

    async fn subscribe(&mut self, filter: &str, qos: Qos5) -> Result {
        self.client.subscribe(filter, qos).await?;
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(Ok(mqtt5::Packet::SubAck(ack))) => return Ok(ack),
                    Some(Ok(mqtt5::Packet::Publish(publish))) => self.pending.push_back(publish),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("connection error: {e}"),
                    None => bail!("event loop ended"),
                }
            }
        };
        let ack = timeout(DEADLINE, wait)
            .await
            .context("waiting for SUBACK")??;
        ensure!(
            ack.return_codes
                .iter()
                .all(|code| matches!(code, mqtt5::SubscribeReasonCode::Success(_))),
            "subscribe {filter} refused: {ack:?}"
        );
        Ok(())
    }

    async fn drop_connection(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn disconnect(mut self) -> Result {
        self.client.disconnect().await?;
        let wait = async {
            while let Some(event) = self.events.recv().await {
                if event.is_err() {
                    break;
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .context("waiting for disconnect")?;
        Ok(())
    }
}

fn topic_of(publish: &rumqttc::Publish) -> String {
    publish.topic.clone()
}

fn retained(topic: impl Into<String>, payload: &str) -> (String, Bytes, bool) {
    (topic.into(), Bytes::from(payload.to_owned()), true)
}

fn v5_qos(qos: u8) -> Qos5 {
    match qos {
        0 => Qos5::AtMostOnce,
        1 => Qos5::AtLeastOnce,
        _ => Qos5::ExactlyOnce,
    }
}

fn v4_qos(qos: u8) -> QoS {
    match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Receives until every topic in `expected` was seen; returns topic -> payload.
async fn collect_topics(
    sub: &mut V4,
    expected: &BTreeSet<String>,
) -> Result<BTreeMap<String, Bytes>> {
    let mut seen = BTreeMap::new();
    while !expected.iter().all(|topic| seen.contains_key(topic)) {
        let publish = sub.next_publish().await.with_context(|| {
            format!(
                "received {} of {} expected topics",
                seen.len(),
                expected.len()
            )
        })?;
        seen.insert(topic_of(&publish), publish.payload.clone());
    }
    Ok(seen)
}

// ---------------------------------------------------------------------------------------------
// (a) MQTT Explorer.

/// MQTT Explorer: 3.1.1, `#` and `$SYS/#` at QoS 0, keepalive 5 s here so pings happen during
/// the observation window. `one_packet` = both filters in one SUBSCRIBE.
async fn mqtt_explorer(one_packet: bool) -> Result {
    let broker = start_broker().await?;
    let mut publisher = v4("plant", broker.port()).await?;
    let topics: BTreeSet<String> = (0..50)
        .map(|i| format!("uns/v1/acme/berlin/line-{i}/_state"))
        .collect();
    publisher
        .publish_acked(
            topics
                .iter()
                .map(|t| retained(t.clone(), "{\"state\":\"running\"}"))
                .collect(),
        )
        .await?;

    let mut options = v4_options("mqtt-explorer-1234", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let mut explorer = v4_connect(options).await?;
    if one_packet {
        explorer
            .client
            .subscribe_many([
                SubscribeFilter::new("#".into(), QoS::AtMostOnce),
                SubscribeFilter::new("$SYS/#".into(), QoS::AtMostOnce),
            ])
            .await?;
        let ack = explorer.suback().await?;
        ensure!(ack.return_codes.len() == 2, "{ack:?}");
    } else {
        explorer.subscribe("#", QoS::AtMostOnce).await?;
        explorer.subscribe("$SYS/#", QoS::AtMostOnce).await?;
    }
    let mut expected = topics.clone();
    expected.insert("$SYS/broker/version".into());
    let seen = collect_topics(&mut explorer, &expected).await?;
    ensure!(seen.len() >= expected.len());

    // The behaviour under test is "stays connected": observe for 10 s and fail on any error.
    let observe = async {
        loop {
            match explorer.events.recv().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::anyhow!("disconnected: {e}")),
                None => return Err(anyhow::anyhow!("event loop ended")),
            }
        }
    };
    match timeout(Duration::from_secs(10), observe).await {
        Err(_elapsed) => {}
        Ok(result) => result?,
    }
    // Still served: a fresh publish arrives.
    publisher
        .publish_acked(vec![(
            "uns/v1/after".into(),
            Bytes::from_static(b"x"),
            false,
        )])
        .await?;
    loop {
        if explorer.next_publish().await?.topic == "uns/v1/after" {
            break;
        }
    }
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_mqtt_explorer_one_subscribe_stays_connected_and_gets_retained() -> Result {
    mqtt_explorer(true).await
}

#[tokio::test]
async fn a_mqtt_explorer_two_subscribes_stays_connected_and_gets_retained() -> Result {
    mqtt_explorer(false).await
}

// ---------------------------------------------------------------------------------------------
// (b) Many retained topics.

#[tokio::test]
async fn b_five_thousand_retained_reach_a_new_hash_subscriber() -> Result {
    let broker = start_broker().await?;
    let mut publisher = v4("bulk", broker.port()).await?;
    let topics: BTreeSet<String> = (0..5000)
        .map(|i| format!("uns/v1/site/tag-{i:05}"))
        .collect();
    publisher
        .publish_acked(topics.iter().map(|t| retained(t.clone(), t)).collect())
        .await?;
    broker
        .wait_stats("5000 retained", |s| s.retained_messages >= 5000)
        .await?;

    let mut sub = v4("explorer", broker.port()).await?;
    sub.subscribe("#", QoS::AtMostOnce).await?;
    let seen = collect_topics(&mut sub, &topics).await?;
    for topic in &topics {
        ensure!(seen[topic] == topic.as_bytes(), "payload of {topic}");
    }
    ensure!(broker.handle.stats().messages_dropped == 0);
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (c) MQTT 5 properties to a 3.1.1 subscriber.

fn rich_properties() -> mqtt5::PublishProperties {
    mqtt5::PublishProperties {
        user_properties: vec![
            ("source".into(), "scada".into()),
            ("unit".into(), "CEL".into()),
        ],
        correlation_data: Some(Bytes::from_static(b"req-42")),
        response_topic: Some("uns/v1/_reply/abc".into()),
        content_type: Some("application/json".into()),
        payload_format_indicator: Some(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn c_v5_properties_reach_a_v311_subscriber_without_crashing_anything() -> Result {
    let broker = start_broker().await?;
    let mut old = v4("legacy-sub", broker.port()).await?;
    old.subscribe("req/#", QoS::AtLeastOnce).await?;
    let mut modern = v5("modern-sub", broker.port()).await?;
    modern.subscribe("req/#", Qos5::AtLeastOnce).await?;
    let publisher = v5("v5-pub", broker.port()).await?;
    publisher
        .client
        .publish_with_properties(
            "req/a",
            Qos5::AtLeastOnce,
            false,
            "{\"x\":1}",
            rich_properties(),
        )
        .await?;

    let got = old.next_publish().await?;
    ensure!(
        got.topic == "req/a" && got.payload == "{\"x\":1}",
        "{got:?}"
    );
    let got5 = modern.next_publish().await?;
    let properties = got5
        .properties
        .context("v5 subscriber lost the properties")?;
    ensure!(properties.user_properties == rich_properties().user_properties);
    ensure!(properties.correlation_data == rich_properties().correlation_data);
    ensure!(properties.response_topic == rich_properties().response_topic);

    // Nothing crashed: both subscribers and the broker keep working.
    publisher
        .client
        .publish("req/b", Qos5::AtLeastOnce, false, "2")
        .await?;
    ensure!(old.next_publish().await?.topic == "req/b");
    ensure!(modern.next_publish().await?.topic == Bytes::from_static(b"req/b"));
    let mut late = v4("late", broker.port()).await?;
    late.subscribe("req/#", QoS::AtMostOnce).await?;
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (d) Both protocol versions on one port.

#[tokio::test]
async fn d_v311_and_v5_clients_share_one_port() -> Result {
    let broker = start_broker().await?;
    let mut old = v4("old", broker.port()).await?;
    let mut new = v5("new", broker.port()).await?;
    old.subscribe("from/v5", QoS::AtLeastOnce).await?;
    new.subscribe("from/v4", Qos5::AtLeastOnce).await?;
    old.client
        .publish("from/v4", QoS::AtLeastOnce, false, "hello v5")
        .await?;
    new.client
        .publish("from/v5", Qos5::AtLeastOnce, false, "hello v4")
        .await?;
    ensure!(new.next_publish().await?.payload == "hello v5");
    ensure!(old.next_publish().await?.payload == "hello v4");
    ensure!(broker.handle.stats().clients_connected == 2);
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (e) Keepalive 0.

#[tokio::test]
async fn e_keepalive_zero_is_accepted() -> Result {
    let broker = start_broker().await?;
    let mut options = v4_options("no-keepalive", broker.port());
    options.set_keep_alive(Duration::ZERO);
    let mut client = v4_connect(options).await?;
    client.subscribe("k/#", QoS::AtLeastOnce).await?;
    client
        .client
        .publish("k/1", QoS::AtLeastOnce, false, "x")
        .await?;
    ensure!(client.next_publish().await?.topic == "k/1");
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (f) Delivered QoS = min(publish, subscription).

#[tokio::test]
async fn f_delivered_qos_is_min_of_publish_and_subscription_v311() -> Result {
    let broker = start_broker().await?;
    let mut sub = v4("qos-sub", broker.port()).await?;
    for sub_qos in 0..=2u8 {
        sub.subscribe(&format!("q/{sub_qos}/+"), v4_qos(sub_qos))
            .await?;
    }
    let publisher = v4("qos-pub", broker.port()).await?;
    let mut expected = BTreeMap::new();
    for sub_qos in 0..=2u8 {
        for pub_qos in 0..=2u8 {
            let topic = format!("q/{sub_qos}/{pub_qos}");
            publisher
                .client
                .publish(topic.clone(), v4_qos(pub_qos), false, "x")
                .await?;
            expected.insert(topic, v4_qos(sub_qos.min(pub_qos)));
        }
    }
    let mut seen = BTreeMap::new();
    while seen.len() < expected.len() {
        let publish = sub.next_publish().await?;
        seen.insert(publish.topic.clone(), publish.qos);
    }
    ensure!(
        seen == expected,
        "delivered {seen:?}, expected {expected:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn f_delivered_qos_is_min_of_publish_and_subscription_v5() -> Result {
    let broker = start_broker().await?;
    let mut sub = v5("qos-sub5", broker.port()).await?;
    for sub_qos in 0..=2u8 {
        sub.subscribe(&format!("q/{sub_qos}/+"), v5_qos(sub_qos))
            .await?;
    }
    let publisher = v5("qos-pub5", broker.port()).await?;
    let mut expected = BTreeMap::new();
    for sub_qos in 0..=2u8 {
        for pub_qos in 0..=2u8 {
            let topic = format!("q/{sub_qos}/{pub_qos}");
            publisher
                .client
                .publish(topic.clone(), v5_qos(pub_qos), false, "x")
                .await?;
            expected.insert(Bytes::from(topic), v5_qos(sub_qos.min(pub_qos)));
        }
    }
    let mut seen = BTreeMap::new();
    while seen.len() < expected.len() {
        let publish = sub.next_publish().await?;
        seen.insert(publish.topic.clone(), publish.qos);
    }
    ensure!(
        seen == expected,
        "delivered {seen:?}, expected {expected:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (g) Wills.

fn with_will(mut options: rumqttc::MqttOptions, topic: &str) -> rumqttc::MqttOptions {
    options.set_last_will(rumqttc::LastWill::new(
        topic,
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    options
}

#[tokio::test]
async fn g_will_is_published_on_abrupt_close() -> Result {
    let broker = start_broker().await?;
    let mut watcher = v4("watcher", broker.port()).await?;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await?;
    let node = v4_connect(with_will(
        v4_options("node-a", broker.port()),
        "will/node-a",
    ))
    .await?;
    node.drop_connection().await;
    let will = watcher.next_publish().await?;
    ensure!(
        will.topic == "will/node-a" && will.payload == "offline",
        "{will:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn g_will_is_not_published_after_clean_disconnect() -> Result {
    let broker = start_broker().await?;
    let mut watcher = v4("watcher", broker.port()).await?;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await?;
    let node = v4_connect(with_will(
        v4_options("node-b", broker.port()),
        "will/node-b",
    ))
    .await?;
    node.disconnect().await?;
    broker
        .wait_stats("node-b gone", |s| s.clients_connected == 1)
        .await?;
    // A marker published after the disconnect was processed: if a Will had been published it
    // would arrive before the marker (the broker publishes a Will while tearing the
    // connection down, before the client counts as gone).
    let marker = v4("marker", broker.port()).await?;
    marker
        .client
        .publish("will/marker", QoS::AtLeastOnce, false, "m")
        .await?;
    let first = watcher.next_publish().await?;
    ensure!(first.topic == "will/marker", "unexpected {first:?}");
    broker.handle.shutdown().await?;
    Ok(())
}

/// MQTT 3.1.1 §3.1.4 (CONNECT actions, point 2): "If the ClientId represents a Client already
/// connected to the Server then the Server MUST disconnect the existing Client [MQTT-3.1.4-2]."
/// §3.1.2.5: the Will is published when the Network Connection is closed "for any reason other
/// than the Client sending a DISCONNECT" [MQTT-3.1.2-8]; takeover is such a close. So the old
/// client's Will is published, whatever the clean-session flags.
async fn v311_takeover(clean_session: bool) -> Result {
    let broker = start_broker().await?;
    let mut watcher = v4("watcher", broker.port()).await?;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await?;
    let mut first_options = with_will(v4_options("dup-id", broker.port()), "will/dup-id");
    first_options.set_clean_session(clean_session);
    let mut first = v4_connect(first_options).await?;
    let mut second_options = v4_options("dup-id", broker.port());
    second_options.set_clean_session(clean_session);
    let _second = v4_connect(second_options).await?;
    let will = watcher.next_publish().await?;
    ensure!(
        will.topic == "will/dup-id" && will.payload == "offline",
        "{will:?}"
    );
    // Exactly once: a marker published now is the next message.
    watcher
        .client
        .publish("will/marker", QoS::AtLeastOnce, false, "m")
        .await?;
    let next = watcher.next_publish().await?;
    ensure!(next.topic == "will/marker", "duplicate Will: {next:?}");
    // The old client was disconnected.
    let closed = timeout(DEADLINE, async {
        loop {
            match first.events.recv().await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    })
    .await;
    ensure!(closed.is_ok(), "old client still connected after takeover");
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn g_v311_takeover_publishes_old_will_clean_session() -> Result {
    v311_takeover(true).await
}

#[tokio::test]
async fn g_v311_takeover_publishes_old_will_persistent_session() -> Result {
    v311_takeover(false).await
}

/// MQTT 5 §3.1.4 point 3: the Server sends DISCONNECT 0x8E (Session taken over) to the existing
/// client, and "If the existing Client has a Will Message, that Will Message is published as
/// described in section 3.1.2.5" — with Will Delay Interval 0 that is at once [MQTT-3.1.2-8].
#[tokio::test]
async fn g_v5_takeover_publishes_old_will_without_delay() -> Result {
    let broker = start_broker().await?;
    let mut watcher = v5("watcher5", broker.port()).await?;
    watcher.subscribe("will/#", Qos5::AtLeastOnce).await?;
    let mut first_options = v5_options("dup5", broker.port());
    first_options.set_last_will(mqtt5::LastWill::new(
        "will/dup5",
        "offline",
        Qos5::AtLeastOnce,
        false,
        None,
    ));
    first_options.set_session_expiry_interval(Some(300));
    first_options.set_clean_start(false);
    let _first = v5_connect(first_options).await?;
    let mut second_options = v5_options("dup5", broker.port());
    second_options.set_session_expiry_interval(Some(300));
    second_options.set_clean_start(false);
    let _second = v5_connect(second_options).await?;
    let will = watcher.next_publish().await?;
    ensure!(
        will.topic == "will/dup5" && will.payload == "offline",
        "{will:?}"
    );
    watcher
        .client
        .publish("will/marker", Qos5::AtLeastOnce, false, "m")
        .await?;
    let next = watcher.next_publish().await?;
    ensure!(
        next.topic == Bytes::from_static(b"will/marker"),
        "duplicate Will: {next:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (h) Slow subscriber: nothing lost within the queue limit, drops counted beyond it.

#[tokio::test]
async fn h_slow_qos1_subscriber_loses_nothing_within_queue_limit_and_drops_are_counted() -> Result {
    const QUEUE: usize = 50;
    const INFLIGHT: usize = 5;
    let broker = start_with(|c| {
        c.max_queue = QUEUE;
        c.max_inflight = INFLIGHT;
    })
    .await?;
    // The subscriber's event loop is only polled after the burst: a slow consumer.
    let sub_options = v4_options("slow", broker.port());
    let (sub_client, mut sub_loop) = rumqttc::AsyncClient::new(sub_options, 100);
    sub_client.subscribe("slow/#", QoS::AtLeastOnce).await?;
    timeout(DEADLINE, async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await? {
                return anyhow::Ok(());
            }
        }
    })
    .await??;

    let mut publisher = v4("fast", broker.port()).await?;
    /// Polls the slow subscriber until every one of `want` messages is either received or
    /// counted as dropped since `dropped_before`.
    async fn drain(
        sub_loop: &mut rumqttc::EventLoop,
        want: usize,
        broker: &TestBroker,
        dropped_before: u64,
    ) -> Result<BTreeSet<String>> {
        let mut got = BTreeSet::new();
        let dropped = || (broker.handle.stats().messages_dropped - dropped_before) as usize;
        let wait = async {
            while got.len() + dropped() < want {
                if let Event::Incoming(Packet::Publish(p)) = sub_loop.poll().await? {
                    got.insert(String::from_utf8_lossy(&p.payload).into_owned());
                }
            }
            anyhow::Ok(())
        };
        timeout(DEADLINE, wait).await.with_context(|| {
            format!(
                "draining slow subscriber: got {}, dropped {}",
                got.len(),
                dropped()
            )
        })??;
        Ok(got)
    }

    // Within the limit: QUEUE messages, all delivered.
    let burst: Vec<_> = (0..QUEUE)
        .map(|i| (format!("slow/{i}"), Bytes::from(format!("a{i}")), false))
        .collect();
    publisher.publish_acked(burst).await?;
    let got = drain(&mut sub_loop, QUEUE, &broker, 0).await?;
    ensure!(got.len() == QUEUE, "got {} of {QUEUE}", got.len());
    ensure!(broker.handle.stats().messages_dropped == 0);

    // Beyond it: 3 x QUEUE while the subscriber does not read; what does not fit is dropped
    // and counted, and received + dropped accounts for every message.
    let total = 3 * QUEUE;
    let burst: Vec<_> = (0..total)
        .map(|i| (format!("slow/{i}"), Bytes::from(format!("b{i}")), false))
        .collect();
    publisher.publish_acked(burst).await?;
    let got = drain(&mut sub_loop, total, &broker, 0).await?;
    let dropped = broker.handle.stats().messages_dropped as usize;
    ensure!(
        got.len() + dropped == total,
        "received {} + dropped {dropped} != {total}",
        got.len()
    );
    ensure!(dropped >= total - QUEUE - INFLIGHT, "dropped {dropped}");
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (i) Retained messages survive a restart.

#[tokio::test]
async fn i_retained_survive_shutdown_and_restart_on_same_data_dir() -> Result {
    let broker = start_broker().await?;
    let port = broker.port();
    let publisher = v5("writer", port).await?;
    let mut expected = BTreeMap::new();
    for i in 0..20 {
        let topic = format!("uns/v1/keep/{i}");
        publisher
            .client
            .publish(topic.clone(), Qos5::AtLeastOnce, true, format!("v{i}"))
            .await?;
        expected.insert(topic, format!("v{i}"));
    }
    // One with MQTT 5 properties, one overwritten, one deleted.
    publisher
        .client
        .publish_with_properties(
            "uns/v1/rich",
            Qos5::AtLeastOnce,
            true,
            "r",
            rich_properties(),
        )
        .await?;
    expected.insert("uns/v1/rich".into(), "r".into());
    publisher
        .client
        .publish("uns/v1/keep/0", Qos5::AtLeastOnce, true, "new")
        .await?;
    expected.insert("uns/v1/keep/0".into(), "new".into());
    publisher
        .client
        .publish("uns/v1/keep/1", Qos5::AtLeastOnce, true, "")
        .await?;
    expected.remove("uns/v1/keep/1");
    // Wait until the broker processed all of them (a subscriber sees the final state).
    let mut check = v4("check", port).await?;
    check.subscribe("uns/v1/done", QoS::AtLeastOnce).await?;
    publisher
        .client
        .publish("uns/v1/done", Qos5::AtLeastOnce, false, "")
        .await?;
    check.next_publish().await?;
    publisher.drop_connection().await;

    let TestBroker { handle, dir } = broker;
    handle.shutdown().await?;
    let restarted = uns_broker::start(test_config(dir.path())).await?;
    let broker = TestBroker {
        handle: restarted,
        dir,
    };
    let mut sub = v5("reader", broker.port()).await?;
    sub.subscribe("uns/v1/#", Qos5::AtLeastOnce).await?;
    let mut seen = BTreeMap::new();
    while seen.len() < expected.len() {
        let publish = sub.next_publish().await?;
        ensure!(publish.retain, "not flagged retained: {publish:?}");
        let topic = String::from_utf8(publish.topic.to_vec())?;
        if topic == "uns/v1/rich" {
            let properties = publish.properties.clone().context("properties lost")?;
            ensure!(properties.user_properties == rich_properties().user_properties);
            ensure!(properties.correlation_data == rich_properties().correlation_data);
            ensure!(properties.response_topic == rich_properties().response_topic);
            ensure!(properties.message_expiry_interval.is_none());
        }
        seen.insert(topic, String::from_utf8(publish.payload.to_vec())?);
    }
    ensure!(seen == expected, "after restart {seen:?}");
    // Nothing beyond the expected set arrives: a later marker is the next message.
    sub.subscribe("marker", Qos5::AtLeastOnce).await?;
    sub.client
        .publish("marker", Qos5::AtLeastOnce, false, "m")
        .await?;
    let next = sub.next_publish().await?;
    ensure!(
        next.topic == Bytes::from_static(b"marker"),
        "extra message {next:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn i_shutdown_closes_port_and_disconnects_clients_so_the_port_can_be_reused() -> Result {
    let broker = start_broker().await?;
    let addr: SocketAddr = broker.handle.mqtt_addr();
    let mut client = v4("victim", addr.port()).await?;
    let TestBroker { handle, dir } = broker;
    handle.shutdown().await?;
    let closed = timeout(DEADLINE, async {
        loop {
            match client.events.recv().await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    })
    .await;
    ensure!(closed.is_ok(), "client still connected after shutdown");
    ensure!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still accepting"
    );
    // Same port, same data dir, same process.
    let mut config = test_config(dir.path());
    config.listen = addr;
    let again = uns_broker::start(config).await?;
    ensure!(again.mqtt_addr() == addr);
    let _client = v4("back", addr.port()).await?;
    again.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (j) $SYS.

#[tokio::test]
async fn j_sys_topics_exist() -> Result {
    let broker = start_broker().await?;
    let mut sub = v4("sys-reader", broker.port()).await?;
    sub.subscribe("$SYS/#", QoS::AtMostOnce).await?;
    let expected: BTreeSet<String> = [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/messages/dropped",
        "$SYS/broker/retained messages/count",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let seen = collect_topics(&mut sub, &expected).await?;
    ensure!(String::from_utf8_lossy(&seen["$SYS/broker/version"]).starts_with("uns-broker "));
    // Counters move: after a publish, `messages/received` reports at least 1.
    sub.client
        .publish("x/y", QoS::AtLeastOnce, false, "1")
        .await?;
    loop {
        let publish = sub.next_publish().await?;
        if publish.topic == "$SYS/broker/messages/received" && publish.payload != "0" {
            break;
        }
    }
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (k) Websockets.

#[tokio::test]
async fn k_websocket_client_can_publish_and_subscribe() -> Result {
    let broker = start_broker().await?;
    let ws = broker.handle.ws_addr().context("ws listener enabled")?;
    let mut options = rumqttc::MqttOptions::new("browser", format!("ws://{ws}/mqtt"), ws.port());
    options.set_transport(rumqttc::Transport::Ws);
    options.set_keep_alive(Duration::from_secs(30));
    let mut browser = v4_connect(options).await?;
    browser.subscribe("ws/#", QoS::AtLeastOnce).await?;
    let tcp = v4("tcp-side", broker.port()).await?;
    tcp.client
        .publish("ws/hello", QoS::AtLeastOnce, false, "over ws")
        .await?;
    let got = browser.next_publish().await?;
    ensure!(
        got.topic == "ws/hello" && got.payload == "over ws",
        "{got:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (l) Username/password.

#[tokio::test]
async fn l_username_password_auth_when_users_configured() -> Result {
    let broker = start_with(|c| {
        c.users = vec![User::new("scada", Secret::Password("s3cret".into()))];
    })
    .await?;
    let port = broker.port();
    let with = |user: &str, password: &str| {
        let mut options = v4_options("auth-test", port);
        options.set_credentials(user, password);
        options
    };
    ensure!(
        v4_connect(with("scada", "wrong")).await.is_err(),
        "wrong password accepted"
    );
    ensure!(
        v4_connect(with("nobody", "s3cret")).await.is_err(),
        "unknown user accepted"
    );
    ensure!(
        v4_connect(v4_options("anon", port)).await.is_err(),
        "anonymous accepted"
    );
    let mut ok = v4_connect(with("scada", "s3cret")).await?;
    ok.subscribe("a/#", QoS::AtLeastOnce).await?;
    let mut v5_options_ok = v5_options("auth5", port);
    v5_options_ok.set_credentials("scada", "s3cret");
    let _ok5 = v5_connect(v5_options_ok).await?;
    let mut v5_bad = v5_options("auth5-bad", port);
    v5_bad.set_credentials("scada", "nope");
    ensure!(
        v5_connect(v5_bad).await.is_err(),
        "v5 wrong password accepted"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pinned settings not covered above.

/// rmqtt's default 5-minute message expiry must not show up as a property on v5 deliveries;
/// a publisher's own expiry is passed on (counting down).
#[tokio::test]
async fn v5_subscriber_gets_no_message_expiry_the_publisher_did_not_set() -> Result {
    let broker = start_broker().await?;
    let mut sub = v5("expiry-sub", broker.port()).await?;
    sub.subscribe("exp/#", Qos5::AtLeastOnce).await?;
    let publisher = v5("expiry-pub", broker.port()).await?;
    publisher
        .client
        .publish("exp/none", Qos5::AtLeastOnce, true, "a")
        .await?;
    let got = sub.next_publish().await?;
    let expiry = got
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval);
    ensure!(expiry.is_none(), "broker added message expiry {expiry:?}");
    let own = mqtt5::PublishProperties {
        message_expiry_interval: Some(3600),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("exp/own", Qos5::AtLeastOnce, false, "b", own)
        .await?;
    let got = sub.next_publish().await?;
    let expiry = got
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval);
    ensure!(
        matches!(expiry, Some(1..=3600)),
        "publisher expiry lost: {expiry:?}"
    );
    // The retained copy (no expiry set) also has none for a new subscriber.
    let mut late = v5("expiry-late", broker.port()).await?;
    late.subscribe("exp/none", Qos5::AtLeastOnce).await?;
    let got = late.next_publish().await?;
    ensure!(
        got.retain
            && got
                .properties
                .and_then(|p| p.message_expiry_interval)
                .is_none()
    );
    broker.handle.shutdown().await?;
    Ok(())
}

/// `$share/group/filter`: each message goes to exactly one member, round robin.
#[tokio::test]
async fn shared_subscriptions_split_messages_between_group_members() -> Result {
    let broker = start_broker().await?;
    let mut first = v5("worker-1", broker.port()).await?;
    let mut second = v5("worker-2", broker.port()).await?;
    first
        .subscribe("$share/oee/work/#", Qos5::AtLeastOnce)
        .await?;
    second
        .subscribe("$share/oee/work/#", Qos5::AtLeastOnce)
        .await?;
    let mut plain = v4("observer", broker.port()).await?;
    plain.subscribe("work/#", QoS::AtLeastOnce).await?;
    let publisher = v4("producer", broker.port()).await?;
    const N: usize = 20;
    for i in 0..N {
        publisher
            .client
            .publish(format!("work/{i}"), QoS::AtLeastOnce, false, i.to_string())
            .await?;
    }
    // The non-shared subscriber sees all of them; the group members see each exactly once.
    let mut observed = BTreeSet::new();
    while observed.len() < N {
        observed.insert(plain.next_publish().await?.topic);
    }
    let mut by_member = [BTreeSet::new(), BTreeSet::new()];
    while by_member[0].len() + by_member[1].len() < N {
        tokio::select! {
            p = first.next_publish() => { by_member[0].insert(p?.topic); }
            p = second.next_publish() => { by_member[1].insert(p?.topic); }
        }
    }
    ensure!(
        by_member[0].is_disjoint(&by_member[1]),
        "a message went to both members"
    );
    ensure!(by_member[0].len() + by_member[1].len() == N);
    ensure!(
        !by_member[0].is_empty() && !by_member[1].is_empty(),
        "no load sharing: {by_member:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

/// Known rmqtt gap: a v5 client with Session Expiry 0 reconnecting at once (Clean Start 0) must
/// get Session Present = 0, because its session ended with the previous connection
/// (MQTT 5 §3.1.2.11.2, §3.2.2.1.1).
#[tokio::test]
async fn v5_immediate_reconnect_with_session_expiry_zero_has_no_session_present() -> Result {
    let broker = start_broker().await?;
    for round in 0..5 {
        let mut options = v5_options("short-lived", broker.port());
        options.set_clean_start(false);
        options.set_session_expiry_interval(None);
        let client = v5_connect(options).await?;
        ensure!(
            !client.connack.session_present,
            "round {round}: session present reported"
        );
        if round % 2 == 0 {
            client.disconnect().await?;
        } else {
            client.drop_connection().await;
        }
    }
    broker.handle.shutdown().await?;
    Ok(())
}

/// Two brokers in one process at the same time do not interfere.
#[tokio::test]
async fn two_brokers_in_one_process_are_independent() -> Result {
    let one = start_broker().await?;
    let two = start_broker().await?;
    let mut sub_two = v4("sub", two.port()).await?;
    sub_two.subscribe("#", QoS::AtLeastOnce).await?;
    let mut pub_one = v4("pub", one.port()).await?;
    pub_one
        .publish_acked(vec![retained("only/one", "1")])
        .await?;
    let pub_two = v4("pub", two.port()).await?;
    pub_two
        .client
        .publish("only/two", QoS::AtLeastOnce, false, "2")
        .await?;
    ensure!(sub_two.next_publish().await?.topic == "only/two");
    ensure!(one.handle.stats().retained_messages >= 1);
    ensure!(
        two.handle.stats().messages_received == 1,
        "{:?}",
        two.handle.stats()
    );
    one.handle.shutdown().await?;
    two.handle.shutdown().await?;
    Ok(())
}
