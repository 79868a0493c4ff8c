//! The simulated plant on a real embedded broker (`uns-broker` on 127.0.0.1, port 0): what a Sparkplug
//! host sees, checked with our decoder and with the independent `sparkplug-rs` crate.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use sparkplug_rs::protobuf::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uns_sim::{ScaleConfig, SimConfig, SimConnect, SimStats};
use uns_sparkplug::{Metric, Payload, Value, decode, encode};

const DEADLINE: Duration = Duration::from_secs(20);

async fn start_broker(listen: SocketAddr) -> (uns_broker::BrokerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let config = uns_broker::BrokerConfig {
        listen,
        ws_listen: None,
        data_dir: dir.path().to_owned(),
        ..uns_broker::BrokerConfig::default()
    };
    let broker = uns_broker::start(config)
        .await
        .unwrap_or_else(|error| panic!("broker on {listen}: {error}"));
    (broker, dir)
}

/// A test client subscribed to `spBv1.0/#`, playing the Sparkplug host.
struct Host {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Host {
    async fn connect(port: u16, id: &str) -> Host {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut event_loop) = AsyncClient::new(options, 1_000);
        client
            .subscribe("spBv1.0/#", QoS::AtLeastOnce)
            .await
            .unwrap_or_else(|error| panic!("subscribe: {error}"));
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(subscribed_tx) = subscribed_tx.take() {
                            let _ = subscribed_tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let _ = messages_tx.send(publish);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        within("the host's SUBACK", subscribed).await.ok();
        Host {
            client,
            messages,
            task,
        }
    }

    /// The next message whose topic ends with `suffix`.
    async fn next(&mut self, suffix: &str) -> Publish {
        within(suffix, async {
            loop {
                match self.messages.recv().await {
                    Some(publish) if publish.topic.ends_with(suffix) => return publish,
                    Some(_) => {}
                    None => panic!("host connection ended while waiting for {suffix}"),
                }
            }
        })
        .await
    }

    async fn publish(&self, topic: &str, retain: bool, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap_or_else(|error| panic!("publish {topic}: {error}"));
    }

