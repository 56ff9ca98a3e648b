//! `cohort serve` as a child process, for tests that need the real binary (signals, file
//! watching, restarts).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// A running `cohort serve`, killed if the test ends before it does.
pub struct CohortProcess {
    child: Child,
    /// The "serving" log line (JSON): its fields say what the process started with.
    pub serving: Value,
    /// The log lines after it, as they come.
    logs: std::sync::mpsc::Receiver<Value>,
}

/// A loopback port nothing listens on right now, for a cohort process to bind. Taken below
/// the kernel's ephemeral range (32768 and up on Linux) and never twice in one test run, so
/// that neither another test's outgoing connection nor another call takes it before cohort
/// binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base.wrapping_add(n) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl CohortProcess {
    /// Starts `cohort serve --config CONFIG` with extra environment variables and waits
    /// for its "serving" log line (both listeners are bound by then). The working directory
    /// is the config's directory, so the default `./data/...` paths land beside it.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> CohortProcess {
        Self::start_with_workers(config, env, "2")
    }

    /// [`CohortProcess::start`] with `--workers N` (1 runs a current-thread runtime).
    pub fn start_with_workers(config: &Path, env: &[(&str, &str)], workers: &str) -> CohortProcess {
        Self::start_with(config, env, &["--workers", workers])
    }

    /// [`CohortProcess::start`] with these arguments after `serve --config CONFIG`.
    pub fn start_with(config: &Path, env: &[(&str, &str)], args: &[&str]) -> CohortProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cohort"));
        cmd.args(["serve", "--config", config.to_str().unwrap()])
            .args(args)
            .args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(dir) = config.parent() {
            cmd.current_dir(dir);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // Lines before "serving" stay readable by wait_log (threads of the process log
        // from the start).
        let (tx, logs) = std::sync::mpsc::channel();
        let serving = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("cohort serve exited before serving: {:?}", child.wait()),
            };
            let json: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
            if json["fields"]["message"] == "serving" {
                break json;
            }
            let _ = tx.send(json);
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
            }
        });
        CohortProcess {
            child,
            serving,
            logs,
        }
    }

    /// The next log line (JSON) whose message is `message`, within `within`.
    pub fn wait_log(&self, message: &str, within: std::time::Duration) -> Option<Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.logs.recv_timeout(left).ok()?;
            if line["fields"]["message"] == message {
                return Some(line);
            }
        }
    }

    /// [`Self::wait_log`], failing with every log line seen meanwhile when `message`
    /// does not come.
    pub fn expect_log(&self, message: &str, within: std::time::Duration) -> Value {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) if line["fields"]["message"] == message => return line,
                Ok(line) => seen.push(line.to_string()),
                Err(_) => panic!(
                    "no log line {message:?} within {within:?}; the lines meanwhile:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The process id, e.g. to read its memory in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.child.wait().unwrap().code()
    }

    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }
}

impl Drop for CohortProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `cohort` binary with `args`; asserts that it succeeds (showing its standard
/// error if not) and returns its standard output.
pub fn cohort_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cohort {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An HTTP call to an admin endpoint: (status, JSON body or the text as a JSON string).
pub async fn admin_call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let client = super::net::client();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, json)
}

/// A POST of JSON Lines to an admin endpoint (e.g. conversions): (status, JSON body).
pub async fn admin_post(addr: SocketAddr, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/x-ndjson")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = super::net::client().request(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `cohort serve` on the event log of [`super::ramped_log`] (replayed at start, so the
/// live report has 10 days and a ramp to show): (scratch dir, process, admin address).
pub async fn serve_ramped_log() -> (tempfile::TempDir, CohortProcess, SocketAddr) {
    let (rf, lr) = (
        super::net::backend("rf").await,
        super::net::backend("lr").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    super::ramped_log(&events);
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 50 }}\nevents: {{ dir: {:?} }}\n{}",
        events.display().to_string(),
        super::net::two_arm(rf, lr, "")
    );
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let process = CohortProcess::start(&config, &[]);
    (dir, process, SocketAddr::from(([127, 0, 0, 1], admin)))
}

/// Every line of type `kind` (e.g. `"shadow"`) in the event segments (`events-*.jsonl`) of
/// `events_dir`, in file order.
pub fn typed_lines(events_dir: &Path, kind: &str) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(events_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("events-") && name.ends_with(".jsonl")
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["type"] == kind)
                .collect::<Vec<_>>()
        })
        .collect()
}
