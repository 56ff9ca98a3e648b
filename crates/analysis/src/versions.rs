//! `config-versions.jsonl`: which shares were in force when, so that a unit's expected
//! share is the one of its first exposure and a ramp is not mistaken for a mismatch.

use std::collections::HashMap;
use std::io::{self, BufRead};
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Line {
    ts: String,
    config_version: String,
    shares: HashMap<String, HashMap<String, f64>>,
}

/// One table that took effect.
#[derive(Debug, Clone)]
pub struct Version {
    pub ts: i64,
    pub version: String,
    /// experiment → variant → share.
    pub shares: HashMap<String, HashMap<String, f64>>,
}

/// Every version recorded in the event directories, by time.
#[derive(Debug, Clone, Default)]
pub struct ConfigVersions {
    list: Vec<Version>,
    by_name: HashMap<String, usize>,
    /// Lines that could not be read.
    pub malformed: u64,
}

impl ConfigVersions {
    /// Adds `dir/config-versions.jsonl` (absent: nothing).
    pub fn add_dir(&mut self, dir: &Path) -> io::Result<()> {
        let path = dir.join(cohort_events::reader::VERSIONS_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for line in io::BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<Line>(&line)
                .ok()
                .and_then(|l| Some((cohort_events::clock::parse_nanos(&l.ts)?, l)));
            match parsed {
                Some((ts, l)) => self.list.push(Version {
                    ts,
                    version: l.config_version,
                    shares: l.shares,
                }),
                None => self.malformed += 1,
            }
        }
        self.index();
        Ok(())
    }

    /// Adds versions read elsewhere (a store's copy of the file's lines).
    pub fn extend(&mut self, versions: impl IntoIterator<Item = Version>) {
        self.list.extend(versions);
        self.index();
    }

    fn index(&mut self) {
        self.list
            .sort_by(|a, b| (a.ts, &a.version).cmp(&(b.ts, &b.version)));
        self.by_name = self
            .list
            .iter()
            .enumerate()
            .map(|(i, v)| (v.version.clone(), i))
            .collect();
    }

    /// Every version, by time.
    pub fn entries(&self) -> &[Version] {
        &self.list
    }

    /// The entry called `version`.
    pub fn index_of(&self, version: &str) -> Option<usize> {
        self.by_name.get(version).copied()
    }
}

/// Expected shares of a unit by its first exposure, precomputed over the report's
/// variants (normalized over the weighted ones), so the replay does no lookups.
#[derive(Debug, Clone, Default)]
pub struct ShareTable {
    /// Tally version index → entry index.
    by_version: Vec<Option<usize>>,
    entry_ts: Vec<i64>,
    entries: Vec<Option<Vec<f64>>>,
    configured: Option<Vec<f64>>,
}

impl ShareTable {
    /// `names`: the report's variants; `weighted`: which count; `configured`: the
    /// configured weights (used without a versions file).
    pub fn new(
        versions: &ConfigVersions,
        experiment: &str,
        tally_versions: &[String],
        names: &[String],
        weighted: &[bool],
        configured: &[f64],
    ) -> Self {
        let normalize = |raw: Vec<f64>| {
            let sum: f64 = raw.iter().sum();
            (sum > 0.0).then(|| raw.iter().map(|x| x / sum).collect::<Vec<f64>>())
        };
        let entries = versions
            .entries()
            .iter()
            .map(|v| {
                let s = v.shares.get(experiment)?;
                normalize(
                    names
                        .iter()
                        .zip(weighted)
                        .map(|(n, &w)| {
                            if w {
                                s.get(n).copied().unwrap_or(0.0)
                            } else {
                                0.0
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        ShareTable {
            by_version: tally_versions
                .iter()
                .map(|v| versions.index_of(v))
                .collect(),
            entry_ts: versions.entries().iter().map(|v| v.ts).collect(),
            entries,
            configured: normalize(
                configured
                    .iter()
                    .zip(weighted)
                    .map(|(&c, &w)| if w { c } else { 0.0 })
                    .collect(),
            ),
        }
    }

    /// The expected shares of a unit whose first exposure had this version and ts.
    pub fn get(&self, version: u32, ts: i64) -> Option<&[f64]> {
        if self.entries.is_empty() {
            return self.configured.as_deref();
        }
        let entry = match self.by_version.get(version as usize).copied().flatten() {
            Some(e) => Some(e),
            None => self.entry_ts.partition_point(|&t| t <= ts).checked_sub(1),
        };
        match entry {
            Some(e) => self.entries[e].as_deref(),
            // Before the first recorded version: the configured shares.
            None => self.configured.as_deref(),
        }
    }
}
