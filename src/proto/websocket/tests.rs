use std::time::{Duration, Instant};

use super::frame::{self, CheckError, Header, Incomplete, Opcode};
use super::handshake::{self, AcceptKey, HandshakeError};
use super::*;

// ---------------------------------------------------------------------------------------
// A client written for the tests: masks its frames and can break every rule on purpose.

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const TEXT: u8 = 0x01;
const BINARY: u8 = 0x02;
const CONT: u8 = 0x00;
const FIN: u8 = 0x80;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8A;

/// How the test client writes the payload length.
#[derive(Clone, Copy)]
enum Len {
    Minimal,
    Force16,
    Force64,
    /// A 64-bit length field with this value, whatever the payload.
    Raw64(u64),
}

fn client_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>, len: Len) -> Vec<u8> {
    let mut f = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    match len {
        Len::Minimal if n <= 125 => f.push(m | n as u8),
        Len::Minimal if n <= 0xFFFF => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        Len::Force16 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        Len::Minimal | Len::Force64 => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        Len::Raw64(v) => {
            f.push(m | 127);
            f.extend_from_slice(&v.to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// A well-formed masked client frame.
fn c(b0: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(b0, payload, Some(MASK), Len::Minimal)
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Bytes the server is expected to send, written with the codec's own encoder (whose
/// output is checked byte for byte against RFC 6455 in `encoder_matches_rfc_examples`).
fn server(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out);
    out
}

fn pong(payload: &[u8]) -> Vec<u8> {
    server(|o| frame::encode_pong(o, payload))
}

fn close_sent(code: u16, reason: &str) -> Vec<u8> {
    server(|o| frame::encode_close(o, Some(CloseCode(code)), reason))
}

fn failed_with(e: ProtocolError) -> Vec<u8> {
    server(|o| frame::encode_close(o, Some(e.close_code()), e.close_reason()))
}

// ---------------------------------------------------------------------------------------
// A driver written for the tests: one growable read buffer, used as the contract says.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
}

fn text(s: &str) -> Got {
    Got::Text(s.into())
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Got>,
    sent: Vec<u8>,
    end: Option<Closed>,
}

fn open(messages: Vec<Got>, sent: Vec<u8>) -> Outcome {
    Outcome {
        messages,
        sent,
        end: None,
    }
}

fn ended(messages: Vec<Got>, sent: Vec<u8>, end: Closed) -> Outcome {
    Outcome {
        messages,
        sent,
        end: Some(end),
    }
}

fn failed(messages: Vec<Got>, e: ProtocolError) -> Outcome {
    ended(messages, failed_with(e), Closed::Failed(e))
}

fn got(message: Message<'_>) -> Got {
    match message.kind {
        MessageKind::Text => {
            Got::Text(String::from_utf8(message.payload.to_vec()).expect("text is UTF-8"))
        }
        MessageKind::Binary => Got::Binary(message.payload.to_vec()),
    }
}

/// Feeds `input` cut at the increasing offsets `cuts`, as a socket would deliver it.
fn drive(config: Config, input: &[u8], cuts: &[usize]) -> Outcome {
    let now = Instant::now();
    let mut conn = Connection::new(config, now);
    let (mut buf, mut sent, mut messages) = (Vec::new(), Vec::new(), Vec::new());
    let mut fed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        buf.extend_from_slice(&input[fed..cut]);
        fed = cut;
        loop {
            match conn.decode(&mut buf, now, &mut sent) {
                Item::Message(m) => messages.push(got(m)),
                Item::NeedMore { keep, needed } => {
                    assert!(
                        keep + needed.unwrap_or(0) <= config.buffer_len(),
                        "keep {keep} + {needed:?}"
                    );
                    buf.truncate(keep);
                    break;
                }
                Item::Closed(why) => return ended(messages, sent, why),
            }
        }
    }
    open(messages, sent)
}

/// Decodes `input` whole, a byte at a time, and cut in two at every point (a sample of
/// points for long inputs): every way must give `expected`.
fn check(config: Config, input: &[u8], expected: &Outcome) {
    assert_eq!(&drive(config, input, &[]), expected, "whole input");
    let bytes: Vec<usize> = (1..input.len()).collect();
    assert_eq!(&drive(config, input, &bytes), expected, "a byte at a time");
    let step = (input.len() / 200).max(1);
    for cut in (1..input.len()).step_by(step) {
        assert_eq!(&drive(config, input, &[cut]), expected, "cut at {cut}");
    }
}

fn config() -> Config {
    Config::default()
}

fn small() -> Config {
    Config {
        max_frame: 1024,
        max_message: 2048,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Handshake

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3 prints this value (SHA-1 b37a4f2c…c4ea); it was also checked with
/// Python's hashlib and base64.
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Method, headers, and the accept value or the refusal.
type HandshakeCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Result<&'a str, HandshakeError>,
);

fn check_handshake(method: &str, headers: &[(&str, &str)], expected: Result<&str, HandshakeError>) {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|&(n, v)| (n, v.as_bytes())).collect();
    let got = handshake::check_request(method, pairs.iter().copied());
    match (got, expected) {
        (Ok(key), Ok(want)) => assert_eq!(key.as_str(), want, "{headers:?}"),
        (got, want) => assert_eq!(
            got.map(|k| k.as_str().to_owned()),
            want.map(str::to_owned),
            "{headers:?}"
        ),
    }
}

/// The request of RFC 6455 §1.2 with one header replaced (`None` value: removed).
fn rfc_request<'a>(replace: &[(&'a str, Option<&'a str>)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("Host", "server.example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", RFC_KEY),
        ("Origin", "http://example.com"),
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        ("Sec-WebSocket-Version", "13"),
    ];
    for &(name, value) in replace {
        headers.retain(|(n, _)| *n != name);
        if let Some(value) = value {
            headers.push((name, value));
        }
    }
    headers
}

