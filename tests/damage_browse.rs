//! The daemon's read-only browser of snapshots, on local disk and on S3,
//! against every damage of its parent `damage_commands` (which builds the
//! store, oracle and cases): the snapshot list, each snapshot, every
//! directory listing and every file download either answers exactly what
//! the snapshot holds (it did not need the damaged bytes) or is a JSON error
//! naming the object, while the daemon stays up; with each object put back,
//! `check --read-data` is clean.

use super::{Case, Fixture, Object, assert_clean, names};
use crate::common;

use std::collections::BTreeSet;

use common::cli::TEST_PASSPHRASE;
use common::daemon::{Daemon, LIMIT, RawReply, lit, raw_http, wait_until, write_like_ansible};
use common::s3::S3Server;
use serde_json::Value;

/// Asserts a JSON error (4xx or 5xx, not a 500 of a failed handler) naming `key`.
fn error_naming(r: &RawReply, key: &str, what: &str) {
    assert!(
        (400..600).contains(&r.status) && r.status != 500,
        "{what}: want an error status, got {}: {}",
        r.status,
        r.text()
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: {e}"));
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(names(message, key), "{what}: the error names {key}: {v}");
}

#[test]
fn the_browser_serves_exact_bytes_or_an_error_naming_the_damage() {
    browse_every_case(None);
}

#[test]
fn the_browser_on_s3_serves_exact_bytes_or_an_error_naming_the_damage() {
    if let Some(server) = S3Server::start_or_skip() {
        browse_every_case(Some(&server));
    }
}

fn browse_every_case(s3: Option<&S3Server>) {
    let f = Fixture::build();
    // One daemon, one store per case: a store is opened (header, index) at
    // its first request, so each case is read as damaged. The browser takes
    // no lock and reads no mark, nor pack trailers (the index locates blobs).
    let conf = f.root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(f.root.join("pass"), TEST_PASSPHRASE).expect("pass");
    let mut toml = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n\n",
        lit(&f.root.join("state"))
    );
    let mut stores = Vec::new();
    for (n, case) in f.cases.iter().enumerate() {
        let fx = f.copy(&format!("browse-{n}"), s3);
        case.apply(&fx.objects_dir);
        toml.push_str(&format!(
            "[store.c{n:02}]\nlocation = {}\npassphrase_file = {}\n\n",
            serde_json::to_string(&fx.location).expect("a TOML string"),
            lit(&f.root.join("pass"))
        ));
        stores.push(fx);
    }
    write_like_ansible(&conf, "00.toml", &toml);
    let server_env = s3.map(S3Server::env).unwrap_or_default();
    let mut env = vec![("KLOSET_CACHE_DIR", "off")];
    env.extend(server_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut d = Daemon::start(&conf, &f.root.join("log"), &env);
    wait_until("the configuration applied", LIMIT, || {
        d.try_json("/api/v1/status")
            .is_some_and(|v| v["config"]["applied_revision"].is_string())
    });
    let port = d.port().expect("port");
    // Each case has its own store: four at a time keep the S3 run short
    // (s3s-fs answers a request on a kept-alive connection only after the
    // client's delayed ACK, ~40 ms, docs/performance.md).
    std::thread::scope(|s| {
        for worker in 0..4 {
            let f = &f;
            s.spawn(move || {
                for (n, case) in f.cases.iter().enumerate().skip(worker).step_by(4) {
                    browse_case(f, port, n, case);
                }
            });
        }
    });
    assert_eq!(d.status_of("/healthz"), Some(200), "the daemon answers");
    assert!(d.alive(), "the daemon is up");
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
    for (case, fx) in f.cases.iter().zip(&stores) {
        case.put_back(&fx.objects_dir);
        assert_clean(fx, &case.name());
    }
}

/// Every request of one case against its store `c{n}`.
fn browse_case(f: &Fixture, port: u16, n: usize, case: &Case) {
    let get = |target: &str| raw_http(port, "GET", target, &[]);
    let what = case.name();
    let base = format!("/api/v1/stores/c{n:02}/snapshots");
    // The list reads every snapshot object (and needs the header).
    let r = get(&base);
    match case.object {
        Object::Header | Object::Snapshot(_) => error_naming(&r, &case.key, &what),
        _ => {
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            let v: Value = serde_json::from_slice(&r.body).expect("json");
            let ids: BTreeSet<&str> = v["snapshots"]
                .as_array()
                .expect("snapshots")
                .iter()
                .filter_map(|s| s["id"].as_str())
                .collect();
            let want: BTreeSet<&str> = f.snaps.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(ids, want, "{what}");
        }
    }
    for (i, s) in f.snaps.iter().enumerate() {
        let all_fail = case.object == Object::Header || case.object == Object::Snapshot(i);
        let snap = format!("{base}/{}", s.id);
        let r = get(&snap);
        if all_fail {
            error_naming(&r, &case.key, &format!("{what}: {snap}"));
        } else {
            assert_eq!(r.status, 200, "{what}: {snap}: {}", r.text());
        }
        for e in &s.entries {
            let (route, at) = if e.dir {
                ("tree", "tree/")
            } else {
                ("files", "files/")
            };
            let target = format!("{snap}/{at}{}", e.rel);
            let r = get(&target);
            if all_fail || case.hits(&e.needs) {
                error_naming(&r, &case.key, &format!("{what}: {target}"));
                continue;
            }
            assert_eq!(r.status, 200, "{what}: {target}: {}", r.text());
            let path = s.reference.join(&e.rel);
            if route == "files" {
                assert!(
                    r.body == std::fs::read(&path).expect("read"),
                    "{what}: {target}"
                );
                continue;
            }
            let v: Value = serde_json::from_slice(&r.body).expect("listing");
            let got: BTreeSet<&str> = v["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .filter_map(|e| e["name"].as_str())
                .collect();
            let want: Vec<String> = std::fs::read_dir(&path)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                got,
                want.iter().map(String::as_str).collect(),
                "{what}: {target}"
            );
        }
    }
    let health = raw_http(port, "GET", "/healthz", &[]);
    assert_eq!(health.status, 200, "{what}: the daemon answers");
}
