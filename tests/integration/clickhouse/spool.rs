//! `events.spool_max_bytes`: while ClickHouse takes nothing and the spool is full,
//! requests are served as ever, exposures are dropped and counted, and conversions are
//! refused with 503 (never accepted and then lost); once the backlog ships, both are
//! recorded again.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::{
    client, database, exposure, metrics, query, sample, ship_tables, shipping_config_with,
};
use crate::common::net::{backend, client as http, send, HttpClient};
use crate::common::process::CohortProcess;

/// `cohort_events_dropped_total` on `admin`'s /metrics.
async fn dropped(admin: u16) -> u64 {
    sample(&metrics(admin).await, "cohort_events_dropped_total")
        .expect("cohort_events_dropped_total on /metrics") as u64
}

/// Reports one conversion of `unit` to `admin`: (status, Retry-After, body).
async fn convert(c: &HttpClient, admin: u16, unit: &str) -> (u16, Option<String>, String) {
    let req = http::Request::post(format!("http://127.0.0.1:{admin}/v1/conversions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(
            "{{\"experiment\": \"iris-model\", \"unit\": \"{unit}\"}}"
        ))))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_exposures_and_refuses_conversions_until_it_ships() {
    let db = database("spool_bound");
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    // The database does not exist and cohort may not create it: every insert is refused.
    let (config, port, admin) = shipping_config_with(
        dir.path(),
        "full",
        &db,
        50,
        (rf, lr),
        &super::server(),
        ", spool_max_bytes: 1048576",
        ", create_schema: false",
    );
    // A backlog past the bound, left by an earlier run that could not ship.
    let spool = dir.path().join("spool-full");
    std::fs::create_dir_all(&spool).unwrap();
    let mut backlog = String::new();
    let mut n = 0;
    while backlog.len() <= 1_100_000 {
        backlog.push_str(&exposure(&format!("old-{n}"), n % 60));
        n += 1;
    }
    std::fs::write(spool.join("events-20261101T000000Z-000001.jsonl"), &backlog).unwrap();

    let p = CohortProcess::start(&config, &[]);
    let c = http();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let before = dropped(admin).await;
    for u in 0..20 {
        let ans = send(
            &c,
            addr,
            "/invocations",
            &[("x-user-id", &format!("full-{u}"))],
        )
        .await;
        assert_eq!(ans.status, 200, "serving goes on while the spool is full");
    }
    p.expect_log("the spool is full: exposures are dropped (counted in cohort_events_dropped_total) and conversions refused with 503 until ClickHouse takes the backlog", Duration::from_secs(10));
    let (status, retry, body) = convert(&c, admin, "full-0").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("10"));
    assert!(body.contains("spool is full"), "{body}");
    // The writer may still be taking the last requests' exposures: wait for all 20.
    let start = std::time::Instant::now();
    while dropped(admin).await < before + 20 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "exposures are counted as dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dropped(admin).await, before + 20);

    // ClickHouse takes events again: the backlog ships and there is room.
    ship_tables(&db).create(&client()).await.unwrap();
    p.wait_log(
        "the spool has room again: exposures are recorded and conversions accepted",
        Duration::from_secs(30),
    )
    .expect("the backlog ships and the spool has room again");
    for u in 0..5 {
        let ans = send(
            &c,
            addr,
            "/invocations",
            &[("x-user-id", &format!("room-{u}"))],
        )
        .await;
        assert_eq!(ans.status, 200);
    }
    let (status, _, body) = convert(&c, admin, "room-0").await;
    assert_eq!(status, 202, "{body}");

    // Exactly what cohort acknowledged arrives: the old backlog, the 5 exposures and the
    // one conversion after recovery; nothing of what was dropped or refused.
    let counts = format!(
        "SELECT experiment, type, count() FROM `{db}`.`events` GROUP BY experiment, type ORDER BY experiment, type FORMAT TabSeparated"
    );
    let want = format!("e\texposure\t{n}\niris-model\tconversion\t1\niris-model\texposure\t5\n");
    let start = std::time::Instant::now();
    loop {
        let got = query(&client(), &counts).await;
        if got == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the store has {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        dropped(admin).await,
        before + 20,
        "nothing dropped after recovery"
    );
    drop(p);
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}
