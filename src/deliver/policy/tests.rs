use std::time::{Duration, Instant};

use super::*;

/// The class of an outcome, for the table below.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Delivered(Option<u64>),
    Retry,
    SlowDown,
    Breaker,
    Bisect,
    Dead,
}

fn class(o: &Outcome) -> Class {
    match o {
        Outcome::Delivered { events_received } => Class::Delivered(*events_received),
        Outcome::Retry {
            slow_down: false, ..
        } => Class::Retry,
        Outcome::Retry {
            slow_down: true, ..
        } => Class::SlowDown,
        Outcome::Breaker(_) => Class::Breaker,
        Outcome::Bisect(_) => Class::Bisect,
        Outcome::DeadLetter(_) => Class::Dead,
    }
}

fn err(code: i64, subcode: Option<i64>) -> String {
    let mut e = serde_json::json!({"error": {
        "message": "Invalid parameter", "type": "OAuthException", "code": code, "fbtrace_id": "AbC123xyz"
    }});
    if let Some(s) = subcode {
        e["error"]["error_subcode"] = s.into();
    }
    e.to_string()
}

fn check(status: u16, body: &str, expected: Class) {
    let got = classify(status, body.as_bytes());
    assert_eq!(class(&got), expected, "{status} {body}");
}

#[test]
fn classes_by_code() {
    use Class::*;
    let table: &[(u16, i64, Option<i64>, Class)] = &[
        (500, 1, None, Retry),
        (500, 1, Some(99), Retry),
        (503, 2, None, Retry),
        (400, 341, None, Retry),
        (400, 368, Some(1390008), Retry),
        (400, 4, None, SlowDown),
        (400, 17, Some(2446079), SlowDown),
        (400, 613, Some(1487742), SlowDown),
        (400, 80003, None, SlowDown),
        (400, 80004, None, SlowDown),
        (401, 190, Some(460), Breaker),
        (400, 190, Some(463), Breaker),
        (403, 10, None, Breaker),
        (403, 200, None, Breaker),
        (403, 299, None, Breaker),
        (400, 3, None, Breaker),
        (400, 100, Some(33), Breaker),
        (400, 100, None, Bisect),
        (400, 100, Some(2804003), Bisect),
        (400, 100, Some(2804050), Bisect),
        (400, 300, None, Dead),
        (400, 12, None, Dead),
        (404, 803, None, Dead),
        (400, 80100, None, Dead),
        (500, 12345, None, Retry),
    ];
    for (status, code, subcode, want) in table {
        let got = classify(*status, err(*code, *subcode).as_bytes());
        assert_eq!(&class(&got), want, "{status} {code} {subcode:?}");
    }
}

