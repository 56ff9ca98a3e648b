//! One request's copies: which shadows take it, its head as sent upstream, its body as it
//! streamed, and the served answer, handed to the shadow thread.
//!
//! The request is dispatched once its body has ended whole (each shadow whose limit it
//! fits gets a job); the served answer follows when its body ends, through a one-shot
//! channel per job. Either may come first. A copy that cannot be made releases its permit
//! and is counted with the reason.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use tokio::sync::oneshot;

use super::lane::{Lane, Permit, ShadowResult};
use super::runner::Job;
use super::Shadows;
use crate::phases::rewrite::upstream_uri;
use crate::phases::Exchange;
use crate::tap::{BoundedCopy, Ending, Tap};

/// Which of the experiment's shadows take this request: after the route phase, before
/// the rewrite (the client's URI is still whole). Counts the requests a shadow cannot take.
pub fn plan(ex: &Exchange, upgrade: bool, shadows: &Shadows) -> Option<Arc<Call>> {
    let (route, pick) = (ex.route?, ex.pick.as_ref()?);
    let lanes = &ex.serving.shadows[ex.serving.routes.routes[route].experiment];
    if lanes.is_empty() {
        return None;
    }
    let mut taken = Vec::new();
    for lane in lanes {
        let Some(unit) = &pick.unit else {
            lane.count(ShadowResult::SkippedNoUnit);
            continue;
        };
        if !lane.shadow.takes(unit) {
            continue;
        }
        if upgrade {
            lane.count(ShadowResult::SkippedUpgrade);
            continue;
        }
        let Some(permit) = lane.permit() else {
            lane.count(ShadowResult::SkippedInflight);
            continue;
        };
        taken.push(Taken {
            lane: lane.clone(),
            permit,
            uri: None,
        });
    }
    if taken.is_empty() {
        return None;
    }
    let t = ex.target()?;
    Some(Arc::new(Call {
        shadows: shadows.clone(),
        limit: taken
            .iter()
            .map(|t| t.lane.shadow.config.max_body_bytes)
            .max()
            .unwrap_or(0),
        meta: Arc::new(Meta {
            variant: t.variant.name.clone(),
            unit: pick.unit.clone().unwrap_or_default(),
            phase: t.experiment.salt.clone(),
            request_id: pick.request_id.to_str().unwrap_or_default().to_owned(),
            arrival: ex.arrival,
            grpc: ex.grpc,
        }),
        state: Mutex::new(State {
            taken,
            head: None,
            dispatched: Vec::new(),
            primary: None,
        }),
    }))
}

/// What every copy of a request shares, for its line.
#[derive(Debug)]
pub struct Meta {
    /// The variant that answered the client.
    pub variant: String,
    pub unit: String,
    /// The experiment's salt.
    pub phase: String,
    pub request_id: String,
    pub arrival: SystemTime,
    pub grpc: bool,
}

/// A shadow that took the request, with its permit.
struct Taken {
    lane: Arc<Lane>,
    permit: Permit,
    /// The shadow's URI for this request (set with the head).
    uri: Option<Uri>,
}

/// The served answer, as the shadow thread compares it.
#[derive(Debug)]
pub enum Primary {
    Answered(Answered),
    /// Its body was longer than the limit.
    TooLarge,
    /// No whole answer: cohort's own error, a body cut short, a client gone.
    Missing,
}

/// A whole served answer, as much of it as a comparison reads.
#[derive(Debug)]
pub struct Answered {
    pub status: u16,
    pub grpc_status: Option<u32>,
    /// Streamed answers are compared on status only.
    pub stream: Option<Stream>,
    /// `Content-Encoding`, to decode the body with.
    pub encoding: Option<HeaderValue>,
    /// From arrival to the response head.
    pub head: Duration,
    pub body: Bytes,
}

/// One request's copies in flight.
pub struct Call {
    shadows: Shadows,
    /// The largest body any of its shadows takes: copying stops past it.
    limit: usize,
    meta: Arc<Meta>,
    state: Mutex<State>,
}

struct Head {
    method: Method,
    headers: HeaderMap,
}

struct State {
    /// Shadows that took the request and have no job yet.
    taken: Vec<Taken>,
    head: Option<Head>,
    /// Where the served answer goes, one per job sent.
    dispatched: Vec<oneshot::Sender<Arc<Primary>>>,
    /// The served answer, when it ended before the request was dispatched.
    primary: Option<Arc<Primary>>,
}

impl Call {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The head as the rewrite phase made it for the primary, and each shadow's URI from
    /// the client's `uri`: the shadows get the same method, path and headers (hygiene
    /// applied, forwarding headers added), their own `Host`, and `x-cohort-shadow: 1`.
    pub fn set_head(&self, ex: &Exchange, client_uri: &Uri, head: &http::request::Parts) {
        let Some(route) = ex.route.map(|r| &ex.serving.routes.routes[r]) else {
            return;
        };
        let mut s = self.lock();
        for t in &mut s.taken {
            t.uri = upstream_uri(route, &t.lane.shadow.upstream, client_uri);
        }
        s.head = Some(Head {
            method: head.method.clone(),
            headers: head.headers.clone(),
        });
    }

    /// The tap that copies the request body on its way to the primary.
    pub fn request_tap(self: &Arc<Self>) -> RequestCopy {
        RequestCopy {
            call: self.clone(),
            copy: BoundedCopy::default(),
        }
    }

    /// The request had no body: dispatch now.
    pub fn no_request_body(&self) {
        self.dispatch(Ok(Vec::new()));
    }

