//! The market's order book, embedded:
//! - `orders_page`: one page (100 orders, newest first) of a user with 1,000,000 orders, at page
//!   1 and at page 10,000 (the last), and the same for the admin's all-users listing. Keyset
//!   paging: both depths cost a binary search and 100 steps, so the two figures must be equal
//!   (the original's OFFSET paging read every row before the page).
//! - `place_keyed_callers_64`: orders/s with an `Idempotency-Key` each, sync durability, 64
//!   concurrent callers (one actor decides every order: the cap is exact).
//!
//! Run: `cargo bench -p switchyard-benches --bench market`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_benches as _;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard_engine::market::source::{Fixed, Rates};
use switchyard_engine::market::{price_pool, MarketConfig, OrderRequest, Rate};
use switchyard_engine::store::DirLock;
use switchyard_engine::{Durability, Engine, EngineConfig, SystemClock};

const ORDERS: u64 = 1_000_000;
const PAGE: usize = 100;
const CALLERS: u64 = 64;
const PER_CALLER: u64 = 200;

fn open_engine(durability: Durability) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.durability = durability;
    config.mailbox_depth_max = 1 << 16;
    let market = config.section_mut::<MarketConfig>();
    market.rate_limit_per_minute = 0;
    market.cap_satoshis = u64::MAX;
    let rate = Rate::parse("10000").unwrap();
    let source = Arc::new(Fixed(Rates {
        eur: rate,
        gbp: rate,
        usd: rate,
    }));
    let lock = DirLock::acquire(dir.path()).unwrap();
    let engine = Engine::open_with_effects(
        config,
        lock,
        Arc::new(SystemClock),
        vec![price_pool(source)],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.market().price().is_err() {
        assert!(Instant::now() < deadline, "no price");
        std::thread::sleep(Duration::from_millis(5));
    }
    (dir, engine)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pages(c: &mut Criterion) {
    // Filled by 64 callers in sync durability (batch durability would acknowledge at once and
    // overflow the WAL queue); the setup is not measured.
    let (_dir, engine) = open_engine(Durability::Sync);
    let runtime = runtime();
    let request = OrderRequest::parse("EUR", "1.00").unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    for _ in (caller..ORDERS).step_by(CALLERS as usize) {
                        engine.market().place(7, None, request).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(
        runtime.block_on(engine.market().totals()).unwrap().1,
        ORDERS
    );
    let mut group = c.benchmark_group("orders_page");
    group.sample_size(50);
    for page in [1u64, 10_000] {
        // Ids are 1..=ORDERS; page k starts below id ORDERS − (k − 1)·PAGE + 1.
        let before = ORDERS - (page - 1) * PAGE as u64 + 1;
        for (who, user) in [("user", Some(7)), ("admin_all", None)] {
            group.bench_with_input(BenchmarkId::new(who, page), &before, |b, before| {
                b.iter(|| {
                    let items = runtime
                        .block_on(engine.market().orders(user, Some(*before), PAGE))
                        .unwrap();
                    assert_eq!(items.items.len(), PAGE);
                    items
                })
            });
        }
    }
    group.finish();
    engine.shutdown().unwrap();
}

fn place_keyed(c: &mut Criterion) {
    let (_dir, engine) = open_engine(Durability::Sync);
    let runtime = runtime();
    let request = OrderRequest::parse("EUR", "1.00").unwrap();
    let mut group = c.benchmark_group("market_embedded");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(CALLERS * PER_CALLER));
    let mut round = 0u64;
    group.bench_function("place_keyed_sync_callers_64", |b| {
        b.iter_custom(|n| {
            let started = Instant::now();
            for _ in 0..n {
                round += 1;
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..CALLERS)
                        .map(|caller| {
                            let engine = engine.clone();
                            tokio::spawn(async move {
                                for i in 0..PER_CALLER {
                                    let key = format!("r{round}-c{caller}-{i}");
                                    engine
                                        .market()
                                        .place(caller + 1, Some(key), request)
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
    engine.shutdown().unwrap();
}

criterion_group!(benches, pages, place_keyed);
criterion_main!(benches);
