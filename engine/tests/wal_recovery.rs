//! The WAL through its public API: round trips across reopen and segment rolls, the torn-tail
//! and corruption rules (property tests that cut or flip bytes of a real log and predict the
//! outcome from the record boundaries they wrote, independently of the reader), LSN density
//! under concurrency and overload, segment removal, and batch durability.
//!
//! Every test name starts with `wal_` so that `cargo test -p switchyard-engine wal` runs them.
//! The expected layout comes from the documented format alone: a 32-byte segment header, then
//! records of a 24-byte header (length, CRC, lsn, synced lsn) plus payload, segment files named
//! by their first LSN.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use switchyard_engine::config::{Durability, WalConfig};
use switchyard_engine::error::Error;
use switchyard_engine::wal::{RecoveryReport, Wal};

const SEGMENT_HEADER_BYTES: u64 = 32;
const RECORD_HEADER_BYTES: u64 = 24;

type Records = Vec<(u64, Vec<u8>)>;

fn config(dir: &Path, segment_bytes_max: u64) -> WalConfig {
    let mut config = WalConfig::new(dir.join("wal"));
    config.segment_bytes_max = segment_bytes_max;
    config.queue_depth_max = 16_384;
    config.batch_bytes_max = 256 * 1024;
    config.record_bytes_max = 64 * 1024;
    config
}

/// Opens the WAL and collects what it replays.
fn open(config: &WalConfig, after_lsn: u64) -> Result<(Wal, RecoveryReport, Records), Error> {
    let mut replayed = Vec::new();
    let (wal, report) = Wal::open(config.clone(), after_lsn, |lsn, payload| {
        replayed.push((lsn, payload.to_vec()));
        Ok(())
    })?;
    Ok((wal, report, replayed))
}

/// Appends every payload, checks the LSNs are `next..`, waits until all are durable.
fn append_all(wal: &Wal, payloads: &[Vec<u8>]) -> Records {
    let first = wal.next_lsn();
    let records: Records = payloads
        .iter()
        .enumerate()
        .map(|(index, payload)| {
            let lsn = wal.append(payload.clone()).expect("append");
            assert_eq!(lsn, first + index as u64, "LSNs are dense");
            (lsn, payload.clone())
        })
        .collect();
    for (lsn, _) in &records {
        wal.wait_durable_blocking(*lsn).expect("durable");
    }
    records
}

/// Deterministic pseudo-random payloads (rand's xoshiro256++, the project's seeded generator),
/// sizes in `1..=size_max`.
fn payloads(seed: u64, count: usize, size_max: usize) -> Vec<Vec<u8>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let size = rng.random_range(1..=size_max);
            (0..size).map(|_| rng.random::<u8>()).collect()
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .expect("wal dir")
        .map(|entry| entry.expect("entry").path())
        .filter_map(|path| {
            let stem = path
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .to_string();
            assert_eq!(
                stem.len(),
                20,
                "segment names have 20 digits: {}",
                path.display()
            );
            Some((stem.parse().ok()?, path))
        })
        .collect();
    files.sort();
    files
}

#[derive(Debug)]
struct RecordSpan {
    lsn: u64,
    start: u64,
    end: u64,
    /// The writer's durable lsn when it wrote this record (header bytes 16..24).
    synced_lsn: u64,
}

#[derive(Debug)]
struct SegmentLayout {
    path: PathBuf,
    file_bytes: u64,
    records: Vec<RecordSpan>,
}

impl SegmentLayout {
    fn data_end(&self) -> u64 {
        self.records
            .last()
            .map_or(SEGMENT_HEADER_BYTES, |record| record.end)
    }
}

/// Where every record sits, from the file names and the payload sizes alone.
fn layout(dir: &Path, records: &Records) -> Vec<SegmentLayout> {
    let sizes: BTreeMap<u64, u64> = records
        .iter()
        .map(|(lsn, payload)| (*lsn, payload.len() as u64))
        .collect();
    let last_lsn = records.last().map_or(0, |(lsn, _)| *lsn);
    let files = segment_files(dir);
    let mut segments = Vec::new();
    for (index, (first_lsn, path)) in files.iter().enumerate() {
        let end_lsn = files.get(index + 1).map_or(last_lsn, |(next, _)| next - 1);
        let bytes = fs::read(path).expect("segment");
        assert_eq!(&bytes[..8], b"SWYDWAL1", "{}", path.display());
        let mut offset = SEGMENT_HEADER_BYTES;
        let spans = (*first_lsn..=end_lsn)
            .map(|lsn| {
                let start = offset;
                offset += RECORD_HEADER_BYTES + sizes[&lsn];
                let at = start as usize + 16;
                RecordSpan {
                    lsn,
                    start,
                    end: offset,
                    synced_lsn: u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()),
                }
            })
            .collect();
        segments.push(SegmentLayout {
            path: path.clone(),
            file_bytes: bytes.len() as u64,
            records: spans,
        });
    }
    segments
}

