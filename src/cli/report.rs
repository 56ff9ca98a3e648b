//! `cohort report --events DIR [--events DIR …] [--config routes.yaml] …`: the analysis of
//! the outcome log, as text, JSON, Markdown or HTML.
//!
//! Several `--events` directories (one per replica) are merged, their rollout actions
//! too; `--clickhouse URL` reads the fleet's shipped events and rollout actions instead
//! (the heavy part runs there as SQL, the statistics here, as for local logs). Without
//! `--config`, the control, weights and alpha come from
//! flags and everything else from the defaults of the `decision` section; with it, flags
//! still override.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::exit;
use cohort_analysis::read::{read_dirs, LogRead, ReadOptions};
use cohort_analysis::{analyze_with, ConfigVersions, ExperimentTally, Report, RolloutLog, Setup};
use cohort_clickhouse::fleet::Fleet;
use cohort_clickhouse::query::Scope;
use cohort_config::schema::{DecisionConfig, UnitKind};

/// Output formats of `cohort report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// For a terminal.
    Text,
    /// The report JSON README documents, for scripts.
    Json,
    /// For a pull request or a wiki page.
    Markdown,
    /// One self-contained page with charts.
    Html,
}

/// Everything `cohort report` is asked (its command line).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// An event directory (repeatable: one per replica); every *.jsonl under it is read.
    #[arg(
        long = "events",
        value_name = "DIR",
        required_unless_present = "clickhouse"
    )]
    pub events: Vec<PathBuf>,
    /// Read the fleet's events from ClickHouse's HTTP interface instead, e.g.
    /// http://127.0.0.1:8123 (database, table, user and password from --config's
    /// events.clickhouse, or the flags below).
    #[arg(long, value_name = "URL", conflicts_with = "events")]
    pub clickhouse: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The routes.yaml: control, weights, salt and `decision` settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only this experiment (default: every experiment in the log; JSON is an array either way).
    #[arg(long)]
    pub experiment: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only events at or after this RFC 3339 time.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only events before this RFC 3339 time.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// The control variant (overrides the config).
    #[arg(long, value_name = "NAME")]
    pub control: Option<String>,
    /// Variant weights, e.g. a=50,b=50 (overrides the config).
    #[arg(long, value_name = "a=50,b=50")]
    pub weights: Option<String>,
    /// Significance level (overrides the config; default 0.05).
    #[arg(long, value_name = "A")]
    pub alpha: Option<f64>,
    /// The control's expected conversion rate (default: estimated from the log).
    #[arg(long, value_name = "P")]
    pub baseline_rate: Option<f64>,
}

/// Where in ClickHouse the events are, when not from `--config`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Database (default: cohort).
    #[arg(long, value_name = "NAME", requires = "clickhouse")]
    pub clickhouse_database: Option<String>,
    /// Events table (default: events).
    #[arg(long, value_name = "NAME", requires = "clickhouse")]
    pub clickhouse_table: Option<String>,
    /// User (default: default).
    #[arg(long, value_name = "NAME", requires = "clickhouse")]
    pub clickhouse_user: Option<String>,
    /// The environment variable that holds the password.
    #[arg(long, value_name = "VAR", requires = "clickhouse")]
    pub clickhouse_password_env: Option<String>,
    /// A ClickHouse setting for the report's queries (repeatable), e.g.
    /// max_memory_usage=20000000000.
    #[arg(long, value_name = "KEY=VALUE", requires = "clickhouse")]
    pub clickhouse_setting: Vec<String>,
    /// How long each query may take, in seconds.
    #[arg(long, value_name = "S", default_value_t = 600, requires = "clickhouse")]
    pub clickhouse_timeout_s: u64,
}

/// Why a report cannot be made (printed, exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Config(String),
    #[error("--{flag}: {value:?} is not an RFC 3339 time (e.g. 2026-11-25T00:00:00Z)")]
    Time { flag: &'static str, value: String },
    #[error("--weights: {0}")]
    Weights(String),
    #[error("--alpha must be in (0, 1), got {0}")]
    Alpha(f64),
    #[error("--baseline-rate must be in (0, 1), got {0}")]
    Baseline(f64),
    #[error("cannot read the events: {0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Store(String),
    #[error("cannot read the events from ClickHouse: {0}")]
    Query(cohort_clickhouse::Error),
    #[error("no event files in {0}: cohort report reads every *.jsonl below each --events directory (config-versions.jsonl and clickhouse.dead-letter.jsonl apart); is it the `events.dir` of routes.yaml?")]
    NoEvents(String),
    #[error("no experiment named {name:?} in the log or the config (in the log: {known})")]
    Unknown { name: String, known: String },
    #[error("experiment {experiment}: name its control with --control (or pass --config); variants in the log: {variants}")]
    NoControl {
        experiment: String,
        variants: String,
    },
    #[error(
        "experiment {experiment}: --control {control:?} is not one of its variants ({variants})"
    )]
    BadControl {
        experiment: String,
        control: String,
        variants: String,
    },
    #[error("cannot write {path}: {err}")]
    Write { path: String, err: std::io::Error },
}

