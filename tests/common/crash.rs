//! The SIGKILL crash harness's plumbing (`tests/crash_harness.rs`): the
//! seed and the number of points from the environment, a process killed
//! after a delay, and a store whose every snapshot is known by its tag.
//!
//! - [`seed`]: `KLOSET_CRASH_SEED` (decimal or `0x` hex), else one random
//!   seed per test process, printed by every harness test so a failing run
//!   can be repeated.
//! - [`points`]: `KLOSET_CRASH_POINTS` (default 50) shared out among the
//!   operations.
//! - [`kill_after`]: spawn, wait `delay`, SIGKILL; reports whether the
//!   process had already finished.
//! - [`Lab`]: a local store, a source that changes between points, and for
//!   every tag the copy of what the source held when that backup started;
//!   [`Lab::verify`] is the check after each kill.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::Output;
use super::rng::SplitMix64;
use super::store::StoreFixture;
use super::tree::tree_differences;

/// Kill points of one harness run unless `KLOSET_CRASH_POINTS` says otherwise.
pub const DEFAULT_POINTS: usize = 50;
/// The stale period of every lock in the harness (`KLOSET_LOCK_STALE_AFTER`):
/// a killed process's lock is taken over by the next prune after it.
pub const STALE_AFTER: &str = "3s";

/// The harness seed: `KLOSET_CRASH_SEED`, else random once per process.
pub fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("KLOSET_CRASH_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("KLOSET_CRASH_SEED={s:?}: {e}"))
        }
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            SplitMix64::new(nanos ^ u64::from(std::process::id())).next_u64()
        }
    })
}

/// How many of the `KLOSET_CRASH_POINTS` points operation `index` (of
/// `count`) gets.
pub fn points(index: usize, count: usize) -> usize {
    let total = std::env::var("KLOSET_CRASH_POINTS")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .unwrap_or_else(|e| panic!("KLOSET_CRASH_POINTS={s:?}: {e}"))
        })
        .unwrap_or(DEFAULT_POINTS);
    total / count + usize::from(index < total % count)
}

/// A kill delay for an operation whose unkilled run took `measured`:
/// uniform in [0, 1.15 × measured], so that most kills land inside the run
/// (start-up, data, index, commit, release) and a few just after it.
pub fn delay(rng: &mut SplitMix64, measured: Duration) -> Duration {
    let span = measured.as_micros() as u64 * 115 / 100;
    Duration::from_micros(rng.below_or_eq(span.max(1)))
}

/// What [`kill_after`] did.
#[derive(Debug)]
pub struct Killed {
    /// The process exited by itself before the delay was over.
    pub finished_first: bool,
    /// Its exit code then.
    pub code: Option<i32>,
    /// Its stderr (written to a file).
    pub stderr: String,
}

/// Spawns `cmd` (stdout discarded, stderr to `err_file`), sends SIGKILL
/// `delay` after the start unless it finished, and reaps it.
pub fn kill_after(mut cmd: Command, delay: Duration, err_file: &Path) -> Killed {
    let err = std::fs::File::create(err_file).expect("stderr file");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn the process to kill");
    let deadline = start + delay;
    let finished = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            break None;
        }
        // Not synchronisation: this is the random kill point itself.
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    };
    let (finished_first, code) = match finished {
        Some(status) => (true, status.code()),
        None => {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            (false, None)
        }
    };
    Killed {
        finished_first,
        code,
        stderr: std::fs::read_to_string(err_file).unwrap_or_default(),
    }
}

/// Parses JSON output, with the text in the panic message.
pub fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A store, a changing source, and what each tag's snapshot must restore to.
pub struct Lab {
    /// The test's directory.
    pub root: PathBuf,
    /// The store (local, `KLOSET_LOCK_STALE_AFTER` = [`STALE_AFTER`]).
    pub fx: StoreFixture,
    /// The source directory.
    pub src: PathBuf,
    /// Tag → copy of the source when the backup carrying it started.
    pub expected: BTreeMap<String, PathBuf>,
    /// The harness's generator (seeded).
    pub rng: SplitMix64,
    serial: usize,
}

