//! The delivery scheduler: which events go to Meta next, in which request, and what to
//! do with the answer.
//!
//! Sans-IO: [`Scheduler::poll`] and [`Scheduler::complete`] take an explicit `now` (and
//! the Unix time for the 7-day limit) and return [`Action`]s; the delivery thread
//! (`pipeline`) performs them — sends requests, tells the spool writer to acknowledge a
//! record or to dead-letter events. Tests drive it with made-up outcomes and clocks.
//!
//! Design constraints:
//! - **Upstream batching is the scheduler's, durability the cores'.** The cores close a
//!   batch at every group-commit generation, so an answer waits only for the commit of
//!   its own events; each batch is one spool record, pushed here as a [`Part`] once
//!   durable. A [`Request`] to Meta is composed from the free parts at the front of a
//!   lane's queue — records of any core and generation — and goes once it holds
//!   `batch_size` events, once one more part would pass `batch_bytes`, or `linger` after
//!   the first event of its oldest part. Lingering thus costs no disk write and delays no
//!   answer. `linger = 0` sends each part alone, at once. Parts from before a restart
//!   (`received: None`) and parts back from a retry are old: they go at once, with what
//!   is queued behind them.
//! - **One lane per pixel**, each with its own queue, requests in flight, backoff, circuit
//!   breaker and "slow down" limit. Lanes are served round-robin, one request each per
//!   round, so one pixel's backlog, throttling or broken token never delays another
//!   pixel: a lane that cannot send (breaker open, backing off, at its limit) is simply
//!   skipped.
//! - **Order per pixel**: a lane's queue is kept in spool order (record id, then offset
//!   within the record for bisected parts); a failed batch goes back to its place, so the
//!   oldest batch is retried first. With `concurrency` > 1 up to that many batches are in
//!   flight at once and Meta may see them in any order among themselves.
//! - **A record is acknowledged once every part of it is resolved**: delivered, or in the
//!   dead-letter store. Acks are per record, never per request: a request that succeeds
//!   resolves each of its parts. [`Action::DeadLetter`] for a record's part always comes
//!   before its [`Action::Ack`], so the writer stores the dead letters before it drops
//!   the record.
//! - **Bisection** (Meta's code 100): a composed request is halved along its parts (by
//!   events), a single part within its payload; each half becomes a *group*
//!   ([`Part::group`]) that is sent as it is, alone, so the halving converges on the
//!   invalid event whatever arrives meanwhile.
//! - Throttling (`slow_down`) halves the lane's limit of requests in flight (at least one);
//!   every success raises it by one again, up to `concurrency`.
//! - Expiry: a part whose oldest event would pass Meta's 7-day limit before delivery is
//!   split by event at dispatch: the expired events are dead-lettered (reason `expired`),
//!   the rest is sent. Otherwise a single stale event would make Meta fail the batch.
//! - Payloads are [`Bytes`]: bisecting a batch slices it, no copy.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde::Deserialize;

use super::batch::ENVELOPE_BYTES;
use super::deadletter::Reason;
use super::policy::{
    self, Admit, Backoff, BackoffConfig, Bisect, Breaker, BreakerConfig, BreakerState, Halves,
    MetaError, Outcome, RetryCause, Rng,
};
use super::spool::RecordId;
use crate::event::policy::PixelId;

#[cfg(test)]
mod tests;

/// A batch, or part of one after bisection, waiting for or in delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub record: RecordId,
    /// Where this part starts in the record's payload (orders the parts of a record).
    pub offset: u32,
    pub pixel: PixelId,
    pub events: u32,
    /// The smallest `event_time` of the part (of its record, after a bisection).
    pub oldest_time: u64,
    /// Comma-separated CAPI event objects.
    pub payload: Bytes,
    /// When the first event of its batch reached capig (`None` after a restart).
    pub received: Option<Instant>,
    /// 0: may be composed with its lane's other free parts. Otherwise the parts of one
    /// group go together and with nothing else (the halves of a bisection).
    pub group: u32,
}

