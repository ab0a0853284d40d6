//! Checkpoint pass cost: the time of one `Engine::checkpoint()` pass that snapshots N dirty
//! counters (each a header, a value part and nothing else) into a store already holding
//! 100,000 counters, and flushes it. The dirtying adds are not timed.
//!
//! Estimate before measuring: a pass writes ~2 keys per actor plus one durable flush and the
//! meta record; at ~1–3 µs a key for a B-tree or log store, 10,000 actors ≈20–60 ms, 1,000
//! ≈2–6 ms plus two fsyncs (≈1 ms here).

use std::time::{Duration, Instant};
use switchyard_benches as _;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard_engine::{Durability, Engine, EngineConfig};

const COUNTERS: u64 = 100_000;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    // Passes run only when the bench asks.
    config.checkpoint_interval_ms = 24 * 3_600_000;
    config.passivate_after_ms = 24 * 3_600_000;
    config.durability = Durability::Batch;
    config.mailbox_depth_max = 1 << 20;
    config
}

/// Adds 1 to every counter in `ids`, 64 in flight, each acknowledged.
async fn add_all(engine: &Engine, ids: Vec<u64>) {
    let ids = std::sync::Arc::new(ids);
    let tasks: Vec<_> = (0..64usize)
        .map(|task| {
            let engine = engine.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut i = task;
                while i < ids.len() {
                    loop {
                        match engine.counters().add(ids[i], 1, None).await {
                            Ok(_) => break,
                            Err(switchyard_engine::Error::Overloaded(_)) => {
                                tokio::task::yield_now().await
                            }
                            Err(error) => panic!("{error}"),
                        }
                    }
                    i += 64;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(add_all(&engine, (0..COUNTERS).collect()));
    engine.checkpoint().unwrap();
    let mut group = c.benchmark_group("checkpoint_pass");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let mut round = 0u64;
    for dirty in [1_000u64, 10_000] {
        group.throughput(Throughput::Elements(dirty));
        group.bench_with_input(
            BenchmarkId::new("dirty_counters", dirty),
            &dirty,
            |b, dirty| {
                b.iter_custom(|n| {
                    let mut total = Duration::ZERO;
                    for _ in 0..n {
                        // A different spread of counters each round.
                        round += 1;
                        let stride = COUNTERS / dirty;
                        let ids = (0..*dirty).map(|i| i * stride + round % stride).collect();
                        runtime.block_on(add_all(&engine, ids));
                        let started = Instant::now();
                        let report = engine.checkpoint().unwrap();
                        total += started.elapsed();
                        assert_eq!(report.snapshots as u64, *dirty, "{report:?}");
                    }
                    total
                })
            },
        );
    }
    group.finish();
    engine.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
