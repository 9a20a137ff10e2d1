//! Tests of store readiness and task execution against real local stores
//! built from a temporary config directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kloset::{Location, Progress, Repository, Storage};

use super::run::{RunStatus, TaskResult, execute};
use super::store::{ReadyReason, StoreReason, open_store, open_store_detailed};
use crate::config::desired::Action;
use crate::config::model::RetentionTable;
use crate::config::{DesiredState, load_and_validate};

const PASS: &str = "correct horse battery staple";

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: DesiredState,
}

impl Env {
    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    fn reload(&mut self) {
        self.state = load(&self.root);
    }

    fn run(&self, action: &Action) -> TaskResult {
        execute(&self.state, action, Arc::new(Progress::new()))
    }

    fn snapshots(&self) -> usize {
        let storage =
            Storage::open(&Location::Fs(self.store()), false).unwrap_or_else(|e| panic!("{e}"));
        let repo = Repository::open(storage, PASS.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        repo.snapshots().unwrap_or_else(|e| panic!("{e}")).len()
    }
}

fn load(root: &Path) -> DesiredState {
    load_and_validate(&root.join("conf")).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Pseudo-random bytes (incompressible enough to fill a pack).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

/// A config dir with store `s` (extra keys in `store_keys`), source `src`
/// and destination `d`.
fn setup(store_keys: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().to_path_buf();
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(root.join("src/sub")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("src/a.txt"), b"hello").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("src/sub/b.bin"), noise(300_000, 7)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("src/skip.tmp"), b"x").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(conf.join("pass"), format!("{PASS}\n")).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "[daemon]\nstate_dir = \"{r}/state\"\n\n\
         [store.s]\nlocation = \"{r}/store\"\npassphrase_file = \"pass\"\n{store_keys}\n\n\
         [source.src]\nlocation = \"{r}/src\"\nexcludes = [\"*.tmp\"]\n\n\
         [destination.d]\nlocation = \"{r}/dest\"\n",
        r = root.display()
    );
    std::fs::write(conf.join("10-all.toml"), config).unwrap_or_else(|e| panic!("{e}"));
    let state = load(&root);
    Env {
        _tmp: tmp,
        root,
        state,
    }
}

fn backup_action(retention: Option<RetentionTable>) -> Action {
    Action::Backup {
        source: "src".into(),
        store: "s".into(),
        tags: vec!["t1".into()],
        retention,
    }
}

fn check_action(read_data: Option<f64>, allow_cold_read: bool) -> Action {
    Action::Check {
        store: "s".into(),
        read_data,
        allow_cold_read,
    }
}

