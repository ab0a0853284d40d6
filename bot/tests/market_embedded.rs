//! The market scenario against an engine opened in-process with a fixed price (`market
//! --embedded`): the real binary's exit code and JSON report on a clean run (every order
//! created once, every deliberate duplicate answered as a replay of the same order, the ledger's
//! BTC equal to the server's), a second run with the same seed on the same data dir refused
//! (exit 1); the library against a small cap (refusals happen, the sum stays at or under the
//! cap, every refusal consistent); and a tight rate limit whose 429s are waited out for their
//! `Retry-After` (few of them, and the run takes that long) without losing or doubling an order.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_bot::cli::{parse_price, DEFAULT_PRICE};
use switchyard_bot::error::BotError;
use switchyard_bot::market::ledger::parse_btc;
use switchyard_bot::market::{
    self, MarketOptions, MarketTransport, OrdersPage, Placement, PriceView,
};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::{Answer, EmbeddedTransport, NewUser, Session};
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

/// A fresh embedded engine with the default fixed price.
fn open(
    dir: &std::path::Path,
    cap_satoshis: u64,
    configure: impl FnOnce(&mut MarketConfig),
) -> EmbeddedTransport {
    let mut config = EmbeddedTransport::config(&dir.join("data"), None, None);
    let section = config.section_mut::<MarketConfig>();
    section.cap_satoshis = cap_satoshis;
    configure(section);
    market::embedded::open(config, parse_price(DEFAULT_PRICE).unwrap()).expect("opens")
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs the library's scenario on a fresh embedded engine with the default fixed price.
fn run(options: MarketOptions, configure: impl FnOnce(&mut MarketConfig)) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let transport = Arc::new(open(dir.path(), options.cap_satoshis, configure));
    let report = block_on(market::run(transport.clone(), options));
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

/// The embedded engine behind a bad network: the first attempts of every key fail, in one of
/// three patterns by the key's number: the order is made and its answer lost (a timeout after
/// the engine answered), then a 503, then a refused connection; or a refused connection and a
/// 503 (neither reaches the engine), then the 201 arrives; or a 503, then a lost answer. Later
/// attempts of the key (of either copy) go through.
struct Lossy {
    inner: EmbeddedTransport,
    /// Attempts so far, by key.
    attempts: Mutex<HashMap<String, usize>>,
    /// Orders the engine made whose 201 the bot never saw.
    lost_created: AtomicU64,
}

#[derive(Clone, Copy)]
enum Fault {
    Lost,
    Overloaded,
    Refused,
}

impl MarketTransport for Lossy {
    fn name(&self) -> &'static str {
        "lossy"
    }
    async fn sign_up(&self, user: &NewUser) -> Answer<()> {
        self.inner.sign_up(user).await
    }
    async fn login(&self, email: &str, password: &str) -> Answer<Session> {
        self.inner.login(email, password).await
    }
    async fn place(
        &self,
        session: &Session,
        key: &str,
        currency: &str,
        amount: &str,
    ) -> Answer<Placement> {
        let number: usize = key.rsplit('-').next().unwrap().parse().unwrap();
        let pattern: &[Fault] = match number % 3 {
            0 => &[Fault::Lost, Fault::Overloaded, Fault::Refused],
            1 => &[Fault::Refused, Fault::Overloaded],
            _ => &[Fault::Overloaded, Fault::Lost],
        };
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let count = attempts.entry(key.to_string()).or_default();
            *count += 1;
            *count - 1
        };
        match pattern.get(attempt) {
            Some(Fault::Lost) => {
                let placement = self.inner.place(session, key, currency, amount).await?;
                if placement.created {
                    self.lost_created.fetch_add(1, Ordering::Relaxed);
                }
                Err(BotError::transport("timeout", "the answer was lost"))
            }
            Some(Fault::Overloaded) => Err(BotError::api(503, "overloaded", "try again")),
            Some(Fault::Refused) => Err(BotError::transport("connect", "refused")),
            None => self.inner.place(session, key, currency, amount).await,
        }
    }
    async fn orders(
        &self,
        session: &Session,
        cursor: Option<String>,
        limit: usize,
    ) -> Answer<OrdersPage> {
        self.inner.orders(session, cursor, limit).await
    }
    async fn all_orders(&self, cursor: Option<String>, limit: usize) -> Answer<OrdersPage> {
        self.inner.all_orders(cursor, limit).await
    }
    async fn price(&self) -> Answer<PriceView> {
        self.inner.price().await
    }
    async fn totals(&self) -> Answer<Option<(u64, u64)>> {
        self.inner.totals().await
    }
}

#[test]
fn lost_answers_and_refused_attempts_are_resent_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(3, 40);
    let lossy = Arc::new(Lossy {
        inner: open(dir.path(), options.cap_satoshis, |market| {
            market.rate_limit_per_minute = 0
        }),
        attempts: Mutex::new(HashMap::new()),
        lost_created: AtomicU64::new(0),
    });
    let report = block_on(market::run(lossy.clone(), options));
    lossy.inner.shutdown().unwrap();
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Finished, "{text}");
    let figures = report.market.as_ref().unwrap();
    let lost = lossy.lost_created.load(Ordering::Relaxed);
    assert!(lost > 0 && figures.created > 0, "{text}");
    // Every key made exactly one order: the 201s the bot saw and the ones it lost.
    assert_eq!(figures.created + lost, 40, "{text}");
    assert_eq!(figures.server_orders, 40, "{text}");
    // Every failed attempt was sent again; each copy ended with one answer.
    let sent = report.operations["place"].count;
    let failed: u64 = (0..40u64)
        .map(|number| [3, 2, 2][number as usize % 3])
        .sum();
    assert_eq!(figures.resent, failed, "{text}");
    assert_eq!(sent, failed + 40 + figures.duplicated, "{text}");
    for key in ["transport timeout", "transport connect", "503 overloaded"] {
        assert!(report.errors[key] > 0, "{key}: {text}");
    }
}
