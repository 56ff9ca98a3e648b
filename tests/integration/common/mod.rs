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

/// Writes a 10-day event log of experiment `iris-model` (rf control, lr treatment) to
/// `dir`: 3 000 users, one an interval, ramped from rf 90% · lr 10% to 50% · 50% on day 3
/// (two config versions in `config-versions.jsonl`); rf converts 10% of its users, lr 13%,
/// an hour after exposure. Drawn from the user ids, so every call writes the same log.
pub fn ramped_log(dir: &std::path::Path) {
    use cohort_events::clock::from_nanos;
    let start = 1_793_491_200_000_000_000i64; // 2026-11-01T00:00:00Z
    let day = 86_400_000_000_000i64;
    let ramp = start + 3 * day;
    let versions = format!(
        "{{\"ts\":\"{}\",\"config_version\":\"v1\",\"shares\":{{\"iris-model\":{{\"rf\":0.9,\"lr\":0.1}}}}}}\n{{\"ts\":\"{}\",\"config_version\":\"v2\",\"shares\":{{\"iris-model\":{{\"rf\":0.5,\"lr\":0.5}}}}}}\n",
        from_nanos(start),
        from_nanos(ramp)
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config-versions.jsonl"), versions).unwrap();
    let draw = |what: &str, u: u32| {
        xxhash_rust::xxh3::xxh3_64(format!("{what}:{u}").as_bytes()) as f64 / 2f64.powi(64)
    };
    let users = 3000u32;
    let mut log = String::new();
    for u in 0..users {
        let ts = start + i64::from(u) * (10 * day / i64::from(users));
        let (version, lr_share) = if ts < ramp { ("v1", 0.1) } else { ("v2", 0.5) };
        let variant = if draw("variant", u) < lr_share {
            "lr"
        } else {
            "rf"
        };
        let _ = writeln!(
            log,
            "{{\"type\":\"exposure\",\"v\":1,\"ts\":\"{}\",\"experiment\":\"iris-model\",\"unit\":\"user-{u}\",\"variant\":\"{variant}\",\"request_id\":\"r{u}\",\"config_version\":\"{version}\",\"route\":\"iris\",\"status\":200,\"latency_ms\":5.0,\"phase\":\"iris-2026-11\"}}",
            from_nanos(ts)
        );
        let p = if variant == "lr" { 0.13 } else { 0.10 };
        if draw("converts", u) < p {
            let _ = writeln!(
                log,
                "{{\"type\":\"conversion\",\"v\":1,\"ts\":\"{}\",\"experiment\":\"iris-model\",\"unit\":\"user-{u}\",\"variant\":\"{variant}\"}}",
                from_nanos(ts + day / 24)
            );
        }
    }
    std::fs::write(dir.join("events-20261101T000000Z-000001.jsonl"), log).unwrap();
}
