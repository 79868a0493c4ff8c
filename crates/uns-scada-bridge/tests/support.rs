//! One screen per test: [`TestBridge::start`] runs a broker on 127.0.0.1:0 and the bridge on it, with a
//! subscriber on `uns/v1/#`; [`Edge`] is a minimal Sparkplug edge node (rumqttc + our codec).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Metrics, UnsClient};
use uns_e2e::Subscriber;
use uns_scada_bridge::{BridgeConfig, SparkplugConnect};
use uns_sparkplug::{Metric, Payload, encode};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct TestBridge {
    pub(crate) addr: SocketAddr,
    pub(crate) subscriber: Subscriber,
    /// Every message the subscriber received so far, in order.
    pub(crate) seen: Vec<(String, bytes::Bytes)>,
    pub(crate) metrics: Metrics,
    config: BridgeConfig,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    _broker: uns_broker::BrokerHandle,
    _dir: tempfile::TempDir,
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl TestBridge {
    pub(crate) async fn start(config: BridgeConfig) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let broker = uns_broker::start(uns_broker::BrokerConfig {
            listen: "127.0.0.1:0".parse()?,
            ws_listen: None,
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .await?;
        let addr = broker.mqtt_addr();
        let subscriber = Subscriber::connect(addr, &["uns/v1/#", "spBv1.0/#"]).await?;
        let metrics = Metrics::new();
        let (shutdown, task) = run_bridge(addr, config.clone(), metrics.clone()).await?;
        let mut bridge = Self {
            addr,
            subscriber,
            seen: Vec::new(),
            metrics,
            config,
            shutdown,
            task: Some(task),
            _broker: broker,
            _dir: dir,
        };
        // The bridge is up once its STATE birth is there.
        bridge
            .wait_json("spBv1.0/STATE/scada-bridge", |state| {
                state["online"] == true
            })
            .await
            .context("bridge STATE birth")?;
        Ok(bridge)
    }

    /// Stops the bridge (as a SIGTERM does: STATE death, disconnect) and starts a new one on the
    /// same broker, with the same config; returns once the new one's STATE birth arrived.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .context("bridge stop")??;
        }
        self.wait_json("spBv1.0/STATE/scada-bridge", |state| {
            state["online"] == false
        })
        .await
        .context("bridge STATE death")?;
        let n_seen = self.seen.len();
        let (shutdown, task) = run_bridge(self.addr, self.config.clone(), Metrics::new()).await?;
        self.shutdown = shutdown;
        self.task = Some(task);
        self.wait_json_from(n_seen, "spBv1.0/STATE/scada-bridge", TIMEOUT, |state| {
            state["online"] == true
        })
        .await
        .context("bridge STATE birth after the restart")?;
        Ok(())
    }

    /// The first JSON document received on `topic` (since the start, in order) that satisfies
    /// `accept`, waiting at most [`TIMEOUT`].
    pub(crate) async fn wait_json(
        &mut self,
        topic: &str,
        accept: impl FnMut(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        self.wait_json_within(topic, TIMEOUT, accept).await
    }

    /// [`TestBridge::wait_json`] with its own timeout.
    pub(crate) async fn wait_json_within(
        &mut self,
        topic: &str,
        timeout: Duration,
        accept: impl FnMut(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        self.wait_json_from(0, topic, timeout, accept).await
    }

    /// [`TestBridge::wait_json_within`], looking only at messages from index `from` of `seen` on.
    pub(crate) async fn wait_json_from(
        &mut self,
        from: usize,
        topic: &str,
        timeout: Duration,
        mut accept: impl FnMut(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut checked = from.min(self.seen.len());
        loop {
            for (got, payload) in &self.seen[checked..] {
                if got == topic
                    && let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload)
                    && accept(&json)
                {
                    return Ok(json);
                }
            }
            checked = self.seen.len();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining, self.subscriber.messages.recv()).await {
                Ok(Some((got, payload, _))) => self.seen.push((got, payload)),
                Ok(None) => anyhow::bail!("subscriber disconnected while waiting for {topic}"),
                Err(_) => anyhow::bail!("no matching message on {topic} within {timeout:?}"),
            }
        }
    }

    /// The topics seen so far, and the reasons of any `_errors` reports, for failure messages.
    pub(crate) fn seen_summary(&self) -> String {
        let mut lines = Vec::new();
        for (topic, payload) in &self.seen {
            if topic.ends_with("/_errors") {
                lines.push(format!("{topic}: {}", String::from_utf8_lossy(payload)));
            } else if !topic.ends_with("/_meta") {
                lines.push(topic.clone());
            }
        }
        lines.join("\n")
    }

    /// The first raw payload received on `topic`, waiting at most [`TIMEOUT`].
    pub(crate) async fn wait_raw(&mut self, topic: &str) -> anyhow::Result<bytes::Bytes> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut checked = 0;
        loop {
            if let Some((_, payload)) = self.seen[checked..].iter().find(|(got, _)| got == topic) {
                return Ok(payload.clone());
            }
            checked = self.seen.len();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining, self.subscriber.messages.recv()).await {
                Ok(Some((got, payload, _))) => self.seen.push((got, payload)),
                Ok(None) => anyhow::bail!("subscriber disconnected while waiting for {topic}"),
                Err(_) => anyhow::bail!("nothing on {topic} within {TIMEOUT:?}"),
            }
        }
    }

    /// Publishes raw bytes as a plain MQTT client (for `_wo/_active`, corrupt Sparkplug, ...).
    pub(crate) async fn publish_raw(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> anyhow::Result<()> {
        let edge = Edge::connect(self.addr, "raw-publisher", None).await?;
        edge.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await?;
        edge.wait_acks(1).await
    }
}

