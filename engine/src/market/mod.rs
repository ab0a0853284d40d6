//! The market workload: BTC buy orders priced from a feed, with an exact cap, idempotency keys,
//! a per-user rate limit, and health reports (ORIGINALS.md §2: six services, a Redis cache and
//! PostgreSQL become this one domain).
//!
//! # Actors
//! - [`book::OrderBook`] (singleton): every order, the BTC total, and the idempotency keys. One
//!   actor decides every order, so the cap is exact under any concurrency: the sum of accepted
//!   orders never exceeds `market.cap_satoshis`, and an order that fits is never refused
//!   because of a concurrent one that did not (each is decided against the total of the orders
//!   accepted before it). A key's replay is decided by the same actor, so concurrent requests
//!   with one key give one 201 and the same order to the rest.
//! - [`feed::PriceFeed`] (singleton): the last price and the refresh schedule (a durable timer).
//!   When the timer fires it asks for a `market.price` effect; the effect's handler
//!   ([`source::price_pool`]) reads a [`source::PriceSource`] on a worker thread (never on an
//!   actor thread) and records the quote, or the failure, with the feed; failures are also
//!   written to the health log. At most one fetch is pending at a time.
//! - [`health::HealthLog`] (singleton): health reports, posted by operators and by the feed.
//!
//! # Money
//! [`money`]: cents, satoshis and decimal rates as integers; `btc = amount / rate` rounded up at
//! 8 decimals, exactly.
//!
//! # Order of checks (API.md)
//! Body (400/422, in [`Market::place`]) → idempotency replay (200, or 409; a replay never counts
//! against the rate limit) → rate limit (429) → price age (503) → cap (409), the last four in the
//! book's one decision.
//!
//! # Records
//! An order is one record with one event for the book (`OrderPlaced`, carrying its key). A
//! price is one record for the feed. Nothing here sends events to another actor.

pub mod book;
pub mod feed;
pub mod health;
pub mod limit;
pub mod money;
pub mod source;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Millis;
use crate::config::{DomainConfig, EngineConfig};
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Domain, DomainEvent, Kind, Registry};
use crate::store::Store;
use crate::Page;

pub use book::{Order, Placed};
pub use health::{Level, Report};
pub use money::Rate;
pub use source::{price_pool, PriceSource, Quote};

/// The market domain: registered in `lib.rs`'s `domains!`.
pub const DOMAIN: MarketDomain = MarketDomain;

/// The order book (singleton, id 0).
pub const ORDER_BOOK: Kind = Kind::new(7);
/// The price feed (singleton, id 0).
pub const PRICE_FEED: Kind = Kind::new(8);
/// The health log (singleton, id 0).
pub const HEALTH_LOG: Kind = Kind::new(9);

/// The effect kind of a price fetch.
pub const PRICE_EFFECT: &str = "market.price";

pub struct MarketDomain;

impl Domain for MarketDomain {
    fn name(&self) -> &'static str {
        "market"
    }

    fn register(&self, registry: &mut Registry) {
        registry.kind::<book::OrderBook>("order_book");
        registry.kind::<feed::PriceFeed>("price_feed");
        registry.kind::<health::HealthLog>("health_log");
        registry.config::<MarketConfig>();
    }

    fn start(
        &self,
        store: &Store,
        config: &EngineConfig,
    ) -> Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        let quote = feed::PriceFeed::stored_quote(store)?;
        let market = config.section::<MarketConfig>();
        Ok(Some(Box::new(MarketState {
            limiter: Arc::new(limit::RateLimiter::new(
                market.rate_limit_per_minute,
                market.rate_limit_users_max,
            )),
            quotes: watch::Sender::new(quote),
        })))
    }

    fn opened(&self, engine: &crate::Engine) -> Result<()> {
        // Activates the feed, whose first activation arms its timer (due at once when it never
        // fetched). Only with a price pool: an engine opened without one (a test of another
        // domain, an embedder without prices) has no source, so it never asks for fetches
        // nobody would run; its orders get 503 `price_unavailable`.
        if !engine.shared().effects.has_pool(PRICE_EFFECT) {
            return Ok(());
        }
        engine
            .shared()
            .tell::<feed::PriceFeed>(0, feed::FeedCommand::Wake)
    }
}

