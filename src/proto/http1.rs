//! HTTP/1.1 server side, sans-IO: request heads and bodies decoded from the connection's
//! read buffer, responses appended to a write buffer, and the per-connection timer state.
//! The runtime driver owns the socket and the clock and calls in with bytes and `now`.
//!
//! # Design constraints
//! - **Sans-IO.** Nothing here reads a socket or a clock. [`Conn`] takes `now: Instant` in
//!   every call that can change a deadline and says which deadline applies
//!   ([`Conn::deadline`]); the driver arms its own timer and calls [`Conn::expire`].
//! - **No allocation per request.** A request is decoded into [`RequestHead`], a view that
//!   borrows the read buffer and caller-provided header slots ([`header_slots`], on the
//!   stack, sized by the driver; slots past [`Limits::header_count`] are not used). Error
//!   texts are `Display` into a stack buffer; responses append to the caller's `Vec`.
//! - **Two phases per head**, like a frame codec: first [`find_head_end`] (or the
//!   incremental [`HeadScan`] inside [`Conn`]) looks for the blank line that ends the head
//!   and enforces the size caps; it returns "incomplete" without touching anything else.
//!   Only a complete head goes through `httparse` and the header semantics
//!   ([`parse_head`]). The scan looks at each byte once however the bytes arrive;
//!   `httparse` parses a head once, or a second time when its body came in later reads
//!   (the first view cannot outlive the read that made it).
//! - **Chunked bodies are decoded in place.** [`ChunkedDecoder`] moves chunk data down
//!   over the chunk framing, so the body ends up as one contiguous `&mut [u8]` right after
//!   the head (ready for simd-json's in-place parse) and the buffer never holds more than
//!   the decoded data plus what the last read brought. It resumes across reads.
//! - **Split-invariant.** Every decision depends only on the bytes, never on where reads
//!   split them: errors are found at fixed byte positions. The fuzz target checks it.
//! - **Nothing from the request is echoed.** Error texts and `Debug` output name the
//!   problem and the limit, never a header value, the query or body bytes (they may hold
//!   personal data: cookies, e-mail addresses in URLs).
//!
//! # The driver's contract
//! The driver keeps the bytes of the current request at the front of the slice it passes
//! to [`Conn::decode`] and appends what it reads after them. After
//! [`Decoded::Incomplete`] only `buf[..filled]` matters (less than what was passed only
//! while a chunked body is decoded, which frees the framing bytes); new bytes go at
//! `filled`. After [`Decoded::Request`] the request used `consumed` bytes; the next
//! (pipelined) request starts there, and is decoded by calling `decode` again on the rest
//! before reading more. `send_continue` asks for [`CONTINUE`] to be written once.
//!
//! # Limits and answers
//! Every error below closes the connection (the framing can no longer be trusted, or the
//! client would otherwise keep sending a body nobody reads); [`Error::must_close`] is
//! false only for the router's own 404/405/503.
//!
//! | status | when |
//! |---|---|
//! | 400 | malformed request line or header syntax (`httparse`), whitespace at the start of a header line (obs-fold, RFC 9112 §5.2), a request target that is not origin-form (`/path?query`), absolute-form (`http://host/path`), `*` with OPTIONS or authority-form with CONNECT; HTTP/1.1 without `Host`, more than one `Host`, a `Host` with bytes a host cannot have; `Content-Length` that is not 1*DIGIT (also empty, signed, or more than `u64`), several `Content-Length` values that disagree (identical repeats are accepted, RFC 9110 §8.6); `Transfer-Encoding` together with `Content-Length` (request smuggling, RFC 9112 §6.3), `Transfer-Encoding` in HTTP/1.0, `chunked` missing, repeated or not last; a chunk size that is not hex, longer than 16 hex digits, a chunk line or chunk data not ended by CRLF (bare LF refused), chunk extensions above `header_bytes` in total, a malformed trailer line |
//! | 408 | [`Conn::expire`] after `header_timeout` in [`State::ReadingHead`] (counted from accept, or from the first byte other than CR/LF after an idle period) or `body_timeout` in [`State::ReadingBody`] (from the end of the head, for the whole body). An idle keep-alive connection past `idle_timeout` is closed without an answer ([`Expired::Close`]), since a client may be sending its next request at that moment |
//! | 411 | POST, PUT or PATCH with neither `Content-Length` nor `Transfer-Encoding` |
//! | 413 | `Content-Length` above `body_bytes`, decided from the head before the body is read; chunked: as soon as a chunk size would take the total above `body_bytes` |
//! | 414 | the request line (before its LF) longer than `request_line_bytes` |
//! | 417 | an `Expect` other than `100-continue` |
//! | 431 | the head (leading blank lines, request line, headers, final blank line) longer than `header_bytes`; more than `header_count` headers; trailers longer than `header_bytes` |
//! | 501 | a transfer coding other than `chunked` (e.g. `gzip, chunked`) |
//! | 505 | an `HTTP/x.y` version other than 1.0 and 1.1 |
//!
//! Accepted and interpreted: leading empty lines before the request line (RFC 9112 §2.2),
//! bare LF line ends in the head (not in chunked framing), `Connection` as a
//! case-insensitive token list (`close` wins; HTTP/1.0 persists only with `keep-alive`,
//! HTTP/1.1 unless `close`), `Expect: 100-continue` (ignored for HTTP/1.0, RFC 9110
//! §10.1.1, and when there is no body to wait for), `Upgrade: websocket` with
//! `Connection: upgrade` reported by [`RequestHead::is_websocket_upgrade`] (the handshake
//! itself is `proto::websocket`'s), chunk extensions (ignored) and trailers (skipped).
//!
//! Modules: `head` (scan and parse of a head), `chunked` (the in-place decoder), `conn`
//! (the per-connection state machine), `response` (writer, reason phrases, dates),
//! `error`.

