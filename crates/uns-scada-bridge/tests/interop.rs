//! Interop with Sparkplug edge nodes written with Python libraries we did not write (PyPI
//! `pysparkplug` and `mqtt-spb-wrapper`, each in its own venv under `target/peers/`): the bridge
//! produces the expected `_tag` JSON (types and signs right), and `kill -9` of the peer turns its tags
//! stale within 1.5× its MQTT keepalive (the broker fires the NDEATH/DDEATH Will when the socket closes).

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uns_scada_bridge::BridgeConfig;

use crate::support::{TIMEOUT, TestBridge};

/// Spawns a peer script that prints `ready` once its births and data are out, and stays alive.
async fn spawn_peer(
    venv: &str,
    requirements: &str,
    script: &str,
    args: &[String],
) -> anyhow::Result<Child> {
    let python = uns_e2e::python_peer(venv, requirements)?;
    let script = uns_e2e::workspace_dir().join("tests/peers").join(script);
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", script.display()))?;
    let stdout = child.stdout.take().context("peer stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "ready" {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .context("peer not ready in time")??;
    anyhow::ensure!(
        ready,
        "{script:?} exited before `ready`",
        script = script.display()
    );
    Ok(child)
}

/// The DATA values both peers publish after their births, by tag topic suffix.
fn expected_data(prefix: &str) -> Vec<(String, serde_json::Value)> {
    [
        ("level", json!(-7)),
        ("counter", json!(4_000_000_001_u64)),
        ("temperature", json!(72.5)),
        ("pressure", json!(-0.5)),
        ("running", json!(false)),
        ("recipe", json!("B-2")),
        ("energy", json!(-9_000_000_001_i64)),
    ]
    .into_iter()
    .map(|(name, value)| (format!("{prefix}{name}"), value))
    .collect()
}

async fn check_peer(
    venv: &str,
    requirements: &str,
    script: &str,
    edge: &str,
    tag_prefix: &str,
    keepalive: Duration,
) -> anyhow::Result<()> {
    let mut uns = TestBridge::start(BridgeConfig::default()).await?;
    let args = vec![
        uns.addr.ip().to_string(),
        uns.addr.port().to_string(),
        "acme-berlin".to_owned(),
        edge.to_owned(),
        keepalive.as_secs().to_string(),
    ];
    let mut peer = spawn_peer(venv, requirements, script, &args).await?;
    let cell = format!("uns/v1/acme/berlin/packaging/{edge}/filler/_tag/{tag_prefix}");
    for (suffix, value) in expected_data("") {
        let topic = format!("{cell}{suffix}");
        let tag = uns
            .wait_json(&topic, |tag| tag["value"] == value)
            .await
            .with_context(|| format!("{topic} = {value}; seen: {}", uns.seen_summary()))?;
        assert_eq!(tag["quality"], "good", "{topic}: {tag}");
        assert_eq!(tag["src"]["device"], "filler", "{topic}: {tag}");
    }
    // kill -9: no DISCONNECT, the broker publishes the Will; the tags must turn stale in time.
    peer.start_kill()?;
    let killed = tokio::time::Instant::now();
    let _ = peer.wait().await;
    let deadline = keepalive.mul_f64(1.5);
    let level = format!("{cell}level");
    uns.wait_json_within(&level, deadline, |tag| {
        tag["quality"] == "stale" && tag["value"] == json!(-7)
    })
    .await
    .with_context(|| format!("{level} stale within 1.5 x keepalive ({deadline:?})"))?;
    eprintln!(
        "{venv}: stale {:?} after kill -9 (keepalive {keepalive:?})",
        killed.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn pysparkplug_edge_node_tags_and_stale_on_kill() -> anyhow::Result<()> {
    check_peer(
        "pysparkplug",
        "requirements-pysparkplug.txt",
        "pysparkplug_edge.py",
        "line-1",
        "",
        Duration::from_secs(2),
    )
    .await
}

#[tokio::test]
async fn mqtt_spb_wrapper_edge_node_tags_and_stale_on_kill() -> anyhow::Result<()> {
    // The library prefixes data metrics with `DATA/` and connects with paho's default keepalive, 60 s.
    check_peer(
        "spb-wrapper",
        "requirements-spb-wrapper.txt",
        "spb_wrapper_edge.py",
        "line-2",
        "data/",
        Duration::from_secs(60),
    )
    .await
}
