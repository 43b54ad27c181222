//! `capig serve` end to end: the real binary with io_uring (or epoll), real sockets, a
//! real WebSocket client (tungstenite), and `capig sim` as Meta.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn sim_events(sim: &capig::sim::SimHandle) -> Vec<Value> {
    sim.events(Some(GW_PIXEL)).into_iter().map(|e| e.event).collect()
}

fn post_browser(gw: &Gateway, body: &str, extra: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    let mut headers = vec![
        ("Origin", GW_ORIGIN),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) capig-test"),
        ("Content-Type", "text/plain"),
    ];
    headers.extend_from_slice(extra);
    http(gw.http, "POST", "/capig/events", &headers, body.as_bytes())
}

#[test]
fn browser_events_over_http_arrive_with_ip_user_agent_and_a_stable_minted_fbp() {
    let dir = TempDir::new("serve-http");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, ""), &[]);
    wait_for(Duration::from_secs(5), "the cores' driver lines", || gw.log().matches(" driver").count() >= 2);
    assert!(gw.log().contains("io_uring") || gw.log().contains("epoll"), "{}", gw.log());

    let (status, headers, body) = post_browser(&gw, &browser_event("h1"), &[]);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["stored"], serde_json::json!(["h1"]));
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(GW_ORIGIN));
    assert_eq!(header(&headers, "access-control-allow-credentials"), Some("true"));
    let cookie = header(&headers, "set-cookie").expect("a minted _fbp");
    assert!(cookie.contains("Domain=shop.example") && cookie.contains("Secure") && cookie.contains("SameSite=Lax"), "{cookie}");
    let fbp = cookie.split(';').next().unwrap().strip_prefix("_fbp=").unwrap().to_owned();
    assert!(capig::event::ids::is_valid_fbp(&fbp), "{fbp}");

    // The browser sends the cookie back: no new one, the same fbp on the event.
    let (status, headers, _) = post_browser(&gw, &browser_event("h2"), &[("Cookie", &format!("_fbp={fbp}"))]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "set-cookie"), None);
    // A concurrent first request of the same browser (no cookie yet) mints the same.
    let (_, headers, _) = post_browser(&gw, &format!("[{},{}]", browser_event("h3"), browser_event("h4")), &[]);
    assert!(header(&headers, "set-cookie").unwrap().starts_with(&format!("_fbp={fbp};")));

    wait_for(Duration::from_secs(10), "4 events at the simulator", || sim_events(&sim).len() == 4);
    for e in sim_events(&sim) {
        let ud = &e["user_data"];
        assert_eq!(ud["client_ip_address"], "127.0.0.1", "{e}");
        assert_eq!(ud["client_user_agent"], "Mozilla/5.0 (X11; Linux x86_64) capig-test");
        assert_eq!(ud["fbp"], fbp.as_str());
        // The email went through Meta's normalization and SHA-256, never in clear.
        let mut scratch = String::new();
        let want = capig::event::normalize::hash(capig::event::normalize::UserField::Em, "Jane.Doe@Example.com", &mut scratch).unwrap().unwrap();
        assert_eq!(ud["em"], want.as_str());
    }

    // An ad click: the page URL has an fbclid and the browser no _fbc yet. The answer
    // sets _fbc to the value the event got.
    let mut click: Value = serde_json::from_str(&browser_event("c1")).unwrap();
    click["event_source_url"] = "https://www.shop.example/landing?utm_source=fb&fbclid=IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk".into();
    let (status, headers, _) = post_browser(&gw, &click.to_string(), &[("Cookie", &format!("_fbp={fbp}"))]);
    assert_eq!(status, 200);
    let cookies: Vec<&str> = headers.iter().filter(|(k, _)| k == "set-cookie").map(|(_, v)| v.as_str()).collect();
    let fbc_cookie = cookies.iter().find(|c| c.starts_with("_fbc=")).expect("an _fbc cookie");
    let fbc = fbc_cookie.split(';').next().unwrap().strip_prefix("_fbc=").unwrap();
    assert!(fbc.starts_with("fb.1.") && fbc.ends_with(".IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"), "{fbc}");
    assert!(fbc_cookie.contains("Domain=shop.example"));
    wait_for(Duration::from_secs(10), "the click event", || sim_events(&sim).len() == 5);
    let got = sim_events(&sim).into_iter().find(|e| e["event_id"] == "c1").unwrap();
    assert_eq!(got["user_data"]["fbc"], fbc);
    // With the cookie, no new one.
    let (_, headers, _) = post_browser(&gw, &click.to_string().replace("\"c1\"", "\"c2\""), &[("Cookie", &format!("_fbp={fbp}; _fbc={fbc}"))]);
    assert!(header(&headers, "set-cookie").is_none());
    assert!(gw.stop().success());
}

