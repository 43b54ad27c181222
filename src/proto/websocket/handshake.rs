//! The opening handshake, server side (RFC 6455 §4.2): checking an upgrade request's
//! headers, computing `Sec-WebSocket-Accept`, and writing the `101` answer or the refusal.
//!
//! Headers come in as borrowed `(name, value)` pairs so that this module does not depend
//! on the HTTP/1.1 codec: `httparse` headers map to them with
//! `headers.iter().map(|h| (h.name, h.value))`, a slice of pairs with `.iter().copied()`.
//!
//! What the server agrees to: version 13 only, no extension (a client's
//! `Sec-WebSocket-Extensions`, e.g. `permessage-deflate`, is declined by not echoing it,
//! which RFC 6455 §9.1 defines as "no extension in use"), and a subprotocol only when the
//! caller picks one that the client offered ([`offers_protocol`]). `Host` belongs to the
//! HTTP codec and `Origin` to the route's policy, so neither is looked at here.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::digest;

/// Appended to the client's key before hashing (RFC 6455 §1.3): proves that the server
/// read the key as a WebSocket server, not that it is any secret.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The value of `Sec-WebSocket-Accept`: base64 of a 20-byte SHA-1 is always 28 bytes,
/// so it lives on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AcceptKey([u8; 28]);

impl AcceptKey {
    /// The answer to `key`, the `Sec-WebSocket-Key` value exactly as the client sent it
    /// (surrounding whitespace removed): the client hashes its own text, not the 16 bytes.
    pub fn for_key(key: &[u8]) -> AcceptKey {
        let mut sha1 = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
        sha1.update(key);
        sha1.update(GUID);
        let digest = sha1.finish();
        let mut text = [0; 28];
        let written = STANDARD
            .encode_slice(digest.as_ref(), &mut text)
            .unwrap_or(0);
        debug_assert_eq!(written, 28);
        AcceptKey(text)
    }

    pub fn as_bytes(&self) -> &[u8; 28] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Base64 output is ASCII, so this never takes the fallback.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for AcceptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AcceptKey").field(&self.as_str()).finish()
    }
}

/// Why an upgrade request was refused. The texts name the header and what is expected,
/// never what the client sent: header values are not echoed anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("a WebSocket upgrade must be a GET request")]
    NotGet,
    #[error("the Upgrade header must name websocket")]
    NoUpgrade,
    #[error("the Connection header must contain upgrade")]
    NoConnectionUpgrade,
    #[error("only WebSocket version 13 is supported: send Sec-WebSocket-Version: 13")]
    Version,
    #[error("the Sec-WebSocket-Key header is missing")]
    NoKey,
    #[error("the Sec-WebSocket-Key header appears more than once")]
    DuplicateKey,
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    BadKey,
}

impl HandshakeError {
    /// The HTTP status of the refusal: 426 tells a client of another protocol version
    /// which one to retry with (RFC 6455 §4.4); everything else is a malformed request.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::Version => 426,
            _ => 400,
        }
    }

    /// Appends the whole HTTP/1.1 refusal (status line, headers, a one-line text body) to
    /// `out`. The connection is to be closed after it: a failed upgrade leaves the client
    /// in an unknown state about what comes next on the socket.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let status = match self.status() {
            426 => "426 Upgrade Required",
            _ => "400 Bad Request",
        };
        let mut body_len = Count(0);
        // Counting first keeps the body in `Display` only, without a temporary String.
        let _ = writeln!(body_len, "{self}");
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
            body_len.0
        );
        if self.status() == 426 {
            // RFC 7231 §6.5.15 requires Upgrade on a 426; RFC 6455 §4.4 the version list.
            out.extend_from_slice(b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        }
        let _ = writeln!(out, "\r\n{self}");
    }
}

struct Count(usize);

impl fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and returns the accept key for the `101`.
///
/// Checks run in a fixed order (method, `Upgrade`, `Connection`, version, key), so a
/// request with several problems always gets the same answer. Header names are
/// case-insensitive; `Upgrade` and `Connection` are comma-separated token lists and may
/// be repeated.
pub fn check_request<'h, I>(method: &str, headers: I) -> Result<AcceptKey, HandshakeError>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])>,
{
    if method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut version_seen = false;
    let mut version_ok = true;
    let mut key: Option<&[u8]> = None;
    let mut keys = 0usize;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, b"upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version_seen = true;
            version_ok &= trim(value) == b"13";
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys += 1;
            key = Some(trim(value));
        }
    }
    if !upgrade {
        return Err(HandshakeError::NoUpgrade);
    }
    if !connection {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if !(version_seen && version_ok) {
        return Err(HandshakeError::Version);
    }
    let key = match (key, keys) {
        (None, _) => return Err(HandshakeError::NoKey),
        (Some(_), 2..) => return Err(HandshakeError::DuplicateKey),
        (Some(key), _) => key,
    };
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    Ok(AcceptKey::for_key(key))
}

/// A 16-byte nonce in padded base64 is exactly 24 characters; checking the length first
/// keeps an oversized header from being decoded at all.
fn is_valid_key(key: &[u8]) -> bool {
    let mut nonce = [0u8; 18];
    key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut nonce), Ok(16))
}

/// Whether the client listed subprotocol `name` in any `Sec-WebSocket-Protocol` header.
/// Subprotocol names are case-sensitive (RFC 6455 §11.3.4), unlike header tokens.
pub fn offers_protocol<'h, I>(headers: I, name: &str) -> bool
where
    I: IntoIterator<Item = (&'h str, &'h [u8])>,
{
    headers.into_iter().any(|(n, value)| {
        n.eq_ignore_ascii_case("sec-websocket-protocol")
            && value
                .split(|&b| b == b',')
                .any(|t| trim(t) == name.as_bytes())
    })
}

/// Appends the `101 Switching Protocols` answer to `out`. `protocol` must be one that
/// [`offers_protocol`] found (a client fails the connection on any other). `extra` headers
/// (e.g. `Set-Cookie`) are written as given; one whose name or value holds CR, LF or NUL
/// is left out, because writing it would let its value inject headers.
pub fn write_accept(
    out: &mut Vec<u8>,
    accept: &AcceptKey,
    protocol: Option<&str>,
    extra: &[(&str, &[u8])],
) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = protocol {
        if is_header_safe(protocol.as_bytes()) {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            out.extend_from_slice(protocol.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    for &(name, value) in extra {
        let safe = is_header_safe(name.as_bytes())
            && !name.is_empty()
            && !name.contains(':')
            && is_header_safe(value);
        if safe {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn is_header_safe(bytes: &[u8]) -> bool {
    !bytes.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// Optional whitespace around list elements and values (RFC 9110 §5.6.3).
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
