//! Per-unit state gathered from events in *any* order, so that segments can be read in
//! parallel and replicas' logs merged, with the same result as reading them in `ts` order.
//!
//! A unit keeps the time and variant of its first exposure (min `ts`) and the earliest
//! time it was seen in any *other* variant (its crossover). Inserting exposures one by one
//! or merging two partial tallies gives the same state whatever the order (proved by the
//! property test below). Conversions are held until every exposure is in (whether a
//! conversion counts depends on the unit's final first exposure), as (unit, ts, value).
//!
//! Units are keyed by the 128-bit XXH3 hash of their id ([`unit_key`]), not the id
//! itself: no allocation per unit, one memory access per lookup, and the same key in
//! every thread and process. Two ids with the same 128-bit hash would count as one unit;
//! among 10⁹ distinct units the chance that any pair collides is about 10⁻²¹.
//!
//! Memory grows with distinct units (≈ 48 bytes each in the map) and with conversions
//! (32 bytes each), never with exposures.

use std::collections::HashMap;

/// The key of a unit id.
pub fn unit_key(unit: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(unit.as_bytes())
}

/// Maps keyed by unit ids: foldhash (randomly seeded per map, several times faster than
/// SipHash on short keys; the ids come from clients, so a fixed seed would not do).
pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// "Never" for a timestamp.
pub const NEVER: i64 = i64::MAX;
/// A unit whose first exposure carried no known config version.
pub const NO_VERSION: u32 = u32::MAX;

/// One unit's exposures, folded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitState {
    /// ts of the first exposure (ns since the epoch).
    pub first: i64,
    /// The earliest exposure in another variant than `variant` (NEVER: none).
    pub other: i64,
    /// The first exposure's variant (index into the experiment's names).
    pub variant: u16,
    /// The first exposure's config version (index, or NO_VERSION).
    pub version: u32,
}

impl UnitState {
    /// Folds `b` into `a` (commutative and associative: exact ties in time are broken by
    /// variant *name*, so that the result never depends on order). `names` are the
    /// variant names the indices refer to.
    fn absorb(&mut self, b: UnitState, names: &[String]) {
        if self.variant == b.variant {
            if b.first < self.first {
                self.first = b.first;
                self.version = b.version;
            } else if b.first == self.first {
                self.version = self.version.min(b.version);
            }
            self.other = self.other.min(b.other);
            return;
        }
        let name = |v: u16| names.get(v as usize).map_or("", String::as_str);
        let a_first = (self.first, name(self.variant)) < (b.first, name(b.variant));
        if a_first {
            self.other = self.other.min(b.first);
        } else {
            let other = b.other.min(self.first);
            *self = UnitState { other, ..b };
        }
    }
}

/// A conversion waiting for the unit's exposures.
#[derive(Debug, Clone)]
pub struct PendingConversion {
    /// [`unit_key`] of the unit.
    pub unit: u128,
    pub ts: i64,
    pub value: f64,
}

/// The units of one phase (one salt) of an experiment.
#[derive(Debug, Default, Clone)]
pub struct PhaseTally {
    /// By [`unit_key`].
    pub units: Map<u128, UnitState>,
    /// Latest exposure ts in this phase.
    pub last_ts: i64,
}

/// Everything read about one experiment.
#[derive(Debug, Default, Clone)]
pub struct ExperimentTally {
    /// Variant names, in order of first appearance (indices in [`UnitState`]).
    pub variants: Vec<String>,
    /// Config versions, in order of first appearance.
    pub versions: Vec<String>,
    /// By phase ("" when the events carry none).
    pub phases: Map<String, PhaseTally>,
    pub conversions: Vec<PendingConversion>,
    /// Exposures that never count (forced by override, or without a unit).
    pub excluded_exposures: u64,
    /// Exposures (counted ones) per variant index.
    pub exposures: Vec<u64>,
    /// Units of phases that are not in `phases` (a store that sent only the phase
    /// analysed counts the others here).
    pub other_phase_units: u64,
    /// Conversions already matched against the analysed phase elsewhere (a store that
    /// joins them itself) and left out; added to what [`crate::Population`] finds.
    pub left_out: LeftOut,
}