#[test]
fn accept_key_of_the_rfc_example() {
    assert_eq!(AcceptKey::for_key(RFC_KEY.as_bytes()).as_str(), RFC_ACCEPT);
    assert_eq!(
        AcceptKey::for_key(RFC_KEY.as_bytes()).as_bytes(),
        RFC_ACCEPT.as_bytes()
    );
    // The example of the Wikipedia article and the hybi drafts (computed with Python too).
    assert_eq!(
        AcceptKey::for_key(b"x3JJHMbDL1EzLkh9GBhXDw==").as_str(),
        "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
    );
}

#[test]
fn upgrade_requests() {
    use HandshakeError as E;
    let ok = Ok(RFC_ACCEPT);
    let long_key = "A".repeat(4096);
    let cases: &[HandshakeCase] = &[
        ("GET", rfc_request(&[]), ok),
        // Names and tokens are case-insensitive; Firefox sends "keep-alive, Upgrade".
        (
            "GET",
            vec![
                ("upgrade", "WebSocket"),
                ("CONNECTION", "keep-alive, Upgrade"),
                ("sec-websocket-key", RFC_KEY),
                ("SEC-WEBSOCKET-VERSION", "13"),
            ],
            ok,
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some("  dGhlIHNhbXBsZSBub25jZQ==\t"))]),
            ok,
        ),
        (
            "GET",
            rfc_request(&[("Upgrade", Some("h2c,  websocket "))]),
            ok,
        ),
        // Connection spread over two headers.
        (
            "GET",
            [
                rfc_request(&[("Connection", Some("keep-alive"))]),
                vec![("Connection", "upgrade")],
            ]
            .concat(),
            ok,
        ),
        (
            "GET",
            rfc_request(&[(
                "Sec-WebSocket-Extensions",
                Some("permessage-deflate; client_max_window_bits"),
            )]),
            ok,
        ),
        ("POST", rfc_request(&[]), Err(E::NotGet)),
        ("get", rfc_request(&[]), Err(E::NotGet)),
        ("GET", rfc_request(&[("Upgrade", None)]), Err(E::NoUpgrade)),
        (
            "GET",
            rfc_request(&[("Upgrade", Some("h2c"))]),
            Err(E::NoUpgrade),
        ),
        (
            "GET",
            rfc_request(&[("Upgrade", Some("websocket2"))]),
            Err(E::NoUpgrade),
        ),
        (
            "GET",
            rfc_request(&[("Connection", None)]),
            Err(E::NoConnectionUpgrade),
        ),
        (
            "GET",
            rfc_request(&[("Connection", Some("keep-alive"))]),
            Err(E::NoConnectionUpgrade),
        ),
        (
            "GET",
            rfc_request(&[("Connection", Some("upgrades"))]),
            Err(E::NoConnectionUpgrade),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Version", None)]),
            Err(E::Version),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Version", Some("8"))]),
            Err(E::Version),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Version", Some("13, 8"))]),
            Err(E::Version),
        ),
        (
            "GET",
            [rfc_request(&[]), vec![("Sec-WebSocket-Version", "8")]].concat(),
            Err(E::Version),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", None)]),
            Err(E::NoKey),
        ),
        (
            "GET",
            [rfc_request(&[]), vec![("Sec-WebSocket-Key", RFC_KEY)]].concat(),
            Err(E::DuplicateKey),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some(""))]),
            Err(E::BadKey),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZQ"))]),
            Err(E::BadKey),
        ),
        // 17 and 15 bytes.
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZXM="))]),
            Err(E::BadKey),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25j"))]),
            Err(E::BadKey),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZ!=="))]),
            Err(E::BadKey),
        ),
        // Canonical base64 only: these trailing bits would have to be zero.
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some("AQIDBAUGBwgJCgsMDQ4PEC=="))]),
            Err(E::BadKey),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some("AQIDBAUGBwgJCgsMDQ4PEA=="))]),
            Ok("C/0nmHhBztSRGR1CwL6Tf4ZjwpY="),
        ),
        (
            "GET",
            rfc_request(&[("Sec-WebSocket-Key", Some(&long_key))]),
            Err(E::BadKey),
        ),
    ];
    for (method, headers, expected) in cases {
        check_handshake(method, headers, *expected);
    }
}

#[test]
fn refusals_map_to_statuses_and_never_echo_values() {
    let secret = "dGhlIHNhbXBsZSBub25jZ!==";
    let headers = rfc_request(&[("Sec-WebSocket-Key", Some(secret))]);
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|&(n, v)| (n, v.as_bytes())).collect();
    let e = handshake::check_request("GET", pairs.iter().copied()).unwrap_err();
    assert_eq!((e, e.status()), (HandshakeError::BadKey, 400));
    assert!(!e.to_string().contains(secret));

    let cases: &[(HandshakeError, &str, bool)] = &[
        (
            HandshakeError::BadKey,
            "HTTP/1.1 400 Bad Request\r\n",
            false,
        ),
        (
            HandshakeError::NotGet,
            "HTTP/1.1 400 Bad Request\r\n",
            false,
        ),
        (
            HandshakeError::Version,
            "HTTP/1.1 426 Upgrade Required\r\n",
            true,
        ),
    ];
    for &(e, status_line, names_version) in cases {
        let mut out = Vec::new();
        e.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(status_line), "{text}");
        assert_eq!(
            text.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            names_version,
            "{text}"
        );
        assert_eq!(
            text.contains("\r\nUpgrade: websocket\r\n"),
            names_version,
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, format!("{e}\n"));
        assert!(
            head.contains(&format!("\r\nContent-Length: {}\r", body.len())),
            "{text}"
        );
    }
}

