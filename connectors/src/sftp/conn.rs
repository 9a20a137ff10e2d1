//! SSH sessions: TCP connect, handshake, host-key verification against
//! `known_hosts`, authentication, and a small pool of sessions shared by
//! worker threads, plus the mapping of ssh2 errors to [`SftpErrorKind`].
//!
//! Invariants: a session is only handed out after its host key matched the
//! known_hosts file and authentication succeeded. A session that failed at
//! the transport level is dropped from the pool, so the next caller gets a
//! fresh one. Sessions are shared (ssh2 serializes calls on one session);
//! the pool opens a new one, up to `max_sessions`, when all are busy.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ssh2::{
    CheckResult, ErrorCode, HashType, HostKeyType, KnownHostFileKind, MethodType, Session, Sftp,
};

use super::{SftpAuth, SftpConfig, SftpError, SftpErrorKind};

// SFTP status codes (draft-ietf-secsh-filexfer-02 and later).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_NO_SUCH_PATH: i32 = 10;
const FX_FILE_ALREADY_EXISTS: i32 = 11;
const FX_WRITE_PROTECT: i32 = 12;
const FX_OP_UNSUPPORTED: i32 = 8;

/// One authenticated session with its SFTP channel.
pub(crate) struct Conn {
    // Field order: the SFTP channel closes before the session.
    pub(crate) sftp: Sftp,
    _session: Session,
    broken: AtomicBool,
}

impl Conn {
    /// Maps an ssh2 error of an operation on `path`, and marks the session
    /// broken when the failure was at the transport level.
    pub(crate) fn err(&self, op: &str, path: &str, e: ssh2::Error) -> SftpError {
        let kind = kind_of(&e);
        if kind == SftpErrorKind::ConnectionLost {
            self.broken.store(true, Ordering::Relaxed);
        }
        SftpError::new(kind, format!("SFTP {op} {path}: {}", describe(&e)))
    }

    /// Like [`Conn::err`] for `std::io` errors of file reads and writes.
    pub(crate) fn io_err(&self, op: &str, path: &str, e: std::io::Error) -> SftpError {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => SftpErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => SftpErrorKind::PermissionDenied,
            std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => {
                self.broken.store(true, Ordering::Relaxed);
                SftpErrorKind::ConnectionLost
            }
            _ => SftpErrorKind::Other,
        };
        SftpError::new(kind, format!("SFTP {op} {path}: {e}"))
    }
}

/// Whether an error means "the server does not implement this".
pub(crate) fn unsupported(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::SFTP(FX_OP_UNSUPPORTED)) || e.message().contains("not support")
}

fn kind_of(e: &ssh2::Error) -> SftpErrorKind {
    match e.code() {
        ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH) => SftpErrorKind::NotFound,
        ErrorCode::SFTP(FX_PERMISSION_DENIED | FX_WRITE_PROTECT) => SftpErrorKind::PermissionDenied,
        ErrorCode::SFTP(FX_FILE_ALREADY_EXISTS) => SftpErrorKind::AlreadyExists,
        ErrorCode::SFTP(_) => SftpErrorKind::Other,
        ErrorCode::Session(_) => SftpErrorKind::ConnectionLost,
    }
}

fn describe(e: &ssh2::Error) -> String {
    match e.code() {
        ErrorCode::SFTP(code) => format!("{} (SFTP status {code})", e.message()),
        ErrorCode::Session(code) => format!("{} (libssh2 error {code})", e.message()),
    }
}

/// A pool of up to `max_sessions` sessions to one server.
pub(crate) struct Pool {
    config: SftpConfig,
    conns: Mutex<Vec<Arc<Conn>>>,
    durability: super::durable::Durability,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("server", &self.config.url())
            .finish()
    }
}

impl Pool {
    /// A pool for `config`; opens one session now, so a wrong host key or
    /// credentials fail here.
    pub(crate) fn connect(config: SftpConfig) -> Result<Pool, SftpError> {
        let first = Arc::new(connect(&config)?);
        Ok(Pool {
            config,
            conns: Mutex::new(vec![first]),
            durability: Default::default(),
        })
    }

