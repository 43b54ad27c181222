//! JSON in and out without allocation: walking a simd-json tape, and writing JSON text.
//!
//! Input side: simd-json parses a request body *in place* into a [`Tape`]: a flat list of
//! [`Node`]s whose strings borrow the (unescaped in place) input buffer. A JSON value is a
//! slice of that tape starting at its header node; [`Val`] wraps such a slice and
//! [`Val::entries`] walks an object's key/value pairs in document order (so duplicate keys
//! are visible, unlike a map). [`Parser`] keeps simd-json's scratch buffers and the tape's
//! allocation from one body to the next, so steady-state parsing allocates nothing.
//!
//! Output side: [`write_str`] and friends append JSON text to a `Vec<u8>` (the batch
//! buffer), escaping as RFC 8259 requires; [`write_value`] re-serializes a tape value
//! (custom keys of `custom_data` are forwarded as they came).

use simd_json::{Buffers, Node, StaticNode, Tape};

/// The deepest nesting a body may have. Real pixel events nest three levels
/// (`event` → `custom_data` → `contents[]` → item); anything much deeper is hostile.
pub const MAX_DEPTH: usize = 16;

/// A parse failure of a whole body, with a message that says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not valid JSON: {detail}")]
pub struct JsonError {
    /// simd-json's description, e.g. the byte offset of the problem (never input content).
    pub detail: String,
}

/// A reusable in-place JSON parser (one per core / per connection driver).
pub struct Parser {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser { buffers: Buffers::with_max_depth(4096, MAX_DEPTH), tape: Some(Tape::null().reset()) }
    }
}

impl Parser {
    /// Parses `input` in place (strings are unescaped inside it) and calls `f` with the
    /// root value. The tape's allocation is kept for the next call.
    pub fn parse<R>(
        &mut self,
        input: &mut [u8],
        f: impl for<'t, 'a> FnOnce(Val<'t, 'a>) -> R,
    ) -> Result<R, JsonError> {
        if input.iter().all(u8::is_ascii_whitespace) {
            return Err(JsonError { detail: "the body is empty".into() });
        }
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(|| Tape::null().reset()).reset();
        let parsed = simd_json::fill_tape(input, &mut self.buffers, &mut tape);
        let result = match parsed {
            Ok(()) => Ok(f(Val(&tape.0))),
            Err(e) => Err(JsonError { detail: describe(&e) }),
        };
        self.tape = Some(tape.reset());
        result
    }
}

/// What is wrong with a body, in words a sender can act on. simd-json's own names
/// (`InternalError`, `ExpectedObjectContent`) mean nothing to a sender; its byte offset
/// points at or just before the problem.
fn describe(e: &simd_json::Error) -> String {
    use simd_json::ErrorType as T;
    let at = e.index();
    match e.error() {
        T::InvalidUtf8 => "it is not valid UTF-8".into(),
        T::Eof | T::Syntax | T::UnterminatedString => "it ends in the middle of a value (a string, object or array is not closed)".into(),
        T::TrailingData => "there is more data after the JSON value".into(),
        T::InvalidNumber | T::InvalidExponent => {
            format!("near byte {at} a number is not a JSON number (no leading zeros, NaN or Infinity; an exponent needs digits)")
        }
        T::InvalidEscape | T::InvalidUnicodeEscape | T::InvalidUnicodeCodepoint => {
            r#"a string has an invalid escape (JSON allows \" \\ \/ \b \f \n \r \t and \uXXXX of a valid code point)"#.into()
        }
        T::DepthLimitExceeded => format!("it is nested deeper than {MAX_DEPTH} levels"),
        T::ExpectedObjectColon => format!("near byte {at} a ':' is missing after an object key"),
        T::ExpectedObjectContent | T::ExpectedObjectKey | T::KeyMustBeAString | T::BadKeyType | T::ExpectedMapComma => format!(
            "near byte {at} an object key or a comma is missing (keys are double-quoted strings; no comma after the last member)"
        ),
        T::ExpectedArrayContent | T::ExpectedArrayComma => {
            format!("near byte {at} an array element or a comma is missing (no comma after the last element)")
        }
        _ => format!(
            "near byte {at} there is something that is not JSON (NaN, Infinity, undefined, single-quoted strings, \
             a comma after the last element and text after the value are not JSON)"
        ),
    }
}

/// One JSON value: a tape slice starting at its header node.
#[derive(Clone, Copy)]
pub struct Val<'t, 'a>(pub &'t [Node<'a>]);