    async fn state(&self, online: bool, timestamp: u64) {
        let payload = format!(r#"{{"online":{online},"timestamp":{timestamp}}}"#);
        self.publish("spBv1.0/STATE/test-host", true, payload.into_bytes())
            .await;
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `condition` every 10 ms until it holds (bounded by the deadline).
async fn until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn payload(publish: &Publish) -> Payload {
    decode(&publish.payload).unwrap_or_else(|error| panic!("{}: {error}", publish.topic))
}

fn start_sim(
    config: SimConfig,
    port: u16,
) -> (
    CancellationToken,
    SimStats,
    tempfile::TempDir,
    tokio::task::JoinHandle<Result<(), uns_sim::SimError>>,
) {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let shutdown = CancellationToken::new();
    let stats = SimStats::default();
    let task = tokio::spawn(uns_sim::run_with_stats(
        config,
        SimConnect::new("127.0.0.1", port),
        dir.path().to_owned(),
        shutdown.clone(),
        stats.clone(),
    ));
    (shutdown, stats, dir, task)
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_plant_births_decode_with_sparkplug_rs_and_bad_commands_are_ignored() {
    let (broker, _broker_dir) = start_broker(loopback_any_port()).await;
    let port = broker.mqtt_addr().port();
    let mut host = Host::connect(port, "test-host").await;
    let config = SimConfig {
        speed: 60.0,
        rate_hz: 5.0,
        ..SimConfig::default()
    };
    let (shutdown, stats, _sim_dir, sim) = start_sim(config, port);

    let mut births = Vec::new();
    for suffix in [
        "NBIRTH/line-1",
        "DBIRTH/line-1/filler",
        "DBIRTH/line-1/capper",
        "DBIRTH/line-1/labeler",
    ] {
        births.push(host.next(suffix).await);
    }
    let ddata = host.next("DDATA/line-1/filler").await;
    for publish in births.iter().chain([&ddata]) {
        // The independent protobuf stack reads what we wrote, metric for metric.
        let foreign = sparkplug_rs::Payload::parse_from_bytes(&publish.payload)
            .unwrap_or_else(|error| panic!("sparkplug-rs on {}: {error}", publish.topic));
        let ours = payload(publish);
        assert_eq!(foreign.seq, ours.seq, "{}", publish.topic);
        assert_eq!(foreign.metrics.len(), ours.metrics.len());
        for (theirs, ours) in foreign.metrics.iter().zip(&ours.metrics) {
            assert_eq!(theirs.name, ours.name);
            assert_eq!(theirs.alias, ours.alias);
            assert_eq!(
                theirs.datatype,
                ours.datatype.map(|datatype| datatype.code())
            );
        }
    }
    let dbirth = payload(&births[1]);
    let names: Vec<&str> = dbirth
        .metrics
        .iter()
        .filter_map(|metric| metric.name.as_deref())
        .collect();
    assert_eq!(names, uns_sim::plant::STANDARD_METRICS);
    let foreign = sparkplug_rs::Payload::parse_from_bytes(&births[1].payload)
        .unwrap_or_else(|error| panic!("{error}"));
    let temperature = &foreign.metrics[4];
    assert_eq!(temperature.datatype, Some(9), "Float");
    let properties = temperature
        .properties
        .as_ref()
        .unwrap_or_else(|| panic!("temperature has properties"));
    assert_eq!(properties.keys, ["engUnit"]);
    assert_eq!(
        properties.values[0].value,
        Some(sparkplug_rs::payload::property_value::Value::StringValue(
            "CEL".to_owned()
        ))
    );

    // Bad commands: logged, counted, ignored.
    host.publish(
        "spBv1.0/acme-berlin/NCMD/line-1",
        false,
        vec![0xFF, 0x00, 0x13],
    )
    .await;
    let unknown = Payload {
        timestamp: Some(1),
        metrics: vec![Metric::new("Valve/Open", Value::Boolean(true))],
        ..Payload::default()
    };
    let unknown = encode(&unknown).unwrap_or_else(|error| panic!("{error}"));
    host.publish("spBv1.0/acme-berlin/NCMD/line-1", false, unknown)
        .await;
    until("two command errors", || stats.command_errors() == 2).await;

    // The node still runs: a rebirth request gives a new NBIRTH with the same bdSeq and seq 0.
    let rebirth = Payload {
        timestamp: Some(1),
        metrics: vec![Metric::new("Node Control/Rebirth", Value::Boolean(true))],
        ..Payload::default()
    };
    let rebirth = encode(&rebirth).unwrap_or_else(|error| panic!("{error}"));
    host.publish("spBv1.0/acme-berlin/NCMD/line-1", false, rebirth)
        .await;
    let nbirth = payload(&host.next("NBIRTH/line-1").await);
    assert_eq!(nbirth.seq, Some(0));
    let bd_seq = |payload: &Payload| {
        payload
            .metrics
            .iter()
            .find(|metric| metric.name.as_deref() == Some("bdSeq"))
            .and_then(|metric| metric.value.clone())
    };
    assert_eq!(bd_seq(&nbirth), Some(Value::Int64(0)));

    // Intentional shutdown: NDEATH with the session's bdSeq, then run() returns.
    shutdown.cancel();
    let ndeath = payload(&host.next("NDEATH/line-1").await);
    assert_eq!(bd_seq(&ndeath), Some(Value::Int64(0)));
    assert_eq!(ndeath.seq, None);
    within("run() to return", sim)
        .await
        .unwrap_or_else(|error| panic!("join: {error}"))
        .unwrap_or_else(|error| panic!("run: {error}"));
    broker
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
}

/// A broker that goes away and comes back on the same port: the edge node buffers in redb, and after
/// the reconnect and rebirth a host sees every buffered value, in order, flagged historical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_forward_across_a_broker_restart() {
    const RATE_HZ: f64 = 20.0;
    const PERIOD_MS: u64 = 50;
    let (broker, _broker_dir) = start_broker(loopback_any_port()).await;
    let addr = broker.mqtt_addr();
    let port = addr.port();
    let mut host = Host::connect(port, "test-host").await;
    host.state(true, 1).await;
    let config = SimConfig {
        rate_hz: RATE_HZ,
        scale: Some(ScaleConfig {
            nodes: 1,
            devices_per_node: 1,
            metrics_per_device: 8,
        }),
        primary_host: Some("test-host".to_owned()),
        reconnect_delay_ms: 100,
        ..SimConfig::default()
    };
    let (shutdown, stats, _sim_dir, sim) = start_sim(config, port);
    let dbirth = payload(&host.next("DBIRTH/node-0001/device-001").await);
    let signal_alias = dbirth
        .metrics
        .iter()
        .find(|metric| metric.name.as_deref() == Some("Sim/Signal/1"))
        .and_then(|metric| metric.alias)
        .unwrap_or_else(|| panic!("Sim/Signal/1 in DBIRTH"));
    for _ in 0..3 {
        host.next("DDATA/node-0001/device-001").await;
    }
    // Samples taken between CONNACK and the host's STATE were buffered and forwarded already.
    until("the first buffer to drain", || {
        stats.forwarded() == stats.buffered()
    })
    .await;
    let n_forwarded_before = stats.forwarded();

    // The broker goes away; the node buffers a second or more of samples.
    drop(host);
    broker
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    until("20 buffered samples", || {
        stats.buffered() >= n_forwarded_before + 20
    })
    .await;

    // It comes back on the same port (empty, like a fresh broker); the host subscribes, then says online.
    let (broker, _broker_dir_2) = start_broker(addr).await;
    let mut host = Host::connect(port, "test-host").await;
    host.state(true, 2).await;
    let nbirth = payload(&host.next("NBIRTH/node-0001").await);
    assert_eq!(nbirth.seq, Some(0));
    until("the buffer to drain", || {
        stats.buffered() > 0 && stats.forwarded() == stats.buffered()
    })
    .await;
    let n_buffered = stats.buffered() - n_forwarded_before;

    // Every buffered sample arrives once, oldest first, historical, on the 50 ms grid without a gap;
    // live samples continue right after the last buffered one.
    let mut historical = Vec::new();
    let mut live = Vec::new();
    let collected = tokio::time::timeout(DEADLINE, async {
        while (historical.len() as u64) < n_buffered || live.is_empty() {
            let publish = host.next("DDATA/node-0001/device-001").await;
            for metric in payload(&publish).metrics {
                if metric.alias != Some(signal_alias) {
                    continue;
                }
                let timestamp = metric.timestamp.unwrap_or_else(|| panic!("timestamp"));
                if metric.is_historical {
                    historical.push(timestamp);
                } else {
                    live.push(timestamp);
                }
            }
        }
    })
    .await;
    assert!(
        collected.is_ok(),
        "{} of {n_buffered} buffered values and {} live ones arrived: {historical:?}",
        historical.len(),
        live.len()
    );
    assert_eq!(historical.len() as u64, n_buffered);
    for pair in historical.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            PERIOD_MS,
            "gap or disorder: {historical:?}"
        );
    }
    let last_buffered = historical[historical.len() - 1];
    assert_eq!(
        live[0],
        last_buffered + PERIOD_MS,
        "live resumes after the buffer"
    );

    shutdown.cancel();
    within("run() to return", sim)
        .await
        .unwrap_or_else(|error| panic!("join: {error}"))
        .unwrap_or_else(|error| panic!("run: {error}"));
    broker
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
}

/// Wall-clock milliseconds since the Unix epoch, as a Sparkplug host reads its clock.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// What a host sees of the sampling: no timestamp is later than the host's clock when the message
/// arrives, every device keeps a regular grid, and the devices sample at different instants of a period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_are_stamped_when_taken_and_devices_are_spread_over_the_period() {
    const PERIOD_MS: u64 = 200;
    const N_SAMPLES: usize = 4;
    let (broker, _broker_dir) = start_broker(loopback_any_port()).await;
    let port = broker.mqtt_addr().port();
    let mut host = Host::connect(port, "test-host").await;
    let config = SimConfig {
        rate_hz: 5.0,
        scale: Some(ScaleConfig {
            nodes: 2,
            devices_per_node: 3,
            // Sim/Signal/1 changes at every sample, so every sample gives a DDATA.
            metrics_per_device: 8,
        }),
        ..SimConfig::default()
    };
    let (shutdown, _stats, _sim_dir, sim) = start_sim(config, port);

