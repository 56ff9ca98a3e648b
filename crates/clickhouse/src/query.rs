//! The SQL of a report from ClickHouse ([`crate::fleet`] decodes the answers). Only SQL
//! that ClickHouse 18.16 and current releases both run the same way: no CTEs, no window
//! functions, explicit join strictness, every joined subquery aliased, every number cast
//! to the type the decoder reads (result types of functions differ between releases);
//! answers in RowBinary, so floats come back exact.

use crate::schema::Tables;

/// Settings every report query is sent with, so that servers whose defaults differ give
/// the same answer: a left join fills missing conversions with an empty array, not NULL.
pub const SETTINGS: [(&str, &str); 1] = [("join_use_nulls", "0")];

/// The time range of a report, in ns since the epoch: `[since, until)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Scope {
    fn range(&self) -> String {
        let mut s = String::new();
        if let Some(t) = self.since {
            s.push_str(&format!(" AND ts_ns >= {t}"));
        }
        if let Some(t) = self.until {
            s.push_str(&format!(" AND ts_ns < {t}"));
        }
        s
    }
}

/// A string literal.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Exposures that count: not forced by an override, with a unit.
fn exposures(experiment: &str, scope: &Scope) -> String {
    format!(
        "experiment = {} AND type = 'exposure' AND forced = 0 AND unit_missing = 0{}",
        literal(experiment),
        scope.range()
    )
}

fn conversions(experiment: &str, scope: &Scope) -> String {
    format!(
        "experiment = {} AND type = 'conversion'{}",
        literal(experiment),
        scope.range()
    )
}

/// Experiments with exposures or conversions in range: `experiment String`.
pub fn experiments(t: &Tables, scope: &Scope) -> String {
    format!(
        "SELECT DISTINCT experiment FROM {} WHERE type IN ('exposure', 'conversion'){} FORMAT RowBinary",
        t.events(),
        scope.range()
    )
}

/// Each phase: `phase String, last_ts Int64, units UInt64`.
pub fn phases(t: &Tables, experiment: &str, scope: &Scope) -> String {
    format!(
        "SELECT phase, toInt64(max(ts_ns)), toUInt64(uniqExact(unit)) FROM {} WHERE {} GROUP BY phase FORMAT RowBinary",
        t.events(),
        exposures(experiment, scope)
    )
}

/// The variants exposures name, in order of first appearance: `variant String`.
pub fn variants(t: &Tables, experiment: &str, scope: &Scope) -> String {
    format!(
        "SELECT variant FROM {} WHERE {} GROUP BY variant ORDER BY min(ts_ns), variant FORMAT RowBinary",
        t.events(),
        exposures(experiment, scope)
    )
}

/// `excluded UInt64`: distinct exposures forced by an override or without a unit. (Not a
/// scalar subquery beside [`conversions_total`]: current releases make those Nullable.)
pub fn excluded(t: &Tables, experiment: &str, scope: &Scope) -> String {
    format!(
        "SELECT toUInt64(uniqExact(event_id)) FROM {} WHERE experiment = {} AND type = 'exposure' AND (forced = 1 OR unit_missing = 1){} FORMAT RowBinary",
        t.events(),
        literal(experiment),
        scope.range(),
    )
}

/// `conversions UInt64`: distinct conversions (by unit and `event_id`).
pub fn conversions_total(t: &Tables, experiment: &str, scope: &Scope) -> String {
    format!(
        "SELECT toUInt64(count()) FROM (SELECT unit, event_id FROM {} WHERE {} GROUP BY unit, event_id) FORMAT RowBinary",
        t.events(),
        conversions(experiment, scope),
    )
}

/// One row per unit of `phase`:
/// `unit String, first Int64, variant String, config_version String,
/// variants_seen UInt64, second Int64, matched UInt64,
/// counted Array(Tuple(Int64, Float64)), before UInt64`.
///
/// `first`/`variant`/`config_version`: the earliest exposure (ties: the smaller variant
/// name, then the smaller version); `second`: the earliest exposure in another variant
/// when `variants_seen > 1` (the crossover); `matched`: the unit's distinct conversions;
/// `counted`: those at or after `first` and at most `window_ns` after it (ts, value; a
/// conversion without a value counts 1); `before`: those before `first`. The rest of
/// `matched` fell outside the window.
pub fn units(t: &Tables, experiment: &str, scope: &Scope, phase: &str, window_ns: i64) -> String {
    format!(
        "SELECT unit, s[1].1 AS first_seen, s[1].2, s[1].3, toUInt64(length(s)), s[2].1, toUInt64(length(convs)), \
           arrayFilter(c -> c.1 >= first_seen AND c.1 - first_seen <= {window_ns}, convs), \
           toUInt64(arrayCount(c -> c.1 < first_seen, convs)) \
         FROM {} FORMAT RowBinary",
        per_unit(t, experiment, scope, phase)
    )
}

