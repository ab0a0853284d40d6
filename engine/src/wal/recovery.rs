//! Recovery: reads the segments in LSN order, replays every valid record after the caller's
//! checkpoint, and decides at the first invalid record whether it is a torn tail (truncate, log,
//! go on) or corruption (refuse to start, naming the file and offset).
//!
//! The decision, at the first bad record (expected lsn E, at offset O of segment S):
//! 1. S is not the last segment file: corruption. A segment is fdatasync'ed whole before the
//!    next one is created, so every record in it was acknowledged.
//! 2. E is at or below the durable floor (the highest lsn checkpointed snapshots reflect, which were
//!    written only once the WAL was durable there): corruption of an acknowledged record.
//! 3. A valid record follows O whose synced lsn is >= E (it was written after E was durable;
//!    in legacy framing, any valid record): corruption.
//! 4. Otherwise every byte from O on belongs to writes made after the last fdatasync, none of
//!    them acknowledged (in `sync` durability; in `batch` durability, within the documented
//!    loss window): a torn tail, even where a power cut kept a later page of the batch but not
//!    an earlier one. It is truncated, and the valid records dropped with it are counted.
//!
//! Finally, a log that ends below the durable floor lost acknowledged records at its end (a
//! disk that dropped written data, or a truncated log) and is refused too, unless the caller
//! accepts that loss.
//!
//! Nothing on disk changes until the whole log has been judged: a corruption error leaves every
//! file as it was. `replay` may already have seen a prefix of the records when an error is
//! returned; the caller discards what it built.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::config::WalConfig;
use crate::error::{Error, Result};

use super::segment::{self, Decoded, SEGMENT_HEADER_BYTES};
use super::{RecoveryFrom, RecoveryReport};

/// How far past the last good lsn the corruption scan looks for a later valid record. Far larger
/// than any plausible batch, small enough that random bytes rarely look like a record.
pub(crate) const LATER_RECORD_LSN_WINDOW: u64 = 10_000_000;

/// A segment that survived recovery; its records are `first_lsn..=last_lsn` (empty when
/// `last_lsn < first_lsn`).
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub path: PathBuf,
}

pub(crate) struct Recovered {
    pub report: RecoveryReport,
    /// Surviving segments in LSN order. None of them is ever appended to again.
    pub segments: Vec<SegmentInfo>,
}

/// What to do about the tail once the whole log has been judged.
enum TailRepair {
    Truncate { path: PathBuf, offset: u64 },
    Remove { path: PathBuf },
}

