//! Event schema v1: one JSON object per line. Required fields let events from other
//! systems be analysed too; the optional ones are what cohort knows about its own.

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Exposure(Exposure),
    Conversion(Conversion),
}

/// A unit was assigned and served (written when the response ends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Schema version (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    /// The request's arrival, RFC 3339 UTC.
    pub ts: String,
    pub experiment: String,
    /// The randomization unit (user id, or cohort's request id with `unit: request`).
    pub unit: String,
    pub variant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Time to the upstream's response head (or to cohort's own error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The response failed after its head was sent.
    #[serde(default, skip_serializing_if = "is_false")]
    pub aborted: bool,
    /// Forced by `x-cohort-variant`: excluded from analysis.
    #[serde(default, rename = "override", skip_serializing_if = "is_false")]
    pub forced: bool,
    /// Served by the control without a unit id: excluded from analysis.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unit_missing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A business outcome reported for a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    pub ts: String,
    pub experiment: String,
    pub unit: String,
    /// Informational: the report joins conversions to exposures by unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Revenue etc.; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// This conversion's own id, unique across the fleet: cohort mints a random 128-bit one
    /// (32 hex digits) when it accepts the conversion, so that a copy delivered twice to a
    /// store is counted once. (An exposure's id is its `request_id`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// An exposure borrowed from what its producer holds, without a copy: serializes exactly
/// as [`Exposure`] (the same fields, names, order and omissions; a test holds them
/// together), so the writer can serialize and count it without building an [`Exposure`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ExposureRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    pub ts: &'a str,
    pub experiment: &'a str,
    pub unit: &'a str,
    pub variant: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "is_false")]
    pub aborted: bool,
    #[serde(rename = "override", skip_serializing_if = "is_false")]
    pub forced: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub unit_missing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'a str>,
    /// `ts` in nanoseconds since the epoch (None when `ts` is not RFC 3339); not written.
    #[serde(skip)]
    pub ts_ns: Option<i64>,
    /// `ts`, `experiment`, `variant`, `request_id`, `config_version` and `route` are
    /// known to hold nothing JSON escapes (cohort's own timestamps, validated names, hex,
    /// ids minted from them): [`EventRef::write_json`] copies them without a scan. Not
    /// written.
    #[serde(skip)]
    pub clean: bool,
}

/// A line of the log, borrowed: what the writer serializes and counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventRef<'a> {
    Exposure(ExposureRef<'a>),
    Conversion(&'a Conversion),
}

impl Exposure {
    /// This exposure, borrowed.
    pub fn view(&self) -> ExposureRef<'_> {
        ExposureRef {
            v: self.v,
            ts: &self.ts,
            experiment: &self.experiment,
            unit: &self.unit,
            variant: &self.variant,
            request_id: self.request_id.as_deref(),
            client_request_id: self.client_request_id.as_deref(),
            config_version: self.config_version.as_deref(),
            route: self.route.as_deref(),
            status: self.status,
            latency_ms: self.latency_ms,
            aborted: self.aborted,
            forced: self.forced,
            unit_missing: self.unit_missing,
            phase: self.phase.as_deref(),
            ts_ns: crate::clock::parse_nanos(&self.ts),
            clean: false,
        }
    }
}

impl EventRef<'_> {
    /// Appends this event as one JSON object (no newline), byte for byte what
    /// `serde_json::to_writer` makes of it (a test holds them equal). Exposures, one per
    /// request, are written by hand: serde's generic path costs several times as much
    /// (every string is escaped byte by byte, every key is a call).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            EventRef::Exposure(x) => x.write_json(out),
            // Plain data always serializes; a failure would be a bug, not an I/O condition.
            EventRef::Conversion(_) => {
                let _ = serde_json::to_writer(&mut *out, self);
            }
        }
    }
}

