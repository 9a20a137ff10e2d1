//! Validation: the merged raw config becomes the desired state, or every
//! error found, each with file and line. Checks names, references, per-task
//! keys, locations and integrations, cron, time zones, durations, and that
//! secrets can be read (without ever showing them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::action::action;
use super::desired::*;
use super::endpoint::{Wanted, endpoint};
use super::error::ConfigError;
use super::load::{Located, RawConfig};
use crate::integrations::Role;

/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9180";
/// Default state directory (systemd's `StateDirectory=` overrides it).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/klosetd";
/// Default bound on tasks running at once.
pub const DEFAULT_MAX_CONCURRENT_TASKS: u32 = 2;

pub(super) struct Ctx {
    pub(super) errors: Vec<ConfigError>,
}

impl Ctx {
    /// An error at `line` of `at`'s file.
    pub(super) fn err_at<T>(
        &mut self,
        at: &Located<T>,
        line: usize,
        object: &str,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError::at(
            &at.file,
            line,
            Some(object.to_string()),
            message,
        ));
    }

    pub(super) fn err<T>(&mut self, at: &Located<T>, object: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::at(
            &at.file,
            at.line,
            Some(object.to_string()),
            message,
        ));
    }
}

pub(super) fn origin<T>(l: &Located<T>) -> Declaration {
    Declaration {
        file: l.file.clone(),
        line: l.line,
        hash: l.hash.clone(),
    }
}

/// Whether a name can be used in URLs, metrics labels and file names.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub use crate::integrations::resolve_path;

