//! The benchmark report: figures for both brokers, their ratio, and the machine they ran on.

use std::fmt::Write as _;
use std::time::Duration;

use crate::scenarios::{Flow, PAYLOAD_BYTES};
use crate::{BenchOptions, BrokerUnderTest};

/// The client both brokers were measured with, for the report.
const CLIENT: &str =
    "built-in minimal MQTT 3.1.1 client over tokio TCP (same code for both brokers)";

/// Which direction of a figure is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput: more is better.
    Higher,
    /// Latency and memory: less is better.
    Lower,
}

/// One measured figure for both brokers.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What was measured, e.g. `1→1 QoS 0 throughput`.
    pub name: String,
    /// Unit of both values, e.g. `msg/s`.
    pub unit: &'static str,
    /// Whether a higher or a lower value is better.
    pub better: Better,
    /// Our broker's value.
    pub ours: f64,
    /// The baseline's value.
    pub baseline: f64,
}

impl Figure {
    /// `ours / baseline`; above 1.0 is good when [`Better::Higher`], bad when [`Better::Lower`].
    pub fn ratio(&self) -> f64 {
        self.ours / self.baseline
    }
}

/// The machine the run happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// Logical CPUs available to the bench.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`, or `unknown`.
    pub cpu_model: String,
    /// Kernel release from `/proc/sys/kernel/osrelease`, or `unknown`.
    pub kernel: String,
}

impl MachineInfo {
    /// `2 CPUs (Intel Xeon …), Linux 6.1…`, as every report's "Machine" line starts.
    pub fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), Linux {}",
            self.cpus, self.cpu_model, self.kernel
        )
    }

    /// Reads the current machine's facts; missing ones become `unknown`.
    pub fn current() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
            |_| "unknown".to_owned(),
            |release| release.trim().to_owned(),
        );
        Self {
            cpus,
            cpu_model,
            kernel,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// When the run finished, UTC, `YYYY-MM-DD HH:MM:SS UTC`.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// Our broker's name.
    pub ours: String,
    /// The baseline's name.
    pub baseline: String,
    /// How each broker was started (with placeholders).
    pub commands: [String; 2],
    /// The files each broker got in its data directory, one line each: `name: line; line`
    /// (comments and blank lines left out).
    pub files: [Vec<String>; 2],
    /// The options of the run.
    pub options: BenchOptions,
    /// The client both brokers were measured with.
    pub client: String,
    /// The figures, in table order.
    pub figures: Vec<Figure>,
    /// Remarks a reader needs to trust the figures, e.g. messages a broker dropped.
    pub notes: Vec<String>,
}

