//! One connection's request decoding and timer state, driven with bytes and `now`.

use std::fmt;
use std::time::{Duration, Instant};

use super::chunked::{Chunked, ChunkedDecoder};
use super::head::{parse_head, BodyFraming, HeadScan, HeaderSlot, RequestHead};
use super::{Error, Limits};

/// Where a connection is, with the instant its current deadline counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for the rest of a head; `since` is accept, or the first byte after idle.
    ReadingHead { since: Instant },
    /// The head is in; `since` is when it completed.
    ReadingBody { since: Instant },
    /// A request was handed out and not answered yet: no read deadline (the driver's
    /// write timeout, if any, is its own).
    Handling,
    /// Answered; waiting for a next request on a kept-alive connection.
    Idle { since: Instant },
    /// Must be closed, because of `by`. Further `decode` calls return it again.
    Closed { by: Error },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    Header,
    Body,
    Idle,
}

/// The deadline in force and which limit it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub kind: TimeoutKind,
}

/// What to do about a passed deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Close without answering: the connection was idle, and a 408 could cross a request
    /// the client is sending right now and be taken as its answer.
    Close,
    /// Write this 408 ([`Error::write_response`]) and close.
    Respond(Error),
}

/// The outcome of one [`Conn::decode`].
#[derive(Debug)]
pub enum Decoded<'h, 'b> {
    Incomplete(Incomplete),
    Request(Request<'h, 'b>),
}

/// More bytes are needed (this is the hot path's "not yet": three words, no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incomplete {
    /// Only `buf[..filled]` must be kept; append the next read at `filled`. Equal to the
    /// length passed in, except while a chunked body is decoded (framing bytes freed).
    pub filled: usize,
    /// The total the request will take when already known (`Content-Length`), so the
    /// buffer can be sized once.
    pub needed: Option<usize>,
    /// Write [`CONTINUE`](super::CONTINUE) now: the client waits for it before sending
    /// the body. True at most once per request.
    pub send_continue: bool,
}

/// A complete request.
pub struct Request<'h, 'b> {
    pub head: RequestHead<'h, 'b>,
    /// The body, contiguous and decoded (in place for chunked), mutable so that the JSON
    /// parser can unescape in place too.
    pub body: &'b mut [u8],
    /// Bytes of the buffer this request used; a pipelined next request starts here.
    pub consumed: usize,
}

impl fmt::Debug for Request<'_, '_> {
    /// The body is personal data; only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("head", &self.head)
            .field("body_len", &self.body.len())
            .field("consumed", &self.consumed)
            .finish()
    }
}

/// The per-connection HTTP/1.1 state: where the current request's parse is, and which
/// timeout applies. Under 256 bytes, nothing on the heap.
#[derive(Clone, Debug)]
pub struct Conn {
    limits: Limits,
    state: State,
    progress: Progress,
}

#[derive(Clone, Debug)]
enum Progress {
    Head(HeadScan),
    Body { head_len: usize, body: BodyProgress },
}

#[derive(Clone, Debug)]
enum BodyProgress {
    Length(usize),
    Chunked(ChunkedDecoder),
}

enum BodyStatus<'b> {
    /// The body and the bytes it took after the head.
    Done(&'b mut [u8], usize),
    /// Bytes after the head to keep; the body length if known.
    Partial { filled: usize, needed: Option<usize> },
}

