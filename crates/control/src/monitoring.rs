//! Model monitoring: the thread that reads the captured calls ([`cohort_proxy::capture`]),
//! keeps each variant's reference and drift windows ([`cohort_monitor`]) and publishes the
//! figures as gauges.
//!
//! Everything here runs off the request path, on one thread at a lower CPU priority than
//! the serving threads. The table in force decides what is monitored: a capture whose
//! experiment has lost its `monitor` section, or was served under another salt than the
//! one in force, is dropped; a changed salt or `monitor` section starts the experiment over
//! (a new reference).
//!
//! **Online quality** (`monitor.quality`): each captured prediction that is a score in
//! [0, 1] waits, with its unit and time, until the experiment's attribution window after
//! the call has closed ([`cohort_config::schema::DecisionConfig::maturity_s`]); it is then
//! labelled positive when a conversion of its unit was written within that window
//! ([`ConversionFeed`] hands the writer's conversions over), and joins the variant's last
//! [`QUALITY_PAIRS`] labelled predictions, on which log loss, AUC, accuracy and F1 are taken
//! ([`cohort_stats::quality`]). With the fleet's live view on, every replica's predictions
//! are instead written as `"type": "prediction"` lines and labelled in ClickHouse by every
//! replica's conversions ([`publish_fleet_quality`]).
//!
//! **The retrain trigger** (`monitor.on_drift`): when a column's PSI in a window exceeds
//! `psi_above`, its webhook gets one POST for that column; the column is armed again only
//! once it has been reported below the bound over a whole window (a window that starts after
//! it was first seen below, every evaluation between below), so a column that hovers at the
//! bound does not call again and again. The idempotency key is `<experiment>/<variant>/
//! <column>/<window start, s>`: replicas' windows share their boundaries (multiples of the
//! sub-window since the epoch), so copies from several replicas carry the same key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use prometheus::{GaugeVec, IntCounterVec, Opts};
use serde_json::Value;

use cohort_config::schema::{MonitorConfig, OnDriftConfig, PayloadShapeConfig, ReferenceFrom};
use cohort_config::Experiment;
use cohort_monitor::drift::{Settings, VariantMonitor, WindowDrift};
use cohort_monitor::payload::{self, Shape, Table, Unreadable};
use cohort_proxy::capture::Capture;
use cohort_proxy::Proxy;

use crate::webhooks::Webhooks;

/// The default name of the prediction column.
pub const PREDICTION: &str = "prediction";

/// How long the thread waits for a capture before it looks at the clock anyway.
const TICK: Duration = Duration::from_secs(1);

/// Rows read from a reference file, at most.
const MAX_REFERENCE_ROWS: usize = 1_000_000;

/// The largest reference file read: it is read whole, on the monitor thread.
const MAX_REFERENCE_BYTES: u64 = 256 << 20;

/// Windows the live report shows, per experiment: the latest ones.
const LIVE_WINDOWS: usize = 2000;

/// This replica's latest monitor lines, for the live report (`GET
/// /v1/experiments/{name}/report`): what `cohort report` shows from the log, without
/// reading it.
#[derive(Default)]
pub struct RecentWindows {
    lines: std::sync::Mutex<cohort_analysis::monitoring::MonitorLines>,
}

impl RecentWindows {
    fn add(&self, line: &[u8]) {
        let mut l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        l.add(line);
        l.keep_last(LIVE_WINDOWS);
    }

    /// The monitoring section of `experiment` in `phase`, from this replica's windows.
    pub fn report(
        &self,
        experiment: &str,
        phase: &str,
    ) -> Option<cohort_analysis::monitoring::MonitoringReport> {
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        l.report(experiment, Some(phase))
    }
}

/// Labelled predictions a variant's quality is taken over: the latest ones.
pub const QUALITY_PAIRS: usize = 10_000;

/// Predictions waiting for their label, per variant, at most (the oldest go first).
const QUALITY_PENDING: usize = 100_000;

/// The conversions the event writer wrote, handed to the monitor thread (which takes them
/// every tick): the labels of online quality.
#[derive(Default)]
pub struct ConversionFeed {
    /// Whether this replica labels predictions itself: set from the table in force each
    /// time round the monitor's loop, so that until an experiment measures quality (or
    /// while the fleet labels them in ClickHouse) the writer thread does no work here.
    wanted: std::sync::atomic::AtomicBool,
    written: std::sync::Mutex<Vec<(String, String, i64)>>,
}

