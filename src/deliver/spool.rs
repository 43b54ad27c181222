//! The durable spool: a segment log on disk that keeps every closed batch until Meta
//! has taken it (or it went to the dead-letter store), across `kill -9`, restarts,
//! Meta outages and a full disk.
//!
//! # Design constraints
//! - Appends are sequential writes into one current segment through one write
//!   buffer; an append allocates nothing per record beyond the write buffer's
//!   capacity and the current segment's slot vector (both grow by doubling and are
//!   reused).
//! - Group commit: one `fdatasync` covers every batch appended since the last one.
//!   [`Spool::sync`] returns the highest durable record id, so the caller
//!   acknowledges exactly the events that are durable and no others.
//! - Acknowledgements live in a separate ledger, so records are never rewritten;
//!   a segment is deleted as a whole once every record in it is acknowledged.
//! - Replay skips a torn tail (the last segment only; it is truncated away) and
//!   corruption in older segments (the rest of that segment), counts both in
//!   [`SpoolStats`] and says so in [`SpoolStats::warnings`]; payloads are never
//!   printed (they are hashed events, but still nobody's business).
//! - Open checks every segment but keeps no payload; [`Spool::replay`] reads
//!   pending records back one segment at a time, so a spool of many gigabytes
//!   never has to fit in memory.
//! - The record format is sans-IO ([`record`]); this module is the thin file driver.
//!
//! # Durability policies ([`FsyncPolicy`])
//! A process crash (`kill -9`, panic) loses nothing that reached the page cache,
//! whatever the policy: a record is in the page cache once its buffer was flushed,
//! which [`Spool::sync`] always does (it loses only the write buffer, whose
//! records were never reported durable). The policies differ on power loss or a
//! kernel crash:
//! - `Always`: every append and every ack is `fdatasync`ed before it returns;
//!   power loss loses nothing that was acknowledged. Slowest: one flush per batch.
//! - `Interval`: the caller calls [`Spool::sync_if_due`]; one `fdatasync` per
//!   `fsync_interval_ms` covers all batches appended meanwhile. Power loss loses
//!   at most that interval, and only batches whose events were not yet
//!   acknowledged if the caller acknowledges after `sync`.
//! - `Never`: the kernel writes back when it likes (about 30 s on Linux); power
//!   loss can lose that much, acknowledged or not. [`Spool::sync`] still forces.
//!
//! Lost acks (ledger entries) only cause a batch to be delivered twice, with the
//! same `event_id`s, which Meta deduplicates. That is why, except with `Always`, the
//! ledger reaches the page cache at every sync but the disk at most once a second: a
//! group commit costs one `fdatasync` (the segment's), not two.
//!
//! # On-disk layout
//! In the spool directory:
//! - `<first_record_id:020>.seg`: a segment, the concatenation of records (see
//!   [`record`] for the 44-byte header), at most `segment_bytes` long (a single
//!   record is never split). Record ids increase by one per append; an id is never
//!   given twice, except that of a record lost in a crash before it was synced
//!   (the next run may reuse it). A new segment starts on open and when the
//!   current one would overflow.
//! - `acks.ledger`: 12-byte entries, the acknowledged record id (u64 LE) and the
//!   CRC32 of those 8 bytes (u32 LE); append-only, rewritten (through
//!   `acks.ledger.tmp` and a rename) on open and when it grows well beyond the
//!   acks that still matter (those for records in segments that still exist).

pub mod record;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::FsyncPolicy;
use record::{CheckError, Meta, HEADER_LEN, MAX_PAYLOAD};

/// A record's id: 1, 2, 3… in append order; 0 means "none".
pub type RecordId = u64;

