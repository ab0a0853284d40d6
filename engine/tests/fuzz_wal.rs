//! WAL recovery fed arbitrary bytes (issue 11, fuzzing): recovery must never panic, and whatever
//! it accepts must be a prefix of what was written, in order, byte for byte; never a record that
//! was not written, never one out of place. Two generators:
//! - a real log (written through `Wal`, rolled over small segments) damaged by a random list of
//!   edits: bit flips, zeroed pages (a write that never reached the disk), truncations, garbage
//!   spliced in, a segment deleted or duplicated under another name;
//! - segment files of pure noise, with a valid header or none.
//!
//! CI runs `CASES` cases of each; `SWITCHYARD_SLOW_TESTS=1` runs `SLOW_CASES`. A failure prints
//! the minimal input (proptest shrinks it); proptest keeps the seeds of failing inputs in
//! `proptest-regressions/`, which is committed (the corpus of past failures, replayed first).

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use switchyard_engine::config::WalConfig;
use switchyard_engine::error::Error;
use switchyard_engine::wal::Wal;

const CASES: u32 = 200;
const SLOW_CASES: u32 = 20_000;

fn cases() -> u32 {
    if std::env::var_os("SWITCHYARD_SLOW_TESTS").is_some() {
        SLOW_CASES
    } else {
        CASES
    }
}

/// The runner's settings; failing inputs are kept beside this file (the committed corpus).
fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/proptest-regressions/fuzz_wal.txt"
            )),
        )),
        ..Config::default()
    }
}

fn wal_config(dir: &Path) -> WalConfig {
    let mut config = WalConfig::new(dir.join("wal"));
    config.segment_bytes_max = 4096;
    config.preallocate = false;
    config.record_bytes_max = 16 * 1024;
    config
}

type Records = Vec<(u64, Vec<u8>)>;

/// Opens the log; `Ok` with what it replayed, or the error. Panics propagate (the test fails).
fn recover(config: &WalConfig) -> Result<Records, Error> {
    let mut replayed = Vec::new();
    let (wal, report) = Wal::open(config.clone(), 0, |lsn, payload| {
        replayed.push((lsn, payload.to_vec()));
        Ok(())
    })?;
    assert_eq!(report.last_lsn, replayed.last().map_or(0, |(lsn, _)| *lsn));
    // A recovered log takes new records after what it kept, and keeps them.
    let next = wal.append(b"after recovery".to_vec())?;
    assert_eq!(next, report.last_lsn + 1);
    wal.wait_durable_blocking(next)?;
    wal.close()?;
    Ok(replayed)
}

#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, mask: u8 },
    ZeroPage { at: usize },
    Truncate { at: usize },
    Splice { at: usize, garbage: Vec<u8> },
    DeleteSegment,
    CopySegment { to_lsn: u64 },
}

fn edit() -> impl Strategy<Value = (usize, Edit)> {
    let position = any::<usize>();
    let kind = prop_oneof![
        (position, 1u8..=255).prop_map(|(at, mask)| Edit::Flip { at, mask }),
        position.prop_map(|at| Edit::ZeroPage { at }),
        position.prop_map(|at| Edit::Truncate { at }),
        (position, prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, garbage)| Edit::Splice { at, garbage }),
        Just(Edit::DeleteSegment),
        (1u64..200).prop_map(|to_lsn| Edit::CopySegment { to_lsn }),
    ];
    (any::<usize>(), kind)
}

fn apply(dir: &Path, segment: usize, edit: &Edit) {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    if files.is_empty() {
        return;
    }
    let path = &files[segment % files.len()];
    let mut bytes = fs::read(path).unwrap();
    let len = bytes.len().max(1);
    match edit {
        Edit::Flip { at, mask } => {
            if !bytes.is_empty() {
                bytes[at % len] ^= mask;
            }
        }
        Edit::ZeroPage { at } => {
            let start = (at % len) / 4096 * 4096;
            let end = (start + 4096).min(bytes.len());
            bytes[start.min(end)..end].fill(0);
        }
        Edit::Truncate { at } => bytes.truncate(at % len),
        Edit::Splice { at, garbage } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, garbage.iter().copied());
        }
        Edit::DeleteSegment => {
            fs::remove_file(path).unwrap();
            return;
        }
        Edit::CopySegment { to_lsn } => {
            fs::write(dir.join(format!("{to_lsn:020}.log")), &bytes).unwrap();
            return;
        }
    }
    fs::write(path, &bytes).unwrap();
}

#[test]
fn wal_recovery_of_a_damaged_log_never_panics_and_keeps_only_a_written_prefix() {
    let strategy = (
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..700), 1..40),
        prop::collection::vec(edit(), 1..5),
    );
    let mut runner = TestRunner::new(config());
    runner
        .run(&strategy, |(payloads, edits)| {
            let dir = tempfile::tempdir().unwrap();
            let config = wal_config(dir.path());
            let (wal, _) = Wal::open(config.clone(), 0, |_, _| Ok(())).unwrap();
            let written: Records = payloads
                .iter()
                .map(|payload| (wal.append(payload.clone()).unwrap(), payload.clone()))
                .collect();
            wal.sync().unwrap();
            wal.close().unwrap();
            for (segment, edit) in &edits {
                apply(&config.dir, *segment, edit);
            }
            match recover(&config) {
                Ok(replayed) => {
                    prop_assert!(replayed.len() <= written.len());
                    prop_assert_eq!(&replayed[..], &written[..replayed.len()]);
                }
                Err(Error::Corruption { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error: {other}"),
            }
            Ok(())
        })
        .unwrap();
}

/// A valid segment header for `first_lsn` (the documented format), so noise after it is read
/// as records.
fn header(first_lsn: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    bytes[..8].copy_from_slice(b"SWYDWAL1");
    bytes[8..12].copy_from_slice(&switchyard_engine::codec::FORMAT_VERSION.to_le_bytes());
    bytes[12..16].copy_from_slice(&2u32.to_le_bytes());
    bytes[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn wal_recovery_of_noise_never_panics() {
    let file = (
        1u64..50,
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3000),
    );
    let strategy = prop::collection::vec(file, 1..4);
    let mut runner = TestRunner::new(config());
    runner
        .run(&strategy, |files| {
            let dir = tempfile::tempdir().unwrap();
            let config = wal_config(dir.path());
            fs::create_dir_all(&config.dir).unwrap();
            for (first_lsn, with_header, noise) in &files {
                let mut bytes = if *with_header {
                    header(*first_lsn)
                } else {
                    Vec::new()
                };
                bytes.extend_from_slice(noise);
                fs::write(config.dir.join(format!("{first_lsn:020}.log")), bytes).unwrap();
            }
            match recover(&config) {
                // Noise almost never forms a record; whatever was accepted is dense from 1.
                Ok(replayed) => {
                    for (index, (lsn, _)) in replayed.iter().enumerate() {
                        prop_assert_eq!(*lsn, index as u64 + 1);
                    }
                }
                Err(Error::Corruption { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error: {other}"),
            }
            Ok(())
        })
        .unwrap();
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
