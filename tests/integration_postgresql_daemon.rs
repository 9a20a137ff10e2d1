//! PostgreSQL through the real daemon against a real server
//! (`tests/common/postgres.rs`): a `database/postgresql` resource with
//! `protocol = "pg_dump"` backed up by a one-shot task into a local store,
//! then restored by a one-shot task through a destination into another
//! database, rows compared (and restored again with `clean = true`); a
//! wrong password gives the condition `AuthenticationFailed`, fails its
//! backup, and never shows. `pg_dump` gets the password in a private
//! `PGPASSFILE`, never in its environment, and the file is gone after the
//! backup.

use crate::common;

use std::time::Duration;

use common::daemon::lit;
use common::e2e::wait_succeeded;
use common::e2e::{Setup, assert_no_secret, restore_task, settled_condition, snapshots};
use common::postgres::{PASSWORD, PgServer, ROLE};

const FIXTURE: &str = r#"
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, blob bytea, price numeric(10, 2));
INSERT INTO items (name, blob, price) VALUES
    ('Grüße, 世界 🎉', '\x00ff10'::bytea, 12.50),
    (E'tab\there, newline\nthere, quote '' and backslash \\', NULL, 0.01);
INSERT INTO items (name, blob, price)
    SELECT 'row ' || g, sha256(g::text::bytea), g / 7.0 FROM generate_series(1, 3000) AS g;
CREATE TABLE notes (item int REFERENCES items (id), body text);
INSERT INTO notes SELECT id, repeat('ä', id % 50) FROM items WHERE id % 3 = 0;
"#;

const CHECKS: &[&str] = &[
    "SELECT id, name, encode(blob, 'hex'), price FROM items ORDER BY id",
    "SELECT item, body FROM notes ORDER BY item",
    "SELECT last_value FROM items_id_seq",
];

fn rows(pg: &PgServer, db: &str) -> Vec<String> {
    CHECKS
        .iter()
        .map(|sql| pg.sql_as(ROLE, PASSWORD, db, sql))
        .collect()
}

/// Every recorded `pg_dump` ran with a 0600 `PGPASSFILE` and without the
/// password anywhere in its environment, and each file is removed once the
/// backup that wrote it is over.
fn assert_password_file_only(records: &std::path::Path, limit: Duration) {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(records).expect("records") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("record");
        assert!(
            !text.contains(PASSWORD),
            "password in pg_dump's environment"
        );
        assert!(!text.contains("PGPASSWORD="), "{text}");
        assert!(text.contains("MODE=600\n"), "{text}");
        let file = text
            .lines()
            .find_map(|l| l.strip_prefix("PGPASSFILE="))
            .expect("PGPASSFILE set");
        files.push(std::path::PathBuf::from(file));
    }
    assert!(!files.is_empty(), "pg_dump ran through the wrapper");
    common::daemon::wait_for("password files removed", limit, || {
        match files.iter().find(|f| f.exists()) {
            Some(f) => Err(format!("{} still exists", f.display())),
            None => Ok(()),
        }
    });
}

fn resource(name: &str, pg: &PgServer, database: &str, password_file: &str) -> String {
    format!(
        "[resource.{name}]\nclass = \"database\"\nsubclass = \"postgresql\"\nhost = \"127.0.0.1\"\n\
         port = {}\nuser = \"{ROLE}\"\ndatabase = \"{database}\"\npassword_file = \"{password_file}\"\n\n",
        pg.port()
    )
}

