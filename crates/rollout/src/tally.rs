//! What the guardrails read, kept from the exposures the event writer has written (so a
//! restart rebuilds it by replaying the log, like the live counts).
//!
//! Per watched experiment and arm (control, treatment), from the start of the rollout's
//! attempt on, override and unit-less exposures left out:
//! * per unit, its requests and failed requests: a request failed when the upstream
//!   answered ≥ 500, cohort answered 502/504 for it, or the upstream broke off the
//!   response (`aborted`). A client's fault (a 4xx, a client that hung up, which is not an
//!   abort) is never a failure. The per-unit error
//!   rates are kept as a running count, sum and sum of squares, so the mean and
//!   variance of the arm's per-unit rates cost nothing to read. A unit that a step moved
//!   from control to treatment is a unit of each arm, for the requests each served;
//! * the units exposed since the step began;
//! * a latency window for the p99.

use std::collections::HashMap;
use std::sync::Mutex;

use cohort_events::{EventRef, ExposureRef, Observer};
use cohort_stats::welch::Moments;

use crate::latency::Window;

/// One arm as the guardrails see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmStats {
    /// Units exposed since the attempt began.
    pub units: u64,
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Units exposed since the step began.
    pub step_units: u64,
    /// The units' error rates (failed / requests, per unit).
    pub error_rates: Moments,
    /// Requests in the latency window, and their p99 in ms.
    pub window_requests: u64,
    pub p99_ms: Option<f64>,
}

/// The guardrail tallies of every experiment under rollout.
#[derive(Default)]
pub struct Guardrails {
    watched: Mutex<HashMap<String, Watched, foldhash::fast::RandomState>>,
}

/// Which arms and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub control: String,
    pub treatment: String,
    /// Exposures before this are not counted.
    pub attempt_started_ns: i64,
    /// Units are counted for the step from this on.
    pub step_started_ns: i64,
    pub latency_window_s: f64,
}

struct Watched {
    watch: Watch,
    /// (unit key, arm) → the unit's record in that arm.
    units: HashMap<(u128, u8), UnitRecord, foldhash::fast::RandomState>,
    arms: [Arm; 2],
}

#[derive(Clone, Copy, Default)]
struct UnitRecord {
    requests: u32,
    failures: u32,
    last_ns: i64,
}

#[derive(Default)]
struct Arm {
    units: u64,
    /// Σ rate and Σ rate² over the arm's units.
    sum: f64,
    sum_sq: f64,
    requests: u64,
    failures: u64,
    step_units: u64,
    latency: Window,
}

impl Watched {
    fn new(watch: Watch) -> Self {
        let arm = || Arm {
            latency: Window::new(watch.latency_window_s),
            ..Arm::default()
        };
        Self {
            arms: [arm(), arm()],
            units: HashMap::default(),
            watch,
        }
    }

    fn add(&mut self, x: &ExposureRef<'_>, ts: i64) {
        if ts < self.watch.attempt_started_ns || x.forced || x.unit_missing {
            return;
        }
        let arm = if x.variant == self.watch.control {
            0u8
        } else if x.variant == self.watch.treatment {
            1
        } else {
            return;
        };
        let failed = failed(x);
        let key = xxhash_rust::xxh3::xxh3_128(x.unit.as_bytes());
        let rec = self.units.entry((key, arm)).or_default();
        let a = &mut self.arms[usize::from(arm)];
        let rate = |r: &UnitRecord| f64::from(r.failures) / f64::from(r.requests);
        if rec.requests == 0 {
            a.units += 1;
        } else {
            let old = rate(rec);
            a.sum -= old;
            a.sum_sq -= old * old;
        }
        let new_in_step = rec.requests == 0 || rec.last_ns < self.watch.step_started_ns;
        if new_in_step && ts >= self.watch.step_started_ns {
            a.step_units += 1;
        }
        rec.requests = rec.requests.saturating_add(1);
        rec.failures = rec.failures.saturating_add(u32::from(failed));
        rec.last_ns = rec.last_ns.max(ts);
        let new = rate(rec);
        a.sum += new;
        a.sum_sq += new * new;
        a.requests += 1;
        a.failures += u64::from(failed);
        if let Some(ms) = x.latency_ms {
            a.latency.add(ts.div_euclid(1_000_000_000), ms);
        }
    }
}

/// The moments of `n` per-unit rates from their sum and sum of squares.
pub fn moments(n: u64, sum: f64, sum_sq: f64) -> Moments {
    let mean = if n > 0 { sum / n as f64 } else { 0.0 };
    Moments {
        n,
        mean,
        m2: (sum_sq - mean * sum).max(0.0),
    }
}

/// Whether a request failed: a 5xx (the upstream's, or cohort's 502/504) or an aborted
/// response.
pub fn failed(x: &ExposureRef<'_>) -> bool {
    x.aborted || x.status.is_some_and(|s| s >= 500)
}

impl Guardrails {
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches `experiment`'s arms as `watch` says. A new attempt (or other arms) starts
    /// from nothing; a new step only restarts the step's unit counts.
    pub fn watch(&self, experiment: &str, watch: Watch) {
        let mut all = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        match all.get_mut(experiment) {
            Some(w)
                if w.watch.control == watch.control
                    && w.watch.treatment == watch.treatment
                    && w.watch.attempt_started_ns == watch.attempt_started_ns
                    && w.watch.latency_window_s == watch.latency_window_s =>
            {
                if w.watch.step_started_ns != watch.step_started_ns {
                    for a in &mut w.arms {
                        a.step_units = 0;
                    }
                    w.watch.step_started_ns = watch.step_started_ns;
                }
            }
            _ => {
                all.insert(experiment.to_owned(), Watched::new(watch));
            }
        }
    }

