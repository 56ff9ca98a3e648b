//! Fleet outcomes against a real ClickHouse server (Debian's clickhouse-server, started by
//! scripts/test on loopback; its URL in `COHORT_TEST_CLICKHOUSE_URL`). Each test works in
//! a database of its own.

use crate::common;

mod failures;
mod live;
mod quality;
mod report;
mod rollout;
mod spool;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cohort_clickhouse::rowbinary::{encode_event, encode_versions};
use cohort_clickhouse::schema::{EVENT_COLUMNS, ROLLOUT_COLUMNS, VERSION_COLUMNS};
use cohort_clickhouse::{Client, Tables};

fn server() -> String {
    std::env::var("COHORT_TEST_CLICKHOUSE_URL").expect(
        "COHORT_TEST_CLICKHOUSE_URL is not set: run these tests with scripts/test, which starts a ClickHouse server",
    )
}

fn client() -> Client {
    Client::new(&server(), "default", None, Duration::from_secs(10)).unwrap()
}

/// A database name no other test uses (asked twice for one name, it fails: two tests
/// in one database see each other's rows).
fn database(test: &str) -> String {
    static TAKEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        !taken.iter().any(|t| t == test),
        "two tests use the database name {test:?}"
    );
    taken.push(test.to_owned());
    format!("cohort_test_{test}_{}", std::process::id())
}

/// The /metrics text of the admin listener on `admin`.
async fn metrics(admin: u16) -> String {
    let (_, m) = common::process::admin_call(
        format!("127.0.0.1:{admin}").parse().unwrap(),
        "GET",
        "/metrics",
        None,
    )
    .await;
    m.as_str().unwrap_or_default().to_owned()
}

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

async fn query(c: &Client, sql: &str) -> String {
    String::from_utf8(c.execute(sql).await.unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_the_tables_once_and_changes_nothing_after() {
    let db = database("init");
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["clickhouse", "init", "--url", &server(), "--database", &db])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("database {db}")));
    }
    let c = client();
    let describe = |table: &str| {
        let c = c.clone();
        let sql = format!("DESCRIBE TABLE `{db}`.`{table}` FORMAT TabSeparated");
        async move {
            query(&c, &sql)
                .await
                .lines()
                .map(|l| {
                    let mut f = l.split('\t');
                    (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
                })
                .collect::<Vec<_>>()
        }
    };
    let want = |cols: &[(&str, &str)]| {
        cols.iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(describe("events").await, want(&EVENT_COLUMNS));
    assert_eq!(
        describe("events_config_versions").await,
        want(&VERSION_COLUMNS)
    );
    assert_eq!(describe("events_rollouts").await, want(&ROLLOUT_COLUMNS));
    // The server says why it refuses, through the client's error.
    let bad = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["clickhouse", "init", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot connect to ClickHouse"));
    query(&c, &format!("DROP DATABASE `{db}`")).await;
}

/// Rows go in as RowBinary and come back as they were: floats to the bit, times to the
/// nanosecond, the whole line in `payload`, lines of other types kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_arrive_exactly_as_the_lines_said() {
    let db = database("rows");
    let c = client();
    let tables = Tables {
        database: db.clone(),
        events: "events".into(),
    };
    tables.create(&c).await.unwrap();
    let latency: f64 = 0.1 + 0.2; // 0.30000000000000004: one of the doubles a JSON parser may round
    let lines = [
        format!("{{\"type\":\"exposure\",\"v\":1,\"ts\":\"2026-11-25T10:00:00.123456789Z\",\"experiment\":\"e\",\"unit\":\"u1\",\"variant\":\"a\",\"request_id\":\"c1~e~a~v~01\",\"status\":200,\"latency_ms\":{latency},\"phase\":\"p\"}}"),
        "{\"type\":\"conversion\",\"v\":1,\"ts\":\"2026-11-25T11:00:00Z\",\"experiment\":\"e\",\"unit\":\"u1\",\"value\":2.675,\"event_id\":\"0123456789abcdef0123456789abcdef\"}".to_owned(),
        "{\"type\":\"rollout\",\"ts\":\"2026-11-25T12:00:00Z\",\"experiment\":\"e\",\"step\":2}".to_owned(),
    ];
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        encode_event(
            line.as_bytes(),
            "replica-0",
            || format!("r0:seg:{i}"),
            &mut rows,
        )
        .unwrap();
    }
    let columns: Vec<&str> = EVENT_COLUMNS.iter().map(|c| c.0).collect();
    c.insert(&tables.events(), &columns, Bytes::from(rows))
        .await
        .unwrap();
    let got = query(
        &c,
        &format!(
            "SELECT type, event_id, ts_ns, toString(date), unit, status, replica, payload FROM {} ORDER BY ts_ns FORMAT TabSeparated",
            tables.events()
        ),
    )
    .await;
    let got: Vec<Vec<&str>> = got.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0][..7],
        [
            "exposure",
            "c1~e~a~v~01",
            "1795600800123456789",
            "2026-11-25",
            "u1",
            "200",
            "replica-0"
        ]
    );
    assert_eq!(
        got[1][..2],
        ["conversion", "0123456789abcdef0123456789abcdef"]
    );
    assert_eq!(got[2][..2], ["rollout", "r0:seg:2"]);
    // TabSeparated escapes backslashes and tabs only; these lines have neither.
    for (row, line) in got.iter().zip(&lines) {
        assert_eq!(row[7], line);
    }
    // The floats, as their bits: read back in RowBinary (18.16 cannot reinterpret them).
    for (column, kind, want) in [
        ("latency_ms", "exposure", latency),
        ("value", "conversion", 2.675),
    ] {
        let raw = c
            .execute(&format!(
                "SELECT assumeNotNull({column}) FROM {} WHERE type = '{kind}' FORMAT RowBinary",
                tables.events()
            ))
            .await
            .unwrap();
        let bits = u64::from_le_bytes(raw[..8].try_into().unwrap());
        assert_eq!(bits, want.to_bits(), "{column}");
    }

    // A config-versions line: a row per (experiment, variant).
    let mut rows = Vec::new();
    let n = encode_versions(
        br#"{"ts":"2026-11-25T09:00:00Z","config_version":"v1","shares":{"e":{"a":0.9,"b":0.1}}}"#,
        "replica-0",
        &mut rows,
    )
    .unwrap();
    assert_eq!(n, 2);
    let columns: Vec<&str> = VERSION_COLUMNS.iter().map(|c| c.0).collect();
    c.insert(&tables.versions(), &columns, Bytes::from(rows))
        .await
        .unwrap();
    let got = query(
        &c,
        &format!(
            "SELECT variant, share FROM {} ORDER BY variant FORMAT TabSeparated",
            tables.versions()
        ),
    )
    .await;
    assert_eq!(got, "a\t0.9\nb\t0.1\n");
    query(&c, &format!("DROP DATABASE `{db}`")).await;
}

