//! What the edge knows about a request, sans-IO: the client's IP address (the peer, or
//! what a trusted proxy says), CORS for the site origins, and the first-party `_fbp`
//! cookie capig sets for browsers that arrive without one.
//!
//! Design constraints:
//! - No allocation: addresses are formatted into [`IpText`], cookies into the caller's
//!   response buffer; headers are read as borrowed byte slices.
//! - Proxy headers are believed only from a configured trusted proxy, and then read from
//!   the right: the right-most address that is not itself a trusted proxy is the client
//!   (everything to its left was written by the client and may be forged).
//!   `Forwarded` (RFC 7239, `for=`) is used when present, else `X-Forwarded-For`. An entry
//!   that is not an address (`unknown`, an obfuscated id) ends the walk: the last trusted
//!   hop is used rather than a guess.
//! - `_fbp` minting is deterministic for a browser within a 10-minute window: the value is
//!   `fb.{index}.{window start ms}.{10 digits}`, the digits an HMAC-SHA256 of the client
//!   IP and user agent under a key made at start. Two first requests of the same browser
//!   that race (two tabs, a WebSocket and a beacon) on different cores therefore mint the
//!   same value; only a pair that straddles a window boundary can differ, and the next
//!   request then carries whichever cookie the browser kept. The cookie goes to the site's
//!   registrable domain as seen from both sides — the longest common suffix (of at least
//!   two labels) of capig's host and the page's host — for 90 days, `Secure`,
//!   `SameSite=Lax`, so the pixel's own JavaScript reads the same `_fbp`.

use std::io::Write as _;
use std::net::IpAddr;

use ring::hmac;

use crate::config::IpNet;

#[cfg(test)]
mod tests;

/// Lifetime of the `_fbp` and `_fbc` cookies capig sets: 90 days, as the pixel's own.
pub const FBP_MAX_AGE_SECS: u64 = 90 * 86_400;
/// Minting window: first requests of one browser within it get the same value.
pub const FBP_WINDOW_MS: u64 = 600_000;

/// An IP address as text, on the stack.
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; 46],
    len: u8,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        let mut buf = [0u8; 46];
        let mut cursor = &mut buf[..];
        // An IPv6 address is at most 45 bytes, so this cannot run out of room.
        let _ = write!(cursor, "{ip}");
        let len = 46 - cursor.len();
        IpText {
            buf,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).expect("an address formats as ASCII")
    }
}

/// The client's address: `peer` unless `peer` is a trusted proxy, then the right-most
/// untrusted address of `Forwarded` (all its values) or else `X-Forwarded-For`.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a [u8]> + Clone,
    x_forwarded_for: impl Iterator<Item = &'a [u8]> + Clone,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut fwd = forwarded.clone().peekable();
    if fwd.peek().is_some() {
        let hops = forwarded.flat_map(|v| v.split(|&b| b == b',')).map(forwarded_for);
        return walk(peer, hops, trusted);
    }
    let hops = x_forwarded_for
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|h| parse_ip(trim(h)));
    walk(peer, hops, trusted)
}

