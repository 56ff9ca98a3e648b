//! The analysis where the data is: SQL does the heavy part over every replica's events
//! and brings back one row per unit, which becomes the same [`ExperimentTally`] the local
//! reader builds, so the statistics, the sample-ratio check, the frozen baseline and the
//! decision are the very code that reads JSONL directories.
//!
//! What the SQL does ([`crate::query`]), per experiment:
//! * the phases (salt, latest exposure, distinct units), so the phase is chosen by
//!   [`cohort_analysis::choose_phase`] exactly as for local logs, and only its units come
//!   back;
//! * per unit of that phase: the first exposure's time, variant and config version (ties
//!   broken by variant name, as the local fold does), the earliest exposure in another
//!   variant (a crossover), override and unit-less exposures left out;
//! * conversions deduplicated by `event_id` (delivery is at least once), joined to their
//!   unit and split into counted (at or after the first exposure, within the attribution
//!   window), too early and too late; the rest are unattributed.
//!
//! Memory in cohort grows with the units of the analysed phase (and their counted
//! conversions), never with events: rows are decoded as they stream in and only the
//! tally keeps them.

use std::time::Duration;

use cohort_analysis::tally::{unit_key, PendingConversion, UnitState, NEVER};
use cohort_analysis::{ConfigVersions, ExperimentTally, Version};
use cohort_rollout::tally::moments;
use cohort_rollout::{ArmStats, RolloutEvent};

use crate::client::{Client, Error};
use crate::query::{self, Scope};
use crate::rows::{Cursor, Rows};
use crate::schema::Tables;

/// Reads the fleet's events for reports.
pub struct Fleet {
    pub client: Client,
    pub tables: Tables,
    /// Bounds each query.
    pub timeout: Duration,
    /// Settings sent with each query (besides the ones the SQL needs).
    pub settings: Vec<(String, String)>,
}

/// One phase's summary.
struct PhaseRow {
    phase: String,
    last_ts: i64,
    units: u64,
}

/// One unit of the analysed phase.
struct UnitRow {
    unit: String,
    first: i64,
    variant: String,
    version: String,
    variants_seen: u64,
    second: i64,
    matched: u64,
    counted: Vec<(i64, f64)>,
    before: u64,
}

impl Fleet {
    fn settings(&self) -> Vec<(&str, String)> {
        let mut s: Vec<(&str, String)> = query::SETTINGS
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        s.extend(self.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
        s
    }

    /// Runs `sql` and decodes each row with `row`.
    async fn rows<T>(
        &self,
        sql: &str,
        row: impl Fn(&mut Cursor) -> Option<T>,
        mut sink: impl FnMut(T),
    ) -> Result<(), Error> {
        let mut rows = Rows::default();
        let settings = self.settings();
        self.client
            .select(sql, &settings, self.timeout, |chunk| {
                rows.feed(chunk, &row, &mut sink);
                Ok(())
            })
            .await?;
        rows.finish().map_err(Error::Transport)
    }

    /// Experiments with exposures or conversions in `scope`'s time range, by name.
    pub async fn experiments(&self, scope: &Scope) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let sql = query::experiments(&self.tables, scope);
        self.rows(&sql, |c| c.string(), |e| out.push(e)).await?;
        out.sort();
        Ok(out)
    }

