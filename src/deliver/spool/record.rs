//! One spool record, sans-IO: encoding into a buffer and two-phase decoding from a
//! byte slice (`check` finds the length without allocating, then `parse` borrows).
//!
//! Layout (little-endian), [`HEADER_LEN`] = 44 bytes then the payload:
//!
//! | offset | size | field                                             |
//! |-------:|-----:|---------------------------------------------------|
//! |      0 |    4 | magic `b"CPSR"`                                   |
//! |      4 |    1 | version, [`VERSION`]                              |
//! |      5 |    3 | reserved, zero                                    |
//! |      8 |    4 | payload length `n` (u32)                          |
//! |     12 |    4 | CRC32 of bytes 0..12 and 16..44+n                 |
//! |     16 |    8 | record id (u64)                                   |
//! |     24 |    8 | pixel id (u64)                                    |
//! |     32 |    4 | event count (u32)                                 |
//! |     36 |    8 | oldest event time (u64, Unix seconds)             |
//! |     44 |    n | payload: comma-separated CAPI event JSON objects  |
//!
//! The CRC covers the length too, so a flipped length bit is caught even when the
//! bytes it points to happen to exist.

use crc32fast::Hasher;

pub const MAGIC: [u8; 4] = *b"CPSR";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 44;
/// Larger lengths are corruption: no segment can hold such a record, and refusing
/// them early keeps a flipped high bit from being read as "wait for 4 GiB more".
pub const MAX_PAYLOAD: usize = 1 << 30;

/// The fixed fields of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub id: u64,
    pub pixel: u64,
    pub events: u32,
    pub oldest_time: u64,
}

/// A decoded record, borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub meta: Meta,
    pub payload: &'a [u8],
}

/// Why a byte slice does not start with a whole, valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// More bytes are needed; at the end of a file this is a torn write.
    Incomplete,
    Corrupt(Corruption),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    Magic,
    Version,
    Reserved,
    Length,
    Crc,
}

/// The encoded size of a record with this payload length.
pub fn encoded_len(payload_len: usize) -> usize {
    HEADER_LEN + payload_len
}

/// Appends one encoded record to `out`. Only `out`'s capacity may grow.
pub fn encode(out: &mut Vec<u8>, meta: &Meta, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&meta.id.to_le_bytes());
    out.extend_from_slice(&meta.pixel.to_le_bytes());
    out.extend_from_slice(&meta.events.to_le_bytes());
    out.extend_from_slice(&meta.oldest_time.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc_of(&out[start..]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

fn crc_of(record: &[u8]) -> u32 {
    let mut h = Hasher::new();
    h.update(&record[..12]);
    h.update(&record[16..]);
    h.finalize()
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Phase one: is there a whole valid record at the start of `buf`? Returns its
/// encoded length. Checks the header fields as soon as they are present, so a
/// bad magic is reported as corruption, not as "incomplete", even on a short slice.
pub fn check(buf: &[u8]) -> Result<usize, CheckError> {
    let magic_len = buf.len().min(4);
    if buf[..magic_len] != MAGIC[..magic_len] {
        return Err(CheckError::Corrupt(Corruption::Magic));
    }
    if buf.len() > 4 && buf[4] != VERSION {
        return Err(CheckError::Corrupt(Corruption::Version));
    }
    if buf.len() > 5 && buf[5..buf.len().min(8)].iter().any(|&b| b != 0) {
        return Err(CheckError::Corrupt(Corruption::Reserved));
    }
    if buf.len() < HEADER_LEN {
        return Err(CheckError::Incomplete);
    }
    let n = u32_at(buf, 8) as usize;
    if n > MAX_PAYLOAD {
        return Err(CheckError::Corrupt(Corruption::Length));
    }
    let len = encoded_len(n);
    if buf.len() < len {
        return Err(CheckError::Incomplete);
    }
    if crc_of(&buf[..len]) != u32_at(buf, 12) {
        return Err(CheckError::Corrupt(Corruption::Crc));
    }
    Ok(len)
}

/// Phase two: decodes a record that [`check`] accepted with length `len`.
pub fn parse(buf: &[u8], len: usize) -> Record<'_> {
    Record {
        meta: Meta {
            id: u64_at(buf, 16),
            pixel: u64_at(buf, 24),
            events: u32_at(buf, 32),
            oldest_time: u64_at(buf, 36),
        },
        payload: &buf[HEADER_LEN..len],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64) -> Meta {
        Meta {
            id,
            pixel: 1234567890123456,
            events: 3,
            oldest_time: 1_700_000_000,
        }
    }

    fn encoded(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(&mut v, &meta(id), payload);
        v
    }

    /// Checks `buf` and, when it is valid, that it parses back to `id` and `payload`.
    fn check_case(buf: &[u8], want: Result<(u64, &[u8]), CheckError>) {
        let got = check(buf).map(|len| {
            let r = parse(buf, len);
            assert_eq!(r.meta, meta(r.meta.id));
            (r.meta.id, r.payload)
        });
        assert_eq!(got, want, "input {:?}", buf.get(..buf.len().min(16)));
    }

    #[test]
    fn round_trips() {
        let payloads: [&[u8]; 4] = [b"", b"{}", br#"{"a":1},{"b":2}"#, &[0xff; 1000]];
        for (i, p) in payloads.iter().enumerate() {
            let mut buf = encoded(i as u64 + 1, p);
            assert_eq!(buf.len(), encoded_len(p.len()));
            check_case(&buf, Ok((i as u64 + 1, p)));
            // Trailing bytes (the next record) do not matter.
            buf.extend_from_slice(b"CPSR");
            check_case(&buf, Ok((i as u64 + 1, p)));
        }
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let buf = encoded(7, br#"{"event_name":"Purchase"}"#);
        for cut in 0..buf.len() {
            check_case(&buf[..cut], Err(CheckError::Incomplete));
        }
    }

    #[test]
    fn corruptions_are_detected() {
        use Corruption::*;
        let good = encoded(9, b"{\"x\":1}");
        // (byte offset to change, new value, expected corruption)
        let cases: &[(usize, u8, Corruption)] = &[
            (0, b'X', Magic),
            (3, 0, Magic),
            (4, 2, Version),
            (5, 1, Reserved),
            (7, 0x80, Reserved),
            (11, 0x80, Length),
            (8, 6, Crc),
            (12, 0, Crc),
            (16, 10, Crc),
            (24, 0, Crc),
            (32, 4, Crc),
            (36, 1, Crc),
            (44, b'y', Crc),
            (50, b'}' ^ 1, Crc),
        ];
        for &(at, value, want) in cases {
            let mut buf = good.clone();
            assert_ne!(buf[at], value, "case at {at} changes nothing");
            buf[at] = value;
            check_case(&buf, Err(CheckError::Corrupt(want)));
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let good = encoded(42, b"{\"event_id\":\"abc\"}");
        for byte in 0..good.len() {
            for bit in 0..8 {
                let mut buf = good.clone();
                buf[byte] ^= 1 << bit;
                // A flipped length can make the record look longer than the input;
                // that is "incomplete", which at a file's end is a torn tail.
                assert!(check(&buf).is_err(), "flip {byte}:{bit} undetected");
            }
        }
    }

    #[test]
    fn a_short_slice_with_a_bad_magic_is_corrupt_not_incomplete() {
        check_case(b"CX", Err(CheckError::Corrupt(Corruption::Magic)));
        check_case(b"\0\0\0\0\0\0", Err(CheckError::Corrupt(Corruption::Magic)));
        check_case(
            b"CPSR\x01\x00\x01",
            Err(CheckError::Corrupt(Corruption::Reserved)),
        );
    }
}
