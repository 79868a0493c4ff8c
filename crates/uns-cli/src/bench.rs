//! `uns bench broker`: our broker (this very binary, `uns broker`) against Debian's mosquitto.

#![allow(clippy::print_stdout, reason = "the report is the command's output")]

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use uns_bench::{BenchOptions, BrokerUnderTest};

pub(crate) async fn broker(duration: Duration, out: Option<&Path>) -> anyhow::Result<()> {
    let ours = std::env::current_exe().context("finding the uns binary")?;
    let baseline =
        uns_bench::mosquitto().context("the baseline broker (apt-get install mosquitto)")?;
    let options = BenchOptions {
        duration,
        ..BenchOptions::default()
    };
    let report = uns_bench::run_broker_bench(BrokerUnderTest::uns(ours), baseline, &options)
        .await
        .context("running the broker benchmark")?;
    let markdown = report.to_markdown();
    print!("{markdown}");
    if let Some(path) = out {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