/// The market's limits (`market.*`; this struct is that section's schema, and its `Default` the
/// only statement of the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// Order requests per user per minute, a token bucket (`market.rate_limit_per_minute`);
    /// 0 = unlimited.
    pub rate_limit_per_minute: u32,
    /// Users the rate limiter tracks at once (`market.rate_limit_users_max`); beyond, new
    /// users' orders get 503 `overloaded` until buckets refill. Costs about 40 bytes per user.
    pub rate_limit_users_max: usize,
    /// A price older than this is unavailable (`market.max_price_age_seconds`).
    pub max_price_age_seconds: u64,
    /// How long an `Idempotency-Key` is remembered (`market.idempotency_key_ttl_seconds`).
    pub idempotency_key_ttl_seconds: u64,
    /// Longest `Idempotency-Key`, in characters (`market.idempotency_key_max_chars`).
    pub idempotency_key_max_chars: usize,
    /// How often the feed is read (`market.price_refresh_seconds`).
    pub price_refresh_seconds: u64,
    /// Where prices come from (`market.price_source`): `simulated` (a seeded random walk),
    /// `fixed:EUR=..,GBP=..,USD=..`, or an `http(s)://` URL of a CoinDesk-v1-shaped document.
    pub price_source: String,
    /// Seed of the simulated source's walk (`market.price_seed`).
    pub price_seed: u64,
    /// Time allowed for one fetch of an HTTP source (`market.price_fetch_timeout_ms`).
    pub price_fetch_timeout_ms: u64,
    /// The sum of all orders' BTC may not exceed this (`market.cap_satoshis`; 100 BTC).
    pub cap_satoshis: u64,
    /// Orders the book may hold (`market.orders_max`); beyond, 503 `overloaded`. Costs about
    /// 200 bytes of memory per order.
    pub orders_max: usize,
    /// Health reports kept; the oldest go first (`market.health_reports_max`).
    pub health_reports_max: usize,
    /// Longest `service` and `status` of a health report, in characters
    /// (`market.health_name_max_chars`).
    pub health_name_max_chars: usize,
    /// Longest `data` of a health report, in characters (`market.health_data_max_chars`).
    pub health_data_max_chars: usize,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            rate_limit_per_minute: 60,
            rate_limit_users_max: 1_000_000,
            max_price_age_seconds: 300,
            idempotency_key_ttl_seconds: 86_400,
            idempotency_key_max_chars: 255,
            price_refresh_seconds: 15,
            price_source: "simulated".into(),
            price_seed: 20_210_620,
            price_fetch_timeout_ms: 5_000,
            cap_satoshis: 100 * money::SATS_PER_BTC,
            orders_max: 10_000_000,
            health_reports_max: 100_000,
            health_name_max_chars: 200,
            health_data_max_chars: 8_192,
        }
    }
}

impl DomainConfig for MarketConfig {
    const SECTION: &'static str = "market";

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("market.max_price_age_seconds", self.max_price_age_seconds),
            (
                "market.idempotency_key_ttl_seconds",
                self.idempotency_key_ttl_seconds,
            ),
            ("market.price_refresh_seconds", self.price_refresh_seconds),
            ("market.price_fetch_timeout_ms", self.price_fetch_timeout_ms),
            ("market.cap_satoshis", self.cap_satoshis),
            ("market.orders_max", self.orders_max as u64),
            ("market.health_reports_max", self.health_reports_max as u64),
            (
                "market.idempotency_key_max_chars",
                self.idempotency_key_max_chars as u64,
            ),
            ("market.health_name_max_chars", self.health_name_max_chars as u64),
            ("market.health_data_max_chars", self.health_data_max_chars as u64),
            ("market.rate_limit_users_max", self.rate_limit_users_max as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("`{key}` must be at least 1"));
            }
        }
        if self.idempotency_key_max_chars > 1024 {
            return Err("`market.idempotency_key_max_chars` must be 1..=1024".into());
        }
        if self.health_data_max_chars > 65_536 || self.health_name_max_chars > 1024 {
            return Err(
                "`market.health_data_max_chars` must be 1..=65536 and `market.health_name_max_chars` 1..=1024"
                    .into(),
            );
        }
        source::SourceSpec::parse(&self.price_source)
            .map(|_| ())
            .map_err(|error| format!("`market.price_source`: {error}"))
    }
}

/// A currency orders may be placed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    Eur,
    Gbp,
    Usd,
}

impl Currency {
    pub const ALL: [Currency; 3] = [Currency::Eur, Currency::Gbp, Currency::Usd];

    /// `EUR`, `GBP` or `USD`, in any case.
    pub fn parse(text: &str) -> Option<Currency> {
        Currency::ALL
            .into_iter()
            .find(|currency| currency.code().eq_ignore_ascii_case(text))
    }

