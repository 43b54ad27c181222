//! The running delivery side: the spool writer thread and the delivery thread, joined
//! to the cores by [`handoff`](super::handoff).
//!
//! ```text
//!  core 0..N ──Handoff (crossbeam, bounded)──► capig-spool thread ──Part──► capig-deliver thread
//!     ▲                                          │ Spool (group commit)        │ Scheduler (lanes)
//!     └──────────Done (durable / refused)────────┘ DeadLetters                 │ Sender (tokio, h2)
//!                                                 ◄──Ack / DeadLetter─────────┘
//! ```
//!
//! - The **spool writer** (`capig-spool`, a plain thread: it does blocking file I/O) is
//!   the only owner of the main spool and the dead-letter store. It appends every batch
//!   it receives, commits them together by the fsync policy, then answers each core and
//!   hands the durable batch to the delivery thread. It applies acknowledgements and
//!   dead letters in the order the delivery thread sent them.
//! - The **delivery thread** (`capig-deliver`, a current-thread tokio runtime) runs the
//!   [`Scheduler`] and the HTTP/2 [`Sender`]; requests run as tasks, one connection.
//! - **Memory is bounded per pixel**: the writer keeps at most `memory_per_pixel` bytes
//!   of a pixel's pending batches in the delivery thread's queues. Past that the pixel is
//!   "spilled": its further batches stay on disk only, and are read back (from the first
//!   spilled record, through [`Spool::replay_from`]) when deliveries free half of its
//!   budget. A pixel whose token is broken can thus fill the spool, but not memory, and
//!   other pixels keep flowing.
//! - **A full spool heals by itself**: a refusal for want of room (the cap, or a disk
//!   found full) raises the flag every core reads before taking events (and `/readyz`
//!   answers 503). The writer clears it on its own turn — after every batch of work and
//!   at least every 250 ms, with no request needed — once the spool is below 90 % of
//!   its cap and, if a write found the disk full, [`Spool::disk_has_room`] sees room
//!   again, whether deliveries freed it (a delivered current segment is freed at once
//!   on a full disk) or an operator did. Each change of state is logged once.
//! - On start the writer moves what the cores' overflow spools hold into the main spool,
//!   then replays every pending record (the previous run's backlog) into the delivery
//!   thread, all before it takes new batches, so each pixel's order is kept.
//! - **Shutdown** ([`Delivery::shutdown`]): the delivery thread stops starting requests
//!   and waits for those in flight (up to a deadline); the writer then takes the batches
//!   still in the hand-off, commits, and stops. Whatever was not delivered stays in the
//!   spool for the next start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender as CbSender};
use hyper::body::Bytes;
use tokio::sync::mpsc;

use super::batch::request_body;
use super::deadletter::{DeadLetterConfig, DeadLetterError, DeadLetters};
use super::handoff::{CoreLink, Done, Handoff, Origin, Shared, SubmitError};
use super::policy::{BackoffConfig, BreakerConfig, MetaError, Outcome};
use super::schedule::{Action, DeadLetter, LaneStatus, Part, Request, Scheduler, SchedulerConfig};
use super::sender::{Sender, SenderConfig, SenderError};
use super::spool::{RecordId, Spool, SpoolConfig, SpoolError};
use crate::config::{Config, Secret, MAX_BATCH_EVENTS};
use crate::event::policy::PixelId;

/// Default bound of one pixel's pending batches held in memory: 64 MiB.
pub const DEFAULT_MEMORY_PER_PIXEL: u64 = 64 << 20;
/// Default capacity of the hand-off channel, in batches.
pub const DEFAULT_HANDOFF_BATCHES: usize = 1024;
/// The writer wakes at least this often (gauges, shutdown).
const WRITER_TICK: Duration = Duration::from_millis(250);
/// The full flag is cleared once the spool is below this share of its cap.
const FULL_CLEAR_NUM: u64 = 9;
const FULL_CLEAR_DEN: u64 = 10;

/// Where one pixel's batches go.
#[derive(Clone, Debug)]
pub struct PixelRoute {
    /// `None`: the pixel has no token (yet); its batches wait behind an open breaker.
    pub token: Option<Secret>,
    pub test_event_code: Option<String>,
}

