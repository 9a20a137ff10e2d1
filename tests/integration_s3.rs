//! The S3 integration through the real daemon against a real S3 server
//! (`s3s-fs`, tests/common/s3.rs). The acceptance scenario: two S3
//! resources (two buckets on one server, credentials from files), a local
//! store, a source on bucket A prefix `data/` and a destination on bucket B
//! prefix `restored/`; a one-shot backup, then (once it is recorded) a
//! one-shot restore, and bucket B holds byte for byte the same keys under
//! `restored/`: nested prefixes, a 20 MiB object (multipart), an empty
//! object, and nothing from outside the prefix. A second backup of
//! unchanged objects adds ~0 bytes. An S3 bucket also serves as the store.
//! A wrong secret key gives `AuthenticationFailed`, a closed port
//! `Unreachable` within a bounded time, and no secret ever shows.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::daemon::{Daemon, lit, write_like_ansible};
use common::e2e::{Setup, assert_no_secret, restore_task, settled_condition, snapshots};
use common::e2e::{wait_finished, wait_succeeded};
use common::rng::SplitMix64;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

const MIB: usize = 1 << 20;

/// The ETag S3 reports for `key` (`MD5-N` for an object put in N parts).
fn etag(s3: &S3Server, bucket: &str, key: &str) -> String {
    let storage = s3.bucket_storage(bucket);
    let (store, path) = (storage.object_store(), ObjPath::parse(key).expect("key"));
    let meta = storage
        .run(async move { store.head(&path).await })
        .unwrap_or_else(|e| panic!("head {key}: {e}"));
    meta.e_tag.unwrap_or_default()
}

/// Puts `objects` (key → bytes) into `bucket` through the S3 API.
fn put_objects(s3: &S3Server, bucket: &str, objects: &BTreeMap<String, Vec<u8>>) {
    let storage = s3.bucket_storage(bucket);
    let store = storage.object_store();
    for (key, bytes) in objects {
        // `parse` keeps the key as written (`from` would percent-encode
        // non-ASCII characters into the key itself).
        let path = ObjPath::parse(key).expect("a valid key");
        let store = store.clone();
        let payload = PutPayload::from(Bytes::from(bytes.clone()));
        storage
            .run(async move { store.put(&path, payload).await })
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
}

/// Every object below `prefix/` in `bucket`, read from s3s-fs's root
/// directory: key (relative to the prefix) → bytes.
fn objects_under(s3: &S3Server, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let base = s3.root().join(bucket).join(prefix);
    let mut out = BTreeMap::new();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path
                    .strip_prefix(&base)
                    .expect("below")
                    .display()
                    .to_string();
                out.insert(key, std::fs::read(&path).expect("read object"));
            }
        }
    }
    out
}

/// Secret files and an S3 resource table.
fn resource(
    name: &str,
    s3_endpoint: &str,
    bucket: &str,
    prefix: &str,
    secret_file: &str,
) -> String {
    format!(
        "[resource.{name}]\nclass = \"object-storage\"\nsubclass = \"s3\"\nbucket = \"{bucket}\"\n\
         prefix = \"{prefix}\"\nendpoint = \"{s3_endpoint}\"\nregion = \"us-east-1\"\n\
         allow_http = true\naccess_key_id_file = \"s3_access\"\nsecret_access_key_file = \"{secret_file}\"\n\n"
    )
}

fn summary(objects: &BTreeMap<String, Vec<u8>>) -> Vec<(String, usize, String)> {
    objects
        .iter()
        .map(|(k, v)| (k.clone(), v.len(), blake3::hash(v).to_hex().to_string()))
        .collect()
}

fn wait_task_file(setup: &Setup, d: &Daemon, name: &str, body: &str) -> serde_json::Value {
    write_like_ansible(
        &setup.conf(),
        &format!("{name}.toml"),
        &format!("[task.{name}]\n{body}"),
    );
    wait_finished(d, name)
}

