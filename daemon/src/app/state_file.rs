//! The state database file at start and while running: a corrupt file is moved aside and reported, and a locked or full one is waited for.
//!
//! At start the daemon cannot run anything without its database (a run that
//! cannot be recorded would be invisible), so a database that is locked by
//! another process or on a full disk is retried with backoff, and the wait
//! is logged and shown in `systemctl status`. A corrupt one is moved aside
//! by [`crate::state::open_or_recover`]; while a moved-aside copy exists,
//! the loss is a problem on `/readyz` and `/status`.
//!
//! Once running, a write that fails (locked past the busy timeout, disk
//! full) is a fault of the step that tried it, shown until that step next
//! succeeds; see [`crate::status::Fault`].

use super::{Daemon, systemd};
use crate::state::{StateError, StateHandle};
use crate::status::Fault;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest pause between attempts to open a locked or full database.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Opens (or recovers) the daemon's read-write database, waiting out a lock
/// or a full disk.
pub(super) async fn open_writer(path: &Path, now: DateTime<Utc>) -> Result<StateHandle> {
    let mut pause = Duration::from_secs(1);
    loop {
        let path_buf = path.to_path_buf();
        let opened =
            tokio::task::spawn_blocking(move || crate::state::open_or_recover(&path_buf, now))
                .await
                .context("opening the state database")?;
        match opened {
            Ok((db, _moved)) => {
                return StateHandle::spawn(db).context("starting the state thread");
            }
            Err(e) if waitable(&e) => {
                tracing::error!(
                    "cannot open the state database yet: {e}; trying again in {}s",
                    pause.as_secs()
                );
                systemd::status(&format!("waiting for the state database: {e}"));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(e).context("opening the state database"),
        }
    }
}

/// A lock held by another process, or a full disk: both pass.
fn waitable(e: &StateError) -> bool {
    e.is_retryable() || e.is_disk_full()
}

impl Daemon {
    /// Shows every corrupt database moved aside in the state directory as a
    /// problem, or clears the problem once none is left.
    pub(super) fn report_moved_state(&self) {
        match crate::state::moved_aside(&self.state_dir) {
            Ok(moved) if moved.is_empty() => self.live.fault_cleared(Fault::StateHistory),
            Ok(moved) => self.live.fault(Fault::StateHistory, describe(&moved)),
            Err(e) => self.live.fault(
                Fault::StateHistory,
                format!(
                    "cannot list the state directory {}: {e}",
                    self.state_dir.display()
                ),
            ),
        }
    }
}

fn describe(moved: &[PathBuf]) -> String {
    let list = moved
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "the state database was found corrupt and moved aside to {list}; the task history \
         before that is not in the API. Archive or delete the moved copy to clear this"
    )
}
