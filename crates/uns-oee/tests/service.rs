//! The service through the real broker, real sockets, a real redb file and real HTTP: `_state` and
//! `_count` documents in, `_oee/...` out with the expected figures; a restart on the same data directory
//! loses nothing (including a non-retained reclassification and the counter history that only the store
//! has, since the broker retains just the latest total).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Inbox, Metrics, UnsClient};
use uns_model::payload::{OeeResult, StateCategory, decode};
use uns_model::topic::{Class, CountKind, Id, OeePeriodKind, TopicFilter, UnsTopic};
use uns_oee::Oee;
use uns_oee::config::OeeConfig;
use uns_service::{
    BrokerEndpoint, ConfigEnv, Configured, Health, HttpServer, RestartPolicy, Routes, Runtime,
    RuntimeOptions, Service,
};
use uuid::Uuid;

use crate::support::{FILLER, close4, count_doc, loc, meta_doc, min, reclass_event, state_doc};

const DEADLINE: Duration = Duration::from_secs(15);

const CONFIG: &str = r#"
sites = []
lines = []
publish_interval_s = 1
grace_s = 60
default_calendar = "day"
[calendars.day]
shifts = [{ name = "day", start = "00:00", end = "00:00" }]
"#;

struct Running {
    runtime: Runtime,
    http: SocketAddr,
    stop: CancellationToken,
}

async fn start_oee(data_dir: &Path, url: &BrokerUrl) -> anyhow::Result<Running> {
    start_oee_with(data_dir, url, CONFIG).await
}

async fn start_oee_with(data_dir: &Path, url: &BrokerUrl, config: &str) -> anyhow::Result<Running> {
    let config: OeeConfig = toml::from_str(config)?;
    let env = ConfigEnv {
        demo: false,
        data_dir: data_dir.to_owned(),
        http_listen: "127.0.0.1:0".parse()?,
    };
    let oee = Oee::configure(config, &env).map_err(|err| anyhow::anyhow!("{err}"))?;
    let stop = CancellationToken::new();
    let (health, metrics, routes) = (Health::default(), Metrics::new(), Routes::default());
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
                url: url.clone(),
                credentials: None,
            },
            data_dir: data_dir.to_owned(),
            restart: RestartPolicy::Exit,
            stop_grace: Duration::from_secs(2),
            health,
            metrics,
            routes,
        },
        vec![Configured::new(oee)],
    )
    .await?;
    Ok(Running {
        runtime,
        http: http.local_addr(),
        stop,
    })
}

impl Running {
    async fn stop(self) {
        self.runtime.stop().await;
        self.stop.cancel();
    }
}

/// The next `OeeResult` on `topic` that satisfies `accept`.
async fn next_result(
    inbox: &mut Inbox,
    topic: &UnsTopic,
    accept: impl Fn(&OeeResult) -> bool,
) -> anyhow::Result<OeeResult> {
    let topic = topic.to_string();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.context("inbox closed")?;
            if message.topic != topic {
                continue;
            }
            let result: OeeResult = decode(&message.payload)?;
            if accept(&result) {
                return Ok(result);
            }
        }
    })
    .await
    .with_context(|| format!("no matching result on {topic} within {DEADLINE:?}"))?
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}

