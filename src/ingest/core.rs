//! One ingestion core's shared state: the transform, the batcher and the hand-off link,
//! and the **generations** that tell waiting clients when their events are durable.
//!
//! Every connection task of a core borrows this state (a `RefCell` in an `Rc`: the core
//! is one thread, and no borrow is ever held across an `.await`). A request's events are
//! transformed straight from its buffer into the open batches; the request then waits for
//! the *open generation*. The core's flusher closes the open generation — closes every
//! open batch and hands them over — as soon as requests wait on it and fewer than
//! [`MAX_GENERATIONS_IN_FLIGHT`] older generations are still waiting for the spool. So a
//! lone request is answered after one group commit, and under load every request that
//! arrives during a commit joins the next generation: batches grow with the load
//! (group commit), latency stays about two commit intervals.
//!
//! A generation is durable when every batch closed for it came back `Ok`; if any was
//! refused (a full spool), every request of the generation is refused with that error
//! and resends (its events keep their `event_id`s; a batch of the generation that did get
//! stored is then delivered twice, which Meta deduplicates). A refused generation leaves
//! no trace in the dedup windows: the fingerprints of its events are kept with it and
//! forgotten when it fails, so the resend is stored, not answered `duplicate`.
//!
//! An event too large for one spool record (or one upstream batch) is refused on its
//! own, as `event_too_large`, before it joins a batch: no resend could store it, and it
//! must not make the other requests of its generation fail. For the same reason a core's
//! batches close before they outgrow one spool record.
//!
//! Hot path: no allocation per event — the transform writes into a kept scratch buffer,
//! the batcher into recycled batch buffers; the maps here are per generation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use crate::deliver::batch::{BatchConfig, Batcher, ClosedBatch, ENVELOPE_BYTES};
use crate::deliver::handoff::{CoreLink, Done, Origin, SubmitError, Ticket};
use crate::event::json::{write_str, JsonError, Parser, Val};
use crate::event::policy::{PixelId, Policies};
use crate::event::reject::{Reason, Rejection};
use crate::event::{Context, Transformer};

/// Closed generations waiting for the spool at once, per core.
pub const MAX_GENERATIONS_IN_FLIGHT: usize = 2;
/// Failed generations remembered for their waiters.
const FAILED_KEPT: usize = 1024;

/// A generation number: the open one collects events, lower ones are closed.
pub type Generation = u64;

struct GenState {
    pending: u32,
    error: Option<SubmitError>,
    /// The dedup fingerprints of the generation's events, forgotten if it fails.
    fingerprints: Vec<(PixelId, u64)>,
}

/// A core's ingestion state.
pub struct CoreState {
    /// `None` only during [`CoreState::ingest`], which takes it out so that the parse
    /// closure can borrow the rest.
    parser: Option<Parser>,
    pub transformer: Transformer,
    batcher: Batcher,
    link: CoreLink,
    scratch: Vec<u8>,
    closed: Vec<ClosedBatch>,
    done: Vec<Done>,
    open: Generation,
    open_events: u32,
    /// The open generation's dedup fingerprints.
    open_fingerprints: Vec<(PixelId, u64)>,
    /// Emptied fingerprint lists, reused (no allocation per generation once warm).
    spare_fingerprints: Vec<Vec<(PixelId, u64)>>,
    /// The largest CAPI event (serialized) that fits one spool record and one batch.
    max_event_bytes: usize,
    tickets: HashMap<Ticket, Generation>,
    in_flight: BTreeMap<Generation, GenState>,
    failed: VecDeque<(Generation, SubmitError)>,
    /// Generations finished since [`CoreState::take_finished`] last ran, so that only
    /// their waiters are woken.
    finished: Vec<Generation>,
    /// The first `fbclid` of the last body's page URLs, when it came without `_fbc`.
    fbclid: String,
}

impl CoreState {
    pub fn new(policies: Policies, mut batch: BatchConfig, link: CoreLink) -> CoreState {
        // A batch is one spool record: it closes before it could outgrow one (a small
        // spool cap would otherwise refuse a big generation's batch every time).
        batch.max_bytes = batch.max_bytes.min(link.max_payload());
        let max_event_bytes = batch.max_bytes.saturating_sub(ENVELOPE_BYTES);
        CoreState {
            open_fingerprints: Vec::new(),
            spare_fingerprints: Vec::new(),
            max_event_bytes,
            parser: Some(Parser::default()),
            transformer: Transformer::new(policies),
            batcher: Batcher::new(batch),
            link,
            scratch: Vec::with_capacity(4096),
            closed: Vec::new(),
            done: Vec::new(),
            open: 1,
            open_events: 0,
            tickets: HashMap::new(),
            in_flight: BTreeMap::new(),
            failed: VecDeque::new(),
            finished: Vec::new(),
            fbclid: String::new(),
        }
    }

