//! What capig's transform emits is what Meta accepts: the bundled sample events go
//! through the real transform, the accepted ones are batched as a CAPI request, and the
//! simulator (Meta's validation rules, over a real socket on 127.0.0.1) must take every
//! one of them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capig::event::policy::{DedupConfig, Policies};
use capig::event::{Context, Parser, Transformer};
use capig::sim::{SimArgs, Simulator};
use serde_json::Value;

fn post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: graph.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let status = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    // The simulator may answer chunked; the JSON is the part between the braces.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    (status, serde_json::from_str(json).unwrap())
}

#[test]
fn the_simulator_accepts_every_event_capig_forwards() {
    let sim = Simulator::start(SimArgs { listen: "127.0.0.1:0".into(), ..SimArgs::default() }).unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let ctx = Context {
        now_ms,
        client_ip: Some("2001:db8::7"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) capig-test"),
        ..Context::default()
    };
    let mut transformer = Transformer::new(Policies::allow_all(DedupConfig::default()));
    let mut parser = Parser::default();
    let sample = include_str!("../examples/browser-events.jsonl");

    let mut batch = b"{\"access_token\":\"any\",\"data\":[".to_vec();
    let mut accepted = 0;
    for line in sample.lines() {
        let mut buf = line.as_bytes().to_vec();
        let _ = parser.parse(&mut buf, |root| {
            let mut one = |v| {
                let mark = batch.len();
                if accepted > 0 {
                    batch.push(b',');
                }
                match transformer.transform(v, &ctx, &mut batch) {
                    Ok(_) => accepted += 1,
                    Err(_) => batch.truncate(mark),
                }
            };
            match root.elements() {
                Some(events) => events.for_each(&mut one),
                None => one(root),
            }
        });
    }
    batch.extend_from_slice(b"]}");
    assert_eq!(accepted, 7, "the sample has 7 good events");

    let (status, answer) = post(sim.addr(), "/v26.0/1234567890123456/events", &batch);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events_received"], 7, "{answer}");
    assert_eq!(sim.stats().events_received, 7);
    let recorded = sim.events(Some("1234567890123456"));
    assert!(recorded.iter().any(|e| e.event["user_data"]["fbc"].as_str().is_some_and(|f| f.starts_with("fb.1."))));
}