/// GETs `path` until it answers 200 (the service mounts its routes when its loop starts).
async fn http_get_ok(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = http_get(addr, path).await?;
        if status == 200 {
            return Ok(body);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{path}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A broker on port 0 in a temporary directory and a "PLC" client subscribed under the filler:
/// what every test here starts from (the OEE service is started on `url` by the test).
struct Rig {
    dir: tempfile::TempDir,
    _broker: uns_broker::BrokerHandle,
    url: BrokerUrl,
    stop: CancellationToken,
    plc: UnsClient,
    inbox: Inbox,
    filler: uns_model::topic::Location,
}

async fn rig() -> anyhow::Result<Rig> {
    let dir = tempfile::tempdir()?;
    let broker = uns_broker::start(uns_broker::BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        data_dir: dir.path().join("broker"),
        ..Default::default()
    })
    .await?;
    let url = BrokerUrl::new("127.0.0.1", broker.mqtt_addr().port());
    let stop = CancellationToken::new();
    let (plc, inbox, _) = UnsClient::start(
        ClientOptions::new(url.clone(), "plc")?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    plc.wait_connected(DEADLINE).await?;
    let filler = loc(FILLER);
    plc.subscribe(&TopicFilter::under(&filler)).await?;
    Ok(Rig {
        dir,
        _broker: broker,
        url,
        stop,
        plc,
        inbox,
        filler,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_through_the_broker_and_no_loss_across_a_restart() -> anyhow::Result<()> {
    let Rig {
        dir,
        _broker,
        url,
        stop,
        plc,
        mut inbox,
        filler,
    } = rig().await?;

    let data_dir = dir.path().join("oee");
    let running = start_oee(&data_dir, &url).await?;

    // Yesterday (UTC) in full: running, one hour of jam at noon, 1200 good at 60/h ideal.
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(86_400_000);
    let t0 = today - 86_400_000;
    let hour = 3_600_000;
    let at = |topic: Class| UnsTopic::located(filler.clone(), topic);
    plc.publish(&at(Class::Meta), &meta_doc(60.0)).await?;
    plc.publish(
        &at(Class::State),
        &state_doc(t0, StateCategory::Running, "Execute"),
    )
    .await?;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 0.0, t0),
    )
    .await?;
    // The service is subscribed once its first current figures for the filler appear (these two
    // documents are retained, so it gets them either way; the later ones are not all retained).
    let current_topic = at(Class::OeeCurrent(OeePeriodKind::Shift));
    next_result(&mut inbox, &current_topic, |_| true).await?;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 600.0, t0 + 12 * hour),
    )
    .await?;
    plc.publish(
        &at(Class::State),
        &state_doc(t0 + 12 * hour, StateCategory::UnplannedDown, "Jam"),
    )
    .await?;
    plc.publish(
        &at(Class::State),
        &state_doc(t0 + 13 * hour, StateCategory::Running, "Execute"),
    )
    .await?;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 1200.0, t0 + 24 * hour - 1),
    )
    .await?;
    // Today: 10 more, 2 of them reclassified to scrap by a (non-retained) count event.
    let t1 = today + 2 * 60_000;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 1210.0, t1),
    )
    .await?;
    plc.publish(
        &at(Class::CountEvents),
        &reclass_event(t1, CountKind::Good, CountKind::Scrap, 2.0, Uuid::now_v7()),
    )
    .await?;

    let yesterday_id = format!(
        "{}.day",
        chrono::DateTime::from_timestamp_millis(t0)
            .context("t0")?
            .format("%Y-%m-%d")
    );
    let closed_topic = at(Class::Oee(OeePeriodKind::Shift, Id::new(&yesterday_id)?));
    let closed = next_result(&mut inbox, &closed_topic, |r| r.is_final).await?;
    let (pbt, apt) = (min(24.0 * 60.0), min(23.0 * 60.0));
    assert_eq!(closed.times.pbt_ms as f64, pbt);
    assert_eq!(closed.times.adet_ms as f64, min(60.0));
    close4(closed.availability, apt / pbt); // 0.9583
    close4(closed.performance, 1200.0 * min(1.0) / apt); // 0.8696
    close4(closed.quality, 1.0);
    close4(closed.oee, 1200.0 * min(1.0) / pbt);

    let current = next_result(&mut inbox, &current_topic, |r| r.counts.scrap.qty == 2.0).await?;
    assert_eq!(current.counts.good.qty, 8.0);
    assert!(!current.is_final);

    // The HTTP API returns the same closed document.
    let (status, body) = http_get(
        running.http,
        &format!("/api/v1/oee?scope={FILLER}&period=shift&id={yesterday_id}"),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<OeeResult>(&body)?, closed);
    let (status, _) = http_get(
        running.http,
        "/api/v1/oee?scope=acme/nowhere/x&period=shift&id=nope",
    )
    .await?;
    assert_eq!(status, 404);

    // Restart on the same data directory: the broker only has the latest total (1210) and not the count
    // event, so the figures can only come back from the store.
    running.stop().await;
    let running = start_oee(&data_dir, &url).await?;
    let body = http_get_ok(
        running.http,
        &format!("/api/v1/oee?scope={FILLER}&period=shift"),
    )
    .await?;
    let after: OeeResult = serde_json::from_str(&body)?;
    assert_eq!((after.counts.good.qty, after.counts.scrap.qty), (8.0, 2.0));
    let (_, body) = http_get(
        running.http,
        &format!("/api/v1/oee?scope={FILLER}&period=shift&id={yesterday_id}"),
    )
    .await?;
    assert_eq!(
        serde_json::from_str::<OeeResult>(&body)?,
        closed,
        "closed period unchanged, still version 1"
    );
    running.stop().await;
    stop.cancel();
    Ok(())
}

