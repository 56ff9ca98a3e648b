//! Shipping through failures, against real servers: an insert whose answer never came
//! (it had landed: sent again, counted once), a ClickHouse that takes a request and never
//! answers (shutdown still ends within its window), and a ClickHouse killed with SIGKILL
//! in the middle of the load and started again (nothing lost, nothing counted twice,
//! serving unaffected).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::net::{TcpListener, TcpStream};

use super::report::{fleet_logs, routes, same_report};
use super::{
    client, database, drain, query, server, ship_tables, shipper_as, shipping_config_with,
};
use crate::common::net::{backend, client as http, send};
use crate::common::process::CohortProcess;
use cohort_clickhouse::ship::{ShipMetrics, Shipper};
use cohort_clickhouse::Client;

/// The host and port of a ClickHouse URL.
fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A TCP relay to `target` that passes requests on but throws away the answers on its
/// first `lose` connections, holding them open so the client waits for an answer that
/// never comes: what a timeout after a landed insert looks like from cohort's side.
async fn losing_relay(target: SocketAddr, lose: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let n = accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut from_client, mut to_client) = conn.into_split();
                let (mut from_server, mut to_server) = upstream.into_split();
                let up = tokio::io::copy(&mut from_client, &mut to_server);
                if n < lose {
                    let mut sink = tokio::io::sink();
                    let down = tokio::io::copy(&mut from_server, &mut sink);
                    let _ = tokio::join!(up, down);
                    drop(to_client);
                } else {
                    let down = tokio::io::copy(&mut from_server, &mut to_client);
                    let _ = tokio::join!(up, down);
                }
            });
        }
    });
    addr
}

/// A listener that reads whatever comes and never answers; `got` is told when the first
/// bytes arrive.
async fn black_hole() -> (SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, got) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.try_send(());
                }
            });
        }
    });
    (addr, got)
}

async fn count(sql: &str) -> u64 {
    query(&client(), sql).await.trim().parse().unwrap()
}

/// An insert that lands while its answer is lost times out and is sent again: the store
/// then holds that batch twice, and the fleet's report still equals the directories'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_was_lost_is_sent_again_and_counted_once() {
    let db = database("lost_answer");
    ship_tables(&db).create(&client()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let dirs = fleet_logs(root.path());
    for (r, d) in dirs.iter().enumerate().skip(1) {
        drain(&mut shipper_as(
            d,
            &db,
            &server(),
            &format!("replica-{r}"),
            2000,
        ))
        .await;
    }
    // Replica 0: the shares history and a first batch as usual ...
    let mut direct = shipper_as(&dirs[0], &db, &server(), "replica-0", 500);
    assert_eq!(direct.round().await.unwrap().shipped, 500);
    drop(direct);
    // ... then a batch whose answer is lost on the way back.
    let relay = losing_relay(addr_of(&server()), 1).await;
    let via_relay = Client::new(
        &format!("http://{relay}"),
        "default",
        None,
        Duration::from_secs(1),
    )
    .unwrap();
    let mut s = Shipper::new(
        &dirs[0],
        via_relay,
        ship_tables(&db),
        "replica-0",
        500,
        ShipMetrics::new(),
    )
    .unwrap();
    let err = s.round().await.unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    let replica0 = format!(
        "SELECT count() FROM `{db}`.`events` WHERE replica = 'replica-0' FORMAT TabSeparated"
    );
    assert_eq!(
        count(&replica0).await,
        1000,
        "the lost answer's batch landed"
    );
    let (rest, _) = drain(&mut s).await;
    let lines: u64 = std::fs::read_to_string(dirs[0].join("events-20261101T000000Z-000001.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(rest, lines - 500, "sent again from the saved cursor");
    assert_eq!(
        count(&replica0).await,
        lines + 500,
        "one batch twice in the store"
    );

    let config = routes(root.path());
    same_report(
        &server(),
        &db,
        &dirs,
        &[
            "--experiment",
            "iris-model",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}

/// A ClickHouse that takes the insert and never answers cannot hold shutdown: the shipper
/// hears the stop during the insert, and its last window (`ship_timeout_ms`) ends the wait
/// long before the insert's own `timeout_ms` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_its_window_while_an_insert_hangs() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let (hole, mut got) = black_hole().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, port, _) = shipping_config_with(
        dir.path(),
        "hang",
        "cohort",
        20,
        (rf, lr),
        &format!("http://{hole}"),
        "",
        ", create_schema: false, timeout_ms: 60000",
    );
    let yaml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("ship_timeout_ms: 10000", "ship_timeout_ms: 300");
    std::fs::write(&config, yaml).unwrap();
    let mut p = CohortProcess::start(&config, &[]);
    let c = http();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for u in 0..5 {
        assert_eq!(
            send(&c, addr, "/invocations", &[("x-user-id", &format!("u{u}"))])
                .await
                .status,
            200
        );
    }
    tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .expect("the shipper sends an insert");
    let start = Instant::now();
    assert_eq!(p.terminate(), Some(0));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "shutdown waited {took:?}: the hanging insert (timeout_ms 60000) held it"
    );
}

/// A ClickHouse server of this test's own, so that it can be killed and started again.
struct OwnServer {
    dir: PathBuf,
    url: String,
}

impl OwnServer {
    fn start(dir: &Path) -> OwnServer {
        let out = std::process::Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/clickhouse-server"),
        )
        .arg(dir)
        .output()
        .unwrap();
        assert!(out.status.success(), "clickhouse-server: {out:?}");
        OwnServer {
            dir: dir.to_path_buf(),
            url: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        }
    }

    /// Starts it again on the same data and port.
    fn restart(&mut self) {
        let again = OwnServer::start(&self.dir);
        assert_eq!(again.url, self.url, "the same port");
        std::mem::forget(again);
    }

    fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("pid")).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
        // Gone once its HTTP port refuses.
        let start = Instant::now();
        while std::net::TcpStream::connect(addr_of(&self.url)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid.trim()])
                .status();
        }
    }
}

