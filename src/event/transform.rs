//! The transform: one browser (or server-API) event in, one CAPI server event out.
//!
//! A pure function of (event, request [`Context`], pixel [`Policies`], `now`): it writes
//! the CAPI event as JSON into the caller's buffer (the open batch of that pixel) or
//! returns a [`Rejection`] and leaves the buffer as it was. The only state it touches is
//! explicit: the per-pixel dedup windows inside `Policies`, the reused normalization
//! scratch string, and plain counters.
//!
//! Hot path: no allocation per event in the steady state. Strings borrow the request
//! buffer (simd-json unescaped them in place), hashing writes into fixed arrays, the
//! output buffer and the scratch string keep their capacity.
//!
//! What it does, in order (Meta's rules: docs/CAPI.md, "Server event fields", "Event time
//! limits", "User data", "fbp and fbc"):
//! 1. collect the fields ([`BrowserEvent::from_val`]); duplicate keys are refused;
//! 2. pixel: from the request (server API URL) or the event; policy: unknown or disabled
//!    pixel, blocked event name, revoked consent are refused with their reason;
//! 3. `action_source` defaults to `website`; website events need `event_source_url` (whose
//!    host must be one of the pixel's domains) and a user agent;
//! 4. `event_time` in seconds (milliseconds, recognizable by size, are converted; a
//!    missing time is the receive time); older than 7 days (62 for `physical_store`) or
//!    more than 60 s ahead is refused, because Meta fails a whole batch for one such event;
//! 5. `user_data`: hashed fields normalized and SHA-256'd (bad ones dropped and counted);
//!    client IP and user agent from the connection (the event's own only when the request
//!    has none, e.g. a backend); `fbp`/`fbc` from the event or the cookies, malformed ones
//!    dropped; `fbc` built as `fb.1.{ms}.{fbclid}` from the page URL when none came;
//! 6. `custom_data` written with the pixel's types converted to CAPI's, unusable
//!    optional properties dropped and counted ([`super::custom_data`]); LDU options checked;
//! 7. dedup by `event_name` + `event_id` within the pixel's window.

use std::net::IpAddr;

use super::browser::BrowserEvent;
use super::custom_data;
use super::ids::{self, CookieKind};
use super::json::{comma, write_key, write_str, write_u64, write_value, Number, Val};
use super::normalize::{self, UserField};
use super::policy::{parse_pixel_id, url_host, PixelId, Policies};
use super::reject::{Counters, Dropped, Reason, Rejection};

/// Meta refuses events older than this (docs/CAPI.md, "Event time limits").
pub const MAX_AGE_SECS: u64 = 7 * 24 * 3600;
/// …except `physical_store` events, which may be uploaded within 62 days.
pub const MAX_AGE_PHYSICAL_STORE_SECS: u64 = 62 * 24 * 3600;
/// Events further ahead than this are refused (Meta is silent; RudderStack's rule).
pub const MAX_FUTURE_SECS: u64 = 60;
/// Longest `event_name` accepted.
pub const MAX_EVENT_NAME: usize = 256;
/// Longest `event_id` accepted.
pub const MAX_EVENT_ID: usize = 512;
/// Longest URL or user agent accepted.
pub const MAX_URL: usize = 8192;

/// The action sources CAPI knows (docs/CAPI.md, "Server event fields").
pub const ACTION_SOURCES: &[&str] = &[
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];

/// `user_data` keys that are never hashed and are forwarded as they came (docs/CAPI.md,
/// "Hashing").
const PLAIN_USER_KEYS: &[&str] = &[
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "anon_id",
    "madid",
    "page_id",
    "page_scoped_user_id",
    "ctwa_clid",
    "ig_account_id",
    "ig_sid",
];

/// What the request around the event tells: who sent it and when.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// Receive time, Unix milliseconds.
    pub now_ms: u64,
    /// The pixel named by the request (server API: `/capi/{pixel_id}/events`).
    pub pixel_id: Option<PixelId>,
    /// The client's IP as seen at the edge (peer address or trusted proxy header).
    pub client_ip: Option<&'a str>,
    /// The request's `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// The `_fbp` cookie of the request.
    pub cookie_fbp: Option<&'a str>,
    /// The `_fbc` cookie of the request.
    pub cookie_fbc: Option<&'a str>,
}

