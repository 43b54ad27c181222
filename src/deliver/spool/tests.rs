//! Spool tests on a real temporary directory: unit cases, then a model-based test
//! that drives the spool and an in-memory model with random operations, crashes
//! (truncation at random offsets past the last sync) and restarts.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("capig-spool-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cfg(fsync: FsyncPolicy, segment_bytes: u64, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        fsync,
        fsync_interval_ms: 10,
        max_bytes,
        segment_bytes,
    }
}

fn open(dir: &TempDir, c: &SpoolConfig) -> (Spool, Vec<Pending>) {
    let mut s = Spool::open(&dir.0, c.clone()).expect("open spool");
    let p = s.replay().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (s, p)
}

/// The segment files on disk, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn ids(p: &[Pending]) -> Vec<RecordId> {
    p.iter().map(|p| p.id).collect()
}

fn payload(i: u64) -> Vec<u8> {
    format!("{{\"event_id\":\"e{i}\"}}").into_bytes()
}

#[test]
fn appends_replay_in_order_and_ids_continue() {
    for policy in FsyncPolicy::ALL {
        let dir = TempDir::new("replay");
        let c = cfg(policy, 300, 1 << 20);
        let (mut s, p) = open(&dir, &c);
        assert!(p.is_empty());
        for i in 1..=10 {
            assert_eq!(s.append(7, 2, 1_700_000_000 + i, &payload(i)).unwrap(), i);
        }
        assert_eq!(s.sync().unwrap(), 10);
        assert_eq!(s.stats().records, 10);
        assert_eq!(s.stats().events, 20);
        assert_eq!(s.stats().oldest_event_time, Some(1_700_000_001));
        drop(s);
        let (mut s, p) = open(&dir, &c);
        assert_eq!(ids(&p), (1..=10).collect::<Vec<_>>(), "{policy:?}");
        for (i, p) in (1..).zip(&p) {
            assert_eq!(
                (p.pixel, p.events, p.oldest_time, &p.payload),
                (7, 2, 1_700_000_000 + i, &payload(i))
            );
        }
        assert_eq!(s.append(7, 1, 0, b"").unwrap(), 11);
    }
}

#[test]
fn acked_records_are_not_replayed() {
    // (records appended, ids acked, ids replayed)
    let cases: &[(u64, &[u64], &[u64])] = &[
        (5, &[], &[1, 2, 3, 4, 5]),
        (5, &[2, 4], &[1, 3, 5]),
        (5, &[1, 2, 3, 4, 5], &[]),
        (5, &[5, 5, 9, 0], &[1, 2, 3, 4]),
    ];
    for &(n, acks, want) in cases {
        let dir = TempDir::new("ack");
        let c = cfg(FsyncPolicy::Interval, 1 << 20, 1 << 20);
        let (mut s, _) = open(&dir, &c);
        for i in 1..=n {
            s.append(1, 1, 0, &payload(i)).unwrap();
        }
        let mut seen = BTreeSet::new();
        for &a in acks {
            let fresh = a >= 1 && a <= n && seen.insert(a);
            assert_eq!(s.ack(a).unwrap(), fresh, "ack {a}");
        }
        s.sync().unwrap();
        drop(s);
        let (s, p) = open(&dir, &c);
        assert_eq!(ids(&p), want);
        assert_eq!(s.stats().records, want.len() as u64);
        // And once more: the rewritten ledger still has the acks.
        drop(s);
        assert_eq!(ids(&open(&dir, &c).1), want);
    }
}

#[test]
fn a_fully_acked_old_segment_is_deleted_from_disk() {
    let dir = TempDir::new("delete");
    let rec = record::encoded_len(payload(1).len()) as u64;
    // Two records per segment.
    let c = cfg(FsyncPolicy::Never, 2 * rec, 1 << 20);
    let (mut s, _) = open(&dir, &c);
    for i in 1..=5 {
        s.append(1, 1, 0, &payload(i)).unwrap();
    }
    s.sync().unwrap();
    let first = dir.0.join(segment_name(1));
    assert_eq!(segment_files(&dir.0).len(), 3);
    assert!(first.exists());
    s.ack(1).unwrap();
    assert!(first.exists(), "one record in it is still pending");
    s.ack(2).unwrap();
    assert!(!first.exists(), "every record in it is acked");
    assert_eq!(segment_files(&dir.0).len(), 2);
    assert_eq!(s.stats().segments, 2);
    assert_eq!(s.stats().bytes, 3 * rec);
    // The current segment stays even when all of it is acked.
    s.ack(5).unwrap();
    assert!(dir.0.join(segment_name(5)).exists());
}

