//! Per-pixel policy (enabled, allowed site domains, blocked event names) and the
//! per-pixel dedup window over recent `event_id`s.
//!
//! Dedup window: Meta deduplicates `event_name` + `event_id` over 48 hours, but a browser
//! that resends unacknowledged events (reconnects, page navigations) would otherwise
//! reach Meta many times, and each copy costs a slot in a batch. capig remembers a 64-bit
//! keyed fingerprint (SipHash-1-3 with a per-process random key, so a client cannot
//! craft collisions) of `event_name`, `event_id` per pixel, for `window_secs` or until
//! `capacity` newer entries pushed it out, whichever comes first. Memory per pixel and
//! core is bounded by `capacity` × ~32 bytes (the map entry and the eviction queue);
//! with the default 100,000 entries that is ~3 MiB. A false positive needs a 64-bit
//! collision among `capacity` live entries (~3 × 10⁻¹⁰ at 100,000).
//!
//! The first copy wins (like Meta): a duplicate does not refresh the entry. Events
//! without an `event_id` cannot be deduplicated and always pass.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Pixel ids are decimal digits; capig keys pixels by their numeric value.
pub type PixelId = u64;

/// Parses a pixel id given as decimal digits (1 to 20 digits, fits in u64).
pub fn parse_pixel_id(s: &str) -> Option<PixelId> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n != 0)
}

/// What one pixel allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelPolicy {
    pub id: PixelId,
    pub enabled: bool,
    /// Site domains the pixel may fire on, lowercase; a page host matches a domain or any
    /// subdomain of it. Empty: any site.
    pub domains: Vec<String>,
    /// Event names that are not forwarded (exact, case-sensitive like Meta's names).
    pub blocked_events: Vec<String>,
}

impl PixelPolicy {
    /// A policy that lets everything through (used when no config is given).
    pub fn allow_all(id: PixelId) -> Self {
        PixelPolicy { id, enabled: true, domains: Vec::new(), blocked_events: Vec::new() }
    }

    /// Whether a page on `host` may send events for this pixel.
    pub fn allows_host(&self, host: &str) -> bool {
        self.domains.is_empty() || self.domains.iter().any(|d| host_matches(host, d))
    }

    pub fn blocks_event(&self, name: &str) -> bool {
        self.blocked_events.iter().any(|b| b == name)
    }
}

/// Whether `host` is `domain` or a subdomain of it, ignoring ASCII case.
pub fn host_matches(host: &str, domain: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() == domain.len() {
        return host.eq_ignore_ascii_case(domain);
    }
    host.len() > domain.len()
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
}

/// The host part of an absolute http(s) URL, without port or brackets; `None` when the
/// URL is not `http://` or `https://` with a host.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = strip_prefix_ignore_case(url, "https://").or_else(|| strip_prefix_ignore_case(url, "http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// The pixel is not configured on this gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownPixel;

/// How big the dedup window is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// How long an `event_id` is remembered.
    pub window_secs: u64,
    /// At most this many ids per pixel are remembered; the oldest go first.
    pub capacity: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { window_secs: 48 * 3600, capacity: 100_000 }
    }
}

/// A fingerprint is already a keyed hash: the map must not hash it again.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Recent event fingerprints of one pixel.
pub struct DedupWindow {
    config: DedupConfig,
    seen: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    order: VecDeque<(u64, u64)>,
}

impl DedupWindow {
    pub fn new(config: DedupConfig) -> Self {
        DedupWindow { config, seen: HashMap::default(), order: VecDeque::new() }
    }

    /// Whether `fingerprint` was seen within the window (at `now_secs`); if not, it is
    /// remembered from now on. Steady state (at capacity) allocates nothing.
    pub fn check_and_insert(&mut self, fingerprint: u64, now_secs: u64) -> bool {
        while let Some(&(fp, at)) = self.order.front() {
            let expired = at.saturating_add(self.config.window_secs) <= now_secs;
            if !expired && self.order.len() < self.config.capacity {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&fp);
        }
        if self.seen.contains_key(&fingerprint) {
            return true;
        }
        if self.config.capacity > 0 {
            self.seen.insert(fingerprint, now_secs);
            self.order.push_back((fingerprint, now_secs));
        }
        false
    }

    /// Forgets a fingerprint, so a resend is accepted again (used when an event that
    /// passed the window could not be stored after all).
    pub fn forget(&mut self, fingerprint: u64) {
        // The queue entry stays until it expires; without the map entry it is inert.
        self.seen.remove(&fingerprint);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Which pixels exist and what they allow, plus their dedup windows.
pub struct Policies {
    /// `None`: no configuration, every pixel is allowed (the `capig transform` default).
    configured: Option<HashMap<PixelId, PixelPolicy>>,
    dedup_config: DedupConfig,
    windows: HashMap<PixelId, DedupWindow>,
    keys: std::collections::hash_map::RandomState,
}

impl Policies {
    /// Only the given pixels are accepted.
    pub fn configured(pixels: impl IntoIterator<Item = PixelPolicy>, dedup: DedupConfig) -> Self {
        let map = pixels.into_iter().map(|p| (p.id, p)).collect();
        Policies { configured: Some(map), dedup_config: dedup, windows: HashMap::new(), keys: Default::default() }
    }

    /// Every pixel is accepted with no restrictions (dedup still applies).
    pub fn allow_all(dedup: DedupConfig) -> Self {
        Policies { configured: None, dedup_config: dedup, windows: HashMap::new(), keys: Default::default() }
    }

    /// The policy of `id`: `Ok(None)` when no pixels are configured (all allowed).
    pub fn lookup(&self, id: PixelId) -> Result<Option<&PixelPolicy>, UnknownPixel> {
        match &self.configured {
            None => Ok(None),
            Some(map) => map.get(&id).map(Some).ok_or(UnknownPixel),
        }
    }

    /// The dedup fingerprint of an event.
    pub fn fingerprint(&self, event_name: &str, event_id: &str) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(event_name.as_bytes());
        h.write_u8(0xff);
        h.write(event_id.as_bytes());
        h.finish()
    }

    /// Whether the event was seen recently on this pixel; remembers it if not.
    pub fn is_duplicate(&mut self, pixel: PixelId, fingerprint: u64, now_secs: u64) -> bool {
        let config = self.dedup_config;
        self.windows.entry(pixel).or_insert_with(|| DedupWindow::new(config)).check_and_insert(fingerprint, now_secs)
    }

    /// Undoes [`Policies::is_duplicate`]'s remembering of one event.
    pub fn forget(&mut self, pixel: PixelId, fingerprint: u64) {
        if let Some(w) = self.windows.get_mut(&pixel) {
            w.forget(fingerprint);
        }
    }
}

#[cfg(test)]
mod tests;