fn assert_corruption(
    result: Result<(Wal, RecoveryReport, Records), Error>,
    path: &Path,
    offset: u64,
) {
    match result {
        Err(error @ Error::Corruption { .. }) => {
            let message = error.to_string();
            let Error::Corruption {
                path: found_path,
                offset: found_offset,
                ..
            } = error
            else {
                unreachable!()
            };
            assert_eq!(found_path, path, "{message}");
            assert_eq!(found_offset, offset, "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(&format!("offset {offset}")), "{message}");
        }
        Err(other) => panic!(
            "expected corruption at {}:{offset}, got {other}",
            path.display()
        ),
        Ok((_, report, replayed)) => panic!(
            "expected corruption at {}:{offset}, recovery accepted {} records ({report:?})",
            path.display(),
            replayed.len()
        ),
    }
}

/// Bytes from `from` to the last non-zero byte of `bytes[from..]` (the documented
/// `torn_bytes_dropped` rule).
fn nonzero_span(bytes: &[u8], from: usize) -> u64 {
    bytes[from.min(bytes.len())..]
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |index| index as u64 + 1)
}

#[test]
fn wal_round_trip_across_reopen_and_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let (wal, report, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, vec![]);
    assert_eq!(report.last_lsn, 0);
    assert_eq!(wal.next_lsn(), 1);
    let written = append_all(&wal, &payloads(1, 200, 600));
    assert_eq!(written.last().unwrap().0, 200);
    let stats = wal.stats();
    assert_eq!(stats.records, 200);
    assert!(
        stats.fsyncs >= 1 && stats.fsyncs <= stats.records,
        "{stats:?}"
    );
    // The active segment is preallocated to segment_bytes_max.
    let files = segment_files(&config.dir);
    assert!(
        files.len() >= 10,
        "4 KiB segments must roll: {}",
        files.len()
    );
    assert_eq!(fs::metadata(&files.last().unwrap().1).unwrap().len(), 4096);
    wal.close().unwrap();
    wal.close().unwrap(); // idempotent

    let (wal, report, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, written);
    assert_eq!(report.records, 200);
    assert_eq!(report.last_lsn, 200);
    assert_eq!(report.segments, files.len());
    assert_eq!(report.torn_bytes_dropped, 0);
    assert_eq!(wal.next_lsn(), 201);
    assert_eq!(wal.durable_lsn(), 200);
    let more = append_all(&wal, &payloads(2, 3, 100));
    assert_eq!(more[0].0, 201);
    // The new records went to a new segment named by the next LSN.
    assert!(segment_files(&config.dir)
        .iter()
        .any(|(first, _)| *first == 201));
    drop(wal); // the drop guard stops the writer

    let mut all = written.clone();
    all.extend(more);
    let (wal, report, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, all);
    assert_eq!(report.records, 203);
    wal.close().unwrap();

    // after_lsn skips records but still checks them.
    let (wal, report, replayed) = open(&config, 150).unwrap();
    assert_eq!(replayed, all[150..].to_vec());
    assert_eq!(report.records, 53);
    assert_eq!(report.last_lsn, 203);
    assert_eq!(wal.next_lsn(), 204);
    wal.close().unwrap();
}

#[test]
fn wal_after_lsn_seeds_an_empty_log_and_later_gaps_need_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let (wal, _, _) = open(&config, 100).unwrap();
    assert_eq!(wal.next_lsn(), 101);
    assert_eq!(wal.durable_lsn(), 100);
    let written = append_all(&wal, &payloads(3, 5, 50));
    assert_eq!(written[0].0, 101);
    wal.close().unwrap();

    let (wal, _, replayed) = open(&config, 100).unwrap();
    assert_eq!(replayed, written);
    wal.close().unwrap();
    // Without the checkpoint, records 1..=100 are missing: refuse.
    let first_segment = segment_path(&config, 101);
    assert_corruption(open(&config, 0), &first_segment, 0);
}

