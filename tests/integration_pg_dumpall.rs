//! The postgresql integration's `pg_dumpall` protocol against a real
//! server: the whole cluster (a role, two databases) is dumped as one SQL
//! file into a Kloset store, the databases and the role are dropped, and
//! the file is piped back through psql; rows and the role come back.

use crate::common;

use common::postgres::{PASSWORD, PgServer};
use kloset::ops::backup::{BackupOptions, ParentPolicy, backup_from};
use kloset::ops::browse::list_dir;
use kloset::ops::export::export;
use kloset::ops::restore::RestoreOptions;
use kloset::repository::CreateOptions;
use kloset::{Location, Repository, Storage};
use klosetd::integrations::postgresql::{self, CLUSTER_FILE, PgConnection};

#[test]
fn whole_cluster_round_trip_through_pg_dumpall_and_psql() {
    let pg = PgServer::start();
    pg.admin(
        "postgres",
        &format!("CREATE ROLE admin SUPERUSER LOGIN PASSWORD '{PASSWORD}'"),
    );
    pg.admin("postgres", "CREATE ROLE reporting NOLOGIN");
    for db in ["shop", "wiki"] {
        pg.admin("postgres", &format!("CREATE DATABASE {db}"));
        pg.admin(
            db,
            &format!(
                "CREATE TABLE t (id int PRIMARY KEY, v text); \
                 INSERT INTO t SELECT g, '{db}-' || g FROM generate_series(1, 500) g; \
                 GRANT SELECT ON t TO reporting;"
            ),
        );
    }
    let conn = PgConnection {
        host: "127.0.0.1".into(),
        port: pg.port(),
        user: "admin".into(),
        database: None,
        password_file: Some(postgresql::password_file(PASSWORD).expect("password file")),
        bin_dir: Some(pg.bin_dir().to_path_buf()),
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let storage = Storage::open(&Location::Fs(tmp.path().join("store")), true).expect("store");
    let opts = CreateOptions {
        kdf: kloset::crypto::KdfParams::with_cost(64, 1, 1),
        ..CreateOptions::default()
    };
    let repo = Repository::create(storage, b"pass", opts).expect("create");
    let options = BackupOptions {
        all_or_nothing: true,
        parent: ParentPolicy::None,
        ..BackupOptions::default()
    };
    let snap = backup_from(&repo, &postgresql::cluster_importer(&conn), &options)
        .expect("pg_dumpall backup");
    let names: Vec<String> = list_dir(&repo, &snap, "/")
        .expect("list")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [CLUSTER_FILE]);
    assert!(snap.stats.bytes > 1000, "a real dump: {:?}", snap.stats);

    for db in ["shop", "wiki"] {
        pg.admin("postgres", &format!("DROP DATABASE {db}"));
    }
    pg.admin("postgres", "DROP ROLE reporting");

    // The script recreates `admin` and `postgres`, which exist: psql
    // reports those as expected errors and goes on.
    let report = export(
        &repo,
        &snap,
        "/",
        &postgresql::cluster_exporter(&conn),
        &RestoreOptions {
            force: true,
            ..RestoreOptions::default()
        },
    )
    .expect("psql restore of the cluster");
    assert_eq!(report.files, 1);
    for db in ["shop", "wiki"] {
        let rows = pg.admin(db, "SELECT count(*), min(v), max(id) FROM t");
        assert_eq!(rows.trim(), format!("500|{db}-1|500"), "{db}");
    }
    let role = pg.admin(
        "postgres",
        "SELECT rolname FROM pg_roles WHERE rolname = 'reporting'",
    );
    assert_eq!(role.trim(), "reporting");
}
