//! [`feed`] in memory: a real rustls client's records, fed to the server side in every
//! way a socket can hand them over (whole, a byte at a time, cut at and across record
//! boundaries, in reads larger than rustls's own buffers).

use std::io::Write;

use super::testing::{connected, drain_tls, pair};
use super::*;

#[derive(Clone, Copy, Debug)]
enum Cut {
    /// All ciphertext in one call.
    Whole,
    /// Pieces of this many bytes.
    Every(usize),
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 23) as u8).collect()
}

/// The client sends `len` bytes; the server is fed its records cut by `cut`; the
/// plaintext must come out whole and in order.
fn check(len: usize, cut: Cut) {
    let (mut server, mut client) = connected();
    let sent = payload(len);
    client.set_buffer_limit(None);
    client.writer().write_all(&sent).unwrap();
    let cipher = drain_tls(&mut client);
    let mut plain = Vec::new();
    let piece = match cut {
        Cut::Whole => cipher.len().max(1),
        Cut::Every(n) => n,
    };
    for chunk in cipher.chunks(piece) {
        let before = plain.len();
        let fed = feed(&mut server, chunk, &mut plain).unwrap_or_else(|e| panic!("{len} bytes cut {cut:?}: {e}"));
        assert_eq!(fed.plaintext, plain.len() - before);
        assert!(!fed.closed);
    }
    assert_eq!(plain.len(), sent.len(), "{len} bytes cut {cut:?}");
    assert!(plain == sent, "{len} bytes cut {cut:?}: the plaintext differs");
}

#[test]
fn every_size_comes_out_whole_however_the_records_are_cut() {
    for len in [1, 1 << 10, 16 << 10, 17 << 10, 64 << 10, 1 << 20, 2 << 20] {
        for cut in [Cut::Whole, Cut::Every(7), Cut::Every(16 << 10), Cut::Every((16 << 10) + 29), Cut::Every(100_000)] {
            check(len, cut);
        }
    }
    // A byte at a time: every record split everywhere.
    for len in [1, 1 << 10, 17 << 10, 64 << 10] {
        check(len, Cut::Every(1));
    }
}

#[test]
fn close_notify_ends_the_stream_and_what_follows_is_ignored() {
    let (mut server, mut client) = connected();
    client.writer().write_all(b"last words").unwrap();
    client.send_close_notify();
    let mut cipher = drain_tls(&mut client);
    cipher.extend_from_slice(b"\x17\x03\x03\x00\x05junk!");
    let mut plain = Vec::new();
    let fed = feed(&mut server, &cipher, &mut plain).unwrap();
    assert_eq!(fed, Fed { plaintext: 10, closed: true });
    assert_eq!(plain, b"last words");
}

#[test]
fn garbage_is_a_protocol_error_with_an_alert_for_the_peer() {
    for garbage in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..], &[0x17; 64][..]] {
        let (mut server, _) = pair();
        let e = feed(&mut server, garbage, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, FeedError::Protocol(_)), "{e}");
        assert!(server.wants_write(), "an alert tells the client why");
    }
    // After the handshake too: a record that does not decrypt.
    let (mut server, _) = connected();
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend_from_slice(&[0x55; 0x40]);
    assert!(matches!(feed(&mut server, &record, &mut Vec::new()), Err(FeedError::Protocol(_))));
}
