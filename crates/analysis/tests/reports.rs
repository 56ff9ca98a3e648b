//! Whole reports against an independent computation (tests/fixtures/stats/reports.py:
//! statsmodels, scipy, gbstats, and the decision rule transcribed in Python): from an
//! event log with the scenario's counts to every number and the decision.

use cohort_analysis::tally::{ExposureObs, Tally};
use cohort_analysis::{analyze, ConfigVersions, Report, Setup};
use cohort_config::schema::{DecisionConfig, UnitKind};
use serde_json::Value;

fn close(got: Option<f64>, want: &Value, tol: f64, what: &str) {
    match (got, want.as_f64()) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}: got {g}, reference {w}"
        ),
        (g, _) => panic!("{what}: got {g:?}, reference {want}"),
    }
}

fn close_pair(got: Option<[f64; 2]>, want: &Value, tol: f64, what: &str) {
    close(got.map(|p| p[0]), &want[0], tol, what);
    close(got.map(|p| p[1]), &want[1], tol, what);
}

/// The scenario as an event log: each variant's units in turn, one second apart, and
/// a conversion for the first `converted` of them.
fn report_of(s: &Value) -> Report {
    let mut tally = Tally::default();
    let mut ts = 1_795_564_800_000_000_000i64;
    for arm in s["arms"].as_array().unwrap() {
        let name = arm["name"].as_str().unwrap();
        for u in 0..arm["units"].as_u64().unwrap() {
            let unit = format!("{name}-{u}");
            ts += 1_000_000_000;
            tally.exposure(ExposureObs {
                experiment: "e",
                unit: &unit,
                variant: name,
                ts,
                config_version: None,
                phase: None,
                excluded: false,
            });
            if u < arm["converted"].as_u64().unwrap() {
                tally.conversion("e", &unit, ts + 1, 1.0);
            }
        }
    }
    let setup = Setup {
        experiment: "e".into(),
        unit: UnitKind::User,
        control: s["control"].as_str().unwrap().into(),
        variants: s["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_owned(),
                    a["weight"].as_f64().unwrap(),
                )
            })
            .collect(),
        decision: DecisionConfig {
            alpha: s["alpha"].as_f64().unwrap(),
            mde: s["mde"].as_f64().unwrap(),
            power: s["power"].as_f64().unwrap(),
            baseline_rate: s["baseline_rate"].as_f64(),
            ..DecisionConfig::default()
        },
        salt: None,
        versions: std::sync::Arc::new(ConfigVersions::default()),
        tally_versions: Vec::new(),
    };
    let empty = Default::default();
    analyze(
        tally.experiments.get("e").unwrap_or(&empty),
        &setup,
        "now".into(),
        Vec::new(),
    )
}

#[test]
fn every_scenario_matches_the_independent_computation() {
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/reports.json"
    )))
    .unwrap();
    let scenarios = fx["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 10);
    let mut statuses = std::collections::BTreeSet::new();
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        let r = report_of(s);
        for (got, want) in r.variants.iter().zip(s["variants"].as_array().unwrap()) {
            assert_eq!(got.name, want["name"].as_str().unwrap(), "{name}");
            assert_eq!(Some(got.units), want["units"].as_u64(), "{name}");
            assert_eq!(
                Some(got.conversions),
                want["conversions"].as_u64(),
                "{name}"
            );
            close(
                got.rate,
                &want["rate"],
                1e-12,
                &format!("{name}: {} rate", got.name),
            );
            close_pair(
                got.rate_ci,
                &want["rate_ci"],
                1e-9,
                &format!("{name}: {} wilson", got.name),
            );
        }
        for (got, want) in r
            .comparisons
            .iter()
            .zip(s["comparisons"].as_array().unwrap())
        {
            let what = |f: &str| format!("{name}: {} {f}", got.variant);
            assert_eq!(got.variant, want["variant"].as_str().unwrap());
            close_pair(
                got.abs_diff_ci,
                &want["abs_diff_ci"],
                1e-9,
                &what("newcombe"),
            );
            close(got.z, &want["z"], 1e-9, &what("z"));
            // The point lift is defined whenever the control converts, the interval is
            // not (a treatment with no conversions is −100% with a null interval).
            let arm = |v: &str| r.variants.iter().find(|a| a.name == v).unwrap();
            let (t, c) = (arm(&got.variant), arm(&got.control));
            let lift = (c.conversions > 0 && t.units > 0).then(|| {
                (t.conversions as f64 / t.units as f64) / (c.conversions as f64 / c.units as f64)
                    - 1.0
            });
            assert_eq!(got.rel_lift.is_some(), lift.is_some(), "{}", what("lift"));
            if let (Some(g), Some(l)) = (got.rel_lift, lift) {
                assert!((g - l).abs() < 1e-12, "{}: {g} vs {l}", what("lift"));
            }
            if t.units > 0 && t.conversions == 0 && c.conversions > 0 {
                assert_eq!(got.rel_lift, Some(-1.0), "{}", what("lift"));
                assert_eq!(got.rel_lift_ci, None, "{}", what("lift"));
            }
            close(got.p_value, &want["p_value"], 1e-8, &what("p"));
            assert_eq!(
                got.test.map(|t| serde_json::to_value(t).unwrap()),
                want.get("test").cloned(),
                "{}",
                what("test")
            );
            close(got.p_value_holm, &want["p_value_holm"], 1e-8, &what("holm"));
            close_pair(
                got.rel_lift_ci,
                &want["rel_lift_ci"],
                1e-8,
                &what("rel lift ci"),
            );
            close(got.seq_p_value, &want["seq_p_value"], 1e-8, &what("seq p"));
            close(
                got.seq_p_value_holm,
                &want["seq_p_value_holm"],
                1e-8,
                &what("seq holm"),
            );
            close_pair(got.seq_ci, &want["seq_ci"], 1e-8, &what("seq ci"));
            close(
                got.prob_beat_control,
                &want["prob_beat_control"],
                1e-8,
                &what("P(beat)"),
            );
            close(
                got.expected_loss,
                &want["expected_loss"],
                1e-8,
                &what("loss"),
            );
        }
        for (v, want) in s["prob_best"].as_object().unwrap() {
            close(
                r.prob_best[v].as_f64(),
                want,
                1e-8,
                &format!("{name}: P(best) {v}"),
            );
        }
        match (&r.omnibus, s["omnibus"].is_null()) {
            (None, true) => {}
            (Some(o), false) => {
                close(Some(o.chi2), &s["omnibus"]["chi2"], 1e-9, name);
                close(Some(o.p_value), &s["omnibus"]["p_value"], 1e-8, name);
            }
            (o, _) => panic!("{name}: omnibus {o:?} vs {}", s["omnibus"]),
        }
        close(
            r.srm.chi2,
            &s["srm"]["chi2"],
            1e-9,
            &format!("{name}: srm chi2"),
        );
        close(
            r.srm.p_value,
            &s["srm"]["p_value"],
            1e-8,
            &format!("{name}: srm p"),
        );
        assert_eq!(r.srm.ok, s["srm"]["ok"].as_bool(), "{name}: srm ok");
        close(
            r.power.required_units_per_variant,
            &s["required_units_per_variant"],
            1e-9,
            &format!("{name}: required"),
        );
        let d = &s["decision"];
        assert_eq!(
            r.decision.status.as_str(),
            d["status"].as_str().unwrap(),
            "{name}: {:?}",
            r.decision
        );
        assert_eq!(
            r.decision.variant.as_deref(),
            d["variant"].as_str(),
            "{name}"
        );
        let roll: Vec<&str> = d["roll_back"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(r.decision.roll_back, roll, "{name}");
        statuses.insert(r.decision.status.as_str());
    }
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        [
            "continue",
            "control_wins",
            "invalid",
            "no_difference",
            "winner"
        ]
    );
}

