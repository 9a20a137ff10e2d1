//! `klosetd validate DIR` (the real binary) on configs whose integration
//! cannot be resolved: each must exit 1 with an error at `file:line` that
//! names what is wrong and what would be accepted instead.

use std::path::Path;
use std::process::Command;

/// Writes `10.toml` (a passphrase file next to it) and runs `klosetd validate`.
fn validate(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("pass"), "a passphrase\n").expect("write pass");
    std::fs::write(dir.path().join("pw"), "a password\n").expect("write pw");
    std::fs::write(dir.path().join("10.toml"), toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .arg("validate")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run klosetd validate");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&display(dir.path()), "DIR");
    (out.status.code().unwrap_or(-1), stderr)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// The error line for `object`: `DIR/10.toml:LINE: object: …`.
fn error_line<'a>(stderr: &'a str, object: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.contains(&format!(": {object}: ")))
        .unwrap_or_else(|| panic!("no error for {object}:\n{stderr}"))
}

fn assert_at(line: &str, want_line: usize) {
    let prefix = format!("DIR/10.toml:{want_line}: ");
    assert!(line.starts_with(&prefix), "{line:?} is not at {prefix:?}");
}

const STORE: &str = r#"
[store.main]
location = "store"
passphrase_file = "pass"
"#;

#[test]
fn an_ambiguous_nas_resource_needs_an_integration() {
    let (code, err) = validate(&format!(
        r#"{STORE}
[resource.nas]
class = "filesystem"
subclass = "nas"
path = "/mnt/nas"

[source.files]
resource = "nas"
"#
    ));
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err, "source.files");
    assert_at(line, 11);
    for w in ["several integrations", "fs, sftp", "integration = "] {
        assert!(line.contains(w), "{line:?} lacks {w:?}");
    }
}

#[test]
fn an_unsupported_class_names_itself_and_what_exists() {
    let (code, err) = validate(&format!(
        r#"{STORE}
[resource.vault]
class = "database"
subclass = "oracle"
host = "db.example"

[source.db]
resource = "vault"
"#
    ));
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err, "source.db");
    assert_at(line, 11);
    for w in [
        "\"database\"",
        "\"oracle\"",
        "available:",
        "database/postgresql (postgresql)",
        "object-storage/s3 (s3)",
        "filesystem/local (fs)",
    ] {
        assert!(line.contains(w), "{line:?} lacks {w:?}");
    }
}

#[test]
fn a_postgresql_resource_needs_a_protocol() {
    let (code, err) = validate(&format!(
        r#"{STORE}
[resource.pg]
class = "database"
subclass = "postgresql"
host = "127.0.0.1"
user = "app"
database = "shop"
password_file = "pw"

[source.shop]
resource = "pg"

[source.shop_ok]
resource = "pg"
protocol = "pg_dump"

[source.shop_typo]
resource = "pg"
protocol = "mysqldump"
"#
    ));
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err, "source.shop");
    assert_at(line, 14);
    for w in ["several protocols", "pg_dump, pg_dumpall", "protocol = "] {
        assert!(line.contains(w), "{line:?} lacks {w:?}");
    }
    let line = error_line(&err, "source.shop_typo");
    assert_at(line, 21);
    for w in ["no protocol \"mysqldump\"", "pg_dump, pg_dumpall"] {
        assert!(line.contains(w), "{line:?} lacks {w:?}");
    }
    assert!(!err.contains("source.shop_ok"), "pg_dump resolves:\n{err}");
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn a_pg_dump_destination_must_name_its_database() {
    let (code, err) = validate(&format!(
        r#"{STORE}
[resource.server]
class = "database"
subclass = "postgresql"
host = "127.0.0.1"
user = "app"
password_file = "pw"

[resource.shop]
class = "database"
subclass = "postgresql"
host = "127.0.0.1"
user = "app"
database = "shop"
password_file = "pw"

[source.one_without_db]
resource = "server"
protocol = "pg_dump"

[source.all_with_db]
resource = "shop"
protocol = "pg_dumpall"

[destination.nowhere]
resource = "server"
protocol = "pg_dump"

[source.by_url]
location = "postgresql://app@127.0.0.1:5433"
protocol = "pg_dump"
"#
    ));
    assert_eq!(code, 1, "{err}");
    // Sources may go either way: pg_dump without a database dumps every
    // database (plus globals.sql), pg_dumpall logs in to `database`.
    for ok in [
        "source.one_without_db",
        "source.all_with_db",
        "source.by_url",
    ] {
        assert!(!err.contains(ok), "{ok} is valid:\n{err}");
    }
    let line = error_line(&err, "destination.nowhere");
    assert_at(line, 29);
    assert!(line.contains("restores into one database"), "{line}");
    assert!(err.contains("1 error(s)"), "{err}");
}

