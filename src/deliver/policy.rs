//! Delivery policy: what to do with a batch after Meta (or the network) answered.
//!
//! Pure decisions, sans-IO: [`classify`] reads a status and a body, [`Backoff`] and
//! [`Breaker`] take an explicit `now` and an injected random source ([`Rng`]), [`Bisect`]
//! splits a payload in memory, [`expired`] compares Unix seconds. The sender is the thin
//! driver that applies them; tests need neither sockets nor clocks.
//!
//! Classes (docs/CAPI.md, "Answers and errors"; classify by `code`, never by `type`):
//! - retry with backoff: codes 1, 2, 341, 368, HTTP 5xx and any answer that is not
//!   Graph's error envelope (an HTML page from a proxy, an empty or cut body), timeouts
//!   and connection errors; also unknown codes Meta marks `is_transient`;
//! - retry and slow the pixel down: 4, 17, 613, the business-use-case family 800xx, and a
//!   bare HTTP 429;
//! - circuit breaker (token or permission, fixed by the operator): 190, 3, 10, 200–299,
//!   and 100 with subcode 33 — the events stay in the spool;
//! - bisect: 100 with any other subcode (one bad event fails the whole request);
//! - dead letter: every other error Meta answers, with its code, message and `fbtrace_id`.
//!
//! Meta's error texts carry no personal data (they name fields, not values), so they may
//! go to the dead-letter store and logs; they are truncated to [`MAX_MESSAGE`] bytes.

use std::fmt;
use std::ops::Range;
use std::time::Duration;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::Upstream;
use crate::event::transform::MAX_AGE_SECS;

/// Longest error message kept from Meta's answer.
pub const MAX_MESSAGE: usize = 512;
/// Longest `fbtrace_id` kept (Meta's are about a dozen characters).
const MAX_TRACE_ID: usize = 64;

/// Meta's answer to a failed request, as much as the dead-letter store and the logs need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetaError {
    pub status: u16,
    pub code: i64,
    pub subcode: Option<i64>,
    /// Meta's message (`error_user_msg` when `message` is absent), truncated.
    pub message: String,
    pub fbtrace_id: Option<String>,
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} code {}", self.status, self.code)?;
        if let Some(s) = self.subcode {
            write!(f, "/{s}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(t) = &self.fbtrace_id {
            write!(f, " (fbtrace_id {t})")?;
        }
        Ok(())
    }
}

/// A request that got no answer from Meta.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the request timed out")]
    Timeout,
    #[error("could not connect to the Graph API (DNS, TCP or TLS)")]
    Connect,
    #[error("the connection closed before the answer was complete")]
    Closed,
}

/// Why a batch is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryCause {
    /// Meta answered with a retryable error code.
    Meta(MetaError),
    /// An HTTP status without Graph's error envelope (5xx, a proxy's page, 429).
    Status(u16),
    Transport(TransportError),
}

/// What to do with a batch after its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the batch is Meta's; remove it from the spool.
    Delivered { events_received: Option<u64> },
    /// Keep it and send it again after a backoff; `slow_down` when Meta throttles the
    /// pixel (fewer requests in flight for it).
    Retry { cause: RetryCause, slow_down: bool },
    /// The token or its permissions are wrong: trip the pixel's breaker, keep the batch.
    Breaker(MetaError),
    /// An invalid parameter: split the batch to isolate the bad events.
    Bisect(MetaError),
    /// A permanent rejection: to the dead-letter store with Meta's reason.
    DeadLetter(MetaError),
}

