//! Any client byte stream through the WebSocket codec, fed whole, cut in two at a
//! fuzzer-chosen point, and (when short) a byte at a time: never a panic, the same
//! messages, bytes sent and end every way, text messages are UTF-8, the buffer never
//! needs more than `Config::buffer_len`, and what the server sent is valid server frames
//! (pongs, then at most one close, last, with the code the end calls for).
#![no_main]

use std::time::Instant;

use capig::proto::websocket::frame::{self, MAX_CONTROL_PAYLOAD};
use capig::proto::websocket::{CloseCode, Closed, Config, Connection, Item, MessageKind};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Run {
    messages: Vec<(MessageKind, Vec<u8>)>,
    sent: Vec<u8>,
    end: Option<Closed>,
}

fn run(config: Config, stream: &[u8], cuts: &[usize]) -> Run {
    let now = Instant::now();
    let mut conn = Connection::new(config, now);
    let (mut buf, mut sent, mut messages) = (Vec::new(), Vec::new(), Vec::new());
    let mut fed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        loop {
            match conn.decode(&mut buf, now, &mut sent) {
                Item::Message(m) => {
                    if m.kind == MessageKind::Text {
                        assert!(std::str::from_utf8(m.payload).is_ok(), "text message is not UTF-8");
                    }
                    assert!(m.payload.len() <= config.max_message);
                    messages.push((m.kind, m.payload.to_vec()));
                }
                Item::NeedMore { keep, needed } => {
                    assert!(keep <= buf.len());
                    assert!(keep + needed.unwrap_or(0) <= config.buffer_len(), "keep {keep} needed {needed:?}");
                    buf.truncate(keep);
                    break;
                }
                Item::Closed(end) => return Run { messages, sent, end: Some(end) },
            }
        }
    }
    Run { messages, sent, end: None }
}

/// Reads back what the server wrote: unmasked final pongs, and a close exactly when the
/// connection ended with one, carrying the echoed or the error's code.
fn check_sent(sent: &[u8], end: Option<Closed>) {
    let mut rest = sent;
    let mut close: Option<Option<CloseCode>> = None;
    while !rest.is_empty() {
        assert!(close.is_none(), "a frame after the close");
        let (b0, b1) = (rest[0], rest[1]);
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let (len, at) = match b1 & 0x7F {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => panic!("a control frame with a 64-bit length"),
            n => (n as usize, 2),
        };
        assert!(len <= MAX_CONTROL_PAYLOAD);
        let payload = &rest[at..at + len];
        match b0 {
            0x8A => {}
            0x88 => close = Some(frame::parse_close(payload).expect("our close is valid").map(|(c, _)| c)),
            other => panic!("unexpected server frame {other:#x}"),
        }
        rest = &rest[at + len..];
    }
    match end {
        None => assert_eq!(close, None),
        Some(Closed::ByPeer { code }) => assert_eq!(close, Some(code)),
        Some(Closed::Failed(e)) => assert_eq!(close, Some(Some(e.close_code()))),
        Some(other) => panic!("{other:?} without a close of ours"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, hi, lo, stream @ ..] = data else { return };
    // Small caps make the size checks reachable; the default is what runs in production.
    let (max_frame, max_message) = match selector % 4 {
        0 => (16, 40),
        1 => (200, 1000),
        2 => (1024, 1024),
        _ => (256 << 10, 256 << 10),
    };
    let config = Config { max_frame, max_message, ..Config::default() };
    let cut = u16::from_be_bytes([*hi, *lo]) as usize % (stream.len() + 1);
    let whole = run(config, stream, &[]);
    assert_eq!(run(config, stream, &[cut]), whole, "cut at {cut}");
    if stream.len() <= 512 {
        let bytes: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(config, stream, &bytes), whole, "a byte at a time");
    }
    check_sent(&whole.sent, whole.end);
});