    let mut stamps: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    within("samples of all six devices", async {
        while stamps.len() < 6 || stamps.values().any(|device| device.len() < N_SAMPLES) {
            let publish = host.next("").await;
            if !publish.topic.contains("/DDATA/") {
                continue;
            }
            let received_ms = wall_clock_ms();
            let data = payload(&publish);
            let timestamp = data
                .timestamp
                .unwrap_or_else(|| panic!("payload timestamp"));
            assert!(
                timestamp <= received_ms,
                "{} stamped {timestamp}, {} ms after it arrived at {received_ms}",
                publish.topic,
                timestamp - received_ms
            );
            for metric in &data.metrics {
                assert!(!metric.is_historical);
                assert!(metric.timestamp.unwrap_or(0) <= received_ms, "{metric:?}");
            }
            stamps
                .entry(publish.topic.clone())
                .or_default()
                .push(timestamp);
        }
    })
    .await;
    let mut phases_ms = Vec::new();
    for (topic, device_stamps) in &stamps {
        for pair in device_stamps.windows(2) {
            assert_eq!(pair[1] - pair[0], PERIOD_MS, "{topic}: {device_stamps:?}");
        }
        phases_ms.push(device_stamps[0] % PERIOD_MS);
    }
    phases_ms.sort_unstable();
    phases_ms.dedup();
    assert_eq!(
        phases_ms.len(),
        6,
        "devices sample at the same instant: {stamps:?}"
    );

