//! `postgresql`: `pg_dump` per database (restored with `pg_restore`) or
//! `pg_dumpall` for the whole cluster (restored with `psql`), as source and
//! destination. A resource holds the server (`host`, `port`, `user`,
//! password) and may name a `database`; an app's `database` replaces it, so
//! one resource serves every database of a server.

pub mod commands;

pub use commands::*;

use std::sync::Arc;

use super::keys::{port, secret_of, string};
use super::place::Place;
use super::seam::{
    AppInput, Base, Connector, Integration, NotConnected, ParseError, Parsed, Policies,
    RestorePick, RestoreTarget, Role,
};
use super::secret::{SecretRef, read_password};

/// The `postgresql` integration.
#[derive(Debug)]
pub struct Postgresql;

const WHOLE_CLUSTER: &str = "pg_dumpall";

impl Integration for Postgresql {
    fn name(&self) -> &'static str {
        "postgresql"
    }
    fn classes(&self) -> &'static [(&'static str, &'static str)] {
        &[("database", "postgresql")]
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["postgresql", "postgres"]
    }
    fn protocols(&self) -> &'static [&'static str] {
        &["pg_dump", WHOLE_CLUSTER]
    }
    fn roles(&self) -> &'static [Role] {
        &[Role::Source, Role::Destination]
    }
    fn resource_keys(&self) -> &'static [&'static str] {
        &[
            "host",
            "port",
            "user",
            "database",
            "password_file",
            "password_env",
        ]
    }
    fn app_keys(&self, role: Role) -> &'static [&'static str] {
        match role {
            Role::Destination => &["database", "options"],
            _ => &["database"],
        }
    }
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>> {
        let app = |m: String| vec![ParseError::App(m)];
        let res = |m: String| vec![ParseError::Resource(m)];
        let app_database = string(input.app, "database").map_err(app)?;
        let clean = match input.app.get("options") {
            None => false,
            Some(toml::Value::Table(t)) => {
                let mut clean = false;
                for (key, value) in t {
                    match (key.as_str(), value) {
                        ("clean", toml::Value::Boolean(b)) => clean = *b,
                        ("clean", _) => return Err(app("options.clean is true or false".into())),
                        (other, _) => {
                            return Err(app(format!(
                                "option {other:?} is not understood by the postgresql integration (it takes: clean)"
                            )));
                        }
                    }
                }
                clean
            }
            Some(_) => {
                return Err(app(
                    "`options` is a table, e.g. options = { clean = true }".into()
                ));
            }
        };
        let mut s = match &input.base {
            Base::Resource { table, file } => {
                let host = string(table, "host")
                    .map_err(res)?
                    .ok_or_else(|| res("a PostgreSQL resource needs `host`".into()))?;
                let user = string(table, "user")
                    .map_err(res)?
                    .ok_or_else(|| res("a PostgreSQL resource needs `user`".into()))?;
                let port = port(table, "port").map_err(res)?.unwrap_or(5432);
                let password = secret_of(table, file, "password").map_err(res)?;
                PgSettings {
                    host,
                    port,
                    user,
                    database: string(table, "database").map_err(res)?,
                    password,
                    clean,
                    whole_cluster: input.protocol == WHOLE_CLUSTER,
                }
            }
            Base::Location(loc) => {
                if loc.split_once("://").is_some_and(|(_, r)| has_password(r)) {
                    return Err(app(
                        "a location never holds a password; declare a [resource] with password_file or password_env".into(),
                    ));
                }
                let mut s = parse_url(loc).map_err(|m| app(format!("location {loc:?}: {m}")))?;
                s.clean = clean;
                s.whole_cluster = input.protocol == WHOLE_CLUSTER;
                s
            }
            Base::Nothing => return Err(app("`resource` or `location` is required".into())),
        };
        if app_database.is_some() {
            if matches!(input.base, Base::Location(_)) {
                return Err(app(
                    "`database` goes with `resource`; a location names its database: postgresql://user@host/database".into(),
                ));
            }
            s.database = app_database;
        }
        if input.role == Role::Destination && !s.whole_cluster && s.database.is_none() {
            return Err(app(
                "a pg_dump destination restores into one database: give `database` \
                 (protocol = \"pg_dumpall\" restores a whole cluster)"
                    .into(),
            ));
        }
        let location = match &input.base {
            Base::Location(loc) => loc.trim_end_matches('/').to_string(),
            _ => s.url(),
        };
        Ok(Parsed {
            location,
            connector: Arc::new(PgConnector { s }),
        })
    }
}

/// Whether `user:password@host…` carries a password.
fn has_password(rest: &str) -> bool {
    rest.split_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `postgresql://[user@]host[:port][/database]` (IPv6 hosts in brackets,
/// the database percent-decoded). The port defaults to 5432, the user to
/// `postgres`, as for a resource.
fn parse_url(url: &str) -> Result<PgSettings, String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("not a postgresql:// URL")?;
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("postgres", authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an IPv6 host needs its `]`")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || user.is_empty() {
        return Err("give postgresql://user@host[:port][/database]".into());
    }
    if database.contains(['/', '?']) {
        return Err("write the database name only (no parameters)".into());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("port {p:?} is not a number"))?,
        None => 5432,
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
    };
    Ok(PgSettings {
        host: host.to_string(),
        port,
        user: decode(user)?,
        database: if database.is_empty() {
            None
        } else {
            Some(decode(database)?)
        },
        password: None,
        clean: false,
        whole_cluster: false,
    })
}

