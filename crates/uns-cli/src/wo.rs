//! `uns wo`: the work orders of a running instance, through its HTTP API.

use std::io::Write;

use anyhow::Context;

use crate::cli::{WoArgs, WoCommand};

/// Runs one `uns wo` command; a refusal (HTTP 4xx/5xx) is an error with the service's reason.
pub(crate) async fn run(args: WoArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_owned();
    let (method, path) = match &args.command {
        WoCommand::List { status } => (
            "GET",
            match status {
                Some(status) => format!("/api/v1/work-orders?status={status}"),
                None => "/api/v1/work-orders".to_owned(),
            },
        ),
        WoCommand::Show { id } => ("GET", format!("/api/v1/work-orders/{id}")),
        WoCommand::Release { id } => ("POST", format!("/api/v1/work-orders/{id}/release")),
        WoCommand::Start { id } => ("POST", format!("/api/v1/work-orders/{id}/start")),
        WoCommand::Hold { id } => ("POST", format!("/api/v1/work-orders/{id}/hold")),
        WoCommand::Resume { id } => ("POST", format!("/api/v1/work-orders/{id}/resume")),
        WoCommand::Complete { id } => ("POST", format!("/api/v1/work-orders/{id}/complete")),
        WoCommand::Cancel { id } => ("POST", format!("/api/v1/work-orders/{id}/cancel")),
    };
    let url = format!("{base}{path}");
    let (status, body) = tokio::task::spawn_blocking(move || call(method, &url)).await??;
    let json: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("{method} {base}{path}: not JSON (HTTP {status}): {body}"))?;
    if status != 200 {
        let reason = json["error"].as_str().unwrap_or(&body).to_owned();
        anyhow::bail!("{reason} (HTTP {status})");
    }
    let mut out = std::io::stdout().lock();
    match args.command {
        WoCommand::List { .. } => {
            writeln!(
                out,
                "{:<24} {:<10} {:>21}  LINE",
                "ID", "STATUS", "GOOD/SCRAP OF PLANNED"
            )?;
            for order in json.as_array().into_iter().flatten() {
                writeln!(out, "{}", row(order))?;
            }
        }
        WoCommand::Show { .. } => writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?,
        _ => writeln!(out, "{}", row(&json))?,
    }
    Ok(())
}

fn row(order: &serde_json::Value) -> String {
    let quantity = |name: &str| order["quantities"][name]["qty"].as_f64().unwrap_or(0.0);
    format!(
        "{:<24} {:<10} {:>21}  {}",
        order["id"].as_str().unwrap_or("?"),
        order["status"].as_str().unwrap_or("?"),
        format!(
            "{}/{} of {}",
            quantity("good"),
            quantity("scrap"),
            quantity("planned")
        ),
        order["hierarchy_scope"].as_str().unwrap_or("?"),
    )
}

fn call(method: &str, url: &str) -> anyhow::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut response = if method == "POST" {
        agent.post(url).send_empty()
    } else {
        agent.get(url).call()
    }
    .with_context(|| format!("{method} {url} (is `uns up` running there? see --url)"))?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}
