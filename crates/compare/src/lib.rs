//! Two models' answers to the same request, compared: what shadow traffic measures.
//!
//! * [`decode`]: a body as its `Content-Encoding` left it, decompressed within a limit;
//! * [`predictions`]: the predictions of an inference answer (MLflow, KServe v1 and v2, or
//!   a configured JSON pointer) as a flat list of elements;
//! * [`answers`]: two answers compared: status, then predictions element by element within
//!   a tolerance, and what the comparison found.
//!
//! No I/O: callers hand in bodies and statuses, so every rule is tested with the numbers it
//! promises.

#![forbid(unsafe_code)]

pub mod answers;
pub mod decode;
pub mod predictions;

pub use answers::{compare, Answer, How, Outcome, Tolerance};
pub use predictions::{read_predictions, Element};
