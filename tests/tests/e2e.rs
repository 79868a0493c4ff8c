//! End-to-end tests of the `uns` binary with peers we did not write.
//!
//! Each test starts its own `uns` process on port 0 with its own data directory, so tests run
//! in parallel without colliding.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Metrics, UnsClient};
use uns_e2e::{Mosquitto, Subscriber, UnsProcess, eventually, http_get, python_peer, run_peer};
use uns_meta::PlantModel;
use uns_model::payload::{HealthStatus, NodeMeta, ServiceHealth, decode};
use uns_model::topic::{Class, UnsTopic};

const DEADLINE: Duration = Duration::from_secs(20);

fn meta_topics() -> Vec<String> {
    PlantModel::demo()
        .nodes()
        .map(|(location, _)| UnsTopic::located(location.clone(), Class::Meta).to_string())
        .collect()
}

fn meta_service_topic() -> String {
    UnsTopic::service(uns_meta::SERVICE)
        .expect("valid service name")
        .to_string()
}

/// MQTT Explorer's connect, done by paho-mqtt (MQTT 3.1.1, `#` and `$SYS/#` at QoS 0):
/// it stays connected for 10 s and sees the whole ISA-95 tree, the service health, the
/// schemas and `$SYS`, in one SUBSCRIBE and in two.
#[tokio::test(flavor = "multi_thread")]
async fn mqtt_explorer_sees_the_plant_tree_health_schemas_and_sys() -> anyhow::Result<()> {
    let python = python_peer("paho", "requirements-paho.txt")?;
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let mut expected = meta_topics();
    expected.push(meta_service_topic());
    expected.push(UnsTopic::service("broker")?.to_string());
    expected.push(UnsTopic::schema("tag", 1)?.to_string());
    // The demo's simulated plant reaches the UNS through the SCADA bridge.
    expected.push(UnsTopic::service("scada-bridge")?.to_string());
    expected.push("uns/v1/acme/berlin/packaging/line-1/filler/_state".to_owned());
    expected.push("uns/v1/acme/berlin/packaging/line-2/filler/_count/good".to_owned());
    for two_subscribes in [false, true] {
        let mut args = vec![
            "--port".to_owned(),
            uns.mqtt().port().to_string(),
            "--min-seconds".to_owned(),
            "10".to_owned(),
            "--timeout".to_owned(),
            "30".to_owned(),
            "--expect-prefix".to_owned(),
            "$SYS/".to_owned(),
        ];
        for topic in &expected {
            args.push("--expect".to_owned());
            args.push(topic.clone());
        }
        if two_subscribes {
            args.push("--two-subscribes".to_owned());
        }
        let (ok, stdout, stderr) = run_peer(&python, "mqtt_explorer.py", &args).await?;
        assert!(
            ok,
            "paho peer failed (two_subscribes={two_subscribes}): {stdout}\n{stderr}\n{}",
            uns.log_tail()
        );
        let report: serde_json::Value = serde_json::from_str(&stdout)?;
        assert_eq!(report["disconnects"], 0, "{stdout}");
        assert!(
            report["seconds"].as_f64().unwrap_or_default() >= 10.0,
            "{stdout}"
        );
        // Every `_meta` document arrived retained and decodes as the typed document.
        let messages = report["messages"].as_array().cloned().unwrap_or_default();
        for topic in meta_topics() {
            let message = messages
                .iter()
                .find(|m| m["topic"] == topic.as_str())
                .unwrap_or_else(|| panic!("{topic} missing"));
            assert_eq!(message["retain"], true, "{topic} not retained");
            let payload = message["payload"].as_str().unwrap_or_default();
            decode::<NodeMeta>(payload.as_bytes()).unwrap_or_else(|err| panic!("{topic}: {err}"));
        }
    }
    Ok(())
}

/// SIGTERM: services publish `stopped` (a clean shutdown, not the Will), the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_publishes_stopped_and_exits_cleanly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut uns = UnsProcess::start("up", dir.path(), &[]).await?;
    let topic = meta_service_topic();
    let mut subscriber = Subscriber::connect(uns.mqtt(), &[&topic]).await?;
    let status_is = |wanted: HealthStatus| {
        move |payload: &[u8]| decode::<ServiceHealth>(payload).is_ok_and(|h| h.status == wanted)
    };
    subscriber
        .wait_for(&topic, DEADLINE, status_is(HealthStatus::Running))
        .await?;
    uns.terminate()?;
    let stopped = subscriber
        .wait_for(&topic, DEADLINE, status_is(HealthStatus::Stopped))
        .await?;
    let health = decode::<ServiceHealth>(&stopped)?;
    assert_eq!(
        health.last_error, None,
        "clean shutdown must not look like the Will: {health:?}"
    );
    let status = uns.wait_exit(DEADLINE).await?;
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        uns.log_tail()
    );
    Ok(())
}

/// A clean stop of `uns up --demo` stops the simulator before the bridge, so the bridge still
/// sees the nodes' NDEATH and leaves their tags `stale` rather than looking alive.
#[tokio::test(flavor = "multi_thread")]
async fn clean_stop_leaves_the_demo_tags_stale() -> anyhow::Result<()> {
    use uns_model::payload::{Quality, TagValue};
    let dir = tempfile::tempdir()?;
    let mut uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let topic = UnsTopic::located(
        "acme/berlin/packaging/line-1/filler".parse()?,
        Class::Tag(
            uns_model::topic::TagPath::new(vec![uns_model::topic::Id::new("speed")?])
                .expect("one part"),
        ),
    )
    .to_string();
    let mut subscriber = Subscriber::connect(uns.mqtt(), &[&topic]).await?;
    let quality_is = |wanted: Quality| {
        move |payload: &[u8]| decode::<TagValue>(payload).is_ok_and(|tag| tag.quality == wanted)
    };
    subscriber
        .wait_for(&topic, DEADLINE, quality_is(Quality::Good))
        .await?;
    uns.terminate()?;
    subscriber
        .wait_for(&topic, DEADLINE, quality_is(Quality::Stale))
        .await
        .map_err(|err| err.context(uns.log_tail()))?;
    assert!(
        uns.wait_exit(DEADLINE).await?.success(),
        "{}",
        uns.log_tail()
    );
    Ok(())
}

/// `/healthz` is 200 with every component healthy; `/metrics` has broker and client figures.
#[tokio::test(flavor = "multi_thread")]
async fn healthz_and_metrics() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &[]).await?;
    let body = eventually(
        "/healthz to report every component healthy",
        DEADLINE,
        || async {
            match http_get(uns.addrs.http, "/healthz").await {
                Ok((200, body)) => Some(body),
                _ => None,
            }
        },
    )
    .await?;
    let health: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["components"]["broker"]["ok"], true, "{body}");
    assert_eq!(
        health["components"][uns_meta::SERVICE]["ok"],
        true,
        "{body}"
    );
    // Every service's client is connected: broker health, meta, scada-bridge (UNS and
    // Sparkplug connections), so the broker's gauge counts at least four.
    let metrics = eventually(
        "the broker's gauge to count every service",
        DEADLINE,
        || async {
            let (status, text) = http_get(uns.addrs.http, "/metrics").await.ok()?;
            let connected: u64 = text
                .lines()
                .find_map(|line| line.strip_prefix("uns_broker_clients_connected "))?
                .trim()
                .parse()
                .ok()?;
            (status == 200 && connected >= 4).then_some(text)
        },
    )
    .await?;
    assert!(
        metrics.contains("uns_mqtt_published_total{service=\"meta\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("uns_broker_retained_messages"),
        "{metrics}"
    );
    let (status, _) = http_get(uns.addrs.http, "/nope").await?;
    assert_eq!(status, 404);
    Ok(())
}

/// Retained messages survive an abrupt broker death (SIGKILL) and a clean restart.
#[tokio::test(flavor = "multi_thread")]
async fn retained_messages_survive_sigkill_and_restart() -> anyhow::Result<()> {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("broker", dir.path(), &[]).await?;
    let topic = "uns/v1/acme/berlin/_meta";
    let payload = r#"{"schema":"uns/meta/v1","level":"Site","display_name":"Berlin"}"#;
    let mut options = MqttOptions::new("e2e-publisher", "127.0.0.1", uns.mqtt().port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut event_loop) = AsyncClient::new(options, 10);
    client
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await?;
    // The PUBACK means the broker has taken the retained message.
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = event_loop.poll().await? {
                return anyhow::Ok(());
            }
        }
    })
    .await??;
    let acked_ms = chrono::Utc::now().timestamp_millis();
    // Prove a reader sees it before the crash.
    let mut subscriber = Subscriber::connect(uns.mqtt(), &[topic]).await?;
    subscriber
        .wait_for(topic, DEADLINE, |p| p == payload.as_bytes())
        .await?;
    drop(subscriber);
    // Retained changes commit in batches after the PUBACK (docs/STORAGE.md): crash once the
    // broker reports, in a sample taken after the PUBACK, that nothing acknowledged is
    // uncommitted — the guarantee a SIGKILL must not break.
    eventually("the retained change committed", DEADLINE, || async {
        let (status, text) = http_get(uns.addrs.http, "/metrics").await.ok()?;
        let value = |name: &str| {
            text.lines().find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .parse::<i64>()
                    .ok()
            })
        };
        (status == 200
            && value("uns_broker_stats_sampled_at_ms")? > acked_ms
            && value("uns_broker_retained_store_uncommitted")? == 0)
            .then_some(())
    })
    .await?;
    let mut uns = uns;
    uns.kill()?;
    uns.wait_exit(DEADLINE).await?;
    drop(uns);

    let uns = UnsProcess::start("broker", dir.path(), &[]).await?;
    let mut subscriber = Subscriber::connect(uns.mqtt(), &[topic]).await?;
    subscriber
        .wait_for(topic, DEADLINE, |p| p == payload.as_bytes())
        .await
        .map_err(|err| err.context(uns.log_tail()))?;
    Ok(())
}

