//! What `capig serve` tells a sender, through real sockets and the real spool: a
//! refused event leaves no trace (its resend is stored, not called a duplicate), a
//! request with no event taken is a 400, a partly taken one a 202, an event no resend
//! could store a 413, and an over-long body gets its 413 read by a client still sending.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn post_browser(gw: &Gateway, body: &str) -> Answer {
    let headers = [("Origin", GW_ORIGIN), ("User-Agent", "Mozilla/5.0 (answers test)"), ("Content-Type", "text/plain")];
    http(gw.http, "POST", "/capig/events", &headers, body.as_bytes())
}

fn post_server(gw: &Gateway, events: &[String]) -> Answer {
    let body = format!("{{\"data\":[{}],\"accessKey\":\"{GW_KEY}\"}}", events.join(","));
    http(gw.http, "POST", &format!("/capi/{GW_PIXEL}/events"), &[("Content-Type", "application/json")], body.as_bytes())
}

fn ws_connect(gw: &Gateway) -> tungstenite::WebSocket<TcpStream> {
    let url = format!("ws://{}/capig/ws", gw.http);
    let mut req = ws_request(&url, "Mozilla/5.0 (answers test)");
    req.headers_mut().insert("Host", GW_HOST.parse().unwrap());
    let stream = TcpStream::connect(gw.http).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tungstenite::client(req, stream).unwrap().0
}