impl ExposureRef<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":\"exposure\"");
        if let Some(v) = self.v {
            out.extend_from_slice(b",\"v\":");
            write_uint(out, u64::from(v));
        }
        let clean = self.clean;
        for (key, value, clean) in [
            (&b",\"ts\":"[..], self.ts, clean),
            (b",\"experiment\":", self.experiment, clean),
            (b",\"unit\":", self.unit, false),
            (b",\"variant\":", self.variant, clean),
        ] {
            out.extend_from_slice(key);
            write_str(out, value, clean);
        }
        for (key, value, clean) in [
            (&b",\"request_id\":"[..], self.request_id, clean),
            (b",\"client_request_id\":", self.client_request_id, false),
            (b",\"config_version\":", self.config_version, clean),
            (b",\"route\":", self.route, clean),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(key);
                write_str(out, value, clean);
            }
        }
        if let Some(status) = self.status {
            out.extend_from_slice(b",\"status\":");
            write_uint(out, u64::from(status));
        }
        if let Some(ms) = self.latency_ms {
            out.extend_from_slice(b",\"latency_ms\":");
            // serde_json's own float formatting (shortest round-trip; null if not finite).
            let _ = serde_json::to_writer(&mut *out, &ms);
        }
        for (key, set) in [
            (&b",\"aborted\":true"[..], self.aborted),
            (b",\"override\":true", self.forced),
            (b",\"unit_missing\":true", self.unit_missing),
        ] {
            if set {
                out.extend_from_slice(key);
            }
        }
        if let Some(phase) = self.phase {
            out.extend_from_slice(b",\"phase\":");
            write_str(out, phase, false);
        }
        out.push(b'}');
    }
}

/// A JSON string. Names, ids and timestamps rarely hold anything to escape: one scan
/// finds out (none for a string known `clean`), and only a string that needs it goes
/// through serde_json's escaper.
fn write_str(out: &mut Vec<u8>, s: &str, clean: bool) {
    if !clean && needs_escape(s.as_bytes()) {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `bytes` hold a control character, a quote or a backslash. Eight bytes at a
/// time: `(x - 0x01…01 * n) & !x & 0x80…80` is non-zero exactly when some byte of `x` is
/// below `n` (n ≤ 0x80), and a byte equal to `c` is a zero byte of `x ^ 0x01…01 * c`.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        let x = u64::from_le_bytes(le);
        if below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn write_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl<'a> EventRef<'a> {
    pub fn experiment(&self) -> &'a str {
        match self {
            EventRef::Exposure(e) => e.experiment,
            EventRef::Conversion(c) => &c.experiment,
        }
    }

    /// The unit the event is about.
    pub fn unit(&self) -> &'a str {
        match self {
            EventRef::Exposure(e) => e.unit,
            EventRef::Conversion(c) => &c.unit,
        }
    }
}