/// The client runtime against an *external* broker (Debian's mosquitto, no persistence):
/// after mosquitto restarts empty, the service re-publishes its retained documents by itself.
#[tokio::test(flavor = "multi_thread")]
async fn client_republishes_retained_documents_after_an_external_broker_restart()
-> anyhow::Result<()> {
    let mosquitto = Mosquitto::start(None).await?;
    let port = mosquitto.port;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut options = ClientOptions::new(BrokerUrl::new("127.0.0.1", port), "e2e-meta")?;
    options.backoff_max = Duration::from_millis(500);
    let (client, _inbox, event_loop) = UnsClient::start(
        options,
        ClientMetrics::register(&Metrics::new()),
        shutdown.clone(),
    );
    client.wait_connected(DEADLINE).await?;
    let (location, meta) = PlantModel::demo()
        .nodes()
        .map(|(l, m)| (l.clone(), m.clone()))
        .next()
        .expect("demo plant has nodes");
    let topic = UnsTopic::located(location, Class::Meta);
    client.publish(&topic, &meta).await?;
    let topic_text = topic.to_string();
    let expected = Bytes::from(serde_json::to_vec(&meta)?);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut subscriber = Subscriber::connect(addr, &[&topic_text]).await?;
    subscriber
        .wait_for(&topic_text, DEADLINE, |p| p == expected.as_ref())
        .await?;
    drop(subscriber);

    let mut state = client.connection_state();
    mosquitto.kill().await?;
    tokio::time::timeout(DEADLINE, state.wait_for(|connected| !*connected)).await??;
    let _mosquitto = Mosquitto::start(Some(port)).await?;
    tokio::time::timeout(DEADLINE, state.wait_for(|connected| *connected)).await??;
    // mosquitto came back empty; only the client's re-publish can bring the document back.
    let mut subscriber = Subscriber::connect(addr, &[&topic_text]).await?;
    subscriber
        .wait_for(&topic_text, DEADLINE, |p| p == expected.as_ref())
        .await?;
    client.shutdown(Duration::from_secs(2)).await;
    shutdown.cancel();
    let _ = event_loop.await;
    Ok(())
}

/// A bad config section stops `uns up` with exit status 2 and one line naming the file, the
/// section and the key, before anything listens: the ready file (written once listening) never
/// appears, and the MQTT port asked for is still free afterwards.
#[test]
fn a_bad_config_section_exits_2_naming_file_section_and_key_before_listening() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("uns.toml");
    let ready = dir.path().join("ready.json");
    // A port that is free now; `uns up` must not take it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    for (text, key) in [
        (
            "[scada_bridge]\nreorder_timeout_ms = \"soon\"\n",
            "[scada_bridge] reorder_timeout_ms",
        ),
        ("[broker]\nlisen = \"127.0.0.1:1\"\n", "lisen"),
        (
            "[[scada_bridge.nodes]]\ngroup = \"g\"\nedge = \"e\"\nlocation = \"Acme/Berlin\"\n",
            "[scada_bridge] nodes[0].location",
        ),
    ] {
        std::fs::write(&config, text)?;
        let output = std::process::Command::new(uns_e2e::uns_binary()?)
            .args(["up", "--config"])
            .arg(&config)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--ws-listen",
                "none",
            ])
            .args(["--http-listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
        let line = stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_default();
        assert!(line.contains(&config.display().to_string()), "{line}");
        assert!(line.contains(key), "{line:?} lacks {key:?}");
        assert!(!ready.exists(), "uns up got as far as listening");
        std::net::TcpListener::bind(("127.0.0.1", port))?;
    }
    Ok(())
}

