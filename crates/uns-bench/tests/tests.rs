//! End-to-end checks of the harnesses: a very short mosquitto-vs-mosquitto run, and a tiny store run.
//!
//! Asserts structure only (every figure measured, positive, rendered), never timings: timings
//! on a shared machine prove nothing. Needs Debian's `mosquitto` package; without it the test
//! says so and passes, because the bench is the only user of that package.

use std::time::Duration;

use uns_bench::{BenchError, BenchOptions, Better, BrokerUnderTest, mosquitto, run_broker_bench};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_against_mosquitto_measures_every_figure() {
    // mosquitto is a peer the project's CI installs (.ci/run); a machine without it fails here
    // with the fix in the message rather than passing a test that measured nothing.
    let baseline = match mosquitto() {
        Ok(baseline) => baseline,
        Err(BenchError::BaselineMissing { path }) => {
            panic!("{} is missing: apt-get install mosquitto", path.display())
        }
        Err(error) => panic!("unexpected error: {error}"),
    };
    let mut ours = baseline.clone();
    ours.name = "mosquitto-a".to_owned();
    let opts = BenchOptions {
        duration: Duration::from_secs(1),
        rate: 2_000,
        publishers: 10,
        connections_for_rss: 200,
    };
    let report = run_broker_bench(ours, baseline, &opts).await.unwrap();

    let names: Vec<&str> = report
        .figures
        .iter()
        .map(|figure| figure.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "1→1 QoS 0 throughput",
            "1→1 QoS 1 throughput",
            "10→1 QoS 0 fan-in throughput",
            "QoS 0 latency p50 at 2000 msg/s",
            "QoS 0 latency p99 at 2000 msg/s",
            "QoS 0 latency max at 2000 msg/s",
            "RSS idle",
            "RSS with 200 idle connections",
            "RSS per connection",
        ]
    );
    for figure in &report.figures {
        assert!(
            figure.ours > 0.0 && figure.baseline > 0.0 && figure.ratio().is_finite(),
            "{figure:?}"
        );
        let expected = if figure.unit == "msg/s" {
            Better::Higher
        } else {
            Better::Lower
        };
        assert_eq!(figure.better, expected, "{figure:?}");
    }
    let latency = |label: &str| {
        let figure = report
            .figures
            .iter()
            .find(|figure| figure.name.contains(label))
            .unwrap();
        [figure.ours, figure.baseline]
    };
    let [p50, p99, max] = [latency("p50"), latency("p99"), latency("max")];
    for side in 0..2 {
        assert!(
            p50[side] <= p99[side] && p99[side] <= max[side],
            "{p50:?} {p99:?} {max:?}"
        );
    }

    let markdown = report.to_markdown();
    assert!(
        markdown.contains(
            "| figure | mosquitto-a | mosquitto | ratio mosquitto-a/mosquitto | better |"
        )
    );
    assert_eq!(
        markdown
            .lines()
            .filter(|line| line.starts_with("| "))
            .count(),
        1 + report.figures.len()
    );
    assert!(
        markdown.contains(&format!("Linux {}", report.machine.kernel)),
        "{markdown}"
    );
}

/// A broker that cannot start is reported with its name and cause, not as a hang.
#[tokio::test]
async fn broken_brokers_fail_fast_with_their_name() {
    let broker = |name: &str, program: &str, args: &[&str]| BrokerUnderTest {
        name: name.to_owned(),
        program: program.into(),
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        files: vec![("note.txt".to_owned(), "port {port}".to_owned())],
    };
    let opts = BenchOptions::default();

    let missing = broker("ghost", "/nonexistent/broker", &[]);
    let error = run_broker_bench(missing.clone(), missing, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, BenchError::Spawn { broker, .. } if broker == "ghost"),
        "{error:?}"
    );

    // `sh -c` prints the substituted placeholders and exits: the error quotes that output.
    let exits = broker(
        "quitter",
        "/bin/sh",
        &["-c", "cat {data_dir}/note.txt; exit 3", "sh"],
    );
    let error = run_broker_bench(exits.clone(), exits, &opts)
        .await
        .unwrap_err();
    match &error {
        BenchError::BrokerExited {
            broker,
            status,
            log,
        } => {
            assert_eq!(broker, "quitter");
            assert!(status.contains('3'), "{status}");
            let port: u16 = log
                .strip_prefix("port ")
                .and_then(|port| port.parse().ok())
                .unwrap();
            assert!(port > 0, "{log}");
        }
        other => panic!("expected BrokerExited, got {other:?}"),
    }

    let zero = BenchOptions {
        publishers: 0,
        ..BenchOptions::default()
    };
    let error = run_broker_bench(
        broker("a", "/bin/true", &[]),
        broker("b", "/bin/true", &[]),
        &zero,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, BenchError::InvalidOptions(_)), "{error:?}");
}

