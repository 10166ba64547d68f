//! Process-wide settings the `unravel` binary (and the benchmarks, to measure the same thing)
//! applies first thing in `main`.

/// Keeps freed memory in the process for reuse instead of handing it back to the OS.
///
/// Why: every forward pass allocates and frees the same few activation buffers (megabytes each).
/// glibc serves blocks that large with `mmap` and unmaps them on free, so each pass faulted and
/// zeroed its pages afresh (~2% of CPU time in the kernel). With the thresholds raised, those
/// blocks are reused: +4–5% tokens/s on DistilBERT-base at batch 8 × 128, same peak RSS
/// (BENCHMARKS.md). No effect outside glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: mallopt only changes allocator thresholds; called before the big allocations.
    unsafe {
        // 32 MiB is the largest mmap threshold glibc accepts; bigger blocks are still unmapped.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
