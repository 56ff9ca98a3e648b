//! The operating-system calls cohort makes that Rust's standard library does not: the only
//! crate of the workspace allowed `unsafe` code. Each call lowers or limits what the
//! calling thread or process may do, so none needs privileges; a refused call leaves the
//! default in place and says so at debug level.

/// Transparent huge pages off for this process. With the kernel's THP set to `always`, the
/// first touch of an aligned 2 MiB region of the allocator's arena maps all of it, which
/// multiplies the resident memory of an idle process (bench/README.md).
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and touches no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "transparent huge pages stay as the kernel sets them");
        }
    }
}

/// Transparent huge pages off before anything allocates (a constructor, run ahead of
/// `main` and of the standard library's own set-up). Turned off from `main` it comes too
/// late: the allocator's first arena has already been touched and, where the kernel grants
/// huge pages on request (`madvise`, as mimalloc asks for its arenas), whole 2 MiB pages
/// were faulted in, which an idle process then holds for good (bench/README.md).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[cfg(target_os = "linux")]
extern "C" fn before_main() {
    disable_transparent_huge_pages();
}

/// Lowers the calling thread's scheduling priority below the threads that serve requests:
/// `SCHED_BATCH` (its wake-ups do not preempt a running thread) and `nice` steps nicer than
/// the thread that started it (at most 19). Linux keeps scheduling attributes per thread,
/// so no other thread is touched. Returns false (and the thread keeps normal priority) if
/// the calls are refused, e.g. by a seccomp profile.
pub fn lower_thread_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid, initialised local.
        let batch = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        // SAFETY: a plain integer argument; glibc's nice() changes the calling thread's
        // niceness on Linux (setpriority on thread id 0), clamped at 19.
        let niced = unsafe { libc::nice(nice) };
        if batch != 0 || niced == -1 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "thread keeps normal CPU priority");
            return false;
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// The scheduling policy number of `SCHED_BATCH`, for tests that read a thread's policy.
#[cfg(target_os = "linux")]
pub const SCHED_BATCH: i32 = libc::SCHED_BATCH;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_constructor_has_run_before_the_test_harness() {
        // SAFETY: prctl(PR_GET_THP_DISABLE) reads a setting and touches no memory of ours.
        let thp_off = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(thp_off, 1, "transparent huge pages are still allowed");
    }
}
