//! Config semantics beyond the CLI: defaults, versions, route matching, overrides, lanes.

use crate::common;

use cohort_assign::{unit::find_unit, BUCKETS};
use cohort_config::{self as config, schema::OnMissingUnit};
use cohort_config::{assign, forced_variant};
use common::{compile, experiment_yaml, v};
use http::{HeaderMap, HeaderValue};

fn problem(text: &str) -> config::Problem {
    match config::parse("t.yaml", text) {
        Ok(_) => panic!("should not compile:\n{text}"),
        Err(e) => e.problems[0].clone(),
    }
}

#[test]
fn an_empty_file_is_every_default() {
    let r = config::parse("empty.yaml", "").unwrap();
    assert_eq!(r.file.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(r.file.admin.listen.to_string(), "127.0.0.1:9901");
    assert_eq!(r.file.limits.max_connections, 10_000);
    assert_eq!(r.file.events.channel_capacity, 65_536);
    assert!(r.routes.is_empty() && r.experiments.is_empty());
    assert_eq!(r.warnings[0].path, "routes");
}

#[test]
fn the_version_ignores_comments_and_spelled_out_defaults() {
    let base = experiment_yaml("rf", "s", false, &[v("rf", 1.0), v("lr", 1.0)]);
    let commented =
        format!("# a comment\nlisten: 0.0.0.0:8080   # the default, spelled out\n{base}");
    let a = compile(&base);
    let b = compile(&commented);
    assert_eq!(a.version, b.version);
    assert_ne!(a.source.hash, b.source.hash);
    let c = compile(&experiment_yaml(
        "rf",
        "s",
        false,
        &[v("rf", 1.0), v("lr", 2.0)],
    ));
    assert_ne!(a.version, c.version);
}

#[test]
fn defaults_of_an_experiment() {
    let r = compile(&experiment_yaml("rf", "s", false, &[v("rf", 1.0)]));
    let e = &r.experiments[0];
    assert_eq!(e.unit_from.len(), 1);
    assert_eq!(e.unit_from[0].to_string(), "header x-user-id");
    assert_eq!(e.on_missing_unit, OnMissingUnit::Control);
    assert!(!e.allow_override && !e.allow_reshuffle);
    assert_eq!(e.decision.alpha, 0.05);
    assert_eq!(e.variants[0].buckets, BUCKETS);
    // Without a salt the experiment's name is the salt.
    let r = compile("experiments:\n  - name: e\n    control: a\n    variants:\n      - { name: a, weight: 1, upstream: \"http://h:1\" }\n");
    assert_eq!(r.experiments[0].salt, "e");
}

#[test]
fn unit_from_accepts_a_bare_map_or_a_list_in_order() {
    let base = "experiments:\n  - name: e\n    control: a\n    variants:\n      - { name: a, weight: 1, upstream: \"http://h:1\" }\n";
    let bare = compile(&format!("{base}    unit_from: {{ cookie: uid }}\n"));
    assert_eq!(bare.experiments[0].unit_from[0].to_string(), "cookie uid");
    let list = compile(&format!("{base}    unit_from:\n      - query: u\n      - header: X-User\n    on_missing_unit: reject\n"));
    let sources: Vec<String> = list.experiments[0]
        .unit_from
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(sources, ["query u", "header x-user"]);
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("h"));
    let unit = find_unit(&list.experiments[0].unit_from, &headers, Some("u=q"));
    assert_eq!(unit.as_deref(), Some("q"));

    let p = problem(&format!(
        "{base}    unit_from: {{ header: a, cookie: b }}\n"
    ));
    assert_eq!(p.path, "experiments[0].unit_from");
    assert!(p.reason.contains("exactly one source"));
    let p = problem(&format!(
        "{base}    unit: request\n    unit_from: {{ header: a }}\n"
    ));
    assert_eq!(p.path, "experiments[0].unit_from");
}

