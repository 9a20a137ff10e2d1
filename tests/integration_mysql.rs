//! The `mysql` integration against a real MariaDB server (a private
//! instance, tests/common/mariadb.rs). Through the real `kloset` CLI with
//! `--config DIR` and `@NAME`: a database with tables holding unicode and
//! binary data is dumped into a store and restored into another database,
//! row for row. Through the daemon: the source and destination are ready,
//! and a wrong password is `AuthenticationFailed`, an unknown database
//! `NotFound`, a closed port `Unreachable`, a `PATH` without the client
//! `Unsupported`; the password shows nowhere.

use crate::common;

use std::time::Duration;

use common::cli::Kloset;
use common::daemon::lit;
use common::e2e::{Setup, assert_no_secret, settled_condition};
use common::mariadb::MariaDb;

const USER: &str = "backup";
const PASSWORD: &str = "my \"pw\" with spaces\\ 42";

/// Rows of every table, in a stable order, binary columns as hex.
const ROWS: &str = "SELECT id, name, HEX(data) FROM items ORDER BY id; \
                    SELECT k, v FROM notes ORDER BY k;";

fn server() -> MariaDb {
    let db = MariaDb::start();
    let pw = PASSWORD.replace('\\', "\\\\").replace('\'', "\\'");
    db.admin(
        None,
        &format!(
            "CREATE DATABASE shop CHARACTER SET utf8mb4; CREATE DATABASE restored CHARACTER SET utf8mb4;\n\
             CREATE USER '{USER}'@'%' IDENTIFIED BY '{pw}';\n\
             GRANT ALL ON shop.* TO '{USER}'@'%'; GRANT ALL ON restored.* TO '{USER}'@'%';"
        ),
    );
    db.admin(
        Some("shop"),
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4, data LONGBLOB);\n\
         INSERT INTO items VALUES (1, 'grüße 日本 🎉', UNHEX('00FF0A0D27225C00')), \
         (2, 'it''s \"quoted\"\\\\', REPEAT(UNHEX('DEADBEEF00'), 50000)), (3, NULL, NULL);\n\
         CREATE TABLE notes (k VARCHAR(20) PRIMARY KEY, v TEXT);\n\
         INSERT INTO notes VALUES ('a', 'first'), ('b', CONCAT('line1', CHAR(10), 'line2'));",
    );
    db
}

fn resource(db_port: u16, password_file: &str) -> String {
    format!(
        "[resource.maria]\nclass = \"database\"\nsubclass = \"mariadb\"\nhost = \"127.0.0.1\"\n\
         port = {db_port}\nuser = \"{USER}\"\npassword_file = \"{password_file}\"\n\n"
    )
}

#[test]
fn a_database_is_dumped_and_restored_into_another_row_for_row_with_the_cli() {
    let db = server();
    let before = db.admin(Some("shop"), ROWS);
    assert!(
        before.contains("grüße 日本 🎉") && before.contains("00FF0A0D27225C00"),
        "{before}"
    );
    let conf = tempfile::tempdir().expect("tmp");
    std::fs::write(conf.path().join("pass"), "mysql round trip\n").expect("pass");
    std::fs::write(conf.path().join("db_pw"), format!("{PASSWORD}\n")).expect("pw");
    let store = conf.path().join("store");
    std::fs::write(
        conf.path().join("10-mysql.toml"),
        format!(
            "{res}[store.local]\nlocation = {store}\npassphrase_file = \"pass\"\n\n\
             [source.shop]\nresource = \"maria\"\ndatabase = \"shop\"\n\n\
             [destination.restored]\nresource = \"maria\"\ndatabase = \"restored\"\n",
            res = resource(db.port(), "db_pw"),
            store = lit(&store),
        ),
    )
    .expect("config");
    let conf_s = conf.path().to_str().expect("utf8");
    // Option files go to TMPDIR: a private one, so that what is left there
    // is this test's (other tests' daemons keep theirs while they run).
    let tmpdir = tempfile::tempdir().expect("private TMPDIR");
    let k = Kloset::new()
        .without_passphrase()
        .env("TMPDIR", tmpdir.path());
    let at = |args: &[&str]| {
        let mut all = vec!["--config", conf_s, "at", "@local"];
        all.extend_from_slice(args);
        let out = k.must(all);
        let text = out.describe();
        assert!(!text.contains(PASSWORD), "the password shows:\n{text}");
        out
    };
    at(&["create", "--kdf-memory-mib", "8"]);
    at(&["backup", "@shop"]);
    let ls = at(&["ls", "latest:/"]).stdout_str();
    assert!(ls.contains("shop.sql"), "{ls}");
    at(&["restore", "-to", "@restored", "latest:/shop.sql"]);
    let after = db.admin(Some("restored"), ROWS);
    assert_eq!(after, before, "row for row");
    let leftovers: Vec<_> = std::fs::read_dir(tmpdir.path())
        .expect("tmp")
        .filter_map(|e| e.ok())
        .collect();
    assert!(leftovers.is_empty(), "option files left: {leftovers:?}");
}

