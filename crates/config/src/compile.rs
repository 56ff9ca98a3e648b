//! Validation and compilation: a parsed [`FileConfig`] becomes an immutable [`Routes`].
//!
//! Every check that spans more than one key lives here, and every problem it finds is
//! reported with the file, line, column and YAML path of the value at fault (positions
//! come from [`Positions`], a second, position-keeping parse of the same text). All
//! problems are collected before giving up, so one edit fixes them all.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};

use super::error::{ConfigError, Problem};
use super::positions::Positions;
use super::schema::{
    ExperimentConfig, FileConfig, MonitorConfig, RolloutConfig, UnitKind, UnitSourceConfig,
};
use super::schema::{Protocol, TlsConfig};
use super::table::{
    Experiment, HostHeader, Rollout, Route, Routes, Shadow, Source, Upstream, Variant,
};
use cohort_assign::hash::{salt_seed, shadow_seed, share_threshold, BUCKETS};
use cohort_assign::layout::{self, buckets_for_share, Lane, Layout, LayoutError, Placement};
use cohort_assign::unit::UnitSource;

/// Collects problems with their positions.
pub(crate) struct Checker<'a> {
    file: &'a str,
    positions: &'a Positions,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(file: &'a str, positions: &'a Positions) -> Self {
        Self {
            file,
            positions,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn problem(&self, path: &str, reason: String) -> Problem {
        Problem {
            file: self.file.to_owned(),
            position: self.positions.value(path),
            path: path.to_owned(),
            reason,
        }
    }

    fn error(&mut self, path: &str, reason: impl Into<String>) {
        let p = self.problem(path, reason.into());
        self.problems.push(p);
    }

    fn warn(&mut self, path: &str, reason: impl Into<String>) {
        let p = self.problem(path, reason.into());
        self.warnings.push(p);
    }

    /// `value` must be > 0.
    fn positive(&mut self, path: &str, value: u64) {
        if value == 0 {
            self.error(path, "must be greater than 0");
        }
    }

    fn name(&mut self, path: &str, what: &str, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            self.error(
                path,
                format!(
                    "{what} name {name:?} is not valid: use 1 to 64 of A-Z a-z 0-9 - _ . \
                     (it appears in headers, metric labels and request ids)"
                ),
            );
        }
    }

    /// `value` in `lo..=hi` (`unit`, e.g. " bytes", follows the bounds in the message).
    fn between(&mut self, path: &str, value: usize, lo: usize, hi: usize, unit: &str) {
        if !(lo..=hi).contains(&value) {
            self.error(
                path,
                format!("must be between {lo} and {hi}{unit} (got {value})"),
            );
        }
    }

    fn share_in(&mut self, path: &str, value: f64, lo: f64, hi: f64, lo_open: bool) {
        let ok = value.is_finite() && value <= hi && if lo_open { value > lo } else { value >= lo };
        if !ok {
            let open = if lo_open { "(" } else { "[" };
            self.error(path, format!("must be in {open}{lo}, {hi}] (got {value})"));
        }
    }
}

/// Validates and compiles a parsed file.
pub(crate) fn compile(
    file: FileConfig,
    source: Source,
    positions: &Positions,
) -> Result<Routes, ConfigError> {
    let mut c = Checker::new(&source.file, positions);
    check_settings(&mut c, &file);

    let mut experiments = Vec::with_capacity(file.experiments.len());
    let mut seen = BTreeMap::new();
    for (i, e) in file.experiments.iter().enumerate() {
        let path = format!("experiments[{i}]");
        c.name(&format!("{path}.name"), "experiment", &e.name);
        if let Some(first) = seen.insert(e.name.as_str(), i) {
            c.error(
                &format!("{path}.name"),
                format!(
                    "duplicate experiment name {:?} (also experiments[{first}])",
                    e.name
                ),
            );
        }
        if let Some(exp) = compile_experiment(&mut c, &path, e) {
            experiments.push(exp);
        }
    }

    let mut routes = Vec::with_capacity(file.routes.len());
    let mut route_names = BTreeMap::new();
    for (i, r) in file.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        c.name(&format!("{path}.name"), "route", &r.name);
        if let Some(first) = route_names.insert(r.name.as_str(), i) {
            c.error(
                &format!("{path}.name"),
                format!("duplicate route name {:?} (also routes[{first}])", r.name),
            );
        }
        let m = &r.matcher;
        if !m.path_prefix.starts_with('/') {
            c.error(
                &format!("{path}.match.path_prefix"),
                format!("must start with '/' (got {:?})", m.path_prefix),
            );
        }
        if let Some(h) = &m.host {
            if h.is_empty() || h.contains(['/', ' ', ':']) {
                c.error(
                    &format!("{path}.match.host"),
                    format!("{h:?} is not a host name (no scheme, port or path)"),
                );
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &m.headers {
            let hpath = format!("{path}.match.headers.{name}");
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                (Err(_), _) => c.error(&hpath, format!("{name:?} is not a valid header name")),
                (_, Err(_)) => c.error(&hpath, format!("{value:?} is not a valid header value")),
            }
        }
        for (key, v) in [
            ("connect_timeout_ms", r.connect_timeout_ms),
            ("timeout_ms", r.timeout_ms),
            ("idle_timeout_ms", r.idle_timeout_ms),
        ] {
            c.positive(&format!("{path}.{key}"), v);
        }
        let Some(experiment) = file.experiments.iter().position(|e| e.name == r.experiment) else {
            let known: Vec<&str> = file.experiments.iter().map(|e| e.name.as_str()).collect();
            c.error(
                &format!("{path}.experiment"),
                format!(
                    "no experiment named {:?} (experiments: {})",
                    r.experiment,
                    list(&known)
                ),
            );
            continue;
        };
        // An earlier route with the same prefix that asks no more (any host or the same,
        // a subset of the headers) takes every request this one would: it is dead.
        let shadow = file.routes[..i].iter().position(|o| {
            let (om, m) = (&o.matcher, &r.matcher);
            om.path_prefix == m.path_prefix
                && om
                    .host
                    .as_ref()
                    .is_none_or(|h| m.host.as_ref().is_some_and(|mh| mh.eq_ignore_ascii_case(h)))
                && om.headers.iter().all(|(k, v)| m.headers.get(k) == Some(v))
        });
        if let Some(j) = shadow {
            c.error(
                &format!("{path}.match"),
                format!(
                    "routes[{j}] ({:?}) comes first and matches every request this route \
                     matches: this route could never be chosen (put the more specific route first)",
                    file.routes[j].name
                ),
            );
        }
        routes.push(Route {
            name: r.name.clone(),
            path_prefix: m.path_prefix.clone(),
            host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
            headers,
            experiment,
            strip_prefix: r.strip_prefix,
            connect_timeout: Duration::from_millis(r.connect_timeout_ms),
            timeout: Duration::from_millis(r.timeout_ms),
            idle_timeout: Duration::from_millis(r.idle_timeout_ms),
        });
    }
    // Longest prefix first; the sort is stable, so config order breaks ties.
    routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));

    for (i, e) in file.experiments.iter().enumerate() {
        if !file.routes.iter().any(|r| r.experiment == e.name) {
            c.warn(
                &format!("experiments[{i}].name"),
                format!(
                    "experiment {:?} is not used by any route (only the admin API can assign it)",
                    e.name
                ),
            );
        }
    }
    if file.routes.is_empty() {
        c.warn("routes", "no routes: every request will get 404");
    }

    if !c.problems.is_empty() {
        let mut problems = std::mem::take(&mut c.problems);
        problems.sort_by_key(|p| p.position.map(|p| (p.line, p.column)));
        return Err(ConfigError { problems });
    }
    let warnings = std::mem::take(&mut c.warnings);
    let version = version_of(&file);
    Ok(Routes {
        base_version: version.clone(),
        source,
        version,
        process: crate::ProcessSettings::of(&file),
        file,
        routes,
        experiments,
        warnings,
    })
}

