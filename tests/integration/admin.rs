//! The admin listener and the metrics, over real sockets, parsed as Prometheus text.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cohort_config::assign;
use cohort_control::admin::Admin;
use common::net::{backend, client, dead_port, routes, send, start_proxy_with, two_arm};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use prometheus_parse::{Scrape, Value};
use tokio::net::TcpListener;

const FAMILIES: [&str; 24] = [
    "cohort_requests_total",
    "cohort_request_duration_seconds",
    "cohort_upstream_errors_total",
    "cohort_upstream_up",
    "cohort_exposures_total",
    "cohort_conversions_total",
    "cohort_variant_weight",
    "cohort_config_reloads_total",
    "cohort_config_last_reload_success_timestamp_seconds",
    "cohort_config_info",
    "cohort_config_pending",
    "cohort_events_written_total",
    "cohort_events_dropped_total",
    "cohort_experiment_units",
    "cohort_experiment_conversion_rate",
    "cohort_experiment_p_value",
    "cohort_experiment_prob_beat_control",
    "cohort_srm_p_value",
    "cohort_client_errors_total",
    "cohort_events_queue_depth",
    "cohort_events_queue_depth_max",
    "cohort_build_info",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
];

async fn get(addr: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format")
}

/// The value of the counter or gauge `name` with exactly these labels.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples.iter().find_map(|sample| {
        let matches =
            sample.metric == name && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v));
        match (&sample.value, matches) {
            (Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v), true) => Some(*v),
            _ => None,
        }
    })
}

async fn start_admin(
    proxy: Arc<cohort_proxy::Proxy>,
    ready: bool,
) -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(AtomicBool::new(ready));
    let auth = cohort_control::admin::auth::AdminAuth::from_config(
        &proxy.routes().routes.file.admin,
        |_| None,
    )
    .unwrap();
    let admin = Arc::new(Admin {
        proxy,
        ready: ready.clone(),
        auth,
        reload: None,
        counts: None,
        fleet: None,
        rollouts: None,
        monitoring: None,
    });
    tokio::spawn(admin.serve(listener));
    (addr, ready)
}

#[tokio::test]
async fn every_family_is_exposed_at_startup_and_counts_equal_the_requests_sent() {
    let rf = backend("rf").await;
    let lr = dead_port().await; // lr is down: its requests are 502s
    let cfg = routes(&two_arm(rf, lr, ""));
    let exp = cfg.experiments[0].clone();
    let (proxy_addr, proxy) = start_proxy_with(cfg).await;
    let (admin, _) = start_admin(proxy, true).await;

    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let s = scrape(&text);
    for family in FAMILIES {
        assert!(
            s.docs.contains_key(family),
            "{family} is not declared at startup"
        );
    }
    for v in ["rf", "lr"] {
        let labels = [
            ("route", "iris"),
            ("experiment", "iris-model"),
            ("variant", v),
            ("code", "200"),
        ];
        assert_eq!(value(&s, "cohort_requests_total", &labels), Some(0.0));
        assert_eq!(
            value(
                &s,
                "cohort_variant_weight",
                &[("experiment", "iris-model"), ("variant", v)]
            ),
            Some(0.5)
        );
    }
    assert_eq!(
        value(&s, "cohort_config_reloads_total", &[("result", "error")]),
        Some(0.0)
    );

    let c = client();
    let mut sent: HashMap<(&str, u16), u32> = HashMap::new();
    for i in 0..60 {
        let user = format!("user-{i}");
        let ans = send(&c, proxy_addr, "/invocations", &[("x-user-id", &user)]).await;
        let variant = if exp.variants[assign(&exp, &user).variant].name == "rf" {
            "rf"
        } else {
            "lr"
        };
        *sent.entry((variant, ans.status.as_u16())).or_default() += 1;
    }
    for _ in 0..3 {
        let ans = send(&c, proxy_addr, "/nowhere", &[]).await;
        assert_eq!(ans.status, StatusCode::NOT_FOUND);
    }
    assert!(
        sent.contains_key(&("rf", 200)) && sent.contains_key(&("lr", 502)),
        "{sent:?}"
    );

    let s = scrape(&get(admin, "/metrics").await.1);
    for ((variant, code), n) in &sent {
        let code = code.to_string();
        let labels = [
            ("route", "iris"),
            ("experiment", "iris-model"),
            ("variant", *variant),
            ("code", code.as_str()),
        ];
        assert_eq!(
            value(&s, "cohort_requests_total", &labels),
            Some(f64::from(*n)),
            "{variant} {code}"
        );
    }
    let lr_502 = f64::from(sent[&("lr", 502)]);
    let connect = [
        ("experiment", "iris-model"),
        ("variant", "lr"),
        ("kind", "connect"),
    ];
    assert_eq!(
        value(&s, "cohort_upstream_errors_total", &connect),
        Some(lr_502)
    );
    let unrouted = [("route", ""), ("code", "404")];
    assert_eq!(value(&s, "cohort_requests_total", &unrouted), Some(3.0));
    // The latency histogram counted every routed request once.
    let histogram_count: u64 = s
        .samples
        .iter()
        .filter(|x| {
            x.metric == "cohort_request_duration_seconds" && x.labels.get("route") == Some("iris")
        })
        .map(|x| match &x.value {
            Value::Histogram(buckets) => buckets.last().map_or(0, |b| b.count as u64),
            _ => 0,
        })
        .sum();
    assert_eq!(histogram_count, 60);
    let version = proxy_version(&s);
    assert_eq!(version.len(), 16);
}

