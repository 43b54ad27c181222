//! Fault flags, the JSON schema, and the seeded decisions, through one `check` per area.

use serde_json::json;

use super::*;

fn check_parse<T>(input: &str, expected: Result<&str, &str>)
where
    T: FromStr<Err = String> + fmt::Display,
{
    match (input.parse::<T>(), expected) {
        (Ok(value), Ok(shown)) => assert_eq!(value.to_string(), shown, "{input}"),
        (Err(error), Err(fragment)) => {
            assert!(
                error.contains(fragment),
                "{input}: {error:?} should contain {fragment:?}"
            )
        }
        (got, expected) => panic!(
            "{input}: expected {expected:?}, got {:?}",
            got.map(|v| v.to_string())
        ),
    }
}

#[test]
fn flag_syntax() {
    let rules: &[(&str, Result<&str, &str>)] = &[
        ("190=1.0", Ok("190=1")),
        ("190=1.0@123", Ok("190=1@123")),
        ("2=0.25", Ok("2=0.25")),
        ("503=0.5@9", Ok("503=0.5@9")),
        ("599=0", Ok("599=0")),
        ("1=1", Ok("1=1")),
        ("613=0.1", Ok("613=0.1")),
        ("3=1", Err("not supported")),
        ("499=1", Err("not supported")),
        ("600=1", Err("not supported")),
        ("x=1", Err("not a number")),
        ("190=1.5", Err("between 0 and 1")),
        ("190=-0.1", Err("between 0 and 1")),
        ("190=NaN", Err("between 0 and 1")),
        ("190", Err("CODE=RATE")),
        ("190=1@", Err("empty pixel")),
    ];
    for (input, expected) in rules {
        check_parse::<FailRule>(input, *expected);
    }
    let latencies: &[(&str, Result<&str, &str>)] = &[
        ("5", Ok("5")),
        ("5..20", Ok("5..20")),
        ("7..7", Ok("7")),
        ("20..5", Err("minimum above")),
        ("5..", Err("N..M")),
        ("-1", Err("N..M")),
        ("700000", Err("above the limit")),
    ];
    for (input, expected) in latencies {
        check_parse::<LatencyMs>(input, *expected);
    }
}

#[test]
fn json_schema() {
    let cases: Vec<(serde_json::Value, Result<serde_json::Value, &str>)> = vec![
        (
            json!({}),
            Ok(
                json!({"fail": [], "latency_ms": null, "drop_rate": 0.0, "throttle_after": null, "throttle_window_ms": null}),
            ),
        ),
        (
            json!({"fail": ["190=1@123", "503=0.5"], "latency_ms": "5..20", "drop_rate": 0.1}),
            Ok(
                json!({"fail": ["190=1@123", "503=0.5"], "latency_ms": "5..20", "drop_rate": 0.1, "throttle_after": null, "throttle_window_ms": null}),
            ),
        ),
        (
            json!({"latency_ms": 15, "throttle_after": 3, "throttle_window_ms": 1000}),
            Ok(
                json!({"fail": [], "latency_ms": 15, "drop_rate": 0.0, "throttle_after": 3, "throttle_window_ms": 1000}),
            ),
        ),
        (json!({"fail": ["7=1"]}), Err("not supported")),
        (json!({"drop_rate": 2}), Err("between 0 and 1")),
        (json!({"latency": 5}), Err("unknown field")),
        (
            json!({"throttle_window_ms": 5}),
            Err("needs throttle_after"),
        ),
        (
            json!({"throttle_after": 1, "throttle_window_ms": 0}),
            Err("at least 1"),
        ),
    ];
    for (input, expected) in cases {
        let got = serde_json::from_value::<FaultConfig>(input.clone())
            .map_err(|e| e.to_string())
            .and_then(|c| c.check().map(|()| c));
        match (got, expected) {
            (Ok(config), Ok(shown)) => {
                assert_eq!(serde_json::to_value(&config).unwrap(), shown, "{input}")
            }
            (Err(error), Err(fragment)) => assert!(error.contains(fragment), "{input}: {error}"),
            (got, expected) => panic!("{input}: expected {expected:?}, got {got:?}"),
        }
    }
}

