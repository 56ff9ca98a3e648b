//! `cohort report --clickhouse`: on the same events, the same report as reading the
//! replicas' directories, field by field.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cohort_events::clock::from_nanos;
use serde_json::Value;

use cohort_clickhouse::Client;

use super::{client, database, drain, query, server, ship_tables};
use crate::common::process::cohort_stdout;

const START: i64 = 1_793_491_200_000_000_000; // 2026-11-01T00:00:00Z
const HOUR: i64 = 3_600_000_000_000;

/// A number in [0, 1) drawn from `what` (the same on every run).
fn draw(what: &str) -> f64 {
    xxhash_rust::xxh3::xxh3_64(what.as_bytes()) as f64 / 2f64.powi(64)
}

/// Three replicas' event directories with everything the analysis treats apart: two
/// phases, a ramp recorded in each replica's config-versions.jsonl, users served by
/// several replicas, crossovers, override and unit-less exposures, conversions with and
/// without values (several per unit, before the exposure, past the attribution window,
/// for units never exposed), and a second experiment with no phase or version.
pub(super) fn fleet_logs(root: &Path) -> Vec<PathBuf> {
    let ramp = START + 72 * HOUR;
    let dirs: Vec<PathBuf> = (0..3).map(|r| root.join(format!("replica-{r}"))).collect();
    let mut logs = vec![String::new(); 3];
    for (r, d) in dirs.iter().enumerate() {
        std::fs::create_dir_all(d).unwrap();
        let at = |ts: i64| from_nanos(ts + r as i64 * 1_000_000_000);
        std::fs::write(
            d.join("config-versions.jsonl"),
            format!(
                "{{\"ts\":\"{}\",\"config_version\":\"v1\",\"shares\":{{\"iris-model\":{{\"rf\":0.9,\"lr\":0.1}},\"ranker\":{{\"control\":0.5,\"x\":0.5}}}}}}\n{{\"ts\":\"{}\",\"config_version\":\"v2\",\"shares\":{{\"iris-model\":{{\"rf\":0.5,\"lr\":0.5}},\"ranker\":{{\"control\":0.5,\"x\":0.5}}}}}}\n",
                at(START - HOUR),
                at(ramp)
            ),
        )
        .unwrap();
    }
    // ranker is rolled out and rolled back on day 4: the start recorded by two replicas,
    // the rollback by one, so the report's timeline and its frozen comparison come from
    // every replica's actions.
    let action = |hours: i64, step: usize, kind: &str, share: f64| {
        format!(
            "{{\"type\":\"rollout\",\"ts\":\"{}\",\"experiment\":\"ranker\",\"rollout_id\":\"r1\",\"attempt\":0,\"step\":{step},\"kind\":\"{kind}\",\"share\":{share},\"reason\":\"{kind}\",\"by\":\"cohort\"}}\n",
            from_nanos(START - HOUR + hours * HOUR)
        )
    };
    let start = action(0, 0, "start", 0.5);
    std::fs::write(dirs[0].join("rollouts.jsonl"), &start).unwrap();
    std::fs::write(
        dirs[2].join("rollouts.jsonl"),
        start.clone() + &action(97, 0, "rollback", 0.0),
    )
    .unwrap();
    let replica = |what: String| (draw(&what) * 3.0) as usize;
    let mut request = 0u64;
    let mut exposure = |logs: &mut Vec<String>, r: usize, ts: i64, fields: String| {
        request += 1;
        let _ = writeln!(
            logs[r],
            "{{\"type\":\"exposure\",\"v\":1,\"ts\":\"{}\",\"request_id\":\"req-{request}\",\"route\":\"iris\",\"status\":200,\"latency_ms\":4.5,{fields}}}",
            from_nanos(ts)
        );
    };
    let mut conversions = 0u64;
    let mut conversion = |logs: &mut Vec<String>, ts: i64, fields: String| {
        conversions += 1;
        let r = replica(format!("conversion-replica:{conversions}"));
        let _ = writeln!(
            logs[r],
            "{{\"type\":\"conversion\",\"v\":1,\"ts\":\"{}\",\"event_id\":\"conv-{conversions}\",{fields}}}",
            from_nanos(ts)
        );
    };
    for u in 0..2400u32 {
        let ts =
            START + i64::from(u) * 4 * 60_000_000_000 + (draw(&format!("jitter:{u}")) * 1e9) as i64;
        let phase = if u < 400 { "iris-old" } else { "iris-new" };
        let (version, lr_share) = if ts < ramp { ("v1", 0.1) } else { ("v2", 0.5) };
        let variant = if draw(&format!("variant:{u}")) < lr_share {
            "lr"
        } else {
            "rf"
        };
        let unit = format!("user-{u}");
        let base = format!(
            "\"experiment\":\"iris-model\",\"unit\":\"{unit}\",\"config_version\":\"{version}\",\"phase\":\"{phase}\""
        );
        // One to three requests, each on whichever replica the balancer picked.
        let visits = 1 + (draw(&format!("visits:{u}")) * 3.0) as i64;
        for k in 0..visits {
            let r = replica(format!("replica:{u}:{k}"));
            exposure(
                &mut logs,
                r,
                ts + k * HOUR / 2,
                format!("{base},\"variant\":\"{variant}\""),
            );
        }
        if draw(&format!("crossover:{u}")) < 0.03 {
            let other = if variant == "lr" { "rf" } else { "lr" };
            let r = replica(format!("crossover-replica:{u}"));
            exposure(
                &mut logs,
                r,
                ts + 5 * HOUR,
                format!("{base},\"variant\":\"{other}\""),
            );
        }
        if u % 97 == 0 {
            exposure(
                &mut logs,
                0,
                ts + HOUR,
                format!("{base},\"variant\":\"lr\",\"override\":true"),
            );
        }
        if u % 131 == 0 {
            exposure(
                &mut logs,
                1,
                ts,
                format!("\"experiment\":\"iris-model\",\"unit\":\"\",\"unit_missing\":true,\"config_version\":\"{version}\",\"phase\":\"{phase}\",\"variant\":\"rf\""),
            );
        }
        let p = if variant == "lr" { 0.16 } else { 0.11 };
        if draw(&format!("converts:{u}")) < p {
            // Up to three days later: the window (two days) leaves some out.
            let later = ts + (draw(&format!("delay:{u}")) * 72.0 * HOUR as f64) as i64;
            let value = if u % 4 == 0 {
                String::new()
            } else {
                format!(",\"value\":{}", draw(&format!("value:{u}")) * 40.0)
            };
            conversion(
                &mut logs,
                later,
                format!("\"experiment\":\"iris-model\",\"unit\":\"{unit}\"{value}"),
            );
            if u % 5 == 0 {
                conversion(
                    &mut logs,
                    later + HOUR,
                    format!("\"experiment\":\"iris-model\",\"unit\":\"{unit}\",\"value\":0.1"),
                );
            }
        }
        if u % 53 == 0 {
            conversion(
                &mut logs,
                ts - HOUR,
                format!("\"experiment\":\"iris-model\",\"unit\":\"{unit}\""),
            );
        }
    }
    for g in 0..17 {
        conversion(
            &mut logs,
            START + g * HOUR,
            format!("\"experiment\":\"iris-model\",\"unit\":\"ghost-{g}\""),
        );
    }
    for u in 0..600u32 {
        let ts = START + i64::from(u) * 7 * 60_000_000_000;
        let variant = if draw(&format!("ranker:{u}")) < 0.5 {
            "x"
        } else {
            "control"
        };
        let r = replica(format!("ranker-replica:{u}"));
        exposure(
            &mut logs,
            r,
            ts,
            format!("\"experiment\":\"ranker\",\"unit\":\"acct-{u}\",\"variant\":\"{variant}\""),
        );
        if draw(&format!("ranker-converts:{u}")) < if variant == "x" { 0.3 } else { 0.2 } {
            conversion(
                &mut logs,
                ts + HOUR,
                format!(
                    "\"experiment\":\"ranker\",\"unit\":\"acct-{u}\",\"value\":{}",
                    u % 7
                ),
            );
        }
    }
    // Model monitoring's windows: replicas 0 and 1 each saw lr's x1 drift, by different
    // amounts, and the report takes the worst replica per window; replica 2's line of the
    // old phase is left out when the config says iris-new.
    let monitor = |logs: &mut Vec<String>, r: usize, phase: &str, hours: i64, psi: f64| {
        let t = from_nanos(START + hours * HOUR);
        let _ = writeln!(
            logs[r],
            "{{\"type\":\"monitor\",\"v\":1,\"ts\":\"{t}\",\"experiment\":\"iris-model\",\"variant\":\"lr\",\"phase\":\"{phase}\",\"window_start\":\"{t}\",\"window_end\":\"{t}\",\"window_s\":3600,\"rows\":400,\"columns\":[{{\"column\":\"x1\",\"kind\":\"numeric\",\"rows\":400,\"unplaced\":0,\"psi\":{psi},\"ks\":{{\"statistic\":0.2,\"p_value\":0.001}},\"edges\":[0.0,1.0],\"counts\":[100,200,100],\"reference_counts\":[300,100,100]}}]}}"
        );
    };
    for (r, psi) in [(0, 0.31), (1, 0.12)] {
        monitor(&mut logs, r, "iris-new", 80, psi);
        monitor(&mut logs, r, "iris-new", 81, psi + 0.01);
    }
    monitor(&mut logs, 2, "iris-old", 81, 0.9);
    // Shadow traffic: replicas 0 and 1 each compared 10 copies (a third of them
    // disagreeing), replica 2 one of the old phase.
    let shadow = |logs: &mut Vec<String>, r: usize, k: usize, phase: &str| {
        let t = from_nanos(START + (82 * HOUR) + k as i64 * 1_000_000_000);
        let (variant, agree) = (["rf", "lr"][k % 2], !k.is_multiple_of(3));
        let _ = writeln!(
            logs[r],
            "{{\"type\":\"shadow\",\"v\":1,\"ts\":\"{t}\",\"event_id\":\"req-{r}-{k}/cand\",\"experiment\":\"iris-model\",\"variant\":\"{variant}\",\"shadow\":\"cand\",\"phase\":\"{phase}\",\"unit\":\"u{k}\",\"request_id\":\"req-{r}-{k}\",\"result\":\"{}\",\"agree\":{agree},\"compared\":\"predictions\",\"elements\":2,\"elements_agreed\":{},\"max_abs_diff\":{},\"primary_status\":200,\"shadow_status\":200,\"primary_ms\":{},\"shadow_ms\":{}}}",
            if agree { "agree" } else { "disagree" },
            if agree { 2 } else { 1 },
            k as f64 / 10.0,
            1.0 + r as f64,
            2.0 + k as f64,
        );
    };
    for r in 0..2 {
        for k in 0..10 {
            shadow(&mut logs, r, k, "iris-new");
        }
    }
    shadow(&mut logs, 2, 0, "iris-old");
    for (d, log) in dirs.iter().zip(&logs) {
        std::fs::write(d.join("events-20261101T000000Z-000001.jsonl"), log).unwrap();
    }
    dirs
}

