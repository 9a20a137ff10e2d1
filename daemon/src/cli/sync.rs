//! `kloset at SRC sync SNAP|all to LOCATION|@STORE`: copy snapshots into
//! another store with its own passphrase (re-chunked with its keys), with
//! filters, a progress bar and a JSON report.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use kloset::ops::sync::{SyncFilter, SyncOptions, SyncReport, sync};
use kloset::repository::{Probe, probe};
use kloset::{Progress, Repository};

use super::args::Cli;
use super::commands::{UsageError, resolve_store};
use super::output::{Bar, json, size};
use super::passphrase::{Sources, obtain};

/// `sync` options.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// A snapshot (`latest`, or a hex id prefix), or `all`.
    pub snapshot: String,
    /// The word `to`.
    pub to: String,
    /// The target store: a location or @STORE.
    pub target: String,
    /// Only snapshots of this source name (repeatable).
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
    /// Only snapshots carrying this tag (repeatable; any of them).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only the N newest selected snapshots of each source.
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// The target is cold storage (sync never reads its packs; recorded
    /// in the report).
    #[arg(long)]
    pub cold: bool,
}

impl SyncArgs {
    fn filter(&self) -> Result<SyncFilter> {
        if self.to != "to" {
            return Err(UsageError(format!(
                "sync: expected `to` after the snapshot, found {:?} (sync SNAP|all to LOCATION|@STORE)",
                self.to
            ))
            .into());
        }
        if self.latest == Some(0) {
            return Err(UsageError("sync: --latest must be at least 1".into()).into());
        }
        Ok(SyncFilter {
            snapshots: if self.snapshot == "all" {
                Vec::new()
            } else {
                vec![self.snapshot.clone()]
            },
            sources: self.sources.clone(),
            tags: self.tags.clone(),
            latest: self.latest,
            skip_unreadable: false,
        })
    }
}

/// Opens the target store with its own passphrase.
fn open_target(cli: &Cli, spec: &str) -> Result<Repository> {
    let target = resolve_store(cli, spec)?;
    let storage = target
        .storage(false)
        .with_context(|| format!("opening the target store {spec}"))?;
    match probe(&storage).with_context(|| format!("reading the target store {spec}"))? {
        Probe::Store(_) => {}
        Probe::Empty => {
            return Err(UsageError(format!(
                "the target {spec} is not an initialised store (run `kloset at {spec} create` first)"
            ))
            .into());
        }
        Probe::Foreign(what) => {
            return Err(UsageError(format!(
                "the target {spec} is not a kloset store: it holds {what}"
            ))
            .into());
        }
    }
    let pass = match target.passphrase {
        Some(p) if cli.to_passphrase_file.is_none() => p,
        _ => obtain(
            Sources {
                file_flag: cli.to_passphrase_file.as_deref(),
                file_env: "KLOSET_PASSPHRASE_TO_FILE",
                value_env: "KLOSET_PASSPHRASE_TO",
            },
            false,
        )
        .context("the target store's passphrase")?,
    };
    Repository::open(storage, &pass).with_context(|| format!("opening the target store {spec}"))
}

/// Runs `sync`.
pub fn run(cli: &Cli, source: &Repository, args: &SyncArgs) -> Result<i32> {
    let mut filter = args.filter()?;
    filter.skip_unreadable = cli.newest_readable;
    let target = open_target(cli, &args.target)?;
    if target.store_id() == source.store_id() {
        return Err(UsageError("sync: the source and the target are the same store".into()).into());
    }
    let progress = Arc::new(Progress::new());
    let options = SyncOptions {
        filter,
        threads: args.threads,
        progress: progress.clone(),
        cold_target: args.cold,
    };
    let report = {
        let _bar = Bar::start("sync", progress, cli.json);
        sync(source, &target, &options)?
    };
    print(cli, &report, target.storage().location());
    Ok(super::commands::warn_passed_over(
        report.unreadable_passed_over.iter().map(String::as_str),
        "it was not synced (run check on the source store)",
    ))
}

fn print(cli: &Cli, report: &SyncReport, target: &str) {
    if cli.json {
        json(report);
        return;
    }
    for c in &report.copied {
        println!(
            "copied snapshot {} as {}: added {} ({} stored)",
            c.source.short(),
            c.target.short(),
            size(c.bytes_added),
            size(c.bytes_stored)
        );
    }
    for s in &report.skipped {
        println!(
            "snapshot {} is already in the target as {}",
            s.source.short(),
            s.target.short()
        );
    }
    println!(
        "synced to {target}: {} copied, {} already there, read {}, uploaded {}",
        report.copied.len(),
        report.skipped.len(),
        size(report.bytes_read),
        size(report.bytes_uploaded)
    );
}
