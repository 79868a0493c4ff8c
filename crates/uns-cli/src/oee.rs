//! `uns oee report`: the OEE of one scope and period from a running instance, through its HTTP API
//! (`GET /api/v1/oee?scope=&period=&id=`), as a table or as the API's JSON document.
//!
//! `uns oee` alone runs the OEE service (it is one of the listed services); `report` is a subcommand
//! added to that service's command, so `uns oee --broker ...` keeps working.

use std::io::Write;

use anyhow::Context as _;
use clap::{ArgMatches, Args, FromArgMatches};
use uns_model::payload::{OeeResult, Timestamp};

/// `uns oee report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The scope: a cell, a configured line or a site, e.g. `acme/berlin/packaging/line-1`.
    #[arg(long)]
    pub(crate) scope: String,
    /// The kind of period.
    #[arg(long, value_enum)]
    pub(crate) period: PeriodArg,
    /// A closed period's id (`2026-03-02.early`, `2026-03-02`, `2026-03-02t14`, a work-order id);
    /// without it, the open period.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Print the API's JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// The running instance's HTTP endpoint (`[http] listen` of `uns up`, or of `uns oee`).
    #[arg(long, env = "UNS_HTTP_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
}

/// `--period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PeriodArg {
    /// A clock hour.
    Hour,
    /// A shift of the calendar.
    Shift,
    /// A calendar day (closed days only).
    Day,
    /// A work order's run.
    Wo,
}

impl PeriodArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Shift => "shift",
            Self::Day => "day",
            Self::Wo => "wo",
        }
    }
}

/// `uns bench oee`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Cells fed to the engine.
    #[arg(long, default_value_t = 1000)]
    pub(crate) assets: usize,
    /// Hours of event time fed to the engine (a count every 10 s and a state change every 5 min
    /// per cell).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) hours: f64,
    /// `_state` changes timed through the service.
    #[arg(long, default_value_t = 20)]
    pub(crate) latency_samples: usize,
    /// `_count/good` totals pushed through the service for its throughput.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) service_inputs: usize,
    /// Where to put the service's store (use the disk of the data directory).
    #[arg(long, default_value = "/tmp")]
    pub(crate) dir: std::path::PathBuf,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    pub(crate) out: Option<std::path::PathBuf>,
    /// Keep every count sample (no merging of closed hours), to measure the memory without it.
    #[arg(long)]
    pub(crate) no_compact: bool,
}

/// Runs `uns bench oee` and prints its Markdown report.
pub(crate) async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let options = uns_bench::oee::OeeBenchOptions {
        assets: args.assets,
        hours: args.hours,
        latency_samples: args.latency_samples,
        service_inputs: args.service_inputs,
        dir: args.dir,
        compact: !args.no_compact,
    };
    let report = uns_bench::oee::run(&options)
        .await
        .context("running the OEE benchmark")?;
    let markdown = report.to_markdown();
    write!(std::io::stdout(), "{markdown}")?;
    if let Some(path) = args.out {
        std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The `oee` service command with its `report` subcommand.
pub(crate) fn with_report(oee: clap::Command) -> clap::Command {
    oee.subcommand(ReportArgs::augment_args(
        clap::Command::new("report").about(
            "Print the OEE of a scope and period (the open one, or a closed one with --id) from a \
         running instance's HTTP API",
        ),
    ))
}

/// The `report` arguments when the command line is `uns oee report ...`.
pub(crate) fn report_args(matches: &ArgMatches) -> Option<Result<ReportArgs, clap::Error>> {
    let ("oee", oee) = matches.subcommand()? else {
        return None;
    };
    let ("report", report) = oee.subcommand()? else {
        return None;
    };
    Some(ReportArgs::from_arg_matches(report))
}

/// Runs `uns oee report`; no such result (HTTP 404) or a bad request is an error with the service's
/// reason.
pub(crate) async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let mut url = format!(
        "{}/api/v1/oee?scope={}&period={}",
        args.url.trim_end_matches('/'),
        encode(&args.scope),
        args.period.as_str()
    );
    if let Some(id) = &args.id {
        url.push_str(&format!("&id={}", encode(id)));
    }
    let (status, body) = tokio::task::spawn_blocking(move || get(&url)).await??;
    if status != 200 {
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        anyhow::bail!("{reason} (HTTP {status})");
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let json: serde_json::Value = serde_json::from_str(&body).context("the API's answer")?;
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        return Ok(());
    }
    let result: OeeResult =
        uns_model::payload::decode(body.as_bytes()).context("the API's answer")?;
    write!(out, "{}", table(&args.scope, &result))?;
    Ok(())
}

fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url} (is `uns up` running there? see --url)"))?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}