impl BenchReport {
    /// The report as markdown: a context list, then `figure | ours | baseline | ratio | better`.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let (ours, base) = (&self.ours, &self.baseline);
        let opts = &self.options;
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(md, "## Broker benchmark: {ours} vs {base}\n");
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(md, "- Machine: {}", self.machine.describe());
        let _ = writeln!(
            md,
            "- Client: {}, {PAYLOAD_BYTES}-byte payloads",
            self.client
        );
        let _ = writeln!(
            md,
            "- Each timed figure: {} per broker, in {} slices interleaved {ours}, {base}, {base}, {ours}, ...",
            format_duration(opts.duration),
            crate::slice_count(opts.duration)
        );
        for (name, command, files) in [
            (ours, &self.commands[0], &self.files[0]),
            (base, &self.commands[1], &self.files[1]),
        ] {
            let _ = writeln!(md, "- {name}: `{command}`");
            for file in files {
                let _ = writeln!(md, "  - {file}");
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| figure | {ours} | {base} | ratio {ours}/{base} | better |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---|");
        for figure in &self.figures {
            let better = match figure.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            };
            let _ = writeln!(
                md,
                "| {} ({}) | {} | {} | {:.2} | {better} |",
                figure.name,
                figure.unit,
                format_value(figure.ours),
                format_value(figure.baseline),
                figure.ratio()
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "- Ratio above 1 is good where higher is better, below 1 where lower is better; \
             on a shared machine treat ±10% as noise, and max latency is a single sample"
        );
        if !self.notes.is_empty() {
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
        md
    }
}

/// Assembles the report from the raw measurements of [`crate::run_broker_bench`].
pub(crate) fn build(
    ours: &BrokerUnderTest,
    baseline: &BrokerUnderTest,
    opts: &BenchOptions,
    flows: &[(&'static str, Flow, Flow)],
    sorted_latencies: [&[u64]; 2],
    rss: [(u64, u64); 2],
) -> BenchReport {
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let figure = |name: String, unit, better, values: [f64; 2]| Figure {
        name,
        unit,
        better,
        ours: values[0],
        baseline: values[1],
    };
    for (name, ours_flow, baseline_flow) in flows {
        let name = if *name == crate::FAN_IN {
            format!("{}→1 QoS 0 fan-in throughput", opts.publishers)
        } else {
            (*name).to_owned()
        };
        for (broker, flow) in [(&ours.name, ours_flow), (&baseline.name, baseline_flow)] {
            if flow.lost() > 0 {
                notes.push(format!(
                    "{name}: {broker} delivered {} of {} messages ({} lost)",
                    flow.received,
                    flow.sent,
                    flow.lost()
                ));
            }
        }
        figures.push(figure(
            name,
            "msg/s",
            Better::Higher,
            [ours_flow.rate(), baseline_flow.rate()],
        ));
    }
    for (label, quantile) in [("p50", 0.50), ("p99", 0.99), ("max", 1.0)] {
        figures.push(figure(
            format!("QoS 0 latency {label} at {} msg/s", opts.rate),
            "µs",
            Better::Lower,
            sorted_latencies.map(|samples| percentile(samples, quantile) as f64 / 1_000.0),
        ));
    }
    let kib = |bytes: u64| bytes as f64 / 1024.0;
    figures.push(figure(
        "RSS idle".to_owned(),
        "KiB",
        Better::Lower,
        rss.map(|(idle, _)| kib(idle)),
    ));
    figures.push(figure(
        format!("RSS with {} idle connections", opts.connections_for_rss),
        "KiB",
        Better::Lower,
        rss.map(|(_, loaded)| kib(loaded)),
    ));
    figures.push(figure(
        "RSS per connection".to_owned(),
        "KiB",
        Better::Lower,
        rss.map(|(idle, loaded)| (kib(loaded) - kib(idle)) / opts.connections_for_rss as f64),
    ));
    BenchReport {
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        machine: MachineInfo::current(),
        ours: ours.name.clone(),
        baseline: baseline.name.clone(),
        commands: [ours.command_line(), baseline.command_line()],
        files: [ours, baseline].map(|broker| {
            broker
                .files
                .iter()
                .map(|(name, contents)| summarize_file(name, contents))
                .collect()
        }),
        options: opts.clone(),
        client: CLIENT.to_owned(),
        figures,
        notes,
    }
}

/// `name: line; line` with comments and blank lines left out.
fn summarize_file(name: &str, contents: &str) -> String {
    let lines: Vec<&str> = contents
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    format!("`{name}`: `{}`", lines.join("; "))
}

/// Nearest-rank percentile of sorted samples; `quantile` 1.0 is the maximum. Empty gives 0.
pub(crate) fn percentile(sorted: &[u64], quantile: f64) -> u64 {
    let Some(last_idx) = sorted.len().checked_sub(1) else {
        return 0;
    };
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(last_idx)]
}

/// Three significant-ish digits without noise: `123456`, `12.3`, `1.23`.
fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn format_duration(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        let check = |sorted: &[u64], quantile: f64, expected: u64| {
            assert_eq!(
                percentile(sorted, quantile),
                expected,
                "q{quantile} of {} samples",
                sorted.len()
            );
        };
        check(&samples, 0.50, 50);
        check(&samples, 0.99, 99);
        check(&samples, 1.0, 100);
        check(&samples, 0.0, 1);
        check(&[7], 0.99, 7);
        check(&[], 0.5, 0);
        check(&[1, 2, 3], 0.5, 2);
    }

    #[test]
    fn config_files_are_summarized_on_one_line() {
        let check = |contents: &str, expected: &str| {
            assert_eq!(summarize_file("b.conf", contents), expected)
        };
        check(
            "# comment\nlistener {port}\n\n  allow_anonymous true\n",
            "`b.conf`: `listener {port}; allow_anonymous true`",
        );
        check("", "`b.conf`: ``");
    }

    #[test]
    fn values_are_formatted_by_magnitude() {
        let check = |value: f64, expected: &str| assert_eq!(format_value(value), expected);
        check(123_456.4, "123456");
        check(100.0, "100");
        check(12.34, "12.3");
        check(1.234, "1.23");
        check(-0.5, "-0.50");
    }
}