/// One Graph request: consecutive parts of one pixel's queue, composed into one body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub pixel: PixelId,
    /// In spool order; each is resolved (acknowledged or dead-lettered) on its own.
    pub parts: Vec<Part>,
    pub events: u32,
    /// The parts' payloads joined by commas (the single part's payload, uncopied).
    pub payload: Bytes,
}

impl Request {
    fn new(pixel: PixelId, parts: Vec<Part>) -> Request {
        let events = parts.iter().map(|p| p.events).sum();
        let payload = if parts.len() == 1 {
            parts[0].payload.clone()
        } else {
            let len = parts.iter().map(|p| p.payload.len() + 1).sum::<usize>();
            let mut b = Vec::with_capacity(len);
            for p in &parts {
                if !b.is_empty() {
                    b.push(b',');
                }
                b.extend_from_slice(&p.payload);
            }
            Bytes::from(b)
        };
        Request { pixel, parts, events, payload }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send this request; report its outcome with [`Scheduler::complete`].
    Send(Request),
    /// Every part of the record is resolved: acknowledge it in the spool.
    Ack(RecordId),
    /// Store these events in the dead-letter store.
    DeadLetter(DeadLetter),
}

/// Events of a record for the dead-letter store, with why.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub record: RecordId,
    pub pixel: PixelId,
    /// Comma-separated CAPI event objects.
    pub payload: Bytes,
    pub events: u32,
    pub reason: Reason,
    /// Meta's error, when Meta refused them.
    pub meta: Option<MetaError>,
}

/// How the scheduler sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Requests in flight per pixel.
    pub concurrency: usize,
    pub backoff: BackoffConfig,
    pub breaker: BreakerConfig,
    /// Seeds the jitter.
    pub seed: u64,
    /// Events per request (`upstream.batch_size`, at most 1,000).
    pub batch_size: usize,
    /// Upper bound of a request body (`upstream.batch_bytes`); a single part larger
    /// than this still goes, alone.
    pub batch_bytes: usize,
    /// How long a request waits for more parts after the first event of its oldest
    /// part reached capig (`upstream.linger_ms`). Zero: each part goes alone, at once.
    pub linger: Duration,
}

/// A lane's state for status pages and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneStatus {
    pub pixel: PixelId,
    pub queued_parts: usize,
    pub queued_events: u64,
    pub in_flight: usize,
    pub limit: usize,
    pub breaker: BreakerState,
    /// Meta's error that opened the breaker.
    pub breaker_error: Option<MetaError>,
    /// Consecutive failures (retries) since the last success.
    pub failures: u32,
}

struct Lane {
    pixel: PixelId,
    queue: VecDeque<Part>,
    in_flight: usize,
    limit: usize,
    backoff: Backoff,
    breaker: Breaker,
    /// No send before this (backoff after a failure).
    not_before: Option<Instant>,
}

/// The per-pixel scheduler of one delivery thread.
pub struct Scheduler {
    cfg: SchedulerConfig,
    lanes: Vec<Lane>,
    /// Index into `lanes` of the lane served first in the next round.
    next_lane: usize,
    /// Unresolved parts per record.
    records: HashMap<RecordId, u32>,
    rng: Rng,
    bisect: Bisect,
    /// The last group number given (see [`Part::group`]).
    groups: u32,
}

#[derive(Deserialize)]
struct EventTime {
    event_time: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Scheduler {
        Scheduler {
            cfg,
            lanes: Vec::new(),
            next_lane: 0,
            records: HashMap::new(),
            rng: Rng::new(cfg.seed),
            bisect: Bisect::default(),
            groups: 0,
        }
    }

    /// A new record to deliver (a whole batch from the spool).
    pub fn push(&mut self, part: Part) {
        self.records.insert(part.record, 1);
        let lane = self.lane(part.pixel);
        insert_in_order(&mut self.lanes[lane].queue, part);
    }