#[test]
fn a_database_is_dumped_by_the_daemon_and_restored_into_another() {
    let pg = PgServer::start();
    pg.admin("postgres", &format!("CREATE DATABASE shop OWNER {ROLE}"));
    pg.admin(
        "postgres",
        &format!("CREATE DATABASE shop_copy OWNER {ROLE}"),
    );
    pg.sql_as(ROLE, PASSWORD, "shop", FIXTURE);
    let original = rows(&pg, "shop");
    assert!(original[0].lines().count() > 3000);

    let setup = Setup::new();
    let wrong = "Wr0ng-pa55word-for-the-daemon";
    setup.write("pg_password", &format!("{PASSWORD}\n"));
    setup.write("wrong_password", &format!("{wrong}\n"));
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
{shop}{copy}{bad}
[store.local]
location = {store}
passphrase_file = "pass"

[store.other]
location = {other}
passphrase_file = "pass"

[source.shop]
resource = "shop"
protocol = "pg_dump"

[source.bad]
resource = "bad"
protocol = "pg_dump"

[destination.copy]
resource = "copy"
protocol = "pg_dump"

[destination.copy_clean]
resource = "copy"
protocol = "pg_dump"
options = {{ clean = true }}

[task.backup]
task = "backup"
source = "shop"
store = "local"

[task.bad]
task = "backup"
source = "bad"
store = "other"
"#,
            daemon = setup.daemon_table(),
            other = lit(&setup.path("other-store")),
            shop = resource("shop", &pg, "shop", "pg_password"),
            copy = resource("copy", &pg, "shop_copy", "pg_password"),
            bad = resource("bad", &pg, "shop", "wrong_password"),
            store = lit(&setup.path("store")),
        ),
    );
    // The server's own client programs first on PATH, behind a pg_dump
    // that records the environment it was given.
    let wrap = setup.path("wrap");
    let records = setup.path("records");
    std::fs::create_dir_all(&records).expect("records dir");
    std::fs::create_dir_all(&wrap).expect("wrap dir");
    let script = wrap.join("pg_dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ env; echo \"MODE=$(stat -c %a \"$PGPASSFILE\")\"; }} > {}/pg_dump.$$\nexec {}/pg_dump \"$@\"\n",
            records.display(),
            pg.bin_dir().display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod wrapper");
    let path = format!(
        "{}:{}:{}",
        wrap.display(),
        pg.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let d = setup.start("run", &[("PATH", &path)]);
    let limit = Duration::from_secs(60);

    let c = settled_condition(&d, "sources", "shop", limit);
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Readable".into()),
        "{c}"
    );
    let c = settled_condition(&d, "destinations", "copy", limit);
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Writable".into()),
        "{c}"
    );
    let c = settled_condition(&d, "sources", "bad", limit);
    assert_eq!(c["ready"], false, "{c}");
    assert_eq!(c["reason"], "AuthenticationFailed", "{c}");

    let backup = wait_succeeded(&d, "backup");
    assert_eq!(backup["stats"]["files"], 1, "{backup}");
    let id = backup["snapshot_id"]
        .as_str()
        .expect("snapshot")
        .to_string();
    assert_password_file_only(&records, limit);

    // A one-shot waits for its objects: with its source not ready it never
    // runs (nothing recorded), and says what it waits for.
    common::daemon::wait_for("task bad pending on source.bad", limit, || {
        let s = d.status();
        let o = s["oneshots"]
            .as_array()
            .and_then(|l| l.iter().find(|o| o["name"] == "bad").cloned())
            .unwrap_or_default();
        let c = &o["condition"];
        if c["reason"] == "DependencyNotReady"
            && c["message"]
                .as_str()
                .is_some_and(|m| m.contains("source.bad"))
        {
            Ok(())
        } else {
            Err(o.to_string())
        }
    });
    let runs = d.json("/api/v1/tasks?task=bad");
    assert!(common::daemon::tasks(&runs).is_empty(), "{runs}");
    let snaps = snapshots(&d, "local");
    assert_eq!(snaps.len(), 1, "only the good dump: {snaps:?}");

    let restore = restore_task(&setup, &d, "restore", "local", "copy", Some("/shop.dump"));
    assert_eq!(
        restore["status"],
        "succeeded",
        "{restore}\n{}",
        d.log_text()
    );
    assert_eq!(restore["snapshot_id"], id.as_str());
    let restored = rows(&pg, "shop_copy");
    for (i, sql) in CHECKS.iter().enumerate() {
        assert_eq!(original[i], restored[i], "{sql}");
    }

    // Changed meanwhile, then restored with clean = true: as dumped again.
    pg.sql_as(
        ROLE,
        PASSWORD,
        "shop_copy",
        "DELETE FROM notes; INSERT INTO items (name) VALUES ('stray')",
    );
    let clean = restore_task(&setup, &d, "clean", "local", "copy_clean", None);
    assert_eq!(clean["status"], "succeeded", "{clean}\n{}", d.log_text());
    assert_eq!(rows(&pg, "shop_copy"), original);

    assert_no_secret(
        &d,
        wrong,
        &[
            "/api/v1/sources/bad",
            "/api/v1/resources/bad",
            "/api/v1/tasks",
            "/api/v1/status",
        ],
    );
    assert_no_secret(&d, PASSWORD, &["/api/v1/sources/shop", "/api/v1/tasks"]);
}

