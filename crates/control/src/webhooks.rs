//! Webhooks: each rollout action a receiver asked for, and each drift a monitor's
//! `on_drift` names, POSTed as JSON, off the request path and off the control plane's lock.
//!
//! A delivery carries `x-cohort-idempotency-key` (a rollout action's:
//! `<rollout id>-<attempt>-<step>-<kind>`), the same on every replica that sends it, so that
//! a receiver can drop the copies several replicas send, and, with `secret_env`, `x-cohort-signature: sha256=<hex>`, the
//! HMAC-SHA256 of the body under that secret. A delivery is retried with backoff (1 s,
//! doubling, capped at 60 s) on a connection failure, a timeout, 408, 429 or 5xx, up to
//! [`MAX_ATTEMPTS`] times; another 4xx is final. Deliveries still pending when the process
//! stops are not sent (each action is in rollouts.jsonl and the log).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::{IntCounterVec, Opts};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{error, warn};

use cohort_config::schema::{WebhookConfig, WebhookEvent};
use cohort_rollout::{Kind, RolloutEvent};

/// Tries of one delivery before it is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// Deliveries waiting to be sent; past it a new one is dropped (counted).
const QUEUE: usize = 1024;
/// Per try.
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The webhook event an action is, if any.
fn event_of(kind: Kind) -> Option<WebhookEvent> {
    match kind {
        Kind::Start | Kind::Advance => Some(WebhookEvent::Step),
        Kind::Rollback => Some(WebhookEvent::Rollback),
        Kind::Promote => Some(WebhookEvent::Promote),
        Kind::Pause => Some(WebhookEvent::Paused),
        Kind::Done | Kind::Resume => None,
    }
}

fn label(e: WebhookEvent) -> &'static str {
    match e {
        WebhookEvent::Step => "step",
        WebhookEvent::Rollback => "rollback",
        WebhookEvent::Promote => "promote",
        WebhookEvent::Paused => "paused",
    }
}

/// One POST to make.
struct Delivery {
    url: String,
    body: Bytes,
    event: &'static str,
    key: String,
    secret_env: Option<String>,
}

/// The webhook sender of a process. Cloning is cheap.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<Delivery>,
    outcomes: IntCounterVec,
}

/// What a receiver is told of an action.
pub struct Notice<'a> {
    pub event: &'a RolloutEvent,
    /// The step (from 0) and share before the action (None: the rollout had no state).
    pub from: Option<(usize, f64)>,
    pub webhooks: &'a [WebhookConfig],
    /// The admin listener, for the link to the live report.
    pub admin: SocketAddr,
}

impl Webhooks {
    /// Starts the sender on the current runtime; its outcomes count in `outcomes`. The
    /// HTTP client (and the system's CA roots it loads) is made at the first delivery, so
    /// that a process without webhooks holds none of it.
    pub fn start(outcomes: IntCounterVec) -> Self {
        let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE);
        let counted = outcomes.clone();
        tokio::spawn(async move {
            let mut client: Option<HttpsClient> = None;
            while let Some(d) = rx.recv().await {
                if client.is_none() {
                    match self::client() {
                        Ok(c) => client = Some(c),
                        Err(e) => {
                            counted.with_label_values(&["failed"]).inc();
                            error!(url = %d.url, event = d.event, error = %e, "webhook not sent");
                            continue;
                        }
                    }
                }
                let Some(c) = &client else { continue };
                // Each delivery on its own: a slow receiver holds up no other.
                tokio::spawn(deliver(c.clone(), d, counted.clone()));
            }
        });
        Self { tx, outcomes }
    }

    /// The family that counts outcomes: `cohort_rollout_webhooks_total{result}`.
    pub fn metric() -> IntCounterVec {
        IntCounterVec::new(
            Opts::new(
                "cohort_rollout_webhooks_total",
                "Rollout webhook deliveries by result: delivered, retried (one per failed try that is tried again), failed (given up), dropped (the queue was full).",
            ),
            &["result"],
        )
        .expect("valid metric")
    }

    /// Queues the deliveries `notice` asks for. Never waits: a full queue drops (counted).
    pub fn notify(&self, notice: &Notice<'_>) {
        let Some(event) = event_of(notice.event.kind) else {
            return;
        };
        let e = notice.event;
        let body = body(notice, event);
        let key = format!(
            "{}-{}-{}-{}",
            e.rollout_id,
            e.attempt,
            e.step,
            e.kind.label()
        );
        for hook in notice.webhooks.iter().filter(|h| h.events.contains(&event)) {
            let d = Delivery {
                url: hook.url.clone(),
                body: body.clone(),
                event: label(event),
                key: key.clone(),
                secret_env: hook.secret_env.clone(),
            };
            if self.tx.try_send(d).is_err() {
                self.outcomes.with_label_values(&["dropped"]).inc();
                warn!(url = %hook.url, "the webhook queue is full: a rollout webhook was dropped");
            }
        }
    }
}

