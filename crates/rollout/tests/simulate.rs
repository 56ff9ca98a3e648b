//! Seeded simulations of the error-rate guardrail: the real tally ([`Guardrails`]) and the
//! real [`evaluate`], no network.
//!
//! The setting, shared by both: one experiment under rollout at a 50/50 split; units arrive
//! alternately to the control and to the treatment, each sends a number of requests drawn
//! uniformly from 1..=5, one millisecond apart (timestamps from a fixed base time, the
//! rollout's `Start` at the base time and the first exposure one millisecond later); each
//! request fails (status 500, else 200) independently with its arm's probability. The
//! exposures reach the tally as the event writer hands them over: borrowed
//! [`ExposureRef`]s, timestamp and nanoseconds as the proxy fills them in, through
//! [`Observer::written`]. The rollout is evaluated every [`E`] = 100 treatment requests,
//! each evaluation on a fresh snapshot of the tally at the time of the last request. Only
//! the error guardrail can act: guardrail defaults (alpha 0.05, n_star 5000,
//! max_error_rate_increase 0.005, min_errors 5), `step_min_units` 200, no latency
//! guardrail (`max_latency_p99_ratio: null`), no primary-metric guardrail, and
//! `step_min_s` so large that no step ends. Only a `rollback` action counts.
//!
//! Per-unit error rates: a unit of r requests with f failures has rate f/r. Given r, f is
//! Binomial(r, p), so E[f/r] = p whatever r is (the difference of the arms' per-unit means
//! is the difference of their failure probabilities), and the variance of the rate is
//! E[p(1 − p)/r] = p(1 − p)·E[1/r], with E[1/r] = (1 + 1/2 + 1/3 + 1/4 + 1/5)/5 = 137/300
//! for r uniform on 1..=5: exact, no simulation needed. A unit still sending at an
//! evaluation has the rate of its requests so far, of the same mean p. Both facts need the
//! failures independent of r and of one another; keep them so.
//!
//! 1. **Time to rollback** ([`a_failing_treatment_rolls_back_in_time`]). Treatment fails
//!    5% of requests, control 0.1%. Over [`TTR_RUNS`] = 200 seeded runs, the treatment
//!    requests at the evaluation that rolled back. The bound: with u(n) = ⌊n / 3⌋ units
//!    per arm after n treatment requests (3 = E[r]; the arms alternate, so the control has
//!    as many units), the smallest n at which u(n) ≥ `step_min_units`, the expected
//!    treatment failures p_t·n ≥ `min_errors`, and the true difference minus
//!    [`half_width`] of the sequence at u(n) units per arm with the exact variances above
//!    exceeds `max_error_rate_increase`; plus E. The first evaluation at or after n comes
//!    at most E − 1 requests later, and by one interval later the gates are passed and the
//!    lower end is above the bound in most runs (it is whenever the estimate is at least
//!    the true difference), so the median must be at or below the bound. Every run must
//!    roll back before [`TTR_CAP_UNITS`] = 5,000 units per arm.
//!
//! 2. **False rollbacks** ([`no_more_false_rollbacks_than_alpha`]). Control fails 0.2% of
//!    requests, treatment 0.7%: the true difference of the per-unit means is 0.005, equal
//!    to `max_error_rate_increase`, so a rollback is a false one (the confidence sequence
//!    has left the true difference). R = [`FALSE_RUNS`] = 200 seeded rollouts (what fits a
//!    debug build's time on two cores), each evaluated at every interval up to
//!    [`FALSE_HORIZON_UNITS`] = 20,000 units per arm (and once more at the end), or until
//!    it rolls back. The rate of runs that rolled back at any evaluation must stay at or
//!    below alpha + 3·√(alpha(1 − alpha)/R), alpha from the config: the sequence is valid
//!    at every look, so no more than alpha of the runs may leave it, up to three standard
//!    errors of R runs.
//!
//! The runs are spread over the machine's threads; each run has its own seed, so the
//! results do not depend on how many.

use std::thread;
use std::time::{Duration, UNIX_EPOCH};