/// The report config: phase `iris-new`, a two-day attribution window, a day to mature.
pub(super) fn routes(dir: &Path) -> PathBuf {
    let path = dir.join("routes.yaml");
    std::fs::write(
        &path,
        "routes:\n  - { name: iris, match: { path_prefix: /invocations }, experiment: iris-model }\nexperiments:\n  - name: iris-model\n    salt: iris-new\n    control: rf\n    decision: { attribution_window_s: 172800, conversion_delay_s: 86400, min_conversions: 20 }\n    variants:\n      - { name: rf, weight: 50, upstream: \"http://127.0.0.1:9\" }\n      - { name: lr, weight: 50, upstream: \"http://127.0.0.1:9\" }\n",
    )
    .unwrap();
    path
}

/// Every leaf where `a` and `b` differ, by path.
fn differ(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (l, r) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differ(l, r, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                differ(l, r, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} ≠ {b}")),
        _ => {}
    }
}

/// The reports without what may differ: when they were computed.
fn comparable(json: &str) -> Vec<Value> {
    let mut v: Vec<Value> = serde_json::from_str(json).unwrap();
    for r in &mut v {
        r.as_object_mut().unwrap().remove("computed_at");
    }
    v
}

/// Three replicas' logs shipped into one database (one of them twice over, as a retry
/// after a lost answer would): `report --clickhouse` equals `report --events` over the
/// three directories, for a configured experiment (phase, window, ramp, crossovers) and an
/// unconfigured one, whole and restricted in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_report_from_clickhouse_equals_the_merged_directories() {
    let db = database("report");
    fleet_report_equals_directories(&server(), &db).await;
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}

