//! The CAPI simulator (`capig sim`): an HTTP server that behaves like
//! `POST https://graph.facebook.com/{version}/{pixel_id}/events`.
//!
//! It is the upstream of capig's tests, benchmarks and demo, and the "dry run" of a new
//! install. It validates every event by Meta's rules and answers exactly like Graph
//! (success body, error envelope, codes), records what it accepted, counts everything,
//! and injects faults (error codes per pixel, latency, dropped connections, throttling)
//! that can be changed while it runs.
//!
//! Design: the decisions are sans-IO and tested in memory:
//! - [`body`]: decoding JSON, form and multipart bodies into Graph parameters;
//! - [`validate`]: Meta's validation rules, a pure function of (pixel, request, now);
//! - [`faults`]: the fault configuration and the seeded choice of a fault;
//! - [`engine`]: routing, counters, the event store and the control endpoints;
//! - [`graph`]: the error envelope and the wording of each code.
//!
//! [`server`] is the thin driver (tokio, hyper HTTP/1.1 + HTTP/2, rustls); this file
//! holds the command line ([`SimArgs`], [`run`]) and the in-process handle
//! ([`Simulator::start`] → [`SimHandle`]).
//!
//! Endpoints: `POST /{version}/{pixel_id}/events`; `GET /__sim/stats`;
//! `GET /__sim/events?pixel=ID&since=SEQ&limit=N`; `POST /__sim/reset`;
//! `GET`/`PUT /__sim/faults`. Unknown paths answer 404, wrong methods 405, bodies over
//! `--max-body-bytes` 413, all with a Graph-style error body.

pub mod body;
pub mod engine;
pub mod faults;
pub mod graph;
pub mod rules;
mod server;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use engine::{PixelStats, RecordedEvent, SimStats};
pub use faults::{FailRule, FaultCode, FaultConfig, LatencyMs};
pub use graph::GraphError;

use engine::{Engine, EngineConfig};
use server::{Recorder, Shared};
use validate::Tokens;

/// The default `--listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
/// The default `--max-body-bytes`: Meta documents no limit; 32 MiB is far above what
/// 1,000 events take.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;
/// The default `--keep`.
pub const DEFAULT_KEEP: usize = 100_000;

/// `capig sim` options.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (the first stdout line says which).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// PEM certificate chain: serve HTTPS (ALPN h2, http/1.1) instead of plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept only this token for this pixel (repeatable); without any, every token is
    /// accepted.
    #[arg(long = "token", value_name = "PIXEL=TOKEN")]
    pub tokens: Vec<TokenArg>,
    /// Append every accepted event to FILE as a JSON line.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Accepted events kept in memory for /__sim/events (oldest dropped first).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEEP)]
    pub keep: usize,
    /// Answer error CODE (1, 2, 4, 17, 100, 190, 341, 613 or HTTP 500..=599) to a share
    /// RATE (0..=1) of requests, optionally only for PIXEL (repeatable).
    #[arg(long, value_name = "CODE=RATE[@PIXEL]")]
    pub fail: Vec<FailRule>,
    /// Added latency per request, in milliseconds: N, or N..M for a uniform range.
    #[arg(long, value_name = "N[..M]")]
    pub latency_ms: Option<LatencyMs>,
    /// Share of requests (0..=1) answered by closing the connection.
    #[arg(long, value_name = "R", default_value_t = 0.0, value_parser = faults::parse_rate)]
    pub drop_rate: f64,
    /// After N requests per pixel, answer code 17 "User request limit reached".
    #[arg(long, value_name = "N")]
    pub throttle_after: Option<u64>,
    /// Count --throttle-after per window of this many milliseconds instead of forever.
    #[arg(long, value_name = "MS", requires = "throttle_after")]
    pub throttle_window_ms: Option<u64>,
    /// Seed for fault dice and trace ids, for repeatable runs.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Largest request body accepted; larger ones get HTTP 413.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
}

impl Default for SimArgs {
    fn default() -> SimArgs {
        SimArgs {
            listen: DEFAULT_LISTEN.to_owned(),
            tls_cert: None,
            tls_key: None,
            tokens: Vec::new(),
            record: None,
            keep: DEFAULT_KEEP,
            fail: Vec::new(),
            latency_ms: None,
            drop_rate: 0.0,
            throttle_after: None,
            throttle_window_ms: None,
            seed: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl SimArgs {
    /// The fault configuration these options describe.
    pub fn faults(&self) -> FaultConfig {
        FaultConfig {
            fail: self.fail.clone(),
            latency_ms: self.latency_ms,
            drop_rate: self.drop_rate,
            throttle_after: self.throttle_after,
            throttle_window_ms: self.throttle_window_ms,
        }
    }
}

/// One `--token PIXEL=TOKEN`. Its `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenArg {
    pub pixel_id: String,
    pub token: String,
}

impl fmt::Debug for TokenArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenArg({}=…)", self.pixel_id)
    }
}

impl FromStr for TokenArg {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenArg, String> {
        match s.split_once('=') {
            Some((pixel, token)) if validate::is_pixel_id(pixel) && !token.is_empty() => {
                Ok(TokenArg {
                    pixel_id: pixel.to_owned(),
                    token: token.to_owned(),
                })
            }
            _ => {
                Err("expected PIXEL=TOKEN with a numeric pixel id and a non-empty token".to_owned())
            }
        }
    }
}

