//! The declarative configuration in three stages: the serde model of one
//! file (`model`), the directory loaded and merged with file:line for every
//! object (`load`), and the validated desired state (`validate` →
//! `desired`). Config types never hold connections.

mod action;
pub mod desired;
pub mod diff;
mod endpoint;
pub mod error;
pub mod load;
pub mod model;
pub mod notify;
mod places;
pub mod retention;
pub mod validate;

pub use desired::DesiredState;
pub use error::ConfigError;

use std::path::Path;

/// Loads and validates a config directory: the desired state, or every error.
pub fn load_and_validate(dir: &Path) -> Result<DesiredState, Vec<ConfigError>> {
    attempt(dir).result
}

/// One attempt to load a config directory, as the reconciler records it.
#[derive(Debug)]
pub struct Attempt {
    /// Content hash of the files read, even when they are invalid; `None`
    /// when the directory cannot be listed.
    pub revision: Option<String>,
    /// The validated desired state, or every error with file and line.
    pub result: Result<DesiredState, Vec<ConfigError>>,
    /// The `[daemon]` settings to start with when the directory is invalid:
    /// its `[daemon]` table if that one is valid, else the defaults.
    pub fallback_daemon: desired::DaemonSettings,
}

/// Loads and validates a config directory, keeping the revision of an
/// invalid one.
pub fn attempt(dir: &Path) -> Attempt {
    // Absolute, so relative paths in the files resolve the same whatever
    // the working directory (symlinks are kept, never resolved).
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let loaded = load::load_dir_partial(&dir);
    let fallback_daemon = validate::daemon_settings_or_default(&loaded.raw);
    let result = if loaded.errors.is_empty() {
        validate::validate(&loaded.raw)
    } else {
        Err(loaded.errors)
    };
    Attempt {
        revision: loaded.revision,
        result,
        fallback_daemon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_path(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    #[test]
    fn every_invalid_config_fails_with_its_expected_errors() {
        let root = repo_path("tests/config/invalid");
        let mut cases: Vec<_> = std::fs::read_dir(&root)
            .expect("invalid configs")
            .map(|e| e.expect("entry").path())
            .collect();
        cases.sort();
        assert!(cases.len() >= 10, "{cases:?}");
        for case in cases {
            let expected = std::fs::read_to_string(case.join("expected")).expect("expected file");
            let errors = match load_and_validate(&case) {
                Ok(_) => panic!("{} must be invalid", case.display()),
                Err(e) => e,
            };
            let text = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            for line in expected.lines().filter(|l| !l.is_empty()) {
                assert!(
                    text.contains(line),
                    "{}: expected {line:?} in:\n{text}",
                    case.display()
                );
            }
        }
    }

    #[test]
    fn a_comment_only_file_declares_nothing_validly() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("00-empty.toml"), "# nothing yet\n").expect("write");
        let state = load_and_validate(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(state.schedules.is_empty() && state.stores.is_empty());
    }

    #[test]
    fn the_reference_config_declares_every_table_and_is_valid() {
        let dir = repo_path("docs/reference.d");
        let state = load_and_validate(&dir).unwrap_or_else(|e| panic!("{e:?}"));
        let raw = load::load_dir(&dir).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(raw.daemon.is_some());
        assert!(!raw.resources.is_empty());
        let kinds: std::collections::BTreeSet<&str> =
            state.notify.values().map(|n| n.kind.as_str()).collect();
        assert_eq!(kinds.len(), 4, "every notification kind: {kinds:?}");
        assert!(!state.stores.is_empty() && !state.sources.is_empty());
        assert!(!state.destinations.is_empty() && !state.tasks.is_empty());
        let kinds: std::collections::BTreeSet<&str> = state
            .schedules
            .values()
            .map(|s| s.action.kind().as_str())
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["backup", "check", "prune", "restore", "sync"]
        );
        // Every integration appears in every role it provides.
        for i in crate::integrations::REGISTRY {
            for role in i.roles() {
                let used = match role {
                    crate::integrations::Role::Source => state
                        .sources
                        .values()
                        .any(|s| s.endpoint.integration == i.name()),
                    crate::integrations::Role::Destination => state
                        .destinations
                        .values()
                        .any(|d| d.endpoint.integration == i.name()),
                    crate::integrations::Role::Store => state
                        .stores
                        .values()
                        .any(|s| s.endpoint.integration == i.name()),
                };
                assert!(used, "docs/reference.d lacks {} as a {role:?}", i.name());
            }
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let state =
            load_and_validate(&repo_path("config.example.d")).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(state.stores.len(), 1);
        assert_eq!(state.schedules.len(), 2);
        assert_eq!(state.tasks.len(), 1);
        assert_eq!(
            state.daemon.listen,
            desired::Listen::Tcp("127.0.0.1:9180".parse().expect("addr"))
        );
        assert!(
            state.stores["local"]
                .endpoint
                .location
                .ends_with(".klosetd/store")
        );
    }
}
