//! The routes.yaml schema, key by key, exactly as users write it.
//!
//! These types are the *file* view: serde fills in every default, rejects unknown keys
//! (`deny_unknown_fields` everywhere) and wrong types. Everything that needs more than one
//! key at a time (cross-references, duplicate names, weight sums, lanes) is checked
//! afterwards in `config::compile`, which turns this into the immutable
//! [`Routes`](super::Routes) table the hot path reads.
//!
//! Every key and default here is a public contract (README.md, "Configuration
//! reference"): keys may be added, never silently changed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Public listener (HTTP/1.1 and h2c with prior knowledge on one port).
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-*` headers are kept instead of overwritten.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub conversions: ConversionsConfig,
    /// Routes and experiments this file knowingly removes: a reload that would remove one
    /// that served requests since the last reload, or leave no route at all, is refused
    /// unless its name is here.
    #[serde(default)]
    pub allow_remove: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub experiments: Vec<ExperimentConfig>,
}

/// What [`FileConfig::set_weights`] could not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownName {
    /// The file has no experiment of that name.
    Experiment,
    /// The experiment has no variant of that name.
    Variant(String),
}

impl FileConfig {
    /// Sets the `weight` of each of `experiment`'s variants that `weights` names (the others
    /// keep theirs): the one way runtime weights and rollout steps are laid over a file.
    /// Returns what it could not find; the rest is set.
    pub fn set_weights(
        &mut self,
        experiment: &str,
        weights: &BTreeMap<String, f64>,
    ) -> Vec<UnknownName> {
        let Some(exp) = self.experiments.iter_mut().find(|e| e.name == experiment) else {
            return vec![UnknownName::Experiment];
        };
        let mut unknown = Vec::new();
        for (variant, w) in weights {
            match exp.variants.iter_mut().find(|v| &v.name == variant) {
                Some(v) => v.weight = *w,
                None => unknown.push(UnknownName::Variant(variant.clone())),
            }
        }
        unknown
    }
}

/// The admin listener: probes, metrics, the read API and (with tokens) the control plane.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Loopback by default: mutating calls without tokens are only allowed there.
    #[serde(default = "defaults::admin_listen")]
    pub listen: SocketAddr,
    /// Named bearer tokens; the secret itself is read from the environment variable `env`.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Where runtime weight changes are persisted.
    #[serde(default = "defaults::state_file")]
    pub state_file: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: defaults::admin_listen(),
            tokens: Vec::new(),
            state_file: defaults::state_file(),
        }
    }
}

/// One admin bearer token. Only its name ever appears in logs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Environment variable holding the secret (never the secret itself).
    pub env: String,
    pub scopes: Vec<Scope>,
}

/// What a token may do on the admin listener.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/reload`, `PUT`/`POST /v1/experiments/*`.
    Control,
    /// `POST /v1/conversions`.
    Conversions,
}

/// Limits that keep the proxy alive under abuse.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// HTTP/1 header read timeout; hyper also uses it as the keep-alive idle timeout.
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    #[serde(default = "defaults::h2_idle_timeout_ms")]
    pub h2_idle_timeout_ms: u64,
    #[serde(default = "defaults::h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: u32,
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: defaults::max_connections(),
            header_read_timeout_ms: defaults::header_read_timeout_ms(),
            h2_idle_timeout_ms: defaults::h2_idle_timeout_ms(),
            h2_max_concurrent_streams: defaults::h2_max_concurrent_streams(),
            max_header_bytes: defaults::max_header_bytes(),
        }
    }
}

/// Graceful shutdown timing (SIGTERM).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// `/readyz` answers 503 but serving continues while endpoints drain.
    #[serde(default = "defaults::grace_ms")]
    pub grace_ms: u64,
    /// Then in-flight requests get this long before they are aborted.
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// With `events.clickhouse`: then the shipper gets this long to ship what the spool
    /// still holds (the rest ships at the next start, if the spool survives).
    #[serde(default = "defaults::ship_timeout_ms")]
    pub ship_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_ms: defaults::grace_ms(),
            drain_timeout_ms: defaults::drain_timeout_ms(),
            ship_timeout_ms: defaults::ship_timeout_ms(),
        }
    }
}

