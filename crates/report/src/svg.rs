//! Line charts as inline SVG, written by hand.
//!
//! Why not `plotters`: its text layout needs the `ttf` feature (font-kit, fontconfig at
//! build time, system fonts at run time), which a distroless sidecar image has none of;
//! an SVG `<text>` is laid out by the browser anyway. A report's charts are a few lines
//! and bands, so plain SVG is the smaller and sturdier tool here.

use std::fmt::Write;

/// One line (with an optional band around it).
pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// (x, y); x in seconds since the first point.
    pub points: Vec<(f64, f64)>,
    /// (x, low, high).
    pub band: Vec<(f64, f64, f64)>,
}

/// A chart.
pub struct Chart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    /// How y values are written on the axis.
    pub y_format: fn(f64) -> String,
    /// A horizontal reference line (e.g. 0 lift).
    pub reference: Option<f64>,
    /// Values the axis never goes beyond (a rate stays within [0, 1]).
    pub bounds: (f64, f64),
    /// The time of x = 0, in seconds since the Unix epoch: the x axis shows dates (UTC).
    pub start_s: f64,
    /// Vertical markers: (x, what happened), e.g. a ramp.
    pub markers: &'a [(f64, String)],
}

/// Colours for variants, in order.
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// The width of a character of a marker's label (font size 10), a little generous.
const MARKER_CHAR_PX: f64 = 6.0;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A Unix time as a UTC date and time, as precise as a span of `span_s` seconds needs.
fn date_label(unix_s: f64, span_s: f64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // "2026-11-25T14:01:05.000Z"
    let t = cohort_events::clock::from_nanos((unix_s.floor() as i64).saturating_mul(1_000_000_000));
    let month: usize = t.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let day: u32 = t.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    let date = format!("{} {day}", MONTHS[month.clamp(1, 12) - 1]);
    if span_s >= 3.0 * 86_400.0 {
        date
    } else if span_s >= 3.0 * 3600.0 {
        format!("{date} {}", t.get(11..16).unwrap_or(""))
    } else {
        t.get(11..19).unwrap_or("").to_owned()
    }
}

