//! Reported conversions: parsing and validating a batch, and attributing it.
//!
//! A body is one JSON object or JSON Lines (detected from the body, whatever the
//! Content-Type). Each entry: `{"experiment": E, "unit": U | "request_id": R, "value": V?,
//! "ts": T?}`. The whole batch is validated before anything is recorded and is accepted or
//! rejected as one, so a client's retry never double-writes half a batch.
//!
//! Attribution needs no shared state: any replica accepts any conversion. The analysis
//! joins conversions to exposures by unit; the variant recorded here is informational —
//! decoded from cohort's request id when one is given, else the unit's current assignment
//! (after a ramp that may differ from its exposure, and the exposure wins).

use std::sync::Arc;

use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::body::{json_response, Body};
use crate::metrics::Metrics;
use crate::request_id;
use crate::serving::Serving;
use cohort_config::assign;
use cohort_config::schema::UnitKind;
use cohort_config::Routes;
use cohort_events::{Conversion, EventLog};

/// What a refusal for a full spool asks the client to wait, in seconds.
const RETRY_AFTER_S: &str = "10";

/// One entry as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reported {
    experiment: String,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    ts: Option<String>,
}

/// Why one entry of a batch is refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    /// 1-based line of the body (1 for a single object).
    pub line: usize,
    pub reason: String,
}

/// Receives a batch from a request body (at most `conversions.max_body_bytes`) and
/// records it off the async runtime: 202 `{"accepted": n}`, 400 with every bad line, 413,
/// or 503 while the spool is full (nothing recorded; the client retries). The public path
/// and the admin API both answer through here.
pub async fn receive(
    body: Incoming,
    serving: Arc<Serving>,
    log: EventLog,
    metrics: Arc<Metrics>,
) -> Response<Body> {
    if log.spool_full() {
        let mut resp = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "the event spool is full (events.spool_max_bytes) until ClickHouse takes its backlog; nothing was recorded, retry later"}),
        );
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(RETRY_AFTER_S),
        );
        return resp;
    }
    let limit = serving.routes.file.conversions.max_body_bytes as usize;
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({"error": format!("the body exceeds conversions.max_body_bytes ({limit} bytes)")}),
            )
        }
    };
    let result =
        tokio::task::spawn_blocking(move || accept(&body, &serving.routes, &log, &metrics)).await;
    let (status, body) = match result {
        Ok(Ok(n)) => (StatusCode::ACCEPTED, serde_json::json!({"accepted": n})),
        Ok(Err(errors)) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "the batch was rejected as a whole; nothing was recorded", "errors": errors}),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": format!("recording failed: {e}")}),
        ),
    };
    json_response(status, &body)
}

/// Validates a batch and, if every entry is good, records all of it: the count accepted,
/// or every bad entry. Blocks while the event channel is full (a conversion the client was
/// told about is never dropped for lack of room): call it off the async runtime.
pub fn accept(
    body: &[u8],
    routes: &Routes,
    log: &EventLog,
    metrics: &Metrics,
) -> Result<usize, Vec<LineError>> {
    let batch = parse_batch(body, routes)?;
    let n = batch.len();
    for c in batch {
        metrics
            .conversions
            .with_label_values(&[&c.experiment, c.variant.as_deref().unwrap_or("")])
            .inc();
        log.record_blocking(cohort_events::Event::Conversion(c));
    }
    Ok(n)
}

