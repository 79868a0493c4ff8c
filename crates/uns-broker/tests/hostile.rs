//! Hostile and careless clients (issue 9): packets that must never take the broker down, and
//! limits that keep its resources bounded. Real broker, real sockets on 127.0.0.1:0.
//!
//! Raw MQTT packets are written by hand where a client library would refuse to send them
//! (wildcards in a PUBLISH topic) or to show what the broker answers (reason codes, closes).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rumqttc::{Event, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use uns_broker::{BrokerConfig, BrokerHandle};

type Result<T = ()> = anyhow::Result<T>;

/// Generous upper bound for anything that should happen "promptly" on a loaded CI box.
const DEADLINE: Duration = Duration::from_secs(20);

/// The topic of issue 9: ~10 000 levels, 20 KB; it overflowed a worker stack before the fix.
fn deep_topic(root: &str) -> String {
    let mut topic = root.to_owned();
    for _ in 0..10_000 {
        topic.push_str("/a");
    }
    topic
}

struct TestBroker {
    handle: BrokerHandle,
    _dir: tempfile::TempDir,
}

async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> Result<TestBroker> {
    let dir = tempfile::tempdir()?;
    let mut config = BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: Some("127.0.0.1:0".parse()?),
        data_dir: dir.path().to_owned(),
        ..BrokerConfig::default()
    };
    adjust(&mut config);
    let handle = uns_broker::start(config).await?;
    Ok(TestBroker { handle, _dir: dir })
}

// ---------------------------------------------------------------------------------------------
// A raw MQTT client: hand-encoded packets over TCP.

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

fn string(text: &str) -> Vec<u8> {
    let mut out = u16::try_from(text.len())
        .expect("short string")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// Which protocol a [`Raw`] client speaks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Version {
    V311,
    V5,
}

/// One received packet: the first byte and the body.
#[derive(Debug)]
struct Received {
    first: u8,
    body: Vec<u8>,
}

impl Received {
    fn kind(&self) -> u8 {
        self.first >> 4
    }
}

struct Raw {
    stream: TcpStream,
    version: Version,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and completes the MQTT handshake; fails unless CONNACK is success.
    async fn connect(addr: SocketAddr, version: Version, client_id: &str) -> Result<Raw> {
        let mut raw = Raw::open(addr, version).await?;
        raw.send_connect(client_id, true, None).await?;
        let ack = raw.next().await?.context("closed before CONNACK")?;
        ensure!(ack.kind() == 2, "expected CONNACK, got {ack:?}");
        ensure!(ack.body.get(1) == Some(&0), "CONNACK refused: {ack:?}");
        Ok(raw)
    }

    async fn open(addr: SocketAddr, version: Version) -> Result<Raw> {
        let stream = TcpStream::connect(addr).await?;
        Ok(Raw {
            stream,
            version,
            buf: Vec::new(),
        })
    }

    async fn send_connect(
        &mut self,
        client_id: &str,
        clean: bool,
        will: Option<(&str, bool)>,
    ) -> Result {
        let mut flags = if clean { 0x02 } else { 0 };
        let mut body = string("MQTT");
        body.push(if self.version == Version::V5 { 5 } else { 4 });
        if let Some((_, retain)) = will {
            flags |= 0x04 | if retain { 0x20 } else { 0 };
        }
        body.push(flags);
        body.extend(30u16.to_be_bytes());
        if self.version == Version::V5 {
            body.push(0); // no properties
        }
        body.extend(string(client_id));
        if let Some((topic, _)) = will {
            if self.version == Version::V5 {
                body.push(0); // no will properties
            }
            body.extend(string(topic));
            body.extend(string("gone"));
        }
        self.send(&packet(0x10, &body)).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    async fn subscribe(&mut self, packet_id: u16, filter: &str) -> Result {
        let mut body = packet_id.to_be_bytes().to_vec();
        if self.version == Version::V5 {
            body.push(0);
        }
        body.extend(string(filter));
        body.push(1); // QoS 1
        self.send(&packet(0x82, &body)).await
    }

    async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        packet_id: u16,
        retain: bool,
    ) -> Result {
        let mut body = string(topic);
        body.extend(packet_id.to_be_bytes()); // QoS 1
        if self.version == Version::V5 {
            body.push(0);
        }
        body.extend_from_slice(payload);
        self.send(&packet(0x32 | u8::from(retain), &body)).await
    }

