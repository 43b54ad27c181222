//! HTTPS and WebSocket-over-TLS with large bodies, through `capig serve` and real TLS
//! sockets: every size up to the limits, however the client's records reach the
//! gateway (one large write, a byte at a time, records cut across writes), and curl
//! posting a large server-API batch again and again, as a backend does.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Writes what it is given in pieces of `piece` bytes, each its own `send`, with a
/// pause after every `pause_every` pieces so that the gateway's reads see them apart.
struct Cutting {
    tcp: TcpStream,
    piece: usize,
    pause_every: usize,
    written: usize,
}

impl Read for Cutting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Cutting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.piece);
        self.tcp.write_all(&buf[..n])?;
        self.written += 1;
        if self.pause_every > 0 && self.written % self.pause_every == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// How the client hands its TLS bytes to the socket.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    /// Everything in one write.
    Whole,
    /// Pieces of this many bytes (cutting TLS records anywhere).
    Pieces(usize),
}

fn connect(gw: &Gateway, dir: &TempDir, arrival: Arrival) -> rustls::StreamOwned<rustls::ClientConnection, Cutting> {
    let tcp = TcpStream::connect(gw.https.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let (piece, pause_every) = match arrival {
        Arrival::Whole => (usize::MAX, 0),
        Arrival::Pieces(1) => (1, 64),
        Arrival::Pieces(n) => (n, 4),
    };
    tls_client_over(Cutting { tcp, piece, pause_every, written: 0 }, &dir.0.join("main.crt"), GW_HOST)
}

/// A server-API body of exactly `len` bytes holding `events` events (JSON whitespace
/// pads it) and the ids they carry.
fn server_body(tag: &str, len: usize) -> (Vec<u8>, Vec<String>) {
    let now = unix_now();
    let mut ids = Vec::new();
    let mut body = String::from("{\"accessKey\":\"");
    body.push_str(GW_KEY);
    body.push_str("\",\"data\":[");
    loop {
        let id = format!("{tag}-{}", ids.len());
        let event = capi_event(&id, now);
        // Room for this event, the closing "]}" and at least nothing else.
        if body.len() + event.len() + 3 > len || ids.len() == 1000 {
            break;
        }
        if !ids.is_empty() {
            body.push(',');
        }
        body.push_str(&event);
        ids.push(id);
    }
    body.push_str("]}");
    assert!(body.len() <= len && !ids.is_empty(), "{len} bytes cannot hold an event");
    let pad = len - body.len();
    body.insert_str(body.len() - 2, &" ".repeat(pad));
    assert_eq!(body.len(), len);
    (body.into_bytes(), ids)
}

fn post(tls: &mut impl Write, path: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {GW_HOST}\r\nOrigin: {GW_ORIGIN}\r\nUser-Agent: Mozilla/5.0 (tls test)\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    tls.write_all(&all).unwrap();
    tls.flush().unwrap();
}

const SIZES: [usize; 6] = [1 << 10, 16 << 10, 17 << 10, 64 << 10, 1 << 20, 2 << 20];

#[test]
fn https_takes_every_body_size_up_to_the_limit_however_the_bytes_arrive() {
    let dir = TempDir::new("tls-sizes");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), true, ""), &[]);
    let pixel: u64 = GW_PIXEL.parse().unwrap();
    let mut want = Vec::new();
    let mut n = 0;
    for len in SIZES {
        let mut arrivals = vec![Arrival::Whole, Arrival::Pieces(1000), Arrival::Pieces(16 << 10), Arrival::Pieces((16 << 10) + 300)];
        if len <= 17 << 10 {
            arrivals.push(Arrival::Pieces(1));
        }
        for arrival in arrivals {
            n += 1;
            let (body, ids) = server_body(&format!("s{n}"), len);
            let mut tls = connect(&gw, &dir, arrival);
            post(&mut tls, &format!("/capi/{GW_PIXEL}/events"), "application/json", &body);
            let (status, _, answer) = read_response(&mut tls).unwrap_or_else(|| panic!("{len} bytes {arrival:?}: no answer; log:\n{}", gw.log()));
            assert_eq!(status, 202, "{len} bytes {arrival:?}: {answer}");
            let v: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(v["events_received"], ids.len(), "{len} bytes {arrival:?}");
            want.extend(ids);
        }
    }
    // Over the limit: a clear 413, read by the client that sent it all (not a reset).
    let (body, _) = server_body("over", (2 << 20) + 1);
    for arrival in [Arrival::Whole, Arrival::Pieces(16 << 10)] {
        let mut tls = connect(&gw, &dir, arrival);
        post(&mut tls, &format!("/capi/{GW_PIXEL}/events"), "application/json", &body);
        let (status, _, answer) = read_response(&mut tls).expect("the 413 reaches a client that sent its whole body");
        assert_eq!(status, 413, "{answer}");
    }
    assert_each_once(&sim, pixel, want, Duration::from_secs(30));
    assert!(gw.stop().success());
}

