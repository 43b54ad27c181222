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
//! # A full disk
//! A full disk refuses new batches ([`SpoolError::Full`]) and must never cost an
//! acknowledged one, nor keep the spool full once there is room again:
//! - **The ack ledger cannot be starved.** Before a record is taken, its ack gets a
//!   slot in the ledger file: the file is kept at least as long as its written
//!   entries plus one slot per pending record, grown by `fallocate(2)` 4,096 slots
//!   (48 KiB) at a time, and acks are written in place into those slots. So when
//!   segments fill the disk, every ack still has its bytes: Meta's answers reach the
//!   ledger and a restart re-sends nothing Meta took. Preallocation was chosen over a
//!   "reserve file released when the disk is full" because a released reserve can be
//!   taken by anything else on the disk (other cores' overflow spools, the dead
//!   letters, other programs) before the ledger uses it, and over a fixed-size ledger
//!   because the slots needed grow with the records pending: reserving them when a
//!   record comes in ties the reserve to what can be acked. It costs 12 bytes per
//!   pending record and one `fallocate` per 4,096 appends. Limit: on copy-on-write
//!   filesystems (btrfs, ZFS) an overwrite needs new blocks, so the reserve is only
//!   as good as the filesystem's own headroom; where `fallocate` is not supported
//!   the reserve is written as zeros. Compaction writes a new ledger (with its
//!   reserve) beside the old one; on a full disk it is skipped and the old one
//!   stays, and a ledger write that still fails (a previous version's ledger kept
//!   on a full disk at open) keeps its acks buffered for the next sync instead of
//!   failing the commit: lost, they would only mean batches delivered twice.
//! - **Delivered segments are freed when the disk is full,** not only relative to
//!   `max_bytes`: once a write found the disk full, the current segment is freed as
//!   soon as every record in it is acked, and a write that hits `ENOSPC` frees it
//!   then and tries again if every record written to it is acked (records still in
//!   the write buffer may be pending: they move on into the freed file). Freeing the
//!   current segment needs no space: its file is cut to nothing (`ftruncate` +
//!   `fdatasync`) and renamed after the next id (if that rename fails the file keeps
//!   its name, which only has to be at or below its first record's id). A record
//!   refused by a full disk is taken out again, never left half written.
//! - **Room is noticed without a new append:** [`Spool::disk_short`] holds from the
//!   write that found the disk full until [`Spool::disk_has_room`] sees an eighth of
//!   the filesystem (at most 64 MiB) free again, whoever freed it; the spool writer
//!   asks it on its timer (see `pipeline`).
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
//! - `acks.ledger`: 12-byte slots. A used slot is an entry: the acknowledged record
//!   id (u64 LE) and the CRC32 of those 8 bytes (u32 LE). A free slot is all zeros
//!   (never a valid entry: the CRC32 of eight zero bytes is not zero). Entries are
//!   written in place, each into the first free slot after the last used one; the
//!   free slots after it are the preallocated reserve (see "A full disk"). Readers
//!   take every slot whose CRC checks and skip the rest (free, torn or corrupt), so
//!   the file is read the same whatever its reserve. Rewritten (through
//!   `acks.ledger.tmp` and a rename, with a fresh reserve) on open and when it grows
//!   well beyond the acks that still matter (those for records in segments that
//!   still exist). Format change (issue 11): before, the file held entries only and
//!   was appended to; a ledger of that format reads the same (it just has no
//!   reserve until its first rewrite), and an older capig reads the new one (it
//!   skips the zero slots) and rewrites it on open.

