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