    /// The next packet, or `None` once the broker closed the connection.
    async fn next(&mut self) -> Result<Option<Received>> {
        timeout(DEADLINE, self.read_packet())
            .await
            .context("waiting for a packet from the broker")?
    }

    async fn read_packet(&mut self) -> Result<Option<Received>> {
        loop {
            if let Some(received) = self.parse() {
                return Ok(Some(received));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn parse(&mut self) -> Option<Received> {
        let first = *self.buf.first()?;
        let mut len = 0usize;
        let mut shift = 0;
        let mut at = 1;
        loop {
            let byte = *self.buf.get(at)?;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if self.buf.len() < at + len {
            return None;
        }
        let body = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some(Received { first, body })
    }

    /// Reads until the broker closes; returns what arrived before.
    async fn until_closed(&mut self) -> Result<Vec<Received>> {
        let mut got = Vec::new();
        while let Some(received) = self.next().await? {
            got.push(received);
        }
        Ok(got)
    }
}

// ---------------------------------------------------------------------------------------------
// A well-behaved client (rumqttc) to show the broker still serves others.

struct Client {
    client: rumqttc::AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<std::result::Result<Packet, String>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn client(options: rumqttc::MqttOptions) -> Result<Client> {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
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
    match timeout(DEADLINE, events.recv()).await? {
        Some(Ok(Packet::ConnAck(ack))) if ack.code == rumqttc::ConnectReturnCode::Success => {}
        other => bail!("connect failed: {other:?}"),
    }
    Ok(Client {
        client,
        events,
        _task: task,
    })
}

fn tcp_options(id: &str, broker: &TestBroker) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", broker.handle.mqtt_addr().port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options
}

fn ws_options(id: &str, broker: &TestBroker) -> Result<rumqttc::MqttOptions> {
    let ws = broker.handle.ws_addr().context("ws listener enabled")?;
    let mut options = rumqttc::MqttOptions::new(id, format!("ws://{ws}/mqtt"), ws.port());
    options.set_transport(rumqttc::Transport::Ws);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    Ok(options)
}

impl Client {
    /// The next packet matching `want`; errors on disconnect or after the deadline.
    async fn wait_for<T>(&mut self, mut want: impl FnMut(&Packet) -> Option<T>) -> Result<T> {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(Ok(packet)) => {
                        if let Some(found) = want(&packet) {
                            return Ok(found);
                        }
                    }
                    Some(Err(e)) => bail!("connection error: {e}"),
                    None => bail!("event loop ended"),
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .context("waiting for a packet")?
    }

    /// Waits until the broker closes this client's connection (an error from the event loop).
    async fn closed(&mut self) -> Result<String> {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e,
                    None => return "event loop ended".to_owned(),
                }
            }
        };
        timeout(DEADLINE, wait)
            .await
            .context("the broker did not close the connection")
    }
}

/// A fresh client subscribes, a second publishes, the first receives: the broker serves.
async fn broker_still_serves(broker: &TestBroker, tag: &str) -> Result {
    let mut sub = client(tcp_options(&format!("{tag}-sub"), broker)).await?;
    sub.client.subscribe("alive/#", QoS::AtLeastOnce).await?;
    sub.wait_for(|p| matches!(p, Packet::SubAck(_)).then_some(()))
        .await?;
    let publisher = client(tcp_options(&format!("{tag}-pub"), broker)).await?;
    publisher
        .client
        .publish(format!("alive/{tag}"), QoS::AtLeastOnce, false, "yes")
        .await?;
    let topic = format!("alive/{tag}");
    sub.wait_for(|p| match p {
        Packet::Publish(publish) if publish.topic == topic => Some(()),
        _ => None,
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Item 1: topics with too many levels or bytes.

async fn deep_subscribe_raw(version: Version) -> Result {
    let broker = start_with(|_| {}).await?;
    let mut raw = Raw::connect(broker.handle.mqtt_addr(), version, "deep-sub").await?;
    raw.subscribe(7, &deep_topic("deep")).await?;
    let got = raw.until_closed().await?;
    let suback = got
        .iter()
        .find(|p| p.kind() == 9)
        .with_context(|| format!("no SUBACK before the close: {got:?}"))?;
    let code = *suback.body.last().context("empty SUBACK")?;
    let expected = if version == Version::V5 { 0x8F } else { 0x80 };
    ensure!(
        code == expected,
        "SUBACK code {code:#x}, expected {expected:#x}"
    );
    broker_still_serves(&broker, "after-deep-sub").await?;
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn deep_subscribe_over_tcp_v311_disconnects_and_the_broker_keeps_serving() -> Result {
    deep_subscribe_raw(Version::V311).await
}

#[tokio::test]
async fn deep_subscribe_over_tcp_v5_gets_0x8f_and_the_broker_keeps_serving() -> Result {
    deep_subscribe_raw(Version::V5).await
}

async fn deep_retained_publish_raw(version: Version) -> Result {
    let broker = start_with(|_| {}).await?;
    let mut raw = Raw::connect(broker.handle.mqtt_addr(), version, "deep-pub").await?;
    raw.publish(&deep_topic("deep"), b"boom", 3, true).await?;
    let got = raw.until_closed().await?;
    if version == Version::V5
        && let Some(puback) = got.iter().find(|p| p.kind() == 4)
    {
        ensure!(
            puback.body.get(2) == Some(&0x90),
            "PUBACK should say Topic Name invalid: {puback:?}"
        );
    }
    ensure!(
        got.iter()
            .all(|p| p.kind() != 4 || p.body.get(2).is_some_and(|&code| code >= 0x80)),
        "a refused publish must not be acknowledged as a success: {got:?}"
    );
    broker_still_serves(&broker, "after-deep-pub").await?;
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn deep_retained_publish_over_tcp_v311_disconnects_and_the_broker_keeps_serving() -> Result {
    deep_retained_publish_raw(Version::V311).await
}

#[tokio::test]
async fn deep_retained_publish_over_tcp_v5_disconnects_and_the_broker_keeps_serving() -> Result {
    deep_retained_publish_raw(Version::V5).await
}

#[tokio::test]
async fn deep_subscribe_over_websocket_disconnects_and_the_broker_keeps_serving() -> Result {
    let broker = start_with(|_| {}).await?;
    let mut browser = client(ws_options("deep-ws-sub", &broker)?).await?;
    browser
        .client
        .subscribe(deep_topic("deep"), QoS::AtLeastOnce)
        .await?;
    browser.closed().await?;
    broker_still_serves(&broker, "after-ws-sub").await?;
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn deep_retained_publish_over_websocket_disconnects_and_the_broker_keeps_serving() -> Result {
    let broker = start_with(|_| {}).await?;
    let mut browser = client(ws_options("deep-ws-pub", &broker)?).await?;
    browser
        .client
        .publish(deep_topic("deep"), QoS::AtLeastOnce, true, "boom")
        .await?;
    browser.closed().await?;
    broker_still_serves(&broker, "after-ws-pub").await?;
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn topic_limits_are_settings_at_the_boundary() -> Result {
    let broker = start_with(|config| {
        config.max_topic_levels = 4;
        config.max_topic_length = 32;
    })
    .await?;
    let addr = broker.handle.mqtt_addr();
    // Exactly at the limits: accepted.
    let mut ok = Raw::connect(addr, Version::V5, "at-limit").await?;
    ok.subscribe(1, "a/b/c/d").await?;
    let suback = ok.next().await?.context("closed")?;
    ensure!(
        suback.kind() == 9 && suback.body.last() == Some(&1),
        "{suback:?}"
    );
    ok.publish("a/b/c/d", b"x", 2, false).await?;
    // One level more: refused.
    let mut levels = Raw::connect(addr, Version::V5, "levels").await?;
    levels.publish("a/b/c/d/e", b"x", 2, false).await?;
    let got = levels.until_closed().await?;
    ensure!(
        got.iter()
            .all(|p| p.kind() != 4 || p.body.get(2) == Some(&0x90)),
        "{got:?}"
    );
    // One byte more: refused.
    let mut length = Raw::connect(addr, Version::V311, "length").await?;
    length.subscribe(1, &"x".repeat(33)).await?;
    let got = length.until_closed().await?;
    ensure!(
        got.iter()
            .any(|p| p.kind() == 9 && p.body.last() == Some(&0x80)),
        "{got:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_will_with_a_deep_topic_is_refused_at_connect() -> Result {
    let broker = start_with(|_| {}).await?;
    let addr = broker.handle.mqtt_addr();
    let topic = deep_topic("will");
    let mut v5 = Raw::open(addr, Version::V5).await?;
    v5.send_connect("deep-will-5", true, Some((&topic, true)))
        .await?;
    let ack = v5.next().await?.context("closed before CONNACK")?;
    // 0x87 Not authorized: the nearest rmqtt 0.24 lets us send (see `AuthHandler`).
    ensure!(ack.kind() == 2 && ack.body.get(1) == Some(&0x87), "{ack:?}");
    let mut v3 = Raw::open(addr, Version::V311).await?;
    v3.send_connect("deep-will-3", true, Some((&topic, true)))
        .await?;
    let ack = v3.next().await?.context("closed before CONNACK")?;
    ensure!(ack.kind() == 2 && ack.body.get(1) == Some(&0x05), "{ack:?}");
    broker_still_serves(&broker, "after-will").await?;
    broker.handle.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_highest_allowed_level_limit_is_safe_for_the_engine() -> Result {
    let max = uns_broker::MAX_TOPIC_LEVELS_LIMIT;
    let broker = start_with(|config| {
        config.max_topic_levels = max;
        config.max_topic_length = 65_535;
    })
    .await?;
    let topic = vec!["l"; max].join("/");
    let mut publisher = Raw::connect(broker.handle.mqtt_addr(), Version::V5, "max-pub").await?;
    publisher
        .publish(&topic, b"deep but allowed", 1, true)
        .await?;
    let ack = publisher.next().await?.context("closed before PUBACK")?;
    ensure!(
        ack.kind() == 4 && ack.body.get(2).is_none_or(|&c| c == 0),
        "{ack:?}"
    );
    let mut sub = client(tcp_options("max-sub", &broker)).await?;
    sub.client
        .subscribe(topic.clone(), QoS::AtLeastOnce)
        .await?;
    sub.wait_for(|p| match p {
        Packet::Publish(publish) if publish.topic == topic && publish.retain => Some(()),
        _ => None,
    })
    .await?;
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Item 2: connections that never send CONNECT.

/// Waits until the broker closes `stream` (EOF or reset); returns when.
async fn closed_at(mut stream: TcpStream) -> Result<tokio::time::Instant> {
    let mut buf = [0u8; 64];
    loop {
        match timeout(DEADLINE, stream.read(&mut buf))
            .await
            .context("socket still open at the deadline")?
        {
            Ok(0) | Err(_) => return Ok(tokio::time::Instant::now()),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn silent_sockets_are_closed_after_the_connect_timeout_and_clients_still_connect() -> Result {
    let connect_timeout = Duration::from_secs(2);
    let broker = start_with(|config| config.connect_timeout = connect_timeout).await?;
    let mqtt = broker.handle.mqtt_addr();
    let ws = broker.handle.ws_addr().context("ws enabled")?;
    // A client connected before; it must outlive the timeout.
    let mut early = client(tcp_options("early", &broker)).await?;
    early.client.subscribe("alive/#", QoS::AtLeastOnce).await?;
    early
        .wait_for(|p| matches!(p, Packet::SubAck(_)).then_some(()))
        .await?;

    let opened = tokio::time::Instant::now();
    let mut sockets = Vec::new();
    for i in 0..500 {
        // Most on the MQTT port, some on the websocket port; some send the start of a CONNECT
        // (or of the websocket upgrade request) and stall.
        let on_ws = i % 10 == 0;
        let mut stream = TcpStream::connect(if on_ws { ws } else { mqtt }).await?;
        if i % 20 == 0 {
            stream.write_all(b"GET /mqtt HTTP/1.1\r\n").await?;
        } else if i % 7 == 0 && !on_ws {
            stream.write_all(&[0x10, 0x20, 0x00]).await?;
        }
        sockets.push(stream);
    }
    // Meanwhile a normal client connects and is served.
    broker_still_serves(&broker, "during-silent").await?;

    let closes = futures::future::join_all(sockets.into_iter().map(closed_at)).await;
    let mut latest = Duration::ZERO;
    let mut earliest = Duration::MAX;
    for close in closes {
        let after = close?.duration_since(opened);
        latest = latest.max(after);
        earliest = earliest.min(after);
    }
    eprintln!(
        "500 silent sockets closed between {earliest:?} and {latest:?} after opening (timeout {connect_timeout:?})"
    );
    ensure!(
        earliest >= connect_timeout - Duration::from_millis(100),
        "closed before the timeout: {earliest:?}"
    );
    ensure!(
        latest <= connect_timeout * 3,
        "closed too late: {latest:?} for a timeout of {connect_timeout:?}"
    );

    // The early client is still connected and served after the timeout.
    let publisher = client(tcp_options("late-pub", &broker)).await?;
    publisher
        .client
        .publish("alive/early", QoS::AtLeastOnce, false, "still here")
        .await?;
    early
        .wait_for(|p| match p {
            Packet::Publish(publish) if publish.topic == "alive/early" => Some(()),
            _ => None,
        })
        .await?;
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Item 4: wildcards in a PUBLISH topic name.

#[tokio::test]
async fn publish_with_wildcards_disconnects_the_sender_and_nothing_is_delivered_or_retained()
-> Result {
    let broker = start_with(|_| {}).await?;
    let addr = broker.handle.mqtt_addr();
    let mut watcher = client(tcp_options("watcher", &broker)).await?;
    watcher.client.subscribe("a/#", QoS::AtLeastOnce).await?;
    watcher
        .wait_for(|p| matches!(p, Packet::SubAck(_)).then_some(()))
        .await?;

    let mut n = 0;
    for topic in ["a/+/b", "a/#", "a/b+"] {
        for version in [Version::V311, Version::V5] {
            n += 1;
            let mut raw = Raw::connect(addr, version, &format!("wild-{n}")).await?;
            raw.publish(topic, b"wild", 9, true).await?;
            let got = raw.until_closed().await?;
            ensure!(
                got.iter()
                    .all(|p| p.kind() != 4 || p.body.get(2) == Some(&0x90)),
                "{topic} {version:?}: {got:?}"
            );
        }
    }
    // Had any been forwarded, it would have reached the watcher before this marker, which is
    // published after every sender was disconnected.
    let publisher = client(tcp_options("marker", &broker)).await?;
    publisher
        .client
        .publish("a/m/b", QoS::AtLeastOnce, true, "marker")
        .await?;
    let first = watcher
        .wait_for(|p| match p {
            Packet::Publish(publish) => Some(publish.topic.clone()),
            _ => None,
        })
        .await?;
    ensure!(
        first == "a/m/b",
        "a wildcard publish was delivered: {first}"
    );

    // Retained: a new subscriber gets the marker and nothing else from that one batch; a live
    // message it publishes afterwards closes the batch.
    let mut late = client(tcp_options("late", &broker)).await?;
    late.client.subscribe("a/#", QoS::AtLeastOnce).await?;
    let mut topics = Vec::new();
    let mut published_end = false;
    while !topics.iter().any(|t| t == "a/end/b") {
        let got = late
            .wait_for(|p| match p {
                Packet::Publish(publish) => Some(publish.topic.clone()),
                _ => None,
            })
            .await?;
        if got == "a/m/b" && !published_end {
            late.client
                .publish("a/end/b", QoS::AtLeastOnce, false, "end")
                .await?;
            published_end = true;
        }
        topics.push(got);
    }
    ensure!(
        topics == ["a/m/b", "a/end/b"],
        "a wildcard publish was retained: {topics:?}"
    );
    broker.handle.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Item 3: offline persistent sessions.

fn open_fds() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

#[tokio::test]
async fn persistent_session_churn_frees_descriptors_at_expiry_and_the_offline_queue_is_capped()
-> Result {
    let broker = start_with(|config| {
        config.session_expiry = Duration::from_secs(1);
        config.max_queue = 50;
    })
    .await?;
    let addr = broker.handle.mqtt_addr();
    let baseline = open_fds()?;
    let mut peak = baseline;
    for i in 0..300 {
        let mut raw = Raw::open(addr, Version::V311).await?;
        raw.send_connect(&format!("churn-{i}"), false, None).await?;
        let ack = raw.next().await?.context("closed before CONNACK")?;
        ensure!(ack.kind() == 2 && ack.body.get(1) == Some(&0), "{ack:?}");
        raw.subscribe(1, "churn/#").await?;
        drop(raw);
        peak = peak.max(open_fds()?);
    }
    // After the expiry every offline session is gone, and with it its descriptor.
    let settle = async {
        loop {
            let now = open_fds().unwrap_or(usize::MAX);
            // This process's count: the other tests of this binary run in parallel and open
            // and close their own sockets, so allow a margin far below the 300 held here.
            if now <= baseline + 40 {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let after = timeout(DEADLINE, settle)
        .await
        .with_context(|| format!("descriptors did not return to {baseline}: {:?}", open_fds()))?;
    eprintln!(
        "persistent-session churn: 300 cycles, fds baseline {baseline}, peak {peak}, after expiry {after}"
    );

    // The offline queue holds at most max_queue messages; the rest are dropped and counted.
    let mut options = tcp_options("offline", &broker);
    options.set_clean_session(false);
    let mut offline = client(options.clone()).await?;
    offline.client.subscribe("q/#", QoS::AtLeastOnce).await?;
    offline
        .wait_for(|p| matches!(p, Packet::SubAck(_)).then_some(()))
        .await?;
    offline.client.disconnect().await?;
    offline.closed().await?;
    let mut publisher = Raw::connect(addr, Version::V311, "q-pub").await?;
    for id in 1..=200u16 {
        publisher.publish("q/x", b"m", id, false).await?;
        let ack = publisher.next().await?.context("closed")?;
        ensure!(ack.kind() == 4, "{ack:?}");
    }
    let dropped = broker.handle.stats().messages_dropped;
    ensure!(
        dropped >= 150 - 1,
        "only {dropped} dropped of 200 into a queue of 50"
    );
    let mut back = client(options).await?;
    let mut received = 0;
    while received < 50 {
        back.wait_for(|p| matches!(p, Packet::Publish(_)).then_some(()))
            .await?;
        received += 1;
    }
    eprintln!("offline queue: 200 published, {dropped} dropped, {received} delivered on return");
    broker.handle.shutdown().await?;
    Ok(())
}
