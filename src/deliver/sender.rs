//! The sender: the HTTP client half of delivery. It posts one closed batch to
//! `{graph_url}/{version}/{pixel_id}/events` and turns the answer (or its absence) into a
//! [`policy::Outcome`]; what to do next is the driver's business.
//!
//! Design constraints:
//! - It runs on the delivery thread's tokio runtime, never on the ingestion cores.
//! - HTTP/2 only, over one multiplexed connection (hyper's `conn::http2` API). For
//!   `https://` rustls with the ring provider negotiates ALPN `h2` (a server that does not
//!   is refused); roots are webpki-roots plus an optional extra CA from a PEM file (tests,
//!   private proxies). For `http://` it speaks h2c by prior knowledge, which `capig sim`
//!   understands, so dry runs and tests need no certificate.
//! - A dead connection is replaced on the next send; sends never wait on each other except
//!   for the per-pixel limit ([`PixelLimits`]), so a slow pixel cannot take every slot.
//! - The token travels as `access_token` in the query string and appears in no error,
//!   log or `Debug` output.
//! - One timeout (default 1,500 ms) covers connecting, sending and reading the answer.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use crate::config::Upstream;
use crate::deliver::policy::{self, Outcome, TransportError};
use crate::event::policy::PixelId;

#[cfg(test)]
mod tests;

/// `User-Agent` of every request.
pub const USER_AGENT_VALUE: &str = concat!("capig/", env!("CARGO_PKG_VERSION"));