#[test]
fn routes_match_longest_prefix_then_config_order_then_host_and_headers() {
    let text = r#"
routes:
  - { name: all, match: { path_prefix: / }, experiment: e }
  - { name: inv-acme, match: { path_prefix: /invocations, headers: { x-tenant: acme } }, experiment: e }
  - { name: inv-host, match: { path_prefix: /invocations, host: Models.Example.com }, experiment: e }
  - { name: inv, match: { path_prefix: /invocations }, experiment: e }
experiments:
  - name: e
    control: a
    variants:
      - { name: a, weight: 1, upstream: "http://h:1" }
"#;
    let r = compile(text);
    let none = HeaderMap::new();
    let mut acme = HeaderMap::new();
    acme.insert("x-tenant", HeaderValue::from_static("acme"));
    let name = |host: Option<&str>, path: &str, h: &HeaderMap| {
        r.match_route(host, path, h).map(|r| r.name.as_str())
    };
    assert_eq!(name(None, "/invocations", &none), Some("inv"));
    assert_eq!(name(None, "/invocations/x", &acme), Some("inv-acme"));
    assert_eq!(
        name(Some("models.example.com:8080"), "/invocations", &none),
        Some("inv-host")
    );
    assert_eq!(
        name(Some("other.example.com"), "/invocations", &none),
        Some("inv")
    );
    assert_eq!(name(None, "/invocationsX", &none), Some("all"));
    assert_eq!(name(None, "/health", &none), Some("all"));
    // Config order among equal prefixes.
    let order: Vec<&str> = r.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(order, ["inv-acme", "inv-host", "inv", "all"]);
}

#[test]
fn a_route_with_the_same_match_as_an_earlier_one_is_rejected() {
    let p = problem("routes:\n  - { name: a, match: { path_prefix: /x }, experiment: e }\n  - { name: b, match: { path_prefix: /x }, experiment: e }\nexperiments:\n  - name: e\n    control: a\n    variants:\n      - { name: a, weight: 1, upstream: \"http://h:1\" }\n");
    assert_eq!(p.path, "routes[1].match");
    assert!(p.reason.contains("could never be chosen"));
    // A more specific route after a general one with the same prefix is just as dead.
    let p = problem("routes:\n  - { name: a, match: { path_prefix: /x }, experiment: e }\n  - { name: b, match: { path_prefix: /x, headers: { x-t: 1 } }, experiment: e }\nexperiments:\n  - name: e\n    control: a\n    variants:\n      - { name: a, weight: 1, upstream: \"http://h:1\" }\n");
    assert_eq!(p.path, "routes[1].match");
}

#[test]
fn overrides_only_where_allowed() {
    let text = experiment_yaml("rf", "s", false, &[v("rf", 100.0), v("lr", 0.0)]);
    let denied = compile(&text);
    let e = &denied.experiments[0];
    assert_eq!(forced_variant(e, Some("lr")), Ok(None));
    assert_eq!(e.variants[assign(e, "anyone").variant].name, "rf");
    let allowed = compile(&text.replace(
        "allow_reshuffle: false",
        "allow_reshuffle: false\n    allow_override: true",
    ));
    let e = &allowed.experiments[0];
    assert_eq!(forced_variant(e, Some("lr")), Ok(Some(1)));
    assert_eq!(forced_variant(e, None), Ok(None));
    let err = forced_variant(e, Some("nn")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "x-cohort-variant names \"nn\", which is not a variant of \"e\" (variants: rf, lr)"
    );
}

