//! A rollout's state is a fold of its recorded actions, the same wherever it is computed:
//! on one replica after a restart, or on every replica of a fleet over all their records.
//!
//! Rules, in order:
//! 1. only the actions of this rollout id count, and copies of one action (same rollout
//!    id, attempt, step and kind; for pauses and resumes, the same line) are one, the
//!    earliest;
//! 2. the latest attempt is the one in force (a resume after a rollback starts a new one);
//! 3. within it, a rollback outranks everything (a rollback and an advance decided at once
//!    on two replicas end rolled back), then a promotion, then `done`;
//! 4. otherwise the highest step reached is in force, since the action that reached it;
//! 5. the latest pause or resume says whether it is paused.

use serde::Serialize;

use crate::record::{Kind, RolloutEvent};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Paused,
    RolledBack,
    Promoted,
    Done,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Running,
        Status::Paused,
        Status::RolledBack,
        Status::Promoted,
        Status::Done,
    ];

    /// As written in the API and the `state` label of `cohort_rollout_state`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::RolledBack => "rolled_back",
            Status::Promoted => "promoted",
            Status::Done => "done",
        }
    }

    /// Whether the guardrails still watch the treatment: at every share short of all.
    pub fn guarded(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Done)
    }
}

/// A rollout's state, folded from its actions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutState {
    pub rollout_id: String,
    pub attempt: u32,
    /// Index into `steps` of the step in force (for a rollback, the step it left).
    pub step: usize,
    pub status: Status,
    /// When the attempt began: the guardrails count exposures from here.
    pub attempt_started_at: String,
    /// When the step in force began.
    pub step_started_at: String,
    /// Why the rollout is where it is (the last action's reason).
    pub reason: String,
    /// This rollout's actions, copies removed, oldest first.
    pub history: Vec<RolloutEvent>,
}

impl RolloutState {
    /// The treatment's share in this state.
    pub fn share(&self, steps: &[f64]) -> f64 {
        match self.status {
            Status::RolledBack => 0.0,
            Status::Promoted => 1.0,
            _ => steps
                .get(self.step)
                .or(steps.last())
                .copied()
                .unwrap_or(0.0),
        }
    }

    pub fn attempt_started_ns(&self) -> i64 {
        cohort_events::clock::parse_nanos(&self.attempt_started_at).unwrap_or(0)
    }

    pub fn step_started_ns(&self) -> i64 {
        cohort_events::clock::parse_nanos(&self.step_started_at).unwrap_or(0)
    }
}

/// Ranks kinds for a deterministic order of actions recorded at the same instant.
fn rank(k: Kind) -> u8 {
    match k {
        Kind::Start => 0,
        Kind::Advance => 1,
        Kind::Pause => 2,
        Kind::Resume => 3,
        Kind::Done => 4,
        Kind::Promote => 5,
        Kind::Rollback => 6,
    }
}

