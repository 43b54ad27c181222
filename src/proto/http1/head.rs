//! Finding the end of a request head ([`HeadScan`]) and parsing a complete one into a
//! borrowed [`RequestHead`] with its framing and connection semantics.

use std::fmt;
use std::mem::MaybeUninit;

use httparse::Header;

use super::{Error, Limits, Persistence, ReplyTo};

/// One slot for a parsed header; [`header_slots`] makes an array of them.
pub type HeaderSlot<'b> = MaybeUninit<Header<'b>>;

/// Uninitialized header slots for one parse (nothing is written until `httparse` fills
/// them, so a large `N` costs stack space, not time). Make them in the scope that uses the
/// head and drop them before awaiting anything, or a connection's future carries
/// `N * 32` bytes while it sleeps.
pub fn header_slots<'b, const N: usize>() -> [HeaderSlot<'b>; N] {
    [const { MaybeUninit::uninit() }; N]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Connect,
    Trace,
    /// Any other token (method names are case-sensitive, so `get` lands here).
    Other,
}

impl Method {
    pub fn parse(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "CONNECT" => Method::Connect,
            "TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// Methods whose requests are defined to carry content, so a missing length is a 411
    /// rather than "no body".
    fn expects_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no length, or `Content-Length: 0`).
    Empty,
    /// `Content-Length`, already checked against `body_bytes`.
    Length(usize),
    Chunked,
}

/// A parsed request head: borrowed slices of the read buffer and of the header slots.
#[derive(Clone, Copy)]
pub struct RequestHead<'h, 'b> {
    method: Method,
    method_str: &'b str,
    target: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    authority: Option<&'b str>,
    version: Version,
    headers: &'h [Header<'b>],
    host: Option<&'b [u8]>,
    body: BodyFraming,
    persistence: Persistence,
    expect_continue: bool,
    websocket: bool,
    len: usize,
}

impl<'h, 'b> RequestHead<'h, 'b> {
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent.
    pub fn method_str(&self) -> &'b str {
        self.method_str
    }

    /// The request target as sent (path and query, or an absolute URL).
    pub fn target(&self) -> &'b str {
        self.target
    }

    /// The path without the query: `/capig/events`; for an absolute-form target the path
    /// after the authority (`/` if none); `*` for `OPTIONS *`; the authority for CONNECT.
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// What follows the first `?`, without it.
    pub fn query(&self) -> Option<&'b str> {
        self.query
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Every header line in order, names as sent (compare them case-insensitively).
    pub fn headers(&self) -> &'h [Header<'b>] {
        self.headers
    }

    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// The host the request is for: the authority of an absolute-form target, which
    /// RFC 9112 §3.2.2 says overrides `Host`, else the `Host` header.
    pub fn host(&self) -> Option<&'b [u8]> {
        self.authority.map(str::as_bytes).or(self.host)
    }

    pub fn body(&self) -> BodyFraming {
        self.body
    }

    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    pub fn keep_alive(&self) -> bool {
        self.persistence.keeps_alive()
    }

    /// What a response to this request has to say about the connection and the body.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo { persistence: self.persistence, head_only: self.method == Method::Head }
    }

    /// The client waits for `100 Continue` before sending the body (HTTP/1.1, a body
    /// is announced, `Expect: 100-continue`).
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// `Upgrade` names `websocket` and `Connection` names `upgrade`; whether the rest of
    /// the handshake is right is for `proto::websocket::handshake` to say.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.websocket
    }

    /// Bytes of the head in the buffer; the body starts here.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a head has at least a request line. Here for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for RequestHead<'_, '_> {
    /// Header values and the query may hold personal data, so only names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Names<'a, 'b>(&'a [Header<'b>]);
        impl fmt::Debug for Names<'_, '_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.iter().map(|h| h.name)).finish()
            }
        }
        f.debug_struct("RequestHead")
            .field("method", &self.method_str)
            .field("path", &self.path)
            .field("has_query", &self.query.is_some())
            .field("version", &self.version)
            .field("headers", &Names(self.headers))
            .field("body", &self.body)
            .field("persistence", &self.persistence)
            .field("expect_continue", &self.expect_continue)
            .field("websocket", &self.websocket)
            .field("len", &self.len)
            .finish()
    }
}

