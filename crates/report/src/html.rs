//! One self-contained HTML page (no network: inline CSS and SVG) for one or more reports.

use std::fmt::Write;

use super::svg::{escape, Bars, Chart, Series, COLORS};
use super::{headline, pct, power_line, pval, rollout_line, rollout_rows, signed_pct};
use cohort_analysis::report::Status;
use cohort_analysis::Report;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1240px;color:#222}\
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:1em 0}\
td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}\
.sparse{color:#555;font-style:italic;margin-top:-0.5em}\
td:first-child,th:first-child{text-align:left}.box{padding:12px 16px;border-radius:6px;margin:1em 0}\
.winner,.control_wins{background:#e6f4ea}.continue,.no_difference{background:#eef2f7}.invalid{background:#fde8e8}\
.ok{background:#f3f6f3}.bad{background:#fde8e8}svg{display:block;margin:1em 0}\
td.words,th.words{text-align:left}td.why{white-space:normal;min-width:20em}";

/// The page.
pub fn page(reports: &[Report]) -> String {
    let mut out = head("cohort report", None);
    for r in reports {
        section(&mut out, r);
    }
    out.push_str("</body></html>\n");
    out
}

/// Auto-refresh periods the live page offers, in seconds.
pub const REFRESH_CHOICES: [u32; 3] = [10, 30, 300];

/// The admin listener's live page of one report: as [`page`], with links that turn
/// auto-refresh on and off (`?refresh=SECONDS`: a meta refresh, no script).
pub fn live_page(r: &Report, refresh: Option<u32>) -> String {
    let mut out = head(&format!("{} · cohort", r.experiment), refresh);
    let choice = |s: u32| {
        if refresh == Some(s) {
            format!("<strong>every {}</strong>", seconds(s))
        } else {
            format!("<a href=\"?refresh={s}\">every {}</a>", seconds(s))
        }
    };
    let off = if refresh.is_none() {
        "<strong>off</strong>".to_owned()
    } else {
        "<a href=\"?\">off</a>".to_owned()
    };
    let _ = write!(
        out,
        "<nav><a href=\"/\">all experiments</a> · auto-refresh: {off} · {} · <a href=\"report\">JSON</a></nav>",
        REFRESH_CHOICES.map(choice).join(" · ")
    );
    section(&mut out, r);
    out.push_str("</body></html>\n");
    out
}

/// The admin listener's index: each experiment with links to its live report.
pub fn index_page(experiments: &[String], config_version: &str) -> String {
    let mut out = head("cohort", None);
    let _ = write!(
        out,
        "<h1>cohort</h1><p>config version <code>{}</code> · <a href=\"/metrics\">metrics</a> · <a href=\"/v1/config\">config</a></p>",
        escape(config_version)
    );
    if experiments.is_empty() {
        out.push_str("<p>No experiments are configured.</p>");
    } else {
        out.push_str(
            "<table><tr><th>experiment</th><th>live report</th><th>JSON</th><th>counts</th></tr>",
        );
        for name in experiments {
            let e = escape(&percent_encode(name));
            let _ = write!(
                out,
                "<tr><td>{}</td><td><a href=\"/v1/experiments/{e}/report.html\">report</a></td><td><a href=\"/v1/experiments/{e}/report\">report</a></td><td><a href=\"/v1/experiments/{e}/counts\">counts</a></td></tr>",
                escape(name)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}

fn head(title: &str, refresh: Option<u32>) -> String {
    let refresh = refresh.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">")
    });
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}<title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    )
}

fn seconds(s: u32) -> String {
    if s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// An experiment name as a path segment.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn section(out: &mut String, r: &Report) {
    let status = r.decision.status.as_str();
    let _ = write!(
        out,
        "<section><h1>Experiment {}</h1><div class=\"box {status}\"><strong>{}</strong><br>decision: <code>{status}</code>{}</div>",
        escape(&r.experiment),
        escape(&headline(r)),
        if r.decision.roll_back.is_empty() {
            String::new()
        } else {
            format!(" · roll back: {}", escape(&r.decision.roll_back.join(", ")))
        }
    );
    let srm_class = if r.srm.ok == Some(false) { "bad" } else { "ok" };
    let _ = write!(
        out,
        "<div class=\"box {srm_class}\">Sample ratio: χ² = {}, p = {}, {}</div>",
        r.srm.chi2.map_or("—".into(), |c| format!("{c:.3}")),
        r.srm.p_value.map_or("—".into(), pval),
        match r.srm.ok {
            Some(true) => "split as configured",
            Some(false) => "MISMATCH: the data cannot be trusted",
            None => "too few units to judge",
        }
    );
    let _ = write!(
        out,
        "<div class=\"box ok\">Planned sample: {}</div>",
        escape(&power_line(r))
    );
    out.push_str("<div class=\"scroll\"><table><tr><th>variant</th><th>share</th><th>units</th><th>converted</th><th>rate</th><th>CI</th><th>value/unit</th><th>crossovers</th></tr>");
    for v in &r.variants {
        let _ = write!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&v.name),
            if v.name == r.control { " (control)" } else { "" },
            pct(v.share),
            v.units,
            v.conversions,
            v.rate.map_or("—".into(), pct),
            v.rate_ci.map_or("—".into(), |[a, b]| format!("{} – {}", pct(a), pct(b))),
            v.value_mean.map_or("—".into(), |x| format!("{x:.3}")),
            v.crossovers
        );
    }
    out.push_str("</table></div>");
    if !r.comparisons.is_empty() {
        out.push_str("<div class=\"scroll\"><table><tr><th>vs control</th><th>abs diff</th><th>rel lift</th><th>CI</th><th>seq CI</th><th>p</th><th>p seq (Holm)</th><th>P(beat)</th><th>exp. loss</th><th>value p</th></tr>");
        for c in &r.comparisons {
            let ci = |x: Option<[f64; 2]>| {
                x.map_or("—".into(), |[a, b]| {
                    format!("{} – {}", signed_pct(a), signed_pct(b))
                })
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.variant),
                c.abs_diff.map_or("—".into(), |x| format!("{:+.3} pp", 100.0 * x)),
                c.rel_lift.map_or("—".into(), signed_pct),
                ci(c.rel_lift_ci),
                ci(c.seq_ci),
                c.p_value.map_or("—".into(), pval),
                c.seq_p_value_holm.map_or("—".into(), pval),
                c.prob_beat_control.map_or("—".into(), |p| format!("{p:.3}")),
                c.expected_loss.map_or("—".into(), pct),
                c.value_p_value.map_or("—".into(), pval),
            );
        }
        out.push_str("</table></div>");
    }
    if let Some(ro) = &r.rollout {
        let _ = write!(
            out,
            "<h3>Rollout</h3><p>{}</p><div class=\"scroll\"><table><tr><th>time</th><th>step</th><th>share</th><th class=\"words\">what</th><th class=\"words\">why</th></tr>",
            escape(&rollout_line(ro))
        );
        for [ts, step, share, what, why] in rollout_rows(ro) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"words\">{}</td><td class=\"words why\">{}</td></tr>",
                escape(&ts),
                escape(&step),
                escape(&share),
                escape(&what),
                escape(&why)
            );
        }
        out.push_str("</table></div>");
    }
    for chart in charts(r) {
        out.push_str(&chart);
    }
    if let Some(m) = &r.monitoring {
        monitoring(out, m);
    }
    if let Some(s) = &r.shadow {
        shadow(out, s);
    }
    if !r.notes.is_empty() {
        out.push_str("<h3>Notes</h3><ul>");
        for n in &r.notes {
            let _ = write!(out, "<li>{}</li>", escape(n));
        }
        out.push_str("</ul>");
    }
    if r.decision.status == Status::Invalid {
        out.push_str("<p><strong>The numbers above are shown for diagnosis only.</strong></p>");
    }
    let _ = write!(
        out,
        "<p><small>computed at {}</small></p></section>",
        escape(&r.computed_at)
    );
}