impl Webhooks {
    /// Queues one POST of `body` (JSON) to `url`, sent as `x-cohort-event: event` with its
    /// idempotency key, signed with the key in `secret_env`. Never waits: a full queue
    /// drops it (counted).
    pub fn post(
        &self,
        url: &str,
        body: Bytes,
        event: &'static str,
        key: String,
        secret_env: Option<String>,
    ) {
        let d = Delivery {
            url: url.to_owned(),
            body,
            event,
            key,
            secret_env,
        };
        if self.tx.try_send(d).is_err() {
            self.outcomes.with_label_values(&["dropped"]).inc();
            warn!(url = %url, event, "the webhook queue is full: a webhook was dropped");
        }
    }
}

/// The JSON body of a delivery.
fn body(n: &Notice<'_>, event: WebhookEvent) -> Bytes {
    let e = n.event;
    let host = if n.admin.ip().is_unspecified() {
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned())
    } else {
        n.admin.ip().to_string()
    };
    let v = json!({
        "event": label(event),
        "experiment": e.experiment,
        "rollout_id": e.rollout_id,
        "attempt": e.attempt,
        "kind": e.kind.label(),
        "from": n.from.map(|(step, share)| json!({"step": step + 1, "share": share})),
        "to": {"step": e.step + 1, "share": e.share},
        "reason": e.reason,
        "guardrails": e.guardrails,
        "by": e.by,
        "ts": e.ts,
        "report_url": format!("http://{host}:{}/v1/experiments/{}/report.html", n.admin.port(), e.experiment),
    });
    Bytes::from(v.to_string())
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Sends one delivery, retrying as the module says.
async fn deliver(client: HttpsClient, d: Delivery, outcomes: IntCounterVec) {
    let signature = match &d.secret_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(secret) => Some(signature(secret.as_bytes(), &d.body)),
            Err(_) => {
                outcomes.with_label_values(&["failed"]).inc();
                error!(url = %d.url, event = d.event, env = %var, "webhook not sent: its secret_env is not set");
                return;
            }
        },
    };
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=MAX_ATTEMPTS {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&d.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("cohort/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-cohort-event", d.event)
            .header("x-cohort-idempotency-key", &d.key);
        if let Some(s) = &signature {
            req = req.header("x-cohort-signature", s);
        }
        let req = match req.body(Full::new(d.body.clone())) {
            Ok(r) => r,
            Err(e) => {
                outcomes.with_label_values(&["failed"]).inc();
                error!(url = %d.url, event = d.event, error = %e, "webhook not sent");
                return;
            }
        };
        let why = match tokio::time::timeout(TIMEOUT, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                outcomes.with_label_values(&["delivered"]).inc();
                return;
            }
            Ok(Ok(resp)) => {
                let s = resp.status();
                if s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429 {
                    outcomes.with_label_values(&["failed"]).inc();
                    error!(url = %d.url, status = s.as_u16(), key = %d.key, "webhook refused by its receiver; not retried");
                    return;
                }
                format!("answered {s}")
            }
            Ok(Err(e)) => format!("cannot reach it: {e}"),
            Err(_) => format!("no answer within {} s", TIMEOUT.as_secs()),
        };
        if attempt == MAX_ATTEMPTS {
            outcomes.with_label_values(&["failed"]).inc();
            error!(url = %d.url, key = %d.key, attempts = attempt, last = %why, "webhook given up");
            return;
        }
        outcomes.with_label_values(&["retried"]).inc();
        warn!(url = %d.url, key = %d.key, attempt, error = %why, retry_in_s = backoff.as_secs(), "webhook failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// An HTTP(S) client with the system's CA roots.
fn client() -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(TIMEOUT));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
