//! Sync end to end with the real daemon, into a store on a real S3 server
//! (s3s-fs) with its own passphrase: a one-shot backup then a one-shot
//! sync copy the snapshot, which restores bit-exact from the S3 store
//! with the CLI; a sync schedule then runs again and again and never
//! copies it twice; and the task record in `/api/v1/tasks/{id}` names the
//! source and target snapshot ids.

use crate::common;

use common::cli::Kloset;
use common::daemon::{LIMIT, lit, wait_for};
use common::e2e::{Setup, wait_succeeded};
use common::rng::SplitMix64;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::tree::assert_trees_equal;
use serde_json::Value;

const OFFSITE_PASS: &str = "offsite passphrase, not the source's";

fn config(setup: &Setup, s3: &S3Server, tasks: &str) -> String {
    format!(
        "{daemon}\n[store.main]\nlocation = {store}\npassphrase_file = \"pass\"\n\n\
         [resource.offsite_bucket]\nclass = \"object-storage\"\nsubclass = \"s3\"\n\
         bucket = \"{bucket}\"\nprefix = \"offsite\"\nendpoint = \"{endpoint}\"\n\
         region = \"us-east-1\"\nallow_http = true\naccess_key_id_file = \"s3_access\"\n\
         secret_access_key_file = \"s3_secret\"\n\n\
         [store.offsite]\nresource = \"offsite_bucket\"\npassphrase_file = \"offsite_pass\"\n\n\
         [source.src]\nlocation = {src}\n\n{tasks}",
        daemon = setup.daemon_table(),
        store = lit(&setup.path("store")),
        bucket = s3.bucket(),
        endpoint = s3.endpoint(),
        src = lit(&setup.path("src")),
    )
}

#[test]
fn a_sync_task_copies_into_an_s3_store_once_and_it_restores_bit_exact() {
    let Some(s3) = S3Server::start_or_skip() else {
        eprintln!("KLOSET_SKIP_S3=1: skipped");
        return;
    };
    let setup = Setup::new();
    setup.write("s3_access", &format!("{ACCESS_KEY}\n"));
    setup.write("s3_secret", &format!("{SECRET_KEY}\n"));
    setup.write("offsite_pass", &format!("{OFFSITE_PASS}\n"));
    let src = setup.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("sub/a.bin"), SplitMix64::new(5).bytes(3 << 20)).expect("write");
    std::fs::write(src.join("b.txt"), b"sync me\n").expect("write");

    // One-shots of one store run in declaration order: backup, then sync.
    setup.write(
        "10.toml",
        &config(
            &setup,
            &s3,
            "[task.first]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\n\
             [task.copy]\ntask = \"sync\"\nstore = \"main\"\nto = \"offsite\"\n",
        ),
    );
    let d = setup.start("sync", &[]);
    let backup = wait_succeeded(&d, "first");
    let source_id = backup["snapshot_id"]
        .as_str()
        .expect("snapshot")
        .to_string();
    let copy = wait_succeeded(&d, "copy");
    let stats = &copy["stats"];
    assert_eq!(stats["snapshots_copied"], 1, "{copy:#}");
    let copied = stats["copied"].as_array().expect("copied");
    assert_eq!(copied.len(), 1, "{copy:#}");
    assert_eq!(copied[0]["source"], source_id.as_str(), "{copy:#}");
    let target_id = copied[0]["target"].as_str().expect("target").to_string();
    let by_id = d.json(&format!("/api/v1/tasks/{}", copy["id"]));
    assert_eq!(by_id["stats"]["copied"], stats["copied"], "{by_id:#}");

    // The copy restores bit-exact from S3, with the offsite passphrase.
    let offsite = Kloset::new().envs(s3.env()).passphrase(OFFSITE_PASS);
    let location = s3.location("offsite");
    let out = setup.path("restored");
    offsite.must_at(
        &location,
        ["restore", "--to", out.to_str().expect("utf8"), &target_id],
    );
    assert_trees_equal(&src, &out);
    offsite.must_at(&location, ["check", "--read-data"]);

    // A schedule that syncs every 2 s never copies the snapshot again.
    setup.write(
        "10.toml",
        &config(
            &setup,
            &s3,
            "[schedule.offsite]\ntask = \"sync\"\nstore = \"main\"\nto = \"offsite\"\n\
             cron = \"*/2 * * * * *\"\n",
        ),
    );
    let mut runs: Vec<Value> = Vec::new();
    wait_for("two scheduled syncs", LIMIT * 2, || {
        if let Some(failed) = d.tasks("schedule=offsite&status=failed").first() {
            panic!("a scheduled sync failed: {failed:#}\n{}", d.log_text());
        }
        runs = d.tasks("schedule=offsite&status=succeeded&limit=10");
        (runs.len() >= 2)
            .then_some(())
            .ok_or(format!("{} run(s)", runs.len()))
    });
    for run in &runs {
        assert_eq!(run["stats"]["snapshots_copied"], 0, "{run:#}");
        assert_eq!(run["stats"]["snapshots_skipped"], 1, "{run:#}");
    }
    let listed: Value =
        serde_json::from_str(&offsite.must_at(&location, ["--json", "ls"]).stdout_str())
            .expect("ls json");
    assert_eq!(
        listed["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}