/// Validates a loaded directory into the desired state.
pub fn validate(raw: &RawConfig) -> Result<DesiredState, Vec<ConfigError>> {
    let mut cx = Ctx { errors: Vec::new() };
    let daemon = daemon_settings(&mut cx, raw);
    for (table, names) in [
        ("resource", raw.resources.keys().collect::<Vec<_>>()),
        ("store", raw.stores.keys().collect()),
        ("source", raw.sources.keys().collect()),
        ("destination", raw.destinations.keys().collect()),
        ("schedule", raw.schedules.keys().collect()),
        ("task", raw.tasks.keys().collect()),
        ("notify", raw.notify.keys().collect()),
    ] {
        for name in names {
            if !valid_name(name) {
                let (file, line) = locate(raw, table, name);
                cx.errors.push(ConfigError::at(
                    file,
                    line,
                    Some(format!("{table}.{name}")),
                    "names are 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
                ));
            }
        }
    }
    let notify = super::notify::channels(&mut cx, raw);
    super::notify::check_default(&mut cx, raw);
    let mut stores = BTreeMap::new();
    for (name, l) in &raw.stores {
        let object = format!("store.{name}");
        let s = &l.value;
        let endpoint = endpoint(
            &mut cx,
            raw,
            l,
            &object,
            Wanted {
                role: Role::Store,
                name,
                resource: s.resource.as_deref(),
                location: s.location.as_deref(),
                integration: s.integration.as_deref(),
                protocol: s.protocol.as_deref(),
                placement: &s.placement,
            },
        );
        let passphrase = secret(
            &mut cx,
            l,
            &object,
            "passphrase",
            s.passphrase_file.as_deref(),
            s.passphrase_env.as_deref(),
            true,
        );
        if let (Some(endpoint), Some(passphrase)) = (endpoint, passphrase) {
            stores.insert(
                name.clone(),
                StoreDef {
                    name: name.clone(),
                    endpoint,
                    storage_type: s.storage_type.unwrap_or_default(),
                    init: s.init.unwrap_or_default(),
                    passphrase,
                    origin: origin(l),
                },
            );
        }
    }
    let mut sources = BTreeMap::new();
    for (name, l) in &raw.sources {
        let object = format!("source.{name}");
        let s = &l.value;
        for pattern in &s.excludes {
            if let Err(e) = globset::Glob::new(pattern) {
                cx.err(l, &object, format!("bad exclude pattern {pattern:?}: {e}"));
            }
        }
        let hooks = [("pre", &s.pre), ("post", &s.post)].map(|(key, hook)| match hook {
            Some(argv) if argv.is_empty() || argv[0].is_empty() => {
                cx.err(
                    l,
                    &object,
                    format!("`{key}` is a command as argv: [\"program\", \"arg\", …]"),
                );
                Vec::new()
            }
            Some(argv) => argv.clone(),
            None => Vec::new(),
        });
        if let Some(endpoint) = endpoint(
            &mut cx,
            raw,
            l,
            &object,
            Wanted {
                role: Role::Source,
                name,
                resource: s.resource.as_deref(),
                location: s.location.as_deref(),
                integration: s.integration.as_deref(),
                protocol: s.protocol.as_deref(),
                placement: &s.placement,
            },
        ) {
            let [pre, post] = hooks;
            sources.insert(
                name.clone(),
                SourceDef {
                    name: name.clone(),
                    endpoint,
                    excludes: s.excludes.clone(),
                    pre,
                    post,
                    origin: origin(l),
                },
            );
        }
    }
    let mut destinations = BTreeMap::new();
    for (name, l) in &raw.destinations {
        let object = format!("destination.{name}");
        let d = &l.value;
        if let Some(endpoint) = endpoint(
            &mut cx,
            raw,
            l,
            &object,
            Wanted {
                role: Role::Destination,
                name,
                resource: d.resource.as_deref(),
                location: d.location.as_deref(),
                integration: d.integration.as_deref(),
                protocol: d.protocol.as_deref(),
                placement: &d.placement,
            },
        ) {
            destinations.insert(
                name.clone(),
                DestinationDef {
                    name: name.clone(),
                    endpoint,
                    origin: origin(l),
                },
            );
        }
    }
    let mut schedules = BTreeMap::new();
    for (name, l) in &raw.schedules {
        let object = format!("schedule.{name}");
        let t = &l.value;
        let action = action(&mut cx, raw, l, &object);
        let cron = match &t.cron {
            None => {
                cx.err(
                    l,
                    &object,
                    "a schedule needs `cron` (a one-shot task is declared as [task.NAME])",
                );
                None
            }
            Some(text) => match crate::scheduler::CronSpec::parse(text) {
                Ok(spec) => Some(spec),
                Err(e) => {
                    cx.err(l, &object, format!("cron: {e}"));
                    None
                }
            },
        };
        let timezone = t.timezone.clone().unwrap_or_else(|| "UTC".into());
        let zone = match timezone.parse::<chrono_tz::Tz>() {
            Ok(zone) => Some(zone),
            Err(_) => {
                cx.err(l, &object, format!("unknown time zone {timezone:?} (use an IANA name such as \"Europe/Paris\" or \"UTC\")"));
                None
            }
        };
        let jitter = match &t.jitter {
            None => Some(Duration::ZERO),
            Some(j) => parse_duration(&mut cx, l, &object, "jitter", j),
        };
        let alert_after = match &t.alert_after {
            None => Some(None),
            Some(text) => match parse_duration(&mut cx, l, &object, "alert_after", text) {
                Some(d) if d.is_zero() => {
                    cx.err(l, &object, "alert_after must be more than zero");
                    None
                }
                d => d.map(Some),
            },
        };
        let channels = super::notify::references(&mut cx, raw, l, &object, t.notify.as_ref());
        if let (Some(action), Some(cron), Some(zone), Some(jitter), Some(alert_after)) =
            (action, cron, zone, jitter, alert_after)
        {
            let catch_up = t.catch_up.unwrap_or(false);
            schedules.insert(
                name.clone(),
                ScheduleDef {
                    name: name.clone(),
                    action,
                    cron: cron.as_str().to_string(),
                    timezone,
                    jitter,
                    catch_up,
                    notify: channels,
                    alert_after,
                    spec: crate::scheduler::ScheduleSpec {
                        name: name.clone(),
                        cron,
                        timezone: zone,
                        jitter,
                        catch_up,
                    },
                    origin: origin(l),
                },
            );
        }
    }
    let mut tasks = BTreeMap::new();
    for (name, l) in &raw.tasks {
        let object = format!("task.{name}");
        let t = &l.value;
        for (key, set) in [
            ("cron", t.cron.is_some()),
            ("timezone", t.timezone.is_some()),
            ("jitter", t.jitter.is_some()),
            ("catch_up", t.catch_up.is_some()),
            ("alert_after", t.alert_after.is_some()),
        ] {
            if set {
                cx.err(
                    l,
                    &object,
                    format!("`{key}` belongs to schedules; a [task.NAME] runs once"),
                );
            }
        }
        let channels = super::notify::references(&mut cx, raw, l, &object, t.notify.as_ref());
        if let Some(action) = action(&mut cx, raw, l, &object) {
            tasks.insert(
                name.clone(),
                OneShotDef {
                    name: name.clone(),
                    action,
                    notify: channels,
                    origin: origin(l),
                },
            );
        }
    }
    let (clashes, warnings) = super::places::check(&stores, &sources, &destinations);
    cx.errors.extend(clashes);
    if !cx.errors.is_empty() {
        cx.errors
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(cx.errors);
    }
    Ok(DesiredState {
        revision: raw.revision.clone(),
        dir: raw.dir.clone(),
        daemon,
        resources: raw
            .resources
            .iter()
            .map(|(name, l)| (name.clone(), resource_def(name, l)))
            .collect(),
        stores,
        sources,
        destinations,
        schedules,
        tasks,
        notify,
        warnings,
    })
}

/// A resource as status shows it: its set fields, and its credentials by
/// where they come from.
fn resource_def(name: &str, l: &Located<super::model::ResourceTable>) -> ResourceDef {
    let r = &l.value;
    let mut fields = BTreeMap::new();
    let mut credentials = BTreeMap::new();
    for (key, value) in &r.connection {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // `password_file`, `secret_access_key_env`: a credential by where
        // it is read from. `key_file` and `known_hosts_file` name files
        // that are shown as they are.
        let credential = CREDENTIALS.iter().find_map(|c| {
            if *key == format!("{c}_file") {
                let path = resolve_path(&l.file, &text).unwrap_or_else(|_| PathBuf::from(&text));
                Some((c, SecretRef::File(path)))
            } else if *key == format!("{c}_env") {
                Some((c, SecretRef::Env(text.clone())))
            } else {
                None
            }
        });
        match credential {
            Some((c, secret)) => {
                credentials.insert(c.to_string(), secret);
            }
            None => {
                fields.insert(key.clone(), text);
            }
        }
    }
    ResourceDef {
        name: name.to_string(),
        class: r.class.clone(),
        subclass: r.subclass.clone(),
        fields,
        credentials,
        origin: origin(l),
    }
}

