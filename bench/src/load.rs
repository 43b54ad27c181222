//! `capig-load`: the load generator. Keep-alive HTTP posts, WebSocket frames or server-API
//! batches, from N connections, each waiting for its answer before the next request
//! (closed loop), optionally paced to a target rate; a latency histogram from send to
//! acknowledgement (capig acknowledges once the events are durable), a progress line a
//! second on stderr, and a JSON summary.
//!
//! Lean on purpose: in a same-core run its CPU per event competes with the server's, so
//! requests are written into reused buffers, answers are read with a minimal parse (status
//! line, `Content-Length`, WebSocket frame header), and one current-thread tokio runtime
//! drives every connection.
//!
//! The gateway's rate limits (`limits.requests_per_second_per_ip` and `_per_connection`)
//! count the generator's requests too: run capig with them off
//! (`--set limits.requests_per_second_per_ip=0 --set limits.requests_per_second_per_connection=0`)
//! or every request past them counts as an error (429).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `POST /capig/events`, K browser events per request.
    Http,
    /// `GET /capig/ws`, K browser events per text frame, one frame in flight.
    Ws,
    /// `POST /capi/{pixel}/events`, `{"data":[K CAPI events],"accessKey":…}`.
    ServerApi,
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: SocketAddr,
    pub mode: Mode,
    pub connections: usize,
    pub events_per_request: usize,
    /// Stop after this long…
    pub duration: Duration,
    /// …or after this many events, whichever comes first (0: no count limit).
    pub max_events: u64,
    /// Events per second over all connections (0: as fast as answers come).
    pub rate: u64,
    pub host: String,
    pub origin: String,
    pub pixel: String,
    pub access_key: String,
    pub progress: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: "127.0.0.1:8080".parse().expect("a socket address"),
            mode: Mode::Http,
            connections: 16,
            events_per_request: 1,
            duration: Duration::from_secs(10),
            max_events: 0,
            rate: 0,
            host: "capig.shop.example".into(),
            origin: "https://www.shop.example".into(),
            pixel: "1234567890123456".into(),
            access_key: String::new(),
            progress: false,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The JSON summary.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub connections: usize,
    pub events_per_request: usize,
    pub requests: u64,
    pub events_sent: u64,
    pub events_acked: u64,
    pub errors: u64,
    /// Status codes other than 200/202 (or refusals on a WebSocket), by code.
    pub error_statuses: std::collections::BTreeMap<String, u64>,
    pub seconds: f64,
    pub events_per_second: f64,
    pub requests_per_second: f64,
    pub latency_us: Latency,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
}

/// Writes realistic browser events: varying users and amounts, a third of the page URLs
/// with an `fbclid`, advanced matching on every other event.
pub struct EventGen {
    state: u64,
    n: u64,
    conn: usize,
    /// Makes event ids unique across runs (capig drops a repeated event_id as a duplicate).
    run: u64,
}

