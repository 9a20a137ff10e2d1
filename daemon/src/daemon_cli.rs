//! The `klosetd` command line grammar (`run`, `validate`, `plan`,
//! `version`), in the library so that the man page and the shell
//! completions are generated from it (`xtask/`, docs/packaging.md).

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// Command line of klosetd.
#[derive(Debug, Parser)]
#[command(
    name = "klosetd",
    version,
    about = "Declarative backup daemon for Kloset stores"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon on a config directory until SIGTERM or SIGINT.
    Run {
        /// The config directory.
        #[arg(long, default_value = "/etc/klosetd/conf.d")]
        config: PathBuf,
    },
    /// Check a config directory: exits 1 and prints every error with file and line.
    Validate {
        /// The config directory.
        #[arg(default_value = "/etc/klosetd/conf.d")]
        dir: PathBuf,
        /// Print the validated desired state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what applying a config directory would add, change or remove,
    /// compared with the configuration the daemon has applied.
    Plan {
        /// The config directory.
        #[arg(default_value = "/etc/klosetd/conf.d")]
        dir: PathBuf,
        /// The running daemon's state directory (default: the `state_dir`
        /// that DIR declares).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 2 when there are changes (0: none, 1: error).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Show the version and the built-in importers, exporters and store backends.
    Version,
}

/// The clap command of `klosetd`, for generating its man page and completions.
pub fn command() -> clap::Command {
    Args::command()
}
