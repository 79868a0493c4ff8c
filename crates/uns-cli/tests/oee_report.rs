//! `uns oee report` against a running `uns up` (real binary, broker and HTTP on port 0): a filler
//! that ran all of yesterday (UTC) with one hour of jam and 1200 good parts at an ideal 60/h; the
//! closed shift's table and JSON carry the hand-computed figures, the open shift is reported too, and
//! an unknown period exits non-zero with the service's reason.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Metrics, UnsClient};
use uns_model::payload::{
    CountDoc, IdealRate, MachineState, Mode, NodeMeta, OeeResult, Quantity, SchemaTag,
    StateCategory, StateDoc, Timestamp, Uom,
};
use uns_model::topic::{Class, CountKind, Isa95Level, Location, UnsTopic};

const DEADLINE: Duration = Duration::from_secs(30);
const FILLER: &str = "acme/berlin/packaging/line-1/filler";

/// One 24-hour shift a day in UTC, no demo sites or lines, current figures every second.
const CONFIG: &str = r#"
[oee]
publish_interval_s = 1
sites = []
lines = []
default_calendar = "day"
default_time_zone = "UTC"
[oee.calendars.day]
shifts = [{ name = "day", start = "00:00", end = "00:00" }]
"#;

/// `uns up` (killed on drop).
struct Up {
    child: Child,
    mqtt: std::net::SocketAddr,
    http: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_up(dir: &Path) -> anyhow::Result<Up> {
    let config = dir.join("uns.toml");
    std::fs::write(&config, CONFIG)?;
    let ready = dir.join("ready.json");
    let log = std::fs::File::create(dir.join("up.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_uns"))
        .arg("up")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--ws-listen", "none"])
        .args(["--http-listen", "127.0.0.1:0"])
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let mut up = Up {
        child,
        mqtt: "127.0.0.1:0".parse()?,
        http: String::new(),
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
            && let (Some(mqtt), Some(http)) = (json["mqtt"].as_str(), json["http"].as_str())
        {
            up.mqtt = mqtt.parse()?;
            up.http = format!("http://{http}");
            return Ok(up);
        }
        if let Some(status) = up.child.try_wait()? {
            anyhow::bail!(
                "uns up exited with {status}:\n{}",
                std::fs::read_to_string(dir.join("up.log"))?
            );
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "uns up not ready within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `uns oee report ARGS --url URL`: (success, stdout, stderr).
async fn report(url: &str, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_uns"))
        .args(["oee", "report"])
        .args(args)
        .args(["--url", url])
        .output()
        .await?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

fn ea(qty: f64) -> Quantity {
    Quantity::new(qty, Uom::EA)
}

fn ts(at: i64) -> Timestamp {
    Timestamp::from_unix_ms(at).expect("time")
}

fn state(at: i64, category: StateCategory, name: &str) -> StateDoc {
    StateDoc::new(
        Mode::Production,
        MachineState::named(category, name),
        ts(at),
    )
}

fn good(total: f64, at: i64) -> CountDoc {
    CountDoc::new(CountKind::Good, ea(total), at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_prints_the_closed_and_the_open_shift() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = start_up(dir.path()).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (plc, _inbox, _) = UnsClient::start(
        ClientOptions::new(BrokerUrl::new("127.0.0.1", up.mqtt.port()), "plc")?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    plc.wait_connected(DEADLINE).await?;
    let filler: Location = FILLER.parse()?;
    let at = |class: Class| UnsTopic::located(filler.clone(), class);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let today = now - now.rem_euclid(86_400_000);
    let t0 = today - 86_400_000;
    let hour = 3_600_000;
    let meta = NodeMeta {
        schema: SchemaTag::default(),
        level: Isa95Level::WorkCell,
        display_name: "filler".to_owned(),
        time_zone: None,
        ideal_rates: vec![IdealRate {
            material: None,
            per_hour: ea(60.0),
        }],
        state_map: None,
        erp_id: None,
    };
    plc.publish(&at(Class::Meta), &meta).await?;
    plc.publish(&at(Class::Count(CountKind::Good)), &good(0.0, t0))
        .await?;
    plc.publish(
        &at(Class::State),
        &state(t0, StateCategory::Running, "Execute"),
    )
    .await?;
    // The service has these (retained) documents once the open shift is reported; the next totals
    // must come after that, since the broker keeps only a counter's latest total.
    let url = up.http.clone();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let open = loop {
        let (ok, out, err) = report(&url, &["--scope", FILLER, "--period", "shift"]).await?;
        if ok {
            break out;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no open shift: {err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(open.contains("(open)"), "{open}");
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &good(600.0, t0 + 12 * hour),
    )
    .await?;
    plc.publish(
        &at(Class::State),
        &state(t0 + 12 * hour, StateCategory::UnplannedDown, "Jam"),
    )
    .await?;
    plc.publish(
        &at(Class::State),
        &state(t0 + 13 * hour, StateCategory::Running, "Execute"),
    )
    .await?;
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &good(1200.0, t0 + 24 * hour - 1),
    )
    .await?;
    // Event time 00:02 today: yesterday's shift closes (end + 60 s grace).
    plc.publish(
        &at(Class::Count(CountKind::Good)),
        &good(1210.0, today + 2 * 60_000),
    )
    .await?;

    let id = format!(
        "{}.day",
        Timestamp::from_unix_ms(t0)
            .expect("t0")
            .to_string()
            .get(..10)
            .expect("date")
    );
    let args = ["--scope", FILLER, "--period", "shift", "--id", id.as_str()];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let table = loop {
        let (ok, out, err) = report(&url, &args).await?;
        if ok {
            break out;
        }
        assert!(err.contains("HTTP 404"), "{err}");
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "shift {id} not closed: {err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // PBT = 24 h, APT = 23 h (one hour of jam), ideal = 1200 × 1 min = 20 h.
    // A = 23/24 = 95.8 %, E = 20/23 = 87.0 %, Q = 100 %, OEE = 20/24 = 83.3 %.
    let row = |name: &str| {
        table
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{table}"))
            .to_owned()
    };
    assert!(table.contains("(final, version 1)"), "{table}");
    assert!(row("OEE ").contains("83.3 %"), "{table}");
    assert!(row("Availability").contains("95.8 %"), "{table}");
    assert!(row("Performance").contains("87.0 %"), "{table}");
    assert!(row("Quality").contains("100.0 %"), "{table}");
    assert!(row("PBT").contains("24:00:00"), "{table}");
    assert!(row("ADET").contains("1:00:00"), "{table}");
    assert!(row("COUNTS").contains("good 1200"), "{table}");
    assert!(row("Jam").contains("1:00:00"), "{table}");

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let (ok, json, err) = report(&url, &json_args).await?;
    assert!(ok, "{err}");
    let result: OeeResult = uns_model::payload::decode(json.as_bytes())?;
    let oee = result.oee.expect("oee");
    assert!((oee - 20.0 / 24.0).abs() < 0.5e-4, "{oee}");
    assert_eq!(result.times.apt_ms, 23 * hour as u64);

    let (ok, _, err) = report(
        &url,
        &["--scope", FILLER, "--period", "day", "--id", "1999-01-01"],
    )
    .await?;
    assert!(!ok);
    assert!(
        err.contains("no day result") && err.contains("HTTP 404"),
        "{err}"
    );
    stop.cancel();
    Ok(())
}
