//! The SFTP integration through the real daemon against a real OpenSSH
//! server on loopback (`connectors/tests/common/sshd.rs`): a remote directory
//! backed up as a source, restored by a one-shot task into another remote
//! directory byte for byte with modes and mtimes (and refused the second
//! time, the files existing), a local directory backed up into an SFTP
//! store which a check task then reads back; an unknown host key and a
//! rejected client key give precise conditions.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use common::daemon::{Daemon, lit};
use common::e2e::{Setup, restore_task, settled_condition, wait_finished, wait_succeeded};
use common::rng::SplitMix64;
use common::sshd::{Sshd, keygen, set_mode};
use filetime::FileTime;

/// A small tree with what SFTP must carry: nested directories, modes,
/// an empty file and directory, a symlink, a non-ASCII name, 2 MiB of
/// random bytes; fixed mtimes (whole seconds, as SFTP keeps them).
fn build_tree(root: &Path) {
    let files: &[(&str, u32, Vec<u8>)] = &[
        ("top.txt", 0o644, b"hello over ssh\n".to_vec()),
        ("bin/run.sh", 0o755, b"#!/bin/sh\necho run\n".to_vec()),
        ("private/key.pem", 0o600, b"not a real key".to_vec()),
        ("deep/a/b/c/leaf.txt", 0o640, b"deep leaf".to_vec()),
        ("big.bin", 0o644, SplitMix64::new(11).bytes(2 << 20)),
        ("empty", 0o644, Vec::new()),
        ("ünï cödé/✓.txt", 0o644, "grüße".as_bytes().to_vec()),
    ];
    for (i, (rel, mode, bytes)) in files.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
        set_mode(&p, *mode);
        let t = FileTime::from_unix_time(1_600_000_000 + i as i64 * 1000, 0);
        filetime::set_file_mtime(&p, t).expect("mtime");
    }
    std::fs::create_dir_all(root.join("emptydir")).expect("mkdir");
    symlink("top.txt", root.join("link")).expect("symlink");
    set_mode(&root.join("private"), 0o700);
    for (i, dir) in [
        "bin",
        "private",
        "deep/a/b/c",
        "deep/a/b",
        "deep/a",
        "deep",
        "emptydir",
    ]
    .iter()
    .enumerate()
    {
        let t = FileTime::from_unix_time(1_500_000_000 + i as i64 * 77, 0);
        filetime::set_file_mtime(root.join(dir), t).expect("dir mtime");
    }
}

/// Every entry below `root`: kind, mode, mtime (not for links) and content
/// or link target.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .display()
                .to_string();
            let md = std::fs::symlink_metadata(&path).expect("lstat");
            let mode = md.permissions().mode() & 0o7777;
            let desc = if md.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(&path).expect("readlink").display()
                )
            } else if md.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o} mtime {}", md.mtime())
            } else {
                let bytes = std::fs::read(&path).expect("read");
                format!(
                    "file {mode:o} mtime {} {} bytes blake3 {}",
                    md.mtime(),
                    bytes.len(),
                    blake3::hash(&bytes)
                )
            };
            out.insert(rel, desc);
        }
    }
    out
}

fn resource(name: &str, sshd: &Sshd, path: &Path, key: &Path, known_hosts: &Path) -> String {
    format!(
        "[resource.{name}]\nclass = \"server\"\nsubclass = \"ssh\"\nhost = \"127.0.0.1\"\n\
         port = {}\nuser = \"root\"\npath = {}\nkey_file = {}\nknown_hosts_file = {}\n\n",
        sshd.port,
        lit(path),
        lit(key),
        lit(known_hosts)
    )
}

fn condition(d: &Daemon, kind: &str, name: &str) -> serde_json::Value {
    settled_condition(d, kind, name, Duration::from_secs(60))
}