impl Conn {
    /// A connection accepted at `now`: the header timeout runs from here, so a client
    /// that connects and sends nothing is closed after `header_timeout`.
    pub fn new(limits: Limits, now: Instant) -> Conn {
        Conn {
            limits,
            state: State::ReadingHead { since: now },
            progress: Progress::Head(HeadScan::new()),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes the request at the front of `buf` as far as the bytes allow (see the
    /// driver's contract in the module header). Calling it while a request is being
    /// handled counts as having answered it at `now`. After an error the state is
    /// [`State::Closed`]: write [`Error::write_response`] and close.
    pub fn decode<'h, 'b>(
        &mut self,
        buf: &'b mut [u8],
        slots: &'h mut [HeaderSlot<'b>],
        now: Instant,
    ) -> Result<Decoded<'h, 'b>, Error> {
        match self.state {
            State::Closed { by } => return Err(by),
            // Blank lines between requests (some clients send CRLF after a body) do not
            // start a request: the connection stays idle, so it is later closed quietly
            // rather than with a 408 that could cross the client's next request. Bounded
            // by the head cap, which the scan enforces on them once they reach it.
            State::Handling | State::Idle { .. }
                if buf.len() < self.limits.header_bytes
                    && buf.iter().all(|&b| b == b'\r' || b == b'\n') =>
            {
                self.response_sent(now);
                return Ok(Decoded::Incomplete(Incomplete {
                    filled: buf.len(),
                    needed: None,
                    send_continue: false,
                }));
            }
            State::Handling | State::Idle { .. } => self.state = State::ReadingHead { since: now },
            State::ReadingHead { .. } | State::ReadingBody { .. } => {}
        }
        let decoded = self.advance(buf, slots, now);
        if let Err(by) = decoded {
            self.state = State::Closed { by };
        }
        decoded
    }

    fn advance<'h, 'b>(
        &mut self,
        buf: &'b mut [u8],
        slots: &'h mut [HeaderSlot<'b>],
        now: Instant,
    ) -> Result<Decoded<'h, 'b>, Error> {
        let total = buf.len();
        match &mut self.progress {
            Progress::Head(scan) => {
                let Some(head_len) = scan.scan(buf, &self.limits)? else {
                    return Ok(Decoded::Incomplete(Incomplete {
                        filled: total,
                        needed: None,
                        send_continue: false,
                    }));
                };
                let (head_buf, rest) = buf.split_at_mut(head_len);
                // The head is judged before any body byte is read: a 413 or 417 must not
                // wait for the body it refuses.
                let head = parse_head(head_buf, slots, &self.limits)?;
                let mut body = match head.body() {
                    BodyFraming::Empty => {
                        self.finish();
                        let (body, _) = rest.split_at_mut(0);
                        return Ok(Decoded::Request(Request { head, body, consumed: head_len }));
                    }
                    BodyFraming::Length(n) => BodyProgress::Length(n),
                    BodyFraming::Chunked => BodyProgress::Chunked(ChunkedDecoder::new(&self.limits)),
                };
                let status = read_body(&mut body, rest)?;
                self.progress = Progress::Body { head_len, body };
                self.state = State::ReadingBody { since: now };
                self.outcome(head_len, status, head.expects_continue(), || Ok(head))
            }
            Progress::Body { head_len, body } => {
                let head_len = *head_len;
                if total < head_len {
                    // The driver lost the head: wait for it rather than read garbage.
                    return Ok(Decoded::Incomplete(Incomplete {
                        filled: total,
                        needed: Some(head_len),
                        send_continue: false,
                    }));
                }
                let (head_buf, rest) = buf.split_at_mut(head_len);
                let status = read_body(body, rest)?;
                let limits = self.limits;
                // Parsed again only now that the request is whole: the first parse's view
                // could not be kept across reads of the same buffer.
                self.outcome(head_len, status, false, || parse_head(head_buf, slots, &limits))
            }
        }
    }

    fn outcome<'h, 'b>(
        &mut self,
        head_len: usize,
        status: BodyStatus<'b>,
        send_continue: bool,
        head: impl FnOnce() -> Result<RequestHead<'h, 'b>, Error>,
    ) -> Result<Decoded<'h, 'b>, Error> {
        match status {
            BodyStatus::Done(body, used) => {
                let head = head()?;
                self.finish();
                Ok(Decoded::Request(Request { head, body, consumed: head_len + used }))
            }
            BodyStatus::Partial { filled, needed } => Ok(Decoded::Incomplete(Incomplete {
                filled: head_len + filled,
                needed: needed.map(|n| head_len + n),
                send_continue,
            })),
        }
    }

    fn finish(&mut self) {
        self.progress = Progress::Head(HeadScan::new());
        self.state = State::Handling;
    }

    /// The answer to the handed-out request is written: the idle timeout runs from `now`.
    pub fn response_sent(&mut self, now: Instant) {
        if self.state == State::Handling {
            self.state = State::Idle { since: now };
        }
    }

    /// The deadline in force, if any (none while handling, or once closed). A timeout too
    /// large to add to `since` is no deadline.
    pub fn deadline(&self) -> Option<Deadline> {
        let (since, limit, kind) = match self.state {
            State::ReadingHead { since } => (since, self.limits.header_timeout, TimeoutKind::Header),
            State::ReadingBody { since } => (since, self.limits.body_timeout, TimeoutKind::Body),
            State::Idle { since } => (since, self.limits.idle_timeout, TimeoutKind::Idle),
            State::Handling | State::Closed { .. } => return None,
        };
        Some(Deadline { at: since.checked_add(limit)?, kind })
    }

    /// Whether the deadline has passed at `now`; if so the connection is closed and the
    /// answer says whether to send a 408 first.
    pub fn expire(&mut self, now: Instant) -> Option<Expired> {
        let deadline = self.deadline()?;
        if now < deadline.at {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (by, expired) = match deadline.kind {
            TimeoutKind::Header => {
                let e = Error::HeaderTimeout { after_ms: ms(self.limits.header_timeout) };
                (e, Expired::Respond(e))
            }
            TimeoutKind::Body => {
                let e = Error::BodyTimeout { after_ms: ms(self.limits.body_timeout) };
                (e, Expired::Respond(e))
            }
            TimeoutKind::Idle => {
                (Error::IdleTimeout { after_ms: ms(self.limits.idle_timeout) }, Expired::Close)
            }
        };
        self.state = State::Closed { by };
        Some(expired)
    }
}

fn read_body<'b>(body: &mut BodyProgress, rest: &'b mut [u8]) -> Result<BodyStatus<'b>, Error> {
    match body {
        BodyProgress::Length(n) => {
            let n = *n;
            if rest.len() >= n {
                let (body, _) = rest.split_at_mut(n);
                Ok(BodyStatus::Done(body, n))
            } else {
                Ok(BodyStatus::Partial { filled: rest.len(), needed: Some(n) })
            }
        }
        BodyProgress::Chunked(decoder) => match decoder.decode(rest)? {
            Chunked::Done { len, consumed } => {
                let (body, _) = rest.split_at_mut(len);
                Ok(BodyStatus::Done(body, consumed))
            }
            Chunked::Partial { filled } => Ok(BodyStatus::Partial { filled, needed: None }),
        },
    }
}