#[test]
fn a_full_spool_refuses_new_batches_and_keeps_old_ones() {
    let dir = TempDir::new("full");
    let rec = record::encoded_len(payload(1).len()) as u64;
    let c = cfg(FsyncPolicy::Always, 1 << 20, 3 * rec + 10);
    let (mut s, _) = open(&dir, &c);
    for i in 1..=3 {
        s.append(1, 1, 0, &payload(i)).unwrap();
    }
    let e = s.append(1, 1, 0, &payload(4)).unwrap_err();
    assert!(matches!(e, SpoolError::Full { used, .. } if used == 3 * rec));
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(msg.contains("the spool is full"), "{msg}");
    assert!(msg.contains("raise spool.max_bytes or free disk"), "{msg}");
    // An empty batch still takes a header.
    assert!(matches!(
        s.append(1, 0, 0, b""),
        Err(SpoolError::Full { .. })
    ));
    drop(s);
    let (_, p) = open(&dir, &c);
    assert_eq!(ids(&p), [1, 2, 3]);
}

#[test]
fn a_batch_larger_than_a_segment_is_refused_for_good() {
    let dir = TempDir::new("large");
    let c = cfg(FsyncPolicy::Never, 100, 1 << 20);
    let (mut s, _) = open(&dir, &c);
    let e = s.append(1, 1, 0, &[b'x'; 57]).unwrap_err();
    assert!(
        matches!(e, SpoolError::TooLarge { len: 101, max: 100 }),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert_eq!(s.append(1, 1, 0, &[b'x'; 56]).unwrap(), 1);
}

#[test]
fn a_torn_tail_is_cut_at_every_offset() {
    let rec = record::encoded_len(payload(1).len());
    for cut in 0..rec {
        let dir = TempDir::new("torn");
        let c = cfg(FsyncPolicy::Never, 1 << 20, 1 << 20);
        let (mut s, _) = open(&dir, &c);
        for i in 1..=3 {
            s.append(1, 1, 0, &payload(i)).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        let seg = dir.0.join(segment_name(1));
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len((2 * rec + cut) as u64).unwrap();
        let (mut s, p) = open(&dir, &c);
        assert_eq!(ids(&p), [1, 2], "cut at {cut}");
        let st = s.stats();
        assert_eq!(
            (st.torn_tail_records, st.torn_tail_bytes),
            (u64::from(cut > 0), cut as u64)
        );
        assert_eq!(st.warnings.len(), usize::from(cut > 0));
        assert_eq!(fs::metadata(&seg).unwrap().len(), 2 * rec as u64);
        // Ids go on after the highest seen.
        assert_eq!(s.append(1, 1, 0, b"").unwrap(), 3);
    }
}

#[test]
fn corruption_in_an_older_segment_skips_the_rest_of_it() {
    let rec = record::encoded_len(payload(1).len());
    // (byte to flip in segment 1, ids replayed)
    let cases: &[(usize, &[u64])] = &[
        (0, &[4, 5, 6]),
        (rec + 20, &[1, 4, 5, 6]),
        (2 * rec + HEADER_LEN, &[1, 2, 4, 5, 6]),
    ];
    for &(at, want) in cases {
        let dir = TempDir::new("corrupt");
        let c = cfg(FsyncPolicy::Never, 3 * rec as u64, 1 << 20);
        let (mut s, _) = open(&dir, &c);
        for i in 1..=6 {
            s.append(1, 1, 0, &payload(i)).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        let seg = dir.0.join(segment_name(1));
        let mut data = fs::read(&seg).unwrap();
        data[at] ^= 0x40;
        fs::write(&seg, data).unwrap();
        let (s, p) = open(&dir, &c);
        assert_eq!(ids(&p), want, "flip at {at}");
        let st = s.stats();
        assert_eq!((st.corrupt_records_skipped, st.torn_tail_records), (1, 0));
        assert!(
            !st.warnings[0].contains("event_id"),
            "no payload in warnings"
        );
    }
}

#[test]
fn sync_if_due_groups_commits() {
    let dir = TempDir::new("due");
    let c = cfg(FsyncPolicy::Interval, 1 << 20, 1 << 20);
    let (mut s, _) = open(&dir, &c);
    let t0 = Instant::now();
    // (ms since t0, append before?, durable id after)
    let steps: &[(u64, bool, u64)] = &[
        (0, false, 0),
        (0, true, 1),
        (5, true, 1),
        (9, true, 1),
        (10, false, 3),
        (15, true, 3),
        (30, false, 4),
        (60, false, 4),
    ];
    for &(ms, append, want) in steps {
        if append {
            s.append(1, 1, 0, b"{}").unwrap();
        }
        let got = s.sync_if_due(t0 + Duration::from_millis(ms)).unwrap();
        assert_eq!(got, want, "at {ms} ms");
    }
}

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    pixel: u64,
    events: u32,
    oldest: u64,
    payload: Vec<u8>,
}

/// What the spool must hold: every record appended and not lost, and which of
/// them were acked (and whether that ack was synced).
#[derive(Default)]
struct Model {
    records: BTreeMap<RecordId, Rec>,
    acked: BTreeSet<RecordId>,
    acked_synced: BTreeSet<RecordId>,
    durable: RecordId,
    /// No id at or below this may be handed out again.
    floor: RecordId,
    /// The current segment file and its length, and the ledger's written length, at
    /// the last sync: a crash may only lose what was written beyond these.
    synced_segment: Option<(PathBuf, u64)>,
    synced_ledger: u64,
}

impl Model {
    fn note_synced(&mut self, s: &Spool) {
        self.durable = s.durable_id();
        let last = segment_files(s.dir()).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        self.synced_segment = Some((last, len));
        self.synced_ledger = s.ledger_used * LEDGER_ENTRY as u64;
        self.acked_synced = self.acked.clone();
    }

    /// Compares what a reopened spool replayed with the model, then adopts it.
    fn restart(&mut self, s: &Spool, p: &[Pending], seed: u64) {
        let got = ids(p);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "seed {seed}: order");
        for p in p {
            let want = self.records.get(&p.id);
            let rec = Rec {
                pixel: p.pixel,
                events: p.events,
                oldest: p.oldest_time,
                payload: p.payload.clone(),
            };
            assert_eq!(want, Some(&rec), "seed {seed}: record {} differs", p.id);
            assert!(
                !self.acked_synced.contains(&p.id),
                "seed {seed}: acked {}",
                p.id
            );
        }
        let present: BTreeSet<RecordId> = got.iter().copied().collect();
        let mut lost = None;
        for &id in self.records.keys() {
            if self.acked.contains(&id) || present.contains(&id) {
                continue;
            }
            assert!(id > self.durable, "seed {seed}: durable record {id} lost");
            lost.get_or_insert(id);
        }
        if let Some(lost) = lost {
            assert!(
                got.last().is_none_or(|&last| last < lost),
                "seed {seed}: record {lost} lost but a later one survived"
            );
        }
        self.floor = self
            .floor
            .max(got.last().copied().unwrap_or(0))
            .max(self.acked_synced.last().copied().unwrap_or(0));
        // Open may keep more ids taken than the model needs (a freed segment's name
        // still counts), never fewer.
        assert!(s.durable_id() >= self.floor, "seed {seed}: ids go back");
        self.floor = s.durable_id();
        self.records.retain(|id, _| present.contains(id));
        self.acked.clear();
        self.acked_synced.clear();
        self.durable = self.floor;
        // Open synced the ledger it rewrote; the new segment is empty.
        self.synced_segment = None;
        self.synced_ledger = s.ledger_used * LEDGER_ENTRY as u64;
    }
}

/// Cuts `path` at a random length in `from..=its length`.
fn cut_file(rng: &mut Rng, path: &Path, from: u64) {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len <= from {
        return;
    }
    let at = from + rng.below(len - from + 1);
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(at)
        .unwrap();
}

/// Zeroes `path` from a random offset in `from..=its length` to its end.
fn zero_file(rng: &mut Rng, path: &Path, from: u64) {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len <= from {
        return;
    }
    let at = from + rng.below(len - from + 1);
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0; (len - at) as usize], at).unwrap();
}