#[test]
fn the_server_api_answers_202_once_durable_and_checks_the_access_key() {
    let dir = TempDir::new("serve-capi");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, ""), &[]);
    let event = serde_json::json!({
        "event_name": "Purchase", "event_id": "srv-1", "event_time": unix_now(), "action_source": "website",
        "event_source_url": "https://www.shop.example/c",
        "user_data": {"em": [HASH], "client_user_agent": "UA", "client_ip_address": "2001:db8::5"},
        "custom_data": {"value": 3, "currency": "USD"},
    });
    let path = format!("/capi/{GW_PIXEL}/events");
    let body = |key: Option<&str>| {
        let mut b = serde_json::json!({"data": [event]});
        if let Some(k) = key {
            b["accessKey"] = k.into();
        }
        b.to_string().into_bytes()
    };
    let json = [("Content-Type", "application/json")];
    let (status, _, text) = http(gw.http, "POST", &path, &json, &body(Some(GW_KEY)));
    assert_eq!(status, 202, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["events_received"], 1);
    let (status, _, text) = http(gw.http, "POST", &path, &json, &body(None));
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("accessKey"), "{text}");
    let (status, _, text) = http(gw.http, "POST", &path, &json, &body(Some("wrong")));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not valid for this pixel") && !text.contains("wrong"), "{text}");
    let (status, _, _) = http(gw.http, "POST", "/capi/123/events", &json, &body(Some(GW_KEY)));
    assert_eq!(status, 403);
    wait_for(Duration::from_secs(10), "the server event", || sim_events(&sim).len() == 1);
    assert_eq!(sim_events(&sim)[0]["user_data"]["client_ip_address"], "2001:db8::5");
    assert!(gw.stop().success());
}

#[test]
fn websocket_messages_are_acknowledged_once_durable_and_reach_meta() {
    let dir = TempDir::new("serve-ws");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, ""), &[]);
    let url = format!("ws://{}/capig/ws", gw.http);
    let mut req = ws_request(&url, "Mozilla/5.0 (ws test)");
    req.headers_mut().insert("Host", GW_HOST.parse().unwrap());
    let stream = TcpStream::connect(gw.http).unwrap();
    let (mut ws, response) = tungstenite::client(req, stream).unwrap();
    let cookie = response.headers().get("set-cookie").expect("the upgrade sets _fbp").to_str().unwrap().to_owned();
    let fbp = cookie.split(';').next().unwrap().strip_prefix("_fbp=").unwrap().to_owned();

    let mut sent = Vec::new();
    for i in 0..20 {
        let batch: Vec<String> = (0..10).map(|j| browser_event(&format!("w{i}-{j}"))).collect();
        sent.extend((0..10).map(|j| format!("w{i}-{j}")));
        ws.send(tungstenite::Message::text(format!("[{}]", batch.join(",")))).unwrap();
    }
    ws.send(tungstenite::Message::text("{\"event_name\":\"Purchase\"}")).unwrap();
    let mut acked = Vec::new();
    let mut answers = 0;
    while answers < 21 {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                acked.extend(v["stored"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()));
                if answers == 20 {
                    assert!(v["rejected"][0]["reason"].as_str().is_some(), "{t}");
                }
                answers += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acked, sent, "every event acknowledged, in order");
    ws.close(None).unwrap();
    wait_for(Duration::from_secs(10), "200 events at the simulator", || sim_events(&sim).len() == 200);
    assert!(sim_events(&sim).iter().all(|e| e["user_data"]["fbp"] == fbp.as_str() && e["user_data"]["client_user_agent"] == "Mozilla/5.0 (ws test)"));

    // A WebSocket from an origin that is not the shop's is refused.
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().insert("Origin", "https://evil.example".parse().unwrap());
    let err = tungstenite::client(req, TcpStream::connect(gw.http).unwrap()).unwrap_err();
    assert!(matches!(err, tungstenite::HandshakeError::Failure(tungstenite::Error::Http(ref r)) if r.status() == 403), "{err:?}");
    assert!(gw.stop().success());
}

/// Installs a seccomp filter that fails `io_uring_setup` with EPERM (as Docker's
/// default profile does), in the child between fork and exec.
fn deny_io_uring(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    const IO_URING_SETUP: u32 = 425; // the same number on x86_64 and aarch64
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe; the filter program outlives the call (it is copied
    // into the kernel by PR_SET_SECCOMP).
    unsafe {
        cmd.pre_exec(|| {
            let filter = [
                libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
                libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt: 0, jf: 1, k: IO_URING_SETUP },
                libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32 },
                libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
            ];
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _ as libc::c_ulong, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn without_io_uring_the_server_runs_on_epoll() {
    let dir = TempDir::new("serve-epoll");
    let sim = sim();
    let gw = Gateway::start_with(&gateway_config(&dir, &sim.url(), false, ""), &[], deny_io_uring);
    wait_for(Duration::from_secs(5), "the cores' driver lines", || gw.log().matches(" driver").count() >= 2);
    let log = gw.log();
    assert!(log.contains("epoll driver") && !log.contains("io_uring (") && !log.contains("io_uring driver"), "{log}");
    let (status, _, body) = post_browser(&gw, &browser_event("e1"), &[]);
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(10), "the event", || sim_events(&sim).len() == 1);
    assert!(gw.stop().success());
}

/// Sends raw bytes on a new connection and returns everything the server answered
/// before it closed (or `wait` passed).
fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    let start = Instant::now();
    while start.elapsed() < wait {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    out
}

fn status_of(answer: &[u8]) -> u16 {
    parse_response(answer).0
}

/// A masked client frame.
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Opens a WebSocket by hand and returns the stream after the 101.
fn ws_raw(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /capig/ws HTTP/1.1\r\nHost: {GW_HOST}\r\nOrigin: {GW_ORIGIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    read_101(&mut s);
    s
}

/// Reads the answer to a WebSocket upgrade, which must be a 101.
fn read_101(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
}

/// The close code of the first close frame the server sends.
fn close_code_after(addr: std::net::SocketAddr, frames: &[u8]) -> Option<u16> {
    let mut s = ws_raw(addr);
    let _ = s.write_all(frames);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        // Walk the server's (unmasked) frames for a close.
        let mut i = 0;
        while i + 2 <= buf.len() {
            let op = buf[i] & 0x0f;
            let (len, hl) = match buf[i + 1] & 0x7f {
                126 if i + 4 <= buf.len() => (u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize, 4),
                127 => break,
                126 => break,
                n => (n as usize, 2),
            };
            if i + hl + len > buf.len() {
                break;
            }
            if op == 8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[i + hl], buf[i + hl + 1]]));
            }
            i += hl + len;
        }
    }
    None
}

