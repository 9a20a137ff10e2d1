//! `kloset at LOCATION forget`: the retention flags, the plan printed with
//! the rule that keeps each snapshot, and the deletion of the others'
//! snapshot objects (their data goes with `prune`).

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use kloset::Repository;
use kloset::ops::forget::{
    ForgetPlan, ForgetReport, GroupBy, RetentionPolicy, forget, plan_forget,
};

use super::args::Cli;
use super::commands::UsageError;
use super::output::json;
use super::{EXIT_ERROR, EXIT_OK, EXIT_PARTIAL};

/// `forget` options.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Keep the N newest snapshots of each group.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken within DURATION (e.g. 14d, 36h) of its group's newest.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_within: Option<Duration>,
    /// Keep every snapshot carrying this tag (repeatable).
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Apply the policy to each group of snapshots sharing these fields
    /// (a comma-separated subset of host, source, tags).
    #[arg(long, value_name = "FIELDS", default_value = "host,source")]
    pub group_by: GroupBy,
    /// Show what would be removed and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl ForgetArgs {
    /// The policy the flags give; an empty one is a usage error.
    fn policy(&self) -> Result<RetentionPolicy> {
        let policy = RetentionPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tags.clone(),
        };
        policy
            .validate()
            .map_err(|e| UsageError(format!("forget: {e}")))?;
        Ok(policy)
    }
}

/// Runs `forget`: checks the policy before the store is opened (so a
/// refused policy needs no passphrase and touches nothing), plans, deletes
/// unless `--dry-run`, prints.
pub fn run(cli: &Cli, args: &ForgetArgs, open: impl FnOnce() -> Result<Repository>) -> Result<i32> {
    let policy = args.policy()?;
    let repo = open()?;
    let (snapshots, unreadable) = repo.snapshots_with_problems()?;
    for (object, error) in &unreadable {
        eprintln!(
            "kloset: warning: snapshot object {object} is unreadable ({error}); \
             forget neither counts nor deletes it (run check)"
        );
    }
    let plan = plan_forget(&snapshots, &policy, args.group_by)?;
    let report = forget(&repo, &plan, args.dry_run)?;
    for f in &report.failed {
        eprintln!("kloset: could not delete snapshot {}: {}", f.id, f.error);
    }
    if cli.json {
        let mut out = serde_json::to_value(&plan)?;
        if let Some(map) = out.as_object_mut() {
            map.insert("dry_run".into(), report.dry_run.into());
            map.insert("removed".into(), serde_json::to_value(&report.removed)?);
            map.insert("failed".into(), serde_json::to_value(&report.failed)?);
            map.insert(
                "unreadable".into(),
                unreadable
                    .iter()
                    .map(|(object, error)| {
                        serde_json::json!({ "object": object, "error": error.to_string() })
                    })
                    .collect(),
            );
        }
        json(&out);
    } else {
        print_plan(&plan, &report, repo.storage().location());
    }
    // Like `sync all`: done, but not with every snapshot object (exit 3),
    // so a script sees the damage and not only a warning.
    Ok(if !report.failed.is_empty() {
        EXIT_ERROR
    } else if !unreadable.is_empty() {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
}

fn print_plan(plan: &ForgetPlan, report: &ForgetReport, location: &str) {
    for (i, g) in plan.groups.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", g.key);
        let mut all: Vec<_> = g.keep.iter().chain(&g.remove).collect();
        all.sort_by_key(|s| std::cmp::Reverse((s.time_ns, s.id)));
        for s in all {
            if s.reasons.is_empty() {
                println!("remove {}  {}", s.short_id, s.local_time);
            } else {
                let why: Vec<String> = s.reasons.iter().map(ToString::to_string).collect();
                println!(
                    "keep   {}  {}  {}",
                    s.short_id,
                    s.local_time,
                    why.join(", ")
                );
            }
        }
    }
    if !plan.groups.is_empty() {
        println!();
    }
    let kept = plan.kept_count();
    if report.dry_run {
        println!(
            "dry run: {kept} kept, would remove {}; nothing was deleted",
            report.removed.len()
        );
    } else {
        let failed = if report.failed.is_empty() {
            String::new()
        } else {
            format!(", {} could not be deleted", report.failed.len())
        };
        println!("{kept} kept, {} removed{failed}", report.removed.len());
        if !report.removed.is_empty() {
            println!(
                "forget deletes snapshot objects only: their data stays in the store \
                 until `kloset at {location} prune` frees it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::Parser;

    use super::*;
    use crate::cli::args::{StoreCommand, Top, normalize};

    fn parse(args: &[&str]) -> ForgetArgs {
        let cli = Cli::try_parse_from(normalize(args.iter().map(OsString::from))).expect("parse");
        match cli.command {
            Top::At {
                command: StoreCommand::Forget(f),
                ..
            } => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_make_the_policy() {
        let f = parse(&[
            "kloset",
            "at",
            "/s",
            "forget",
            "-keep-within",
            "14d",
            "--keep-tag",
            "a",
            "--keep-tag",
            "b",
            "--keep-daily",
            "7",
            "--group-by",
            "host,tags",
            "-dry-run",
        ]);
        assert!(f.dry_run);
        assert_eq!(f.group_by.to_string(), "host,tags");
        let p = f.policy().expect("policy");
        assert_eq!(p.within, Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(p.tags, ["a", "b"]);
        assert_eq!(p.daily, Some(7));
        assert_eq!(
            parse(&["kloset", "at", "/s", "forget"]).group_by,
            GroupBy::default()
        );
    }

    #[test]
    fn an_empty_policy_is_a_usage_error() {
        let err = parse(&["kloset", "at", "/s", "forget", "--keep-last", "0"])
            .policy()
            .expect_err("empty");
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        assert!(
            Cli::try_parse_from(["kloset", "at", "/s", "forget", "--keep-within", "soon"]).is_err()
        );
    }
}
