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
/// skipped and counted apart from malformed lines; cohort's own monitoring and shadow lines are
/// skipped without a note.
#[test]
fn other_event_types_are_counted_apart_from_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events-1.jsonl"),
        concat!(
            "{\"type\":\"exposure\",\"ts\":\"2026-11-25T00:00:01Z\",\"experiment\":\"e\",\"unit\":\"u1\",\"variant\":\"a\"}\n",
            "{\"type\":\"rollout\",\"ts\":\"2026-11-25T00:00:02Z\",\"experiment\":\"e\",\"step\":2}\n",
            "{\"type\":\"canary\",\"ts\":\"2026-11-25T00:00:03Z\"}\n",
            "{\"type\":\"monitor\",\"v\":1,\"ts\":\"2026-11-25T00:00:04Z\",\"experiment\":\"e\",\"variant\":\"a\",\"rows\":0,\"columns\":[]}\n",
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
            "2 lines of other event types than exposure and conversion skipped (of 5 read)"
        ),
        "{}",
        r["notes"]
    );
    assert!(
        has_note(&r, "1 malformed lines skipped (of 5 read)"),
        "{}",
        r["notes"]
    );
}

// ---- Rollouts ------------------------------------------------------------------------

const ROLLOUT_ROUTES: &str = r#"routes:
  - { name: r, match: { path_prefix: / }, experiment: e }
experiments:
  - name: e
    salt: s1
    control: a
    variants:
      - { name: a, weight: 50, upstream: "http://127.0.0.1:9" }
      - { name: b, weight: 50, upstream: "http://127.0.0.1:9" }
    rollout:
      treatment: b
      steps: [0.05, 0.2, 0.5]
"#;

const HOUR_NS: i64 = 3_600_000_000_000;
/// 2026-12-01T00:00:00Z.
const START_NS: i64 = 1_796_083_200_000_000_000;

/// The rollout's actions: (ns after the start, step from 0, kind, b's share).
const ACTIONS: [(i64, usize, &str, f64); 4] = [
    (0, 0, "start", 0.05),
    (HOUR_NS, 1, "advance", 0.2),
    (2 * HOUR_NS, 2, "advance", 0.5),
    (3 * HOUR_NS, 2, "rollback", 0.0),
];

/// b's share at `ts`: each action's shares take effect 300 ms after it is recorded.
fn b_share(ts: i64) -> f64 {
    ACTIONS
        .iter()
        .rev()
        .find(|a| ts >= START_NS + a.0 + 300_000_000)
        .map_or(0.0, |a| a.3)
}

/// The rollout id `routes.yaml` gives experiment e.
fn rollout_id(config: &str) -> String {
    let routes = cohort_config::parse("routes.yaml", config).unwrap();
    routes.experiments[0].rollout.as_ref().unwrap().id.clone()
}

/// Experiment e's rollout of b recorded in `dirs` (one per replica, each with its own copy
/// of the actions and versions, a few ms apart), and 600 users dealt among them: one every
/// 30 s from an hour before the start, back 20 minutes later, in b while their bucket is
/// below b's share. After the rollback at hour 3, b's units come back in a.
fn write_rollout_log(dirs: &[&Path], id: &str) {
    use cohort_events::clock::from_nanos;
    let draw = |what: &str, u: u32| {
        xxhash_rust::xxh3::xxh3_64(format!("{what}:{u}").as_bytes()) as f64 / 2f64.powi(64)
    };
    for (i, dir) in dirs.iter().enumerate() {
        let late = 5_000_000 * i as i64;
        std::fs::create_dir_all(dir).unwrap();
        let mut versions = vec![json!({"ts": from_nanos(START_NS - 2 * HOUR_NS), "config_version": "v0", "shares": {"e": {"a": 1.0, "b": 0.0}}}).to_string()];
        let mut actions = Vec::new();
        for (k, (at, step, kind, share)) in ACTIONS.iter().enumerate() {
            let ts = START_NS + at + late;
            actions.push(json!({"type": "rollout", "ts": from_nanos(ts), "experiment": "e", "rollout_id": id, "attempt": 0, "step": step, "kind": kind, "share": share, "reason": format!("{kind}: why"), "by": "cohort", "guardrails": {"error_rate": {"value": if *kind == "rollback" { 0.04 } else { 0.0 }, "bound": 0.005}}}).to_string());
            versions.push(json!({"ts": from_nanos(ts + 300_000_000), "config_version": format!("v{}", k + 1), "shares": {"e": {"a": 1.0 - share, "b": share}}}).to_string());
        }
        std::fs::write(dir.join("rollouts.jsonl"), actions.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.join("config-versions.jsonl"),
            versions.join("\n") + "\n",
        )
        .unwrap();
        let mut log = Vec::new();
        for u in (0..600u32).skip(i).step_by(dirs.len()) {
            let first = START_NS - HOUR_NS + i64::from(u) * 30_000_000_000;
            let bucket = draw("bucket", u);
            let variant = |ts: i64| if bucket < b_share(ts) { "b" } else { "a" };
            for ts in [first, first + HOUR_NS / 3] {
                log.push(exposure(
                    &from_nanos(ts),
                    &format!("u{u}"),
                    variant(ts),
                    json!({}),
                ));
            }
            if draw("converts", u) < 0.2 {
                log.push(conversion(
                    &from_nanos(first + HOUR_NS / 6),
                    &format!("u{u}"),
                    1.0,
                ));
            }
        }
        std::fs::write(dir.join("events-1.jsonl"), log.join("\n") + "\n").unwrap();
    }
}