use cohort_config::schema::RolloutConfig;
use cohort_events::{clock, EventRef, ExposureRef, Observer};
use cohort_rollout::record::RolloutTag;
use cohort_rollout::tally::Watch;
use cohort_rollout::{evaluate, fold, Guardrails, Kind, RolloutEvent, RolloutState, Verdicts};
use cohort_stats::sequential::half_width;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Geometric};

/// Treatment requests per evaluation.
const E: u64 = 100;
const EXPERIMENT: &str = "e";
const CONTROL: &str = "c";
const TREATMENT: &str = "t";
/// The rollout's start; the first exposure is one millisecond later.
const BASE: &str = "2026-12-07T10:00:00.000Z";
const MS: i64 = 1_000_000;
/// The most requests a unit sends (uniform on 1..=MAX_REQUESTS).
const MAX_REQUESTS: u32 = 5;

const TTR_RUNS: u64 = 200;
const TTR_P: [f64; 2] = [0.001, 0.05];
const TTR_CAP_UNITS: u64 = 5_000;

const FALSE_RUNS: u64 = 200;
const FALSE_P: [f64; 2] = [0.002, 0.007];
const FALSE_HORIZON_UNITS: u64 = 20_000;

/// Guardrail defaults, only the error guardrail on, no step ending.
fn config() -> RolloutConfig {
    serde_json::from_str(
        r#"{
            "treatment": "t",
            "steps": [0.5],
            "step_min_s": 1e12,
            "step_min_units": 200,
            "guardrails": {"max_latency_p99_ratio": null, "primary_metric": false}
        }"#,
    )
    .unwrap()
}

fn base_ns() -> i64 {
    clock::parse_nanos(BASE).unwrap()
}

/// A running rollout, as the fold of its `Start`.
fn running() -> RolloutState {
    let start = RolloutEvent {
        kind_of_line: RolloutTag::Rollout,
        ts: BASE.to_owned(),
        experiment: EXPERIMENT.into(),
        rollout_id: "r1".into(),
        attempt: 0,
        step: 0,
        kind: Kind::Start,
        share: 0.5,
        reason: "started".into(),
        by: "cohort".into(),
        guardrails: Default::default(),
    };
    let state = fold("r1", [&start]).unwrap();
    assert_eq!(state.status, cohort_rollout::Status::Running);
    state
}

/// A request's exposure as the proxy hands it to the event writer: the timestamp formatted
/// by [`clock::rfc3339_bytes`], its nanoseconds to the millisecond beside it, and the unit
/// by index into its batch's names.
struct Request {
    unit: usize,
    arm: usize,
    ts: [u8; 24],
    ts_ns: i64,
    failed: bool,
}

/// The exposures written since the last evaluation, and the names of their units. Kept
/// from one batch to the next (a debug build spends its time allocating otherwise).
#[derive(Default)]
struct Batch {
    requests: Vec<Request>,
    units: Vec<String>,
}

impl Batch {
    /// The index of `unit` among the batch's names, added when it is not the last one.
    fn unit(&mut self, unit: &str) -> usize {
        if self.units.last().is_none_or(|u| u != unit) {
            self.units.push(unit.to_owned());
        }
        self.units.len() - 1
    }

    fn push(&mut self, unit: &str, arm: usize, ns: i64, failed: bool) {
        let unit = self.unit(unit);
        let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap());
        self.requests.push(Request {
            unit,
            arm,
            ts: clock::rfc3339_bytes(at),
            ts_ns: ns - ns % MS,
            failed,
        });
    }

    /// Hands the batch to the tally as the event writer does (the events borrowed, as
    /// the proxy's pending exposures are), and empties it.
    fn write(&mut self, observer: &dyn Observer) {
        let events: Vec<EventRef<'_>> = self
            .requests
            .iter()
            .map(|r| {
                EventRef::Exposure(ExposureRef {
                    v: Some(1),
                    ts: std::str::from_utf8(&r.ts).unwrap(),
                    experiment: EXPERIMENT,
                    unit: &self.units[r.unit],
                    variant: [CONTROL, TREATMENT][r.arm],
                    request_id: None,
                    client_request_id: None,
                    config_version: None,
                    route: None,
                    status: Some(if r.failed { 500 } else { 200 }),
                    // No latency guardrail: nothing reads it.
                    latency_ms: None,
                    aborted: false,
                    forced: false,
                    unit_missing: false,
                    phase: None,
                    ts_ns: Some(r.ts_ns),
                    clean: true,
                })
            })
            .collect();
        observer.written(&events);
        self.requests.clear();
        self.units.clear();
    }
}

