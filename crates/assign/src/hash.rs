//! The bucket function: a specified, stable hash of (salt, unit id) into a fixed space.
//!
//! ```text
//! seed   = XXH3-64(salt bytes, seed 0)            computed once, when the config compiles
//! h      = XXH3-64(unit id bytes, seed = seed)
//! bucket = ⌊h × 100 000 / 2⁶⁴⌋                     (multiply-shift: unbiased to < 10⁻¹⁴)
//! ```
//!
//! XXH3 is a published, versioned algorithm (xxHash 0.8) with implementations in every
//! language, so any tool can recompute a unit's bucket: the golden vectors in
//! `tests/fixtures/golden_buckets.json` were produced by the Python `xxhash` package
//! (`tests/fixtures/golden_buckets.py`), not by this code. Hashing the salt into the seed
//! keeps salt and unit unambiguous (no separator a unit id could contain) and leaves only
//! one hash of the unit id on the hot path. Never std's `DefaultHasher`/`RandomState`:
//! neither is stable across processes or releases.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The size of the bucket space: shares are laid out in units of 1/100 000 (0.001%).
pub const BUCKETS: u32 = 100_000;

/// The per-experiment seed derived from its salt.
pub fn salt_seed(salt: &str) -> u64 {
    xxh3_64(salt.as_bytes())
}

/// The bucket (0 ≤ bucket < [`BUCKETS`]) of `unit` under the salt whose seed is `seed`.
#[inline]
pub fn bucket(seed: u64, unit: &str) -> u32 {
    let h = xxh3_64_with_seed(unit.as_bytes(), seed);
    ((u128::from(h) * u128::from(BUCKETS)) >> 64) as u32
}

/// The seed of a shadow's sampling: XXH3-64 of `shadow:<experiment>:<shadow>`. Apart from
/// the assignment's seed, so that the shadowed units are spread over every variant.
pub fn shadow_seed(experiment: &str, shadow: &str) -> u64 {
    xxh3_64(format!("shadow:{experiment}:{shadow}").as_bytes())
}

/// The threshold of a share in (0, 1]: ⌊share × 2⁶⁴⌋, so that 1 takes every hash.
pub fn share_threshold(share: f64) -> u128 {
    (share.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0) as u128
}

/// Whether XXH3-64(unit, seed) falls under `threshold` ([`share_threshold`]).
#[inline]
pub fn under_share(seed: u64, unit: &str, threshold: u128) -> bool {
    u128::from(xxh3_64_with_seed(unit.as_bytes(), seed)) < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_in_range_at_the_extremes() {
        // The multiply-shift maps 0 → 0 and u64::MAX → BUCKETS - 1.
        assert_eq!(
            ((u128::from(u64::MAX) * u128::from(BUCKETS)) >> 64) as u32,
            BUCKETS - 1
        );
        for i in 0..10_000 {
            assert!(bucket(salt_seed("s"), &format!("u{i}")) < BUCKETS);
        }
    }

    #[test]
    fn a_share_of_one_takes_every_hash_and_a_tenth_about_a_tenth() {
        assert!(under_share(0, "x", share_threshold(1.0)));
        assert_eq!(share_threshold(1.0), 1u128 << 64);
        let seed = shadow_seed("e", "s");
        let taken = (0..100_000)
            .filter(|i| under_share(seed, &format!("u{i}"), share_threshold(0.1)))
            .count();
        assert!((9_500..10_500).contains(&taken), "{taken}");
    }

    #[test]
    fn salt_changes_the_bucket() {
        let a = salt_seed("phase-1");
        let b = salt_seed("phase-2");
        let moved = (0..1000)
            .filter(|i| bucket(a, &i.to_string()) != bucket(b, &i.to_string()))
            .count();
        assert!(moved > 990, "only {moved} of 1000 units changed bucket");
    }
}
