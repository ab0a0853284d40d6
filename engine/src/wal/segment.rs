//! The on-disk format of one segment file: its name, its header, record framing, and the file
//! system calls around creating one (preallocation, directory fsync).
//!
//! Pure functions over byte slices where possible, so recovery and the writer share one
//! definition of the format and the unit tests below pin it.
//!
//! ```text
//! segment header (SEGMENT_HEADER_BYTES = 32, little endian)
//!   0..8   magic "SWYDWAL1"
//!   8..12  codec::FORMAT_VERSION (u32)
//!  12..16  record framing (u32): 2 (written today) or 0 (segments of older builds)
//!  16..24  first_lsn (u64), equal to the number in the file name
//!  24..28  reserved, zero
//!  28..32  CRC32C of bytes 0..28
//! record, framing 2 (RECORD_HEADER_BYTES = 24 + payload)
//!   0..4   payload length (u32, never 0: a zero length marks the end of data)
//!   4..8   CRC32C of bytes 8..24 (lsn, synced lsn) followed by the payload
//!   8..16  lsn (u64)
//!  16..24  synced lsn (u64): the writer's durable lsn when it wrote this record
//!  24..    payload
//! record, framing 0 (older builds; read, never written): 16-byte header, no synced lsn
//! ```
//!
//! The synced lsn is what lets recovery tell a torn unsynced batch from damaged acknowledged
//! data: a record that follows damage at lsn E and says "E was already durable when I was
//! written" proves the damage hit an acknowledged record (see `recovery.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::codec::FORMAT_VERSION;

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SWYDWAL1";
/// Size of the fixed segment header; the first record starts here.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
/// Size of the record header (length, CRC, lsn, synced lsn) in front of every payload written
/// today (framing 2).
pub(crate) const RECORD_HEADER_BYTES: usize = 24;

/// How the records of one segment are framed (header bytes 12..16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Older builds: a 16-byte header without the synced lsn. Read, never written.
    Legacy,
    /// A 24-byte header carrying the writer's synced lsn.
    Synced,
}

impl Framing {
    const LEGACY_CODE: u32 = 0;
    const SYNCED_CODE: u32 = 2;

    pub(crate) fn header_bytes(self) -> usize {
        match self {
            Framing::Legacy => 16,
            Framing::Synced => RECORD_HEADER_BYTES,
        }
    }
}

/// A checked segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub first_lsn: u64,
    pub framing: Framing,
}
/// Digits of the zero-padded first LSN in a segment file name (u64::MAX has 20).
const SEGMENT_NAME_DIGITS: usize = 20;
const SEGMENT_EXTENSION: &str = ".log";

/// `dir/<first_lsn as 20 digits>.log`.
pub(crate) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}{SEGMENT_EXTENSION}"))
}

/// The first LSN encoded in a segment file name, or `None` if the name is not a segment's.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXTENSION)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files in `dir`, sorted by first LSN. Other files are left alone (and logged).
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_segment_name) {
            Some(first_lsn) if entry.file_type()?.is_file() => {
                segments.push((first_lsn, entry.path()))
            }
            // The next segment being prepared: not a segment yet.
            _ if name.to_str().is_some_and(|n| n.starts_with(PREPARED_NAME)) => {}
            _ => {
                tracing::warn!(
                    path = %entry.path().display(),
                    "wal: ignoring a file that is not a segment"
                )
            }
        }
    }
    segments.sort_unstable_by_key(|(first_lsn, _)| *first_lsn);
    Ok(segments)
}

pub(crate) fn encode_header(first_lsn: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    encode_header_version(first_lsn, FORMAT_VERSION)
}

/// A header of another format version: tests build older data dirs with it. Builds before
/// format 5 wrote legacy record framing (see [`frame_legacy_record`]).
pub(crate) fn encode_header_version(first_lsn: u64, version: u32) -> [u8; SEGMENT_HEADER_BYTES] {
    let framing = if version >= 5 {
        Framing::SYNCED_CODE
    } else {
        Framing::LEGACY_CODE
    };
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[12..16].copy_from_slice(&framing.to_le_bytes());
    header[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header and returns it, or a description of what is wrong.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(format!(
            "segment header is short: {} of {SEGMENT_HEADER_BYTES} bytes",
            bytes.len()
        ));
    }
    let header = &bytes[..SEGMENT_HEADER_BYTES];
    let stored_crc = read_u32(header, 28);
    let computed_crc = crc32c::crc32c(&header[0..28]);
    if stored_crc != computed_crc {
        return Err(format!(
            "segment header CRC mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
        ));
    }
    if &header[0..8] != SEGMENT_MAGIC {
        return Err("segment header has the wrong magic".to_string());
    }
    let version = read_u32(header, 8);
    if !crate::codec::is_readable(version) {
        return Err(format!(
            "segment format version {version} is not the supported {}..={FORMAT_VERSION}",
            crate::codec::FORMAT_VERSION_READABLE_MIN
        ));
    }
    let framing = match read_u32(header, 12) {
        Framing::LEGACY_CODE => Framing::Legacy,
        Framing::SYNCED_CODE => Framing::Synced,
        other => return Err(format!("segment record framing {other} is unknown")),
    };
    if read_u32(header, 24) != 0 {
        return Err("segment header reserved bytes are not zero".to_string());
    }
    Ok(Header {
        first_lsn: read_u64(header, 16),
        framing,
    })
}

