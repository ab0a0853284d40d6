//! The market domain through the engine API: the exact cap under concurrency, idempotency keys
//! (concurrent, across a restart, expiring on the virtual clock), the rate limit, the price
//! feed's schedule and staleness on a virtual clock, its failures in the health log, and the
//! `btc_eur` subscription.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_engine::market::source::{Fixed, Rates, SourceSpec};
use switchyard_engine::market::{
    price_pool, Level, MarketConfig, OrderRequest, Placed, PriceSource, Quote, Rate,
};
use switchyard_engine::store::DirLock;
use switchyard_engine::{Engine, EngineConfig, Error, ManualClock, SharedClock};

fn rates(eur: &str, gbp: &str, usd: &str) -> Rates {
    Rates {
        eur: Rate::parse(eur).unwrap(),
        gbp: Rate::parse(gbp).unwrap(),
        usd: Rate::parse(usd).unwrap(),
    }
}

fn config(dir: &std::path::Path, market: impl FnOnce(&mut MarketConfig)) -> EngineConfig {
    let mut config = EngineConfig::for_tests(dir);
    config.effects_sweep_ms = 50;
    market(config.section_mut::<MarketConfig>());
    config
}

fn open(config: &EngineConfig, clock: SharedClock, source: Arc<dyn PriceSource>) -> Engine {
    let lock = DirLock::acquire(&config.data_dir).unwrap();
    Engine::open_with_effects(config.clone(), lock, clock, vec![price_pool(source)])
        .expect("engine opens")
}

/// Waits (bounded) until the engine has a fresh price.
async fn until_priced(engine: &Engine) -> Quote {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(quote) = engine.market().price() {
            return quote;
        }
        assert!(
            Instant::now() < deadline,
            "no price: {:?}",
            engine.market().feed().await
        );
        engine.fire_due_timers().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn request(currency: &str, amount: &str) -> OrderRequest {
    OrderRequest::parse(currency, amount).unwrap()
}

fn code(error: &Error) -> &'static str {
    match error {
        Error::Invalid { code, .. }
        | Error::Conflict { code, .. }
        | Error::Unprocessable { code, .. }
        | Error::NotNow { code, .. } => code,
        Error::RateLimited { .. } => "rate_limited",
        Error::Overloaded(_) => "overloaded",
        other => panic!("unexpected error {other:?}"),
    }
}

/// 60 concurrent orders for 0.5 to 3 BTC each against a 10 BTC cap: the accepted ones sum to at
/// most the cap, each refused one did not fit even next to the final total (the total only
/// grows, so it did not fit when it was decided either), and a restart reads the same book.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_exact_under_concurrency_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |m| {
        m.cap_satoshis = 10 * 100_000_000;
        m.rate_limit_per_minute = 0;
    });
    let clock: SharedClock = Arc::new(switchyard_engine::SystemClock);
    // 1 BTC = 10,000 EUR.
    let source = Arc::new(Fixed(rates("10000", "9000", "11000")));
    let engine = open(&config, clock.clone(), source.clone());
    until_priced(&engine).await;
    let amounts: Vec<u64> = (0..60).map(|i| 5_000 + (i * 4_999) % 25_001).collect();
    let mut tasks = Vec::new();
    for (i, amount) in amounts.iter().enumerate() {
        let engine = engine.clone();
        let amount = format!("{amount}.00");
        tasks.push(tokio::spawn(async move {
            let result = engine
                .market()
                .place(i as u64 + 1, None, request("eur", &amount))
                .await;
            (amount, result)
        }));
    }
    let mut accepted = 0u64;
    let mut refused = Vec::new();
    for task in tasks {
        let (amount, result) = task.await.unwrap();
        match result {
            Ok(Placed::Created(order)) => accepted += order.btc_sats,
            Ok(other) => panic!("no key, yet {other:?}"),
            Err(error) => {
                assert_eq!(code(&error), "btc_cap_exceeded", "{error}");
                refused.push(amount);
            }
        }
    }
    assert!(accepted <= config.section::<MarketConfig>().cap_satoshis);
    assert!(!refused.is_empty(), "the orders together exceed the cap");
    let (total, count) = engine.market().totals().await.unwrap();
    assert_eq!(total, accepted);
    assert_eq!(count as usize, 60 - refused.len());
    for amount in &refused {
        // At 10,000 EUR per BTC a cent is 100 satoshis.
        let sats = OrderRequest::parse("EUR", amount).unwrap().amount_cents * 100;
        assert!(
            total + sats > 10 * 100_000_000,
            "{amount} EUR would have fit"
        );
    }
    let before = engine.market().orders(None, None, 500).await.unwrap();
    assert_eq!(engine.market().check().await.unwrap(), Vec::<String>::new());
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(&config, clock, source);
    assert_eq!(engine.market().check().await.unwrap(), Vec::<String>::new());
    assert_eq!(engine.market().totals().await.unwrap(), (total, count));
    assert_eq!(
        engine.market().orders(None, None, 500).await.unwrap(),
        before
    );
    engine.shutdown().unwrap();
}

