//! The conversion table of the module header, case by case: each standard event of the
//! pixel's reference with its documented parameters in the pixel's types, and the exact
//! `custom_data` CAPI gets; then the drops (what is left out, the counter, the event still
//! forwarded) and the whole-event rejections with their exact messages.

use crate::event::json::Parser;
use crate::event::policy::{DedupConfig, Policies};
use crate::event::reject::Reason;
use crate::event::transform::{Context, Transformer};

const NOW_MS: u64 = 1_700_000_000_000;
const URL: &str = "https://shop.example/product/1";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) capig-test";

enum Want {
    /// Forwarded: the exact `custom_data` text written (`None`: no `custom_data`), and the
    /// non-zero drop counters as (label, count).
    Out(Option<&'static str>, &'static [(&'static str, u64)]),
    /// Refused: the reason and the exact message.
    Rejected(Reason, &'static str),
}
use Want::*;

/// Runs `{"event_name": event_name, "custom_data": custom_data, …}` through a transformer
/// and compares what it wrote (or why it refused) with `want`.
fn check(event_name: &str, custom_data: &str, want: Want) {
    let input = format!(
        r#"{{"pixel_id":"1","event_name":"{event_name}","event_source_url":"{URL}","custom_data":{custom_data}}}"#
    );
    let mut t = Transformer::new(Policies::allow_all(DedupConfig::default()));
    let ctx = Context { now_ms: NOW_MS, user_agent: Some(UA), ..Context::default() };
    let mut buf = input.clone().into_bytes();
    let mut out = Vec::new();
    let result = Parser::default().parse(&mut buf, |v| t.transform(v, &ctx, &mut out)).expect("test input is JSON");
    match (result, want) {
        (Ok(_), Out(expected, drops)) => {
            serde_json::from_slice::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{input}: invalid JSON out ({e})"));
            let text = std::str::from_utf8(&out).unwrap();
            // `custom_data` is the event's last member here.
            const KEY: &str = ",\"custom_data\":";
            let got = text.find(KEY).map(|i| &text[i + KEY.len()..text.len() - 1]);
            assert_eq!(got, expected, "{input}");
            assert_eq!(t.counters.nonzero(), drops.to_vec(), "{input}");
        }
        (Err(r), Rejected(reason, message)) => {
            assert_eq!((r.reason, r.to_string().as_str()), (reason, message), "{input}");
            assert_eq!(t.counters.rejected(reason), 1);
            assert!(out.is_empty(), "{input}: a rejection leaves nothing behind");
        }
        (got, _) => panic!("{input}: unexpected {got:?}"),
    }
}

/// Every standard event with the parameters the pixel's reference documents for it, in
/// the pixel's types (and the numeric strings pages really send).
#[test]
fn standard_events_in_the_pixels_types() {
    let cases = [
        ("PageView", "null", Out(None, &[])),
        (
            "AddPaymentInfo",
            r#"{"content_category":"Checkout","content_ids":["ABC123",456],"contents":[{"id":"ABC123","quantity":2}],"currency":"usd","value":12.5}"#,
            Out(Some(r#"{"content_category":"Checkout","content_ids":["ABC123","456"],"contents":[{"id":"ABC123","quantity":2}],"currency":"USD","value":12.5}"#), &[]),
        ),
        (
            "AddToCart",
            r#"{"content_ids":[1001,1002],"content_name":"Espresso cup","content_type":"product","contents":[{"id":1001,"quantity":"2","item_price":"12.50"}],"currency":"EUR","value":"25.00"}"#,
            Out(Some(r#"{"content_ids":["1001","1002"],"content_name":"Espresso cup","content_type":"product","contents":[{"id":"1001","quantity":2,"item_price":12.5}],"currency":"EUR","value":25}"#), &[]),
        ),
        (
            "AddToWishlist",
            r#"{"content_name":42,"content_category":7,"content_ids":[99],"contents":[{"id":"A","quantity":1.0}],"currency":"GBP","value":3}"#,
            Out(Some(r#"{"content_name":"42","content_category":"7","content_ids":["99"],"contents":[{"id":"A","quantity":1}],"currency":"GBP","value":3}"#), &[]),
        ),
        (
            "CompleteRegistration",
            r#"{"content_name":"Newsletter","currency":"USD","status":true,"value":0}"#,
            Out(Some(r#"{"content_name":"Newsletter","currency":"USD","status":"true","value":0}"#), &[]),
        ),
        ("CompleteRegistration", r#"{"status":false}"#, Out(Some(r#"{"status":"false"}"#), &[])),
        ("CompleteRegistration", r#"{"status":"registered"}"#, Out(Some(r#"{"status":"registered"}"#), &[])),
        ("CompleteRegistration", r#"{"status":1}"#, Out(Some(r#"{"status":"1"}"#), &[])),
        // No documented parameters: what comes is converted by the same rules.
        ("Contact", "{}", Out(Some("{}"), &[])),
        ("CustomizeProduct", r#"{"content_ids":7}"#, Out(Some(r#"{"content_ids":["7"]}"#), &[])),
        ("Donate", r#"{"value":"5","currency":"usd"}"#, Out(Some(r#"{"value":5,"currency":"USD"}"#), &[])),
        ("FindLocation", "{}", Out(Some("{}"), &[])),
        ("Schedule", "{}", Out(Some("{}"), &[])),
        ("SubmitApplication", "{}", Out(Some("{}"), &[])),
        (
            "InitiateCheckout",
            r#"{"content_category":"Cart","content_ids":["A","B"],"contents":[{"id":"A","quantity":1},{"id":"B","quantity":"2"}],"currency":"USD","num_items":"3","value":99.9}"#,
            Out(Some(r#"{"content_category":"Cart","content_ids":["A","B"],"contents":[{"id":"A","quantity":1},{"id":"B","quantity":2}],"currency":"USD","num_items":3,"value":99.9}"#), &[]),
        ),
        ("InitiateCheckout", r#"{"num_items":3.0}"#, Out(Some(r#"{"num_items":3}"#), &[])),
        ("InitiateCheckout", r#"{"num_items":" 3.0 "}"#, Out(Some(r#"{"num_items":3}"#), &[])),
        (
            "Lead",
            r#"{"content_category":"Form","content_name":"Quote","currency":"USD","value":"10"}"#,
            Out(Some(r#"{"content_category":"Form","content_name":"Quote","currency":"USD","value":10}"#), &[]),
        ),
        (
            "Purchase",
            r#"{"content_ids":[123],"content_name":"Order","content_type":"product_group","contents":[{"id":"A","quantity":"1","item_price":9.99}],"currency":"usd","num_items":1,"value":"142.52","order_id":1042}"#,
            Out(Some(r#"{"content_ids":["123"],"content_name":"Order","content_type":"product_group","contents":[{"id":"A","quantity":1,"item_price":9.99}],"currency":"USD","num_items":1,"value":142.52,"order_id":"1042"}"#), &[]),
        ),
        (
            "Search",
            r#"{"content_category":"Cups","content_ids":["A"],"contents":[{"id":"A","quantity":1}],"currency":"USD","search_string":12345,"value":0}"#,
            Out(Some(r#"{"content_category":"Cups","content_ids":["A"],"contents":[{"id":"A","quantity":1}],"currency":"USD","search_string":"12345","value":0}"#), &[]),
        ),
        (
            "StartTrial",
            r#"{"currency":"USD","predicted_ltv":"120.5","value":"0.00"}"#,
            Out(Some(r#"{"currency":"USD","predicted_ltv":120.5,"value":0}"#), &[]),
        ),
        (
            "Subscribe",
            r#"{"currency":"usd","predicted_ltv":240,"value":"9.99"}"#,
            Out(Some(r#"{"currency":"USD","predicted_ltv":240,"value":9.99}"#), &[]),
        ),
        (
            "ViewContent",
            r#"{"content_ids":["SKU-1"],"content_category":"Cups","content_name":"Espresso cup","content_type":"product","contents":[{"id":"SKU-1","quantity":1}],"currency":"EUR","value":12.5}"#,
            Out(Some(r#"{"content_ids":["SKU-1"],"content_category":"Cups","content_name":"Espresso cup","content_type":"product","contents":[{"id":"SKU-1","quantity":1}],"currency":"EUR","value":12.5}"#), &[]),
        ),
    ];
    for (event_name, custom_data, want) in cases {
        check(event_name, custom_data, want);
    }
}

/// The other conversions of the table, one rule per case.
#[test]
fn conversions() {
    let cases = [
        (r#"{"value":" 25.5 "}"#, Out(Some(r#"{"value":25.5}"#), &[])),
        (r#"{"value":"1e3"}"#, Out(Some(r#"{"value":1000}"#), &[])),
        (r#"{"value":-3}"#, Out(Some(r#"{"value":-3}"#), &[])),
        (r#"{"value":3.0}"#, Out(Some(r#"{"value":3}"#), &[])),
        (r#"{"net_revenue":"3.5"}"#, Out(Some(r#"{"net_revenue":3.5}"#), &[])),
        (r#"{"content_ids":"SKU-1"}"#, Out(Some(r#"{"content_ids":["SKU-1"]}"#), &[])),
        (r#"{"content_ids":[1.5,3.0]}"#, Out(Some(r#"{"content_ids":["1.5","3"]}"#), &[])),
        (r#"{"content_ids":[]}"#, Out(Some(r#"{"content_ids":[]}"#), &[])),
        (r#"{"contents":{"id":"A","quantity":"2"}}"#, Out(Some(r#"{"contents":[{"id":"A","quantity":2}]}"#), &[])),
        (
            r#"{"contents":[{"id":"A","title":5,"brand":"Acme","delivery_category":"CURBSIDE","color":"red","size":null}]}"#,
            Out(Some(r#"{"contents":[{"id":"A","title":"5","brand":"Acme","delivery_category":"curbside","color":"red"}]}"#), &[]),
        ),
        (r#"{"delivery_category":"Home_Delivery"}"#, Out(Some(r#"{"delivery_category":"home_delivery"}"#), &[])),
        (r#"{"content_type":"vehicle"}"#, Out(Some(r#"{"content_type":"vehicle"}"#), &[])),
        (
            r#"{"my_prop":{"nested":[1,"x"]},"flag":true,"coupon":null}"#,
            Out(Some(r#"{"my_prop":{"nested":[1,"x"]},"flag":true}"#), &[]),
        ),
    ];
    for (custom_data, want) in cases {
        check("ViewContent", custom_data, want);
    }
}

/// An optional property that cannot be converted is left out and counted; the event is
/// forwarded.
#[test]
fn unusable_optional_properties_are_dropped_and_counted() {
    let cases = [
        ("ViewContent", r#"{"value":"12,50","currency":"EUR"}"#, Out(Some(r#"{"currency":"EUR"}"#), &[("invalid_custom_data_value", 1)])),
        ("ViewContent", r#"{"value":true}"#, Out(Some("{}"), &[("invalid_custom_data_value", 1)])),
        ("ViewContent", r#"{"value":"NaN"}"#, Out(Some("{}"), &[("invalid_custom_data_value", 1)])),
        ("ViewContent", r#"{"value":1,"currency":"EURO"}"#, Out(Some(r#"{"value":1}"#), &[("invalid_custom_data_currency", 1)])),
        ("ViewContent", r#"{"currency":978}"#, Out(Some("{}"), &[("invalid_custom_data_currency", 1)])),
        ("Subscribe", r#"{"predicted_ltv":"high"}"#, Out(Some("{}"), &[("invalid_custom_data_predicted_ltv", 1)])),
        ("Purchase", r#"{"value":1,"currency":"USD","net_revenue":[]}"#, Out(Some(r#"{"value":1,"currency":"USD"}"#), &[("invalid_custom_data_net_revenue", 1)])),
        ("InitiateCheckout", r#"{"num_items":-1}"#, Out(Some("{}"), &[("invalid_custom_data_num_items", 1)])),
        ("InitiateCheckout", r#"{"num_items":2.5}"#, Out(Some("{}"), &[("invalid_custom_data_num_items", 1)])),
        ("InitiateCheckout", r#"{"num_items":"two"}"#, Out(Some("{}"), &[("invalid_custom_data_num_items", 1)])),
        ("InitiateCheckout", r#"{"num_items":true}"#, Out(Some("{}"), &[("invalid_custom_data_num_items", 1)])),
        ("ViewContent", r#"{"content_name":true,"content_type":"product"}"#, Out(Some(r#"{"content_type":"product"}"#), &[("invalid_custom_data_content_name", 1)])),
        ("ViewContent", r#"{"content_category":[]}"#, Out(Some("{}"), &[("invalid_custom_data_content_category", 1)])),
        ("ViewContent", r#"{"content_type":false}"#, Out(Some("{}"), &[("invalid_custom_data_content_type", 1)])),
        ("Search", r#"{"search_string":false}"#, Out(Some("{}"), &[("invalid_custom_data_search_string", 1)])),
        ("Purchase", r#"{"value":1,"currency":"USD","order_id":{"a":1}}"#, Out(Some(r#"{"value":1,"currency":"USD"}"#), &[("invalid_custom_data_order_id", 1)])),
        ("CompleteRegistration", r#"{"status":[true]}"#, Out(Some("{}"), &[("invalid_custom_data_status", 1)])),
        ("Purchase", r#"{"value":1,"currency":"USD","delivery_category":"drone"}"#, Out(Some(r#"{"value":1,"currency":"USD"}"#), &[("invalid_custom_data_delivery_category", 1)])),
        // content_ids: bad elements one by one; nothing left, or no ids at all: the property.
        ("ViewContent", r#"{"content_ids":[true,"A",null,{}]}"#, Out(Some(r#"{"content_ids":["A"]}"#), &[("invalid_custom_data_content_ids", 3)])),
        ("ViewContent", r#"{"content_ids":[null]}"#, Out(Some("{}"), &[("invalid_custom_data_content_ids", 1)])),
        ("ViewContent", r#"{"content_ids":{"a":1}}"#, Out(Some("{}"), &[("invalid_custom_data_content_ids", 1)])),
        ("ViewContent", r#"{"content_ids":true}"#, Out(Some("{}"), &[("invalid_custom_data_content_ids", 1)])),
        // contents: bad items one by one, bad keys of an item one by one.
        ("ViewContent", r#"{"contents":["A",{"id":"B"}]}"#, Out(Some(r#"{"contents":[{"id":"B"}]}"#), &[("invalid_custom_data_contents", 1)])),
        ("ViewContent", r#"{"contents":[{"quantity":1}]}"#, Out(Some("{}"), &[("invalid_custom_data_contents", 1)])),
        ("ViewContent", r#"{"contents":[{"id":true,"quantity":1}]}"#, Out(Some("{}"), &[("invalid_custom_data_contents", 1)])),
        (
            "ViewContent",
            r#"{"contents":[{"id":"A","quantity":1.5,"item_price":"abc","delivery_category":"drone","title":true}]}"#,
            Out(Some(r#"{"contents":[{"id":"A"}]}"#), &[("invalid_custom_data_contents", 4)]),
        ),
        ("ViewContent", r#"{"contents":"A"}"#, Out(Some("{}"), &[("invalid_custom_data_contents", 1)])),
        ("ViewContent", r#"{"contents":{"quantity":1}}"#, Out(Some("{}"), &[("invalid_custom_data_contents", 1)])),
        // custom_data itself.
        ("ViewContent", r#""x""#, Out(None, &[("invalid_custom_data_object", 1)])),
        ("PageView", "[1]", Out(None, &[("invalid_custom_data_object", 1)])),
        // A Purchase keeps what it must have and loses only what it may lack.
        (
            "Purchase",
            r#"{"value":"1","currency":"usd","num_items":"two","content_ids":[true]}"#,
            Out(Some(r#"{"value":1,"currency":"USD"}"#), &[("invalid_custom_data_num_items", 1), ("invalid_custom_data_content_ids", 1)]),
        ),
    ];
    for (event_name, custom_data, want) in cases {
        check(event_name, custom_data, want);
    }
    let many: Vec<String> = (0..=super::MAX_KEYS).map(|i| format!("\"k{i}\":1")).collect();
    check("ViewContent", &format!("{{{}}}", many.join(",")), Out(None, &[("invalid_custom_data_object", 1)]));
    let ids = format!("[{}]", vec!["1"; super::MAX_ITEMS + 1].join(","));
    check("ViewContent", &format!(r#"{{"content_ids":{ids}}}"#), Out(Some("{}"), &[("invalid_custom_data_content_ids", 1)]));
}

/// The whole event is refused only where Meta refuses it. The messages are capig's own
/// static texts: no value of the event (`john@example.com` below) ever appears in one.
#[test]
fn whole_event_rejections() {
    const NEEDS: &str = "custom_data: a Purchase needs value and currency; Meta refuses it otherwise";
    const VALUE: &str = "custom_data.value: must be a number, like 142.52";
    const CURRENCY: &str = "custom_data.currency: must be an ISO 4217 currency code, like USD or EUR";
    let cases = [
        ("Purchase", r#"{"value":1}"#, Rejected(Reason::InvalidCustomData, NEEDS)),
        ("Purchase", r#"{"currency":"USD"}"#, Rejected(Reason::InvalidCustomData, NEEDS)),
        ("Purchase", r#"{"value":null,"currency":"USD"}"#, Rejected(Reason::InvalidCustomData, NEEDS)),
        ("Purchase", "{}", Rejected(Reason::InvalidCustomData, NEEDS)),
        ("Purchase", "null", Rejected(Reason::InvalidCustomData, NEEDS)),
        ("Purchase", r#"{"value":"12,50","currency":"EUR"}"#, Rejected(Reason::InvalidCustomData, VALUE)),
        ("Purchase", r#"{"value":true,"currency":"EUR"}"#, Rejected(Reason::InvalidCustomData, VALUE)),
        ("Purchase", r#"{"value":"john@example.com","currency":"EUR"}"#, Rejected(Reason::InvalidCustomData, VALUE)),
        ("Purchase", r#"{"value":1,"currency":"EURO"}"#, Rejected(Reason::InvalidCustomData, CURRENCY)),
        ("Purchase", r#"{"value":1,"currency":"XYZ"}"#, Rejected(Reason::InvalidCustomData, CURRENCY)),
        ("Purchase", r#"{"value":1,"currency":840}"#, Rejected(Reason::InvalidCustomData, CURRENCY)),
        (
            "Purchase",
            r#""john@example.com""#,
            Rejected(Reason::InvalidCustomData, "custom_data: must be an object; a Purchase needs value and currency in it"),
        ),
        ("PageView", r#"{"x":1,"x":2}"#, Rejected(Reason::DuplicateKey, "custom_data: has the same key twice; send each key once")),
        (
            "ViewContent",
            r#"{"contents":[{"id":"A","id":"B"}]}"#,
            Rejected(Reason::DuplicateKey, "custom_data.contents: an item has the same key twice; send each key once"),
        ),
    ];
    for (event_name, custom_data, want) in cases {
        check(event_name, custom_data, want);
    }
    let many: Vec<String> = (0..=super::MAX_KEYS).map(|i| format!("\"k{i}\":1")).collect();
    check(
        "Purchase",
        &format!("{{{}}}", many.join(",")),
        Rejected(Reason::InvalidCustomData, "custom_data: has 257 keys; send at most 256"),
    );
}
