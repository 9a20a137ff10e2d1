//! MySQL and MariaDB as a source (`mariadb-dump`, or `mysqldump`, through
//! a [`CommandImporter`]) and a destination (the `mariadb` or `mysql`
//! client through a [`CommandExporter`]), and their connection tests.
//!
//! The password never is an argument and never in a child's environment
//! (`MYSQL_PWD` is visible in `/proc/PID/environ` to the same user and is
//! deprecated by MySQL): it is written to a temporary option file
//! ([`SecretFile`]: mode 0600, created exclusively, `[client]
//! password="…"`) that every client reads with `--defaults-extra-file=` as
//! its first argument; the commands hold the file, so it is removed when
//! the importer, exporter or test that runs them is dropped. The specs are
//! built by pure functions from [`MyConnection`] and the option file. Database names are passed
//! after `--` (dump) or as `--database=` (client), never as an option.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kloset::export::Exporter;
use kloset::import::Importer;
use kloset_connectors::command::{
    CommandExporter, CommandFailed, CommandFile, CommandImporter, CommandReader, CommandSpec,
};
use kloset_connectors::secret_file::SecretFile;
use zeroize::Zeroizing;

use crate::integrations::NotConnected;

/// Seconds the client waits for the server to accept a connection.
const CONNECT_TIMEOUT_S: &str = "10";
/// The largest output of a test query read here.
const MAX_QUERY_OUTPUT: u64 = 1 << 20;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct MyConnection {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// The database dumped or restored into.
    pub database: String,
    /// Password (written to the option file only).
    pub password: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for MyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl MyConnection {
    /// `mysql://USER@HOST:PORT/DB`, as shown to users (no password).
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "mysql://{}@{host}:{}/{}",
            self.user, self.port, self.database
        )
    }
}

/// The option file's text: `[client]` and, with a password, the password
/// quoted with `\`, `"`, newlines escaped as the option file syntax reads
/// them.
pub fn option_text(password: Option<&str>) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::from("[client]\n"));
    if let Some(pw) = password {
        let mut escaped = Zeroizing::new(String::with_capacity(pw.len() + 2));
        for c in pw.chars() {
            match c {
                '\\' => escaped.push_str("\\\\"),
                '"' => escaped.push_str("\\\""),
                '\n' => escaped.push_str("\\n"),
                '\r' => escaped.push_str("\\r"),
                '\t' => escaped.push_str("\\t"),
                other => escaped.push(other),
            }
        }
        text.push_str("password=\"");
        text.push_str(&escaped);
        text.push_str("\"\n");
    }
    text
}

/// The client programs: MariaDB's names when installed, else MySQL's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programs {
    /// `mariadb-dump` or `mysqldump`.
    pub dump: PathBuf,
    /// `mariadb` or `mysql`.
    pub client: PathBuf,
}

impl Programs {
    /// Looks for MariaDB's programs on `PATH`, then MySQL's; the MariaDB
    /// names when neither is found (the error then names them).
    pub fn find() -> Programs {
        let on_path = |name: &str| {
            std::env::var_os("PATH").is_some_and(|paths| {
                std::env::split_paths(&paths).any(|dir| dir.join(name).is_file())
            })
        };
        if !on_path("mariadb-dump") && on_path("mysqldump") {
            Programs {
                dump: "mysqldump".into(),
                client: "mysql".into(),
            }
        } else {
            Programs {
                dump: "mariadb-dump".into(),
                client: "mariadb".into(),
            }
        }
    }
}

/// `PROGRAM --defaults-extra-file=F --host=H --port=P --user=U
/// --protocol=TCP --default-character-set=utf8mb4`.
fn client(conn: &MyConnection, program: &Path, options: &Arc<SecretFile>) -> CommandSpec {
    CommandSpec::new(program).reads(options).args([
        format!("--defaults-extra-file={}", options.path().display()),
        format!("--host={}", conn.host),
        format!("--port={}", conn.port),
        format!("--user={}", conn.user),
        "--protocol=TCP".to_owned(),
        "--default-character-set=utf8mb4".to_owned(),
    ])
}

/// The snapshot file of a database's dump: `NAME.sql`, `%` and `/`
/// percent-encoded.
pub fn dump_name(database: &str) -> String {
    format!("{}.sql", database.replace('%', "%25").replace('/', "%2F"))
}

