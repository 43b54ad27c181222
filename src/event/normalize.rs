//! Normalization and SHA-256 hashing of CAPI `user_data` fields, by Meta's rules.
//!
//! Meta matches events to people by comparing SHA-256 digests, so a value only matches if
//! capig normalizes it byte for byte the way Meta (and the pixel on the same page) does.
//! The rules are Meta's (docs/CAPI.md, "Normalization"); where Meta is silent, the choice
//! below takes the best of what Meta's SDKs and other gateways do and says why.
//!
//! Design constraints: this runs on the ingestion hot path, once per personal field of
//! every event. The caller passes a `scratch` string that it reuses across calls, so a call
//! allocates nothing once `scratch` has grown; lookup tables are `static` sorted slices
//! searched by binary search (the `tables` submodule); ASCII input, the common case, takes fast
//! paths that skip Unicode normalization. Values longer than [`MAX_VALUE_LEN`] bytes after
//! trimming are refused before any other work, so hostile input costs at most a scan.
//! Errors never carry the value: it is personal data and errors end up in logs and metrics.
//!
//! | Field | Rule |
//! |---|---|
//! | all | Trim whitespace, control characters and U+FEFF (as JavaScript's `trim` does). A value that already is a SHA-256 digest (64 hex digits, any case), optionally followed by a param-builder appendix `.<1..=16 of [A-Za-z0-9_-]>`, passes through with the digest lowercased and the appendix kept as is (base64url is case-sensitive). MD5 digests are not passed through: CAPI wants SHA-256, so they are normalized like any value. Nothing left after normalization → no value (never a hash of the empty string). |
//! | `em` | Unicode lowercase. Exactly one `@`, a non-empty local part, a domain with a dot and no empty label, no whitespace, control or invisible formatting characters; else invalid. No NFC: Meta's rule is trim + lowercase only, and the pixel hashes what it was given. |
//! | `ph` | Digits only (ASCII, plus Arabic-Indic, Persian, Devanagari, Bengali and full-width digits, which phone keyboards produce), leading zeros dropped (the `00` international prefix, trunk zeros), 7..=15 digits (E.164) else invalid. A `(0)` after the country code (`+44 (0)20 …`) is a trunk prefix written for local callers and is dropped. A number in North American layout — `(NXX)NXX-XXXX`, `(NXX) NXX-XXXX` (or with `.`/space before the last four), `NXX-NXX-XXXX`, `NXX.NXX.XXXX`, `NXX NXX XXXX`, N = 2..9 — with no `+`, no `00` and no leading `1` gets `1` prepended, as in Meta's own example `(650)555-1212` → `16505551212`. Any other number must carry its country code: a bare run of ten digits could be from anywhere, no Meta SDK infers a calling code, and a wrong guess matches nobody while looking valid. |
//! | `fn`, `ln`, `ct` | NFC, then keep letters (Unicode alphabetic) and the combining marks that follow a kept letter (so scripts with vowel signs survive), lowercase; punctuation, digits, whitespace, emoji and lone marks are dropped (`New York` → `newyork`, `O'Brien` → `obrien`, `Valéry` → `valéry`, `정` → `정`). |
//! | `st` | US states, DC, territories, military "states" and Canadian provinces (English and French names) → 2-letter code (`California` → `ca`, `Québec` → `qc`); a 2-letter value is kept; anything else as `ct` (regions outside North America keep their name). |
//! | `zp` | Unicode lowercase, keep letters and digits only (no spaces, dashes or other punctuation). US ZIP / ZIP+4 (`94025`, `94025-1234`, `94025 1234`, `940251234`) → first 5 digits; UK `M1 1AE` → `m11ae`. Fewer than 2 characters left → invalid. |
//! | `country` | ISO 3166-1 alpha-2 from alpha-2, alpha-3, English short/common/official names and common aliases (`UK`, `Great Britain`, `England` → `gb`; `U.S.A.`, `America` → `us`; `Holland` → `nl`; a few native names such as `Deutschland`), insensitive to case, accents, spaces and punctuation, with a leading `the` and `St` for `Saint` tolerated → lowercase alpha-2. Unknown → invalid. Only ISO-assigned codes (no user-assigned `XK`). |
//! | `db` | → `YYYYMMDD`. Accepts `YYYYMMDD`; `YYYY-MM-DD` / `YYYY/MM/DD` / `YYYY.MM.DD`; `DD.MM.YYYY` (dots mean day first, as in Europe); `M/D/YYYY`, `MM-DD-YYYY` (US order, Meta's example `2/16/1997`) unless the first number is over 12, then `D/M/YYYY`; English month names and abbreviations with an optional ordinal (`16 Feb 1997`, `February 16th, 1997`, `1997-Feb-16`). Two-digit years, times (`…T00:00:00Z`, which `toISOString` may have shifted a day) and anything else → invalid. Must be a real date (leap years) with year 1900..=2100: Meta says "1900 to the current year", but this code has no clock (sans-IO), so the upper bound is generous. |
//! | `ge` | `f` / `m` from a word in a few languages (`female`, `woman`, `Mrs.`, `Frau`, `weiblich`, `femme`, `mujer`, `женский`, `女`, …; `male`, `man`, `Mr.`, `Herr`, `männlich`, `homme`, `hombre`, `мужской`, `男`, …), case-, accent- and punctuation-insensitive; anything else (including non-binary values) → invalid, so that it is counted rather than guessed. |
//! | `external_id` | Trim + Unicode lowercase, then hashed: Meta recommends hashing, and its Node SDK and param builder hash it. The browser side must send the same ID in the same format (or already hashed the same way) for deduplication and matching to line up. |
//!
//! What counts as "no value": for the filtering fields (`ph`, `fn`, `ln`, `ct`, `st`, `zp`,
//! `external_id`) a value with nothing left after the filter (`n/a` for a phone, `123` for a
//! name); for the parsed fields (`em`, `db`, `ge`, `country`) only a blank value, so that
//! junk there is counted as invalid.

