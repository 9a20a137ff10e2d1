//! Tests of `command.rs` with real `sh -c` commands: byte-exact capture,
//! failures with their stderr tail, secrets kept out of errors, no zombies,
//! and a backup and restore through a store in memory.

use super::*;
use kloset::ops::backup::{BackupOptions, backup_from};
use kloset::ops::export::export;
use kloset::ops::restore::RestoreOptions;
use kloset::repository::CreateOptions;
use kloset::{Location, Repository, Storage};

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new("sh").args(["-c", script])
}

fn read_all(spec: &CommandSpec) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    CommandReader::spawn(spec)?.read_to_end(&mut out)?;
    Ok(out)
}

fn root_file(name: &str) -> SourcePath {
    SourcePath::root().join(name.as_bytes())
}

fn memory_repo() -> Repository {
    let storage = Storage::open(&Location::Memory, false).expect("storage");
    let opts = CreateOptions {
        kdf: kloset::crypto::KdfParams::with_cost(64, 1, 1),
        ..CreateOptions::default()
    };
    Repository::create(storage, b"pass", opts).expect("create")
}

#[test]
fn output_is_captured_byte_exact() {
    let out = read_all(&sh(r"printf 'a\000b\nc\377'")).expect("read");
    assert_eq!(out, b"a\0b\nc\xff");
    assert_eq!(read_all(&sh("true")).expect("empty"), b"");
}

#[test]
fn a_fifty_mib_stream_arrives_intact_through_a_small_buffer() {
    const PATTERN: &[u8] = b"0123456789abcdef\n";
    const TOTAL: usize = 50 << 20;
    let mut reader = CommandReader::spawn(&sh(&format!("yes 0123456789abcdef | head -c {TOTAL}")))
        .expect("spawn");
    let mut buf = [0u8; 8192];
    let mut seen = 0usize;
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, PATTERN[(seen + i) % PATTERN.len()], "byte {}", seen + i);
        }
        seen += n;
    }
    assert_eq!(seen, TOTAL);
    assert_eq!(reader.read(&mut buf).expect("after the end"), 0);
}

#[test]
fn a_failing_command_fails_the_read_with_its_stderr_tail() {
    let mut reader = CommandReader::spawn(&sh(
        "printf 'partial output'; echo 'first line' >&2; echo 'boom: disk on fire' >&2; exit 3",
    ))
    .expect("spawn");
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).expect_err("must fail");
    assert_eq!(out, b"partial output", "the output before the failure");
    let msg = err.to_string();
    assert!(msg.starts_with("sh failed (exit status: 3)"), "{msg}");
    assert!(msg.contains("first line; boom: disk on fire"), "{msg}");
    let failed = CommandFailed::of(&err).expect("typed");
    assert_eq!(failed.program, "sh");
    // Later reads keep failing: a caller cannot mistake it for a clean end.
    assert!(reader.read(&mut [0u8; 16]).is_err());
}

#[test]
fn a_signal_is_a_failure() {
    let err = read_all(&sh("printf x; kill -9 $$")).expect_err("killed");
    assert!(err.to_string().contains("signal: 9"), "{err}");
}

#[test]
fn stderr_is_bounded_and_never_blocks_the_command() {
    // 20 000 lines (≈ 300 KiB) fill any pipe many times over: if stderr were
    // not drained the command would hang and the test never end.
    let script = "i=0; while [ $i -lt 20000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done; \
                  echo 'the real reason' >&2; exit 1";
    let err = read_all(&sh(script)).expect_err("fails");
    let msg = err.to_string();
    assert!(
        msg.ends_with("the real reason"),
        "{}",
        &msg[msg.len() - 100..]
    );
    assert!(!msg.contains("noise line 0;"), "only the tail is kept");
    // Each newline becomes "; ", one byte more per line.
    assert!(
        msg.len() < STDERR_TAIL + STDERR_TAIL / 4,
        "{} bytes",
        msg.len()
    );
}

