//! One function per `kloset` command, over the `kloset` library.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use kloset::ops::backup::{BackupOptions, ParentPolicy, backup_from};
use kloset::ops::browse::{self, Entry};
use kloset::ops::check::{CheckOptions, check};
use kloset::ops::export::export;
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::repository::CreateOptions;
use kloset::{Progress, Repository, Snapshot, Storage};
use serde::Serialize;

use super::args::{BackupArgs, CheckArgs, Cli, CreateArgs, RestoreArgs, StoreCommand, Top};
use super::output::{Bar, json, mode_string, size};
use super::passphrase::{Sources, obtain};
use super::{EXIT_ERROR, EXIT_OK, EXIT_PARTIAL};
use crate::integrations::{Endpoint, Purpose, RestoreTarget, Role, from_location, names_with};
use crate::tasks::hooks::run_hook;

/// An error in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Dispatches one parsed command line.
pub fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Top::Version => {
            version(cli.json);
            Ok(EXIT_OK)
        }
        Top::At { location, command } => run_at(&cli, location, command),
    }
}

fn version(as_json: bool) {
    if as_json {
        json(&serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "importers": names_with(Role::Source),
            "exporters": names_with(Role::Destination),
            "klosets": names_with(Role::Store),
        }));
    } else {
        println!("kloset {}", env!("CARGO_PKG_VERSION"));
        println!("importers: {}", names_with(Role::Source).join(", "));
        println!("exporters: {}", names_with(Role::Destination).join(", "));
        println!("klosets: {}", names_with(Role::Store).join(", "));
    }
}

/// A store's endpoint, and the passphrase when the configuration provides
/// it (`@NAME`).
pub(super) struct Target {
    pub(super) endpoint: Endpoint,
    pub(super) passphrase: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl Target {
    /// The store backend; `create` makes a missing local directory.
    pub(super) fn storage(&self, create: bool) -> Result<Storage> {
        Ok(self.endpoint.storage(create, Purpose::Work)?)
    }
}

pub(super) fn resolve_store(cli: &Cli, s: &str) -> Result<Target> {
    if let Some(name) = s.strip_prefix('@') {
        let named = super::named::store(&cli.config, name)?;
        return Ok(Target {
            endpoint: named.endpoint,
            passphrase: Some(named.passphrase),
        });
    }
    let endpoint = from_location(s, Role::Store).map_err(UsageError)?;
    Ok(Target {
        endpoint,
        passphrase: None,
    })
}

fn store_passphrase(cli: &Cli, confirm: bool) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    obtain(
        Sources {
            file_flag: cli.passphrase_file.as_deref(),
            file_env: "KLOSET_PASSPHRASE_FILE",
            value_env: "KLOSET_PASSPHRASE",
        },
        confirm,
    )
}

fn open_repo(cli: &Cli, location: &str) -> Result<Repository> {
    let target = resolve_store(cli, location)?;
    let storage = target.storage(false)?;
    let pass = match target.passphrase {
        Some(p) if cli.passphrase_file.is_none() => p,
        _ => store_passphrase(cli, false)?,
    };
    let repo = Repository::open(storage, &pass)?;
    for p in repo.index_problems() {
        eprintln!(
            "kloset: warning: index object {} is unreadable ({}); run check",
            p.object, p.error
        );
    }
    Ok(repo)
}

/// Resolves SNAP (`latest` or an id prefix): fails when a snapshot object
/// that may be the one asked for cannot be read, unless `--newest-readable`;
/// then it warns naming the objects passed over. Returns the exit code the
/// command ends with when it succeeds (partial when objects were passed over).
fn resolve_snapshot(cli: &Cli, repo: &Repository, spec: &str) -> Result<(Snapshot, i32)> {
    let (snapshot, passed) = repo
        .resolve_snapshot_minding(spec, cli.newest_readable)
        .map_err(|e| match e.kind() {
            kloset::ErrorKind::Corrupt => anyhow!(
                "resolving snapshot {spec}: {e}; pass --newest-readable to use the newest \
                 readable snapshot instead"
            ),
            _ => anyhow::Error::new(e),
        })?;
    let code = warn_passed_over(
        passed.iter().map(|(object, _)| object.as_str()),
        "it was passed over (--newest-readable), so an older snapshot may have been used",
    );
    Ok((snapshot, code))
}

