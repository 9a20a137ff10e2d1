//! Reconcile-latency benchmark (not a test): the time from an Ansible-style
//! rename of a config file to the change showing in the daemon's API, with
//! 1 and with 1,000 declared schedules.
//!
//! Run: `cargo bench -p klosetd --bench reconcile_latency` (optionally
//! `-- ITERATIONS`). Each iteration rewrites the file holding the `probe`
//! schedule with a new cron (temp file + fsync + rename over the old one,
//! as Ansible does), then polls `GET /api/v1/schedules/probe` on a
//! keep-alive connection until it shows that cron. Prints p50, p90, p99 and
//! max per case; results go in docs/performance.md.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write_like_ansible(dir: &Path, name: &str, body: &str) {
    let tmp = dir.join(format!(".{name}.bench.tmp"));
    let mut f = std::fs::File::create(&tmp).expect("temp file");
    f.write_all(body.as_bytes()).expect("write");
    f.sync_all().expect("fsync");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn setup(root: &Path, schedules: usize) -> PathBuf {
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(root.join("data")).expect("mkdir");
    std::fs::write(root.join("data/file"), b"benchmark data").expect("data");
    std::fs::write(conf.join("pass"), "bench passphrase\n").expect("pass");
    std::fs::write(
        conf.join("00-base.toml"),
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\n\n\
         [store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n\n\
         [source.data]\nlocation = \"../data\"\n",
    )
    .expect("base");
    // The other schedules, in files of 100, fire yearly so no task runs.
    let others = schedules.saturating_sub(1);
    for file in 0..others.div_ceil(100) {
        let mut body = String::new();
        for i in file * 100..((file + 1) * 100).min(others) {
            body.push_str(&format!(
                "[schedule.s{i:04}]\ntask = \"backup\"\nsource = \"data\"\nstore = \"main\"\n\
                 cron = \"{} {} 1 1 *\"\ntimezone = \"Europe/Paris\"\n\n",
                i % 60,
                i % 24
            ));
        }
        std::fs::write(conf.join(format!("20-schedules-{file:02}.toml")), body).expect("write");
    }
    write_like_ansible(&conf, "90-probe.toml", &probe(0));
    conf
}

fn probe(i: usize) -> String {
    format!(
        "[schedule.probe]\ntask = \"check\"\nstore = \"main\"\ncron = \"{} {} 1 1 *\"\n",
        i % 60,
        (i / 60) % 24
    )
}

fn cron_shown(agent: &ureq::Agent, base: &str) -> Option<String> {
    let mut response = agent
        .get(format!("{base}/api/v1/schedules/probe"))
        .call()
        .ok()?;
    let text = response.body_mut().read_to_string().ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["cron"].as_str().map(str::to_string)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn run_case(schedules: usize, iterations: usize) {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = setup(tmp.path(), schedules);
    let daemon = common::start(
        &conf,
        &tmp.path().join("daemon.log"),
        "info,klosetd::app::reconcile=debug",
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // Wait until the initial configuration is applied.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cron_shown(&agent, &daemon.base).is_none() {
        assert!(Instant::now() < deadline, "probe schedule never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 1..=iterations {
        let body = probe(i);
        let want = body
            .lines()
            .find_map(|l| l.strip_prefix("cron = \""))
            .and_then(|c| c.strip_suffix('"'))
            .expect("cron")
            .to_string();
        let started = Instant::now();
        write_like_ansible(&conf, "90-probe.toml", &body);
        loop {
            if cron_shown(&agent, &daemon.base).as_deref() == Some(want.as_str()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "change {i} never showed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        samples.push(started.elapsed());
        // Let the daemon settle (the debounce window) before the next edit.
        std::thread::sleep(Duration::from_millis(100));
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{schedules:>5} schedules, {iterations} renames: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1]),
    );
    drop(daemon);
    // The daemon's own view: time to read + validate, and the whole reload.
    let log = std::fs::read_to_string(tmp.path().join("daemon.log")).unwrap_or_default();
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(key)? + key.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let mut read: Vec<u64> = Vec::new();
    let mut total: Vec<u64> = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("reload handled") && l.contains("file change"))
    {
        read.extend(field(line, "read_ms="));
        total.extend(field(line, "total_ms="));
    }
    read.sort_unstable();
    total.sort_unstable();
    if !total.is_empty() {
        let p = |v: &[u64], q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        println!(
            "        inside the daemon ({} reloads): read+validate p50 {} ms p99 {} ms; whole reload p50 {} ms p99 {} ms",
            total.len(),
            p(&read, 0.5),
            p(&read, 0.99),
            p(&total, 0.5),
            p(&total, 0.99)
        );
    }
}

fn main() {
    let iterations = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(200);
    println!(
        "reconcile latency: rename of a config file -> change visible in /api/v1/schedules/probe"
    );
    for schedules in [1, 1000] {
        run_case(schedules, iterations);
    }
}
