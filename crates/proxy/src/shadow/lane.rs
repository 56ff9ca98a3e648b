//! A configured shadow as the data plane serves it, built with each routing table.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use prometheus::{Histogram, IntCounter};

use crate::budget::PerSecond;
use crate::metrics::Metrics;
use cohort_compare::Tolerance;
use cohort_config::Shadow;

/// What became of a request considered for a shadow (`cohort_shadow_requests_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowResult {
    /// Compared: the shadow's answer agreed with the served one.
    Agree,
    Disagree,
    /// The shadow could not be reached, or its answer broke off.
    Error,
    /// No whole answer from the shadow within its `timeout_ms`.
    Timeout,
    /// A body (the request, or either answer) over `max_body_bytes`.
    SkippedBody,
    /// No in-flight permit free when the request started.
    SkippedInflight,
    /// A request without a unit: sampling is by unit.
    SkippedNoUnit,
    /// A protocol upgrade (WebSocket): not copied.
    SkippedUpgrade,
    /// The served answer did not come whole (the request or the response was cut short,
    /// or cohort answered with its own error): nothing to compare with.
    SkippedPrimary,
}

impl ShadowResult {
    pub const ALL: [ShadowResult; 9] = [
        Self::Agree,
        Self::Disagree,
        Self::Error,
        Self::Timeout,
        Self::SkippedBody,
        Self::SkippedInflight,
        Self::SkippedNoUnit,
        Self::SkippedUpgrade,
        Self::SkippedPrimary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agree => "agree",
            Self::Disagree => "disagree",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::SkippedBody => "skipped_body",
            Self::SkippedInflight => "skipped_inflight",
            Self::SkippedNoUnit => "skipped_no_unit",
            Self::SkippedUpgrade => "skipped_upgrade",
            Self::SkippedPrimary => "skipped_primary",
        }
    }
}

/// One shadow of one experiment, with its handles.
pub struct Lane {
    pub shadow: Shadow,
    pub experiment: String,
    inflight: Arc<AtomicU32>,
    results: [IntCounter; 9],
    pub abs_diff: Histogram,
    pub latency_primary: Histogram,
    pub latency_shadow: Histogram,
    /// `compare.tolerance`, as the comparison takes it.
    pub tolerance: Tolerance,
    /// Disagreements logged with their answers this second.
    pub payload_budget: PerSecond,
}

impl Lane {
    pub fn new(
        experiment: &str,
        shadow: &Shadow,
        inflight: Arc<AtomicU32>,
        metrics: &Metrics,
    ) -> Self {
        let (e, s) = (experiment, shadow.name.as_str());
        Self {
            results: ShadowResult::ALL.map(|r| {
                metrics
                    .shadow_requests
                    .with_label_values(&[e, s, r.as_str()])
            }),
            abs_diff: metrics.shadow_abs_diff.with_label_values(&[e, s]),
            latency_primary: metrics.shadow_latency.with_label_values(&[e, s, "primary"]),
            latency_shadow: metrics.shadow_latency.with_label_values(&[e, s, "shadow"]),
            tolerance: Tolerance {
                absolute: shadow.config.compare.tolerance.absolute,
                relative: shadow.config.compare.tolerance.relative,
            },
            payload_budget: PerSecond::new(shadow.config.max_diff_events_per_s),
            inflight,
            experiment: experiment.to_owned(),
            shadow: shadow.clone(),
        }
    }

    pub fn count(&self, r: ShadowResult) {
        self.results[r as usize].inc();
    }

    /// One of the shadow's `max_inflight` permits, if one is free.
    pub fn permit(self: &Arc<Self>) -> Option<Permit> {
        let max = self.shadow.config.max_inflight;
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(self.inflight.clone()))
    }
}

/// A held in-flight permit, given back when dropped.
pub struct Permit(Arc<AtomicU32>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::ShadowResult;

    /// A result's counter is found by its discriminant: `ALL` must list them in order.
    #[test]
    fn every_result_is_at_its_own_index() {
        for (i, r) in ShadowResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.as_str());
        }
    }
}
