//! PostgreSQL as a source (`pg_dump`, `pg_dumpall` through a
//! [`CommandImporter`]) and a destination (`pg_restore` through a
//! [`CommandExporter`]), and its test connection (`psql`).
//!
//! The command specs are built by pure functions from [`PgConnection`].
//! Invariants: the password only ever reaches a private password file
//! ([`SecretFile`], mode 0600, created exclusively) that every client is
//! pointed at with `PGPASSFILE`; it is never an argument, never in a
//! child's environment, an origin, a target, `Debug` or an error. The
//! commands hold the file, so it is removed once nothing runs them.
//! Database names are passed as quoted conninfo (`dbname='…'`), so a name
//! holding `=`, a URI prefix or a leading `-` is never taken for options.
//! Every client runs with `--no-password` (it fails instead of prompting)
//! and a connect timeout, so a test connection cannot hang on a dead host.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use kloset_connectors::command::{
    CommandExporter, CommandFailed, CommandFile, CommandImporter, CommandReader, CommandSpec,
};
use kloset_connectors::secret_file::SecretFile;
use zeroize::Zeroizing;

use crate::integrations::NotConnected;

/// Seconds a client waits for the server to answer a connection.
const CONNECT_TIMEOUT_S: &str = "10";

/// The largest output of a `psql` query read here (the database list).
const MAX_QUERY_OUTPUT: u64 = 16 << 20;

/// The query listing the databases a whole-cluster backup dumps.
pub const LIST_DATABASES: &str =
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname";

/// The file a whole-cluster backup keeps roles and tablespaces in.
pub const GLOBALS_FILE: &str = "globals.sql";

/// Where and as whom to connect.
#[derive(Clone)]
pub struct PgConnection {
    /// Host name, address, or socket directory.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// One database, or `None` for every database of the cluster.
    pub database: Option<String>,
    /// The password file ([`password_file`]) clients read the password
    /// from, through `PGPASSFILE`.
    pub password_file: Option<Arc<SecretFile>>,
    /// Directory of `pg_dump`, `pg_restore`, `psql` (default: `PATH`).
    /// `pg_dump` must be at least the server's major version.
    pub bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("password_file", &self.password_file)
            .field("bin_dir", &self.bin_dir)
            .finish()
    }
}

impl PgConnection {
    /// `postgresql://USER@HOST:PORT[/DB]`, as shown to users (no password).
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.replace('/', "%2F")
        };
        let mut url = format!("postgresql://{}@{host}:{}", self.user, self.port);
        if let Some(db) = &self.database {
            url.push('/');
            url.push_str(db);
        }
        url
    }

    /// The same server as another database.
    pub fn with_database(&self, database: &str) -> PgConnection {
        PgConnection {
            database: Some(database.to_owned()),
            ..self.clone()
        }
    }

    /// A client program with the connection's environment and
    /// `--no-password -h H -p P -U U`.
    fn client(&self, program: &str) -> CommandSpec {
        let path = match &self.bin_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let mut spec = CommandSpec::new(path).env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_S);
        if let Some(file) = &self.password_file {
            spec = spec
                .env("PGPASSFILE", file.path().to_string_lossy())
                .reads(file);
        }
        spec.args([
            "--no-password".to_owned(),
            "-h".to_owned(),
            self.host.clone(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            self.user.clone(),
        ])
    }

    /// `psql -X -A -t -c SQL` on `database`.
    fn psql(&self, database: &str, sql: &str) -> CommandSpec {
        self.client("psql").args([
            "-X".to_owned(),
            "-A".to_owned(),
            "-t".to_owned(),
            format!("--dbname={}", conninfo_dbname(database)),
            "-c".to_owned(),
            sql.to_owned(),
        ])
    }

    /// The database a test connection or listing logs into.
    fn login_database(&self) -> &str {
        self.database.as_deref().unwrap_or("postgres")
    }
}

