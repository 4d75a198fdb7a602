//! Recovery: parsing a log file's bytes into records and deciding whether the
//! first bad spot is a torn tail (safe to cut) or damage in the middle (must
//! refuse). Pure functions over a byte slice, so every rule is testable
//! without a file and no content can make them panic (all reads are checked
//! slicing).

use crate::{record_crc, WalError, HEADER_LEN, RECORD_MAGIC};

/// Outcome of a successful recovery.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Every intact record before the first bad spot, in order.
    pub records: Vec<Vec<u8>>,
    /// Byte length of the intact prefix; anything after it is a torn tail.
    pub good_len: usize,
    /// Sequence number of the last intact record (0 if none).
    pub last_seq: u64,
}

/// Why a record at some offset is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    Incomplete,
    BadMagic,
    BadCrc,
}

impl Invalid {
    fn describe(self) -> &'static str {
        match self {
            Invalid::Incomplete => "incomplete record",
            Invalid::BadMagic => "wrong magic",
            Invalid::BadCrc => "checksum mismatch",
        }
    }
}

/// A record that is valid on its own (magic, complete, checksum).
struct Parsed<'a> {
    seq: u64,
    payload: &'a [u8],
    len: usize,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Parses the record starting at `at`, checking everything except the
/// sequence number (which depends on the record before it).
fn parse_at(data: &[u8], at: usize) -> Result<Parsed<'_>, Invalid> {
    // Magic first: a wrong magic is reported as such even if the rest is
    // missing, and scanning rejects most offsets with this one compare.
    match u32_at(data, at) {
        Some(RECORD_MAGIC) => {}
        Some(_) => return Err(Invalid::BadMagic),
        None => return Err(Invalid::Incomplete),
    }
    let header = data.get(at..at.saturating_add(HEADER_LEN)).ok_or(Invalid::Incomplete)?;
    let payload_len = u32_at(header, 4).ok_or(Invalid::Incomplete)? as usize;
    let seq = u64_at(header, 8).ok_or(Invalid::Incomplete)?;
    let crc = u32_at(header, 16).ok_or(Invalid::Incomplete)?;
    let payload_start = at + HEADER_LEN;
    let payload = data.get(payload_start..payload_start.saturating_add(payload_len)).ok_or(Invalid::Incomplete)?;
    if record_crc(&header[4..16], payload) != crc {
        return Err(Invalid::BadCrc);
    }
    Ok(Parsed { seq, payload, len: HEADER_LEN + payload_len })
}

/// Reads every intact record of `data` in order and classifies what follows
/// the first bad spot (see the crate doc, "Recovery").
pub(crate) fn recover(data: &[u8]) -> Result<Decoded, WalError> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut last_seq = 0u64;
    let reason = loop {
        if pos == data.len() {
            return Ok(Decoded { records, good_len: pos, last_seq });
        }
        match parse_at(data, pos) {
            Ok(rec) if Some(rec.seq) == last_seq.checked_add(1) => {
                records.push(rec.payload.to_vec());
                last_seq = rec.seq;
                pos += rec.len;
            }
            Ok(rec) => break format!("sequence number {} where {} was expected", rec.seq, last_seq.wrapping_add(1)),
            Err(invalid) => break invalid.describe().to_string(),
        }
    };

    // `pos` is the first bad spot. Any valid record from here on with a
    // sequence number beyond the last good one was written after the damaged
    // bytes, so it (and the damaged record) may have been acknowledged:
    // cutting would lose them. The scan starts at `pos` itself so that an
    // intact record with a sequence gap (records missing before it) counts.
    if let Some((offset, seq)) = find_later_record(data, pos, last_seq) {
        return Err(WalError::Corrupt {
            offset: pos as u64,
            reason: format!("{reason}; an intact record with sequence number {seq} follows at byte {offset}"),
        });
    }
    Ok(Decoded { records, good_len: pos, last_seq })
}

/// Scans `data[from..]` byte by byte for a record that is valid on its own
/// and has a sequence number above `last_seq`; returns its offset and seq.
fn find_later_record(data: &[u8], from: usize, last_seq: u64) -> Option<(usize, u64)> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut at = from;
    while let Some(window) = data.get(at..) {
        let found = window.windows(4).position(|w| w == magic)?;
        let candidate = at + found;
        if let Ok(rec) = parse_at(data, candidate) {
            if rec.seq > last_seq {
                return Some((candidate, rec.seq));
            }
        }
        at = candidate + 1;
    }
    None
}
