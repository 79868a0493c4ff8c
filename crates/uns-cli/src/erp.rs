//! `uns erp ...`: talks HTTP to a running erp-bridge (the `/api/v1` routes of `uns up` or
//! `uns erp-bridge`).

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

/// `uns erp` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ErpCommand {
    /// List the confirmations that used up their attempts, or replay one.
    DeadLetters {
        /// Queue this dead letter again (its id from the list).
        #[arg(long)]
        replay: Option<u64>,
        /// The running instance's HTTP address.
        #[arg(long, env = "UNS_HTTP_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Bearer token, when the bridge has `[erp_bridge] tokens`.
        #[arg(long, env = "UNS_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

pub(crate) async fn run(command: ErpCommand) -> anyhow::Result<()> {
    let ErpCommand::DeadLetters { replay, url, token } = command;
    let base = url.trim_end_matches('/').to_owned();
    let (method, path) = match replay {
        Some(id) => ("POST", format!("/api/v1/dead-letters/{id}/replay")),
        None => ("GET", "/api/v1/dead-letters".to_owned()),
    };
    let target = format!("{base}{path}");
    let (status, body) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        let auth = token.map(|token| format!("Bearer {token}"));
        let mut response = if method == "POST" {
            let mut request = agent.post(&target);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.send_empty()
        } else {
            let mut request = agent.get(&target);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        }
        .with_context(|| format!("{method} {target}"))?;
        let status = response.status().as_u16();
        Ok((
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        ))
    })
    .await??;
    writeln!(std::io::stdout(), "{body}")?;
    anyhow::ensure!((200..300).contains(&status), "HTTP {status}");
    Ok(())
}