/// A password file (libpq's `.pgpass` format) giving `password` for every
/// host, port, database and user: `*:*:*:*:PASSWORD`, with `\` and `:`
/// escaped. A line break cannot be written in that format, so a password
/// holding one is refused.
pub fn password_file(password: &str) -> std::io::Result<Arc<SecretFile>> {
    Ok(Arc::new(SecretFile::create(
        "pg",
        "pgpass",
        pgpass_text(password)?.as_bytes(),
    )?))
}

/// The text of [`password_file`].
pub fn pgpass_text(password: &str) -> std::io::Result<Zeroizing<String>> {
    if password.contains(['\n', '\r']) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the PostgreSQL password holds a line break, which a password file cannot hold",
        ));
    }
    let mut text = Zeroizing::new(String::with_capacity(2 * password.len() + 16));
    text.push_str("*:*:*:*:");
    for c in password.chars() {
        if c == '\\' || c == ':' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('\n');
    Ok(text)
}

/// `dbname='NAME'` with `\` and `'` escaped: libpq takes it literally.
pub fn conninfo_dbname(name: &str) -> String {
    let escaped = name.replace('\\', "\\\\").replace('\'', "\\'");
    format!("dbname='{escaped}'")
}

/// The snapshot file name of a database's dump: `NAME.dump`, with `%` and
/// `/` percent-encoded so every name is one path component.
pub fn dump_name(database: &str) -> String {
    format!("{}.dump", database.replace('%', "%25").replace('/', "%2F"))
}

/// `pg_dump --format=custom` of one database, as the file `NAME.dump`.
pub fn dump_file(conn: &PgConnection, database: &str) -> CommandFile {
    CommandFile {
        name: dump_name(database),
        command: conn.client("pg_dump").args([
            "--format=custom".to_owned(),
            format!("--dbname={}", conninfo_dbname(database)),
        ]),
    }
}

/// `pg_dumpall --globals-only` (roles, tablespaces) as `globals.sql`.
pub fn globals_file(conn: &PgConnection) -> CommandFile {
    CommandFile {
        name: GLOBALS_FILE.to_owned(),
        command: conn.client("pg_dumpall").args(["--globals-only"]),
    }
}

/// The file a `pg_dumpall` backup keeps the whole cluster in.
pub const CLUSTER_FILE: &str = "cluster.sql";

/// The `pg_dumpall` protocol's importer: the whole cluster (roles,
/// tablespaces, every database) as one plain SQL file, `cluster.sql`.
pub fn cluster_importer(conn: &PgConnection) -> CommandImporter {
    let mut args = Vec::new();
    if let Some(db) = &conn.database {
        args.push(format!("--dbname={}", conninfo_dbname(db)));
    }
    CommandImporter::new(
        conn.url(),
        vec![CommandFile {
            name: CLUSTER_FILE.to_owned(),
            command: conn.client("pg_dumpall").args(args),
        }],
    )
}

/// The `pg_dumpall` protocol's exporter: the SQL file piped into `psql`
/// (connected to the resource's database, default `postgres`).
///
/// psql does not stop at SQL errors here, on purpose: a `pg_dumpall`
/// script recreates every role, including ones the target cluster already
/// has (the bootstrap superuser, the role restoring), and PostgreSQL
/// documents those errors as expected. The restore fails only when psql
/// itself fails (connection, authentication).
pub fn cluster_exporter(conn: &PgConnection) -> CommandExporter {
    CommandExporter::new(
        conn.url(),
        conn.client("psql").args([
            "-X".to_owned(),
            "-q".to_owned(),
            format!("--dbname={}", conninfo_dbname(conn.login_database())),
        ]),
    )
}

/// `psql` listing the databases of the cluster, NUL-separated.
pub fn list_databases(conn: &PgConnection) -> CommandSpec {
    conn.psql(conn.login_database(), LIST_DATABASES)
        .args(["--record-separator-zero"])
}

