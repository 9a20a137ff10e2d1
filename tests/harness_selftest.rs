//! Self-tests of the end-to-end harness in tests/common: tree fixture, tree comparison, S3 server.

use crate::common;

use common::cli::{Kloset, TEST_PASSPHRASE};
use common::s3::S3Server;
use common::tree::{self, TreeStats, assert_trees_equal, build_tricky_tree, tree_differences};
use filetime::FileTime;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// Builds a tricky tree in `TMP/orig` and a `cp -a` copy in `TMP/copy`.
fn tree_and_copy(small_files: usize) -> (TempDir, PathBuf, PathBuf, TreeStats) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let orig = tmp.path().join("orig");
    let copy = tmp.path().join("copy");
    let stats = build_tricky_tree(&orig, small_files);
    cp_a(&orig, &copy);
    (tmp, orig, copy, stats)
}

fn cp_a(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp -a");
    assert!(status.success(), "cp -a {from:?} {to:?} failed");
}

/// Runs `assert_trees_equal`, expecting it to panic; returns the message.
fn comparison_panics(expected: &Path, actual: &Path) -> String {
    let result = std::panic::catch_unwind(|| assert_trees_equal(expected, actual));
    let payload = result.expect_err("assert_trees_equal should have panicked");
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        String::from("<non-string panic payload>")
    }
}

/// Asserts that exactly the `expected` substrings show up, one per difference,
/// in the comparison's order (sorted by path bytes).
fn assert_detected(orig: &Path, copy: &Path, expected: &[&str]) {
    let diffs = tree_differences(orig, copy);
    assert_eq!(diffs.len(), expected.len(), "differences: {diffs:#?}");
    for (diff, want) in diffs.iter().zip(expected) {
        assert!(diff.contains(want), "{diff:?} should mention {want:?}");
    }
    let msg = comparison_panics(orig, copy);
    for want in expected {
        assert!(
            msg.contains(want),
            "panic message should mention {want:?}:\n{msg}"
        );
    }
}

fn keep_mtime(path: &Path, f: impl FnOnce()) {
    let md = fs::symlink_metadata(path).expect("lstat");
    let t = FileTime::from_last_modification_time(&md);
    f();
    filetime::set_symlink_file_times(path, t, t).expect("restore mtime");
}

#[test]
fn tricky_tree_has_everything_and_equals_its_cp_a_copy() {
    let (_tmp, orig, copy, stats) = tree_and_copy(20_000);
    assert!(stats.files > 20_000, "{stats:?}");
    assert!(stats.dirs > 100, "{stats:?}");
    assert_eq!(stats.symlinks, 5, "{stats:?}");
    assert!(stats.bytes > 140 * 1024 * 1024, "{stats:?}");
    assert_eq!(tree::tree_stats(&copy), stats);
    let sparse = orig.join(tree::SPARSE_FILE);
    assert_eq!(
        fs::metadata(&sparse).expect("sparse").len(),
        tree::SPARSE_LEN
    );
    assert!(
        tree::allocated_bytes(&sparse) < 1024 * 1024,
        "sparse file is not sparse"
    );
    let exec = fs::metadata(orig.join(tree::EXEC_FILE)).expect("exec file");
    assert_eq!(exec.permissions().mode() & 0o7777, 0o755);
    let newline = fs::symlink_metadata(orig.join(tree::NEWLINE_FILE)).expect("newline file");
    assert!(
        newline.is_file(),
        "the file with a newline in its name is a plain file"
    );
    let dup0 = fs::read(orig.join(tree::DUP_FILES[0])).expect("dup");
    for rel in tree::DUP_FILES {
        assert!(
            fs::read(orig.join(rel)).expect("dup") == dup0,
            "{rel} differs"
        );
    }
    assert_trees_equal(&orig, &copy);
}

#[test]
fn tricky_tree_is_deterministic() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let sa = build_tricky_tree(&a, 500);
    tree::add_non_utf8_names(&a);
    let sb = build_tricky_tree(&b, 500);
    assert_eq!(sa, sb);
    tree::add_non_utf8_names(&b);
    assert_trees_equal(&a, &b);
}