/// The next `ErrorReport` on `errors`.
async fn next_error(
    inbox: &mut Inbox,
    errors: &UnsTopic,
) -> anyhow::Result<uns_model::payload::ErrorReport> {
    let errors = errors.to_string();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.context("inbox closed")?;
            if message.topic == errors {
                return anyhow::Ok(decode(&message.payload)?);
            }
        }
    })
    .await
    .with_context(|| format!("no report on {errors} within {DEADLINE:?}"))?
}

/// Bad input never stops the service: a `_state` that does not decode and a count older than the
/// retention each get a typed `ErrorReport` on the asset's `_errors` (kinds `bad_payload` and
/// `too_late`), are counted in `/metrics`, and the next valid input still moves the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_too_late_input_is_reported_counted_and_survived() -> anyhow::Result<()> {
    let Rig {
        dir,
        _broker,
        url,
        stop,
        plc,
        mut inbox,
        filler,
    } = rig().await?;
    let running = start_oee(&dir.path().join("oee"), &url).await?;
    let at = |class: Class| UnsTopic::located(filler.clone(), class);
    let now = chrono::Utc::now().timestamp_millis();
    plc.publish(&at(Class::Meta), &meta_doc(60.0)).await?;
    plc.publish(
        &at(Class::State),
        &state_doc(now, StateCategory::Running, "Execute"),
    )
    .await?;
    let current = at(Class::OeeCurrent(OeePeriodKind::Shift));
    next_result(&mut inbox, &current, |_| true).await?;

    let errors = at(Class::Errors);
    plc.publish_bytes(&at(Class::State), bytes::Bytes::from_static(b"{not json"))
        .await?;
    let report = next_error(&mut inbox, &errors).await?;
    assert_eq!(report.service.as_str(), "oee");
    assert_eq!(
        report.topic.as_deref(),
        Some(at(Class::State).to_string().as_str())
    );
    assert_eq!(report.payload_excerpt.as_deref(), Some("{not json"));

    // 49 h before the newest event time: beyond retain_h (48 h by default).
    let old = now - 49 * 3_600_000;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 5.0, old),
    )
    .await?;
    let report = next_error(&mut inbox, &errors).await?;
    assert!(
        report.reason.contains("older than the retention"),
        "{report:?}"
    );

    let body = http_get_ok(running.http, "/metrics").await?;
    for kind in ["bad_payload", "too_late"] {
        assert!(
            body.lines().any(|line| line.contains("rejected_input")
                && line.contains(&format!("kind=\"{kind}\""))
                && line.trim_end().ends_with(" 1")),
            "{kind} not counted once:\n{body}"
        );
    }

    // Still working: a valid count moves the current figures.
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 0.0, now + 1_000),
    )
    .await?;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 3.0, now + 2_000),
    )
    .await?;
    next_result(&mut inbox, &current, |result| result.counts.good.qty == 3.0).await?;
    running.stop().await;
    stop.cancel();
    Ok(())
}

