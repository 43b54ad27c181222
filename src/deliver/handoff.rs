//! The hand-off of closed batches from the ingestion cores to the spool writer, and of
//! "your batch is durable" back to each core.
//!
//! Design constraints:
//! - Lock-free and bounded: one crossbeam array channel carries [`Handoff`]s from every
//!   core to the spool writer (`try_send` never blocks and never locks), one unbounded
//!   channel per core carries [`Done`]s back. A batch is one message; nothing here is
//!   per event.
//! - A full channel is back-pressure, never a drop and never a stall of the event loop:
//!   the core appends the batch to its own **overflow spool** (`<spool.dir>/overflow-<core>`,
//!   the same segment log as the main spool, synced before [`CoreLink::submit`] returns)
//!   and the batch counts as durable at once. [`CoreLink::poll`] offers overflowed
//!   batches to the writer again when the channel has room; the overflow record is
//!   acknowledged once the main spool holds it durably. A crash in between leaves the
//!   batch in both spools: it is delivered twice with the same `event_id`s, which Meta
//!   deduplicates. On start, before the cores run, the writer moves whatever the
//!   overflow spools still hold into the main spool. The overflow path does ordinary
//!   (blocking) file writes on the core: it runs only while the delivery side is behind,
//!   and slowing the core down then is the point of back-pressure. It is counted in
//!   `capig_handoff_overflow_batches_total`.
//! - A full spool is shared knowledge: the writer raises a flag that every core reads
//!   with one relaxed atomic load before it accepts events ([`CoreLink::spool_full`]), so
//!   new events are refused (503) while the old ones stay queued. The writer also
//!   lowers it, by itself, once there is room again (see `pipeline`).
//! - Only acknowledged events matter: a core tells its clients "stored" for the events of
//!   a batch only after that batch's [`Done`] came back `Ok`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::batch::ClosedBatch;
use super::spool::{RecordId, Spool, SpoolConfig, SpoolError};

/// A core's sequence number for one submitted batch: 1, 2, 3… per [`CoreLink`].
pub type Ticket = u64;

/// The overflow spool of core `core`, under the main spool directory.
pub fn overflow_dir(spool_dir: &std::path::Path, core: usize) -> PathBuf {
    spool_dir.join(format!("overflow-{core}"))
}

/// A closed batch on its way to the spool writer.
#[derive(Debug)]
pub struct Handoff {
    pub core: usize,
    pub origin: Origin,
    pub batch: ClosedBatch,
}

/// Which submission a [`Handoff`] or a [`Done`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A batch submitted by the core; its events wait for this to be durable.
    Fresh(Ticket),
    /// A batch already durable in the core's overflow spool, moving to the main spool.
    Overflow(RecordId),
}

/// The writer's answer to one [`Handoff`].
#[derive(Debug)]
pub struct Done {
    pub origin: Origin,
    pub result: Result<(), SubmitError>,
}

/// Why a batch was not stored. The core answers its clients 503 with this message
/// (none of them carries event content).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(
        "the spool is full ({used} of {cap} bytes): Meta is not taking events fast enough; \
         new events are refused until queued ones are delivered, retry later"
    )]
    Full { used: u64, cap: u64 },
    #[error("the spool could not store the batch ({0}); retry later")]
    Storage(String),
    #[error("a batch of {len} bytes is larger than a spool segment ({max} bytes); send fewer or smaller events per batch")]
    TooLarge { len: u64, max: u64 },
    #[error("the gateway is shutting down; retry later")]
    Stopped,
}

impl SubmitError {
    pub(crate) fn from_spool(e: &SpoolError) -> SubmitError {
        match e {
            SpoolError::Full { used, cap } => SubmitError::Full {
                used: *used,
                cap: *cap,
            },
            SpoolError::TooLarge { len, max } => SubmitError::TooLarge {
                len: *len,
                max: *max,
            },
            SpoolError::Io { .. } => SubmitError::Storage(e.to_string()),
        }
    }

    /// Whether sending the same events again later can succeed (a full spool empties,
    /// a stopping gateway comes back); a batch too large for the spool never fits.
    pub fn retryable(&self) -> bool {
        !matches!(self, SubmitError::TooLarge { .. })
    }

    /// A stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            SubmitError::Full { .. } => "spool_full",
            SubmitError::Storage(_) => "storage",
            SubmitError::TooLarge { .. } => "too_large",
            SubmitError::Stopped => "stopped",
        }
    }
}

/// What the cores and the writer share: flags read with single atomic loads.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by the writer when an append hit the spool cap (or a full disk); cleared
    /// when deliveries freed room again.
    pub full: AtomicBool,
    /// Bytes in use and the cap, for the refusal message.
    pub used: AtomicU64,
    pub cap: AtomicU64,
    /// Records not yet delivered or dead-lettered (main spool).
    pub pending_records: AtomicU64,
    pub pending_events: AtomicU64,
}

/// Overflow spool segments are small: they are re-read whole when offered again.
const OVERFLOW_SEGMENT_BYTES: u64 = 8 << 20;
/// Overflowed batches offered again per [`CoreLink::poll`] (each is one try_send).
const REOFFER_PER_POLL: usize = 16;

/// One core's end of the hand-off. Owned by the core; nothing in it is shared but the
/// channels and the [`Shared`] flags.
pub struct CoreLink {
    core: usize,
    tx: Sender<Handoff>,
    done: Receiver<Done>,
    shared: Arc<Shared>,
    next_ticket: Ticket,
    overflow_dir: PathBuf,
    overflow_cfg: SpoolConfig,
    overflow: Option<Spool>,
    /// Overflow records with ids up to this one are in the channel or acknowledged.
    offered: RecordId,
    /// Answers produced on the core itself (the overflow path).
    local: Vec<Done>,
    overflowed: u64,
}

