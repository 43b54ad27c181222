//! Shared fixtures for capig's benchmarks: realistic browser events, the "ordinary"
//! pipeline that capig is measured against in the same run, and the load generator
//! ([`load`], the `capig-load` binary).
//!
//! The ordinary pipeline is what a straightforward Rust service would do with the same
//! event: serde_json into owned structs (a `String` per field, `serde_json::Value` for the
//! free-form parts), normalize into new `String`s, SHA-256 with ring and hex through
//! `format!`, build an owned CAPI struct and serialize it with serde_json. It produces the
//! same CAPI event as capig for the fixture (checked by a test), so the ratio compares
//! equal work.

pub mod idle;
pub mod load;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A realistic browser event with advanced matching (≈ 600 bytes), as capig's web client
/// sends it: pixel, name, id, page URL with `fbclid`, referrer, custom data with contents,
/// raw email/phone/names/city/zip/country, and the `fbp` cookie.
pub fn sample_event(i: u64) -> String {
    format!(
        concat!(
            r#"{{"pixel_id":"1234567890123456","event_name":"Purchase","event_id":"ev-{i:08}-4f1c9a","#,
            r#""event_source_url":"https://www.shop.example/checkout/thank-you?order=A{i}&fbclid=IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQ","#,
            r#""referrer_url":"https://www.shop.example/checkout","#,
            r#""custom_data":{{"value":"142.52","currency":"usd","content_type":"product","content_ids":["SKU-1001","SKU-2002"],"#,
            r#""contents":[{{"id":"SKU-1001","quantity":1,"item_price":99.5}},{{"id":"SKU-2002","quantity":2,"item_price":21.51}}],"num_items":3}},"#,
            r#""user_data":{{"em":" John.Smith{i}@Example.com ","ph":"+1 (650) 555-{p:04}","fn":"John","ln":"Smith","#,
            r#""ct":"Menlo Park","zp":"94025-1234","country":"United States","fbp":"fb.1.1596403881668.1116446470"}}}}"#
        ),
        i = i,
        p = i % 10_000
    )
}

/// The request around the event, as the edge would see it.
pub const USER_AGENT: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
pub const CLIENT_IP: &str = "203.0.113.7";

// --- The ordinary pipeline -----------------------------------------------------------

