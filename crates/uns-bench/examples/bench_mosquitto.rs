//! Benchmarks mosquitto against a second mosquitto and prints the markdown report.
//!
//! Both sides are the same program, so every ratio should be close to 1.0: that shows the
//! harness treats the two brokers alike. Usage:
//! `cargo run -p uns-bench --release --example bench_mosquitto -- [seconds]`.

use std::time::Duration;

use uns_bench::{BenchOptions, mosquitto, run_broker_bench};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| anyhow::anyhow!("seconds must be a number, got {arg:?}"))?,
        None => 4.0,
    };
    let mut first = mosquitto()?;
    first.name = "mosquitto-a".to_owned();
    let opts = BenchOptions {
        duration: Duration::from_secs_f64(seconds),
        ..BenchOptions::default()
    };
    let report = run_broker_bench(first, mosquitto()?, &opts).await?;
    #[expect(clippy::print_stdout, reason = "the report is this example's output")]
    {
        println!("{}", report.to_markdown());
    }
    Ok(())
}
