//! The shipper: the local segment log is the write-ahead spool, and this reads its
//! complete lines in order and inserts them into the store in batches, off the serving
//! threads. The request path does not change.
//!
//! Invariants:
//! * **At least once.** The cursor (segment and byte offset of the last shipped line, and
//!   the offset in `config-versions.jsonl`) is saved only after the store has taken the
//!   batch: a crash or a failed insert ships the batch again. Readers deduplicate where it
//!   matters (conversions, by `event_id`).
//! * **A bad line never blocks the ones after it.** A line that can never be a row goes to
//!   the dead-letter file (`clickhouse.dead-letter.jsonl` in the spool, the line and why),
//!   counted, and the cursor moves past it.
//! * **Never a hot loop.** A failed insert is retried after a delay that doubles up to
//!   [`MAX_BACKOFF`]; a refusal that retrying cannot fix is logged once per message.
//! * **Only complete lines.** The writer may be halfway through a line at the end of the
//!   newest segment; the shipper stops at the last newline.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cohort_events::SpoolBound;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::client::{Client, Error};
use crate::rowbinary::{encode_event, encode_rollout, encode_versions, LineError};
use crate::schema::{Tables, EVENT_COLUMNS, ROLLOUT_COLUMNS, VERSION_COLUMNS};

/// The longest wait between two attempts after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most bytes read from the spool for one batch.
const MAX_BATCH_BYTES: u64 = 16 << 20;
/// The cursor file, in the spool.
pub const CURSOR_FILE: &str = "clickhouse.cursor";
/// The dead-letter file and the shares history, in the spool.
pub use cohort_events::reader::{DEAD_LETTER_FILE, ROLLOUTS_FILE, VERSIONS_FILE};

/// Where shipping has got to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// File name of the segment being shipped (empty: none yet).
    pub segment: String,
    /// Bytes of it shipped (always at a line's end).
    pub offset: u64,
    /// Bytes of `config-versions.jsonl` shipped.
    pub versions_offset: u64,
    /// Bytes of `rollouts.jsonl` shipped.
    #[serde(default)]
    pub rollouts_offset: u64,
}