/// `_cmd/oee/close` over MQTT 5 request/response: the filler ran all of yesterday (UTC) and then went
/// quiet, so event time never passes yesterday's end plus the grace and nothing closes by itself.
/// The request closes yesterday's shift (one 24-hour shift), hours and day at once, with the last state
/// running up to the period's end; the reply lists what it closed and what is still running; a body
/// that does not parse is refused, answered and reported on `_errors`; after a restart the closed
/// shift is still there (the request was recorded with its time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_command_closes_ended_periods_without_waiting_for_events() -> anyhow::Result<()> {
    use uns_model::payload::CmdReply;

    let Rig {
        dir,
        _broker,
        url,
        stop,
        plc,
        mut inbox,
        filler,
    } = rig().await?;
    let data_dir = dir.path().join("oee");
    let running = start_oee(&data_dir, &url).await?;

    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(86_400_000);
    let t0 = today - 86_400_000;
    let hour = 3_600_000;
    let at = |class: Class| UnsTopic::located(filler.clone(), class);
    plc.publish(&at(Class::Meta), &meta_doc(60.0)).await?;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 0.0, t0),
    )
    .await?;
    plc.publish(
        &at(Class::State),
        &state_doc(t0, StateCategory::Running, "Execute"),
    )
    .await?;
    // Subscribed once its first current figures appear (the documents so far are retained, the
    // broker keeps only the latest total of a counter, so the next one must come after).
    next_result(
        &mut inbox,
        &at(Class::OeeCurrent(OeePeriodKind::Shift)),
        |_| true,
    )
    .await?;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &count_doc(CountKind::Good, 1080.0, t0 + 23 * hour),
    )
    .await?;
    let yesterday_id = format!(
        "{}.day",
        chrono::DateTime::from_timestamp_millis(t0)
            .context("t0")?
            .format("%Y-%m-%d")
    );
    let (status, _) = http_get(
        running.http,
        &format!("/api/v1/oee?scope={FILLER}&period=shift&id={yesterday_id}"),
    )
    .await?;
    assert_eq!(status, 404, "closed before the request");

    // Closing at the filler (requests on the same connection as the documents, so after them).
    let close_topic = at(uns_oee::input::close_class());
    let message = plc
        .request(&close_topic, &serde_json::json!({}), DEADLINE)
        .await?;
    let reply: CmdReply = decode(&message.payload)?;
    assert!(reply.ok, "{reply:?}");
    let result = reply.result.context("a result")?;
    let closed = result["closed"].as_array().context("closed")?;
    assert!(
        closed.iter().any(|c| c["period"] == "shift"
            && c["id"] == yesterday_id.as_str()
            && c["version"] == 1
            && c["scope"] == FILLER),
        "{result}"
    );
    // Event time (23:00) had closed yesterday's hours up to 22:00 (end 22:00 + grace ≤ 23:00); the
    // request closes 22:00 and 23:00 and today's hours that ended by its time.
    let closed_at: uns_model::payload::Timestamp =
        serde_json::from_value(result["at"].clone()).context("at")?;
    let today_hours = (closed_at.unix_ms() - today) / hour;
    assert_eq!(
        closed.iter().filter(|c| c["period"] == "hour").count() as i64,
        2 + today_hours,
        "{result}"
    );
    assert!(closed.iter().any(|c| c["period"] == "day"), "{result}");
    let open = result["still_open"].as_array().context("still_open")?;
    assert!(
        open.iter()
            .any(|o| o["period"] == "shift" && o["id"].as_str() != Some(&yesterday_id)),
        "today's shift still runs: {result}"
    );

    let final_topic = at(Class::Oee(OeePeriodKind::Shift, Id::new(&yesterday_id)?));
    let shift = next_result(&mut inbox, &final_topic, |r| r.is_final).await?;
    // Running from 00:00 to 24:00 (the last state runs to the period's end), 1080 parts at 1 min each.
    let (pbt, apt) = (min(24.0 * 60.0), min(24.0 * 60.0));
    assert_eq!(shift.times.apt_ms as f64, apt);
    assert_eq!(shift.version, 1);
    close4(shift.availability, apt / pbt);
    close4(shift.performance, 1080.0 * min(1.0) / apt); // 0.75
    close4(shift.oee, 1080.0 * min(1.0) / pbt);

    // A second close finds nothing more to close.
    let message = plc
        .request(
            &close_topic,
            &serde_json::json!({"period": "shift"}),
            DEADLINE,
        )
        .await?;
    let again: CmdReply = decode(&message.payload)?;
    assert!(again.ok, "{again:?}");
    assert_eq!(
        again.result.context("result")?["closed"],
        serde_json::json!([])
    );

    // A bad body: refused, answered and reported.
    let message = plc
        .request(
            &close_topic,
            &serde_json::json!({"period": "week"}),
            DEADLINE,
        )
        .await?;
    let refused: CmdReply = decode(&message.payload)?;
    assert!(!refused.ok);
    assert!(
        refused.error.as_deref().is_some_and(|e| e.contains("week")),
        "{refused:?}"
    );
    let report = next_error(&mut inbox, &at(Class::Errors)).await?;
    assert_eq!(
        report.topic.as_deref(),
        Some(close_topic.to_string().as_str())
    );
    // Closing in the future is refused too.
    let message = plc
        .request(
            &close_topic,
            &serde_json::json!({"at": "2999-01-01T00:00:00Z"}),
            DEADLINE,
        )
        .await?;
    let refused: CmdReply = decode(&message.payload)?;
    assert!(!refused.ok, "{refused:?}");

    // Restart: the request was recorded with its time, so the shift is closed again from the log.
    running.stop().await;
    let running = start_oee(&data_dir, &url).await?;
    let body = http_get_ok(
        running.http,
        &format!("/api/v1/oee?scope={FILLER}&period=shift&id={yesterday_id}"),
    )
    .await?;
    assert_eq!(serde_json::from_str::<OeeResult>(&body)?, shift);
    running.stop().await;
    stop.cancel();
    Ok(())
}

