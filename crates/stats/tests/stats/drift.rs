//! PSI, the two-sample KS test and the categorical goodness of fit against numpy and scipy
//! (tests/fixtures/stats/drift.py → drift.json).

use cohort_stats::ks::ks_2samp;
use cohort_stats::psi::{psi, Bins};
use cohort_stats::tables::goodness_of_fit;
use serde_json::Value;

use crate::close;

fn fixture() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/drift.json"
    )))
    .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn counts(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn psi_edges_counts_and_index_match_numpy() {
    let cases = fixture()["psi"].as_array().unwrap().clone();
    assert!(cases.len() >= 8);
    for (n, case) in cases.iter().enumerate() {
        let reference = floats(&case["reference"]);
        let live = floats(&case["live"]);
        let bins = Bins::deciles(&reference).unwrap();
        let want_edges = floats(&case["edges"]);
        assert_eq!(bins.edges().len(), want_edges.len(), "case {n}: edges");
        for (g, w) in bins.edges().iter().zip(&want_edges) {
            close(*g, *w, &format!("case {n}: edge"));
        }
        let (r, l) = (bins.counts(&reference), bins.counts(&live));
        assert_eq!(
            r,
            counts(&case["reference_counts"]),
            "case {n}: reference counts"
        );
        assert_eq!(l, counts(&case["live_counts"]), "case {n}: live counts");
        close(
            psi(&r, &l).unwrap(),
            case["psi"].as_f64().unwrap(),
            &format!("case {n}: psi"),
        );
    }
}

#[test]
fn ks_statistic_and_exact_p_match_scipy_ks_2samp() {
    let cases = fixture()["ks"].as_array().unwrap().clone();
    assert!(cases.len() >= 10);
    for (n, case) in cases.iter().enumerate() {
        let (a, b) = (floats(&case["a"]), floats(&case["b"]));
        let got = ks_2samp(&a, &b).unwrap();
        close(
            got.statistic,
            case["statistic"].as_f64().unwrap(),
            &format!("case {n} ({}×{}): D", a.len(), b.len()),
        );
        close(
            got.p_value,
            case["p"].as_f64().unwrap(),
            &format!("case {n} ({}×{}): p", a.len(), b.len()),
        );
        // Symmetric in its samples.
        let swapped = ks_2samp(&b, &a).unwrap();
        close(
            swapped.p_value,
            got.p_value,
            &format!("case {n}: swapped p"),
        );
    }
}

#[test]
fn categorical_goodness_of_fit_matches_scipy_chisquare() {
    let cases = fixture()["chisquare"].as_array().unwrap().clone();
    assert!(cases.len() >= 5);
    for (n, case) in cases.iter().enumerate() {
        let got = goodness_of_fit(&counts(&case["live"]), &counts(&case["reference"])).unwrap();
        let want_chi2 = case["chi2"].as_f64().unwrap();
        close(got.chi2, want_chi2, &format!("case {n}: chi2"));
        // The p-value goes through statrs' incomplete gamma, which is good to ~1e-13
        // relative; compared relative to itself so that 1e-106 is checked too.
        let want_p = case["p"].as_f64().unwrap();
        assert!(
            (got.p_value - want_p).abs() <= 1e-9 * want_p,
            "case {n}: p {:e} against {want_p:e}",
            got.p_value
        );
        assert_eq!(got.df as usize, counts(&case["live"]).len() - 1);
    }
}