/// Where the search for the end of a head is, so that bytes arriving in many reads are
/// looked at once each. Positions are offsets from the start of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HeadScan {
    /// Next byte to look at.
    pos: usize,
    phase: ScanPhase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum ScanPhase {
    /// Empty lines before the request line (RFC 9112 §2.2 says to ignore at least one).
    #[default]
    Leading,
    /// `in_method` until the space after the method: its bytes are checked as they come,
    /// so binary input (a TLS handshake on the plain port) is refused at once instead of
    /// after a timeout.
    RequestLine { start: usize, in_method: bool },
    /// Header lines; `line_start` is the first byte of the current one.
    Fields { line_start: usize },
    /// Found: asking again gives the same answer.
    Done { len: usize },
}

impl HeadScan {
    pub fn new() -> HeadScan {
        HeadScan::default()
    }

    /// Looks at the bytes not seen yet and returns the length of the head once its blank
    /// line is in `buf` (and again on later calls). `buf` must start with the same bytes
    /// as at the previous call.
    ///
    /// Each cap is checked at a fixed position, so the outcome does not depend on how the
    /// bytes were split: 414 once `request_line_bytes + 1` bytes of the request line hold
    /// no LF, 431 once the first `header_bytes` bytes hold no end of head, 400 (obs-fold)
    /// when a header line begins with SP or HTAB.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
        let cap = limits.header_bytes;
        let window = buf.len().min(cap);
        loop {
            match self.phase {
                ScanPhase::Leading => {
                    while self.pos < window && matches!(buf[self.pos], b'\r' | b'\n') {
                        self.pos += 1;
                    }
                    if self.pos >= buf.len() {
                        return Ok(None);
                    }
                    if self.pos == cap {
                        return Err(Error::HeadersTooLarge { limit: cap });
                    }
                    self.phase = ScanPhase::RequestLine { start: self.pos, in_method: true };
                }
                ScanPhase::RequestLine { start, mut in_method } => {
                    let line_cap = start.saturating_add(limits.request_line_bytes).saturating_add(1);
                    let end = window.min(line_cap);
                    while in_method && self.pos < end {
                        let b = buf[self.pos];
                        if b == b' ' && self.pos > start {
                            in_method = false;
                        } else if !is_token(b) {
                            return Err(Error::BadRequestLine);
                        }
                        self.pos += 1;
                    }
                    self.phase = ScanPhase::RequestLine { start, in_method };
                    match find_lf(&buf[self.pos.min(end)..end]) {
                        Some(k) => {
                            self.pos += k + 1;
                            self.phase = ScanPhase::Fields { line_start: self.pos };
                        }
                        None => {
                            self.pos = end;
                            if end == line_cap {
                                return Err(Error::UriTooLong { limit: limits.request_line_bytes });
                            }
                            if end == cap {
                                return Err(Error::HeadersTooLarge { limit: cap });
                            }
                            return Ok(None);
                        }
                    }
                }
                ScanPhase::Fields { line_start } => {
                    if self.pos == line_start && self.pos < window && matches!(buf[self.pos], b' ' | b'\t') {
                        return Err(Error::ObsFold);
                    }
                    match find_lf(&buf[self.pos.min(window)..window]) {
                        Some(k) => {
                            let lf = self.pos + k;
                            self.pos = lf + 1;
                            let line = &buf[line_start..lf];
                            if line.is_empty() || line == b"\r" {
                                self.phase = ScanPhase::Done { len: self.pos };
                                return Ok(Some(self.pos));
                            }
                            self.phase = ScanPhase::Fields { line_start: self.pos };
                        }
                        None => {
                            self.pos = window;
                            if window == cap {
                                return Err(Error::HeadersTooLarge { limit: cap });
                            }
                            return Ok(None);
                        }
                    }
                }
                ScanPhase::Done { len } => return Ok(Some(len)),
            }
        }
    }
}

