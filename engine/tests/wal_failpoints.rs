//! Fail-stop of the WAL, driven by the `wal.before_fdatasync` failpoint (crate feature
//! `failpoints`): when an fdatasync fails, the waiters of its batch get an error rather than an
//! acknowledgement, the WAL is poisoned for good (appends, sync and close fail, no retry), and a
//! reopen recovers from the files as they are.
//!
//! Run with `cargo test -p switchyard-engine --features failpoints wal`. Failpoints are
//! process-wide, so this file holds a single test (its own process).
#![cfg(feature = "failpoints")]

use switchyard_engine::config::WalConfig;
use switchyard_engine::error::Error;
use switchyard_engine::wal::{failpoints, Wal};

fn open(config: &WalConfig) -> (Wal, Vec<(u64, Vec<u8>)>) {
    let mut replayed = Vec::new();
    let (wal, _) = Wal::open(config.clone(), 0, |lsn, payload| {
        replayed.push((lsn, payload.to_vec()));
        Ok(())
    })
    .expect("open");
    (wal, replayed)
}

#[test]
fn wal_failed_fdatasync_poisons_and_fails_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path().join("wal"));
    let (wal, _) = open(&config);
    let first = wal.append(b"before".to_vec()).unwrap();
    wal.wait_durable_blocking(first).unwrap();
    let fsyncs_before = wal.stats().fsyncs;

    failpoints::arm(failpoints::BEFORE_FDATASYNC);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lsn = wal.append(b"lost ack".to_vec()).unwrap();
    let waited = runtime.block_on(wal.wait_durable(lsn));
    assert!(matches!(waited, Err(Error::Io { .. })), "{waited:?}");
    assert!(wal.is_poisoned());
    assert_eq!(
        wal.durable_lsn(),
        first,
        "durable_lsn never passes a failed fdatasync"
    );
    assert_eq!(wal.stats().fsyncs, fsyncs_before);

    let later = wal.append(b"after".to_vec());
    assert!(matches!(later, Err(Error::Io { .. })), "{later:?}");
    assert!(matches!(
        wal.wait_durable_blocking(lsn),
        Err(Error::Io { .. })
    ));
    assert!(matches!(wal.sync(), Err(Error::Io { .. })));
    let message = wal.close().unwrap_err().to_string();
    assert!(
        message.contains("poisoned") && message.contains("failpoint"),
        "{message}"
    );
    let mut metrics = String::new();
    wal.render_metrics(&mut metrics);
    assert!(metrics.contains("switchyard_wal_poisoned 1"), "{metrics}");
    drop(wal);

    // The write itself succeeded (only the fdatasync "failed"), so recovery finds the record;
    // a new WAL starts unpoisoned after it.
    let (wal, replayed) = open(&config);
    assert_eq!(
        replayed,
        vec![(1, b"before".to_vec()), (2, b"lost ack".to_vec())]
    );
    assert!(!wal.is_poisoned());
    let next = wal.append(b"again".to_vec()).unwrap();
    assert_eq!(next, 3);
    wal.wait_durable_blocking(next).unwrap();
    wal.close().unwrap();
}
