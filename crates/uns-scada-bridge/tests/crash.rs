//! The broker dies (`kill -9` of `uns broker`) while the simulator's edge nodes and the bridge
//! are connected (issue 9 item 5). The edge nodes buffer; after the broker's restart they must not
//! see the bridge online before it really reconnected, so every value they buffered reaches the
//! UNS as historical (`_tag/…/_history`). The bridge reaches the broker through a gate the test
//! holds closed after the restart, so "before the bridge reconnected" is a real interval.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use uns_scada_bridge::BridgeConfig;

/// A TCP forwarder to `upstream` that refuses connections while closed.
async fn gate(
    upstream: SocketAddr,
) -> anyhow::Result<(SocketAddr, tokio::sync::watch::Sender<bool>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (open_tx, open) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            if !*open.borrow() {
                drop(down);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect(upstream).await {
                    let _ = up.set_nodelay(true);
                    let _ = down.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    Ok((addr, open_tx))
}

/// Historical values by `(edge, device, timestamp_ms)`: how many.
type Historical = BTreeMap<(String, String, u64), usize>;

/// Reads what arrived so far: historical metrics in DDATA, and `_history` documents.
fn tally(
    messages: &mut tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes, bool)>,
    sparkplug: &mut Historical,
    uns: &mut Historical,
) {
    while let Ok((topic, payload, _)) = messages.try_recv() {
        if let Ok(uns_sparkplug::SparkplugTopic::Device {
            edge, device, kind, ..
        }) = topic.parse::<uns_sparkplug::SparkplugTopic>()
            && kind == uns_sparkplug::topic::DeviceMessageKind::DData
            && let Ok(data) = uns_sparkplug::decode(&payload)
        {
            for metric in data.metrics.iter().filter(|metric| metric.is_historical) {
                let timestamp = metric.timestamp.or(data.timestamp).unwrap_or_default();
                *sparkplug
                    .entry((edge.clone(), device.clone(), timestamp))
                    .or_default() += 1;
            }
        } else if topic.ends_with("/_history")
            && let Ok(tag) = serde_json::from_slice::<serde_json::Value>(&payload)
        {
            let key = (
                tag["src"]["edge"].as_str().unwrap_or_default().to_owned(),
                tag["src"]["device"].as_str().unwrap_or_default().to_owned(),
                tag["timestamp_ms"].as_u64().unwrap_or_default(),
            );
            *uns.entry(key).or_default() += 1;
        }
    }
}

#[tokio::test]
async fn after_a_broker_kill_every_buffered_value_reaches_the_uns_as_historical()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker_dir = dir.path().join("broker");
    let broker = uns_e2e::UnsProcess::start("broker", &broker_dir, &[]).await?;
    let broker_addr = broker.mqtt();
    let (bridge_addr, open) = gate(broker_addr).await?;
    let metrics = uns_client::Metrics::new();
    let (shutdown, _bridge) =
        crate::support::run_bridge(bridge_addr, BridgeConfig::default(), metrics.clone()).await?;
    let sim_config = uns_sim::SimConfig {
        primary_host: Some("scada-bridge".to_owned()),
        reconnect_delay_ms: 200,
        rate_hz: 4.0,
        ..uns_sim::SimConfig::default()
    };
    let stats = uns_sim::SimStats::default();
    let sim = tokio::spawn(uns_sim::run_with_stats(
        sim_config,
        uns_sim::SimConnect::new("127.0.0.1", broker_addr.port()),
        dir.path().join("sim"),
        shutdown.clone(),
        stats.clone(),
    ));
    // Live values flow through the bridge.
    let mut live = uns_e2e::Subscriber::connect(broker_addr, &["uns/v1/#"]).await?;
    live.wait_for(
        "uns/v1/acme/berlin/packaging/line-1/filler/_tag/process/temperature",
        Duration::from_secs(60),
        |_| true,
    )
    .await
    .context("a live value through the bridge")?;
    drop(live);

    // The crash: the edge nodes buffer.
    broker.kill()?;
    let buffered_before = stats.buffered();
    uns_e2e::eventually(
        "the simulator buffering",
        Duration::from_secs(30),
        || async { (stats.buffered() >= buffered_before + 20).then_some(()) },
    )
    .await?;
    // The broker comes back on its port; the bridge cannot reach it yet.
    open.send_replace(false);
    let port = broker_addr.port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let _broker = uns_e2e::UnsProcess::start_service(
        "broker",
        &broker_dir,
        &["--listen", &listen, "--ws-listen", "127.0.0.1:0"],
    )
    .await?;
    let mut wire = uns_e2e::Subscriber::connect(broker_addr, &["spBv1.0/#", "uns/v1/#"]).await?;
    // The edge nodes reconnected and either forward (the bug: to nobody) or keep buffering.
    let forwarded_before = stats.forwarded();
    let buffered_at_restart = stats.buffered();
    uns_e2e::eventually(
        "the simulator back, forwarding or buffering",
        Duration::from_secs(30),
        || async {
            (stats.forwarded() > forwarded_before || stats.buffered() >= buffered_at_restart + 40)
                .then_some(())
        },
    )
    .await?;
    open.send_replace(true);
    // Everything buffered is forwarded, and every forwarded value is on the UNS as historical.
    uns_e2e::eventually(
        "the backlog forwarded",
        Duration::from_secs(120),
        || async { (stats.forwarded() >= stats.buffered()).then_some(()) },
    )
    .await?;
    let mut sparkplug = Historical::new();
    let mut uns = Historical::new();
    let matched = uns_e2e::eventually(
        "every historical value on _history",
        Duration::from_secs(60),
        || {
            tally(&mut wire.messages, &mut sparkplug, &mut uns);
            let done = !sparkplug.is_empty() && sparkplug == uns;
            async move { done.then_some(()) }
        },
    )
    .await;
    let n_sparkplug: usize = sparkplug.values().sum();
    let n_uns: usize = uns.values().sum();
    eprintln!(
        "buffered {} records, forwarded {}; historical values on the wire {n_sparkplug}, on _history {n_uns}",
        stats.buffered(),
        stats.forwarded()
    );
    matched.with_context(|| {
        format!("{n_sparkplug} historical values forwarded, {n_uns} on _history")
    })?;
    shutdown.cancel();
    let _ = sim.await;
    Ok(())
}
