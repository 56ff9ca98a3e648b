//! The shadow thread: each copy sent to its shadow, the answer read within the shadow's
//! timeout and limit, compared with the served one, counted and logged.
//!
//! One thread with its own runtime and its own upstream clients (so its connection pools
//! are apart from the serving threads'), at a lower CPU priority than the serving threads,
//! as the event writer is: on a shared core the serving threads win. Plain-HTTP/1.1
//! shadows go through a lean pool of the thread's own ([`crate::pool`]), the others
//! through the general client.
//!
//! Jobs and served answers come over one unbounded channel whose length the shadows'
//! in-flight permits bound. The thread drains it and then lingers ([`LINGER`]) before
//! draining again, never waiting in `recv` while there is work: a send to a receiver
//! blocked in `recv` is a syscall and a context switch on the serving thread, per copy.
//! The served answers are handed to the waiting copies here, on this thread, for the same
//! reason.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, SendError, Sender, TryRecvError};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use super::copy::{grpc_status, streamed, Answered, Meta, Primary, Stream};
use super::lane::{Lane, Permit, ShadowResult};
use crate::body::{Body, BoxError};
use crate::pool::{H1Pool, UpstreamBody};
use crate::tap::BoundedCopy;
use crate::upstream::Clients;
use cohort_compare::{compare, Answer, How, Outcome};
use cohort_config::schema::Protocol;
use cohort_config::{HostHeader, Shadow};
use cohort_events::EventLog;

/// The header every copy carries, so that a shadow can tell copies from real calls.
pub const X_COHORT_SHADOW: &str = "x-cohort-shadow";

/// One copy to send.
pub struct Job {
    pub lane: Arc<Lane>,
    /// Held until the job ends: the permit is given back when the job is dropped.
    pub _permit: Permit,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<Bytes>,
    pub primary: oneshot::Receiver<Arc<Primary>>,
    pub meta: Arc<Meta>,
}

/// How long the thread lingers between drains while it has work: the latest a copy is
/// sent after its request, and the most a served answer waits to be handed over.
const LINGER: Duration = Duration::from_millis(1);
/// How often an idle thread (no copy in flight) looks at its inbox.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// What the thread receives.
pub enum Msg {
    Job(Box<Job>),
    /// A served answer, for the copies waiting for it.
    Answer(Vec<oneshot::Sender<Arc<Primary>>>, Arc<Primary>),
}

/// The thread's inbox.
pub struct Handle {
    tx: Sender<Msg>,
}

impl Handle {
    pub fn send(&self, job: Job) {
        if let Err(SendError(Msg::Job(job))) = self.tx.send(Msg::Job(Box::new(job))) {
            job.lane.count(ShadowResult::Error);
        }
    }

    /// Hands a served answer to the copies in `waiting`.
    pub fn answer(&self, waiting: Vec<oneshot::Sender<Arc<Primary>>>, primary: Arc<Primary>) {
        let _ = self.tx.send(Msg::Answer(waiting, primary));
    }
}

/// Starts the shadow thread.
pub fn start(log: Option<EventLog>) -> std::io::Result<Handle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("cohort-shadow".into())
        .spawn(move || {
            cohort_sys::lower_thread_priority();
            runtime.block_on(serve(rx, log));
        })?;
    Ok(Handle { tx })
}

