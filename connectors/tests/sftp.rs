//! The SFTP integration against a real OpenSSH server on loopback: the
//! store backend under a real repository (backup, restore, check), the
//! object-store semantics it promises (create-only puts, ranges, lists),
//! the importer and exporter round trip, and the connection errors callers
//! branch on (wrong key, unknown or changed host key, nothing listening,
//! unreadable files). Key authentication only: a password test would need
//! a local user with a password, which these tests do not create.

#[path = "../../kloset/tests/common/mod.rs"]
mod common;
#[path = "common/sshd.rs"]
mod sshd;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use common::*;
use kloset::ops::backup::{BackupOptions, backup, backup_from};
use kloset::ops::check::{CheckOptions, check};
use kloset::ops::export::export;
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::storage::Key;
use kloset::{ErrorKind, Location, Repository, Storage};
use kloset_connectors::sftp::{
    SftpAuth, SftpErrorKind, SftpExporter, SftpImporter, SftpStore, SftpUrl, error_kind,
    open_storage,
};
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutPayload, RenameOptions, RenameTargetMode,
};
use sshd::{Sshd, keygen, set_mode};

/// A tree with nested directories, a symlink, an empty file, a 20 MiB
/// random file and odd modes and times.
fn make_source(root: &Path, big: usize) {
    let mut rng = Rng::new(7);
    std::fs::create_dir_all(root.join("a/b/c")).expect("mkdir");
    std::fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    std::fs::write(root.join("big.bin"), rng.bytes(big)).expect("big");
    std::fs::write(root.join("empty"), b"").expect("empty");
    std::fs::write(root.join("a/one.txt"), b"one\n").expect("one");
    std::fs::write(root.join("a/b/c/deep.bin"), rng.bytes(70_000)).expect("deep");
    std::fs::write(root.join("a/b/secret"), b"mode 600").expect("secret");
    set_mode(&root.join("a/b/secret"), 0o600);
    set_mode(&root.join("a/b"), 0o750);
    std::os::unix::fs::symlink("a/one.txt", root.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("a/dangling")).expect("symlink");
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for p in [
        "big.bin",
        "empty",
        "a/one.txt",
        "a/b/c/deep.bin",
        "a/b/secret",
    ] {
        filetime::set_file_mtime(root.join(p), t).expect("mtime");
    }
    for (i, d) in ["a/b/c", "a/b", "a", "empty-dir"].iter().enumerate() {
        let t = filetime::FileTime::from_unix_time(1_500_000_000 + i as i64, 0);
        filetime::set_file_mtime(root.join(d), t).expect("dir mtime");
    }
}

/// Compares two trees like `assert_same_tree`, plus mtimes (whole
/// seconds, the precision SFTP carries) of files and directories.
fn assert_same_tree_and_times(a: &Path, b: &Path) {
    assert_same_tree(a, b);
    assert_same_times(a, b);
}

fn assert_same_times(a: &Path, b: &Path) {
    let (ma, mb) = (
        std::fs::symlink_metadata(a).expect("a"),
        std::fs::symlink_metadata(b).expect("b"),
    );
    if !ma.file_type().is_symlink() {
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", a.display());
    }
    if ma.is_dir() {
        for e in std::fs::read_dir(a).expect("read") {
            let name = e.expect("entry").file_name();
            assert_same_times(&a.join(&name), &b.join(&name));
        }
    }
}

fn no_temp_files_under(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().to_string();
        assert!(
            !name.starts_with(".kloset-tmp-"),
            "temporary file left: {}",
            e.path().display()
        );
        if e.file_type().expect("type").is_dir() {
            no_temp_files_under(&e.path());
        }
    }
}

