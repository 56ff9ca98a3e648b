//! Helpers shared by the integration tests: building configs as text, and brute-force
//! tallies over the whole bucket space to check the layout and `compare` against.
#![allow(dead_code)]

pub mod net;
pub mod process;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cohort_assign::BUCKETS;
use cohort_config::{self as config, Experiment, Routes};

/// A variant for [`experiment_yaml`]: name, weight, optional lane (start, max_weight, from).
#[derive(Debug, Clone)]
pub struct V {
    pub name: String,
    pub weight: f64,
    pub lane: Option<(f64, f64, &'static str)>,
}

pub fn v(name: &str, weight: f64) -> V {
    V {
        name: name.to_owned(),
        weight,
        lane: None,
    }
}

/// A one-experiment config named `e` with a route to it.
pub fn experiment_yaml(control: &str, salt: &str, allow_reshuffle: bool, variants: &[V]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    experiment: e"
    );
    let _ = writeln!(
        s,
        "experiments:\n  - name: e\n    salt: {salt:?}\n    control: {control}"
    );
    let _ = writeln!(s, "    allow_reshuffle: {allow_reshuffle}\n    variants:");
    for (i, var) in variants.iter().enumerate() {
        let _ = write!(
            s,
            "      - {{ name: {}, weight: {:?}, upstream: \"http://127.0.0.1:{}\"",
            var.name,
            var.weight,
            5000 + i
        );
        if let Some((start, max, from)) = var.lane {
            let _ = write!(
                s,
                ", lane: {{ start: {start:?}, max_weight: {max:?}, from: {from} }}"
            );
        }
        let _ = writeln!(s, " }}");
    }
    s
}

pub fn compile(text: &str) -> Routes {
    match config::parse("test.yaml", text) {
        Ok(r) => r,
        Err(e) => panic!("config does not compile:\n{e}\n---\n{text}"),
    }
}

/// For every bucket, old variant name → new variant name, counted.
pub fn tally(old: &Experiment, new: &Experiment) -> BTreeMap<(String, String), u32> {
    let mut out = BTreeMap::new();
    for b in 0..BUCKETS {
        let from = &old.variants[old.layout.variant_at(b)].name;
        let to = &new.variants[new.layout.variant_at(b)].name;
        *out.entry((from.clone(), to.clone())).or_insert(0) += 1;
    }
    out
}

/// Buckets per variant name, counted bucket by bucket.
pub fn counts(e: &Experiment) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = e.variants.iter().map(|v| (v.name.clone(), 0)).collect();
    for b in 0..BUCKETS {
        *out.entry(e.variants[e.layout.variant_at(b)].name.clone())
            .or_insert(0) += 1;
    }
    out
}
