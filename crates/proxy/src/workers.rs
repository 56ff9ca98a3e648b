//! Serving threads: one single-threaded tokio runtime per worker, nginx-style.
//!
//! `cohort serve --workers N` runs N threads, each driving its own current-thread runtime.
//! The main thread's runtime accepts every connection (one accept loop keeps the limits
//! and the shutdown order of [`crate::server`] exact) and hands each one, round-robin, to
//! a worker, where it lives until it closes: its requests, its upstream calls and their
//! pooled connections never leave that thread. A work-stealing runtime would move tasks
//! and wakes across threads on every request instead (bench/README.md measures the
//! difference).
//!
//! Each worker also has its own upstream connection pools ([`current`] picks them), so an
//! upstream connection is always driven by the thread that uses it.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running on this thread (0 on any other thread).
#[inline]
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// This worker's item of a per-worker slice (the last one if there are fewer; None if
/// empty).
#[inline]
pub fn pick<T>(items: &[T]) -> Option<&T> {
    items.get(current().min(items.len().saturating_sub(1)))
}

/// Where connections are served.
#[derive(Clone)]
pub struct Workers {
    handles: Arc<[Handle]>,
    next: Arc<AtomicUsize>,
}

impl Workers {
    /// Only the calling runtime: every connection is served where it is accepted.
    pub fn here() -> Self {
        Self {
            handles: Arc::from(Vec::new()),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The calling runtime as worker 0, plus `total - 1` threads with a runtime each.
    /// The threads run until the process exits.
    pub fn start(total: usize) -> std::io::Result<Self> {
        let mut handles = vec![Handle::current()];
        for index in 1..total.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            std::thread::Builder::new()
                .name(format!("cohort-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    runtime.block_on(std::future::pending::<()>());
                })?;
        }
        Ok(Self {
            handles: Arc::from(handles),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many workers serve connections.
    pub fn len(&self) -> usize {
        self.handles.len().max(1)
    }

    /// Never true: there is always the calling runtime.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The runtime the next connection goes to; None for "here".
    pub fn next(&self) -> Option<&Handle> {
        if self.handles.len() <= 1 {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        Some(&self.handles[i])
    }
}