/// Every `.rs` file under `dir`, skipping hidden and `target*` directories and those `skip` names.
fn rust_files(dir: &std::path::Path, skip: &dyn Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !name.starts_with("target") && !skip(&name) {
                files.extend(rust_files(&path, skip));
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    files
}

/// Tidy: every Rust source file starts with a `//!` module doc (STYLE habit 28).
#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = uns_e2e::workspace_dir();
    // `scratch` holds throwaway files.
    let skip = |name: &str| name == "scratch";
    let missing: Vec<String> = [root.join("crates"), root.join("tests")]
        .iter()
        .flat_map(|dir| rust_files(dir, &skip))
        .filter(|path| {
            !std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim_start()
                .starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! doc: {missing:#?}");
}

/// Tidy: topic strings are built only through the typed model (`uns_model::topic`,
/// `uns_sparkplug::topic`): no `"uns/v1` or `"spBv1.0` literal in the source of any other crate
/// (tests, and a file's `#[cfg(test)]` part at its end, may spell topics out).
#[test]
fn topic_literals_live_only_in_the_model_crates() {
    let skip = |name: &str| {
        matches!(
            name,
            "tests" | "benches" | "examples" | "uns-model" | "uns-sparkplug"
        )
    };
    let quote = '"';
    let mut found = Vec::new();
    for path in rust_files(&uns_e2e::workspace_dir().join("crates"), &skip) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (idx, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = line.split("//").next().unwrap_or_default();
            for literal in ["uns/v1", "spBv1.0"] {
                if code.contains(&format!("{quote}{literal}")) {
                    found.push(format!("{}:{}: {}", path.display(), idx + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "topic literals outside uns-model and uns-sparkplug (use UnsTopic / SparkplugTopic): {found:#?}"
    );
}

/// What `uns sim` publishes decodes with Sparkplug libraries we did not write: PyPI's
/// `pysparkplug` and `mqtt-spb-wrapper`, each in its own venv. Every demo device's DBIRTH has
/// the seven metrics with the right datatypes, and its DDATA values resolve through the aliases
/// to values of the right kind.
#[tokio::test(flavor = "multi_thread")]
async fn foreign_sparkplug_libraries_decode_what_uns_sim_publishes() -> anyhow::Result<()> {
    const DEVICES: [&str; 5] = [
        "line-1/filler",
        "line-1/capper",
        "line-1/labeler",
        "line-2/filler",
        "line-2/case-packer",
    ];
    let dir = tempfile::tempdir()?;
    let broker = UnsProcess::start("broker", &dir.path().join("broker"), &[]).await?;
    let port = broker.mqtt().port().to_string();
    let mut peers = Vec::new();
    for (lib, requirements) in [
        ("pysparkplug", "requirements-pysparkplug.txt"),
        ("spb-wrapper", "requirements-spb-wrapper.txt"),
    ] {
        let python = python_peer(lib, requirements)?;
        let ready = dir.path().join(format!("{lib}.ready"));
        let mut args = vec![
            "--port".to_owned(),
            port.clone(),
            "--lib".to_owned(),
            lib.to_owned(),
            "--ready-file".to_owned(),
            ready.display().to_string(),
            "--timeout".to_owned(),
            "40".to_owned(),
        ];
        for device in DEVICES {
            args.push("--device".to_owned());
            args.push(device.to_owned());
        }
        let peer =
            tokio::spawn(async move { run_peer(&python, "decode_sparkplug.py", &args).await });
        eventually(&format!("{lib} peer to subscribe"), DEADLINE, || {
            let ready = ready.clone();
            async move { ready.exists().then_some(()) }
        })
        .await?;
        peers.push((lib, peer));
    }
    let broker_url = format!("mqtt://127.0.0.1:{port}");
    let _sim =
        UnsProcess::start_service("sim", &dir.path().join("sim"), &["--broker", &broker_url])
            .await?;
    for (lib, peer) in peers {
        let (ok, stdout, stderr) = peer.await??;
        assert!(ok, "{lib} failed: {stdout}\n{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout)?;
        for device in DEVICES {
            let births = &report["births"][device];
            let values = &report["values"][device];
            for metric in [
                "State/Code",
                "State/Name",
                "Count/Good",
                "Count/Scrap",
                "Process/Temperature",
                "Process/Pressure",
                "Speed",
            ] {
                assert!(
                    !births[metric].is_null(),
                    "{lib}: {device} DBIRTH lacks {metric}: {stdout}"
                );
            }
            // Datatypes as each library names them (pysparkplug: enum names; mqtt-spb-wrapper:
            // the spec's numeric codes).
            let expected_types = if lib == "pysparkplug" {
                [
                    ("State/Code", "INT32"),
                    ("Count/Good", "UINT64"),
                    ("Process/Temperature", "FLOAT"),
                    ("Speed", "DOUBLE"),
                ]
            } else {
                [
                    ("State/Code", "3"),
                    ("Count/Good", "8"),
                    ("Process/Temperature", "9"),
                    ("Speed", "10"),
                ]
            };
            for (metric, datatype) in expected_types {
                assert_eq!(births[metric], datatype, "{lib}: {device} {metric}");
            }
            assert!(values["State/Code"].is_i64(), "{lib}: {device}: {values}");
            assert!(
                values["State/Name"].is_string(),
                "{lib}: {device}: {values}"
            );
            assert!(
                values["Count/Good"].as_u64().is_some(),
                "{lib}: {device}: {values}"
            );
            assert!(
                values["Process/Temperature"].is_f64(),
                "{lib}: {device}: {values}"
            );
        }
        assert!(
            report["n_data"].as_u64().unwrap_or_default() >= 15,
            "{lib}: {stdout}"
        );
    }
    Ok(())
}

/// `uns wo` against `uns up --demo`: a production order published as the ERP bridge publishes it
/// becomes a work order that the demo releases, starts and completes with counts from the
/// simulated plant (sim → scada-bridge → workorders); `uns wo` lists and shows it, and a refused
/// transition exits non-zero with the service's reason.
#[tokio::test(flavor = "multi_thread")]
async fn uns_wo_follows_a_demo_order_through_its_lifecycle() -> anyhow::Result<()> {
    use anyhow::Context as _;

    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let url = format!("http://{}", uns.addrs.http);
    let order = line_1_order("po-e2e", "PO E2E", "BOTTLE-1L", 12.0)?;
    let (_erp, stop) = publish_as_erp_bridge(&uns, &order).await?;

    let wo = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let output = tokio::process::Command::new(uns_e2e::uns_binary()?)
                .arg("wo")
                .args(&args)
                .args(["--url", &url])
                .output()
                .await?;
            anyhow::Ok((
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
    };
    let list = || wo(vec!["list".to_owned()]);
    // The demo's own ERP orders (from the ERP bridge's demo adapter) run on line 1 too and would
    // keep po-e2e waiting for minutes: an operator's rush order, so the others on line 1 are
    // cancelled with `uns wo cancel` until po-e2e is the one running.
    cancel_others_until_running(&uns, "po-e2e").await?;
    eventually(
        "po-e2e running in `uns wo list`",
        Duration::from_secs(30),
        || async {
            let (ok, out, _) = list().await.ok()?;
            (ok && out
                .lines()
                .any(|l| l.starts_with("po-e2e") && l.contains("running")))
            .then_some(())
        },
    )
    .await
    .with_context(|| uns.log_tail())?;
    eventually(
        "po-e2e completed (or closed) at 12 good",
        Duration::from_secs(60),
        || async {
            let (ok, out, _) = list().await.ok()?;
            // Closed once the demo ERP accepted its final confirmation.
            (ok && out.lines().any(|l| {
                l.starts_with("po-e2e")
                    && (l.contains("completed") || l.contains("closed"))
                    && l.contains(" of 12")
            }))
            .then_some(())
        },
    )
    .await
    .with_context(|| uns.log_tail())?;
    let (ok, shown, _) = wo(vec!["show".to_owned(), "po-e2e".to_owned()]).await?;
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&shown)?;
    assert!(
        shown["quantities"]["good"]["qty"].as_f64() >= Some(12.0),
        "{shown}"
    );
    assert_eq!(shown["erp_ref"], "PO E2E");
    // The first cell of line 1 seen publishing `_count`.
    assert!(
        shown["counting_location"]
            .as_str()
            .is_some_and(|cell| cell.starts_with("acme/berlin/packaging/line-1/")),
        "{shown}"
    );
    let (ok, _, err) = wo(vec!["start".to_owned(), "po-e2e".to_owned()]).await?;
    assert!(!ok);
    assert!(
        err.contains("cannot start an order that is completed (HTTP 409)")
            || err.contains("cannot start an order that is closed (HTTP 409)"),
        "{err}"
    );
    let (ok, _, err) = wo(vec!["show".to_owned(), "po-nope".to_owned()]).await?;
    assert!(
        !ok && err.contains("no work order po-nope (HTTP 404)"),
        "{err}"
    );
    stop.cancel();
    uns.terminate()?;
    Ok(())
}

/// The web console in a real browser (Debian's headless Chromium driven through chromedriver by
/// selenium) against `uns up --demo`: the page goes live, the tree expands level by level to a
/// `_tag` of the demo plant whose value then changes on the page, two tags overlay in one chart
/// that grows live, the chart's CSV downloads with both, and a Sparkplug DDATA topic shows metric
/// names from the births. Screenshots land in target/screenshots (not committed).
#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser_shows_live_tags_and_overlays_two_in_one_chart()
-> anyhow::Result<()> {
    let python = browser_peer()?;
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let tag = "uns/v1/acme/berlin/packaging/line-1/filler/_tag/process";
    let temperature = format!("{tag}/temperature");
    let pressure = format!("{tag}/pressure");
    // The page starts once the demo's tags are there.
    eventually("the demo's tags in the console", DEADLINE, || {
        let path = format!("/api/v1/console/topic?name={pressure}");
        async move {
            let (status, _) = http_get(uns.addrs.http, &path).await.ok()?;
            (status == 200).then_some(())
        }
    })
    .await?;
    let screenshots = uns_e2e::target_dir().join("screenshots");
    let args = [
        "--url",
        &format!("http://{}/", uns.addrs.http),
        "--tag",
        &temperature,
        "--tag",
        &pressure,
        "--ddata",
        "spBv1.0/acme-berlin/DDATA/line-1/filler",
        "--downloads",
        &dir.path().join("downloads").display().to_string(),
    ];
    let seen = run_console_script(&python, "console_browser.py", &args, &screenshots, || {
        uns.log_tail()
    })
    .await?;
    assert_ne!(seen["value_before"], seen["value_after"], "{seen}");
    assert_eq!(seen["retained"], "retained", "{seen}");
    assert_eq!(seen["schema"], "Schema uns/tag/v1: valid", "{seen}");
    let both = serde_json::json!([pressure, temperature]);
    assert_eq!(seen["chart_topics"], both, "{seen}");
    assert_eq!(seen["chart_svgs"], 1, "two topics, one chart: {seen}");
    assert_eq!(seen["csv_topics"], both, "{seen}");
    let names = seen["ddata_metric_names"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!names.is_empty(), "{seen}");
    assert!(
        names.iter().all(|name| name
            .as_str()
            .is_some_and(|name| name.contains('/') || name == "Speed")),
        "metric names, not aliases: {seen}"
    );
    Ok(())
}

/// `uns erp materials` and `uns erp post` against `uns up --demo`, as an operator loads a master
/// and an order by hand: an order for a material not in the master is refused (exit non-zero,
/// the material named); once the master has it, the order is accepted and becomes a work order.
#[tokio::test(flavor = "multi_thread")]
async fn uns_erp_post_refuses_an_unknown_material_and_accepts_it_once_in_the_master()
-> anyhow::Result<()> {
    use anyhow::Context as _;
    use tokio::io::AsyncWriteExt as _;

    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let url = format!("http://{}", uns.addrs.http);
    let erp = |args: &'static [&'static str], input: String| {
        let url = url.clone();
        async move {
            let mut child = tokio::process::Command::new(uns_e2e::uns_binary()?)
                .arg("erp")
                .args(args)
                .args(["--url", &url])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(input.as_bytes()).await?;
            drop(stdin);
            let output = child.wait_with_output().await?;
            anyhow::Ok((
                output.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            ))
        }
    };
    let order = serde_json::json!({
        "id": "po-cli-1",
        "material": "JAR-500ML",
        "quantity": {"qty": 50, "uom": "EA"},
        "equipment": "WC-4712",
    })
    .to_string();
    // The demo master is loaded once the plant model is there; until then any order is refused
    // for its line too, so wait for the refusal that names the material.
    let refusal = eventually(
        "the order refused for its unknown material",
        Duration::from_secs(30),
        || {
            let order = order.clone();
            async move {
                let (ok, out) = erp(&["post", "-"], order).await.ok()?;
                (!ok && out.contains("JAR-500ML") && !out.contains("WC-4712")).then_some(out)
            }
        },
    )
    .await
    .with_context(|| uns.log_tail())?;
    assert!(refusal.contains("HTTP 422"), "{refusal}");
    let (ok, out) = erp(
        &["materials", "--merge", "-"],
        r#"[{"id": "JAR-500ML", "description": "Jar 500 ml", "uom": "EA"}]"#.to_owned(),
    )
    .await?;
    assert!(ok, "{out}");
    let (ok, out) = erp(&["post", "-"], order.clone()).await?;
    assert!(ok, "{out}");
    eventually("work order po-cli-1", Duration::from_secs(30), || async {
        let (status, body) = http_get(uns.addrs.http, "/api/v1/work-orders/po-cli-1")
            .await
            .ok()?;
        let order: uns_model::payload::WorkOrder =
            (status == 200).then(|| serde_json::from_str(&body).ok())??;
        (order.material == "JAR-500ML").then_some(())
    })
    .await
    .with_context(|| uns.log_tail())?;
    uns.terminate()?;
    Ok(())
}

/// The console's work-order view in a real browser against `uns up --demo` with one order (published
/// as the ERP bridge does, large enough to keep running): its row shows it running, the detail's good
/// count grows live from the retained `_wo` document, Hold (posted to the workorders API from the
/// page) shows held once the new document arrives over MQTT, a refused Start shows the server's
/// reason, Resume runs it again. Screenshots in target/screenshots.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_work_order_view_follows_an_order_and_holds_it_through_the_api()
-> anyhow::Result<()> {
    let python = browser_peer()?;
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let order = line_1_order("po-console", "PO CONSOLE", "BOTTLE-1L", 1_000_000.0)?;
    // So that none of the demo's orders arrives after the others are cancelled and starts when
    // po-console is held.
    demo_orders_arrived(&uns).await?;
    let (_erp, stop) = publish_as_erp_bridge(&uns, &order).await?;
    // The demo's own ERP orders run on line 1 too: cancel them (as an operator makes room for a
    // rush order) until po-console is the one running, so the page has a running order to show.
    cancel_others_until_running(&uns, "po-console").await?;
    let screenshots = uns_e2e::target_dir().join("screenshots");
    let args = [
        "--url",
        &format!("http://{}/", uns.addrs.http),
        "--order",
        "po-console",
    ];
    let seen = run_console_script(&python, "console_orders.py", &args, &screenshots, || {
        uns.log_tail()
    })
    .await?;
    assert_eq!(seen["list_status"], "running", "{seen}");
    assert_ne!(seen["good_before"], seen["good_after"], "{seen}");
    assert!(
        seen["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e == "status_changed")),
        "{seen}"
    );
    assert_eq!(seen["after_hold"], "held", "{seen}");
    assert_eq!(seen["hold_answer"], "hold: accepted", "{seen}");
    assert!(
        seen["start_answer"]
            .as_str()
            .is_some_and(|answer| answer.contains("cannot start an order that is held")),
        "the server's refusal: {seen}"
    );
    assert_eq!(seen["after_resume"], "running", "{seen}");
    assert_eq!(seen["list_status_after"], "running", "{seen}");
    // The workorders service agrees with what the page showed.
    let (status, body) = http_get(uns.addrs.http, "/api/v1/work-orders/po-console").await?;
    assert_eq!(status, 200, "{body}");
    let shown: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(shown["status"], "running", "{shown}");
    stop.cancel();
    uns.terminate()?;
    Ok(())
}

/// The console's plant, OEE, work-order and trace views in a real browser against `uns up --demo`
/// (tests/peers/console_browser_views.py): the filler's state and a good counter that grows on the
/// plant view, with the services' health and `$SYS`; line 1's OEE of the open hour changing live;
/// the demo's line-2 order held and resumed from the page, each change seen over MQTT on its `_wo`
/// document; and the trace of a finished order's output lot drawn with its raw lots, its
/// transforms off balance as the genealogy API says, and the recall CSV downloaded through the
/// page with the same lots. Screenshots of each view in target/screenshots.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_plant_oee_orders_and_trace_views_in_a_real_browser() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use uns_model::payload::{WorkOrder, WorkOrderStatus};

    let python = browser_peer()?;
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    // A small order on line 1 whose output lot the trace view then shows with its raw lots.
    let (_erp, stop) = run_order_consuming_demo_lots(&uns, "po-views", "PO VIEWS").await?;
    let lot = "po-views-out";
    let http = uns.addrs.http;
    let trace_path = format!("/api/v1/trace/{lot}?direction=backward");
    let trace = eventually(
        "po-views-out traced back to its raw lots",
        Duration::from_secs(90),
        || {
            let path = trace_path.clone();
            async move {
                let (status, body) = http_get(http, &path).await.ok()?;
                let trace: serde_json::Value =
                    (status == 200).then(|| serde_json::from_str(&body).ok())??;
                (trace["lots"].as_array()?.len() >= 3).then_some(trace)
            }
        },
    )
    .await
    .with_context(|| uns.log_tail())?;
    // The demo's line-2 order, running on its own line: the page holds and resumes it.
    let (status, body) = http_get(http, "/api/v1/work-orders").await?;
    anyhow::ensure!(status == 200, "{body}");
    let orders: Vec<WorkOrder> = serde_json::from_str(&body)?;
    let line_2 = orders
        .iter()
        .find(|o| o.hierarchy_scope.to_string() == "acme/berlin/packaging/line-2")
        .context("the demo's line-2 order")?;
    let wo_topic = UnsTopic::located(
        line_2.hierarchy_scope.clone(),
        Class::WorkOrder(line_2.id.clone()),
    )
    .to_string();
    eventually("the line-2 order running", DEADLINE, || async {
        let (_, body) = http_get(http, &format!("/api/v1/work-orders/{}", line_2.id))
            .await
            .ok()?;
        let order: WorkOrder = serde_json::from_str(&body).ok()?;
        (order.status == WorkOrderStatus::Running).then_some(())
    })
    .await?;
    let mut subscriber = Subscriber::connect(uns.mqtt(), &[&wo_topic]).await?;

    let screenshots = uns_e2e::target_dir().join("screenshots");
    let args = [
        "--url",
        &format!("http://{http}/"),
        "--cell",
        "acme/berlin/packaging/line-1/filler",
        "--line",
        "acme/berlin/packaging/line-1",
        "--order",
        line_2.id.as_str(),
        "--lot",
        lot,
        "--forward-lot",
        "pet-2026-001",
        "--downloads",
        &dir.path().join("downloads").display().to_string(),
    ];
    let seen = run_console_script(
        &python,
        "console_browser_views.py",
        &args,
        &screenshots,
        || uns.log_tail(),
    )
    .await?;
    // The figure for the docs (`-- --nocapture`): what the page loaded before its first answer.
    eprintln!("console page weight: {}", seen["page_weight"]);
    assert!(
        seen["page_weight"]["body_bytes"].as_u64() > Some(0),
        "{seen}"
    );

    // Plant: the state category is one of the model's, the counter grew on the page, every
    // service of `uns up` shows its health.
    let plant = &seen["plant"];
    assert!(plant["first"]["category"].is_string(), "{seen}");
    assert_ne!(plant["first"]["good"], plant["later_good"], "{seen}");
    let services: Vec<&str> = plant["first"]["services"]
        .as_array()
        .context("services")?
        .iter()
        .filter_map(|row| row[0].as_str())
        .collect();
    for service in [
        "broker",
        "meta",
        "workorders",
        "oee",
        "genealogy",
        "console",
    ] {
        assert!(services.contains(&service), "{service} missing: {seen}");
    }
    assert!(
        plant["first"]["sys"]
            .as_array()
            .is_some_and(|sys| sys.iter().any(|row| row[0] == "broker/version")),
        "{seen}"
    );
    // OEE: a percentage for the open hour, drawn with at least the production bucket.
    let oee = &seen["oee"]["later"];
    assert!(
        oee["oee"].as_str().is_some_and(|v| v.ends_with(" %")),
        "{seen}"
    );
    assert!(
        oee["period"]
            .as_str()
            .is_some_and(|p| p.starts_with("hour ")),
        "{seen}"
    );
    assert_ne!(seen["oee"]["first"]["counts"], oee["counts"], "{seen}");
    // Work orders: the page showed held, then running; MQTT carried both documents.
    assert_eq!(seen["after_hold"]["detail_status"], "held", "{seen}");
    assert_eq!(seen["after_hold"]["answer"], "hold: accepted", "{seen}");
    assert_eq!(seen["after_resume"]["detail_status"], "running", "{seen}");
    let mut statuses = Vec::new();
    while let Ok((topic, payload, _)) = subscriber.messages.try_recv() {
        if topic == wo_topic {
            let order: WorkOrder = serde_json::from_slice(&payload)?;
            statuses.push(order.status);
        }
    }
    let held_at = statuses
        .iter()
        .position(|s| *s == WorkOrderStatus::Held)
        .with_context(|| format!("no held document over MQTT: {statuses:?}"))?;
    assert!(
        statuses[held_at..].contains(&WorkOrderStatus::Running),
        "running again after held over MQTT: {statuses:?}"
    );
    assert!(
        seen["dead_letters"]
            .as_str()
            .is_some_and(|text| text.starts_with("ERP dead letters")),
        "{seen}"
    );
    assert_eq!(
        seen["unknown_lot"], "no-such-lot: lot no-such-lot is unknown",
        "the genealogy service's reason: {seen}"
    );
    // Trace: the page drew the lots the API answers, layered by their depth, flagged the
    // transforms the API says are off balance, and the CSV it downloaded lists the same lots.
    let api_lots = api_lot_depths(&trace)?;
    assert_eq!(page_lot_depths(&seen["trace"])?, api_lots, "{seen}");
    let api_off = trace["transforms"]
        .as_array()
        .context("transforms")?
        .iter()
        .filter(|t| t["status"] == "off")
        .count();
    assert_eq!(seen["trace"]["off_rows"], api_off, "{seen}");
    // The recall sheet lists the lots with a record (a lot only named by an edge has none).
    let mut api_names: Vec<String> = trace["lots"]
        .as_array()
        .context("lots")?
        .iter()
        .filter(|l| l["lot"].is_object())
        .filter_map(|l| l["lot_id"].as_str().map(str::to_owned))
        .collect();
    api_names.sort();
    let mut csv_lots: Vec<String> = seen["csv_lots"]
        .as_array()
        .context("csv lots")?
        .iter()
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect();
    csv_lots.sort();
    assert_eq!(csv_lots, api_names, "{seen}");
    // Forward from the raw preform lot: the page drew the lots the API answers (the order's output
    // among them) and put the query in the URL.
    let (status, body) = http_get(http, "/api/v1/trace/pet-2026-001?direction=forward").await?;
    anyhow::ensure!(status == 200, "{body}");
    let forward: serde_json::Value = serde_json::from_str(&body)?;
    let api_forward = api_lot_depths(&forward)?;
    let page_forward = page_lot_depths(&seen["forward"])?;
    assert!(
        api_forward.contains(&("po-views-out".to_owned(), 1)),
        "{forward}"
    );
    assert_eq!(page_forward, api_forward, "{seen}");
    assert!(
        seen["forward_hash"].as_str().is_some_and(
            |hash| hash.contains("lot=pet-2026-001") && hash.contains("direction=forward")
        ),
        "{seen}"
    );
    // The figure for the docs: what the console's history holds after this run of the demo.
    let (_, stats) = http_get(http, "/api/v1/console/stats").await?;
    eprintln!("console stats after the views test: {stats}");
    stop.cancel();
    uns.terminate()?;
    Ok(())
}

/// The load figure of the console in a real browser (issue 15): `uns up` with 50 000 retained
/// topics (45 000 in a plant-like tree `load/area/line/cell/tag`, 5 000 side by side under
/// `wide/`), a publisher changing 20 of them 200 times a second meanwhile, then
/// tests/peers/console_browser_load.py times the first level, opening branches (the widest
/// shows its first 2 000), a filter, and counts the page's long tasks; the process's RSS before
/// and after the topics and the first level over HTTP are printed too. A measurement
/// (`cargo test -p uns-e2e --test e2e console_load -- --ignored --nocapture`), so ignored in the
/// suite; it asserts only that each step happened.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn console_load_50000_retained_topics_in_a_real_browser() -> anyhow::Result<()> {
    use rumqttc::{AsyncClient, MqttOptions, QoS};

    const N_TOPICS: usize = 50_000;
    const N_WIDE: usize = 5_000;
    let topic = |idx: usize| {
        if idx < N_WIDE {
            format!("wide/tag-{idx}")
        } else {
            format!(
                "load/area-{}/line-{}/cell-{}/tag-{idx}",
                idx % 10,
                idx / 10 % 50,
                idx / 500 % 10
            )
        }
    };
    let rss_kib = |pid: Option<u32>| -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let python = python_peer("browser", "requirements-browser.txt")?;
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &[]).await?;
    let http = uns.addrs.http;
    let rss_before = rss_kib(uns.pid());
    let mut options = MqttOptions::new("console-load", "127.0.0.1", uns.mqtt().port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut event_loop) = AsyncClient::new(options, 1000);
    let driver = tokio::spawn(async move { while event_loop.poll().await.is_ok() {} });
    for idx in 0..N_TOPICS {
        client
            .publish(
                topic(idx),
                QoS::AtLeastOnce,
                true,
                format!(r#"{{"value":{idx}}}"#),
            )
            .await?;
    }
    eventually(
        "the console holding every topic",
        Duration::from_secs(180),
        || async {
            let (_, body) = http_get(http, "/api/v1/console/stats").await.ok()?;
            let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
            (stats["n_topics"].as_u64()? >= N_TOPICS as u64).then_some(())
        },
    )
    .await?;
    let rss_after = rss_kib(uns.pid());
    let mut first_level = Vec::new();
    for _ in 0..5 {
        let started = tokio::time::Instant::now();
        let (status, _) = http_get(http, "/api/v1/console/tree").await?;
        first_level.push(started.elapsed());
        assert_eq!(status, 200);
    }
    // Live changes while the page is open: 20 topics, one every 5 ms.
    let live = {
        let client = client.clone();
        tokio::spawn(async move {
            for round in 0u64.. {
                let idx = N_WIDE + (round % 20) as usize * 10 + 3;
                let payload = format!(r#"{{"value":{round}}}"#);
                if client
                    .publish(topic(idx), QoS::AtMostOnce, true, payload)
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let screenshots = uns_e2e::target_dir().join("screenshots");
    let args: Vec<String> = [
        "--url",
        &format!("http://{http}/"),
        "--first",
        "load",
        "--first-count",
        "45000",
        "--expand",
        "load=li.node[data-path=\"load/area-3\"]",
        "--expand",
        "load/area-3=li.node[data-path=\"load/area-3/line-7\"]",
        "--expand",
        "wide=li.node[data-path^=\"wide/tag-\"]",
        "--filter",
        "tag-49999=1 of",
        "--seconds",
        "10",
        "--screenshots",
        &screenshots.display().to_string(),
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let (ok, stdout, stderr) = run_peer(&python, "console_browser_load.py", &args).await?;
    live.abort();
    driver.abort();
    let (_, stats) = http_get(http, "/api/v1/console/stats").await?;
    eprintln!(
        "console load: {N_TOPICS} retained topics; uns up RSS {rss_before:?} KiB before, \
         {rss_after:?} KiB after; first level over HTTP {first_level:?}; stats {stats}; \
         browser {stdout}"
    );
    assert!(
        ok,
        "the browser run failed: {stdout}\n{stderr}\n{}",
        uns.log_tail()
    );
    uns.terminate()?;
    Ok(())
}

/// The ERP bridge's dead letters in the console (tests/peers/console_browser_dead_letters.py):
/// `uns up` with a stand-in ERP that refuses and `max_attempts = 1`, so one confirmation (published
/// as the work-order service does) becomes a dead letter; the work-order view lists it, the ERP
/// comes back, Replay on the page queues it again, and the ERP receives it once.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_replays_an_erp_dead_letter_from_the_page() -> anyhow::Result<()> {
    use uns_model::payload::{
        ActivityTimes, EventHeader, Quantity, SchemaTag, Timestamp, Uom, WorkOrderEvent,
        WorkOrderEventKind,
    };
    use uns_model::topic::Id;

    let python = browser_peer()?;
    let dir = tempfile::tempdir()?;
    let (erp, erp_addr) = StandInErp::default().start().await?;
    let config = dir.path().join("uns.toml");
    std::fs::write(
        &config,
        format!(
            "[erp_bridge]\nerp_url = \"http://{erp_addr}/confirmations\"\ntimeout_ms = 500\n\
             retry_initial_ms = 50\nretry_max_ms = 200\nmax_attempts = 1\n"
        ),
    )?;
    let config_arg = config.to_string_lossy().into_owned();
    let uns = UnsProcess::start("up", &dir.path().join("uns"), &["--config", &config_arg]).await?;
    let http = uns.addrs.http;

    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let (client, _inbox, _) = UnsClient::start(
        ClientOptions::new(
            BrokerUrl::new("127.0.0.1", uns.mqtt().port()),
            "dead-letter-tester",
        )?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    client.wait_connected(Duration::from_secs(10)).await?;
    let now = Timestamp::from(chrono::Utc::now());
    let wo_id = Id::new("wo-dead-1")?;
    let event = WorkOrderEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(uuid::Uuid::now_v7(), now, now),
        wo_id: wo_id.clone(),
        kind: WorkOrderEventKind::ConfirmationRequested {
            is_final: true,
            sequence: 1,
            erp_ref: Some("PO-DEAD-1".to_owned()),
            production_order: None,
            good: Quantity::new(100.0, Uom::EA),
            scrap: Quantity::new(1.0, Uom::EA),
            rework: Quantity::new(0.0, Uom::EA),
            operation_id: None,
            activity: ActivityTimes::default(),
            goods_movements: Vec::new(),
        },
    };
    let key = event.header.event_id.to_string();
    let topic = UnsTopic::located(
        "acme/berlin/packaging/line-1".parse()?,
        Class::WorkOrderEvents(wo_id),
    );
    // (Published as the work-order service would, from a client id not reserved for it.)
    // The bridge subscribes a moment after it reports ready: repeat the request (same event id,
    // so it is queued once) until the bridge lists it as a dead letter.
    eventually("the confirmation as a dead letter", DEADLINE, || {
        let (client, topic, event) = (client.clone(), topic.clone(), event.clone());
        async move {
            let (_, body) = http_get(http, "/api/v1/dead-letters").await.ok()?;
            let letters: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
            if letters.iter().any(|l| l["wo_id"] == "wo-dead-1") {
                return Some(());
            }
            client.publish(&topic, &event).await.ok()?;
            None
        }
    })
    .await?;
    assert!(erp.accepted().is_empty());
    erp.accepting
        .store(true, std::sync::atomic::Ordering::SeqCst);

    let screenshots = uns_e2e::target_dir().join("screenshots");
    let args = ["--url", &format!("http://{http}/"), "--order", "wo-dead-1"];
    let seen = run_console_script(
        &python,
        "console_browser_dead_letters.py",
        &args,
        &screenshots,
        || uns.log_tail(),
    )
    .await?;
    assert_eq!(seen["row"][1], "wo-dead-1", "{seen}");
    assert_eq!(seen["row"][2], "1", "one attempt: {seen}");
    assert!(
        seen["row"][4].as_str().is_some_and(|e| e.contains("503")),
        "the ERP's refusal: {seen}"
    );
    assert!(
        seen["answer"]
            .as_str()
            .is_some_and(|a| a.ends_with(": queued again")),
        "{seen}"
    );
    eventually("the replayed confirmation at the ERP", DEADLINE, || async {
        (erp.accepted().get(&key) == Some(&1)).then_some(())
    })
    .await?;
    stop.cancel();
    uns.terminate()?;
    Ok(())
}

/// Cancels every other planned, released or running order on `id`'s line (`uns wo hold` and
/// `uns wo cancel`)
/// until the workorders service of `uns` runs `id` (the demo runs one order per line in turn).
async fn cancel_others_until_running(uns: &UnsProcess, id: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use uns_model::payload::{WorkOrder, WorkOrderStatus};

    let url = format!("http://{}", uns.addrs.http);
    eventually(
        &format!("{id} running"),
        Duration::from_secs(60),
        || async {
            let (status, body) = http_get(uns.addrs.http, "/api/v1/work-orders").await.ok()?;
            let orders: Vec<WorkOrder> =
                (status == 200).then(|| serde_json::from_str(&body).ok())??;
            let ours = orders.iter().find(|o| o.id.as_str() == id)?;
            if ours.status == WorkOrderStatus::Running {
                return Some(());
            }
            for other in orders.iter().filter(|o| {
                o.id.as_str() != id
                    && o.hierarchy_scope == ours.hierarchy_scope
                    && matches!(
                        o.status,
                        WorkOrderStatus::Planned
                            | WorkOrderStatus::Released
                            | WorkOrderStatus::Running
                    )
            }) {
                // A running order is held first (the lifecycle cancels no running order).
                let verbs: &[&str] = if other.status == WorkOrderStatus::Running {
                    &["hold", "cancel"]
                } else {
                    &["cancel"]
                };
                for verb in verbs {
                    tokio::process::Command::new(uns_e2e::uns_binary().ok()?)
                        .args(["wo", verb, other.id.as_str(), "--url", &url])
                        .output()
                        .await
                        .ok()?;
                }
            }
            None
        },
    )
    .await
    .with_context(|| uns.log_tail())
}

/// `uns up --demo` computes OEE for the demo's line 1 from the simulated plant: the line's open
/// hour on `_oee/current/hour` decodes as the typed `OeeResult`, its factors lie in 0..=1 (or are
/// null with a reason when the hour so far has no planned busy time), A × E × Q = OEE, and the
/// good parts it adds between two documents of the same hour are exactly what the line's
/// counting cell (`labeler`) added to its `_count/good` total over the same event time.
#[tokio::test(flavor = "multi_thread")]
async fn demo_line_oee_matches_the_counting_cell() -> anyhow::Result<()> {
    use uns_model::payload::{CountDoc, OeeResult};
    use uns_model::topic::{CountKind, OeePeriodKind};

    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let line: uns_model::topic::Location = "acme/berlin/packaging/line-1".parse()?;
    let cell: uns_model::topic::Location = "acme/berlin/packaging/line-1/labeler".parse()?;
    let oee_topic = UnsTopic::located(line, Class::OeeCurrent(OeePeriodKind::Hour)).to_string();
    let good_topic = UnsTopic::located(cell, Class::Count(CountKind::Good)).to_string();
    let mut subscriber = Subscriber::connect(uns.mqtt(), &[&oee_topic, &good_topic]).await?;

    // (timestamp_ms, total) of every labeler good sample, and the line's hour documents.
    let mut samples: Vec<(i64, f64)> = Vec::new();
    let mut first: Option<OeeResult> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let (earlier, later) = loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some((topic, payload, _))) =
            tokio::time::timeout(remaining, subscriber.messages.recv()).await
        else {
            anyhow::bail!(
                "no two line-1 OEE hour documents with more good parts within 90 s\n{}",
                uns.log_tail()
            );
        };
        if topic == good_topic {
            let doc = decode::<CountDoc>(&payload)?;
            samples.push((doc.timestamp_ms, doc.total.qty));
            continue;
        }
        let result = decode::<OeeResult>(&payload)?;
        let same_hour = first
            .as_ref()
            .is_some_and(|earlier| earlier.period.id == result.period.id);
        let more = first
            .as_ref()
            .is_some_and(|earlier| result.counts.good.qty > earlier.counts.good.qty);
        if same_hour && more {
            break (first.take().expect("set"), result);
        }
        if !same_hour {
            // A first document, or the hour changed: start again from this one.
            first = Some(result);
        }
    };
    // Every sample up to the later document's end has arrived once one newer than it has.
    let end = later.end.unix_ms();
    while samples.last().is_none_or(|(at, _)| *at < end) {
        let (topic, payload, _) = tokio::time::timeout(DEADLINE, subscriber.messages.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscriber disconnected"))?;
        if topic == good_topic {
            let doc = decode::<CountDoc>(&payload)?;
            samples.push((doc.timestamp_ms, doc.total.qty));
        }
    }
    // The engine counts samples with a timestamp before the document's end. A sample stamped just
    // before that end may still have been on its way (sim → broker → bridge → broker → oee) when
    // the document was computed; it then lands in the next document. So the totals at an end are
    // the newest sample before it, or the one before that.
    samples.sort_by_key(|(ts, _)| *ts);
    let totals_before = |at: i64| -> Vec<f64> {
        let before: Vec<f64> = samples
            .iter()
            .filter(|(ts, _)| *ts < at)
            .map(|(_, total)| *total)
            .collect();
        before.iter().rev().take(2).copied().collect()
    };
    let added = later.counts.good.qty - earlier.counts.good.qty;
    let (from, to) = (totals_before(earlier.end.unix_ms()), totals_before(end));
    anyhow::ensure!(
        !from.is_empty(),
        "no labeler sample before {earlier:?}: {samples:?}"
    );
    assert!(
        from.iter()
            .any(|from| to.iter().any(|to| to - from == added)),
        "OEE added {added} good parts; the labeler's totals before the two ends were {from:?} and \
         {to:?} ({samples:?})\n{earlier:?}\n{later:?}"
    );

    for result in [&earlier, &later] {
        assert!(!result.is_final, "an open period: {result:?}");
        assert_eq!(result.calendar.as_deref(), Some("demo@Europe/Berlin"));
        let factors = [
            ("availability", result.availability),
            ("performance", result.performance),
            ("quality", result.quality),
        ];
        for (name, value) in factors {
            match value {
                Some(value) => {
                    assert!((0.0..=1.0).contains(&value), "{name} = {value}: {result:?}");
                }
                None => assert!(
                    result.times.pbt_ms == 0 && result.null_reasons.contains_key(name),
                    "{name} null though the hour has planned busy time: {result:?}"
                ),
            }
        }
        if let (Some(a), Some(e), Some(q), Some(oee)) = (
            result.availability,
            result.performance,
            result.quality,
            result.oee,
        ) {
            assert!(
                (a * e * q - oee).abs() < 1e-9,
                "A × E × Q ≠ OEE: {result:?}"
            );
        }
        let t = &result.times;
        assert_eq!(t.pbt_ms, t.pot_ms - t.pdt_ms, "{result:?}");
        assert!(
            t.apt_ms + t.asut_ms + t.adet_ms + t.adot_ms <= t.pbt_ms,
            "{result:?}"
        );
    }
    Ok(())
}

/// Genealogy in `uns up --demo`: a production order naming the demo's raw lots as components
/// runs on the simulated line; each confirmation's `transform` reaches the genealogy service, so
/// a backward trace of the order's output lot over HTTP has those raw lots as inputs, and the
/// EPCIS export of that lot validates against GS1's EPCIS 2.0 JSON Schema.
#[tokio::test(flavor = "multi_thread")]
async fn a_demo_work_orders_output_lot_traces_back_to_its_raw_lots() -> anyhow::Result<()> {
    use anyhow::Context as _;

    const EPCIS_SCHEMA: &str =
        include_str!("../../crates/uns-genealogy/tests/vendor/gs1-epcis/EPCIS-JSON-Schema.json");
    let dir = tempfile::tempdir()?;
    let uns = UnsProcess::start("up", dir.path(), &["--demo"]).await?;
    let (_erp, stop) = run_order_consuming_demo_lots(&uns, "po-gen", "PO GEN").await?;

    let http = uns.addrs.http;
    let trace = eventually(
        "po-gen-out traced back to both raw lots",
        Duration::from_secs(90),
        || async {
            let (status, body) = http_get(http, "/api/v1/trace/po-gen-out?direction=backward")
                .await
                .ok()?;
            if status != 200 {
                return None;
            }
            let trace: serde_json::Value = serde_json::from_str(&body).ok()?;
            let lots: Vec<String> = trace["lots"]
                .as_array()?
                .iter()
                .filter_map(|lot| lot["lot_id"].as_str().map(str::to_owned))
                .collect();
            (lots.iter().any(|l| l == "pet-2026-001") && lots.iter().any(|l| l == "cap-2026-001"))
                .then_some(trace)
        },
    )
    .await
    .with_context(|| uns.log_tail())?;
    let lots: Vec<&str> = trace["lots"]
        .as_array()
        .context("lots")?
        .iter()
        .filter_map(|lot| lot["lot_id"].as_str())
        .collect();
    assert_eq!(lots[0], "po-gen-out", "{trace:#}");
    assert!(
        !lots.contains(&"juice-2026-001"),
        "a lot the order did not consume: {trace:#}"
    );
    assert!(
        !trace["transforms"]
            .as_array()
            .context("transforms")?
            .is_empty()
    );

    let (status, body) = http_get(http, "/api/v1/epcis/events?lot=po-gen-out").await?;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body)?;
    let schema: serde_json::Value = serde_json::from_str(EPCIS_SCHEMA)?;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)?;
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    let events = doc["epcisBody"]["eventList"].as_array().context("events")?;
    assert!(
        events.iter().any(|e| e["type"] == "TransformationEvent"),
        "{doc:#}"
    );
    stop.cancel();
    uns.terminate()?;
    Ok(())
}

/// Waits until the ERP bridge's demo orders (three, posted once the plant model is there) are
/// work orders, so a test that makes room for its own order on a demo line cancels all of them.
async fn demo_orders_arrived(uns: &UnsProcess) -> anyhow::Result<()> {
    eventually(
        "the demo's three orders",
        Duration::from_secs(30),
        || async {
            let (status, body) = http_get(uns.addrs.http, "/api/v1/work-orders").await.ok()?;
            let orders: Vec<serde_json::Value> =
                (status == 200).then(|| serde_json::from_str(&body).ok())??;
            (orders.len() >= 3).then_some(())
        },
    )
    .await
}

/// `uns topic parse --json` answers in JSON when the topic is bad too (issue 10 item 9): the
/// refusal on stdout parses as JSON naming the topic and the cause, and the exit status says
/// it failed; without `--json` stdout stays empty and the reason goes to stderr.
#[test]
fn topic_parse_json_reports_a_bad_topic_as_json() -> anyhow::Result<()> {
    for (topic, error) in [
        ("uns/v1/ACME/berlin", "not a valid UNS topic"),
        ("spBv1.0/acme/NDATA", "not a valid Sparkplug B topic"),
    ] {
        let output = std::process::Command::new(uns_e2e::uns_binary()?)
            .args(["topic", "parse", "--json", topic])
            .output()?;
        assert!(!output.status.success(), "{topic} was accepted");
        let refusal: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(refusal["topic"], topic);
        assert_eq!(refusal["error"], error);
        assert!(
            refusal["cause"]
                .as_str()
                .is_some_and(|cause| !cause.is_empty())
        );
        let output = std::process::Command::new(uns_e2e::uns_binary()?)
            .args(["topic", "parse", topic])
            .output()?;
        assert!(!output.status.success() && output.stdout.is_empty());
        assert!(String::from_utf8_lossy(&output.stderr).contains(error));
    }
    Ok(())
}

/// A production order for line 1 (work centre WC-4711) as the ERP bridge publishes it.
fn line_1_order(
    id: &str,
    erp_ref: &str,
    material: &str,
    qty: f64,
) -> anyhow::Result<uns_model::payload::ProductionOrder> {
    use uns_model::payload::{ProductionOrder, Quantity, SchemaTag, Timestamp, Uom};
    Ok(ProductionOrder {
        schema: SchemaTag::default(),
        id: uns_model::topic::Id::new(id)?,
        erp_ref: erp_ref.to_owned(),
        revision: 1,
        material: material.to_owned(),
        description: None,
        quantity: Quantity::new(qty, Uom::EA),
        earliest_start_time: None,
        latest_end_time: None,
        hierarchy_scope: "acme/berlin/packaging/line-1".parse()?,
        equipment: Some("WC-4711".to_owned()),
        priority: None,
        parameters: Vec::new(),
        operations: Vec::new(),
        components: Vec::new(),
        received_at: Timestamp::from(chrono::Utc::now()),
    })
}

/// A 12-bottle FG-WATER-05 order `id` on line 1 that consumes the demo's raw lots pet-2026-001 and
/// cap-2026-001 (12 EA each), published as the ERP bridge once the demo's own orders arrived, and
/// running (the demo's orders on line 1 cancelled to make room). Returns the ERP client and the
/// token that stops it.
async fn run_order_consuming_demo_lots(
    uns: &UnsProcess,
    id: &str,
    erp_ref: &str,
) -> anyhow::Result<(UnsClient, tokio_util::sync::CancellationToken)> {
    let mut order = line_1_order(id, erp_ref, "FG-WATER-05", 12.0)?;
    order.components = serde_json::from_value(serde_json::json!([
        {"material": "RM-PREFORM", "quantity": {"qty": 12, "uom": "EA"},
         "material_use": "consumed", "material_lot_id": "pet-2026-001"},
        {"material": "RM-CAP", "quantity": {"qty": 12, "uom": "EA"},
         "material_use": "consumed", "material_lot_id": "cap-2026-001"}
    ]))?;
    demo_orders_arrived(uns).await?;
    let erp = publish_as_erp_bridge(uns, &order).await?;
    cancel_others_until_running(uns, id).await?;
    Ok(erp)
}

/// Publishes `order` retained on its site's `_erp/production-orders/{id}`, as the ERP bridge
/// does, from a client of its own; keep the client until the test ends, cancel the token then.
async fn publish_as_erp_bridge(
    uns: &UnsProcess,
    order: &uns_model::payload::ProductionOrder,
) -> anyhow::Result<(UnsClient, tokio_util::sync::CancellationToken)> {
    let stop = tokio_util::sync::CancellationToken::new();
    let (client, _inbox, _) = UnsClient::start(
        ClientOptions::new(
            BrokerUrl::new("127.0.0.1", uns.mqtt().port()),
            "erp-stand-in",
        )?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    client.wait_connected(Duration::from_secs(10)).await?;
    let site: uns_model::topic::Location = "acme/berlin".parse()?;
    let topic = UnsTopic::located(site, Class::ErpProductionOrder(order.id.clone()));
    client.publish(&topic, order).await?;
    Ok((client, stop))
}

/// A stand-in ERP for the outbox test: answers 503 until told to accept, then 201, and counts
/// the accepted postings per `Idempotency-Key`.
#[derive(Clone, Default)]
struct StandInErp {
    accepting: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    accepted: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>,
}

impl StandInErp {
    async fn start(self) -> anyhow::Result<(Self, std::net::SocketAddr)> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let erp = self.clone();
        let app = axum::Router::new().route(
            "/confirmations",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let erp = erp.clone();
                async move {
                    if !erp.accepting.load(Ordering::SeqCst) {
                        erp.refused.fetch_add(1, Ordering::SeqCst);
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "ERP down".to_owned(),
                        );
                    }
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    *erp.accepted
                        .lock()
                        .expect("lock")
                        .entry(key.clone())
                        .or_default() += 1;
                    (
                        axum::http::StatusCode::CREATED,
                        serde_json::json!({ "document": format!("CONF-{key}") }).to_string(),
                    )
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((self, addr))
    }

    fn accepted(&self) -> std::collections::BTreeMap<String, u32> {
        self.accepted.lock().expect("lock").clone()
    }
}

/// A gauge or counter of a Prometheus text exposition, by its exact name (no labels).
fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Issue 11: `kill -9` of the ERP bridge while its outbox is full (the ERP refusing every
/// posting): after the restart every confirmation reaches the ERP, none twice (the stand-in
/// counts idempotency keys), and the outbox drains to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_erp_bridge_posts_its_whole_outbox_once_after_the_restart() -> anyhow::Result<()> {
    use uns_model::payload::{
        ActivityTimes, EventHeader, Quantity, SchemaTag, Timestamp, Uom, WorkOrderEvent,
        WorkOrderEventKind,
    };
    use uns_model::topic::Id;
    const N: usize = 40;
    let dir = tempfile::tempdir()?;
    let broker = UnsProcess::start("broker", &dir.path().join("broker"), &[]).await?;
    let (erp, erp_addr) = StandInErp::default().start().await?;
    let config = dir.path().join("erp-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[erp_bridge]\nerp_url = \"http://{erp_addr}/confirmations\"\ntimeout_ms = 500\n\
             retry_initial_ms = 50\nretry_max_ms = 200\nmax_attempts = 100000\n"
        ),
    )?;
    let broker_url = format!("mqtt://{}", broker.mqtt());
    let config_arg = config.to_string_lossy().into_owned();
    let args = ["--broker", &broker_url, "--config", &config_arg];
    let bridge_dir = dir.path().join("erp-bridge");
    let mut bridge = UnsProcess::start_service("erp-bridge", &bridge_dir, &args).await?;

    // The confirmations, published as the work-order service publishes them.
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let (client, _inbox, _) = UnsClient::start(
        ClientOptions::new(
            BrokerUrl::new("127.0.0.1", broker.mqtt().port()),
            "workorders-stand-in",
        )?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    client.wait_connected(Duration::from_secs(10)).await?;
    let line: uns_model::topic::Location = "acme/berlin/packaging/line-1".parse()?;
    let mut events = Vec::new();
    for n in 0..N {
        let now = Timestamp::from(chrono::Utc::now());
        let wo_id = Id::new(&format!("wo-kill-{n}"))?;
        let event = WorkOrderEvent {
            schema: SchemaTag::default(),
            header: EventHeader::new(uuid::Uuid::now_v7(), now, now),
            wo_id: wo_id.clone(),
            kind: WorkOrderEventKind::ConfirmationRequested {
                is_final: true,
                sequence: 1,
                erp_ref: Some(format!("PO-{n}")),
                production_order: None,
                good: Quantity::new(100.0 + n as f64, Uom::EA),
                scrap: Quantity::new(1.0, Uom::EA),
                rework: Quantity::new(0.0, Uom::EA),
                operation_id: None,
                activity: ActivityTimes::default(),
                goods_movements: Vec::new(),
            },
        };
        let topic = UnsTopic::located(line.clone(), Class::WorkOrderEvents(wo_id));
        events.push((topic, event));
    }
    let keys: Vec<String> = events
        .iter()
        .map(|(_, event)| event.header.event_id.to_string())
        .collect();
    // The bridge's persistent session exists from its first subscription on, which comes a
    // moment after it reports ready: the first request is repeated until the ERP sees it (the
    // repeats carry the same event id, so they must be posted once), then the rest follow.
    eventually("the bridge to take confirmation requests", DEADLINE, || {
        let (client, erp, (topic, event)) = (client.clone(), erp.clone(), events[0].clone());
        async move {
            client.publish(&topic, &event).await.ok()?;
            (erp.refused.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
        }
    })
    .await?;
    for (topic, event) in &events[1..] {
        client.publish(topic, event).await?;
    }

    // Every confirmation in the outbox and the ERP refusing them: then the hard kill.
    let http = bridge.addrs.http;
    let full = eventually("a full outbox, the ERP refusing", DEADLINE, || {
        let erp = erp.clone();
        async move {
            let (_, metrics) = http_get(http, "/metrics").await.ok()?;
            let depth = metric_value(&metrics, "uns_erp_outbox_depth")?;
            let refused = erp.refused.load(std::sync::atomic::Ordering::SeqCst);
            (depth == N as f64 && refused > 0).then_some(())
        }
    })
    .await;
    if let Err(err) = full {
        let (_, metrics) = http_get(http, "/metrics").await?;
        anyhow::bail!(
            "{err}; ERP refused {}; metrics:\n{metrics}\nlog:\n{}",
            erp.refused.load(std::sync::atomic::Ordering::SeqCst),
            bridge.log_tail()
        );
    }
    bridge.kill()?;
    bridge.wait_exit(DEADLINE).await?;
    assert!(
        erp.accepted().is_empty(),
        "the ERP refused everything: {:?}",
        erp.accepted()
    );

    erp.accepting
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let bridge = UnsProcess::start_service("erp-bridge", &bridge_dir, &args).await?;
    let http = bridge.addrs.http;
    eventually(
        "every confirmation accepted and the outbox empty",
        DEADLINE,
        || {
            let erp = erp.clone();
            async move {
                let (_, metrics) = http_get(http, "/metrics").await.ok()?;
                let depth = metric_value(&metrics, "uns_erp_outbox_depth")?;
                (erp.accepted().len() == N && depth == 0.0).then_some(())
            }
        },
    )
    .await?;
    let accepted = erp.accepted();
    for key in &keys {
        assert_eq!(accepted.get(key), Some(&1), "{key}: {accepted:?}");
    }
    Ok(())
}

/// `METHOD http://{addr}{path}` with `Authorization: Basic` of `account` (`user:password`) when
/// given: status and body.
async fn http_as(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: &str,
    account: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use base64::Engine as _;
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(account) = account {
        let encoded = base64::engine::general_purpose::STANDARD.encode(account);
        request = request.header("authorization", format!("Basic {encoded}"));
    }
    let request = request.body(Vec::<u8>::new())?;
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent.run(request)?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}

/// Issue 14, HTTP: `uns up` refuses a non-loopback HTTP address without an account that may
/// use HTTP (exit 2, before listening); with accounts from `--user NAME:PW:ROLE` and
/// `[http] require_auth = "always"` (what a non-loopback bind implies) every endpoint but
/// `/healthz` needs one, a viewer reads, only an operator gets a work-order action through to
/// the service, and a service account has no HTTP access.
#[tokio::test(flavor = "multi_thread")]
async fn http_needs_an_account_off_loopback_and_the_role_decides() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = std::process::Command::new(uns_e2e::uns_binary()?)
        .args(["up", "--listen", "127.0.0.1:0", "--ws-listen", "none"])
        .args(["--http-listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("refused"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[http] listen 0.0.0.0:0 is not a loopback address"),
        "{stderr}"
    );

    let config = dir.path().join("uns.toml");
    std::fs::write(&config, "[http]\nrequire_auth = \"always\"\n")?;
    let config = config.display().to_string();
    let uns = UnsProcess::start(
        "up",
        &dir.path().join("data"),
        &[
            "--config",
            &config,
            "--user",
            "vera:vera-pw:viewer,otto:otto-pw:operator,oee:oee-pw",
        ],
    )
    .await?;
    let http = uns.addrs.http;
    let (status, body) = http_as(http, "GET", "/healthz", None).await?;
    assert!(status == 200 || status == 503, "{status} {body}");
    assert_eq!(http_as(http, "GET", "/metrics", None).await?.0, 401);
    let (status, body) = http_as(http, "GET", "/metrics", Some("vera:wrong")).await?;
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_as(http, "GET", "/metrics", Some("vera:vera-pw")).await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("uns_http_auth_refused_total"), "{body}");
    let (status, body) = http_as(http, "GET", "/metrics", Some("oee:oee-pw")).await?;
    assert_eq!(status, 403, "a service account: {body}");
    let action = "/api/v1/work-orders/no-such-order/start";
    let (status, body) = http_as(http, "POST", action, Some("vera:vera-pw")).await?;
    assert_eq!(status, 403, "{body}");
    // The operator passes the HTTP layer; the work-order service answers for itself.
    let (status, body) = http_as(http, "POST", action, Some("otto:otto-pw")).await?;
    assert!(status != 401 && status != 403, "{status} {body}");
    assert!(body.contains("no-such-order"), "{status} {body}");
    Ok(())
}

/// Debian's Chromium and its chromedriver (`apt-get install chromium chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `(lot id, depth)` of every lot of a trace answer (`GET /api/v1/trace/…`), sorted.
fn api_lot_depths(trace: &serde_json::Value) -> anyhow::Result<Vec<(String, u64)>> {
    use anyhow::Context as _;
    let lots = trace["lots"].as_array().context("a trace has lots")?;
    let mut depths: Vec<(String, u64)> = lots
        .iter()
        .filter_map(|l| Some((l["lot_id"].as_str()?.to_owned(), l["depth"].as_u64()?)))
        .collect();
    depths.sort();
    Ok(depths)
}

/// `(lot id, depth)` of every lot the console's trace view drew (`[[id, depth], …]` under
/// `lots` of what the browser script saw), sorted.
fn page_lot_depths(seen: &serde_json::Value) -> anyhow::Result<Vec<(String, u64)>> {
    use anyhow::Context as _;
    let lots = seen["lots"].as_array().context("the page drew lots")?;
    let mut depths: Vec<(String, u64)> = lots
        .iter()
        .filter_map(|l| Some((l[0].as_str()?.to_owned(), l[1].as_u64()?)))
        .collect();
    depths.sort();
    Ok(depths)
}
/// The selenium venv, once Chromium and chromedriver are known to be installed.
fn browser_peer() -> anyhow::Result<std::path::PathBuf> {
    for program in [CHROMIUM, CHROMEDRIVER] {
        anyhow::ensure!(
            Path::new(program).is_file(),
            "{program} is missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
    }
    python_peer("browser", "requirements-browser.txt")
}

/// Runs a console browser script (tests/peers/console_*.py) with `args` plus `--screenshots`,
/// Debian's Chromium and chromedriver, asserts that it passed (its output, the screenshot folder
/// and the end of the `uns up` log otherwise), and returns the JSON object it printed.
async fn run_console_script(
    python: &Path,
    script: &str,
    args: &[&str],
    screenshots: &Path,
    log_tail: impl Fn() -> String,
) -> anyhow::Result<serde_json::Value> {
    let screenshots_arg = screenshots.display().to_string();
    let args: Vec<String> = args
        .iter()
        .copied()
        .chain([
            "--screenshots",
            &screenshots_arg,
            "--chromium",
            CHROMIUM,
            "--chromedriver",
            CHROMEDRIVER,
        ])
        .map(str::to_owned)
        .collect();
    let (ok, stdout, stderr) = run_peer(python, script, &args).await?;
    assert!(
        ok,
        "{script} failed (screenshots in {}): {stdout}\n{stderr}\n{}",
        screenshots.display(),
        log_tail()
    );
    Ok(serde_json::from_str(stdout.trim())?)
}
