//! The command line: one subcommand per service (made from the service list, so a new service
//! needs no change here), plus tools for engineers.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use uns_broker::{Role, Secret, User};
use uns_client::BrokerUrl;

use crate::services::{Listed, SERVICES};

/// A Unified Namespace for manufacturing: an embedded MQTT broker that speaks Sparkplug B and
/// the services that publish an ISA-95 shaped namespace (`uns/v1/{enterprise}/{site}/...`).
#[derive(Debug, Parser)]
#[command(name = "uns", version)]
pub(crate) struct Cli {
    /// Log filter (RUST_LOG syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info,rmqtt=warn,rmqtt_net=warn")]
    pub(crate) log: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole UNS in one process: the embedded broker plus every service.
    ///
    /// With no config file it uses built-in defaults: MQTT on 127.0.0.1:1883, websockets on
    /// 127.0.0.1:8083, HTTP /healthz and /metrics on 127.0.0.1:8080, and the demo plant model
    /// (ACME Foods, Berlin) whenever the config has no [plant] section. `--demo` adds the
    /// simulated plant, so the namespace fills with live machine data.
    Up(UpArgs),
    /// Run the embedded MQTT broker alone (MQTT 3.1.1 and 5 on one port, websockets,
    /// retained messages persisted under the data directory, $SYS topics).
    Broker(BrokerArgs),
    /// Print the JSON Schemas of every UNS payload, or write them to a directory.
    Schemas(SchemasArgs),
    /// Work with topic names.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Benchmarks (measured against a baseline started in the same run).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Work orders of a running instance, through its HTTP API (`/api/v1/work-orders`).
    Wo(WoArgs),
    /// Talk to a running ERP bridge (dead letters).
    #[command(subcommand)]
    Erp(crate::erp::ErpCommand),
    /// Trace a lot through the genealogy service's HTTP API: what went into it (backward, the
    /// default) or, with --forward, every lot made from it (docs/GENEALOGY.md).
    Trace(TraceArgs),
    /// Print the default configuration file (every setting with its default and a comment).
    GenerateConfig,
    /// Exit 0 when a running instance's /healthz answers 200, else 1 (for container
    /// HEALTHCHECKs, which have no curl).
    Healthcheck {
        /// The health endpoint.
        #[arg(
            long,
            env = "UNS_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:8080/healthz"
        )]
        url: String,
    },
}

/// Settings shared by every command that runs something.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Configuration file (TOML); see `uns generate-config`.
    #[arg(long, env = "UNS_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Directory for persistent state (retained messages, service stores).
    #[arg(long, env = "UNS_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// HTTP address for /healthz and /metrics (overrides the config file).
    #[arg(long, env = "UNS_HTTP_LISTEN")]
    pub(crate) http_listen: Option<SocketAddr>,
    /// Write the bound addresses as JSON to this file once listening (for scripts and tests
    /// that use port 0).
    #[arg(long)]
    pub(crate) ready_file: Option<PathBuf>,
}

/// Settings of the embedded broker.
#[derive(Debug, Args)]
pub(crate) struct EmbeddedBrokerArgs {
    /// MQTT listener address, 3.1.1 and 5 (overrides the config file).
    #[arg(long, env = "UNS_MQTT_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Websocket listener address, or `none` (overrides the config file).
    #[arg(long, env = "UNS_WS_LISTEN", value_parser = parse_optional_addr)]
    pub(crate) ws_listen: Option<OptionalAddr>,
    /// Allow clients without credentials on non-loopback listeners (off by default).
    #[arg(long, env = "UNS_ALLOW_ANONYMOUS")]
    pub(crate) allow_anonymous: bool,
    /// A broker (and HTTP) account `NAME:PASSWORD[:ROLE]`, ROLE one of admin, operator, viewer
    /// (the default), service (the default for a service's name) or edge=GROUP[+GROUP...];
    /// added to the config file's users. Repeat the flag, or give a comma-separated list in
    /// UNS_BROKER_USERS (how docker compose passes secrets).
    #[arg(long = "user", env = "UNS_BROKER_USERS", value_delimiter = ',', value_parser = parse_user, hide_env_values = true)]
    pub(crate) users: Vec<UserArg>,
}