fn run_model(seed: u64, policy: FsyncPolicy, max_bytes: u64, ops: usize) {
    const SEGMENT: u64 = 4096;
    let dir = TempDir::new("model");
    let c = cfg(policy, SEGMENT, max_bytes);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut spool, p) = open(&dir, &c);
    assert!(p.is_empty());
    let mut m = Model::default();
    let mut stats = [0u64; 6];
    let mut torn = 0;
    for _ in 0..ops {
        match rng.below(100) {
            0..=44 => {
                let len = match rng.below(10) {
                    0 => 0,
                    1 => SEGMENT - HEADER_LEN as u64 - rng.below(64),
                    _ => rng.below(600),
                } as usize;
                let fill = rng.next();
                let payload: Vec<u8> = (0..len).map(|i| (fill >> (i % 8 * 8)) as u8).collect();
                let rec = Rec {
                    pixel: rng.below(3) + 1,
                    events: rng.below(1000) as u32,
                    oldest: 1_700_000_000 + rng.below(1000),
                    payload,
                };
                match spool.append(rec.pixel, rec.events, rec.oldest, &rec.payload) {
                    Ok(id) => {
                        let prev = m.records.keys().last().copied().unwrap_or(0);
                        assert!(id > prev.max(m.floor), "seed {seed}: id {id} reused");
                        m.records.insert(id, rec);
                        stats[0] += 1;
                    }
                    Err(SpoolError::Full { used, cap }) => {
                        assert!(used + record::encoded_len(len) as u64 > cap);
                        stats[1] += 1;
                    }
                    Err(e) => panic!("seed {seed}: {e}"),
                }
            }
            45..=74 => {
                let pending: Vec<RecordId> = m
                    .records
                    .keys()
                    .filter(|id| !m.acked.contains(id))
                    .copied()
                    .collect();
                if !pending.is_empty() {
                    let id = pending[rng.below(pending.len() as u64) as usize];
                    assert!(spool.ack(id).unwrap(), "seed {seed}: ack {id}");
                    assert!(!spool.ack(id).unwrap());
                    m.acked.insert(id);
                    stats[2] += 1;
                }
            }
            75..=89 => {
                let d = spool.sync().unwrap();
                assert_eq!(
                    d,
                    m.records.keys().last().copied().unwrap_or(0).max(m.floor)
                );
                m.note_synced(&spool);
                stats[3] += 1;
                // Replay while running sees exactly the unacked records.
                let live: Vec<(RecordId, &Rec)> = m
                    .records
                    .iter()
                    .filter(|(id, _)| !m.acked.contains(id))
                    .map(|(&id, r)| (id, r))
                    .collect();
                let replayed: Vec<Pending> = spool.replay().unwrap().map(Result::unwrap).collect();
                assert_eq!(replayed.len(), live.len(), "seed {seed}: replay");
                for (p, (id, r)) in replayed.iter().zip(live) {
                    assert_eq!((p.id, &p.payload, p.events), (id, &r.payload, r.events));
                }
            }
            90..=95 => {
                // Crash: what was buffered is gone; the page cache may lose any
                // suffix written since the last sync.
                drop(spool);
                let last = segment_files(&dir.0).pop().unwrap();
                let from = match &m.synced_segment {
                    Some((p, len)) if *p == last => *len,
                    _ => 0,
                };
                cut_file(&mut rng, &last, from);
                match rng.below(3) {
                    // Entries written in place since the last sync fall back to the
                    // reserve's zeros, from any byte on (a torn entry).
                    0 => zero_file(&mut rng, &dir.0.join(LEDGER), m.synced_ledger),
                    // Or the file's length is lost too (its reserve with it).
                    1 => cut_file(&mut rng, &dir.0.join(LEDGER), m.synced_ledger),
                    _ => {}
                }
                let (s, p) = open(&dir, &c);
                m.restart(&s, &p, seed);
                torn += s.stats().torn_tail_records;
                spool = s;
                stats[4] += 1;
            }
            _ => {
                drop(spool);
                let (s, p) = open(&dir, &c);
                m.restart(&s, &p, seed);
                spool = s;
                stats[5] += 1;
            }
        }
        if policy == FsyncPolicy::Always {
            m.note_synced(&spool);
        }
        // Every pending record has its ack's slot reserved in the ledger file.
        assert!(
            spool.ledger_slots >= spool.ledger_entries() + spool.records,
            "seed {seed}: ledger reserve"
        );
        assert_eq!(
            fs::metadata(dir.0.join(LEDGER)).unwrap().len(),
            spool.ledger_slots * LEDGER_ENTRY as u64,
            "seed {seed}: ledger length"
        );
        let st = spool.stats();
        let live = m.records.keys().filter(|id| !m.acked.contains(id));
        assert_eq!(st.records, live.count() as u64, "seed {seed}");
        assert!(st.bytes <= max_bytes, "seed {seed}");
    }
    // Every kind of operation happened (no `Full` without a cap), and crashes
    // did cut torn tails (under `Always` nothing is unsynced, so nothing to cut).
    let full_expected = max_bytes != u64::MAX;
    for (i, &n) in stats.iter().enumerate() {
        assert!(
            n > 0 || (i == 1 && !full_expected),
            "seed {seed}: {stats:?}"
        );
    }
    assert_eq!(
        torn > 0,
        policy != FsyncPolicy::Always,
        "seed {seed}: {torn} torn"
    );
}

