//! Graph API errors as the simulator answers them: the error envelope, the HTTP status,
//! and the catalogue of the codes it can inject.
//!
//! Format (docs/CAPI.md, "Answers and errors"): `{"error":{"message","type","code",
//! "error_subcode","is_transient","error_user_title","error_user_msg","fbtrace_id"}}`.
//! Graph leaves out `error_subcode`, `error_user_title` and `error_user_msg` when it has
//! nothing to say, and so does the simulator; `message`, `type`, `code`, `is_transient`
//! and `fbtrace_id` are always there.
//!
//! HTTP status per code (Graph answers almost every error with 400; clients must classify
//! by `code`, never by status or `type`):
//! - 1 (unknown error, transient) → 500; 2 (service unavailable) → 503;
//! - 4, 17, 341, 613 (throttling), 100 (invalid parameter), 104 (no token),
//!   190 (bad token) → 400;
//! - the simulator's own protocol errors: unknown path → 404, wrong method → 405,
//!   body too large → 413.
//!
//! A missing token gets code 104 "An access token is required to request this
//! resource.", which is what Graph itself answers (captured responses in the wild all
//! show 104, not 190); a token that does not match gets 190.

use serde_json::{json, Value};

/// The `type` Graph puts on nearly every error, throttling included.
pub const OAUTH_EXCEPTION: &str = "OAuthException";
/// The `type` Graph uses for "no such object / not allowed on this object".
pub const GRAPH_METHOD_EXCEPTION: &str = "GraphMethodException";

/// Subcode of an event older than the 7-day window (62 days for `physical_store`).
pub const SUBCODE_TOO_OLD: u32 = 2_804_003;
/// Subcode of an event that fails the baseline matching rule.
pub const SUBCODE_INSUFFICIENT_CUSTOMER_INFO: u32 = 2_804_050;
/// Subcode of code 17, "User request limit reached".
pub const SUBCODE_USER_REQUEST_LIMIT: u32 = 2_446_079;
/// Subcode of code 613 for ad-account throttling.
pub const SUBCODE_AD_ACCOUNT_LIMIT: u32 = 1_487_742;
/// Subcode of code 100 for an object that does not exist or the token cannot see.
pub const SUBCODE_UNKNOWN_OBJECT: u32 = 33;
/// Subcode Graph puts on code 1, "unknown error".
pub const SUBCODE_UNKNOWN: u32 = 99;

/// One Graph API error answer, before it gets its `fbtrace_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError {
    /// The HTTP status of the answer.
    pub http_status: u16,
    /// Graph's `code`.
    pub code: u32,
    /// Graph's `error_subcode`, when it has one.
    pub subcode: Option<u32>,
    /// Graph's `type`.
    pub kind: &'static str,
    /// Graph's `message`.
    pub message: String,
    /// Whether Graph says retrying the same request may work.
    pub is_transient: bool,
    /// `error_user_title`.
    pub user_title: Option<String>,
    /// `error_user_msg`.
    pub user_msg: Option<String>,
}

impl GraphError {
    fn new(http_status: u16, code: u32, message: impl Into<String>) -> GraphError {
        GraphError {
            http_status,
            code,
            subcode: None,
            kind: OAUTH_EXCEPTION,
            message: message.into(),
            is_transient: false,
            user_title: None,
            user_msg: None,
        }
    }

    fn with_subcode(mut self, subcode: u32) -> GraphError {
        self.subcode = Some(subcode);
        self
    }

    fn transient(mut self) -> GraphError {
        self.is_transient = true;
        self
    }

    /// A request-level parameter error, code 100, worded like Graph's `(#100) …`.
    pub fn param(message: impl std::fmt::Display) -> GraphError {
        GraphError::new(400, 100, format!("(#100) {message}"))
    }

    /// An event that fails validation: code 100 "Invalid parameter", with the index of
    /// the offending event and what is wrong in `error_user_msg`.
    pub fn invalid_event(
        index: usize,
        subcode: Option<u32>,
        title: &str,
        detail: impl std::fmt::Display,
    ) -> GraphError {
        GraphError {
            subcode,
            user_title: Some(title.to_owned()),
            user_msg: Some(format!("Event at index {index}: {detail}")),
            ..GraphError::new(400, 100, "Invalid parameter")
        }
    }

    /// No `access_token` anywhere in the request.
    pub fn missing_token() -> GraphError {
        GraphError::new(
            400,
            104,
            "An access token is required to request this resource.",
        )
    }