#[test]
fn switching_protocols_response() {
    let accept = AcceptKey::for_key(RFC_KEY.as_bytes());
    let check = |protocol, extra: &[(&str, &[u8])], expected: &str| {
        let mut out = b"earlier".to_vec();
        handshake::write_accept(&mut out, &accept, protocol, extra);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("earlier{expected}")
        );
    };
    let base = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
    check(None, &[], &format!("{base}\r\n"));
    check(
        Some("chat"),
        &[],
        &format!("{base}Sec-WebSocket-Protocol: chat\r\n\r\n"),
    );
    check(
        None,
        &[
            ("Set-Cookie", b"_fbp=fb.1.1.2; Path=/; Max-Age=7776000"),
            ("X-A", b""),
        ],
        &format!("{base}Set-Cookie: _fbp=fb.1.1.2; Path=/; Max-Age=7776000\r\nX-A: \r\n\r\n"),
    );
    // A header that would smuggle another one is left out.
    check(
        Some("a\r\nb"),
        &[
            ("Set-Cookie", b"a=b\r\nLocation: x"),
            ("Bad\nName", b"v"),
            ("A:B", b"v"),
            ("", b"v"),
            ("Ok", b"1"),
        ],
        &format!("{base}Ok: 1\r\n\r\n"),
    );
}

#[test]
fn subprotocols_are_only_what_the_client_offered() {
    let headers = [
        ("Sec-WebSocket-Protocol", &b"chat, superchat"[..]),
        ("sec-websocket-protocol", b" v2 "),
    ];
    let cases = [
        ("chat", true),
        ("superchat", true),
        ("v2", true),
        ("Chat", false),
        ("super", false),
        ("", false),
    ];
    for (name, offered) in cases {
        assert_eq!(
            handshake::offers_protocol(headers.iter().copied(), name),
            offered,
            "{name}"
        );
    }
    assert!(!handshake::offers_protocol(std::iter::empty(), "chat"));
}

// ---------------------------------------------------------------------------------------
// Encoding

fn check_encode(write: impl FnOnce(&mut Vec<u8>), expected: &[u8]) {
    let mut out = b"x".to_vec();
    write(&mut out);
    assert_eq!(out[0], b'x');
    assert_eq!(&out[1..], expected);
}

fn header_then(head: &[u8], payload: &[u8]) -> Vec<u8> {
    [head, payload].concat()
}

#[test]
fn encoder_matches_rfc_examples() {
    // RFC 6455 §5.7.
    let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    check_encode(|o| frame::encode_text(o, "Hello"), &hello);
    check_encode(
        |o| frame::encode_with(o, MessageKind::Text, |o| o.extend_from_slice(b"Hello")),
        &hello,
    );
    check_encode(
        |o| frame::encode_ping(o, b"Hello"),
        &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
    );
    let b256 = vec![7u8; 256];
    check_encode(
        |o| frame::encode_binary(o, &b256),
        &header_then(&[0x82, 0x7E, 0x01, 0x00], &b256),
    );
    let b64k = vec![9u8; 65536];
    check_encode(
        |o| frame::encode_binary(o, &b64k),
        &header_then(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0], &b64k),
    );
}

#[test]
fn encoder_length_boundaries_and_truncation() {
    for n in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let head: Vec<u8> = match n {
            0..=125 => vec![0x82, n as u8],
            126..=65535 => [&[0x82, 126][..], &(n as u16).to_be_bytes()].concat(),
            _ => [&[0x82, 127][..], &(n as u64).to_be_bytes()].concat(),
        };
        check_encode(
            |o| frame::encode_binary(o, &payload),
            &header_then(&head, &payload),
        );
        check_encode(
            |o| frame::encode_with(o, MessageKind::Binary, |o| o.extend_from_slice(&payload)),
            &header_then(&head, &payload),
        );
    }
    let long = [1u8; 200];
    check_encode(
        |o| frame::encode_pong(o, &long),
        &header_then(&[0x8A, 125], &long[..125]),
    );
    check_encode(|o| frame::encode_close(o, None, "ignored"), &[0x88, 0x00]);
    check_encode(
        |o| frame::encode_close(o, Some(CloseCode::NORMAL), "bye"),
        b"\x88\x05\x03\xe8bye",
    );
    // 70 two-byte characters: cut to 61 of them (122 bytes), not mid-character.
    let reason = "é".repeat(70);
    check_encode(
        |o| frame::encode_close(o, Some(CloseCode(4000)), &reason),
        &header_then(&[0x88, 124, 0x0f, 0xa0], "é".repeat(61).as_bytes()),
    );
}

// ---------------------------------------------------------------------------------------
// Frame headers and unmasking

#[test]
fn frame_check_phases() {
    let hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let header = Header {
        fin: true,
        opcode: Opcode::Text,
        mask: MASK,
        header_len: 6,
        payload_len: 5,
    };
    let cases: &[(&[u8], usize, Result<Header, CheckError>)] = &[
        (
            &[],
            100,
            Err(CheckError::Incomplete(Incomplete { needed: None })),
        ),
        (
            &hello[..1],
            100,
            Err(CheckError::Incomplete(Incomplete { needed: None })),
        ),
        (
            &hello[..5],
            100,
            Err(CheckError::Incomplete(Incomplete { needed: None })),
        ),
        (
            &hello[..6],
            100,
            Err(CheckError::Incomplete(Incomplete { needed: Some(5) })),
        ),
        (
            &hello[..10],
            100,
            Err(CheckError::Incomplete(Incomplete { needed: Some(1) })),
        ),
        (&hello, 100, Ok(header)),
        (
            &hello,
            4,
            Err(CheckError::Protocol(ProtocolError::FrameTooBig {
                limit: 4,
            })),
        ),
        // A wrong first byte is refused on its own, before the rest arrives.
        (
            &[0xC1],
            100,
            Err(CheckError::Protocol(ProtocolError::ReservedBits)),
        ),
    ];
    for (input, max, expected) in cases {
        assert_eq!(frame::check(input, *max), *expected, "{input:x?}");
    }
    let mut buf = hello.to_vec();
    buf.extend_from_slice(b"next");
    let header = frame::check(&buf, 100).unwrap();
    assert_eq!(header.unmask(&mut buf), b"Hello");
    assert_eq!(&buf[header.frame_len()..], b"next");
}

