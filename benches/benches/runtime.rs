//! Actor messaging: Switchyard's runtime against raw actix on the same machine, same sitting.
//!
//! - `actor_ask/*`: request–reply round trips per second. Estimate before measuring: raw actix
//!   does ≈1.5M same-thread asks/s here; ours adds a directory lookup (striped mutex), a pending
//!   counter and a tokio oneshot per ask, so ≈0.8–1M/s same-thread; cross-thread asks pay a
//!   thread wake-up (60–80 µs to an idle thread) unless many are in flight, so they are measured
//!   with 64 in flight.
//! - `actor_tell/*`: one-way messages per second (≈7M/s raw actix; ours ≈3M/s).
//!
//! Target: within 2× of raw actix.

use std::time::{Duration, Instant};
use switchyard_benches as _;

use actix::{Actor, Context, Handler, Message};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_engine::{Engine, EngineConfig};

const MESSAGES: u64 = 100_000;

struct Ping;
impl Message for Ping {
    type Result = u64;
}

#[derive(Default)]
struct Raw {
    count: u64,
}
impl Actor for Raw {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(usize::MAX >> 8);
    }
}
impl Handler<Ping> for Raw {
    type Result = u64;
    fn handle(&mut self, _: Ping, _: &mut Self::Context) -> u64 {
        self.count += 1;
        self.count
    }
}

fn raw_actix(iterations: u64, one_way: bool) -> Duration {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let addr = Raw::default().start();
        let started = Instant::now();
        for _ in 0..iterations {
            if one_way {
                addr.do_send(Ping);
            } else {
                addr.send(Ping).await.unwrap();
            }
        }
        // One last round trip so every one-way message was handled.
        addr.send(Ping).await.unwrap();
        started.elapsed()
    })
}

fn open_engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.mailbox_depth_max = 1 << 20;
    let engine = Engine::open(config).unwrap();
    (dir, engine)
}

/// Asks (or tells) counter reads on the actor's own arbiter thread.
fn switchyard_same_thread(engine: &Engine, iterations: u64, one_way: bool) -> Duration {
    let (sender, receiver) = std::sync::mpsc::channel();
    let inner = engine.clone();
    assert!(engine.spawn_on_shard(0, async move {
        inner.counters().get(1).await.unwrap();
        let started = Instant::now();
        for _ in 0..iterations {
            if one_way {
                inner.counters().get_one_way(1).unwrap();
            } else {
                inner.counters().get(1).await.unwrap();
            }
        }
        inner.counters().get(1).await.unwrap();
        sender.send(started.elapsed()).unwrap();
    }));
    receiver.recv().unwrap()
}

/// Asks from another thread with 64 asks in flight.
fn switchyard_cross_thread(engine: &Engine, iterations: u64) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        engine.counters().get(1).await.unwrap();
        let started = Instant::now();
        let per_task = iterations / 64;
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        engine.counters().get(1).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        started.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let (_dir, engine) = open_engine();
    let mut group = c.benchmark_group("actor_ask");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(MESSAGES));
    group.bench_function("raw_actix_same_thread", |b| {
        b.iter_custom(|n| (0..n).map(|_| raw_actix(MESSAGES, false)).sum())
    });
    group.bench_function("switchyard_same_thread", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| switchyard_same_thread(&engine, MESSAGES, false))
                .sum()
        })
    });
    group.bench_function("switchyard_cross_thread_64_in_flight", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| switchyard_cross_thread(&engine, MESSAGES))
                .sum()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("actor_tell");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(MESSAGES));
    group.bench_function("raw_actix", |b| {
        b.iter_custom(|n| (0..n).map(|_| raw_actix(MESSAGES, true)).sum())
    });
    group.bench_function("switchyard", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| switchyard_same_thread(&engine, MESSAGES, true))
                .sum()
        })
    });
    group.finish();
    engine.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