/// Why the simulator could not start or stop; each message says what to do.
///
/// Each message is complete in itself (the I/O or TLS error included), so the variants
/// carry no `source`: an error chain printed by the caller would repeat it.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot use --listen {addr}: {reason}; pass an IP:PORT such as 127.0.0.1:8090")]
    Address { addr: String, reason: String },
    #[error("cannot bind {addr}: {error}; pass --listen with another address or port (port 0 picks a free one)")]
    Bind { addr: String, error: io::Error },
    #[error("--tls-cert and --tls-key go together; pass both or neither")]
    TlsIncomplete,
    #[error("cannot read {path}: {error}; pass a readable PEM file")]
    TlsFile { path: PathBuf, error: io::Error },
    #[error("{path} holds no PEM {what}; pass a PEM file with one")]
    TlsPem { path: PathBuf, what: &'static str },
    #[error(
        "the TLS certificate or key was refused: {0}; check that --tls-key belongs to --tls-cert"
    )]
    Tls(rustls::Error),
    #[error("cannot open the --record file {path}: {error}; pass a writable path")]
    Record { path: PathBuf, error: io::Error },
    #[error("invalid fault configuration: {0}")]
    Faults(String),
    #[error("cannot start the simulator's runtime: {0}; the machine may be out of threads or file descriptors")]
    Runtime(io::Error),
    #[error("cannot listen for SIGINT/SIGTERM: {0}")]
    Signal(io::Error),
}

/// Starts simulators inside the current process.
pub struct Simulator;

impl Simulator {
    /// Binds, then serves on a thread of its own with its own tokio runtime. Errors
    /// (address, TLS files, record file) are reported here, before anything runs.
    pub fn start(args: SimArgs) -> Result<SimHandle, SimError> {
        let faults = args.faults();
        faults.check().map_err(SimError::Faults)?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            (None, None) => None,
            _ => return Err(SimError::TlsIncomplete),
        };
        let addr = resolve(&args.listen)?;
        let listener = std::net::TcpListener::bind(addr).map_err(|error| SimError::Bind {
            addr: args.listen.clone(),
            error,
        })?;
        listener.set_nonblocking(true).map_err(SimError::Runtime)?;
        let local = listener.local_addr().map_err(SimError::Runtime)?;
        let recorder = match &args.record {
            Some(path) => Some(Recorder::new(open_record(path)?)),
            None => None,
        };
        let seed = args.seed.unwrap_or_else(seed_from_clock);
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(EngineConfig {
                keep: args.keep,
                record: recorder.is_some(),
                seed,
                faults,
            })),
            tokens: Tokens(
                args.tokens
                    .iter()
                    .map(|t| (t.pixel_id.clone(), t.token.clone()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            max_body_bytes: args.max_body_bytes,
            recorder,
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("capig-sim")
            .enable_all()
            .build()
            .map_err(SimError::Runtime)?;
        let (stop, stopped) = watch::channel(false);
        let serving = shared.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let thread = std::thread::Builder::new()
            .name("capig-sim".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => server::serve(listener, tls, serving, stopped).await,
                        Err(e) => eprintln!("capig sim: cannot register the listener: {e}"),
                    }
                });
                runtime.shutdown_timeout(server::SHUTDOWN_GRACE);
            })
            .map_err(SimError::Runtime)?;
        Ok(SimHandle {
            addr: local,
            scheme,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// A running simulator; dropping it shuts it down.
pub struct SimHandle {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The address it listens on (with the real port when `--listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` or `https://IP:PORT`, to use as the Graph base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.engine().stats()
    }

    /// Every stored event, or those of one pixel, oldest first.
    pub fn events(&self, pixel: Option<&str>) -> Vec<RecordedEvent> {
        self.shared.engine().events(pixel, 0, usize::MAX)
    }

    /// Stored events with a sequence number above `since`.
    pub fn events_since(&self, pixel: Option<&str>, since: u64) -> Vec<RecordedEvent> {
        self.shared.engine().events(pixel, since, usize::MAX)
    }

    pub fn faults(&self) -> FaultConfig {
        self.shared.engine().faults()
    }

    /// Replaces the fault configuration while running (throttle windows start over).
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), SimError> {
        faults.check().map_err(SimError::Faults)?;
        self.shared.engine().set_faults(faults);
        Ok(())
    }

    /// Clears counters, stored events and throttle windows.
    pub fn reset(&self) {
        self.shared.engine().reset();
    }

    /// Stops accepting, lets open connections finish briefly, and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Runs `capig sim` until SIGINT or SIGTERM. The first stdout line is
/// `listening on http://IP:PORT` (or `https://`), flushed at once.
pub fn run(args: SimArgs) -> Result<(), SimError> {
    let handle = Simulator::start(args)?;
    {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "listening on {}", handle.url());
        let _ = stdout.flush();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?;
    let waited = runtime.block_on(wait_for_signal());
    handle.shutdown();
    waited.map_err(SimError::Signal)
}

async fn wait_for_signal() -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

fn resolve(listen: &str) -> Result<SocketAddr, SimError> {
    let address_error = |reason: String| SimError::Address {
        addr: listen.to_owned(),
        reason,
    };
    listen
        .to_socket_addrs()
        .map_err(|e| address_error(e.to_string()))?
        .next()
        .ok_or_else(|| address_error("it resolves to no address".to_owned()))
}

fn open_record(path: &Path) -> Result<File, SimError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| SimError::Record {
            path: path.to_owned(),
            error,
        })
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, SimError> {
    let open = |path: &Path| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|error| SimError::TlsFile {
                path: path.to_owned(),
                error,
            })
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| SimError::TlsFile {
            path: cert.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(SimError::TlsPem {
            path: cert.to_owned(),
            what: "certificate",
        });
    }
    let key_der = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|error| SimError::TlsFile {
            path: key.to_owned(),
            error,
        })?
        .ok_or_else(|| SimError::TlsPem {
            path: key.to_owned(),
            what: "private key",
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(certs, key_der)
        })
        .map_err(SimError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A seed that differs between runs when `--seed` is not given.
fn seed_from_clock() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
