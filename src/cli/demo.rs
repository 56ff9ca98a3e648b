//! `cohort demo`: runs [`crate::demo::run`] and prints what it saw (text or JSON); with
//! `--keep DIR` leaves its event log and config behind, with `--serve` goes on serving the
//! built-in routes.yaml with its model backends until Ctrl-C.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{exit, Format};
use crate::demo::{self, quantile, Outcome};
use cohort_config::compare::{compare, pct, ExperimentChange};
use cohort_config::{self as config, Routes};

/// `cohort demo`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated users (each sends 1 to 5 requests).
    #[arg(long, default_value_t = 4_000)]
    pub users: u32,
    /// Stop sending after this many seconds, even if users remain.
    #[arg(long, default_value_t = 45.0)]
    pub duration: f64,
    /// Keep the event log (DIR/events) and the config the demo ran with (DIR/routes.yaml),
    /// and print the `cohort report` commands that read them.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Then go on serving: the model backends on the ports routes.yaml names (5001, 5002)
    /// and cohort on the built-in routes.yaml (127.0.0.1:8080, admin 127.0.0.1:9901, events
    /// in ./data/events), until Ctrl-C. The demo's own log goes to ./data/events too
    /// (unless --keep).
    #[arg(long)]
    pub serve: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Where `--serve` keeps its event log: the built-in routes.yaml's `events.dir`.
const SERVED_EVENTS: &str = "./data/events";

pub fn run(args: &Args) -> u8 {
    let events_dir = match (&args.keep, args.serve) {
        (Some(dir), _) => match prepare_keep(dir) {
            Ok(events) => Some(events),
            Err(e) => {
                eprintln!("cohort demo: {e}");
                return exit::INVALID;
            }
        },
        (None, true) => Some(PathBuf::from(SERVED_EVENTS)),
        (None, false) => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cohort demo: cannot start the runtime: {e}");
            return exit::INVALID;
        }
    };
    let opts = demo::Options {
        users: args.users,
        max_duration: Duration::from_secs_f64(args.duration.max(0.1)),
        progress: args.format == Format::Text && std::io::stderr().is_terminal(),
        documented_ports: args.serve,
        events_dir,
    };
    eprintln!(
        "cohort demo: 2 model backends, the proxy on the built-in routes.yaml, {} simulated users (at most {} s)",
        args.users, args.duration
    );
    let outcome = match runtime.block_on(demo::run(&opts)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cohort demo: {e}");
            return exit::INVALID;
        }
    };
    let kept = match &args.keep {
        Some(dir) => match keep_config(dir, &outcome.routes) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("cohort demo: {e}");
                return exit::INVALID;
            }
        },
        None => None,
    };
    match args.format {
        Format::Text => {
            print!("{}", report(&outcome));
            if let Some(k) = &kept {
                print!("{}", k.commands());
            }
        }
        Format::Json => println!("{}", json(&outcome, kept.as_ref())),
    }
    if outcome.unsticky_users > 0 {
        return exit::INVALID;
    }
    if args.serve {
        // The backends go on running on the demo's runtime while `serve` runs its own.
        let code = serve_built_in();
        drop(runtime);
        return code;
    }
    exit::OK
}

/// Makes DIR and returns DIR/events; refuses a DIR whose events would mix with another
/// run's.
fn prepare_keep(dir: &Path) -> Result<PathBuf, String> {
    let events = dir.join("events");
    let used = std::fs::read_dir(&events).is_ok_and(|mut d| d.next().is_some());
    if used {
        return Err(format!(
            "{} already holds an event log, which this run's would mix with: give --keep a new directory, or remove it",
            events.display()
        ));
    }
    std::fs::create_dir_all(&events)
        .map_err(|e| format!("cannot create {}: {e}", events.display()))?;
    Ok(events)
}

/// What `--keep` left behind.
struct Kept {
    config: PathBuf,
    events: PathBuf,
}

impl Kept {
    /// The commands that read what was kept, runnable as printed.
    fn commands(&self) -> String {
        let bin = std::env::args()
            .next()
            .unwrap_or_else(|| "cohort".to_owned());
        let (events, config) = (self.events.display(), self.config.display());
        let html = self.config.with_file_name("report.html");
        format!(
            "\nKept the event log in {events} and the config the demo ran with in {config}. Read them with:\n  {bin} report --events {events} --config {config}\n  {bin} report --events {events} --config {config} --format html --out {}\n",
            html.display()
        )
    }
}

