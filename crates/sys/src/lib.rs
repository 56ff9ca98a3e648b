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

/// Unmaps, from this process only, the pages of code and read-only data that start-up
/// touched: each loaded object's segments that are never written (its text, its constants),
/// with `MADV_DONTNEED`. Start-up (argument and YAML parsing, compiling the config,
/// registering metrics, starting the runtimes) runs code all over the binary, and the
/// kernel maps 64 KiB around each first touch, so an idle process would otherwise keep most
/// of the binary's text resident. The pages stay in the page cache: what serving touches
/// again comes back with a minor fault, nothing is read from disk, and no content can be
/// lost, because a segment mapped without write permission holds only what its file holds.
/// Call once start-up is done; a refused call leaves the pages mapped.
pub fn release_start_up_code() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the callback only reads what the dynamic linker hands it, and advises
        // on segments that are mapped read-only from their file.
        unsafe { libc::dl_iterate_phdr(Some(release_read_only_segments), std::ptr::null_mut()) };
    }
}

#[cfg(target_os = "linux")]
unsafe extern "C" fn release_read_only_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    _data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the dynamic linker passes a valid `dl_phdr_info` whose `dlpi_phdr` points at
    // `dlpi_phnum` program headers and whose name is a C string, for this call's duration.
    let (base, name, headers) = unsafe {
        let info = &*info;
        let name = if info.dlpi_name.is_null() {
            &b""[..]
        } else {
            std::ffi::CStr::from_ptr(info.dlpi_name).to_bytes()
        };
        let headers: Vec<libc::Elf64_Phdr> =
            std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)).to_vec();
        (info.dlpi_addr as usize, name, headers)
    };
    // The kernel's own object has no file behind it.
    if name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
        return 0;
    }
    // SAFETY: sysconf takes a plain integer.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // The headers were copied first: they live in the first segment, unmapped below.
    for h in headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0)
    {
        let start = base + h.p_vaddr as usize;
        let first = start & !(page - 1);
        let len = (start + h.p_memsz as usize).next_multiple_of(page) - first;
        // SAFETY: a loaded segment of this process, mapped without write permission, so
        // every page of it equals its file's: dropping the mapping loses nothing, and the
        // next touch maps the page again from the page cache.
        unsafe { libc::madvise(first as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    }
    0
}

/// How much nicer cohort's background threads (the event writer, the shipper, the monitor,
/// the shadow thread) are than the serving threads. They run at lower priority so that
/// serving threads win a shared core: at 10 a thread has about a tenth of a serving
/// thread's CPU weight under Linux's scheduler (110 against 1024), still more than the few
/// percent of a core each needs at saturation, and their queues absorb seconds of backlog.
/// bench/README.md has the measurements behind this.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority below the threads that serve requests:
/// `SCHED_BATCH` (its wake-ups do not preempt a running thread) and [`BACKGROUND_NICE`]
/// steps nicer than the thread that started it (at most 19). Linux keeps scheduling
/// attributes per thread, so no other thread is touched. Returns false (and the thread
/// keeps normal priority) if the calls are refused, e.g. by a seccomp profile.
pub fn lower_thread_priority() -> bool {
    let nice = BACKGROUND_NICE;
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

    /// KiB of this test binary's code resident now, from /proc/self/smaps.
    fn resident_code_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let exe = exe.to_string_lossy().into_owned();
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut in_code = false;
        let mut kib = 0;
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .first()
                .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
            {
                in_code = fields.get(1) == Some(&"r-xp") && fields.last() == Some(&exe.as_str());
            } else if in_code && fields.first() == Some(&"Rss:") {
                kib += fields[1].parse::<u64>().expect("Rss in kB");
            }
        }
        kib
    }

    #[test]
    fn letting_go_of_start_up_code_unmaps_it_and_code_still_runs() {
        let before = resident_code_kib();
        assert!(before > 0, "no resident code found in /proc/self/smaps");
        super::release_start_up_code();
        let after = resident_code_kib();
        assert!(
            after < before,
            "code resident before {before} KiB, after {after} KiB"
        );
        // What runs next is mapped back from the page cache, the same bytes.
        let s: String = format!("{:?}", (1..5).map(|i| i * 3).collect::<Vec<_>>());
        assert_eq!(s, "[3, 6, 9, 12]");
        assert!(resident_code_kib() > 0);
    }
}