/// The outcome log (JSON Lines segments, event schema v1).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Record exposures and accept conversions (false: no event log, e.g. to measure
    /// the proxy without it).
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    #[serde(default = "defaults::events_dir")]
    pub dir: PathBuf,
    #[serde(default)]
    pub fsync: FsyncMode,
    #[serde(default = "defaults::fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    #[serde(default = "defaults::segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// Seconds; fractions allowed (tests rotate after 0.2 s).
    #[serde(default = "defaults::segment_max_age_s")]
    pub segment_max_age_s: f64,
    /// Bounded channel between handlers and the writer; when full, events are counted
    /// and dropped, never allowed to block a response.
    #[serde(default = "defaults::channel_capacity")]
    pub channel_capacity: u32,
    /// Ship the log to ClickHouse, so that every replica's events meet in one place (null:
    /// the log stays local).
    #[serde(default)]
    pub clickhouse: Option<ClickHouseConfig>,
    /// With shipping, how long a shipped segment is kept before it is deleted (null: 3600;
    /// without shipping segments are never deleted). A segment not shipped yet never is.
    #[serde(default)]
    pub retention_s: Option<f64>,
    /// With shipping, the most bytes of the log that may wait to be shipped (null: no
    /// bound). Past it exposures are dropped (counted) and conversions answered 503.
    #[serde(default)]
    pub spool_max_bytes: Option<u64>,
}

impl EventsConfig {
    /// How long shipped segments are kept: None when nothing is deleted (no shipping).
    pub fn shipped_retention(&self) -> Option<std::time::Duration> {
        self.clickhouse.as_ref()?;
        Some(std::time::Duration::from_secs_f64(
            self.retention_s.unwrap_or(3600.0).max(0.0),
        ))
    }
}

/// Where `events.clickhouse` ships the log. The local segments stay the write-ahead spool.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// ClickHouse's HTTP interface, `http://host:8123` (or https).
    pub url: String,
    #[serde(default = "defaults::clickhouse_database")]
    pub database: String,
    /// The events table; the shares history goes to `<table>_config_versions`.
    #[serde(default = "defaults::clickhouse_table")]
    pub table: String,
    #[serde(default = "defaults::clickhouse_user")]
    pub user: String,
    /// The environment variable that holds the password (null: none). Never the password
    /// itself, which would end up in the ConfigMap and in `/v1/config`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Create the database and tables at start if they are missing.
    #[serde(default = "defaults::enabled")]
    pub create_schema: bool,
    #[serde(default = "defaults::clickhouse_batch_max_events")]
    pub batch_max_events: u32,
    #[serde(default = "defaults::clickhouse_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "defaults::clickhouse_timeout_ms")]
    pub timeout_ms: u64,
    /// How often each replica sets `cohort_experiment_units` and `_conversion_rate` from
    /// per-variant counts summed in ClickHouse (a handful of rows per experiment).
    #[serde(default = "defaults::clickhouse_live_counts_s")]
    pub live_counts_s: f64,
    /// How often each replica recomputes the fleet's report for the other experiment
    /// gauges (decision p, P(beat control), SRM p): one per-unit report per experiment.
    #[serde(default = "defaults::clickhouse_live_refresh_s")]
    pub live_refresh_s: f64,
    /// The oldest fleet report the live report endpoints serve before computing a new one.
    #[serde(default = "defaults::clickhouse_live_max_age_s")]
    pub live_max_age_s: f64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: defaults::events_dir(),
            fsync: FsyncMode::default(),
            fsync_interval_ms: defaults::fsync_interval_ms(),
            segment_max_bytes: defaults::segment_max_bytes(),
            segment_max_age_s: defaults::segment_max_age_s(),
            channel_capacity: defaults::channel_capacity(),
            clickhouse: None,
            retention_s: None,
            spool_max_bytes: None,
        }
    }
}

/// When the event writer calls fsync.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// After every batch, before the batch counts as written.
    Always,
    /// Every `fsync_interval_ms`.
    #[default]
    Interval,
    /// Leave it to the OS.
    Never,
}

/// Where conversions are accepted.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConversionsConfig {
    /// A path on the public listener (e.g. `/cohort/conversions`); off when null.
    #[serde(default)]
    pub public_path: Option<String>,
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
}

impl Default for ConversionsConfig {
    fn default() -> Self {
        Self {
            public_path: None,
            max_body_bytes: defaults::max_body_bytes(),
        }
    }
}

