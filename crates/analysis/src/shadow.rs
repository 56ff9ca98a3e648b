//! The report's `shadow` section, from the `"type": "shadow"` lines of the event log: per
//! shadow and per variant that answered the client, how often the shadow's answer agreed
//! (with a Wilson interval), element by element, how far its numbers were, how fast it
//! answered beside the served answer, and how often it failed.
//!
//! A line shipped twice (an insert retried) is counted once: lines are keyed by their
//! `event_id` (the request id and the shadow).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// One shadow line, the fields the section reads.
#[derive(Debug, Clone, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    event_id: Option<String>,
    experiment: String,
    variant: String,
    shadow: String,
    #[serde(default)]
    phase: Option<String>,
    result: String,
    #[serde(default)]
    elements: Option<u64>,
    #[serde(default)]
    elements_agreed: Option<u64>,
    #[serde(default)]
    max_abs_diff: Option<f64>,
    #[serde(default)]
    primary_status: Option<u16>,
    #[serde(default)]
    shadow_status: Option<u16>,
    #[serde(default)]
    primary_ms: Option<f64>,
    #[serde(default)]
    shadow_ms: Option<f64>,
}

/// What the lines of one (phase, shadow, variant) add up to.
#[derive(Debug, Default, Clone)]
struct Group {
    sent: u64,
    agreed: u64,
    disagreed: u64,
    errors: u64,
    timeouts: u64,
    elements: u64,
    elements_agreed: u64,
    primary_5xx: u64,
    shadow_5xx: u64,
    diffs: Vec<f64>,
    primary_ms: Vec<f64>,
    shadow_ms: Vec<f64>,
}

impl Group {
    fn add(&mut self, l: &Line) {
        self.sent += 1;
        match l.result.as_str() {
            "agree" => self.agreed += 1,
            "disagree" => self.disagreed += 1,
            "timeout" => self.timeouts += 1,
            _ => self.errors += 1,
        }
        self.elements += l.elements.unwrap_or(0);
        self.elements_agreed += l.elements_agreed.unwrap_or(0);
        self.primary_5xx += u64::from(l.primary_status.is_some_and(|s| s >= 500));
        self.shadow_5xx += u64::from(l.shadow_status.is_some_and(|s| s >= 500));
        self.diffs.extend(l.max_abs_diff.filter(|d| d.is_finite()));
        self.primary_ms.extend(l.primary_ms);
        self.shadow_ms.extend(l.shadow_ms);
    }

    fn merge(&mut self, mut o: Group) {
        self.sent += o.sent;
        self.agreed += o.agreed;
        self.disagreed += o.disagreed;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.elements += o.elements;
        self.elements_agreed += o.elements_agreed;
        self.primary_5xx += o.primary_5xx;
        self.shadow_5xx += o.shadow_5xx;
        self.diffs.append(&mut o.diffs);
        self.primary_ms.append(&mut o.primary_ms);
        self.shadow_ms.append(&mut o.shadow_ms);
    }
}

/// (experiment, phase, shadow, variant).
type Key = (String, Option<String>, String, String);

/// Every shadow line read.
#[derive(Debug, Default, Clone)]
pub struct ShadowLines {
    groups: BTreeMap<Key, Group>,
    seen: HashSet<String>,
}

impl ShadowLines {
    /// Adds a shadow line (JSON); false when it is not one.
    pub fn add(&mut self, line: &[u8]) -> bool {
        let Ok(l) = serde_json::from_slice::<Line>(line) else {
            return false;
        };
        if l.kind != "shadow" {
            return false;
        }
        if let Some(id) = &l.event_id {
            if !self.seen.insert(id.clone()) {
                return true;
            }
        }
        self.groups
            .entry((
                l.experiment.clone(),
                l.phase.clone(),
                l.shadow.clone(),
                l.variant.clone(),
            ))
            .or_default()
            .add(&l);
        true
    }

    /// Adds what `other` read (files read apart, then put together).
    pub fn merge(&mut self, other: ShadowLines) {
        for (k, g) in other.groups {
            match self.groups.get_mut(&k) {
                Some(mine) => mine.merge(g),
                None => {
                    self.groups.insert(k, g);
                }
            }
        }
        self.seen.extend(other.seen);
    }

    /// The section for `experiment` in `phase` (lines without a phase count in every
    /// phase); None when it has no shadow line.
    pub fn report(&self, experiment: &str, phase: Option<&str>) -> Option<ShadowReport> {
        let mut by: BTreeMap<(String, String), Group> = BTreeMap::new();
        for ((e, p, shadow, variant), g) in &self.groups {
            if e != experiment || (phase.is_some() && p.is_some() && p.as_deref() != phase) {
                continue;
            }
            by.entry((shadow.clone(), variant.clone()))
                .or_default()
                .merge(g.clone());
        }
        if by.is_empty() {
            return None;
        }
        let shadows = by
            .into_iter()
            .map(|((shadow, variant), g)| summary(shadow, variant, g))
            .collect();
        Some(ShadowReport { shadows })
    }
}

/// The `shadow` section of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// One row per shadow and variant that answered the client.
    pub shadows: Vec<ShadowSummary>,
}

