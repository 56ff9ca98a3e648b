//! Safe ramps, checked bucket by bucket over the whole space (property tests).
//!
//! * control + 1 or 2 treatments (default layout): control down and treatments up or equal
//!   moves units only from control into treatments, each treatment gaining exactly its
//!   bucket increase; a rollback moves only the shrinking treatment's units to control;
//! * 3–5 treatments with lanes: every change within the caps is safe; a change of lanes
//!   is reported as a reshuffle exactly when some unit moves unsafely;
//! * with lanes declared, reordering variants and adding or removing zero-weight variants
//!   moves nobody; without lanes, reordering moves nobody.
//!
//! `compare` (behind `cohort check --against`) must agree with the brute-force tally.

use crate::common;

use std::collections::BTreeMap;

use cohort_assign::BUCKETS;
use cohort_config::compare::compare;
use cohort_config::Routes;
use common::{compile, counts, experiment_yaml, tally, V};
use proptest::prelude::*;

const T: [&str; 5] = ["t1", "t2", "t3", "t4", "t5"];

/// Variants with integer bucket counts as weights (scaled by `scale`, so that shares are
/// count / BUCKETS up to float error). Control last in YAML order, on purpose.
fn variants(control: u32, treatments: &[u32], scale: f64) -> Vec<V> {
    let mut vs: Vec<V> = treatments
        .iter()
        .enumerate()
        .map(|(i, &c)| common::v(T[i], f64::from(c) * scale))
        .collect();
    vs.push(common::v("ctl", f64::from(control) * scale));
    vs
}

fn config(vs: &[V]) -> Routes {
    compile(&experiment_yaml("ctl", "ramp-salt", false, vs))
}

