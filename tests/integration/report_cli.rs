//! `cohort report` on hand-written logs: what counts (first exposure, crossovers,
//! attribution, phases, overrides), merging replicas' directories, flags, formats, errors.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn exposure(ts: &str, unit: &str, variant: &str, extra: Value) -> String {
    let mut e = json!({"type": "exposure", "ts": ts, "experiment": "e", "unit": unit, "variant": variant, "phase": "s1"});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e.to_string()
}

fn conversion(ts: &str, unit: &str, value: f64) -> String {
    json!({"type": "conversion", "ts": ts, "experiment": "e", "unit": unit, "value": value})
        .to_string()
}

fn t(s: u32) -> String {
    format!("2026-11-25T00:00:{s:02}Z")
}

/// Two replicas' directories with every counting rule exercised once.
fn write_log(root: &Path) {
    let a = root.join("replica-a");
    let b = root.join("replica-b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let replica_a = [
        exposure(&t(5), "u1", "a", json!({})), // u1's later exposure, on another replica
        exposure(&t(2), "u2", "b", json!({})),
        exposure(&t(2), "u3", "a", json!({})),
        conversion(&t(3), "u2", 2.0),
        exposure(&t(3), "u4", "b", json!({"override": true})), // forced: never counts
        exposure(&t(3), "req-1", "a", json!({"unit_missing": true})), // no unit: never counts
        "{not json".to_owned(),
        json!({"type": "exposure", "ts": t(4), "experiment": "e", "unit": "u9"}).to_string(), // no variant
    ];
    let replica_b = [
        exposure(&t(1), "u1", "a", json!({})),
        exposure(&t(6), "u3", "b", json!({})), // u3 crosses over to b: excluded
        conversion(&t(7), "u3", 1.0),          // ...with its conversion
        conversion(&t(50), "u2", 3.0),         // u2 again: one unit, values sum
        exposure(&t(10), "u6", "b", json!({})),
        conversion(&t(9), "u6", 1.0), // before u6's first exposure: not counted
        conversion(&t(9), "u7", 1.0), // never exposed: unattributed
        exposure(&t(0), "u8", "a", json!({"phase": "s0"})), // an earlier phase
    ];
    std::fs::write(a.join("events-1.jsonl"), replica_a.join("\n") + "\n").unwrap();
    std::fs::write(b.join("events-1.jsonl"), replica_b.join("\n") + "\n").unwrap();
}

fn cohort(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `cohort report --format json`: always an array, one report per experiment.
fn json_report(args: &[&str]) -> Value {
    let (code, out, err) = cohort(args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v.is_array(), "not an array: {out}");
    v
}

/// The one report of a `--experiment` run.
fn one_report(args: &[&str]) -> Value {
    let v = json_report(args);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    v[0].clone()
}

/// `cohort report --format json` of experiment e with `config`, plus `extra` flags.
fn config_report(root: &str, config: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "report",
        "--events",
        root,
        "--config",
        config.to_str().unwrap(),
        "--experiment",
        "e",
        "--format",
        "json",
    ];
    args.extend(extra);
    one_report(&args)
}

/// `cohort report --format json` of experiment e with control a, plus `extra` flags.
fn report_e(root: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "report",
        "--events",
        root,
        "--control",
        "a",
        "--experiment",
        "e",
        "--format",
        "json",
    ];
    args.extend(extra);
    one_report(&args)
}

fn variant<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()
}

