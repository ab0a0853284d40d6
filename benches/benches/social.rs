//! Embedded social throughput: likes/s and posts/s through `Engine::social()`, sync durability,
//! 64 concurrent callers (tokio tasks on one thread; the actors run on the engine's arbiter).
//!
//! Estimate before measuring: with group commit a batch holds up to the 64 in-flight commands,
//! fdatasync ≈0.14–0.25 ms, so the disk allows ≈250k–450k acknowledged likes/s; the CPU cost per
//! like (3 actors: author, liker, post index; one WAL record) ≈5–10 µs on one core → ≈100–200k/s.
//! Target: ≥5× Redis's durable like (≈31.7k/s at 64 clients) ⇒ ≥160k likes/s.

use std::time::{Duration, Instant};
use switchyard_benches as _;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_engine::social::{SignUp, SocialConfig};
use switchyard_engine::{Engine, EngineConfig};

const CALLERS: u64 = 64;
const USERS: u64 = 2_000;
const PER_CALLER: u64 = 500;

fn open_engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut config = EngineConfig::new(dir.path());
    *config.section_mut::<SocialConfig>() = SocialConfig::for_tests();
    config.mailbox_depth_max = 1 << 16;
    let engine = Engine::open(config).unwrap();
    (dir, engine)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One caller's share of a like round: likes (`on`) or unlikes its PER_CALLER pairs. Like number
/// n: liker n % USERS + 1 likes the post of the user k + 1 places after it (k = n / USERS < 16),
/// so every pair in a round is distinct and never its own.
async fn caller_round(engine: Engine, posts: Vec<u64>, caller: u64, on: bool) {
    let social = engine.social();
    for i in 0..PER_CALLER {
        let n = caller * PER_CALLER + i;
        let liker = n % USERS + 1;
        let k = n / USERS;
        let post = posts[((liker + k) % USERS) as usize];
        if on {
            social.like(liker, post).await.unwrap();
        } else {
            social.unlike(liker, post).await.unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let (_dir, engine) = open_engine();
    let runtime = runtime();
    // Users 1..=USERS, each with one post; like pairs are fresh every iteration (a like of a new
    // post by each caller's next liker), so no like is ever a conflict.
    let posts: Vec<u64> = runtime.block_on(async {
        let mut posts = Vec::new();
        for i in 0..USERS {
            let user = engine
                .social()
                .sign_up(SignUp {
                    email: format!("bench{i}@example.com"),
                    password: "password123".into(),
                    full_name: None,
                    enrichment: None,
                })
                .await
                .unwrap();
            posts.push(
                engine
                    .social()
                    .create_post(user.id, "bench".into())
                    .await
                    .unwrap()
                    .id,
            );
        }
        posts
    });
    let mut group = c.benchmark_group("social_embedded");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(CALLERS * PER_CALLER));
    let mut round = 0u64;
    group.bench_function("likes_sync_callers_64", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                round += 1;
                // Each round likes then unlikes, so every round starts from the same state.
                for on in [true, false] {
                    let started = Instant::now();
                    runtime.block_on(async {
                        let tasks: Vec<_> = (0..CALLERS)
                            .map(|caller| {
                                let engine = engine.clone();
                                let posts = posts.clone();
                                tokio::spawn(caller_round(engine, posts, caller, on))
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                    });
                    if on {
                        total += started.elapsed();
                    }
                }
            }
            total
        })
    });
    group.bench_function("likes_sync_callers_64_on_actor_thread", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                round += 1;
                for on in [true, false] {
                    let started = Instant::now();
                    let (done_sender, done) = std::sync::mpsc::channel();
                    for caller in 0..CALLERS {
                        let engine = engine.clone();
                        let posts = posts.clone();
                        let done_sender = done_sender.clone();
                        assert!(engine.clone().spawn_on_shard(0, async move {
                            caller_round(engine, posts, caller, on).await;
                            done_sender.send(()).unwrap();
                        }));
                    }
                    for _ in 0..CALLERS {
                        done.recv().unwrap();
                    }
                    if on {
                        total += started.elapsed();
                    }
                }
            }
            total
        })
    });
    group.bench_function("posts_sync_callers_64", |b| {
        b.iter_custom(|n| {
            let started = Instant::now();
            for _ in 0..n {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..CALLERS)
                        .map(|caller| {
                            let engine = engine.clone();
                            tokio::spawn(async move {
                                for i in 0..PER_CALLER {
                                    let author = (caller * PER_CALLER + i) % USERS + 1;
                                    engine
                                        .social()
                                        .create_post(author, "a bench post".into())
                                        .await
                                        .unwrap();
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                });
            }
            started.elapsed()
        })
    });
    group.finish();
    let differences = runtime.block_on(engine.social().check()).unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    eprintln!("social_embedded: rounds {round}, invariant check clean");
    engine.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
