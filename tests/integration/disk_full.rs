//! A real full disk: cohort writes its events to a 256 KiB tmpfs mounted in a private
//! mount namespace (`unshare -Urm`), fills up, keeps serving, counts what it drops, and
//! resumes when space returns. Skipped, saying so, where user namespaces are not allowed.
//!
//! A read-only *remount* cannot be staged here: Linux refuses to remount a filesystem
//! read-only while a file on it is open for writing (EBUSY), and cohort always has its
//! segment open; the EROFS path is covered through a fault-injecting sink in events.rs.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::net::{backend, client, send};
use common::process::{admin_call, free_port};

const SCRIPT: &str = r#"
mount -t tmpfs -o size=256k tmpfs "$EVENTS" || { echo SKIP; exit 0; }
"$COHORT" serve --config "$CONFIG" >/dev/null 2>"$LOGFILE" &
pid=$!
echo STARTED
while read -r cmd; do
  case "$cmd" in
    fill) dd if=/dev/zero of="$EVENTS/filler" bs=4k count=1000 2>/dev/null; echo OK ;;
    free) rm -f "$EVENTS/filler"; echo OK ;;
    lines) cat "$EVENTS"/events-*.jsonl | wc -l ;;
    tails) for f in "$EVENTS"/events-*.jsonl; do [ -s "$f" ] && tail -c1 "$f" | od -An -tx1; done; echo END ;;
    stop) kill -TERM "$pid"; wait "$pid"; echo "STOPPED $?"; exit 0 ;;
  esac
done
"#;

/// (written, dropped) from the metrics.
async fn counters(admin: SocketAddr) -> (u64, u64) {
    let (_, m) = admin_call(admin, "GET", "/metrics", None).await;
    let value = |name: &str| {
        m.as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (
        value("cohort_events_written_total"),
        value("cohort_events_dropped_total"),
    )
}

/// Waits (bounded) until written + dropped = produced.
async fn settled(admin: SocketAddr, produced: u64) -> (u64, u64) {
    let start = Instant::now();
    loop {
        let (w, d) = counters(admin).await;
        if w + d == produced {
            return (w, d);
        }
        assert!(
            w + d < produced,
            "more events than requests: {w} + {d} > {produced}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stuck at {w} + {d} of {produced}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_drops_counted_events_serves_on_and_recovers() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let (port, admin) = (free_port(), free_port());
    // fsync always: every batch is on disk (or counted dropped) before it counts.
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 20 }}\nevents: {{ dir: {:?}, fsync: always }}\n{}",
        events.display().to_string(),
        common::net::two_arm(rf, lr, "")
    );
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut ns = match Command::new("unshare")
        .args(["-Urm", "sh", "-c", SCRIPT])
        .env("EVENTS", &events)
        .env("COHORT", env!("CARGO_BIN_EXE_cohort"))
        .env("CONFIG", &config)
        .env("LOGFILE", dir.path().join("cohort.log"))
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED: cannot run unshare ({e})");
            return;
        }
    };
    let mut to = ns.stdin.take().unwrap();
    let mut from = BufReader::new(ns.stdout.take().unwrap()).lines();
    let mut line = || from.next().and_then(|l| l.ok()).unwrap_or_default();
    match line().as_str() {
        "STARTED" => {}
        other => {
            eprintln!(
                "SKIPPED: mounting a tmpfs in a user namespace is not permitted here ({other:?})"
            );
            let _ = ns.wait();
            return;
        }
    }
    let (proxy, admin): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
    );
    let start = Instant::now();
    while admin_call_ok(admin).await.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cohort did not start in the namespace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = client();
    let mut produced = 0u64;
    async fn drive(c: &common::net::HttpClient, proxy: SocketAddr, n: u64, tag: &str) {
        for i in 0..n {
            let ans = send(
                c,
                proxy,
                "/invocations",
                &[("x-user-id", &format!("{tag}-{i}"))],
            )
            .await;
            assert_eq!(ans.status, 200, "requests never fail because of the disk");
        }
    }

    // Healthy.
    produced += 100;
    drive(&c, proxy, 100, "a").await;
    let (w0, d0) = settled(admin, produced).await;
    assert_eq!((w0, d0), (100, 0));
    // Disk full: requests still succeed; events are dropped and counted.
    writeln!(to, "fill").unwrap();
    assert_eq!(line(), "OK");
    produced += 300;
    drive(&c, proxy, 300, "b").await;
    let (w1, d1) = settled(admin, produced).await;
    assert!(
        d1 > 0,
        "a full disk drops events ({w1} written, {d1} dropped)"
    );
    // Space returns: writing resumes.
    writeln!(to, "free").unwrap();
    assert_eq!(line(), "OK");
    produced += 100;
    drive(&c, proxy, 100, "c").await;
    let (w2, d2) = settled(admin, produced).await;
    assert!(
        w2 >= w1 + 100 && d2 == d1,
        "writing resumed: {w1}→{w2} written, {d1}→{d2} dropped"
    );
    // What is on disk is exactly what was counted written, with no fragment mid-segment.
    writeln!(to, "lines").unwrap();
    let lines: u64 = line().trim().parse().unwrap();
    assert_eq!(lines, w2, "complete lines on disk = events counted written");
    writeln!(to, "tails").unwrap();
    loop {
        let l = line();
        if l == "END" {
            break;
        }
        assert_eq!(l.trim(), "0a", "every segment ends with a newline");
    }
    writeln!(to, "stop").unwrap();
    assert_eq!(line(), "STOPPED 0");
    let _ = ns.wait();
}

async fn admin_call_ok(admin: SocketAddr) -> Option<()> {
    let c = client();
    let req = http::Request::get(format!("http://{admin}/readyz"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let resp = c.request(req).await.ok()?;
    (resp.status() == 200).then_some(())
}
