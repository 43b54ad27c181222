//! A connection's byte stream: plain TCP, or TLS through rustls driven sans-IO
//! (`read_tls` / `process_new_packets` / `write_tls` over our own buffers), so the same
//! code runs on io_uring and epoll and no TLS crate has to know the runtime.
//!
//! Reads *append* to the caller's buffer (the HTTP and WebSocket codecs keep the unparsed
//! rest at its front); writes take the caller's buffer and give it back, as monoio's
//! owned-buffer I/O wants.

use std::io::{self, Read, Write};
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
    async fn read_plain(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            // Plaintext rustls already has.
            let len = buf.len();
            buf.resize(len + READ_CHUNK, 0);
            match self.conn.reader().read(&mut buf[len..]) {
                Ok(n) => {
                    buf.truncate(len + n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf.truncate(len),
                Err(e) => {
                    buf.truncate(len);
                    // A TCP close without close_notify, after all data: the end.
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        return Ok(0);
                    }
                    return Err(e);
                }
            }
            if self.eof {
                return Ok(0);
            }
            // More ciphertext.
            let cipher = std::mem::take(&mut self.cipher);
            let (len, cap) = (cipher.len(), cipher.capacity().max(READ_CHUNK));
            let mut cipher = cipher;
            cipher.reserve(cap - len);
            let cap = cipher.capacity();
            let (r, slice) = self.tcp.read(cipher.slice_mut(len..cap)).await;
            self.cipher = slice.into_inner();
            if r? == 0 {
                self.eof = true;
            }
            let mut rd = &self.cipher[..];
            while !rd.is_empty() {
                if self.conn.read_tls(&mut rd)? == 0 {
                    break;
                }
            }
            let used = self.cipher.len() - rd.len();
            self.cipher.drain(..used);
            if let Err(e) = self.conn.process_new_packets() {
                // Tell the client why (an alert), then give up on the connection.
                let _ = self.flush().await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if self.conn.wants_write() {
                self.flush().await?;
            }
            if self.eof && !self.conn.wants_read() {
                return Ok(0);
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
