//! Reading the config directory: which files count, in which order, parsed
//! into the serde model, merged into one set of named objects.
//!
//! Every `*.toml` file is read in lexical (byte) order. Hidden files, editor
//! backups and temp files (`.*`, `*~`, `*.swp`, `*.tmp`, `#*#`) are ignored,
//! so an editor or Ansible's temp file never half-applies. A name is declared
//! once across all files. All errors are collected, each with file and line.
//! The revision is a BLAKE3 hash of the names and contents of the files read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, line_of};
use super::model::*;

/// A value with the file and line that declared it.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// The declaring file.
    pub file: PathBuf,
    /// 1-based line of its table header.
    pub line: usize,
    /// BLAKE3 (hex) of the object's table as written, canonicalised: equal
    /// content gives an equal hash whatever the formatting.
    pub hash: String,
    /// 1-based line of each key of its table, for errors about one key.
    pub key_lines: BTreeMap<String, usize>,
}

impl<T> Located<T> {
    /// The line of `key` in the table, or the table's own line.
    pub fn line_of_key(&self, key: &str) -> usize {
        self.key_lines.get(key).copied().unwrap_or(self.line)
    }
}

/// Every object of the directory, merged, not yet validated.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    /// The directory.
    pub dir: PathBuf,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Content hash of the files read (hex).
    pub revision: String,
    /// `[daemon]`.
    pub daemon: Option<Located<DaemonTable>>,
    /// `[resource.*]`.
    pub resources: BTreeMap<String, Located<ResourceTable>>,
    /// `[store.*]`.
    pub stores: BTreeMap<String, Located<StoreTable>>,
    /// `[source.*]`.
    pub sources: BTreeMap<String, Located<SourceTable>>,
    /// `[destination.*]`.
    pub destinations: BTreeMap<String, Located<DestinationTable>>,
    /// `[schedule.*]`.
    pub schedules: BTreeMap<String, Located<TaskTable>>,
    /// `[task.*]`.
    pub tasks: BTreeMap<String, Located<TaskTable>>,
    /// `[notify.*]`.
    pub notify: BTreeMap<String, Located<NotifyTable>>,
}

/// Whether a directory entry is a config file.
pub fn is_config_file(name: &str) -> bool {
    name.ends_with(".toml")
        && !name.starts_with('.')
        && !name.starts_with('#')
        && !name.ends_with('~')
        && !name.ends_with(".swp")
        && !name.ends_with(".tmp")
}

/// Lists the config files of `dir` in the order they are merged.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::general(format!(
            "cannot read config directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            ConfigError::general(format!(
                "cannot read config directory {}: {e}",
                dir.display()
            ))
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Follow symlinks (Nix links every file into the store).
        if is_config_file(name) && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Reads, parses and merges the directory. Returns every error found.
pub fn load_dir(dir: &Path) -> Result<RawConfig, Vec<ConfigError>> {
    let loaded = load_dir_partial(dir);
    if loaded.errors.is_empty() {
        Ok(loaded.raw)
    } else {
        Err(loaded.errors)
    }
}

/// A directory read even when it has errors.
#[derive(Debug)]
pub struct Loaded {
    /// Content hash of the files read, even when they are invalid; `None`
    /// only when the directory cannot be listed.
    pub revision: Option<String>,
    /// Whatever parsed and merged (complete only without errors).
    pub raw: RawConfig,
    /// Every error found.
    pub errors: Vec<ConfigError>,
}