/// Warns about each unreadable snapshot object passed over, saying what
/// that cost (`consequence`); the exit code: partial when there was one.
pub(super) fn warn_passed_over<'a>(
    objects: impl Iterator<Item = &'a str>,
    consequence: &str,
) -> i32 {
    let mut code = EXIT_OK;
    for object in objects {
        eprintln!("kloset: warning: snapshot object {object} cannot be read; {consequence}");
        code = EXIT_PARTIAL;
    }
    code
}

fn run_at(cli: &Cli, location: &str, command: &StoreCommand) -> Result<i32> {
    if let StoreCommand::Create(args) = command {
        return create(cli, location, args);
    }
    if let StoreCommand::Forget(args) = command {
        return super::forget::run(cli, args, || open_repo(cli, location));
    }
    let repo = open_repo(cli, location)?;
    match command {
        StoreCommand::Create(_) | StoreCommand::Forget(_) => Ok(EXIT_ERROR),
        StoreCommand::Backup(args) => run_backup(cli, &repo, args),
        StoreCommand::Ls { target } => ls(cli, &repo, target.as_deref()),
        StoreCommand::Cat { target } => cat(cli, &repo, target),
        StoreCommand::Restore(args) => run_restore(cli, &repo, args),
        StoreCommand::Check(args) => run_check(cli, &repo, args),
        StoreCommand::Diff { a, b } => diff(cli, &repo, a, b),
        StoreCommand::Info { snapshot } => info(cli, &repo, snapshot.as_deref()),
        StoreCommand::Prune(args) => super::maintenance::run_prune(cli, &repo, args),
        StoreCommand::Locks => super::maintenance::run_locks(cli, &repo),
        StoreCommand::Upgrade(args) => super::maintenance::run_upgrade(cli, &repo, args),
        StoreCommand::Sync(args) => super::sync::run(cli, &repo, args),
    }
}

fn create(cli: &Cli, location: &str, args: &CreateArgs) -> Result<i32> {
    let mut target = resolve_store(cli, location)?;
    let pass = match target.passphrase.take() {
        Some(p) if cli.passphrase_file.is_none() => p,
        _ => store_passphrase(cli, true)?,
    };
    let storage = target.storage(true)?;
    let mut options = CreateOptions::default();
    options.config.pack_size = u32::try_from(args.pack_size.as_u64())
        .map_err(|_| UsageError("--pack-size is too large".into()))?;
    options.kdf = kloset::crypto::KdfParams::with_cost(
        args.kdf_memory_mib.saturating_mul(1024),
        3,
        kloset::crypto::DEFAULT_LANES,
    );
    options.config.chunker = chunker_params(args.chunk_size)?;
    options.config.compression_level = args.compression_level;
    let repo = Repository::create(storage, &pass, options)?;
    if cli.json {
        json(
            &serde_json::json!({ "store_id": repo.store_id(), "location": repo.storage().location() }),
        );
    } else {
        println!(
            "created kloset store {} at {}",
            repo.store_id().short(),
            repo.storage().location()
        );
    }
    Ok(EXIT_OK)
}