/// An event that was written to the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub pixel_id: PixelId,
    /// The event's time, Unix seconds (for the 7-day bookkeeping of the spool).
    pub event_time: u64,
    /// The dedup fingerprint, to [`Transformer::forget`] if the event cannot be stored.
    pub fingerprint: Option<u64>,
}

/// One core's transform state: policies with dedup windows, scratch space, counters.
pub struct Transformer {
    pub policies: Policies,
    pub counters: Counters,
    scratch: String,
}

impl Transformer {
    pub fn new(policies: Policies) -> Self {
        Transformer { policies, counters: Counters::default(), scratch: String::with_capacity(256) }
    }

    /// Transforms one event (a tape value) and appends the CAPI event JSON to `out`.
    /// On rejection `out` is left exactly as it was.
    pub fn transform(&mut self, event: Val<'_, '_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> Result<Accepted, Rejection> {
        let start = out.len();
        let result = self.transform_inner(event, ctx, out);
        match result {
            Ok(_) => self.counters.accepted += 1,
            Err(r) => {
                out.truncate(start);
                self.counters.reject(r.reason);
            }
        }
        result
    }

    /// Undoes the dedup memory of an accepted event that could not be stored, so that
    /// the client's resend is not taken for a duplicate.
    pub fn forget(&mut self, accepted: &Accepted) {
        if let Some(fp) = accepted.fingerprint {
            self.policies.forget(accepted.pixel_id, fp);
        }
    }

    fn transform_inner(&mut self, v: Val<'_, '_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> Result<Accepted, Rejection> {
        let e = BrowserEvent::from_val(v)?;
        for _ in 0..e.unknown_keys {
            self.counters.drop_field(Dropped::UnknownKey);
        }

        let pixel_id = pixel_id(&e, ctx)?;
        let event_name = string(e.event_name, "event_name", MAX_EVENT_NAME)?
            .ok_or(missing("event_name", "is required, e.g. \"PageView\" or \"Purchase\""))?;
        if event_name.is_empty() || event_name.chars().any(char::is_control) {
            return Err(invalid("event_name", "must be a non-empty name without control characters"));
        }
        let event_id = event_id(e.event_id)?;

        // Policy first: a refused pixel should not cost any hashing.
        let policy = self
            .policies
            .lookup(pixel_id)
            .map_err(|_| Rejection::new(Reason::UnknownPixel, "pixel_id", "is not configured on this gateway; add it under [[pixels]]"))?;
        if let Some(p) = policy {
            if !p.enabled {
                return Err(Rejection::new(Reason::PixelDisabled, "pixel_id", "is disabled in the configuration; enable it in capig.toml to send its events"));
            }
            if p.blocks_event(event_name) {
                return Err(Rejection::new(Reason::EventBlocked, "event_name", "is blocked for this pixel by its blocked_events in capig.toml"));
            }
        }
        if let Some(c) = e.consent {
            if !consent_granted(c)? {
                return Err(Rejection::new(Reason::ConsentRevoked, "consent", "the visitor revoked consent; nothing is sent until it is granted"));
            }
        }

        let action_source = match string(e.action_source, "action_source", 32)? {
            None => "website",
            Some(s) => ACTION_SOURCES
                .iter()
                .find(|a| **a == s)
                .copied()
                .ok_or(invalid("action_source", "must be one of website, app, email, phone_call, chat, physical_store, system_generated, business_messaging, other"))?,
        };
        let website = action_source == "website";
        let now_secs = ctx.now_ms / 1000;
        let max_age = if action_source == "physical_store" { MAX_AGE_PHYSICAL_STORE_SECS } else { MAX_AGE_SECS };
        let event_time = event_time(e.event_time, now_secs, max_age)?;
        let source_url = string(e.event_source_url, "event_source_url", MAX_URL)?;
        let referrer_url = string(e.referrer_url, "referrer_url", MAX_URL)?;
        if let Some(url) = source_url {
            let host = url_host(url).ok_or(invalid("event_source_url", "must be an absolute http(s) URL of the page"))?;
            if let Some(p) = policy {
                if !p.allows_host(host) {
                    return Err(Rejection::new(Reason::DomainNotAllowed, "event_source_url", "the page's domain is not one of the pixel's domains; add it to them in capig.toml"));
                }
            }
        } else if website {
            return Err(missing("event_source_url", "is required for website events: the URL of the page"));
        }
        let opt_out = match e.opt_out {
            None => None,
            Some(v) => Some(v.as_bool().ok_or(invalid("opt_out", "must be true or false"))?),
        };

        // The output object. Fields in CAPI's order of importance.
        out.push(b'{');
        write_key(out, "event_name");
        write_str(out, event_name);
        out.extend_from_slice(b",\"event_time\":");
        write_u64(out, event_time);
        if let Some(id) = event_id {
            out.extend_from_slice(b",\"event_id\":");
            write_id(out, id);
        }
        out.extend_from_slice(b",\"action_source\":");
        write_str(out, action_source);
        if let Some(url) = source_url {
            out.extend_from_slice(b",\"event_source_url\":");
            write_str(out, url);
        }
        if let Some(url) = referrer_url {
            out.extend_from_slice(b",\"referrer_url\":");
            write_str(out, url);
        }
        if let Some(o) = opt_out {
            out.extend_from_slice(if o { b",\"opt_out\":true" } else { b",\"opt_out\":false" });
        }

        out.extend_from_slice(b",\"user_data\":");
        let has_user_agent = self.write_user_data(out, e.user_data, ctx, source_url)?;
        if website && !has_user_agent {
            return Err(missing("client_user_agent", "is required for website events: send the request's User-Agent"));
        }
        if let Some(cd) = e.custom_data {
            custom_data::write(out, cd, event_name, &mut self.counters)?;
        } else if event_name == "Purchase" {
            return Err(Rejection::new(Reason::InvalidCustomData, "custom_data", "a Purchase needs value and currency; Meta refuses it otherwise"));
        }
        write_ldu(out, &e)?;
        for (key, val) in e.passthrough.iter().flatten() {
            out.push(b',');
            write_key(out, key);
            write_value(out, *val);
        }
        out.push(b'}');

        let fingerprint = match event_id {
            None => None,
            Some(id) => {
                let mut digits = [0u8; 20];
                let fp = self.policies.fingerprint(event_name, id.as_text(&mut digits));
                if self.policies.is_duplicate(pixel_id, fp, now_secs) {
                    return Err(Rejection::new(Reason::Duplicate, "event_id", "this event was already forwarded recently; Meta would drop it anyway"));
                }
                Some(fp)
            }
        };
        Ok(Accepted { pixel_id, event_time, fingerprint })
    }

    /// Writes the `user_data` object; returns whether it holds a user agent.
    fn write_user_data(
        &mut self,
        out: &mut Vec<u8>,
        user_data: Option<Val<'_, '_>>,
        ctx: &Context<'_>,
        source_url: Option<&str>,
    ) -> Result<bool, Rejection> {
        let mut fbp = None;
        let mut fbc = None;
        let mut event_ip = None;
        let mut event_ua = None;
        out.push(b'{');
        if let Some(ud) = user_data {
            let entries = ud.entries().ok_or(invalid("user_data", "must be an object"))?;
            if ud.len() > 64 {
                return Err(invalid("user_data", "has too many keys"));
            }
            for (i, (key, val)) in entries.enumerate() {
                if ud.key_repeats(i, key) {
                    return Err(Rejection::new(Reason::DuplicateKey, "user_data", "has the same key twice; send each key once"));
                }
                if val.is_null() {
                    continue;
                }
                if let Some(field) = UserField::from_key(key) {
                    self.write_hashed(out, field, val)?;
                    continue;
                }
                match key {
                    "fbp" => fbp = Some(val.as_str().ok_or(invalid("user_data.fbp", "must be a string"))?),
                    "fbc" => fbc = Some(val.as_str().ok_or(invalid("user_data.fbc", "must be a string"))?),
                    "client_ip_address" => event_ip = val.as_str(),
                    "client_user_agent" => event_ua = val.as_str(),
                    _ if PLAIN_USER_KEYS.contains(&key) && (val.as_str().is_some() || val.as_number().is_some()) => {
                        comma(out);
                        write_str(out, key);
                        out.push(b':');
                        write_value(out, val);
                    }
                    _ => self.counters.drop_field(Dropped::UnknownKey),
                }
            }
        }

        // The edge's view of the client wins over what the event claims about itself.
        match ctx.client_ip.or(event_ip) {
            Some(ip) if ip.len() <= 64 && ip.parse::<IpAddr>().is_ok() => {
                comma(out);
                write_key(out, "client_ip_address");
                write_str(out, ip);
            }
            Some(_) => self.counters.drop_field(Dropped::InvalidClientIp),
            None => {}
        }
        let ua = ctx.user_agent.or(event_ua).filter(|ua| !ua.trim().is_empty());
        if let Some(ua) = ua {
            if ua.len() > MAX_URL {
                return Err(Rejection::new(Reason::FieldTooLong, "client_user_agent", "is longer than the {n} bytes capig accepts").with_number(MAX_URL as u64));
            }
            comma(out);
            write_key(out, "client_user_agent");
            write_str(out, ua);
        }
        if let Some(v) = self.pick_cookie(CookieKind::Fbp, fbp, ctx.cookie_fbp) {
            comma(out);
            write_key(out, "fbp");
            write_str(out, v);
        }
        match self.pick_cookie(CookieKind::Fbc, fbc, ctx.cookie_fbc) {
            Some(v) => {
                comma(out);
                write_key(out, "fbc");
                write_str(out, v);
            }
            None => {
                if let Some(fbclid) = source_url.and_then(ids::fbclid_from_url) {
                    comma(out);
                    write_key(out, "fbc");
                    out.push(b'"');
                    ids::write_fbc(out, ctx.now_ms, fbclid);
                    out.push(b'"');
                    self.counters.built_fbc += 1;
                }
            }
        }
        out.push(b'}');
        Ok(ua.is_some())
    }

    /// The event's cookie value if well-formed, else the request's; malformed ones counted.
    fn pick_cookie<'v>(&mut self, kind: CookieKind, from_event: Option<&'v str>, from_request: Option<&'v str>) -> Option<&'v str> {
        let dropped = match kind {
            CookieKind::Fbp => Dropped::MalformedFbp,
            CookieKind::Fbc => Dropped::MalformedFbc,
        };
        for candidate in [from_event, from_request].into_iter().flatten() {
            if ids::is_valid_cookie(kind, candidate) {
                return Some(candidate);
            }
            self.counters.drop_field(dropped);
        }
        None
    }

    /// Writes one hashed field (a string, a number or an array of them); values that do
    /// not normalize are dropped and counted, and a field left with nothing is omitted.
    fn write_hashed(&mut self, out: &mut Vec<u8>, field: UserField, val: Val<'_, '_>) -> Result<(), Rejection> {
        let mark = out.len();
        comma(out);
        write_str(out, field.key());
        out.push(b':');
        let mut written = 0;
        if let Some(items) = val.elements() {
            if val.len() > 16 {
                return Err(invalid("user_data", "a field may hold at most 16 values"));
            }
            out.push(b'[');
            for item in items {
                let before = out.len();
                if written > 0 {
                    out.push(b',');
                }
                if self.write_one_hash(out, field, item)? {
                    written += 1;
                } else {
                    out.truncate(before);
                }
            }
            out.push(b']');
        } else if self.write_one_hash(out, field, val)? {
            written = 1;
        }
        if written == 0 {
            out.truncate(mark);
        }
        Ok(())
    }

    fn write_one_hash(&mut self, out: &mut Vec<u8>, field: UserField, val: Val<'_, '_>) -> Result<bool, Rejection> {
        let mut digits = [0u8; 20];
        let raw = match (val.as_str(), val.as_number()) {
            (Some(s), _) => s,
            (None, Some(n)) => number_text(n, &mut digits),
            _ => return Err(invalid("user_data", "hashed fields must be strings (or numbers)")),
        };
        match normalize::hash(field, raw, &mut self.scratch) {
            Ok(Some(h)) => {
                out.push(b'"');
                out.extend_from_slice(h.as_str().as_bytes());
                out.push(b'"');
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(_) => {
                self.counters.drop_field(Dropped::UserField(field));
                Ok(false)
            }
        }
    }
}

/// Text of a number in a user field (phone numbers and ZIP codes arrive as numbers);
/// negative and fractional numbers give `""`, which normalizes to nothing.
fn number_text(n: Number, buf: &mut [u8; 20]) -> &str {
    match n.as_u64() {
        Some(u) => std::str::from_utf8(ids::format_u64(u, buf)).unwrap_or(""),
        None => "",
    }
}

const fn invalid(field: &'static str, detail: &'static str) -> Rejection {
    Rejection::new(Reason::InvalidField, field, detail)
}

const fn missing(field: &'static str, detail: &'static str) -> Rejection {
    Rejection::new(Reason::MissingField, field, detail)
}

/// An optional string field with a length cap.
fn string<'a>(v: Option<Val<'_, 'a>>, field: &'static str, max: usize) -> Result<Option<&'a str>, Rejection> {
    let Some(v) = v else { return Ok(None) };
    let s = v.as_str().ok_or(invalid(field, "must be a string"))?;
    if s.len() > max {
        return Err(Rejection::new(Reason::FieldTooLong, field, "is longer than the {n} bytes capig accepts; shorten it").with_number(max as u64));
    }
    Ok(Some(s))
}

fn pixel_id(e: &BrowserEvent<'_, '_>, ctx: &Context<'_>) -> Result<PixelId, Rejection> {
    const BAD: Rejection = Rejection::new(Reason::InvalidField, "pixel_id", "must be the pixel's numeric id, as a string of digits");
    let from_event = match e.pixel_id {
        None => None,
        Some(v) => Some(match (v.as_str(), v.as_number()) {
            (Some(s), _) => parse_pixel_id(s).ok_or(BAD)?,
            (None, Some(n)) => n.as_u64().filter(|&n| n != 0).ok_or(BAD)?,
            _ => return Err(BAD),
        }),
    };
    match (ctx.pixel_id, from_event) {
        (Some(url), Some(ev)) if url != ev => {
            Err(Rejection::new(Reason::InvalidField, "pixel_id", "differs from the pixel in the request URL; leave it out or make them equal"))
        }
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(missing("pixel_id", "is required: the id of the Meta pixel the event belongs to")),
    }
}

/// An `event_id`: a string, or a number taken as its decimal text.
#[derive(Clone, Copy)]
enum EventId<'a> {
    Str(&'a str),
    Num(u64),
}

impl<'a> EventId<'a> {
    fn as_text<'b>(&self, buf: &'b mut [u8; 20]) -> &'b str
    where
        'a: 'b,
    {
        match *self {
            EventId::Str(s) => s,
            EventId::Num(n) => std::str::from_utf8(ids::format_u64(n, buf)).unwrap_or(""),
        }
    }
}

