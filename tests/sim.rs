//! The CAPI simulator over real sockets on 127.0.0.1: HTTP/1.1, h2c, TLS with ALPN,
//! fault injection (flags and runtime), the control endpoints, and the `capig sim`
//! binary as a child process. Every test is bounded by [`TIMEOUT`].

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capig::sim::{FaultConfig, SimArgs, SimError, SimHandle, Simulator};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(30);
const HASH: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn event(name: &str) -> Value {
    json!({
        "event_name": name,
        "event_time": now() - 30,
        "event_id": format!("{name}-1"),
        "action_source": "website",
        "event_source_url": "https://shop.example/",
        "user_data": {"em": [HASH], "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"},
        "custom_data": {"value": "12.50", "currency": "EUR"},
    })
}

fn capi_body(events: &[Value]) -> Vec<u8> {
    json!({"data": events, "access_token": "token"})
        .to_string()
        .into_bytes()
}

fn start(args: SimArgs) -> SimHandle {
    Simulator::start(SimArgs {
        listen: "127.0.0.1:0".into(),
        seed: Some(1),
        ..args
    })
    .expect("simulator starts")
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("capig-sim-{}-{name}", std::process::id()))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    Http1,
    H2,
}

struct Answer {
    status: StatusCode,
    version: Version,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn error_code(&self) -> i64 {
        self.json()["error"]["code"]
            .as_i64()
            .expect("a Graph error")
    }
}

/// Sends one request over an established stream; `Err` when the server closed it.
async fn send_on<S>(
    stream: S,
    proto: Proto,
    request: Request<Full<Bytes>>,
) -> Result<Answer, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let response = match proto {
        Proto::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(connection);
            sender.send_request(request).await?
        }
        Proto::H2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(connection);
            sender.send_request(request).await?
        }
    };
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok(Answer {
        status,
        version,
        headers,
        body,
    })
}

fn build(
    addr: SocketAddr,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{target}"))
        .header("host", addr.to_string());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(Full::new(Bytes::from(body))).unwrap()
}

async fn try_send(
    addr: SocketAddr,
    proto: Proto,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, hyper::Error> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    send_on(
        stream,
        proto,
        build(addr, method, target, content_type, body),
    )
    .await
}

async fn send(
    addr: SocketAddr,
    proto: Proto,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    try_send(addr, proto, method, target, content_type, body)
        .await
        .expect("an answer")
}

async fn post_events(addr: SocketAddr, pixel: &str, events: &[Value]) -> Answer {
    send(
        addr,
        Proto::Http1,
        "POST",
        &format!("/v25.0/{pixel}/events"),
        Some("application/json"),
        capi_body(events),
    )
    .await
}

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(TIMEOUT, test)
        .await
        .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_accept_events() {
    bounded(async {
        let sim = start(SimArgs::default());
        for (proto, version) in [
            (Proto::Http1, Version::HTTP_11),
            (Proto::H2, Version::HTTP_2),
        ] {
            let answer = send(
                sim.addr(),
                proto,
                "POST",
                "/v25.0/123/events",
                Some("application/json"),
                capi_body(&[event("Purchase"), event("Lead")]),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{proto:?}");
            assert_eq!(answer.version, version);
            assert_eq!(answer.headers["content-type"], "application/json");
            let body = answer.json();
            assert_eq!(body["events_received"], 2);
            assert_eq!(body["messages"], json!([]));
            assert_eq!(body["fbtrace_id"].as_str().unwrap().len(), 11);
        }
        let stats = sim.stats();
        assert_eq!((stats.requests, stats.events_received), (2, 4));
        assert_eq!(stats.by_pixel["123"].events, 4);
        let events = sim.events(Some("123"));
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].event["event_name"], "Purchase");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_share_one_connection() {
    bounded(async {
        let sim = start(SimArgs::default());
        let stream = TcpStream::connect(sim.addr()).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let requests = (0..20).map(|i| {
            let mut sender = sender.clone();
            let request = build(
                sim.addr(),
                "POST",
                "/v25.0/77/events",
                Some("application/json"),
                capi_body(&[event(&format!("E{i}"))]),
            );
            async move { sender.send_request(request).await.unwrap().status() }
        });
        let statuses = futures_join_all(requests.collect()).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        assert_eq!(sim.stats().events_received, 20);
    })
    .await;
}

/// Runs futures concurrently on the runtime and collects their outputs in order.
async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiates_h2_with_alpn() {
    bounded(async {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_path = temp_path("tls-cert.pem");
        let key_path = temp_path("tls-key.pem");
        std::fs::write(&cert_path, certified.cert.pem()).unwrap();
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
        let sim = start(SimArgs {
            tls_cert: Some(cert_path.clone()),
            tls_key: Some(key_path.clone()),
            ..SimArgs::default()
        });
        assert!(sim.url().starts_with("https://127.0.0.1:"), "{}", sim.url());

        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        for (alpn, proto, version) in [
            (
                vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                Proto::H2,
                Version::HTTP_2,
            ),
            (vec![b"http/1.1".to_vec()], Proto::Http1, Version::HTTP_11),
        ] {
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
            config.alpn_protocols = alpn.clone();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(sim.addr()).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await.expect("TLS handshake");
            assert_eq!(
                tls.get_ref().1.alpn_protocol(),
                alpn.first().map(Vec::as_slice),
                "ALPN"
            );
            let request = Request::builder()
                .method("POST")
                .uri(format!(
                    "https://localhost:{}/v25.0/5/events",
                    sim.addr().port()
                ))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(capi_body(&[event("Purchase")]))))
                .unwrap();
            let answer = send_on(tls, proto, request).await.unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.version, version);
        }
        assert_eq!(sim.stats().events_received, 2);
        let _ = std::fs::remove_file(cert_path);
        let _ = std::fs::remove_file(key_path);
    })
    .await;
}