/// The smallest `events.segment_max_bytes`: below it the writer spends its time opening,
/// fsyncing and rotating files, and a backlog builds that a crash loses.
pub const MIN_SEGMENT_BYTES: u64 = 1 << 20;

/// The largest weight a variant may have: weights are relative, and a bound keeps their sum
/// finite (two weights of 1.7e308 would add up to infinity).
pub const MAX_WEIGHT: f64 = 1e12;

/// The hash of the effective config: two files that differ only in comments, layout or
/// spelled-out defaults have the same version.
pub fn version_of(file: &FileConfig) -> String {
    // Serializing plain data to JSON cannot fail; an empty string would still be a valid
    // (if uninformative) version, so no panic path is needed.
    let canonical = serde_json::to_vec(file).unwrap_or_default();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&canonical))
}

/// A header value for a validated name or authority (always visible ASCII; an impossible
/// failure degrades to an empty value rather than a panic).
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn check_settings(c: &mut Checker<'_>, f: &FileConfig) {
    let mut token_names = HashSet::new();
    for (i, t) in f.admin.tokens.iter().enumerate() {
        let path = format!("admin.tokens[{i}]");
        c.name(&format!("{path}.name"), "token", &t.name);
        if !token_names.insert(t.name.as_str()) {
            c.error(
                &format!("{path}.name"),
                format!("duplicate token name {:?}", t.name),
            );
        }
        let env_ok = !t.env.is_empty()
            && !t.env.starts_with(|ch: char| ch.is_ascii_digit())
            && t.env
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !env_ok {
            c.error(
                &format!("{path}.env"),
                format!(
                    "{:?} is not an environment variable name (the token's secret is read from it; \
                     never put the secret in this file)",
                    t.env
                ),
            );
        }
        if t.scopes.is_empty() {
            c.error(
                &format!("{path}.scopes"),
                "a token needs at least one scope: control, conversions",
            );
        }
    }
    let l = &f.limits;
    c.positive("limits.max_connections", l.max_connections.into());
    c.positive("limits.header_read_timeout_ms", l.header_read_timeout_ms);
    c.positive("limits.h2_idle_timeout_ms", l.h2_idle_timeout_ms);
    c.positive(
        "limits.h2_max_concurrent_streams",
        l.h2_max_concurrent_streams.into(),
    );
    if l.max_header_bytes < 1024 {
        c.error("limits.max_header_bytes", "must be at least 1024");
    }
    c.positive("events.fsync_interval_ms", f.events.fsync_interval_ms);
    if f.events.segment_max_bytes < MIN_SEGMENT_BYTES {
        c.error(
            "events.segment_max_bytes",
            format!(
                "must be at least {MIN_SEGMENT_BYTES} (1 MiB): smaller segments make the writer open, fsync and rotate files every few events, and a backlog builds that a crash loses"
            ),
        );
    }
    let age = f.events.segment_max_age_s;
    if !(age.is_finite() && age > 0.0) {
        c.error(
            "events.segment_max_age_s",
            format!("must be a positive number of seconds (got {age})"),
        );
    }
    c.positive("events.channel_capacity", f.events.channel_capacity.into());
    if let Some(ch) = &f.events.clickhouse {
        clickhouse(c, ch);
        if let Some(r) = f.events.retention_s {
            if !(r.is_finite() && r >= 0.0) {
                c.error(
                    "events.retention_s",
                    format!("must be a number of seconds, 0 or more (got {r})"),
                );
            }
        }
        if !f.events.enabled {
            c.error(
                "events.clickhouse",
                "needs events.enabled: true (the local log is what ships)",
            );
        }
        if let Some(max) = f.events.spool_max_bytes {
            if max < MIN_SEGMENT_BYTES {
                c.error(
                    "events.spool_max_bytes",
                    format!("must be at least {MIN_SEGMENT_BYTES} (1 MiB), or null for no bound (got {max})"),
                );
            }
        }
    } else if f.events.spool_max_bytes.is_some() {
        c.error(
            "events.spool_max_bytes",
            "bounds what waits to be shipped, so it needs events.clickhouse (without shipping nothing leaves the spool)",
        );
    }
    if let Some(p) = &f.conversions.public_path {
        if !p.starts_with('/') {
            c.error(
                "conversions.public_path",
                format!("must start with '/' (got {p:?})"),
            );
        }
    }
    c.positive("conversions.max_body_bytes", f.conversions.max_body_bytes);
}