/// One public route: which requests run which experiment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    pub experiment: String,
    /// Remove `path_prefix` from the path before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Until the upstream's response head; then 504.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Between body chunks once the response streams; then the response is aborted.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

/// How a request is matched to a route: longest `path_prefix` wins, then config order.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default = "defaults::path_prefix")]
    pub path_prefix: String,
    /// `Host` (HTTP/1) or `:authority` (HTTP/2), without port, case-insensitive.
    #[serde(default)]
    pub host: Option<String>,
    /// Exact-match headers (name case-insensitive, value exact).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// One experiment: variants, weights, and how units are identified.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub name: String,
    #[serde(default)]
    pub unit: UnitKind,
    /// Ordered; the first source present wins. One source may be written as a bare map.
    /// Default: `[{header: x-user-id}]` for `unit: user`; not allowed with `unit: request`.
    #[serde(default)]
    pub unit_from: Option<OneOrMany<UnitSourceConfig>>,
    #[serde(default)]
    pub on_missing_unit: OnMissingUnit,
    #[serde(default)]
    pub cookie: CookieConfig,
    /// Hash salt; defaults to the experiment's name. A new salt re-randomizes everyone.
    #[serde(default)]
    pub salt: Option<String>,
    pub control: String,
    /// Honour `x-cohort-variant: NAME` (forced requests are excluded from analysis).
    #[serde(default)]
    pub allow_override: bool,
    /// Accept config changes that move units between treatments.
    #[serde(default)]
    pub allow_reshuffle: bool,
    pub variants: Vec<VariantConfig>,
    #[serde(default)]
    pub decision: DecisionConfig,
    /// A stepped rollout of one treatment, gated by guardrails (null: the weights above
    /// are the experiment's, changed only by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutConfig>,
    /// Drift of each variant's inputs and predictions from a reference (null: not
    /// monitored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorConfig>,
    /// Candidate models that get a copy of a sample of this experiment's requests; their
    /// answers are compared with the served ones and never reach a client. Left out of the
    /// effective config when empty, so that files without shadows keep their version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowConfig>,
}

/// A shadow: a model that receives a copy of a sample of the experiment's requests (by
/// unit), whose answers are compared with the answer the client got. It is not a variant:
/// it has no weight, never answers a client, and is never assigned a unit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub name: String,
    /// `http://host:port[/base]` or `https://…`.
    pub upstream: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// `upstream` (the shadow's authority), `preserve` (the client's), or a literal host.
    #[serde(default = "defaults::host_header")]
    pub host_header: String,
    #[serde(default)]
    pub tls: TlsConfig,
    /// The share of units whose requests are copied, in (0, 1].
    #[serde(default = "defaults::shadow_sample")]
    pub sample: f64,
    /// Copies in flight at most (per replica); a request that finds none free is not copied.
    #[serde(default = "defaults::shadow_max_inflight")]
    pub max_inflight: u32,
    /// Request and response bodies longer than this are not copied or compared.
    #[serde(default = "defaults::shadow_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The shadow's whole answer (head and body) must arrive within this.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Write both answers of a disagreement to the event log (they may be personal data).
    #[serde(default)]
    pub log_payloads: bool,
    /// Each logged answer is cut to this many bytes.
    #[serde(default = "defaults::shadow_payload_bytes")]
    pub payload_bytes: usize,
    /// Disagreements logged with their answers, at most, per second.
    #[serde(default = "defaults::shadow_max_diff_events_per_s")]
    pub max_diff_events_per_s: u32,
    #[serde(default)]
    pub compare: CompareConfig,
}

/// How two answers are compared.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// A JSON pointer (RFC 6901) to the predictions, instead of the known shapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    #[serde(default)]
    pub tolerance: ToleranceConfig,
}

/// Two numbers agree when |a − b| ≤ max(absolute, relative × max(|a|, |b|)).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToleranceConfig {
    #[serde(default = "defaults::tolerance_absolute")]
    pub absolute: f64,
    #[serde(default = "defaults::tolerance_relative")]
    pub relative: f64,
}

impl Default for ToleranceConfig {
    fn default() -> Self {
        Self {
            absolute: defaults::tolerance_absolute(),
            relative: defaults::tolerance_relative(),
        }
    }
}

