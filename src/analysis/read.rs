//! Reading event directories: every `*.jsonl` under each directory (replicas in
//! subdirectories included), in parallel, into one [`Tally`].
//!
//! Order does not matter (the tally is order-independent), so files are simply shared
//! among threads, largest first. Each line is parsed without copying its strings; a line
//! that is not a valid event is skipped and counted. Memory grows with distinct units and
//! conversions, not with the size of the log.

use std::borrow::Cow;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use super::scan::{scan, Fields};
use super::tally::{ExposureObs, Tally};
use super::versions::ConfigVersions;

/// One event line, borrowed from the read buffer.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    experiment: Cow<'a, str>,
    #[serde(borrow)]
    unit: Cow<'a, str>,
    #[serde(default, borrow)]
    variant: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default, borrow)]
    config_version: Option<Cow<'a, str>>,
    #[serde(default, rename = "override")]
    forced: bool,
    #[serde(default)]
    unit_missing: bool,
    #[serde(default, borrow)]
    phase: Option<Cow<'a, str>>,
}

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
    pub files: usize,
    pub bytes: u64,
    pub lines: u64,
    /// Lines that are not valid events (skipped).
    pub malformed: u64,
}

/// Every event file under `dir`, recursively (config-versions.jsonl apart).
fn event_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            event_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "jsonl")
            && path
                .file_name()
                .is_some_and(|n| n != "config-versions.jsonl")
        {
            out.push((path, meta.len()));
        }
    }
    Ok(())
}

fn version_dirs(dir: &Path, versions: &mut ConfigVersions) -> io::Result<()> {
    versions.add_dir(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.metadata()?.is_dir() {
            version_dirs(&entry.path(), versions)?;
        }
    }
    Ok(())
}

/// Reads every event under `dirs`.
pub fn read_dirs(dirs: &[PathBuf], opts: &ReadOptions) -> io::Result<LogRead> {
    let mut files = Vec::new();
    let mut versions = ConfigVersions::default();
    for d in dirs {
        event_files(d, &mut files)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display())))?;
        version_dirs(d, &mut versions)?;
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
    let results: Mutex<Vec<io::Result<(Tally, u64, u64)>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut tally = Tally::default();
                let (mut lines, mut malformed) = (0u64, 0u64);
                let mut outcome = Ok(());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, _)) = files.get(i) else { break };
                    if let Err(e) = read_file(
                        path,
                        opts,
                        &mut tally,
                        &mut lines,
                        &mut malformed,
                        bar.as_ref(),
                    ) {
                        outcome = Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
                        break;
                    }
                }
                let r = outcome.map(|()| (tally, lines, malformed));
                results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut out = LogRead {
        versions,
        files: files.len(),
        bytes: total,
        ..LogRead::default()
    };
    let mut parts = results.into_inner().unwrap_or_else(|p| p.into_inner());
    // Merge the smaller tallies into the largest.
    parts.sort_by_key(|r| std::cmp::Reverse(r.as_ref().map_or(0, |t| t.1)));
    for r in parts {
        let (t, lines, malformed) = r?;
        out.lines += lines;
        out.malformed += malformed;
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
    malformed: &mut u64,
    bar: Option<&indicatif::ProgressBar>,
) -> io::Result<()> {
    use std::io::Read;
    // Large reads, lines split in place: no copy per line.
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // A line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = file.read(&mut buf[filled..])?;
        let eof = n == 0;
        filled += n;
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..filled]) {
            line(&buf[start..start + nl], opts, tally, lines, malformed);
            start += nl + 1;
        }
        if eof {
            // A last line without a newline (a torn write, or a hand-made file).
            line(&buf[start..filled], opts, tally, lines, malformed);
            if let Some(b) = bar {
                b.inc(filled as u64);
            }
            return Ok(());
        }
        if let Some(b) = bar {
            b.inc(start as u64);
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

/// Bytes read at a time.
const CHUNK: usize = 4 << 20;

fn line(l: &[u8], opts: &ReadOptions, tally: &mut Tally, lines: &mut u64, malformed: &mut u64) {
    if l.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    *lines += 1;
    if !ingest(l, opts, tally) {
        *malformed += 1;
    }
}

/// Adds one line; false when it is not a valid event.
pub fn ingest(line: &[u8], opts: &ReadOptions, tally: &mut Tally) -> bool {
    match scan(line) {
        Some(f) => apply(f, opts, tally),
        None => match serde_json::from_slice::<Line>(line) {
            Ok(l) => apply(
                Fields {
                    exposure: match &*l.kind {
                        "exposure" => true,
                        "conversion" => false,
                        _ => return false,
                    },
                    ts: &l.ts,
                    experiment: &l.experiment,
                    unit: &l.unit,
                    variant: l.variant.as_deref(),
                    value: l.value,
                    config_version: l.config_version.as_deref(),
                    forced: l.forced,
                    unit_missing: l.unit_missing,
                    phase: l.phase.as_deref(),
                },
                opts,
                tally,
            ),
            Err(_) => false,
        },
    }
}

fn apply(l: Fields, opts: &ReadOptions, tally: &mut Tally) -> bool {
    let Some(ts) = crate::clock::parse_nanos(l.ts) else {
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
