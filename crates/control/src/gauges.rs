//! The analysis gauges on /metrics, set from a live report.

use cohort_analysis::Report;
use cohort_proxy::metrics::Metrics;

/// Units, conversion rate, the decision p and P(beat control) per variant, and the SRM p
/// of `r`'s experiment.
pub fn publish(metrics: &Metrics, r: &Report) {
    let e = r.experiment.as_str();
    for v in &r.variants {
        metrics
            .experiment_units
            .with_label_values(&[e, &v.name])
            .set(i64::try_from(v.units).unwrap_or(i64::MAX));
        if let Some(rate) = v.rate {
            metrics
                .experiment_conversion_rate
                .with_label_values(&[e, &v.name])
                .set(rate);
        }
    }
    for c in &r.comparisons {
        let p = if r.method == "fixed" {
            c.p_value_holm
        } else {
            c.seq_p_value_holm
        };
        if let Some(p) = p {
            metrics
                .experiment_p_value
                .with_label_values(&[e, &c.variant])
                .set(p);
        }
        if let Some(p) = c.prob_beat_control {
            metrics
                .experiment_prob_beat_control
                .with_label_values(&[e, &c.variant])
                .set(p);
        }
    }
    if let Some(p) = r.srm.p_value {
        metrics.srm_p_value.with_label_values(&[e]).set(p);
    }
}

/// Units and conversion rate per variant of `experiment` from counts made elsewhere
/// (variant, units, converted units): the fleet's, summed in ClickHouse.
pub fn publish_counts(metrics: &Metrics, experiment: &str, counts: &[(String, u64, u64)]) {
    for (variant, units, converted) in counts {
        metrics
            .experiment_units
            .with_label_values(&[experiment, variant])
            .set(i64::try_from(*units).unwrap_or(i64::MAX));
        if *units > 0 {
            metrics
                .experiment_conversion_rate
                .with_label_values(&[experiment, variant])
                .set(*converted as f64 / *units as f64);
        }
    }
}
