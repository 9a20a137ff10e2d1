//! The `kloset` command line: parse, run one command, map the outcome to an
//! exit code (0 success, 1 error, 2 usage, 3 done with some files
//! unreadable).

mod args;
mod commands;
mod forget;
mod maintenance;
mod named;
mod output;
mod passphrase;
mod sync;
mod transfer;

pub use args::{Cli, normalize};

use clap::Parser;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the command failed.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: bad usage.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: done, but some files could not be read or restored.
pub const EXIT_PARTIAL: i32 = 3;

/// Runs the command line with the process arguments; returns the exit code.
pub fn main() -> i32 {
    // Hooks (`--pre`, `--post`) never inherit the passphrase.
    kloset_connectors::command::hide_from_children(["KLOSET_PASSPHRASE".to_string()]);
    // The integrations' warnings (a write retried over an S3 outage) on
    // stderr, one line each; nothing else is logged.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "off,klosetd::integrations=warn",
        ))
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
    let cli = match Cli::try_parse_from(normalize(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "kloset: {}",
                kloset::error::without_repeats(&format!("{e:#}"))
            );
            if let Some(usage) = e.downcast_ref::<commands::UsageError>() {
                let _ = usage;
                return EXIT_USAGE;
            }
            EXIT_ERROR
        }
    }
}
