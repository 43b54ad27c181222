//! The RFC 6455 WebSocket codec, server side and sans-IO: the opening handshake
//! ([`handshake`]), frames ([`frame`]), and a [`Connection`] that turns the client's byte
//! stream into whole messages and runs the close handshake and timeouts.
//!
//! Design constraints:
//! - **Sans-IO.** Everything works on byte slices, a caller's output `Vec<u8>` and an
//!   explicit `now: Instant`; no socket, no clock. The runtime's connection loop is a thin
//!   driver, and the fuzz target and tests drive it the same way.
//! - **In place.** The driver keeps one read buffer per connection and passes it to
//!   [`Connection::decode`]. Payloads are unmasked where they lie; a single-frame message
//!   (what browsers send) is handed out as a `&mut [u8]` slice of that buffer, ready for
//!   simd-json's in-place parse. A fragmented message is assembled in the same buffer:
//!   each continuation's payload is moved down to follow the previous one, over the
//!   headers (and any control frames) in between, so the whole message ends up as one
//!   contiguous slice.
//! - **No allocation per frame.** Nothing here allocates except growth of the caller's
//!   output `Vec` (pongs, closes). Handshake keys and accept values are fixed arrays.
//! - **Bounded.** Frame and message caps are decided from a frame's header before its
//!   payload arrives, so [`Config::buffer_len`] bounds the read buffer a driver ever needs.
//!
//! The buffer contract of [`Connection::decode`]: call it with all the bytes you hold.
//! After a [`Item::Message`], call it again with the same bytes (more may be appended).
//! After [`Item::NeedMore`] `{ keep, .. }`, only `buf[..keep]` still matters (the codec
//! moved a partial frame, and the open part of a fragmented message, to the front):
//! truncate to `keep`, append what the socket reads next, and call again. When `keep` is
//! 0 the buffer holds nothing and may go back to a pool while the connection is idle.
//!
//! Close codes the server sends, and when:
//!
//! | code | when |
//! |-----:|------|
//! | the client's | echoing the client's close (no code if it sent none); then done |
//! | 1001 | the idle timeout ([`Config::idle_timeout`]) passed with no frame from the client |
//! | 1002 | protocol error: unmasked client frame, RSV bit set (no extension is negotiated), unknown opcode, fragmented or over-125-byte control frame, 64-bit length with the top bit set, non-minimal length encoding, continuation without a message, a new data frame inside a fragmented message, close payload of one byte or a close code a peer may not send |
//! | 1007 | a text message or a close reason is not UTF-8 (checked fragment by fragment) |
//! | 1009 | a frame over [`Config::max_frame`] or a message over [`Config::max_message`] |
//! | any | what the driver passes to [`Connection::close`] (1001 at shutdown, 1003/1008 for content it refuses) |
//!
//! Codes a client may send (RFC 6455 §7.4): 1000–1003, 1007–1011, 3000–4999. 1004–1006
//! and 1015 are reserved never to be on the wire; 1012–1014 are IANA-registered, but as
//! server restart/overload signals, which a client has no reason to send; everything
//! else is unassigned. Any other code is a protocol error.
//!
//! After a protocol error the codec writes its close frame and stops reading: RFC 6455
//! §7.1.7 forbids processing more data once the connection is failed, so the driver
//! flushes the output and closes the socket without waiting for an answer.

pub mod frame;
pub mod handshake;

use std::time::{Duration, Instant};

use frame::{CheckError, Header, Incomplete, Opcode};

/// How long the client has to answer our close before the socket is dropped anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The largest data frame payload.
    pub max_frame: usize,
    /// The largest message, all its frames' payloads together.
    pub max_message: usize,
    /// No complete frame from the client for this long closes the connection (1001).
    pub idle_timeout: Duration,
    /// How long to wait for the client's close after sending ours.
    pub close_timeout: Duration,
}

