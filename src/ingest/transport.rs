//! A connection's byte stream: plain TCP, or TLS through rustls driven sans-IO
//! (`read_tls` / `process_new_packets` / `write_tls` over our own buffers), so the same
//! code runs on io_uring and epoll and no TLS crate has to know the runtime.
//!
//! Reads *append* to the caller's buffer (the HTTP and WebSocket codecs keep the unparsed
//! rest at its front); writes take the caller's buffer and give it back, as monoio's
//! owned-buffer I/O wants.

use std::io::{self, Write};
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Bytes asked of the socket per read at least.
const READ_CHUNK: usize = 16 << 10;

/// A plain or TLS connection.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

pub struct Tls {
    tcp: TcpStream,
    conn: rustls::ServerConnection,
    /// Ciphertext read from the socket and not yet given to rustls.
    cipher: Vec<u8>,
    /// Ciphertext to send.
    out: Vec<u8>,
    eof: bool,
}

impl Transport {
    pub fn tls(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Transport> {
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Transport::Tls(Box::new(Tls {
            tcp,
            conn,
            cipher: Vec::with_capacity(READ_CHUNK),
            out: Vec::new(),
            eof: false,
        })))
    }

    /// The SNI name the client asked for (TLS only, once the handshake got that far).
    pub fn sni(&self) -> Option<&str> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => t.conn.server_name(),
        }
    }

    /// Reads at least one byte and appends it to `buf`; `Ok(0)` is the end of the stream.
    pub async fn read_into(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Transport::Plain(tcp) => {
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
                let (len, cap) = (buf.len(), buf.capacity());
                let (r, slice) = tcp.read(buf.slice_mut(len..cap)).await;
                (r, slice.into_inner())
            }
            Transport::Tls(t) => {
                let r = t.read_plain(&mut buf).await;
                (r, buf)
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, data: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Transport::Plain(tcp) => {
                let (r, data) = tcp.write_all(data).await;
                (r.map(|_| ()), data)
            }
            Transport::Tls(t) => {
                let r = match t.conn.writer().write_all(&data) {
                    Ok(()) => t.flush().await,
                    Err(e) => Err(e),
                };
                (r, data)
            }
        }
    }
}

impl Tls {
    /// Reads from the socket until rustls has plaintext for `buf` (appended), the peer
    /// closed the stream (`Ok(0)`), or the connection failed. Every ciphertext byte read
    /// is fed to rustls before the next socket read, so nothing waits in `cipher`.
    async fn read_plain(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            if self.eof {
                return Ok(0);
            }
            let mut cipher = std::mem::take(&mut self.cipher);
            cipher.clear();
            let (r, slice) = self.tcp.read(cipher.slice_mut(0..READ_CHUNK)).await;
            self.cipher = slice.into_inner();
            let n = r?;
            let before = buf.len();
            let fed = feed(&mut self.conn, &self.cipher[..n], buf);
            match fed {
                Ok(fed) => {
                    if self.conn.wants_write() {
                        self.flush().await?;
                    }
                    // A TCP close (with or without close_notify) after the data: the end,
                    // once the plaintext that came with it has been handed over.
                    self.eof = n == 0 || fed.closed;
                    if buf.len() > before {
                        return Ok(buf.len() - before);
                    }
                }
                Err(e) => {
                    // Tell the client why (an alert), then give up on the connection.
                    let _ = self.flush().await;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.out.clear();
            self.conn.write_tls(&mut self.out)?;
            let out = std::mem::take(&mut self.out);
            let (r, out) = self.tcp.write_all(out).await;
            self.out = out;
            r?;
        }
        Ok(())
    }
}

/// What one [`feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Plaintext bytes appended.
    pub plaintext: usize,
    /// The peer sent `close_notify`: no more data will come (ciphertext after it is
    /// ignored, as TLS requires).
    pub closed: bool,
}

/// Why [`feed`] gave up on a connection. The connection is over either way; rustls
/// has queued an alert for the peer where the protocol has one.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The peer broke the TLS protocol (bad record, failed handshake, bad MAC…).
    #[error("TLS error from the client: {0}")]
    Protocol(#[from] rustls::Error),
    /// rustls refused more ciphertext (its buffers are full). [`feed`] drains them after
    /// every record, so this means a bug here rather than a hostile peer.
    #[error("TLS buffer refused ciphertext: {0}")]
    Buffer(io::Error),
}

