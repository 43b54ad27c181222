//! Validation of a CAPI request the way Meta does it: sans-IO, a pure function of the
//! pixel id, the decoded parameters and `now`.
//!
//! All or nothing (docs/CAPI.md, "The request"): the first invalid event, in index order,
//! rejects the whole request with code 100 and `error_user_msg` "Event at index N: …".
//! Rules
//! (docs/CAPI.md: "Server event fields", "Event time limits", "User data", "Custom data",
//! "fbp and fbc"):
//! - `data`: an array of 1..=1000 events; an element may be the event object or a string
//!   holding its JSON (the Python SDK sends those);
//! - `event_name`: non-empty string; `event_time`: integer Unix seconds (or a string of
//!   digits), at most 7 days old (62 for `physical_store`; subcode 2804003) and at most
//!   60 s in the future (Meta documents no future limit; 60 s is RudderStack's rule and
//!   catches clients that send milliseconds);
//! - `action_source`: required, one of the enum; `website` events also need
//!   `event_source_url` and `user_data.client_user_agent`;
//! - `user_data`: required object; `em ph fn ln db ge ct st zp country` SHA-256 hashed,
//!   one string or an array of strings; `external_id` a string or array of strings,
//!   hashed or not (Meta recommends hashing it but accepts raw ids, and Meta's Python SDK
//!   sends it raw); `client_ip_address` an IP; `fbp`/`fbc` in cookie format;
//! - baseline matching rule: the customer-information keys present must not be only a
//!   subset of one of `{ct,country,st,zp,ge,client_user_agent}`, `{db,client_user_agent}`,
//!   `{fn,ge}`, `{ln,ge}` (subcode 2804050); no keys at all is such a subset;
//! - `custom_data`: an object; `value` a number or numeric string; `currency` 3 letters;
//! - `data_processing_options`: an array holding only `"LDU"`.
//!
//! Error messages name keys, never values: user data stays out of responses and logs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::body::{parse_strict, CapiRequest};
use super::graph::{GraphError, SUBCODE_INSUFFICIENT_CUSTOMER_INFO, SUBCODE_TOO_OLD};
use super::rules::{fbc_ok, fbp_ok, hashed_ok};
pub use super::rules::{ACTION_SOURCES, MAX_AGE_PHYSICAL_STORE_SECS, MAX_AGE_SECS, MAX_EVENTS, MAX_FUTURE_SECS};

/// `user_data` keys whose values must be SHA-256 hashes.
const HASHED_KEYS: [&str; 10] = [
    "em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country",
];

/// The baseline matching rule: customer information made only of (a subset of) one of
/// these sets is too broad to match anyone.
const INSUFFICIENT_SETS: [&[&str]; 4] = [
    &["ct", "country", "st", "zp", "ge", "client_user_agent"],
    &["db", "client_user_agent"],
    &["fn", "ge"],
    &["ln", "ge"],
];

/// The access tokens configured per pixel; empty means any token is accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens(pub BTreeMap<String, String>);

/// Checks the pixel id and the token, as Graph does before looking at the body.
///
/// A token is always required (Graph answers code 104 without one). With tokens
/// configured, a pixel that has none is an object the caller cannot see (100/33) and a
/// token that differs from the pixel's is invalid (190).
pub fn authorize(
    tokens: &Tokens,
    pixel_id: &str,
    access_token: Option<&str>,
) -> Result<(), GraphError> {
    if !is_pixel_id(pixel_id) {
        return Err(GraphError::unknown_object(pixel_id));
    }
    let token = access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(GraphError::missing_token)?;
    if tokens.0.is_empty() {
        return Ok(());
    }
    match tokens.0.get(pixel_id) {
        None => Err(GraphError::unknown_object(pixel_id)),
        Some(expected) if expected == token => Ok(()),
        Some(_) => Err(GraphError::invalid_token()),
    }
}

/// Pixel (dataset) ids are decimal numbers.
pub fn is_pixel_id(pixel_id: &str) -> bool {
    (1..=20).contains(&pixel_id.len()) && pixel_id.bytes().all(|b| b.is_ascii_digit())
}

/// Validates `data`; on success returns the events as objects (string elements decoded).
pub fn validate_events(
    request: CapiRequest,
    now_unix: i64,
) -> Result<Vec<Map<String, Value>>, GraphError> {
    let data = match request.data {
        None => return Err(GraphError::param("The parameter data is required")),
        Some(Value::Array(data)) => data,
        Some(_) => return Err(GraphError::param("param data must be an array.")),
    };
    if data.is_empty() {
        return Err(GraphError::param("param data must be a non-empty array."));
    }
    if data.len() > MAX_EVENTS {
        return Err(GraphError::param(format_args!(
            "param data must be an array of at most {MAX_EVENTS} events; it has {}.",
            data.len()
        )));
    }
    data.into_iter()
        .enumerate()
        .map(|(index, element)| {
            let event = event_object(index, element)?;
            check_event(index, &event, now_unix)?;
            Ok(event)
        })
        .collect()
}