/// A consistent dump of one database (tables, routines, triggers, events;
/// binary columns as hex), without `CREATE DATABASE`/`USE` so that it
/// restores into any database.
pub fn dump_file(
    conn: &MyConnection,
    programs: &Programs,
    options: &Arc<SecretFile>,
) -> CommandFile {
    CommandFile {
        name: dump_name(&conn.database),
        command: client(conn, &programs.dump, options).args([
            "--single-transaction".to_owned(),
            "--routines".to_owned(),
            "--triggers".to_owned(),
            "--events".to_owned(),
            "--hex-blob".to_owned(),
            "--".to_owned(),
            conn.database.clone(),
        ]),
    }
}

/// The client reading SQL from stdin into the connection's database,
/// stopping at the first error.
pub fn restore_command(
    conn: &MyConnection,
    programs: &Programs,
    options: &Arc<SecretFile>,
) -> CommandSpec {
    client(conn, &programs.client, options).args([
        "--batch".to_owned(),
        "--binary-mode".to_owned(),
        format!("--database={}", conn.database),
    ])
}

/// The client running `sql` in the connection's database, tab-separated
/// without headers.
pub fn query_command(
    conn: &MyConnection,
    programs: &Programs,
    options: &Arc<SecretFile>,
    sql: &str,
) -> CommandSpec {
    client(conn, &programs.client, options).args([
        format!("--connect-timeout={CONNECT_TIMEOUT_S}"),
        "--batch".to_owned(),
        "--skip-column-names".to_owned(),
        format!("--database={}", conn.database),
        format!("--execute={sql}"),
    ])
}

/// The option file of a connection's commands.
pub fn options_of(conn: &MyConnection) -> std::io::Result<Arc<SecretFile>> {
    let text = option_text(conn.password.as_ref().map(|p| p.as_str()));
    Ok(Arc::new(SecretFile::create("my", "cnf", text.as_bytes())?))
}

/// The importer of a backup: `NAME.sql`.
pub fn importer(conn: &MyConnection) -> std::io::Result<Box<dyn Importer>> {
    let file = dump_file(conn, &Programs::find(), &options_of(conn)?);
    Ok(Box::new(CommandImporter::new(conn.url(), vec![file])))
}

/// The exporter of a restore into the connection's database.
pub fn exporter(conn: &MyConnection) -> std::io::Result<Box<dyn Exporter>> {
    let command = restore_command(conn, &Programs::find(), &options_of(conn)?);
    Ok(Box::new(CommandExporter::new(conn.url(), command)))
}

/// The reason for a failed client from its stderr.
pub fn reason_of(stderr: &str) -> &'static str {
    let s = stderr.to_lowercase();
    let auth = s.contains("error 1045") || s.contains("error: 1045");
    if auth || (s.contains("access denied for user") && !s.contains("to database")) {
        "AuthenticationFailed"
    } else if s.contains("unknown database") || s.contains("(1049)") {
        "NotFound"
    } else if s.contains("access denied") || s.contains("command denied") {
        "PermissionDenied"
    } else {
        // Can't connect, unknown host, lost connection, timeout, ...
        "Unreachable"
    }
}

/// Runs `sql` and returns its output, or why it could not.
fn query(conn: &MyConnection, sql: &str) -> Result<String, NotConnected> {
    let options = options_of(conn)
        .map_err(|e| NotConnected::new("Unreachable", format!("{}: {e}", conn.url())))?;
    let programs = Programs::find();
    let spec = query_command(conn, &programs, &options, sql);
    let mut out = Vec::new();
    let result = CommandReader::spawn(&spec).and_then(|r| {
        r.take(MAX_QUERY_OUTPUT).read_to_end(&mut out)?;
        Ok(())
    });
    // The option file goes once nothing names it.
    drop((spec, options));
    match result {
        Ok(()) => Ok(String::from_utf8_lossy(&out).trim().to_owned()),
        Err(e) => Err(match CommandFailed::of(&e) {
            Some(failed) => NotConnected::new(
                reason_of(&failed.stderr),
                format!("cannot query {}: {failed}", conn.url()),
            ),
            None if e.kind() == std::io::ErrorKind::NotFound => NotConnected::new(
                "Unsupported",
                format!(
                    "{}: {e}; install the client (e.g. apt-get install mariadb-client)",
                    programs.client.display()
                ),
            ),
            None => NotConnected::new("Unreachable", format!("cannot query {}: {e}", conn.url())),
        }),
    }
}

