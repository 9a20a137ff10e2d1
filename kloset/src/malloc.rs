//! Keeps glibc's allocator from growing one arena per thread.
//!
//! glibc gives each thread that contends for the heap its own arena, up to
//! eight per core, and memory freed into one arena is not reused by
//! another. A restore from S3 runs 16 workers (they mostly wait on
//! requests), so its peak RSS on the sysroot corpus was 194 MiB with the
//! default and 90 MiB with two arenas, at the same speed; a backup was no
//! slower either (docs/performance.md). Call once, first thing in `main`.

/// Limits the allocator to one arena per core (at least two). A no-op
/// outside glibc; failure is harmless.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter, and `main`
        // calls this before it starts other threads. The one unsafe block
        // of the workspace: no crate wraps mallopt.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
