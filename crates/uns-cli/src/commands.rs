//! What each subcommand does.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use uns_model::topic::UnsTopic;
use uns_sparkplug::topic::SparkplugTopic;

use crate::cli::{Command, Parsed, SchemasArgs, TopicCommand, TraceArgs, TraceFormat};
use crate::config::{DEFAULT_CONFIG, Settings};
use crate::signal::shutdown_on_signal;
use crate::up::App;

/// Runs the chosen subcommand.
pub(crate) async fn run(parsed: Parsed) -> anyhow::Result<()> {
    let command = match parsed {
        Parsed::Service {
            listed,
            args,
            flags,
        } => {
            let settings = Settings::external(&args.common, &args.broker, &listed.entry, &flags)?;
            return serve(settings).await;
        }
        Parsed::OeeReport(args) => return crate::oee::report(args).await,
        Parsed::Genealogy(command) => return crate::genealogy::run(command).await,
        Parsed::Builtin(command) => command,
    };
    match command {
        Command::Up(args) => {
            let settings = Settings::embedded(&args.common, &args.broker, args.demo, true)?;
            serve(settings).await
        }
        Command::Broker(args) => {
            serve(Settings::embedded(
                &args.common,
                &args.broker,
                false,
                false,
            )?)
            .await
        }
        Command::Schemas(args) => schemas(&args),
        Command::Topic(TopicCommand::Parse { topic, json }) => topic_parse(&topic, json),
        Command::Bench(command) => crate::bench::run(command).await,
        Command::Healthcheck { url } => healthcheck(&url).await,
        Command::Wo(args) => crate::wo::run(args).await,
        Command::Erp(command) => crate::erp::run(command).await,
        Command::Trace(args) => trace(args).await,
        Command::GenerateConfig => {
            write!(std::io::stdout(), "{DEFAULT_CONFIG}")?;
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Register the signal handlers first, so a SIGTERM during start-up is not lost.
    let shutdown = shutdown_on_signal()?;
    let mut app = App::start(settings).await?;
    let addresses = app.addresses();
    match (addresses.mqtt, addresses.ws) {
        (Some(mqtt), ws) => tracing::info!(
            %mqtt,
            ws = %ws.map_or_else(|| "off".to_owned(), |ws| ws.to_string()),
            http = %addresses.http,
            "UNS running; Ctrl-C to stop"
        ),
        (None, _) => tracing::info!(
            http = %addresses.http,
            services = %app.service_names().join(","),
            "running; Ctrl-C or SIGTERM to stop"
        ),
    }
    let failure = tokio::select! {
        () = shutdown.cancelled() => None,
        failure = app.next_failure() => Some(failure),
    };
    app.stop().await?;
    match failure {
        None => Ok(()),
        Some(failure) => anyhow::bail!(
            "service {} failed: {} (exiting so the container or service manager restarts it)",
            failure.service,
            failure.error
        ),
    }
}

fn schemas(args: &SchemasArgs) -> anyhow::Result<()> {
    let selected: Vec<_> = uns_model::schemas::ALL
        .iter()
        .filter(|schema| args.name.as_deref().is_none_or(|name| name == schema.name))
        .collect();
    if selected.is_empty() {
        let names: Vec<_> = uns_model::schemas::ALL.iter().map(|s| s.name).collect();
        anyhow::bail!(
            "no schema named {:?}; known: {}",
            args.name.as_deref().unwrap_or_default(),
            names.join(", ")
        );
    }
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for schema in selected {
                let path = dir.join(format!("{}.v{}.schema.json", schema.name, schema.version));
                write_file(&path, schema.json)?;
                writeln!(std::io::stdout(), "{}", path.display())?;
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for schema in selected {
                writeln!(stdout, "{}", schema.json.trim_end())?;
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A topic `uns topic parse` cannot parse: with `--json` the reason is also printed as JSON on
/// stdout (`{"topic", "error", "cause"}`), so a script reading stdout gets JSON either way; the
/// exit status is non-zero in both cases.
fn refuse(
    topic: &str,
    json: bool,
    what: &str,
    cause: &dyn std::fmt::Display,
) -> anyhow::Result<()> {
    if json {
        let refusal = serde_json::json!({
            "topic": topic,
            "error": what,
            "cause": cause.to_string(),
        });
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&refusal)?
        )?;
    }
    Err(anyhow::anyhow!("{what}: {topic}: {cause}"))
}

fn topic_parse(topic: &str, json: bool) -> anyhow::Result<()> {
    if topic
        .strip_prefix(uns_sparkplug::topic::NAMESPACE)
        .is_some_and(|rest| rest.starts_with('/'))
    {
        let parsed: SparkplugTopic = match topic.parse() {
            Ok(parsed) => parsed,
            Err(err) => return refuse(topic, json, "not a valid Sparkplug B topic", &err),
        };
        let explanation = sparkplug_explanation(&parsed);
        if json {
            writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&explanation)?
            )?;
        } else {
            for (key, value) in explanation.as_object().into_iter().flatten() {
                writeln!(
                    std::io::stdout(),
                    "{key:<10} {}",
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned)
                )?;
            }
        }
        return Ok(());
    }
    let parsed: UnsTopic = match topic.parse() {
        Ok(parsed) => parsed,
        Err(err) => return refuse(topic, json, "not a valid UNS topic", &err),
    };
    let explanation = parsed.explain();
    if json {
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&explanation)?
        )?;
        return Ok(());
    }
    writeln!(std::io::stdout(), "topic      {}", explanation.topic)?;
    writeln!(std::io::stdout(), "kind       {}", explanation.kind)?;
    for level in &explanation.location {
        let name = level
            .default_level
            .map_or_else(|| "?".to_owned(), |l| format!("{l:?}"));
        writeln!(
            std::io::stdout(),
            "location   {:indent$}{} ({name}, depth {})",
            "",
            level.segment,
            level.depth,
            indent = 2 * (level.depth - 1)
        )?;
    }
    writeln!(std::io::stdout(), "class      {}", explanation.class)?;
    for arg in &explanation.class_args {
        writeln!(std::io::stdout(), "  {:<8} {}", arg.name, arg.value)?;
    }
    writeln!(
        std::io::stdout(),
        "retained   {}",
        if explanation.retained { "yes" } else { "no" }
    )?;
    writeln!(std::io::stdout(), "owner      {}", explanation.owner)?;
    if let Some(schema) = &explanation.payload_schema {
        writeln!(std::io::stdout(), "payload    {schema}")?;
    }
    if !explanation.location.is_empty() {
        writeln!(
            std::io::stdout(),
            "note       ISA-95 levels shown are the defaults for each depth; the node's _meta document has the true level"
        )?;
    }
    Ok(())
}