impl Outcome {
    /// A request that got no answer: always retried.
    pub fn from_transport(e: TransportError) -> Outcome {
        Outcome::Retry {
            cause: RetryCause::Transport(e),
            slow_down: false,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: i64,
    error_subcode: Option<i64>,
    message: Option<String>,
    error_user_msg: Option<String>,
    fbtrace_id: Option<String>,
    #[serde(default)]
    is_transient: bool,
}

#[derive(Deserialize)]
struct Success {
    events_received: Option<u64>,
}

/// Classifies Graph's answer to one events request.
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    if (200..300).contains(&status) {
        // A 2xx means Meta took the batch, even if the body is not what we expect.
        let events_received = serde_json::from_slice::<Success>(body)
            .ok()
            .and_then(|s| s.events_received);
        return Outcome::Delivered { events_received };
    }
    let Ok(Envelope { error: e }) = serde_json::from_slice::<Envelope>(body) else {
        // Not Graph's envelope: a proxy, a load balancer or a cut connection answered,
        // so nothing was said about the events. Retry as a transient server error.
        return Outcome::Retry {
            cause: RetryCause::Status(status),
            slow_down: status == 429,
        };
    };
    let err = MetaError {
        status,
        code: e.code,
        subcode: e.error_subcode,
        message: truncate(
            e.message.or(e.error_user_msg).unwrap_or_default(),
            MAX_MESSAGE,
        ),
        fbtrace_id: e.fbtrace_id.map(|t| truncate(t, MAX_TRACE_ID)),
    };
    let retry = |err, slow_down| Outcome::Retry {
        cause: RetryCause::Meta(err),
        slow_down,
    };
    match (err.code, err.subcode) {
        (4 | 17 | 613 | 80000..=80099, _) => retry(err, true),
        (1 | 2 | 341 | 368, _) => retry(err, false),
        (190 | 3 | 10 | 200..=299, _) | (100, Some(33)) => Outcome::Breaker(err),
        (100, _) => Outcome::Bisect(err),
        _ if status >= 500 || e.is_transient => retry(err, false),
        _ => Outcome::DeadLetter(err),
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A small xorshift64* generator: jitter needs spread, not cryptographic quality, and an
/// injected generator makes the delays reproducible in tests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded by the caller (e.g. from the time and the core number); 0 is replaced,
    /// because xorshift stays at 0 forever.
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..=max` (the modulo bias is negligible for delays in milliseconds).
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// Retry delays: the ceiling doubles from `initial` to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl From<&Upstream> for BackoffConfig {
    fn from(u: &Upstream) -> Self {
        BackoffConfig {
            initial: Duration::from_millis(u.retry_initial_ms),
            max: Duration::from_millis(u.retry_max_ms),
        }
    }
}

/// Exponential backoff with full jitter (the delay is uniform between zero and the
/// ceiling), so that many pixels or cores failing together do not retry in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    failures: u32,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Backoff {
        Backoff { cfg, failures: 0 }
    }

    /// The ceiling of the next delay: `initial · 2^failures`, at most `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.cfg.initial.saturating_mul(factor).min(self.cfg.max)
    }

    /// Books a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self, rng: &mut Rng) -> Duration {
        let ceiling = self.ceiling().as_millis() as u64;
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(rng.up_to(ceiling))
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next failure starts again from `initial`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// When a tripped breaker probes again: `first`, doubling up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    pub first_probe: Duration,
    pub max_probe: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            first_probe: Duration::from_secs(30),
            max_probe: Duration::from_secs(600),
        }
    }
}

/// The state of a pixel's breaker, for metrics and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Batches flow.
    Closed,
    /// The token or permissions failed; nothing is sent until the next probe.
    Open,
    /// One probe batch is in flight; its answer closes or reopens the breaker.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        })
    }
}

/// Why and since when a breaker is not closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    pub error: MetaError,
    /// When it first opened (unchanged by failed probes).
    pub since: Instant,
    /// When the next probe may go (meaningful while open).
    pub next_probe: Instant,
    /// The current wait between probes.
    pub interval: Duration,
}

/// Whether a batch of the pixel may be sent now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send as usual.
    Send,
    /// Send this one batch as the probe; hold the others until its answer.
    Probe,
    /// Hold everything; ask again at `until` (`None`: when the probe in flight answers).
    Hold { until: Option<Instant> },
}

/// One pixel's circuit breaker for token and permission errors. A broken token is not
/// the events' fault: they stay in the spool while the breaker is open, and the pixel
/// resumes by itself once a probe succeeds (or at once after [`Breaker::reset`]).
#[derive(Clone, Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    trip: Option<Trip>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            state: BreakerState::Closed,
            trip: None,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The reason and schedule while open or half-open.
    pub fn trip(&self) -> Option<&Trip> {
        self.trip.as_ref()
    }

    /// Asks to send one batch at `now`. When open and the probe time has come, this
    /// turns half-open and admits exactly this batch as the probe.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match (self.state, &self.trip) {
            (BreakerState::Closed, _) => Admit::Send,
            (BreakerState::HalfOpen, _) => Admit::Hold { until: None },
            (BreakerState::Open, Some(t)) if now < t.next_probe => Admit::Hold {
                until: Some(t.next_probe),
            },
            (BreakerState::Open, _) => {
                self.state = BreakerState::HalfOpen;
                Admit::Probe
            }
        }
    }

    /// Books the outcome of a request of this pixel.
    pub fn record(&mut self, now: Instant, outcome: &Outcome) {
        match outcome {
            // Any answer about the events themselves proves the token works.
            Outcome::Delivered { .. } | Outcome::Bisect(_) | Outcome::DeadLetter(_) => self.reset(),
            Outcome::Breaker(err) => self.open(now, err.clone()),
            // A probe that hit a transient error proved nothing: wait the same interval.
            Outcome::Retry { .. } => {
                if let (BreakerState::HalfOpen, Some(t)) = (self.state, &mut self.trip) {
                    t.next_probe = now + t.interval;
                    self.state = BreakerState::Open;
                }
            }
        }
    }

    /// Closes the breaker (a config reload may have fixed the token).
    pub fn reset(&mut self) {
        self.state = BreakerState::Closed;
        self.trip = None;
    }

    fn open(&mut self, now: Instant, error: MetaError) {
        let trip = match (self.state, self.trip.take()) {
            // A failed probe: wait twice as long next time.
            (BreakerState::HalfOpen, Some(t)) => {
                let interval = t.interval.saturating_mul(2).min(self.cfg.max_probe);
                Trip {
                    error,
                    since: t.since,
                    next_probe: now + interval,
                    interval,
                }
            }
            // Requests that were in flight when it tripped: keep the schedule.
            (BreakerState::Open, Some(t)) => Trip { error, ..t },
            _ => Trip {
                error,
                since: now,
                next_probe: now + self.cfg.first_probe,
                interval: self.cfg.first_probe,
            },
        };
        self.trip = Some(trip);
        self.state = BreakerState::Open;
    }
}