#[test]
fn success_and_malformed_bodies() {
    use Class::*;
    check(
        200,
        r#"{"events_received":3,"messages":[],"fbtrace_id":"x"}"#,
        Delivered(Some(3)),
    );
    check(200, "", Delivered(None));
    check(202, "not json", Delivered(None));
    check(
        502,
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        Retry,
    );
    check(500, "", Retry);
    check(400, "not json", Retry);
    check(400, r#"{"error":"a string"}"#, Retry);
    check(400, r#"{"error":{"message":"no code"}}"#, Retry);
    check(400, r#"{"error":{"code":1"#, Retry);
    check(429, "", SlowDown);
    check(400, r#"{"error":{"code":12,"is_transient":true}}"#, Retry);
    assert_eq!(
        class(&Outcome::from_transport(TransportError::Timeout)),
        Retry
    );
    assert_eq!(
        class(&Outcome::from_transport(TransportError::Connect)),
        Retry
    );
    assert_eq!(
        class(&Outcome::from_transport(TransportError::Closed)),
        Retry
    );
    match classify(502, b"<html>") {
        Outcome::Retry {
            cause: RetryCause::Status(502),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn dead_letters_carry_metas_reason() {
    let body = serde_json::json!({"error": {
        "message": "x".repeat(2000) + "é", "code": 2500, "error_subcode": 7, "fbtrace_id": "AbC123xyz", "type": "OAuthException"
    }})
    .to_string();
    let Outcome::DeadLetter(e) = classify(400, body.as_bytes()) else {
        panic!()
    };
    assert_eq!(
        (e.status, e.code, e.subcode, e.fbtrace_id.as_deref()),
        (400, 2500, Some(7), Some("AbC123xyz"))
    );
    assert_eq!(e.message.len(), MAX_MESSAGE);
    assert_eq!(
        e.to_string(),
        format!(
            "HTTP 400 code 2500/7: {} (fbtrace_id AbC123xyz)",
            "x".repeat(MAX_MESSAGE)
        )
    );
    // Truncation never splits a character.
    assert_eq!(truncate("aé".repeat(400), 5), "aéa");
    assert_eq!(truncate("aéb".into(), 2), "a");
    // `error_user_msg` stands in for a missing message.
    let body = r#"{"error":{"code":2500,"error_user_msg":"Bad field"}}"#;
    let Outcome::DeadLetter(e) = classify(400, body.as_bytes()) else {
        panic!()
    };
    assert_eq!((e.message.as_str(), e.fbtrace_id), ("Bad field", None));
}

#[test]
fn backoff_grows_within_bounds_and_resets() {
    let cfg = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(1000),
    };
    let mut b = Backoff::new(cfg);
    let mut rng = Rng::new(42);
    let ceilings: Vec<u64> = (0..6)
        .map(|_| {
            let ceiling = b.ceiling();
            for _ in 0..50 {
                let mut probe = b.clone();
                assert!(probe.next_delay(&mut rng) <= ceiling);
            }
            b.next_delay(&mut rng);
            ceiling.as_millis() as u64
        })
        .collect();
    assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(b.failures(), 6);
    // Full jitter spreads over the whole range.
    let delays: Vec<u64> = (0..1000)
        .map(|_| b.clone().next_delay(&mut rng).as_millis() as u64)
        .collect();
    assert!(
        delays.iter().any(|&d| d < 100) && delays.iter().any(|&d| d > 900),
        "{delays:?}"
    );
    b.reset();
    assert_eq!((b.failures(), b.ceiling()), (0, cfg.initial));
    // Many failures do not overflow.
    for _ in 0..100 {
        assert!(b.next_delay(&mut rng) <= cfg.max);
    }
    let u = Upstream::default();
    assert_eq!(
        BackoffConfig::from(&u),
        BackoffConfig {
            initial: Duration::from_millis(u.retry_initial_ms),
            max: Duration::from_millis(u.retry_max_ms)
        }
    );
}

#[test]
fn rng_is_seeded_and_never_stuck() {
    let a: Vec<u64> = {
        let mut r = Rng::new(7);
        (0..4).map(|_| r.next_u64()).collect()
    };
    let b: Vec<u64> = {
        let mut r = Rng::new(7);
        (0..4).map(|_| r.next_u64()).collect()
    };
    assert_eq!(a, b);
    let mut z = Rng::new(0);
    assert_ne!(z.next_u64(), z.next_u64());
    assert!((0..100).all(|_| z.up_to(3) <= 3));
    z.up_to(u64::MAX);
}

fn token_error() -> Outcome {
    classify(401, err(190, Some(460)).as_bytes())
}

#[test]
fn breaker_transitions() {
    let t0 = Instant::now();
    let s = |secs: u64| t0 + Duration::from_secs(secs);
    let mut b = Breaker::new(BreakerConfig::default());
    assert_eq!(
        (b.state(), b.admit(t0)),
        (BreakerState::Closed, Admit::Send)
    );
    b.record(t0, &classify(500, b""));
    assert_eq!(b.state(), BreakerState::Closed);

    b.record(s(0), &token_error());
    assert_eq!(b.state(), BreakerState::Open);
    let trip = b.trip().unwrap().clone();
    assert_eq!(
        (trip.error.code, trip.since, trip.next_probe),
        (190, s(0), s(30))
    );
    // A second in-flight request failing keeps the schedule.
    b.record(s(1), &token_error());
    assert_eq!(b.trip().unwrap().next_probe, s(30));
    assert_eq!(b.admit(s(29)), Admit::Hold { until: Some(s(30)) });
    // Exactly one probe.
    assert_eq!(b.admit(s(30)), Admit::Probe);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.admit(s(31)), Admit::Hold { until: None });
    // The probe fails: twice the wait.
    b.record(s(31), &token_error());
    assert_eq!(
        (b.state(), b.trip().unwrap().next_probe),
        (BreakerState::Open, s(91))
    );
    assert_eq!(b.trip().unwrap().since, s(0));
    // A transient error during the probe proves nothing: same interval again.
    assert_eq!(b.admit(s(91)), Admit::Probe);
    b.record(s(92), &Outcome::from_transport(TransportError::Timeout));
    assert_eq!(
        (b.state(), b.trip().unwrap().next_probe),
        (BreakerState::Open, s(152))
    );
    // The interval doubles up to ten minutes.
    let mut now = 152;
    let mut waits = Vec::new();
    for _ in 0..6 {
        assert_eq!(b.admit(s(now)), Admit::Probe);
        b.record(s(now), &token_error());
        let next = b.trip().unwrap().next_probe;
        waits.push((next - s(now)).as_secs());
        now = (next - t0).as_secs();
    }
    assert_eq!(waits, [120, 240, 480, 600, 600, 600]);
    // A successful probe closes it.
    assert_eq!(b.admit(s(now)), Admit::Probe);
    b.record(s(now), &classify(200, br#"{"events_received":1}"#));
    assert_eq!((b.state(), b.trip()), (BreakerState::Closed, None));
    assert_eq!(b.admit(s(now)), Admit::Send);
    // Tripped again, it starts from the first interval; reset closes at once.
    b.record(s(now), &classify(403, err(200, None).as_bytes()));
    assert_eq!(b.trip().unwrap().interval, Duration::from_secs(30));
    b.reset();
    assert_eq!(b.admit(s(now)), Admit::Send);
    // A probe answered with an invalid-parameter error proves the token works.
    b.record(s(now), &token_error());
    assert_eq!(b.admit(s(now + 30)), Admit::Probe);
    b.record(s(now + 30), &classify(400, err(100, None).as_bytes()));
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn breaker_state_is_visible() {
    assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
    assert_eq!(
        serde_json::to_string(&[
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen
        ])
        .unwrap(),
        r#"["closed","open","half_open"]"#
    );
}

fn split(payload: &str) -> Result<Vec<&str>, PayloadError> {
    let mut b = Bisect::default();
    Ok(b.events(payload.as_bytes())?
        .iter()
        .map(|r| &payload[r.clone()])
        .collect())
}

#[test]
fn bisect_finds_event_boundaries() {
    let tricky = r#"{"a":"x,}{\"y\\","b":[{"c":"]"},2]}"#;
    let table: &[(&str, Result<Vec<&str>, PayloadError>)] = &[
        (r#"{"a":1}"#, Ok(vec![r#"{"a":1}"#])),
        (r#"{"a":1},{"b":2}"#, Ok(vec![r#"{"a":1}"#, r#"{"b":2}"#])),
        (" {\"a\":1} ,\n{} ", Ok(vec![r#"{"a":1}"#, "{}"])),
        (tricky, Ok(vec![tricky])),
        (
            r#"{"s":"\\"},{"t":"\\\""}"#,
            Ok(vec![r#"{"s":"\\"}"#, r#"{"t":"\\\""}"#]),
        ),
        (
            r#"{"n":{"m":{"o":"}}}"}}},{"p":"{"}"#,
            Ok(vec![r#"{"n":{"m":{"o":"}}}"}}}"#, r#"{"p":"{"}"#]),
        ),
        ("", Err(PayloadError::Empty)),
        ("  ", Err(PayloadError::Empty)),
        (r#"{"a":1},"#, Err(PayloadError::Truncated)),
        (r#"{"a":"1}"#, Err(PayloadError::Truncated)),
        (r#"{"a":{}"#, Err(PayloadError::Truncated)),
        (
            r#",{"a":1}"#,
            Err(PayloadError::Unexpected { byte: b',', at: 0 }),
        ),
        (
            r#"{}{}"#,
            Err(PayloadError::Unexpected { byte: b'{', at: 2 }),
        ),
        (
            r#"{},,{}"#,
            Err(PayloadError::Unexpected { byte: b',', at: 3 }),
        ),
        (
            r#"[{}]"#,
            Err(PayloadError::Unexpected { byte: b'[', at: 0 }),
        ),
        (
            r#"{}}"#,
            Err(PayloadError::Unexpected { byte: b'}', at: 2 }),
        ),
    ];
    for (payload, want) in table {
        assert_eq!(&split(payload), want, "{payload}");
    }
}

#[test]
fn bisect_halves_deliver_good_events_and_isolate_bad_ones() {
    let payload = r#"{"i":0,"s":"a,b"},{"i":1,"s":"}"},{"i":2,"s":"\""},{"i":3},{"i":4}"#;
    let mut b = Bisect::default();
    let Halves::Split {
        left,
        left_events,
        right,
        right_events,
    } = b.halves(payload.as_bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!((left_events, right_events), (2, 3));
    assert_eq!(left, br#"{"i":0,"s":"a,b"},{"i":1,"s":"}"}"#);
    assert_eq!(right, br#"{"i":2,"s":"\""},{"i":3},{"i":4}"#);
    for half in [left, right] {
        let v: serde_json::Value = serde_json::from_slice(&[b"[", half, b"]"].concat()).unwrap();
        assert!(v.is_array());
    }
    assert_eq!(b.halves(br#" {"i":9} "#), Ok(Halves::Single));

    // Bisecting down: event 3 is bad; every other event is delivered, 3 is dead-lettered.
    let bad = |p: &[u8]| p.windows(7).any(|w| w == br#"{"i":3}"#);
    let (mut delivered, mut dead, mut work) = (0, Vec::new(), vec![payload.as_bytes().to_vec()]);
    while let Some(p) = work.pop() {
        if !bad(&p) {
            delivered += b.events(&p).unwrap().len();
            continue;
        }
        match b.halves(&p).unwrap() {
            Halves::Single => dead.push(String::from_utf8(p).unwrap()),
            Halves::Split { left, right, .. } => {
                work.push(left.to_vec());
                work.push(right.to_vec());
            }
        }
    }
    assert_eq!((delivered, dead), (4, vec![r#"{"i":3}"#.to_string()]));
}

#[test]
fn ttl_with_margin() {
    let now = 1_700_000_000;
    assert!(!expired(now, now));
    assert!(!expired(now - MAX_AGE_SECS + TTL_MARGIN_SECS, now));
    assert!(expired(now - MAX_AGE_SECS + TTL_MARGIN_SECS - 1, now));
    assert!(expired(0, now));
    assert!(!expired(now + 60, now));
    assert!(!expired(u64::MAX, u64::MAX));
}
