//! Recovery: time to open an engine whose WAL holds 1,000,000 small events not yet covered by
//! any checkpoint (events replayed per second).
//!
//! Estimate before measuring: reading + CRC of ~60 MB is ≈50 ms; decoding a record and applying
//! it to an in-memory counter ≈0.3–0.5 µs; so ≈2–3M events/s, i.e. ≈0.4 s for 1M, plus the final
//! snapshot of the 1,000 touched counters.

use std::time::{Duration, Instant};
use switchyard_benches as _;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_engine::{Durability, Engine, EngineConfig};

const EVENTS: u64 = 1_000_000;
const COUNTERS: u64 = 1_000;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    // Nothing is checkpointed while writing, so the whole log is replayed at open.
    config.checkpoint_interval_ms = 24 * 3_600_000;
    config.durability = Durability::Batch;
    config.mailbox_depth_max = 1 << 20;
    config
}

/// Writes EVENTS adds over COUNTERS counters, then drops the engine without a checkpoint.
fn prepare() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Acknowledged adds (batch durability acknowledges at once), 64 in flight, so the log holds
    // exactly EVENTS records: a one-way send that met a full WAL queue would vanish silently.
    runtime.block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|task| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let mut i = task;
                    while i < EVENTS {
                        loop {
                            match engine.counters().add(i % COUNTERS, 1, None).await {
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
    });
    drop(engine);
    dir
}

fn bench(c: &mut Criterion) {
    let dir = prepare();
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("replay_events_1m", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                // Each open checkpoints what it replayed; copy the prepared state so every
                // iteration replays the full log.
                let copy = tempfile::Builder::new()
                    .prefix("switchyard-bench")
                    .tempdir_in("/var/tmp")
                    .unwrap();
                copy_dir(dir.path(), copy.path());
                let started = Instant::now();
                let engine = Engine::open(config(copy.path())).unwrap();
                total += started.elapsed();
                let info = engine.recovery().clone();
                assert_eq!(info.records_replayed, EVENTS, "{info:?}");
                engine.shutdown().unwrap();
            }
            total
        })
    });
    group.finish();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
