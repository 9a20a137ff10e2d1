//! PostgreSQL end to end against a real server (tests/common/postgres.rs):
//! a database is dumped with pg_dump through the command importer into a
//! Kloset store on local disk and restored with pg_restore through the
//! command exporter into a new database, rows compared; a failed dump
//! writes no snapshot and never shows the password; test connection gives
//! the right reason for each failure.

use crate::common;

use common::postgres::{PASSWORD, PgServer, ROLE, closed_port};
use kloset::ops::backup::{BackupOptions, ParentPolicy, backup_from};
use kloset::ops::export::export;
use kloset::ops::restore::RestoreOptions;
use kloset::repository::CreateOptions;
use kloset::{Location, Repository, Storage};
use klosetd::integrations::postgresql::{self, PgConnection};

fn conn(pg: &PgServer, user: &str, password: &str, database: Option<&str>) -> PgConnection {
    PgConnection {
        host: "127.0.0.1".into(),
        port: pg.port(),
        user: user.into(),
        database: database.map(str::to_owned),
        password_file: Some(postgresql::password_file(password).expect("password file")),
        bin_dir: Some(pg.bin_dir().to_path_buf()),
    }
}

fn store(dir: &std::path::Path) -> Repository {
    let storage = Storage::open(&Location::Fs(dir.join("store")), true).expect("open store");
    let opts = CreateOptions {
        kdf: kloset::crypto::KdfParams::with_cost(64, 1, 1),
        ..CreateOptions::default()
    };
    Repository::create(storage, b"store passphrase", opts).expect("create store")
}

fn all_or_nothing() -> BackupOptions {
    BackupOptions {
        all_or_nothing: true,
        parent: ParentPolicy::None,
        ..BackupOptions::default()
    }
}

/// A database with the kinds of data a dump must carry exactly.
const FIXTURE: &str = r#"
CREATE TABLE items (
    id serial PRIMARY KEY,
    name text NOT NULL,
    blob bytea,
    price numeric(10, 2),
    added timestamptz NOT NULL DEFAULT '2024-02-29 12:34:56+00'
);
CREATE SEQUENCE invoice_no START 1000;
SELECT nextval('invoice_no'), nextval('invoice_no'), nextval('invoice_no');
INSERT INTO items (name, blob, price) VALUES
    ('Grüße, 世界 🎉', '\x00ff10'::bytea, 12.50),
    (E'tab\there, newline\nthere, quote '' and backslash \\', NULL, 0.01),
    ('big', decode(repeat('00ff7f80', 50000), 'hex'), 99999999.99);
INSERT INTO items (name, blob, price)
    SELECT 'row ' || g, sha256(g::text::bytea), g / 7.0 FROM generate_series(1, 5000) AS g;
CREATE VIEW expensive AS SELECT id, name FROM items WHERE price > 100;
CREATE TABLE notes (item int REFERENCES items (id), body text);
INSERT INTO notes SELECT id, repeat('ä', id % 50) FROM items WHERE id % 3 = 0;
"#;

/// What must come back identical after a restore.
const CHECKS: &[&str] = &[
    "SELECT id, name, encode(blob, 'hex'), price, added FROM items ORDER BY id",
    "SELECT item, body FROM notes ORDER BY item",
    "SELECT last_value, is_called FROM invoice_no",
    "SELECT last_value FROM items_id_seq",
    "SELECT id, name FROM expensive ORDER BY id",
    "SELECT viewname FROM pg_views WHERE schemaname = 'public'",
    "SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conname",
];

fn snapshot_of(pg: &PgServer, db: &str) -> Vec<String> {
    CHECKS
        .iter()
        .map(|sql| pg.sql_as(ROLE, PASSWORD, db, sql))
        .collect()
}

