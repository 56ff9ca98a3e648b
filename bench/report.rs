//! `cohort report` throughput on a large log, beside DuckDB doing the same per-variant
//! distinct-unit aggregation on the same files, in one run.
//!
//!     cargo bench --bench report            # 10 000 000 events (≈ 3 GB, generated once)
//!     COHORT_BENCH_EVENTS=1000000 cargo bench --bench report
//!
//! The log is written once to target/bench-report-log-N/ (ten segments, the shape the
//! proxy writes: every field an exposure carries, 2 000 000 distinct units for 10 M
//! events, ~10% of units converting). Then:
//! * cohort: the analysis `cohort report` runs (parallel read, tally, full report), in
//!   this process; MB/s and the peak resident memory it added;
//! * DuckDB (`pip install duckdb`; skipped when absent): `count(DISTINCT unit)` per
//!   variant over `read_json` of the same files, timed inside Python, with its peak RSS.
//!
//! Both use every core of the machine. Not run in CI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cohort_analysis::read::{read_dirs, ReadOptions};
use cohort_analysis::{analyze, ConfigVersions, Setup};
use cohort_config::schema::{DecisionConfig, UnitKind};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn generate(dir: &Path, events: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let units = (events / 5).max(1);
    let segments = 10;
    let per = events.div_ceil(segments);
    let t0: i64 = 1_795_564_800_000; // 2026-11-25T00:00:00Z in ms
    let mut written = 0u64;
    for s in 0..segments {
        let f = std::fs::File::create(dir.join(format!("events-{s:04}.jsonl")))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        for i in 0..per {
            if written == events {
                break;
            }
            let k = s * per + i;
            let unit = (k.wrapping_mul(2_654_435_761)) % units;
            let variant = if unit.is_multiple_of(2) { "rf" } else { "lr" };
            let ts = cohort_events::clock::from_nanos((t0 + k as i64) * 1_000_000);
            // One event in 20 is a conversion (≈ 10% of units convert, some twice).
            if k % 20 == 19 {
                writeln!(
                    w,
                    r#"{{"type":"conversion","v":1,"ts":"{ts}","experiment":"iris-model","unit":"user-{unit:010}","variant":"{variant}","value":{}.5,"request_id":"c1~iris-model~{variant}~0123456789abcdef~{k:032x}"}}"#,
                    k % 40
                )?;
            } else {
                writeln!(
                    w,
                    r#"{{"type":"exposure","v":1,"ts":"{ts}","experiment":"iris-model","unit":"user-{unit:010}","variant":"{variant}","request_id":"c1~iris-model~{variant}~0123456789abcdef~{k:032x}","config_version":"0123456789abcdef","route":"iris","status":200,"latency_ms":3.25,"phase":"iris-2026-11"}}"#
                )?;
            }
            written += 1;
        }
    }
    std::fs::write(dir.join("COMPLETE"), events.to_string())
}

fn main() {
    let events: u64 = std::env::var("COHORT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("bench-report-log-{events}"));
    if !dir.join("COMPLETE").exists() {
        eprintln!("generating {events} events in {} …", dir.display());
        generate(&dir, events).expect("cannot write the bench log");
    }
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let mb = bytes as f64 / 1e6;

    let rss_before = status_kib("VmRSS:");
    let start = Instant::now();
    let read = read_dirs(std::slice::from_ref(&dir), &ReadOptions::default()).unwrap();
    let read_s = start.elapsed().as_secs_f64();
    let setup = Setup {
        experiment: "iris-model".into(),
        unit: UnitKind::User,
        control: "rf".into(),
        variants: vec![("rf".into(), 50.0), ("lr".into(), 50.0)],
        decision: DecisionConfig::default(),
        salt: None,
        versions: std::sync::Arc::new(ConfigVersions::default()),
        tally_versions: Vec::new(),
    };
    let report = analyze(
        &read.tally.experiments["iris-model"],
        &setup,
        cohort_events::clock::now(),
        Vec::new(),
    );
    let total_s = start.elapsed().as_secs_f64();
    let peak_mib = status_kib("VmHWM:").saturating_sub(rss_before) as f64 / 1024.0;
    let units: Vec<String> = report
        .variants
        .iter()
        .map(|v| format!("{} {}", v.name, v.units))
        .collect();
    println!(
        "cohort report: {events} events, {mb:.0} MB in {total_s:.2} s (read {read_s:.2} s) = {:.0} MB/s, peak memory +{peak_mib:.0} MiB; units: {}",
        mb / total_s,
        units.join(", ")
    );

    let script = format!(
        r#"
import resource, time
import duckdb
con = duckdb.connect()
t = time.perf_counter()
rows = con.execute("""SELECT variant, count(DISTINCT unit) FROM read_json('{dir}/*.jsonl',
  format='newline_delimited', columns={{'type': 'VARCHAR', 'ts': 'VARCHAR', 'experiment': 'VARCHAR', 'unit': 'VARCHAR', 'variant': 'VARCHAR'}})
  WHERE type = 'exposure' GROUP BY variant ORDER BY variant""").fetchall()
s = time.perf_counter() - t
print(f"duckdb {{duckdb.__version__}}: {mb:.0} MB in {{s:.2f}} s = {{{mb} / s:.0f}} MB/s, peak RSS {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}} MiB; units: {{rows}}")
"#,
        dir = dir.display()
    );
    match std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
    {
        Ok(out) if out.status.success() => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(out) => println!(
            "duckdb: not measured ({})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("duckdb: not measured ({e})"),
    }
}
