//! Retention and prune end to end with the real daemon:
//!
//! - a backup schedule with `retention = { keep_last = 2 }`, run several
//!   times on changing data, leaves exactly 2 snapshots of its group, and
//!   `/api/v1/tasks/{id}` of a run shows the snapshot ids it forgot;
//! - a one-shot prune task then gives space back (the store shrinks) and
//!   the newest kept snapshot still restores bit-exact, the other checks;
//! - `/metrics` shows the prune and retention counters and the lock
//!   poller's gauges;
//! - scheduled prunes and scheduled backups of one store run side by side,
//!   and every kept snapshot restores afterwards.
//!
//! Timing: `KLOSET_LOCK_STALE_AFTER` and `KLOSETD_LOCK_POLL_INTERVAL`
//! shorten the lock periods, the prune task sets `grace = "1s"`.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::cli::Kloset;
use common::daemon::{Daemon, LIMIT, lit, time, wait_for, write_like_ansible};
use common::rng::SplitMix64;
use serde_json::Value;

const PASS: &str = "daemon-prune-passphrase-Q8z";

fn base(root: &Path) -> String {
    format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\nmax_concurrent_tasks = 2\n\n\
         [store.main]\nlocation = {}\npassphrase_file = {}\n\n\
         [source.src]\nlocation = {}\n\n",
        lit(&root.join("state")),
        lit(&root.join("store")),
        lit(&root.join("pass")),
        lit(&root.join("src")),
    )
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        total += if p.is_dir() {
            dir_bytes(&p)
        } else {
            fs::metadata(&p).map(|m| m.len()).unwrap_or(0)
        };
    }
    total
}

fn snapshot_ids(cli: &Kloset, store: &Path) -> Vec<String> {
    let out = cli.must_at(store, ["--json", "ls"]);
    let v: Value = serde_json::from_str(&out.stdout_str()).expect("ls json");
    v["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

fn write_data(root: &Path, seed: u64) {
    let data = SplitMix64::new(seed).bytes(2 * 1024 * 1024 + seed as usize);
    fs::write(root.join("src/data.bin"), data).expect("write data");
}

#[test]
fn retention_keeps_two_and_a_prune_gives_space_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    fs::create_dir_all(root.join("src")).expect("mkdir src");
    fs::create_dir_all(root.join("store")).expect("mkdir store");
    fs::create_dir_all(root.join("conf")).expect("mkdir conf");
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    fs::write(root.join("src/hello.txt"), b"hello\n").expect("write");
    write_data(&root, 1);
    let conf = root.join("conf");
    write_like_ansible(
        &conf,
        "10-all.toml",
        &format!(
            "{}[schedule.often]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\
             cron = \"*/2 * * * * *\"\nretention = {{ keep_last = 2 }}\n",
            base(&root)
        ),
    );
    let d = Daemon::start(
        &conf,
        &root.join("klosetd.log"),
        &[
            ("KLOSET_LOCK_STALE_AFTER", "3s"),
            ("KLOSETD_LOCK_POLL_INTERVAL", "1s"),
        ],
    );

    // New data after every run, so forgotten snapshots own data.
    let mut seen = 0;
    wait_for("four succeeded scheduled backups", LIMIT * 2, || {
        let done = d.tasks("schedule=often&status=succeeded&limit=50");
        if done.len() > seen {
            seen = done.len();
            write_data(&root, 10 + seen as u64);
        }
        if let Some(failed) = d.tasks("schedule=often&status=failed").first() {
            panic!("a scheduled backup failed: {failed}\n{}", d.log_text());
        }
        (seen >= 4).then_some(()).ok_or(format!("{seen} run(s)"))
    });

    // Stop the schedule; a one-shot backup of the same group with the same
    // retention runs on the final data.
    write_data(&root, 99);
    write_like_ansible(
        &conf,
        "10-all.toml",
        &format!(
            "{}[task.final]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\
             retention = {{ keep_last = 2 }}\n",
            base(&root)
        ),
    );
    wait_for("the final backup and no scheduled run left", LIMIT, || {
        let running = d.tasks("status=running");
        let fin = d.tasks("task=final&status=succeeded");
        (running.is_empty() && !fin.is_empty())
            .then_some(())
            .ok_or(format!("running {running:?}"))
    });
    let cli = Kloset::new().passphrase(PASS);
    let store = root.join("store");
    let ids = snapshot_ids(&cli, &store);
    assert_eq!(ids.len(), 2, "exactly two snapshots kept: {ids:?}");
    let fin = &d.tasks("task=final&status=succeeded")[0];
    let one = d.json(&format!("/api/v1/tasks/{}", fin["id"]));
    let retention = &one["stats"]["retention"];
    assert_eq!(retention["applied"], true, "{one}");
    assert_eq!(retention["kept"], 2, "{one}");
    let forgotten: Vec<String> = retention["forgotten_ids"]
        .as_array()
        .expect("forgotten_ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    assert!(!forgotten.is_empty(), "{one}");
    assert!(
        forgotten.iter().all(|f| !ids.contains(f)),
        "{one} vs {ids:?}"
    );
    assert!(ids.contains(&one["snapshot_id"].as_str().expect("id").to_string()));
    // Every scheduled run after the second forgot what the policy dropped.
    let forgot_total: u64 = d
        .tasks("schedule=often&status=succeeded&limit=50")
        .iter()
        .map(|t| t["stats"]["retention"]["forgotten"].as_u64().unwrap_or(0))
        .sum();
    assert!(forgot_total >= 2, "scheduled runs forgot {forgot_total}");

    // A one-shot prune gives the forgotten snapshots' data back.
    let before = dir_bytes(&store);
    write_like_ansible(
        &conf,
        "10-all.toml",
        &format!(
            "{}[task.final]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\
             retention = {{ keep_last = 2 }}\n\n\
             [task.gc]\ntask = \"prune\"\nstore = \"main\"\nmax_unused = \"0%\"\ngrace = \"1s\"\n",
            base(&root)
        ),
    );
    wait_for("the prune", LIMIT, || {
        if let Some(failed) = d.tasks("task=gc&status=failed").first() {
            panic!("the prune failed: {failed}\n{}", d.log_text());
        }
        (!d.tasks("task=gc&status=succeeded").is_empty())
            .then_some(())
            .ok_or("not yet".to_string())
    });
    let gc = &d.tasks("task=gc&status=succeeded")[0];
    let freed = gc["stats"]["bytes_freed"].as_u64().unwrap_or(0);
    assert!(freed > 1024 * 1024, "{gc}");
    assert!(
        gc["stats"]["packs_deleted"].as_u64().unwrap_or(0) > 0,
        "{gc}"
    );
    let after = dir_bytes(&store);
    assert!(after < before, "store {before} -> {after} bytes");
    assert_eq!(snapshot_ids(&cli, &store), ids);

    // The newest restores bit-exact; every kept snapshot checks with data.
    let out = root.join("out");
    cli.must_at(
        &store,
        ["restore", "-to", out.to_str().expect("utf8"), "latest"],
    );
    for name in ["data.bin", "hello.txt"] {
        let want = fs::read(root.join("src").join(name)).expect("src");
        let got = fs::read(out.join(name)).expect("restored");
        assert!(want == got, "{name} differs after the prune");
    }
    cli.must_at(&store, ["check", "--read-data=100"]);

    // Metrics: the counters and the lock gauges.
    wait_for(
        "prune, retention and lock metrics",
        Duration::from_secs(30),
        || {
            let (code, text) = d.get("/metrics");
            let value = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{name}{{store=\"main\"}} ")))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
            };
            let ok = code == 200
                && value("klosetd_prune_freed_bytes_total") == Some(freed as f64)
                && value("klosetd_prune_repacked_packs_total").is_some()
                && value("klosetd_retention_forgotten_snapshots_total")
                    .is_some_and(|v| v >= forgot_total as f64)
                && value("klosetd_store_lock_holders").is_some()
                && value("klosetd_store_oldest_lock_age_seconds").is_some();
            ok.then_some(()).ok_or(text)
        },
    );
}