/// Ten concurrent requests with one key make one order; the other nine get it back. After a
/// restart the key still answers with it, another body is refused, and another user's same key
/// is another order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_order_across_concurrency_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |m| m.rate_limit_per_minute = 1000);
    let clock: SharedClock = Arc::new(switchyard_engine::SystemClock);
    let source = Arc::new(Fixed(rates("55890.2", "48000", "60000.5")));
    let engine = open(&config, clock.clone(), source.clone());
    until_priced(&engine).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine
                .market()
                .place(7, Some("key-1".into()), request("EUR", "69.00"))
                .await
                .unwrap()
        }));
    }
    let mut created = Vec::new();
    let mut replayed = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Placed::Created(order) => created.push(order),
            Placed::Replayed(order) => replayed.push(order),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(replayed.len(), 9);
    let order = created.pop().unwrap();
    assert!(replayed.iter().all(|o| *o == order));
    assert_eq!(
        switchyard_engine::market::money::format_sats(order.btc_sats),
        "0.00123457"
    );
    assert_eq!(order.rate.to_string(), "55890.2");
    // The body is compared after parsing: the same currency in lower case is the same body.
    assert_eq!(
        engine
            .market()
            .place(7, Some("key-1".into()), request("eur", "69"))
            .await
            .unwrap(),
        Placed::Replayed(order.clone())
    );
    engine.shutdown().unwrap();
    drop(engine);

    let engine = open(&config, clock, source);
    assert_eq!(
        engine
            .market()
            .place(7, Some("key-1".into()), request("EUR", "69.00"))
            .await
            .unwrap(),
        Placed::Replayed(order.clone())
    );
    let reused = engine
        .market()
        .place(7, Some("key-1".into()), request("EUR", "70.00"))
        .await
        .unwrap_err();
    assert_eq!(code(&reused), "idempotency_key_reused");
    let other_user = engine
        .market()
        .place(8, Some("key-1".into()), request("EUR", "69.00"))
        .await
        .unwrap();
    assert!(matches!(&other_user, Placed::Created(o) if o.id != order.id));
    assert_eq!(engine.market().totals().await.unwrap().1, 2);
    let page = engine.market().orders(Some(7), None, 50).await.unwrap();
    assert_eq!(page.items, vec![order]);
    assert_eq!(engine.market().check().await.unwrap(), Vec::<String>::new());
    engine.shutdown().unwrap();
}

