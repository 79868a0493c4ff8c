//! `uns erp ...`: talks HTTP to a running erp-bridge (the `/api/v1` routes of `uns up` or
//! `uns erp-bridge`).

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

/// `uns erp` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ErpCommand {
    /// Post a production order (our JSON or a B2MML document) as an ERP does; prints the
    /// bridge's answer and exits non-zero when it refuses the order (with every problem).
    Post {
        /// The file, or `-` for standard input. XML (starts with `<`) goes as B2MML.
        file: std::path::PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Load the material master (a JSON array of `{id, description, uom}`): it replaces the
    /// master, or with --merge adds and updates those materials. Orders for materials not in
    /// it are refused.
    Materials {
        /// The file, or `-` for standard input.
        file: std::path::PathBuf,
        /// Keep the materials not in the file.
        #[arg(long)]
        merge: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List the confirmations that used up their attempts, or replay one.
    DeadLetters {
        /// Queue this dead letter again (its id from the list).
        #[arg(long)]
        replay: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
}

/// Which bridge, and how to authenticate.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The running instance's HTTP address.
    #[arg(long, env = "UNS_HTTP_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token, when the bridge has `[erp_bridge] tokens`.
    #[arg(long, env = "UNS_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) async fn run(command: ErpCommand) -> anyhow::Result<()> {
    let (method, path, target, body) = match command {
        ErpCommand::Post { file, target } => {
            let bytes = read_input(&file)?;
            let content_type = content_type(&bytes);
            (
                "POST",
                "/api/v1/production-orders".to_owned(),
                target,
                Some((content_type, bytes)),
            )
        }
        ErpCommand::Materials {
            file,
            merge,
            target,
        } => (
            "POST",
            format!(
                "/api/v1/master-data/materials?mode={}",
                if merge { "merge" } else { "replace" }
            ),
            target,
            Some(("application/json", read_input(&file)?)),
        ),
        ErpCommand::DeadLetters { replay, target } => match replay {
            Some(id) => (
                "POST",
                format!("/api/v1/dead-letters/{id}/replay"),
                target,
                None,
            ),
            None => ("GET", "/api/v1/dead-letters".to_owned(), target, None),
        },
    };
    let Target { url, token } = target;
    let target = format!("{}{path}", url.trim_end_matches('/'));
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
            match body {
                Some((content_type, bytes)) => request
                    .header("Content-Type", content_type)
                    .send(&bytes[..]),
                None => request.send_empty(),
            }
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

/// The bytes of `file`, or of standard input for `-`.
fn read_input(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("reading standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// B2MML when the document starts with `<` (after a byte-order mark and white space), else JSON.
fn content_type(bytes: &[u8]) -> &'static str {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match text.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'<') => "application/xml",
        _ => "application/json",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn xml_is_recognised_after_a_bom_and_white_space() {
        assert_eq!(
            content_type(b"\xEF\xBB\xBF\n  <ProductionSchedule/>"),
            "application/xml"
        );
        assert_eq!(content_type(b" {\"id\": \"po-1\"}"), "application/json");
    }
}
