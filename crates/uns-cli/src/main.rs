//! The `uns` binary: parses the command line, sets up logging and hands over to a command.
//!
//! Each subcommand lives in its own module; `main` stays thin (STYLE habit 3).

mod bench;
mod cli;
mod commands;
mod config;
mod erp;
mod errors;
mod genealogy;
mod oee;
mod services;
mod signal;
mod up;
mod wo;

use std::process::ExitCode;

/// Exit status for a configuration that cannot be used (nothing was started).
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = match cli::parse_from(std::env::args_os()) {
        Ok(parsed) => parsed,
        // Help, version and usage errors print themselves (usage errors exit 2).
        Err(err) => err.exit(),
    };
    init_tracing(&parsed.log);
    match commands::run(parsed.command).await {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`uns schemas | head`) is not an error of ours.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<config::ConfigFailure>().is_some() => {
            eprintln!("error: {}", errors::one_line(&err));
            ExitCode::from(EXIT_CONFIG)
        }
        Err(err) => {
            // The whole chain on one line, each cause once.
            eprintln!("error: {}", errors::one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
