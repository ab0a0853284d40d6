//! `switchyard-bot market` against the real `switchyard` binary: seeded users place keyed orders
//! (some sent twice on purpose) until a 3 BTC cap refuses some; the bot's ledger must match the
//! server exactly (outcome Finished, no differences), and the server's own check agrees.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{call, Server, ADMIN, FAST_HASH};
use switchyard_bot::market::{self, HttpMarket, MarketOptions};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::Outcome;

#[test]
fn the_market_bot_ledger_matches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = FAST_HASH.to_vec();
    args.extend_from_slice(&[
        "--admin-token",
        ADMIN,
        "--set",
        "market.price_source=fixed:EUR=50000,GBP=43000,USD=58000",
        "--set",
        "market.cap_satoshis=300000000",
        "--set",
        "market.rate_limit_per_minute=0",
    ]);
    let server = Server::start(dir.path(), &args);
    server.wait_ready();
    let options = MarketOptions {
        seed: 42,
        users: 4,
        orders: 150,
        concurrency: 8,
        retry_percent: 30,
        max_amount_cents: 500_000,
        cap_satoshis: 300_000_000,
        deadline: Duration::from_secs(60),
        progress: ProgressMode::Off,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        let transport = HttpMarket::new(
            &format!("http://{}", server.addr),
            options.concurrency,
            Duration::from_secs(10),
            ADMIN,
        )
        .expect("a client for the server");
        market::run(Arc::new(transport), options).await
    });
    assert_eq!(
        report.outcome,
        Outcome::Finished,
        "{}",
        report.render_text()
    );
    assert!(report.differences.is_empty());
    let text = report.render_text();
    assert!(
        text.contains("btc_cap_exceeded"),
        "the cap refused some: {text}"
    );
    let check = call(
        server.addr,
        "GET",
        "/api/v1/admin/market/check",
        Some(ADMIN),
        None,
    );
    assert_eq!(check.json()["differences"], serde_json::json!([]));
}
