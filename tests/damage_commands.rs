//! Every damage × `sync`, `forget` and the daemon's browser, on local disk
//! and on the real S3 server (s3s-fs): each object type of a small store (a data pack's blobs, a pack trailer, a tree pack, an
//! index object, each snapshot object, the header `kloset`, and a lock and a
//! mark object made from authentic ones), flipped in one byte, truncated or
//! replaced by garbage. Each command either does exactly what it would have
//! done undamaged (it did not need the bytes) or fails naming the object; it
//! never panics, and never copies, serves or deletes what it should not. With
//! the object put back, `check --read-data` is clean.
//!
//! What a command needs is not guessed: an oracle built with the library on
//! the undamaged store maps every directory and file of every snapshot to the
//! byte ranges of the tree and data blobs that reading it takes (the trees
//! from the root down, then its chunks), and, for a damaged index object, to
//! the blobs the index then no longer lists. Files are under the chunker's
//! 512 KiB minimum, so each is one chunk: a download either fails before its
//! answer starts or is whole (a damaged later chunk of a bigger file can only
//! cut the stream short, after the `200`).

use crate::common;

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use common::cli::{Output, TEST_PASSPHRASE};
use common::rng::SplitMix64;
use common::s3::S3Server;
use common::store::StoreFixture;
use common::tree::assert_trees_equal;
use kloset::lock::{HeldLock, LockKind};
use kloset::storage::Key;
use kloset::tree::NodeKind;
use kloset::{BlobId, Location, Repository, Storage};
use serde_json::Value;

/// The snapshots, oldest first: `a`, `a` again with one file changed (same
/// host and source, so one forget group), then `b`.
const TAGS: [&str; 3] = ["one", "two", "three"];
/// The sync destination's own passphrase.
const OTHER: &str = "the destination's own passphrase";

/// Where one blob's sealed bytes are.
#[derive(Clone, Debug)]
struct Blob {
    id: BlobId,
    key: String,
    at: Range<u64>,
    tree: bool,
}

/// A directory (`rel` "" is the root) or file of a snapshot, with every blob
/// that reading it takes.
#[derive(Debug)]
struct Entry {
    rel: String,
    dir: bool,
    needs: Vec<Blob>,
}

#[derive(Debug)]
struct Snap {
    tag: &'static str,
    id: String,
    /// The directory it was taken of, as it was then.
    reference: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Object {
    /// The largest data pack, in its blobs (truncated: the second half).
    DataPack,
    /// The same pack's trailer only: its blobs stay intact.
    Trailer,
    /// The tree pack holding snapshot one's root tree.
    TreePack,
    /// The largest index object.
    Index,
    /// Snapshot object `TAGS[i]`.
    Snapshot(usize),
    Header,
    /// A lock or a mark object: the store has none, so the case adds a
    /// damaged copy of an authentic one and putting it back removes it.
    Lock,
    Mark,
}

struct Case {
    object: Object,
    damage: &'static str,
    key: String,
    /// The object's bytes, `None` when the undamaged store lacks it.
    original: Option<Vec<u8>>,
    bad: Vec<u8>,
    /// The byte range of the object that differs from `original`.
    damaged: Range<u64>,
    /// For an index object: the blobs the index no longer lists.
    unindexed: HashSet<BlobId>,
}

impl Case {
    fn name(&self) -> String {
        format!("{:?} {} ({})", self.object, self.damage, self.key)
    }

    fn apply(&self, store: &Path) {
        let path = store.join(&self.key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, &self.bad).expect("damage");
    }

    fn put_back(&self, store: &Path) {
        match &self.original {
            Some(bytes) => std::fs::write(store.join(&self.key), bytes).expect("put back"),
            None => std::fs::remove_file(store.join(&self.key)).expect("remove"),
        }
    }

