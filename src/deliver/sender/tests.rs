//! The sender against the real simulator over 127.0.0.1, plain (h2c) and TLS (h2).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::*;
use crate::sim::{FailRule, FaultConfig, LatencyMs, SimArgs, SimHandle, Simulator};

const PIXEL: PixelId = 1_234_567_890;
const TOKEN: &str = "EAAB/test+token&x=1";
const HASH: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn body(event_times: &[u64]) -> Vec<u8> {
    let data: Vec<_> = event_times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "event_name": "Purchase",
                "event_time": t,
                "event_id": format!("e{i}"),
                "action_source": "website",
                "event_source_url": "https://shop.example/",
                "user_data": {"em": [HASH], "client_user_agent": "UA"},
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "data": data })).unwrap()
}

fn start(args: SimArgs) -> SimHandle {
    Simulator::start(SimArgs {
        listen: "127.0.0.1:0".into(),
        ..args
    })
    .unwrap()
}

fn sender(url: String, timeout_ms: u64, concurrency: usize, root: Option<PathBuf>) -> Sender {
    Sender::new(SenderConfig {
        graph_url: url,
        api_version: "v26.0".into(),
        timeout: Duration::from_millis(timeout_ms),
        concurrency,
        extra_root_pem: root,
    })
    .unwrap()
}

fn faults(rule: &str) -> FaultConfig {
    FaultConfig {
        fail: vec![rule.parse::<FailRule>().unwrap()],
        ..FaultConfig::default()
    }
}

fn retry_slow_down(outcome: &Outcome) -> Option<bool> {
    match outcome {
        Outcome::Retry { slow_down, .. } => Some(*slow_down),
        _ => None,
    }
}

#[tokio::test]
async fn each_answer_class_over_h2c() {
    let sim = start(SimArgs::default());
    let s = sender(sim.url(), 5000, 4, None);
    let t = now();

    let out = s.send(PIXEL, TOKEN, body(&[t - 10, t - 20])).await;
    assert_eq!(
        out,
        Outcome::Delivered {
            events_received: Some(2)
        }
    );
    assert_eq!(sim.stats().events_received, 2);

    sim.set_faults(faults("190=1")).unwrap();
    let out = s.send(PIXEL, TOKEN, body(&[t])).await;
    assert!(
        matches!(&out, Outcome::Breaker(e) if e.code == 190),
        "{out:?}"
    );

    sim.set_faults(faults("17=1")).unwrap();
    let out = s.send(PIXEL, TOKEN, body(&[t])).await;
    assert_eq!(retry_slow_down(&out), Some(true), "{out:?}");

    sim.set_faults(faults("2=1")).unwrap();
    let out = s.send(PIXEL, TOKEN, body(&[t])).await;
    assert_eq!(retry_slow_down(&out), Some(false), "{out:?}");

    sim.set_faults(FaultConfig::default()).unwrap();
    let out = s.send(PIXEL, TOKEN, body(&[t, t - 8 * 86_400])).await;
    assert!(
        matches!(&out, Outcome::Bisect(e) if e.code == 100),
        "{out:?}"
    );

    // After all that, the one connection still carries good batches.
    let out = s.send(PIXEL, TOKEN, body(&[t])).await;
    assert_eq!(
        out,
        Outcome::Delivered {
            events_received: Some(1)
        }
    );
    sim.shutdown();
}

#[tokio::test]
async fn the_token_is_url_encoded_and_checked() {
    let sim = start(SimArgs {
        tokens: vec![format!("{PIXEL}={TOKEN}").parse().unwrap()],
        ..SimArgs::default()
    });
    let s = sender(sim.url(), 5000, 4, None);
    let out = s.send(PIXEL, TOKEN, body(&[now()])).await;
    assert_eq!(
        out,
        Outcome::Delivered {
            events_received: Some(1)
        }
    );
    let out = s.send(PIXEL, "wrong", body(&[now()])).await;
    assert!(
        matches!(&out, Outcome::Breaker(e) if e.code == 190),
        "{out:?}"
    );
    assert!(!format!("{s:?}").contains("wrong"));
    sim.shutdown();
}

#[tokio::test]
async fn slow_answers_time_out_and_a_stopped_upstream_is_a_connect_error() {
    // The answer takes 2 s, the timeout is 100 ms: the wide gap keeps the bound below
    // meaningful on a loaded machine.
    let sim = start(SimArgs {
        latency_ms: Some(LatencyMs {
            min: 2000,
            max: 2000,
        }),
        ..SimArgs::default()
    });
    let s = sender(sim.url(), 100, 4, None);
    let started = Instant::now();
    let out = s.send(PIXEL, TOKEN, body(&[now()])).await;
    assert_eq!(out, Outcome::from_transport(TransportError::Timeout));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let url = sim.url();
    sim.shutdown();
    let s = sender(url, 1000, 4, None);
    let out = s.send(PIXEL, TOKEN, body(&[now()])).await;
    assert_eq!(out, Outcome::from_transport(TransportError::Connect));
}