/// The default segment size, 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// The write buffer is flushed to the file when it reaches this size, or an
/// eighth of a segment if smaller, so that a process crash (which loses the
/// buffer, not the page cache) loses little even between syncs.
const FLUSH_AT: usize = 256 << 10;
const LEDGER: &str = "acks.ledger";
const LEDGER_TMP: &str = "acks.ledger.tmp";
const LEDGER_ENTRY: usize = 12;
/// The longest the ack ledger goes without an `fdatasync` (see `Spool::sync`).
const LEDGER_SYNC_EVERY: Duration = Duration::from_secs(1);
/// Ledger entries beyond this many plus four times the live ones trigger a rewrite.
const LEDGER_SLACK: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// Segment files and acked records still in them count against this cap.
    pub max_bytes: u64,
    pub segment_bytes: u64,
}

impl SpoolConfig {
    pub fn from_config(c: &crate::config::Spool) -> SpoolConfig {
        SpoolConfig {
            fsync: c.fsync,
            fsync_interval_ms: c.fsync_interval_ms,
            max_bytes: c.max_bytes,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> SpoolConfig {
        SpoolConfig::from_config(&crate::config::Spool::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the spool is full ({used} of {cap} bytes): Meta is not taking events; \
         raise spool.max_bytes or free disk"
    )]
    Full { used: u64, cap: u64 },
    #[error(
        "a batch of {len} bytes does not fit in a spool segment of {max} bytes; \
         close batches smaller"
    )]
    TooLarge { len: u64, max: u64 },
    #[error(
        "spool I/O error on {}: {source}; check that the spool directory is \
         writable and the disk is healthy",
        path.display()
    )]
    Io { path: PathBuf, source: io::Error },
}

impl SpoolError {
    /// Whether the same append can succeed later (after deliveries free space, or
    /// after a transient I/O error); a batch too large never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            SpoolError::Full { .. } | SpoolError::Io { .. } => true,
            SpoolError::TooLarge { .. } => false,
        }
    }
}

/// A record not yet acknowledged, as found on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub id: RecordId,
    pub pixel: u64,
    pub events: u32,
    pub oldest_time: u64,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Bytes in segment files, acked records not yet deleted included.
    pub bytes: u64,
    /// Records and events not yet acknowledged.
    pub records: u64,
    pub events: u64,
    /// The oldest event time among unacknowledged records (Unix seconds).
    pub oldest_event_time: Option<u64>,
    pub segments: u64,
    /// Torn writes cut from the end of the last segment on open.
    pub torn_tail_records: u64,
    pub torn_tail_bytes: u64,
    /// Corrupt spots in older segments; the rest of each such segment was skipped.
    pub corrupt_records_skipped: u64,
    /// What replay found wrong, for the operator; never contains payload bytes.
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// No record with this id (lost to corruption).
    Absent,
    Pending {
        events: u32,
        oldest: u64,
    },
    Acked,
}

struct Segment {
    first_id: RecordId,
    path: PathBuf,
    bytes: u64,
    /// Indexed by `id - first_id`.
    slots: Vec<Slot>,
    pending: u64,
}

