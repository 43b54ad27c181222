//! Meta's rules as the simulator knows them, written here on their own and not taken
//! from `crate::event`: the simulator is the independent check of what the transform
//! sends, so a mistake in one must not be copied into the other (docs/CAPI.md, "Server
//! event fields", "fbp and fbc", "Hashing").
//!
//! Where Meta documents a shape and is silent on bounds, these checks take the shape
//! only (a digit string is digits, of any length); the transform is stricter.

/// Most events in one request.
pub const MAX_EVENTS: usize = 1000;
/// An `event_time` older than this is refused…
pub const MAX_AGE_SECS: u64 = 7 * 86_400;
/// …except for `physical_store` events, which may be 62 days old.
pub const MAX_AGE_PHYSICAL_STORE_SECS: u64 = 62 * 86_400;
/// An `event_time` further ahead than this is refused.
pub const MAX_FUTURE_SECS: u64 = 60;
/// The `action_source` values CAPI knows.
pub const ACTION_SOURCES: [&str; 9] =
    ["app", "business_messaging", "chat", "email", "other", "phone_call", "physical_store", "system_generated", "website"];

/// `fbp`: `fb.{subdomain index}.{creation time, ms}.{random digits}`, optionally with a
/// fifth, parameter-builder segment.
pub fn fbp_ok(value: &str) -> bool {
    cookie_segments(value).is_some_and(|payload| !payload.is_empty() && payload.bytes().all(|b| b.is_ascii_digit()))
}

/// `fbc`: `fb.{subdomain index}.{creation time, ms}.{fbclid}`, optionally with a fifth,
/// parameter-builder segment. The click id is case-sensitive and URL-safe.
pub fn fbc_ok(value: &str) -> bool {
    cookie_segments(value).is_some_and(|payload| !payload.is_empty() && payload.len() <= 500 && payload.bytes().all(url_safe))
}

/// The payload (fourth segment) of a well-shaped `fb.` cookie value.
fn cookie_segments(value: &str) -> Option<&str> {
    let segments: Vec<&str> = value.split('.').collect();
    if !(4..=5).contains(&segments.len()) || segments[0] != "fb" {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(segments[1]) || !digits(segments[2]) {
        return None;
    }
    if let Some(appendix) = segments.get(4) {
        if appendix.is_empty() || !appendix.bytes().all(url_safe) {
            return None;
        }
    }
    Some(segments[3])
}

/// A hashed `user_data` value: a SHA-256 digest in lowercase hex, optionally followed by
/// a parameter-builder appendix after a dot.
pub fn hashed_ok(value: &str) -> bool {
    let (digest, appendix) = match value.split_once('.') {
        Some((d, a)) => (d, Some(a)),
        None => (value, None),
    };
    digest.len() == 64
        && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && appendix.is_none_or(|a| !a.is_empty() && a.bytes().all(url_safe))
}

fn url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&str) -> bool, cases: &[(&str, bool)]) {
        for &(value, ok) in cases {
            assert_eq!(f(value), ok, "{value:?}");
        }
    }

    #[test]
    fn cookie_values() {
        check(
            fbp_ok,
            &[
                ("fb.1.1596403881668.1116446470", true),
                ("fb.2.1596403881668.1116446470.AQ", true),
                ("fb.1.abc.123", false),
                ("fb.1.1596403881668.", false),
                ("fb.1.1596403881668.12a", false),
                ("xx.1.1596403881668.1116446470", false),
                ("fb.1.1596403881668.1.2.3", false),
            ],
        );
        check(
            fbc_ok,
            &[
                ("fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk", true),
                ("fb.1.1554763741205.IwAR2F4.ABcDEFGh", true),
                ("IwAR2F4", false),
                ("fb.1.1554763741205.Iw AR", false),
            ],
        );
    }

    #[test]
    fn hashed_values() {
        let h = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
        check(
            hashed_ok,
            &[
                (h, true),
                (&format!("{h}.AQYBAAAA"), true),
                (&h.to_uppercase(), false),
                (&h[..63], false),
                (&format!("{h}."), false),
                ("john@example.com", false),
            ],
        );
    }
}
