//! Fuzz targets for every store object decoder (header, pack trailer,
//! index, tree, snapshot, lock, mark), run by [`crate::fuzz`] under
//! `cargo test -p kloset --lib fuzz_targets`.
//!
//! Each sealed object is fuzzed twice: its plaintext (what decryption
//! yields: the encoding tag, then MessagePack, raw or zstd), sealed with a
//! real key and opened by the same function the repository uses, so every
//! mutation reaches the plaintext decoders; and the sealed bytes themselves,
//! through the same full open-object path. The seeds are in
//! `kloset/fuzz-corpus/<target>/`; `write_seed_corpus` (ignored) rewrites them.

use std::path::PathBuf;

use crate::codec;
use crate::crypto::{Keys, MasterKey, ObjectKind};
use crate::fuzz;
use crate::header::Header;
use crate::id::{IndexId, LockId, MarkId, PackId, SnapshotId};
use crate::lock::decode_lock;
use crate::marks::decode_mark;
use crate::tree::{Node, Tree};
use crate::tree_walk::{Listed, Step, walk};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    fuzz::load_corpus(&dir).unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
}

/// A sealed object's decoder: a plaintext target and a sealed-bytes target.
fn sealed_targets(
    target: &str,
    kind: ObjectKind,
    id: [u8; 32],
    decode: impl Fn(&Keys, &[u8]) -> bool,
) {
    let keys = Keys::derive(&MasterKey::generate());
    let plain = corpus(target);
    let mut decoded = 0u64;
    fuzz::run(&format!("{target}-plaintext"), &plain, |input| {
        let sealed = keys.seal(kind, &id, input).expect("seal");
        decoded += u64::from(decode(&keys, &sealed));
    });
    assert!(
        decoded > 0,
        "{target}: no plaintext input decoded, not even the seeds"
    );
    let sealed: Vec<Vec<u8>> = plain
        .iter()
        .map(|p| keys.seal(kind, &id, p).expect("seal"))
        .collect();
    fuzz::run(&format!("{target}-sealed"), &sealed, |input| {
        decode(&keys, input);
    });
}

#[test]
fn fuzz_header() {
    let seeds = corpus("header");
    let mut parsed = 0;
    fuzz::run("header", &seeds, |input| {
        if let Ok(Some(_)) = Header::parse(input) {
            parsed += 1;
        }
    });
    assert!(parsed > 0, "not even the seeds parse");
}

#[test]
fn fuzz_tree() {
    let seeds = corpus("tree");
    let mut decoded = 0;
    fuzz::run("tree", &seeds, |input| {
        let tree = Tree::decode(input, "tree");
        let _ = walk(input, "tree", |_| false, |_: Listed| Ok(Step::Next));
        let walked = walk(input, "tree", |_| false, |_: Node| Ok(Step::Next));
        // What the streaming walk of whole nodes accepts, decode accepts
        // (the walk is stricter in one way: it wants string keys, where
        // serde also takes a field's index, e.g. `{"v": 1, 1: []}`).
        assert!(
            walked.is_err() || tree.is_ok(),
            "the walk accepts what decode refuses: {:?}",
            tree.as_ref().err()
        );
        decoded += u64::from(tree.is_ok());
    });
    assert!(decoded > 0, "not even the seeds decode");
}

#[test]
fn fuzz_snapshot() {
    let id = SnapshotId::from_bytes([7; 32]);
    sealed_targets("snapshot", ObjectKind::Snapshot, [7; 32], |keys, b| {
        crate::repository::decode_snapshot(keys, id, b, "snapshot").is_ok()
    });
}

#[test]
fn fuzz_index() {
    let id = IndexId::from_bytes([8; 32]);
    sealed_targets("index", ObjectKind::Index, [8; 32], |keys, b| {
        crate::repository::index_load::decode_index(keys, id, b, "index").is_ok()
    });
}

#[test]
fn fuzz_lock() {
    let id = LockId::from_bytes([9; 32]);
    sealed_targets("lock", ObjectKind::Lock, [9; 32], |keys, b| {
        decode_lock(keys, id, b).is_ok()
    });
}

#[test]
fn fuzz_mark() {
    let id = MarkId::from_bytes([10; 32]);
    sealed_targets("mark", ObjectKind::Mark, [10; 32], |keys, b| {
        decode_mark(keys, id, b, "mark").is_ok()
    });
}

/// A pack of `blobs_len` bytes of blobs, then `sealed`, then its length.
fn pack_with(blobs_len: usize, sealed: &[u8]) -> Vec<u8> {
    let mut pack = vec![0u8; blobs_len];
    pack.extend_from_slice(sealed);
    pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    pack
}

#[test]
fn fuzz_pack_trailer() {
    let id = PackId::from_bytes([11; 32]);
    sealed_targets(
        "pack-trailer",
        ObjectKind::PackTrailer,
        [11; 32],
        |keys, sealed| {
            // The sealed input as a trailer (the plaintext target), and as a
            // whole pack (the sealed target: its own last 4 bytes are the length).
            let ok = crate::pack::parse_trailer(keys, id, &pack_with(8192, sealed)).is_ok();
            let _ = crate::pack::parse_trailer(keys, id, sealed);
            ok
        },
    );
}

