//! A fast path for reading event lines: a scanner for the flat JSON objects cohort itself
//! writes, borrowing every string from the line.
//!
//! It accepts only lines it can read *exactly* as serde_json would (valid UTF-8, no
//! escapes, no nesting, no duplicate known keys, plain numbers and literals) and returns
//! `None` for anything else, which the caller then hands to serde_json — so both paths
//! give the same answer on every line, and the scanner only decides how fast
//! (`cargo bench --bench report`; bench/README.md).

use std::borrow::Cow;

use serde::Deserialize;

/// The fields of an event line the analysis uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fields<'a> {
    pub exposure: bool,
    pub ts: &'a str,
    pub experiment: &'a str,
    pub unit: &'a str,
    pub variant: Option<&'a str>,
    pub value: Option<f64>,
    pub config_version: Option<&'a str>,
    pub forced: bool,
    pub unit_missing: bool,
    pub phase: Option<&'a str>,
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string starting at `b[i] == '"'` with no escape or control character: its content
/// and the index after the closing quote.
fn plain_string(s: &str, i: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    // Most strings are short: a plain loop beats a vectorized search here.
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'"' => break,
            b'\\' => return None,
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
    // i + 1 and the quote are ASCII, so both ends are char boundaries.
    Some((&s[i + 1..j], j + 1))
}

/// The index after the ASCII digits starting at `j`.
fn digits(b: &[u8], mut j: usize) -> usize {
    while b.get(j).is_some_and(u8::is_ascii_digit) {
        j += 1;
    }
    j
}

/// A JSON number at `i`: its text and the index after it.
fn number(s: &str, i: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    let mut j = i;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(b, j),
        _ => return None,
    }
    if b.get(j) == Some(&b'.') {
        let end = digits(b, j + 1);
        if end == j + 1 {
            return None;
        }
        j = end;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let end = digits(b, j);
        if end == j {
            return None;
        }
        j = end;
    }
    Some((&s[i..j], j))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b.get(i..i + word.len())
        .filter(|w| *w == word)
        .map(|_| i + word.len())
}

/// Skips any scalar value; None for objects, arrays and anything unusual.
fn skip_scalar(s: &str, i: usize) -> Option<usize> {
    let b = s.as_bytes();
    match b.get(i)? {
        b'"' => plain_string(s, i).map(|(_, j)| j),
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        _ => number(s, i).map(|(_, j)| j),
    }
}

/// An optional string field: a plain string or null.
fn opt_string(s: &str, i: usize) -> Option<(Option<&str>, usize)> {
    if let Some(j) = literal(s.as_bytes(), i, b"null") {
        return Some((None, j));
    }
    plain_string(s, i).map(|(v, j)| (Some(v), j))
}

/// The bit of a field the analysis reads (0: skipped). Dispatches on length and first
/// byte before comparing, since most keys of a line are neither.
fn key_bit(key: &str) -> u16 {
    let k = key.as_bytes();
    let (bit, name): (u16, &[u8]) = match (k.len(), k.first()) {
        (4, Some(b't')) => (1, b"type"),
        (2, Some(b't')) => (2, b"ts"),
        (10, Some(b'e')) => (4, b"experiment"),
        (4, Some(b'u')) => (8, b"unit"),
        (7, Some(b'v')) => (16, b"variant"),
        (5, Some(b'v')) => (32, b"value"),
        (14, Some(b'c')) => (64, b"config_version"),
        (8, Some(b'o')) => (128, b"override"),
        (12, Some(b'u')) => (256, b"unit_missing"),
        (5, Some(b'p')) => (512, b"phase"),
        _ => return 0,
    };
    // A byte loop: short enough that a call to memcmp costs more than it saves.
    if k.iter().zip(name).all(|(a, b)| a == b) {
        bit
    } else {
        0
    }
}