mod tables;

use unicode_normalization::char::{decompose_canonical, is_combining_mark};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// The longest value accepted, in bytes after trimming. Real values are far shorter (an
/// email address is at most 254 bytes); anything longer is refused before any work.
pub const MAX_VALUE_LEN: usize = 512;

/// The longest param-builder appendix kept on a passed-through hash (Meta's is 8 chars).
const MAX_APPENDIX_LEN: usize = 16;

/// Room for a digest, the dot and the longest appendix.
const HASHED_CAP: usize = 64 + 1 + MAX_APPENDIX_LEN;

/// Room for a lookup key; longer keys cannot be in any table.
const KEY_CAP: usize = 64;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A `user_data` field that Meta requires (or recommends) to be hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserField {
    Em,
    Ph,
    Fn,
    Ln,
    Db,
    Ge,
    Ct,
    St,
    Zp,
    Country,
    ExternalId,
}

impl UserField {
    /// Every hashed field, in the order capig writes them.
    pub const ALL: [UserField; 11] = [
        UserField::Em,
        UserField::Ph,
        UserField::Fn,
        UserField::Ln,
        UserField::Db,
        UserField::Ge,
        UserField::Ct,
        UserField::St,
        UserField::Zp,
        UserField::Country,
        UserField::ExternalId,
    ];

    /// The key as it appears in `user_data`.
    pub const fn key(self) -> &'static str {
        match self {
            UserField::Em => "em",
            UserField::Ph => "ph",
            UserField::Fn => "fn",
            UserField::Ln => "ln",
            UserField::Db => "db",
            UserField::Ge => "ge",
            UserField::Ct => "ct",
            UserField::St => "st",
            UserField::Zp => "zp",
            UserField::Country => "country",
            UserField::ExternalId => "external_id",
        }
    }

    /// The field for a `user_data` key, if it is one of the hashed ones.
    pub fn from_key(key: &str) -> Option<UserField> {
        UserField::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The counter label for an invalid value of this field.
    pub const fn invalid_reason(self) -> &'static str {
        match self {
            UserField::Em => "invalid_em",
            UserField::Ph => "invalid_ph",
            UserField::Fn => "invalid_fn",
            UserField::Ln => "invalid_ln",
            UserField::Db => "invalid_db",
            UserField::Ge => "invalid_ge",
            UserField::Ct => "invalid_ct",
            UserField::St => "invalid_st",
            UserField::Zp => "invalid_zp",
            UserField::Country => "invalid_country",
            UserField::ExternalId => "invalid_external_id",
        }
    }
}