/// Asserts that `compare` lists exactly the moves of the brute-force tally.
fn assert_compare_matches_tally(old: &Routes, new: &Routes) -> BTreeMap<(String, String), u32> {
    let t = tally(&old.experiments[0], &new.experiments[0]);
    let c = compare(old, new);
    let change = &c.experiments["e"];
    let mut listed: BTreeMap<(String, String), u32> = BTreeMap::new();
    for m in &change.moves {
        listed.insert(
            (m.from.clone(), m.to.clone()),
            (m.share * f64::from(BUCKETS)).round() as u32,
        );
    }
    let moved: BTreeMap<(String, String), u32> = t
        .iter()
        .filter(|((a, b), n)| a != b && **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert_eq!(
        listed, moved,
        "compare's moves differ from the bucket-by-bucket tally"
    );
    t
}

/// True when the tally shows an unsafe move: treatment → treatment, or a treatment that
/// both gains and loses.
fn unsafe_moves(t: &BTreeMap<(String, String), u32>) -> bool {
    let between = t
        .iter()
        .any(|((a, b), n)| *n > 0 && a != b && a != "ctl" && b != "ctl");
    let both = T.iter().any(|name| {
        let gains: u32 = t
            .iter()
            .filter(|((a, b), _)| b == name && a != name)
            .map(|(_, n)| n)
            .sum();
        let losses: u32 = t
            .iter()
            .filter(|((a, b), _)| a == name && b != name)
            .map(|(_, n)| n)
            .sum();
        gains > 0 && losses > 0
    });
    between || both
}

/// Old and new bucket counts for 1–2 treatments with control down, treatments up or equal.
fn ramp_case() -> impl Strategy<Value = (Vec<u32>, Vec<u32>, f64)> {
    (1usize..=2)
        .prop_flat_map(|k| {
            (
                prop::collection::vec(0u32..=50_000, k),
                prop::collection::vec(0u32..=50_000, k),
            )
        })
        .prop_flat_map(|(old, grow)| {
            let room = u64::from(BUCKETS - old.iter().sum::<u32>());
            let grow_sum = u64::from(grow.iter().sum::<u32>());
            // Grow each treatment, scaled down when the growth would not fit.
            let new: Vec<u32> = old
                .iter()
                .zip(&grow)
                .map(|(&o, &g)| {
                    let g = u64::from(g);
                    let g = if grow_sum > room {
                        g * room / grow_sum
                    } else {
                        g
                    };
                    o + g as u32
                })
                .collect();
            (
                Just(old),
                Just(new),
                prop_oneof![Just(1.0), 0.001f64..1000.0],
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn ramps_move_only_control_into_treatments((old, new, scale) in ramp_case()) {
        let old_cfg = config(&variants(BUCKETS - old.iter().sum::<u32>(), &old, scale));
        let new_cfg = config(&variants(BUCKETS - new.iter().sum::<u32>(), &new, scale));
        let t = assert_compare_matches_tally(&old_cfg, &new_cfg);
        for ((from, to), n) in &t {
            if from != to {
                prop_assert_eq!(from.as_str(), "ctl", "{} units moved {} → {}", n, from, to);
            }
        }
        for (i, name) in T.iter().take(old.len()).enumerate() {
            let gained = t.get(&("ctl".to_owned(), (*name).to_owned())).copied().unwrap_or(0);
            prop_assert_eq!(gained, new[i] - old[i], "{} gained {} buckets, expected {}", name, gained, new[i] - old[i]);
        }
        let change = &compare(&old_cfg, &new_cfg).experiments["e"];
        prop_assert!(!change.reshuffle, "a ramp was called a reshuffle: {:?}", change.reasons);
    }

    #[test]
    fn rollbacks_move_only_the_shrinking_treatment_to_control(
        (old, _new, scale) in ramp_case(),
        which in 0usize..2,
        frac in 0.0f64..=1.0,
    ) {
        let which = which % old.len();
        let mut new = old.clone();
        new[which] = (f64::from(old[which]) * frac) as u32;
        let old_cfg = config(&variants(BUCKETS - old.iter().sum::<u32>(), &old, scale));
        let new_cfg = config(&variants(BUCKETS - new.iter().sum::<u32>(), &new, scale));
        let t = assert_compare_matches_tally(&old_cfg, &new_cfg);
        for ((from, to), n) in &t {
            if from != to {
                prop_assert!(from == T[which] && to == "ctl", "{} units moved {} → {}", n, from, to);
                prop_assert_eq!(*n, old[which] - new[which]);
            }
        }
        prop_assert!(!compare(&old_cfg, &new_cfg).experiments["e"].reshuffle);
    }
}

/// 3–5 lanes: caps (in buckets) and starts, laid out in a random order with random gaps.
fn lanes_case() -> impl Strategy<Value = Vec<(u32, u32)>> {
    (3usize..=5)
        .prop_flat_map(|k| {
            (
                prop::collection::vec(1u32..=30_000, k),
                Just((0..k).collect::<Vec<usize>>()).prop_shuffle(),
                prop::collection::vec(0u32..=1_000, k),
            )
        })
        .prop_map(|(caps, order, gaps)| {
            let mut lanes = vec![(0, 0); caps.len()];
            let mut cursor = 0u32;
            for (&i, gap) in order.iter().zip(gaps) {
                let start = (cursor + gap).min(BUCKETS - caps[i]);
                let size = caps[i].min(BUCKETS - start);
                lanes[i] = (start, size);
                cursor = start + size;
            }
            lanes
        })
        .prop_filter("lanes fit in the space without overlap", |lanes| {
            let mut sorted = lanes.clone();
            sorted.sort();
            sorted.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0) && sorted.iter().all(|l| l.1 > 0)
        })
}

fn lane_variants(lanes: &[(u32, u32)], counts: &[u32], froms: &[bool]) -> Vec<V> {
    let mut vs = Vec::new();
    for (i, (&(start, size), &c)) in lanes.iter().zip(counts).enumerate() {
        let mut var = common::v(T[i], f64::from(c));
        let from = if froms[i] { "end" } else { "start" };
        var.lane = Some((
            f64::from(start) / f64::from(BUCKETS),
            f64::from(size) / f64::from(BUCKETS),
            from,
        ));
        vs.push(var);
    }
    vs.push(common::v(
        "ctl",
        f64::from(BUCKETS - counts.iter().sum::<u32>()),
    ));
    vs
}

/// Counts within each lane's cap, as fractions in [0, 1] of the cap.
fn within(lanes: &[(u32, u32)], fracs: &[f64]) -> Vec<u32> {
    lanes
        .iter()
        .zip(fracs)
        .map(|(l, f)| (f64::from(l.1) * f) as u32)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn lanes_keep_every_change_within_caps_safe(
        lanes in lanes_case(),
        old_f in prop::collection::vec(0.0f64..=1.0, 5),
        new_f in prop::collection::vec(0.0f64..=1.0, 5),
        froms in prop::collection::vec(any::<bool>(), 5),
    ) {
        let old = within(&lanes, &old_f);
        let new = within(&lanes, &new_f);
        let old_cfg = config(&lane_variants(&lanes, &old, &froms));
        let new_cfg = config(&lane_variants(&lanes, &new, &froms));
        let t = assert_compare_matches_tally(&old_cfg, &new_cfg);
        for (i, name) in T.iter().take(lanes.len()).enumerate() {
            let gained = t.get(&("ctl".to_owned(), (*name).to_owned())).copied().unwrap_or(0);
            let lost = t.get(&((*name).to_owned(), "ctl".to_owned())).copied().unwrap_or(0);
            prop_assert_eq!(gained, new[i].saturating_sub(old[i]));
            prop_assert_eq!(lost, old[i].saturating_sub(new[i]));
        }
        prop_assert!(!unsafe_moves(&t));
        prop_assert!(!compare(&old_cfg, &new_cfg).experiments["e"].reshuffle);
    }

    #[test]
    fn lane_changes_are_reported_exactly_when_they_move_units_unsafely(
        old_lanes in lanes_case(),
        new_lanes in lanes_case(),
        old_f in prop::collection::vec(0.0f64..=1.0, 5),
        new_f in prop::collection::vec(0.0f64..=1.0, 5),
        froms in prop::collection::vec(any::<bool>(), 5),
    ) {
        let k = old_lanes.len().min(new_lanes.len());
        let (old_lanes, new_lanes) = (&old_lanes[..k], &new_lanes[..k]);
        let old_cfg = config(&lane_variants(old_lanes, &within(old_lanes, &old_f), &froms));
        let new_cfg = config(&lane_variants(new_lanes, &within(new_lanes, &new_f), &froms));
        let t = assert_compare_matches_tally(&old_cfg, &new_cfg);
        let change = &compare(&old_cfg, &new_cfg).experiments["e"];
        let promoted = new_cfg.experiments[0].promoted().is_some();
        prop_assert_eq!(change.reshuffle, unsafe_moves(&t) && !promoted, "reasons: {:?}", change.reasons);
    }

    #[test]
    fn with_lanes_reordering_and_zero_weight_variants_move_nobody(
        lanes in lanes_case(),
        f in prop::collection::vec(0.0f64..=1.0, 5),
        froms in prop::collection::vec(any::<bool>(), 5),
        seed in any::<u64>(),
    ) {
        let counts_ = within(&lanes, &f);
        let mut vs = lane_variants(&lanes, &counts_, &froms);
        // A zero-weight variant in free space at the end of the bucket space, or none.
        let end = lanes.iter().map(|l| l.0 + l.1).max().unwrap_or(0);
        let before = config(&vs);
        // Reorder (a seeded rotation + swap) …
        let n = vs.len();
        vs.rotate_left((seed as usize) % n);
        vs.swap(0, (seed as usize / 7) % n);
        // … and add a zero-weight treatment where there is room.
        if end < BUCKETS {
            let mut z = common::v("zero", 0.0);
            z.lane = Some((f64::from(end) / f64::from(BUCKETS), f64::from(BUCKETS - end) / f64::from(BUCKETS), "start"));
            vs.push(z);
        }
        let after = config(&vs);
        let t = tally(&before.experiments[0], &after.experiments[0]);
        prop_assert!(t.iter().all(|((a, b), _)| a == b), "units moved: {:?}", t);
        // And removing it again moves nobody either.
        let t = tally(&after.experiments[0], &before.experiments[0]);
        prop_assert!(t.iter().all(|((a, b), _)| a == b));
        prop_assert!(compare(&before, &after).experiments["e"].moves.is_empty());
    }

    #[test]
    fn without_lanes_reordering_moves_nobody((old, _new, scale) in ramp_case(), rot in 0usize..3) {
        let mut vs = variants(BUCKETS - old.iter().sum::<u32>(), &old, scale);
        let before = config(&vs);
        let n = vs.len();
        vs.rotate_left(rot % n);
        let after = config(&vs);
        prop_assert_eq!(counts(&before.experiments[0]), counts(&after.experiments[0]));
        let t = tally(&before.experiments[0], &after.experiments[0]);
        prop_assert!(t.iter().all(|((a, b), _)| a == b));
    }
}

#[test]
fn a_ninety_ten_to_eighty_twenty_ramp_moves_ten_percent() {
    let old = compile(&experiment_yaml(
        "rf",
        "s",
        false,
        &[common::v("rf", 90.0), common::v("lr", 10.0)],
    ));
    let new = compile(&experiment_yaml(
        "rf",
        "s",
        false,
        &[common::v("rf", 80.0), common::v("lr", 20.0)],
    ));
    let c = compare(&old, &new);
    let e = &c.experiments["e"];
    assert_eq!(e.moves.len(), 1);
    assert_eq!(
        (e.moves[0].from.as_str(), e.moves[0].to.as_str()),
        ("rf", "lr")
    );
    assert!((e.moves[0].share - 0.10).abs() < 1e-12);
    assert!(!e.reshuffle);
}

#[test]
fn promotion_to_one_hundred_percent_is_not_a_reshuffle() {
    let old = compile(&experiment_yaml(
        "rf",
        "s",
        false,
        &[
            common::v("rf", 50.0),
            common::v("a", 25.0),
            common::v("b", 25.0),
        ],
    ));
    let new = compile(&experiment_yaml(
        "rf",
        "s",
        false,
        &[
            common::v("rf", 0.0),
            common::v("a", 100.0),
            common::v("b", 0.0),
        ],
    ));
    let e = &compare(&old, &new).experiments["e"];
    assert!(
        e.moves.iter().any(|m| m.from == "b" && m.to == "a"),
        "{:?}",
        e.moves
    );
    assert!(!e.reshuffle);
}

#[test]
fn a_new_salt_or_control_is_a_reshuffle_and_only_the_salt_acknowledges_it() {
    let base = [common::v("rf", 50.0), common::v("lr", 50.0)];
    let old = compile(&experiment_yaml("rf", "s1", false, &base));
    let salted = compile(&experiment_yaml("rf", "s2", false, &base));
    let e = &compare(&old, &salted).experiments["e"];
    assert!(e.reshuffle && e.acknowledged);
    // Expected moves under independent re-randomization: 25% each way.
    assert!(
        e.moves.iter().all(|m| (m.share - 0.25).abs() < 1e-12),
        "{:?}",
        e.moves
    );

    let recontrolled = compile(&experiment_yaml("lr", "s1", false, &base));
    let e = &compare(&old, &recontrolled).experiments["e"];
    assert!(e.reshuffle && !e.acknowledged);
    let allowed = compile(&experiment_yaml("lr", "s1", true, &base));
    let e = &compare(&old, &allowed).experiments["e"];
    assert!(e.reshuffle && e.acknowledged);
}

#[test]
fn an_unchanged_weight_with_a_changed_share_warns() {
    let old = compile(&experiment_yaml(
        "rf",
        "s",
        false,
        &[common::v("rf", 50.0), common::v("lr", 50.0)],
    ));
    let new = compile(&experiment_yaml(
        "rf",
        "s",
        false,
        &[common::v("rf", 50.0), common::v("lr", 100.0)],
    ));
    let e = &compare(&old, &new).experiments["e"];
    assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
    assert!(
        e.warnings[0].starts_with("rf keeps weight 50"),
        "{}",
        e.warnings[0]
    );
}
