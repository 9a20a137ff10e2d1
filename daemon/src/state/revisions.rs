//! Configuration revisions, Flux style: every attempted revision (valid or not, with its errors) and the applied one.
//!
//! Invariants: the latest row is the latest attempt; the applied revision is
//! the newest row with `applied_at`. Only a valid attempt can be applied.
//! Repeating the latest attempt unchanged (periodic resync) only refreshes its
//! `attempted_at`; history is bounded ([`KEEP_REVISIONS`]) and never loses the
//! latest applied revision.

use super::types::{DbJson, DbTime, ObjectKind, time_serde};
use super::{Result, SqlContext, StateDb, StateError};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

/// How many revision attempts are kept (plus the latest applied one).
pub const KEEP_REVISIONS: i64 = 100;

/// A configuration revision's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RevisionId(pub i64);

/// One attempt to apply a configuration revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionRecord {
    pub id: RevisionId,
    /// The content hash of the configuration directory.
    pub hash: String,
    #[serde(serialize_with = "time_serde::time")]
    pub first_attempted_at: DateTime<Utc>,
    /// The last time this same attempt (hash, validity, errors) was made.
    #[serde(serialize_with = "time_serde::time")]
    pub attempted_at: DateTime<Utc>,
    pub valid: bool,
    /// Validation errors (opaque JSON), when invalid.
    pub errors: Option<serde_json::Value>,
    /// When it became the running configuration; `None` if it never did.
    #[serde(serialize_with = "time_serde::opt_time")]
    pub applied_at: Option<DateTime<Utc>>,
}

const REVISION_COLUMNS: &str =
    "id, hash, first_attempted_at, attempted_at, valid, errors_json, applied_at";

fn revision_from_row(row: &Row<'_>) -> rusqlite::Result<RevisionRecord> {
    Ok(RevisionRecord {
        id: RevisionId(row.get(0)?),
        hash: row.get(1)?,
        first_attempted_at: row.get::<_, DbTime>(2)?.0,
        attempted_at: row.get::<_, DbTime>(3)?.0,
        valid: row.get(4)?,
        errors: row.get::<_, Option<DbJson>>(5)?.map(|j| j.0),
        applied_at: row.get::<_, Option<DbTime>>(6)?.map(|t| t.0),
    })
}

/// One object of the applied configuration, as `klosetd plan` compares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedObject {
    /// What kind of object.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// Hash of its validated definition.
    pub fingerprint: String,
    /// The validated definition (no secret values: only where they are read from).
    pub definition: serde_json::Value,
}

impl StateDb {
    /// Records an attempt to load the configuration with content `hash`.
    /// Repeating the latest attempt unchanged refreshes it instead of adding
    /// a row; old attempts beyond [`KEEP_REVISIONS`] are dropped.
    pub fn record_attempt(
        &mut self,
        hash: &str,
        valid: bool,
        errors: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<RevisionId> {
        const OP: &str = "record config attempt";
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        let sql = format!("SELECT {REVISION_COLUMNS} FROM revisions ORDER BY id DESC LIMIT 1");
        let latest = tx
            .query_row(&sql, [], revision_from_row)
            .optional()
            .op(OP)?;
        let id = match latest {
            Some(r) if r.hash == hash && r.valid == valid && r.errors.as_ref() == errors => {
                tx.execute(
                    "UPDATE revisions SET attempted_at = ?2 WHERE id = ?1",
                    params![r.id.0, DbTime(now)],
                )
                .op(OP)?;
                r.id
            }
            _ => {
                let id = tx
                    .query_row(
                        "INSERT INTO revisions (hash, first_attempted_at, attempted_at, valid, \
                         errors_json) VALUES (?1, ?2, ?2, ?3, ?4) RETURNING id",
                        params![hash, DbTime(now), valid, errors.cloned().map(DbJson)],
                        |r| r.get(0),
                    )
                    .op(OP)?;
                tx.execute(
                    "DELETE FROM revisions WHERE id <= ?1 - ?2 AND id IS NOT \
                     (SELECT max(id) FROM revisions WHERE applied_at IS NOT NULL)",
                    params![id, KEEP_REVISIONS],
                )
                .op(OP)?;
                RevisionId(id)
            }
        };
        tx.commit().op(OP)?;
        Ok(id)
    }

    /// Marks the latest valid attempt of `hash` as applied (the running
    /// configuration). Applying it again keeps the first `applied_at`.
    pub fn record_applied(&mut self, hash: &str, now: DateTime<Utc>) -> Result<RevisionId> {
        self.conn
            .query_row(
                "UPDATE revisions SET applied_at = coalesce(applied_at, ?2) WHERE id = \
                 (SELECT max(id) FROM revisions WHERE hash = ?1 AND valid = 1) RETURNING id",
                params![hash, DbTime(now)],
                |r| r.get(0),
            )
            .optional()
            .op("record applied config")?
            .map(RevisionId)
            .ok_or_else(|| StateError::RevisionNotAttempted {
                hash: hash.to_owned(),
            })
    }

    /// Replaces the applied configuration's objects in one transaction.
    pub fn set_applied_objects(&mut self, objects: &[AppliedObject]) -> Result<()> {
        const OP: &str = "record applied objects";
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        tx.execute("DELETE FROM applied_objects", []).op(OP)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO applied_objects (object_kind, name, fingerprint, definition) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .op(OP)?;
            for o in objects {
                insert
                    .execute(params![
                        o.kind,
                        o.name,
                        o.fingerprint,
                        DbJson(o.definition.clone())
                    ])
                    .op(OP)?;
            }
        }
        tx.commit().op(OP)
    }

