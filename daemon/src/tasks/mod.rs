//! Task execution for the daemon: store readiness (test connection, detect,
//! initialise) and running backup, check and restore tasks.

pub mod backup;
pub mod hooks;
pub mod restore;
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
