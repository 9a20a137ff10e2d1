//! Where a store, source or destination is: a direct `location`, a named
//! resource, or (for `exec`) a command, resolved to an integration, a
//! protocol, a location and backend settings (secrets as references, never
//! values).
//!
//! Locations pick their integration by scheme: a path or `fs://` is the
//! filesystem, `s3://bucket/prefix` is S3, `sftp://[user@]host[:port]/path`
//! is SFTP, `postgresql://[user@]host[:port][/database]` is PostgreSQL.
//! Resources pick it by class and subclass (`integrations::resolve`).

use super::desired::Endpoint;
use super::load::{Located, RawConfig};
use super::model::ResourceTable;
use super::validate::{Ctx, resolve_path, secret};
use crate::integrations::{self, Role};

/// What an object table says about where it is.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Wanted<'a> {
    pub resource: Option<&'a str>,
    pub location: Option<&'a str>,
    pub integration: Option<&'a str>,
    pub protocol: Option<&'a str>,
    /// `command = [...]` (exec sources and destinations).
    pub command: Option<&'a [String]>,
}

pub(super) fn endpoint<T>(
    cx: &mut Ctx,
    raw: &RawConfig,
    l: &Located<T>,
    object: &str,
    role: Role,
    w: Wanted<'_>,
) -> Option<Endpoint> {
    let e = match (w.resource, w.location) {
        (Some(_), Some(_)) => {
            cx.err(l, object, "give either `resource` or `location`, not both");
            return None;
        }
        (None, None) if w.integration == Some("exec") || w.command.is_some() => {
            exec_endpoint(cx, l, object, role, w)
        }
        (None, None) => {
            cx.err(l, object, "`resource` or `location` is required");
            None
        }
        (None, Some(loc)) => location_endpoint(cx, l, object, role, w, loc),
        (Some(name), None) => {
            let Some(r) = raw.resources.get(name) else {
                let known: Vec<&String> = raw.resources.keys().collect();
                cx.err(
                    l,
                    object,
                    format!("unknown resource {name:?} (declared: {known:?})"),
                );
                return None;
            };
            let res = &r.value;
            let (i, p) = match integrations::resolve(
                &res.class,
                &res.subclass,
                role,
                w.integration,
                w.protocol,
            ) {
                Ok(x) => x,
                Err(e) => {
                    cx.err(l, object, format!("resource {name:?}: {e}"));
                    return None;
                }
            };
            let mut e = if i.name == "exec" {
                exec_endpoint(
                    cx,
                    l,
                    object,
                    role,
                    Wanted {
                        integration: Some("exec"),
                        ..w
                    },
                )?
            } else {
                resource_endpoint(cx, r, &format!("resource.{name}"), i.name, p)?
            };
            e.resource = Some(name.to_string());
            Some(e)
        }
    }?;
    if e.integration == "postgresql" && !check_postgresql(cx, l, object, role, &e) {
        return None;
    }
    if e.integration != "exec" && w.command.is_some() {
        cx.err(
            l,
            object,
            format!(
                "`command` belongs to the exec integration, not {}",
                e.integration
            ),
        );
        return None;
    }
    Some(e)
}

fn bare(integration: &'static str, protocol: &'static str, location: String) -> Endpoint {
    Endpoint {
        integration,
        protocol,
        location,
        resource: None,
        options: Vec::new(),
        credentials: Vec::new(),
        command: Vec::new(),
    }
}

fn exec_endpoint<T>(
    cx: &mut Ctx,
    l: &Located<T>,
    object: &str,
    role: Role,
    w: Wanted<'_>,
) -> Option<Endpoint> {
    let (i, p) = match integrations::resolve("command", "exec", role, w.integration, w.protocol) {
        Ok(x) => x,
        Err(e) => {
            cx.err(l, object, e);
            return None;
        }
    };
    let command = match w.command {
        Some(c) if !c.is_empty() && !c[0].is_empty() => c.to_vec(),
        _ => {
            cx.err(
                l,
                object,
                "the exec integration needs `command = [\"program\", \"arg\", …]`",
            );
            return None;
        }
    };
    let mut e = bare(i.name, p, format!("exec:{}", command[0]));
    e.command = command;
    Some(e)
}