/// The names in [`list_databases`]'s output.
pub fn parse_databases(output: &[u8]) -> Vec<String> {
    output
        .split(|&b| b == 0)
        .map(|name| {
            String::from_utf8_lossy(name)
                .trim_end_matches('\n')
                .to_owned()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The files of a backup: the named database's dump, or (without one) a
/// dump per listed database plus [`globals_file`].
pub fn source_files(conn: &PgConnection, databases: &[String]) -> Vec<CommandFile> {
    match &conn.database {
        Some(db) => vec![dump_file(conn, db)],
        None => databases
            .iter()
            .map(|db| dump_file(conn, db))
            .chain(std::iter::once(globals_file(conn)))
            .collect(),
    }
}

/// The importer of a backup. Without a database this lists the cluster's
/// databases first (running `psql`).
pub fn importer(conn: &PgConnection) -> std::io::Result<CommandImporter> {
    let databases = match conn.database {
        Some(_) => Vec::new(),
        None => parse_databases(&run(&list_databases(conn))?),
    };
    Ok(CommandImporter::new(
        conn.url(),
        source_files(conn, &databases),
    ))
}

/// `pg_restore --no-owner --exit-on-error --dbname=DB`, reading a custom
/// format dump from stdin; `clean` drops existing objects first.
pub fn restore_command(conn: &PgConnection, database: &str, clean: bool) -> CommandSpec {
    let mut spec = conn.client("pg_restore").args([
        "--no-owner".to_owned(),
        "--exit-on-error".to_owned(),
        format!("--dbname={}", conninfo_dbname(database)),
    ]);
    if clean {
        spec = spec.args(["--clean", "--if-exists"]);
    }
    spec
}

/// The exporter of a restore into the connection's database (which must be
/// named and exist).
pub fn exporter(conn: &PgConnection, clean: bool) -> std::io::Result<CommandExporter> {
    let Some(db) = &conn.database else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a PostgreSQL destination needs a database to restore into ({})",
                conn.url()
            ),
        ));
    };
    Ok(CommandExporter::new(
        conn.url(),
        restore_command(conn, db, clean),
    ))
}

/// Runs a command to its end and returns its (bounded) output.
fn run(spec: &CommandSpec) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    CommandReader::spawn(spec)?
        .take(MAX_QUERY_OUTPUT + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_QUERY_OUTPUT {
        return Err(std::io::Error::other(format!(
            "{} wrote more than {MAX_QUERY_OUTPUT} bytes",
            spec.name()
        )));
    }
    Ok(out)
}

/// The reason for a failed client from its stderr.
pub fn reason_of(stderr: &str) -> &'static str {
    let s = stderr.to_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&[
        "password authentication failed",
        "no password supplied",
        "authentication failed",
    ]) || (s.contains("role \"") && s.contains("does not exist"))
    {
        "AuthenticationFailed"
    } else if s.contains("database \"") && s.contains("does not exist") {
        "NotFound"
    } else if any(&[
        "permission denied",
        "no pg_hba.conf entry",
        "must be superuser",
    ]) {
        "PermissionDenied"
    } else {
        // Connection refused, unknown host, timeout, closed connection, ...
        "Unreachable"
    }
}

/// Runs `sql` and returns its trimmed output, or why it could not.
fn query(conn: &PgConnection, sql: &str) -> Result<String, NotConnected> {
    let spec = conn.psql(conn.login_database(), sql);
    match run(&spec) {
        Ok(out) => Ok(String::from_utf8_lossy(&out).trim().to_owned()),
        Err(e) => Err(match CommandFailed::of(&e) {
            Some(failed) => NotConnected {
                reason: reason_of(&failed.stderr),
                message: format!("cannot query {}: {failed}", conn.url()),
            },
            None if e.kind() == std::io::ErrorKind::NotFound => NotConnected {
                reason: "Unsupported",
                message: format!(
                    "{e}; install the PostgreSQL client (e.g. apt-get install postgresql-client)"
                ),
            },
            None => NotConnected {
                reason: "Unreachable",
                message: format!("cannot query {}: {e}", conn.url()),
            },
        }),
    }
}

