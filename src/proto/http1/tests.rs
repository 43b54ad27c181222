//! Codec tests, data-driven through `check`: each input is decoded whole, cut in two at
//! every point, and fed one byte at a time, and all three must give the same outcomes.
//! Then the connection timers, 100-continue, the response writer and the error answers.

use super::*;
use std::time::{Duration, Instant};

/// Caps small enough to reach in a readable test.
fn small() -> Limits {
    Limits {
        header_bytes: 128,
        request_line_bytes: 48,
        header_count: 4,
        body_bytes: 32,
        ..Limits::default()
    }
}

/// One request as a line a test can spell out:
/// `METHOD path[?query] 1.x keep|keep10|close [continue] [ws] [body="…"]`.
fn summary(r: &Request<'_, '_>) -> String {
    let h = &r.head;
    let mut s = format!("{} {}", h.method_str(), h.path());
    if let Some(q) = h.query() {
        s += &format!("?{q}");
    }
    s += match h.version() {
        Version::Http10 => " 1.0",
        Version::Http11 => " 1.1",
    };
    s += match h.persistence() {
        Persistence::KeepAlive => " keep",
        Persistence::KeepAliveHttp10 => " keep10",
        Persistence::Close => " close",
    };
    if h.expects_continue() {
        s += " continue";
    }
    if h.is_websocket_upgrade() {
        s += " ws";
    }
    if !r.body.is_empty() {
        s += &format!(" body={:?}", String::from_utf8_lossy(r.body));
    }
    s
}

/// Drives a `Conn` the way the runtime will: the input arrives in pieces ending at
/// `cuts`; after each piece every complete request is taken; `Incomplete::filled` is
/// honoured by truncating. Returns one line per request, then the error (`"413
/// BodyTooLarge { limit: 32 }"`) or `"pending"` if the input ends inside a request.
fn run(input: &[u8], cuts: &[usize], limits: Limits) -> Vec<String> {
    let now = Instant::now();
    let mut conn = Conn::new(limits, now);
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut fed = 0;
    let mut out = Vec::new();
    for end in cuts.iter().copied().chain([input.len()]) {
        if end <= fed {
            continue;
        }
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            let mut slots = header_slots::<64>();
            let len = buf.len() - start;
            match conn.decode(&mut buf[start..], &mut slots, now) {
                Ok(Decoded::Incomplete(i)) => {
                    assert!(i.filled <= len, "filled {} of {len}", i.filled);
                    buf.truncate(start + i.filled);
                    break;
                }
                Ok(Decoded::Request(r)) => {
                    assert!(r.consumed > 0 && r.consumed <= len);
                    assert!(r.body.len() <= limits.body_bytes);
                    out.push(summary(&r));
                    start += r.consumed;
                    conn.response_sent(now);
                    if start == buf.len() {
                        break;
                    }
                }
                Err(e) => {
                    assert!(e.must_close());
                    assert!(matches!(conn.state(), State::Closed { by } if by == e));
                    out.push(format!("{} {e:?}", e.status()));
                    return out;
                }
            }
        }
    }
    if start < buf.len() {
        out.push("pending".into());
    }
    out
}

fn check(input: &str, expected: &[&str]) {
    check_bytes(input.as_bytes(), Limits::default(), expected);
}

fn check_small(input: &str, expected: &[&str]) {
    check_bytes(input.as_bytes(), small(), expected);
}

fn check_bytes(input: &[u8], limits: Limits, expected: &[&str]) {
    let whole = run(input, &[], limits);
    assert_eq!(whole, expected, "whole: {:?}", String::from_utf8_lossy(input));
    // Every cut for short inputs; long ones (the cap tests) get a spread of cuts.
    let step = (input.len() / 512).max(1);
    for cut in (1..input.len()).step_by(step) {
        assert_eq!(run(input, &[cut], limits), whole, "cut at {cut}: {:?}", String::from_utf8_lossy(input));
    }
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(run(input, &every, limits), whole, "byte by byte: {:?}", String::from_utf8_lossy(input));
}