/// Rewrites the seed corpus from real objects:
/// `cargo test -p kloset --lib fuzz_targets::write_seed_corpus -- --ignored`.
#[test]
#[ignore = "rewrites kloset/fuzz-corpus"]
fn write_seed_corpus() {
    use crate::header::StoreConfig;
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };
    let config = StoreConfig {
        v: 1,
        chunker: Default::default(),
        pack_size: 1 << 20,
        compression_level: 3,
        created_ns: 1_750_000_000_000_000_000,
    };
    let (header, _) = Header::create(
        b"pw",
        crate::crypto::KdfParams::with_cost(64, 1, 1),
        &config,
    )
    .expect("header");
    write("header", "current.json", &header.to_json().expect("json"));
    write(
        "header",
        "version-1.json",
        &header.as_version_1().expect("v1").to_json().expect("json"),
    );
    for (name, bytes) in seeds::trees() {
        write("tree", &name, &bytes);
    }
    for (target, name, plain) in seeds::sealed_plaintexts() {
        write(target, &name, &plain);
    }
}

mod seeds {
    //! Real objects for the seed corpus, as their plaintexts.
    use super::codec;
    use crate::id::{BlobId, BlobKind, HolderId, PackId};
    use crate::index::IndexPack;
    use crate::lock::{LockInfo, LockKind};
    use crate::marks::MarkFile;
    use crate::pack::PackEntry;
    use crate::snapshot::{FileError, Snapshot};
    use crate::tree::{Node, NodeKind, Tree};

    fn node(name: &str, kind: NodeKind) -> Node {
        Node {
            name: serde_bytes::ByteBuf::from(name.as_bytes().to_vec()),
            kind,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_ns: 1_750_000_000_000_000_000,
            ctime_ns: 1_750_000_000_000_000_000,
            inode: 42,
            device: 2049,
            size: 3,
            target: None,
            rdev: None,
            content: vec![BlobId::random()],
            subtree: None,
        }
    }

    pub(super) fn trees() -> Vec<(String, Vec<u8>)> {
        let mut dir = node("dir", NodeKind::Dir);
        dir.content.clear();
        dir.subtree = Some(BlobId::random());
        let mut link = node("link", NodeKind::Symlink);
        link.content.clear();
        link.target = Some(serde_bytes::ByteBuf::from(b"a.txt".to_vec()));
        let many: Vec<Node> = (0..200)
            .map(|i| node(&format!("f{i:04}"), NodeKind::File))
            .collect();
        vec![
            (
                "empty".into(),
                Tree::new(Vec::new()).encode().expect("tree"),
            ),
            (
                "three".into(),
                Tree::new(vec![node("a.txt", NodeKind::File), dir, link])
                    .encode()
                    .expect("tree"),
            ),
            ("many".into(), Tree::new(many).encode().expect("tree")),
        ]
    }

    fn entry(i: u32) -> PackEntry {
        PackEntry {
            kind: if i.is_multiple_of(2) {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
            id: BlobId::random(),
            offset: i * 100,
            length: 100,
            raw_length: 60,
        }
    }

    fn snapshot(errors: usize) -> Snapshot {
        let mut root = node("", NodeKind::Dir);
        root.content.clear();
        Snapshot {
            v: 1,
            id: crate::SnapshotId::from_bytes([7; 32]),
            time_ns: 1_750_000_000_000_000_000,
            host: "host".into(),
            source: "/srv".into(),
            tags: vec!["daily".into()],
            parent: None,
            tree: BlobId::random(),
            root,
            stats: Default::default(),
            errors: (0..errors)
                .map(|i| FileError {
                    path: format!("/srv/unreadable-{i}"),
                    error: "permission denied".into(),
                })
                .collect(),
            utc_offset_s: Some(3600),
            origin: None,
        }
    }

    /// (target, file name, plaintext as decryption yields it).
    pub(super) fn sealed_plaintexts() -> Vec<(&'static str, String, Vec<u8>)> {
        let enc = |v: Vec<u8>| codec::encode(&v, 3);
        let msg = |v: &dyn erased::Value| v.msgpack();
        let trailer = |n: u32| crate::pack::Trailer {
            v: 1,
            blobs: (0..n).map(entry).collect(),
        };
        let lock = LockInfo {
            v: 2,
            kind: LockKind::Shared,
            host: "host".into(),
            pid: 4242,
            created_ns: 1,
            refreshed_ns: 2,
            holder: Some(HolderId::random()),
            seq: 3,
            operation: "backup".into(),
        };
        vec![
            ("snapshot", "small".into(), enc(msg(&snapshot(0)))),
            (
                "snapshot",
                "with-errors-zstd".into(),
                enc(msg(&snapshot(50))),
            ),
            (
                "index",
                "two-packs".into(),
                enc(crate::index::encode_file(vec![
                    IndexPack {
                        id: PackId::random(),
                        blobs: (0..3).map(entry).collect(),
                    },
                    IndexPack {
                        id: PackId::random(),
                        blobs: (0..40).map(entry).collect(),
                    },
                ])
                .expect("index")),
            ),
            ("lock", "v2".into(), enc(msg(&lock))),
            (
                "mark",
                "v2".into(),
                enc(msg(&MarkFile {
                    v: 2,
                    time_ns: 5,
                    packs: vec![PackId::random(), PackId::random()],
                    holder: Some(HolderId::random()),
                })),
            ),
            ("pack-trailer", "one".into(), enc(msg(&trailer(1)))),
            ("pack-trailer", "sixty".into(), enc(msg(&trailer(60)))),
        ]
    }

    mod erased {
        //! MessagePack of any serializable seed, behind one trait object.
        pub trait Value {
            fn msgpack(&self) -> Vec<u8>;
        }

        impl<T: serde::Serialize> Value for T {
            fn msgpack(&self) -> Vec<u8> {
                crate::codec::to_msgpack(self, "seed").expect("msgpack")
            }
        }
    }
}
