//! Rollouts: a treatment's share stepped up while its guardrails pass, and back to 0 when
//! one fails (README, "Rollouts").
//!
//! ```text
//! rollouts.jsonl + state file ──fold──▶ RolloutState ──weights──▶ the control plane's install
//! written exposures ──Observer──▶ Guardrails (per-unit error rates, latency windows)
//!                                   └──evaluate(state, tallies, verdict)──▶ an Action or none
//! ```
//!
//! * [`record`]: the `type: "rollout"` event, one per action, and the file that keeps them;
//! * [`fold`](mod@fold): the state as a deterministic fold of recorded actions (idempotent, a
//!   rollback outranks an advance), so replicas and restarts agree;
//! * [`tally`]: what the guardrails read, kept from written exposures;
//! * [`latency`]: per-second latency histograms for the windowed p99;
//! * [`evaluate`](mod@evaluate): one evaluation: each guardrail's value and bound, and the action due.
//!
//! Nothing here changes a weight or talks to the network: the control plane acts.

#![forbid(unsafe_code)]
#![allow(rustdoc::private_intra_doc_links)]

pub mod evaluate;
pub mod fold;
pub mod latency;
pub mod record;
pub mod tally;

pub use evaluate::{evaluate, Evaluation, GuardrailValue, Verdicts};
pub use fold::{fold, RolloutState, Status};
pub use record::{Kind, RolloutEvent};
pub use tally::{ArmStats, Guardrails};