/// Scheduled backups and scheduled prunes of one store in one daemon run
/// side by side (at least one prune overlaps a backup in time); afterwards
/// every kept snapshot restores and the store checks clean with data.
#[test]
fn prunes_and_backups_of_one_store_run_side_by_side() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    for dir in ["src", "store", "conf"] {
        fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    write_data(&root, 1);
    let conf = root.join("conf");
    write_like_ansible(
        &conf,
        "10-all.toml",
        &format!(
            "{}[schedule.often]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\
             cron = \"* * * * * *\"\nretention = {{ keep_last = 2 }}\n\n\
             [schedule.gc]\ntask = \"prune\"\nstore = \"main\"\ncron = \"*/2 * * * * *\"\n\
             max_unused = \"10%\"\ngrace = \"1s\"\n",
            base(&root)
        ),
    );
    // The store exists before the daemon starts: the first prune may be due
    // at the first backup's tick, and a prune does not initialise a store.
    Kloset::new()
        .passphrase(PASS)
        .must_at(root.join("store"), ["create", "--kdf-memory-mib", "8"]);
    let d = Daemon::start(
        &conf,
        &root.join("klosetd.log"),
        &[("KLOSET_LOCK_STALE_AFTER", "5s")],
    );
    let overlapping = |d: &Daemon| -> usize {
        let backups = d.tasks("schedule=often&status=succeeded&limit=200");
        let prunes = d.tasks("schedule=gc&status=succeeded&limit=200");
        let span = |t: &Value| Some((time(&t["started_at"])?, time(&t["finished_at"])?));
        prunes
            .iter()
            .filter_map(span)
            .filter(|(ps, pe)| {
                backups
                    .iter()
                    .filter_map(span)
                    .any(|(bs, be)| bs < *pe && *ps < be)
            })
            .count()
    };
    let mut runs = 0;
    wait_for("three prunes, one beside a backup", LIMIT * 2, || {
        for kind in ["often", "gc"] {
            if let Some(failed) = d.tasks(&format!("schedule={kind}&status=failed")).first() {
                panic!("a scheduled {kind} run failed: {failed}\n{}", d.log_text());
            }
        }
        let done = d.tasks("schedule=often&status=succeeded&limit=200").len();
        if done > runs {
            runs = done;
            write_data(&root, 100 + runs as u64);
        }
        let prunes = d.tasks("schedule=gc&status=succeeded&limit=200").len();
        let beside = overlapping(&d);
        (prunes >= 3 && beside >= 1)
            .then_some(())
            .ok_or(format!("{prunes} prune(s), {beside} beside a backup"))
    });
    // Stop both schedules and let what runs finish.
    write_like_ansible(&conf, "10-all.toml", &base(&root));
    wait_for("no run left", LIMIT, || {
        let running = d.tasks("status=running");
        running
            .is_empty()
            .then_some(())
            .ok_or(format!("{running:?}"))
    });
    let cli = Kloset::new().passphrase(PASS);
    let store = root.join("store");
    let ids = snapshot_ids(&cli, &store);
    assert!(!ids.is_empty());
    for id in &ids {
        let out = root.join(format!("out-{id}"));
        cli.must_at(&store, ["restore", "-to", out.to_str().expect("utf8"), id]);
    }
    cli.must_at(&store, ["check", "--read-data=100"]);
}
