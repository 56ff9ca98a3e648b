//! Capture: the bodies of a sample of calls, copied while they stream and handed to model
//! monitoring, off the request path.
//!
//! Whether a call is captured is decided once its variant is known: a draw against the
//! experiment's `monitor.sample`, then its per-second budget (`monitor.max_per_s`, one
//! counter per experiment, touched only by sampled calls). A captured call's request body
//! and response body each pass through a tap that copies up to `monitor.max_body_bytes`;
//! when the response ends complete, the pair goes to the monitor's channel with `try_send`,
//! so the serving thread never waits. The client's bytes are never held back or changed.
//! A capture that cannot be made (a body over the limit, a body cut short, the channel
//! full) is counted in `cohort_monitor_skipped_total{experiment,reason}`.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use prometheus::IntCounterVec;

use crate::budget::PerSecond;
use crate::tap::{BoundedCopy, Ending, Tap};
use cohort_config::schema::MonitorConfig;

/// One captured call, as the monitor receives it.
#[derive(Debug, Clone)]
pub struct Capture {
    pub experiment: String,
    pub variant: String,
    /// The unit the call was served for (None: served without one): what conversions,
    /// the labels of model quality, are reported for.
    pub unit: Option<String>,
    /// The experiment's salt when the call was served: a new one starts a new reference.
    pub salt: String,
    /// When the request arrived.
    pub at: SystemTime,
    pub request: Bytes,
    pub response: Bytes,
}

/// Why a sampled call was not captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A body longer than `max_body_bytes`.
    TooLarge,
    /// A body that did not end complete (cut short, or the client went away).
    Incomplete,
    /// The monitor's channel was full.
    QueueFull,
    /// The upstream answered with a status other than 2xx: not a prediction.
    Status,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Incomplete => "incomplete",
            Self::QueueFull => "queue_full",
            Self::Status => "status",
        }
    }
}

/// Where captures go: the monitor's channel and the count of those that could not be made.
#[derive(Clone)]
pub struct Captures {
    tx: Sender<Capture>,
    skipped: IntCounterVec,
}

impl Captures {
    pub fn new(tx: Sender<Capture>, skipped: IntCounterVec) -> Self {
        Self { tx, skipped }
    }

    fn skip(&self, experiment: &str, why: Skip) {
        self.skipped
            .with_label_values(&[experiment, why.as_str()])
            .inc();
    }
}

/// An experiment's sampling: its share, its per-second budget and the body limit.
#[derive(Debug)]
pub struct Sampling {
    sample: f64,
    budget: PerSecond,
    pub max_body_bytes: usize,
}

impl Sampling {
    pub fn of(m: &MonitorConfig) -> Self {
        Self {
            sample: m.sample,
            budget: PerSecond::new(m.max_per_s),
            max_body_bytes: m.max_body_bytes,
        }
    }

    /// Whether to capture this call: the sample's draw, then the second's budget.
    pub fn take(&self, now: SystemTime) -> bool {
        if self.sample < 1.0 && rand::random::<f64>() >= self.sample {
            return false;
        }
        self.budget.take(now)
    }
}

/// A captured call in flight: what is known of it, and its request body once copied.
pub struct Slot {
    captures: Captures,
    max: usize,
    call: Mutex<Pending>,
}

struct Pending {
    capture: Option<Capture>,
    /// The request body's copy: None until it ended, then its bytes or why not.
    request: Option<Result<Bytes, Skip>>,
}

impl Slot {
    pub fn new(
        captures: Captures,
        max: usize,
        experiment: &str,
        variant: &str,
        unit: Option<&str>,
        salt: &str,
        at: SystemTime,
    ) -> Arc<Self> {
        Arc::new(Self {
            captures,
            max,
            call: Mutex::new(Pending {
                capture: Some(Capture {
                    experiment: experiment.to_owned(),
                    variant: variant.to_owned(),
                    unit: unit.map(str::to_owned),
                    salt: salt.to_owned(),
                    at,
                    request: Bytes::new(),
                    response: Bytes::new(),
                }),
                request: None,
            }),
        })
    }

    /// Gives the capture up, counted as `why`.
    pub fn abandon(&self, why: Skip) {
        let experiment = self.lock().capture.take().map(|c| c.experiment);
        if let Some(e) = experiment {
            self.captures.skip(&e, why);
        }
    }

    /// A request without a body: nothing to copy.
    pub fn no_request_body(&self) {
        self.lock().request = Some(Ok(Bytes::new()));
    }