/// Everything the delivery side runs with.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub spool_dir: PathBuf,
    pub spool: SpoolConfig,
    pub dead_letters: DeadLetterConfig,
    pub sender: SenderConfig,
    pub scheduler: SchedulerConfig,
    /// Ingestion cores: one [`CoreLink`] each.
    pub cores: usize,
    pub handoff_batches: usize,
    pub memory_per_pixel: u64,
    pub routes: HashMap<PixelId, PixelRoute>,
}

impl DeliveryConfig {
    /// The delivery side of a loaded configuration, for `cores` ingestion cores.
    pub fn from_config(c: &Config, cores: usize) -> DeliveryConfig {
        DeliveryConfig {
            spool_dir: c.spool.dir.clone(),
            spool: SpoolConfig::from_config(&c.spool),
            dead_letters: DeadLetterConfig::default(),
            sender: SenderConfig::from(&c.upstream),
            scheduler: SchedulerConfig {
                concurrency: c.upstream.concurrency,
                backoff: BackoffConfig::from(&c.upstream),
                breaker: BreakerConfig::default(),
                seed: seed(),
                batch_size: c.upstream.batch_size.clamp(1, MAX_BATCH_EVENTS),
                batch_bytes: c.upstream.batch_bytes,
                linger: c.upstream.linger(),
            },
            cores,
            handoff_batches: DEFAULT_HANDOFF_BATCHES,
            memory_per_pixel: DEFAULT_MEMORY_PER_PIXEL,
            routes: routes(c),
        }
    }
}