impl cohort_events::Observer for ConversionFeed {
    fn written(&self, events: &[cohort_events::EventRef<'_>]) {
        if !self.wanted.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let conversions = events.iter().filter_map(|e| match e {
            cohort_events::EventRef::Conversion(c) => Some(c),
            cohort_events::EventRef::Exposure(_) => None,
        });
        let mut w = None;
        for c in conversions {
            if let Some(ns) = cohort_events::clock::parse_nanos(&c.ts) {
                w.get_or_insert_with(|| self.written.lock().unwrap_or_else(|p| p.into_inner()))
                    .push((c.experiment.clone(), c.unit.clone(), ns / 1_000_000_000));
            }
        }
    }
}

impl ConversionFeed {
    fn want(&self, wanted: bool) {
        self.wanted
            .store(wanted, std::sync::atomic::Ordering::Relaxed);
    }

    fn take(&self) -> Vec<(String, String, i64)> {
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The monitor's series.
#[derive(Clone)]
pub struct Gauges {
    psi: GaugeVec,
    ks_p: GaugeVec,
    chi2_p: GaugeVec,
    rows: GaugeVec,
    captured: IntCounterVec,
    unreadable: IntCounterVec,
    windows: IntCounterVec,
    quality: GaugeVec,
}

impl Gauges {
    fn new() -> Self {
        let g = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let c = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let col = ["experiment", "variant", "column"];
        Self {
            psi: g("cohort_drift_psi", "PSI of the column's last window against its reference.", &col),
            ks_p: g(
                "cohort_drift_ks_p_value",
                "Two-sample KS p-value of the numeric column's last window against its reference.",
                &col,
            ),
            chi2_p: g(
                "cohort_drift_chi2_p_value",
                "Chi-square goodness-of-fit p-value of the categorical column's last window against its reference.",
                &col,
            ),
            rows: g(
                "cohort_monitor_window_rows",
                "Rows captured in the variant's last window.",
                &["experiment", "variant"],
            ),
            captured: c(
                "cohort_monitor_captured_total",
                "Calls captured and read for monitoring.",
                &["experiment", "variant"],
            ),
            unreadable: c(
                "cohort_monitor_unreadable_total",
                "Captured bodies that could not be read: side is request or response.",
                &["experiment", "side", "reason"],
            ),
            quality: g(
                "cohort_model_quality",
                "Online quality of the variant's model over its latest labelled predictions: measure is log_loss, auc, accuracy, f1, calibration_error or labelled.",
                &["experiment", "variant", "measure"],
            ),
            windows: c(
                "cohort_monitor_windows_total",
                "Windows evaluated per variant (one each time a sub-window closes, once the reference is in place).",
                &["experiment", "variant"],
            ),
        }
    }

    /// Every family, for registering.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.psi.clone()),
            Box::new(self.ks_p.clone()),
            Box::new(self.chi2_p.clone()),
            Box::new(self.rows.clone()),
            Box::new(self.captured.clone()),
            Box::new(self.unreadable.clone()),
            Box::new(self.windows.clone()),
            Box::new(self.quality.clone()),
        ]
    }
}

/// The series of the monitor, to register before [`start`].
pub fn gauges() -> Gauges {
    Gauges::new()
}

/// Where drifts are told: the webhook sender and the admin address for the report link.
#[derive(Clone)]
pub struct Trigger {
    pub webhooks: Webhooks,
    pub admin: std::net::SocketAddr,
}

/// The family that counts drift webhook deliveries by result.
pub fn webhook_metric() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "cohort_drift_webhooks_total",
            "Drift webhook deliveries by result: delivered, retried (one per failed try that is tried again), failed (given up), dropped (the queue was full).",
        ),
        &["result"],
    )
    .expect("valid metric")
}

/// Starts the monitor thread on `captures`; it stops when every sender is gone.
pub fn start(
    captures: Receiver<Capture>,
    proxy: Arc<Proxy>,
    gauges: Gauges,
    trigger: Trigger,
    conversions: Arc<ConversionFeed>,
    recent: Arc<RecentWindows>,
    fleet_quality: bool,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cohort-monitor".into())
        .spawn(move || {
            cohort_sys::lower_thread_priority();
            run(
                &captures,
                &proxy,
                &gauges,
                &trigger,
                &conversions,
                &recent,
                fleet_quality,
            );
        })
        .map(|_| ())
}

