//! Rollouts in the report: the timeline of recorded actions, the step labels on the
//! share-change markers, the comparison frozen at a rollback, replicas' copies of one
//! action counted once; and a report without rollouts.jsonl unchanged.

use std::fmt::Write as _;
use std::path::Path;

use cohort_analysis::read::{read_dirs, ReadOptions};
use cohort_analysis::{analyze, Report, Setup};
use cohort_config::schema::{DecisionConfig, UnitKind};
use cohort_events::clock::from_nanos;
use serde_json::Value;

const DAY: i64 = 86_400_000_000_000;

/// A 10-day log of `iris-model` (rf control, lr treatment), ramped from rf 90% · lr 10% to
/// 50% · 50% on day 3: 3 000 users, rf converting 10%, lr 13%. Drawn from the user ids.
fn ramped_log(dir: &Path) {
    let start = 1_793_491_200_000_000_000i64; // 2026-11-01T00:00:00Z
    let ramp = start + 3 * DAY;
    let versions = format!(
        "{{\"ts\":\"{}\",\"config_version\":\"v1\",\"shares\":{{\"iris-model\":{{\"rf\":0.9,\"lr\":0.1}}}}}}\n{{\"ts\":\"{}\",\"config_version\":\"v2\",\"shares\":{{\"iris-model\":{{\"rf\":0.5,\"lr\":0.5}}}}}}\n",
        from_nanos(start),
        from_nanos(ramp)
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config-versions.jsonl"), versions).unwrap();
    let users = 3000u32;
    let mut log = String::new();
    for u in 0..users {
        let ts = start + i64::from(u) * (10 * DAY / i64::from(users));
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
                from_nanos(ts + DAY / 24)
            );
        }
    }
    std::fs::write(dir.join("events-20261101T000000Z-000001.jsonl"), log).unwrap();
}

/// A uniform draw in [0, 1) fixed by `what` and `u`.
fn draw(what: &str, u: u32) -> f64 {
    xxhash_rust::xxh3::xxh3_64(format!("{what}:{u}").as_bytes()) as f64 / 2f64.powi(64)
}

/// The setup `cohort report --control rf --weights rf=50,lr=50` makes.
fn flag_setup(read: &cohort_analysis::read::LogRead) -> Setup {
    Setup {
        experiment: "iris-model".into(),
        unit: UnitKind::User,
        control: "rf".into(),
        variants: vec![("rf".into(), 50.0), ("lr".into(), 50.0)],
        decision: DecisionConfig::default(),
        salt: None,
        versions: std::sync::Arc::new(read.versions.clone()),
        tally_versions: Vec::new(),
    }
}

fn report_json(r: &Report) -> Value {
    serde_json::to_value(r).unwrap()
}

/// Equal JSON: the same keys in the same order, the same strings, numbers equal to 12
/// significant digits (the last bits of a libm function may differ between platforms).
fn assert_same_json(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let (gk, wk): (Vec<&String>, Vec<&String>) = (g.keys().collect(), w.keys().collect());
            assert_eq!(gk, wk, "keys at {at}");
            for (k, v) in w {
                assert_same_json(&g[k], v, &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "length at {at}");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_same_json(g, w, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1e-300),
                "{at}: {g} vs {w}"
            );
        }
        (g, w) => assert_eq!(g, w, "at {at}"),
    }
}

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/reports/ramped-report.json"
);

/// The report of a log without rollouts.jsonl is the one the analysis gave before rollouts
/// were read: no `rollout` key, every other number as it was. `COHORT_BLESS=1` rewrites
/// the fixture.
#[test]
fn a_report_without_rollouts_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    ramped_log(dir.path());
    let read = read_dirs(&[dir.path().to_path_buf()], &ReadOptions::default()).unwrap();
    let r = analyze(
        &read.tally.experiments["iris-model"],
        &flag_setup(&read),
        "2026-11-11T00:00:00.000Z".into(),
        Vec::new(),
    );
    let got = report_json(&r);
    if std::env::var_os("COHORT_BLESS").is_some() {
        std::fs::create_dir_all(Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(GOLDEN).unwrap()).unwrap();
    assert!(got.get("rollout").is_none());
    assert_same_json(&got, &want, "report");
}

// ---- A rollout that rolls back -------------------------------------------------------