/// `NAME:PASSWORD[:ROLE]` from the command line.
#[derive(Clone, Debug)]
pub(crate) struct UserArg {
    pub(crate) username: String,
    pub(crate) password: String,
    /// `None`: the default role (`service` for a service's name, else `viewer`).
    pub(crate) role: Option<Role>,
    /// For `edge=GROUP+GROUP`: the Sparkplug groups.
    pub(crate) groups: Vec<String>,
}

impl UserArg {
    /// The broker account.
    pub(crate) fn to_user(&self) -> User {
        User {
            role: self.role,
            groups: self.groups.clone(),
            ..User::new(
                self.username.clone(),
                Secret::Password(self.password.clone()),
            )
        }
    }
}

/// An empty entry (as `a:1,,b:2` or a trailing comma from an unset compose variable) is
/// skipped: it parses to an account with an empty name, which the config stage drops.
///
/// `NAME:PASSWORD` has the default role; `NAME:PASSWORD:ROLE` the role `admin`, `operator`,
/// `viewer`, `service` or `edge=GROUP[+GROUP...]`. The role is the part after the last colon
/// when it is one of those, so a password may contain colons (but not end in `:admin` and the
/// like: then add the role explicitly, `NAME:PW:admin:viewer`).
fn parse_user(text: &str) -> Result<UserArg, String> {
    if text.trim().is_empty() {
        return Ok(UserArg {
            username: String::new(),
            password: String::new(),
            role: None,
            groups: Vec::new(),
        });
    }
    let Some((username, rest)) = text.trim().split_once(':') else {
        return Err(USER_FORMAT.to_owned());
    };
    let (password, role, groups) = match rest.rsplit_once(':') {
        Some((password, role)) => match parse_role(role)? {
            Some((role, groups)) => (password, Some(role), groups),
            None => (rest, None, Vec::new()),
        },
        None => (rest, None, Vec::new()),
    };
    if username.is_empty() || password.is_empty() {
        return Err(USER_FORMAT.to_owned());
    }
    Ok(UserArg {
        username: username.to_owned(),
        password: password.to_owned(),
        role,
        groups,
    })
}

const USER_FORMAT: &str = "expected NAME:PASSWORD or NAME:PASSWORD:ROLE (ROLE: admin, operator, \
     viewer, service or edge=GROUP[+GROUP...]) with name and password non-empty";

/// `Ok(None)`: not a role (part of the password).
fn parse_role(text: &str) -> Result<Option<(Role, Vec<String>)>, String> {
    let role = match text {
        "admin" => Role::Admin,
        "operator" => Role::Operator,
        "viewer" => Role::Viewer,
        "service" => Role::Service,
        "edge" => {
            return Err("role edge needs its groups: NAME:PASSWORD:edge=GROUP[+GROUP...]".into());
        }
        _ => match text.strip_prefix("edge=") {
            Some(groups) => {
                let groups: Vec<String> = groups.split('+').map(str::to_owned).collect();
                if groups.iter().any(String::is_empty) {
                    return Err(format!("{text:?}: an edge group is empty"));
                }
                return Ok(Some((Role::Edge, groups)));
            }
            None => return Ok(None),
        },
    };
    Ok(Some((role, Vec::new())))
}

/// How a standalone service reaches its broker (the embedded one in another process, or any
/// external MQTT 3.1.1/5 broker).
#[derive(Debug, Args)]
pub(crate) struct ExternalBrokerArgs {
    /// The broker, `mqtt://[user[:password]@]host[:port]`.
    #[arg(long, env = "UNS_BROKER", default_value = "mqtt://127.0.0.1:1883")]
    pub(crate) broker: BrokerUrl,
    /// MQTT username (overrides one in the URL).
    #[arg(long, env = "UNS_MQTT_USERNAME")]
    pub(crate) username: Option<String>,
    /// MQTT password (overrides one in the URL).
    #[arg(long, env = "UNS_MQTT_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) broker: EmbeddedBrokerArgs,
    /// Also run the simulated packaging plant (`uns sim`: Sparkplug edge nodes for the demo
    /// plant's lines) and the services' demo data, so MQTT Explorer shows live values at once.
    /// The demo plant model itself is used whenever the config has no [plant] section.
    #[arg(long)]
    pub(crate) demo: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) broker: EmbeddedBrokerArgs,
}

