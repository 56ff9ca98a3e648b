//! Reading an event directory back: segments in name (= time) order, line by line.
//!
//! A line that is not a valid event (a torn last line after a crash, or damage anywhere in
//! a segment) is skipped and counted, and the first few are named in a warning; the rest of
//! the segment is still read.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::schema::Event;

/// What a directory held.
#[derive(Debug, Default)]
pub struct Read {
    pub events: Vec<Event>,
    pub segments: usize,
    /// Lines skipped because they are not valid events.
    pub malformed: u64,
}

/// The segment files of `dir`, oldest first.
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

/// Every event in `dir`'s segments.
pub fn read_dir(dir: &Path) -> io::Result<Read> {
    let mut read = Read::default();
    for path in segments(dir)? {
        read.segments += 1;
        let reader = BufReader::new(std::fs::File::open(&path)?);
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Event>(&line) {
                Ok(e) => read.events.push(e),
                Err(e) => {
                    read.malformed += 1;
                    if read.malformed <= 5 {
                        warn!(segment = %path.display(), line = i + 1, error = %e, "skipping a malformed event line");
                    }
                }
            }
        }
    }
    if read.malformed > 5 {
        warn!(
            skipped = read.malformed,
            "malformed event lines skipped in total"
        );
    }
    Ok(read)
}
