//! Online model quality against scikit-learn (tests/fixtures/stats/quality.py →
//! quality.json).

use cohort_stats::quality::{calibration, log_loss, roc_auc, Confusion};
use serde_json::Value;

use crate::close;

fn fixture() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/quality.json"
    )))
    .unwrap()
}

#[test]
fn log_loss_auc_calibration_accuracy_and_f1_match_scikit_learn() {
    let cases = fixture()["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 6);
    for (n, case) in cases.iter().enumerate() {
        let scores: Vec<f64> = case["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let labels: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_bool().unwrap())
            .collect();
        let want = |k: &str| case[k].as_f64().unwrap();
        close(
            log_loss(&scores, &labels).unwrap(),
            want("log_loss"),
            &format!("case {n}: log loss"),
        );
        close(
            roc_auc(&scores, &labels).unwrap(),
            want("auc"),
            &format!("case {n}: AUC"),
        );
        let c = Confusion::at(&scores, &labels, want("threshold"));
        close(
            c.accuracy().unwrap(),
            want("accuracy"),
            &format!("case {n}: accuracy"),
        );
        close(c.f1(), want("f1"), &format!("case {n}: F1"));
        let bins = calibration(&scores, &labels, 10);
        let observed = case["calibration"]["observed"].as_array().unwrap();
        let predicted = case["calibration"]["predicted"].as_array().unwrap();
        assert_eq!(bins.len(), observed.len(), "case {n}: non-empty bins");
        for (k, b) in bins.iter().enumerate() {
            close(
                b.observed,
                observed[k].as_f64().unwrap(),
                &format!("case {n} bin {k}: observed"),
            );
            close(
                b.predicted,
                predicted[k].as_f64().unwrap(),
                &format!("case {n} bin {k}: predicted"),
            );
        }
    }
}
