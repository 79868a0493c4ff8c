//! `uns bench …`: `broker` (our broker, this very binary as `uns broker`, against Debian's
//! mosquitto), `bridge-decode` (the SCADA bridge's decode + map path on one thread) and `e2e`
//! (`uns sim` → broker → bridge → UNS as child processes of this binary), `store` (uns-store
//! commit latency and outbox throughput), `erp` (orders in and confirmations out through `uns
//! erp-bridge`), `soak` (`uns up` under churn, RSS and descriptors over time), `genealogy` (the genealogy ledger on a generated plant).

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::io::Write;

use anyhow::Context;
use uns_bench::bridge_decode::DecodeOptions;
use uns_bench::e2e::E2eOptions;
use uns_bench::{BenchOptions, BrokerUnderTest};

use crate::cli::BenchCommand;

/// Runs one benchmark and prints its Markdown report.
pub(crate) async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Broker { duration, out } => broker(duration, out.as_deref()).await,
        BenchCommand::BridgeDecode {
            nodes,
            devices_per_node,
            metrics_per_device,
            duration,
            out,
        } => {
            let options = DecodeOptions {
                nodes,
                devices_per_node,
                metrics_per_device,
                duration,
            };
            // One dedicated thread: the figure is per core.
            let report = tokio::task::spawn_blocking(move || {
                uns_bench::bridge_decode::run_bridge_decode(&options)
            })
            .await
            .context("the decode benchmark thread")?
            .context("running the bridge decode benchmark")?;
            emit(&report.to_markdown(), out.as_deref())
        }
        BenchCommand::E2e {
            nodes,
            devices_per_node,
            metrics_per_device,
            rates,
            warmup,
            measure,
            broker_max_inflight,
            broker,
            out,
        } => {
            let program = std::env::current_exe().context("finding the uns binary")?;
            let baseline =
                (broker == "mosquitto").then(|| PathBuf::from(uns_bench::MOSQUITTO_PATH));
            let options = E2eOptions {
                nodes,
                devices_per_node,
                metrics_per_device,
                rates_hz: rates,
                warmup,
                measure,
                broker_max_inflight,
                baseline,
                ..E2eOptions::new(program)
            };
            let report = uns_bench::e2e::run_e2e(&options)
                .await
                .context("running the end-to-end benchmark")?;
            emit(&report.to_markdown(), out.as_deref())
        }
        BenchCommand::Erp {
            orders,
            requirements,
            confirmations,
            backlog,
            out,
        } => {
            let program = std::env::current_exe().context("finding the uns binary")?;
            let options = uns_bench::erp::ErpBenchOptions {
                orders,
                requirements,
                confirmations,
                backlog,
                ..uns_bench::erp::ErpBenchOptions::new(program)
            };
            let report = uns_bench::erp::run(&options)
                .await
                .context("running the ERP benchmark")?;
            emit(&report.to_markdown(), out.as_deref())
        }
        BenchCommand::Genealogy {
            dir,
            lots,
            batch,
            durable_events,
            traces,
            seed,
            out,
        } => {
            let options = uns_bench::genealogy::GenealogyBenchOptions {
                dir,
                lots,
                batch,
                durable_events,
                traces,
                seed,
            };
            let report = uns_bench::genealogy::run(&options)
                .await
                .context("running the genealogy benchmark")?;
            emit(&report.to_markdown(), out.as_deref())
        }
        BenchCommand::Soak {
            subcommand,
            duration,
            interval,
            warmup,
            console_default_history,
            program,
            out,
        } => {
            let program = match program {
                Some(program) => program,
                None => std::env::current_exe().context("finding the uns binary")?,
            };
            let options = uns_bench::soak::SoakOptions {
                subcommand,
                duration,
                interval,
                warmup,
                console_history_values: (!console_default_history)
                    .then_some(uns_bench::soak::CONSOLE_HISTORY_VALUES),
                ..uns_bench::soak::SoakOptions::new(program)
            };
            let report = uns_bench::soak::run(&options)
                .await
                .context("running the soak")?;
            emit(&report.to_markdown(), out.as_deref())?;
            anyhow::ensure!(
                report.flat,
                "RSS or descriptors did not stay flat after the warm-up (see the report)"
            );
            Ok(())
        }
        BenchCommand::Store {
            dir,
            commits,
            outbox_entries,
            out,
        } => {
            let options = uns_bench::store::StoreBenchOptions {
                dir,
                commits,
                outbox_entries,
            };
            let report = uns_bench::store::run(&options)
                .await
                .context("running the store benchmark")?;
            emit(&report.to_markdown(), out.as_deref())
        }
        BenchCommand::Oee(args) => crate::oee::bench(args).await,
    }
}

async fn broker(duration: Duration, out: Option<&Path>) -> anyhow::Result<()> {
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
    emit(&report.to_markdown(), out)
}

fn emit(markdown: &str, out: Option<&Path>) -> anyhow::Result<()> {
    write!(std::io::stdout(), "{markdown}")?;
    if let Some(path) = out {
        std::fs::write(path, markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
