//! Recovery against a checkpoint store and a log that disagree (issue 11): a WAL that ends below
//! what checkpointed snapshots already reflect (a disk that lost written data, a truncated log) is
//! refused, naming both LSNs, and when an operator accepts the loss, no LSN a snapshot reflects
//! is ever assigned again; a checkpoint store restored from an older copy under a newer WAL
//! recovers correctly when the log still covers it and is refused when it does not.
//!
//! The checkpoint store is driven through the engine, and tampered with only through its public
//! `Store` API (to hold coverage back, as a pass racing a dirty actor leaves it).

use std::path::{Path, PathBuf};

use switchyard_engine::store::Store;
use switchyard_engine::{Engine, EngineConfig, Error};

const SEGMENT_HEADER_BYTES: usize = 32;
const RECORD_HEADER_BYTES: usize = 24;

fn config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::for_tests(dir);
    config.checkpoint_interval_ms = 3_600_000;
    config.wal_segment_bytes_max = 64 * 1024;
    config
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// (start, end) of every record in a segment, from the documented framing.
fn record_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset + RECORD_HEADER_BYTES <= bytes.len() {
        let length = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if length == 0 {
            break;
        }
        let end = offset + RECORD_HEADER_BYTES + length;
        spans.push((offset, end));
        offset = end;
    }
    spans
}

/// Counter 1 gets lsns 1..=10, counter 2 lsn 11; a clean shutdown snapshots both (so the store
/// reflects lsn 11). Coverage is then set back to 5, as a pass that raced a dirty actor leaves
/// it, and the log is cut: the first `keep` records survive, and with `mid_record` half of the
/// next one too.
async fn lose_the_log_tail(dir: &Path, keep: usize, mid_record: bool) {
    let engine = Engine::open(config(dir)).unwrap();
    for _ in 0..10 {
        engine.counters().add(1, 1, None).await.unwrap();
    }
    engine.counters().add(2, 1, None).await.unwrap();
    engine.shutdown().unwrap();
    drop(engine);
    {
        let store = Store::open(dir, 1 << 20).unwrap();
        assert_eq!(store.snapshot_lsn_max(), 11);
        store.write_meta(5).unwrap();
    }
    let files = segments(dir);
    assert_eq!(files.len(), 1, "one segment holds lsns 1..=11");
    let bytes = std::fs::read(&files[0]).unwrap();
    let spans = record_spans(&bytes);
    assert_eq!(spans.len(), 11);
    let cut = if mid_record {
        (spans[keep].0 + spans[keep].1) / 2
    } else {
        spans[keep - 1].1
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap();
    file.set_len(cut as u64).unwrap();
}

fn refusal(result: Result<Engine, Error>) -> String {
    match result {
        Err(error @ Error::Corruption { .. }) => error.to_string(),
        Err(other) => panic!("expected a corruption refusal, got {other}"),
        Ok(_) => panic!("expected a corruption refusal, the engine opened"),
    }
}

#[tokio::test]
async fn a_log_that_ends_below_the_snapshots_is_refused_naming_both_lsns() {
    let dir = tempfile::tempdir().unwrap();
    lose_the_log_tail(dir.path(), 7, false).await;
    let message = refusal(Engine::open(config(dir.path())));
    assert!(
        message.contains("ends at lsn 7") && message.contains("up to 11"),
        "{message}"
    );
    assert!(
        message.contains("engine.recovery_accept_wal_loss"),
        "says what to do: {message}"
    );
    // Refusing changed nothing: the same answer again.
    assert_eq!(refusal(Engine::open(config(dir.path()))), message);
}

#[tokio::test]
async fn damage_at_an_lsn_the_snapshots_reflect_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    lose_the_log_tail(dir.path(), 7, true).await;
    let message = refusal(Engine::open(config(dir.path())));
    assert!(
        message.contains("lsn 8 was durable") && message.contains("up to 11"),
        "{message}"
    );
}