impl<'t, 'a> Val<'t, 'a> {
    fn head(&self) -> &'t Node<'a> {
        &self.0[0]
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self.head() {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is a number.
    pub fn as_number(&self) -> Option<Number> {
        match *self.head() {
            Node::Static(StaticNode::I64(n)) => Some(Number::I(n)),
            Node::Static(StaticNode::U64(n)) => Some(Number::U(n)),
            Node::Static(StaticNode::F64(n)) => Some(Number::F(n)),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self.head() {
            Node::Static(StaticNode::Bool(b)) => Some(b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.head(), Node::Static(StaticNode::Null))
    }

    pub fn is_object(&self) -> bool {
        matches!(self.head(), Node::Object { .. })
    }

    /// The key/value pairs of an object in document order; `None` if not an object.
    pub fn entries(&self) -> Option<Entries<'t, 'a>> {
        match *self.head() {
            Node::Object { len, count } => Some(Entries { rest: &self.0[1..=count], left: len }),
            _ => None,
        }
    }

    /// The elements of an array; `None` if not an array.
    pub fn elements(&self) -> Option<Elements<'t, 'a>> {
        match *self.head() {
            Node::Array { len, count } => Some(Elements { rest: &self.0[1..=count], left: len }),
            _ => None,
        }
    }

    /// Whether `key` is among the first `index` entries of this object: called with the
    /// position of an entry, it tells whether that entry repeats an earlier key.
    /// Quadratic, which is fine for the small objects it is used on (callers cap them).
    pub fn key_repeats(&self, index: usize, key: &str) -> bool {
        self.entries().into_iter().flatten().take(index).any(|(k, _)| k == key)
    }

    /// Number of elements (array) or entries (object); 0 for scalars.
    pub fn len(&self) -> usize {
        match *self.head() {
            Node::Array { len, .. } | Node::Object { len, .. } => len,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short name of the JSON type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.head() {
            Node::String(_) => "a string",
            Node::Object { .. } => "an object",
            Node::Array { .. } => "an array",
            Node::Static(StaticNode::Bool(_)) => "a boolean",
            Node::Static(StaticNode::Null) => "null",
            Node::Static(_) => "a number",
        }
    }
}

/// A JSON number as simd-json read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    I(i64),
    U(u64),
    F(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::I(n) => n as f64,
            Number::U(n) => n as f64,
            Number::F(n) => n,
        }
    }

    /// The value as a non-negative integer, if it is one exactly.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Number::I(n) => u64::try_from(n).ok(),
            Number::U(n) => Some(n),
            Number::F(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Some(f as u64),
            Number::F(_) => None,
        }
    }
}

fn node_len(node: &Node<'_>) -> usize {
    match *node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// Iterator over an object's entries.
pub struct Entries<'t, 'a> {
    rest: &'t [Node<'a>],
    left: usize,
}

impl<'t, 'a> Iterator for Entries<'t, 'a> {
    type Item = (&'a str, Val<'t, 'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (key, tail) = self.rest.split_first()?;
        let Node::String(key) = *key else { return None };
        let (value, rest) = tail.split_at(node_len(tail.first()?));
        self.rest = rest;
        Some((key, Val(value)))
    }
}

/// Iterator over an array's elements.
pub struct Elements<'t, 'a> {
    rest: &'t [Node<'a>],
    left: usize,
}

impl<'t, 'a> Iterator for Elements<'t, 'a> {
    type Item = Val<'t, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (value, rest) = self.rest.split_at(node_len(self.rest.first()?));
        self.rest = rest;
        Some(Val(value))
    }
}

/// Bytes that must be escaped inside a JSON string: controls, `"` and `\\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Appends `s` as a JSON string literal. Runs of plain bytes are copied whole.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // One capacity check for the common case (nothing to escape); the event's strings
    // are most of a CAPI event's bytes, so this loop is the writer's hot spot.
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string literal (no quotes), so that a
/// string made of pieces is written without joining them first.
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none of them needs escaping.
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if !word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if NEEDS_ESCAPE[b as usize] {
            out.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                }
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any of the eight bytes in `w` is a control character, `"` or `\` (the bytes
/// [`NEEDS_ESCAPE`] marks). Exact: the usual "has a zero byte" and "has a byte less
/// than n" word tricks never miss a byte and never report one that is not there.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
    below_space || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// Appends the `,` between members, unless `out` has just opened an object.
pub fn comma(out: &mut Vec<u8>) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
}

/// Appends `"key":` (the key must not need escaping: capig's own field names).
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends an unsigned integer.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(super::ids::format_u64(n, &mut buf));
}

/// Appends a number. Floats use the shortest round-trip form (ryu), which is valid JSON
/// for finite values (simd-json never yields NaN or infinity; callers check strings).
pub fn write_number(out: &mut Vec<u8>, n: Number) {
    match n {
        Number::U(n) => write_u64(out, n),
        Number::I(n) if n >= 0 => write_u64(out, n as u64),
        Number::I(n) => {
            out.push(b'-');
            write_u64(out, n.unsigned_abs());
        }
        Number::F(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
            if f < 0.0 {
                out.push(b'-');
            }
            write_u64(out, f.abs() as u64)
        }
        Number::F(f) if f.is_finite() => {
            let mut buf = ryu::Buffer::new();
            let text = buf.format_finite(f);
            // ryu writes `1e300` as `1e300` and `0.1` as `0.1`: both valid JSON numbers.
            out.extend_from_slice(text.as_bytes());
        }
        // Not reachable from parsed JSON; `null` keeps the output valid regardless.
        Number::F(_) => out.extend_from_slice(b"null"),
    }
}

/// Re-serializes a tape value as compact JSON.
pub fn write_value(out: &mut Vec<u8>, v: Val<'_, '_>) {
    match *v.head() {
        Node::String(s) => write_str(out, s),
        Node::Static(StaticNode::Null) => out.extend_from_slice(b"null"),
        Node::Static(StaticNode::Bool(b)) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Node::Static(_) => write_number(out, v.as_number().unwrap_or(Number::U(0))),
        Node::Object { .. } => {
            out.push(b'{');
            for (i, (k, val)) in v.entries().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, val);
            }
            out.push(b'}');
        }
        Node::Array { .. } => {
            out.push(b'[');
            for (i, val) in v.elements().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, val);
            }
            out.push(b']');
        }
    }
}

#[cfg(test)]
mod tests;
