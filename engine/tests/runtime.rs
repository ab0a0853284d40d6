//! The actor runtime through the embedded API, using the demonstration counters: replies are
//! durable, restarts keep every acknowledged change, checkpoints cover the log and remove
//! segments, events for two actors are atomic, passivation keeps state, and mailboxes are bounded.

use std::sync::Arc;

use switchyard_engine::{Engine, EngineConfig, Error, ManualClock};

fn open(dir: &std::path::Path) -> Engine {
    Engine::open(EngineConfig::for_tests(dir)).expect("engine opens")
}

#[tokio::test]
async fn acknowledged_adds_survive_restart_with_and_without_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path());
        for i in 1..=50 {
            let view = engine.counters().add(1, 1, Some(2)).await.unwrap();
            assert_eq!(view.value, i);
        }
        // Drop without shutdown: like a crash after the acknowledgements (the WAL is synced,
        // checkpoints may or may not have run).
        drop(engine);
    }
    let engine = open(dir.path());
    assert_eq!(engine.counters().get(1).await.unwrap().value, 50);
    assert_eq!(engine.counters().get(2).await.unwrap().mirrors[&1], 50);
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(dir.path());
    assert_eq!(engine.counters().get(1).await.unwrap().value, 50);
    assert_eq!(
        engine.recovery().records_replayed,
        0,
        "a clean shutdown checkpoints everything"
    );
}

#[tokio::test]
async fn checkpoints_cover_the_log_and_remove_segments() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    // ~256 KiB segments; write enough to roll several.
    let mut tasks = Vec::new();
    for writer in 0..8u64 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                engine
                    .counters()
                    .add(writer, 1, Some(100 + writer))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let segments_before = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    let report = engine.checkpoint().unwrap();
    assert!(report.coverage_lsn >= 4000, "{report:?}");
    let segments_after = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(
        segments_after < segments_before || segments_before == 1,
        "before {segments_before}, after {segments_after}"
    );
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(dir.path());
    for writer in 0..8u64 {
        assert_eq!(engine.counters().get(writer).await.unwrap().value, 500);
        assert_eq!(
            engine.counters().get(100 + writer).await.unwrap().mirrors[&writer],
            500
        );
    }
}

#[tokio::test]
async fn replay_is_idempotent_over_snapshots() {
    // Snapshots taken mid-run plus a WAL tail that overlaps them must give exact values.
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path());
        for round in 0..5 {
            for id in 0..20u64 {
                engine.counters().add(id, 1, Some(1000)).await.unwrap();
            }
            if round % 2 == 0 {
                engine.checkpoint().unwrap();
            }
        }
        drop(engine);
    }
    for _ in 0..2 {
        let engine = open(dir.path());
        for id in 0..20u64 {
            assert_eq!(engine.counters().get(id).await.unwrap().value, 5);
        }
        let mirrors = engine.counters().get(1000).await.unwrap().mirrors;
        assert_eq!(mirrors.len(), 20);
        assert!(mirrors.values().all(|value| *value == 5), "{mirrors:?}");
        drop(engine);
    }
}

#[tokio::test]
async fn idle_actors_passivate_and_come_back_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut config = EngineConfig::for_tests(dir.path());
    config.passivate_after_ms = 1_000;
    let engine = Engine::open_with_clock(config, Arc::new(clock.clone())).unwrap();
    for id in 0..10u64 {
        engine.counters().add(id, 3, None).await.unwrap();
    }
    assert_eq!(engine.active_actors(), 10);
    // Dirty actors never passivate: checkpoint first, then let time pass.
    engine.checkpoint().unwrap();
    clock.advance_ms(2_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.active_actors() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(engine.active_actors(), 0, "idle clean actors passivate");
    for id in 0..10u64 {
        assert_eq!(engine.counters().add(id, 1, None).await.unwrap().value, 4);
    }
}

#[tokio::test]
async fn a_full_mailbox_is_an_explicit_overload() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::for_tests(dir.path());
    config.mailbox_depth_max = 4;
    let engine = Engine::open(config).unwrap();
    // Fire many commands at one actor without awaiting: some must be refused as Overloaded,
    // and every accepted one must be applied exactly once.
    let futures: Vec<_> = (0..200)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.counters().add(7, 1, None).await })
        })
        .collect();
    let (mut accepted, mut overloaded) = (0, 0);
    for future in futures {
        match future.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(Error::Overloaded(_)) => overloaded += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(accepted + overloaded, 200);
    assert_eq!(engine.counters().get(7).await.unwrap().value, accepted);
}

