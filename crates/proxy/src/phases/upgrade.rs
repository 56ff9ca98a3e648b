//! Upgrade: a WebSocket (HTTP/1.1 `Upgrade`) passes through to the assigned variant.
//!
//! The client's half of the upgrade is taken before the request is forwarded; once the
//! upstream answers 101, the two halves are joined and bytes are copied both ways until
//! either side closes. Reads the response's upgrade extension; changes nothing else.

use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn, Instrument};

use super::Exchange;
use crate::pool::UpstreamBody;

/// Whether a request asks for a WebSocket upgrade (`Upgrade: websocket` with
/// `Connection: upgrade`), the one protocol switch cohort passes through. Any other
/// (`h2c`, `TLS/1.2`) is dropped with the other hop-by-hop headers and the request is
/// forwarded as plain HTTP/1.1: a tunnel would carry requests cohort never routed, counted
/// or recorded.
pub fn is_upgrade(headers: &http::HeaderMap) -> bool {
    let tokens = |name| {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    tokens(http::header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(http::header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// The client's half of the upgrade it asks for, if it asks for one.
pub fn client_half(req: &mut http::Request<Incoming>) -> Option<OnUpgrade> {
    is_upgrade(req.headers()).then(|| hyper::upgrade::on(req))
}

/// Joins the client's half with the upstream's, if the upstream switched protocols.
pub fn join(ex: &Exchange, resp: &mut http::Response<UpstreamBody>, client: Option<OnUpgrade>) {
    let Some(client_side) = client else { return };
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let upstream_side = resp.extensions_mut().remove::<OnUpgrade>();
    tokio::spawn(
        async move {
            let Some(upstream_side) = upstream_side else {
                warn!("the upstream switched protocols without an upgradable connection");
                return;
            };
            match tokio::try_join!(client_side, upstream_side) {
                Ok((client_io, upstream_io)) => {
                    let mut client_io = TokioIo::new(client_io);
                    let mut upstream_io = TokioIo::new(upstream_io);
                    if let Err(e) =
                        tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await
                    {
                        debug!(error = %e, "upgraded connection ended with an error");
                    }
                }
                Err(e) => warn!(error = %e, "upgrade failed"),
            }
        }
        .instrument(ex.span()),
    );
}