/// Offset pages of one user's orders (the compat route's contract): newest first, the `offset`
/// newest skipped, other users' orders never in them, and the same after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_pages_of_one_users_orders() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |m| m.rate_limit_per_minute = 0);
    let clock: SharedClock = Arc::new(switchyard_engine::SystemClock);
    let source = Arc::new(Fixed(rates("50000", "40000", "80000")));
    let engine = open(&config, clock.clone(), source.clone());
    until_priced(&engine).await;
    for amount in 1..=5 {
        for user in [0, 9] {
            engine
                .market()
                .place(user, None, request("EUR", &amount.to_string()))
                .await
                .unwrap();
        }
    }
    let check = |engine: Engine| async move {
        let amounts = |offset: u64, limit: usize| {
            let engine = engine.clone();
            async move {
                let orders = engine.market().orders_at(0, offset, limit).await.unwrap();
                assert!(orders.iter().all(|order| order.user_id == 0));
                orders
                    .iter()
                    .map(|order| order.amount_cents / 100)
                    .collect::<Vec<u64>>()
            }
        };
        assert_eq!(amounts(0, 10).await, [5, 4, 3, 2, 1]);
        assert_eq!(amounts(0, 2).await, [5, 4]);
        assert_eq!(amounts(2, 2).await, [3, 2]);
        assert_eq!(amounts(4, 2).await, [1]);
        assert_eq!(amounts(5, 2).await, Vec::<u64>::new());
        assert_eq!(amounts(u64::MAX, 2).await, Vec::<u64>::new());
        let nobody = engine.market().orders_at(3, 0, 10).await.unwrap();
        assert!(nobody.is_empty());
        engine
    };
    let engine = check(engine).await;
    engine.shutdown().unwrap();
    drop(engine);
    let engine = check(open(&config, clock, source)).await;
    engine.shutdown().unwrap();
}

/// The rate limit counts orders, not replays, and says when to come back; keys expire after
/// their TTL on the virtual clock (the book's timer forgets them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_skips_replays_and_keys_expire_on_the_virtual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |m| {
        m.rate_limit_per_minute = 3;
        m.idempotency_key_ttl_seconds = 120;
        m.max_price_age_seconds = 100_000;
        m.price_refresh_seconds = 100_000;
    });
    let clock = ManualClock::new(1_000_000);
    let engine = open(
        &config,
        Arc::new(clock.clone()),
        Arc::new(Fixed(rates("10000", "10000", "10000"))),
    );
    until_priced(&engine).await;
    let market = engine.market();
    let first = market
        .place(1, Some("a".into()), request("USD", "10"))
        .await
        .unwrap();
    market.place(1, None, request("USD", "10")).await.unwrap();
    market.place(1, None, request("USD", "10")).await.unwrap();
    for _ in 0..5 {
        // Replays are answered whatever the bucket holds.
        assert!(matches!(
            market
                .place(1, Some("a".into()), request("USD", "10"))
                .await,
            Ok(Placed::Replayed(_))
        ));
    }
    match market.place(1, None, request("USD", "10")).await {
        Err(Error::RateLimited { retry_after_ms, .. }) => assert_eq!(retry_after_ms, 20_000),
        other => panic!("expected 429, got {other:?}"),
    }
    // Another user is not limited by the first.
    market.place(2, None, request("USD", "10")).await.unwrap();
    clock.advance_ms(20_000);
    market.place(1, None, request("USD", "10")).await.unwrap();

    // The key lives for 120 s: at 119 s it replays, after 121 s it is gone.
    clock.set_ms(1_000_000 + 119_000);
    assert!(matches!(
        market.place(1, Some("a".into()), request("USD", "10")).await,
        Ok(Placed::Replayed(ref o)) if *o == *first.order()
    ));
    clock.set_ms(1_000_000 + 240_000);
    engine.fire_due_timers().await;
    match market
        .place(1, Some("a".into()), request("USD", "20"))
        .await
    {
        Ok(Placed::Created(order)) => assert_ne!(order.id, first.order().id),
        other => panic!("an expired key starts afresh, got {other:?}"),
    }
    engine.shutdown().unwrap();
}

/// A source that fails while `failing` is set, else answers `rates`.
struct Flaky {
    failing: Mutex<bool>,
    rates: Rates,
}

impl PriceSource for Flaky {
    fn describe(&self) -> String {
        "flaky".into()
    }

    fn fetch(&self, _seq: u64, _previous: Option<&Quote>) -> Result<Rates, String> {
        if *self.failing.lock().unwrap() {
            Err("connection refused".into())
        } else {
            Ok(self.rates)
        }
    }
}