fn compile_experiment(c: &mut Checker<'_>, path: &str, e: &ExperimentConfig) -> Option<Experiment> {
    let before = c.problems.len();

    // Unit sources.
    let mut unit_from = Vec::new();
    match (&e.unit, &e.unit_from) {
        (UnitKind::Request, Some(_)) => c.error(
            &format!("{path}.unit_from"),
            "unit_from has no effect with `unit: request` (the unit is cohort's own request id): remove it",
        ),
        (UnitKind::Request, None) => {}
        (UnitKind::User, None) => unit_from.push(UnitSource::Header(HeaderName::from_static(
            "x-user-id",
        ))),
        (UnitKind::User, Some(sources)) => {
            let single = matches!(sources, super::schema::OneOrMany::One(_));
            for (j, s) in sources.as_slice().iter().enumerate() {
                let spath = if single {
                    format!("{path}.unit_from")
                } else {
                    format!("{path}.unit_from[{j}]")
                };
                if let Some(src) = unit_source(c, &spath, s) {
                    unit_from.push(src);
                }
            }
            if sources.as_slice().is_empty() {
                c.error(
                    &format!("{path}.unit_from"),
                    "needs at least one source (header, cookie or query)",
                );
            }
        }
    }
    let generated_cookie = unit_from.iter().find_map(|s| match s {
        UnitSource::Cookie(name) => Some(name.clone()),
        _ => None,
    });
    if e.on_missing_unit == super::schema::OnMissingUnit::Generate {
        if e.unit == UnitKind::Request {
            c.error(
                &format!("{path}.on_missing_unit"),
                "`generate` needs `unit: user` (with `unit: request` every request has a unit)",
            );
        } else if generated_cookie.is_none() {
            c.error(
                &format!("{path}.on_missing_unit"),
                "`generate` needs a cookie source in unit_from (e.g. `- cookie: cohort_uid`) \
                 to carry the generated id on the next request",
            );
        }
    }

    let salt = e.salt.clone().unwrap_or_else(|| e.name.clone());
    if salt.is_empty() {
        c.error(&format!("{path}.salt"), "must not be empty");
    }

    // Variants.
    if e.variants.is_empty() {
        c.error(
            &format!("{path}.variants"),
            "an experiment needs at least one variant (its control)",
        );
        return None;
    }
    let mut names = BTreeMap::new();
    for (j, v) in e.variants.iter().enumerate() {
        let vpath = format!("{path}.variants[{j}]");
        c.name(&format!("{vpath}.name"), "variant", &v.name);
        if let Some(first) = names.insert(v.name.as_str(), j) {
            c.error(
                &format!("{vpath}.name"),
                format!(
                    "duplicate variant name {:?} (also {path}.variants[{first}])",
                    v.name
                ),
            );
        }
        if !v.weight.is_finite() || v.weight < 0.0 {
            c.error(
                &format!("{vpath}.weight"),
                format!("must be a number ≥ 0 (got {})", v.weight),
            );
        } else if v.weight > MAX_WEIGHT {
            c.error(
                &format!("{vpath}.weight"),
                format!(
                    "must be at most {MAX_WEIGHT} (got {}): weights are relative, e.g. 90 and 10",
                    v.weight
                ),
            );
        }
    }
    let control = e.variants.iter().position(|v| v.name == e.control);
    if control.is_none() {
        let known: Vec<&str> = e.variants.iter().map(|v| v.name.as_str()).collect();
        c.error(
            &format!("{path}.control"),
            format!(
                "control {:?} is not one of the variants ({})",
                e.control,
                list(&known)
            ),
        );
    }
    let total: f64 = e.variants.iter().map(|v| v.weight.max(0.0)).sum();
    if c.problems.len() == before && !(total > 0.0 && total.is_finite()) {
        c.error(
            &format!("{path}.variants"),
            "all weights are 0: at least one variant needs a weight > 0",
        );
    }
    let mut variants = Vec::with_capacity(e.variants.len());
    for (j, v) in e.variants.iter().enumerate() {
        let vpath = format!("{path}.variants[{j}]");
        let endpoint = endpoint(
            c,
            &vpath,
            &Endpoint {
                url: &v.upstream,
                protocol: v.protocol,
                host_header: &v.host_header,
                tls: &v.tls,
            },
        );
        let share = if total > 0.0 {
            v.weight.max(0.0) / total
        } else {
            0.0
        };
        let buckets = buckets_for_share(share);
        if Some(j) != control && v.weight > 0.0 && buckets == 0 {
            c.warn(
                &format!("{vpath}.weight"),
                format!(
                    "share {:.6}% is below one bucket (0.001%): {:?} gets no units",
                    share * 100.0,
                    v.name
                ),
            );
        }
        if let Some((upstream, host_header)) = endpoint {
            variants.push(Variant {
                name_value: header_value(&v.name),
                name: v.name.clone(),
                weight: v.weight,
                share,
                buckets,
                lane: None,
                upstream,
                protocol: v.protocol,
                host_header,
                tls_ca_file: v.tls.ca_file.clone(),
            });
        }
    }
    check_decision(c, path, e);
    let control = control?;
    if c.problems.len() != before {
        return None;
    }

    let lanes_declared = lanes(c, path, e, control, &mut variants)?;
    let placements: Vec<Placement> = variants
        .iter()
        .enumerate()
        .filter_map(|(j, v)| {
            v.lane.map(|lane| Placement {
                variant: j,
                lane,
                count: v.buckets,
            })
        })
        .collect();
    let layout = match Layout::build(control, &placements) {
        Ok(layout) => layout,
        Err(err) => {
            layout_problem(c, path, e, &variants, lanes_declared, err);
            return None;
        }
    };
    // The control serves what the treatments leave; record its real bucket count.
    let counts = layout.counts(variants.len());
    for (v, n) in variants.iter_mut().zip(counts) {
        v.buckets = n;
    }
    let rollout = match &e.rollout {
        Some(r) => Some(check_rollout(c, path, e, &variants, &salt, r)?),
        None => None,
    };
    let monitor = match &e.monitor {
        Some(m) => Some(check_monitor(c, path, m)?),
        None => None,
    };
    let shadows = check_shadows(c, path, e)?;
    Some(Experiment {
        name_value: header_value(&e.name),
        name: e.name.clone(),
        unit: e.unit,
        unit_from,
        on_missing_unit: e.on_missing_unit,
        generated_cookie,
        cookie: e.cookie.clone(),
        seed: salt_seed(&salt),
        salt,
        control,
        allow_override: e.allow_override,
        allow_reshuffle: e.allow_reshuffle,
        variants,
        lanes_declared,
        layout,
        decision: e.decision.clone(),
        rollout,
        monitor,
        shadows,
    })
}

