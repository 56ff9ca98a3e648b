//! The rollout event: one line per action, `type: "rollout"`, in `events.dir/rollouts.jsonl`
//! and in the state file.
//!
//! A line is appended and synced before the action's weights go into force, so that a
//! process that dies right after still restarts at the step it served.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file of an event directory that holds the rollout actions.
use cohort_events::reader::ROLLOUTS_FILE;

/// What an action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An attempt began at step 0 (the first, or one resumed after a rollback).
    Start,
    /// The treatment's share became the share of `step`.
    Advance,
    /// The treatment's share went to 0; latched until resumed or the block changes.
    Rollback,
    /// The treatment got every unit.
    Promote,
    /// The last step held its time and units, with `on_last_step: hold`.
    Done,
    /// An operator held the current step.
    Pause,
    /// An operator let a paused rollout go on.
    Resume,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Advance => "advance",
            Kind::Rollback => "rollback",
            Kind::Promote => "promote",
            Kind::Done => "done",
            Kind::Pause => "pause",
            Kind::Resume => "resume",
        }
    }
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutEvent {
    /// Always `"rollout"`: the line's type in the event schema.
    #[serde(rename = "type")]
    pub kind_of_line: RolloutTag,
    pub ts: String,
    pub experiment: String,
    pub rollout_id: String,
    /// Counts the starts of this rollout: a resume after a rollback begins attempt + 1.
    pub attempt: u32,
    /// The step in force after the action (index into `steps`).
    pub step: usize,
    pub kind: Kind,
    /// The treatment's share after the action.
    pub share: f64,
    pub reason: String,
    /// Who acted: `cohort` or the admin caller (`token NAME`, `loopback`).
    pub by: String,
    /// Each guardrail's value when the action was decided (absent for operators' actions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub guardrails: BTreeMap<String, GuardrailRecord>,
}

/// A guardrail's value and bound as recorded with an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailRecord {
    pub value: Option<f64>,
    pub bound: f64,
}

/// The constant `"rollout"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutTag {
    #[default]
    Rollout,
}

impl RolloutEvent {
    /// The key under which copies of one action are one: (rollout id, attempt, step,
    /// kind). Pauses and resumes are not keyed (an operator may pause twice in a step).
    pub fn key(&self) -> Option<(&str, u32, usize, Kind)> {
        match self.kind {
            Kind::Pause | Kind::Resume => None,
            k => Some((&self.rollout_id, self.attempt, self.step, k)),
        }
    }

    /// `ts` in nanoseconds since the epoch (0 when unreadable, which sorts it first).
    pub fn ts_ns(&self) -> i64 {
        cohort_events::clock::parse_nanos(&self.ts).unwrap_or(0)
    }
}

/// Appends `event` to `dir/rollouts.jsonl` and syncs it.
pub fn append(dir: &Path, event: &RolloutEvent) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(ROLLOUTS_FILE))?;
    // One write of the whole line: O_APPEND keeps concurrent writers' lines whole.
    f.write_all(&line)?;
    f.sync_data()
}

/// Every rollout event in `dir/rollouts.jsonl` (none when the file is missing); lines
/// that are not rollout events are skipped and counted in the second value.
pub fn read(dir: &Path) -> io::Result<(Vec<RolloutEvent>, u64)> {
    let text = match std::fs::read_to_string(dir.join(ROLLOUTS_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<RolloutEvent>(line) {
            Ok(e) => out.push(e),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}