    /// Records not yet resolved.
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.records.is_empty()
    }

    /// Parts in flight over all lanes.
    pub fn in_flight(&self) -> usize {
        self.lanes.iter().map(|l| l.in_flight).sum()
    }

    /// Closes the pixel's breaker and lifts its backoff (its token was replaced), so
    /// its next batch goes at once.
    pub fn reset_pixel(&mut self, pixel: PixelId) {
        if let Some(l) = self.lanes.iter_mut().find(|l| l.pixel == pixel) {
            l.breaker.reset();
            l.backoff.reset();
            l.not_before = None;
            breaker_gauge(l);
        }
    }

    /// Every lane's state, in the order pixels were first seen.
    pub fn status(&self) -> Vec<LaneStatus> {
        self.lanes
            .iter()
            .map(|l| LaneStatus {
                pixel: l.pixel,
                queued_parts: l.queue.len(),
                queued_events: l.queue.iter().map(|p| u64::from(p.events)).sum(),
                in_flight: l.in_flight,
                limit: l.limit,
                breaker: l.breaker.state(),
                breaker_error: l.breaker.trip().map(|t| t.error.clone()),
                failures: l.backoff.failures(),
            })
            .collect()
    }

    /// Appends what can be done at `now` to `out`: sends, round-robin over pixels, and
    /// the dead letters of expired events.
    pub fn poll(&mut self, now: Instant, now_unix: u64, out: &mut Vec<Action>) {
        let n = self.lanes.len();
        if n == 0 {
            return;
        }
        loop {
            let mut sent = false;
            for k in 0..n {
                let i = (self.next_lane + k) % n;
                if self.dispatch_one(i, now, now_unix, out) {
                    sent = true;
                }
            }
            self.next_lane = (self.next_lane + 1) % n;
            if !sent {
                return;
            }
        }
    }

    /// When [`Scheduler::poll`] may have something new to do without any other event
    /// (a backoff or a breaker probe time passing, a lingering request coming of age).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter(|l| !l.queue.is_empty() && l.in_flight < l.limit)
            .filter_map(|l| {
                let probe = l
                    .breaker
                    .trip()
                    .filter(|_| l.breaker.state() == BreakerState::Open)
                    .map(|t| t.next_probe);
                let linger = plan(l, &self.cfg).and_then(|p| p.ready_at);
                [l.not_before, probe, linger].into_iter().flatten().max()
            })
            .min()
    }

    /// Books Meta's answer (or its absence) for a request sent earlier.
    pub fn complete(&mut self, req: Request, outcome: Outcome, now: Instant, out: &mut Vec<Action>) {
        let concurrency = self.cfg.concurrency.max(1);
        let i = self.lane(req.pixel);
        let pixel_label = req.pixel.to_string();
        let lane = &mut self.lanes[i];
        lane.in_flight = lane.in_flight.saturating_sub(1);
        lane.breaker.record(now, &outcome);
        breaker_gauge(lane);
        let (class, code) = outcome_labels(&outcome);
        metrics::counter!("capig_capi_requests_total", "pixel" => pixel_label.clone(), "outcome" => class, "code" => code)
            .increment(1);
        match outcome {
            Outcome::Delivered { .. } => {
                lane.backoff.reset();
                lane.not_before = None;
                lane.limit = (lane.limit + 1).min(concurrency);
                metrics::counter!("capig_events_forwarded_total", "pixel" => pixel_label.clone())
                    .increment(u64::from(req.events));
                metrics::counter!("capig_bytes_forwarded_total", "pixel" => pixel_label.clone())
                    .increment(req.payload.len() as u64);
                for part in req.parts {
                    if let Some(t) = part.received {
                        metrics::histogram!("capig_delivery_latency_seconds", "pixel" => pixel_label.clone())
                            .record(now.saturating_duration_since(t).as_secs_f64());
                    }
                    self.resolve(part.record, out);
                }
            }
            Outcome::Retry { slow_down, cause } => {
                let delay = lane.backoff.next_delay(&mut self.rng);
                lane.not_before = Some(now + delay);
                if slow_down {
                    lane.limit = (lane.limit / 2).max(1);
                }
                metrics::counter!("capig_delivery_retries_total", "pixel" => pixel_label, "code" => retry_code(&cause))
                    .increment(1);
                for part in req.parts {
                    insert_in_order(&mut lane.queue, part);
                }
            }
            Outcome::Breaker(_) => {
                // The breaker (opened by `record` above) holds the lane; the parts wait.
                for part in req.parts {
                    insert_in_order(&mut lane.queue, part);
                }
            }
            Outcome::Bisect(err) => {
                lane.backoff.reset();
                let mut parts = req.parts;
                if parts.len() > 1 {
                    // A composed request: halve it along its parts (by events), each
                    // half a group of its own so that it goes alone.
                    let half = req.events.div_ceil(2);
                    let (mut k, mut acc) = (0, 0);
                    while k < parts.len() - 1 && (k == 0 || acc < half) {
                        acc += parts[k].events;
                        k += 1;
                    }
                    let right = parts.split_off(k);
                    let (gl, gr) = (self.next_group(), self.next_group());
                    let lane = &mut self.lanes[i];
                    for (half, g) in [(parts, gl), (right, gr)] {
                        for mut p in half {
                            p.group = g;
                            insert_in_order(&mut lane.queue, p);
                        }
                    }
                    return;
                }
                let part = parts.pop().expect("a request has a part");
                match self.bisect.halves(&part.payload) {
                    Ok(Halves::Split {
                        left,
                        left_events,
                        right,
                        right_events,
                    }) => {
                        let base = part.payload.as_ptr() as usize;
                        let (gl, gr) = (self.next_group(), self.next_group());
                        let mk = |half: &[u8], events: u32, group: u32| Part {
                            offset: part.offset + (half.as_ptr() as usize - base) as u32,
                            events,
                            payload: part.payload.slice_ref(half),
                            group,
                            ..part.clone()
                        };
                        let (l, r) = (mk(left, left_events, gl), mk(right, right_events, gr));
                        *self.records.entry(part.record).or_insert(1) += 1;
                        let lane = &mut self.lanes[i];
                        insert_in_order(&mut lane.queue, l);
                        insert_in_order(&mut lane.queue, r);
                    }
                    // One event that Meta still calls invalid, or a payload we cannot
                    // split (a bug): either way Meta will never take it as it is.
                    Ok(Halves::Single) | Err(_) => {
                        self.dead_letter(&part, Reason::MetaRejected, Some(err), out);
                        self.resolve(part.record, out);
                    }
                }
            }
            Outcome::DeadLetter(err) => {
                lane.backoff.reset();
                for part in req.parts {
                    self.dead_letter(&part, Reason::MetaRejected, Some(err.clone()), out);
                    self.resolve(part.record, out);
                }
            }
        }
    }

    fn next_group(&mut self) -> u32 {
        self.groups = self.groups.wrapping_add(1).max(1);
        self.groups
    }

    fn dispatch_one(&mut self, i: usize, now: Instant, now_unix: u64, out: &mut Vec<Action>) -> bool {
        let lane = &mut self.lanes[i];
        if lane.in_flight >= lane.limit || lane.not_before.is_some_and(|t| now < t) {
            return false;
        }
        let Some(plan) = plan(lane, &self.cfg) else {
            return false;
        };
        if plan.ready_at.is_some_and(|t| now < t) {
            return false;
        }
        // A probe goes alone: while the breaker is not closed, wait for what is in
        // flight to answer before asking for one.
        if lane.breaker.state() != BreakerState::Closed && lane.in_flight > 0 {
            return false;
        }
        match lane.breaker.admit(now) {
            Admit::Send | Admit::Probe => {}
            Admit::Hold { .. } => return false,
        }
        let parts: Vec<Part> = match plan.take {
            Take::Prefix(n) => lane.queue.drain(..n).collect(),
            Take::Group(g) => {
                let mut taken = Vec::new();
                let mut k = 0;
                while k < lane.queue.len() {
                    if lane.queue[k].group == g {
                        taken.extend(lane.queue.remove(k));
                    } else {
                        k += 1;
                    }
                }
                taken
            }
        };
        let pixel = lane.pixel;
        let mut kept = Vec::with_capacity(parts.len());
        for part in parts {
            if let Some(p) = self.drop_expired(part, now_unix, out) {
                kept.push(p);
            }
        }
        if kept.is_empty() {
            return true;
        }
        self.lanes[i].in_flight += 1;
        out.push(Action::Send(Request::new(pixel, kept)));
        true
    }

    /// Dead-letters the events of `part` that can no longer reach Meta in time and
    /// returns the rest (or `None` when nothing is left to send).
    fn drop_expired(&mut self, mut part: Part, now_unix: u64, out: &mut Vec<Action>) -> Option<Part> {
        if !policy::expired(part.oldest_time, now_unix) {
            return Some(part);
        }
        let ranges = match self.bisect.events(&part.payload) {
            Ok(r) => r.to_vec(),
            Err(_) => Vec::new(),
        };
        let (mut stale, mut fresh) = (Vec::new(), Vec::new());
        let (mut stale_n, mut fresh_n, mut oldest) = (0u32, 0u32, u64::MAX);
        for r in ranges {
            let ev = &part.payload[r];
            // An event whose time cannot be read is treated as expired: it cannot be
            // proved fresh, and sending it could fail the batch.
            let t = serde_json::from_slice::<EventTime>(ev).ok().map(|e| e.event_time);
            let (buf, n) = match t {
                Some(t) if !policy::expired(t, now_unix) => {
                    oldest = oldest.min(t);
                    (&mut fresh, &mut fresh_n)
                }
                _ => (&mut stale, &mut stale_n),
            };
            if !buf.is_empty() {
                buf.push(b',');
            }
            buf.extend_from_slice(ev);
            *n += 1;
        }
        if stale_n > 0 {
            out.push(Action::DeadLetter(DeadLetter {
                record: part.record,
                pixel: part.pixel,
                payload: Bytes::from(stale),
                events: stale_n,
                reason: Reason::Expired,
                meta: None,
            }));
        }
        if fresh_n == 0 {
            self.resolve(part.record, out);
            return None;
        }
        part.payload = Bytes::from(fresh);
        part.events = fresh_n;
        part.oldest_time = oldest;
        Some(part)
    }

    fn dead_letter(&mut self, part: &Part, reason: Reason, meta: Option<MetaError>, out: &mut Vec<Action>) {
        out.push(Action::DeadLetter(DeadLetter {
            record: part.record,
            pixel: part.pixel,
            payload: part.payload.clone(),
            events: part.events,
            reason,
            meta,
        }));
    }

    /// One part of `record` is resolved; acknowledges the record after its last part.
    fn resolve(&mut self, record: RecordId, out: &mut Vec<Action>) {
        if let Some(n) = self.records.get_mut(&record) {
            *n -= 1;
            if *n == 0 {
                self.records.remove(&record);
                out.push(Action::Ack(record));
            }
        }
    }

    fn lane(&mut self, pixel: PixelId) -> usize {
        if let Some(i) = self.lanes.iter().position(|l| l.pixel == pixel) {
            return i;
        }
        let c = self.cfg.concurrency.max(1);
        self.lanes.push(Lane {
            pixel,
            queue: VecDeque::new(),
            in_flight: 0,
            limit: c,
            backoff: Backoff::new(self.cfg.backoff),
            breaker: Breaker::new(self.cfg.breaker),
            not_before: None,
        });
        self.lanes.len() - 1
    }
}