/// Why a value was refused. The messages name the field and the problem, never the value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NormalizeError {
    /// The value does not have the shape the field needs; `why` says what was expected.
    #[error("`{}` value is invalid: {why}", .field.key())]
    Invalid { field: UserField, why: &'static str },
    /// The value is longer than [`MAX_VALUE_LEN`] bytes after trimming.
    #[error("`{}` value is {len} bytes long after trimming, over the limit of {max}: send the real value or leave the field out", .field.key(), max = MAX_VALUE_LEN)]
    TooLong { field: UserField, len: usize },
}

impl NormalizeError {
    /// A short, stable snake_case reason for counters: `invalid_<field>` or `too_long`.
    pub fn reason(&self) -> &'static str {
        match self {
            NormalizeError::Invalid { field, .. } => field.invalid_reason(),
            NormalizeError::TooLong { .. } => "too_long",
        }
    }

    /// The field whose value was refused.
    pub fn field(&self) -> UserField {
        match self {
            NormalizeError::Invalid { field, .. } | NormalizeError::TooLong { field, .. } => *field,
        }
    }
}

/// A value as it goes to CAPI: 64 lowercase hex digits of SHA-256, optionally followed by
/// `.` and a param-builder appendix. Fixed-size and `Copy`, so hashing allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    // Always ASCII; bytes past `len` stay zero so the derived equality is exact.
    buf: [u8; HASHED_CAP],
    len: u8,
    passthrough: bool,
}

impl Hashed {
    fn of_normalized(value: &str) -> Hashed {
        let mut buf = [0; HASHED_CAP];
        buf[..64].copy_from_slice(&sha256_hex(value.as_bytes()));
        Hashed {
            buf,
            len: 64,
            passthrough: false,
        }
    }

    /// The value to send: `<sha256 hex>` or `<sha256 hex>.<appendix>`.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into `buf`, so this cannot fail.
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The 64 hex digits of the digest, without any appendix.
    pub fn digest_hex(&self) -> &str {
        self.as_str().get(..64).unwrap_or_default()
    }

    /// The param-builder appendix, when the value came with one.
    pub fn appendix(&self) -> Option<&str> {
        self.as_str().get(65..)
    }

    /// Whether the value arrived already hashed and was passed through.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }
}

impl core::fmt::Debug for Hashed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // A digest is not personal data in clear, so it may be shown.
        f.debug_struct("Hashed")
            .field("value", &self.as_str())
            .field("passthrough", &self.passthrough)
            .finish()
    }
}

/// Normalizes `raw` for `field` into `scratch` (cleared first) and returns it; `Ok(None)`
/// when nothing is left (empty values are dropped, never hashed).
pub fn normalize<'s>(
    field: UserField,
    raw: &str,
    scratch: &'s mut String,
) -> Result<Option<&'s str>, NormalizeError> {
    scratch.clear();
    let value = trim(raw);
    check_len(field, value)?;
    normalize_trimmed(field, value, scratch)?;
    Ok(if scratch.is_empty() {
        None
    } else {
        Some(scratch.as_str())
    })
}

/// Hashes one value: an existing SHA-256 digest (with or without appendix) passes through
/// with the digest lowercased; anything else is normalized, then hashed. `Ok(None)` for an
/// empty value. `scratch` holds the normalized value afterwards (it is the caller's buffer).
pub fn hash(
    field: UserField,
    raw: &str,
    scratch: &mut String,
) -> Result<Option<Hashed>, NormalizeError> {
    scratch.clear();
    let value = trim(raw);
    check_len(field, value)?;
    if let Some(hashed) = parse_prehashed(value) {
        return Ok(Some(hashed));
    }
    normalize_trimmed(field, value, scratch)?;
    Ok((!scratch.is_empty()).then(|| Hashed::of_normalized(scratch)))
}

/// Whether `s` is what CAPI accepts in a hashed field: 64 lowercase hex digits, optionally
/// followed by `.` and a param-builder appendix.
pub fn is_hashed_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 64
        && b[..64]
            .iter()
            .all(|&c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        && is_appendix_suffix(&b[64..])
}

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> [u8; 64] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.as_ref()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

/// Trims what JavaScript's `trim` trims (including U+FEFF) plus control characters, so that
/// capig and the pixel agree on where a value starts and ends.
fn trim(raw: &str) -> &str {
    raw.trim_matches(|c: char| c.is_whitespace() || c.is_control() || c == '\u{FEFF}')
}

