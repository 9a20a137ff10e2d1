//! Secrets out of panic messages: a panic hook that writes the usual
//! message (thread, location, payload, a backtrace when `RUST_BACKTRACE`
//! asks for one) with every secret value the process knows of replaced by
//! [`REDACTED`], and [`redact`] for text that carries a panic's payload
//! elsewhere (a task's recorded error).
//!
//! Values are never kept here, only where they are read from: the
//! environment variables and files named by the applied configuration's
//! `*_env` and `*_file` keys ([`remember`]), and the variables the `kloset`
//! command reads ([`CLI_SECRET_ENV`]). They are read again when a message
//! is redacted, so a rotated secret file is redacted with its new content.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::RwLock;

use zeroize::Zeroizing;

/// Written instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// The variables the `kloset` command (and the object stores' builders)
/// read secrets from.
pub const CLI_SECRET_ENV: &[&str] = &[
    "KLOSET_PASSPHRASE",
    "KLOSET_PASSPHRASE_TO",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
];

/// The variables the `kloset` command names secret files with.
pub const CLI_SECRET_FILE_ENV: &[&str] = &["KLOSET_PASSPHRASE_FILE", "KLOSET_PASSPHRASE_TO_FILE"];

/// Secret files larger than this are not read back to redact them (no
/// secret of this project is near it).
const MAX_SECRET_FILE: u64 = 64 * 1024;

struct Sources {
    env: BTreeSet<String>,
    files: BTreeSet<PathBuf>,
}

static SOURCES: RwLock<Sources> = RwLock::new(Sources {
    env: BTreeSet::new(),
    files: BTreeSet::new(),
});

/// Adds where secrets are read from: variables and files. Kept for the
/// life of the process (a secret that was once in use stays redacted).
pub fn remember(env: impl IntoIterator<Item = String>, files: impl IntoIterator<Item = PathBuf>) {
    let mut sources = SOURCES.write().unwrap_or_else(|p| p.into_inner());
    sources.env.extend(env);
    sources.files.extend(files);
}

/// What the `kloset` command reads secrets from: [`CLI_SECRET_ENV`] and
/// the files [`CLI_SECRET_FILE_ENV`] name.
pub fn remember_cli_sources() {
    let files = CLI_SECRET_FILE_ENV
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from);
    remember(CLI_SECRET_ENV.iter().map(|n| n.to_string()), files);
}

/// Every secret value known now, as written and as `{:?}` escapes it
/// (a `Debug` of a struct holding one), longest first so that a secret
/// containing another is replaced whole.
fn known_values() -> Vec<Zeroizing<String>> {
    let (env, files) = {
        let sources = SOURCES.read().unwrap_or_else(|p| p.into_inner());
        (sources.env.clone(), sources.files.clone())
    };
    let mut raw: Vec<Zeroizing<String>> = Vec::new();
    for name in env {
        if let Some(v) = std::env::var_os(&name) {
            raw.push(Zeroizing::new(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    for path in files {
        // Only regular files: opening a FIFO would hang the hook.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut bytes = Zeroizing::new(Vec::new());
        if file.take(MAX_SECRET_FILE).read_to_end(&mut bytes).is_err() {
            continue;
        }
        let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
        // As `SecretRef::read` gives it (one line end dropped), and trimmed
        // (as URLs and tokens are read).
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        raw.push(Zeroizing::new(line.to_string()));
        raw.push(Zeroizing::new(text.trim().to_string()));
    }
    let mut all = Vec::new();
    for v in raw {
        if v.is_empty() {
            continue;
        }
        let debug = format!("{:?}", v.as_str());
        let escaped = &debug[1..debug.len() - 1];
        if escaped != v.as_str() {
            all.push(Zeroizing::new(escaped.to_string()));
        }
        all.push(v);
    }
    all.sort_by(|a, b| {
        b.len()
            .cmp(&a.len())
            .then_with(|| a.as_str().cmp(b.as_str()))
    });
    all.dedup();
    all
}

/// `text` with every known secret value replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for value in known_values() {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), REDACTED);
        }
    }
    out
}

/// The text of a panic's payload (`panic!` with a message gives a string).
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}

/// Replaces the default panic hook with one that redacts (see the module).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let message = redact(payload_text(info.payload()));
        let backtrace = std::backtrace::Backtrace::capture();
        let trace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
            _ => String::new(),
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "thread '{name}' panicked{at}:\n{message}{trace}"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_secret_files_are_redacted_as_written_trimmed_and_escaped() {
        let dir = tempfile::tempdir().expect("tmp");
        let (quoted, padded) = (dir.path().join("quoted"), dir.path().join("padded"));
        std::fs::write(&quoted, "file-secret \"quoted\"\n").expect("write");
        std::fs::write(&padded, "  url-token-Q3  \n").expect("write");
        remember(["REDACT_TEST_UNSET_VARIABLE".to_string()], [quoted, padded]);
        let text = format!(
            "a {:?} b file-secret \"quoted\" c url-token-Q3 d",
            "file-secret \"quoted\""
        );
        assert_eq!(
            redact(&text),
            "a \"[redacted]\" b [redacted] c [redacted] d"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
