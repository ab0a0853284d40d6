//! The market scenario against an engine opened in-process with a fixed price (`market
//! --embedded`): the real binary's exit code and JSON report on a clean run (every order
//! created once, every deliberate duplicate answered as a replay of the same order, the ledger's
//! BTC equal to the server's), a second run with the same seed on the same data dir refused
//! (exit 1); the library against a small cap (refusals happen, the sum stays at or under the
//! cap, every refusal consistent); and a tight rate limit whose 429s are waited out for their
//! `Retry-After` (few of them, and the run takes that long) without losing or doubling an order.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use switchyard_bot::cli::{parse_price, DEFAULT_PRICE};
use switchyard_bot::market::ledger::parse_btc;
use switchyard_bot::market::{self, MarketOptions};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::EmbeddedTransport;
use switchyard_bot::{Outcome, Report};
use switchyard_engine::market::MarketConfig;

fn options(users: usize, orders: usize) -> MarketOptions {
    MarketOptions {
        seed: 21,
        users,
        orders,
        concurrency: 6,
        retry_percent: 30,
        max_amount_cents: 100_000,
        cap_satoshis: 100 * 100_000_000,
        deadline: Duration::from_secs(60),
        progress: ProgressMode::Off,
    }
}

/// Runs the library's scenario on a fresh embedded engine with the default fixed price.
fn run(options: MarketOptions, configure: impl FnOnce(&mut MarketConfig)) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedTransport::config(&dir.path().join("data"), None, None);
    let section = config.section_mut::<MarketConfig>();
    section.cap_satoshis = options.cap_satoshis;
    configure(section);
    let transport = Arc::new(
        market::embedded::open(config, parse_price(DEFAULT_PRICE).unwrap()).expect("opens"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(market::run(transport.clone(), options));
    transport.shutdown().unwrap();
    report
}

#[test]
fn the_binary_finishes_clean_and_refuses_a_second_run_with_the_same_seed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let report_path = dir.path().join("report.json");
    let run = |orders: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchyard-bot"))
            .args(["market", "--embedded", "--data-dir"])
            .arg(&data)
            .args(["--users", "3", "--orders", orders, "--concurrency", "6"])
            .args(["--retry-percent", "40", "--rate-limit-per-minute", "0"])
            .args(["--seed", "7", "--progress", "plain", "--report"])
            .arg(&report_path)
            .output()
            .unwrap()
    };
    let output = run("60");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("seed 7"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "finished");
    assert_eq!(report["mode"], "market");
    assert_eq!(report["transport"], "embedded");
    assert_eq!(report["differences"].as_array().unwrap().len(), 0);
    assert_eq!(report["errors_total"], 0);
    let figures = &report["market"];
    let duplicated = figures["duplicated"].as_u64().unwrap();
    assert!(duplicated > 10, "about 40 % of 60: {figures}");
    // A fresh engine, a 100 BTC cap far away, no rate limit: each key makes one order, and each
    // deliberate second copy is a replay of it.
    assert_eq!(figures["created"], 60);
    assert_eq!(figures["replayed"].as_u64().unwrap(), duplicated);
    assert_eq!(figures["cap_refused"], 0);
    assert_eq!(figures["resent"], 0);
    assert_eq!(figures["server_orders"], 60);
    assert_eq!(figures["server_btc_before"], "0.00000000");
    assert_eq!(figures["ledger_btc"], figures["server_btc"]);
    assert_ne!(figures["ledger_btc"], "0.00000000");
    assert_eq!(figures["price_stable"], true);
    assert_eq!(
        report["operations"]["place"]["count"].as_u64().unwrap(),
        60 + duplicated
    );
    let phases: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["users", "orders", "check"]);

    // The same seed on the same data dir: its users have orders, its keys would be replays.
    let output = run("10");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("already has orders"), "{stdout}");
}

#[test]
fn a_small_cap_refuses_orders_consistently() {
    // Amounts up to 5,000.00 at 43,000 to 58,000 per BTC: about 0.06 BTC each on average, so
    // 80 orders ask for about 5 BTC against a 2 BTC cap.
    let options = MarketOptions {
        max_amount_cents: 500_000,
        cap_satoshis: 2 * 100_000_000,
        ..options(4, 80)
    };
    let report = run(options, |market| market.rate_limit_per_minute = 0);
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Finished, "{text}");
    let figures = report.market.as_ref().unwrap();
    assert!(figures.cap_refused > 0, "{text}");
    assert!(figures.created > 0 && figures.created < 80, "{text}");
    assert!(figures.price_stable, "{text}");
    assert_eq!(figures.ledger_btc, figures.server_btc);
    let server_sats = parse_btc(&figures.server_btc).expect("8 decimals");
    assert!(server_sats <= 2 * 100_000_000, "{text}");
    assert!(report.errors.contains_key("409 btc_cap_exceeded"), "{text}");
}

#[test]
fn rate_limited_orders_wait_for_retry_after_and_are_placed_once() {
    // One user, 62 orders, 60 a minute: the bucket's 60 tokens go at once, then one a second;
    // the last two orders get 429s and wait out their Retry-After.
    let options = MarketOptions {
        retry_percent: 0,
        concurrency: 4,
        ..options(1, 62)
    };
    let report = run(options, |market| market.rate_limit_per_minute = 60);
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Finished, "{text}");
    let figures = report.market.as_ref().unwrap();
    assert_eq!(figures.created, 62, "{text}");
    assert_eq!(figures.server_orders, 62, "{text}");
    assert!(figures.rate_limited >= 2, "{text}");
    // Honouring Retry-After (about a second) takes few 429s; hammering would take hundreds.
    assert!(figures.rate_limited <= 8, "{text}");
    assert_eq!(figures.resent, figures.rate_limited, "{text}");
    assert!(figures.place_seconds >= 0.9, "{text}");
    assert_eq!(report.errors["429 rate_limited"], figures.rate_limited);
}