/// Per variant, the counted units of `phase` (crossovers left out) and those with a
/// conversion within the window: `variant String, units UInt64, converted UInt64`; the
/// same rules as [`units`], summed where the data is.
pub fn variant_counts(
    t: &Tables,
    experiment: &str,
    scope: &Scope,
    phase: &str,
    window_ns: i64,
) -> String {
    format!(
        "SELECT variant, toUInt64(count()), toUInt64(countIf(converted)) FROM ( \
           SELECT s[1].2 AS variant, length(s) AS seen, s[1].1 AS first_seen, \
             arrayExists(c -> c.1 >= first_seen AND c.1 - first_seen <= {window_ns}, convs) AS converted \
           FROM {} \
         ) AS counted WHERE seen = 1 GROUP BY variant ORDER BY variant FORMAT RowBinary",
        per_unit(t, experiment, scope, phase)
    )
}

/// Each unit of `phase` with `s` (its first exposure per variant, (ts, variant, version),
/// sorted) and `convs` (its distinct conversions, (ts, value), empty when none).
fn per_unit(t: &Tables, experiment: &str, scope: &Scope, phase: &str) -> String {
    format!(
        "( \
           SELECT unit, arraySort(groupArray((first_ts, variant, version))) AS s \
           FROM ( \
             SELECT unit, variant, min((ts_ns, config_version)) AS fv, \
               tupleElement(fv, 1) AS first_ts, tupleElement(fv, 2) AS version \
             FROM {events} WHERE {exp} AND phase = {phase} \
             GROUP BY unit, variant \
           ) AS per_variant \
           GROUP BY unit \
         ) AS x \
         ALL LEFT JOIN ( \
           SELECT unit, groupArray((conv_ts, conv_value)) AS convs \
           FROM ( \
             SELECT unit, event_id, min(ts_ns) AS conv_ts, min(ifNull(value, toFloat64(1))) AS conv_value \
             FROM {events} WHERE {conv} \
             GROUP BY unit, event_id \
           ) AS distinct_conversions \
           GROUP BY unit \
         ) AS y USING unit",
        events = t.events(),
        exp = exposures(experiment, scope),
        conv = conversions(experiment, scope),
        phase = literal(phase),
    )
}

/// The shares history, one row per (line, experiment, variant), a line's rows adjacent:
/// `replica String, ts_ns Int64, config_version String, experiment String,
/// variant String, share Float64`. Duplicates of a retried batch collapse.
pub fn versions(t: &Tables) -> String {
    format!(
        "SELECT replica, ts_ns, config_version, experiment, variant, any(share) \
         FROM {} GROUP BY replica, ts_ns, config_version, experiment, variant \
         ORDER BY replica, ts_ns, config_version, experiment, variant FORMAT RowBinary",
        t.versions()
    )
}

