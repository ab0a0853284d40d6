//! The market check catches a lying server. A test-only transport wraps the embedded engine
//! (fixed price) and changes its answers: a listing that drops an acknowledged order, one that
//! alters an order's `btc_amount`, a replay that answers with another order, a replay that
//! claims to be a new order (201), and an order acknowledged by the engine that the wrapper
//! reports as refused over the cap (so the server holds an order the ledger does not, and a
//! "refusal" that fits under the cap). Each run must end with `Outcome::Mismatch` (exit code
//! 2) naming the lie; an honest wrapper around the same engine must finish clean, so the
//! failures come from the lies.

use std::sync::Arc;
use std::time::Duration;

use switchyard_bot::cli::{parse_price, DEFAULT_PRICE};
use switchyard_bot::error::BotError;
use switchyard_bot::market::{
    self, Copies, MarketOptions, MarketTransport, OrdersPage, Placement, PriceView,
};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::{Answer, EmbeddedTransport, NewUser, Session};
use switchyard_bot::{Outcome, Report};
use switchyard_engine::market::MarketConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    None,
    /// Every listing leaves out its newest order.
    DroppedOrder,
    /// Every listing says its newest order is worth one satoshi more.
    AlteredBtc,
    /// A replay (200) answers with another amount.
    ReplayDiffers,
    /// A replay claims to be a new order (201).
    ReplayCreated,
    /// The order of one key sent once is made, but answered as `409 btc_cap_exceeded`.
    FalseCapRefusal,
}

struct Liar {
    inner: EmbeddedTransport,
    lie: Lie,
    /// The key `FalseCapRefusal` lies about.
    victim: String,
}

impl Liar {
    fn tamper(&self, mut page: OrdersPage) -> OrdersPage {
        if let Some(newest) = page.items.first_mut() {
            match self.lie {
                Lie::AlteredBtc => {
                    let sats = market::ledger::parse_btc(&newest.btc_amount).unwrap() + 1;
                    newest.btc_amount = market::Sats(u128::from(sats)).to_string();
                }
                Lie::DroppedOrder => {
                    page.items.remove(0);
                }
                _ => {}
            }
        }
        page
    }
}

impl MarketTransport for Liar {
    fn name(&self) -> &'static str {
        "liar"
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
        let mut placement = self.inner.place(session, key, currency, amount).await?;
        match self.lie {
            Lie::ReplayDiffers if !placement.created => placement.order.amount = "0.01".into(),
            Lie::ReplayCreated if !placement.created => placement.created = true,
            Lie::FalseCapRefusal if key == self.victim => {
                return Err(BotError::api(409, "btc_cap_exceeded", "a lie"));
            }
            _ => {}
        }
        Ok(placement)
    }
    async fn orders(
        &self,
        session: &Session,
        cursor: Option<String>,
        limit: usize,
    ) -> Answer<OrdersPage> {
        // The bot's freshness probe (limit 1) sees the truth, so the run gets to the check.
        let page = self.inner.orders(session, cursor, limit).await?;
        Ok(if limit > 1 { self.tamper(page) } else { page })
    }
    async fn all_orders(&self, cursor: Option<String>, limit: usize) -> Answer<OrdersPage> {
        let page = self.inner.all_orders(cursor, limit).await?;
        Ok(self.tamper(page))
    }
    async fn price(&self) -> Answer<PriceView> {
        self.inner.price().await
    }
    async fn totals(&self) -> Answer<Option<(u64, u64)>> {
        self.inner.totals().await
    }
}

fn simulate(lie: Lie) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedTransport::config(dir.path(), None, None);
    config.section_mut::<MarketConfig>().rate_limit_per_minute = 0;
    let inner = market::embedded::open(config, parse_price(DEFAULT_PRICE).unwrap()).unwrap();
    let options = MarketOptions {
        seed: 3,
        users: 3,
        orders: 40,
        concurrency: 4,
        retry_percent: 50,
        max_amount_cents: 100_000,
        cap_satoshis: 100 * 100_000_000,
        deadline: Duration::from_secs(60),
        progress: ProgressMode::Off,
    };
    // A key the plan sends once, so no second copy of it can tell the truth.
    let victim = market::ledger::plan(
        options.seed,
        options.users,
        options.orders,
        options.max_amount_cents,
        options.retry_percent,
    )
    .into_iter()
    .find(|order| order.copies == Copies::Once)
    .expect("some order is sent once")
    .key;
    let liar = Arc::new(Liar { inner, lie, victim });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(market::run(liar.clone(), options));
    liar.inner.shutdown().unwrap();
    report
}

fn check(lie: Lie, expected_fragments: &[&str]) {
    let report = simulate(lie);
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Mismatch, "{lie:?}: {text}");
    assert_eq!(report.exit_code, 2);
    for fragment in expected_fragments {
        assert!(
            report
                .differences
                .iter()
                .any(|difference| difference.contains(fragment)),
            "{lie:?}: no difference mentions {fragment:?}: {:#?}",
            report.differences
        );
    }
}

#[test]
fn an_honest_wrapper_finishes_clean() {
    let report = simulate(Lie::None);
    assert_eq!(
        report.outcome,
        Outcome::Finished,
        "{}",
        report.render_text()
    );
    assert_eq!(report.exit_code, 0);
    assert!(report.market.as_ref().unwrap().replayed > 0);
}

#[test]
fn a_dropped_order_is_a_mismatch() {
    check(
        Lie::DroppedOrder,
        &[
            "was acknowledged but is missing on the server",
            "the server's orders sum to",
        ],
    );
}

#[test]
fn an_altered_order_is_a_mismatch() {
    check(
        Lie::AlteredBtc,
        &["acknowledged as", "the server's orders sum to"],
    );
}

#[test]
fn a_replay_with_another_order_is_a_mismatch() {
    check(Lie::ReplayDiffers, &["a replay answered"]);
}

#[test]
fn a_replay_claiming_a_new_order_is_a_mismatch() {
    check(
        Lie::ReplayCreated,
        &["answers were 201 (a new order), expected one"],
    );
}

#[test]
fn a_false_cap_refusal_is_a_mismatch() {
    check(
        Lie::FalseCapRefusal,
        &[
            "is on the server but not in the ledger",
            "was refused as over the cap, but it fits next to the final total",
        ],
    );
}
