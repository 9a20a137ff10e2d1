//! Running the real `kloset` binary from tests, with captured output and a timeout.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Passphrase [`Kloset::new`] puts in `KLOSET_PASSPHRASE`.
pub const TEST_PASSPHRASE: &str = "correct horse battery staple (test)";
/// How long one command may run before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Inherited variables that would change what the CLI does; removed from
/// every command so that a developer's environment cannot leak into a test.
const SCRUBBED: &[&str] = &[
    "KLOSET_PASSPHRASE",
    "KLOSET_PASSPHRASE_FILE",
    "KLOSET_PASSPHRASE_TO",
    "KLOSET_CACHE_DIR",
    "KLOSET_CACHE_MAX",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
];

/// Builder for invocations of the `kloset` binary under test.
#[derive(Debug, Clone)]
pub struct Kloset {
    bin: PathBuf,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// The exit status.
    pub status: ExitStatus,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether the exit code was 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout as text (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The non-empty lines of stdout.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A description with exit code, stdout and stderr, for panic messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}

impl Default for Kloset {
    fn default() -> Self {
        Self::new()
    }
}

impl Kloset {
    /// The binary built by cargo for this test run, with `KLOSET_PASSPHRASE`
    /// set to [`TEST_PASSPHRASE`].
    pub fn new() -> Self {
        Self {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_kloset")),
            env: Vec::new(),
            cwd: None,
            timeout: DEFAULT_TIMEOUT,
        }
        .passphrase(TEST_PASSPHRASE)
    }

    /// Path of the binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Sets (or replaces) one environment variable of every command.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        let key = key.as_ref().to_owned();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.as_ref().to_owned()));
        self
    }

    /// Sets several variables, e.g. `S3Server::env()`.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes a variable set earlier (e.g. `KLOSET_PASSPHRASE`).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        let key = key.as_ref();
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Sets `KLOSET_PASSPHRASE`.
    pub fn passphrase(self, passphrase: &str) -> Self {
        self.env("KLOSET_PASSPHRASE", passphrase)
    }

    /// No `KLOSET_PASSPHRASE` at all.
    pub fn without_passphrase(self) -> Self {
        self.env_remove("KLOSET_PASSPHRASE")
    }

    /// Working directory of the commands.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Per-command timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `Command` with this environment (inherited `KLOSET_*`/`AWS_*` removed).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        for key in SCRUBBED {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs `kloset ARGS` with no stdin and returns what it did, whatever the exit code.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_stdin(args, &[])
    }

    /// Runs `kloset ARGS` feeding `stdin` to it.
    pub fn run_with_stdin<I, S>(&self, args: I, stdin: &[u8]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let command = std::iter::once(OsStr::new("kloset"))
            .chain(args.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = self
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let input = stdin.to_vec();
        let mut child_in = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || {
            // The child may exit without reading: a broken pipe is fine.
            let _ = child_in.write_all(&input);
        });
        let out_reader = reader(child.stdout.take().expect("piped stdout"));
        let err_reader = reader(child.stderr.take().expect("piped stderr"));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for kloset") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{command}` did not finish within {:?}", self.timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = writer.join();
        Output {
            command,
            status,
            code: status.code(),
            stdout: out_reader.join().expect("stdout reader thread"),
            stderr: err_reader.join().expect("stderr reader thread"),
        }
    }

    /// Runs `kloset ARGS` and panics with stdout and stderr unless it exits 0.
    pub fn must<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        assert!(out.success(), "command failed: {}", out.describe());
        out
    }

    /// Runs `kloset ARGS` and panics unless it exits with `code`.
    pub fn expect_code<I, S>(&self, args: I, code: i32) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        assert_eq!(
            out.code,
            Some(code),
            "unexpected exit code: {}",
            out.describe()
        );
        out
    }

    /// Runs `kloset ARGS` and panics if it exits 0 or is killed by a signal.
    pub fn must_fail<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        assert!(
            matches!(out.code, Some(c) if c != 0),
            "command should have failed: {}",
            out.describe()
        );
        out
    }

    /// `kloset at LOCATION ARGS…`, which must exit 0 (the usual shape of a command).
    pub fn must_at<I, S>(&self, location: impl AsRef<OsStr>, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let all = [OsStr::new("at").to_owned(), location.as_ref().to_owned()]
            .into_iter()
            .chain(args.into_iter().map(|a| a.as_ref().to_owned()));
        self.must(all.collect::<Vec<_>>())
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error just ends the capture; the exit status tells the story.
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}
