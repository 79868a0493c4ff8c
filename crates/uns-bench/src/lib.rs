//! Broker benchmark: our broker against Debian's mosquitto, in the same run, as ratios.
//!
//! [`run_broker_bench`] starts both brokers as child processes on spare 127.0.0.1 ports, waits
//! until each completes an MQTT handshake, measures the same figures on both with the same
//! client, and returns a [`BenchReport`] whose [`BenchReport::to_markdown`] is a table of
//! `figure | ours | mosquitto | ratio`. Shared machines are noisy, so only the ratio means
//! anything. To expose both brokers to the same load from other processes, every timed figure
//! is cut into slices of about a second, run in the order ours, baseline, baseline, ours, ours,
//! baseline, ... and summed per broker.
//!
//! # Figures
//!
//! - 1→1 QoS 0 and QoS 1 throughput: one publisher floods 64-byte messages, one subscriber
//!   counts what it receives; messages per second from the first publish to the last receipt.
//! - N→1 QoS 0 fan-in throughput: [`BenchOptions::publishers`] publishers, one subscriber.
//! - QoS 0 latency p50/p99/max at a paced [`BenchOptions::rate`]: the send time travels in the
//!   payload and is read against the same in-process monotonic clock on receipt.
//! - Broker RSS idle, with [`BenchOptions::connections_for_rss`] idle sessions, and per session.
//!
//! # Layout
//!
//! - `mqtt`: a minimal MQTT 3.1.1 client over tokio TCP (not `rumqttc`: the client must not be
//!   the bottleneck, and it is byte-for-byte the same for both brokers).
//! - `process`: spawning, readiness, RSS; children are killed on drop.
//! - `scenarios`: the measurements.
//! - `report`: [`BenchReport`] and its markdown.

#![deny(missing_docs)]

pub mod bridge_decode;
pub mod e2e;
pub mod erp;
pub mod genealogy;
mod mqtt;
pub mod oee;
mod process;
mod report;
mod scenarios;
pub mod soak;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use report::{BenchReport, Better, Figure, MachineInfo};

use process::RunningBroker;
use scenarios::Flow;

/// Where Debian's `mosquitto` package installs the broker.
pub const MOSQUITTO_PATH: &str = "/usr/sbin/mosquitto";

/// How the bench starts one broker.
///
/// In [`args`](Self::args) and in the contents of [`files`](Self::files), `{port}` becomes the
/// MQTT port the broker must listen on (127.0.0.1) and `{data_dir}` a fresh temporary
/// directory that is removed after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUnderTest {
    /// Name in the report, e.g. `uns` or `mosquitto`.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Command-line arguments, with placeholders.
    pub args: Vec<String>,
    /// Files written into `{data_dir}` before the broker starts: `(file name, contents)`,
    /// with placeholders. Lets a broker that reads its port from a config file be configured
    /// per run.
    pub files: Vec<(String, String)>,
}

impl BrokerUnderTest {
    /// Our broker: `<program> broker --listen 127.0.0.1:{port} --ws-listen none --http-listen
    /// 127.0.0.1:0 --data-dir {data_dir}`, where `program` is the `uns` binary. The HTTP endpoint
    /// gets a port of its own choosing: its default (8080) may be taken on a shared machine.
    pub fn uns(program: impl Into<PathBuf>) -> Self {
        Self {
            name: "uns".to_owned(),
            program: program.into(),
            args: [
                "broker",
                "--listen",
                "127.0.0.1:{port}",
                "--ws-listen",
                "none",
                "--http-listen",
                "127.0.0.1:0",
                "--data-dir",
                "{data_dir}",
            ]
            .map(str::to_owned)
            .to_vec(),
            files: Vec::new(),
        }
    }

    /// The command line with placeholders, for the report.
    pub fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in &self.args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }
}