/// ClickHouse killed with SIGKILL while cohort ships into it under load, then started
/// again on the same data: every request is served meanwhile, every acknowledged event
/// arrives, and the fleet's report equals the local log's (batches in flight at the kill
/// may land twice; the report counts them once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_killed_mid_load_loses_nothing_and_counts_nothing_twice() {
    let scratch = tempfile::tempdir().unwrap();
    let mut ch = OwnServer::start(&scratch.path().join("clickhouse"));
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let (config, port, admin) = shipping_config_with(
        scratch.path(),
        "killed",
        "cohort",
        10,
        (rf, lr),
        &ch.url,
        "",
        ", batch_max_events: 40, timeout_ms: 2000",
    );
    let p = CohortProcess::start(&config, &[]);
    p.expect_log("ClickHouse tables ready", Duration::from_secs(10));
    let c = http();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut converted = 0;
    let load = |from: u32, to: u32| {
        let c = c.clone();
        async move {
            let mut n = 0;
            for u in from..to {
                let unit = format!("user-{u}");
                let ans = send(&c, addr, "/invocations", &[("x-user-id", &unit)]).await;
                assert_eq!(ans.status, 200, "serving is unaffected");
                if u % 3 == 0 {
                    let body = format!(
                        "{{\"experiment\": \"iris-model\", \"unit\": \"{unit}\", \"value\": {}}}",
                        f64::from(u) / 7.0
                    );
                    let req =
                        http::Request::post(format!("http://127.0.0.1:{admin}/v1/conversions"))
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                    assert_eq!(c.request(req).await.unwrap().status(), 202);
                    n += 1;
                }
            }
            n
        }
    };
    converted += load(0, 300).await;
    let own = Client::new(&ch.url, "default", None, Duration::from_secs(10)).unwrap();
    let shipped = "SELECT count() FROM cohort.events FORMAT TabSeparated";
    let start = Instant::now();
    while String::from_utf8_lossy(&own.execute(shipped).await.unwrap()).trim() == "0" {
        assert!(start.elapsed() < Duration::from_secs(10), "nothing ships");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ch.kill();
    converted += load(300, 600).await;
    // The shipper's next try (after its backoff) fails to connect and measures what waits.
    let start = Instant::now();
    loop {
        let m = super::metrics(admin).await;
        let refused = super::sample(&m, "cohort_clickhouse_errors_total{kind=\"connect\"}");
        let backlog = super::sample(&m, "cohort_clickhouse_backlog_bytes");
        if refused > Some(0.0) && backlog > Some(0.0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "while the server is down, shipping fails and the backlog grows: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ch.restart();
    converted += load(600, 900).await;

    let distinct = "SELECT type, uniqExact(event_id) FROM cohort.events WHERE experiment = 'iris-model' GROUP BY type ORDER BY type FORMAT TabSeparated";
    let want = format!("conversion\t{converted}\nexposure\t900\n");
    let start = Instant::now();
    loop {
        let got = own
            .execute(distinct)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if got.as_deref().ok() == Some(want.as_str()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the backlog did not arrive: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spool = scratch.path().join("spool-killed");
    same_report(
        &ch.url,
        "cohort",
        &[spool],
        &[
            "--experiment",
            "iris-model",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    drop(p);
}