#[test]
fn a_bucket_prefix_is_backed_up_and_restored_into_another_bucket_byte_exact() {
    let s3 = S3Server::start();
    s3.create_bucket("bucket-a");
    s3.create_bucket("bucket-b");
    s3.create_bucket("store-bucket");
    let mut rng = SplitMix64::new(42);
    let data: BTreeMap<String, Vec<u8>> = [
        ("top.txt", b"top of the prefix\n".to_vec()),
        ("nested/deeper/leaf.json", br#"{"leaf": true}"#.to_vec()),
        ("nested/x.bin", rng.bytes(300_000)),
        ("big/twenty-MiB.bin", rng.bytes(20 * MIB)),
        ("empty", Vec::new()),
        ("spaced name/ünï.txt", "grüße".as_bytes().to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut in_a: BTreeMap<String, Vec<u8>> = data
        .iter()
        .map(|(k, v)| (format!("data/{k}"), v.clone()))
        .collect();
    in_a.insert("datapoint.txt".into(), b"beside the prefix".to_vec());
    in_a.insert("other/not-me.txt".into(), b"outside the prefix".to_vec());
    put_objects(&s3, "bucket-a", &in_a);
    assert_eq!(
        summary(&objects_under(&s3, "bucket-a", "data")),
        summary(&data)
    );

    let setup = Setup::new();
    setup.write("s3_access", &format!("{ACCESS_KEY}\n"));
    setup.write("s3_secret", &format!("{SECRET_KEY}\n"));
    let local = setup.path("local");
    std::fs::create_dir_all(local.join("sub")).expect("mkdir");
    std::fs::write(local.join("sub/file.txt"), b"local file").expect("write");
    std::fs::write(local.join("blob.bin"), rng.bytes(3 * MIB)).expect("write");
    std::os::unix::fs::symlink("blob.bin", local.join("link")).expect("symlink");
    let endpoint = s3.endpoint();
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
{a}{b}{bt}{st}
[store.local]
location = {store}
passphrase_file = "pass"

[store.s3]
resource = "store_bucket"
passphrase_file = "pass"

[source.a]
resource = "bucket_a"

[source.local]
location = {local}

[destination.b]
resource = "bucket_b"

[task.backup]
task = "backup"
source = "a"
store = "local"

[task.backup_to_s3]
task = "backup"
source = "local"
store = "s3"
"#,
            daemon = setup.daemon_table(),
            a = resource("bucket_a", &endpoint, "bucket-a", "data/", "s3_secret"),
            b = resource("bucket_b", &endpoint, "bucket-b", "restored/", "s3_secret"),
            bt = resource(
                "bucket_b_tests",
                &endpoint,
                "bucket-b",
                "tests",
                "s3_secret"
            ),
            st = resource(
                "store_bucket",
                &endpoint,
                "store-bucket",
                "kloset",
                "s3_secret"
            ),
            store = lit(&setup.path("store")),
            local = lit(&local),
        ),
    );
    let d = setup.start("run", &[]);
    let limit = Duration::from_secs(60);
    let c = settled_condition(&d, "sources", "a", limit);
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Listable".into()),
        "{c}"
    );
    let c = settled_condition(&d, "destinations", "b", limit);
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Writable".into()),
        "{c}"
    );
    let c = settled_condition(&d, "stores", "s3", limit);
    assert_eq!(c["ready"], true, "{c}");

    let backup = wait_succeeded(&d, "backup");
    assert_eq!(backup["stats"]["files"], data.len(), "{backup}");
    let total: usize = data.values().map(Vec::len).sum();
    assert_eq!(backup["stats"]["bytes"], total, "{backup}");
    assert_eq!(backup["stats"]["errors"], 0, "{backup}");

    // The restore task is declared once the backup is recorded.
    let restore = restore_task(&setup, &d, "restore", "local", "b", None);
    assert_eq!(
        restore["status"],
        "succeeded",
        "{restore}\n{}",
        d.log_text()
    );
    assert_eq!(restore["stats"]["files"], data.len(), "{restore}");
    let restored = objects_under(&s3, "bucket-b", "restored");
    assert_eq!(
        summary(&restored),
        summary(&data),
        "bucket B under restored/"
    );
    assert!(restored == data, "byte for byte");
    // The 20 MiB object went up in parts (8 MiB each) and left no upload behind.
    let tag = etag(&s3, "bucket-b", "restored/big/twenty-MiB.bin");
    assert!(
        tag.trim_matches('"').ends_with("-3"),
        "a multipart ETag: {tag}"
    );
    let tag = etag(&s3, "bucket-b", "restored/nested/x.bin");
    assert!(!tag.contains('-'), "a small object in one piece: {tag}");
    let leftovers: Vec<String> = std::fs::read_dir(s3.root())
        .expect("root")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A one-shot restore refuses to replace objects, unless told to.
    let big = s3.root().join("bucket-b/restored/big/twenty-MiB.bin");
    std::fs::write(&big, b"changed since").expect("tamper");
    let refused = restore_task(&setup, &d, "again", "local", "b", None);
    assert_eq!(refused["status"], "failed", "{refused}");
    let error = refused["error"].as_str().expect("error");
    assert!(error.contains("exist"), "{error}");
    assert_eq!(std::fs::read(&big).expect("read"), b"changed since");
    let forced = wait_task_file(
        &setup,
        &d,
        "forced",
        "task = \"restore\"\nstore = \"local\"\ndestination = \"b\"\noverwrite = true\n",
    );
    assert_eq!(forced["status"], "succeeded", "{forced}");
    assert!(objects_under(&s3, "bucket-b", "restored") == data);

    // A scheduled restore is a restore test: into PREFIX/<short id>/.
    write_like_ansible(
        &setup.conf(),
        "restore-test.toml",
        "[destination.b_tests]\nresource = \"bucket_b_tests\"\n\n\
         [schedule.restore_test]\ntask = \"restore\"\nstore = \"local\"\n\
         destination = \"b_tests\"\ncron = \"*/2 * * * * *\"\n",
    );
    let tested = common::daemon::wait_value("a restore test", Duration::from_secs(60), || {
        let v = d.try_json("/api/v1/tasks?schedule=restore_test&limit=5")?;
        common::daemon::tasks(&v)
            .into_iter()
            .find(|t| t["status"] != "running")
    });
    assert_eq!(tested["status"], "succeeded", "{tested}\n{}", d.log_text());
    let short = snapshots(&d, "local")[0]["short_id"]
        .as_str()
        .expect("short id")
        .to_string();
    let in_tests = objects_under(&s3, "bucket-b", &format!("tests/{short}"));
    assert!(
        in_tests == data,
        "the restore test holds the snapshot: {:?}",
        summary(&in_tests)
    );
    std::fs::remove_file(setup.conf().join("restore-test.toml")).expect("rm");

    // Unchanged objects: the second backup adds (almost) nothing.
    let again = wait_task_file(
        &setup,
        &d,
        "backup_again",
        "task = \"backup\"\nsource = \"a\"\nstore = \"local\"\n",
    );
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["stats"]["files_unchanged"], data.len(), "{again}");
    let added = again["stats"]["bytes_added"].as_u64().expect("bytes_added");
    assert!(
        added < 64 * 1024,
        "{added} bytes added for unchanged objects: {again}"
    );

    // An S3 bucket as the store: backup, check with data, restore locally.
    let to_s3 = wait_succeeded(&d, "backup_to_s3");
    assert_eq!(to_s3["stats"]["files"], 2, "{to_s3}");
    assert_eq!(to_s3["stats"]["errors"], 0, "{to_s3}");
    assert!(
        !objects_under(&s3, "store-bucket", "kloset").is_empty(),
        "the store lives in the bucket"
    );
    let check = wait_task_file(
        &setup,
        &d,
        "check",
        "task = \"check\"\nstore = \"s3\"\nread_data = true\n",
    );
    assert_eq!(check["status"], "succeeded", "{check}\n{}", d.log_text());
    let back = setup.path("back");
    write_like_ansible(
        &setup.conf(),
        "back.toml",
        &format!("[destination.back]\nlocation = {}\n", lit(&back)),
    );
    let r = restore_task(&setup, &d, "from_s3", "s3", "back", None);
    assert_eq!(r["status"], "succeeded", "{r}\n{}", d.log_text());
    assert_eq!(
        std::fs::read(back.join("blob.bin")).expect("restored"),
        std::fs::read(local.join("blob.bin")).expect("original")
    );
    assert_eq!(snapshots(&d, "s3").len(), 1);
    assert_eq!(
        std::fs::read_link(back.join("link")).expect("the link"),
        Path::new("blob.bin")
    );

    // Into a bucket: the files, and the link reported (buckets hold none).
    write_like_ansible(
        &setup.conf(),
        "to-bucket.toml",
        &format!(
            "{}[destination.bucket_copy]\nresource = \"copy\"\n",
            resource("copy", &endpoint, "bucket-b", "copy", "s3_secret")
        ),
    );
    let r = restore_task(&setup, &d, "to_bucket", "s3", "bucket_copy", None);
    // The link could not be restored: the run did its work but missed it.
    assert_eq!(r["status"], "partial", "{r}\n{}", d.log_text());
    let error = r["error"].as_str().expect("the link is reported");
    assert!(
        error.contains("/link") && error.contains("symbolic links"),
        "{error}"
    );
    let copied = objects_under(&s3, "bucket-b", "copy");
    let keys: Vec<&str> = copied.keys().map(String::as_str).collect();
    assert_eq!(keys, ["blob.bin", "sub/file.txt"]);
    assert!(copied["blob.bin"] == std::fs::read(local.join("blob.bin")).expect("read"));

    assert_no_secret(
        &d,
        SECRET_KEY,
        &[
            "/api/v1/sources/a",
            "/api/v1/resources/bucket_a",
            "/api/v1/stores/s3",
            "/api/v1/tasks",
            "/api/v1/status",
        ],
    );
}