fn denied(conn: &PgConnection, what: String) -> NotConnected {
    NotConnected {
        reason: "PermissionDenied",
        message: format!("{}: {what}", conn.url()),
    }
}

/// Tables and sequences a dump must read that the user cannot (with the
/// schemas it cannot enter), outside the system schemas.
const UNREADABLE: &str = "SELECT has_database_privilege(current_user, current_database(), 'CONNECT'), \
     (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE c.relkind IN ('r', 'p', 'm', 'S') \
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
        AND (NOT has_schema_privilege(n.oid, 'USAGE') OR NOT has_table_privilege(c.oid, 'SELECT')))";

/// A source is connected when the server answers with these credentials
/// and the user may read what the backup dumps: every table and sequence
/// of the database, or (whole cluster) the role catalogue `pg_dumpall`
/// reads.
pub fn test_source(conn: &PgConnection) -> Result<&'static str, NotConnected> {
    query(conn, "SELECT 1")?;
    match &conn.database {
        Some(db) => {
            let out = query(conn, UNREADABLE)?;
            let (connect, unreadable) = out.split_once('|').unwrap_or((out.as_str(), "0"));
            if connect != "t" {
                return Err(denied(
                    conn,
                    format!("{} may not connect to {db}", conn.user),
                ));
            }
            if unreadable != "0" {
                return Err(denied(
                    conn,
                    format!(
                        "{} cannot read {unreadable} table(s) or sequence(s) of {db}, so pg_dump would fail",
                        conn.user
                    ),
                ));
            }
        }
        None => {
            if query(
                conn,
                "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')",
            )? != "t"
            {
                return Err(denied(
                    conn,
                    format!(
                        "{} cannot read pg_authid; a whole-cluster backup (pg_dumpall --globals-only) needs a superuser",
                        conn.user
                    ),
                ));
            }
        }
    }
    Ok("Readable")
}

