//! The ingestion server: per-core accept loops, the HTTP/1.1 connection loop, the routes,
//! and the WebSocket loop. The protocol work is the sans-IO codecs' (`proto::http1`,
//! `proto::websocket`) and the event work `CoreState`'s; this module moves bytes between
//! sockets and them, and waits where a client must wait (for its events to be durable).
//!
//! Routes (docs/DESIGN.md, "Gateway endpoints"): `POST /capig/events` (browser events,
//! JSON or `text/plain`, CORS for the domains' origins, `OPTIONS` preflight),
//! `GET /capig/ws` (WebSocket), `POST /capi/{pixel_id}/events` (the server API: `202`
//! once durable), `GET /healthz`, `GET /readyz`. Answers to browsers are
//! `{"stored":[ids],"rejected":[…]}` once the stored events are durable; a WebSocket gets
//! the same object as a text message per message it sent.
//!
//! Hot path: one read buffer and one write buffer per connection, reused for every
//! request; the body is parsed where it lies; header views borrow the buffer; no lock is
//! shared with another core (the core's state is a `RefCell`, never borrowed across an
//! `.await`).

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::core::{BodyShape, CoreState, Generation, Wait};
use super::edge::{self, FbpMinter, IpText};
use super::limit::{AddressLimits, Bucket};
use super::transport::Transport;
use crate::config::{Config, IpNet, ListenerKind, Secret};
use crate::deliver::batch::BatchConfig;
use crate::deliver::handoff::{CoreLink, SubmitError};
use crate::event::ids;
use crate::event::policy::{parse_pixel_id, PixelId};
use crate::event::Context;
use crate::proto::http1::{self, header_slots, Decoded, Method, Persistence, ReplyTo, Response};
use crate::proto::websocket::{self, handshake, CloseCode, Item, MessageKind};

/// Header slots per parse: the configuration's largest `header_count` (the slots are
/// uninitialized stack space, dropped before any `.await`).
const HEADER_SLOTS: usize = 1024;
/// How often the flusher looks at the spool's answers while generations are in flight.
const POLL_EVERY: Duration = Duration::from_micros(250);
/// Answers to pipelined requests are written together up to this many bytes.
const FLUSH_AT: usize = 64 << 10;
/// A connection's read and write buffers, as first taken from the core's pool.
const READ_BUF: usize = 16 << 10;
const WRITE_BUF: usize = 4 << 10;
/// The core's pool keeps this many spare buffers per size class, of at most
/// `POOLED_MAX` bytes each (a buffer grown for a large body goes back to the allocator).
const POOL_KEEP: usize = 1024;
const POOLED_MAX: usize = 64 << 10;
/// Wake-up slots by generation. Waited-on generations are the open one and at most
/// `MAX_GENERATIONS_IN_FLIGHT` closed ones, fewer than the slots, so generations that
/// share a slot are never waited on at once (and if they were, a waiter re-checks its
/// own result and sleeps again: a spurious wake-up, never a lost one).
const DONE_SLOTS: usize = 4;
const _: () = assert!(DONE_SLOTS > super::core::MAX_GENERATIONS_IN_FLIGHT + 1);
/// At most this much of a refused request's rest is read and discarded before closing.
const DISCARD_BYTES: usize = 16 << 20;
/// And for at most this long.
const DISCARD_TIME: Duration = Duration::from_secs(5);
/// A stopping core waits at most this long for the spool's answers.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// How often the flusher looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// After a stop, once no generation waits for the spool: time for the connections to
/// write their last answers before the core ends (and drops them).
const STOP_GRACE: Duration = Duration::from_millis(100);

/// What every core needs. Each core keeps its own copy (a reload hands each core a new
/// one), so reading it never touches memory another core writes.
#[derive(Clone)]
pub struct Settings {
    pub http: http1::Limits,
    pub ws: websocket::Config,
    pub events_per_request: usize,
    pub connections_per_core: usize,
    pub per_ip_rate: u32,
    pub per_connection_rate: u32,
    pub sites: Vec<Site>,
    pub access_keys: Vec<(PixelId, Vec<Secret>)>,
    pub trusted: Vec<IpNet>,
    pub minter: FbpMinter,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub batch: BatchConfig,
    /// The HTTPS port the redirect listener sends browsers to.
    pub https_port: Option<u16>,
    pub config: Arc<Config>,
    /// `capig demo`'s routes, when it runs.
    pub extra_routes: Option<Arc<dyn super::ExtraRoutes>>,
}

/// One of capig's domains, as the routes need it.
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
    pub origins: Vec<String>,
}

impl Settings {
    /// `minter` is kept across reloads, so browsers keep getting the same `_fbp`.
    pub fn new(config: Arc<Config>, tls: Option<Arc<rustls::ServerConfig>>, https_port: Option<u16>, minter: FbpMinter) -> Settings {
        Settings {
            http: http1::Limits::from(&config.limits),
            ws: websocket::Config::from(&config.limits),
            events_per_request: config.limits.events_per_request,
            connections_per_core: config.limits.connections_per_core,
            per_ip_rate: config.limits.requests_per_second_per_ip,
            per_connection_rate: config.limits.requests_per_second_per_connection,
            sites: config
                .domains
                .iter()
                .map(|d| Site { name: d.name.clone(), origins: d.origins.clone() })
                .collect(),
            access_keys: config.pixels.iter().map(|p| (p.id, p.access_keys.clone())).collect(),
            trusted: config.trusted_proxies.clone(),
            minter,
            tls,
            batch: BatchConfig::from(&config.upstream),
            https_port,
            config,
            extra_routes: None,
        }
    }

    fn key_ok(&self, pixel: PixelId, key: &str) -> bool {
        self.access_keys
            .iter()
            .find(|(p, _)| *p == pixel)
            .is_some_and(|(_, keys)| keys.iter().fold(false, |hit, k| k.matches(key.as_bytes()) | hit))
    }

    /// Whether a browser origin may call us: one of the request's domain's origins, or
    /// (when the host is none of ours, e.g. an IP) of any domain's.
    fn origin_allowed(&self, host: Option<&str>, origin: &str) -> bool {
        let site = host.and_then(|h| self.sites.iter().find(|s| s.name.eq_ignore_ascii_case(h)));
        match site {
            Some(s) => s.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            None => self.sites.iter().any(|s| s.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))),
        }
    }
}