/// Model monitoring: a sample of each variant's calls is read (request and response bodies,
/// up to a size, while they stream) and compared, window by window, with a reference.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// The share of requests whose bodies are read, in (0, 1].
    #[serde(default = "defaults::monitor_sample")]
    pub sample: f64,
    /// At most this many captured calls per second for the experiment (per replica).
    #[serde(default = "defaults::monitor_max_per_s")]
    pub max_per_s: u32,
    /// Bodies longer than this are not monitored (counted as too large).
    #[serde(default = "defaults::monitor_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The window the statistics are taken over; refreshed every sixth of it.
    #[serde(default = "defaults::monitor_window_s")]
    pub window_s: u64,
    /// Values of a column a window needs before the column is reported.
    #[serde(default = "defaults::monitor_min_rows")]
    pub min_rows: u64,
    /// Live values (and reference values) the KS test is taken on, at most.
    #[serde(default = "defaults::monitor_ks_rows")]
    pub ks_rows: usize,
    /// Training rows, CSV with a header or JSON Lines of objects (null: the reference is
    /// the first `reference_rows` rows captured in the experiment's current phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<std::path::PathBuf>,
    /// Rows captured before the reference is frozen (without a `reference` file).
    #[serde(default = "defaults::monitor_reference_rows")]
    pub reference_rows: usize,
    /// Whether each variant has its own captured reference (`variant`) or all share the
    /// control's (`shared`).
    #[serde(default)]
    pub reference_from: ReferenceFrom,
    #[serde(default)]
    pub features: PayloadShapeConfig,
    #[serde(default)]
    pub prediction: PayloadShapeConfig,
    /// What to call when a column drifts (null: only the gauges and the alert rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<OnDriftConfig>,
    /// Online model quality, with conversions as the labels (null: not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityConfig>,
}

/// Online quality of a binary model whose prediction is a score in [0, 1] (or a 0/1 label):
/// each captured prediction is labelled positive when its unit converts within the
/// experiment's attribution window after the call, once that window has closed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Scores at or above it count as positive, for accuracy and F1.
    #[serde(default = "defaults::quality_threshold")]
    pub threshold: f64,
    /// Labelled predictions (of each label) a variant needs before its figures are shown.
    #[serde(default = "defaults::quality_min_labels")]
    pub min_labels: u64,
}

/// The retrain trigger: a column's PSI above the bound POSTs to a webhook, once per breach.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnDriftConfig {
    /// The bound a column's PSI must exceed.
    #[serde(default = "defaults::psi_above")]
    pub psi_above: f64,
    pub webhook: DriftWebhookConfig,
}

/// Where a drift is POSTed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftWebhookConfig {
    /// `http://…` or `https://…`.
    pub url: String,
    /// The environment variable holding the HMAC-SHA256 key that signs each body (null:
    /// unsigned).
    #[serde(default)]
    pub secret_env: Option<String>,
}

/// Whose captured rows make a variant's reference.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceFrom {
    /// Each variant's own first rows.
    #[default]
    Variant,
    /// The control's first rows, for every variant.
    Shared,
}

/// How one side of a call (the features in the request, the prediction in the response) is
/// read when the payload does not say it all.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PayloadShapeConfig {
    /// Names of the columns the payload gives by position only, in order (the rest are
    /// `f0`, `f1`, … by position).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Columns whose numbers are codes, compared as categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categorical: Vec<String>,
    /// A JSON pointer (RFC 6901, e.g. `/payload/rows`) to read at instead of the known
    /// shapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Of a prediction that is a list (class probabilities), the element monitored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<usize>,
}

/// A rollout: the treatment's share goes up step by step while its guardrails pass, and
/// back to 0 when one fails. While it is configured it owns the shares of its treatment
/// and of the control (the control absorbs the difference); the other variants keep
/// their shares from `weight`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// The variant being rolled out (not the control).
    pub treatment: String,
    /// The treatment's share of units at each step, increasing, each in (0, 1].
    pub steps: Vec<f64>,
    /// The least time a step lasts before the next may start.
    #[serde(default = "defaults::step_min_s")]
    pub step_min_s: f64,
    /// The least units of each arm (treatment and control) exposed during a step before
    /// the next may start.
    #[serde(default = "defaults::step_min_units")]
    pub step_min_units: u64,
    /// What happens once the last step has lasted its time and units.
    #[serde(default)]
    pub on_last_step: OnLastStep,
    /// How often the guardrails are evaluated.
    #[serde(default = "defaults::evaluate_every_s")]
    pub evaluate_every_s: f64,
    #[serde(default)]
    pub guardrails: GuardrailsConfig,
    /// Who is told of each action (not part of the rollout's id: editing them does not
    /// restart the rollout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
}