impl From<&crate::config::Limits> for Config {
    fn from(limits: &crate::config::Limits) -> Config {
        Config {
            max_frame: limits.ws_frame_bytes,
            max_message: limits.ws_message_bytes,
            idle_timeout: Duration::from_millis(limits.ws_idle_timeout_ms),
            close_timeout: CLOSE_TIMEOUT,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::from(&crate::config::Limits::default())
    }
}

impl Config {
    /// The most bytes [`Connection::decode`] ever needs the driver to hold at once: an
    /// open message at its cap plus the longest header and a control frame between its
    /// fragments. A data frame over the message cap is refused from its header, so no
    /// single frame needs more. A read buffer of this capacity never runs out of room.
    pub fn buffer_len(&self) -> usize {
        self.max_message + frame::MAX_HEADER + frame::MAX_CONTROL_PAYLOAD
    }
}

/// A close status code (RFC 6455 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether a client may put this code in a close frame (see the module header).
    pub fn is_valid_from_peer(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

/// A client's violation of RFC 6455 (or of our caps). It holds no payload bytes, so it
/// can be logged and counted anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("a client frame was not masked")]
    Unmasked,
    #[error("a frame has reserved bits set, but no extension was negotiated")]
    ReservedBits,
    #[error("a frame has the unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("a control frame is fragmented")]
    FragmentedControl,
    #[error("a control frame is longer than 125 bytes")]
    ControlTooLong,
    #[error("a 64-bit frame length has its most significant bit set")]
    LengthTopBit,
    #[error("a frame length does not use the shortest encoding")]
    NonMinimalLength,
    #[error("a frame is larger than the {limit}-byte limit")]
    FrameTooBig { limit: usize },
    #[error("a message is larger than the {limit}-byte limit")]
    MessageTooBig { limit: usize },
    #[error("a continuation frame arrived with no message to continue")]
    ContinuationWithoutStart,
    #[error("a new message started before the fragmented one was finished")]
    MessageInterleaved,
    #[error("a text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("a close frame has a one-byte payload")]
    CloseLength1,
    #[error("a close frame has the code {0}, which a client may not send")]
    CloseCode(u16),
    #[error("a close reason is not valid UTF-8")]
    CloseReasonUtf8,
}

impl ProtocolError {
    /// The code of the close frame that fails the connection.
    pub fn close_code(&self) -> CloseCode {
        use ProtocolError as E;
        match self {
            E::FrameTooBig { .. } | E::MessageTooBig { .. } => CloseCode::TOO_BIG,
            E::InvalidUtf8 | E::CloseReasonUtf8 => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The reason text of that close frame: fixed and short, so it fits the 123 bytes a
    /// close frame allows without formatting.
    pub fn close_reason(&self) -> &'static str {
        use ProtocolError as E;
        match self {
            E::Unmasked => "unmasked frame",
            E::ReservedBits => "reserved bits set",
            E::UnknownOpcode(_) => "unknown opcode",
            E::FragmentedControl => "fragmented control frame",
            E::ControlTooLong => "control frame too long",
            E::LengthTopBit => "invalid frame length",
            E::NonMinimalLength => "non-minimal frame length",
            E::FrameTooBig { .. } => "frame too big",
            E::MessageTooBig { .. } => "message too big",
            E::ContinuationWithoutStart => "continuation without a message",
            E::MessageInterleaved => "message inside a fragmented message",
            E::InvalidUtf8 => "invalid UTF-8 in text message",
            E::CloseLength1 => "invalid close payload",
            E::CloseCode(_) => "invalid close code",
            E::CloseReasonUtf8 => "invalid UTF-8 in close reason",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
}

/// A whole message, unmasked and contiguous inside the driver's buffer. A text message's
/// payload has been checked to be UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'b> {
    pub kind: MessageKind,
    pub payload: &'b mut [u8],
}

/// How a connection ended. The driver flushes its output and closes the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The client closed first (with this code, if any); the echo is in the output.
    ByPeer { code: Option<CloseCode> },
    /// The client answered the close we sent.
    Answered { code: Option<CloseCode> },
    /// The client broke the protocol; our close frame with the error's code is in the
    /// output (unless we had already sent a close).
    Failed(ProtocolError),
    /// The client did not answer our close within [`Config::close_timeout`].
    CloseTimeout,
}

/// The close handshake. A received close is answered within the same `decode` call (we
/// never have a message half sent, the only reason RFC 6455 §5.5.1 gives for waiting),
/// so "close received" is not a state one can observe between calls: it is `Closed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// We sent a close (driver's [`Connection::close`] or the idle timeout) and wait for
    /// the client's, until [`Connection::deadline`]. Data messages are read and dropped:
    /// none could be acknowledged any more, so the client will send them again. Pings
    /// are not answered: our close is the last frame we send.
    CloseSent,
    Closed(Closed),
}

/// What [`Connection::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'b> {
    Message(Message<'b>),
    /// No complete frame left: keep `buf[..keep]`, append more bytes, call again.
    /// `needed` is how many more complete the current frame, when its header is in.
    NeedMore {
        keep: usize,
        needed: Option<usize>,
    },
    /// The connection is over (returned again by every later call).
    Closed(Closed),
}

/// A fragmented message being assembled: its payload so far is `buf[start..start + len]`.
#[derive(Clone, Copy, Debug)]
struct Assembly {
    kind: MessageKind,
    start: usize,
    len: usize,
    /// Payload bytes before this offset are known to be UTF-8 (text only); a code point
    /// cut by a fragment boundary is looked at again when the next fragment arrives.
    utf8_valid: usize,
}

/// One WebSocket connection after the `101`: the reader of the client's frames, the close
/// handshake and the timeouts. A few dozen bytes: the buffer is the driver's.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    /// Where the next unread frame starts in the driver's buffer.
    pos: usize,
    message: Option<Assembly>,
    last_frame: Instant,
    close_deadline: Option<Instant>,
}

