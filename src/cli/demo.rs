//! `cohort demo`: cohort at work on its built-in copy of the repo's routes.yaml.
//!
//! This first version shows the routing table and sticky assignment: it compiles the
//! embedded config, assigns simulated users, and shows the observed split, that every
//! user keeps their variant, and what a canary ramp would move. The forwarding proxy
//! (built-in model backends, real HTTP traffic, latency) extends it when it lands.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::exit;
use crate::assign::{assign, BUCKETS};
use crate::compare::{compare, pct};
use crate::config;

/// The repo's routes.yaml, compiled into the binary so the demo needs nothing else.
pub const DEFAULT_ROUTES: &str = include_str!("../../routes.yaml");

pub fn run(users: u32) -> u8 {
    match demo(users) {
        Ok(report) => {
            print!("{report}");
            exit::OK
        }
        Err(err) => {
            eprintln!("{err}");
            exit::INVALID
        }
    }
}

fn demo(users: u32) -> Result<String, config::ConfigError> {
    let routes = config::parse("routes.yaml (built in)", DEFAULT_ROUTES)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cohort demo: {} simulated users on the built-in routes.yaml (version {})",
        users, routes.version
    );
    for exp in &routes.experiments {
        let mut counts = vec![0u64; exp.variants.len()];
        let mut first_seen = HashMap::with_capacity(users as usize);
        for u in 0..users {
            let unit = format!("user-{u}");
            let a = assign(exp, &unit);
            counts[a.variant] += 1;
            first_seen.insert(unit, a.variant);
        }
        // Every user comes back three more times: stickiness means the same variant.
        let sticky = (0..3).all(|_| {
            first_seen
                .iter()
                .all(|(unit, &v)| assign(exp, unit).variant == v)
        });
        let _ = writeln!(s, "\nexperiment {}:", exp.name);
        let _ = writeln!(
            s,
            "  {:<10} {:>10} {:>10} {:>10}",
            "variant", "configured", "observed", "users"
        );
        for (i, v) in exp.variants.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {:<10} {:>10} {:>10} {:>10}",
                v.name,
                pct(f64::from(v.buckets) / f64::from(BUCKETS)),
                pct(counts[i] as f64 / f64::from(users.max(1))),
                counts[i]
            );
        }
        let _ = writeln!(
            s,
            "  sticky: {} (every user got the same variant on 4 requests)",
            if sticky { "yes" } else { "NO" }
        );
    }
    // A canary ramp: the first treatment of the first experiment grows by 10 points.
    if let Some(exp) = routes.experiments.first() {
        if let Some(t) = (0..exp.variants.len()).find(|&i| i != exp.control) {
            let control = &exp.variants[exp.control];
            let treatment = &exp.variants[t];
            let step = (control.weight + treatment.weight) * 0.1;
            let mut file = routes.file.clone();
            let variants = &mut file.experiments[0].variants;
            variants[exp.control].weight -= step;
            variants[t].weight += step;
            let source = config::Source {
                file: "ramped".into(),
                hash: String::new(),
            };
            if let Ok(new) = config::compile_file(file, source) {
                if let Some(change) = compare(&routes, &new).experiments.get(&exp.name) {
                    let _ = writeln!(
                        s,
                        "\nramp {} → {} by 10 points of traffic:",
                        control.name, treatment.name
                    );
                    for m in &change.moves {
                        let _ = writeln!(s, "  moves {} → {} {}", m.from, m.to, pct(m.share));
                    }
                    let _ = writeln!(
                        s,
                        "  reshuffle: {} (only control's units move, and only as many as the ramp needs)",
                        change.reshuffle
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "\nNext: `cohort check routes.yaml` prints the plan; `cohort check NEW --against OLD` gates a change."
    );
    Ok(s)
}
