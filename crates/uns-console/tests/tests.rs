//! The console against the real embedded broker, over real sockets and real HTTP: the tree's
//! counts and lazy children, Sparkplug DATA shown with the names its birth declared, MQTT 5 user
//! properties, a bounded history, live updates over server-sent events, and the tree's first level
//! at 50 000 retained topics (timed and printed, not asserted).
#![allow(clippy::print_stderr, reason = "the load test prints its figure")]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, Metrics};
use uns_console::Console;
use uns_console::tree::HistoryLimits;
use uns_model::payload::{
    CountDoc, Loss, MachineState, MinorStopPolicy, Mode, NodeMeta, OeeCounts, OeePeriod, OeeResult,
    Quantity, SchemaTag, SixBigLosses, StateCategory, StateDoc, TimeBuckets, Timestamp, Uom,
};
use uns_model::topic::{Class, CountKind, Id, Isa95Level, Location, OeePeriodKind, UnsTopic};
use uns_service::{
    BrokerEndpoint, Configured, Health, HttpServer, RestartPolicy, Routes, Runtime, RuntimeOptions,
};
use uns_sparkplug::{DeviceMessageKind, Metric, NodeMessageKind, Payload, SparkplugTopic, Value};

const DEADLINE: Duration = Duration::from_secs(20);

/// A broker, the console running on it, its HTTP endpoint, and a plain MQTT 5 publisher.
struct Harness {
    _dir: tempfile::TempDir,
    _broker: uns_broker::BrokerHandle,
    http: SocketAddr,
    publisher: rumqttc::v5::AsyncClient,
    driver: tokio::task::JoinHandle<()>,
    runtime: Option<Runtime>,
    stop: CancellationToken,
}

impl Harness {
    async fn start(limits: HistoryLimits) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let broker = uns_broker::start(uns_broker::BrokerConfig {
            listen: "127.0.0.1:0".parse()?,
            ws_listen: None,
            data_dir: dir.path().join("broker"),
            ..Default::default()
        })
        .await?;
        let port = broker.mqtt_addr().port();
        let stop = CancellationToken::new();
        let health = Health::default();
        let metrics = Metrics::new();
        let routes = Routes::default();
        let http = HttpServer::start(
            "127.0.0.1:0".parse()?,
            health.clone(),
            metrics.clone(),
            routes.clone(),
            stop.clone(),
        )
        .await?;
        let runtime = Runtime::start(
            RuntimeOptions {
                broker: BrokerEndpoint {
                    url: BrokerUrl::new("127.0.0.1", port),
                    credentials: None,
                },
                data_dir: dir.path().join("data"),
                restart: RestartPolicy::Exit,
                stop_grace: Duration::from_secs(2),
                health,
                metrics,
                routes,
            },
            vec![Configured::new(Console::new(limits))],
        )
        .await?;
        let mut options = rumqttc::v5::MqttOptions::new("test-publisher", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (publisher, mut event_loop) = rumqttc::v5::AsyncClient::new(options, 1000);
        let driver = tokio::spawn(async move { while event_loop.poll().await.is_ok() {} });
        let harness = Self {
            _dir: dir,
            _broker: broker,
            http: http.local_addr(),
            publisher,
            driver,
            runtime: Some(runtime),
            stop,
        };
        // The console subscribed once its own retained health came back through `#`.
        let health_topic = UnsTopic::service("console")?.to_string();
        harness.topic_eventually(&health_topic, |_| true).await?;
        Ok(harness)
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Json)> {
        let (status, body) = http_get(self.http, path).await?;
        let json = serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))?;
        Ok((status, json))
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        self.publisher
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
            .await?;
        Ok(())
    }

    /// The console's view of `topic` once `accept` likes it, within [`DEADLINE`].
    async fn topic_eventually(
        &self,
        topic: &str,
        accept: impl Fn(&Json) -> bool,
    ) -> anyhow::Result<Json> {
        let path = format!("/api/v1/console/topic?name={}", encode(topic));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, json) = self.get(&path).await?;
            if status == 200 && accept(&json) {
                return Ok(json);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{topic} not as expected within {DEADLINE:?}; last: {status} {json}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn n_topics_eventually(&self, wanted: u64) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (_, stats) = self.get("/api/v1/console/stats").await?;
            if stats["n_topics"].as_u64() >= Some(wanted) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the console has {} topics, not {wanted}", stats["n_topics"]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        self.driver.abort();
        if let Some(runtime) = self.runtime.take() {
            runtime.stop().await;
        }
        self.stop.cancel();
    }
}

