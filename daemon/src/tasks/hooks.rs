//! `pre` and `post` hooks of a source: a command run before and after its
//! backup. A failing `pre` hook stops the backup before anything is read;
//! `post` runs after every backup that started, whatever its outcome (it
//! learns it from `KLOSETD_STATUS`; it does not run when `pre` failed),
//! and its failure fails the task but keeps the snapshot.
//!
//! Hooks inherit the daemon's environment except the variables secrets are
//! read from (`kloset_connectors::command::hidden_env`). Hooks get no standard input; their output is kept (the last
//! [`TAIL_BYTES`] of stderr, or of stdout when stderr is empty) for the
//! error message. A cancelled task kills a running hook.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use kloset::Progress;

/// Output kept for an error message.
pub const TAIL_BYTES: usize = 2048;

/// Runs `argv` with `env` added; `Err` says what failed (never an env value).
pub fn run_hook(
    which: &str,
    argv: &[String],
    env: &[(&str, &str)],
    progress: &Progress,
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let mut command = Command::new(program);
    for name in kloset_connectors::command::hidden_env() {
        command.env_remove(name);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{which} hook {program:?} could not start: {e}"))?;
    let tail_of = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            if let Some(mut p) = pipe {
                let mut buf = [0u8; 8192];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > TAIL_BYTES {
                        tail.drain(..tail.len() - TAIL_BYTES);
                    }
                }
            }
            tail
        })
    };
    let out = tail_of(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = tail_of(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if progress.is_cancelled() => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{which} hook {program:?} was killed: task cancelled"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("{which} hook {program:?}: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let shown = if stderr.is_empty() { stdout } else { stderr };
    let text = String::from_utf8_lossy(&shown);
    Err(format!(
        "{which} hook {program:?} failed ({status}){}",
        if text.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", text.trim())
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn hooks_report_status_and_output_tail() {
        let p = Progress::new();
        assert_eq!(run_hook("pre", &sh("exit 0"), &[], &p), Ok(()));
        let e = run_hook("pre", &sh("echo nope >&2; exit 4"), &[], &p).expect_err("fails");
        assert!(
            e.contains("pre hook \"sh\" failed") && e.contains("nope"),
            "{e}"
        );
        let e = run_hook(
            "post",
            &sh(
                "test \"$KLOSETD_STATUS\" = succeeded || { echo \"got $KLOSETD_STATUS\"; exit 1; }",
            ),
            &[("KLOSETD_STATUS", "failed")],
            &p,
        )
        .expect_err("env reaches the hook");
        assert!(e.contains("got failed"), "{e}");
        let e = run_hook("pre", &["/nonexistent/hook".to_string()], &[], &p).expect_err("missing");
        assert!(e.contains("could not start"), "{e}");
    }

    #[test]
    fn a_cancelled_task_kills_its_hook() {
        let p = std::sync::Arc::new(Progress::new());
        let q = p.clone();
        let t = std::thread::spawn(move || run_hook("pre", &sh("sleep 60"), &[], &q));
        std::thread::sleep(Duration::from_millis(200));
        p.cancel();
        let e = t.join().expect("join").expect_err("killed");
        assert!(e.contains("cancelled"), "{e}");
    }
}