/// A server, one database of it or all, and how to sign in.
#[derive(Clone, Debug)]
struct PgSettings {
    host: String,
    port: u16,
    user: String,
    database: Option<String>,
    password: Option<SecretRef>,
    /// A restore drops objects before recreating them.
    clean: bool,
    /// `pg_dumpall`: roles, tablespaces and every database in one file.
    whole_cluster: bool,
}

impl PgSettings {
    fn url(&self) -> String {
        let db = self
            .database
            .as_deref()
            .map(|d| format!("/{d}"))
            .unwrap_or_default();
        format!("postgresql://{}@{}:{}{db}", self.user, self.host, self.port)
    }
}

/// A PostgreSQL server.
#[derive(Debug)]
struct PgConnector {
    s: PgSettings,
}

impl PgConnector {
    fn connection(&self) -> Result<PgConnection, NotConnected> {
        let password_file = match read_password(self.s.password.as_ref())? {
            Some(password) => Some(commands::password_file(&password).map_err(|e| {
                let reason = match e.kind() {
                    std::io::ErrorKind::InvalidInput => "SecretUnreadable",
                    _ => "Unreachable",
                };
                NotConnected::new(reason, format!("password: {e}"))
            })?),
            None => None,
        };
        Ok(PgConnection {
            host: self.s.host.clone(),
            port: self.s.port,
            user: self.s.user.clone(),
            database: self.s.database.clone(),
            password_file,
            bin_dir: None,
        })
    }
}

fn cluster_file(name: &str) -> bool {
    name == CLUSTER_FILE
}

fn database_dump(name: &str) -> bool {
    name.ends_with(".dump")
}

impl Connector for PgConnector {
    fn settings(&self) -> serde_json::Value {
        let s = &self.s;
        serde_json::json!({
            "host": s.host,
            "port": s.port,
            "user": s.user,
            "database": s.database,
            "password": s.password,
            "clean": s.clean,
        })
    }

    fn place(&self) -> Option<Place> {
        Some(Place::of(
            format!(
                "postgresql://{}:{}",
                self.s.host.to_ascii_lowercase(),
                self.s.port
            ),
            self.s.database.iter().cloned().collect(),
        ))
    }

    fn policies(&self) -> Policies {
        Policies {
            // A dump cut short restores nothing useful.
            all_or_nothing: true,
            restore: RestorePick::OneFile(if self.s.whole_cluster {
                cluster_file
            } else {
                database_dump
            }),
        }
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        self.s.password.iter().map(|p| ("password", p)).collect()
    }

    fn test(&self, role: Role) -> Result<&'static str, NotConnected> {
        let mut conn = self.connection()?;
        match role {
            Role::Source => commands::test_source(&conn),
            Role::Destination => {
                // A pg_dumpall restore connects to `postgres` unless told otherwise.
                if self.s.whole_cluster && conn.database.is_none() {
                    conn.database = Some("postgres".into());
                }
                commands::test_destination(&conn)
            }
            Role::Store => Err(NotConnected::new(
                "Unsupported",
                "PostgreSQL holds no stores",
            )),
        }
    }

    fn importer(&self) -> Result<Box<dyn kloset::import::Importer>, String> {
        let conn = self.connection().map_err(|e| e.message)?;
        if self.s.whole_cluster {
            return Ok(Box::new(commands::cluster_importer(&conn)));
        }
        Ok(Box::new(
            commands::importer(&conn).map_err(|e| e.to_string())?,
        ))
    }

    fn restore_target(&self, _: Option<&str>) -> Result<RestoreTarget, String> {
        let conn = self.connection().map_err(|e| e.message)?;
        if self.s.whole_cluster {
            return Ok(RestoreTarget::Exporter(Box::new(
                commands::cluster_exporter(&conn),
            )));
        }
        Ok(RestoreTarget::Exporter(Box::new(
            commands::exporter(&conn, self.s.clean).map_err(|e| e.to_string())?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_connection_settings() {
        let s = parse_url("postgresql://app@db1:5433/shop").expect("full");
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.user.as_str(),
                s.database.as_deref()
            ),
            ("db1", 5433, "app", Some("shop"))
        );
        let s = parse_url("postgres://db1").expect("host only");
        assert_eq!(
            (s.port, s.user.as_str(), s.database),
            (5432, "postgres", None)
        );
        let s = parse_url("postgresql://u@[::1]:6000").expect("v6");
        assert_eq!((s.host.as_str(), s.port), ("::1", 6000));
        assert!(parse_url("postgresql://u@db:x/d").is_err());
        assert!(parse_url("postgresql://").is_err());
        assert!(parse_url("postgresql://db/a?sslmode=x").is_err());
    }
}
