//! The SIGKILL crash harness (issue 16, item 2): `kloset backup`,
//! `restore`, `prune`, `sync` and the `klosetd` daemon during a backup task
//! are killed with SIGKILL at random delays, drawn from a seeded generator
//! and scaled to the measured duration of an unkilled run of the same
//! operation. After every kill: `check --read-data` is clean, every listed
//! snapshot carries a known tag (no partial snapshot) and restores
//! bit-exact to what its source held, and the next run of the same
//! operation succeeds (a killed restore: the next restore into the same
//! target, with `--force` when the killed one left files, is bit-exact).
//!
//! `KLOSET_CRASH_SEED` repeats a run (the seed is printed), and
//! `KLOSET_CRASH_POINTS` (default 50) is the number of kill points, shared
//! out among the five operations. Locks that a killed process leaves
//! behind are handled as in production: by stale-lock takeover, with the
//! stale period shortened to 3 s (`KLOSET_LOCK_STALE_AFTER`, as
//! tests/many_writers.rs does); the prune after a killed prune or writer
//! takes them over.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::crash::{self, Killed, Lab, json, kill_after, verify};
use common::daemon::{Daemon, lit};
use common::rng::SplitMix64;
use common::store::StoreFixture;

const OPERATIONS: usize = 5;

/// Kills that landed inside the run, and those after it finished.
#[derive(Debug, Default)]
struct Tally {
    killed: usize,
    finished_first: usize,
}

impl Tally {
    fn add(&mut self, k: &Killed, what: &str) {
        if k.finished_first {
            assert_eq!(k.code, Some(0), "{what}: failed by itself: {}", k.stderr);
            self.finished_first += 1;
        } else {
            self.killed += 1;
        }
    }

    fn report(&self, op: &str, index: usize, measured: Duration, started: Instant) {
        eprintln!(
            "crash harness {op}: seed {} (KLOSET_CRASH_SEED), {} point(s) of {} (KLOSET_CRASH_POINTS): \
             {} killed mid-run, {} finished before the kill; unkilled run {:?}; {:.1} s in all",
            crash::seed(),
            self.killed + self.finished_first,
            op_points(index),
            self.killed,
            self.finished_first,
            measured,
            started.elapsed().as_secs_f64()
        );
        if self.killed + self.finished_first >= 4 {
            assert!(
                self.killed > 0,
                "{op}: no kill landed inside a run; the delays are off"
            );
        }
    }
}

fn op_points(index: usize) -> usize {
    crash::points(index, OPERATIONS)
}

fn rng_for(index: usize) -> SplitMix64 {
    SplitMix64::new(crash::seed() ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

#[test]
fn backup_killed_at_random_points() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut lab = Lab::new(tmp.path(), "store", rng_for(0).next_u64());
    // Scaled to the last unkilled run: the first backup reads everything,
    // later ones mostly skip unchanged files.
    let mut measured = timed(|| lab.backup("first"));
    let mut tally = Tally::default();
    for k in 0..op_points(0) {
        lab.mutate();
        let (tag, retry) = (format!("k{k}"), format!("r{k}"));
        lab.expect_tags(&[&tag, &retry]);
        let src = lab.src.to_str().expect("utf8").to_string();
        let d = crash::delay(&mut lab.rng, measured);
        let what = format!("backup point {k} (kill after {d:?})");
        let err = lab.scratch("stderr");
        let killed = kill_after(lab.command(&["backup", "--tag", &tag, &src]), d, &err);
        tally.add(&killed, &what);
        verify(&lab.fx, &lab.expected, &lab.root, &what);
        measured = timed(|| {
            lab.fx.must(&["backup", "--tag", &retry, &src]);
        });
        lab.trim(3);
    }
    verify(&lab.fx, &lab.expected, &lab.root, "backup: at the end");
    tally.report("backup", 0, measured, started);
}

#[test]
fn restore_killed_at_random_points() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut lab = Lab::new(tmp.path(), "store", rng_for(1).next_u64());
    lab.backup("a");
    lab.mutate();
    lab.backup("b");
    let first = lab.scratch("restore");
    let measured = timed(|| {
        lab.fx
            .must(&["restore", "--to", first.to_str().expect("utf8"), "latest"]);
    });
    let mut tally = Tally::default();
    for k in 0..op_points(1) {
        let tag = if lab.rng.below_or_eq(1) == 0 {
            "a"
        } else {
            "b"
        };
        let snap = crash::listed(&lab.fx)
            .into_iter()
            .find(|s| crash::tags(s).iter().any(|t| t == tag))
            .expect("the tagged snapshot");
        let id = snap["id"].as_str().expect("id").to_string();
        let target = lab.scratch("restore");
        let to = target.to_str().expect("utf8").to_string();
        let d = crash::delay(&mut lab.rng, measured);
        let what = format!("restore point {k} (kill after {d:?})");
        let err = lab.scratch("stderr");
        let killed = kill_after(lab.command(&["restore", "--to", &to, &id]), d, &err);
        tally.add(&killed, &what);
        verify(&lab.fx, &lab.expected, &lab.root, &what);
        // The next restore into the same target: without --force it either
        // succeeds (the killed one had created nothing) or refuses, naming
        // the files already there; with --force it succeeds.
        let again = lab.fx.run(&["restore", "--to", &to, &id]);
        if !again.success() {
            assert_eq!(again.code, Some(1), "{what}: {}", again.describe());
            assert!(
                again.stderr_str().contains("--force"),
                "{what}: {}",
                again.describe()
            );
            lab.fx.must(&["restore", "--force", "--to", &to, &id]);
        }
        let diffs = common::tree::tree_differences(&lab.expected[tag], &target);
        assert!(
            diffs.is_empty(),
            "{what}: restored tree differs: {diffs:#?}"
        );
        std::fs::remove_dir_all(&target).expect("rm target");
    }
    tally.report("restore", 1, measured, started);
}

