//! The HTTP error answers: every way a request can fail to parse, the timeouts, and the
//! router's own refusals, each with its status and a text that says what was wrong and
//! what the client should do. The texts hold limits and names, never request bytes.

use std::fmt::{self, Write as _};

use super::response::{decimal, write_response, Response};
use super::ReplyTo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // 400: the request cannot be read reliably.
    #[error("the request line is malformed; send `METHOD /path HTTP/1.1` and CRLF")]
    BadRequestLine,
    #[error("a header name has a byte that is not allowed, or a header line has no colon; send `Name: value` lines with token names such as Content-Type")]
    BadHeaderName,
    #[error("a header value holds a control character; remove it or percent-encode the value")]
    BadHeaderValue,
    #[error("a line of the request head is not ended by CRLF; end every line with CRLF")]
    BadLineEnding,
    #[error("a header line starts with whitespace (obsolete line folding); send each header on one line")]
    ObsFold,
    #[error("the request target is not a path; send an absolute path such as /capig/events")]
    BadTarget,
    #[error("the HTTP/1.1 request has no Host header; send one, e.g. `Host: capig.example.com`")]
    MissingHost,
    #[error("the request has more than one Host header; send exactly one")]
    DuplicateHost,
    #[error("the Host header is not a host name, IP address or host:port; send the gateway's host name")]
    BadHost,
    #[error("Content-Length is not a decimal number of bytes; send the body length in digits")]
    BadContentLength,
    #[error("the request has Content-Length values that disagree; send one")]
    ConflictingContentLength,
    #[error("the request has both Content-Length and Transfer-Encoding; send only one of them")]
    ContentLengthWithTransferEncoding,
    #[error("Transfer-Encoding is not allowed in HTTP/1.0; send Content-Length, or use HTTP/1.1")]
    TransferEncodingHttp10,
    #[error("Transfer-Encoding must end with chunked, applied once; send `Transfer-Encoding: chunked` or a Content-Length")]
    ChunkedNotFinal,
    #[error("a chunk size is not hexadecimal or is followed by something other than `;extension` and CRLF; send chunks as <hex size> CRLF <data> CRLF")]
    BadChunkSize,
    #[error("a chunk size has more than 16 hex digits; send sizes without padding zeros")]
    ChunkSizeTooLong,
    #[error("a chunk-size line or the blank line after the last chunk is not ended by CRLF; end them with CRLF, not a bare LF or CR")]
    ChunkLineEnding,
    #[error("chunk data is not followed by CRLF; the chunk size does not match its data")]
    ChunkDataEnd,
    #[error("the chunk extensions of the body add up to more than {limit} bytes; send chunks without extensions")]
    ChunkExtensionsTooLong { limit: usize },
    #[error("a trailer line after the last chunk is malformed; send `Name: value` lines or none")]
    BadTrailer,

    // 408
    #[error("the request head did not arrive within {after_ms} ms; send the whole request at once")]
    HeaderTimeout { after_ms: u64 },
    #[error("the request body did not arrive within {after_ms} ms of its head; send it without pauses")]
    BodyTimeout { after_ms: u64 },
    /// Closes without an answer (see [`Expired::Close`](super::Expired::Close)); the text
    /// is for logs.
    #[error("the connection was idle for {after_ms} ms and is closed; open a new one")]
    IdleTimeout { after_ms: u64 },

    // 411
    #[error("the request has a body but no Content-Length; send Content-Length or `Transfer-Encoding: chunked`")]
    LengthRequired,
    // 413
    #[error("request body larger than {limit} bytes; send fewer events per request")]
    BodyTooLarge { limit: usize },
    // 414
    #[error("request line longer than {limit} bytes; send the data in the body, not the URL")]
    UriTooLong { limit: usize },
    // 417
    #[error("only `Expect: 100-continue` is supported; remove the other expectation")]
    ExpectationFailed,
    // 431
    #[error("request head larger than {limit} bytes; send fewer or shorter headers (cookies count)")]
    HeadersTooLarge { limit: usize },
    #[error("more than {limit} header lines; send fewer headers")]
    TooManyHeaders { limit: usize },
    #[error("trailers larger than {limit} bytes; send fewer trailer fields")]
    TrailersTooLarge { limit: usize },
    // 501
    #[error("only the chunked transfer coding is supported; send the body uncompressed, with Content-Length or chunked")]
    UnsupportedTransferCoding,
    // 505
    #[error("only HTTP/1.0 and HTTP/1.1 are spoken here; send the request as HTTP/1.1")]
    VersionNotSupported,

    // The router's refusals: the request was read whole, so the connection can go on.
    #[error("no such endpoint; send events to POST /capig/events or POST /capi/{{pixel_id}}/events")]
    NotFound,
    /// `allow` is the `Allow` header's value, e.g. `"GET, HEAD"`.
    #[error("this endpoint does not take that method; use {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("the gateway cannot take requests right now; retry in {retry_after_secs} seconds")]
    Unavailable { retry_after_secs: u32 },
}