    /// The ISO 4217 code, upper case.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
            Currency::Usd => "USD",
        }
    }
}

/// The market's events (one enum for its three kinds; each kind applies its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MarketEvent {
    /// Book: an order was accepted; with its idempotency key (kept until `expires_at_ms`).
    OrderPlaced {
        order: Order,
        key: Option<String>,
        expires_at_ms: Millis,
    },
    /// Book: the keys that expired at or before `through_ms` are forgotten.
    KeysExpired { through_ms: Millis },
    /// Feed: fetch `seq` was asked for (a `market.price` effect); the next one is due at
    /// `next_at_ms`.
    FetchAsked { seq: u64, next_at_ms: Millis },
    /// Feed: fetch `seq` was not asked for because fetch `pending` is still running; the next
    /// check is at `next_at_ms`.
    FetchPostponed { next_at_ms: Millis },
    /// Feed: fetch `seq` brought `quote`.
    PriceRecorded { seq: u64, quote: Quote },
    /// Feed: fetch `seq` failed.
    FetchFailed {
        seq: u64,
        error: String,
        at_ms: Millis,
    },
    /// Health log: a report; reports at or below `evict_through` go (the bound).
    ReportAdded {
        report: Report,
        evict_through: Option<u64>,
    },
}

impl DomainEvent for MarketEvent {
    const TAG: u32 = 3;
}

/// What the market's API handles share (made at open).
pub(crate) struct MarketState {
    limiter: Arc<limit::RateLimiter>,
    /// The last durable quote; every change is published once it is durable.
    quotes: watch::Sender<Option<Quote>>,
}

impl crate::Engine {
    /// The market workload (see [`crate::market`]).
    pub fn market(&self) -> Market<'_> {
        Market {
            engine: self,
            state: self.state::<MarketState>(),
            config: self.config().section::<MarketConfig>(),
        }
    }
}

/// The market's API, through [`crate::Engine::market`].
pub struct Market<'a> {
    engine: &'a crate::Engine,
    state: &'a MarketState,
    config: &'a MarketConfig,
}

/// A validated order request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub currency: Currency,
    pub amount_cents: u64,
}

impl OrderRequest {
    /// Checks a request's fields: a currency of [`Currency::ALL`] in any case (else 422
    /// `unsupported_currency`) and an amount with at most 2 decimals (else 400 `invalid_field`),
    /// 0 < amount < 1e9 (else 422 `amount_out_of_range`).
    pub fn parse(currency: &str, amount: &str) -> Result<OrderRequest> {
        let amount_cents = money::parse_amount(amount).map_err(|error| match error {
            money::AmountError::Malformed => Error::invalid_field(
                "invalid_field",
                "amount",
                "`amount` must be a decimal string with at most 2 decimals, like \"69.00\"",
            ),
            money::AmountError::OutOfRange => Error::unprocessable(
                "amount_out_of_range",
                "`amount` must be above 0 and below 1000000000",
            ),
        })?;
        let currency = Currency::parse(currency).ok_or_else(|| {
            Error::unprocessable(
                "unsupported_currency",
                "`currency` must be one of EUR, GBP, USD",
            )
        })?;
        Ok(OrderRequest {
            currency,
            amount_cents,
        })
    }
}