    /// Whether reading one of `needs` meets the damage.
    fn hits(&self, needs: &[Blob]) -> bool {
        needs.iter().any(|b| match self.object {
            Object::Index => self.unindexed.contains(&b.id),
            _ => {
                b.key == self.key && b.at.start < self.damaged.end && self.damaged.start < b.at.end
            }
        })
    }
}

/// The undamaged store, its oracle and every case.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    fx: StoreFixture,
    snaps: Vec<Snap>,
    cases: Vec<Case>,
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `count` files of 1 to 90 KB over three directories.
fn write_files(dir: &Path, seed: u64, count: usize) {
    let mut rng = SplitMix64::new(seed);
    for i in 0..count {
        let sub = dir.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let len = 1_000 + rng.below_or_eq(89_000) as usize;
        std::fs::write(sub.join(format!("f{i}.bin")), rng.bytes(len)).expect("write");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn open(dir: &Path) -> Repository {
    let location = Location::parse(utf8(dir)).expect("location");
    let storage = Storage::open(&location, false).expect("storage");
    Repository::open(storage, TEST_PASSPHRASE.as_bytes()).expect("open the store")
}

fn blob(repo: &Repository, id: &BlobId) -> Blob {
    let loc = repo.index().get(id).expect("index").expect("indexed");
    let start = u64::from(loc.offset);
    Blob {
        id: *id,
        key: Key::Pack(loc.pack).path(),
        at: start..start + u64::from(loc.length),
        tree: loc.tree_pack,
    }
}

/// Every directory and file under tree `id`, with the blobs each needs.
fn walk(repo: &Repository, id: &BlobId, rel: &str, above: &[Blob], out: &mut Vec<Entry>) {
    let mut needs = above.to_vec();
    needs.push(blob(repo, id));
    let tree = repo.load_tree(id).expect("an undamaged tree");
    out.push(Entry {
        rel: rel.to_string(),
        dir: true,
        needs: needs.clone(),
    });
    for node in tree.entries {
        let name = String::from_utf8(node.name.to_vec()).expect("utf-8 name");
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => walk(repo, &sub, &child, &needs, out),
            (NodeKind::File, _) => {
                let mut file = needs.clone();
                file.extend(node.content.iter().map(|c| blob(repo, c)));
                out.push(Entry {
                    rel: child,
                    dir: false,
                    needs: file,
                });
            }
            _ => {}
        }
    }
}

/// Flipped (one byte a third into the damaged region), truncated, garbage.
/// A pack's region is its blobs, a trailer's the trailer, else the object.
fn damages(object: Object, original: &[u8], seed: u64) -> Vec<(&'static str, Vec<u8>, Range<u64>)> {
    let n = original.len();
    let blobs_end = match object {
        Object::DataPack | Object::Trailer | Object::TreePack => {
            let tail: [u8; 4] = original[n - 4..].try_into().expect("4 bytes");
            n - 4 - u32::from_le_bytes(tail) as usize
        }
        _ => n,
    };
    let (from, to) = match object {
        Object::Trailer => (blobs_end, n),
        _ => (0, blobs_end),
    };
    let at = from + (to - from) / 3;
    let mut flipped = original.to_vec();
    flipped[at] ^= 0x20;
    let (cut, garbage_from) = match object {
        Object::Trailer => (blobs_end, blobs_end),
        _ => (n / 2, 0),
    };
    let mut garbage = original[..garbage_from].to_vec();
    garbage.extend(SplitMix64::new(seed).bytes(n - garbage_from));
    let r = |a: usize, b: usize| a as u64..b as u64;
    vec![
        ("one flipped byte", flipped, r(at, at + 1)),
        ("truncated", original[..cut].to_vec(), r(cut, n)),
        ("garbage", garbage, r(garbage_from, n)),
    ]
}

impl Fixture {
    fn build() -> Fixture {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().canonicalize().expect("canonical");
        let mut fx = StoreFixture::local(&root.join("store"));
        // Every read goes to the store, never to a host cache.
        fx.kloset = fx.kloset.clone().env("KLOSET_CACHE_DIR", "off");
        fx.must(&["create", "--pack-size", "256KiB", "--kdf-memory-mib", "8"]);
        let (a, b, one) = (root.join("a"), root.join("b"), root.join("ref-one"));
        write_files(&a, 1, 12);
        fx.must(&["backup", "--tag", "one", utf8(&a)]);
        std::fs::rename(&a, &one).expect("keep one's tree");
        write_files(&a, 1, 12);
        std::fs::write(a.join("d0/f0.bin"), b"changed\n").expect("write");
        fx.must(&["backup", "--tag", "two", utf8(&a)]);
        write_files(&b, 2, 6);
        fx.must(&["backup", "--tag", "three", utf8(&b)]);
        assert_clean(&fx, "the undamaged store");

        let repo = open(&fx.objects_dir);
        let all = repo.snapshots().expect("snapshots");
        let snaps: Vec<Snap> = TAGS
            .iter()
            .zip([one, a, b])
            .map(|(tag, reference)| {
                let s = all.iter().find(|s| s.tags == [*tag]).expect("tagged");
                let mut entries = Vec::new();
                walk(&repo, &s.tree, "", &[], &mut entries);
                Snap {
                    tag,
                    id: s.id.to_hex(),
                    reference,
                    entries,
                }
            })
            .collect();
        let objects = fx.objects();
        let size = |key: &str| {
            std::fs::metadata(fx.objects_dir.join(key))
                .expect("size")
                .len()
        };
        let data_packs: BTreeSet<String> = snaps
            .iter()
            .flat_map(|s| s.entries.iter().flat_map(|e| &e.needs))
            .filter(|b| !b.tree)
            .map(|b| b.key.clone())
            .collect();
        let largest = |keys: Vec<String>| keys.into_iter().max_by_key(|k| size(k)).expect("one");
        let data_pack = largest(data_packs.into_iter().collect());
        let index = largest(
            objects
                .iter()
                .map(|(_, k)| k.clone())
                .filter(|k| k.starts_with("index/"))
                .collect(),
        );
        let mut targets = vec![
            (Object::DataPack, data_pack.clone()),
            (Object::Trailer, data_pack),
            (Object::TreePack, snaps[0].entries[0].needs[0].key.clone()),
            (Object::Index, index),
            (Object::Header, "kloset".to_string()),
        ];
        for (i, s) in snaps.iter().enumerate() {
            targets.push((Object::Snapshot(i), format!("snapshots/{}", s.id)));
        }
        let mut cases = Vec::new();
        for (object, key) in targets {
            let original = std::fs::read(fx.objects_dir.join(&key)).expect("read");
            for (damage, bad, damaged) in damages(object, &original, cases.len() as u64) {
                cases.push(Case {
                    object,
                    damage,
                    key: key.clone(),
                    original: Some(original.clone()),
                    bad,
                    damaged,
                    unindexed: HashSet::new(),
                });
            }
        }
        // An authentic lock (released at once) and mark, kept as bytes.
        let lock = HeldLock::acquire(
            repo.storage(),
            repo.keys(),
            LockKind::Shared,
            "damage test",
            repo.lock_timing(),
        )
        .expect("lock");
        let lock_key = format!("locks/{}", lock.current().to_hex());
        let lock_bytes = std::fs::read(fx.objects_dir.join(&lock_key)).expect("lock object");
        drop(lock);
        let packs = repo.index().packs().to_vec();
        let mark = kloset::marks::write(
            repo.storage(),
            repo.keys(),
            kloset::repository::now_ns(),
            packs,
            None,
        )
        .expect("mark");
        let mark_key = format!("marks/{}", mark.to_hex());
        let mark_bytes = std::fs::read(fx.objects_dir.join(&mark_key)).expect("mark object");
        std::fs::remove_file(fx.objects_dir.join(&mark_key)).expect("remove the mark");
        for (object, key, bytes) in [
            (Object::Lock, lock_key, lock_bytes),
            (Object::Mark, mark_key, mark_bytes),
        ] {
            for (damage, bad, damaged) in damages(object, &bytes, cases.len() as u64) {
                cases.push(Case {
                    object,
                    damage,
                    key: key.clone(),
                    original: None,
                    bad,
                    damaged,
                    unindexed: HashSet::new(),
                });
            }
        }
        drop(repo);
        assert_eq!(fx.objects(), objects, "the store is as it was");
        // A damaged index object: which blobs the index then lacks.
        for (n, case) in cases.iter_mut().enumerate() {
            if case.object != Object::Index {
                continue;
            }
            let dir = root.join(format!("oracle-{n}"));
            copy_dir(&fx.objects_dir, &dir);
            case.apply(&dir);
            let damaged = open(&dir);
            let lost = snaps
                .iter()
                .flat_map(|s| s.entries.iter().flat_map(|e| &e.needs))
                .filter(|b| matches!(damaged.index().get(&b.id), Ok(None)));
            case.unindexed = lost.map(|b| b.id).collect();
        }
        // No case is vacuous: a damaged pack or index object meets some
        // snapshot's data, a damaged trailer, lock or mark none.
        for case in &cases {
            let needed = snaps
                .iter()
                .any(|s| s.entries.iter().any(|e| case.hits(&e.needs)));
            let data = matches!(
                case.object,
                Object::DataPack | Object::TreePack | Object::Index
            );
            assert_eq!(needed, data, "{}: needed by a snapshot", case.name());
        }
        Fixture {
            _tmp: tmp,
            root,
            fx,
            snaps,
            cases,
        }
    }

    /// A copy of the undamaged store under `name`: on local disk, or under
    /// the prefix `name` of `s3`'s bucket with its own empty tree cache
    /// (so the first read of every tree goes to the bucket).
    fn copy(&self, name: &str, s3: Option<&S3Server>) -> StoreFixture {
        let Some(server) = s3 else {
            let dir = self.root.join(name);
            copy_dir(&self.fx.objects_dir, &dir);
            let mut fx = StoreFixture::local(&dir);
            fx.kloset = self.fx.kloset.clone();
            return fx;
        };
        copy_dir(&self.fx.objects_dir, &server.bucket_dir().join(name));
        let cache = self.root.join(format!("{name}-cache"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&cache)
            .expect("tree cache");
        StoreFixture::on_server(server, name, &cache)
    }
}

fn assert_no_panic(out: &Output, what: &str) {
    assert_ne!(out.code, Some(101), "{what}: panicked: {}", out.describe());
    assert!(
        !out.stderr_str().contains("panicked"),
        "{what}: panicked: {}",
        out.describe()
    );
}

/// Whether `text` names `key` (the header's errors say "object kloset" or
/// "an object named kloset").
fn names(text: &str, key: &str) -> bool {
    match key {
        "kloset" => text.contains("(object kloset)") || text.contains("object named kloset"),
        _ => text.contains(key),
    }
}

fn assert_clean(fx: &StoreFixture, what: &str) {
    let out = fx.run(&["check", "--read-data"]);
    assert_no_panic(&out, what);
    assert!(
        out.success() && out.stdout_str().starts_with("ok:"),
        "{what}: check must be clean: {}",
        out.describe()
    );
}

/// `(id, tag)` of every snapshot `ls` lists.
fn listed(fx: &StoreFixture) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&fx.must(&["--json", "ls"])).expect("ls json");
    let snapshots = v["snapshots"].as_array().expect("snapshots");
    snapshots
        .iter()
        .map(|s| {
            let tag = s["tags"][0].as_str().expect("one tag");
            (s["id"].as_str().expect("id").to_string(), tag.to_string())
        })
        .collect()
}

/// Every object of a store with its bytes.
fn contents(fx: &StoreFixture) -> Vec<(String, Vec<u8>)> {
    let objects = fx.objects().into_iter();
    objects
        .map(|(path, key)| (key, std::fs::read(path).expect("read")))
        .collect()
}

/// One sync case: `sync all` from a damaged copy (on `s3`, or local disk)
/// into a new store on local disk.
fn sync_case(
    f: &Fixture,
    s3: Option<&S3Server>,
    pristine: &[(String, Vec<u8>)],
    n: usize,
    case: &Case,
) {
    let what = case.name();
    let src = f.copy(&format!("sync-{n}"), s3);
    let mut dst = StoreFixture::local(&f.root.join(format!("sync-{n}-dst")));
    dst.kloset = f.fx.kloset.clone().passphrase(OTHER);
    dst.must(&["create", "--kdf-memory-mib", "8"]);
    case.apply(&src.objects_dir);
    let syncer = src.kloset.clone().env("KLOSET_PASSPHRASE_TO", OTHER);
    let out = syncer.run(["at", &src.location, "sync", "all", "to", &dst.location]);
    assert_no_panic(&out, &what);
    // Snapshots are copied oldest first, each wholly or not at all: the
    // first whose trees or chunks meet the damage fails the sync (exit 1),
    // after the older ones were copied. A damaged snapshot object is passed
    // over (exit 3: done, not with everything); a damaged header stops
    // everything. Trailers, locks and marks are not needed: sync reads no
    // trailer (the index says where each blob is), takes its locks without
    // reading the others' (only prune and check do), and an unreadable mark
    // of the source only makes its read lock count every pack as marked,
    // which a reader can ignore.
    let (code, copied): (i32, Vec<&str>) = match case.object {
        Object::Header => (1, vec![]),
        Object::Snapshot(i) => (3, TAGS.iter().copied().filter(|t| *t != TAGS[i]).collect()),
        _ => {
            let first = f
                .snaps
                .iter()
                .position(|s| s.entries.iter().any(|e| case.hits(&e.needs)));
            let copied = TAGS[..first.unwrap_or(TAGS.len())].to_vec();
            (i32::from(first.is_some()), copied)
        }
    };
    assert_eq!(out.code, Some(code), "{what}: {}", out.describe());
    if code != 0 {
        assert!(
            names(&out.stderr_str(), &case.key),
            "{what}: {}",
            out.describe()
        );
    }
    let in_dst = listed(&dst);
    let tags: Vec<&str> = in_dst.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(tags, copied, "{what}: the snapshots in the destination");
    // The source is left as it was (so as clean as the undamaged store),
    // and what the destination holds checks clean and restores bit-exact.
    case.put_back(&src.objects_dir);
    assert!(
        contents(&src) == pristine,
        "{what}: sync changed its source"
    );
    assert_clean(&dst, &what);
    for (id, tag) in &in_dst {
        let s = f.snaps.iter().find(|s| s.tag == tag).expect("a known tag");
        let out = f.root.join(format!("sync-{n}-{tag}"));
        dst.must(&["restore", "--to", utf8(&out), id]);
        assert_trees_equal(&s.reference, &out);
    }
}

#[test]
fn sync_copies_only_what_it_could_read_and_names_the_damage() {
    sync_every_case(None);
}

#[test]
fn sync_from_s3_copies_only_what_it_could_read_and_names_the_damage() {
    if let Some(server) = S3Server::start_or_skip() {
        sync_every_case(Some(&server));
    }
}

fn sync_every_case(s3: Option<&S3Server>) {
    let f = Fixture::build();
    let pristine = contents(&f.fx);
    // A sync mostly waits (for its lock threads to stop): three cases at
    // once keep the test short on two cores.
    std::thread::scope(|s| {
        for worker in 0..3 {
            let (f, pristine) = (&f, &pristine);
            s.spawn(move || {
                for (n, case) in f.cases.iter().enumerate().skip(worker).step_by(3) {
                    sync_case(f, s3, pristine, n, case);
                }
            });
        }
    });
}

#[test]
fn forget_deletes_only_what_the_policy_removes_and_names_the_damage() {
    forget_every_case(None);
}

#[test]
fn forget_on_s3_deletes_only_what_the_policy_removes_and_names_the_damage() {
    if let Some(server) = S3Server::start_or_skip() {
        forget_every_case(Some(&server));
    }
}

fn forget_every_case(s3: Option<&S3Server>) {
    let f = Fixture::build();
    let others = |fx: &StoreFixture| {
        let mut all = contents(fx);
        all.retain(|(k, _)| !k.starts_with("snapshots/"));
        all
    };
    let pristine = others(&f.fx);
    for (n, case) in f.cases.iter().enumerate() {
        let what = case.name();
        let fx = f.copy(&format!("forget-{n}"), s3);
        case.apply(&fx.objects_dir);
        let out = fx.run(&["--json", "forget", "--keep-last", "1"]);
        assert_no_panic(&out, &what);
        // Undamaged, it removes snapshot one: two is its group's newest,
        // three is alone in its group. Forget reads the header and every
        // snapshot object, nothing else: no pack or trailer (it deletes
        // snapshot objects only, data goes with prune), no lock or mark (it
        // takes no lock: a prune re-reads the snapshots before it deletes),
        // and the index only as the store opens (a damaged index object is
        // warned about; the plan needs none of it). An unreadable snapshot
        // is neither counted nor deleted (exit 3): unreadable one stays, and
        // unreadable two leaves one as its group's newest, kept.
        let (code, kept): (i32, &[usize]) = match case.object {
            Object::Header => (1, &[0, 1, 2]),
            Object::Snapshot(2) => (3, &[1, 2]),
            Object::Snapshot(_) => (3, &[0, 1, 2]),
            _ => (0, &[1, 2]),
        };
        assert_eq!(out.code, Some(code), "{what}: {}", out.describe());
        if code != 0 || case.object == Object::Index {
            assert!(
                names(&out.stderr_str(), &case.key),
                "{what}: {}",
                out.describe()
            );
        }
        if let Object::Snapshot(_) = case.object {
            let plan: Value = serde_json::from_str(&out.stdout_str()).expect("json");
            assert_eq!(plan["unreadable"][0]["object"], case.key.as_str(), "{what}");
        }
        let left: BTreeSet<String> = fx
            .objects()
            .into_iter()
            .map(|(_, k)| k)
            .filter(|k| k.starts_with("snapshots/"))
            .collect();
        let want: BTreeSet<String> = kept
            .iter()
            .map(|i| format!("snapshots/{}", f.snaps[*i].id))
            .collect();
        assert_eq!(left, want, "{what}: the snapshot objects left");
        case.put_back(&fx.objects_dir);
        assert!(
            others(&fx) == pristine,
            "{what}: forget changed other objects"
        );
        assert_clean(&fx, &what);
    }
}

/// The daemon's browser against the same cases.
#[path = "damage_browse.rs"]
mod browse;