mod chunked;
mod conn;
mod error;
mod head;
mod response;

use std::time::Duration;

pub use chunked::{Chunked, ChunkedDecoder};
pub use conn::{Conn, Deadline, Decoded, Expired, Incomplete, Request, State, TimeoutKind};
pub use error::Error;
pub use head::{
    find_head_end, header_slots, parse_head, BodyFraming, HeadScan, HeaderSlot, Method,
    RequestHead, Version,
};
pub use response::{
    http_date, reason_phrase, write_continue, write_response, Response, CONTINUE,
};

/// A request line longer than this is refused with 414 even when `header_bytes` is
/// larger: no endpoint of the gateway has a long URL, and a long one is most likely a
/// tracking query string that a client should have sent as a body.
pub const DEFAULT_REQUEST_LINE_BYTES: usize = 8 << 10;

/// The codec's caps and timeouts. Build it from the configuration with `From<&Limits>`;
/// the `Default` is the configuration's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole head: request line, headers and the blank line; also the cap on trailers
    /// and on chunk extensions of one body.
    pub header_bytes: usize,
    /// The request line before its line feed.
    pub request_line_bytes: usize,
    /// Header lines of one request.
    pub header_count: usize,
    /// A body after chunked decoding.
    pub body_bytes: usize,
    /// From accept, or from the first byte of a request on a kept-alive connection, to
    /// the end of the head.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// A kept-alive connection with no byte of a next request.
    pub idle_timeout: Duration,
}

impl From<&crate::config::Limits> for Limits {
    fn from(c: &crate::config::Limits) -> Limits {
        Limits {
            header_bytes: c.header_bytes,
            request_line_bytes: c.header_bytes.min(DEFAULT_REQUEST_LINE_BYTES),
            header_count: c.header_count,
            body_bytes: c.body_bytes,
            header_timeout: Duration::from_millis(c.header_timeout_ms),
            body_timeout: Duration::from_millis(c.body_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from(&crate::config::Limits::default())
    }
}

/// Whether the connection stays open after the response, and what the response must say
/// for that: HTTP/1.1 persists unless told otherwise, an HTTP/1.0 client only keeps the
/// connection when the response says `Connection: keep-alive` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    KeepAlive,
    KeepAliveHttp10,
    Close,
}

impl Persistence {
    pub fn keeps_alive(self) -> bool {
        self != Persistence::Close
    }
}

/// What a response has to know about the request it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub persistence: Persistence,
    /// The request was `HEAD`: the response carries `Content-Length` but no body bytes.
    pub head_only: bool,
}

impl ReplyTo {
    /// For answers without a usable request (parse errors): close afterwards.
    pub const CLOSE: ReplyTo = ReplyTo { persistence: Persistence::Close, head_only: false };

    /// The same, but closing the connection (the driver is shutting down, or the
    /// handler wants it).
    pub fn closing(self) -> ReplyTo {
        ReplyTo { persistence: Persistence::Close, ..self }
    }
}

#[cfg(test)]
mod tests;