/// Phase one without state: the length of the complete head at the start of `buf`, or
/// `None` if more bytes are needed. [`Conn`](super::Conn) keeps a [`HeadScan`] instead, so
/// that a head arriving in pieces is not rescanned.
pub fn find_head_end(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    HeadScan::new().scan(buf, limits)
}

/// The first LF, eight bytes at a time: a head is mostly long header lines, and this
/// runs on every request.
fn find_lf(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = ONES * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ LF;
        // A byte of `x` is zero where the input had LF; the lowest such byte is found
        // exactly (borrows only disturb the bytes above it).
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&b| b == b'\n').map(|k| at + k)
}

/// Phase two: parses `head`, exactly the bytes that [`find_head_end`] measured, and
/// interprets framing, persistence, `Expect`, `Host` and `Upgrade` (the order of checks is
/// fixed, so a request with several problems always gets the same answer).
///
/// At most `min(slots.len(), limits.header_count)` headers are accepted; more is a 431.
pub fn parse_head<'h, 'b>(
    head: &'b [u8],
    slots: &'h mut [HeaderSlot<'b>],
    limits: &Limits,
) -> Result<RequestHead<'h, 'b>, Error> {
    let count = slots.len().min(limits.header_count);
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut slots[..count]) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        // The scan and httparse disagree on where the head ends only for heads that are
        // malformed anyway (e.g. a bare CR).
        Ok(_) => return Err(Error::BadRequestLine),
        Err(e) => return Err(httparse_error(e, head, count)),
    }
    let method_str = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let version = if req.version == Some(1) { Version::Http11 } else { Version::Http10 };
    let headers: &'h [Header<'b>] = req.headers;
    let method = Method::parse(method_str);
    let (path, query, authority) = split_target(method, target)?;

    let mut s = Semantics::default();
    for h in headers {
        s.add(h)?;
    }

    if s.host_count > 1 {
        return Err(Error::DuplicateHost);
    }
    if version == Version::Http11 && s.host_count == 0 {
        return Err(Error::MissingHost);
    }
    if s.host.is_some_and(|h| !h.iter().all(|&b| is_host_byte(b))) {
        return Err(Error::BadHost);
    }

    let body = if s.te_present {
        if version == Version::Http10 {
            return Err(Error::TransferEncodingHttp10);
        }
        if s.content_length.is_some() {
            return Err(Error::ContentLengthWithTransferEncoding);
        }
        if !s.te_last_chunked || s.te_chunked > 1 {
            return Err(Error::ChunkedNotFinal);
        }
        if s.te_other {
            return Err(Error::UnsupportedTransferCoding);
        }
        BodyFraming::Chunked
    } else {
        match s.content_length {
            Some(n) if n > limits.body_bytes as u64 => {
                return Err(Error::BodyTooLarge { limit: limits.body_bytes })
            }
            // Within `body_bytes`, which is a `usize`.
            Some(n) if n > 0 => BodyFraming::Length(n as usize),
            Some(_) => BodyFraming::Empty,
            None if method.expects_body() => return Err(Error::LengthRequired),
            None => BodyFraming::Empty,
        }
    };
    if s.expect_other {
        return Err(Error::ExpectationFailed);
    }

    let persistence = match version {
        _ if s.conn_close => Persistence::Close,
        Version::Http11 => Persistence::KeepAlive,
        Version::Http10 if s.conn_keep_alive => Persistence::KeepAliveHttp10,
        Version::Http10 => Persistence::Close,
    };
    Ok(RequestHead {
        method,
        method_str,
        target,
        path,
        query,
        authority,
        version,
        headers,
        host: s.host,
        body,
        persistence,
        expect_continue: version == Version::Http11
            && s.expect_continue
            && body != BodyFraming::Empty,
        websocket: s.upgrade_websocket && s.conn_upgrade,
        len: head.len(),
    })
}

/// What the headers say, gathered in one pass.
#[derive(Default)]
struct Semantics<'b> {
    content_length: Option<u64>,
    te_present: bool,
    te_last_chunked: bool,
    te_chunked: u32,
    te_other: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    expect_continue: bool,
    expect_other: bool,
    host_count: u32,
    host: Option<&'b [u8]>,
    upgrade_websocket: bool,
}