#[test]
fn lane_rules() {
    let mut vs = vec![v("ctl", 50.0), v("a", 25.0), v("b", 25.0)];
    vs[0].lane = Some((0.0, 0.5, "start"));
    vs[1].lane = Some((0.5, 0.25, "start"));
    vs[2].lane = Some((0.75, 0.25, "start"));
    let p = problem(&experiment_yaml("ctl", "s", false, &vs));
    assert_eq!(p.path, "experiments[0].variants[0].lane");
    assert!(p.reason.contains("the control has no lane"));

    vs[0].lane = None;
    vs[2].lane = None;
    let p = problem(&experiment_yaml("ctl", "s", false, &vs));
    assert_eq!(p.path, "experiments[0].variants[2]");
    assert!(p.reason.contains("every treatment must"));

    // Two treatments may share one lane from opposite edges.
    vs[1].lane = Some((0.5, 0.5, "start"));
    vs[2].lane = Some((0.5, 0.5, "end"));
    let r = compile(&experiment_yaml("ctl", "s", false, &vs));
    let segs: Vec<(u32, u32, &str)> = r.experiments[0]
        .layout
        .segments()
        .iter()
        .map(|s| {
            (
                s.start,
                s.end,
                r.experiments[0].variants[s.variant].name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        segs,
        [
            (0, 50_000, "ctl"),
            (50_000, 75_000, "a"),
            (75_000, 100_000, "b")
        ]
    );

    let mut vs = vec![v("ctl", 10.0), v("a", 45.0), v("b", 45.0)];
    vs[1].lane = Some((0.0, 0.5, "start"));
    vs[2].lane = Some((0.5, 0.6, "start"));
    let p = problem(&experiment_yaml("ctl", "s", false, &vs));
    assert_eq!(p.path, "experiments[0].variants[2].lane");
    assert!(
        p.reason.contains("ends past the bucket space"),
        "{}",
        p.reason
    );
}

#[test]
fn three_treatments_without_lanes_get_equal_lanes_in_name_order() {
    let r = compile(&experiment_yaml(
        "ctl",
        "s",
        false,
        &[v("zz", 10.0), v("ctl", 70.0), v("aa", 10.0), v("mm", 10.0)],
    ));
    let e = &r.experiments[0];
    let lane_start = |name: &str| {
        e.variants[e.variant_index(name).unwrap()]
            .lane
            .unwrap()
            .start
    };
    assert_eq!(
        (lane_start("aa"), lane_start("mm"), lane_start("zz")),
        (0, 33_333, 66_666)
    );
    let p = problem(&experiment_yaml(
        "ctl",
        "s",
        false,
        &[v("ctl", 50.0), v("a", 40.0), v("b", 5.0), v("c", 5.0)],
    ));
    assert!(p.reason.contains("equal lanes of 1/3"), "{}", p.reason);
}

/// README's "Configuration reference" names every key the schema has, with the schema's
/// default: a key added, renamed or given a new default fails here until the table says so.
#[test]
fn the_readme_reference_lists_every_key_with_its_default() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("## Configuration reference")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Configuration reference section");
    // `| `key` | default | meaning | …`
    let documented: std::collections::BTreeMap<String, String> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            Some((
                key.to_owned(),
                cells.get(1)?.trim().trim_matches('`').to_owned(),
            ))
        })
        .collect();
    // A minimal file: every key not written here takes its default.
    // `events.clickhouse` is null by default; its url is written so that its keys show.
    let minimal = "routes: [{name: r, match: {path_prefix: /}, experiment: e}]\n\
         experiments: [{name: e, control: a, variants: [{name: a, weight: 1, upstream: \"http://127.0.0.1:1\"}, {name: b, weight: 1, upstream: \"http://127.0.0.1:2\"}], rollout: {treatment: b, steps: [0.5]}, monitor: {on_drift: {webhook: {url: \"http://127.0.0.1:9\"}}, quality: {}}, shadow: [{name: s, upstream: \"http://127.0.0.1:3\"}]}]\n\
         events: {clickhouse: {url: \"http://127.0.0.1:8123\"}}\n";
    let compiled = config::parse("t.yaml", minimal).unwrap();
    let file = serde_json::to_value(&compiled.file).unwrap();
    let mut leaves = Vec::new();
    flatten("", &file, &mut leaves);
    // Absent in the file means the default source list, applied when compiling.
    let sources: Vec<String> = compiled.experiments[0]
        .unit_from
        .iter()
        .map(|s| {
            let (kind, name) = s
                .to_string()
                .split_once(' ')
                .map(|(k, n)| (k.to_owned(), n.to_owned()))
                .unwrap();
            format!("{{{kind}: {name}}}")
        })
        .collect();
    for (key, value) in &mut leaves {
        if key == "experiments[].unit_from" && value.is_null() {
            *value = serde_json::Value::String(format!("[{}]", sources.join(", ")));
        }
    }
    let written = [
        "routes[].name",
        "routes[].match.path_prefix",
        "routes[].experiment",
        "experiments[].name",
        "experiments[].control",
        "experiments[].salt",
        "experiments[].variants[].name",
        "experiments[].variants[].weight",
        "experiments[].variants[].upstream",
        "events.clickhouse.url",
        "experiments[].rollout.treatment",
        "experiments[].rollout.steps",
        "experiments[].monitor.on_drift.webhook.url",
        "experiments[].shadow[].name",
        "experiments[].shadow[].upstream",
    ];
    let mut wrong = Vec::new();
    for (key, value) in &leaves {
        let Some(doc) = documented.get(key) else {
            wrong.push(format!("{key}: not in the table (default {value})"));
            continue;
        };
        if written.contains(&key.as_str())
            || value.is_array() && !value.as_array().unwrap().is_empty()
        {
            continue;
        }
        let shown = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let same = match (doc.parse::<f64>(), shown.parse::<f64>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => *doc == shown,
        };
        if !same {
            wrong.push(format!("{key}: the table says {doc}, the schema {shown}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "README's config reference is out of step:\n{}",
        wrong.join("\n")
    );
}

/// `a.b` paths of every leaf (arrays of objects as `[]` of their first element).
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                match child {
                    serde_json::Value::Array(a)
                        if a.first().is_some_and(|f| f.is_object() && is_section(f)) =>
                    {
                        flatten(&format!("{}[]", join(k)), &a[0], out)
                    }
                    _ => flatten(&join(k), child, out),
                }
            }
        }
        _ => out.push((prefix.to_owned(), v.clone())),
    }
}