/// Model monitoring's labelled predictions: the latest `limit` per variant of
/// `experiment`'s `phase` made at or before `matured_ns` (their attribution window has
/// closed), each labelled 1 when its unit has a conversion (of any replica) at or after it
/// and at most `window_ns` later: `variant String, score Float64, label UInt64`. Copies of
/// a prediction line (a batch shipped twice) collapse by `event_id`.
pub fn quality_pairs(
    t: &Tables,
    experiment: &str,
    phase: &str,
    window_ns: i64,
    matured_ns: i64,
    limit: usize,
) -> String {
    format!(
        "SELECT variant, score, toUInt64(arrayExists(c -> c >= at AND c - at <= {window_ns}, convs)) \
         FROM ( \
           SELECT event_id, any(unit) AS unit, any(variant) AS variant, min(ts_ns) AS at, \
             ifNull(any(value), toFloat64(-1)) AS score \
           FROM {events} WHERE type = 'prediction' AND experiment = {exp} AND phase = {phase} \
             AND ts_ns <= {matured_ns} \
           GROUP BY event_id \
         ) AS p \
         ALL LEFT JOIN ( \
           SELECT unit, groupArray(conv_ts) AS convs \
           FROM ( \
             SELECT unit, event_id, min(ts_ns) AS conv_ts FROM {events} WHERE {conv} \
             GROUP BY unit, event_id \
           ) AS distinct_conversions \
           GROUP BY unit \
         ) AS y USING unit \
         WHERE score >= 0 AND score <= 1 \
         ORDER BY variant, at DESC LIMIT {limit} BY variant FORMAT RowBinary",
        events = t.events(),
        exp = literal(experiment),
        phase = literal(phase),
        conv = conversions(experiment, &Scope::default()),
    )
}

/// Every replica's lines of type `kind` (`monitor`: model monitoring's windows; `shadow`:
/// shadow traffic's compared copies) of `experiment`: `payload String` (the line). A line
/// shipped twice (a retried insert) comes once.
pub fn typed_lines(t: &Tables, kind: &str, experiment: &str) -> String {
    format!(
        "SELECT any(payload) FROM {} WHERE type = {} AND experiment = {} \
         GROUP BY event_id ORDER BY min(ts_ns) FORMAT RowBinary",
        t.events(),
        literal(kind),
        literal(experiment)
    )
}

/// Every replica's rollout actions for `experiment`: `payload String` (the line).
pub fn rollouts(t: &Tables, experiment: &str) -> String {
    format!(
        "SELECT payload FROM {} WHERE experiment = {} ORDER BY ts_ns FORMAT RowBinary",
        t.rollouts(),
        literal(experiment)
    )
}

/// The arms a rollout's guardrails compare.
#[derive(Debug, Clone, Copy)]
pub struct Arms<'a> {
    pub experiment: &'a str,
    pub control: &'a str,
    pub treatment: &'a str,
}

impl Arms<'_> {
    fn exposures(&self, since_ns: i64) -> String {
        format!(
            "{} AND variant IN ({}, {})",
            exposures(
                self.experiment,
                &Scope {
                    since: Some(since_ns),
                    until: None
                }
            ),
            literal(self.control),
            literal(self.treatment)
        )
    }
}

/// The error guardrail's tallies of each arm from `attempt_ns` on, as the replica's own
/// tally keeps them (a unit of each arm it was served by; copies of an exposure counted
/// once by `event_id`): `variant String, units UInt64, Σ rate Float64, Σ rate² Float64,
/// requests UInt64, failed UInt64, units seen since step_ns UInt64`.
pub fn guardrail_units(t: &Tables, arms: &Arms, attempt_ns: i64, step_ns: i64) -> String {
    format!(
        "SELECT variant, toUInt64(count()), toFloat64(sum(rate)), toFloat64(sum(rate * rate)), \
         toUInt64(sum(req)), toUInt64(sum(failed)), toUInt64(sum(last_ns >= {step_ns})) \
         FROM (SELECT unit, variant, uniqExact(event_id) AS req, \
         uniqExactIf(event_id, status >= 500 OR aborted = 1) AS failed, \
         failed / req AS rate, max(ts_ns) AS last_ns \
         FROM {} WHERE {} GROUP BY unit, variant) \
         GROUP BY variant FORMAT RowBinary",
        t.events(),
        arms.exposures(attempt_ns)
    )
}

/// The latency guardrail's window `(from_ns, to_ns]` of each arm: `variant String,
/// requests UInt64, p99 Float64` (ms).
pub fn guardrail_latency(t: &Tables, arms: &Arms, from_ns: i64, to_ns: i64) -> String {
    format!(
        "SELECT variant, toUInt64(uniqExact(event_id)), \
         toFloat64(quantileExact(0.99)(ifNull(latency_ms, 0))) \
         FROM {} WHERE {} AND ts_ns <= {to_ns} AND isNotNull(latency_ms) \
         GROUP BY variant FORMAT RowBinary",
        t.events(),
        arms.exposures(from_ns + 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(r"it's a \ test"), r"'it\'s a \\ test'");
    }
}
