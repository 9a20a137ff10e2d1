//! Output helpers: human sizes and modes, JSON, and a progress bar on a
//! terminal (quiet when standard error is not one, or with `--json`).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kloset::Progress;
use kloset::tree::NodeKind;

/// Bytes as a human-readable size (IEC units).
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// `ls -l`-style mode string.
pub fn mode_string(kind: NodeKind, mode: u32) -> String {
    let t = match kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, ch)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (set, special, i) {
            (true, true, 8) => 't',
            (false, true, 8) => 'T',
            (true, true, _) => 's',
            (false, true, _) => 'S',
            (true, false, _) => *ch,
            (false, false, _) => '-',
        });
    }
    s
}

/// Prints a value as pretty JSON on standard output.
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("kloset: cannot encode JSON output: {e}"),
    }
}

/// A progress bar fed from [`Progress`] counters by a small thread.
pub struct Bar {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Bar {
    /// Starts a bar labelled `what` when standard error is a terminal.
    pub fn start(what: &'static str, progress: Arc<Progress>, quiet: bool) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return Bar { stop, handle: None };
        }
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // Styled before it is shown, so no empty default bar flashes.
            let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
            let known = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let unknown =
                ProgressStyle::with_template("{spinner} {prefix} {bytes} {bytes_per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_prefix(what);
            bar.set_style(unknown.clone());
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            while !flag.load(Ordering::Relaxed) {
                let p = progress.snapshot();
                if p.total_bytes > 0 {
                    bar.set_style(known.clone());
                    bar.set_length(p.total_bytes);
                } else {
                    bar.set_style(unknown.clone());
                }
                bar.set_position(p.bytes);
                let phase = progress.phase();
                bar.set_message(if phase.is_empty() {
                    format!(
                        "{} files{}",
                        p.files,
                        if p.errors > 0 {
                            format!(", {} errors", p.errors)
                        } else {
                            String::new()
                        }
                    )
                } else {
                    phase
                });
                bar.tick();
                std::thread::sleep(Duration::from_millis(120));
            }
            bar.finish_and_clear();
        });
        Bar {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }
}
