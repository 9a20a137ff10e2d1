//! End-to-end `forget` with the real `kloset` binary, on local disk and on a
//! real S3 server: `--dry-run` changes nothing and says why each snapshot is
//! kept, `--keep-last` leaves exactly N per group, `--keep-tag`,
//! `--group-by`, `--json`, an empty policy refused with exit 2, and a
//! garbled snapshot object reported (exit 3) but neither counted nor deleted.
//!
//! Snapshots made here all carry "now" timestamps, so the calendar rules
//! are covered by the engine's property tests (`kloset/src/ops/forget/`).

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::store::StoreFixture;
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `(id, source, tags)` of every snapshot, oldest first.
fn listed(fx: &StoreFixture) -> Vec<(String, String, Vec<String>)> {
    let v = json(&fx.must(&["--json", "ls"]));
    v["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            let tags = s["tags"]
                .as_array()
                .expect("tags")
                .iter()
                .map(|t| t.as_str().expect("tag").to_string())
                .collect();
            (
                s["id"].as_str().expect("id").to_string(),
                s["source"].as_str().expect("source").to_string(),
                tags,
            )
        })
        .collect()
}

fn ids_of(source: &str, all: &[(String, String, Vec<String>)]) -> Vec<String> {
    all.iter()
        .filter(|(_, s, _)| s == source)
        .map(|(id, _, _)| id.clone())
        .collect()
}