/// Chunker parameters around an average size: half of it at least, eight
/// times at most (the defaults' proportions: 512 KiB, 1 MiB, 8 MiB).
fn chunker_params(average: bytesize::ByteSize) -> Result<kloset::chunker::ChunkerParams> {
    let avg = u32::try_from(average.as_u64())
        .ok()
        .filter(|a| (64 << 10..=4 << 20).contains(a) && a.is_power_of_two())
        .ok_or_else(|| {
            UsageError(format!(
                "--chunk-size must be a power of two from 64KiB to 4MiB, got {average}"
            ))
        })?;
    let params = kloset::chunker::ChunkerParams {
        min_size: avg / 2,
        avg_size: avg,
        max_size: avg * 8,
        normalization: 1,
    };
    params
        .validate()
        .map_err(|e| UsageError(format!("--chunk-size {average}: {e}")))?;
    Ok(params)
}

/// A snapshot as shown in JSON output.
#[derive(Serialize)]
struct SnapshotView<'a> {
    id: kloset::SnapshotId,
    short_id: String,
    time: String,
    host: &'a str,
    source: &'a str,
    tags: &'a [String],
    parent: Option<kloset::SnapshotId>,
    tree: kloset::BlobId,
    stats: &'a kloset::snapshot::SnapshotStats,
    errors: &'a [kloset::snapshot::FileError],
}

fn view(s: &Snapshot) -> SnapshotView<'_> {
    SnapshotView {
        id: s.id,
        short_id: s.id.short(),
        time: s.time_rfc3339(),
        host: &s.host,
        source: &s.source,
        tags: &s.tags,
        parent: s.parent,
        tree: s.tree,
        stats: &s.stats,
        errors: &s.errors,
    }
}

