//! The compiled routing table: what the hot path reads, immutable once built.
//!
//! A [`Routes`] is produced by `config::compile` from a validated file and never changes;
//! a reload builds a new one and swaps it in whole (the proxy keeps it in one `ArcSwap`).
//! Everything a request needs is resolved here once: routes in match order, header names
//! parsed, experiments referenced by index, salts hashed into seeds, shares turned into a
//! bucket layout. The data plane attaches its own per-variant handles (upstream clients,
//! metric handles) beside this table, indexed by the same `(experiment, variant)` indices,
//! when it compiles its serving state; nothing here does I/O.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};

use super::error::Problem;
use super::schema::{
    CookieConfig, DecisionConfig, FileConfig, MonitorConfig, OnMissingUnit, Protocol,
    RolloutConfig, ShadowConfig, UnitKind,
};
use cohort_assign::layout::{Lane, Layout};
use cohort_assign::unit::UnitSource;

/// A compiled config.
#[derive(Debug, Clone)]
pub struct Routes {
    /// The file it came from and the hash of its bytes.
    pub source: Source,
    /// Hash of the effective (defaults filled in) config: equal versions route identically.
    pub version: String,
    /// The version without the rollouts' steps: the hash of the effective config before
    /// rollout weights are laid over it, so that replicas at different steps of one
    /// rollout (for the moment it takes them to converge) are not told apart by it.
    pub base_version: String,
    /// The keys only a restart applies ([`crate::ProcessSettings`]).
    pub process: crate::ProcessSettings,
    /// The validated file, defaults filled in (listeners, limits, events …).
    pub file: FileConfig,
    /// Routes in match order: longest `path_prefix` first, then config order.
    pub routes: Vec<Route>,
    /// Experiments in config order; routes refer to them by index.
    pub experiments: Vec<Experiment>,
    /// Things that are allowed but probably not meant (printed by `cohort check`, logged on load).
    pub warnings: Vec<Problem>,
}

/// Where a config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    /// XXH3-64 of the file's bytes, hex.
    pub hash: String,
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    /// Lower-case host without port.
    pub host: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Index into [`Routes::experiments`].
    pub experiment: usize,
    pub strip_prefix: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub idle_timeout: Duration,
}

impl Route {
    /// Whether a request with this host (port allowed), path and headers matches.
    pub fn matches(&self, host: Option<&str>, path: &str, headers: &HeaderMap) -> bool {
        path_has_prefix(path, &self.path_prefix)
            && self.host.as_deref().is_none_or(|want| {
                host.map(strip_port)
                    .is_some_and(|h| h.eq_ignore_ascii_case(want))
            })
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get(name) == Some(value))
    }
}

/// Segment-aware prefix match: `/invocations` matches `/invocations` and `/invocations/x`,
/// not `/invocationsfoo`. A prefix ending in `/` matches everything below it.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// One compiled experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// `name` as a header value (`x-cohort-experiment`), made once here.
    pub name_value: HeaderValue,
    pub unit: UnitKind,
    /// Empty for `unit: request`.
    pub unit_from: Vec<UnitSource>,
    pub on_missing_unit: OnMissingUnit,
    /// The cookie `generate` sets: the first cookie source.
    pub generated_cookie: Option<String>,
    pub cookie: CookieConfig,
    pub salt: String,
    /// XXH3-64 of the salt: the hash seed of every unit's bucket.
    pub seed: u64,
    /// Index into `variants`.
    pub control: usize,
    pub allow_override: bool,
    pub allow_reshuffle: bool,
    /// In config order.
    pub variants: Vec<Variant>,
    /// Whether lanes came from `lane` keys (else from the name-ordered default).
    pub lanes_declared: bool,
    pub layout: Layout,
    pub decision: DecisionConfig,
    pub rollout: Option<Rollout>,
    /// Validated; the column names it gives are the payload's business.
    pub monitor: Option<MonitorConfig>,
    /// In config order.
    pub shadows: Vec<Shadow>,
}

/// A validated shadow: a model that gets copies of a sample of the experiment's requests.
#[derive(Debug, Clone)]
pub struct Shadow {
    pub name: String,
    pub upstream: Upstream,
    pub protocol: Protocol,
    pub host_header: HostHeader,
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// XXH3-64 of `shadow:<experiment>:<shadow>`: the seed of the unit's sampling hash.
    pub seed: u64,
    /// A unit is shadowed when its hash under `seed` is below this ([`Shadow::takes`]).
    pub threshold: u128,
    pub timeout: Duration,
    /// As written, defaults filled in (limits, logging, comparison).
    pub config: ShadowConfig,
}