fn write_id(out: &mut Vec<u8>, id: EventId<'_>) {
    let mut buf = [0u8; 20];
    write_str(out, id.as_text(&mut buf));
}

fn event_id<'a>(v: Option<Val<'_, 'a>>) -> Result<Option<EventId<'a>>, Rejection> {
    const BAD: Rejection = Rejection::new(Reason::InvalidField, "event_id", "must be a non-empty string (the pixel's eventID)");
    let Some(v) = v else { return Ok(None) };
    if let Some(n) = v.as_number() {
        return n.as_u64().map(|n| Some(EventId::Num(n))).ok_or(BAD);
    }
    let s = v.as_str().ok_or(BAD)?;
    if s.len() > MAX_EVENT_ID {
        return Err(Rejection::new(Reason::FieldTooLong, "event_id", "is longer than the {n} bytes capig accepts; use a shorter id").with_number(MAX_EVENT_ID as u64));
    }
    if s.trim().is_empty() || s.chars().any(char::is_control) {
        return Err(BAD);
    }
    Ok(Some(EventId::Str(s)))
}

/// Unix seconds of the event. Values above 10¹¹ are milliseconds (10¹¹ seconds is the
/// year 5138), which page code sends by mistake with `Date.now()`.
fn event_time(v: Option<Val<'_, '_>>, now_secs: u64, max_age: u64) -> Result<u64, Rejection> {
    const BAD: Rejection = Rejection::new(Reason::InvalidField, "event_time", "must be a Unix time in seconds, like 1700000000");
    let Some(v) = v else { return Ok(now_secs) };
    let n = match (v.as_number(), v.as_str()) {
        (Some(n), _) => n,
        (None, Some(s)) => Number::F(s.trim().parse::<f64>().map_err(|_| BAD)?),
        _ => return Err(BAD),
    };
    let f = n.as_f64();
    if !f.is_finite() || f <= 0.0 {
        return Err(BAD);
    }
    let secs = if f >= 1e11 { (f / 1000.0) as u64 } else { f as u64 };
    if secs.saturating_add(max_age) < now_secs {
        return Err(Rejection::new(Reason::EventTooOld, "event_time", "is {n} seconds past the oldest time Meta accepts (7 days ago; 62 days for physical_store); an event that old cannot be sent")
            .with_number(now_secs - secs - max_age));
    }
    if secs > now_secs.saturating_add(MAX_FUTURE_SECS) {
        return Err(Rejection::new(Reason::EventInFuture, "event_time", "is {n} seconds in the future, and Meta accepts at most a minute ahead; check the sender's clock")
            .with_number(secs - now_secs));
    }
    Ok(secs)
}