/// Appends one framed record (framing 2) to `buffer`; `synced_lsn` is the writer's durable lsn
/// at the time of the write.
pub(crate) fn frame_record(buffer: &mut Vec<u8>, lsn: u64, synced_lsn: u64, payload: &[u8]) {
    // Invariant: `Wal::append` rejected empty payloads and payloads over record_bytes_max,
    // which `open` checked is below u32::MAX.
    assert!(!payload.is_empty() && payload.len() <= u32::MAX as usize);
    debug_assert!(
        synced_lsn < lsn,
        "a record cannot be durable before it is written"
    );
    let start = buffer.len();
    let mut covered = [0u8; 16];
    covered[..8].copy_from_slice(&lsn.to_le_bytes());
    covered[8..].copy_from_slice(&synced_lsn.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&covered), payload);
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc.to_le_bytes());
    buffer.extend_from_slice(&covered);
    buffer.extend_from_slice(payload);
    debug_assert!(
        matches!(
            decode_record(buffer, start, lsn, Framing::Synced),
            Decoded::Record { lsn: decoded_lsn, synced_lsn: Some(synced), payload: decoded, next_offset }
                if decoded_lsn == lsn && synced == synced_lsn && decoded == payload
                    && next_offset == buffer.len()
        ),
        "a framed record must decode to itself"
    );
}

/// Appends one record in legacy framing (16-byte header, no synced lsn), as builds before
/// format 5 wrote it: tests build older data dirs with it.
#[cfg(test)]
pub(crate) fn frame_legacy_record(buffer: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&lsn.to_le_bytes()), payload);
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc.to_le_bytes());
    buffer.extend_from_slice(&lsn.to_le_bytes());
    buffer.extend_from_slice(payload);
}

/// The outcome of reading one record at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    Record {
        lsn: u64,
        /// The writer's durable lsn when it wrote the record (`None` in legacy framing).
        synced_lsn: Option<u64>,
        payload: &'a [u8],
        next_offset: usize,
    },
    /// A zero length: the preallocated zero tail, i.e. the end of the data.
    EndOfData,
    /// The header or the payload runs past the end of the file.
    Short,
    CrcMismatch,
    /// A record whose CRC checks but whose lsn is not the next one expected.
    WrongLsn {
        found: u64,
    },
}

impl Decoded<'_> {
    /// Why scanning stopped, for log lines and corruption messages.
    pub(crate) fn describe(&self, expected_lsn: u64, record_bytes_max: usize) -> String {
        match self {
            Decoded::Record { lsn, payload, .. } => format!(
                "record lsn {lsn} has {} payload bytes, over record_bytes_max {record_bytes_max}",
                payload.len()
            ),
            Decoded::EndOfData => "end of data (zero length)".to_string(),
            Decoded::Short => "record runs past the end of the file".to_string(),
            Decoded::CrcMismatch => "record CRC mismatch".to_string(),
            Decoded::WrongLsn { found } => {
                format!("record has lsn {found}, expected {expected_lsn}")
            }
        }
    }
}