/// What a rollout does after its last step.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnLastStep {
    /// Stay at the last step's share (the rollout is `done`).
    #[default]
    Hold,
    /// Give the treatment every unit once its verdict is a win, judged on the units first
    /// exposed during the last step.
    Promote,
}

/// When a rollout rolls back, treatment against control.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsConfig {
    /// Level of the error-rate confidence sequence.
    #[serde(default = "defaults::alpha")]
    pub alpha: f64,
    /// Tuning of the error-rate confidence sequence: the total units (both arms) at
    /// which it is tightest.
    #[serde(default = "defaults::guardrail_n_star")]
    pub n_star: f64,
    /// Roll back when the per-unit error rate is surely (lower end of the sequence) more
    /// than this much higher than the control's, as an absolute difference.
    #[serde(default = "defaults::max_error_rate_increase")]
    pub max_error_rate_increase: f64,
    /// Failed requests of the treatment before the error guardrail may fire.
    #[serde(default = "defaults::min_errors")]
    pub min_errors: u64,
    /// Roll back when the treatment's p99 latency exceeds this many times the control's
    /// (null: no latency guardrail).
    #[serde(default = "defaults::max_latency_p99_ratio")]
    pub max_latency_p99_ratio: Option<f64>,
    /// The window the latency p99s are taken over.
    #[serde(default = "defaults::latency_window_s")]
    pub latency_window_s: f64,
    /// Requests of each arm in the window before the latency guardrail is judged.
    #[serde(default = "defaults::latency_min_requests")]
    pub latency_min_requests: u64,
    /// Consecutive failing latency evaluations that roll back.
    #[serde(default = "defaults::failures_before_rollback")]
    pub failures_before_rollback: u32,
    /// Roll back when the decision rule's verdict for the treatment is roll back.
    #[serde(default = "defaults::enabled")]
    pub primary_metric: bool,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            alpha: defaults::alpha(),
            n_star: defaults::guardrail_n_star(),
            max_error_rate_increase: defaults::max_error_rate_increase(),
            min_errors: defaults::min_errors(),
            max_latency_p99_ratio: defaults::max_latency_p99_ratio(),
            latency_window_s: defaults::latency_window_s(),
            latency_min_requests: defaults::latency_min_requests(),
            failures_before_rollback: defaults::failures_before_rollback(),
            primary_metric: true,
        }
    }
}

/// A receiver of a rollout's actions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://…` or `https://…`; each action is POSTed as JSON.
    pub url: String,
    /// Which actions it is sent (default: all of them).
    #[serde(default = "defaults::webhook_events")]
    pub events: Vec<WebhookEvent>,
    /// The environment variable holding the HMAC-SHA256 key that signs each body (null:
    /// unsigned).
    #[serde(default)]
    pub secret_env: Option<String>,
}

/// The rollout actions a webhook can be sent.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    Step,
    Rollback,
    Promote,
    Paused,
}

/// What one randomization unit is.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// A person (or any id the caller sends): sticky across requests.
    #[default]
    User,
    /// Each request on its own; the unit id is cohort's own request id.
    Request,
}

/// A list that may also be written as its single element.
///
/// Deserialized by hand rather than `#[serde(untagged)]`, so that an error inside an element
/// keeps its own message and position instead of "did not match any variant".
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};

        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map or a list of maps")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(a)).map(OneOrMany::Many)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(a)).map(OneOrMany::One)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

/// Where a unit id is read from. Exactly one key per entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnitSourceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// What happens to a request that carries no unit id.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnMissingUnit {
    /// Serve control; the exposure is marked and excluded from analysis.
    #[default]
    Control,
    /// Mint an id, set it as the cookie source, return it in `x-cohort-unit`.
    Generate,
    /// Answer 400.
    Reject,
}

