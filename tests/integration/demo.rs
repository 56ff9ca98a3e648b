//! `cohort demo`: the built-in backends, the real proxy and the simulated users.

use crate::common;

use common::process::cohort_stdout;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulation_is_sticky_and_splits_by_the_built_in_weights() {
    let o = cohort::demo::run(&cohort::demo::Options {
        users: 400,
        max_duration: Duration::from_secs(30),
        progress: false,
        documented_ports: false,
        events_dir: None,
    })
    .await
    .unwrap();
    assert_eq!(o.users, 400);
    assert_eq!(o.unsticky_users, 0);
    let requests: u64 = o.per_variant.iter().map(|(_, _, s)| s.requests).sum();
    assert_eq!(requests, o.requests);
    // The outcome log counted every user once, in the variant that served them.
    let logged_units: u64 = o.outcomes.variants.values().map(|v| v.units).sum();
    assert_eq!(logged_units, 400);
    let converted: u64 = o
        .outcomes
        .variants
        .values()
        .map(|v| v.converted_units)
        .sum();
    assert!(
        converted > 0 && converted < 200,
        "about 11% of 400 users convert: {converted}"
    );
    // The report (the analysis over the log read back) counts what the live counts do.
    let report = o.report.as_ref().expect("the demo reports");
    assert_eq!(report.experiment, "iris-model");
    for v in &report.variants {
        let live = &o.outcomes.variants[&v.name];
        assert_eq!(
            (v.units, v.conversions),
            (live.units, live.converted_units),
            "{}",
            v.name
        );
    }
    for (name, share, stats) in &o.per_variant {
        assert_eq!(o.outcomes.variants[name].units, stats.users, "{name}");
        assert_eq!(stats.errors, 0, "{name}");
        assert_eq!(*share, 0.5);
        // 400 users at 50%: within 5 standard errors (±0.125) of half.
        let observed = stats.users as f64 / o.users as f64;
        assert!((observed - 0.5).abs() < 0.125, "{name}: {observed}");
        assert_eq!(stats.latencies_ms.len() as u64, stats.requests);
    }
}

#[test]
fn the_demo_command_prints_the_table() {
    let text = cohort_stdout(&["demo", "--users", "100"]);
    assert!(text.contains("from 100 users"), "{text}");
    assert!(text.contains("sticky: yes"), "{text}");
    assert!(text.contains("moves rf → lr 10.000%"), "{text}");
    assert!(
        text.contains("`cohort report` on the demo's event log"),
        "{text}"
    );
}

/// With its default 4000 users, the demo finds its built-in effect (10% vs 15%): the
/// conversions are drawn from the user ids, so only timing varies between runs.
#[test]
fn the_default_demo_finds_the_built_in_effect() {
    let text = cohort_stdout(&["demo"]);
    assert!(text.contains("lr beats rf: +"), "{text}");
    assert!(text.contains("roll out lr"), "{text}");
}

/// `--keep DIR` leaves a log and config that `cohort report` reads as the demo did;
/// `--format json` is one object for scripts; a second run into the same DIR is refused.
#[test]
fn the_demo_keeps_its_log_and_config_and_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("run");
    let out = common::process::cohort_stdout(&[
        "demo",
        "--users",
        "150",
        "--keep",
        keep.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let demo: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(demo["users"], 150);
    assert_eq!(demo["sticky"], true);
    assert_eq!(demo["variants"].as_array().map(Vec::len), Some(2));
    assert_eq!(demo["ramp_preview"]["reshuffle"], false);
    let config = demo["kept"]["config"].as_str().unwrap();
    let events = demo["kept"]["events"].as_str().unwrap();
    let report = common::process::cohort_stdout(&[
        "report", "--events", events, "--config", config, "--format", "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    // The kept config gives the same analysis the demo ran (its mde, its weights).
    assert_eq!(report[0]["variants"], demo["report"]["variants"]);
    assert_eq!(report[0]["power"]["mde"], demo["report"]["power"]["mde"]);

    let again = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["demo", "--users", "10", "--keep", keep.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds an event log"),
        "{again:?}"
    );
}
