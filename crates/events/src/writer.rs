//! The writer: one thread, fed by a bounded channel, writing batches to an [`EventSink`].
//!
//! Guarantees (README, "Outcomes and the event log"):
//! * the request path never waits: [`EventLog::record`] is a `try_send`; a full channel
//!   drops the event and counts it in `cohort_events_dropped_total`;
//! * a batch that cannot be written (disk full, read-only remount) is truncated away, every
//!   event in it is counted as dropped and logged, and the next batch tries again, so that
//!   `written + dropped = produced` exactly and writing resumes when the disk does;
//! * `fsync: always` syncs each batch before counting it written; `interval` syncs every
//!   `fsync_interval_ms`; `never` leaves it to the OS. A clean shutdown drains the channel
//!   and syncs in every mode;
//! * the writer wakes at most once per [`LINGER`] under load: after a batch it sleeps that
//!   long before draining again, so a request never pays for waking it (a send to a
//!   receiver blocked in `recv` is a futex syscall and a context switch, per event); a full
//!   batch is followed at once by the next;
//! * the writer runs at a lower CPU priority than the request path ([`cohort_sys::lower_thread_priority`]):
//!   it needs a few percent of a core, and when it shares a core with a serving thread the
//!   serving thread should get that core first.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use prometheus::{IntCounter, IntGauge};
use tracing::{error, info, warn};

use super::schema::{Event, EventRef};
use super::spool::SpoolBound;
use cohort_config::schema::{EventsConfig, FsyncMode};

/// Where batches of serialized events go: events in, durability out. The local segment
/// log ([`SegmentLog`]) is the embedded default; a sink to a shared engine (Kafka,
/// PostgreSQL) can take its place without touching the request path.
pub trait EventSink: Send + 'static {
    /// Appends a batch of `events` JSON lines. All or nothing: on `Err`, none of the batch
    /// may remain (the sink truncates what it wrote), and the writer counts it dropped.
    fn append(&mut self, batch: &[u8], events: usize) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// The largest batch, in bytes, the sink wants at once (the writer splits bigger ones
    /// at line boundaries). None: any size.
    fn max_batch_bytes(&self) -> Option<usize> {
        None
    }
}

/// JSON Lines segments in a directory: `events-<UTC start>-<seq>.jsonl`, rotated by size and
/// age; the directory is fsynced after a segment is created.
pub struct SegmentLog {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    current: Option<Segment>,
    seq: u64,
}

struct Segment {
    file: File,
    path: PathBuf,
    len: u64,
    opened: Instant,
}

