//! Shared helpers for the end-to-end tests in the top-level `tests/` directory.
//!
//! `tests/e2e.rs`, the one end-to-end test binary, declares it (`mod common;`)
//! and each test file uses it with `use crate::common;`. Not every helper
//! is in use at every moment, hence the `dead_code` allowance.
//!
//! - [`tree`]: build a deterministic tricky file tree and compare two trees.
//! - [`s3`]: run a real S3 server (`s3s-fs`) on a free loopback port.
//! - [`azurite`]: run a real Azure Blob Storage emulator (Azurite).
//! - [`cli`]: run the `kloset` binary with a passphrase and extra environment.
//! - [`rng`]: a tiny deterministic PRNG for fixtures.
//! - [`crash`]: the SIGKILL crash harness's seed, kills and checks.
//! - [`postgres`]: run a real PostgreSQL server on a free loopback port.
//! - [`mariadb`]: run a private MariaDB server on a free loopback port.
//! - [`promtool`]: check and unit-test Prometheus rules, lint `/metrics`.
//! - [`receiver`]: a recording HTTP receiver for notification tests.
//! - [`later_damage`]: a store with a damaged chunk in the middle of a file.
//! - [`proxy`]: a bandwidth-capped TCP proxy for fault tests.
//! - [`small_disk`]: a size-limited tmpfs to fill a disk (root).
//! - [`e2e`]: config directories, task waits and secret checks for the
//!   integration tests that drive the daemon.
//! - [`sshd`]: run a real OpenSSH server on a free loopback port (shared with
//!   the connectors crate's tests).
#![allow(dead_code, unused_imports)]

pub mod azurite;
pub mod cli;
pub mod crash;
pub mod daemon;
pub mod e2e;
pub mod later_damage;
pub mod mariadb;
pub mod postgres;
pub mod promtool;
pub mod proxy;
pub mod receiver;
pub mod rng;
pub mod s3;
pub mod server;
pub mod small_disk;
#[path = "../../connectors/tests/common/sshd.rs"]
pub mod sshd;
pub mod store;
pub mod tree;
