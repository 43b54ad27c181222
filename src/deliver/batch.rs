//! The per-core batcher: one open batch per pixel, closed by count, size or age.
//!
//! Each ingestion core owns one [`Batcher`]; nothing here is shared, so there are no
//! locks. An open batch is a byte buffer of CAPI event objects separated by commas
//! (`obj,obj,obj`), exactly what goes between the brackets of `{"data":[…]}`, so the
//! sender wraps it without re-serializing.
//!
//! Design constraints:
//! - sans-IO: every call takes an explicit `now`; the batcher never reads a clock, so the
//!   core's event loop decides when to call [`Batcher::poll_linger`] (see
//!   [`Batcher::next_deadline`]).
//! - No allocation per event in the steady state: buffers of closed batches come back
//!   through [`Batcher::recycle`] into a small free list and keep their capacity; the
//!   per-pixel slots are created once per pixel; closing a batch moves its buffer out.
//! - A batch closes at `max_events` (Meta takes at most 1,000 per request), before its
//!   request body would exceed `max_bytes`, or `linger` after its first event.
//!   In `capig serve` the cores close their batches at every group-commit generation
//!   instead (a batch is the unit of durability, one spool record), and the Graph
//!   requests are composed from those records per pixel by the delivery scheduler
//!   (`schedule`), which applies `batch_size`, `batch_bytes` and `linger_ms`;
//!   [`Batcher::poll_linger`] serves `capig send` and the tests.
//! - A rejected write leaves the batch exactly as it was (no dangling comma).
//!
//! Two ways in: [`Batcher::push_with`] lets the transform write straight into the open
//! batch when the pixel is known before the transform (the server API names it in the
//! URL); [`Batcher::push`] copies an already serialized event (browser events name their
//! pixel inside the event, so the core transforms into a scratch buffer first — one
//! memcpy, still no allocation).

use std::time::{Duration, Instant};

use crate::config::{Upstream, MAX_BATCH_EVENTS};
use crate::event::json::write_str;
use crate::event::policy::PixelId;

/// `{"data":[` + `]}`: what the request body adds around the payload.
pub const ENVELOPE_BYTES: usize = 11;
/// Closed-batch buffers kept for reuse. A core has a few batches in flight at a time;
/// more would only pin memory after a burst.
const FREE_LIST_MAX: usize = 8;
/// Initial capacity of a fresh batch buffer (capped by `max_bytes`): a few dozen typical
/// events, so a busy pixel's buffer grows a few times, then is recycled at full size.
const INITIAL_CAPACITY: usize = 32 << 10;

/// When a batch closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Events per batch, 1 to [`MAX_BATCH_EVENTS`].
    pub max_events: usize,
    /// Upper bound of the request body (`{"data":[…]}`, without `test_event_code`). A
    /// single event larger than this still goes out, alone.
    pub max_bytes: usize,
    /// How long a batch waits for more events after its first one.
    pub linger: Duration,
}

impl From<&Upstream> for BatchConfig {
    fn from(u: &Upstream) -> Self {
        BatchConfig {
            max_events: u.batch_size.clamp(1, MAX_BATCH_EVENTS),
            max_bytes: u.batch_bytes,
            linger: Duration::from_millis(u.linger_ms),
        }
    }
}

/// A batch ready for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedBatch {
    pub pixel: PixelId,
    pub events: u32,
    /// The smallest `event_time` (Unix seconds) in the batch, for the 7-day limit.
    pub oldest_event_time: u64,
    /// `obj,obj,obj`: the events, comma-separated, without brackets.
    pub payload: Vec<u8>,
    /// When its first event arrived: the start of the receipt-to-Meta latency.
    pub opened: Instant,
}

impl ClosedBatch {
    /// The Graph API request body: `{"data":[…]}`, plus `"test_event_code"` when given.
    pub fn request_body(&self, test_event_code: Option<&str>) -> Vec<u8> {
        request_body(&self.payload, test_event_code)
    }
}

/// The Graph API request body around a batch payload (or a part of one, after a
/// bisection): `{"data":[…]}`, plus `"test_event_code"` when given.
pub fn request_body(payload: &[u8], test_event_code: Option<&str>) -> Vec<u8> {
    let extra = test_event_code.map_or(0, |c| c.len() * 2 + 24);
    let mut body = Vec::with_capacity(payload.len() + ENVELOPE_BYTES + extra);
    body.extend_from_slice(b"{\"data\":[");
    body.extend_from_slice(payload);
    body.push(b']');
    if let Some(code) = test_event_code {
        body.extend_from_slice(b",\"test_event_code\":");
        write_str(&mut body, code);
    }
    body.push(b'}');
    body
}

/// One pixel's open batch. The slot outlives its batches; `events == 0` means empty.
struct Slot {
    pixel: PixelId,
    buf: Vec<u8>,
    events: u32,
    oldest_event_time: u64,
    /// When the first event of the open batch arrived.
    opened: Instant,
}

/// One core's open batches, one per pixel.
pub struct Batcher {
    cfg: BatchConfig,
    /// A core sees a handful to a few dozen pixels: a linear scan of a small vector is
    /// cheaper than hashing and keeps the slots together in cache.
    slots: Vec<Slot>,
    free: Vec<Vec<u8>>,
}

impl Batcher {
    pub fn new(cfg: BatchConfig) -> Self {
        Batcher {
            cfg,
            slots: Vec::new(),
            free: Vec::with_capacity(FREE_LIST_MAX),
        }
    }