impl<'b> Semantics<'b> {
    fn add(&mut self, h: &Header<'b>) -> Result<(), Error> {
        let name = h.name.as_bytes();
        // Dispatch on length first: most headers (User-Agent, Cookie, Accept…) match none
        // of these and cost one comparison.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.host_count += 1;
                self.host = Some(h.value);
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                for item in list(h.value) {
                    if item.eq_ignore_ascii_case(b"100-continue") {
                        self.expect_continue = true;
                    } else {
                        self.expect_other = true;
                    }
                }
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                self.upgrade_websocket |= list(h.value).any(|p| p.eq_ignore_ascii_case(b"websocket"));
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in list(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.conn_keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        self.conn_upgrade = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // Unlike the token lists, an empty element is an error here: `5,` is no
                // length.
                for item in h.value.split(|&b| b == b',') {
                    let n = parse_length(trim(item))?;
                    match self.content_length {
                        Some(prev) if prev != n => return Err(Error::ConflictingContentLength),
                        _ => self.content_length = Some(n),
                    }
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.te_present = true;
                for coding in list(h.value) {
                    let chunked = coding.eq_ignore_ascii_case(b"chunked");
                    self.te_last_chunked = chunked;
                    if chunked {
                        self.te_chunked += 1;
                    } else {
                        self.te_other = true;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `1*DIGIT`, nothing else: no sign, no spaces inside, no hex.
fn parse_length(digits: &[u8]) -> Result<u64, Error> {
    if digits.is_empty() {
        return Err(Error::BadContentLength);
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(Error::BadContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Error::BadContentLength)?;
    }
    Ok(n)
}

/// The non-empty elements of a comma-separated list, whitespace trimmed
/// (RFC 9110 §5.6.1: empty elements are allowed and ignored).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 `tchar`: the bytes of methods, header names and transfer codings.
pub(super) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `uri-host [":" port]`: reg-name, IPv4 or a bracketed IP literal, so unreserved,
/// sub-delims, `%`, `:` and brackets. Anything else (space, `/`, `@`, non-ASCII) cannot
/// name a host and is how request-routing confusions start.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)
}

/// Splits the request target by its form (RFC 9112 §3.2).
fn split_target(
    method: Method,
    target: &str,
) -> Result<(&str, Option<&str>, Option<&str>), Error> {
    if target.starts_with('/') {
        let (path, query) = split_query(target);
        return Ok((path, query, None));
    }
    if method == Method::Options && target == "*" {
        return Ok((target, None, None));
    }
    if method == Method::Connect {
        return Ok((target, None, Some(target)));
    }
    let rest = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
        .ok_or(Error::BadTarget)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    if authority.is_empty() || !authority.bytes().all(is_host_byte) {
        return Err(Error::BadTarget);
    }
    let (path, query) = split_query(rest);
    Ok((if path.is_empty() { "/" } else { path }, query, Some(authority)))
}

fn split_query(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // The prefix is ASCII, so a match ends on a char boundary.
    head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| &s[prefix.len()..])
}

/// Turns `httparse`'s error into ours; the head is only looked at to tell an unsupported
/// version (505) from a malformed one (400).
fn httparse_error(e: httparse::Error, head: &[u8], count: usize) -> Error {
    match e {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders { limit: count },
        httparse::Error::HeaderName => Error::BadHeaderName,
        httparse::Error::HeaderValue => Error::BadHeaderValue,
        httparse::Error::NewLine => Error::BadLineEnding,
        httparse::Error::Version if is_other_http_version(head) => Error::VersionNotSupported,
        httparse::Error::Version | httparse::Error::Token | httparse::Error::Status => {
            Error::BadRequestLine
        }
    }
}

/// Whether the request line ends in a well-formed `HTTP/d.d` or `HTTP/d` (HTTP/2's
/// preface says `HTTP/2.0`) that is not one httparse accepts.
fn is_other_http_version(head: &[u8]) -> bool {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(head.len());
    let line = &head[start..];
    let line = &line[..find_lf(line).unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major] => major.is_ascii_digit(),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit()
        }
        _ => false,
    }
}