fn full_check(repo: &Repository) {
    let report = check(
        repo,
        &CheckOptions {
            read_data_percent: Some(100.0),
            ..Default::default()
        },
    )
    .expect("check runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.packs_read > 0);
}

#[test]
fn repository_over_sftp_backs_up_restores_and_checks_clean() {
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    make_source(&src, 20 << 20);
    let remote = sshd.dir.path().join("stores/main");
    let url = sshd.url("root", &remote);
    let loc = SftpUrl::parse(&url).expect("location");
    assert_eq!(loc.to_string(), url);

    // Without create_dir, a missing directory is not a store.
    let err = open_storage(&loc, &sshd.options(), false).expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotAStore, "{err}");

    let storage = open_storage(&loc, &sshd.options(), true).expect("open the SFTP store");
    assert_eq!(storage.location(), url);
    let repo = Repository::create(storage, PASS, create_options(4 << 20)).expect("create");
    let snap = backup(&repo, &src, &BackupOptions::default()).expect("backup");
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    assert_eq!(snap.stats.files, 5);
    drop(repo);

    // A fresh connection sees everything.
    let storage = open_storage(&loc, &sshd.options(), false).expect("reopen");
    let repo = Repository::open(storage, PASS).expect("open repository");
    let out = tmp.path().join("out");
    restore(&repo, &snap, "/", &out, &RestoreOptions::default()).expect("restore");
    assert_same_tree(&src, &out);
    assert!(
        std::fs::read(out.join("big.bin")).expect("big")
            == std::fs::read(src.join("big.bin")).expect("big")
    );
    full_check(&repo);

    // An incremental backup reads nothing again and still checks clean.
    let again = backup(&repo, &src, &BackupOptions::default()).expect("second backup");
    assert_eq!(again.stats.files_unchanged, 5);
    full_check(&repo);

    // The engine's create-only writes are refused for existing names.
    let storage = open_storage(&loc, &sshd.options(), false).expect("reopen");
    let err = storage
        .put_new(Key::Header, bytes::Bytes::from_static(b"not a header"))
        .expect_err("the header exists");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    Repository::open(storage, PASS).expect("header untouched");
    no_temp_files_under(&remote);
}

#[test]
fn object_store_semantics_over_sftp() {
    let sshd = Sshd::start();
    let root = sshd.dir.path().join("objects");
    let store = Arc::new(SftpStore::open(sshd.config("root", &root), true).expect("open"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let p = ObjPath::from("a/b/obj");
        store
            .put_opts(
                &p,
                PutPayload::from_static(b"hello"),
                PutMode::Create.into(),
            )
            .await
            .expect("create");
        // OpenSSH fsyncs the file and, opened as a file, its directory (the
        // rename, and the directories made for it): the put is durable.
        assert_eq!(
            store.durability(),
            (Some(true), Some(true)),
            "file and directory fsync over OpenSSH"
        );
        let err = store
            .put_opts(
                &p,
                PutPayload::from_static(b"other"),
                PutMode::Create.into(),
            )
            .await
            .expect_err("exists");
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
        let got = store
            .get(&p)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), b"hello", "a refused create changes nothing");

        store
            .put_opts(
                &p,
                PutPayload::from_static(b"replaced"),
                PutMode::Overwrite.into(),
            )
            .await
            .expect("overwrite");
        assert_eq!(
            store.get_range(&p, 2..5).await.expect("range").as_ref(),
            b"pla"
        );
        assert_eq!(store.head(&p).await.expect("head").size, 8);
        let missing = store
            .get(&ObjPath::from("nope"))
            .await
            .expect_err("missing");
        assert!(
            matches!(missing, object_store::Error::NotFound { .. }),
            "{missing}"
        );

        store
            .put(&ObjPath::from("a/top"), PutPayload::from_static(b"t"))
            .await
            .expect("put");
        store
            .put(&ObjPath::from("ab/x"), PutPayload::from_static(b"x"))
            .await
            .expect("put");
        use futures::TryStreamExt;
        let mut under_a: Vec<String> = store
            .list(Some(&ObjPath::from("a")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        under_a.sort();
        assert_eq!(under_a, ["a/b/obj", "a/top"], "prefixes are whole segments");
        let none: Vec<_> = store
            .list(Some(&ObjPath::from("a/top")))
            .try_collect()
            .await
            .expect("list under a file");
        assert!(none.is_empty());
        let all: Vec<_> = store.list(None).try_collect().await.expect("list all");
        assert_eq!(all.len(), 3);
        let level = store
            .list_with_delimiter(Some(&ObjPath::from("a")))
            .await
            .expect("delimiter");
        assert_eq!(level.common_prefixes, [ObjPath::from("a/b")]);
        assert_eq!(level.objects.len(), 1);
        assert_eq!(level.objects[0].location, ObjPath::from("a/top"));

        let err = store
            .rename_opts(
                &ObjPath::from("a/top"),
                &p,
                RenameOptions::new().with_target_mode(RenameTargetMode::Create),
            )
            .await
            .expect_err("rename onto an existing name");
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
        store.delete(&p).await.expect("delete");
        assert!(store.head(&p).await.is_err());
        assert!(matches!(
            store.copy(&ObjPath::from("a/top"), &p).await,
            Err(object_store::Error::NotImplemented { .. })
        ));

        // Racing creators of one name: exactly one wins.
        let race = ObjPath::from("race/one");
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let (store, race) = (store.clone(), race.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .put_opts(
                        &race,
                        PutPayload::from(vec![i; 1000]),
                        PutMode::Create.into(),
                    )
                    .await
                    .map(|_| i)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("join") {
                Ok(i) => winners.push(i),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins");
        let got = store
            .get(&race)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), vec![winners[0]; 1000].as_slice());
    });
    no_temp_files_under(&root);
}

