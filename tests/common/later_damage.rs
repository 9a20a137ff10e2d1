//! A store whose one large file has a damaged chunk in its middle: a
//! byte flipped in the chunk's pack object, on local disk or in the real
//! S3 server's bucket directory.

use std::path::Path;

use super::cli::TEST_PASSPHRASE;
use super::rng::SplitMix64;
use super::store::StoreFixture;
use kloset::storage::Key;
use kloset::tree::NodeKind;
use kloset::{Location, Repository, Storage};

/// Where the file's damaged chunk sits.
pub struct Damage {
    /// The pack object holding it.
    pub pack: String,
    /// Offset of the chunk in the file.
    pub from: u64,
}

/// Backs up one random file of `len` bytes, `big.bin` in `root/src`
/// (with whatever else is there), flips a byte of a chunk in its middle (in the
/// object file of the store on disk, under local or S3 storage) and returns
/// the file's bytes and where the damage is.
pub fn store_with_a_damaged_later_chunk(
    fx: &StoreFixture,
    root: &Path,
    len: usize,
) -> (Vec<u8>, Damage) {
    let src = root.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let content = SplitMix64::new(7).bytes(len);
    std::fs::write(src.join("big.bin"), &content).expect("write");
    fx.must(&["create", "--kdf-memory-mib", "8", "--chunk-size", "64KiB"]);
    fx.must(&["backup", src.to_str().expect("utf-8")]);
    // The objects on disk are the store's, for local and s3s-fs alike.
    let location = Location::parse(fx.objects_dir.to_str().expect("utf-8")).expect("location");
    let storage = Storage::open(&location, false).expect("storage");
    let repo = Repository::open(storage, TEST_PASSPHRASE.as_bytes()).expect("open");
    let snapshot = repo.snapshots().expect("snapshots").remove(0);
    let root_tree = repo.load_tree(&snapshot.tree).expect("root");
    let node = root_tree
        .entries
        .iter()
        .find(|n| &n.name[..] == b"big.bin" && n.kind == NodeKind::File)
        .expect("the file");
    assert!(node.content.len() >= 8, "{} chunks", node.content.len());
    let k = node.content.len() / 2;
    let mut from = 0;
    for id in &node.content[..k] {
        from += u64::from(
            repo.index()
                .get(id)
                .expect("index")
                .expect("indexed")
                .raw_length,
        );
    }
    let at = repo
        .index()
        .get(&node.content[k])
        .expect("index")
        .expect("indexed");
    let pack = Key::Pack(at.pack).path();
    let path = fx.objects_dir.join(&pack);
    let mut bytes = std::fs::read(&path).expect("pack");
    bytes[at.offset as usize + at.length as usize / 2] ^= 0x40;
    std::fs::write(&path, bytes).expect("damage");
    (content, Damage { pack, from })
}