/// The input log's rows and the snapshot's key (the sequence number of the first input it does not
/// cover), read from the service's store (`{data_dir}/oee/oee.redb`) while it is stopped.
async fn log_rows(data_dir: &Path) -> anyhow::Result<(u64, Option<u64>)> {
    use uns_store::{Bytes, ReadableTx, Store, Table, U64};
    const INPUTS: Table<U64, Bytes> = Table::new("oee_inputs_v1");
    const SNAPSHOT: Table<U64, Bytes> = Table::new("oee_snapshot_v1");
    let store = Store::open(&data_dir.join("oee").join("oee.redb"))?;
    let found = store
        .read(|tx| {
            let rows = tx.len(&INPUTS)?;
            let snapshot = tx.last(&SNAPSHOT)?.map(|(key, _)| key);
            Ok((rows, snapshot))
        })
        .await?;
    Ok(found)
}

/// `snapshot_every_inputs = 25`: over four runs of the service on the same data directory, 150
/// counter totals (each a stored input) never leave more than 24 inputs in the log, because a
/// snapshot replaces them; every stored input is covered by the snapshot or still in the log
/// (snapshot key + rows = inputs stored). Each restart starts from the snapshot, the totals sent
/// again after it are duplicates (nothing stored), and yesterday's shift, closed by a count of
/// today, has every part: 150 at 1 min ideal in a 24 h shift of running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_input_log_and_a_restart_from_one_loses_nothing() -> anyhow::Result<()>
{
    let Rig {
        dir,
        _broker,
        url,
        stop,
        plc,
        mut inbox,
        filler,
    } = rig().await?;
    let data_dir = dir.path().join("oee");
    let config = format!("snapshot_every_inputs = 25\n{CONFIG}");
    let mut running = start_oee_with(&data_dir, &url, &config).await?;

    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(86_400_000);
    let t0 = today - 86_400_000;
    let at = |class: Class| UnsTopic::located(filler.clone(), class);
    let good = at(Class::Count(CountKind::Good));
    plc.publish(&at(Class::Meta), &meta_doc(60.0)).await?;
    plc.publish(
        &at(Class::State),
        &state_doc(t0, StateCategory::Running, "Execute"),
    )
    .await?;
    plc.publish(&good, &count_doc(CountKind::Good, 0.0, t0))
        .await?;
    next_result(
        &mut inbox,
        &at(Class::OeeCurrent(OeePeriodKind::Shift)),
        |_| true,
    )
    .await?;
    // A close request answered means every message sent before it on this connection was handled;
    // one for a time before any period ended closes nothing and is not stored. Right after a start
    // the service may not be subscribed yet (the request is then not delivered): asked again until
    // the deadline.
    let close_topic = at(uns_oee::input::close_class());
    let handled = |plc: &UnsClient| {
        let (plc, close_topic) = (plc.clone(), close_topic.clone());
        async move {
            let body =
                serde_json::json!({ "at": uns_model::payload::Timestamp::from_unix_ms(t0 + 1) });
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                match plc
                    .request(&close_topic, &body, Duration::from_secs(1))
                    .await
                {
                    Ok(message) => {
                        let reply: uns_model::payload::CmdReply = decode(&message.payload)?;
                        anyhow::ensure!(reply.ok, "{reply:?}");
                        return anyhow::Ok(());
                    }
                    Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.into()),
                    Err(_) => {}
                }
            }
        }
    };
    handled(&plc).await?;

    let mut total = 0.0;
    let mut stored = 3; // meta, state, the counter's baseline
    let mut snapshots = std::collections::BTreeSet::new();
    for round in 0..4 {
        let n = if round == 0 { 30 } else { 40 };
        for _ in 0..n {
            total += 1.0;
            let t = t0 + total as i64 * 60_000;
            plc.publish(&good, &count_doc(CountKind::Good, total, t))
                .await?;
        }
        stored += n;
        handled(&plc).await?;
        running.stop().await;
        let (rows, snapshot) = log_rows(&data_dir).await?;
        assert!(rows < 25, "round {round}: {rows} inputs in the log");
        let covered = snapshot.with_context(|| format!("a snapshot ({rows} rows)"))?;
        assert_eq!(covered + rows, stored, "round {round}");
        snapshots.insert(covered);

        // Restart from the snapshot; once it is subscribed, the last ten totals again are
        // duplicates (not stored).
        running = start_oee_with(&data_dir, &url, &config).await?;
        handled(&plc).await?;
        for back in (0..10).rev() {
            let again = total - f64::from(back);
            let t = t0 + again as i64 * 60_000;
            plc.publish(&good, &count_doc(CountKind::Good, again, t))
                .await?;
        }
        handled(&plc).await?;
        running.stop().await;
        assert_eq!(
            log_rows(&data_dir).await?,
            (rows, snapshot),
            "round {round}"
        );
        running = start_oee_with(&data_dir, &url, &config).await?;
        handled(&plc).await?;
    }
    assert!(
        snapshots.len() >= 4,
        "a new snapshot each round: {snapshots:?}"
    );

    // A count of today closes yesterday's shift: every part is in it.
    plc.publish(&good, &count_doc(CountKind::Good, total, today + 60_000))
        .await?;
    let yesterday_id = format!(
        "{}.day",
        chrono::DateTime::from_timestamp_millis(t0)
            .context("t0")?
            .format("%Y-%m-%d")
    );
    let closed_topic = at(Class::Oee(OeePeriodKind::Shift, Id::new(&yesterday_id)?));
    let closed = next_result(&mut inbox, &closed_topic, |r| r.is_final).await?;
    assert_eq!(closed.counts.good.qty, total);
    assert_eq!(closed.version, 1);
    let apt = min(24.0 * 60.0);
    assert_eq!(closed.times.apt_ms as f64, apt);
    close4(closed.performance, total * min(1.0) / apt); // 150 / 1440 = 0.1042
    running.stop().await;
    stop.cancel();
    Ok(())
}
