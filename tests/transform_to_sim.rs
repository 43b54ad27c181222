//! What capig's transform emits is what Meta accepts: the bundled sample events go
//! through the real transform, the accepted ones are batched as a CAPI request, and the
//! simulator (Meta's validation rules, over a real socket on 127.0.0.1) must take every
//! one of them. Two samples: `examples/browser-events.jsonl` (a shop's day) and
//! `examples/pixel-types.jsonl` (every standard event with its parameters in the Meta
//! Pixel's types, and properties capig has to drop, which the simulator would refuse).

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

fn context() -> Context<'static> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    Context {
        now_ms,
        client_ip: Some("2001:db8::7"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) capig-test"),
        ..Context::default()
    }
}

/// Runs every line of `sample` through a fresh transformer; returns the CAPI request body
/// of the accepted events, how many there are, and the transformer (for its counters).
fn forward(sample: &str) -> (Vec<u8>, usize, Transformer) {
    let ctx = context();
    let mut transformer = Transformer::new(Policies::allow_all(DedupConfig::default()));
    let mut parser = Parser::default();
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
    (batch, accepted, transformer)
}

#[test]
fn the_simulator_accepts_every_event_capig_forwards() {
    let sim = Simulator::start(SimArgs { listen: "127.0.0.1:0".into(), ..SimArgs::default() }).unwrap();
    let (batch, accepted, _) = forward(include_str!("../examples/browser-events.jsonl"));
    assert_eq!(accepted, 7, "the sample has 7 good events");

    let (status, answer) = post(sim.addr(), "/v26.0/1234567890123456/events", &batch);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events_received"], 7, "{answer}");
    assert_eq!(sim.stats().events_received, 7);
    let recorded = sim.events(Some("1234567890123456"));
    assert!(recorded.iter().any(|e| e.event["user_data"]["fbc"].as_str().is_some_and(|f| f.starts_with("fb.1."))));
}

#[test]
fn the_simulator_accepts_pixel_typed_events_after_conversion() {
    let sim = Simulator::start(SimArgs { listen: "127.0.0.1:0".into(), ..SimArgs::default() }).unwrap();
    let (batch, accepted, transformer) = forward(include_str!("../examples/pixel-types.jsonl"));
    // 22 lines: every one forwarded but the Purchase whose value is not a number.
    assert_eq!(accepted, 21);
    assert_eq!(transformer.counters.rejected(capig::event::reject::Reason::InvalidCustomData), 1);
    let drops: Vec<(&str, u64)> = transformer.counters.nonzero().into_iter().filter(|(l, _)| l.contains("custom_data_")).collect();
    assert_eq!(
        drops,
        [
            ("invalid_custom_data_object", 1),
            ("invalid_custom_data_value", 2),
            ("invalid_custom_data_currency", 1),
            ("invalid_custom_data_predicted_ltv", 1),
            ("invalid_custom_data_num_items", 1),
            ("invalid_custom_data_content_ids", 1),
            ("invalid_custom_data_contents", 2),
            ("invalid_custom_data_delivery_category", 1),
            ("invalid_custom_data_content_name", 1),
            ("invalid_custom_data_status", 1),
        ]
    );

    let (status, answer) = post(sim.addr(), "/v26.0/1234567890123456/events", &batch);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events_received"], 21, "{answer}");
    let recorded = sim.events(Some("1234567890123456"));
    let custom = |id: &str| {
        let e = recorded.iter().find(|e| e.event["event_id"] == id).unwrap_or_else(|| panic!("{id} not recorded"));
        e.event["custom_data"].clone()
    };
    assert_eq!(custom("pt-reg")["status"], "true");
    assert_eq!(custom("pt-order-1042"), serde_json::json!({
        "content_ids": ["123"], "content_name": "Order", "content_type": "product_group",
        "contents": [{"id": "A", "quantity": 1, "item_price": 9.99}],
        "currency": "USD", "num_items": 1, "value": 142.52, "order_id": "1042"
    }));
    assert_eq!(custom("pt-ic")["num_items"], 3);
    assert_eq!(custom("pt-atc")["contents"], serde_json::json!([{"id": "1001", "quantity": 2, "item_price": 12.5}]));
    assert_eq!(custom("pt-search")["search_string"], "12345");
    assert_eq!(custom("pt-vc-drops"), serde_json::json!({"content_ids": ["SKU-2"], "contents": [{"id": "SKU-2"}]}));
    assert_eq!(custom("pt-reg-drops"), serde_json::json!({}));
    assert!(custom("pt-pv-drops").is_null());
}
