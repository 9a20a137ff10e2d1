//! S3 outages during a backup and a restore: the real `kloset` against the
//! real `s3s-fs`, behind a proxy that caps the bandwidth (a slow server),
//! so the server can be killed in the middle of a transfer and started
//! again on the same port and data. The retries of work requests (from
//! 0.5 s, doubling up to 30 s apart, for up to 5 minutes) carry both over a
//! three-second outage; no partial snapshot is listed, `check --read-data`
//! is clean, and every snapshot restores bit-exact.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cli::Kloset;
use common::proxy::Proxy;
use common::s3::S3Server;
use common::tree::{assert_trees_equal, write_random_files};

const PASS: &str = "s3 fault passphrase";
const MIB: usize = 1 << 20;
/// The slow server: 4 MiB/s each way, so 24 MiB take six seconds.
const SLOW: u64 = 4 << 20;
/// How long a run may take, outage and retries included.
const LIMIT: Duration = Duration::from_secs(240);

/// Starts `kloset ARGS`, waits until `when` says the moment has come,
/// kills the server for three seconds, starts it again, and returns how the
/// run ended (exit code, stderr).
fn outage_during(
    kloset: &Kloset,
    s3: &mut S3Server,
    args: &[&str],
    when: impl Fn() -> bool,
) -> (i32, String) {
    let mut child = kloset
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kloset");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !when() {
        assert!(
            Instant::now() < deadline,
            "the moment for the outage never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mid = child.try_wait().expect("wait").is_none();
    assert!(mid, "the run ended before the outage: make the data larger");
    s3.stop();
    std::thread::sleep(Duration::from_secs(3));
    s3.restart();
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            // What the retries said, for the record (`--nocapture`).
            eprintln!("{}: {status}; stderr:\n{stderr}", args[2]);
            return (status.code().unwrap_or(-1), stderr);
        }
        assert!(Instant::now() < deadline, "kloset hangs after the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The S3 server's client environment, with its endpoint moved to `proxy`.
fn env_through(s3: &S3Server, proxy: &Proxy) -> Vec<(String, String)> {
    s3.env()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_ENDPOINT_URL" => (k, proxy.endpoint()),
            _ => (k, v),
        })
        .collect()
}

#[test]
fn an_s3_outage_during_a_backup_and_a_restore_loses_nothing() {
    let Some(mut s3) = S3Server::start_or_skip() else {
        return;
    };
    let proxy = Proxy::start(s3.port(), 0);
    let env = env_through(&s3, &proxy);
    let loc = s3.location("fault");
    let at = |args: &[&str]| {
        let mut all = vec!["at", loc.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_string).collect::<Vec<String>>()
    };
    let kloset = Kloset::new().envs(env).passphrase(PASS).timeout(LIMIT);
    let tmp = tempfile::tempdir().expect("tmp");
    let v1 = tmp.path().join("v1");
    let v2 = tmp.path().join("v2");
    write_random_files(&v1, 1, 4, 4 * MIB);
    write_random_files(&v2, 1, 4, 4 * MIB);
    write_random_files(&v2, 2, 6, 4 * MIB);
    kloset.must(at(&["create"]));
    kloset.must(at(&["backup", v1.to_str().expect("utf8"), "--tag", "v1"]));

    // A backup of 24 new MiB on the slow server, with an outage inside.
    proxy.set_rate(SLOW);
    let args = at(&["backup", v2.to_str().expect("utf8"), "--tag", "v2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The outage strikes once 2 MiB of a pack's body went out: object_store
    // never retries a create-only write broken mid-body itself; klosetd's
    // create retry does (and warns on stderr, which is printed here).
    proxy.reset_uploads();
    let (code, stderr) = outage_during(&kloset, &mut s3, &args, || {
        proxy.largest_upload() >= 2 * MIB as u64
    });
    assert_eq!(
        code, 0,
        "the retries carry a backup over the outage: {stderr}"
    );
    proxy.set_rate(0);
    let listed = kloset.must(at(&["ls"])).stdout_str();
    let snapshots = listed.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(snapshots, 2, "v1 and one v2, nothing partial:\n{listed}");
    kloset.must(at(&["check", "--read-data"]));

    // A restore of 40 MiB on the slow server, with an outage inside.
    proxy.set_rate(SLOW);
    let out = tmp.path().join("out-v2");
    let args = at(&["restore", "-to", out.to_str().expect("utf8"), "latest"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let (code, stderr) = outage_during(&kloset, &mut s3, &args, || {
        started.elapsed() >= Duration::from_millis(1500)
    });
    proxy.set_rate(0);
    assert_eq!(
        code, 0,
        "the retries carry a restore over the outage: {stderr}"
    );
    assert_trees_equal(&v2, &out);
    let first = tmp.path().join("out-v1");
    let v1_id = listed
        .lines()
        .find(|l| l.contains("tags=v1"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the v1 snapshot")
        .to_string();
    kloset.must(at(&[
        "restore",
        "-to",
        first.to_str().expect("utf8"),
        &v1_id,
    ]));
    assert_trees_equal(&v1, &first);
    kloset.must(at(&["check", "--read-data"]));
}

/// The slower server: 100 KiB/s per connection, so a request of 4 MiB
/// lasts 41 s, past the client's 30 s request time-out.
const SLOWER: u64 = 100 * 1024;

#[test]
fn a_restore_whose_requests_outlast_the_request_timeout_completes() {
    let Some(s3) = S3Server::start_or_skip() else {
        return;
    };
    let proxy = Proxy::start(s3.port(), 0);
    let env = env_through(&s3, &proxy);
    let loc = s3.location("slow");
    // No local cache: the file comes in ranged requests of up to 4 MiB
    // (three of them, in flight at once), not from a spooled pack.
    let kloset = Kloset::new()
        .envs(env)
        .env("KLOSET_CACHE_DIR", "off")
        .passphrase(PASS)
        .timeout(LIMIT);
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    write_random_files(&src, 3, 1, 12 * MIB);
    kloset.must(["at", &loc, "create"]);
    kloset.must(["at", &loc, "backup", src.to_str().expect("utf8")]);

    proxy.set_rate(SLOWER);
    let out = tmp.path().join("out");
    let started = Instant::now();
    kloset.must([
        "at",
        &loc,
        "restore",
        "--to",
        out.to_str().expect("utf8"),
        "latest",
    ]);
    let took = started.elapsed();
    proxy.set_rate(0);
    eprintln!(
        "restore at {SLOWER} B/s per connection: {took:?}, {} answer(s) cut by the client",
        proxy.client_aborts()
    );
    assert_trees_equal(&src, &out);
    // The client gave up on an answer still coming (its time-out), and
    // the retry went on from there: without the resumption the restore
    // could not have finished.
    assert!(
        proxy.client_aborts() >= 1,
        "no answer outlasted the client's time-out ({took:?}): the test proves nothing"
    );
}