impl EventGen {
    pub fn new(conn: usize) -> EventGen {
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        EventGen { state: 0x9E37_79B9_7F4A_7C15 ^ (conn as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03) ^ run, n: 0, conn, run }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// Appends one browser event of `pixel` (about 500 bytes).
    pub fn browser_event(&mut self, out: &mut Vec<u8>, pixel: &str, now_secs: u64) {
        use std::io::Write;
        self.n += 1;
        let r = self.next();
        let user = r % 100_000;
        let names = ["Purchase", "AddToCart", "ViewContent", "Lead", "InitiateCheckout"];
        let name = names[(r >> 20) as usize % names.len()];
        let cents = 100 + (r >> 8) % 50_000;
        let fbclid = if r.is_multiple_of(3) { format!("&fbclid=IwAR{:x}", r >> 16) } else { String::new() };
        let _ = write!(
            out,
            r#"{{"pixel_id":"{pixel}","event_name":"{name}","event_id":"load-{run:x}-{conn}-{n}","event_time":{now_secs},"event_source_url":"https://www.shop.example/p/{item}?ref=ad{fbclid}","referrer_url":"https://www.shop.example/","custom_data":{{"value":{v}.{c:02},"currency":"EUR","content_ids":["SKU-{item}"],"content_type":"product"}},"user_data":{{"#,
            run = self.run,
            conn = self.conn,
            n = self.n,
            item = r % 997,
            v = cents / 100,
            c = cents % 100,
        );
        if r & 1 == 0 {
            let _ = write!(out, r#""em":"user{user}@example.com","ph":"+1 650 555 {p:04}","fn":"Alex","ln":"Doe{user}","zp":"9402{z}","#, p = user % 10_000, z = user % 10);
        }
        let _ = write!(out, r#""fbp":"fb.1.1700000000000.{}"}}}}"#, 1_000_000_000 + user);
    }

    /// Appends one CAPI server event (already hashed, as backends send them).
    pub fn server_event(&mut self, out: &mut Vec<u8>, now_secs: u64) {
        use std::io::Write;
        self.n += 1;
        let r = self.next();
        let _ = write!(
            out,
            r#"{{"event_name":"Purchase","event_id":"srv-{:x}-{}-{}","event_time":{now_secs},"action_source":"website","event_source_url":"https://www.shop.example/thanks","user_data":{{"em":["{:064x}"],"client_ip_address":"2001:db8::{:x}","client_user_agent":"Mozilla/5.0 (load)"}},"custom_data":{{"value":{}.99,"currency":"USD"}}}}"#,
            self.run,
            self.conn,
            self.n,
            u128::from(r) * 0x1_0000_0001,
            r % 0xffff,
            r % 500
        );
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs the load and returns the summary.
pub fn run(cfg: &LoadConfig) -> std::io::Result<Summary> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio::task::LocalSet::new().block_on(&rt, run_async(cfg))
}

async fn run_async(cfg: &LoadConfig) -> std::io::Result<Summary> {
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut tasks = Vec::new();
    for conn in 0..cfg.connections {
        let cfg = cfg.clone();
        let counters = counters.clone();
        tasks.push(tokio::task::spawn_local(async move { connection(conn, &cfg, &counters, deadline).await }));
    }
    let progress = cfg.progress.then(|| {
        let counters = counters.clone();
        tokio::task::spawn_local(async move {
            let mut last = 0;
            let mut t = tokio::time::interval(Duration::from_secs(1));
            t.tick().await;
            loop {
                t.tick().await;
                let acked = counters.acked.load(Ordering::Relaxed);
                eprintln!(
                    "capig-load: {:>4.0} s  {:>9} events/s  {:>10} acked  {:>6} errors",
                    start.elapsed().as_secs_f64(),
                    acked - last,
                    acked,
                    counters.errors.load(Ordering::Relaxed)
                );
                last = acked;
            }
        })
    });
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        let (h, s) = t.await.map_err(std::io::Error::other)??;
        hist.add(&h).expect("same bounds");
        for (k, v) in s {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    let seconds = start.elapsed().as_secs_f64();
    let acked = counters.acked.load(Ordering::Relaxed);
    let requests = counters.requests.load(Ordering::Relaxed);
    Ok(Summary {
        mode: cfg.mode,
        connections: cfg.connections,
        events_per_request: cfg.events_per_request,
        requests,
        events_sent: counters.sent.load(Ordering::Relaxed),
        events_acked: acked,
        errors: counters.errors.load(Ordering::Relaxed),
        error_statuses: statuses,
        seconds,
        events_per_second: acked as f64 / seconds,
        requests_per_second: requests as f64 / seconds,
        latency_us: Latency {
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        },
    })
}

type Statuses = std::collections::BTreeMap<String, u64>;

async fn connection(conn: usize, cfg: &LoadConfig, c: &Counters, deadline: Instant) -> std::io::Result<(Histogram<u64>, Statuses)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut statuses = Statuses::new();
    let mut stream = TcpStream::connect(cfg.target).await?;
    stream.set_nodelay(true)?;
    let mut gen = EventGen::new(conn);
    let mut body = Vec::with_capacity(cfg.events_per_request * 600 + 64);
    let mut req = Vec::with_capacity(body.capacity() + 512);
    let mut buf = vec![0u8; 64 << 10];
    let mut filled = 0;
    if cfg.mode == Mode::Ws {
        stream.write_all(ws_handshake(&cfg.host, &cfg.origin).as_bytes()).await?;
        loop {
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err(std::io::Error::other("the WebSocket handshake was refused"));
            }
            filled += n;
            if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                if !buf.starts_with(b"HTTP/1.1 101") {
                    return Err(std::io::Error::other(format!("the WebSocket handshake got {:?}", String::from_utf8_lossy(&buf[..end.min(64)]))));
                }
                buf.copy_within(end + 4..filled, 0);
                filled -= end + 4;
                break;
            }
        }
    }
    let per_conn_interval = (cfg.rate > 0).then(|| {
        Duration::from_secs_f64((cfg.connections * cfg.events_per_request) as f64 / cfg.rate as f64)
    });
    let mut next_send = Instant::now();
    let per_conn_cap = if cfg.max_events == 0 { u64::MAX } else { cfg.max_events.div_ceil(cfg.connections as u64) };
    let mut mine = 0u64;
    while Instant::now() < deadline && mine < per_conn_cap {
        if let Some(iv) = per_conn_interval {
            tokio::time::sleep_until(next_send.into()).await;
            next_send += iv;
        }
        let k = cfg.events_per_request;
        body.clear();
        let now = now_secs();
        match cfg.mode {
            Mode::Http | Mode::Ws => {
                body.push(b'[');
                for i in 0..k {
                    if i > 0 {
                        body.push(b',');
                    }
                    gen.browser_event(&mut body, &cfg.pixel, now);
                }
                body.push(b']');
            }
            Mode::ServerApi => {
                body.extend_from_slice(b"{\"data\":[");
                for i in 0..k {
                    if i > 0 {
                        body.push(b',');
                    }
                    gen.server_event(&mut body, now);
                }
                body.extend_from_slice(b"],\"accessKey\":");
                body.extend_from_slice(serde_json::to_string(&cfg.access_key).unwrap_or_default().as_bytes());
                body.push(b'}');
            }
        }
        req.clear();
        match cfg.mode {
            Mode::Http => http_request(&mut req, cfg, "/capig/events", &body),
            Mode::ServerApi => http_request(&mut req, cfg, &format!("/capi/{}/events", cfg.pixel), &body),
            Mode::Ws => ws_frame(&mut req, &body, mine as u32),
        }
        let sent_at = Instant::now();
        stream.write_all(&req).await?;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.sent.fetch_add(k as u64, Ordering::Relaxed);
        mine += k as u64;
        let stored = match cfg.mode {
            Mode::Ws => read_ws_answer(&mut stream, &mut buf, &mut filled, &mut statuses).await?,
            _ => read_http_answer(&mut stream, &mut buf, &mut filled, &mut statuses).await?,
        };
        let us = sent_at.elapsed().as_micros() as u64;
        let _ = hist.record(us.max(1));
        match stored {
            Some(n) => {
                c.acked.fetch_add(n, Ordering::Relaxed);
                if n < k as u64 {
                    *statuses.entry("events_rejected".to_owned()).or_insert(0) += k as u64 - n;
                }
            }
            None => {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok((hist, statuses))
}

fn http_request(out: &mut Vec<u8>, cfg: &LoadConfig, path: &str, body: &[u8]) {
    use std::io::Write;
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\nUser-Agent: Mozilla/5.0 (capig-load)\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        cfg.host,
        cfg.origin,
        // A returning browser: the pixel set `_fbp` on its first page view (without
        // it every request would be a first visit, minted and answered a Set-Cookie).
        if path == "/capig/events" { "Cookie: _fbp=fb.1.1700000000000.1000000001\r\n" } else { "" },
        body.len()
    );
    out.extend_from_slice(body);
}

/// The opening handshake of a browser WebSocket to capig's `/capig/ws`.
pub fn ws_handshake(host: &str, origin: &str) -> String {
    format!(
        "GET /capig/ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUser-Agent: capig-load\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// A masked client text frame.
pub fn ws_frame(out: &mut Vec<u8>, payload: &[u8], seed: u32) {
    let mask = (seed.wrapping_mul(0x9E37_79B9) | 1).to_be_bytes();
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, filled: &mut usize) -> std::io::Result<()> {
    if *filled == buf.len() {
        buf.resize(buf.len() * 2, 0);
    }
    let n = stream.read(&mut buf[*filled..]).await?;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
    }
    *filled += n;
    Ok(())
}

/// How many events an answer says were stored: the ids in `"stored":[…]` (ours hold no
/// comma), or `"events_received":n` (the server API). A light scan, not a JSON parse.
fn stored_count(body: &[u8]) -> Option<u64> {
    if let Some(at) = find(body, b"\"stored\":[") {
        let rest = &body[at + 10..];
        let end = rest.iter().position(|&b| b == b']')?;
        let list = &rest[..end];
        return Some(if list.is_empty() { 0 } else { list.iter().filter(|&&b| b == b',').count() as u64 + 1 });
    }
    let at = find(body, b"\"events_received\":")?;
    let digits: Vec<u8> = body[at + 18..].iter().copied().take_while(u8::is_ascii_digit).collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Reads one HTTP answer; the events it stored for 200/202, `None` otherwise.
async fn read_http_answer(stream: &mut TcpStream, buf: &mut Vec<u8>, filled: &mut usize, statuses: &mut Statuses) -> std::io::Result<Option<u64>> {
    loop {
        if let Some(end) = find(&buf[..*filled], b"\r\n\r\n") {
            let head = &buf[..end];
            let status = std::str::from_utf8(&head[9..12.min(head.len())]).unwrap_or("000").to_owned();
            let len = head
                .split(|&b| b == b'\n')
                .find_map(|l| {
                    let l = std::str::from_utf8(l).ok()?;
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while *filled < total {
                fill(stream, buf, filled).await?;
            }
            let ok = status == "200" || status == "202";
            let stored = if ok { stored_count(&buf[end + 4..total]) } else { None };
            buf.copy_within(total..*filled, 0);
            *filled -= total;
            if !ok {
                *statuses.entry(status).or_insert(0) += 1;
            }
            return Ok(stored);
        }
        fill(stream, buf, filled).await?;
    }
}

/// Reads one server frame (the answer to our message); the events it stored.
async fn read_ws_answer(stream: &mut TcpStream, buf: &mut Vec<u8>, filled: &mut usize, statuses: &mut Statuses) -> std::io::Result<Option<u64>> {
    loop {
        if *filled >= 2 {
            let (len, hl) = match buf[1] & 0x7f {
                126 if *filled >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if *filled >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize, 10),
                126 | 127 => (usize::MAX, 0),
                n => (n as usize, 2),
            };
            if len != usize::MAX && *filled >= hl + len {
                let op = buf[0] & 0x0f;
                let stored = if op == 1 { stored_count(&buf[hl..hl + len]) } else { None };
                if stored.is_none() {
                    let what = if op == 8 { "closed".to_owned() } else { String::from_utf8_lossy(&buf[hl..hl + len.min(24)]).into_owned() };
                    *statuses.entry(what).or_insert(0) += 1;
                }
                buf.copy_within(hl + len..*filled, 0);
                *filled -= hl + len;
                if op == 8 {
                    return Err(std::io::Error::other("the server closed the WebSocket"));
                }
                return Ok(stored);
            }
        }
        fill(stream, buf, filled).await?;
    }
}
