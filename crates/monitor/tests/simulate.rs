//! A seeded simulation of two variants' traffic: a shift in one feature of one variant
//! raises exactly that variant's and column's PSI above 0.2, and with no shift no window of
//! a long run does.

use cohort_monitor::drift::{Settings, VariantMonitor, WindowDrift};
use cohort_monitor::payload::{Cell, Table};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const WINDOW_S: i64 = 1800;

fn settings() -> Settings {
    Settings {
        window_s: WINDOW_S as u64,
        min_rows: 300,
        ks_rows: 256,
        reference_rows: 1000,
        categorical: vec!["plan".into()],
    }
}

/// One request's row: three numeric features and a categorical one; `shift` moves x2's
/// mean by that many standard deviations.
fn row(rng: &mut SmallRng, shift: f64) -> Table {
    let n = Normal::new(0.0, 1.0).unwrap();
    let plan = ["free", "pro", "team"][rng.random_range(0..3)];
    Table {
        columns: vec!["x0".into(), "x1".into(), "x2".into(), "plan".into()],
        rows: vec![vec![
            Cell::Number(n.sample(rng)),
            Cell::Number(10.0 + 3.0 * n.sample(rng)),
            Cell::Number(n.sample(rng) + shift),
            Cell::Category(plan.into()),
        ]],
    }
}

/// Runs `hours` of traffic, a request every 2 s per variant, variant b's x2 shifted from
/// `shift_after_s` on; returns every variant's non-overlapping windows.
fn run(hours: i64, shift_after_s: Option<i64>, seed: u64) -> Vec<(&'static str, WindowDrift)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut monitors = [
        ("a", VariantMonitor::new(settings(), seed)),
        ("b", VariantMonitor::new(settings(), seed + 1)),
    ];
    let mut out = Vec::new();
    for t in (0..hours * 3600).step_by(2) {
        if t > 0 && t % WINDOW_S == 0 {
            for (name, m) in monitors.iter_mut() {
                out.extend(m.evaluate(t).map(|w| (*name, w)));
            }
        }
        for (name, m) in monitors.iter_mut() {
            let shifted = *name == "b" && shift_after_s.is_some_and(|s| t >= s);
            m.observe(t, &row(&mut rng, if shifted { 0.8 } else { 0.0 }));
        }
    }
    out
}

#[test]
fn a_shift_in_one_feature_of_one_variant_flags_exactly_that_one() {
    let shift_at = 6 * 3600;
    let windows = run(12, Some(shift_at), 42);
    let mut flagged_after = 0;
    for (variant, w) in &windows {
        for c in &w.columns {
            let psi = c.psi.expect("a window with enough rows has a PSI");
            let fully_shifted = *variant == "b" && c.column == "x2" && w.start_s >= shift_at;
            if fully_shifted {
                assert!(
                    psi > 0.2,
                    "{variant} {} at {}: PSI {psi}",
                    c.column,
                    w.start_s
                );
                assert!(c.ks.unwrap().p_value < 1e-6, "{c:?}");
                flagged_after += 1;
            } else if w.end_s <= shift_at || !(*variant == "b" && c.column == "x2") {
                assert!(
                    psi < 0.2,
                    "{variant} {} at {}: PSI {psi} with no shift",
                    c.column,
                    w.start_s
                );
            }
        }
    }
    assert!(
        flagged_after >= 10,
        "windows flagged after the shift: {flagged_after}"
    );
}

#[test]
fn with_no_shift_no_window_of_a_long_run_crosses_the_bound() {
    let windows = run(100, None, 7);
    let columns: usize = windows.iter().map(|(_, w)| w.columns.len()).sum();
    // Two variants × ~200 windows × 4 columns (the first window holds the reference).
    assert!(columns >= 2 * 195 * 4, "columns evaluated: {columns}");
    let worst = windows
        .iter()
        .flat_map(|(_, w)| w.columns.iter())
        .map(|c| c.psi.unwrap())
        .fold(0.0, f64::max);
    assert!(worst < 0.2, "largest PSI with no drift: {worst}");
    // The categorical column is tested by chi-square, the numeric ones by KS.
    let (_, w) = &windows[windows.len() - 1];
    let plan = w.columns.iter().find(|c| c.column == "plan").unwrap();
    assert!(plan.chi2.is_some() && plan.ks.is_none());
    let x0 = w.columns.iter().find(|c| c.column == "x0").unwrap();
    assert!(x0.ks.is_some() && x0.chi2.is_none());
}

/// The rule behind `min_rows`: with 10 bins and no drift at all, how often PSI exceeds 0.2
/// in a window of n rows against a reference of 1 000 rows of the same distribution.
fn share_over_bound(n: usize, windows: usize, seed: u64) -> f64 {
    use cohort_stats::psi::{psi, Bins};
    let mut rng = SmallRng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let reference: Vec<f64> = (0..1000).map(|_| normal.sample(&mut rng)).collect();
    let bins = Bins::deciles(&reference).unwrap();
    let r = bins.counts(&reference);
    let over = (0..windows)
        .filter(|_| {
            let live: Vec<f64> = (0..n).map(|_| normal.sample(&mut rng)).collect();
            psi(&r, &bins.counts(&live)).unwrap() > 0.2
        })
        .count();
    over as f64 / windows as f64
}

#[test]
fn windows_of_300_rows_do_not_cross_the_bound_by_chance_and_windows_of_50_do() {
    let small = share_over_bound(50, 2000, 1);
    assert!(
        (0.1..0.4).contains(&small),
        "windows of 50 rows over 0.2: {small}"
    );
    let enough = share_over_bound(300, 2000, 2);
    eprintln!("PSI over 0.2 with no drift: {small} of windows of 50 rows, {enough} of 300");
    assert_eq!(enough, 0.0, "windows of 300 rows over 0.2: {enough}");
}
