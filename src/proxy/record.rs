//! A response body that writes the request's exposure event when the response ends:
//! complete, failed mid-body (`aborted: true`), or dropped before its end because the
//! client went away (`aborted: true`). Off the response path: recording is a `try_send`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::{Body, BoxError};
use crate::events::{EventLog, LazyEvent};

pub struct RecordOnEnd<B = Body> {
    inner: B,
    pending: Option<(Box<dyn LazyEvent>, EventLog)>,
}

impl<B: HttpBody> RecordOnEnd<B> {
    pub fn new(inner: B, exposure: Box<dyn LazyEvent>, log: EventLog) -> Self {
        let mut this = Self {
            inner,
            pending: Some((exposure, log)),
        };
        // An empty body (a 204, a 101 upgrade) ends before anyone polls it.
        if this.inner.is_end_stream() {
            this.finish(false);
        }
        this
    }
}

impl<B> RecordOnEnd<B> {
    fn finish(&mut self, aborted: bool) {
        if let Some((mut exposure, log)) = self.pending.take() {
            if aborted {
                exposure.set_aborted();
            }
            log.record_lazy(exposure);
        }
    }
}

impl<B> Drop for RecordOnEnd<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away or the connection broke.
        self.finish(true);
    }
}

impl<B> HttpBody for RecordOnEnd<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match ending(&polled, &self.inner) {
            Some(Ending::Complete) => self.finish(false),
            Some(Ending::Failed) => self.finish(true),
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

/// How a body's stream ended, read from one poll of it.
pub enum Ending {
    /// The last frame was delivered (or the end was signalled).
    Complete,
    /// The body failed: nothing more will come.
    Failed,
}

/// Whether `polled` (a poll of `body`) ended the stream: a response body's wrappers act on
/// this once (record the exposure, give the connection back).
pub fn ending<B: HttpBody, T, E>(polled: &Poll<Option<Result<T, E>>>, body: &B) -> Option<Ending> {
    match polled {
        Poll::Ready(None) => Some(Ending::Complete),
        Poll::Ready(Some(Err(_))) => Some(Ending::Failed),
        Poll::Ready(Some(Ok(_))) if body.is_end_stream() => Some(Ending::Complete),
        _ => None,
    }
}
