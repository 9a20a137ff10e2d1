//! Connectors of the Kloset engine to the world outside the store format:
//! a bucket prefix of any object store as importer and exporter
//! ([`bucket`]), commands as importer and exporter ([`command`]), and SFTP
//! servers as importer, exporter and store backend ([`sftp`]), and the
//! private files commands read their passwords from ([`secret_file`]).
//!
//! They implement the engine's contracts (`kloset::import::Importer`,
//! `kloset::export::Exporter`, `object_store::ObjectStore`) and nothing in
//! the engine calls them, so the `kloset` crate reads as the store format
//! and its operations. The daemon's integrations (`daemon/src/integrations/`)
//! build them from configuration.

pub mod bucket;
pub mod command;
pub mod secret_file;
pub mod sftp;