impl Cursor {
    /// The saved cursor of `spool` (none yet: the start).
    pub fn load(spool: &Path) -> std::io::Result<Cursor> {
        match std::fs::read(spool.join(CURSOR_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", spool.join(CURSOR_FILE).display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves it durably: a temporary file, fsync, rename over the old one, fsync the
    /// directory. A crash leaves the old cursor or the new one, never a torn one.
    pub fn save(&self, spool: &Path) -> std::io::Result<()> {
        let tmp = spool.join(format!("{CURSOR_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, spool.join(CURSOR_FILE))?;
        std::fs::File::open(spool)?.sync_all()
    }
}

/// The shipper's metrics (registered by the caller).
#[derive(Clone)]
pub struct ShipMetrics {
    /// `cohort_clickhouse_events_total{result}`: shipped, failed, dead_letter.
    pub events: IntCounterVec,
    /// `cohort_clickhouse_backlog_bytes`: spool bytes not shipped yet.
    pub backlog: IntGauge,
    /// `cohort_clickhouse_lag_seconds`: age of the oldest event not shipped yet (0 when
    /// caught up).
    pub lag: Gauge,
    /// `cohort_clickhouse_errors_total{kind}`: connect, timeout, transport, server,
    /// rejected, spool.
    pub errors: IntCounterVec,
}

impl ShipMetrics {
    pub fn new() -> Self {
        let events = IntCounterVec::new(
            Opts::new(
                "cohort_clickhouse_events_total",
                "Event lines by what shipping did with them: shipped, failed (an insert that will be retried), dead_letter.",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ["shipped", "failed", "dead_letter"] {
            events.with_label_values(&[r]);
        }
        let errors = IntCounterVec::new(
            Opts::new(
                "cohort_clickhouse_errors_total",
                "Failed requests to ClickHouse and spool errors, by kind: connect, timeout, transport, server, rejected, spool.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for k in [
            "connect",
            "timeout",
            "transport",
            "server",
            "rejected",
            "spool",
        ] {
            errors.with_label_values(&[k]);
        }
        ShipMetrics {
            events,
            backlog: IntGauge::new(
                "cohort_clickhouse_backlog_bytes",
                "Bytes of the local event log not shipped to ClickHouse yet.",
            )
            .expect("valid metric"),
            lag: Gauge::new(
                "cohort_clickhouse_lag_seconds",
                "Age of the oldest event not shipped to ClickHouse yet (0 when caught up).",
            )
            .expect("valid metric"),
            errors,
        }
    }

    /// The collectors, for a registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.events.clone()),
            Box::new(self.backlog.clone()),
            Box::new(self.lag.clone()),
            Box::new(self.errors.clone()),
        ]
    }
}

impl Default for ShipMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The history files shipped beside the segments.
#[derive(Debug, Clone, Copy)]
enum History {
    Versions,
    Rollouts,
}

/// What one round shipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub shipped: u64,
    pub dead_letter: u64,
    pub versions: u64,
    /// Rollout actions shipped.
    pub rollouts: u64,
}

/// A batch read from the spool, not shipped yet.
struct Batch {
    rows: Vec<u8>,
    count: u64,
    /// (line, why) of the lines that can never be rows.
    dead: Vec<(Vec<u8>, LineError)>,
    /// The cursor once the batch is in.
    next: Cursor,
    /// `ts_ns` of its first event, for the lag.
    first_ts_ns: Option<i64>,
}

/// Ships one spool to one store.
pub struct Shipper {
    spool: PathBuf,
    client: Client,
    tables: Tables,
    replica: String,
    batch_max_events: usize,
    metrics: ShipMetrics,
    cursor: Cursor,
    /// How long a shipped segment is kept (None: forever).
    retention: Option<Duration>,
    /// `events.spool_max_bytes`, told the backlog after every round.
    bound: Option<Arc<SpoolBound>>,
}

impl Shipper {
    /// A shipper of `spool` (the `events.dir`) as `replica`, resuming from the saved
    /// cursor.
    pub fn new(
        spool: &Path,
        client: Client,
        tables: Tables,
        replica: &str,
        batch_max_events: usize,
        metrics: ShipMetrics,
    ) -> std::io::Result<Shipper> {
        Ok(Shipper {
            cursor: Cursor::load(spool)?,
            spool: spool.to_path_buf(),
            client,
            tables,
            replica: replica.to_owned(),
            batch_max_events: batch_max_events.max(1),
            metrics,
            retention: None,
            bound: None,
        })
    }

    /// Deletes shipped segments once they are `retention` old (by their last write).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Tells `bound` the backlog (now, and after every round).
    pub fn with_bound(mut self, bound: Option<Arc<SpoolBound>>) -> Self {
        self.bound = bound;
        self.update_backlog();
        self
    }

    /// Where shipping has got to.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// Ships the shares history and then at most one batch of events; Ok(Round) with
    /// what it shipped (nothing: caught up). On an error nothing moves.
    pub async fn round(&mut self) -> Result<Round, Error> {
        let result = self.try_round().await;
        if result.is_err() {
            // What waits grows while nothing ships: the gauge and the bound must see it.
            self.update_backlog();
        }
        result
    }

    async fn try_round(&mut self) -> Result<Round, Error> {
        let mut round = Round {
            versions: self.ship_history(History::Versions).await?,
            rollouts: self.ship_history(History::Rollouts).await?,
            ..Round::default()
        };
        let batch = match self.read_batch() {
            Ok(b) => b,
            Err(e) => {
                self.metrics.errors.with_label_values(&["spool"]).inc();
                warn!(error = %e, spool = %self.spool.display(), "cannot read the event spool");
                return Ok(round);
            }
        };
        let Some(batch) = batch else {
            self.metrics.lag.set(0.0);
            self.prune();
            self.update_backlog();
            return Ok(round);
        };
        if let Some(ts) = batch.first_ts_ns {
            let now = cohort_events::clock::unix_seconds(std::time::SystemTime::now());
            self.metrics.lag.set((now - ts as f64 / 1e9).max(0.0));
        }
        if batch.count > 0 {
            let columns: Vec<&str> = EVENT_COLUMNS.iter().map(|c| c.0).collect();
            if let Err(e) = self
                .client
                .insert(&self.tables.events(), &columns, Bytes::from(batch.rows))
                .await
            {
                self.metrics
                    .events
                    .with_label_values(&["failed"])
                    .inc_by(batch.count);
                return Err(e);
            }
        }
        if !batch.dead.is_empty() {
            if let Err(e) = self.dead_letter(&batch.dead) {
                self.metrics.errors.with_label_values(&["spool"]).inc();
                warn!(error = %e, "cannot write the dead-letter file; the batch will be shipped again");
                return Ok(round);
            }
        }
        if let Err(e) = batch.next.save(&self.spool) {
            // The store has the batch; without the cursor it is shipped again (duplicates
            // that readers remove), which is better than skipping.
            self.metrics.errors.with_label_values(&["spool"]).inc();
            warn!(error = %e, "cannot save the shipping cursor");
        }
        self.cursor = batch.next;
        self.prune();
        round.shipped = batch.count;
        round.dead_letter = batch.dead.len() as u64;
        self.metrics
            .events
            .with_label_values(&["shipped"])
            .inc_by(batch.count);
        self.metrics
            .events
            .with_label_values(&["dead_letter"])
            .inc_by(round.dead_letter);
        self.update_backlog();
        Ok(round)
    }

    /// Ships whatever a history file (`config-versions.jsonl`, `rollouts.jsonl`) has
    /// beyond its cursor; a line that is not what the file holds is skipped with a warning.
    async fn ship_history(&mut self, h: History) -> Result<u64, Error> {
        let (file, offset) = match h {
            History::Versions => (VERSIONS_FILE, self.cursor.versions_offset),
            History::Rollouts => (ROLLOUTS_FILE, self.cursor.rollouts_offset),
        };
        let Ok((bytes, end)) = read_complete(&self.spool.join(file), offset, MAX_BATCH_BYTES)
        else {
            return Ok(0);
        };
        if end == offset {
            return Ok(0);
        }
        let mut rows = Vec::new();
        let mut n = 0;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let encoded = match h {
                History::Versions => encode_versions(line, &self.replica, &mut rows),
                History::Rollouts => encode_rollout(line, &self.replica, &mut rows),
            };
            match encoded {
                Ok(k) => n += k as u64,
                Err(e) => {
                    warn!(error = %e, file, "skipping a line that is not one of the file's records")
                }
            }
        }
        if n > 0 {
            let (table, columns) = match h {
                History::Versions => (self.tables.versions(), &VERSION_COLUMNS[..]),
                History::Rollouts => (self.tables.rollouts(), &ROLLOUT_COLUMNS[..]),
            };
            let columns: Vec<&str> = columns.iter().map(|c| c.0).collect();
            self.client
                .insert(&table, &columns, Bytes::from(rows))
                .await?;
        }
        let mut next = self.cursor.clone();
        match h {
            History::Versions => next.versions_offset = end,
            History::Rollouts => next.rollouts_offset = end,
        }
        if let Err(e) = next.save(&self.spool) {
            warn!(error = %e, "cannot save the shipping cursor");
        }
        self.cursor = next;
        Ok(n)
    }

    /// The next batch of complete lines from the cursor on; None when there is none.
    fn read_batch(&self) -> std::io::Result<Option<Batch>> {
        let segments = cohort_events::reader::segments(&self.spool)?;
        let name = |p: &PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned()
        };
        // The cursor's segment, or the first after it (a shipped segment may be gone).
        let mut at = segments
            .iter()
            .position(|p| name(p) >= self.cursor.segment)
            .map(|i| {
                (
                    i,
                    if name(&segments[i]) == self.cursor.segment {
                        self.cursor.offset
                    } else {
                        0
                    },
                )
            });
        while let Some((i, offset)) = at {
            let path = &segments[i];
            let (bytes, end) = read_complete(path, offset, MAX_BATCH_BYTES)?;
            if end == offset {
                // Nothing complete beyond the cursor here: the next segment, if any.
                at = (i + 1 < segments.len()).then_some((i + 1, 0));
                continue;
            }
            let segment = name(path);
            let mut batch = Batch {
                rows: Vec::new(),
                count: 0,
                dead: Vec::new(),
                next: Cursor {
                    segment: segment.clone(),
                    offset,
                    ..self.cursor.clone()
                },
                first_ts_ns: None,
            };
            let mut pos = offset;
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                let start = pos;
                pos += line.len() as u64;
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                if !text.iter().all(u8::is_ascii_whitespace) {
                    let fallback = || fallback_id(&self.replica, &segment, start);
                    match encode_event(text, &self.replica, fallback, &mut batch.rows) {
                        Ok(()) => {
                            batch.count += 1;
                            if batch.first_ts_ns.is_none() {
                                batch.first_ts_ns = first_ts(text);
                            }
                        }
                        Err(e) => batch.dead.push((text.to_vec(), e)),
                    }
                }
                batch.next.offset = pos;
                if batch.count as usize + batch.dead.len() >= self.batch_max_events {
                    break;
                }
            }
            return Ok(Some(batch));
        }
        Ok(None)
    }

    fn dead_letter(&self, dead: &[(Vec<u8>, LineError)]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spool.join(DEAD_LETTER_FILE))?;
        let mut out = Vec::new();
        for (line, why) in dead {
            let record = serde_json::json!({
                "reason": why.to_string(),
                "line": String::from_utf8_lossy(line),
            });
            serde_json::to_writer(&mut out, &record).map_err(std::io::Error::other)?;
            out.push(b'\n');
            warn!(reason = %why, "an event line went to the dead-letter file");
        }
        f.write_all(&out)?;
        f.sync_data()
    }

    /// Deletes the segments wholly before the cursor's that are older than the retention:
    /// only what the store has, never the segment being shipped or written.
    fn prune(&self) {
        let Some(keep) = self.retention else { return };
        let Ok(segments) = cohort_events::reader::segments(&self.spool) else {
            return;
        };
        for p in segments {
            let shipped = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n < self.cursor.segment.as_str());
            let old = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= keep);
            if shipped && old {
                match std::fs::remove_file(&p) {
                    Ok(()) => info!(segment = %p.display(), "deleted a shipped segment"),
                    Err(e) => {
                        warn!(segment = %p.display(), error = %e, "cannot delete a shipped segment")
                    }
                }
            }
        }
    }

    /// Spool bytes beyond the cursor.
    fn update_backlog(&self) {
        let Ok(segments) = cohort_events::reader::segments(&self.spool) else {
            return;
        };
        let mut backlog = 0u64;
        for p in segments {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let size = std::fs::metadata(&p).map_or(0, |m| m.len());
            if n > self.cursor.segment.as_str() {
                backlog += size;
            } else if n == self.cursor.segment {
                backlog += size.saturating_sub(self.cursor.offset);
            }
        }
        self.metrics.backlog.set(backlog as i64);
        if let Some(b) = &self.bound {
            b.measured(backlog);
        }
    }
}