impl std::fmt::Debug for CoreLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreLink")
            .field("core", &self.core)
            .field("next_ticket", &self.next_ticket)
            .finish_non_exhaustive()
    }
}

impl CoreLink {
    pub(crate) fn new(
        core: usize,
        tx: Sender<Handoff>,
        done: Receiver<Done>,
        shared: Arc<Shared>,
        spool_dir: &std::path::Path,
        main: &SpoolConfig,
    ) -> CoreLink {
        CoreLink {
            core,
            tx,
            done,
            shared,
            next_ticket: 1,
            overflow_dir: overflow_dir(spool_dir, core),
            overflow_cfg: SpoolConfig {
                segment_bytes: OVERFLOW_SEGMENT_BYTES.min(main.segment_bytes),
                ..main.clone()
            },
            overflow: None,
            offered: 0,
            local: Vec::new(),
            overflowed: 0,
        }
    }

    /// The largest batch payload both the main spool and this core's overflow spool
    /// can store as one record (a larger one is refused as too large, whatever waits).
    pub fn max_payload(&self) -> usize {
        let record = self.overflow_cfg.segment_bytes.min(self.overflow_cfg.max_bytes);
        (record as usize).saturating_sub(crate::deliver::spool::record::HEADER_LEN)
    }

    /// This core's number.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Whether the spool refuses new events right now: check before accepting a
    /// request, and answer 503 with [`CoreLink::full_error`].
    pub fn spool_full(&self) -> bool {
        self.shared.full.load(Ordering::Relaxed)
    }

    /// The refusal to give while [`CoreLink::spool_full`] holds.
    pub fn full_error(&self) -> SubmitError {
        SubmitError::Full {
            used: self.shared.used.load(Ordering::Relaxed),
            cap: self.shared.cap.load(Ordering::Relaxed),
        }
    }

    /// Batches that went through the overflow spool since start.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Hands a closed batch over for storage. The ticket's [`Done`] comes from
    /// [`CoreLink::poll`]; only then are its events stored. `Err` means the batch was
    /// not taken (its events must be refused to their clients).
    pub fn submit(&mut self, batch: ClosedBatch) -> Result<Ticket, SubmitError> {
        if self.spool_full() {
            return Err(self.full_error());
        }
        let ticket = self.next_ticket;
        let handoff = Handoff {
            core: self.core,
            origin: Origin::Fresh(ticket),
            batch,
        };
        match self.tx.try_send(handoff) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(SubmitError::Stopped),
            Err(TrySendError::Full(h)) => {
                // Back-pressure: the writer is behind. Store it here, durably.
                self.store_overflow(&h.batch)?;
                self.local.push(Done {
                    origin: Origin::Fresh(ticket),
                    result: Ok(()),
                });
            }
        }
        self.next_ticket += 1;
        Ok(ticket)
    }

    fn store_overflow(&mut self, b: &ClosedBatch) -> Result<(), SubmitError> {
        if self.overflow.is_none() {
            let spool = Spool::open(&self.overflow_dir, self.overflow_cfg.clone())
                .map_err(|e| SubmitError::from_spool(&e))?;
            self.overflow = Some(spool);
        }
        let spool = self.overflow.as_mut().expect("opened above");
        spool
            .append(b.pixel, b.events, b.oldest_event_time, &b.payload)
            .and_then(|_| spool.sync())
            .map_err(|e| SubmitError::from_spool(&e))?;
        self.overflowed += 1;
        metrics::counter!("capig_handoff_overflow_batches_total", "core" => self.core.to_string())
            .increment(1);
        Ok(())
    }

    /// Collects the answers for submitted batches (in no particular order across
    /// origins) into `out`, and offers overflowed batches to the writer again when
    /// there is room. Never blocks.
    pub fn poll(&mut self, out: &mut Vec<Done>) {
        out.append(&mut self.local);
        while let Ok(done) = self.done.try_recv() {
            match done.origin {
                Origin::Fresh(_) => out.push(done),
                Origin::Overflow(id) => self.overflow_answered(id, done.result),
            }
        }
        self.reoffer();
    }

    fn overflow_answered(&mut self, id: RecordId, result: Result<(), SubmitError>) {
        let Some(spool) = self.overflow.as_mut() else {
            return;
        };
        match result {
            // A lost ack only means the batch is moved (and delivered) twice.
            Ok(()) => {
                let _ = spool.ack(id).and_then(|_| spool.commit(std::time::Instant::now()));
            }
            // Offer it again later (from the oldest one not yet in the main spool).
            Err(_) => self.offered = self.offered.min(id.saturating_sub(1)),
        }
    }

    fn reoffer(&mut self) {
        if self.tx.is_full() || self.spool_full() {
            return;
        }
        let Some(spool) = self.overflow.as_mut() else {
            return;
        };
        if spool.pending().0 == 0 {
            return;
        }
        let Ok(replay) = spool.replay_from(self.offered + 1) else {
            return;
        };
        let mut batches = Vec::new();
        for p in replay.take(REOFFER_PER_POLL).flatten() {
            batches.push(p);
        }
        for p in batches {
            let handoff = Handoff {
                core: self.core,
                origin: Origin::Overflow(p.id),
                batch: ClosedBatch {
                    pixel: p.pixel,
                    events: p.events,
                    oldest_event_time: p.oldest_time,
                    payload: p.payload,
                    opened: std::time::Instant::now(),
                },
            };
            if self.tx.try_send(handoff).is_err() {
                return;
            }
            self.offered = p.id;
        }
    }
}