/// An element of `data` as an object: the object itself, or the JSON in a string.
fn event_object(index: usize, element: Value) -> Result<Map<String, Value>, GraphError> {
    let not_object = || {
        GraphError::invalid_event(
            index,
            None,
            "Invalid event",
            "each element of data must be an event object or a string holding one.",
        )
    };
    match element {
        Value::Object(event) => Ok(event),
        Value::String(text) => match parse_strict(text.as_bytes()) {
            Ok(Value::Object(event)) => Ok(event),
            Ok(_) => Err(not_object()),
            Err(e) => Err(GraphError::invalid_event(
                index,
                None,
                "Invalid event",
                format_args!("the string element is not valid JSON: {e}."),
            )),
        },
        _ => Err(not_object()),
    }
}

fn check_event(index: usize, event: &Map<String, Value>, now_unix: i64) -> Result<(), GraphError> {
    let fail =
        |title: &str, detail: &str| Err(GraphError::invalid_event(index, None, title, detail));

    match event.get("event_name") {
        Some(Value::String(name)) if !name.trim().is_empty() => {}
        Some(Value::String(_)) => {
            return fail("Invalid event_name", "event_name must not be empty.")
        }
        Some(_) => return fail("Invalid event_name", "event_name must be a string."),
        None => return fail("Missing event_name", "event_name is required."),
    }

    let action_source = match event.get("action_source") {
        Some(Value::String(source)) if ACTION_SOURCES.contains(&source.as_str()) => source.as_str(),
        Some(_) => {
            return fail(
                "Invalid action_source",
                &format!(
                    "action_source must be one of {}.",
                    ACTION_SOURCES.join(", ")
                ),
            )
        }
        None => return fail("Missing action_source", "action_source is required."),
    };

    check_event_time(index, event.get("event_time"), action_source, now_unix)?;

    let user_data = match event.get("user_data") {
        Some(Value::Object(user_data)) => user_data,
        Some(_) => return fail("Invalid user_data", "user_data must be an object."),
        None => return fail("Missing user_data", "user_data is required."),
    };

    if action_source == "website" {
        match event.get("event_source_url") {
            Some(Value::String(url)) if !url.trim().is_empty() => {}
            Some(_) => {
                return fail(
                    "Invalid event_source_url",
                    "event_source_url must be a non-empty string.",
                )
            }
            None => {
                return fail(
                    "Missing event_source_url",
                    "event_source_url is required for website events.",
                )
            }
        }
        if !is_present(user_data.get("client_user_agent")) {
            return fail(
                "Missing client_user_agent",
                "user_data.client_user_agent is required for website events.",
            );
        }
    }

    check_user_data(index, user_data)?;

    match event.get("custom_data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(custom_data)) => check_custom_data(index, custom_data)?,
        Some(_) => return fail("Invalid custom_data", "custom_data must be an object."),
    }

    match event.get("data_processing_options") {
        None | Some(Value::Null) => {}
        Some(Value::Array(options)) if options.iter().all(|o| o == "LDU") => {}
        Some(_) => {
            return fail(
                "Invalid data_processing_options",
                "data_processing_options must be an array whose only accepted value is \"LDU\".",
            )
        }
    }
    Ok(())
}

fn check_event_time(
    index: usize,
    value: Option<&Value>,
    action_source: &str,
    now_unix: i64,
) -> Result<(), GraphError> {
    let invalid = || {
        GraphError::invalid_event(
            index,
            None,
            "Invalid event_time",
            "event_time must be a Unix timestamp in seconds (an integer).",
        )
    };
    let time = match value {
        None => {
            return Err(GraphError::invalid_event(
                index,
                None,
                "Missing event_time",
                "event_time is required.",
            ))
        }
        Some(Value::Number(n)) => n.as_i64().ok_or_else(invalid)?,
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().map_err(|_| invalid())?
        }
        Some(_) => return Err(invalid()),
    };
    let (max_age, days) = if action_source == "physical_store" {
        (MAX_AGE_PHYSICAL_STORE_SECS, 62)
    } else {
        (MAX_AGE_SECS, 7)
    };
    let age = i128::from(now_unix) - i128::from(time);
    if age > i128::from(max_age) {
        return Err(GraphError::invalid_event(
            index,
            Some(SUBCODE_TOO_OLD),
            "Event Timestamp Too Old",
            format_args!(
                "The timestamp for this event is too far in the past. Events need to be \
                 sent from your server within {days} days of when they occurred."
            ),
        ));
    }
    if -age > i128::from(MAX_FUTURE_SECS) {
        return Err(GraphError::invalid_event(
            index,
            None,
            "Event Timestamp In The Future",
            format_args!(
                "event_time is more than {MAX_FUTURE_SECS} seconds in the future; it must be \
                 when the event happened, in Unix seconds (not milliseconds)."
            ),
        ));
    }
    Ok(())
}