/// Like [`load_dir`], keeping the revision and what could be read of an
/// invalid directory.
pub fn load_dir_partial(dir: &Path) -> Loaded {
    let files = match config_files(dir) {
        Ok(files) if files.is_empty() => {
            // An empty directory is far more often a directory being
            // replaced (or a failed deploy) than a wish to stop every
            // backup: refuse it, so the last good configuration keeps
            // running. A file with only comments declares "nothing".
            return Loaded {
                revision: None,
                raw: RawConfig {
                    dir: dir.to_path_buf(),
                    ..Default::default()
                },
                errors: vec![ConfigError::general(format!(
                    "{} holds no *.toml file; to run with nothing declared, add an empty one                      (e.g. 00-empty.toml)",
                    dir.display()
                ))],
            };
        }
        Ok(files) => files,
        Err(e) => {
            return Loaded {
                revision: None,
                raw: RawConfig {
                    dir: dir.to_path_buf(),
                    ..Default::default()
                },
                errors: vec![e],
            };
        }
    };
    let mut raw = RawConfig {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let mut hasher = blake3::Hasher::new();
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError {
                    file: Some(path.clone()),
                    line: None,
                    object: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
        match toml::from_str::<FileModel>(&text) {
            Ok(model) => {
                let values = toml::from_str::<toml::Table>(&text).unwrap_or_default();
                merge(&mut raw, model, &values, path, &text, &mut errors)
            }
            Err(e) => errors.push(ConfigError {
                file: Some(path.clone()),
                line: e.span().map(|s| line_of(&text, s.start)),
                object: None,
                message: e.message().trim().to_string(),
            }),
        }
        raw.files.push(path.clone());
    }
    raw.revision = hasher.finalize().to_hex().to_string();
    Loaded {
        revision: Some(raw.revision.clone()),
        raw,
        errors,
    }
}

fn merge(
    raw: &mut RawConfig,
    model: FileModel,
    values: &toml::Table,
    path: &Path,
    text: &str,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(d) = model.daemon {
        let line = line_of(text, d.span().start);
        match &raw.daemon {
            Some(prev) => errors.push(ConfigError::at(
                path,
                line,
                Some("daemon".into()),
                format!(
                    "[daemon] is declared again (first at {}:{})",
                    prev.file.display(),
                    prev.line
                ),
            )),
            None => {
                raw.daemon = Some(Located {
                    value: d.into_inner(),
                    file: path.to_path_buf(),
                    line,
                    hash: content_hash(values.get("daemon")),
                    key_lines: BTreeMap::new(),
                })
            }
        }
    }
    insert_all(
        &mut raw.resources,
        "resource",
        model.resource,
        values,
        path,
        text,
        errors,
    );
    insert_all(
        &mut raw.stores,
        "store",
        model.store,
        values,
        path,
        text,
        errors,
    );
    insert_all(
        &mut raw.sources,
        "source",
        model.source,
        values,
        path,
        text,
        errors,
    );
    insert_all(
        &mut raw.destinations,
        "destination",
        model.destination,
        values,
        path,
        text,
        errors,
    );
    insert_all(
        &mut raw.schedules,
        "schedule",
        model.schedule,
        values,
        path,
        text,
        errors,
    );
    insert_all(
        &mut raw.tasks,
        "task",
        model.task,
        values,
        path,
        text,
        errors,
    );
    insert_all(
        &mut raw.notify,
        "notify",
        model.notify,
        values,
        path,
        text,
        errors,
    );
}

fn insert_all<T>(
    into: &mut BTreeMap<String, Located<T>>,
    table: &str,
    items: BTreeMap<String, Spanned<T>>,
    values: &toml::Table,
    path: &Path,
    text: &str,
    errors: &mut Vec<ConfigError>,
) {
    for (name, item) in items {
        // The span covers the table's body; its header is the line before
        // the first key, or the table line itself for inline tables.
        let line = header_line(text, item.span().start, table, &name);
        if let Some(prev) = into.get(&name) {
            errors.push(ConfigError::at(
                path,
                line,
                Some(format!("{table}.{name}")),
                format!(
                    "{table}.{name} is already declared at {}:{}",
                    prev.file.display(),
                    prev.line
                ),
            ));
            continue;
        }
        let hash = content_hash(values.get(table).and_then(|t| t.get(&name)));
        let key_lines = key_lines(text, table, &name);
        into.insert(
            name,
            Located {
                value: item.into_inner(),
                file: path.to_path_buf(),
                line,
                hash,
                key_lines,
            },
        );
    }
}

/// The line of each key of `[table.name]` in `text`.
fn key_lines(text: &str, table: &str, name: &str) -> BTreeMap<String, usize> {
    use toml::de::{DeTable, DeValue};
    let Ok(doc) = DeTable::parse(text) else {
        return BTreeMap::new();
    };
    fn find<'i>(t: &DeTable<'i>, key: &str) -> Option<DeValue<'i>> {
        t.iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v.get_ref().clone())
    }
    let Some(DeValue::Table(group)) = find(doc.get_ref(), table) else {
        return BTreeMap::new();
    };
    let Some(DeValue::Table(object)) = find(&group, name) else {
        return BTreeMap::new();
    };
    object
        .iter()
        .map(|(k, _)| (k.get_ref().to_string(), line_of(text, k.span().start)))
        .collect()
}

