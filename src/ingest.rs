//! The ingestion side: `capig serve`'s per-core servers that take browser and backend
//! events over HTTP/1.1, HTTPS and WebSocket.
//!
//! - [`runtime`]: one monoio runtime per core (io_uring with epoll fallback), pinned;
//! - [`listen`]: `SO_REUSEPORT` listeners, one socket per listener and core;
//! - [`transport`]: plain TCP or rustls (SNI per domain) as one byte stream;
//! - [`server`]: accept loops, the HTTP connection loop, routes, the WebSocket loop;
//! - [`core`]: a core's transform, batcher and hand-off, and the generations that say
//!   when a client's events are durable;
//! - [`edge`]: client IP through trusted proxies, cookie domain, `_fbp` minting.
//!
//! [`Server::start`] binds everything, starts the delivery side and the cores;
//! [`Server::shutdown`] stops accepting, lets requests finish, closes the open batches
//! into the spool and stops delivery.

pub mod core;
pub mod edge;
pub mod limit;
pub mod listen;
pub mod runtime;
pub mod server;
pub mod transport;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, ListenerKind};
use crate::deliver::handoff::CoreLink;
use crate::deliver::pipeline::{Delivery, DeliveryConfig, DeliveryError};
use edge::FbpMinter;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("an https listener needs at least one [[domains]] entry with tls_cert and tls_key")]
    NoCertificate,
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot start the core threads: {0}")]
    Threads(std::io::Error),
}

/// How the server runs, beyond the configuration.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Routes served beside the gateway's own (`capig demo`'s shop, pixel stand-in and
    /// status page).
    pub extra_routes: Option<Arc<dyn ExtraRoutes>>,
    /// Use epoll even where io_uring works.
    pub force_epoll: bool,
    /// Called on each core's thread before its runtime starts, with the core's number:
    /// thread-local instrumentation (the allocation-counting test uses it).
    pub on_core_start: Option<fn(usize)>,
}

/// The seam through which another part of the program adds routes to the gateway
/// (`capig demo` today): asked only for paths the gateway does not serve itself, on the
/// core's thread, so an answer must be quick and must not block.
pub trait ExtraRoutes: Send + Sync {
    /// The answer to `method path` with `body`, or `None` (then: 404).
    fn route(&self, method: crate::proto::http1::Method, path: &str, body: &[u8]) -> Option<ExtraAnswer>;
}

/// An answer of [`ExtraRoutes`].
pub struct ExtraAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A running gateway: cores, listeners and delivery.
pub struct Server {
    listening: Vec<(ListenerKind, SocketAddr)>,
    drivers: Vec<runtime::DriverKind>,
    reload: Arc<server::Reload>,
    /// Whether an https listener runs (a reload must then bring certificates too).
    https: bool,
    stop: Arc<AtomicBool>,
    cores: Vec<std::thread::JoinHandle<()>>,
    delivery: Option<Delivery>,
}

type CoreSlot = Option<(Vec<(ListenerKind, std::net::TcpListener)>, CoreLink)>;

