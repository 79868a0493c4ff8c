//! SIGINT and SIGTERM (what `docker compose stop` sends) as a cancellation token.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// A token that is cancelled on the first SIGINT or SIGTERM.
pub(crate) fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down");
        cancel.cancel();
    });
    Ok(token)
}