fn sparkplug_explanation(topic: &SparkplugTopic) -> serde_json::Value {
    match topic {
        SparkplugTopic::Node { group, kind, edge } => serde_json::json!({
            "topic": topic.to_string(),
            "namespace": "Sparkplug B (spBv1.0)",
            "group": group,
            "message": kind.to_string(),
            "edge_node": edge,
        }),
        SparkplugTopic::Device {
            group,
            kind,
            edge,
            device,
        } => serde_json::json!({
            "topic": topic.to_string(),
            "namespace": "Sparkplug B (spBv1.0)",
            "group": group,
            "message": kind.to_string(),
            "edge_node": edge,
            "device": device,
        }),
        SparkplugTopic::State { host_id } => serde_json::json!({
            "topic": topic.to_string(),
            "namespace": "Sparkplug B (spBv1.0)",
            "message": "STATE (host application birth/death, retained JSON)",
            "host_id": host_id,
        }),
    }
}

async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let url = url.to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(3)))
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        Ok((
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        ))
    })
    .await??;
    writeln!(std::io::stdout(), "{body}")?;
    if status == 200 {
        Ok(())
    } else {
        anyhow::bail!("unhealthy: HTTP {status}")
    }
}

/// `uns trace`: a trace from the genealogy service's HTTP API, as a table, JSON or the recall CSV.
async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    use crate::genealogy::encode;
    let mut url = format!(
        "{}/api/v1/trace/{}?direction={}",
        args.url.trim_end_matches('/'),
        encode(&args.lot),
        if args.forward { "forward" } else { "backward" }
    );
    if let Some(depth) = args.depth {
        url.push_str(&format!("&depth={depth}"));
    }
    if let Some(as_of) = &args.as_of {
        url.push_str(&format!("&as_of={}", encode(as_of)));
    }
    match args.format {
        TraceFormat::Csv => url.push_str("&format=csv"),
        TraceFormat::Fsma => url.push_str("&format=fsma"),
        TraceFormat::Table | TraceFormat::Json => {}
    }
    let (status, body) = crate::genealogy::get(url).await?;
    if status != 200 {
        anyhow::bail!("the genealogy service answered HTTP {status}: {body}");
    }
    let mut out = std::io::stdout();
    match args.format {
        TraceFormat::Json | TraceFormat::Csv | TraceFormat::Fsma => {
            write!(out, "{body}")?;
            if !body.ends_with('\n') {
                writeln!(out)?;
            }
        }
        TraceFormat::Table => {
            let trace: serde_json::Value = serde_json::from_str(&body)?;
            let text = |value: &serde_json::Value| match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            writeln!(
                out,
                "{:<5} {:<24} {:<20} {:>12} {:<4} {:<11} {:<12} location",
                "depth", "lot", "material", "quantity", "uom", "status", "produced_by"
            )?;
            for lot in trace["lots"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{:<5} {:<24} {:<20} {:>12} {:<4} {:<11} {:<12} {}",
                    text(&lot["depth"]),
                    text(&lot["lot_id"]),
                    text(&lot["lot"]["material"]),
                    text(&lot["lot"]["quantity"]["qty"]),
                    text(&lot["lot"]["quantity"]["uom"]),
                    text(&lot["lot"]["status"]),
                    text(&lot["lot"]["produced_by"]),
                    text(&lot["lot"]["location"]),
                )?;
            }
            for transform in trace["transforms"].as_array().into_iter().flatten() {
                if transform["status"] == "off" {
                    writeln!(
                        out,
                        "mass balance off: event {} (work order {}): deviation {} beyond tolerance {}",
                        text(&transform["event_id"]),
                        text(&transform["wo_id"]),
                        text(&transform["deviation"]),
                        text(&transform["tolerance"]),
                    )?;
                }
            }
            if trace["truncated"] == true {
                writeln!(out, "(cut at depth {})", text(&trace["query"]["depth"]))?;
            }
        }
    }
    Ok(())
}
