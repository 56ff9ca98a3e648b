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

impl Event {
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
