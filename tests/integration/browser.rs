//! The HTML pages in a real browser (headless Chromium from Debian's packages): the admin
//! index and a live report of a 10-day log with a ramp load without a console message,
//! and the report renders at 1280 px; a report with a shadow traffic section loads and
//! shows its rows. The screenshot is left in the target directory
//! (`report.png` under `CARGO_TARGET_TMPDIR`); docs/report.png is a copy of one.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs headless Chromium on `url` with `args` (e.g. `--dump-dom`), bounded in time.
fn chromium(url: &str, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Console messages go to stderr as "…:CONSOLE:<line>] "<message>", source: …".
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium runs (scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "chromium took over 90 s on {url}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn console_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect()
}

/// The width and height of a PNG file, from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_console_of_a_page_is_seen() {
    // The check below has teeth: a page that logs to the console is caught.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("noisy.html");
    std::fs::write(&page, "<script>console.error('noisy page')</script>").unwrap();
    let out = chromium(&format!("file://{}", page.display()), &["--dump-dom"]);
    let console = console_lines(&out);
    assert!(
        console.iter().any(|l| l.contains("noisy page")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_pages_render_in_a_browser_without_console_messages() {
    let (_dir, mut cohort, admin) = common::process::serve_ramped_log().await;

    let index =
        tokio::task::spawn_blocking(move || chromium(&format!("http://{admin}/"), &["--dump-dom"]))
            .await
            .unwrap();
    assert_eq!(console_lines(&index), Vec::<String>::new());
    let dom = String::from_utf8_lossy(&index.stdout);
    assert!(
        dom.contains("href=\"/v1/experiments/iris-model/report.html\""),
        "{dom}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let page = tokio::task::spawn_blocking(move || {
        chromium(
            &format!("http://{admin}/v1/experiments/iris-model/report.html?refresh=300"),
            &["--window-size=1280,2000", "--hide-scrollbars", &arg],
        )
    })
    .await
    .unwrap();
    assert_eq!(console_lines(&page), Vec::<String>::new());
    assert_eq!(png_size(&shot), (1280, 2000));
    // A page that rendered is mostly not blank: its PNG is well above an empty one's size.
    assert!(std::fs::metadata(&shot).unwrap().len() > 40_000);
    assert_eq!(cohort.terminate(), Some(0));
}

/// A report with a shadow section, written by `cohort report --format html`, loads in the
/// browser without a console message and shows the section's rows.
#[test]
fn a_report_with_shadow_traffic_renders_in_a_browser() {
    use std::fmt::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for i in 0..40 {
        let (variant, agree) = (["a", "b"][i % 2], i % 5 != 0);
        let ts = format!("2026-11-25T00:00:{:02}Z", i);
        let _ = writeln!(
            log,
            "{{\"type\":\"exposure\",\"ts\":\"{ts}\",\"experiment\":\"e\",\"unit\":\"u{i}\",\"variant\":\"{variant}\",\"request_id\":\"r{i}\"}}"
        );
        let _ = writeln!(
            log,
            "{{\"type\":\"shadow\",\"v\":1,\"ts\":\"{ts}\",\"event_id\":\"r{i}/cand\",\"experiment\":\"e\",\"variant\":\"{variant}\",\"shadow\":\"cand\",\"unit\":\"u{i}\",\"request_id\":\"r{i}\",\"result\":\"{}\",\"agree\":{agree},\"compared\":\"predictions\",\"elements\":3,\"elements_agreed\":{},\"max_abs_diff\":{},\"primary_status\":200,\"shadow_status\":200,\"primary_ms\":3.5,\"shadow_ms\":4.5}}",
            if agree { "agree" } else { "disagree" },
            if agree { 3 } else { 2 },
            if agree { 0.0 } else { 0.25 },
        );
    }
    std::fs::write(dir.path().join("events-1.jsonl"), log).unwrap();
    let page = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["report", "--events"])
        .arg(dir.path())
        .args([
            "--control",
            "a",
            "--experiment",
            "e",
            "--format",
            "html",
            "--out",
        ])
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = chromium(&format!("file://{}", page.display()), &["--dump-dom"]);
    assert_eq!(console_lines(&shown), Vec::<String>::new());
    let dom = String::from_utf8_lossy(&shown.stdout);
    assert!(dom.contains("<h3>Shadow traffic</h3>"), "{dom}");
    assert!(dom.contains("shadow traffic: 40 answers compared"), "{dom}");
    // Both rows: cand against a and against b, each with 16 of 20 agreeing.
    assert_eq!(dom.matches("<td>cand</td>").count(), 2, "{dom}");
    assert_eq!(dom.matches("<td>80.00% (").count(), 2, "{dom}");
}
