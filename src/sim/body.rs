//! Decoding a `POST /{version}/{pixel_id}/events` request into its Graph parameters:
//! sans-IO, from the query string, the `Content-Type` and the body bytes.
//!
//! Encodings accepted, as real clients send them (docs/CAPI.md, "The request"):
//! - `application/json`: `{"data":[…],"access_token":…,"test_event_code":…,…}` (Node SDK,
//!   Segment, Stape, Jitsu);
//! - `application/x-www-form-urlencoded`: each parameter a field, `data` a JSON array
//!   (Python SDK, RudderStack; their elements are often JSON-encoded strings, which the
//!   validation decodes);
//! - `multipart/form-data`: the same fields as parts (Meta's own curl example,
//!   `-F data=[…] -F access_token=…`);
//! - no or another content type: the body is sniffed (`{` → JSON, else form).
//!
//! Parameters may also come in the query string (Graph merges both; the body wins).
//! Everything must be UTF-8, and JSON is read strictly: serde_json's nesting limit and
//! number rules apply, and a duplicate key in any object is an error, because a gateway
//! that emits one is buggy and Meta's choice between the two values is unspecified.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::graph::GraphError;

/// The request-level parameters of a CAPI call (docs/CAPI.md, "The request").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CapiRequest {
    /// `data` as sent (decoded from its JSON string when it came as a form field);
    /// `None` when the request has no `data` at all.
    pub data: Option<Value>,
    pub access_token: Option<String>,
    pub test_event_code: Option<String>,
    pub partner_agent: Option<String>,
    pub namespace_id: Option<String>,
    pub upload_id: Option<String>,
    pub upload_tag: Option<String>,
    pub upload_source: Option<String>,
    pub appsecret_proof: Option<String>,
}

/// A parameter before it is given its meaning: form fields are text, JSON members are
/// values.
#[derive(Clone, Debug)]
enum Param {
    Text(String),
    Json(Value),
}

/// Decodes one request. `content_type` is the header as sent; `query` is the part of
/// the URI after `?`.
pub fn parse_request(
    content_type: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> Result<CapiRequest, GraphError> {
    let mut params: BTreeMap<String, Param> = BTreeMap::new();
    if let Some(query) = query {
        for (name, value) in parse_form(query.as_bytes())? {
            params.insert(name, Param::Text(value));
        }
    }
    let body_params = match body_kind(content_type, body)? {
        BodyKind::Empty => Vec::new(),
        BodyKind::Json => parse_json_object(body)?,
        BodyKind::Form => parse_form(body)?
            .into_iter()
            .map(|(n, v)| (n, Param::Text(v)))
            .collect(),
        BodyKind::Multipart(boundary) => parse_multipart(body, &boundary)?
            .into_iter()
            .map(|(n, v)| (n, Param::Text(v)))
            .collect(),
    };
    params.extend(body_params);

    let mut request = CapiRequest::default();
    for (name, param) in params {
        let slot = match name.as_str() {
            "data" => {
                request.data = Some(data_value(param)?);
                continue;
            }
            "access_token" => &mut request.access_token,
            "test_event_code" => &mut request.test_event_code,
            "partner_agent" => &mut request.partner_agent,
            "namespace_id" => &mut request.namespace_id,
            "upload_id" => &mut request.upload_id,
            "upload_tag" => &mut request.upload_tag,
            "upload_source" => &mut request.upload_source,
            "appsecret_proof" => &mut request.appsecret_proof,
            // Graph ignores parameters an edge does not know.
            _ => continue,
        };
        *slot = text_param(&name, param)?;
    }
    Ok(request)
}

enum BodyKind {
    Empty,
    Json,
    Form,
    Multipart(String),
}

fn body_kind(content_type: Option<&str>, body: &[u8]) -> Result<BodyKind, GraphError> {
    let media = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if media == "multipart/form-data" {
        let boundary = content_type
            .and_then(multipart_boundary)
            .ok_or_else(|| GraphError::param("multipart/form-data body without a boundary"))?;
        return Ok(BodyKind::Multipart(boundary));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(BodyKind::Empty);
    }
    if media == "application/json" || media.ends_with("+json") {
        return Ok(BodyKind::Json);
    }
    if media == "application/x-www-form-urlencoded" {
        return Ok(BodyKind::Form);
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    Ok(if first == Some(&b'{') {
        BodyKind::Json
    } else {
        BodyKind::Form
    })
}

/// `data` as a JSON value: form fields hold its JSON text; a JSON body may hold either
/// the array itself or, like a form field, its text.
fn data_value(param: Param) -> Result<Value, GraphError> {
    match param {
        Param::Json(Value::String(text)) | Param::Text(text) => parse_strict(text.as_bytes())
            .map_err(|e| GraphError::param(format_args!("param data must be a JSON array: {e}"))),
        Param::Json(value) => Ok(value),
    }
}

fn text_param(name: &str, param: Param) -> Result<Option<String>, GraphError> {
    match param {
        Param::Text(text) | Param::Json(Value::String(text)) => Ok(Some(text)),
        Param::Json(Value::Null) => Ok(None),
        Param::Json(Value::Number(n)) => Ok(Some(n.to_string())),
        Param::Json(_) => Err(GraphError::param(format_args!(
            "param {name} must be a string"
        ))),
    }
}

fn parse_json_object(body: &[u8]) -> Result<Vec<(String, Param)>, GraphError> {
    match parse_strict(body) {
        Ok(Value::Object(members)) => Ok(members
            .into_iter()
            .map(|(name, value)| (name, Param::Json(value)))
            .collect()),
        Ok(_) => Err(GraphError::param("The request body must be a JSON object")),
        Err(e) => Err(GraphError::param(format_args!(
            "Invalid JSON in the request body: {e}"
        ))),
    }
}

/// Parses JSON like `serde_json::from_slice`, refusing duplicate object keys.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<StrictValue>(bytes).map(|v| v.0)
}

/// A JSON value whose objects have unique keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrictValue, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if members.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format_args!("duplicate key {shown:?}")));
            }
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// Decodes `application/x-www-form-urlencoded` strictly: percent escapes must be
/// complete and the decoded bytes UTF-8 (a lossy decoding would hide broken clients).
fn parse_form(bytes: &[u8]) -> Result<Vec<(String, String)>, GraphError> {
    bytes
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            Ok((percent_decode(name)?, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(bytes: &[u8]) -> Result<String, GraphError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| GraphError::param("Malformed percent escape in a form field"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| GraphError::param("A form field is not valid UTF-8"))
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (1..=70).contains(&value.len()).then(|| value.to_owned())
    })
}