/// Conversions that do not count, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeftOut {
    /// For units never exposed in the phase.
    pub unattributed: u64,
    /// Before the unit's first exposure.
    pub before_exposure: u64,
    /// Past `attribution_window_s`.
    pub outside_window: u64,
}

impl ExperimentTally {
    /// The index of variant `name` (added when new).
    pub fn variant(&mut self, name: &str) -> u16 {
        if let Some(i) = self
            .variants
            .iter()
            .position(|v| v.len() == name.len() && v.bytes().zip(name.bytes()).all(|(a, b)| a == b))
        {
            return i as u16;
        }
        self.variants.push(name.to_owned());
        self.exposures.push(0);
        (self.variants.len() - 1) as u16
    }

    /// The index of config version `name` (added when new; None: [`NO_VERSION`]).
    pub fn version(&mut self, name: Option<&str>) -> u32 {
        let Some(name) = name else {
            return NO_VERSION;
        };
        // Few versions per log, and the last one is almost always the one asked for.
        if let Some(i) = self.versions.iter().rposition(|v| v == name) {
            return i as u32;
        }
        self.versions.push(name.to_owned());
        (self.versions.len() - 1) as u32
    }

    /// Folds one unit's state (indices from [`Self::variant`] and [`Self::version`]) into
    /// `phase`.
    pub fn insert(&mut self, phase: &str, unit: u128, state: UnitState) {
        let names = &self.variants;
        let p = match self.phases.get_mut(phase) {
            Some(p) => p,
            None => self.phases.entry(phase.to_owned()).or_default(),
        };
        p.last_ts = p.last_ts.max(state.first);
        p.units
            .entry(unit)
            .and_modify(|s| s.absorb(state, names))
            .or_insert(state);
    }
}

/// Every experiment's tally.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub experiments: Map<String, ExperimentTally>,
}

/// One exposure line, as the tally needs it.
#[derive(Debug, Clone, Copy)]
pub struct ExposureObs<'a> {
    pub experiment: &'a str,
    pub unit: &'a str,
    pub variant: &'a str,
    pub ts: i64,
    pub config_version: Option<&'a str>,
    pub phase: Option<&'a str>,
    /// Forced by override or without a unit: counted, never analysed.
    pub excluded: bool,
}

impl Tally {
    fn experiment(&mut self, name: &str) -> &mut ExperimentTally {
        if !self.experiments.contains_key(name) {
            self.experiments
                .insert(name.to_owned(), ExperimentTally::default());
        }
        // Just inserted when missing.
        self.experiments.get_mut(name).expect("present")
    }

    /// Records that `name` appears in the log (without any of its events).
    pub fn note_experiment(&mut self, name: &str) {
        self.experiment(name);
    }

    pub fn exposure(&mut self, e: ExposureObs) {
        let key = unit_key(e.unit);
        self.exposure_keyed(e, key);
    }

    /// [`Tally::exposure`] with the unit's [`unit_key`] already computed.
    pub fn exposure_keyed(&mut self, e: ExposureObs, key: u128) {
        let x = self.experiment(e.experiment);
        if e.excluded {
            x.excluded_exposures += 1;
            return;
        }
        let variant = x.variant(e.variant);
        x.exposures[variant as usize] += 1;
        let version = x.version(e.config_version);
        x.insert(
            e.phase.unwrap_or(""),
            key,
            UnitState {
                first: e.ts,
                other: NEVER,
                variant,
                version,
            },
        );
    }

    pub fn conversion(&mut self, experiment: &str, unit: &str, ts: i64, value: f64) {
        self.experiment(experiment)
            .conversions
            .push(PendingConversion {
                unit: unit_key(unit),
                ts,
                value,
            });
    }

