//! `uns genealogy verify` and `uns genealogy export --epcis`: the genealogy store's audit chain
//! and its EPCIS 2.0 document, read offline from the service's file (default) or asked of the
//! running service over HTTP (`--url`). `uns genealogy` with no subcommand runs the service.
//!
//! Offline is the default because an audit should not need the service: it reads
//! `{data_dir}/genealogy/genealogy.redb` (or `--file`, e.g. a backup) read-only and never
//! changes it. redb lets no reader beside the process that writes the file, so while the service
//! runs the offline tools stop with one sentence saying to use `--url` or stop the service.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, FromArgMatches, Subcommand};
use uns_genealogy::{DerivedMismatch, ExportFilter, LedgerFile};
use uns_model::payload::Timestamp;
use uns_model::topic::Id;
use uns_service::Service;
use uns_store::{StoreError, VerifyReport};

use crate::config::FileConfig;

/// The service these tools belong to (`uns genealogy ...`).
pub(crate) const SERVICE: &str = uns_genealogy::Genealogy::NAME;

/// `uns genealogy <tool>`.
#[derive(Debug, Subcommand)]
pub(crate) enum GenealogyCommand {
    /// Check the audit chain of the genealogy store: every record's hash and its link to the one
    /// before. Prints "intact" and exits 0, or names the first altered record and exits 1.
    Verify(VerifyArgs),
    /// Write the EPCIS 2.0 JSON-LD document of the genealogy events (receive and ship as
    /// ObjectEvent, transform as TransformationEvent, corrections as errorDeclaration).
    Export(ExportArgs),
}

/// Where the tools read: the store file (default), or the running service.
#[derive(Debug, Args)]
pub(crate) struct Source {
    /// Data directory of the instance (the store is `{data_dir}/genealogy/genealogy.redb`);
    /// default: `data_dir` of --config, else `data`.
    #[arg(long, env = "UNS_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Configuration file whose `data_dir` to use.
    #[arg(long, env = "UNS_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Read this store file instead (a copy or a backup of genealogy.redb).
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Ask the running service at this HTTP endpoint instead of reading the file (e.g.
    /// http://127.0.0.1:8080); needed while the service runs, as it holds the file.
    #[arg(long, conflicts_with = "file")]
    pub(crate) url: Option<String>,
}

/// `uns genealogy verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Print the report as JSON (`{"intact", "records_checked", "first_bad": {seq, reason}}`,
    /// plus `"derived"` with --replay).
    #[arg(long)]
    pub(crate) json: bool,
    /// Also replay the chain into a scratch file (in the system temp dir, removed afterwards)
    /// and check that the lots, events and trace indexes in the file are what the chain says;
    /// names the first row that is not. Offline only; takes about as long as re-ingesting the log.
    #[arg(long, conflicts_with = "url")]
    pub(crate) replay: bool,
}

/// `uns genealogy export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// The EPCIS 2.0 JSON-LD document (the one export format so far; required).
    #[arg(long, required = true)]
    pub(crate) epcis: bool,
    /// Only events that name this lot.
    #[arg(long)]
    pub(crate) lot: Option<String>,
    /// Only events that occurred at or after this RFC 3339 time.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Only events that occurred before this RFC 3339 time.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Write the document to this file instead of stdout.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// Adds the tools to the `uns genealogy` service command; without one it still runs the service.
pub(crate) fn augment(command: clap::Command) -> clap::Command {
    // The derive would put this enum's doc in place of the service's own description.
    let about = command.get_about().cloned().unwrap_or_default();
    GenealogyCommand::augment_subcommands(command)
        .about(about)
        .after_help(
            "Without a command it runs the service; `verify` and `export` read its store \
             (docs/GENEALOGY.md).",
        )
        .args_conflicts_with_subcommands(true)
        .subcommand_required(false)
}

/// The tool `uns genealogy <tool>` asked for, if any.
pub(crate) fn parse(matches: &clap::ArgMatches) -> Result<Option<GenealogyCommand>, clap::Error> {
    if matches.subcommand().is_none() {
        return Ok(None);
    }
    GenealogyCommand::from_arg_matches(matches).map(Some)
}

/// Runs one tool.
pub(crate) async fn run(command: GenealogyCommand) -> anyhow::Result<()> {
    match command {
        GenealogyCommand::Verify(args) => verify(args).await,
        GenealogyCommand::Export(args) => export(args).await,
    }
}

/// The store file `source` names.
fn store_file(source: &Source) -> anyhow::Result<PathBuf> {
    if let Some(file) = &source.file {
        return Ok(file.clone());
    }
    let data_dir = FileConfig::data_dir(source.config.as_deref(), source.data_dir.as_deref())?;
    Ok(data_dir.join(SERVICE).join(uns_genealogy::FILE))
}

