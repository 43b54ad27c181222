//! Any bytes as a connection's input to the HTTP/1.1 codec, decoded whole and in two reads
//! split at a fuzzer-chosen point (and, for some inputs, one byte at a time): never a
//! panic, the driver's contract holds at every step, and every way of splitting gives
//! the same requests and the same final error.
#![no_main]

use std::time::Instant;

use capig::proto::http1::{
    header_slots, Conn, Decoded, Limits, ReplyTo, Request, Response, write_response,
};
use libfuzzer_sys::fuzz_target;

/// Everything the codec says about a request, owned, so runs can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Request {
        method: String,
        target: String,
        path: String,
        query: Option<String>,
        version: String,
        host: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        framing: String,
        persistence: String,
        expect_continue: bool,
        websocket: bool,
        body: Vec<u8>,
        /// Where in the input the next request starts (`consumed` itself counts the
        /// compacted buffer, which depends on the reads).
        ends_at: usize,
    },
    Error(String),
    Pending,
}

fn outcome(r: &Request<'_, '_>, ends_at: usize) -> Outcome {
    let h = &r.head;
    Outcome::Request {
        method: h.method_str().to_owned(),
        target: h.target().to_owned(),
        path: h.path().to_owned(),
        query: h.query().map(str::to_owned),
        version: format!("{:?}", h.version()),
        host: h.host().map(<[u8]>::to_vec),
        headers: h.headers().iter().map(|x| (x.name.to_owned(), x.value.to_vec())).collect(),
        framing: format!("{:?}", h.body()),
        persistence: format!("{:?}", h.persistence()),
        expect_continue: h.expects_continue(),
        websocket: h.is_websocket_upgrade(),
        body: r.body.to_vec(),
        ends_at,
    }
}

/// A driver: the input arrives in reads ending at `cuts`.
fn run(input: &[u8], cuts: &[usize], limits: Limits) -> Vec<Outcome> {
    let now = Instant::now();
    let mut conn = Conn::new(limits, now);
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut fed = 0;
    let mut out = Vec::new();
    let mut wire = Vec::new();
    for end in cuts.iter().copied().chain([input.len()]) {
        if end <= fed {
            continue;
        }
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            let mut slots = header_slots::<16>();
            let len = buf.len() - start;
            match conn.decode(&mut buf[start..], &mut slots, now) {
                Ok(Decoded::Incomplete(i)) => {
                    assert!(i.filled <= len);
                    if let Some(needed) = i.needed {
                        assert!(needed > i.filled);
                    }
                    buf.truncate(start + i.filled);
                    break;
                }
                Ok(Decoded::Request(r)) => {
                    assert!(r.consumed > 0 && r.consumed <= len);
                    assert!(r.head.len() <= limits.header_bytes);
                    assert!(r.head.headers().len() <= limits.header_count);
                    assert!(r.body.len() <= limits.body_bytes);
                    // `buf[start + consumed..]` are the last bytes fed.
                    let ends_at = fed - (len - r.consumed);
                    out.push(outcome(&r, ends_at));
                    wire.clear();
                    write_response(
                        &mut wire,
                        &Response { status: 202, headers: &[], body: b"{}", to: r.head.reply_to() },
                    );
                    start += r.consumed;
                    conn.response_sent(now);
                    if start == buf.len() {
                        break;
                    }
                }
                Err(e) => {
                    assert!(e.must_close());
                    wire.clear();
                    e.write_response(&mut wire, ReplyTo::CLOSE);
                    assert!(wire.starts_with(b"HTTP/1.1 4") || wire.starts_with(b"HTTP/1.1 5"));
                    out.push(Outcome::Error(format!("{e:?}")));
                    return out;
                }
            }
        }
    }
    if start < buf.len() {
        out.push(Outcome::Pending);
    }
    out
}

/// The configuration's defaults, and caps small enough for short inputs to reach.
fn limits(selector: u8) -> Limits {
    match selector % 3 {
        0 => Limits::default(),
        1 => Limits {
            header_bytes: 96,
            request_line_bytes: 40,
            header_count: 4,
            body_bytes: 24,
            ..Limits::default()
        },
        _ => Limits {
            header_bytes: 40,
            request_line_bytes: 40,
            header_count: 16,
            body_bytes: 4,
            ..Limits::default()
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, lo, hi, input @ ..] = data else { return };
    let limits = limits(*selector);
    let cut = usize::from(u16::from_le_bytes([*lo, *hi])) % (input.len() + 1);
    let whole = run(input, &[], limits);
    assert_eq!(run(input, &[cut], limits), whole, "cut at {cut}");
    if selector & 0x80 != 0 && input.len() <= 4096 {
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run(input, &every, limits), whole, "byte by byte");
    }
});