/// One shadow against the answers one variant served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowSummary {
    pub shadow: String,
    /// The variant whose answers (the served ones) the shadow's are compared with.
    pub variant: String,
    /// Copies sent to the shadow (compared, failed or timed out).
    pub sent: u64,
    /// Copies whose answers were compared.
    pub compared: u64,
    pub agreed: u64,
    /// agreed / compared, with its 95% Wilson interval; None before any comparison.
    pub agreement: Option<Share>,
    /// Prediction elements compared, and those that agreed.
    pub elements: u64,
    pub elements_agreed: u64,
    pub element_agreement: Option<f64>,
    /// Quantiles of each compared answer's largest numeric difference.
    pub abs_diff: Option<Quantiles>,
    /// Time to the response head on compared copies, the served answer's and the shadow's.
    pub primary_latency_ms: Option<Latency>,
    pub shadow_latency_ms: Option<Latency>,
    /// The shadow could not be reached, or broke off.
    pub errors: u64,
    pub timeouts: u64,
    /// (errors + timeouts) / sent.
    pub error_rate: Option<f64>,
    /// Compared answers with a 5xx status, each side's.
    pub primary_5xx: u64,
    pub shadow_5xx: u64,
}

/// A share with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// Quantiles (numpy's default, linear) of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub n: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Latency quantiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// `v` sorted, None when empty.
fn sorted(v: &mut [f64]) -> Option<&[f64]> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then_some(v)
}

fn summary(shadow: String, variant: String, mut g: Group) -> ShadowSummary {
    let compared = g.agreed + g.disagreed;
    let agreement = cohort_stats::proportions::wilson(g.agreed, compared, 0.05).map(|w| Share {
        rate: g.agreed as f64 / compared as f64,
        low: w.low,
        high: w.high,
    });
    let q = cohort_stats::psi::quantile;
    let abs_diff = sorted(&mut g.diffs).map(|d| Quantiles {
        n: d.len() as u64,
        p50: q(d, 0.5),
        p90: q(d, 0.9),
        p99: q(d, 0.99),
        max: d[d.len() - 1],
    });
    let latency = |v: &mut [f64]| {
        sorted(v).map(|l| Latency {
            p50: q(l, 0.5),
            p99: q(l, 0.99),
        })
    };
    ShadowSummary {
        agreement,
        element_agreement: (g.elements > 0).then(|| g.elements_agreed as f64 / g.elements as f64),
        abs_diff,
        primary_latency_ms: latency(&mut g.primary_ms),
        shadow_latency_ms: latency(&mut g.shadow_ms),
        error_rate: (g.sent > 0).then(|| (g.errors + g.timeouts) as f64 / g.sent as f64),
        shadow,
        variant,
        sent: g.sent,
        compared,
        agreed: g.agreed,
        elements: g.elements,
        elements_agreed: g.elements_agreed,
        errors: g.errors,
        timeouts: g.timeouts,
        primary_5xx: g.primary_5xx,
        shadow_5xx: g.shadow_5xx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, variant: &str, result: &str, diff: Option<f64>, ms: f64) -> Vec<u8> {
        serde_json::json!({
            "type": "shadow", "event_id": id, "experiment": "e", "variant": variant,
            "shadow": "cand", "phase": "e", "result": result, "elements": 2,
            "elements_agreed": if result == "agree" { 2 } else { 1 },
            "max_abs_diff": diff, "primary_status": 200, "shadow_status": 200,
            "primary_ms": ms, "shadow_ms": 2.0 * ms,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn lines_add_up_per_shadow_and_variant_and_duplicates_count_once() {
        let mut s = ShadowLines::default();
        assert!(s.add(&line("r1/cand", "a", "agree", Some(0.0), 1.0)));
        assert!(s.add(&line("r1/cand", "a", "agree", Some(0.0), 1.0)));
        assert!(s.add(&line("r2/cand", "a", "disagree", Some(0.5), 3.0)));
        assert!(s.add(&line("r3/cand", "b", "agree", Some(0.0), 1.0)));
        let timeout = br#"{"type":"shadow","event_id":"r4/cand","experiment":"e","variant":"a","shadow":"cand","phase":"e","result":"timeout"}"#;
        assert!(s.add(timeout));
        assert!(!s.add(br#"{"type":"monitor","experiment":"e"}"#));
        let r = s.report("e", Some("e")).unwrap();
        assert_eq!(r.shadows.len(), 2);
        let a = &r.shadows[0];
        assert_eq!(
            (a.variant.as_str(), a.sent, a.compared, a.agreed),
            ("a", 3, 2, 1)
        );
        assert_eq!((a.elements, a.elements_agreed, a.timeouts), (4, 3, 1));
        assert_eq!(a.agreement.unwrap().rate, 0.5);
        assert_eq!(a.abs_diff.unwrap().max, 0.5);
        assert_eq!(a.abs_diff.unwrap().p50, 0.25);
        assert_eq!(a.shadow_latency_ms.unwrap().p50, 4.0);
        assert_eq!(a.error_rate, Some(1.0 / 3.0));
        assert!(s.report("e", Some("other-phase")).is_none());
        assert!(s.report("f", None).is_none());
    }
}
