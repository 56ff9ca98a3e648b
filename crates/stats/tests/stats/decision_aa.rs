//! A/A simulation of the decision rule: how often it calls a difference that is not there.
//!
//! 2,000 A/A experiments in each of two settings — (p = 0.10, mde 0.10) and (p = 0.02,
//! mde 0.10) — looked at every 100 total units up to 3× the planned sample, with the
//! default gates (100 units, 30 conversions per arm). Any `winner` or `roll_back` is a
//! false positive. The sequential rule must stay at or below alpha + 3 standard errors
//! (0.0646), while the naive fixed p looked at the same way must exceed it (the peeking
//! problem the sequential rule exists to avoid). Only the decision function runs (the
//! units arrive as binomial draws), so both settings take seconds.

use cohort_stats::decision::{decide, decision_p, Arm, Judgement, Look, Method, Rule};
use cohort_stats::power::required_units_per_variant;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Binomial, Distribution};

const ALPHA: f64 = 0.05;
const POWER: f64 = 0.8;
const MDE: f64 = 0.10;
const EXPERIMENTS: u32 = 2_000;
const RULE: Rule = Rule {
    alpha: ALPHA,
    min_units: 100,
    min_conversions: 30,
};

fn positive(arms: &[Arm], p: &[Option<f64>], required: Option<f64>) -> bool {
    let d = decide(&Look {
        arms,
        control: 0,
        p,
        fixed_p: &[],
        rule: RULE,
        required,
        invalid: None,
        judgement: Judgement::Now,
    });
    d.variant.is_some() || !d.roll_back.is_empty()
}

/// (sequential false positives, naive fixed false positives) over one thread's share.
fn simulate(p: f64, seed: u64, experiments: u32) -> (u32, u32) {
    let planned = required_units_per_variant(p, MDE, ALPHA, POWER).unwrap();
    let horizon = (3.0 * 2.0 * planned) as u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut seq_fp, mut naive_fp) = (0, 0);
    for _ in 0..experiments {
        let mut arms = vec![
            Arm {
                name: "a".into(),
                weighted: true,
                units: 0,
                conversions: 0,
            },
            Arm {
                name: "b".into(),
                weighted: true,
                units: 0,
                conversions: 0,
            },
        ];
        // Frozen when the control first reaches min_conversions, as the report does.
        let mut required: Option<f64> = None;
        let (mut seq_done, mut naive_done) = (false, false);
        let mut total = 0;
        while total < horizon && !(seq_done && naive_done) {
            let to_b = Binomial::new(100, 0.5).unwrap().sample(&mut rng);
            for (arm, n) in arms.iter_mut().zip([100 - to_b, to_b]) {
                arm.units += n;
                arm.conversions += Binomial::new(n, p).unwrap().sample(&mut rng);
            }
            total += 100;
            if required.is_none() && arms[0].conversions >= RULE.min_conversions {
                let baseline = arms[0].conversions as f64 / arms[0].units as f64;
                required = required_units_per_variant(baseline, MDE, ALPHA, POWER);
            }
            if !seq_done {
                let n_star = required.map_or(5000.0, |r| 2.0 * r);
                let ps = decision_p(&arms, 0, Method::Sequential { n_star }, ALPHA);
                if positive(&arms, &ps, required) {
                    seq_fp += 1;
                    seq_done = true;
                }
            }
            if !naive_done {
                let ps = decision_p(&arms, 0, Method::Fixed, ALPHA);
                if positive(&arms, &ps, required) {
                    naive_fp += 1;
                    naive_done = true;
                }
            }
        }
    }
    (seq_fp, naive_fp)
}

fn rates(p: f64, seed: u64) -> (f64, f64) {
    // Two threads, half the experiments each (seeded: the result is reproducible).
    let halves: Vec<(u32, u32)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|i| s.spawn(move || simulate(p, seed + i, EXPERIMENTS / 2)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (s, n) = halves.iter().fold((0, 0), |a, h| (a.0 + h.0, a.1 + h.1));
    (
        f64::from(s) / f64::from(EXPERIMENTS),
        f64::from(n) / f64::from(EXPERIMENTS),
    )
}

fn check(p: f64, seed: u64) {
    let bound = ALPHA + 3.0 * (ALPHA * (1.0 - ALPHA) / f64::from(EXPERIMENTS)).sqrt();
    let (seq, naive) = rates(p, seed);
    println!(
        "A/A p = {p}, mde {MDE}: sequential false-positive rate {seq:.4}, naive fixed p looked at every 100 units {naive:.4} (bound {bound:.4})"
    );
    assert!(seq <= bound, "sequential rule: {seq} > {bound}");
    assert!(
        naive > bound,
        "the naive rule should exceed the bound: {naive}"
    );
}

#[test]
fn a_a_false_positives_at_10_percent_base_rate() {
    check(0.10, 20261125);
}

#[test]
fn a_a_false_positives_at_2_percent_base_rate() {
    check(0.02, 20261126);
}