/// One rollout with failure probabilities `p` ([control, treatment]): the treatment
/// requests at the evaluation that rolled back, or None if none did before each arm had
/// `horizon_units` units.
fn run(cfg: &RolloutConfig, p: [f64; 2], seed: u64, horizon_units: u64) -> Option<u64> {
    let state = running();
    let guardrails = Guardrails::new();
    guardrails.watch(
        EXPERIMENT,
        Watch {
            control: CONTROL.into(),
            treatment: TREATMENT.into(),
            attempt_started_ns: state.attempt_started_ns(),
            step_started_ns: state.step_started_ns(),
            latency_window_s: cfg.guardrails.latency_window_s,
        },
    );
    let mut rng = StdRng::seed_from_u64(seed);
    // Each arm's requests fail independently with its probability: the runs of requests
    // that do not fail between two that do are geometric, one draw per failure.
    let gaps = p.map(|p| Geometric::new(p).unwrap());
    let mut until_failure = [0, 1].map(|arm| gaps[arm].sample(&mut rng));
    let mut ns = base_ns();
    let mut treatment_requests = 0u64;
    let mut latency_failures = 0;
    let mut batch = Batch::default();
    let mut unit = String::new();
    // Writes the batch and evaluates; true on a rollback.
    let mut look = |batch: &mut Batch, ns: i64| {
        batch.write(&guardrails);
        let arms = guardrails.snapshot(EXPERIMENT, ns).unwrap();
        let ev = evaluate(
            cfg,
            &state,
            &arms,
            Verdicts::default(),
            latency_failures,
            ns,
        );
        latency_failures = ev.latency_failures;
        matches!(ev.action, Some((Kind::Rollback, _)))
    };
    // Units alternate, the control first: unit k is the control's when k is even.
    for k in 0..2 * horizon_units {
        let arm = (k % 2) as usize;
        let variant = [CONTROL, TREATMENT][arm];
        unit.clear();
        unit.push_str(variant);
        unit.push_str(&k.to_string());
        for _ in 0..rng.random_range(1..=MAX_REQUESTS) {
            ns += MS;
            let failed = until_failure[arm] == 0;
            until_failure[arm] = if failed {
                gaps[arm].sample(&mut rng)
            } else {
                until_failure[arm] - 1
            };
            batch.push(&unit, arm, ns, failed);
            if arm == 1 {
                treatment_requests += 1;
                if treatment_requests.is_multiple_of(E) && look(&mut batch, ns) {
                    return Some(treatment_requests);
                }
            }
        }
    }
    (!batch.requests.is_empty() && look(&mut batch, ns)).then_some(treatment_requests)
}