/// A destination is connected when the server answers with these
/// credentials and the user may create objects in the (existing) database
/// and its `public` schema.
pub fn test_destination(conn: &PgConnection) -> Result<&'static str, NotConnected> {
    let Some(db) = &conn.database else {
        return Err(NotConnected {
            reason: "NotFound",
            message: format!(
                "{}: a destination needs a database to restore into",
                conn.url()
            ),
        });
    };
    query(conn, "SELECT 1")?;
    let out = query(
        conn,
        "SELECT has_database_privilege(current_user, current_database(), 'CREATE'), \
         coalesce((SELECT has_schema_privilege(current_user, oid, 'CREATE') \
                   FROM pg_namespace WHERE nspname = 'public'), true)",
    )?;
    if out != "t|t" {
        return Err(denied(
            conn,
            format!(
                "{} may not create objects in {db} (needs CREATE on the database and its public schema)",
                conn.user
            ),
        ));
    }
    Ok("Writable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(database: Option<&str>) -> PgConnection {
        PgConnection {
            host: "db.example".into(),
            port: 5433,
            user: "backup".into(),
            database: database.map(str::to_owned),
            password_file: Some(password_file("s3cret:pw\\").expect("password file")),
            bin_dir: None,
        }
    }

    #[test]
    fn the_password_file_is_refused_a_line_break_and_goes_with_the_last_command() {
        assert!(pgpass_text("two\nlines").is_err());
        assert!(pgpass_text("two\rlines").is_err());
        let c = conn(Some("shop"));
        let path = c.password_file.as_ref().expect("file").path().to_path_buf();
        let spec = list_databases(&c);
        drop(c);
        assert!(path.exists(), "kept while a command names it");
        drop(spec);
        assert!(!path.exists(), "removed with the last command");
    }

    #[test]
    fn dump_and_restore_commands_carry_the_connection_but_not_the_password() {
        let c = conn(Some("shop"));
        let f = dump_file(&c, "shop");
        assert_eq!(f.name, "shop.dump");
        assert_eq!(f.command.program, PathBuf::from("pg_dump"));
        assert_eq!(
            f.command.args,
            [
                "--no-password",
                "-h",
                "db.example",
                "-p",
                "5433",
                "-U",
                "backup",
                "--format=custom",
                "--dbname=dbname='shop'"
            ]
        );
        let env: Vec<(&str, &str)> = f
            .command
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let file = c.password_file.as_ref().expect("password file").path();
        assert_eq!(
            env,
            [
                ("PGCONNECT_TIMEOUT", "10"),
                ("PGPASSFILE", &*file.to_string_lossy())
            ]
        );
        assert_eq!(
            std::fs::read_to_string(file).expect("read"),
            "*:*:*:*:s3cret\\:pw\\\\\n"
        );
        for text in [format!("{c:?}"), format!("{f:?}"), c.url()] {
            assert!(!text.contains("s3cret"), "{text}");
        }
        assert_eq!(c.url(), "postgresql://backup@db.example:5433/shop");
        let r = restore_command(&c, "shop", true);
        assert_eq!(r.program, PathBuf::from("pg_restore"));
        assert_eq!(
            &r.args[7..],
            [
                "--no-owner",
                "--exit-on-error",
                "--dbname=dbname='shop'",
                "--clean",
                "--if-exists"
            ]
        );
        assert!(
            !restore_command(&c, "shop", false)
                .args
                .contains(&"--clean".to_owned())
        );
        assert!(
            exporter(&conn(None), false).is_err(),
            "a destination needs a database"
        );
    }

    #[test]
    fn a_cluster_backup_dumps_every_listed_database_and_the_globals() {
        let c = conn(None);
        let listed = parse_databases(b"app\0odd/name%\0postgres\0");
        assert_eq!(listed, ["app", "odd/name%", "postgres"]);
        let names: Vec<String> = source_files(&c, &listed)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "app.dump",
                "odd%2Fname%25.dump",
                "postgres.dump",
                "globals.sql"
            ]
        );
        let one: Vec<String> = source_files(&conn(Some("app")), &listed)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(one, ["app.dump"]);
        let list = list_databases(&c);
        assert!(list.args.contains(&LIST_DATABASES.to_owned()));
        assert!(list.args.contains(&"--dbname=dbname='postgres'".to_owned()));
        let g = globals_file(&c);
        assert_eq!(g.command.program, PathBuf::from("pg_dumpall"));
        assert!(g.command.args.contains(&"--globals-only".to_owned()));
    }

    #[test]
    fn database_names_are_quoted_conninfo() {
        assert_eq!(conninfo_dbname("host=evil"), "dbname='host=evil'");
        assert_eq!(conninfo_dbname(r"it's\x"), r"dbname='it\'s\\x'");
    }

    #[test]
    fn client_errors_map_to_reasons() {
        let cases = [
            (
                "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"x\"",
                "AuthenticationFailed",
            ),
            ("fe_sendauth: no password supplied", "AuthenticationFailed"),
            (
                "FATAL:  role \"nobody\" does not exist",
                "AuthenticationFailed",
            ),
            ("FATAL:  database \"gone\" does not exist", "NotFound"),
            ("ERROR:  permission denied for table t", "PermissionDenied"),
            (
                "FATAL:  no pg_hba.conf entry for host \"10.0.0.1\"",
                "PermissionDenied",
            ),
            (
                "connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
                "Unreachable",
            ),
            (
                "could not translate host name \"nowhere\" to address",
                "Unreachable",
            ),
        ];
        for (stderr, reason) in cases {
            assert_eq!(reason_of(stderr), reason, "{stderr}");
        }
    }
}