/// Runs `shipper` until `stop` resolves: a round at once while there is more to ship,
/// else every `interval`; after a failure, a delay that doubles up to [`MAX_BACKOFF`].
/// Once stopped, it ships what the spool holds for up to `last_window`.
pub async fn run(
    mut shipper: Shipper,
    create_schema: bool,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
    last_window: Duration,
) {
    tokio::pin!(stop);
    let mut backoff = Duration::ZERO;
    let mut schema_ready = !create_schema;
    let mut last_refusal = String::new();
    loop {
        let wait = if backoff.is_zero() { interval } else { backoff };
        // The stop is heard between rounds and during one (a round is cancel-safe: the
        // cursor moves only after the insert), so a large backlog or a slow insert never
        // holds shutdown past `last_window`.
        let outcome = tokio::select! {
            biased;
            () = &mut stop => None,
            o = attempt(&mut shipper, &mut schema_ready) => Some(o),
        };
        let Some(outcome) = outcome else {
            if schema_ready {
                last_rounds(&mut shipper, last_window).await;
            }
            return;
        };
        let more = match outcome {
            Ok(r) => {
                if !backoff.is_zero() {
                    info!("ClickHouse takes events again");
                }
                backoff = Duration::ZERO;
                last_refusal.clear();
                r.shipped + r.dead_letter > 0 || !schema_ready
            }
            Err(e) => {
                shipper.metrics.errors.with_label_values(&[e.kind()]).inc();
                let message = e.to_string();
                if !e.is_permanent() {
                    warn!(error = %message, "shipping to ClickHouse failed; retrying");
                } else if message != last_refusal {
                    // Said once: retrying cannot help until someone changes something.
                    warn!(error = %message, "ClickHouse refuses the events; retrying with backoff until this is fixed");
                    last_refusal = message;
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            () = &mut stop => {
                if schema_ready {
                    last_rounds(&mut shipper, last_window).await;
                }
                return;
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One step: the tables first (when asked to create them), then rounds.
async fn attempt(shipper: &mut Shipper, schema_ready: &mut bool) -> Result<Round, Error> {
    if *schema_ready {
        return shipper.round().await;
    }
    shipper.tables.create(&shipper.client).await?;
    *schema_ready = true;
    info!(database = %shipper.tables.database, "ClickHouse tables ready");
    Ok(Round::default())
}

/// Ships until the spool is shipped or `window` is over (a failure ends it early: the
/// rest ships at the next start, if the spool survives).
async fn last_rounds(shipper: &mut Shipper, window: Duration) {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        match tokio::time::timeout_at(deadline, shipper.round()).await {
            Ok(Ok(r)) if r.shipped + r.dead_letter > 0 => {}
            Ok(Ok(_)) => {
                info!("the spool is shipped");
                return;
            }
            Ok(Err(e)) => {
                warn!(error = %e, backlog_bytes = shipper.metrics.backlog.get(), "cannot ship the rest before exiting; it ships at the next start if the spool survives");
                return;
            }
            Err(_) => {
                warn!(window_ms = window.as_millis() as u64, backlog_bytes = shipper.metrics.backlog.get(), "shutdown.ship_timeout_ms is over: the rest ships at the next start if the spool survives");
                return;
            }
        }
    }
}

/// Up to `max` bytes of `path` from `offset`, cut after the last newline: (those bytes,
/// the offset after them).
fn read_complete(path: &Path, offset: u64, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(complete);
    Ok((bytes, offset + complete as u64))
}

/// The id of a line that carries none: stable for the line's place in the spool, so that
/// shipping it twice gives the same id.
fn fallback_id(replica: &str, segment: &str, offset: u64) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(format!("{replica}\0{segment}\0{offset}").as_bytes());
    format!("{h:032x}")
}

fn first_ts(line: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Ts<'a> {
        #[serde(borrow)]
        ts: std::borrow::Cow<'a, str>,
    }
    let t: Ts = serde_json::from_slice(line).ok()?;
    cohort_events::clock::parse_nanos(&t.ts)
}

/// This replica's name in the store: the pod's (`HOSTNAME`), else the machine's.
pub fn replica_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cohort".to_owned())
}
