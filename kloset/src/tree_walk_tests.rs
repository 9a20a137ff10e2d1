//! Tests of the streaming tree walk: the same entries and the same refusals
//! as `Tree::decode`, early stops, and the walk over a real stored tree.

use super::*;
use crate::repository::CreateOptions;
use crate::storage::{Location, Storage};
use crate::tree::Tree;

fn node(name: &[u8]) -> Node {
    Node {
        name: ByteBuf::from(name.to_vec()),
        kind: NodeKind::File,
        mode: 0o644,
        uid: 1,
        gid: 2,
        mtime_ns: 3,
        ctime_ns: 4,
        inode: 5,
        device: 6,
        size: 7,
        target: None,
        rdev: None,
        content: vec![BlobId::from_bytes([9; 32])],
        subtree: None,
    }
}

fn all<T: TreeEntry>(bytes: &[u8]) -> Result<Vec<T>> {
    let mut out = Vec::new();
    walk(
        bytes,
        "t",
        |_| false,
        |e: T| {
            out.push(e);
            Ok(Step::Next)
        },
    )?;
    Ok(out)
}

#[test]
fn walks_what_decode_reads() {
    let names: Vec<Vec<u8>> = vec![b"b".to_vec(), b"a\nb".to_vec(), b"caf\xe9".to_vec()];
    let tree = Tree::new(names.iter().map(|n| node(n)).collect());
    let bytes = tree.encode().expect("encode");
    let nodes: Vec<Node> = all(&bytes).expect("walk");
    assert_eq!(nodes, Tree::decode(&bytes, "t").expect("decode").entries);
    let listed: Vec<Listed> = all(&bytes).expect("listed");
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].name.as_slice(), b"caf\xe9");
    assert_eq!((listed[0].mode, listed[0].size), (0o644, 7));
    let empty = Tree::new(Vec::new()).encode().expect("encode");
    assert!(all::<Node>(&empty).expect("empty").is_empty());
}

#[test]
fn stops_when_asked() {
    let tree = Tree::new(
        (0..100u8)
            .map(|i| node(&[b'a', i / 10 + b'0', i % 10 + b'0']))
            .collect(),
    );
    let mut seen = 0;
    let done = walk(
        tree.encode().expect("encode").as_slice(),
        "t",
        |_| false,
        |_: Listed| {
            seen += 1;
            Ok(if seen == 10 { Step::Stop } else { Step::Next })
        },
    )
    .expect("walk");
    assert!(!done);
    assert_eq!(seen, 10);
}

#[test]
fn refuses_what_decode_refuses() {
    let raw = |entries: Vec<Node>| Tree { v: 1, entries }.encode().expect("encode");
    let bad = [
        raw(vec![node(b"b"), node(b"a")]),
        raw(vec![node(b"a"), node(b"a")]),
        raw(vec![node(b"..")]),
        raw(vec![node(b".")]),
        raw(vec![node(b"a/b")]),
        raw(vec![node(b"")]),
        raw(vec![node(b"a\0")]),
        Tree {
            v: 2,
            entries: vec![],
        }
        .encode()
        .expect("encode"),
        b"\xc1garbage".to_vec(),
        codec::to_msgpack(&serde_json::json!({ "v": 1 }), "t").expect("msgpack"),
        codec::to_msgpack(&serde_json::json!({ "entries": [], "v": 1 }), "t").expect("msgpack"),
        codec::to_msgpack(&serde_json::json!([1, []]), "t").expect("msgpack"),
    ];
    for (i, bytes) in bad.iter().enumerate() {
        assert!(
            Tree::decode(bytes, "t").is_err() || i == 10 || i == 11,
            "{i}"
        );
        let err = all::<Node>(bytes).expect_err(&format!("case {i}"));
        assert!(
            matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported),
            "{i}: {err}"
        );
    }
    // A truncated tree is an error at the cut, not a short listing.
    let good = raw(vec![node(b"a"), node(b"b"), node(b"c")]);
    assert!(all::<Listed>(&good[..good.len() - 3]).is_err());
    // The sort check spans the whole walk, even past entries skipped.
    let late = raw(vec![node(b"a"), node(b"c"), node(b"b")]);
    assert!(all::<Listed>(&late).is_err());
}