    /// Whether new events must be refused now (the spool is full).
    pub fn refusing(&self) -> Option<SubmitError> {
        self.link.spool_full().then(|| self.link.full_error())
    }

    /// The generation events added now belong to.
    pub fn open_generation(&self) -> Generation {
        self.open
    }

    /// Whether the flusher has something to close.
    pub fn wants_flush(&self) -> bool {
        let closed_in_flight = self.in_flight.range(..self.open).count();
        self.open_events > 0 && closed_in_flight < MAX_GENERATIONS_IN_FLIGHT
    }

    /// Whether generations wait for the spool (the flusher polls while so).
    pub fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Replaces the pixel policies (a reload); the dedup windows start empty.
    pub fn set_policies(&mut self, policies: Policies) {
        self.transformer.policies = policies;
    }

    /// Closes the open generation: every open batch is handed over.
    pub fn close_generation(&mut self) {
        if self.open_events == 0 {
            return;
        }
        let g = self.open;
        self.open += 1;
        self.open_events = 0;
        self.batcher.flush_all(&mut self.closed);
        self.submit_closed(g);
        let fingerprints = std::mem::replace(&mut self.open_fingerprints, self.spare_fingerprints.pop().unwrap_or_default());
        // Nothing of it is waiting for the spool (every batch refused, or the early
        // ones answered already): it is finished now.
        match self.in_flight.get_mut(&g) {
            Some(s) if s.pending > 0 => s.fingerprints = fingerprints,
            _ => {
                let error = self.in_flight.remove(&g).and_then(|s| s.error);
                self.finish(g, error, fingerprints);
            }
        }
    }

    /// Hands the closed batches over as part of generation `g`.
    fn submit_closed(&mut self, g: Generation) {
        for b in std::mem::take(&mut self.closed) {
            let result = self.link.submit(b);
            let state = self.in_flight.entry(g).or_insert(GenState {
                pending: 0,
                error: None,
                fingerprints: Vec::new(),
            });
            match result {
                Ok(t) => {
                    self.tickets.insert(t, g);
                    state.pending += 1;
                }
                Err(e) => state.error = Some(e),
            }
        }
    }

    /// Takes the spool's answers; the generations they finish are in
    /// [`CoreState::take_finished`].
    pub fn poll(&mut self) {
        self.link.poll(&mut self.done);
        for d in std::mem::take(&mut self.done) {
            let Origin::Fresh(t) = d.origin else { continue };
            let Some(g) = self.tickets.remove(&t) else { continue };
            let Some(state) = self.in_flight.get_mut(&g) else { continue };
            state.pending -= 1;
            if let Err(e) = d.result {
                state.error = Some(e);
            }
            // The open generation's early batches (full ones) may all be answered
            // before it closes: it stays open, with their error if any.
            if state.pending == 0 && g < self.open {
                let state = self.in_flight.remove(&g).expect("present above");
                self.finish(g, state.error, state.fingerprints);
            }
        }
    }

    /// Moves the generations finished since the last call into `out`.
    pub fn take_finished(&mut self, out: &mut Vec<Generation>) {
        out.append(&mut self.finished);
    }

    fn finish(&mut self, g: Generation, error: Option<SubmitError>, mut fingerprints: Vec<(PixelId, u64)>) {
        self.finished.push(g);
        if error.is_some() {
            // Its requests are refused and will be sent again: not duplicates then.
            for &(pixel, fp) in &fingerprints {
                self.transformer.policies.forget(pixel, fp);
            }
        }
        fingerprints.clear();
        if fingerprints.capacity() > 0 && self.spare_fingerprints.len() < MAX_GENERATIONS_IN_FLIGHT + 2 {
            self.spare_fingerprints.push(fingerprints);
        }
        if let Some(e) = error {
            if self.failed.len() == FAILED_KEPT {
                self.failed.pop_front();
            }
            self.failed.push_back((g, e));
        }
    }