fn run(
    captures: &Receiver<Capture>,
    proxy: &Proxy,
    gauges: &Gauges,
    trigger: &Trigger,
    conversions: &ConversionFeed,
    recent: &RecentWindows,
    fleet_quality: bool,
) {
    let mut state = Monitors {
        fleet_quality,
        ..Monitors::default()
    };
    loop {
        let labels_here = !fleet_quality
            && proxy
                .routes()
                .routes
                .experiments
                .iter()
                .any(|e| e.monitor.as_ref().is_some_and(|m| m.quality.is_some()));
        conversions.want(labels_here);
        match captures.recv_timeout(TICK) {
            Ok(c) => {
                let serving = proxy.routes();
                if let Some(exp) = serving.routes.experiment(&c.experiment) {
                    state.add(exp, &c, gauges);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        state.conversions(conversions.take());
        state.label(now_s(), gauges);
        let evaluated = state.tick(now_s(), gauges);
        for line in &evaluated.lines {
            recent.add(line);
        }
        if let Some(log) = proxy.event_log() {
            for line in evaluated.lines.into_iter().chain(state.take_lines()) {
                log.record_line(line);
            }
        }
        for d in evaluated.drifted {
            tell(trigger, &d);
        }
    }
}

/// A scored prediction for the event log, so that the fleet can label every replica's
/// predictions with every replica's conversions: `{"type": "prediction", "v": 1, "ts": <the
/// call>, "experiment", "variant", "unit", "phase", "value": <score>}`.
fn prediction_line(c: &Capture, unit: &str, at: &str, score: f64) -> Vec<u8> {
    serde_json::json!({
        "type": "prediction",
        "v": 1,
        "ts": at,
        "experiment": c.experiment,
        "variant": c.variant,
        "unit": unit,
        "phase": c.salt,
        "value": score,
    })
    .to_string()
    .into_bytes()
}

/// What one tick evaluated.
pub struct Evaluated {
    /// One `"type": "monitor"` line (JSON, no newline) per evaluated window.
    pub lines: Vec<Vec<u8>>,
    pub drifted: Vec<Drifted>,
}

/// A window's summary line for the event log: `{"type": "monitor", "v": 1, "ts": <window
/// end>, "experiment", "variant", "phase", "window_start", "window_end", "window_s",
/// "rows", "columns": [...]}`, each column with its figures and its bin counts against the
/// reference's, so that replicas' windows can be read together.
fn monitor_line(
    experiment: &str,
    variant: &str,
    salt: &str,
    window_s: u64,
    d: &WindowDrift,
) -> Vec<u8> {
    let end = cohort_events::clock::rfc3339(secs(d.end_s));
    let line = serde_json::json!({
        "type": "monitor",
        "v": 1,
        "ts": end,
        "experiment": experiment,
        "variant": variant,
        "phase": salt,
        "window_start": cohort_events::clock::rfc3339(secs(d.start_s)),
        "window_end": end,
        "window_s": window_s,
        "rows": d.rows,
        "columns": d.columns,
    });
    line.to_string().into_bytes()
}

/// A column that crossed its experiment's `on_drift` bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Drifted {
    pub experiment: String,
    pub variant: String,
    pub column: cohort_monitor::drift::ColumnDrift,
    pub start_s: i64,
    pub end_s: i64,
    pub on_drift: OnDriftConfig,
}

/// POSTs one drift to its webhook.
fn tell(t: &Trigger, d: &Drifted) {
    let host = if t.admin.ip().is_unspecified() {
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned())
    } else {
        t.admin.ip().to_string()
    };
    let c = &d.column;
    let body = serde_json::json!({
        "event": "drift",
        "experiment": d.experiment,
        "variant": d.variant,
        "column": c.column,
        "kind": c.kind,
        "psi": c.psi,
        "psi_above": d.on_drift.psi_above,
        "ks_p_value": c.ks.map(|k| k.p_value),
        "chi2_p_value": c.chi2.map(|x| x.p_value),
        "rows": c.rows,
        "window": {
            "start": cohort_events::clock::rfc3339(secs(d.start_s)),
            "end": cohort_events::clock::rfc3339(secs(d.end_s)),
        },
        "report_url": format!("http://{host}:{}/v1/experiments/{}/report.html", t.admin.port(), d.experiment),
    });
    let key = format!("{}/{}/{}/{}", d.experiment, d.variant, c.column, d.start_s);
    t.webhooks.post(
        &d.on_drift.webhook.url,
        bytes::Bytes::from(body.to_string()),
        "drift",
        key,
        d.on_drift.webhook.secret_env.clone(),
    );
}

fn secs(s: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Every monitored experiment.
#[derive(Default)]
pub struct Monitors {
    experiments: HashMap<String, Watched>,
    /// The fleet labels predictions from ClickHouse ([`publish_fleet_quality`]): this replica
    /// only writes them out.
    fleet_quality: bool,
    /// `"type": "prediction"` lines waiting to be written.
    lines: Vec<Vec<u8>>,
}

struct Watched {
    salt: String,
    config: MonitorConfig,
    /// The windows' settings, from `config`.
    settings: Settings,
    control: String,
    features: Shape,
    prediction: Shape,
    /// A shared reference: the control's rows while they are gathered, then frozen.
    shared: Option<Reference>,
    variants: HashMap<String, VariantWatch>,
    quality: Option<Quality>,
}

/// Online quality of an experiment's variants.
struct Quality {
    threshold: f64,
    min_labels: u64,
    /// Seconds after a call within which its unit's conversion makes it positive.
    maturity_s: i64,
    /// unit → times (s) of its conversions written since.
    conversions: HashMap<String, Vec<i64>>,
    variants: HashMap<String, VariantQuality>,
    pruned_s: i64,
}

#[derive(Default)]
struct VariantQuality {
    /// (unit, score, time of the call), oldest first.
    pending: std::collections::VecDeque<(String, f64, i64)>,
    /// (score, label), the latest [`QUALITY_PAIRS`].
    labelled: std::collections::VecDeque<(f64, bool)>,
}

enum Reference {
    Gathering(Table),
    Frozen(Table),
}

struct VariantWatch {
    monitor: VariantMonitor,
    /// The sub-window last evaluated.
    evaluated: i64,
    /// Columns whose gauges are set.
    published: Vec<String>,
    /// Per column, for the retrain trigger.
    arming: HashMap<String, Arming>,
}

/// Whether a column's next breach calls the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arming {
    Armed,
    /// Fired; below the bound in every window since `below_since` (s), if it has been.
    Fired {
        below_since: Option<i64>,
    },
}

impl Arming {
    /// One reported window of the column: whether it fires now.
    fn window(&mut self, above: bool, start_s: i64, end_s: i64) -> bool {
        match (*self, above) {
            (Arming::Armed, true) => {
                *self = Arming::Fired { below_since: None };
                true
            }
            (Arming::Armed, false) => false,
            (Arming::Fired { .. }, true) => {
                *self = Arming::Fired { below_since: None };
                false
            }
            (Arming::Fired { below_since }, false) => {
                let since = below_since.unwrap_or(end_s);
                *self = if start_s >= since {
                    Arming::Armed
                } else {
                    Arming::Fired {
                        below_since: Some(since),
                    }
                };
                false
            }
        }
    }
}

impl Monitors {
    /// Reads one capture and adds its rows to its variant's window.
    pub fn add(&mut self, exp: &Experiment, c: &Capture, gauges: &Gauges) {
        let Some(config) = &exp.monitor else {
            return;
        };
        if c.salt != exp.salt {
            return;
        }
        let w = self
            .experiments
            .entry(exp.name.clone())
            .or_insert_with(|| Watched::new(exp, config));
        if w.salt != exp.salt || w.config != *config {
            w.clear(&exp.name, gauges);
            *w = Watched::new(exp, config);
        }
        let Some(table) = read(c, &w.features, &w.prediction, gauges) else {
            return;
        };
        gauges
            .captured
            .with_label_values(&[c.experiment.as_str(), c.variant.as_str()])
            .inc();
        let t =
            c.at.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if let (Some(q), Some(unit)) = (&mut w.quality, &c.unit) {
            let pending = &mut q.variants.entry(c.variant.clone()).or_default().pending;
            let at = cohort_events::clock::rfc3339(c.at);
            if let Some(cells) = table.column_cells(&w.prediction.names[0]) {
                for cell in cells {
                    if let payload::Cell::Number(p) = cell {
                        if (0.0..=1.0).contains(p) {
                            self.lines.push(prediction_line(c, unit, &at, *p));
                            if !self.fleet_quality {
                                pending.push_back((unit.clone(), *p, t));
                            }
                        }
                    }
                }
            }
            while pending.len() > QUALITY_PENDING {
                pending.pop_front();
            }
        }
        w.observe(&c.variant, t, &table);
    }

    /// The prediction lines made since the last call, to write to the event log.
    pub fn take_lines(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.lines)
    }

    /// Notes conversions (experiment, unit, time in s) for the experiments whose quality
    /// is measured.
    pub fn conversions(&mut self, written: Vec<(String, String, i64)>) {
        for (experiment, unit, ts) in written {
            if let Some(q) = self
                .experiments
                .get_mut(&experiment)
                .and_then(|w| w.quality.as_mut())
            {
                q.conversions.entry(unit).or_default().push(ts);
            }
        }
    }

    /// Labels every prediction whose window has closed by `now_s` and publishes each
    /// variant's quality.
    pub fn label(&mut self, now_s: i64, gauges: &Gauges) {
        for (name, w) in &mut self.experiments {
            let Some(q) = &mut w.quality else { continue };
            let mut changed = Vec::new();
            for (variant, v) in &mut q.variants {
                let before = v.labelled.len();
                while v
                    .pending
                    .front()
                    .is_some_and(|p| p.2 + q.maturity_s <= now_s)
                {
                    let (unit, score, at) = v.pending.pop_front().expect("checked");
                    let converted = q
                        .conversions
                        .get(&unit)
                        .is_some_and(|ts| ts.iter().any(|&c| c >= at && c <= at + q.maturity_s));
                    v.labelled.push_back((score, converted));
                    if v.labelled.len() > QUALITY_PAIRS {
                        v.labelled.pop_front();
                    }
                }
                if v.labelled.len() != before {
                    changed.push(variant.clone());
                }
            }
            for variant in changed {
                let v = &q.variants[&variant];
                publish_quality(gauges, name, &variant, v, q.threshold, q.min_labels);
            }
            // Conversions older than any pending call can still use are let go, every minute.
            if now_s - q.pruned_s >= 60 {
                q.pruned_s = now_s;
                let oldest = q
                    .variants
                    .values()
                    .filter_map(|v| v.pending.front().map(|p| p.2))
                    .min()
                    .unwrap_or(now_s);
                q.conversions.retain(|_, ts| {
                    ts.retain(|&c| c >= oldest);
                    !ts.is_empty()
                });
            }
        }
    }

    /// Evaluates every variant whose sub-window has closed since its last evaluation;
    /// returns each window's monitor line and the columns that crossed their `on_drift`
    /// bound while armed.
    pub fn tick(&mut self, now_s: i64, gauges: &Gauges) -> Evaluated {
        let mut drifted = Vec::new();
        let mut lines = Vec::new();
        for (name, w) in &mut self.experiments {
            for (variant, v) in &mut w.variants {
                let slot = w.settings.slot(now_s);
                if slot <= v.evaluated {
                    continue;
                }
                v.evaluated = slot;
                let Some(drift) = v.monitor.evaluate(now_s) else {
                    continue;
                };
                gauges
                    .windows
                    .with_label_values(&[name.as_str(), variant.as_str()])
                    .inc();
                publish(gauges, name, variant, &drift, &mut v.published);
                lines.push(monitor_line(
                    name,
                    variant,
                    &w.salt,
                    w.config.window_s,
                    &drift,
                ));
                let Some(on) = &w.config.on_drift else {
                    continue;
                };
                for c in &drift.columns {
                    let Some(psi) = c.psi else { continue };
                    let arming = v.arming.entry(c.column.clone()).or_insert(Arming::Armed);
                    if arming.window(psi > on.psi_above, drift.start_s, drift.end_s) {
                        drifted.push(Drifted {
                            experiment: name.clone(),
                            variant: variant.clone(),
                            column: c.clone(),
                            start_s: drift.start_s,
                            end_s: drift.end_s,
                            on_drift: on.clone(),
                        });
                    }
                }
            }
        }
        Evaluated { lines, drifted }
    }
}