async fn serve(rx: Receiver<Msg>, log: Option<EventLog>) {
    let transport = Arc::new(Transport::default());
    let log = Arc::new(log);
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        let mut got = false;
        loop {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => {
                    got = true;
                    let (transport, log, n) = (transport.clone(), log.clone(), in_flight.clone());
                    n.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let line = run(*job, &transport).await;
                        if let (Some(log), Some(line)) = (log.as_ref(), line) {
                            log.record_line(line);
                        }
                        n.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Ok(Msg::Answer(waiting, primary)) => {
                    got = true;
                    for tx in waiting {
                        let _ = tx.send(primary.clone());
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let busy = got || in_flight.load(Ordering::Relaxed) > 0;
        tokio::time::sleep(if busy { LINGER } else { IDLE_POLL }).await;
    }
}

/// How copies go out: a lean pool per plain-HTTP/1.1 authority, the general client for
/// the rest. Used by this thread only.
#[derive(Default)]
struct Transport {
    clients: Clients,
    pools: std::sync::Mutex<HashMap<(String, Duration), Arc<H1Pool>>>,
}

impl Transport {
    /// Sends `req` to `shadow`.
    async fn send(
        &self,
        shadow: &Shadow,
        req: Request<Body>,
    ) -> Result<Response<UpstreamBody>, ()> {
        if shadow.upstream.scheme == Scheme::HTTP && shadow.protocol == Protocol::Http1 {
            let pool = {
                let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
                pools
                    .entry((
                        shadow.upstream.authority.as_str().to_owned(),
                        shadow.timeout,
                    ))
                    .or_insert_with(|| {
                        Arc::new(H1Pool::new(
                            shadow.upstream.authority.clone(),
                            shadow.timeout,
                        ))
                    })
                    .clone()
            };
            return pool
                .send(req, None)
                .await
                .map(|r| r.map(UpstreamBody::Pooled))
                .map_err(|_| ());
        }
        let client = self.clients.for_shadow(shadow).map_err(|_| ())?;
        client
            .request(req)
            .await
            .map(|r| r.map(UpstreamBody::General))
            .map_err(|_| ())
    }
}

enum Called {
    /// The shadow's answer, read whole (its `head` from when the copy was sent).
    Answer(Answered),
    TooLarge,
    Failed,
}

/// Sends one copy and compares; the line to log, if any.
async fn run(mut job: Job, transport: &Transport) -> Option<Vec<u8>> {
    let lane = job.lane.clone();
    let shadow = &lane.shadow;
    let called = tokio::time::timeout(shadow.timeout, call(&mut job, transport)).await;
    let answer = match called {
        Ok(Called::Answer(a)) => a,
        Ok(Called::TooLarge) => {
            lane.count(ShadowResult::SkippedBody);
            return None;
        }
        Ok(Called::Failed) => return Some(failed(&job, ShadowResult::Error)),
        Err(_) => return Some(failed(&job, ShadowResult::Timeout)),
    };
    let primary = match (&mut job.primary).await {
        Ok(p) => p,
        Err(_) => {
            lane.count(ShadowResult::SkippedPrimary);
            return None;
        }
    };
    let served = match &*primary {
        Primary::Answered(a) => a,
        Primary::TooLarge => {
            lane.count(ShadowResult::SkippedBody);
            return None;
        }
        Primary::Missing => {
            lane.count(ShadowResult::SkippedPrimary);
            return None;
        }
    };
    let max = shadow.config.max_body_bytes;
    if served.body.len() > max {
        lane.count(ShadowResult::SkippedBody);
        return None;
    }
    let (Some(p_body), Some(s_body)) = (readable(served, max), readable(&answer, max)) else {
        lane.count(ShadowResult::SkippedBody);
        return None;
    };
    let outcome = compare(
        &Answer {
            status: served.status,
            grpc_status: served.grpc_status,
            streamed: served.stream.is_some(),
            body: &p_body,
        },
        &Answer {
            status: answer.status,
            grpc_status: answer.grpc_status,
            streamed: answer.stream.is_some(),
            body: &s_body,
        },
        shadow.config.compare.pointer.as_deref(),
        lane.tolerance,
    );
    let result = if outcome.agree {
        ShadowResult::Agree
    } else {
        ShadowResult::Disagree
    };
    lane.count(result);
    if let Some(d) = outcome.max_abs_diff {
        lane.abs_diff.observe(d);
    }
    lane.latency_primary.observe(served.head.as_secs_f64());
    lane.latency_shadow.observe(answer.head.as_secs_f64());
    let payloads = (!outcome.agree
        && shadow.config.log_payloads
        && lane.payload_budget.take(std::time::SystemTime::now()))
    .then(|| (&p_body[..], &s_body[..]));
    Some(compared_line(
        &job, served, &answer, &outcome, result, payloads,
    ))
}

/// Sends the copy and reads the answer, up to the shadow's limit.
async fn call(job: &mut Job, transport: &Transport) -> Called {
    let lane = job.lane.clone();
    let shadow = &lane.shadow;
    let mut req = Request::new(Chunks(std::mem::take(&mut job.body).into()).boxed());
    *req.method_mut() = job.method.clone();
    *req.uri_mut() = job.uri.clone();
    *req.headers_mut() = std::mem::take(&mut job.headers);
    *req.version_mut() = match shadow.protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::H2c => Version::HTTP_2,
    };
    let h = req.headers_mut();
    match &shadow.host_header {
        HostHeader::Literal(v) => {
            h.insert(http::header::HOST, v.clone());
        }
        HostHeader::Upstream => {
            h.insert(http::header::HOST, shadow.upstream.host_value.clone());
        }
        // The client's Host, as the primary got it.
        HostHeader::Preserve => {}
    }
    h.insert(X_COHORT_SHADOW, HeaderValue::from_static("1"));
    let sent = Instant::now();
    let Ok(resp) = transport.send(shadow, req).await else {
        return Called::Failed;
    };
    let head = sent.elapsed();
    let (parts, mut body) = resp.into_parts();
    let max = shadow.config.max_body_bytes;
    let mut copy = BoundedCopy::default();
    let mut status = grpc_status(&parts.headers);
    // A streamed answer is compared on status only: server-sent events at the head, gRPC
    // once its trailers came; neither body is kept.
    let stream = streamed(job.meta.grpc, &parts.headers);
    while stream != Some(Stream::Events) {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(frame) = frame else {
            return Called::Failed;
        };
        if let Some(data) = frame.data_ref() {
            if stream.is_none() && !copy.keep(data, max) {
                return Called::TooLarge;
            }
        } else if let Some(t) = frame.trailers_ref() {
            status = grpc_status(t).or(status);
        }
    }
    Called::Answer(Answered {
        status: parts.status.as_u16(),
        grpc_status: status,
        stream,
        encoding: parts.headers.get(http::header::CONTENT_ENCODING).cloned(),
        head,
        body: copy.into_bytes(),
    })
}

/// An answer's body decoded per its `Content-Encoding` (None: over the limit once
/// decoded). An encoding cohort cannot read leaves the bytes as they are.
fn readable(a: &Answered, max: usize) -> Option<Bytes> {
    let encoding = a.encoding.as_ref().and_then(|v| v.to_str().ok());
    match cohort_compare::decode::decode(&a.body, encoding, max) {
        Ok(std::borrow::Cow::Borrowed(_)) => Some(a.body.clone()),
        Ok(std::borrow::Cow::Owned(v)) => Some(Bytes::from(v)),
        Err(cohort_compare::decode::DecodeError::TooLarge) => None,
        Err(_) => Some(a.body.clone()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The first fields of every shadow line.
fn line_head(job: &Job, result: ShadowResult) -> serde_json::Map<String, serde_json::Value> {
    let m = &job.meta;
    let mut line = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        line.insert(k.to_owned(), v);
    };
    put("type", "shadow".into());
    put("v", 1.into());
    put("ts", cohort_events::clock::rfc3339(m.arrival).into());
    put(
        "event_id",
        format!("{}/{}", m.request_id, job.lane.shadow.name).into(),
    );
    put("experiment", job.lane.experiment.clone().into());
    put("variant", m.variant.clone().into());
    put("shadow", job.lane.shadow.name.clone().into());
    put("phase", m.phase.clone().into());
    put("unit", m.unit.clone().into());
    put("request_id", m.request_id.clone().into());
    put("result", result.as_str().into());
    line
}

/// The line of a copy the shadow did not answer (error, timeout): counted and logged
/// without waiting for the served answer.
fn failed(job: &Job, result: ShadowResult) -> Vec<u8> {
    job.lane.count(result);
    serde_json::Value::Object(line_head(job, result))
        .to_string()
        .into_bytes()
}

/// A compared copy's line: `{"type": "shadow", …, "result", "agree", "compared",
/// "elements", "elements_agreed", "max_abs_diff", "primary_status", "shadow_status",
/// "primary_ms", "shadow_ms"}`, and both answers (cut to `payload_bytes`) when allowed.
fn compared_line(
    job: &Job,
    served: &Answered,
    answer: &Answered,
    o: &Outcome,
    result: ShadowResult,
    payloads: Option<(&[u8], &[u8])>,
) -> Vec<u8> {
    let mut line = line_head(job, result);
    let mut put = |k: &str, v: serde_json::Value| {
        line.insert(k.to_owned(), v);
    };
    put("agree", o.agree.into());
    put("compared", o.how.as_str().into());
    if o.how == How::Predictions {
        put("elements", o.elements.into());
        put("elements_agreed", o.elements_agreed.into());
        put("max_abs_diff", o.max_abs_diff.into());
        if o.shadow_unreadable {
            put("shadow_unreadable", true.into());
        }
    }
    put("primary_status", served.status.into());
    put("shadow_status", answer.status.into());
    if served.grpc_status.is_some() || answer.grpc_status.is_some() {
        put("primary_grpc_status", served.grpc_status.into());
        put("shadow_grpc_status", answer.grpc_status.into());
    }
    put("primary_ms", ms(served.head).into());
    put("shadow_ms", ms(answer.head).into());
    if let Some((p, s)) = payloads {
        let cut = job.lane.shadow.config.payload_bytes;
        put("primary_answer", cut_to(p, cut).into());
        put("shadow_answer", cut_to(s, cut).into());
    }
    serde_json::Value::Object(line).to_string().into_bytes()
}

/// `bytes` as text, at most `max` bytes of it (cut at a character boundary).
fn cut_to(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let mut s = text.into_owned();
    while s.len() > max {
        s.pop();
    }
    s
}

/// A body of frames already in memory.
struct Chunks(VecDeque<Bytes>);

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cut_at_a_character_boundary() {
        assert_eq!(cut_to("héllo".as_bytes(), 2), "h");
        assert_eq!(cut_to(b"hello", 10), "hello");
        assert_eq!(cut_to(b"hello", 3), "hel");
    }
}