/// The largest body a shadow copies: every copy in flight may hold its request and both
/// answers.
const SHADOW_MAX_BODY_BYTES: usize = 16 << 20;
/// The most a logged answer is cut to.
const SHADOW_MAX_PAYLOAD_BYTES: usize = 64 << 10;

/// Validates and compiles `experiments[i].shadow`.
fn check_shadows(c: &mut Checker<'_>, path: &str, e: &ExperimentConfig) -> Option<Vec<Shadow>> {
    let before = c.problems.len();
    let mut shadows = Vec::with_capacity(e.shadow.len());
    let mut names = BTreeMap::new();
    for (j, s) in e.shadow.iter().enumerate() {
        let spath = format!("{path}.shadow[{j}]");
        let p = |k: &str| format!("{spath}.{k}");
        c.name(&p("name"), "shadow", &s.name);
        if let Some(first) = names.insert(s.name.as_str(), j) {
            c.error(
                &p("name"),
                format!(
                    "duplicate shadow name {:?} (also {path}.shadow[{first}])",
                    s.name
                ),
            );
        }
        if e.variants.iter().any(|v| v.name == s.name) {
            c.error(
                &p("name"),
                format!(
                    "{:?} is also a variant's name: a shadow is not a variant, name it apart (e.g. {:?})",
                    s.name,
                    format!("{}-shadow", s.name)
                ),
            );
        }
        let endpoint = endpoint(
            c,
            &spath,
            &Endpoint {
                url: &s.upstream,
                protocol: s.protocol,
                host_header: &s.host_header,
                tls: &s.tls,
            },
        );
        c.share_in(&p("sample"), s.sample, 0.0, 1.0, true);
        c.positive(&p("max_inflight"), u64::from(s.max_inflight));
        c.between(
            &p("max_body_bytes"),
            s.max_body_bytes,
            1,
            SHADOW_MAX_BODY_BYTES,
            " bytes",
        );
        c.positive(&p("timeout_ms"), s.timeout_ms);
        c.between(
            &p("payload_bytes"),
            s.payload_bytes,
            1,
            SHADOW_MAX_PAYLOAD_BYTES,
            " bytes",
        );
        c.positive(
            &p("max_diff_events_per_s"),
            u64::from(s.max_diff_events_per_s),
        );
        if let Some(ptr) = &s.compare.pointer {
            if !(ptr.is_empty() || ptr.starts_with('/')) {
                c.error(
                    &p("compare.pointer"),
                    format!(
                        "a JSON pointer starts with \"/\" (got {ptr:?}), e.g. \"/outputs/0/data\""
                    ),
                );
            }
        }
        let t = &s.compare.tolerance;
        for (key, value) in [("absolute", t.absolute), ("relative", t.relative)] {
            if !(value.is_finite() && value >= 0.0) {
                c.error(
                    &p(&format!("compare.tolerance.{key}")),
                    format!("must be a number ≥ 0 (got {value})"),
                );
            }
        }
        if let Some((upstream, host_header)) = endpoint {
            shadows.push(Shadow {
                name: s.name.clone(),
                upstream,
                protocol: s.protocol,
                host_header,
                tls_ca_file: s.tls.ca_file.clone(),
                seed: shadow_seed(&e.name, &s.name),
                threshold: share_threshold(s.sample),
                timeout: Duration::from_millis(s.timeout_ms),
                config: s.clone(),
            });
        }
    }
    (c.problems.len() == before).then_some(shadows)
}

