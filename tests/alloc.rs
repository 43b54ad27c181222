//! The hot path allocates nothing per event: a counting allocator counts the
//! allocations made on the ingestion cores' threads while a keep-alive HTTP client and a
//! WebSocket client send the same number of requests with 1 and with 25 events each.
//! What a request costs (its generation, its batch buffer, which are per request and per
//! batch) is the same in both runs; the difference divided by the extra events is what
//! one event costs, and must be (about) zero.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use capig::config::{Config, ListenerKind};
use capig::ingest::{ServeOptions, Server};
use support::*;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_CORE: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if ON_CORE.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches
// only an atomic and a const-initialized thread local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn on_core(_core: usize) {
    ON_CORE.with(|c| c.set(true));
}

fn events(prefix: &str, n: usize) -> String {
    events_of(prefix, n, browser_event)
}

fn events_of(prefix: &str, n: usize, make: fn(&str) -> String) -> String {
    let all: Vec<String> = (0..n).map(|i| make(&format!("{prefix}-{i}"))).collect();
    format!("[{}]", all.join(","))
}


/// Allocations on the cores per request for `requests` HTTP requests of `n` events on
/// one kept-alive connection.
fn http_run(conn: &mut TcpStream, tag: &str, requests: usize, n: usize) -> f64 {
    let bodies: Vec<String> = (0..requests).map(|r| events(&format!("{tag}{r}"), n)).collect();
    let before = ALLOCS.load(Ordering::Relaxed);
    for body in &bodies {
        write!(
            conn,
            "POST /capig/events HTTP/1.1\r\nHost: {GW_HOST}\r\nOrigin: {GW_ORIGIN}\r\nUser-Agent: UA alloc\r\nCookie: _fbp=fb.1.1700000000000.1234567890\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        read_answer(conn);
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / requests as f64
}

fn read_answer(conn: &mut TcpStream) {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= len {
                assert!(head.starts_with("HTTP/1.1 200"), "{text}");
                assert!(!body.contains("\"rejected\":[{"), "{body}");
                return;
            }
        }
    }
}

/// Allocations on the cores per message for `requests` WebSocket messages of `n`
/// events made by `make`, whose answers must contain `answer_has`.
fn ws_run(ws: &mut tungstenite::WebSocket<TcpStream>, tag: &str, requests: usize, n: usize, make: fn(&str) -> String, answer_has: &str) -> f64 {
    let msgs: Vec<String> = (0..requests).map(|r| events_of(&format!("{tag}{r}"), n, make)).collect();
    let before = ALLOCS.load(Ordering::Relaxed);
    for m in msgs {
        ws.send(tungstenite::Message::text(m)).unwrap();
        let tungstenite::Message::Text(t) = ws.read().unwrap() else { panic!("an answer") };
        assert!(t.contains(answer_has), "{t}");
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / requests as f64
}

/// Warms `run` up (buffers grow to their working size once), then compares 200
/// requests of 1 event with 200 of 25: the difference is what each event costs.
fn measure(what: &str, mut run: impl FnMut(&str, usize, usize) -> f64) {
    run("warm", 100, 25);
    let one = run("one", 200, 1);
    let many = run("many", 200, 25);
    let per_event = (many - one) / 24.0;
    eprintln!("{what}: {one:.2} allocations per request of 1 event, {many:.2} of 25: {per_event:.3} per event");
    assert!(per_event < 0.05, "{what}: {per_event:.3} allocations per event");
}

#[test]
fn no_allocation_per_event_on_the_http_and_websocket_paths() {
    let dir = TempDir::new("alloc");
    let sim = sim();
    let path = gateway_config(&dir, &sim.url(), false, "");
    let text = std::fs::read_to_string(&path).unwrap().replace("cores = 2", "cores = 1");
    let config = Config::from_toml(&text, &path, &[]).unwrap();
    let server = Server::start(config, ServeOptions { on_core_start: Some(on_core), ..ServeOptions::default() }).unwrap();
    let addr = server.listening().iter().find(|(k, _)| *k == ListenerKind::Http).unwrap().1;

    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    measure("HTTP", |tag, requests, n| http_run(&mut conn, tag, requests, n));

    let mut req = ws_request(&format!("ws://{addr}/capig/ws"), "UA alloc");
    req.headers_mut().insert("Cookie", "_fbp=fb.1.1700000000000.1234567890".parse().unwrap());
    let (mut ws, _) = tungstenite::client(req, TcpStream::connect(addr).unwrap()).unwrap();
    measure("WebSocket", |tag, requests, n| ws_run(&mut ws, &format!("w{tag}"), requests, n, browser_event, "\"rejected\":[]"));
    // The rejection path too: each rejected event's message is written into the answer
    // without a String of its own.
    let stale = "\"reason\":\"event_too_old\"";
    measure("WebSocket, rejected", |tag, requests, n| ws_run(&mut ws, &format!("r{tag}"), requests, n, stale_browser_event, stale));
    drop(ws);
    drop(conn);
    server.shutdown(Duration::from_secs(2));
}