/// The rollout's timeline and frozen comparison in every format; the charts' markers name
/// the steps.
#[test]
fn a_rollout_shows_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, ROLLOUT_ROUTES).unwrap();
    let id = rollout_id(ROLLOUT_ROUTES);
    let events = dir.path().join("events");
    write_rollout_log(&[&events], &id);
    let root = events.to_str().unwrap();
    let r = config_report(root, &config, &[]);
    let ro = &r["rollout"];
    assert_eq!(
        (
            &ro["rollout_id"],
            &ro["treatment"],
            &ro["state"],
            &ro["step"]
        ),
        (&json!(id), &json!("b"), &json!("rolled_back"), &json!(3)),
        "{ro}"
    );
    let rollback = "2026-12-01T03:00:00.000Z";
    assert_eq!(ro["frozen_at"], rollback);
    let timeline: Vec<(String, u64, f64)> = ro["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["step"].as_u64().unwrap(),
                a["share"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        [
            ("start".to_owned(), 1, 0.05),
            ("advance".to_owned(), 2, 0.2),
            ("advance".to_owned(), 3, 0.5),
            ("rollback".to_owned(), 3, 0.0)
        ]
    );
    assert_eq!(ro["timeline"][3]["ts"], rollback);
    assert_eq!(ro["timeline"][3]["reason"], "rollback: why");
    assert_eq!(ro["timeline"][3]["guardrails"]["error_rate"]["value"], 0.04);
    // Frozen: b's units coming back to a are not crossovers; nothing after the rollback
    // counts, exactly as with --until.
    assert_eq!(variant(&r, "b")["crossovers"], 0, "{r}");
    assert!(
        has_note(
            &r,
            &format!("the rollout rolled back at {rollback}: the comparison is frozen there")
        ),
        "{}",
        r["notes"]
    );
    let until = config_report(root, &config, &["--until", rollback]);
    assert_eq!(until["variants"], r["variants"]);
    assert_eq!(until["comparisons"], r["comparisons"]);
    assert!(!has_note(&until, "rolled back at"), "{}", until["notes"]);
    let earlier = config_report(root, &config, &["--until", "2026-12-01T01:30:00Z"]);
    assert!(
        variant(&earlier, "b")["units"].as_u64() < variant(&r, "b")["units"].as_u64(),
        "an earlier --until wins"
    );

    let run = |format: &str| {
        let (code, out, err) = cohort(&[
            "report",
            "--events",
            root,
            "--config",
            config.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let text = run("text");
    assert!(
        text.contains(&format!(
            "rollout {id} of b: rolled back at step 3; the comparison is frozen at"
        )),
        "{text}"
    );
    assert!(
        text.contains("time                      step  share  what      why"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{rollback}     3     0%  rollback  rollback: why")),
        "{text}"
    );
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }
    let md = run("markdown");
    assert!(md.contains("| time | step | share | what | why |"), "{md}");
    assert!(
        md.contains("| 2026-12-01T01:00:00.000Z | 2 | 20% | advance | advance: why |"),
        "{md}"
    );
    let html = run("html");
    assert!(html.contains("<h3>Rollout</h3>"), "{html}");
    assert!(
        html.contains("<td class=\"words why\">rollback: why</td>"),
        "{html}"
    );
    for label in [
        "step 1 · b 5%",
        "step 2 · b 20%",
        "step 3 · b 50%",
        "rollback · b 0%",
    ] {
        assert_eq!(
            html.matches(&format!("<title>shares changed: {label}</title>"))
                .count(),
            3,
            "{label} on each chart"
        );
    }
}

/// Replicas' copies of the same actions are one; without --config the rollout is the one
/// of the latest action, and its treatment is read from the versions.
#[test]
fn a_rollout_copied_on_two_replicas_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let id = rollout_id(ROLLOUT_ROUTES);
    let (a, b) = (dir.path().join("replica-a"), dir.path().join("replica-b"));
    write_rollout_log(&[&a, &b], &id);
    let two = one_report(&[
        "report",
        "--events",
        a.to_str().unwrap(),
        "--events",
        b.to_str().unwrap(),
        "--control",
        "a",
        "--experiment",
        "e",
        "--format",
        "json",
    ]);
    let ro = &two["rollout"];
    assert_eq!(ro["rollout_id"], id.as_str());
    assert_eq!(ro["treatment"], "b");
    assert_eq!(ro["timeline"].as_array().unwrap().len(), 4, "{ro}");
    // The earliest copy (replica a's).
    assert_eq!(ro["timeline"][3]["ts"], "2026-12-01T03:00:00.000Z");
    assert_eq!(variant(&two, "b")["crossovers"], 0);
    let one = dir.path().join("one");
    write_rollout_log(&[&one], &id);
    let single = report_e(one.to_str().unwrap(), &[]);
    assert_eq!(single["rollout"], two["rollout"]);
    assert_eq!(single["variants"], two["variants"]);
}

/// A log without rollouts.jsonl: no `rollout` key, and no marker names a step.
#[test]
fn a_log_without_rollouts_has_no_rollout_key() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::ramped_log(dir.path());
    let r = one_report(&[
        "report",
        "--events",
        dir.path().to_str().unwrap(),
        "--control",
        "rf",
        "--experiment",
        "iris-model",
        "--format",
        "json",
    ]);
    assert!(r.get("rollout").is_none(), "{r}");
    assert!(!has_note(&r, "rolled back"));
}
