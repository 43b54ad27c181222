//! `capig-idle`'s connections against a real gateway (in process): all of them open from
//! several source addresses, stay served while idle (a ping on each gets its pong), and
//! an idle connection still takes events afterwards.

use std::io::{Read, Write};
use std::time::Duration;

use capig_bench::idle::{Idle, IdleConfig};
use capig_bench::load::{ws_frame, ws_handshake};

mod support;
use support::{Gateway, PIXEL};

#[test]
fn idle_websockets_stay_served() {
    let gw = Gateway::start("idle-test", "http://127.0.0.1:9");
    let target = gw.addr;

    // 300 connections, 100 per source address: three addresses of 127.0.0.0/8.
    let cfg = IdleConfig { target, connections: 300, per_source: 100, round: 50, ..IdleConfig::default() };
    let mut idle = Idle::open(&cfg).unwrap();
    assert_eq!(idle.len(), 300);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(idle.check(50), 300, "every idle connection answers a ping");

    // A connection that sat idle takes an event and acknowledges it.
    let mut t = std::net::TcpStream::connect(target).unwrap();
    t.write_all(ws_handshake("capig.shop.example", "https://www.shop.example").as_bytes()).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let n = t.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf[..n]));
    std::thread::sleep(Duration::from_millis(300));
    let event = format!(r#"[{{"pixel_id":"{PIXEL}","event_name":"Lead","event_id":"idle-1","event_source_url":"https://www.shop.example/"}}]"#);
    let mut frame = Vec::new();
    ws_frame(&mut frame, event.as_bytes(), 7);
    t.write_all(&frame).unwrap();
    let n = t.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.contains(r#""stored":["idle-1"]"#), "{answer}");

    drop(idle);
    gw.stop();
}