#[test]
fn skipped_entries_are_checked_not_decoded() {
    let names: Vec<Vec<u8>> = (0..50u8)
        .map(|i| vec![b'a', b'0' + i / 10, b'0' + i % 10])
        .collect();
    let mut nodes: Vec<Node> = names.iter().map(|n| node(n)).collect();
    nodes[3].kind = NodeKind::Symlink;
    nodes[3].target = Some(ByteBuf::from(b"to\xff".to_vec()));
    let bytes = Tree::new(nodes.clone()).encode().expect("encode");
    for cut in [0usize, 1, 3, 4, 25, 49, 50] {
        let after = names.get(cut.wrapping_sub(1)).cloned().unwrap_or_default();
        let mut seen = Vec::new();
        walk(
            bytes.as_slice(),
            "t",
            |n| n <= after.as_slice(),
            |e: Node| {
                seen.push(e);
                Ok(Step::Next)
            },
        )
        .expect("walk");
        assert_eq!(seen, nodes[cut..].to_vec(), "after {cut}");
    }
    // A skipped entry still counts for order and safety.
    let raw = |entries: Vec<Node>| Tree { v: 1, entries }.encode().expect("encode");
    for bad in [
        raw(vec![node(b"b"), node(b"a"), node(b"c")]),
        raw(vec![node(b".."), node(b"c")]),
        raw(vec![node(b"a"), node(b"a")]),
    ] {
        let err = walk(bad.as_slice(), "t", |_| true, |_: Listed| Ok(Step::Next));
        assert!(err.is_err(), "{err:?}");
    }
    // An entry whose name is not its first key is decoded whole, and right.
    #[derive(serde::Serialize)]
    struct Raw {
        v: u32,
        entries: Vec<serde_json::Value>,
    }
    let entry = serde_json::json!({ "kind": "file", "mode": 1, "uid": 2, "gid": 3,
        "mtime_ns": 4, "size": 5, "name": [120] });
    let reordered = codec::to_msgpack(
        &Raw {
            v: 1,
            entries: vec![entry],
        },
        "t",
    )
    .expect("msgpack");
    let listed: Vec<Listed> = all(&reordered).expect("name last");
    assert_eq!(listed[0].name.as_slice(), b"x");
    assert_eq!(listed[0].size, 5);
    let skipped = walk(
        reordered.as_slice(),
        "t",
        |_| true,
        |_: Listed| Ok(Step::Next),
    );
    assert!(skipped.expect("decoded, not skipped"));
}

fn memory_repo() -> Repository {
    let storage = Storage::open(&Location::Memory, false).expect("storage");
    let opts = CreateOptions {
        kdf: crate::crypto::KdfParams::with_cost(64, 1, 1),
        ..CreateOptions::default()
    };
    Repository::create(storage, b"pass", opts).expect("create")
}

#[test]
fn walks_a_stored_tree_and_finds_names() {
    let repo = memory_repo();
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..500 {
        std::fs::write(dir.path().join(format!("f{i:04}")), b"x").expect("write");
    }
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let snap = crate::ops::backup::backup(&repo, dir.path(), &Default::default()).expect("backup");
    let mut names = Vec::new();
    repo.walk_tree(
        &snap.tree,
        |_| false,
        |e: Listed| {
            names.push(e.name.into_vec());
            Ok(Step::Next)
        },
    )
    .expect("walk");
    let full = repo.load_tree(&snap.tree).expect("load");
    let expected: Vec<Vec<u8>> = full.entries.iter().map(|n| n.name.to_vec()).collect();
    assert_eq!(names, expected);
    assert_eq!(names.len(), 501);
    // Stopping early still checks the rest of the blob and succeeds.
    let mut first = None;
    repo.walk_tree(
        &snap.tree,
        |_| false,
        |e: Listed| {
            first = Some(e.name.into_vec());
            Ok(Step::Stop)
        },
    )
    .expect("stop");
    assert_eq!(first.as_deref(), Some(b"f0000".as_slice()));
    let found = repo
        .find_in_tree(&snap.tree, b"f0250")
        .expect("find")
        .expect("present");
    assert_eq!(&found, full.find(b"f0250").expect("in tree"));
    assert!(
        repo.find_in_tree(&snap.tree, b"f02500")
            .expect("absent")
            .is_none()
    );
    assert_eq!(
        repo.find_in_tree(&snap.tree, b"sub")
            .expect("dir")
            .map(|n| n.kind),
        Some(NodeKind::Dir)
    );
    // A blob that is not a tree of this store is refused.
    let missing = BlobId::from_bytes([3; 32]);
    let err = repo
        .walk_tree(&missing, |_| false, |_: Listed| Ok(Step::Next))
        .expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}
