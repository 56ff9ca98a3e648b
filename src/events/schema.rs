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
        }
    }
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
            assert_eq!(
                serde_json::from_str::<Event>(&borrowed).unwrap(),
                Event::Exposure(x)
            );
        }
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