impl Watched {
    fn new(exp: &Experiment, config: &MonitorConfig) -> Self {
        let mut prediction = shape(&config.prediction);
        if prediction.names.is_empty() {
            prediction.names.push(PREDICTION.to_owned());
        }
        let mut w = Self {
            salt: exp.salt.clone(),
            config: config.clone(),
            settings: settings_of(config),
            control: exp.variants[exp.control].name.clone(),
            features: shape(&config.features),
            prediction,
            shared: None,
            variants: HashMap::new(),
            quality: config.quality.as_ref().map(|q| Quality {
                threshold: q.threshold,
                min_labels: q.min_labels,
                maturity_s: exp.decision.maturity_s().0.ceil() as i64,
                conversions: HashMap::new(),
                variants: HashMap::new(),
                pruned_s: 0,
            }),
        };
        if let Some(path) = &config.reference {
            match reference_file(path, &w.features) {
                Ok(t) => w.shared = Some(Reference::Frozen(t)),
                Err(e) => tracing::warn!(
                    experiment = %exp.name,
                    file = %path.display(),
                    error = %e,
                    "cannot read the monitor's reference file: each variant's first captured rows are its reference instead"
                ),
            }
        } else if config.reference_from == ReferenceFrom::Shared {
            w.shared = Some(Reference::Gathering(Table::default()));
        }
        w
    }

