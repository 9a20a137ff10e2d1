//! Task execution for the daemon: store readiness (test connection, detect,
//! initialise) and running backup (with retention), check, restore and prune
//! tasks.

pub mod backup;
pub mod hooks;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod run;
pub mod store;
pub mod sync;
pub mod verify;

pub use run::{RunStatus, TaskResult, execute};
pub use store::{
    OpenedStore, ReadyReason, StoreProblem, StoreReason, open_store, open_store_detailed,
};

#[cfg(test)]
mod tests;