/// Resource keys `NAME_file` / `NAME_env` that hold credentials.
const CREDENTIALS: &[&str] = &[
    "password",
    "access_key_id",
    "secret_access_key",
    "account_key",
    "sas_token",
];

fn locate(raw: &RawConfig, table: &str, name: &str) -> (PathBuf, usize) {
    let found = match table {
        "resource" => raw.resources.get(name).map(|l| (l.file.clone(), l.line)),
        "store" => raw.stores.get(name).map(|l| (l.file.clone(), l.line)),
        "source" => raw.sources.get(name).map(|l| (l.file.clone(), l.line)),
        "destination" => raw.destinations.get(name).map(|l| (l.file.clone(), l.line)),
        "schedule" => raw.schedules.get(name).map(|l| (l.file.clone(), l.line)),
        "notify" => raw.notify.get(name).map(|l| (l.file.clone(), l.line)),
        _ => raw.tasks.get(name).map(|l| (l.file.clone(), l.line)),
    };
    found.unwrap_or_else(|| (raw.dir.clone(), 0))
}

/// The `[daemon]` settings of a (possibly otherwise invalid) raw config:
/// the table's own if it is valid, else the defaults.
pub fn daemon_settings_or_default(raw: &RawConfig) -> DaemonSettings {
    let mut cx = Ctx { errors: Vec::new() };
    let settings = daemon_settings(&mut cx, raw);
    if cx.errors.is_empty() {
        settings
    } else {
        daemon_settings(&mut cx, &RawConfig::default())
    }
}

fn daemon_settings(cx: &mut Ctx, raw: &RawConfig) -> DaemonSettings {
    let default_state = std::env::var_os("STATE_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let Some(l) = &raw.daemon else {
        return DaemonSettings {
            listen: parse_listen(DEFAULT_LISTEN).unwrap_or(Listen::Unix(PathBuf::new())),
            state_dir: default_state,
            max_concurrent_tasks: DEFAULT_MAX_CONCURRENT_TASKS,
            token_file: None,
        };
    };
    let d = &l.value;
    let listen = match parse_listen(d.listen.as_deref().unwrap_or(DEFAULT_LISTEN)) {
        Ok(x) => x,
        Err(e) => {
            cx.err(l, "daemon", e);
            Listen::Unix(PathBuf::new())
        }
    };
    let state_dir = match &d.state_dir {
        None => default_state,
        Some(s) => resolve_path(&l.file, s).unwrap_or_else(|e| {
            cx.err(l, "daemon", e);
            PathBuf::new()
        }),
    };
    let max = d
        .max_concurrent_tasks
        .unwrap_or(DEFAULT_MAX_CONCURRENT_TASKS);
    if max == 0 {
        cx.err(l, "daemon", "max_concurrent_tasks must be at least 1");
    }
    let token_file = d
        .token_file
        .as_ref()
        .and_then(|t| match resolve_path(&l.file, t) {
            Ok(p) => {
                if let Err(e) = SecretRef::File(p.clone()).read() {
                    cx.err(l, "daemon", format!("token_file: {e}"));
                }
                Some(p)
            }
            Err(e) => {
                cx.err(l, "daemon", e);
                None
            }
        });
    DaemonSettings {
        listen,
        state_dir,
        max_concurrent_tasks: max,
        token_file,
    }
}

/// Parses `HOST:PORT` or `unix:/path`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if !Path::new(path).is_absolute() {
            return Err(format!(
                "listen = {s:?}: a unix socket path must be absolute"
            ));
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    s.parse().map(Listen::Tcp).map_err(|_| {
        format!("listen = {s:?} is neither HOST:PORT (e.g. 127.0.0.1:9180) nor unix:/path")
    })
}

pub(super) fn parse_duration<T>(
    cx: &mut Ctx,
    l: &Located<T>,
    object: &str,
    key: &str,
    text: &str,
) -> Option<Duration> {
    match humantime::parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(
                l,
                object,
                format!("{key} = {text:?}: {e} (write e.g. \"90s\", \"5m\", \"2h\")"),
            );
            None
        }
    }
}

pub(super) fn secret<T>(
    cx: &mut Ctx,
    l: &Located<T>,
    object: &str,
    what: &str,
    file: Option<&str>,
    env: Option<&str>,
    required: bool,
) -> Option<SecretRef> {
    match crate::integrations::secret::secret(&l.file, what, file, env, required) {
        Ok(s) => s,
        Err(e) => {
            cx.err(l, object, e);
            None
        }
    }
}