fn ship_tables(db: &str) -> Tables {
    Tables {
        database: db.to_owned(),
        events: "events".into(),
    }
}

fn shipper(spool: &std::path::Path, db: &str, url: &str) -> cohort_clickhouse::ship::Shipper {
    shipper_as(spool, db, url, "replica-0", 3)
}

/// A shipper of `spool` into `db` that names itself `replica`, `batch` events a batch.
fn shipper_as(
    spool: &std::path::Path,
    db: &str,
    url: &str,
    replica: &str,
    batch: usize,
) -> cohort_clickhouse::ship::Shipper {
    let client = Client::new(url, "default", None, Duration::from_secs(5)).unwrap();
    cohort_clickhouse::ship::Shipper::new(
        spool,
        client,
        ship_tables(db),
        replica,
        batch,
        cohort_clickhouse::ship::ShipMetrics::new(),
    )
    .unwrap()
}

/// Rounds until one ships nothing; the total shipped and dead-lettered.
async fn drain(s: &mut cohort_clickhouse::ship::Shipper) -> (u64, u64) {
    let (mut shipped, mut dead) = (0, 0);
    for _ in 0..100 {
        let r = s.round().await.unwrap();
        if r.shipped + r.dead_letter == 0 {
            return (shipped, dead);
        }
        shipped += r.shipped;
        dead += r.dead_letter;
    }
    panic!("the shipper never caught up");
}

fn exposure(unit: &str, second: u32) -> String {
    format!("{{\"type\":\"exposure\",\"v\":1,\"ts\":\"2026-11-25T10:00:{second:02}Z\",\"experiment\":\"e\",\"unit\":\"{unit}\",\"variant\":\"a\",\"request_id\":\"c1~e~a~v~{unit}\"}}\n")
}