pub mod record;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, Write};
use std::os::unix::fs::FileExt;
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
/// The ledger's reserve grows by this many slots (48 KiB) when it runs short.
const LEDGER_GROW: u64 = 4096;
/// After a write found the disk full, the filesystem must have this share of its size
/// free (at most [`DISK_HEADROOM_MAX`]) before the spool counts as having room again.
const DISK_HEADROOM_DIV: u64 = 8;
const DISK_HEADROOM_MAX: u64 = 64 << 20;
/// The free space of a full disk is looked at no more often than this.
const DISK_CHECK_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// Segment files and acked records still in them count against this cap (the ack
    /// ledger and its reserve, 12 bytes per pending record, do not).
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
    /// The id after the last record written to the current segment's file: records
    /// from this one on are still in `buf`.
    flushed_next: RecordId,
    next_id: RecordId,
    durable_id: RecordId,
    unsynced: bool,
    last_sync: Option<Instant>,
    ledger: File,
    /// Acks not yet written to the ledger (whole entries).
    ledger_buf: Vec<u8>,
    /// Slots written in the ledger file; the next entry goes into slot `ledger_used`.
    ledger_used: u64,
    /// Slots in the ledger file (its length / 12): `ledger_used` written, the rest the
    /// reserve. Kept at least `ledger_used` + buffered acks + pending records.
    ledger_slots: u64,
    /// When the ledger was last `fdatasync`ed.
    ledger_synced: Option<Instant>,
    /// A ledger write failed for want of space; the acks stay buffered (said once).
    ledger_behind: bool,
    /// A write found the disk full; cleared by [`Spool::disk_has_room`].
    disk_short: bool,
    disk_checked: Option<Instant>,
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

fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == ErrorKind::StorageFull
}

/// Allocates `len` bytes of `file` from `offset` on (extending it), so that writing
/// there later needs no new space: `fallocate(2)`, or zeros written where the
/// filesystem does not support it.
fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        use nix::fcntl::{fallocate, FallocateFlags};
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::from(ErrorKind::InvalidInput));
        };
        match fallocate(file.as_raw_fd(), FallocateFlags::empty(), off, n) {
            Ok(()) => return Ok(()),
            Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    let zeros = [0u8; 64 << 10];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Free bytes for unprivileged writers on the filesystem holding `dir`, and its size.
fn disk_space(dir: &Path) -> io::Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let frsize = st.fragment_size() as u64;
    Ok((
        st.blocks_available() as u64 * frsize,
        st.blocks() as u64 * frsize,
    ))
}

fn ledger_entry(id: RecordId) -> [u8; LEDGER_ENTRY] {
    let id = id.to_le_bytes();
    let mut e = [0; LEDGER_ENTRY];
    e[..8].copy_from_slice(&id);
    e[8..].copy_from_slice(&crc32fast::hash(&id).to_le_bytes());
    e
}

