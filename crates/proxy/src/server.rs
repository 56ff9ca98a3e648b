//! The accept loop shared by the public and the admin listener: limits and graceful
//! shutdown, applied once for both.
//!
//! * **Backpressure.** A connection needs a permit of [`Connections`] before it is accepted;
//!   at `limits.max_connections` cohort stops accepting (the kernel's backlog queues, then
//!   refuses) instead of answering 503.
//! * **Slowloris.** HTTP/1 requests must send their whole header within
//!   `limits.header_read_timeout_ms`; hyper applies the same timer to an idle keep-alive
//!   connection waiting for its next request (the two are coupled in hyper 1.x).
//! * **Idle connections.** A connection with no request in flight for
//!   `limits.h2_idle_timeout_ms` is closed gracefully (HTTP/2 GOAWAY). hyper has no such
//!   timeout, so each connection tracks its in-flight requests and last activity here.
//! * **Sizes.** `limits.max_header_bytes` bounds HTTP/1 headers (hyper's read buffer, at
//!   least 8 KiB) and the HTTP/2 header list; `limits.h2_max_concurrent_streams` bounds
//!   streams per HTTP/2 connection.
//! * **Graceful shutdown.** When [`Shutdown::begin`] is called the listener closes (new
//!   connections are refused) and every open connection is shut down gracefully (HTTP/1:
//!   closed after its current response; HTTP/2: GOAWAY, in-flight streams finish).
//!   [`Connections::drained`] waits for them to end.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::ablate::{off, Piece};
use crate::body::{Body, BoxError};
use crate::protocol::{Served, Servers};
use crate::workers::Workers;
use cohort_config::schema::LimitsConfig;

/// The signal that starts a graceful shutdown.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Closes the listeners and asks every connection to finish.
    pub fn begin(&self) {
        self.tx.send_replace(true);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// Open connections of one listener, bounded.
#[derive(Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    max: u32,
}

impl Connections {
    pub fn new(max: u32) -> Self {
        let max = max.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.max as usize - self.permits.available_permits()
    }

    /// Waits until every connection has ended, at most `timeout`; returns how many remain.
    pub async fn drained(&self, timeout: Duration) -> usize {
        match tokio::time::timeout(timeout, self.permits.acquire_many(self.max)).await {
            Ok(Ok(all)) => {
                drop(all);
                0
            }
            _ => self.open(),
        }
    }
}