    shutdown.cancel();
    within("run() to return", sim)
        .await
        .unwrap_or_else(|error| panic!("join: {error}"))
        .unwrap_or_else(|error| panic!("run: {error}"));
    broker
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
}

/// `Count/Good` of `device` in a DBIRTH or DDATA payload, by name (birth) or by `alias`.
fn count_good(payload: &Payload, alias: Option<u64>) -> Option<u64> {
    payload.metrics.iter().find_map(|metric| {
        let named = metric.name.as_deref() == Some("Count/Good");
        let aliased = alias.is_some() && metric.alias == alias;
        match (&metric.value, named || aliased) {
            (Some(Value::UInt64(count)), true) => Some(*count),
            (Some(Value::Untyped(uns_sparkplug::RawValue::Long(count))), true) => Some(*count),
            _ => None,
        }
    })
}

/// Retentive counters, as a PLC keeps them: the simulator stopped and started again on the same
/// data directory continues `Count/Good` from where it was, in its first DBIRTH and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_continue_across_a_sim_restart() {
    let (broker, _broker_dir) = start_broker(loopback_any_port()).await;
    let port = broker.mqtt_addr().port();
    let mut host = Host::connect(port, "test-host").await;
    let config = SimConfig {
        // 600 simulated seconds per second: the filler makes about 2000 parts per real second.
        speed: 600.0,
        rate_hz: 10.0,
        ..SimConfig::default()
    };
    let data_dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let run = |config: SimConfig| {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(uns_sim::run(
            config,
            SimConnect::new("127.0.0.1", port),
            data_dir.path().to_owned(),
            shutdown.clone(),
        ));
        (shutdown, task)
    };

    let (shutdown, sim) = run(config.clone());
    let dbirth = payload(&host.next("DBIRTH/line-1/filler").await);
    let alias = dbirth
        .metrics
        .iter()
        .find(|metric| metric.name.as_deref() == Some("Count/Good"))
        .and_then(|metric| metric.alias);
    let mut last_good = 0;
    // Well past what a fresh run reaches before its birth (same seed, same values).
    within("Count/Good to pass 2000", async {
        while last_good <= 2_000 {
            let data = payload(&host.next("DDATA/line-1/filler").await);
            if let Some(good) = count_good(&data, alias) {
                last_good = good;
            }
        }
    })
    .await;
    shutdown.cancel();
    within("run() to return", sim)
        .await
        .unwrap_or_else(|error| panic!("join: {error}"))
        .unwrap_or_else(|error| panic!("run: {error}"));
    // Whatever the node published before its NDEATH.
    within("the NDEATH", async {
        loop {
            let publish = host.next("").await;
            if publish.topic.ends_with("NDEATH/line-1") {
                break;
            }
            if publish.topic.ends_with("DDATA/line-1/filler")
                && let Some(good) = count_good(&payload(&publish), alias)
            {
                last_good = good;
            }
        }
    })
    .await;

    let (shutdown, sim) = run(config);
    let dbirth = payload(&host.next("DBIRTH/line-1/filler").await);
    let restarted = count_good(&dbirth, None).unwrap_or_else(|| panic!("Count/Good in DBIRTH"));
    assert_eq!(
        restarted, last_good,
        "after a clean stop the counter continues from its last value"
    );
    let data = payload(&host.next("DDATA/line-1/filler").await);
    if let Some(good) = count_good(&data, alias) {
        assert!(good >= restarted, "{good} < {restarted}");
    }
    shutdown.cancel();
    within("run() to return", sim)
        .await
        .unwrap_or_else(|error| panic!("join: {error}"))
        .unwrap_or_else(|error| panic!("run: {error}"));
    broker
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
}
