//! `cohort check FILE [--against OLD] [--format text|json]`.
//!
//! Without `--against`: validate FILE and print its compiled plan (routes in match order,
//! experiments, each variant's buckets and share). With it: also print what replacing OLD
//! by FILE does to units ([`cohort_config::compare`]) and exit 3 on an unacknowledged reshuffle, so
//! that the command can gate a ConfigMap change in CI.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::{exit, Format};
use cohort_assign::BUCKETS;
use cohort_config::compare::{compare, pct, unacknowledged_removals, ChangeKind, Comparison};
use cohort_config::schema::yaml_name;
use cohort_config::{self as config, ConfigError, Routes};

pub fn run(file: &Path, against: Option<&Path>, state: Option<&Path>, format: Format) -> u8 {
    let new = match config::load(file) {
        Ok(routes) => routes,
        Err(err) => return invalid(&err, format),
    };
    let old = match against.map(config::load).transpose() {
        Ok(old) => old,
        Err(err) => return invalid(&err, format),
    };
    // With a state file, the tables compared are the ones in force: the runtime weights and
    // each rollout's step over each file (what a reload of FILE would do to a running
    // replica). A rollout whose block changes starts again from its first step.
    let in_force = match (&old, state) {
        (Some(old), Some(s)) => match in_force(old, &new, s) {
            Ok(pair) => Some(pair),
            Err(e) => {
                eprintln!("{e}");
                return exit::INVALID;
            }
        },
        _ => None,
    };
    let comparison = match (&in_force, &old) {
        (Some((o, n)), _) => Some(compare(o, n)),
        (None, Some(old)) => Some(compare(old, &new)),
        _ => None,
    };
    let rollout_notes: Vec<String> = match (&old, state) {
        (Some(old), None) => new
            .experiments
            .iter()
            .chain(&old.experiments)
            .filter(|e| e.rollout.is_some())
            .map(|e| e.name.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|name| format!("experiment {name} has a rollout: the shares in force are its step's; pass --state with the replica's admin.state_file to compare what is in force"))
            .collect(),
        _ => Vec::new(),
    };
    let removals: Vec<String> = old
        .as_ref()
        .map(|old| unacknowledged_removals(old, &new))
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    // What a replica starting on FILE with these runtime weights would have to change.
    let state_notices = state
        .map(|s| cohort_control::overrides::at_startup(s, &new, Vec::new()).notices)
        .unwrap_or_default();
    let code = match &comparison {
        _ if !state_notices.is_empty() => exit::RESHUFFLE,
        Some(c) if !c.unacknowledged().is_empty() || !removals.is_empty() => exit::RESHUFFLE,
        _ => exit::OK,
    };
    match format {
        Format::Json => {
            let out = match (&comparison, &old) {
                // The documented shape: {"experiments": {E: {"moves", "reshuffle", "share_changes", …}}}
                (Some(c), Some(old)) => json!({
                    "file": new.source.file,
                    "version": new.version,
                    "against": old.source.file,
                    "against_version": old.version,
                    "experiments": c.experiments,
                    "removals": removals,
                    "state": state_notices,
                    "in_force": in_force.is_some(),
                    "notes": rollout_notes,
                    "exit_code": code,
                }),
                _ => plan_json(&new),
            };
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Text => {
            print!("{}", plan_text(&new));
            if let (Some(c), Some(old)) = (&comparison, &old) {
                print!("{}", comparison_text(c, &old.source.file));
                if in_force.is_some() {
                    println!("  (compared as in force: runtime weights and rollout steps of the state file over each file)");
                }
            }
            for n in &rollout_notes {
                println!("note: {n}");
            }
            for n in &state_notices {
                println!("on restart with the runtime weights: {n}");
            }
            for r in &removals {
                println!(
                    "removes {r} without naming it in `allow_remove`: a running replica refuses this while it serves traffic"
                );
            }
        }
    }
    code
}

/// `old` and `new` as a replica with `state` (its admin.state_file) serves them: runtime
/// weights and rollout steps laid over each.
fn in_force(old: &Routes, new: &Routes, state: &Path) -> Result<(Routes, Routes), String> {
    let overrides = cohort_control::overrides::Overrides::load(state)?;
    let layered = |r: &Routes| {
        cohort_control::rollout::layered(r, &overrides)
            .map(|l| l.routes)
            .map_err(|e| {
                format!(
                    "{}: with the state of {}: {e}",
                    r.source.file,
                    state.display()
                )
            })
    };
    Ok((layered(old)?, layered(new)?))
}

/// The problem of a file without routes: every request would get 404, so `serve` does not
/// start on it (an emptied or truncated file, most likely). `check` warns, and with
/// `--against` a file that removes every route exits 3.
pub fn no_routes(routes: &Routes) -> cohort_config::Problem {
    cohort_config::Problem {
        file: routes.source.file.clone(),
        position: None,
        path: "routes".into(),
        reason: "no routes: every request would get 404, so `cohort serve` refuses this file (is it empty or truncated?)".into(),
    }
}

fn invalid(err: &ConfigError, format: Format) -> u8 {
    match format {
        Format::Json => {
            let out = json!({"valid": false, "errors": err.problems});
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Text => eprintln!("{err}"),
    }
    exit::INVALID
}

/// Bucket runs of variant `v` as `[start, end)` pairs.
fn ranges(e: &config::Experiment, v: usize) -> Vec<[u32; 2]> {
    e.layout
        .segments()
        .iter()
        .filter(|s| s.variant == v)
        .map(|s| [s.start, s.end])
        .collect()
}

/// The compiled plan as JSON (`cohort check --format json`).
pub fn plan_json(r: &Routes) -> Value {
    let routes: Vec<Value> = r
        .routes
        .iter()
        .map(|rt| {
            json!({
                "name": rt.name,
                "path_prefix": rt.path_prefix,
                "host": rt.host,
                "headers": rt.headers.iter().map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or("")))).collect::<serde_json::Map<_, _>>(),
                "experiment": r.experiments[rt.experiment].name,
                "strip_prefix": rt.strip_prefix,
                "connect_timeout_ms": rt.connect_timeout.as_millis() as u64,
                "timeout_ms": rt.timeout.as_millis() as u64,
                "idle_timeout_ms": rt.idle_timeout.as_millis() as u64,
            })
        })
        .collect();
    let experiments: Vec<Value> = r
        .experiments
        .iter()
        .map(|e| {
            let variants: Vec<Value> = e
                .variants
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    json!({
                        "name": v.name,
                        "control": i == e.control,
                        "weight": v.weight,
                        "share": f64::from(v.buckets) / f64::from(BUCKETS),
                        "buckets": v.buckets,
                        "ranges": ranges(e, i),
                        "lane": v.lane.map(|l| json!({"start": l.start, "end": l.end(), "from": l.from})),
                        "upstream": v.upstream.url,
                        "protocol": v.protocol,
                    })
                })
                .collect();
            json!({
                "name": e.name,
                "unit": e.unit,
                "unit_from": e.unit_from.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "on_missing_unit": e.on_missing_unit,
                "salt": e.salt,
                "control": e.variants[e.control].name,
                "allow_override": e.allow_override,
                "allow_reshuffle": e.allow_reshuffle,
                "lanes": if e.lanes_declared { "declared" } else { "default" },
                "bucket_space": BUCKETS,
                "variants": variants,
                "shadows": e.shadows.iter().map(|sh| json!({
                    "name": sh.name,
                    "sample": sh.config.sample,
                    "max_inflight": sh.config.max_inflight,
                    "upstream": sh.upstream.url,
                    "protocol": sh.protocol,
                })).collect::<Vec<_>>(),
                "rollout": e.rollout.as_ref().map(|ro| json!({
                    "id": ro.id,
                    "treatment": e.variants[ro.treatment].name,
                    "steps": schedule(r, e, ro).iter().map(|st| json!({
                        "step": st.step,
                        "treatment_share": st.treatment,
                        "control_share": st.control,
                        "moves_from_control": st.moves,
                    })).collect::<Vec<_>>(),
                    "step_min_s": ro.config.step_min_s,
                    "step_min_units": ro.config.step_min_units,
                    "on_last_step": ro.config.on_last_step,
                })),
            })
        })
        .collect();
    json!({
        "valid": true,
        "file": r.source.file,
        "version": r.version,
        "source_hash": r.source.hash,
        "routes": routes,
        "experiments": experiments,
        "warnings": r.warnings,
    })
}