#[test]
fn model_interval() {
    for seed in 1..=4 {
        run_model(seed, FsyncPolicy::Interval, 48 * 1024, 3000);
    }
}

#[test]
fn model_never_roomy() {
    for seed in 11..=12 {
        run_model(seed, FsyncPolicy::Never, u64::MAX, 3000);
    }
}

#[test]
fn model_always() {
    run_model(21, FsyncPolicy::Always, 32 * 1024, 1000);
}

#[test]
fn a_full_disk_is_reported_as_a_full_spool() {
    let dir = TempDir::new("enospc");
    let (s, _) = open(&dir, &cfg(FsyncPolicy::Never, 4096, 1 << 20));
    // (OS error, is it `Full`?)
    let cases = [
        (io::Error::from(ErrorKind::StorageFull), true),
        (io::Error::from_raw_os_error(28), cfg!(target_os = "linux")),
        (io::Error::from(ErrorKind::PermissionDenied), false),
    ];
    for (e, full) in cases {
        let kind = e.kind();
        let got = s.write_error(&dir.0, e);
        assert_eq!(matches!(got, SpoolError::Full { .. }), full, "{kind:?}");
        assert!(got.is_retryable());
    }
}

/// A tmpfs of `bytes` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
    _dir: TempDir,
}

impl Tmpfs {
    /// `None` (the reason printed) where this process may not mount; with `CI=true`
    /// that fails the test instead, since CI runs as root.
    fn mount(name: &str, bytes: u64) -> Option<Tmpfs> {
        let dir = TempDir::new(name);
        let mnt = dir.0.join("disk");
        fs::create_dir_all(&mnt).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "capig-test"])
            .arg(&mnt)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { mnt, _dir: dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "cannot mount a tmpfs under CI (it runs as root): {why}"
        );
        eprintln!("skipped: cannot mount a tmpfs here ({why}); run as root to test a really full disk");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}

