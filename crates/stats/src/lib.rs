//! The statistics of an experiment: pure functions, no I/O.
//!
//! Both `cohort report` and the live admin view call these on the same counts, so they
//! always agree. Every function is checked against an independent implementation
//! (statsmodels, scipy, exact rational arithmetic) through fixtures committed with the
//! script that made them (tests/fixtures/stats/).
//!
//! * [`proportions`]: Wilson and Newcombe intervals, the pooled two-proportion z test,
//!   Fisher's exact test, Holm's adjustment;
//! * [`tables`]: the omnibus chi-square test across variants and the sample-ratio-mismatch
//!   goodness of fit;
//! * [`bayes`]: Beta posteriors, P(beat control), expected loss, P(best), by quadrature;
//! * [`decision`]: the rule that turns the numbers into winner / roll back / keep running;
//! * [`power`]: the units per variant a fixed-horizon test needs;
//! * [`relative`]: the relative lift with GrowthBook's fixed and sequential intervals;
//! * [`sequential`]: GrowthBook's always-valid confidence sequence, and with it the
//!   interval and p of a difference of per-unit means (a rollout guardrail's error rate);
//! * [`welch`]: value per unit, Welch's t-test on running moments;
//! * [`psi`] and [`ks`]: drift of a live sample from a reference, the population stability
//!   index over decile bins and the exact two-sample Kolmogorov–Smirnov test (the
//!   categorical goodness of fit is in [`tables`]);
//! * [`quality`]: a binary model's log loss, ROC AUC, calibration, accuracy and F1 from its
//!   scores and the labels that arrived later.

#![forbid(unsafe_code)]

pub mod bayes;
pub mod decision;
pub mod ks;
pub mod power;
pub mod proportions;
pub mod psi;
pub mod quality;
pub mod relative;
pub mod sequential;
pub mod tables;
pub mod welch;
