//! The Prometheus registry: every metric family of the contract (README.md, "Metrics and admin endpoints"),
//! registered at startup, and per-variant handles resolved when a table is compiled.
//!
//! The hot path never looks a label up: [`RequestMetrics`] holds the counter of each
//! common status code and the latency histogram of one (route, experiment, variant), and
//! [`VariantMetrics`] the error counters of one (experiment, variant); both are built by
//! [`Metrics::request_handles`] / [`Metrics::variant_handles`] when the table compiles.
//! Only a status code outside [`COMMON_CODES`] costs a label lookup.
//!
//! Families whose features have not produced a series yet (e.g. `cohort_srm_p_value` before
//! any analysis) are still exposed with their `# HELP` and `# TYPE` lines, so dashboards
//! and alert rules can be written against a fresh process.

use cohort_events::WriterOptions;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Status codes whose counters are pre-resolved (index = position).
pub const COMMON_CODES: [u16; 14] = [
    200, 201, 202, 204, 400, 401, 403, 404, 408, 429, 500, 502, 503, 504,
];

/// Kinds of upstream failure (`cohort_upstream_errors_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Connection refused, DNS, TLS handshake: nothing was sent.
    Connect,
    /// No response head within `timeout_ms`.
    Timeout,
    /// The connection failed after the request was sent, before a head.
    Reset,
    /// No body chunk within `idle_timeout_ms` once the response streamed.
    IdleTimeout,
    /// The response body failed after its head was sent (the response was aborted).
    Aborted,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 5] = [
        Self::Connect,
        Self::Timeout,
        Self::Reset,
        Self::IdleTimeout,
        Self::Aborted,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::IdleTimeout => "idle_timeout",
            Self::Aborted => "aborted",
        }
    }
}

/// Every family of the contract.
pub struct Metrics {
    registry: Registry,
    /// Families registered from outside this crate: (name, help, type), declared on
    /// /metrics before they have a series.
    added: std::sync::Mutex<Vec<(String, String, &'static str)>>,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    /// `cohort_upstream_up{experiment,variant}`: 1 when the last probe connected or the last
    /// request got a response head, 0 when either could not connect.
    pub upstream_up: IntGaugeVec,
    /// `cohort_client_errors_total{kind}`: requests that failed on the client's side, kept
    /// out of every variant's figures.
    pub client_errors: IntCounterVec,
    pub exposures: IntCounterVec,
    pub conversions: IntCounterVec,
    pub variant_weight: GaugeVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_success: Gauge,
    pub config_info: IntGaugeVec,
    pub config_pending: IntGaugeVec,
    pub events_written: IntCounter,
    pub events_dropped: IntCounter,
    pub events_queue_depth: IntGauge,
    pub events_queue_depth_max: IntGauge,
    pub experiment_units: IntGaugeVec,
    pub experiment_conversion_rate: GaugeVec,
    pub experiment_p_value: GaugeVec,
    pub experiment_prob_beat_control: GaugeVec,
    pub srm_p_value: GaugeVec,
    /// `cohort_build_info{version,commit}`: 1.
    pub build_info: IntGaugeVec,
    /// Shadow traffic ([`crate::shadow`]): copies by result.
    pub shadow_requests: IntCounterVec,
    /// The largest numeric difference of each compared answer.
    pub shadow_abs_diff: HistogramVec,
    /// Time to the response head of the primary and of the shadow, on compared requests.
    pub shadow_latency: HistogramVec,
}

/// Latency buckets (seconds): 1 ms … ~33 s, for model calls from trivial to LLM-sized.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 16).unwrap_or_else(|_| vec![0.01, 0.1, 1.0, 10.0])
}