pub(crate) fn recover(
    config: &WalConfig,
    from: RecoveryFrom,
    replay: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<Recovered> {
    let after_lsn = from.after_lsn;
    // With the loss accepted, damage at or below the floor is judged as before the floor
    // existed; `Wal::open` still starts above it.
    let durable_floor = if from.accept_loss {
        0
    } else {
        from.durable_floor
    };
    let dir = config.dir.as_path();
    let files = segment::list_segments(dir)
        .map_err(|error| Error::io(format!("wal: listing {}", dir.display()), error))?;
    let record_bytes_max = config.record_bytes_max;

    let mut segments: Vec<SegmentInfo> = Vec::new();
    let mut report = RecoveryReport {
        segments: 0,
        records: 0,
        last_lsn: 0,
        torn_bytes_dropped: 0,
    };
    let mut repairs: Vec<TailRepair> = Vec::new();

    for (index, (name_lsn, path)) in files.iter().enumerate() {
        let is_last = index + 1 == files.len();
        let data = fs::read(path)
            .map_err(|error| Error::io(format!("wal: reading {}", path.display()), error))?;

        let header = match segment::decode_header(&data) {
            Ok(header) => header,
            Err(detail) => {
                // A crash while creating the last segment leaves it short or all zeros.
                let torn = data.len() < SEGMENT_HEADER_BYTES || data.iter().all(|b| *b == 0);
                if is_last && torn {
                    report.torn_bytes_dropped += segment::nonzero_end(&data, 0).unwrap_or(0) as u64;
                    tracing::warn!(
                        path = %path.display(),
                        bytes = data.len(),
                        "wal: removing a torn segment ({detail})"
                    );
                    repairs.push(TailRepair::Remove { path: path.clone() });
                    break;
                }
                return Err(corruption(path, 0, detail));
            }
        };
        let first_lsn = header.first_lsn;
        if first_lsn != *name_lsn {
            return Err(corruption(
                path,
                0,
                format!("header says first lsn {first_lsn}, the file name says {name_lsn}"),
            ));
        }
        check_continuity(path, first_lsn, segments.last(), after_lsn)?;

        // Replay the valid prefix of this segment.
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut expected_lsn = first_lsn;
        let stop = loop {
            match segment::decode_record(&data, offset, expected_lsn, header.framing) {
                Decoded::Record {
                    lsn,
                    payload,
                    next_offset,
                    ..
                } if payload.len() <= record_bytes_max => {
                    if lsn > after_lsn {
                        replay(lsn, payload)?;
                        report.records += 1;
                    }
                    expected_lsn += 1;
                    offset = next_offset;
                }
                other => break other,
            }
        };
        let last_good_lsn = expected_lsn - 1;
        let info = SegmentInfo {
            first_lsn,
            last_lsn: last_good_lsn,
            path: path.clone(),
        };

        // Past the stop there is either nothing but zeros (the clean end of this segment) or
        // something: a torn tail if no valid record follows anywhere, corruption otherwise.
        let Some(junk_end) = segment::nonzero_end(&data, offset) else {
            if is_last && last_good_lsn < first_lsn {
                // An empty last segment (crash right after creating it). Its name would clash
                // with the next segment the writer creates.
                repairs.push(TailRepair::Remove { path: path.clone() });
            } else {
                segments.push(info);
            }
            continue;
        };
        let reason = stop.describe(expected_lsn, record_bytes_max);
        if !is_last {
            return Err(corruption(
                path,
                offset as u64,
                format!(
                    "{reason} in a finished segment (a later segment exists, and a segment is \
                     fdatasync'ed whole before the next is created): acknowledged records are \
                     damaged"
                ),
            ));
        }
        if expected_lsn <= durable_floor {
            return Err(corruption(
                path,
                offset as u64,
                format!(
                    "{reason}, but lsn {expected_lsn} was durable (checkpointed snapshots reflect lsns \
                     up to {durable_floor}): an acknowledged record is damaged"
                ),
            ));
        }
        let later = segment::later_records(
            &data,
            offset,
            last_good_lsn,
            LATER_RECORD_LSN_WINDOW,
            header.framing,
        );
        let proof = later.iter().find(|found| {
            found
                .synced_lsn
                .is_none_or(|synced_lsn| synced_lsn >= expected_lsn)
        });
        if let Some(found) = proof {
            let written_after = match found.synced_lsn {
                Some(synced_lsn) => format!(", written once lsn {synced_lsn} was durable"),
                None => String::new(),
            };
            return Err(corruption(
                path,
                offset as u64,
                format!(
                    "{reason}, but a valid record (lsn {}) follows at offset {}{written_after}",
                    found.lsn, found.offset
                ),
            ));
        }

        // A torn tail. torn_bytes_dropped counts from the stop to the last non-zero byte: the
        // bytes of unacknowledged records, not the preallocated zeros after them.
        let dropped = (junk_end - offset) as u64;
        report.torn_bytes_dropped += dropped;
        tracing::warn!(
            path = %path.display(),
            offset,
            bytes_dropped = dropped,
            unsynced_records_dropped = later.len(),
            last_lsn = last_good_lsn,
            "wal: truncating a torn tail ({reason}); every dropped record was written after \
             the last fdatasync, so none was acknowledged"
        );
        if last_good_lsn < first_lsn {
            repairs.push(TailRepair::Remove { path: path.clone() });
        } else {
            repairs.push(TailRepair::Truncate {
                path: path.clone(),
                offset: offset as u64,
            });
            segments.push(info);
        }
        break;
    }

    let log_end = segments.last().map_or(0, |info| info.last_lsn);
    if log_end.max(after_lsn) < from.durable_floor {
        let detail = format!(
            "the log ends at lsn {log_end} (checkpoint lsn {after_lsn}), but checkpointed snapshots \
             reflect lsns up to {}: acknowledged records {}..={} are missing (a disk that lost \
             written data, or a truncated log)",
            from.durable_floor,
            log_end.max(after_lsn) + 1,
            from.durable_floor
        );
        if !from.accept_loss {
            return Err(corruption(
                dir,
                0,
                format!(
                    "{detail}. Restore the missing segments, or start once with \
                     engine.recovery_accept_wal_loss = true to go on from lsn {}, keeping what \
                     the snapshots hold and losing the rest of those records",
                    from.durable_floor + 1
                ),
            ));
        }
        tracing::error!(
            "wal: {detail}; going on from lsn {} as configured (engine.recovery_accept_wal_loss)",
            from.durable_floor + 1
        );
    }

    // The log has been judged; now repair it and make what we replayed durable (a process that
    // crashed between write and fdatasync leaves records only in the page cache).
    let mut removed_any = false;
    for repair in &repairs {
        match repair {
            TailRepair::Truncate { path, offset } => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|file| file.set_len(*offset).and_then(|()| file.sync_all()));
                file.map_err(|error| {
                    Error::io(format!("wal: truncating {}", path.display()), error)
                })?;
            }
            TailRepair::Remove { path } => {
                fs::remove_file(path).map_err(|error| {
                    Error::io(format!("wal: removing {}", path.display()), error)
                })?;
                removed_any = true;
            }
        }
    }
    for info in &segments {
        OpenOptions::new()
            .read(true)
            .open(&info.path)
            .and_then(|file| file.sync_data())
            .map_err(|error| Error::io(format!("wal: syncing {}", info.path.display()), error))?;
    }
    if removed_any {
        segment::sync_dir(dir)
            .map_err(|error| Error::io(format!("wal: syncing {}", dir.display()), error))?;
    }

    report.segments = segments.len();
    report.last_lsn = segments.last().map_or(0, |info| info.last_lsn);
    Ok(Recovered { report, segments })
}

/// Segments must follow each other without overlap; a gap is corruption only if it hides
/// records the caller needs (lsn > `after_lsn`). A gap below `after_lsn` is legitimate: the
/// log was empty or behind the checkpoint when it was last opened.
fn check_continuity(
    path: &Path,
    first_lsn: u64,
    previous: Option<&SegmentInfo>,
    after_lsn: u64,
) -> Result<()> {
    let expected = previous.map_or(1, |previous| previous.last_lsn + 1);
    if first_lsn < expected {
        return Err(corruption(
            path,
            0,
            format!(
                "segment starts at lsn {first_lsn}, overlapping the log before it, which ends \
                 at {}",
                expected - 1
            ),
        ));
    }
    if first_lsn > expected && first_lsn - 1 > after_lsn {
        return Err(corruption(
            path,
            0,
            format!(
                "segment starts at lsn {first_lsn} but the log before it ends at {}; records \
                 {}..={} needed after checkpoint lsn {after_lsn} are missing",
                expected - 1,
                expected.max(after_lsn + 1),
                first_lsn - 1
            ),
        ));
    }
    Ok(())
}

fn corruption(path: &Path, offset: u64, detail: impl Into<String>) -> Error {
    Error::Corruption {
        path: path.to_path_buf(),
        offset,
        detail: detail.into(),
    }
}
