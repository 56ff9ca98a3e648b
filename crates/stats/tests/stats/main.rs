//! The statistics against independent implementations (fixtures made by the scripts in
//! tests/fixtures/stats/ at the repository root, each with its versions and command), their
//! properties, and an A/A simulation of the decision rule. One test binary.

mod bayes;
mod decision_aa;
mod drift;
mod properties;
mod proportions;
mod quality;
mod relative;
mod sequential_mean;
mod tables;
mod welch;

/// Within 1e-12 of the reference, relative to it where it is above 1.
pub fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-12 * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e}, reference {want:e}"
    );
}
