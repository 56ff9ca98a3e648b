//! Two answers to one request compared, the served one (the primary's) and a shadow's.
//!
//! The rules, in order:
//!
//! 1. Statuses differ (the HTTP status, or a gRPC status): they disagree, on status.
//! 2. gRPC and streamed answers (server-sent events, NDJSON) are compared on status only:
//!    equal statuses agree.
//! 3. Both answered with the same status other than 2xx: they agree, on status.
//! 4. The primary's body has predictions ([`crate::predictions`]): the shadow's are
//!    compared element by element; they agree when every element agrees (exactly for
//!    text, booleans and nulls, within the tolerance for numbers) and the lengths are
//!    equal. A shadow body without predictions disagrees on every element.
//! 5. Otherwise the bodies are compared byte for byte.

use crate::predictions::{read_predictions, Element};

/// Two numbers agree when |a − b| ≤ max(absolute, relative × max(|a|, |b|)) (Python's
/// `math.isclose`, symmetric in a and b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub absolute: f64,
    pub relative: f64,
}

impl Tolerance {
    pub fn agree(&self, a: f64, b: f64) -> bool {
        if a == b {
            return true;
        }
        let d = (a - b).abs();
        d <= self.absolute.max(self.relative * a.abs().max(b.abs()))
    }
}

/// One answer as the comparison needs it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    /// `grpc-status` of a gRPC answer (trailers, or the head of a trailers-only answer).
    pub grpc_status: Option<u32>,
    /// gRPC, server-sent events, NDJSON: compared on status only.
    pub streamed: bool,
    /// The body, decoded.
    pub body: &'a [u8],
}

/// What the answers were compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Status,
    Predictions,
    Bytes,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Predictions => "predictions",
            Self::Bytes => "bytes",
        }
    }
}

/// The comparison of two answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub agree: bool,
    pub how: How,
    /// Elements compared: the longer list's length (an element one side lacks disagrees);
    /// 0 unless compared on predictions.
    pub elements: u64,
    pub elements_agreed: u64,
    /// The largest |a − b| over the elements that are numbers on both sides; None without any.
    pub max_abs_diff: Option<f64>,
    /// The shadow's body had no predictions where the primary's had.
    pub shadow_unreadable: bool,
}

impl Outcome {
    fn on(how: How, agree: bool) -> Self {
        Self {
            agree,
            how,
            elements: 0,
            elements_agreed: 0,
            max_abs_diff: None,
            shadow_unreadable: false,
        }
    }
}

/// Compares the `shadow`'s answer with the `primary`'s (the rules in the module doc).
pub fn compare(
    primary: &Answer<'_>,
    shadow: &Answer<'_>,
    pointer: Option<&str>,
    tolerance: Tolerance,
) -> Outcome {
    if primary.status != shadow.status || primary.grpc_status != shadow.grpc_status {
        return Outcome::on(How::Status, false);
    }
    if primary.streamed || shadow.streamed || !(200..300).contains(&primary.status) {
        return Outcome::on(How::Status, true);
    }
    let Ok(expected) = read_predictions(primary.body, pointer) else {
        return Outcome::on(How::Bytes, primary.body == shadow.body);
    };
    let got = read_predictions(shadow.body, pointer);
    let unreadable = got.is_err();
    let got = got.unwrap_or_default();
    let mut agreed = 0u64;
    let mut max_abs_diff: Option<f64> = None;
    for (a, b) in expected.iter().zip(&got) {
        let same = match (a, b) {
            (Element::Number(a), Element::Number(b)) => {
                let d = (a - b).abs();
                max_abs_diff = Some(max_abs_diff.map_or(d, |m| m.max(d)));
                tolerance.agree(*a, *b)
            }
            _ => a == b,
        };
        agreed += u64::from(same);
    }
    let elements = expected.len().max(got.len()) as u64;
    Outcome {
        agree: agreed == elements && !unreadable,
        how: How::Predictions,
        elements,
        elements_agreed: agreed,
        max_abs_diff,
        shadow_unreadable: unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIGHT: Tolerance = Tolerance {
        absolute: 1e-6,
        relative: 1e-6,
    };

    fn ok(body: &str) -> Answer<'_> {
        Answer {
            status: 200,
            grpc_status: None,
            streamed: false,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn numbers_agree_within_either_tolerance_and_symmetrically() {
        let t = Tolerance {
            absolute: 0.01,
            relative: 0.1,
        };
        assert!(t.agree(0.0, 0.01));
        assert!(!t.agree(0.0, 0.0101));
        assert!(t.agree(100.0, 109.0) && t.agree(109.0, 100.0));
        assert!(!t.agree(100.0, 112.0));
        assert!(!t.agree(f64::NAN, f64::NAN));
    }

    #[test]
    fn elements_are_counted_and_the_largest_difference_kept() {
        let o = compare(
            &ok(r#"{"predictions": [0.5, 0.25, "cat", 1]}"#),
            &ok(r#"{"predictions": [0.5, 0.75, "dog", 1.0000001]}"#),
            None,
            TIGHT,
        );
        assert_eq!(
            (o.agree, o.how, o.elements, o.elements_agreed),
            (false, How::Predictions, 4, 2)
        );
        assert_eq!(o.max_abs_diff, Some(0.5));
    }

    #[test]
    fn a_length_mismatch_or_an_unreadable_shadow_disagrees() {
        let o = compare(&ok("[1, 2]"), &ok("[1, 2, 3]"), None, TIGHT);
        assert_eq!((o.agree, o.elements, o.elements_agreed), (false, 3, 2));
        let o = compare(&ok(r#"{"predictions": [1]}"#), &ok("garbage"), None, TIGHT);
        assert_eq!(
            (o.agree, o.elements, o.elements_agreed, o.shadow_unreadable),
            (false, 1, 0, true)
        );
        assert_eq!(o.max_abs_diff, None);
    }

    #[test]
    fn statuses_decide_before_bodies() {
        let mut failed = ok("{}");
        failed.status = 500;
        assert_eq!(
            compare(&ok("[1]"), &failed, None, TIGHT),
            Outcome::on(How::Status, false)
        );
        // The same error on both sides agrees, whatever the bodies say.
        let mut other = ok("other");
        other.status = 500;
        assert_eq!(
            compare(&failed, &other, None, TIGHT),
            Outcome::on(How::Status, true)
        );
        // gRPC: the grpc-status decides, the bodies are not read.
        let grpc = |code, body| Answer {
            status: 200,
            grpc_status: Some(code),
            streamed: true,
            body,
        };
        assert!(compare(&grpc(0, b"a"), &grpc(0, b"b"), None, TIGHT).agree);
        assert!(!compare(&grpc(0, b"a"), &grpc(14, b"a"), None, TIGHT).agree);
    }

    #[test]
    fn bodies_without_predictions_are_compared_byte_for_byte() {
        assert_eq!(
            compare(&ok("plain"), &ok("plain"), None, TIGHT),
            Outcome::on(How::Bytes, true)
        );
        assert_eq!(
            compare(&ok("plain"), &ok("plainer"), None, TIGHT),
            Outcome::on(How::Bytes, false)
        );
    }
}