#[test]
fn unmask_matches_bytewise_xor_at_every_length() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for len in 0..80 {
        let mask = [
            (seed >> 8) as u8,
            (seed >> 16) as u8,
            (seed >> 24) as u8,
            (seed >> 32) as u8,
        ];
        let plain: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
        let mut data: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        frame::unmask(mask, &mut data);
        assert_eq!(data, plain, "len {len}");
    }
}

#[test]
fn close_payloads() {
    use ProtocolError as E;
    type Parsed<'a> = Result<Option<(u16, &'a str)>, ProtocolError>;
    let cases: &[(&[u8], Parsed)] = &[
        (b"", Ok(None)),
        (b"\x03", Err(E::CloseLength1)),
        (b"\x03\xe8", Ok(Some((1000, "")))),
        (b"\x0f\xa0h\xc3\xa9", Ok(Some((4000, "hé")))),
        (b"\x03\xed", Err(E::CloseCode(1005))),
        (b"\x03\xe8\xc3", Err(E::CloseReasonUtf8)),
    ];
    for (payload, expected) in cases {
        let got = frame::parse_close(payload).map(|p| p.map(|(code, reason)| (code.0, reason)));
        assert_eq!(got, *expected, "{payload:x?}");
    }
}

// ---------------------------------------------------------------------------------------
// Decoding whole streams

