//! Failpoints on every step of the write path (crate feature `failpoints`, on for tests): each
//! case fails one exact step while writers run and checks the two promises of the durability
//! contract:
//! - nothing acknowledged is lost: after a reopen every counter holds at least its acknowledged
//!   adds and at most those plus the adds that got an error (whose fate is unknown to a caller);
//! - the engine either keeps working (and then no add failed and every read is exact) or refuses
//!   loudly: not ready, a fault reason, `Error::Stopped` for every later command, no further
//!   checkpoint, and `shutdown` reports it. Never a silent divergence.
//!
//! Also here, each with a test that fails without its fix (issue 11): a checkpoint pass after a
//! failed one no longer writes a snapshot that lacks the failed pass's parts; an event whose
//! receiver cannot be activated fails its command and stops the engine instead of being
//! acknowledged unapplied; a timer whose actor cannot be activated is retried.
//!
//! Failpoints are process-wide: every test here holds a `Scenario` (one at a time), and no other
//! test binary arms them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_engine::failpoints::{self, Scenario};
use switchyard_engine::{Engine, EngineConfig, Error, ManualClock};

const WRITERS: u64 = 8;
/// Adds before the point is armed (acknowledged, then checkpointed).
const ADDS_BEFORE: u64 = 40;
/// Adds per writer once armed: about three 64 KiB segments in all, so rolls happen.
const ADDS_ARMED: u64 = 500;

fn config(dir: &Path, preallocate: bool) -> EngineConfig {
    let mut config = EngineConfig::for_tests(dir);
    config.wal_segment_bytes_max = 64 * 1024;
    config.wal_preallocate = preallocate;
    // Only the test runs passes.
    config.checkpoint_interval_ms = 3_600_000;
    config
}

/// Per counter: adds acknowledged, and adds that got an error.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    acked: i64,
    failed: i64,
}

/// Every writer adds 1 to its own counter `count` times, stopping at its first error.
async fn write(engine: &Engine, count: u64, tallies: &mut BTreeMap<u64, Tally>) {
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for _ in 0..count {
                match engine.counters().add(writer, 1, None).await {
                    Ok(_) => tally.acked += 1,
                    Err(_) => {
                        tally.failed += 1;
                        break;
                    }
                }
            }
            (writer, tally)
        }));
    }
    for task in tasks {
        let (writer, tally) = task.await.unwrap();
        let entry = tallies.entry(writer).or_default();
        entry.acked += tally.acked;
        entry.failed += tally.failed;
    }
}

fn assert_stopped_loudly(engine: &Engine, point: &str) {
    assert!(!engine.is_ready(), "{point}: a stopped engine is not ready");
    let reason = engine.fault().expect("a stopped engine names its fault");
    assert!(!reason.is_empty(), "{point}");
    assert!(
        engine.checkpoint().is_err(),
        "{point}: no pass runs after a fault"
    );
}

async fn assert_refuses_commands(engine: &Engine, point: &str) {
    match engine.counters().add(999, 1, None).await {
        Err(Error::Stopped(_)) => {}
        other => panic!("{point}: a stopped engine must refuse commands, got {other:?}"),
    }
    match engine.counters().get(0).await {
        Err(Error::Stopped(_)) => {}
        other => panic!("{point}: reads are refused too, got {other:?}"),
    }
}

