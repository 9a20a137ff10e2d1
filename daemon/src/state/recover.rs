//! A corrupt state database is moved aside, never deleted or silently replaced: the daemon starts on a fresh one and reports the lost history until an operator removes the moved copy.
//!
//! At start, [`open_or_recover`] opens the database and runs SQLite's
//! `quick_check`. If the file is not a database, or the check finds damage,
//! the database and its `-wal` and `-shm` files are moved into a new
//! directory `state.db.corrupt-<UTC time>` next to it, and a new, empty
//! database is created. The WAL files go first: a WAL left next to the new
//! database would be replayed into it. A crash in the middle leaves the
//! directory (the evidence) and, at worst, the old file still in place, which
//! the next start checks again.
//!
//! [`moved_aside`] lists those directories. The daemon reports each one as a
//! problem (`/readyz`, `/status`) for as long as it exists, so the loss is
//! acknowledged by archiving or deleting the directory, not by a restart.

use super::{DB_FILE_NAME, Result, StateDb, StateError};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// What the name of a moved-aside database directory starts with.
const MOVED_PREFIX: &str = "state.db.corrupt-";

/// A damaged database that was moved aside at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// The directory that now holds the damaged files.
    pub dir: PathBuf,
    /// What SQLite said about the damage.
    pub finding: String,
}

/// Opens the database at `path` like [`StateDb::open`]; a corrupt one is
/// moved aside (see the module docs) and a fresh one created. Any other
/// error (permissions, a full disk, a lock held too long, a newer schema)
/// is returned as it is: only damage is repaired by starting over.
pub fn open_or_recover(path: &Path, now: DateTime<Utc>) -> Result<(StateDb, Option<MovedAside>)> {
    let finding = match StateDb::open(path) {
        Ok(db) => match db.quick_check() {
            Ok(None) => return Ok((db, None)),
            Ok(Some(finding)) => finding,
            Err(e) if e.is_corruption() => e.to_string(),
            Err(e) => return Err(e),
        },
        Err(e) if e.is_corruption() => e.to_string(),
        Err(e) => return Err(e),
    };
    let dir = move_aside(path, now).map_err(|source| StateError::MoveAside {
        path: path.to_owned(),
        source,
    })?;
    tracing::error!(
        moved_to = %dir.display(),
        %finding,
        "the state database was corrupt: it was moved aside and a new one created; \
         the task history before now is not in the API"
    );
    let db = StateDb::open(path)?;
    Ok((db, Some(MovedAside { dir, finding })))
}

/// The directories of damaged databases moved aside in `state_dir`, oldest
/// first (their names sort by time).
pub fn moved_aside(state_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(state_dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(MOVED_PREFIX)
            && entry.file_type()?.is_dir()
        {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

fn move_aside(path: &Path, now: DateTime<Utc>) -> std::io::Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stamp = now.format("%Y%m%dT%H%M%S%.3fZ");
    let dir = parent.join(format!("{MOVED_PREFIX}{stamp}"));
    std::fs::create_dir(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DB_FILE_NAME.to_owned());
    // WAL and shared memory first, the database last (module docs).
    for suffix in ["-wal", "-shm", ""] {
        let from = parent.join(format!("{name}{suffix}"));
        match std::fs::rename(&from, dir.join(format!("{name}{suffix}"))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::File::open(&dir)?.sync_all()?;
    std::fs::File::open(parent)?.sync_all()?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{NewTask, Origin, TaskKind};
    use std::io::{Seek, SeekFrom, Write};

    fn now() -> DateTime<Utc> {
        "2026-12-06T10:00:00Z".parse().expect("time")
    }

    fn with_history(path: &Path, tasks: usize) {
        let mut db = StateDb::open(path).expect("open");
        for _ in 0..tasks {
            let task = NewTask {
                kind: TaskKind::Backup,
                origin: Origin::Schedule("nightly".into()),
                store: Some("main".into()),
                scheduled_for: None,
                started_at: now(),
                revision: Some("r1".into()),
            };
            db.start_task(&task).expect("start");
        }
    }

    #[test]
    fn a_sound_database_is_opened_as_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE_NAME);
        with_history(&path, 3);
        let (db, moved) = open_or_recover(&path, now()).expect("open");
        assert_eq!(moved, None);
        assert_eq!(
            db.list_tasks(&crate::state::TaskFilter::default())
                .expect("list")
                .len(),
            3
        );
        assert!(moved_aside(dir.path()).expect("list").is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_moved_aside_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE_NAME);
        let garbage = b"this is not an SQLite database, just bytes; ".repeat(200);
        std::fs::write(&path, &garbage).expect("write");
        let (db, moved) = open_or_recover(&path, now()).expect("recover");
        let moved = moved.expect("moved aside");
        assert!(moved.finding.contains("not a database"), "{moved:?}");
        assert_eq!(
            db.list_tasks(&crate::state::TaskFilter::default())
                .expect("list")
                .len(),
            0
        );
        assert_eq!(
            std::fs::read(moved.dir.join(DB_FILE_NAME)).expect("kept"),
            garbage,
            "the damaged file is kept byte for byte"
        );
        assert_eq!(moved_aside(dir.path()).expect("list"), vec![moved.dir]);
    }

    #[test]
    fn damage_inside_a_database_is_found_by_the_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE_NAME);
        with_history(&path, 2000);
        // Checkpointed and closed: everything is in the main file now.
        let len = std::fs::metadata(&path).expect("meta").len();
        assert!(len > 64 * 1024, "{len}");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        // Garble whole pages in the middle, past the schema on page 1.
        f.seek(SeekFrom::Start(len / 2 / 4096 * 4096))
            .expect("seek");
        f.write_all(&[0xA5; 3 * 4096]).expect("garble");
        drop(f);
        let (db, moved) = open_or_recover(&path, now()).expect("recover");
        let moved = moved.expect("the check finds the damage");
        assert_eq!(
            db.list_tasks(&crate::state::TaskFilter::default())
                .expect("list")
                .len(),
            0
        );
        assert!(moved.dir.join(DB_FILE_NAME).is_file());
        assert!(!moved.finding.is_empty());
    }

    #[test]
    fn a_newer_schema_is_refused_not_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE_NAME);
        with_history(&path, 1);
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 999_i64)
            .expect("bump");
        drop(conn);
        let err = open_or_recover(&path, now()).expect_err("too new");
        assert!(matches!(err, StateError::TooNew { .. }), "{err}");
        assert!(moved_aside(dir.path()).expect("list").is_empty());
    }
}
