//! The configuration exactly as written: serde structs, one per TOML table.
//!
//! Every field is optional here; defaults and "required" live in `validate`, which turns
//! these into the public types, so that a missing key is reported with the others instead
//! of stopping serde. Values that need a precise message (addresses, names, sizes, enums)
//! stay strings until `validate` parses them. `deny_unknown_fields` on every struct; the
//! list of a struct's keys for the unknown-key report is read from serde itself
//! ([`fields_of`]), so it cannot drift from the struct.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The keys allowed at the top level. `trusted_proxies` is a plain array; the others are
/// tables or arrays of tables deserialized one by one (see `document`).
pub(crate) const TOP_LEVEL: &[&str] = &[
    "trusted_proxies",
    "runtime",
    "control",
    "listeners",
    "domains",
    "pixels",
    "upstream",
    "spool",
    "limits",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRuntime {
    pub cores: Option<usize>,
    pub log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawControl {
    pub socket: Option<String>,
    pub socket_mode: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawListener {
    pub addr: Option<String>,
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawDomain {
    pub name: Option<String>,
    pub origins: Option<Vec<String>>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawPixel {
    pub id: Option<IntOrText>,
    pub access_token_file: Option<String>,
    pub access_keys_file: Option<String>,
    pub enabled: Option<bool>,
    pub domains: Option<Vec<String>>,
    pub blocked_events: Option<Vec<String>>,
    pub test_event_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawUpstream {
    pub graph_url: Option<String>,
    pub api_version: Option<String>,
    pub batch_size: Option<usize>,
    pub batch_bytes: Option<IntOrText>,
    pub linger_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub concurrency: Option<usize>,
    pub retry_initial_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawSpool {
    pub dir: Option<String>,
    pub fsync: Option<String>,
    pub fsync_interval_ms: Option<u64>,
    pub max_bytes: Option<IntOrText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawLimits {
    pub body_bytes: Option<IntOrText>,
    pub header_bytes: Option<IntOrText>,
    pub header_count: Option<usize>,
    pub ws_frame_bytes: Option<IntOrText>,
    pub ws_message_bytes: Option<IntOrText>,
    pub events_per_request: Option<usize>,
    pub connections_per_core: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub ws_idle_timeout_ms: Option<u64>,
    pub requests_per_second_per_ip: Option<u32>,
    pub requests_per_second_per_connection: Option<u32>,
    pub dedup_window_secs: Option<u64>,
    pub dedup_capacity: Option<usize>,
}

/// A value written either as a TOML integer or as a string: pixel ids (`123` or `"123"`)
/// and sizes (`1048576` or `"1 MiB"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntOrText {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for IntOrText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IntOrText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrText, E> {
                Ok(IntOrText::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrText, E> {
                i64::try_from(v)
                    .map(IntOrText::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrText, E> {
                Ok(IntOrText::Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The field names serde's derive gives a struct: it passes them to
/// `deserialize_struct`, where a deserializer that only listens catches them.
pub(crate) fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The listener always ends the deserialization with an error: it has no data.
    let _ = T::deserialize(FieldListener {
        fields: &mut fields,
    });
    fields
}

struct FieldListener<'f> {
    fields: &'f mut &'static [&'static str],
}

#[derive(Debug)]
struct Listened;

impl fmt::Display for Listened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field list read")
    }
}

impl std::error::Error for Listened {}

impl de::Error for Listened {
    fn custom<T: fmt::Display>(_: T) -> Listened {
        Listened
    }
}

impl<'de> Deserializer<'de> for FieldListener<'_> {
    type Error = Listened;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Listened> {
        *self.fields = fields;
        Err(Listened)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Listened> {
        Err(Listened)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
