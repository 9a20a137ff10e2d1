//! Running the real `klosetd run` from tests, driven only through files,
//! signals and HTTP.
//!
//! - [`Daemon`]: spawns `klosetd run --config DIR` with its log (stderr) in
//!   a file, learns the HTTP port from the log line `status endpoint
//!   listening addr=…` (the config says `listen = "127.0.0.1:0"`), talks
//!   plain HTTP with ureq (non-2xx statuses are answers, not errors), sends
//!   signals, and kills the process on drop so a failing test leaves no
//!   daemon behind.
//! - [`wait_for`] / [`wait_until`]: poll a condition with a generous limit;
//!   never a fixed sleep as synchronisation.
//! - [`write_like_ansible`] (temp file, fsync, rename over the target) and
//!   [`swap_like_nix`] (a new symlink renamed over the old one): how config
//!   management tools change a config directory.
//! - [`FakeS3`]: an S3 endpoint that denies everything, optionally only
//!   once told to (a readiness test stays in flight until then).
//! - Small readers of the JSON API: [`schedule_names`], [`tasks`],
//!   [`time`].

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// How long the daemon may take to start serving.
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// The usual limit of a wait on a loaded CI machine.
pub const LIMIT: Duration = Duration::from_secs(60);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(150);

/// Inherited variables that would change what the daemon does.
const SCRUBBED: &[&str] = &[
    "RUST_LOG",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "STATE_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "KLOSET_PASSPHRASE",
    "KLOSET_PASSPHRASE_FILE",
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

const LISTENING: &str = "status endpoint listening addr=";

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Allow` header, if any.
    pub allow: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body as text.
    pub body: String,
}

/// A running `klosetd run`.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    log: PathBuf,
    agent: ureq::Agent,
}

impl Daemon {
    /// Starts `klosetd run --config conf_dir` with stderr in `log_path` and
    /// `envs` added to a scrubbed environment; waits until it serves HTTP.
    pub fn start(conf_dir: &Path, log_path: &Path, envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(
            Command::new(env!("CARGO_BIN_EXE_klosetd")),
            conf_dir,
            log_path,
            envs,
        )
    }

    /// Like [`Daemon::start`], with `cmd` as the program: for example
    /// `setpriv … /copy/of/klosetd` to run it as another user.
    pub fn start_with(
        mut cmd: Command,
        conf_dir: &Path,
        log_path: &Path,
        envs: &[(&str, &str)],
    ) -> Daemon {
        let log = std::fs::File::create(log_path).expect("log file");
        cmd.args(["run", "--config"])
            .arg(conf_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for key in SCRUBBED {
            cmd.env_remove(key);
        }
        cmd.env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start klosetd");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let mut daemon = Daemon {
            child,
            log: log_path.to_path_buf(),
            agent,
        };
        let deadline = Instant::now() + START_LIMIT;
        while daemon.port().is_none() {
            if let Some(status) = daemon.child.try_wait().expect("wait") {
                panic!(
                    "klosetd exited ({status}) before serving; log:\n{}",
                    daemon.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "klosetd did not serve within {START_LIMIT:?}; log:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The port of the latest `status endpoint listening` line (the
    /// endpoint moves when `listen` changes).
    pub fn port(&self) -> Option<u16> {
        let log = self.log_text();
        let line = log.lines().rev().find(|l| l.contains(LISTENING))?;
        let addr = line.split(LISTENING).nth(1)?.split_whitespace().next()?;
        addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        let port = self.port().expect("the daemon's port");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// One request; `Err` when there is no HTTP answer at all.
    pub fn try_request(&self, method: &str, path: &str) -> Result<Reply, String> {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .body(())
            .map_err(|e| e.to_string())?;
        let mut response = self.agent.run(request).map_err(|e| e.to_string())?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (allow, content_type) = (header("allow"), header("content-type"));
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok(Reply {
            status,
            allow,
            content_type,
            body,
        })
    }

    /// One request that must be answered.
    pub fn request(&self, method: &str, path: &str) -> Reply {
        self.try_request(method, path)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log_text()))
    }

    /// `GET path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self.request("GET", path);
        (r.status, r.body)
    }

    /// `GET path`, 200 and JSON.
    pub fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `GET path` as JSON, `None` on any failure (for polled conditions).
    pub fn try_json(&self, path: &str) -> Option<Value> {
        let r = self.try_request("GET", path).ok()?;
        (r.status == 200).then_some(())?;
        serde_json::from_str(&r.body).ok()
    }

    /// The status of `GET path`, `None` without an answer.
    pub fn status_of(&self, path: &str) -> Option<u16> {
        self.try_request("GET", path).ok().map(|r| r.status)
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, `"KILL"` …) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name} {}", self.pid());
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code (-1 when
    /// killed by a signal).
    pub fn sigterm_and_wait(&mut self, within: Duration) -> i32 {
        self.signal("TERM");
        self.wait_exit(within)
    }

    /// Waits for the process to exit; returns the exit code (-1 when
    /// killed by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "klosetd did not stop within {within:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for `needle` in the log.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        wait_until(&format!("{needle:?} in the log"), limit, || {
            self.log_text().contains(needle)
        });
    }

    /// The names of `/api/v1/schedules`, sorted (`None` without an answer).
    pub fn schedule_names(&self) -> Option<Vec<String>> {
        self.try_json("/api/v1/schedules")
            .map(|v| schedule_names(&v))
    }

    /// `/api/v1/tasks?query` (newest first).
    pub fn tasks(&self, query: &str) -> Vec<Value> {
        tasks(&self.json(&format!("/api/v1/tasks?{query}")))
    }

    /// `/api/v1/status`.
    pub fn status(&self) -> Value {
        self.json("/api/v1/status")
    }

    /// The applied revision (`/api/v1/status`).
    pub fn applied_revision(&self) -> String {
        self.status()["config"]["applied_revision"]
            .as_str()
            .expect("an applied revision")
            .to_string()
    }

    /// Waits for `/readyz` 200.
    pub fn wait_ready(&self) {
        wait_for("/readyz 200", LIMIT, || {
            let r = self.try_request("GET", "/readyz")?;
            (r.status == 200)
                .then_some(())
                .ok_or(format!("{}: {}", r.status, r.body))
        });
    }

    /// Waits until `/api/v1/schedules` lists exactly `want` (sorted).
    pub fn wait_schedules(&self, want: &[&str]) {
        wait_for(&format!("schedules {want:?}"), LIMIT, || {
            match self.schedule_names() {
                Some(n) if n == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }

    /// What triggered the reload that found `revision` valid, from its log
    /// line (`start`, `file change`, `SIGHUP`, `resync`).
    pub fn reload_trigger(&self, revision: &str) -> Option<String> {
        let short = revision.get(..12).unwrap_or(revision);
        let log = self.log_text();
        let line = log.lines().find(|l| {
            l.contains("configuration is valid") && l.contains(&format!("revision=\"{short}\""))
        })?;
        let rest = line.split("trigger=\"").nth(1)?;
        rest.split('"').next().map(str::to_owned)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            self.kill9();
        }
    }
}

/// Polls `ok` every [`POLL`] until it holds; panics after `limit` with the
/// last state `ok` described.
pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        let last = match ok() {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last: {last}"
        );
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] with a plain boolean.
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    wait_for(what, limit, || if ok() { Ok(()) } else { Err("no".into()) });
}