    /// The served answer's head is known (`head`: arrival to head): the tap that copies
    /// its body and hands the answer over at its end. A streamed answer is compared on
    /// status only, so its body is not copied: a gRPC answer is handed over at its end
    /// (its status is in the trailers), server-sent events and NDJSON at once.
    pub fn answer_tap(
        self: &Arc<Self>,
        status: u16,
        headers: &HeaderMap,
        head: Duration,
    ) -> AnswerCopy {
        let stream = streamed(self.meta.grpc, headers);
        let answered = Answered {
            status,
            grpc_status: grpc_status(headers),
            stream,
            encoding: headers.get(http::header::CONTENT_ENCODING).cloned(),
            head,
            body: Bytes::new(),
        };
        let answered = match stream {
            Some(Stream::Events) => {
                self.answered(Primary::Answered(answered));
                None
            }
            _ => Some(answered),
        };
        AnswerCopy {
            call: self.clone(),
            answered,
            keep: stream.is_none(),
            copy: BoundedCopy::default(),
        }
    }

    /// cohort answered with its own error: nothing to compare with.
    pub fn no_answer(&self) {
        self.answered(Primary::Missing);
    }

    fn answered(&self, primary: Primary) {
        let primary = Arc::new(primary);
        let mut s = self.lock();
        if s.dispatched.is_empty() && !s.taken.is_empty() {
            s.primary = Some(primary);
            return;
        }
        let waiting = std::mem::take(&mut s.dispatched);
        drop(s);
        // Handed over on the shadow thread, where the copies wait: no wake-up from here.
        if let (false, Some(runner)) = (waiting.is_empty(), self.shadows.runner()) {
            runner.answer(waiting, primary);
        }
    }

    /// The request body ended: whole (its frames), or not.
    fn dispatch(&self, body: Result<Vec<Bytes>, ()>) {
        let mut s = self.lock();
        let taken = std::mem::take(&mut s.taken);
        let head = s.head.take();
        let (Ok(body), Some(head)) = (body, head) else {
            for t in taken {
                t.lane.count(ShadowResult::SkippedPrimary);
            }
            return;
        };
        let len: usize = body.iter().map(Bytes::len).sum();
        let Some(runner) = self.shadows.runner() else {
            for t in taken {
                t.lane.count(ShadowResult::Error);
            }
            return;
        };
        for t in taken {
            let Some(uri) = t.uri else {
                t.lane.count(ShadowResult::SkippedPrimary);
                continue;
            };
            if len > t.lane.shadow.config.max_body_bytes {
                t.lane.count(ShadowResult::SkippedBody);
                continue;
            }
            let (tx, rx) = oneshot::channel();
            match &s.primary {
                Some(p) => {
                    let _ = tx.send(p.clone());
                }
                None => s.dispatched.push(tx),
            }
            runner.send(Job {
                lane: t.lane,
                _permit: t.permit,
                method: head.method.clone(),
                uri,
                headers: head.headers.clone(),
                body: body.clone(),
                primary: rx,
                meta: self.meta.clone(),
            });
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Planned, never dispatched: the request failed before its body went out.
        let s = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for t in s.taken.drain(..) {
            t.lane.count(ShadowResult::SkippedPrimary);
        }
    }
}

/// A streamed answer, compared on status and latency only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// gRPC: its status comes in the trailers.
    Grpc,
    /// Server-sent events or NDJSON: the status is in the head.
    Events,
}

/// Whether an answer (of a gRPC request when `grpc`) is streamed, from its head.
pub(crate) fn streamed(grpc: bool, h: &HeaderMap) -> Option<Stream> {
    let ct = h
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if grpc || ct.starts_with("application/grpc") {
        Some(Stream::Grpc)
    } else if ct.starts_with("text/event-stream") || ct.starts_with("application/x-ndjson") {
        Some(Stream::Events)
    } else {
        None
    }
}

/// `grpc-status` from a head (a trailers-only answer) or trailers.
pub(crate) fn grpc_status(h: &HeaderMap) -> Option<u32> {
    h.get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Copies the request body as it streams to the primary.
pub struct RequestCopy {
    call: Arc<Call>,
    copy: BoundedCopy,
}

impl Tap for RequestCopy {
    fn data(&mut self, chunk: &Bytes) {
        self.copy.keep(chunk, self.call.limit);
    }

    fn end(self, how: Ending) {
        let body = match (how, self.copy.is_over()) {
            (Ending::Complete, false) => Ok(self.copy.into_frames()),
            // Over the largest of the shadows' limits, so over each one's.
            (Ending::Complete, true) => {
                let mut s = self.call.lock();
                for t in std::mem::take(&mut s.taken) {
                    t.lane.count(ShadowResult::SkippedBody);
                }
                return;
            }
            _ => Err(()),
        };
        self.call.dispatch(body);
    }
}

/// Copies the served answer's body as it streams to the client, and hands the answer over
/// at its end (or as soon as it is over the limit).
pub struct AnswerCopy {
    call: Arc<Call>,
    answered: Option<Answered>,
    /// Whether the body is copied (not for a streamed answer).
    keep: bool,
    copy: BoundedCopy,
}

impl Tap for AnswerCopy {
    fn data(&mut self, chunk: &Bytes) {
        if self.keep && self.answered.is_some() && !self.copy.keep(chunk, self.call.limit) {
            self.answered = None;
            self.call.answered(Primary::TooLarge);
        }
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if let (Some(a), Some(code)) = (self.answered.as_mut(), grpc_status(trailers)) {
            a.grpc_status = Some(code);
        }
    }

    fn end(mut self, how: Ending) {
        let Some(mut answered) = self.answered.take() else {
            return;
        };
        if how == Ending::Complete {
            answered.body = std::mem::take(&mut self.copy).into_bytes();
            self.call.answered(Primary::Answered(answered));
        } else {
            self.call.answered(Primary::Missing);
        }
    }
}
