//! Upstream HTTP clients: keep-alive pools, `http1` or `h2c`, `http://` or `https://` (rustls).
//!
//! Clients are shared by every variant with the same settings (scheme, protocol, CA file,
//! connect timeout); hyper keeps one pool per upstream authority inside each client. The
//! cache outlives routing tables, so a reload keeps the warm connections of every upstream
//! it did not change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Scheme;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::body::Body;
use crate::pool::{H1Pool, WorkerPools};
use cohort_config::schema::Protocol;
use cohort_config::{Shadow, Variant};

/// The client type every variant uses.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    https: bool,
    protocol: Protocol,
    ca_file: Option<PathBuf>,
    connect_timeout: Duration,
}

/// The clients of one setting, one per worker thread ([`crate::workers`]): each has its
/// own pools, so an upstream connection is only ever used by the thread that drives it.
pub type WorkerClients = Arc<[HttpClient]>;

/// Builds clients on demand and keeps them across tables.
pub struct Clients {
    cache: Mutex<HashMap<Key, WorkerClients>>,
    /// Lean per-worker pools of plain-HTTP/1.1 upstreams ([`super::pool`]), by authority.
    pools: Mutex<HashMap<(String, Duration), WorkerPools>>,
    system_roots: Mutex<Option<Arc<RootCertStore>>>,
    workers: usize,
}

impl Default for Clients {
    fn default() -> Self {
        Self::for_workers(1)
    }
}

impl Clients {
    /// Clients for `workers` serving threads.
    pub fn for_workers(workers: usize) -> Self {
        Self {
            cache: Mutex::default(),
            pools: Mutex::default(),
            system_roots: Mutex::default(),
            workers: workers.max(1),
        }
    }

    /// The lean pools for `variant` when its upstream is plain HTTP/1.1; None otherwise
    /// (https and h2c keep the general client).
    pub fn pools(&self, variant: &Variant, connect_timeout: Duration) -> Option<WorkerPools> {
        if variant.upstream.scheme != Scheme::HTTP || variant.protocol != Protocol::Http1 {
            return None;
        }
        let authority = &variant.upstream.authority;
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let made = pools
            .entry((authority.as_str().to_owned(), connect_timeout))
            .or_insert_with(|| {
                (0..self.workers)
                    .map(|_| Arc::new(H1Pool::new(authority.clone(), connect_timeout)))
                    .collect::<Vec<_>>()
                    .into()
            });
        Some(made.clone())
    }

    /// The clients for `variant` (built once per distinct setting).
    pub fn get(
        &self,
        variant: &Variant,
        connect_timeout: Duration,
    ) -> Result<WorkerClients, String> {
        self.of(Key {
            https: variant.upstream.scheme == Scheme::HTTPS,
            protocol: variant.protocol,
            ca_file: variant.tls_ca_file.clone(),
            connect_timeout,
        })
    }

    /// The client for `shadow` (its timeout bounds the connect too).
    pub fn for_shadow(&self, shadow: &Shadow) -> Result<HttpClient, String> {
        let clients = self.of(Key {
            https: shadow.upstream.scheme == Scheme::HTTPS,
            protocol: shadow.protocol,
            ca_file: shadow.tls_ca_file.clone(),
            connect_timeout: shadow.timeout,
        })?;
        Ok(clients[0].clone())
    }

    fn of(&self, key: Key) -> Result<WorkerClients, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let clients: WorkerClients = (0..self.workers)
            .map(|_| self.build(&key))
            .collect::<Result<Vec<_>, _>>()?
            .into();
        cache.insert(key, clients.clone());
        Ok(clients)
    }

    fn build(&self, key: &Key) -> Result<HttpClient, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(key.connect_timeout));
        http.enforce_http(false);
        let roots = match &key.ca_file {
            Some(path) => Arc::new(roots_from_file(path)?),
            None => self.system_roots(),
        };
        let tls =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup failed: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = match key.protocol {
            Protocol::Http1 => builder.enable_http1().wrap_connector(http),
            Protocol::H2c => builder.enable_http2().wrap_connector(http),
        };
        let mut client = Client::builder(TokioExecutor::new());
        client.pool_idle_timeout(Duration::from_secs(90));
        if key.protocol == Protocol::H2c {
            client.http2_only(true);
        }
        Ok(client.build(connector))
    }

    /// The system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), loaded once.
    fn system_roots(&self) -> Arc<RootCertStore> {
        let mut slot = self.system_roots.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "could not load some system CA certificates");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
            Arc::new(store)
        })
        .clone()
    }
}

/// A root store holding exactly the certificates of a PEM file.
fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {} holds no certificate", path.display()));
    }
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "CA file {} holds no usable certificate",
            path.display()
        ));
    }
    Ok(store)
}