/// Reopens without failpoints and checks every counter against its tally.
async fn assert_nothing_acknowledged_lost(dir: &Path, tallies: &BTreeMap<u64, Tally>, what: &str) {
    for round in 0..2 {
        let engine = Engine::open(config(dir, false)).expect("reopens after the fault");
        assert!(engine.is_ready(), "{what}");
        for (id, tally) in tallies {
            let value = engine.counters().get(*id).await.unwrap().value;
            assert!(
                tally.acked <= value && value <= tally.acked + tally.failed,
                "{what} (reopen {round}): counter {id} is {value}, acknowledged {}, failed {}",
                tally.acked,
                tally.failed
            );
        }
        engine.shutdown().unwrap();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Writers run (rolls included) while the point is armed.
    Writes,
    /// Writers run, then a checkpoint pass, while the point is armed.
    Checkpoint,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Stops,
    KeepsWorking,
}

struct Case {
    point: &'static str,
    action: &'static str,
    preallocate: bool,
    step: Step,
    outcome: Outcome,
}

const fn case(
    point: &'static str,
    action: &'static str,
    preallocate: bool,
    step: Step,
    outcome: Outcome,
) -> Case {
    Case {
        point,
        action,
        preallocate,
        step,
        outcome,
    }
}

use Outcome::{KeepsWorking, Stops};
use Step::{Checkpoint, Writes};

/// The table. `store.read` and `engine.open_checkpoint` have tests of their own below.
const CASES: &[Case] = &[
    case(failpoints::WAL_PWRITE, "return(eio)", true, Writes, Stops),
    case(
        failpoints::WAL_PWRITE,
        "return(enospc)",
        true,
        Writes,
        Stops,
    ),
    case(
        failpoints::WAL_PWRITE,
        "return(short)",
        false,
        Writes,
        Stops,
    ),
    case(
        failpoints::WAL_FDATASYNC,
        "return(eio)",
        true,
        Writes,
        Stops,
    ),
    case(
        failpoints::WAL_SEGMENT_CREATE,
        "return(enospc)",
        false,
        Writes,
        Stops,
    ),
    // A failed preparation only costs the zero-filled segment: the roll falls back.
    case(
        failpoints::WAL_PREPARE,
        "return(enospc)",
        true,
        Writes,
        KeepsWorking,
    ),
    case(failpoints::WAL_ADOPT, "return(eio)", true, Writes, Stops),
    case(failpoints::WAL_RENAME, "return(eio)", true, Writes, Stops),
    case(
        failpoints::WAL_DIR_FSYNC,
        "return(eio)",
        false,
        Writes,
        Stops,
    ),
    // A covered segment that cannot be removed stays; the next pass tries again.
    case(
        failpoints::WAL_SEGMENT_REMOVE,
        "return(eio)",
        false,
        Checkpoint,
        KeepsWorking,
    ),
    case(
        failpoints::STORE_APPLY,
        "return(eio)",
        false,
        Checkpoint,
        Stops,
    ),
    case(
        failpoints::STORE_FLUSH,
        "return(eio)",
        false,
        Checkpoint,
        Stops,
    ),
    case(
        failpoints::STORE_META_WRITE,
        "return(enospc)",
        false,
        Checkpoint,
        Stops,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_failpoint_loses_nothing_and_keeps_working_or_stops_loudly() {
    let covered: Vec<&str> = CASES.iter().map(|case| case.point).collect();
    for point in failpoints::ALL {
        assert!(
            covered.contains(point)
                || [failpoints::STORE_READ, failpoints::OPEN_CHECKPOINT].contains(point),
            "failpoint {point} has no case"
        );
    }
    for case in CASES {
        let what = format!("{} = {}", case.point, case.action);
        let scenario = Scenario::new();
        let dir = tempfile::tempdir().unwrap();
        let mut tallies = BTreeMap::new();
        let engine = Engine::open(config(dir.path(), case.preallocate)).unwrap();
        write(&engine, ADDS_BEFORE, &mut tallies).await;
        engine.checkpoint().unwrap();
        let segments_before = segment_count(dir.path());
        let prepared_before = prepared_segments(&engine);

        failpoints::set(case.point, case.action).unwrap();
        write(&engine, ADDS_ARMED, &mut tallies).await;
        let pass = match case.step {
            Checkpoint => Some(engine.checkpoint()),
            Writes => None,
        };
        failpoints::clear(case.point);

        match case.outcome {
            Stops => {
                assert_stopped_loudly(&engine, &what);
                assert_refuses_commands(&engine, &what).await;
                if let Some(pass) = pass {
                    assert!(pass.is_err(), "{what}: the pass reports its failure");
                }
                assert!(engine.shutdown().is_err(), "{what}: shutdown reports it");
            }
            KeepsWorking => {
                assert!(engine.is_ready(), "{what}: {:?}", engine.fault());
                for (id, tally) in &tallies {
                    assert_eq!(tally.failed, 0, "{what}: counter {id}");
                    let value = engine.counters().get(*id).await.unwrap().value;
                    assert_eq!(value, tally.acked, "{what}: counter {id}");
                }
                if case.point == failpoints::WAL_PREPARE {
                    // One segment may have been prepared before the point was armed; every
                    // later roll fell back to fallocate.
                    let rolls = segment_count(dir.path()) - segments_before;
                    let prepared = prepared_segments(&engine) - prepared_before;
                    assert!(rolls >= 2, "{what}: {rolls} rolls");
                    assert!(
                        prepared <= 1,
                        "{what}: {prepared} of {rolls} rolls prepared"
                    );
                }
                if case.point == failpoints::WAL_SEGMENT_REMOVE {
                    let kept = segment_count(dir.path());
                    assert!(kept >= 2, "{what}: the covered segments stayed ({kept})");
                    engine.checkpoint().unwrap();
                    assert_eq!(
                        segment_count(dir.path()),
                        1,
                        "{what}: the next pass removes them"
                    );
                }
                write(&engine, 10, &mut tallies).await;
                engine.shutdown().unwrap();
            }
        }
        drop(engine);
        assert_nothing_acknowledged_lost(dir.path(), &tallies, &what).await;
        drop(scenario);
    }
}

fn prepared_segments(engine: &Engine) -> usize {
    let mut metrics = String::new();
    engine.render_metrics(&mut metrics);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("switchyard_wal_prepared_segments_total "))
        .expect("the prepared-segments counter")
        .parse()
        .unwrap()
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

/// Issue 11, defect 1: a pass whose sled write fails has already taken the actor's changed
/// parts; before the fix, a later pass (here `shutdown`'s) wrote a newer snapshot header without
/// them, and the reopened counter was 0 with the add's record replayed but skipped.
#[tokio::test]
async fn a_pass_after_a_failed_pass_never_writes_a_snapshot_without_its_parts() {
    let _scenario = Scenario::new();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), false)).unwrap();
    assert_eq!(engine.counters().add(1, 5, None).await.unwrap().value, 5);
    failpoints::set(failpoints::STORE_APPLY, "1*return(eio)").unwrap();
    assert!(engine.checkpoint().is_err(), "the armed pass fails");
    // Another part of the same actor: refused now, where it used to be acknowledged and then
    // snapshotted without the value part.
    let scheduled = engine.counters().schedule(1, 1, u64::MAX).await;
    assert!(matches!(scheduled, Err(Error::Stopped(_))), "{scheduled:?}");
    assert!(!engine.is_ready());
    assert!(engine.checkpoint().is_err(), "no pass after a failed one");
    assert!(
        engine.shutdown().is_err(),
        "the final pass is skipped and reported"
    );
    drop(engine);
    let engine = Engine::open(config(dir.path(), false)).unwrap();
    assert_eq!(engine.counters().get(1).await.unwrap().value, 5);
    engine.shutdown().unwrap();
}

