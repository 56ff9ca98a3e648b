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

/// mimalloc's `mi_option_arena_eager_commit`: its index in `mi_option_t` (mimalloc.h, v3),
/// which the Rust bindings do not name.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Before anything allocates (a constructor, run ahead of `main` and of the standard
/// library's own set-up): the allocator (mimalloc) commits its arena's memory as it is used
/// instead of eagerly, and transparent huge pages are off. Either one set in `main` comes
/// too late: the first allocation has already committed the arena and, where the kernel
/// allows THP on request, faulted in a 2 MiB page, which an idle process then holds for
/// good (bench/README.md).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[cfg(target_os = "linux")]
extern "C" fn before_main() {
    // SAFETY: mi_option_set takes an option index and a value and only stores them (an
    // index mimalloc does not know is ignored); it allocates nothing.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
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
    use super::*;

    #[test]
    fn the_constructor_has_run_before_the_test_harness() {
        // SAFETY: both calls read a setting and touch no memory of ours.
        let (eager, thp_off) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0),
            )
        };
        assert_eq!(eager, 0, "mimalloc still commits its arenas eagerly");
        assert_eq!(thp_off, 1, "transparent huge pages are still allowed");
    }
}