/// Serves `listener` with `handler` until [`Shutdown::begin`].
pub async fn serve_http<H, Fut>(
    listener: TcpListener,
    what: &'static str,
    limits: LimitsConfig,
    connections: Connections,
    shutdown: Shutdown,
    workers: Workers,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let mut stop = shutdown.subscribe();
    // Connections are told to close only once the listener is closed, so that nobody can
    // see a closed connection and then still connect.
    let (closed_tx, closed_rx) = watch::channel(false);
    let servers = Arc::new(servers(&limits));
    let idle_timeout = Duration::from_millis(limits.h2_idle_timeout_ms);
    let first_request_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let mut accept_warnings = Throttle::new(Duration::from_secs(1));
    let reset_floods = Arc::new(Mutex::new(Throttle::new(Duration::from_secs(1))));
    loop {
        if *stop.borrow() {
            break;
        }
        // Backpressure: no permit, no accept.
        let permit = tokio::select! {
            p = connections.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning,
                    // and say so once a second, not once per failure.
                    if let Some(suppressed) = accept_warnings.allow(Instant::now()) {
                        warn!(listener = what, error = %e, suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            permit,
            peer,
            what,
            reset_floods: reset_floods.clone(),
            handler: handler.clone(),
            servers: servers.clone(),
            closed: closed_rx.clone(),
            idle_timeout,
            first_request_timeout,
        };
        dispatch(&workers, stream, connection);
    }
    // New connections are refused from here on; then the open ones are asked to finish.
    drop(listener);
    closed_tx.send_replace(true);
}

/// One accepted connection and what serving it needs.
struct Connection<H> {
    /// Returned when the connection ends: one of the listener's `max_connections`.
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
    what: &'static str,
    /// One warning a second for connections closed for too many stream resets.
    reset_floods: Arc<Mutex<Throttle>>,
    handler: H,
    servers: Arc<Servers>,
    /// Turns true once the listener is closed: the connection then finishes gracefully.
    closed: watch::Receiver<bool>,
    idle_timeout: Duration,
    /// From accept to the first request's complete head.
    first_request_timeout: Duration,
}

/// Serves `connection` where it was accepted, or hands it to the next worker thread's
/// runtime (the stream moves to that runtime's reactor).
fn dispatch<H, Fut>(workers: &Workers, stream: TcpStream, connection: Connection<H>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let (what, peer) = (connection.what, connection.peer);
    match workers.next() {
        None => {
            tokio::spawn(connection.serve(stream));
        }
        Some(worker) => match stream.into_std() {
            Ok(std_stream) => {
                worker.spawn(async move {
                    match TcpStream::from_std(std_stream) {
                        Ok(stream) => connection.serve(stream).await,
                        Err(e) => warn!(listener = what, %peer, error = %e, "cannot move a connection to its worker"),
                    }
                });
            }
            Err(e) => {
                warn!(listener = what, %peer, error = %e, "cannot move a connection to its worker")
            }
        },
    }
}

impl<H, Fut> Connection<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    /// Serves the connection to its end: HTTP/1.1 or HTTP/2, closed gracefully once the
    /// listener closes or after `idle_timeout` with no request in flight.
    async fn serve(self, stream: TcpStream) {
        let Connection {
            permit: _permit,
            peer,
            what,
            reset_floods,
            handler,
            servers,
            closed: mut stop,
            idle_timeout,
            first_request_timeout,
        } = self;
        let activity = Arc::new(Activity::new());
        let service = {
            let activity = activity.clone();
            service_fn(move |req| {
                let tracked = !off(Piece::Activity);
                if tracked {
                    activity.start();
                }
                // Boxed: hyper keeps a slot for the service's future inside each
                // connection's task, so an unboxed request future (it holds every
                // phase's state) would be held by every idle keep-alive connection too.
                let response = Box::pin(handler(req, peer));
                let activity = activity.clone();
                async move {
                    let resp = response.await;
                    Ok::<_, Infallible>(resp.map(|body| Tracked {
                        inner: body,
                        activity: tracked.then_some(activity),
                    }))
                }
            })
        };
        let mut conn = Served::new(stream, service, &servers);
        // What ends a connection from the side: shutdown, idleness, or silence before a
        // first request. Polled only when its own timer or signal fired, not on each of the
        // connection's wake-ups.
        let mut closing = *stop.borrow();
        let side = async {
            tokio::select! {
                _ = stop.changed() => Side::Shutdown,
                why = activity.ends(idle_timeout, first_request_timeout) => why,
            }
        };
        tokio::pin!(side);
        let side_waker = Arc::new(SideWaker::default());
        let waker = Waker::from(side_waker.clone());
        if closing {
            conn.graceful_shutdown();
        }
        let ended = std::future::poll_fn(|cx| {
            if let Poll::Ready(res) = Pin::new(&mut conn).poll(cx) {
                return Poll::Ready(res);
            }
            if !closing && side_waker.take(cx.waker()) {
                if let Poll::Ready(why) = side.as_mut().poll(&mut Context::from_waker(&waker)) {
                    if why == Side::Silent {
                        // Nothing to finish gracefully: the slot goes back now.
                        debug!(listener = what, %peer, "connection closed: no request head in time");
                        return Poll::Ready(Ok(()));
                    }
                    if why == Side::Idle {
                        debug!(listener = what, %peer, "idle connection closed");
                    }
                    closing = true;
                    conn.graceful_shutdown();
                    // The connection acts on it when polled again.
                    cx.waker().wake_by_ref();
                }
            }
            Poll::Pending
        })
        .await;
        if let Err(e) = ended {
            if is_reset_flood(&*e) {
                let mut t = reset_floods.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(suppressed) = t.allow(Instant::now()) {
                    warn!(listener = what, %peer, suppressed, "HTTP/2 connection closed: too many stream resets (a rapid-reset flood?)");
                }
            } else {
                debug!(listener = what, %peer, error = %e, "connection ended with an error");
            }
        }
    }
}

fn servers(limits: &LimitsConfig) -> Servers {
    let header_read_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let max_buf_size = (limits.max_header_bytes as usize).max(8192);
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(max_buf_size);
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(max_buf_size);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes);
    Servers { http1, auto: b }
}