#[tokio::test]
async fn a_dropped_connection_is_closed_and_the_next_send_reconnects() {
    let sim = start(SimArgs::default());
    let s = sender(sim.url(), 5000, 4, None);
    sim.set_faults(FaultConfig {
        drop_rate: 1.0,
        ..FaultConfig::default()
    })
    .unwrap();
    let out = s.send(PIXEL, TOKEN, body(&[now()])).await;
    assert_eq!(out, Outcome::from_transport(TransportError::Closed));
    sim.set_faults(FaultConfig::default()).unwrap();
    let out = s.send(PIXEL, TOKEN, body(&[now()])).await;
    assert_eq!(
        out,
        Outcome::Delivered {
            events_received: Some(1)
        }
    );
    assert_eq!(sim.stats().dropped_connections, 1);
    sim.shutdown();
}

#[tokio::test]
async fn a_pixel_never_has_more_than_its_limit_in_flight() {
    let sim = start(SimArgs {
        latency_ms: Some(LatencyMs { min: 500, max: 500 }),
        ..SimArgs::default()
    });
    let s = Arc::new(sender(sim.url(), 10_000, 2, None));
    let started = Instant::now();
    let sends: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let out = s.send(PIXEL, TOKEN, body(&[now()])).await;
                (out, Instant::now())
            })
        })
        .collect();
    // Another pixel is not held up by the first one's full slots.
    let other = s.send(PIXEL + 1, TOKEN, body(&[now()])).await;
    let other_done = Instant::now();
    let mut last_done = started;
    for send in sends {
        let (out, done) = send.await.unwrap();
        assert!(matches!(out, Outcome::Delivered { .. }));
        last_done = last_done.max(done);
    }
    assert!(matches!(other, Outcome::Delivered { .. }));
    // Two at once, then the third: two latencies, not one (a lower bound, safe under load).
    let took = last_done - started;
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    // The other pixel finished before the held-back third send: an order, not a time.
    assert!(
        other_done < last_done,
        "the other pixel waited for this pixel's slots"
    );
    assert_eq!(s.limits().available(PIXEL), 2);
    sim.shutdown();
}

#[tokio::test]
async fn pixel_limits_hand_out_at_most_n_permits() {
    let limits = PixelLimits::new(2);
    let a = limits.acquire(7).await;
    let _b = limits.acquire(7).await;
    assert_eq!(limits.available(7), 0);
    assert_eq!(limits.available(8), 2);
    let waiting = tokio::time::timeout(Duration::from_millis(50), limits.acquire(7)).await;
    assert!(waiting.is_err(), "a third permit was handed out");
    drop(a);
    let _c = tokio::time::timeout(Duration::from_millis(50), limits.acquire(7))
        .await
        .unwrap();
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A self-signed certificate for 127.0.0.1, its key and the CA PEM the sender trusts.
fn tls_files() -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "capig-sender-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (dir, cert, key)
}

#[tokio::test]
async fn tls_with_alpn_h2_and_an_extra_root() {
    let (dir, cert, key) = tls_files();
    let sim = start(SimArgs {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..SimArgs::default()
    });
    assert!(sim.url().starts_with("https://"));
    // The sender refuses a connection that did not negotiate h2, so Delivered means h2.
    let s = sender(sim.url(), 5000, 4, Some(cert.clone()));
    let out = s.send(PIXEL, TOKEN, body(&[now()])).await;
    assert_eq!(
        out,
        Outcome::Delivered {
            events_received: Some(1)
        }
    );

    // Without the extra root the certificate is not trusted.
    let untrusting = sender(sim.url(), 5000, 4, None);
    let out = untrusting.send(PIXEL, TOKEN, body(&[now()])).await;
    assert_eq!(out, Outcome::from_transport(TransportError::Connect));
    sim.shutdown();

    let err = Sender::new(SenderConfig {
        extra_root_pem: Some(dir.join("missing.pem")),
        ..SenderConfig::from(&Upstream::default())
    })
    .unwrap_err();
    assert!(matches!(err, SenderError::RootFile { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_from_upstream_and_bad_urls() {
    let cfg = SenderConfig::from(&Upstream::default());
    assert_eq!(cfg.timeout, Duration::from_millis(1500));
    assert_eq!(cfg.graph_url, "https://graph.facebook.com");
    assert!(Sender::new(cfg.clone()).is_ok());
    let bad = |url: &str| {
        Sender::new(SenderConfig {
            graph_url: url.into(),
            ..cfg.clone()
        })
        .unwrap_err()
    };
    assert!(matches!(bad("ftp://x"), SenderError::Scheme(_)));
    assert!(matches!(bad("not a url"), SenderError::BadUrl(_)));
}