impl Server {
    pub fn start(config: Config, opts: ServeOptions) -> Result<Server, ServeError> {
        let cores = match config.runtime.cores {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let bound = listen::bind_all(&config.listeners, cores)?;
        let https = bound.iter().any(|b| b.kind == ListenerKind::Https);
        let tls = tls_config(&config, https)?;
        let https_port = bound
            .iter()
            .find(|b| b.kind == ListenerKind::Https)
            .map(|b| b.addr.port());
        let listening = bound.iter().map(|b| (b.kind, b.addr)).collect();
        let (delivery, links) = Delivery::start(DeliveryConfig::from_config(&config, cores))?;
        let mut settings = server::Settings::new(Arc::new(config), tls, https_port, FbpMinter::random());
        settings.extra_routes = opts.extra_routes.clone();
        let reload = Arc::new(server::Reload::new(settings));

        // Each core takes its own sockets and link from here once, at start.
        let mut slots: Vec<CoreSlot> = links.into_iter().map(|l| Some((Vec::new(), l))).collect();
        for b in bound {
            for (core, socket) in b.sockets.into_iter().enumerate() {
                if let Some((ls, _)) = slots[core].as_mut() {
                    ls.push((b.kind, socket));
                }
            }
        }
        let slots = Arc::new(Mutex::new(slots));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_c = stop.clone();
        let reload_c = reload.clone();
        let hook = opts.on_core_start;
        let (handles, drivers) = runtime::spawn_cores(cores, opts.force_epoll, move |core, _kind| {
            if let Some(hook) = hook {
                hook(core);
            }
            let taken = slots.lock().unwrap_or_else(|e| e.into_inner())[core].take();
            let reload = reload_c.clone();
            let stop = stop_c.clone();
            async move {
                if let Some((listeners, link)) = taken {
                    server::run_core(core, listeners, reload, link, stop).await;
                }
            }
        })
        .map_err(ServeError::Threads)?;
        Ok(Server {
            listening,
            drivers,
            reload,
            https,
            stop,
            cores: handles,
            delivery: Some(delivery),
        })
    }

    /// The listeners with their real addresses (a configured port 0 is resolved).
    pub fn listening(&self) -> &[(ListenerKind, SocketAddr)] {
        &self.listening
    }

    /// Puts a reloaded configuration in force without dropping a connection: pixel
    /// policies, access keys and tokens, domains, origins and certificates (new TLS
    /// sessions get the new ones), trusted proxies, limits and rate limits. Listeners,
    /// the number of cores, the spool and `[upstream]` other than tokens keep their
    /// values until a restart.
    pub fn reload(&self, config: Config) -> Result<(), ServeError> {
        let old = self.reload.latest();
        let tls = tls_config(&config, self.https)?;
        self.delivery().set_routes(crate::deliver::pipeline::routes(&config));
        let mut settings = server::Settings::new(Arc::new(config), tls, old.https_port, old.minter.clone());
        settings.extra_routes = old.extra_routes.clone();
        self.reload.publish(settings);
        Ok(())
    }

    /// The I/O driver of each core.
    pub fn drivers(&self) -> &[runtime::DriverKind] {
        &self.drivers
    }

    /// The delivery side, for status.
    pub fn delivery(&self) -> &Delivery {
        self.delivery.as_ref().expect("running")
    }

    /// Stops accepting; connections finish their request (idle ones close within a
    /// second, WebSockets get close 1001); the cores close their open batches into the
    /// spool; delivery gets `deadline` for requests in flight to Meta.
    pub fn shutdown(mut self, deadline: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.cores.drain(..) {
            let _ = h.join();
        }
        if let Some(d) = self.delivery.take() {
            d.shutdown(deadline);
        }
    }
}

/// The rustls configuration over the domains' certificates, when an https listener runs.
fn tls_config(config: &Config, https: bool) -> Result<Option<Arc<rustls::ServerConfig>>, ServeError> {
    if !https {
        return Ok(None);
    }
    let certs: Vec<_> = config
        .domains
        .iter()
        .filter_map(|d| d.certified_key.clone().map(|k| (d.name.clone(), k)))
        .collect();
    if certs.is_empty() {
        return Err(ServeError::NoCertificate);
    }
    Ok(Some(transport::server_config(certs)?))
}

/// Tells systemd about the service's state (`READY=1`, `STOPPING=1`, `RELOADING=1`,
/// `WATCHDOG=1`) when it started us with `Type=notify`; does nothing otherwise.
pub fn sd_notify(state: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
        }
        None => sock.send_to(state.as_bytes(), std::path::Path::new(&path)),
    };
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd ({state}): {e}");
    }
}

/// How often systemd wants `WATCHDOG=1` (half its `WATCHDOG_USEC`), if it does.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