fn ws_ask(ws: &mut tungstenite::WebSocket<TcpStream>, message: String) -> Value {
    ws.send(tungstenite::Message::text(message)).unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

fn stored(v: &Value) -> Vec<String> {
    v["stored"].as_array().map_or_else(Vec::new, |a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
}

/// A browser event padded with a custom property, about 8 KB as a CAPI event.
fn bulky_event(id: &str) -> String {
    let mut v: Value = serde_json::from_str(&browser_event(id)).unwrap();
    v["custom_data"]["note"] = "n".repeat(8000).into();
    v.to_string()
}

fn meta_down(sim: &capig::sim::SimHandle) {
    sim.set_faults(faults(&["503=1"])).unwrap();
}

fn meta_back_and_ready(sim: &capig::sim::SimHandle, gw: &Gateway) {
    sim.set_faults(capig::sim::FaultConfig::default()).unwrap();
    wait_for(Duration::from_secs(30), "/readyz to say ready again", || http(gw.http, "GET", "/readyz", &[], b"").0 == 200);
}

/// The spool fills while Meta is down; the message whose events the spool refused is
/// sent again once Meta is back, on the same WebSocket, and over HTTP: stored both
/// times (before, the refused events stayed in the dedup window and the resend was
/// answered `duplicate`: lost). Every stored event reaches Meta exactly once.
#[test]
fn a_refused_event_is_stored_when_sent_again() {
    let dir = TempDir::new("answers-retry");
    let sim = sim();
    let config = gateway_config(&dir, &sim.url(), false, "");
    // One core: a resend on another connection lands on the core that refused it.
    let gw = Gateway::start(&config, &["--set", "runtime.cores=1", "--set", "spool.max_bytes=1048576"]);
    let mut all_stored = Vec::new();

    // Over a WebSocket: messages of 20 bulky events until one is refused.
    meta_down(&sim);
    let mut ws = ws_connect(&gw);
    let mut refused = None;
    for m in 0..200 {
        let ids: Vec<String> = (0..20).map(|i| format!("ws{m}-{i}")).collect();
        let message = format!("[{}]", ids.iter().map(|id| bulky_event(id)).collect::<Vec<_>>().join(","));
        let answer = ws_ask(&mut ws, message.clone());
        if answer["refused"].is_string() {
            assert_eq!(answer["refused"], "spool_full", "{answer}");
            refused = Some((ids, message));
            break;
        }
        assert_eq!(stored(&answer).len(), 20, "{answer}");
        all_stored.extend(stored(&answer));
    }
    let (ids, message) = refused.expect("the 1 MiB spool fills");
    meta_back_and_ready(&sim, &gw);
    let answer = ws_ask(&mut ws, message);
    assert_eq!(stored(&answer), ids, "the resend is stored, not a duplicate: {answer}");
    all_stored.extend(ids);

    // Over HTTP, the same.
    meta_down(&sim);
    let mut refused = None;
    for m in 0..200 {
        let ids: Vec<String> = (0..20).map(|i| format!("http{m}-{i}")).collect();
        let body = format!("[{}]", ids.iter().map(|id| bulky_event(id)).collect::<Vec<_>>().join(","));
        let (status, headers, answer) = post_browser(&gw, &body);
        if status == 503 {
            assert!(headers.iter().any(|(k, _)| k == "retry-after"), "{headers:?}");
            assert!(answer.contains("spool is full"), "{answer}");
            refused = Some((ids, body));
            break;
        }
        assert_eq!(status, 200, "{answer}");
        all_stored.extend(stored(&serde_json::from_str(&answer).unwrap()));
    }
    let (ids, body) = refused.expect("the 1 MiB spool fills");
    meta_back_and_ready(&sim, &gw);
    let (status, _, answer) = post_browser(&gw, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored(&serde_json::from_str(&answer).unwrap()), ids, "{answer}");
    all_stored.extend(ids);

    let pixel: u64 = GW_PIXEL.parse().unwrap();
    assert_each_once(&sim, pixel, all_stored, Duration::from_secs(30));
    assert!(gw.stop().success());
}

/// All rejected → 400 with the reasons; some → 202; all taken → 200 (browser) or 202
/// (server API); a resend of events already taken is no rejection for the status.
#[test]
fn the_status_says_whether_events_were_taken() {
    let dir = TempDir::new("answers-status");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, ""), &["--set", "runtime.cores=1"]);

    // Browser route.
    let (status, _, body) = post_browser(&gw, &format!("[{},{}]", stale_browser_event("b-old1"), stale_browser_event("b-old2")));
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rejected"][0]["reason"], "event_too_old", "{body}");
    assert!(v["error"].as_str().unwrap().contains("no event was taken"), "{body}");
    let (status, _, body) = post_browser(&gw, &format!("[{},{}]", browser_event("b-ok"), stale_browser_event("b-old3")));
    assert_eq!(status, 202, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stored"], serde_json::json!(["b-ok"]));
    assert_eq!(v["rejected"][0]["event_id"], "b-old3");
    assert!(v.get("error").is_none(), "{body}");
    assert_eq!(post_browser(&gw, &browser_event("b-ok2")).0, 200);
    // The browser sends the same event again (its answer was lost): taken already.
    let (status, _, body) = post_browser(&gw, &browser_event("b-ok2"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["rejected"][0]["reason"], "duplicate");
    let (status, _, body) = post_browser(&gw, "[]");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("holds no events"), "{body}");

    // Server API: what Meta's PHP SDK sends; it takes any 202 for success.
    let now = unix_now();
    let (status, _, body) = post_server(&gw, &[capi_event("s-old", now - 30 * 86400)]);
    assert_eq!(status, 400, "a 30-day-old event is not reported as sent: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["events_received"], 0);
    assert_eq!(v["rejected"][0]["reason"], "event_too_old");
    let msg = v["rejected"][0]["message"].as_str().unwrap();
    assert!(msg.starts_with("event_time: is ") && msg.contains(" seconds past the oldest time Meta accepts"), "{msg}");
    let (status, _, body) = post_server(&gw, &[capi_event("s-ok", now), capi_event("s-old2", now - 30 * 86400)]);
    assert_eq!(status, 202, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["events_received"], 1);
    let (status, _, body) = post_server(&gw, &[capi_event("s-ok3", now)]);
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["events_received"].as_u64()), (202, Some(1)));

    // The JSON error is said once, in words.
    let (status, _, body) = post_browser(&gw, r#"{"event_name":"Purchase","value":NaN}"#);
    assert_eq!(status, 400);
    assert_eq!(body.matches("not valid JSON").count(), 1, "{body}");
    assert!(body.contains("NaN") && !body.contains("InternalError"), "{body}");

    let pixel: u64 = GW_PIXEL.parse().unwrap();
    wait_for(Duration::from_secs(10), "the taken events at the simulator", || sim_ids(&sim, pixel).len() >= 4);
    let mut got = sim_ids(&sim, pixel);
    got.sort();
    assert_eq!(got, ["b-ok", "b-ok2", "s-ok", "s-ok3"]);
    assert!(gw.stop().success());
}

/// An event larger than the spool can hold in one record: 413 with what to do, not a
/// 503 that the sender would retry forever; the other events of the same moment go on.
#[test]
fn an_event_no_resend_could_store_is_a_413() {
    let dir = TempDir::new("answers-too-large");
    let sim = sim();
    let config = gateway_config(&dir, &sim.url(), false, "[limits]\nbody_bytes = \"4 MiB\"\n");
    let gw = Gateway::start(&config, &["--set", "spool.max_bytes=1048576"]);
    let mut huge: Value = serde_json::from_str(&browser_event("huge")).unwrap();
    huge["custom_data"]["note"] = "n".repeat(1_200_000).into();
    let (status, headers, body) = post_browser(&gw, &huge.to_string());
    assert_eq!(status, 413, "{body}");
    assert!(!headers.iter().any(|(k, _)| k == "retry-after"), "{headers:?}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rejected"][0]["reason"], "event_too_large", "{body}");
    assert!(v["rejected"][0]["message"].as_str().unwrap().contains("send less custom data"), "{body}");
    // With a normal event in the same request: that one is stored (202).
    let (status, _, body) = post_browser(&gw, &format!("[{},{}]", browser_event("small"), huge));
    assert_eq!(status, 202, "{body}");
    assert_eq!(http(gw.http, "GET", "/readyz", &[], b"").0, 200);
    let pixel: u64 = GW_PIXEL.parse().unwrap();
    wait_for(Duration::from_secs(10), "the small event at the simulator", || sim_ids(&sim, pixel) == ["small"]);
    assert!(gw.stop().success());
}

/// A body over the limit, sent whole by a client that reads only afterwards (as curl
/// and the SDKs do): it reads the 413, not a connection reset.
#[test]
fn a_client_that_sends_a_whole_oversized_body_reads_its_413() {
    let dir = TempDir::new("answers-413");
    let sim = sim();
    let gw = Gateway::start(&gateway_config(&dir, &sim.url(), false, ""), &[]);
    let body = vec![b' '; (2 << 20) + (512 << 10)];
    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "POST /capi/{GW_PIXEL}/events HTTP/1.1\r\nHost: {GW_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        s.write_all(&body).unwrap();
        let (status, _, text) = read_response(&mut s).expect("an answer, not a reset");
        assert_eq!(status, 413, "{text}");
        assert!(text.contains("body"), "{text}");
        // And then the gateway closes.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    assert!(gw.stop().success());
}
