//! Fleet outcomes against a real ClickHouse server (Debian's clickhouse-server, started by
//! scripts/test on loopback; its URL in `COHORT_TEST_CLICKHOUSE_URL`). Each test works in
//! a database of its own.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cohort_clickhouse::rowbinary::{encode_event, encode_versions};
use cohort_clickhouse::schema::{EVENT_COLUMNS, VERSION_COLUMNS};
use cohort_clickhouse::{Client, Tables};

fn server() -> String {
    std::env::var("COHORT_TEST_CLICKHOUSE_URL").expect(
        "COHORT_TEST_CLICKHOUSE_URL is not set: run these tests with scripts/test, which starts a ClickHouse server",
    )
}

fn client() -> Client {
    Client::new(&server(), "default", None, Duration::from_secs(10)).unwrap()
}

/// A database name no other test uses.
fn database(test: &str) -> String {
    format!("cohort_test_{test}_{}", std::process::id())
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
