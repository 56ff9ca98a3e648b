//! README's first steps run as written, in order: every `sh` block of its opening, "A quick
//! tour" and "Serving" sections, in a scratch copy of the repository's root (routes.yaml,
//! and `target/release/cohort` linked to the binary under test). `cargo build` and
//! `scripts/test` are skipped (this is that build, and that suite), and `cargo run --release
//! --` runs the same binary. A command left running (`demo --serve`) is started, waited
//! for until it logs `serving`, and stopped with Ctrl-C (SIGINT) after the commands that
//! follow it. Uses curl and the documented fixed ports (5001, 5002, 8080, 9901).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The sections whose commands a newcomer runs first, in README order.
const SECTIONS: [&str; 3] = ["# cohort", "## A quick tour", "## Serving"];

/// The shell commands of `SECTIONS`, continuation lines joined.
fn commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut section, mut in_sh, mut fenced) = ("", false, false);
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !fenced && line.trim() == "```sh";
            fenced = !fenced;
            continue;
        }
        if !fenced && line.starts_with('#') {
            section = line;
            continue;
        }
        if !(fenced && in_sh && SECTIONS.contains(&section)) {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(part) => pending += part,
            None => {
                pending += line;
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

fn bash(dir: &Path, command: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-o", "pipefail", "-c", command]).current_dir(dir);
    c
}

/// A command left running, stopped with SIGINT when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_first_steps_run_in_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = commands(&readme);
    assert!(
        commands.len() >= 12,
        "README's first steps were not found: {commands:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("routes.yaml"), dir.path().join("routes.yaml")).unwrap();
    std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_cohort"),
        dir.path().join("target/release/cohort"),
    )
    .unwrap();

    let mut running: Vec<Running> = Vec::new();
    let mut outputs = Vec::new();
    for command in &commands {
        let shell = command.split('#').next().unwrap_or("").trim();
        if shell.starts_with("cargo build") || shell.starts_with("scripts/test") {
            continue;
        }
        let shell = shell.replace("cargo run --release --", "./target/release/cohort");
        if shell.contains("demo --serve") {
            // The process must be cohort itself (exec) so that SIGINT reaches it.
            let mut child = bash(dir.path(), &format!("exec {shell}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            loop {
                match lines.next() {
                    Some(Ok(l)) if l.contains(" serving ") => break,
                    Some(Ok(_)) => {}
                    _ => panic!("`{shell}` ended before serving: {:?}", child.wait()),
                }
            }
            std::thread::spawn(move || lines.for_each(drop));
            running.push(Running(child));
            continue;
        }
        let out = bash(dir.path(), &shell).output().unwrap();
        assert!(
            out.status.success(),
            "`{shell}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((shell, String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let output_of = |needle: &str| {
        outputs
            .iter()
            .find(|(c, _)| c.contains(needle))
            .map(|(_, o)| o.as_str())
            .unwrap_or_else(|| panic!("no command with {needle:?} ran"))
    };
    // What each step is for, not just its exit code.
    assert!(output_of("demo --keep").contains("sticky: yes"));
    assert!(output_of("--format html").is_empty());
    let html = std::fs::read_to_string(dir.path().join("demo-run/report.html")).unwrap();
    assert!(html.contains("<svg"), "the HTML report has its charts");
    let units = std::fs::read_to_string(dir.path().join("units.jsonl")).unwrap();
    assert_eq!(units.lines().count(), 100_000);
    for line in units.lines().take(3) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["variant"] == "rf" || v["variant"] == "lr", "{line}");
    }
    assert!(output_of("--against").contains("rf → lr"));
    assert!(output_of("localhost:8080/invocations -H").contains("x-cohort-variant:"));
    assert!(output_of("--http2-prior-knowledge").starts_with("HTTP/2 200"));
    assert!(output_of("9901/metrics").contains("cohort_requests_total{"));
    // The served proxy logged the curl requests beside the demo's users.
    let served = output_of("--events ./data/events");
    assert!(served.contains("iris-model"), "{served}");
    drop(running);
}