impl Shadow {
    /// Whether `unit`'s requests are copied to this shadow: the same answer on every
    /// replica, whichever variant the unit is assigned.
    #[inline]
    pub fn takes(&self, unit: &str) -> bool {
        cohort_assign::hash::under_share(self.seed, unit, self.threshold)
    }
}

/// A validated rollout of one treatment.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Names the rollout in events, metrics and the report: XXH3-64 (hex) of the rollout
    /// block (defaults filled in, webhooks left out) and the experiment's salt, so that
    /// editing the block or the salt starts a new rollout and editing only its webhooks
    /// does not.
    pub id: String,
    /// Index into the experiment's variants.
    pub treatment: usize,
    pub config: RolloutConfig,
}

impl Rollout {
    /// The id of `config` in an experiment salted `salt`.
    pub fn id_of(config: &RolloutConfig, salt: &str) -> String {
        let mut block = config.clone();
        block.webhooks.clear();
        let mut bytes = serde_json::to_vec(&block).unwrap_or_default();
        bytes.push(0);
        bytes.extend_from_slice(salt.as_bytes());
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
    }
}

/// The weights, in percent of units, that give `treatment` the share `share` in `e`: the
/// other treatments keep their shares from the file's weights and the control takes the
/// rest. Rounded to 10⁻⁹ so that a step's weights are the same numbers every time.
pub fn rollout_weights(
    e: &crate::schema::ExperimentConfig,
    treatment: &str,
    share: f64,
) -> std::collections::BTreeMap<String, f64> {
    let round = |x: f64| (x * 1e9).round() / 1e9;
    let total: f64 = e.variants.iter().map(|v| v.weight).sum();
    let mut out = std::collections::BTreeMap::new();
    let mut others = 0.0;
    for v in &e.variants {
        if v.name != treatment && v.name != e.control {
            let w = if total > 0.0 {
                round(100.0 * v.weight / total)
            } else {
                0.0
            };
            others += w;
            out.insert(v.name.clone(), w);
        }
    }
    let t = round(100.0 * share);
    out.insert(treatment.to_owned(), t);
    out.insert(e.control.clone(), round((100.0 - t - others).max(0.0)));
    out
}

impl Experiment {
    /// The index of the variant called `name`.
    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }

    /// Whether a single variant serves every unit (a promotion).
    pub fn promoted(&self) -> Option<usize> {
        match self.layout.segments() {
            [only] => Some(only.variant),
            _ => None,
        }
    }
}

/// One compiled variant.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    /// `name` as a header value (`x-cohort-variant`), made once here.
    pub name_value: HeaderValue,
    pub weight: f64,
    /// weight / sum of weights.
    pub share: f64,
    /// Buckets it serves (of [`cohort_assign::BUCKETS`]).
    pub buckets: u32,
    /// The lane it grows in; None for the control.
    pub lane: Option<Lane>,
    pub upstream: Upstream,
    pub protocol: Protocol,
    pub host_header: HostHeader,
    pub tls_ca_file: Option<std::path::PathBuf>,
}

/// A parsed upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// As written in the file.
    pub url: String,
    pub scheme: Scheme,
    pub authority: Authority,
    /// `authority` as a `Host` header value, made once here.
    pub host_value: HeaderValue,
    /// Path prepended to every forwarded request's path ("" for none).
    pub base_path: String,
}

/// What `Host` the upstream sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    /// The upstream's own authority.
    Upstream,
    /// The client's `Host` / `:authority`.
    Preserve,
    /// A fixed value (KServe / Knative route on Host).
    Literal(HeaderValue),
}

impl Routes {
    /// The route a request takes, if any (first match in match order).
    pub fn match_route(
        &self,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(host, path, headers))
    }

    /// The experiment called `name`.
    pub fn experiment(&self, name: &str) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_respect_segments() {
        assert!(path_has_prefix("/invocations", "/invocations"));
        assert!(path_has_prefix("/invocations/x", "/invocations"));
        assert!(!path_has_prefix("/invocationsfoo", "/invocations"));
        assert!(path_has_prefix("/anything", "/"));
        assert!(path_has_prefix("/v1/models/x", "/v1/"));
        assert!(!path_has_prefix("/v2", "/v1/"));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
    }
}