/// The same on a current ClickHouse engine (chdb from PyPI, behind the HTTP interface
/// cohort speaks): the schema, the inserts and the report's SQL all run there unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_report_is_the_same_on_a_current_clickhouse() {
    let data = tempfile::tempdir().unwrap();
    let shim = Chdb::start(data.path());
    let url = shim.url.as_str();
    let version = Client::new(url, "default", None, std::time::Duration::from_secs(30))
        .unwrap()
        .execute("SELECT version() FORMAT TabSeparated")
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&version).starts_with("18."),
        "chdb is a current engine"
    );
    fleet_report_equals_directories(url, "cohort").await;
    growthbook_view_has_the_units(url).await;
}

/// README's GrowthBook view, created as written on the shipped events: one user per unit
/// and phase, override and unit-less exposures left out.
async fn growthbook_view_has_the_units(url: &str) {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("### GrowthBook on the same events")
        .expect("README has the GrowthBook section")..];
    let start = section.find("```sql\n").unwrap() + "```sql\n".len();
    let view = &section[start..start + section[start..].find("```").unwrap()];
    let c = Client::new(url, "default", None, std::time::Duration::from_secs(30)).unwrap();
    c.execute(view).await.unwrap();
    let got = c
        .execute(
            "SELECT experiment_id, toUInt64(uniqExact(user_id)), toUInt64(countIf(user_id = '')), \
             toTypeName(any(timestamp)), toTypeName(any(variation_id)) \
             FROM cohort.growthbook_assignments GROUP BY experiment_id ORDER BY experiment_id \
             FORMAT TabSeparated",
        )
        .await
        .unwrap();
    // fleet_logs: users 0..400 in phase iris-old, 400..2400 in iris-new; 600 ranker accounts.
    assert_eq!(
        String::from_utf8_lossy(&got),
        "iris-model:iris-new\t2000\t0\tDateTime64(9)\tString\n\
         iris-model:iris-old\t400\t0\tDateTime64(9)\tString\n\
         ranker\t600\t0\tDateTime64(9)\tString\n"
    );
}