#[tokio::test]
async fn the_store_bench_measures_every_figure_on_a_real_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = uns_bench::store::StoreBenchOptions {
        dir: dir.path().to_owned(),
        commits: 20,
        // More than one batch of 100, with a partial last batch.
        outbox_entries: 150,
    };
    let report = uns_bench::store::run(&options).await?;
    anyhow::ensure!(
        0.0 < report.commit_p50_us
            && report.commit_p50_us <= report.commit_p99_us
            && report.commit_p99_us <= report.commit_max_us,
        "{report:?}"
    );
    anyhow::ensure!(
        report.commits_per_s > 0.0 && report.outbox_pairs_per_s > 0.0,
        "{report:?}"
    );
    anyhow::ensure!(report.outbox_batched_pairs_per_s > 0.0, "{report:?}");
    let markdown = report.to_markdown();
    for line in [
        "commit latency p50",
        "commit latency p99",
        "outbox enqueue+ack, 100 per commit",
    ] {
        anyhow::ensure!(markdown.contains(line), "{line} missing from\n{markdown}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_genealogy_bench_generates_the_plant_and_measures_every_figure() -> anyhow::Result<()> {
    use uns_bench::genealogy::{GenealogyBenchOptions, LOTS_PER_DAY};
    use uns_genealogy::Direction;
    let dir = tempfile::tempdir()?;
    let options = GenealogyBenchOptions {
        dir: dir.path().to_owned(),
        // Three days: the rework reaches back two days.
        lots: 3 * LOTS_PER_DAY,
        batch: 700,
        durable_events: 5,
        traces: 20,
        seed: 3,
    };
    let report = uns_bench::genealogy::run(&options).await?;
    anyhow::ensure!(report.days == 3, "{report:?}");
    // Every generated lot is there (counted before the durable figure adds its own).
    anyhow::ensure!(
        report.n_lots == (3 * LOTS_PER_DAY) as u64,
        "{} lots",
        report.n_lots
    );
    anyhow::ensure!(report.n_events == 3 * 2_600, "{} events", report.n_events);
    let edges_per_lot = report.n_edges as f64 / report.n_lots as f64;
    anyhow::ensure!(
        (2.7..3.3).contains(&edges_per_lot),
        "{edges_per_lot} edges per lot"
    );
    anyhow::ensure!(report.traces.len() == 4, "{report:?}");
    for figure in &report.traces {
        anyhow::ensure!(
            0.0 < figure.p50_us && figure.p50_us <= figure.p99_us && figure.p99_us <= figure.max_us,
            "{figure:?}"
        );
        anyhow::ensure!(figure.mean_lots >= 2.0, "{figure:?}");
    }
    // Deeper answers hold at least as many lots, and the rework makes depth 5 cut some.
    let backward: Vec<_> = report
        .traces
        .iter()
        .filter(|f| f.direction == Direction::Backward)
        .collect();
    anyhow::ensure!(backward[0].depth == 5 && backward[1].depth == 20);
    anyhow::ensure!(
        backward[1].mean_lots >= backward[0].mean_lots,
        "{backward:?}"
    );
    anyhow::ensure!(backward[0].truncated_share > 0.0, "{backward:?}");
    anyhow::ensure!(report.bulk_events_per_s > 0.0 && report.durable_events_per_s > 0.0);
    anyhow::ensure!(report.store_bytes > 0 && report.verify_secs > 0.0);
    anyhow::ensure!(0 < report.copy_bytes && report.copy_bytes <= report.store_bytes);
    let markdown = report.to_markdown();
    for line in [
        "bulk ingest",
        "durable ingest",
        "per million events",
        "backward from a pallet",
    ] {
        anyhow::ensure!(markdown.contains(line), "{line} missing from\n{markdown}");
    }
    Ok(())
}

/// A tiny OEE run: every figure measured and rendered (the engine's inputs are the generator's,
/// counted exactly: per asset a `_meta`, a first `_state`, then per 10 s tick a count and, at two of
/// every 30 ticks, a state change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oee_bench_measures_every_figure() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = uns_bench::oee::OeeBenchOptions {
        assets: 10,
        hours: 0.25, // 90 ticks
        latency_samples: 2,
        service_inputs: 50,
        dir: dir.path().to_owned(),
        compact: true,
    };
    let report = uns_bench::oee::run(&options).await?;
    anyhow::ensure!(
        report.engine_inputs == 10 * (2 + 90 + 90 * 2 / 30),
        "{report:?}"
    );
    anyhow::ensure!(
        report.engine_inputs_per_s > 0.0 && report.current_all_ms > 0.0,
        "{report:?}"
    );
    // Ten cells, their site.
    anyhow::ensure!(report.scopes == 11, "{report:?}");
    anyhow::ensure!(
        0.0 < report.latency_min_ms
            && report.latency_min_ms <= report.latency_p50_ms
            && report.latency_p50_ms <= report.latency_max_ms,
        "{report:?}"
    );
    anyhow::ensure!(report.service_inputs_per_s > 0.0, "{report:?}");
    // Per asset at least its `_meta` rate and first state are held; the snapshot holds them all.
    anyhow::ensure!(
        report.entries_per_asset >= 2.0 && report.snapshot_bytes > 0 && report.restore_ms >= 0.0,
        "{report:?}"
    );
    let markdown = report.to_markdown();
    for line in [
        "engine inputs per second",
        "memory per tracked asset",
        "entries held per asset",
        "restart from a snapshot",
        "`_state` → `_oee/current/hour`",
    ] {
        anyhow::ensure!(markdown.contains(line), "{line} missing from\n{markdown}");
    }
    Ok(())
}