impl Chart<'_> {
    pub fn render(&self) -> String {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let x_max = xs.fold(0.0f64, f64::max).max(1.0);
        let (y_min, y_max) = self.y_range();
        let px = |x: f64| LEFT + x / x_max * (W - LEFT - RIGHT);
        let py = |y: f64| TOP + (y_max - y) / (y_max - y_min) * (H - TOP - BOTTOM);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><text x="{LEFT}" y="18" font-size="14" font-weight="bold">{t}</text>"#,
            t = escape(self.title)
        );
        // Axes and grid.
        for y in ticks(y_min, y_max) {
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end">{label}</text>"##,
                x2 = W - RIGHT,
                yy = py(y),
                tx = LEFT - 6.0,
                ty = py(y) + 4.0,
                label = escape(&(self.y_format)(y))
            );
        }
        for i in 0..=4 {
            let x = x_max * f64::from(i) / 4.0;
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
                px(x),
                H - BOTTOM + 16.0,
                date_label(self.start_s + x, x_max)
            );
        }
        let _ = write!(
            s,
            r#"<text x="12" y="{:.1}" font-size="11" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text><text x="{:.1}" y="{}" font-size="11" text-anchor="middle">time (UTC)</text>"#,
            H / 2.0,
            H / 2.0,
            escape(self.y_label),
            (LEFT + W - RIGHT) / 2.0,
            H - 6.0
        );
        if let Some(r) = self.reference {
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#555" stroke-dasharray="4 3"/>"##,
                W - RIGHT,
                y = py(r)
            );
        }
        // Every chart's clip rectangle is the same; the id only needs to be valid.
        let id = format!(
            "plot{:x}",
            xxhash_rust::xxh3::xxh3_64(self.title.as_bytes())
        );
        // Early points have wide bands: the axis follows the bulk of the data and clips the rest.
        let _ = write!(
            s,
            r#"<clipPath id="{id}"><rect x="{LEFT}" y="{TOP}" width="{}" height="{}"/></clipPath><g clip-path="url(#{id})">"#,
            W - LEFT - RIGHT,
            H - TOP - BOTTOM
        );
        let mut legend = String::new();
        for (k, series) in self.series.iter().enumerate() {
            if series.band.len() >= 2 {
                let mut d = String::new();
                for (i, b) in series.band.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if i == 0 { "M" } else { "L" },
                        px(b.0),
                        py(b.2)
                    );
                }
                for b in series.band.iter().rev() {
                    let _ = write!(d, "L{:.1},{:.1} ", px(b.0), py(b.1));
                }
                // Light fills with an edge line of their own colour: where bands overlap,
                // each one's edges still show whose band is whose.
                let _ = write!(
                    s,
                    r#"<path d="{d}Z" fill="{c}" fill-opacity="0.10" stroke="{c}" stroke-opacity="0.35" stroke-width="0.8"/>"#,
                    c = series.color
                );
            }
            let pts: Vec<String> = series
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
                .collect();
            if !pts.is_empty() {
                let _ = write!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                    pts.join(" "),
                    series.color
                );
            }
            let ly = TOP + 14.0 + 18.0 * k as f64;
            let _ = write!(
                legend,
                r#"<rect x="{}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{:.1}" font-size="12">{}</text>"#,
                W - RIGHT + 12.0,
                ly - 10.0,
                series.color,
                W - RIGHT + 30.0,
                ly,
                escape(&series.name)
            );
        }
        // Each label takes the first line down where it overlaps no other label.
        let mut rows: Vec<Vec<(f64, f64)>> = Vec::new();
        for (x, what) in self.markers {
            // A marker just past the last point (a rollback's shares take effect just
            // after the comparison froze) is drawn at the edge; a label near the right
            // edge ends at its line rather than run out of the plot.
            let xx = px(x.min(x_max));
            let width = MARKER_CHAR_PX * what.chars().count() as f64;
            let (tx, anchor, span) = if xx + 3.0 + width > W - RIGHT {
                (
                    xx - 3.0,
                    r#" text-anchor="end""#,
                    (xx - 3.0 - width, xx - 3.0),
                )
            } else {
                (xx + 3.0, "", (xx + 3.0, xx + 3.0 + width))
            };
            let row = rows
                .iter()
                .position(|r| r.iter().all(|o| span.1 < o.0 || span.0 > o.1))
                .unwrap_or_else(|| {
                    rows.push(Vec::new());
                    rows.len() - 1
                });
            rows[row].push(span);
            let _ = write!(
                s,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#777" stroke-dasharray="2 3"><title>shares changed: {w}</title></line><text x="{tx:.1}" y="{}" font-size="10" fill="#555"{anchor}>{w}</text>"##,
                H - BOTTOM,
                TOP + 10.0 + 12.0 * row as f64,
                w = escape(what)
            );
        }
        s.push_str("</g>");
        s.push_str(&legend);
        s.push_str("</svg>");
        s
    }

    /// The y axis: every line point, the bands between their 5th and 95th percentiles
    /// (so the first minutes' wide intervals do not flatten the chart), the reference
    /// line, within `bounds`, padded by 5%.
    fn y_range(&self) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for s in &self.series {
            for p in s.points.iter().filter(|p| p.1.is_finite()) {
                lo = lo.min(p.1);
                hi = hi.max(p.1);
            }
        }
        let mut band: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.band.iter().flat_map(|b| [b.1, b.2]))
            .filter(|y| y.is_finite())
            .collect();
        if !band.is_empty() {
            band.sort_by(f64::total_cmp);
            let at = |q: f64| band[((band.len() - 1) as f64 * q).round() as usize];
            lo = lo.min(at(0.05));
            hi = hi.max(at(0.95));
        }
        if let Some(r) = self.reference {
            lo = lo.min(r);
            hi = hi.max(r);
        }
        if !lo.is_finite() || !hi.is_finite() {
            return (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            hi = lo + lo.abs().max(1.0) * 0.1;
        }
        let pad = (hi - lo) * 0.05;
        ((lo - pad).max(self.bounds.0), (hi + pad).min(self.bounds.1))
    }
}

/// Round tick values (1, 2 or 5 × 10^k apart) within [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut out = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 && out.len() < 12 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A grouped bar chart of two distributions over the same bins (a reference and a live
/// window), each bar the bin's share of its own total.
pub struct Bars<'a> {
    pub title: &'a str,
    pub labels: Vec<String>,
    /// (name, colour, counts per bin).
    pub groups: Vec<(&'a str, &'static str, Vec<u64>)>,
}