/// Opens the store read-only, explaining the two usual failures in one sentence each.
fn open(path: &Path, tool: &str) -> anyhow::Result<LedgerFile> {
    match LedgerFile::open(path) {
        Ok(file) => Ok(file),
        Err(StoreError::Locked { .. }) => anyhow::bail!(
            "{} is held by a running genealogy service (redb lets no reader beside it): \
             {tool} through that service with `uns genealogy {tool} --url http://HOST:PORT`, \
             or stop it and run this again",
            path.display()
        ),
        Err(StoreError::Open { message, .. }) if message == "no such file" => anyhow::bail!(
            "no genealogy store at {}: give the instance's --data-dir (or --config), or --file",
            path.display()
        ),
        Err(err) => Err(err).with_context(|| format!("opening {}", path.display())),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let (report, source) = match &args.source.url {
        Some(url) => {
            let base = url.trim_end_matches('/');
            let (status, body) = get(format!("{base}/api/v1/genealogy/verify")).await?;
            if status != 200 && status != 409 {
                anyhow::bail!("the genealogy service answered HTTP {status}: {body}");
            }
            let report: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("{base}/api/v1/genealogy/verify: not JSON: {body}"))?;
            (report, base.to_owned())
        }
        None => {
            let path = store_file(&args.source)?;
            let replay = args.replay;
            let (report, derived) = tokio::task::spawn_blocking({
                let path = path.clone();
                move || -> anyhow::Result<(VerifyReport, Option<Option<DerivedMismatch>>)> {
                    let file = open(&path, "verify")?;
                    let report = file
                        .verify()
                        .with_context(|| format!("reading {}", path.display()))?;
                    // Replaying an altered chain would prove nothing.
                    let derived = (replay && report.first_bad.is_none())
                        .then(|| file.check_derived(&std::env::temp_dir()))
                        .transpose()
                        .with_context(|| format!("replaying {}", path.display()))?;
                    Ok((report, derived))
                }
            })
            .await??;
            let mut json = uns_genealogy::verify_json(&report);
            if let Some(derived) = derived {
                json["derived"] = match derived {
                    None => serde_json::json!({"intact": true}),
                    Some(mismatch) => serde_json::json!({
                        "intact": false,
                        "table": mismatch.table,
                        "key": mismatch.key,
                        "reason": mismatch.reason,
                    }),
                };
            }
            (json, path.display().to_string())
        }
    };
    let mut out = std::io::stdout().lock();
    let checked = &report["records_checked"];
    let bad = &report["first_bad"];
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else if bad.is_null() {
        writeln!(
            out,
            "genealogy chain intact: {checked} records checked ({source})"
        )?;
    } else {
        writeln!(
            out,
            "genealogy chain altered at record {}: {} ({checked} records before it check out; {source})",
            bad["seq"],
            bad["reason"].as_str().unwrap_or("?"),
        )?;
    }
    let derived = &report["derived"];
    if !args.json && derived["intact"] == true {
        writeln!(
            out,
            "derived state intact: the lots, events and trace indexes are what the chain says"
        )?;
    } else if !args.json && derived["intact"] == false {
        writeln!(
            out,
            "derived state altered: table {}, row {}: {}",
            derived["table"].as_str().unwrap_or("?"),
            derived["key"].as_str().unwrap_or("?"),
            derived["reason"].as_str().unwrap_or("?"),
        )?;
    }
    if derived["intact"] == false {
        anyhow::bail!(
            "the genealogy store is altered beside an intact chain: table {}, row {} ({source})",
            derived["table"].as_str().unwrap_or("?"),
            derived["key"].as_str().unwrap_or("?"),
        );
    }
    if bad.is_null() {
        Ok(())
    } else {
        anyhow::bail!(
            "the genealogy chain is altered: the first bad record is {} ({source})",
            bad["seq"]
        )
    }
}

fn timestamp(flag: &str, text: Option<&String>) -> anyhow::Result<Option<Timestamp>> {
    text.map(|text| {
        text.parse::<Timestamp>()
            .map_err(|err| anyhow::anyhow!("--{flag} {text:?}: {err} (RFC 3339)"))
    })
    .transpose()
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let lot = args
        .lot
        .as_deref()
        .map(Id::new)
        .transpose()
        .map_err(|err| anyhow::anyhow!("--lot: {err}"))?;
    let from = timestamp("from", args.from.as_ref())?;
    let to = timestamp("to", args.to.as_ref())?;
    let document: serde_json::Value = match &args.source.url {
        Some(url) => {
            let mut query = Vec::new();
            if let Some(lot) = &lot {
                query.push(format!("lot={}", encode(lot.as_str())));
            }
            for (key, at) in [("from", &from), ("to", &to)] {
                if let Some(at) = at {
                    query.push(format!("{key}={}", encode(&at.to_string())));
                }
            }
            let base = url.trim_end_matches('/');
            let mut request = format!("{base}/api/v1/epcis/events");
            if !query.is_empty() {
                request.push('?');
                request.push_str(&query.join("&"));
            }
            let (status, body) = get(request.clone()).await?;
            if status != 200 {
                anyhow::bail!("the genealogy service answered HTTP {status}: {body}");
            }
            serde_json::from_str(&body).with_context(|| format!("{request}: not JSON"))?
        }
        None => {
            let path = store_file(&args.source)?;
            let filter = ExportFilter {
                lots: lot.map(|lot| [lot].into()),
                from,
                to,
            };
            tokio::task::spawn_blocking(move || -> anyhow::Result<serde_json::Value> {
                let file = open(&path, "export")?;
                file.epcis(&filter, now_ms())
                    .with_context(|| format!("reading {}", path.display()))
            })
            .await??
        }
    };
    let text = serde_json::to_string_pretty(&document)?;
    match &args.out {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?,
        None => writeln!(std::io::stdout(), "{text}")?,
    }
    Ok(())
}

/// Percent-encodes a query value or path segment.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// `GET url`: the status and the body, whatever the status.
pub(crate) async fn get(url: String) -> anyhow::Result<(u16, String)> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url} (is the genealogy service running there?)"))?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}
