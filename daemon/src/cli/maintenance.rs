//! `kloset at LOCATION prune | locks | upgrade`: giving space back, seeing
//! who holds the store, and moving a version 1 store to the lock protocol
//! that prune needs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use kloset::lock::{LockKind, list_locks};
use kloset::ops::prune::{PruneOptions, PruneReport, prune};
use kloset::ops::upgrade::upgrade;
use kloset::repository::now_ns;
use kloset::{Progress, Repository};
use serde::Serialize;

use super::args::Cli;
use super::output::{Bar, json, size};
use super::{EXIT_ERROR, EXIT_OK};

/// `prune` options.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Report what would be freed and repacked; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Repack packs with more than this share unused (a percentage: 20%, or 0.2).
    #[arg(long, value_name = "SHARE", default_value = "20%", value_parser = parse_share)]
    pub max_unused: f64,
    /// Repack at most this many bytes of packs in one run (e.g. 4GiB; 0 repacks nothing).
    #[arg(long, value_name = "SIZE", default_value = "4GiB")]
    pub max_repack: bytesize::ByteSize,
    /// The least time between marking packs and deleting them.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Give up waiting for other lock holders after this long (default: twice the stale period).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_wait: Option<Duration>,
}

/// `upgrade` options.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Give up waiting for version 1 writers after this long (default: twice the stale period).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_wait: Option<Duration>,
}

/// "20%" or "0.2" as a share in [0, 1].
fn parse_share(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("`{s}` is not a share (20% or 0.2)"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("`{s}` is not between 0% and 100%"));
    }
    Ok(value)
}

/// Runs `prune`.
pub fn run_prune(cli: &Cli, repo: &Repository, args: &PruneArgs) -> Result<i32> {
    let progress = Arc::new(Progress::new());
    let options = PruneOptions {
        dry_run: args.dry_run,
        max_unused: args.max_unused,
        max_repack_bytes: args.max_repack.as_u64(),
        grace: args.grace,
        max_wait: args.max_wait,
        progress: progress.clone(),
    };
    let report = {
        let _bar = Bar::start("prune", progress, cli.json);
        prune(repo, &options)?
    };
    if cli.json {
        json(&report);
    } else {
        print_prune(&report);
    }
    Ok(if report.unfound_blobs > 0 || report.packs_missing > 0 {
        EXIT_ERROR
    } else {
        EXIT_OK
    })
}

fn print_prune(r: &PruneReport) {
    let p = &r.plan;
    println!(
        "{} snapshot(s) reference {} of the {} in {} pack(s)",
        r.snapshots,
        size(p.used_bytes),
        size(p.bytes),
        p.packs
    );
    if r.dry_run {
        println!(
            "dry run: would delete {} unused pack(s) and {} pack(s) no index lists ({}), repack {} pack(s) ({}, copying {} still used), freeing about {}; nothing was changed",
            r.packs_unused,
            r.packs_orphaned,
            size(p.delete_bytes),
            r.packs_repacked,
            size(p.repack_bytes),
            size(p.repack_copy_bytes),
            size(r.bytes_freed.saturating_sub(p.repack_copy_bytes)),
        );
    } else {
        println!(
            "deleted {} pack(s), freed {}; repacked {} pack(s) into {}; index: {} object(s) written, {} deleted",
            r.packs_deleted,
            size(r.bytes_freed),
            r.packs_repacked,
            size(r.bytes_repack_written),
            r.index_written,
            r.index_deleted,
        );
        if r.index_entries_dropped > 0 {
            println!(
                "dropped the index entries of {} pack(s) that were gone and that no snapshot needs",
                r.index_entries_dropped
            );
        }
        if r.packs_spared > 0 {
            println!(
                "kept {} pack(s) that snapshots written during the prune need",
                r.packs_spared
            );
        }
        for who in &r.taken_over {
            println!("took over a stale lock: {who}");
        }
    }
    if r.unfound_blobs > 0 || r.packs_missing > 0 {
        eprintln!(
            "kloset: the store is damaged: {} referenced blob(s) in no pack, {} indexed pack(s) missing; run check",
            r.unfound_blobs, r.packs_missing
        );
    }
}

