//! The exec integration through the real daemon: a command's standard
//! output backed up as one file and restored byte for byte into a command's
//! standard input; a command that fails after writing output fails the task
//! and writes no snapshot; `pre`/`post` hooks run in order around the
//! backup, a failing `pre` stops it, `post` learns the outcome from
//! `KLOSETD_STATUS` and a failing `post` fails the task but keeps the
//! snapshot.

use crate::common;

use common::daemon::lit;
use common::e2e::{Setup, snapshots, wait_finished, wait_succeeded};
use common::rng::SplitMix64;

/// `["sh", "-c", script]` as a TOML array.
fn sh(script: &str) -> String {
    format!("[\"sh\", \"-c\", {}]", toml_str(script))
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn store_table(setup: &Setup) -> String {
    format!(
        "[store.main]\nlocation = {}\npassphrase_file = \"pass\"\n",
        lit(&setup.path("store"))
    )
}

#[test]
fn a_command_output_is_backed_up_and_piped_back_byte_exact() {
    let setup = Setup::new();
    let payload = SplitMix64::new(7).bytes(3_000_000);
    let payload_file = setup.path("payload.bin");
    std::fs::write(&payload_file, &payload).expect("write payload");
    let restored = setup.path("restored.bin");
    let mut expected = b"-- dump of gen --\n".to_vec();
    expected.extend_from_slice(&payload);
    expected.extend_from_slice(b"\n-- end --\n");

    let gen_script = format!(
        "printf -- '-- dump of %s --\\n' gen; cat {}; printf '\\n-- end --\\n'",
        lit(&payload_file)
    );
    let bad_script =
        "printf 'half a dump'; head -c 200000 /dev/zero; echo 'disk on fire' >&2; exit 1";
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
{store}
[source.gen]
integration = "exec"
command = {gen}
file = "gen.bin"

[source.bad]
integration = "exec"
command = {bad}
file = "bad.bin"

[source.missing]
integration = "exec"
command = ["/nonexistent/dumper", "--all"]

[destination.out]
integration = "exec"
command = {out}

[task.backup]
task = "backup"
source = "gen"
store = "main"

[task.bad]
task = "backup"
source = "bad"
store = "main"
"#,
            daemon = setup.daemon_table(),
            store = store_table(&setup),
            gen = sh(&gen_script),
            bad = sh(bad_script),
            out = sh(&format!("cat > {}", lit(&restored))),
        ),
    );
    let d = setup.start("run", &[]);
    let limit = std::time::Duration::from_secs(60);
    let c = common::e2e::settled_condition(&d, "sources", "gen", limit);
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Executable".into()),
        "{c}"
    );
    let c = common::e2e::settled_condition(&d, "sources", "missing", limit);
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&false.into(), &"NotFound".into()),
        "{c}"
    );
    let c = common::e2e::settled_condition(&d, "destinations", "out", limit);
    assert_eq!(c["ready"], true, "{c}");

    let backup = wait_succeeded(&d, "backup");
    assert_eq!(backup["stats"]["files"], 1, "{backup}");
    assert_eq!(backup["stats"]["bytes"], expected.len() as u64, "{backup}");
    let id = backup["snapshot_id"]
        .as_str()
        .expect("a snapshot")
        .to_string();

    // The failing command: the task fails with the command's status and
    // stderr, and no snapshot of it exists.
    let bad = wait_finished(&d, "bad");
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(bad["snapshot_id"].is_null(), "{bad}");
    let error = bad["error"].as_str().expect("an error");
    assert!(error.contains("exit status: 1"), "{error}");
    assert!(error.contains("disk on fire"), "{error}");
    let snaps = snapshots(&d, "main");
    assert_eq!(snaps.len(), 1, "only the good backup: {snaps:?}");
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["source"], "gen");

    // The snapshot holds exactly /gen.bin.
    let tree = d.json(&format!("/api/v1/stores/main/snapshots/{id}/tree"));
    let names: Vec<&str> = tree["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["gen.bin"], "{tree}");

    // Restored through the exec destination: byte for byte.
    let restore = common::e2e::restore_task(&setup, &d, "restore", "main", "out", Some("/gen.bin"));
    assert_eq!(
        restore["status"],
        "succeeded",
        "{restore}\n{}",
        d.log_text()
    );
    assert_eq!(restore["snapshot_id"], id.as_str());
    let got = std::fs::read(&restored).expect("the restored file");
    assert!(
        got == expected,
        "restored {} bytes, expected {}",
        got.len(),
        expected.len()
    );

    // The whole snapshot also works: it holds one file.
    std::fs::remove_file(&restored).expect("rm");
    let whole = common::e2e::restore_task(&setup, &d, "restore_all", "main", "out", None);
    assert_eq!(whole["status"], "succeeded", "{whole}");
    assert!(std::fs::read(&restored).expect("restored") == expected);
}

