//! The chunked transfer coding (RFC 9112 §7.1), decoded in place and resumably.
//!
//! The decoder walks the raw bytes once, byte by byte through the framing and by
//! `copy_within` through the data, moving each chunk's data down to the end of the data
//! decoded so far. Nothing but the decoded data is kept between calls: a chunk-size line
//! or CRLF cut by a read lives in the small state, so the driver may drop everything past
//! the decoded data and append the next read there.
//!
//! Stricter than the grammar requires where leniency lets two parsers disagree on where
//! a body ends (the classic smuggling vectors): CRLF only (a bare LF or CR is a 400), no
//! empty chunk size, at most 16 hex digits, no control bytes in extensions.

use super::head::is_token;
use super::{Error, Limits};

/// Hex digits of a chunk size, leading zeros included: 16 always fit a `u64`, and no
/// client pads more.
const MAX_SIZE_DIGITS: u8 = 16;

/// An in-place, resumable decoder of one chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    body_limit: usize,
    /// Cap on trailers, and separately on all chunk extensions of the body.
    side_limit: usize,
    /// Decoded bytes at the front of the body region; raw bytes of the next call start
    /// here.
    out: usize,
    ext_bytes: usize,
    trailer_bytes: usize,
    state: St,
}

/// How far a call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// More bytes are needed. Only `body[..filled]` (the data decoded so far) must be
    /// kept; the next bytes go right after it.
    Partial { filled: usize },
    /// The body is `body[..len]`; the chunked message used `consumed` bytes of the body
    /// region (what follows is the next request).
    Done { len: usize, consumed: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// In the hex digits of a chunk size (`digits` so far).
    Size { size: u64, digits: u8 },
    /// Whitespace after the size, before `;` or CR.
    SizeSpace { size: u64 },
    Ext { size: u64 },
    /// CR of the size line seen.
    SizeLf { size: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final blank line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final blank line seen.
    EndLf,
    Done { consumed: usize },
}

impl ChunkedDecoder {
    pub fn new(limits: &Limits) -> ChunkedDecoder {
        ChunkedDecoder {
            body_limit: limits.body_bytes,
            side_limit: limits.header_bytes,
            out: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
            state: St::Size { size: 0, digits: 0 },
        }
    }

    /// Bytes of body decoded so far.
    pub fn decoded(&self) -> usize {
        self.out
    }

    /// Decodes what is new in `body`: the region right after the head, holding the data
    /// decoded by earlier calls (`filled` bytes) and then the bytes read since. After
    /// [`Chunked::Done`] further calls return `Done` again.
    pub fn decode(&mut self, body: &mut [u8]) -> Result<Chunked, Error> {
        if let St::Done { consumed } = self.state {
            return Ok(Chunked::Done { len: self.out, consumed });
        }
        if body.len() < self.out {
            // The driver dropped decoded data; nothing sensible can follow, and guessing
            // would hand out garbage as a body.
            return Ok(Chunked::Partial { filled: self.out });
        }
        let mut pos = self.out;
        while pos < body.len() {
            if let St::Data { left } = self.state {
                // Bounded by `body_limit`, checked when the size was read.
                let take = (body.len() - pos).min(left as usize);
                if pos != self.out {
                    body.copy_within(pos..pos + take, self.out);
                }
                self.out += take;
                pos += take;
                let left = left - take as u64;
                self.state = if left == 0 { St::DataCr } else { St::Data { left } };
                continue;
            }
            let b = body[pos];
            pos += 1;
            self.state = self.step(b)?;
            if let St::Done { .. } = self.state {
                self.state = St::Done { consumed: pos };
                return Ok(Chunked::Done { len: self.out, consumed: pos });
            }
        }
        Ok(Chunked::Partial { filled: self.out })
    }

    /// One framing byte.
    fn step(&mut self, b: u8) -> Result<St, Error> {
        Ok(match self.state {
            St::Size { size, digits } => match hex_value(b) {
                Some(_) if digits == MAX_SIZE_DIGITS => return Err(Error::ChunkSizeTooLong),
                Some(d) => St::Size { size: size << 4 | u64::from(d), digits: digits + 1 },
                None if digits == 0 => return Err(Error::BadChunkSize),
                None => self.after_size(b, size)?,
            },
            St::SizeSpace { size } => self.after_size(b, size)?,
            St::Ext { size } => match b {
                b'\r' => St::SizeLf { size },
                b'\n' => return Err(Error::ChunkLineEnding),
                b'\t' | b' '..=b'~' | 0x80..=0xff => {
                    self.count_ext()?;
                    St::Ext { size }
                }
                _ => return Err(Error::BadChunkSize),
            },
            St::SizeLf { size } => match b {
                b'\n' => self.start_chunk(size)?,
                _ => return Err(Error::ChunkLineEnding),
            },
            St::DataCr => match b {
                b'\r' => St::DataLf,
                _ => return Err(Error::ChunkDataEnd),
            },
            St::DataLf => match b {
                b'\n' => St::Size { size: 0, digits: 0 },
                _ => return Err(Error::ChunkDataEnd),
            },
            St::TrailerStart => match b {
                b'\r' => St::EndLf,
                b if is_token(b) => self.trailer(St::TrailerName)?,
                _ => return Err(Error::BadTrailer),
            },
            St::TrailerName => match b {
                b':' => self.trailer(St::TrailerValue)?,
                b if is_token(b) => self.trailer(St::TrailerName)?,
                _ => return Err(Error::BadTrailer),
            },
            St::TrailerValue => match b {
                b'\r' => self.trailer(St::TrailerLf)?,
                b'\t' | b' '..=b'~' | 0x80..=0xff => self.trailer(St::TrailerValue)?,
                _ => return Err(Error::BadTrailer),
            },
            St::TrailerLf => match b {
                b'\n' => self.trailer(St::TrailerStart)?,
                _ => return Err(Error::BadTrailer),
            },
            St::EndLf => match b {
                // `decode` fills in the position.
                b'\n' => St::Done { consumed: 0 },
                _ => return Err(Error::ChunkLineEnding),
            },
            // `decode` handles data in bulk and returns on `Done`.
            St::Data { .. } | St::Done { .. } => self.state,
        })
    }

    /// After the size digits: optional whitespace, then an extension or the CR.
    fn after_size(&mut self, b: u8, size: u64) -> Result<St, Error> {
        Ok(match b {
            b' ' | b'\t' => {
                self.count_ext()?;
                St::SizeSpace { size }
            }
            b';' => {
                self.count_ext()?;
                St::Ext { size }
            }
            b'\r' => St::SizeLf { size },
            b'\n' => return Err(Error::ChunkLineEnding),
            _ => return Err(Error::BadChunkSize),
        })
    }

    fn start_chunk(&mut self, size: u64) -> Result<St, Error> {
        if size == 0 {
            return Ok(St::TrailerStart);
        }
        if size > (self.body_limit - self.out) as u64 {
            return Err(Error::BodyTooLarge { limit: self.body_limit });
        }
        Ok(St::Data { left: size })
    }

    fn count_ext(&mut self) -> Result<(), Error> {
        self.ext_bytes += 1;
        if self.ext_bytes > self.side_limit {
            return Err(Error::ChunkExtensionsTooLong { limit: self.side_limit });
        }
        Ok(())
    }

    fn trailer(&mut self, next: St) -> Result<St, Error> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.side_limit {
            return Err(Error::TrailersTooLarge { limit: self.side_limit });
        }
        Ok(next)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