/// One lock as `locks` shows it.
#[derive(Debug, Serialize)]
struct LockLine {
    id: String,
    kind: LockKind,
    operation: String,
    holder: Option<String>,
    host: String,
    pid: u32,
    /// Seconds since the holder took it, by its clock against ours.
    age_s: i64,
    /// Seconds since the holder last rewrote it, likewise.
    refreshed_s: i64,
    /// `active` or `looks stale` (by the clocks; a prune decides by
    /// watching the lock unchanged for the stale period instead).
    state: &'static str,
}

/// Runs `locks`.
pub fn run_locks(cli: &Cli, repo: &Repository) -> Result<i32> {
    let stale = repo.lock_timing().stale_after;
    let now = now_ns();
    let secs = |ns: i64| now.saturating_sub(ns) / 1_000_000_000;
    let mut lines: Vec<LockLine> = list_locks(repo.storage(), repo.keys())?
        .into_iter()
        .map(|l| LockLine {
            id: l.id.to_hex(),
            kind: l.info.kind,
            operation: if l.info.operation.is_empty() {
                format!("{:?}", l.info.kind).to_lowercase()
            } else {
                l.info.operation.clone()
            },
            holder: l.info.holder.map(|h| h.to_hex()),
            host: l.info.host.clone(),
            pid: l.info.pid,
            age_s: secs(l.info.created_ns),
            refreshed_s: secs(l.info.refreshed_ns),
            state: if Duration::from_secs(secs(l.info.refreshed_ns).max(0) as u64) > stale {
                "looks stale"
            } else {
                "active"
            },
        })
        .collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.age_s));
    if cli.json {
        json(&serde_json::json!({
            "stale_after_s": stale.as_secs(),
            "locks": lines,
        }));
        return Ok(EXIT_OK);
    }
    if lines.is_empty() {
        println!("no locks");
        return Ok(EXIT_OK);
    }
    println!(
        "{:<10} {:<8} {:<10} {:<17} {:>8} {:>10}  state",
        "holder", "kind", "operation", "host[pid]", "age", "refreshed"
    );
    for l in &lines {
        let holder = l.holder.as_deref().map_or("(v1)", |h| &h[..8.min(h.len())]);
        println!(
            "{:<10} {:<8} {:<10} {:<17} {:>8} {:>10}  {}",
            holder,
            format!("{:?}", l.kind).to_lowercase(),
            l.operation,
            format!("{}[{}]", l.host, l.pid),
            human_secs(l.age_s),
            format!("{} ago", human_secs(l.refreshed_s)),
            l.state
        );
    }
    println!(
        "ages use each holder's clock; a prune takes a lock over only after watching it unchanged for {} on its own clock",
        humantime::format_duration(stale)
    );
    Ok(EXIT_OK)
}

fn human_secs(s: i64) -> String {
    if s < 0 {
        return "future".into();
    }
    humantime::format_duration(Duration::from_secs(s as u64)).to_string()
}

/// Runs `upgrade`.
pub fn run_upgrade(cli: &Cli, repo: &Repository, args: &UpgradeArgs) -> Result<i32> {
    let progress = Arc::new(Progress::new());
    let max_wait = args.max_wait.unwrap_or(repo.lock_timing().stale_after * 2);
    let report = {
        let _bar = Bar::start("upgrade", progress.clone(), cli.json);
        upgrade(repo, max_wait, &progress)?
    };
    if cli.json {
        json(&report);
    } else if report.from == report.to {
        println!(
            "the store is already at format version {}; nothing to do",
            report.to
        );
    } else {
        for who in &report.waited_for {
            println!("waited for an older writer: {who}");
        }
        println!(
            "upgraded the store from format version {} to {}: older kloset versions can no longer write to it",
            report.from, report.to
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_as_percent_or_fraction() {
        assert_eq!(parse_share("20%"), Ok(0.2));
        assert_eq!(parse_share("0.5"), Ok(0.5));
        assert_eq!(parse_share(" 100 % "), Ok(1.0));
        assert!(parse_share("120%").is_err());
        assert!(parse_share("-1").is_err());
        assert!(parse_share("lots").is_err());
    }
}
