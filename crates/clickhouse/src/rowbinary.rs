//! Event lines as RowBinary rows of the events table ([`crate::schema::EVENT_COLUMNS`]).
//!
//! RowBinary rather than JSONEachRow: floats travel as their exact bits (ClickHouse 18.16
//! parses some JSON doubles one or two ULP off), and a line ClickHouse could never take
//! (no `ts`, a wrong type) is found here, one line at a time, instead of failing a whole
//! batch on the server.
//!
//! The encoding, per column type: `String` a LEB128 length then the bytes; integers
//! little-endian; `Float64` its IEEE bits little-endian; `Nullable(T)` a byte (1: null)
//! then T when not null; `Date` days since 1970-01-01 as a UInt16.

use std::borrow::Cow;

use serde::Deserialize;

/// Why a line cannot be a row: it goes to the dead-letter file, and the lines after it
/// ship.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("not an event line: {0}")]
    NotAnEvent(String),
    #[error("ts {0:?} is not an RFC 3339 time from 1970 to 2149")]
    Ts(String),
    #[error("a {kind} line needs {field}")]
    Missing { kind: String, field: &'static str },
}

/// The fields of a line that have columns of their own; the rest stays in `payload`.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(default, borrow)]
    experiment: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    unit: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    variant: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    phase: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    config_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    route: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    aborted: bool,
    #[serde(default, rename = "override")]
    forced: bool,
    #[serde(default)]
    unit_missing: bool,
    #[serde(default)]
    value: Option<f64>,
}

const NS_PER_DAY: i64 = 86_400_000_000_000;

/// Appends `line` (one JSON object, no newline) to `out` as a row. `replica` names the
/// replica that wrote it; `fallback_id` is the event id of a line that carries none (an
/// exposure's is its `request_id`, a conversion's its `event_id`): a stable one, so that a
/// line shipped twice has the same id both times. On an error `out` is unchanged.
pub fn encode_event(
    line: &[u8],
    replica: &str,
    fallback_id: impl FnOnce() -> String,
    out: &mut Vec<u8>,
) -> Result<(), LineError> {
    let l: Line = serde_json::from_slice(line).map_err(|e| LineError::NotAnEvent(e.to_string()))?;
    let ts_ns =
        cohort_events::clock::parse_nanos(&l.ts).ok_or_else(|| LineError::Ts(l.ts.to_string()))?;
    let days =
        u16::try_from(ts_ns.div_euclid(NS_PER_DAY)).map_err(|_| LineError::Ts(l.ts.to_string()))?;
    let required: &[(&'static str, bool)] = match &*l.kind {
        "exposure" => &[
            ("experiment", l.experiment.is_some()),
            ("unit", l.unit.is_some()),
            ("variant", l.variant.is_some()),
        ],
        "conversion" => &[
            ("experiment", l.experiment.is_some()),
            ("unit", l.unit.is_some()),
        ],
        _ => &[],
    };
    if let Some((field, _)) = required.iter().find(|(_, present)| !present) {
        return Err(LineError::Missing {
            kind: l.kind.to_string(),
            field,
        });
    }
    let id = match &*l.kind {
        "exposure" => l.request_id.as_deref().map(str::to_owned),
        _ => l.event_id.as_deref().map(str::to_owned),
    }
    .unwrap_or_else(fallback_id);
    let text = |s: &Option<Cow<str>>| s.as_deref().unwrap_or("").to_owned();
    out.extend_from_slice(&days.to_le_bytes());
    string(out, &l.ts);
    out.extend_from_slice(&ts_ns.to_le_bytes());
    string(out, &l.kind);
    string(out, &id);
    for s in [
        &l.experiment,
        &l.unit,
        &l.variant,
        &l.phase,
        &l.config_version,
        &l.route,
        &l.request_id,
    ] {
        string(out, &text(s));
    }
    out.extend_from_slice(&l.status.unwrap_or(0).to_le_bytes());
    nullable_f64(out, l.latency_ms);
    out.extend_from_slice(&[
        u8::from(l.aborted),
        u8::from(l.forced),
        u8::from(l.unit_missing),
    ]);
    nullable_f64(out, l.value);
    string(out, replica);
    string_bytes(out, line);
    Ok(())
}

/// One line of `config-versions.jsonl` as rows of the versions table, one per (experiment,
/// variant); the line is skipped (Err) when it is not one.
pub fn encode_versions(line: &[u8], replica: &str, out: &mut Vec<u8>) -> Result<usize, LineError> {
    #[derive(Deserialize)]
    struct Versions {
        ts: String,
        config_version: String,
        shares: std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>,
    }
    let v: Versions =
        serde_json::from_slice(line).map_err(|e| LineError::NotAnEvent(e.to_string()))?;
    let ts_ns =
        cohort_events::clock::parse_nanos(&v.ts).ok_or_else(|| LineError::Ts(v.ts.clone()))?;
    let mut rows = 0;
    for (experiment, shares) in &v.shares {
        for (variant, share) in shares {
            string(out, &v.ts);
            out.extend_from_slice(&ts_ns.to_le_bytes());
            string(out, &v.config_version);
            string(out, experiment);
            string(out, variant);
            out.extend_from_slice(&share.to_le_bytes());
            string(out, replica);
            rows += 1;
        }
    }
    Ok(rows)
}

/// One line of `rollouts.jsonl` as a row of the rollouts table; the line is skipped (Err)
/// when it is not a rollout event.
pub fn encode_rollout(line: &[u8], replica: &str, out: &mut Vec<u8>) -> Result<usize, LineError> {
    #[derive(Deserialize)]
    struct Head {
        ts: String,
        experiment: String,
        rollout_id: String,
        kind: String,
    }
    let h: Head = serde_json::from_slice(line).map_err(|e| LineError::NotAnEvent(e.to_string()))?;
    let ts_ns =
        cohort_events::clock::parse_nanos(&h.ts).ok_or_else(|| LineError::Ts(h.ts.clone()))?;
    string(out, &h.ts);
    out.extend_from_slice(&ts_ns.to_le_bytes());
    string(out, &h.experiment);
    string(out, &h.rollout_id);
    string(out, &h.kind);
    string(out, replica);
    string_bytes(out, line);
    Ok(1)
}

fn string(out: &mut Vec<u8>, s: &str) {
    string_bytes(out, s.as_bytes());
}

fn string_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let mut n = b.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(b);
}

