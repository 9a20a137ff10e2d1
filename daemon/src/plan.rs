//! `klosetd plan DIR`: what applying DIR would add, change or remove,
//! object by object and field by field, compared with the configuration a
//! daemon has applied (read from its state database, read-only) or with
//! nothing when there is none.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::config::ConfigError;
use crate::config::diff::{Change, ObjectRef, definitions, diff, field_changes, fingerprint};
use crate::state::{DB_FILE_NAME, StateDb};
use crate::status::short;

/// One planned change.
#[derive(Debug, Serialize)]
pub struct PlannedChange {
    /// `store.offsite`, `schedule.nightly`, `daemon`.
    pub object: String,
    /// Added, changed or removed.
    pub change: Change,
    /// For a change: `field: old -> new` lines.
    pub fields: Vec<String>,
}

/// The plan.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The directory planned.
    pub dir: PathBuf,
    /// Its revision.
    pub revision: String,
    /// The state database compared with.
    pub state_db: PathBuf,
    /// The applied revision found there, if any.
    pub applied_revision: Option<String>,
    /// Why nothing was compared (no database, nothing applied yet).
    pub note: Option<String>,
    /// The changes, in object order.
    pub changes: Vec<PlannedChange>,
}

/// Why planning failed.
#[derive(Debug)]
pub enum PlanError {
    /// The directory is invalid: every error.
    Invalid(Vec<ConfigError>),
    /// The state database could not be read.
    State(String),
}

/// Plans `dir` against the state in `state_dir` (default: the `state_dir`
/// that `dir` itself declares, which is the running daemon's).
pub fn plan(dir: &Path, state_dir: Option<&Path>) -> Result<Plan, PlanError> {
    let desired = crate::config::load_and_validate(dir).map_err(PlanError::Invalid)?;
    let state_db = state_dir
        .map_or_else(|| desired.daemon.state_dir.clone(), Path::to_path_buf)
        .join(DB_FILE_NAME);
    let (applied, applied_revision, note) = applied_state(&state_db)?;
    let new = definitions(&desired);
    let old_prints = applied
        .iter()
        .map(|(o, (print, _))| (o.clone(), print.clone()))
        .collect();
    let new_prints = new
        .iter()
        .map(|(o, d)| (o.clone(), fingerprint(d)))
        .collect();
    let changes = diff(&old_prints, &new_prints)
        .changes
        .into_iter()
        .map(|(object, change)| {
            let fields = match (change, applied.get(&object), new.get(&object)) {
                (Change::Changed, Some((_, old)), Some(new)) => field_changes(old, new),
                _ => Vec::new(),
            };
            PlannedChange {
                object: object.to_string(),
                change,
                fields,
            }
        })
        .collect();
    Ok(Plan {
        dir: dir.to_path_buf(),
        revision: desired.revision,
        state_db,
        applied_revision,
        note,
        changes,
    })
}

type Applied = BTreeMap<ObjectRef, (String, Value)>;

fn applied_state(db_path: &Path) -> Result<(Applied, Option<String>, Option<String>), PlanError> {
    if !db_path.exists() {
        return Ok((
            Applied::new(),
            None,
            Some(format!(
                "no daemon state at {}: compared with an empty configuration",
                db_path.display()
            )),
        ));
    }
    let db = StateDb::open_read_only(db_path).map_err(|e| PlanError::State(e.to_string()))?;
    let version = db
        .schema_version()
        .map_err(|e| PlanError::State(e.to_string()))?;
    if version < 2 {
        return Ok((
            Applied::new(),
            None,
            Some(format!(
                "{} was written by an older klosetd that did not record applied objects: \
                 compared with an empty configuration",
                db_path.display()
            )),
        ));
    }
    let revision = db
        .latest_applied()
        .map_err(|e| PlanError::State(e.to_string()))?
        .map(|r| r.hash);
    let objects = db
        .applied_objects()
        .map_err(|e| PlanError::State(e.to_string()))?;
    let note = revision
        .is_none()
        .then(|| "the daemon has not applied any configuration yet".to_string());
    let applied = objects
        .into_iter()
        .map(|o| {
            (
                ObjectRef::new(o.kind, o.name),
                (o.fingerprint, o.definition),
            )
        })
        .collect();
    Ok((applied, revision, note))
}

impl Plan {
    /// The plan as `klosetd plan` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let against = match &self.applied_revision {
            Some(r) => format!("applied revision {}", short(r)),
            None => "nothing applied".to_string(),
        };
        let _ = writeln!(
            out,
            "plan for {} (revision {}) against {} in {}",
            self.dir.display(),
            short(&self.revision),
            against,
            self.state_db.display()
        );
        if let Some(note) = &self.note {
            let _ = writeln!(out, "note: {note}");
        }
        for c in &self.changes {
            let _ = writeln!(out, "  {} {}", c.change.sign(), c.object);
            for f in &c.fields {
                let _ = writeln!(out, "      {f}");
            }
        }
        let count = |k: Change| self.changes.iter().filter(|c| c.change == k).count();
        if self.changes.is_empty() {
            let _ = writeln!(out, "no changes");
        } else {
            let _ = writeln!(
                out,
                "{} change(s): {} to add, {} to change, {} to remove",
                self.changes.len(),
                count(Change::Added),
                count(Change::Changed),
                count(Change::Removed)
            );
        }
        out
    }
}