impl Connection {
    /// A connection whose handshake completed at `now` (the idle clock starts there).
    pub fn new(config: Config, now: Instant) -> Connection {
        Connection {
            config,
            state: State::Open,
            pos: 0,
            message: None,
            last_frame: now,
            close_deadline: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether data frames may still be sent (RFC 6455 §5.5.1: none after our close).
    pub fn can_send(&self) -> bool {
        self.state == State::Open
    }

    /// Reads frames from `buf` (see the buffer contract in the module header) until a
    /// whole message, the need for more bytes, or the end of the connection. Pongs to
    /// pings, the echo of a close and the close that fails the connection are appended
    /// to `out`; `now` is when these bytes were read, for the idle timeout.
    ///
    /// Panics if `buf` is shorter than what the codec was told to keep: that is a driver
    /// bug, and reading on would hand out bytes of the wrong frames.
    pub fn decode<'b>(&mut self, buf: &'b mut [u8], now: Instant, out: &mut Vec<u8>) -> Item<'b> {
        if let State::Closed(why) = self.state {
            return Item::Closed(why);
        }
        assert!(
            buf.len() >= self.pos,
            "decode: the buffer lost bytes that the codec had not released"
        );
        loop {
            let header = match frame::check_header(&buf[self.pos..], self.config.max_frame) {
                Ok(header) => header,
                Err(CheckError::Incomplete(incomplete)) => return self.need_more(buf, incomplete),
                Err(CheckError::Protocol(e)) => return self.fail(e, out),
            };
            if let Err(e) = self.admit(&header) {
                return self.fail(e, out);
            }
            let available = buf.len() - self.pos;
            if available < header.frame_len() {
                let incomplete = Incomplete {
                    needed: Some(header.frame_len() - available),
                };
                return self.need_more(buf, incomplete);
            }
            self.last_frame = now;
            let start = self.pos + header.header_len;
            let end = start + header.payload_len;
            self.pos = end;
            frame::unmask(header.mask, &mut buf[start..end]);
            let kind = match header.opcode {
                Opcode::Ping => {
                    if self.state == State::Open {
                        frame::encode_pong(out, &buf[start..end]);
                    }
                    continue;
                }
                Opcode::Pong => continue,
                Opcode::Close => return self.on_close(start..end, buf, out),
                Opcode::Text => MessageKind::Text,
                Opcode::Binary => MessageKind::Binary,
                Opcode::Continuation => {
                    let Some(mut message) = self.message.take() else {
                        return self.fail(ProtocolError::ContinuationWithoutStart, out);
                    };
                    // Moving the payload down over the headers in between is what makes
                    // the message contiguous; it never overlaps anything still unread.
                    let to = message.start + message.len;
                    buf.copy_within(start..end, to);
                    message.len += header.payload_len;
                    let range = message.start..message.start + message.len;
                    if let Err(e) = check_utf8(&mut message, &buf[range.clone()], header.fin) {
                        return self.fail(e, out);
                    }
                    if !header.fin {
                        self.message = Some(message);
                        continue;
                    }
                    if self.state != State::Open {
                        continue;
                    }
                    return Item::Message(Message {
                        kind: message.kind,
                        payload: &mut buf[range],
                    });
                }
            };
            if header.fin {
                if kind == MessageKind::Text && std::str::from_utf8(&buf[start..end]).is_err() {
                    return self.fail(ProtocolError::InvalidUtf8, out);
                }
                if self.state != State::Open {
                    continue;
                }
                return Item::Message(Message {
                    kind,
                    payload: &mut buf[start..end],
                });
            }
            let mut message = Assembly {
                kind,
                start,
                len: header.payload_len,
                utf8_valid: 0,
            };
            if let Err(e) = check_utf8(&mut message, &buf[start..end], false) {
                return self.fail(e, out);
            }
            self.message = Some(message);
        }
    }