/// Before the fix, the engine started at lsn 8 here: counter 2's next add got an lsn its
/// snapshot (lsn 11) already covered, was skipped at the next replay, and was lost.
#[tokio::test]
async fn an_accepted_loss_starts_above_the_snapshots_so_new_writes_are_never_skipped() {
    // Before the fix a read also hung here, waiting for an lsn the log would reach only later.
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        accepted_loss_starts_above_the_snapshots(),
    )
    .await
    .expect("no read waits for an lsn the log no longer has");
}

async fn accepted_loss_starts_above_the_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    lose_the_log_tail(dir.path(), 7, true).await;
    let mut accepting = config(dir.path());
    accepting.recovery_accept_wal_loss = true;
    {
        let engine = Engine::open(accepting.clone()).unwrap();
        assert_eq!(engine.counters().get(1).await.unwrap().value, 10);
        assert_eq!(engine.counters().get(2).await.unwrap().value, 1);
        assert_eq!(engine.counters().add(2, 1, None).await.unwrap().value, 2);
        // A crash: the add is only in the WAL.
    }
    for config in [accepting, config(dir.path())] {
        let engine = Engine::open(config).unwrap();
        assert_eq!(engine.counters().get(2).await.unwrap().value, 2);
        assert_eq!(engine.counters().get(1).await.unwrap().value, 10);
        engine.shutdown().unwrap();
    }
}

/// The checkpoint store's file in a data dir.
fn checkpoint(dir: &Path) -> PathBuf {
    dir.join(switchyard_engine::store::FILE_NAME)
}

fn save_checkpoint(dir: &Path, backup: &Path) {
    std::fs::copy(checkpoint(dir), backup.join("copy")).unwrap();
}

fn restore_checkpoint(backup: &Path, dir: &Path) {
    std::fs::copy(backup.join("copy"), checkpoint(dir)).unwrap();
}

async fn add_many(engine: &Engine, count: u64) {
    let mut tasks = Vec::new();
    for writer in 0..8u64 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..count / 8 {
                engine.counters().add(writer, 1, Some(100)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// An older checkpoint store copy under a WAL that still holds everything after that copy's coverage:
/// replay brings every actor forward, exactly.
#[tokio::test]
async fn an_older_checkpoint_copy_recovers_from_a_log_that_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    add_many(&engine, 80).await;
    engine.shutdown().unwrap();
    drop(engine);
    save_checkpoint(dir.path(), backup.path());
    let engine = Engine::open(config(dir.path())).unwrap();
    add_many(&engine, 160).await;
    assert!(
        segments(dir.path()).len() >= 2,
        "the log still holds both phases"
    );
    engine.shutdown().unwrap();
    drop(engine);

    restore_checkpoint(backup.path(), dir.path());
    let engine = Engine::open(config(dir.path())).unwrap();
    assert!(engine.recovery().records_replayed >= 160);
    for writer in 0..8 {
        assert_eq!(engine.counters().get(writer).await.unwrap().value, 30);
    }
    let mirrors = engine.counters().get(100).await.unwrap().mirrors;
    assert_eq!(mirrors.len(), 8);
    assert!(mirrors.values().all(|value| *value == 30), "{mirrors:?}");
}

/// An older checkpoint store copy under a WAL whose segments after that copy's coverage were removed (later
/// checkpoints covered them): the records it needs are gone, and start-up refuses.
#[tokio::test]
async fn an_older_checkpoint_copy_whose_log_was_removed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    add_many(&engine, 80).await;
    engine.shutdown().unwrap();
    drop(engine);
    save_checkpoint(dir.path(), backup.path());
    let engine = Engine::open(config(dir.path())).unwrap();
    add_many(&engine, 4_000).await;
    let report = engine.checkpoint().unwrap();
    assert!(report.segments_removed >= 1, "{report:?}");
    engine.shutdown().unwrap();
    drop(engine);

    restore_checkpoint(backup.path(), dir.path());
    let message = refusal(Engine::open(config(dir.path())));
    assert!(message.contains("are missing"), "{message}");
}