impl Event {
    /// This event, borrowed.
    pub fn view(&self) -> EventRef<'_> {
        match self {
            Event::Exposure(e) => EventRef::Exposure(e.view()),
            Event::Conversion(c) => EventRef::Conversion(c),
        }
    }

    pub fn experiment(&self) -> &str {
        match self {
            Event::Exposure(e) => &e.experiment,
            Event::Conversion(c) => &c.experiment,
        }
    }

    /// The unit the event is about.
    pub fn unit(&self) -> &str {
        match self {
            Event::Exposure(e) => &e.unit,
            Event::Conversion(c) => &c.unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_exposure_serializes_exactly_as_an_owned_one() {
        let full = Exposure {
            v: Some(1),
            ts: "2026-11-25T15:00:00.123Z".into(),
            experiment: "iris-model".into(),
            unit: "user \"quoted\" \u{7}\u{e9}".into(),
            variant: "rf".into(),
            request_id: Some("c1~iris-model~rf~v~00".into()),
            client_request_id: Some("client\\id".into()),
            config_version: Some("0123456789abcdef".into()),
            route: Some("iris".into()),
            status: Some(502),
            latency_ms: Some(3.25),
            aborted: true,
            forced: true,
            unit_missing: true,
            phase: Some("iris-2026-11".into()),
        };
        let bare = Exposure {
            v: None,
            request_id: None,
            client_request_id: None,
            config_version: None,
            route: None,
            status: None,
            latency_ms: None,
            aborted: false,
            forced: false,
            unit_missing: false,
            phase: None,
            ..full.clone()
        };
        for x in [full, bare] {
            let owned = serde_json::to_string(&Event::Exposure(x.clone())).unwrap();
            let borrowed = serde_json::to_string(&EventRef::Exposure(x.view())).unwrap();
            assert_eq!(owned, borrowed);
            let mut by_hand = Vec::new();
            EventRef::Exposure(x.view()).write_json(&mut by_hand);
            assert_eq!(String::from_utf8(by_hand).unwrap(), owned);
            assert_eq!(
                serde_json::from_str::<Event>(&borrowed).unwrap(),
                Event::Exposure(x)
            );
        }
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        // Plain names, and anything JSON must escape: quotes, backslashes, every control
        // character, DEL, non-ASCII.
        proptest::string::string_regex(r#"([a-z0-9._~-]|["\\\x00-\x1f\x7f]|é|😀){0,12}"#).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn exposures_written_by_hand_are_what_serde_writes(
            ts in text(), experiment in text(), unit in text(), variant in text(),
            ids in proptest::collection::vec(proptest::option::of(text()), 5),
            v in proptest::option::of(proptest::prelude::any::<u32>()),
            status in proptest::option::of(proptest::prelude::any::<u16>()),
            latency_ms in proptest::option::of(proptest::prelude::any::<f64>()),
            flags in proptest::prelude::any::<[bool; 3]>(),
        ) {
            let x = Exposure {
                v, ts, experiment, unit, variant,
                request_id: ids[0].clone(),
                client_request_id: ids[1].clone(),
                config_version: ids[2].clone(),
                route: ids[3].clone(),
                status, latency_ms,
                aborted: flags[0], forced: flags[1], unit_missing: flags[2],
                phase: ids[4].clone(),
            };
            let serde = serde_json::to_string(&Event::Exposure(x.clone())).unwrap();
            let mut by_hand = Vec::new();
            EventRef::Exposure(x.view()).write_json(&mut by_hand);
            proptest::prop_assert_eq!(String::from_utf8(by_hand).unwrap(), serde);
        }
    }

    #[test]
    fn escapes_are_found_at_every_position() {
        for len in 0..20 {
            let plain = "a".repeat(len);
            assert!(!needs_escape(plain.as_bytes()));
            assert!(!needs_escape("é😀~\u{7f}".as_bytes()));
            for at in 0..len {
                for c in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
                    let mut b = plain.clone().into_bytes();
                    b[at] = c;
                    assert!(needs_escape(&b), "{b:?}");
                }
            }
        }
    }

    #[test]
    fn clean_names_are_copied_as_they_are() {
        let x = Exposure {
            v: Some(1),
            ts: "2026-11-25T15:00:00.123Z".into(),
            experiment: "iris-model".into(),
            unit: "user \"1\"".into(),
            variant: "rf".into(),
            request_id: Some("c1~iris-model~rf~0123456789abcdef~00".into()),
            client_request_id: Some("a\\b".into()),
            config_version: Some("0123456789abcdef".into()),
            route: Some("iris".into()),
            status: Some(200),
            latency_ms: Some(1.5),
            aborted: false,
            forced: false,
            unit_missing: false,
            phase: Some("salt \"x\"".into()),
        };
        let mut by_hand = Vec::new();
        EventRef::Exposure(ExposureRef {
            clean: true,
            ..x.view()
        })
        .write_json(&mut by_hand);
        assert_eq!(
            String::from_utf8(by_hand).unwrap(),
            serde_json::to_string(&Event::Exposure(x)).unwrap()
        );
    }

    #[test]
    fn conversions_are_written_by_serde() {
        let c = Conversion {
            v: Some(1),
            ts: "2026-11-25T00:00:01Z".into(),
            experiment: "e".into(),
            unit: "u\"1".into(),
            variant: None,
            value: Some(9.5),
            request_id: None,
            event_id: None,
        };
        let mut out = Vec::new();
        EventRef::Conversion(&c).write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&Event::Conversion(c)).unwrap()
        );
    }

    #[test]
    fn minimal_lines_from_other_systems_parse() {
        let e: Event = serde_json::from_str(
            r#"{"type":"exposure","ts":"2026-11-25T00:00:00Z","experiment":"e","unit":"u","variant":"a"}"#,
        )
        .unwrap();
        assert_eq!(e.experiment(), "e");
        let c: Event = serde_json::from_str(
            r#"{"type":"conversion","ts":"2026-11-25T00:00:01Z","experiment":"e","unit":"u","value":9.5}"#,
        )
        .unwrap();
        assert!(matches!(c, Event::Conversion(Conversion { value: Some(v), .. }) if v == 9.5));
    }

    #[test]
    fn optional_fields_are_left_out_and_override_is_spelled_override() {
        let e = Event::Exposure(Exposure {
            v: Some(1),
            ts: "t".into(),
            experiment: "e".into(),
            unit: "u".into(),
            variant: "a".into(),
            request_id: None,
            client_request_id: None,
            config_version: None,
            route: None,
            status: Some(200),
            latency_ms: None,
            aborted: false,
            forced: true,
            unit_missing: false,
            phase: None,
        });
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"type":"exposure","v":1,"ts":"t","experiment":"e","unit":"u","variant":"a","status":200,"override":true}"#
        );
    }
}