/// One core's runtime state.
pub struct CoreCtx {
    pub core: usize,
    pub state: RefCell<CoreState>,
    /// This core's copy of the settings; replaced on reload.
    settings: RefCell<Rc<Settings>>,
    reload: Arc<Reload>,
    /// The reload generation `settings` comes from.
    epoch: Cell<u64>,
    /// A request waits on the open generation: close it soon.
    flush: Notify,
    /// Generation `g` finished: `done[g % DONE_SLOTS]` wakes its waiters (and only them,
    /// not every connection waiting on any generation: with hundreds of connections a
    /// shared wake-up was several task polls per request).
    done: [Notify; DONE_SLOTS],
    stop: Arc<AtomicBool>,
    connections: Cell<usize>,
    addresses: RefCell<AddressLimits>,
    /// Spare connection buffers. An idle WebSocket gives its buffers back here while it
    /// waits for readability, so 100,000 idle connections do not hold 2 GB of buffers
    /// (monoio has no provided buffer rings, which would let the kernel pick a buffer
    /// only when data arrives). Taking and returning one is a `Vec` push/pop: no
    /// allocation in steady state, no lock (core-local).
    /// Two size classes, `[write, read]`: a buffer of at least `READ_BUF` goes back as a
    /// read buffer, so a read never starts on a small one (and a reply never pins a
    /// large one).
    buffers: RefCell<[Vec<Vec<u8>>; 2]>,
}

/// New settings for the cores, published by [`Reload::publish`] (SIGHUP) and picked up
/// by each core's flusher: one atomic load per flusher turn, a lock only when the epoch
/// moved.
pub struct Reload {
    epoch: AtomicU64,
    settings: Mutex<Arc<Settings>>,
}

impl Reload {
    pub fn new(settings: Settings) -> Reload {
        Reload { epoch: AtomicU64::new(1), settings: Mutex::new(Arc::new(settings)) }
    }

    /// Hands `settings` to every core; connections use them from their next request
    /// (open TLS sessions keep their certificate, new ones get the new one).
    pub fn publish(&self, settings: Settings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// The settings now in force, and their epoch.
    pub fn latest(&self) -> Arc<Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn current(&self) -> (u64, Rc<Settings>) {
        let epoch = self.epoch.load(Ordering::Acquire);
        (epoch, Rc::new(Settings::clone(&self.latest())))
    }
}

impl CoreCtx {
    /// Where the waiters of generation `g` sleep.
    fn done_slot(&self, g: Generation) -> &Notify {
        &self.done[(g % DONE_SLOTS as u64) as usize]
    }