/// The pixels' tokens and test codes from a configuration (after a reload too).
pub fn routes(c: &Config) -> HashMap<PixelId, PixelRoute> {
    c.pixels
        .iter()
        .map(|p| {
            (
                p.id,
                PixelRoute {
                    token: p.access_token.clone(),
                    test_event_code: p.test_event_code.clone(),
                },
            )
        })
        .collect()
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the delivery side could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
    #[error(transparent)]
    Sender(#[from] SenderError),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// A snapshot of the delivery side, for status pages, `capig send` and tests.
#[derive(Clone, Debug, Default)]
pub struct DeliveryStatus {
    pub lanes: Vec<LaneStatus>,
    /// Records and events in the spool not yet delivered or dead-lettered.
    pub pending_records: u64,
    pub pending_events: u64,
    pub spool_full: bool,
}

/// What the delivery thread tells the writer, in order.
enum Command {
    Ack(RecordId),
    DeadLetter(DeadLetter),
}

enum Control {
    Routes(HashMap<PixelId, PixelRoute>),
    Status(std::sync::mpsc::Sender<Vec<LaneStatus>>),
    Stop(Instant),
}

/// The running delivery side. Dropping it without [`Delivery::shutdown`] stops it
/// the same way, with a deadline of one second.
pub struct Delivery {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    deliver: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Delivery {
    /// Opens the spool and the dead-letter store, moves the overflow spools in, starts
    /// both threads, and returns one [`CoreLink`] per core.
    pub fn start(cfg: DeliveryConfig) -> Result<(Delivery, Vec<CoreLink>), DeliveryError> {
        let mut spool = Spool::open(&cfg.spool_dir, cfg.spool.clone())?;
        for w in spool.stats().warnings {
            tracing::warn!("{w}");
        }
        absorb_overflow(&mut spool, &cfg)?;
        let dead = DeadLetters::open(&cfg.spool_dir.join("deadletters"), cfg.dead_letters)?;
        let sender = Arc::new(Sender::new(cfg.sender.clone())?);

        let shared = Arc::new(Shared::default());
        let (used, cap) = spool.usage();
        shared.used.store(used, Ordering::Relaxed);
        shared.cap.store(cap, Ordering::Relaxed);
        // Known before the writer runs, so "is the spool drained?" is never asked of a
        // count that has not been read yet.
        let (records, events) = spool.pending();
        shared.pending_records.store(records, Ordering::Relaxed);
        shared.pending_events.store(events, Ordering::Relaxed);
        let (handoff_tx, handoff_rx) = crossbeam_channel::bounded(cfg.handoff_batches.max(1));
        let mut links = Vec::with_capacity(cfg.cores);
        let mut done_txs = Vec::with_capacity(cfg.cores);
        for core in 0..cfg.cores {
            let (tx, rx) = crossbeam_channel::unbounded();
            done_txs.push(tx);
            links.push(CoreLink::new(
                core,
                handoff_tx.clone(),
                rx,
                shared.clone(),
                &cfg.spool_dir,
                &cfg.spool,
            ));
        }
        drop(handoff_tx);

        let (part_tx, part_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (control_tx, control_rx) = mpsc::unbounded_channel();

        let writer = Writer {
            spool,
            dead,
            shared: shared.clone(),
            done_txs,
            to_deliver: part_tx,
            waiting: VecDeque::new(),
            windows: HashMap::new(),
            in_memory: HashMap::new(),
            held: HashSet::new(),
            budget: cfg.memory_per_pixel.max(1),
            committed: 0,
        };
        let writer = std::thread::Builder::new()
            .name("capig-spool".into())
            .spawn(move || writer.run(handoff_rx, cmd_rx))
            .map_err(|e| DeliveryError::Thread("capig-spool", e))?;
        let scheduler = Scheduler::new(cfg.scheduler);
        let routes = cfg.routes.clone();
        let deliver = std::thread::Builder::new()
            .name("capig-deliver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread tokio runtime builds");
                rt.block_on(drive(scheduler, sender, routes, part_rx, cmd_tx, control_rx));
            })
            .map_err(|e| DeliveryError::Thread("capig-deliver", e))?;
        Ok((
            Delivery {
                shared,
                control: control_tx,
                deliver: Some(deliver),
                writer: Some(writer),
            },
            links,
        ))
    }

    /// Replaces the pixels' tokens and test codes (a config reload). A pixel whose
    /// token changed gets its breaker closed and its backoff lifted: it resumes at once.
    pub fn set_routes(&self, routes: HashMap<PixelId, PixelRoute>) {
        let _ = self.control.send(Control::Routes(routes));
    }

    /// The lanes (per pixel) and the spool's backlog.
    pub fn status(&self) -> DeliveryStatus {
        let (tx, rx) = std::sync::mpsc::channel();
        let lanes = if self.control.send(Control::Status(tx)).is_ok() {
            rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
        } else {
            Vec::new()
        };
        DeliveryStatus {
            lanes,
            pending_records: self.shared.pending_records.load(Ordering::Relaxed),
            pending_events: self.shared.pending_events.load(Ordering::Relaxed),
            spool_full: self.shared.full.load(Ordering::Relaxed),
        }
    }

    /// Records still in the spool (cheap: one atomic load).
    pub fn pending_records(&self) -> u64 {
        self.shared.pending_records.load(Ordering::Relaxed)
    }

    /// Events still in the spool.
    pub fn pending_events(&self) -> u64 {
        self.shared.pending_events.load(Ordering::Relaxed)
    }

    /// Stops: no new requests, those in flight get until `deadline` to answer, then
    /// the writer commits what the cores handed over and both threads end. Drop the
    /// cores' links before (or they are told [`SubmitError::Stopped`] afterwards).
    pub fn shutdown(mut self, deadline: Duration) {
        self.stop(deadline);
    }

    fn stop(&mut self, deadline: Duration) {
        let _ = self.control.send(Control::Stop(Instant::now() + deadline));
        if let Some(t) = self.deliver.take() {
            let _ = t.join();
        }
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.deliver.is_some() || self.writer.is_some() {
            self.stop(Duration::from_secs(1));
        }
    }
}

/// Moves every pending record of the cores' overflow spools into the main spool
/// (durably), then acknowledges them there. Runs before any core does.
fn absorb_overflow(spool: &mut Spool, cfg: &DeliveryConfig) -> Result<(), SpoolError> {
    let Ok(entries) = std::fs::read_dir(&cfg.spool_dir) else {
        return Ok(());
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("overflow-"))
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut overflow = Spool::open(&dir, cfg.spool.clone())?;
        let mut moved = Vec::new();
        for p in overflow.replay()? {
            let p = p?;
            spool.append(p.pixel, p.events, p.oldest_time, &p.payload)?;
            moved.push(p.id);
        }
        if moved.is_empty() {
            continue;
        }
        spool.sync()?;
        for id in &moved {
            overflow.ack(*id)?;
        }
        overflow.sync()?;
        tracing::info!(
            "spool: moved {} batch(es) from {} into the main spool",
            moved.len(),
            dir.display()
        );
    }
    Ok(())
}

/// One pixel's share of memory in the delivery thread.
#[derive(Default)]
struct Window {
    bytes: u64,
    /// The first of the pixel's records that is on disk only.
    spilled_from: Option<RecordId>,
}

struct Waiting {
    id: RecordId,
    /// Who to tell once it is durable (`None`: told already, of a failed commit).
    notify: Option<(usize, Origin)>,
    part: Part,
}

struct Writer {
    spool: Spool,
    dead: DeadLetters,
    shared: Arc<Shared>,
    done_txs: Vec<CbSender<Done>>,
    to_deliver: mpsc::UnboundedSender<Part>,
    /// Appended, not yet known durable; in id order.
    waiting: VecDeque<Waiting>,
    windows: HashMap<PixelId, Window>,
    /// Records in the delivery thread's memory, with their pixel and size.
    in_memory: HashMap<RecordId, (PixelId, u64)>,
    /// Records whose dead letters could not be stored: they are not acknowledged, so
    /// they stay in the spool (and are sent again after a restart).
    held: HashSet<RecordId>,
    budget: u64,
    /// The highest id known durable.
    committed: RecordId,
}

impl Writer {
    fn run(mut self, handoffs: Receiver<Handoff>, commands: Receiver<Command>) {
        if let Err(e) = self.replay_backlog() {
            tracing::error!("spool: cannot read back the pending batches: {e}");
        }
        let mut handoffs = Some(handoffs);
        let mut commands = Some(commands);
        let mut last_gauges = Instant::now() - WRITER_TICK;
        loop {
            let now = Instant::now();
            let wake = self
                .spool
                .sync_due_at()
                .map_or(WRITER_TICK, |t| t.saturating_duration_since(now))
                .min(WRITER_TICK);
            let never_h = crossbeam_channel::never();
            let never_c = crossbeam_channel::never();
            let h = handoffs.as_ref().unwrap_or(&never_h);
            let c = commands.as_ref().unwrap_or(&never_c);
            crossbeam_channel::select! {
                recv(h) -> m => match m {
                    Ok(m) => self.take(m),
                    Err(_) => handoffs = None,
                },
                recv(c) -> m => match m {
                    Ok(m) => self.command(m),
                    Err(_) => commands = None,
                },
                default(wake) => {}
            }
            // Take what else is there: one commit covers it all (group commit).
            if let Some(h) = &handoffs {
                for m in h.try_iter().take(4096) {
                    self.take(m);
                }
            }
            if let Some(c) = &commands {
                for m in c.try_iter().take(4096) {
                    self.command(m);
                }
            }
            self.commit(Instant::now());
            // Every turn, so at least every WRITER_TICK: readiness comes back by itself
            // once there is room, however it came (deliveries, an operator).
            self.check_room();
            if last_gauges.elapsed() >= WRITER_TICK {
                if let Some(h) = &handoffs {
                    metrics::gauge!("capig_handoff_queue_batches").set(h.len() as f64);
                }
                self.gauges();
                last_gauges = Instant::now();
            }
            // The delivery thread is gone (shutdown): take the last batches and stop.
            if commands.is_none() {
                if let Some(h) = handoffs.take() {
                    for m in h.try_iter() {
                        self.take(m);
                    }
                }
                break;
            }
        }
        if let Err(e) = self.spool.sync() {
            tracing::error!("spool: final sync failed: {e}");
        }
        self.release(self.spool.durable_id());
        self.gauges();
    }

    /// Hands the previous run's pending records to the delivery thread.
    fn replay_backlog(&mut self) -> Result<(), SpoolError> {
        self.committed = self.spool.durable_id();
        let (records, events) = self.spool.pending();
        if records > 0 {
            tracing::info!("spool: {records} batch(es), {events} event(s) to deliver from before the restart");
        }
        for p in self.spool.replay()? {
            let p = p?;
            let part = Part {
                record: p.id,
                offset: 0,
                pixel: p.pixel,
                events: p.events,
                oldest_time: p.oldest_time,
                payload: Bytes::from(p.payload),
                received: None,
                group: 0,
            };
            route(
                &mut self.windows,
                &mut self.in_memory,
                &self.to_deliver,
                self.budget,
                part,
            );
        }
        self.publish_pending();
        Ok(())
    }

    fn take(&mut self, h: Handoff) {
        let b = h.batch;
        let pixel_label = b.pixel.to_string();
        match self
            .spool
            .append(b.pixel, b.events, b.oldest_event_time, &b.payload)
        {
            Ok(id) => {
                metrics::counter!("capig_spool_batches_total", "pixel" => pixel_label.clone()).increment(1);
                metrics::counter!("capig_spool_events_total", "pixel" => pixel_label).increment(u64::from(b.events));
                metrics::counter!("capig_spool_bytes_written_total").increment(b.payload.len() as u64);
                self.waiting.push_back(Waiting {
                    id,
                    notify: Some((h.core, h.origin)),
                    part: Part {
                        record: id,
                        offset: 0,
                        pixel: b.pixel,
                        events: b.events,
                        oldest_time: b.oldest_event_time,
                        payload: Bytes::from(b.payload),
                        received: Some(b.opened),
                        group: 0,
                    },
                });
            }
            Err(e) => {
                let err = self.refusal(&e);
                metrics::counter!("capig_spool_refused_batches_total", "reason" => err.label()).increment(1);
                self.notify(h.core, h.origin, Err(err));
            }
        }
    }

    /// What to tell the cores about a spool error; a full spool (cap or disk) also
    /// raises the flag that makes every core refuse new events up front.
    fn refusal(&self, e: &SpoolError) -> SubmitError {
        let err = SubmitError::from_spool(e);
        if let SubmitError::Full { used, cap } = err {
            self.shared.used.store(used, Ordering::Relaxed);
            self.shared.cap.store(cap, Ordering::Relaxed);
            // Said once per change of state, never per request.
            if !self.shared.full.swap(true, Ordering::Relaxed) {
                if self.spool.disk_short() {
                    let free = self.spool.disk_free().map_or_else(|| "?".into(), |f| f.to_string());
                    tracing::warn!(
                        "spool: the disk under {} is full ({free} bytes free, the spool holds {used}); \
                         new events are refused (503) until deliveries or an operator free space",
                        self.spool.dir().display()
                    );
                } else {
                    tracing::warn!("{e}; new events are refused (503) until deliveries free room");
                }
            }
        } else {
            tracing::error!("{e}");
        }
        err
    }

    fn notify(&self, core: usize, origin: Origin, result: Result<(), SubmitError>) {
        if let Some(tx) = self.done_txs.get(core) {
            // A core that is gone no longer waits for the answer.
            let _ = tx.send(Done { origin, result });
        }
    }

    fn commit(&mut self, now: Instant) {
        if self.waiting.is_empty() {
            // Acks alone: they still need their group commit (lost acks only mean
            // duplicates, but the ledger should not lag far behind).
            if let Err(e) = self.spool.commit(now) {
                tracing::error!("{e}");
            }
            return;
        }
        match self.spool.commit(now) {
            Ok(durable) => self.release(durable),
            Err(e) => {
                // The batches stay in the write buffer and become durable with a later
                // commit (then they are delivered); their clients are told now that
                // they were not stored, and resend them with the same event_id.
                let err = self.refusal(&e);
                for w in &mut self.waiting {
                    if let Some((core, origin)) = w.notify.take() {
                        if let Some(tx) = self.done_txs.get(core) {
                            let _ = tx.send(Done {
                                origin,
                                result: Err(err.clone()),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Everything up to `durable` is stored: answer the cores, pass the batches on.
    fn release(&mut self, durable: RecordId) {
        self.committed = self.committed.max(durable);
        while self.waiting.front().is_some_and(|w| w.id <= durable) {
            let w = self.waiting.pop_front().expect("checked");
            if let Some((core, origin)) = w.notify {
                self.notify(core, origin, Ok(()));
            }
            route(
                &mut self.windows,
                &mut self.in_memory,
                &self.to_deliver,
                self.budget,
                w.part,
            );
        }
        self.publish_pending();
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Ack(id) => self.ack(id),
            Command::DeadLetter(DeadLetter {
                record,
                pixel,
                payload,
                events,
                reason,
                meta,
            }) => {
                match self
                    .dead
                    .append_batch(pixel, &payload, reason, meta.as_ref(), unix_now())
                {
                    Ok(_) => {
                        metrics::counter!("capig_deadletters_total", "pixel" => pixel.to_string(), "reason" => reason.as_str())
                            .increment(u64::from(events));
                        match &meta {
                            Some(m) => tracing::warn!(
                                "pixel {pixel}: {events} event(s) dead-lettered ({}): {m}",
                                reason.as_str()
                            ),
                            None => tracing::warn!(
                                "pixel {pixel}: {events} event(s) dead-lettered ({})",
                                reason.as_str()
                            ),
                        }
                    }
                    Err(e) => {
                        tracing::error!(
                            "pixel {pixel}: {e}; the batch stays in the spool and is sent again after a restart"
                        );
                        self.held.insert(record);
                    }
                }
            }
        }
    }

    fn ack(&mut self, id: RecordId) {
        if self.held.remove(&id) {
            self.forget(id);
            return;
        }
        if let Err(e) = self.spool.ack(id) {
            tracing::error!("{e}");
        }
        self.forget(id);
        self.publish_pending();
        let (used, _) = self.spool.usage();
        self.shared.used.store(used, Ordering::Relaxed);
    }

    /// Clears the full flag once there is room again: the spool below 90 % of its cap,
    /// and the disk, if a write found it full, with enough free space again.
    fn check_room(&mut self) {
        if !self.shared.full.load(Ordering::Relaxed) {
            return;
        }
        let (used, cap) = self.spool.usage();
        self.shared.used.store(used, Ordering::Relaxed);
        if used * FULL_CLEAR_DEN >= cap * FULL_CLEAR_NUM || !self.spool.disk_has_room() {
            return;
        }
        self.shared.full.store(false, Ordering::Relaxed);
        let free = self.spool.disk_free().map_or_else(|| "?".into(), |f| f.to_string());
        tracing::info!(
            "spool: room again ({used} of {cap} bytes used, {free} bytes free on disk); taking events"
        );
    }

    /// The record left memory: maybe read the pixel's spilled backlog back in.
    fn forget(&mut self, id: RecordId) {
        let Some((pixel, len)) = self.in_memory.remove(&id) else {
            return;
        };
        let w = self.windows.entry(pixel).or_default();
        w.bytes = w.bytes.saturating_sub(len);
        if let (Some(from), true) = (w.spilled_from, w.bytes <= self.budget / 2) {
            if let Err(e) = self.load_spilled(pixel, from) {
                tracing::error!("spool: cannot read back pixel {pixel}'s batches: {e}");
            }
        }
    }

    fn load_spilled(&mut self, pixel: PixelId, from: RecordId) -> Result<(), SpoolError> {
        let limit = self.committed;
        let budget = self.budget;
        let w = self.windows.entry(pixel).or_default();
        let mut next = None;
        let mut parts = Vec::new();
        for p in self.spool.replay_from(from)? {
            let p = p?;
            if p.id > limit {
                break;
            }
            if p.pixel != pixel {
                continue;
            }
            let len = p.payload.len() as u64;
            if w.bytes > 0 && w.bytes + len > budget {
                next = Some(p.id);
                break;
            }
            w.bytes += len;
            parts.push(Part {
                record: p.id,
                offset: 0,
                pixel,
                events: p.events,
                oldest_time: p.oldest_time,
                payload: Bytes::from(p.payload),
                received: None,
                group: 0,
            });
        }
        w.spilled_from = next;
        for part in parts {
            self.in_memory
                .insert(part.record, (pixel, part.payload.len() as u64));
            let _ = self.to_deliver.send(part);
        }
        Ok(())
    }

    fn publish_pending(&self) {
        let (records, events) = self.spool.pending();
        self.shared.pending_records.store(records, Ordering::Relaxed);
        self.shared.pending_events.store(events, Ordering::Relaxed);
    }

    fn gauges(&self) {
        let s = self.spool.stats();
        metrics::gauge!("capig_spool_bytes").set(s.bytes as f64);
        metrics::gauge!("capig_spool_pending_batches").set(s.records as f64);
        metrics::gauge!("capig_spool_pending_events").set(s.events as f64);
        let age = s
            .oldest_event_time
            .map_or(0, |t| unix_now().saturating_sub(t));
        metrics::gauge!("capig_spool_oldest_event_age_seconds").set(age as f64);
        metrics::gauge!("capig_spool_full").set(if self.shared.full.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        });
        let d = self.dead.stats();
        metrics::gauge!("capig_deadletter_bytes").set(d.bytes as f64);
    }
}

/// Passes a durable record to the delivery thread, unless its pixel is over its
/// memory budget (then it stays on disk until [`Writer::load_spilled`]).
fn route(
    windows: &mut HashMap<PixelId, Window>,
    in_memory: &mut HashMap<RecordId, (PixelId, u64)>,
    to_deliver: &mpsc::UnboundedSender<Part>,
    budget: u64,
    part: Part,
) {
    let w = windows.entry(part.pixel).or_default();
    let len = part.payload.len() as u64;
    if w.spilled_from.is_some() {
        return;
    }
    if w.bytes > 0 && w.bytes + len > budget {
        w.spilled_from = Some(part.record);
        metrics::counter!("capig_spool_spilled_total", "pixel" => part.pixel.to_string()).increment(1);
        return;
    }
    w.bytes += len;
    in_memory.insert(part.record, (part.pixel, len));
    let _ = to_deliver.send(part);
}

/// The delivery thread: scheduler, sender, and the orders to the writer.
async fn drive(
    mut sched: Scheduler,
    sender: Arc<Sender>,
    mut routes: HashMap<PixelId, PixelRoute>,
    mut parts: mpsc::UnboundedReceiver<Part>,
    commands: CbSender<Command>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Request, Outcome)>();
    let mut actions: VecDeque<Action> = VecDeque::new();
    let mut buf = Vec::new();
    let mut stop_at: Option<Instant> = None;
    loop {
        if stop_at.is_none() {
            sched.poll(Instant::now(), unix_now(), &mut buf);
            actions.extend(buf.drain(..));
        }
        while let Some(a) = actions.pop_front() {
            match a {
                Action::Send(req) => {
                    let Some((token, body)) = routes.get(&req.pixel).and_then(|r| {
                        let token = r.token.as_ref()?.expose().to_owned();
                        Some((token, request_body(&req.payload, r.test_event_code.as_deref())))
                    }) else {
                        // No token for this pixel: hold its batches behind the breaker
                        // until a reload brings one; nothing is sent without a token.
                        let err = MetaError {
                            status: 0,
                            code: 190,
                            subcode: None,
                            message: format!(
                                "capig has no access token for pixel {}: set its access_token_file and reload",
                                req.pixel
                            ),
                            fbtrace_id: None,
                        };
                        sched.complete(req, Outcome::Breaker(err), Instant::now(), &mut buf);
                        actions.extend(buf.drain(..));
                        continue;
                    };
                    let sender = sender.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let outcome = sender.send(req.pixel, &token, body).await;
                        let _ = done.send((req, outcome));
                    });
                }
                Action::Ack(id) => {
                    let _ = commands.send(Command::Ack(id));
                }
                Action::DeadLetter(d) => {
                    let _ = commands.send(Command::DeadLetter(d));
                }
            }
        }
        if let Some(t) = stop_at {
            if sched.in_flight() == 0 || Instant::now() >= t {
                break;
            }
        }
        let wake = match (stop_at, sched.next_deadline()) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            Some(part) = parts.recv() => {
                sched.push(part);
                while let Ok(part) = parts.try_recv() {
                    sched.push(part);
                }
            }
            Some((req, outcome)) = done_rx.recv() => {
                sched.complete(req, outcome, Instant::now(), &mut buf);
                actions.extend(buf.drain(..));
            }
            Some(c) = control.recv() => match c {
                Control::Routes(new) => {
                    for (pixel, r) in &new {
                        let changed = match (routes.get(pixel).and_then(|o| o.token.as_ref()), &r.token) {
                            (Some(old), Some(t)) => !old.matches(t.expose().as_bytes()),
                            (None, None) => false,
                            _ => true,
                        };
                        if changed {
                            sched.reset_pixel(*pixel);
                        }
                    }
                    routes = new;
                }
                Control::Status(reply) => {
                    let _ = reply.send(sched.status());
                }
                Control::Stop(t) => stop_at = Some(t),
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    // Dropping `commands` tells the writer to finish.
}