/// The state of rollout `rollout_id` from `events` (any order, any copies, other
/// rollouts' actions among them); None when it has none.
pub fn fold<'a>(
    rollout_id: &str,
    events: impl IntoIterator<Item = &'a RolloutEvent>,
) -> Option<RolloutState> {
    let mut mine: Vec<&RolloutEvent> = events
        .into_iter()
        .filter(|e| e.rollout_id == rollout_id)
        .collect();
    mine.sort_by(|a, b| {
        (a.ts_ns(), a.attempt, a.step, rank(a.kind)).cmp(&(
            b.ts_ns(),
            b.attempt,
            b.step,
            rank(b.kind),
        ))
    });
    // Exact copies (a pause read from two places) are one, and so are copies of a keyed
    // action recorded apart by several replicas.
    mine.dedup_by(|a, b| a == b);
    let mut seen = std::collections::HashSet::new();
    mine.retain(|e| e.key().is_none_or(|k| seen.insert(k)));
    let attempt = mine.iter().map(|e| e.attempt).max()?;
    let now: Vec<&RolloutEvent> = mine
        .iter()
        .copied()
        .filter(|e| e.attempt == attempt)
        .collect();
    let first = now.first()?;
    let attempt_started_at = now
        .iter()
        .find(|e| e.kind == Kind::Start)
        .unwrap_or(first)
        .ts
        .clone();
    let terminal = [Kind::Rollback, Kind::Promote, Kind::Done]
        .into_iter()
        .find_map(|k| now.iter().find(|e| e.kind == k));
    // The action that reached the highest step (the earliest of equals).
    let reached = now
        .iter()
        .filter(|e| matches!(e.kind, Kind::Start | Kind::Advance))
        .fold(None::<&&RolloutEvent>, |best, e| match best {
            Some(b) if b.step >= e.step => Some(b),
            _ => Some(e),
        });
    let paused = now
        .iter()
        .rev()
        .find(|e| matches!(e.kind, Kind::Pause | Kind::Resume))
        .is_some_and(|e| e.kind == Kind::Pause);
    let (status, step, since, reason) = match (terminal, reached) {
        (Some(t), _) => (
            match t.kind {
                Kind::Rollback => Status::RolledBack,
                Kind::Promote => Status::Promoted,
                _ => Status::Done,
            },
            t.step,
            t.ts.clone(),
            t.reason.clone(),
        ),
        (None, Some(r)) => (
            if paused {
                Status::Paused
            } else {
                Status::Running
            },
            r.step,
            r.ts.clone(),
            now.last().map_or_else(String::new, |e| e.reason.clone()),
        ),
        (None, None) => (
            if paused {
                Status::Paused
            } else {
                Status::Running
            },
            0,
            first.ts.clone(),
            now.last().map_or_else(String::new, |e| e.reason.clone()),
        ),
    };
    Some(RolloutState {
        rollout_id: rollout_id.to_owned(),
        attempt,
        step,
        status,
        attempt_started_at,
        step_started_at: since,
        reason,
        history: mine.into_iter().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RolloutTag;

    fn ev(ts: u32, attempt: u32, step: usize, kind: Kind) -> RolloutEvent {
        RolloutEvent {
            kind_of_line: RolloutTag::Rollout,
            ts: format!("2026-12-07T10:00:{ts:02}.000Z"),
            experiment: "e".into(),
            rollout_id: "r1".into(),
            attempt,
            step,
            kind,
            share: 0.0,
            reason: format!("{} at {ts}", kind.label()),
            by: "cohort".into(),
            guardrails: Default::default(),
        }
    }

    #[test]
    fn the_highest_step_is_in_force_since_the_action_that_reached_it() {
        let evs = [
            ev(0, 0, 0, Kind::Start),
            ev(10, 0, 1, Kind::Advance),
            ev(20, 0, 2, Kind::Advance),
        ];
        let s = fold("r1", &evs).unwrap();
        assert_eq!((s.status, s.step), (Status::Running, 2));
        assert_eq!(s.step_started_at, evs[2].ts);
        assert_eq!(s.attempt_started_at, evs[0].ts);
        assert_eq!(s.share(&[0.1, 0.2, 0.5]), 0.5);
        assert!(fold("other", &evs).is_none());
    }

    /// Replicas' copies, in any order, fold to one state; a rollback outranks an
    /// advance decided elsewhere at the same step or later.
    #[test]
    fn copies_and_order_do_not_matter_and_rollback_wins() {
        let a = [
            ev(0, 0, 0, Kind::Start),
            ev(10, 0, 1, Kind::Advance),
            ev(12, 0, 1, Kind::Rollback),
        ];
        let b = [
            ev(1, 0, 0, Kind::Start),
            ev(11, 0, 1, Kind::Advance),
            ev(13, 0, 2, Kind::Advance),
        ];
        let mut all: Vec<RolloutEvent> = a.iter().chain(b.iter()).cloned().collect();
        let s1 = fold("r1", &all).unwrap();
        all.reverse();
        let s2 = fold("r1", &all).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(s1.status, Status::RolledBack);
        assert_eq!(s1.share(&[0.1, 0.2, 0.5]), 0.0);
        // Copies are one: two starts and two advances to step 1 became one each.
        let kinds: Vec<Kind> = s1.history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [Kind::Start, Kind::Advance, Kind::Rollback, Kind::Advance]
        );
    }

    #[test]
    fn a_resume_after_a_rollback_starts_a_new_attempt_and_pauses_toggle() {
        let evs = [
            ev(0, 0, 0, Kind::Start),
            ev(5, 0, 0, Kind::Rollback),
            ev(9, 1, 0, Kind::Start),
            ev(10, 1, 0, Kind::Pause),
            ev(11, 1, 0, Kind::Resume),
            ev(12, 1, 0, Kind::Pause),
        ];
        let s = fold("r1", &evs).unwrap();
        assert_eq!((s.attempt, s.status, s.step), (1, Status::Paused, 0));
        assert_eq!(s.attempt_started_at, evs[2].ts);
        let s = fold("r1", &evs[..5]).unwrap();
        assert_eq!(s.status, Status::Running);
        let s = fold("r1", &evs[..2]).unwrap();
        assert_eq!(s.status, Status::RolledBack);
    }
}
