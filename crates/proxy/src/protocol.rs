//! One port for HTTP/1.1 and h2c: a connection's first bytes pick the protocol.
//!
//! hyper-util's `auto` server does the same, but its connection keeps HTTP/2's state
//! inline beside HTTP/1's, so every HTTP/1 connection would hold room for an HTTP/2 one for
//! as long as it lives (bench/README.md has the sizes). Here the first bytes are peeked,
//! not read: a connection whose first bytes cannot begin the HTTP/2 preface is served by
//! hyper's HTTP/1 connection directly, on the plain stream; one whose bytes so far all
//! match the preface goes to the `auto` server, which reads the preface itself (and waits
//! for the rest of it if it came in pieces). Either connection is boxed, so the state a
//! connection's task holds is a pointer, whichever protocol it speaks.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

use bytes::Bytes;
use http_body::Body as HttpBody;

use crate::body::BoxError;

/// What a prior-knowledge h2c client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The two servers a connection may be given to, configured alike.
pub struct Servers {
    pub http1: http1::Builder,
    pub auto: auto::Builder<TokioExecutor>,
}

type Io = TokioIo<TcpStream>;

/// A connection being served, or waiting for its first bytes to say how.
pub enum Served<'a, S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    B: HttpBody,
{
    Peeking {
        stream: TcpStream,
        service: S,
        servers: &'a Servers,
    },
    Http1(Pin<Box<http1::UpgradeableConnection<Io, S>>>),
    Auto(Pin<Box<auto::UpgradeableConnection<'a, Io, S, TokioExecutor>>>),
    /// Closed before any byte picked a protocol.
    Done,
}

// Nothing in it is ever pinned in place: the service is only moved out, and the
// connections are pinned in their boxes.
impl<S, B> Unpin for Served<'_, S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    B: HttpBody,
{
}

impl<'a, S, B> Served<'a, S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes, Error = BoxError> + Send + 'static,
{
    pub fn new(stream: TcpStream, service: S, servers: &'a Servers) -> Self {
        Served::Peeking {
            stream,
            service,
            servers,
        }
    }

    /// Finishes gracefully: HTTP/1 after the response in flight, HTTP/2 with GOAWAY; a
    /// connection that has sent nothing yet is closed.
    pub fn graceful_shutdown(&mut self) {
        match self {
            Served::Peeking { .. } => *self = Served::Done,
            Served::Http1(c) => c.as_mut().graceful_shutdown(),
            Served::Auto(c) => c.as_mut().graceful_shutdown(),
            Served::Done => {}
        }
    }
}

impl<'a, S, B> Future for Served<'a, S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes, Error = BoxError> + Send + 'static,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match this {
                Served::Peeking { stream, .. } => {
                    let mut first = [0u8; H2_PREFACE.len()];
                    let mut buf = ReadBuf::new(&mut first);
                    match stream.poll_peek(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        // Closed before a byte: nothing to serve.
                        Poll::Ready(Ok(0)) => {
                            *this = Served::Done;
                            return Poll::Ready(Ok(()));
                        }
                        Poll::Ready(Ok(n)) => {
                            let h2 = buf.filled()[..n] == H2_PREFACE[..n];
                            let Served::Peeking {
                                stream,
                                service,
                                servers,
                            } = std::mem::replace(this, Served::Done)
                            else {
                                unreachable!("matched as Peeking above");
                            };
                            let io = TokioIo::new(stream);
                            *this = if h2 {
                                Served::Auto(Box::pin(
                                    servers.auto.serve_connection_with_upgrades(io, service),
                                ))
                            } else {
                                Served::Http1(Box::pin(
                                    servers.http1.serve_connection(io, service).with_upgrades(),
                                ))
                            };
                        }
                    }
                }
                Served::Http1(c) => return c.as_mut().poll(cx).map_err(BoxError::from),
                Served::Auto(c) => return c.as_mut().poll(cx),
                Served::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}
