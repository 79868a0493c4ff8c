//! Runs the embedded broker until Ctrl-C, for conformance suites and manual tests.
//!
//! ```text
//! cargo run -p uns-broker --example serve -- [--listen 127.0.0.1:1883] [--ws 127.0.0.1:8083|none]
//!     [--data-dir DIR] [--config broker.toml]
//! ```
//! Prints `mqtt=<addr>` (and `ws=<addr>`) once listening.

use std::io::Write;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = uns_broker::BrokerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" => {
                let text =
                    std::fs::read_to_string(&value).with_context(|| format!("reading {value}"))?;
                config = toml::from_str(&text).with_context(|| format!("parsing {value}"))?;
            }
            "--listen" => config.listen = value.parse().context("--listen")?,
            "--ws" if value == "none" => config.ws_listen = None,
            "--ws" => config.ws_listen = Some(value.parse().context("--ws")?),
            "--data-dir" => config.data_dir = value.into(),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let broker = uns_broker::start(config).await.context("starting broker")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "mqtt={}", broker.mqtt_addr())?;
    if let Some(ws) = broker.ws_addr() {
        writeln!(out, "ws={ws}")?;
    }
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    broker.shutdown().await.context("stopping broker")?;
    Ok(())
}
