//! The report's charts as numbers: per variant, over the report's timeline, the
//! cumulative conversion rate with its Wilson band, the units, and the relative lift over
//! the control with its always-valid interval. Renderers draw these; they compute nothing.

use cohort_stats::proportions::wilson;
use cohort_stats::relative::{relative_lift, sequential_relative_lift};

use crate::report::Report;

/// One variant's line on a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// Index of the variant in the report (for a stable colour).
    pub variant: usize,
    /// (x, y); x in seconds since the first point.
    pub points: Vec<(f64, f64)>,
    /// (x, low, high).
    pub band: Vec<(f64, f64, f64)>,
}

/// The three charts of a report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Charts {
    /// The time of x = 0 (ns since the Unix epoch).
    pub start_ns: i64,
    pub rate: Vec<Series>,
    pub units: Vec<Series>,
    /// Treatments only.
    pub lift: Vec<Series>,
    /// Where the shares changed: (x, the shares that took effect).
    pub changes: Vec<(f64, String)>,
}

/// An arm's rate band is drawn from this many units on: before, the intervals of every arm
/// span most of the axis and overlap into one blot.
pub const BAND_MIN_UNITS: u64 = 30;

/// The chart series of `r`; empty when it has no timeline.
pub fn charts(r: &Report) -> Charts {
    let pts = &r.timeline.points;
    let Some(first) = pts.first() else {
        return Charts::default();
    };
    let x = |ts: i64| (ts - first.ts) as f64 / 1e9;
    let control = r
        .variants
        .iter()
        .position(|v| v.name == r.control)
        .unwrap_or(0);
    let n = r.variants.len().min(first.units.len());
    let mut out = Charts {
        start_ns: first.ts,
        changes: r
            .timeline
            .changes
            .iter()
            .map(|(ts, label)| (x(*ts), label.clone()))
            .collect(),
        ..Charts::default()
    };
    for i in 0..n {
        let name = r.variants[i].name.clone();
        let series = |points, band| Series {
            name: name.clone(),
            variant: i,
            points,
            band,
        };
        let (mut rp, mut band, mut up) = (Vec::new(), Vec::new(), Vec::new());
        let (mut lp, mut lband) = (Vec::new(), Vec::new());
        for p in pts {
            let (c, u) = (p.converted[i], p.units[i]);
            up.push((x(p.ts), u as f64));
            if let Some(w) = wilson(c, u, r.alpha) {
                rp.push((x(p.ts), c as f64 / u as f64));
                if u >= BAND_MIN_UNITS {
                    band.push((x(p.ts), w.low, w.high));
                }
            }
            if i != control {
                let (cc, nc) = (p.converted[control], p.units[control]);
                if let (Ok(l), Ok((ci, _))) = (
                    relative_lift(c, u, cc, nc, r.alpha),
                    sequential_relative_lift(c, u, cc, nc, r.alpha, r.timeline.n_star),
                ) {
                    lp.push((x(p.ts), l.estimate));
                    lband.push((x(p.ts), ci.low, ci.high));
                }
            }
        }
        out.rate.push(series(rp, band));
        out.units.push(series(up, Vec::new()));
        if i != control {
            out.lift.push(series(lp, lband));
        }
    }
    out
}
