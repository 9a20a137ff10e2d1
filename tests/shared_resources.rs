//! Several apps on one resource (issue 13): a resource declares the
//! connection once and each store, source and destination says where inside
//! it to work (`path`, `bucket`, `prefix`, `database`). Two stores in one
//! place, or a store and a destination, are refused with both `file:line`s;
//! a source that holds a store is a warning. One config with an S3 service,
//! a PostgreSQL server with three databases and a NAS with two stores
//! validates and round-trips every app through the real `kloset` CLI.

use crate::common;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::cli::Kloset;
use common::postgres::PgServer;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::tree::assert_trees_equal;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

/// Runs `klosetd validate` on `dir`: exit code, stderr with `dir` as `DIR`.
fn validate(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .arg("validate")
        .arg(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run klosetd validate");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&dir.display().to_string(), "DIR");
    (out.status.code().unwrap_or(-1), stderr)
}

/// The 1-based line of `header` in `toml`.
fn line(toml: &str, header: &str) -> usize {
    toml.lines()
        .position(|l| l == header)
        .unwrap_or_else(|| panic!("no {header}"))
        + 1
}

fn config_dir(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("pass"), "a passphrase\n").expect("write pass");
    std::fs::write(dir.path().join("10.toml"), toml).expect("write config");
    dir
}

const NAS: &str = r#"[resource.nas]
class = "filesystem"
subclass = "local"
path = "/srv/nas"
"#;

#[test]
fn two_stores_in_one_place_are_refused_with_both_declarations() {
    let toml = format!(
        r#"{NAS}
[store.a]
resource = "nas"
passphrase_file = "pass"

[store.b]
resource = "nas"
passphrase_file = "pass"

[store.c]
resource = "nas"
path = "c"
passphrase_file = "pass"

[store.d]
location = "/srv/nas/c/inner"
passphrase_file = "pass"

[destination.restore-into-c]
resource = "nas"
path = "/srv/nas/c"
"#
    );
    let dir = config_dir(&toml);
    let (code, err) = validate(dir.path());
    assert_eq!(code, 1, "{err}");
    let at = |object: &str| line(&toml, &format!("[{object}]"));
    // b clashes with a; c is inside a; d inside c; the destination is c.
    for (object, other) in [
        ("store.b", "store.a"),
        ("store.c", "store.a"),
        ("store.d", "store.c"),
        ("destination.restore-into-c", "store.c"),
    ] {
        let other = format!("{other} (DIR/10.toml:{})", at(other));
        let at = format!("DIR/10.toml:{}: {object}: ", at(object));
        assert!(
            err.lines()
                .any(|l| l.starts_with(&at) && l.contains(&other)),
            "no error {at}… naming {other}:\n{err}"
        );
    }
}

#[test]
fn apps_on_one_resource_work_in_their_own_places_and_a_source_over_a_store_warns() {
    let toml = format!(
        r#"{NAS}
[resource.db]
class = "database"
subclass = "postgresql"
host = "db1.example.internal"
user = "backup"

[store.daily]
resource = "nas"
path = "stores/daily"
passphrase_file = "pass"

[store.weekly]
resource = "nas"
path = "stores/weekly"
passphrase_file = "pass"

[source.everything]
resource = "nas"

[source.all-but-the-stores]
resource = "nas"
excludes = ["stores"]

[source.shop]
resource = "db"
protocol = "pg_dump"
database = "shop"

[source.crm]
resource = "db"
protocol = "pg_dump"
database = "crm"

[source.wiki]
resource = "db"
protocol = "pg_dump"
database = "wiki"

[destination.escape]
resource = "nas"
path = "../etc"
"#
    );
    let dir = config_dir(&toml);
    let at = |object: &str| line(&toml, &format!("[{object}]"));
    let (code, err) = validate(dir.path());
    assert_eq!(code, 1, "{err}");
    let want = format!(
        "DIR/10.toml:{}: destination.escape: path = \"../etc\" is relative to the resource's path and may not leave it",
        at("destination.escape")
    );
    assert!(err.contains(&want), "{err}");
    let text = std::fs::read_to_string(dir.path().join("10.toml")).expect("read");
    std::fs::write(
        dir.path().join("10.toml"),
        text.replace("path = \"../etc\"", "path = \"/var/restore\""),
    )
    .expect("write");
    let (code, err) = validate(dir.path());
    assert_eq!(code, 0, "{err}");
    let source = format!(
        "warning: DIR/10.toml:{}: source.everything: ",
        at("source.everything")
    );
    for store in ["store.daily", "store.weekly"] {
        let store = format!("{store} (DIR/10.toml:{})", at(store));
        assert!(
            err.lines().any(|l| l.starts_with(&source)
                && l.contains(&store)
                && l.contains("reads the store's own data")),
            "no warning for {store}:\n{err}"
        );
    }
    assert!(
        !err.contains("source.all-but-the-stores"),
        "a source that excludes the stores does not warn:\n{err}"
    );
    let json = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(["validate", "--json"])
        .arg(dir.path())
        .output()
        .expect("validate --json");
    let state: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(
        state["stores"]["daily"]["endpoint"]["location"],
        "/srv/nas/stores/daily"
    );
    for db in ["shop", "crm", "wiki"] {
        assert_eq!(
            state["sources"][db]["endpoint"]["location"],
            format!("postgresql://backup@db1.example.internal:5432/{db}").as_str()
        );
    }
}

