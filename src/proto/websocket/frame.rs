//! One frame (RFC 6455 §5.2): two-phase decoding of client frames and encoding of server
//! frames.
//!
//! Decoding is split like a length-prefixed record: [`check_header`] reads and validates
//! the header from whatever prefix of the stream is present (so a frame that is too big
//! is refused before its payload arrives), [`check`] also tells whether the whole frame
//! is there, and [`unmask`] turns the payload back into plain bytes in place. Nothing is
//! allocated and nothing is copied.
//!
//! The header checks run in a fixed order and stop at the first one whose bytes are not
//! there yet. So the answer for a prefix of a stream is either "incomplete" or the answer
//! for the whole stream: feeding bytes in any pieces gives the same decisions.

use super::{CloseCode, MessageKind, ProtocolError};

/// The longest header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER: usize = 14;
/// Control frames carry at most this much (RFC 6455 §5.5), so they never need a cap.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Room for a close reason once the 2-byte code is in.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASKED: u8 = 0x80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A validated client frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    /// Bytes before the payload: 6, 8 or 14 for a masked frame.
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    /// Header and payload together: how far the next frame starts.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }

    /// Phase two: unmasks the payload of the frame at the start of `frame` in place and
    /// returns it. `frame` must hold the whole frame ([`check`] said so).
    pub fn unmask<'b>(&self, frame: &'b mut [u8]) -> &'b mut [u8] {
        let payload = &mut frame[self.header_len..self.frame_len()];
        unmask(self.mask, payload);
        payload
    }
}

/// Not enough bytes for a decision yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incomplete {
    /// Exactly how many more bytes complete the frame, once the header is known; `None`
    /// while the header itself is still short (at most [`MAX_HEADER`] bytes are missing).
    pub needed: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    Incomplete(Incomplete),
    Protocol(ProtocolError),
}

impl From<ProtocolError> for CheckError {
    fn from(e: ProtocolError) -> CheckError {
        CheckError::Protocol(e)
    }
}

const SHORT_HEADER: CheckError = CheckError::Incomplete(Incomplete { needed: None });

/// Phase one, header only: validates the client frame header at the start of `buf`,
/// refusing data payloads over `max_payload`. The payload need not be present.
pub fn check_header(buf: &[u8], max_payload: usize) -> Result<Header, CheckError> {
    let &b0 = buf.first().ok_or(SHORT_HEADER)?;
    if b0 & RSV != 0 {
        // Each RSV bit belongs to an extension, and the handshake accepts none.
        return Err(ProtocolError::ReservedBits.into());
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(ProtocolError::UnknownOpcode(b0 & 0x0F))?;
    let fin = b0 & FIN != 0;
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControl.into());
    }
    let &b1 = buf.get(1).ok_or(SHORT_HEADER)?;
    if b1 & MASKED == 0 {
        // Masking is what keeps a script's bytes from reading as another protocol to
        // proxies on the way (RFC 6455 §10.3), so an unmasked client frame is refused.
        return Err(ProtocolError::Unmasked.into());
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() && len7 as usize > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::ControlTooLong.into());
    }
    let (payload_len, length_bytes) = match len7 {
        126 => {
            let bytes = buf.get(2..4).ok_or(SHORT_HEADER)?;
            let len = u16::from_be_bytes([bytes[0], bytes[1]]) as u64;
            if len < 126 {
                return Err(ProtocolError::NonMinimalLength.into());
            }
            (len, 2)
        }
        127 => {
            let bytes = buf.get(2..10).ok_or(SHORT_HEADER)?;
            let mut be = [0; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthTopBit.into());
            }
            if len <= 0xFFFF {
                return Err(ProtocolError::NonMinimalLength.into());
            }
            (len, 8)
        }
        n => (n as u64, 0),
    };
    if payload_len > max_payload as u64 {
        return Err(ProtocolError::FrameTooBig { limit: max_payload }.into());
    }
    let mask_at = 2 + length_bytes;
    let mask = buf.get(mask_at..mask_at + 4).ok_or(SHORT_HEADER)?;
    Ok(Header {
        fin,
        opcode,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        header_len: mask_at + 4,
        // The cap above keeps this within usize on any target.
        payload_len: payload_len as usize,
    })
}

