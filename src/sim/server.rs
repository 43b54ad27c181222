//! The simulator's I/O driver: a tokio accept loop, optional TLS (rustls with the ring
//! provider, ALPN `h2` and `http/1.1`), hyper's automatic HTTP/1.1 / HTTP/2 server
//! (h2c by prior knowledge on plain sockets), and the glue that feeds the [`Engine`].
//!
//! Everything that decides something lives in the engine; this module only reads
//! bodies (capped), carries out the decision (sleep, answer, or drop the whole
//! connection: for HTTP/2 a dropped request closes the connection and every stream on
//! it, like a load balancer going away), appends record lines, and shuts down cleanly.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::engine::{evaluate, route, Engine, Evaluated, Reply, Route};
use super::graph::GraphError;
use super::validate::Tokens;

/// Largest body of a control request (`PUT /__sim/faults`).
const MAX_CONTROL_BODY: usize = 1 << 20;
/// How long a TLS handshake may take before the connection is closed.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish at shutdown before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// State shared by all connections.
pub struct Shared {
    pub engine: Mutex<Engine>,
    pub tokens: Tokens,
    pub max_body_bytes: usize,
    pub recorder: Option<Recorder>,
}

impl Shared {
    /// The engine, even if a panic elsewhere poisoned the lock: its counters stay
    /// consistent because every update completes before the lock is released.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Appends accepted events to the `--record` file.
///
/// Lines are written before the answer leaves, under the engine lock, so the file is in
/// sequence order and a client that got its 200 finds its events in the file.
pub struct Recorder {
    file: Mutex<File>,
    warned: AtomicBool,
}

impl Recorder {
    pub fn new(file: File) -> Recorder {
        Recorder {
            file: Mutex::new(file),
            warned: AtomicBool::new(false),
        }
    }

    fn append(&self, lines: &[u8]) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = file.write_all(lines) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!("capig sim: cannot append to the --record file ({e}); events are still kept in memory");
            }
        }
    }
}

/// The request was answered by closing the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct Dropped;

/// Accepts connections until `shutdown` turns true, then lets open connections finish
/// for [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, tls.clone(), shared.clone(), shutdown.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    // Small answers, latency-sensitive tests: no Nagle delay.
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(TokioIo::new(stream), shared, shutdown).await,
        Some(acceptor) => {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            {
                serve_io(TokioIo::new(stream), shared, shutdown).await;
            }
        }
    }
}

async fn serve_io<I>(io: TokioIo<I>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = kill.clone();
        service_fn(move |request| handle(shared.clone(), kill.clone(), request))
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            // A dropped request takes the connection with it: return without answering.
            _ = kill.notified() => return,
            changed = shutdown.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    kill: Arc<Notify>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let route = route(&method, &path);
    let pixel_id = match route {
        Route::Events { pixel_id } => pixel_id,
        other => {
            let body = match other {
                Route::PutFaults => match read_body(request, MAX_CONTROL_BODY).await {
                    Ok(body) => body,
                    Err(BodyError::TooLarge) => {
                        let reply = shared
                            .engine()
                            .error(&GraphError::body_too_large(MAX_CONTROL_BODY));
                        return Ok(response(reply));
                    }
                    Err(BodyError::Broken) => return Err(Dropped),
                },
                _ => Bytes::new(),
            };
            let reply = shared
                .engine()
                .control(&other, &method, &path, query.as_deref(), &body);
            return Ok(response(reply));
        }
    };

    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let evaluated = match read_body(request, shared.max_body_bytes).await {
        Ok(body) => evaluate(
            &shared.tokens,
            &pixel_id,
            content_type.as_deref(),
            query.as_deref(),
            &body,
            i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        ),
        Err(BodyError::TooLarge) => {
            Evaluated::rejected(GraphError::body_too_large(shared.max_body_bytes))
        }
        // The client went away mid-body: nobody to answer.
        Err(BodyError::Broken) => return Err(Dropped),
    };
    let decision = {
        let mut engine = shared.engine();
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let decision = engine.admit(&pixel_id, evaluated, now_ms);
        if let (Some(recorder), false) = (&shared.recorder, decision.record_lines.is_empty()) {
            recorder.append(&decision.record_lines);
        }
        decision
    };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    match decision.reply {
        Some(reply) => Ok(response(reply)),
        None => {
            kill.notify_one();
            Err(Dropped)
        }
    }
}

enum BodyError {
    TooLarge,
    Broken,
}

async fn read_body(request: Request<Incoming>, cap: usize) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(request.into_body(), cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Err(_) => Err(BodyError::Broken),
    }
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Some(allow) = reply.allow {
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}