/// The acked ids in a ledger, and the slot after its last one that is not free (all
/// zeros); torn or corrupt entries are ignored (at worst a batch is delivered twice),
/// and so are free slots (an all-zero slot never checks: the CRC32 of eight zero
/// bytes is not zero).
fn read_ledger(path: &Path) -> Result<(HashSet<RecordId>, u64), SpoolError> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data).map_err(io_at(path))?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(path)(e)),
    }
    let mut acked = HashSet::new();
    let mut end = 0;
    for (i, e) in data.chunks_exact(LEDGER_ENTRY).enumerate() {
        if e.iter().any(|&b| b != 0) {
            end = i as u64 + 1;
        }
        let mut id = [0; 8];
        id.copy_from_slice(&e[..8]);
        if e[8..] == crc32fast::hash(&id).to_le_bytes() {
            acked.insert(u64::from_le_bytes(id));
        }
    }
    Ok((acked, end))
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
        let (acked, old_ledger_end) = read_ledger(&ledger_path)?;

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
        // The rewritten ledger reserves a slot for the ack of every pending record. On a
        // full disk it cannot be written next to the old one: keep the old one and write
        // in place after its last entry (its free slots, if any, are still reserved).
        let (ledger, ledger_used, ledger_slots, ledger_behind) =
            match write_ledger(dir, &kept, records) {
                Ok((file, entries, slots)) => (file, entries, slots, false),
                Err(SpoolError::Io { source, .. }) if is_disk_full(&source) => {
                    let _ = fs::remove_file(dir.join(LEDGER_TMP));
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&ledger_path)
                        .map_err(io_at(&ledger_path))?;
                    let len = file.metadata().map_err(io_at(&ledger_path))?.len();
                    warnings.push(format!(
                        "spool: the disk is full: kept the ack ledger {} as it was",
                        ledger_path.display()
                    ));
                    let slots = len / LEDGER_ENTRY as u64;
                    (file, old_ledger_end, slots.max(old_ledger_end), true)
                }
                Err(e) => return Err(e),
            };

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
            flushed_next: next_id,
            next_id,
            durable_id: max_id,
            unsynced: false,
            last_sync: None,
            ledger,
            ledger_buf: Vec::new(),
            ledger_used,
            ledger_slots,
            ledger_synced: None,
            ledger_behind,
            disk_short: ledger_behind,
            disk_checked: None,
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
            // Everything in the current segment was delivered: free it, so its bytes
            // stop counting against the cap.
            self.recycle_current()?;
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
        // The ack of this record gets its ledger slot before the record is taken, so a
        // disk that fills up with segments can never keep an ack from being written.
        if let Err(e) = self.reserve_ledger(1) {
            if !(matches!(e, SpoolError::Full { .. }) && self.recycle_current()?) {
                return Err(e);
            }
            self.reserve_ledger(1)?;
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
        let flush_at = FLUSH_AT.min((self.cfg.segment_bytes / 8) as usize);
        if self.cfg.fsync == FsyncPolicy::Always || self.buf.len() >= flush_at {
            if let Err(e) = self.flush() {
                // The record is not in the file, and the caller is told so: undo it.
                self.buf.truncate(mark);
                self.next_id -= 1;
                let seg = self.segments.last_mut().expect("current segment");
                seg.slots.pop();
                seg.pending -= 1;
                seg.bytes -= len;
                self.used -= len;
                self.records -= 1;
                self.events -= u64::from(events);
                return Err(e);
            }
        }
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
        // The current segment fully delivered while the spool is past half its cap, or
        // after the disk was found full: free it now rather than when it fills up.
        let free_current = seg.pending == 0
            && i == segments
            && (self.used > self.cfg.max_bytes / 2 || self.disk_short);
        self.records -= 1;
        self.events -= u64::from(events);
        self.acked_live += 1;
        self.ledger_buf.extend_from_slice(&ledger_entry(id));
        self.unsynced = true;
        if emptied {
            let seg = self.segments.remove(i - 1);
            fs::remove_file(&seg.path).map_err(io_at(&seg.path))?;
            self.used -= seg.bytes;
            self.acked_live -= seg.slots.iter().filter(|&&s| s == Slot::Acked).count() as u64;
            if self.ledger_entries() > 4 * self.acked_live + LEDGER_SLACK {
                sync_dir(&self.dir)?;
                self.rewrite_ledger()?;
            }
        }
        if free_current {
            self.recycle_current()?;
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
            // In place, into reserved slots. A torn write is simply written again at
            // the same offset, so later entries stay aligned.
            let at = self.ledger_used * LEDGER_ENTRY as u64;
            match self.ledger.write_all_at(&self.ledger_buf, at) {
                Ok(()) => {
                    self.ledger_used += (self.ledger_buf.len() / LEDGER_ENTRY) as u64;
                    self.ledger_slots = self.ledger_slots.max(self.ledger_used);
                    self.ledger_buf.clear();
                    if self.ledger_behind {
                        self.ledger_behind = false;
                        tracing::info!("spool: the ack ledger is written again");
                    }
                }
                // Only a ledger without its reserve (kept as it was on a full disk) can
                // get here. The records are durable all the same; the acks wait for
                // room (lost, they would only mean batches delivered twice).
                Err(e) if is_disk_full(&e) => {
                    self.disk_short = true;
                    if !self.ledger_behind {
                        self.ledger_behind = true;
                        tracing::warn!(
                            "spool: the disk is full: {} ack(s) wait to be written to {}",
                            self.ledger_buf.len() / LEDGER_ENTRY,
                            ledger_path.display()
                        );
                    }
                }
                Err(e) => return Err(io_at(&ledger_path)(e)),
            }
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
        if is_disk_full(&e) {
            self.full()
        } else {
            io_at(path)(e)
        }
    }

    /// Whether a write found the disk full and [`Spool::disk_has_room`] has not seen
    /// enough free space since.
    pub fn disk_short(&self) -> bool {
        self.disk_short
    }

    /// Whether the disk has room for new batches: true unless a write found it full;
    /// then true again (and the flag cleared) once the filesystem has an eighth of its
    /// size free, at most 64 MiB, whoever freed it. Looks (one `statvfs`) at most every
    /// 100 ms; cheap enough for a timer.
    pub fn disk_has_room(&mut self) -> bool {
        if !self.disk_short {
            return true;
        }
        let now = Instant::now();
        if self
            .disk_checked
            .is_some_and(|t| now.saturating_duration_since(t) < DISK_CHECK_EVERY)
        {
            return false;
        }
        self.disk_checked = Some(now);
        let Ok((free, size)) = disk_space(&self.dir) else {
            return false;
        };
        if free >= (size / DISK_HEADROOM_DIV).min(DISK_HEADROOM_MAX) {
            self.disk_short = false;
        }
        !self.disk_short
    }

    /// Free bytes on the spool's filesystem (for messages).
    pub fn disk_free(&self) -> Option<u64> {
        disk_space(&self.dir).ok().map(|(free, _)| free)
    }

    fn ledger_entries(&self) -> u64 {
        self.ledger_used + (self.ledger_buf.len() / LEDGER_ENTRY) as u64
    }

    /// Makes sure the ledger has a free slot for the ack of every pending record, plus
    /// `extra` more; grows it by [`LEDGER_GROW`] slots past that when it has not.
    fn reserve_ledger(&mut self, extra: u64) -> Result<(), SpoolError> {
        let need = self.ledger_entries() + self.records + extra;
        if self.ledger_slots >= need {
            return Ok(());
        }
        let slots = need + LEDGER_GROW;
        let entry = LEDGER_ENTRY as u64;
        match preallocate(&self.ledger, self.ledger_slots * entry, (slots - self.ledger_slots) * entry) {
            Ok(()) => {
                self.ledger_slots = slots;
                Ok(())
            }
            Err(e) => {
                if is_disk_full(&e) {
                    self.disk_short = true;
                }
                Err(self.write_error(&self.dir.join(LEDGER), e))
            }
        }
    }

    /// Writes the buffer to the current segment. On error the file is cut back to
    /// its last whole record and the buffer kept, so no torn record sits in front
    /// of later ones. On a full disk it first frees the current segment's file if
    /// every record in it was delivered ([`Spool::recycle_current`]) and tries again.
    fn flush(&mut self) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let e = match self.write_buf() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if is_disk_full(&e) {
            self.disk_short = true;
            if self.recycle_current()? {
                if let Err(e) = self.write_buf() {
                    let path = self.segments.last().expect("current segment").path.clone();
                    return Err(self.write_error(&path, e));
                }
                return Ok(());
            }
        }
        let path = self.segments.last().expect("current segment").path.clone();
        Err(self.write_error(&path, e))
    }

    fn write_buf(&mut self) -> io::Result<()> {
        if let Err(e) = self.file.write_all(&self.buf) {
            // Best effort: if even this fails, replay treats the rest as torn.
            let _ = self.file.set_len(self.written);
            let _ = self.file.seek(io::SeekFrom::Start(self.written));
            return Err(e);
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        self.flushed_next = self.next_id;
        Ok(())
    }

    /// Frees the current segment's file when every record written to it was
    /// delivered (records still in the write buffer may be pending): the file is cut
    /// to nothing, which needs no space, and renamed after the first record still
    /// buffered (the next id when none is), so the segment goes on from there. Returns
    /// whether anything was freed.
    fn recycle_current(&mut self) -> Result<bool, SpoolError> {
        let seg = self.segments.last_mut().expect("current segment");
        let in_file = (self.flushed_next - seg.first_id) as usize;
        if self.written == 0
            || seg.slots[..in_file]
                .iter()
                .any(|s| matches!(s, Slot::Pending { .. }))
        {
            return Ok(false);
        }
        // Durably cut before anything else happens (a later ledger rewrite drops the
        // acks of these records, so they must never come back).
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .and_then(|()| self.file.seek(io::SeekFrom::Start(0)).map(drop))
            .map_err(io_at(&seg.path))?;
        let freed = self.written;
        let acked = seg.slots[..in_file]
            .iter()
            .filter(|&&s| s == Slot::Acked)
            .count() as u64;
        seg.bytes -= freed;
        self.used -= freed;
        self.acked_live -= acked;
        self.written = 0;
        let path = self.dir.join(segment_name(self.flushed_next));
        let renamed = fs::rename(&seg.path, &path).and_then(|()| super::sync_dir(&self.dir));
        if renamed.is_ok() || path.exists() {
            seg.slots.drain(..in_file);
            seg.first_id = self.flushed_next;
            seg.path = path;
        } else {
            // The old name stays (a record's id only has to be above it): the freed
            // ids become absent slots, as open would find them.
            for s in &mut seg.slots[..in_file] {
                *s = Slot::Absent;
            }
        }
        Ok(true)
    }

    /// Closes the current segment (durably, whatever the policy, so that ids
    /// reported durable never depend on an older file) and starts a new one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let old = self.segments.last().expect("current segment");
        self.file.sync_data().map_err(io_at(&old.path))?;
        let path = self.dir.join(segment_name(self.next_id));
        let file = match File::create(&path) {
            Ok(f) => f,
            Err(e) => {
                self.disk_short |= is_disk_full(&e);
                return Err(self.write_error(&path, e));
            }
        };
        sync_dir(&self.dir)?;
        self.file = file;
        self.written = 0;
        self.flushed_next = self.next_id;
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

    /// Rewrites the ledger with only the acks for records still on disk, and the
    /// reserve. On a full disk the old ledger stays (its reserve still holds).
    fn rewrite_ledger(&mut self) -> Result<(), SpoolError> {
        match write_ledger(&self.dir, &self.segments, self.records) {
            Ok((ledger, entries, slots)) => {
                self.ledger = ledger;
                self.ledger_used = entries;
                self.ledger_slots = slots;
                self.ledger_buf.clear();
                Ok(())
            }
            Err(SpoolError::Io { source, .. }) if is_disk_full(&source) => {
                let _ = fs::remove_file(self.dir.join(LEDGER_TMP));
                self.disk_short = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
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

/// Writes a fresh ledger with the acks for records in `segments` and a reserve of
/// free slots for `pending` more acks plus [`LEDGER_GROW`] (through a temporary file
/// and a rename, so a crash leaves the old or the new one) and returns it open for
/// writing in place, with its entry count and its slots.
fn write_ledger(
    dir: &Path,
    segments: &[Segment],
    pending: u64,
) -> Result<(File, u64, u64), SpoolError> {
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
    let entries = (out.len() / LEDGER_ENTRY) as u64;
    let slots = entries + pending + LEDGER_GROW;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&out)?;
            preallocate(&f, out.len() as u64, (slots - entries) * LEDGER_ENTRY as u64)?;
            f.sync_data()?;
            Ok(f)
        })
        .map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)?;
    Ok((file, entries, slots))
}