    /// The tally of `experiment` (None: no events of it in range): every phase's summary
    /// and the units of the one analysed (`salt`'s when it has exposures, else the
    /// latest), conversions joined within `window_s`.
    pub async fn tally(
        &self,
        experiment: &str,
        scope: &Scope,
        salt: Option<&str>,
        window_s: Option<f64>,
    ) -> Result<Option<ExperimentTally>, Error> {
        let t = &self.tables;
        let mut phases = Vec::new();
        self.rows(
            &query::phases(t, experiment, scope),
            |c| {
                Some(PhaseRow {
                    phase: c.string()?,
                    last_ts: c.i64()?,
                    units: c.u64()?,
                })
            },
            |p| phases.push(p),
        )
        .await?;
        let mut variants = Vec::new();
        self.rows(
            &query::variants(t, experiment, scope),
            |c| c.string(),
            |v| variants.push(v),
        )
        .await?;
        let (mut excluded, mut conversions) = (0, 0);
        self.rows(
            &query::excluded(t, experiment, scope),
            |c| c.u64(),
            |n| excluded = n,
        )
        .await?;
        self.rows(
            &query::conversions_total(t, experiment, scope),
            |c| c.u64(),
            |n| conversions = n,
        )
        .await?;
        if phases.is_empty() && excluded == 0 && conversions == 0 {
            return Ok(None);
        }
        let mut tally = ExperimentTally {
            excluded_exposures: excluded,
            ..ExperimentTally::default()
        };
        for v in &variants {
            tally.variant(v);
        }
        let chosen = cohort_analysis::choose_phase(
            salt,
            phases.iter().map(|p| (p.phase.as_str(), p.last_ts)),
        );
        for p in phases.iter().filter(|p| Some(&p.phase) != chosen.as_ref()) {
            tally.other_phase_units += p.units;
        }
        let mut matched = 0u64;
        if let Some(phase) = &chosen {
            let window_ns = window_s.map_or(i64::MAX, |s| (s * 1e9) as i64);
            let sql = query::units(t, experiment, scope, phase, window_ns);
            let mut add = |u: UnitRow| {
                let key = unit_key(&u.unit);
                let variant = tally.variant(&u.variant);
                let version = tally.version((!u.version.is_empty()).then_some(&u.version));
                let other = if u.variants_seen > 1 { u.second } else { NEVER };
                tally.insert(
                    phase,
                    key,
                    UnitState {
                        first: u.first,
                        other,
                        variant,
                        version,
                    },
                );
                matched += u.matched;
                let counted = u.counted.len() as u64;
                tally.left_out.before_exposure += u.before;
                tally.left_out.outside_window += u.matched - u.before - counted;
                tally
                    .conversions
                    .extend(u.counted.into_iter().map(|(ts, value)| PendingConversion {
                        unit: key,
                        ts,
                        value,
                    }));
            };
            self.rows(&sql, unit_row, &mut add).await?;
            if let (Some(p), Some(summary)) = (
                tally.phases.get_mut(phase.as_str()),
                phases.iter().find(|p| &p.phase == phase),
            ) {
                p.last_ts = summary.last_ts;
            }
        }
        tally.left_out.unattributed = conversions.saturating_sub(matched);
        Ok(Some(tally))
    }

    /// Per variant of `experiment`'s analysed phase (as [`Self::tally`] chooses it), its
    /// counted units and those converted within `window_s`: (variant, units, converted),
    /// by name. A handful of rows, whatever the number of units.
    pub async fn variant_counts(
        &self,
        experiment: &str,
        salt: Option<&str>,
        window_s: Option<f64>,
    ) -> Result<Vec<(String, u64, u64)>, Error> {
        let scope = Scope::default();
        let mut phases = Vec::new();
        self.rows(
            &query::phases(&self.tables, experiment, &scope),
            |c| Some((c.string()?, c.i64()?, c.u64()?)),
            |p| phases.push(p),
        )
        .await?;
        let chosen =
            cohort_analysis::choose_phase(salt, phases.iter().map(|p| (p.0.as_str(), p.1)));
        let mut out = Vec::new();
        if let Some(phase) = chosen {
            let window_ns = window_s.map_or(i64::MAX, |s| (s * 1e9) as i64);
            self.rows(
                &query::variant_counts(&self.tables, experiment, &scope, &phase, window_ns),
                |c| Some((c.string()?, c.u64()?, c.u64()?)),
                |r| out.push(r),
            )
            .await?;
        }
        Ok(out)
    }

    /// Model monitoring's labelled predictions of `experiment`'s `phase`, every replica's,
    /// labelled by every replica's conversions: (variant, score, label), the latest `limit`
    /// per variant whose `window_s` has closed by `now_ns` ([`query::quality_pairs`]).
    pub async fn quality_pairs(
        &self,
        experiment: &str,
        phase: &str,
        window_s: f64,
        now_ns: i64,
        limit: usize,
    ) -> Result<Vec<(String, f64, bool)>, Error> {
        let window_ns = (window_s * 1e9) as i64;
        let mut out = Vec::new();
        self.rows(
            &query::quality_pairs(
                &self.tables,
                experiment,
                phase,
                window_ns,
                now_ns.saturating_sub(window_ns),
                limit,
            ),
            |c| Some((c.string()?, c.f64()?, c.u64()? == 1)),
            |r| out.push(r),
        )
        .await?;
        Ok(out)
    }