#[test]
fn prune_killed_at_random_points() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut lab = Lab::new(tmp.path(), "store", rng_for(2).next_u64());
    lab.backup("first");
    lab.mutate();
    lab.backup("second");
    lab.trim(1);
    let measured = timed(|| {
        lab.fx.must(&["prune", "--grace", "0s"]);
    });
    let mut tally = Tally::default();
    for k in 0..op_points(2) {
        // Garbage for the prune: a new snapshot, older ones forgotten.
        lab.mutate();
        lab.backup(&format!("p{k}"));
        lab.trim(2);
        let unused = ["0%", "20%", "50%"][lab.rng.below_or_eq(2) as usize];
        let d = crash::delay(&mut lab.rng, measured);
        let what = format!("prune point {k} (--max-unused {unused}, kill after {d:?})");
        let err = lab.scratch("stderr");
        let args = ["prune", "--grace", "0s", "--max-unused", unused];
        let killed = kill_after(lab.command(&args), d, &err);
        tally.add(&killed, &what);
        verify(&lab.fx, &lab.expected, &lab.root, &what);
        // The killed prune's lock is taken over once stale (3 s).
        let r = json(
            &lab.fx
                .must(&["--json", "prune", "--grace", "0s", "--max-unused", unused]),
        );
        assert_eq!(r["packs_missing"], 0, "{what}: {r}");
        assert_eq!(r["unfound_blobs"], 0, "{what}: {r}");
        crash::assert_clean_check(&lab.fx.run(&["check", "--read-data"]), &what);
    }
    verify(&lab.fx, &lab.expected, &lab.root, "prune: at the end");
    tally.report("prune", 2, measured, started);
}

#[test]
fn sync_killed_at_random_points() {
    const OTHER: &str = "the sync target's passphrase";
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut lab = Lab::new(tmp.path(), "store", rng_for(3).next_u64());
    let mut dst = StoreFixture::local(&tmp.path().join("target"));
    dst.kloset = dst
        .kloset
        .clone()
        .passphrase(OTHER)
        .env("KLOSET_LOCK_STALE_AFTER", crash::STALE_AFTER);
    dst.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "64KiB"]);
    lab.fx.kloset = lab.fx.kloset.clone().env("KLOSET_PASSPHRASE_TO", OTHER);
    let dst_loc = dst.location.clone();
    lab.backup("first");
    let mut measured = timed(|| {
        lab.fx.must(&["sync", "all", "to", &dst_loc]);
    });
    let mut tally = Tally::default();
    for k in 0..op_points(3) {
        lab.mutate();
        lab.backup(&format!("s{k}"));
        let d = crash::delay(&mut lab.rng, measured);
        let what = format!("sync point {k} (kill after {d:?})");
        let err = lab.scratch("stderr");
        let killed = kill_after(lab.command(&["sync", "all", "to", &dst_loc]), d, &err);
        tally.add(&killed, &what);
        verify(
            &lab.fx,
            &lab.expected,
            &lab.root,
            &format!("{what}, source"),
        );
        verify(&dst, &lab.expected, &lab.root, &format!("{what}, target"));
        measured = timed(|| {
            lab.fx.must(&["sync", "all", "to", &dst_loc]);
        });
        assert_eq!(
            crash::listed(&dst).len(),
            crash::listed(&lab.fx).len(),
            "{what}: the retry copied every snapshot"
        );
        lab.trim(3);
        dst.must(&["forget", "--keep-last", "3"]);
    }
    verify(&dst, &lab.expected, &lab.root, "sync: target at the end");
    tally.report("sync", 3, measured, started);
}