pub struct Spool {
    dir: PathBuf,
    cfg: SpoolConfig,
    /// Oldest first; the last one is the current segment.
    segments: Vec<Segment>,
    file: File,
    buf: Vec<u8>,
    /// Bytes of the current segment already written to the file (not in `buf`).
    written: u64,
    next_id: RecordId,
    durable_id: RecordId,
    unsynced: bool,
    last_sync: Option<Instant>,
    ledger: File,
    ledger_buf: Vec<u8>,
    ledger_entries: u64,
    /// The ledger's length after its last whole write.
    ledger_len: u64,
    /// When the ledger was last `fdatasync`ed.
    ledger_synced: Option<Instant>,
    acked_live: u64,
    used: u64,
    records: u64,
    events: u64,
    torn_tail_records: u64,
    torn_tail_bytes: u64,
    corrupt_records_skipped: u64,
    warnings: Vec<String>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_name(first_id: RecordId) -> String {
    format!("{first_id:020}.seg")
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    super::sync_dir(dir).map_err(io_at(dir))
}

fn ledger_entry(id: RecordId) -> [u8; LEDGER_ENTRY] {
    let id = id.to_le_bytes();
    let mut e = [0; LEDGER_ENTRY];
    e[..8].copy_from_slice(&id);
    e[8..].copy_from_slice(&crc32fast::hash(&id).to_le_bytes());
    e
}

/// The acked ids in a ledger; torn or corrupt entries are ignored (at worst a
/// batch is delivered twice).
fn read_ledger(path: &Path) -> Result<HashSet<RecordId>, SpoolError> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data).map_err(io_at(path))?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(path)(e)),
    }
    let mut acked = HashSet::new();
    for e in data.chunks_exact(LEDGER_ENTRY) {
        let mut id = [0; 8];
        id.copy_from_slice(&e[..8]);
        if e[8..] == crc32fast::hash(&id).to_le_bytes() {
            acked.insert(u64::from_le_bytes(id));
        }
    }
    Ok(acked)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: checks every segment, cuts a torn
    /// tail, and learns which records are pending; [`Spool::replay`] reads them.
    pub fn open(dir: &Path, cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_at(dir))? {
            let path = entry.map_err(io_at(dir))?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<RecordId>().ok());
            if let Some(first) = first {
                firsts.push((first, path));
            }
        }
        firsts.sort_unstable();
        let ledger_path = dir.join(LEDGER);
        let acked = read_ledger(&ledger_path)?;

        let mut segments = Vec::new();
        let (mut records, mut events) = (0, 0);
        let (mut torn_records, mut torn_bytes, mut corrupt) = (0, 0, 0);
        let mut warnings = Vec::new();
        let mut max_id: RecordId = acked.iter().copied().max().unwrap_or(0);
        let count = firsts.len();
        for (i, (first_id, path)) in firsts.into_iter().enumerate() {
            let last = i + 1 == count;
            let data = fs::read(&path).map_err(io_at(&path))?;
            max_id = max_id.max(first_id.saturating_sub(1));
            let mut seg = Segment {
                first_id,
                path,
                bytes: data.len() as u64,
                slots: Vec::new(),
                pending: 0,
            };
            let mut off = 0;
            let mut prev = first_id.saturating_sub(1);
            while off < data.len() {
                let rest = &data[off..];
                // A record whose id does not follow its predecessor is as corrupt
                // as one with a bad CRC: it would break the id order.
                let found = record::check(rest)
                    .map(|len| record::parse(rest, len))
                    .and_then(|r| {
                        if r.meta.id > prev {
                            Ok(r)
                        } else {
                            Err(CheckError::Corrupt(record::Corruption::Crc))
                        }
                    });
                let r = match found {
                    Ok(r) => r,
                    Err(e) if last => {
                        let cut = (data.len() - off) as u64;
                        torn_records += 1;
                        torn_bytes += cut;
                        warnings.push(format!(
                            "spool: cut a torn tail of {cut} bytes ({e:?}) at offset {off} \
                             of {}; those batches were never acknowledged",
                            seg.path.display()
                        ));
                        OpenOptions::new()
                            .write(true)
                            .open(&seg.path)
                            .and_then(|f| {
                                f.set_len(off as u64)?;
                                f.sync_all()
                            })
                            .map_err(io_at(&seg.path))?;
                        seg.bytes = off as u64;
                        break;
                    }
                    Err(e) => {
                        corrupt += 1;
                        warnings.push(format!(
                            "spool: corrupt record ({e:?}) at offset {off} of {}; skipped \
                             the remaining {} bytes of that segment",
                            seg.path.display(),
                            data.len() - off
                        ));
                        break;
                    }
                };
                let m = r.meta;
                for _ in prev + 1..m.id {
                    seg.slots.push(Slot::Absent);
                }
                if acked.contains(&m.id) {
                    seg.slots.push(Slot::Acked);
                } else {
                    seg.slots.push(Slot::Pending {
                        events: m.events,
                        oldest: m.oldest_time,
                    });
                    seg.pending += 1;
                    records += 1;
                    events += u64::from(m.events);
                }
                prev = m.id;
                max_id = max_id.max(m.id);
                off += HEADER_LEN + r.payload.len();
            }
            if last {
                // The previous run may not have synced it; the ids replayed are
                // reported durable from here on.
                File::open(&seg.path)
                    .and_then(|f| f.sync_data())
                    .map_err(io_at(&seg.path))?;
            }
            segments.push(seg);
        }

        // Fully acknowledged segments go before the ledger is rewritten without
        // their acks, so a crash in between cannot bring their records back.
        let mut kept = Vec::new();
        for seg in segments {
            if seg.pending == 0 {
                fs::remove_file(&seg.path).map_err(io_at(&seg.path))?;
            } else {
                kept.push(seg);
            }
        }
        let next_id = max_id + 1;
        let path = dir.join(segment_name(next_id));
        let file = File::create(&path).map_err(io_at(&path))?;
        kept.push(Segment {
            first_id: next_id,
            path,
            bytes: 0,
            slots: Vec::new(),
            pending: 0,
        });
        sync_dir(dir)?;
        let (ledger, ledger_entries) = write_ledger(dir, &kept)?;

        let spool = Spool {
            dir: dir.to_path_buf(),
            used: kept.iter().map(|s| s.bytes).sum(),
            records,
            events,
            acked_live: kept
                .iter()
                .map(|s| s.slots.iter().filter(|&&x| x == Slot::Acked).count() as u64)
                .sum(),
            segments: kept,
            file,
            buf: Vec::new(),
            written: 0,
            next_id,
            durable_id: max_id,
            unsynced: false,
            last_sync: None,
            ledger,
            ledger_buf: Vec::new(),
            ledger_entries,
            ledger_len: ledger_entries * LEDGER_ENTRY as u64,
            ledger_synced: None,
            cfg,
            torn_tail_records: torn_records,
            torn_tail_bytes: torn_bytes,
            corrupt_records_skipped: corrupt,
            warnings,
        };
        Ok(spool)
    }

    /// Appends one closed batch; it is durable once [`Spool::sync`] (or, with
    /// `Always`, this call) returned an id at least as high.
    pub fn append(
        &mut self,
        pixel: u64,
        events: u32,
        oldest_time: u64,
        payload: &[u8],
    ) -> Result<RecordId, SpoolError> {
        let len = record::encoded_len(payload.len()) as u64;
        if payload.len() > MAX_PAYLOAD || len > self.cfg.segment_bytes {
            return Err(SpoolError::TooLarge {
                len,
                max: self
                    .cfg
                    .segment_bytes
                    .min(record::encoded_len(MAX_PAYLOAD) as u64),
            });
        }
        let current = self.segments.last().expect("current segment");
        if self.used + len > self.cfg.max_bytes && current.pending == 0 && current.bytes > 0 {
            // Everything in the current segment was delivered: start a new one, so
            // the old one's bytes stop counting against the cap.
            self.roll()?;
        }
        if self.used + len > self.cfg.max_bytes {
            return Err(self.full());
        }
        let current = self
            .segments
            .last()
            .expect("there is always a current segment");
        if current.bytes > 0 && current.bytes + len > self.cfg.segment_bytes {
            self.roll()?;
        }
        let id = self.next_id;
        let mark = self.buf.len();
        let meta = Meta {
            id,
            pixel,
            events,
            oldest_time,
        };
        record::encode(&mut self.buf, &meta, payload);
        let flush_at = FLUSH_AT.min((self.cfg.segment_bytes / 8) as usize);
        if self.cfg.fsync == FsyncPolicy::Always || self.buf.len() >= flush_at {
            if let Err(e) = self.flush() {
                // The record is not in the file, and the caller is told so.
                self.buf.truncate(mark);
                return Err(e);
            }
        }
        self.next_id += 1;
        let seg = self.segments.last_mut().expect("current segment");
        seg.slots.push(Slot::Pending {
            events,
            oldest: oldest_time,
        });
        seg.pending += 1;
        seg.bytes += len;
        self.used += len;
        self.records += 1;
        self.events += u64::from(events);
        self.unsynced = true;
        if self.cfg.fsync == FsyncPolicy::Always {
            // On error the record stays in the file; replayed, it is at worst a
            // duplicate with the same event ids.
            self.sync()?;
        }
        Ok(id)
    }

    /// The pending records, oldest first, read back from disk one segment at a
    /// time (so a full spool is never all in memory). Flushes the write buffer
    /// first, so records appended since open are included.
    pub fn replay(&mut self) -> Result<Replay<'_>, SpoolError> {
        self.replay_from(0)
    }

    /// Like [`Spool::replay`], for the pending records with ids from `first` on: the
    /// segments before the one holding `first` are not read. The delivery side uses it
    /// to load a pixel's backlog that did not fit in memory.
    pub fn replay_from(&mut self, first: RecordId) -> Result<Replay<'_>, SpoolError> {
        self.flush()?;
        let next_segment = self
            .segments
            .partition_point(|s| s.first_id <= first)
            .saturating_sub(1);
        Ok(Replay {
            spool: self,
            next_segment,
            segment: 0,
            data: Vec::new(),
            off: 0,
            first,
        })
    }

    /// Group commit by the configured policy; returns the id up to which records may
    /// be acknowledged to clients. `Always` synced in `append`; `Interval` syncs when
    /// due ([`Spool::sync_due_at`] says when); `Never` only flushes the write buffer to
    /// the page cache, which survives a crash of capig but not of the machine (the
    /// meaning of that policy).
    pub fn commit(&mut self, now: Instant) -> Result<RecordId, SpoolError> {
        match self.cfg.fsync {
            FsyncPolicy::Always => Ok(self.durable_id),
            FsyncPolicy::Interval => self.sync_if_due(now),
            FsyncPolicy::Never => {
                self.flush()?;
                Ok(self.next_id - 1)
            }
        }
    }

    /// With `Interval` and unsynced changes: when [`Spool::commit`] will sync.
    pub fn sync_due_at(&self) -> Option<Instant> {
        if self.cfg.fsync != FsyncPolicy::Interval || !self.unsynced {
            return None;
        }
        let interval = Duration::from_millis(self.cfg.fsync_interval_ms);
        Some(self.last_sync.map_or_else(Instant::now, |t| t + interval))
    }

    /// Whether `id` is a record not yet acknowledged.
    pub fn is_pending(&self, id: RecordId) -> bool {
        let i = self.segments.partition_point(|s| s.first_id <= id);
        i > 0
            && matches!(
                self.segments[i - 1]
                    .slots
                    .get((id - self.segments[i - 1].first_id) as usize),
                Some(Slot::Pending { .. })
            )
    }

    /// Records and events not yet acknowledged (no scan, unlike [`Spool::stats`]).
    pub fn pending(&self) -> (u64, u64) {
        (self.records, self.events)
    }

    /// Bytes used against the cap, and the cap.
    pub fn usage(&self) -> (u64, u64) {
        (self.used, self.cfg.max_bytes)
    }

    /// Marks a record delivered (or dead-lettered). Returns false when it was not
    /// pending (unknown or already acknowledged). Deletes its segment when that was
    /// the segment's last pending record and it is not the current one.
    pub fn ack(&mut self, id: RecordId) -> Result<bool, SpoolError> {
        let i = self.segments.partition_point(|s| s.first_id <= id);
        if i == 0 {
            return Ok(false);
        }
        let segments = self.segments.len();
        let seg = &mut self.segments[i - 1];
        let Some(slot) = seg.slots.get_mut((id - seg.first_id) as usize) else {
            return Ok(false);
        };
        let Slot::Pending { events, .. } = *slot else {
            return Ok(false);
        };
        *slot = Slot::Acked;
        seg.pending -= 1;
        let emptied = seg.pending == 0 && i < segments;
        // The current segment fully delivered while the spool is past half its cap:
        // roll, so its space is given back now rather than when it fills up.
        let roll_current =
            seg.pending == 0 && i == segments && self.used > self.cfg.max_bytes / 2;
        self.records -= 1;
        self.events -= u64::from(events);
        self.acked_live += 1;
        self.ledger_buf.extend_from_slice(&ledger_entry(id));
        self.ledger_entries += 1;
        self.unsynced = true;
        if emptied {
            let seg = self.segments.remove(i - 1);
            fs::remove_file(&seg.path).map_err(io_at(&seg.path))?;
            self.used -= seg.bytes;
            self.acked_live -= seg.slots.iter().filter(|&&s| s == Slot::Acked).count() as u64;
            if self.ledger_entries > 4 * self.acked_live + LEDGER_SLACK {
                sync_dir(&self.dir)?;
                self.rewrite_ledger()?;
            }
        }
        if roll_current {
            self.roll()?;
        }
        if self.cfg.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok(true)
    }

    /// Makes every append and ack so far durable; returns the highest durable
    /// record id (0 if none).
    pub fn sync(&mut self) -> Result<RecordId, SpoolError> {
        self.flush()?;
        let seg = self.segments.last().expect("current segment");
        self.file.sync_data().map_err(io_at(&seg.path))?;
        let ledger_path = self.dir.join(LEDGER);
        if !self.ledger_buf.is_empty() {
            if let Err(e) = self.ledger.write_all(&self.ledger_buf) {
                // Cut a partial entry away: later entries must stay aligned.
                let _ = self.ledger.set_len(self.ledger_len);
                return Err(io_at(&ledger_path)(e));
            }
            self.ledger_len += self.ledger_buf.len() as u64;
            self.ledger_buf.clear();
        }
        // Acks reach the page cache at every sync (a crash of capig keeps them) but are
        // flushed to the disk at most once a second: a lost ack only means a batch is
        // delivered twice, so it is not worth an fdatasync per group commit.
        let now = Instant::now();
        if self.cfg.fsync == FsyncPolicy::Always
            || self.ledger_synced.is_none_or(|t| now.saturating_duration_since(t) >= LEDGER_SYNC_EVERY)
        {
            self.ledger.sync_data().map_err(io_at(&ledger_path))?;
            self.ledger_synced = Some(now);
        }
        self.durable_id = self.next_id - 1;
        self.unsynced = false;
        Ok(self.durable_id)
    }

    /// Group commit for `Interval`: syncs when there are unsynced changes and the
    /// interval has passed since the last sync here. Returns the durable id.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<RecordId, SpoolError> {
        let interval = Duration::from_millis(self.cfg.fsync_interval_ms);
        let due = self
            .last_sync
            .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        if self.unsynced && due {
            self.sync()?;
            self.last_sync = Some(now);
        }
        Ok(self.durable_id)
    }

    /// The highest record id known durable.
    pub fn durable_id(&self) -> RecordId {
        self.durable_id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counts and the oldest pending event time (a scan over pending records).
    pub fn stats(&self) -> SpoolStats {
        let oldest = self
            .segments
            .iter()
            .flat_map(|s| s.slots.iter())
            .filter_map(|s| match s {
                Slot::Pending { oldest, .. } => Some(*oldest),
                _ => None,
            })
            .min();
        SpoolStats {
            bytes: self.used,
            records: self.records,
            events: self.events,
            oldest_event_time: oldest,
            segments: self.segments.len() as u64,
            torn_tail_records: self.torn_tail_records,
            torn_tail_bytes: self.torn_tail_bytes,
            corrupt_records_skipped: self.corrupt_records_skipped,
            warnings: self.warnings.clone(),
        }
    }

    fn full(&self) -> SpoolError {
        SpoolError::Full {
            used: self.used,
            cap: self.cfg.max_bytes,
        }
    }

    /// Turns a write error into `Full` when the disk is full.
    fn write_error(&self, path: &Path, e: io::Error) -> SpoolError {
        if e.kind() == ErrorKind::StorageFull {
            self.full()
        } else {
            io_at(path)(e)
        }
    }

    /// Writes the buffer to the current segment. On error the file is cut back to
    /// its last whole record and the buffer kept, so no torn record sits in front
    /// of later ones.
    fn flush(&mut self) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            let path = self.segments.last().expect("current segment").path.clone();
            // Best effort: if even this fails, replay treats the rest as torn.
            let _ = self.file.set_len(self.written);
            let _ = io::Seek::seek(&mut self.file, io::SeekFrom::Start(self.written));
            return Err(self.write_error(&path, e));
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Closes the current segment (durably, whatever the policy, so that ids
    /// reported durable never depend on an older file) and starts a new one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let old = self.segments.last().expect("current segment");
        self.file.sync_data().map_err(io_at(&old.path))?;
        let path = self.dir.join(segment_name(self.next_id));
        let file = File::create(&path).map_err(|e| self.write_error(&path, e))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.written = 0;
        self.segments.push(Segment {
            first_id: self.next_id,
            path,
            bytes: 0,
            slots: Vec::new(),
            pending: 0,
        });
        let n = self.segments.len();
        if self.segments[n - 2].pending == 0 {
            let seg = self.segments.remove(n - 2);
            fs::remove_file(&seg.path).map_err(io_at(&seg.path))?;
            self.used -= seg.bytes;
            self.acked_live -= seg.slots.iter().filter(|&&s| s == Slot::Acked).count() as u64;
        }
        Ok(())
    }

    /// Rewrites the ledger with only the acks for records still on disk.
    fn rewrite_ledger(&mut self) -> Result<(), SpoolError> {
        let (ledger, entries) = write_ledger(&self.dir, &self.segments)?;
        self.ledger = ledger;
        self.ledger_entries = entries;
        self.ledger_len = entries * LEDGER_ENTRY as u64;
        self.ledger_buf.clear();
        Ok(())
    }
}