pub fn run(args: &Args) -> u8 {
    match report(args) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("cohort report: {e}");
            exit::INVALID
        }
    }
}

fn parse_weights(s: &str) -> Result<Vec<(String, f64)>, ReportError> {
    s.split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| ReportError::Weights(format!("{kv:?} is not name=weight")))?;
            let w: f64 = v
                .trim()
                .parse()
                .map_err(|_| ReportError::Weights(format!("{v:?} is not a number")))?;
            if !w.is_finite() || w < 0.0 {
                return Err(ReportError::Weights(format!("{k}: weights are ≥ 0")));
            }
            Ok((k.trim().to_owned(), w))
        })
        .collect()
}

fn time(flag: &'static str, v: &Option<String>) -> Result<Option<i64>, ReportError> {
    v.as_ref()
        .map(|s| {
            cohort_events::clock::parse_nanos(s).ok_or_else(|| ReportError::Time {
                flag,
                value: s.clone(),
            })
        })
        .transpose()
}

/// Builds every requested report.
pub fn reports(args: &Args, progress: bool) -> Result<Vec<Report>, ReportError> {
    if let Some(a) = args.alpha {
        if !(a > 0.0 && a < 1.0) {
            return Err(ReportError::Alpha(a));
        }
    }
    if let Some(b) = args.baseline_rate {
        if !(b > 0.0 && b < 1.0) {
            return Err(ReportError::Baseline(b));
        }
    }
    let weights = args.weights.as_deref().map(parse_weights).transpose()?;
    let routes = args
        .config
        .as_ref()
        .map(|p| cohort_config::load(p))
        .transpose()
        .map_err(|e| ReportError::Config(e.to_string()))?;
    let opts = ReadOptions {
        experiment: args.experiment.clone(),
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        progress,
        threads: 0,
    };
    let mut source = match &args.clickhouse {
        Some(url) => Source::fleet(url, args, routes.as_ref(), &opts)?,
        None => Source::local(&args.events, &opts)?,
    };
    let versions = Arc::new(source.versions()?);
    let known = source.experiments();
    let mut names: Vec<String> = match &args.experiment {
        Some(e) => vec![e.clone()],
        None => known.clone(),
    };
    names.sort();
    let mut base_notes = source.notes();
    let rollouts = source.rollouts(&names)?;
    if opts.since.is_some() || opts.until.is_some() {
        base_notes.push(format!(
            "restricted to events in [{}, {})",
            args.since.as_deref().unwrap_or("the start"),
            args.until.as_deref().unwrap_or("the end")
        ));
    }
    let computed_at = cohort_events::clock::now();
    let empty = ExperimentTally::default();
    let mut out = Vec::new();
    for name in names {
        let configured = routes.as_ref().and_then(|r| r.experiment(&name));
        let tally = source.tally(&name, configured)?;
        if tally.is_none() && configured.is_none() {
            return Err(ReportError::Unknown {
                name,
                known: known.join(", "),
            });
        }
        let mut notes = base_notes.clone();
        if tally.is_none() {
            // Configured, but the log has no event of it: say so rather than show zeros.
            notes.push(format!(
                "the log has no events of experiment {name} (it has: {}); are these the right --events directories?",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ));
        }
        let tally = tally.unwrap_or(Cow::Borrowed(&empty));
        let mut setup = match configured {
            Some(e) => Setup::of(e, versions.clone()),
            None => {
                let mut variants: Vec<String> = tally.variants.clone();
                variants.sort();
                let control = args
                    .control
                    .clone()
                    .or_else(|| variants.iter().find(|v| *v == "control").cloned())
                    .ok_or_else(|| ReportError::NoControl {
                        experiment: name.clone(),
                        variants: variants.join(", "),
                    })?;
                Setup {
                    experiment: name.clone(),
                    unit: UnitKind::User,
                    control,
                    variants: variants.into_iter().map(|v| (v, 1.0)).collect(),
                    decision: DecisionConfig::default(),
                    salt: None,
                    versions: versions.clone(),
                    tally_versions: Vec::new(),
                }
            }
        };
        if configured.is_none() && weights.is_none() {
            notes.push("no --config and no --weights: equal weights assumed".to_owned());
        }
        if let Some(w) = &weights {
            setup.variants = w.clone();
            // Restricting --since starts a new look: the live view's SRM latch does not apply.
        }
        if let Some(c) = &args.control {
            setup.control = c.clone();
        }
        if !setup.variants.iter().any(|v| v.0 == setup.control) {
            return Err(ReportError::BadControl {
                experiment: name,
                control: setup.control.clone(),
                variants: setup
                    .variants
                    .iter()
                    .map(|v| v.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(a) = args.alpha {
            setup.decision.alpha = a;
        }
        if let Some(b) = args.baseline_rate {
            setup.decision.baseline_rate = Some(b);
        }
        let rollout = rollouts
            .rollout(&name, configured, &versions)
            .map(|r| r.read_until(opts.until));
        let mut report = analyze_with(&tally, &setup, rollout, computed_at.clone(), notes);
        let phase = configured.map(|e| e.salt.as_str());
        report.monitoring = source.monitoring(&name, phase)?;
        report.shadow = source.shadow(&name, phase)?;
        out.push(report);
    }
    Ok(out)
}

/// Where a report's events come from: replicas' directories, read here, or the fleet's
/// store, asked one experiment at a time.
enum Source {
    Local(Box<LogRead>),
    Fleet(Box<FleetSource>),
}

/// The fleet's store, and the experiments it has events of.
struct FleetSource {
    fleet: Fleet,
    scope: Scope,
    experiments: Vec<String>,
    runtime: tokio::runtime::Runtime,
}

impl FleetSource {
    /// Every replica's lines of type `kind` of `experiment` (none before the tables exist).
    fn typed_lines(&self, kind: &str, experiment: &str) -> Result<Vec<Vec<u8>>, ReportError> {
        match self
            .runtime
            .block_on(self.fleet.typed_lines(kind, experiment))
        {
            Ok(l) => Ok(l),
            Err(e) if cohort_clickhouse::live::no_tables_yet(&e) => Ok(Vec::new()),
            Err(e) => Err(ReportError::Query(e)),
        }
    }
}

impl Source {
    fn local(dirs: &[PathBuf], opts: &ReadOptions) -> Result<Self, ReportError> {
        let read = read_dirs(dirs, opts).map_err(ReportError::Read)?;
        if read.files == 0 {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(ReportError::NoEvents(dirs.join(", ")));
        }
        Ok(Source::Local(Box::new(read)))
    }

    fn fleet(
        url: &str,
        args: &Args,
        routes: Option<&cohort_config::Routes>,
        opts: &ReadOptions,
    ) -> Result<Self, ReportError> {
        let st = &args.store;
        let target = super::clickhouse::Target {
            from_file: routes.and_then(|r| r.file.events.clickhouse.clone()),
            url: Some(url.to_owned()),
            database: st.clickhouse_database.clone(),
            table: st.clickhouse_table.clone(),
            user: st.clickhouse_user.clone(),
            password_env: st.clickhouse_password_env.clone(),
            flag_prefix: "--clickhouse-",
        };
        let cfg = target.settings().map_err(ReportError::Store)?;
        let (client, tables) = cohort_clickhouse::connect(&cfg, |v| std::env::var(v).ok())
            .map_err(ReportError::Store)?;
        let settings = st
            .clickhouse_setting
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| {
                        ReportError::Store(format!("--clickhouse-setting: {kv:?} is not KEY=VALUE"))
                    })
            })
            .collect::<Result<_, _>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ReportError::Store(format!("cannot start the runtime: {e}")))?;
        let fleet = Fleet {
            client,
            tables,
            timeout: std::time::Duration::from_secs(st.clickhouse_timeout_s),
            settings,
        };
        let scope = Scope {
            since: opts.since,
            until: opts.until,
        };
        let experiments = runtime
            .block_on(fleet.experiments(&scope))
            .map_err(ReportError::Query)?;
        Ok(Source::Fleet(Box::new(FleetSource {
            fleet,
            scope,
            experiments,
            runtime,
        })))
    }

    /// Every experiment with events, by name.
    fn experiments(&self) -> Vec<String> {
        match self {
            Source::Local(read) => {
                let mut known: Vec<String> = read.tally.experiments.keys().cloned().collect();
                known.sort_unstable();
                known
            }
            Source::Fleet(f) => f.experiments.clone(),
        }
    }

    fn versions(&mut self) -> Result<ConfigVersions, ReportError> {
        match self {
            Source::Local(read) => Ok(std::mem::take(&mut read.versions)),
            Source::Fleet(f) => f
                .runtime
                .block_on(f.fleet.versions())
                .map_err(ReportError::Query),
        }
    }

    /// Every rollout action the directories, or the store, record of the experiments.
    /// The monitoring section from the monitor lines of the directories, or of every
    /// replica in the fleet's store.
    fn monitoring(
        &self,
        experiment: &str,
        phase: Option<&str>,
    ) -> Result<Option<cohort_analysis::monitoring::MonitoringReport>, ReportError> {
        match self {
            Source::Local(read) => Ok(read.monitor.report(experiment, phase)),
            Source::Fleet(f) => {
                let mut m = cohort_analysis::monitoring::MonitorLines::default();
                for l in &f.typed_lines("monitor", experiment)? {
                    m.add(l);
                }
                Ok(m.report(experiment, phase))
            }
        }
    }

    /// The shadow section from the shadow lines of the directories, or of every replica in
    /// the fleet's store.
    fn shadow(
        &self,
        experiment: &str,
        phase: Option<&str>,
    ) -> Result<Option<cohort_analysis::shadow::ShadowReport>, ReportError> {
        match self {
            Source::Local(read) => Ok(read.shadow.report(experiment, phase)),
            Source::Fleet(f) => {
                let mut s = cohort_analysis::shadow::ShadowLines::default();
                for l in &f.typed_lines("shadow", experiment)? {
                    s.add(l);
                }
                Ok(s.report(experiment, phase))
            }
        }
    }

    fn rollouts(&mut self, experiments: &[String]) -> Result<RolloutLog, ReportError> {
        match self {
            Source::Local(read) => Ok(std::mem::take(&mut read.rollouts)),
            Source::Fleet(f) => {
                let mut log = RolloutLog::default();
                for name in experiments {
                    match f.runtime.block_on(f.fleet.rollout_events(name)) {
                        Ok(events) => log.extend(events),
                        // A store written before rollouts were shipped has no table for them.
                        Err(e) if cohort_clickhouse::live::no_tables_yet(&e) => {}
                        Err(e) => return Err(ReportError::Query(e)),
                    }
                }
                Ok(log)
            }
        }
    }

    /// What reading skipped.
    fn notes(&self) -> Vec<String> {
        let Source::Local(read) = self else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        if read.malformed > 0 {
            notes.push(format!(
                "{} malformed lines skipped (of {} read)",
                read.malformed, read.lines
            ));
        }
        if read.other_types > 0 {
            notes.push(format!(
                "{} lines of other event types than exposure and conversion skipped (of {} read)",
                read.other_types, read.lines
            ));
        }
        if read.rollouts.malformed > 0 {
            notes.push(format!(
                "{} lines of rollouts.jsonl are not rollout actions and were skipped",
                read.rollouts.malformed
            ));
        }
        notes
    }

    /// The tally of `name` (None: no events of it). The store is asked for the phase and
    /// attribution window of the configured experiment.
    fn tally(
        &self,
        name: &str,
        configured: Option<&cohort_config::Experiment>,
    ) -> Result<Option<Cow<'_, ExperimentTally>>, ReportError> {
        match self {
            Source::Local(read) => Ok(read.tally.experiments.get(name).map(Cow::Borrowed)),
            Source::Fleet(f) => {
                let (salt, window) = match configured {
                    Some(e) => (Some(e.salt.as_str()), e.decision.attribution_window_s),
                    None => (None, DecisionConfig::default().attribution_window_s),
                };
                let t = f
                    .runtime
                    .block_on(f.fleet.tally(name, &f.scope, salt, window))
                    .map_err(ReportError::Query)?;
                Ok(t.map(Cow::Owned))
            }
        }
    }
}