#[test]
fn a_second_engine_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _engine = open(dir.path());
    match Engine::open(EngineConfig::for_tests(dir.path())) {
        Err(Error::Locked(path)) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("a second engine opened the same data dir"),
    }
}

#[tokio::test]
async fn durable_timers_fire_on_the_virtual_clock_and_survive_restart_and_passivation() {
    let dir = tempfile::tempdir().unwrap();
    let start_ms = 10_000_000;
    let clock = ManualClock::new(start_ms);
    let mut config = EngineConfig::for_tests(dir.path());
    config.passivate_after_ms = 1_000;
    // The background thread must not fire timers behind the test's back: make its tick long.
    config.timer_tick_ms = 3_600_000;
    {
        let engine = Engine::open_with_clock(config.clone(), Arc::new(clock.clone())).unwrap();
        engine
            .counters()
            .schedule(1, 10, start_ms + 5_000)
            .await
            .unwrap();
        engine
            .counters()
            .schedule(2, 20, start_ms + 60_000)
            .await
            .unwrap();
        assert_eq!(engine.timers_armed(), 2);
        assert_eq!(engine.fire_due_timers().await, 0, "nothing is due yet");
        clock.advance_ms(5_000);
        assert_eq!(engine.fire_due_timers().await, 1);
        assert_eq!(engine.counters().get(1).await.unwrap().value, 10);
        assert_eq!(engine.counters().get(2).await.unwrap().value, 0);
        assert_eq!(engine.timers_armed(), 1);
        // Crash (no shutdown): counter 2's deadline must come back from the log.
    }
    let engine = Engine::open_with_clock(config.clone(), Arc::new(clock.clone())).unwrap();
    assert_eq!(
        engine.timers_armed(),
        1,
        "the pending deadline is re-armed at start-up"
    );
    // Let counter 2 passivate, then fire: the timer re-activates it.
    engine.checkpoint().unwrap();
    clock.advance_ms(2_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.active_actors() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(engine.active_actors(), 0);
    clock.advance_ms(60_000);
    assert_eq!(engine.fire_due_timers().await, 1);
    let view = engine.counters().get(2).await.unwrap();
    assert_eq!((view.value, view.scheduled), (20, None));
    assert_eq!(
        engine.counters().get(1).await.unwrap().value,
        10,
        "fired once only"
    );
    assert_eq!(engine.timers_armed(), 0);
}

/// A logs a record (LSN x) carrying an event for L, and L runs a command of its own (LSN x + 1)
/// before it applies that event. A checkpoint pass that began before L turned dirty snapshots A
/// and computes coverage; it must not pass x, because L's snapshot does not reflect x yet. The
/// engine is then dropped without shutdown (a crash): on reopen L must still hold A's event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_queued_behind_a_later_own_command_survives_a_checkpoint_and_a_crash() {
    const A: u64 = 1;
    const L: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut config = EngineConfig::for_tests(dir.path());
        config.checkpoint_interval_ms = 3_600_000; // only the passes this test runs
        let engine = Engine::open(config).unwrap();
        engine.counters().add(L, 1, None).await.unwrap();
        engine.checkpoint().unwrap();
        // A is dirty (its hold is below x), L is clean.
        engine.counters().add(A, 1, None).await.unwrap();
        let (passed, pass) = tokio::sync::oneshot::channel();
        let on_shard = engine.clone();
        assert!(engine.spawn_on_shard(0, async move {
            // On the actor thread: no actor runs until this block returns. Queue A's command
            // (it logs x and then queues its event for L) and, before it, L's own command.
            on_shard.counters().add_one_way(A, 1, Some(L)).unwrap();
            on_shard.counters().add_one_way(L, 1, None).unwrap();
            // Start a pass now: it takes the dirty set {A} and waits for A's snapshot, which A
            // takes after its command (so the snapshot reflects x and A's hold is released).
            let engine = on_shard.clone();
            let thread = std::thread::spawn(move || engine.checkpoint());
            std::thread::sleep(std::time::Duration::from_millis(300));
            let _ = passed.send(thread);
        }));
        let thread = pass.await.unwrap();
        let report = tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.snapshots, 1, "the pass snapshots A only: {report:?}");
        let view = engine.counters().get(L).await.unwrap();
        assert_eq!((view.value, view.mirrors.get(&A)), (2, Some(&2)));
        drop(engine);
    }
    let engine = open(dir.path());
    let view = engine.counters().get(L).await.unwrap();
    assert_eq!(
        (view.value, view.mirrors.get(&A)),
        (2, Some(&2)),
        "L's event from A was lost"
    );
    assert_eq!(engine.counters().get(A).await.unwrap().value, 2);
}