/// `consent`: `true`/`"granted"`/`"grant"` or `false`/`"revoked"`/`"revoke"`/`"denied"`.
fn consent_granted(v: Val<'_, '_>) -> Result<bool, Rejection> {
    if let Some(b) = v.as_bool() {
        return Ok(b);
    }
    match v.as_str() {
        Some("granted" | "grant") => Ok(true),
        Some("revoked" | "revoke" | "denied") => Ok(false),
        _ => Err(invalid("consent", "must be true/false or \"granted\"/\"revoked\"")),
    }
}

/// Limited Data Use (docs/CAPI.md, "Server event fields"): only `"LDU"` is a valid option;
/// country is 0 (geolocate) or 1 (USA), state 0 (geolocate) or 1000 (California); with
/// LDU and no country/state, Meta geolocates (0, 0).
fn write_ldu(out: &mut Vec<u8>, e: &BrowserEvent<'_, '_>) -> Result<(), Rejection> {
    const BAD: Rejection = Rejection::new(
        Reason::InvalidDataProcessingOptions,
        "data_processing_options",
        "must be [] or [\"LDU\"], with country 0 or 1 and state 0 or 1000",
    );
    let mut ldu = false;
    if let Some(v) = e.data_processing_options {
        let items = v.elements().ok_or(BAD)?;
        out.extend_from_slice(b",\"data_processing_options\":[");
        for item in items {
            if ldu || !item.as_str().is_some_and(|s| s.eq_ignore_ascii_case("LDU")) {
                return Err(BAD);
            }
            out.extend_from_slice(b"\"LDU\"");
            ldu = true;
        }
        out.push(b']');
    }
    let code = |v: Option<Val<'_, '_>>, allowed: u64| -> Result<Option<u64>, Rejection> {
        match v {
            None => Ok(None),
            Some(v) => match v.as_number().and_then(Number::as_u64) {
                Some(n) if n == 0 || n == allowed => Ok(Some(n)),
                _ => Err(BAD),
            },
        }
    };
    let country = code(e.data_processing_options_country, 1)?;
    let state = code(e.data_processing_options_state, 1000)?;
    if ldu || country.is_some() || state.is_some() {
        out.extend_from_slice(b",\"data_processing_options_country\":");
        write_u64(out, country.unwrap_or(0));
        out.extend_from_slice(b",\"data_processing_options_state\":");
        write_u64(out, state.unwrap_or(0));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