/// The largest body monitoring reads: bodies are copied while they stream, and a larger
/// limit would let one sampled call hold that much memory.
const MONITOR_MAX_BODY_BYTES: usize = 16 << 20;
/// The exact KS test costs the product of the two samples' sizes per column and window.
const MONITOR_MAX_KS_ROWS: usize = 4096;

/// Validates `experiments[i].monitor`.
fn check_monitor(c: &mut Checker<'_>, path: &str, m: &MonitorConfig) -> Option<MonitorConfig> {
    let before = c.problems.len();
    let p = |k: &str| format!("{path}.monitor.{k}");
    c.share_in(&p("sample"), m.sample, 0.0, 1.0, true);
    c.positive(&p("max_per_s"), u64::from(m.max_per_s));
    c.between(
        &p("max_body_bytes"),
        m.max_body_bytes,
        1,
        MONITOR_MAX_BODY_BYTES,
        " bytes",
    );
    if m.window_s < 60 {
        c.error(
            &p("window_s"),
            format!(
                "must be at least 60 seconds (got {}); 1800 is the usual half hour",
                m.window_s
            ),
        );
    }
    c.positive(&p("min_rows"), m.min_rows);
    c.between(&p("ks_rows"), m.ks_rows, 16, MONITOR_MAX_KS_ROWS, "");
    if m.reference_rows < 10 {
        c.error(
            &p("reference_rows"),
            format!("must be at least 10 rows (got {})", m.reference_rows),
        );
    }
    for (side, shape) in [("features", &m.features), ("prediction", &m.prediction)] {
        if let Some(ptr) = &shape.pointer {
            if !(ptr.is_empty() || ptr.starts_with('/')) {
                c.error(
                    &format!("{}.pointer", p(side)),
                    format!(
                        "a JSON pointer starts with \"/\" (got {ptr:?}), e.g. \"/payload/rows\""
                    ),
                );
            }
        }
    }
    if let Some(d) = &m.on_drift {
        let dp = |k: &str| format!("{}.{k}", p("on_drift"));
        if !(d.psi_above.is_finite() && d.psi_above > 0.0) {
            c.error(
                &dp("psi_above"),
                format!(
                    "must be a PSI greater than 0, e.g. 0.2 (got {})",
                    d.psi_above
                ),
            );
        }
        match d.webhook.url.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => c.error(
                &dp("webhook.url"),
                format!(
                    "{:?} is not an http(s) URL (expected e.g. \"https://airflow.example.com/api/v1/dags/retrain/dagRuns\")",
                    d.webhook.url
                ),
            ),
        }
        if d.webhook.secret_env.as_deref().is_some_and(str::is_empty) {
            c.error(
                &dp("webhook.secret_env"),
                "must name an environment variable, or be left out",
            );
        }
    }
    if let Some(q) = &m.quality {
        c.share_in(
            &format!("{}.threshold", p("quality")),
            q.threshold,
            0.0,
            1.0,
            true,
        );
        c.positive(&format!("{}.min_labels", p("quality")), q.min_labels);
    }
    if m.features.element.is_some() {
        c.error(
            &format!("{}.element", p("features")),
            "only a prediction has an element to pick (of a list of class probabilities)",
        );
    }
    (c.problems.len() == before).then(|| m.clone())
}

