//! The `kloset` CLI and `klosetd validate` share one configuration: `@STORE`,
//! `@SOURCE` and `@DEST` resolve from `--config DIR`, passphrase included,
//! and `klosetd validate` reports every error with file and line.

use crate::common;

use std::process::Command;

use common::cli::Kloset;
use common::tree::{assert_trees_equal, build_tricky_tree};

#[test]
fn named_store_source_and_destination() {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("conf.d");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let src = tmp.path().join("data");
    build_tricky_tree(&src, 200);
    std::fs::write(conf.join("pass"), "named passphrase\n").expect("write");
    std::fs::write(
        conf.join("10-objects.toml"),
        "[store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n\n[source.data]\nlocation = \"../data\"\nexcludes = [\"many\"]\n\n[destination.out]\nlocation = \"../out\"\n",
    )
    .expect("write");
    let conf_s = conf.to_str().expect("utf8");
    // No KLOSET_PASSPHRASE: the passphrase comes from the store's declaration.
    let k = Kloset::new().without_passphrase();
    k.must([
        "--config",
        conf_s,
        "at",
        "@main",
        "create",
        "--kdf-memory-mib",
        "8",
    ]);
    k.must(["--config", conf_s, "at", "@main", "backup", "@data"]);
    let ls = k
        .must(["--config", conf_s, "at", "@main", "ls"])
        .stdout_str();
    assert!(
        ls.contains("  data"),
        "the snapshot is named after the source: {ls}"
    );
    k.must([
        "--config", conf_s, "at", "@main", "restore", "-to", "@out", "latest",
    ]);
    let out = tmp.path().join("out");
    assert!(!out.join("many").exists(), "the source's excludes apply");
    std::fs::remove_dir_all(src.join("many")).expect("rm");
    assert_trees_equal(&src, &out);
    // The same store by path with the same passphrase.
    let by_path = Kloset::new().passphrase("named passphrase");
    by_path.must([
        "at",
        tmp.path().join("store").to_str().expect("utf8"),
        "check",
    ]);
    // Unknown names list what is declared.
    let bad = k.run(["--config", conf_s, "at", "@nope", "ls"]);
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    assert!(
        bad.stderr_str().contains("no [store.nope]") && bad.stderr_str().contains("main"),
        "{}",
        bad.describe()
    );
}

#[test]
fn klosetd_validate_reports_every_error_with_file_and_line() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/config/invalid/wrong-keys-for-kind");
    let out = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .arg("validate")
        .arg(&root)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for line in std::fs::read_to_string(root.join("expected"))
        .expect("expected")
        .lines()
    {
        assert!(stderr.contains(line), "missing {line:?} in {stderr}");
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.d");
    let out = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .arg("validate")
        .arg(&example)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