/// Decodes `multipart/form-data` (RFC 7578): every part with a `name` becomes a field;
/// file parts count too (`curl -F data=@events.json` is handy), their content must be
/// UTF-8 like the rest.
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, GraphError> {
    let malformed =
        |what: &str| GraphError::param(format_args!("Malformed multipart body: {what}"));
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let next_delimiter = format!("\r\n--{boundary}");
    let next_delimiter = next_delimiter.as_bytes();

    let mut rest = if body.starts_with(delimiter) {
        &body[delimiter.len()..]
    } else {
        let at = find(body, next_delimiter).ok_or_else(|| malformed("no boundary found"))?;
        &body[at + next_delimiter.len()..]
    };
    let mut fields = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
        let line_end =
            find(rest, b"\r\n").ok_or_else(|| malformed("a boundary line does not end"))?;
        if !rest[..line_end].iter().all(|&b| b == b' ' || b == b'\t') {
            return Err(malformed("unexpected bytes after a boundary"));
        }
        rest = &rest[line_end + 2..];
        let headers_end =
            find(rest, b"\r\n\r\n").ok_or_else(|| malformed("a part's headers do not end"))?;
        let headers = std::str::from_utf8(&rest[..headers_end])
            .map_err(|_| malformed("a part's headers are not UTF-8"))?;
        let content_start = headers_end + 4;
        let content_len = find(&rest[content_start..], next_delimiter)
            .ok_or_else(|| malformed("a part is not closed by the boundary"))?;
        let content = &rest[content_start..content_start + content_len];
        if let Some(name) = part_name(headers) {
            let value = String::from_utf8(content.to_vec())
                .map_err(|_| GraphError::param("A multipart field is not valid UTF-8"))?;
            fields.push((name, value));
        }
        rest = &rest[content_start + content_len + next_delimiter.len()..];
    }
}

/// The `name` of a part, from `Content-Disposition: form-data; name="…"`.
fn part_name(headers: &str) -> Option<String> {
    let disposition = headers.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    disposition.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("name") {
            return None;
        }
        let value = value.trim();
        Some(
            match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => value.to_owned(),
            },
        )
    })
}

/// First position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    (0..=haystack.len() - needle.len())
        .filter(|&i| haystack[i] == first)
        .find(|&i| haystack[i..i + needle.len()] == *needle)
}

#[cfg(test)]
mod tests;