/// Every id listed under `key` ("keep" or "remove") in a JSON plan.
fn plan_ids(plan: &Value, key: &str) -> BTreeSet<String> {
    plan["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g[key].as_array().expect("list").iter())
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Snapshot object names on disk.
fn snapshot_objects(fx: &StoreFixture) -> BTreeSet<String> {
    fx.objects()
        .into_iter()
        .filter(|(_, k)| k.starts_with("snapshots/"))
        .map(|(_, k)| k)
        .collect()
}

fn forget_suite(fx: &StoreFixture, tmp: &Path) {
    let a = tmp.join("a");
    let b = tmp.join("b");
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("f.txt"), b"forget me not").expect("write");
    }
    let (a_s, b_s) = (a.to_str().expect("utf8"), b.to_str().expect("utf8"));
    fx.must(&["create", "--kdf-memory-mib", "8"]);
    // Source a: a1 (tagged keep) .. a5; source b: b1 .. b3.
    fx.must(&["backup", a_s, "--tag", "keep"]);
    for _ in 0..4 {
        fx.must(&["backup", a_s, "--tag", "daily"]);
    }
    for _ in 0..3 {
        fx.must(&["backup", b_s]);
    }
    let before = listed(fx);
    let a_ids = ids_of(a_s, &before);
    let b_ids = ids_of(b_s, &before);
    assert_eq!((a_ids.len(), b_ids.len()), (5, 3), "{before:?}");
    let ls_before = fx.must(&["ls"]);
    let objects_before = snapshot_objects(fx);

    // --dry-run prints the plan and its reasons, and changes nothing.
    let out = fx.must(&["forget", "--keep-last", "2", "--dry-run"]);
    assert!(out.contains(&format!("source {a_s}")), "{out}");
    assert!(out.contains(&format!("source {b_s}")), "{out}");
    let keeps: Vec<&str> = out.lines().filter(|l| l.starts_with("keep ")).collect();
    let removes: Vec<&str> = out.lines().filter(|l| l.starts_with("remove ")).collect();
    assert_eq!((keeps.len(), removes.len()), (4, 4), "{out}");
    assert!(keeps.iter().all(|l| l.ends_with("  last")), "{out}");
    assert!(out.contains(&format!("keep   {}", &a_ids[4][..8])), "{out}");
    assert!(out.contains(&format!("remove {}", &a_ids[0][..8])), "{out}");
    assert!(
        out.contains("dry run: 4 kept, would remove 4; nothing was deleted"),
        "{out}"
    );
    assert_eq!(fx.must(&["ls"]), ls_before, "a dry run deletes nothing");
    assert_eq!(snapshot_objects(fx), objects_before);

    // --json gives the same plan; single-dash long options work too.
    let plan = json(&fx.must(&["--json", "forget", "-keep-last", "2", "-dry-run"]));
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["group_by"], "host,source", "{plan}");
    assert_eq!(plan["policy"]["last"], 2, "{plan}");
    let want_removed: BTreeSet<String> = a_ids[..3].iter().chain(&b_ids[..1]).cloned().collect();
    assert_eq!(plan_ids(&plan, "remove"), want_removed, "{plan}");
    let removed: BTreeSet<String> = plan["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    assert_eq!(removed, want_removed);
    let all_ids: BTreeSet<String> = before.iter().map(|(id, _, _)| id.clone()).collect();
    let kept = plan_ids(&plan, "keep");
    assert_eq!(
        kept.union(&removed).cloned().collect::<BTreeSet<_>>(),
        all_ids
    );
    for g in plan["groups"].as_array().expect("groups") {
        assert!(g["key"]["host"].is_string() && g["key"]["source"].is_string());
        assert!(g["key"].get("tags").is_none(), "{g}");
        for s in g["keep"].as_array().expect("keep") {
            assert_eq!(s["reasons"], serde_json::json!(["last"]), "{s}");
            assert!(s["time"].as_str().expect("time").ends_with('Z'), "{s}");
        }
    }
    assert_eq!(plan["unreadable"], serde_json::json!([]), "{plan}");

    // --group-by host puts both sources in one group.
    let by_host = json(&fx.must(&[
        "--json",
        "forget",
        "--keep-last",
        "1",
        "--group-by",
        "host",
        "--dry-run",
    ]));
    let groups = by_host["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{by_host}");
    assert!(groups[0]["key"].get("source").is_none(), "{by_host}");
    assert_eq!(plan_ids(&by_host, "keep").len(), 1);
    assert_eq!(plan_ids(&by_host, "remove").len(), 7);
    let by_default = json(&fx.must(&["--json", "forget", "--keep-last", "1", "--dry-run"]));
    assert_eq!(by_default["groups"].as_array().map(Vec::len), Some(2));
    assert_eq!(plan_ids(&by_default, "keep").len(), 2);
    // By tags: a1 (keep), a2..a5 (daily), b1..b3 (none) are three groups.
    let by_tags = json(&fx.must(&[
        "--json",
        "forget",
        "--keep-last",
        "1",
        "--group-by",
        "tags",
        "--dry-run",
    ]));
    assert_eq!(by_tags["groups"].as_array().map(Vec::len), Some(3));
    assert_eq!(fx.must(&["ls"]), ls_before);

    // An empty policy is a usage error, before the store is even opened.
    for args in [
        &["forget"][..],
        &["forget", "--keep-last", "0", "--keep-daily", "0"],
        &["forget", "--dry-run", "--group-by", "host"],
    ] {
        let out = fx.run(args);
        assert_eq!(out.code, Some(2), "{}", out.describe());
        assert!(
            out.stderr_str().contains("empty retention policy"),
            "{}",
            out.describe()
        );
    }
    let out = fx
        .kloset
        .clone()
        .without_passphrase()
        .run(["at", fx.location.as_str(), "forget"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    let out = fx.run(&["forget", "--keep-last", "1", "--group-by", "hostname"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert_eq!(fx.must(&["ls"]), ls_before, "refusals delete nothing");

    // --keep-tag keeps the oldest snapshot of a, which keep-last alone drops.
    let out = fx.must(&["forget", "--keep-last", "2", "--keep-tag", "keep"]);
    assert!(
        out.contains(&format!("keep   {}", &a_ids[0][..8])) && out.contains("  tag keep"),
        "{out}"
    );
    assert!(out.contains("5 kept, 3 removed"), "{out}");
    assert!(out.contains("prune"), "forget points at prune: {out}");
    let after = listed(fx);
    assert_eq!(
        ids_of(a_s, &after),
        vec![a_ids[0].clone(), a_ids[3].clone(), a_ids[4].clone()]
    );
    assert_eq!(ids_of(b_s, &after), b_ids[1..].to_vec());

    // --keep-last 2 leaves exactly two per group.
    let out = fx.must(&["forget", "--keep-last", "2"]);
    assert!(out.contains("4 kept, 1 removed"), "{out}");
    let after = listed(fx);
    assert_eq!(ids_of(a_s, &after), a_ids[3..].to_vec());
    assert_eq!(ids_of(b_s, &after), b_ids[1..].to_vec());
    // Nothing but snapshot objects went away.
    fx.must(&["check"]);

    // A garbled snapshot object (b's newest) is named, not counted, not
    // deleted: b's other snapshot is then its group's newest and stays.
    let garbled_key = format!("snapshots/{}", b_ids[2]);
    let (garbled_path, _) = fx
        .objects()
        .into_iter()
        .find(|(_, k)| *k == garbled_key)
        .expect("b's newest snapshot object");
    std::fs::write(&garbled_path, b"garbled on disk").expect("garble");
    let out = fx.run(&["--json", "forget", "--keep-last", "1"]);
    assert_eq!(
        out.code,
        Some(3),
        "done, not with every object: {}",
        out.describe()
    );
    assert!(
        out.stderr_str().contains(&garbled_key) && out.stderr_str().contains("warning"),
        "{}",
        out.describe()
    );
    let plan = json(&out.stdout_str());
    assert_eq!(
        plan["unreadable"][0]["object"],
        garbled_key.as_str(),
        "{plan}"
    );
    assert_eq!(
        plan_ids(&plan, "keep"),
        BTreeSet::from([a_ids[4].clone(), b_ids[1].clone()]),
        "{plan}"
    );
    assert_eq!(
        plan_ids(&plan, "remove"),
        BTreeSet::from([a_ids[3].clone()])
    );
    assert_eq!(
        std::fs::read(&garbled_path).expect("still there"),
        b"garbled on disk"
    );
    assert_eq!(
        snapshot_objects(fx),
        BTreeSet::from([
            format!("snapshots/{}", a_ids[4]),
            format!("snapshots/{}", b_ids[1]),
            garbled_key.clone(),
        ])
    );
}

#[test]
fn forget_on_local_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    forget_suite(&fx, tmp.path());
}

#[test]
fn forget_on_s3() {
    let Some(fx) = StoreFixture::s3("forget") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    forget_suite(&fx, tmp.path());
}