/// 2026-12-01T00:00:00Z: the rollout starts.
const T0: i64 = 1_796_083_200_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
const MINUTE: i64 = 60_000_000_000;
const MS: i64 = 1_000_000;
/// The rollback, three hours in; the log ends an hour later.
const ROLLBACK: i64 = T0 + 3 * HOUR;
const END: i64 = T0 + 4 * HOUR;

const ROUTES: &str = r#"routes:
  - { name: r, match: { path_prefix: / }, experiment: iris-model }
experiments:
  - name: iris-model
    salt: p1
    control: rf
    variants:
      - { name: rf, weight: 50, upstream: "http://127.0.0.1:9" }
      - { name: lr, weight: 50, upstream: "http://127.0.0.1:9" }
    rollout:
      treatment: lr
      steps: [0.05, 0.2, 0.5]
"#;

fn experiment() -> cohort_config::Experiment {
    let routes = cohort_config::parse("routes.yaml", ROUTES).unwrap();
    routes.experiments[0].clone()
}

/// The rollout's actions: (ts, step, kind, lr's share); each version follows its action
/// by a few hundred milliseconds, as when the control plane records, then installs.
const ACTIONS: [(i64, usize, &str, f64); 4] = [
    (T0, 0, "start", 0.05),
    (T0 + HOUR, 1, "advance", 0.2),
    (T0 + 2 * HOUR, 2, "advance", 0.5),
    (ROLLBACK, 2, "rollback", 0.0),
];

/// lr's share at `ts`, and the version in force: v0 (lr 0) before the rollout.
fn in_force(ts: i64) -> (f64, String) {
    let mut out = (0.0, "v0".to_owned());
    for (i, (at, _, _, share)) in ACTIONS.iter().enumerate() {
        if ts >= at + 300 * MS {
            out = (*share, format!("v{}", i + 1));
        }
    }
    out
}

/// A user: exposures (ts, variant) in ts order, and when it converts.
struct User {
    id: String,
    exposures: Vec<(i64, &'static str)>,
    converts: Option<i64>,
}

/// 2 000 users arriving evenly from an hour before the start to the end, each back 20
/// minutes later; a user is lr while its bucket is below lr's share (the safe ramp:
/// units move from rf to lr only, and back on the rollback). rf converts 10%, lr 14%
/// (by the first variant), 10 minutes after the first visit.
fn users() -> Vec<User> {
    let n = 2000u32;
    (0..n)
        .map(|u| {
            let first = T0 - HOUR + i64::from(u) * (5 * HOUR / i64::from(n));
            let bucket = draw("bucket", u);
            let at = |ts: i64| {
                if bucket < in_force(ts).0 {
                    "lr"
                } else {
                    "rf"
                }
            };
            let exposures: Vec<(i64, &'static str)> = [first, first + 20 * MINUTE]
                .into_iter()
                .filter(|&ts| ts < END)
                .map(|ts| (ts, at(ts)))
                .collect();
            let p = if exposures[0].1 == "lr" { 0.14 } else { 0.10 };
            User {
                id: format!("user-{u}"),
                converts: (draw("converts", u) < p).then_some(first + 10 * MINUTE),
                exposures,
            }
        })
        .collect()
}

/// rollouts.jsonl's lines for rollout `id`, `late` after the recorded times (a replica's
/// copy).
fn rollout_lines(id: &str, late: i64) -> String {
    let mut out = String::new();
    for (ts, step, kind, share) in ACTIONS {
        let guardrails = if kind == "rollback" {
            serde_json::json!({"error_rate": {"value": 0.041, "bound": 0.005}})
        } else {
            serde_json::json!({"error_rate": {"value": 0.0, "bound": 0.005}})
        };
        let line = serde_json::json!({
            "type": "rollout", "ts": from_nanos(ts + late), "experiment": "iris-model",
            "rollout_id": id, "attempt": 0, "step": step, "kind": kind, "share": share,
            "reason": format!("{kind} reason"), "by": "cohort", "guardrails": guardrails,
        });
        let _ = writeln!(out, "{line}");
    }
    out
}

fn version_lines(late: i64) -> String {
    let mut out = String::new();
    let line = |ts: i64, v: &str, lr: f64| {
        serde_json::json!({"ts": from_nanos(ts), "config_version": v,
            "shares": {"iris-model": {"rf": 1.0 - lr, "lr": lr}}})
        .to_string()
    };
    let _ = writeln!(out, "{}", line(T0 - 2 * HOUR, "v0", 0.0));
    for (i, (ts, _, _, share)) in ACTIONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}",
            line(ts + 300 * MS + late, &format!("v{}", i + 1), *share)
        );
    }
    out
}