/// A payload that is not a comma-separated list of JSON objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the batch payload holds no event")]
    Empty,
    #[error("unexpected byte {byte:#04x} at offset {at} of the batch payload")]
    Unexpected { byte: u8, at: usize },
    #[error("the batch payload ends inside an event")]
    Truncated,
}

/// The two halves of a batch, as sub-slices of its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halves<'p> {
    /// A single event: if it still fails with code 100, it is a dead letter.
    Single,
    Split {
        left: &'p [u8],
        left_events: u32,
        right: &'p [u8],
        right_events: u32,
    },
}

/// Splits failing batches in two to isolate invalid events. Keeps its index vector
/// between calls; scanning allocates nothing else.
#[derive(Debug, Default)]
pub struct Bisect {
    bounds: Vec<Range<usize>>,
}

impl Bisect {
    /// The byte ranges of the objects in `payload` (`obj,obj,obj`, whitespace allowed
    /// between them). Strings and escapes are honoured: commas and braces inside strings
    /// do not split.
    pub fn events(&mut self, payload: &[u8]) -> Result<&[Range<usize>], PayloadError> {
        self.bounds.clear();
        let mut depth = 0u32;
        let mut in_string = false;
        let mut escaped = false;
        let mut start = 0;
        // Between objects: true right after a comma or at the start.
        let mut want_object = true;
        for (i, &b) in payload.iter().enumerate() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' if depth > 0 => in_string = true,
                b'{' | b'[' if depth > 0 => depth += 1,
                b'{' if want_object => {
                    depth = 1;
                    start = i;
                    want_object = false;
                }
                b'}' | b']' if depth > 1 => depth -= 1,
                b'}' if depth == 1 => {
                    depth = 0;
                    self.bounds.push(start..i + 1);
                }
                b',' if depth == 0 && !want_object => want_object = true,
                b' ' | b'\t' | b'\n' | b'\r' => {}
                _ if depth > 0 => {}
                _ => return Err(PayloadError::Unexpected { byte: b, at: i }),
            }
        }
        if depth > 0 || in_string || (want_object && !self.bounds.is_empty()) {
            return Err(PayloadError::Truncated);
        }
        if self.bounds.is_empty() {
            return Err(PayloadError::Empty);
        }
        Ok(&self.bounds)
    }

    /// The two halves of `payload` (the left one gets the smaller half).
    pub fn halves<'p>(&mut self, payload: &'p [u8]) -> Result<Halves<'p>, PayloadError> {
        let bounds = self.events(payload)?;
        let n = bounds.len();
        if n == 1 {
            return Ok(Halves::Single);
        }
        let mid = n / 2;
        Ok(Halves::Split {
            left: &payload[bounds[0].start..bounds[mid - 1].end],
            left_events: mid as u32,
            right: &payload[bounds[mid].start..bounds[n - 1].end],
            right_events: (n - mid) as u32,
        })
    }
}

/// Safety margin of [`expired`]: covers the clock difference between this host and Meta
/// and the time a request takes, so an event is not sent just before it turns too old
/// (Meta would then fail the whole batch for it).
pub const TTL_MARGIN_SECS: u64 = 600;

/// Whether an event of `event_time` (Unix seconds) can no longer reach Meta within its
/// 7-day limit when sent at `now_unix`. The transform already refuses older events at
/// intake; this catches those that aged in the spool during an outage or an open breaker.
/// (`physical_store` events may be 62 days old; a batch does not tell them apart, so
/// this conservative rule dead-letters them after 7 days too.)
pub fn expired(event_time: u64, now_unix: u64) -> bool {
    now_unix.saturating_add(TTL_MARGIN_SECS) > event_time.saturating_add(MAX_AGE_SECS)
}

#[cfg(test)]
mod tests;
