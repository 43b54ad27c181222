//! The configuration as a TOML tree with spans: parsing, `--set` overrides, unknown keys,
//! per-table deserialization, and locating a key path for a problem.
//!
//! The tree is `toml`'s `DeTable`, which keeps the byte span of every key and value.
//! Overrides are parsed into the same tree, their spans moved into the offsets reserved
//! for their argument (see `problem::Sources`), so every later message can point at the
//! right `file:line:col` or `--set` argument without knowing where a value came from.
//!
//! Each top-level table, and each element of an array of tables, is deserialized on its
//! own: a wrong type in `[upstream]` is reported without hiding the problems of
//! `[[pixels]]`. Unknown keys are found before serde sees the table (serde stops at the
//! first one and cannot offer "did you mean"); they are reported and left out, so the rest
//! of the table is still checked. The raw structs keep `deny_unknown_fields` as the
//! guarantee that nothing slips through.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::problem::{KeyPath, Problem, Seg, Sources};
use super::raw::fields_of;

pub(crate) type Node<'a> = Spanned<DeValue<'a>>;

pub(crate) struct Document<'a> {
    tree: DeTable<'a>,
    sources: Sources<'a>,
    /// Problems so far, each with the offset it was found at (for ordering).
    found: Vec<(usize, Problem)>,
}