fn check_len(field: UserField, value: &str) -> Result<(), NormalizeError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(NormalizeError::TooLong {
            field,
            len: value.len(),
        });
    }
    Ok(())
}

/// Writes the normalized `value` (trimmed, not empty-checked) into the empty `out`. On
/// error `out` is cleared, so no half-normalized personal data is left in the buffer.
fn normalize_trimmed(
    field: UserField,
    value: &str,
    out: &mut String,
) -> Result<(), NormalizeError> {
    if value.is_empty() {
        return Ok(());
    }
    let result = match field {
        UserField::Em => email(value, out),
        UserField::Ph => phone(value, out),
        UserField::Fn | UserField::Ln | UserField::Ct => {
            push_letters(value, out);
            Ok(())
        }
        UserField::St => {
            state(value, out);
            Ok(())
        }
        UserField::Zp => zip(value, out),
        UserField::Country => country(value, out),
        UserField::Db => date(value, out),
        UserField::Ge => gender(value, out),
        UserField::ExternalId => {
            push_lower(value, out);
            Ok(())
        }
    };
    if result.is_err() {
        out.clear();
    }
    result
}

fn invalid(field: UserField, why: &'static str) -> Result<(), NormalizeError> {
    Err(NormalizeError::Invalid { field, why })
}

/// `<64 hex digits>[.<appendix>]` in any case → the digest lowercased, the appendix as is.
fn parse_prehashed(value: &str) -> Option<Hashed> {
    let b = value.as_bytes();
    if b.len() < 64 || !b[..64].iter().all(u8::is_ascii_hexdigit) || !is_appendix_suffix(&b[64..]) {
        return None;
    }
    let mut buf = [0; HASHED_CAP];
    buf[..b.len()].copy_from_slice(b);
    buf[..64].make_ascii_lowercase();
    Some(Hashed {
        buf,
        // At most HASHED_CAP (81) bytes, checked by `is_appendix_suffix`.
        len: b.len() as u8,
        passthrough: true,
    })
}

/// Empty, or `.` followed by 1..=16 base64url characters.
fn is_appendix_suffix(rest: &[u8]) -> bool {
    match rest.split_first() {
        None => true,
        Some((b'.', appendix)) => {
            (1..=MAX_APPENDIX_LEN).contains(&appendix.len())
                && appendix
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        }
        Some(_) => false,
    }
}

/// Unicode lowercase of the whole value.
fn push_lower(value: &str, out: &mut String) {
    if value.is_ascii() {
        out.push_str(value);
        out.make_ascii_lowercase();
    } else {
        out.extend(value.chars().flat_map(char::to_lowercase));
    }
}

/// Characters that render as nothing but change the bytes: soft hyphen, zero-width and
/// bidirectional controls, word joiners, BOM. Pasted addresses carry them invisibly.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn email(value: &str, out: &mut String) -> Result<(), NormalizeError> {
    const WHY_CHARS: &str =
        "an email address cannot contain spaces, control or invisible characters: send the address alone";
    const WHY_SHAPE: &str =
        "not an email address: expected one `@` with a name before it and a domain with a dot after it";
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
    {
        return invalid(UserField::Em, WHY_CHARS);
    }
    let Some((local, domain)) = value.split_once('@') else {
        return invalid(UserField::Em, WHY_SHAPE);
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.split('.').any(str::is_empty)
    {
        return invalid(UserField::Em, WHY_SHAPE);
    }
    push_lower(value, out);
    Ok(())
}

/// The value of a decimal digit from the scripts phone keyboards commonly produce.
fn decimal_digit(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    // Zeros of: Arabic-Indic, Extended Arabic-Indic (Persian, Urdu), Devanagari, Bengali,
    // full-width forms (CJK input methods).
    const ZEROS: [u32; 5] = [0x0660, 0x06F0, 0x0966, 0x09E6, 0xFF10];
    let c = u32::from(c);
    ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&c))
        .map(|&zero| (c - zero) as u8)
}