    /// Stops watching `experiment` (its rollout is over or gone) and frees its tallies.
    pub fn unwatch(&self, experiment: &str) {
        let mut all = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        all.remove(experiment);
    }

    /// The control's and the treatment's stats, the latency window ending at `now_ns`.
    pub fn snapshot(&self, experiment: &str, now_ns: i64) -> Option<[ArmStats; 2]> {
        let all = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let w = all.get(experiment)?;
        let now_sec = now_ns.div_euclid(1_000_000_000);
        Some([0, 1].map(|i| {
            let a = &w.arms[i];
            let (window_requests, p99_ms) = a.latency.quantile(now_sec, 0.99);
            ArmStats {
                units: a.units,
                requests: a.requests,
                failures: a.failures,
                step_units: a.step_units,
                error_rates: moments(a.units, a.sum, a.sum_sq),
                window_requests,
                p99_ms,
            }
        }))
    }

    /// Adds written exposures (what the writer thread calls, and the replay).
    pub fn add<'a>(&self, events: impl IntoIterator<Item = EventRef<'a>>) {
        let mut all = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if all.is_empty() {
            return;
        }
        for e in events {
            if let EventRef::Exposure(x) = e {
                if let (Some(w), Some(ts)) = (all.get_mut(x.experiment), x.ts_ns) {
                    w.add(&x, ts);
                }
            }
        }
    }
}

impl Observer for Guardrails {
    fn written(&self, events: &[EventRef<'_>]) {
        self.add(events.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_events::Exposure;

    fn x(unit: &str, variant: &str, sec: i64, status: u16, ms: f64) -> Exposure {
        Exposure {
            v: Some(1),
            ts: cohort_events::clock::from_nanos(sec * 1_000_000_000),
            experiment: "e".into(),
            unit: unit.into(),
            variant: variant.into(),
            request_id: None,
            client_request_id: None,
            config_version: None,
            route: None,
            status: Some(status),
            latency_ms: Some(ms),
            aborted: false,
            forced: false,
            unit_missing: false,
            phase: None,
        }
    }

    fn watch(step_sec: i64) -> Watch {
        Watch {
            control: "c".into(),
            treatment: "t".into(),
            attempt_started_ns: 100 * 1_000_000_000,
            step_started_ns: step_sec * 1_000_000_000,
            latency_window_s: 60.0,
        }
    }

    /// Per-unit rates: a unit with 1 failure in 4 requests and one with none give mean
    /// 0.125 and the sample variance of {0.25, 0}.
    #[test]
    fn per_unit_error_rates_and_step_units() {
        let g = Guardrails::new();
        g.watch("e", watch(100));
        let mut evs = vec![
            x("a", "t", 99, 500, 1.0), // before the attempt: not counted
            x("a", "t", 101, 500, 1.0),
            x("a", "t", 102, 200, 1.0),
            x("a", "t", 103, 200, 1.0),
            x("a", "t", 104, 200, 1.0),
            x("b", "t", 105, 404, 1.0), // the client's fault: not a failure
            x("c1", "c", 105, 200, 1.0),
            x("zz", "other", 105, 500, 1.0),
        ];
        let mut forced = x("d", "t", 105, 500, 1.0);
        forced.forced = true;
        evs.push(forced);
        g.add(evs.iter().map(Exposure::view).map(EventRef::Exposure));
        let [c, t] = g.snapshot("e", 106 * 1_000_000_000).unwrap();
        assert_eq!(
            (t.units, t.requests, t.failures, t.step_units),
            (2, 5, 1, 2)
        );
        assert_eq!((c.units, c.failures), (1, 0));
        let want = Moments::of(&[0.25, 0.0]);
        assert!((t.error_rates.mean - want.mean).abs() < 1e-15);
        assert!((t.error_rates.variance() - want.variance()).abs() < 1e-15);
        // A new step restarts the step's unit counts only.
        g.watch("e", watch(200));
        let more = [x("a", "t", 201, 200, 1.0), x("a", "t", 202, 200, 1.0)];
        g.add(more.iter().map(Exposure::view).map(EventRef::Exposure));
        let [_, t] = g.snapshot("e", 203 * 1_000_000_000).unwrap();
        assert_eq!((t.units, t.step_units, t.requests), (2, 1, 7));
    }

    #[test]
    fn the_latency_window_gives_each_arm_its_p99() {
        let g = Guardrails::new();
        g.watch("e", watch(100));
        let evs: Vec<Exposure> = (0..200)
            .flat_map(|i| {
                [
                    x(&format!("c{i}"), "c", 150, 200, 10.0),
                    x(
                        &format!("t{i}"),
                        "t",
                        150,
                        200,
                        if i < 10 { 90.0 } else { 10.0 },
                    ),
                ]
            })
            .collect();
        g.add(evs.iter().map(Exposure::view).map(EventRef::Exposure));
        let [c, t] = g.snapshot("e", 151 * 1_000_000_000).unwrap();
        assert_eq!((c.window_requests, t.window_requests), (200, 200));
        assert!(c.p99_ms.unwrap() < 10.3 && t.p99_ms.unwrap() >= 90.0);
        // Past the window, nothing is left.
        let [c, _] = g.snapshot("e", 300 * 1_000_000_000).unwrap();
        assert_eq!((c.window_requests, c.p99_ms), (0, None));
    }
}