fn segment_path(config: &WalConfig, first_lsn: u64) -> PathBuf {
    config.dir.join(format!("{first_lsn:020}.log"))
}

#[test]
fn wal_record_limits_consume_no_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let (wal, _, _) = open(&config, 0).unwrap();
    assert!(matches!(wal.append(Vec::new()), Err(Error::Invalid { .. })));
    let too_large = vec![1u8; config.record_bytes_max + 1];
    assert!(matches!(wal.append(too_large), Err(Error::Invalid { .. })));
    let largest = vec![2u8; config.record_bytes_max];
    assert_eq!(wal.append(largest.clone()).unwrap(), 1);
    wal.sync().unwrap();
    wal.close().unwrap();
    assert!(matches!(wal.append(vec![1]), Err(Error::Io { .. })));
    assert!(matches!(
        wal.wait_durable_blocking(2),
        Err(Error::Io { .. })
    ));
    assert!(wal.wait_durable_blocking(1).is_ok());
    let (_, _, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, vec![(1, largest)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Cut the last segment anywhere: recovery keeps exactly the records that lie entirely
    /// before the cut (all of which were acknowledged), drops the rest, and the log goes on.
    #[test]
    fn wal_cut_last_segment_keeps_the_longest_valid_prefix(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..2000), 1..30),
        segment_bytes_max in 2048u64..8192,
        preallocate in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), segment_bytes_max);
        config.preallocate = preallocate;
        let (wal, _, _) = open(&config, 0).unwrap();
        let written = append_all(&wal, &payloads);
        wal.close().unwrap();

        let segments = layout(&config.dir, &written);
        let last = segments.last().unwrap();
        let cut_offset = cut.index(last.file_bytes as usize + 1) as u64;
        let bytes = fs::read(&last.path).unwrap();
        fs::OpenOptions::new().write(true).open(&last.path).unwrap().set_len(cut_offset).unwrap();

        let kept_before: usize = segments[..segments.len() - 1]
            .iter()
            .map(|segment| segment.records.len())
            .sum();
        let kept_last = last.records.iter().filter(|record| record.end <= cut_offset).count();
        let expected: Records = written[..kept_before + kept_last].to_vec();
        let expected_dropped = if cut_offset < SEGMENT_HEADER_BYTES {
            nonzero_span(&bytes[..cut_offset as usize], 0)
        } else {
            let stop = last.records.get(kept_last).map_or(last.data_end(), |record| record.start);
            nonzero_span(&bytes[..cut_offset as usize], stop as usize)
        };

        let (wal, report, replayed) = open(&config, 0).unwrap();
        prop_assert_eq!(&replayed, &expected);
        prop_assert_eq!(report.torn_bytes_dropped, expected_dropped);
        prop_assert_eq!(wal.next_lsn(), expected.len() as u64 + 1);
        let more = append_all(&wal, &[vec![7; 10], vec![8; 3000]]);
        prop_assert_eq!(more[0].0, expected.len() as u64 + 1);
        wal.close().unwrap();

        let mut all = expected;
        all.extend(more);
        let (wal, report, replayed) = open(&config, 0).unwrap();
        prop_assert_eq!(replayed, all);
        prop_assert_eq!(report.torn_bytes_dropped, 0);
        wal.close().unwrap();
    }

    /// Flip one byte anywhere in the log. In a segment that a later one follows, or in a
    /// segment header, open must refuse, naming the file and the offset of the damaged record.
    /// In the last segment the damaged record was acknowledged exactly when a later record says
    /// so (its synced lsn reaches the damaged lsn): then open refuses; otherwise the damage and
    /// everything after it is a torn tail and recovery keeps what precedes it.
    #[test]
    fn wal_flipped_byte_is_corruption_exactly_when_an_acknowledged_record_is_hit(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..2000), 1..30),
        segment_bytes_max in 2048u64..8192,
        preallocate in any::<bool>(),
        position in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        one_by_one in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), segment_bytes_max);
        config.preallocate = preallocate;
        let (wal, _, _) = open(&config, 0).unwrap();
        // One batch after another (every record synced before the next), or all at once.
        let written = if one_by_one {
            append_each_durable(&wal, &payloads)
        } else {
            append_all(&wal, &payloads)
        };
        wal.close().unwrap();

        let segments = layout(&config.dir, &written);
        let total: u64 = segments.iter().map(|segment| segment.file_bytes).sum();
        let mut global = position.index(total as usize) as u64;
        let (segment_index, segment) = segments
            .iter()
            .enumerate()
            .find(|(_, segment)| {
                if global < segment.file_bytes {
                    true
                } else {
                    global -= segment.file_bytes;
                    false
                }
            })
            .unwrap();
        let offset = global;
        let mut bytes = fs::read(&segment.path).unwrap();
        bytes[offset as usize] ^= mask;
        fs::write(&segment.path, &bytes).unwrap();

        let is_last = segment_index + 1 == segments.len();
        prop_assert_eq!(
            segments.last().unwrap().records.last().unwrap().lsn,
            written.len() as u64
        );
        // The damaged record (None: the header, or the zero tail after the data).
        let damaged = segment.records.iter().position(|record| offset >= record.start && offset < record.end);
        let acknowledged = match damaged {
            _ if offset < SEGMENT_HEADER_BYTES => true,
            None => !is_last,
            Some(index) => {
                let lsn = segment.records[index].lsn;
                !is_last || segment.records[index + 1..].iter().any(|later| later.synced_lsn >= lsn)
            }
        };
        let result = open(&config, 0);
        if acknowledged {
            let expected_offset = if offset < SEGMENT_HEADER_BYTES {
                0
            } else {
                damaged.map_or(segment.data_end(), |index| segment.records[index].start)
            };
            assert_corruption(result, &segment.path, expected_offset);
            // Refusing changed nothing on disk.
            prop_assert_eq!(fs::read(&segment.path).unwrap(), bytes);
        } else {
            let kept_before: usize = segments[..segment_index]
                .iter()
                .map(|segment| segment.records.len())
                .sum();
            let kept = kept_before + damaged.unwrap_or(segment.records.len());
            let (wal, report, replayed) = result.unwrap();
            prop_assert_eq!(&replayed, &written[..kept].to_vec());
            prop_assert!(report.torn_bytes_dropped > 0);
            prop_assert_eq!(wal.append(vec![1, 2, 3]).unwrap(), kept as u64 + 1);
            wal.close().unwrap();
        }
    }
}