#[test]
fn rfc_example_frames() {
    // §5.7: a single-frame masked text message, byte for byte.
    let hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    check(config(), &hello, &open(vec![text("Hello")], vec![]));
    // The same text unmasked, as the RFC shows a server sending it: refused from a client.
    let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    check(
        config(),
        &unmasked,
        &failed(vec![], ProtocolError::Unmasked),
    );
    // A fragmented unmasked text message, masked as a client must.
    let fragmented = cat(&[c(TEXT, b"Hel"), c(FIN | CONT, b"lo")]);
    check(config(), &fragmented, &open(vec![text("Hello")], vec![]));
    // The masked pong of the example is ignored; a masked ping gets an unmasked pong.
    let masked_pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    check(config(), &masked_pong, &open(vec![], vec![]));
    check(
        config(),
        &c(PING, b"Hello"),
        &open(vec![], vec![0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
    );
    // 256 bytes (16-bit length) and 64 KiB (64-bit length) binary messages.
    let b256: Vec<u8> = (0..=255).collect();
    let f256 = c(FIN | BINARY, &b256);
    assert_eq!(&f256[..4], &[0x82, 0xFE, 0x01, 0x00]);
    check(config(), &f256, &open(vec![Got::Binary(b256)], vec![]));
    let b64k: Vec<u8> = (0..65536).map(|i| (i * 7 % 256) as u8).collect();
    let f64k = c(FIN | BINARY, &b64k);
    assert_eq!(&f64k[..10], &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]);
    check(config(), &f64k, &open(vec![Got::Binary(b64k)], vec![]));
}

#[test]
fn several_messages_in_one_stream() {
    let input = cat(&[
        c(FIN | TEXT, b"{\"a\":1}"),
        c(FIN | TEXT, b""),
        c(FIN | BINARY, &[0, 1, 2]),
        c(PING, b""),
        c(TEXT, b"fr"),
        c(CONT, b""),
        c(FIN | CONT, b"agmented"),
        c(FIN | TEXT, "é😀".as_bytes()),
    ]);
    let expected = open(
        vec![
            text("{\"a\":1}"),
            text(""),
            Got::Binary(vec![0, 1, 2]),
            text("fragmented"),
            text("é😀"),
        ],
        pong(b""),
    );
    check(config(), &input, &expected);
}

#[test]
fn control_frames_inside_fragmented_messages() {
    let cases: Vec<(Vec<u8>, Outcome)> = vec![
        (
            cat(&[
                c(TEXT, b"Hel"),
                c(PING, b"x"),
                c(PONG, b"y"),
                c(CONT, b"l"),
                c(PING, b"z"),
                c(FIN | CONT, b"o"),
            ]),
            open(vec![text("Hello")], cat(&[pong(b"x"), pong(b"z")])),
        ),
        (
            cat(&[
                c(BINARY, &[1; 100]),
                c(PING, &[2; 125]),
                c(FIN | CONT, &[3; 200]),
            ]),
            open(
                vec![Got::Binary([vec![1; 100], vec![3; 200]].concat())],
                pong(&[2; 125]),
            ),
        ),
        // A close inside a message ends the connection; the half message is dropped.
        (
            cat(&[c(TEXT, b"Hel"), c(CLOSE, &close_payload(1000, b""))]),
            ended(
                vec![],
                close_sent(1000, ""),
                Closed::ByPeer {
                    code: Some(CloseCode::NORMAL),
                },
            ),
        ),
        // A message right after a fragmented one reuses the buffer from the start.
        (
            cat(&[
                c(TEXT, b"a"),
                c(PING, b"p"),
                c(FIN | CONT, b"b"),
                c(FIN | TEXT, b"c"),
            ]),
            open(vec![text("ab"), text("c")], pong(b"p")),
        ),
    ];
    for (input, expected) in &cases {
        check(config(), input, expected);
    }
}

#[test]
fn framing_violations() {
    use ProtocolError as E;
    let cases: Vec<(Vec<u8>, Outcome)> = vec![
        (
            client_frame(FIN | TEXT, b"hi", None, Len::Minimal),
            failed(vec![], E::Unmasked),
        ),
        (
            client_frame(PING, b"", None, Len::Minimal),
            failed(vec![], E::Unmasked),
        ),
        // RSV1 is what permessage-deflate would set; it was declined.
        (c(0xC1, b"hi"), failed(vec![], E::ReservedBits)),
        (c(0xA1, b"hi"), failed(vec![], E::ReservedBits)),
        (c(0x91, b"hi"), failed(vec![], E::ReservedBits)),
        (c(0x83, b""), failed(vec![], E::UnknownOpcode(3))),
        (c(0x87, b""), failed(vec![], E::UnknownOpcode(7))),
        (c(0x8B, b""), failed(vec![], E::UnknownOpcode(0xB))),
        (c(0x8F, b""), failed(vec![], E::UnknownOpcode(0xF))),
        (c(0x09, b""), failed(vec![], E::FragmentedControl)),
        (c(0x08, b""), failed(vec![], E::FragmentedControl)),
        (c(PING, &[0; 126]), failed(vec![], E::ControlTooLong)),
        (c(CLOSE, &[0; 126]), failed(vec![], E::ControlTooLong)),
        // Control frames may not use the longer length forms at all.
        (
            client_frame(PONG, b"x", Some(MASK), Len::Force16),
            failed(vec![], E::ControlTooLong),
        ),
        (
            client_frame(FIN | TEXT, b"Hello", Some(MASK), Len::Force16),
            failed(vec![], E::NonMinimalLength),
        ),
        (
            client_frame(FIN | TEXT, &[b'a'; 125], Some(MASK), Len::Force16),
            failed(vec![], E::NonMinimalLength),
        ),
        (
            client_frame(FIN | TEXT, &[b'a'; 200], Some(MASK), Len::Force64),
            failed(vec![], E::NonMinimalLength),
        ),
        (
            client_frame(FIN | TEXT, &[b'a'; 65535], Some(MASK), Len::Force64),
            failed(vec![], E::NonMinimalLength),
        ),
        // The top bit of a 64-bit length: refused from the header, with no payload sent.
        (
            client_frame(FIN | BINARY, b"", Some(MASK), Len::Raw64(1 << 63)),
            failed(vec![], E::LengthTopBit),
        ),
        (
            client_frame(FIN | BINARY, b"", Some(MASK), Len::Raw64(u64::MAX)),
            failed(vec![], E::LengthTopBit),
        ),
        (
            c(FIN | CONT, b"x"),
            failed(vec![], E::ContinuationWithoutStart),
        ),
        (c(CONT, b"x"), failed(vec![], E::ContinuationWithoutStart)),
        (
            cat(&[c(TEXT, b"a"), c(FIN | TEXT, b"b")]),
            failed(vec![], E::MessageInterleaved),
        ),
        (
            cat(&[c(TEXT, b"a"), c(BINARY, b"b")]),
            failed(vec![], E::MessageInterleaved),
        ),
        // Messages before the violation are delivered; nothing after it is read.
        (
            cat(&[c(FIN | TEXT, b"ok"), c(0x83, b""), c(FIN | TEXT, b"never")]),
            failed(vec![text("ok")], E::UnknownOpcode(3)),
        ),
        (
            cat(&[c(PING, b"1"), c(0xC2, b"")]),
            ended(
                vec![],
                cat(&[pong(b"1"), failed_with(E::ReservedBits)]),
                Closed::Failed(E::ReservedBits),
            ),
        ),
    ];
    for (input, expected) in &cases {
        check(config(), input, expected);
    }
}

#[test]
fn size_caps_are_decided_from_the_header() {
    use ProtocolError as E;
    let frame_cap = E::FrameTooBig { limit: 1024 };
    let message_cap = E::MessageTooBig { limit: 2048 };
    // Only the header of the offending frame is sent: the codec must not wait for more.
    let header_of = |b0, n: usize| {
        let f = c(b0, &vec![b'a'; n]);
        f[..f.len() - n].to_vec()
    };
    let cases: Vec<(Vec<u8>, Outcome)> = vec![
        (
            c(FIN | BINARY, &[1; 1024]),
            open(vec![Got::Binary(vec![1; 1024])], vec![]),
        ),
        (header_of(FIN | BINARY, 1025), failed(vec![], frame_cap)),
        (header_of(FIN | TEXT, 70000), failed(vec![], frame_cap)),
        (
            client_frame(FIN | BINARY, b"", Some(MASK), Len::Raw64(1 << 40))[..14].to_vec(),
            failed(vec![], frame_cap),
        ),
        (
            cat(&[
                c(TEXT, &[b'a'; 1024]),
                c(CONT, &[b'b'; 1024]),
                c(FIN | CONT, b""),
            ]),
            open(
                vec![Got::Text(["a".repeat(1024), "b".repeat(1024)].concat())],
                vec![],
            ),
        ),
        (
            cat(&[
                c(TEXT, &[b'a'; 1024]),
                c(CONT, &[b'b'; 1024]),
                header_of(FIN | CONT, 1),
            ]),
            failed(vec![], message_cap),
        ),
        (
            cat(&[
                c(BINARY, &[0; 1024]),
                c(CONT, &[0; 1000]),
                c(PING, b"p"),
                header_of(CONT, 25),
            ]),
            ended(
                vec![],
                cat(&[pong(b"p"), failed_with(message_cap)]),
                Closed::Failed(message_cap),
            ),
        ),
        // Control frames do not count towards the message.
        (
            cat(&[
                c(BINARY, &[0; 1024]),
                c(CONT, &[0; 976]),
                c(PING, &[1; 125]),
                c(FIN | CONT, &[2; 48]),
            ]),
            open(
                vec![Got::Binary([vec![0; 2000], vec![2; 48]].concat())],
                pong(&[1; 125]),
            ),
        ),
    ];
    for (input, expected) in &cases {
        check(small(), input, expected);
    }
    assert_eq!(failed_with(frame_cap)[2..4], 1009u16.to_be_bytes());
}

#[test]
fn text_must_be_utf8_even_across_fragments() {
    let bad = ProtocolError::InvalidUtf8;
    let cases: Vec<(Vec<u8>, Outcome)> = vec![
        (c(FIN | TEXT, b"\xff"), failed(vec![], bad)),
        (c(FIN | TEXT, b"ok\xc3"), failed(vec![], bad)),
        // A surrogate half and an overlong encoding.
        (c(FIN | TEXT, b"\xed\xa0\x80"), failed(vec![], bad)),
        (c(FIN | TEXT, b"\xc0\xaf"), failed(vec![], bad)),
        (
            c(FIN | BINARY, b"\xff"),
            open(vec![Got::Binary(vec![0xff])], vec![]),
        ),
        // A code point cut by a fragment boundary is fine...
        (
            cat(&[c(TEXT, b"\xc3"), c(FIN | CONT, b"\xa9")]),
            open(vec![text("é")], vec![]),
        ),
        (
            cat(&[
                c(TEXT, b"a\xf0"),
                c(CONT, b"\x9f"),
                c(PING, b""),
                c(CONT, b"\x98"),
                c(FIN | CONT, b"\x80b"),
            ]),
            open(vec![text("a😀b")], pong(b"")),
        ),
        // ...unless it is not finished by the last fragment, or continues wrongly.
        (
            cat(&[c(TEXT, b"\xc3"), c(FIN | CONT, b"")]),
            failed(vec![], bad),
        ),
        (
            cat(&[c(TEXT, b"\xc3"), c(FIN | CONT, b"(")]),
            failed(vec![], bad),
        ),
        // Fail fast: the bad fragment is enough, the end of the message never comes.
        (c(TEXT, b"ok\xff"), failed(vec![], bad)),
        (
            cat(&[c(TEXT, b"ok"), c(CONT, b"\xf5")]),
            failed(vec![], bad),
        ),
        (
            cat(&[c(BINARY, b"\xff"), c(FIN | CONT, b"\xfe")]),
            open(vec![Got::Binary(vec![0xff, 0xfe])], vec![]),
        ),
    ];
    for (input, expected) in &cases {
        check(config(), input, expected);
    }
}

#[test]
fn client_close_codes() {
    let by_peer = |code: u16| Closed::ByPeer {
        code: Some(CloseCode(code)),
    };
    let mut cases: Vec<(Vec<u8>, Outcome)> = vec![
        (
            vec![],
            ended(
                vec![],
                server(|o| frame::encode_close(o, None, "")),
                Closed::ByPeer { code: None },
            ),
        ),
        // The code is echoed, the reason is not.
        (
            close_payload(1000, b"bye"),
            ended(vec![], close_sent(1000, ""), by_peer(1000)),
        ),
        (
            close_payload(4999, &[b'r'; 123]),
            ended(vec![], close_sent(4999, ""), by_peer(4999)),
        ),
        (vec![0x03], failed(vec![], ProtocolError::CloseLength1)),
        (
            close_payload(1000, b"\xff"),
            failed(vec![], ProtocolError::CloseReasonUtf8),
        ),
        (
            close_payload(1000, b"\xc3"),
            failed(vec![], ProtocolError::CloseReasonUtf8),
        ),
    ];
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        cases.push((
            close_payload(code, b""),
            ended(vec![], close_sent(code, ""), by_peer(code)),
        ));
    }
    for code in [
        0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        cases.push((
            close_payload(code, b""),
            failed(vec![], ProtocolError::CloseCode(code)),
        ));
    }
    for (payload, expected) in &cases {
        check(config(), &c(CLOSE, payload), expected);
        // Whatever follows a close is never read.
        let then_more = cat(&[c(CLOSE, payload), c(FIN | TEXT, b"late"), c(0xFF, b"")]);
        check(config(), &then_more, expected);
    }
    assert_eq!(
        failed_with(ProtocolError::CloseReasonUtf8)[2..4],
        1007u16.to_be_bytes()
    );
    assert_eq!(
        failed_with(ProtocolError::CloseCode(1005))[2..4],
        1002u16.to_be_bytes()
    );
}