/// How often each outcome happens over `n` requests of `pixel`, one per millisecond.
fn tally(config: &FaultConfig, pixel: &str, n: u64) -> HashMap<String, u64> {
    let mut rng = Rng::new(7);
    let mut throttle = Throttle::default();
    let mut counts = HashMap::new();
    for now_ms in 0..n {
        let decision = decide(config, &mut throttle, &mut rng, pixel, now_ms);
        let key = match decision.fault {
            None => "ok".to_owned(),
            Some(Fault::Drop) => "drop".to_owned(),
            Some(Fault::Throttled) => "throttled".to_owned(),
            Some(Fault::Fail(code)) => code.to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn config(fail: &[&str]) -> FaultConfig {
    FaultConfig {
        fail: fail.iter().map(|r| r.parse().unwrap()).collect(),
        ..FaultConfig::default()
    }
}

/// Expected outcome counts; `tolerance` is how far a random count may stray.
fn check_tally(
    name: &str,
    config: &FaultConfig,
    pixel: &str,
    n: u64,
    expected: &[(&str, u64)],
    tolerance: u64,
) {
    let counts = tally(config, pixel, n);
    let total: u64 = counts.values().sum();
    assert_eq!(total, n, "{name}");
    for (key, want) in expected {
        let got = counts.get(*key).copied().unwrap_or(0);
        assert!(
            got.abs_diff(*want) <= tolerance,
            "{name}: {key} happened {got} times, expected about {want}: {counts:?}"
        );
    }
}

/// Name, configuration, pixel, requests, expected counts, tolerance.
type DecisionCase = (
    &'static str,
    FaultConfig,
    &'static str,
    u64,
    Vec<(&'static str, u64)>,
    u64,
);

#[test]
fn decisions() {
    let cases: Vec<DecisionCase> = vec![
        (
            "no faults",
            FaultConfig::default(),
            "1",
            100,
            vec![("ok", 100)],
            0,
        ),
        (
            "rate 1",
            config(&["190=1"]),
            "1",
            100,
            vec![("190", 100)],
            0,
        ),
        ("rate 0", config(&["190=0"]), "1", 100, vec![("ok", 100)], 0),
        (
            "scoped to this pixel",
            config(&["190=1@1"]),
            "1",
            50,
            vec![("190", 50)],
            0,
        ),
        (
            "scoped to another pixel",
            config(&["190=1@2"]),
            "1",
            50,
            vec![("ok", 50)],
            0,
        ),
        (
            "first full rule shadows the rest",
            config(&["2=1", "17=1"]),
            "1",
            50,
            vec![("2", 50), ("17", 0)],
            0,
        ),
        (
            "disjoint shares",
            config(&["2=0.1", "17=0.2"]),
            "1",
            10_000,
            vec![("2", 1000), ("17", 2000), ("ok", 7000)],
            250,
        ),
        (
            "HTTP status",
            config(&["503=1"]),
            "1",
            10,
            vec![("503", 10)],
            0,
        ),
        (
            "drop everything",
            FaultConfig {
                drop_rate: 1.0,
                ..config(&["190=1"])
            },
            "1",
            20,
            vec![("drop", 20)],
            0,
        ),
        (
            "half dropped",
            FaultConfig {
                drop_rate: 0.5,
                ..FaultConfig::default()
            },
            "1",
            10_000,
            vec![("drop", 5000)],
            250,
        ),
        (
            "throttle forever after 3",
            FaultConfig {
                throttle_after: Some(3),
                ..FaultConfig::default()
            },
            "1",
            10,
            vec![("ok", 3), ("throttled", 7)],
            0,
        ),
        (
            "throttle 3 per 5 ms window",
            FaultConfig {
                throttle_after: Some(3),
                throttle_window_ms: Some(5),
                ..FaultConfig::default()
            },
            "1",
            20,
            vec![("ok", 12), ("throttled", 8)],
            0,
        ),
    ];
    for (name, config, pixel, n, expected, tolerance) in cases {
        check_tally(name, &config, pixel, n, &expected, tolerance);
    }
}

#[test]
fn throttling_is_per_pixel() {
    let config = FaultConfig {
        throttle_after: Some(1),
        ..FaultConfig::default()
    };
    let mut rng = Rng::new(1);
    let mut throttle = Throttle::default();
    let mut throttled =
        |pixel| decide(&config, &mut throttle, &mut rng, pixel, 0).fault == Some(Fault::Throttled);
    assert!(!throttled("1"));
    assert!(throttled("1"));
    assert!(!throttled("2"), "another pixel has its own count");
}

#[test]
fn seeded_runs_repeat_and_latency_stays_in_range() {
    let config = FaultConfig {
        latency_ms: Some("5..9".parse().unwrap()),
        drop_rate: 0.3,
        ..config(&["2=0.3"])
    };
    let run = || {
        let mut rng = Rng::new(42);
        let mut throttle = Throttle::default();
        (0..200)
            .map(|t| decide(&config, &mut throttle, &mut rng, "1", t))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    assert!(first.iter().all(|d| (5..=9).contains(&d.delay.as_millis())));
    let distinct: std::collections::BTreeSet<_> = first.iter().map(|d| d.delay).collect();
    assert_eq!(distinct.len(), 5, "every value of the range shows up");
}

#[test]
fn rng_unit_interval() {
    let mut rng = Rng::new(0);
    for _ in 0..10_000 {
        let u = rng.unit();
        assert!((0.0..1.0).contains(&u));
    }
    let full_range: Vec<u64> = (0..4)
        .map(|_| Rng::new(3).range_inclusive(0, u64::MAX))
        .collect();
    assert!(
        full_range.windows(2).all(|w| w[0] == w[1]),
        "same seed, same draw"
    );
}
