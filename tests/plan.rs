//! `klosetd plan` end to end: against no state it adds everything; after a
//! real daemon applied a directory, editing, adding and removing objects
//! shows as `~`, `+` and `-` with the changed fields; an invalid directory
//! exits 1 with its errors; `--detailed-exitcode` and `--json` work.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn klosetd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(args)
        .output()
        .expect("run klosetd")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("write");
}

/// Runs the daemon until it logs that it applied the directory, then stops it.
fn apply_with_daemon(conf: &Path, log: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(["run", "--config"])
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("start klosetd");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("configuration applied") {
            break;
        }
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            panic!("the daemon did not apply the configuration:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}

#[test]
fn plan_compares_with_what_the_daemon_applied() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(root.join("data")).expect("mkdir");
    write(&conf, "pass", "plan test passphrase\n");
    write(
        &conf,
        "00-daemon.toml",
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\n",
    );
    write(
        &conf,
        "10-store.toml",
        "[store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n",
    );
    write(
        &conf,
        "20-schedules.toml",
        "[source.data]\nlocation = \"../data\"\n\n\
         [schedule.nightly]\ntask = \"backup\"\nsource = \"data\"\nstore = \"main\"\ncron = \"0 3 * * *\"\n\n\
         [schedule.weekly-check]\ntask = \"check\"\nstore = \"main\"\ncron = \"@weekly\"\n",
    );
    let dir = conf.to_str().expect("utf8");

    let fresh = klosetd(&["plan", dir]);
    assert!(fresh.status.success(), "{}", text(&fresh));
    let out = String::from_utf8_lossy(&fresh.stdout);
    for line in [
        "+ daemon",
        "+ store.main",
        "+ source.data",
        "+ schedule.nightly",
        "+ schedule.weekly-check",
        "no daemon state",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }

    apply_with_daemon(&conf, &root.join("daemon.log"));
    let same = klosetd(&["plan", "--detailed-exitcode", dir]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(
        String::from_utf8_lossy(&same.stdout).contains("no changes"),
        "{}",
        text(&same)
    );

    // Edit one schedule, remove one, add one; move the store to another file
    // (not a change).
    std::fs::remove_file(conf.join("10-store.toml")).expect("rm");
    write(
        &conf,
        "15-store-moved.toml",
        "# moved\n[store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n",
    );
    write(
        &conf,
        "20-schedules.toml",
        "[source.data]\nlocation = \"../data\"\n\n\
         [schedule.nightly]\ntask = \"backup\"\nsource = \"data\"\nstore = \"main\"\ncron = \"0 4 * * *\"\ntags = [\"nightly\"]\n\n\
         [schedule.daily-check]\ntask = \"check\"\nstore = \"main\"\ncron = \"@daily\"\n",
    );
    let changed = klosetd(&["plan", "--detailed-exitcode", dir]);
    assert_eq!(changed.status.code(), Some(2), "{}", text(&changed));
    let out = String::from_utf8_lossy(&changed.stdout);
    for line in [
        "~ schedule.nightly",
        "cron: \"0 3 * * *\" -> \"0 4 * * *\"",
        "+ schedule.daily-check",
        "- schedule.weekly-check",
        "3 change(s): 1 to add, 1 to change, 1 to remove",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(
        !out.contains("store.main"),
        "moving a table is no change:\n{out}"
    );

    let json = klosetd(&["plan", "--json", dir]);
    assert!(json.status.success(), "{}", text(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["changes"][0]["change"], "added", "{v}");

    write(
        &conf,
        "30-broken.toml",
        "[schedule.bad]\ntask = \"backup\"\nbogus = 1\n",
    );
    let broken = klosetd(&["plan", dir]);
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("30-broken.toml:"), "{err}");
}