#[test]
fn websocket_over_tls_takes_every_message_size_up_to_the_limit() {
    let dir = TempDir::new("tls-ws");
    let sim = sim();
    let extra = "[limits]\nws_frame_bytes = \"2 MiB\"\nws_message_bytes = \"2 MiB\"\n";
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), true, extra), &[]);
    let pixel: u64 = GW_PIXEL.parse().unwrap();
    let mut want = Vec::new();
    for arrival in [Arrival::Whole, Arrival::Pieces(1000), Arrival::Pieces((16 << 10) + 300)] {
        let tls = connect(&gw, &dir, arrival);
        let url = format!("wss://{GW_HOST}/capig/ws");
        let (mut ws, _) = tungstenite::client(ws_request(&url, "Mozilla/5.0 (wss test)"), tls).unwrap();
        for (k, len) in SIZES.into_iter().enumerate() {
            // An array of browser events, padded to `len` bytes with JSON whitespace.
            let mut events = Vec::new();
            let mut ids = Vec::new();
            let mut total = 2;
            loop {
                let id = format!("w{arrival:?}-{k}-{}", ids.len());
                let e = browser_event(&id);
                if total + e.len() + 1 > len || ids.len() == 1000 {
                    break;
                }
                total += e.len() + usize::from(!events.is_empty());
                events.push(e);
                ids.push(id);
            }
            let mut message = format!("[{}]", events.join(","));
            message.insert_str(message.len() - 1, &" ".repeat(len - message.len()));
            assert_eq!(message.len(), len);
            ws.send(tungstenite::Message::text(message)).unwrap();
            let answer = match ws.read() {
                Ok(tungstenite::Message::Text(t)) => t.to_string(),
                other => panic!("{len} bytes {arrival:?}: {other:?}; log:\n{}", gw.log()),
            };
            let v: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(v["stored"].as_array().map(Vec::len), Some(ids.len()), "{len} bytes {arrival:?}: {answer}");
            want.extend(ids);
        }
        ws.close(None).unwrap();
    }
    assert_each_once(&sim, pixel, want, Duration::from_secs(30));
    assert!(gw.stop().success());
}

/// What the issue measured: curl posting a 92 KB batch of 300 events over HTTPS, ten
/// times; every one answered 202.
#[test]
fn curl_posts_a_large_batch_over_https_ten_times() {
    let dir = TempDir::new("tls-curl");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), true, ""), &[]);
    let https = gw.https.unwrap();
    for i in 0..10 {
        let (body, ids) = server_body(&format!("c{i}"), 92_000);
        assert!(ids.len() >= 200, "{}", ids.len());
        let file = dir.0.join("body.json");
        std::fs::write(&file, &body).unwrap();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(dir.0.join("main.crt"))
            .args(["--resolve", &format!("{GW_HOST}:{}:127.0.0.1", https.port())])
            .args(["-H", "Content-Type: application/json", "-w", "\n%{http_code}", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(format!("https://{GW_HOST}:{}/capi/{GW_PIXEL}/events", https.port()))
            .output()
            .expect("curl (Debian's curl package)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with("\n202"), "post {i}: {text} {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(gw.stop().success());
}

/// Every connection the gateway closes on an error leaves a debug line with the reason,
/// and none with what the client sent.
#[test]
fn connections_closed_on_errors_are_logged_without_content() {
    let dir = TempDir::new("tls-log");
    let sim = sim();
    let config = gateway_config(&dir, &sim.url(), true, "");
    let gw = Gateway::start_with(&config, &[], |cmd| {
        cmd.env("CAPIG_LOG", "capig=debug");
    });
    // Plain HTTP spoken to the TLS port.
    let mut s = TcpStream::connect(gw.https.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /?email=jane.doe@example.com HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let _ = s.read_to_end(&mut Vec::new());
    // A malformed request over TLS.
    let mut tls = connect(&gw, &dir, Arrival::Whole);
    tls.write_all(b"POST /capig/events HTTP/1.1\r\nHost: capig.shop.example\r\nContent-Length: 12x\r\n\r\njane.doe@example.com").unwrap();
    let (status, _, _) = read_response(&mut tls).expect("an answer");
    assert_eq!(status, 400);
    // A WebSocket frame that is not masked.
    let mut ws = TcpStream::connect(gw.http).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(ws, "GET /capig/ws HTTP/1.1\r\nHost: {GW_HOST}\r\nOrigin: {GW_ORIGIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut frame = vec![0x81, 20];
    frame.extend_from_slice(b"jane.doe@example.com");
    ws.write_all(&frame).unwrap();
    let _ = ws.read_to_end(&mut Vec::new());
    wait_for(Duration::from_secs(5), "three debug lines", || gw.log().matches("closing a").count() >= 3);
    let log = gw.log();
    assert!(log.contains("closing a connection: reading failed: TLS error from the client"), "{log}");
    assert!(log.contains("closing a connection after a bad request: Content-Length"), "{log}");
    assert!(log.contains("closing a WebSocket: Failed"), "{log}");
    assert!(!log.contains("jane.doe"), "no content in the log:\n{log}");
    assert!(gw.stop().success());
}