#[test]
fn a_postgresql_location_is_parsed_into_its_connection() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("pass"), "a passphrase\n").expect("write");
    std::fs::write(
        dir.path().join("10.toml"),
        format!(
            r#"{STORE}
[source.shop]
location = "postgresql://app@db.example:5433/odd%2Fname"
protocol = "pg_dump"

[source.cluster]
location = "postgresql://[::1]"
protocol = "pg_dumpall"
"#
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(["validate", "--json"])
        .arg(dir.path())
        .output()
        .expect("run klosetd validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // The connection settings the location was parsed into.
    let options = |name: &str| -> Vec<(String, String)> {
        let src = &v["sources"][name];
        let settings = &src["endpoint"]["settings"];
        ["host", "port", "user", "database"]
            .iter()
            .filter_map(|key| match &settings[key] {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some((key.to_string(), s.clone())),
                other => Some((key.to_string(), other.to_string())),
            })
            .collect()
    };
    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        options("shop"),
        want(&[
            ("host", "db.example"),
            ("port", "5433"),
            ("user", "app"),
            ("database", "odd/name"),
        ])
    );
    assert_eq!(
        options("cluster"),
        want(&[("host", "::1"), ("port", "5432"), ("user", "postgres")])
    );
}

#[test]
fn an_integration_that_cannot_serve_the_class_or_does_not_exist() {
    let (code, err) = validate(&format!(
        r#"{STORE}
[resource.disk]
class = "filesystem"
subclass = "local"
path = "/srv/data"

[source.over_ssh]
resource = "disk"
integration = "sftp"

[source.nfs]
resource = "disk"
integration = "nfs"

[store.odd]
location = "/srv/odd"
integration = "postgresql"
passphrase_file = "pass"
"#
    ));
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err, "source.over_ssh");
    assert_at(line, 11);
    for w in [
        "integration \"sftp\" cannot serve a filesystem/local resource as a source",
        "compatible: fs",
    ] {
        assert!(line.contains(w), "{line:?} lacks {w:?}");
    }
    let line = error_line(&err, "source.nfs");
    assert_at(line, 15);
    for w in [
        "unknown integration \"nfs\"",
        "fs, s3, sftp, postgresql, exec",
    ] {
        assert!(line.contains(w), "{line:?} lacks {w:?}");
    }
    let line = error_line(&err, "store.odd");
    assert_at(line, 19);
    assert!(line.contains("integration \"postgresql\""), "{line:?}");
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn exec_keys_belong_to_exec() {
    let (code, err) = validate(&format!(
        r#"{STORE}
[source.escape]
integration = "exec"
command = ["sh", "-c", "echo hi"]
file = "../etc/passwd"

[source.files]
location = "/srv/data"
command = ["tar", "c", "."]

[source.named]
location = "/srv/data"
file = "data.tar"

[source.nothing]
integration = "exec"
command = []
"#
    ));
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err, "source.escape");
    assert_at(line, 6);
    assert!(line.contains("must be one file name"), "{line}");
    let line = error_line(&err, "source.files");
    assert_at(line, 11);
    assert!(
        line.contains("`command` belongs to the exec integration, not fs"),
        "{line}"
    );
    let line = error_line(&err, "source.named");
    assert_at(line, 15);
    assert!(
        line.contains("`file` belongs to the exec integration"),
        "{line}"
    );
    let line = error_line(&err, "source.nothing");
    assert_at(line, 19);
    assert!(line.contains("command = ["), "{line}");
}

#[test]
fn the_same_resources_resolved_are_valid() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("pass"), "a passphrase\n").expect("write");
    std::fs::write(dir.path().join("pw"), "a password\n").expect("write");
    std::fs::write(dir.path().join("key"), "not really a key\n").expect("write");
    std::fs::write(
        dir.path().join("10.toml"),
        format!(
            r#"{STORE}
[resource.nas]
class = "filesystem"
subclass = "nas"
path = "/mnt/nas"
host = "nas.example"
user = "backup"
key_file = "key"

[resource.pg]
class = "database"
subclass = "postgresql"
host = "127.0.0.1"
user = "app"
database = "shop"
password_file = "pw"

[source.files]
resource = "nas"
integration = "fs"

[source.files_ssh]
resource = "nas"
integration = "sftp"

[source.shop]
resource = "pg"
protocol = "pg_dump"

[destination.shop]
resource = "pg"
protocol = "pg_dump"
options = {{ clean = true }}
"#
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("run klosetd validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 sources, 1 destinations"), "{text}");
}