/// Reads the record at `offset`, which must carry `expected_lsn`. Length and CRC are always
/// checked; the payload-size limit is the caller's business.
pub(crate) fn decode_record(
    data: &[u8],
    offset: usize,
    expected_lsn: u64,
    framing: Framing,
) -> Decoded<'_> {
    let header_bytes = framing.header_bytes();
    if offset >= data.len() {
        return Decoded::EndOfData;
    }
    if data.len() - offset < header_bytes {
        // A partial header of zeros is still the zero tail, anything else is a short record.
        return if data[offset..].iter().all(|byte| *byte == 0) {
            Decoded::EndOfData
        } else {
            Decoded::Short
        };
    }
    let length = read_u32(data, offset) as usize;
    if length == 0 {
        return Decoded::EndOfData;
    }
    let payload_start = offset + header_bytes;
    if data.len() - payload_start < length {
        return Decoded::Short;
    }
    let stored_crc = read_u32(data, offset + 4);
    let covered = &data[offset + 8..payload_start];
    let payload = &data[payload_start..payload_start + length];
    if crc32c::crc32c_append(crc32c::crc32c(covered), payload) != stored_crc {
        return Decoded::CrcMismatch;
    }
    let lsn = read_u64(data, offset + 8);
    if lsn != expected_lsn {
        return Decoded::WrongLsn { found: lsn };
    }
    let synced_lsn = match framing {
        Framing::Legacy => None,
        Framing::Synced => Some(read_u64(data, offset + 16)),
    };
    Decoded::Record {
        lsn,
        synced_lsn,
        payload,
        next_offset: payload_start + length,
    }
}

/// A record found by [`later_records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub offset: usize,
    pub lsn: u64,
    pub synced_lsn: Option<u64>,
}

/// Scans `data[from..]` byte by byte for records whose CRC checks and whose lsn lies in
/// `(after_lsn, after_lsn + window]`, in file order (a found record's bytes are skipped). Used to
/// tell a torn tail from corruption past the first bad record.
pub(crate) fn later_records(
    data: &[u8],
    from: usize,
    after_lsn: u64,
    window: u64,
    framing: Framing,
) -> Vec<Found> {
    let mut found = Vec::new();
    // A record starts with a non-zero length, so it cannot start after the last non-zero byte.
    let Some(last_nonzero) = data.iter().rposition(|byte| *byte != 0) else {
        return found;
    };
    let Some(end) = data.len().checked_sub(framing.header_bytes()) else {
        return found;
    };
    let end = last_nonzero.min(end);
    let mut offset = from;
    while offset <= end {
        let lsn = read_u64(data, offset + 8);
        if lsn > after_lsn && lsn - after_lsn <= window {
            if let Decoded::Record {
                lsn,
                synced_lsn,
                next_offset,
                ..
            } = decode_record(data, offset, lsn, framing)
            {
                found.push(Found {
                    offset,
                    lsn,
                    synced_lsn,
                });
                offset = next_offset;
                continue;
            }
        }
        offset += 1;
    }
    found
}

/// One past the last non-zero byte of `data[from..]`, as an offset into `data`, or `None` if
/// every byte from `from` on is zero.
pub(crate) fn nonzero_end(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .iter()
        .rposition(|byte| *byte != 0)
        .map(|index| from + index + 1)
}

/// Creates the segment file for `first_lsn`: header, optional preallocation, fsync of the file
/// and of the directory (so the new name survives a crash). Fails if the file already exists.
pub(crate) fn create_segment(
    dir: &Path,
    first_lsn: u64,
    preallocate_bytes: Option<u64>,
) -> io::Result<(File, PathBuf)> {
    crate::failpoints::check(crate::failpoints::WAL_SEGMENT_CREATE)?;
    let path = segment_path(dir, first_lsn);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all_at(&encode_header(first_lsn), 0)?;
    if let Some(bytes) = preallocate_bytes {
        preallocate(&file, bytes)?;
    }
    file.sync_all()?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// The zero-filled file a background thread prepares for the next segment (see
/// [`prepare_segment`]); `.tmp` while it is being written.
pub(crate) const PREPARED_NAME: &str = "next.prep";
const PREPARING_NAME: &str = "next.prep.tmp";
/// Zero-filling flushes every this many bytes, so the preparation never queues one huge write
/// ahead of the writer's fdatasyncs.
const PREPARE_SYNC_BYTES: u64 = 8 << 20;

/// Writes `dir/next.prep`: `bytes` of real zeros, synced, then renamed into place (so a
/// `next.prep` is always whole). Overwriting written blocks needs no metadata change, so the
/// writer's fdatasyncs on such a segment need no file-system journal commit; with fallocate's
/// unwritten extents each one does (measured: 8.5-9.9k against 4.6-6.7k fdatasyncs/s here), and
/// that commit also waits for other files' dirty data (the checkpoint store's writes).
pub(crate) fn prepare_segment(dir: &Path, bytes: u64) -> io::Result<()> {
    crate::failpoints::check(crate::failpoints::WAL_PREPARE)?;
    let tmp = dir.join(PREPARING_NAME);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0u64;
    let mut unsynced = 0u64;
    while at < bytes {
        let n = (bytes - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
        unsynced += n as u64;
        if unsynced >= PREPARE_SYNC_BYTES {
            file.sync_data()?;
            unsynced = 0;
        }
    }
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(PREPARED_NAME))?;
    sync_dir(dir)
}

/// Turns a prepared `next.prep` of exactly `bytes` into the segment for `first_lsn`: header,
/// fdatasync, rename, fsync of the directory (the same guarantees as [`create_segment`]).
/// `Ok(None)` when there is none (one of another size is removed).
pub(crate) fn adopt_prepared(
    dir: &Path,
    first_lsn: u64,
    bytes: u64,
) -> io::Result<Option<(File, PathBuf)>> {
    let prepared = dir.join(PREPARED_NAME);
    let file = match OpenOptions::new().read(true).write(true).open(&prepared) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if file.metadata()?.len() != bytes {
        drop(file);
        std::fs::remove_file(&prepared)?;
        return Ok(None);
    }
    let path = segment_path(dir, first_lsn);
    if path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", path.display()),
        ));
    }
    crate::failpoints::check(crate::failpoints::WAL_ADOPT)?;
    file.write_all_at(&encode_header(first_lsn), 0)?;
    file.sync_data()?;
    crate::failpoints::check(crate::failpoints::WAL_RENAME)?;
    std::fs::rename(&prepared, &path)?;
    sync_dir(dir)?;
    Ok(Some((file, path)))
}

