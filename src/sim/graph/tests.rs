//! The envelope of every error code, through [`check`].

use serde_json::{json, Value};

use super::*;

/// Expected envelope fields (besides `fbtrace_id`) and HTTP status.
fn check(name: &str, error: GraphError, status: u16, expected: Value) {
    assert_eq!(error.http_status, status, "{name}: status");
    let mut envelope = error.envelope("AbC_-123xyz");
    let inner = envelope["error"].as_object_mut().expect("error object");
    assert_eq!(
        inner.remove("fbtrace_id"),
        Some(json!("AbC_-123xyz")),
        "{name}: fbtrace_id"
    );
    assert_eq!(Value::Object(inner.clone()), expected, "{name}");
}

#[test]
fn envelopes() {
    let cases: Vec<(&str, GraphError, u16, Value)> = vec![
        (
            "code 1",
            GraphError::injected(1).unwrap(),
            500,
            json!({"message": "An unknown error occurred", "type": "OAuthException", "code": 1, "error_subcode": 99, "is_transient": true}),
        ),
        (
            "code 2",
            GraphError::injected(2).unwrap(),
            503,
            json!({"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "code": 2, "is_transient": true}),
        ),
        (
            "code 4",
            GraphError::injected(4).unwrap(),
            400,
            json!({"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4, "is_transient": true}),
        ),
        (
            "code 17",
            GraphError::injected(17).unwrap(),
            400,
            json!({"message": "(#17) User request limit reached", "type": "OAuthException", "code": 17, "error_subcode": 2446079, "is_transient": true}),
        ),
        (
            "code 100",
            GraphError::injected(100).unwrap(),
            400,
            json!({"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100, "is_transient": false}),
        ),
        (
            "code 190",
            GraphError::injected(190).unwrap(),
            400,
            json!({"message": "Invalid OAuth access token - Cannot parse access token", "type": "OAuthException", "code": 190, "is_transient": false}),
        ),
        (
            "code 341",
            GraphError::injected(341).unwrap(),
            400,
            json!({"message": "(#341) Application limit reached", "type": "OAuthException", "code": 341, "is_transient": true}),
        ),
        (
            "code 613",
            GraphError::injected(613).unwrap(),
            400,
            json!({"message": "(#613) Calls to this api have exceeded the rate limit.", "type": "OAuthException", "code": 613, "error_subcode": 1487742, "is_transient": true}),
        ),
        (
            "missing token",
            GraphError::missing_token(),
            400,
            json!({"message": "An access token is required to request this resource.", "type": "OAuthException", "code": 104, "is_transient": false}),
        ),
        (
            "unknown pixel",
            GraphError::unknown_object("42"),
            400,
            json!({"message": "Unsupported post request. Object with ID '42' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
                   "type": "GraphMethodException", "code": 100, "error_subcode": 33, "is_transient": false}),
        ),
        (
            "invalid event",
            GraphError::invalid_event(
                3,
                Some(SUBCODE_TOO_OLD),
                "Event Timestamp Too Old",
                "too old.",
            ),
            400,
            json!({"message": "Invalid parameter", "type": "OAuthException", "code": 100, "error_subcode": 2804003, "is_transient": false,
                   "error_user_title": "Event Timestamp Too Old", "error_user_msg": "Event at index 3: too old."}),
        ),
        (
            "unknown path",
            GraphError::unknown_path("/nope"),
            404,
            json!({"message": "Unknown path components: /nope", "type": "OAuthException", "code": 2500, "is_transient": false}),
        ),
        (
            "wrong method",
            GraphError::wrong_method("GET", "POST"),
            405,
            json!({"message": "Unsupported get request. This path only answers POST.", "type": "OAuthException", "code": 100, "error_subcode": 33, "is_transient": false}),
        ),
        (
            "too large",
            GraphError::body_too_large(10),
            413,
            json!({"message": "(#100) The request body is larger than the simulator's limit of 10 bytes.", "type": "OAuthException", "code": 100, "is_transient": false}),
        ),
    ];
    for (name, error, status, expected) in cases {
        check(name, error, status, expected);
    }
    assert!(GraphError::INJECTABLE_CODES
        .iter()
        .all(|&c| GraphError::injected(c).is_some()));
    assert_eq!(GraphError::injected(3), None);
}

#[test]
fn trace_ids_look_like_metas() {
    for seed in [0, 1, u64::MAX, 0xDEAD_BEEF] {
        let id = fbtrace_id(seed);
        assert_eq!(id.len(), FBTRACE_ID_LEN);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
    }
    assert_ne!(fbtrace_id(1), fbtrace_id(2));
}