/// Difference buckets: 0 (exact), then 10⁻⁹ … 10³ by decades.
fn diff_buckets() -> Vec<f64> {
    std::iter::once(0.0)
        .chain((-9..=3).map(|e| 10f64.powi(e)))
        .collect()
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let ev = ["experiment", "variant"];
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new("cohort_requests_total", "Requests answered, by route, experiment, variant and status code."),
                &["route", "experiment", "variant", "code"],
            )
            .expect("valid metric"),
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "cohort_request_duration_seconds",
                    "Time from a request's arrival to its response head, by route, experiment and variant.",
                )
                .buckets(latency_buckets()),
                &["route", "experiment", "variant"],
            )
            .expect("valid metric"),
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "cohort_upstream_errors_total",
                    "Upstream failures by kind: connect, timeout, reset, idle_timeout, aborted.",
                ),
                &["experiment", "variant", "kind"],
            )
            .expect("valid metric"),
            upstream_up: IntGaugeVec::new(
                Opts::new(
                    "cohort_upstream_up",
                    "1 when the variant's upstream accepted the last connection (the probe when a config goes in force, then each request), 0 when it refused or timed out.",
                ),
                &ev,
            )
            .expect("valid metric"),
            client_errors: IntCounterVec::new(
                Opts::new(
                    "cohort_client_errors_total",
                    "Requests that failed on the client's side (kind body: the upload broke off or was malformed); never counted against a variant.",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            exposures: IntCounterVec::new(
                Opts::new("cohort_exposures_total", "Exposure events written."),
                &ev,
            )
            .expect("valid metric"),
            conversions: IntCounterVec::new(
                Opts::new(
                    "cohort_conversions_total",
                    "Conversion events accepted, under the variant attributed at receipt.",
                ),
                &ev,
            )
            .expect("valid metric"),
            variant_weight: GaugeVec::new(
                Opts::new("cohort_variant_weight", "The share (0-1) of units each variant receives."),
                &ev,
            )
            .expect("valid metric"),
            config_reloads: IntCounterVec::new(
                Opts::new("cohort_config_reloads_total", "Config reloads by result: success, error, refused."),
                &["result"],
            )
            .expect("valid metric"),
            config_last_reload_success: Gauge::new(
                "cohort_config_last_reload_success_timestamp_seconds",
                "Unix time of the last config load that took effect.",
            )
            .expect("valid metric"),
            config_info: IntGaugeVec::new(
                Opts::new(
                    "cohort_config_info",
                    "The active config version (value 1); base_version leaves out rollout steps.",
                ),
                &["version", "base_version"],
            )
            .expect("valid metric"),
            config_pending: IntGaugeVec::new(
                Opts::new(
                    "cohort_config_pending",
                    "1 while the config file on disk differs from the one in force because it was refused.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            events_written: IntCounter::new("cohort_events_written_total", "Events written to the event log.")
                .expect("valid metric"),
            events_dropped: IntCounter::new(
                "cohort_events_dropped_total",
                "Events that could not be written (channel full or write error).",
            )
            .expect("valid metric"),
            events_queue_depth: IntGauge::new(
                "cohort_events_queue_depth",
                "Events handed to the event writer and not yet taken by it (what a SIGKILL would lose), sampled at each of its wake-ups.",
            )
            .expect("valid metric"),
            events_queue_depth_max: IntGauge::new(
                "cohort_events_queue_depth_max",
                "The highest cohort_events_queue_depth since the process started.",
            )
            .expect("valid metric"),
            experiment_units: IntGaugeVec::new(
                Opts::new("cohort_experiment_units", "Distinct exposed units per variant."),
                &ev,
            )
            .expect("valid metric"),
            experiment_conversion_rate: GaugeVec::new(
                Opts::new("cohort_experiment_conversion_rate", "Converted units / exposed units per variant."),
                &ev,
            )
            .expect("valid metric"),
            experiment_p_value: GaugeVec::new(
                Opts::new("cohort_experiment_p_value", "p-value of each treatment against the control."),
                &ev,
            )
            .expect("valid metric"),
            experiment_prob_beat_control: GaugeVec::new(
                Opts::new(
                    "cohort_experiment_prob_beat_control",
                    "Posterior probability that the variant converts better than the control.",
                ),
                &ev,
            )
            .expect("valid metric"),
            srm_p_value: GaugeVec::new(
                Opts::new("cohort_srm_p_value", "Sample-ratio-mismatch test p-value per experiment."),
                &["experiment"],
            )
            .expect("valid metric"),
            build_info: IntGaugeVec::new(
                Opts::new(
                    "cohort_build_info",
                    "1, labelled with the version and the git commit cohort was built from.",
                ),
                &["version", "commit"],
            )
            .expect("valid metric"),
            shadow_requests: IntCounterVec::new(
                Opts::new(
                    "cohort_shadow_requests_total",
                    "Requests considered for a shadow, by result: agree, disagree, error, timeout, skipped_body, skipped_inflight, skipped_no_unit, skipped_upgrade, skipped_primary.",
                ),
                &["experiment", "shadow", "result"],
            )
            .expect("valid metric"),
            shadow_abs_diff: HistogramVec::new(
                HistogramOpts::new(
                    "cohort_shadow_abs_diff",
                    "The largest absolute difference between a shadow's numeric prediction elements and the served answer's, per compared response.",
                )
                .buckets(diff_buckets()),
                &["experiment", "shadow"],
            )
            .expect("valid metric"),
            shadow_latency: HistogramVec::new(
                HistogramOpts::new(
                    "cohort_shadow_latency_seconds",
                    "Time from a compared request's arrival to the response head, side primary (the served answer) or shadow.",
                )
                .buckets(latency_buckets()),
                &["experiment", "shadow", "side"],
            )
            .expect("valid metric"),
            registry,
            added: Default::default(),
        };
        for c in m.collectors() {
            // Names are distinct constants: registration cannot fail.
            let _ = m.registry.register(c);
        }
        for result in ["success", "error", "refused"] {
            m.config_reloads.with_label_values(&[result]);
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("COHORT_COMMIT")])
            .set(1);
        // process_cpu_seconds_total, process_resident_memory_bytes, open file descriptors…
        #[cfg(target_os = "linux")]
        let _ = m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        m
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.requests.clone()),
            Box::new(self.request_duration.clone()),
            Box::new(self.upstream_errors.clone()),
            Box::new(self.upstream_up.clone()),
            Box::new(self.client_errors.clone()),
            Box::new(self.exposures.clone()),
            Box::new(self.conversions.clone()),
            Box::new(self.variant_weight.clone()),
            Box::new(self.config_reloads.clone()),
            Box::new(self.config_last_reload_success.clone()),
            Box::new(self.config_info.clone()),
            Box::new(self.config_pending.clone()),
            Box::new(self.events_written.clone()),
            Box::new(self.events_dropped.clone()),
            Box::new(self.events_queue_depth.clone()),
            Box::new(self.events_queue_depth_max.clone()),
            Box::new(self.experiment_units.clone()),
            Box::new(self.experiment_conversion_rate.clone()),
            Box::new(self.experiment_p_value.clone()),
            Box::new(self.experiment_prob_beat_control.clone()),
            Box::new(self.srm_p_value.clone()),
            Box::new(self.build_info.clone()),
            Box::new(self.shadow_requests.clone()),
            Box::new(self.shadow_abs_diff.clone()),
            Box::new(self.shadow_latency.clone()),
        ]
    }

    /// The text exposition format, every family included.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(16 * 1024);
        // gather() leaves out families without series; encode those that have some …
        let _ = TextEncoder::new().encode(&families, &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        // … and declare the others, so that every family is visible from the start.
        let added = self.added.lock().unwrap_or_else(|p| p.into_inner());
        for (name, help, kind) in added.iter() {
            if !families.iter().any(|f| f.name() == name) {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            }
        }
        let histograms: Vec<&str> = [
            &self.request_duration,
            &self.shadow_abs_diff,
            &self.shadow_latency,
        ]
        .iter()
        .flat_map(|h| h.desc())
        .map(|d| d.fq_name.as_str())
        .collect();
        for c in self.collectors() {
            for desc in c.desc() {
                if !families.iter().any(|f| f.name() == desc.fq_name) {
                    let kind = if histograms.contains(&desc.fq_name.as_str()) {
                        "histogram"
                    } else if desc.fq_name.ends_with("_total") {
                        "counter"
                    } else {
                        "gauge"
                    };
                    text.push_str(&format!(
                        "# HELP {} {}\n# TYPE {} {kind}\n",
                        desc.fq_name, desc.help, desc.fq_name
                    ));
                }
            }
        }
        text
    }

    /// Adds the families of a part that lives outside this crate (e.g. the shipper's), so
    /// that /metrics shows them with the rest.
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        let families: Vec<(String, String, &'static str)> = collector
            .collect()
            .iter()
            .map(|f| {
                let kind = match f.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => "counter",
                    prometheus::proto::MetricType::HISTOGRAM => "histogram",
                    prometheus::proto::MetricType::SUMMARY => "summary",
                    _ => "gauge",
                };
                (f.name().to_owned(), f.help().to_owned(), kind)
            })
            .collect();
        self.registry.register(collector)?;
        self.added
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(families);
        Ok(())
    }

    /// Handles for the requests of one (route, experiment, variant), series created at 0.
    pub fn request_handles(&self, route: &str, experiment: &str, variant: &str) -> RequestMetrics {
        let codes = COMMON_CODES.map(|code| {
            self.requests
                .with_label_values(&[route, experiment, variant, &code.to_string()])
        });
        // Pre-create the series a dashboard expects at zero: 200 is already among them.
        RequestMetrics {
            labels: [route.to_owned(), experiment.to_owned(), variant.to_owned()],
            codes,
            requests: self.requests.clone(),
            duration: self
                .request_duration
                .with_label_values(&[route, experiment, variant]),
        }
    }

    /// Handles for one (experiment, variant), series created at 0; sets its share.
    pub fn variant_handles(&self, experiment: &str, variant: &str, share: f64) -> VariantMetrics {
        self.variant_weight
            .with_label_values(&[experiment, variant])
            .set(share);
        self.exposures.with_label_values(&[experiment, variant]);
        self.conversions.with_label_values(&[experiment, variant]);
        // Units start at 0; rates, p-values and P(beat) appear once they are defined (a
        // placeholder p of 0 would fire every "p < 0.001" alert).
        self.experiment_units
            .with_label_values(&[experiment, variant]);
        VariantMetrics {
            errors: UpstreamErrorKind::ALL.map(|k| {
                self.upstream_errors
                    .with_label_values(&[experiment, variant, k.label()])
            }),
            up: self.upstream_up.with_label_values(&[experiment, variant]),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Request counters and latency of one (route, experiment, variant).
#[derive(Clone)]
pub struct RequestMetrics {
    labels: [String; 3],
    codes: [IntCounter; COMMON_CODES.len()],
    requests: IntCounterVec,
    pub duration: prometheus::Histogram,
}

impl RequestMetrics {
    /// Counts one answered request with status `code`.
    #[inline]
    pub fn count(&self, code: u16) {
        match COMMON_CODES.iter().position(|&c| c == code) {
            Some(i) => self.codes[i].inc(),
            None => {
                let [r, e, v] = &self.labels;
                self.requests
                    .with_label_values(&[r, e, v, &code.to_string()])
                    .inc()
            }
        }
    }
}

/// Upstream error counters of one (experiment, variant).
#[derive(Clone)]
pub struct VariantMetrics {
    errors: [IntCounter; UpstreamErrorKind::ALL.len()],
    up: IntGauge,
}

impl VariantMetrics {
    #[inline]
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.errors[kind as usize].inc();
        if kind == UpstreamErrorKind::Connect {
            self.set_up(false);
        }
    }

    /// The upstream answered (a response head): it is up.
    #[inline]
    pub fn answered(&self) {
        self.set_up(true);
    }

    /// `cohort_upstream_up`. Written only when it changes: every worker reads the same
    /// cache line on every request, and a store on each would bounce it between cores.
    #[inline]
    pub fn set_up(&self, up: bool) {
        let v = i64::from(up);
        if self.up.get() != v {
            self.up.set(v);
        }
    }
}

impl Metrics {
    /// The event writer's options for the config's `events` section, counting into
    /// `cohort_events_written_total`, `cohort_events_dropped_total`, the queue depth gauges
    /// and, per written exposure, `cohort_exposures_total`.
    pub fn event_writer_options(&self, cfg: &cohort_config::schema::EventsConfig) -> WriterOptions {
        WriterOptions::from_config(
            cfg,
            self.events_written.clone(),
            self.events_dropped.clone(),
        )
        .observed_by(std::sync::Arc::new(ExposureCounter(self.exposures.clone())))
        .with_queue_gauges(
            self.events_queue_depth.clone(),
            self.events_queue_depth_max.clone(),
        )
    }
}

/// `cohort_exposures_total{experiment,variant}`, counted from what the event writer wrote.
pub struct ExposureCounter(pub IntCounterVec);

impl cohort_events::writer::Observer for ExposureCounter {
    fn written(&self, events: &[cohort_events::EventRef<'_>]) {
        // One label lookup per (experiment, variant) and batch, not per event.
        let mut runs: Vec<(&str, &str, u64)> = Vec::new();
        for e in events {
            if let cohort_events::EventRef::Exposure(x) = e {
                match runs
                    .iter_mut()
                    .find(|(ex, v, _)| same(ex, x.experiment) && same(v, x.variant))
                {
                    Some(run) => run.2 += 1,
                    None => runs.push((x.experiment, x.variant, 1)),
                }
            }
        }
        for (experiment, variant, n) in runs {
            self.0.with_label_values(&[experiment, variant]).inc_by(n);
        }
    }
}

/// Equal strings; those borrowed from one routing table are the same memory, found
/// without comparing bytes.
fn same(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_added_from_outside_are_declared_with_their_type_before_any_series() {
        let m = Metrics::new();
        let age = GaugeVec::new(Opts::new("x_age_seconds", "An age."), &["e"]).unwrap();
        let n = IntCounterVec::new(Opts::new("x_failures_total", "Failures."), &["e"]).unwrap();
        m.register(Box::new(age.clone())).unwrap();
        m.register(Box::new(n)).unwrap();
        let text = m.render();
        assert!(text.contains("# TYPE x_age_seconds gauge\n"), "{text}");
        assert!(text.contains("# TYPE x_failures_total counter\n"), "{text}");
        age.with_label_values(&["a"]).set(2.0);
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE x_age_seconds gauge").count(),
            1,
            "{text}"
        );
        assert!(text.contains("x_age_seconds{e=\"a\"} 2"), "{text}");
    }

    #[test]
    fn own_families_are_declared_with_their_type_before_any_series() {
        let text = Metrics::new().render();
        for (name, kind) in [
            ("cohort_shadow_abs_diff", "histogram"),
            ("cohort_shadow_latency_seconds", "histogram"),
            ("cohort_request_duration_seconds", "histogram"),
            (
                "cohort_config_last_reload_success_timestamp_seconds",
                "gauge",
            ),
            ("cohort_shadow_requests_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn the_error_kinds_index_their_counters() {
        for (i, k) in UpstreamErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }
}
