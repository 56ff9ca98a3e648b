//! `cohort demo [--users N] [--duration S]`: prints what [`crate::demo::run`] saw.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use super::exit;
use crate::demo::{self, quantile, Outcome};
use cohort_config::compare::{compare, pct};
use cohort_config::{self as config, Routes};

pub fn run(users: u32, duration_s: f64) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cohort demo: cannot start the runtime: {e}");
            return exit::INVALID;
        }
    };
    let max = Duration::from_secs_f64(duration_s.max(0.1));
    eprintln!(
        "cohort demo: 2 model backends, the proxy on the built-in routes.yaml, {users} simulated users (at most {duration_s} s)"
    );
    match runtime.block_on(demo::run(users, max, std::io::stderr().is_terminal())) {
        Ok(outcome) => {
            print!("{}", report(&outcome));
            if outcome.unsticky_users > 0 {
                exit::INVALID
            } else {
                exit::OK
            }
        }
        Err(e) => {
            eprintln!("cohort demo: {e}");
            exit::INVALID
        }
    }
}

fn report(o: &Outcome) -> String {
    let mut s = String::new();
    let exp = &o.routes.experiments[0];
    let _ = writeln!(
        s,
        "\n{} requests from {} users in {:.1} s through cohort (config version {})",
        o.requests,
        o.users,
        o.elapsed.as_secs_f64(),
        o.routes.version
    );
    let _ = writeln!(
        s,
        "\nexperiment {} (control {}):",
        exp.name, exp.variants[exp.control].name
    );
    let _ = writeln!(
        s,
        "  {:<8} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "variant", "configured", "observed", "users", "requests", "p50 ms", "p99 ms", "errors"
    );
    for (name, share, st) in &o.per_variant {
        let _ = writeln!(
            s,
            "  {:<8} {:>10} {:>10} {:>8} {:>9} {:>9.2} {:>9.2} {:>7}",
            name,
            pct(*share),
            pct(st.users as f64 / (o.users.max(1)) as f64),
            st.users,
            st.requests,
            quantile(&st.latencies_ms, 0.50),
            quantile(&st.latencies_ms, 0.99),
            st.errors
        );
    }
    let truth: Vec<String> = crate::demo::models()
        .iter()
        .map(|(n, m)| format!("{n} {}", pct(m.conversion)))
        .collect();
    match &o.report {
        Some(r) => {
            let _ = writeln!(
                s,
                "\n`cohort report` on the demo's event log (the simulator's true conversion rates: {}; the demo plans for a {:.0}% relative lift):\n",
                truth.join(", "),
                100.0 * crate::demo::DEMO_MDE
            );
            for line in cohort_report::text(r).lines() {
                let _ = writeln!(s, "  {line}");
            }
            let _ = writeln!(s);
        }
        None => {
            let _ = writeln!(
                s,
                "\n  (the event log could not be read back for the report)"
            );
        }
    }
    let _ = writeln!(
        s,
        "  sticky: {} ({} users seen on more than one variant)",
        if o.unsticky_users == 0 { "yes" } else { "NO" },
        o.unsticky_users
    );
    if let Some(ramp) = ramp_preview(&o.routes) {
        s.push_str(&ramp);
    }
    let _ = writeln!(
        s,
        "\nNext: `cohort serve --config routes.yaml`, then `curl localhost:8080/invocations -H 'x-user-id: alice' -d '{{}}'`;\n`cohort check NEW --against OLD` shows what an edit does to users."
    );
    s
}

/// What ramping the first treatment up by 10 points of traffic would move.
fn ramp_preview(routes: &Routes) -> Option<String> {
    let exp = routes.experiments.first()?;
    let t = (0..exp.variants.len()).find(|&i| i != exp.control)?;
    let (control, treatment) = (&exp.variants[exp.control], &exp.variants[t]);
    let step = exp.variants.iter().map(|v| v.weight).sum::<f64>() * 0.1;
    let mut file = routes.file.clone();
    let variants = &mut file.experiments[0].variants;
    variants[exp.control].weight -= step;
    variants[t].weight += step;
    let source = config::Source {
        file: "ramped".into(),
        hash: String::new(),
    };
    let new = config::compile_file(file, source).ok()?;
    let change = compare(routes, &new).experiments.get(&exp.name)?.clone();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nramp preview, {} → {} by 10 points (what `cohort check --against` reports):",
        control.name, treatment.name
    );
    for m in &change.moves {
        let _ = writeln!(s, "  moves {} → {} {}", m.from, m.to, pct(m.share));
    }
    let _ = writeln!(
        s,
        "  reshuffle: {} (only the control's users move, and only as many as the ramp needs)",
        change.reshuffle
    );
    Some(s)
}