/// A `postgresql://user@host:port/database` location (its password from
/// libpq's own `PGPASSFILE`, as a location never holds one) is dumped and
/// restored like a resource; `pg_dump` on a resource without a database
/// backs up every database and the globals, `pg_dumpall` the whole cluster
/// as one SQL file.
#[test]
fn a_location_and_the_whole_cluster() {
    let pg = PgServer::start();
    pg.admin(
        "postgres",
        &format!("CREATE ROLE admin SUPERUSER LOGIN PASSWORD '{PASSWORD}'"),
    );
    pg.admin("postgres", &format!("CREATE DATABASE shop OWNER {ROLE}"));
    pg.admin(
        "postgres",
        &format!("CREATE DATABASE shop_copy OWNER {ROLE}"),
    );
    pg.sql_as(ROLE, PASSWORD, "shop", FIXTURE);
    let original = rows(&pg, "shop");

    let setup = Setup::new();
    let port = pg.port();
    let pgpass = setup.write("pgpass", &format!("127.0.0.1:{port}:*:{ROLE}:{PASSWORD}\n"));
    setup.write("admin_password", &format!("{PASSWORD}\n"));
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
[resource.cluster]
class = "database"
subclass = "postgresql"
host = "127.0.0.1"
port = {port}
user = "admin"
password_file = "admin_password"

[store.local]
location = {store}
passphrase_file = "pass"

[store.sql]
location = {sql_store}
passphrase_file = "pass"

[source.shop]
location = "postgresql://{ROLE}@127.0.0.1:{port}/shop"
protocol = "pg_dump"

[source.cluster]
resource = "cluster"
protocol = "pg_dump"

[source.cluster-sql]
resource = "cluster"
protocol = "pg_dumpall"

[destination.copy]
location = "postgresql://{ROLE}@127.0.0.1:{port}/shop_copy"
protocol = "pg_dump"

[task.backup]
task = "backup"
source = "shop"
store = "local"

[task.all]
task = "backup"
source = "cluster"
store = "local"

[task.all-sql]
task = "backup"
source = "cluster-sql"
store = "sql"
"#,
            daemon = setup.daemon_table(),
            sql_store = lit(&setup.path("sql-store")),
            store = lit(&setup.path("store")),
        ),
    );
    let path = format!(
        "{}:{}",
        pg.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pgpass = pgpass.display().to_string();
    let d = setup.start("run", &[("PATH", &path), ("PGPASSFILE", &pgpass)]);

    let backup = wait_succeeded(&d, "backup");
    assert_eq!(backup["stats"]["files"], 1, "{backup}");
    assert_eq!(
        backup["stats"]["source"],
        format!("postgresql://{ROLE}@127.0.0.1:{port}/shop"),
        "{backup}"
    );
    let id = backup["snapshot_id"].as_str().expect("id").to_string();
    let tree = d.json(&format!("/api/v1/stores/local/snapshots/{id}/tree"));
    let names: Vec<&str> = tree["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["shop.dump"], "{tree}");

    let r = restore_task(&setup, &d, "restore", "local", "copy", Some("/shop.dump"));
    assert_eq!(r["status"], "succeeded", "{r}\n{}", d.log_text());
    assert_eq!(rows(&pg, "shop_copy"), original);

    let all = wait_succeeded(&d, "all");
    let id = all["snapshot_id"].as_str().expect("id").to_string();
    let tree = d.json(&format!("/api/v1/stores/local/snapshots/{id}/tree"));
    let mut names: Vec<&str> = tree["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "globals.sql",
            "postgres.dump",
            "shop.dump",
            "shop_copy.dump"
        ],
        "{tree}"
    );

    let sql = wait_succeeded(&d, "all-sql");
    let id = sql["snapshot_id"].as_str().expect("id").to_string();
    let tree = d.json(&format!("/api/v1/stores/sql/snapshots/{id}/tree"));
    let names: Vec<&str> = tree["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["cluster.sql"], "{tree}");
    assert!(sql["stats"]["bytes"].as_u64().unwrap_or(0) > 1000, "{sql}");
}