/// Reads a line the fast way, or None: then serde_json decides.
pub fn scan(line: &[u8]) -> Option<Fields<'_>> {
    let s = std::str::from_utf8(line).ok()?;
    let b = s.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    let (mut kind, mut ts, mut experiment, mut unit) = (None, None, None, None);
    let mut f = Fields {
        exposure: false,
        ts: "",
        experiment: "",
        unit: "",
        variant: None,
        value: None,
        config_version: None,
        forced: false,
        unit_missing: false,
        phase: None,
    };
    let mut seen = 0u16;
    loop {
        let (key, j) = plain_string(s, i)?;
        i = ws(b, j);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        let bit = key_bit(key);
        if seen & bit != 0 {
            return None; // a duplicate field: serde_json's call
        }
        seen |= bit;
        i = match bit {
            1 | 2 | 4 | 8 => {
                let (v, j) = plain_string(s, i)?;
                match bit {
                    1 => kind = Some(v),
                    2 => ts = Some(v),
                    4 => experiment = Some(v),
                    _ => unit = Some(v),
                }
                j
            }
            16 | 64 | 512 => {
                let (v, j) = opt_string(s, i)?;
                match bit {
                    16 => f.variant = v,
                    64 => f.config_version = v,
                    _ => f.phase = v,
                }
                j
            }
            32 => {
                if let Some(j) = literal(b, i, b"null") {
                    j
                } else {
                    let (text, j) = number(s, i)?;
                    // serde_json refuses numbers out of f64's range; so does this.
                    f.value = Some(text.parse::<f64>().ok().filter(|v| v.is_finite())?);
                    j
                }
            }
            128 | 256 => {
                let (v, j) = if let Some(j) = literal(b, i, b"true") {
                    (true, j)
                } else {
                    (false, literal(b, i, b"false")?)
                };
                if bit == 128 {
                    f.forced = v;
                } else {
                    f.unit_missing = v;
                }
                j
            }
            _ => skip_scalar(s, i)?,
        };
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    if ws(b, i + 1) != b.len() {
        return None;
    }
    f.exposure = match kind? {
        "exposure" => true,
        "conversion" => false,
        _ => return None,
    };
    (f.ts, f.experiment, f.unit) = (ts?, experiment?, unit?);
    Some(f)
}

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

