//! The browser event object (docs/DESIGN.md, "Browser event object") as borrowed views
//! into the parsed tape.
//!
//! Layout, following CAPI's server event: `pixel_id`, `event_name`, `event_id`,
//! `event_time` (Unix seconds), `event_source_url`, `referrer_url`, `action_source`
//! (default `website`), `custom_data{…}`, `user_data{…}` (raw or hashed advanced-matching
//! values, plus `fbp`/`fbc`), `consent`, `opt_out`, `data_processing_options`,
//! `data_processing_options_country`, `data_processing_options_state`. The same layout is
//! what backends send to the server-to-gateway API, where the pixel comes from the URL
//! and a few more CAPI keys (`app_data`, `original_event_data`, …) may appear: those are
//! forwarded untouched.
//!
//! [`BrowserEvent::from_val`] makes one pass over the object's entries: each known key is
//! stored once (a second occurrence is a [`Reason::DuplicateKey`] rejection), unknown keys
//! are counted and left out. No field is copied: everything borrows the request buffer.

use super::json::Val;
use super::reject::{Reason, Rejection};

/// CAPI server-event keys that capig forwards as they came (server API senders use them).
pub const PASSTHROUGH_KEYS: &[&str] = &[
    "app_data",
    "original_event_data",
    "customer_segmentation",
    "messaging_channel",
    "advanced_measurement_table",
    "advertiser_tracking_enabled",
    "attribution_data",
];

/// One event's fields, as found; type checks beyond "is it there" happen in the transform.
#[derive(Clone, Copy, Default)]
pub struct BrowserEvent<'t, 'a> {
    pub pixel_id: Option<Val<'t, 'a>>,
    pub event_name: Option<Val<'t, 'a>>,
    pub event_id: Option<Val<'t, 'a>>,
    pub event_time: Option<Val<'t, 'a>>,
    pub event_source_url: Option<Val<'t, 'a>>,
    pub referrer_url: Option<Val<'t, 'a>>,
    pub action_source: Option<Val<'t, 'a>>,
    pub custom_data: Option<Val<'t, 'a>>,
    pub user_data: Option<Val<'t, 'a>>,
    pub consent: Option<Val<'t, 'a>>,
    pub opt_out: Option<Val<'t, 'a>>,
    pub data_processing_options: Option<Val<'t, 'a>>,
    pub data_processing_options_country: Option<Val<'t, 'a>>,
    pub data_processing_options_state: Option<Val<'t, 'a>>,
    /// Up to this many passthrough keys (there are only 7 kinds).
    pub passthrough: [Option<(&'a str, Val<'t, 'a>)>; 7],
    /// Keys that are neither known nor passthrough (counted, not forwarded).
    pub unknown_keys: u32,
}

impl<'t, 'a> BrowserEvent<'t, 'a> {
    /// Collects the fields of the event object `v`.
    pub fn from_val(v: Val<'t, 'a>) -> Result<Self, Rejection> {
        let entries = v.entries().ok_or(Rejection::new(
            Reason::NotAnObject,
            "",
            "each event must be a JSON object like {\"event_name\":\"PageView\",…}",
        ))?;
        let mut e = BrowserEvent::default();
        let mut passthrough = 0;
        let mut seen = 0u32;
        for (key, val) in entries {
            let Some(index) = KEYS.iter().position(|k| *k == key) else {
                if let Some(&known) = PASSTHROUGH_KEYS.iter().find(|k| **k == key) {
                    if e.passthrough[..passthrough].iter().flatten().any(|(k, _)| *k == known) {
                        return Err(duplicate(known));
                    }
                    e.passthrough[passthrough] = Some((known, val));
                    passthrough += 1;
                } else {
                    e.unknown_keys += 1;
                }
                continue;
            };
            if seen & (1 << index) != 0 {
                return Err(duplicate(KEYS[index]));
            }
            seen |= 1 << index;
            // `null` means "not given", as it does for the pixel's optional parameters.
            if val.is_null() {
                continue;
            }
            let slot = match index {
                0 => &mut e.pixel_id,
                1 => &mut e.event_name,
                2 => &mut e.event_id,
                3 => &mut e.event_time,
                4 => &mut e.event_source_url,
                5 => &mut e.referrer_url,
                6 => &mut e.action_source,
                7 => &mut e.custom_data,
                8 => &mut e.user_data,
                9 => &mut e.consent,
                10 => &mut e.opt_out,
                11 => &mut e.data_processing_options,
                12 => &mut e.data_processing_options_country,
                _ => &mut e.data_processing_options_state,
            };
            *slot = Some(val);
        }
        Ok(e)
    }
}

fn duplicate(key: &'static str) -> Rejection {
    Rejection::new(Reason::DuplicateKey, key, "appears twice in the event; send each key once")
}

/// The known keys, in the order of the slots in [`BrowserEvent::from_val`].
const KEYS: [&str; 14] = [
    "pixel_id",
    "event_name",
    "event_id",
    "event_time",
    "event_source_url",
    "referrer_url",
    "action_source",
    "custom_data",
    "user_data",
    "consent",
    "opt_out",
    "data_processing_options",
    "data_processing_options_country",
    "data_processing_options_state",
];
