//! Streams of commands: an importer whose files are the standard output of
//! commands ([`CommandImporter`], e.g. `pg_dump`) and an exporter that pipes
//! one restored file into a command's standard input ([`CommandExporter`],
//! e.g. `pg_restore`).
//!
//! Invariants:
//! - Environment values are secrets: never in `Debug`, never in errors, and
//!   redacted from a command's stderr before it is quoted.
//! - Variables the process reads secrets from ([`hide_from_children`]) are
//!   removed from every command's environment: a child never inherits a
//!   passphrase, a key or a password it was not given on purpose.
//! - A command's stderr is drained on its own thread into a bounded tail
//!   (the last [`STDERR_TAIL`] bytes), so the pipe never fills and memory
//!   stays bounded however much it writes.
//! - Every spawned process is waited for. A reader dropped before the end,
//!   or a restore whose stream fails, kills the command's process group
//!   (each command runs in its own) and reaps it: no zombies, no orphans.
//! - A command that exits non-zero or by a signal makes the read (or the
//!   write) fail with [`CommandFailed`]: the program's name, its exit status
//!   and its stderr tail; a success is only reported after a zero exit.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use std::os::unix::process::CommandExt;
use zeroize::Zeroizing;

use kloset::export::Exporter;
use kloset::import::{Importer, Listed, Opened, SourcePath};
use kloset::repository::now_ns;
use kloset::tree::{Node, NodeKind};

use crate::secret_file::SecretFile;

/// How much of a command's stderr is kept for its error message.
pub const STDERR_TAIL: usize = 8 * 1024;

/// How long a failed command's stderr may take to drain before the error is
/// reported with what arrived (a grandchild may keep the pipe open).
const STDERR_GRACE: Duration = Duration::from_secs(5);

/// Environment values shorter than this are not redacted from stderr (a
/// `1` or `10` would mangle every message); secrets are longer.
const MIN_REDACTED: usize = 4;

/// A command to run: program, arguments, extra environment, directory.
#[derive(Clone, Default)]
pub struct CommandSpec {
    /// The program (looked up on `PATH` unless it holds a `/`).
    pub program: PathBuf,
    /// Its arguments (shown nowhere; they must not hold secrets).
    pub args: Vec<String>,
    /// Extra environment variables; values are secrets (passwords).
    pub env: Vec<(String, Zeroizing<String>)>,
    /// Working directory (default: the caller's).
    pub current_dir: Option<PathBuf>,
    /// Files the command reads its secrets from, kept until the last spec
    /// naming them is dropped.
    pub secret_files: Vec<Arc<SecretFile>>,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, _)| format!("{k}=<redacted>"))
            .collect();
        f.debug_struct("CommandSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env)
            .field("current_dir", &self.current_dir)
            .field("secret_files", &self.secret_files)
            .finish()
    }
}

/// Names of environment variables that hold secrets of this process.
static HIDDEN_ENV: std::sync::RwLock<std::collections::BTreeSet<String>> =
    std::sync::RwLock::new(std::collections::BTreeSet::new());

/// Removes `names` from the environment of every child this process starts
/// from now on (commands here, and hooks that ask [`hidden_env`]): the
/// variables a configuration reads secrets from. Names are only ever added.
pub fn hide_from_children(names: impl IntoIterator<Item = String>) {
    let mut hidden = HIDDEN_ENV.write().unwrap_or_else(|p| p.into_inner());
    hidden.extend(names);
}

/// The variables removed from children's environments.
pub fn hidden_env() -> Vec<String> {
    HIDDEN_ENV
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect()
}

impl CommandSpec {
    /// Runs `program` with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            ..CommandSpec::default()
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> CommandSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable (its value is treated as a secret).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> CommandSpec {
        self.env.push((key.into(), Zeroizing::new(value.into())));
        self
    }

    /// Keeps `file` (which an argument or variable names) for as long as
    /// this spec lives.
    pub fn reads(mut self, file: &Arc<SecretFile>) -> CommandSpec {
        self.secret_files.push(Arc::clone(file));
        self
    }

    /// The program's file name, as errors show it (`pg_dump`).
    pub fn name(&self) -> String {
        self.program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for name in hidden_env() {
            c.env_remove(name);
        }
        for (k, v) in &self.env {
            c.env(k, v.as_str());
        }
        if let Some(dir) = &self.current_dir {
            c.current_dir(dir);
        }
        // Its own process group, so an early stop kills what it started too.
        c.process_group(0);
        c
    }

    fn secrets(&self) -> Vec<Zeroizing<String>> {
        self.env
            .iter()
            .filter(|(_, v)| v.len() >= MIN_REDACTED)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn spawn_error(&self, e: io::Error) -> io::Error {
        let hint = if e.kind() == io::ErrorKind::NotFound {
            " (is it installed and on PATH?)"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!("cannot run {}: {e}{hint}", self.program.display()),
        )
    }
}

/// A command that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandFailed {
    /// The program's file name.
    pub program: String,
    /// How it ended (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub status: String,
    /// The end of its stderr, secrets redacted, lines joined by `; `.
    pub stderr: String,
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed ({})", self.program, self.status)?;
        if self.stderr.is_empty() {
            write!(f, " with no error output")
        } else {
            write!(f, ": {}", self.stderr)
        }
    }
}