    /// A token that is not the one configured for the pixel.
    pub fn invalid_token() -> GraphError {
        GraphError::new(
            400,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    /// A pixel the configured tokens do not cover (or that is not a pixel id at all).
    pub fn unknown_object(pixel_id: &str) -> GraphError {
        let shown: String = pixel_id.chars().take(64).collect();
        GraphError {
            kind: GRAPH_METHOD_EXCEPTION,
            ..GraphError::new(
                400,
                100,
                format!(
                    "Unsupported post request. Object with ID '{shown}' does not exist, \
                     cannot be loaded due to missing permissions, or does not support this \
                     operation. Please read the Graph API documentation at \
                     https://developers.facebook.com/docs/graph-api"
                ),
            )
            .with_subcode(SUBCODE_UNKNOWN_OBJECT)
        }
    }

    /// A path the simulator does not serve.
    pub fn unknown_path(path: &str) -> GraphError {
        let shown: String = path.chars().take(200).collect();
        GraphError::new(404, 2500, format!("Unknown path components: {shown}"))
    }

    /// A known path asked with the wrong method.
    pub fn wrong_method(method: &str, allowed: &str) -> GraphError {
        let shown: String = method.chars().take(16).collect();
        GraphError::new(
            405,
            100,
            format!(
                "Unsupported {} request. This path only answers {allowed}.",
                shown.to_ascii_lowercase()
            ),
        )
        .with_subcode(SUBCODE_UNKNOWN_OBJECT)
    }

    /// A body over the simulator's size cap.
    pub fn body_too_large(cap: usize) -> GraphError {
        GraphError::new(
            413,
            100,
            format!("(#100) The request body is larger than the simulator's limit of {cap} bytes."),
        )
    }

    /// The error Graph answers for an injected (or throttled) code, or `None` if the
    /// simulator does not know how Graph words that code.
    pub fn injected(code: u32) -> Option<GraphError> {
        let error = match code {
            1 => GraphError::new(500, 1, "An unknown error occurred")
                .with_subcode(SUBCODE_UNKNOWN)
                .transient(),
            2 => GraphError::new(
                503,
                2,
                "An unexpected error has occurred. Please retry your request later.",
            )
            .transient(),
            4 => GraphError::new(400, 4, "(#4) Application request limit reached").transient(),
            17 => GraphError::new(400, 17, "(#17) User request limit reached")
                .with_subcode(SUBCODE_USER_REQUEST_LIMIT)
                .transient(),
            100 => GraphError::new(400, 100, "(#100) Invalid parameter"),
            190 => GraphError::invalid_token(),
            341 => GraphError::new(400, 341, "(#341) Application limit reached").transient(),
            613 => GraphError::new(
                400,
                613,
                "(#613) Calls to this api have exceeded the rate limit.",
            )
            .with_subcode(SUBCODE_AD_ACCOUNT_LIMIT)
            .transient(),
            _ => return None,
        };
        Some(error)
    }

    /// The Graph codes [`GraphError::injected`] knows.
    pub const INJECTABLE_CODES: [u32; 8] = [1, 2, 4, 17, 100, 190, 341, 613];

    /// The JSON envelope, stamped with `fbtrace_id`.
    pub fn envelope(&self, fbtrace_id: &str) -> Value {
        let mut error = serde_json::Map::new();
        error.insert("message".into(), json!(self.message));
        error.insert("type".into(), json!(self.kind));
        error.insert("code".into(), json!(self.code));
        if let Some(subcode) = self.subcode {
            error.insert("error_subcode".into(), json!(subcode));
        }
        error.insert("is_transient".into(), json!(self.is_transient));
        if let Some(title) = &self.user_title {
            error.insert("error_user_title".into(), json!(title));
        }
        if let Some(msg) = &self.user_msg {
            error.insert("error_user_msg".into(), json!(msg));
        }
        error.insert("fbtrace_id".into(), json!(fbtrace_id));
        json!({ "error": error })
    }
}

/// The alphabet of `fbtrace_id` values: URL-safe base64, like Meta's.
const TRACE_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of the `fbtrace_id` values the simulator makes.
pub const FBTRACE_ID_LEN: usize = 11;

/// An `fbtrace_id` made of the bits of `random`, e.g. `HHjFlsv3ppM`.
pub fn fbtrace_id(mut random: u64) -> String {
    let mut id = String::with_capacity(FBTRACE_ID_LEN);
    for _ in 0..FBTRACE_ID_LEN {
        id.push(char::from(TRACE_ALPHABET[(random & 63) as usize]));
        random = random.rotate_right(6);
    }
    id
}

#[cfg(test)]
mod tests;