#[test]
fn env_secrets_never_appear_in_errors_or_debug() {
    let spec = sh("echo \"auth with $SECRET failed\" >&2; exit 2").env("SECRET", "hunter2-s3cret");
    assert!(!format!("{spec:?}").contains("hunter2"), "{spec:?}");
    let err = read_all(&spec).expect_err("fails");
    let msg = err.to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("auth with <redacted> failed"), "{msg}");
    // The value does reach the command.
    let out = read_all(&sh("printf %s \"$SECRET\"").env("SECRET", "hunter2-s3cret")).expect("ok");
    assert_eq!(out, b"hunter2-s3cret");
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let err = read_all(&CommandSpec::new("/nonexistent/pg_dump")).expect_err("missing");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/pg_dump"), "{err}");
}

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The processes whose process group is `pgid`.
fn group_of(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let group = s.rsplit_once(')')?.1.split_whitespace().nth(2)?.to_owned();
                    Some(group == pgid.to_string())
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn a_reader_dropped_early_kills_and_reaps_its_command_group() {
    let script = "printf 'y\\ny\\ny\\ny\\ny\\n'; sleep 1000; echo unreachable";
    let mut reader = CommandReader::spawn(&sh(script)).expect("spawn");
    let mut buf = [0u8; 10];
    reader.read_exact(&mut buf).expect("some output");
    assert_eq!(&buf, b"y\ny\ny\ny\ny\n");
    let pid = reader.id();
    // The shell's child (sleep) shares its process group; it does not
    // write, so only a group kill ends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let group = loop {
        let group = group_of(pid);
        if group.len() >= 2 {
            break group;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sleep never started: {group:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(reader);
    assert!(gone(pid), "the shell was reaped, not left a zombie");
    while !group.iter().all(|p| gone(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "group {group:?} still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_importer_shows_a_root_of_command_outputs() {
    let imp = CommandImporter::new(
        "cmd://test".into(),
        vec![CommandFile {
            name: "a.out".into(),
            command: sh("printf hello"),
        }],
    );
    let root = imp.root().expect("root");
    assert_eq!((root.kind, root.mode), (NodeKind::Dir, 0o700));
    let listed = imp
        .list(&SourcePath::root(), &imp.root().expect("root"))
        .expect("list");
    assert_eq!(listed.len(), 1);
    let node = listed[0].node.as_ref().expect("node");
    assert_eq!(
        (node.kind, node.mode, node.size),
        (NodeKind::File, 0o600, 0)
    );
    assert!(node.ctime_ns > 0 && node.mtime_ns > 0);
    let mut s = String::new();
    imp.open(&root_file("a.out"), node)
        .expect("open")
        .reader
        .read_to_string(&mut s)
        .expect("read");
    assert_eq!(s, "hello");
    assert!(imp.open(&root_file("b"), node).is_err());
    assert!(
        imp.list(&root_file("a.out"), &imp.root().expect("root"))
            .is_err()
    );
}

#[test]
fn the_exporter_pipes_exact_bytes_into_one_command() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("got");
    let exp = CommandExporter::new(
        "cmd://restore".into(),
        sh("cat > \"$OUT\"").env("OUT", out.display().to_string()),
    );
    let root = SourcePath::root();
    let node = CommandImporter::new(String::new(), vec![]).node(b"f", NodeKind::File, 0o600);
    assert!(!exp.exists(&root_file("f")).expect("exists"));
    exp.create_dir(&root, &node).expect("root is a no-op");
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    exp.write_file(&root_file("f"), &node, &mut data.as_slice())
        .expect("write");
    exp.finish_dir(&root, &node).expect("finish root");
    exp.finish().expect("one file was written");
    assert_eq!(std::fs::read(&out).expect("read back"), data);
    let second = exp
        .write_file(&root_file("g"), &node, &mut &b"x"[..])
        .expect_err("a second file");
    assert!(
        second.to_string().contains("takes a single file"),
        "{second}"
    );
    let sub = exp
        .create_dir(&root_file("d"), &node)
        .expect_err("a directory");
    assert!(sub.to_string().contains("takes a single file"), "{sub}");
    let unused = CommandExporter::new("cmd://x".into(), sh("cat >/dev/null"));
    assert!(
        unused.finish().is_err(),
        "a restore that wrote nothing fails"
    );
}

#[test]
fn the_exporter_reports_a_failing_command_with_its_stderr() {
    let node = CommandImporter::new(String::new(), vec![]).node(b"f", NodeKind::File, 0o600);
    // It stops reading at once: the write fails, the exit status explains why.
    let exp = CommandExporter::new(
        "cmd://x".into(),
        sh("echo \"restore refused, pw $PW\" >&2; exit 4").env("PW", "topsecret"),
    );
    let data = vec![7u8; 4 << 20];
    let err = exp
        .write_file(&root_file("f"), &node, &mut data.as_slice())
        .expect_err("fails");
    let msg = err.to_string();
    assert!(
        msg.contains("sh failed (exit status: 4): restore refused, pw <redacted>"),
        "{msg}"
    );
    // It reads everything and then fails.
    let exp = CommandExporter::new(
        "cmd://x".into(),
        sh("cat >/dev/null; echo late >&2; exit 5"),
    );
    let err = exp
        .write_file(&root_file("f"), &node, &mut data.as_slice())
        .expect_err("fails");
    assert!(err.to_string().contains("exit status: 5): late"), "{err}");
}

#[test]
fn a_failing_stream_kills_the_exporter_command() {
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("chunk failed authentication"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let marker = dir.path().join("finished");
    let exp = CommandExporter::new(
        "cmd://x".into(),
        sh("cat >/dev/null; touch \"$M\"").env("M", marker.display().to_string()),
    );
    let node = CommandImporter::new(String::new(), vec![]).node(b"f", NodeKind::File, 0o600);
    let err = exp
        .write_file(&root_file("f"), &node, &mut Broken(3))
        .expect_err("stream fails");
    assert!(err.to_string().contains("authentication"), "{err}");
    assert!(
        !marker.exists(),
        "the command never saw a clean end of input"
    );
}

#[test]
fn backup_and_restore_through_commands_and_a_store() {
    let repo = memory_repo();
    let imp = CommandImporter::new(
        "cmd://db".into(),
        vec![
            CommandFile {
                name: "one.dump".into(),
                command: sh("yes 'row of data' | head -c 3000000"),
            },
            CommandFile {
                name: "two.sql".into(),
                command: sh("printf 'globals'"),
            },
        ],
    );
    let options = BackupOptions {
        all_or_nothing: true,
        ..BackupOptions::default()
    };
    let snap = backup_from(&repo, &imp, &options).expect("backup");
    assert_eq!((snap.stats.files, snap.stats.bytes), (2, 3_000_007));
    let again = backup_from(&repo, &imp, &options).expect("second backup");
    assert_eq!(
        again.stats.files_unchanged, 0,
        "command output is always read"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("restored");
    let exp = CommandExporter::new(
        "cmd://restore".into(),
        sh("cat > \"$OUT\"").env("OUT", out.display().to_string()),
    );
    export(&repo, &again, "/one.dump", &exp, &RestoreOptions::default()).expect("restore");
    let got = std::fs::read(&out).expect("restored file");
    assert_eq!(got.len(), 3_000_000);
    assert!(got.starts_with(b"row of data\nrow of data\n"));
    let whole = CommandExporter::new("cmd://restore".into(), sh("cat >/dev/null"));
    let err =
        export(&repo, &again, "/", &whole, &RestoreOptions::default()).expect_err("two files");
    assert!(err.to_string().contains("takes a single file"), "{err}");

    let failing = CommandImporter::new(
        "cmd://db".into(),
        vec![CommandFile {
            name: "bad.dump".into(),
            command: sh("printf half; echo 'dump: lost connection' >&2; exit 1"),
        }],
    );
    let before = repo.snapshots().expect("list").len();
    let err = backup_from(&repo, &failing, &options).expect_err("all or nothing");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.dump") && msg.contains("dump: lost connection"),
        "{msg}"
    );
    assert_eq!(
        repo.snapshots().expect("list").len(),
        before,
        "no snapshot written"
    );
}
