//! The market scenario (`switchyard-bot market`): seeded users place BTC buy orders (API.md
//! "Market") with idempotency keys, some deliberately twice, every failed attempt retried with
//! the same key and body; then the bot's ledger must match the server exactly. Over HTTP
//! ([`HttpMarket`]) or an engine opened in this process with a fixed price
//! ([`EmbeddedTransport`](crate::transport::EmbeddedTransport)), behind one
//! [`MarketTransport`] trait, so one scenario body drives both.
//!
//! 1. **users**: `users` users `market.<seed in hex>.<n>@example.net` sign up (an address an
//!    earlier run left is logged into) and log in; embedded, the market takes any user id, so
//!    a user's id is derived from its address. A user that already has orders (an earlier run
//!    with the same seed) stops the run: its keys would be replays and the check inexact.
//!    Then the price (waited for while the server answers 503 `price_unavailable`) and every
//!    order the server lists (its total before the run).
//! 2. **orders**: the plan ([`ledger::plan`], from the seed alone) holds `orders` orders, each
//!    with its user, a currency (EUR, GBP or USD in a random mix of cases), an amount (a
//!    2-decimal string, 0.01 to `max_amount`) and its own `Idempotency-Key`
//!    (`bot-<seed in hex>-<n>`); with `retry_percent` chance an order is sent twice with the
//!    same key and body, either both copies at once or the second after the first's answer.
//!    `concurrency` tasks take the orders in plan order. An attempt that gets no answer, or a
//!    503, is sent again with the same key and body after a doubling back-off (or the server's
//!    `Retry-After`), at most [`RESENDS_MAX`] times in a row; a 429 is sent again after its
//!    `Retry-After` for as long as the deadline allows. A `409 btc_cap_exceeded` is final (not
//!    retried). Every success answer (201 or 200) goes into the ledger under its key.
//! 3. **check** ([`check::compare`], exact integer arithmetic): every copy of a key was answered
//!    with the same order, at most one of them 201 (exactly one when every attempt got an
//!    answer), no two keys share an order, each order is what was asked (user, currency,
//!    amount) and its `btc_amount` is its amount over its `exchange_rate` rounded up at 8
//!    decimals; each user's listing (every keyset page, newest first, no order twice) holds
//!    exactly the ledger's orders of that user with the same fields, and so does the listing of
//!    every user's orders; that listing sums to its total before the run plus the ledger's
//!    orders (so nothing else may write orders during the run), the sum is at most the cap, and
//!    (embedded) the engine's own totals agree. When the price did not move during the run (the
//!    same before and after, every order at that rate), each order refused as over the cap must
//!    not fit next to the final total, and no refused key made an order. Any difference →
//!    [`Outcome::Mismatch`] (exit code 2).
//!
//! A valid order refused for another reason (`409 idempotency_key_reused`: the bot never sends
//! a key with another body; a 400, 403 or 422) is a difference too. Anything else that is not
//! an answer (a 401, a 5xx other than 503, the resends used up, the deadline) ends the run with
//! [`Outcome::Error`].
//!
//! # Layout
//! - `mod.rs` (this file): the options, the transport trait and its answer types, [`run`] and
//!   its phases, the retried send of one copy.
//! - `ledger`: the plan, the ledger (one record per key), the exact text forms of money.
//! - `check`: the comparison of the ledger with the server's listings.
//! - `http`: [`HttpMarket`], the Market routes over the bot's HTTP client.
//! - `embedded`: the trait for the engine in this process (`Engine::market()`).
//!
//! **Invariant:** every random choice is the plan's, made from the seed before any request; a
//! key is only ever sent with its one planned body.

pub mod check;
pub mod embedded;
pub mod http;
pub mod ledger;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use switchyard_engine::market::money::format_sats;