/// The mosquitto baseline from Debian's package at [`MOSQUITTO_PATH`].
pub fn mosquitto() -> Result<BrokerUnderTest, BenchError> {
    mosquitto_at(Path::new(MOSQUITTO_PATH))
}

/// A mosquitto baseline from `program`, configured through a per-run config file: listener on
/// 127.0.0.1:{port}, anonymous access, no persistence, a queue limit above anything the bench
/// keeps in flight (so mosquitto never drops for lack of queue), and `set_tcp_nodelay true`
/// as our broker does: with Nagle's algorithm (mosquitto's default) p99 latency at 5 000 msg/s
/// is ~25 ms instead of ~0.25 ms, while flood throughput is up to ~1.8x higher, so comparing
/// a Nagle mosquitto with a no-delay broker would measure the socket option, not the broker.
pub fn mosquitto_at(program: &Path) -> Result<BrokerUnderTest, BenchError> {
    if !program.is_file() {
        return Err(BenchError::BaselineMissing {
            path: program.to_path_buf(),
        });
    }
    let config = "\
# Written by uns-bench for one benchmark run.
listener {port} 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
connection_messages false
max_queued_messages 1000000
set_tcp_nodelay true
";
    Ok(BrokerUnderTest {
        name: "mosquitto".to_owned(),
        program: program.to_path_buf(),
        args: vec!["-c".to_owned(), "{data_dir}/mosquitto.conf".to_owned()],
        files: vec![("mosquitto.conf".to_owned(), config.to_owned())],
    })
}

/// Knobs of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Time each timed figure runs per broker (in interleaved slices of about a second).
    pub duration: Duration,
    /// Messages per second of the paced latency figure.
    pub rate: u32,
    /// Publishers of the fan-in throughput figure.
    pub publishers: usize,
    /// Idle sessions opened for the RSS-per-connection figure.
    pub connections_for_rss: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            rate: 5_000,
            publishers: 100,
            connections_for_rss: 1_000,
        }
    }
}

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The mosquitto executable is not installed.
    #[error("mosquitto not found at {}: install it with `apt-get install mosquitto`", path.display())]
    BaselineMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An option is out of range.
    #[error("invalid benchmark option: {0}")]
    InvalidOptions(&'static str),
    /// No spare TCP port on 127.0.0.1 could be found.
    #[error("cannot find a spare port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    /// The temporary data directory or a config file in it could not be written.
    #[error("cannot prepare a broker data directory")]
    DataDir(#[source] std::io::Error),
    /// The broker executable could not be started.
    #[error("cannot start {broker} ({})", program.display())]
    Spawn {
        /// Broker name.
        broker: String,
        /// The executable.
        program: PathBuf,
        /// Why spawning failed.
        source: std::io::Error,
    },
    /// The broker exited before it accepted an MQTT session (each start is tried three times).
    #[error(
        "{broker} exited before accepting connections ({status}); its output ends with:\n{log}"
    )]
    BrokerExited {
        /// Broker name.
        broker: String,
        /// Exit status.
        status: String,
        /// The end of the broker's stdout and stderr.
        log: String,
    },
    /// The broker kept running but never completed an MQTT handshake.
    #[error(
        "{broker} did not accept an MQTT session within {waited:?} (last attempt: {last_error}); its output ends with:\n{log}"
    )]
    NotReady {
        /// Broker name.
        broker: String,
        /// How long the bench waited.
        waited: Duration,
        /// Why the last attempt failed.
        last_error: ClientError,
        /// The end of the broker's stdout and stderr.
        log: String,
    },
    /// `/proc/{pid}/status` could not be read or has no `VmRSS`.
    #[error("cannot read the memory use of {broker}: {detail}")]
    Rss {
        /// Broker name.
        broker: String,
        /// What went wrong.
        detail: String,
    },
    /// A measurement failed on the client side (connection, protocol or timeout).
    #[error("{figure} against {broker} failed")]
    Measure {
        /// Broker name.
        broker: String,
        /// The figure being measured.
        figure: &'static str,
        /// What the client saw.
        source: ClientError,
    },
    /// A throughput or latency run delivered no message at all, so it has no figure.
    #[error("{broker} delivered no messages during {figure}")]
    NothingReceived {
        /// Broker name.
        broker: String,
        /// The figure being measured.
        figure: &'static str,
    },
}

