//! Reading event logs back, streamed: which files, and their lines.
//!
//! **The file set** of a directory is every `*.jsonl` file below it, subdirectories
//! included (replicas' logs gathered side by side), except [`NOT_EVENTS`]. Startup
//! replay and `cohort report` both read exactly this set, so the live counts and the report
//! of one directory agree. Files are taken in path order: within a directory, segment names
//! sort by time.
//!
//! Lines are read in large chunks and split in place: memory is the chunk, never the log.
//! A line that is not a valid event (a torn last line after a crash, or damage anywhere)
//! is skipped and counted, and the first few are named in a warning; the rest is still read.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::schema::Event;

/// Files of an event directory that hold other records than exposures and conversions:
/// the shares history, the rollout actions, and the shipper's dead letters (lines
/// ClickHouse could not take, with the reason; the lines themselves are still in their
/// segments).
pub const NOT_EVENTS: [&str; 3] = [VERSIONS_FILE, ROLLOUTS_FILE, DEAD_LETTER_FILE];

/// Every rollout action, one `type: "rollout"` line each.
pub const ROLLOUTS_FILE: &str = "rollouts.jsonl";

/// The shares in force over time, one line per config version.
pub const VERSIONS_FILE: &str = "config-versions.jsonl";

/// Lines the shipper could not ship, each with why.
pub const DEAD_LETTER_FILE: &str = "clickhouse.dead-letter.jsonl";

/// One event file and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFile {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The file set of `dir` (see the module's doc), in path order.
pub fn event_files(dir: &Path) -> io::Result<Vec<EventFile>> {
    let mut out = Vec::new();
    collect(dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<EventFile>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "jsonl")
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !NOT_EVENTS.contains(&n))
        {
            out.push(EventFile {
                path,
                bytes: meta.len(),
            });
        }
    }
    Ok(())
}

/// The segment files the writer made in `dir` (`events-*.jsonl`, not below it), oldest
/// first.
pub fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events-") && n.ends_with(".jsonl"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Bytes read at a time.
const CHUNK: usize = 4 << 20;

/// Calls `line` with each non-blank line of the file at `path`, in order, and `progress`
/// with the bytes consumed as the file is read.
pub fn for_each_line(
    path: &Path,
    mut line: impl FnMut(&[u8]),
    mut progress: impl FnMut(u64),
) -> io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    let mut emit = |l: &[u8]| {
        if !l.iter().all(u8::is_ascii_whitespace) {
            line(l);
        }
    };
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
            emit(&buf[start..start + nl]);
            start += nl + 1;
        }
        if eof {
            // A last line without a newline (a torn write, or a hand-made file).
            emit(&buf[start..filled]);
            progress(filled as u64);
            return Ok(());
        }
        progress(start as u64);
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

/// What a replay went through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Files read.
    pub segments: usize,
    pub events: u64,
    /// Lines skipped because they are not valid events.
    pub malformed: u64,
    /// Lines skipped because they are events of another type ([`crate::scan::other_type`]).
    pub other_types: u64,
}

/// Every event of `dir`'s file set, in order, handed to `each` one at a time: memory stays
/// at one chunk and one event, whatever the size of the log.
pub fn replay(dir: &Path, mut each: impl FnMut(Event)) -> io::Result<Replayed> {
    let mut r = Replayed::default();
    for file in event_files(dir)? {
        r.segments += 1;
        let mut line_no = 0usize;
        for_each_line(
            &file.path,
            |line| {
                line_no += 1;
                match serde_json::from_slice::<Event>(line) {
                    Ok(e) => {
                        r.events += 1;
                        each(e);
                    }
                    Err(_) if crate::scan::own_other_type(line) => {}
                    Err(_) if crate::scan::other_type(line).is_some() => r.other_types += 1,
                    Err(e) => {
                        r.malformed += 1;
                        if r.malformed <= 5 {
                            warn!(file = %file.path.display(), line = line_no, error = %e, "skipping a malformed event line");
                        }
                    }
                }
            },
            |_| {},
        )?;
    }
    if r.malformed > 5 {
        warn!(
            skipped = r.malformed,
            "malformed event lines skipped in total"
        );
    }
    Ok(r)
}

/// What a directory held, collected (for tools and tests; replay streams instead).
#[derive(Debug, Default)]
pub struct Read {
    pub events: Vec<Event>,
    /// Files read.
    pub segments: usize,
    /// Lines skipped because they are not valid events.
    pub malformed: u64,
}

/// Every event of `dir`'s file set, collected.
pub fn read_dir(dir: &Path) -> io::Result<Read> {
    let mut events = Vec::new();
    let r = replay(dir, |e| events.push(e))?;
    Ok(Read {
        events,
        segments: r.segments,
        malformed: r.malformed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_set_leaves_out_the_shares_history_and_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let replica = dir.path().join("replica-1");
        std::fs::create_dir(&replica).unwrap();
        for p in [
            dir.path().join("events-20261101T000000Z-000001.jsonl"),
            dir.path().join(VERSIONS_FILE),
            dir.path().join(DEAD_LETTER_FILE),
            dir.path().join("clickhouse.cursor"),
            replica.join("events-20261101T000000Z-000001.jsonl"),
            replica.join(DEAD_LETTER_FILE),
        ] {
            std::fs::write(p, "{}\n").unwrap();
        }
        let names: Vec<String> = event_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| {
                f.path
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "events-20261101T000000Z-000001.jsonl",
                "replica-1/events-20261101T000000Z-000001.jsonl"
            ]
        );
    }
}