/// Whether a connection ended because its peer reset streams faster than allowed: h2 then
/// sends GOAWAY with `ENHANCE_YOUR_CALM` (the rapid-reset defence).
fn is_reset_flood(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        source = err.source();
    }
    false
}

/// At most one log line per `every`: a failure that repeats thousands of times a second
/// (file descriptors exhausted) must not flood the log it is reported in.
struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log now; if so, how many were left out since the last line.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now < last + self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Why a connection is closed from the side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Shutdown,
    Idle,
    /// No request head within the first-request timeout of the accept.
    Silent,
}

/// Requests in flight on one connection, and when it last did anything.
///
/// Requests only store a time and bump a counter: nothing wakes the connection's task or
/// touches a timer per request. One timer per connection fires at the earliest moment the
/// connection could have been idle for the timeout, and is re-armed from what it finds.
struct Activity {
    born: Instant,
    /// A request has begun (its head was read).
    spoke: AtomicBool,
    inflight: AtomicUsize,
    /// Milliseconds since `born` of the last response end.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            spoke: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn start(&self) {
        // No clock read: idleness is judged only with nothing in flight, and then the
        // last end is later than every start.
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.spoke.store(true, Ordering::Relaxed);
    }

    fn end(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        self.touch();
    }

    /// Completes when the connection should be closed, with one timer: `Silent` if no
    /// request head arrived within `first` of the accept (hyper's own header timeout starts
    /// only at the first byte, so a connection that sends nothing would hold its slot until
    /// the idle timeout), `Idle` once nothing has been in flight for `idle` (checked when
    /// the timer fires: a connection busy then is checked again `idle` later).
    async fn ends(&self, idle: Duration, first: Duration) -> Side {
        let mut deadline = self.born + first.min(idle);
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            let now = Instant::now();
            if !self.spoke.load(Ordering::Relaxed) {
                return if now >= self.born + first {
                    Side::Silent
                } else {
                    Side::Idle
                };
            }
            if self.inflight.load(Ordering::Acquire) > 0 {
                deadline = now + idle;
                continue;
            }
            let last = self.born + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if now >= last + idle {
                return Side::Idle;
            }
            deadline = last + idle;
        }
    }
}

/// The waker given to a connection's side future (shutdown signal, idle timer): notes that
/// the side future asked to be polled, then wakes the connection's task.
struct SideWaker {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Default for SideWaker {
    fn default() -> Self {
        Self {
            // Polled once at the start, to arm its timer and signal.
            fired: AtomicBool::new(true),
            task: Mutex::new(None),
        }
    }
}

impl SideWaker {
    /// Whether the side future asked to be polled since the last call; if so, `task` is
    /// the waker it wakes from now on.
    fn take(&self, task: &Waker) -> bool {
        if !self.fired.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut slot = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(task)) {
            *slot = Some(task.clone());
        }
        true
    }
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let slot = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = slot.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// A response body that marks its request finished when it ends or is dropped.
struct Tracked {
    inner: Body,
    activity: Option<Arc<Activity>>,
}

impl Tracked {
    fn finish(&mut self) {
        if let Some(a) = self.activity.take() {
            a.end();
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish();
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_line_a_period_through_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(t.allow(start), Some(0));
        for i in 1..1000 {
            assert_eq!(t.allow(start + Duration::from_micros(i)), None);
        }
        assert_eq!(t.allow(start + Duration::from_secs(1)), Some(999));
        assert_eq!(t.allow(start + Duration::from_millis(1500)), None);
    }
}
