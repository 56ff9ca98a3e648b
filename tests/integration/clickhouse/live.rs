//! With shipping, a replica's live report and gauges are the fleet's: two replicas serve
//! different users, and either one's report counts both; a report is kept for
//! `live_max_age_s`, so page views do not each pull every unit.

use std::time::Duration;

use super::{client, database, metrics, query, shipping_config_with};
use crate::common::net::{backend, client as http, send};
use crate::common::process::{admin_call, CohortProcess};

async fn get(admin: u16, path: &str) -> serde_json::Value {
    let (status, body) = admin_call(
        format!("127.0.0.1:{admin}").parse().unwrap(),
        "GET",
        path,
        None,
    )
    .await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn units(report: &serde_json::Value) -> u64 {
    report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["units"].as_u64().unwrap())
        .sum()
}

/// `cohort serve` replica `r` shipping into `db`, with these more keys of
/// `events.clickhouse` (e.g. `, live_max_age_s: 0`): (process, public port, admin port).
fn replica(
    dir: &std::path::Path,
    db: &str,
    r: usize,
    live: &str,
    backends: (std::net::SocketAddr, std::net::SocketAddr),
) -> (CohortProcess, u16, u16) {
    let (config, port, admin) = shipping_config_with(
        dir,
        &format!("live-{r}"),
        db,
        20,
        backends,
        &super::server(),
        "",
        live,
    );
    let p = CohortProcess::start(&config, &[("HOSTNAME", &format!("replica-{r}"))]);
    (p, port, admin)
}

/// Waits until `db` holds `n` exposures.
async fn shipped(db: &str, n: u32) {
    let sql =
        format!("SELECT count() FROM `{db}`.`events` WHERE type = 'exposure' FORMAT TabSeparated");
    let start = std::time::Instant::now();
    while query(&client(), &sql).await.trim() != n.to_string() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the exposures ship"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_reports_the_whole_fleet() {
    let db = database("live");
    let backends = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<_> = (0..2)
        .map(|r| replica(dir.path(), &db, r, ", live_max_age_s: 0", backends))
        .collect();
    let c = http();
    let serve = |port: u16, from: u32, to: u32| {
        let c = c.clone();
        async move {
            let addr = format!("127.0.0.1:{port}").parse().unwrap();
            for u in from..to {
                let ans = send(
                    &c,
                    addr,
                    "/invocations",
                    &[("x-user-id", &format!("user-{u}"))],
                )
                .await;
                assert_eq!(ans.status, 200);
            }
        }
    };
    // 60 users on replica 0, 40 on replica 1: each replica's report counts all 100.
    serve(replicas[0].1, 0, 60).await;
    serve(replicas[1].1, 60, 100).await;
    shipped(&db, 100).await;
    let path = "/v1/experiments/iris-model/report";
    let from_0 = get(replicas[0].2, path).await;
    let from_1 = get(replicas[1].2, path).await;
    assert_eq!(units(&from_0), 100, "{from_0}");
    assert_eq!(units(&from_1), 100, "{from_1}");
    assert!(
        from_1["notes"]
            .to_string()
            .contains("the whole fleet's events"),
        "{from_1}"
    );
    // The gauges say the same (set by the report just computed).
    let gauge: u64 = metrics(replicas[1].2)
        .await
        .lines()
        .filter(|l| l.starts_with("cohort_experiment_units{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(gauge, 100);

    // A replica started now computes the fleet's report at once (its gauges and the age
    // of their report appear), and serves that one for up to live_max_age_s.
    replicas.push(replica(
        dir.path(),
        &db,
        2,
        ", live_max_age_s: 3600, live_counts_s: 1",
        backends,
    ));
    let start = std::time::Instant::now();
    while !metrics(replicas[2].2)
        .await
        .contains("cohort_fleet_report_age_seconds{experiment=\"iris-model\"}")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the new replica computes the fleet's report"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve(replicas[0].1, 100, 110).await;
    shipped(&db, 110).await;
    assert_eq!(units(&get(replicas[0].2, path).await), 110, "computed anew");
    let cached = get(replicas[2].2, path).await;
    assert_eq!(units(&cached), 100, "served from the cache: {cached}");
    // Its units gauge follows the fleet's per-variant counts, every live_counts_s.
    let start = std::time::Instant::now();
    loop {
        let m = metrics(replicas[2].2).await;
        let units: u64 = m
            .lines()
            .filter(|l| l.starts_with("cohort_experiment_units{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        if units == 110 {
            assert!(m.contains("cohort_fleet_counts_age_seconds{experiment=\"iris-model\"}"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the counts refresh: {units}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (mut p, _, _) in replicas {
        assert_eq!(p.terminate(), Some(0));
    }
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}

/// ClickHouse unreachable: the live report says so with 503, and the failed refreshes are
/// counted (serving goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clickhouse_the_live_report_is_a_503_and_refreshes_are_counted() {
    let backends = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", crate::common::process::free_port());
    let (config, port, admin) = shipping_config_with(
        dir.path(),
        "nowhere",
        "cohort",
        20,
        backends,
        &dead,
        "",
        ", live_max_age_s: 0",
    );
    let mut p = CohortProcess::start(&config, &[]);
    let c = http();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        send(&c, addr, "/invocations", &[("x-user-id", "u")])
            .await
            .status,
        200
    );
    let (status, body) = admin_call(
        format!("127.0.0.1:{admin}").parse().unwrap(),
        "GET",
        "/v1/experiments/iris-model/report",
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"],
        "the fleet's report needs ClickHouse, which failed: connect"
    );
    let start = std::time::Instant::now();
    while !metrics(admin)
        .await
        .lines()
        .any(|l| l.starts_with("cohort_fleet_report_errors_total{experiment=\"iris-model\"}"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the failed refresh is counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.expect_log(
        "cannot compute the fleet's report; the gauges keep their last values",
        Duration::from_secs(10),
    );
    assert_eq!(p.terminate(), Some(0));
}

/// Before any replica has created the tables, the fleet's report is an empty one that
/// says why, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_tables_exist_the_fleet_report_is_empty_and_says_why() {
    let backends = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let (config, _, admin) = shipping_config_with(
        dir.path(),
        "no-tables",
        &database("no_tables"),
        20,
        backends,
        &super::server(),
        "",
        ", create_schema: false, live_max_age_s: 0",
    );
    let mut p = CohortProcess::start(&config, &[]);
    let report = get(admin, "/v1/experiments/iris-model/report").await;
    assert_eq!(units(&report), 0);
    assert!(
        report["notes"]
            .to_string()
            .contains("ClickHouse has no cohort tables yet"),
        "{report}"
    );
    assert_eq!(p.terminate(), Some(0));
}