#[derive(Deserialize)]
struct OwnedEvent {
    #[allow(dead_code)]
    pixel_id: String,
    event_name: String,
    event_id: Option<String>,
    event_time: Option<u64>,
    event_source_url: String,
    referrer_url: Option<String>,
    #[serde(default)]
    custom_data: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    user_data: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct CapiEvent {
    event_name: String,
    event_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    action_source: &'static str,
    event_source_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer_url: Option<String>,
    user_data: BTreeMap<String, String>,
    custom_data: serde_json::Map<String, serde_json::Value>,
}

fn sha256_hex(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn letters(s: &str) -> String {
    s.trim().to_lowercase().chars().filter(|c| c.is_alphabetic()).collect()
}

/// The ordinary pipeline for one event: owned parse, normalize, hash, owned serialize.
pub fn ordinary_transform(body: &[u8], now_secs: u64, out: &mut Vec<u8>) -> Result<(), String> {
    let e: OwnedEvent = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut user_data = BTreeMap::new();
    for (k, v) in &e.user_data {
        let hashed = match k.as_str() {
            "em" => sha256_hex(&v.trim().to_lowercase()),
            "ph" => {
                let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                sha256_hex(digits.trim_start_matches('0'))
            }
            "fn" | "ln" | "ct" => sha256_hex(&letters(v)),
            "zp" => {
                let z: String = v.trim().to_lowercase().chars().filter(|c| !c.is_whitespace()).collect();
                sha256_hex(z.split('-').next().unwrap_or(""))
            }
            "country" => sha256_hex(if v.eq_ignore_ascii_case("united states") { "us" } else { v }),
            _ => v.clone(),
        };
        user_data.insert(k.clone(), hashed);
    }
    user_data.insert("client_ip_address".into(), CLIENT_IP.to_string());
    user_data.insert("client_user_agent".into(), USER_AGENT.to_string());
    if let Some(fbclid) = e.event_source_url.split("fbclid=").nth(1) {
        user_data.insert("fbc".into(), format!("fb.1.{}.{}", now_secs * 1000, fbclid));
    }
    let mut custom_data = e.custom_data;
    if let Some(serde_json::Value::String(v)) = custom_data.get("value") {
        let n: f64 = v.parse().map_err(|_| "bad value".to_string())?;
        custom_data.insert("value".into(), serde_json::json!(n));
    }
    if let Some(serde_json::Value::String(c)) = custom_data.get("currency") {
        let upper = c.to_uppercase();
        custom_data.insert("currency".into(), serde_json::Value::String(upper));
    }
    let capi = CapiEvent {
        event_name: e.event_name,
        event_time: e.event_time.unwrap_or(now_secs),
        event_id: e.event_id,
        action_source: "website",
        event_source_url: e.event_source_url,
        referrer_url: e.referrer_url,
        user_data,
        custom_data,
    };
    serde_json::to_writer(out, &capi).map_err(|e| e.to_string())
}

/// The events both pipelines are measured on: `n` distinct samples, so dedup sees new
/// ids and the caches see realistic variety.
pub fn sample_events(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| sample_event(i).into_bytes()).collect()
}

/// The clock both pipelines run at.
pub const NOW_MS: u64 = 1_700_000_000_000;

/// capig's in-process pipeline, as the cores run it: the body copied into the
/// connection's buffer, parsed in place, transformed and written into a batch buffer
/// (cleared when it would close). One event per call; shared by the criterion bench and
/// the callgrind counter so that both measure the same code.
pub struct CapigPipeline {
    transformer: capig::event::Transformer,
    parser: capig::event::Parser,
    out: Vec<u8>,
    scratch: Vec<u8>,
}

impl Default for CapigPipeline {
    fn default() -> Self {
        use capig::event::policy::{DedupConfig, Policies};
        // A window of 0 keeps the dedup bookkeeping in the measurement without refusing
        // a fixture's repeating ids.
        let dedup = DedupConfig { window_secs: 0, capacity: 100_000 };
        CapigPipeline {
            transformer: capig::event::Transformer::new(Policies::allow_all(dedup)),
            parser: capig::event::Parser::default(),
            out: Vec::with_capacity(64 * 1024),
            scratch: Vec::with_capacity(1024),
        }
    }
}

impl CapigPipeline {
    pub fn event(&mut self, body: &[u8]) -> bool {
        let ctx = capig::event::Context {
            now_ms: NOW_MS,
            client_ip: Some(CLIENT_IP),
            user_agent: Some(USER_AGENT),
            ..capig::event::Context::default()
        };
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        if self.out.len() > 60 * 1024 {
            self.out.clear();
        }
        let (t, out) = (&mut self.transformer, &mut self.out);
        matches!(self.parser.parse(&mut self.scratch, |v| t.transform(v, &ctx, out).is_ok()), Ok(true))
    }
}

/// The ordinary pipeline ([`ordinary_transform`]) with the same batch-buffer handling as
/// [`CapigPipeline`].
pub struct OrdinaryPipeline {
    out: Vec<u8>,
}

impl Default for OrdinaryPipeline {
    fn default() -> Self {
        OrdinaryPipeline { out: Vec::with_capacity(64 * 1024) }
    }
}

impl OrdinaryPipeline {
    pub fn event(&mut self, body: &[u8]) -> bool {
        if self.out.len() > 60 * 1024 {
            self.out.clear();
        }
        ordinary_transform(body, NOW_MS / 1000, &mut self.out).is_ok()
    }
}

/// The ordinary way to hash one field: new normalized `String`, digest, `format!` hex.
pub fn ordinary_hash_email(raw: &str) -> String {
    sha256_hex(&raw.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use capig::event::policy::{DedupConfig, Policies};
    use capig::event::{Context, Parser, Transformer};

    /// Both pipelines must produce the same CAPI event, or the ratio compares unequal work.
    #[test]
    fn both_pipelines_agree_on_the_fixture() {
        let now_ms = 1_700_000_000_000;
        let body = sample_event(7);
        let mut ordinary = Vec::new();
        ordinary_transform(body.as_bytes(), now_ms / 1000, &mut ordinary).unwrap();

        let mut t = Transformer::new(Policies::allow_all(DedupConfig::default()));
        let ctx = Context { now_ms, client_ip: Some(CLIENT_IP), user_agent: Some(USER_AGENT), ..Context::default() };
        let mut buf = body.into_bytes();
        let mut ours = Vec::new();
        Parser::default().parse(&mut buf, |v| t.transform(v, &ctx, &mut ours)).unwrap().unwrap();

        let a: serde_json::Value = serde_json::from_slice(&ordinary).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        for key in ["event_name", "event_time", "event_id", "event_source_url", "referrer_url", "user_data"] {
            assert_eq!(a[key], b[key], "{key}");
        }
        assert_eq!(a["custom_data"]["value"], b["custom_data"]["value"]);
        assert_eq!(a["custom_data"]["currency"], b["custom_data"]["currency"]);
        assert_eq!(a["custom_data"]["contents"], b["custom_data"]["contents"]);
        assert!((500..=800).contains(&sample_event(7).len()), "{}", sample_event(7).len());
    }
}
