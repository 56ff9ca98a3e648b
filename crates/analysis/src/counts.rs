//! Live per-variant counts, kept by the writer thread from the events it has written.
//!
//! Because only written events are counted (never one that was dropped), the counts are
//! exactly what a reader of the same log finds — the property `cohort report` relies on.
//! They are updated off the request path (the writer thread), and rebuilt on start by
//! replaying the event directory.
//!
//! A unit counts in the variant of its *first* exposure (later exposures in another
//! variant, after a ramp, are crossover and do not move it); forced (`override`) and
//! unit-less exposures count as requests only. A conversion counts its unit once (the
//! value sums); a conversion for a unit never exposed is counted as unattributed.
//!
//! Memory: one entry per distinct unit (a 128-bit hash of its id, its variant index, a
//! converted flag) in a hash map, whatever the id's length; measured in the README.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use crate::analyze::{count, Setup};
use crate::report::Report;
use crate::rollout::RolloutLog;
use crate::tally::{unit_key, ExposureObs};
use crate::tally::{ExperimentTally, Tally};
use crate::versions::ConfigVersions;
use cohort_events::{Event, EventRef};
use cohort_stats::decision::{Decision, Status};

/// Latency bucket upper bounds in milliseconds (the last bucket is everything above).
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Counts of one variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VariantCounts {
    /// Exposures (every request, forced and unit-less included).
    pub requests: u64,
    /// Exposures with status ≥ 500 or an aborted response.
    pub errors: u64,
    /// Distinct units whose first exposure was this variant (analysis units).
    pub units: u64,
    /// Of those, units with at least one conversion.
    pub converted_units: u64,
    /// Conversion events attributed here.
    pub conversions: u64,
    /// Sum of conversion values (1 each when absent).
    pub value_sum: f64,
    /// Requests per latency bucket ([`LATENCY_BUCKETS_MS`], plus one overflow bucket).
    pub latency_ms_buckets: Vec<u64>,
}

/// Counts of one experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExperimentCounts {
    pub variants: BTreeMap<String, VariantCounts>,
    /// Conversions for units never exposed (in this log).
    pub unattributed_conversions: u64,
}

#[derive(Default)]
struct ExperimentState {
    counts: ExperimentCounts,
    variant_names: Vec<String>,
    /// [`unit_key`] of the unit → (index into variant_names, converted). The 128-bit key
    /// (shared with the tally) stands for the id: no copy of it is kept, and a collision
    /// needs ~2⁶⁴ units.
    units: HashMap<u128, (u32, bool), foldhash::fast::RandomState>,
}

/// The index of `name` in `names`, added at the end when new.
fn variant_index(names: &mut Vec<String>, name: &str) -> u32 {
    match names.iter().position(|v| v == name) {
        Some(i) => i as u32,
        None => {
            names.push(name.to_owned());
            (names.len() - 1) as u32
        }
    }
}

impl ExperimentState {
    fn variant(&mut self, name: &str) -> &mut VariantCounts {
        // Looked up before the entry API, which would allocate the key on every event.
        if self.counts.variants.contains_key(name) {
            return self
                .counts
                .variants
                .get_mut(name)
                .expect("present: just checked");
        }
        self.counts
            .variants
            .entry(name.to_owned())
            .or_insert_with(|| VariantCounts {
                latency_ms_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
                ..VariantCounts::default()
            })
    }
}

/// Every experiment's counts.
#[derive(Default)]
pub struct LiveCounts {
    inner: Mutex<HashMap<String, ExperimentState, foldhash::fast::RandomState>>,
    /// The analysis' own tally of the same events (the live report).
    tally: Mutex<Tally>,
    /// experiment → (salt, when and why) of a sample-ratio failure seen live: the report
    /// stays `invalid` until the salt changes (a new phase).
    latched: Mutex<HashMap<String, (String, String), foldhash::fast::RandomState>>,
}

