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
