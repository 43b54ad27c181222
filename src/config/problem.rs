//! What is wrong with a configuration, and where: `Problem`, `ConfigError`, key paths and
//! the map from byte offsets to `file:line:col` or `--set <path>`.
//!
//! Offsets come from the TOML parser's spans. The file's text occupies offsets
//! `0..text.len()`; each `--set` argument is given its own range after that (see
//! [`Sources::add_set`]), so a span alone says whether a value came from the file or from
//! the command line, and which argument.

use std::fmt;
use std::ops::Range;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `path/to/capig.toml:42:1`, or `--set pixels.0.id` for a command-line override.
    pub location: String,
    /// The setting, as a key path: `pixels[0].access_token_file`; empty for syntax errors.
    pub key: String,
    /// What is wrong. Never contains a secret.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if !self.hint.is_empty() {
            write!(f, " — {}", self.hint)?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration, in the order they appear in the file (then the
/// `--set` arguments).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Where a setting lives in the TOML tree: `pixels[0].domains[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        KeyPath(segs)
    }

    pub(crate) fn index(&self, index: usize) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A `--set` argument's place among the offsets.
struct SetRegion {
    range: Range<usize>,
    path: String,
}

/// Turns spans into locations.
pub(crate) struct Sources<'a> {
    origin: String,
    text: &'a str,
    sets: Vec<SetRegion>,
    next: usize,
}

impl<'a> Sources<'a> {
    pub(crate) fn new(origin: String, text: &'a str) -> Sources<'a> {
        Sources {
            origin,
            text,
            sets: Vec::new(),
            next: text.len() + 1,
        }
    }

    /// Reserves offsets for one `--set` argument of `len` bytes whose key path is `path`;
    /// returns the first offset.
    pub(crate) fn add_set(&mut self, path: &str, len: usize) -> usize {
        let start = self.next;
        // Never empty, so that an empty span at `start` still falls inside.
        let end = start + len + 1;
        self.sets.push(SetRegion {
            range: start..end,
            path: path.to_string(),
        });
        self.next = end;
        start
    }

    /// The `--set` argument a span came from, if any.
    pub(crate) fn set_path(&self, span: &Range<usize>) -> Option<&str> {
        self.sets
            .iter()
            .find(|r| r.range.contains(&span.start))
            .map(|r| r.path.as_str())
    }

    /// `file:line:col` (1-based, column in characters) or `--set path`.
    pub(crate) fn locate(&self, span: Option<Range<usize>>) -> String {
        let Some(span) = span else {
            return format!("{}:1:1", self.origin);
        };
        if let Some(path) = self.set_path(&span) {
            return format!("--set {path}");
        }
        let offset = span.start.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        format!("{}:{line}:{col}", self.origin)
    }
}