use crate::error::BotError;
use crate::progress::{Progress, ProgressMode};
use crate::report::{MarketReport, OpLogSummary, Outcome, PhaseReport, Recorder, Report};
use crate::rng::{fnv1a, Rng};
use crate::transport::{Answer, NewUser, Session};

pub use self::http::HttpMarket;
pub use check::{compare, Checked, ServerView};
pub use ledger::{Copies, Ledger, OrderRecord, PlannedOrder, Sats};

/// Orders read per page in the check (API.md's maximum `limit`).
pub const PAGE_LIMIT: usize = 500;
/// Times in a row one copy is sent again after no answer or a 503 before the run gives up.
pub const RESENDS_MAX: u32 = 8;
/// First back-off after no answer or a 503 without `Retry-After`; doubles with each resend.
const RESEND_BACKOFF_MS: u64 = 20;
/// The wait after a 429 that names none.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(1);
/// Pause between reads of the price while the server has none yet.
const PRICE_POLL: Duration = Duration::from_millis(100);
/// Differences listed in the report; beyond it only their number.
const DIFFERENCES_LISTED_MAX: usize = 1000;

/// A market run, resolved (where it runs is the transport's business).
#[derive(Debug, Clone)]
pub struct MarketOptions {
    pub seed: u64,
    pub users: usize,
    pub orders: usize,
    /// Tasks placing orders (and signing users up) at once.
    pub concurrency: usize,
    /// Chance (0..=100) that an order is deliberately sent twice with the same key and body.
    pub retry_percent: u64,
    /// Amounts are drawn from 0.01 to this, in cents.
    pub max_amount_cents: u64,
    /// The server's `market.cap_satoshis` (an embedded run configures its engine with it).
    pub cap_satoshis: u64,
    /// The whole run must finish within this (waits for the price and for 429s included).
    pub deadline: Duration,
    pub progress: ProgressMode,
}

/// An order as the server answers it (API.md's Order), its fields as the server wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderView {
    pub id: u64,
    pub user_id: u64,
    pub currency: String,
    pub amount: String,
    pub exchange_rate: String,
    pub btc_amount: String,
    pub created_at: String,
}

/// The answer to `POST /api/v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// 201 (a new order); `false` for 200 (a replay of the key).
    pub created: bool,
    pub order: OrderView,
}

/// A page of orders, newest first; `next` is the opaque cursor of the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrdersPage {
    pub items: Vec<OrderView>,
    pub next: Option<String>,
}

/// `GET /api/v1/price`: the rates as decimal strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceView {
    pub eur: String,
    pub gbp: String,
    pub usd: String,
    pub source: String,
}