/// Writes the log into `dirs` (users dealt round-robin: one directory per replica), each
/// with its own copy of the versions and of the rollout's actions (a replica's copy a few
/// milliseconds later).
fn rollout_log(dirs: &[&Path], rollout_id: &str, users: &[User]) {
    for (i, dir) in dirs.iter().enumerate() {
        let late = 7 * MS * i as i64;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config-versions.jsonl"), version_lines(late)).unwrap();
        std::fs::write(dir.join("rollouts.jsonl"), rollout_lines(rollout_id, late)).unwrap();
        let mut log = String::new();
        for u in users.iter().skip(i).step_by(dirs.len()) {
            for &(ts, variant) in &u.exposures {
                let line = serde_json::json!({
                    "type": "exposure", "v": 1, "ts": from_nanos(ts), "experiment": "iris-model",
                    "unit": u.id, "variant": variant, "config_version": in_force(ts).1,
                    "status": 200, "phase": "p1",
                });
                let _ = writeln!(log, "{line}");
            }
            if let Some(ts) = u.converts {
                let line = serde_json::json!({
                    "type": "conversion", "v": 1, "ts": from_nanos(ts), "experiment": "iris-model",
                    "unit": u.id,
                });
                let _ = writeln!(log, "{line}");
            }
        }
        std::fs::write(dir.join("events-20261201T000000Z-000001.jsonl"), log).unwrap();
    }
}

/// Per variant (rf, lr): units, converted units, crossovers, counting only what happened
/// before `until`, by README's rules, user by user.
fn expected(users: &[User], until: i64) -> [(u64, u64, u64); 2] {
    let mut out = [(0, 0, 0); 2];
    for u in users {
        let seen: Vec<&(i64, &str)> = u.exposures.iter().filter(|e| e.0 < until).collect();
        let Some(first) = seen.first() else { continue };
        let arm = &mut out[usize::from(first.1 == "lr")];
        if seen.iter().any(|e| e.1 != first.1) {
            arm.2 += 1;
        } else {
            arm.0 += 1;
            arm.1 += u64::from(u.converts.is_some_and(|c| c < until && c >= first.0));
        }
    }
    out
}

fn counts(r: &Report) -> [(u64, u64, u64); 2] {
    ["rf", "lr"].map(|n| {
        let v = r.variants.iter().find(|v| v.name == n).unwrap();
        (v.units, v.conversions, v.crossovers)
    })
}

/// Reads `dirs` and reports with the configured experiment and its recorded rollout.
fn report_of(dirs: &[&Path], opts: &ReadOptions) -> Report {
    let exp = experiment();
    let dirs: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    let read = read_dirs(&dirs, opts).unwrap();
    let rollout = read
        .rollouts
        .rollout("iris-model", Some(&exp), &read.versions)
        .map(|r| r.read_until(opts.until));
    let setup = Setup::of(&exp, std::sync::Arc::new(read.versions.clone()));
    cohort_analysis::analyze_with(
        &read.tally.experiments["iris-model"],
        &setup,
        rollout,
        "now".into(),
        Vec::new(),
    )
}

