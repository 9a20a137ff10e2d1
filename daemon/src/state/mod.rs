//! Persistent daemon state in SQLite (task history, schedule state, one-shot results, revisions, conditions).