/// What went wrong in the bench's MQTT client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket operation failed.
    #[error("{step} failed")]
    Io {
        /// The operation, e.g. `connect` or `write PUBLISH`.
        step: &'static str,
        /// The socket error.
        source: std::io::Error,
    },
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// The broker sent something the client did not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// A client task panicked or was cancelled.
    #[error("client task failed: {0}")]
    Task(String),
}

/// Figure names, shared by measurement errors and the report.
pub(crate) const QOS0: &str = "1→1 QoS 0 throughput";
pub(crate) const QOS1: &str = "1→1 QoS 1 throughput";
pub(crate) const FAN_IN: &str = "N→1 QoS 0 fan-in throughput";
pub(crate) const LATENCY: &str = "paced QoS 0 latency";
pub(crate) const RSS: &str = "RSS with idle connections";
/// Upper bound of [`slice_count`]: beyond it, per-slice setup would eat into the measurement.
const MAX_SLICES: u32 = 20;

/// Runs every figure against `ours` and `baseline` (normally [`mosquitto()`]) and returns the
/// report. Both brokers run as children for the whole call and are killed when it returns.
pub async fn run_broker_bench(
    ours: BrokerUnderTest,
    baseline: BrokerUnderTest,
    opts: &BenchOptions,
) -> Result<BenchReport, BenchError> {
    if opts.duration.is_zero() {
        return Err(BenchError::InvalidOptions("duration must be positive"));
    }
    if opts.rate == 0 || opts.publishers == 0 || opts.connections_for_rss == 0 {
        return Err(BenchError::InvalidOptions(
            "rate, publishers and connections_for_rss must be positive",
        ));
    }
    let (ours_running, baseline_running) =
        tokio::join!(RunningBroker::start(&ours), RunningBroker::start(&baseline));
    let brokers = [ours_running?, baseline_running?];

    // Memory first, while both brokers are fresh.
    let mut rss = Vec::with_capacity(2);
    for broker in &brokers {
        let idle = broker.rss_bytes()?;
        let loaded =
            scenarios::with_idle_connections(broker.addr, "rss", opts.connections_for_rss, || {
                broker.rss_bytes()
            })
            .await
            .map_err(|source| measure_error(broker, RSS, source))??;
        rss.push((idle, loaded));
    }

    let n_slices = slice_count(opts.duration);
    let slice = opts.duration / n_slices;
    let qos0 = interleaved(&brokers, QOS0, n_slices, async |addr, tag| {
        scenarios::flood(addr, tag, 0, 1, slice).await
    })
    .await?;
    let qos1 = interleaved(&brokers, QOS1, n_slices, async |addr, tag| {
        scenarios::flood(addr, tag, 1, 1, slice).await
    })
    .await?;
    let fan_in = interleaved(&brokers, FAN_IN, n_slices, async |addr, tag| {
        scenarios::flood(addr, tag, 0, opts.publishers, slice).await
    })
    .await?;
    let latency = interleaved(&brokers, LATENCY, n_slices, async |addr, tag| {
        scenarios::paced_latency(addr, tag, opts.rate, slice).await
    })
    .await?;

    let mut flows = Vec::new();
    for (figure, runs) in [(QOS0, qos0), (QOS1, qos1), (FAN_IN, fan_in)] {
        let [ours_flow, baseline_flow] =
            runs.map(|slices| slices.into_iter().fold(Flow::default(), Flow::merge));
        for (broker, flow) in brokers.iter().zip([ours_flow, baseline_flow]) {
            if flow.received == 0 {
                return Err(BenchError::NothingReceived {
                    broker: broker.name.clone(),
                    figure,
                });
            }
        }
        flows.push((figure, ours_flow, baseline_flow));
    }
    let [ours_latency, baseline_latency] = latency.map(|slices| {
        let mut samples = slices.concat();
        samples.sort_unstable();
        samples
    });
    for (broker, samples) in brokers.iter().zip([&ours_latency, &baseline_latency]) {
        if samples.is_empty() {
            return Err(BenchError::NothingReceived {
                broker: broker.name.clone(),
                figure: LATENCY,
            });
        }
    }

    Ok(report::build(
        &ours,
        &baseline,
        opts,
        &flows,
        [ours_latency.as_slice(), baseline_latency.as_slice()],
        [rss[0], rss[1]],
    ))
}

