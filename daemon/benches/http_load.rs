//! HTTP load benchmark (not a test): `wrk` against `/api/v1/status` and
//! `/metrics` while the daemon runs backups on the same machine.
//!
//! Run: `cargo bench -p klosetd --bench http_load` (needs Debian `wrk`).
//! The daemon backs up the Rust toolchain's sysroot (the corpus of
//! `shared/bench/PEERS.md`, about 1.4 GB and 52,000 files) into a local
//! store: a one-shot full backup, then a schedule every 2 seconds (each
//! run re-walks the whole tree), so a backup is running during every
//! measurement; the benchmark checks that and says so. Results go in
//! docs/performance.md.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn get(base: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", &format!("{base}{path}")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn running_backups(base: &str) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&get(base, "/api/v1/tasks?status=running")).unwrap_or_default();
    v["tasks"].as_array().map_or(0, Vec::len)
}

/// Runs wrk; returns (requests/s, p99 ms, non-2xx count).
fn wrk(url: &str, seconds: u32) -> (f64, f64, u64) {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            &format!("-d{seconds}s"),
            "--latency",
            "--timeout",
            "5s",
            url,
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_ms(v.trim()))
        .unwrap_or(f64::NAN);
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (rps, p99, errors)
}

fn parse_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

fn main() {
    let sysroot = String::from_utf8(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc")
            .stdout,
    )
    .expect("utf8")
    .trim()
    .to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("pass"), "bench passphrase\n").expect("pass");
    std::fs::write(
        conf.join("00.toml"),
        format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\nmax_concurrent_tasks = 1\n\n\
             [store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n\n\
             [source.sysroot]\nlocation = '{sysroot}'\n\n\
             [task.full]\ntask = \"backup\"\nsource = \"sysroot\"\nstore = \"main\"\n\n\
             [schedule.again]\ntask = \"backup\"\nsource = \"sysroot\"\nstore = \"main\"\ncron = \"*/2 * * * * *\"\n"
        ),
    )
    .expect("config");
    let daemon = common::start(&conf, &tmp.path().join("daemon.log"), "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_backups(&daemon.base) == 0 {
        assert!(Instant::now() < deadline, "no backup started");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "http load: wrk -t2 -c32 --latency, 10 s per endpoint, while klosetd backs up {sysroot}"
    );
    for path in [
        "/api/v1/status",
        "/metrics",
        "/api/v1/schedules",
        "/healthz",
    ] {
        let before = running_backups(&daemon.base);
        let (rps, p99, errors) = wrk(&format!("{}{path}", daemon.base), 10);
        let after = running_backups(&daemon.base);
        println!(
            "{path:<20} {rps:>9.0} req/s  p99 {p99:>6.2} ms  non-2xx {errors}  (backup running before/after: {}/{})",
            before > 0,
            after > 0
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&get(&daemon.base, "/api/v1/tasks?kind=backup&limit=1000"))
            .unwrap_or_default();
    let done = v["tasks"].as_array().map_or(0, |t| {
        t.iter().filter(|t| t["status"] == "succeeded").count()
    });
    println!("backups that succeeded meanwhile: {done}");
}