impl Lab {
    /// A store at `root/name` (created), and a source of about 3 MiB.
    pub fn new(root: &Path, name: &str, seed: u64) -> Lab {
        let mut fx = StoreFixture::local(&root.join(name));
        fx.kloset = fx
            .kloset
            .clone()
            .env("KLOSET_LOCK_STALE_AFTER", STALE_AFTER);
        fx.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "64KiB"]);
        let mut lab = Lab {
            root: root.to_path_buf(),
            fx,
            src: root.join(format!("{name}-src")),
            expected: BTreeMap::new(),
            rng: SplitMix64::new(seed),
            serial: 0,
        };
        for i in 0..24 {
            lab.write_file(i);
        }
        lab
    }

    fn write_file(&mut self, i: u64) {
        let dir = self.src.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = self.rng.below_or_eq(250_000) as usize;
        std::fs::write(dir.join(format!("f{i}.bin")), self.rng.bytes(len)).expect("write");
    }

    /// A fresh name under the root.
    pub fn scratch(&mut self, what: &str) -> PathBuf {
        self.serial += 1;
        self.root.join(format!("{what}-{}", self.serial))
    }

    /// Changes one to three files (new, rewritten or removed).
    pub fn mutate(&mut self) {
        for _ in 0..=self.rng.below_or_eq(2) {
            let i = self.rng.below_or_eq(40);
            let path = self.src.join(format!("d{}/f{i}.bin", i % 4));
            if self.rng.below_or_eq(3) == 0 && path.exists() {
                std::fs::remove_file(&path).expect("rm");
            } else {
                self.write_file(i);
            }
        }
    }

    /// Records that snapshots tagged with any of `tags` must restore to
    /// what the source holds now.
    pub fn expect_tags(&mut self, tags: &[&str]) {
        let copy = self.scratch("expected");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&self.src)
            .arg(&copy)
            .status()
            .expect("cp")
            .success();
        assert!(ok, "cp -a {} {}", self.src.display(), copy.display());
        for t in tags {
            self.expected.insert((*t).to_string(), copy.clone());
        }
    }

    /// `backup --tag TAG` of the source, unkilled; records the tag.
    pub fn backup(&mut self, tag: &str) {
        self.expect_tags(&[tag]);
        let src = self.src.to_str().expect("utf8").to_string();
        self.fx.must(&["backup", "--tag", tag, &src]);
    }

    /// The command `kloset at STORE ARGS` with the lab's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["at", self.fx.location.as_str()];
        all.extend_from_slice(args);
        self.fx.kloset.command(all)
    }

    /// Keeps the newest `n` snapshots and forgets what the others expected.
    pub fn trim(&mut self, n: usize) {
        self.fx.must(&["forget", "--keep-last", &n.to_string()]);
        let listed: BTreeSet<String> = listed(&self.fx).iter().flat_map(tags).collect();
        let before: BTreeSet<PathBuf> = self.expected.values().cloned().collect();
        self.expected.retain(|t, _| listed.contains(t));
        let after: BTreeSet<PathBuf> = self.expected.values().cloned().collect();
        for gone in before.difference(&after) {
            let _ = std::fs::remove_dir_all(gone);
        }
    }
}

/// The snapshots `--json ls` lists.
pub fn listed(fx: &StoreFixture) -> Vec<Value> {
    json(&fx.must(&["--json", "ls"]))["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A snapshot's tags.
pub fn tags(snapshot: &Value) -> Vec<String> {
    snapshot["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The check after a kill, on `fx` whose snapshots are described by
/// `expected`: `check --read-data` is clean, every listed snapshot carries
/// a known tag (so none is partial or foreign), and every snapshot
/// restores bit-exact. `what` names the point in messages.
pub fn verify(fx: &StoreFixture, expected: &BTreeMap<String, PathBuf>, scratch: &Path, what: &str) {
    let check = fx.run(&["check", "--read-data"]);
    assert_clean_check(&check, what);
    for snap in listed(fx) {
        let id = snap["id"].as_str().expect("id").to_string();
        let tags = tags(&snap);
        let known: Vec<&String> = tags.iter().filter(|t| expected.contains_key(*t)).collect();
        assert_eq!(
            known.len(),
            1,
            "{what}: snapshot {id} carries no single known tag: {snap}"
        );
        let out = scratch.join(format!("verify-{id}"));
        fx.must(&["restore", "--to", out.to_str().expect("utf8"), &id]);
        let diffs = tree_differences(&expected[known[0]], &out);
        assert!(
            diffs.is_empty(),
            "{what}: snapshot {id} ({}) does not restore bit-exact: {diffs:#?}",
            known[0]
        );
        std::fs::remove_dir_all(&out).expect("rm restored");
    }
}

/// `check` exited 0, said `ok:`, and did not panic.
pub fn assert_clean_check(check: &Output, what: &str) {
    assert!(
        check.success() && check.stdout_str().starts_with("ok:"),
        "{what}: check is not clean: {}",
        check.describe()
    );
    assert!(
        !check.stderr_str().contains("panicked"),
        "{what}: {}",
        check.describe()
    );
}
