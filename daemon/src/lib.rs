//! klosetd: the declarative backup daemon, and the `kloset` command line
//! that shares its configuration model.

pub mod app;
pub mod cli;
pub mod config;
pub mod daemon_cli;
pub mod http;
pub mod integrations;
pub mod notify;
pub mod plan;
pub mod redact;
pub mod scheduler;
pub mod state;
pub mod status;
pub mod tasks;

#[cfg(test)]
mod layering;
