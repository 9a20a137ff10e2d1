//! `klosetd`: the declarative backup daemon: `run`, `validate`, `plan`,
//! `version`.

use std::process::ExitCode;

use clap::Parser;
use klosetd::daemon_cli::{Args, Command};

fn main() -> ExitCode {
    kloset::malloc::tune();
    kloset::dirfd::raise_fd_limit();
    klosetd::redact::install_panic_hook();
    let args = Args::parse();
    match args.command {
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        // notify logs harmless watch bookkeeping as warnings
                        // when a watched directory is replaced.
                        .unwrap_or_else(|_| "info,notify=error".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            match klosetd::app::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("klosetd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Plan {
            dir,
            state_dir,
            json,
            detailed_exitcode,
        } => match klosetd::plan::plan(&dir, state_dir.as_deref()) {
            Ok(plan) => {
                if json {
                    match serde_json::to_string_pretty(&plan) {
                        Ok(s) => println!("{s}"),
                        Err(e) => {
                            eprintln!("klosetd: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    print!("{}", plan.render());
                }
                if detailed_exitcode && !plan.changes.is_empty() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(klosetd::plan::PlanError::Invalid(errors)) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "{}: {} error(s); nothing to plan",
                    dir.display(),
                    errors.len()
                );
                ExitCode::FAILURE
            }
            Err(klosetd::plan::PlanError::State(e)) => {
                eprintln!("klosetd: cannot read the daemon state: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Version => {
            println!("klosetd {}", env!("CARGO_PKG_VERSION"));
            for (label, role) in [
                ("importers", klosetd::integrations::Role::Source),
                ("exporters", klosetd::integrations::Role::Destination),
                ("klosets", klosetd::integrations::Role::Store),
            ] {
                println!(
                    "{label}: {}",
                    klosetd::integrations::names_with(role).join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Command::Validate { dir, json } => match klosetd::config::load_and_validate(&dir) {
            Ok(state) => {
                for w in &state.warnings {
                    eprintln!("warning: {w}");
                }
                if json {
                    match serde_json::to_string_pretty(&state) {
                        Ok(s) => println!("{s}"),
                        Err(e) => eprintln!("klosetd: {e}"),
                    }
                } else {
                    println!(
                        "{}: valid (revision {}): {} stores, {} sources, {} destinations, {} schedules, {} tasks",
                        dir.display(),
                        &state.revision[..12],
                        state.stores.len(),
                        state.sources.len(),
                        state.destinations.len(),
                        state.schedules.len(),
                        state.tasks.len()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} error(s)", dir.display(), errors.len());
                ExitCode::FAILURE
            }
        },
    }
}