/// Walks hops from the right; `None` is an entry that is not an address.
fn walk(peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>, trusted: &[IpNet]) -> IpAddr {
    // The chain is short (one entry per proxy); walking it from the right needs it
    // reversed, which a fixed array does without allocating.
    let mut chain = [None; 16];
    let mut n = 0;
    for h in hops {
        if n == chain.len() {
            // A longer chain is the client's own padding: keep the right-most hops.
            chain.copy_within(1.., 0);
            n -= 1;
        }
        chain[n] = Some(h);
        n += 1;
    }
    let mut last_trusted = peer;
    for hop in chain[..n].iter().rev() {
        match hop.expect("filled above") {
            Some(ip) if is_trusted(ip, trusted) => last_trusted = ip,
            Some(ip) => return ip,
            None => return last_trusted,
        }
    }
    last_trusted
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?;
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse().ok().map(canonical);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // `1.2.3.4:port` (an IPv6 address without brackets cannot carry a port).
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.60;proto=http;by=…`).
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    for pair in element.split(|&b| b == b';') {
        let pair = trim(pair);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if pair[..eq].eq_ignore_ascii_case(b"for") {
            let v = trim(&pair[eq + 1..]);
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            return parse_ip(v);
        }
    }
    None
}

/// The domain to set first-party cookies on: the longest common suffix of at least two
/// labels of capig's host and the page's host; without a page host (no `Origin`), capig's
/// host without its first label. `None` when there is no such domain (a bare name, an
/// IP address): the cookie is then host-only.
pub fn cookie_domain<'h>(capig_host: &'h str, page_host: Option<&str>) -> Option<&'h str> {
    if capig_host.parse::<IpAddr>().is_ok() || capig_host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return None;
    }
    let candidate = match page_host {
        Some(page) => {
            let mut common = None;
            // Walk capig's host suffixes from the longest; the first one the page's host
            // has (as a whole label sequence) is the longest common one.
            let mut s = capig_host;
            loop {
                if page.eq_ignore_ascii_case(s)
                    || (page.len() > s.len()
                        && page.as_bytes()[page.len() - s.len() - 1] == b'.'
                        && page[page.len() - s.len()..].eq_ignore_ascii_case(s))
                {
                    common = Some(s);
                    break;
                }
                match s.split_once('.') {
                    Some((_, rest)) => s = rest,
                    None => break,
                }
            }
            common?
        }
        None => capig_host.split_once('.')?.1,
    };
    candidate.contains('.').then_some(candidate)
}

/// The `subdomainIndex` of an `_fbp` set on `domain`: `example.com` is 1,
/// `www.example.com` 2 (labels minus one).
pub fn subdomain_index(domain: Option<&str>) -> u64 {
    domain.map_or(1, |d| d.bytes().filter(|&b| b == b'.').count() as u64)
}

/// Mints `_fbp` values; one per core, all made from the same key.
#[derive(Clone)]
pub struct FbpMinter {
    key: hmac::Key,
}

impl std::fmt::Debug for FbpMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FbpMinter([key redacted])")
    }
}

/// An `_fbp` value, on the stack.
#[derive(Clone, Copy)]
pub struct FbpText {
    buf: [u8; 48],
    len: u8,
}

impl FbpText {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).expect("fbp is ASCII")
    }
}

impl FbpMinter {
    /// `key` should be random (made once at start and shared by the cores).
    pub fn new(key: &[u8]) -> FbpMinter {
        FbpMinter {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A random key from the system's generator.
    pub fn random() -> FbpMinter {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .expect("the system random generator works");
        FbpMinter::new(&key)
    }

    /// The `_fbp` of a browser (client IP and user agent) at `now_ms`, for a cookie set
    /// on `domain`.
    pub fn mint(&self, client_ip: &str, user_agent: &str, now_ms: u64, domain: Option<&str>) -> FbpText {
        let window = now_ms - now_ms % FBP_WINDOW_MS;
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&window.to_le_bytes());
        ctx.update(client_ip.as_bytes());
        ctx.update(&[0]);
        ctx.update(user_agent.as_bytes());
        let tag = ctx.sign();
        let mut n = [0u8; 8];
        n.copy_from_slice(&tag.as_ref()[..8]);
        // Ten digits, like the pixel's own random part.
        let random = 1_000_000_000 + u64::from_le_bytes(n) % 9_000_000_000;
        let mut buf = [0u8; 48];
        let mut cursor = &mut buf[..];
        let _ = write!(cursor, "fb.{}.{window}.{random}", subdomain_index(domain));
        let len = 48 - cursor.len();
        FbpText {
            buf,
            len: len as u8,
        }
    }
}

/// Appends the value of a `Set-Cookie` header for one of the first-party cookies
/// (`_fbp`, `_fbc`): `name=value; Domain=…; Path=/; Max-Age=…; Secure; SameSite=Lax`.
pub fn write_cookie(out: &mut Vec<u8>, name: &str, value: &[u8], domain: Option<&str>) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    if let Some(d) = domain {
        out.extend_from_slice(b"; Domain=");
        out.extend_from_slice(d.as_bytes());
    }
    let _ = write!(out, "; Path=/; Max-Age={FBP_MAX_AGE_SECS}; Secure; SameSite=Lax");
}

/// The host of an `Origin` header value (`https://www.shop.example:8443` →
/// `www.shop.example`).
pub fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => rest.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}
