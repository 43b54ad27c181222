//! Meta's validation rules, one table row per rule, all through [`check`].

use serde_json::{json, Value};

use super::*;

const NOW: i64 = 1_760_000_000;
const HASH: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
const HASH2: &str = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";

/// A realistic website Purchase that Meta accepts.
fn event() -> Value {
    json!({
        "event_name": "Purchase",
        "event_time": NOW - 60,
        "event_id": "order-1001",
        "action_source": "website",
        "event_source_url": "https://shop.example/checkout",
        "user_data": {
            "em": [HASH],
            "ph": [HASH2],
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "fbp": "fb.1.1596403881668.1116446470",
            "fbc": "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk",
        },
        "custom_data": { "value": 142.52, "currency": "USD" },
    })
}

/// `event()` with the key at a dotted `path` set to `value`, or removed when `None`.
fn with(path: &str, value: Option<Value>) -> Value {
    let mut event = event();
    let (parents, last) = match path.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, path),
    };
    let mut target = &mut event;
    for key in parents.into_iter().flat_map(|p| p.split('.')) {
        target = &mut target[key];
    }
    let object = target.as_object_mut().expect("path leads to an object");
    match value {
        Some(value) => object.insert(last.to_owned(), value),
        None => object.remove(last),
    };
    event
}

/// `event()` with `user_data` replaced.
fn user_data(user_data: Value) -> Value {
    with("user_data", Some(user_data))
}

#[derive(Debug)]
enum Expect {
    Accepted(usize),
    /// Rejected with code, subcode, a fragment of `error_user_title` (or of `message`
    /// for request-level errors) and the event index named in `error_user_msg`.
    Rejected {
        code: u32,
        subcode: Option<u32>,
        says: &'static str,
        index: Option<usize>,
    },
}

fn rejected(says: &'static str, index: usize) -> Expect {
    Expect::Rejected {
        code: 100,
        subcode: None,
        says,
        index: Some(index),
    }
}

fn request_error(says: &'static str) -> Expect {
    Expect::Rejected {
        code: 100,
        subcode: None,
        says,
        index: None,
    }
}

fn check(name: &str, data: Option<Value>, expected: Expect) {
    let request = CapiRequest {
        data,
        access_token: Some("t".into()),
        ..CapiRequest::default()
    };
    let outcome = validate_events(request, NOW);
    match (&outcome, &expected) {
        (Ok(events), Expect::Accepted(n)) => {
            assert_eq!(events.len(), *n, "{name}: accepted count");
            assert!(
                events.iter().all(|e| e.contains_key("event_name")),
                "{name}: decoded objects"
            );
        }
        (
            Err(error),
            Expect::Rejected {
                code,
                subcode,
                says,
                index,
            },
        ) => {
            assert_eq!(error.code, *code, "{name}: code in {error:?}");
            assert_eq!(error.subcode, *subcode, "{name}: subcode in {error:?}");
            assert_eq!(error.http_status, 400, "{name}: status");
            assert!(
                !error.is_transient,
                "{name}: validation errors are permanent"
            );
            let text = format!(
                "{} {}",
                error.message,
                error.user_title.as_deref().unwrap_or_default()
            );
            assert!(text.contains(says), "{name}: {text:?} should say {says:?}");
            match index {
                Some(i) => {
                    let msg = error.user_msg.as_deref().unwrap_or_default();
                    assert!(
                        msg.starts_with(&format!("Event at index {i}:")),
                        "{name}: {msg:?} should name index {i}"
                    );
                    assert_eq!(error.message, "Invalid parameter", "{name}: Meta's message");
                }
                None => assert!(error.user_msg.is_none(), "{name}: request-level error"),
            }
        }
        _ => panic!("{name}: expected {expected:?}, got {outcome:?}"),
    }
}

fn one(event: Value) -> Option<Value> {
    Some(json!([event]))
}

#[test]
fn request_level_rules() {
    let many = |n: usize| Some(Value::Array(vec![event(); n]));
    let cases: Vec<(&str, Option<Value>, Expect)> = vec![
        ("one valid event", one(event()), Expect::Accepted(1)),
        ("1000 events", many(1000), Expect::Accepted(1000)),
        ("1001 events", many(1001), request_error("at most 1000")),
        (
            "no data",
            None,
            request_error("The parameter data is required"),
        ),
        ("empty data", Some(json!([])), request_error("non-empty")),
        (
            "data an object",
            Some(json!({"event_name": "x"})),
            request_error("must be an array"),
        ),
        (
            "data a number",
            Some(json!(3)),
            request_error("must be an array"),
        ),
        (
            "data null",
            Some(Value::Null),
            request_error("must be an array"),
        ),
    ];
    for (name, data, expected) in cases {
        check(name, data, expected);
    }
}