fn run_backup(cli: &Cli, repo: &Repository, args: &BackupArgs) -> Result<i32> {
    let from = super::transfer::backup_source(&cli.config, &args.path)?;
    let mut excludes = from.excludes.clone();
    excludes.extend(args.excludes.iter().cloned());
    let progress = Arc::new(Progress::new());
    let options = BackupOptions {
        source: from.name.clone(),
        tags: args.tags.clone(),
        excludes,
        parent: if args.no_parent {
            ParentPolicy::None
        } else {
            ParentPolicy::Latest
        },
        progress: progress.clone(),
        all_or_nothing: from.all_or_nothing,
        ..Default::default()
    };
    let hooks = from
        .def
        .as_ref()
        .map(|d| (d.pre.clone(), d.post.clone(), d.name.clone()));
    let store = repo.storage().location().to_string();
    if let Some((pre, _, name)) = &hooks {
        let env = [("KLOSETD_SOURCE", name.as_str()), ("KLOSETD_STORE", &store)];
        run_hook("pre", pre, &env, &progress).map_err(|e| anyhow!(e))?;
    }
    let result = {
        let _bar = Bar::start("backup", progress.clone(), cli.json);
        backup_from(repo, from.importer.as_ref(), &options)
    };
    if let Some((_, post, name)) = &hooks {
        let status = if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        let env = [
            ("KLOSETD_SOURCE", name.as_str()),
            ("KLOSETD_STORE", &store),
            ("KLOSETD_STATUS", status),
        ];
        if let Err(e) = run_hook("post", post, &env, &progress) {
            eprintln!("kloset: {e}");
            if result.is_ok() {
                return Err(anyhow!("{e} (the snapshot was written)"));
            }
        }
    }
    let snap = result?;
    for e in &snap.errors {
        eprintln!("kloset: could not read {}: {}", e.path, e.error);
    }
    if cli.json {
        json(&serde_json::json!({ "snapshot": view(&snap) }));
    } else {
        let s = &snap.stats;
        println!(
            "snapshot {} created: {} files, {} dirs, {} ({} unchanged files), added {} ({} stored) in {:.1}s{}",
            snap.id.short(),
            s.files,
            s.dirs,
            size(s.bytes),
            s.files_unchanged,
            size(s.bytes_added),
            size(s.bytes_stored),
            s.duration_ms as f64 / 1000.0,
            if snap.errors.is_empty() {
                String::new()
            } else {
                format!(", {} unreadable", snap.errors.len())
            }
        );
    }
    Ok(if snap.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

/// Splits `SNAP[:PATH]`.
fn split_target(target: &str) -> (&str, &str) {
    match target.split_once(':') {
        Some((snap, path)) => (snap, if path.is_empty() { "/" } else { path }),
        None => (target, "/"),
    }
}

fn ls(cli: &Cli, repo: &Repository, target: Option<&str>) -> Result<i32> {
    let Some(target) = target else {
        let snaps = repo.snapshots()?;
        if cli.json {
            json(&serde_json::json!({ "snapshots": snaps.iter().map(view).collect::<Vec<_>>() }));
        } else {
            for s in &snaps {
                let tags = if s.tags.is_empty() {
                    String::new()
                } else {
                    format!("  tags={}", s.tags.join(","))
                };
                println!(
                    "{}  {}  {}  {:>10}  {}{}",
                    s.id.short(),
                    s.time_rfc3339(),
                    s.host,
                    size(s.stats.bytes),
                    s.source,
                    tags
                );
            }
        }
        return Ok(EXIT_OK);
    };
    let (snap, path) = split_target(target);
    let (snapshot, code) = resolve_snapshot(cli, repo, snap)?;
    let entries = browse::list_dir(repo, &snapshot, path)?;
    if cli.json {
        json(&serde_json::json!({ "entries": entries }));
    } else {
        for e in &entries {
            print_entry(e);
        }
    }
    Ok(code)
}

fn print_entry(e: &Entry) {
    let link = e
        .target
        .as_ref()
        .map(|t| format!(" -> {t}"))
        .unwrap_or_default();
    println!(
        "{} {:>5} {:>5} {:>10} {} {}{}",
        mode_string(e.kind, e.mode),
        e.uid,
        e.gid,
        size(e.size),
        kloset::snapshot::format_time(e.mtime_ns),
        e.name,
        link
    );
}

fn cat(cli: &Cli, repo: &Repository, target: &str) -> Result<i32> {
    let (snap, path) = split_target(target);
    if path == "/" {
        bail!(UsageError("cat needs SNAP:PATH naming a file".into()));
    }
    let (snapshot, code) = resolve_snapshot(cli, repo, snap)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    match browse::cat(repo, &snapshot, path, &mut out) {
        Err(kloset::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(code);
        }
        other => {
            other?;
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
        other => other.map(|_| code).context("writing to standard output"),
    }
}

fn run_restore(cli: &Cli, repo: &Repository, args: &RestoreArgs) -> Result<i32> {
    let target = super::transfer::restore_target(&cli.config, args.to.as_deref())?;
    let (snap, path) = split_target(&args.target);
    let (snapshot, code) = resolve_snapshot(cli, repo, snap)?;
    let progress = Arc::new(Progress::new());
    let options = RestoreOptions {
        force: args.force,
        progress: progress.clone(),
        ..Default::default()
    };
    let (to, report) = {
        let _bar = Bar::start("restore", progress, cli.json);
        match &target {
            RestoreTarget::Local(dir) => (
                dir.display().to_string(),
                restore(repo, &snapshot, path, dir, &options)?,
            ),
            RestoreTarget::Exporter(x) => (
                x.target(),
                export(repo, &snapshot, path, x.as_ref(), &options)?,
            ),
        }
    };
    for e in &report.errors {
        eprintln!("kloset: could not restore {e}");
    }
    if cli.json {
        json(&serde_json::json!({ "snapshot": snapshot.id, "to": to, "report": report }));
    } else {
        println!(
            "restored {} files, {} dirs, {} other entries ({}) from {} to {}",
            report.files,
            report.dirs,
            report.others,
            size(report.bytes),
            snapshot.id.short(),
            to
        );
    }
    Ok(if report.errors.is_empty() {
        code
    } else {
        EXIT_PARTIAL
    })
}

fn run_check(cli: &Cli, repo: &Repository, args: &CheckArgs) -> Result<i32> {
    let percent = args.read_data;
    let progress = Arc::new(Progress::new());
    let options = CheckOptions {
        read_data_percent: percent,
        progress: progress.clone(),
    };
    let report = {
        let _bar = Bar::start("check", progress, cli.json);
        check(repo, &options)?
    };
    if cli.json {
        json(&serde_json::json!({ "ok": report.is_ok(), "report": report }));
    } else {
        for w in &report.warnings {
            eprintln!("kloset: warning: {w}");
        }
        for p in &report.problems {
            println!("damaged: {}: {}", p.object, p.problem);
        }
        for a in &report.affected {
            println!(
                "affected: snapshot {} {}: {}",
                &a.snapshot[..8.min(a.snapshot.len())],
                a.path,
                a.reason
            );
        }
        let read = if percent.is_some() {
            format!(
                ", read {} packs ({} blobs)",
                report.packs_read, report.blobs_read
            )
        } else {
            String::new()
        };
        println!(
            "{}: {} snapshots, {} trees, {} packs{read}{}",
            if report.is_ok() { "ok" } else { "FAILED" },
            report.snapshots,
            report.trees,
            report.packs,
            if report.is_ok() {
                String::new()
            } else {
                format!(", {} problems", report.problems.len())
            }
        );
    }
    Ok(if report.is_ok() { EXIT_OK } else { EXIT_ERROR })
}

fn diff(cli: &Cli, repo: &Repository, a: &str, b: &str) -> Result<i32> {
    let (sa, code_a) = resolve_snapshot(cli, repo, a)?;
    let (sb, code_b) = resolve_snapshot(cli, repo, b)?;
    let changes = browse::diff(repo, &sa, &sb)?;
    if cli.json {
        json(&serde_json::json!({ "changes": changes }));
    } else {
        for c in &changes {
            println!("{} {}", c.change, c.path);
        }
    }
    Ok(code_a.max(code_b))
}

fn info(cli: &Cli, repo: &Repository, snapshot: Option<&str>) -> Result<i32> {
    if let Some(spec) = snapshot {
        let (s, code) = resolve_snapshot(cli, repo, spec)?;
        if cli.json {
            json(&serde_json::json!({ "snapshot": view(&s) }));
        } else {
            let st = &s.stats;
            println!("id: {}", s.id);
            println!("time: {}", s.time_rfc3339());
            println!("host: {}", s.host);
            println!("source: {}", s.source);
            println!("tags: {}", s.tags.join(", "));
            println!(
                "parent: {}",
                s.parent.map(|p| p.to_hex()).unwrap_or_else(|| "-".into())
            );
            println!(
                "files: {}  dirs: {}  others: {}",
                st.files, st.dirs, st.others
            );
            println!("size: {}", size(st.bytes));
            println!(
                "added: {} ({} stored, {} blobs)",
                size(st.bytes_added),
                size(st.bytes_stored),
                st.blobs_added
            );
            println!("duration: {:.1}s", st.duration_ms as f64 / 1000.0);
            println!("unreadable files: {}", s.errors.len());
        }
        return Ok(code);
    }
    let i = browse::info(repo)?;
    if cli.json {
        json(&i);
    } else {
        println!("location: {}", i.location);
        println!("store id: {}", i.store_id);
        println!("format version: {}", i.version);
        println!("created: {}", i.created);
        println!(
            "chunking: fastcdc min {} avg {} max {}",
            size(i.chunker.min_size as u64),
            size(i.chunker.avg_size as u64),
            size(i.chunker.max_size as u64)
        );
        println!(
            "pack size: {}  compression: zstd level {}",
            size(i.pack_size as u64),
            i.compression_level
        );
        println!("snapshots: {}", i.snapshots);
        println!(
            "packs: {}  index objects: {}  blobs: {}",
            i.packs, i.index_objects, i.blobs
        );
        println!(
            "data: {} in blobs, {} stored, {} across all snapshots",
            size(i.raw_bytes),
            size(i.stored_bytes),
            size(i.logical_bytes)
        );
    }
    Ok(EXIT_OK)
}