/// The shadow section: the summary and a row per shadow and variant served.
fn shadow(out: &mut String, s: &cohort_analysis::shadow::ShadowReport) {
    let _ = write!(
        out,
        "<h3>Shadow traffic</h3><p>{}</p>",
        escape(&crate::shadow_line(s))
    );
    plain_table(out, &crate::SHADOW_HEAD, crate::shadow_rows(s));
}

/// A scrolling table of text cells.
fn plain_table<const N: usize>(out: &mut String, head: &[&str; N], rows: Vec<[String; N]>) {
    out.push_str("<div class=\"scroll\"><table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></div>");
}

/// The monitoring section: the summary, a table per variant and column, PSI over time per
/// column, and the worst column's bins against its reference's.
fn monitoring(out: &mut String, m: &cohort_analysis::monitoring::MonitoringReport) {
    let _ = write!(
        out,
        "<h3>Model monitoring</h3><p>{}</p>",
        escape(&crate::monitoring_line(m))
    );
    plain_table(out, &crate::MONITOR_HEAD, crate::monitoring_rows(m));
    let start_s = m
        .columns
        .iter()
        .filter_map(|c| c.psi_series.first().map(|p| p.window_end_s))
        .min()
        .unwrap_or(0);
    let mut columns: Vec<&str> = m.columns.iter().map(|c| c.column.as_str()).collect();
    columns.sort_unstable();
    columns.dedup();
    let mut variants: Vec<&str> = m.columns.iter().map(|c| c.variant.as_str()).collect();
    variants.sort_unstable();
    variants.dedup();
    for column in columns {
        let series: Vec<Series> = m
            .columns
            .iter()
            .filter(|c| c.column == column)
            .map(|c| Series {
                name: c.variant.clone(),
                color: COLORS
                    [variants.iter().position(|v| *v == c.variant).unwrap_or(0) % COLORS.len()],
                points: c
                    .psi_series
                    .iter()
                    .map(|p| ((p.window_end_s - start_s) as f64, p.psi))
                    .collect(),
                band: Vec::new(),
            })
            .collect();
        out.push_str(
            &Chart {
                title: &format!("PSI of {column} per window (drift above 0.2)"),
                y_label: "PSI",
                series,
                y_format: |y| format!("{y:.2}"),
                reference: Some(0.2),
                bounds: (0.0, f64::INFINITY),
                start_s: start_s as f64,
                markers: &[],
            }
            .render(),
        );
    }
    if let Some(w) = &m.worst {
        out.push_str(
            &Bars {
                title: &format!(
                    "{} of {}: reference against its latest window (PSI {:.2})",
                    w.column, w.variant, w.psi
                ),
                labels: w.bin_labels(),
                groups: vec![
                    ("reference", "#999999", w.reference_counts.clone()),
                    ("latest window", "#d62728", w.counts.clone()),
                ],
            }
            .render(),
        );
    }
}

