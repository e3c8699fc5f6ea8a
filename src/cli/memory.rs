//! What keeps a long-running process's resident memory flat under glibc's allocator.
//!
//! glibc gives threads arenas of their own (up to eight per core) and keeps what is freed in them:
//! a worker that has run a million jobs held 178 MB, creeping up with the jobs, while its heap in
//! use stayed under 25 MB (docs/benchmarks.md, "The reactor holds back"). Two arenas, and the
//! free pages handed back to the system every half minute, keep it where the work needs it.

use std::time::Duration;

/// Two malloc arenas, unless `MALLOC_ARENA_MAX` says otherwise. Call before any thread starts, in
/// a process that runs until stopped: one that does a job and ends keeps glibc's arenas, as its
/// threads allocating at once (a rebuild's log reader, decoder and database thread) would queue
/// for two arenas' locks (docs/benchmarks.md, "Rebuild: one decode, and the allocator's locks").
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread has started yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// How often a process that runs until stopped (serve, worker, and `bench receipts`, which
/// measures them) hands free pages back.
pub const SERVING_TRIM: Duration = Duration::from_secs(30);
/// How often a rebuild does: its heap in use is flat in the size of the log (24.0 MB at 1 M and
/// at 5 M events, heaptrack), but what glibc keeps of what the batches free grew with the run.
pub const REBUILD_TRIM: Duration = Duration::from_secs(2);

/// Hands the allocator's free pages back to the system at each tick of `every`, for as long as
/// the process runs.
pub fn trim_periodically(every: Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut every = tokio::time::interval(every);
        every.tick().await;
        loop {
            every.tick().await;
            // Walks every arena (a few milliseconds for a hundred megabytes): off the runtime's
            // worker threads.
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim takes the allocator's own locks; it is safe from any thread.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
        }
    });
}