/// The cookie cohort sets with `on_missing_unit: generate`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    #[serde(default = "defaults::cookie_max_age_s")]
    pub max_age_s: u64,
    #[serde(default)]
    pub secure: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            max_age_s: defaults::cookie_max_age_s(),
            secure: false,
        }
    }
}

/// One model variant.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    /// Relative weight (≥ 0); shares are weight / sum of the experiment's weights.
    pub weight: f64,
    /// `http://host:port[/base]` or `https://…`.
    pub upstream: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// `upstream` (the upstream's authority), `preserve` (the client's), or a literal host.
    #[serde(default = "defaults::host_header")]
    pub host_header: String,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Layout key: the slice of the bucket space this treatment grows in (see README,
    /// "Assignment and safe ramps"). Not allowed on the control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<LaneConfig>,
}

/// Upstream protocol.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (gRPC needs it).
    H2c,
}

/// TLS settings of an https upstream.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of trusted CAs; null = system roots (`SSL_CERT_FILE` honoured).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A treatment's lane: `[start, start + max_weight)` of the bucket space, as shares.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    /// Where the lane begins, as a share of the bucket space (0 ≤ start < 1).
    pub start: f64,
    /// The lane's size: the largest share this treatment may ever have.
    pub max_weight: f64,
    /// Which edge of the lane the treatment grows from.
    #[serde(default)]
    pub from: LaneEdge,
}

pub use cohort_assign::layout::LaneEdge;

/// When the analysis may call a winner (used by the analysis; validated now).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DecisionConfig {
    #[serde(default)]
    pub method: DecisionMethod,
    #[serde(default = "defaults::alpha")]
    pub alpha: f64,
    #[serde(default = "defaults::power")]
    pub power: f64,
    /// Relative minimum detectable effect.
    #[serde(default = "defaults::mde")]
    pub mde: f64,
    /// null: estimated from the log, then frozen.
    #[serde(default)]
    pub baseline_rate: Option<f64>,
    #[serde(default = "defaults::min_units")]
    pub min_units: u64,
    #[serde(default = "defaults::min_conversions")]
    pub min_conversions: u64,
    /// null: 2 × required units per variant (5000 if unknown).
    #[serde(default)]
    pub sequential_n_star: Option<u64>,
    #[serde(default)]
    pub attribution_window_s: Option<f64>,
    /// How long after its first exposure a control unit's conversions are taken as all in,
    /// for the estimated baseline, when no attribution window is set (the window is the
    /// delay when it is). Counting units too young to have converted biases it low.
    #[serde(default = "defaults::conversion_delay_s")]
    pub conversion_delay_s: f64,
}

impl DecisionConfig {
    /// Seconds after exposure at which a unit counts toward the estimated baseline, and
    /// the key that set them.
    pub fn maturity_s(&self) -> (f64, &'static str) {
        match self.attribution_window_s {
            Some(w) => (w, "attribution_window_s"),
            None => (self.conversion_delay_s, "conversion_delay_s"),
        }
    }
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            method: DecisionMethod::default(),
            alpha: defaults::alpha(),
            power: defaults::power(),
            mde: defaults::mde(),
            baseline_rate: None,
            min_units: defaults::min_units(),
            min_conversions: defaults::min_conversions(),
            sequential_n_star: None,
            attribution_window_s: None,
            conversion_delay_s: defaults::conversion_delay_s(),
        }
    }
}

/// How significance is judged.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DecisionMethod {
    /// Always-valid (peeking-safe) inference.
    #[default]
    Sequential,
    /// A classical fixed-horizon test.
    Fixed,
}