/// The spool ships in batches, a bad line goes to the dead-letter file without holding up
/// the lines after it, a half-written last line waits for its newline, and a new shipper
/// resumes from the saved cursor without shipping anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_ships_once_past_bad_lines_and_resumes_from_the_cursor() {
    let db = database("spool");
    let c = client();
    ship_tables(&db).create(&c).await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let segment = spool.path().join("events-20261125T100000Z-000001.jsonl");
    let mut text = String::new();
    for (i, u) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        text += &exposure(u, i as u32);
    }
    text += "{\"type\":\"exposure\",\"ts\":\"not a time\",\"experiment\":\"e\",\"unit\":\"bad\",\"variant\":\"a\"}\n";
    text += &exposure("u5", 6);
    let half = exposure("u6", 7);
    text += &half[..20];
    std::fs::write(&segment, &text).unwrap();
    std::fs::write(
        spool.path().join("config-versions.jsonl"),
        "{\"ts\":\"2026-11-25T09:00:00Z\",\"config_version\":\"v\",\"shares\":{\"e\":{\"a\":1.0}}}\n",
    )
    .unwrap();

    let mut s = shipper(spool.path(), &db, &server());
    assert_eq!(drain(&mut s).await, (5, 1));
    let count = |sql: String| {
        let c = c.clone();
        async move { query(&c, &sql).await.trim().to_owned() }
    };
    let events = format!("SELECT count() FROM `{db}`.`events` FORMAT TabSeparated");
    assert_eq!(count(events.clone()).await, "5");
    let dead = std::fs::read_to_string(spool.path().join("clickhouse.dead-letter.jsonl")).unwrap();
    assert!(
        dead.contains("\\\"unit\\\":\\\"bad\\\"") && dead.contains("not an RFC 3339 time"),
        "{dead}"
    );
    assert_eq!(
        count(format!(
            "SELECT count() FROM `{db}`.`events_config_versions` FORMAT TabSeparated"
        ))
        .await,
        "1"
    );
    // The cursor stops before the half-written line.
    assert_eq!(s.cursor().offset as usize, text.len() - 20);

    // The writer finishes the line; a new shipper (a restart) ships only that.
    std::fs::write(&segment, text.clone() + &half[20..]).unwrap();
    let mut again = shipper(spool.path(), &db, &server());
    assert_eq!(drain(&mut again).await, (1, 0));
    assert_eq!(count(events.clone()).await, "6");
    assert_eq!(
        count(format!(
            "SELECT uniqExact(event_id) FROM `{db}`.`events` FORMAT TabSeparated"
        ))
        .await,
        "6"
    );
    query(&c, &format!("DROP DATABASE `{db}`")).await;
}

/// ClickHouse away or refusing: nothing moves, the failure is told apart (connect, or a
/// refusal no retry fixes), and once it takes events again everything ships.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_moves_while_clickhouse_cannot_take_the_events() {
    let db = database("down");
    let spool = tempfile::tempdir().unwrap();
    std::fs::write(
        spool.path().join("events-20261125T100000Z-000001.jsonl"),
        exposure("u1", 1) + &exposure("u2", 2),
    )
    .unwrap();
    let dead = common::net::dead_port().await;
    let mut s = shipper(spool.path(), &db, &format!("http://{dead}"));
    let e = s.round().await.unwrap_err();
    assert_eq!(e.kind(), "connect");
    assert_eq!(s.cursor().offset, 0);
    // The server is up but the tables are not there: a refusal, said as ClickHouse says it.
    let mut s = shipper(spool.path(), &db, &server());
    let e = s.round().await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains(&db), "{e}");
    assert_eq!(s.cursor().offset, 0);
    let c = client();
    ship_tables(&db).create(&c).await.unwrap();
    assert_eq!(drain(&mut s).await, (2, 0));
    query(&c, &format!("DROP DATABASE `{db}`")).await;
}

/// A `cohort serve` config in `dir` (spool `spool-NAME`, config `routes-NAME.yaml`) that
/// ships to database `db` every `flush_ms`: (config path, public port, admin port).
fn shipping_config(
    dir: &std::path::Path,
    name: &str,
    db: &str,
    flush_ms: u64,
    backends: (std::net::SocketAddr, std::net::SocketAddr),
) -> (std::path::PathBuf, u16, u16) {
    shipping_config_with(dir, name, db, flush_ms, backends, &server(), "", "")
}