/// Percent-encodes a query value (scope paths keep their `/`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// The readable table of one result; ratios rounded for display only.
pub(crate) fn table(scope: &str, result: &OeeResult) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let state = if result.is_final {
        format!("final, version {}", result.version)
    } else {
        "open".to_owned()
    };
    let _ = writeln!(
        out,
        "{scope}: {} {} ({state})",
        serde_json::to_value(result.period.kind)
            .ok()
            .and_then(|kind| kind.as_str().map(str::to_owned))
            .unwrap_or_default(),
        result.period.id
    );
    let _ = writeln!(
        out,
        "{} .. {}{}  minor stops: {}",
        time(result.start),
        time(result.end),
        result
            .calendar
            .as_deref()
            .map(|calendar| format!("  calendar {calendar}"))
            .unwrap_or_default(),
        serde_json::to_value(result.minor_stop_policy)
            .ok()
            .and_then(|policy| policy.as_str().map(str::to_owned))
            .unwrap_or_default(),
    );
    if let (Some(corrects), Some(reason)) = (result.corrects, &result.reason) {
        let _ = writeln!(out, "corrects version {corrects}: {reason}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<22} {:>8}", "KPI", "VALUE");
    for (name, field, value) in [
        ("OEE", "oee", result.oee),
        ("Availability", "availability", result.availability),
        ("Performance", "performance", result.performance),
        ("Quality", "quality", result.quality),
        ("NEE", "nee", result.nee),
        ("TEEP", "teep", result.teep),
        ("Utilisation", "utilisation", result.utilisation),
        (
            "Technical efficiency",
            "technical_efficiency",
            result.technical_efficiency,
        ),
        ("Setup ratio", "setup_ratio", result.setup_ratio),
        ("Scrap ratio", "scrap_ratio", result.scrap_ratio),
        ("Rework ratio", "rework_ratio", result.rework_ratio),
    ] {
        let shown = match value {
            Some(value) => format!("{:.1} %", value * 100.0),
            None => "null".to_owned(),
        };
        let why = result
            .null_reasons
            .get(field)
            .map(|why| format!("  ({why})"))
            .unwrap_or_default();
        let _ = writeln!(out, "{name:<22} {shown:>8}{why}");
    }
    let t = &result.times;
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<38} {:>9} {:>8}", "TIME", "H:MM:SS", "% OF PBT");
    let pbt = t.pbt_ms as f64;
    for (name, ms) in [
        ("POT  planned operation time", t.pot_ms),
        ("PDT  planned downtime", t.pdt_ms),
        ("PBT  planned busy time", t.pbt_ms),
        ("APT  actual production time", t.apt_ms),
        ("ASUT actual unit setup time", t.asut_ms),
        ("ADET actual unit delay time", t.adet_ms),
        ("ADOT actual unit down time", t.adot_ms),
        ("     minor stops", t.minor_stop_ms),
        ("     unknown state", t.unknown_ms),
    ] {
        let share = if pbt > 0.0 && !name.starts_with("POT") && !name.starts_with("PDT") {
            format!("{:.1}", ms as f64 / pbt * 100.0)
        } else {
            String::new()
        };
        let _ = writeln!(out, "{name:<38} {:>9} {share:>8}", duration(ms as f64));
    }
    let c = &result.counts;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "COUNTS ({})  produced {}  good {}  scrap {}  rework {}",
        c.produced.uom, c.produced.qty, c.good.qty, c.scrap.qty, c.rework.qty
    );
    let big = &result.six_big_losses;
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<38} {:>9}", "SIX BIG LOSSES", "H:MM:SS");
    for (name, ms) in [
        ("breakdowns", big.breakdowns_ms as f64),
        ("setup and adjustments", big.setup_ms as f64),
        ("minor stops", big.minor_stops_ms as f64),
        ("reduced speed", big.speed_ms),
        ("process defects", big.defects_ms),
        ("reduced yield", big.reduced_yield_ms),
    ] {
        let _ = writeln!(out, "{name:<38} {:>9}", duration(ms));
    }
    if !result.losses.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<30} {:<15} {:>9} {:>5}",
            "LOSSES BY REASON", "CATEGORY", "H:MM:SS", "TIMES"
        );
        for loss in result.losses.iter().take(10) {
            let category = serde_json::to_value(loss.category)
                .ok()
                .and_then(|category| category.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<30} {:<15} {:>9} {:>5}",
                loss.reason,
                category,
                duration(loss.duration_ms as f64),
                loss.occurrences
            );
        }
        if result.losses.len() > 10 {
            let _ = writeln!(out, "({} more; --json for all)", result.losses.len() - 10);
        }
    }
    out
}

fn time(at: Timestamp) -> String {
    at.to_string()
}

/// `H:MM:SS`, with a sign for a negative figure (reduced speed with a wrong ideal rate).
fn duration(ms: f64) -> String {
    let sign = if ms < 0.0 { "-" } else { "" };
    let seconds = (ms.abs() / 1000.0).round() as u64;
    format!(
        "{sign}{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_a_subcommand_of_the_service_command() {
        let command = crate::cli::command();
        let matches = command
            .try_get_matches_from([
                "uns",
                "oee",
                "report",
                "--scope",
                "acme/berlin",
                "--period",
                "day",
                "--id",
                "2026-03-02",
                "--json",
            ])
            .unwrap();
        let args = report_args(&matches).expect("report").unwrap();
        assert_eq!(args.scope, "acme/berlin");
        assert_eq!(args.period, PeriodArg::Day);
        assert_eq!(args.id.as_deref(), Some("2026-03-02"));
        assert!(args.json);
        // The service alone still parses as the service.
        let matches = crate::cli::command()
            .try_get_matches_from(["uns", "oee", "--broker", "mqtt://h:1"])
            .unwrap();
        assert!(report_args(&matches).is_none());
        assert!(
            crate::cli::command()
                .try_get_matches_from([
                    "uns", "oee", "report", "--scope", "a/b", "--period", "week"
                ])
                .is_err()
        );
    }

    #[test]
    fn durations_and_encoding() {
        assert_eq!(duration(3_723_000.0), "1:02:03");
        assert_eq!(duration(-61_000.0), "-0:01:01");
        assert_eq!(encode("acme/berlin line"), "acme/berlin%20line");
        assert_eq!(encode("2026-03-02.early"), "2026-03-02.early");
    }
}