#[test]
fn the_report_shows_the_timeline_and_freezes_the_comparison_at_the_rollback() {
    let exp = experiment();
    let id = exp.rollout.as_ref().unwrap().id.clone();
    let users = users();
    let dir = tempfile::tempdir().unwrap();
    rollout_log(&[dir.path()], &id, &users);
    let r = report_of(&[dir.path()], &ReadOptions::default());

    // The timeline, in the report JSON.
    let j = report_json(&r);
    let ro = &j["rollout"];
    assert_eq!(ro["rollout_id"], id.as_str());
    assert_eq!(ro["treatment"], "lr");
    assert_eq!(ro["state"], "rolled_back");
    assert_eq!(
        (ro["attempt"].as_u64(), ro["step"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(ro["frozen_at"], from_nanos(ROLLBACK).as_str());
    let timeline = ro["timeline"].as_array().unwrap();
    let got: Vec<(String, String, u64, f64)> = timeline
        .iter()
        .map(|a| {
            (
                a["ts"].as_str().unwrap().to_owned(),
                a["kind"].as_str().unwrap().to_owned(),
                a["step"].as_u64().unwrap(),
                a["share"].as_f64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, u64, f64)> = ACTIONS
        .iter()
        .map(|(ts, step, kind, share)| {
            (
                from_nanos(*ts),
                (*kind).to_owned(),
                *step as u64 + 1,
                *share,
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(timeline[3]["reason"], "rollback reason");
    assert_eq!(timeline[3]["by"], "cohort");
    assert_eq!(
        timeline[3]["guardrails"]["error_rate"],
        serde_json::json!({"value": 0.041, "bound": 0.005})
    );

    // The comparison counts what happened before the rollback only.
    assert_eq!(counts(&r), expected(&users, ROLLBACK));
    let [_, (_, _, lr_crossovers)] = counts(&r);
    assert_eq!(lr_crossovers, 0, "the ramp moved units from rf to lr only");
    assert!(
        r.notes.iter().any(|n| n
            == &format!("the rollout rolled back at {}: the comparison is frozen there (units returning to the control afterwards are not crossovers)", from_nanos(ROLLBACK))),
        "{:#?}",
        r.notes
    );
    // Without the freeze, lr's units that came back after the rollback (into rf) are
    // crossovers, and units first seen after it count.
    let read = read_dirs(&[dir.path().to_path_buf()], &ReadOptions::default()).unwrap();
    let all = analyze(
        &read.tally.experiments["iris-model"],
        &Setup::of(&exp, std::sync::Arc::new(read.versions.clone())),
        "now".into(),
        Vec::new(),
    );
    assert_eq!(counts(&all), expected(&users, i64::MAX));
    let returned: Vec<&User> = users
        .iter()
        .filter(|u| u.exposures[0].1 == "lr" && u.exposures.iter().any(|e| e.1 == "rf"))
        .collect();
    assert!(returned
        .iter()
        .all(|u| u.exposures.iter().any(|e| e.1 == "rf" && e.0 > ROLLBACK)));
    let returned = returned.len() as u64;
    assert!(returned > 20, "the log has returning units: {returned}");
    assert_eq!(counts(&all)[1].2, returned);
    assert!(counts(&all)[0].0 > counts(&r)[0].0);

    // Frozen is exactly `--until` at the rollback: every number of the comparison.
    let until = report_of(
        &[dir.path()],
        &ReadOptions {
            until: Some(ROLLBACK),
            ..ReadOptions::default()
        },
    );
    assert_eq!(
        until.rollout.as_ref().unwrap().frozen_at,
        None,
        "--until cut first"
    );
    assert!(!until.notes.iter().any(|n| n.contains("rolled back at")));
    for (a, b) in [
        (
            serde_json::to_value(&r.variants),
            serde_json::to_value(&until.variants),
        ),
        (
            serde_json::to_value(&r.comparisons),
            serde_json::to_value(&until.comparisons),
        ),
        (
            serde_json::to_value(&r.srm),
            serde_json::to_value(&until.srm),
        ),
        (
            serde_json::to_value(&r.power),
            serde_json::to_value(&until.power),
        ),
        (
            serde_json::to_value(&r.decision),
            serde_json::to_value(&until.decision),
        ),
    ] {
        assert_eq!(a.unwrap(), b.unwrap());
    }
    // An earlier --until wins.
    let earlier = report_of(
        &[dir.path()],
        &ReadOptions {
            until: Some(T0 + 90 * MINUTE),
            ..ReadOptions::default()
        },
    );
    assert_eq!(counts(&earlier), expected(&users, T0 + 90 * MINUTE));

    // The charts: each step's share change says which action made it; the series runs
    // to the rollback.
    let labels: Vec<&str> = r.timeline.changes.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        labels,
        [
            "step 1 · lr 5%",
            "step 2 · lr 20%",
            "step 3 · lr 50%",
            "rollback · lr 0%"
        ]
    );
    assert_eq!(r.timeline.points.last().map(|p| p.ts), Some(ROLLBACK));
    let charts = cohort_analysis::series::charts(&r);
    assert_eq!(charts.changes.len(), 4);
}

/// Two replicas' directories, each with its copy of every action: one timeline.
#[test]
fn copies_from_two_replicas_count_once() {
    let exp = experiment();
    let id = exp.rollout.as_ref().unwrap().id.clone();
    let users = users();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    rollout_log(&[&a, &b], &id, &users);
    let r = report_of(&[&a, &b], &ReadOptions::default());
    let ro = r.rollout.as_ref().expect("a rollout");
    let kinds: Vec<&str> = ro.timeline.iter().map(|a| a.kind.label()).collect();
    assert_eq!(kinds, ["start", "advance", "advance", "rollback"]);
    // The earliest copy of each.
    assert_eq!(ro.timeline[3].ts, from_nanos(ROLLBACK));
    assert_eq!(counts(&r), expected(&users, ROLLBACK));
    // Read as one directory with replicas below it: the same.
    let whole = report_of(&[root.path()], &ReadOptions::default());
    assert_eq!(whole.rollout, r.rollout);
    assert_eq!(counts(&whole), counts(&r));
}

/// Without a config: the rollout of the latest action, its treatment read from the
/// versions that followed the actions.
#[test]
fn without_a_config_the_latest_rollout_and_its_treatment_come_from_the_log() {
    let users = users();
    let dir = tempfile::tempdir().unwrap();
    rollout_log(&[dir.path()], "0123456789abcdef", &users);
    let mut older = rollout_lines("00000000000000aa", -5 * HOUR);
    older.push_str(&std::fs::read_to_string(dir.path().join("rollouts.jsonl")).unwrap());
    std::fs::write(dir.path().join("rollouts.jsonl"), older).unwrap();
    let read = read_dirs(&[dir.path().to_path_buf()], &ReadOptions::default()).unwrap();
    let rollout = read.rollouts.rollout("iris-model", None, &read.versions);
    let rollout = rollout.expect("recorded");
    assert_eq!(rollout.state.rollout_id, "0123456789abcdef");
    assert_eq!(rollout.treatment.as_deref(), Some("lr"));
    let r = cohort_analysis::analyze_with(
        &read.tally.experiments["iris-model"],
        &flag_setup(&read),
        Some(rollout),
        "now".into(),
        Vec::new(),
    );
    assert_eq!(counts(&r), expected(&users, ROLLBACK));
    assert_eq!(
        r.timeline.changes.last().map(|c| c.1.as_str()),
        Some("rollback · lr 0%")
    );
    // A configured experiment whose rollout has no recorded action: no rollout.
    let mut exp = experiment();
    exp.rollout.as_mut().unwrap().id = "ffffffffffffffff".into();
    assert!(read
        .rollouts
        .rollout("iris-model", Some(&exp), &read.versions)
        .is_none());
}

/// A rollback of an earlier phase (before every unit of the phase analysed) cuts nothing.
#[test]
fn a_rollback_before_the_phase_does_not_freeze_it() {
    let users = users();
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment();
    let id = exp.rollout.as_ref().unwrap().id.clone();
    rollout_log(&[dir.path()], &id, &users);
    // The same rollout, recorded six hours earlier: its rollback precedes every unit.
    std::fs::write(
        dir.path().join("rollouts.jsonl"),
        rollout_lines(&id, -9 * HOUR),
    )
    .unwrap();
    let r = report_of(&[dir.path()], &ReadOptions::default());
    let ro = r.rollout.as_ref().expect("a rollout");
    assert_eq!(
        (ro.state.label(), ro.frozen_at.as_deref()),
        ("rolled_back", None)
    );
    assert_eq!(counts(&r), expected(&users, i64::MAX));
    assert!(!r.notes.iter().any(|n| n.contains("rolled back at")));
}

/// The live view's tally holds every event written, the rollback's returners included:
/// it freezes at the rollback as `cohort report` does, from the events directory's
/// rollouts.jsonl.
#[test]
fn the_live_report_freezes_at_the_rollback_like_the_cli() {
    let exp = experiment();
    let id = exp.rollout.as_ref().unwrap().id.clone();
    let users = users();
    let dir = tempfile::tempdir().unwrap();
    rollout_log(&[dir.path()], &id, &users);
    let live = cohort_analysis::LiveCounts::new();
    let mut events = Vec::new();
    cohort_events::reader::replay(dir.path(), |e| events.push(e)).unwrap();
    live.apply(events.iter());
    let r = live.report(&exp, dir.path());
    let cli = report_of(&[dir.path()], &ReadOptions::default());
    assert_eq!(counts(&r), expected(&users, ROLLBACK));
    assert_eq!(r.rollout, cli.rollout);
    assert_eq!(r.variants, cli.variants);
    assert_eq!(r.comparisons, cli.comparisons);
    assert!(r.notes.iter().any(|n| n.contains("rolled back at")));
}
