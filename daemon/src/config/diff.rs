//! What applying a desired state changes, object by object: fingerprints of
//! validated objects (where they were declared does not count) compared as
//! added, changed or removed. Used by the reconciler and by `klosetd plan`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::desired::DesiredState;
use crate::state::ObjectKind;

/// An object's identity: its kind and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectRef {
    /// What kind of object.
    pub kind: ObjectKind,
    /// The object's name (`daemon` for the `[daemon]` table).
    pub name: String,
}

impl ObjectRef {
    /// `kind.name`.
    pub fn new(kind: ObjectKind, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            name: name.into(),
        }
    }
}

// Ordered by kind name, then name, as `klosetd plan` prints them.
impl Ord for ObjectRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.kind.as_str(), &self.name).cmp(&(other.kind.as_str(), &other.name))
    }
}

impl PartialOrd for ObjectRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ObjectKind::Daemon {
            f.write_str("daemon")
        } else {
            write!(f, "{}.{}", self.kind, self.name)
        }
    }
}

/// Fingerprints of every object of a configuration.
pub type Fingerprints = BTreeMap<ObjectRef, String>;

/// Every object's validated definition as JSON, without its `origin`
/// (file, line), so moving a table to another file is not a change. Holds
/// no secret values, only where secrets are read from.
pub type Definitions = BTreeMap<ObjectRef, Value>;

fn definition<T: Serialize>(value: &T) -> Value {
    // Every field serialises (paths lossily), so this cannot fail; a
    // failure would still be visible as a distinct error value.
    let mut json = serde_json::to_value(value)
        .unwrap_or_else(|e| Value::String(format!("unserialisable definition: {e}")));
    if let Some(map) = json.as_object_mut() {
        map.remove("origin");
    }
    json
}

/// Hash of a definition. serde_json maps are sorted (no `preserve_order`
/// feature), so the text is stable.
pub fn fingerprint(definition: &Value) -> String {
    blake3::hash(definition.to_string().as_bytes())
        .to_hex()
        .to_string()
}

fn add<'a, T: Serialize + 'a>(
    out: &mut Definitions,
    kind: ObjectKind,
    objects: impl IntoIterator<Item = (&'a String, &'a T)>,
) {
    for (name, def) in objects {
        out.insert(ObjectRef::new(kind, name.clone()), definition(def));
    }
}

/// The definitions of every object of `state`.
pub fn definitions(state: &DesiredState) -> Definitions {
    let mut out = Definitions::new();
    out.insert(
        ObjectRef::new(ObjectKind::Daemon, "daemon"),
        definition(&state.daemon),
    );
    add(&mut out, ObjectKind::Resource, &state.resources);
    add(&mut out, ObjectKind::Store, &state.stores);
    add(&mut out, ObjectKind::Source, &state.sources);
    add(&mut out, ObjectKind::Destination, &state.destinations);
    add(&mut out, ObjectKind::Schedule, &state.schedules);
    add(&mut out, ObjectKind::Task, &state.tasks);
    add(&mut out, ObjectKind::Notify, &state.notify);
    out
}

/// The fingerprints of every object of `state`.
pub fn fingerprints(state: &DesiredState) -> Fingerprints {
    definitions(state)
        .iter()
        .map(|(o, d)| (o.clone(), fingerprint(d)))
        .collect()
}

/// What differs between two definitions of one object, field by field
/// (`cron: "@daily" -> "@hourly"`), nested fields with dotted names.
pub fn field_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let null = Value::Null;
                walk(
                    &name,
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{prefix}: {} -> {}", short(a), short(b))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(79).collect::<String>())
    } else {
        text
    }
}

/// How one object changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// New in the desired state.
    Added,
    /// Present in both, with different content.
    Changed,
    /// No longer declared.
    Removed,
}

impl Change {
    /// `+`, `~` or `-`, as `klosetd plan` prints it.
    pub fn sign(self) -> char {
        match self {
            Change::Added => '+',
            Change::Changed => '~',
            Change::Removed => '-',
        }
    }
}

/// The changes from one configuration to the next, in object order: the
/// one change list that readiness, schedules and one-shot tasks follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Every object that is added, changed or removed.
    pub changes: Vec<(ObjectRef, Change)>,
}

impl Diff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes of one kind, by name.
    pub fn of(&self, kind: ObjectKind) -> impl Iterator<Item = (&str, Change)> {
        self.changes
            .iter()
            .filter(move |(o, _)| o.kind == kind)
            .map(|(o, c)| (o.name.as_str(), *c))
    }

    /// `+store.a ~schedule.b -task.c`, as the log shows it.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .changes
            .iter()
            .map(|(o, c)| format!("{}{o}", c.sign()))
            .collect();
        parts.join(" ")
    }
}

/// Every change from `current` to `desired`, in object order.
pub fn diff(current: &Fingerprints, desired: &Fingerprints) -> Diff {
    let mut out = Vec::new();
    for (object, print) in desired {
        match current.get(object) {
            None => out.push((object.clone(), Change::Added)),
            Some(old) if old != print => out.push((object.clone(), Change::Changed)),
            Some(_) => {}
        }
    }
    for object in current.keys() {
        if !desired.contains_key(object) {
            out.push((object.clone(), Change::Removed));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Diff { changes: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_are_not_utf8_still_give_distinct_definitions() {
        use std::os::unix::ffi::OsStrExt;
        let a = crate::config::desired::SecretRef::File(std::path::PathBuf::from(
            std::ffi::OsStr::from_bytes(b"/run/creds/caf\xe9"),
        ));
        let b = crate::config::desired::SecretRef::File("/run/creds/other".into());
        let (da, db) = (definition(&a), definition(&b));
        assert_eq!(da["file"], "/run/creds/caf\u{fffd}");
        assert_ne!(fingerprint(&da), fingerprint(&db));
    }

    fn state(dir: &std::path::Path) -> DesiredState {
        crate::config::load_and_validate(dir).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn moving_a_table_is_no_change_and_edits_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "pass", "secret\n");
        std::fs::create_dir(d.join("data")).expect("mkdir");
        let store = "[store.s]\nlocation = \"store\"\npassphrase_file = \"pass\"\n";
        let source = "[source.data]\nlocation = \"data\"\n";
        let sched = "[schedule.nightly]\ntask = \"backup\"\nsource = \"data\"\nstore = \"s\"\ncron = \"@daily\"\n";
        write(d, "a.toml", &format!("{store}{source}{sched}"));
        let before = fingerprints(&state(d));

        std::fs::remove_file(d.join("a.toml")).expect("rm");
        write(d, "a.toml", &format!("{store}{source}"));
        write(d, "b.toml", &format!("# moved\n\n{sched}"));
        assert!(diff(&before, &fingerprints(&state(d))).is_empty());

        write(
            d,
            "b.toml",
            &sched
                .replace("@daily", "@hourly")
                .replace("nightly", "hourly"),
        );
        write(d, "c.toml", "[daemon]\nmax_concurrent_tasks = 3\n");
        let after = fingerprints(&state(d));
        assert_eq!(
            diff(&before, &after).summary(),
            "~daemon +schedule.hourly -schedule.nightly"
        );
        let daemon = ObjectRef::new(ObjectKind::Daemon, "daemon");
        let (old, new) = (definitions(&state(d)), {
            std::fs::remove_file(d.join("c.toml")).expect("rm");
            definitions(&state(d))
        });
        assert_eq!(
            field_changes(&new[&daemon], &old[&daemon]),
            vec!["max_concurrent_tasks: 2 -> 3"]
        );
    }
}
