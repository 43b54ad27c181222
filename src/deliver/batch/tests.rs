use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::event::json::Parser;
use crate::event::policy::{DedupConfig, Policies};
use crate::event::transform::{Context, Transformer};

const LINGER: Duration = Duration::from_millis(100);

fn cfg(max_events: usize, max_bytes: usize) -> BatchConfig {
    BatchConfig {
        max_events,
        max_bytes,
        linger: LINGER,
    }
}

/// One step of a scenario: push an event (pixel, ms since start, event_time, bytes; empty
/// bytes = a rejected write), or poll linger, or flush.
enum Step {
    Push(PixelId, u64, u64, &'static str),
    Poll(u64),
    Flush,
}
use Step::*;

/// What a closed batch must look like: pixel, events, oldest event time, payload.
type Want = (PixelId, u32, u64, &'static str);

fn run(cfg: BatchConfig, steps: &[Step]) -> Vec<ClosedBatch> {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut b = Batcher::new(cfg);
    let mut out = Vec::new();
    for step in steps {
        match *step {
            Push(pixel, ms, time, obj) => {
                let took = b.push_with(pixel, at(ms), &mut out, |buf| {
                    buf.extend_from_slice(obj.as_bytes());
                    (!obj.is_empty()).then_some(time)
                });
                assert_eq!(took, !obj.is_empty());
            }
            Poll(ms) => b.poll_linger(at(ms), &mut out),
            Flush => b.flush_all(&mut out),
        }
    }
    out
}

fn check(name: &str, cfg: BatchConfig, steps: &[Step], want: &[Want]) {
    let got = run(cfg, steps);
    let got: Vec<(PixelId, u32, u64, String)> = got
        .iter()
        .map(|c| {
            (
                c.pixel,
                c.events,
                c.oldest_event_time,
                String::from_utf8(c.payload.clone()).unwrap(),
            )
        })
        .collect();
    let want: Vec<(PixelId, u32, u64, String)> = want
        .iter()
        .map(|w| (w.0, w.1, w.2, w.3.to_string()))
        .collect();
    assert_eq!(got, want, "{name}");
    for (_, n, _, payload) in &got {
        let body: Value = serde_json::from_str(&format!("[{payload}]"))
            .unwrap_or_else(|e| panic!("{name}: {e}: {payload}"));
        assert_eq!(body.as_array().unwrap().len(), *n as usize, "{name}");
    }
}

#[test]
fn closing_rules() {
    let a = r#"{"a":1}"#; // 7 bytes
    check(
        "count closes at max_events",
        cfg(3, 1 << 20),
        &[Push(1, 0, 5, a), Push(1, 1, 3, a), Push(1, 2, 4, a)],
        &[(1, 3, 3, r#"{"a":1},{"a":1},{"a":1}"#)],
    );
    check(
        "below count stays open",
        cfg(3, 1 << 20),
        &[Push(1, 0, 5, a), Push(1, 1, 3, a)],
        &[],
    );
    check(
        "flush closes open batches",
        cfg(3, 1 << 20),
        &[Push(1, 0, 5, a), Push(2, 1, 3, a), Flush, Flush],
        &[(1, 1, 5, a), (2, 1, 3, a)],
    );
    check(
        "one event per batch",
        cfg(1, 1 << 20),
        &[Push(1, 0, 5, a), Push(1, 0, 6, a)],
        &[(1, 1, 5, a), (1, 1, 6, a)],
    );
    // Body = 11 + payload. Two events: 11 + 15 = 26; three: 11 + 23 = 34.
    check(
        "bytes: the event that does not fit starts the next batch",
        cfg(100, 30),
        &[Push(1, 0, 1, a), Push(1, 0, 2, a), Push(1, 0, 3, a), Flush],
        &[(1, 2, 1, r#"{"a":1},{"a":1}"#), (1, 1, 3, a)],
    );
    check(
        "bytes: exactly at the cap closes",
        cfg(100, 26),
        &[Push(1, 0, 1, a), Push(1, 0, 2, a), Push(1, 0, 3, a)],
        &[(1, 2, 1, r#"{"a":1},{"a":1}"#)],
    );
    check(
        "bytes: an oversized event goes alone",
        cfg(100, 20),
        &[
            Push(1, 0, 1, a),
            Push(1, 0, 2, r#"{"big":"xxxxxxxxxxxx"}"#),
            Push(1, 0, 3, a),
        ],
        &[(1, 1, 1, a), (1, 1, 2, r#"{"big":"xxxxxxxxxxxx"}"#)],
    );
    check(
        "linger closes old batches only",
        cfg(100, 1 << 20),
        &[
            Push(1, 0, 1, a),
            Push(2, 50, 2, a),
            Poll(99),
            Poll(100),
            Push(1, 120, 3, a),
            Poll(149),
            Poll(150),
            Poll(500),
        ],
        &[(1, 1, 1, a), (2, 1, 2, a), (1, 1, 3, a)],
    );
    check(
        "linger counts from the first event",
        cfg(100, 1 << 20),
        &[Push(1, 0, 1, a), Push(1, 90, 2, a), Poll(100)],
        &[(1, 2, 1, r#"{"a":1},{"a":1}"#)],
    );
    check(
        "pixels are independent",
        cfg(2, 1 << 20),
        &[
            Push(1, 0, 10, a),
            Push(2, 0, 20, r#"{"b":2}"#),
            Push(3, 0, 30, a),
            Push(2, 0, 21, r#"{"b":3}"#),
            Push(1, 0, 9, a),
        ],
        &[
            (2, 2, 20, r#"{"b":2},{"b":3}"#),
            (1, 2, 9, r#"{"a":1},{"a":1}"#),
        ],
    );
    check(
        "rejected writes leave no comma",
        cfg(3, 1 << 20),
        &[
            Push(1, 0, 1, ""),
            Push(1, 0, 2, a),
            Push(1, 0, 3, ""),
            Push(1, 0, 4, r#"{"b":2}"#),
            Push(1, 0, 5, ""),
            Push(1, 0, 6, a),
        ],
        &[(1, 3, 2, r#"{"a":1},{"b":2},{"a":1}"#)],
    );
}

#[test]
fn a_write_that_leaves_garbage_and_refuses_is_discarded() {
    let t0 = Instant::now();
    let mut b = Batcher::new(cfg(10, 1 << 20));
    let mut out = Vec::new();
    b.push(7, t0, 1, br#"{"a":1}"#, &mut out);
    assert!(!b.push_with(7, t0, &mut out, |buf| {
        buf.extend_from_slice(b"{\"half");
        None
    }));
    b.push(7, t0, 2, b"", &mut out);
    b.push(7, t0, 2, br#"{"a":2}"#, &mut out);
    b.flush_all(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, br#"{"a":1},{"a":2}"#);
}

#[test]
fn next_deadline_is_the_oldest_open_batch() {
    let t0 = Instant::now();
    let mut b = Batcher::new(cfg(10, 1 << 20));
    let mut out = Vec::new();
    assert_eq!(b.next_deadline(), None);
    b.push(1, t0 + Duration::from_millis(30), 1, b"{}", &mut out);
    b.push(2, t0 + Duration::from_millis(10), 1, b"{}", &mut out);
    b.push(2, t0 + Duration::from_millis(40), 1, b"{}", &mut out);
    assert_eq!(
        b.next_deadline(),
        Some(t0 + Duration::from_millis(10) + LINGER)
    );
    b.poll_linger(t0 + Duration::from_millis(110), &mut out);
    assert_eq!(
        b.next_deadline(),
        Some(t0 + Duration::from_millis(30) + LINGER)
    );
    b.flush_all(&mut out);
    assert_eq!(b.next_deadline(), None);
    assert_eq!(out.len(), 2);
}

#[test]
fn recycled_buffers_keep_their_capacity() {
    let t0 = Instant::now();
    let mut b = Batcher::new(cfg(4, 1 << 20));
    let mut out = Vec::new();
    let event = [b'{', b'}'];
    for _ in 0..4 {
        b.push(1, t0, 1, &event, &mut out);
    }
    let first = out.pop().unwrap();
    let (ptr, cap) = (first.payload.as_ptr(), first.payload.capacity());
    assert!(cap >= INITIAL_CAPACITY);
    b.recycle(first.payload);
    assert_eq!(b.free_buffers(), 1);
    for _ in 0..4 {
        b.push(1, t0, 1, &event, &mut out);
    }
    // The next batch was written into the very buffer that came back.
    let second = out.pop().unwrap();
    assert_eq!(
        (second.payload.as_ptr(), second.payload.capacity()),
        (ptr, cap)
    );
    assert_eq!(second.payload, b"{},{},{},{}");
    assert_eq!(b.free_buffers(), 0);
    // The free list is bounded; empty vectors are not kept.
    for _ in 0..FREE_LIST_MAX + 3 {
        b.recycle(Vec::with_capacity(16));
    }
    b.recycle(Vec::new());
    assert_eq!(b.free_buffers(), FREE_LIST_MAX);
}

#[test]
fn request_body_is_valid_json() {
    let batch = ClosedBatch {
        pixel: 1,
        events: 2,
        oldest_event_time: 5,
        payload: br#"{"a":"x,]}"},{"b":[1,2]}"#.to_vec(),
        opened: Instant::now(),
    };
    let body: Value = serde_json::from_slice(&batch.request_body(None)).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"data": [{"a": "x,]}"}, {"b": [1, 2]}]})
    );
    let body: Value = serde_json::from_slice(&batch.request_body(Some("TEST\"12\\3"))).unwrap();
    assert_eq!(body["test_event_code"], "TEST\"12\\3");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        batch.request_body(None).len(),
        batch.payload.len() + ENVELOPE_BYTES
    );
}

#[test]
fn config_from_upstream() {
    let u = Upstream {
        batch_size: 5000,
        batch_bytes: 1000,
        linger_ms: 250,
        ..Upstream::default()
    };
    assert_eq!(
        BatchConfig::from(&u),
        BatchConfig {
            max_events: MAX_BATCH_EVENTS,
            max_bytes: 1000,
            linger: Duration::from_millis(250)
        }
    );
    let u = Upstream {
        batch_size: 0,
        ..Upstream::default()
    };
    assert_eq!(BatchConfig::from(&u).max_events, 1);
}

#[test]
fn a_real_transformer_feeds_the_batcher() {
    const NOW_MS: u64 = 1_700_000_000_000;
    let mut t = Transformer::new(Policies::allow_all(DedupConfig::default()));
    let ctx = Context {
        now_ms: NOW_MS,
        client_ip: Some("203.0.113.7"),
        user_agent: Some("Mozilla/5.0 test"),
        ..Context::default()
    };
    let mut parser = Parser::default();
    let mut b = Batcher::new(cfg(3, 1 << 20));
    let mut out = Vec::new();
    let t0 = Instant::now();
    let inputs = [
        (
            r#"{"pixel_id":"42","event_name":"PageView","event_id":"e1","event_time":1699999990,"event_source_url":"https://shop.example/","user_data":{"em":"John@Example.com"}}"#,
            true,
        ),
        (
            r#"{"pixel_id":"42","event_name":"","event_id":"e2","event_source_url":"https://shop.example/"}"#,
            false,
        ),
        (
            r#"{"pixel_id":"42","event_name":"Purchase","event_id":"e3","event_time":1699999900,"event_source_url":"https://shop.example/\"quoted\"","custom_data":{"value":1.5,"currency":"EUR"}}"#,
            true,
        ),
        (
            r#"{"pixel_id":"42","event_name":"PageView","event_id":"e1","event_source_url":"https://shop.example/"}"#,
            false,
        ),
        (
            r#"{"pixel_id":"42","event_name":"Lead","event_id":"e4","event_source_url":"https://shop.example/a,b"}"#,
            true,
        ),
    ];
    for (input, ok) in inputs {
        let mut bytes = input.as_bytes().to_vec();
        let mut accepted = None;
        let took = parser
            .parse(&mut bytes, |v| {
                b.push_with(42, t0, &mut out, |buf| {
                    let r = t.transform(v, &ctx, buf);
                    accepted = Some(r.is_ok());
                    r.ok().map(|a| a.event_time)
                })
            })
            .unwrap();
        assert_eq!((took, accepted), (ok, Some(ok)), "{input}");
    }
    assert_eq!(out.len(), 1);
    let batch = &out[0];
    assert_eq!(
        (batch.pixel, batch.events, batch.oldest_event_time),
        (42, 3, 1699999900)
    );
    let body: Value = serde_json::from_slice(&batch.request_body(Some("TEST1"))).unwrap();
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["PageView", "Purchase", "Lead"]);
}
