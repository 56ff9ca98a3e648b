//! The outcome log: every answered request has its exposure; the writer rotates, counts
//! what it cannot write, and the reader skips damage.

use crate::common;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_config::schema::{EventsConfig, FsyncMode};
use cohort_events::reader::read_dir;
use cohort_events::writer::{start, EventSink};
use cohort_events::{Event, Exposure, SegmentLog, WriterOptions};
use common::net::{backend, client, send, two_arm};
use common::process::{free_port, CohortProcess};
use prometheus::IntCounter;

fn exposure(i: usize) -> Event {
    Event::Exposure(Exposure {
        v: Some(1),
        ts: "2026-11-25T00:00:00.000Z".into(),
        experiment: "e".into(),
        unit: format!("user-{i}"),
        variant: if i.is_multiple_of(2) {
            "a".into()
        } else {
            "b".into()
        },
        request_id: Some(format!("r{i}")),
        client_request_id: None,
        config_version: None,
        route: None,
        status: Some(200),
        latency_ms: Some(1.5),
        aborted: false,
        forced: false,
        unit_missing: false,
        phase: None,
    })
}

fn counters() -> (IntCounter, IntCounter) {
    (
        IntCounter::new("w", "w").unwrap(),
        IntCounter::new("d", "d").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_request_has_exactly_one_exposure_after_sigterm() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 20 }}\nevents: {{ dir: {:?}, fsync: never }}\n{}",
        dir.path().join("events").display().to_string(),
        two_arm(rf, lr, "")
    );
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut cohort = CohortProcess::start(&config, &[]);
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let c = client();
    let mut answered = HashMap::new();
    for i in 0..300 {
        let user = format!("user-{}", i % 120);
        let ans = send(
            &c,
            proxy,
            "/invocations",
            &[
                ("x-user-id", &user),
                ("x-request-id", &format!("client-{i}")),
            ],
        )
        .await;
        let rid = ans.headers["x-cohort-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        answered.insert(
            rid,
            (
                user,
                ans.headers["x-cohort-variant"].to_str().unwrap().to_owned(),
                i,
            ),
        );
    }
    assert_eq!(cohort.terminate(), Some(0));

    let read = read_dir(&dir.path().join("events")).unwrap();
    assert_eq!(read.malformed, 0);
    assert_eq!(read.events.len(), 300, "one exposure per answered request");
    for e in &read.events {
        let Event::Exposure(x) = e else {
            panic!("only exposures: {e:?}")
        };
        let (user, variant, i) = &answered[x.request_id.as_ref().unwrap()];
        assert_eq!((&x.unit, &x.variant), (user, variant));
        assert_eq!(
            x.client_request_id.as_deref(),
            Some(format!("client-{i}").as_str())
        );
        assert_eq!(
            (x.status, x.aborted, x.unit_missing, x.forced),
            (Some(200), false, false, false)
        );
        assert_eq!(x.experiment, "iris-model");
        assert!(x.latency_ms.unwrap() >= 0.0);
    }
    let versions =
        std::fs::read_to_string(dir.path().join("events/config-versions.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(versions.lines().next().unwrap()).unwrap();
    assert_eq!(first["shares"]["iris-model"]["rf"], 0.5);
}

#[test]
fn segments_rotate_by_size_and_age_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EventsConfig {
        dir: dir.path().to_path_buf(),
        segment_max_bytes: 4096,
        segment_max_age_s: 0.2,
        fsync: FsyncMode::Always,
        ..EventsConfig::default()
    };
    let (written, dropped) = counters();
    let opts = WriterOptions::plain(
        1024,
        cfg.fsync,
        Duration::from_millis(50),
        written.clone(),
        dropped.clone(),
    );
    let (log, writer) = start(Box::new(SegmentLog::open(&cfg).unwrap()), opts);
    for i in 0..100 {
        log.record(exposure(i));
    }
    // Let the first segment age past 0.2 s: the next batch starts a new segment.
    std::thread::sleep(Duration::from_millis(300));
    for i in 100..105 {
        log.record(exposure(i));
    }
    writer.finish();
    assert_eq!((written.get(), dropped.get()), (105, 0));
    let read = read_dir(dir.path()).unwrap();
    assert!(
        read.segments >= 5,
        "size rotation made only {} segments",
        read.segments
    );
    let units: Vec<String> = read
        .events
        .iter()
        .map(|e| match e {
            Event::Exposure(x) => x.unit.clone(),
            _ => unreachable!(),
        })
        .collect();
    let expected: Vec<String> = (0..105).map(|i| format!("user-{i}")).collect();
    assert_eq!(units, expected, "every event once, in order");
    for seg in cohort_events::reader::segments(dir.path()).unwrap() {
        let len = std::fs::metadata(&seg).unwrap().len();
        assert!(len <= 4096 + 300, "{} is {len} bytes", seg.display());
        assert!(
            std::fs::read(&seg).unwrap().ends_with(b"\n"),
            "no segment ends mid-line"
        );
    }
    // The age rotation: the last five events are in a segment of their own.
    let last = cohort_events::reader::segments(dir.path())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(std::fs::read_to_string(last).unwrap().lines().count(), 5);
}

/// A sink that fails every third batch, like a disk that fills and frees up, or a
/// filesystem remounted read-only and back.
struct Flaky {
    calls: usize,
    lines: Arc<Mutex<usize>>,
}

