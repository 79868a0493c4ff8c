//! `uns genealogy verify`, `uns genealogy export --epcis` and `uns trace` as an operator runs
//! them: the real binary, a real `uns up` on port 0 holding the store, real redb files, real HTTP.
//!
//! The genealogy store is written first through the library (the recall scenario of the
//! genealogy tests: raw lots → dough → bread → a pallet, a split, a merge, a rework loop, a
//! shipment and a corrected input), then served by `uns up`, then altered behind its back.
#![allow(clippy::print_stderr, reason = "the test explains a failure")]

#[path = "../../uns-genealogy/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use anyhow::{Context, bail};
use common::*;
use serde_json::Value;
use uns_genealogy::{ExportFilter, FSMA_COLUMNS, Ledger, RECALL_COLUMNS, TraceQuery};

const EPCIS_SCHEMA: &str =
    include_str!("../../uns-genealogy/tests/vendor/gs1-epcis/EPCIS-JSON-Schema.json");

async fn uns(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_uns"))
        .args(args)
        .env_remove("UNS_DATA_DIR")
        .env_remove("UNS_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .await?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `uns up` on port 0 with `data_dir`, killed on drop unless stopped.
struct Up {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Up {
    async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let ready = data_dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = data_dir.join("up.log");
        let child = Command::new(env!("CARGO_BIN_EXE_uns"))
            .args(["up", "--listen", "127.0.0.1:0", "--ws-listen", "none"])
            .args(["--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .env_remove("UNS_CONFIG")
            .env("RUST_LOG", "info,rmqtt=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let mut up = Self {
            child,
            url: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(addrs) = serde_json::from_str::<Value>(&text)
                && let Some(http) = addrs["http"].as_str()
            {
                up.url = format!("http://{http}");
                return Ok(up);
            }
            if let Some(status) = up.child.try_wait()? {
                bail!("uns up exited with {status}:\n{}", up.log_tail());
            }
            if Instant::now() > deadline {
                bail!("uns up not listening within 60 s:\n{}", up.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, then waits (at most 30 s) for a clean exit, which closes the store file.
    async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("already reaped")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(status.success(), "uns up: {status}\n{}", self.log_tail());
                Ok(())
            }
            Err(_) => bail!(
                "uns up still running 30 s after SIGTERM:\n{}",
                self.log_tail()
            ),
        }
    }
}

fn event_ids(document: &Value) -> Vec<String> {
    document["epcisBody"]["eventList"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|event| {
            let declared = if event.get("errorDeclaration").is_some() {
                " (error declaration)"
            } else {
                ""
            };
            format!("{}{declared}", event["eventID"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// The document without its creation time (the one field that differs between two exports).
fn without_creation(mut document: Value) -> Value {
    if let Some(object) = document.as_object_mut() {
        object.remove("creationDate");
    }
    document
}

fn assert_valid_epcis(document: &Value) -> anyhow::Result<()> {
    let schema: Value = serde_json::from_str(EPCIS_SCHEMA)?;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)?;
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    anyhow::ensure!(errors.is_empty(), "{errors:#?}");
    Ok(())
}

/// What the library answers on the file before the service takes it, to compare the CLI with.
struct Expected {
    records: u64,
    backward_pallet: BTreeSet<String>,
    forward_flour3_before_correction: BTreeSet<String>,
    epcis_flour2: Value,
    epcis_all: Value,
    epcis_minutes_10_to_40: Value,
}

async fn write_scenario(store: &Path) -> anyhow::Result<Expected> {
    {
        let ledger = Ledger::open(store, tolerances())?;
        build(&ledger).await;
        let ids = |trace: Option<uns_genealogy::Trace>| -> BTreeSet<String> {
            trace
                .map(|t| t.lot_ids().into_iter().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let expected = Expected {
            records: ledger.n_records().await?,
            backward_pallet: ids(ledger.trace(TraceQuery::backward(id("pallet-1"))).await?),
            forward_flour3_before_correction: ids(ledger
                .trace(TraceQuery {
                    as_of: Some(at(45)),
                    ..TraceQuery::forward(id("flour-3"))
                })
                .await?),
            epcis_flour2: ledger
                .epcis(
                    ExportFilter {
                        lots: Some([id("flour-2")].into()),
                        ..ExportFilter::default()
                    },
                    0,
                )
                .await?,
            epcis_all: ledger.epcis(ExportFilter::default(), 0).await?,
            epcis_minutes_10_to_40: ledger
                .epcis(
                    ExportFilter {
                        from: Some(at(10)),
                        to: Some(at(40)),
                        ..ExportFilter::default()
                    },
                    0,
                )
                .await?,
        };
        ledger.close();
        Ok(expected)
    }
}

/// Flips one bit of chain record `seq`'s payload in the file (the service is stopped).
fn tamper(store: &Path, seq: u64) -> anyhow::Result<()> {
    use uns_store::{Bytes, ReadableTx, Store, Table, U64};
    let records: Table<U64, Bytes> =
        Table::named(format!("chain.{}.records_v1", uns_genealogy::CHAIN));
    let file = Store::open(store)?;
    file.write_blocking(|tx| {
        let mut value = tx.get(&records, &seq)?.expect("the record exists");
        // After the layout version, time and two hashes (73 bytes): inside the JSON payload.
        value[80] ^= 0x01;
        tx.insert(&records, &seq, &value)
    })?;
    file.close();
    Ok(())
}

const LOTS: &str = "genealogy.lots_v1";

/// Sets lot `lot`'s quantity in the lot table (the service is stopped); returns the old row.
fn edit_lot_qty(store: &Path, lot: &str, qty: f64) -> anyhow::Result<Vec<u8>> {
    use uns_store::{Bytes, ReadableTx, Store, Str, Table};
    let lots: Table<Str, Bytes> = Table::named(LOTS.to_owned());
    let file = Store::open(store)?;
    let original = file
        .read_blocking(|tx| tx.get(&lots, lot))?
        .context("the lot is stored")?;
    let mut edited: Value = serde_json::from_slice(&original)?;
    edited["lot"]["quantity"]["qty"] = serde_json::json!(qty);
    let edited = serde_json::to_vec(&edited)?;
    file.write_blocking(|tx| tx.insert(&lots, lot, &edited))?;
    file.close();
    Ok(original)
}

fn restore_lot(store: &Path, lot: &str, row: &[u8]) -> anyhow::Result<()> {
    use uns_store::{Bytes, Store, Str, Table};
    let lots: Table<Str, Bytes> = Table::named(LOTS.to_owned());
    let file = Store::open(store)?;
    file.write_blocking(|tx| tx.insert(&lots, lot, row))?;
    file.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_export_and_trace_from_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path();
    let data_arg = data_dir.to_str().context("utf-8 temp dir")?;
    let store = data_dir.join("genealogy").join("genealogy.redb");
    let expected = write_scenario(&store).await?;
    assert_eq!(expected.records, 12);

    // Offline, the service not running: intact.
    let out = uns(&["genealogy", "verify", "--data-dir", data_arg]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("genealogy chain intact: 12 records checked"),
        "{}",
        stdout(&out)
    );

    let up = Up::start(data_dir).await?;
    let url = up.url.clone();
    // The service holds the file: one sentence saying what to do, exit non-zero.
    let out = uns(&["genealogy", "verify", "--data-dir", data_arg]).await?;
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("is held by a running genealogy service")
            && message.contains("uns genealogy verify --url"),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    // Through the service instead.
    let out = uns(&["genealogy", "verify", "--url", &url, "--json"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(report["intact"], true);
    assert_eq!(report["records_checked"], 12);

    // uns trace in each format, against what the library answered on the same file.
    let out = uns(&["trace", "pallet-1", "--url", &url, "--format", "json"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let trace: Value = serde_json::from_str(&stdout(&out))?;
    let lots: BTreeSet<String> = trace["lots"]
        .as_array()
        .context("lots")?
        .iter()
        .filter_map(|lot| lot["lot_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(lots, expected.backward_pallet);
    let out = uns(&["trace", "pallet-1", "--url", &url]).await?;
    let table = stdout(&out);
    // A header, then one line per lot.
    assert!(table.lines().count() > lots.len(), "{table}");
    for lot in &lots {
        assert!(table.contains(lot.as_str()), "{lot} missing:\n{table}");
    }
    assert!(table.contains("mass balance off"), "{table}");
    let out = uns(&["trace", "pallet-1", "--url", &url, "--format", "csv"]).await?;
    let recall = stdout(&out);
    assert_eq!(
        recall.lines().next(),
        Some(RECALL_COLUMNS.join(",").as_str())
    );
    assert_eq!(recall.lines().count(), lots.len() + 1, "{recall}");
    let out = uns(&["trace", "pallet-1", "--url", &url, "--format", "fsma"]).await?;
    let fsma = stdout(&out);
    assert_eq!(fsma.lines().next(), Some(FSMA_COLUMNS.join(",").as_str()));
    assert!(fsma.lines().count() > 1, "{fsma}");
    let out = uns(&[
        "trace",
        "flour-3",
        "--forward",
        "--as-of",
        "2026-03-04T06:45:00Z",
        "--url",
        &url,
        "--format",
        "json",
    ])
    .await?;
    let before: Value = serde_json::from_str(&stdout(&out))?;
    let before: BTreeSet<String> = before["lots"]
        .as_array()
        .context("lots")?
        .iter()
        .filter_map(|lot| lot["lot_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(before, expected.forward_flour3_before_correction);
    let out = uns(&["trace", "nope", "--url", &url]).await?;
    assert!(!out.status.success() && stderr(&out).contains("HTTP 404"));

    // The EPCIS export through the service: valid, and the library's document.
    let out = uns(&[
        "genealogy",
        "export",
        "--epcis",
        "--url",
        &url,
        "--lot",
        "flour-2",
    ])
    .await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let via_http: Value = serde_json::from_str(&stdout(&out))?;
    assert_valid_epcis(&via_http)?;
    assert_eq!(
        without_creation(via_http.clone()),
        without_creation(expected.epcis_flour2.clone())
    );
    // flour-2's receive, and the wrong transform both as declared error and as it was.
    assert_eq!(event_ids(&via_http).len(), 3, "{via_http:#}");
    let out = uns(&["genealogy", "export", "--epcis", "--data-dir", data_arg]).await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("uns genealogy export --url"),
        "{}",
        stderr(&out)
    );
    up.stop().await?;

    // Offline export, the service stopped: the same documents, filters included.
    let out = uns(&["genealogy", "export", "--epcis", "--data-dir", data_arg]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let all: Value = serde_json::from_str(&stdout(&out))?;
    assert_valid_epcis(&all)?;
    assert_eq!(without_creation(all), without_creation(expected.epcis_all));
    let out_file = data_dir.join("epcis.json");
    let out = uns(&[
        "genealogy",
        "export",
        "--epcis",
        "--file",
        store.to_str().context("utf-8")?,
        "--from",
        "2026-03-04T06:10:00Z",
        "--to",
        "2026-03-04T06:40:00Z",
        "--out",
        out_file.to_str().context("utf-8")?,
    ])
    .await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let window: Value = serde_json::from_str(&std::fs::read_to_string(&out_file)?)?;
    assert_eq!(
        without_creation(window.clone()),
        without_creation(expected.epcis_minutes_10_to_40)
    );
    // wo-1 (10), the split (20), wo-2 (30); not the receives before, not wo-3 at 40.
    assert_eq!(event_ids(&window).len(), 3, "{window:#}");
    let out = uns(&[
        "genealogy",
        "export",
        "--epcis",
        "--data-dir",
        data_arg,
        "--from",
        "monday",
    ])
    .await?;
    assert!(!out.status.success() && stderr(&out).contains("--from"));
    let out = uns(&["genealogy", "export", "--data-dir", data_arg]).await?;
    assert!(!out.status.success(), "no format is a usage error");

    // --replay: the lots and indexes beside the chain are what it says ...
    let out = uns(&["genealogy", "verify", "--data-dir", data_arg, "--replay"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("derived state intact"),
        "{}",
        stdout(&out)
    );
    // ... until a lot is edited in the file: the chain alone still checks out, the replay
    // names the lot.
    let original = edit_lot_qty(&store, "bread-2", 460.0)?;
    let out = uns(&["genealogy", "verify", "--data-dir", data_arg]).await?;
    assert!(out.status.success(), "the chain itself is intact");
    let out = uns(&["genealogy", "verify", "--data-dir", data_arg, "--replay"]).await?;
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains(
            "derived state altered: table genealogy.lots_v1, row bread-2: the file holds"
        ),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("row bread-2"), "{}", stderr(&out));
    restore_lot(&store, "bread-2", &original)?;

    // Alter record 5 behind the service's back: verify names exactly it, and fails.
    tamper(&store, 5)?;
    let out = uns(&["genealogy", "verify", "--data-dir", data_arg]).await?;
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("genealogy chain altered at record 5: its content hashes to"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("the first bad record is 5"),
        "{}",
        stderr(&out)
    );
    let out = uns(&[
        "genealogy",
        "verify",
        "--file",
        store.to_str().context("utf-8")?,
        "--json",
    ])
    .await?;
    assert!(!out.status.success());
    let report: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_bad"]["seq"], 5);
    assert_eq!(report["records_checked"], 4);

    // The restarted service says the same over HTTP.
    let up = Up::start(data_dir).await?;
    let out = uns(&["genealogy", "verify", "--url", &up.url]).await?;
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("altered at record 5"),
        "{}",
        stdout(&out)
    );
    up.stop().await?;

    // A data directory without a store: said so, and nothing is created.
    let empty = tempfile::tempdir()?;
    let out = uns(&[
        "genealogy",
        "verify",
        "--data-dir",
        empty.path().to_str().context("utf-8")?,
    ])
    .await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no genealogy store at"),
        "{}",
        stderr(&out)
    );
    assert!(!empty.path().join("genealogy").exists());
    Ok(())
}
