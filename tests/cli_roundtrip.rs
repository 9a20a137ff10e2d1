//! End-to-end round trip of the kloset CLI.

mod common;

use common::tree::{assert_trees_equal, build_tricky_tree};
use std::process::Command;

/// Placeholder until the CLI exists: the fixture survives a `cp -a` copy.
#[test]
fn tricky_tree_survives_cp_a() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = tmp.path().join("src");
    let copy = tmp.path().join("copy");
    build_tricky_tree(&src, 1_000);
    let status = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&copy)
        .status()
        .expect("run cp -a");
    assert!(status.success(), "cp -a failed");
    assert_trees_equal(&src, &copy);
}
