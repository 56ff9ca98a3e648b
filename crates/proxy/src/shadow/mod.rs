//! Shadow traffic: a sample of an experiment's requests copied to candidate models whose
//! answers are compared with the served one and never reach a client.
//!
//! ```text
//! route ─▶ plan ─▶ rewrite ─▶ head ─▶ send (request copied) ─▶ … ─▶ record (answer copied)
//!            │                                 │                          │
//!            └ lanes taken, permits held       └ to the shadow thread ───▶ compared, recorded
//! ```
//!
//! * [`lane`]: a configured shadow as the data plane serves it: its sampling, its
//!   in-flight permits and its metric handles;
//! * [`copy`]: one request's copies: which shadows took it, its head, the taps that copy
//!   its request body and the served answer, and the hand-off to the shadow thread;
//! * [`runner`]: the shadow thread: the copies sent, the answers compared
//!   ([`cohort_compare`]), counted and logged.
//!
//! The client's answer is the primary's, whatever a shadow does: the taps only clone the
//! frames that pass, a copy that cannot be made is dropped and counted, and every shadow
//! call runs on its own thread, with its own connection pools, at a lower CPU priority
//! than the serving threads.

pub mod copy;
pub mod lane;
mod runner;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};

use cohort_events::EventLog;

pub use copy::{plan, Call};
pub use lane::{Lane, ShadowResult};

/// The shadow side of a proxy: what outlives routing tables (each shadow's in-flight count)
/// and the thread the copies go to, started with the first copy. Cloning is cheap.
#[derive(Clone, Default)]
pub struct Shadows {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By (experiment, shadow): kept across reloads, so that a reload never frees permits
    /// still held by copies in flight.
    inflight: Mutex<HashMap<(String, String), Arc<AtomicU32>>>,
    /// Where `"type": "shadow"` lines go (none: metrics only).
    log: OnceLock<EventLog>,
    /// None when the thread could not be started (copies are then counted as errors).
    runner: OnceLock<Option<runner::Handle>>,
}

impl Shadows {
    /// Writes each compared copy's line to `log`.
    pub fn log_to(&self, log: EventLog) {
        let _ = self.inner.log.set(log);
    }

    /// The in-flight count of `shadow` of `experiment`.
    pub(crate) fn inflight(&self, experiment: &str, shadow: &str) -> Arc<AtomicU32> {
        let mut map = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry((experiment.to_owned(), shadow.to_owned()))
            .or_default()
            .clone()
    }

    fn runner(&self) -> Option<&runner::Handle> {
        self.inner
            .runner
            .get_or_init(|| match runner::start(self.inner.log.get().cloned()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the shadow thread: no copies are sent");
                    None
                }
            })
            .as_ref()
    }
}