    /// The applied configuration's objects, by kind and name.
    pub fn applied_objects(&self) -> Result<Vec<AppliedObject>> {
        const OP: &str = "read applied objects";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT object_kind, name, fingerprint, definition FROM applied_objects \
                 ORDER BY object_kind, name",
            )
            .op(OP)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AppliedObject {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    fingerprint: r.get(2)?,
                    definition: r.get::<_, DbJson>(3)?.0,
                })
            })
            .op(OP)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .op(OP)?;
        Ok(rows)
    }

    /// The latest attempt, valid or not.
    pub fn latest_attempted(&self) -> Result<Option<RevisionRecord>> {
        let sql = format!("SELECT {REVISION_COLUMNS} FROM revisions ORDER BY id DESC LIMIT 1");
        self.conn
            .query_row(&sql, [], revision_from_row)
            .optional()
            .op("read latest attempted revision")
    }

    /// The latest applied revision: the configuration that is running.
    pub fn latest_applied(&self) -> Result<Option<RevisionRecord>> {
        let sql = format!(
            "SELECT {REVISION_COLUMNS} FROM revisions WHERE applied_at IS NOT NULL \
             ORDER BY id DESC LIMIT 1"
        );
        self.conn
            .query_row(&sql, [], revision_from_row)
            .optional()
            .op("read latest applied revision")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::at;
    use super::*;
    use serde_json::json;

    #[test]
    fn applied_objects_are_replaced_as_a_whole() {
        let mut db = StateDb::open_in_memory().expect("open");
        let o = |k: &str, n: &str, f: &str| AppliedObject {
            kind: k.parse().expect("kind"),
            name: n.to_string(),
            fingerprint: f.to_string(),
            definition: json!({ "f": f }),
        };
        db.set_applied_objects(&[o("store", "a", "1"), o("schedule", "b", "2")])
            .expect("set");
        db.set_applied_objects(&[o("store", "a", "3")])
            .expect("set");
        assert_eq!(
            db.applied_objects().expect("read"),
            vec![o("store", "a", "3")]
        );
    }

    #[test]
    fn attempted_and_applied_are_reported_separately() {
        let mut db = StateDb::open_in_memory().expect("open");
        assert_eq!(db.latest_attempted().expect("attempted"), None);
        assert_eq!(db.latest_applied().expect("applied"), None);

        let good = db.record_attempt("h1", true, None, at(0)).expect("attempt");
        assert_eq!(db.record_applied("h1", at(1)).expect("apply"), good);
        let errors = json!([{"file": "b.toml", "line": 3, "message": "unknown key"}]);
        let bad = db
            .record_attempt("h2", false, Some(&errors), at(10))
            .expect("attempt");
        assert!(bad > good);

        let attempted = db.latest_attempted().expect("attempted").expect("some");
        assert_eq!((attempted.hash.as_str(), attempted.valid), ("h2", false));
        assert_eq!(attempted.errors, Some(errors.clone()));
        assert_eq!(attempted.applied_at, None);
        let applied = db.latest_applied().expect("applied").expect("some");
        assert_eq!(
            (applied.hash.as_str(), applied.applied_at),
            ("h1", Some(at(1)))
        );

        let err = db.record_applied("h2", at(11)).expect_err("invalid");
        assert!(
            matches!(err, StateError::RevisionNotAttempted { .. }),
            "{err:?}"
        );
        let err = db.record_applied("nope", at(11)).expect_err("unknown");
        assert!(err.to_string().contains("nope"), "{err}");

        // A periodic resync of the same broken directory refreshes the row.
        let again = db
            .record_attempt("h2", false, Some(&errors), at(20))
            .expect("attempt");
        assert_eq!(again, bad);
        let attempted = db.latest_attempted().expect("attempted").expect("some");
        assert_eq!(
            (attempted.first_attempted_at, attempted.attempted_at),
            (at(10), at(20))
        );
        // Different errors for the same content are a new attempt.
        let other = db
            .record_attempt(
                "h2",
                false,
                Some(&json!(["secret file unreadable"])),
                at(30),
            )
            .expect("attempt");
        assert!(other > bad);

        // Fixed: a new revision is applied; applying twice keeps the time.
        let fixed = db
            .record_attempt("h3", true, None, at(40))
            .expect("attempt");
        db.record_applied("h3", at(41)).expect("apply");
        db.record_applied("h3", at(99)).expect("apply again");
        let applied = db.latest_applied().expect("applied").expect("some");
        assert_eq!((applied.id, applied.applied_at), (fixed, Some(at(41))));
        let json = serde_json::to_value(&applied).expect("json");
        assert_eq!(json["valid"], true);
        assert_eq!(json["applied_at"], "2025-06-15T15:07:21.000Z");
    }

    #[test]
    fn history_is_bounded_but_keeps_the_applied_revision() {
        let mut db = StateDb::open_in_memory().expect("open");
        db.record_attempt("good", true, None, at(0))
            .expect("attempt");
        db.record_applied("good", at(0)).expect("apply");
        for i in 1..=250 {
            db.record_attempt(&format!("bad{i}"), false, Some(&json!([i])), at(i))
                .expect("attempt");
        }
        let rows: i64 = db
            .conn
            .query_row("SELECT count(*) FROM revisions", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, KEEP_REVISIONS + 1);
        let applied = db.latest_applied().expect("applied").expect("kept");
        assert_eq!(applied.hash, "good");
        assert_eq!(
            db.latest_attempted()
                .expect("attempted")
                .expect("some")
                .hash,
            "bad250"
        );
    }
}
