//! Kloset: a content-addressed, deduplicating, compressed and encrypted
//! backup store over any object storage: the store format and its
//! operations. It opens local directories and memory by itself; any other
//! `object_store::ObjectStore` (S3, SFTP, …) comes in through
//! [`Storage::from_object_store`], and connectors to the world (buckets,
//! SFTP, commands) live in the `kloset-connectors` crate.
//!
//! The on-store format is written down in `FORMAT.md` next to this crate.
//! This crate has no configuration parsing and no daemon concerns.
//!
//! ```
//! use kloset::{Location, Repository, Storage};
//! use kloset::ops::backup::{backup, BackupOptions};
//! use kloset::repository::CreateOptions;
//!
//! let storage = Storage::open(&Location::Memory, false).unwrap();
//! let mut opts = CreateOptions::default();
//! opts.kdf = kloset::crypto::KdfParams::with_cost(64, 1, 1); // fast, for the example
//! let repo = Repository::create(storage, b"correct horse", opts).unwrap();
//! let dir = std::env::temp_dir().join(format!("kloset-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("hello.txt"), b"hello").unwrap();
//! let snap = backup(&repo, &dir, &BackupOptions::default()).unwrap();
//! assert_eq!(snap.stats.files, 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

pub mod chunker;
pub mod codec;
pub mod crypto;
pub mod dirfd;
pub mod error;
pub mod export;
pub mod fetch;
pub mod fsmeta;
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod fuzz_targets;
pub mod header;
pub mod id;
pub mod import;
pub mod index;
pub mod lock;
pub mod malloc;
pub mod marks;
pub mod ops;
pub mod pack;
pub mod pack_spool;
pub mod progress;
pub mod repository;
pub mod snapshot;
pub mod storage;
pub mod tree;
pub mod tree_cache;
pub mod tree_walk;
pub mod writer;

pub use error::{Error, ErrorKind, Result};
pub use id::{BlobId, BlobKind, PackId, SnapshotId, StoreId};
pub use progress::Progress;
pub use repository::Repository;
pub use snapshot::Snapshot;
pub use storage::{Location, Storage};