    /// Appends one event to `pixel`'s open batch by letting `write` append it to the
    /// buffer. `write` returns the event's `event_time` (Unix seconds) when it wrote the
    /// event, `None` when it wrote nothing (a rejected transform; whatever it left is
    /// discarded). Batches this event closed are appended to `out`. Returns whether the
    /// event was taken.
    ///
    /// Steady state: no allocation (the slot exists, its buffer came from the free list).
    pub fn push_with(
        &mut self,
        pixel: PixelId,
        now: Instant,
        out: &mut Vec<ClosedBatch>,
        write: impl FnOnce(&mut Vec<u8>) -> Option<u64>,
    ) -> bool {
        let i = self.slot(pixel, now);
        let free = &mut self.free;
        let slot = &mut self.slots[i];
        if slot.buf.capacity() == 0 {
            slot.buf = take_buffer(free, self.cfg.max_bytes);
        }
        let before = slot.buf.len();
        if slot.events > 0 {
            slot.buf.push(b',');
        }
        let start = slot.buf.len();
        let Some(event_time) = write(&mut slot.buf) else {
            slot.buf.truncate(before);
            return false;
        };
        if slot.buf.len() <= start {
            // An empty write would make the payload invalid JSON (and one that cut into
            // earlier events would corrupt the batch): treat it as rejected.
            slot.buf.truncate(before);
            return false;
        }
        self.record(i, now, event_time, before, start, out);
        true
    }

    /// Appends one serialized CAPI event object to `pixel`'s open batch (a copy); closed
    /// batches are appended to `out`. An empty `event` is ignored.
    pub fn push(
        &mut self,
        pixel: PixelId,
        now: Instant,
        event_time: u64,
        event: &[u8],
        out: &mut Vec<ClosedBatch>,
    ) {
        self.push_with(pixel, now, out, |buf| {
            buf.extend_from_slice(event);
            Some(event_time)
        });
    }

    /// Closes every batch whose linger time has passed at `now`.
    pub fn poll_linger(&mut self, now: Instant, out: &mut Vec<ClosedBatch>) {
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.events > 0 && now.saturating_duration_since(s.opened) >= self.cfg.linger {
                out.push(self.close(i));
            }
        }
    }

    /// When the next open batch reaches its linger time, if any batch is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.events > 0)
            .map(|s| s.opened + self.cfg.linger)
            .min()
    }

    /// Closes every open batch (shutdown, config reload).
    pub fn flush_all(&mut self, out: &mut Vec<ClosedBatch>) {
        for i in 0..self.slots.len() {
            if self.slots[i].events > 0 {
                out.push(self.close(i));
            }
        }
    }

    /// Gives back the buffer of a delivered (or spooled) batch for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && self.free.len() < FREE_LIST_MAX {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Events in `pixel`'s open batch.
    pub fn open_events(&self, pixel: PixelId) -> u32 {
        self.slots
            .iter()
            .find(|s| s.pixel == pixel)
            .map_or(0, |s| s.events)
    }

    /// Buffers waiting in the free list.
    pub fn free_buffers(&self) -> usize {
        self.free.len()
    }

    fn slot(&mut self, pixel: PixelId, now: Instant) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.pixel == pixel) {
            return i;
        }
        // First event of this pixel on this core: the one allocation of the slot.
        self.slots.push(Slot {
            pixel,
            buf: Vec::new(),
            events: 0,
            oldest_event_time: 0,
            opened: now,
        });
        self.slots.len() - 1
    }

    /// Books the event just written at `start..` (after the comma at `before`, if any)
    /// and closes what it filled.
    fn record(
        &mut self,
        i: usize,
        now: Instant,
        event_time: u64,
        before: usize,
        start: usize,
        out: &mut Vec<ClosedBatch>,
    ) {
        let max_bytes = self.cfg.max_bytes;
        let slot = &mut self.slots[i];
        if slot.events > 0 && slot.buf.len() + ENVELOPE_BYTES > max_bytes {
            // The event does not fit: the batch closes without it and the event starts
            // the next one (moved into a recycled buffer: a memcpy of one event).
            let mut next = take_buffer(&mut self.free, max_bytes);
            next.extend_from_slice(&slot.buf[start..]);
            slot.buf.truncate(before);
            let closed = ClosedBatch {
                pixel: slot.pixel,
                events: slot.events,
                oldest_event_time: slot.oldest_event_time,
                payload: std::mem::replace(&mut slot.buf, next),
                opened: slot.opened,
            };
            slot.events = 0;
            out.push(closed);
        }
        if slot.events == 0 {
            slot.opened = now;
            slot.oldest_event_time = event_time;
        } else {
            slot.oldest_event_time = slot.oldest_event_time.min(event_time);
        }
        slot.events += 1;
        // A lone event larger than the cap goes out alone rather than never.
        if slot.events as usize >= self.cfg.max_events
            || slot.buf.len() + ENVELOPE_BYTES >= max_bytes
        {
            out.push(self.close(i));
        }
    }

    /// Moves the open batch of slot `i` out; the slot gets a buffer at its next event.
    fn close(&mut self, i: usize) -> ClosedBatch {
        let slot = &mut self.slots[i];
        let events = std::mem::take(&mut slot.events);
        ClosedBatch {
            pixel: slot.pixel,
            events,
            oldest_event_time: slot.oldest_event_time,
            payload: std::mem::take(&mut slot.buf),
            opened: slot.opened,
        }
    }
}

/// A buffer from the free list, or a new one when it is empty (start-up, bursts).
fn take_buffer(free: &mut Vec<Vec<u8>>, max_bytes: usize) -> Vec<u8> {
    free.pop()
        .unwrap_or_else(|| Vec::with_capacity(INITIAL_CAPACITY.min(max_bytes)))
}

#[cfg(test)]
mod tests;