fn location_endpoint<T>(
    cx: &mut Ctx,
    l: &Located<T>,
    object: &str,
    role: Role,
    w: Wanted<'_>,
    loc: &str,
) -> Option<Endpoint> {
    let scheme = loc.split_once("://").map(|(s, _)| s);
    let (class, subclass) = match scheme {
        Some("s3") => ("object-storage", "s3"),
        Some("sftp") => ("filesystem", "sftp"),
        Some("postgresql" | "postgres") => ("database", "postgresql"),
        None | Some("fs") => ("filesystem", "local"),
        Some(other) => {
            cx.err(
                l,
                object,
                format!(
                    "location {loc:?}: unknown scheme {other:?} (use a path, fs://path, \
                     s3://bucket/prefix, sftp://user@host/path or postgresql://user@host/database)"
                ),
            );
            return None;
        }
    };
    let (i, p) = match integrations::resolve(class, subclass, role, w.integration, w.protocol) {
        Ok(x) => x,
        Err(e) => {
            cx.err(l, object, format!("location {loc:?}: {e}"));
            return None;
        }
    };
    let location = match scheme {
        None | Some("fs") => {
            match resolve_path(&l.file, loc.strip_prefix("fs://").unwrap_or(loc)) {
                Ok(path) => path.display().to_string(),
                Err(e) => {
                    cx.err(l, object, e);
                    return None;
                }
            }
        }
        _ if loc.contains('@') && loc.split_once("://").is_some_and(|(_, r)| has_password(r)) => {
            cx.err(
                l,
                object,
                "a location never holds a password; declare a [resource] with password_file or password_env",
            );
            return None;
        }
        _ => loc.trim_end_matches('/').to_string(),
    };
    let mut e = bare(i.name, p, location);
    if i.name == "postgresql" {
        match postgresql_url(&e.location) {
            Ok(options) => e.options = options,
            Err(msg) => {
                cx.err(l, object, format!("location {loc:?}: {msg}"));
                return None;
            }
        }
    }
    Some(e)
}

/// The connection options (`host`, `port`, `user`, `database`) of
/// `postgresql://[user@]host[:port][/database]` (IPv6 hosts in brackets,
/// the database percent-decoded). The port defaults to 5432, the user to
/// `postgres`, as for a resource.
fn postgresql_url(url: &str) -> Result<Vec<(String, String)>, String> {
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
    let mut options = vec![
        ("host".to_string(), host.to_string()),
        ("port".to_string(), port.to_string()),
        ("user".to_string(), decode(user)?),
    ];
    if !database.is_empty() {
        options.push(("database".to_string(), decode(database)?));
    }
    Ok(options)
}

/// A `pg_dump` destination restores into one database, which it must
/// name. (A `pg_dump` source without `database` dumps every database plus
/// `globals.sql`; `pg_dumpall` connects to `database`, default `postgres`.)
fn check_postgresql<T>(
    cx: &mut Ctx,
    l: &Located<T>,
    object: &str,
    role: Role,
    e: &Endpoint,
) -> bool {
    if role == Role::Destination && e.protocol == "pg_dump" && e.option("database").is_none() {
        cx.err(
            l,
            object,
            "a pg_dump destination restores into one database: give `database` \
             (protocol = \"pg_dumpall\" restores a whole cluster)",
        );
        return false;
    }
    true
}

/// Whether `user:password@host…` carries a password.
fn has_password(rest: &str) -> bool {
    rest.split_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn required<'a>(
    cx: &mut Ctx,
    r: &Located<ResourceTable>,
    object: &str,
    what: &str,
    key: &str,
    value: &'a Option<String>,
) -> Option<&'a str> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            cx.err(r, object, format!("{what} resource needs `{key}`"));
            None
        }
    }
}

fn resource_endpoint(
    cx: &mut Ctx,
    r: &Located<ResourceTable>,
    object: &str,
    integration: &'static str,
    protocol: &'static str,
) -> Option<Endpoint> {
    let res = &r.value;
    match integration {
        "fs" => {
            let path = required(cx, r, object, "a filesystem", "path", &res.path)?;
            let p = resolve_path(&r.file, path)
                .map_err(|e| cx.err(r, object, e))
                .ok()?;
            Some(bare(integration, protocol, p.display().to_string()))
        }
        "s3" => s3_endpoint(cx, r, object, protocol),
        "sftp" => {
            let host = required(cx, r, object, "an SFTP", "host", &res.host)?;
            let path = required(cx, r, object, "an SFTP", "path", &res.path)?;
            if !path.starts_with('/') {
                cx.err(r, object, "an SFTP `path` is absolute on the server");
                return None;
            }
            let user = res
                .user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default();
            let port = res.port.map(|p| format!(":{p}")).unwrap_or_default();
            let mut e = bare(
                integration,
                protocol,
                format!("sftp://{user}{host}{port}{}", path.trim_end_matches('/')),
            );
            for (key, value) in [
                ("sftp_key_file", &res.key_file),
                ("sftp_known_hosts_file", &res.known_hosts_file),
            ] {
                if let Some(v) = value {
                    match resolve_path(&r.file, v) {
                        Ok(p) => {
                            // The key is a secret: read now, so a missing
                            // file is a validation error with file and line.
                            // known_hosts is not: an empty or missing one is
                            // the connection test's HostKeyUnknown.
                            if key == "sftp_key_file"
                                && let Err(msg) = super::desired::SecretRef::File(p.clone()).read()
                            {
                                cx.err(r, object, format!("key_file: {msg}"));
                            }
                            e.options.push((key.into(), p.display().to_string()));
                        }
                        Err(msg) => cx.err(r, object, msg),
                    }
                }
            }
            if let Some(s) = secret(
                cx,
                r,
                object,
                "password",
                res.password_file.as_deref(),
                res.password_env.as_deref(),
                false,
            ) {
                e.credentials.push(("sftp_password".into(), s));
            }
            if res.key_file.is_none() && e.credentials.is_empty() {
                cx.err(
                    r,
                    object,
                    "an SFTP resource needs `key_file` or `password_file`/`password_env`",
                );
                return None;
            }
            Some(e)
        }
        "postgresql" => {
            let host = required(cx, r, object, "a PostgreSQL", "host", &res.host)?;
            let user = required(cx, r, object, "a PostgreSQL", "user", &res.user)?;
            let port = res.port.unwrap_or(5432);
            let db = res.database.as_deref().unwrap_or("");
            let mut e = bare(
                integration,
                protocol,
                format!(
                    "postgresql://{user}@{host}:{port}{}",
                    if db.is_empty() {
                        String::new()
                    } else {
                        format!("/{db}")
                    }
                ),
            );
            e.options.push(("host".into(), host.to_string()));
            e.options.push(("port".into(), port.to_string()));
            e.options.push(("user".into(), user.to_string()));
            if !db.is_empty() {
                e.options.push(("database".into(), db.to_string()));
            }
            if let Some(s) = secret(
                cx,
                r,
                object,
                "password",
                res.password_file.as_deref(),
                res.password_env.as_deref(),
                false,
            ) {
                e.credentials.push(("password".into(), s));
            }
            Some(e)
        }
        _ => Some(bare(integration, protocol, format!("{}:", res.class))),
    }
}

