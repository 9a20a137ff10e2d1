//! Operations on a store, one module each: options in, report out.

pub mod backup;
pub mod browse;
pub mod check;
pub mod restore;
