//! Criterion micro-benchmarks of what cohort does per request besides forwarding.
//!
//!     cargo bench --bench hot_path
//!
//! * `route+unit+assign`: match the route (Host, path prefix), take the unit from
//!   `x-user-id`, hash it into a bucket and pick the variant — on the repo's routes.yaml;
//! * `exposure to JSON`: serialise one exposure event as the writer thread does (the line
//!   that goes into the segment file, written by hand), and `exposure to JSON (serde)`: the
//!   same bytes through serde_json, what the writer did before.

use std::hint::black_box;

use cohort_assign::unit::find_unit;
use cohort_config::assign;
use cohort_events::{Event, Exposure};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};

fn route_unit_assign(c: &mut Criterion) {
    let routes = cohort_config::parse("routes.yaml", include_str!("../routes.yaml"))
        .expect("the repo's routes.yaml is valid");
    let mut headers = HeaderMap::new();
    headers.insert("x-user-id", HeaderValue::from_static("user-0012345"));
    headers.insert("host", HeaderValue::from_static("models.example.com"));
    c.bench_function("route+unit+assign", |b| {
        b.iter(|| {
            let route = routes
                .match_route(
                    Some("models.example.com"),
                    black_box("/invocations"),
                    &headers,
                )
                .expect("a route");
            let exp = &routes.experiments[route.experiment];
            let unit = find_unit(&exp.unit_from, black_box(&headers), None).expect("a unit");
            black_box(assign(exp, &unit).variant)
        })
    });
}

fn exposure_json(c: &mut Criterion) {
    let e = Event::Exposure(Exposure {
        v: Some(1),
        ts: "2026-11-25T15:00:00.000Z".into(),
        experiment: "iris-model".into(),
        unit: "user-0012345".into(),
        variant: "rf".into(),
        request_id: Some(
            "c1~iris-model~rf~0123456789abcdef~0123456789abcdef0123456789abcdef".into(),
        ),
        client_request_id: None,
        config_version: Some("0123456789abcdef".into()),
        route: Some("iris".into()),
        status: Some(200),
        latency_ms: Some(3.25),
        aborted: false,
        forced: false,
        unit_missing: false,
        phase: Some("iris-2026-11".into()),
    });
    let mut buf = Vec::with_capacity(512);
    c.bench_function("exposure to JSON", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&e).view().write_json(&mut buf);
            black_box(buf.len())
        })
    });
    c.bench_function("exposure to JSON (serde)", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&e)).expect("plain data");
            black_box(buf.len())
        })
    });
}

criterion_group!(benches, route_unit_assign, exposure_json);
criterion_main!(benches);
