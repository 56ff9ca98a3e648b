//! `cohort check`, `cohort check --against` and `cohort assign`, run as the real binary.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn cohort() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cohort"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(args: &[&str]) -> Output {
    cohort().args(args).output().expect("cohort runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn the_repo_routes_yaml_is_valid_and_its_plan_adds_up() {
    let file = repo("routes.yaml");
    let out = run(&["check", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = json(&out);
    assert_eq!(plan["valid"], true);
    assert_eq!(plan["routes"][0]["name"], "iris");
    let exp = &plan["experiments"][0];
    assert_eq!(exp["name"], "iris-model");
    assert_eq!(exp["control"], "rf");
    let variants = exp["variants"].as_array().unwrap();
    let buckets: u64 = variants
        .iter()
        .map(|v| v["buckets"].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 100_000);
    for v in variants {
        assert_eq!(v["share"], 0.5, "{v}");
    }
    // The text plan names every variant with its share.
    let out = run(&["check", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rf (control)") && text.contains("50.000%"),
        "{text}"
    );
}

/// Each kind of bad file: (fixture, line, column, path, words the reason must contain).
const BAD: &[(&str, usize, usize, &str, &str)] = &[
    (
        "unknown_key.yaml",
        10,
        9,
        "experiments[0].variants[0].wieght",
        "unknown key `wieght` (a typo?); here the keys are: name, weight, upstream",
    ),
    (
        "weight_not_a_number.yaml",
        6,
        28,
        "experiments[0].variants[1].weight",
        "must be a number (got string \"half\")",
    ),
    (
        "missing_match.yaml",
        2,
        5,
        "routes[0]",
        "route needs a `match` (e.g. `match: {path_prefix: /}`)",
    ),
    (
        "flow_syntax.yaml",
        6,
        7,
        "",
        "YAML syntax error: did not find expected ',' or '}' (in the flow mapping that starts at line 5, column 9)",
    ),
    (
        "duplicate_names.yaml",
        6,
        17,
        "experiments[0].variants[1].name",
        "duplicate variant name \"a\"",
    ),
    (
        "no_variants.yaml",
        4,
        15,
        "experiments[0].variants",
        "at least one variant",
    ),
    (
        "negative_weight.yaml",
        6,
        28,
        "experiments[0].variants[1].weight",
        "≥ 0 (got -5)",
    ),
    (
        "zero_weights.yaml",
        5,
        7,
        "experiments[0].variants",
        "all weights are 0",
    ),
    (
        "bad_control.yaml",
        7,
        14,
        "experiments[1].control",
        "\"champion\" is not one of the variants (rf, lr)",
    ),
    (
        "missing_experiment.yaml",
        4,
        17,
        "routes[0].experiment",
        "no experiment named \"iris\"",
    ),
    (
        "bad_upstream.yaml",
        7,
        19,
        "experiments[0].variants[0].upstream",
        "not an http(s) URL",
    ),
    (
        "generate_without_cookie.yaml",
        5,
        22,
        "experiments[0].on_missing_unit",
        "needs a cookie source",
    ),
    (
        "yaml_syntax.yaml",
        4,
        1,
        "",
        "YAML syntax error: found unexpected end of stream (in the quoted scalar that starts at line 2, column 11)",
    ),
    (
        "lane_overflow.yaml",
        6,
        29,
        "experiments[0].variants[1].weight",
        "its lane holds at most 30.000%",
    ),
];

#[test]
fn each_kind_of_bad_file_is_rejected_with_line_column_path_and_reason() {
    for &(name, line, column, path, reason) in BAD {
        let file = repo(&format!("tests/fixtures/bad/{name}"));
        let out = run(&["check", file.to_str().unwrap(), "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{name} should be invalid");
        let report = json(&out);
        assert_eq!(report["valid"], false);
        let first = &report["errors"][0];
        assert_eq!(first["line"], line, "{name}: {first}");
        assert_eq!(first["column"], column, "{name}: {first}");
        assert_eq!(first["path"], path, "{name}: {first}");
        let got = first["reason"].as_str().unwrap();
        assert!(
            got.contains(reason),
            "{name}: reason {got:?} lacks {reason:?}"
        );
        // The text form leads with file:line:column: path.
        let out = run(&["check", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lead = if path.is_empty() {
            format!("{}:{line}:{column}: ", file.display())
        } else {
            format!("{}:{line}:{column}: {path}: ", file.display())
        };
        assert!(stderr.starts_with(&lead), "{name}: {stderr}");
    }
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let file = repo("tests/fixtures/bad/duplicate_names.yaml");
    let report = json(&run(&["check", file.to_str().unwrap(), "--format", "json"]));
    let paths: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["experiments[0].variants[1].name", "experiments[1].name"]
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn two_arm(control_w: f64, lr_w: f64, salt: &str, extra: &str) -> String {
    format!(
        "experiments:\n  - name: e\n    salt: {salt}\n    control: rf\n{extra}    variants:\n      - {{ name: rf, weight: {control_w}, upstream: \"http://127.0.0.1:5001\" }}\n      - {{ name: lr, weight: {lr_w}, upstream: \"http://127.0.0.1:5002\" }}\n"
    )
}

fn check_against(new: &Path, old: &Path) -> (Option<i32>, Value) {
    let out = run(&[
        "check",
        new.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
        "--format",
        "json",
    ]);
    (out.status.code(), json(&out))
}

#[test]
fn check_against_reports_moves_and_gates_reshuffles_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &two_arm(90.0, 10.0, "s1", ""));
    let ramp = write(dir.path(), "ramp.yaml", &two_arm(80.0, 20.0, "s1", ""));
    let (code, report) = check_against(&ramp, &old);
    assert_eq!(code, Some(0));
    let e = &report["experiments"]["e"];
    assert_eq!(e["reshuffle"], false);
    assert_eq!(
        e["moves"],
        serde_json::json!([{"from": "rf", "to": "lr", "share": 0.1}])
    );
    assert_eq!(e["share_changes"].as_array().unwrap().len(), 2);

    // Swapping the control for the treatment moves units between arms: a reshuffle.
    let swapped = two_arm(90.0, 10.0, "s1", "").replace("control: rf", "control: lr");
    let swapped = write(dir.path(), "swapped.yaml", &swapped);
    let (code, report) = check_against(&swapped, &old);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["experiments"]["e"]["reshuffle"], true);
    assert_eq!(report["exit_code"], 3);

    // Acknowledged by allow_reshuffle, or by a new salt: reported, exit 0.
    let allowed = two_arm(90.0, 10.0, "s1", "    allow_reshuffle: true\n")
        .replace("control: rf", "control: lr");
    let allowed = write(dir.path(), "allowed.yaml", &allowed);
    let (code, report) = check_against(&allowed, &old);
    assert_eq!(
        (code, &report["experiments"]["e"]["reshuffle"]),
        (Some(0), &Value::Bool(true))
    );
    let salted = write(dir.path(), "salted.yaml", &two_arm(90.0, 10.0, "s2", ""));
    let (code, report) = check_against(&salted, &old);
    assert_eq!(
        (code, &report["experiments"]["e"]["reshuffle"]),
        (Some(0), &Value::Bool(true))
    );

    // The text form shows the table of moves and says why.
    let out = run(&[
        "check",
        swapped.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("RESHUFFLE, not acknowledged") && text.contains("the control changed"),
        "{text}"
    );
}

/// Assigns `units` with `cohort assign --units-from -`, returning unit → variant.
fn assign_all(config: &Path, units: &str) -> BTreeMap<String, String> {
    let mut child = cohort()
        .args([
            "assign",
            "--config",
            config.to_str().unwrap(),
            "--experiment",
            "e",
            "--units-from",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = units.to_owned();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut parts = l.split('\t');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn check_against_agrees_with_assignments_computed_unit_by_unit() {
    let dir = tempfile::tempdir().unwrap();
    // Three treatments in lanes; the change ramps one, rolls one back and swaps two lanes,
    // so there are control→treatment, treatment→control and treatment→treatment moves.
    let cfg = |w: [u32; 4], lane_a: f64, lane_b: f64| {
        format!(
            "experiments:\n  - name: e\n    control: ctl\n    variants:\n      - {{ name: ctl, weight: {}, upstream: \"http://127.0.0.1:5001\" }}\n      - {{ name: a, weight: {}, upstream: \"http://127.0.0.1:5002\", lane: {{ start: {lane_a}, max_weight: 0.3 }} }}\n      - {{ name: b, weight: {}, upstream: \"http://127.0.0.1:5003\", lane: {{ start: {lane_b}, max_weight: 0.3 }} }}\n      - {{ name: c, weight: {}, upstream: \"http://127.0.0.1:5004\", lane: {{ start: 0.7, max_weight: 0.3, from: end }} }}\n",
            w[0], w[1], w[2], w[3]
        )
    };
    let old = write(dir.path(), "old.yaml", &cfg([40, 10, 30, 20], 0.0, 0.3));
    let new = write(dir.path(), "new.yaml", &cfg([35, 25, 30, 10], 0.3, 0.0));
    let (code, report) = check_against(&new, &old);
    assert_eq!(code, Some(3), "swapping lanes is a reshuffle: {report}");
    let n = 100_000usize;
    let units: String = (0..n).map(|i| format!("unit-{i}\n")).collect();
    let before = assign_all(&old, &units);
    let after = assign_all(&new, &units);
    assert_eq!(before.len(), n);
    let mut observed: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (unit, from) in &before {
        let to = &after[unit];
        if from != to {
            *observed.entry((from.clone(), to.clone())).or_default() += 1;
        }
    }
    let moves = report["experiments"]["e"]["moves"].as_array().unwrap();
    let expected: BTreeMap<(String, String), f64> = moves
        .iter()
        .map(|m| {
            (
                (
                    m["from"].as_str().unwrap().to_owned(),
                    m["to"].as_str().unwrap().to_owned(),
                ),
                m["share"].as_f64().unwrap(),
            )
        })
        .collect();
    // Every observed move is one check lists …
    for pair in observed.keys() {
        assert!(
            expected.contains_key(pair),
            "units moved {pair:?}, which check does not list"
        );
    }
    // … and each listed share matches the observed fraction within 5 standard errors.
    assert_eq!(expected.len(), 5, "{expected:?}");
    assert!(expected.contains_key(&("a".to_owned(), "b".to_owned())));
    for (pair, share) in &expected {
        let got = *observed.get(pair).unwrap_or(&0) as f64 / n as f64;
        let se = (share * (1.0 - share) / n as f64).sqrt();
        assert!(
            (got - share).abs() <= 5.0 * se + 1e-9,
            "{pair:?}: check says {share}, units show {got}"
        );
    }
}

#[test]
fn assign_prints_one_line_per_unit_in_text_and_json() {
    let file = repo("tests/fixtures/golden.yaml");
    let f = file.to_str().unwrap();
    let out = run(&[
        "assign",
        "--config",
        f,
        "--experiment",
        "golden",
        "--unit",
        "alice",
        "--unit",
        "bob",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Bucket and variant of "alice" are pinned in tests/fixtures/golden_buckets.json.
    assert_eq!(lines[0], "alice\tlr\t83682");
    assert!(lines[1].starts_with("bob\t"));
    let out = run(&[
        "assign",
        "--config",
        f,
        "--experiment",
        "golden",
        "--unit",
        "alice",
        "--format",
        "json",
    ]);
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        line,
        serde_json::json!({"unit": "alice", "variant": "lr", "bucket": 83682})
    );

    let out = run(&[
        "assign",
        "--config",
        f,
        "--experiment",
        "nope",
        "--unit",
        "alice",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no experiment named \"nope\" (experiments: golden)"));
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("cohort {}", env!("CARGO_PKG_VERSION"))
    );
}

/// An emptied file removes every route: `check --against` says so and exits 3 (as for an
/// unacknowledged reshuffle), `allow_remove` acknowledges it, and `serve` does not start on
/// a file with no routes.
#[test]
fn removals_gate_check_against_and_serve_refuses_no_routes() {
    let dir = tempfile::tempdir().unwrap();
    let old = repo("routes.yaml");
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let out = run(&[
        "check",
        empty.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("removes route iris"), "{text}");
    assert!(text.contains("removes experiment iris-model"), "{text}");
    let out = run(&[
        "check",
        empty.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(json(&out)["removals"][0], "route iris");
    let acknowledged = dir.path().join("ack.yaml");
    std::fs::write(&acknowledged, "allow_remove: [iris, iris-model]\n").unwrap();
    let out = run(&[
        "check",
        acknowledged.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run(&["serve", "--config", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no routes"),
        "{out:?}"
    );
}

/// `check --state` says what a replica starting on the file with those runtime weights
/// would have to do instead, and exits 3.
#[test]
fn check_with_a_state_file_says_what_a_restart_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo("routes.yaml");
    let garbage = dir.path().join("state.json");
    std::fs::write(&garbage, "{\"v\": 1, \"experi").unwrap();
    let out = run(&[
        "check",
        file.to_str().unwrap(),
        "--state",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("all traffic on its control"));
    let out = run(&[
        "check",
        file.to_str().unwrap(),
        "--state",
        dir.path().join("none.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// `check` takes its file as `--config` too, like `serve` and `assign`; not both at once.
#[test]
fn check_takes_the_file_as_config_too() {
    let file = repo("routes.yaml");
    let file = file.to_str().unwrap();
    assert_eq!(run(&["check", "--config", file]).status.code(), Some(0));
    assert_eq!(
        run(&["check", file, "--config", file]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["check"]).status.code(), Some(2));
}

/// Every flag of every command says what it is, and `assign`'s usage shows that either
/// `--unit` or `--units-from` is needed.
#[test]
fn every_flag_has_help_text() {
    for command in ["check", "assign", "report", "serve", "demo"] {
        let out = run(&[command, "-h"]);
        let help = String::from_utf8(out.stdout).unwrap();
        let options = help.split("Options:").nth(1).expect("an Options section");
        for line in options.lines().filter(|l| l.trim_start().starts_with('-')) {
            // "  -h, --help   Print help": the flag, two spaces or more, then its text.
            let text = line.trim_start().split_once("  ").map(|(_, t)| t.trim());
            assert!(
                text.is_some_and(|t| !t.is_empty()),
                "cohort {command}: no help text on {line:?}"
            );
        }
    }
    let usage = String::from_utf8(run(&["assign", "-h"]).stdout).unwrap();
    assert!(
        usage.contains("<--unit <UNIT>|--units-from <FILE>>"),
        "{usage}"
    );
}

/// A rollout's schedule: each step's shares from the layout and what it moves; a step
/// beyond the treatment's lane is refused with its position.
#[test]
fn check_prints_a_rollouts_schedule_and_refuses_a_step_beyond_the_lane() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    let yaml = |lane: &str| {
        format!(
            "routes: [{{name: r, match: {{path_prefix: /}}, experiment: e}}]\n\
             experiments:\n  - name: e\n    control: rf\n    variants:\n      \
             - {{name: rf, weight: 80, upstream: \"http://127.0.0.1:1\"}}\n      \
             - {{name: lr, weight: 10, upstream: \"http://127.0.0.1:2\"{lane}}}\n      \
             - {{name: xgb, weight: 10, upstream: \"http://127.0.0.1:3\"{lane2}}}\n    \
             rollout: {{treatment: lr, steps: [0.05, 0.25, 0.4]}}\n",
            lane2 = if lane.is_empty() {
                ""
            } else {
                ", lane: {start: 0.9, max_weight: 0.1}"
            }
        )
    };
    std::fs::write(&file, yaml("")).unwrap();
    let out = run(&["check", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = json(&out);
    let steps = plan["experiments"][0]["rollout"]["steps"]
        .as_array()
        .unwrap()
        .clone();
    let shares: Vec<(f64, f64, f64)> = steps
        .iter()
        .map(|s| {
            (
                s["treatment_share"].as_f64().unwrap(),
                s["control_share"].as_f64().unwrap(),
                s["moves_from_control"].as_f64().unwrap(),
            )
        })
        .collect();
    // xgb keeps its 10%; the control takes what lr leaves.
    assert_eq!(
        shares,
        [
            (0.05, 0.85, 0.05),
            (0.25, 0.65, 0.2),
            (0.4, 0.5, 0.15000000000000002)
        ]
    );
    let text = run(&["check", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("  2       25.000%   65.000%  rf → lr 20.000%"),
        "{text}"
    );
    // In a declared lane of 0.3, the step of 0.4 does not fit.
    std::fs::write(&file, yaml(", lane: {start: 0, max_weight: 0.3}")).unwrap();
    let out = run(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("experiments[0].rollout.steps[2]: 0.4 is more than \"lr\"'s lane holds (0.3)"),
        "{err}"
    );
}

/// `check NEW --against OLD --state STATE` compares the tables in force: an edit of a
/// running rollout's steps starts a new rollout at its first step, moving units back to
/// the control, which comparing the files alone does not show.
#[test]
fn check_against_with_a_state_shows_what_an_edit_to_a_running_rollout_moves() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = |steps: &str| {
        format!(
            "routes: [{{name: r, match: {{path_prefix: /}}, experiment: e}}]\n\
             experiments:\n  - name: e\n    salt: s\n    control: rf\n    variants:\n      \
             - {{name: rf, weight: 50, upstream: \"http://127.0.0.1:1\"}}\n      \
             - {{name: lr, weight: 50, upstream: \"http://127.0.0.1:2\"}}\n    \
             rollout: {{treatment: lr, steps: {steps}}}\n"
        )
    };
    let (old, new, state) = (
        dir.path().join("old.yaml"),
        dir.path().join("new.yaml"),
        dir.path().join("state.json"),
    );
    std::fs::write(&old, yaml("[0.1, 0.5]")).unwrap();
    std::fs::write(&new, yaml("[0.2, 0.6]")).unwrap();
    let id = json(&run(&["check", old.to_str().unwrap(), "--format", "json"]))["experiments"][0]
        ["rollout"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The old rollout has reached its second step (50%).
    let event = |step: usize, kind: &str, share: f64| {
        serde_json::json!({"type": "rollout", "ts": format!("2026-12-07T10:0{step}:00.000Z"), "experiment": "e",
            "rollout_id": id, "attempt": 0, "step": step, "kind": kind, "share": share, "reason": "", "by": "cohort"})
    };
    let records = serde_json::json!({"v": 1, "experiments": {}, "rollouts": {"e": [event(0, "start", 0.1), event(1, "advance", 0.5)]}});
    std::fs::write(&state, records.to_string()).unwrap();
    let args = |with_state: bool| {
        let mut a = vec![
            "check",
            new.to_str().unwrap(),
            "--against",
            old.to_str().unwrap(),
        ];
        if with_state {
            a.extend(["--state", state.to_str().unwrap()]);
        }
        a
    };
    let out = run(&args(true));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("moves  lr → rf 30.000%"), "{text}");
    assert!(text.contains("compared as in force"), "{text}");
    // The files alone: the same weights, nothing moves, and a note says why to pass --state.
    let out = run(&args(false));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("lr → rf"), "{text}");
    assert!(text.contains("note: experiment e has a rollout"), "{text}");
}

#[test]
fn the_plan_names_each_shadow_with_its_sample_and_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(
        &file,
        "routes: [{name: r, match: {path_prefix: /}, experiment: e}]\n\
         experiments:\n\
         \x20 - name: e\n\
         \x20   control: a\n\
         \x20   variants: [{name: a, weight: 1, upstream: \"http://127.0.0.1:1\"}]\n\
         \x20   shadow: [{name: cand, upstream: \"http://127.0.0.1:2\", sample: 0.25, max_inflight: 8}]\n",
    )
    .unwrap();
    let plan = json(&run(&["check", file.to_str().unwrap(), "--format", "json"]));
    let shadow = &plan["experiments"][0]["shadows"][0];
    assert_eq!(
        (
            &shadow["name"],
            &shadow["sample"],
            &shadow["max_inflight"],
            &shadow["upstream"]
        ),
        (
            &Value::from("cand"),
            &Value::from(0.25),
            &Value::from(8),
            &Value::from("http://127.0.0.1:2")
        )
    );
    let text = run(&["check", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("shadow cand    copies 25.000% of units (at most 8 in flight), never answers  http://127.0.0.1:2"),
        "{text}"
    );
}