impl<'a> Document<'a> {
    /// Parses `text` and applies `overrides` (`key.path=value` each). A syntax error in the
    /// file ends the work here: nothing after it can be trusted.
    pub(crate) fn parse(
        text: &'a str,
        origin: String,
        overrides: &'a [String],
    ) -> Result<Document<'a>, Vec<Problem>> {
        let sources = Sources::new(origin, text);
        let (tree, errors) = DeTable::parse_recoverable(text);
        // Recovery after the first syntax error produces follow-on errors that point at
        // correct text; only the earliest one is worth reading.
        if let Some(first) = errors
            .iter()
            .min_by_key(|e| e.span().map_or(0, |s| s.start))
        {
            return Err(vec![Problem {
                location: sources.locate(first.span()),
                key: String::new(),
                message: format!("TOML syntax error: {}", first.message()),
                hint: "fix the syntax on this line (the format is described at https://toml.io)"
                    .to_string(),
            }]);
        }
        let mut doc = Document {
            tree: tree.into_inner(),
            sources,
            found: Vec::new(),
        };
        for arg in overrides {
            doc.apply_set(arg);
        }
        Ok(doc)
    }

    /// The problems found so far, in file order, then `--set` order.
    pub(crate) fn into_problems(self) -> Vec<Problem> {
        let mut found = self.found;
        found.sort_by_key(|(offset, _)| *offset);
        found.into_iter().map(|(_, p)| p).collect()
    }

    pub(crate) fn has_problems(&self) -> bool {
        !self.found.is_empty()
    }

    /// Records a problem about the setting at `path`.
    pub(crate) fn report(
        &mut self,
        path: &KeyPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let span = self.span_of(path);
        self.report_at(span, path, message, hint);
    }

    fn report_at(
        &mut self,
        span: Option<Range<usize>>,
        path: &KeyPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let problem = Problem {
            location: self.sources.locate(span.clone()),
            key: path.to_string(),
            message: message.into(),
            hint: hint.into(),
        };
        self.found.push((span.map_or(0, |s| s.start), problem));
    }

    /// Whether the value at `path` was given by a `--set` argument.
    pub(crate) fn is_override(&self, path: &KeyPath) -> bool {
        lookup(&self.tree, path).is_some_and(|(_, value)| self.sources.set_path(&value).is_some())
    }

    /// Where to point for `path`: the key when it is in the file, the `--set` argument
    /// when the value came from one, else the closest enclosing table that exists.
    fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut segs = path.0.as_slice();
        loop {
            if segs.is_empty() {
                return None;
            }
            if let Some((key, value)) = lookup(&self.tree, &KeyPath(segs.to_vec())) {
                return Some(match key {
                    Some(key) if self.sources.set_path(&value).is_none() => key,
                    _ => value,
                });
            }
            segs = &segs[..segs.len() - 1];
        }
    }

    /// Reports top-level keys that are not in `allowed` and removes them.
    pub(crate) fn check_top_level(&mut self, allowed: &[&str]) {
        let mut tree = std::mem::take(&mut self.tree);
        self.drop_unknown_keys(&mut tree, &KeyPath::root(), allowed);
        self.tree = tree;
    }

    /// Deserializes the table `name`; `Some(T::default())` when it is absent, `None` when
    /// it has problems (already reported).
    pub(crate) fn table<T: DeserializeOwned + Default>(&mut self, name: &str) -> Option<T> {
        let path = KeyPath::root().key(name);
        match self.tree.get(name).cloned() {
            None => Some(T::default()),
            Some(node) => self.deserialize_table(node, &path),
        }
    }

    /// Deserializes each element of the array of tables `name`, keeping indexes aligned
    /// with the file: element `i` is `None` when it has problems (already reported).
    pub(crate) fn tables<T: DeserializeOwned>(&mut self, name: &str) -> Vec<Option<T>> {
        let path = KeyPath::root().key(name);
        let Some(node) = self.tree.get(name).cloned() else {
            return Vec::new();
        };
        let span = node.span();
        match node.into_inner() {
            DeValue::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| self.deserialize_table(item, &path.index(i)))
                .collect(),
            other => {
                let message = format!(
                    "`{name}` must be an array of tables, not {}",
                    a_type(&other)
                );
                self.report_at(
                    Some(span),
                    &path,
                    message,
                    format!("write each entry as a [[{name}]] table"),
                );
                vec![None]
            }
        }
    }

    /// Deserializes a top-level value that is not a table (`trusted_proxies`).
    pub(crate) fn value<T: DeserializeOwned + Default>(&mut self, name: &str) -> Option<T> {
        let path = KeyPath::root().key(name);
        match self.tree.get(name).cloned() {
            None => Some(T::default()),
            Some(node) => self.deserialize(node, &path),
        }
    }

    /// Deserializes one table as `T`, after reporting and removing the keys `T` does not
    /// have.
    fn deserialize_table<T: DeserializeOwned>(
        &mut self,
        node: Node<'a>,
        path: &KeyPath,
    ) -> Option<T> {
        let span = node.span();
        match node.into_inner() {
            DeValue::Table(mut table) => {
                self.drop_unknown_keys(&mut table, path, fields_of::<T>());
                self.deserialize(Spanned::new(span, DeValue::Table(table)), path)
            }
            other => {
                let message = format!("`{path}` must be a table, not {}", a_type(&other));
                let hint = match path.0.last() {
                    Some(Seg::Index(_)) => {
                        format!("write it as [[{}]] followed by its keys", root_key(path))
                    }
                    _ => format!("write it as [{path}] followed by its keys"),
                };
                self.report_at(Some(span), path, message, hint);
                None
            }
        }
    }

    fn deserialize<T: DeserializeOwned>(&mut self, node: Node<'a>, path: &KeyPath) -> Option<T> {
        let whole = node.span();
        match T::deserialize(ValueDeserializer::from(node.clone())) {
            Ok(value) => Some(value),
            Err(error) => {
                let span = error.span().unwrap_or(whole);
                let key = path_at(&node, path.clone(), span.start);
                let message = plain_words(error.message());
                let hint = "see examples/capig.toml for the type and default of every key";
                self.report_at(Some(span), &key, message, hint);
                None
            }
        }
    }

    /// Reports and removes keys of `table` that are not in `allowed`.
    fn drop_unknown_keys(&mut self, table: &mut DeTable<'a>, path: &KeyPath, allowed: &[&str]) {
        let unknown: Vec<(String, Range<usize>)> = table
            .keys()
            .filter(|k| !allowed.contains(&k.get_ref().as_ref()))
            .map(|k| (k.get_ref().to_string(), k.span()))
            .collect();
        for (key, span) in &unknown {
            table.remove(key.as_str());
            let place = match path.0.last() {
                None => "at the top level".to_string(),
                Some(Seg::Index(i)) => format!("in [[{}]] number {}", root_key(path), i + 1),
                Some(Seg::Key(_)) => format!("in [{path}]"),
            };
            let hint = match did_you_mean(key, allowed) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("the keys allowed here are: {}", allowed.join(", ")),
            };
            self.report_at(
                Some(span.clone()),
                &path.key(key),
                format!("unknown key `{key}` {place}"),
                hint,
            );
        }
    }

    /// Applies one `--set key.path=value` argument.
    fn apply_set(&mut self, arg: &'a str) {
        let Some((raw_path, raw_value)) = arg.split_once('=') else {
            let problem = Problem {
                location: format!("--set {arg}"),
                key: String::new(),
                message: "an override must look like key.path=value".to_string(),
                hint: "e.g. --set listeners.0.addr=127.0.0.1:8443 or --set pixels.1.enabled=true"
                    .to_string(),
            };
            self.found.push((usize::MAX, problem));
            return;
        };
        let path_text = raw_path.trim();
        let start = self.sources.add_set(path_text, arg.len());
        let at = start..start + raw_path.len();
        let segs: Vec<&'a str> = path_text.split('.').collect();
        let key = KeyPath(
            segs.iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(n) => Seg::Index(n),
                    Err(_) => Seg::Key((*s).to_string()),
                })
                .collect(),
        );
        if segs.iter().any(|s| s.is_empty()) {
            let hint = "write the keys separated by single dots, with numbers for array elements: pixels.0.enabled";
            self.report_at(
                Some(at),
                &key,
                format!("`{path_text}` is not a key path"),
                hint,
            );
            return;
        }
        let value = parse_override_value(raw_value, start + raw_path.len() + 1);
        let mut walked = String::new();
        if let Err(message) = set_in(&mut self.tree, &segs, value, at.clone(), &mut walked) {
            self.report_at(
                Some(at),
                &key,
                message,
                "check the path against examples/capig.toml",
            );
        }
    }
}