    /// The checks that need the message state, made from the header alone so that an
    /// oversized message is refused before its payload is read.
    fn admit(&self, header: &Header) -> Result<(), ProtocolError> {
        match (header.opcode, &self.message) {
            (Opcode::Continuation, None) => Err(ProtocolError::ContinuationWithoutStart),
            (Opcode::Text | Opcode::Binary, Some(_)) => Err(ProtocolError::MessageInterleaved),
            (opcode, message) if !opcode.is_control() => {
                let so_far = message.map_or(0, |m| m.len);
                if header.payload_len > self.config.max_message.saturating_sub(so_far) {
                    Err(ProtocolError::MessageTooBig {
                        limit: self.config.max_message,
                    })
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Moves what must survive to the front of `buf`: the open message, then the partial
    /// frame. Done only when the reader runs dry, not after every frame: the message moves
    /// once (it stays at the front after), a partial frame only if it is not there yet,
    /// so the copying stays linear in the bytes read, whatever the client's framing.
    fn need_more<'b>(&mut self, buf: &mut [u8], incomplete: Incomplete) -> Item<'b> {
        let mut kept = 0;
        if let Some(message) = &mut self.message {
            if message.start != 0 {
                buf.copy_within(message.start..message.start + message.len, 0);
                message.start = 0;
            }
            kept = message.len;
        }
        let partial = buf.len() - self.pos;
        if self.pos != kept {
            buf.copy_within(self.pos.., kept);
        }
        self.pos = kept;
        Item::NeedMore {
            keep: kept + partial,
            needed: incomplete.needed,
        }
    }

    fn on_close<'b>(
        &mut self,
        payload: std::ops::Range<usize>,
        buf: &[u8],
        out: &mut Vec<u8>,
    ) -> Item<'b> {
        let code = match frame::parse_close(&buf[payload]) {
            Ok(parsed) => parsed.map(|(code, _reason)| code),
            Err(e) => return self.fail(e, out),
        };
        let why = if self.state == State::Open {
            // Echoing the code is what RFC 6455 §5.5.1 suggests; the reason is not echoed
            // (it is the client's text, and the client knows it).
            frame::encode_close(out, code, "");
            Closed::ByPeer { code }
        } else {
            Closed::Answered { code }
        };
        self.end(why)
    }

    fn fail<'b>(&mut self, e: ProtocolError, out: &mut Vec<u8>) -> Item<'b> {
        if self.state == State::Open {
            frame::encode_close(out, Some(e.close_code()), e.close_reason());
        }
        self.end(Closed::Failed(e))
    }

    fn end<'b>(&mut self, why: Closed) -> Item<'b> {
        self.state = State::Closed(why);
        self.message = None;
        self.close_deadline = None;
        Item::Closed(why)
    }

    /// Starts the close handshake from our side: appends the close frame to `out` and
    /// waits for the client's answer until `now + close_timeout`. Does nothing unless the
    /// connection is open.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant, out: &mut Vec<u8>) {
        if self.state != State::Open {
            return;
        }
        frame::encode_close(out, Some(code), reason);
        self.state = State::CloseSent;
        self.close_deadline = now.checked_add(self.config.close_timeout);
    }

    /// When [`Connection::on_timeout`] should next be called; `None` once closed (or if
    /// the timeout is too far away to represent).
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Open => self.last_frame.checked_add(self.config.idle_timeout),
            State::CloseSent => self.close_deadline,
            State::Closed(_) => None,
        }
    }

    /// Acts on a deadline that has passed at `now`: an idle open connection is closed
    /// with 1001 (its close frame appended to `out`), and an unanswered close ends the
    /// connection. Early calls change nothing. Returns the state after.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<u8>) -> State {
        if self.deadline().is_some_and(|deadline| now >= deadline) {
            match self.state {
                State::Open => self.close(CloseCode::GOING_AWAY, "idle timeout", now, out),
                State::CloseSent => {
                    self.end(Closed::CloseTimeout);
                }
                State::Closed(_) => {}
            }
        }
        self.state
    }
}

/// Checks the part of a text message not yet known to be UTF-8. Before the last fragment
/// a code point may be cut at the end (`error_len() == None`): those bytes are checked
/// again with the next fragment. Anything else fails at once, not at the message's end.
fn check_utf8(message: &mut Assembly, payload: &[u8], fin: bool) -> Result<(), ProtocolError> {
    if message.kind != MessageKind::Text {
        return Ok(());
    }
    match std::str::from_utf8(&payload[message.utf8_valid..]) {
        Ok(_) => {
            message.utf8_valid = payload.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() && !fin => {
            message.utf8_valid += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(ProtocolError::InvalidUtf8),
    }
}

#[cfg(test)]
mod tests;