    /// A cleared buffer from the pool (or a new one of `capacity`).
    fn take_buffer(&self, capacity: usize) -> Vec<u8> {
        let class = usize::from(capacity >= READ_BUF);
        self.buffers.borrow_mut()[class].pop().unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Gives a buffer back to the pool.
    fn put_buffer(&self, mut b: Vec<u8>) {
        let mut pools = self.buffers.borrow_mut();
        let pool = &mut pools[usize::from(b.capacity() >= READ_BUF)];
        if b.capacity() >= WRITE_BUF && b.capacity() <= POOLED_MAX && pool.len() < POOL_KEEP {
            b.clear();
            pool.push(b);
        }
    }

    /// This core's settings (a core-local reference count).
    fn settings(&self) -> Rc<Settings> {
        self.settings.borrow().clone()
    }

    /// Takes new settings if a reload published some.
    fn pick_up_reload(&self) {
        if self.reload.epoch.load(Ordering::Acquire) == self.epoch.get() {
            return;
        }
        let (epoch, settings) = self.reload.current();
        self.state.borrow_mut().set_policies(settings.config.policies());
        *self.settings.borrow_mut() = settings;
        self.epoch.set(epoch);
        tracing::info!("core {}: new configuration in force", self.core);
    }
}

/// Runs one core: its accept loops and its flusher, until `stop`; then closes the open
/// batches into the spool.
pub async fn run_core(
    core: usize,
    listeners: Vec<(ListenerKind, std::net::TcpListener)>,
    reload: Arc<Reload>,
    link: CoreLink,
    stop: Arc<AtomicBool>,
) {
    let (epoch, settings) = reload.current();
    let state = CoreState::new(settings.config.policies(), settings.batch, link);
    let ctx = Rc::new(CoreCtx {
        core,
        state: RefCell::new(state),
        settings: RefCell::new(settings),
        reload,
        epoch: Cell::new(epoch),
        flush: Notify::new(),
        done: std::array::from_fn(|_| Notify::new()),
        stop,
        connections: Cell::new(0),
        addresses: RefCell::new(AddressLimits::default()),
        buffers: RefCell::new([Vec::new(), Vec::new()]),
    });
    for (kind, l) in listeners {
        match monoio::net::TcpListener::from_std(l) {
            Ok(l) => {
                monoio::spawn(accept_loop(l, kind, ctx.clone()));
            }
            Err(e) => tracing::error!("core {core}: cannot use a listener: {e}"),
        }
    }
    flusher(&ctx).await;
}

/// Closes generations when requests wait on them and collects the spool's answers.
async fn flusher(ctx: &CoreCtx) {
    let mut stopping_since: Option<Instant> = None;
    let mut finished: Vec<Generation> = Vec::new();
    loop {
        ctx.pick_up_reload();
        let busy = {
            let mut s = ctx.state.borrow_mut();
            if s.wants_flush() {
                s.close_generation();
            }
            s.poll();
            s.take_finished(&mut finished);
            s.has_in_flight() || s.wants_flush()
        };
        for g in finished.drain(..) {
            ctx.done_slot(g).notify_waiters();
        }
        if ctx.stop.load(Ordering::Relaxed) {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            // A spool that never answers (a dead disk) must not keep the process alive:
            // the waiting requests were not acknowledged, so nothing is lost by ending.
            if since.elapsed() >= STOP_DEADLINE {
                tracing::warn!("core {}: stopping with batches still waiting for the spool", ctx.core);
                return;
            }
        }
        if ctx.stop.load(Ordering::Relaxed) && !busy {
            // Requests that were waiting got their generation's result; let them write it.
            monoio::time::sleep(STOP_GRACE).await;
            let s = ctx.state.borrow();
            if !s.has_in_flight() && !s.wants_flush() {
                return;
            }
            continue;
        }
        if busy {
            monoio::time::sleep(POLL_EVERY).await;
        } else {
            let _ = monoio::time::timeout(STOP_CHECK, ctx.flush.notified()).await;
        }
    }
}

/// Waits until every generation of `w` is durable; the first refusal if one was refused.
async fn durable(ctx: &CoreCtx, w: Wait) -> Result<(), SubmitError> {
    for g in w.from..=w.to {
        durable_one(ctx, g).await?;
    }
    Ok(())
}

/// Waits until generation `g` is durable (or was refused).
async fn durable_one(ctx: &CoreCtx, g: Generation) -> Result<(), SubmitError> {
    ctx.flush.notify_one();
    loop {
        let notified = ctx.done_slot(g).notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if let Some(r) = ctx.state.borrow().result(g) {
            return r;
        }
        notified.await;
    }
}

async fn accept_loop(listener: monoio::net::TcpListener, kind: ListenerKind, ctx: Rc<CoreCtx>) {
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        // No timeout around accept: a cancelled accept could still take a connection
        // and drop it. At shutdown the core's runtime ends, and this task with it.
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("core {}: accept failed: {e}", ctx.core);
                monoio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let settings = ctx.settings();
        if ctx.connections.get() >= settings.connections_per_core {
            metrics::counter!("capig_connections_refused_total", "reason" => "per_core_cap").increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        monoio::spawn(async move {
            ctx.connections.set(ctx.connections.get() + 1);
            let transport = match (kind, &settings.tls) {
                (ListenerKind::Https, Some(tls)) => Transport::tls(stream, tls.clone()),
                (ListenerKind::Https, None) => Err(std::io::Error::other("no certificate configured")),
                _ => Ok(Transport::Plain(stream)),
            };
            if let Ok(t) = transport {
                let label = match kind {
                    ListenerKind::Https => "https",
                    ListenerKind::Http => "http",
                    ListenerKind::Redirect => "redirect",
                };
                metrics::gauge!("capig_open_connections", "transport" => label).increment(1.0);
                Connection::new(t, peer, kind, &ctx).run().await;
                metrics::gauge!("capig_open_connections", "transport" => label).decrement(1.0);
            }
            ctx.connections.set(ctx.connections.get() - 1);
        });
    }
}

/// What a request handler decided, beyond the bytes written into `out`.
enum After {
    KeepGoing,
    Close,
    /// The answer (an error) went out before the client finished sending: read and
    /// discard what follows, then close (see [`Connection::discard_rest`]).
    Discard,
    Upgrade(websocket::Connection, Box<WsEdge>),
}

struct Connection<'c> {
    t: Transport,
    peer: IpAddr,
    kind: ListenerKind,
    ctx: &'c CoreCtx,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Per-request answer parts (ids taken, rejections), kept for their capacity.
    ids: Vec<u8>,
    rejected: Vec<u8>,
    body: Vec<u8>,
    bucket: Bucket,
    /// The core's settings as of this connection's current request.
    settings: Rc<Settings>,
    /// What the current request's answer must say about the connection.
    reply_to: ReplyTo,
    /// The current request's client address (peer, or through trusted proxies).
    client: IpAddr,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        self.ctx.put_buffer(std::mem::take(&mut self.buf));
        self.ctx.put_buffer(std::mem::take(&mut self.out));
    }
}

impl<'c> Connection<'c> {
    fn new(t: Transport, peer: SocketAddr, kind: ListenerKind, ctx: &'c CoreCtx) -> Connection<'c> {
        Connection {
            t,
            peer: peer.ip(),
            kind,
            ctx,
            buf: ctx.take_buffer(READ_BUF),
            out: ctx.take_buffer(WRITE_BUF),
            ids: Vec::new(),
            rejected: Vec::new(),
            body: Vec::new(),
            bucket: Bucket::new(ctx.settings().per_connection_rate, Instant::now()),
            settings: ctx.settings(),
            reply_to: ReplyTo::CLOSE,
            client: peer.ip(),
        }
    }


    fn client_ip(&self, head: &http1::RequestHead<'_, '_>) -> IpAddr {
        let headers = head.headers();
        edge::client_ip(
            self.peer,
            headers.iter().filter(|h| h.name.eq_ignore_ascii_case("forwarded")).map(|h| h.value),
            headers.iter().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")).map(|h| h.value),
            &self.settings.trusted,
        )
    }

    async fn run(mut self) {
        let mut http = http1::Conn::new(self.settings.http, Instant::now());
        // Where the next request starts in `buf`: pipelined requests are answered in
        // place, and the buffer is compacted only before a read.
        let mut pos = 0;
        loop {
            let mut after = After::KeepGoing;
            let mut wait: Option<Wait> = None;
            let mut need_read = false;
            let mark = self.out.len();
            // The request borrows the read buffer while the handler writes the answer
            // into the connection's other buffers: take it out for the while.
            let mut buf = std::mem::take(&mut self.buf);
            {
                let now = Instant::now();
                let mut slots = header_slots::<HEADER_SLOTS>();
                match http.decode(&mut buf[pos..], &mut slots, now) {
                    Ok(Decoded::Incomplete(inc)) => {
                        buf.truncate(pos + inc.filled);
                        buf.drain(..pos);
                        pos = 0;
                        if inc.send_continue {
                            http1::write_continue(&mut self.out);
                        }
                        need_read = true;
                    }
                    Ok(Decoded::Request(req)) => {
                        let consumed = req.consumed;
                        let (a, w) = self.handle(req, now);
                        after = a;
                        wait = w;
                        pos += consumed;
                        http.response_sent(now);
                    }
                    Err(e) => {
                        tracing::debug!(transport = self.label(), "closing a connection after a bad request: {e}");
                        e.write_response(&mut self.out, ReplyTo::CLOSE);
                        after = After::Discard;
                    }
                }
            }
            self.buf = buf;
            if let Some(g) = wait {
                // This answer holds only once the events are durable; it becomes a 503
                // if they were refused (the answers before it stay as they are).
                if let Err(e) = durable(self.ctx, g).await {
                    self.out.truncate(mark);
                    refuse(&mut self.out, &e, self.reply_to);
                }
            }
            // Answers to pipelined requests go out together: before a read, before the
            // connection ends or changes protocol, or when they add up.
            let flush_now = need_read || !matches!(after, After::KeepGoing) || self.out.len() >= FLUSH_AT;
            if flush_now && !self.out.is_empty() && !self.flush().await {
                return;
            }
            match after {
                After::Close => return,
                After::Discard => {
                    self.discard_rest().await;
                    return;
                }
                After::Upgrade(ws, edge) => {
                    // What follows the upgrade request is already WebSocket frames.
                    self.buf.drain(..pos);
                    self.websocket(ws, *edge).await;
                    return;
                }
                After::KeepGoing => {}
            }
            if !need_read {
                continue;
            }
            match self.read_more(http.deadline().map(|d| d.at)).await {
                Read::Data => {}
                Read::Eof | Read::Stop => return,
                Read::Deadline => {
                    if let Some(http1::Expired::Respond(e)) = http.expire(Instant::now()) {
                        e.write_response(&mut self.out, ReplyTo::CLOSE);
                        let _ = self.flush().await;
                    }
                    return;
                }
            }
        }
    }

    /// Reads more bytes into `buf`, until `deadline` (then the connection ends: a read
    /// cancelled at its deadline may have taken bytes with it, which matters no more).
    /// A stopping core does not wait for idle connections: it ends, and drops them.
    async fn read_more(&mut self, deadline: Option<Instant>) -> Read {
        if self.buf.is_empty() && self.ctx.stop.load(Ordering::Relaxed) {
            return Read::Stop;
        }
        let left = deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Read::Deadline;
        }
        let buf = std::mem::take(&mut self.buf);
        match monoio::time::timeout(left, self.t.read_into(buf)).await {
            Ok((Ok(0), _)) => Read::Eof,
            Ok((Err(e), _)) => {
                tracing::debug!(transport = self.label(), "closing a connection: reading failed: {e}");
                Read::Eof
            }
            Ok((Ok(_), buf)) => {
                self.buf = buf;
                Read::Data
            }
            Err(_) => {
                tracing::debug!(transport = self.label(), "closing a connection: the client sent nothing in time");
                Read::Deadline
            }
        }
    }