/// Appends the payloads one at a time, each durable before the next is appended.
fn append_each_durable(wal: &Wal, payloads: &[Vec<u8>]) -> Records {
    payloads
        .iter()
        .map(|payload| {
            let lsn = wal.append(payload.clone()).expect("append");
            wal.wait_durable_blocking(lsn).expect("durable");
            (lsn, payload.clone())
        })
        .collect()
}

/// A power cut in the middle of the last, unsynced batch may persist a later page of it and
/// lose an earlier one. Nothing in that batch was acknowledged, so it is a torn tail: recovery
/// keeps every acknowledged record and drops the batch, counting its valid records.
#[test]
fn wal_a_lost_early_page_of_the_unsynced_batch_is_a_torn_tail() {
    // The last batch: the records written after the highest LSN any record says was durable
    // when it was written (so no later record proves them durable). The writer decides how
    // appends group into batches; on a busy machine it may sync part of the 40 appends first,
    // so the batch is read from the log rather than assumed, and the set-up is retried until
    // the batch holds at least two records (a lost early page, a kept later one).
    let mut attempts = 0;
    let (dir, config, written, segment, first) = loop {
        attempts += 1;
        assert!(
            attempts <= 20,
            "the writer never wrote two records in one batch"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        let (wal, _, _) = open(&config, 0).unwrap();
        let mut written = append_each_durable(&wal, &payloads(10, 20, 300));
        written.extend(append_all(&wal, &payloads(11, 40, 300)));
        wal.close().unwrap();
        let segment = layout(&config.dir, &written).pop().unwrap();
        let durable = segment.records.iter().map(|r| r.synced_lsn).max().unwrap();
        let Some(first) = segment.records.iter().position(|r| r.lsn > durable) else {
            continue;
        };
        if segment.records.len() - first >= 2 {
            break (dir, config, written, segment, first);
        }
    };
    let batch = &segment.records[first..];
    assert!(batch.iter().all(|record| record.synced_lsn < batch[0].lsn));
    // Zero the batch's first record (a page that never reached the disk) but keep the rest.
    let mut bytes = fs::read(&segment.path).unwrap();
    for byte in &mut bytes[batch[0].start as usize..batch[0].end as usize] {
        *byte = 0;
    }
    fs::write(&segment.path, &bytes).unwrap();

    let kept = (batch[0].lsn - 1) as usize;
    let (wal, report, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, written[..kept].to_vec());
    assert!(report.torn_bytes_dropped > 0);
    assert_eq!(wal.next_lsn(), batch[0].lsn);
    wal.close().unwrap();
    drop(dir);

    // The same damage to an acknowledged record (a later record was written once it was
    // durable) is corruption.
    let dir = tempfile::tempdir().unwrap();
    let config = self::config(dir.path(), 1 << 20);
    let (wal, _, _) = open(&config, 0).unwrap();
    let written = append_each_durable(&wal, &payloads(12, 20, 300));
    wal.close().unwrap();
    let segment = layout(&config.dir, &written).pop().unwrap();
    let hit = &segment.records[10];
    let mut bytes = fs::read(&segment.path).unwrap();
    for byte in &mut bytes[hit.start as usize..hit.end as usize] {
        *byte = 0;
    }
    fs::write(&segment.path, &bytes).unwrap();
    assert_corruption(open(&config, 0), &segment.path, hit.start);
}

#[test]
fn wal_mid_log_corruption_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let (wal, _, _) = open(&config, 0).unwrap();
    // Each record durable before the next: the later records prove the third was acknowledged.
    let written = append_each_durable(&wal, &payloads(4, 10, 300));
    wal.close().unwrap();
    let segments = layout(&config.dir, &written);
    assert_eq!(segments.len(), 1);
    let segment = &segments[0];
    let third = &segment.records[2];
    let mut bytes = fs::read(&segment.path).unwrap();
    bytes[(third.start + RECORD_HEADER_BYTES) as usize] ^= 0xFF;
    fs::write(&segment.path, &bytes).unwrap();

    let mut replayed = Vec::new();
    let error = Wal::open(config.clone(), 0, |lsn, _| {
        replayed.push(lsn);
        Ok(())
    })
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&segment.path.display().to_string())
            && message.contains(&format!("offset {}", third.start))
            && message.contains(&format!("valid record (lsn {})", third.lsn + 1)),
        "{message}"
    );
    assert_eq!(replayed, vec![1, 2], "replay stops at the damage");
    assert_eq!(
        fs::read(&segment.path).unwrap(),
        bytes,
        "refusing changes nothing"
    );
    // Still refused the second time: nothing was "repaired" silently.
    assert_corruption(open(&config, 0), &segment.path, third.start);
}