/// Parses and validates a whole batch against the table in force.
pub fn parse_batch(body: &[u8], routes: &Routes) -> Result<Vec<Conversion>, Vec<LineError>> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(_) => {
            return Err(vec![LineError {
                line: 1,
                reason: "the body is not UTF-8".into(),
            }])
        }
    };
    // One JSON object (possibly pretty-printed over several lines), or JSON Lines.
    let entries: Vec<(usize, &str)> =
        if serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object()) {
            vec![(1, text)]
        } else {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| (i + 1, l))
                .collect()
        };
    if entries.is_empty() {
        return Err(vec![LineError {
            line: 1,
            reason: "the body holds no conversion".into(),
        }]);
    }
    let now = cohort_events::clock::now();
    let latest = cohort_events::clock::parse_nanos(&now)
        .unwrap_or(i64::MAX)
        .saturating_add(MAX_FUTURE_SKEW.as_nanos() as i64);
    let mut out = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for (line, raw) in entries {
        match one(raw, routes, &now, latest) {
            Ok(c) => out.push(c),
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// How far ahead of cohort's clock a conversion's `ts` may be: clocks disagree by
/// seconds, and a time further ahead is a mistake the report would skip later.
pub const MAX_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// The largest `value` a conversion may carry: any price, and sums that stay finite.
pub const MAX_VALUE: f64 = 1e12;

/// One entry, validated as the report will read it: whatever is acknowledged here is
/// counted there. `latest`: the latest `ts` accepted, in nanoseconds since the epoch.
fn one(raw: &str, routes: &Routes, now: &str, latest: i64) -> Result<Conversion, String> {
    let r: Reported = serde_json::from_str(raw).map_err(|e| format!("not a conversion: {e}"))?;
    let Some(exp) = routes.experiment(&r.experiment) else {
        let known: Vec<&str> = routes.experiments.iter().map(|e| e.name.as_str()).collect();
        return Err(format!(
            "unknown experiment {:?} (experiments: {})",
            r.experiment,
            known.join(", ")
        ));
    };
    if let Some(v) = r.value {
        if !v.is_finite() || !(0.0..=MAX_VALUE).contains(&v) {
            return Err(format!(
                "value must be a number from 0 to {MAX_VALUE} (got {v})"
            ));
        }
    }
    let ts = match r.ts {
        None => now.to_owned(),
        Some(ts) => match cohort_events::clock::parse_nanos(&ts) {
            None => {
                return Err(format!(
                    "ts {ts:?} is not an RFC 3339 time with an offset (e.g. 2026-12-02T14:10:00Z)"
                ))
            }
            Some(ns) if ns > latest => {
                return Err(format!(
                    "ts {ts:?} is in the future (more than {} s ahead of this server's clock)",
                    MAX_FUTURE_SKEW.as_secs()
                ))
            }
            Some(_) => ts,
        },
    };
    let decoded = r
        .request_id
        .as_deref()
        .map(|id| (id, request_id::parse(id)));
    let (unit, variant) = match (exp.unit, r.unit.as_deref().filter(|u| !u.is_empty()), decoded) {
        (_, None, None) => return Err("name the unit (\"unit\") or, with `unit: request`, the request (\"request_id\")".into()),
        (UnitKind::User, None, Some(_)) => {
            return Err(format!(
                "unit required: experiment {} randomizes by user, so a request id alone does not say who converted",
                exp.name
            ))
        }
        (UnitKind::Request, _, Some((id, None))) => {
            return Err(format!("{id:?} is not a cohort request id (x-cohort-request-id)"))
        }
        (UnitKind::Request, _, Some((_, Some(p)))) => {
            if p.experiment != exp.name {
                return Err(format!(
                    "request id belongs to experiment {:?}, not {:?}",
                    p.experiment, exp.name
                ));
            }
            (p.nonce.to_owned(), Some(p.variant.to_owned()))
        }
        (UnitKind::Request, Some(u), None) => (u.to_owned(), None),
        (UnitKind::User, Some(u), decoded) => {
            let from_id = decoded
                .and_then(|(_, p)| p)
                .filter(|p| p.experiment == exp.name)
                .map(|p| p.variant.to_owned());
            let variant = from_id.unwrap_or_else(|| exp.variants[assign(exp, u).variant].name.clone());
            (u.to_owned(), Some(variant))
        }
    };
    Ok(Conversion {
        v: Some(1),
        ts,
        experiment: exp.name.clone(),
        unit,
        variant,
        value: r.value,
        request_id: r.request_id,
        event_id: Some(format!("{:032x}", rand::random::<u128>())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(unit: &str) -> Routes {
        cohort_config::parse(
            "t.yaml",
            &format!("experiments:\n  - name: e\n    unit: {unit}\n    control: a\n    variants:\n      - {{ name: a, weight: 1, upstream: \"http://h:1\" }}\n      - {{ name: b, weight: 1, upstream: \"http://h:2\" }}\n"),
        )
        .unwrap()
    }

    #[test]
    fn single_objects_and_json_lines() {
        let r = routes("user");
        let one = parse_batch(
            b"{\n  \"experiment\": \"e\",\n  \"unit\": \"alice\",\n  \"value\": 3.5\n}",
            &r,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].value, Some(3.5));
        assert!(one[0].variant.is_some());
        let many = parse_batch(
            b"{\"experiment\":\"e\",\"unit\":\"a\"}\n\n{\"experiment\":\"e\",\"unit\":\"b\"}\n",
            &r,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
    }

    #[test]
    fn a_bad_batch_is_rejected_whole_with_line_numbers() {
        let r = routes("user");
        let body = b"{\"experiment\":\"e\",\"unit\":\"a\"}\n{\"experiment\":\"nope\",\"unit\":\"a\"}\n{\"experiment\":\"e\"}\n{\"experiment\":\"e\",\"request_id\":\"c1~e~a~v~00000000000000000000000000000000\"}\n{\"experiment\":\"e\",\"unit\":\"a\",\"valeu\":1}\n";
        let errors = parse_batch(body, &r).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(errors[0].reason.contains("unknown experiment \"nope\""));
        assert!(errors[2].reason.starts_with("unit required"));
        assert!(errors[3].reason.contains("valeu"));
    }

    #[test]
    fn request_units_come_from_cohorts_request_id() {
        let r = routes("request");
        let id = crate::request_id::mint_with("e", "b", "v", 42);
        let c = parse_batch(
            format!("{{\"experiment\":\"e\",\"request_id\":\"{id}\"}}").as_bytes(),
            &r,
        )
        .unwrap();
        assert_eq!(c[0].unit, format!("{:032x}", 42));
        assert_eq!(c[0].variant.as_deref(), Some("b"));
        let bad =
            parse_batch(b"{\"experiment\":\"e\",\"request_id\":\"client-made\"}", &r).unwrap_err();
        assert!(bad[0].reason.contains("not a cohort request id"));
    }

    #[test]
    fn times_and_values_the_report_could_not_read_are_refused_with_their_lines() {
        let r = routes("user");
        let body = [
            r#"{"experiment":"e","unit":"a","ts":"9999-12-31T23:59:59Z"}"#,
            r#"{"experiment":"e","unit":"b","ts":"2026-12-02 14:10:00"}"#,
            r#"{"experiment":"e","unit":"c","ts":"2026-12-02T14:10:00"}"#,
            r#"{"experiment":"e","unit":"d","ts":"yesterday"}"#,
            r#"{"experiment":"e","unit":"e","value":1e308}"#,
            r#"{"experiment":"e","unit":"f","value":-1}"#,
            r#"{"experiment":"e","unit":"g","ts":"2026-12-02T14:10:00+01:00","value":2.5}"#,
        ]
        .join("\n");
        let errors = parse_batch(body.as_bytes(), &r).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6], "{errors:?}");
        // The same entries one by one: the last is good.
        let good = parse_batch(body.lines().last().unwrap().as_bytes(), &r).unwrap();
        assert_eq!(good[0].ts, "2026-12-02T14:10:00+01:00");
        // Within the clock skew is not the future.
        let soon = cohort_events::clock::from_nanos(
            cohort_events::clock::parse_nanos(&cohort_events::clock::now()).unwrap()
                + 60_000_000_000,
        );
        let near = format!(r#"{{"experiment":"e","unit":"h","ts":"{soon}"}}"#);
        assert!(parse_batch(near.as_bytes(), &r).is_ok());
    }
}