    /// After an error answer sent before the request was read to its end (a 413 for a
    /// body over the limit, a malformed chunk): reads and discards what the client still
    /// sends, up to [`DISCARD_BYTES`] and [`DISCARD_TIME`], then the connection closes.
    /// Closing with unread bytes would make the kernel send a reset, and a client still
    /// sending its body would lose the answer with it.
    async fn discard_rest(&mut self) {
        let until = Instant::now() + DISCARD_TIME;
        let mut discarded = 0;
        while discarded < DISCARD_BYTES {
            self.buf.clear();
            match self.read_more(Some(until)).await {
                Read::Data => discarded += self.buf.len(),
                Read::Eof | Read::Deadline | Read::Stop => break,
            }
        }
        self.buf.clear();
    }

    fn label(&self) -> &'static str {
        match (&self.t, self.kind) {
            (Transport::Tls(_), _) => "https",
            (_, ListenerKind::Redirect) => "redirect",
            _ => "http",
        }
    }

    /// With nothing buffered (no partial frame) on a plain connection: gives both buffers
    /// back to the core and waits, holding none, until the socket is readable or
    /// `deadline`. `None`: go on and read. A poll cancelled at its deadline takes no
    /// bytes, unlike a cancelled read. TLS connections skip this (rustls may hold
    /// plaintext that no poll announces).
    async fn wait_idle(&mut self, deadline: Option<Instant>) -> Option<Read> {
        if !self.buf.is_empty() || !self.out.is_empty() {
            return None;
        }
        let Transport::Plain(tcp) = &self.t else { return None };
        if self.ctx.stop.load(Ordering::Relaxed) {
            return Some(Read::Stop);
        }
        let left = deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
        self.ctx.put_buffer(std::mem::take(&mut self.buf));
        self.ctx.put_buffer(std::mem::take(&mut self.out));
        let r = monoio::time::timeout(left, tcp.readable(true)).await;
        self.buf = self.ctx.take_buffer(READ_BUF);
        self.out = self.ctx.take_buffer(WRITE_BUF);
        match r {
            Ok(Ok(())) => None,
            // The read that follows reports the error.
            Ok(Err(_)) => None,
            Err(_) => Some(Read::Deadline),
        }
    }

    /// Writes `out`; false when the connection must end: a write error, or a client
    /// that does not read its answers within the body timeout (a slow reader holds its
    /// own connection only, never the core).
    async fn flush(&mut self) -> bool {
        let out = std::mem::take(&mut self.out);
        match monoio::time::timeout(self.settings.http.body_timeout, self.t.write_all(out)).await {
            Ok((r, mut out)) => {
                out.clear();
                self.out = out;
                if let Err(e) = &r {
                    tracing::debug!(transport = self.label(), "closing a connection: writing the answer failed: {e}");
                }
                r.is_ok()
            }
            Err(_) => {
                tracing::debug!(transport = self.label(), "closing a connection: the client did not read its answer in time");
                false
            }
        }
    }

    /// Routes one request; writes the answer into `out` (or the upgrade response).
    fn handle(&mut self, req: http1::Request<'_, '_>, now: Instant) -> (After, Option<Wait>) {
        self.settings = self.ctx.settings();
        self.reply_to = req.head.reply_to();
        let head = &req.head;
        let to = head.reply_to();
        let after = if to.persistence == Persistence::Close { After::Close } else { After::KeepGoing };
        if self.kind == ListenerKind::Redirect {
            self.redirect(head);
            return (After::Close, None);
        }
        let path = head.path();
        let method = head.method();
        self.client = self.client_ip(head);
        if !within_limits(&mut self.bucket, self.ctx, self.client, now) {
            metrics::counter!("capig_rate_limited_total", "channel" => "http").increment(1);
            http1::write_response(
                &mut self.out,
                &Response {
                    status: 429,
                    headers: &[("Content-Type", b"text/plain; charset=utf-8"), ("Retry-After", b"1")],
                    body: b"too many requests from this address or connection; retry in a second\n",
                    to,
                },
            );
            return (after, None);
        }
        match (path, method) {
            ("/healthz", Method::Get | Method::Head) => {
                text(&mut self.out, 200, "ok\n", to);
                (after, None)
            }
            ("/readyz", Method::Get | Method::Head) => {
                match self.ctx.state.borrow().refusing() {
                    None => text(&mut self.out, 200, "ready\n", to),
                    Some(e) => refuse(&mut self.out, &e, to),
                }
                (after, None)
            }
            ("/capig/client.js", Method::Get | Method::Head) => {
                client_js(&mut self.out, head, to);
                (after, None)
            }
            ("/capig/events", Method::Options) => {
                self.preflight(head, to);
                (after, None)
            }
            ("/capig/events", Method::Post) => self.browser_post(req, now, after),
            ("/capig/ws", Method::Get) => self.upgrade(head, now),
            (p, Method::Post) if p.starts_with("/capi/") && p.ends_with("/events") => {
                let pixel = &p["/capi/".len()..p.len() - "/events".len()];
                self.server_post(pixel, req, now, after)
            }
            ("/healthz" | "/readyz" | "/capig/ws" | "/capig/client.js", _) => {
                http1::Error::MethodNotAllowed { allow: "GET" }.write_response(&mut self.out, to);
                (after, None)
            }
            ("/capig/events", _) => {
                http1::Error::MethodNotAllowed { allow: "POST, OPTIONS" }.write_response(&mut self.out, to);
                (after, None)
            }
            (p, _) if p.starts_with("/capi/") => {
                http1::Error::MethodNotAllowed { allow: "POST" }.write_response(&mut self.out, to);
                (after, None)
            }
            _ => {
                let answer = self.settings.extra_routes.as_ref().and_then(|r| r.route(method, path, req.body));
                match answer {
                    Some(a) => http1::write_response(
                        &mut self.out,
                        &Response { status: a.status, headers: &[("Content-Type", a.content_type.as_bytes()), ("Cache-Control", b"no-store")], body: &a.body, to },
                    ),
                    None => http1::Error::NotFound.write_response(&mut self.out, to),
                }
                (after, None)
            }
        }
    }

    fn redirect(&mut self, head: &http1::RequestHead<'_, '_>) {
        let host = head.host().and_then(|h| std::str::from_utf8(h).ok()).unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
        let mut location = Vec::with_capacity(64);
        location.extend_from_slice(b"https://");
        location.extend_from_slice(host.as_bytes());
        if let Some(port) = self.settings.https_port.filter(|&p| p != 443) {
            location.extend_from_slice(format!(":{port}").as_bytes());
        }
        location.extend_from_slice(head.target().as_bytes());
        http1::write_response(
            &mut self.out,
            &Response {
                status: 308,
                headers: &[("Location", &location), ("Content-Type", b"text/plain; charset=utf-8")],
                body: b"capig answers over https only\n",
                to: ReplyTo::CLOSE,
            },
        );
    }

    fn preflight(&mut self, head: &http1::RequestHead<'_, '_>, to: ReplyTo) {
        let host = host_of(head);
        match head.header("origin").and_then(|o| std::str::from_utf8(o).ok()) {
            Some(origin) if self.settings.origin_allowed(host, origin) => http1::write_response(
                &mut self.out,
                &Response {
                    status: 204,
                    headers: &[
                        ("Access-Control-Allow-Origin", origin.as_bytes()),
                        ("Access-Control-Allow-Credentials", b"true"),
                        ("Access-Control-Allow-Methods", b"POST, OPTIONS"),
                        ("Access-Control-Allow-Headers", b"content-type"),
                        ("Access-Control-Max-Age", b"86400"),
                        ("Vary", b"Origin"),
                    ],
                    body: b"",
                    to,
                },
            ),
            _ => text(&mut self.out, 403, "this origin may not send events here; add it to the domain's origins in capig.toml\n", to),
        }
    }

    /// The edge's view of a request: client IP, user agent, cookies, a minted `_fbp`.
    /// The edge's view of the current request (its client address was resolved by
    /// `handle`, for the rate limits).
    fn edge<'h>(&self, head: &http1::RequestHead<'h, 'h>) -> Edge<'h> {
        let ip = self.client;
        let cookie = head.header("cookie").and_then(|c| std::str::from_utf8(c).ok()).unwrap_or("");
        let fbp = ids::cookie(cookie, "_fbp").filter(|v| ids::is_valid_fbp(v));
        let origin = head.header("origin").and_then(|o| std::str::from_utf8(o).ok());
        let host = host_of(head);
        Edge {
            ip,
            ip_text: IpText::new(ip),
            user_agent: head.header("user-agent").and_then(|u| std::str::from_utf8(u).ok()),
            fbp,
            fbc: ids::cookie(cookie, "_fbc"),
            origin,
            host,
            cookie_domain: host.and_then(|h| edge::cookie_domain(h, origin.and_then(edge::origin_host))),
        }
    }

    fn browser_post(&mut self, req: http1::Request<'_, '_>, now: Instant, after: After) -> (After, Option<Wait>) {
        let to = req.head.reply_to();
        let edge = self.edge(&req.head);
        if let Some(origin) = edge.origin {
            if !self.settings.origin_allowed(edge.host, origin) {
                text(&mut self.out, 403, "this origin may not send events here; add it to the domain's origins in capig.toml\n", to);
                return (after, None);
            }
        }
        let minted = edge.fbp.is_none().then(|| self.mint(&edge));
        let ctx = Context {
            now_ms: now_ms(),
            pixel_id: None,
            client_ip: Some(edge.ip_text.as_str()),
            user_agent: edge.user_agent,
            cookie_fbp: edge.fbp.or(minted.as_ref().map(|m| m.as_str())),
            cookie_fbc: edge.fbc,
        };
        // Answer headers in a fixed array: nothing allocated per request.
        let mut extra: [(&str, &[u8]); 4] = [("", b""); 4];
        let mut n = 0;
        if let Some(origin) = edge.origin {
            extra[0] = ("Access-Control-Allow-Origin", origin.as_bytes());
            extra[1] = ("Access-Control-Allow-Credentials", b"true");
            extra[2] = ("Vary", b"Origin");
            n = 3;
        }
        let cookie_line;
        if let Some(fbp) = &minted {
            // A browser's first request only.
            let mut line = Vec::with_capacity(128);
            edge::write_cookie(&mut line, "_fbp", fbp.as_str().as_bytes(), edge.cookie_domain);
            cookie_line = line;
            extra[n] = ("Set-Cookie", &cookie_line);
            n += 1;
        }
        self.ingest_and_answer(req.body, BodyShape::Browser, &ctx, now, None, &extra[..n], edge.cookie_domain, to, 200, after)
    }

    fn mint(&self, edge: &Edge<'_>) -> edge::FbpText {
        self.settings.minter.mint(edge.ip_text.as_str(), edge.user_agent.unwrap_or(""), now_ms(), edge.cookie_domain)
    }

    fn server_post(&mut self, pixel: &str, req: http1::Request<'_, '_>, now: Instant, after: After) -> (After, Option<Wait>) {
        let to = req.head.reply_to();
        let Some(pixel) = parse_pixel_id(pixel) else {
            text(&mut self.out, 404, "no such pixel: the path is /capi/{pixel_id}/events with the pixel id in digits\n", to);
            return (after, None);
        };
        if !self.settings.access_keys.iter().any(|(p, keys)| *p == pixel && !keys.is_empty()) {
            text(&mut self.out, 403, "this pixel takes no server events: give it an access_keys_file in capig.toml\n", to);
            return (after, None);
        }
        // The server API's events carry their own client_ip_address and user agent.
        let ctx = Context {
            now_ms: now_ms(),
            pixel_id: Some(pixel),
            client_ip: None,
            user_agent: None,
            cookie_fbp: None,
            cookie_fbc: None,
        };
        self.ingest_and_answer(req.body, BodyShape::Server, &ctx, now, Some(pixel), &[], None, to, 202, after)
    }

    #[allow(clippy::too_many_arguments)]
    fn ingest_and_answer(
        &mut self,
        body: &mut [u8],
        shape: BodyShape,
        ctx: &Context<'_>,
        now: Instant,
        key_pixel: Option<PixelId>,
        extra: &[(&str, &[u8])],
        fbc_domain: Option<&str>,
        to: ReplyTo,
        ok_status: u16,
        after: After,
    ) -> (After, Option<Wait>) {
        let mut state = self.ctx.state.borrow_mut();
        if let Some(e) = state.refusing() {
            refuse(&mut self.out, &e, to);
            return (after, None);
        }
        self.ids.clear();
        self.rejected.clear();
        let settings = &self.settings;
        let key_ok = |k: &str| key_pixel.is_some_and(|p| settings.key_ok(p, k));
        let result = state.ingest(body, shape, ctx, now, settings.events_per_request, &key_ok, &mut self.ids, &mut self.rejected);
        let wait = result.as_ref().ok().and_then(|n| state.wait_for(n));
        drop(state);
        match result {
            Err(e) => {
                let mut msg = e.to_string();
                msg.push('\n');
                text(&mut self.out, e.status(), &msg, to);
                (after, None)
            }
            Ok(n) => {
                // A click id the browser has no `_fbc` for: set it, the value the
                // transform just gave the events, so the pixel's later events carry it.
                let mut fbc_line = None;
                if n.fbclid && shape == BodyShape::Browser {
                    let mut value = Vec::with_capacity(64);
                    crate::event::ids::write_fbc(&mut value, ctx.now_ms, self.ctx.state.borrow().fbclid());
                    let mut line = Vec::with_capacity(128);
                    edge::write_cookie(&mut line, "_fbc", &value, fbc_domain);
                    fbc_line = Some(line);
                }
                let channel = if shape == BodyShape::Browser { "browser" } else { "server" };
                metrics::counter!("capig_events_received_total", "channel" => channel).increment(u64::from(n.added + n.rejected));
                let status = n.status(ok_status);
                if status != ok_status {
                    let outcome = if status == 202 { "partly_rejected" } else { "all_rejected" };
                    metrics::counter!("capig_requests_rejected_total", "channel" => channel, "outcome" => outcome).increment(1);
                }
                self.body.clear();
                let taken = match shape {
                    BodyShape::Server => Taken::Count(n.added),
                    BodyShape::Browser => Taken::Ids(&self.ids),
                };
                write_answer(&mut self.body, taken, &self.rejected, (status >= 400).then(|| nothing_taken(&n)));
                let mut headers: [(&str, &[u8]); 6] = [("Content-Type", b"application/json"); 6];
                let mut n_headers = 1 + extra.len().min(4);
                headers[1..n_headers].copy_from_slice(&extra[..n_headers - 1]);
                if let Some(line) = &fbc_line {
                    headers[n_headers] = ("Set-Cookie", line);
                    n_headers += 1;
                }
                http1::write_response(&mut self.out, &Response { status, headers: &headers[..n_headers], body: &self.body, to });
                (after, wait)
            }
        }
    }

    fn upgrade(&mut self, head: &http1::RequestHead<'_, '_>, now: Instant) -> (After, Option<Wait>) {
        let headers = head.headers().iter().map(|h| (h.name, h.value));
        let accept = match handshake::check_request(head.method_str(), headers) {
            Ok(a) => a,
            Err(e) => {
                e.write_response(&mut self.out);
                return (After::Close, None);
            }
        };
        let edge = self.edge(head);
        match edge.origin {
            Some(origin) if self.settings.origin_allowed(edge.host, origin) => {}
            _ => {
                text(&mut self.out, 403, "this origin may not open a WebSocket here; add it to the domain's origins in capig.toml\n", ReplyTo::CLOSE);
                return (After::Close, None);
            }
        }
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        let cookie_line;
        let minted = edge.fbp.is_none().then(|| self.mint(&edge));
        if let Some(fbp) = &minted {
            let mut line = Vec::with_capacity(128);
            edge::write_cookie(&mut line, "_fbp", fbp.as_str().as_bytes(), edge.cookie_domain);
            cookie_line = line;
            extra.push(("Set-Cookie", &cookie_line));
        }
        handshake::write_accept(&mut self.out, &accept, None, &extra);
        let ws_edge = WsEdge {
            ip: edge.ip,
            ip_text: edge.ip_text,
            user_agent: edge.user_agent.map(str::to_owned),
            fbp: edge.fbp.or(minted.as_ref().map(|m| m.as_str())).map(str::to_owned),
            fbc: edge.fbc.map(str::to_owned),
        };
        (After::Upgrade(websocket::Connection::new(self.settings.ws, now), Box::new(ws_edge)), None)
    }

    /// The WebSocket loop: each text message is one event or an array; after each burst
    /// of messages (what one read brought) their events are made durable and every
    /// message gets its answer, in order.
    async fn websocket(&mut self, mut ws: websocket::Connection, edge: WsEdge) {
        let client = edge.ip;
        let mut answers: Vec<u8> = Vec::new();
        let mut pending_answers: Vec<(usize, usize)> = Vec::new();
        loop {
            let mut wait = None;
            let mut closed = false;
            loop {
                let now = Instant::now();
                match ws.decode(&mut self.buf[..], now, &mut self.out) {
                    Item::Message(m) => {
                        if m.kind != MessageKind::Text {
                            ws.close(CloseCode(1003), "send events as text messages", now, &mut self.out);
                            closed = true;
                            break;
                        }
                        let ctx = Context {
                            now_ms: now_ms(),
                            pixel_id: None,
                            client_ip: Some(edge.ip_text.as_str()),
                            user_agent: edge.user_agent.as_deref(),
                            cookie_fbp: edge.fbp.as_deref(),
                            cookie_fbc: edge.fbc.as_deref(),
                        };
                        let start = answers.len();
                        if !within_limits(&mut self.bucket, self.ctx, client, now) {
                            metrics::counter!("capig_rate_limited_total", "channel" => "websocket").increment(1);
                            answers.extend_from_slice(b"{\"refused\":\"rate_limited\",\"message\":\"too many messages from this address or connection; send them again in a second\"}");
                            pending_answers.push((start, answers.len()));
                            continue;
                        }
                        let mut state = self.ctx.state.borrow_mut();
                        if let Some(e) = state.refusing() {
                            drop(state);
                            answer_refused(&mut answers, &e);
                        } else {
                            self.ids.clear();
                            self.rejected.clear();
                            let r = state.ingest(m.payload, BodyShape::Browser, &ctx, now, self.settings.events_per_request, &|_| false, &mut self.ids, &mut self.rejected);
                            let w = r.as_ref().ok().and_then(|n| state.wait_for(n));
                            drop(state);
                            match r {
                                Ok(n) => {
                                    metrics::counter!("capig_events_received_total", "channel" => "websocket").increment(u64::from(n.added + n.rejected));
                                    write_answer(&mut answers, Taken::Ids(&self.ids), &self.rejected, None);
                                    if let Some(w) = w {
                                        wait = Some(wait.map_or(w, |a: Wait| a.merge(w)));
                                    }
                                }
                                Err(e) => {
                                    answers.extend_from_slice(b"{\"error\":");
                                    crate::event::json::write_str(&mut answers, &e.to_string());
                                    answers.push(b'}');
                                }
                            }
                        }
                        pending_answers.push((start, answers.len()));
                    }
                    Item::NeedMore { keep, .. } => {
                        self.buf.truncate(keep);
                        break;
                    }
                    Item::Closed(why) => {
                        tracing::debug!(transport = self.label(), "closing a WebSocket: {why:?}");
                        closed = true;
                        break;
                    }
                }
            }
            if let Some(g) = wait {
                if let Err(e) = durable(self.ctx, g).await {
                    // Every message of the burst is refused: none of its events is
                    // acknowledged, the client sends them again.
                    answers.clear();
                    for a in pending_answers.iter_mut() {
                        let start = answers.len();
                        answer_refused(&mut answers, &e);
                        *a = (start, answers.len());
                    }
                }
            }
            for &(a, b) in &pending_answers {
                if ws.can_send() {
                    let msg = std::str::from_utf8(&answers[a..b]).unwrap_or("{}");
                    websocket::frame::encode_text(&mut self.out, msg);
                }
            }
            answers.clear();
            pending_answers.clear();
            if !self.out.is_empty() && !self.flush().await {
                return;
            }
            if closed || matches!(ws.state(), websocket::State::Closed(_)) {
                return;
            }
            let read = match self.wait_idle(ws.deadline()).await {
                Some(r) => r,
                None => self.read_more(ws.deadline()).await,
            };
            match read {
                Read::Data => {}
                Read::Eof => return,
                Read::Stop => {
                    if ws.can_send() {
                        ws.close(CloseCode(1001), "the gateway is restarting; reconnect", Instant::now(), &mut self.out);
                        let _ = self.flush().await;
                    }
                    return;
                }
                Read::Deadline => {
                    ws.on_timeout(Instant::now(), &mut self.out);
                    let _ = self.flush().await;
                    if matches!(ws.state(), websocket::State::Closed(_)) {
                        return;
                    }
                    if self.buf.capacity() == 0 {
                        self.buf = self.ctx.take_buffer(READ_BUF);
                    }
                }
            }
        }
    }
}