/// The iterator returned by [`Spool::replay`].
pub struct Replay<'a> {
    spool: &'a Spool,
    next_segment: usize,
    /// The segment `data` holds.
    segment: usize,
    data: Vec<u8>,
    off: usize,
    /// Records with smaller ids are skipped.
    first: RecordId,
}

impl Iterator for Replay<'_> {
    type Item = Result<Pending, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.off >= self.data.len() {
                let seg = self.spool.segments.get(self.next_segment)?;
                self.segment = self.next_segment;
                self.next_segment += 1;
                self.data.clear();
                self.off = 0;
                if seg.pending > 0 {
                    match File::open(&seg.path).and_then(|mut f| f.read_to_end(&mut self.data)) {
                        Ok(_) => {}
                        Err(e) => {
                            self.next_segment = self.spool.segments.len();
                            return Some(Err(io_at(&seg.path)(e)));
                        }
                    }
                }
                continue;
            }
            let rest = &self.data[self.off..];
            // Open checked these bytes; what does not check now is the corrupt
            // rest of a segment that open already skipped and counted.
            let Ok(len) = record::check(rest) else {
                self.off = self.data.len();
                continue;
            };
            self.off += len;
            let r = record::parse(rest, len);
            let seg = &self.spool.segments[self.segment];
            let slot = r
                .meta
                .id
                .checked_sub(seg.first_id)
                .and_then(|i| seg.slots.get(i as usize));
            if let (Some(Slot::Pending { .. }), true) = (slot, r.meta.id >= self.first) {
                return Some(Ok(Pending {
                    id: r.meta.id,
                    pixel: r.meta.pixel,
                    events: r.meta.events,
                    oldest_time: r.meta.oldest_time,
                    payload: r.payload.to_vec(),
                }));
            }
        }
    }
}

/// Writes a fresh ledger with the acks for records in `segments` (through a
/// temporary file and a rename, so a crash leaves the old or the new one) and
/// returns it open for appending, with its entry count.
fn write_ledger(dir: &Path, segments: &[Segment]) -> Result<(File, u64), SpoolError> {
    let tmp = dir.join(LEDGER_TMP);
    let path = dir.join(LEDGER);
    let mut out = Vec::new();
    for seg in segments {
        for (i, s) in seg.slots.iter().enumerate() {
            if *s == Slot::Acked {
                out.extend_from_slice(&ledger_entry(seg.first_id + i as u64));
            }
        }
    }
    File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&out)?;
            f.sync_data()
        })
        .map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)?;
    let ledger = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_at(&path))?;
    Ok((ledger, (out.len() / LEDGER_ENTRY) as u64))
}