// ---------------------------------------------------------------------------------------
// Round trip: random messages through the test client, decoded in random pieces.

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn round_trip_through_a_masking_client() {
    let chars = ['a', 'Z', '0', ' ', '"', 'é', 'ß', '€', '😀', '\u{10FFFF}'];
    for round in 0..40u64 {
        let mut seed = 0x2545_F491_4F6C_DD1D ^ (round + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let config = Config {
            max_frame: 4096,
            max_message: 16384,
            ..Config::default()
        };
        let (mut input, mut sent, mut expected) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..(next(&mut seed) % 30) {
            let len = match next(&mut seed) % 10 {
                0 => 0,
                1..=6 => (next(&mut seed) % 200) as usize,
                _ => (next(&mut seed) % 12000) as usize,
            };
            let message = if next(&mut seed) % 3 == 0 {
                Got::Binary((0..len).map(|_| next(&mut seed) as u8).collect())
            } else {
                let mut s = String::new();
                while s.len() < len {
                    s.push(chars[(next(&mut seed) % chars.len() as u64) as usize]);
                }
                Got::Text(s)
            };
            let (opcode, bytes) = match &message {
                Got::Text(s) => (TEXT, s.as_bytes()),
                Got::Binary(b) => (BINARY, &b[..]),
            };
            // Fragments cut anywhere (mid-character too), some empty, each within the frame cap.
            let mut at = 0;
            let mut first = true;
            loop {
                let take = ((next(&mut seed) % 4097) as usize).min(bytes.len() - at);
                let take = if next(&mut seed) % 4 == 0 {
                    bytes.len() - at
                } else {
                    take
                };
                let take = take.min(4096);
                let fin = at + take == bytes.len();
                let b0 = (if fin { FIN } else { 0 }) | if first { opcode } else { CONT };
                let mask = (next(&mut seed) as u32).to_be_bytes();
                input.extend(client_frame(
                    b0,
                    &bytes[at..at + take],
                    Some(mask),
                    Len::Minimal,
                ));
                at += take;
                first = false;
                if next(&mut seed) % 5 == 0 {
                    let ping: Vec<u8> = (0..next(&mut seed) % 126)
                        .map(|_| next(&mut seed) as u8)
                        .collect();
                    input.extend(client_frame(PING, &ping, Some(mask), Len::Minimal));
                    sent.extend(pong(&ping));
                }
                if fin {
                    break;
                }
            }
            expected.push(message);
        }
        input.extend(c(CLOSE, &close_payload(1000, b"done")));
        sent.extend(close_sent(1000, ""));
        let expected = ended(
            expected,
            sent,
            Closed::ByPeer {
                code: Some(CloseCode::NORMAL),
            },
        );
        assert_eq!(drive(config, &input, &[]), expected, "round {round} whole");
        let mut cuts = Vec::new();
        let mut at = 0;
        while at < input.len() {
            at += 1 + (next(&mut seed) % 3000) as usize;
            cuts.push(at.min(input.len()));
        }
        assert_eq!(
            drive(config, &input, &cuts),
            expected,
            "round {round} in pieces"
        );
        if input.len() < 20_000 {
            let bytes: Vec<usize> = (1..input.len()).collect();
            assert_eq!(
                drive(config, &input, &bytes),
                expected,
                "round {round} a byte at a time"
            );
        }
    }
}

#[test]
fn fragmented_messages_are_contiguous_in_the_read_buffer() {
    let input = cat(&[
        c(TEXT, b"ab"),
        c(PING, b"x"),
        c(CONT, b"cd"),
        c(FIN | CONT, b"ef"),
    ]);
    let mut buf = input.clone();
    let base = buf.as_ptr() as usize;
    let now = Instant::now();
    let mut conn = Connection::new(config(), now);
    let mut out = Vec::new();
    match conn.decode(&mut buf, now, &mut out) {
        Item::Message(m) => {
            assert_eq!(m.payload, b"abcdef");
            // The message starts where the first fragment's payload was: nothing moved
            // but the later fragments.
            assert_eq!(m.payload.as_ptr() as usize - base, 6);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        conn.decode(&mut buf, now, &mut out),
        Item::NeedMore {
            keep: 0,
            needed: None
        }
    );
}

// ---------------------------------------------------------------------------------------
// The close handshake and timeouts

#[derive(Debug)]
enum Step {
    Feed(Vec<u8>),
    Tick,
    Close(u16, &'static str),
}

/// At `ms` after the start, a step, then the state, what the server sent in that step,
/// and the messages it delivered.
type SessionStep = (u64, Step, State, Vec<u8>, Vec<Got>);

/// Each step happens at `ms` after the start; after it, the state, what the server sent
/// in that step, and the messages it delivered must be as listed.
fn check_session(config: Config, steps: &[SessionStep]) {
    let start = Instant::now();
    let mut conn = Connection::new(config, start);
    let mut buf = Vec::new();
    for (i, (ms, step, state, sent, messages)) in steps.iter().enumerate() {
        let now = start + Duration::from_millis(*ms);
        let mut out = Vec::new();
        let mut got_messages = Vec::new();
        match step {
            Step::Feed(bytes) => {
                buf.extend_from_slice(bytes);
                loop {
                    match conn.decode(&mut buf, now, &mut out) {
                        Item::Message(m) => got_messages.push(got(m)),
                        Item::NeedMore { keep, .. } => {
                            buf.truncate(keep);
                            break;
                        }
                        Item::Closed(_) => break,
                    }
                }
            }
            Step::Tick => {
                assert_eq!(conn.on_timeout(now, &mut out), *state, "step {i}");
            }
            Step::Close(code, reason) => conn.close(CloseCode(*code), reason, now, &mut out),
        }
        assert_eq!(conn.state(), *state, "step {i}: {step:?}");
        assert_eq!(&out, sent, "step {i}: {step:?}");
        assert_eq!(&got_messages, messages, "step {i}: {step:?}");
        assert_eq!(conn.can_send(), *state == State::Open, "step {i}");
    }
}

#[test]
fn close_handshake_and_timeouts() {
    use State::{CloseSent, Open};
    let idle = 10_000;
    let config = Config {
        idle_timeout: Duration::from_millis(idle),
        close_timeout: Duration::from_millis(500),
        ..Config::default()
    };
    let answered = |code| {
        State::Closed(Closed::Answered {
            code: Some(CloseCode(code)),
        })
    };
    let none = Vec::new;
    let scenarios: Vec<Vec<SessionStep>> = vec![
        // Idle: closed with 1001 when the timeout passes, then the client answers.
        vec![
            (idle - 1, Step::Tick, Open, none(), vec![]),
            (
                idle,
                Step::Tick,
                CloseSent,
                close_sent(1001, "idle timeout"),
                vec![],
            ),
            (idle + 1, Step::Tick, CloseSent, none(), vec![]),
            (
                idle + 2,
                Step::Feed(c(CLOSE, &close_payload(1001, b""))),
                answered(1001),
                none(),
                vec![],
            ),
            (idle + 3, Step::Tick, answered(1001), none(), vec![]),
        ],
        // Any complete frame (a pong too) is activity; half a frame is not.
        vec![
            (6000, Step::Feed(c(PONG, b"")), Open, none(), vec![]),
            (idle, Step::Tick, Open, none(), vec![]),
            (
                15_000,
                Step::Feed(c(FIN | TEXT, b"abc")[..4].to_vec()),
                Open,
                none(),
                vec![],
            ),
            (
                6000 + idle,
                Step::Tick,
                CloseSent,
                close_sent(1001, "idle timeout"),
                vec![],
            ),
        ],
        // Our close, unanswered: the connection ends at the close timeout.
        vec![
            (
                100,
                Step::Close(1001, "shutting down"),
                CloseSent,
                close_sent(1001, "shutting down"),
                vec![],
            ),
            (200, Step::Close(1000, "again"), CloseSent, none(), vec![]),
            (599, Step::Tick, CloseSent, none(), vec![]),
            (
                600,
                Step::Tick,
                State::Closed(Closed::CloseTimeout),
                none(),
                vec![],
            ),
            (
                601,
                Step::Feed(c(FIN | TEXT, b"late")),
                State::Closed(Closed::CloseTimeout),
                none(),
                vec![],
            ),
        ],
        // After our close, data is read and dropped, pings are not answered, and the
        // client's close (even without a code) finishes the handshake without an echo.
        vec![
            (
                0,
                Step::Feed(c(FIN | TEXT, b"before")),
                Open,
                none(),
                vec![text("before")],
            ),
            (
                1,
                Step::Close(1000, ""),
                CloseSent,
                close_sent(1000, ""),
                vec![],
            ),
            (
                2,
                Step::Feed(cat(&[
                    c(FIN | TEXT, b"x"),
                    c(PING, b"p"),
                    c(TEXT, b"y"),
                    c(FIN | CONT, b"z"),
                ])),
                CloseSent,
                none(),
                vec![],
            ),
            (
                3,
                Step::Feed(c(CLOSE, b"")),
                State::Closed(Closed::Answered { code: None }),
                none(),
                vec![],
            ),
        ],
        // A violation after our close ends the connection without a second close frame.
        vec![
            (
                0,
                Step::Close(1001, ""),
                CloseSent,
                close_sent(1001, ""),
                vec![],
            ),
            (
                1,
                Step::Feed(c(FIN | TEXT, b"\xff")),
                State::Closed(Closed::Failed(ProtocolError::InvalidUtf8)),
                none(),
                vec![],
            ),
        ],
        // The client closes first: echoed, done, and nothing more is ever sent.
        vec![
            (
                0,
                Step::Feed(c(CLOSE, &close_payload(1000, b""))),
                State::Closed(Closed::ByPeer {
                    code: Some(CloseCode::NORMAL),
                }),
                close_sent(1000, ""),
                vec![],
            ),
            (
                1,
                Step::Close(1001, ""),
                State::Closed(Closed::ByPeer {
                    code: Some(CloseCode::NORMAL),
                }),
                none(),
                vec![],
            ),
            (
                idle * 2,
                Step::Tick,
                State::Closed(Closed::ByPeer {
                    code: Some(CloseCode::NORMAL),
                }),
                none(),
                vec![],
            ),
        ],
    ];
    for steps in &scenarios {
        check_session(config, steps);
    }
}

#[test]
fn deadlines() {
    let start = Instant::now();
    let config = Config {
        idle_timeout: Duration::from_secs(60),
        close_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let mut conn = Connection::new(config, start);
    let mut out = Vec::new();
    assert_eq!(conn.deadline(), Some(start + Duration::from_secs(60)));
    let mut buf = c(PING, b"");
    let later = start + Duration::from_secs(30);
    assert!(matches!(
        conn.decode(&mut buf, later, &mut out),
        Item::NeedMore { keep: 0, .. }
    ));
    assert_eq!(conn.deadline(), Some(later + Duration::from_secs(60)));
    conn.close(CloseCode::GOING_AWAY, "", later, &mut out);
    assert_eq!(conn.deadline(), Some(later + Duration::from_secs(2)));
    conn.on_timeout(later + Duration::from_secs(2), &mut out);
    assert_eq!(conn.deadline(), None);
    // A timeout too far away to represent is no deadline, not a panic.
    let forever = Config {
        idle_timeout: Duration::MAX,
        ..config
    };
    assert_eq!(Connection::new(forever, start).deadline(), None);
}

#[test]
fn config_from_limits() {
    let limits = crate::config::Limits {
        ws_frame_bytes: 1 << 10,
        ws_message_bytes: 1 << 20,
        ws_idle_timeout_ms: 1234,
        ..Default::default()
    };
    let config = Config::from(&limits);
    assert_eq!(
        config,
        Config {
            max_frame: 1024,
            max_message: 1 << 20,
            idle_timeout: Duration::from_millis(1234),
            close_timeout: CLOSE_TIMEOUT
        }
    );
    assert_eq!(Config::default().max_frame, 256 << 10);
    assert_eq!(Config::default().max_message, 256 << 10);
    assert_eq!(config.buffer_len(), (1 << 20) + 14 + 125);
}

#[test]
fn protocol_errors_map_to_close_codes() {
    use ProtocolError as E;
    let cases = [
        (E::Unmasked, 1002),
        (E::ReservedBits, 1002),
        (E::UnknownOpcode(3), 1002),
        (E::FragmentedControl, 1002),
        (E::ControlTooLong, 1002),
        (E::LengthTopBit, 1002),
        (E::NonMinimalLength, 1002),
        (E::FrameTooBig { limit: 1 }, 1009),
        (E::MessageTooBig { limit: 1 }, 1009),
        (E::ContinuationWithoutStart, 1002),
        (E::MessageInterleaved, 1002),
        (E::InvalidUtf8, 1007),
        (E::CloseLength1, 1002),
        (E::CloseCode(1005), 1002),
        (E::CloseReasonUtf8, 1007),
    ];
    for (e, code) in cases {
        assert_eq!(e.close_code(), CloseCode(code), "{e}");
        assert!(e.close_reason().len() <= frame::MAX_CLOSE_REASON);
        assert!(!e.to_string().is_empty());
    }
}