    /// What the server can make durable.
    pub(crate) fn durability(&self) -> &super::durable::Durability {
        &self.durability
    }

    /// The settings.
    pub(crate) fn config(&self) -> &SftpConfig {
        &self.config
    }

    /// A session: an idle one, a new one while fewer than `max_sessions`
    /// are open, else the least busy.
    pub(crate) fn get(&self) -> Result<Arc<Conn>, SftpError> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| !c.broken.load(Ordering::Relaxed));
        let least = conns.iter().min_by_key(|c| Arc::strong_count(c)).cloned();
        match least {
            Some(c) if Arc::strong_count(&c) == 2 => Ok(c),
            Some(c) if conns.len() >= self.config.max_sessions.max(1) => Ok(c),
            busy => match connect(&self.config) {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    conns.push(fresh.clone());
                    Ok(fresh)
                }
                // The server may limit sessions per user: share a busy one.
                Err(e) => busy.ok_or(e),
            },
        }
    }
}

/// Opens, verifies and authenticates one session.
fn connect(cfg: &SftpConfig) -> Result<Conn, SftpError> {
    let endpoint = cfg.endpoint();
    let addrs: Vec<_> = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| {
            SftpError::new(
                SftpErrorKind::Unreachable,
                format!("cannot resolve SFTP host {}: {e}", cfg.host),
            )
        })?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, cfg.timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        let why = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
        SftpError::new(
            SftpErrorKind::Unreachable,
            format!("cannot connect to SFTP server {endpoint}: {why}"),
        )
    })?;
    let mut session = Session::new().map_err(|e| {
        SftpError::new(
            SftpErrorKind::Other,
            format!("libssh2 session: {}", describe(&e)),
        )
    })?;
    session.set_tcp_stream(tcp);
    session.set_timeout(u32::try_from(cfg.timeout.as_millis()).unwrap_or(u32::MAX));
    let lines = known_hosts_lines(&cfg.known_hosts)?;
    prefer_known_key_types(&session, cfg, &lines);
    session.handshake().map_err(|e| {
        SftpError::new(
            SftpErrorKind::Unreachable,
            format!("SSH handshake with {endpoint} failed: {}", describe(&e)),
        )
    })?;
    verify_host_key(&session, cfg, &lines)?;
    authenticate(&session, cfg)?;
    let sftp = session.sftp().map_err(|e| {
        SftpError::new(
            SftpErrorKind::Other,
            format!("{endpoint} refused the SFTP subsystem: {}", describe(&e)),
        )
    })?;
    Ok(Conn {
        sftp,
        _session: session,
        broken: AtomicBool::new(false),
    })
}

/// The known_hosts file's lines; a missing file is an empty list.
fn known_hosts_lines(path: &Path) -> Result<Vec<String>, SftpError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(SftpError::new(
            SftpErrorKind::HostKeyUnknown,
            format!("cannot read known_hosts file {}: {e}", path.display()),
        )),
    }
}

/// The host patterns known_hosts uses for this server.
fn host_patterns(cfg: &SftpConfig) -> Vec<String> {
    if cfg.port == super::DEFAULT_PORT {
        vec![cfg.host.clone()]
    } else {
        vec![format!("[{}]:{}", cfg.host, cfg.port)]
    }
}

