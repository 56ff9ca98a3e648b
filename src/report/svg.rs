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
}

/// Colours for variants, in order.
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn duration(s: f64) -> String {
    if s >= 2.0 * 86_400.0 {
        format!("{:.1}d", s / 86_400.0)
    } else if s >= 2.0 * 3600.0 {
        format!("{:.1}h", s / 3600.0)
    } else if s >= 120.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{s:.0}s")
    }
}

impl Chart<'_> {
    pub fn render(&self) -> String {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let ys = self.series.iter().flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
        });
        let x_max = xs.fold(0.0f64, f64::max).max(1.0);
        let (mut y_min, mut y_max) = ys
            .filter(|y| y.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
                (a.min(y), b.max(y))
            });
        if let Some(r) = self.reference {
            y_min = y_min.min(r);
            y_max = y_max.max(r);
        }
        if !y_min.is_finite() {
            (y_min, y_max) = (0.0, 1.0);
        }
        if y_max - y_min < 1e-12 {
            y_max = y_min + 1.0;
        }
        let pad = (y_max - y_min) * 0.05;
        let (y_min, y_max) = (y_min - pad, y_max + pad);
        let px = |x: f64| LEFT + x / x_max * (W - LEFT - RIGHT);
        let py = |y: f64| TOP + (y_max - y) / (y_max - y_min) * (H - TOP - BOTTOM);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><text x="{LEFT}" y="18" font-size="14" font-weight="bold">{t}</text>"#,
            t = escape(self.title)
        );
        // Axes and grid.
        for i in 0..=4 {
            let y = y_min + (y_max - y_min) * f64::from(i) / 4.0;
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
                duration(x)
            );
        }
        let _ = write!(
            s,
            r#"<text x="14" y="{:.1}" font-size="11" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text><text x="{:.1}" y="{}" font-size="11" text-anchor="middle">time since the first unit</text>"#,
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
                let _ = write!(
                    s,
                    r#"<path d="{d}Z" fill="{}" fill-opacity="0.15" stroke="none"/>"#,
                    series.color
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
                s,
                r#"<rect x="{}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{:.1}" font-size="12">{}</text>"#,
                W - RIGHT + 12.0,
                ly - 10.0,
                series.color,
                W - RIGHT + 30.0,
                ly,
                escape(&series.name)
            );
        }
        s.push_str("</svg>");
        s
    }
}
