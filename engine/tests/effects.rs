//! Effects after durability (the outbox), through the embedded API with the demo counters'
//! `demo.notify` effect and handlers that record what they are given: an effect runs only once
//! its record is durable, a failed attempt is retried when the (virtual) clock says so, a
//! durable effect not completed before a crash is handed out again after it (and a completed
//! one is not), and a full pipeline refuses new effects instead of dropping them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_engine::runtime::effects::{
    EffectContext, EffectHandler, EffectOutcome, EffectPool,
};
use switchyard_engine::runtime::outbox::Effect;
use switchyard_engine::store::DirLock;
use switchyard_engine::{demo, Engine, EngineConfig, Error, ManualClock, SharedClock};

/// Records every attempt; fails the first `failures` attempts of each effect with a retry.
#[derive(Default)]
struct Recorder {
    attempts: Mutex<Vec<(String, u32, i64)>>,
    failures: u32,
    retry_after_ms: u64,
    /// While set, attempts wait (a slow receiver).
    hold: Mutex<bool>,
}

impl EffectHandler for Recorder {
    fn run(&self, effect: &Effect, attempts: u32, _: &EffectContext<'_>) -> EffectOutcome {
        while *self.hold.lock().unwrap() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let notice = demo::DemoNotice::decode(&effect.payload).expect("a demo notice");
        self.attempts
            .lock()
            .unwrap()
            .push((effect.key.clone(), attempts, notice.value));
        if attempts < self.failures {
            EffectOutcome::Retry {
                after_ms: self.retry_after_ms,
                error: format!("attempt {attempts} failed"),
            }
        } else {
            EffectOutcome::Done
        }
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }
}

fn pool(recorder: &Arc<Recorder>, workers: usize, queue_depth_max: usize) -> EffectPool {
    EffectPool {
        kind: demo::NOTIFY_EFFECT.to_string(),
        handler: recorder.clone(),
        workers,
        queue_depth_max,
    }
}

fn open(config: &EngineConfig, clock: SharedClock, pools: Vec<EffectPool>) -> Engine {
    let lock = DirLock::acquire(&config.data_dir).unwrap();
    Engine::open_with_effects(config.clone(), lock, clock, pools).expect("engine opens")
}

/// Waits (bounded) until `condition` holds; the effects run on other threads.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until the pending effects satisfy `condition`; returns them.
async fn pending_until(
    engine: &Engine,
    condition: impl Fn(&[switchyard_engine::runtime::outbox::Pending]) -> bool,
) -> Vec<switchyard_engine::runtime::outbox::Pending> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = engine.pending_effects().await.unwrap();
        if condition(&pending) {
            return pending;
        }
        assert!(Instant::now() < deadline, "timed out: {pending:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_retried_when_the_virtual_clock_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut config = EngineConfig::for_tests(dir.path());
    config.effects_sweep_ms = 1_000;
    let recorder = Arc::new(Recorder {
        failures: 2,
        retry_after_ms: 5_000,
        ..Recorder::default()
    });
    let engine = open(
        &config,
        Arc::new(clock.clone()),
        vec![pool(&recorder, 1, 16)],
    );
    let view = engine
        .counters()
        .add_notify(1, 7, "http://example.invalid/".into())
        .await
        .unwrap();
    assert_eq!(view.value, 7);
    until("the first attempt", || recorder.count() == 1).await;
    // The worker records the failure right after the attempt.
    let pending = pending_until(&engine, |pending| {
        pending.first().is_some_and(|pending| pending.attempts == 1)
    })
    .await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].next_attempt_ms, 1_000_000 + 5_000);
    assert_eq!(pending[0].effect.key, "demo-counter-1-1");

    // A sweep before the retry is due hands nothing out.
    clock.advance_ms(1_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(recorder.count(), 1, "not due yet");
    clock.advance_ms(4_000);
    until("the second attempt", || recorder.count() == 2).await;
    clock.advance_ms(5_000);
    until("the third attempt", || recorder.count() == 3).await;
    pending_until(&engine, |pending| pending.is_empty()).await;
    let attempts = recorder.attempts.lock().unwrap().clone();
    let key = "demo-counter-1-1".to_string();
    assert_eq!(
        attempts,
        vec![(key.clone(), 0, 7), (key.clone(), 1, 7), (key, 2, 7)]
    );
    engine.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_effects_not_completed_are_handed_out_again_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::for_tests(dir.path());
    let clock: SharedClock = Arc::new(ManualClock::new(5_000_000));
    {
        // No pool: the effects are logged and stay pending. Then a crash (no shutdown).
        let engine = open(&config, clock.clone(), Vec::new());
        for id in 1..=5 {
            engine
                .counters()
                .add_notify(id, 1, "http://example.invalid/".into())
                .await
                .unwrap();
        }
        assert_eq!(engine.pending_effects().await.unwrap().len(), 5);
    }
    let recorder = Arc::new(Recorder::default());
    {
        let engine = open(&config, clock.clone(), vec![pool(&recorder, 2, 16)]);
        until("every pending effect handed out", || recorder.count() == 5).await;
        pending_until(&engine, |pending| pending.is_empty()).await;
        // Another crash, after the completions: nothing runs again.
    }
    let engine = open(&config, clock, vec![pool(&recorder, 2, 16)]);
    assert!(engine.pending_effects().await.unwrap().is_empty());
    engine
        .counters()
        .add_notify(9, 1, "x".into())
        .await
        .unwrap();
    until("the new effect", || recorder.count() == 6).await;
    let mut keys: Vec<String> = recorder
        .attempts
        .lock()
        .unwrap()
        .iter()
        .map(|(key, _, _)| key.clone())
        .collect();
    keys.sort();
    let mut expected: Vec<String> = (1..=5)
        .map(|id| format!("demo-counter-{id}-1"))
        .chain(["demo-counter-9-1".to_string()])
        .collect();
    expected.sort();
    assert_eq!(keys, expected, "each effect exactly once");
    engine.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_effect_pipeline_refuses_new_effects_and_drops_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::for_tests(dir.path());
    config.effects_queue_depth_max = 2;
    let recorder = Arc::new(Recorder::default());
    *recorder.hold.lock().unwrap() = true;
    let engine = open(
        &config,
        Arc::new(ManualClock::new(1)),
        vec![pool(&recorder, 1, 1)],
    );
    let acknowledged = AtomicUsize::new(0);
    let mut refused = false;
    for _ in 0..200 {
        match engine.counters().add_notify(1, 1, "x".into()).await {
            Ok(_) => {
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::Overloaded(what)) => {
                assert_eq!(what, "effect queue");
                refused = true;
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(refused, "a held pipeline must push back");
    let acknowledged = acknowledged.into_inner();
    assert_eq!(
        engine.counters().get(1).await.unwrap().value,
        acknowledged as i64,
        "the refused command changed nothing"
    );
    *recorder.hold.lock().unwrap() = false;
    until("every acknowledged effect", || {
        recorder.count() == acknowledged
    })
    .await;
    engine.shutdown().unwrap();
}