#[test]
fn the_daemon_reports_ready_and_precise_reasons_without_the_password() {
    let db = server();
    // The server says "Unknown database" only to a user with privileges
    // on it (a database dropped or not yet created); to others it is 1044,
    // access denied (PermissionDenied), so as not to reveal which exist.
    db.admin(None, &format!("GRANT ALL ON no_such_db.* TO '{USER}'@'%'"));
    let closed = common::postgres::closed_port();
    let setup = Setup::new();
    setup.write("db_pw", &format!("{PASSWORD}\n"));
    setup.write("db_wrong", "not the password 0123\n");
    let good = resource(db.port(), "db_pw");
    let wrong = good
        .replace("resource.maria", "resource.wrong")
        .replace("db_pw", "db_wrong");
    let gone = good.replace("resource.maria", "resource.gone").replace(
        &format!("port = {}", db.port()),
        &format!("port = {closed}"),
    );
    setup.write(
        "10.toml",
        &format!(
            "{daemon}\n{good}{wrong}{gone}\
             [source.shop]\nresource = \"maria\"\ndatabase = \"shop\"\n\n\
             [destination.restored]\nresource = \"maria\"\ndatabase = \"restored\"\n\n\
             [source.wrong]\nresource = \"wrong\"\ndatabase = \"shop\"\n\n\
             [destination.wrong]\nresource = \"wrong\"\ndatabase = \"restored\"\n\n\
             [source.unknown]\nresource = \"maria\"\ndatabase = \"no_such_db\"\n\n\
             [destination.unknown]\nresource = \"maria\"\ndatabase = \"no_such_db\"\n\n\
             [source.closed]\nresource = \"gone\"\ndatabase = \"shop\"\n\n\
             [destination.closed]\nresource = \"gone\"\ndatabase = \"shop\"\n",
            daemon = setup.daemon_table(),
        ),
    );
    let d = setup.start("run", &[]);
    let limit = Duration::from_secs(60);
    for (kind, name, ready, want) in [
        ("sources", "shop", true, "Readable"),
        ("destinations", "restored", true, "Writable"),
        ("sources", "wrong", false, "AuthenticationFailed"),
        ("destinations", "wrong", false, "AuthenticationFailed"),
        ("sources", "unknown", false, "NotFound"),
        ("destinations", "unknown", false, "NotFound"),
        ("sources", "closed", false, "Unreachable"),
        ("destinations", "closed", false, "Unreachable"),
    ] {
        let c = settled_condition(&d, kind, name, limit);
        assert_eq!(
            (&c["ready"], &c["reason"]),
            (&ready.into(), &want.into()),
            "{kind}/{name}: {c}\n{}",
            db.log()
        );
    }
    let tables = db.admin(Some("restored"), "SHOW TABLES");
    assert!(
        tables.trim().is_empty(),
        "the probe table is gone: {tables}"
    );
    assert_no_secret(
        &d,
        PASSWORD,
        &[
            "/api/v1/sources/shop",
            "/api/v1/sources/wrong",
            "/api/v1/resources/maria",
            "/api/v1/destinations/restored",
            "/api/v1/status",
        ],
    );
}

#[test]
fn without_the_client_programs_the_reason_is_unsupported() {
    let setup = Setup::new();
    setup.write("db_pw", &format!("{PASSWORD}\n"));
    let port = common::postgres::closed_port();
    setup.write(
        "10.toml",
        &format!(
            "{daemon}\n{res}[source.shop]\nresource = \"maria\"\ndatabase = \"shop\"\n\n\
             [destination.shop]\nresource = \"maria\"\ndatabase = \"shop\"\n",
            daemon = setup.daemon_table(),
            res = resource(port, "db_pw"),
        ),
    );
    let empty = setup.path("empty-path");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let path = empty.to_str().expect("utf8");
    let d = setup.start("run", &[("PATH", path)]);
    for kind in ["sources", "destinations"] {
        let c = settled_condition(&d, kind, "shop", Duration::from_secs(60));
        assert_eq!(c["reason"], "Unsupported", "{kind}: {c}");
        let message = c["message"].as_str().unwrap_or_default();
        assert!(message.contains("mariadb-client"), "{message}");
    }
}
