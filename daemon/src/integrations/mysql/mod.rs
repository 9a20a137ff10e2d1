//! `mysql`: one MySQL or MariaDB database, dumped with `mariadb-dump` (or
//! `mysqldump`) as `NAME.sql` and restored with the `mariadb` (or `mysql`)
//! client, as source and destination. A resource holds the server (`host`,
//! `port`, `user`, password) and may name a `database`; an app's
//! `database` replaces it. How the password reaches the clients (a
//! temporary option file, never argv or the environment) is in
//! [`commands`].

pub mod commands;

use std::sync::Arc;

use super::keys::{port, secret_of, string};
use super::place::Place;
use super::seam::{
    AppInput, Base, Connector, Integration, NotConnected, ParseError, Parsed, Policies,
    RestorePick, RestoreTarget, Role,
};
use super::secret::{SecretRef, read_password};
use commands::MyConnection;

/// The default port.
const PORT: u16 = 3306;

/// The `mysql` integration.
#[derive(Debug)]
pub struct Mysql;

impl Integration for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }
    fn classes(&self) -> &'static [(&'static str, &'static str)] {
        &[("database", "mysql"), ("database", "mariadb")]
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["mysql", "mariadb"]
    }
    fn protocols(&self) -> &'static [&'static str] {
        &["mysqldump"]
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
    fn app_keys(&self, _: Role) -> &'static [&'static str] {
        &["database"]
    }
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>> {
        let app = |m: String| vec![ParseError::App(m)];
        let res = |m: String| vec![ParseError::Resource(m)];
        let app_database = string(input.app, "database").map_err(app)?;
        let mut s = match &input.base {
            Base::Resource { table, file } => MySettings {
                host: string(table, "host")
                    .map_err(res)?
                    .ok_or_else(|| res("a MySQL resource needs `host`".into()))?,
                port: port(table, "port").map_err(res)?.unwrap_or(PORT),
                user: string(table, "user")
                    .map_err(res)?
                    .ok_or_else(|| res("a MySQL resource needs `user`".into()))?,
                database: string(table, "database").map_err(res)?,
                password: secret_of(table, file, "password").map_err(res)?,
            },
            Base::Location(loc) => {
                if app_database.is_some() {
                    return Err(app(
                        "`database` goes with `resource`; a location names its database: mysql://user@host/database".into(),
                    ));
                }
                parse_url(loc).map_err(|m| app(format!("location {loc:?}: {m}")))?
            }
            Base::Nothing => return Err(app("`resource` or `location` is required".into())),
        };
        if app_database.is_some() {
            s.database = app_database;
        }
        let Some(database) = s.database.clone() else {
            return Err(app(
                "a MySQL source or destination is one database: give `database`".into(),
            ));
        };
        if database.starts_with('-') {
            return Err(app(format!("database {database:?} may not start with `-`")));
        }
        Ok(Parsed {
            location: format!("mysql://{}@{}:{}/{database}", s.user, s.host, s.port),
            connector: Arc::new(MyConnector { s }),
        })
    }
}

/// `mysql://USER@HOST[:PORT]/DATABASE` (or `mariadb://…`); a password in
/// it is refused without being echoed.
fn parse_url(url: &str) -> Result<MySettings, String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("not a mysql:// URL")?;
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = authority
        .rsplit_once('@')
        .ok_or("give mysql://user@host[:port]/database")?;
    if user.contains(':') {
        return Err("a location never holds a password; declare a [resource] with password_file or password_env".into());
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number"))?,
        ),
        None => (hostport, PORT),
    };
    if host.is_empty() || user.is_empty() || database.contains(['/', '?']) {
        return Err("give mysql://user@host[:port]/database".into());
    }
    Ok(MySettings {
        host: host.to_string(),
        port,
        user: user.to_string(),
        database: (!database.is_empty()).then(|| database.to_string()),
        password: None,
    })
}

/// A server, one database of it, and how to sign in.
#[derive(Clone, Debug)]
struct MySettings {
    host: String,
    port: u16,
    user: String,
    database: Option<String>,
    password: Option<SecretRef>,
}

/// One database of a MySQL or MariaDB server.
#[derive(Debug)]
struct MyConnector {
    s: MySettings,
}

impl MyConnector {
    fn connection(&self) -> Result<MyConnection, NotConnected> {
        let password = read_password(self.s.password.as_ref())?;
        Ok(MyConnection {
            host: self.s.host.clone(),
            port: self.s.port,
            user: self.s.user.clone(),
            database: self.s.database.clone().unwrap_or_default(),
            password,
        })
    }
}

fn sql_dump(name: &str) -> bool {
    name.ends_with(".sql")
}

impl Connector for MyConnector {
    fn settings(&self) -> serde_json::Value {
        let s = &self.s;
        serde_json::json!({
            "host": s.host,
            "port": s.port,
            "user": s.user,
            "database": s.database,
            "password": s.password,
        })
    }

    fn place(&self) -> Option<Place> {
        Some(Place::of(
            format!(
                "mysql://{}:{}",
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
            restore: RestorePick::OneFile(sql_dump),
        }
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        self.s.password.iter().map(|p| ("password", p)).collect()
    }

    fn test(&self, role: Role) -> Result<&'static str, NotConnected> {
        let conn = self.connection()?;
        match role {
            Role::Source => commands::test_source(&conn),
            Role::Destination => commands::test_destination(&conn),
            Role::Store => Err(NotConnected::new("Unsupported", "MySQL holds no stores")),
        }
    }

    fn importer(&self) -> Result<Box<dyn kloset::import::Importer>, String> {
        let conn = self.connection().map_err(|e| e.message)?;
        commands::importer(&conn).map_err(|e| e.to_string())
    }

    fn restore_target(&self, _: Option<&str>) -> Result<RestoreTarget, String> {
        let conn = self.connection().map_err(|e| e.message)?;
        Ok(RestoreTarget::Exporter(
            commands::exporter(&conn).map_err(|e| e.to_string())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_connection_settings() {
        let s = parse_url("mysql://app@db1:3307/shop").expect("full");
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.user.as_str(),
                s.database.as_deref()
            ),
            ("db1", 3307, "app", Some("shop"))
        );
        let s = parse_url("mariadb://root@db1/x").expect("default port");
        assert_eq!(s.port, 3306);
        assert!(parse_url("mysql://db1/x").is_err(), "a user is required");
        let e = match parse_url("mysql://u:hunter2@db1/x") {
            Err(e) => e,
            Ok(_) => panic!("a password in a location is refused"),
        };
        assert!(!e.contains("hunter2"), "{e}");
        assert!(parse_url("mysql://u@db:x/d").is_err());
    }
}