/// [`shipping_config`] to the ClickHouse at `url`, with more keys of `events` and of
/// `events.clickhouse` (each `key: value, …` with a leading comma).
#[allow(clippy::too_many_arguments)]
fn shipping_config_with(
    dir: &std::path::Path,
    name: &str,
    db: &str,
    flush_ms: u64,
    backends: (std::net::SocketAddr, std::net::SocketAddr),
    url: &str,
    events: &str,
    clickhouse: &str,
) -> (std::path::PathBuf, u16, u16) {
    use common::process::free_port;
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 50, ship_timeout_ms: 10000 }}\nevents: {{ dir: {:?}{events}, clickhouse: {{ url: {:?}, database: {db}, flush_interval_ms: {flush_ms}{clickhouse} }} }}\n{}",
        dir.join(format!("spool-{name}")).display().to_string(),
        url,
        common::net::two_arm(backends.0, backends.1, "")
    );
    let config = dir.join(format!("routes-{name}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    (config, port, admin)
}

/// Three `cohort serve` replicas shipping into one database: every exposure and every
/// accepted conversion of the fleet arrives once, each replica named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_ship_every_event_once() {
    use common::net::{backend, client as http, send};
    use common::process::CohortProcess;
    let db = database("fleet");
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for r in 0..3 {
        let (config, port, admin) = shipping_config(dir.path(), &r.to_string(), &db, 50, (rf, lr));
        let p = CohortProcess::start(&config, &[("HOSTNAME", &format!("replica-{r}"))]);
        replicas.push((p, port, admin));
    }
    let c = http();
    // 90 users, each on the replica a load balancer happened to pick; 30 convert.
    for u in 0..90u32 {
        let (_, port, _) = &replicas[(u % 3) as usize];
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let ans = send(
            &c,
            addr,
            "/invocations",
            &[("x-user-id", &format!("user-{u}"))],
        )
        .await;
        assert_eq!(ans.status, 200);
        if u % 3 == 0 {
            // Reported to any replica, not the one that served the user.
            let other = &replicas[((u / 3) % 3) as usize].2;
            let req = http::Request::post(format!("http://127.0.0.1:{other}/v1/conversions"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(format!(
                    "{{\"experiment\": \"iris-model\", \"unit\": \"user-{u}\"}}"
                ))))
                .unwrap();
            assert_eq!(c.request(req).await.unwrap().status(), 202);
        }
    }
    let ch = client();
    let counts = format!(
        "SELECT type, count(), uniqExact(event_id), uniqExact(replica) FROM `{db}`.`events` GROUP BY type ORDER BY type FORMAT TabSeparated"
    );
    let want = "conversion\t30\t30\t3\nexposure\t90\t90\t3\n";
    let start = std::time::Instant::now();
    loop {
        // The tables are created by the first replica to start; until then, an error.
        let got = ch
            .execute(&counts)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if got.as_deref().ok() == Some(want) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the fleet's events did not arrive: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (p, _, admin) in &mut replicas {
        // The shipper measures the backlog just after its insert: the rows can be in
        // ClickHouse a moment before the gauge says 0.
        let start = std::time::Instant::now();
        loop {
            let m = metrics(*admin).await;
            if sample(&m, "cohort_clickhouse_backlog_bytes") == Some(0.0) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the backlog stays: {m}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(p.terminate(), Some(0));
    }
    query(&ch, &format!("DROP DATABASE `{db}`")).await;
}

/// With a retention, segments wholly shipped are deleted once that old; the segment being
/// shipped (or written) and anything not shipped yet never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_shipped_segments() {
    let db = database("retention");
    let c = client();
    ship_tables(&db).create(&c).await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let (a, b) = (
        spool.path().join("events-20261125T100000Z-000001.jsonl"),
        spool.path().join("events-20261125T110000Z-000002.jsonl"),
    );
    std::fs::write(&a, exposure("u1", 1) + &exposure("u2", 2)).unwrap();
    std::fs::write(&b, exposure("u3", 3)).unwrap();
    let mut s = shipper(spool.path(), &db, &server()).with_retention(Some(Duration::ZERO));
    // The first batch (3 lines at most) ends in b: a is shipped, b is the cursor's.
    assert_eq!(drain(&mut s).await, (3, 0));
    assert!(!a.exists(), "a shipped segment past its retention stays");
    assert!(b.exists(), "the cursor's segment was deleted");
    // Without a retention nothing is deleted.
    let spool2 = tempfile::tempdir().unwrap();
    let a2 = spool2.path().join("events-20261125T100000Z-000001.jsonl");
    std::fs::write(&a2, exposure("v1", 1)).unwrap();
    std::fs::write(
        spool2.path().join("events-20261125T110000Z-000002.jsonl"),
        exposure("v2", 2),
    )
    .unwrap();
    let mut s = shipper(spool2.path(), &db, &server());
    assert_eq!(drain(&mut s).await, (2, 0));
    assert!(a2.exists());
    query(&c, &format!("DROP DATABASE `{db}`")).await;
}

/// On SIGTERM, after the drain, the shipper ships what the spool holds before the process
/// exits (here nothing would ship otherwise: the flush interval is ten minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_ships_on_shutdown() {
    use common::net::{backend, client as http, send};
    use common::process::CohortProcess;
    let db = database("shutdown");
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let (config, port, _) = shipping_config(dir.path(), "0", &db, 600_000, (rf, lr));
    let mut p = CohortProcess::start(&config, &[]);
    p.wait_log("ClickHouse tables ready", Duration::from_secs(10))
        .expect("the shipper creates the tables at start");
    let c = http();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for u in 0..25 {
        send(&c, addr, "/invocations", &[("x-user-id", &format!("u{u}"))]).await;
    }
    assert_eq!(p.terminate(), Some(0));
    let got = query(
        &client(),
        &format!("SELECT count() FROM `{db}`.`events` FORMAT TabSeparated"),
    )
    .await;
    assert_eq!(got.trim(), "25");
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}