/// Writes the config the demo ran with (its backends' ports, its mde) as DIR/routes.yaml.
fn keep_config(dir: &Path, routes: &Routes) -> Result<Kept, String> {
    let mut file = routes.file.clone();
    let events = dir.join("events");
    file.events.dir = events.clone();
    let yaml = serde_yaml::to_string(&file).map_err(|e| e.to_string())?;
    let text = format!(
        "# The config `cohort demo` ran with: the built-in routes.yaml with the demo's backend\n# ports (gone when the demo ended), a 30% mde and no conversion delay. For `cohort report`.\n{yaml}"
    );
    let config = dir.join("routes.yaml");
    std::fs::write(&config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    Ok(Kept { config, events })
}

/// `cohort serve` on the built-in routes.yaml, its listener on loopback, until a signal.
fn serve_built_in() -> u8 {
    let yaml = demo::DEFAULT_ROUTES.replacen("listen: 0.0.0.0:8080", "listen: 127.0.0.1:8080", 1);
    let dir = std::env::temp_dir().join(format!("cohort-demo-serve-{}", std::process::id()));
    let path = dir.join("routes.yaml");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml)) {
        eprintln!("cohort demo: cannot write {}: {e}", path.display());
        return exit::INVALID;
    }
    eprintln!(
        "cohort demo: serving the built-in routes.yaml on 127.0.0.1:8080 (admin 127.0.0.1:9901, events in {SERVED_EVENTS}) with the demo's models, until Ctrl-C"
    );
    let code = super::serve::run(&path, None);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn report(o: &Outcome) -> String {
    let mut s = String::new();
    let exp = &o.routes.experiments[0];
    let _ = writeln!(
        s,
        "\n{} requests from {} users in {:.1} s through cohort (config version {})",
        o.requests,
        o.users,
        o.elapsed.as_secs_f64(),
        o.routes.version
    );
    let _ = writeln!(
        s,
        "\nexperiment {} (control {}):",
        exp.name, exp.variants[exp.control].name
    );
    let _ = writeln!(
        s,
        "  {:<8} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "variant", "configured", "observed", "users", "requests", "p50 ms", "p99 ms", "errors"
    );
    for (name, share, st) in &o.per_variant {
        let _ = writeln!(
            s,
            "  {:<8} {:>10} {:>10} {:>8} {:>9} {:>9.2} {:>9.2} {:>7}",
            name,
            pct(*share),
            pct(st.users as f64 / (o.users.max(1)) as f64),
            st.users,
            st.requests,
            quantile(&st.latencies_ms, 0.50),
            quantile(&st.latencies_ms, 0.99),
            st.errors
        );
    }
    let truth: Vec<String> = crate::demo::models()
        .iter()
        .map(|(n, m)| format!("{n} {}", pct(m.conversion)))
        .collect();
    match &o.report {
        Some(r) => {
            let _ = writeln!(
                s,
                "\n`cohort report` on the demo's event log (the simulator's true conversion rates: {}; the demo plans for a {:.0}% relative lift):\n",
                truth.join(", "),
                100.0 * crate::demo::DEMO_MDE
            );
            for line in cohort_report::text(r).lines() {
                let _ = writeln!(s, "  {line}");
            }
            let _ = writeln!(s);
        }
        None => {
            let _ = writeln!(
                s,
                "\n  (the event log could not be read back for the report)"
            );
        }
    }
    let _ = writeln!(
        s,
        "  sticky: {} ({} users seen on more than one variant)",
        if o.unsticky_users == 0 { "yes" } else { "NO" },
        o.unsticky_users
    );
    if let Some(ramp) = ramp_preview(&o.routes) {
        s.push_str(&ramp);
    }
    let _ = writeln!(
        s,
        "\nNext: `cohort demo --keep DIR` keeps this log to explore with `cohort report`; `cohort demo --serve`\nleaves the models and cohort running on routes.yaml's ports for `curl localhost:8080/invocations -H 'x-user-id: alice' -d '{{}}'`;\n`cohort check NEW --against OLD` shows what an edit does to users."
    );
    s
}

/// The outcome for scripts: the table, the report and the ramp preview as one object.
fn json(o: &Outcome, kept: Option<&Kept>) -> String {
    let exp = &o.routes.experiments[0];
    let variants: Vec<serde_json::Value> = o
        .per_variant
        .iter()
        .map(|(name, share, st)| {
            serde_json::json!({
                "name": name,
                "configured_share": share,
                "observed_share": st.users as f64 / o.users.max(1) as f64,
                "users": st.users,
                "requests": st.requests,
                "p50_ms": quantile(&st.latencies_ms, 0.50),
                "p99_ms": quantile(&st.latencies_ms, 0.99),
                "errors": st.errors,
            })
        })
        .collect();
    let ramp = ramp_change(&o.routes).map(|(from, to, change)| {
        serde_json::json!({"from": from, "to": to, "points": 10, "moves": change.moves, "reshuffle": change.reshuffle})
    });
    let v = serde_json::json!({
        "experiment": exp.name,
        "control": exp.variants[exp.control].name,
        "config_version": o.routes.version,
        "users": o.users,
        "requests": o.requests,
        "elapsed_s": o.elapsed.as_secs_f64(),
        "sticky": o.unsticky_users == 0,
        "unsticky_users": o.unsticky_users,
        "variants": variants,
        "report": o.report,
        "ramp_preview": ramp,
        "kept": kept.map(|k| serde_json::json!({"config": k.config, "events": k.events})),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// What ramping the first treatment up by 10 points of traffic would move: (control,
/// treatment, the change `cohort check --against` reports).
fn ramp_change(routes: &Routes) -> Option<(String, String, ExperimentChange)> {
    let exp = routes.experiments.first()?;
    let t = (0..exp.variants.len()).find(|&i| i != exp.control)?;
    let step = exp.variants.iter().map(|v| v.weight).sum::<f64>() * 0.1;
    let mut file = routes.file.clone();
    let variants = &mut file.experiments[0].variants;
    variants[exp.control].weight -= step;
    variants[t].weight += step;
    let source = config::Source {
        file: "ramped".into(),
        hash: String::new(),
    };
    let new = config::compile_file(file, source).ok()?;
    let change = compare(routes, &new).experiments.get(&exp.name)?.clone();
    Some((
        exp.variants[exp.control].name.clone(),
        exp.variants[t].name.clone(),
        change,
    ))
}

/// The ramp preview as text.
fn ramp_preview(routes: &Routes) -> Option<String> {
    let (control, treatment, change) = ramp_change(routes)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nramp preview, {control} → {treatment} by 10 points (what `cohort check --against` reports):"
    );
    for m in &change.moves {
        let _ = writeln!(s, "  moves {} → {} {}", m.from, m.to, pct(m.share));
    }
    let _ = writeln!(
        s,
        "  reshuffle: {} (only the control's users move, and only as many as the ramp needs)",
        change.reshuffle
    );
    Some(s)
}