    /// `None` while generation `g` is open or in flight; then whether it was stored.
    pub fn result(&self, g: Generation) -> Option<Result<(), SubmitError>> {
        if g >= self.open || self.in_flight.contains_key(&g) {
            return None;
        }
        match self.failed.iter().find(|(f, _)| *f == g) {
            Some((_, e)) => Some(Err(e.clone())),
            None => Some(Ok(())),
        }
    }

    /// Transforms one event into its pixel's open batch (the server API's pixel comes
    /// in `ctx.pixel_id`).
    pub fn add_event(&mut self, v: Val<'_, '_>, ctx: &Context<'_>, now: Instant) -> Result<PixelId, Rejection> {
        self.scratch.clear();
        let a = self.transformer.transform(v, ctx, &mut self.scratch)?;
        if self.scratch.len() > self.max_event_bytes {
            self.transformer.forget(&a);
            return Err(Rejection::event_too_large(self.max_event_bytes as u64));
        }
        if let Some(fp) = a.fingerprint {
            self.open_fingerprints.push((a.pixel_id, fp));
        }
        self.batcher
            .push(a.pixel_id, now, a.event_time, &self.scratch, &mut self.closed);
        self.open_events += 1;
        // A batch that filled up (1,000 events, the byte cap) goes at once, as part of
        // the open generation.
        if !self.closed.is_empty() {
            self.submit_closed(self.open);
        }
        Ok(a.pixel_id)
    }
}

/// The generations an answer waits for, `from..=to`: it may say "stored" only once
/// all of them are durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub from: Generation,
    pub to: Generation,
}

impl Wait {
    /// Both waits (a WebSocket burst answers its messages together).
    pub fn merge(self, other: Wait) -> Wait {
        Wait { from: self.from.min(other.from), to: self.to.max(other.to) }
    }
}

impl CoreState {
    /// What the answer to a request that ingested `n` waits for. Its own events are in
    /// the open generation. A `duplicate` counts as taken, and its original is either
    /// durable or in a generation not finished yet (a refused one forgot it): so a
    /// request with duplicates waits for every unfinished generation too, and is refused
    /// if any of them is, rather than call an event taken that was not stored.
    pub fn wait_for(&self, n: &Ingested) -> Option<Wait> {
        let open = self.open;
        let own = (n.added > 0).then_some(Wait { from: open, to: open });
        if n.duplicates == 0 {
            return own;
        }
        let to = if self.open_events > 0 { open } else { self.in_flight.range(..open).next_back().map(|(&g, _)| g)? };
        let from = self.in_flight.keys().next().copied().unwrap_or(to).min(to);
        Some(Wait { from, to })
    }
}

/// What a request body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyShape {
    /// `POST /capig/events`, a WebSocket message: one browser event object or an array.
    Browser,
    /// `POST /capi/{pixel}/events`: `{"data":[…CAPI events…], "accessKey":"…"}`.
    Server,
}

impl BodyShape {
    /// What a body of this shape should look like, for error messages.
    fn hint(self) -> &'static str {
        match self {
            BodyShape::Browser => "send one event object or an array of them, as UTF-8 JSON",
            BodyShape::Server => r#"send {"data":[…CAPI events…],"accessKey":"…"} as UTF-8 JSON"#,
        }
    }
}

/// Why a whole body was refused (each event's own refusals are in the answer instead).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("{error}; {}", shape.hint())]
    Json { error: JsonError, shape: BodyShape },
    #[error("the body holds {found} events; send at most {max} per request")]
    TooManyEvents { found: usize, max: usize },
    #[error("the body must be a JSON object {{\"data\":[…], \"accessKey\":\"…\"}}")]
    NotServerBody,
    #[error("the body has no \"accessKey\"; send the pixel's access key from the gateway's configuration")]
    MissingKey,
    #[error("the \"accessKey\" is not valid for this pixel; check the key in the pixel's access_keys_file")]
    WrongKey,
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::Json { .. } | BodyError::NotServerBody => 400,
            BodyError::TooManyEvents { .. } => 413,
            BodyError::MissingKey => 401,
            BodyError::WrongKey => 403,
        }
    }
}

/// Counts of one body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    pub added: u32,
    /// Events not taken, `duplicates` included.
    pub rejected: u32,
    /// Events not taken because the same event was taken recently: the sender's
    /// resend of an event already stored, which counts as taken for the status.
    pub duplicates: u32,
    /// Events refused as `event_too_large`.
    pub too_large: u32,
    /// A taken event's page URL had an `fbclid` and the request no `_fbc` cookie:
    /// [`CoreState::fbclid`] holds it, for the `_fbc` cookie of the answer.
    pub fbclid: bool,
}