    /// The tap that copies the request body.
    pub fn request_tap(self: &Arc<Self>) -> BodyCopy {
        BodyCopy::new(self.clone(), Side::Request)
    }

    /// The tap that copies the response body and, at its end, hands the call over.
    pub fn response_tap(self: &Arc<Self>) -> BodyCopy {
        BodyCopy::new(self.clone(), Side::Response)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.call.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ended(&self, side: Side, copied: Result<Bytes, Skip>) {
        let mut p = self.lock();
        if p.capture.is_none() {
            return;
        }
        if side == Side::Request {
            p.request = Some(copied);
            return;
        }
        let request = p.request.take().unwrap_or(Err(Skip::Incomplete));
        let mut capture = p.capture.take().expect("checked above");
        drop(p);
        let why = match (request, copied) {
            (Ok(request), Ok(response)) => {
                capture.request = request;
                capture.response = response;
                match self.captures.tx.try_send(capture) {
                    // Disconnected: the monitor has stopped (shutting down), nothing to count.
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(c)) => {
                        self.captures.skip(&c.experiment, Skip::QueueFull)
                    }
                }
                return;
            }
            (Err(why), _) | (_, Err(why)) => why,
        };
        self.captures.skip(&capture.experiment, why);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// A tap that copies a body up to the slot's limit.
pub struct BodyCopy {
    slot: Arc<Slot>,
    side: Side,
    copy: BoundedCopy,
}

impl BodyCopy {
    fn new(slot: Arc<Slot>, side: Side) -> Self {
        Self {
            slot,
            side,
            copy: BoundedCopy::default(),
        }
    }
}

impl Tap for BodyCopy {
    fn data(&mut self, chunk: &Bytes) {
        self.copy.keep(chunk, self.slot.max);
    }

    fn end(self, how: Ending) {
        let copied = match (how, self.copy.is_over()) {
            (Ending::Complete, false) => Ok(self.copy.into_bytes()),
            (Ending::Complete, true) => Err(Skip::TooLarge),
            _ => Err(Skip::Incomplete),
        };
        self.slot.ended(self.side, copied);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_takes_about_its_share() {
        let s = Sampling {
            sample: 0.1,
            budget: PerSecond::new(u32::MAX),
            max_body_bytes: 10,
        };
        let t = SystemTime::UNIX_EPOCH;
        let taken = (0..20_000).filter(|_| s.take(t)).count();
        assert!((1_600..2_400).contains(&taken), "{taken}");
    }

    fn slot(
        max: usize,
    ) -> (
        Arc<Slot>,
        crossbeam_channel::Receiver<Capture>,
        IntCounterVec,
    ) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let skipped =
            IntCounterVec::new(prometheus::Opts::new("s", "s"), &["experiment", "reason"]).unwrap();
        let c = Captures::new(tx, skipped.clone());
        (
            Slot::new(c, max, "e", "a", Some("u"), "salt", SystemTime::UNIX_EPOCH),
            rx,
            skipped,
        )
    }

    #[test]
    fn both_bodies_arrive_together_when_the_response_ends() {
        let (s, rx, _) = slot(8);
        let mut req = s.request_tap();
        req.data(&Bytes::from_static(b"in"));
        req.data(&Bytes::from_static(b"put"));
        req.end(Ending::Complete);
        assert!(rx.try_recv().is_err());
        let mut resp = s.response_tap();
        resp.data(&Bytes::from_static(b"out"));
        resp.end(Ending::Complete);
        let c = rx.try_recv().unwrap();
        assert_eq!(
            (&c.request[..], &c.response[..]),
            (&b"input"[..], &b"out"[..])
        );
        assert_eq!((c.experiment.as_str(), c.variant.as_str()), ("e", "a"));
    }

    #[test]
    fn bodies_over_the_limit_or_cut_short_are_counted_not_sent() {
        let (s, rx, skipped) = slot(4);
        let mut req = s.request_tap();
        req.data(&Bytes::from_static(b"12345"));
        req.end(Ending::Complete);
        s.response_tap().end(Ending::Complete);
        assert!(rx.try_recv().is_err());
        assert_eq!(skipped.with_label_values(&["e", "too_large"]).get(), 1);

        let (s, rx, skipped) = slot(4);
        s.no_request_body();
        s.response_tap().end(Ending::Dropped);
        assert!(rx.try_recv().is_err());
        assert_eq!(skipped.with_label_values(&["e", "incomplete"]).get(), 1);
    }
}
