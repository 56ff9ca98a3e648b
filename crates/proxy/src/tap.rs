//! The one place to observe a body as it streams: a [`Tap`] sees each data frame as it
//! passes and, once, how the stream ended. Bodies are never buffered for it.
//!
//! The record phase taps the response body to write the exposure when the response ends
//! ([`crate::phases::record`]); features that need the bytes of a request or a response
//! tap the request body in the send phase and the response body once the record phase has
//! wrapped it: model monitoring's capture ([`crate::capture`]) and shadow traffic's copies
//! ([`crate::shadow`]) do. A tap sees a frame before the next reader does, and may only
//! clone it (`Bytes` clones share the buffer).

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// How a body's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The last frame was delivered (or the end was signalled).
    Complete,
    /// The body failed: nothing more will come.
    Failed,
    /// The body was dropped before its end (the peer went away, the connection broke).
    Dropped,
}

/// An observer of one body.
pub trait Tap: Send + 'static {
    /// A data frame passing through, before the next reader sees it.
    #[inline]
    fn data(&mut self, _chunk: &Bytes) {}
    /// The trailers (gRPC's status travels in them), before the next reader sees them.
    #[inline]
    fn trailers(&mut self, _trailers: &http::HeaderMap) {}
    /// The stream ended; called exactly once.
    fn end(self, how: Ending);
}

/// `inner`, observed by a tap.
pub struct Tapped<B, T: Tap> {
    inner: B,
    tap: Option<T>,
}

impl<B: HttpBody, T: Tap> Tapped<B, T> {
    pub fn new(inner: B, tap: T) -> Self {
        let mut this = Self {
            inner,
            tap: Some(tap),
        };
        // An empty body (a 204, a 101 upgrade) ends before anyone polls it.
        if this.inner.is_end_stream() {
            this.end(Ending::Complete);
        }
        this
    }
}

impl<B, T: Tap> Tapped<B, T> {
    fn end(&mut self, how: Ending) {
        if let Some(tap) = self.tap.take() {
            tap.end(how);
        }
    }
}

impl<B, T: Tap> Drop for Tapped<B, T> {
    fn drop(&mut self) {
        self.end(Ending::Dropped);
    }
}

impl<B, T> HttpBody for Tapped<B, T>
where
    B: HttpBody<Data = Bytes> + Unpin,
    T: Tap + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(tap)) = (&polled, self.tap.as_mut()) {
            if let Some(chunk) = frame.data_ref() {
                tap.data(chunk);
            } else if let Some(trailers) = frame.trailers_ref() {
                tap.trailers(trailers);
            }
        }
        if let Some(how) = ending(&polled, &self.inner) {
            self.end(how);
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

/// A body's frames kept up to a limit, for the taps that copy a body: the frames are
/// `Bytes` clones that share the body's buffers, never copies of its bytes.
#[derive(Debug, Default)]
pub struct BoundedCopy {
    frames: Vec<Bytes>,
    len: usize,
    over: bool,
}

impl BoundedCopy {
    /// Keeps `chunk`; false once the copy is longer than `limit` (what it held is let go).
    pub fn keep(&mut self, chunk: &Bytes, limit: usize) -> bool {
        if self.over {
            return false;
        }
        self.len += chunk.len();
        if self.len > limit {
            self.over = true;
            self.frames = Vec::new();
            return false;
        }
        self.frames.push(chunk.clone());
        true
    }

    /// Whether the body went past the limit.
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// The frames kept, in order.
    pub fn into_frames(self) -> Vec<Bytes> {
        self.frames
    }

    /// The frames kept, as one buffer (no copy for a body of one frame).
    pub fn into_bytes(self) -> Bytes {
        concat(&self.frames)
    }
}

/// `frames` as one buffer (no copy for one frame).
pub fn concat(frames: &[Bytes]) -> Bytes {
    match frames {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut b = bytes::BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            many.iter().for_each(|f| b.extend_from_slice(f));
            b.freeze()
        }
    }
}

/// How a request's body went upstream: still going, sent whole, or broken off by the
/// client. The pool gives a connection back only once the request it carried went out
/// whole; a body the client broke off makes the request the client's failure, not the
/// model's. Cloning shares the state.
#[derive(Clone, Default)]
pub struct Upload(Arc<AtomicU8>);

const COMPLETE: u8 = 1;
const FAILED: u8 = 2;

impl Upload {
    /// The body went out to its end.
    pub fn complete(&self) -> bool {
        self.0.load(Ordering::Acquire) == COMPLETE
    }

    /// The client's side of the body failed: cut short, or malformed framing.
    pub fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAILED
    }
}

impl Tap for Upload {
    fn end(self, how: Ending) {
        match how {
            Ending::Complete => self.0.store(COMPLETE, Ordering::Release),
            Ending::Failed => self.0.store(FAILED, Ordering::Release),
            // Dropped by the client connection to the upstream: neither.
            Ending::Dropped => {}
        }
    }
}

/// Whether `polled` (a poll of `body`) ended the stream, and how.
pub fn ending<B: HttpBody, U, E>(polled: &Poll<Option<Result<U, E>>>, body: &B) -> Option<Ending> {
    match polled {
        Poll::Ready(None) => Some(Ending::Complete),
        Poll::Ready(Some(Err(_))) => Some(Ending::Failed),
        Poll::Ready(Some(Ok(_))) if body.is_end_stream() => Some(Ending::Complete),
        _ => None,
    }
}
