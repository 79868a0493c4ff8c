//! A broker that dies (`kill -9`) publishes no Wills; the next start publishes the ones of the
//! connections that death closed, so a retained "online" does not outlive its client
//! (`rmqtt_engine/wills.rs`). The broker runs as a child process (the `serve` example), since a
//! real kill is the only honest crash.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(30);

/// `target/debug/examples/serve`, built once.
fn serve_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "uns-broker", "--example", "serve"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --example serve failed: {status}");
    }
    // This test binary lives in target/debug/deps/.
    let exe = std::env::current_exe()?;
    let debug = exe
        .ancestors()
        .nth(2)
        .context("target/debug above the test binary")?;
    Ok(debug.join("examples").join("serve"))
}

/// Starts the broker on `data_dir`; returns the child and its MQTT address.
async fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--ws", "none", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the broker")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("mqtt=") {
                return Ok::<_, anyhow::Error>(addr.parse()?);
            }
        }
        bail!("the broker ended before listening")
    })
    .await
    .context("broker listening")??;
    Ok((child, addr))
}

/// Connects with an optional retained Will; returns once connected, with a channel of PUBACKs.
async fn connect(
    addr: SocketAddr,
    id: &str,
    will: Option<(&str, &str)>,
) -> anyhow::Result<(AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Packet>)> {
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    if let Some((topic, payload)) = will {
        options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
    }
    let (client, mut event_loop) = AsyncClient::new(options, 10);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = event_loop.poll().await {
            if let Event::Incoming(packet) = event
                && tx.send(packet).is_err()
            {
                return;
            }
        }
    });
    match tokio::time::timeout(DEADLINE, rx.recv()).await? {
        Some(Packet::ConnAck(_)) => Ok((client, rx)),
        other => bail!("no CONNACK: {other:?}"),
    }
}

/// Publishes a retained message at QoS 1 and waits for its PUBACK (durable: the retained store
/// acknowledges only what it committed).
async fn publish_retained(
    client: &AsyncClient,
    packets: &mut tokio::sync::mpsc::UnboundedReceiver<Packet>,
    topic: &str,
    payload: &str,
) -> anyhow::Result<()> {
    client
        .publish(topic, QoS::AtLeastOnce, true, payload.as_bytes().to_vec())
        .await?;
    tokio::time::timeout(DEADLINE, async {
        while let Some(packet) = packets.recv().await {
            if matches!(packet, Packet::PubAck(_)) {
                return Ok(());
            }
        }
        bail!("disconnected before the PUBACK")
    })
    .await?
}

/// The retained message on `topic` as a new subscriber gets it, or `None` if there is none (known
/// once a message of the reader's own, published after the SUBSCRIBE, came back).
async fn retained(addr: SocketAddr, topic: &str) -> anyhow::Result<Option<String>> {
    let id = format!("reader-{}", topic.replace('/', "-"));
    let (client, mut packets) = connect(addr, &id, None).await?;
    let sync = format!("sync/{id}");
    client.subscribe(topic, QoS::AtLeastOnce).await?;
    client.subscribe(&sync, QoS::AtLeastOnce).await?;
    client
        .publish(&sync, QoS::AtLeastOnce, false, b"sync".to_vec())
        .await?;
    tokio::time::timeout(DEADLINE, async {
        while let Some(packet) = packets.recv().await {
            if let Packet::Publish(publish) = packet {
                if publish.topic == sync {
                    return Ok(None);
                }
                return Ok(Some(String::from_utf8_lossy(&publish.payload).into_owned()));
            }
        }
        bail!("disconnected before a retained message")
    })
    .await?
}

#[tokio::test]
async fn after_a_kill_the_wills_of_the_connections_it_closed_are_published_at_start()
-> anyhow::Result<()> {
    let binary = serve_binary()?;
    let dir = tempfile::tempdir()?;
    let (mut broker, addr) = start(&binary, dir.path()).await?;
    // A primary host: retained Will "offline", retained birth "online", still connected.
    let (host, mut host_packets) =
        connect(addr, "host", Some(("spBv1.0/STATE/host", "offline"))).await?;
    publish_retained(&host, &mut host_packets, "spBv1.0/STATE/host", "online").await?;
    // A client that left cleanly: its Will must not come back.
    let (left, mut left_packets) = connect(addr, "left", Some(("clients/left", "dead"))).await?;
    publish_retained(&left, &mut left_packets, "clients/left", "alive").await?;
    left.disconnect().await?;
    tokio::time::timeout(DEADLINE, async {
        while left_packets.recv().await.is_some() {}
    })
    .await
    .context("clean disconnect")?;
    assert_eq!(
        retained(addr, "spBv1.0/STATE/host").await?.as_deref(),
        Some("online")
    );
    // A barrier before the kill: the broker forgets a Will in its disconnect hook, a write to
    // wills.redb that may still be queued when the client sees the socket close, and the store's
    // single writer commits in submission order. A client with a Will gets its CONNACK only once
    // its own record committed, so a forgetting submitted before it has committed by then (the
    // retained round trip above gives the hook time to run). Without the barrier the kill once
    // came first in a full run: that measures the kill's timing, not the Will handling (a crash
    // in that window publishes the Will of a client that had just left: a documented limit).
    let (_barrier, _barrier_packets) =
        connect(addr, "barrier", Some(("clients/barrier", "gone"))).await?;

    broker.start_kill()?;
    broker.wait().await?;
    let (_broker, addr) = start(&binary, dir.path()).await?;
    assert_eq!(
        retained(addr, "spBv1.0/STATE/host").await?.as_deref(),
        Some("offline"),
        "the Will of the connection the kill closed"
    );
    // "alive", or nothing if the kill came before its batch committed; never the discarded Will.
    let left = retained(addr, "clients/left").await?;
    assert_ne!(left.as_deref(), Some("dead"));
    Ok(())
}