/// Hashes a TOML value through its canonical JSON form (keys sorted).
fn content_hash(value: Option<&toml::Value>) -> String {
    let json = value
        .and_then(|v| serde_json::to_string(v).ok())
        .unwrap_or_default();
    blake3::hash(json.as_bytes()).to_hex().to_string()
}

/// Finds the line of `[table.name]` at or before `offset`, falling back to
/// the line of `offset`.
fn header_line(text: &str, offset: usize, table: &str, name: &str) -> usize {
    let header = format!("[{table}.{name}]");
    let quoted = format!("[{table}.\"{name}\"]");
    let upto = &text[..offset.min(text.len())];
    match upto.rfind(&header).or_else(|| upto.rfind(&quoted)) {
        Some(at) => line_of(text, at),
        None => line_of(text, offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        for (n, t) in files {
            std::fs::write(d.path().join(n), t).expect("write");
        }
        d
    }

    #[test]
    fn ignores_temp_and_hidden_files_and_sorts() {
        for (name, counts) in [
            ("a.toml", true),
            (".a.toml", false),
            ("a.toml~", false),
            ("a.toml.swp", false),
            ("#a.toml#", false),
            ("a.tmp", false),
            ("a.toml.tmp", false),
            ("a.txt", false),
        ] {
            assert_eq!(is_config_file(name), counts, "{name}");
        }
        let d = dir_with(&[
            ("20-b.toml", ""),
            ("10-a.toml", ""),
            (".10-a.toml.swp", "garbage ["),
        ]);
        let files = config_files(d.path()).expect("files");
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().expect("n").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a.toml", "20-b.toml"]);
    }

    #[test]
    fn merges_and_rejects_duplicates_with_both_places() {
        let d = dir_with(&[
            ("a.toml", "[store.main]\nlocation = \"/x\"\n"),
            ("b.toml", "\n\n[store.main]\nlocation = \"/y\"\n"),
        ]);
        let errs = load_dir(d.path()).expect_err("duplicate");
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.contains("b.toml:3: store.main: store.main is already declared at"),
            "{msg}"
        );
        assert!(msg.contains("a.toml:1"), "{msg}");
    }

    #[test]
    fn syntax_and_unknown_keys_have_lines() {
        let d = dir_with(&[
            (
                "a.toml",
                "[schedule.main]\ntask = \"check\"\nstoer = \"typo\"\n",
            ),
            ("b.toml", "[schedule.x]\ntask = \"backup\"\ncron = \n"),
        ]);
        let errs = load_dir(d.path()).expect_err("errors");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, Some(3), "{}", errs[0]);
        assert!(errs[0].message.contains("stoer"), "{}", errs[0]);
        assert!(errs[1].file.as_ref().is_some_and(|f| f.ends_with("b.toml")));
        assert_eq!(errs[1].line, Some(3), "{}", errs[1]);
    }

    #[test]
    fn revision_tracks_content() {
        let d = dir_with(&[("a.toml", "[store.main]\nlocation = \"/x\"\n")]);
        let r1 = load_dir(d.path()).expect("ok").revision;
        assert_eq!(load_dir(d.path()).expect("ok").revision, r1);
        std::fs::write(d.path().join("a.toml"), "[store.main]\nlocation = \"/y\"\n")
            .expect("write");
        assert_ne!(load_dir(d.path()).expect("ok").revision, r1);
        let raw = load_dir(d.path()).expect("ok");
        assert_eq!(raw.stores["main"].line, 1);
        // The object hash ignores formatting and sees content.
        std::fs::write(
            d.path().join("a.toml"),
            "# comment\n[store.main]\n  location   =   \"/y\"\n",
        )
        .expect("write");
        let again = load_dir(d.path()).expect("ok");
        assert_eq!(again.stores["main"].hash, raw.stores["main"].hash);
        assert_ne!(again.revision, raw.revision);
    }
}
