//! `custom_data`: Meta's standard parameters converted from the types the Meta Pixel
//! documents to the types the Conversions API expects, and written into the CAPI event
//! (docs/CAPI.md, "Custom data", for both sides: CAPI's types and those of the pixel's
//! `fbq('track', …)` reference).
//!
//! Page code fills `fbq` parameters with whatever JavaScript values it has at hand, and
//! the pixel's own reference gives several of them other types than CAPI's: `status` is a
//! Boolean there and a string in CAPI, `content_ids` "integers or strings" there and
//! strings in CAPI, `value` a number that shops often hold as the text of a price. None of
//! this is worth losing a conversion over, so capig converts every such type, drops (and
//! counts) an optional property it cannot make sense of, and refuses the whole event only
//! where Meta would refuse it.
//!
//! ## Conversion table
//!
//! | Property | Pixel's type | CAPI's type | What capig writes | When it cannot be converted |
//! |---|---|---|---|---|
//! | `value` | Integer or float (and, in practice and in Meta's examples, a numeric string) | number | a number as it came (`3.0` → `3`); a decimal string (`"142.52"`, `" 25.00 "`, `"1e3"`) → that number (`142.52`, `25`, `1000`) | dropped; a `Purchase` is refused |
//! | `currency` | String | ISO 4217 string | the code uppercased (`"eur"` → `"EUR"`) | dropped; a `Purchase` is refused |
//! | `predicted_ltv` | Integer, Float | number | as `value` | dropped |
//! | `net_revenue` | (not in the pixel's reference) | number | as `value` | dropped |
//! | `num_items` | Integer | integer | a whole number; `3.0`, `"3"` and `"3.0"` → `3` | negative, fractional, other → dropped |
//! | `content_ids` | Array of integers or strings | array of strings | numbers → their decimal text (`123` → `"123"`, `3.0` → `"3"`, `1.5` → `"1.5"`); one string or number instead of the array → an array of it | an element that is neither string nor number is dropped (each counted); no element left, or neither array nor id → dropped |
//! | `contents` | Array of objects (`id`, `quantity`) | array of objects | `id` as a `content_ids` element; `quantity` as `num_items`; `item_price` as `value`; `delivery_category` as below; `title`, `description`, `brand`, `category` as `content_name`; one object instead of the array → an array of it | an item that is not an object or has no usable `id` is dropped; a key of an item that cannot be converted is dropped (each counted); no item left → dropped |
//! | `content_name`, `content_category`, `content_type`, `search_string`, `order_id` | String | string | a string as it came; a number → its decimal text (`1042` → `"1042"`) | Boolean, array, object → dropped |
//! | `status` | Boolean | string | `true` → `"true"`, `false` → `"false"`; a string as it came; a number → its text | array, object → dropped |
//! | `delivery_category` | String: `in_store`, `curbside`, `home_delivery` | the same strings | in any letter case → lowercase | other → dropped |
//! | `custom_data` itself | Object | object | written member by member | not an object, or more than 256 keys → dropped whole; a `Purchase` is refused |
//! | any other key | anything | anything | forwarded exactly as it came | — |
//! | any key set to `null` | "not set" | absent | left out, not counted | — |
//!
//! Choices made where the references are silent:
//! - Decimal strings: ASCII digits, `.`, sign and exponent only, at most 32 bytes, spaces
//!   around ignored; `"12,50"`, `"$12"`, `"NaN"` and `"Infinity"` are not numbers (a
//!   decimal comma is ambiguous with a thousands separator, so capig does not guess).
//! - Numbers become text the way JavaScript's `String(n)` does for the numbers pages send:
//!   integers in decimal, integer-valued floats without `.0`, other floats in their
//!   shortest round-trip form.
//! - Fractional counts are not rounded: `2.5` items is a bug in the page, and any whole
//!   number capig chose would be made up.
//! - A Boolean `content_name` (or `order_id`, …) is dropped rather than written as
//!   `"true"`: it means the page passed the wrong variable, and `"true"` as a product name
//!   would only mislead catalog matching. `status` is the one property whose pixel type
//!   is Boolean.
//! - `content_type` is any string (CAPI's vertical catalogs use values besides `product`
//!   and `product_group`).
//!
//! ## Dropped, not refused
//! An optional property that cannot be converted is left out of the CAPI event and
//! counted as [`Dropped::CustomData`] with the property's label
//! (`invalid_custom_data_value`, … see [`Property::drop_label`]); the event is forwarded.
//! Drops are per-transformer counters like every other dropped field (`capig transform`
//! prints them in its summary).
//!
//! ## Refused (the whole event)
//! Only where Meta refuses the event, since one refused event fails its whole batch:
//! - a `Purchase` without a usable `value` and `currency` (missing, `null`, or not
//!   convertible), or whose `custom_data` is not an object (or has more than 256 keys);
//! - a key given twice, in `custom_data` or in one `contents` item: Meta's parser would
//!   keep one of them, and which one is not documented.
//!
//! Rejection messages and drop labels are static texts and numbers, never a value of the
//! event (which may be personal data).
//!
//! Hot path: no allocation. Everything is written straight into the batch buffer; a
//! property that turns out to be unusable is cut off again by truncating the buffer to
//! where it started; numbers are formatted into stack buffers.

