//! The report's `monitoring` section, from the `"type": "monitor"` lines of the event log:
//! per variant and column, the PSI window by window, the latest figures, and the bins of
//! the column that drifted most.
//!
//! Several replicas write a line each for the same window (each against its own
//! reference): the section takes, per variant, column and window end, the line with the
//! largest PSI (the worst replica, as the alert rule does).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One window of one column, as a monitor line carries it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct LineColumn {
    pub column: String,
    pub kind: String,
    pub rows: u64,
    #[serde(default)]
    pub unplaced: u64,
    pub psi: Option<f64>,
    #[serde(default)]
    pub ks: Option<PValue>,
    #[serde(default)]
    pub chi2: Option<PValue>,
    #[serde(default)]
    pub edges: Vec<f64>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub counts: Vec<u64>,
    #[serde(default)]
    pub reference_counts: Vec<u64>,
}

/// A test's p-value, as a line carries it (other fields ignored).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct PValue {
    pub p_value: f64,
}

/// One monitor line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Line {
    pub experiment: String,
    pub variant: String,
    #[serde(default)]
    pub phase: Option<String>,
    pub window_end: String,
    pub rows: u64,
    pub columns: Vec<LineColumn>,
}

/// Every monitor line read, by experiment.
#[derive(Debug, Default, Clone)]
pub struct MonitorLines {
    lines: BTreeMap<String, Vec<(i64, Line)>>,
}

impl MonitorLines {
    /// Adds a monitor line (JSON); false when it is not one.
    pub fn add(&mut self, line: &[u8]) -> bool {
        let Ok(l) = serde_json::from_slice::<Line>(line) else {
            return false;
        };
        let Some(end) = cohort_events::clock::parse_nanos(&l.window_end) else {
            return false;
        };
        self.lines
            .entry(l.experiment.clone())
            .or_default()
            .push((end / 1_000_000_000, l));
        true
    }

    /// Keeps each experiment's latest `n` lines (by window end).
    pub fn keep_last(&mut self, n: usize) {
        for lines in self.lines.values_mut() {
            if lines.len() > n {
                lines.sort_by_key(|(end, _)| *end);
                lines.drain(..lines.len() - n);
            }
        }
    }

    pub fn merge(&mut self, other: MonitorLines) {
        for (e, mut v) in other.lines {
            self.lines.entry(e).or_default().append(&mut v);
        }
    }

    /// The section for `experiment` in `phase` (lines without a phase count in every
    /// phase); None when it has no monitor line.
    pub fn report(&self, experiment: &str, phase: Option<&str>) -> Option<MonitoringReport> {
        let lines = self.lines.get(experiment)?;
        // (variant, column) → window end → the worst replica's column.
        let mut by: BTreeMap<(String, String), BTreeMap<i64, LineColumn>> = BTreeMap::new();
        let mut windows = std::collections::BTreeSet::new();
        for (end, l) in lines {
            if phase.is_some() && l.phase.is_some() && l.phase.as_deref() != phase {
                continue;
            }
            windows.insert(*end);
            for c in &l.columns {
                let slot = by
                    .entry((l.variant.clone(), c.column.clone()))
                    .or_default()
                    .entry(*end)
                    .or_insert_with(|| c.clone());
                if c.psi.unwrap_or(f64::NEG_INFINITY) > slot.psi.unwrap_or(f64::NEG_INFINITY) {
                    *slot = c.clone();
                }
            }
        }
        if windows.is_empty() {
            return None;
        }
        let mut columns = Vec::new();
        let mut worst: Option<(f64, Worst)> = None;
        for ((variant, column), series) in by {
            let Some((&latest_end, latest)) = series.iter().next_back() else {
                continue;
            };
            let psi_series: Vec<PsiPoint> = series
                .iter()
                .filter_map(|(&end, c)| {
                    c.psi.map(|psi| PsiPoint {
                        window_end_s: end,
                        psi,
                    })
                })
                .collect();
            let max_psi = psi_series
                .iter()
                .map(|p| p.psi)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            if let Some(psi) = latest.psi {
                if worst.as_ref().is_none_or(|(w, _)| psi > *w) {
                    worst = Some((
                        psi,
                        Worst {
                            variant: variant.clone(),
                            column: column.clone(),
                            psi,
                            edges: latest.edges.clone(),
                            categories: latest.categories.clone(),
                            counts: latest.counts.clone(),
                            reference_counts: latest.reference_counts.clone(),
                        },
                    ));
                }
            }
            columns.push(ColumnSummary {
                variant,
                column,
                kind: latest.kind.clone(),
                rows: latest.rows,
                latest_window_end_s: latest_end,
                psi: latest.psi,
                max_psi,
                ks_p_value: latest.ks.map(|k| k.p_value),
                chi2_p_value: latest.chi2.map(|k| k.p_value),
                psi_series,
            });
        }
        Some(MonitoringReport {
            windows: windows.len(),
            columns,
            worst: worst.map(|(_, w)| w),
        })
    }
}