#[test]
fn hooks_run_in_order_and_see_the_outcome() {
    let setup = Setup::new();
    let (m1, m2, m3, m4) = (
        setup.path("hooked.marks"),
        setup.path("blocked.marks"),
        setup.path("failing.marks"),
        setup.path("postfail.marks"),
    );
    let append = |file: &std::path::Path, what: &str| format!("echo \"{what}\" >> {}", lit(file));
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
{store}
[source.hooked]
integration = "exec"
command = {hooked_cmd}
file = "hooked.txt"
pre = {hooked_pre}
post = {hooked_post}

[source.blocked]
integration = "exec"
command = {blocked_cmd}
file = "blocked.txt"
pre = {blocked_pre}

[source.failing]
integration = "exec"
command = {failing_cmd}
file = "failing.txt"
pre = {failing_pre}
post = {failing_post}

[source.postfail]
integration = "exec"
command = {postfail_cmd}
file = "postfail.txt"
post = {postfail_post}

[task.hooked]
task = "backup"
source = "hooked"
store = "main"

[task.blocked]
task = "backup"
source = "blocked"
store = "main"

[task.failing]
task = "backup"
source = "failing"
store = "main"

[task.postfail]
task = "backup"
source = "postfail"
store = "main"
"#,
            daemon = setup.daemon_table(),
            store = store_table(&setup),
            hooked_cmd = sh(&format!("{}; printf 'hooked data'", append(&m1, "command"))),
            hooked_pre = sh(&append(&m1, "pre $KLOSETD_SOURCE $KLOSETD_STORE")),
            hooked_post = sh(&append(&m1, "post $KLOSETD_STATUS $KLOSETD_SOURCE")),
            blocked_cmd = sh(&format!("{}; printf x", append(&m2, "command"))),
            blocked_pre = sh(&format!(
                "{}; echo 'the database is locked' >&2; exit 3",
                append(&m2, "pre")
            )),
            failing_cmd = sh(&format!("{}; printf half; exit 2", append(&m3, "command"))),
            failing_pre = sh(&append(&m3, "pre")),
            failing_post = sh(&append(&m3, "post $KLOSETD_STATUS")),
            postfail_cmd = sh("printf 'kept data'"),
            postfail_post = sh(&format!(
                "{}; echo 'cannot unlock' >&2; exit 5",
                append(&m4, "post $KLOSETD_STATUS")
            )),
        ),
    );
    let d = setup.start("run", &[]);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();

    let hooked = wait_succeeded(&d, "hooked");
    assert_eq!(
        read(&m1),
        "pre hooked main\ncommand\npost succeeded hooked\n",
        "{hooked}"
    );

    let blocked = wait_finished(&d, "blocked");
    assert_eq!(blocked["status"], "failed", "{blocked}");
    let error = blocked["error"].as_str().expect("error");
    assert!(
        error.contains("pre hook") && error.contains("the database is locked"),
        "{error}"
    );
    assert!(error.contains("nothing was backed up"), "{error}");
    assert!(blocked["snapshot_id"].is_null(), "{blocked}");
    assert_eq!(read(&m2), "pre\n", "the command never ran");

    let failing = wait_finished(&d, "failing");
    assert_eq!(failing["status"], "failed", "{failing}");
    assert!(failing["snapshot_id"].is_null(), "{failing}");
    assert_eq!(read(&m3), "pre\ncommand\npost failed\n");

    let postfail = wait_finished(&d, "postfail");
    assert_eq!(postfail["status"], "failed", "{postfail}");
    let error = postfail["error"].as_str().expect("error");
    assert!(
        error.contains("post hook") && error.contains("cannot unlock"),
        "{error}"
    );
    assert!(error.contains("the snapshot was written"), "{error}");
    assert_eq!(read(&m4), "post succeeded\n");
    let kept = postfail["snapshot_id"]
        .as_str()
        .expect("the snapshot is kept");

    // Exactly the two backups whose command succeeded left snapshots.
    let mut ids: Vec<String> = snapshots(&d, "main")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    let mut want = vec![
        hooked["snapshot_id"].as_str().expect("id").to_string(),
        kept.to_string(),
    ];
    want.sort();
    assert_eq!(ids, want);
}