enum Read {
    Data,
    Eof,
    Deadline,
    Stop,
}

/// Takes a request's tokens: the connection's, then the client address's.
fn within_limits(bucket: &mut Bucket, ctx: &CoreCtx, client: IpAddr, now: Instant) -> bool {
    let s = ctx.settings();
    bucket.take(s.per_connection_rate, now) && ctx.addresses.borrow_mut().take(client, s.per_ip_rate, now)
}

/// What the edge knows of one request.
struct Edge<'h> {
    ip: IpAddr,
    ip_text: IpText,
    user_agent: Option<&'h str>,
    fbp: Option<&'h str>,
    fbc: Option<&'h str>,
    origin: Option<&'h str>,
    host: Option<&'h str>,
    /// Where first-party cookies go (see `edge::cookie_domain`).
    cookie_domain: Option<&'h str>,
}

/// What a WebSocket's events get from the edge, fixed at the upgrade.
struct WsEdge {
    ip: IpAddr,
    ip_text: IpText,
    user_agent: Option<String>,
    fbp: Option<String>,
    fbc: Option<String>,
}

fn host_of<'h>(head: &http1::RequestHead<'h, 'h>) -> Option<&'h str> {
    let host = std::str::from_utf8(head.host()?).ok()?;
    Some(match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') || h.starts_with('[') => h.trim_matches(['[', ']']),
        _ => host,
    })
}

