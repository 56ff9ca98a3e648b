//! A unit's variant in a compiled experiment: the pure assignment of `cohort_assign`
//! applied to the experiment's seed and layout, and the `x-cohort-variant` override.

use cohort_assign::{hash, Assignment};

use crate::Experiment;

/// Assigns `unit` in `experiment`.
#[inline]
pub fn assign(experiment: &Experiment, unit: &str) -> Assignment {
    let bucket = hash::bucket(experiment.seed, unit);
    Assignment {
        bucket,
        variant: experiment.layout.variant_at(bucket),
    }
}

/// A forced variant (`x-cohort-variant: NAME`) that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x-cohort-variant names {requested:?}, which is not a variant of {experiment:?} (variants: {known})")]
pub struct UnknownVariant {
    pub experiment: String,
    pub requested: String,
    pub known: String,
}

/// The variant forced by an `x-cohort-variant` header value, if the experiment allows
/// overrides (`allow_override: true`). Where it does not, the header is ignored: the
/// request is assigned like any other. An unknown name where overrides are allowed is an
/// error, so that a typo in a test client does not silently fall back to assignment.
pub fn forced_variant(
    experiment: &Experiment,
    header: Option<&str>,
) -> Result<Option<usize>, UnknownVariant> {
    let Some(name) = header.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if !experiment.allow_override {
        return Ok(None);
    }
    match experiment.variant_index(name) {
        Some(i) => Ok(Some(i)),
        None => Err(UnknownVariant {
            experiment: experiment.name.clone(),
            requested: name.to_owned(),
            known: experiment
                .variants
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