/// Phase one: is there a whole valid client frame at the start of `buf`?
pub fn check(buf: &[u8], max_payload: usize) -> Result<Header, CheckError> {
    let header = check_header(buf, max_payload)?;
    match header.frame_len().checked_sub(buf.len()) {
        Some(needed @ 1..) => Err(CheckError::Incomplete(Incomplete {
            needed: Some(needed),
        })),
        _ => Ok(header),
    }
}

/// XORs `payload` with the 4-byte `mask`, the mask starting at the payload's first byte.
/// Eight bytes at a time: byte order does not matter to XOR as long as the mask word and
/// the data word are read the same way, and the compiler turns the fixed-size copies
/// into plain (unaligned) loads and stores.
pub fn unmask(mask: [u8; 4], payload: &mut [u8]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence at mask byte 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Reads a close frame's payload (RFC 6455 §5.5.1, §7.4): empty (no code), or a code a
/// peer may send followed by a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseLength1),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_from_peer() {
                return Err(ProtocolError::CloseCode(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::CloseReasonUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// A server frame header (FIN set, no mask) on the stack: at most 10 bytes.
fn server_header(opcode: Opcode, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = FIN | opcode as u8;
    if len <= 125 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= 0xFFFF {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

fn push_header(out: &mut Vec<u8>, opcode: Opcode, len: usize) {
    let (h, n) = server_header(opcode, len);
    out.extend_from_slice(&h[..n]);
}

/// Appends one unmasked, unfragmented server frame (servers must not mask, RFC 6455
/// §5.1), with the shortest length encoding. Control payloads must be ≤ 125 bytes; the
/// `encode_ping`/`_pong`/`_close` helpers enforce it.
pub fn encode(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    debug_assert!(!opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD);
    debug_assert!(opcode != Opcode::Continuation);
    push_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

pub fn encode_text(out: &mut Vec<u8>, text: &str) {
    encode(out, Opcode::Text, text.as_bytes());
}

pub fn encode_binary(out: &mut Vec<u8>, payload: &[u8]) {
    encode(out, Opcode::Binary, payload);
}

/// A ping; a payload over 125 bytes is cut to 125.
pub fn encode_ping(out: &mut Vec<u8>, payload: &[u8]) {
    encode(
        out,
        Opcode::Ping,
        &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)],
    );
}

/// A pong; a payload over 125 bytes is cut to 125 (an echoed ping's never is).
pub fn encode_pong(out: &mut Vec<u8>, payload: &[u8]) {
    encode(
        out,
        Opcode::Pong,
        &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)],
    );
}

/// A close frame: empty without a code, else the code and `reason` cut to
/// [`MAX_CLOSE_REASON`] bytes at a character boundary (the peer checks it is UTF-8).
pub fn encode_close(out: &mut Vec<u8>, code: Option<CloseCode>, reason: &str) {
    let Some(code) = code else {
        encode(out, Opcode::Close, &[]);
        return;
    };
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    push_header(out, Opcode::Close, 2 + cut);
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
}

/// Appends a text or binary frame whose payload `write` appends to `out` directly (an
/// acknowledgement serialized straight into the send buffer). The header is patched in
/// afterwards; a payload over 125 bytes moves once to make room for the longer length.
/// `write` must only append, and for text only UTF-8.
pub fn encode_with(out: &mut Vec<u8>, kind: MessageKind, write: impl FnOnce(&mut Vec<u8>)) {
    let opcode = match kind {
        MessageKind::Text => Opcode::Text,
        MessageKind::Binary => Opcode::Binary,
    };
    let header_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let payload_at = out.len();
    write(out);
    let Some(len) = out.len().checked_sub(payload_at) else {
        debug_assert!(
            false,
            "encode_with: the writer removed bytes it did not write"
        );
        out.truncate(header_at);
        return;
    };
    let (header, header_len) = server_header(opcode, len);
    if header_len > 2 {
        let grow = header_len - 2;
        out.resize(out.len() + grow, 0);
        out.copy_within(payload_at..payload_at + len, payload_at + grow);
    }
    out[header_at..header_at + header_len].copy_from_slice(&header[..header_len]);
}
