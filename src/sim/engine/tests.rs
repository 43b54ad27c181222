//! Routing, counting, recording and the control endpoints, in memory.

use serde_json::{json, Value};

use super::*;

const NOW_MS: u64 = 1_760_000_000_000;
const NOW: i64 = (NOW_MS / 1000) as i64;
const HASH: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

#[test]
fn routes() {
    let events = |p: &str| Route::Events {
        pixel_id: p.to_owned(),
    };
    let cases: Vec<(&str, &str, Route)> = vec![
        ("POST", "/v25.0/123/events", events("123")),
        ("POST", "/v1.0/abc/events", events("abc")),
        (
            "GET",
            "/v25.0/123/events",
            Route::WrongMethod { allow: "POST" },
        ),
        ("POST", "/25.0/123/events", Route::NotFound),
        ("POST", "/v25/123/events", Route::NotFound),
        ("POST", "/v25.0a/123/events", Route::NotFound),
        ("POST", "/v.0/123/events", Route::NotFound),
        ("POST", "/v25.0//events", Route::NotFound),
        ("POST", "/v25.0/123/events/", Route::NotFound),
        ("POST", "/v25.0/123/event", Route::NotFound),
        ("POST", "/123/events", Route::NotFound),
        ("POST", "", Route::NotFound),
        ("GET", "/__sim/stats", Route::Stats),
        ("POST", "/__sim/stats", Route::WrongMethod { allow: "GET" }),
        ("GET", "/__sim/events", Route::ListEvents),
        ("POST", "/__sim/reset", Route::Reset),
        ("GET", "/__sim/reset", Route::WrongMethod { allow: "POST" }),
        ("GET", "/__sim/faults", Route::GetFaults),
        ("PUT", "/__sim/faults", Route::PutFaults),
        (
            "DELETE",
            "/__sim/faults",
            Route::WrongMethod { allow: "GET, PUT" },
        ),
        ("GET", "/__sim/nope", Route::NotFound),
    ];
    for (method, path, expected) in cases {
        assert_eq!(route(method, path), expected, "{method} {path}");
    }
}

fn event(name: &str) -> Value {
    json!({
        "event_name": name,
        "event_time": NOW - 10,
        "action_source": "website",
        "event_source_url": "https://shop.example/",
        "user_data": {"em": HASH, "client_user_agent": "UA"},
    })
}

/// One CAPI call and the status it should get (`None`: connection dropped).
struct Call {
    pixel: &'static str,
    body: Value,
    status: Option<u16>,
}

fn call(pixel: &'static str, body: Value, status: Option<u16>) -> Call {
    Call {
        pixel,
        body,
        status,
    }
}

fn good(n: usize) -> Value {
    json!({"data": (0..n).map(|i| event(&format!("E{i}"))).collect::<Vec<_>>(), "access_token": "t"})
}

fn engine(faults: FaultConfig, keep: usize) -> Engine {
    Engine::new(EngineConfig {
        keep,
        record: true,
        seed: 9,
        faults,
    })
}

/// Runs `calls` and compares the stats JSON with `expected` key by key.
fn check(
    name: &str,
    engine: &mut Engine,
    tokens: &Tokens,
    calls: &[Call],
    expected: Value,
) -> Vec<Decision> {
    let decisions: Vec<Decision> = calls
        .iter()
        .map(|c| {
            let body = c.body.to_string();
            let evaluated = evaluate(
                tokens,
                c.pixel,
                Some("application/json"),
                None,
                body.as_bytes(),
                NOW,
            );
            let decision = engine.admit(c.pixel, evaluated, NOW_MS);
            assert_eq!(
                decision.reply.as_ref().map(|r| r.status),
                c.status,
                "{name}: status of {body}"
            );
            decision
        })
        .collect();
    let stats = serde_json::to_value(engine.stats()).unwrap();
    for (key, want) in expected.as_object().unwrap() {
        assert_eq!(&stats[key], want, "{name}: stats.{key} in {stats}");
    }
    decisions
}

