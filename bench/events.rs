//! Event log throughput and the memory cost of live counts, measured in one run.
//!
//!     cargo bench --bench events
//!
//! Writes 1 000 000 exposures through the real writer (segment files in a scratch
//! directory, `fsync: interval`) and reports events/s; then applies 1 000 000 distinct
//! units to the live counts and reports the resident-memory growth per unit.

use std::time::{Duration, Instant};

use cohort_analysis::LiveCounts;
use cohort_config::schema::{EventsConfig, FsyncMode};
use cohort_events::{Event, Exposure, SegmentLog, WriterOptions};
use prometheus::IntCounter;

fn exposure(i: u64) -> Event {
    Event::Exposure(Exposure {
        v: Some(1),
        ts: "2026-11-25T15:00:00.000Z".into(),
        experiment: "iris-model".into(),
        unit: format!("user-{i:010}"),
        variant: if i.is_multiple_of(2) {
            "rf".into()
        } else {
            "lr".into()
        },
        request_id: Some(format!("c1~iris-model~rf~0123456789abcdef~{i:032x}")),
        client_request_id: None,
        config_version: Some("0123456789abcdef".into()),
        route: Some("iris".into()),
        status: Some(200),
        latency_ms: Some(3.25),
        aborted: false,
        forced: false,
        unit_missing: false,
        phase: Some("iris-2026-11".into()),
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: u64 = 1_000_000;
    // Live counts first, on a fresh heap, so that freed memory does not hide the growth.
    let counts = LiveCounts::new();
    let before = rss_kib();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<Event> = chunk.iter().map(|&i| exposure(i)).collect();
        counts.apply(batch.iter());
    }
    let after = rss_kib();
    println!(
        "live counts: {} distinct units (ids of 15 bytes) cost {:.0} bytes each of resident memory",
        counts.units(),
        (after.saturating_sub(before) * 1024) as f64 / n as f64
    );

    let dir = std::env::temp_dir().join(format!("cohort-bench-events-{}", std::process::id()));
    let cfg = EventsConfig {
        dir: dir.clone(),
        fsync: FsyncMode::Interval,
        ..EventsConfig::default()
    };
    let events: Vec<Event> = (0..n).map(exposure).collect();
    let (written, dropped) = (
        IntCounter::new("w", "w").unwrap(),
        IntCounter::new("d", "d").unwrap(),
    );
    let opts = WriterOptions::plain(
        65_536,
        cfg.fsync,
        Duration::from_millis(1000),
        written.clone(),
        dropped.clone(),
    );
    let (log, writer) =
        cohort_events::writer::start(Box::new(SegmentLog::open(&cfg).unwrap()), opts);
    let start = Instant::now();
    for e in events {
        // The blocking variant, so the figure is the writer's throughput, not drops.
        log.record_blocking(e);
    }
    writer.finish();
    let took = start.elapsed();
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "event log: {} events ({} written, {} dropped) in {:.2} s = {:.0} events/s, {:.0} bytes/event",
        n,
        written.get(),
        dropped.get(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        bytes as f64 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