#[test]
fn one_changed_byte_is_detected() {
    let (_tmp, orig, copy, _) = tree_and_copy(100);
    let path = copy.join(tree::RANDOM_FILE);
    keep_mtime(&path, || {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, 20_000_000).expect("read byte");
        f.write_all_at(&[byte[0] ^ 0x01], 20_000_000)
            .expect("flip byte");
    });
    assert_detected(&orig, &copy, &["content differs from byte 20000000"]);
}

#[test]
fn sparse_file_change_and_size_change_are_detected() {
    let (_tmp, orig, copy, _) = tree_and_copy(100);
    let sparse = copy.join(tree::SPARSE_FILE);
    keep_mtime(&sparse, || {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&sparse)
            .expect("open");
        f.write_all_at(b"x", 40 * 1024 * 1024)
            .expect("write in hole");
    });
    let empty = copy.join(tree::EMPTY_FILE);
    keep_mtime(&empty, || fs::write(&empty, b"!").expect("grow empty file"));
    assert_detected(
        &orig,
        &copy,
        &[
            "size 0 expected, 1 found",
            "content differs from byte 41943040",
        ],
    );
}

#[test]
fn mode_change_is_detected() {
    let (_tmp, orig, copy, _) = tree_and_copy(100);
    let path = copy.join(tree::EXEC_FILE);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o744)).expect("chmod");
    assert_detected(&orig, &copy, &["mode 0755 expected, 0744 found"]);
}

#[test]
fn mtime_changes_are_detected_for_files_dirs_and_symlinks() {
    let (_tmp, orig, copy, _) = tree_and_copy(100);
    let t = FileTime::from_unix_time(1_234_567_890, 1);
    filetime::set_file_mtime(copy.join(tree::NEWLINE_FILE), t).expect("file mtime");
    filetime::set_file_mtime(copy.join(tree::EMPTY_DIR), t).expect("dir mtime");
    filetime::set_symlink_file_times(copy.join(tree::DANGLING_LINK), t, t).expect("link mtime");
    // Only the nanoseconds differ.
    let unicode = copy.join(tree::UNICODE_FILE);
    let md = fs::metadata(&unicode).expect("stat");
    let old = FileTime::from_last_modification_time(&md);
    let nanos = (old.nanoseconds() + 1) % 1_000_000_000;
    filetime::set_file_mtime(
        &unicode,
        FileTime::from_unix_time(old.unix_seconds(), nanos),
    )
    .expect("nanosecond mtime");
    assert_detected(
        &orig,
        &copy,
        &[
            "\"/empty/empty-dir\": directory mtime",
            "\"/links/dangling\": symlink mtime",
            "\"/names/line\\nbreak.txt\": file mtime",
            "\"/unicode/Ünïcödé ✓ 日本語.txt\": file mtime",
        ],
    );
}

#[test]
fn symlink_target_and_type_changes_are_detected() {
    let (_tmp, orig, copy, _) = tree_and_copy(100);
    let links = copy.join("links");
    keep_mtime(&links, || {
        let link = copy.join(tree::REL_LINK);
        fs::remove_file(&link).expect("remove link");
        std::os::unix::fs::symlink("../unicode/other.txt", &link).expect("relink");
        let t = FileTime::from_last_modification_time(
            &fs::symlink_metadata(orig.join(tree::REL_LINK)).expect("lstat"),
        );
        filetime::set_symlink_file_times(&link, t, t).expect("link mtime");
        let abs = copy.join(tree::ABS_LINK);
        fs::remove_file(&abs).expect("remove abs link");
        fs::write(&abs, b"/etc/passwd").expect("file instead of link");
    });
    assert_detected(
        &orig,
        &copy,
        &[
            "\"/links/absolute\": type symlink expected, file found",
            "\"/links/relative-to-file\": symlink target",
        ],
    );
}

#[test]
fn missing_and_extra_entries_are_detected() {
    let (_tmp, orig, copy, _) = tree_and_copy(100);
    let names = copy.join("names");
    keep_mtime(&names, || {
        fs::remove_file(copy.join(tree::SPACES_FILE)).expect("remove");
        fs::write(names.join("extra\nfile"), b"").expect("extra");
    });
    let empty = copy.join(tree::EMPTY_DIR);
    keep_mtime(&empty, || {
        fs::create_dir(empty.join("new-dir")).expect("mkdir")
    });
    assert_detected(
        &orig,
        &copy,
        &[
            "\"/empty/empty-dir/new-dir\": unexpected in actual",
            "\"/names/extra\\nfile\": unexpected in actual",
            "\"/names/with several spaces.txt\": missing in actual",
        ],
    );
}