fn check_user_data(index: usize, user_data: &Map<String, Value>) -> Result<(), GraphError> {
    let fail =
        |title: &str, detail: String| Err(GraphError::invalid_event(index, None, title, detail));

    for key in HASHED_KEYS {
        // Empty values carry nothing and count as absent, here and for the baseline rule.
        let Some(value) = user_data.get(key).filter(|v| is_present(Some(v))) else {
            continue;
        };
        match strings_of(value) {
            Some(values) if values.iter().all(|v| hashed_ok(v)) => {}
            Some(_) => {
                return fail(
                    "Unhashed customer information",
                    format!(
                        "user_data.{key} must be SHA-256 hashed: 64 lowercase hexadecimal \
                         characters of the normalized value."
                    ),
                )
            }
            None => {
                return fail(
                    "Invalid customer information",
                    format!("user_data.{key} must be a string or an array of strings."),
                )
            }
        }
    }
    if let Some(value) = user_data.get("external_id").filter(|v| is_present(Some(v))) {
        match strings_of(value) {
            Some(values) if values.iter().all(|v| !v.is_empty()) => {}
            _ => {
                return fail(
                    "Invalid customer information",
                    "user_data.external_id must be a non-empty string or an array of them."
                        .to_owned(),
                )
            }
        }
    }
    match user_data.get("client_ip_address") {
        None | Some(Value::Null) => {}
        Some(Value::String(ip)) if ip.parse::<IpAddr>().is_ok() => {}
        Some(_) => {
            return fail(
                "Invalid client_ip_address",
                "user_data.client_ip_address must be an IPv4 or IPv6 address.".to_owned(),
            )
        }
    }
    match user_data.get("client_user_agent") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => {
            return fail(
                "Invalid client_user_agent",
                "user_data.client_user_agent must be a string.".to_owned(),
            )
        }
    }
    for (key, valid) in [
        ("fbp", fbp_ok as fn(&str) -> bool),
        ("fbc", fbc_ok),
    ] {
        match user_data.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(cookie)) if valid(cookie) => {}
            Some(_) => {
                return fail(
                    &format!("Invalid {key}"),
                    format!(
                        "user_data.{key} must look like fb.{{subdomainIndex}}.{{creationTimeMs}}.{{value}}."
                    ),
                )
            }
        }
    }

    let present: Vec<&str> = user_data
        .iter()
        .filter(|(_, value)| is_present(Some(value)))
        .map(|(key, _)| key.as_str())
        .collect();
    let too_broad = INSUFFICIENT_SETS
        .iter()
        .any(|set| present.iter().all(|key| set.contains(key)));
    if too_broad {
        return Err(GraphError::invalid_event(
            index,
            Some(SUBCODE_INSUFFICIENT_CUSTOMER_INFO),
            "Customer information parameters",
            "This event has insufficient customer information.",
        ));
    }
    Ok(())
}

fn check_custom_data(index: usize, custom_data: &Map<String, Value>) -> Result<(), GraphError> {
    match custom_data.get("value") {
        None | Some(Value::Null) | Some(Value::Number(_)) => {}
        Some(Value::String(s)) if is_decimal(s) => {}
        Some(_) => {
            return Err(GraphError::invalid_event(
                index,
                None,
                "Invalid value",
                "custom_data.value must be a number.",
            ))
        }
    }
    match custom_data.get("currency") {
        None | Some(Value::Null) => {}
        Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {}
        Some(_) => {
            return Err(GraphError::invalid_event(
                index,
                None,
                "Invalid currency",
                "custom_data.currency must be a 3-letter ISO 4217 code.",
            ))
        }
    }
    Ok(())
}

/// The strings of a value that may be one string or an array of strings.
fn strings_of(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// Whether a `user_data` value carries information (null, "" and [] do not).
fn is_present(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(_) => true,
    }
}

/// A plain decimal number such as `142.52` or `-3`: no `NaN`, `inf` or exponent tricks
/// that `f64::from_str` would let through.
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty())
}

#[cfg(test)]
mod tests;