#[test]
fn start_reports_what_to_fix() {
    let first = start(SimArgs::default());
    let cases: Vec<(SimArgs, &str)> = vec![
        (
            SimArgs {
                listen: first.addr().to_string(),
                ..SimArgs::default()
            },
            "pass --listen with another address or port",
        ),
        (
            SimArgs {
                listen: "not an address".into(),
                ..SimArgs::default()
            },
            "pass an IP:PORT",
        ),
        (
            SimArgs {
                listen: "127.0.0.1:0".into(),
                tls_cert: Some(temp_path("missing.pem")),
                tls_key: Some(temp_path("missing.key")),
                ..SimArgs::default()
            },
            "pass a readable PEM file",
        ),
        (
            SimArgs {
                listen: "127.0.0.1:0".into(),
                tls_cert: Some(temp_path("missing.pem")),
                ..SimArgs::default()
            },
            "pass both or neither",
        ),
        (
            SimArgs {
                listen: "127.0.0.1:0".into(),
                record: Some(PathBuf::from("/nonexistent-dir/x.jsonl")),
                ..SimArgs::default()
            },
            "pass a writable path",
        ),
        (
            SimArgs {
                listen: "127.0.0.1:0".into(),
                throttle_window_ms: Some(5),
                ..SimArgs::default()
            },
            "needs throttle_after",
        ),
    ];
    for (args, says) in cases {
        let error: SimError = Simulator::start(args).err().expect("start fails");
        assert!(
            error.to_string().contains(says),
            "{error} should say {says:?}"
        );
    }
}