impl LiveCounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies written events, in log order.
    pub fn apply<'a>(&self, events: impl IntoIterator<Item = &'a Event>) {
        self.apply_refs(events.into_iter().map(Event::view));
    }

    /// Applies written events, borrowed (what the writer thread holds), in log order.
    pub fn apply_refs<'a>(&self, events: impl IntoIterator<Item = EventRef<'a>>) {
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            let key = unit_key(e.unit());
            add_to_tally(&mut tally, &e, key);
            let name = e.experiment();
            if !all.contains_key(name) {
                all.insert(name.to_owned(), ExperimentState::default());
            }
            let Some(st) = all.get_mut(name) else {
                continue;
            };
            match e {
                EventRef::Exposure(x) => {
                    // A unit is counted where it was first exposed. One probe of the unit
                    // map (the entry), not a lookup and then an insert.
                    let first = !(x.forced || x.unit_missing)
                        && match st.units.entry(key) {
                            Entry::Vacant(slot) => {
                                slot.insert((
                                    variant_index(&mut st.variant_names, x.variant),
                                    false,
                                ));
                                true
                            }
                            Entry::Occupied(_) => false,
                        };
                    let v = st.variant(x.variant);
                    v.requests += 1;
                    v.units += u64::from(first);
                    if x.aborted || x.status.is_some_and(|s| s >= 500) {
                        v.errors += 1;
                    }
                    if let Some(ms) = x.latency_ms {
                        let i = LATENCY_BUCKETS_MS.partition_point(|&b| b < ms);
                        v.latency_ms_buckets[i] += 1;
                    }
                }
                EventRef::Conversion(c) => {
                    let Some(unit) = st.units.get_mut(&key) else {
                        st.counts.unattributed_conversions += 1;
                        continue;
                    };
                    let (idx, converted) = *unit;
                    unit.1 = true;
                    let name = st.variant_names[idx as usize].clone();
                    let v = st.variant(&name);
                    v.conversions += 1;
                    v.value_sum += c.value.unwrap_or(1.0);
                    if !converted {
                        v.converted_units += 1;
                    }
                }
            }
        }
    }

    /// A copy of one experiment's counts.
    pub fn experiment(&self, name: &str) -> Option<ExperimentCounts> {
        let all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        all.get(name).map(|s| s.counts.clone())
    }

    /// The live report of `exp`: the same analysis `cohort report` runs, over the events
    /// this process has written (`events_dir` holds config-versions.jsonl and
    /// rollouts.jsonl). A sample-ratio failure latches until the experiment's salt changes.
    pub fn report(&self, exp: &cohort_config::Experiment, events_dir: &std::path::Path) -> Report {
        let mut versions = ConfigVersions::default();
        if let Err(e) = versions.add_dir(events_dir) {
            tracing::warn!(error = %e, "cannot read config-versions.jsonl; the configured shares are used");
        }
        let mut rollouts = RolloutLog::default();
        if let Err(e) = rollouts.add_dir(events_dir) {
            tracing::warn!(error = %e, "cannot read rollouts.jsonl; the report has no rollout");
        }
        let rollout = rollouts.rollout(&exp.name, Some(exp), &versions);
        let setup = Setup::of(exp, std::sync::Arc::new(versions));
        let counted = {
            let tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            let empty = ExperimentTally::default();
            let t = tally.experiments.get(&exp.name).unwrap_or(&empty);
            count(t, &setup, rollout, Vec::new())
        };
        let mut r = crate::report::build(counted, cohort_events::clock::now());
        let mut latched = self.latched.lock().unwrap_or_else(|p| p.into_inner());
        if latched
            .get(&exp.name)
            .is_some_and(|(salt, _)| *salt != exp.salt)
        {
            latched.remove(&exp.name);
        }
        if r.decision.status == Status::Invalid {
            latched.entry(exp.name.clone()).or_insert_with(|| {
                (
                    exp.salt.clone(),
                    format!("{} (first seen {})", r.decision.reason, r.computed_at),
                )
            });
        } else if let Some((_, why)) = latched.get(&exp.name) {
            r.notes.push(
                "the sample-ratio check failed earlier in this phase: the live view stays invalid until the salt changes (cohort report --since can look at a later window)"
                    .to_owned(),
            );
            r.decision = Decision {
                status: Status::Invalid,
                variant: None,
                reason: why.clone(),
                roll_back: Vec::new(),
            };
        }
        r
    }

    /// The decision on `exp`'s units first exposed at or after `since` (ns): what a
    /// rollout's promotion is judged on. None when the experiment has no rollout record.
    pub fn decision_since(
        &self,
        exp: &cohort_config::Experiment,
        events_dir: &std::path::Path,
        since: i64,
    ) -> Option<Decision> {
        let mut versions = ConfigVersions::default();
        let _ = versions.add_dir(events_dir);
        let mut rollouts = RolloutLog::default();
        let _ = rollouts.add_dir(events_dir);
        let mut rollout = rollouts.rollout(&exp.name, Some(exp), &versions)?;
        rollout.judged_since = Some(since);
        let setup = Setup::of(exp, std::sync::Arc::new(versions));
        let counted = {
            let tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            let empty = ExperimentTally::default();
            let t = tally.experiments.get(&exp.name).unwrap_or(&empty);
            count(t, &setup, Some(rollout), Vec::new())
        };
        Some(crate::report::build(counted, cohort_events::clock::now()).decision)
    }

    /// How many distinct units are held (for the memory figure).
    pub fn units(&self) -> usize {
        let all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        all.values().map(|s| s.units.len()).sum()
    }
}