    fn observe(&mut self, variant: &str, t: i64, table: &Table) {
        let settings = &self.settings;
        if let Some(Reference::Gathering(gathered)) = &mut self.shared {
            if variant == self.control {
                gathered.append(table);
            }
            if gathered.rows.len() >= self.config.reference_rows {
                let frozen = std::mem::take(gathered);
                self.shared = Some(Reference::Frozen(frozen));
            } else {
                return;
            }
        }
        let shared = &self.shared;
        let watch = self.variants.entry(variant.to_owned()).or_insert_with(|| {
            let seed = rand::random();
            let monitor = match shared {
                Some(Reference::Frozen(r)) => {
                    VariantMonitor::with_reference(settings.clone(), seed, r)
                }
                _ => VariantMonitor::new(settings.clone(), seed),
            };
            VariantWatch {
                monitor,
                evaluated: settings.slot(t),
                published: Vec::new(),
                arming: HashMap::new(),
            }
        });
        watch.monitor.observe(t, table);
    }

    /// Removes every series this experiment set.
    fn clear(&mut self, experiment: &str, gauges: &Gauges) {
        for (variant, v) in &mut self.variants {
            for column in v.published.drain(..) {
                remove(gauges, experiment, variant, &column);
            }
            let _ = gauges.rows.remove_label_values(&[experiment, variant]);
        }
        if let Some(q) = &self.quality {
            for variant in q.variants.keys() {
                for measure in [
                    "labelled",
                    "log_loss",
                    "auc",
                    "accuracy",
                    "f1",
                    "calibration_error",
                ] {
                    let _ = gauges
                        .quality
                        .remove_label_values(&[experiment, variant, measure]);
                }
            }
        }
    }
}