/// The compiled plan for people.
pub fn plan_text(r: &Routes) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: valid (version {}, {} route{}, {} experiment{})",
        r.source.file,
        r.version,
        r.routes.len(),
        plural(r.routes.len()),
        r.experiments.len(),
        plural(r.experiments.len())
    );
    if !r.routes.is_empty() {
        let _ = writeln!(s, "\nroutes, in match order:");
        for rt in &r.routes {
            let mut m = rt.path_prefix.clone();
            if let Some(h) = &rt.host {
                m = format!("{h}{m}");
            }
            for (k, v) in &rt.headers {
                let _ = write!(m, " [{k}: {}]", v.to_str().unwrap_or("?"));
            }
            let _ = writeln!(
                s,
                "  {:<16} {:<32} → {}",
                rt.name, m, r.experiments[rt.experiment].name
            );
        }
    }
    for e in &r.experiments {
        let units = if e.unit_from.is_empty() {
            "cohort's request id".to_owned()
        } else {
            e.unit_from
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", then ")
        };
        let _ = writeln!(
            s,
            "\nexperiment {} (unit: {} from {units}; missing unit: {}; salt {:?}; lanes {})",
            e.name,
            yaml_name(&e.unit),
            yaml_name(&e.on_missing_unit),
            e.salt,
            if e.lanes_declared {
                "declared"
            } else {
                "by name (default)"
            }
        )
        .map(|_| ());
        let _ = writeln!(
            s,
            "  {:<14} {:>8} {:>9}  {:<28} upstream",
            "variant", "weight", "share", "buckets (of 100000)"
        );
        for (i, v) in e.variants.iter().enumerate() {
            let runs = ranges(e, i)
                .iter()
                .map(|[a, b]| format!("[{a},{b})"))
                .collect::<Vec<_>>()
                .join(" ");
            let name = if i == e.control {
                format!("{} (control)", v.name)
            } else {
                v.name.clone()
            };
            let _ = writeln!(
                s,
                "  {:<14} {:>8} {:>9}  {:<28} {}",
                name,
                v.weight,
                pct(f64::from(v.buckets) / f64::from(BUCKETS)),
                if runs.is_empty() {
                    "-".to_owned()
                } else {
                    runs
                },
                v.upstream.url
            );
        }
        for sh in &e.shadows {
            let _ = writeln!(
                s,
                "  shadow {:<7} copies {} of units (at most {} in flight), never answers  {}",
                sh.name,
                pct(sh.config.sample),
                sh.config.max_inflight,
                sh.upstream.url
            );
        }
    }
    for e in &r.experiments {
        let Some(ro) = &e.rollout else { continue };
        let (t, c) = (&e.variants[ro.treatment].name, &e.variants[e.control].name);
        let _ = writeln!(
            s,
            "\nrollout {} of {t} in {} (each step at least {} s and {} units per arm; after the last: {}):",
            ro.id,
            e.name,
            ro.config.step_min_s,
            ro.config.step_min_units,
            yaml_name(&ro.config.on_last_step)
        );
        let _ = writeln!(s, "  {:<5} {:>9} {:>9}  moves", "step", t, c);
        for st in schedule(r, e, ro) {
            let _ = writeln!(
                s,
                "  {:<5} {:>9} {:>9}  {c} → {t} {}{}",
                st.step,
                pct(st.treatment),
                pct(st.control),
                pct(st.moves),
                if st.step == 1 {
                    " (from a share of 0)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            s,
            "  a rollback moves every unit of {t} back to {c}; nothing else moves units from {t} to {c}"
        );
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(s, "\nwarnings:");
        for w in &r.warnings {
            let _ = writeln!(s, "  {w}");
        }
    }
    s
}

/// One step of a rollout's schedule: shares of units, as the bucket layout gives them.
struct ScheduleStep {
    step: usize,
    treatment: f64,
    control: f64,
    /// The share of all units this step moves from the control to the treatment.
    moves: f64,
}

/// Each step's shares, from the layout each step's weights compile to (exact to the
/// bucket); a step that does not compile is left out (`check` has refused the file then).
fn schedule(r: &Routes, e: &config::Experiment, ro: &config::Rollout) -> Vec<ScheduleStep> {
    let Some(cfg) = r.file.experiments.iter().find(|x| x.name == e.name) else {
        return Vec::new();
    };
    let share =
        |ex: &config::Experiment, v: usize| f64::from(ex.variants[v].buckets) / f64::from(BUCKETS);
    let mut before = 0.0;
    let mut out = Vec::new();
    for (k, &step) in ro.config.steps.iter().enumerate() {
        let mut file = r.file.clone();
        file.set_weights(
            &e.name,
            &config::rollout_weights(cfg, &ro.config.treatment, step),
        );
        let Ok(compiled) = config::compile_file(file, r.source.clone()) else {
            continue;
        };
        let Some(ex) = compiled.experiment(&e.name) else {
            continue;
        };
        let t = share(ex, ro.treatment);
        out.push(ScheduleStep {
            step: k + 1,
            treatment: t,
            control: share(ex, ex.control),
            moves: t - before,
        });
        before = t;
    }
    out
}

/// What a change does to units, for people.
pub fn comparison_text(c: &Comparison, old_file: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nchanges against {old_file}:");
    for (name, ch) in &c.experiments {
        let status = match ch.status {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
            ChangeKind::Unchanged => "unchanged",
        };
        let _ = writeln!(s, "  experiment {name}: {status}");
        if ch.status == ChangeKind::Unchanged {
            continue;
        }
        for sc in &ch.share_changes {
            if sc.old_share != sc.new_share || sc.old_weight != sc.new_weight {
                let _ = writeln!(
                    s,
                    "    share  {:<14} {:>9} → {:>9}",
                    sc.variant,
                    pct(sc.old_share),
                    pct(sc.new_share)
                );
            }
        }
        if ch.moves.is_empty() && ch.status == ChangeKind::Changed {
            let _ = writeln!(s, "    moves  none: every unit keeps its variant");
        }
        for m in &ch.moves {
            let _ = writeln!(s, "    moves  {} → {} {}", m.from, m.to, pct(m.share));
        }
        for w in &ch.warnings {
            let _ = writeln!(s, "    warning: {w}");
        }
        if ch.reshuffle {
            let verdict = if ch.acknowledged {
                "RESHUFFLE (acknowledged: allow_reshuffle or a new salt)"
            } else {
                "RESHUFFLE, not acknowledged: a reload refuses it; set `allow_reshuffle: true` \
                 or a new salt to accept it"
            };
            let _ = writeln!(s, "    {verdict}");
            for r in &ch.reasons {
                let _ = writeln!(s, "      - {r}");
            }
        } else if !ch.moves.is_empty() {
            let _ = writeln!(s, "    safe: units move only between the control and treatments, as the shares require");
        }
    }
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