/// tests/integration/clickhouse/chdb_http.py, killed when the test ends (and ending by
/// itself when its standard input closes, should the test process die first).
pub(super) struct Chdb {
    child: std::process::Child,
    pub(super) url: String,
}

impl Chdb {
    pub(super) fn start(data: &Path) -> Chdb {
        let mut child = std::process::Command::new("python3")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/integration/clickhouse/chdb_http.py"),
            )
            .arg(data)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut url = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut url,
        )
        .unwrap();
        assert!(
            url.starts_with("http://"),
            "the chdb server did not start (is chdb installed? scripts/test installs it): {url:?}"
        );
        Chdb {
            child,
            url: url.trim().to_owned(),
        }
    }
}

impl Drop for Chdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fleet_report_equals_directories(url: &str, db: &str) {
    let c = Client::new(url, "default", None, std::time::Duration::from_secs(30)).unwrap();
    ship_tables(db).create(&c).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let dirs = fleet_logs(root.path());
    for (r, d) in dirs.iter().enumerate() {
        let mut s = super::shipper_as(d, db, url, &format!("replica-{r}"), 2000);
        drain(&mut s).await;
    }
    // Replica 0's whole log again: its cursor lost, everything re-sent.
    std::fs::remove_file(dirs[0].join("clickhouse.cursor")).unwrap();
    let mut again = super::shipper_as(&dirs[0], db, url, "replica-0", 2000);
    let (resent, _) = drain(&mut again).await;
    assert!(resent > 1000, "the retry re-sent {resent} events");