#[test]
fn well_formed_requests() {
    let cases: &[(&str, &[&str])] = &[
        ("GET /capig/client.js HTTP/1.1\r\nHost: a\r\n\r\n", &["GET /capig/client.js 1.1 keep"]),
        (
            "POST /capig/events HTTP/1.1\r\nHost: capig.shop.example\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
            &[r#"POST /capig/events 1.1 keep body="hello""#],
        ),
        ("GET /x?a=1&b=?2 HTTP/1.1\r\nHost: a\r\n\r\n", &["GET /x?a=1&b=?2 1.1 keep"]),
        ("GET /x? HTTP/1.1\r\nHost: a\r\n\r\n", &["GET /x? 1.1 keep"]),
        // Empty lines before a request are skipped (RFC 9112 §2.2).
        ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &["GET / 1.1 keep"]),
        ("\nGET / HTTP/1.1\nHost: a\n\n", &["GET / 1.1 keep"]),
        ("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", &["HEAD / 1.1 keep"]),
        ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &["OPTIONS * 1.1 keep"]),
        ("GET http://capig.example/capig/ws?x=1 HTTP/1.1\r\nHost: b\r\n\r\n", &["GET /capig/ws?x=1 1.1 keep"]),
        ("GET HTTPS://capig.example HTTP/1.1\r\nHost: b\r\n\r\n", &["GET / 1.1 keep"]),
        ("CONNECT capig.example:443 HTTP/1.1\r\nHost: capig.example:443\r\n\r\n", &["CONNECT capig.example:443 1.1 keep"]),
        ("DELETE /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", &["DELETE /x 1.1 keep"]),
        ("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", &["BREW /pot 1.1 keep"]),
        // A GET may have a body; it is read so the next request starts in the right place.
        ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", &[r#"GET / 1.1 keep body="hi""#]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &["POST / 1.1 keep"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello", &[r#"POST / 1.1 keep body="hello""#]),
        // Identical repeats of Content-Length are one value (RFC 9110 §8.6).
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc", &[r#"POST / 1.1 keep body="abc""#]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 , 3\r\n\r\nabc", &[r#"POST / 1.1 keep body="abc""#]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t3 \r\n\r\nabc", &[r#"POST / 1.1 keep body="abc""#]),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
            &[r#"POST / 1.1 keep continue body="hi""#],
        ),
        // Nothing to wait for: no continue.
        ("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", &["POST / 1.1 keep"]),
        // HTTP/1.0 ignores 100-continue (RFC 9110 §10.1.1).
        ("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", &[r#"POST / 1.0 close body="hi""#]),
        (
            "GET /capig/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            &["GET /capig/ws 1.1 keep ws"],
        ),
        ("GET /capig/ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, WebSocket\r\nConnection: keep-alive, upgrade\r\n\r\n", &["GET /capig/ws 1.1 keep ws"]),
        // Upgrade without `Connection: upgrade` is not an upgrade.
        ("GET /capig/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &["GET /capig/ws 1.1 keep"]),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn keep_alive_rules_per_version() {
    let cases: &[(&str, &[&str])] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &["GET / 1.1 keep"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &["GET / 1.1 close"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", &["GET / 1.1 close"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: te,,\r\nConnection: close\r\n\r\n", &["GET / 1.1 close"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", &["GET / 1.1 keep"]),
        ("GET / HTTP/1.0\r\n\r\n", &["GET / 1.0 close"]),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &["GET / 1.0 keep10"]),
        ("GET / HTTP/1.0\r\nconnection: KEEP-ALIVE\r\n\r\n", &["GET / 1.0 keep10"]),
        ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &["GET / 1.0 close"]),
        ("GET / HTTP/1.0\r\nConnection: upgrade\r\n\r\n", &["GET / 1.0 close"]),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn pipelined_requests() {
    check(
        "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz\
         POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n\
         \r\nGET /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /e",
        &[
            "GET /a 1.1 keep",
            r#"POST /b 1.1 keep body="xyz""#,
            r#"POST /c 1.1 keep body="ab""#,
            "GET /d 1.1 close",
            "pending",
        ],
    );
    // A bad request after good ones: the good ones are answered, then the error.
    check(
        "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        &["GET /a 1.1 keep", "400 MissingHost"],
    );
}

#[test]
fn ten_thousand_pipelined_requests_in_one_buffer() {
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000 {
        if i % 2 == 0 {
            input.extend_from_slice(format!("GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
            expected.push(format!("GET /r{i} 1.1 keep"));
        } else {
            let body = format!("{{\"n\":{i}}}");
            input.extend_from_slice(
                format!("POST /r{i} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    .as_bytes(),
            );
            expected.push(format!("POST /r{i} 1.1 keep body={body:?}"));
        }
    }
    assert_eq!(run(&input, &[], Limits::default()), expected);
    // And arriving in reads of awkward sizes.
    let cuts: Vec<usize> = (1..input.len()).step_by(997).collect();
    assert_eq!(run(&input, &cuts, Limits::default()), expected);
}

#[test]
fn chunked_bodies() {
    let post = "POST /capig/events HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: &[(&str, &[&str])] = &[
        ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="hello world""#]),
        ("0\r\n\r\n", &["POST /capig/events 1.1 keep"]),
        ("A\r\n0123456789\r\n0\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="0123456789""#]),
        ("a\r\n0123456789\r\n0000\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="0123456789""#]),
        ("0005\r\nhello\r\n0\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="hello""#]),
        // Extensions are ignored, quoted strings and whitespace before `;` included.
        ("5;name=value\r\nhello\r\n1 ; a=\"x; y\"\r\n!\r\n0;last\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="hello!""#]),
        ("5\t;x\r\nhello\r\n0\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="hello""#]),
        // Trailers are skipped.
        ("3\r\nabc\r\n0\r\nX-Checksum: 123\r\nOther:\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="abc""#]),
        // CRLF inside chunk data is data.
        ("4\r\n\r\n\r\n\r\n0\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="\r\n\r\n""#]),
        // The next request starts right after the final CRLF.
        ("1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[r#"POST /capig/events 1.1 keep body="x""#, "GET / 1.1 keep"]),
        ("5\r\nhel", &["pending"]),
        ("5\r\nhello\r\n0\r\n", &["pending"]),
    ];
    for (body, expected) in cases {
        check(&format!("{post}{body}"), expected);
    }
    check(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        &[r#"POST / 1.1 keep body="z""#],
    );
    check(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\tchunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        &[r#"POST / 1.1 keep body="z""#],
    );
}

#[test]
fn chunked_errors() {
    let post = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: &[(&str, &[&str])] = &[
        ("zz\r\n", &["400 BadChunkSize"]),
        ("\r\n", &["400 BadChunkSize"]),
        (";ext\r\n", &["400 BadChunkSize"]),
        ("-1\r\n", &["400 BadChunkSize"]),
        ("0x5\r\nhello\r\n", &["400 BadChunkSize"]),
        ("5 5\r\n", &["400 BadChunkSize"]),
        ("5\nhello\r\n", &["400 ChunkLineEnding"]),
        ("5\rhello", &["400 ChunkLineEnding"]),
        ("5;a\nhello", &["400 ChunkLineEnding"]),
        ("5;a\x01\r\nhello", &["400 BadChunkSize"]),
        ("5\r\nhelloX\r\n0\r\n\r\n", &["400 ChunkDataEnd"]),
        ("5\r\nhello\n0\r\n\r\n", &["400 ChunkDataEnd"]),
        ("5\r\nhello\r0\r\n\r\n", &["400 ChunkDataEnd"]),
        ("0\r\n\rX", &["400 ChunkLineEnding"]),
        ("0\r\n\n", &["400 BadTrailer"]),
        ("0\r\nbad name: v\r\n\r\n", &["400 BadTrailer"]),
        ("0\r\nnocolon\r\n\r\n", &["400 BadTrailer"]),
        ("0\r\n folded: v\r\n\r\n", &["400 BadTrailer"]),
        ("0\r\nX: a\x01\r\n\r\n", &["400 BadTrailer"]),
        ("0\r\nX: a\n\r\n", &["400 BadTrailer"]),
        // Sizes: more than 16 hex digits is refused before any arithmetic could wrap.
        ("fffffffffffffffff\r\n", &["400 ChunkSizeTooLong"]),
        ("00000000000000001\r\nx\r\n0\r\n\r\n", &["400 ChunkSizeTooLong"]),
        ("ffffffffffffffff\r\n", &["413 BodyTooLarge { limit: 2097152 }"]),
        ("200001\r\n", &["413 BodyTooLarge { limit: 2097152 }"]),
    ];
    for (body, expected) in cases {
        check(&format!("{post}{body}"), expected);
    }
}

#[test]
fn chunked_caps() {
    let post = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    // 32 bytes is the body cap of `small()`: exactly at it is fine, one more is not, and
    // the 413 comes at the size line, before the data.
    check_small(
        &format!("{post}10\r\n{}\r\n10\r\n{}\r\n0\r\n\r\n", "a".repeat(16), "b".repeat(16)),
        &[&format!("POST / 1.1 keep body={:?}", format!("{}{}", "a".repeat(16), "b".repeat(16)))],
    );
    check_small(
        &format!("{post}10\r\n{}\r\n11\r\n", "a".repeat(16)),
        &["413 BodyTooLarge { limit: 32 }"],
    );
    // Trailers and extensions are bounded by header_bytes (128 in `small()`).
    check_small(
        &format!("{post}0\r\nX: {}\r\n\r\n", "t".repeat(130)),
        &["431 TrailersTooLarge { limit: 128 }"],
    );
    check_small(
        &format!("{post}1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(130)),
        &["400 ChunkExtensionsTooLong { limit: 128 }"],
    );
    let many = "1;eeeeeeeeee\r\nx\r\n".repeat(12);
    check_small(&format!("{post}{many}0\r\n\r\n"), &["400 ChunkExtensionsTooLong { limit: 128 }"]);
}

#[test]
fn every_error_status() {
    let cases: &[(&str, &[&str])] = &[
        // 400: request line and header syntax.
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        ("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        ("GET /\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        ("GET / HTTP/1.x\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        ("GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        (" / HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        ("GET\r\nHost: a\r\n\r\n", &["400 BadRequestLine"]),
        // Not HTTP at all (a TLS ClientHello on the plain port): refused at the first
        // byte, not after the header timeout.
        ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03", &["400 BadRequestLine"]),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", &["400 BadLineEnding"]),
        ("GET / HTTP/1.1\rHost: a\r\n\r\n", &["400 BadLineEnding"]),
        ("GET / HTTP/1.1\r\nHo st: a\r\n\r\n", &["400 BadHeaderName"]),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", &["400 BadHeaderName"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n", &["400 BadHeaderName"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: 1\r\n\r\n", &["400 BadHeaderName"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", &["400 BadHeaderName"]),
        ("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", &["400 BadHeaderName"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", &["400 BadHeaderValue"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", &["400 BadHeaderValue"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", &["400 BadHeaderValue"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", &["400 BadHeaderValue"]),
        // obs-fold, and whitespace before the first header.
        ("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", &["400 ObsFold"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n", &["400 ObsFold"]),
        ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", &["400 ObsFold"]),
        // Request targets.
        ("GET capig HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadTarget"]),
        ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadTarget"]),
        ("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadTarget"]),
        ("GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadTarget"]),
        ("GET http://a@b/x HTTP/1.1\r\nHost: a\r\n\r\n", &["400 BadTarget"]),
        // Host.
        ("GET / HTTP/1.1\r\n\r\n", &["400 MissingHost"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", &["400 DuplicateHost"]),
        ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", &["400 DuplicateHost"]),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &["400 BadHost"]),
        ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", &["400 BadHost"]),
        ("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", &["400 BadHost"]),
        // Content-Length.
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\nhello", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1.5\r\n\r\n", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", &["400 BadContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", &["400 ConflictingContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello", &["400 ConflictingContentLength"]),
        // Transfer-Encoding.
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &["400 TransferEncodingHttp10"]),
        // 411
        ("POST /capig/events HTTP/1.1\r\nHost: a\r\n\r\n", &["411 LengthRequired"]),
        ("PUT / HTTP/1.1\r\nHost: a\r\n\r\n", &["411 LengthRequired"]),
        ("PATCH / HTTP/1.0\r\n\r\n", &["411 LengthRequired"]),
        // 413, decided from the head: the body is never waited for.
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2097153\r\n\r\n", &["413 BodyTooLarge { limit: 2097152 }"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", &["413 BodyTooLarge { limit: 2097152 }"]),
        // 417
        ("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", &["417 ExpectationFailed"]),
        ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", &["417 ExpectationFailed"]),
        // 501
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &["501 UnsupportedTransferCoding"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", &["501 UnsupportedTransferCoding"]),
        // 505
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", &["505 VersionNotSupported"]),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &["505 VersionNotSupported"]),
        ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", &["505 VersionNotSupported"]),
        ("GET / HTTP/3\r\nHost: a\r\n\r\n", &["505 VersionNotSupported"]),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn size_caps_of_the_head() {
    let d = Limits::default();
    // 414: the request line alone, at DEFAULT_REQUEST_LINE_BYTES.
    let line = |n: usize| format!("GET /{} HTTP/1.1", "a".repeat(n - 14));
    assert_eq!(line(100).len(), 100);
    check(&format!("{}\r\nHost: a\r\n\r\n", line(8191)), &[&format!("GET /{} 1.1 keep", "a".repeat(8177))]);
    check(&format!("{}\r\nHost: a\r\n\r\n", line(8193)), &["414 UriTooLong { limit: 8192 }"]);
    // Found without waiting for the rest.
    check(&format!("GET /{}", "a".repeat(9000)), &["414 UriTooLong { limit: 8192 }"]);
    // 431: the whole head at 16 KiB, counted through the final blank line.
    let head = |total: usize| {
        let fixed = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
        format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(total - fixed))
    };
    assert_eq!(head(d.header_bytes).len(), d.header_bytes);
    check(&head(d.header_bytes), &["GET / 1.1 keep"]);
    check(&head(d.header_bytes + 1), &["431 HeadersTooLarge { limit: 16384 }"]);
    check(&format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(20_000)), &["431 HeadersTooLarge { limit: 16384 }"]);
    check(&"\r\n".repeat(9000), &["431 HeadersTooLarge { limit: 16384 }"]);
    // 431: header count, at 64.
    let headers = |n: usize| {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..n {
            s += &format!("X-{i}: v\r\n");
        }
        s + "\r\n"
    };
    check(&headers(64), &["GET / 1.1 keep"]);
    check(&headers(65), &["431 TooManyHeaders { limit: 64 }"]);
    // The small caps, where the first limit reached by position wins.
    check_small(&format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(40)), &["414 UriTooLong { limit: 48 }"]);
    check_small("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &["GET / 1.1 keep"]);
    check_small("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", &["431 TooManyHeaders { limit: 4 }"]);
    check_small(&format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(120)), &["431 HeadersTooLarge { limit: 128 }"]);
    // An obs-fold before the cap is reported as such, even when the head is too long.
    check_small(&format!("GET / HTTP/1.1\r\n x: {}\r\n\r\n", "v".repeat(200)), &["400 ObsFold"]);
    check_small("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n\r\n", &["413 BodyTooLarge { limit: 32 }"]);
}

#[test]
fn smuggling_attempts_are_refused() {
    let cases: &[(&str, &[&str])] = &[
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &["400 ContentLengthWithTransferEncoding"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", &["400 ContentLengthWithTransferEncoding"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", &["400 ContentLengthWithTransferEncoding"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: gzip\r\n\r\n", &["400 ContentLengthWithTransferEncoding"]),
        // The variants that slip past lenient parsers.
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n", &["400 BadHeaderName"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n", &["400 ContentLengthWithTransferEncoding"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", &["400 ChunkedNotFinal"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", &["400 ObsFold"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", &["400 BadHeaderValue"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", &["400 ConflictingContentLength"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3x\r\n\r\nabc", &["400 BadContentLength"]),
        // HTTP/1.0 with TE has faulty framing even with a Content-Length (RFC 9112 §6.1).
        ("POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &["400 TransferEncodingHttp10"]),
        // A chunk size that a lenient parser reads as "0" or truncates.
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nGET /x HTTP/1.1\r\n", &["400 BadChunkSize"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\n", &["400 ChunkSizeTooLong"]),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;\nx\r\nhello\r\n0\r\n\r\n", &["400 ChunkLineEnding"]),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn non_utf8_in_headers_is_handled_without_panic() {
    // Bytes above 0x7f are obs-text, allowed in values and handed out as bytes.
    let input = b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9 \xff\xfe\r\n\r\n";
    check_bytes(input, Limits::default(), &["GET / 1.1 keep"]);
    let mut buf = input.to_vec();
    let mut slots = header_slots::<8>();
    let head = parse_head(&buf[..input.len()], &mut slots, &Limits::default()).unwrap();
    assert_eq!(head.header("x-name"), Some(&b"caf\xe9 \xff\xfe"[..]));
    buf.clear();
    let cases: &[(&[u8], &str)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\xffY: v\r\n\r\n", "400 BadHeaderName"),
        (b"GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n", "400 BadRequestLine"),
        (b"GET /\xe2\x82\xac HTTP/1.1\r\nHost: a\r\n\r\n", "GET /\u{20ac} 1.1 keep"),
        (b"G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n", "400 BadRequestLine"),
        (b"GET / HTTP/1.1\r\nHost: \xc3\xa9.example\r\n\r\n", "400 BadHost"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xef\xbc\x95\r\n\r\n", "400 BadContentLength"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\xff\r\n", "400 BadChunkSize"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;\xff\r\n\xff\r\n0\r\nT: \xff\r\n\r\n", "POST / 1.1 keep body=\"\u{fffd}\""),
    ];
    for (input, expected) in cases {
        check_bytes(input, Limits::default(), &[expected]);
    }
}

#[test]
fn head_view_accessors() {
    let input = b"POST http://Capig.Example:8443/capig/events?src=1 HTTP/1.1\r\nHost: other\r\nContent-Type: text/plain\r\nX-Forwarded-For: 203.0.113.9\r\nContent-Length: 2\r\n\r\n{}";
    let limits = Limits::default();
    let head_len = find_head_end(input, &limits).unwrap().unwrap();
    assert_eq!(&input[head_len..], b"{}");
    let mut slots = header_slots::<16>();
    let head = parse_head(&input[..head_len], &mut slots, &limits).unwrap();
    assert_eq!(head.method(), Method::Post);
    assert_eq!(head.method_str(), "POST");
    assert_eq!(head.target(), "http://Capig.Example:8443/capig/events?src=1");
    assert_eq!(head.path(), "/capig/events");
    assert_eq!(head.query(), Some("src=1"));
    // The absolute-form authority overrides Host (RFC 9112 §3.2.2).
    assert_eq!(head.host(), Some(&b"Capig.Example:8443"[..]));
    assert_eq!(head.header("CONTENT-TYPE"), Some(&b"text/plain"[..]));
    assert_eq!(head.header("cookie"), None);
    assert_eq!(head.headers().len(), 4);
    assert_eq!(head.body(), BodyFraming::Length(2));
    assert_eq!(head.len(), head_len);
    assert_eq!(head.reply_to(), ReplyTo { persistence: Persistence::KeepAlive, head_only: false });
    let debug = format!("{head:?}");
    assert!(!debug.contains("203.0.113.9") && !debug.contains("src=1"), "{debug}");
    assert!(debug.contains("X-Forwarded-For"), "{debug}");

    let input = b"HEAD / HTTP/1.0\r\nHost: capig.example\r\nConnection: keep-alive\r\n\r\n";
    let mut slots = header_slots::<16>();
    let head = parse_head(input, &mut slots, &limits).unwrap();
    assert_eq!(head.host(), Some(&b"capig.example"[..]));
    assert_eq!(head.reply_to(), ReplyTo { persistence: Persistence::KeepAliveHttp10, head_only: true });

    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", &limits), Ok(None));
    let mut scan = HeadScan::new();
    let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(scan.scan(&two[..20], &limits), Ok(None));
    assert_eq!(scan.scan(two, &limits), Ok(Some(27)));
    assert_eq!(scan.scan(two, &limits), Ok(Some(27)));
    assert_eq!(find_head_end(b"", &limits), Ok(None));
}

#[test]
fn fewer_slots_than_the_header_count_lower_the_cap() {
    let input = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    let mut slots = header_slots::<2>();
    assert_eq!(parse_head(input, &mut slots, &Limits::default()).unwrap_err(), Error::TooManyHeaders { limit: 2 });
    let mut slots = header_slots::<3>();
    assert!(parse_head(input, &mut slots, &Limits::default()).is_ok());
}

/// A driver step for the tests below: decode once on `buf` at `now`.
fn step(conn: &mut Conn, buf: &mut Vec<u8>, now: Instant) -> Result<Option<Incomplete>, Error> {
    let mut slots = header_slots::<64>();
    match conn.decode(buf, &mut slots, now)? {
        Decoded::Incomplete(i) => {
            buf.truncate(i.filled);
            Ok(Some(i))
        }
        Decoded::Request(r) => {
            let used = r.consumed;
            buf.drain(..used);
            Ok(None)
        }
    }
}

#[test]
fn hundred_continue_is_asked_for_once() {
    let t0 = Instant::now();
    let mut conn = Conn::new(Limits::default(), t0);
    let head = b"POST /capig/events HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let mut buf = head.to_vec();
    let i = step(&mut conn, &mut buf, t0).unwrap().unwrap();
    assert_eq!(i, Incomplete { filled: head.len(), needed: Some(head.len() + 5), send_continue: true });
    let i = step(&mut conn, &mut buf, t0).unwrap().unwrap();
    assert!(!i.send_continue);
    buf.extend_from_slice(b"hello");
    assert_eq!(step(&mut conn, &mut buf, t0), Ok(None));

    // Chunked: asked for too, once.
    let mut conn = Conn::new(Limits::default(), t0);
    let mut buf =
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    assert!(step(&mut conn, &mut buf, t0).unwrap().unwrap().send_continue);
    buf.extend_from_slice(b"1\r\n");
    assert!(!step(&mut conn, &mut buf, t0).unwrap().unwrap().send_continue);

    // The body came with the head: nothing to ask for.
    let mut conn = Conn::new(Limits::default(), t0);
    let mut buf = [&head[..], b"hello"].concat();
    assert_eq!(step(&mut conn, &mut buf, t0), Ok(None));

    let mut out = Vec::new();
    write_continue(&mut out);
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
}

#[test]
fn chunked_decoding_keeps_only_decoded_bytes() {
    let t0 = Instant::now();
    let mut conn = Conn::new(Limits::default(), t0);
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut buf = head.to_vec();
    step(&mut conn, &mut buf, t0).unwrap();
    // 1,000 one-byte chunks, each arriving with its framing: the buffer holds the head
    // and the data so far, never the 5 framing bytes per chunk.
    for i in 0..1000u32 {
        buf.extend_from_slice(format!("1\r\n{}\r\n", i % 10).as_bytes());
        let left = step(&mut conn, &mut buf, t0).unwrap().unwrap();
        assert_eq!(left.filled, head.len() + i as usize + 1);
        assert_eq!(buf.len(), left.filled);
    }
    buf.extend_from_slice(b"0\r\n\r\n");
    let mut slots = header_slots::<8>();
    let Decoded::Request(r) = conn.decode(&mut buf, &mut slots, t0).unwrap() else { panic!("incomplete") };
    assert_eq!(r.body.len(), 1000);
    assert!(r.body.iter().enumerate().all(|(i, &b)| b == b'0' + (i % 10) as u8));
    // The body is mutable in place, for simd-json.
    r.body[0] = b'x';
}

#[test]
fn chunked_decoder_on_its_own() {
    let limits = Limits::default();
    let mut d = ChunkedDecoder::new(&limits);
    let mut body = b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\nNEXT".to_vec();
    assert_eq!(d.decode(&mut body), Ok(Chunked::Done { len: 5, consumed: 22 }));
    assert_eq!(&body[..5], b"abcde");
    assert_eq!(&body[22..], b"NEXT");
    // Done stays done.
    assert_eq!(d.decode(&mut body), Ok(Chunked::Done { len: 5, consumed: 22 }));
    assert_eq!(d.decoded(), 5);

    let mut d = ChunkedDecoder::new(&limits);
    let mut body = b"4\r\nab".to_vec();
    assert_eq!(d.decode(&mut body), Ok(Chunked::Partial { filled: 2 }));
    body.truncate(2);
    body.extend_from_slice(b"cd\r\n0\r\n\r\n");
    assert_eq!(d.decode(&mut body), Ok(Chunked::Done { len: 4, consumed: 11 }));
    assert_eq!(&body[..4], b"abcd");
}

#[test]
fn deadlines_follow_the_connection() {
    let limits = Limits::default();
    let s = Duration::from_secs;
    let t0 = Instant::now();
    let mut conn = Conn::new(limits, t0);
    assert_eq!(conn.deadline(), Some(Deadline { at: t0 + s(10), kind: TimeoutKind::Header }));
    assert_eq!(conn.expire(t0 + s(9)), None);

    // Head at t1: the body timeout runs from there.
    let t1 = t0 + s(2);
    let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab".to_vec();
    step(&mut conn, &mut buf, t1).unwrap();
    assert_eq!(conn.state(), State::ReadingBody { since: t1 });
    assert_eq!(conn.deadline(), Some(Deadline { at: t1 + s(30), kind: TimeoutKind::Body }));
    buf.extend_from_slice(b"cd");
    assert_eq!(step(&mut conn, &mut buf, t1 + s(1)), Ok(None));
    assert_eq!(conn.state(), State::Handling);
    assert_eq!(conn.deadline(), None);
    assert_eq!(conn.expire(t1 + s(1000)), None);

    // Answered at t2: idle from there; the first byte of the next request at t3 starts
    // the header timeout.
    let t2 = t1 + s(3);
    conn.response_sent(t2);
    assert_eq!(conn.deadline(), Some(Deadline { at: t2 + s(75), kind: TimeoutKind::Idle }));
    assert_eq!(step(&mut conn, &mut buf, t2 + s(1)).unwrap().unwrap().filled, 0);
    assert_eq!(conn.state(), State::Idle { since: t2 });
    let t3 = t2 + s(50);
    buf.extend_from_slice(b"G");
    step(&mut conn, &mut buf, t3).unwrap();
    assert_eq!(conn.state(), State::ReadingHead { since: t3 });
    assert_eq!(
        conn.expire(t3 + s(10)),
        Some(Expired::Respond(Error::HeaderTimeout { after_ms: 10_000 }))
    );
    assert_eq!(conn.state(), State::Closed { by: Error::HeaderTimeout { after_ms: 10_000 } });
    assert_eq!(step(&mut conn, &mut buf, t3 + s(10)), Err(Error::HeaderTimeout { after_ms: 10_000 }));
    assert_eq!(conn.deadline(), None);

    // The body timeout gives a 408 too.
    let mut conn = Conn::new(limits, t0);
    let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n".to_vec();
    step(&mut conn, &mut buf, t0).unwrap();
    assert_eq!(conn.expire(t0 + s(30)), Some(Expired::Respond(Error::BodyTimeout { after_ms: 30_000 })));

    // An idle connection is closed without an answer.
    let mut conn = Conn::new(limits, t0);
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    step(&mut conn, &mut buf, t0).unwrap();
    conn.response_sent(t0);
    assert_eq!(conn.expire(t0 + s(75)), Some(Expired::Close));
    assert_eq!(conn.state(), State::Closed { by: Error::IdleTimeout { after_ms: 75_000 } });

    // Blank lines after a request keep the connection idle.
    let mut conn = Conn::new(limits, t0);
    let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\n".to_vec();
    assert_eq!(step(&mut conn, &mut buf, t0), Ok(None));
    assert_eq!(buf, b"\r\n");
    conn.response_sent(t0);
    assert_eq!(step(&mut conn, &mut buf, t0 + s(1)).unwrap().unwrap().filled, 2);
    assert_eq!(conn.state(), State::Idle { since: t0 });
    buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(step(&mut conn, &mut buf, t0 + s(2)), Ok(None));

    // A timeout too large to add is no deadline rather than a panic.
    let forever = Limits { header_timeout: Duration::MAX, ..limits };
    let conn = Conn::new(forever, t0);
    assert_eq!(conn.deadline(), None);

    // Parse errors close the connection as well.
    let mut conn = Conn::new(limits, t0);
    let mut buf = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    assert_eq!(step(&mut conn, &mut buf, t0), Err(Error::MissingHost));
    assert_eq!(conn.deadline(), None);
    assert_eq!(step(&mut conn, &mut buf, t0), Err(Error::MissingHost));
}

#[test]
fn a_connection_is_small() {
    // 100,000 open connections must fit in little memory; the header slots are not here.
    assert!(std::mem::size_of::<Conn>() <= 256, "{}", std::mem::size_of::<Conn>());
    assert!(std::mem::size_of::<Incomplete>() <= 32);
}

#[test]
fn limits_come_from_the_configuration() {
    let c = crate::config::Limits::default();
    let l = Limits::from(&c);
    assert_eq!(l, Limits::default());
    assert_eq!(
        (l.body_bytes, l.header_bytes, l.header_count, l.request_line_bytes),
        (2 << 20, 16 << 10, 64, 8 << 10)
    );
    assert_eq!(
        (l.header_timeout, l.body_timeout, l.idle_timeout),
        (Duration::from_millis(c.header_timeout_ms), Duration::from_millis(c.body_timeout_ms), Duration::from_millis(c.idle_timeout_ms))
    );
    let tight = crate::config::Limits { header_bytes: 4096, ..c };
    assert_eq!(Limits::from(&tight).request_line_bytes, 4096);
}

fn written(r: &Response<'_>) -> String {
    let mut out = Vec::new();
    write_response(&mut out, r);
    String::from_utf8(out).unwrap()
}

#[test]
fn responses() {
    let keep = ReplyTo { persistence: Persistence::KeepAlive, head_only: false };
    let cases: &[(Response<'_>, &str)] = &[
        (
            Response { status: 202, headers: &[("Content-Type", b"application/json")], body: b"{}", to: keep },
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            Response { status: 200, headers: &[], body: b"ok", to: ReplyTo::CLOSE },
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        ),
        (
            Response { status: 200, headers: &[], body: b"", to: ReplyTo { persistence: Persistence::KeepAliveHttp10, head_only: false } },
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
        ),
        (
            Response { status: 200, headers: &[("ETag", b"\"v1\"")], body: b"hello", to: ReplyTo { persistence: Persistence::KeepAlive, head_only: true } },
            "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n",
        ),
        (
            Response { status: 204, headers: &[("Access-Control-Allow-Origin", b"https://shop.example")], body: b"", to: keep },
            "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: https://shop.example\r\n\r\n",
        ),
        (
            Response { status: 101, headers: &[("Upgrade", b"websocket"), ("Connection", b"Upgrade")], body: b"", to: keep },
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
        (
            Response { status: 304, headers: &[], body: b"", to: keep },
            "HTTP/1.1 304 Not Modified\r\n\r\n",
        ),
        // A value can never start a header line of its own.
        (
            Response { status: 200, headers: &[("X", b"a\r\nSet-Cookie: b\0")], body: b"", to: keep },
            "HTTP/1.1 200 OK\r\nX: a  Set-Cookie: b \r\nContent-Length: 0\r\n\r\n",
        ),
        (
            Response { status: 299, headers: &[], body: b"", to: keep },
            "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for (r, expected) in cases {
        assert_eq!(written(r), *expected);
    }
    // Appends, keeping what was there.
    let mut out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    write_response(&mut out, &Response { status: 200, headers: &[], body: b"x", to: keep });
    assert!(out.starts_with(CONTINUE) && out.ends_with(b"\r\n\r\nx"));
}

#[test]
fn error_answers() {
    let keep = ReplyTo { persistence: Persistence::KeepAlive, head_only: false };
    let answer = |e: Error, to: ReplyTo| {
        let mut out = Vec::new();
        e.write_response(&mut out, to);
        String::from_utf8(out).unwrap()
    };
    let body_of = |e: Error| format!("{e}\n");
    let cases: &[(Error, &str, &str)] = &[
        (Error::BadContentLength, "400 Bad Request", ""),
        (Error::NotFound, "404 Not Found", ""),
        (Error::MethodNotAllowed { allow: "GET, HEAD" }, "405 Method Not Allowed", "Allow: GET, HEAD\r\n"),
        (Error::HeaderTimeout { after_ms: 10_000 }, "408 Request Timeout", ""),
        (Error::LengthRequired, "411 Length Required", ""),
        (Error::BodyTooLarge { limit: 2 << 20 }, "413 Content Too Large", ""),
        (Error::UriTooLong { limit: 8192 }, "414 URI Too Long", ""),
        (Error::ExpectationFailed, "417 Expectation Failed", ""),
        (Error::HeadersTooLarge { limit: 16384 }, "431 Request Header Fields Too Large", ""),
        (Error::UnsupportedTransferCoding, "501 Not Implemented", ""),
        (Error::Unavailable { retry_after_secs: 5 }, "503 Service Unavailable", "Retry-After: 5\r\n"),
        (Error::VersionNotSupported, "505 HTTP Version Not Supported", ""),
    ];
    for &(e, status_line, extra) in cases {
        let close = if e.must_close() { "Connection: close\r\n" } else { "" };
        let body = body_of(e);
        assert_eq!(
            answer(e, keep),
            format!(
                "HTTP/1.1 {status_line}\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}Content-Length: {}\r\n{close}\r\n{body}",
                body.len()
            ),
            "{e:?}"
        );
        assert_eq!(format!("{} {}", e.status(), e.reason()), status_line);
    }
    assert_eq!(
        Error::BodyTooLarge { limit: 2097152 }.to_string(),
        "request body larger than 2097152 bytes; send fewer events per request"
    );
    assert_eq!(Error::NotFound.to_string(), "no such endpoint; send events to POST /capig/events or POST /capi/{pixel_id}/events");
    // The router's refusals keep the connection; an HTTP/1.0 client is told so.
    assert!(answer(Error::NotFound, ReplyTo { persistence: Persistence::KeepAliveHttp10, head_only: false })
        .contains("Connection: keep-alive\r\n"));
    assert!(answer(Error::NotFound, ReplyTo::CLOSE).contains("Connection: close\r\n"));
    // Answering HEAD: no body bytes.
    assert!(answer(Error::NotFound, ReplyTo { persistence: Persistence::KeepAlive, head_only: true }).ends_with("\r\n\r\n"));
    // Every error answers with a text that says what to do and fits its buffer.
    for e in every_error() {
        let text = e.to_string();
        assert!(text.contains(';') && text.len() < 200, "{e:?}: {text}");
        assert!(answer(e, ReplyTo::CLOSE).ends_with(&format!("{text}\n")));
        assert!(!e.reason().is_empty());
    }
}

fn every_error() -> Vec<Error> {
    use Error::*;
    vec![
        BadRequestLine, BadHeaderName, BadHeaderValue, BadLineEnding, ObsFold, BadTarget,
        MissingHost, DuplicateHost, BadHost, BadContentLength, ConflictingContentLength,
        ContentLengthWithTransferEncoding, TransferEncodingHttp10, ChunkedNotFinal, BadChunkSize,
        ChunkSizeTooLong, ChunkLineEnding, ChunkDataEnd, ChunkExtensionsTooLong { limit: usize::MAX },
        BadTrailer, HeaderTimeout { after_ms: u64::MAX }, BodyTimeout { after_ms: 1 },
        IdleTimeout { after_ms: 1 }, LengthRequired, BodyTooLarge { limit: usize::MAX },
        UriTooLong { limit: 1 }, ExpectationFailed, HeadersTooLarge { limit: 1 },
        TooManyHeaders { limit: 1 }, TrailersTooLarge { limit: 1 }, UnsupportedTransferCoding,
        VersionNotSupported, NotFound, MethodNotAllowed { allow: "POST, OPTIONS" },
        Unavailable { retry_after_secs: u32::MAX },
    ]
}

#[test]
fn error_answers_never_echo_the_request() {
    let inputs = [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: SECRET\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6SECRET\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: SECRET/x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nExpect: SECRET\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: SECRET, chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nCookie: SECRET\x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nCookie: x\r\n SECRET\r\n\r\n",
        "GET /SECRET?email=SECRET HTTP/9.9\r\nHost: a\r\n\r\n",
        "GET SECRET HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nSECRETSECRET",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nSECRET SECRET\r\n\r\n",
    ];
    for input in inputs {
        let mut conn = Conn::new(Limits::default(), Instant::now());
        let mut buf = input.as_bytes().to_vec();
        let mut slots = header_slots::<64>();
        let e = conn.decode(&mut buf, &mut slots, Instant::now()).expect_err(input);
        let mut out = Vec::new();
        e.write_response(&mut out, ReplyTo::CLOSE);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("SECRET") && !format!("{e:?}").contains("SECRET"), "{input:?} → {out}");
    }
}

#[test]
fn http_dates() {
    let cases: &[(u64, &str)] = &[
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 GMT"),
        (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
        (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (u64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];
    for &(secs, expected) in cases {
        assert_eq!(std::str::from_utf8(&http_date(secs)).unwrap(), expected, "{secs}");
    }
}