/// The `monitoring` section of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitoringReport {
    /// Distinct windows read.
    pub windows: usize,
    /// Per variant and column, in name order.
    pub columns: Vec<ColumnSummary>,
    /// The column with the largest PSI in its latest window, with its bins.
    pub worst: Option<Worst>,
}

/// One column of one variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnSummary {
    pub variant: String,
    pub column: String,
    pub kind: String,
    /// Rows of the latest window.
    pub rows: u64,
    pub latest_window_end_s: i64,
    /// The latest window's PSI, and the largest of any window.
    pub psi: Option<f64>,
    pub max_psi: Option<f64>,
    pub ks_p_value: Option<f64>,
    pub chi2_p_value: Option<f64>,
    /// PSI window by window.
    pub psi_series: Vec<PsiPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PsiPoint {
    pub window_end_s: i64,
    pub psi: f64,
}

/// The most drifted column's bins in its latest window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Worst {
    pub variant: String,
    pub column: String,
    pub psi: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    pub counts: Vec<u64>,
    pub reference_counts: Vec<u64>,
}

impl Worst {
    /// A label per bin, by its upper edge: `≤ 1.5`, `≤ 3`, `> 3`; or the category (`other`
    /// last).
    pub fn bin_labels(&self) -> Vec<String> {
        if !self.categories.is_empty() {
            let mut l = self.categories.clone();
            l.push("other".to_owned());
            return l;
        }
        let e = &self.edges;
        (0..=e.len())
            .map(|i| match (i.checked_sub(1).map(|j| e[j]), e.get(i)) {
                (None, Some(hi)) => format!("≤ {}", short(*hi)),
                (Some(_), Some(hi)) => format!("≤ {}", short(*hi)),
                (Some(lo), None) => format!("> {}", short(lo)),
                (None, None) => "all".to_owned(),
            })
            .collect()
    }
}

fn short(x: f64) -> String {
    format!("{}", (x * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(variant: &str, end: &str, phase: &str, psi: f64) -> String {
        format!(
            r#"{{"type":"monitor","v":1,"ts":"{end}","experiment":"e","variant":"{variant}","phase":"{phase}","window_start":"x","window_end":"{end}","window_s":60,"rows":400,"columns":[{{"column":"x1","kind":"numeric","rows":400,"unplaced":0,"psi":{psi},"ks":{{"statistic":0.2,"p_value":0.01}},"edges":[0.0,1.0],"counts":[100,200,100],"reference_counts":[300,100,100]}}]}}"#
        )
    }

    #[test]
    fn the_worst_replica_per_window_and_the_latest_window_per_column() {
        let mut m = MonitorLines::default();
        for l in [
            line("lr", "2026-12-08T00:01:00Z", "s", 0.05),
            line("lr", "2026-12-08T00:02:00Z", "s", 0.30),
            // Another replica, same window, less drift: the worst counts.
            line("lr", "2026-12-08T00:02:00Z", "s", 0.10),
            line("rf", "2026-12-08T00:02:00Z", "s", 0.02),
            // Another phase: left out.
            line("rf", "2026-12-08T00:03:00Z", "old", 0.90),
        ] {
            assert!(m.add(l.as_bytes()));
        }
        assert!(!m.add(b"{\"type\":\"monitor\"}"));
        let r = m.report("e", Some("s")).unwrap();
        assert_eq!(r.windows, 2);
        assert_eq!(r.columns.len(), 2);
        let lr = &r.columns[0];
        assert_eq!(
            (lr.variant.as_str(), lr.psi, lr.max_psi),
            ("lr", Some(0.30), Some(0.30))
        );
        assert_eq!(lr.psi_series.len(), 2);
        assert_eq!(lr.ks_p_value, Some(0.01));
        let w = r.worst.unwrap();
        assert_eq!((w.variant.as_str(), w.psi), ("lr", 0.30));
        assert_eq!(w.bin_labels(), ["≤ 0", "≤ 1", "> 1"]);
        assert!(m.report("other", None).is_none());
    }
}