    /// Every replica's lines of type `kind` (`monitor`, `shadow`) of `experiment`, each as
    /// written.
    pub async fn typed_lines(&self, kind: &str, experiment: &str) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        self.rows(
            &query::typed_lines(&self.tables, kind, experiment),
            |c| c.bytes().map(<[u8]>::to_vec),
            |l| out.push(l),
        )
        .await?;
        Ok(out)
    }

    /// Every replica's recorded actions of `experiment`'s rollouts (lines that do not
    /// parse are skipped: the fold needs only the ones that do).
    pub async fn rollout_events(&self, experiment: &str) -> Result<Vec<RolloutEvent>, Error> {
        let mut out = Vec::new();
        self.rows(
            &query::rollouts(&self.tables, experiment),
            |c| {
                c.bytes()
                    .map(|b| serde_json::from_slice::<RolloutEvent>(b).ok())
            },
            |e| out.extend(e),
        )
        .await?;
        Ok(out)
    }

    /// The fleet's guardrail tallies of `arms` (`[control, treatment]`): exposures from
    /// `attempt_ns` on, units seen since `step_ns`, the latency window ending at `now_ns`
    /// of `window_s` whole seconds, as the replica's own tally ([`Guardrails`]) keeps them.
    ///
    /// [`Guardrails`]: cohort_rollout::Guardrails
    pub async fn guardrail_arms(
        &self,
        arms: &query::Arms<'_>,
        attempt_ns: i64,
        step_ns: i64,
        now_ns: i64,
        window_s: f64,
    ) -> Result<[ArmStats; 2], Error> {
        let mut out = [ArmStats::default(), ArmStats::default()];
        let index = |v: &str| (v == arms.treatment) as usize;
        let mut units = Vec::new();
        self.rows(
            &query::guardrail_units(&self.tables, arms, attempt_ns, step_ns),
            |c| {
                Some((
                    c.string()?,
                    c.u64()?,
                    c.f64()?,
                    c.f64()?,
                    c.u64()?,
                    c.u64()?,
                    c.u64()?,
                ))
            },
            |r| units.push(r),
        )
        .await?;
        for (variant, n, sum, sum_sq, requests, failures, step_units) in units {
            let a = &mut out[index(&variant)];
            a.units = n;
            a.error_rates = moments(n, sum, sum_sq);
            a.requests = requests;
            a.failures = failures;
            a.step_units = step_units;
        }
        // The seconds `now - span + 1 ..= now`, as the replica's window counts them.
        let span = window_s.ceil().max(1.0) as i64;
        let now_sec = now_ns.div_euclid(1_000_000_000);
        let (from, to) = (
            (now_sec - span + 1) * 1_000_000_000 - 1,
            (now_sec + 1) * 1_000_000_000 - 1,
        );
        let mut latency = Vec::new();
        self.rows(
            &query::guardrail_latency(&self.tables, arms, from, to),
            |c| Some((c.string()?, c.u64()?, c.f64()?)),
            |r| latency.push(r),
        )
        .await?;
        for (variant, n, p99) in latency {
            let a = &mut out[index(&variant)];
            a.window_requests = n;
            a.p99_ms = (n > 0).then_some(p99);
        }
        Ok(out)
    }

    /// The shares history (`config-versions.jsonl` of every replica), one entry per line
    /// a replica wrote, as reading the replicas' directories gives.
    pub async fn versions(&self) -> Result<ConfigVersions, Error> {
        let mut lines: Vec<((String, i64, String), Version)> = Vec::new();
        self.rows(
            &query::versions(&self.tables),
            |c| {
                Some((
                    c.string()?,
                    c.i64()?,
                    c.string()?,
                    c.string()?,
                    c.string()?,
                    c.f64()?,
                ))
            },
            |(replica, ts, version, experiment, variant, share)| {
                let key = (replica, ts, version.clone());
                // The answer is sorted by line, so a line's rows are adjacent.
                if lines.last().map(|l| &l.0) != Some(&key) {
                    lines.push((
                        key,
                        Version {
                            ts,
                            version,
                            shares: Default::default(),
                        },
                    ));
                }
                if let Some((_, v)) = lines.last_mut() {
                    v.shares
                        .entry(experiment)
                        .or_default()
                        .insert(variant, share);
                }
            },
        )
        .await?;
        let mut out = ConfigVersions::default();
        out.extend(lines.into_iter().map(|l| l.1));
        Ok(out)
    }
}

fn unit_row(c: &mut Cursor) -> Option<UnitRow> {
    let unit = c.string()?;
    let first = c.i64()?;
    let variant = c.string()?;
    let version = c.string()?;
    let variants_seen = c.u64()?;
    let second = c.i64()?;
    let matched = c.u64()?;
    let n = c.varint()?;
    let mut counted = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        counted.push((c.i64()?, c.f64()?));
    }
    let before = c.u64()?;
    Some(UnitRow {
        unit,
        first,
        variant,
        version,
        variants_seen,
        second,
        matched,
        counted,
        before,
    })
}