impl Market<'_> {
    /// The market's configuration section.
    pub fn config(&self) -> &MarketConfig {
        self.config
    }

    /// Checks an `Idempotency-Key`: 1 to `market.idempotency_key_max_chars` visible ASCII
    /// characters (else 400 `invalid_header`).
    pub fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty()
            || key.len() > self.config.idempotency_key_max_chars
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::invalid_field(
                "invalid_header",
                "Idempotency-Key",
                format!(
                    "`Idempotency-Key` must be 1 to {} visible ASCII characters",
                    self.config.idempotency_key_max_chars
                ),
            ));
        }
        Ok(())
    }

    /// Places an order for `user_id` (see the module docs for the order of checks). Returns
    /// once the order is durable; a replay of `key` returns the order it made.
    pub async fn place(
        &self,
        user_id: u64,
        key: Option<String>,
        request: OrderRequest,
    ) -> Result<Placed> {
        if let Some(key) = &key {
            self.check_key(key)?;
        }
        let quote = self.state.quotes.borrow().clone();
        self.engine
            .shared()
            .ask::<book::OrderBook>(
                0,
                book::BookCommand::Place {
                    user_id,
                    key,
                    request,
                    quote,
                    limiter: Arc::clone(&self.state.limiter),
                },
            )
            .await
            .and_then(book::BookReply::placed)
    }

    /// A page of orders, newest first: `user_id`'s, or everyone's with `None`. `before` is the
    /// id to continue below (the previous page's `next`).
    pub async fn orders(
        &self,
        user_id: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<Order>> {
        self.engine
            .shared()
            .ask::<book::OrderBook>(
                0,
                book::BookCommand::List {
                    user_id,
                    before,
                    limit,
                },
            )
            .await
            .and_then(book::BookReply::page)
    }

    /// `user_id`'s orders, newest first, skipping the `offset` newest: at most `limit` (an
    /// offset page, the contract of the compatibility route `GET /get_orders/`). Costs `limit`
    /// steps whatever the offset; orders placed between two calls shift the pages, as offsets
    /// do. The caller bounds `limit`.
    pub async fn orders_at(&self, user_id: u64, offset: u64, limit: usize) -> Result<Vec<Order>> {
        self.engine
            .shared()
            .ask::<book::OrderBook>(
                0,
                book::BookCommand::ListAt {
                    user_id,
                    offset,
                    limit,
                },
            )
            .await
            .and_then(book::BookReply::orders)
    }

    /// The BTC total of all orders (satoshis) and their number.
    pub async fn totals(&self) -> Result<(u64, u64)> {
        self.engine
            .shared()
            .ask::<book::OrderBook>(0, book::BookCommand::Totals)
            .await
            .and_then(book::BookReply::totals)
    }

    /// Checks the order book's invariants (the total is the sum of the orders and within the
    /// cap; every key names an order of its user made with the key's body); what does not hold.
    pub async fn check(&self) -> Result<Vec<String>> {
        self.engine
            .shared()
            .ask::<book::OrderBook>(0, book::BookCommand::Check)
            .await
            .and_then(book::BookReply::differences)
    }

    /// The current price, if it is younger than `market.max_price_age_seconds` (else 503
    /// `price_unavailable`).
    pub fn price(&self) -> Result<Quote> {
        let quote = self.state.quotes.borrow().clone();
        fresh(quote, self.engine.clock().now_ms(), self.config)
    }

    /// Subscribes to the BTC price in euros (the `btc_eur` signal): the receiver holds the last
    /// durable quote and wakes on every new one. A quote's age is for the subscriber to judge
    /// (`Quote::at_ms`).
    pub fn subscribe(&self) -> watch::Receiver<Option<Quote>> {
        self.state.quotes.subscribe()
    }

    /// The feed's state: the last quote, the fetches asked and their outcomes.
    pub async fn feed(&self) -> Result<feed::FeedView> {
        self.engine
            .shared()
            .ask::<feed::PriceFeed>(0, feed::FeedCommand::Get)
            .await
            .and_then(Result::<feed::FeedView>::from)
    }

    /// Adds a health report (an operator's, or the engine's own).
    pub async fn report(
        &self,
        level: Level,
        service: String,
        status: String,
        data: String,
    ) -> Result<Report> {
        health::check_text(self.config, &service, &status, &data)?;
        self.engine
            .shared()
            .ask::<health::HealthLog>(
                0,
                health::HealthCommand::Add {
                    level,
                    service,
                    status,
                    data,
                },
            )
            .await
            .and_then(health::HealthReply::report)
    }

    /// A page of health reports, newest first, optionally of one level and one service.
    pub async fn reports(
        &self,
        level: Option<Level>,
        service: Option<String>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<Report>> {
        self.engine
            .shared()
            .ask::<health::HealthLog>(
                0,
                health::HealthCommand::List {
                    level,
                    service,
                    before,
                    limit,
                },
            )
            .await
            .and_then(health::HealthReply::page)
    }
}

/// `quote` if it is fresh at `now_ms`, else 503 `price_unavailable`.
fn fresh(quote: Option<Quote>, now_ms: Millis, config: &MarketConfig) -> Result<Quote> {
    let max_age_ms = config.max_price_age_seconds.saturating_mul(1000);
    match quote {
        Some(quote) if now_ms.saturating_sub(quote.at_ms) <= max_age_ms => Ok(quote),
        Some(_) => Err(Error::unavailable_now(
            "price_unavailable",
            format!(
                "the last price is older than {} seconds",
                config.max_price_age_seconds
            ),
        )),
        None => Err(Error::unavailable_now(
            "price_unavailable",
            "no price has been read yet",
        )),
    }
}

/// The key of a singleton.
fn singleton(kind: Kind) -> ActorKey {
    ActorKey::new(kind, 0)
}