/// How a client leaves right after writing a WebSocket message, without waiting for the
/// answer.
#[derive(Clone, Copy, Debug)]
enum Leave {
    /// The message and a close frame in one write, then the socket closed.
    CloseFrame,
    /// The socket closed (FIN) right after the message.
    Fin,
    /// A reset (SO_LINGER 0) right after the message.
    Reset,
    /// The upgrade request and the message in one write, then the socket closed: the
    /// message arrives in the same read as the upgrade.
    WithUpgrade,
}

fn leave_after_message(addr: std::net::SocketAddr, how: Leave, id: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let upgrade = format!(
        "GET /capig/ws HTTP/1.1\r\nHost: {GW_HOST}\r\nOrigin: {GW_ORIGIN}\r\nUser-Agent: Mozilla/5.0 (leaving)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut bytes = upgrade.into_bytes();
    if !matches!(how, Leave::WithUpgrade) {
        s.write_all(&bytes).unwrap();
        bytes.clear();
        read_101(&mut s);
    }
    bytes.extend_from_slice(&frame(1, true, format!("[{}]", browser_event(id)).as_bytes()));
    if let Leave::CloseFrame = how {
        bytes.extend_from_slice(&frame(8, true, &1001u16.to_be_bytes()));
    }
    s.write_all(&bytes).unwrap();
    if let Leave::Reset = how {
        use std::os::fd::AsRawFd;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket and a correctly sized option value.
        let r = unsafe {
            libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&linger as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as libc::socklen_t)
        };
        assert_eq!(r, 0);
    }
    let _ = s.flush();
    drop(s);
}

