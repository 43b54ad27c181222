//! The dead-letter store: a bounded on-disk record of events Meta refused for good, or
//! that expired before they could be delivered, kept so an operator can see why.
//!
//! # File format
//! JSON lines in `dir/deadletters-<n>.jsonl`, `n` counting up from 1. One line per event:
//! `{"time":…,"pixel":…,"reason":"meta_rejected","code":…,"subcode":…,"message":…,
//! "fbtrace_id":…,"event":{…}}` — `time` is Unix seconds; `code`, `subcode`, `message` and
//! `fbtrace_id` are Meta's and absent when there were none; `event` is the CAPI event
//! object exactly as the transform produced it (already hashed), only with raw line
//! breaks (JSON whitespace) turned into spaces. The store never adds anything to it: no
//! clear-text personal data enters here unless the caller hands it in (see docs/DESIGN.md,
//! "Architecture invariants"). Meta's messages name fields, not values.
//!
//! # Durability
//! [`DeadLetters::append`] and [`DeadLetters::append_batch`] return only after the data
//! is written and `sync_data`ed, so the caller may then remove the events from the spool.
//! A crash mid-write leaves at most a torn last line; listing skips it (and any other line
//! that does not parse) and counts it in [`Listing::skipped`]. After a torn tail,
//! [`DeadLetters::open`] starts a new file rather than append to the broken line.
//!
//! # Bound
//! A file is rotated once it would pass [`DeadLetterConfig::file_bytes`]. When the files
//! together pass [`DeadLetterConfig::max_bytes`], the **oldest files are deleted first**
//! (those events were already refused by Meta; the newest reasons matter most); the
//! evicted entries are counted in [`DeadLetterStats`]. The current file is never evicted.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::policy::{Bisect, MetaError, PayloadError};

/// Default size at which a file is rotated: 8 MiB.
pub const DEFAULT_FILE_BYTES: u64 = 8 << 20;
/// Default bound on the whole store: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

const PREFIX: &str = "deadletters-";
const SUFFIX: &str = ".jsonl";

/// Why an event is in the dead-letter store. The labels are stable (files, CLI, admin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Meta refused the event for good (a permanent error, or code 100 on a single event).
    MetaRejected,
    /// The event would have passed Meta's 7-day limit before delivery.
    Expired,
    /// A label written by a newer capig.
    #[serde(other)]
    Unknown,
}

impl Reason {
    /// The stable label, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MetaRejected => "meta_rejected",
            Reason::Expired => "expired",
            Reason::Unknown => "unknown",
        }
    }
}

/// Sizes of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetterConfig {
    /// A file is rotated before it would pass this size; also the largest entry.
    pub file_bytes: u64,
    /// All files together; past it the oldest files are deleted.
    pub max_bytes: u64,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            file_bytes: DEFAULT_FILE_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One event to dead-letter.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub pixel: u64,
    /// The CAPI event object, as the transform serialized it (hashed).
    pub event: &'a [u8],
    pub reason: Reason,
    /// Meta's error, when Meta answered.
    pub meta: Option<&'a MetaError>,
    /// Unix seconds.
    pub time: u64,
}

/// An entry read back from the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub time: u64,
    pub pixel: u64,
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
    pub event: serde_json::Value,
}

/// Which entries [`DeadLetters::list`] and [`list_report`] return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListFilter {
    pub pixel: Option<u64>,
    pub reason: Option<Reason>,
    /// At most this many entries; 0 means all.
    pub limit: usize,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            pixel: None,
            reason: None,
            limit: 100,
        }
    }
}

/// Entries, newest first, and how many lines could not be read (torn or corrupt).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    pub entries: Vec<StoredEntry>,
    pub skipped: u64,
}

/// Counters of the store since it was opened (plus its current size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterStats {
    pub files: u64,
    pub bytes: u64,
    pub appended: u64,
    pub evicted_files: u64,
    pub evicted_entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter store {}: {source}; check that the directory exists, is writable by capig and the disk is not full", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("a dead-letter batch payload is malformed: {0}; this is a bug in the batcher, please report it")]
    Payload(#[from] PayloadError),
    #[error(
        "a dead-letter event is not a JSON object; this is a bug in the caller, please report it"
    )]
    NotAnObject,
    #[error("a dead-letter entry of {len} bytes is larger than a file ({max} bytes); raise the dead-letter file size")]
    TooLarge { len: u64, max: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DeadLetterError + '_ {
    move |source| DeadLetterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize)]
struct Header<'a> {
    time: u64,
    pixel: u64,
    reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fbtrace_id: Option<&'a str>,
}