impl SegmentLog {
    pub fn open(cfg: &EventsConfig) -> io::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        Ok(Self {
            dir: cfg.dir.clone(),
            max_bytes: cfg.segment_max_bytes,
            max_age: Duration::from_secs_f64(cfg.segment_max_age_s),
            current: None,
            seq: 0,
        })
    }

    /// The segment to write `extra` more bytes to, rotating first if due.
    fn segment(&mut self, extra: u64) -> io::Result<&mut Segment> {
        let due = match &self.current {
            None => true,
            Some(s) => {
                (s.len > 0 && s.len + extra > self.max_bytes) || s.opened.elapsed() >= self.max_age
            }
        };
        if due {
            if let Some(old) = self.current.take() {
                // Best effort: a failed final sync of a closed segment is logged, the
                // batches in it were already counted.
                if let Err(e) = old.file.sync_all() {
                    warn!(segment = %old.path.display(), error = %e, "could not sync a closed segment");
                }
            }
            self.current = Some(self.create()?);
        }
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no segment"))
    }

    fn create(&mut self) -> io::Result<Segment> {
        let stamp = crate::clock::rfc3339(SystemTime::now())
            .replace(['-', ':'], "")
            .chars()
            .take(15)
            .collect::<String>();
        loop {
            self.seq += 1;
            let path = self
                .dir
                .join(format!("events-{stamp}Z-{:06}.jsonl", self.seq));
            match OpenOptions::new().create_new(true).append(true).open(&path) {
                Ok(file) => {
                    File::open(&self.dir)?.sync_all()?;
                    return Ok(Segment {
                        file,
                        path,
                        len: 0,
                        opened: Instant::now(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl EventSink for SegmentLog {
    fn append(&mut self, batch: &[u8], _events: usize) -> io::Result<()> {
        let seg = self.segment(batch.len() as u64)?;
        let good = seg.len;
        match seg.file.write_all(batch) {
            Ok(()) => {
                seg.len += batch.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut the partial batch off so no fragment stays mid-segment; if even that
                // fails, abandon the segment and start a new one next time.
                if seg.file.set_len(good).is_err() {
                    self.current = None;
                }
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(s) => s.file.sync_data(),
            None => Ok(()),
        }
    }

    /// Batches no larger than a segment, so that segments stay within their size.
    fn max_batch_bytes(&self) -> Option<usize> {
        Some(self.max_bytes as usize)
    }
}

/// An event whose serializable form is built on the writer thread, off the request path:
/// the handler hands over indices and what it already owns; names are resolved and the
/// timestamp is formatted by the writer.
pub trait LazyEvent: Send + Sync {
    /// Resolves what [`LazyEvent::view`] borrows (the formatted timestamp); called once,
    /// on the writer thread, before any view.
    fn prepare(&mut self);
    /// The event, borrowed: serialized and counted without building an owned [`Event`].
    fn view(&self) -> EventRef<'_>;
    /// Marks the response as failed after its head (exposures only).
    fn set_aborted(&mut self);
}

/// An event in the writer's hands.
enum Item {
    Owned(Box<Event>),
    Lazy(Box<dyn LazyEvent>),
}

impl Item {
    fn view(&self) -> EventRef<'_> {
        match self {
            Item::Owned(e) => e.view(),
            Item::Lazy(e) => e.view(),
        }
    }
}

/// What travels to the writer thread.
enum Msg {
    Event(Box<Event>),
    Lazy(Box<dyn LazyEvent>),
    /// A whole line of another type than exposure and conversion (a monitoring summary),
    /// JSON without its newline: written as it is, after the batch's events, and seen by
    /// no observer.
    Line(Vec<u8>),
    /// Write what came before, sync, and stop (clean shutdown).
    Stop,
}

/// The request path's handle on the log. Cloning is cheap.
#[derive(Clone)]
pub struct EventLog {
    tx: Sender<Msg>,
    dropped: IntCounter,
    spool: Option<Arc<SpoolBound>>,
}

impl EventLog {
    /// True when the spool holds `events.spool_max_bytes` not shipped yet: conversions
    /// are then refused (503) rather than accepted into a spool with no room.
    pub fn spool_full(&self) -> bool {
        self.spool.as_ref().is_some_and(|b| b.is_full())
    }

    /// Records an event, waiting for room in the channel: for conversions, which a
    /// client was told were accepted. Call it off the async runtime (it may block).
    pub fn record_blocking(&self, event: Event) {
        if self.tx.send(Msg::Event(Box::new(event))).is_err() {
            self.dropped.inc();
        }
    }

    /// Records an event to be built on the writer thread; never waits (full: counted drop).
    #[inline]
    pub fn record_lazy(&self, event: Box<dyn LazyEvent>) {
        if self.tx.try_send(Msg::Lazy(event)).is_err() {
            self.dropped.inc();
        }
    }

    /// Writes `line` (one JSON object of another type, e.g. `"type": "monitor"` or
    /// `"type": "shadow"`, without a newline) to the log; like [`EventLog::record`] it never
    /// waits, and a full channel drops it (counted).
    pub fn record_line(&self, line: Vec<u8>) {
        if self.tx.try_send(Msg::Line(line)).is_err() {
            self.dropped.inc();
        }
    }

    /// Records an event without ever waiting; a full channel drops (and counts) it.
    #[inline]
    pub fn record(&self, event: Event) {
        match self.tx.try_send(Msg::Event(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

/// The writer thread.
pub struct Writer {
    handle: std::thread::JoinHandle<()>,
    tx: Sender<Msg>,
}

impl Writer {
    /// Clean shutdown: everything recorded before this call is written (or counted
    /// dropped) and synced when it returns. Blocks; call it off the async runtime.
    pub fn finish(self) {
        // A blocking send: at shutdown it may wait for room, never drop the stop.
        let _ = self.tx.send(Msg::Stop);
        let _ = self.handle.join();
    }
}

/// How the writer thread runs.
pub struct WriterOptions {
    /// Bounded channel size between handlers and the writer.
    pub capacity: usize,
    pub fsync: FsyncMode,
    pub fsync_interval: Duration,
    /// `cohort_events_written_total` / `cohort_events_dropped_total`.
    pub written: IntCounter,
    pub dropped: IntCounter,
    /// Told about every batch once it is written (live counts, per-variant metrics).
    pub observers: Vec<Arc<dyn Observer>>,
    /// `cohort_events_queue_depth` and its high-water mark `cohort_events_queue_depth_max`:
    /// events handed over and not yet taken by the writer, which a SIGKILL loses. Sampled
    /// by the writer at every wake-up, so the request path pays nothing for them.
    pub queue_depth: IntGauge,
    pub queue_depth_max: IntGauge,
    /// With shipping, `events.spool_max_bytes`: past it exposures are dropped (counted).
    pub spool: Option<Arc<SpoolBound>>,
}

/// Something that follows exactly what was written: called on the writer thread with
/// each batch that reached the sink (never with one that failed).
pub trait Observer: Send + Sync {
    fn written(&self, events: &[EventRef<'_>]);
}

impl WriterOptions {
    /// Options from the config's `events` section, counting into `written` and `dropped`.
    pub fn from_config(cfg: &EventsConfig, written: IntCounter, dropped: IntCounter) -> Self {
        Self::plain(
            cfg.channel_capacity as usize,
            cfg.fsync,
            Duration::from_millis(cfg.fsync_interval_ms),
            written,
            dropped,
        )
    }

    /// Reports the channel's depth in these gauges (see [`WriterOptions::queue_depth`]).
    pub fn with_queue_gauges(mut self, depth: IntGauge, max: IntGauge) -> Self {
        self.queue_depth = depth;
        self.queue_depth_max = max;
        self
    }

    /// Bounds the spool: past `bound`, exposures are dropped and counted.
    pub fn with_spool_bound(mut self, bound: Option<Arc<SpoolBound>>) -> Self {
        self.spool = bound;
        self
    }

    /// Adds an observer of every written batch.
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Options for tests and tools: no live counts, no per-variant metric.
    pub fn plain(
        capacity: usize,
        fsync: FsyncMode,
        fsync_interval: Duration,
        written: IntCounter,
        dropped: IntCounter,
    ) -> Self {
        Self {
            capacity,
            fsync,
            fsync_interval,
            written,
            dropped,
            observers: Vec::new(),
            queue_depth: unregistered_gauge(),
            queue_depth_max: unregistered_gauge(),
            spool: None,
        }
    }
}

fn unregistered_gauge() -> IntGauge {
    IntGauge::new("unregistered", "not exported").expect("a valid metric name")
}

/// Starts the writer thread over `sink`; returns the handle for handlers and the thread.
pub fn start(sink: Box<dyn EventSink>, opts: WriterOptions) -> (EventLog, Writer) {
    let (tx, rx) = bounded(opts.capacity.max(1));
    let dropped = opts.dropped.clone();
    let log = EventLog {
        tx: tx.clone(),
        dropped: dropped.clone(),
        spool: opts.spool.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("cohort-events".into())
        .spawn(move || {
            cohort_sys::lower_thread_priority();
            run(rx, sink, opts)
        })
        .unwrap_or_else(|e| panic!("cannot start the event writer thread: {e}"));
    (log, Writer { handle, tx })
}

const BATCH: usize = 4096;

/// How long the writer lets events gather after writing a batch that did not fill: fewer
/// wake-ups and write calls per event, at the price of events reaching the file (and the
/// live counts) at most this much later. At 50 000 events/s that is ~500 events per write,
/// far below the channel's capacity (bench/README.md has the measurement).
pub const LINGER: Duration = Duration::from_millis(10);

fn run(rx: Receiver<Msg>, mut sink: Box<dyn EventSink>, opts: WriterOptions) {
    let (fsync, interval) = (opts.fsync, opts.fsync_interval);
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut last_sync = Instant::now();
    let mut dirty = false;
    let mut failing = false;
    loop {
        let mut stop = false;
        let received = rx.recv_timeout(interval);
        let spool_full = spool_full(&opts);
        // Past the spool's bound exposures (the lazy events of the request path) are
        // dropped and counted; events handed over whole (conversions a client was told
        // about) are always written.
        let mut take = |m: Msg| match m {
            Msg::Event(e) => Some(Item::Owned(e)),
            Msg::Line(l) => {
                lines.push(l);
                None
            }
            Msg::Lazy(_) if spool_full => {
                opts.dropped.inc();
                None
            }
            Msg::Lazy(mut e) => {
                e.prepare();
                Some(Item::Lazy(e))
            }
            Msg::Stop => None,
        };
        // Whether a message came (even one that was dropped): then drain what follows.
        let mut woken = false;
        let first = match received {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                stop = true;
                None
            }
            Ok(m) => {
                woken = true;
                take(m)
            }
            Err(RecvTimeoutError::Timeout) => None,
        };
        // What waits behind this wake-up: the backlog a SIGKILL now would lose.
        let waiting = i64::try_from(rx.len()).unwrap_or(i64::MAX);
        opts.queue_depth.set(waiting);
        if waiting > opts.queue_depth_max.get() {
            opts.queue_depth_max.set(waiting);
        }
        buf.clear();
        batch.clear();
        if woken {
            batch.extend(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(Msg::Stop) => {
                        stop = true;
                        break;
                    }
                    Ok(m) => batch.extend(take(m)),
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            // Each event is viewed once, for its line and for the counts.
            let views: Vec<EventRef<'_>> = batch.iter().map(Item::view).collect();
            for view in &views {
                view.write_json(&mut buf);
                buf.push(b'\n');
            }
            let max = sink.max_batch_bytes().unwrap_or(usize::MAX).max(1);
            // Usually the whole batch is one chunk, of one line per event.
            let split = if buf.len() <= max {
                vec![(&buf[..], views.len())]
            } else {
                chunks(&buf, max)
                    .into_iter()
                    .map(|c| (c, c.iter().filter(|&&b| b == b'\n').count()))
                    .collect()
            };
            let mut done = 0;
            for (chunk, lines) in split {
                let ok = write_batch(
                    &mut *sink,
                    chunk,
                    lines,
                    fsync,
                    &opts,
                    &mut failing,
                    &mut dirty,
                );
                if ok {
                    count_written(&opts, &views[done..done + lines]);
                    if let Some(b) = &opts.spool {
                        b.wrote(chunk.len() as u64);
                    }
                }
                done += lines;
            }
        }
        if !lines.is_empty() {
            buf.clear();
            for l in &lines {
                buf.extend_from_slice(l);
                buf.push(b'\n');
            }
            let ok = write_batch(
                &mut *sink,
                &buf,
                lines.len(),
                fsync,
                &opts,
                &mut failing,
                &mut dirty,
            );
            if ok {
                if let Some(b) = &opts.spool {
                    b.wrote(buf.len() as u64);
                }
            }
            lines.clear();
        }
        if stop {
            break;
        }
        // A full batch means more is waiting: drain on without lingering. A wake-up whose
        // events were all dropped lingers too, so a full spool never has the request path
        // wake the writer for each event.
        let linger = woken && batch.len() < BATCH;
        if fsync == FsyncMode::Interval && dirty && last_sync.elapsed() >= interval {
            if let Err(e) = sink.sync() {
                error!(error = %e, "event log fsync failed");
            }
            dirty = false;
            last_sync = Instant::now();
        }
        if linger {
            std::thread::sleep(LINGER);
        }
    }
    // Stopped (or every sender is gone): everything recorded before is in. Make it
    // durable in every mode.
    if let Err(e) = sink.sync() {
        error!(error = %e, "final event log fsync failed");
    }
}

/// Splits JSON lines into chunks of at most `max` bytes, at line boundaries (a single
/// longer line is a chunk of its own).
fn chunks(buf: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < buf.len() {
        let limit = (start + max).min(buf.len());
        let end = if limit == buf.len() {
            buf.len()
        } else {
            match buf[start..limit].iter().rposition(|&b| b == b'\n') {
                Some(i) => start + i + 1,
                None => buf[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(buf.len(), |i| start + i + 1),
            }
        };
        out.push(&buf[start..end]);
        start = end;
    }
    out
}

/// Whether the spool is past its bound, saying so once at each change.
fn spool_full(opts: &WriterOptions) -> bool {
    let Some(bound) = &opts.spool else {
        return false;
    };
    let (full, changed) = bound.check();
    if changed && full {
        warn!(backlog_bytes = bound.backlog(), spool_max_bytes = bound.max(), "the spool is full: exposures are dropped (counted in cohort_events_dropped_total) and conversions refused with 503 until ClickHouse takes the backlog");
    } else if changed {
        info!(
            backlog_bytes = bound.backlog(),
            "the spool has room again: exposures are recorded and conversions accepted"
        );
    }
    full
}

/// Observers follow exactly what was written.
fn count_written(opts: &WriterOptions, events: &[EventRef<'_>]) {
    for observer in &opts.observers {
        observer.written(events);
    }
}

/// Writes one chunk; true when it counts as written.
fn write_batch(
    sink: &mut dyn EventSink,
    buf: &[u8],
    n: usize,
    fsync: FsyncMode,
    opts: &WriterOptions,
    failing: &mut bool,
    dirty: &mut bool,
) -> bool {
    let result = sink.append(buf, n).and_then(|()| {
        if fsync == FsyncMode::Always {
            sink.sync()
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => {
            opts.written.inc_by(n as u64);
            *dirty = true;
            if *failing {
                info!("event log writes succeed again");
                *failing = false;
            }
            true
        }
        Err(e) => {
            opts.dropped.inc_by(n as u64);
            if !*failing {
                error!(error = %e, events = n, "cannot write to the event log: dropping events (counted in cohort_events_dropped_total) until the disk recovers");
                *failing = true;
            }
            false
        }
    }
}

/// Appends `{ts, config_version, shares}` to `dir/config-versions.jsonl` and syncs it, so
/// that the analysis knows which shares were in force when.
pub fn record_config_version(dir: &Path, routes: &cohort_config::Routes) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let shares: serde_json::Map<String, serde_json::Value> = routes
        .experiments
        .iter()
        .map(|e| {
            let v: serde_json::Map<String, serde_json::Value> = e
                .variants
                .iter()
                .map(|v| {
                    (
                        v.name.clone(),
                        serde_json::json!(f64::from(v.buckets) / f64::from(cohort_assign::BUCKETS)),
                    )
                })
                .collect();
            (e.name.clone(), serde_json::Value::Object(v))
        })
        .collect();
    let line = serde_json::json!({
        "ts": crate::clock::now(),
        "config_version": routes.version,
        "shares": shares,
    });
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(crate::reader::VERSIONS_FILE))?;
    // One write of the whole line: O_APPEND keeps concurrent writers' lines whole.
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::chunks;

    /// The writer thread runs under SCHED_BATCH at nice 10, and the thread that started it
    /// keeps its own priority (Linux keeps scheduling attributes per thread).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_thread_yields_to_the_request_path() {
        use super::{start, EventSink, WriterOptions};
        use crate::schema::{Conversion, Event};
        use cohort_config::schema::FsyncMode;
        use cohort_sys::BACKGROUND_NICE as WRITER_NICE;
        use prometheus::IntCounter;
        use std::sync::mpsc;
        use std::time::Duration;

        /// (nice, scheduling policy) of the calling thread: fields 19 and 41 of its
        /// /proc stat line (proc(5)), counted after the parenthesised command name.
        fn own_nice_and_policy() -> (i64, i64) {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            (f[19 - 3].parse().unwrap(), f[41 - 3].parse().unwrap())
        }
        /// A sink that reports, from the writer thread, that thread's priority.
        struct Report(mpsc::Sender<(i64, i64)>);
        impl EventSink for Report {
            fn append(&mut self, _: &[u8], _: usize) -> std::io::Result<()> {
                let _ = self.0.send(own_nice_and_policy());
                Ok(())
            }
            fn sync(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (mine, _) = own_nice_and_policy();
        let (tx, rx) = mpsc::channel();
        let counter = || IntCounter::new("c", "c").unwrap();
        let opts = WriterOptions::plain(
            16,
            FsyncMode::Never,
            Duration::from_secs(1),
            counter(),
            counter(),
        );
        let (log, writer) = start(Box::new(Report(tx)), opts);
        log.record_blocking(Event::Conversion(Conversion {
            v: Some(1),
            ts: "2026-11-27T18:00:00.000Z".into(),
            experiment: "e".into(),
            unit: "u".into(),
            variant: None,
            value: None,
            request_id: None,
            event_id: None,
        }));
        let on_writer = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let nicer = (mine + i64::from(WRITER_NICE)).min(19);
        assert_eq!(on_writer, (nicer, i64::from(cohort_sys::SCHED_BATCH)));
        assert_eq!(
            own_nice_and_policy().0,
            mine,
            "the test thread keeps its niceness"
        );
        writer.finish();
    }

    #[test]
    fn chunks_split_at_line_boundaries() {
        let buf = b"aaa\nbb\ncccccc\nd\n";
        assert_eq!(
            chunks(buf, 7),
            vec![&b"aaa\nbb\n"[..], &b"cccccc\n"[..], &b"d\n"[..]]
        );
        assert_eq!(
            chunks(buf, 3),
            vec![&b"aaa\n"[..], &b"bb\n"[..], &b"cccccc\n"[..], &b"d\n"[..]]
        );
        assert_eq!(chunks(buf, 1000), vec![&buf[..]]);
    }
}