/// Appends 4 KiB records until the disk refuses one; returns their ids.
fn fill_disk(s: &mut Spool, seed: u64) -> Vec<RecordId> {
    let mut ids = Vec::new();
    for i in 0..10_000 {
        let payload = vec![b'a' + ((seed + i) % 26) as u8; 4096];
        match s.append(1, 1, 1_700_000_000, &payload) {
            Ok(id) => ids.push(id),
            Err(SpoolError::Full { .. }) => {
                assert!(s.disk_short(), "refused for the disk, not the cap");
                return ids;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the disk never filled");
}

#[test]
fn on_a_full_tmpfs_acks_are_still_written_and_delivered_segments_are_freed() {
    let Some(disk) = Tmpfs::mount("tmpfs-ledger", 512 << 10) else {
        return;
    };
    let dir = disk.mnt.join("spool");
    // One big segment and no cap: the disk fills first, inside the current segment
    // (the default 64 MiB segment on a small disk).
    let c = cfg(FsyncPolicy::Always, 64 << 20, u64::MAX);
    let mut s = Spool::open(&dir, c.clone()).unwrap();
    let first = fill_disk(&mut s, 0);
    assert!(first.len() > 50, "{} records before the disk filled", first.len());
    // The refused append left no torn record: the file holds exactly the records.
    let seg = segment_files(&dir).pop().unwrap();
    assert_eq!(fs::metadata(&seg).unwrap().len(), s.usage().0);

    // Meta takes all but the last: every ack reaches the ledger although the disk
    // is full, and the segment stays (one record in it is pending).
    for id in &first[..first.len() - 1] {
        assert!(s.ack(*id).unwrap());
    }
    s.sync().unwrap();
    assert!(!s.ledger_behind, "the acks were written");
    assert!(!s.disk_has_room(), "nothing was freed yet");
    let (_, p) = open_again(s, &dir, &c);
    assert_eq!(ids(&p), vec![*first.last().unwrap()], "a restart re-sends only the pending one");

    // Meta takes the last one: the old segment goes. Fill the disk again, now
    // inside the current segment, and Meta takes everything: the current segment,
    // fully delivered, is freed at the last ack; the disk has room at once.
    let mut s = Spool::open(&dir, c.clone()).unwrap();
    assert!(s.ack(*first.last().unwrap()).unwrap());
    let more = fill_disk(&mut s, 1);
    assert!(more.len() > 50);
    for id in &more {
        assert!(s.ack(*id).unwrap());
    }
    s.sync().unwrap();
    assert_eq!(s.usage().0, 0, "delivered segments freed");
    let on_disk: u64 = segment_files(&dir).iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert_eq!(on_disk, 0);
    assert!(s.disk_has_room(), "room again without a new append");
    let again = s.append(1, 1, 1_700_000_000, &[b'z'; 4096]).unwrap();
    assert!(again > *more.last().unwrap(), "ids go on");
    s.sync().unwrap();
    let (_, p) = open_again(s, &dir, &c);
    assert_eq!(ids(&p), vec![again]);
}

#[test]
fn batches_caught_in_the_buffer_by_a_full_tmpfs_are_written_once_the_file_is_delivered() {
    let Some(disk) = Tmpfs::mount("tmpfs-buffer", 512 << 10) else {
        return;
    };
    let dir = disk.mnt.join("spool");
    let c = cfg(FsyncPolicy::Interval, 64 << 20, u64::MAX);
    let mut s = Spool::open(&dir, c.clone()).unwrap();
    // Group commits until one fails: its batches stay in the write buffer.
    let mut durable = Vec::new();
    let mut caught = Vec::new();
    for i in 0..10_000u64 {
        let a = s.append(1, 1, 1_700_000_000, &vec![b'b'; 4096]).unwrap();
        let b = s.append(1, 1, 1_700_000_000 + i, &vec![b'c'; 4096]).unwrap();
        match s.sync() {
            Ok(d) => {
                assert_eq!(d, b);
                durable.extend([a, b]);
            }
            Err(SpoolError::Full { .. }) => {
                caught.extend([a, b]);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!caught.is_empty(), "the disk never filled");
    assert!(s.sync().is_err(), "still no room");
    // Everything in the file is delivered: the next commit cuts the file, renames it
    // after the first caught batch, and writes the buffer there.
    for id in &durable {
        assert!(s.ack(*id).unwrap());
    }
    assert_eq!(s.sync().unwrap(), caught[1]);
    assert_eq!(segment_files(&dir), vec![dir.join(segment_name(caught[0]))]);
    assert!(s.disk_has_room());
    let (_, p) = open_again(s, &dir, &c);
    assert_eq!(ids(&p), caught);
}

fn open_again(s: Spool, dir: &Path, c: &SpoolConfig) -> (Spool, Vec<Pending>) {
    drop(s);
    let mut s = Spool::open(dir, c.clone()).expect("open spool");
    let p = s.replay().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (s, p)
}
