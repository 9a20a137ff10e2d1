//! Shared by the benchmarks: start the real release `klosetd` on a config
//! directory and learn its HTTP address from the log.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `klosetd run --config conf` with `RUST_LOG=rust_log`, stderr in
/// `log`, and waits until it serves HTTP.
pub fn start(conf: &Path, log: &Path, rust_log: &str) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(["run", "--config"])
        .arg(conf)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("start klosetd");
    // Dropping it kills the child, also when the wait below fails.
    let mut daemon = Daemon {
        child,
        base: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("status endpoint listening addr=") {
            let rest = &text[at + "status endpoint listening addr=".len()..];
            let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            daemon.base = format!("http://{addr}");
            return daemon;
        }
        assert!(Instant::now() < deadline, "daemon did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
