//! Builds a local store with N tiny data blobs for measuring prune's peak
//! memory (docs/design.md, "Prune: memory"): a snapshot `old` of the first
//! half of the blobs, a snapshot `new` of the last three quarters, and
//! `old` forgotten, so a prune finds a quarter of the blobs unused.
//!
//! ```sh
//! cargo run --release -p kloset --example prune_memory -- DIR 10000000
//! KLOSET_PASSPHRASE=bench /usr/bin/time -v target/release/kloset at DIR prune --grace 0s
//! ```

use std::path::PathBuf;

use kloset::crypto::KdfParams;
use kloset::id::{BlobId, BlobKind, SnapshotId};
use kloset::repository::{CreateOptions, now_ns};
use kloset::snapshot::{SNAPSHOT_VERSION, Snapshot, SnapshotStats};
use kloset::storage::Key;
use kloset::tree::{Node, NodeKind, Tree};
use kloset::writer::Writer;
use kloset::{Location, Repository, Storage};
use rayon::prelude::*;

/// Chunks per file and files per directory of the synthetic trees.
const CHUNKS_PER_FILE: usize = 1000;
const FILES_PER_DIR: usize = 100;

fn node(name: String, kind: NodeKind) -> Node {
    Node {
        name: serde_bytes::ByteBuf::from(name.into_bytes()),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        device: 0,
        size: 0,
        target: None,
        rdev: None,
        content: Vec::new(),
        subtree: None,
    }
}

/// Saves blobs `range` and a tree over them; commits a snapshot.
fn snapshot(repo: &Repository, range: std::ops::Range<u64>, source: &str) -> Snapshot {
    let writer = Writer::new(repo).expect("writer");
    let ids: Vec<BlobId> = range
        .into_par_iter()
        .map(|i| {
            let raw = [i.to_le_bytes(), 0x6b6c_6f73_6574u64.to_le_bytes()].concat();
            writer.save_blob(BlobKind::Data, &raw).expect("save").0
        })
        .collect();
    let mut dirs = Vec::new();
    for (d, dir_ids) in ids.chunks(CHUNKS_PER_FILE * FILES_PER_DIR).enumerate() {
        let files = dir_ids
            .chunks(CHUNKS_PER_FILE)
            .enumerate()
            .map(|(f, content)| {
                let mut n = node(format!("f{f}"), NodeKind::File);
                n.content = content.to_vec();
                n.size = content.len() as u64 * 16;
                n
            })
            .collect();
        let tree = Tree::new(files).encode().expect("encode");
        let (id, _) = writer.save_blob(BlobKind::Tree, &tree).expect("tree");
        let mut n = node(format!("d{d}"), NodeKind::Dir);
        n.subtree = Some(id);
        dirs.push(n);
    }
    let (root, _) = writer
        .save_blob(BlobKind::Tree, &Tree::new(dirs).encode().expect("encode"))
        .expect("root");
    let commit = writer.finish().expect("finish");
    let mut root_node = node(String::new(), NodeKind::Dir);
    root_node.subtree = Some(root);
    let snap = Snapshot {
        v: SNAPSHOT_VERSION,
        id: SnapshotId::random(),
        time_ns: now_ns(),
        host: "bench".into(),
        source: source.into(),
        tags: Vec::new(),
        parent: None,
        tree: root,
        root: root_node,
        stats: SnapshotStats::default(),
        errors: Vec::new(),
        utc_offset_s: None,
        origin: None,
    };
    commit.commit(&snap).expect("commit");
    snap
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: prune_memory DIR BLOBS"));
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: prune_memory DIR BLOBS");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let storage = Storage::open(&Location::Fs(dir.clone()), false).expect("open");
    let options = CreateOptions {
        kdf: KdfParams::with_cost(8 * 1024, 1, 1),
        ..Default::default()
    };
    let repo = Repository::create(storage, b"bench", options).expect("create");
    let old = snapshot(&repo, 0..n / 2, "old");
    let new = snapshot(&repo, n / 4..n, "new");
    repo.storage()
        .delete(&Key::Snapshot(old.id).path())
        .expect("forget old");
    println!(
        "{}: {n} blobs; snapshot {} keeps {} of them",
        dir.display(),
        new.id.short(),
        n - n / 4
    );
}