#[test]
fn counting() {
    let no_tokens = Tokens::default();
    let tokens = Tokens([("1".to_owned(), "t".to_owned())].into_iter().collect());
    let bad_event = json!({"data": [event("A"), {"event_name": "B"}], "access_token": "t"});
    let cases: Vec<(&str, FaultConfig, &Tokens, Vec<Call>, Value)> = vec![
        (
            "accepted and rejected",
            FaultConfig::default(),
            &no_tokens,
            vec![
                call("1", good(2), Some(200)),
                call("1", bad_event.clone(), Some(400)),
                call("2", good(1), Some(200)),
            ],
            json!({
                "requests": 3, "requests_accepted": 2, "requests_rejected": 1,
                "events_received": 3, "events_rejected": 2, "faults_injected": 0, "dropped_connections": 0,
                "by_pixel": {"1": {"requests": 2, "events": 2, "requests_rejected": 1}, "2": {"requests": 1, "events": 1, "requests_rejected": 0}},
                "by_error_code": {"100": 1},
            }),
        ),
        (
            "per-pixel fault leaves others alone",
            FaultConfig {
                fail: vec!["190=1@1".parse().unwrap()],
                ..FaultConfig::default()
            },
            &no_tokens,
            vec![call("1", good(1), Some(400)), call("2", good(1), Some(200))],
            json!({"faults_injected": 1, "events_received": 1, "events_rejected": 1, "by_error_code": {"190": 1}}),
        ),
        (
            "fault wins over a bad body",
            FaultConfig {
                fail: vec!["2=1".parse().unwrap()],
                ..FaultConfig::default()
            },
            &no_tokens,
            vec![call("1", json!({"data": "nope"}), Some(503))],
            json!({"faults_injected": 1, "events_rejected": 0, "by_error_code": {"2": 1}}),
        ),
        (
            "bare HTTP status",
            FaultConfig {
                fail: vec!["502=1".parse().unwrap()],
                ..FaultConfig::default()
            },
            &no_tokens,
            vec![call("1", good(3), Some(502))],
            json!({"faults_injected": 1, "events_rejected": 3, "by_error_code": {"http_502": 1}}),
        ),
        (
            "dropped connections",
            FaultConfig {
                drop_rate: 1.0,
                ..FaultConfig::default()
            },
            &no_tokens,
            vec![call("1", good(1), None), call("1", good(1), None)],
            json!({"requests": 2, "faults_injected": 2, "dropped_connections": 2, "requests_rejected": 0, "events_received": 0}),
        ),
        (
            "throttle after 2",
            FaultConfig {
                throttle_after: Some(2),
                ..FaultConfig::default()
            },
            &no_tokens,
            vec![
                call("1", good(1), Some(200)),
                call("1", good(1), Some(200)),
                call("1", good(1), Some(400)),
                call("2", good(1), Some(200)),
            ],
            json!({"faults_injected": 1, "events_received": 3, "by_error_code": {"17": 1}}),
        ),
        (
            "ids that are no pixel id share one key",
            FaultConfig::default(),
            &no_tokens,
            vec![
                call("abc", good(1), Some(400)),
                call("x/../y", good(1), Some(400)),
            ],
            json!({"by_pixel": {"_other": {"requests": 2, "events": 0, "requests_rejected": 2}}, "by_error_code": {"100": 2}}),
        ),
        (
            "tokens",
            FaultConfig::default(),
            &tokens,
            vec![
                call("1", good(1), Some(200)),
                call(
                    "1",
                    json!({"data": [event("A")], "access_token": "wrong"}),
                    Some(400),
                ),
                call("1", json!({"data": [event("A")]}), Some(400)),
                call("2", good(1), Some(400)),
            ],
            json!({"events_received": 1, "by_error_code": {"190": 1, "104": 1, "100": 1}}),
        ),
    ];
    for (name, faults, tokens, calls, expected) in cases {
        check(name, &mut engine(faults, 100), tokens, &calls, expected);
    }
}

fn body_json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap()
}

#[test]
fn answers_look_like_graph() {
    let mut engine = engine(
        FaultConfig {
            fail: vec!["503=0".parse().unwrap()],
            ..FaultConfig::default()
        },
        100,
    );
    let decisions = check(
        "answers",
        &mut engine,
        &Tokens::default(),
        &[
            call("1", good(2), Some(200)),
            call("1", json!({"data": [], "access_token": "t"}), Some(400)),
        ],
        json!({}),
    );
    let ok = decisions[0].reply.as_ref().unwrap();
    assert_eq!(ok.content_type, "application/json");
    let ok = body_json(ok);
    assert_eq!(ok["events_received"], 2);
    assert_eq!(ok["messages"], json!([]));
    assert_eq!(ok["fbtrace_id"].as_str().unwrap().len(), 11);
    let error = body_json(decisions[1].reply.as_ref().unwrap());
    assert_eq!(error["error"]["code"], 100);
    assert_eq!(error["error"]["type"], "OAuthException");
}