/// The daemon's configuration: one store, one source, no schedule.
fn daemon_conf(lab: &Lab, conf: &Path) {
    std::fs::create_dir_all(conf).expect("mkdir conf");
    std::fs::write(
        conf.join("pass"),
        format!("{}\n", common::cli::TEST_PASSPHRASE),
    )
    .expect("pass");
    std::fs::write(
        conf.join("10.toml"),
        format!(
            "[daemon]\nstate_dir = {}\nlisten = \"127.0.0.1:0\"\n\n\
             [store.main]\nlocation = {}\npassphrase_file = \"pass\"\n\n\
             [source.data]\nlocation = {}\n",
            lit(&lab.root.join("state")),
            lit(&lab.fx.objects_dir),
            lit(&lab.src)
        ),
    )
    .expect("config");
}

/// Adds the one-shot backup `[task.NAME]` tagged NAME.
fn one_shot(conf: &Path, name: &str) {
    common::daemon::write_like_ansible(
        conf,
        &format!("{name}.toml"),
        &format!(
            "[task.{name}]\ntask = \"backup\"\nsource = \"data\"\nstore = \"main\"\ntags = [{name:?}]\n"
        ),
    );
}

fn start_daemon(lab: &mut Lab, conf: &Path) -> Daemon {
    let log = lab.scratch("klosetd.log");
    let d = Daemon::start(
        conf,
        &log,
        &[("KLOSET_LOCK_STALE_AFTER", crash::STALE_AFTER)],
    );
    d.wait_log("configuration is valid", common::daemon::LIMIT);
    d
}

/// Waits (polling every 5 ms) until the log shows `needle`.
fn wait_log_fast(d: &Daemon, needle: &str) -> Instant {
    let deadline = Instant::now() + common::e2e::TASK_LIMIT;
    loop {
        if d.log_text().contains(needle) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn daemon_killed_during_a_backup_task_at_random_points() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut lab = Lab::new(tmp.path(), "store", rng_for(4).next_u64());
    let conf = tmp.path().join("conf");
    daemon_conf(&lab, &conf);
    let mut daemon = start_daemon(&mut lab, &conf);
    lab.expect_tags(&["first"]);
    one_shot(&conf, "first");
    let t0 = wait_log_fast(&daemon, "task started origin=first ");
    let mut measured = wait_log_fast(&daemon, "task finished origin=first ") - t0;
    common::e2e::wait_succeeded(&daemon, "first");
    let mut tally = Tally::default();
    for k in 0..op_points(4) {
        lab.mutate();
        let (tag, retry) = (format!("k{k}"), format!("r{k}"));
        lab.expect_tags(&[&tag, &retry]);
        let d = crash::delay(&mut lab.rng, measured);
        let what = format!("klosetd point {k} (kill {d:?} after the task started)");
        one_shot(&conf, &tag);
        let t = wait_log_fast(&daemon, &format!("task started origin={tag} "));
        let deadline = t + d;
        let mut finished_first = false;
        while Instant::now() < deadline {
            if daemon
                .log_text()
                .contains(&format!("task finished origin={tag} "))
            {
                finished_first = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        daemon.kill9();
        tally.add(
            &Killed {
                finished_first,
                code: Some(0),
                stderr: String::new(),
            },
            &what,
        );
        verify(&lab.fx, &lab.expected, &lab.root, &what);
        daemon = start_daemon(&mut lab, &conf);
        one_shot(&conf, &retry);
        let t0 = wait_log_fast(&daemon, &format!("task started origin={retry} "));
        measured = wait_log_fast(&daemon, &format!("task finished origin={retry} ")) - t0;
        common::e2e::wait_succeeded(&daemon, &retry);
        // The killed one-shot is never run again: its claim became
        // `interrupted` when the daemon started.
        let runs = daemon.json(&format!("/api/v1/tasks?task={tag}"));
        for run in common::daemon::tasks(&runs) {
            assert_ne!(run["status"], "running", "{what}: {run}");
        }
        lab.trim(3);
    }
    verify(&lab.fx, &lab.expected, &lab.root, "klosetd: at the end");
    tally.report("klosetd", 4, measured, started);
}