/// The web client, as `build.rs` made it from `web-client/capig.js`.
mod client {
    pub const JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/capig.js"));
    pub const GZIP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/capig.js.gz"));
    pub const BROTLI: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/capig.js.br"));
    pub const ETAG: &str = include_str!(concat!(env!("OUT_DIR"), "/capig.js.etag"));
}

/// Whether `accept` (an `Accept-Encoding` value) takes `coding` (not with `q=0`).
fn accepts(accept: &[u8], coding: &str) -> bool {
    accept.split(|&b| b == b',').any(|item| {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        name.eq_ignore_ascii_case(coding.as_bytes())
            && !parts.any(|p| {
                let p = p.trim_ascii();
                p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") && p[2..].iter().all(|&b| b == b'0' || b == b'.')
            })
    })
}

/// `GET /capig/client.js`: precompressed (brotli, gzip), with an ETag for 304s and a
/// short cache life (a new release reaches browsers within minutes).
fn client_js(out: &mut Vec<u8>, head: &http1::RequestHead<'_, '_>, to: ReplyTo) {
    let common: [(&str, &[u8]); 4] = [
        ("Content-Type", b"application/javascript; charset=utf-8"),
        ("Cache-Control", b"public, max-age=300, stale-while-revalidate=86400"),
        ("ETag", client::ETAG.as_bytes()),
        ("Vary", b"Accept-Encoding"),
    ];
    let matches = head
        .header("if-none-match")
        .is_some_and(|v| v.split(|&b| b == b',').any(|t| t.trim_ascii() == client::ETAG.as_bytes() || t.trim_ascii() == b"*"));
    if matches {
        http1::write_response(out, &Response { status: 304, headers: &common, body: b"", to });
        return;
    }
    let accept = head.header("accept-encoding").unwrap_or_default();
    let (body, coding): (&[u8], Option<&[u8]>) = if accepts(accept, "br") {
        (client::BROTLI, Some(b"br"))
    } else if accepts(accept, "gzip") {
        (client::GZIP, Some(b"gzip"))
    } else {
        (client::JS, None)
    };
    let mut headers: [(&str, &[u8]); 5] = [("", b""); 5];
    headers[..4].copy_from_slice(&common);
    let n = match coding {
        Some(c) => {
            headers[4] = ("Content-Encoding", c);
            5
        }
        None => 4,
    };
    http1::write_response(out, &Response { status: 200, headers: &headers[..n], body, to });
}