/// Asks the server for a host key of a type known_hosts lists for it (as
/// OpenSSH's client does), so a server with several keys is not refused
/// because it offered another type first. Hashed entries are matched by
/// the check, not here.
fn prefer_known_key_types(session: &Session, cfg: &SftpConfig, lines: &[String]) {
    let patterns = host_patterns(cfg);
    let mut wanted: Vec<&str> = Vec::new();
    for line in lines {
        let mut fields = line.split_whitespace();
        let Some(mut hosts) = fields.next() else {
            continue;
        };
        if hosts.starts_with('@') {
            continue; // @cert-authority / @revoked
        }
        if hosts.starts_with('|') {
            hosts = "";
        }
        if !hosts.split(',').any(|h| patterns.iter().any(|p| p == h)) {
            continue;
        }
        let names: &[&str] = match fields.next() {
            Some("ssh-ed25519") => &["ssh-ed25519"],
            Some("ssh-rsa") => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            Some("ecdsa-sha2-nistp256") => &["ecdsa-sha2-nistp256"],
            Some("ecdsa-sha2-nistp384") => &["ecdsa-sha2-nistp384"],
            Some("ecdsa-sha2-nistp521") => &["ecdsa-sha2-nistp521"],
            _ => &[],
        };
        for n in names {
            if !wanted.contains(n) {
                wanted.push(n);
            }
        }
    }
    let supported = session
        .supported_algs(MethodType::HostKey)
        .unwrap_or_default();
    wanted.retain(|n| supported.contains(n));
    if !wanted.is_empty() {
        // Best effort: libssh2 keeps its default order if this fails.
        let _ = session.method_pref(MethodType::HostKey, &wanted.join(","));
    }
}

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown key type",
    }
}

/// Refuses the server unless known_hosts lists exactly its host key.
fn verify_host_key(session: &Session, cfg: &SftpConfig, lines: &[String]) -> Result<(), SftpError> {
    let endpoint = cfg.endpoint();
    let (key, key_type) = session.host_key().ok_or_else(|| {
        SftpError::new(
            SftpErrorKind::HostKeyUnknown,
            format!("{endpoint} sent no host key"),
        )
    })?;
    let fingerprint = session
        .host_key_hash(HashType::Sha256)
        .map(|h| base64::engine::general_purpose::STANDARD_NO_PAD.encode(h))
        .unwrap_or_default();
    let shown = format!("{} SHA256:{fingerprint}", key_type_name(key_type));
    let mut known = session.known_hosts().map_err(|e| {
        SftpError::new(
            SftpErrorKind::Other,
            format!("libssh2 known hosts: {}", describe(&e)),
        )
    })?;
    for line in lines {
        // Lines libssh2 cannot parse (certificate authorities, key types it
        // does not know) cannot match this key; skip them.
        let _ = known.read_str(line, KnownHostFileKind::OpenSSH);
    }
    let file = cfg.known_hosts.display();
    match known.check_port(&cfg.host, cfg.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(SftpError::new(
            SftpErrorKind::HostKeyMismatch,
            format!(
                "host key of {endpoint} does not match {file}: the server offered {shown}; \
                 refusing to connect (the key changed or someone is intercepting the connection)"
            ),
        )),
        CheckResult::NotFound | CheckResult::Failure => Err(SftpError::new(
            SftpErrorKind::HostKeyUnknown,
            format!(
                "host key of {endpoint} ({shown}) is not in {file}; refusing to connect. \
                 Check the fingerprint with the server's administrator, then add it \
                 (e.g. ssh-keyscan -p {} {} >> {file})",
                cfg.port, cfg.host
            ),
        )),
    }
}

fn authenticate(session: &Session, cfg: &SftpConfig) -> Result<(), SftpError> {
    let endpoint = cfg.endpoint();
    let user = &cfg.user;
    let result = match &cfg.auth {
        SftpAuth::KeyFile { path, passphrase } => {
            if let Err(e) = std::fs::metadata(path) {
                return Err(SftpError::new(
                    SftpErrorKind::AuthenticationFailed,
                    format!("cannot read SSH key file {}: {e}", path.display()),
                ));
            }
            session
                .userauth_pubkey_file(user, None, path, passphrase.as_ref().map(|p| p.as_str()))
                .map_err(|e| format!("with key {}: {}", path.display(), describe(&e)))
        }
        SftpAuth::Password(pw) => session
            .userauth_password(user, pw)
            .map_err(|e| format!("with a password: {}", describe(&e))),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(SftpError::new(
            SftpErrorKind::AuthenticationFailed,
            format!("{endpoint} did not accept the credentials of {user}"),
        )),
        Err(why) => Err(SftpError::new(
            SftpErrorKind::AuthenticationFailed,
            format!("authentication as {user} to {endpoint} failed {why}"),
        )),
    }
}