/// Which parts a lane's next request takes.
enum Take {
    /// The first `n` parts of the queue.
    Prefix(usize),
    /// Every part of this group.
    Group(u32),
}

/// A lane's next request, and from when it may go (`None`: now).
struct Plan {
    take: Take,
    ready_at: Option<Instant>,
}

/// Composes the lane's next request: a bisection's group as it is; otherwise the free
/// parts at the front of the queue, up to `batch_size` events and `batch_bytes`, ready
/// once full or `linger` after the first event of its oldest part (at once for a part
/// from before a restart: it has waited long enough).
fn plan(lane: &Lane, cfg: &SchedulerConfig) -> Option<Plan> {
    let front = lane.queue.front()?;
    if front.group != 0 {
        return Some(Plan { take: Take::Group(front.group), ready_at: None });
    }
    if cfg.linger.is_zero() {
        return Some(Plan { take: Take::Prefix(1), ready_at: None });
    }
    let max_events = cfg.batch_size.max(1) as u64;
    let max_bytes = cfg.batch_bytes.saturating_sub(ENVELOPE_BYTES);
    let (mut n, mut events, mut bytes) = (0usize, 0u64, 0usize);
    let (mut first, mut full, mut restarted) = (None::<Instant>, false, false);
    for p in &lane.queue {
        if p.group != 0 {
            break;
        }
        let e = events + u64::from(p.events);
        let b = bytes + usize::from(n > 0) + p.payload.len();
        if n > 0 && (e > max_events || b > max_bytes) {
            full = true;
            break;
        }
        (n, events, bytes) = (n + 1, e, b);
        match p.received {
            Some(t) => first = Some(first.map_or(t, |f| f.min(t))),
            None => restarted = true,
        }
        if events >= max_events || bytes >= max_bytes {
            full = true;
            break;
        }
    }
    let ready_at = match first {
        Some(t) if !full && !restarted => Some(t + cfg.linger),
        _ => None,
    };
    Some(Plan { take: Take::Prefix(n), ready_at })
}

