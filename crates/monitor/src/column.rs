//! One column: its reference, and its live window as bin counts and a reservoir per
//! sub-window.
//!
//! A window of `window_s` seconds is [`SUB_WINDOWS`] sub-windows; each keeps the exact count
//! per bin (so the PSI and the chi-square of a window are exact, and memory is bins ×
//! sub-windows whatever the traffic) and, for a numeric column, a uniform reservoir of at
//! most `ks_rows` values. The KS test of a window draws from the sub-windows' reservoirs in
//! proportion to the rows each saw, `ks_rows` values in all: a sample of the window, which
//! makes the test approximate with respect to the whole window (exact on the sample).

use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::payload::Cell;
use cohort_stats::psi::Bins;

/// Sub-windows per window: a window's figures are refreshed every `window_s / 6`.
pub const SUB_WINDOWS: usize = 6;

/// A uniform sample of at most `cap` of the values offered (Vitter's algorithm R).
#[derive(Debug, Clone)]
pub struct Reservoir {
    cap: usize,
    seen: u64,
    values: Vec<f64>,
    rng: SmallRng,
}

impl Reservoir {
    pub fn new(cap: usize, seed: u64) -> Self {
        Self {
            cap,
            seen: 0,
            values: Vec::new(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn offer(&mut self, v: f64) {
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(v);
        } else {
            let j = self.rng.random_range(0..self.seen);
            if let Ok(j) = usize::try_from(j) {
                if j < self.cap {
                    self.values[j] = v;
                }
            }
        }
    }

    /// How many values were offered.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

/// What a column's values are compared by.
#[derive(Debug, Clone, PartialEq)]
pub enum Binning {
    /// Decile bins of the reference.
    Numeric(Bins),
    /// The reference's categories, then one bin for every other value.
    Categorical(Vec<String>),
}

/// A column's reference: its bins, the reference's count in each, and (numeric) its
/// values for the KS test, at most `ks_rows` of them, drawn uniformly.
#[derive(Debug, Clone)]
pub struct Reference {
    pub binning: Binning,
    pub counts: Vec<u64>,
    pub sample: Vec<f64>,
    index: HashMap<String, usize>,
}

impl Reference {
    /// The reference of a column from its reference values; None when it has no value. A
    /// column is categorical when `categorical` says so or any of its values is a category.
    pub fn build(cells: &[Cell], categorical: bool, ks_rows: usize, seed: u64) -> Option<Self> {
        let categorical = categorical || cells.iter().any(|c| matches!(c, Cell::Category(_)));
        if categorical {
            let mut names: Vec<String> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            let mut counts: Vec<u64> = Vec::new();
            for c in cells {
                let Some(key) = category_key(c) else { continue };
                let i = *index.entry(key.clone()).or_insert_with(|| {
                    names.push(key);
                    counts.push(0);
                    names.len() - 1
                });
                counts[i] += 1;
            }
            if names.is_empty() {
                return None;
            }
            counts.push(0); // "other": never in the reference
            return Some(Self {
                binning: Binning::Categorical(names),
                counts,
                sample: Vec::new(),
                index,
            });
        }
        let values: Vec<f64> = cells
            .iter()
            .filter_map(|c| match c {
                Cell::Number(x) if x.is_finite() => Some(*x),
                _ => None,
            })
            .collect();
        let bins = Bins::deciles(&values)?;
        let counts = bins.counts(&values);
        let mut r = Reservoir::new(ks_rows, seed);
        values.iter().for_each(|&v| r.offer(v));
        Some(Self {
            binning: Binning::Numeric(bins),
            counts,
            sample: r.values,
            index: HashMap::new(),
        })
    }

    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// The bin of a live value, and its number if the column is numeric; None for a
    /// missing value or one of the wrong kind (a category in a numeric column).
    pub fn place(&self, cell: &Cell) -> Option<(usize, Option<f64>)> {
        match (&self.binning, cell) {
            (Binning::Numeric(b), Cell::Number(x)) if x.is_finite() => {
                Some((b.index(*x), Some(*x)))
            }
            (Binning::Categorical(names), c) => {
                let key = category_key(c)?;
                Some((self.index.get(&key).copied().unwrap_or(names.len()), None))
            }
            _ => None,
        }
    }
}

/// A value as a category name: numbers by their shortest text.
fn category_key(c: &Cell) -> Option<String> {
    match c {
        Cell::Category(s) => Some(s.clone()),
        Cell::Number(x) => Some(x.to_string()),
        Cell::Missing => None,
    }
}

/// One sub-window of a column.
#[derive(Debug, Clone)]
struct Sub {
    /// Which sub-window (its start over its length, in seconds since the epoch).
    slot: i64,
    counts: Vec<u64>,
    reservoir: Reservoir,
    /// Values that could not be placed (missing, or of the wrong kind).
    unplaced: u64,
}

/// A column's live window.
#[derive(Debug, Clone)]
pub struct Live {
    subs: Vec<Sub>,
    bins: usize,
    ks_rows: usize,
    seed: u64,
}

/// A window's counts for one column, summed over its sub-windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub counts: Vec<u64>,
    /// Up to `ks_rows` values drawn over the sub-windows by the rows each saw.
    pub sample: Vec<f64>,
    pub unplaced: u64,
}

impl Window {
    pub fn rows(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Live {
    pub fn new(reference: &Reference, ks_rows: usize, seed: u64) -> Self {
        Self {
            subs: Vec::with_capacity(SUB_WINDOWS + 1),
            bins: reference.bins(),
            ks_rows,
            seed,
        }
    }

    fn sub(&mut self, slot: i64) -> &mut Sub {
        if self.subs.last().is_none_or(|s| s.slot != slot) {
            let seed = self.seed ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.subs.push(Sub {
                slot,
                counts: vec![0; self.bins],
                reservoir: Reservoir::new(self.ks_rows, seed),
                unplaced: 0,
            });
        }
        self.subs.last_mut().expect("just pushed")
    }

    /// Adds a value seen in sub-window `slot` (slots only move forward).
    pub fn add(&mut self, reference: &Reference, slot: i64, cell: &Cell) {
        let placed = reference.place(cell);
        let s = self.sub(slot);
        match placed {
            Some((bin, number)) => {
                s.counts[bin] += 1;
                if let Some(x) = number {
                    s.reservoir.offer(x);
                }
            }
            None => s.unplaced += 1,
        }
    }

    /// The window of the [`SUB_WINDOWS`] slots ending with `last` (inclusive); drops the
    /// sub-windows older than it.
    pub fn window(&mut self, last: i64) -> Window {
        let first = last - SUB_WINDOWS as i64 + 1;
        self.subs.retain(|s| s.slot >= first);
        let mut counts = vec![0; self.bins];
        let mut unplaced = 0;
        let within: Vec<&Sub> = self.subs.iter().filter(|s| s.slot <= last).collect();
        for s in &within {
            counts.iter_mut().zip(&s.counts).for_each(|(a, b)| *a += b);
            unplaced += s.unplaced;
        }
        let seen: u64 = within.iter().map(|s| s.reservoir.seen()).sum();
        let target = self
            .ks_rows
            .min(usize::try_from(seen).unwrap_or(usize::MAX));
        let seen_each: Vec<u64> = within.iter().map(|s| s.reservoir.seen()).collect();
        let mut sample = Vec::with_capacity(target);
        for (s, take) in within.iter().zip(shares(&seen_each, target)) {
            // A reservoir is in random order past its first fill, and holds every value
            // before it: its first `take` values are a uniform draw.
            sample.extend(s.reservoir.values().iter().take(take));
        }
        Window {
            counts,
            sample,
            unplaced,
        }
    }
}

/// `target` split over parts in proportion to `weights`, by largest remainder, so the
/// shares add up to `target` exactly (when the weights add up to at least that).
fn shares(weights: &[u64], target: usize) -> Vec<usize> {
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights
        .iter()
        .map(|&w| target as f64 * w as f64 / total as f64)
        .collect();
    let mut out: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut left = target.saturating_sub(out.iter().sum());
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nums(xs: &[f64]) -> Vec<Cell> {
        xs.iter().map(|&x| Cell::Number(x)).collect()
    }

    #[test]
    fn a_reservoir_keeps_at_most_its_cap_and_counts_everything() {
        let mut r = Reservoir::new(10, 1);
        (0..1000).for_each(|i| r.offer(f64::from(i)));
        assert_eq!((r.values().len(), r.seen()), (10, 1000));
        // Uniform: over many reservoirs, the mean of what is kept is near the mean offered.
        let mean: f64 = (0..400)
            .map(|seed| {
                let mut r = Reservoir::new(10, seed);
                (0..1000).for_each(|i| r.offer(f64::from(i)));
                r.values().iter().sum::<f64>() / 10.0
            })
            .sum::<f64>()
            / 400.0;
        assert!((mean - 499.5).abs() < 15.0, "{mean}");
    }

    #[test]
    fn categories_unseen_in_the_reference_pool_into_other() {
        let cells = vec![
            Cell::Category("a".into()),
            Cell::Category("b".into()),
            Cell::Category("a".into()),
            Cell::Missing,
        ];
        let r = Reference::build(&cells, false, 16, 1).unwrap();
        assert_eq!(r.counts, vec![2, 1, 0]);
        assert_eq!(r.place(&Cell::Category("b".into())), Some((1, None)));
        assert_eq!(r.place(&Cell::Category("zz".into())), Some((2, None)));
        assert_eq!(r.place(&Cell::Missing), None);
    }

    #[test]
    fn numbers_of_a_categorical_column_are_codes() {
        let r = Reference::build(&nums(&[1.0, 2.0, 2.0]), true, 16, 1).unwrap();
        assert_eq!(
            r.binning,
            Binning::Categorical(vec!["1".into(), "2".into()])
        );
        assert_eq!(r.place(&Cell::Number(2.0)), Some((1, None)));
    }

    #[test]
    fn a_window_sums_its_last_sub_windows_and_forgets_older_ones() {
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let r = Reference::build(&nums(&values), false, 50, 1).unwrap();
        assert_eq!(r.bins(), 10);
        assert_eq!(r.sample.len(), 50);
        let mut live = Live::new(&r, 8, 2);
        for slot in 0..10 {
            for _ in 0..5 {
                live.add(&r, slot, &Cell::Number(f64::from(slot as i32)));
            }
        }
        live.add(&r, 9, &Cell::Category("x".into()));
        let w = live.window(9);
        // Slots 4..=9: 30 values, all in the first bin (edges from 9.9 up).
        assert_eq!(w.rows(), 30);
        assert_eq!(w.counts[0], 30);
        assert_eq!(w.unplaced, 1);
        assert_eq!(w.sample.len(), 8, "{:?}", w.sample);
        assert!(w.sample.iter().all(|&x| (4.0..=9.0).contains(&x)));
        assert_eq!(live.subs.len(), 6);
    }
}
