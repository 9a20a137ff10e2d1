//! Operations on a store, one module each: options in, report out.

pub mod backup;
pub mod browse;
pub mod check;
pub mod export;
pub mod forget;
mod large_file;
pub mod prune;
pub mod restore;
pub mod sync;
pub mod upgrade;

/// A rayon pool for one operation: `threads` workers (0 = one per core),
/// named `kloset-OP-N`.
pub(crate) fn worker_pool(threads: usize, op: &'static str) -> crate::Result<rayon::ThreadPool> {
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("kloset-{op}-{i}"))
        .build()
        .map_err(|e| crate::Error::InvalidArgument(format!("cannot start worker threads: {e}")))
}
