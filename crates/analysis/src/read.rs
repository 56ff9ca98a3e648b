//! Reading event directories: every `*.jsonl` under each directory (replicas in
//! subdirectories included), in parallel, into one [`Tally`]; and the records beside the
//! events (`config-versions.jsonl`, `rollouts.jsonl`) of every directory read.
//!
//! Order does not matter (the tally is order-independent), so files are simply shared
//! among threads, largest first. Each line is parsed without copying its strings; a line
//! that is not a valid event is skipped and counted. Memory grows with distinct units and
//! conversions, not with the size of the log.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::monitoring::MonitorLines;
use super::rollout::RolloutLog;
use super::shadow::ShadowLines;
use super::tally::{ExposureObs, Tally};
use super::versions::ConfigVersions;
use cohort_events::reader::{event_files, for_each_line};
use cohort_events::scan::{with_fields, Fields};

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Only this experiment (the others are skipped while reading).
    pub experiment: Option<String>,
    /// Events at or after (ns since the epoch).
    pub since: Option<i64>,
    /// Events before.
    pub until: Option<i64>,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Reader threads (0: one per core).
    pub threads: usize,
}

/// What the directories held.
#[derive(Debug, Default)]
pub struct LogRead {
    pub tally: Tally,
    pub versions: ConfigVersions,
    /// Every rollout action recorded, whatever `since` and `until` (a rollout's timeline
    /// is shown whole).
    pub rollouts: RolloutLog,
    pub files: usize,
    pub bytes: u64,
    pub lines: u64,
    /// Lines that are not valid events (skipped).
    pub malformed: u64,
    /// Lines of other event types than exposure and conversion (skipped).
    pub other_types: u64,
    /// Model monitoring's window lines.
    pub monitor: MonitorLines,
    /// Shadow traffic's compared copies.
    pub shadow: ShadowLines,
}

/// Lines a read set aside: not valid events, events of other types, and monitor lines.
#[derive(Debug, Default, Clone)]
struct Skipped {
    malformed: u64,
    other_types: u64,
    monitor: MonitorLines,
    shadow: ShadowLines,
}

/// Adds the versions and rollout actions of `dir` and of every directory below it.
fn record_dirs(
    dir: &Path,
    versions: &mut ConfigVersions,
    rollouts: &mut RolloutLog,
) -> io::Result<()> {
    versions.add_dir(dir)?;
    rollouts.add_dir(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.metadata()?.is_dir() {
            record_dirs(&entry.path(), versions, rollouts)?;
        }
    }
    Ok(())
}

/// Reads every event under `dirs`.
pub fn read_dirs(dirs: &[PathBuf], opts: &ReadOptions) -> io::Result<LogRead> {
    let mut files = Vec::new();
    let mut versions = ConfigVersions::default();
    let mut rollouts = RolloutLog::default();
    for d in dirs {
        let listed = event_files(d)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display())))?;
        files.extend(listed.into_iter().map(|f| (f.path, f.bytes)));
        record_dirs(d, &mut versions, &mut rollouts)?;
    }
    files.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: u64 = files.iter().map(|f| f.1).sum();
    let bar = (opts.progress && io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let threads = if opts.threads > 0 {
        opts.threads
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
    .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<io::Result<(Tally, u64, Skipped)>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut tally = Tally::default();
                let (mut lines, mut skipped) = (0u64, Skipped::default());
                let mut outcome = Ok(());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, _)) = files.get(i) else { break };
                    if let Err(e) = read_file(
                        path,
                        opts,
                        &mut tally,
                        &mut lines,
                        &mut skipped,
                        bar.as_ref(),
                    ) {
                        outcome = Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
                        break;
                    }
                }
                let r = outcome.map(|()| (tally, lines, skipped));
                results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut out = LogRead {
        versions,
        rollouts,
        files: files.len(),
        bytes: total,
        ..LogRead::default()
    };
    let mut parts = results.into_inner().unwrap_or_else(|p| p.into_inner());
    // Merge the smaller tallies into the largest.
    parts.sort_by_key(|r| std::cmp::Reverse(r.as_ref().map_or(0, |t| t.1)));
    for r in parts {
        let (t, lines, skipped) = r?;
        out.lines += lines;
        out.malformed += skipped.malformed;
        out.other_types += skipped.other_types;
        out.monitor.merge(skipped.monitor);
        out.shadow.merge(skipped.shadow);
        if out.tally.experiments.is_empty() {
            out.tally = t;
        } else {
            out.tally.merge(t);
        }
    }
    Ok(out)
}

fn read_file(
    path: &Path,
    opts: &ReadOptions,
    tally: &mut Tally,
    lines: &mut u64,
    skipped: &mut Skipped,
    bar: Option<&indicatif::ProgressBar>,
) -> io::Result<()> {
    for_each_line(
        path,
        |l| line(l, opts, tally, lines, skipped),
        |n| {
            if let Some(b) = bar {
                b.inc(n);
            }
        },
    )
}

fn line(l: &[u8], opts: &ReadOptions, tally: &mut Tally, lines: &mut u64, skipped: &mut Skipped) {
    *lines += 1;
    if !ingest(l, opts, tally) {
        if cohort_events::scan::own_other_type(l) {
            // cohort's own monitoring and shadow lines: not outcomes, and not foreign either.
            if !skipped.monitor.add(l) {
                skipped.shadow.add(l);
            }
        } else if cohort_events::scan::other_type(l).is_some() {
            skipped.other_types += 1;
        } else {
            skipped.malformed += 1;
        }
    }
}

/// Adds one line; false when it is not a valid event.
pub fn ingest(line: &[u8], opts: &ReadOptions, tally: &mut Tally) -> bool {
    with_fields(line, |f| apply(f, opts, tally)).unwrap_or(false)
}

fn apply(l: Fields, opts: &ReadOptions, tally: &mut Tally) -> bool {
    let Some(ts) = cohort_events::clock::parse_nanos(l.ts) else {
        return false;
    };
    if opts
        .experiment
        .as_deref()
        .is_some_and(|e| e != l.experiment)
    {
        // Known by name only, so that an error can list what the log holds.
        tally.note_experiment(l.experiment);
        return true;
    }
    if opts.since.is_some_and(|s| ts < s) || opts.until.is_some_and(|u| ts >= u) {
        return true;
    }
    if l.exposure {
        let Some(variant) = l.variant else {
            return false;
        };
        tally.exposure(ExposureObs {
            experiment: l.experiment,
            unit: l.unit,
            variant,
            ts,
            config_version: l.config_version,
            phase: l.phase,
            excluded: l.forced || l.unit_missing,
        });
        true
    } else {
        match l.value {
            Some(v) if !v.is_finite() => false,
            v => {
                tally.conversion(l.experiment, l.unit, ts, v.unwrap_or(1.0));
                true
            }
        }
    }
}
