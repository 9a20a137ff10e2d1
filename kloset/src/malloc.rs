//! Keeps glibc's allocator from holding memory that the program freed.
//!
//! Two settings, both measured (docs/performance.md):
//!
//! - **One arena per core.** glibc gives each thread that contends for the
//!   heap its own arena, up to eight per core, and memory freed into one
//!   arena is not reused by another. A restore from S3 runs 16 workers
//!   (they mostly wait on requests), so its peak RSS on the sysroot corpus
//!   was 194 MiB with the default and 90 MiB with two arenas, at the same
//!   speed.
//! - **A fixed mmap threshold of 4 MiB.** By default glibc raises the
//!   threshold above which it maps memory each time a mapped block is
//!   freed, up to 32 MiB; after the first 16 MiB pack buffer is freed,
//!   every pack and large-chunk buffer comes from the arenas, and their
//!   holes stay resident. A backup of one million small files peaked at
//!   204 MiB RSS for 118 MiB of heap; with the threshold fixed at 4 MiB it
//!   peaks at 153 MiB, and the sysroot backup at 85–92 MiB instead of
//!   91–101 MiB (137–147 MiB once packs stopped doubling, without the
//!   fixed threshold), at the same speed. At 1 MiB a restore spent 0.7 s
//!   more in the kernel mapping chunk buffers.
//!
//! Call once, first thing in `main`.

/// Buffers of this size and larger are mapped and unmapped on their own.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Limits the allocator to one arena per core (at least two) and fixes its
/// mmap threshold at [`MMAP_THRESHOLD`]. A no-op outside glibc; failure is
/// harmless.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets allocator parameters, and `main` calls
        // this before it starts other threads. The one unsafe block of the
        // workspace: no crate wraps mallopt.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
        }
    }
}