/// A source is connected when the server accepts the credentials, the
/// database exists and its tables can be listed.
pub fn test_source(conn: &MyConnection) -> Result<&'static str, NotConnected> {
    query(conn, "SELECT 1; SHOW TABLES")?;
    Ok("Readable")
}

/// A destination is connected when the server accepts the credentials,
/// the database exists, and a probe table can be created and dropped in it.
pub fn test_destination(conn: &MyConnection) -> Result<&'static str, NotConnected> {
    let table = format!("klosetd_probe_{}", kloset::id::SnapshotId::random().short());
    query(
        conn,
        &format!("CREATE TABLE `{table}` (i INT); DROP TABLE `{table}`"),
    )?;
    Ok("Writable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> MyConnection {
        MyConnection {
            host: "db.example".into(),
            port: 3307,
            user: "backup".into(),
            database: "-shop".into(),
            password: Some(Zeroizing::new("s3cret \"pw\"\\".into())),
        }
    }

    #[test]
    fn commands_carry_the_connection_but_never_the_password() {
        let c = conn();
        let p = Programs {
            dump: "mariadb-dump".into(),
            client: "mariadb".into(),
        };
        let opts = options_of(&c).expect("option file");
        let at = format!("--defaults-extra-file={}", opts.path().display());
        let f = dump_file(&c, &p, &opts);
        assert_eq!(f.name, "-shop.sql");
        assert_eq!(
            f.command.args,
            [
                at.as_str(),
                "--host=db.example",
                "--port=3307",
                "--user=backup",
                "--protocol=TCP",
                "--default-character-set=utf8mb4",
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--",
                "-shop"
            ]
        );
        let r = restore_command(&c, &p, &opts);
        assert_eq!(r.program, PathBuf::from("mariadb"));
        assert_eq!(r.args.last().map(String::as_str), Some("--database=-shop"));
        let q = query_command(&c, &p, &opts, "SELECT 1");
        for spec in [&f.command, &r, &q] {
            assert!(spec.env.is_empty(), "no environment: {spec:?}");
            let all = format!("{spec:?}");
            assert!(!all.contains("s3cret"), "{all}");
        }
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.url(), "mysql://backup@db.example:3307/-shop");
    }

    #[test]
    fn the_option_file_quotes_the_password_and_is_private() {
        assert_eq!(
            option_text(Some("a\"b\\c\nd")).as_str(),
            "[client]\npassword=\"a\\\"b\\\\c\\nd\"\n"
        );
        assert_eq!(option_text(None).as_str(), "[client]\n");
        let c = MyConnection {
            password: Some(Zeroizing::new("pw".into())),
            ..conn()
        };
        let p = Programs::find();
        let f = options_of(&c).expect("option file");
        let path = f.path().to_path_buf();
        let mode = std::fs::metadata(&path).expect("stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "[client]\npassword=\"pw\"\n"
        );
        let command = restore_command(&c, &p, &f);
        drop(f);
        assert!(path.exists(), "kept while a command names it");
        drop(command);
        assert!(!path.exists(), "removed with the last command");
    }

    #[test]
    fn client_errors_map_to_reasons() {
        let cases = [
            (
                "ERROR 1045 (28000): Access denied for user 'backup'@'localhost' (using password: YES)",
                "AuthenticationFailed",
            ),
            ("ERROR 1049 (42000): Unknown database 'gone'", "NotFound"),
            (
                "ERROR 1044 (42000): Access denied for user 'b'@'%' to database 'x'",
                "PermissionDenied",
            ),
            (
                "ERROR 1142 (42000): CREATE command denied to user 'b'@'localhost' for table `x`.`t`",
                "PermissionDenied",
            ),
            (
                "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)",
                "Unreachable",
            ),
            (
                "mariadb-dump: Got error: 1045: \"Access denied for user 'b'@'localhost' (using password: YES)\" when trying to connect",
                "AuthenticationFailed",
            ),
        ];
        for (stderr, reason) in cases {
            assert_eq!(reason_of(stderr), reason, "{stderr}");
        }
    }
}
