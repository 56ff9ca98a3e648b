//! Reports for people and machines: one [`Report`] written as text (a terminal), Markdown
//! (a pull request or a ticket), a self-contained HTML page with charts, or JSON.
//!
//! Every format starts with the decision in one plain sentence ([`headline`]); the numbers
//! below it are the report's own, never recomputed here (except the charts' series,
//! which replay the same statistics over time).

#![forbid(unsafe_code)]

pub mod html;
pub mod svg;

use std::fmt::Write;

use cohort_analysis::report::Status;
use cohort_analysis::Report;

/// `12.34%`.
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// `+12.4%`.
pub fn signed_pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

/// A p-value, readable at any size.
pub fn pval(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn opt(x: Option<f64>, f: fn(f64) -> String) -> String {
    x.map_or_else(|| "—".to_owned(), f)
}

fn level(r: &Report) -> String {
    format!("{}%", (100.0 * (1.0 - r.alpha)).round())
}

/// The decision in one sentence, e.g. "lr beats rf: +12.4% relative (95% CI +3.1% to
/// +22.0%, always-valid), roll out lr."
pub fn headline(r: &Report) -> String {
    let d = &r.decision;
    let cmp_of = |v: &str| r.comparisons.iter().find(|c| c.variant == v);
    let lift = |v: &str| -> String {
        let Some(c) = cmp_of(v) else {
            return String::new();
        };
        let (ci, kind) = if r.method == "sequential" {
            (c.seq_ci, "always-valid")
        } else {
            (c.rel_lift_ci, "fixed-horizon")
        };
        match (c.rel_lift, ci) {
            (Some(l), Some([lo, hi])) => format!(
                ": {} relative ({} CI {} to {}, {kind})",
                signed_pct(l),
                level(r),
                signed_pct(lo),
                signed_pct(hi)
            ),
            (Some(l), None) => format!(": {} relative", signed_pct(l)),
            _ => String::new(),
        }
    };
    let roll = if d.roll_back.is_empty() {
        String::new()
    } else {
        format!(
            " Roll back {} now: it converts worse than {}.",
            d.roll_back.join(", "),
            r.control
        )
    };
    match d.status {
        Status::Winner => {
            let w = d.variant.as_deref().unwrap_or("?");
            format!("{w} beats {}{}, roll out {w}.{roll}", r.control, lift(w))
        }
        Status::ControlWins => format!(
            "{} beats every treatment: keep {} and roll back {}.",
            r.control,
            r.control,
            d.roll_back.join(", ")
        ),
        Status::NoDifference => format!(
            "No difference: at the planned sample no treatment beats {}; keep {}.{roll}",
            r.control, r.control
        ),
        Status::Continue => {
            let progress = r
                .power
                .progress
                .map(|p| format!(" Progress: {:.0}% of the planned sample.", 100.0 * p))
                .unwrap_or_default();
            format!("Keep running: {}.{progress}{roll}", d.reason)
        }
        Status::Invalid => format!("Invalid: {}.", d.reason),
    }
}

fn variant_rows(r: &Report) -> Vec<[String; 8]> {
    r.variants
        .iter()
        .map(|v| {
            [
                if v.name == r.control {
                    format!("{} (control)", v.name)
                } else {
                    v.name.clone()
                },
                pct(v.share),
                v.units.to_string(),
                v.conversions.to_string(),
                opt(v.rate, pct),
                v.rate_ci.map_or("—".to_owned(), |[a, b]| {
                    format!("{} – {}", pct(a), pct(b))
                }),
                opt(v.value_mean, |x| format!("{x:.3}")),
                v.crossovers.to_string(),
            ]
        })
        .collect()
}

const VARIANT_HEAD: [&str; 8] = [
    "variant",
    "share",
    "units",
    "conv",
    "rate",
    "CI",
    "value/unit",
    "crossovers",
];

fn comparison_rows(r: &Report) -> Vec<[String; 7]> {
    let seq = r.method == "sequential";
    r.comparisons
        .iter()
        .map(|c| {
            let ci = if seq { c.seq_ci } else { c.rel_lift_ci };
            [
                c.variant.clone(),
                opt(c.rel_lift, signed_pct),
                ci.map_or("—".to_owned(), |[a, b]| {
                    format!("{} – {}", signed_pct(a), signed_pct(b))
                }),
                opt(
                    if seq {
                        c.seq_p_value_holm
                    } else {
                        c.p_value_holm
                    },
                    pval,
                ),
                opt(c.p_value, pval),
                opt(c.prob_beat_control, |p| format!("{:.3}", p)),
                opt(c.expected_loss, pct),
            ]
        })
        .collect()
}

fn comparison_head(r: &Report) -> [String; 7] {
    let seq = r.method == "sequential";
    [
        "vs control".to_owned(),
        "rel lift".to_owned(),
        format!("{} {}", level(r), if seq { "seq CI" } else { "CI" }),
        if seq { "p seq (Holm)" } else { "p (Holm)" }.to_owned(),
        "p fixed".to_owned(),
        "P(beat)".to_owned(),
        "exp. loss".to_owned(),
    ]
}

fn table<const N: usize>(head: &[String; N], rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for row in std::iter::once(head).chain(rows) {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in std::iter::once(head).chain(rows).enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(width)
            .enumerate()
            .map(|(j, (cell, w))| {
                let pad = w - cell.chars().count();
                if j == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let total: usize = width.iter().sum::<usize>() + 2 * (N - 1);
            let _ = writeln!(out, "{}", "─".repeat(total));
        }
    }
    out
}

fn srm_line(r: &Report) -> String {
    match (r.srm.p_value, r.srm.ok) {
        (Some(p), Some(true)) => format!("split as configured (SRM p = {})", pval(p)),
        (Some(p), Some(false)) => format!("SAMPLE RATIO MISMATCH (p = {})", pval(p)),
        (Some(p), None) => format!("too few units to judge (p = {})", pval(p)),
        _ => "not computed".to_owned(),
    }
}

/// The planned sample and the progress toward it, as one line.
pub fn power_line(r: &Report) -> String {
    let p = &r.power;
    match (p.baseline_rate, p.required_units_per_variant) {
        (Some(b), Some(n)) => format!(
            "{:.0} units per variant detect a {} relative change from {} with power {} ({} baseline); progress {:.0}%",
            n.ceil(),
            signed_pct(p.mde),
            pct(b),
            p.power,
            p.baseline_source.unwrap_or("?"),
            100.0 * p.progress.unwrap_or(0.0)
        ),
        _ => "planned sample not known yet (no baseline rate)".to_owned(),
    }
}

/// The report for a terminal (fits 100 columns).
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    for line in wrap(&headline(r), 100) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\nexperiment {} · unit {} · {} test, alpha {} · decision: {}\n",
        r.experiment,
        r.unit,
        r.method,
        r.alpha,
        r.decision.status.as_str()
    );
    let head = VARIANT_HEAD.map(str::to_owned);
    out.push_str(&table(&head, &variant_rows(r)));
    if !r.comparisons.is_empty() {
        out.push('\n');
        out.push_str(&table(&comparison_head(r), &comparison_rows(r)));
    }
    out.push('\n');
    for (label, line) in [("split:  ", srm_line(r)), ("power:  ", power_line(r))] {
        for (i, l) in wrap(&line, 100 - label.len()).iter().enumerate() {
            let _ = writeln!(out, "{}{l}", if i == 0 { label } else { "        " });
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for n in &r.notes {
            for (i, line) in wrap(n, 100 - 4).iter().enumerate() {
                let _ = writeln!(out, "  {} {line}", if i == 0 { "-" } else { " " });
            }
        }
    }
    out
}

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("never empty");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

fn md_table<const N: usize>(head: &[String; N], rows: &[[String; N]]) -> String {
    let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(N));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Experiment `{}`\n", r.experiment);
    let _ = writeln!(out, "**{}**\n", headline(r));
    let _ = writeln!(
        out,
        "Unit: {} · {} test at alpha {} · status `{}`\n",
        r.unit,
        r.method,
        r.alpha,
        r.decision.status.as_str()
    );
    out.push_str(&md_table(
        &VARIANT_HEAD.map(str::to_owned),
        &variant_rows(r),
    ));
    if !r.comparisons.is_empty() {
        out.push('\n');
        out.push_str(&md_table(&comparison_head(r), &comparison_rows(r)));
    }
    let _ = writeln!(
        out,
        "\n- Split: {}\n- Power: {}",
        srm_line(r),
        power_line(r)
    );
    for n in &r.notes {
        let _ = writeln!(out, "- Note: {n}");
    }
    out
}