/// Issue 11, defect 5: an event for another actor whose snapshot cannot be read used to be
/// acknowledged although the running receiver never applied it (and its hold was never
/// released). Now the command fails and the engine stops; the durable event is applied on
/// restart.
#[tokio::test]
async fn an_event_that_cannot_reach_its_actor_fails_the_command_and_stops_the_engine() {
    let _scenario = Scenario::new();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), false)).unwrap();
    engine.counters().add(1, 2, None).await.unwrap();
    // Counter 1 is active; counter 2 is not, so the mirror must activate it (one read, failed).
    failpoints::set(failpoints::STORE_READ, "1*return(eio)").unwrap();
    let mirrored = engine.counters().add(1, 3, Some(2)).await;
    assert!(matches!(mirrored, Err(Error::Stopped(_))), "{mirrored:?}");
    assert_stopped_loudly(&engine, "undelivered event");
    assert_refuses_commands(&engine, "undelivered event").await;
    drop(engine);
    let engine = Engine::open(config(dir.path(), false)).unwrap();
    assert_eq!(engine.counters().get(1).await.unwrap().value, 5);
    assert_eq!(engine.counters().get(2).await.unwrap().mirrors[&1], 5);
    engine.shutdown().unwrap();
}

/// A command whose own actor cannot be activated fails (500 over HTTP); nothing changed, the
/// engine keeps working, and the next command activates it.
#[tokio::test]
async fn a_failed_activation_fails_only_that_command() {
    let _scenario = Scenario::new();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), false)).unwrap();
    failpoints::set(failpoints::STORE_READ, "1*return(eio)").unwrap();
    let failed = engine.counters().add(7, 1, None).await;
    assert!(matches!(failed, Err(Error::Store(_))), "{failed:?}");
    assert!(engine.is_ready());
    assert_eq!(engine.counters().add(7, 1, None).await.unwrap().value, 1);
    engine.shutdown().unwrap();
    drop(engine);
    let engine = Engine::open(config(dir.path(), false)).unwrap();
    assert_eq!(engine.counters().get(7).await.unwrap().value, 1);
}

/// Issue 11, defect 5 (timers): a due timer whose actor cannot be activated used to be dropped
/// from the index until a restart (a lease that never expires). It is retried.
#[tokio::test]
async fn a_timer_whose_actor_cannot_be_activated_fires_once_it_can() {
    let _scenario = Scenario::new();
    let dir = tempfile::tempdir().unwrap();
    let start_ms = 50_000_000;
    let clock = ManualClock::new(start_ms);
    let mut config = config(dir.path(), false);
    config.passivate_after_ms = 1_000;
    config.timer_tick_ms = 3_600_000;
    let engine = Engine::open_with_clock(config, Arc::new(clock.clone())).unwrap();
    engine
        .counters()
        .schedule(3, 10, start_ms + 5_000)
        .await
        .unwrap();
    engine.checkpoint().unwrap();
    clock.advance_ms(2_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.active_actors() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.active_actors(), 0, "the counter passivated");

    failpoints::set(failpoints::STORE_READ, "1*return(eio)").unwrap();
    clock.advance_ms(5_000);
    assert_eq!(engine.fire_due_timers().await, 1, "due, but not runnable");
    assert_eq!(engine.timers_armed(), 1, "re-armed for a retry");
    assert_eq!(
        engine.fire_due_timers().await,
        0,
        "the retry waits its delay"
    );
    clock.advance_ms(1_000);
    assert_eq!(engine.fire_due_timers().await, 1);
    let view = engine.counters().get(3).await.unwrap();
    assert_eq!((view.value, view.scheduled), (10, None));
    assert_eq!(engine.timers_armed(), 0);
    assert!(engine.is_ready());
    engine.shutdown().unwrap();
}