/// The fields of any valid event line, handed to `f`: the scanner's fast path, else
/// serde_json's (a line with escapes, or written by another tool). None for a line that
/// is not an exposure or a conversion.
pub fn with_fields<R>(line: &[u8], f: impl FnOnce(Fields<'_>) -> R) -> Option<R> {
    if let Some(fields) = scan(line) {
        return Some(f(fields));
    }
    let l = serde_json::from_slice::<Line>(line).ok()?;
    let exposure = match &*l.kind {
        "exposure" => true,
        "conversion" => false,
        _ => return None,
    };
    Some(f(Fields {
        exposure,
        ts: &l.ts,
        experiment: &l.experiment,
        unit: &l.unit,
        variant: l.variant.as_deref(),
        value: l.value,
        config_version: l.config_version.as_deref(),
        forced: l.forced,
        unit_missing: l.unit_missing,
        phase: l.phase.as_deref(),
    }))
}

/// The `type` of a line that is a JSON object of another event type than exposure and
/// conversion (a kind a later release or another tool writes): readers skip such lines and
/// count them apart from malformed ones. None for an exposure, a conversion, or a line
/// that is not a typed JSON object.
pub fn other_type(line: &[u8]) -> Option<String> {
    other_type_str(line)
}

/// The line types cohort itself writes beside exposures and conversions: model
/// monitoring's window summaries and scored predictions, and shadow traffic's compared
/// copies. Readers of outcomes skip them without counting them.
pub const OWN_OTHER_TYPES: [&str; 3] = ["monitor", "prediction", "shadow"];

/// Whether `line` is one of cohort's own lines of another type ([`OWN_OTHER_TYPES`]).
pub fn own_other_type(line: &[u8]) -> bool {
    other_type_str(line).is_some_and(|t| OWN_OTHER_TYPES.contains(&t.as_str()))
}

fn other_type_str(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
    }
    let t = serde_json::from_slice::<Typed>(line).ok()?;
    match &*t.kind {
        "exposure" | "conversion" => None,
        other => Some(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_cohort_writes() {
        let line = br#"{"type":"exposure","v":1,"ts":"2026-11-25T00:00:00.000Z","experiment":"e","unit":"u","variant":"a","request_id":"c1~e~a~v~00","config_version":"v1","route":"r","status":200,"latency_ms":3.25,"override":true,"phase":"s"}"#;
        let f = scan(line).unwrap();
        assert!(f.exposure && f.forced && !f.unit_missing);
        assert_eq!(
            (f.unit, f.variant, f.config_version, f.phase),
            ("u", Some("a"), Some("v1"), Some("s"))
        );
        let c = scan(br#" {"type": "conversion", "ts": "t", "experiment": "e", "unit": "u", "value": -1.5e3} "#).unwrap();
        assert_eq!((c.exposure, c.value), (false, Some(-1500.0)));
    }

    #[test]
    fn leaves_anything_unusual_to_serde() {
        for line in [
            &br#"{"type":"exposure","ts":"t","experiment":"e","unit":"u\u0041","variant":"a"}"#[..],
            br#"{"type":"exposure","ts":"t","experiment":"e","unit":"u","variant":"a","x":{"y":1}}"#,
            br#"{"type":"exposure","ts":"t","experiment":"e","unit":"u","unit":"v"}"#,
            br#"{"type":"exposure","ts":"t","experiment":"e"}"#,
            br#"{"type":"exposure","ts":"t","experiment":"e","unit":"u"} x"#,
            br#"{"type":"exposure","ts":"t","experiment":"e","unit":"u","value":01}"#,
            br#"{"type":"other","ts":"t","experiment":"e","unit":"u"}"#,
            b"{\"type\":\"exposure\",\"ts\":\"t\",\"experiment\":\"e\",\"unit\":\"\xff\"}",
        ] {
            assert_eq!(scan(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    /// Whatever the scanner accepts, serde_json reads the same.
    fn agrees_with_serde(line: &str) -> Result<(), TestCaseError> {
        #[derive(serde::Deserialize)]
        struct L<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            ts: &'a str,
            experiment: &'a str,
            unit: &'a str,
            #[serde(default)]
            variant: Option<&'a str>,
            #[serde(default)]
            value: Option<f64>,
            #[serde(default, rename = "override")]
            forced: bool,
        }
        if let Some(f) = scan(line.as_bytes()) {
            let l: L = serde_json::from_str(line)
                .map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
            prop_assert_eq!(f.exposure, l.kind == "exposure");
            prop_assert_eq!(
                (f.ts, f.experiment, f.unit, f.variant),
                (l.ts, l.experiment, l.unit, l.variant)
            );
            prop_assert_eq!(f.value.map(f64::to_bits), l.value.map(f64::to_bits));
            prop_assert_eq!(f.forced, l.forced);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_disagrees_with_serde_json(
            unit in "[a-z0-9 \\\\\"\\x01é-]{0,6}",
            value in prop_oneof![Just("1".to_owned()), Just("-0.5e-3".to_owned()), Just("1e400".to_owned()), Just("12345678901234567890".to_owned()), Just("null".to_owned()), Just("01".to_owned()), Just("1.".to_owned()), "[0-9eE.+-]{1,6}"],
            forced in prop_oneof![Just("true"), Just("false"), Just("null"), Just("1")],
            extra in prop_oneof![Just(""), Just(",\"x\":[1]"), Just(",\"x\":\"y\""), Just(",\"unit\":\"z\""), Just(" ")],
        ) {
            let line = format!("{{\"type\":\"conversion\",\"ts\":\"t\",\"experiment\":\"e\",\"unit\":\"{unit}\",\"value\":{value},\"override\":{forced}{extra}}}");
            agrees_with_serde(&line)?;
        }
    }
}