fn s3_endpoint(
    cx: &mut Ctx,
    r: &Located<ResourceTable>,
    object: &str,
    protocol: &'static str,
) -> Option<Endpoint> {
    let res = &r.value;
    let bucket = required(cx, r, object, "an S3", "bucket", &res.bucket)?;
    let prefix = res.prefix.as_deref().unwrap_or("").trim_matches('/');
    let location = if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    };
    let mut e = bare("s3", protocol, location);
    if let Some(v) = &res.endpoint {
        e.options.push(("aws_endpoint".to_string(), v.clone()));
    }
    if let Some(region) = &res.region {
        e.options.push(("aws_region".to_string(), region.clone()));
    }
    if let Some(h) = res.allow_http {
        e.options
            .push(("aws_allow_http".to_string(), h.to_string()));
    }
    for (what, key, file, env) in [
        (
            "access_key_id",
            "aws_access_key_id",
            &res.access_key_id_file,
            &res.access_key_id_env,
        ),
        (
            "secret_access_key",
            "aws_secret_access_key",
            &res.secret_access_key_file,
            &res.secret_access_key_env,
        ),
    ] {
        if let Some(s) = secret(cx, r, object, what, file.as_deref(), env.as_deref(), false) {
            e.credentials.push((key.to_string(), s));
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt<'a>(o: &'a [(String, String)], k: &str) -> Option<&'a str> {
        o.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn postgresql_locations_become_connection_options() {
        let o = postgresql_url("postgresql://app@db1:5433/shop").expect("full");
        assert_eq!(
            (
                opt(&o, "host"),
                opt(&o, "port"),
                opt(&o, "user"),
                opt(&o, "database")
            ),
            (Some("db1"), Some("5433"), Some("app"), Some("shop"))
        );
        let o = postgresql_url("postgres://db1").expect("host only");
        assert_eq!(
            (opt(&o, "port"), opt(&o, "user"), opt(&o, "database")),
            (Some("5432"), Some("postgres"), None)
        );
        let o = postgresql_url("postgresql://u@[::1]:6000").expect("v6");
        assert_eq!(
            (opt(&o, "host"), opt(&o, "port")),
            (Some("::1"), Some("6000"))
        );
        assert!(postgresql_url("postgresql://u@db:x/d").is_err());
        assert!(postgresql_url("postgresql://").is_err());
        assert!(postgresql_url("postgresql://db/a?sslmode=x").is_err());
    }

    #[test]
    fn exec_through_a_resource_keeps_its_command_and_locations_never_hold_passwords() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("a.toml"),
            r#"
[resource.dumper]
class = "command"
subclass = "exec"

[source.dump]
resource = "dumper"
command = ["sh", "-c", "echo hi"]
file = "hi.txt"
"#,
        )
        .expect("write");
        let state =
            crate::config::load_and_validate(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
        let e = &state.sources["dump"].endpoint;
        assert_eq!((e.integration, e.command.len()), ("exec", 3));
        assert_eq!(e.option("file"), Some("hi.txt"));
        std::fs::write(
            dir.path().join("a.toml"),
            "[source.db]\nlocation = \"postgresql://u:secret@db/x\"\nprotocol = \"pg_dump\"\n",
        )
        .expect("write");
        let errors = crate::config::load_and_validate(dir.path()).expect_err("password");
        let text = format!("{errors:?}");
        assert!(
            text.contains("never holds a password") && !text.contains("secret@"),
            "{text}"
        );
    }
}