/// Units of `variant` numbered from `from`, the first `converted` of them converting,
/// one second apart starting at `ts`.
fn feed(tally: &mut Tally, ts: &mut i64, variant: &str, from: u64, units: u64, converted: u64) {
    for u in from..from + units {
        let unit = format!("{variant}-{u}");
        *ts += 1_000_000_000;
        tally.exposure(ExposureObs {
            experiment: "e",
            unit: &unit,
            variant,
            ts: *ts,
            config_version: None,
            phase: None,
            excluded: false,
        });
        if u - from < converted {
            tally.conversion("e", &unit, *ts + 1, 1.0);
        }
    }
}

/// `method: fixed` judges once, at the planned sample, and later data does not change
/// that decision; the sequential method on the same log follows the later data.
#[test]
fn the_fixed_decision_is_frozen_at_the_planned_sample() {
    let mut tally = Tally::default();
    let mut ts = 1_795_564_800_000_000_000i64;
    // Baseline 10%, mde 0.3: about 1 770 units per variant. Equal rates up to 2 000 each
    // (interleaved, so both arms reach the plan together), then b pulls far ahead.
    for round in 0..20 {
        feed(&mut tally, &mut ts, "a", round * 100, 100, 10);
        feed(&mut tally, &mut ts, "b", round * 100, 100, 10);
    }
    feed(&mut tally, &mut ts, "a", 2_000, 4_000, 400);
    feed(&mut tally, &mut ts, "b", 2_000, 4_000, 800);
    let setup = |method| Setup {
        experiment: "e".into(),
        unit: UnitKind::User,
        control: "a".into(),
        variants: vec![("a".into(), 50.0), ("b".into(), 50.0)],
        decision: DecisionConfig {
            method,
            mde: 0.3,
            baseline_rate: Some(0.1),
            ..DecisionConfig::default()
        },
        salt: None,
        versions: std::sync::Arc::new(ConfigVersions::default()),
        tally_versions: Vec::new(),
    };
    let t = &tally.experiments["e"];
    let fixed = analyze(
        t,
        &setup(cohort_config::schema::DecisionMethod::Fixed),
        "now".into(),
        Vec::new(),
    );
    assert_eq!(
        fixed.decision.status.as_str(),
        "no_difference",
        "{:?}",
        fixed.decision
    );
    assert!(
        fixed
            .notes
            .iter()
            .any(|n| n.contains("fixed-horizon decision made at")),
        "{:?}",
        fixed.notes
    );
    // The final data alone is overwhelming: the fixed p now is tiny, but it was not used.
    assert!(fixed.comparisons[0].p_value.unwrap() < 1e-10);
    let seq = analyze(
        t,
        &setup(cohort_config::schema::DecisionMethod::Sequential),
        "now".into(),
        Vec::new(),
    );
    assert_eq!(
        (
            seq.decision.status.as_str(),
            seq.decision.variant.as_deref()
        ),
        ("winner", Some("b"))
    );
}
