use serde_json::{json, Value};

use super::*;
use crate::event::json::Parser;
use crate::event::policy::{DedupConfig, PixelPolicy};

const NOW_MS: u64 = 1_700_000_000_000;
const NOW: u64 = NOW_MS / 1000;
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) capig-test";
const URL: &str = "https://shop.example/product/1";
/// SHA-256 of `john_smith@gmail.com` (Meta's official vector).
const EM_HASH: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
/// SHA-256 of `16505551212`.
const PH_HASH: &str = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";

fn ctx() -> Context<'static> {
    Context { now_ms: NOW_MS, client_ip: Some("203.0.113.7"), user_agent: Some(UA), ..Context::default() }
}

fn configured() -> Transformer {
    let pixels = [
        PixelPolicy { id: 111, enabled: true, domains: vec!["shop.example".into()], blocked_events: vec!["Lead".into()] },
        PixelPolicy { id: 222, enabled: false, domains: vec![], blocked_events: vec![] },
    ];
    Transformer::new(Policies::configured(pixels, DedupConfig::default()))
}

fn open() -> Transformer {
    Transformer::new(Policies::allow_all(DedupConfig::default()))
}

/// Runs one event through `t`; the output must be valid JSON, and on rejection the buffer
/// must be left as it was.
fn run(t: &mut Transformer, input: &str, ctx: &Context<'_>) -> Result<Value, Rejection> {
    let mut parser = Parser::default();
    let mut buf = input.as_bytes().to_vec();
    let mut out = b"PREFIX".to_vec();
    let result = parser.parse(&mut buf, |v| t.transform(v, ctx, &mut out)).expect("test input is JSON");
    match result {
        Ok(_) => {
            assert_eq!(&out[..6], b"PREFIX");
            Ok(serde_json::from_slice(&out[6..]).unwrap_or_else(|e| panic!("invalid JSON out ({e}): {}", String::from_utf8_lossy(&out))))
        }
        Err(r) => {
            assert_eq!(out, b"PREFIX", "a rejection must not leave output behind");
            Err(r)
        }
    }
}

/// Every key of `expected` must be in `got` with the same value (recursively for
/// objects); `null` in `expected` means "absent".
fn assert_subset(got: &Value, expected: &Value, path: &str) {
    match expected {
        Value::Object(map) => {
            for (k, want) in map {
                let here = format!("{path}.{k}");
                match (got.get(k), want) {
                    (None, Value::Null) => {}
                    (Some(g), Value::Null) => panic!("{here}: expected absent, got {g}"),
                    (None, _) => panic!("{here}: missing in {got}"),
                    (Some(g), w) => assert_subset(g, w, &here),
                }
            }
        }
        _ => assert_eq!(got, expected, "{path}"),
    }
}

