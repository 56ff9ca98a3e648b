//! The routing table in force: one `ArcSwap`, read once per request, swapped whole.
//!
//! A request calls [`LiveRoutes::load`] once and keeps the returned `Arc` for its whole
//! life, so it finishes on the table it started with even if a reload swaps in a new one
//! meanwhile. Reading is lock-free and wait-free (`arc_swap`); there is no other shared
//! state on the hot path.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Routes;

/// The table the proxy serves from.
#[derive(Debug)]
pub struct LiveRoutes {
    current: ArcSwap<Routes>,
}

impl LiveRoutes {
    pub fn new(routes: Routes) -> Self {
        Self {
            current: ArcSwap::from_pointee(routes),
        }
    }

    /// The table in force now; hold it for the whole request.
    pub fn load(&self) -> Arc<Routes> {
        self.current.load_full()
    }

    /// Puts `routes` in force for every request that starts from now on; returns the
    /// table it replaced.
    pub fn swap(&self, routes: Routes) -> Arc<Routes> {
        self.current.swap(Arc::new(routes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn a_held_table_survives_a_swap() {
        let a = config::parse("a.yaml", "listen: 127.0.0.1:1\n").expect("a");
        let b = config::parse("b.yaml", "listen: 127.0.0.1:2\n").expect("b");
        let live = LiveRoutes::new(a);
        let held = live.load();
        let old = live.swap(b);
        assert_eq!(held.source.file, "a.yaml");
        assert_eq!(old.source.file, "a.yaml");
        assert_eq!(live.load().source.file, "b.yaml");
        assert_ne!(held.version, live.load().version);
    }
}