/// A service on its own, connected to a broker elsewhere.
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) broker: ExternalBrokerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SchemasArgs {
    /// Write one file per schema into this directory instead of printing them.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print only this schema (e.g. `tag` or `work-order`).
    #[arg(long)]
    pub(crate) name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct WoArgs {
    /// The running instance's HTTP endpoint (`[http] listen` of `uns up`, or of a standalone
    /// `uns workorders`).
    #[arg(
        long,
        env = "UNS_HTTP_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub(crate) url: String,
    #[command(subcommand)]
    pub(crate) command: WoCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WoCommand {
    /// List work orders: id, status, good/scrap of planned, line.
    List {
        /// Only orders in this status (planned, released, running, held, completed, closed,
        /// cancelled).
        #[arg(long)]
        status: Option<String>,
    },
    /// Print one work order as JSON (the document plus revision and counting location).
    Show {
        /// The work order id.
        id: String,
    },
    /// planned → released.
    Release {
        /// The work order id.
        id: String,
    },
    /// released → running (one running order per line unless configured).
    Start {
        /// The work order id.
        id: String,
    },
    /// running → held.
    Hold {
        /// The work order id.
        id: String,
    },
    /// held → running.
    Resume {
        /// The work order id.
        id: String,
    },
    /// running or held → completed (requests the final ERP confirmation).
    Complete {
        /// The work order id.
        id: String,
    },
    /// planned, released or held → cancelled.
    Cancel {
        /// The work order id.
        id: String,
    },
}

/// `uns trace LOT`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The lot id.
    pub(crate) lot: String,
    /// Walk forward (what the lot went into) instead of backward.
    #[arg(long)]
    pub(crate) forward: bool,
    /// At most this many edges from the lot.
    #[arg(long)]
    pub(crate) depth: Option<u32>,
    /// The graph as it stood at this RFC 3339 time (before later corrections).
    #[arg(long = "as-of")]
    pub(crate) as_of: Option<String>,
    /// Output: a table of lots, the trace as JSON, the recall sheet (CSV) or the FSMA 204 sheet.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: TraceFormat,
    /// The HTTP endpoint of the process running the genealogy service.
    #[arg(long, env = "UNS_HTTP_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
}

/// Output of `uns trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TraceFormat {
    /// One line per lot, and the transforms off balance.
    Table,
    /// The trace as the API returns it.
    Json,
    /// The recall sheet: one row per affected lot.
    Csv,
    /// The FSMA 204 sortable spreadsheet (CSV) of the trace's critical tracking events.
    Fsma,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Explain a UNS or Sparkplug topic: location with ISA-95 levels, class, retained flag,
    /// owner. Exits non-zero with the reason when the topic is malformed.
    Parse {
        /// The topic, e.g. `uns/v1/acme/berlin/packaging/line-1/filler/_state`.
        topic: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Our broker against Debian's mosquitto, both started by the bench on spare loopback
    /// ports: throughput, latency, fan-in, memory; figures reported as ratios.
    Broker {
        /// Duration of each throughput phase.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
        /// Also write the Markdown report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The SCADA bridge's decode + map path on one thread (Sparkplug decode, host session
    /// alias resolution, mapping to `_tag` topics and JSON), in metrics per second, against
    /// the goal of 1M/s. No broker, no sockets.
    BridgeDecode {
        /// Edge nodes in the generated corpus.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Devices per edge node.
        #[arg(long, default_value_t = 10)]
        devices_per_node: usize,
        /// Metrics per device (at least 7).
        #[arg(long, default_value_t = 50)]
        metrics_per_device: usize,
        /// Time each stage runs.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
        /// Also write the Markdown report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// End to end on this machine: `uns sim` → `uns broker` → `uns scada-bridge` → UNS, each a
    /// child process on 127.0.0.1; latency from the DDATA to `_tag` delivery, delivered vs
    /// offered rate, CPU and RSS; steps the sim's rate up until the chain falls behind.
    E2e {
        /// Simulated edge nodes.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Devices per edge node.
        #[arg(long, default_value_t = 10)]
        devices_per_node: usize,
        /// Metrics per device.
        #[arg(long, default_value_t = 50)]
        metrics_per_device: usize,
        /// Sample rates to step through (Hz per device), comma-separated; stepping stops at
        /// the first rate the chain does not sustain.
        #[arg(long, value_delimiter = ',', default_value = "0.2,0.4,0.6,0.8,1,2,4")]
        rates: Vec<f64>,
        /// Settling time after the last DBIRTH of each step.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        warmup: Duration,
        /// Measuring window of each step.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        measure: Duration,
        /// The broker's per-client inflight window (`[broker] max_inflight`, default 128);
        /// the bridge publishes every `_tag` at QoS 1, so this bounds its rate.
        #[arg(long)]
        broker_max_inflight: Option<usize>,
        /// `uns`: the chain on `uns broker` alone. `mosquitto`: every step also on Debian's
        /// mosquitto (/usr/sbin/mosquitto, persistence on), right after ours, and a table of
        /// ratios (ours / mosquitto).
        #[arg(long, default_value = "uns", value_parser = ["uns", "mosquitto"])]
        broker: String,
        /// Also write the Markdown report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The ERP bridge (`uns broker` + `uns erp-bridge` child processes, a stand-in ERP):
    /// orders accepted per second (JSON and B2MML), confirmations per second through the
    /// outbox, drain time of a backlog; each rate against the bare HTTP round trip.
    Erp {
        /// Orders posted per format.
        #[arg(long, default_value_t = 200)]
        orders: usize,
        /// Consumed materials per order.
        #[arg(long, default_value_t = 100)]
        requirements: usize,
        /// Confirmations for the throughput figure.
        #[arg(long, default_value_t = 2_000)]
        confirmations: usize,
        /// Confirmations in the backlog that is drained.
        #[arg(long, default_value_t = 10_000)]
        backlog: usize,
        /// Also write the Markdown report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The genealogy ledger on a generated year of a multi-level plant (a bakery with rework):
    /// bulk and durable ingest in events/s, backward and forward trace latency p50/p99 at
    /// depth 5 and 20, store size per million events, time to verify the chain.
    Genealogy {
        /// Where to create the temporary store (use the disk of the data directory).
        #[arg(long, default_value = "/tmp")]
        dir: PathBuf,
        /// Lots to generate (whole days of 2 690 lots; 1 M is about a year).
        #[arg(long, default_value_t = 1_000_000)]
        lots: usize,
        /// Events per commit while generating.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
        /// Events then applied one per durable commit, as the service does.
        #[arg(long, default_value_t = 500)]
        durable_events: usize,
        /// Traces timed per direction and depth.
        #[arg(long, default_value_t = 1_000)]
        traces: usize,
        /// Seed of the plant generator.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Also write the Markdown report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A soak of `uns up` under mixed churn (clean and persistent sessions, Sparkplug births,
    /// bad input): RSS and open descriptors sampled at an interval, with a flat-line check.
    Soak {
        /// What to soak: `up` (the broker and every service) or `broker` (the broker alone).
        #[arg(long, default_value = "up", value_parser = ["up", "broker"])]
        subcommand: String,
        /// How long the churn runs.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        duration: Duration,
        /// Time between two samples.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        interval: Duration,
        /// Samples before this are left out of the flat-line check.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        warmup: Duration,
        /// Soak `uns up` with the console's own history default (1 000 values per topic) instead
        /// of the soak's 10: its filling then reads as growth for as long as an hour.
        #[arg(long)]
        console_default_history: bool,
        /// The program to soak instead of this `uns` binary: another build, or a wrapper script
        /// that runs one under a heap profiler (`exec heaptrack uns "$@"`). It gets the same
        /// arguments and must write the ready file as `uns` does. RSS and descriptors are those
        /// of the process started: under a wrapper that does not exec (heaptrack's does not),
        /// the wrapper's, so read the profiler's output instead.
        #[arg(long)]
        program: Option<PathBuf>,
        /// Also write the Markdown report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The store (uns-store on redb): durable commit latency p50/p99 (one small write per
    /// commit) and outbox enqueue+ack per second, on a fresh file in a temporary directory.
    Store {
        /// Where to create the temporary store (use the disk of the data directory).
        #[arg(long, default_value = "/tmp")]
        dir: PathBuf,
        /// Commits timed for the latency figure.
        #[arg(long, default_value_t = 2_000)]
        commits: usize,
        /// Outbox entries for the throughput figures.
        #[arg(long, default_value_t = 2_000)]
        outbox_entries: usize,
        /// Also write the Markdown report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The OEE engine on one core (inputs per second, memory per asset, one `current` over every
    /// scope) and the OEE service through an in-process broker (`_state` → `_oee/current` latency,
    /// inputs per second stored durably).
    Oee(crate::oee::BenchArgs),
}

/// What the command line asked for.
pub(crate) struct ParsedCli {
    /// The log filter.
    pub(crate) log: String,
    pub(crate) command: Parsed,
}

/// A built-in command, or a service run alone.
pub(crate) enum Parsed {
    /// `up`, `broker`, `schemas`, ...
    Builtin(Command),
    /// `uns {service}`: one service against an external broker.
    Service {
        listed: &'static Listed,
        args: ServiceArgs,
        /// `(config key, value)` from the service's own flags.
        flags: Vec<(&'static str, String)>,
    },
    /// `uns oee report`.
    OeeReport(crate::oee::ReportArgs),
    /// `uns genealogy verify|export`: tools over the genealogy store.
    Genealogy(crate::genealogy::GenealogyCommand),
}

/// The whole command line: the built-in commands plus one subcommand per listed service.
pub(crate) fn command() -> clap::Command {
    let mut command = Cli::command();
    for listed in SERVICES {
        let entry = &listed.entry;
        // `about` after the derive's augment, which would put ServiceArgs' own doc there.
        let mut sub = ServiceArgs::augment_args(clap::Command::new(entry.name)).about(entry.about);
        if entry.name == crate::genealogy::SERVICE {
            sub = crate::genealogy::augment(sub);
        }
        for flag in entry.flags {
            sub = sub.arg(
                clap::Arg::new(flag.long)
                    .long(flag.long)
                    .value_name("VALUE")
                    .help(format!(
                        "{} (sets `{}` of [{}])",
                        flag.help, flag.key, entry.section
                    )),
            );
        }
        command = command.subcommand(sub);
    }
    command.mut_subcommand("oee", crate::oee::with_report)
}

/// Parses `args` (the first is the program name).
pub(crate) fn parse_from<I, T>(args: I) -> Result<ParsedCli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let log = matches
        .get_one::<String>("log")
        .cloned()
        .unwrap_or_default();
    if let Some(report) = crate::oee::report_args(&matches) {
        let command = Parsed::OeeReport(report?);
        return Ok(ParsedCli { log, command });
    }
    if let Some((name, sub)) = matches.subcommand()
        && let Some(listed) = crate::services::find(name)
    {
        if let Some(tool) = crate::genealogy::parse(sub)? {
            return Ok(ParsedCli {
                log,
                command: Parsed::Genealogy(tool),
            });
        }
        let args = ServiceArgs::from_arg_matches(sub)?;
        let flags = listed
            .entry
            .flags
            .iter()
            .filter_map(|flag| {
                sub.get_one::<String>(flag.long)
                    .map(|value| (flag.key, value.clone()))
            })
            .collect();
        return Ok(ParsedCli {
            log,
            command: Parsed::Service {
                listed,
                args,
                flags,
            },
        });
    }
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(ParsedCli {
        log: cli.log,
        command: Parsed::Builtin(cli.command),
    })
}

/// A socket address or `none`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OptionalAddr(pub(crate) Option<SocketAddr>);

fn parse_optional_addr(text: &str) -> Result<OptionalAddr, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(OptionalAddr(None));
    }
    text.parse()
        .map(|addr| OptionalAddr(Some(addr)))
        .map_err(|err| {
            format!("`{text}` is neither an address like 127.0.0.1:8083 nor `none`: {err}")
        })
}

/// Parses `500ms`, `5s`, `2m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |idx| text.split_at(idx));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("`{text}`: unknown unit `{unit}` (use ms, s or m)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_service_is_a_subcommand_with_its_flags() {
        for listed in SERVICES {
            let parsed = parse_from(["uns", listed.entry.name, "--broker", "mqtt://h:1"])
                .unwrap_or_else(|err| panic!("{}: {err}", listed.entry.name));
            assert!(matches!(parsed.command, Parsed::Service { .. }));
        }
        let parsed =
            parse_from(["uns", "sim", "--seed", "7", "--nodes", "2", "--log", "warn"]).unwrap();
        assert_eq!(parsed.log, "warn");
        let Parsed::Service { listed, flags, .. } = parsed.command else {
            panic!("sim expected");
        };
        assert_eq!(listed.entry.name, "sim");
        assert_eq!(
            flags,
            vec![("seed", "7".to_owned()), ("scale.nodes", "2".to_owned())]
        );
        assert!(parse_from(["uns", "up", "--demo"]).is_ok());
    }

    /// Issue 10 item 5: `uns up --help` says what `--demo` adds (the simulator), not that it
    /// selects the demo plant model (plain `uns up` already publishes that).
    #[test]
    fn up_help_says_what_demo_adds() {
        let mut command = command();
        let up = command
            .find_subcommand_mut("up")
            .unwrap_or_else(|| panic!("an up subcommand"));
        let help = up.render_long_help().to_string();
        assert!(
            help.contains("Also run the simulated packaging plant"),
            "{help}"
        );
        assert!(
            help.contains(
                "The demo plant model itself is used whenever the config has no [plant] section"
            ),
            "{help}"
        );
    }

    #[test]
    fn trace_takes_its_options() {
        let parsed = parse_from([
            "uns",
            "trace",
            "pallet-1",
            "--forward",
            "--depth",
            "3",
            "--as-of",
            "2026-03-04T06:45:00Z",
            "--format",
            "csv",
        ])
        .unwrap();
        let Parsed::Builtin(Command::Trace(args)) = parsed.command else {
            panic!("trace expected");
        };
        assert_eq!(args.lot, "pallet-1");
        assert!(args.forward);
        assert_eq!(args.depth, Some(3));
        assert_eq!(args.as_of.as_deref(), Some("2026-03-04T06:45:00Z"));
        assert_eq!(args.format, TraceFormat::Csv);
        let parsed = parse_from(["uns", "trace", "pallet-1"]).unwrap();
        let Parsed::Builtin(Command::Trace(args)) = parsed.command else {
            panic!("trace expected");
        };
        assert!(!args.forward);
        assert_eq!(args.format, TraceFormat::Table);
        assert!(parse_from(["uns", "trace", "x", "--format", "xml"]).is_err());
    }

    #[test]
    fn genealogy_runs_the_service_or_one_of_its_tools() {
        use crate::genealogy::GenealogyCommand;
        let parsed = parse_from(["uns", "genealogy", "--broker", "mqtt://h:1"]).unwrap();
        assert!(matches!(parsed.command, Parsed::Service { .. }));
        // Each service's --help says what it is (the derives would overwrite it).
        let mut cmd = command();
        for listed in SERVICES {
            let sub = cmd
                .find_subcommand_mut(listed.entry.name)
                .expect("every service is a subcommand");
            assert_eq!(
                sub.get_about().map(ToString::to_string).as_deref(),
                Some(listed.entry.about)
            );
        }
        let parsed =
            parse_from(["uns", "genealogy", "verify", "--data-dir", "/d", "--json"]).unwrap();
        let Parsed::Genealogy(GenealogyCommand::Verify(args)) = parsed.command else {
            panic!("verify expected");
        };
        assert_eq!(args.source.data_dir, Some(PathBuf::from("/d")));
        assert!(args.json && args.source.url.is_none());
        let parsed = parse_from([
            "uns",
            "genealogy",
            "export",
            "--epcis",
            "--lot",
            "l-1",
            "--url",
            "http://h:1",
        ])
        .unwrap();
        let Parsed::Genealogy(GenealogyCommand::Export(args)) = parsed.command else {
            panic!("export expected");
        };
        assert_eq!(args.lot.as_deref(), Some("l-1"));
        assert_eq!(args.source.url.as_deref(), Some("http://h:1"));
        assert!(parse_from(["uns", "genealogy", "export", "--lot", "l-1"]).is_err());
        assert!(parse_from(["uns", "genealogy", "--broker", "mqtt://h:1", "verify"]).is_err());
        assert!(
            parse_from([
                "uns",
                "genealogy",
                "verify",
                "--url",
                "http://h",
                "--file",
                "f"
            ])
            .is_err()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
