//! A variant's columns together: the reference, frozen from a file's rows or from the first
//! rows captured, and the drift of each column window by window.
//!
//! Windows slide: a window is the last [`SUB_WINDOWS`] sub-windows of `window_s / 6`
//! seconds each, and is evaluated each time a sub-window closes. A column is reported in a
//! window only once it has `min_rows` values there: with 10 bins and no drift at all, PSI
//! exceeds 0.2 in many windows of 50 rows and in none of 300 (the simulation in this crate's
//! tests measures it).

use serde::Serialize;

use crate::column::{Binning, Live, Reference, SUB_WINDOWS};
use crate::payload::{Cell, Table};
use cohort_stats::ks::{ks_2samp, Ks};
use cohort_stats::psi::psi;
use cohort_stats::tables::{goodness_of_fit, ChiSquare};

/// How a variant is watched (the `monitor` section of an experiment).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub window_s: u64,
    pub min_rows: u64,
    pub ks_rows: usize,
    /// Rows captured before the reference is frozen (when no reference file is given).
    pub reference_rows: usize,
    /// Columns whose numbers are categories.
    pub categorical: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window_s: 1800,
            min_rows: 300,
            ks_rows: 1024,
            reference_rows: 1000,
            categorical: Vec::new(),
        }
    }
}

impl Settings {
    /// Seconds per sub-window.
    pub fn sub_s(&self) -> i64 {
        i64::try_from(self.window_s / SUB_WINDOWS as u64)
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// The sub-window that holds time `t_s`.
    pub fn slot(&self, t_s: i64) -> i64 {
        t_s.div_euclid(self.sub_s())
    }
}

/// One column's figures in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDrift {
    pub column: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// Values placed in a bin in this window.
    pub rows: u64,
    /// Values missing, or of another kind than the reference's.
    pub unplaced: u64,
    pub psi: Option<f64>,
    /// Numeric columns: the live sample against the reference's.
    pub ks: Option<Ks>,
    /// Categorical columns: live counts against the reference's proportions.
    pub chi2: Option<ChiSquare>,
    /// Numeric columns: the bin edges (bin i holds values up to edge i; the last bin, the
    /// rest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Categorical columns: the reference's categories (the last bin: every other value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Per bin: the window's count, and the reference's.
    pub counts: Vec<u64>,
    pub reference_counts: Vec<u64>,
}

/// A window's figures for a variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowDrift {
    /// Seconds since the epoch; the window is [start_s, end_s).
    pub start_s: i64,
    pub end_s: i64,
    /// Rows captured in the window.
    pub rows: u64,
    /// Only the columns with at least `min_rows` values.
    pub columns: Vec<ColumnDrift>,
}

struct Watched {
    name: String,
    reference: Reference,
    live: Live,
}

enum State {
    /// Gathering the reference: every column's values, row by row.
    Collecting {
        table: Table,
    },
    Watching {
        columns: Vec<Watched>,
    },
}

/// One variant's monitor.
pub struct VariantMonitor {
    settings: Settings,
    seed: u64,
    state: State,
    /// Rows per sub-window, oldest first.
    rows: Vec<(i64, u64)>,
}

impl VariantMonitor {
    /// A monitor that takes its reference from the first `reference_rows` rows it sees.
    pub fn new(settings: Settings, seed: u64) -> Self {
        Self {
            settings,
            seed,
            state: State::Collecting {
                table: Table::default(),
            },
            rows: Vec::new(),
        }
    }

    /// A monitor whose reference is `reference` (a file's rows).
    pub fn with_reference(settings: Settings, seed: u64, reference: &Table) -> Self {
        let mut m = Self::new(settings, seed);
        m.freeze(reference);
        m
    }

    /// Whether the reference is in place (live windows are being kept).
    pub fn watching(&self) -> bool {
        matches!(self.state, State::Watching { .. })
    }

    /// The reference's columns and their binning (empty while it is gathered).
    pub fn reference(&self) -> Vec<(&str, &Reference)> {
        match &self.state {
            State::Watching { columns } => columns
                .iter()
                .map(|w| (w.name.as_str(), &w.reference))
                .collect(),
            State::Collecting { .. } => Vec::new(),
        }
    }

    fn freeze(&mut self, table: &Table) {
        let s = &self.settings;
        let mut columns = Vec::new();
        for (i, name) in table.columns.iter().enumerate() {
            let cells: Vec<Cell> = table.rows.iter().map(|r| r[i].clone()).collect();
            let seed = self.seed ^ hash_name(name);
            let categorical = s.categorical.iter().any(|c| c == name);
            if let Some(reference) = Reference::build(&cells, categorical, s.ks_rows, seed) {
                let live = Live::new(&reference, s.ks_rows, seed.rotate_left(17));
                columns.push(Watched {
                    name: name.clone(),
                    reference,
                    live,
                });
            }
        }
        self.state = State::Watching { columns };
    }