/// Appends one JSON line for `entry` to `out`.
fn encode(entry: &Entry<'_>, out: &mut Vec<u8>) -> Result<(), DeadLetterError> {
    let event = entry.event.trim_ascii();
    if event.first() != Some(&b'{')
        || serde_json::from_slice::<serde::de::IgnoredAny>(event).is_err()
    {
        return Err(DeadLetterError::NotAnObject);
    }
    let header = Header {
        time: entry.time,
        pixel: entry.pixel,
        reason: entry.reason,
        code: entry.meta.map(|m| m.code),
        subcode: entry.meta.and_then(|m| m.subcode),
        message: entry.meta.map(|m| m.message.as_str()),
        fbtrace_id: entry.meta.and_then(|m| m.fbtrace_id.as_deref()),
    };
    let start = out.len();
    serde_json::to_writer(&mut *out, &header).expect("serializing to a Vec cannot fail");
    out.pop(); // the closing brace
    out.extend_from_slice(b",\"event\":");
    let ev = out.len();
    out.extend_from_slice(event);
    // Valid JSON has raw line breaks only as whitespace (never inside strings).
    for b in &mut out[ev..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    out.extend_from_slice(b"}\n");
    debug_assert!(out.len() > start);
    Ok(())
}

fn file_name(n: u64) -> String {
    format!("{PREFIX}{n}{SUFFIX}")
}

/// The numbered files in `dir`, oldest first, with their sizes. A missing dir is empty.
fn scan(dir: &Path) -> Result<Vec<(u64, u64)>, DeadLetterError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut files = Vec::new();
    for de in rd {
        let de = de.map_err(io_err(dir))?;
        let name = de.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix(PREFIX))
            .and_then(|s| s.strip_suffix(SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let len = de.metadata().map_err(io_err(&de.path()))?.len();
        files.push((n, len));
    }
    files.sort_unstable();
    Ok(files)
}

fn sync_dir(dir: &Path) -> Result<(), DeadLetterError> {
    super::sync_dir(dir).map_err(io_err(dir))
}

/// The bounded dead-letter store (one writer per directory).
#[derive(Debug)]
pub struct DeadLetters {
    dir: PathBuf,
    cfg: DeadLetterConfig,
    /// `(n, bytes)`, oldest first; the last is the current file.
    files: Vec<(u64, u64)>,
    current: File,
    buf: Vec<u8>,
    bisect: Bisect,
    stats: DeadLetterStats,
}

impl DeadLetters {
    /// Opens (creating it if needed) the store in `dir`.
    pub fn open(dir: &Path, cfg: DeadLetterConfig) -> Result<Self, DeadLetterError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut files = scan(dir)?;
        let torn = match files.last() {
            Some(&(n, len)) if len > 0 => {
                let path = dir.join(file_name(n));
                let data = fs::read(&path).map_err(io_err(&path))?;
                data.last() != Some(&b'\n')
            }
            _ => false,
        };
        if files.is_empty() || torn {
            let n = files.last().map_or(1, |&(n, _)| n + 1);
            files.push((n, 0));
        }
        let n = files.last().expect("at least one file").0;
        let path = dir.join(file_name(n));
        let current = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        let mut store = DeadLetters {
            dir: dir.to_path_buf(),
            cfg,
            files,
            current,
            buf: Vec::new(),
            bisect: Bisect::default(),
            stats: DeadLetterStats::default(),
        };
        store.evict()?;
        Ok(store)
    }

    /// Appends one entry; returns once it is durable (`sync_data`).
    pub fn append(&mut self, entry: &Entry<'_>) -> Result<(), DeadLetterError> {
        self.buf.clear();
        encode(entry, &mut self.buf)?;
        let line = std::mem::take(&mut self.buf);
        let r = self.write_line(&line).and_then(|()| self.finish());
        self.buf = line;
        r
    }

    /// Dead-letters every event of a batch payload (comma-separated event objects) with
    /// the same reason and error; one `sync_data` covers them all, and the call returns
    /// once they are durable. Returns the number of events stored.
    pub fn append_batch(
        &mut self,
        pixel: u64,
        payload: &[u8],
        reason: Reason,
        meta: Option<&MetaError>,
        now: u64,
    ) -> Result<usize, DeadLetterError> {
        let ranges = self.bisect.events(payload)?.to_vec();
        let mut line = std::mem::take(&mut self.buf);
        let mut r = Ok(());
        for range in &ranges {
            line.clear();
            let entry = Entry {
                pixel,
                event: &payload[range.clone()],
                reason,
                meta,
                time: now,
            };
            r = encode(&entry, &mut line).and_then(|()| self.write_line(&line));
            if r.is_err() {
                break;
            }
        }
        let r = r.and_then(|()| self.finish());
        self.buf = line;
        r.map(|()| ranges.len())
    }

    fn current_path(&self) -> PathBuf {
        self.dir
            .join(file_name(self.files.last().expect("a file").0))
    }

    /// Writes one line (no sync), rotating first when it would not fit.
    fn write_line(&mut self, line: &[u8]) -> Result<(), DeadLetterError> {
        let len = line.len() as u64;
        if len > self.cfg.file_bytes {
            return Err(DeadLetterError::TooLarge {
                len,
                max: self.cfg.file_bytes,
            });
        }
        let cur = self.files.last().expect("a file").1;
        if cur > 0 && cur + len > self.cfg.file_bytes {
            let old = self.current_path();
            self.current.sync_data().map_err(io_err(&old))?;
            let n = self.files.last().expect("a file").0 + 1;
            let path = self.dir.join(file_name(n));
            self.current = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            self.files.push((n, 0));
        }
        let path = self.current_path();
        self.current.write_all(line).map_err(io_err(&path))?;
        self.files.last_mut().expect("a file").1 += len;
        self.stats.appended += 1;
        Ok(())
    }

    /// Makes the written lines durable, then applies the bound.
    fn finish(&mut self) -> Result<(), DeadLetterError> {
        let path = self.current_path();
        self.current.sync_data().map_err(io_err(&path))?;
        self.evict()
    }

    /// Deletes the oldest files while the store is over `max_bytes` (never the current).
    fn evict(&mut self) -> Result<(), DeadLetterError> {
        let mut evicted = false;
        while self.files.len() > 1 && self.total_bytes() > self.cfg.max_bytes {
            let (n, _) = self.files.remove(0);
            let path = self.dir.join(file_name(n));
            let lines = match fs::read(&path) {
                Ok(data) => count_lines(&data),
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(e) => return Err(io_err(&path)(e)),
            };
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            self.stats.evicted_files += 1;
            self.stats.evicted_entries += lines;
            evicted = true;
        }
        if evicted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn total_bytes(&self) -> u64 {
        self.files.iter().map(|&(_, b)| b).sum()
    }

    /// Entries, newest first, filtered.
    pub fn list(&self, filter: ListFilter) -> Result<Listing, DeadLetterError> {
        let mut listing = Listing::default();
        read_entries(&self.dir, filter, &mut listing.skipped, |_, e| {
            listing.entries.push(e)
        })?;
        Ok(listing)
    }

    /// Current size and counters since open.
    pub fn stats(&self) -> DeadLetterStats {
        DeadLetterStats {
            files: self.files.len() as u64,
            bytes: self.total_bytes(),
            ..self.stats
        }
    }
}

/// Non-empty lines (a torn last line without its newline counts too).
fn count_lines(data: &[u8]) -> u64 {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count() as u64
}

/// Calls `f` with each matching line and entry, newest first, up to `filter.limit`.
fn read_entries(
    dir: &Path,
    filter: ListFilter,
    skipped: &mut u64,
    mut f: impl FnMut(&str, StoredEntry),
) -> Result<(), DeadLetterError> {
    let mut taken = 0usize;
    for &(n, _) in scan(dir)?.iter().rev() {
        let path = dir.join(file_name(n));
        let data = match fs::read(&path) {
            Ok(d) => d,
            // Evicted by the writer meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        for line in data.split(|&b| b == b'\n').rev() {
            if line.trim_ascii().is_empty() {
                continue;
            }
            let parsed = std::str::from_utf8(line)
                .ok()
                .and_then(|s| serde_json::from_str::<StoredEntry>(s).ok().map(|e| (s, e)));
            let Some((text, entry)) = parsed else {
                *skipped += 1;
                continue;
            };
            if filter.pixel.is_some_and(|p| p != entry.pixel)
                || filter.reason.is_some_and(|r| r != entry.reason)
            {
                continue;
            }
            f(text, entry);
            taken += 1;
            if filter.limit != 0 && taken >= filter.limit {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The text of `capig deadletters list`: newest first, one line per entry
/// (`time  pixel  reason  code/subcode  fbtrace_id  event_name event_id  message`), or
/// the stored JSON lines with `json`. Reads only; `dir` is the store's directory.
/// Unreadable (torn or corrupt) lines are skipped and reported on a last line in the
/// human format.
pub fn list_report(
    dir: &Path,
    pixel: Option<u64>,
    limit: usize,
    json: bool,
) -> Result<String, DeadLetterError> {
    let filter = ListFilter {
        pixel,
        reason: None,
        limit,
    };
    let mut out = String::new();
    let mut skipped = 0;
    read_entries(dir, filter, &mut skipped, |text, e| {
        if json {
            out.push_str(text);
            out.push('\n');
            return;
        }
        let code = match (e.code, e.subcode) {
            (Some(c), Some(s)) => format!("{c}/{s}"),
            (Some(c), None) => c.to_string(),
            _ => "-".to_string(),
        };
        let field = |k: &str| {
            e.event.get(k).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            })
        };
        let _ = writeln!(
            out,
            "{}  {}  {}  {}  {}  {} {}  {}",
            utc(e.time),
            e.pixel,
            e.reason.as_str(),
            code,
            e.fbtrace_id.as_deref().unwrap_or("-"),
            field("event_name").unwrap_or_else(|| "-".into()),
            field("event_id").unwrap_or_else(|| "-".into()),
            e.message.as_deref().unwrap_or("-"),
        );
    })?;
    if !json && skipped > 0 {
        let _ = writeln!(
            out,
            "({skipped} unreadable line(s) skipped: torn by a crash or corrupt)"
        );
    }
    Ok(out)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
