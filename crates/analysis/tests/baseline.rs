//! The estimated baseline when conversions arrive late: 200 seeded 14-day logs with a true
//! control rate of 10% and conversions up to 10 h after exposure. Counting only matured
//! control units must freeze an unbiased rate; counting every unit (a delay of 0) must not.
//! The standard error of a run is that of a rate over as many units as it froze over,
//! under the true rate.

use cohort_analysis::tally::{ExposureObs, Tally};
use cohort_analysis::{analyze, ConfigVersions, Report, Setup};
use cohort_config::schema::{DecisionConfig, UnitKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TRUE_RATE: f64 = 0.10;
const DAY_NS: i64 = 86_400_000_000_000;
const HOUR_S: f64 = 3600.0;
const MAX_LAG_NS: i64 = 10 * 3_600_000_000_000;
const UNITS_PER_ARM: u64 = 4000;

/// One 14-day log: units of both arms arrive uniformly; each converts with the true rate
/// (the treatment alike), up to 10 h after its exposure.
fn log(seed: u64) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = 1_795_564_800_000_000_000i64;
    let mut tally = Tally::default();
    for arm in ["a", "b"] {
        for u in 0..UNITS_PER_ARM {
            let unit = format!("{arm}-{u}");
            let ts = start + rng.random_range(0..14 * DAY_NS);
            tally.exposure(ExposureObs {
                experiment: "e",
                unit: &unit,
                variant: arm,
                ts,
                config_version: None,
                phase: None,
                excluded: false,
            });
            if rng.random::<f64>() < TRUE_RATE {
                tally.conversion("e", &unit, ts + rng.random_range(0..MAX_LAG_NS), 1.0);
            }
        }
    }
    tally
}

fn report(tally: &Tally, decision: DecisionConfig) -> Report {
    let setup = Setup {
        experiment: "e".into(),
        unit: UnitKind::User,
        control: "a".into(),
        variants: vec![("a".into(), 50.0), ("b".into(), 50.0)],
        decision,
        salt: None,
        versions: std::sync::Arc::new(ConfigVersions::default()),
        tally_versions: Vec::new(),
    };
    analyze(&tally.experiments["e"], &setup, "now".into(), Vec::new())
}

/// The frozen baseline, and the standard error under the true rate of a rate over as many
/// units as it was taken over (`min_conversions` conversions at that rate).
fn frozen(r: &Report) -> (f64, f64) {
    let b = r.power.baseline_rate.expect("the baseline froze");
    assert_eq!(r.power.baseline_source, Some("estimated"));
    let units = DecisionConfig::default().min_conversions as f64 / b;
    (b, (TRUE_RATE * (1.0 - TRUE_RATE) / units).sqrt())
}

#[test]
fn the_baseline_counts_only_matured_control_units() {
    let runs = 200;
    let mut sum = 0.0;
    let mut naive_sum = 0.0;
    let mut beyond_3 = 0;
    for seed in 0..runs {
        let tally = log(seed);
        let r = report(
            &tally,
            DecisionConfig {
                conversion_delay_s: 10.0 * HOUR_S,
                ..DecisionConfig::default()
            },
        );
        let (b, se) = frozen(&r);
        let z = (b - TRUE_RATE) / se;
        assert!(
            z.abs() <= 4.5,
            "seed {seed}: froze at {b:.4}, {z:.1} standard errors ({se:.4}) from {TRUE_RATE}"
        );
        beyond_3 += u32::from(z.abs() > 3.0);
        assert!(
            r.notes
                .iter()
                .any(|n| n
                    .contains("exposed at least 36000 s earlier (decision.conversion_delay_s)")),
            "the note names the rule: {:?}",
            r.notes
        );
        sum += b;
        if seed < 20 {
            let naive = report(
                &tally,
                DecisionConfig {
                    conversion_delay_s: 0.0,
                    ..DecisionConfig::default()
                },
            );
            naive_sum += frozen(&naive).0;
        }
    }
    // Even an exact estimator lands beyond 3 standard errors in 0.27% of runs (0.54 of
    // 200 expected), so "every run within 3" would fail by chance; at most 3 of 200 is
    // what chance allows (P(4 or more) is about 0.2%).
    assert!(
        beyond_3 <= 3,
        "{beyond_3} of {runs} runs beyond 3 standard errors"
    );
    let mean = sum / runs as f64;
    assert!(
        (mean - TRUE_RATE).abs() <= 0.005,
        "mean frozen baseline {mean:.4}, true {TRUE_RATE}"
    );
    // Without maturity the same logs freeze far below the truth: the test can tell.
    let naive_mean = naive_sum / 20.0;
    assert!(
        naive_mean < TRUE_RATE - 0.01,
        "counting young units froze at {naive_mean:.4}"
    );
}

#[test]
fn an_attribution_window_is_the_maturity_delay() {
    let tally = log(7);
    let r = report(
        &tally,
        DecisionConfig {
            attribution_window_s: Some(10.0 * HOUR_S),
            conversion_delay_s: 0.0,
            ..DecisionConfig::default()
        },
    );
    let (b, se) = frozen(&r);
    assert!((b - TRUE_RATE).abs() <= 3.0 * se, "froze at {b:.4}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("(decision.attribution_window_s)")),
        "{:?}",
        r.notes
    );
}