/// The market operations the scenario performs, over HTTP ([`HttpMarket`]) or the embedded
/// engine (`EmbeddedTransport`). Like [`crate::Transport`], an implementation reports what the
/// server said and never judges it. Every future is `Send`, so orders run on tokio tasks.
pub trait MarketTransport: Send + Sync + 'static {
    /// `"http"` or `"embedded"` (for the report).
    fn name(&self) -> &'static str;

    /// `POST /api/v1/users` (embedded: nothing to do, the market takes any user id).
    fn sign_up(&self, user: &NewUser) -> impl Future<Output = Answer<()>> + Send;

    /// `POST /api/v1/auth/login` (embedded: the user id derived from the address).
    fn login(&self, email: &str, password: &str) -> impl Future<Output = Answer<Session>> + Send;

    /// `POST /api/v1/orders` as `session` with `Idempotency-Key: key`.
    fn place(
        &self,
        session: &Session,
        key: &str,
        currency: &str,
        amount: &str,
    ) -> impl Future<Output = Answer<Placement>> + Send;

    /// `GET /api/v1/orders?limit&cursor` as `session`: the user's own orders.
    fn orders(
        &self,
        session: &Session,
        cursor: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Answer<OrdersPage>> + Send;

    /// `GET /api/v1/orders?limit&cursor` with the admin token: every user's orders.
    fn all_orders(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Answer<OrdersPage>> + Send;

    /// `GET /api/v1/price`.
    fn price(&self) -> impl Future<Output = Answer<PriceView>> + Send;

    /// The server's own totals (satoshis, orders) where the transport reaches them:
    /// `Some` for the embedded engine (`Market::totals`), `None` over HTTP.
    fn totals(&self) -> impl Future<Output = Answer<Option<(u64, u64)>>> + Send;
}

/// The address of user slot `index` of a run.
pub fn email_for(seed: u64, index: usize) -> String {
    format!("market.{seed:016x}.{index}@example.net")
}

/// The password of user slot `index` of a run: a function of the seed.
pub fn password_for(seed: u64, index: usize) -> String {
    let mut rng = Rng::derive(seed, &format!("market-password/{index}"));
    format!("pw-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// Why a run stopped early.
struct Failure(String);

impl From<BotError> for Failure {
    fn from(error: BotError) -> Self {
        Failure(error.to_string())
    }
}

/// What the tasks of a run share.
struct Shared<T> {
    transport: Arc<T>,
    options: MarketOptions,
    started: Instant,
    recorder: Recorder,
    /// Set on the first fatal error so the other tasks stop at their next request.
    abort: AtomicBool,
    created: AtomicU64,
    replayed: AtomicU64,
    resent: AtomicU64,
    rate_limited: AtomicU64,
}

impl<T: MarketTransport> Shared<T> {
    /// One transport call, timed into the recorder (no retry: callers decide).
    async fn timed<R>(
        &self,
        kind: &'static str,
        call: impl Future<Output = Answer<R>>,
    ) -> Answer<R> {
        let started = Instant::now();
        let answer = call.await;
        self.recorder
            .record(kind, started.elapsed(), answer.as_ref().err());
        answer
    }

    /// As `timed`, sending a read again after a 503 (nothing changed) up to [`RESENDS_MAX`]
    /// times.
    async fn read<R, F, Fut>(&self, kind: &'static str, mut call: F) -> Answer<R>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Answer<R>>,
    {
        let mut resends = 0u32;
        loop {
            self.going()?;
            match self.timed(kind, call()).await {
                Err(error) if error.is_overloaded() && resends < RESENDS_MAX => {
                    self.pause(backoff(&error, resends)).await;
                    resends += 1;
                }
                other => return other,
            }
        }
    }

    /// Sleeps `wait`, or until the deadline if that comes first (the next `going` then ends
    /// the run).
    async fn pause(&self, wait: Duration) {
        let left = self
            .options
            .deadline
            .saturating_sub(self.started.elapsed())
            .saturating_add(Duration::from_millis(1));
        tokio::time::sleep(wait.min(left)).await;
    }

    /// Err when the run must stop: another task failed, or the deadline passed.
    fn going(&self) -> Answer<()> {
        if self.abort.load(Ordering::Acquire) {
            return Err(BotError::transport("aborted", "another task failed"));
        }
        if self.started.elapsed() > self.options.deadline {
            return Err(BotError::transport(
                "deadline",
                format!(
                    "the run did not finish within the deadline ({} s)",
                    self.options.deadline.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Every page of a listing, in the order listed.
    async fn list_all<F, Fut>(&self, kind: &'static str, mut page: F) -> Answer<Vec<OrderView>>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Answer<OrdersPage>>,
    {
        let mut orders = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let listed = self.read(kind, || page(cursor.clone())).await?;
            let empty = listed.items.is_empty();
            orders.extend(listed.items);
            match listed.next {
                Some(next) if !empty => cursor = Some(next),
                _ => return Ok(orders),
            }
        }
    }
}

/// The wait before sending again: the server's `Retry-After` when it gave one, else
/// [`RESEND_BACKOFF_MS`] doubled per earlier resend (at most ~5 s).
fn backoff(error: &BotError, resends: u32) -> Duration {
    match error.retry_after_ms {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_millis(RESEND_BACKOFF_MS << resends.min(8)),
    }
}

/// What one copy of a planned order came to.
enum CopyOutcome {
    Answered(Placement),
    CapRefused,
    /// Any other refusal, by its report key (`409 idempotency_key_reused`).
    Refused(String),
}

/// Sends one copy of `planned` until it gets an answer: no answer or a 503 is sent again with
/// the same key and body (at most [`RESENDS_MAX`] times in a row), a 429 after its
/// `Retry-After` (until the deadline). Returns the outcome and the attempts that got no answer.
async fn send_copy<T: MarketTransport>(
    shared: &Shared<T>,
    session: &Session,
    planned: &PlannedOrder,
) -> Answer<(CopyOutcome, u32)> {
    let mut unanswered = 0u32;
    let mut resends = 0u32;
    loop {
        shared.going()?;
        let answer = shared
            .timed(
                "place",
                shared
                    .transport
                    .place(session, &planned.key, &planned.currency, &planned.amount),
            )
            .await;
        let error = match answer {
            Ok(placement) => {
                let counter = if placement.created {
                    &shared.created
                } else {
                    &shared.replayed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return Ok((CopyOutcome::Answered(placement), unanswered));
            }
            Err(error) => error,
        };
        match error.status {
            None | Some(503) => {
                if error.status.is_none() {
                    unanswered += 1;
                }
                if resends >= RESENDS_MAX {
                    return Err(error);
                }
                shared.pause(backoff(&error, resends)).await;
                resends += 1;
            }
            Some(429) => {
                shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                let wait = error
                    .retry_after_ms
                    .map_or(RATE_LIMITED_WAIT, Duration::from_millis);
                shared.pause(wait).await;
                // A refusal is an answer: the run of failures without one starts over.
                resends = 0;
            }
            Some(409) if error.code == "btc_cap_exceeded" => {
                return Ok((CopyOutcome::CapRefused, unanswered))
            }
            // The bot's credentials stopped working: nothing to judge, the run cannot go on.
            Some(401) => return Err(error),
            Some(400..=499) => return Ok((CopyOutcome::Refused(error.key()), unanswered)),
            Some(_) => return Err(error),
        }
        shared.resent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Places one planned order (one or two copies, each retried) and records what came of it.
async fn place_planned<T: MarketTransport>(
    shared: &Shared<T>,
    session: &Session,
    planned: PlannedOrder,
) -> Answer<OrderRecord> {
    let outcomes = match planned.copies {
        Copies::Once => vec![send_copy(shared, session, &planned).await?],
        Copies::Together => {
            let (first, second) = tokio::join!(
                send_copy(shared, session, &planned),
                send_copy(shared, session, &planned)
            );
            vec![first?, second?]
        }
        Copies::InTurn => {
            let first = send_copy(shared, session, &planned).await?;
            vec![first, send_copy(shared, session, &planned).await?]
        }
    };
    let mut record = OrderRecord::new(planned, session.user_id);
    for (outcome, unanswered) in outcomes {
        record.unanswered += unanswered;
        match outcome {
            CopyOutcome::Answered(placement) => record.answers.push(placement),
            CopyOutcome::CapRefused => record.cap_refusals += 1,
            CopyOutcome::Refused(key) => record.other_refusals.push(key),
        }
    }
    Ok(record)
}

/// Runs `work(index)` for every index in `0..count` on `concurrency` tasks taking the indexes
/// in order; returns the results by index, or the first real failure (the others stop at
/// their next request).
async fn on_tasks<T, R, F, Fut>(
    shared: &Arc<Shared<T>>,
    count: usize,
    progress: &Arc<Progress>,
    work: F,
) -> Result<Vec<R>, BotError>
where
    T: MarketTransport,
    R: Send + 'static,
    F: Fn(Arc<Shared<T>>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer<R>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let tasks: Vec<_> = (0..shared.options.concurrency.min(count.max(1)))
        .map(|_| {
            let shared = shared.clone();
            let next = next.clone();
            let work = work.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        return Ok(done);
                    }
                    match work(shared.clone(), index).await {
                        Ok(result) => done.push((index, result)),
                        Err(error) => {
                            shared.abort.store(true, Ordering::Release);
                            return Err(error);
                        }
                    }
                    progress.advance(1);
                }
            })
        })
        .collect();
    let mut results: Vec<Option<R>> = (0..count).map(|_| None).collect();
    let mut first_error: Option<BotError> = None;
    for task in tasks {
        let outcome = task
            .await
            .unwrap_or_else(|error| Err(BotError::transport("task", error.to_string())));
        match outcome {
            Ok(done) => {
                for (index, result) in done {
                    results[index] = Some(result);
                }
            }
            // The first real failure, not the "aborted" of the tasks it stopped.
            Err(error) => {
                if first_error
                    .as_ref()
                    .is_none_or(|first| first.code == "aborted")
                {
                    first_error = Some(error);
                }
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    // Invariant: with no failure every index was taken by a task and its result kept.
    Ok(results
        .into_iter()
        .map(|result| result.expect("every index done"))
        .collect())
}

/// Runs the scenario against `transport`; the report's outcome says how it ended. Never
/// panics on a server error: an unusable answer ends the run with [`Outcome::Error`], a
/// disagreement with [`Outcome::Mismatch`].
pub async fn run<T: MarketTransport>(transport: Arc<T>, options: MarketOptions) -> Report {
    let started = Instant::now();
    let mut report = Report::new("market", transport.name(), options.seed);
    let plan = ledger::plan(
        options.seed,
        options.users,
        options.orders,
        options.max_amount_cents,
        options.retry_percent,
    );
    let log: Vec<String> = plan.iter().map(PlannedOrder::log_line).collect();
    report.op_log = OpLogSummary {
        count: log.len() as u64,
        hash: format!("{:016x}", fnv1a(log.join("\n").as_bytes())),
    };
    let shared = Arc::new(Shared {
        transport,
        options,
        started,
        recorder: Recorder::default(),
        abort: AtomicBool::new(false),
        created: AtomicU64::new(0),
        replayed: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        rate_limited: AtomicU64::new(0),
    });
    let options = &shared.options;
    let mut figures = MarketReport {
        users: options.users,
        orders: options.orders,
        concurrency: options.concurrency,
        retry_percent: options.retry_percent,
        duplicated: plan
            .iter()
            .filter(|order| order.copies != Copies::Once)
            .count() as u64,
        cap_btc: format_sats(options.cap_satoshis),
        ..MarketReport::default()
    };
    let mut differences = Vec::new();
    let outcome = phases(&shared, plan, &mut report, &mut figures, &mut differences).await;
    figures.created = shared.created.load(Ordering::Relaxed);
    figures.replayed = shared.replayed.load(Ordering::Relaxed);
    figures.resent = shared.resent.load(Ordering::Relaxed);
    figures.rate_limited = shared.rate_limited.load(Ordering::Relaxed);
    if figures.place_seconds > 0.0 {
        figures.orders_per_second =
            (figures.created as f64 / figures.place_seconds * 10.0).round() / 10.0;
    }
    shared
        .recorder
        .snapshot()
        .fill(&mut report, started.elapsed());
    report.market = Some(figures);
    let total = differences.len();
    report.differences = differences
        .into_iter()
        .take(DIFFERENCES_LISTED_MAX)
        .collect();
    if total > DIFFERENCES_LISTED_MAX {
        report.differences.push(format!(
            "... and {} more differences (not listed)",
            total - DIFFERENCES_LISTED_MAX
        ));
    }
    match outcome {
        Ok(()) if report.differences.is_empty() => {}
        Ok(()) => report.set_outcome(Outcome::Mismatch),
        Err(Failure(failure)) => {
            report.failure = Some(failure);
            report.set_outcome(Outcome::Error);
        }
    }
    report
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Times one phase into the report.
struct Phase {
    name: &'static str,
    started: Instant,
    operations_before: u64,
}

impl Phase {
    fn start<T>(shared: &Shared<T>, name: &'static str) -> Self {
        Phase {
            name,
            started: Instant::now(),
            operations_before: shared.recorder.snapshot().operations_total(),
        }
    }

    /// Ends the phase; returns its duration in seconds.
    fn end<T>(
        self,
        shared: &Shared<T>,
        report: &mut Report,
        differences: usize,
        note: Option<String>,
    ) -> f64 {
        let seconds = round3(self.started.elapsed().as_secs_f64());
        report.phases.push(PhaseReport {
            name: self.name.to_string(),
            operations: shared.recorder.snapshot().operations_total() - self.operations_before,
            elapsed_seconds: seconds,
            differences,
            note,
        });
        seconds
    }
}

/// Reads the price, waiting (until the deadline) while the server has none.
async fn price<T: MarketTransport>(shared: &Shared<T>) -> Answer<PriceView> {
    loop {
        match shared.read("price", || shared.transport.price()).await {
            Err(error) if error.code == "price_unavailable" => {
                shared.going()?;
                shared.pause(PRICE_POLL).await;
            }
            other => return other,
        }
    }
}

/// The sum and count of every order the server lists.
async fn server_orders<T: MarketTransport>(
    shared: &Shared<T>,
) -> Answer<(Vec<OrderView>, Sats, u64)> {
    let all = shared
        .list_all("list_all_orders", |cursor| {
            shared.transport.all_orders(cursor, PAGE_LIMIT)
        })
        .await?;
    let mut sats = Sats::default();
    for order in &all {
        // A malformed amount is the check's to report; the baseline counts what parses.
        sats.0 += u128::from(ledger::parse_btc(&order.btc_amount).unwrap_or(0));
    }
    let count = all.len() as u64;
    Ok((all, sats, count))
}

async fn phases<T: MarketTransport>(
    shared: &Arc<Shared<T>>,
    plan: Vec<PlannedOrder>,
    report: &mut Report,
    figures: &mut MarketReport,
    differences: &mut Vec<String>,
) -> Result<(), Failure> {
    let options = &shared.options;

    // Users, the price and the server's orders before the run.
    let phase = Phase::start(shared, "users");
    let progress = Arc::new(Progress::start(
        "users",
        options.users as u64,
        options.progress,
    ));
    let sessions = on_tasks(
        shared,
        options.users,
        &progress,
        |shared, index| async move {
            let seed = shared.options.seed;
            let user = NewUser {
                email: email_for(seed, index),
                password: password_for(seed, index),
                full_name: Some(format!("Market bot {index}")),
            };
            match shared
                .read("sign_up", || shared.transport.sign_up(&user))
                .await
            {
                Ok(()) => {}
                // An earlier run's user: logging in tells whether it is ours.
                Err(error) if error.status == Some(409) && error.code == "email_taken" => {}
                Err(error) => return Err(error),
            }
            let session = shared
                .read("login", || {
                    shared.transport.login(&user.email, &user.password)
                })
                .await?;
            let first = shared
                .read("list_orders", || shared.transport.orders(&session, None, 1))
                .await?;
            if !first.items.is_empty() {
                return Err(BotError::transport(
                    "not_fresh",
                    format!(
                        "user {} ({}) already has orders: an earlier run with seed {seed} on this \
                     server or data dir; use another --seed or a fresh one",
                        session.user_id, user.email
                    ),
                ));
            }
            Ok(session)
        },
    )
    .await?;
    progress.finish("");
    let price_before = price(shared).await?;
    let (_, before_sats, before_count) = server_orders(shared).await?;
    figures.server_btc_before = before_sats.to_string();
    phase.end(shared, report, 0, None);

    // Orders.
    let phase = Phase::start(shared, "orders");
    let progress = Arc::new(Progress::start(
        "orders",
        options.orders as u64,
        options.progress,
    ));
    let sessions = Arc::new(sessions);
    let plan = Arc::new(plan);
    let work_sessions = sessions.clone();
    let work_plan = plan.clone();
    let records = on_tasks(shared, options.orders, &progress, move |shared, index| {
        let sessions = work_sessions.clone();
        let plan = work_plan.clone();
        async move {
            let planned = plan[index].clone();
            let session = &sessions[planned.user];
            place_planned(&shared, session, planned).await
        }
    })
    .await?;
    progress.finish("");
    figures.cap_refused = records
        .iter()
        .filter(|record| record.cap_refusals > 0 && record.answers.is_empty())
        .count() as u64;
    figures.place_seconds = phase.end(shared, report, 0, None);
    let ledger = Ledger {
        user_ids: sessions.iter().map(|session| session.user_id).collect(),
        records,
    };

    // Check.
    let phase = Phase::start(shared, "check");
    let progress = Arc::new(Progress::start(
        "check",
        options.users as u64,
        options.progress,
    ));
    let listed_sessions = sessions.clone();
    let per_user = on_tasks(shared, options.users, &progress, move |shared, index| {
        let sessions = listed_sessions.clone();
        async move {
            let session = &sessions[index];
            shared
                .list_all("list_orders", |cursor| {
                    shared.transport.orders(session, cursor, PAGE_LIMIT)
                })
                .await
        }
    })
    .await?;
    progress.finish("");
    let (all, _, _) = server_orders(shared).await?;
    // Timed only where the transport reaches the totals (over HTTP there is no request).
    let asked = Instant::now();
    let totals = shared.transport.totals().await;
    if !matches!(totals, Ok(None)) {
        shared
            .recorder
            .record("totals", asked.elapsed(), totals.as_ref().err());
    }
    let totals = totals?;
    let price_after = price(shared).await?;
    let server = ServerView {
        per_user,
        all,
        totals,
        before: (before_sats, before_count),
        price_before,
        price_after,
        cap_satoshis: options.cap_satoshis,
    };
    let checked = compare(&ledger, &server);
    figures.ledger_btc = checked.ledger_sats.to_string();
    figures.server_btc = checked.server_sats.to_string();
    figures.server_orders = checked.server_orders;
    figures.price_stable = checked.price_stable;
    let note = (!checked.price_stable).then(|| {
        "the price moved during the run: cap refusals were not checked against a rate".to_string()
    });
    figures.check_seconds = phase.end(shared, report, checked.differences.len(), note);
    differences.extend(checked.differences);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_passwords_are_derived_from_the_seed() {
        assert_eq!(email_for(255, 3), "market.00000000000000ff.3@example.net");
        assert_eq!(password_for(7, 1), password_for(7, 1));
        assert_ne!(password_for(7, 1), password_for(7, 2));
        assert_ne!(password_for(7, 1), password_for(8, 1));
        assert!(password_for(7, 1).len() >= 8, "the server's minimum");
    }

    #[test]
    fn a_retry_after_beats_the_backoff() {
        let limited = BotError::api(429, "rate_limited", "x").with_retry_after_ms(Some(2000));
        assert_eq!(backoff(&limited, 3), Duration::from_millis(2000));
        let lost = BotError::transport("timeout", "x");
        assert_eq!(backoff(&lost, 0), Duration::from_millis(RESEND_BACKOFF_MS));
        assert_eq!(
            backoff(&lost, 2),
            Duration::from_millis(RESEND_BACKOFF_MS * 4)
        );
        assert!(backoff(&lost, 50) <= Duration::from_secs(6));
    }
}