#[test]
fn recording_and_paging() {
    let mut engine = engine(FaultConfig::default(), 3);
    let calls = [
        call(
            "1",
            json!({"data": [event("A"), event("B")], "access_token": "t", "test_event_code": "TEST1"}),
            Some(200),
        ),
        call("2", good(1), Some(200)),
        call("1", good(1), Some(200)),
    ];
    let decisions = check(
        "recording",
        &mut engine,
        &Tokens::default(),
        &calls,
        json!({"events_received": 4, "events_evicted": 1}),
    );

    let lines: Vec<Value> = decisions
        .iter()
        .flat_map(|d| {
            d.record_lines
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 4, "the file keeps what memory evicts");
    assert_eq!(
        lines[0],
        json!({"pixel_id": "1", "received_at": NOW_MS, "test_event_code": "TEST1", "event": event("A")})
    );
    assert_eq!(
        lines[2],
        json!({"pixel_id": "2", "received_at": NOW_MS, "event": event("E0")})
    );

    let seqs = |pixel: Option<&str>, since: u64, limit: usize| -> Vec<u64> {
        engine
            .events(pixel, since, limit)
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    let cases: Vec<(Option<&str>, u64, usize, Vec<u64>)> = vec![
        (None, 0, usize::MAX, vec![2, 3, 4]),
        (Some("1"), 0, usize::MAX, vec![2, 4]),
        (Some("2"), 0, usize::MAX, vec![3]),
        (Some("9"), 0, usize::MAX, vec![]),
        (None, 2, usize::MAX, vec![3, 4]),
        (None, 0, 2, vec![2, 3]),
        (None, 4, usize::MAX, vec![]),
    ];
    for (pixel, since, limit, expected) in cases {
        assert_eq!(
            seqs(pixel, since, limit),
            expected,
            "{pixel:?} since {since} limit {limit}"
        );
    }
    assert_eq!(
        engine.events(None, 0, 1)[0].test_event_code.as_deref(),
        Some("TEST1")
    );

    engine.reset();
    assert_eq!(engine.stats(), SimStats::default());
    assert!(engine.events(None, 0, usize::MAX).is_empty());
    let evaluated = evaluate(
        &Tokens::default(),
        "1",
        None,
        None,
        good(1).to_string().as_bytes(),
        NOW,
    );
    engine.admit("1", evaluated, NOW_MS);
    assert_eq!(
        engine.events(None, 0, 9)[0].seq,
        5,
        "sequence numbers survive a reset"
    );
}

#[test]
fn keep_zero_stores_nothing() {
    let mut engine = engine(FaultConfig::default(), 0);
    check(
        "keep 0",
        &mut engine,
        &Tokens::default(),
        &[call("1", good(2), Some(200))],
        json!({"events_received": 2, "events_evicted": 2}),
    );
    assert!(engine.events(None, 0, usize::MAX).is_empty());
}

/// A control request and what it should answer: status and a fragment of the body.
fn check_control(
    engine: &mut Engine,
    method: &str,
    target: &str,
    body: &str,
    status: u16,
    says: &str,
) -> Reply {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let reply = engine.control(&route(method, path), method, path, query, body.as_bytes());
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, status, "{method} {target}: {text}");
    assert!(
        text.contains(says),
        "{method} {target}: {text} should contain {says:?}"
    );
    reply
}

#[test]
fn control_endpoints() {
    let mut engine = engine(FaultConfig::default(), 10);
    let evaluated = evaluate(
        &Tokens::default(),
        "1",
        None,
        None,
        good(1).to_string().as_bytes(),
        NOW,
    );
    engine.admit("1", evaluated, NOW_MS);
    let cases: Vec<(&str, &str, &str, u16, &str)> = vec![
        ("GET", "/__sim/stats", "", 200, "\"events_received\":1"),
        ("GET", "/__sim/events", "", 200, "\"seq\":1"),
        (
            "GET",
            "/__sim/events?pixel=1&since=0",
            "",
            200,
            "\"pixel_id\":\"1\"",
        ),
        ("GET", "/__sim/events?pixel=2", "", 200, "[]"),
        ("GET", "/__sim/events?since=1", "", 200, "[]"),
        (
            "GET",
            "/__sim/events?since=x",
            "",
            400,
            "since must be a sequence number",
        ),
        (
            "GET",
            "/__sim/events?limit=-1",
            "",
            400,
            "limit must be a number",
        ),
        ("GET", "/__sim/faults", "", 200, "\"fail\":[]"),
        (
            "PUT",
            "/__sim/faults",
            r#"{"fail":["190=1@1"],"latency_ms":"1..2"}"#,
            200,
            "\"190=1@1\"",
        ),
        ("GET", "/__sim/faults", "", 200, "\"latency_ms\":\"1..2\""),
        (
            "PUT",
            "/__sim/faults",
            r#"{"fail":["9=1"]}"#,
            400,
            "Invalid fault configuration",
        ),
        (
            "PUT",
            "/__sim/faults",
            "not json",
            400,
            "Invalid fault configuration",
        ),
        ("GET", "/__sim/faults", "", 200, "\"190=1@1\""),
        ("PUT", "/__sim/faults", "{}", 200, "\"fail\":[]"),
        ("POST", "/__sim/reset", "", 200, "\"events_received\":0"),
        ("GET", "/__sim/events", "", 200, "[]"),
        ("GET", "/nope", "", 404, "Unknown path components: /nope"),
        (
            "DELETE",
            "/__sim/stats",
            "",
            405,
            "Unsupported delete request",
        ),
    ];
    for (method, target, body, status, says) in cases {
        check_control(&mut engine, method, target, body, status, says);
    }
    let reply = check_control(
        &mut engine,
        "GET",
        "/v25.0/1/events",
        "",
        405,
        "only answers POST",
    );
    assert_eq!(reply.allow, Some("POST"));
}