/// Allocates `bytes` of disk for `file` without writing them (fallocate, mode 0: the size grows,
/// the new range reads as zeros). Returns `Ok(false)` where the file system does not support it;
/// the WAL then simply appends.
pub fn preallocate(file: &File, bytes: u64) -> io::Result<bool> {
    let length = libc::off_t::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "preallocation too large"))?;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by `file`,
    // which outlives the call.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
    if result == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(false),
        _ => Err(error),
    }
}

/// fsync of a directory, so that created, renamed or removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::failpoints::check(crate::failpoints::WAL_DIR_FSYNC)?;
    File::open(dir)?.sync_all()
}

fn read_u32(data: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&data[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

fn read_u64(data: &[u8], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Framing = Framing::Synced;

    /// Frames records as one batch written when everything below the first was durable.
    fn framed(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut buffer = Vec::new();
        let synced = records.first().map_or(0, |(lsn, _)| lsn - 1);
        for (lsn, payload) in records {
            frame_record(&mut buffer, *lsn, synced, payload);
        }
        buffer
    }

    /// A legacy (framing 0) record, as older builds wrote it.
    fn legacy(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_legacy_record(&mut out, lsn, payload);
        out
    }

    #[test]
    fn segment_names_round_trip_and_sort() {
        let path = segment_path(Path::new("/wal"), 42);
        assert_eq!(path, Path::new("/wal/00000000000000000042.log"));
        assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
        assert_eq!(
            parse_segment_name(&format!("{:020}.log", u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "42.log",
            "0000000000000000004x.log",
            "00000000000000000042.tmp",
            "",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_round_trip_and_every_byte_is_checked() {
        let header = encode_header(7);
        assert_eq!(
            decode_header(&header),
            Ok(Header {
                first_lsn: 7,
                framing: S
            })
        );
        for index in 0..SEGMENT_HEADER_BYTES {
            let mut damaged = header;
            damaged[index] ^= 0x10;
            assert!(decode_header(&damaged).is_err(), "flip at {index} accepted");
        }
        assert!(decode_header(&header[..31]).is_err());
        assert!(decode_header(&[0u8; SEGMENT_HEADER_BYTES]).is_err());
        // An older build's header (framing 0) still reads, as legacy framing.
        let mut old = header;
        old[12..16].copy_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c(&old[0..28]);
        old[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&old).map(|h| h.framing), Ok(Framing::Legacy));
    }

    #[test]
    fn legacy_records_decode_without_a_synced_lsn() {
        let mut data = legacy(3, b"old");
        data.extend(legacy(4, b"older"));
        let Decoded::Record {
            lsn: 3,
            synced_lsn: None,
            payload: b"old",
            next_offset,
        } = decode_record(&data, 0, 3, Framing::Legacy)
        else {
            panic!("legacy record 3");
        };
        assert_eq!(next_offset, 16 + 3);
        assert!(matches!(
            decode_record(&data, next_offset, 4, Framing::Legacy),
            Decoded::Record {
                lsn: 4,
                synced_lsn: None,
                ..
            }
        ));
        // Read with today's framing, the same bytes are not records.
        assert!(!matches!(
            decode_record(&data, 0, 3, S),
            Decoded::Record { .. }
        ));
    }
    #[test]
    fn records_decode_in_order_and_stop_at_the_zero_tail() {
        let mut data = framed(&[(5, b"hello"), (6, b"world!")]);
        let first_end = RECORD_HEADER_BYTES + 5;
        data.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            decode_record(&data, 0, 5, S),
            Decoded::Record {
                lsn: 5,
                synced_lsn: Some(4),
                payload: b"hello",
                next_offset: first_end
            }
        );
        let Decoded::Record { next_offset, .. } = decode_record(&data, first_end, 6, S) else {
            panic!("second record");
        };
        assert_eq!(decode_record(&data, next_offset, 7, S), Decoded::EndOfData);
        assert_eq!(
            decode_record(&data, data.len() - 3, 7, S),
            Decoded::EndOfData
        );
        assert_eq!(decode_record(&data, data.len(), 7, S), Decoded::EndOfData);
        assert_eq!(
            decode_record(&data, first_end, 9, S),
            Decoded::WrongLsn { found: 6 }
        );
    }

    #[test]
    fn damaged_records_are_short_or_fail_the_crc() {
        let data = framed(&[(1, b"payload")]);
        assert_eq!(
            decode_record(&data[..data.len() - 1], 0, 1, S),
            Decoded::Short
        );
        assert_eq!(decode_record(&data[..10], 0, 1, S), Decoded::Short);
        for index in 4..data.len() {
            let mut damaged = data.clone();
            damaged[index] ^= 0x01;
            assert_eq!(
                decode_record(&damaged, 0, 1, S),
                Decoded::CrcMismatch,
                "{index}"
            );
        }
        // Flips in the length make the record short or move its CRC span.
        for index in 0..4 {
            let mut damaged = data.clone();
            damaged[index] ^= 0x01;
            assert!(
                !matches!(decode_record(&damaged, 0, 1, S), Decoded::Record { .. }),
                "{index}"
            );
        }
    }

    #[test]
    fn later_records_look_only_for_later_lsns_in_the_window() {
        let mut data = vec![0xAB; 7];
        let start = data.len();
        frame_record(&mut data, 10, 8, b"x");
        let second = data.len();
        frame_record(&mut data, 11, 10, b"yz");
        data.extend_from_slice(&[0u8; 64]);
        let found = |from, after, window| later_records(&data, from, after, window, S);
        assert_eq!(
            found(0, 9, 100),
            vec![
                Found {
                    offset: start,
                    lsn: 10,
                    synced_lsn: Some(8)
                },
                Found {
                    offset: second,
                    lsn: 11,
                    synced_lsn: Some(10)
                }
            ]
        );
        assert_eq!(found(0, 10, 100).len(), 1, "only lsn 11 is after 10");
        assert_eq!(found(0, 0, 5), vec![]);
        assert_eq!(found(start + 1, 9, 100).len(), 1, "lsn 10 starts before");
        assert_eq!(later_records(&[0u8; 100], 0, 0, 100, S), vec![]);
    }

    #[test]
    fn a_prepared_segment_is_zeros_and_becomes_a_segment_with_a_header() {
        let dir = tempfile::tempdir().unwrap();
        prepare_segment(dir.path(), 3 << 20).unwrap();
        let prepared = dir.path().join(PREPARED_NAME);
        let data = std::fs::read(&prepared).unwrap();
        assert_eq!(data.len(), 3 << 20);
        assert!(data.iter().all(|byte| *byte == 0));
        assert!(!dir.path().join(PREPARING_NAME).exists());
        assert!(list_segments(dir.path()).unwrap().is_empty());
        // Another size (a changed `segment_bytes_max`) is not used, and is removed.
        assert!(adopt_prepared(dir.path(), 7, 1 << 20).unwrap().is_none());
        assert!(!prepared.exists());
        prepare_segment(dir.path(), 1 << 20).unwrap();
        let (_, path) = adopt_prepared(dir.path(), 7, 1 << 20).unwrap().unwrap();
        assert_eq!(path, segment_path(dir.path(), 7));
        let data = std::fs::read(&path).unwrap();
        assert_eq!(
            decode_header(&data[..SEGMENT_HEADER_BYTES]).map(|header| header.first_lsn),
            Ok(7)
        );
        assert_eq!(nonzero_end(&data, SEGMENT_HEADER_BYTES), None);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![(7, path)]);
        assert!(adopt_prepared(dir.path(), 8, 1 << 20).unwrap().is_none());
    }

    #[test]
    fn nonzero_end_ignores_the_zero_tail() {
        assert_eq!(nonzero_end(&[1, 0, 2, 0, 0], 0), Some(3));
        assert_eq!(nonzero_end(&[1, 0, 2, 0, 0], 3), None);
        assert_eq!(nonzero_end(&[1, 0], 5), None);
    }
}
