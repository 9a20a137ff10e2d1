//! The daemon's read-only browser of snapshots against every damage of its
//! parent `damage_commands` (which builds the store, oracle and cases): the
//! snapshot list, each snapshot, every directory listing and every file
//! download either answers exactly what the snapshot holds (it did not need
//! the damaged bytes) or is a JSON error naming the object, while the daemon
//! stays up; with each object put back, `check --read-data` is clean.

use super::{Fixture, Object, assert_clean, names};
use crate::common;

use std::collections::BTreeSet;

use common::cli::TEST_PASSPHRASE;
use common::daemon::{Daemon, LIMIT, RawReply, lit, raw_http, wait_until, write_like_ansible};
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
        let fx = f.copy(&format!("browse-{n}"));
        case.apply(&fx.objects_dir);
        toml.push_str(&format!(
            "[store.c{n:02}]\nlocation = {}\npassphrase_file = {}\n\n",
            lit(&fx.objects_dir),
            lit(&f.root.join("pass"))
        ));
        stores.push(fx);
    }
    write_like_ansible(&conf, "00.toml", &toml);
    let mut d = Daemon::start(&conf, &f.root.join("log"), &[("KLOSET_CACHE_DIR", "off")]);
    wait_until("the configuration applied", LIMIT, || {
        d.try_json("/api/v1/status")
            .is_some_and(|v| v["config"]["applied_revision"].is_string())
    });
    let port = d.port().expect("port");
    let get = |target: &str| raw_http(port, "GET", target, &[]);
    for (n, case) in f.cases.iter().enumerate() {
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
        assert_eq!(
            d.status_of("/healthz"),
            Some(200),
            "{what}: the daemon answers"
        );
    }
    assert!(d.alive(), "the daemon is up");
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
    for (case, fx) in f.cases.iter().zip(&stores) {
        case.put_back(&fx.objects_dir);
        assert_clean(fx, &case.name());
    }
}
