//! `custom_data`: checked against Meta's standard parameters and written into the CAPI
//! event (reference §2.4).
//!
//! Rules: `value`, `predicted_ltv`, `net_revenue` numeric (numeric strings such as
//! `"142.52"` are accepted and written as numbers); `currency` an ISO 4217 code,
//! uppercased; `Purchase` needs both `value` and `currency` (Meta refuses it otherwise,
//! and one refused event fails its whole batch); `content_ids` strings (numbers become
//! strings); `contents` objects with an `id` and, when present, integer `quantity`, numeric
//! `item_price`, a known `delivery_category` and string `title`/`description`/`brand`/
//! `category`; `num_items` an integer. Any other key is the advertiser's own property and
//! is forwarded exactly as it came. Duplicate keys are refused: Meta's parser would keep
//! one of them, and which one is not documented.

use super::json::{comma, write_number, write_str, write_value, Number, Val};
use super::reject::{Reason, Rejection};

/// At most this many keys in `custom_data` (hostile-input bound; real events have < 20).
pub const MAX_KEYS: usize = 256;
/// At most this many `contents` items or `content_ids`.
pub const MAX_ITEMS: usize = 1000;

const fn bad(field: &'static str, detail: &'static str) -> Rejection {
    Rejection::new(Reason::InvalidCustomData, field, detail)
}

/// Writes `custom_data` (the object `v`) as JSON into `out`.
pub fn write(out: &mut Vec<u8>, v: Val<'_, '_>, event_name: &str) -> Result<(), Rejection> {
    let entries = v.entries().ok_or(bad("custom_data", "must be an object"))?;
    if v.len() > MAX_KEYS {
        return Err(bad("custom_data", "has too many keys; send at most 256").with_number(v.len() as u64));
    }
    let mut has_value = false;
    let mut has_currency = false;
    out.push(b'{');
    for (i, (key, val)) in entries.enumerate() {
        if v.key_repeats(i, key) {
            return Err(Rejection::new(Reason::DuplicateKey, "custom_data", "has the same key twice; send each key once"));
        }
        if val.is_null() {
            // The pixel sends `null` for unset optional parameters; Meta wants them absent.
            continue;
        }
        comma(out);
        write_str(out, key);
        out.push(b':');
        match key {
            "value" => {
                write_number(out, numeric(val).ok_or(bad("custom_data.value", "must be a number, like 142.52"))?);
                has_value = true;
            }
            "predicted_ltv" | "net_revenue" => {
                write_number(out, numeric(val).ok_or(bad("custom_data", "predicted_ltv and net_revenue must be numbers"))?)
            }
            "currency" => {
                let code = val.as_str().and_then(currency).ok_or(bad(
                    "custom_data.currency",
                    "must be an ISO 4217 currency code, like USD or EUR",
                ))?;
                write_str(out, code.as_str());
                has_currency = true;
            }
            "num_items" => {
                let n = val.as_number().and_then(Number::as_u64);
                write_number(out, Number::U(n.ok_or(bad("custom_data.num_items", "must be a whole number"))?));
            }
            "content_ids" => write_content_ids(out, val)?,
            "contents" => write_contents(out, val)?,
            "delivery_category" => write_delivery_category(out, val, "custom_data.delivery_category")?,
            "order_id" | "content_name" | "content_category" | "content_type" | "search_string" | "status" => {
                write_id(out, val).ok_or(bad("custom_data", "order_id, content_name, content_category, content_type, search_string and status must be strings"))?
            }
            _ => write_value(out, val),
        }
    }
    out.push(b'}');
    if event_name == "Purchase" && !(has_value && has_currency) {
        return Err(bad("custom_data", "a Purchase needs value and currency; Meta refuses it otherwise"));
    }
    Ok(())
}

/// A number, or a string holding a decimal number (`"142.52"`, `"-3"`, `"1e3"`).
fn numeric(v: Val<'_, '_>) -> Option<Number> {
    if let Some(n) = v.as_number() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let plain = !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    let f: f64 = if plain { s.parse().ok()? } else { return None };
    f.is_finite().then_some(Number::F(f))
}

/// A string, or a number written as a string (ids are often numeric in page code).
fn write_id(out: &mut Vec<u8>, v: Val<'_, '_>) -> Option<()> {
    if let Some(s) = v.as_str() {
        write_str(out, s);
        return Some(());
    }
    let n = v.as_number()?;
    out.push(b'"');
    write_number(out, n);
    out.push(b'"');
    Some(())
}

fn write_content_ids(out: &mut Vec<u8>, v: Val<'_, '_>) -> Result<(), Rejection> {
    const BAD: Rejection = bad("custom_data.content_ids", "must be an array of strings, like [\"SKU-1\"]");
    let items = v.elements().ok_or(BAD)?;
    if v.len() > MAX_ITEMS {
        return Err(BAD.with_number(v.len() as u64));
    }
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_id(out, item).ok_or(BAD)?;
    }
    out.push(b']');
    Ok(())
}

fn write_contents(out: &mut Vec<u8>, v: Val<'_, '_>) -> Result<(), Rejection> {
    const SHAPE: Rejection = bad(
        "custom_data.contents",
        "must be an array of objects like {\"id\":\"SKU-1\",\"quantity\":1,\"item_price\":9.5}",
    );
    let items = v.elements().ok_or(SHAPE)?;
    if v.len() > MAX_ITEMS {
        return Err(SHAPE.with_number(v.len() as u64));
    }
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let fields = item.entries().ok_or(SHAPE)?;
        let mut has_id = false;
        out.push(b'{');
        for (j, (key, val)) in fields.enumerate() {
            if item.key_repeats(j, key) {
                return Err(Rejection::new(Reason::DuplicateKey, "custom_data.contents", "an item has the same key twice"));
            }
            if j > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            match key {
                "id" => {
                    write_id(out, val).ok_or(bad("custom_data.contents", "each item's id must be a string"))?;
                    has_id = true;
                }
                "quantity" => {
                    let n = val.as_number().and_then(Number::as_u64);
                    write_number(out, Number::U(n.ok_or(bad("custom_data.contents", "quantity must be a whole number"))?));
                }
                "item_price" => {
                    write_number(out, numeric(val).ok_or(bad("custom_data.contents", "item_price must be a number"))?)
                }
                "delivery_category" => write_delivery_category(out, val, "custom_data.contents")?,
                "title" | "description" | "brand" | "category" => {
                    write_str(out, val.as_str().ok_or(bad("custom_data.contents", "title, description, brand and category must be strings"))?)
                }
                _ => write_value(out, val),
            }
        }
        out.push(b'}');
        if !has_id {
            return Err(bad("custom_data.contents", "every item needs an id"));
        }
    }
    out.push(b']');
    Ok(())
}

fn write_delivery_category(out: &mut Vec<u8>, v: Val<'_, '_>, field: &'static str) -> Result<(), Rejection> {
    match v.as_str() {
        Some(s @ ("in_store" | "curbside" | "home_delivery")) => {
            write_str(out, s);
            Ok(())
        }
        _ => Err(bad(field, "delivery_category must be in_store, curbside or home_delivery")),
    }
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