#[test]
fn wal_damage_before_a_later_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 2048);
    config.preallocate = false;
    let (wal, _, _) = open(&config, 0).unwrap();
    let written = append_all(&wal, &payloads(5, 20, 700));
    wal.close().unwrap();
    let segments = layout(&config.dir, &written);
    assert!(segments.len() >= 3);
    // Cut the first segment inside its last record: later segments still hold valid records.
    let first = &segments[0];
    let last_record = first.records.last().unwrap();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&first.path)
        .unwrap();
    file.set_len(last_record.end - 1).unwrap();
    assert_corruption(open(&config, 0), &first.path, last_record.start);
}

#[test]
fn wal_torn_tail_garbage_is_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 1 << 20);
    config.preallocate = false;
    let (wal, _, _) = open(&config, 0).unwrap();
    let written = append_all(&wal, &payloads(6, 5, 100));
    wal.close().unwrap();
    let segment = layout(&config.dir, &written).pop().unwrap();
    let mut bytes = fs::read(&segment.path).unwrap();
    // Half a record header and a payload fragment, as a crash mid-write leaves.
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 0xAA, 0xBB, 0, 0, 9, 9, 9]);
    fs::write(&segment.path, &bytes).unwrap();

    let (wal, report, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, written);
    assert_eq!(report.torn_bytes_dropped, 11);
    assert_eq!(
        fs::metadata(&segment.path).unwrap().len(),
        segment.data_end()
    );
    assert_eq!(wal.append(vec![1]).unwrap(), 6);
    wal.close().unwrap();
}

