//! Many idle WebSocket connections to capig, for the memory measurement of the
//! comparison harness (`capig-idle`): each connection completes the browser handshake on
//! `/capig/ws` and then sends nothing, as an open tab between events does.
//!
//! Connections come from many source addresses in 127.0.0.0/8 (`per_source` each), so
//! 100,000 of them do not run out of ephemeral ports. They are opened in rounds of
//! `round` (connect and send the handshake for a whole round, then read the answers), which
//! keeps the server's accept queue busy without overrunning it. [`Idle::check`] proves
//! afterwards that every connection is still served: a ping on each, a pong from each.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::load::{find, ws_handshake};

#[derive(Clone, Debug)]
pub struct IdleConfig {
    pub target: SocketAddr,
    pub connections: usize,
    pub host: String,
    pub origin: String,
    /// The first source address; later ones count up from it.
    pub first_source: Ipv4Addr,
    pub per_source: usize,
    pub round: usize,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 8080)),
            connections: 1000,
            host: "capig.shop.example".into(),
            origin: "https://www.shop.example".into(),
            first_source: Ipv4Addr::new(127, 1, 0, 1),
            per_source: 1000,
            round: 500,
        }
    }
}

/// The open connections.
pub struct Idle {
    streams: Vec<TcpStream>,
}

impl Idle {
    /// Opens `cfg.connections` WebSockets; an error says how many were open when it
    /// happened.
    pub fn open(cfg: &IdleConfig) -> std::io::Result<Idle> {
        let hs = ws_handshake(&cfg.host, &cfg.origin);
        let mut streams = Vec::with_capacity(cfg.connections);
        let mut buf = [0u8; 1024];
        let first = u32::from(cfg.first_source);
        while streams.len() < cfg.connections {
            let start = streams.len();
            let end = (start + cfg.round).min(cfg.connections);
            for i in start..end {
                let source = Ipv4Addr::from(first + (i / cfg.per_source.max(1)) as u32);
                let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
                s.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
                    .map_err(|e| at(start, format!("binding to {source}: {e}")))?;
                s.connect(&cfg.target.into()).map_err(|e| at(i, format!("connecting from {source}: {e}")))?;
                let mut t: TcpStream = s.into();
                t.write_all(hs.as_bytes())?;
                t.set_read_timeout(Some(Duration::from_secs(30)))?;
                streams.push(t);
            }
            for (i, t) in streams[start..end].iter_mut().enumerate() {
                let mut filled = 0;
                loop {
                    let n = t.read(&mut buf[filled..]).map_err(|e| at(start + i, format!("reading the handshake answer: {e}")))?;
                    if n == 0 {
                        return Err(at(start + i, "the server closed the connection during the handshake".into()));
                    }
                    filled += n;
                    if find(&buf[..filled], b"\r\n\r\n").is_some() {
                        break;
                    }
                    if filled == buf.len() {
                        return Err(at(start + i, "the handshake answer is too long".into()));
                    }
                }
                if !buf.starts_with(b"HTTP/1.1 101") {
                    let line = String::from_utf8_lossy(&buf[..filled]).lines().next().unwrap_or("").to_owned();
                    return Err(at(start + i, format!("the handshake was answered {line:?}")));
                }
            }
        }
        Ok(Idle { streams })
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Pings every connection and counts the ones that answer with a pong.
    pub fn check(&mut self, round: usize) -> usize {
        // A masked, empty ping.
        const PING: [u8; 6] = [0x89, 0x80, 1, 2, 3, 4];
        let mut alive = 0;
        let mut buf = [0u8; 256];
        for chunk in self.streams.chunks_mut(round.max(1)) {
            let sent: Vec<bool> = chunk.iter_mut().map(|t| t.write_all(&PING).is_ok()).collect();
            for (t, ok) in chunk.iter_mut().zip(sent) {
                // A pong is at least two bytes: 0x8A and a zero length.
                if ok && matches!(t.read(&mut buf), Ok(n) if n >= 2 && buf[0] == 0x8A) {
                    alive += 1;
                }
            }
        }
        alive
    }
}

fn at(open: usize, what: String) -> std::io::Error {
    std::io::Error::other(format!("{what} (after {open} connections were open)"))
}
