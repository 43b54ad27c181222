//! The `_fbp` (browser id) and `_fbc` (click id) formats, and `fbclid` in page URLs.
//!
//! Formats (docs/CAPI.md, "fbp and fbc"): `fb.{subdomainIndex}.{creationTimeMs}.{payload}`
//! with an optional fifth segment, the param-builder "appendix"
//! (`fb.1.1554763741205.IwAR….ABcDEFGh`).
//! For `_fbp` the payload is a random number; for `_fbc` it is the `fbclid` of the ad
//! click, which is case-sensitive: these values are checked, never rewritten.
//!
//! Everything here works on borrowed `&str` and allocates nothing; the transform and the
//! CAPI simulator share these checks so that what capig forwards is what Meta accepts.

/// The longest `fbclid` accepted (Meta's param builder refuses longer ones).
pub const MAX_FBCLID_LEN: usize = 500;

/// Which cookie value is being checked: the payload rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieKind {
    /// `_fbp`: the payload is a decimal random number.
    Fbp,
    /// `_fbc`: the payload is an `fbclid`.
    Fbc,
}

/// Whether `value` is a well-formed `_fbp` value.
pub fn is_valid_fbp(value: &str) -> bool {
    is_valid_cookie(CookieKind::Fbp, value)
}

/// Whether `value` is a well-formed `_fbc` value.
pub fn is_valid_fbc(value: &str) -> bool {
    is_valid_cookie(CookieKind::Fbc, value)
}

/// Checks `fb.{index}.{ms}.{payload}[.{appendix}]`.
pub fn is_valid_cookie(kind: CookieKind, value: &str) -> bool {
    let mut parts = value.split('.');
    let (Some("fb"), Some(index), Some(ms), Some(payload)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let appendix = parts.next();
    if parts.next().is_some() {
        return false;
    }
    let index_ok = (1..=2).contains(&index.len()) && all_digits(index);
    // Milliseconds since the epoch: 13 digits today; allow a little room either way.
    let ms_ok = (10..=16).contains(&ms.len()) && all_digits(ms);
    let payload_ok = match kind {
        CookieKind::Fbp => (1..=32).contains(&payload.len()) && all_digits(payload),
        CookieKind::Fbc => is_valid_fbclid(payload),
    };
    let appendix_ok = appendix.is_none_or(|a| (1..=16).contains(&a.len()) && all_url_safe(a));
    index_ok && ms_ok && payload_ok && appendix_ok
}

/// Whether `fbclid` is a plausible click id: URL-safe characters, not empty, not too long.
pub fn is_valid_fbclid(fbclid: &str) -> bool {
    (1..=MAX_FBCLID_LEN).contains(&fbclid.len()) && all_url_safe(fbclid)
}

/// The `fbclid` query parameter of a page URL, if it has a valid one.
///
/// Only the query part counts (between `?` and `#`). A percent-encoded value is not
/// decoded: real click ids are URL-safe, so such a value is not a click id.
pub fn fbclid_from_url(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("fbclid="))
        .filter(|v| is_valid_fbclid(v))
}

/// The value of cookie `name` in a `Cookie` header (`a=b; c=d`), if present.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Writes `fb.1.{now_ms}.{fbclid}`, the `fbc` Meta asks for when only the click id is
/// known (docs/CAPI.md, "fbp and fbc"; subdomain index 1 when no cookie was set).
pub fn write_fbc(out: &mut Vec<u8>, now_ms: u64, fbclid: &str) {
    out.extend_from_slice(b"fb.1.");
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_u64(now_ms, &mut digits));
    out.push(b'.');
    out.extend_from_slice(fbclid.as_bytes());
}

/// Formats `n` in decimal into `buf`, returning the digits; no allocation.
pub fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

fn all_url_safe(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests;