#[test]
fn importer_and_exporter_round_trip_remote_trees() {
    let sshd = Sshd::start();
    let src = sshd.dir.path().join("remote-src");
    make_source(&src, 3 << 20);
    let repo = Repository::create(
        Storage::open(&Location::Memory, false).expect("mem"),
        PASS,
        create_options(1 << 20),
    )
    .expect("create");
    let importer = SftpImporter::connect(sshd.config("root", &src)).expect("importer");
    let snap = backup_from(&repo, &importer, &BackupOptions::default()).expect("backup");
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    assert_eq!((snap.stats.files, snap.stats.others), (5, 2));
    assert_eq!(snap.source, sshd.url("root", &src));
    let again = backup_from(&repo, &importer, &BackupOptions::default()).expect("again");
    assert_eq!(
        again.stats.files_unchanged, 5,
        "size and mtime unchanged: not read"
    );

    let dst = sshd.dir.path().join("remote-dst/restored");
    let exporter = SftpExporter::connect(sshd.config("root", &dst)).expect("exporter");
    let report = export(&repo, &snap, "/", &exporter, &RestoreOptions::default()).expect("export");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.files, 5);
    assert_same_tree_and_times(&src, &dst);
    no_temp_files_under(&dst);

    // Without force, existing targets refuse the whole restore.
    std::fs::write(dst.join("a/one.txt"), b"changed").expect("change");
    let err = export(&repo, &snap, "/", &exporter, &RestoreOptions::default())
        .expect_err("targets exist");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(
        std::fs::read(dst.join("a/one.txt")).expect("read"),
        b"changed"
    );
    let force = RestoreOptions {
        force: true,
        ..Default::default()
    };
    export(&repo, &snap, "/", &exporter, &force).expect("forced export");
    assert_same_tree_and_times(&src, &dst);

    // A single file lands at its name under the exporter's root.
    let single = sshd.dir.path().join("remote-single");
    let one = SftpExporter::connect(sshd.config("root", &single)).expect("exporter");
    export(
        &repo,
        &snap,
        "/a/b/c/deep.bin",
        &one,
        &RestoreOptions::default(),
    )
    .expect("one file");
    assert!(
        std::fs::read(single.join("deep.bin")).expect("read")
            == std::fs::read(src.join("a/b/c/deep.bin")).expect("read")
    );
}

#[test]
fn wrong_keys_fail_authentication() {
    let sshd = Sshd::start();
    let dir = sshd.dir.path().to_path_buf();
    let stranger = dir.join("stranger_ed25519");
    keygen(&stranger, "");
    let mut cfg = sshd.config("root", &dir);
    cfg.auth = SftpAuth::KeyFile {
        path: stranger.clone(),
        passphrase: None,
    };
    let err = SftpImporter::connect(cfg).expect_err("unauthorized key");
    assert_eq!(err.kind(), SftpErrorKind::AuthenticationFailed, "{err}");

    // Through the store: the kind survives the engine error chain.
    let loc = SftpUrl::parse(&sshd.url("root", &dir.join("s"))).expect("loc");
    let opts = vec![
        ("sftp_key_file".to_string(), stranger.display().to_string()),
        (
            "sftp_known_hosts_file".to_string(),
            sshd.known_hosts.display().to_string(),
        ),
    ];
    let err = open_storage(&loc, &opts, true).expect_err("unauthorized key");
    assert_eq!(
        error_kind(&err),
        Some(SftpErrorKind::AuthenticationFailed),
        "{err}"
    );
    assert!(!dir.join("s").exists(), "nothing was created");

    // An encrypted key works with its passphrase, fails with another one,
    // and no message shows the passphrase.
    let locked = dir.join("locked_ed25519");
    keygen(&locked, "open sesame");
    let mut authorized = std::fs::read_to_string(dir.join("authorized_keys")).expect("read");
    authorized.push_str(&std::fs::read_to_string(locked.with_extension("pub")).expect("pub"));
    std::fs::write(dir.join("authorized_keys"), authorized).expect("write");
    let with = |pass: &str| {
        let mut cfg = sshd.config("root", &dir);
        cfg.auth = SftpAuth::KeyFile {
            path: locked.clone(),
            passphrase: Some(zeroize::Zeroizing::new(pass.to_string())),
        };
        SftpImporter::connect(cfg)
    };
    with("open sesame").expect("right passphrase");
    let err = with("close sesame").expect_err("wrong passphrase");
    assert_eq!(err.kind(), SftpErrorKind::AuthenticationFailed, "{err}");
    assert!(!err.to_string().contains("sesame"), "{err}");
}

