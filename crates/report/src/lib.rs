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

use cohort_analysis::monitoring::MonitoringReport;
use cohort_analysis::report::{RolloutReport, Status};
use cohort_analysis::rollout::{percent, Status as RolloutStatus};
use cohort_analysis::shadow::ShadowReport;
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

/// The rollout in one line, e.g. "rollout 5be5d1f0c3a8e2d7 of lr: rolled back at step 3;
/// the comparison is frozen at 2026-12-07T20:10:03.112Z".
pub fn rollout_line(r: &RolloutReport) -> String {
    let state = match r.state {
        RolloutStatus::Running => "running",
        RolloutStatus::Paused => "paused",
        RolloutStatus::RolledBack => "rolled back",
        RolloutStatus::Promoted => "promoted",
        RolloutStatus::Done => "done",
    };
    let mut out = format!("rollout {}", r.rollout_id);
    if let Some(t) = &r.treatment {
        let _ = write!(out, " of {t}");
    }
    let _ = write!(out, ": {state} at step {}", r.step);
    if r.attempt > 0 {
        let _ = write!(out, " (attempt {})", r.attempt + 1);
    }
    if let Some(f) = &r.frozen_at {
        let _ = write!(out, "; the comparison is frozen at {f}");
    }
    out
}

const ROLLOUT_HEAD: [&str; 5] = ["time", "step", "share", "what", "why"];

/// The rollout's timeline as rows: time, step (from 1), the treatment's share, the
/// action (and who acted, when not cohort), its reason.
fn rollout_rows(r: &RolloutReport) -> Vec<[String; 5]> {
    r.timeline
        .iter()
        .map(|a| {
            let mut what = a.kind.label().to_owned();
            if a.by != "cohort" {
                let _ = write!(what, " ({})", a.by);
            }
            [
                a.ts.clone(),
                a.step.to_string(),
                percent(a.share),
                what,
                a.reason.clone(),
            ]
        })
        .collect()
}