impl Error {
    pub fn status(&self) -> u16 {
        use Error::*;
        match self {
            BadRequestLine | BadHeaderName | BadHeaderValue | BadLineEnding | ObsFold
            | BadTarget | MissingHost | DuplicateHost | BadHost | BadContentLength
            | ConflictingContentLength | ContentLengthWithTransferEncoding
            | TransferEncodingHttp10 | ChunkedNotFinal | BadChunkSize | ChunkSizeTooLong
            | ChunkLineEnding | ChunkDataEnd | ChunkExtensionsTooLong { .. } | BadTrailer => 400,
            NotFound => 404,
            MethodNotAllowed { .. } => 405,
            HeaderTimeout { .. } | BodyTimeout { .. } | IdleTimeout { .. } => 408,
            LengthRequired => 411,
            BodyTooLarge { .. } => 413,
            UriTooLong { .. } => 414,
            ExpectationFailed => 417,
            HeadersTooLarge { .. } | TooManyHeaders { .. } | TrailersTooLarge { .. } => 431,
            UnsupportedTransferCoding => 501,
            Unavailable { .. } => 503,
            VersionNotSupported => 505,
        }
    }

    /// The standard reason phrase of [`Error::status`].
    pub fn reason(&self) -> &'static str {
        super::reason_phrase(self.status())
    }

    /// Whether the connection must be closed after the answer: always, except for the
    /// router's refusals of a request that was read whole. After a framing error the
    /// next request's start is unknown; after a refused head the client may still be
    /// sending a body that would be read as a request.
    pub fn must_close(&self) -> bool {
        !matches!(self, Error::NotFound | Error::MethodNotAllowed { .. } | Error::Unavailable { .. })
    }

    /// Appends the complete answer: status line, `Content-Type: text/plain`, `Allow` for
    /// 405, `Retry-After` for 503, `Connection: close` when closing, and the text.
    pub fn write_response(&self, out: &mut Vec<u8>, to: ReplyTo) {
        let mut text = TextBuf::new();
        // Cannot fail: the buffer truncates instead, and every text fits.
        let _ = writeln!(text, "{self}");
        let mut number = [0; 20];
        let mut headers: [(&str, &[u8]); 2] = [("Content-Type", b"text/plain; charset=utf-8"), ("", b"")];
        let n = match *self {
            Error::MethodNotAllowed { allow } => {
                headers[1] = ("Allow", allow.as_bytes());
                2
            }
            Error::Unavailable { retry_after_secs } => {
                headers[1] = ("Retry-After", decimal(u64::from(retry_after_secs), &mut number));
                2
            }
            _ => 1,
        };
        let to = if self.must_close() { to.closing() } else { to };
        write_response(
            out,
            &Response { status: self.status(), headers: &headers[..n], body: text.as_bytes(), to },
        );
    }
}

/// A fixed stack buffer for an error text, so that answering an error allocates nothing.
struct TextBuf {
    bytes: [u8; 256],
    len: usize,
}

impl TextBuf {
    fn new() -> TextBuf {
        TextBuf { bytes: [0; 256], len: 0 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let take = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