#[test]
fn unknown_or_changed_host_keys_are_refused_with_the_fingerprint() {
    let sshd = Sshd::start();
    let dir = sshd.dir.path().to_path_buf();
    let fingerprint = sshd.fingerprint();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");

    let empty = dir.join("known_hosts.empty");
    std::fs::write(&empty, "# nothing known\n").expect("write");
    for file in [empty.clone(), dir.join("known_hosts.missing")] {
        let mut cfg = sshd.config("root", &dir);
        cfg.known_hosts = file;
        let err = SftpImporter::connect(cfg).expect_err("unknown host key");
        assert_eq!(err.kind(), SftpErrorKind::HostKeyUnknown, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&fingerprint) && msg.contains("127.0.0.1"),
            "{msg}"
        );
    }

    // known_hosts lists another key for this host and port.
    let other = dir.join("other_host_ed25519");
    keygen(&other, "");
    let public = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let mut fields = public.split_whitespace();
    let (kind, key) = (fields.next().expect("type"), fields.next().expect("key"));
    let changed = dir.join("known_hosts.changed");
    std::fs::write(
        &changed,
        format!("[127.0.0.1]:{} {kind} {key}\n", sshd.port),
    )
    .expect("write");
    let mut cfg = sshd.config("root", &dir);
    cfg.known_hosts = changed.clone();
    let err = SftpImporter::connect(cfg).expect_err("changed host key");
    assert_eq!(err.kind(), SftpErrorKind::HostKeyMismatch, "{err}");
    assert!(err.to_string().contains(&fingerprint), "{err}");

    // The store refuses before writing anything.
    let loc = SftpUrl::parse(&sshd.url("root", &dir.join("s"))).expect("loc");
    let mut opts = sshd.options();
    opts[1].1 = changed.display().to_string();
    let err = open_storage(&loc, &opts, true).expect_err("changed host key");
    assert_eq!(
        error_kind(&err),
        Some(SftpErrorKind::HostKeyMismatch),
        "{err}"
    );
    assert!(!dir.join("s").exists());
}

#[test]
fn nothing_listening_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = kloset_connectors::sftp::SftpConfig::new(
        "127.0.0.1",
        "root",
        "/tmp",
        SftpAuth::Password(zeroize::Zeroizing::new("unused".into())),
    );
    cfg.port = port;
    cfg.known_hosts = tmp.path().join("known_hosts");
    let err = SftpExporter::connect(cfg).expect_err("nothing listens");
    assert_eq!(err.kind(), SftpErrorKind::Unreachable, "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let loc = SftpUrl::parse(&format!("sftp://root@127.0.0.1:{port}/srv")).expect("loc");
    let opts = vec![("sftp_password".to_string(), "hunter2".to_string())];
    let err = open_storage(&loc, &opts, true).expect_err("nothing listens");
    assert_eq!(error_kind(&err), Some(SftpErrorKind::Unreachable), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[test]
fn unreadable_remote_files_are_recorded_not_fatal() {
    // Logged in as `nobody`, root's private files are unreadable.
    let sshd = Sshd::start();
    let src = sshd.dir.path().join("shared");
    std::fs::create_dir_all(src.join("locked")).expect("mkdir");
    std::fs::write(src.join("public.txt"), b"everyone").expect("write");
    std::fs::write(src.join("private.txt"), b"root only").expect("write");
    std::fs::write(src.join("locked/inside"), b"root only").expect("write");
    set_mode(&src, 0o755);
    set_mode(&src.join("public.txt"), 0o644);
    set_mode(&src.join("private.txt"), 0o600);
    set_mode(&src.join("locked"), 0o700);
    assert_eq!(
        std::fs::metadata(src.join("private.txt"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let repo = Repository::create(
        Storage::open(&Location::Memory, false).expect("mem"),
        PASS,
        create_options(1 << 20),
    )
    .expect("create");
    let importer = SftpImporter::connect(sshd.config("nobody", &src))
        .unwrap_or_else(|e| panic!("login as nobody: {e}\n{}", sshd.log()));
    let snap = backup_from(&repo, &importer, &BackupOptions::default()).expect("backup goes on");
    let mut paths: Vec<&str> = snap.errors.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/locked", "/private.txt"], "{:?}", snap.errors);
    assert!(
        snap.errors
            .iter()
            .all(|e| e.error.to_lowercase().contains("permission denied")),
        "{:?}",
        snap.errors
    );
    assert_eq!(snap.stats.files, 1, "the readable file is backed up");

    let out = tempfile::tempdir().expect("tmp");
    restore(
        &repo,
        &snap,
        "/public.txt",
        out.path(),
        &RestoreOptions::default(),
    )
    .expect("restore");
    assert_eq!(
        std::fs::read(out.path().join("public.txt")).expect("read"),
        b"everyone"
    );
}
