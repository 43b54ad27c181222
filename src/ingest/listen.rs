//! Listening sockets: one per configured listener *per core*, all bound to the same
//! address with `SO_REUSEPORT`, so the kernel spreads new connections over the cores and
//! no connection is ever handed from one core to another.
//!
//! Everything is bound on the main thread before the cores start, so that a bad address
//! fails `capig serve` at once with a clear message, and so that a listener on port 0
//! (tests) gets one real port that every core then binds too.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Listener, ListenerKind};

/// Pending connections the kernel keeps per socket.
const BACKLOG: i32 = 4096;

/// One configured listener, bound once per core.
#[derive(Debug)]
pub struct Bound {
    pub kind: ListenerKind,
    /// The address with the real port.
    pub addr: SocketAddr,
    /// Index = core.
    pub sockets: Vec<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({kind}): {source}; check that no other program uses the port and that capig may bind it (ports below 1024 need CAP_NET_BIND_SERVICE)")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub kind: &'static str,
    pub source: io::Error,
}

fn socket(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]` serves IPv6 only; give an IPv4 listener of its own for IPv4.
        s.set_only_v6(true)?;
    }
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Binds every listener `cores` times.
pub fn bind_all(listeners: &[Listener], cores: usize) -> Result<Vec<Bound>, ListenError> {
    let mut bound = Vec::with_capacity(listeners.len());
    for l in listeners {
        let err = |source| ListenError {
            addr: l.addr,
            kind: l.kind.as_str(),
            source,
        };
        let first = socket(l.addr).map_err(err)?;
        let addr = first.local_addr().map_err(err)?;
        let mut sockets = vec![first];
        for _ in 1..cores {
            sockets.push(socket(addr).map_err(err)?);
        }
        bound.push(Bound {
            kind: l.kind,
            addr,
            sockets,
        });
    }
    Ok(bound)
}
