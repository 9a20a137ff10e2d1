//! Watching the config directory with `notify`, debounced, robust to how
//! config management writes files:
//!
//! - atomic rename-saves (Ansible, editors): the directory itself is watched;
//! - the directory deleted and recreated: its parent is watched too, and
//!   every reload re-adds the watches ([`ConfigWatcher::rewatch`]);
//! - a Nix-style swap of a symlink anywhere on the path (`/etc/x ->
//!   /etc/static/x -> /nix/store/…`): the parent of every symlink on the
//!   way is watched.
//!
//! Events outside these paths (a watched parent such as `/etc` is busy) are
//! ignored. A burst of events becomes one trigger once the directory has
//! been quiet for [`QUIET`]. The periodic resync catches anything missed.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A change is handled once no event arrived for this long…
pub const QUIET: Duration = Duration::from_millis(25);
/// …or this long after the first event of a burst.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// How many symlinks are followed along the path before giving up.
const MAX_LINKS: usize = 40;

/// The directory watch.
pub struct ConfigWatcher {
    dir: PathBuf,
    watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
    events: mpsc::UnboundedReceiver<()>,
    /// A burst in progress: when its first and its latest event came.
    pending: Option<(tokio::time::Instant, tokio::time::Instant)>,
    paths: std::sync::Arc<std::sync::RwLock<Vec<PathBuf>>>,
}

impl ConfigWatcher {
    /// Watches `dir` (which need not exist yet).
    pub fn new(dir: &Path) -> Result<Self> {
        let (sender, events) = mpsc::unbounded_channel();
        let paths = std::sync::Arc::new(std::sync::RwLock::new(Vec::<PathBuf>::new()));
        let interesting = paths.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match event {
                // An overflow or watch error: reload to be safe.
                Err(_) => true,
                Ok(event) => {
                    !matches!(event.kind, EventKind::Access(_))
                        && (event.need_rescan()
                            || interesting.read().map_or(true, |paths| {
                                event
                                    .paths
                                    .iter()
                                    .any(|p| paths.iter().any(|i| p.starts_with(i)))
                            }))
                }
            };
            if relevant {
                // Fails only when the daemon loop is gone (shutting down).
                let _ = sender.send(());
            }
        })
        .context("starting the config directory watch")?;
        let mut me = ConfigWatcher {
            dir: dir.to_path_buf(),
            watcher,
            watched: Vec::new(),
            events,
            pending: None,
            paths,
        };
        me.rewatch();
        Ok(me)
    }

    /// Re-adds every watch for the directory's current shape (after a
    /// reload: the directory or a symlink on its path may have been
    /// replaced).
    pub fn rewatch(&mut self) {
        for old in self.watched.drain(..) {
            // A path that is gone is no longer watched anyway.
            let _ = self.watcher.unwatch(&old);
        }
        let (watch, interesting) = watch_points(&self.dir);
        if let Ok(mut paths) = self.paths.write() {
            *paths = interesting;
        }
        for path in watch {
            match self.watcher.watch(&path, RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push(path),
                // Harmless: a path on the way may not exist yet (it is
                // watched from its parent), and the resync reads anyway.
                Err(e) => tracing::debug!(path = %path.display(), "cannot watch: {e}"),
            }
        }
    }

    /// Waits for a change, then for the burst to end. Cancellation safe:
    /// the daemon's `select!` may drop this future at any await; a burst
    /// already seen stays pending in `self` and the next call finishes it.
    pub async fn changed(&mut self) {
        loop {
            match self.pending {
                None => {
                    if self.events.recv().await.is_none() {
                        // The watcher is gone: never trigger again (resync
                        // still runs).
                        std::future::pending::<()>().await;
                    }
                    let now = tokio::time::Instant::now();
                    self.pending = Some((now, now));
                }
                Some((first, last)) => {
                    let due = (last + QUIET).min(first + MAX_DELAY);
                    match tokio::time::timeout_at(due, self.events.recv()).await {
                        Ok(Some(())) => {
                            self.pending = Some((first, tokio::time::Instant::now()));
                        }
                        Ok(None) | Err(_) => {
                            self.pending = None;
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The directories to watch for `dir`, and the paths whose events matter:
/// `dir` and what it resolves to, the parent of each, and for every symlink
/// met while resolving the path, its parent directory.
fn watch_points(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut watch = Vec::new();
    let mut interesting = Vec::new();
    let add = |w: &mut Vec<PathBuf>, p: PathBuf| {
        if !w.contains(&p) {
            w.push(p);
        }
    };
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    };
    let mut pending = vec![absolute];
    let mut links = 0;
    while let Some(path) = pending.pop() {
        add(&mut interesting, path.clone());
        add(&mut watch, path.clone());
        if let Some(parent) = path.parent() {
            add(&mut watch, parent.to_path_buf());
        }
        // Walk the path's prefixes; at the first symlink, watch its parent
        // and continue with its target.
        let mut prefix = PathBuf::new();
        for component in path.components() {
            prefix.push(component);
            if matches!(component, Component::RootDir | Component::Prefix(_)) {
                continue;
            }
            if links >= MAX_LINKS {
                break;
            }
            let is_link = std::fs::symlink_metadata(&prefix)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if is_link {
                links += 1;
                add(&mut interesting, prefix.clone());
                if let Some(parent) = prefix.parent() {
                    add(&mut watch, parent.to_path_buf());
                }
                if let Ok(target) = std::fs::read_link(&prefix) {
                    let base = prefix.parent().map(Path::to_path_buf).unwrap_or_default();
                    let rest = path.strip_prefix(&prefix).unwrap_or(Path::new(""));
                    let resolved = base.join(target).join(rest);
                    pending.push(normalize(&resolved));
                }
                break;
            }
        }
    }
    (watch, interesting)
}

/// Removes `.` and resolves `..` lexically (the parts before are real
/// directories here, since symlinks are handled one at a time).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_hops_are_all_watched() {
        let root = tempfile::tempdir().expect("tempdir");
        let root = root.path().canonicalize().expect("canon");
        // etc/klosetd/conf.d -> ../static/conf.d ; static -> store/gen1
        std::fs::create_dir_all(root.join("store/gen1/conf.d")).expect("mkdir");
        std::fs::create_dir_all(root.join("etc/klosetd")).expect("mkdir");
        std::os::unix::fs::symlink("store/gen1", root.join("static")).expect("link");
        std::os::unix::fs::symlink("../../static/conf.d", root.join("etc/klosetd/conf.d"))
            .expect("link");
        let (watch, interesting) = watch_points(&root.join("etc/klosetd/conf.d"));
        for w in [
            root.join("etc/klosetd"),
            root.clone(),
            root.join("store/gen1/conf.d"),
        ] {
            assert!(watch.contains(&w), "{w:?} not in {watch:?}");
        }
        assert!(
            interesting.contains(&root.join("static")),
            "{interesting:?}"
        );
        assert!(interesting.contains(&root.join("store/gen1/conf.d")));
    }
}
