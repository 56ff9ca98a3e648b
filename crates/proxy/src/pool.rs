//! A lean keep-alive pool for plain-HTTP/1.1 upstreams, one per worker thread.
//!
//! The general client (hyper-util's, [`super::upstream`]) is built for any thread to use
//! any connection: a shared, locked pool keyed by a hashed authority, a spawned task per
//! response to return its connection, retries and checkout bookkeeping. Profiled at
//! saturation, that was ~8% of a serving thread's time (bench/README.md). Here each
//! worker thread has its own pool per upstream (see [`crate::workers`]), so a connection is
//! taken and given back by the thread that drives it: a `Vec` of idle senders behind an
//! uncontended lock, returned when the response body ends.
//!
//! Used for `http://` upstreams with `protocol: http1` and no protocol upgrade; https, h2c
//! and WebSocket requests keep the general client.
//!
//! Semantics kept from the general client: a request that an idle connection could not
//! take (the upstream closed it while it was idle) is retried once on a new connection —
//! only when hyper hands the request back unsent, so nothing is ever sent twice; idle
//! connections older than [`IDLE_TIMEOUT`] are not reused; at most [`MAX_IDLE`] are kept.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::body::Body;
use crate::tap::{ending, Ending, Upload};

/// Idle connections older than this are closed instead of reused (the general client's
/// default too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream and worker.
pub const MAX_IDLE: usize = 1024;

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connect error")]
    Connect(#[source] std::io::Error),
    #[error("connect timeout after {0:?}")]
    ConnectTimeout(Duration),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// The pools of one upstream, one per worker thread.
pub type WorkerPools = Arc<[Arc<H1Pool>]>;

/// Idle connections to one upstream, used by one worker thread.
pub struct H1Pool {
    authority: Authority,
    connect_timeout: Duration,
    idle: Mutex<Vec<(SendRequest<Body>, Instant)>>,
}

impl H1Pool {
    pub fn new(authority: Authority, connect_timeout: Duration) -> Self {
        Self {
            authority,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` (its URI is put in origin form) on an idle connection or a new one.
    /// `sent`, for a request whose body was still to come, turns true once the body went
    /// out whole; until then the connection is not given back (see [`PooledBody`]).
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
        sent: Option<Upload>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
        // Idle connections first; after a request came back unsent, a new connection.
        let mut force_new = false;
        loop {
            let idle = if force_new { None } else { self.checkout() };
            let fresh = idle.is_none();
            let mut sender = match idle {
                Some(s) => s,
                None => self.connect().await?,
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(e.into());
                }
                continue; // a stale idle connection: the next one
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let mut resp = resp.map(|inner| PooledBody {
                        inner,
                        back: Some((sender, self.clone())),
                        sent,
                    });
                    if resp.body().inner.is_end_stream() {
                        resp.body_mut().give_back();
                    }
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Not sent (the upstream closed the idle connection): once more, on a
                    // new connection.
                    Some(unsent) if !fresh => {
                        req = unsent;
                        force_new = true;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// A live idle connection, most recently used first.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, PoolError> {
        let host = self.authority.host();
        let port = self.authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)),
        )
        .await
        .map_err(|_| PoolError::ConnectTimeout(self.connect_timeout))?
        .map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A response body from a pooled connection: the connection goes back to its pool when
/// the body has been read to its end and the request's own body went out whole. An
/// upstream may answer before it has read the upload (a 401, a 413): a connection still
/// carrying a client's slow upload would make the next request wait behind it, so it is
/// closed instead (dropped earlier, likewise).
pub struct PooledBody {
    inner: Incoming,
    back: Option<(SendRequest<Body>, Arc<H1Pool>)>,
    /// None when the request had no body left to send.
    sent: Option<Upload>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            if self.sent.as_ref().is_none_or(Upload::complete) {
                pool.give_back(sender);
            }
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match ending(&polled, &self.inner) {
            Some(Ending::Complete) => self.give_back(),
            Some(Ending::Failed | Ending::Dropped) => self.back = None,
            None => {}
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

/// A response body from either client.
pub enum UpstreamBody {
    General(Incoming),
    Pooled(PooledBody),
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::General(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Pooled(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::General(b) => b.is_end_stream(),
            UpstreamBody::Pooled(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::General(b) => b.size_hint(),
            UpstreamBody::Pooled(b) => b.size_hint(),
        }
    }
}

/// Why an upstream call failed, from either client.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    #[error(transparent)]
    General(#[from] hyper_util::client::legacy::Error),
    #[error(transparent)]
    Pooled(#[from] PoolError),
}

impl UpstreamFailure {
    /// The connection could not be made (as opposed to failing once made).
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamFailure::General(e) => e.is_connect(),
            UpstreamFailure::Pooled(e) => {
                matches!(e, PoolError::Connect(_) | PoolError::ConnectTimeout(_))
            }
        }
    }
}