impl CoreState {
    /// Parses `body` in place and transforms every event into the open batches. Writes
    /// the per-event part of the answer into `ids` (`"id","id"` of the events taken) and
    /// `rejected` (`{"event_id":…,"reason":…,"message":…}` objects, comma-separated).
    /// `key_ok` checks a server body's `accessKey` before anything is taken.
    #[allow(clippy::too_many_arguments)]
    pub fn ingest(
        &mut self,
        body: &mut [u8],
        shape: BodyShape,
        ctx: &Context<'_>,
        now: Instant,
        max_events: usize,
        key_ok: &dyn Fn(&str) -> bool,
        ids: &mut Vec<u8>,
        rejected: &mut Vec<u8>,
    ) -> Result<Ingested, BodyError> {
        let mut parser = self.parser.take().unwrap_or_default();
        let result = parser.parse(body, |root| {
            let events = match shape {
                BodyShape::Browser => root,
                BodyShape::Server => {
                    let Some(entries) = root.entries() else {
                        return Err(BodyError::NotServerBody);
                    };
                    let (mut data, mut key) = (None, None);
                    for (k, v) in entries {
                        match k {
                            "data" => data = Some(v),
                            "accessKey" => key = v.as_str(),
                            _ => {}
                        }
                    }
                    match key {
                        None => return Err(BodyError::MissingKey),
                        Some(k) if !key_ok(k) => return Err(BodyError::WrongKey),
                        Some(_) => {}
                    }
                    match data {
                        Some(d) if d.elements().is_some() => d,
                        _ => return Err(BodyError::NotServerBody),
                    }
                }
            };
            let n = events.elements().map_or(1, |e| e.count());
            if n > max_events {
                return Err(BodyError::TooManyEvents { found: n, max: max_events });
            }
            let mut counts = Ingested::default();
            let mut one = |v: Val<'_, '_>| {
                let id = v
                    .entries()
                    .and_then(|mut e| e.find(|(k, _)| *k == "event_id"))
                    .and_then(|(_, v)| v.as_str());
                match self.add_event(v, ctx, now) {
                    Ok(_) => {
                        counts.added += 1;
                        if ctx.cookie_fbc.is_none() && !counts.fbclid {
                            let url = v
                                .entries()
                                .and_then(|mut e| e.find(|(k, _)| *k == "event_source_url"))
                                .and_then(|(_, v)| v.as_str());
                            if let Some(fbclid) = url.and_then(crate::event::ids::fbclid_from_url) {
                                self.fbclid.clear();
                                self.fbclid.push_str(fbclid);
                                counts.fbclid = true;
                            }
                        }
                        if !ids.is_empty() {
                            ids.push(b',');
                        }
                        opt_str(ids, id);
                    }
                    Err(r) => {
                        counts.rejected += 1;
                        match r.reason {
                            Reason::Duplicate => counts.duplicates += 1,
                            Reason::EventTooLarge => counts.too_large += 1,
                            _ => {}
                        }
                        if !rejected.is_empty() {
                            rejected.push(b',');
                        }
                        rejected.extend_from_slice(b"{\"event_id\":");
                        opt_str(rejected, id);
                        rejected.extend_from_slice(b",\"reason\":");
                        write_str(rejected, r.reason.as_str());
                        rejected.extend_from_slice(b",\"message\":");
                        r.write_json(rejected);
                        rejected.push(b'}');
                    }
                }
            };
            match events.elements() {
                Some(all) => all.for_each(&mut one),
                None => one(events),
            }
            Ok(counts)
        });
        self.parser = Some(parser);
        result.map_err(|error| BodyError::Json { error, shape })?
    }
}

impl Ingested {
    /// The HTTP status of the answer: `all_taken` (200, or 202 for the server API)
    /// when every event was taken, 202 when some were rejected, 400 when none was
    /// (413 when every one was too large). A duplicate counts as taken: it is a resend
    /// of an event the gateway already has.
    pub fn status(&self, all_taken: u16) -> u16 {
        let taken = self.added + self.duplicates;
        if taken == 0 && self.too_large > 0 && self.too_large == self.rejected {
            413
        } else if taken == 0 {
            400
        } else if self.rejected > self.duplicates {
            202
        } else {
            all_taken
        }
    }
}

impl CoreState {
    /// See [`Ingested::fbclid`].
    pub fn fbclid(&self) -> &str {
        &self.fbclid
    }
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}