/// `runs` rollouts, seeds `seed0..seed0 + runs`, spread over the threads; in seed order.
fn runs(p: [f64; 2], seed0: u64, runs: u64, horizon_units: u64) -> Vec<Option<u64>> {
    let cfg = config();
    let threads = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let cfg = &cfg;
                s.spawn(move || {
                    (i..runs)
                        .step_by(threads as usize)
                        .map(|r| (r, run(cfg, p, seed0 + r, horizon_units)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(u64, Option<u64>)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable_by_key(|&(r, _)| r);
        all.into_iter().map(|(_, x)| x).collect()
    })
}

/// E[1/r] for r uniform on 1..=MAX_REQUESTS.
fn mean_inverse_requests() -> f64 {
    (1..=MAX_REQUESTS).map(|r| 1.0 / f64::from(r)).sum::<f64>() / f64::from(MAX_REQUESTS)
}

/// The variance of a unit's error rate, failure probability `p` per request.
fn rate_variance(p: f64) -> f64 {
    p * (1.0 - p) * mean_inverse_requests()
}

/// The smallest treatment-request count n at which the true difference minus the
/// sequence's half-width, at u(n) units per arm and the exact per-unit variances, exceeds
/// `max_error_rate_increase`; with `gates`, also u(n) ≥ `step_min_units` and the expected
/// treatment failures at least `min_errors` (module doc, simulation 1).
fn first_due(cfg: &RolloutConfig, p: [f64; 2], gates: bool) -> u64 {
    let g = &cfg.guardrails;
    let mean_requests = f64::from(1 + MAX_REQUESTS) / 2.0;
    let (var_c, var_t) = (rate_variance(p[0]), rate_variance(p[1]));
    let difference = p[1] - p[0];
    let min_units = if gates { cfg.step_min_units.max(2) } else { 2 };
    let min_errors = if gates { g.min_errors as f64 } else { 0.0 };
    (1..=1_000_000u64)
        .find(|&n| {
            let units = (n as f64 / mean_requests) as u64;
            units >= min_units
                && p[1] * n as f64 >= min_errors
                && difference - half_width(units, var_t, units, var_c, g.alpha, g.n_star)
                    > g.max_error_rate_increase
        })
        .expect("the sequence narrows below the difference")
}

/// The nearest-rank `q` quantile of sorted `xs`.
fn quantile(xs: &[u64], q: f64) -> u64 {
    let rank = (q * xs.len() as f64).ceil().max(1.0) as usize;
    xs[rank - 1]
}

#[test]
fn a_failing_treatment_rolls_back_in_time() {
    let cfg = config();
    let due = first_due(&cfg, TTR_P, true);
    let bound = due + E;
    let results = runs(TTR_P, 1_000, TTR_RUNS, TTR_CAP_UNITS);
    let never = results.iter().filter(|r| r.is_none()).count();
    assert_eq!(
        never, 0,
        "{never} of {TTR_RUNS} runs did not roll back within {TTR_CAP_UNITS} units per arm"
    );
    let mut at: Vec<u64> = results.into_iter().flatten().collect();
    at.sort_unstable();
    let (q1, median, q3) = (quantile(&at, 0.25), quantile(&at, 0.5), quantile(&at, 0.75));
    let by_bound = at.iter().filter(|&&n| n <= bound).count();
    eprintln!(
        "time to rollback over {TTR_RUNS} runs (p control {}, treatment {}, evaluated every {E} \
         treatment requests), in treatment requests: min {}, q1 {q1}, median {median}, q3 {q3}, \
         max {}; bound {bound} = {due} + {E} (the sequence alone: {}); {by_bound} runs by the bound",
        TTR_P[0],
        TTR_P[1],
        at[0],
        at[at.len() - 1],
        first_due(&cfg, TTR_P, false),
    );
    assert!(
        median <= bound,
        "median {median} treatment requests to rollback, above the bound {bound}"
    );
}

#[test]
fn no_more_false_rollbacks_than_alpha() {
    let cfg = config();
    let g = &cfg.guardrails;
    assert!((FALSE_P[1] - FALSE_P[0] - g.max_error_rate_increase).abs() < 1e-15);
    let results = runs(FALSE_P, 1_000_000, FALSE_RUNS, FALSE_HORIZON_UNITS);
    let rolled_back: Vec<u64> = results.into_iter().flatten().collect();
    let r = FALSE_RUNS as f64;
    let rate = rolled_back.len() as f64 / r;
    let limit = g.alpha + 3.0 * (g.alpha * (1.0 - g.alpha) / r).sqrt();
    eprintln!(
        "false rollbacks: {} of R = {FALSE_RUNS} runs (rate {rate:.4}, limit {limit:.4}) \
         up to {FALSE_HORIZON_UNITS} units per arm; at treatment requests {rolled_back:?}",
        rolled_back.len(),
    );
    assert!(
        rate <= limit,
        "false rollback rate {rate} above {limit} (alpha {})",
        g.alpha
    );
}