/// Validates `experiments[i].rollout` against its experiment (variants, lanes).
fn check_rollout(
    c: &mut Checker<'_>,
    path: &str,
    e: &ExperimentConfig,
    variants: &[Variant],
    salt: &str,
    r: &RolloutConfig,
) -> Option<Rollout> {
    let before = c.problems.len();
    let p = |k: &str| format!("{path}.rollout.{k}");
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    let treatment = variants.iter().position(|v| v.name == r.treatment);
    match treatment {
        None => c.error(
            &p("treatment"),
            format!(
                "treatment {:?} is not one of the variants ({})",
                r.treatment,
                list(&names)
            ),
        ),
        Some(_) if r.treatment == e.control => c.error(
            &p("treatment"),
            format!(
                "{:?} is the control: a rollout moves units from the control to a treatment",
                r.treatment
            ),
        ),
        Some(_) => {}
    }
    if r.steps.is_empty() {
        c.error(
            &p("steps"),
            "needs at least one step, e.g. [0.01, 0.05, 0.2, 0.5] (the treatment's share at each)",
        );
    }
    let total: f64 = e.variants.iter().map(|v| v.weight).sum();
    let others: f64 = e
        .variants
        .iter()
        .filter(|v| v.name != r.treatment && v.name != e.control)
        .map(|v| if total > 0.0 { v.weight / total } else { 0.0 })
        .sum();
    let cap = treatment
        .and_then(|t| variants[t].lane)
        .map(|l| f64::from(l.size) / f64::from(BUCKETS));
    let mut last = 0.0;
    for (k, &step) in r.steps.iter().enumerate() {
        let sp = format!("{}[{k}]", p("steps"));
        if !(step.is_finite() && step > 0.0 && step <= 1.0) {
            c.error(&sp, format!("must be a share in (0, 1] (got {step})"));
            continue;
        }
        if step <= last {
            c.error(
                &sp,
                format!("steps must increase: {step} does not exceed the step before ({last})"),
            );
        }
        last = step;
        if let Some(cap) = cap.filter(|&cap| step > cap + 1e-12) {
            c.error(
                &sp,
                format!(
                    "{step} is more than {:?}'s lane holds ({cap}): raise its lane.max_weight or lower the step",
                    r.treatment
                ),
            );
        } else if step + others > 1.0 + 1e-12 {
            c.error(
                &sp,
                format!(
                    "{step} and the other treatments' shares ({others}) leave the control less than nothing"
                ),
            );
        }
    }
    if !(r.step_min_s.is_finite() && r.step_min_s >= 0.0) {
        c.error(
            &p("step_min_s"),
            format!(
                "must be a number of seconds, 0 or more (got {})",
                r.step_min_s
            ),
        );
    }
    c.positive(&p("step_min_units"), r.step_min_units);
    if !(r.evaluate_every_s.is_finite() && r.evaluate_every_s >= 0.1) {
        c.error(
            &p("evaluate_every_s"),
            format!("must be at least 0.1 seconds (got {})", r.evaluate_every_s),
        );
    }
    let g = &r.guardrails;
    let gp = |k: &str| format!("{path}.rollout.guardrails.{k}");
    c.share_in(&gp("alpha"), g.alpha, 0.0, 0.5, true);
    if !(g.n_star.is_finite() && g.n_star > 0.0) {
        c.error(
            &gp("n_star"),
            format!("must be greater than 0 (got {})", g.n_star),
        );
    }
    if !(g.max_error_rate_increase.is_finite() && (0.0..1.0).contains(&g.max_error_rate_increase)) {
        c.error(
            &gp("max_error_rate_increase"),
            format!(
                "must be an absolute difference of error rates in [0, 1), e.g. 0.005 for half a percentage point (got {})",
                g.max_error_rate_increase
            ),
        );
    }
    if let Some(ratio) = g.max_latency_p99_ratio {
        if !(ratio.is_finite() && ratio >= 1.0) {
            c.error(
                &gp("max_latency_p99_ratio"),
                format!("must be a ratio of 1 or more, e.g. 1.5, or null (got {ratio})"),
            );
        }
    }
    if !(g.latency_window_s.is_finite() && g.latency_window_s >= 1.0) {
        c.error(
            &gp("latency_window_s"),
            format!("must be at least 1 second (got {})", g.latency_window_s),
        );
    }
    c.positive(&gp("latency_min_requests"), g.latency_min_requests);
    c.positive(
        &gp("failures_before_rollback"),
        u64::from(g.failures_before_rollback),
    );
    for (k, w) in r.webhooks.iter().enumerate() {
        let wp = format!("{}[{k}]", p("webhooks"));
        match w.url.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => c.error(
                &format!("{wp}.url"),
                format!("{:?} is not an http(s) URL (expected e.g. \"https://hooks.example.com/cohort\")", w.url),
            ),
        }
        if w.events.is_empty() {
            c.error(
                &format!("{wp}.events"),
                "names no action: leave it out for all of them (step, rollback, promote, paused)",
            );
        }
        if w.secret_env.as_deref().is_some_and(str::is_empty) {
            c.error(
                &format!("{wp}.secret_env"),
                "must name an environment variable, or be left out",
            );
        }
    }
    if c.problems.len() != before {
        return None;
    }
    Some(Rollout {
        id: Rollout::id_of(r, salt),
        treatment: treatment?,
        config: r.clone(),
    })
}

fn unit_source(c: &mut Checker<'_>, path: &str, s: &UnitSourceConfig) -> Option<UnitSource> {
    let given = [&s.header, &s.cookie, &s.query]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        c.error(
            path,
            "each unit_from entry names exactly one source: `header: NAME`, `cookie: NAME` or `query: NAME`",
        );
        return None;
    }
    if let Some(h) = &s.header {
        return match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(UnitSource::Header(name)),
            Err(_) => {
                c.error(
                    &format!("{path}.header"),
                    format!("{h:?} is not a valid header name"),
                );
                None
            }
        };
    }
    if let Some(name) = &s.cookie {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !ok {
            c.error(
                &format!("{path}.cookie"),
                format!("{name:?} is not a valid cookie name"),
            );
            return None;
        }
        return Some(UnitSource::Cookie(name.clone()));
    }
    let name = s.query.clone().unwrap_or_default();
    if name.is_empty() {
        c.error(&format!("{path}.query"), "must not be empty");
        return None;
    }
    Some(UnitSource::Query(name))
}

/// Where a variant or a shadow is called, as written.
struct Endpoint<'a> {
    url: &'a str,
    protocol: Protocol,
    host_header: &'a str,
    tls: &'a TlsConfig,
}