#[test]
fn many_differences_are_all_counted_but_listing_is_capped() {
    let (_tmp, orig, copy, _) = tree_and_copy(300);
    for entry in fs::read_dir(copy.join("many/d007")).expect("read dir") {
        let path = entry.expect("entry").path();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let diffs = tree_differences(&orig, &copy);
    assert_eq!(diffs.len(), 3, "{diffs:#?}");
    fs::set_permissions(
        copy.join(tree::DUP_FILES[0]),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    for d in 0..60 {
        let dir = copy.join(format!("many/d{d:03}"));
        filetime::set_file_mtime(&dir, FileTime::from_unix_time(0, 0)).expect("mtime");
    }
    let msg = comparison_panics(&orig, &copy);
    assert!(msg.contains("trees differ: 64 difference(s)"), "{msg}");
    assert!(msg.contains("… and 14 more"), "{msg}");
}

#[test]
fn s3_server_answers_http_and_lists_objects() {
    let Some(s3) = S3Server::start_or_skip() else {
        return;
    };
    assert!(s3.bucket_dir().is_dir());
    assert_eq!(
        s3.location("repo/one"),
        format!("s3://{}/repo/one", s3.bucket())
    );
    let env = s3.env();
    assert!(env.contains(&("AWS_ENDPOINT_URL".to_owned(), s3.endpoint())));
    assert!(s3.objects().is_empty());

    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s3.port())).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("read timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    // Unsigned requests are refused: that proves authentication is on.
    assert!(
        response.starts_with("HTTP/1.1 403"),
        "response: {response}\nlog:\n{}",
        s3.log()
    );

    let object = s3.bucket_dir().join("repo/one/abc");
    fs::create_dir_all(object.parent().expect("parent")).expect("mkdir");
    fs::write(&object, b"data").expect("write object");
    assert_eq!(s3.objects(), vec![object.clone()]);
    assert_eq!(s3.objects_under("repo/one"), vec![object.clone()]);
    assert!(s3.objects_under("repo/two").is_empty());
    assert_eq!(s3.key_of(&object), "repo/one/abc");

    let port = s3.port();
    drop(s3);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "s3s-fs still listening after drop"
    );
}

#[test]
fn two_s3_servers_run_side_by_side() {
    let (Some(a), Some(b)) = (S3Server::start_or_skip(), S3Server::start_or_skip()) else {
        return;
    };
    assert_ne!(a.port(), b.port());
    assert_ne!(a.root(), b.root());
    let other = a.create_bucket("second-bucket");
    assert!(other.is_dir());
}

#[test]
fn kloset_helper_sets_and_scrubs_the_environment() {
    let k = Kloset::new()
        .envs([("AWS_REGION", "us-east-1")])
        .env("AWS_REGION", "eu-west-1");
    assert!(k.bin().is_file(), "{:?} is not built", k.bin());
    let cmd = k.command(["at", "/tmp/x", "ls"]);
    let envs: Vec<_> = cmd.get_envs().collect();
    let value = |key: &str| {
        envs.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    };
    assert_eq!(
        value("KLOSET_PASSPHRASE"),
        Some(Some(TEST_PASSPHRASE.to_owned()))
    );
    assert_eq!(value("AWS_REGION"), Some(Some("eu-west-1".to_owned())));
    // Inherited credentials are removed, not passed through.
    assert_eq!(value("AWS_ACCESS_KEY_ID"), Some(None));
    let cmd = Kloset::new().without_passphrase().command(["version"]);
    assert!(
        cmd.get_envs()
            .any(|(k, v)| k == "KLOSET_PASSPHRASE" && v.is_none())
    );
    // Whatever the CLI answers to --help, the helper captures an exit code.
    let out = Kloset::new().run(["--help"]);
    assert!(out.code.is_some(), "{}", out.describe());
    assert!(out.command.starts_with("kloset --help"));
}
