//! Golden vectors: unit + salt → bucket → variant, computed by an independent
//! implementation (Python `xxhash`, see tests/fixtures/golden_buckets.py). A change of
//! crate version, platform or code that would move real users fails here.

use cohort_assign::hash;
use cohort_config as config;
use cohort_config::assign;
use serde_json::Value;

#[test]
fn buckets_and_variants_match_the_independent_reference() {
    let fixture: Value = serde_json::from_str(include_str!("../fixtures/golden_buckets.json"))
        .expect("fixture parses");
    let routes = config::parse("golden.yaml", include_str!("../fixtures/golden.yaml"))
        .expect("golden.yaml compiles");
    let exp = routes.experiment("golden").expect("experiment golden");
    let vectors = fixture["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 30);
    let mut checked_variants = 0;
    for vector in vectors {
        let salt = vector["salt"].as_str().unwrap();
        let unit = vector["unit"].as_str().unwrap();
        let seed = hash::salt_seed(salt);
        assert_eq!(
            seed,
            vector["seed"].as_u64().unwrap(),
            "seed of salt {salt:?}"
        );
        let bucket = hash::bucket(seed, unit);
        assert_eq!(
            u64::from(bucket),
            vector["bucket"].as_u64().unwrap(),
            "bucket of unit {unit:?} with salt {salt:?}"
        );
        if let Some(expected) = vector["variant"].as_str() {
            let a = assign(exp, unit);
            assert_eq!(a.bucket, bucket);
            assert_eq!(
                exp.variants[a.variant].name, expected,
                "variant of {unit:?}"
            );
            checked_variants += 1;
        }
    }
    assert_eq!(checked_variants, 12);
}

#[test]
fn the_fixture_covers_every_variant() {
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/golden_buckets.json")).unwrap();
    let mut seen: Vec<&str> = fixture["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["variant"].as_str())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        ["gb", "lr", "rf"],
        "regenerate with units that reach every variant"
    );
}
