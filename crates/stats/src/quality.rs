//! A binary model's quality from its scores and the labels that arrived later: log loss,
//! ROC AUC, calibration by uniform bins, and accuracy and F1 at a threshold — scikit-learn's
//! `log_loss`, `roc_auc_score`, `calibration_curve(strategy="uniform")`, `accuracy_score`
//! and `f1_score` on the same pairs.
//!
//! Scores are probabilities of the positive label, in [0, 1]; a pair whose score is not is
//! left out by the caller.

/// −mean(y·ln p + (1 − y)·ln(1 − p)), each probability clipped to [ε, 1 − ε] (ε the f64
/// machine epsilon, as scikit-learn clips). None without pairs.
pub fn log_loss(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.is_empty() || scores.len() != labels.len() {
        return None;
    }
    let eps = f64::EPSILON;
    let total: f64 = scores
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            // The probability of the label that happened, clipped.
            let q = if y { p } else { 1.0 - p };
            -q.clamp(eps, 1.0 - eps).ln()
        })
        .sum();
    Some(total / scores.len() as f64)
}

/// The area under the ROC curve: the chance that a random positive scores above a random
/// negative, ties counting half (the Mann–Whitney U over n₁·n₀). None unless both labels
/// occur.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let positives = labels.iter().filter(|&&y| y).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (from 1) over runs of equal scores; sum them for the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let (n1, n0) = (positives as f64, negatives as f64);
    Some((rank_sum - n1 * (n1 + 1.0) / 2.0) / (n1 * n0))
}

/// One bin of a calibration curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CalibrationBin {
    /// The mean score in the bin.
    pub predicted: f64,
    /// The share of positives in the bin.
    pub observed: f64,
    pub n: u64,
}

/// Scores cut into `bins` equal-width bins of [0, 1], closed on the right (the first holds
/// 0), and per non-empty bin the mean score against the observed rate.
pub fn calibration(scores: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    // numpy's linspace(0, 1, bins + 1)[1:-1]: i·(1/bins).
    let step = 1.0 / bins as f64;
    let edges: Vec<f64> = (1..bins).map(|i| i as f64 * step).collect();
    let mut sums = vec![(0.0f64, 0u64, 0u64); bins];
    for (&p, &y) in scores.iter().zip(labels) {
        let b = edges.partition_point(|&e| e < p);
        sums[b].0 += p;
        sums[b].1 += u64::from(y);
        sums[b].2 += 1;
    }
    sums.into_iter()
        .filter(|s| s.2 > 0)
        .map(|(sum, pos, n)| CalibrationBin {
            predicted: sum / n as f64,
            observed: pos as f64 / n as f64,
            n,
        })
        .collect()
}

/// Counts of a threshold's decisions (positive when the score is at least the threshold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fn_: u64,
}

impl Confusion {
    pub fn at(scores: &[f64], labels: &[bool], threshold: f64) -> Self {
        let mut c = Self::default();
        for (&p, &y) in scores.iter().zip(labels) {
            match (p >= threshold, y) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// None without pairs.
    pub fn accuracy(&self) -> Option<f64> {
        let n = self.tp + self.fp + self.tn + self.fn_;
        (n > 0).then(|| (self.tp + self.tn) as f64 / n as f64)
    }

    /// 2·TP / (2·TP + FP + FN); 0 when there is no positive at all, predicted or real (as
    /// scikit-learn's `zero_division` default yields).
    pub fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            0.0
        } else {
            (2 * self.tp) as f64 / d as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed_rankings() {
        let s = [0.1, 0.4, 0.6, 0.9];
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&s, &y), Some(1.0));
        let rev = [true, true, false, false];
        assert_eq!(roc_auc(&s, &rev), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&s, &[true; 4]), None);
    }

    #[test]
    fn certain_mistakes_are_clipped_not_infinite() {
        let l = log_loss(&[0.0, 1.0], &[true, false]).unwrap();
        assert!(l.is_finite() && l > 30.0, "{l}");
        assert_eq!(log_loss(&[], &[]), None);
    }

    #[test]
    fn a_threshold_counts_at_or_above_as_positive() {
        let c = Confusion::at(&[0.5, 0.49, 0.7, 0.1], &[true, true, false, false], 0.5);
        assert_eq!(
            c,
            Confusion {
                tp: 1,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
        assert_eq!(c.accuracy(), Some(0.5));
        assert_eq!(c.f1(), 0.5);
        assert_eq!(Confusion::default().f1(), 0.0);
    }
}