/// Puts `part` at its place in spool order; new batches go to the back at once, and a
/// returning one is found by a short scan from the front (failures are retried first).
fn insert_in_order(queue: &mut VecDeque<Part>, part: Part) {
    let key = (part.record, part.offset);
    if queue.back().is_none_or(|b| (b.record, b.offset) < key) {
        queue.push_back(part);
        return;
    }
    let at = queue
        .iter()
        .position(|p| (p.record, p.offset) > key)
        .unwrap_or(queue.len());
    queue.insert(at, part);
}

/// `capig_breaker_state{pixel}`: 0 closed, 1 open, 2 half-open (probing).
fn breaker_gauge(lane: &Lane) {
    let v = match lane.breaker.state() {
        BreakerState::Closed => 0.0,
        BreakerState::Open => 1.0,
        BreakerState::HalfOpen => 2.0,
    };
    metrics::gauge!("capig_breaker_state", "pixel" => lane.pixel.to_string()).set(v);
}

/// Labels of `capig_capi_requests_total`: the class and Meta's code (or what failed).
fn outcome_labels(o: &Outcome) -> (&'static str, String) {
    match o {
        Outcome::Delivered { .. } => ("delivered", "none".to_string()),
        Outcome::Retry { cause, .. } => ("retry", retry_code(cause)),
        Outcome::Breaker(e) => ("breaker", e.code.to_string()),
        Outcome::Bisect(e) => ("bisect", e.code.to_string()),
        Outcome::DeadLetter(e) => ("dead_letter", e.code.to_string()),
    }
}

fn retry_code(c: &RetryCause) -> String {
    match c {
        RetryCause::Meta(e) => e.code.to_string(),
        RetryCause::Status(s) => format!("http_{s}"),
        RetryCause::Transport(t) => match t {
            policy::TransportError::Timeout => "timeout",
            policy::TransportError::Connect => "connect",
            policy::TransportError::Closed => "closed",
        }
        .to_string(),
    }
}