/// Every default of the file, in one place (README's reference table mirrors this).
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::PathBuf;

    pub fn shadow_sample() -> f64 {
        0.1
    }
    pub fn shadow_max_inflight() -> u32 {
        64
    }
    pub fn shadow_max_body_bytes() -> usize {
        1 << 20
    }
    pub fn shadow_payload_bytes() -> usize {
        2048
    }
    pub fn shadow_max_diff_events_per_s() -> u32 {
        10
    }
    pub fn tolerance_absolute() -> f64 {
        1e-6
    }
    pub fn tolerance_relative() -> f64 {
        1e-6
    }
    pub fn monitor_sample() -> f64 {
        0.05
    }
    pub fn monitor_max_per_s() -> u32 {
        200
    }
    pub fn monitor_max_body_bytes() -> usize {
        65_536
    }
    pub fn monitor_window_s() -> u64 {
        1800
    }
    pub fn monitor_min_rows() -> u64 {
        300
    }
    pub fn monitor_ks_rows() -> usize {
        1024
    }
    pub fn monitor_reference_rows() -> usize {
        1000
    }
    pub fn psi_above() -> f64 {
        0.2
    }
    pub fn quality_threshold() -> f64 {
        0.5
    }
    pub fn quality_min_labels() -> u64 {
        30
    }

    pub fn listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080))
    }
    pub fn admin_listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 9901))
    }
    pub fn state_file() -> PathBuf {
        PathBuf::from("./data/state.json")
    }
    pub fn max_connections() -> u32 {
        10_000
    }
    pub fn header_read_timeout_ms() -> u64 {
        10_000
    }
    pub fn h2_idle_timeout_ms() -> u64 {
        60_000
    }
    pub fn h2_max_concurrent_streams() -> u32 {
        200
    }
    pub fn max_header_bytes() -> u32 {
        65_536
    }
    pub fn grace_ms() -> u64 {
        5_000
    }
    pub fn drain_timeout_ms() -> u64 {
        20_000
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn events_dir() -> PathBuf {
        PathBuf::from("./data/events")
    }
    pub fn fsync_interval_ms() -> u64 {
        1_000
    }
    pub fn segment_max_bytes() -> u64 {
        64 * 1024 * 1024
    }
    pub fn segment_max_age_s() -> f64 {
        3_600.0
    }
    pub fn channel_capacity() -> u32 {
        65_536
    }
    pub fn max_body_bytes() -> u64 {
        1024 * 1024
    }
    pub fn path_prefix() -> String {
        "/".to_owned()
    }
    pub fn connect_timeout_ms() -> u64 {
        1_000
    }
    pub fn timeout_ms() -> u64 {
        30_000
    }
    pub fn idle_timeout_ms() -> u64 {
        60_000
    }
    pub fn cookie_max_age_s() -> u64 {
        31_536_000
    }
    pub fn host_header() -> String {
        "upstream".to_owned()
    }
    pub fn alpha() -> f64 {
        0.05
    }
    pub fn power() -> f64 {
        0.8
    }
    pub fn mde() -> f64 {
        0.10
    }
    pub fn min_units() -> u64 {
        100
    }
    pub fn min_conversions() -> u64 {
        30
    }
    pub fn conversion_delay_s() -> f64 {
        86_400.0
    }
    pub fn ship_timeout_ms() -> u64 {
        10_000
    }
    pub fn clickhouse_database() -> String {
        "cohort".to_owned()
    }
    pub fn clickhouse_table() -> String {
        "events".to_owned()
    }
    pub fn clickhouse_user() -> String {
        "default".to_owned()
    }
    pub fn clickhouse_batch_max_events() -> u32 {
        10_000
    }
    pub fn clickhouse_flush_interval_ms() -> u64 {
        1000
    }
    pub fn clickhouse_timeout_ms() -> u64 {
        10_000
    }
    pub fn clickhouse_live_counts_s() -> f64 {
        30.0
    }
    pub fn clickhouse_live_refresh_s() -> f64 {
        300.0
    }
    pub fn clickhouse_live_max_age_s() -> f64 {
        30.0
    }
    pub fn step_min_s() -> f64 {
        600.0
    }
    pub fn step_min_units() -> u64 {
        200
    }
    pub fn evaluate_every_s() -> f64 {
        10.0
    }
    pub fn guardrail_n_star() -> f64 {
        5_000.0
    }
    pub fn max_error_rate_increase() -> f64 {
        0.005
    }
    pub fn min_errors() -> u64 {
        5
    }
    pub fn max_latency_p99_ratio() -> Option<f64> {
        Some(1.5)
    }
    pub fn latency_window_s() -> f64 {
        60.0
    }
    pub fn latency_min_requests() -> u64 {
        200
    }
    pub fn failures_before_rollback() -> u32 {
        3
    }
    pub fn webhook_events() -> Vec<super::WebhookEvent> {
        use super::WebhookEvent::*;
        vec![Step, Rollback, Promote, Paused]
    }
}

/// The YAML spelling of a config enum value (`UnitKind::User` → `user`), for messages.
pub fn yaml_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}