/// Routes, experiments and variants are sections of keys; `unit_from` entries are values.
fn is_section(v: &serde_json::Value) -> bool {
    v.get("name").is_some()
}

/// Weights are bounded: two weights of 1.7e308 add up to infinity, and the file was
/// reported as "all weights are 0".
#[test]
fn a_huge_weight_is_named_as_too_large() {
    let text = experiment_yaml("rf", "s", false, &[v("rf", 1.7e308), v("lr", 1.7e308)]);
    let p = problem(&text);
    assert!(p.path.ends_with(".weight"), "{p}");
    assert!(p.reason.contains("at most 1000000000000"), "{p}");
}

/// A crafted file nested thousands of levels deep slows the YAML parser down quadratically
/// (and holds back the next good reload): depth and size are bounded before parsing.
#[test]
fn deep_or_huge_files_are_refused_before_parsing() {
    let deep = format!("listen: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    let p = problem(&deep);
    assert!(p.reason.contains("nested more than 32 levels"), "{p}");
    let block = format!(
        "listen: 127.0.0.1:1\ntrusted_proxies: {}{}\n",
        "[".repeat(40),
        "]".repeat(40)
    );
    assert!(problem(&block)
        .reason
        .contains("nested more than 32 levels"));
    let huge = format!("routes: []\n#{}\n", "x".repeat(config::MAX_FILE_BYTES));
    assert!(problem(&huge).reason.contains("at most 1048576 bytes"));
    // The repository's own routes.yaml is well within both.
    let ours =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml")).unwrap();
    assert!(config::parse("routes.yaml", &ours).is_ok());
}

/// Segments under 1 MiB made the writer rotate and fsync every few events (~800 events/s
/// at 4 KiB), and a crash then lost most of what had been answered.
#[test]
fn tiny_segments_are_refused() {
    let text = "events: { segment_max_bytes: 4096 }\n";
    let p = problem(text);
    assert_eq!(p.path, "events.segment_max_bytes");
    assert!(p.reason.contains("at least 1048576"), "{p}");
    assert!(config::parse("t.yaml", "events: { segment_max_bytes: 1048576 }\n").is_ok());
}

#[test]
fn events_clickhouse_keys_are_checked() {
    let ok = config::parse(
        "t.yaml",
        "events: {clickhouse: {url: \"http://127.0.0.1:8123\", password_env: CH_PASSWORD}}\n",
    )
    .unwrap();
    let ch = ok.file.events.clickhouse.unwrap();
    assert_eq!(
        (ch.database.as_str(), ch.table.as_str(), ch.batch_max_events),
        ("cohort", "events", 10_000)
    );
    for (keys, path, words) in [
        (
            "url: \"clickhouse:8123\"",
            "events.clickhouse.url",
            "not an http(s) URL",
        ),
        (
            "url: \"http://ch:8123/cohort?x=1\"",
            "events.clickhouse.url",
            "give only scheme, host and port",
        ),
        (
            "url: \"http://ch:8123\", database: \"my-db\"",
            "events.clickhouse.database",
            "1–64 of A-Z a-z 0-9 _",
        ),
        (
            "url: \"http://ch:8123\", password_env: \"s3cret pass\"",
            "events.clickhouse.password_env",
            "not an environment variable name",
        ),
        (
            "url: \"http://ch:8123\", batch_max_events: 0",
            "events.clickhouse.batch_max_events",
            "between 1 and 1000000",
        ),
        (
            "url: \"http://ch:8123\", timeout_ms: 5",
            "events.clickhouse.timeout_ms",
            "at least 100",
        ),
    ] {
        let p = problem(&format!("events: {{clickhouse: {{{keys}}}}}\n"));
        assert_eq!(p.path, path, "{keys}");
        assert!(p.reason.contains(words), "{keys}: {}", p.reason);
    }
    let p = problem("events: {spool_max_bytes: 100000000}\n");
    assert_eq!(p.path, "events.spool_max_bytes");
    assert!(p.reason.contains("needs events.clickhouse"), "{}", p.reason);
    let p = problem("events: {spool_max_bytes: 1000, clickhouse: {url: \"http://ch:8123\"}}\n");
    assert_eq!(p.path, "events.spool_max_bytes");
    assert!(p.reason.contains("at least 1048576"), "{}", p.reason);
    // The url is the one key without a default.
    let p = problem("events: {clickhouse: {database: x}}\n");
    assert!(p.reason.contains("needs a `url`"), "{}", p.reason);
}

#[test]
fn monitor_keys_are_checked_with_their_defaults() {
    let exp = |monitor: &str| {
        format!(
            "experiments: [{{name: e, control: a, variants: [{{name: a, weight: 1, upstream: \"http://127.0.0.1:1\"}}], monitor: {monitor}}}]\n"
        )
    };
    let ok = config::parse("t.yaml", &exp("{}")).unwrap();
    let m = ok.experiments[0].monitor.clone().expect("monitored");
    assert_eq!(
        (
            m.sample,
            m.max_per_s,
            m.max_body_bytes,
            m.window_s,
            m.min_rows,
            m.ks_rows
        ),
        (0.05, 200, 65_536, 1800, 300, 1024)
    );
    assert!(config::parse("t.yaml", "experiments: [{name: e, control: a, variants: [{name: a, weight: 1, upstream: \"http://127.0.0.1:1\"}]}]\n")
        .unwrap()
        .experiments[0]
        .monitor
        .is_none());
    for (keys, path, words) in [
        ("{sample: 0}", "experiments[0].monitor.sample", "(0, 1]"),
        ("{sample: 1.5}", "experiments[0].monitor.sample", "(0, 1]"),
        (
            "{max_per_s: 0}",
            "experiments[0].monitor.max_per_s",
            "greater than 0",
        ),
        (
            "{max_body_bytes: 0}",
            "experiments[0].monitor.max_body_bytes",
            "between 1 and 16777216",
        ),
        (
            "{window_s: 30}",
            "experiments[0].monitor.window_s",
            "at least 60 seconds",
        ),
        (
            "{ks_rows: 100000}",
            "experiments[0].monitor.ks_rows",
            "between 16 and 4096",
        ),
        (
            "{reference_rows: 3}",
            "experiments[0].monitor.reference_rows",
            "at least 10 rows",
        ),
        (
            "{features: {pointer: \"rows\"}}",
            "experiments[0].monitor.features.pointer",
            "starts with \"/\"",
        ),
        (
            "{features: {element: 1}}",
            "experiments[0].monitor.features.element",
            "only a prediction",
        ),
        (
            "{reference_from: control}",
            "experiments[0].monitor.reference_from",
            "must be one of variant | shared",
        ),
        ("{sampel: 0.1}", "experiments[0].monitor.sampel", "a typo?"),
        (
            "{on_drift: {psi_above: 0, webhook: {url: \"http://h/x\"}}}",
            "experiments[0].monitor.on_drift.psi_above",
            "greater than 0",
        ),
        (
            "{on_drift: {webhook: {url: \"airflow:8080\"}}}",
            "experiments[0].monitor.on_drift.webhook.url",
            "not an http(s) URL",
        ),
    ] {
        let p = problem(&exp(keys));
        assert_eq!(p.path, path, "{keys}: {p}");
        assert!(p.reason.contains(words), "{keys}: {p}");
    }
}

#[test]
fn shadow_keys_are_checked_with_their_defaults() {
    let exp = |shadow: &str| {
        format!(
            "experiments: [{{name: e, control: a, variants: [{{name: a, weight: 1, upstream: \"http://127.0.0.1:1\"}}], shadow: [{shadow}]}}]\n"
        )
    };
    let ok = config::parse(
        "t.yaml",
        &exp("{name: cand, upstream: \"http://127.0.0.1:2\"}"),
    )
    .unwrap();
    let s = &ok.experiments[0].shadows[0];
    assert_eq!(
        (
            s.config.sample,
            s.config.max_inflight,
            s.config.max_body_bytes,
            s.config.timeout_ms,
            s.config.log_payloads,
            s.config.payload_bytes,
            s.config.max_diff_events_per_s
        ),
        (0.1, 64, 1 << 20, 30_000, false, 2048, 10)
    );
    assert_eq!(
        (
            s.config.compare.tolerance.absolute,
            s.config.compare.tolerance.relative
        ),
        (1e-6, 1e-6)
    );
    assert_eq!(s.upstream.authority.as_str(), "127.0.0.1:2");
    let base = "name: cand, upstream: \"http://127.0.0.1:2\"";
    for (keys, path, words) in [
        (
            format!("{{{base}, sample: 0}}"),
            "experiments[0].shadow[0].sample",
            "(0, 1]",
        ),
        (
            format!("{{{base}, max_inflight: 0}}"),
            "experiments[0].shadow[0].max_inflight",
            "greater than 0",
        ),
        (
            format!("{{{base}, max_body_bytes: 0}}"),
            "experiments[0].shadow[0].max_body_bytes",
            "between 1 and 16777216",
        ),
        (
            format!("{{{base}, timeout_ms: 0}}"),
            "experiments[0].shadow[0].timeout_ms",
            "greater than 0",
        ),
        (
            format!("{{{base}, payload_bytes: 100000}}"),
            "experiments[0].shadow[0].payload_bytes",
            "between 1 and 65536",
        ),
        (
            format!("{{{base}, compare: {{pointer: outputs}}}}"),
            "experiments[0].shadow[0].compare.pointer",
            "starts with \"/\"",
        ),
        (
            format!("{{{base}, compare: {{tolerance: {{absolute: -1}}}}}}"),
            "experiments[0].shadow[0].compare.tolerance.absolute",
            "≥ 0",
        ),
        (
            "{name: a, upstream: \"http://127.0.0.1:2\"}".to_owned(),
            "experiments[0].shadow[0].name",
            "a shadow is not a variant",
        ),
        (
            "{name: cand, upstream: \"ftp://x\"}".to_owned(),
            "experiments[0].shadow[0].upstream",
            "not an http(s) URL",
        ),
        (
            format!("{{{base}, weight: 1}}"),
            "experiments[0].shadow[0].weight",
            "a typo?",
        ),
        (
            format!("{{{base}}}, {{{base}}}"),
            "experiments[0].shadow[1].name",
            "duplicate shadow name",
        ),
    ] {
        let p = problem(&exp(&keys));
        assert_eq!(p.path, path, "{keys}: {p}");
        assert!(p.reason.contains(words), "{keys}: {p}");
    }
}