impl std::error::Error for CommandFailed {}

impl CommandFailed {
    /// The [`CommandFailed`] inside an error returned by this module.
    pub fn of(e: &io::Error) -> Option<&CommandFailed> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }
}

/// The last [`STDERR_TAIL`] bytes of a command's stderr, read on a thread.
struct StderrTail {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl StderrTail {
    fn collect(mut stderr: ChildStderr) -> io::Result<StderrTail> {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let shared = buf.clone();
        std::thread::Builder::new()
            .name("command-stderr".into())
            .spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = shared.lock().unwrap_or_else(|p| p.into_inner());
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > STDERR_TAIL {
                        let cut = b.len() - STDERR_TAIL;
                        b.drain(..cut);
                    }
                }
                drop(tx);
            })?;
        Ok(StderrTail { buf, done })
    }

    /// The tail as one line, after the pipe closed (or a grace period).
    fn text(&self, secrets: &[Zeroizing<String>]) -> String {
        let _ = self.done.recv_timeout(STDERR_GRACE);
        let bytes = self.buf.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        for s in secrets {
            text = text.replace(s.as_str(), "<redacted>");
        }
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines.join("; ")
    }
}

fn failure(
    spec_name: &str,
    status: ExitStatus,
    tail: &StderrTail,
    secrets: &[Zeroizing<String>],
) -> CommandFailed {
    CommandFailed {
        program: spec_name.to_owned(),
        status: status.to_string(),
        stderr: tail.text(secrets),
    }
}

/// Kills the process group led by `child` (it must not have been reaped, so
/// the group id cannot have been reused), then the child itself.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}

/// The user and group this process runs as.
fn own_ids() -> (u32, u32) {
    #[allow(unsafe_code)]
    // SAFETY: getuid(2) and getgid(2) always succeed and take no arguments.
    unsafe {
        (libc::getuid(), libc::getgid())
    }
}

/// A running command's standard output. At its end the command is waited
/// for; a non-zero exit (or a signal) is returned as an error from `read`,
/// again on every later call. Dropped early, it kills and reaps the command.
pub struct CommandReader {
    program: String,
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: StderrTail,
    secrets: Vec<Zeroizing<String>>,
    reaped: bool,
    failed: Option<CommandFailed>,
}

impl std::fmt::Debug for CommandReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandReader")
            .field("program", &self.program)
            .field("pid", &self.child.id())
            .field("reaped", &self.reaped)
            .finish()
    }
}

impl CommandReader {
    /// Starts `spec` with stdout piped, stdin closed, stderr captured.
    pub fn spawn(spec: &CommandSpec) -> io::Result<CommandReader> {
        let mut child = spec
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spec.spawn_error(e))?;
        let stdout = child.stdout.take();
        let stderr = match child.stderr.take().map(StderrTail::collect) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(e);
            }
            None => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(io::Error::other("no stderr pipe"));
            }
        };
        Ok(CommandReader {
            program: spec.name(),
            child,
            stdout,
            stderr,
            secrets: spec.secrets(),
            reaped: false,
            failed: None,
        })
    }

    /// The process id (the leader of its process group).
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Read for CommandReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(out) = self.stdout.as_mut() {
            let n = out.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.stdout = None;
            let status = self.child.wait()?;
            self.reaped = true;
            if !status.success() {
                self.failed = Some(failure(&self.program, status, &self.stderr, &self.secrets));
            }
        }
        match &self.failed {
            Some(f) => Err(io::Error::other(f.clone())),
            None => Ok(0),
        }
    }
}

impl Drop for CommandReader {
    fn drop(&mut self) {
        if !self.reaped {
            self.stdout = None;
            kill_group(&mut self.child);
            let _ = self.child.wait();
        }
    }
}

/// One file of a [`CommandImporter`]: its name and the command whose
/// output it is.
#[derive(Clone, Debug)]
pub struct CommandFile {
    /// The file name (one path component).
    pub name: String,
    /// The command producing its content.
    pub command: CommandSpec,
}

/// A virtual root directory whose files are the standard output of
/// commands, run when the backup opens them (several at once on the
/// backup's workers). A command cannot tell whether its output changed, so
/// every file is read on every backup (`ctime` is now).
#[derive(Debug)]
pub struct CommandImporter {
    origin: String,
    files: Vec<CommandFile>,
}

impl CommandImporter {
    /// Files named `files[i].name` under a root shown as `origin` (which
    /// must not hold a secret).
    pub fn new(origin: String, files: Vec<CommandFile>) -> CommandImporter {
        CommandImporter { origin, files }
    }

    /// The files, in the order given.
    pub fn files(&self) -> &[CommandFile] {
        &self.files
    }