/// Waits (bounded) until the feed's health reports of `level` number at least `count`.
async fn until_reports(
    engine: &Engine,
    level: Option<Level>,
    count: usize,
) -> switchyard_engine::Page<switchyard_engine::market::Report> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reports = engine
            .market()
            .reports(level, Some("market.price_feed".into()), None, 50)
            .await
            .unwrap();
        if reports.items.len() >= count {
            return reports;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for reports: {reports:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn until_feed(
    engine: &Engine,
    what: &str,
    condition: impl Fn(&switchyard_engine::market::feed::FeedView) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = engine.market().feed().await.unwrap();
        if condition(&view) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// On the virtual clock: the feed fetches at open and then every refresh period; a price older
/// than the maximum age is unavailable (503 `price_unavailable`); failures go to the health log
/// (critical after three in a row) and a success after them is reported; the subscription sees
/// each durable quote; the schedule survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_runs_on_its_durable_timer_and_stale_prices_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |m| {
        m.price_refresh_seconds = 60;
        m.max_price_age_seconds = 90;
    });
    let clock = ManualClock::new(10_000_000);
    let source = Arc::new(Flaky {
        failing: Mutex::new(false),
        rates: rates("50000", "43000", "58000"),
    });
    let engine = open(&config, Arc::new(clock.clone()), source.clone());
    let mut signal = engine.market().subscribe();
    let quote = until_priced(&engine).await;
    assert_eq!(quote.at_ms, 10_000_000);
    assert_eq!(quote.source, "flaky");
    signal.changed().await.unwrap();
    assert_eq!(
        signal.borrow().as_ref().map(|q| q.rates.eur),
        Some(quote.rates.eur)
    );

    // The next fetch is due 60 s later; the price is still fresh at 89 s without it.
    *source.failing.lock().unwrap() = true;
    for step in 1..=4u64 {
        clock.set_ms(10_000_000 + step * 60_000);
        engine.fire_due_timers().await;
        until_feed(&engine, "a failure", |v| {
            v.failures == step as u32 && v.pending.is_none()
        })
        .await;
    }
    let stale = engine
        .market()
        .place(1, None, request("EUR", "1"))
        .await
        .unwrap_err();
    assert_eq!(code(&stale), "price_unavailable");
    assert_eq!(
        code(&engine.market().price().unwrap_err()),
        "price_unavailable"
    );
    // The handler writes a failure's report after it recorded the failure with the feed.
    let reports = until_reports(&engine, None, 4).await;
    let levels: Vec<Level> = reports.items.iter().map(|r| r.level).collect();
    assert_eq!(
        levels,
        vec![Level::Critical, Level::Error, Level::Error, Level::Error],
        "{reports:?}"
    );
    assert!(reports.items[0].data.contains("connection refused"));

    // A restart keeps the schedule: the next fetch is at 300 s, not at once.
    engine.shutdown().unwrap();
    drop(engine);
    *source.failing.lock().unwrap() = false;
    let engine = open(&config, Arc::new(clock.clone()), source.clone());
    engine.fire_due_timers().await;
    let view = engine.market().feed().await.unwrap();
    assert_eq!((view.asked, view.next_at_ms), (5, 10_000_000 + 300_000));
    clock.set_ms(10_000_000 + 300_000);
    let quote = until_priced(&engine).await;
    assert_eq!(quote.at_ms, 10_000_000 + 300_000);
    // Written after the quote is published: waited for.
    let latest = until_reports(&engine, Some(Level::Info), 1).await;
    assert_eq!(latest.items[0].status, "recovered");
    engine
        .market()
        .place(1, None, request("EUR", "1"))
        .await
        .unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn every_builtin_source_spec_gives_a_source() {
    assert!(SourceSpec::parse("simulated").unwrap().builtin(1).is_some());
    assert!(SourceSpec::parse("fixed:EUR=1,GBP=2,USD=3")
        .unwrap()
        .builtin(1)
        .is_some());
    assert!(SourceSpec::parse("http://127.0.0.1:1/x")
        .unwrap()
        .builtin(1)
        .is_none());
}

/// Health reports: kept newest first up to the bound, filtered by level and service, paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_are_bounded_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |m| m.health_reports_max = 10);
    let clock: SharedClock = Arc::new(switchyard_engine::SystemClock);
    let engine = open(
        &config,
        clock.clone(),
        Arc::new(Fixed(rates("1", "1", "1"))),
    );
    let market = engine.market();
    for i in 0..25u64 {
        let level = if i % 2 == 0 {
            Level::Info
        } else {
            Level::Warning
        };
        market
            .report(
                level,
                format!("svc-{}", i % 3),
                "alive".into(),
                format!("{i}"),
            )
            .await
            .unwrap();
    }
    let all = market.reports(None, None, None, 100).await.unwrap();
    let data: Vec<&str> = all.items.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(
        data,
        ["24", "23", "22", "21", "20", "19", "18", "17", "16", "15"]
    );
    let first = market
        .reports(Some(Level::Info), None, None, 2)
        .await
        .unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|r| r.data.as_str())
            .collect::<Vec<_>>(),
        ["24", "22"]
    );
    let second = market
        .reports(Some(Level::Info), None, first.next, 2)
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|r| r.data.as_str())
            .collect::<Vec<_>>(),
        ["20", "18"]
    );
    let service = market
        .reports(None, Some("svc-0".into()), None, 100)
        .await
        .unwrap();
    assert!(service.items.iter().all(|r| r.service == "svc-0"));
    assert_eq!(service.items.len(), 4);
    let bad = market
        .report(Level::Info, String::new(), "x".into(), String::new())
        .await
        .unwrap_err();
    assert_eq!(code(&bad), "invalid_field");
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(&config, clock, Arc::new(Fixed(rates("1", "1", "1"))));
    assert_eq!(
        engine
            .market()
            .reports(None, None, None, 100)
            .await
            .unwrap(),
        all
    );
    engine.shutdown().unwrap();
}

