//! https upstreams: a test CA (made here with rcgen), a rustls server on 127.0.0.1:0, and
//! cohort trusting the CA through `tls.ca_file` or `SSL_CERT_FILE`.

#[path = "integration/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::net::{client, routes, send, start_proxy};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn test_ca(name: &str) -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// An https server for `localhost` with a certificate signed by `ca`; answers "NAME over tls".
async fn https_backend(ca: &TestCa, name: &'static str) -> SocketAddr {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    let der: CertificateDer<'static> = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |_req| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "{{\"backend\": \"{name} over tls\"}}"
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn config(upstream_port: u16, ca_file: Option<&std::path::Path>) -> String {
    let tls = match ca_file {
        Some(p) => format!(", tls: {{ ca_file: {:?} }}", p.display().to_string()),
        None => String::new(),
    };
    format!(
        "routes:\n  - {{ name: r, match: {{ path_prefix: / }}, experiment: e }}\nexperiments:\n  - name: e\n    control: secure\n    variants:\n      - {{ name: secure, weight: 1, upstream: \"https://localhost:{upstream_port}\"{tls} }}\n"
    )
}

#[tokio::test]
async fn an_https_upstream_trusted_through_its_ca_file() {
    let ca = test_ca("cohort test CA");
    let upstream = https_backend(&ca, "secure").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let proxy = start_proxy(routes(&config(upstream.port(), Some(&ca_file)))).await;
    let ans = send(&client(), proxy, "/predict", &[("x-user-id", "alice")]).await;
    assert_eq!(ans.status, StatusCode::OK, "{:?}", ans.body);
    assert_eq!(ans.body["backend"], "secure over tls");

    // A CA that did not sign the upstream's certificate: the handshake fails, 502.
    let other = test_ca("another CA");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, &other.pem).unwrap();
    let proxy = start_proxy(routes(&config(upstream.port(), Some(&other_file)))).await;
    let ans = send(&client(), proxy, "/predict", &[("x-user-id", "alice")]).await;
    assert_eq!(ans.status, StatusCode::BAD_GATEWAY, "{:?}", ans.body);
}

#[tokio::test]
async fn system_roots_honour_ssl_cert_file() {
    let ca = test_ca("cohort env CA");
    let upstream = https_backend(&ca, "env").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("env-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    // The only test in this process that reads the system roots.
    std::env::set_var("SSL_CERT_FILE", &ca_file);
    let proxy = start_proxy(routes(&config(upstream.port(), None))).await;
    let ans = send(&client(), proxy, "/predict", &[("x-user-id", "alice")]).await;
    assert_eq!(ans.status, StatusCode::OK, "{:?}", ans.body);
    assert_eq!(ans.body["backend"], "env over tls");
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_config_error_naming_the_key() {
    let cfg = routes(&config(
        1,
        Some(std::path::Path::new("/nonexistent/ca.pem")),
    ));
    let err = match cohort_proxy::Proxy::new(cfg, Arc::new(cohort_proxy::metrics::Metrics::new())) {
        Ok(_) => panic!("a missing CA file must be refused"),
        Err(e) => e,
    };
    let p = &err.problems[0];
    assert_eq!(p.path, "experiments[0].variants[0].tls.ca_file");
    assert!(
        p.reason.contains("cannot read CA file /nonexistent/ca.pem"),
        "{}",
        p.reason
    );
}
