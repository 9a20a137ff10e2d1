//! The `kloset` grammar, modelled on `plakar`: `kloset at LOCATION COMMAND`.
//!
//! Plakar writes long options with one dash (`restore -to DIR`); both
//! `-to` and `--to` are accepted: [`normalize`] rewrites single-dash long
//! options before clap parses them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "kloset",
    version,
    about = "Encrypted, deduplicating backups in a Kloset store",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read the passphrase from this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase of the other store (sync) from this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub to_passphrase_file: Option<PathBuf>,
    /// When a snapshot object cannot be read, resolve `latest` or an id
    /// prefix among the readable snapshots anyway (warns naming the
    /// objects passed over, exit code 3); without it such a command fails.
    #[arg(long, global = true)]
    pub newest_readable: bool,
    /// Configuration directory for @NAME references.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/etc/klosetd/conf.d"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Top,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Top {
    /// Run COMMAND on the store at LOCATION (a path, fs://path, s3://bucket/prefix, or @STORE).
    At {
        /// The store location.
        location: String,
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Show the version and the built-in importers, exporters and store backends.
    Version,
}

/// Commands run against a store.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Initialise a new store at the location.
    Create(CreateArgs),
    /// Back up a directory.
    Backup(BackupArgs),
    /// List snapshots, or the entries of a directory in a snapshot.
    Ls {
        /// SNAP[:PATH]; without it, one line per snapshot.
        target: Option<String>,
    },
    /// Write one file of a snapshot to standard output.
    Cat {
        /// SNAP:PATH
        target: String,
    },
    /// Restore a snapshot or a path inside it.
    Restore(RestoreArgs),
    /// Verify the store's structure, and optionally its data.
    Check(CheckArgs),
    /// Show what changed between two snapshots.
    Diff {
        /// The older snapshot.
        a: String,
        /// The newer snapshot.
        b: String,
    },
    /// Show information about the store, or about one snapshot.
    Info {
        /// A snapshot (optional).
        snapshot: Option<String>,
    },
    /// Forget snapshots by a retention policy (their data goes with prune).
    Forget(super::forget::ForgetArgs),
    /// Delete data no snapshot references, repacking mostly unused packs.
    Prune(super::maintenance::PruneArgs),
    /// List the locks on the store: holder, host, operation, age and state.
    Locks,
    /// Copy snapshots into another store (SNAP|all to LOCATION|@STORE), re-chunked with its keys.
    Sync(super::sync::SyncArgs),
    /// Upgrade the store to the current format (once no older kloset writes to it).
    Upgrade(super::maintenance::UpgradeArgs),
}

/// `create` options.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Target pack size (e.g. 16MiB).
    #[arg(long, value_name = "SIZE", default_value = "16MiB")]
    pub pack_size: bytesize::ByteSize,
    /// Argon2id memory for the passphrase key, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Average chunk size (chunks are between half and 8 times it; 64KiB to 4MiB).
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    pub chunk_size: bytesize::ByteSize,
    /// zstd level for everything stored (1 to 19; higher is smaller and slower).
    #[arg(long, value_name = "LEVEL", default_value_t = kloset::header::DEFAULT_COMPRESSION_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression_level: i32,
}

/// `backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The directory to back up (or @SOURCE).
    pub path: String,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Skip entries matching this glob (repeatable; matched on the relative path and on the name).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Read every file, ignoring the previous snapshot.
    #[arg(long)]
    pub no_parent: bool,
}

/// `restore` options.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Directory that receives the restored contents (or @DEST); default: the current directory.
    #[arg(long = "to", value_name = "DIR")]
    pub to: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// SNAP[:PATH]
    pub target: String,
}

/// `check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read and verify data: all of it, or PERCENT of the packs.
    #[arg(long, value_name = "PERCENT", num_args = 0..=1, require_equals = true, default_missing_value = "100", value_parser = parse_percent)]
    pub read_data: Option<f64>,
}

/// Rewrites single-dash long options (`-to`, `-force`) to their double-dash
/// form; short flags (`-h`, `-V`) and values are left alone.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut after_double_dash = false;
    for a in args {
        let s = a.to_string_lossy();
        if after_double_dash {
            out.push(a);
            continue;
        }
        if s == "--" {
            after_double_dash = true;
        } else if s.len() > 2
            && s.starts_with('-')
            && !s.starts_with("--")
            && s.as_bytes()[1].is_ascii_alphabetic()
        {
            out.push(OsString::from(format!("-{s}")));
            continue;
        }
        out.push(a);
    }
    out
}

/// Parses `--read-data` values: `100`, `10`, `10%`, `2.5%`.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("--read-data takes a percentage, got {s:?}"))?;
    if !(0.0..=100.0).contains(&n) || n.is_nan() {
        return Err(format!("--read-data must be between 0 and 100, got {s:?}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn single_dash_long_options() {
        assert_eq!(
            norm(&["kloset", "at", "/s", "restore", "-to", "/d", "latest"]),
            ["kloset", "at", "/s", "restore", "--to", "/d", "latest"]
        );
        assert_eq!(norm(&["-h", "--json", "-V"]), ["-h", "--json", "-V"]);
        assert_eq!(norm(&["--", "-to"]), ["--", "-to"]);
    }

    #[test]
    fn parses_the_documented_grammar() {
        let cli = Cli::try_parse_from(normalize(
            ["kloset", "at", "/s", "check", "--read-data=10%"].map(OsString::from),
        ))
        .expect("parse");
        match cli.command {
            Top::At {
                command: StoreCommand::Check(c),
                ..
            } => assert_eq!(c.read_data, Some(10.0)),
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["kloset", "at", "/s", "check", "--read-data"]).expect("parse");
        assert!(
            matches!(cli.command, Top::At { command: StoreCommand::Check(CheckArgs { read_data: Some(p) }), .. } if p == 100.0)
        );
        assert!(Cli::try_parse_from(["kloset", "at", "/s", "frobnicate"]).is_err());
        assert_eq!(parse_percent("2.5%"), Ok(2.5));
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("x").is_err());
    }
}