/// Starts the bridge (its own UNS client and Sparkplug connection) on the broker at `addr`.
pub(crate) async fn run_bridge(
    addr: SocketAddr,
    config: BridgeConfig,
    metrics: Metrics,
) -> anyhow::Result<(CancellationToken, JoinHandle<()>)> {
    let shutdown = CancellationToken::new();
    let options = ClientOptions::new(
        BrokerUrl::new(addr.ip().to_string(), addr.port()),
        uns_scada_bridge::SERVICE,
    )?;
    let (client, inbox, _) =
        UnsClient::start(options, ClientMetrics::register(&metrics), shutdown.clone());
    client.wait_connected(TIMEOUT).await?;
    let sparkplug = SparkplugConnect {
        host: addr.ip().to_string(),
        port: addr.port(),
        credentials: None,
    };
    let bridge_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let result = uns_scada_bridge::run(
            client.clone(),
            inbox,
            sparkplug,
            config,
            &metrics,
            bridge_shutdown,
        )
        .await;
        client.shutdown(uns_scada_bridge::SHUTDOWN_GRACE).await;
        if let Err(err) = result {
            panic!("bridge failed: {err:?}");
        }
    });
    Ok((shutdown, task))
}

/// A minimal Sparkplug edge node: an MQTT connection (with an optional NDEATH Will) that publishes
/// what the test encodes.
pub(crate) struct Edge {
    pub(crate) client: AsyncClient,
    task: JoinHandle<()>,
    acked: tokio::sync::watch::Receiver<u64>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Edge {
    pub(crate) async fn connect(
        addr: SocketAddr,
        id: &str,
        will: Option<(String, Payload)>,
    ) -> anyhow::Result<Self> {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(5));
        // Births up to the broker's packet limit (1 MiB).
        options.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        if let Some((topic, payload)) = will {
            options.set_last_will(LastWill::new(
                topic,
                encode(&payload)?,
                QoS::AtLeastOnce,
                false,
            ));
        }
        let (client, mut event_loop) = AsyncClient::new(options, 100);
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let (acked_tx, acked) = tokio::sync::watch::channel(0_u64);
        let task = tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(ready) = connected_tx.take() {
                            let _ = ready.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked_tx.send_modify(|n| *n += 1);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(TIMEOUT, connected_rx)
            .await
            .context("edge CONNACK")??;
        Ok(Self {
            client,
            task,
            acked,
        })
    }

    /// Publishes a Sparkplug payload at QoS 1 (so `flush` can wait for it).
    pub(crate) async fn send(&self, topic: &str, payload: &Payload) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, encode(payload)?)
            .await?;
        Ok(())
    }

    /// Waits until `n` QoS 1 publishes of this connection were acknowledged.
    pub(crate) async fn wait_acks(&self, n: u64) -> anyhow::Result<()> {
        let mut acked = self.acked.clone();
        tokio::time::timeout(TIMEOUT, acked.wait_for(|acks| *acks >= n))
            .await
            .context("PUBACKs")??;
        Ok(())
    }
}

pub(crate) fn payload(seq: u64, metrics: Vec<Metric>) -> Payload {
    Payload {
        timestamp: Some(1_741_068_000_000),
        seq: Some(seq),
        metrics,
        ..Payload::default()
    }
}