    /// Folds another tally (another segment, another replica) into this one.
    pub fn merge(&mut self, other: Tally) {
        for (name, theirs) in other.experiments {
            let ours = self.experiment(&name);
            let vmap: Vec<u16> = theirs.variants.iter().map(|v| ours.variant(v)).collect();
            let version_map: Vec<u32> = theirs
                .versions
                .iter()
                .map(|v| ours.version(Some(v)))
                .collect();
            for (i, n) in theirs.exposures.iter().enumerate() {
                ours.exposures[vmap[i] as usize] += n;
            }
            ours.excluded_exposures += theirs.excluded_exposures;
            ours.other_phase_units += theirs.other_phase_units;
            ours.left_out.unattributed += theirs.left_out.unattributed;
            ours.left_out.before_exposure += theirs.left_out.before_exposure;
            ours.left_out.outside_window += theirs.left_out.outside_window;
            ours.conversions.extend(theirs.conversions);
            for (phase, p) in theirs.phases {
                for (unit, s) in p.units {
                    let s = UnitState {
                        variant: vmap[s.variant as usize],
                        version: version_map
                            .get(s.version as usize)
                            .copied()
                            .unwrap_or(NO_VERSION),
                        ..s
                    };
                    let mine = match ours.phases.get_mut(&phase) {
                        Some(m) => m,
                        None => ours.phases.entry(phase.clone()).or_default(),
                    };
                    mine.last_ts = mine.last_ts.max(s.first);
                    mine.units
                        .entry(unit)
                        .and_modify(|m| m.absorb(s, &ours.variants))
                        .or_insert(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state_of(tally: &Tally) -> Vec<(String, i64, i64, String)> {
        let x = &tally.experiments["e"];
        let units = &x.phases[""].units;
        // The test's units are u0..u5: name them back from their keys.
        let out: Vec<_> = (0..6)
            .map(|u| format!("u{u}"))
            .filter_map(|name| {
                let s = units.get(&unit_key(&name))?;
                Some((
                    name,
                    s.first,
                    s.other,
                    x.variants[s.variant as usize].clone(),
                ))
            })
            .collect();
        assert_eq!(out.len(), units.len());
        out
    }

    fn feed(t: &mut Tally, events: &[(u8, u8, i64)]) {
        for &(unit, variant, ts) in events {
            t.exposure(ExposureObs {
                experiment: "e",
                unit: &format!("u{unit}"),
                variant: ["a", "b", "c"][variant as usize],
                ts,
                config_version: None,
                phase: None,
                excluded: false,
            });
        }
    }

    proptest! {
        /// Any order, any split into partial tallies merged in any order: the same units.
        #[test]
        fn order_and_partition_do_not_matter(
            events in proptest::collection::vec((0u8..6, 0u8..3, 0i64..20), 1..40),
            cut in 0usize..40,
            seed in any::<u64>(),
        ) {
            let mut sorted = events.clone();
            sorted.sort_by_key(|e| e.2);
            let mut reference = Tally::default();
            feed(&mut reference, &sorted);

            let mut shuffled = events.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let cut = cut.min(shuffled.len());
            let (mut left, mut right) = (Tally::default(), Tally::default());
            feed(&mut left, &shuffled[..cut]);
            feed(&mut right, &shuffled[cut..]);
            right.merge(left);
            prop_assert_eq!(state_of(&reference), state_of(&right));
        }
    }

    #[test]
    fn a_second_variant_marks_the_crossover_time() {
        let mut t = Tally::default();
        feed(&mut t, &[(1, 1, 10), (1, 1, 5), (1, 0, 7), (2, 2, 3)]);
        assert_eq!(
            state_of(&t),
            vec![
                ("u1".to_owned(), 5, 7, "b".to_owned()),
                ("u2".to_owned(), 3, NEVER, "c".to_owned())
            ]
        );
    }
}