/// An empty, zero-filled last segment is a crash right after creating it: removed. But the
/// segment before it was synced whole before that one was created, so garbage at its end is
/// damage to acknowledged data, not a torn tail (issue 11, weaker spot 4).
#[test]
fn wal_garbage_before_a_newer_empty_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 1 << 20);
    config.preallocate = false;
    let (wal, _, _) = open(&config, 0).unwrap();
    let written = append_all(&wal, &payloads(6, 5, 100));
    wal.close().unwrap();
    let segment = layout(&config.dir, &written).pop().unwrap();
    let empty = segment_path(&config, 6);
    fs::write(&empty, vec![0u8; 4096]).unwrap();
    let (wal, _, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, written);
    assert!(!empty.exists(), "the empty last segment is removed");
    wal.close().unwrap();

    let mut bytes = fs::read(&segment.path).unwrap();
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 0xAA, 0xBB, 0, 0, 9, 9, 9]);
    fs::write(&segment.path, &bytes).unwrap();
    fs::write(&empty, vec![0u8; 4096]).unwrap();
    assert_corruption(open(&config, 0), &segment.path, segment.data_end());
    assert!(empty.exists(), "refusing changes nothing");
}

#[test]
fn wal_concurrent_appends_get_dense_unique_lsns() {
    const THREAD_COUNT: usize = 8;
    const APPENDS_PER_THREAD: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 64 * 1024);
    let (wal, _, _) = open(&config, 0).unwrap();
    let threads: Vec<_> = (0..THREAD_COUNT)
        .map(|thread| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut appended = Vec::new();
                for index in 0..APPENDS_PER_THREAD {
                    let payload = format!("thread {thread} append {index}").into_bytes();
                    let lsn = wal.append(payload.clone()).expect("append");
                    appended.push((lsn, payload));
                }
                let last = appended.last().unwrap().0;
                wal.wait_durable_blocking(last).expect("durable");
                appended
            })
        })
        .collect();
    let mut by_lsn = BTreeMap::new();
    for thread in threads {
        let appended = thread.join().unwrap();
        // One thread's LSNs increase in the order it appended.
        assert!(appended.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (lsn, payload) in appended {
            assert!(
                by_lsn.insert(lsn, payload).is_none(),
                "lsn {lsn} given twice"
            );
        }
    }
    let total = (THREAD_COUNT * APPENDS_PER_THREAD) as u64;
    assert_eq!(
        by_lsn.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert!(wal.durable_lsn() >= total);
    wal.close().unwrap();

    let (_, _, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, by_lsn.into_iter().collect::<Records>());
}

#[test]
fn wal_async_waiters_share_fdatasyncs() {
    const TASK_COUNT: usize = 64;
    const APPENDS_PER_TASK: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let (wal, _, _) = open(&config, 0).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASK_COUNT)
            .map(|task| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    for index in 0..APPENDS_PER_TASK {
                        let lsn = wal.append(format!("{task}/{index}").into_bytes()).unwrap();
                        wal.wait_durable(lsn).await.unwrap();
                        assert!(wal.durable_lsn() >= lsn);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let stats = wal.stats();
    assert_eq!(stats.records, (TASK_COUNT * APPENDS_PER_TASK) as u64);
    assert!(
        stats.records >= 4 * stats.fsyncs,
        "group commit should put several records in each fdatasync: {stats:?}"
    );
    let mut metrics = String::new();
    wal.render_metrics(&mut metrics);
    for expected in [
        "# TYPE switchyard_wal_batch_records histogram",
        "# TYPE switchyard_wal_fdatasync_seconds histogram",
        &format!("switchyard_wal_records_total {}", stats.records),
        &format!("switchyard_wal_fdatasyncs_total {}", stats.fsyncs),
        &format!("switchyard_wal_batch_records_count {}", stats.fsyncs),
        &format!("switchyard_wal_durable_lsn {}", stats.records),
        "switchyard_wal_poisoned 0",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
    wal.close().unwrap();
}

#[test]
fn wal_full_queue_is_overloaded_and_consumes_no_lsn() {
    const ATTEMPT_COUNT_MAX: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 1 << 20);
    config.queue_depth_max = 1;
    let (wal, _, _) = open(&config, 0).unwrap();
    let mut accepted = Vec::new();
    let mut overloaded = 0;
    for attempt in 0..ATTEMPT_COUNT_MAX {
        match wal.append(format!("{attempt}").into_bytes()) {
            Ok(lsn) => accepted.push((lsn, format!("{attempt}").into_bytes())),
            Err(Error::Overloaded(what)) => {
                assert_eq!(what, "wal queue");
                overloaded += 1;
                if overloaded >= 100 {
                    break;
                }
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(overloaded >= 100, "a one-deep queue never filled");
    let lsns: Vec<u64> = accepted.iter().map(|(lsn, _)| *lsn).collect();
    assert_eq!(lsns, (1..=accepted.len() as u64).collect::<Vec<_>>());
    assert_eq!(wal.next_lsn(), accepted.len() as u64 + 1);
    wal.sync().unwrap();
    assert_eq!(wal.durable_lsn(), accepted.len() as u64);
    wal.close().unwrap();
    let (_, _, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, accepted);
}

#[test]
fn wal_remove_covered_deletes_only_whole_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let (wal, _, _) = open(&config, 0).unwrap();
    let written = append_all(&wal, &payloads(7, 60, 500));
    let before = segment_files(&config.dir);
    assert!(before.len() >= 5);
    let covered = 30;
    // Segment i holds first_i..first_{i+1}-1; the last one is active.
    let expected_removed = before
        .windows(2)
        .take_while(|pair| pair[1].0 - 1 <= covered)
        .count();
    assert!(expected_removed >= 1);
    assert_eq!(wal.remove_covered(covered).unwrap(), expected_removed);
    assert_eq!(
        segment_files(&config.dir),
        before[expected_removed..].to_vec()
    );
    assert_eq!(wal.remove_covered(covered).unwrap(), 0);
    // Everything covered: still never the active segment.
    let removed_all = wal.remove_covered(u64::MAX).unwrap();
    assert_eq!(removed_all, before.len() - expected_removed - 1);
    assert_eq!(
        segment_files(&config.dir),
        before[before.len() - 1..].to_vec()
    );
    let active_first = before.last().unwrap().0;
    let more = append_all(&wal, &payloads(8, 2, 10));
    wal.close().unwrap();

    let mut all = written.clone();
    all.extend(more);
    let after_lsn = active_first - 1;
    let (wal, report, replayed) = open(&config, after_lsn).unwrap();
    assert_eq!(replayed, all[after_lsn as usize..].to_vec());
    assert_eq!(report.last_lsn, 62);
    wal.close().unwrap();
    // Records 1..active_first are gone: a caller that still needs them is refused.
    assert_corruption(open(&config, 0), &before.last().unwrap().1, 0);

    // With no append since open there is no active segment: everything covered can go.
    let (wal, _, _) = open(&config, 62).unwrap();
    let remaining = segment_files(&config.dir).len();
    assert_eq!(remaining, 1);
    assert_eq!(wal.remove_covered(62).unwrap(), remaining);
    assert!(segment_files(&config.dir).is_empty());
    wal.close().unwrap();
    let (wal, report, replayed) = open(&config, 62).unwrap();
    assert!(replayed.is_empty());
    assert_eq!(report.segments, 0);
    assert_eq!(wal.append(vec![1]).unwrap(), 63);
    wal.close().unwrap();
}

#[test]
fn wal_batch_mode_syncs_on_its_own_within_the_interval() {
    const BATCH_MS: u64 = 50;
    const FLOOD_MS: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 16 << 20);
    config.durability = Durability::Batch;
    config.durability_batch_ms = BATCH_MS;
    let (wal, _, _) = open(&config, 0).unwrap();

    // A single append on a quiet queue becomes durable without any sync() call.
    let lsn = wal.append(b"quiet".to_vec()).unwrap();
    let started = Instant::now();
    while wal.durable_lsn() < lsn {
        assert!(
            started.elapsed() < Duration::from_millis(BATCH_MS + 1000),
            "not durable after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    // Under a flood, fdatasyncs are spaced by the interval, not one per batch.
    let fsyncs_before = wal.stats().fsyncs;
    let flood_started = Instant::now();
    let mut last = lsn;
    while flood_started.elapsed() < Duration::from_millis(FLOOD_MS) {
        match wal.append(vec![5; 100]) {
            Ok(appended) => last = appended,
            Err(Error::Overloaded(_)) => std::thread::yield_now(),
            Err(other) => panic!("{other}"),
        }
    }
    let flood_ms = flood_started.elapsed().as_millis() as u64;
    let waited = Instant::now();
    wal.wait_durable_blocking(last).unwrap();
    assert!(
        waited.elapsed() < Duration::from_millis(BATCH_MS + 1000),
        "the tail of the flood took {:?}",
        waited.elapsed()
    );
    let fsyncs = wal.stats().fsyncs - fsyncs_before;
    // Each segment roll adds one fdatasync of the segment it closes.
    let rolls = segment_files(&config.dir).len() as u64 - 1;
    assert!(
        fsyncs <= flood_ms / BATCH_MS + 3 + rolls,
        "{fsyncs} fdatasyncs ({rolls} rolls) in {flood_ms} ms with a {BATCH_MS} ms interval"
    );
    assert!(
        last - lsn > fsyncs * 10,
        "batches should be large: {} records, {fsyncs} fdatasyncs",
        last - lsn
    );
    wal.close().unwrap();
    let (_, report, _) = open(&config, 0).unwrap();
    assert_eq!(report.last_lsn, last);
}

#[test]
fn wal_waiters_on_other_threads_see_close() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let (wal, _, _) = open(&config, 0).unwrap();
    let lsn = wal.append(vec![1]).unwrap();
    let waiter = {
        let wal = wal.clone();
        // Waits for an LSN nobody will append: close must release it with an error.
        std::thread::spawn(move || wal.wait_durable_blocking(lsn + 1))
    };
    std::thread::sleep(Duration::from_millis(20));
    wal.close().unwrap();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Io { .. })));
    assert_eq!(wal.durable_lsn(), lsn, "close syncs what was queued");
    let seen: HashSet<u64> = open(&config, 0)
        .unwrap()
        .2
        .into_iter()
        .map(|(lsn, _)| lsn)
        .collect();
    assert_eq!(seen, HashSet::from([1]));
}

/// With `preallocate`, the next segment is zero-filled in the background and adopted at the
/// roll: segments then start from it (counted in `prepared_segments`), have the full size, and
/// the log reads back exactly, across a reopen; a leftover `next.prep` is used by the next open.
#[test]
fn wal_rolls_into_prepared_zero_filled_segments() {
    const SEGMENT: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), SEGMENT);
    config.preallocate = true;
    let prepared = config.dir.join("next.prep");
    let wait_prepared = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !prepared.exists() {
            assert!(Instant::now() < deadline, "no segment was prepared");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let (wal, _, _) = open(&config, 0).unwrap();
    let mut written = Records::new();
    // The first segment is created at the first append; its successor is prepared from then on.
    written.extend(append_all(&wal, &payloads(0, 3, 100)));
    for round in 1..4 {
        wait_prepared();
        // Over one segment of data: at least one roll, into the prepared file.
        written.extend(append_all(&wal, &payloads(round, 100, 2000)));
    }
    let stats = wal.stats();
    assert!(stats.prepared_segments >= 3, "{stats:?}");
    for (_, path) in segment_files(&config.dir) {
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            SEGMENT,
            "{}",
            path.display()
        );
    }
    wait_prepared();
    wal.close().unwrap();

    let (wal, report, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, written);
    assert_eq!(report.torn_bytes_dropped, 0);
    // The open's first segment is the one left prepared.
    written.extend(append_all(&wal, &payloads(9, 3, 100)));
    assert_eq!(wal.stats().prepared_segments, 1);
    wal.close().unwrap();
    let (_, _, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, written);
}

