//! The market scenario's embedded transport: [`EmbeddedTransport`] (the engine in this process)
//! speaking the typed market API, `Engine::market()`, and [`open`], which opens that engine
//! with a [`Fixed`] price source and waits for its first price.
//!
//! The market takes any user id (the server's authentication is what ties an order to a
//! signed-up user), so `sign_up` has nothing to do and `login` answers with an id derived from
//! the address: the same address, the same user, across runs on one data dir. Orders answer
//! with the same text forms as the server's JSON (`format_cents`, the rate's canonical text,
//! `format_sats`); `created_at` is the engine's milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_engine::market::money::{format_cents, format_sats};
use switchyard_engine::market::source::{Fixed, Rates};
use switchyard_engine::market::{price_pool, MarketConfig, Order, OrderRequest, Placed};
use switchyard_engine::EngineConfig;

use super::{MarketTransport, OrderView, OrdersPage, Placement, PriceView};
use crate::error::BotError;
use crate::rng::fnv1a;
use crate::transport::{Answer, EmbeddedTransport, NewUser, Session};

/// How long [`open`] waits for the engine's first price.
const FIRST_PRICE_WAIT: Duration = Duration::from_secs(20);

/// Opens the engine of `config` with a price pool reading `rates` (a [`Fixed`] source, so an
/// embedded run needs no network), and waits until it has a price. Blocking.
pub fn open(mut config: EngineConfig, rates: Rates) -> Answer<EmbeddedTransport> {
    config.section_mut::<MarketConfig>().price_source = format!(
        "fixed:EUR={},GBP={},USD={}",
        rates.eur, rates.gbp, rates.usd
    );
    let transport =
        EmbeddedTransport::open_with_effects(config, vec![price_pool(Arc::new(Fixed(rates)))])?;
    let started = Instant::now();
    while transport.engine().market().price().is_err() {
        if started.elapsed() > FIRST_PRICE_WAIT {
            let _ = transport.shutdown();
            return Err(BotError::transport(
                "price_unavailable",
                format!("the engine had no price within {FIRST_PRICE_WAIT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(transport)
}

/// The user id of an address: 1 to 2^53 − 1 (a JSON-safe integer), from its FNV-1a hash.
pub fn user_id_for(email: &str) -> u64 {
    (fnv1a(email.as_bytes()) & ((1 << 53) - 1)).max(1)
}

fn view(order: Order) -> OrderView {
    OrderView {
        id: order.id,
        user_id: order.user_id,
        currency: order.currency.code().to_string(),
        amount: format_cents(order.amount_cents),
        exchange_rate: order.rate.to_string(),
        btc_amount: format_sats(order.btc_sats),
        created_at: order.created_at_ms.to_string(),
    }
}

fn cursor(cursor: Option<String>) -> Answer<Option<u64>> {
    cursor
        .map(|cursor| {
            cursor.parse::<u64>().map_err(|_| {
                BotError::transport("bad_cursor", format!("{cursor:?} is not a cursor"))
            })
        })
        .transpose()
}

impl MarketTransport for EmbeddedTransport {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn sign_up(&self, _user: &NewUser) -> Answer<()> {
        Ok(())
    }

    async fn login(&self, email: &str, _password: &str) -> Answer<Session> {
        Ok(Session {
            user_id: user_id_for(email),
            token: None,
        })
    }

    async fn place(
        &self,
        session: &Session,
        key: &str,
        currency: &str,
        amount: &str,
    ) -> Answer<Placement> {
        let request = OrderRequest::parse(currency, amount)?;
        let placed = self
            .engine()
            .market()
            .place(session.user_id, Some(key.to_string()), request)
            .await?;
        Ok(match placed {
            Placed::Created(order) => Placement {
                created: true,
                order: view(order),
            },
            Placed::Replayed(order) => Placement {
                created: false,
                order: view(order),
            },
        })
    }

    async fn orders(
        &self,
        session: &Session,
        cursor_text: Option<String>,
        limit: usize,
    ) -> Answer<OrdersPage> {
        let page = self
            .engine()
            .market()
            .orders(Some(session.user_id), cursor(cursor_text)?, limit)
            .await?;
        Ok(OrdersPage {
            items: page.items.into_iter().map(view).collect(),
            next: page.next.map(|next| next.to_string()),
        })
    }

    async fn all_orders(&self, cursor_text: Option<String>, limit: usize) -> Answer<OrdersPage> {
        let page = self
            .engine()
            .market()
            .orders(None, cursor(cursor_text)?, limit)
            .await?;
        Ok(OrdersPage {
            items: page.items.into_iter().map(view).collect(),
            next: page.next.map(|next| next.to_string()),
        })
    }

    async fn price(&self) -> Answer<PriceView> {
        let quote = self.engine().market().price()?;
        Ok(PriceView {
            eur: quote.rates.eur.to_string(),
            gbp: quote.rates.gbp.to_string(),
            usd: quote.rates.usd.to_string(),
            source: quote.source,
        })
    }

    async fn totals(&self) -> Answer<Option<(u64, u64)>> {
        Ok(Some(self.engine().market().totals().await?))
    }
}