/// The value of a `--set` argument: TOML if it parses as a TOML value, else the text
/// itself as a string (so `spool.dir=/tmp/x` needs no quotes). Spans start at `offset`.
fn parse_override_value(raw: &str, offset: usize) -> Node<'_> {
    let leading = raw.len() - raw.trim_start().len();
    let text = raw.trim();
    match DeValue::parse(text) {
        Ok(value) => shift(value, offset + leading),
        Err(_) => Spanned::new(
            offset..offset + raw.len(),
            DeValue::String(Cow::Borrowed(text)),
        ),
    }
}

/// Moves every span of `node` by `by` bytes.
fn shift(node: Node<'_>, by: usize) -> Node<'_> {
    let moved = |r: Range<usize>| r.start + by..r.end + by;
    let span = moved(node.span());
    let value = match node.into_inner() {
        DeValue::Table(table) => DeValue::Table(
            table
                .into_iter()
                .map(|(k, v)| (Spanned::new(moved(k.span()), k.into_inner()), shift(v, by)))
                .collect(),
        ),
        DeValue::Array(items) => DeValue::Array(items.into_iter().map(|v| shift(v, by)).collect()),
        other => other,
    };
    Spanned::new(span, value)
}

/// Sets `segs` under `table` to `value`, creating tables (or arrays, when the next step is
/// an index) that do not exist. `walked` collects the path so far for messages.
fn set_in<'a>(
    table: &mut DeTable<'a>,
    segs: &[&'a str],
    value: Node<'a>,
    at: Range<usize>,
    walked: &mut String,
) -> Result<(), String> {
    let (first, rest) = segs.split_first().expect("key paths are never empty");
    if !walked.is_empty() {
        walked.push('.');
    }
    walked.push_str(first);
    let key = Spanned::new(at.clone(), Cow::Borrowed(*first));
    if rest.is_empty() {
        table.insert(key, value);
        return Ok(());
    }
    let child = table
        .entry(key)
        .or_insert_with(|| Spanned::new(at.clone(), empty_container(rest[0])));
    set_in_node(child.get_mut(), rest, value, at, walked)
}

fn set_in_node<'a>(
    node: &mut DeValue<'a>,
    segs: &[&'a str],
    value: Node<'a>,
    at: Range<usize>,
    walked: &mut String,
) -> Result<(), String> {
    match node {
        DeValue::Table(table) => set_in(table, segs, value, at, walked),
        DeValue::Array(items) => {
            let (first, rest) = segs.split_first().expect("key paths are never empty");
            let len = items.len();
            let Ok(index) = first.parse::<usize>() else {
                return Err(format!("`{walked}` is an array: the next step must be an index (0 to {len}), not `{first}`"));
            };
            if index > len {
                return Err(format!(
                    "`{walked}` has {len} element(s): use an index from 0 to {len} ({len} appends a new one)"
                ));
            }
            walked.push('.');
            walked.push_str(first);
            if rest.is_empty() {
                if index == len {
                    items.push(value);
                } else {
                    items.as_mut()[index] = value;
                }
                return Ok(());
            }
            if index == len {
                items.push(Spanned::new(at.clone(), empty_container(rest[0])));
            }
            set_in_node(items.as_mut()[index].get_mut(), rest, value, at, walked)
        }
        other => Err(format!(
            "`{walked}` is {}, so nothing can be set inside it",
            a_type(other)
        )),
    }
}

/// What a path creates for a missing step: an array if the next step is an index.
fn empty_container<'a>(next: &str) -> DeValue<'a> {
    if next.parse::<usize>().is_ok() {
        DeValue::Array(DeArray::new())
    } else {
        DeValue::Table(DeTable::new())
    }
}

/// The key and value spans at `path`, if the path exists (no key span for array elements).
fn lookup(tree: &DeTable<'_>, path: &KeyPath) -> Option<(Option<Range<usize>>, Range<usize>)> {
    let (first, rest) = path.0.split_first()?;
    let Seg::Key(first) = first else { return None };
    let (key, mut node) = tree.get_key_value(first.as_str())?;
    let mut key_span = Some(key.span());
    for seg in rest {
        node = match (seg, node.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => {
                let (key, value) = t.get_key_value(k.as_str())?;
                key_span = Some(key.span());
                value
            }
            (Seg::Index(i), DeValue::Array(a)) => {
                key_span = None;
                a.get(*i)?
            }
            _ => return None,
        };
    }
    Some((key_span, node.span()))
}

/// The path of the innermost key or element under `node` (itself at `base`) whose span
/// holds `offset`.
fn path_at(node: &Node<'_>, base: KeyPath, offset: usize) -> KeyPath {
    let holds = |r: Range<usize>| r.contains(&offset) || r.start == offset;
    match node.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                if holds(k.span()) {
                    return base.key(k.get_ref());
                }
                if holds(v.span()) {
                    return path_at(v, base.key(k.get_ref()), offset);
                }
            }
            base
        }
        DeValue::Array(a) => match a.iter().position(|v| holds(v.span())) {
            Some(i) => path_at(&a[i], base.index(i), offset),
            None => base,
        },
        _ => base,
    }
}

/// "an integer", "a string": the value's TOML type with its article.
fn a_type(value: &DeValue<'_>) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

fn root_key(path: &KeyPath) -> String {
    match path.0.first() {
        Some(Seg::Key(k)) => k.clone(),
        _ => String::new(),
    }
}

/// serde's type names in words an operator knows.
fn plain_words(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number (0 or more)"),
        ("expected u8", "expected a whole number (0 or more)"),
        ("expected a sequence", "expected an array"),
        ("invalid type: map", "invalid type: table"),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

/// The allowed key closest to `key`, if it is close enough to be a typo or one contains
/// the other (`max_body_bytes` for `body_bytes`).
pub(crate) fn did_you_mean<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    let key = key.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (edit_distance(&key, a), *a))
        .filter(|(d, a)| {
            *d <= 2.max(a.len() / 4) || (key.len() >= 4 && (key.contains(a) || a.contains(&key)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