#[test]
fn a_remote_directory_is_backed_up_restored_remotely_and_an_sftp_store_checks() {
    let sshd = Sshd::start();
    let setup = Setup::new();
    let remote_src = sshd.dir.path().join("remote-src");
    let remote_dst = sshd.dir.path().join("remote-dst/restored");
    let remote_store = sshd.dir.path().join("remote-store");
    build_tree(&remote_src);
    let local = setup.path("local");
    build_tree(&local);
    std::fs::write(local.join("local-only.txt"), b"only here").expect("write");
    let (key, kh) = (&sshd.client_key, &sshd.known_hosts);
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
{src}{dst}{rstore}
[resource.nas]
class = "filesystem"
subclass = "nas"
host = "127.0.0.1"
port = {port}
user = "root"
path = {remote_src}
key_file = {key}
known_hosts_file = {kh}

[source.nas_fs]
resource = "nas"
integration = "fs"

[source.nas_sftp]
resource = "nas"
integration = "sftp"

[task.nas_fs]
task = "backup"
source = "nas_fs"
store = "local"

[task.nas_sftp]
task = "backup"
source = "nas_sftp"
store = "local"
[store.local]
location = {local_store}
passphrase_file = "pass"

[store.remote]
resource = "rstore"
passphrase_file = "pass"

[source.remote]
resource = "src"

[source.local]
location = {local}

[destination.remote]
resource = "dst"

[task.backup_remote]
task = "backup"
source = "remote"
store = "local"

[task.backup_local]
task = "backup"
source = "local"
store = "remote"
"#,
            daemon = setup.daemon_table(),
            src = resource("src", &sshd, &remote_src, key, kh),
            dst = resource("dst", &sshd, &remote_dst, key, kh),
            rstore = resource("rstore", &sshd, &remote_store, key, kh),
            local_store = lit(&setup.path("store")),
            local = lit(&local),
            port = sshd.port,
            remote_src = lit(&remote_src),
            key = lit(key),
            kh = lit(kh),
        ),
    );
    let d = setup.start("run", &[]);

    let c = condition(&d, "sources", "remote");
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Listable".into()),
        "{c}"
    );
    let c = condition(&d, "destinations", "remote");
    assert_eq!(
        (&c["ready"], &c["reason"]),
        (&true.into(), &"Writable".into()),
        "{c}"
    );
    let c = condition(&d, "stores", "remote");
    assert_eq!(c["ready"], true, "{c}");

    // A remote directory as a source.
    let backup = wait_succeeded(&d, "backup_remote");
    assert_eq!(backup["stats"]["files"], 7, "{backup}");
    assert_eq!(
        backup["stats"]["source"],
        format!(
            "sftp://root@127.0.0.1:{}{}",
            sshd.port,
            remote_src.display()
        ),
        "{backup}"
    );

    // Restored into another remote directory: the same tree.
    let restore = restore_task(&setup, &d, "restore", "local", "remote", None);
    assert_eq!(
        restore["status"],
        "succeeded",
        "{restore}\n{}",
        d.log_text()
    );
    assert_eq!(listing(&remote_dst), listing(&remote_src));

    // A one-shot restore is a real restore: it refuses to overwrite.
    std::fs::write(remote_dst.join("top.txt"), b"changed since").expect("write");
    let again = restore_task(&setup, &d, "again", "local", "remote", None);
    assert_eq!(again["status"], "failed", "{again}");
    let error = again["error"].as_str().expect("error");
    assert!(error.contains("exist"), "{error}");
    assert_eq!(
        std::fs::read(remote_dst.join("top.txt")).expect("read"),
        b"changed since",
        "nothing was written"
    );

    // A scheduled restore is a restore test: into DEST/<short id>/.
    common::daemon::write_like_ansible(
        &setup.conf(),
        "restore-test.toml",
        "[schedule.restore_test]\ntask = \"restore\"\nstore = \"local\"\n\
         destination = \"remote\"\ncron = \"*/2 * * * * *\"\n",
    );
    let tested = common::daemon::wait_value("a restore test", Duration::from_secs(60), || {
        let v = d.try_json("/api/v1/tasks?schedule=restore_test&limit=5")?;
        common::daemon::tasks(&v)
            .into_iter()
            .find(|t| t["status"] != "running")
    });
    assert_eq!(tested["status"], "succeeded", "{tested}\n{}", d.log_text());
    std::fs::remove_file(setup.conf().join("restore-test.toml")).expect("rm");
    let id = tested["snapshot_id"].as_str().expect("snapshot");
    let short = &id[..8];
    let short_dir = remote_dst.join(short);
    assert!(short_dir.is_dir(), "{short_dir:?}: {tested}");
    assert_eq!(listing(&short_dir), listing(&remote_src));

    // A NAS read through its mount point and over SFTP: the same tree.
    let via_fs = wait_succeeded(&d, "nas_fs");
    let via_sftp = wait_succeeded(&d, "nas_sftp");
    for key in ["files", "dirs", "bytes"] {
        assert_eq!(
            via_fs["stats"][key], via_sftp["stats"][key],
            "{key}: {via_fs} {via_sftp}"
        );
    }
    assert_eq!(via_sftp["stats"]["files"], 7);
    assert!(
        via_sftp["stats"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("sftp://")),
        "{via_sftp}"
    );

    // A local directory into an SFTP store, then a check reading all data.
    let local_backup = wait_succeeded(&d, "backup_local");
    assert_eq!(local_backup["stats"]["files"], 8, "{local_backup}");
    assert!(
        remote_store.read_dir().expect("the SFTP store").count() > 0,
        "the store lives on the server"
    );
    common::daemon::write_like_ansible(
        &setup.conf(),
        "check.toml",
        "[task.check]\ntask = \"check\"\nstore = \"remote\"\nread_data = true\n",
    );
    let check = wait_finished(&d, "check");
    assert_eq!(check["status"], "succeeded", "{check}\n{}", d.log_text());

    // And the SFTP store restores what was backed up.
    let back = setup.path("back");
    common::daemon::write_like_ansible(
        &setup.conf(),
        "back.toml",
        &format!("[destination.back]\nlocation = {}\n", lit(&back)),
    );
    let r = restore_task(&setup, &d, "from_remote", "remote", "back", None);
    assert_eq!(r["status"], "succeeded", "{r}\n{}", d.log_text());
    assert_eq!(listing(&back), listing(&local));
}

