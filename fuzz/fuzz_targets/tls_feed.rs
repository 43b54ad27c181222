//! The TLS transport's record feeding (`capig::ingest::transport::feed`): a real rustls
//! client's records cut at fuzzer-chosen points must give back exactly what the client
//! sent, at any size; and any bytes at all (before or after a handshake) must give an
//! error or plaintext, never a panic or a stuck buffer.
#![no_main]

use std::io::Write;
use std::sync::{Arc, OnceLock};

use capig::ingest::transport::testing::{self, drain_tls, handshake, pair_of};
use capig::ingest::transport::feed;
use libfuzzer_sys::fuzz_target;

fn configs() -> &'static (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    static C: OnceLock<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>)> = OnceLock::new();
    C.get_or_init(testing::configs)
}

/// Feeds `cipher` in pieces whose sizes come from `cuts` (cycled).
fn feed_cut(server: &mut rustls::ServerConnection, cipher: &[u8], cuts: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < cipher.len() {
        let piece = cuts.get(k % cuts.len().max(1)).map_or(cipher.len(), |&b| usize::from(b) * 97 + 1);
        let end = (at + piece).min(cipher.len());
        let before = plain.len();
        match feed(server, &cipher[at..end], &mut plain) {
            Ok(fed) => {
                assert_eq!(fed.plaintext, plain.len() - before);
                if fed.closed {
                    return Some(plain);
                }
            }
            Err(_) => return None,
        }
        at = end;
        k += 1;
    }
    Some(plain)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        // A real client's payload, cut anywhere: the same bytes come out.
        0 => {
            let Some((len, cuts)) = rest.split_first_chunk::<2>() else { return };
            let len = usize::from(u16::from_le_bytes(*len)) * 16;
            let sent: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (mut server, mut client) = handshake(pair_of(configs()));
            client.set_buffer_limit(None);
            client.writer().write_all(&sent).unwrap();
            let cipher = drain_tls(&mut client);
            let plain = feed_cut(&mut server, &cipher, cuts).expect("a real client's records are accepted");
            assert!(plain == sent);
        }
        // Any bytes after a handshake.
        1 => {
            let (mut server, _) = handshake(pair_of(configs()));
            let _ = feed_cut(&mut server, rest, &rest[..rest.len().min(4)]);
        }
        // Any bytes as the first thing a client says.
        _ => {
            let (mut server, _) = pair_of(configs());
            let _ = feed_cut(&mut server, rest, &rest[..rest.len().min(4)]);
        }
    }
});
