//! Tests of the prune task and of retention after a backup.

use super::*;
use crate::config::desired::StoreDef;
use crate::config::model::StorageType;

fn prune_action(max_repack: u64, allow_cold_read: bool) -> Action {
    Action::Prune {
        store: "s".into(),
        max_unused: 0.0,
        max_repack,
        grace_ms: 0,
        allow_cold_read,
    }
}

fn keep_last(n: u32) -> Option<RetentionTable> {
    Some(RetentionTable {
        keep_last: Some(n),
        ..Default::default()
    })
}

fn store_bytes(dir: &Path) -> u64 {
    let mut files = Vec::new();
    list_files(dir, &mut files);
    files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Three backups of changing content with `keep_last = 1`.
fn churned() -> (Env, Vec<TaskResult>) {
    let env = setup("init = \"auto\"");
    let mut results = Vec::new();
    for seed in 0..3 {
        std::fs::write(env.root.join("src/sub/b.bin"), noise(300_000, 100 + seed))
            .unwrap_or_else(|e| panic!("{e}"));
        let r = env.run(&backup_action(keep_last(1)));
        assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
        results.push(r);
    }
    (env, results)
}

#[test]
fn retention_forgets_the_group_s_older_snapshots_and_lists_them() {
    let (env, results) = churned();
    assert_eq!(env.snapshots(), 1);
    let last = &results[2].stats["retention"];
    assert_eq!(last["applied"], true, "{last}");
    assert_eq!(last["kept"], 1, "{last}");
    assert_eq!(last["forgotten"], 1, "{last}");
    assert_eq!(
        last["forgotten_ids"][0].as_str(),
        results[1].snapshot_id.as_deref(),
        "{last}"
    );
    assert_eq!(last["kept_snapshots"][0]["reasons"][0], "last", "{last}");
    // A backup without retention forgets nothing.
    let plain = env.run(&backup_action(None));
    assert_eq!(plain.status, RunStatus::Succeeded, "{plain:?}");
    assert_eq!(env.snapshots(), 2);
}

#[test]
fn an_empty_retention_table_is_refused_at_validation() {
    let mut env = setup("");
    let path = env.root.join("conf/20-schedule.toml");
    std::fs::write(
        &path,
        "[schedule.b]\ntask = \"backup\"\nsource = \"src\"\nstore = \"s\"\n\
         cron = \"0 3 * * *\"\nretention = {}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let errors = load_and_validate(&env.root.join("conf"))
        .err()
        .unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("keeps nothing")),
        "{errors:?}"
    );
    std::fs::write(
        &path,
        "[task.p]\ntask = \"prune\"\nstore = \"s\"\nmax_unused = \"150%\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let errors = load_and_validate(&env.root.join("conf"))
        .err()
        .unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.to_string().contains("max_unused")),
        "{errors:?}"
    );
    std::fs::write(
        &path,
        "[task.p]\ntask = \"prune\"\nstore = \"s\"\nmax_unused = \"10%\"\n\
         max_repack = \"1MiB\"\ngrace = \"2s\"\nallow_cold_read = true\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    env.reload();
    let task = &env.state.tasks["p"].action;
    assert_eq!(
        *task,
        Action::Prune {
            store: "s".into(),
            max_unused: 0.1,
            max_repack: 1 << 20,
            grace_ms: 2000,
            allow_cold_read: true,
        }
    );
}

#[test]
fn prune_gives_space_back_and_the_kept_snapshot_still_checks() {
    let (env, _) = churned();
    let before = store_bytes(&env.store());
    let r = env.run(&prune_action(4 << 30, false));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert!(
        r.stats["bytes_freed"].as_u64().unwrap_or(0) > 0,
        "{}",
        r.stats
    );
    assert!(
        r.stats["packs_deleted"].as_u64().unwrap_or(0) > 0,
        "{}",
        r.stats
    );
    assert_eq!(r.stats["snapshots"], 1, "{}", r.stats);
    assert!(r.stats.get("repack_skipped").is_none());
    assert!(store_bytes(&env.store()) < before);
    let checked = env.run(&check_action(Some(100.0), false));
    assert_eq!(checked.status, RunStatus::Succeeded, "{checked:?}");
}

#[test]
fn prune_on_a_cold_store_is_delete_only_without_opt_in() {
    let (env, _) = churned();
    let cold: StoreDef = StoreDef {
        storage_type: StorageType::Cold,
        ..env.state.stores["s"].clone()
    };
    let mut state = env.state.clone();
    state.stores.insert("s".into(), cold);
    let r = execute(
        &state,
        &prune_action(4 << 30, false),
        Arc::new(Progress::new()),
    );
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.stats["packs_repacked"], 0, "{}", r.stats);
    assert!(r.stats["repack_skipped"].is_string(), "{}", r.stats);
    let r = execute(
        &state,
        &prune_action(4 << 30, true),
        Arc::new(Progress::new()),
    );
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert!(r.stats.get("repack_skipped").is_none(), "{}", r.stats);
}

#[test]
fn prune_of_a_missing_store_fails_with_the_store_s_name() {
    let env = setup("");
    let r = env.run(&prune_action(0, false));
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    assert!(!env.store().exists());
}