fn restore_action(allow_cold_read: bool) -> Action {
    Action::Restore {
        store: "s".into(),
        destination: "d".into(),
        snapshot: "latest".into(),
        path: "/".into(),
        allow_cold_read,
        into_snapshot_dir: true,
        overwrite: false,
        source: None,
    }
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let p = e.unwrap_or_else(|e| panic!("{e}")).path();
        if p.is_dir() {
            list_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn backed_up() -> Env {
    let env = setup("");
    let r = env.run(&backup_action(None));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    env
}

#[test]
fn backup_initialises_the_store_and_writes_a_snapshot() {
    let env = setup("init = \"auto\"");
    assert!(!env.store().exists());
    let retention = RetentionTable {
        keep_last: Some(3),
        ..Default::default()
    };
    let r = env.run(&backup_action(Some(retention)));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert!(!r.partial);
    assert_eq!(r.error, None);
    assert_eq!(r.snapshot_id.as_ref().map(String::len), Some(64));
    assert_eq!(r.stats["files"], 2, "{}", r.stats);
    assert_eq!(r.stats["errors"], 0);
    assert_eq!(r.stats["retention"]["forgotten"], 0, "{}", r.stats);
    assert_eq!(r.stats["retention"]["kept"], 1, "{}", r.stats);
    assert!(r.bytes_added.unwrap_or(0) > 0);
    assert_eq!(env.snapshots(), 1);

    // The second run uses the first as parent (same source name).
    let again = env.run(&backup_action(None));
    assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
    assert_eq!(again.stats["files_unchanged"], 2, "{}", again.stats);
    assert!(again.stats.get("retention").is_none());
    assert_eq!(env.snapshots(), 2);

    // Opening it now says Opened, not Initialized.
    let opened = open_store_detailed(
        &env.state.stores["s"],
        true,
        crate::integrations::Purpose::Work,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(opened.reason, ReadyReason::Opened);
}

#[test]
fn readiness_initialises_an_empty_store_with_init_auto() {
    let env = setup("");
    let opened = open_store_detailed(
        &env.state.stores["s"],
        true,
        crate::integrations::Purpose::Work,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(opened.reason, ReadyReason::Initialized);
    assert!(env.store().join("kloset").is_file());
}

#[test]
fn concurrent_initialisations_both_open_the_one_store() {
    // A readiness test and a backup may initialise the same empty store at
    // once: exactly one creates it, the other opens what the first wrote.
    for _ in 0..8 {
        let env = setup("");
        let def = env.state.stores["s"].clone();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let def = def.clone();
                std::thread::spawn(move || {
                    open_store_detailed(&def, true, crate::integrations::Purpose::Work)
                        .map(|o| o.reason)
                })
            })
            .collect();
        let reasons: Vec<ReadyReason> = threads
            .into_iter()
            .map(|t| t.join().expect("thread").unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let created = reasons
            .iter()
            .filter(|r| **r == ReadyReason::Initialized)
            .count();
        assert_eq!(created, 1, "{reasons:?}");
        assert_eq!(env.snapshots(), 0);
    }
}

#[test]
fn init_never_leaves_an_empty_location_alone() {
    let env = setup("init = \"never\"");
    let def = &env.state.stores["s"];
    let p = open_store(def, true)
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert_eq!(p.reason, StoreReason::Empty, "{p}");
    assert!(p.is_retryable());
    assert!(
        !env.store().exists(),
        "init = never must not create the directory"
    );

    std::fs::create_dir_all(env.store()).unwrap_or_else(|e| panic!("{e}"));
    let p = open_store(def, true)
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert_eq!(p.reason, StoreReason::Empty, "{p}");
    assert!(p.message.contains("never"), "{p}");
    assert_eq!(
        std::fs::read_dir(env.store()).map(|d| d.count()).ok(),
        Some(0)
    );

    let r = env.run(&backup_action(None));
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.error.unwrap_or_default().contains("Empty"));
}

#[test]
fn an_empty_store_is_not_initialised_by_a_check() {
    let env = setup("");
    let r = env.run(&check_action(None, false));
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    assert!(r.error.unwrap_or_default().contains("Empty"));
    assert!(!env.store().exists());
}

#[test]
fn foreign_data_is_refused_and_named() {
    let env = setup("");
    std::fs::create_dir_all(env.store()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(env.store().join("holiday-photo.jpg"), noise(100, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let p = open_store(&env.state.stores["s"], true)
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert_eq!(p.reason, StoreReason::ForeignData, "{p}");
    assert!(p.message.contains("holiday-photo.jpg"), "{p}");
    assert!(!p.is_retryable());
    let mut files = Vec::new();
    list_files(&env.store(), &mut files);
    assert_eq!(files.len(), 1, "nothing may be written: {files:?}");
}

#[test]
fn a_wrong_passphrase_is_reported_and_writes_nothing() {
    let env = backed_up();
    std::fs::write(env.root.join("conf/pass"), "not the passphrase\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut before = Vec::new();
    list_files(&env.store(), &mut before);
    let p = open_store(&env.state.stores["s"], true)
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert_eq!(p.reason, StoreReason::WrongPassphrase, "{p}");
    assert!(!p.message.contains("not the passphrase"));
    assert!(!p.is_retryable());
    let r = env.run(&backup_action(None));
    assert_eq!(r.status, RunStatus::Failed);
    let error = r.error.unwrap_or_default();
    assert!(error.contains("WrongPassphrase"), "{error}");
    assert!(!error.contains("not the passphrase"));
    let mut after = Vec::new();
    list_files(&env.store(), &mut after);
    assert_eq!(before, after);
}

#[test]
fn an_unreadable_passphrase_file_is_reported() {
    let env = backed_up();
    std::fs::remove_file(env.root.join("conf/pass")).unwrap_or_else(|e| panic!("{e}"));
    let p = open_store(&env.state.stores["s"], true)
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert_eq!(p.reason, StoreReason::SecretUnreadable, "{p}");
    assert!(p.is_retryable());
}

#[test]
fn check_succeeds_on_a_healthy_store() {
    let env = backed_up();
    let r = env.run(&check_action(Some(100.0), false));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.stats["problems"], 0);
    assert_eq!(r.stats["snapshots"], 1);
    assert!(
        r.stats["packs_read"].as_u64().unwrap_or(0) >= 1,
        "{}",
        r.stats
    );
}

#[test]
fn a_cold_store_refuses_data_reads_without_opt_in() {
    let mut env = backed_up();
    let conf = env.root.join("conf/10-all.toml");
    let text = std::fs::read_to_string(&conf).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &conf,
        text.replace(
            "passphrase_file",
            "storage_type = \"cold\"\npassphrase_file",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    env.reload();

    let r = env.run(&check_action(Some(10.0), false));
    assert_eq!(r.status, RunStatus::Failed);
    let error = r.error.unwrap_or_default();
    assert!(error.contains("allow_cold_read = true"), "{error}");
    assert!(error.contains("cold"), "{error}");

    let r = env.run(&check_action(None, false));
    assert_eq!(
        r.status,
        RunStatus::Succeeded,
        "structure-only is fine: {r:?}"
    );
    assert_eq!(r.stats["packs_read"], 0);

    let r = env.run(&check_action(Some(100.0), true));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");

    let r = env.run(&restore_action(false));
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error
            .unwrap_or_default()
            .contains("allow_cold_read = true")
    );
    assert!(!env.root.join("dest").exists());

    let r = env.run(&restore_action(true));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
}

#[test]
fn a_restore_test_restores_and_verifies() {
    let env = backed_up();
    let r = env.run(&restore_action(false));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.stats["verified_files"], 2, "{}", r.stats);
    assert_eq!(r.stats["mismatches"], 0);
    let id = r.snapshot_id.clone().unwrap_or_default();
    let target = env.root.join("dest").join(&id[..8]);
    assert_eq!(r.stats["target"], target.display().to_string());
    assert_eq!(
        std::fs::read(target.join("a.txt")).ok(),
        Some(b"hello".to_vec())
    );
    assert!(!target.join("skip.tmp").exists(), "excluded at backup");

    // Repeating the test of the same snapshot works (same directory).
    let again = env.run(&restore_action(false));
    assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
}

#[test]
fn verification_notices_a_restored_file_that_differs() {
    let env = backed_up();
    let repo = open_store(&env.state.stores["s"], false).unwrap_or_else(|e| panic!("{e}"));
    let snap = repo
        .resolve_snapshot("latest")
        .unwrap_or_else(|e| panic!("{e}"));
    let target = env.root.join("manual");
    let options = kloset::ops::restore::RestoreOptions::default();
    kloset::ops::restore::restore(&repo, &snap, "/", &target, &options)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(target.join("a.txt"), b"HELLO").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(target.join("sub/b.bin"), b"short").unwrap_or_else(|e| panic!("{e}"));
    let v = super::verify::verify_restore(&repo, &snap, "/", &target, &Progress::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.files, 2);
    assert_eq!(v.mismatches.len(), 2, "{:?}", v.mismatches);
    assert!(
        v.mismatches
            .iter()
            .any(|m| m.starts_with("a.txt: content differs"))
    );
    assert!(
        v.mismatches
            .iter()
            .any(|m| m.starts_with("sub/b.bin: shorter"))
    );
}

fn corrupt_a_pack(env: &Env) -> String {
    let mut packs = Vec::new();
    list_files(&env.store().join("packs"), &mut packs);
    let biggest = packs
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("no pack"));
    let mut bytes = std::fs::read(&biggest).unwrap_or_else(|e| panic!("{e}"));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&biggest, bytes).unwrap_or_else(|e| panic!("{e}"));
    biggest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn a_corrupt_pack_fails_the_restore_test_and_the_check() {
    let env = backed_up();
    let pack = corrupt_a_pack(&env);
    let r = env.run(&restore_action(false));
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    let error = r.error.unwrap_or_default();
    assert!(error.contains(&pack), "{error} should name {pack}");

    let r = env.run(&check_action(Some(100.0), false));
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    let error = r.error.unwrap_or_default();
    assert!(error.contains(&pack), "{error} should name {pack}");
}

#[test]
fn a_cancelled_backup_writes_no_snapshot() {
    let env = backed_up();
    let progress = Arc::new(Progress::new());
    progress.cancel();
    let r = execute(&env.state, &backup_action(None), progress);
    assert_eq!(r.status, RunStatus::Cancelled, "{r:?}");
    assert_eq!(r.snapshot_id, None);
    assert_eq!(env.snapshots(), 1);
}

mod prune;

#[test]
fn status_names() {
    assert_eq!(RunStatus::Succeeded.as_str(), "succeeded");
    assert_eq!(RunStatus::Failed.as_str(), "failed");
    assert_eq!(RunStatus::Cancelled.as_str(), "cancelled");
    assert_eq!(StoreReason::WrongPassphrase.as_str(), "WrongPassphrase");
}

#[test]
fn a_one_shot_restore_writes_into_the_destination_and_refuses_to_overwrite() {
    let env = backed_up();
    let one_shot = |overwrite: bool, source: Option<&str>| Action::Restore {
        store: "s".into(),
        destination: "d".into(),
        snapshot: "latest".into(),
        path: "/".into(),
        allow_cold_read: false,
        into_snapshot_dir: false,
        overwrite,
        source: source.map(str::to_string),
    };
    let r = env.run(&one_shot(false, Some("src")));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let dest = env.root.join("dest");
    assert_eq!(r.stats["target"], dest.display().to_string());
    assert_eq!(
        std::fs::read(dest.join("a.txt")).ok(),
        Some(b"hello".to_vec())
    );

    std::fs::write(dest.join("a.txt"), b"edited since").unwrap_or_else(|e| panic!("{e}"));
    let refused = env.run(&one_shot(false, None));
    assert_eq!(refused.status, RunStatus::Failed, "{refused:?}");
    let msg = refused.error.clone().unwrap_or_default();
    assert!(
        msg.contains("overwrite = true") && !msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(dest.join("a.txt")).ok(),
        Some(b"edited since".to_vec()),
        "a refused restore writes nothing"
    );
    let replaced = env.run(&one_shot(true, None));
    assert_eq!(replaced.status, RunStatus::Succeeded, "{replaced:?}");
    assert_eq!(
        std::fs::read(dest.join("a.txt")).ok(),
        Some(b"hello".to_vec())
    );

    let other = env.run(&one_shot(true, Some("elsewhere")));
    assert_eq!(other.status, RunStatus::Failed);
    assert!(
        other.error.unwrap_or_default().contains("source elsewhere"),
        "latest of a source with no snapshots is not found"
    );
}

#[test]
fn a_command_destination_takes_the_one_file_of_a_directory_or_refuses() {
    let mut env = backed_up();
    let out = env.root.join("piped");
    std::fs::write(
        env.root.join("conf/20-exec.toml"),
        format!(
            "[destination.pipe]\nintegration = \"exec\"\ncommand = [\"sh\", \"-c\", \"cat > '{}'\"]\n",
            out.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    env.reload();
    let restore = |path: &str| Action::Restore {
        store: "s".into(),
        destination: "pipe".into(),
        snapshot: "latest".into(),
        path: path.into(),
        allow_cold_read: false,
        into_snapshot_dir: false,
        overwrite: false,
        source: None,
    };
    // `/` holds one regular file (a.txt) beside a directory: it is taken.
    let r = env.run(&restore("/"));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(std::fs::read(&out).ok(), Some(b"hello".to_vec()));
    // A second file at the top: refused before the command runs.
    std::fs::remove_file(&out).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(env.root.join("src/second.txt"), b"2").unwrap_or_else(|e| panic!("{e}"));
    let b = env.run(&backup_action(None));
    assert_eq!(b.status, RunStatus::Succeeded, "{b:?}");
    let r = env.run(&restore("/"));
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    let msg = r.error.unwrap_or_default();
    assert!(
        msg.contains("takes one file") && msg.contains("a.txt, second.txt"),
        "{msg}"
    );
    assert!(!out.exists(), "the command never ran");
}

#[test]
fn sync_task_copies_once_into_another_store() {
    let mut env = setup("");
    let r = env.run(&backup_action(None));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let conf = env.root.join("conf/20-target.toml");
    std::fs::write(
        &conf,
        format!(
            "[store.t]\nlocation = \"{}/target\"\npassphrase_file = \"pass\"\n",
            env.root.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    env.reload();
    let sync = Action::Sync {
        store: "s".into(),
        to: "t".into(),
        tags: Vec::new(),
        sources: Vec::new(),
        latest: Some(1),
        allow_cold_read: false,
    };
    let r = env.run(&sync);
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.stats["snapshots_copied"], 1, "{r:?}");
    assert!(r.bytes_added.unwrap_or(0) > 0);
    let again = env.run(&sync);
    assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
    assert_eq!(again.stats["snapshots_copied"], 0, "{again:?}");
    assert_eq!(again.stats["snapshots_skipped"], 1, "{again:?}");
}
