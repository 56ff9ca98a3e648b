//! The table in force: one `ArcSwap`, read once per request, swapped whole.
//!
//! A request calls [`Live::load`] once and keeps the returned `Arc` for its whole life, so
//! it finishes on the table it started with even if a reload swaps in a new one meanwhile.
//! Reading is lock-free (`arc_swap`); there is no other shared state on the hot path. The
//! proxy keeps a `Live<Serving>`: the compiled [`cohort_config::Routes`] together with the
//! per-variant handles (upstream clients, metric handles) built beside it.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// A value that is read on every request and replaced whole.
#[derive(Debug)]
pub struct Live<T> {
    current: ArcSwap<T>,
}

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        Self {
            current: ArcSwap::from_pointee(value),
        }
    }

    /// The value in force now; hold it for the whole request.
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Puts `value` in force for every request that starts from now on; returns the value
    /// it replaced.
    pub fn swap(&self, value: T) -> Arc<T> {
        self.current.swap(Arc::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_config as config;

    #[test]
    fn a_held_table_survives_a_swap() {
        let a = config::parse("a.yaml", "listen: 127.0.0.1:1\n").expect("a");
        let b = config::parse("b.yaml", "listen: 127.0.0.1:2\n").expect("b");
        let live = Live::new(a);
        let held = live.load();
        let old = live.swap(b);
        assert_eq!(held.source.file, "a.yaml");
        assert_eq!(old.source.file, "a.yaml");
        assert_eq!(live.load().source.file, "b.yaml");
        assert_ne!(held.version, live.load().version);
    }
}
