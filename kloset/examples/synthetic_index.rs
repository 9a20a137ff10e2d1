//! Grows a store's index with synthetic blobs: index objects that list
//! random blob ids in empty pack objects, for measuring how opening a store
//! and backing up into it grow with the size of its index
//! (docs/performance.md, "Index size"; `bench/index_scale.sh` drives it).
//! The store's data cannot be checked or restored: the packs are empty.
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        kloset::writer::write_index(&storage, &opened.keys, 1, &packs).expect("index object");
    });
    println!(
        "added {blobs} blobs in {objects} index objects to {}",
        dir.display()
    );
}