impl Bars<'_> {
    pub fn render(&self) -> String {
        let bins = self.labels.len().max(1);
        let shares: Vec<Vec<f64>> = self
            .groups
            .iter()
            .map(|(_, _, counts)| {
                let total = counts.iter().sum::<u64>().max(1) as f64;
                counts.iter().map(|&c| c as f64 / total).collect()
            })
            .collect();
        let top = shares
            .iter()
            .flatten()
            .copied()
            .fold(0.0f64, f64::max)
            .max(0.01);
        let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let slot = plot_w / bins as f64;
        let bar = slot * 0.8 / self.groups.len().max(1) as f64;
        let mut out = String::new();
        let _ = write!(
            out,
            "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\"><text x=\"{LEFT}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>",
            escape(self.title),
            escape(self.title)
        );
        for k in 0..=4 {
            let v = top * f64::from(k) / 4.0;
            let y = TOP + plot_h - plot_h * v / top;
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{:.0}%</text>",
                LEFT + plot_w,
                LEFT - 6.0,
                y + 3.0,
                100.0 * v
            );
        }
        for (g, ((name, color, _), s)) in self.groups.iter().zip(&shares).enumerate() {
            for (i, &v) in s.iter().enumerate() {
                let h = plot_h * v / top;
                let x = LEFT + slot * i as f64 + slot * 0.1 + bar * g as f64;
                let _ = write!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\"><title>{}: {:.1}%</title></rect>",
                    TOP + plot_h - h,
                    bar.max(1.0),
                    escape(name),
                    100.0 * v
                );
            }
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                W - RIGHT + 10.0,
                TOP + 16.0 * g as f64,
                W - RIGHT + 24.0,
                TOP + 9.0 + 16.0 * g as f64,
                escape(name)
            );
        }
        for (i, label) in self.labels.iter().enumerate() {
            let x = LEFT + slot * (i as f64 + 0.5);
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                H - BOTTOM + 14.0,
                escape(label)
            );
        }
        out.push_str("</svg></figure>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_shares_of_each_group_side_by_side() {
        let svg = Bars {
            title: "x <1>",
            labels: vec!["≤ 0".into(), "> 0".into()],
            groups: vec![
                ("reference", "#999999", vec![1, 1]),
                ("live", "#d62728", vec![3, 1]),
            ],
        }
        .render();
        assert_eq!(
            svg.matches("<rect").count(),
            2 * 2 + 2,
            "a bar per bin and group, a key per group"
        );
        assert!(svg.contains("<title>reference: 50.0%</title>"));
        assert!(svg.contains("<title>live: 75.0%</title>"));
        assert!(svg.contains("x &lt;1&gt;"), "the title is escaped");
    }

    /// A rollback's marker, just past the last point, is drawn at the plot's right edge
    /// with its label ending there; a marker inside keeps its label to the right.
    #[test]
    fn a_marker_past_the_last_point_stays_in_the_plot() {
        let markers = [
            (100.0, "step 2 · lr 20%".to_owned()),
            (3400.0, "step 3 · lr 50%".to_owned()),
            (3600.4, "rollback · lr 0%".to_owned()),
        ];
        let svg = Chart {
            title: "t",
            y_label: "y",
            series: vec![Series {
                name: "a".into(),
                color: COLORS[0],
                points: vec![(0.0, 0.1), (3600.0, 0.2)],
                band: Vec::new(),
            }],
            y_format: |y| format!("{y}"),
            reference: None,
            bounds: (0.0, 1.0),
            start_s: 0.0,
            markers: &markers,
        }
        .render();
        let edge = W - RIGHT;
        assert!(
            svg.contains(&format!(r#"<line x1="{edge:.1}" x2="{edge:.1}""#)),
            "{svg}"
        );
        assert!(svg.contains(&format!(
            r##"<text x="{:.1}" y="{}" font-size="10" fill="#555" text-anchor="end">rollback · lr 0%</text>"##,
            edge - 3.0,
            TOP + 22.0
        )));
        assert!(svg.contains(r##"fill="#555">step 2 · lr 20%</text>"##));
        // Two labels that would overlap: the later one a line lower.
        assert!(svg.contains(&format!(
            r##"y="{}" font-size="10" fill="#555" text-anchor="end">step 3 · lr 50%</text>"##,
            TOP + 10.0
        )));
        assert!(svg.contains(&format!(
            r##"y="{}" font-size="10" fill="#555" text-anchor="end">rollback · lr 0%</text>"##,
            TOP + 22.0
        )));
    }

    #[test]
    fn dates_are_utc_as_precise_as_the_span_needs() {
        let day = 86_400.0;
        assert_eq!(date_label(0.0, 10.0 * day), "Jan 1");
        assert_eq!(date_label(951_782_400.0, 10.0 * day), "Feb 29");
        assert_eq!(date_label(1_795_615_265.0, day), "Nov 25 14:01");
        assert_eq!(date_label(1_795_615_265.0, 600.0), "14:01:05");
    }
}