enum Want {
    Out(Value),
    Rejected(Reason, &'static str),
}

fn check(t: &mut Transformer, input: Value, ctx: &Context<'_>, want: Want) {
    let text = input.to_string();
    match (run(t, &text, ctx), want) {
        (Ok(got), Want::Out(expected)) => assert_subset(&got, &expected, "$"),
        (Err(r), Want::Rejected(reason, field)) => {
            assert_eq!((r.reason, r.field), (reason, field), "{text}: {r}");
            assert!(!r.detail.is_empty());
        }
        (got, _) => panic!("{text}: unexpected {got:?}"),
    }
}

fn base_value() -> Value {
    base()
}

fn base() -> Value {
    json!({"pixel_id": "111", "event_name": "PageView", "event_id": "e1", "event_source_url": URL})
}

fn with(mut v: Value, patch: Value) -> Value {
    for (k, val) in patch.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

#[test]
fn minimal_page_view() {
    check(
        &mut configured(),
        base(),
        &ctx(),
        Want::Out(json!({
            "event_name": "PageView", "event_time": NOW, "event_id": "e1", "action_source": "website",
            "event_source_url": URL,
            "user_data": {"client_ip_address": "203.0.113.7", "client_user_agent": UA, "fbp": null, "fbc": null},
            "custom_data": null, "pixel_id": null,
        })),
    );
}

#[test]
fn user_data_is_normalized_and_hashed() {
    let cases = [
        (json!({"em": " John_Smith@gmail.com "}), json!({"em": EM_HASH})),
        (json!({"em": ["John_Smith@gmail.com", "not an email", ""]}), json!({"em": [EM_HASH]})),
        (json!({"em": ""}), json!({"em": null})),
        (json!({"em": ["", "  "]}), json!({"em": null})),
        (json!({"ph": "(650)555-1212"}), json!({"ph": PH_HASH})),
        (json!({"ph": 16505551212u64}), json!({"ph": PH_HASH})),
        (json!({"em": EM_HASH.to_uppercase()}), json!({"em": EM_HASH})),
        (json!({"em": format!("{EM_HASH}.AbCdEfGh")}), json!({"em": format!("{EM_HASH}.AbCdEfGh")})),
        (json!({"external_id": "User-42"}), json!({"external_id": crate::event::normalize::hash(UserField::ExternalId, "user-42", &mut String::new()).unwrap().unwrap().as_str()})),
        (json!({"lead_id": 123456, "subscription_id": "sub-1"}), json!({"lead_id": 123456, "subscription_id": "sub-1"})),
        (json!({"mystery": "x"}), json!({"mystery": null})),
    ];
    for (user_data, expected) in cases {
        check(&mut open(), with(base(), json!({"user_data": user_data})), &ctx(), Want::Out(json!({"user_data": expected})));
    }
}

#[test]
fn invalid_user_fields_are_dropped_and_counted() {
    let mut t = open();
    let event = with(base(), json!({"user_data": {"em": "nope", "fbp": "fb.1.x.y", "fbc": "garbage"}}));
    check(&mut t, event, &ctx(), Want::Out(json!({"user_data": {"em": null, "fbp": null, "fbc": null}})));
    assert_eq!(t.counters.dropped(Dropped::UserField(UserField::Em)), 1);
    assert_eq!(t.counters.dropped(Dropped::MalformedFbp), 1);
    assert_eq!(t.counters.dropped(Dropped::MalformedFbc), 1);
}

#[test]
fn client_ip_user_agent_and_cookies() {
    let fbp = "fb.1.1596403881668.1116446470";
    let fbc = "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1Iaw";
    // The edge's IP and UA win over the event's claims.
    let claims = json!({"user_data": {"client_ip_address": "198.51.100.1", "client_user_agent": "Evil/1.0"}});
    check(&mut open(), with(base(), claims.clone()), &ctx(), Want::Out(json!({"user_data": {"client_ip_address": "203.0.113.7", "client_user_agent": UA}})));
    // Without an edge view (a backend), the event's own values are used.
    let bare = Context { now_ms: NOW_MS, ..Context::default() };
    check(&mut open(), with(base(), claims), &bare, Want::Out(json!({"user_data": {"client_ip_address": "198.51.100.1", "client_user_agent": "Evil/1.0"}})));
    // An IPv6 client.
    let v6 = Context { client_ip: Some("2001:db8::7"), ..ctx() };
    check(&mut open(), base(), &v6, Want::Out(json!({"user_data": {"client_ip_address": "2001:db8::7"}})));
    // Cookies: the event's value if valid, else the request's.
    let cookies = Context { cookie_fbp: Some(fbp), cookie_fbc: Some(fbc), ..ctx() };
    check(&mut open(), base(), &cookies, Want::Out(json!({"user_data": {"fbp": fbp, "fbc": fbc}})));
    let event = with(base(), json!({"user_data": {"fbp": "fb.2.1596403881668.42", "fbc": "bad"}}));
    check(&mut open(), event, &cookies, Want::Out(json!({"user_data": {"fbp": "fb.2.1596403881668.42", "fbc": fbc}})));
}

#[test]
fn fbc_is_built_from_fbclid_and_never_altered() {
    let url = "https://shop.example/p?utm=x&fbclid=IwAR2F4-AbC_xyZ";
    let mut t = open();
    check(&mut t, with(base(), json!({"event_source_url": url})), &ctx(), Want::Out(json!({"user_data": {"fbc": format!("fb.1.{NOW_MS}.IwAR2F4-AbC_xyZ")}})));
    assert_eq!(t.counters.built_fbc, 1);
    // An fbc that came with the event is kept exactly, case and all.
    let given = "fb.1.1554763741205.OtherCLICK";
    let event = with(base(), json!({"event_source_url": url, "user_data": {"fbc": given}}));
    check(&mut open(), event, &ctx(), Want::Out(json!({"user_data": {"fbc": given}})));
}

#[test]
fn event_time_rules() {
    let cases = [
        (json!(NOW - 3600), Want::Out(json!({"event_time": NOW - 3600}))),
        (json!((NOW - 3600) * 1000), Want::Out(json!({"event_time": NOW - 3600}))),
        (json!(format!("{}", NOW - 5)), Want::Out(json!({"event_time": NOW - 5}))),
        (json!(NOW as f64 + 0.75), Want::Out(json!({"event_time": NOW}))),
        (json!(NOW - MAX_AGE_SECS), Want::Out(json!({"event_time": NOW - MAX_AGE_SECS}))),
        (json!(NOW - MAX_AGE_SECS - 1), Want::Rejected(Reason::EventTooOld, "event_time")),
        (json!(NOW + 60), Want::Out(json!({"event_time": NOW + 60}))),
        (json!(NOW + 61), Want::Rejected(Reason::EventInFuture, "event_time")),
        (json!("yesterday"), Want::Rejected(Reason::InvalidField, "event_time")),
        (json!(-5), Want::Rejected(Reason::InvalidField, "event_time")),
        (json!(true), Want::Rejected(Reason::InvalidField, "event_time")),
        (json!(1e300), Want::Rejected(Reason::EventInFuture, "event_time")),
    ];
    for (time, want) in cases {
        check(&mut open(), with(base(), json!({"event_time": time})), &ctx(), want);
    }
    // Store sales may be uploaded within 62 days.
    let store = |age: u64| json!({"pixel_id": "1", "event_name": "Purchase", "action_source": "physical_store", "event_time": NOW - age, "custom_data": {"value": 1, "currency": "USD"}});
    check(&mut open(), store(MAX_AGE_SECS + 3600), &ctx(), Want::Out(json!({"event_time": NOW - MAX_AGE_SECS - 3600})));
    check(&mut open(), store(MAX_AGE_PHYSICAL_STORE_SECS + 1), &ctx(), Want::Rejected(Reason::EventTooOld, "event_time"));
}

#[test]
fn required_fields_and_action_source() {
    let no_ua = Context { user_agent: None, ..ctx() };
    let cases = [
        (json!({"event_name": "PageView", "event_source_url": URL}), ctx(), Want::Rejected(Reason::MissingField, "pixel_id")),
        (json!({"pixel_id": "111", "event_source_url": URL}), ctx(), Want::Rejected(Reason::MissingField, "event_name")),
        (json!({"pixel_id": "111", "event_name": ""}), ctx(), Want::Rejected(Reason::InvalidField, "event_name")),
        (json!({"pixel_id": "111", "event_name": "PageView"}), ctx(), Want::Rejected(Reason::MissingField, "event_source_url")),
        (base(), no_ua, Want::Rejected(Reason::MissingField, "client_user_agent")),
        (with(base(), json!({"event_source_url": "javascript:alert(1)"})), ctx(), Want::Rejected(Reason::InvalidField, "event_source_url")),
        (with(base(), json!({"action_source": "carrier_pigeon"})), ctx(), Want::Rejected(Reason::InvalidField, "action_source")),
        (json!({"pixel_id": "111", "event_name": "Lead", "action_source": "phone_call"}), no_ua, Want::Out(json!({"action_source": "phone_call", "event_source_url": null}))),
        (with(base(), json!({"pixel_id": 111})), ctx(), Want::Out(json!({"event_name": "PageView"}))),
        (with(base(), json!({"pixel_id": "11x"})), ctx(), Want::Rejected(Reason::InvalidField, "pixel_id")),
        (with(base(), json!({"event_id": 12345})), ctx(), Want::Out(json!({"event_id": "12345"}))),
        (with(base(), json!({"event_id": ""})), ctx(), Want::Rejected(Reason::InvalidField, "event_id")),
        (with(base(), json!({"event_id": {"x": 1}})), ctx(), Want::Rejected(Reason::InvalidField, "event_id")),
        (with(base(), json!({"opt_out": true, "referrer_url": "https://google.com/"})), ctx(), Want::Out(json!({"opt_out": true, "referrer_url": "https://google.com/"}))),
        (with(base(), json!({"opt_out": "yes"})), ctx(), Want::Rejected(Reason::InvalidField, "opt_out")),
        (with(base(), json!({"event_name": "x".repeat(MAX_EVENT_NAME + 1)})), ctx(), Want::Rejected(Reason::FieldTooLong, "event_name")),
        (with(base(), json!({"event_name": "Page\u{0}View"})), ctx(), Want::Rejected(Reason::InvalidField, "event_name")),
        (json!([1, 2]), ctx(), Want::Rejected(Reason::NotAnObject, "")),
        (json!("PageView"), ctx(), Want::Rejected(Reason::NotAnObject, "")),
    ];
    for (event, ctx, want) in cases {
        check(&mut open(), event, &ctx, want);
    }
}

#[test]
fn server_api_pixel_comes_from_the_url() {
    let url_ctx = Context { pixel_id: Some(111), ..ctx() };
    let mut event = base();
    event.as_object_mut().unwrap().remove("pixel_id");
    check(&mut configured(), event, &url_ctx, Want::Out(json!({"event_name": "PageView"})));
    check(&mut configured(), with(base(), json!({"pixel_id": "999"})), &url_ctx, Want::Rejected(Reason::InvalidField, "pixel_id"));
}

#[test]
fn policy_rules() {
    let cases = [
        (with(base(), json!({"pixel_id": "333"})), Want::Rejected(Reason::UnknownPixel, "pixel_id")),
        (with(base(), json!({"pixel_id": "222"})), Want::Rejected(Reason::PixelDisabled, "pixel_id")),
        (with(base(), json!({"event_source_url": "https://evil.example/"})), Want::Rejected(Reason::DomainNotAllowed, "event_source_url")),
        (with(base(), json!({"event_source_url": "https://www.shop.example/x"})), Want::Out(json!({"event_name": "PageView"}))),
        (with(base(), json!({"event_name": "Lead"})), Want::Rejected(Reason::EventBlocked, "event_name")),
        (with(base(), json!({"consent": false})), Want::Rejected(Reason::ConsentRevoked, "consent")),
        (with(base(), json!({"consent": "revoked"})), Want::Rejected(Reason::ConsentRevoked, "consent")),
        (with(base(), json!({"consent": "granted"})), Want::Out(json!({"consent": null}))),
        (with(base(), json!({"consent": 3})), Want::Rejected(Reason::InvalidField, "consent")),
    ];
    for (event, want) in cases {
        check(&mut configured(), event, &ctx(), want);
    }
}

#[test]
fn duplicates_within_the_window_are_dropped() {
    let mut t = open();
    check(&mut t, base(), &ctx(), Want::Out(json!({"event_id": "e1"})));
    check(&mut t, base(), &ctx(), Want::Rejected(Reason::Duplicate, "event_id"));
    check(&mut t, with(base(), json!({"event_name": "ViewContent"})), &ctx(), Want::Out(json!({"event_id": "e1"})));
    let mut no_id = base();
    no_id.as_object_mut().unwrap().remove("event_id");
    check(&mut t, no_id.clone(), &ctx(), Want::Out(json!({"event_id": null})));
    check(&mut t, no_id, &ctx(), Want::Out(json!({"event_id": null})));
    assert_eq!(t.counters.rejected(Reason::Duplicate), 1);
    assert_eq!(t.counters.accepted, 4);
}

#[test]
fn forgotten_events_pass_again() {
    let mut t = open();
    let mut parser = Parser::default();
    let mut buf = base().to_string().into_bytes();
    let accepted = parser.parse(&mut buf, |v| t.transform(v, &ctx(), &mut Vec::new())).unwrap().unwrap();
    t.forget(&accepted);
    check(&mut t, base(), &ctx(), Want::Out(json!({"event_id": "e1"})));
}

#[test]
fn custom_data_rules() {
    let purchase = |cd: Value| with(base(), json!({"event_name": "Purchase", "event_id": "o1", "custom_data": cd}));
    let cases = [
        (purchase(json!({"value": "142.52", "currency": "usd"})), Want::Out(json!({"custom_data": {"value": 142.52, "currency": "USD"}}))),
        (purchase(json!({"value": 10, "currency": "EUR", "content_ids": ["A", 7], "num_items": 2})), Want::Out(json!({"custom_data": {"value": 10, "content_ids": ["A", "7"], "num_items": 2}}))),
        (purchase(json!({"value": 1, "currency": "EUR", "contents": [{"id": "A", "quantity": 2, "item_price": "9.5", "delivery_category": "curbside"}]})), Want::Out(json!({"custom_data": {"contents": [{"id": "A", "quantity": 2, "item_price": 9.5, "delivery_category": "curbside"}]}}))),
        (purchase(json!({"value": 1, "currency": "EUR", "my_prop": {"nested": [1, "x"]}, "coupon": null})), Want::Out(json!({"custom_data": {"my_prop": {"nested": [1, "x"]}, "coupon": null}}))),
        (purchase(json!({"value": 1})), Want::Rejected(Reason::InvalidCustomData, "custom_data")),
        (purchase(json!({"currency": "USD"})), Want::Rejected(Reason::InvalidCustomData, "custom_data")),
        (with(base(), json!({"event_name": "Purchase"})), Want::Rejected(Reason::InvalidCustomData, "custom_data")),
        (purchase(json!({"value": "12,50", "currency": "EUR"})), Want::Rejected(Reason::InvalidCustomData, "custom_data.value")),
        (purchase(json!({"value": "NaN", "currency": "EUR"})), Want::Rejected(Reason::InvalidCustomData, "custom_data.value")),
        (purchase(json!({"value": 1, "currency": "EURO"})), Want::Rejected(Reason::InvalidCustomData, "custom_data.currency")),
        (purchase(json!({"value": 1, "currency": "XYZ"})), Want::Rejected(Reason::InvalidCustomData, "custom_data.currency")),
        // The pixel's types are converted; what cannot be is dropped (the full table is in
        // custom_data's own tests).
        (purchase(json!({"value": 1, "currency": "USD", "content_ids": "A", "status": true})), Want::Out(json!({"custom_data": {"content_ids": ["A"], "status": "true"}}))),
        (purchase(json!({"value": 1, "currency": "USD", "contents": [{"quantity": 1}]})), Want::Out(json!({"custom_data": {"value": 1, "contents": null}}))),
        (purchase(json!({"value": 1, "currency": "USD", "contents": [{"id": "A", "quantity": 1.5}]})), Want::Out(json!({"custom_data": {"contents": [{"id": "A"}]}}))),
        (purchase(json!({"value": 1, "currency": "USD", "num_items": -1})), Want::Out(json!({"custom_data": {"currency": "USD", "num_items": null}}))),
        (with(base(), json!({"custom_data": "x"})), Want::Out(json!({"event_name": "PageView", "custom_data": null}))),
        (with(base(), json!({"event_name": "Purchase", "custom_data": "x"})), Want::Rejected(Reason::InvalidCustomData, "custom_data")),
        (with(base(), json!({"custom_data": {"search_string": "shoes"}})), Want::Out(json!({"custom_data": {"search_string": "shoes"}}))),
    ];
    for (event, want) in cases {
        check(&mut open(), event, &ctx(), want);
    }
}

#[test]
fn limited_data_use() {
    let cases = [
        (json!({"data_processing_options": ["LDU"]}), Want::Out(json!({"data_processing_options": ["LDU"], "data_processing_options_country": 0, "data_processing_options_state": 0}))),
        (json!({"data_processing_options": ["ldu"], "data_processing_options_country": 1, "data_processing_options_state": 1000}), Want::Out(json!({"data_processing_options": ["LDU"], "data_processing_options_country": 1, "data_processing_options_state": 1000}))),
        (json!({"data_processing_options": []}), Want::Out(json!({"data_processing_options": [], "data_processing_options_country": null}))),
        (json!({"data_processing_options": ["GDPR"]}), Want::Rejected(Reason::InvalidDataProcessingOptions, "data_processing_options")),
        (json!({"data_processing_options": ["LDU", "LDU"]}), Want::Rejected(Reason::InvalidDataProcessingOptions, "data_processing_options")),
        (json!({"data_processing_options": ["LDU"], "data_processing_options_country": 2}), Want::Rejected(Reason::InvalidDataProcessingOptions, "data_processing_options")),
        (json!({"data_processing_options": "LDU"}), Want::Rejected(Reason::InvalidDataProcessingOptions, "data_processing_options")),
    ];
    for (patch, want) in cases {
        check(&mut open(), with(base(), patch), &ctx(), want);
    }
}

#[test]
fn duplicate_keys_are_refused() {
    let cases = [
        (r#"{"pixel_id":"1","event_name":"A","event_name":"B","event_source_url":"https://a.example/"}"#, "event_name"),
        (r#"{"pixel_id":"1","event_name":"A","event_id":null,"event_id":"x","event_source_url":"https://a.example/"}"#, "event_id"),
        (r#"{"pixel_id":"1","event_name":"A","event_source_url":"https://a.example/","user_data":{"em":"a@b.co","em":"c@d.co"}}"#, "user_data"),
        (r#"{"pixel_id":"1","event_name":"A","event_source_url":"https://a.example/","custom_data":{"x":1,"x":2}}"#, "custom_data"),
        (r#"{"pixel_id":"1","event_name":"A","event_source_url":"https://a.example/","app_data":{},"app_data":{}}"#, "app_data"),
    ];
    for (input, field) in cases {
        let r = run(&mut open(), input, &ctx()).unwrap_err();
        assert_eq!((r.reason, r.field), (Reason::DuplicateKey, field), "{input}");
    }
}

#[test]
fn passthrough_and_unknown_keys() {
    let mut t = open();
    let event = with(base(), json!({"app_data": {"extinfo": ["a2"]}, "capig_internal": 1}));
    check(&mut t, event, &ctx(), Want::Out(json!({"app_data": {"extinfo": ["a2"]}, "capig_internal": null})));
    assert_eq!(t.counters.dropped(Dropped::UnknownKey), 1);
}

#[test]
fn hostile_inputs_never_panic() {
    let long = "x".repeat(100_000);
    let inputs = [
        json!({"pixel_id": "1", "event_name": "A", "event_source_url": format!("https://a.example/{long}")}),
        json!({"pixel_id": "1", "event_name": "A", "event_source_url": URL, "user_data": {"em": long, "fn": "\u{202e}\u{0301}😀", "ct": vec!["\u{0}"; 16]}}),
        json!({"pixel_id": "1", "event_name": "A", "event_source_url": URL, "user_data": {"em": vec!["a@b.co"; 17]}}),
        json!({"pixel_id": "1", "event_name": "A", "event_source_url": URL, "user_data": [1]}),
        json!({"pixel_id": "1", "event_name": "A", "event_source_url": URL, "user_data": {"ph": -5, "zp": 1.5, "em": true}}),
        json!({"pixel_id": "18446744073709551616", "event_name": "A"}),
        json!({"pixel_id": "1", "event_name": "A", "event_source_url": URL, "event_time": 18446744073709551615u64}),
        json!({"pixel_id": "1", "event_name": "A", "event_source_url": URL, "custom_data": {"contents": vec![json!({"id": 1}); 1001]}}),
    ];
    for input in inputs {
        let text = input.to_string();
        let _ = run(&mut open(), &text, &ctx());
    }
}

#[test]
fn events_are_appended_to_a_batch_buffer() {
    let mut t = open();
    let mut parser = Parser::default();
    let mut out = Vec::new();
    for i in 0..3 {
        let mut buf = with(base(), json!({"event_id": format!("e{i}")})).to_string().into_bytes();
        if !out.is_empty() {
            out.push(b',');
        }
        parser.parse(&mut buf, |v| t.transform(v, &ctx(), &mut out)).unwrap().unwrap();
    }
    let batch: Vec<Value> = serde_json::from_slice(&[b"[", &out[..], b"]"].concat()).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch[2]["event_id"], "e2");
}

/// Mutation fuzzing, deterministic: realistic events with random byte flips, truncations,
/// insertions and splices must never panic, and anything accepted must be valid JSON.
#[test]
fn mutated_events_never_panic() {
    let seeds = [
        with(base(), json!({"user_data": {"em": "John_Smith@gmail.com", "ph": "(650)555-1212", "fbp": "fb.1.1596403881668.1116446470"}})),
        with(base(), json!({"event_name": "Purchase", "custom_data": {"value": "1.5", "currency": "usd", "contents": [{"id": "A", "quantity": 1}]}})),
        with(base(), json!({"data_processing_options": ["LDU"], "data_processing_options_country": 1, "consent": true, "event_time": NOW})),
    ];
    let alphabet = b"{}[]\":,\\0123456789.-eE truefalsnl\xff\xc3\xa9";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut t = open();
    let mut parser = Parser::default();
    let mut out = Vec::new();
    for i in 0..20_000 {
        let mut bytes = seeds[i % seeds.len()].to_string().into_bytes();
        for _ in 0..1 + rand(4) {
            let at = rand(bytes.len());
            match rand(4) {
                0 => bytes[at] = alphabet[rand(alphabet.len())],
                1 => bytes.truncate(at),
                2 => bytes.insert(at, alphabet[rand(alphabet.len())]),
                _ => {
                    let other = seeds[rand(seeds.len())].to_string().into_bytes();
                    let from = rand(other.len());
                    bytes.splice(at..at, other[from..].iter().copied().take(rand(40)));
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        out.clear();
        let accepted = parser.parse(&mut bytes, |v| t.transform(v, &ctx(), &mut out).is_ok()).unwrap_or(false);
        if accepted {
            serde_json::from_slice::<Value>(&out).unwrap_or_else(|e| panic!("accepted output is not JSON ({e}): {}", String::from_utf8_lossy(&out)));
        }
    }
}

/// Every rejection reason, from an event that earns it, with the exact message the
/// sender reads: said once, in words, with its number in place, and no event content.
#[test]
fn every_rejection_reason_has_one_clear_message() {
    let base = base().to_string();
    let patched = |patch: Value| with(base_value(), patch).to_string();
    let cases: Vec<(String, Reason, &str)> = vec![
        (r#""PageView""#.into(), Reason::NotAnObject, r#"each event must be a JSON object like {"event_name":"PageView",…}"#),
        (base.replacen('{', r#"{"event_id":"e0","#, 1), Reason::DuplicateKey, "event_id: appears twice in the event; send each key once"),
        (patched(json!({"event_id": 12.5})), Reason::InvalidField, "event_id: must be a non-empty string (the pixel's eventID)"),
        (patched(json!({"event_name": null})), Reason::MissingField, "event_name: is required, e.g. \"PageView\" or \"Purchase\""),
        (patched(json!({"event_id": "x".repeat(2000)})), Reason::FieldTooLong, "event_id: is longer than the 512 bytes capig accepts; use a shorter id"),
        (patched(json!({"event_time": NOW - 8 * 86400})), Reason::EventTooOld, "event_time: is 86400 seconds past the oldest time Meta accepts (7 days ago; 62 days for physical_store); an event that old cannot be sent"),
        (patched(json!({"event_time": NOW + 3600})), Reason::EventInFuture, "event_time: is 3600 seconds in the future, and Meta accepts at most a minute ahead; check the sender's clock"),
        (patched(json!({"event_name": "Purchase", "custom_data": {"currency": "EUR"}})), Reason::InvalidCustomData, "custom_data: a Purchase needs value and currency; Meta refuses it otherwise"),
        (patched(json!({"data_processing_options": ["XYZ"]})), Reason::InvalidDataProcessingOptions, "data_processing_options: must be [] or [\"LDU\"], with country 0 or 1 and state 0 or 1000"),
        (patched(json!({"pixel_id": "333"})), Reason::UnknownPixel, "pixel_id: is not configured on this gateway; add it under [[pixels]]"),
        (patched(json!({"pixel_id": "222"})), Reason::PixelDisabled, "pixel_id: is disabled in the configuration; enable it in capig.toml to send its events"),
        (patched(json!({"event_source_url": "https://elsewhere.example/"})), Reason::DomainNotAllowed, "event_source_url: the page's domain is not one of the pixel's domains; add it to them in capig.toml"),
        (patched(json!({"event_name": "Lead"})), Reason::EventBlocked, "event_name: is blocked for this pixel by its blocked_events in capig.toml"),
        (patched(json!({"consent": false})), Reason::ConsentRevoked, "consent: the visitor revoked consent; nothing is sent until it is granted"),
    ];
    let mut t = configured();
    let mut covered = Vec::new();
    for (input, reason, message) in &cases {
        let r = run(&mut t, input, &ctx()).expect_err("rejected");
        assert_eq!((r.reason, r.to_string().as_str()), (*reason, *message), "{input}");
        let mut json = Vec::new();
        r.write_json(&mut json);
        assert_eq!(json, serde_json::to_vec(message).unwrap(), "the JSON answer says the same");
        covered.push(r.reason);
    }
    // A duplicate: the same event twice.
    run(&mut t, &base, &ctx()).unwrap();
    let r = run(&mut t, &base, &ctx()).unwrap_err();
    assert_eq!(r.to_string(), "event_id: this event was already forwarded recently; Meta would drop it anyway");
    covered.push(r.reason);
    // Refused by the core, not the transform (the limit comes from the spool).
    let r = Rejection::event_too_large(1 << 20);
    assert_eq!(r.to_string(), "the event is larger than the 1048576 bytes capig can store for one event; send less custom data");
    covered.push(r.reason);
    for reason in Reason::ALL {
        assert!(covered.contains(&reason), "{reason:?} has no case here");
    }
}