fn settings_of(m: &MonitorConfig) -> Settings {
    let mut categorical = m.features.categorical.clone();
    categorical.extend(m.prediction.categorical.iter().cloned());
    Settings {
        window_s: m.window_s,
        min_rows: m.min_rows,
        ks_rows: m.ks_rows,
        reference_rows: m.reference_rows,
        categorical,
    }
}

fn shape(c: &PayloadShapeConfig) -> Shape {
    Shape {
        names: c.names.clone(),
        categorical: c.categorical.clone(),
        pointer: c.pointer.clone().filter(|p| !p.is_empty()),
        element: c.element,
    }
}

/// The rows of a call: its features, and its prediction as one more column when the
/// response has one per row.
fn read(c: &Capture, features: &Shape, prediction: &Shape, gauges: &Gauges) -> Option<Table> {
    let unreadable = |side: &str, why: &str| {
        gauges
            .unreadable
            .with_label_values(&[c.experiment.as_str(), side, why])
            .inc();
    };
    let mut table = match payload::inputs(&c.request, features) {
        Ok(t) => t,
        Err(e) => {
            unreadable("request", e.as_str());
            return None;
        }
    };
    match payload::outputs(&c.response, prediction) {
        Ok(p) if p.len() == table.rows.len() => table.add_column(&prediction.names[0], p),
        Ok(_) => unreadable("response", "row_count"),
        Err(e) => unreadable("response", e.as_str()),
    }
    Some(table)
}

/// Sets a variant's quality gauges once it has `min_labels` of each label.
fn publish_quality(
    gauges: &Gauges,
    experiment: &str,
    variant: &str,
    v: &VariantQuality,
    threshold: f64,
    min_labels: u64,
) {
    let (scores, labels): (Vec<f64>, Vec<bool>) = v.labelled.iter().copied().unzip();
    publish_pairs(
        gauges, experiment, variant, &scores, &labels, threshold, min_labels,
    );
}

/// Sets `cohort_model_quality` of a variant from its labelled predictions (scores and
/// labels), once there are `min_labels` of each label; `labelled` always.
pub fn publish_pairs(
    gauges: &Gauges,
    experiment: &str,
    variant: &str,
    scores: &[f64],
    labels: &[bool],
    threshold: f64,
    min_labels: u64,
) {
    use cohort_stats::quality::{calibration, log_loss, roc_auc, Confusion};
    let positives = labels.iter().filter(|&&y| y).count() as u64;
    let negatives = labels.len() as u64 - positives;
    let set = |measure: &str, value: f64| {
        gauges
            .quality
            .with_label_values(&[experiment, variant, measure])
            .set(value);
    };
    set("labelled", labels.len() as f64);
    if positives < min_labels || negatives < min_labels {
        return;
    }
    if let Some(l) = log_loss(scores, labels) {
        set("log_loss", l);
    }
    if let Some(a) = roc_auc(scores, labels) {
        set("auc", a);
    }
    let c = Confusion::at(scores, labels, threshold);
    if let Some(a) = c.accuracy() {
        set("accuracy", a);
    }
    set("f1", c.f1());
    // The expected calibration error: over ten equal-width bins of the score, the mean
    // distance between the predicted and the observed rate, weighted by the bin's pairs.
    let bins = calibration(scores, labels, 10);
    let ece = bins
        .iter()
        .map(|b| b.n as f64 * (b.predicted - b.observed).abs())
        .sum::<f64>()
        / labels.len() as f64;
    set("calibration_error", ece);
}