#[test]
fn an_unknown_host_key_and_a_rejected_key_are_told_apart() {
    let sshd = Sshd::start();
    let setup = Setup::new();
    let remote = sshd.dir.path().join("remote");
    std::fs::create_dir_all(&remote).expect("mkdir");
    std::fs::write(remote.join("f"), b"x").expect("write");
    let empty_known_hosts = setup.path("empty_known_hosts");
    std::fs::write(&empty_known_hosts, b"").expect("write");
    let stranger = setup.path("stranger_ed25519");
    keygen(&stranger, "");
    // A server that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let _held = std::thread::spawn(move || {
        let streams: Vec<_> = silent.incoming().flatten().collect();
        drop(streams);
    });
    let silent_resource = resource(
        "silent",
        &sshd,
        &remote,
        &sshd.client_key,
        &sshd.known_hosts,
    );
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
{unknown}{rejected}
{silent}
[store.local]
location = {store}
passphrase_file = "pass"

[source.silent]
resource = "silent"

[destination.silent]
resource = "silent"

[source.unknown_host]
resource = "unknown"

[source.rejected_key]
resource = "rejected"

[destination.rejected_key]
resource = "rejected"

[task.backup]
task = "backup"
source = "rejected_key"
store = "local"
"#,
            daemon = setup.daemon_table(),
            unknown = resource(
                "unknown",
                &sshd,
                &remote,
                &sshd.client_key,
                &empty_known_hosts
            ),
            rejected = resource("rejected", &sshd, &remote, &stranger, &sshd.known_hosts),
            silent = silent_resource.replace(
                &format!("port = {}", sshd.port),
                &format!("port = {silent_port}")
            ),
            store = lit(&setup.path("store")),
        ),
    );
    let started = std::time::Instant::now();
    let d = setup.start("run", &[]);

    let c = condition(&d, "sources", "unknown_host");
    assert_eq!(c["ready"], false, "{c}");
    assert_eq!(c["reason"], "HostKeyUnknown", "{c}");
    let message = c["message"].as_str().expect("message");
    assert!(
        message.contains(&sshd.fingerprint()),
        "the key to check: {message}"
    );

    for kind in ["sources", "destinations"] {
        let c = condition(&d, kind, "rejected_key");
        assert_eq!(c["ready"], false, "{kind}: {c}");
        assert_eq!(c["reason"], "AuthenticationFailed", "{kind}: {c}");
    }

    for kind in ["sources", "destinations"] {
        let c = condition(&d, kind, "silent");
        assert_eq!(c["ready"], false, "{kind}: {c}");
        assert_eq!(c["reason"], "Unreachable", "{kind}: {c}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(40), "the tests took {took:?}");

    common::e2e::wait_oneshot_waiting_for(&d, "backup", "source.rejected_key");

    // The private key never shows.
    let private = std::fs::read_to_string(&stranger).expect("key");
    let body = private
        .lines()
        .nth(1)
        .expect("a line of the key")
        .to_string();
    common::e2e::assert_no_secret(
        &d,
        &body,
        &[
            "/api/v1/sources/rejected_key",
            "/api/v1/resources/rejected",
            "/api/v1/tasks",
            "/api/v1/status",
        ],
    );
}