fn limits(max_values: usize) -> HistoryLimits {
    HistoryLimits {
        max_values,
        window_ms: 3_600_000,
        max_bytes: usize::MAX,
    }
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut response = agent.get(&url).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}

fn children(listing: &Json) -> Vec<(String, u64, bool)> {
    listing["children"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        c["n_topics"].as_u64().unwrap_or_default(),
                        c["has_children"].as_bool().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tree_counts_topics_per_branch_and_lists_one_level_at_a_time() -> anyhow::Result<()> {
    let harness = Harness::start(limits(10)).await?;
    for topic in [
        "plant/berlin/line-1/temp",
        "plant/berlin/line-1/speed",
        "plant/berlin/line-2/temp",
        "plant/hamburg/line-1/temp",
        "other",
    ] {
        harness.publish(topic, "1").await?;
    }
    // One connection delivers in order: the last one there means all are (a topic count would
    // not do, the broker's `$SYS` topics and the console's health count too).
    harness.topic_eventually("other", |_| true).await?;

    let (status, root) = harness.get("/api/v1/console/tree").await?;
    assert_eq!(status, 200, "{root}");
    let root_children = children(&root);
    assert!(
        root_children.contains(&("plant".to_owned(), 4, true)),
        "{root}"
    );
    assert!(
        root_children.contains(&("other".to_owned(), 1, false)),
        "{root}"
    );
    assert!(
        root_children.iter().any(|(name, _, _)| name == "uns"),
        "the console's own health is in the tree too: {root}"
    );
    assert!(
        !root.to_string().contains("line-1"),
        "the first level does not carry the levels below it"
    );

    let (_, berlin) = harness
        .get("/api/v1/console/tree?path=plant/berlin")
        .await?;
    assert_eq!(
        children(&berlin),
        vec![
            ("line-1".to_owned(), 2, true),
            ("line-2".to_owned(), 1, true)
        ]
    );
    let (_, line) = harness
        .get("/api/v1/console/tree?path=plant/berlin/line-1")
        .await?;
    assert_eq!(line["children"][1]["path"], "plant/berlin/line-1/temp");
    assert_eq!(line["children"][1]["is_topic"], true);
    assert_eq!(line["children"][1]["preview"], "1");

    let (_, wildcard) = harness
        .get(&format!(
            "/api/v1/console/tree?match={}",
            encode("plant/+/+/temp")
        ))
        .await?;
    assert_eq!(children(&wildcard), vec![("plant".to_owned(), 3, true)]);
    let (_, text) = harness.get("/api/v1/console/search?q=HAMBURG").await?;
    assert_eq!(
        text["topics"],
        serde_json::json!(["plant/hamburg/line-1/temp"])
    );
    let (status, bad) = harness.get("/api/v1/console/tree?match=a/%23/b").await?;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = harness.get("/api/v1/console/tree?path=nowhere").await?;
    assert_eq!(status, 404);
    harness.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sparkplug_data_shows_the_metric_names_of_its_birth() -> anyhow::Result<()> {
    let harness = Harness::start(limits(10)).await?;
    let nbirth_topic = SparkplugTopic::Node {
        group: "plant".to_owned(),
        kind: NodeMessageKind::NBirth,
        edge: "edge-1".to_owned(),
    }
    .to_string();
    let ddata_topic = SparkplugTopic::Device {
        group: "plant".to_owned(),
        kind: DeviceMessageKind::DData,
        edge: "edge-1".to_owned(),
        device: "filler".to_owned(),
    }
    .to_string();
    let nbirth = uns_sparkplug::encode(&Payload {
        timestamp: Some(1),
        seq: Some(0),
        metrics: vec![
            Metric {
                alias: Some(1),
                ..Metric::new("bdSeq", Value::Int64(0))
            },
            Metric {
                alias: Some(17),
                ..Metric::new("Filler/Temperature", Value::Float(20.5))
            },
        ],
        ..Payload::default()
    })?;
    let ddata = uns_sparkplug::encode(&Payload {
        timestamp: Some(2),
        seq: Some(1),
        metrics: vec![Metric {
            alias: Some(17),
            is_historical: true,
            value: Some(Value::Float(71.25)),
            datatype: None,
            ..Metric::default()
        }],
        ..Payload::default()
    })?;
    // Sparkplug births and data are not retained; QoS 0 as the spec says.
    harness
        .publisher
        .publish(nbirth_topic.as_str(), QoS::AtMostOnce, false, nbirth)
        .await?;
    harness.topic_eventually(&nbirth_topic, |_| true).await?;
    harness
        .publisher
        .publish(ddata_topic.as_str(), QoS::AtMostOnce, false, ddata)
        .await?;
    let shown = harness.topic_eventually(&ddata_topic, |_| true).await?;
    let metric = &shown["latest"]["sparkplug"]["metrics"][0];
    assert_eq!(metric["name"], "Filler/Temperature", "{shown}");
    assert_eq!(metric["name_from"], "birth");
    assert_eq!(metric["alias"], 17);
    assert_eq!(metric["datatype"], "Float");
    assert_eq!(metric["value"], 71.25);
    assert_eq!(metric["historical"], true);
    assert_eq!(shown["latest"]["sparkplug"]["device"], "filler");
    assert_eq!(shown["latest"]["retain"], false);
    harness.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt5_properties_schema_checks_and_live_events_show() -> anyhow::Result<()> {
    let harness = Harness::start(limits(10)).await?;
    // Watch the topic over SSE before anything is published on it.
    let topic = UnsTopic::located(
        "acme/berlin".parse()?,
        uns_model::topic::Class::Tag(
            uns_model::topic::TagPath::new(vec![uns_model::topic::Id::new("temp")?])
                .context("a tag path")?,
        ),
    )
    .to_string();
    let mut events = Sse::open(harness.http, &topic).await?;
    events.next_event("tree").await?;

    let properties = PublishProperties {
        user_properties: vec![("operator".to_owned(), "anna".to_owned())],
        content_type: Some("application/json".to_owned()),
        response_topic: Some("replies/here".to_owned()),
        correlation_data: Some(bytes::Bytes::from_static(&[0xab, 0x01])),
        ..PublishProperties::default()
    };
    let tag = uns_model::payload::TagValue {
        schema: uns_model::payload::SchemaTag::default(),
        value: serde_json::json!(71.5),
        timestamp_ms: 1,
        quality: uns_model::payload::Quality::Good,
        unit: None,
        context: None,
        src: None,
        historical: false,
    };
    harness
        .publisher
        .publish_with_properties(
            topic.as_str(),
            QoS::ExactlyOnce,
            true,
            serde_json::to_vec(&tag)?,
            properties,
        )
        .await?;
    let live = events.next_event("topic").await?;
    assert_eq!(live["name"], topic.as_str(), "{live}");
    assert_eq!(live["point"]["value"], 71.5);

    let shown = harness.topic_eventually(&topic, |_| true).await?;
    let latest = &shown["latest"];
    assert_eq!(
        latest["properties"]["user_properties"],
        serde_json::json!([["operator", "anna"]]),
        "{shown}"
    );
    assert_eq!(latest["properties"]["content_type"], "application/json");
    assert_eq!(latest["properties"]["response_topic"], "replies/here");
    assert_eq!(latest["properties"]["correlation_data"], "ab01");
    assert_eq!(latest["retain"], true);
    assert_eq!(latest["qos"], 2);
    assert_eq!(latest["schema_check"]["valid"], true, "{shown}");
    assert_eq!(latest["json"]["value"], 71.5);

    // A payload that breaks its schema says why.
    harness
        .publish(
            &topic,
            r#"{"schema":"uns/tag/v1","value":1,"quality":"fine"}"#,
        )
        .await?;
    let broken = harness
        .topic_eventually(&topic, |json| {
            json["latest"]["schema_check"]["valid"] == false
        })
        .await?;
    assert!(
        broken["latest"]["schema_check"]["errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty()),
        "{broken}"
    );
    harness.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_stays_bounded() -> anyhow::Result<()> {
    let harness = Harness::start(limits(5)).await?;
    for value in 0..20 {
        harness.publish("machine/speed", value.to_string()).await?;
    }
    let shown = harness
        .topic_eventually("machine/speed", |json| json["n_messages"] == 20)
        .await?;
    let values: Vec<f64> = shown["history"]
        .as_array()
        .context("history")?
        .iter()
        .filter_map(|point| point["value"].as_f64())
        .collect();
    assert_eq!(values, vec![15.0, 16.0, 17.0, 18.0, 19.0]);
    let (_, stats) = harness.get("/api/v1/console/stats").await?;
    assert!(
        stats["n_history_points"].as_u64() <= Some(5 * stats["n_topics"].as_u64().unwrap_or(0)),
        "{stats}"
    );
    harness.stop().await;
    Ok(())
}

/// A JSON answer of the console once `accept` likes it, within [`DEADLINE`].
async fn answer_eventually(
    harness: &Harness,
    path: &str,
    accept: impl Fn(&Json) -> bool,
) -> anyhow::Result<Json> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, json) = harness.get(path).await?;
        if status == 200 && accept(&json) {
            return Ok(json);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("GET {path} not as expected within {DEADLINE:?}; last: {status} {json}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn oee_result(kind: OeePeriodKind, id: &str, version: u32, good: f64) -> anyhow::Result<OeeResult> {
    let ea = |qty| Quantity::new(qty, Uom::EA);
    Ok(OeeResult {
        schema: SchemaTag::default(),
        period: OeePeriod {
            kind,
            id: Id::new(id)?,
        },
        start: "2026-12-04T06:00:00Z".parse()?,
        end: "2026-12-04T07:00:00Z".parse()?,
        availability: Some(0.75),
        performance: Some(0.8),
        quality: Some(good / (good + 10.0)),
        oee: Some(0.75 * 0.8 * good / (good + 10.0)),
        nee: None,
        teep: None,
        utilisation: None,
        technical_efficiency: None,
        setup_ratio: None,
        scrap_ratio: None,
        rework_ratio: None,
        null_reasons: [("nee".to_owned(), "not computed here".to_owned())].into(),
        times: TimeBuckets {
            pot_ms: 3_600_000,
            pbt_ms: 3_600_000,
            apt_ms: 2_700_000,
            adet_ms: 900_000,
            ..TimeBuckets::default()
        },
        counts: OeeCounts {
            produced: ea(good + 10.0),
            good: ea(good),
            scrap: ea(10.0),
            rework: ea(0.0),
        },
        six_big_losses: SixBigLosses::default(),
        losses: vec![Loss {
            reason: "Jam".to_owned(),
            category: StateCategory::UnplannedDown,
            duration_ms: 900_000,
            occurrences: 3,
        }],
        minor_stop_policy: MinorStopPolicy::Iso,
        calendar: None,
        version,
        // The open period is version 1, not final; closed ones are final.
        is_final: id != "2026-12-04t07",
        corrects: (version > 1).then_some(version - 1),
        reason: (version > 1).then(|| "late scrap".to_owned()),
    })
}

/// The plant view's answer: the ISA-95 nodes from `_meta` in tree order with the state (category,
/// reason, since), counters and running order of each; a `_state` without `_meta` still shows;
/// a `_state` that is not a state document is shown with the reason; the services' health and
/// the broker's `$SYS` figures. The OEE board's: per scope the open hour and a closed hour with
/// both versions the console saw (v1, then the correction v2).
#[tokio::test(flavor = "multi_thread")]
async fn the_plant_and_oee_views_show_states_counts_health_and_closed_versions()
-> anyhow::Result<()> {
    let harness = Harness::start(limits(10)).await?;
    let line: Location = "acme/berlin/packaging/line-1".parse()?;
    let filler: Location = "acme/berlin/packaging/line-1/filler".parse()?;
    let capper: Location = "acme/berlin/packaging/line-1/capper".parse()?;
    let stray: Location = "acme/berlin/packaging/line-1/stray".parse()?;
    let topic =
        |location: &Location, class: Class| UnsTopic::located(location.clone(), class).to_string();
    let meta = |level, name: &str| NodeMeta {
        schema: SchemaTag::default(),
        level,
        display_name: name.to_owned(),
        time_zone: None,
        ideal_rates: Vec::new(),
        state_map: None,
        erp_id: None,
    };
    harness
        .publish(
            &topic(&filler, Class::Meta),
            serde_json::to_vec(&meta(Isa95Level::WorkCell, "Filler"))?,
        )
        .await?;
    harness
        .publish(
            &topic(&line, Class::Meta),
            serde_json::to_vec(&meta(Isa95Level::ProductionLine, "Line 1"))?,
        )
        .await?;
    let mut jam = MachineState::named(StateCategory::UnplannedDown, "Jam");
    jam.reason = Some("bottle fallen at infeed".to_owned());
    let since: Timestamp = "2026-12-04T06:30:00Z".parse()?;
    harness
        .publish(
            &topic(&filler, Class::State),
            serde_json::to_vec(&StateDoc::new(Mode::Production, jam, since))?,
        )
        .await?;
    harness
        .publish(
            &topic(&filler, Class::Count(CountKind::Good)),
            serde_json::to_vec(&CountDoc::new(
                CountKind::Good,
                Quantity::new(1234.0, Uom::EA),
                1,
            ))?,
        )
        .await?;
    let running = StateDoc::new(
        Mode::Production,
        MachineState::named(StateCategory::Running, "Execute"),
        since,
    );
    harness
        .publish(&topic(&stray, Class::State), serde_json::to_vec(&running)?)
        .await?;
    harness
        .publish(&topic(&capper, Class::State), r#"{"state": "running"}"#)
        .await?;

    let plant = answer_eventually(&harness, "/api/v1/console/plant", |plant| {
        plant["nodes"]
            .as_array()
            .is_some_and(|nodes| nodes.len() == 4)
            && !plant["services"].as_array().is_none_or(Vec::is_empty)
            && !plant["sys"].as_array().is_none_or(Vec::is_empty)
            && plant["nodes"]
                .as_array()
                .is_some_and(|nodes| nodes.iter().any(|n| n["counts"]["good"]["qty"] == 1234.0))
    })
    .await?;
    let nodes = plant["nodes"].as_array().context("nodes")?;
    let locations: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n["location"].as_str())
        .collect();
    assert_eq!(
        locations,
        [
            "acme/berlin/packaging/line-1",
            "acme/berlin/packaging/line-1/capper",
            "acme/berlin/packaging/line-1/filler",
            "acme/berlin/packaging/line-1/stray",
        ],
        "tree order, parents first: {plant}"
    );
    let node = |location: &str| {
        nodes
            .iter()
            .find(|n| n["location"] == location)
            .cloned()
            .unwrap_or_default()
    };
    let filler_node = node("acme/berlin/packaging/line-1/filler");
    assert_eq!(
        filler_node["meta"]["display_name"], "Filler",
        "{filler_node}"
    );
    assert_eq!(filler_node["meta"]["level"], "WorkCell", "{filler_node}");
    assert_eq!(
        filler_node["state"]["state"]["category"], "unplanned_down",
        "{filler_node}"
    );
    assert_eq!(
        filler_node["state"]["state"]["reason"], "bottle fallen at infeed",
        "{filler_node}"
    );
    assert_eq!(
        filler_node["state"]["since"], "2026-12-04T06:30:00.000Z",
        "{filler_node}"
    );
    assert_eq!(
        filler_node["counts"]["good"]["qty"], 1234.0,
        "{filler_node}"
    );
    let stray_node = node("acme/berlin/packaging/line-1/stray");
    assert_eq!(
        stray_node["meta"],
        Json::Null,
        "a state without _meta: {stray_node}"
    );
    assert_eq!(
        stray_node["state"]["state"]["category"], "running",
        "{stray_node}"
    );
    let capper_node = node("acme/berlin/packaging/line-1/capper");
    assert!(
        capper_node["state"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not a uns/state/v1 document")),
        "{capper_node}"
    );
    let services = plant["services"].as_array().context("services")?;
    assert!(
        services
            .iter()
            .any(|s| s["health"]["service"] == "console" && s["health"]["status"] == "running"),
        "{plant}"
    );
    assert!(
        plant["sys"]
            .as_array()
            .context("sys")?
            .iter()
            .any(|figure| figure["name"] == "broker/version"),
        "{plant}"
    );

    let current = topic(&line, Class::OeeCurrent(OeePeriodKind::Hour));
    harness
        .publish(
            &current,
            serde_json::to_vec(&oee_result(OeePeriodKind::Hour, "2026-12-04t07", 1, 90.0)?)?,
        )
        .await?;
    let closed = topic(
        &line,
        Class::Oee(OeePeriodKind::Hour, Id::new("2026-12-04t06")?),
    );
    harness
        .publish(
            &closed,
            serde_json::to_vec(&oee_result(OeePeriodKind::Hour, "2026-12-04t06", 1, 90.0)?)?,
        )
        .await?;
    harness
        .publish(
            &closed,
            serde_json::to_vec(&oee_result(OeePeriodKind::Hour, "2026-12-04t06", 2, 80.0)?)?,
        )
        .await?;
    // An earlier hour arriving last (as after a restart) is still listed after the later one.
    let earlier = topic(
        &line,
        Class::Oee(OeePeriodKind::Hour, Id::new("2026-12-04t05")?),
    );
    harness
        .publish(
            &earlier,
            serde_json::to_vec(&oee_result(OeePeriodKind::Hour, "2026-12-04t05", 1, 90.0)?)?,
        )
        .await?;
    let board = answer_eventually(&harness, "/api/v1/console/oee", |board| {
        board["scopes"][0]["closed"][0]["version"] == 2
            && board["scopes"][0]["closed"][1]["id"] == "2026-12-04t05"
    })
    .await?;
    let scope = &board["scopes"][0];
    assert_eq!(scope["scope"], "acme/berlin/packaging/line-1", "{board}");
    assert_eq!(
        scope["current"]["hour"]["period"]["id"], "2026-12-04t07",
        "{board}"
    );
    assert_eq!(scope["current"]["hour"]["availability"], 0.75, "{board}");
    assert_eq!(
        scope["current"]["hour"]["losses"][0]["reason"], "Jam",
        "{board}"
    );
    let period = &scope["closed"][0];
    assert_eq!(period["id"], "2026-12-04t06", "{board}");
    assert_eq!(
        period["quality"],
        80.0 / 90.0,
        "the latest version's figures: {board}"
    );
    let versions: Vec<u64> = period["versions"]
        .as_array()
        .context("versions")?
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(versions, [1, 2], "{board}");
    assert_eq!(period["versions"][1]["reason"], "late scrap", "{board}");
    harness.stop().await;
    Ok(())
}

/// The load figure: 50 000 retained topics, then the tree's first level over HTTP, timed and
/// printed (`cargo test -p uns-console --release -- --nocapture load`). Asserts the counts only.
#[tokio::test(flavor = "multi_thread")]
async fn load_first_level_at_50000_retained_topics() -> anyhow::Result<()> {
    const N_TOPICS: u64 = 50_000;
    let harness = Harness::start(limits(10)).await?;
    for idx in 0..N_TOPICS {
        let topic = format!(
            "load/area-{}/line-{}/cell-{}/tag-{idx}",
            idx % 10,
            idx / 10 % 50,
            idx / 500 % 10
        );
        harness
            .publish(&topic, format!(r#"{{"value":{idx}}}"#))
            .await?;
    }
    // One connection delivers in order: the last topic there means all are (the topic count
    // alone would not do: the broker's `$SYS` topics and the console's health count too).
    harness
        .topic_eventually("load/area-9/line-49/cell-9/tag-49999", |_| true)
        .await?;
    harness.n_topics_eventually(N_TOPICS).await?;
    let mut timings = Vec::new();
    let mut root = Json::Null;
    for _ in 0..5 {
        let start = tokio::time::Instant::now();
        root = harness.get("/api/v1/console/tree").await?.1;
        timings.push(start.elapsed());
    }
    let (_, stats) = harness.get("/api/v1/console/stats").await?;
    let (_, area) = harness.get("/api/v1/console/tree?path=load/area-3").await?;
    eprintln!(
        "console load: {} topics; first level over HTTP in {:?} (5 runs); one area's children: {} entries; stats {stats}",
        root["n_topics_all"],
        timings,
        area["children"].as_array().map_or(0, Vec::len)
    );
    assert!(
        children(&root).contains(&("load".to_owned(), N_TOPICS, true)),
        "{root}"
    );
    assert_eq!(children(&area).len(), 50);
    harness.stop().await;
    Ok(())
}

/// A server-sent event stream read over a raw socket.
struct Sse {
    lines: tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
}

impl Sse {
    async fn open(addr: SocketAddr, watch: &str) -> anyhow::Result<Self> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "GET /api/v1/console/events?watch={} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n",
            encode(watch)
        );
        stream.write_all(request.as_bytes()).await?;
        let mut lines = BufReader::new(stream).lines();
        let status = lines.next_line().await?.context("no status line")?;
        if !status.contains(" 200 ") {
            bail!("events: {status}");
        }
        Ok(Self { lines })
    }

    /// The data of the next event of `kind`, within [`DEADLINE`].
    async fn next_event(&mut self, kind: &str) -> anyhow::Result<Json> {
        let wanted = format!("event: {kind}");
        tokio::time::timeout(DEADLINE, async {
            let mut in_wanted = false;
            while let Some(line) = self.lines.next_line().await? {
                if line.starts_with("event:") {
                    in_wanted = line == wanted;
                } else if in_wanted && let Some(data) = line.strip_prefix("data: ") {
                    return Ok(serde_json::from_str(data)?);
                }
            }
            bail!("the event stream ended")
        })
        .await
        .with_context(|| format!("no {kind} event within {DEADLINE:?}"))?
    }
}