/// How many slices each broker's share of a timed figure is cut into: about one per second,
/// at least 2 and at most [`MAX_SLICES`], always even so the ABBA pattern closes.
fn slice_count(duration: Duration) -> u32 {
    let per_second = duration.as_secs_f64().round() as u32;
    let clamped = per_second.clamp(2, MAX_SLICES);
    clamped + clamped % 2
}

/// Runs one timed figure `n_slices` times per broker, interleaved as ours, baseline, baseline,
/// ours, ours, baseline, ... so that load from other processes hits both brokers alike.
/// Returns the slices of `[ours, baseline]`.
async fn interleaved<T>(
    brokers: &[RunningBroker; 2],
    figure: &'static str,
    n_slices: u32,
    run: impl AsyncFn(std::net::SocketAddr, &str) -> Result<T, ClientError>,
) -> Result<[Vec<T>; 2], BenchError> {
    let mut slices = [Vec::new(), Vec::new()];
    for round_idx in 0..n_slices {
        let order = if round_idx % 2 == 0 { [0, 1] } else { [1, 0] };
        for broker_idx in order {
            let broker = &brokers[broker_idx];
            // Short and unique per slice: client ids stay within MQTT 3.1.1's 23 characters.
            let tag = format!("{}{round_idx}{broker_idx}", figure_tag(figure));
            let value = run(broker.addr, &tag)
                .await
                .map_err(|source| measure_error(broker, figure, source))?;
            slices[broker_idx].push(value);
        }
    }
    Ok(slices)
}

/// A short tag for topic and client names of a figure.
fn figure_tag(figure: &str) -> &'static str {
    match figure {
        QOS0 => "q0-",
        QOS1 => "q1-",
        FAN_IN => "fan-",
        _ => "lat-",
    }
}

fn measure_error(broker: &RunningBroker, figure: &'static str, source: ClientError) -> BenchError {
    BenchError::Measure {
        broker: broker.name.clone(),
        figure,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_even_and_about_one_per_second() {
        let check = |seconds: f64, expected: u32| {
            assert_eq!(
                slice_count(Duration::from_secs_f64(seconds)),
                expected,
                "{seconds} s"
            );
        };
        check(0.1, 2);
        check(1.0, 2);
        check(3.0, 4);
        check(10.0, 10);
        check(10.6, 12);
        check(3_600.0, MAX_SLICES);
    }

    #[test]
    fn missing_mosquitto_is_a_clear_error() {
        let error = mosquitto_at(Path::new("/nonexistent/mosquitto")).unwrap_err();
        assert!(matches!(error, BenchError::BaselineMissing { .. }));
        assert!(
            error.to_string().contains("apt-get install mosquitto"),
            "{error}"
        );
    }

    #[test]
    fn uns_command_line_has_the_agreed_placeholders() {
        let broker = BrokerUnderTest::uns("/bin/uns");
        assert_eq!(
            broker.command_line(),
            "/bin/uns broker --listen 127.0.0.1:{port} --ws-listen none --http-listen 127.0.0.1:0 --data-dir {data_dir}"
        );
    }
}