/// Rule, HTTP status, Graph code, subcode, is_transient.
type InjectedCase = (&'static str, u16, Option<i64>, Option<i64>, bool);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_codes_have_graph_envelopes() {
    bounded(async {
        let sim = start(SimArgs::default());
        let cases: &[InjectedCase] = &[
            ("1=1", 500, Some(1), Some(99), true),
            ("2=1", 503, Some(2), None, true),
            ("4=1", 400, Some(4), None, true),
            ("17=1", 400, Some(17), Some(2_446_079), true),
            ("100=1", 400, Some(100), None, false),
            ("190=1", 400, Some(190), None, false),
            ("341=1", 400, Some(341), None, true),
            ("613=1", 400, Some(613), Some(1_487_742), true),
            ("502=1", 502, None, None, false),
        ];
        for (rule, status, code, subcode, transient) in cases {
            sim.set_faults(FaultConfig {
                fail: vec![rule.parse().unwrap()],
                ..FaultConfig::default()
            })
            .unwrap();
            let answer = post_events(sim.addr(), "1", &[event("Purchase")]).await;
            assert_eq!(answer.status.as_u16(), *status, "{rule}");
            match code {
                Some(code) => {
                    let error = &answer.json()["error"];
                    assert_eq!(error["code"].as_i64(), Some(*code), "{rule}");
                    assert_eq!(error["error_subcode"].as_i64(), *subcode, "{rule}");
                    assert_eq!(error["is_transient"], json!(transient), "{rule}");
                    assert_eq!(error["type"], "OAuthException", "{rule}");
                    assert_eq!(
                        error["fbtrace_id"].as_str().map(str::len),
                        Some(11),
                        "{rule}"
                    );
                }
                None => assert!(answer.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")),
            }
        }
        let stats = sim.stats();
        assert_eq!(stats.faults_injected, cases.len() as u64);
        assert_eq!(stats.events_received, 0);
        assert_eq!(stats.by_error_code["http_502"], 1);
        assert_eq!(stats.by_error_code["17"], 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_pixel_faults_leave_other_pixels_alone() {
    bounded(async {
        let sim = start(SimArgs {
            fail: vec!["190=1.0@111".parse().unwrap()],
            ..SimArgs::default()
        });
        for round in 0..3 {
            assert_eq!(
                post_events(sim.addr(), "111", &[event("A")])
                    .await
                    .error_code(),
                190,
                "round {round}"
            );
            assert_eq!(
                post_events(sim.addr(), "222", &[event("A")]).await.status,
                StatusCode::OK,
                "round {round}"
            );
        }
        let stats = sim.stats();
        assert_eq!(stats.by_pixel["111"].requests_rejected, 3);
        assert_eq!(stats.by_pixel["222"].events, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_outage_through_the_control_endpoint() {
    bounded(async {
        let sim = start(SimArgs::default());
        let addr = sim.addr();
        let put = |body: Value| {
            send(
                addr,
                Proto::Http1,
                "PUT",
                "/__sim/faults",
                Some("application/json"),
                body.to_string().into_bytes(),
            )
        };

        assert_eq!(
            post_events(addr, "1", &[event("A")]).await.status,
            StatusCode::OK
        );
        let answer = put(json!({"fail": ["2=1"]})).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["fail"], json!(["2=1"]));
        let during = post_events(addr, "1", &[event("A")]).await;
        assert_eq!((during.status.as_u16(), during.error_code()), (503, 2));

        let got = send(addr, Proto::H2, "GET", "/__sim/faults", None, Vec::new()).await;
        assert_eq!(got.json()["fail"], json!(["2=1"]));
        assert_eq!(
            put(json!({"fail": ["99=1"]})).await.status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(put(json!({})).await.status, StatusCode::OK);
        assert_eq!(
            post_events(addr, "1", &[event("A")]).await.status,
            StatusCode::OK
        );

        // The token of one pixel breaks while the others keep going.
        put(json!({"fail": ["190=1@9"]})).await;
        assert_eq!(
            post_events(addr, "9", &[event("A")]).await.error_code(),
            190
        );
        assert_eq!(
            post_events(addr, "1", &[event("A")]).await.status,
            StatusCode::OK
        );
        assert_eq!(sim.faults().fail.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_get_no_answer() {
    bounded(async {
        let sim = start(SimArgs {
            drop_rate: 1.0,
            ..SimArgs::default()
        });
        for proto in [Proto::Http1, Proto::H2] {
            let result = try_send(
                sim.addr(),
                proto,
                "POST",
                "/v25.0/1/events",
                Some("application/json"),
                capi_body(&[event("A")]),
            )
            .await;
            assert!(
                result.is_err(),
                "{proto:?}: the connection closes without an answer"
            );
        }
        // Control endpoints are never faulted.
        let stats = send(
            sim.addr(),
            Proto::Http1,
            "GET",
            "/__sim/stats",
            None,
            Vec::new(),
        )
        .await
        .json();
        assert_eq!(stats["dropped_connections"], 2);
        assert_eq!(stats["events_received"], 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_throttling() {
    bounded(async {
        let sim = start(SimArgs {
            latency_ms: Some("150".parse().unwrap()),
            throttle_after: Some(2),
            ..SimArgs::default()
        });
        let started = Instant::now();
        assert_eq!(
            post_events(sim.addr(), "1", &[event("A")]).await.status,
            StatusCode::OK
        );
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            post_events(sim.addr(), "1", &[event("A")]).await.status,
            StatusCode::OK
        );
        let throttled = post_events(sim.addr(), "1", &[event("A")]).await;
        let error = &throttled.json()["error"];
        assert_eq!(
            (error["code"].as_i64(), error["error_subcode"].as_i64()),
            (Some(17), Some(2_446_079))
        );
        assert_eq!(error["message"], "(#17) User request limit reached");
        assert_eq!(
            post_events(sim.addr(), "2", &[event("A")]).await.status,
            StatusCode::OK,
            "other pixels keep their own count"
        );
    })
    .await;
}

/// Name, method, target, content type, body, HTTP status, Graph code.
type WireCase = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    Option<i64>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_over_the_wire() {
    bounded(async {
        let sim = start(SimArgs { max_body_bytes: 64 * 1024, tokens: vec!["1=good".parse().unwrap()], ..SimArgs::default() });
        let addr = sim.addr();
        let mut stale = event("Old");
        stale["event_time"] = json!(now() - 8 * 24 * 3600);
        let python_form = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", &json!([event("A").to_string()]).to_string())
            .finish()
            .into_bytes();
        let multipart = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\ngood\r\n--XyZ--\r\n",
            json!([event("A"), event("B")])
        )
        .into_bytes();
        let json_with = |events: &[Value], token: &str| json!({"data": events, "access_token": token}).to_string().into_bytes();
        let cases: Vec<WireCase> = vec![
            ("JSON", "POST", "/v25.0/1/events", Some("application/json"), json_with(&[event("A")], "good"), 200, None),
            ("Python SDK form", "POST", "/v25.0/1/events?access_token=good", Some("application/x-www-form-urlencoded"), python_form, 200, None),
            ("multipart", "POST", "/v25.0/1/events", Some("multipart/form-data; boundary=XyZ"), multipart, 200, None),
            ("wrong token", "POST", "/v25.0/1/events", Some("application/json"), json_with(&[event("A")], "bad"), 400, Some(190)),
            ("no token", "POST", "/v25.0/1/events", Some("application/json"), json!({"data": [event("A")]}).to_string().into_bytes(), 400, Some(104)),
            ("other pixel", "POST", "/v25.0/2/events", Some("application/json"), json_with(&[event("A")], "good"), 400, Some(100)),
            ("stale event", "POST", "/v25.0/1/events", Some("application/json"), json_with(&[event("A"), stale], "good"), 400, Some(100)),
            ("malformed JSON", "POST", "/v25.0/1/events", Some("application/json"), b"{\"data\":[".to_vec(), 400, Some(100)),
            ("too large", "POST", "/v25.0/1/events", Some("application/json"), vec![b' '; 65 * 1024], 413, Some(100)),
            ("unknown path", "POST", "/v25.0/1/nothing", None, Vec::new(), 404, Some(2500)),
            ("wrong method", "GET", "/v25.0/1/events", None, Vec::new(), 405, Some(100)),
        ];
        for (name, method, target, content_type, body, status, code) in cases {
            for proto in [Proto::Http1, Proto::H2] {
                let answer = send(addr, proto, method, target, content_type, body.clone()).await;
                assert_eq!(answer.status.as_u16(), status, "{name} over {proto:?}: {}", String::from_utf8_lossy(&answer.body));
                if let Some(code) = code {
                    assert_eq!(answer.error_code(), code, "{name}");
                }
            }
        }
        let stale_answer = send(addr, Proto::Http1, "POST", "/v25.0/1/events", Some("application/json"), json_with(&[event("A"), { let mut e = event("Old"); e["event_time"] = json!(now() - 8 * 24 * 3600); e }], "good")).await;
        let error = &stale_answer.json()["error"];
        assert_eq!(error["error_subcode"], 2_804_003);
        assert!(error["error_user_msg"].as_str().unwrap().contains("index 1"));
        let stats = sim.stats();
        assert_eq!(stats.events_received, 2 * (1 + 1 + 2), "nothing of a rejected request is kept");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_events_and_reset_endpoints() {
    bounded(async {
        let record = temp_path("record.jsonl");
        let _ = std::fs::remove_file(&record);
        let sim = start(SimArgs { record: Some(record.clone()), ..SimArgs::default() });
        let addr = sim.addr();
        let body = json!({"data": [event("A"), event("B")], "access_token": "t", "test_event_code": "TEST42"}).to_string().into_bytes();
        send(addr, Proto::Http1, "POST", "/v25.0/10/events", Some("application/json"), body).await;
        post_events(addr, "20", &[event("C")]).await;

        let get = |target: &'static str| send(addr, Proto::Http1, "GET", target, None, Vec::new());
        let stats = get("/__sim/stats").await.json();
        assert_eq!(stats["requests"], 2);
        assert_eq!(stats["events_received"], 3);
        assert_eq!(stats["by_pixel"]["10"]["events"], 2);
        assert_eq!(stats["by_error_code"], json!({}));

        let all = get("/__sim/events").await.json();
        assert_eq!(all.as_array().unwrap().len(), 3);
        assert_eq!(all[0]["test_event_code"], "TEST42");
        let first_seq = all[0]["seq"].as_u64().unwrap();
        let page = send(addr, Proto::Http1, "GET", &format!("/__sim/events?since={first_seq}&limit=1"), None, Vec::new()).await.json();
        assert_eq!(page.as_array().unwrap().len(), 1);
        assert_eq!(page[0]["event"]["event_name"], "B");
        let pixel = get("/__sim/events?pixel=20").await.json();
        assert_eq!(pixel[0]["event"]["event_name"], "C");

        let lines: Vec<Value> = std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["pixel_id"], "10");
        assert_eq!(lines[0]["test_event_code"], "TEST42");
        assert!(lines[2].get("test_event_code").is_none());
        assert!(lines[0]["received_at"].as_u64().unwrap() > 1_700_000_000_000);

        let reset = send(addr, Proto::Http1, "POST", "/__sim/reset", None, Vec::new()).await;
        assert_eq!(reset.json()["requests"], 0);
        assert_eq!(get("/__sim/events").await.json(), json!([]));
        assert_eq!(sim.stats().requests, 0);
        sim.shutdown();
        let _ = std::fs::remove_file(record);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_wire_leaves_the_server_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let sim = start(SimArgs::default());
        let inputs: [&[u8]; 5] = [
            b"GARBAGE\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00garbage",
            b"POST /v25.0/1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            b"POST /v25.0/1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"\x16\x03\x01\x00\x05hello",
        ];
        for input in inputs {
            let mut stream = TcpStream::connect(sim.addr()).await.unwrap();
            stream.write_all(input).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        }
        assert_eq!(
            post_events(sim.addr(), "1", &[event("A")]).await.status,
            StatusCode::OK
        );
        assert_eq!(sim.stats().events_received, 1);
    })
    .await;
}

#[test]
fn binary_runs_as_a_child_process() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capig"))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "3",
            "--fail",
            "190=1@999",
            "--keep",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("capig runs");
    let pid = child.id();
    // If anything below fails, the child must not outlive the test.
    struct Reaper(u32);
    impl Drop for Reaper {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let reaper = Reaper(pid);

    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let line = line_rx
        .recv_timeout(TIMEOUT)
        .expect("the first line comes in time");
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let addr: SocketAddr = url.parse().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bounded(async move {
        assert_eq!(
            post_events(addr, "1", &[event("A")]).await.status,
            StatusCode::OK
        );
        assert_eq!(
            post_events(addr, "999", &[event("A")]).await.error_code(),
            190
        );
        let stats = send(addr, Proto::H2, "GET", "/__sim/stats", None, Vec::new())
            .await
            .json();
        assert_eq!(stats["events_received"], 1);
        assert_eq!(stats["by_error_code"]["190"], 1);
    }));

    // Close the client's connections first, so shutdown has nothing to wait for.
    drop(runtime);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "capig sim did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    std::mem::forget(reaper);
}