/// Feeds one written event to the analysis tally, exactly as the log reader would.
fn add_to_tally(tally: &mut Tally, e: &EventRef, key: u128) {
    match e {
        EventRef::Exposure(x) => {
            let Some(ts) = x.ts_ns else {
                return;
            };
            tally.exposure_keyed(
                ExposureObs {
                    experiment: x.experiment,
                    unit: x.unit,
                    variant: x.variant,
                    ts,
                    config_version: x.config_version,
                    phase: x.phase,
                    excluded: x.forced || x.unit_missing,
                },
                key,
            );
        }
        EventRef::Conversion(c) => {
            let (Some(ts), value) = (
                cohort_events::clock::parse_nanos(&c.ts),
                c.value.unwrap_or(1.0),
            ) else {
                return;
            };
            if value.is_finite() {
                tally.conversion(&c.experiment, &c.unit, ts, value);
            }
        }
    }
}

impl cohort_events::Observer for LiveCounts {
    fn written(&self, events: &[EventRef<'_>]) {
        self.apply_refs(events.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_events::{Conversion, Exposure};

    fn exp(unit: &str, variant: &str) -> Event {
        Event::Exposure(Exposure {
            v: None,
            ts: "t".into(),
            experiment: "e".into(),
            unit: unit.into(),
            variant: variant.into(),
            request_id: None,
            client_request_id: None,
            config_version: None,
            route: None,
            status: Some(200),
            latency_ms: Some(7.0),
            aborted: false,
            forced: false,
            unit_missing: false,
            phase: None,
        })
    }

    fn conv(unit: &str, value: Option<f64>) -> Event {
        Event::Conversion(Conversion {
            v: None,
            ts: "t".into(),
            experiment: "e".into(),
            unit: unit.into(),
            variant: None,
            value,
            request_id: None,
            event_id: None,
        })
    }

    #[test]
    fn units_count_once_in_their_first_variant_and_conversions_sum() {
        let c = LiveCounts::new();
        c.apply(&[
            exp("u1", "a"),
            exp("u1", "a"),
            exp("u1", "b"), // crossover after a ramp: stays in a
            exp("u2", "b"),
            conv("u1", Some(2.5)),
            conv("u1", None), // a duplicate conversion: the unit counts once, values sum
            conv("ghost", None),
        ]);
        let e = c.experiment("e").unwrap();
        let (a, b) = (&e.variants["a"], &e.variants["b"]);
        assert_eq!(
            (
                a.requests,
                a.units,
                a.converted_units,
                a.conversions,
                a.value_sum
            ),
            (2, 1, 1, 2, 3.5)
        );
        assert_eq!((b.requests, b.units, b.converted_units), (2, 1, 0));
        assert_eq!(e.unattributed_conversions, 1);
        assert_eq!(
            a.latency_ms_buckets[3], 2,
            "7 ms falls in the ≤ 10 ms bucket"
        );
    }

    fn routes(salt: &str) -> cohort_config::Routes {
        cohort_config::parse(
            "t.yaml",
            &format!(
                "routes:\n  - {{ name: r, match: {{ path_prefix: / }}, experiment: e }}\nexperiments:\n  - name: e\n    salt: {salt}\n    control: a\n    variants:\n      - {{ name: a, weight: 50, upstream: \"http://127.0.0.1:9\" }}\n      - {{ name: b, weight: 50, upstream: \"http://127.0.0.1:9\" }}\n"
            ),
        )
        .unwrap()
    }

    fn exposed(c: &LiveCounts, variant: &str, from: u32, n: u32) {
        let events: Vec<Event> = (from..from + n)
            .map(|i| {
                let Event::Exposure(mut x) = exp(&format!("u{i}"), variant) else {
                    unreachable!()
                };
                x.ts = cohort_events::clock::from_nanos(
                    1_795_564_800_000_000_000 + i64::from(i) * 1_000_000,
                );
                x.phase = Some("s1".into());
                Event::Exposure(x)
            })
            .collect();
        c.apply(&events);
    }

    #[test]
    fn a_sample_ratio_failure_latches_in_the_live_view_until_the_salt_changes() {
        let c = LiveCounts::new();
        let dir = std::path::Path::new("/nonexistent");
        let r = routes("s1");
        exposed(&c, "a", 0, 300); // b starved: a mismatch
        let first = c.report(&r.experiments[0], dir);
        assert_eq!(first.decision.status, Status::Invalid);
        exposed(&c, "b", 1000, 300); // now balanced
        let later = c.report(&r.experiments[0], dir);
        assert_eq!(later.srm.ok, Some(true), "the data is balanced now");
        assert_eq!(
            later.decision.status,
            Status::Invalid,
            "but the live view stays invalid"
        );
        assert!(later
            .notes
            .iter()
            .any(|n| n.contains("stays invalid until the salt changes")));
        // A new salt is a new phase: the latch is gone (and so are the old phase's units).
        let renewed = c.report(&routes("s2").experiments[0], dir);
        assert_eq!(
            renewed.decision.status,
            Status::Continue,
            "{:?}",
            renewed.decision
        );
        assert!(renewed
            .notes
            .iter()
            .any(|n| n.contains("no exposures yet in the configured phase")));
    }
}