fn text(out: &mut Vec<u8>, status: u16, body: &str, to: ReplyTo) {
    http1::write_response(out, &Response { status, headers: &[("Content-Type", b"text/plain; charset=utf-8")], body: body.as_bytes(), to });
}

/// The answer to events the spool refused: 503 with `Retry-After` when a resend can
/// succeed, 413 when it never can.
fn refuse(out: &mut Vec<u8>, e: &SubmitError, to: ReplyTo) {
    let mut msg = e.to_string();
    msg.push('\n');
    let (status, headers): (u16, &[(&str, &[u8])]) = if e.retryable() {
        (503, &[("Content-Type", b"text/plain; charset=utf-8"), ("Retry-After", b"5")])
    } else {
        (413, &[("Content-Type", b"text/plain; charset=utf-8")])
    };
    http1::write_response(out, &Response { status, headers, body: msg.as_bytes(), to });
}

/// Why a request got no event in, for the `error` of its 400 (or 413).
fn nothing_taken(n: &super::core::Ingested) -> &'static str {
    if n.rejected == 0 {
        "the body holds no events; send one event object or an array of them"
    } else if n.too_large == n.rejected {
        "no event was taken: each is larger than capig can store; send less custom data per event"
    } else {
        "no event was taken; each event's reason is under \"rejected\": fix the events before sending them again"
    }
}