fn proxy_version(s: &Scrape) -> String {
    s.samples
        .iter()
        .find(|x| x.metric == "cohort_config_info")
        .and_then(|x| x.labels.get("version").map(str::to_owned))
        .expect("cohort_config_info has a version")
}

#[tokio::test]
async fn probes_and_the_assign_endpoint() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let cfg = routes(&two_arm(rf, lr, ""));
    let exp = cfg.experiments[0].clone();
    let (_, proxy) = start_proxy_with(cfg).await;
    let (admin, ready) = start_admin(proxy, false).await;

    assert_eq!(get(admin, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(admin, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    ready.store(true, Ordering::Release);
    assert_eq!(get(admin, "/readyz").await.0, StatusCode::OK);

    let (status, body) = get(admin, "/v1/assign?experiment=iris-model&unit=alice").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a = assign(&exp, "alice");
    assert_eq!(json["variant"], exp.variants[a.variant].name.as_str());
    assert_eq!(json["bucket"], a.bucket);

    assert_eq!(
        get(admin, "/v1/assign?experiment=iris-model").await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = get(admin, "/v1/assign?experiment=nope&unit=a").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("iris-model"));
    assert_eq!(get(admin, "/elsewhere").await.0, StatusCode::NOT_FOUND);
}

/// Connections that send nothing are closed after the header-read timeout counted from the
/// accept (hyper's own starts at the first byte), on the public listener and, within a
/// second, on the admin listener; a flood of them leaves the probes answerable.
#[tokio::test]
async fn silent_connections_are_closed_and_probes_answer_under_a_flood() {
    use tokio::io::AsyncReadExt;
    let rf = backend("rf").await;
    let cfg = routes(&format!(
        "limits: {{ header_read_timeout_ms: 300 }}\n{}",
        two_arm(rf, rf, "")
    ));
    let (proxy_addr, proxy) = start_proxy_with(cfg).await;
    let (admin, _) = start_admin(proxy, true).await;
    for (listener, bound) in [
        (proxy_addr, Duration::from_secs(2)),
        (admin, Duration::from_secs(3)),
    ] {
        let mut silent = tokio::net::TcpStream::connect(listener).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(bound, silent.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "{listener}: a silent connection is still open after {bound:?}"
        );
    }
    // 300 silent connections to the admin port (the probe of the report timed out with 260).
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(tokio::net::TcpStream::connect(admin).await.unwrap());
    }
    let probe = tokio::time::timeout(Duration::from_secs(1), get(admin, "/readyz")).await;
    assert_eq!(
        probe.expect("/readyz answered within 1 s").0,
        StatusCode::OK
    );
    drop(flood);
}

/// A flood of silent connections on the public listener, beyond `max_connections`, leaves
/// the admin listener's probes answerable: its connections are counted apart.
#[tokio::test]
async fn probes_answer_while_the_public_listener_is_flooded() {
    let rf = backend("rf").await;
    let cfg = routes(&format!(
        "limits: {{ max_connections: 50 }}\n{}",
        two_arm(rf, rf, "")
    ));
    let (proxy_addr, proxy) = start_proxy_with(cfg).await;
    let (admin, _) = start_admin(proxy, true).await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(tokio::net::TcpStream::connect(proxy_addr).await.unwrap());
    }
    let probe = tokio::time::timeout(Duration::from_secs(1), get(admin, "/readyz")).await;
    assert_eq!(
        probe.expect("/readyz answered within 1 s").0,
        StatusCode::OK
    );
    drop(flood);
}

/// `/` lists the experiments with links to their live reports; the live page offers
/// auto-refresh through `?refresh=SECONDS` (a meta refresh), only at the periods it links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_links_live_reports_that_refresh_on_request() {
    let (_dir, mut cohort, admin) = common::process::serve_ramped_log().await;
    let (status, index) = get(admin, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        index.contains("href=\"/v1/experiments/iris-model/report.html\""),
        "{index}"
    );
    let (status, page) = get(admin, "/v1/experiments/iris-model/report.html").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("http-equiv=\"refresh\""));
    assert!(page.contains("href=\"?refresh=30\""), "{page:.600}");
    assert!(page.contains("shares changed: rf 50% · lr 50%"));
    let (_, page) = get(admin, "/v1/experiments/iris-model/report.html?refresh=30").await;
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    assert!(page.contains("<strong>every 30 s</strong>"));
    // A period the page does not offer is ignored, not obeyed.
    let (_, page) = get(admin, "/v1/experiments/iris-model/report.html?refresh=1").await;
    assert!(!page.contains("http-equiv=\"refresh\""));
    assert_eq!(cohort.terminate(), Some(0));
}