fn charts(r: &Report) -> Vec<String> {
    let c = cohort_analysis::series::charts(r);
    if c.units.is_empty() {
        return Vec::new();
    }
    let drawn = |series: Vec<cohort_analysis::series::Series>| -> Vec<Series> {
        series
            .into_iter()
            .map(|s| Series {
                name: s.name,
                color: COLORS[s.variant % COLORS.len()],
                points: s.points,
                band: s.band,
            })
            .collect()
    };
    let sparse = |series: &[Series], why: &str| {
        if series.iter().all(|s| s.points.len() < 2) {
            format!("<p class=\"sparse\">{}</p>", escape(why))
        } else {
            String::new()
        }
    };
    let (rate, units, lift) = (drawn(c.rate), drawn(c.units), drawn(c.lift));
    let notes = [
        sparse(&rate, "One point so far: a rate is drawn once a variant has units with conversions, and the line grows as the experiment runs."),
        sparse(&units, "One point so far: the chart fills in as units arrive."),
        sparse(&lift, "One point or none so far: the lift is drawn at the moments both the treatment and the control have conversions (and an interval is defined), so it fills in as the experiment runs."),
    ];
    let (start_s, markers) = (c.start_ns as f64 / 1e9, c.changes.as_slice());
    let ci = format!("{}%", (100.0 * (1.0 - r.alpha)).round());
    let charts = vec![
        Chart {
            title: &format!("Cumulative conversion rate ({ci} Wilson bands)"),
            y_label: "conversion rate",
            series: rate,
            y_format: pct,
            reference: None,
            bounds: (0.0, 1.0),
            start_s,
            markers,
        }
        .render(),
        Chart {
            title: "Units per variant (the split)",
            y_label: "units",
            series: units,
            y_format: |y| format!("{y:.0}"),
            reference: None,
            bounds: (0.0, f64::INFINITY),
            start_s,
            markers,
        }
        .render(),
        Chart {
            title: &format!(
                "Relative lift over {} ({ci} always-valid interval)",
                r.control
            ),
            y_label: "relative lift",
            series: lift,
            y_format: signed_pct,
            reference: Some(0.0),
            bounds: (-1.0, f64::INFINITY),
            start_s,
            markers,
        }
        .render(),
    ];
    charts
        .into_iter()
        .zip(notes)
        .map(|(chart, note)| chart + &note)
        .collect()
}