/// The checkpoint `open` takes of what it replayed: a failure refuses to start and changes
/// nothing; the next open recovers everything.
#[tokio::test]
async fn a_failed_open_checkpoint_refuses_to_start_and_loses_nothing() {
    let _scenario = Scenario::new();
    let dir = tempfile::tempdir().unwrap();
    let mut tallies = BTreeMap::new();
    {
        let engine = Engine::open(config(dir.path(), false)).unwrap();
        write(&engine, ADDS_BEFORE, &mut tallies).await;
        // A crash: the adds are only in the WAL.
    }
    failpoints::set(failpoints::OPEN_CHECKPOINT, "1*return(eio)").unwrap();
    match Engine::open(config(dir.path(), false)) {
        Err(Error::Store(message)) => assert!(message.contains("failpoint"), "{message}"),
        Err(other) => panic!("expected the open checkpoint's error, got {other}"),
        Ok(_) => panic!("open must refuse when its checkpoint fails"),
    }
    assert_nothing_acknowledged_lost(dir.path(), &tallies, "open checkpoint").await;
}

/// The WAL on its own: a failed fdatasync fails every waiter of its batch, poisons the WAL for
/// good (appends, sync and close fail, no retry), and a reopen recovers from the files as they
/// are (the write itself reached the file).
#[test]
fn wal_failed_fdatasync_poisons_and_fails_every_waiter() {
    use switchyard_engine::config::WalConfig;
    use switchyard_engine::wal::Wal;
    let _scenario = Scenario::new();
    let open = |config: &WalConfig| {
        let mut replayed = Vec::new();
        let (wal, _) = Wal::open(config.clone(), 0, |lsn, payload| {
            replayed.push((lsn, payload.to_vec()));
            Ok(())
        })
        .expect("open");
        (wal, replayed)
    };
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path().join("wal"));
    let (wal, _) = open(&config);
    let first = wal.append(b"before".to_vec()).unwrap();
    wal.wait_durable_blocking(first).unwrap();
    let fsyncs_before = wal.stats().fsyncs;

    failpoints::set(failpoints::WAL_FDATASYNC, "1*return(eio)").unwrap();
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

/// Issue 11, weaker spot 6: the poison after a failed fdatasync used to be published only once
/// the segment-preparation thread was joined, so a stuck preparation kept every waiter waiting.
/// Here the preparation is paused (a hung disk) while the fdatasync fails: the waiter must get
/// its error at once, and the WAL still closes once the preparation ends.
#[test]
fn a_stuck_segment_preparation_does_not_delay_failing_the_waiters() {
    use switchyard_engine::config::WalConfig;
    use switchyard_engine::wal::Wal;
    let _scenario = Scenario::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path().join("wal"));
    config.segment_bytes_max = 1 << 20;
    config.preallocate = true;
    failpoints::set(failpoints::WAL_PREPARE, "pause").unwrap();
    failpoints::set(failpoints::WAL_FDATASYNC, "return(eio)").unwrap();
    let (wal, _) = Wal::open(config, 0, |_, _| Ok(())).unwrap();
    // The first record opens a segment, which starts the (now paused) preparation of the next.
    let lsn = wal.append(b"never acknowledged".to_vec()).unwrap();
    let (done, outcome) = std::sync::mpsc::channel();
    let waiter = {
        let wal = wal.clone();
        std::thread::spawn(move || done.send(wal.wait_durable_blocking(lsn)).unwrap())
    };
    let waited = outcome.recv_timeout(Duration::from_secs(10));
    // Unpause the preparation whatever happened, so nothing is left hanging.
    failpoints::clear(failpoints::WAL_PREPARE);
    let waited = waited.expect("the waiter is failed while the preparation is still stuck");
    assert!(matches!(waited, Err(Error::Io { .. })), "{waited:?}");
    waiter.join().unwrap();
    assert!(wal.close().is_err(), "closing reports the poison");
}