use super::json::{comma, write_number, write_str, write_u64, write_value, Number, Val};
use super::reject::{Counters, Dropped, Reason, Rejection};

/// At most this many keys in `custom_data` (hostile-input bound; real events have < 20).
pub const MAX_KEYS: usize = 256;
/// At most this many `contents` items or `content_ids`.
pub const MAX_ITEMS: usize = 1000;

/// A `custom_data` property that can be dropped, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Property {
    /// `custom_data` itself (not an object, or too many keys).
    CustomData,
    Value,
    Currency,
    PredictedLtv,
    NetRevenue,
    NumItems,
    ContentIds,
    Contents,
    DeliveryCategory,
    ContentName,
    ContentCategory,
    ContentType,
    SearchString,
    OrderId,
    Status,
}

impl Property {
    /// Every property, in counter order.
    pub const ALL: [Property; 15] = [
        Property::CustomData,
        Property::Value,
        Property::Currency,
        Property::PredictedLtv,
        Property::NetRevenue,
        Property::NumItems,
        Property::ContentIds,
        Property::Contents,
        Property::DeliveryCategory,
        Property::ContentName,
        Property::ContentCategory,
        Property::ContentType,
        Property::SearchString,
        Property::OrderId,
        Property::Status,
    ];

    /// The counter label of a dropped property.
    pub const fn drop_label(self) -> &'static str {
        match self {
            Property::CustomData => "invalid_custom_data_object",
            Property::Value => "invalid_custom_data_value",
            Property::Currency => "invalid_custom_data_currency",
            Property::PredictedLtv => "invalid_custom_data_predicted_ltv",
            Property::NetRevenue => "invalid_custom_data_net_revenue",
            Property::NumItems => "invalid_custom_data_num_items",
            Property::ContentIds => "invalid_custom_data_content_ids",
            Property::Contents => "invalid_custom_data_contents",
            Property::DeliveryCategory => "invalid_custom_data_delivery_category",
            Property::ContentName => "invalid_custom_data_content_name",
            Property::ContentCategory => "invalid_custom_data_content_category",
            Property::ContentType => "invalid_custom_data_content_type",
            Property::SearchString => "invalid_custom_data_search_string",
            Property::OrderId => "invalid_custom_data_order_id",
            Property::Status => "invalid_custom_data_status",
        }
    }

    /// Position in [`Property::ALL`].
    pub fn index(self) -> usize {
        Property::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

const fn bad(field: &'static str, detail: &'static str) -> Rejection {
    Rejection::new(Reason::InvalidCustomData, field, detail)
}

/// What became of one property.
enum Outcome {
    Written,
    /// Cannot be converted: to be cut off and counted by the caller.
    Invalid,
    /// Every element was dropped (and counted): to be cut off, not counted again.
    Emptied,
}

impl From<bool> for Outcome {
    fn from(written: bool) -> Self {
        if written {
            Outcome::Written
        } else {
            Outcome::Invalid
        }
    }
}

fn drop(counters: &mut Counters, p: Property) {
    counters.drop_field(Dropped::CustomData(p));
}

/// Writes the member `,"custom_data":{…}` of the CAPI event into `out` (whose last byte
/// closes the member before it), converting the pixel's types; writes nothing when
/// `custom_data` is dropped whole. On `Err` the caller discards the event (and `out`).
pub fn write(out: &mut Vec<u8>, v: Val<'_, '_>, event_name: &str, counters: &mut Counters) -> Result<(), Rejection> {
    let purchase = event_name == "Purchase";
    let entries = match v.entries() {
        Some(entries) if v.len() <= MAX_KEYS => entries,
        Some(_) if purchase => {
            return Err(bad("custom_data", "has {n} keys; send at most 256").with_number(v.len() as u64))
        }
        None if purchase => {
            return Err(bad("custom_data", "must be an object; a Purchase needs value and currency in it"))
        }
        _ => {
            drop(counters, Property::CustomData);
            return Ok(());
        }
    };
    let mut has_value = false;
    let mut has_currency = false;
    out.extend_from_slice(b",\"custom_data\":");
    const REPEATED: Rejection = Rejection::new(Reason::DuplicateKey, "custom_data", "has the same key twice; send each key once");
    write_members(out, v, entries, REPEATED, |out, key, val, mark| {
        let (property, outcome) = match key {
            "value" => (Property::Value, write_numeric(out, val).into()),
            "predicted_ltv" => (Property::PredictedLtv, write_numeric(out, val).into()),
            "net_revenue" => (Property::NetRevenue, write_numeric(out, val).into()),
            "currency" => (Property::Currency, write_currency(out, val).into()),
            "num_items" => (Property::NumItems, write_whole(out, val).into()),
            "content_ids" => (Property::ContentIds, write_content_ids(out, val, counters)),
            "contents" => (Property::Contents, write_contents(out, val, counters)?),
            "delivery_category" => (Property::DeliveryCategory, write_delivery_category(out, val).into()),
            "content_name" => (Property::ContentName, write_text(out, val).into()),
            "content_category" => (Property::ContentCategory, write_text(out, val).into()),
            "content_type" => (Property::ContentType, write_text(out, val).into()),
            "search_string" => (Property::SearchString, write_text(out, val).into()),
            "order_id" => (Property::OrderId, write_text(out, val).into()),
            "status" => (Property::Status, write_status(out, val).into()),
            _ => {
                write_value(out, val);
                return Ok(());
            }
        };
        match outcome {
            Outcome::Written => {
                has_value |= property == Property::Value;
                has_currency |= property == Property::Currency;
            }
            Outcome::Invalid if purchase && property == Property::Value => {
                return Err(bad("custom_data.value", "must be a number, like 142.52"));
            }
            Outcome::Invalid if purchase && property == Property::Currency => {
                return Err(bad("custom_data.currency", "must be an ISO 4217 currency code, like USD or EUR"));
            }
            Outcome::Invalid => {
                out.truncate(mark);
                drop(counters, property);
            }
            Outcome::Emptied => out.truncate(mark),
        }
        Ok(())
    })?;
    if purchase && !(has_value && has_currency) {
        return Err(bad("custom_data", "a Purchase needs value and currency; Meta refuses it otherwise"));
    }
    Ok(())
}

/// A number, or a string holding a decimal number (`"142.52"`, `"-3"`, `"1e3"`).
fn numeric(v: Val<'_, '_>) -> Option<Number> {
    match v.as_number() {
        Some(n) => Some(n),
        None => decimal(v.as_str()?),
    }
}

/// The number in `s`: ASCII digits, `.`, sign and exponent only (no `NaN`, `inf`, `0x`,
/// decimal commas), surrounding spaces ignored.
fn decimal(s: &str) -> Option<Number> {
    let s = s.trim();
    let plain = !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !plain {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(Number::U(n));
    }
    let f: f64 = s.parse().ok()?;
    f.is_finite().then_some(Number::F(f))
}

/// A whole, non-negative number: an integer, an integer-valued float, or a string of one.
fn whole(v: Val<'_, '_>) -> Option<u64> {
    numeric(v)?.as_u64()
}

fn write_numeric(out: &mut Vec<u8>, v: Val<'_, '_>) -> bool {
    numeric(v).map(|n| write_number(out, n)).is_some()
}

fn write_whole(out: &mut Vec<u8>, v: Val<'_, '_>) -> bool {
    whole(v).map(|n| write_u64(out, n)).is_some()
}

fn write_currency(out: &mut Vec<u8>, v: Val<'_, '_>) -> bool {
    v.as_str().and_then(currency).map(|code| write_str(out, code.as_str())).is_some()
}

/// A string as it came, or a number as its text (ids are often numeric in page code).
fn write_text(out: &mut Vec<u8>, v: Val<'_, '_>) -> bool {
    if let Some(s) = v.as_str() {
        write_str(out, s);
        return true;
    }
    let Some(n) = v.as_number() else { return false };
    out.push(b'"');
    write_number(out, n);
    out.push(b'"');
    true
}

/// `status`: the pixel's Boolean as CAPI's string, or text as [`write_text`].
fn write_status(out: &mut Vec<u8>, v: Val<'_, '_>) -> bool {
    match v.as_bool() {
        Some(true) => out.extend_from_slice(b"\"true\""),
        Some(false) => out.extend_from_slice(b"\"false\""),
        None => return write_text(out, v),
    }
    true
}

fn write_delivery_category(out: &mut Vec<u8>, v: Val<'_, '_>) -> bool {
    let Some(s) = v.as_str() else { return false };
    match ["in_store", "curbside", "home_delivery"].into_iter().find(|c| c.eq_ignore_ascii_case(s)) {
        Some(c) => {
            write_str(out, c);
            true
        }
        None => false,
    }
}

fn write_content_ids(out: &mut Vec<u8>, v: Val<'_, '_>, counters: &mut Counters) -> Outcome {
    let Some(items) = v.elements() else {
        // One id instead of the array of them.
        out.push(b'[');
        let written = write_text(out, v);
        out.push(b']');
        return written.into();
    };
    if v.len() > MAX_ITEMS {
        return Outcome::Invalid;
    }
    out.push(b'[');
    let mut written = 0;
    for item in items {
        let mark = out.len();
        if written > 0 {
            out.push(b',');
        }
        if write_text(out, item) {
            written += 1;
        } else {
            out.truncate(mark);
            drop(counters, Property::ContentIds);
        }
    }
    out.push(b']');
    if written == 0 && !v.is_empty() {
        return Outcome::Emptied;
    }
    Outcome::Written
}

fn write_contents(out: &mut Vec<u8>, v: Val<'_, '_>, counters: &mut Counters) -> Result<Outcome, Rejection> {
    let Some(items) = v.elements() else {
        if !v.is_object() {
            return Ok(Outcome::Invalid);
        }
        // One item instead of the array of them.
        out.push(b'[');
        let written = write_item(out, v, counters)?;
        out.push(b']');
        return Ok(written.into());
    };
    if v.len() > MAX_ITEMS {
        return Ok(Outcome::Invalid);
    }
    out.push(b'[');
    let mut written = 0;
    for item in items {
        let mark = out.len();
        if written > 0 {
            out.push(b',');
        }
        if write_item(out, item, counters)? {
            written += 1;
        } else {
            out.truncate(mark);
            drop(counters, Property::Contents);
        }
    }
    out.push(b']');
    if written == 0 && !v.is_empty() {
        return Ok(Outcome::Emptied);
    }
    Ok(Outcome::Written)
}

/// Writes one `contents` item; `false` when it is not an object or has no usable `id`
/// (the caller cuts it off). Keys that cannot be converted are dropped and counted.
fn write_item(out: &mut Vec<u8>, item: Val<'_, '_>, counters: &mut Counters) -> Result<bool, Rejection> {
    let Some(fields) = item.entries() else { return Ok(false) };
    let mut has_id = false;
    const REPEATED: Rejection =
        Rejection::new(Reason::DuplicateKey, "custom_data.contents", "an item has the same key twice; send each key once");
    write_members(out, item, fields, REPEATED, |out, key, val, mark| {
        let written = match key {
            "id" => {
                has_id = write_text(out, val);
                if !has_id {
                    // A bad id costs the whole item, which the caller counts.
                    out.truncate(mark);
                    return Ok(());
                }
                true
            }
            "quantity" => write_whole(out, val),
            "item_price" => write_numeric(out, val),
            "delivery_category" => write_delivery_category(out, val),
            "title" | "description" | "brand" | "category" => write_text(out, val),
            _ => {
                write_value(out, val);
                true
            }
        };
        if !written {
            out.truncate(mark);
            drop(counters, Property::Contents);
        }
        Ok(())
    })?;
    Ok(has_id)
}

/// Writes the object `obj` (its `entries`) as `{…}`: a repeated key is `repeated`, a
/// `null` member is left out (the pixel sends `null` for unset parameters; Meta wants
/// them absent), and for every other member `,"key":` is written and `member(out, key,
/// value, mark)` writes the value — or cuts the member off at `mark`.
fn write_members<'t, 'a>(
    out: &mut Vec<u8>,
    obj: Val<'t, 'a>,
    entries: crate::event::json::Entries<'t, 'a>,
    repeated: Rejection,
    mut member: impl FnMut(&mut Vec<u8>, &'a str, Val<'t, 'a>, usize) -> Result<(), Rejection>,
) -> Result<(), Rejection> {
    out.push(b'{');
    for (i, (key, val)) in entries.enumerate() {
        if obj.key_repeats(i, key) {
            return Err(repeated);
        }
        if val.is_null() {
            continue;
        }
        let mark = out.len();
        comma(out);
        write_str(out, key);
        out.push(b':');
        member(out, key, val, mark)?;
    }
    out.push(b'}');
    Ok(())
}

/// An uppercased ISO 4217 code, without allocating.
#[derive(Clone, Copy)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

/// The ISO 4217 code for `s` (any case, surrounding spaces ignored), if it is one.
pub fn currency(s: &str) -> Option<Currency> {
    let s = s.trim().as_bytes();
    let [a, b, c] = *s else { return None };
    let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase(), c.to_ascii_uppercase()];
    ISO_4217.binary_search(&&code).ok().map(|_| Currency(code))
}

/// Active ISO 4217 codes (sorted), plus the precious-metal and SDR codes Meta's SDKs accept.
const ISO_4217: &[&[u8; 3]] = &[
    b"AED", b"AFN", b"ALL", b"AMD", b"ANG", b"AOA", b"ARS", b"AUD", b"AWG", b"AZN", b"BAM", b"BBD", b"BDT",
    b"BGN", b"BHD", b"BIF", b"BMD", b"BND", b"BOB", b"BRL", b"BSD", b"BTN", b"BWP", b"BYN", b"BZD", b"CAD",
    b"CDF", b"CHF", b"CLP", b"CNY", b"COP", b"CRC", b"CUP", b"CVE", b"CZK", b"DJF", b"DKK", b"DOP", b"DZD",
    b"EGP", b"ERN", b"ETB", b"EUR", b"FJD", b"FKP", b"GBP", b"GEL", b"GHS", b"GIP", b"GMD", b"GNF", b"GTQ",
    b"GYD", b"HKD", b"HNL", b"HTG", b"HUF", b"IDR", b"ILS", b"INR", b"IQD", b"IRR", b"ISK", b"JMD", b"JOD",
    b"JPY", b"KES", b"KGS", b"KHR", b"KMF", b"KPW", b"KRW", b"KWD", b"KYD", b"KZT", b"LAK", b"LBP", b"LKR",
    b"LRD", b"LSL", b"LYD", b"MAD", b"MDL", b"MGA", b"MKD", b"MMK", b"MNT", b"MOP", b"MRU", b"MUR", b"MVR",
    b"MWK", b"MXN", b"MYR", b"MZN", b"NAD", b"NGN", b"NIO", b"NOK", b"NPR", b"NZD", b"OMR", b"PAB", b"PEN",
    b"PGK", b"PHP", b"PKR", b"PLN", b"PYG", b"QAR", b"RON", b"RSD", b"RUB", b"RWF", b"SAR", b"SBD", b"SCR",
    b"SDG", b"SEK", b"SGD", b"SHP", b"SLE", b"SOS", b"SRD", b"SSP", b"STN", b"SVC", b"SYP", b"SZL", b"THB",
    b"TJS", b"TMT", b"TND", b"TOP", b"TRY", b"TTD", b"TWD", b"TZS", b"UAH", b"UGX", b"USD", b"UYU", b"UZS",
    b"VES", b"VND", b"VUV", b"WST", b"XAF", b"XAG", b"XAU", b"XCD", b"XCG", b"XDR", b"XOF", b"XPF", b"YER",
    b"ZAR", b"ZMW", b"ZWG",
];

#[cfg(test)]
mod tests;