fn put(s3: &S3Server, bucket: &str, key: &str, bytes: &[u8]) {
    let storage = s3.bucket_storage(bucket);
    let store = storage.object_store();
    let path = ObjPath::parse(key).expect("key");
    let payload = PutPayload::from(Bytes::from(bytes.to_vec()));
    storage
        .run(async move { store.put(&path, payload).await })
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Files under `dir`, relative path → bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.insert(rel.display().to_string(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

const ROLE: &str = "backup";
const PASSWORD: &str = "pg pass with spaces";

#[test]
fn one_config_declares_each_resource_once_and_round_trips_every_app() {
    let Some(s3) = S3Server::start_or_skip() else {
        return;
    };
    let pg = PgServer::start();
    pg.admin(
        "postgres",
        &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' CREATEDB"),
    );
    for db in ["shop", "crm", "wiki", "restored"] {
        pg.admin("postgres", &format!("CREATE DATABASE {db} OWNER {ROLE}"));
    }
    for db in ["shop", "crm", "wiki"] {
        pg.sql_as(
            ROLE,
            PASSWORD,
            db,
            &format!("CREATE TABLE t (v text); INSERT INTO t VALUES ('{db} row');"),
        );
    }
    for bucket in ["stores", "uploads", "restores"] {
        s3.create_bucket(bucket);
    }
    put(&s3, "uploads", "in/a.txt", b"first object");
    put(&s3, "uploads", "in/deep/b.bin", &[7u8; 70_000]);
    put(&s3, "uploads", "outside.txt", b"not under the prefix");

    let tmp = tempfile::tempdir().expect("tmp");
    let nas = tmp.path().join("nas");
    let data = nas.join("data");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("sub/file.txt"), b"on the nas").expect("write");
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("pass"), "shared resources\n").expect("pass");
    std::fs::write(conf.join("s3_access"), format!("{ACCESS_KEY}\n")).expect("key");
    std::fs::write(conf.join("s3_secret"), format!("{SECRET_KEY}\n")).expect("secret");
    std::fs::write(conf.join("pg_password"), format!("{PASSWORD}\n")).expect("pw");
    let toml = format!(
        r#"[resource.minio]
class = "object-storage"
subclass = "minio"
endpoint = "{endpoint}"
region = "us-east-1"
allow_http = true
access_key_id_file = "s3_access"
secret_access_key_file = "s3_secret"

[resource.pg]
class = "database"
subclass = "postgresql"
host = "127.0.0.1"
port = {pg_port}
user = "{ROLE}"
password_file = "pg_password"

[resource.nas]
class = "filesystem"
subclass = "nas"
path = "{nas}"

[store.bucket]
resource = "minio"
bucket = "stores"
prefix = "kloset"
passphrase_file = "pass"

[store.nas-a]
resource = "nas"
integration = "fs"
path = "stores/a"
passphrase_file = "pass"

[store.nas-b]
resource = "nas"
integration = "fs"
path = "stores/b"
passphrase_file = "pass"

[source.uploads]
resource = "minio"
bucket = "uploads"
prefix = "in"

[destination.restores]
resource = "minio"
bucket = "restores"
prefix = "back"

[source.shop]
resource = "pg"
protocol = "pg_dump"
database = "shop"

[source.crm]
resource = "pg"
protocol = "pg_dump"
database = "crm"

[source.wiki]
resource = "pg"
protocol = "pg_dump"
database = "wiki"

[destination.restored-db]
resource = "pg"
protocol = "pg_dump"
database = "restored"
options = {{ clean = true }}

[source.nas-data]
resource = "nas"
integration = "fs"
path = "data"

[destination.nas-out]
resource = "nas"
integration = "fs"
path = "/{out}"
"#,
        endpoint = s3.endpoint(),
        pg_port = pg.port(),
        nas = nas.display(),
        out = tmp
            .path()
            .join("out")
            .display()
            .to_string()
            .trim_start_matches('/'),
    );
    std::fs::write(conf.join("10-shared.toml"), toml).expect("write config");
    let (code, err) = validate(&conf);
    assert_eq!(code, 0, "{err}");

    let conf_s = conf.to_str().expect("utf8");
    let path = format!(
        "{}:{}",
        pg.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let k = Kloset::new().without_passphrase().env("PATH", &path);
    let at = |store: &str, args: &[&str]| {
        let mut all = vec!["--config", conf_s, "at", store];
        all.extend_from_slice(args);
        k.must(all)
    };
    for store in ["@bucket", "@nas-a", "@nas-b"] {
        at(store, &["create", "--kdf-memory-mib", "8"]);
    }
    // The bucket store: S3 objects in, S3 objects out, in other buckets.
    at("@bucket", &["backup", "@uploads"]);
    at("@bucket", &["restore", "-to", "@restores", "latest"]);
    let restored = files_under(&s3.root().join("restores").join("back"));
    let keys: Vec<&String> = restored.keys().collect();
    assert_eq!(keys, ["a.txt", "deep/b.bin"], "{keys:?}");
    assert_eq!(restored["a.txt"], b"first object");
    assert!(
        !s3.root()
            .join("stores/kloset")
            .read_dir()
            .expect("store")
            .any(|e| e
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .contains("outside")),
        "the store holds kloset objects only"
    );
    // Three databases of one server, each its own source, into one store.
    for db in ["shop", "crm", "wiki"] {
        at("@nas-a", &["backup", &format!("@{db}")]);
    }
    let ls = at("@nas-a", &["ls"]).stdout_str();
    for db in ["shop", "crm", "wiki"] {
        assert!(ls.contains(&format!("  {db}")), "{ls}");
    }
    // Each database's snapshot restores into one scratch database (clean:
    // the previous restore's table is replaced) with that database's row.
    for db in ["shop", "crm", "wiki"] {
        let snapshot = ls
            .lines()
            .find(|l| l.contains(&format!("  {db}")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {db} snapshot in {ls}"))
            .to_string();
        at("@nas-a", &["restore", "-to", "@restored-db", &snapshot]);
        assert_eq!(
            pg.sql_as(ROLE, PASSWORD, "restored", "SELECT v FROM t")
                .trim(),
            format!("{db} row")
        );
    }
    // Two stores on one NAS, each in its own directory.
    at("@nas-b", &["backup", "@nas-data"]);
    at("@nas-b", &["restore", "-to", "@nas-out", "latest"]);
    assert_trees_equal(&data, &tmp.path().join("out"));
    for (a, b) in [("a", "b"), ("b", "a")] {
        assert!(nas.join("stores").join(a).join("snapshots").is_dir(), "{a}");
        let k2 = Kloset::new().passphrase("shared resources");
        k2.must([
            "at",
            nas.join("stores").join(b).to_str().expect("utf8"),
            "check",
        ]);
    }
}