/// Feeds `cipher` (any number of bytes: part of a record, one record, many records) to
/// rustls and appends the plaintext it yields to `plain`. Sans-IO: no socket, no clock.
///
/// rustls takes ciphertext into a buffer of a bit more than one record and decrypted
/// plaintext into another bounded buffer; `read_tls` fails once either is full. So the
/// loop alternates: take what fits, decrypt (`process_new_packets`), move the plaintext
/// out, repeat — a read of any size, a record split over reads, or one byte at a time
/// all come out the same. Everything in `cipher` is consumed unless the peer closed
/// with `close_notify` or an error ends the connection.
pub fn feed<D>(conn: &mut rustls::ConnectionCommon<D>, mut cipher: &[u8], plain: &mut Vec<u8>) -> Result<Fed, FeedError> {
    let start = plain.len();
    let mut closed = false;
    loop {
        let state = conn.process_new_packets()?;
        closed |= state.peer_has_closed();
        drain_plaintext(conn, plain);
        if cipher.is_empty() || closed {
            break;
        }
        match conn.read_tls(&mut cipher) {
            // Only after close_notify, which `peer_has_closed` reports above.
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(FeedError::Buffer(e)),
        }
    }
    Ok(Fed { plaintext: plain.len() - start, closed })
}

/// Moves all plaintext rustls holds into `plain` (no zero-filling: straight from its
/// buffer).
fn drain_plaintext<D>(conn: &mut rustls::ConnectionCommon<D>, plain: &mut Vec<u8>) {
    use std::io::BufRead;
    let mut reader = conn.reader();
    while let Ok(chunk) = reader.fill_buf() {
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        plain.extend_from_slice(chunk);
        reader.consume(n);
    }
}

/// Chooses the certificate by SNI among the configured domains; without SNI (or for an
/// unknown name) the first domain's, so that a client connecting by IP still gets an
/// answer it can judge.
#[derive(Debug)]
pub struct SniResolver {
    certs: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    pub fn new(certs: Vec<(String, Arc<CertifiedKey>)>) -> SniResolver {
        SniResolver { certs }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello.server_name().and_then(|name| {
            self.certs
                .iter()
                .find(|(d, _)| d.eq_ignore_ascii_case(name))
                .map(|(_, k)| k.clone())
        });
        by_name.or_else(|| self.certs.first().map(|(_, k)| k.clone()))
    }
}

/// The rustls server configuration: ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn server_config(certs: Vec<(String, Arc<CertifiedKey>)>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(certs)));
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// In-memory TLS peers for the tests and the `tls_feed` fuzz target: a self-signed
/// certificate, the server configuration capig builds, a client that trusts it, and a
/// handshake run through [`feed`] on both sides.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::sync::Arc;

    use super::*;

    pub const HOST: &str = "capig.test";

    /// A fresh server and client of one certificate (made once per call).
    pub fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let c = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
        let der = c.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(c.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = CertifiedKey::from_der(vec![der.clone()], key, &provider).unwrap();
        let server = server_config(vec![(HOST.to_owned(), Arc::new(certified))]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// A server and a client connection, not yet connected.
    pub fn pair_of(configs: &(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>)) -> (rustls::ServerConnection, rustls::ClientConnection) {
        let server = rustls::ServerConnection::new(configs.0.clone()).unwrap();
        let client = rustls::ClientConnection::new(configs.1.clone(), HOST.try_into().unwrap()).unwrap();
        (server, client)
    }

    pub fn pair() -> (rustls::ServerConnection, rustls::ClientConnection) {
        pair_of(&configs())
    }

    /// Everything `conn` wants to send.
    pub fn drain_tls<D>(conn: &mut rustls::ConnectionCommon<D>) -> Vec<u8> {
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Runs the handshake of `pair` through [`feed`] on both sides.
    pub fn handshake((mut server, mut client): (rustls::ServerConnection, rustls::ClientConnection)) -> (rustls::ServerConnection, rustls::ClientConnection) {
        for _ in 0..10 {
            if !server.is_handshaking() && !client.is_handshaking() {
                break;
            }
            let c2s = drain_tls(&mut client);
            assert_eq!(feed(&mut server, &c2s, &mut Vec::new()).unwrap().plaintext, 0);
            let s2c = drain_tls(&mut server);
            feed(&mut client, &s2c, &mut Vec::new()).unwrap();
        }
        assert!(!server.is_handshaking() && !client.is_handshaking());
        (server, client)
    }

    pub fn connected() -> (rustls::ServerConnection, rustls::ClientConnection) {
        handshake(pair())
    }
}

#[cfg(test)]
mod tests;