/// What a request took, as its answer says it.
enum Taken<'a> {
    /// Browser events (HTTP and WebSocket): their ids, `"id","id"`.
    Ids(&'a [u8]),
    /// The server API: how many.
    Count(u32),
}

/// The answer to a body of events: `{"stored":[ids],"rejected":[{event_id, reason,
/// message}…]}` for browser events, `{"events_received":n,"rejected":[…]}` for the
/// server API, with `"error"` when nothing was taken.
fn write_answer(out: &mut Vec<u8>, taken: Taken<'_>, rejected: &[u8], error: Option<&str>) {
    match taken {
        Taken::Ids(ids) => {
            out.extend_from_slice(b"{\"stored\":[");
            out.extend_from_slice(ids);
            out.push(b']');
        }
        Taken::Count(n) => {
            let mut digits = [0u8; 20];
            out.extend_from_slice(b"{\"events_received\":");
            out.extend_from_slice(crate::event::ids::format_u64(u64::from(n), &mut digits));
        }
    }
    out.extend_from_slice(b",\"rejected\":[");
    out.extend_from_slice(rejected);
    out.push(b']');
    if let Some(e) = error {
        out.extend_from_slice(b",\"error\":");
        crate::event::json::write_str(out, e);
    }
    out.push(b'}');
}

/// A WebSocket message's events were refused by the spool: `{"refused":label,…}` asks
/// the client to send them again later; `{"error":…,"reason":label}` says a resend
/// cannot help (the web client drops the message then).
fn answer_refused(out: &mut Vec<u8>, e: &SubmitError) {
    if !e.retryable() {
        out.extend_from_slice(b"{\"error\":");
        crate::event::json::write_str(out, &e.to_string());
        out.extend_from_slice(b",\"reason\":");
        crate::event::json::write_str(out, e.label());
        out.push(b'}');
        return;
    }
    out.extend_from_slice(b"{\"refused\":");
    crate::event::json::write_str(out, e.label());
    out.extend_from_slice(b",\"message\":");
    crate::event::json::write_str(out, &e.to_string());
    out.push(b'}');
}