/// The timeline for a terminal: the reasons wrap in their column, so the table fits
/// `width` columns.
fn rollout_table(r: &RolloutReport, width: usize) -> String {
    let rows = rollout_rows(r);
    let mut w = [0usize; 4];
    for row in std::iter::once(&ROLLOUT_HEAD.map(str::to_owned)).chain(&rows) {
        for (w, cell) in w.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let lead: usize = w.iter().sum::<usize>() + 2 * 4;
    let why_width = width.saturating_sub(lead).max(30);
    let line = |cells: &[String; 5], why: &str| {
        let pad = |s: &str, n: usize| " ".repeat(n - s.chars().count().min(n));
        format!(
            "{}{}  {}{}  {}{}  {}{}  {why}",
            cells[0],
            pad(&cells[0], w[0]),
            pad(&cells[1], w[1]),
            cells[1],
            pad(&cells[2], w[2]),
            cells[2],
            cells[3],
            pad(&cells[3], w[3]),
        )
        .trim_end()
        .to_owned()
    };
    let mut out = String::new();
    let head = ROLLOUT_HEAD.map(str::to_owned);
    let _ = writeln!(out, "{}", line(&head, &head[4]));
    let longest = rows
        .iter()
        .map(|r| r[4].chars().count())
        .max()
        .unwrap_or(0)
        .clamp(3, why_width);
    let _ = writeln!(out, "{}", "─".repeat(lead + longest));
    for row in &rows {
        for (i, part) in wrap(&row[4], why_width).iter().enumerate() {
            if i == 0 {
                let _ = writeln!(out, "{}", line(row, part));
            } else {
                let _ = writeln!(out, "{}{part}", " ".repeat(lead));
            }
        }
    }
    out
}

pub(crate) const MONITOR_HEAD: [&str; 7] =
    ["variant", "column", "kind", "rows", "PSI", "max PSI", "p"];

/// The PSI above which a column is drifted, as the alert rule and `on_drift` default say.
const DRIFT_PSI: f64 = 0.2;

/// The monitoring section in one line, e.g. "model monitoring: 12 windows; drifted (PSI
/// above 0.2): lr/x1 0.62".
pub fn monitoring_line(m: &MonitoringReport) -> String {
    let drifted: Vec<String> = m
        .columns
        .iter()
        .filter(|c| c.psi.is_some_and(|p| p > DRIFT_PSI))
        .map(|c| format!("{}/{} {:.2}", c.variant, c.column, c.psi.unwrap_or(0.0)))
        .collect();
    format!(
        "model monitoring: {} window{}; {}",
        m.windows,
        if m.windows == 1 { "" } else { "s" },
        if drifted.is_empty() {
            format!("no column drifted in its latest window (PSI above {DRIFT_PSI})")
        } else {
            format!(
                "drifted in the latest window (PSI above {DRIFT_PSI}): {}",
                drifted.join(", ")
            )
        }
    )
}

/// Per variant and column: the latest window's figures.
pub(crate) fn monitoring_rows(m: &MonitoringReport) -> Vec<[String; 7]> {
    let num = |x: Option<f64>| x.map_or("—".to_owned(), |v| format!("{v:.3}"));
    m.columns
        .iter()
        .map(|c| {
            let p = c
                .ks_p_value
                .map(|p| format!("KS {}", pval(p)))
                .or_else(|| c.chi2_p_value.map(|p| format!("χ² {}", pval(p))))
                .unwrap_or_else(|| "—".to_owned());
            [
                c.variant.clone(),
                c.column.clone(),
                c.kind.clone(),
                c.rows.to_string(),
                num(c.psi),
                num(c.max_psi),
                p,
            ]
        })
        .collect()
}

pub(crate) const SHADOW_HEAD: [&str; 9] = [
    "shadow",
    "vs",
    "compared",
    "agree (95% CI)",
    "elements",
    "|diff| p50 / p99 / max",
    "p50 ms served / shadow",
    "p99 ms served / shadow",
    "failed",
];

/// The shadow section in one line, e.g. "shadow traffic: 1204 answers compared; lowest
/// agreement: cand vs a 91.20%".
pub fn shadow_line(s: &ShadowReport) -> String {
    let compared: u64 = s.shadows.iter().map(|r| r.compared).sum();
    let lowest = s
        .shadows
        .iter()
        .filter_map(|r| r.agreement.map(|a| (a.rate, r)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let failed: u64 = s.shadows.iter().map(|r| r.errors + r.timeouts).sum();
    let mut line = format!(
        "shadow traffic: {compared} answer{} compared",
        if compared == 1 { "" } else { "s" }
    );
    if let Some((rate, r)) = lowest {
        let _ = write!(
            line,
            "; lowest agreement: {} vs {} {}",
            r.shadow,
            r.variant,
            pct(rate)
        );
    }
    if failed > 0 {
        let _ = write!(
            line,
            "; {failed} cop{} failed or timed out",
            if failed == 1 { "y" } else { "ies" }
        );
    }
    line
}

/// A difference, short: `0`, `0.25`, `1e-9`.
fn short(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if x.abs() < 1e-3 || x.abs() >= 1e6 {
        format!("{x:.1e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Per shadow and variant served, for a terminal: two lines each, within 100 columns.
fn shadow_text(s: &ShadowReport) -> String {
    let mut out = String::new();
    for r in &s.shadows {
        let agree = r.agreement.map_or("no answer compared".to_owned(), |a| {
            format!("{} agreed ({}–{})", pct(a.rate), pct(a.low), pct(a.high))
        });
        let elements = r.element_agreement.map_or(String::new(), |e| {
            format!(", elements {} of {}", pct(e), r.elements)
        });
        let _ = writeln!(
            out,
            "{} vs {}: {} compared, {agree}{elements}",
            r.shadow, r.variant, r.compared
        );
        let mut second = Vec::new();
        if let Some(d) = r.abs_diff {
            second.push(format!(
                "|diff| p50 {} p99 {} max {}",
                short(d.p50),
                short(d.p99),
                short(d.max)
            ));
        }
        if let (Some(p), Some(sh)) = (r.primary_latency_ms, r.shadow_latency_ms) {
            second.push(format!(
                "p50 {:.1} → {:.1} ms, p99 {:.1} → {:.1} ms (served → shadow)",
                p.p50, sh.p50, p.p99, sh.p99
            ));
        }
        second.push(format!(
            "{} of {} failed ({} timed out)",
            r.errors + r.timeouts,
            r.sent,
            r.timeouts
        ));
        for line in wrap(&second.join("; "), 98) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Per shadow and variant served: agreement, differences, latency, failures.
pub(crate) fn shadow_rows(s: &ShadowReport) -> Vec<[String; 9]> {
    let ms = |x: f64| format!("{x:.1}");
    let pair = |a: Option<f64>, b: Option<f64>, f: &dyn Fn(f64) -> String| {
        format!("{} / {}", a.map_or("—".into(), f), b.map_or("—".into(), f))
    };
    s.shadows
        .iter()
        .map(|r| {
            let (pl, sl) = (r.primary_latency_ms, r.shadow_latency_ms);
            [
                r.shadow.clone(),
                r.variant.clone(),
                r.compared.to_string(),
                r.agreement.map_or("—".to_owned(), |a| {
                    format!("{} ({}–{})", pct(a.rate), pct(a.low), pct(a.high))
                }),
                r.element_agreement.map_or("—".to_owned(), |e| {
                    format!("{} of {}", pct(e), r.elements)
                }),
                r.abs_diff.map_or("—".to_owned(), |d| {
                    format!("{} / {} / {}", short(d.p50), short(d.p99), short(d.max))
                }),
                pair(pl.map(|l| l.p50), sl.map(|l| l.p50), &ms),
                pair(pl.map(|l| l.p99), sl.map(|l| l.p99), &ms),
                format!(
                    "{} of {}{}",
                    r.errors + r.timeouts,
                    r.sent,
                    if r.timeouts > 0 {
                        format!(" ({} timeouts)", r.timeouts)
                    } else {
                        String::new()
                    }
                ),
            ]
        })
        .collect()
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
    if let Some(ro) = &r.rollout {
        out.push('\n');
        for line in wrap(&rollout_line(ro), 100) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        out.push_str(&rollout_table(ro, 100));
        out.push('\n');
    }
    if let Some(m) = &r.monitoring {
        out.push('\n');
        for line in wrap(&monitoring_line(m), 100) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        out.push_str(&table(
            &MONITOR_HEAD.map(str::to_owned),
            &monitoring_rows(m),
        ));
        out.push('\n');
    }
    if let Some(s) = &r.shadow {
        out.push('\n');
        for line in wrap(&shadow_line(s), 100) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        out.push_str(&shadow_text(s));
        out.push('\n');
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

/// A cell of a Markdown table: a `|` would end it, a line break the row.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
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
    if let Some(ro) = &r.rollout {
        let _ = writeln!(out, "\n**{}**\n", md_cell(&rollout_line(ro)));
        let rows: Vec<[String; 5]> = rollout_rows(ro)
            .into_iter()
            .map(|row| row.map(|c| md_cell(&c)))
            .collect();
        out.push_str(&md_table(&ROLLOUT_HEAD.map(str::to_owned), &rows));
        out.push('\n');
    }
    if let Some(m) = &r.monitoring {
        let _ = writeln!(out, "\n**{}**\n", md_cell(&monitoring_line(m)));
        let rows: Vec<[String; 7]> = monitoring_rows(m)
            .into_iter()
            .map(|row| row.map(|c| md_cell(&c)))
            .collect();
        out.push_str(&md_table(&MONITOR_HEAD.map(str::to_owned), &rows));
        out.push('\n');
    }
    if let Some(s) = &r.shadow {
        let _ = writeln!(out, "\n**{}**\n", md_cell(&shadow_line(s)));
        let rows: Vec<[String; 9]> = shadow_rows(s)
            .into_iter()
            .map(|row| row.map(|c| md_cell(&c)))
            .collect();
        out.push_str(&md_table(&SHADOW_HEAD.map(str::to_owned), &rows));
        out.push('\n');
    }
    for n in &r.notes {
        let _ = writeln!(out, "- Note: {n}");
    }
    out
}