    /// Adds the rows of one call, captured at `t_s` (seconds since the epoch).
    pub fn observe(&mut self, t_s: i64, table: &Table) {
        let slot = self.settings.slot(t_s);
        match &mut self.state {
            State::Collecting { table: gathered } => {
                for row in &table.rows {
                    let cells = table
                        .columns
                        .iter()
                        .cloned()
                        .zip(row.iter().cloned())
                        .collect();
                    gathered.push_row(cells);
                }
                if gathered.rows.len() >= self.settings.reference_rows {
                    let gathered = std::mem::take(gathered);
                    self.freeze(&gathered);
                }
                return;
            }
            State::Watching { columns } => {
                for w in columns.iter_mut() {
                    match table.columns.iter().position(|c| *c == w.name) {
                        Some(i) => table
                            .rows
                            .iter()
                            .for_each(|r| w.live.add(&w.reference, slot, &r[i])),
                        None => table
                            .rows
                            .iter()
                            .for_each(|_| w.live.add(&w.reference, slot, &Cell::Missing)),
                    }
                }
            }
        }
        match self.rows.last_mut() {
            Some((s, n)) if *s == slot => *n += table.rows.len() as u64,
            _ => self.rows.push((slot, table.rows.len() as u64)),
        }
    }

    /// The window that ends with the sub-window before the one holding `now_s` (the last
    /// closed one). None while the reference is gathered.
    pub fn evaluate(&mut self, now_s: i64) -> Option<WindowDrift> {
        let State::Watching { columns } = &mut self.state else {
            return None;
        };
        let last = self.settings.slot(now_s) - 1;
        let first = last - SUB_WINDOWS as i64 + 1;
        self.rows.retain(|(s, _)| *s >= first);
        let rows = self
            .rows
            .iter()
            .filter(|(s, _)| *s <= last)
            .map(|(_, n)| n)
            .sum();
        let sub = self.settings.sub_s();
        let mut out = Vec::new();
        for w in columns.iter_mut() {
            let window = w.live.window(last);
            if window.rows() < self.settings.min_rows {
                continue;
            }
            let r = &w.reference;
            let (kind, ks, chi2, edges, categories) = match &r.binning {
                Binning::Numeric(b) => (
                    "numeric",
                    ks_2samp(&window.sample, &r.sample),
                    None,
                    b.edges().to_vec(),
                    Vec::new(),
                ),
                Binning::Categorical(names) => (
                    "categorical",
                    None,
                    goodness_of_fit(&window.counts, &r.counts),
                    Vec::new(),
                    names.clone(),
                ),
            };
            out.push(ColumnDrift {
                column: w.name.clone(),
                kind,
                rows: window.rows(),
                unplaced: window.unplaced,
                psi: psi(&r.counts, &window.counts),
                ks,
                chi2,
                edges,
                categories,
                reference_counts: r.counts.clone(),
                counts: window.counts,
            });
        }
        Some(WindowDrift {
            start_s: first * sub,
            end_s: (last + 1) * sub,
            rows,
            columns: out,
        })
    }
}

/// A stable per-column seed part, so two columns never share a reservoir's draws.
fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], rows: Vec<Vec<f64>>) -> Table {
        Table {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(Cell::Number).collect())
                .collect(),
        }
    }

    #[test]
    fn the_reference_is_the_first_rows_then_windows_are_kept() {
        let settings = Settings {
            window_s: 60,
            min_rows: 5,
            reference_rows: 20,
            ..Settings::default()
        };
        let mut m = VariantMonitor::new(settings, 7);
        for i in 0..19 {
            m.observe(i, &table(&["x"], vec![vec![f64::from(i as i32)]]));
        }
        assert!(!m.watching());
        assert_eq!(m.evaluate(100), None);
        m.observe(19, &table(&["x"], vec![vec![19.0]]));
        assert!(m.watching());
        // Sub-windows of 10 s: rows at 100..106 land in slot 10, evaluated once it closes.
        for t in 100..106 {
            m.observe(t, &table(&["x"], vec![vec![5.0]]));
        }
        let w = m.evaluate(115).unwrap();
        assert_eq!((w.start_s, w.end_s, w.rows), (50, 110, 6));
        assert_eq!(w.columns.len(), 1);
        assert_eq!(w.columns[0].rows, 6);
        assert!(w.columns[0].psi.unwrap() > 0.2, "{:?}", w.columns[0]);
        // Too few rows in a later window: nothing reported for the column.
        let later = m.evaluate(300).unwrap();
        assert!(later.columns.is_empty());
        assert_eq!(later.rows, 0);
    }
}