/// Online quality in a fleet: each monitored experiment's labelled predictions from
/// ClickHouse (every replica's predictions, labelled by every replica's conversions),
/// published like this replica's own would be.
pub async fn publish_fleet_quality(
    gauges: &Gauges,
    fleet: &cohort_clickhouse::fleet::Fleet,
    exp: &Experiment,
) -> Result<(), cohort_clickhouse::Error> {
    let Some(q) = exp.monitor.as_ref().and_then(|m| m.quality.as_ref()) else {
        return Ok(());
    };
    let now_ns = cohort_events::clock::parse_nanos(&cohort_events::clock::now()).unwrap_or(0);
    let pairs = fleet
        .quality_pairs(
            &exp.name,
            &exp.salt,
            exp.decision.maturity_s().0,
            now_ns,
            QUALITY_PAIRS,
        )
        .await?;
    let mut by_variant: std::collections::BTreeMap<&str, (Vec<f64>, Vec<bool>)> =
        std::collections::BTreeMap::new();
    for (variant, score, label) in &pairs {
        let e = by_variant.entry(variant.as_str()).or_default();
        e.0.push(*score);
        e.1.push(*label);
    }
    for (variant, (scores, labels)) in by_variant {
        publish_pairs(
            gauges,
            &exp.name,
            variant,
            &scores,
            &labels,
            q.threshold,
            q.min_labels,
        );
    }
    Ok(())
}

fn publish(
    gauges: &Gauges,
    experiment: &str,
    variant: &str,
    d: &WindowDrift,
    published: &mut Vec<String>,
) {
    gauges
        .rows
        .with_label_values(&[experiment, variant])
        .set(d.rows as f64);
    for gone in published
        .iter()
        .filter(|c| !d.columns.iter().any(|x| x.column == **c))
    {
        remove(gauges, experiment, variant, gone);
    }
    published.clear();
    for c in &d.columns {
        let labels = [experiment, variant, c.column.as_str()];
        if let Some(psi) = c.psi {
            gauges.psi.with_label_values(&labels).set(psi);
        }
        if let Some(ks) = c.ks {
            gauges.ks_p.with_label_values(&labels).set(ks.p_value);
        }
        if let Some(chi2) = c.chi2 {
            gauges.chi2_p.with_label_values(&labels).set(chi2.p_value);
        }
        published.push(c.column.clone());
    }
}

fn remove(gauges: &Gauges, experiment: &str, variant: &str, column: &str) {
    let labels = [experiment, variant, column];
    let _ = gauges.psi.remove_label_values(&labels);
    let _ = gauges.ks_p.remove_label_values(&labels);
    let _ = gauges.chi2_p.remove_label_values(&labels);
}