fn phone(value: &str, out: &mut String) -> Result<(), NormalizeError> {
    const WHY_LEN: &str =
        "a phone number needs 7 to 15 digits including the country code: send it in international form, e.g. +16505551212";
    if is_north_american_layout(value) {
        out.push('1');
    }
    let mut any_digit = false;
    let mut leading = true;
    let mut skip_until = 0;
    for (i, c) in value.char_indices() {
        if i < skip_until {
            continue;
        }
        // `+44 (0)20 …`: the `(0)` is only dialled from inside the country.
        if c == '(' && !leading && value[i..].starts_with("(0)") {
            skip_until = i + 3;
            continue;
        }
        let Some(digit) = decimal_digit(c) else {
            continue;
        };
        any_digit = true;
        if leading && digit == 0 {
            continue;
        }
        leading = false;
        out.push(char::from(b'0' + digit));
    }
    if any_digit && !(7..=15).contains(&out.len()) {
        return invalid(UserField::Ph, WHY_LEN);
    }
    Ok(())
}

/// `(NXX)NXX-XXXX`, `(NXX) NXX-XXXX`, `NXX-NXX-XXXX`, `NXX.NXX.XXXX`, `NXX NXX XXXX`
/// (and `(NXX) NXX XXXX` / `(NXX) NXX.XXXX`), N = 2..9: the North American layout, which
/// no other numbering plan writes this way.
fn is_north_american_layout(value: &str) -> bool {
    fn n(b: u8) -> bool {
        matches!(b, b'2'..=b'9')
    }
    fn d(b: u8) -> bool {
        b.is_ascii_digit()
    }
    fn sep(b: u8) -> bool {
        matches!(b, b'-' | b'.' | b' ')
    }
    // `NXX<s>XXXX`, where `s` is the given separator or any of `-`, `.`, space.
    fn local(r: &[u8], s: Option<u8>) -> bool {
        r.len() == 8
            && n(r[0])
            && d(r[1])
            && d(r[2])
            && s.map_or(sep(r[3]), |s| r[3] == s)
            && r[4..].iter().all(|&b| d(b))
    }
    let b = value.as_bytes();
    if let Some(r) = b.strip_prefix(b"(") {
        if r.len() < 4 || !n(r[0]) || !d(r[1]) || !d(r[2]) || r[3] != b')' {
            return false;
        }
        let r = &r[4..];
        local(r.strip_prefix(b" ").unwrap_or(r), None)
    } else {
        b.len() == 12 && n(b[0]) && d(b[1]) && d(b[2]) && sep(b[3]) && local(&b[4..], Some(b[3]))
    }
}