impl EventSink for Flaky {
    fn append(&mut self, batch: &[u8], events: usize) -> io::Result<()> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        assert_eq!(batch.iter().filter(|&&b| b == b'\n').count(), events);
        *self.lines.lock().unwrap() += events;
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_failures_are_counted_so_written_plus_dropped_equals_produced() {
    let lines = Arc::new(Mutex::new(0));
    let (written, dropped) = counters();
    let sink = Flaky {
        calls: 0,
        lines: lines.clone(),
    };
    let opts = WriterOptions::plain(
        64,
        FsyncMode::Never,
        Duration::from_millis(10),
        written.clone(),
        dropped.clone(),
    );
    let (log, writer) = start(Box::new(sink), opts);
    let produced = 5000;
    for i in 0..produced {
        log.record(exposure(i));
        if i.is_multiple_of(50) {
            std::thread::yield_now();
        }
    }
    writer.finish();
    assert!(dropped.get() > 0, "the flaky sink failed some batches");
    assert!(written.get() > 0, "and recovered");
    assert_eq!(written.get() + dropped.get(), produced as u64);
    assert_eq!(
        *lines.lock().unwrap() as u64,
        written.get(),
        "what counts as written is what the sink holds"
    );
}

#[test]
fn the_reader_skips_and_counts_malformed_lines_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let good = serde_json::to_string(&exposure(1)).unwrap();
    let text = format!("{good}\nnot json\n{good}\n{{\"type\":\"exposure\"}}\n{good}\n{{\"type\":\"exposure\",\"ts\":\"t\",\"exper");
    std::fs::write(
        dir.path().join("events-20261125T000000Z-000001.jsonl"),
        text,
    )
    .unwrap();
    std::fs::write(dir.path().join("unrelated.log"), "ignored\n").unwrap();
    let read = read_dir(dir.path()).unwrap();
    assert_eq!(read.events.len(), 3);
    assert_eq!(
        read.malformed, 3,
        "a bad line, a line missing fields, and a torn last line"
    );
}

/// The writer's backlog is visible: while it is held up, what waits behind it shows in
/// `cohort_events_queue_depth` and stays in its high-water mark.
#[test]
fn the_queue_depth_and_its_high_water_mark_show_the_backlog() {
    use prometheus::IntGauge;
    use std::sync::mpsc;
    /// A sink that reports every batch's size, and whose first append waits for a signal.
    struct HeldUp {
        release: Option<mpsc::Receiver<()>>,
        appended: mpsc::Sender<usize>,
    }
    impl EventSink for HeldUp {
        fn append(&mut self, _: &[u8], n: usize) -> std::io::Result<()> {
            if let Some(release) = self.release.take() {
                let _ = self.appended.send(n);
                let _ = release.recv();
            } else {
                let _ = self.appended.send(n);
            }
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (go, release) = mpsc::channel();
    let (appended, batches) = mpsc::channel();
    let (written, dropped) = counters();
    let depth = IntGauge::new("depth", "d").unwrap();
    let max = IntGauge::new("max", "m").unwrap();
    let opts = WriterOptions::plain(
        1024,
        FsyncMode::Never,
        Duration::from_millis(50),
        written.clone(),
        dropped,
    )
    .with_queue_gauges(depth.clone(), max.clone());
    let sink = HeldUp {
        release: Some(release),
        appended,
    };
    let (log, writer) = start(Box::new(sink), opts);
    log.record(exposure(0));
    let first = batches.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first, 1, "the writer holds the first event");
    for i in 1..=100 {
        log.record(exposure(i));
    }
    go.send(()).unwrap();
    let mut total = first;
    while total < 101 {
        total += batches.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    // Sampled at the wake-up after the held batch: 99 were waiting behind the one taken.
    assert_eq!(max.get(), 99);
    writer.finish();
    assert_eq!(written.get(), 101);
    assert_eq!(depth.get(), 0, "drained at the end");
}

/// A model on raw TCP: it answers with a chunked head and one chunk, then on `/breaks`
/// closes the connection without the last chunk (a crash mid-response), and on anything
/// else holds it open for 10 s (so that the client is the one to go).
async fn half_body_backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let breaks = String::from_utf8_lossy(&head).contains("/breaks");
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n{\"first\": true}\n\r\n")
                    .await;
                if !breaks {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            });
        }
    });
    addr
}

/// `aborted` blames the model only: a response the upstream broke off is aborted; one the
/// client hung up on is not (its exposure is written, with the status the model gave).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_marks_the_upstreams_break_not_the_clients_hang_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let model = half_body_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 20 }}\nevents: {{ dir: {:?} }}\n{}",
        dir.path().join("events").display().to_string(),
        two_arm(model, model, "")
    );
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut cohort = CohortProcess::start(&config, &[]);
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for (path, user) in [
        ("/invocations/breaks", "u-breaks"),
        ("/invocations/hangs", "u-hangs"),
    ] {
        let mut conn = tokio::net::TcpStream::connect(proxy).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nx-user-id: {user}\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the first chunk has arrived, then (for /hangs) hang up.
        while !String::from_utf8_lossy(&got).contains("first") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed before the first chunk");
            got.extend_from_slice(&buf[..n]);
        }
        if path.ends_with("breaks") {
            // The break reaches the client as a connection closed without the last chunk.
            let rest = tokio::time::timeout(Duration::from_secs(5), async {
                while conn.read(&mut buf).await.unwrap_or(0) > 0 {}
            })
            .await;
            assert!(rest.is_ok(), "the broken response never ended");
        }
        drop(conn);
    }
    assert_eq!(cohort.terminate(), Some(0));
    let read = read_dir(&dir.path().join("events")).unwrap();
    let aborted: HashMap<String, bool> = read
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Exposure(x) => Some((x.unit.clone(), x.aborted)),
            _ => None,
        })
        .collect();
    assert_eq!(aborted.get("u-breaks"), Some(&true), "{aborted:?}");
    assert_eq!(aborted.get("u-hangs"), Some(&false), "{aborted:?}");
}