    fn node(&self, name: &[u8], kind: NodeKind, mode: u32) -> Node {
        let (uid, gid) = own_ids();
        let now = now_ns();
        Node {
            name: serde_bytes::ByteBuf::from(name.to_vec()),
            kind,
            mode,
            uid,
            gid,
            mtime_ns: now,
            ctime_ns: now,
            inode: 0,
            device: 0,
            size: 0,
            target: None,
            rdev: None,
            content: Vec::new(),
            subtree: None,
        }
    }
}

impl Importer for CommandImporter {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn root(&self) -> io::Result<Node> {
        Ok(self.node(b"", NodeKind::Dir, 0o700))
    }

    fn list(&self, dir: &SourcePath, _listed: &Node) -> io::Result<Vec<Listed>> {
        if !dir.is_root() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} holds no directory {}", self.origin, dir.display()),
            ));
        }
        Ok(self
            .files
            .iter()
            .map(|f| Listed {
                name: f.name.as_bytes().to_vec(),
                node: Ok(self.node(f.name.as_bytes(), NodeKind::File, 0o600)),
            })
            .collect())
    }

    fn open(&self, path: &SourcePath, _listed: &Node) -> io::Result<Opened<'_>> {
        let file = self
            .files
            .iter()
            .find(|f| f.name.as_bytes() == path.as_bytes())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} holds no file {}", self.origin, path.display()),
                )
            })?;
        Ok(Opened::reader(Box::new(CommandReader::spawn(
            &file.command,
        )?)))
    }
}

/// Restores exactly one file by piping it into a command's stdin (e.g.
/// `pg_restore`). The root directory is implicit; a second file or any
/// other directory is an error, and so is a restore that wrote no file.
#[derive(Debug)]
pub struct CommandExporter {
    target: String,
    command: CommandSpec,
    used: AtomicBool,
}

impl CommandExporter {
    /// Pipes the restored file into `command`; `target` is shown to users
    /// (it must not hold a secret).
    pub fn new(target: String, command: CommandSpec) -> CommandExporter {
        CommandExporter {
            target,
            command,
            used: AtomicBool::new(false),
        }
    }

    fn single_file(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} takes a single file, not {what}: restore one file of the snapshot (SNAP:/NAME)",
                self.target
            ),
        )
    }

    /// Streams `content` into a fresh run of the command.
    fn pipe(&self, content: &mut dyn Read) -> io::Result<()> {
        let spec = &self.command;
        let mut child = spec
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spec.spawn_error(e))?;
        let (stdin, stderr) = (child.stdin.take(), child.stderr.take());
        let (Some(mut stdin), Some(stderr)) = (stdin, stderr) else {
            kill_group(&mut child);
            let _ = child.wait();
            return Err(io::Error::other("no stdin or stderr pipe"));
        };
        let tail = match StderrTail::collect(stderr) {
            Ok(t) => t,
            Err(e) => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(e);
            }
        };
        let secrets = spec.secrets();
        let mut buf = vec![0u8; 64 * 1024];
        let mut written: u64 = 0;
        let stopped = loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The restore's stream failed or was cancelled: the
                    // command must not finish on a truncated input.
                    drop(stdin);
                    kill_group(&mut child);
                    let _ = child.wait();
                    return Err(e);
                }
            };
            if let Err(e) = stdin.write_all(&buf[..n]) {
                break Some(e);
            }
            written += n as u64;
        };
        drop(stdin);
        let status = child.wait()?;
        if !status.success() {
            return Err(io::Error::other(failure(
                &spec.name(),
                status,
                &tail,
                &secrets,
            )));
        }
        match stopped {
            None => Ok(()),
            Some(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "{} exited successfully but stopped reading its input after {written} bytes: {e}",
                    spec.name()
                ),
            )),
        }
    }
}

impl Exporter for CommandExporter {
    fn target(&self) -> String {
        self.target.clone()
    }

    fn exists(&self, _path: &SourcePath) -> io::Result<bool> {
        Ok(false)
    }

    fn create_dir(&self, path: &SourcePath, _node: &Node) -> io::Result<()> {
        if path.is_root() {
            Ok(())
        } else {
            Err(self.single_file(format!("the directory {}", path.display())))
        }
    }

    fn write_file(
        &self,
        path: &SourcePath,
        _node: &Node,
        content: &mut dyn Read,
    ) -> io::Result<()> {
        if self.used.swap(true, Ordering::SeqCst) {
            return Err(self.single_file(format!("a second file ({})", path.display())));
        }
        self.pipe(content)
    }

    fn finish_dir(&self, path: &SourcePath, _node: &Node) -> io::Result<()> {
        if path.is_root() {
            Ok(())
        } else {
            Err(self.single_file(format!("the directory {}", path.display())))
        }
    }

    fn finish(&self) -> io::Result<()> {
        if self.used.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "nothing was restored to {}: the restored path holds no file",
                    self.target
                ),
            ))
        }
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