/// A browser that navigates away right after writing a message never reads the answer:
/// a message the gateway read whole is stored all the same, whether a close frame, EOF
/// or a reset follows it at once, or it came with the upgrade request; each exactly once.
#[test]
fn a_websocket_message_is_stored_though_the_client_left_before_the_answer() {
    let dir = TempDir::new("serve-ws-leave");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, ""), &[]);
    let mut sent = Vec::new();
    for i in 0..25 {
        for how in [Leave::CloseFrame, Leave::Fin, Leave::Reset, Leave::WithUpgrade] {
            let id = format!("leave-{how:?}-{i}");
            leave_after_message(gw.http, how, &id);
            sent.push(id);
        }
    }
    sent.sort();
    let ids = || {
        let mut ids: Vec<String> = sim_events(&sim).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    let within = Instant::now() + Duration::from_secs(10);
    while ids().len() < sent.len() && Instant::now() < within {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let got = ids();
    let missing: Vec<&String> = sent.iter().filter(|id| !got.contains(id)).collect();
    assert!(missing.is_empty(), "not stored: {missing:?}");
    assert_eq!(got, sent, "each event exactly once");
    assert!(gw.stop().success());
}

#[test]
fn hostile_input_gets_the_right_answer_and_a_well_behaved_client_is_unaffected() {
    let dir = TempDir::new("serve-hostile");
    let sim = sim();
    // Rate limits off here: 10,000 pipelined requests are about framing (the limits
    // have a test of their own).
    let extra = "[limits]\nheader_timeout_ms = 400\nbody_bytes = \"64 KiB\"\nws_frame_bytes = \"64 KiB\"\nws_message_bytes = \"64 KiB\"\nrequests_per_second_per_ip = 0\nrequests_per_second_per_connection = 0\n";
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, extra), &[]);
    let addr = gw.http;

    // A well-behaved client keeps posting while the table runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, a2) = (stop.clone(), addr);
    let good = std::thread::spawn(move || {
        let mut n = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let body = browser_event(&format!("good{n}"));
            let headers = [("Origin", GW_ORIGIN), ("User-Agent", "UA good"), ("Content-Type", "application/json")];
            let (status, _, text) = http(a2, "POST", "/capig/events", &headers, body.as_bytes());
            assert_eq!(status, 200, "the well-behaved client got {status}: {text}");
            n += 1;
        }
        n
    });

    let big_header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(status_of(&raw(addr, big_header.as_bytes(), Duration::from_secs(5))), 431);
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-A: b\r\n".repeat(100));
    assert_eq!(status_of(&raw(addr, many.as_bytes(), Duration::from_secs(5))), 431);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_eq!(status_of(&raw(addr, long_uri.as_bytes(), Duration::from_secs(5))), 414);
    let huge_body = "POST /capig/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n";
    let answer = raw(addr, huge_body.as_bytes(), Duration::from_secs(5));
    assert_eq!(status_of(&answer), 413);
    assert!(String::from_utf8_lossy(&answer).contains("65536"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(status_of(&raw(addr, b"POST /capig/events HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5))), 411);
    assert_eq!(status_of(&raw(addr, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(5))), 404);
    assert_eq!(status_of(&raw(addr, b"DELETE /capig/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(5))), 405);
    assert_eq!(status_of(&raw(addr, b"POST /capig/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Duration::from_secs(5))), 400);
    // Slowloris: half a head, then nothing. The header timeout (400 ms) answers 408.
    let t = Instant::now();
    let answer = raw(addr, b"POST /capig/events HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(5));
    assert_eq!(status_of(&answer), 408);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Invalid JSON, deep nesting, 5,000 events in one body.
    let post = |body: &str| {
        let h = [("Origin", GW_ORIGIN), ("Content-Type", "application/json")];
        http(addr, "POST", "/capig/events", &h, body.as_bytes())
    };
    let (s, _, t) = post("{\"event_name\":");
    assert!(s == 400 && t.contains("not valid JSON"), "{s} {t}");
    let (s, _, t) = post(&format!("{}1{}", "[".repeat(40), "]".repeat(40)));
    assert_eq!(s, 400, "{t}");
    let many_events = format!("[{}]", vec!["{}"; 5000].join(","));
    let (s, _, t) = post(&many_events);
    assert!(s == 413 && t.contains("at most 1000"), "{s} {t}");
    // 10,000 pipelined requests on one connection: 10,000 answers, in order.
    let pipelined = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(10_000);
    let answer = raw(addr, pipelined.as_bytes(), Duration::from_secs(20));
    let n = String::from_utf8_lossy(&answer).matches("HTTP/1.1 200 OK").count();
    assert_eq!(n, 10_000);

    // WebSocket: bad UTF-8 → 1007, an unmasked frame → 1002, a 64-bit length with the
    // top bit set → 1002, a frame over the cap → 1009, binary → 1003.
    assert_eq!(close_code_after(addr, &frame(1, true, b"\xff\xfe")), Some(1007));
    assert_eq!(close_code_after(addr, &[0x81, 0x02, b'h', b'i']), Some(1002));
    let mut top_bit = vec![0x81, 0x80 | 127];
    top_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
    top_bit.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(close_code_after(addr, &top_bit), Some(1002));
    assert_eq!(close_code_after(addr, &frame(1, true, &vec![b' '; 70_000])), Some(1009));
    assert_eq!(close_code_after(addr, &frame(2, true, b"{}")), Some(1003));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let good_requests = good.join().expect("the well-behaved client never failed");
    assert!(good_requests > 0);
    wait_for(Duration::from_secs(10), "the good client's events", || sim_events(&sim).len() >= good_requests);
    assert!(gw.stop().success());
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event() {
    let dir = TempDir::new("serve-kill");
    let sim = sim_with(capig::sim::SimArgs {
        latency_ms: Some(capig::sim::LatencyMs { min: 0, max: 20 }),
        ..capig::sim::SimArgs::default()
    });
    let config = gateway_config(&dir, &sim.url(), false, "");
    let gw = Gateway::start(&config, &[]);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let addr = gw.http;

    // Backend: server API batches of 10, on fresh connections.
    let (a1, path) = (acked.clone(), format!("/capi/{GW_PIXEL}/events"));
    let backend = std::thread::spawn(move || {
        for i in 0.. {
            let data: Vec<Value> = (0..10)
                .map(|j| {
                    serde_json::json!({
                        "event_name": "Lead", "event_id": format!("b{i}-{j}"), "event_time": unix_now(),
                        "action_source": "website", "event_source_url": "https://www.shop.example/",
                        "user_data": {"em": [HASH], "client_user_agent": "UA", "client_ip_address": "2001:db8::5"},
                    })
                })
                .collect();
            let body = serde_json::json!({"data": data, "accessKey": GW_KEY}).to_string();
            let Ok(mut s) = TcpStream::connect(addr) else { return };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let req = format!("POST {path} HTTP/1.1\r\nHost: {GW_HOST}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            if s.write_all(req.as_bytes()).is_err() {
                return;
            }
            let mut raw = Vec::new();
            let _ = s.read_to_end(&mut raw);
            match parse_response(&raw).0 {
                202 => a1.lock().unwrap().extend((0..10).map(|j| format!("b{i}-{j}"))),
                0 => return,
                other => panic!("the server API answered {other}"),
            }
        }
    });
    // Browser: one WebSocket, messages of 5 events; acks name the stored ids.
    let a2 = acked.clone();
    let browser = std::thread::spawn(move || {
        let req = ws_request(&format!("ws://{addr}/capig/ws"), "Mozilla/5.0 (kill test)");
        let (mut ws, _) = tungstenite::client(req, TcpStream::connect(addr).unwrap()).unwrap();
        for i in 0.. {
            let msg: Vec<String> = (0..5).map(|j| browser_event(&format!("w{i}-{j}"))).collect();
            if ws.send(tungstenite::Message::text(format!("[{}]", msg.join(",")))).is_err() {
                return;
            }
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    a2.lock().unwrap().extend(v["stored"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()));
                }
                _ => return,
            }
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    gw.kill();
    backend.join().unwrap();
    browser.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 200, "only {} events acknowledged before the kill", acked.len());

    // The restarted gateway delivers what the killed one had stored.
    let gw = Gateway::start(&config, &[]);
    let want: std::collections::HashSet<&str> = acked.iter().map(String::as_str).collect();
    wait_for(Duration::from_secs(30), "every acknowledged event at the simulator", || {
        let got: std::collections::HashSet<String> = sim_events(&sim).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
        want.iter().all(|id| got.contains(*id))
    });
    let delivered = sim_events(&sim).len();
    let unique: std::collections::HashSet<String> = sim_events(&sim).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    eprintln!("{} acknowledged, {delivered} delivered, {} unique", acked.len(), unique.len());
    assert!(gw.stop().success());
}

#[test]
fn https_picks_the_certificate_by_sni_and_takes_events() {
    let dir = TempDir::new("serve-tls");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), true, ""), &[]);
    let https = gw.https.expect("an https listener");
    // Each domain gets its own certificate: the client trusts only that one.
    for (cert, sni) in [("main.crt", GW_HOST), ("other.crt", GW_OTHER_HOST)] {
        let mut tls = tls_client(https, &dir.0.join(cert), sni);
        write!(tls, "GET /healthz HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        assert_eq!(parse_response(&raw).0, 200, "{sni}: {}", String::from_utf8_lossy(&raw));
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    // The wrong certificate for a name is refused by the client.
    let mut tls = tls_client(https, &dir.0.join("other.crt"), GW_HOST);
    assert!(write!(tls, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").and_then(|_| tls.flush()).is_err() || tls.read(&mut [0u8; 16]).is_err());

    // A browser event over HTTPS, keep-alive: two requests on one connection.
    let mut tls = tls_client(https, &dir.0.join("main.crt"), GW_HOST);
    for id in ["t1", "t2"] {
        let body = browser_event(id);
        write!(
            tls,
            "POST /capig/events HTTP/1.1\r\nHost: {GW_HOST}\r\nOrigin: {GW_ORIGIN}\r\nUser-Agent: UA tls\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&raw).contains("\"rejected\":[") {
            let n = tls.read(&mut chunk).unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(parse_response(&raw).0, 200, "{}", String::from_utf8_lossy(&raw));
    }
    wait_for(Duration::from_secs(10), "the HTTPS events", || sim_events(&sim).len() == 2);
    assert!(gw.stop().success());
}

#[test]
fn rate_limits_answer_429_per_connection_and_per_address() {
    let dir = TempDir::new("serve-rate");
    let sim = sim();
    let extra = "[limits]\nrequests_per_second_per_connection = 5\nrequests_per_second_per_ip = 8\n";
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, extra), &["--set", "runtime.cores=1"]);
    // n pipelined requests, the last one closing, so the answer comes at once.
    let requests = |n: usize| "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(n - 1) + "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let statuses = |n: usize| -> Vec<u16> {
        let answer = raw(gw.http, requests(n).as_bytes(), Duration::from_secs(5));
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.match_indices("HTTP/1.1 ").map(|(i, _)| text[i + 9..i + 12].parse().unwrap()).collect()
    };
    // One connection: its 5 per second, then 429 with Retry-After.
    assert_eq!(statuses(7), [200, 200, 200, 200, 200, 429, 429]);
    // A second connection from the same address: the address has 3 of its 8 left.
    assert_eq!(statuses(5), [200, 200, 200, 429, 429]);
    // A second later the buckets have refilled.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(statuses(2), [200, 200]);
    let answer = String::from_utf8_lossy(&raw(gw.http, requests(12).as_bytes(), Duration::from_secs(5))).into_owned();
    assert!(answer.contains("Retry-After: 1") && answer.contains("retry in a second"), "{answer}");
    assert!(gw.stop().success());
}

/// One request on a kept-alive TLS connection; the status.
fn tls_get(tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> u16 {
    if write!(tls, "GET /healthz HTTP/1.1\r\nHost: {GW_HOST}\r\n\r\n").and_then(|_| tls.flush()).is_err() {
        return 0;
    }
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&raw).ends_with("ok\n") {
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    parse_response(&raw).0
}

#[test]
fn sighup_reloads_certificates_and_origins_without_dropping_connections() {
    let dir = TempDir::new("serve-reload");
    let sim = sim();
    let config = gateway_config(&dir, &sim.url(), true, "");
    let gw = Gateway::start(&config, &[]);
    let https = gw.https.unwrap();
    std::fs::copy(dir.0.join("main.crt"), dir.0.join("old.crt")).unwrap();
    let mut kept = tls_client(https, &dir.0.join("old.crt"), GW_HOST);
    assert_eq!(tls_get(&mut kept), 200);
    let new_origin = [("Origin", "https://new.shop.example"), ("Content-Type", "application/json"), ("User-Agent", "UA")];
    let (status, _, _) = http(gw.http, "POST", "/capig/events", &new_origin, browser_event("r1").as_bytes());
    assert_eq!(status, 403, "not an origin yet");

    // A new certificate and a new origin, then SIGHUP.
    let c = rcgen::generate_simple_self_signed(vec![GW_HOST.to_owned()]).unwrap();
    std::fs::write(dir.0.join("main.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.0.join("main.key"), c.signing_key.serialize_pem()).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("origins = [\"{GW_ORIGIN}\"]"),
        &format!("origins = [\"{GW_ORIGIN}\", \"https://new.shop.example\"]"),
    );
    std::fs::write(&config, text).unwrap();
    std::process::Command::new("kill").args(["-HUP", &gw.child.id().to_string()]).status().unwrap();
    wait_for(Duration::from_secs(5), "both cores on the new configuration", || gw.log().matches("new configuration in force").count() == 2);

    assert_eq!(tls_get(&mut kept), 200, "the open TLS connection carries on");
    let mut fresh = tls_client(https, &dir.0.join("main.crt"), GW_HOST);
    assert_eq!(tls_get(&mut fresh), 200, "a new session gets the new certificate");
    let mut stale = tls_client(https, &dir.0.join("old.crt"), GW_HOST);
    assert_eq!(tls_get(&mut stale), 0, "the old certificate is no longer served");
    let (status, _, body) = http(gw.http, "POST", "/capig/events", &new_origin, browser_event("r2").as_bytes());
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(10), "the event from the new origin", || sim_events(&sim).len() == 1);

    // A broken configuration is refused and the running one kept.
    std::fs::write(&config, "this is not toml").unwrap();
    std::process::Command::new("kill").args(["-HUP", &gw.child.id().to_string()]).status().unwrap();
    wait_for(Duration::from_secs(5), "the refusal", || gw.log().contains("reload failed"));
    assert_eq!(tls_get(&mut kept), 200);
    assert!(gw.stop().success());
}

#[test]
fn the_web_client_is_served_precompressed_with_an_etag() {
    let dir = TempDir::new("serve-js");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, ""), &[]);
    let get = |headers: &[(&str, &str)]| {
        let mut s = TcpStream::connect(gw.http).unwrap();
        let mut req = format!("GET /capig/client.js HTTP/1.1\r\nHost: {GW_HOST}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let (_, headers, _) = parse_response(&raw[..split + 4]);
        (parse_response(&raw).0, headers, raw[split + 4..].to_vec())
    };
    let (status, headers, plain) = get(&[]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/javascript; charset=utf-8"));
    assert!(header(&headers, "cache-control").unwrap().contains("max-age"));
    assert_eq!(header(&headers, "content-encoding"), None);
    let etag = header(&headers, "etag").unwrap().to_owned();
    let text = String::from_utf8(plain.clone()).unwrap();
    assert!(text.contains("fbq") && text.contains("/capig/ws"), "the client itself");

    let (_, headers, gz) = get(&[("Accept-Encoding", "gzip, deflate")]);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut unzipped).unwrap();
    assert_eq!(unzipped, plain);
    let (_, headers, br) = get(&[("Accept-Encoding", "gzip, br")]);
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    let mut unbr = Vec::new();
    brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut unbr).unwrap();
    assert_eq!(unbr, plain);
    assert!(br.len() < 4096 && gz.len() < 4096, "br {} B, gzip {} B", br.len(), gz.len());
    let (_, headers, _) = get(&[("Accept-Encoding", "br;q=0, gzip")]);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    let (status, _, body) = get(&[("If-None-Match", &etag)]);
    assert!(status == 304 && body.is_empty());

    // What is served is valid JavaScript (the build strips comments and indentation).
    let path = dir.0.join("served.js");
    std::fs::write(&path, &plain).unwrap();
    let check = std::process::Command::new("node").arg("--check").arg(&path).status();
    match check {
        Ok(s) => assert!(s.success(), "node --check refused the served client"),
        Err(e) => panic!("node is needed for this test (scripts/test.sh installs it): {e}"),
    }
    assert!(gw.stop().success());
}

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    let dir = TempDir::new("serve-notify");
    let sim = sim();
    let sock_path = dir.0.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let config = gateway_config(&dir, &sim.url(), false, "");
    let p = sock_path.clone();
    let gw = Gateway::start_with(&config, &[], move |cmd| {
        cmd.env("NOTIFY_SOCKET", &p).env("WATCHDOG_USEC", "400000");
    });
    let mut seen = Vec::new();
    let next = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    // Watchdog pings every half WATCHDOG_USEC.
    assert_eq!(next(), "WATCHDOG=1");
    std::process::Command::new("kill").args(["-HUP", &gw.child.id().to_string()]).status().unwrap();
    while seen.len() < 2 {
        let m = next();
        if m != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert_eq!(seen, ["RELOADING=1", "READY=1"]);
    let pid = gw.child.id();
    let stopping = std::thread::spawn(move || {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    });
    loop {
        let m = next();
        if m == "STOPPING=1" {
            break;
        }
        assert!(m == "WATCHDOG=1", "unexpected {m}");
    }
    stopping.join().unwrap();
    assert!(gw.stop().success());
}

#[test]
fn expect_100_continue_and_the_redirect_listener() {
    let dir = TempDir::new("serve-misc");
    let sim = sim();
    let extra = "[[listeners]]\naddr = \"127.0.0.1:0\"\nkind = \"redirect\"\n";
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, extra), &[]);
    // The client waits for 100 Continue before it sends the body.
    let body = browser_event("x100");
    let mut s = TcpStream::connect(gw.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /capig/events HTTP/1.1\r\nHost: {GW_HOST}\r\nOrigin: {GW_ORIGIN}\r\nUser-Agent: UA\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(parse_response(&answer).0, 200, "{}", String::from_utf8_lossy(&answer));

    // The redirect listener sends browsers to https, same host and path.
    let answer = raw(gw.redirect.unwrap(), b"GET /capig/client.js?v=2 HTTP/1.1\r\nHost: capig.shop.example\r\n\r\n", Duration::from_secs(5));
    let (status, headers, _) = parse_response(&answer);
    assert_eq!(status, 308);
    assert_eq!(header(&headers, "location"), Some("https://capig.shop.example/capig/client.js?v=2"));
    assert!(gw.stop().success());
}

/// Posts `n` server API events with ids `{prefix}-{i}-{j}`; the status.
fn post_capi_batch(gw: &Gateway, prefix: &str, i: usize, n: usize) -> (u16, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|j| format!("{prefix}-{i}-{j}")).collect();
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "event_name": "Purchase", "event_id": id, "event_time": unix_now(), "action_source": "website",
                "event_source_url": "https://www.shop.example/checkout/with/a/longer/path",
                "user_data": {"em": [HASH], "client_user_agent": "Mozilla/5.0 (full disk test)", "client_ip_address": "2001:db8::7"},
                "custom_data": {"value": 12.5, "currency": "EUR", "order_id": id},
            })
        })
        .collect();
    let body = serde_json::json!({"data": data, "accessKey": GW_KEY}).to_string();
    let (status, _, _) = http(gw.http, "POST", &format!("/capi/{GW_PIXEL}/events"), &[("Content-Type", "application/json")], body.as_bytes());
    (status, ids)
}

fn readyz(gw: &Gateway) -> u16 {
    http(gw.http, "GET", "/readyz", &[], b"").0
}

/// How many times each event id reached the simulator.
fn sim_counts(sim: &capig::sim::SimHandle) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for e in sim_events(sim) {
        *counts.entry(e["event_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Waits for `/readyz` to answer 200 without any other request; the seconds it took.
fn seconds_until_ready(gw: &Gateway, timeout: Duration) -> f64 {
    let start = Instant::now();
    while readyz(gw) != 200 {
        assert!(start.elapsed() < timeout, "not ready {timeout:?} after space came back; log:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed().as_secs_f64()
}

#[test]
fn a_full_disk_heals_by_itself_once_meta_takes_the_events_and_a_restart_resends_nothing() {
    let dir = TempDir::new("serve-fulldisk");
    let Some(disk) = Tmpfs::mount(&dir, 4 << 20) else {
        return;
    };
    let sim = sim();
    // Meta is down (a transient error on every request): everything stays in the spool.
    sim.set_faults(faults(&["2=1"])).unwrap();
    let config = gateway_config(&dir, &sim.url(), false, "");
    let spool = format!("spool.dir={}", disk.mnt.join("spool").display());
    // The default spool cap (10 GiB) and segment size (64 MiB): only the disk is small.
    let gw = Gateway::start(&config, &["--set", &spool]);
    assert_eq!(readyz(&gw), 200);

    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..2000 {
        match post_capi_batch(&gw, "full", i, 50) {
            (202, ids) => acked.extend(ids),
            (503, _) => {
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            (other, _) => panic!("answered {other}; log:\n{}", gw.log()),
        }
    }
    assert_eq!(refused, 5, "the disk never filled");
    assert!(acked.len() > 2000, "only {} events stored before the disk filled", acked.len());
    assert_eq!(readyz(&gw), 503, "not ready while the disk is full");
    assert!(sim_events(&sim).is_empty());

    // Meta is back: every acknowledged event is delivered, the spool frees its disk,
    // and readiness comes back by itself (only /readyz is asked).
    sim.set_faults(capig::sim::FaultConfig::default()).unwrap();
    let back = Instant::now();
    let ready = seconds_until_ready(&gw, Duration::from_secs(10));
    eprintln!("ready again {ready:.2} s after Meta came back ({:.2} s in all)", back.elapsed().as_secs_f64());
    let (status, fresh) = post_capi_batch(&gw, "after", 0, 50);
    assert_eq!(status, 202, "new events are taken again; log:\n{}", gw.log());
    acked.extend(fresh);
    wait_for(Duration::from_secs(20), "every acknowledged event at the simulator", || {
        let got = sim_counts(&sim);
        acked.iter().all(|id| got.contains_key(id))
    });
    std::thread::sleep(Duration::from_millis(500));
    let counts = sim_counts(&sim);
    let twice: Vec<&String> = acked.iter().filter(|id| counts[*id] != 1).collect();
    assert!(twice.is_empty(), "{} acknowledged events delivered more than once, e.g. {:?}", twice.len(), twice.first());
    let delivered = sim_events(&sim).len();

    // One line when the disk filled, one when it had room again: no flapping.
    let log = gw.log();
    assert_eq!(log.matches("is full (").count(), 1, "{log}");
    assert_eq!(log.matches("room again").count(), 1, "{log}");
    assert!(!log.contains("final sync failed"), "{log}");
    assert!(gw.stop().success());

    // A restart on the same spool sends Meta nothing more.
    let gw = Gateway::start(&config, &["--set", &spool]);
    assert_eq!(readyz(&gw), 200);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sim_events(&sim).len(), delivered, "the restart re-sent events Meta had");
    assert!(!gw.log().contains("from before the restart"), "{}", gw.log());
    assert!(gw.stop().success());
}

#[test]
fn a_full_disk_heals_by_itself_once_an_operator_frees_space() {
    let dir = TempDir::new("serve-fulldisk-op");
    let Some(disk) = Tmpfs::mount(&dir, 4 << 20) else {
        return;
    };
    // Something else fills the disk: a ballast file leaves 256 KiB.
    let ballast = disk.mnt.join("ballast");
    std::fs::write(&ballast, vec![1u8; (4 << 20) - (256 << 10)]).unwrap();
    let sim = sim();
    // Meta is down while the disk fills (up, it would take each batch at once and the
    // spool would free its segment on every ENOSPC).
    sim.set_faults(faults(&["2=1"])).unwrap();
    let config = gateway_config(&dir, &sim.url(), false, "");
    let spool = format!("spool.dir={}", disk.mnt.join("spool").display());
    let gw = Gateway::start(&config, &["--set", &spool]);
    let mut acked = Vec::new();
    let mut refused = false;
    for i in 0..500 {
        match post_capi_batch(&gw, "op", i, 50) {
            (202, ids) => acked.extend(ids),
            (503, _) => {
                refused = true;
                break;
            }
            (other, _) => panic!("answered {other}; log:\n{}", gw.log()),
        }
    }
    assert!(refused, "the disk never filled");
    // Meta takes everything, but the ballast keeps the disk short of room: still
    // refusing.
    sim.set_faults(capig::sim::FaultConfig::default()).unwrap();
    wait_for(Duration::from_secs(20), "the stored events at the simulator", || sim_counts(&sim).len() >= acked.len());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(readyz(&gw), 503, "the disk is still full");

    std::fs::remove_file(&ballast).unwrap();
    let ready = seconds_until_ready(&gw, Duration::from_secs(5));
    eprintln!("ready again {ready:.2} s after the operator freed space");
    assert_eq!(post_capi_batch(&gw, "op-after", 0, 50).0, 202);
    let log = gw.log();
    assert_eq!(log.matches("room again").count(), 1, "{log}");
    assert!(gw.stop().success());
}

/// Feeds `per_second` server API events (one per request) over 4 keep-alive
/// connections for `duration`; the ids the gateway acknowledged (202).
fn feed_keep_alive(gw: &Gateway, prefix: &str, per_second: u32, duration: Duration) -> Vec<String> {
    let addr = gw.http;
    let interval = Duration::from_secs(4) / per_second;
    let threads: Vec<_> = (0..4)
        .map(|c| {
            let prefix = format!("{prefix}{c}");
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let (start, mut acked) = (Instant::now(), Vec::new());
                for i in 0u32.. {
                    let due = start + interval * i;
                    if due.duration_since(start) >= duration {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let id = format!("{prefix}-{i}");
                    let event = serde_json::json!({
                        "event_name": "Purchase", "event_id": id, "event_time": unix_now(), "action_source": "website",
                        "event_source_url": "https://www.shop.example/checkout",
                        "user_data": {"em": [HASH], "client_user_agent": "Mozilla/5.0 (linger test)", "client_ip_address": "2001:db8::9"},
                        "custom_data": {"value": 12.5, "currency": "EUR"},
                    });
                    let body = serde_json::json!({"data": [event], "accessKey": GW_KEY}).to_string();
                    let req = format!(
                        "POST /capi/{GW_PIXEL}/events HTTP/1.1\r\nHost: {GW_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(req.as_bytes()).unwrap();
                    let (status, _, answer) = read_response(&mut s).expect("an answer on the kept-alive connection");
                    assert_eq!(status, 202, "{answer}");
                    acked.push(id);
                }
                acked
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

/// Issue 12 §1: what reaches the Graph API is batched per pixel across cores and
/// generations, closed at `linger_ms` after its first event; each answer still waits
/// only for the group commit of its own events.
#[test]
fn upstream_requests_are_batched_by_linger_across_cores_and_generations() {
    let pixel: u64 = GW_PIXEL.parse().unwrap();
    for (linger_ms, seconds) in [(1000u64, 3u64), (0, 2)] {
        let dir = TempDir::new("serve-linger");
        let sim = sim();
        let gw = Gateway::start(
            &gateway_config(&dir, &sim.url(), false, ""),
            &["--set", &format!("upstream.linger_ms={linger_ms}")],
        );
        let started = Instant::now();
        let acked = feed_keep_alive(&gw, &format!("l{linger_ms}-"), 200, Duration::from_secs(seconds));
        let fed_in = started.elapsed();
        assert!(acked.len() >= 150 * seconds as usize, "only {} events acknowledged", acked.len());
        assert_each_once(&sim, pixel, acked.clone(), Duration::from_secs(5));
        let stats = sim.stats();
        let per_request = stats.events_received as f64 / stats.requests as f64;
        eprintln!(
            "linger_ms = {linger_ms}: {} events acknowledged in {fed_in:?}, {} Graph requests, {per_request:.1} events per request",
            acked.len(),
            stats.requests
        );
        assert_eq!(stats.requests_rejected, 0, "{stats:?}");
        if linger_ms > 0 {
            assert!(per_request >= 100.0, "{per_request:.1} events per request: {stats:?}");
        } else {
            // Each record (a core's generation of this pixel) goes at once: about one
            // event per request at this rate; the bound leaves room for a slow machine.
            assert!(per_request <= 25.0, "{per_request:.1} events per request: {stats:?}");
        }
        assert!(gw.stop().success());
    }
}
