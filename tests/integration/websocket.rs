//! WebSocket (HTTP/1.1 Upgrade) passes through cohort to the assigned variant.

use crate::common;

use common::net::{routes, start_proxy};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server that prefixes every message with its name.
async fn echo(name: &'static str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        let reply = format!("{name}: {}", t.as_str());
                        if ws.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_echo_through_the_proxy_is_sticky() {
    let (rf, lr) = (echo("rf").await, echo("lr").await);
    let cfg = routes(
        &common::net::two_arm(rf, lr, "").replace("path_prefix: /invocations", "path_prefix: /ws"),
    );
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    for user in ["alice", "bob", "carol", "dave"] {
        let mut req = format!("ws://{proxy}/ws").into_client_request().unwrap();
        req.headers_mut().insert("x-user-id", user.parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("upgrade through cohort");
        let variant = exp.variants[cohort_config::assign(&exp, user).variant]
            .name
            .clone();
        assert_eq!(resp.headers()["x-cohort-variant"], variant.as_str());
        for i in 0..3 {
            ws.send(Message::text(format!("hello {i}"))).await.unwrap();
            let reply = ws.next().await.unwrap().unwrap();
            assert_eq!(
                reply.into_text().unwrap().as_str(),
                format!("{variant}: hello {i}")
            );
        }
        ws.close(None).await.unwrap();
    }
}

/// An upstream that switches protocols whenever a request offers an upgrade (as an h2c
/// server would), and otherwise answers 200; it reports the upgrade headers it received.
async fn switching_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let upgrade = head
                    .lines()
                    .find_map(|l| l.strip_prefix("upgrade:"))
                    .map(|v| v.trim().to_owned());
                let answer: &[u8] = if upgrade.is_some() {
                    b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
                };
                let _ = tx.send(upgrade);
                let _ = conn.write_all(answer).await;
            });
        }
    });
    (addr, rx)
}

/// Only WebSocket upgrades pass through: an `h2c` upgrade reaches the upstream as a plain
/// request, so the connection never becomes a tunnel for requests cohort did not see.
#[tokio::test]
async fn an_h2c_upgrade_is_forwarded_as_plain_http() {
    use tokio::io::AsyncWriteExt;
    let (up, mut seen) = switching_upstream().await;
    let proxy = start_proxy(routes(&common::net::two_arm(up, up, ""))).await;
    let mut conn = tokio::net::TcpStream::connect(proxy).await.unwrap();
    conn.write_all(
        b"GET /invocations HTTP/1.1\r\nhost: t\r\nx-user-id: alice\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    let head = common::net::read_head(&mut conn).await;
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        seen.recv().await.unwrap(),
        None,
        "the upstream was offered an upgrade"
    );
}