#[test]
fn a_database_goes_through_a_store_into_a_new_database_unchanged() {
    let pg = PgServer::start();
    pg.admin("postgres", &format!("CREATE DATABASE shop OWNER {ROLE}"));
    pg.sql_as(ROLE, PASSWORD, "shop", FIXTURE);
    let original = snapshot_of(&pg, "shop");
    assert!(
        original[0].contains("Grüße, 世界 🎉"),
        "{}",
        &original[0][..200]
    );
    assert!(original[0].lines().count() > 5000);

    let tmp = tempfile::tempdir().expect("tmp");
    let repo = store(tmp.path());
    let source = conn(&pg, ROLE, PASSWORD, Some("shop"));
    assert_eq!(postgresql::test_source(&source), Ok("Readable"));
    let importer = postgresql::importer(&source).expect("importer");
    let snap = backup_from(&repo, &importer, &all_or_nothing()).expect("backup");
    assert_eq!(snap.stats.files, 1);
    assert!(snap.stats.bytes > 100_000, "{} bytes", snap.stats.bytes);
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    assert_eq!(
        snap.source,
        "postgresql://kloset@127.0.0.1:".to_owned() + &pg.port().to_string() + "/shop"
    );

    pg.admin(
        "postgres",
        &format!("CREATE DATABASE shop_restored OWNER {ROLE}"),
    );
    let dest = conn(&pg, ROLE, PASSWORD, Some("shop_restored"));
    assert_eq!(postgresql::test_destination(&dest), Ok("Writable"));
    let exporter = postgresql::exporter(&dest, false).expect("exporter");
    let report = export(
        &repo,
        &snap,
        "/shop.dump",
        &exporter,
        &RestoreOptions::default(),
    )
    .expect("restore");
    assert_eq!(report.files, 1);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let restored = snapshot_of(&pg, "shop_restored");
    for (i, sql) in CHECKS.iter().enumerate() {
        assert_eq!(original[i], restored[i], "{sql}");
    }

    // Restoring again over the same database needs --clean; without it
    // pg_restore stops at the first existing object.
    let again = postgresql::exporter(&dest, false).expect("exporter");
    let err = export(
        &repo,
        &snap,
        "/shop.dump",
        &again,
        &RestoreOptions::default(),
    )
    .expect_err("objects exist");
    assert!(err.to_string().contains("pg_restore failed"), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    pg.sql_as(
        ROLE,
        PASSWORD,
        "shop_restored",
        "DELETE FROM notes; INSERT INTO items (name) VALUES ('stray')",
    );
    let clean = postgresql::exporter(&dest, true).expect("exporter");
    export(
        &repo,
        &snap,
        "/shop.dump",
        &clean,
        &RestoreOptions::default(),
    )
    .expect("clean restore");
    assert_eq!(
        snapshot_of(&pg, "shop_restored"),
        original,
        "a clean restore replaces everything"
    );
}

#[test]
fn a_whole_cluster_backup_holds_every_database_and_the_globals() {
    let pg = PgServer::start();
    pg.admin(
        "postgres",
        &format!("CREATE ROLE admin SUPERUSER LOGIN PASSWORD '{PASSWORD}'"),
    );
    pg.admin(
        "postgres",
        &format!("CREATE DATABASE \"odd/name\" OWNER {ROLE}"),
    );
    pg.sql_as(
        ROLE,
        PASSWORD,
        "odd/name",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('in the odd one')",
    );
    let all = conn(&pg, "admin", PASSWORD, None);
    assert_eq!(postgresql::test_source(&all), Ok("Readable"));
    let not_super = conn(&pg, ROLE, PASSWORD, None);
    let e = postgresql::test_source(&not_super).expect_err("not a superuser");
    assert_eq!(e.reason, "PermissionDenied", "{}", e.message);

    let importer = postgresql::importer(&all).expect("importer lists the databases");
    let names: Vec<&str> = importer.files().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["odd%2Fname.dump", "postgres.dump", "globals.sql"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = store(tmp.path());
    let snap = backup_from(&repo, &importer, &all_or_nothing()).expect("backup");
    assert_eq!(snap.stats.files, 3);

    let out = tmp.path().join("globals.sql");
    let cat = kloset_connectors::command::CommandExporter::new(
        "file".into(),
        kloset_connectors::command::CommandSpec::new("sh")
            .args(["-c", "cat > \"$OUT\""])
            .env("OUT", out.display().to_string()),
    );
    export(
        &repo,
        &snap,
        "/globals.sql",
        &cat,
        &RestoreOptions::default(),
    )
    .expect("restore globals");
    let globals = std::fs::read_to_string(&out).expect("globals");
    assert!(globals.contains("CREATE ROLE kloset;"), "{globals}");
    assert!(globals.contains("CREATE ROLE admin;"), "{globals}");

    pg.admin("postgres", &format!("CREATE DATABASE copy OWNER {ROLE}"));
    let dest = conn(&pg, ROLE, PASSWORD, Some("copy"));
    let exporter = postgresql::exporter(&dest, false).expect("exporter");
    export(
        &repo,
        &snap,
        "/odd%2Fname.dump",
        &exporter,
        &RestoreOptions::default(),
    )
    .expect("restore");
    assert_eq!(
        pg.sql_as(ROLE, PASSWORD, "copy", "SELECT v FROM t"),
        "in the odd one\n"
    );
}

#[test]
fn failures_name_their_cause_and_never_the_password() {
    let pg = PgServer::start();
    pg.admin("postgres", &format!("CREATE DATABASE shop OWNER {ROLE}"));
    pg.sql_as(
        ROLE,
        PASSWORD,
        "shop",
        "CREATE TABLE secret_stuff (v int); INSERT INTO secret_stuff VALUES (1)",
    );
    let wrong = "Wr0ng-password-xyz";

    // A dump that cannot log in: the backup fails as a whole.
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = store(tmp.path());
    let bad = conn(&pg, ROLE, wrong, Some("shop"));
    assert!(!format!("{bad:?}").contains(wrong));
    let importer = postgresql::importer(&bad).expect("importer");
    let err = backup_from(&repo, &importer, &all_or_nothing()).expect_err("wrong password");
    let msg = err.to_string();
    assert_eq!(err.kind(), kloset::ErrorKind::Incomplete, "{msg}");
    assert!(msg.contains("pg_dump failed"), "{msg}");
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(!msg.contains(wrong), "{msg}");
    assert!(
        repo.snapshots().expect("list").is_empty(),
        "no snapshot was written"
    );

    // Test connection: one reason per failure, no password in any message.
    let cases = [
        (conn(&pg, ROLE, wrong, Some("shop")), "AuthenticationFailed"),
        (
            conn(&pg, "nobody", wrong, Some("shop")),
            "AuthenticationFailed",
        ),
        (conn(&pg, ROLE, PASSWORD, Some("no_such_db")), "NotFound"),
        (
            PgConnection {
                port: closed_port(),
                ..conn(&pg, ROLE, PASSWORD, Some("shop"))
            },
            "Unreachable",
        ),
    ];
    for (c, reason) in &cases {
        for result in [postgresql::test_source(c), postgresql::test_destination(c)] {
            let e = result.expect_err("must fail");
            assert_eq!(e.reason, *reason, "{c:?}: {}", e.message);
            assert!(
                !e.message.contains(wrong) && !e.message.contains(PASSWORD),
                "{}",
                e.message
            );
        }
    }

    // A role that can log in but neither read the table nor create.
    pg.admin(
        "postgres",
        &format!("CREATE ROLE reader LOGIN PASSWORD '{PASSWORD}'"),
    );
    let reader = conn(&pg, "reader", PASSWORD, Some("shop"));
    let e = postgresql::test_source(&reader).expect_err("cannot read");
    assert_eq!(e.reason, "PermissionDenied", "{}", e.message);
    assert!(e.message.contains("cannot read 1 table"), "{}", e.message);
    let e = postgresql::test_destination(&reader).expect_err("cannot create");
    assert_eq!(e.reason, "PermissionDenied", "{}", e.message);
    // And the dump indeed fails for it, naming the table.
    let importer = postgresql::importer(&reader).expect("importer");
    let err = backup_from(&repo, &importer, &all_or_nothing()).expect_err("permission denied");
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(repo.snapshots().expect("list").is_empty());
}