/// Keys survive restarts whatever chunk their order sits in (the book's snapshot keeps 64
/// orders per part, each with its key): 200 keyed orders over 4 chunks, a checkpoint in the
/// middle (so some are in snapshots, some only in the WAL), a restart, and every key replays its
/// own order; a key past its TTL is forgotten after the restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_every_chunk_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |m| {
        m.rate_limit_per_minute = 0;
        m.idempotency_key_ttl_seconds = 3600;
        m.max_price_age_seconds = 100_000_000;
        m.price_refresh_seconds = 100_000_000;
    });
    let clock = ManualClock::new(1_000_000);
    let source = Arc::new(Fixed(rates("10000", "10000", "10000")));
    let engine = open(&config, Arc::new(clock.clone()), source.clone());
    until_priced(&engine).await;
    let mut made = Vec::new();
    for n in 0..200u64 {
        if n == 130 {
            engine.checkpoint().unwrap();
        }
        let amount = format!("{}.00", n + 1);
        let placed = engine
            .market()
            .place(n % 3 + 1, Some(format!("k-{n}")), request("EUR", &amount))
            .await
            .unwrap();
        made.push((n, amount, placed.order().clone()));
    }
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(&config, Arc::new(clock.clone()), source.clone());
    for (n, amount, order) in &made {
        let again = engine
            .market()
            .place(n % 3 + 1, Some(format!("k-{n}")), request("EUR", amount))
            .await
            .unwrap();
        assert_eq!(again, Placed::Replayed(order.clone()), "key k-{n}");
    }
    assert_eq!(engine.market().check().await.unwrap(), Vec::<String>::new());
    engine.shutdown().unwrap();
    drop(engine);
    // Past the TTL, across a restart: the key makes a new order.
    clock.advance_ms(3_601_000);
    let engine = open(&config, Arc::new(clock.clone()), source);
    engine.fire_due_timers().await;
    match engine
        .market()
        .place(1, Some("k-0".into()), request("EUR", "5"))
        .await
        .unwrap()
    {
        Placed::Created(order) => assert_eq!(order.id, 201),
        other => panic!("an expired key makes a new order, got {other:?}"),
    }
    engine.shutdown().unwrap();
}
