//! Online model quality in a fleet: every replica's prediction lines, labelled in SQL by
//! every replica's conversions within the attribution window after each prediction.

use std::collections::BTreeMap;

use cohort_events::clock::from_nanos;

use super::{client, database, drain, query, server, ship_tables};

const S: i64 = 1_000_000_000;
/// 2026-11-01T00:00:00Z.
const START: i64 = 1_793_491_200 * S;

fn prediction(unit: &str, variant: &str, phase: &str, at_s: i64, score: f64) -> String {
    format!(
        "{{\"type\":\"prediction\",\"v\":1,\"ts\":\"{}\",\"experiment\":\"iris-model\",\"variant\":\"{variant}\",\"unit\":\"{unit}\",\"phase\":\"{phase}\",\"value\":{score}}}\n",
        from_nanos(START + at_s * S)
    )
}

fn conversion(unit: &str, at_s: i64, id: &str) -> String {
    format!(
        "{{\"type\":\"conversion\",\"v\":1,\"ts\":\"{}\",\"experiment\":\"iris-model\",\"unit\":\"{unit}\",\"event_id\":\"{id}\"}}\n",
        from_nanos(START + at_s * S)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replicas_predictions_are_labelled_by_every_replicas_conversions() {
    let db = database("quality");
    labelled_in_sql(&server(), &db).await;
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}

/// The same SQL on a current ClickHouse engine (chdb behind the HTTP interface).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_labelling_sql_runs_on_a_current_clickhouse() {
    let data = tempfile::tempdir().unwrap();
    let shim = super::report::Chdb::start(data.path());
    labelled_in_sql(&shim.url, "cohort").await;
}

async fn labelled_in_sql(url: &str, db: &str) {
    let url = url.to_owned();
    let db = db.to_owned();
    let c =
        cohort_clickhouse::Client::new(&url, "default", None, std::time::Duration::from_secs(30))
            .unwrap();
    ship_tables(&db).create(&c).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    // Window 100 s. Replica 0 made the predictions; the conversions reached replica 1.
    let logs = [
        [
            prediction("u1", "lr", "s", 0, 0.9), // converts at 50 s: positive
            prediction("u2", "lr", "s", 0, 0.8), // converts at 150 s: too late, negative
            prediction("u3", "rf", "s", 10, 0.3), // never converts: negative
            prediction("u4", "rf", "s", 10, 0.6), // converts at 5 s, before it: negative
            prediction("u5", "rf", "s", 20, 0.7), // converts at 120 s: positive
            prediction("u6", "rf", "old", 0, 0.5), // another phase: left out
            prediction("u7", "rf", "s", 950, 0.4), // window still open at 1000 s: left out
            prediction("u8", "rf", "s", 30, 1.5), // not a probability: left out
        ]
        .concat(),
        [
            conversion("u1", 50, "c1"),
            conversion("u2", 150, "c2"),
            conversion("u4", 5, "c4"),
            conversion("u5", 120, "c5"),
            conversion("u5", 120, "c5"), // a copy delivered twice
        ]
        .concat(),
    ];
    for (r, log) in logs.iter().enumerate() {
        let dir = root.path().join(format!("replica-{r}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("events-20261101T000000Z-000001.jsonl"), log).unwrap();
        let mut s = super::shipper_as(&dir, &db, &url, &format!("replica-{r}"), 100);
        drain(&mut s).await;
    }
    // Replica 0's predictions shipped again (its cursor lost): copies collapse.
    let dir0 = root.path().join("replica-0");
    std::fs::remove_file(dir0.join("clickhouse.cursor")).unwrap();
    drain(&mut super::shipper_as(&dir0, &db, &url, "replica-0", 100)).await;

    let fleet = cohort_clickhouse::fleet::Fleet {
        client: c.clone(),
        tables: ship_tables(&db),
        timeout: std::time::Duration::from_secs(30),
        settings: Vec::new(),
    };
    let pairs = fleet
        .quality_pairs("iris-model", "s", 100.0, START + 1000 * S, 10_000)
        .await
        .unwrap();
    let mut by: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    for (v, score, label) in pairs {
        by.entry(v).or_default().push((score, label));
    }
    for v in by.values_mut() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    assert_eq!(
        by,
        BTreeMap::from([
            ("lr".to_owned(), vec![(0.8, false), (0.9, true)]),
            (
                "rf".to_owned(),
                vec![(0.3, false), (0.6, false), (0.7, true)]
            ),
        ])
    );
    // At most `limit` per variant, the latest first.
    let latest = fleet
        .quality_pairs("iris-model", "s", 100.0, START + 1000 * S, 1)
        .await
        .unwrap();
    assert_eq!(latest.len(), 2, "{latest:?}");
    assert!(latest.contains(&("rf".to_owned(), 0.7, true)), "{latest:?}");
}

/// Two `cohort serve` replicas shipping to one store: the predictions captured on one are
/// labelled by the conversions the other accepted, and the quality gauges of both come
/// from the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_saw_no_prediction_publishes_the_fleets_quality() {
    use crate::common::process::{admin_post, free_port, CohortProcess};
    let db = database("quality_live");
    let model = crate::monitor::model().await;
    let dir = tempfile::tempdir().unwrap();
    let replica = |r: usize| {
        let (port, admin) = (free_port(), free_port());
        let yaml = format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
             shutdown: {{ grace_ms: 50, ship_timeout_ms: 10000 }}\n\
             events: {{ dir: {:?}, clickhouse: {{ url: {:?}, database: {db}, flush_interval_ms: 20, live_refresh_s: 10 }} }}\n\
             routes: [{{ name: iris, match: {{ path_prefix: /invocations }}, experiment: iris-model }}]\n\
             experiments:\n  - name: iris-model\n    control: rf\n    allow_override: true\n    \
             decision: {{ attribution_window_s: 1 }}\n    \
             monitor: {{ sample: 1.0, max_per_s: 100000, quality: {{ min_labels: 3 }} }}\n    \
             variants:\n      - {{ name: rf, weight: 50, upstream: \"http://{model}\" }}\n      \
             - {{ name: lr, weight: 50, upstream: \"http://{model}\" }}\n",
            dir.path().join(format!("spool-{r}")).display().to_string(),
            server(),
        );
        let config = dir.path().join(format!("routes-{r}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let p = CohortProcess::start(&config, &[("HOSTNAME", &format!("replica-{r}"))]);
        (p, port, admin)
    };
    let (mut p0, port0, _) = replica(0);
    let (mut p1, _, admin1) = replica(1);
    let admin1: std::net::SocketAddr = format!("127.0.0.1:{admin1}").parse().unwrap();
    // Replica 0 scores 10 users of lr; the ones it scores above 0.5 convert, on replica 1.
    let c = crate::common::net::client();
    let mut converting = 0;
    for i in 0..10 {
        let p = 0.05 + 0.09 * f64::from(i);
        let body = format!(
            "{{\"dataframe_split\": {{\"columns\": [\"x0\", \"x1\"], \"data\": [[{p}, 0.0]]}}}}"
        );
        let req = http::Request::post(format!("http://127.0.0.1:{port0}/invocations"))
            .header("x-user-id", format!("q{i}"))
            .header("x-cohort-variant", "lr")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        assert_eq!(c.request(req).await.unwrap().status(), 200);
        if p > 0.5 {
            converting += 1;
            let line = format!("{{\"experiment\": \"iris-model\", \"unit\": \"q{i}\"}}");
            let (status, body) = admin_post(admin1, "/v1/conversions", &line).await;
            assert_eq!(status, http::StatusCode::ACCEPTED, "{body}");
        }
    }
    assert!((3..=7).contains(&converting));
    // Replica 1 never saw a prediction: its gauges come from the fleet's SQL, at its next
    // refresh (live_refresh_s) after the 1 s attribution window has closed.
    let series = |m: &str, measure: &str| {
        let prefix = format!(
            "cohort_model_quality{{experiment=\"iris-model\",measure=\"{measure}\",variant=\"lr\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let start = std::time::Instant::now();
    loop {
        let m = super::metrics(admin1.port()).await;
        if series(&m, "labelled") == Some(10.0) {
            assert_eq!(series(&m, "auc"), Some(1.0), "{m}");
            assert_eq!(series(&m, "accuracy"), Some(1.0), "{m}");
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(40),
            "the fleet's quality within 40 s (it refreshes every 10 s): {:?}",
            series(&m, "labelled")
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(p0.terminate(), Some(0));
    assert_eq!(p1.terminate(), Some(0));
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}