/// Validates a variant's or a shadow's upstream, protocol, `host_header` and TLS (at `vpath`).
fn endpoint(c: &mut Checker<'_>, vpath: &str, e: &Endpoint<'_>) -> Option<(Upstream, HostHeader)> {
    let upstream = upstream(c, vpath, e.url);
    let host_header = match e.host_header {
        "upstream" => Some(HostHeader::Upstream),
        "preserve" => Some(HostHeader::Preserve),
        literal => match HeaderValue::from_str(literal) {
            Ok(h) if !literal.is_empty() && !literal.contains(['/', ' ']) => {
                Some(HostHeader::Literal(h))
            }
            _ => {
                c.error(
                    &format!("{vpath}.host_header"),
                    format!("{literal:?} is neither `upstream`, `preserve` nor a host name"),
                );
                None
            }
        },
    };
    if e.tls.ca_file.is_some() && upstream.as_ref().is_some_and(|u| u.scheme != Scheme::HTTPS) {
        c.error(
            &format!("{vpath}.tls.ca_file"),
            "tls.ca_file is set but the upstream is not https://",
        );
    }
    if e.protocol == Protocol::H2c && upstream.as_ref().is_some_and(|u| u.scheme == Scheme::HTTPS) {
        c.error(
            &format!("{vpath}.protocol"),
            "h2c is cleartext HTTP/2; it cannot be used with an https:// upstream",
        );
    }
    upstream.zip(host_header)
}

fn upstream(c: &mut Checker<'_>, vpath: &str, url: &str) -> Option<Upstream> {
    let path = format!("{vpath}.upstream");
    let bad = |c: &mut Checker<'_>, why: &str| {
        c.error(
            &path,
            format!("{url:?} is not an http(s) URL{why} (expected e.g. \"http://127.0.0.1:5001\")"),
        );
        None
    };
    let Ok(uri) = url.parse::<Uri>() else {
        return bad(c, "");
    };
    let scheme = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
        Some(_) => return bad(c, ": the scheme must be http or https"),
        None => return bad(c, ": it has no scheme"),
    };
    let Some(authority) = uri.authority().cloned() else {
        return bad(c, ": it has no host");
    };
    if authority.host().is_empty() {
        return bad(c, ": it has no host");
    }
    if authority.as_str().contains('@') {
        return bad(c, ": credentials in the URL are not supported");
    }
    if uri.query().is_some() {
        return bad(c, ": a query string is not allowed");
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Some(Upstream {
        url: url.to_owned(),
        scheme,
        host_value: header_value(authority.as_str()),
        authority,
        base_path,
    })
}

fn check_decision(c: &mut Checker<'_>, path: &str, e: &ExperimentConfig) {
    let d = &e.decision;
    let p = |k: &str| format!("{path}.decision.{k}");
    c.share_in(&p("alpha"), d.alpha, 0.0, 0.5, true);
    if !(d.power.is_finite() && d.power > 0.0 && d.power < 1.0) {
        c.error(&p("power"), format!("must be in (0, 1) (got {})", d.power));
    }
    if !(d.mde.is_finite() && d.mde > 0.0) {
        c.error(
            &p("mde"),
            format!("must be a relative effect > 0, e.g. 0.10 (got {})", d.mde),
        );
    }
    if let Some(b) = d.baseline_rate {
        if !(b.is_finite() && b > 0.0 && b < 1.0) {
            c.error(
                &p("baseline_rate"),
                format!("must be in (0, 1) or null (got {b})"),
            );
        }
    }
    if d.sequential_n_star == Some(0) {
        c.error(&p("sequential_n_star"), "must be greater than 0, or null");
    }
    if let Some(w) = d.attribution_window_s {
        if !(w.is_finite() && w > 0.0) {
            c.error(
                &p("attribution_window_s"),
                format!("must be a positive number of seconds, or null (got {w})"),
            );
        }
    }
    if !(d.conversion_delay_s.is_finite() && d.conversion_delay_s >= 0.0) {
        c.error(
            &p("conversion_delay_s"),
            format!(
                "must be a number of seconds, 0 or more (got {})",
                d.conversion_delay_s
            ),
        );
    }
}

/// Gives every treatment its lane (declared or default). Returns whether lanes were declared.
fn lanes(
    c: &mut Checker<'_>,
    path: &str,
    e: &ExperimentConfig,
    control: usize,
    variants: &mut [Variant],
) -> Option<bool> {
    let declared = e.variants.iter().any(|v| v.lane.is_some());
    if !declared {
        // Default: treatments in name order, never YAML order.
        let mut treatments: Vec<usize> = (0..variants.len()).filter(|&j| j != control).collect();
        treatments.sort_by(|&a, &b| variants[a].name.cmp(&variants[b].name));
        for (lane, j) in layout::default_lanes(treatments.len())
            .into_iter()
            .zip(treatments)
        {
            variants[j].lane = Some(lane);
        }
        return Some(false);
    }
    let before = c.problems.len();
    for (j, v) in e.variants.iter().enumerate() {
        let vpath = format!("{path}.variants[{j}]");
        match (&v.lane, j == control) {
            (Some(_), true) => c.error(
                &format!("{vpath}.lane"),
                "the control has no lane: it serves every bucket the treatments' lanes leave",
            ),
            (None, false) => c.error(
                &vpath,
                format!(
                    "treatment {:?} has no `lane`: once one treatment declares a lane, every \
                     treatment must (e.g. `lane: {{start: 0.5, max_weight: 0.25}}`)",
                    v.name
                ),
            ),
            (None, true) => {}
            (Some(l), false) => {
                c.share_in(&format!("{vpath}.lane.start"), l.start, 0.0, 1.0, false);
                c.share_in(
                    &format!("{vpath}.lane.max_weight"),
                    l.max_weight,
                    0.0,
                    1.0,
                    true,
                );
                let end = l.start + l.max_weight;
                if end > 1.0 + 1e-9 {
                    c.error(
                        &format!("{vpath}.lane"),
                        format!(
                            "the lane ends past the bucket space: start {} + max_weight {} = {end} > 1",
                            l.start, l.max_weight
                        ),
                    );
                }
                let start = buckets_for_share(l.start);
                let end = buckets_for_share(end).min(BUCKETS);
                variants[j].lane = Some(Lane {
                    start,
                    size: end.saturating_sub(start),
                    from: l.from,
                });
            }
        }
    }
    (c.problems.len() == before).then_some(true)
}