    let config = routes(root.path());
    let config = config.to_str().unwrap();
    let runs: [&[&str]; 4] = [
        &["--experiment", "iris-model", "--config", config],
        &["--experiment", "ranker", "--control", "control"],
        &[
            "--experiment",
            "iris-model",
            "--config",
            config,
            "--since",
            "2026-11-02T12:00:00Z",
            "--until",
            "2026-11-06T00:00:00Z",
        ],
        &[
            "--experiment",
            "ranker",
            "--control",
            "control",
            "--since",
            "2026-11-02T00:00:00Z",
        ],
    ];
    // The per-variant counts behind the live gauges agree with the report's units and
    // converted units.
    let fleet = cohort_clickhouse::fleet::Fleet {
        client: c.clone(),
        tables: ship_tables(db),
        timeout: std::time::Duration::from_secs(30),
        settings: Vec::new(),
    };
    let counts = fleet
        .variant_counts("iris-model", Some("iris-new"), Some(172_800.0))
        .await
        .unwrap();
    let report = same_report(url, db, &dirs, runs[0]);
    // The monitoring section, the same from the store as from the directories.
    let m = &report["monitoring"];
    assert_eq!(m["windows"], 2, "{m}");
    assert_eq!(m["columns"][0]["psi"], 0.32, "{m}");
    assert_eq!(m["columns"][0]["max_psi"], 0.32, "{m}");
    // The shadow section too (replica 0's lines were shipped twice, and count once).
    let rows = report["shadow"]["shadows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        // Each variant has k of one parity on both replicas: 10 copies, a third disagreeing.
        let ks: Vec<usize> = (0..10)
            .filter(|k| ["rf", "lr"][k % 2] == row["variant"])
            .collect();
        let agreed = 2 * ks.iter().filter(|k| !k.is_multiple_of(3)).count();
        assert_eq!(
            (row["sent"].as_u64(), row["compared"].as_u64()),
            (Some(10), Some(10)),
            "{row}"
        );
        assert_eq!(row["agreed"].as_u64(), Some(agreed as u64), "{row}");
        assert_eq!(row["elements"].as_u64(), Some(20), "{row}");
        assert_eq!(
            row["abs_diff"]["max"].as_f64(),
            Some(*ks.last().unwrap() as f64 / 10.0),
            "{row}"
        );
    }
    let mut want: Vec<(String, u64, u64)> = report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["units"].as_u64().unwrap(),
                v["conversions"].as_u64().unwrap(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(counts, want);
    for (i, args) in runs.iter().enumerate() {
        let local = same_report(url, db, &dirs, args);
        if i == 0 {
            for note in [
                "units of other phases",
                "exposures forced by override or without a unit id",
                "were exposed to more than one variant",
                "unattributed",
                "precede their unit's first exposure",
                "outside attribution_window_s",
            ] {
                assert!(
                    local["notes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|n| n.as_str().unwrap().contains(note)),
                    "the data exercises {note:?}: {}",
                    local["notes"]
                );
            }
        }
        if i == 1 {
            // ranker's rollback, recorded on one replica: the timeline and the freeze.
            assert_eq!(
                local["rollout"]["state"], "rolled_back",
                "{}",
                local["rollout"]
            );
            assert_eq!(local["rollout"]["timeline"].as_array().unwrap().len(), 2);
            assert!(
                local["rollout"]["frozen_at"].is_string(),
                "{}",
                local["rollout"]
            );
        }
    }
}

/// `cohort report --format json ARGS` over `dirs` and over `db` at `url`: asserts that the
/// two are the same field by field (but `computed_at`), and returns the report.
pub(super) fn same_report(url: &str, db: &str, dirs: &[PathBuf], args: &[&str]) -> Value {
    let events: Vec<&str> = dirs
        .iter()
        .flat_map(|d| ["--events", d.to_str().unwrap()])
        .collect();
    let common = [&["report", "--format", "json"][..], args].concat();
    let local = cohort_stdout(&[&common[..], &events[..]].concat());
    let fleet = cohort_stdout(
        &[
            &common[..],
            &["--clickhouse", url, "--clickhouse-database", db][..],
        ]
        .concat(),
    );
    let (local, fleet) = (comparable(&local), comparable(&fleet));
    assert_eq!(local.len(), 1);
    assert!(
        local[0]["variants"][0]["units"].as_u64().unwrap() > 100,
        "{}",
        local[0]
    );
    let mut differences = Vec::new();
    differ(
        &Value::from(local.clone()),
        &Value::from(fleet),
        "",
        &mut differences,
    );
    assert!(
        differences.is_empty(),
        "cohort {common:?}: the fleet's report differs from the directories':\n{}",
        differences.join("\n")
    );
    local.into_iter().next().unwrap()
}
