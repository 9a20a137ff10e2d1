//! Grows a store's index with synthetic blobs: index objects that list
//! random blob ids in empty pack objects, for measuring how opening a store
//! and backing up into it grow with the size of its index
//! (docs/performance.md, "Index size"; `bench/index_scale.sh` drives it).
//! The store's data cannot be checked or restored: the packs are empty.
//!
//! Every 1,000th id goes to `DIR.sample`; `synthetic_index DIR --lookups`
//! opens the store (its index on disk or in memory, as the environment
//! says) and times lookups of those ids and as many absent ones.
//!
//! ```sh
//! KLOSET_PASSPHRASE=bench target/release/kloset at DIR create
//! KLOSET_PASSPHRASE=bench cargo run --release -p kloset --example synthetic_index -- DIR 1000000
//! ```

use std::path::PathBuf;

use kloset::id::{BlobId, BlobKind, PackId};
use kloset::index::IndexPack;
use kloset::pack::PackEntry;
use kloset::repository::{Probe, probe};
use kloset::storage::Key;
use kloset::{Location, Storage};
use rayon::prelude::*;

/// Blobs per index object and per pack (packs of small files hold
/// thousands; packs of 1 MiB chunks about 16).
const PER_OBJECT: usize = 50_000;
const PER_PACK: usize = 500;

fn sample_path(dir: &std::path::Path) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".sample");
    PathBuf::from(name)
}

/// Times lookups of the sampled ids and of as many random (absent) ones.
fn lookups(dir: PathBuf, passphrase: &str) {
    let sample: Vec<BlobId> = std::fs::read_to_string(sample_path(&dir))
        .expect("sample")
        .lines()
        .map(|l| BlobId::from_hex(l).expect("sample id"))
        .collect();
    let storage = Storage::open(&Location::Fs(dir), false).expect("open store");
    let started = std::time::Instant::now();
    let repo = kloset::Repository::open(storage, passphrase.as_bytes()).expect("open");
    let opened = started.elapsed();
    let index = repo.index();
    let absent: Vec<BlobId> = (0..sample.len()).map(|_| BlobId::random()).collect();
    let started = std::time::Instant::now();
    for id in &sample {
        assert!(
            index.get(id).expect("lookup").is_some(),
            "a sampled id is missing"
        );
    }
    let present = started.elapsed();
    let started = std::time::Instant::now();
    for id in &absent {
        assert!(!index.contains(id).expect("lookup"));
    }
    let missing = started.elapsed();
    let rate = |d: std::time::Duration| sample.len() as f64 / d.as_secs_f64() / 1e3;
    println!(
        "{} index, {} blobs: opened in {:.2} s; {:.0} k lookups/s of present ids, {:.0} k/s of absent ids",
        if index.on_disk() {
            "on-disk"
        } else {
            "in-memory"
        },
        index.blob_count(),
        opened.as_secs_f64(),
        rate(present),
        rate(missing)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.get(1).is_some_and(|a| a == "--lookups") {
        let passphrase = std::env::var("KLOSET_PASSPHRASE").expect("KLOSET_PASSPHRASE");
        return lookups(PathBuf::from(&args[0]), &passphrase);
    }
    let (Some(dir), Some(blobs)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: synthetic_index STORE_DIR BLOBS (adds BLOBS blobs to the store's index)");
        std::process::exit(2);
    };
    let passphrase = std::env::var("KLOSET_PASSPHRASE").expect("KLOSET_PASSPHRASE");
    let dir = PathBuf::from(dir);
    let storage = Storage::open(&Location::Fs(dir.clone()), false).expect("open store");
    let Probe::Store(header) = probe(&storage).expect("probe") else {
        panic!("{} is not a kloset store", dir.display());
    };
    let opened = header
        .open(passphrase.as_bytes(), storage.location())
        .expect("passphrase");
    let objects = blobs.div_ceil(PER_OBJECT);
    let sample = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sample_path(&dir))
            .expect("sample file"),
    );
    (0..objects).into_par_iter().for_each(|o| {
        let count = PER_OBJECT.min(blobs - o * PER_OBJECT);
        let mut packs = Vec::new();
        let mut left = count;
        while left > 0 {
            let n = left.min(PER_PACK);
            left -= n;
            let id = PackId::random();
            let mut offset = 0u32;
            let blobs = (0..n)
                .map(|i| {
                    let raw_length = 512 + (i as u32 * 7919) % 60_000;
                    let length = raw_length / 2 + 40;
                    let e = PackEntry {
                        kind: if i % 50 == 0 {
                            BlobKind::Tree
                        } else {
                            BlobKind::Data
                        },
                        id: BlobId::random(),
                        offset,
                        length,
                        raw_length,
                    };
                    offset += length;
                    e
                })
                .collect();
            // An empty pack object, so the store lists what its index names.
            let path = dir.join(Key::Pack(id).path());
            std::fs::create_dir_all(path.parent().expect("pack dir")).expect("mkdir");
            std::fs::write(&path, b"").expect("pack");
            packs.push(IndexPack { id, blobs });
        }
        let picked: String = packs
            .iter()
            .flat_map(|p| &p.blobs)
            .step_by(1000)
            .map(|b| format!("{}\n", b.id.to_hex()))
            .collect();
        use std::io::Write;
        sample
            .lock()
            .expect("sample lock")
            .write_all(picked.as_bytes())
            .expect("sample");
        kloset::writer::write_index(&storage, &opened.keys, 1, &packs).expect("index object");
    });
    println!(
        "added {blobs} blobs in {objects} index objects to {}",
        dir.display()
    );
}
