//! A response body that fails when the upstream goes quiet for too long mid-stream.
//!
//! Once the response head has been sent, a failure cannot become a status code: the body
//! errors instead, and hyper aborts the response (HTTP/1: the connection closes without the
//! final chunk; HTTP/2: RST_STREAM). The failure is counted as `aborted` or `idle_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::metrics::{UpstreamErrorKind, VariantMetrics};

/// Wraps an upstream response body with the route's `idle_timeout`.
pub struct IdleTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    /// Armed only when the upstream makes us wait: a small response that is ready at
    /// once never touches the timer wheel.
    sleep: Option<Pin<Box<Sleep>>>,
    metrics: std::sync::Arc<VariantMetrics>,
    done: bool,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration, metrics: std::sync::Arc<VariantMetrics>) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            metrics,
            done: false,
        }
    }
}

/// The body stopped: the upstream sent nothing for `idle_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent no body data for {0:?}; the response was aborted")]
pub struct IdleTimeout(Duration);

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // Data arrived: the next wait starts from scratch.
                this.sleep = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                this.metrics.upstream_error(UpstreamErrorKind::Aborted);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this
                .sleep
                .get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + this.timeout))
                })
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => {
                    this.done = true;
                    this.metrics.upstream_error(UpstreamErrorKind::IdleTimeout);
                    Poll::Ready(Some(Err(Box::new(IdleTimeout(this.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