fn layout_problem(
    c: &mut Checker<'_>,
    path: &str,
    e: &ExperimentConfig,
    variants: &[Variant],
    declared: bool,
    err: LayoutError,
) {
    let pct = |b: u32| format!("{:.3}%", f64::from(b) * 100.0 / f64::from(BUCKETS));
    let range = |l: &Lane| {
        format!(
            "[{}, {})",
            f64::from(l.start) / f64::from(BUCKETS),
            f64::from(l.end()) / f64::from(BUCKETS)
        )
    };
    let vpath = |j: usize| format!("{path}.variants[{j}]");
    let lane_of = |j: usize| {
        variants[j].lane.unwrap_or(Lane {
            start: 0,
            size: 0,
            from: Default::default(),
        })
    };
    match err {
        LayoutError::ExceedsLane {
            variant,
            count,
            size,
        } => {
            let how = if declared {
                format!(
                    "raise its lane.max_weight (now {}) if the space after its lane is free",
                    e.variants[variant]
                        .lane
                        .as_ref()
                        .map_or(0.0, |l| l.max_weight)
                )
            } else {
                let k = variants.len() - 1;
                format!(
                    "without `lane` keys, {k} treatments get equal lanes of 1/{k}; declare a \
                     `lane` on each treatment to give this one more room"
                )
            };
            c.error(
                &format!("{}.weight", vpath(variant)),
                format!(
                    "{:?} asks for {} of units but its lane holds at most {}: {how}",
                    variants[variant].name,
                    pct(count),
                    pct(size)
                ),
            );
        }
        LayoutError::LanesOverlap { a, b } => c.error(
            &format!("{}.lane", vpath(b)),
            format!(
                "lane {} overlaps the lane {} of {:?}: lanes must be disjoint, or the same \
                 range grown from opposite edges (`from: start` / `from: end`)",
                range(&lane_of(b)),
                range(&lane_of(a)),
                variants[a].name
            ),
        ),
        LayoutError::SharedLaneFull { a, b, size } => c.error(
            &format!("{}.weight", vpath(b)),
            format!(
                "{:?} and {:?} share the lane {} from opposite edges; together they ask for {} \
                 but it holds {}",
                variants[a].name,
                variants[b].name,
                range(&lane_of(b)),
                pct(variants[a].buckets + variants[b].buckets),
                pct(size)
            ),
        ),
        LayoutError::LaneCrowded { a, b } => c.error(
            &format!("{}.lane", vpath(b)),
            format!(
                "{:?} and {:?} grow from the same edge of the same lane: only two treatments \
                 can share a lane, one `from: start` and one `from: end`",
                variants[a].name, variants[b].name
            ),
        ),
    }
}

/// `events.clickhouse`.
fn clickhouse(c: &mut Checker<'_>, ch: &crate::schema::ClickHouseConfig) {
    let p = |k: &str| format!("events.clickhouse.{k}");
    match http::Uri::try_from(ch.url.as_str()) {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
            if u.query().is_some() || !matches!(u.path(), "" | "/") {
                c.error(
                    &p("url"),
                    format!("{:?}: give only scheme, host and port (e.g. \"http://clickhouse:8123\"); the database and table are keys of their own", ch.url),
                );
            }
        }
        _ => c.error(
            &p("url"),
            format!(
                "{:?} is not an http(s) URL of ClickHouse's HTTP interface (e.g. \"http://clickhouse:8123\")",
                ch.url
            ),
        ),
    }
    for (key, name) in [("database", &ch.database), ("table", &ch.table)] {
        let ok = name.len() <= 64
            && name.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !ok {
            c.error(
                &p(key),
                format!("{name:?}: 1–64 of A-Z a-z 0-9 _, not starting with a digit"),
            );
        }
    }
    if let Some(env) = &ch.password_env {
        let ok = !env.is_empty()
            && env
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !env.starts_with(|ch: char| ch.is_ascii_digit());
        if !ok {
            c.error(
                &p("password_env"),
                format!("{env:?} is not an environment variable name (e.g. CLICKHOUSE_PASSWORD)"),
            );
        }
    }
    if !(1..=1_000_000).contains(&ch.batch_max_events) {
        c.error(&p("batch_max_events"), "must be between 1 and 1000000");
    }
    if ch.flush_interval_ms < 10 {
        c.error(&p("flush_interval_ms"), "must be at least 10");
    }
    if ch.timeout_ms < 100 {
        c.error(&p("timeout_ms"), "must be at least 100");
    }
    if !(ch.live_refresh_s.is_finite() && ch.live_refresh_s >= 10.0) {
        c.error(
            &p("live_refresh_s"),
            format!("must be at least 10 seconds: each refresh pulls every unit of every experiment (got {})", ch.live_refresh_s),
        );
    }
    if !(ch.live_counts_s.is_finite() && ch.live_counts_s >= 1.0) {
        c.error(
            &p("live_counts_s"),
            format!("must be at least 1 second (got {})", ch.live_counts_s),
        );
    }
    if !(ch.live_max_age_s.is_finite() && ch.live_max_age_s >= 0.0) {
        c.error(
            &p("live_max_age_s"),
            format!(
                "must be a number of seconds, 0 or more (got {})",
                ch.live_max_age_s
            ),
        );
    }
}