fn has_note(r: &Value, text: &str) -> bool {
    r["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains(text))
}

#[test]
fn counting_rules_across_merged_replica_directories() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let root = dir.path().to_str().unwrap();
    let r = report_e(root, &[]);
    let (a, b) = (variant(&r, "a"), variant(&r, "b"));
    assert_eq!(
        (
            a["units"].as_u64(),
            a["conversions"].as_u64(),
            a["crossovers"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{a}"
    );
    assert_eq!(
        (
            b["units"].as_u64(),
            b["conversions"].as_u64(),
            b["crossovers"].as_u64()
        ),
        (Some(2), Some(1), Some(0)),
        "{b}"
    );
    assert_eq!(b["value_sum"].as_f64(), Some(5.0));
    assert_eq!(b["value_mean"].as_f64(), Some(2.5));
    for note in [
        "2 malformed lines skipped",
        "1 units were exposed to more than one variant",
        "1 conversions name units never exposed",
        "1 conversions precede their unit's first exposure",
        "2 exposures forced by override or without a unit id",
        "1 units of other phases",
        "equal weights assumed",
    ] {
        assert!(has_note(&r, note), "no note {note:?}: {}", r["notes"]);
    }
    // Undefined numbers are null with a reason, never NaN.
    let cmp = &r["comparisons"][0];
    assert_eq!(cmp["variant"], "b");
    assert!(
        cmp["rel_lift"].is_null() && has_note(&r, "rel_lift, its interval"),
        "{r}"
    );
    assert_eq!(r["decision"]["status"], "continue");
    // The same directories given one by one merge to the same numbers.
    let two = one_report(&[
        "report",
        "--events",
        &format!("{root}/replica-a"),
        "--events",
        &format!("{root}/replica-b"),
        "--control",
        "a",
        "--experiment",
        "e",
        "--format",
        "json",
    ]);
    assert_eq!(two["variants"], r["variants"]);
}

#[test]
fn since_restricts_the_window_and_the_config_sets_the_attribution_window() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let root = dir.path().to_str().unwrap();
    // From second 2 on: u1's first exposure is now its one at second 5 (still a).
    let r = report_e(root, &["--since", &t(2)]);
    assert_eq!(variant(&r, "a")["units"].as_u64(), Some(1));
    assert!(has_note(&r, "restricted to events in"), "{}", r["notes"]);
    // Before second 2: only u1 (a) in this phase; b never appears.
    let r = report_e(root, &["--until", &t(2)]);
    assert_eq!(r["variants"].as_array().unwrap().len(), 1);
    assert_eq!(variant(&r, "a")["units"].as_u64(), Some(1));

    let config = dir.path().join("routes.yaml");
    std::fs::write(
        &config,
        r#"routes:
  - { name: r, match: { path_prefix: / }, experiment: e }
experiments:
  - name: e
    salt: s1
    control: a
    decision: { attribution_window_s: 10, alpha: 0.1 }
    variants:
      - { name: a, weight: 70, upstream: "http://127.0.0.1:9" }
      - { name: b, weight: 30, upstream: "http://127.0.0.1:9" }
"#,
    )
    .unwrap();
    let r = config_report(root, &config, &[]);
    // u2's conversion at second 50 is 48 s after its exposure: outside the 10 s window.
    assert_eq!(variant(&r, "b")["value_sum"].as_f64(), Some(2.0));
    assert!(
        has_note(&r, "1 conversions fall outside attribution_window_s"),
        "{}",
        r["notes"]
    );
    assert_eq!(
        (r["alpha"].as_f64(), variant(&r, "a")["share"].as_f64()),
        (Some(0.1), Some(0.7))
    );
    // Flags override the config.
    let r = config_report(root, &config, &["--alpha", "0.01", "--weights", "a=1,b=1"]);
    assert_eq!(
        (r["alpha"].as_f64(), variant(&r, "a")["share"].as_f64()),
        (Some(0.01), Some(0.5))
    );
}

#[test]
fn every_format_leads_with_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let root = dir.path().to_str().unwrap();
    let (code, text, err) = cohort(&["report", "--events", root, "--control", "a"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.starts_with("Keep running: waiting for 100 units"),
        "{text}"
    );
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }
    let (_, md, _) = cohort(&[
        "report",
        "--events",
        root,
        "--control",
        "a",
        "--format",
        "markdown",
    ]);
    assert!(
        md.starts_with("## Experiment `e`") && md.contains("| variant | share |"),
        "{md}"
    );
    let out = dir.path().join("r.html");
    let (code, _, err) = cohort(&[
        "report",
        "--events",
        root,
        "--control",
        "a",
        "--format",
        "html",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.matches("<svg").count() == 3,
        "{html}"
    );
    // Self-contained: nothing is fetched (the only URL is the SVG namespace).
    assert!(!html.contains("<script") && !html.contains("src="));
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    // Without --experiment, JSON is an array of every experiment in the log.
    let all = json_report(&[
        "report",
        "--events",
        root,
        "--control",
        "a",
        "--format",
        "json",
    ]);
    assert_eq!(all.as_array().map(Vec::len), Some(1));
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let root = dir.path().to_str().unwrap();
    for (args, reason) in [
        (
            vec!["--control", "a", "--experiment", "nope"],
            "no experiment named \"nope\" in the log or the config (in the log: e)",
        ),
        (vec![], "name its control with --control"),
        (
            vec!["--control", "zz"],
            "--control \"zz\" is not one of its variants",
        ),
        (
            vec!["--control", "a", "--since", "yesterday"],
            "--since: \"yesterday\" is not an RFC 3339 time",
        ),
        (
            vec!["--control", "a", "--weights", "a:1"],
            "--weights: \"a:1\" is not name=weight",
        ),
        (
            vec!["--control", "a", "--alpha", "1.5"],
            "--alpha must be in (0, 1)",
        ),
    ] {
        let mut all = vec!["report", "--events", root];
        all.extend(args);
        let (code, out, err) = cohort(&all);
        assert_eq!(code, 1, "{all:?}: {out}");
        assert!(err.contains(reason), "{all:?}: {err}");
    }
    let (code, _, err) = cohort(&["report", "--events", "/nonexistent/dir", "--control", "a"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/dir"), "{err}");
}

/// A directory with no event files is an error that says what was looked for, not an empty
/// report with exit 0.
#[test]
fn a_directory_without_event_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args([
            "report",
            "--events",
            dir.path().to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no event files"),
        "{out:?}"
    );
}

/// An experiment the config has but the log does not: the report says so in a note,
/// naming what the log does have, instead of showing zeros silently.
#[test]
fn a_configured_experiment_without_events_is_named_in_a_note() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let config = dir.path().join("routes.yaml");
    std::fs::write(
        &config,
        "experiments:\n  - name: other\n    control: a\n    variants:\n      - { name: a, weight: 1, upstream: \"http://h:1\" }\n      - { name: b, weight: 1, upstream: \"http://h:2\" }\n",
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    let r = one_report(&[
        "report",
        "--events",
        root,
        "--config",
        config.to_str().unwrap(),
        "--experiment",
        "other",
        "--format",
        "json",
    ]);
    assert!(
        has_note(&r, "no events of experiment other (it has: e)"),
        "{r}"
    );
}

/// The HTML page reads like a report for people: the planned-sample line, tables that
/// scroll rather than squeeze, dates on the time axis, the ramp marked on the charts.
#[test]
fn the_html_report_has_the_plan_dates_and_the_ramp() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::ramped_log(dir.path());
    let out = dir.path().join("report.html");
    let (code, _, err) = cohort(&[
        "report",
        "--events",
        dir.path().to_str().unwrap(),
        "--control",
        "rf",
        "--weights",
        "rf=50,lr=50",
        "--format",
        "html",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    for want in [
        "Planned sample: ",
        "<div class=\"scroll\"><table>",
        "white-space:nowrap",
        "time (UTC)",
        ">Nov 1<",
        "shares changed: rf 50% · lr 50%",
    ] {
        assert!(html.contains(want), "no {want:?} in the page");
    }
    // Three charts, each with the one ramp.
    assert_eq!(html.matches("<title>shares changed:").count(), 3);
}

/// Lines of event types this release does not analyse (a rollout line of a later one) are
/// skipped and counted apart from malformed lines.
#[test]
fn other_event_types_are_counted_apart_from_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events-1.jsonl"),
        concat!(
            "{\"type\":\"exposure\",\"ts\":\"2026-11-25T00:00:01Z\",\"experiment\":\"e\",\"unit\":\"u1\",\"variant\":\"a\"}\n",
            "{\"type\":\"rollout\",\"ts\":\"2026-11-25T00:00:02Z\",\"experiment\":\"e\",\"step\":2}\n",
            "{\"type\":\"shadow\",\"ts\":\"2026-11-25T00:00:03Z\"}\n",
            "not json\n",
        ),
    )
    .unwrap();
    let r = one_report(&[
        "report",
        "--events",
        dir.path().to_str().unwrap(),
        "--control",
        "a",
        "--experiment",
        "e",
        "--format",
        "json",
    ]);
    assert!(
        has_note(
            &r,
            "2 lines of other event types than exposure and conversion skipped (of 4 read)"
        ),
        "{}",
        r["notes"]
    );
    assert!(
        has_note(&r, "1 malformed lines skipped (of 4 read)"),
        "{}",
        r["notes"]
    );
}
