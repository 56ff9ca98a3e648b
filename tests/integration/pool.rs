//! The lean upstream pool (src/proxy/pool.rs) over real sockets: connections are reused,
//! and an upstream that closes its keep-alive connections loses no request.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::net::{client, routes, send, start_proxy, two_arm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Reads one request head into `buf` (which may hold bytes already): where it ends and its
/// Content-Length. None when the peer closes first.
async fn request_head(
    conn: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((head_end, len))
}

/// Writes a small JSON 200 response; false when the connection is gone.
async fn answer(conn: &mut tokio::net::TcpStream) -> bool {
    let body = br#"{"predictions": [0]}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.is_ok() && conn.write_all(body).await.is_ok()
}

/// A hand-written HTTP/1.1 upstream that counts the connections it accepts. With
/// `close_after_each`, it closes every connection right after its first response, without
/// saying so (no `Connection: close`): the client finds out only from the socket.
async fn upstream(close_after_each: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: the head, then Content-Length bytes of body.
                    let Some((head_end, len)) = request_head(&mut conn, &mut buf).await else {
                        return;
                    };
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    if !answer(&mut conn).await {
                        return;
                    }
                    if close_after_each {
                        return; // dropped: FIN, no warning
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let (up, accepted) = upstream(false).await;
    let proxy = start_proxy(routes(&two_arm(up, up, ""))).await;
    let c = client();
    for i in 0..50 {
        let user = format!("user-{i}");
        let a = send(&c, proxy, "/invocations", &[("x-user-id", user.as_str())]).await;
        assert_eq!(a.status, 200, "request {i}: {:?}", a.body);
    }
    // Both variants name the same upstream: one pool, one connection.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_upstream_closing_its_idle_connections_loses_no_request() {
    let (up, accepted) = upstream(true).await;
    let proxy = start_proxy(routes(&two_arm(up, up, ""))).await;
    let c = client();
    let n = 200;
    for i in 0..n {
        let user = format!("user-{i}");
        let a = send(&c, proxy, "/invocations", &[("x-user-id", user.as_str())]).await;
        assert_eq!(a.status, 200, "request {i}: {:?}", a.body);
    }
    // Every request needed a connection of its own: none was sent on a closed one and
    // lost (a closed idle connection is noticed, or the unsent request retried).
    assert_eq!(accepted.load(Ordering::SeqCst), n);
}

/// A hand-written HTTP/1.1 upstream that answers each request as soon as its head has
/// arrived, before reading its body (as an upstream does on 401, 404 or 413), then reads
/// the body and serves the next request on the same connection.
async fn eager_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some((head_end, len)) = request_head(&mut conn, &mut buf).await else {
                        return;
                    };
                    if !answer(&mut conn).await {
                        return;
                    }
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                }
            });
        }
    });
    addr
}

/// A client uploading slowly to an upstream that answered early must not hold the upstream
/// connection another user's request is sent on: the connection goes back to the pool only
/// once the upload is complete, so the next request takes a new one.
#[tokio::test]
async fn a_slow_upload_does_not_hold_up_the_next_users_request() {
    let up = eager_upstream().await;
    // Both variants name the same upstream: one pool. The route's timeout is 300 ms.
    let proxy = start_proxy(routes(&two_arm(up, up, ""))).await;
    let mut alice = tokio::net::TcpStream::connect(proxy).await.unwrap();
    alice
        .write_all(b"POST /invocations HTTP/1.1\r\nhost: t\r\nx-user-id: alice\r\ncontent-length: 4000\r\n\r\n")
        .await
        .unwrap();
    alice.write_all(&[b'x'; 100]).await.unwrap();
    // Alice's answer comes while her upload has 3 900 bytes to go.
    let head = common::net::read_head(&mut alice).await;
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The rest of the upload: 100 bytes every 50 ms, about 2 s.
    let upload = tokio::spawn(async move {
        for _ in 1..40 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if alice.write_all(&[b'x'; 100]).await.is_err() {
                break;
            }
        }
    });
    let bob = send(&client(), proxy, "/invocations", &[("x-user-id", "bob")]).await;
    assert_eq!(
        bob.status, 200,
        "bob waited behind alice's upload: {:?}",
        bob.body
    );
    upload.await.unwrap();
}
