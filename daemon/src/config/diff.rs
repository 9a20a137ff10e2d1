//! What applying a desired state changes, object by object: fingerprints of
//! validated objects (where they were declared does not count) compared as
//! added, changed or removed. Used by the reconciler and by `klosetd plan`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::desired::DesiredState;

/// An object's identity: its kind (`store`, `schedule`, …) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// `daemon`, `store`, `source`, `destination`, `schedule` or `task`.
    pub kind: String,
    /// The object's name (`daemon` for the `[daemon]` table).
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == "daemon" {
            f.write_str("daemon")
        } else {
            write!(f, "{}.{}", self.kind, self.name)
        }
    }
}

/// Fingerprints of every object of a configuration.
pub type Fingerprints = BTreeMap<ObjectRef, String>;

/// Hash of an object's validated content without its `origin` (file, line),
/// so moving a table to another file is not a change.
fn fingerprint<T: Serialize>(value: &T) -> String {
    let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    if let Some(map) = json.as_object_mut() {
        map.remove("origin");
    }
    // serde_json maps are sorted (no preserve_order feature): stable text.
    blake3::hash(json.to_string().as_bytes())
        .to_hex()
        .to_string()
}

fn add<'a, T: Serialize + 'a>(
    out: &mut Fingerprints,
    kind: &str,
    objects: impl IntoIterator<Item = (&'a String, &'a T)>,
) {
    for (name, def) in objects {
        out.insert(
            ObjectRef {
                kind: kind.to_string(),
                name: name.clone(),
            },
            fingerprint(def),
        );
    }
}

/// The fingerprints of every object of `state`.
pub fn fingerprints(state: &DesiredState) -> Fingerprints {
    let mut out = Fingerprints::new();
    out.insert(
        ObjectRef {
            kind: "daemon".into(),
            name: "daemon".into(),
        },
        fingerprint(&state.daemon),
    );
    add(&mut out, "store", &state.stores);
    add(&mut out, "source", &state.sources);
    add(&mut out, "destination", &state.destinations);
    add(&mut out, "schedule", &state.schedules);
    add(&mut out, "task", &state.tasks);
    out
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

/// Every change from `current` to `desired`, in object order.
pub fn diff(current: &Fingerprints, desired: &Fingerprints) -> Vec<(ObjectRef, Change)> {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(diff(&before, &fingerprints(&state(d))), vec![]);

        write(
            d,
            "b.toml",
            &sched
                .replace("@daily", "@hourly")
                .replace("nightly", "hourly"),
        );
        write(d, "c.toml", "[daemon]\nmax_concurrent_tasks = 3\n");
        let after = fingerprints(&state(d));
        let changes: Vec<String> = diff(&before, &after)
            .into_iter()
            .map(|(o, c)| format!("{}{o}", c.sign()))
            .collect();
        assert_eq!(
            changes,
            vec!["~daemon", "+schedule.hourly", "-schedule.nightly"]
        );
    }
}