/// A reference file's rows: CSV with a header (`.csv`), else JSON Lines of objects.
fn reference_file(path: &Path, shape: &Shape) -> Result<Table, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_REFERENCE_BYTES {
        return Err(format!(
            "{size} bytes is more than the {MAX_REFERENCE_BYTES} a reference file may hold: sample the training rows"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows: Vec<Value> = if is_csv {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().map_err(|e| e.to_string())?.clone();
        reader
            .records()
            .take(MAX_REFERENCE_ROWS)
            .map(|r| {
                let r = r.map_err(|e| e.to_string())?;
                Ok(Value::Object(
                    header
                        .iter()
                        .zip(r.iter())
                        .map(|(k, v)| (k.to_owned(), csv_value(v)))
                        .collect(),
                ))
            })
            .collect::<Result<_, String>>()?
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .take(MAX_REFERENCE_ROWS)
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect::<Result<_, String>>()?
    };
    let table =
        payload::rows(&Value::Array(rows), shape).map_err(|e: Unreadable| e.as_str().to_owned())?;
    if table.rows.is_empty() {
        return Err("no rows".to_owned());
    }
    Ok(table)
}

/// A CSV field: a number where it reads as one, else text (empty: missing).
fn csv_value(v: &str) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => {
            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
        }
        _ => Value::String(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(monitor: &str) -> cohort_config::Routes {
        cohort_config::parse(
            "t.yaml",
            &format!(
                "experiments: [{{name: e, control: a, variants: [{{name: a, weight: 1, upstream: \"http://127.0.0.1:1\"}}, {{name: b, weight: 1, upstream: \"http://127.0.0.1:2\"}}], monitor: {monitor}}}]\n"
            ),
        )
        .unwrap()
    }

    /// A call of `variant` at `t` with one row x = `x`, and its prediction.
    fn capture(variant: &str, t: u64, x: f64) -> Capture {
        Capture {
            experiment: "e".into(),
            variant: variant.into(),
            unit: Some(format!("u{t}")),
            salt: "e".into(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(t),
            request: bytes::Bytes::from(format!("{{\"instances\": [[{x}]]}}")),
            response: bytes::Bytes::from_static(b"{\"predictions\": [1]}"),
        }
    }

    /// The x column's PSI of `variant` in the window evaluated at `now`.
    fn psi_of(
        routes: &cohort_config::Routes,
        captures: &[Capture],
        variant: &str,
        now: i64,
    ) -> Option<f64> {
        let gauges = gauges();
        let mut m = Monitors::default();
        let exp = routes.experiment("e").unwrap();
        for c in captures {
            m.add(exp, c, &gauges);
        }
        let watch = m.experiments.get_mut("e")?.variants.get_mut(variant)?;
        let d = watch.monitor.evaluate(now)?;
        d.columns
            .iter()
            .find(|c| c.column == "f0")
            .and_then(|c| c.psi)
    }

    #[test]
    fn a_shared_reference_is_the_controls_first_rows_for_every_variant() {
        // a's values spread over 0..100; b's all at 150, from t = 200 on.
        let mut calls: Vec<Capture> = (0..100).map(|i| capture("a", 100 + i, i as f64)).collect();
        calls.extend((0..100).map(|i| capture("b", 200 + i, 150.0)));
        calls.extend((0..100).map(|i| capture("a", 200 + i, i as f64)));
        let keys = "{window_s: 600, min_rows: 20, reference_rows: 50";
        // Shared: b is compared with a's rows, and has drifted far.
        let shared = experiment(&format!("{keys}, reference_from: shared}}"));
        let psi = psi_of(&shared, &calls, "b", 400).expect("b is watched");
        assert!(psi > 2.0, "shared reference: {psi}");
        // Each variant's own: b's first 50 rows are its reference, and it has not moved.
        let own = experiment(&format!("{keys}}}"));
        let psi = psi_of(&own, &calls, "b", 400).expect("b is watched");
        assert!(psi < 0.1, "own reference: {psi}");
        // Shared, but the control has not given 50 rows yet: nobody is watched.
        let early: Vec<Capture> = calls
            .iter()
            .filter(|c| {
                c.variant == "b" || c.at < SystemTime::UNIX_EPOCH + Duration::from_secs(130)
            })
            .cloned()
            .collect();
        assert_eq!(psi_of(&shared, &early, "b", 400), None);
    }

    #[test]
    fn a_breach_fires_once_and_rearms_after_a_whole_window_below() {
        let mut a = Arming::Armed;
        // Windows of 60 s refreshed every 10 s: window k is [10k, 10k + 60).
        let above = [
            true, true, false, true, false, false, false, false, false, false, false, true,
        ];
        let fired: Vec<usize> = above
            .iter()
            .enumerate()
            .filter(|&(k, &up)| a.window(up, k as i64 * 10, k as i64 * 10 + 60))
            .map(|(k, _)| k)
            .collect();
        // k=0 fires; k=3 is above again before a whole window below; from k=4 (ending at
        // 100) it is below, and the window starting at 100 (k=10), wholly after it, is below
        // too: armed again, so the breach at k=11 fires.
        assert_eq!(fired, vec![0, 11]);
        let mut b = Arming::Armed;
        assert!(!b.window(false, 0, 60));
        assert_eq!(b, Arming::Armed);
    }

    #[test]
    fn reference_files_are_read_as_csv_or_json_lines() {
        let dir = std::env::temp_dir().join(format!("cohort-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("train.csv");
        std::fs::write(&csv, "age,city,score\n31,Oslo,0.5\n\"40\",\"Rome, IT\",\n").unwrap();
        let t = reference_file(&csv, &Shape::default()).unwrap();
        assert_eq!(t.columns, ["age", "city", "score"]);
        assert_eq!(t.rows[1][0], payload::Cell::Number(40.0));
        assert_eq!(t.rows[1][1], payload::Cell::Category("Rome, IT".into()));
        assert_eq!(t.rows[1][2], payload::Cell::Missing);
        let jsonl = dir.join("train.jsonl");
        std::fs::write(&jsonl, "{\"age\": 31}\n\n{\"age\": 40, \"x\": 1}\n").unwrap();
        let t = reference_file(&jsonl, &Shape::default()).unwrap();
        assert_eq!((t.columns.len(), t.rows.len()), (2, 2));
        std::fs::write(&jsonl, "{\"age\": 31}\nnot json\n").unwrap();
        let e = reference_file(&jsonl, &Shape::default()).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(reference_file(&dir.join("missing.csv"), &Shape::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