/// Letters (and the marks on them), lowercased; everything else dropped. NFC first, so that
/// a decomposed `e` + U+0301 and a precomposed `é` hash the same.
fn push_letters(value: &str, out: &mut String) {
    if value.is_ascii() {
        out.extend(
            value
                .bytes()
                .filter(u8::is_ascii_alphabetic)
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
    } else if is_nfc_quick(value.chars()) == IsNormalized::Yes {
        push_letters_from(value.chars(), out);
    } else {
        push_letters_from(value.nfc(), out);
    }
}

fn push_letters_from(chars: impl Iterator<Item = char>, out: &mut String) {
    // A mark is kept only on a kept letter: a lone or orphaned mark is noise, and would
    // otherwise make a "name" of nothing but accents.
    let mut on_letter = false;
    for c in chars {
        let keep = if is_combining_mark(c) {
            on_letter
        } else {
            c.is_alphabetic()
        };
        on_letter = keep;
        if keep {
            out.extend(c.to_lowercase());
        }
    }
}

/// A lookup key built on the stack: see [`fold_key`].
struct Key {
    buf: [u8; KEY_CAP],
    len: usize,
}

impl Key {
    fn new() -> Key {
        Key {
            buf: [0; KEY_CAP],
            len: 0,
        }
    }

    fn push(&mut self, c: char) -> bool {
        let end = self.len + c.len_utf8();
        if end > KEY_CAP {
            return false;
        }
        c.encode_utf8(&mut self.buf[self.len..end]);
        self.len = end;
        true
    }

    fn push_str(&mut self, s: &str) -> bool {
        s.chars().all(|c| self.push(c))
    }

    fn as_str(&self) -> &str {
        // Only whole chars are ever written, so this cannot fail.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// The table key for `value`: canonical decomposition with the marks dropped (so accents
/// don't matter), lowercase, letters only (so case, spaces and punctuation don't matter),
/// `&` spelled `and`.
/// `None` when the key would not fit, which means it is in no table.
fn fold_key(value: &str) -> Option<Key> {
    let mut key = Key::new();
    let mut fits = true;
    for c in value.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphabetic() {
                fits = key.push(c.to_ascii_lowercase());
            } else if c == '&' {
                // `Bosnia & Herzegovina`, `Trinidad & Tobago`: the tables spell it out.
                fits = key.push_str("and");
            }
        } else {
            decompose_canonical(c, |d| {
                if !is_combining_mark(d) {
                    for l in d.to_lowercase().filter(|l| l.is_alphabetic()) {
                        fits &= key.push(l);
                    }
                }
            });
        }
        if !fits {
            return None;
        }
    }
    Some(key)
}

fn lookup(table: &'static [(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table
        .binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .map(|i| table[i].1)
}

fn state(value: &str, out: &mut String) {
    push_letters(value, out);
    if out.len() <= 2 {
        return;
    }
    if let Some(code) = fold_key(value).and_then(|key| lookup(tables::STATES, key.as_str())) {
        out.clear();
        out.push_str(code);
    }
}

fn zip(value: &str, out: &mut String) -> Result<(), NormalizeError> {
    if let Some(zip5) = us_zip5(value) {
        out.push_str(zip5);
        return Ok(());
    }
    for c in value.chars().filter(|c| c.is_alphanumeric()) {
        out.extend(c.to_lowercase());
    }
    if out.chars().nth(1).is_none() && !out.is_empty() {
        return invalid(
            UserField::Zp,
            "a postal code needs at least 2 letters or digits: send the full code",
        );
    }
    Ok(())
}

/// The 5-digit ZIP of `NNNNN`, `NNNNN-NNNN`, `NNNNN NNNN` or `NNNNNNNNN`.
fn us_zip5(value: &str) -> Option<&str> {
    let b = value.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    let plus4 = match b.len() {
        5 => true,
        9 => digits(&b[5..]),
        10 => matches!(b[5], b'-' | b' ') && digits(&b[6..]),
        _ => false,
    };
    (plus4 && digits(&b[..5])).then(|| &value[..5])
}

fn country(value: &str, out: &mut String) -> Result<(), NormalizeError> {
    const WHY: &str =
        "not a country: send an ISO 3166-1 alpha-2 code (e.g. `us`, `gb`), an alpha-3 code or the English name";
    let Some(key) = fold_key(value) else {
        return invalid(UserField::Country, WHY);
    };
    let key = key.as_str();
    let code = lookup(tables::COUNTRIES, key)
        .or_else(|| {
            key.strip_prefix("the")
                .and_then(|rest| lookup(tables::COUNTRIES, rest))
        })
        .or_else(|| {
            let rest = key.strip_prefix("st")?;
            let mut saint = Key::new();
            (saint.push_str("saint") && saint.push_str(rest))
                .then(|| lookup(tables::COUNTRIES, saint.as_str()))
                .flatten()
        });
    match code {
        Some(code) => {
            out.push_str(code);
            Ok(())
        }
        None => invalid(UserField::Country, WHY),
    }
}

fn gender(value: &str, out: &mut String) -> Result<(), NormalizeError> {
    let code = match value.as_bytes() {
        [b'f' | b'F'] => Some("f"),
        [b'm' | b'M'] => Some("m"),
        _ => fold_key(value).and_then(|key| lookup(tables::GENDERS, key.as_str())),
    };
    match code {
        Some(code) => {
            out.push_str(code);
            Ok(())
        }
        None => invalid(
            UserField::Ge,
            "not a gender Meta accepts: send `f` or `m` (or a word such as `female` / `male`)",
        ),
    }
}

/// A piece of a date: a run of digits or a month name.
#[derive(Clone, Copy)]
enum Part {
    Num { value: u32, digits: usize },
    Month(u32),
}

fn date(value: &str, out: &mut String) -> Result<(), NormalizeError> {
    let Some((year, month, day)) = parse_date(value) else {
        return invalid(
            UserField::Db,
            "not a date capig can read: send YYYY-MM-DD or YYYYMMDD",
        );
    };
    if !(1900..=2100).contains(&year) {
        return invalid(UserField::Db, "the year must be between 1900 and 2100");
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return invalid(
            UserField::Db,
            "not a real calendar date: check the day and month (and their order)",
        );
    }
    for (n, width) in [(year, 1000), (month, 10), (day, 10)] {
        let mut unit = width;
        while unit > 0 {
            out.push(char::from(b'0' + (n / unit % 10) as u8));
            unit /= 10;
        }
    }
    Ok(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn month_number(name: &[u8]) -> Option<u32> {
    Some(match name {
        b"jan" | b"january" => 1,
        b"feb" | b"february" => 2,
        b"mar" | b"march" => 3,
        b"apr" | b"april" => 4,
        b"may" => 5,
        b"jun" | b"june" => 6,
        b"jul" | b"july" => 7,
        b"aug" | b"august" => 8,
        b"sep" | b"sept" | b"september" => 9,
        b"oct" | b"october" => 10,
        b"nov" | b"november" => 11,
        b"dec" | b"december" => 12,
        _ => return None,
    })
}

/// Splits a date into at most three parts and the separators between them, then reads
/// them by the layouts in the module header. Returns (year, month, day) unchecked.
fn parse_date(value: &str) -> Option<(u32, u32, u32)> {
    let b = value.as_bytes();
    let mut parts = [Part::Num {
        value: 0,
        digits: 0,
    }; 3];
    // The separator between parts i and i+1: the first of `-`, `/`, `.` seen, else space.
    let mut seps = [0u8; 2];
    let mut count = 0;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b'0'..=b'9' => {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i - start > 8 || count == 3 {
                    return None;
                }
                let value = b[start..i]
                    .iter()
                    .fold(0, |n, &d| n * 10 + u32::from(d - b'0'));
                parts[count] = Part::Num {
                    value,
                    digits: i - start,
                };
                count += 1;
            }
            c if c.is_ascii_alphabetic() => {
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let mut word = [0u8; 9];
                let len = i - start;
                if len > word.len() {
                    return None;
                }
                word[..len].copy_from_slice(&b[start..i]);
                word.make_ascii_lowercase();
                let word = &word[..len];
                let after_number = start > 0 && b[start - 1].is_ascii_digit();
                if after_number && matches!(word, b"st" | b"nd" | b"rd" | b"th") {
                    continue;
                }
                if count == 3 {
                    return None;
                }
                parts[count] = Part::Month(month_number(word)?);
                count += 1;
            }
            c @ (b'-' | b'/' | b'.' | b',' | b' ') => {
                if (1..=2).contains(&count) && (seps[count - 1] == 0 || seps[count - 1] == b' ') {
                    seps[count - 1] = if c == b',' { b' ' } else { c };
                }
                i += 1;
            }
            _ => return None,
        }
    }
    let num = |p: Part| match p {
        Part::Num { value, digits } => Some((value, digits)),
        Part::Month(_) => None,
    };
    match count {
        1 => {
            let (n, 8) = num(parts[0])? else {
                return None;
            };
            Some((n / 10000, n / 100 % 100, n % 100))
        }
        3 => {
            let months = parts.iter().filter(|p| matches!(p, Part::Month(_))).count();
            match months {
                0 => numeric_date(num(parts[0])?, num(parts[1])?, num(parts[2])?, seps),
                1 => named_date(parts),
                _ => None,
            }
        }
        _ => None,
    }
}

fn numeric_date(
    (a, a_len): (u32, usize),
    (b, b_len): (u32, usize),
    (c, c_len): (u32, usize),
    seps: [u8; 2],
) -> Option<(u32, u32, u32)> {
    if seps[0] != seps[1] || !(1..=2).contains(&b_len) {
        return None;
    }
    if a_len == 4 && (1..=2).contains(&c_len) {
        return Some((a, b, c));
    }
    if c_len != 4 || !(1..=2).contains(&a_len) {
        return None;
    }
    // Dots mean day first (Europe); slashes and dashes month first (US, Meta's example)
    // unless the first number cannot be a month.
    if seps[0] == b'.' || a > 12 {
        Some((c, b, a))
    } else {
        Some((c, a, b))
    }
}

fn named_date(parts: [Part; 3]) -> Option<(u32, u32, u32)> {
    let (mut year, mut month, mut day) = (None, None, None);
    for part in parts {
        match part {
            Part::Month(m) => month = Some(m),
            Part::Num { value, digits: 4 } if year.is_none() => year = Some(value),
            Part::Num {
                value,
                digits: 1..=2,
            } if day.is_none() => day = Some(value),
            Part::Num { .. } => return None,
        }
    }
    Some((year?, month?, day?))
}

#[cfg(test)]
mod tests;