fn nullable_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(x) => {
            out.push(0);
            out.extend_from_slice(&x.to_le_bytes());
        }
        None => out.push(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128() {
        for (len, prefix) in [
            (0usize, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            string_bytes(&mut out, &vec![b'x'; len]);
            assert_eq!(&out[..prefix.len()], &prefix[..], "{len}");
            assert_eq!(out.len(), prefix.len() + len);
        }
    }

    #[test]
    fn a_line_that_cannot_be_a_row_leaves_the_batch_untouched() {
        let mut out = vec![7];
        for (line, want) in [
            (&b"not json"[..], "not an event line"),
            (br#"{"type":"exposure","ts":"yesterday","experiment":"e","unit":"u","variant":"a"}"#, "is not an RFC 3339 time"),
            (br#"{"type":"exposure","ts":"1969-12-31T23:59:59Z","experiment":"e","unit":"u","variant":"a"}"#, "is not an RFC 3339 time"),
            (br#"{"type":"exposure","ts":"2026-11-25T00:00:00Z","experiment":"e","unit":"u"}"#, "needs variant"),
            (br#"{"type":"conversion","ts":"2026-11-25T00:00:00Z","unit":"u"}"#, "needs experiment"),
            (br#"{"type":"exposure","ts":"2026-11-25T00:00:00Z","experiment":"e","unit":"u","variant":"a","status":"ok"}"#, "not an event line"),
        ] {
            let e = encode_event(line, "r", || "id".into(), &mut out).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        assert_eq!(out, [7]);
        // Another type with a time is kept (its payload is the whole line).
        encode_event(
            br#"{"type":"rollout","ts":"2026-11-25T00:00:00Z","step":2}"#,
            "r",
            || "id".into(),
            &mut out,
        )
        .unwrap();
        assert!(out.len() > 1);
    }

    #[test]
    fn ids_come_from_the_line_else_from_the_fallback() {
        let id_of = |line: &[u8]| {
            let mut out = Vec::new();
            encode_event(line, "r", || "fallback".into(), &mut out).unwrap();
            // date (2) + ts + ts_ns (8) + type, then the id.
            let mut i = 2;
            let skip = |i: &mut usize, out: &[u8]| {
                let n = out[*i] as usize;
                *i += 1 + n;
            };
            skip(&mut i, &out);
            i += 8;
            skip(&mut i, &out);
            let n = out[i] as usize;
            String::from_utf8(out[i + 1..i + 1 + n].to_vec()).unwrap()
        };
        let ts = "\"ts\":\"2026-11-25T00:00:00Z\",\"experiment\":\"e\",\"unit\":\"u\"";
        assert_eq!(id_of(format!("{{\"type\":\"exposure\",{ts},\"variant\":\"a\",\"request_id\":\"c1~e~a~v~00\"}}").as_bytes()), "c1~e~a~v~00");
        assert_eq!(
            id_of(format!("{{\"type\":\"conversion\",{ts},\"event_id\":\"abc\"}}").as_bytes()),
            "abc"
        );
        assert_eq!(
            id_of(format!("{{\"type\":\"conversion\",{ts},\"request_id\":\"c1~x\"}}").as_bytes()),
            "fallback"
        );
    }
}