#[test]
fn python_sdk_string_elements() {
    let as_string = Value::String(event().to_string());
    let cases: Vec<(&str, Option<Value>, Expect)> = vec![
        (
            "string holding an event",
            Some(json!([as_string.clone()])),
            Expect::Accepted(1),
        ),
        (
            "strings and objects mixed",
            Some(json!([as_string, event()])),
            Expect::Accepted(2),
        ),
        (
            "string not JSON",
            Some(json!(["{not json"])),
            rejected("Invalid event", 0),
        ),
        (
            "string holding an array",
            Some(json!(["[1,2]"])),
            rejected("Invalid event", 0),
        ),
        (
            "string with duplicate keys",
            Some(json!([r#"{"event_name":"a","event_name":"b"}"#])),
            rejected("Invalid event", 0),
        ),
        (
            "number element",
            Some(json!([event(), 7])),
            rejected("Invalid event", 1),
        ),
        (
            "null element",
            Some(json!([null])),
            rejected("Invalid event", 0),
        ),
    ];
    for (name, data, expected) in cases {
        check(name, data, expected);
    }
}

#[test]
fn event_rules() {
    let cases: Vec<(&str, Value, Expect)> = vec![
        // event_name
        (
            "no event_name",
            with("event_name", None),
            rejected("Missing event_name", 0),
        ),
        (
            "empty event_name",
            with("event_name", Some(json!(" "))),
            rejected("Invalid event_name", 0),
        ),
        (
            "numeric event_name",
            with("event_name", Some(json!(5))),
            rejected("Invalid event_name", 0),
        ),
        (
            "custom event_name",
            with("event_name", Some(json!("MyCustom"))),
            Expect::Accepted(1),
        ),
        // event_time
        (
            "no event_time",
            with("event_time", None),
            rejected("Missing event_time", 0),
        ),
        (
            "numeric string time",
            with("event_time", Some(json!((NOW - 5).to_string()))),
            Expect::Accepted(1),
        ),
        (
            "float time",
            with("event_time", Some(json!(1.76e9 + 0.5))),
            rejected("Invalid event_time", 0),
        ),
        (
            "ISO time",
            with("event_time", Some(json!("2025-10-09T08:53:20Z"))),
            rejected("Invalid event_time", 0),
        ),
        (
            "negative string time",
            with("event_time", Some(json!("-5"))),
            rejected("Invalid event_time", 0),
        ),
        (
            "huge time",
            with("event_time", Some(json!(u64::MAX))),
            rejected("Invalid event_time", 0),
        ),
        (
            "bool time",
            with("event_time", Some(json!(true))),
            rejected("Invalid event_time", 0),
        ),
        (
            "exactly 7 days old",
            with("event_time", Some(json!(NOW - MAX_AGE_SECS as i64))),
            Expect::Accepted(1),
        ),
        (
            "7 days and 1 s old",
            with("event_time", Some(json!(NOW - MAX_AGE_SECS as i64 - 1))),
            Expect::Rejected {
                code: 100,
                subcode: Some(2_804_003),
                says: "Too Old",
                index: Some(0),
            },
        ),
        (
            "60 s ahead",
            with("event_time", Some(json!(NOW + 60))),
            Expect::Accepted(1),
        ),
        (
            "61 s ahead",
            with("event_time", Some(json!(NOW + 61))),
            rejected("In The Future", 0),
        ),
        (
            "milliseconds",
            with("event_time", Some(json!(NOW * 1000))),
            rejected("In The Future", 0),
        ),
        // action_source
        (
            "no action_source",
            with("action_source", None),
            rejected("Missing action_source", 0),
        ),
        (
            "unknown action_source",
            with("action_source", Some(json!("web"))),
            rejected("Invalid action_source", 0),
        ),
        (
            "uppercase action_source",
            with("action_source", Some(json!("WEBSITE"))),
            rejected("Invalid action_source", 0),
        ),
        (
            "app event without url",
            {
                let mut e = with("action_source", Some(json!("app")));
                e.as_object_mut().unwrap().remove("event_source_url");
                e
            },
            Expect::Accepted(1),
        ),
        // website requirements
        (
            "website without url",
            with("event_source_url", None),
            rejected("Missing event_source_url", 0),
        ),
        (
            "website with empty url",
            with("event_source_url", Some(json!(""))),
            rejected("Invalid event_source_url", 0),
        ),
        (
            "website without UA",
            with("user_data.client_user_agent", None),
            rejected("Missing client_user_agent", 0),
        ),
        (
            "website with empty UA",
            with("user_data.client_user_agent", Some(json!(""))),
            rejected("Missing client_user_agent", 0),
        ),
        // user_data
        (
            "no user_data",
            with("user_data", None),
            rejected("Missing user_data", 0),
        ),
        (
            "user_data array",
            with("user_data", Some(json!([]))),
            rejected("Invalid user_data", 0),
        ),
        (
            "em plain",
            with("user_data.em", Some(json!("john@example.com"))),
            rejected("Unhashed", 0),
        ),
        (
            "em uppercase hex",
            with("user_data.em", Some(json!(HASH.to_uppercase()))),
            rejected("Unhashed", 0),
        ),
        (
            "em 63 hex",
            with("user_data.em", Some(json!(&HASH[1..]))),
            rejected("Unhashed", 0),
        ),
        (
            "em one string",
            with("user_data.em", Some(json!(HASH))),
            Expect::Accepted(1),
        ),
        (
            "em with appendix",
            with("user_data.em", Some(json!(format!("{HASH}.AQYBAAAA")))),
            Expect::Accepted(1),
        ),
        (
            "em list with one plain",
            with("user_data.em", Some(json!([HASH, "x"]))),
            rejected("Unhashed", 0),
        ),
        (
            "em number",
            with("user_data.em", Some(json!(5))),
            rejected("Invalid customer information", 0),
        ),
        (
            "em list of numbers",
            with("user_data.em", Some(json!([5]))),
            rejected("Invalid customer information", 0),
        ),
        (
            "ph plain digits",
            with("user_data.ph", Some(json!("16505551212"))),
            rejected("Unhashed", 0),
        ),
        (
            "country plain",
            with("user_data.country", Some(json!("us"))),
            rejected("Unhashed", 0),
        ),
        (
            "zp hashed",
            with("user_data.zp", Some(json!([HASH]))),
            Expect::Accepted(1),
        ),
        (
            "external_id raw",
            with("user_data.external_id", Some(json!("user-42"))),
            Expect::Accepted(1),
        ),
        (
            "external_id hashed list",
            with("user_data.external_id", Some(json!([HASH]))),
            Expect::Accepted(1),
        ),
        (
            "external_id empty",
            with("user_data.external_id", Some(json!(""))),
            Expect::Accepted(1),
        ),
        (
            "external_id with an empty element",
            with("user_data.external_id", Some(json!(["a", ""]))),
            rejected("Invalid customer information", 0),
        ),
        (
            "em empty string",
            with("user_data.em", Some(json!(""))),
            Expect::Accepted(1),
        ),
        (
            "em null",
            with("user_data.em", Some(Value::Null)),
            Expect::Accepted(1),
        ),
        (
            "em list with an empty element",
            with("user_data.em", Some(json!([HASH, ""]))),
            rejected("Unhashed", 0),
        ),
        (
            "external_id object",
            with("user_data.external_id", Some(json!({}))),
            rejected("Invalid customer information", 0),
        ),
        (
            "IPv6",
            with("user_data.client_ip_address", Some(json!("2001:db8::1"))),
            Expect::Accepted(1),
        ),
        (
            "bad IP",
            with("user_data.client_ip_address", Some(json!("203.0.113.300"))),
            rejected("Invalid client_ip_address", 0),
        ),
        (
            "IP with space",
            with("user_data.client_ip_address", Some(json!(" 203.0.113.7"))),
            rejected("Invalid client_ip_address", 0),
        ),
        (
            "UA not string",
            with("user_data.client_user_agent", Some(json!(["Mozilla"]))),
            rejected("Invalid client_user_agent", 0),
        ),
        (
            "fbp bad",
            with("user_data.fbp", Some(json!("fb.1.abc.123"))),
            rejected("Invalid fbp", 0),
        ),
        (
            "fbc bad",
            with("user_data.fbc", Some(json!("IwAR2F4"))),
            rejected("Invalid fbc", 0),
        ),
        (
            "fbc appendix",
            with(
                "user_data.fbc",
                Some(json!("fb.1.1554763741205.IwAR2F4.ABcDEFGh")),
            ),
            Expect::Accepted(1),
        ),
        (
            "fbp number",
            with("user_data.fbp", Some(json!(1))),
            rejected("Invalid fbp", 0),
        ),
        // custom_data
        (
            "value string",
            with("custom_data.value", Some(json!("142.52"))),
            Expect::Accepted(1),
        ),
        (
            "value integer",
            with("custom_data.value", Some(json!(10))),
            Expect::Accepted(1),
        ),
        (
            "value negative string",
            with("custom_data.value", Some(json!("-3"))),
            Expect::Accepted(1),
        ),
        (
            "value NaN string",
            with("custom_data.value", Some(json!("NaN"))),
            rejected("Invalid value", 0),
        ),
        (
            "value inf string",
            with("custom_data.value", Some(json!("inf"))),
            rejected("Invalid value", 0),
        ),
        (
            "value exponent string",
            with("custom_data.value", Some(json!("1e3"))),
            rejected("Invalid value", 0),
        ),
        (
            "value trailing dot",
            with("custom_data.value", Some(json!("1."))),
            rejected("Invalid value", 0),
        ),
        (
            "value text",
            with("custom_data.value", Some(json!("ten"))),
            rejected("Invalid value", 0),
        ),
        (
            "value bool",
            with("custom_data.value", Some(json!(true))),
            rejected("Invalid value", 0),
        ),
        (
            "currency lowercase",
            with("custom_data.currency", Some(json!("usd"))),
            Expect::Accepted(1),
        ),
        (
            "currency 4 letters",
            with("custom_data.currency", Some(json!("USDT"))),
            rejected("Invalid currency", 0),
        ),
        (
            "currency digits",
            with("custom_data.currency", Some(json!("840"))),
            rejected("Invalid currency", 0),
        ),
        (
            "custom_data string",
            with("custom_data", Some(json!("x"))),
            rejected("Invalid custom_data", 0),
        ),
        (
            "no custom_data",
            with("custom_data", None),
            Expect::Accepted(1),
        ),
        // data_processing_options
        (
            "LDU",
            with("data_processing_options", Some(json!(["LDU"]))),
            Expect::Accepted(1),
        ),
        (
            "no LDU",
            with("data_processing_options", Some(json!([]))),
            Expect::Accepted(1),
        ),
        (
            "lowercase ldu",
            with("data_processing_options", Some(json!(["ldu"]))),
            rejected("Invalid data_processing_options", 0),
        ),
        (
            "LDU as string",
            with("data_processing_options", Some(json!("LDU"))),
            rejected("Invalid data_processing_options", 0),
        ),
    ];
    for (name, event, expected) in cases {
        check(name, one(event), expected);
    }
}

#[test]
fn baseline_matching_rule() {
    let insufficient = |index| Expect::Rejected {
        code: 100,
        subcode: Some(2_804_050),
        says: "Customer information parameters",
        index: Some(index),
    };
    let ua = "Mozilla/5.0";
    let cases: Vec<(&str, Value, Expect)> = vec![
        ("only UA", json!({"client_user_agent": ua}), insufficient(0)),
        (
            "location set with UA",
            json!({"ct": [HASH], "country": [HASH], "st": [HASH], "zp": [HASH], "ge": [HASH], "client_user_agent": ua}),
            insufficient(0),
        ),
        (
            "db with UA",
            json!({"db": [HASH], "client_user_agent": ua}),
            insufficient(0),
        ),
        (
            "location set plus IP",
            json!({"ct": [HASH], "client_user_agent": ua, "client_ip_address": "203.0.113.7"}),
            Expect::Accepted(1),
        ),
        (
            "UA and fbp",
            json!({"client_user_agent": ua, "fbp": "fb.1.1596403881668.1116446470"}),
            Expect::Accepted(1),
        ),
        (
            "UA and em",
            json!({"client_user_agent": ua, "em": HASH}),
            Expect::Accepted(1),
        ),
        (
            "empty values do not count",
            json!({"client_user_agent": ua, "em": [], "ph": "", "fbp": null}),
            insufficient(0),
        ),
    ];
    for (name, ud, expected) in cases {
        check(name, one(user_data(ud)), expected);
    }
    // Not a website event: the sets without the UA.
    let app = |ud: Value| {
        let mut e = with("action_source", Some(json!("app")));
        e["user_data"] = ud;
        e
    };
    let cases: Vec<(&str, Value, Expect)> = vec![
        ("empty user_data", app(json!({})), insufficient(0)),
        (
            "fn and ge",
            app(json!({"fn": [HASH], "ge": [HASH]})),
            insufficient(0),
        ),
        ("ln only", app(json!({"ln": [HASH]})), insufficient(0)),
        (
            "fn and ln",
            app(json!({"fn": [HASH], "ln": [HASH]})),
            Expect::Accepted(1),
        ),
        (
            "external_id only",
            app(json!({"external_id": "user-42"})),
            Expect::Accepted(1),
        ),
    ];
    for (name, event, expected) in cases {
        check(name, one(event), expected);
    }
}

#[test]
fn all_or_nothing_names_the_first_bad_index() {
    let old = with("event_time", Some(json!(NOW - MAX_AGE_SECS as i64 - 3600)));
    let cases: Vec<(&str, Option<Value>, Expect)> = vec![
        (
            "one stale event among good ones rejects the request",
            Some(json!([event(), event(), old.clone(), event()])),
            Expect::Rejected {
                code: 100,
                subcode: Some(2_804_003),
                says: "Too Old",
                index: Some(2),
            },
        ),
        (
            "the first invalid event wins",
            Some(json!([event(), with("event_name", None), old])),
            rejected("Missing event_name", 1),
        ),
        (
            "physical_store may be 62 days old",
            one({
                let mut e = with("action_source", Some(json!("physical_store")));
                e["event_time"] = json!(NOW - 61 * 24 * 3600);
                e
            }),
            Expect::Accepted(1),
        ),
        (
            "but not 63",
            one({
                let mut e = with("action_source", Some(json!("physical_store")));
                e["event_time"] = json!(NOW - 63 * 24 * 3600);
                e
            }),
            Expect::Rejected {
                code: 100,
                subcode: Some(2_804_003),
                says: "Too Old",
                index: Some(0),
            },
        ),
    ];
    for (name, data, expected) in cases {
        check(name, data, expected);
    }
}

#[test]
fn too_old_message_says_the_limit() {
    let request = CapiRequest {
        data: one(with("event_time", Some(json!(NOW - 8 * 24 * 3600)))),
        ..CapiRequest::default()
    };
    let error = validate_events(request, NOW).unwrap_err();
    assert!(error.user_msg.unwrap().contains("within 7 days"));
}

/// Name, tokens, pixel, token, expected (code, subcode) on error.
type AuthCase<'a> = (
    &'static str,
    &'a Tokens,
    &'static str,
    Option<&'static str>,
    Result<(), (u32, Option<u32>)>,
);

#[test]
fn authorization() {
    let tokens = Tokens(
        [("123".to_owned(), "secret".to_owned())]
            .into_iter()
            .collect(),
    );
    let none = Tokens::default();
    let cases: Vec<AuthCase> = vec![
        (
            "any token without config",
            &none,
            "123",
            Some("anything"),
            Ok(()),
        ),
        (
            "no token without config",
            &none,
            "123",
            None,
            Err((104, None)),
        ),
        ("empty token", &none, "123", Some(""), Err((104, None))),
        ("right token", &tokens, "123", Some("secret"), Ok(())),
        (
            "wrong token",
            &tokens,
            "123",
            Some("secreT"),
            Err((190, None)),
        ),
        ("missing token", &tokens, "123", None, Err((104, None))),
        (
            "pixel without token",
            &tokens,
            "456",
            Some("secret"),
            Err((100, Some(33))),
        ),
        (
            "pixel not a number",
            &none,
            "abc",
            Some("t"),
            Err((100, Some(33))),
        ),
        (
            "pixel too long",
            &none,
            "123456789012345678901",
            Some("t"),
            Err((100, Some(33))),
        ),
    ];
    for (name, tokens, pixel, token, expected) in cases {
        let got = authorize(tokens, pixel, token).map_err(|e| (e.code, e.subcode));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn messages_never_echo_values() {
    let secret = "john.secret@example.com";
    let request = CapiRequest {
        data: one(with("user_data.em", Some(json!(secret)))),
        ..CapiRequest::default()
    };
    let error = validate_events(request, NOW).unwrap_err();
    let envelope = error.envelope("trace").to_string();
    assert!(!envelope.contains(secret), "{envelope}");
}