/// Segments written by builds before the synced lsn (record framing 0: a 16-byte record header)
/// are still read, and the log goes on in today's framing.
#[test]
fn wal_segments_of_older_builds_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    fs::create_dir_all(&config.dir).unwrap();
    let mut bytes = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    bytes[..8].copy_from_slice(b"SWYDWAL1");
    // Format 4: the last format written with legacy framing.
    bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
    bytes[16..24].copy_from_slice(&1u64.to_le_bytes());
    let crc = crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    let old: Records = vec![(1, b"first".to_vec()), (2, b"second".to_vec())];
    for (lsn, payload) in &old {
        let mut covered = lsn.to_le_bytes().to_vec();
        covered.extend_from_slice(payload);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c(&covered).to_le_bytes());
        bytes.extend_from_slice(&covered);
    }
    fs::write(segment_path(&config, 1), &bytes).unwrap();

    let (wal, report, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, old);
    assert_eq!(report.last_lsn, 2);
    let new = append_all(&wal, &[b"third".to_vec()]);
    wal.close().unwrap();
    let mut all = old.clone();
    all.extend(new);
    let (wal, _, replayed) = open(&config, 0).unwrap();
    assert_eq!(replayed, all);
    wal.close().unwrap();
    // Damage in the legacy segment, now followed by a newer one, is refused.
    bytes[SEGMENT_HEADER_BYTES as usize + 17] ^= 1;
    fs::write(segment_path(&config, 1), &bytes).unwrap();
    assert_corruption(
        open(&config, 0),
        &segment_path(&config, 1),
        SEGMENT_HEADER_BYTES,
    );
}

/// CRC32C (Castagnoli), bitwise: the test's own reading of the documented format.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