/// Why a [`Sender`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(
        "upstream.graph_url {0:?} is not a URL with a host; use e.g. https://graph.facebook.com"
    )]
    BadUrl(String),
    #[error("upstream.graph_url must start with https:// or http://, not {0:?}")]
    Scheme(String),
    #[error(
        "cannot read the extra root CA file {path:?}: {source}; check the path and its permissions"
    )]
    RootFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the extra root CA file {0:?} holds no usable PEM certificate; give a PEM file with at least one CERTIFICATE block")]
    RootPem(PathBuf),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What the sender needs from `[upstream]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Scheme, host, optional port and path prefix, without a trailing slash.
    pub graph_url: String,
    pub api_version: String,
    /// Of one request: connecting, sending and reading the answer.
    pub timeout: Duration,
    /// Requests in flight per pixel.
    pub concurrency: usize,
    /// A PEM file with more root CAs to trust besides webpki-roots.
    pub extra_root_pem: Option<PathBuf>,
}

impl From<&Upstream> for SenderConfig {
    fn from(u: &Upstream) -> SenderConfig {
        SenderConfig {
            graph_url: u.graph_url.trim_end_matches('/').to_owned(),
            api_version: u.api_version.clone(),
            timeout: Duration::from_millis(u.timeout_ms),
            concurrency: u.concurrency,
            extra_root_pem: None,
        }
    }
}

/// Per-pixel bounds on requests in flight: one semaphore per pixel, made on first use.
#[derive(Debug)]
pub struct PixelLimits {
    per_pixel: usize,
    pixels: Mutex<HashMap<PixelId, Arc<Semaphore>>>,
}

impl PixelLimits {
    /// `per_pixel` requests in flight per pixel (at least 1).
    pub fn new(per_pixel: usize) -> PixelLimits {
        PixelLimits {
            per_pixel: per_pixel.max(1),
            pixels: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, pixel: PixelId) -> Arc<Semaphore> {
        let mut pixels = self.pixels.lock().unwrap_or_else(|e| e.into_inner());
        pixels
            .entry(pixel)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_pixel)))
            .clone()
    }

    /// Waits for one of the pixel's slots; it is freed when the permit drops.
    pub async fn acquire(&self, pixel: PixelId) -> OwnedSemaphorePermit {
        self.semaphore(pixel)
            .acquire_owned()
            .await
            .expect("pixel semaphores are never closed")
    }

    /// Free slots of a pixel right now.
    pub fn available(&self, pixel: PixelId) -> usize {
        self.semaphore(pixel).available_permits()
    }
}

/// Where requests go: parsed once from `graph_url`.
struct Target {
    tls: Option<(TlsConnector, ServerName<'static>)>,
    host: String,
    port: u16,
    /// `{graph_url}/{version}/`.
    prefix: String,
}

/// The Graph API client. Cheap to share behind an `Arc`; `send` takes `&self`.
pub struct Sender {
    target: Target,
    timeout: Duration,
    limits: PixelLimits,
    /// The shared connection with its generation: a request that fails on generation N
    /// forgets the connection only if it is still N (another task may have replaced it).
    conn: tokio::sync::Mutex<Option<(u64, SendRequest<Full<Bytes>>)>>,
    /// Generations handed out so far (never reused).
    generations: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("prefix", &self.target.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(cfg: SenderConfig) -> Result<Sender, SenderError> {
        let graph_url = cfg.graph_url.trim_end_matches('/');
        let uri: Uri = graph_url
            .parse()
            .map_err(|_| SenderError::BadUrl(graph_url.to_owned()))?;
        let host = uri
            .host()
            .ok_or_else(|| SenderError::BadUrl(graph_url.to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let (tls, default_port) = match uri.scheme_str() {
            Some("https") => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| SenderError::BadUrl(graph_url.to_owned()))?;
                (
                    Some((tls_connector(cfg.extra_root_pem.as_ref())?, name)),
                    443,
                )
            }
            Some("http") => (None, 80),
            other => return Err(SenderError::Scheme(other.unwrap_or("").to_owned())),
        };
        Ok(Sender {
            target: Target {
                tls,
                port: uri.port_u16().unwrap_or(default_port),
                host,
                prefix: format!("{graph_url}/{}/", cfg.api_version),
            },
            timeout: cfg.timeout,
            limits: PixelLimits::new(cfg.concurrency),
            conn: tokio::sync::Mutex::new(None),
            generations: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The per-pixel limits, to observe them.
    pub fn limits(&self) -> &PixelLimits {
        &self.limits
    }

    /// Posts one request body (from `ClosedBatch::request_body`) for `pixel` with its
    /// token, waiting first for one of the pixel's slots.
    pub async fn send(&self, pixel: PixelId, token: &str, body: Vec<u8>) -> Outcome {
        let _permit = self.limits.acquire(pixel).await;
        match tokio::time::timeout(self.timeout, self.request(pixel, token, body)).await {
            Ok(Ok((status, body))) => policy::classify(status, &body),
            Ok(Err(e)) => Outcome::from_transport(e),
            Err(_) => Outcome::from_transport(TransportError::Timeout),
        }
    }

    async fn request(
        &self,
        pixel: PixelId,
        token: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), TransportError> {
        let mut uri = format!("{}{pixel}/events?access_token=", self.target.prefix);
        uri.extend(form_urlencoded::byte_serialize(token.as_bytes()));
        // The error would carry the URI, hence the token: map it to a fixed class.
        let uri = Uri::try_from(uri).map_err(|_| TransportError::Connect)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| TransportError::Connect)?;
        let (generation, mut conn) = self.connection().await?;
        let result = async {
            conn.ready().await.map_err(|_| TransportError::Closed)?;
            let response = conn
                .send_request(request)
                .await
                .map_err(|_| TransportError::Closed)?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| TransportError::Closed)?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        if result.is_err() {
            // The connection failed under this request: hyper may not have noticed the
            // close yet (`is_closed` still false), so forget it now rather than hand the
            // dead connection to the next send.
            self.forget(generation).await;
        }
        result
    }

    async fn forget(&self, generation: u64) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }

    /// The shared connection, opened (again) when there is none or it closed.
    async fn connection(&self) -> Result<(u64, SendRequest<Full<Bytes>>), TransportError> {
        let mut slot = self.conn.lock().await;
        if let Some((generation, conn)) = slot.as_ref().filter(|(_, c)| !c.is_closed()) {
            return Ok((*generation, conn.clone()));
        }
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *slot = None;
        let conn = self.connect().await?;
        *slot = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let t = &self.target;
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|_| TransportError::Connect)?;
        // Batches are written whole; do not hold the last segment back.
        tcp.set_nodelay(true).map_err(|_| TransportError::Connect)?;
        let builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        match &t.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|_| TransportError::Connect)?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(TransportError::Connect);
                }
                let (send, conn) = builder
                    .handshake(TokioIo::new(tls))
                    .await
                    .map_err(|_| TransportError::Connect)?;
                tokio::spawn(conn);
                Ok(send)
            }
            None => {
                let (send, conn) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|_| TransportError::Connect)?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }
}

/// rustls with the ring provider, webpki-roots plus the extra PEM roots, ALPN `h2` only.
fn tls_connector(extra_root_pem: Option<&PathBuf>) -> Result<TlsConnector, SenderError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_root_pem {
        let file = std::fs::File::open(path).map_err(|source| SenderError::RootFile {
            path: path.clone(),
            source,
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
            let cert = cert.map_err(|source| SenderError::RootFile {
                path: path.clone(),
                source,
            })?;
            roots
                .add(cert)
                .map_err(|_| SenderError::RootPem(path.clone()))?;
            added += 1;
        }
        if added == 0 {
            return Err(SenderError::RootPem(path.clone()));
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