#[test]
fn a_wrong_secret_and_a_closed_port_have_precise_reasons() {
    let s3 = S3Server::start();
    s3.create_bucket("bucket-a");
    put_objects(
        &s3,
        "bucket-a",
        &[("data/f".to_string(), b"x".to_vec())]
            .into_iter()
            .collect(),
    );
    let closed = common::postgres::closed_port();
    let setup = Setup::new();
    let wrong = "wrong-secret-key-0123456789abcdef";
    setup.write("s3_access", &format!("{ACCESS_KEY}\n"));
    setup.write("s3_wrong", &format!("{wrong}\n"));
    setup.write("s3_access_unknown", "AKIAUNKNOWNKEY\n");
    setup.write("s3_secret", &format!("{SECRET_KEY}\n"));
    let endpoint = s3.endpoint();
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
{bad}{gone}{nokey}{nobucket}
[source.unknown_key]
resource = "nokey"

[source.by_location]
location = "s3://bucket-a/data/"

[source.no_bucket]
resource = "nobucket"
[store.local]
location = {store}
passphrase_file = "pass"

[source.wrong_secret]
resource = "bad"

[destination.wrong_secret]
resource = "bad"

[source.closed]
resource = "gone"

[destination.closed]
resource = "gone"

[task.backup]
task = "backup"
source = "wrong_secret"
store = "local"
"#,
            daemon = setup.daemon_table(),
            bad = resource("bad", &endpoint, "bucket-a", "data", "s3_wrong"),
            gone = resource(
                "gone",
                &format!("http://127.0.0.1:{closed}"),
                "bucket-a",
                "data",
                "s3_secret"
            ),
            nokey = resource("nokey", &endpoint, "bucket-a", "data", "s3_secret")
                .replace("\"s3_access\"", "\"s3_access_unknown\""),
            nobucket = resource("nobucket", &endpoint, "no-such-bucket", "", "s3_secret"),
            store = lit(&setup.path("store")),
        ),
    );
    let started = Instant::now();
    // A location takes its credentials and endpoint from the environment.
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = setup.start("run", &env);
    let limit = Duration::from_secs(60);
    let c = settled_condition(&d, "sources", "by_location", limit);
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Listable".into()),
        "{c}"
    );
    for kind in ["sources", "destinations"] {
        let c = settled_condition(&d, kind, "wrong_secret", limit);
        assert_eq!(c["ready"], false, "{kind}: {c}");
        assert_eq!(c["reason"], "AuthenticationFailed", "{kind}: {c}");
    }
    let c = settled_condition(&d, "sources", "unknown_key", limit);
    assert_eq!(c["reason"], "AuthenticationFailed", "{c}");
    let c = settled_condition(&d, "sources", "no_bucket", limit);
    assert_eq!(c["reason"], "NotFound", "{c}");
    for kind in ["sources", "destinations"] {
        let c = settled_condition(&d, kind, "closed", limit);
        assert_eq!(c["ready"], false, "{kind}: {c}");
        assert_eq!(c["reason"], "Unreachable", "{kind}: {c}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "the tests took {took:?}");

    common::e2e::wait_oneshot_waiting_for(&d, "backup", "source.wrong_secret");

    let paths = [
        "/api/v1/sources/wrong_secret",
        "/api/v1/destinations/wrong_secret",
        "/api/v1/resources/bad",
        "/api/v1/sources/closed",
        "/api/v1/tasks",
        "/api/v1/status",
    ];
    assert_no_secret(&d, wrong, &paths);
    assert_no_secret(&d, SECRET_KEY, &paths);
}

/// An endpoint that accepts connections and never answers (a firewall or
/// a hung proxy): the connection test gives up within a bounded time.
#[test]
fn a_silent_endpoint_is_unreachable_within_a_bounded_time() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    // Accepted (by the kernel backlog and here) but never answered.
    let held = std::thread::spawn(move || {
        let mut streams = Vec::new();
        for s in silent.incoming().flatten() {
            streams.push(s);
        }
    });
    let setup = Setup::new();
    setup.write("s3_access", &format!("{ACCESS_KEY}\n"));
    setup.write("s3_secret", &format!("{SECRET_KEY}\n"));
    setup.write(
        "10.toml",
        &format!(
            "{daemon}\n{silent}[source.silent]\nresource = \"silent\"\n\n\
             [destination.silent]\nresource = \"silent\"\n",
            daemon = setup.daemon_table(),
            silent = resource(
                "silent",
                &format!("http://127.0.0.1:{port}"),
                "bucket-a",
                "data",
                "s3_secret"
            ),
        ),
    );
    let started = Instant::now();
    let d = setup.start("run", &[]);
    for kind in ["sources", "destinations"] {
        let c = settled_condition(&d, kind, "silent", Duration::from_secs(300));
        assert_eq!(c["ready"], false, "{kind}: {c}");
        assert_eq!(c["reason"], "Unreachable", "{kind}: {c}");
        let message = c["message"].as_str().expect("message");
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    }
    // Short timeouts and one retry for tests (about 10 s here), not
    // object_store's default 3 minutes of retries.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(40), "the tests took {took:?}");
    drop(held);
}