/// The reports rendered in `format`. JSON is always an array, one report per experiment
/// (one with `--experiment`), so scripts read one shape.
pub fn render(reports: &[Report], format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => {
            let mut s = serde_json::to_value(reports).map_or_else(
                |e| format!("{{\"error\": \"{e}\"}}"),
                |v| serde_json::to_string_pretty(&v).unwrap_or_default(),
            );
            s.push('\n');
            s
        }
        ReportFormat::Text => reports
            .iter()
            .map(cohort_report::text)
            .collect::<Vec<_>>()
            .join("\n"),
        ReportFormat::Markdown => reports
            .iter()
            .map(cohort_report::markdown)
            .collect::<Vec<_>>()
            .join("\n"),
        ReportFormat::Html => cohort_report::html::page(reports),
    }
}

fn report(args: &Args) -> Result<(), ReportError> {
    let reports = reports(args, true)?;
    let text = render(&reports, args.format);
    write_out(args.out.as_deref(), &text)
}

fn write_out(path: Option<&Path>, text: &str) -> Result<(), ReportError> {
    match path {
        Some(p) => std::fs::write(p, text).map_err(|err| ReportError::Write {
            path: p.display().to_string(),
            err,
        }),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .map_err(|err| ReportError::Write {
                    path: "standard output".into(),
                    err,
                })
        }
    }
}