/// Polls `f` until it gives a value.
pub fn wait_value<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    wait_until(what, limit, || {
        out = f();
        out.is_some()
    });
    out.expect("a value")
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}{:08x}{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `dir/name` like Ansible's `copy`/`template`: a hidden temp file
/// `.name.XXXX.tmp` in the same directory, fsync, rename over the target.
pub fn write_like_ansible(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.{}.tmp", unique()));
    let mut f = std::fs::File::create(&tmp).expect("create temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    f.sync_all().expect("fsync temp file");
    drop(f);
    std::fs::rename(&tmp, dir.join(name)).expect("rename over the target");
}

/// Points the symlink `link` at `new_target` atomically, like a Nix
/// generation switch: a new link under a temp name next to it, renamed
/// over it.
pub fn swap_like_nix(link: &Path, new_target: &Path) {
    let name = link.file_name().expect("link name").to_string_lossy();
    let tmp = link.with_file_name(format!(".{name}.{}.tmp", unique()));
    std::os::unix::fs::symlink(new_target, &tmp).expect("new symlink");
    std::fs::rename(&tmp, link).expect("rename the symlink over the old one");
}

/// The sorted names of a `/api/v1/schedules` document.
pub fn schedule_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["schedules"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The tasks of a `/api/v1/tasks` document.
pub fn tasks(v: &Value) -> Vec<Value> {
    v["tasks"].as_array().cloned().unwrap_or_default()
}

/// An RFC 3339 time field (`None` when null or absent).
pub fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A TOML literal string for a path (test paths hold no `'`).
pub fn lit(path: &Path) -> String {
    let s = path.to_str().expect("utf-8 path");
    assert!(!s.contains('\''), "{s}");
    format!("'{s}'")
}

/// A fake S3 endpoint that answers every request 403 once `open` is set
/// (until then it holds the request), and keeps the request heads.
#[derive(Debug)]
pub struct FakeS3 {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Set to answer (held requests are then answered too).
    pub open: Arc<AtomicBool>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl FakeS3 {
    /// Serves on a free loopback port; `open`: answer at once.
    pub fn start(open: bool) -> FakeS3 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicBool::new(open));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (o, h) = (open.clone(), heads.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let (o, h) = (o.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n")
                        && stream.read(&mut byte).is_ok_and(|n| n == 1)
                    {
                        head.push(byte[0]);
                    }
                    h.lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while !o.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
                    let _ = write!(
                        stream,
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        FakeS3 { port, open, heads }
    }

    /// The request heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }
}

/// One HTTP answer with every header (names lowercase).
#[derive(Debug, Clone)]
pub struct FullReply {
    /// The status code.
    pub status: u16,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl FullReply {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Daemon {
    /// One request with extra request headers; every response header kept.
    pub fn request_full(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> FullReply {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(()).expect("request");
        let mut response = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log_text()));
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        FullReply {
            status,
            headers,
            body,
        }
    }
}

/// A raw HTTP/1.1 answer: status, headers (names lowercased), body.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// The status code.
    pub status: u16,
    /// Every header, name lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl RawReply {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `METHOD target HTTP/1.1` exactly as written (no normalisation of
/// `..` or percent escapes, unlike ureq and curl) with `headers` on a new
/// connection (`Connection: close`); returns the status, the headers and
/// the connection to read the body from, until the server closes it.
pub fn raw_open(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (
    u16,
    Vec<(String, String)>,
    std::io::BufReader<std::net::TcpStream>,
) {
    use std::io::BufRead;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send the request");
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let Some((k, v)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    (status, headers, reader)
}

/// [`raw_open`] and the whole body.
pub fn raw_http(port: u16, method: &str, target: &str, headers: &[(&str, &str)]) -> RawReply {
    let (status, headers, mut reader) = raw_open(port, method, target, headers);
    let mut body = Vec::new();
    reader.read_to_end(&mut body).expect("read the body");
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked && method != "HEAD" {
        body = dechunk(&body).unwrap_or_else(|| panic!("{method} {target}: bad chunked body"));
    }
    RawReply {
        status,
        headers,
        body,
    }
}

/// The payload of a `Transfer-Encoding: chunked` body (streamed answers
/// such as listings); `None` if it is malformed or cut short.
pub fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

impl Daemon {
    /// Waits for the one-shot `[task.NAME]` to succeed (panics if it fails)
    /// and returns its record.
    pub fn wait_task(&self, name: &str) -> Value {
        wait_value(
            &format!("task {name} to succeed"),
            Duration::from_secs(300),
            || {
                let t = self.try_json(&format!("/api/v1/tasks?task={name}&limit=1"))?;
                let t = tasks(&t).into_iter().next()?;
                assert!(
                    t["status"] == "running" || t["status"] == "succeeded",
                    "task {name}: {t}"
                );
                (t["status"] == "succeeded").then_some(t)
            },
        )
    }
}
